//! Element types.
//!
//! [`DType`] covers every dense element type ONNX defines that egret computes on,
//! plus [`BlockFormat`] for block-quantized storage (GGML blocks, int8 per-channel,
//! int4 group-wise). Sub-byte types (`I4`, `U4`, `I2`, `U2`, `F4E2M1`) are held
//! *unpacked*, one element per byte, so kernels index them like `i8`/`u8`;
//! frontends and exporters do the packing at the file boundary.

use std::fmt;
use std::str::FromStr;

/// Block-quantized storage layouts. The tensor's shape is the logical (dequantized)
/// shape; its bytes are the packed blocks along the last axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockFormat {
    /// GGML Q8_0: 32 values, one f16 scale.
    Q8_0,
    /// GGML Q4_0: 32 values, one f16 scale, offset 8.
    Q4_0,
    /// GGML Q4_1: 32 values, f16 scale and f16 min.
    Q4_1,
    /// GGML Q5_0.
    Q5_0,
    /// GGML Q5_1.
    Q5_1,
    /// GGML Q2_K super-blocks of 256.
    Q2K,
    /// GGML Q3_K super-blocks of 256.
    Q3K,
    /// GGML Q4_K super-blocks of 256.
    Q4K,
    /// GGML Q5_K super-blocks of 256.
    Q5K,
    /// GGML Q6_K super-blocks of 256.
    Q6K,
    /// egret int4 symmetric groups of 64 (`i4s_g64`): f16 `d`, 32 bytes of
    /// nibbles; `x = d * (q - 8)` (Q4_0 over 64 elements). No GGML type id.
    I4S64,
    /// egret int4 symmetric groups of 128 (`i4s_g128`): f16 `d`, 64 bytes of
    /// nibbles; `x = d * (q - 8)`. No GGML type id.
    I4S128,
    /// egret int4 asymmetric groups of 64 (`i4a_g64`): f16 `d`, f16 `m`, 32 bytes
    /// of nibbles; `x = d * q + m` (Q4_1 over 64 elements). No GGML type id.
    I4A64,
    /// egret int4 asymmetric groups of 128 (`i4a_g128`): f16 `d`, f16 `m`, 64
    /// bytes of nibbles; `x = d * q + m`. No GGML type id.
    I4A128,
}

impl BlockFormat {
    /// Every block format, in declaration order.
    pub const ALL: [BlockFormat; 14] = [
        BlockFormat::Q8_0,
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q2K,
        BlockFormat::Q3K,
        BlockFormat::Q4K,
        BlockFormat::Q5K,
        BlockFormat::Q6K,
        BlockFormat::I4S64,
        BlockFormat::I4S128,
        BlockFormat::I4A64,
        BlockFormat::I4A128,
    ];

    /// Number of logical elements in one block.
    pub fn block_elems(self) -> usize {
        match self {
            BlockFormat::Q8_0
            | BlockFormat::Q4_0
            | BlockFormat::Q4_1
            | BlockFormat::Q5_0
            | BlockFormat::Q5_1 => 32,
            BlockFormat::I4S64 | BlockFormat::I4A64 => 64,
            BlockFormat::I4S128 | BlockFormat::I4A128 => 128,
            BlockFormat::Q2K
            | BlockFormat::Q3K
            | BlockFormat::Q4K
            | BlockFormat::Q5K
            | BlockFormat::Q6K => 256,
        }
    }

    /// Number of bytes one block occupies.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q2K => 84,
            BlockFormat::Q3K => 110,
            BlockFormat::Q4K => 144,
            BlockFormat::Q5K => 176,
            BlockFormat::Q6K => 210,
            BlockFormat::I4S64 => 34,
            BlockFormat::I4S128 => 66,
            BlockFormat::I4A64 => 36,
            BlockFormat::I4A128 => 68,
        }
    }

    /// Lower-case name used in the text form (`q4_0`, `q6_k`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "q8_0",
            BlockFormat::Q4_0 => "q4_0",
            BlockFormat::Q4_1 => "q4_1",
            BlockFormat::Q5_0 => "q5_0",
            BlockFormat::Q5_1 => "q5_1",
            BlockFormat::Q2K => "q2_k",
            BlockFormat::Q3K => "q3_k",
            BlockFormat::Q4K => "q4_k",
            BlockFormat::Q5K => "q5_k",
            BlockFormat::Q6K => "q6_k",
            BlockFormat::I4S64 => "i4s_g64",
            BlockFormat::I4S128 => "i4s_g128",
            BlockFormat::I4A64 => "i4a_g64",
            BlockFormat::I4A128 => "i4a_g128",
        }
    }

    /// True for the formats GGML defines (and GGUF can store); false for egret's
    /// own int4 group formats.
    pub fn is_ggml(self) -> bool {
        !matches!(
            self,
            BlockFormat::I4S64 | BlockFormat::I4S128 | BlockFormat::I4A64 | BlockFormat::I4A128
        )
    }
}

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 64-bit IEEE float.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean, one byte per element holding 0 or 1.
    Bool,
    /// UTF-8 strings (ONNX `STRING`).
    String,
    /// Signed 4-bit integer, unpacked: one element per byte.
    I4,
    /// Unsigned 4-bit integer, unpacked: one element per byte.
    U4,
    /// float8 e4m3fn, stored as its raw byte.
    F8E4M3FN,
    /// float8 e4m3fnuz, stored as its raw byte.
    F8E4M3FNUZ,
    /// float8 e5m2, stored as its raw byte.
    F8E5M2,
    /// float8 e5m2fnuz, stored as its raw byte.
    F8E5M2FNUZ,
    /// float4 e2m1, unpacked: one raw 4-bit code per byte.
    F4E2M1,
    /// Signed 2-bit integer (-2..=1), unpacked: one element per byte.
    I2,
    /// Unsigned 2-bit integer (0..=3), unpacked: one element per byte.
    U2,
    /// float8 e8m0 (the OCP MX scale type: `2^(code-127)`, `0xff` is NaN), stored
    /// as its raw byte.
    F8E8M0,
    /// Block-quantized storage of a logically-f32 tensor.
    Block(BlockFormat),
}

