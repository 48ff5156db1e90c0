//! GGML tensor types: the `type` field of a GGUF tensor info.
//!
//! Every type llama.cpp defines is known here by id, name and block geometry, so a
//! file can be sized, validated and inspected even when egret cannot compute on
//! one of its tensors. [`GgmlType::dtype`] maps the types egret computes on to a
//! [`DType`]; the rest are rejected only when such a tensor is materialised.

use egret_ir::{BlockFormat, DType};
use std::fmt;

/// A GGML tensor type id, as stored in a GGUF tensor info.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(u32);

/// `(id, name, elements per block, bytes per block)` of every known GGML type,
/// from ggml's `type_traits` table (identical to `gguf.GGML_QUANT_SIZES`).
const TABLE: [(u32, &str, usize, usize); 34] = [
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// F32.
    pub const F32: GgmlType = GgmlType(0);
    /// F16.
    pub const F16: GgmlType = GgmlType(1);
    /// BF16.
    pub const BF16: GgmlType = GgmlType(30);

    /// The type with this id, if ggml defines it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().any(|t| t.0 == id).then_some(GgmlType(id))
    }

    /// The numeric id stored in the file.
    pub fn id(self) -> u32 {
        self.0
    }

    fn entry(self) -> (u32, &'static str, usize, usize) {
        // `GgmlType` values are only built from ids in TABLE.
        TABLE
            .iter()
            .copied()
            .find(|t| t.0 == self.0)
            .unwrap_or((self.0, "?", 1, 0))
    }

    /// ggml's name for the type (`Q4_K`, `F16`, ...).
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Logical elements per block (1 for plain element types).
    pub fn block_elems(self) -> usize {
        self.entry().2
    }

    /// Bytes per block (the element size for plain element types).
    pub fn block_bytes(self) -> usize {
        self.entry().3
    }

    /// Bytes needed for a row-major run of `numel` elements whose innermost dim is
    /// `inner`, or `None` if `inner` is not a whole number of blocks or it overflows.
    pub fn byte_size(self, inner: usize, numel: usize) -> Option<usize> {
        let be = self.block_elems();
        if !inner.is_multiple_of(be) || !numel.is_multiple_of(be) {
            return None;
        }
        (numel / be).checked_mul(self.block_bytes())
    }

    /// The egret element type of this GGML type, if egret computes on it.
    pub fn dtype(self) -> Option<DType> {
        Some(match self.0 {
            0 => DType::F32,
            1 => DType::F16,
            30 => DType::BF16,
            24 => DType::I8,
            25 => DType::I16,
            26 => DType::I32,
            27 => DType::I64,
            28 => DType::F64,
            2 => DType::Block(BlockFormat::Q4_0),
            3 => DType::Block(BlockFormat::Q4_1),
            6 => DType::Block(BlockFormat::Q5_0),
            7 => DType::Block(BlockFormat::Q5_1),
            8 => DType::Block(BlockFormat::Q8_0),
            10 => DType::Block(BlockFormat::Q2K),
            11 => DType::Block(BlockFormat::Q3K),
            12 => DType::Block(BlockFormat::Q4K),
            13 => DType::Block(BlockFormat::Q5K),
            14 => DType::Block(BlockFormat::Q6K),
            _ => return None,
        })
    }

    /// The GGML type that stores `dtype`, if GGUF can hold it (the inverse of
    /// [`GgmlType::dtype`]).
    pub fn from_dtype(dtype: DType) -> Option<GgmlType> {
        TABLE
            .iter()
            .map(|t| GgmlType(t.0))
            .find(|t| t.dtype() == Some(dtype))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_geometry_matches_the_ir() {
        for b in BlockFormat::ALL {
            let Some(t) = GgmlType::from_dtype(DType::Block(b)) else {
                // egret's own int4 group formats have no GGML type.
                assert!(!b.is_ggml(), "{b:?}");
                continue;
            };
            assert!(b.is_ggml(), "{b:?}");
            assert_eq!(t.block_elems(), b.block_elems(), "{b:?}");
            assert_eq!(t.block_bytes(), b.block_bytes(), "{b:?}");
            assert_eq!(t.dtype(), Some(DType::Block(b)));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(14).unwrap().name(), "Q6_K");
        assert_eq!(GgmlType::F16.byte_size(64, 128), Some(256));
        assert_eq!(GgmlType::from_id(2).unwrap().byte_size(33, 66), None);
    }
}
