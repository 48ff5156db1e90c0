//! Block-quantized storage: the data layout of every [`BlockFormat`], and its
//! conversion to f32.
//!
//! This is pure data-layout code (bytes in, floats out, no graph and no kernels),
//! so it lives in `egret-ir` beside [`BlockFormat`] itself: the GGUF frontend, the
//! runtime's `egret::DequantizeBlocks` / `egret::GatherBlocks` kernels, the
//! compression passes and the exporters all read blocks through this one module,
//! and none of them depends on another to do so.
//!
//! Every dequantizer is **bit-exact** with the `gguf` Python package's
//! `gguf.quants.dequantize` (the reference port of ggml's `dequantize_row_*`): the
//! same f32 operations in the same order, no fused multiply-add. The committed test
//! vectors in `tests/fixtures/gguf/` (made by `scripts/make-gguf-vectors.py`) check
//! this bit for bit.
//!
//! * [`legacy`]: the 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, and
//!   egret's int4 groups of 64 / 128 (Q4_0 / Q4_1 generalised over the group).
//! * [`kquants`]: the 256-element K-quant super-blocks Q2_K .. Q6_K.
//! * [`quantize`]: f32 -> blocks (Q8_0 / Q4_0 / Q4_1 bit-exact with ggml's
//!   reference quantizers, the int4 groups, an importance-weighted scale search)
//!   and per-row int8.

pub mod kquants;
pub mod legacy;
pub mod quantize;

pub use quantize::{can_quantize, quantize, quantize_into, quantize_rows_i8, BlockGrid};

use crate::dtype::{BlockFormat, DType};
use crate::error::IrError;
use crate::tensor::Tensor;

/// An f16 bit pattern widened to f32, exactly, NaN payloads included.
///
/// Written out rather than taken from `half` because `half` (and the F16C
/// instruction) set the quiet bit of a signalling NaN, while numpy, and so the
/// `gguf` reference, keep the payload bits as they are.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from(h >> 10) & 0x1F;
    let man = u32::from(h & 0x03FF);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal man * 2^-24 = 1.f * 2^(p - 24), p the leading one's bit.
            let p = 31 - man.leading_zeros();
            sign | ((p + 103) << 23) | ((man << (23 - p)) & 0x007F_FFFF)
        }
        (0x1F, _) => sign | 0x7F80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// The f16 stored little-endian at `b[i..i + 2]`, widened to f32 (a block's
/// scale or min). Panics if `b` is shorter than `i + 2`: callers pass slices of
/// a whole, length-checked block.
#[inline]
pub fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Dequantize one block of `format` (`format.block_bytes()` bytes) into
/// `format.block_elems()` floats. Both lengths are checked by the callers.
pub(crate) fn dequantize_block(format: BlockFormat, block: &[u8], out: &mut [f32]) {
    match format {
        BlockFormat::Q4_0 | BlockFormat::I4S64 | BlockFormat::I4S128 => {
            legacy::int4_sym(block, out)
        }
        BlockFormat::Q4_1 | BlockFormat::I4A64 | BlockFormat::I4A128 => {
            legacy::int4_asym(block, out)
        }
        BlockFormat::Q5_0 => legacy::q5_0(block, out),
        BlockFormat::Q5_1 => legacy::q5_1(block, out),
        BlockFormat::Q8_0 => legacy::q8_0(block, out),
        BlockFormat::Q2K => kquants::q2_k(block, out),
        BlockFormat::Q3K => kquants::q3_k(block, out),
        BlockFormat::Q4K => kquants::q4_k(block, out),
        BlockFormat::Q5K => kquants::q5_k(block, out),
        BlockFormat::Q6K => kquants::q6_k(block, out),
    }
}

/// Convert `bytes` holding `out.len()` logical elements of `dtype` to f32.
///
/// `dtype` is a block format (whole blocks: `out.len()` a multiple of the block
/// size) or one of the dense float types f32, f16 and bf16. Any length mismatch
/// is an error, never a panic.
pub fn dequantize_into(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<(), IrError> {
    let want = dtype.storage_bytes(&[out.len()]);
    if want != Some(bytes.len()) {
        return Err(IrError::ShapeMismatch(format!(
            "{} bytes of {dtype} for {} elements ({} expected)",
            bytes.len(),
            out.len(),
            want.map_or("a whole number of blocks".to_string(), |w| w.to_string())
        )));
    }
    match dtype {
        DType::Block(f) => {
            for (b, o) in bytes
                .chunks_exact(f.block_bytes())
                .zip(out.chunks_exact_mut(f.block_elems()))
            {
                dequantize_block(f, b, o);
            }
        }
        DType::F32 => {
            for (b, o) in bytes.chunks_exact(4).zip(out.iter_mut()) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f16_at(bytes, 2 * i);
            }
        }
        DType::BF16 => {
            for (b, o) in bytes.chunks_exact(2).zip(out.iter_mut()) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
        other => {
            return Err(IrError::DTypeMismatch(format!(
                "cannot dequantize {other}: not a block or float16/32 type"
            )))
        }
    }
    Ok(())
}

/// A block-quantized (or f16/bf16/f32) tensor as a new f32 tensor of the same
/// logical shape.
pub fn dequantize(t: &Tensor) -> Result<Tensor, IrError> {
    let n = crate::tensor::checked_numel(t.shape())?;
    let mut out = vec![0f32; n];
    dequantize_into(t.dtype(), t.bytes(), &mut out)?;
    Tensor::from_vec(t.shape().to_vec(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked() {
        let f = DType::Block(BlockFormat::Q4_0);
        assert!(dequantize_into(f, &[0; 18], &mut [0.0; 31]).is_err());
        assert!(dequantize_into(f, &[0; 17], &mut [0.0; 32]).is_err());
        assert!(dequantize_into(DType::I32, &[0; 4], &mut [0.0; 1]).is_err());
        let mut out = [1.0f32; 32];
        dequantize_into(f, &[0; 18], &mut out).unwrap();
        assert_eq!(out, [0.0; 32]);
    }

    #[test]
    fn f16_widening_is_exact_for_every_pattern() {
        for h in 0..=u16::MAX {
            let ours = f16_to_f32(h);
            let theirs = half::f16::from_bits(h).to_f32();
            if theirs.is_nan() {
                // Same payload; `half` additionally sets the quiet bit.
                assert_eq!(ours.to_bits() | 0x0040_0000, theirs.to_bits(), "{h:#06x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn q8_0_by_hand() {
        // d = 0.5 (f16 0x3800), values -2, 3.
        let mut b = vec![0x00, 0x38];
        b.extend((0..32).map(|i| if i == 0 { (-2i8) as u8 } else { 3 }));
        let t = Tensor::from_bytes(DType::Block(BlockFormat::Q8_0), vec![1, 32], &b).unwrap();
        let d = dequantize(&t).unwrap();
        assert_eq!(d.shape(), &[1, 32]);
        let v = d.as_slice::<f32>().unwrap();
        assert_eq!((v[0], v[1], v[31]), (-1.0, 1.5, 1.5));
    }
}