impl DType {
    /// Size in bytes of one stored element, or `None` for strings and block formats.
    pub fn size(self) -> Option<usize> {
        use DType::*;
        Some(match self {
            F64 | I64 | U64 => 8,
            F32 | I32 | U32 => 4,
            F16 | BF16 | I16 | U16 => 2,
            I8 | U8 | Bool | I4 | U4 | I2 | U2 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ
            | F4E2M1 | F8E8M0 => 1,
            String | Block(_) => return None,
        })
    }

    /// Number of bytes needed to store `numel` elements of this type, if computable
    /// without overflow. Strings have no fixed byte size.
    pub fn storage_bytes(self, shape: &[usize]) -> Option<usize> {
        match self {
            DType::Block(f) => {
                let last = *shape.last()?;
                if last % f.block_elems() != 0 {
                    return None;
                }
                let rows = shape[..shape.len() - 1]
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))?;
                rows.checked_mul(last / f.block_elems())?
                    .checked_mul(f.block_bytes())
            }
            _ => {
                let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
                n.checked_mul(self.size()?)
            }
        }
    }

    /// True for the IEEE and brain floats egret computes in (f16, bf16, f32, f64).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// True for signed and unsigned integer types (including 4- and 2-bit).
    pub fn is_int(self) -> bool {
        use DType::*;
        matches!(
            self,
            I8 | I16 | I32 | I64 | U8 | U16 | U32 | U64 | I4 | U4 | I2 | U2
        )
    }

    /// True for signed integer types.
    pub fn is_signed_int(self) -> bool {
        matches!(
            self,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::I4 | DType::I2
        )
    }

    /// True for the float8 / float4 storage types (e8m0 included).
    pub fn is_small_float(self) -> bool {
        use DType::*;
        matches!(
            self,
            F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F4E2M1 | F8E8M0
        )
    }

    /// The short name used in the text form (`f32`, `i64`, `bool`, `q4_0`, ...).
    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            F32 => "f32",
            F16 => "f16",
            BF16 => "bf16",
            F64 => "f64",
            I8 => "i8",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            U8 => "u8",
            U16 => "u16",
            U32 => "u32",
            U64 => "u64",
            Bool => "bool",
            String => "string",
            I4 => "i4",
            U4 => "u4",
            F8E4M3FN => "f8e4m3fn",
            F8E4M3FNUZ => "f8e4m3fnuz",
            F8E5M2 => "f8e5m2",
            F8E5M2FNUZ => "f8e5m2fnuz",
            F4E2M1 => "f4e2m1",
            I2 => "i2",
            U2 => "u2",
            F8E8M0 => "f8e8m0",
            Block(b) => b.name(),
        }
    }

    /// Every dense dtype (no block formats), in declaration order.
    pub const DENSE: [DType; 24] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
        DType::String,
        DType::I4,
        DType::U4,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::F4E2M1,
        DType::I2,
        DType::U2,
        DType::F8E8M0,
    ];
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DType::DENSE
            .iter()
            .copied()
            .chain(BlockFormat::ALL.iter().map(|&b| DType::Block(b)))
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown dtype `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for d in DType::DENSE
            .iter()
            .copied()
            .chain(BlockFormat::ALL.iter().map(|&b| DType::Block(b)))
        {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
    }

    #[test]
    fn block_storage_bytes() {
        assert_eq!(
            DType::Block(BlockFormat::Q4_0).storage_bytes(&[2, 64]),
            Some(72)
        );
        assert_eq!(
            DType::Block(BlockFormat::Q4_0).storage_bytes(&[2, 33]),
            None
        );
        assert_eq!(DType::F32.storage_bytes(&[3, 5]), Some(60));
        assert_eq!(DType::F32.storage_bytes(&[usize::MAX, 2]), None);
    }
}
