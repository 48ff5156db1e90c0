//! Kernels: Cast, CastLike and BitCast, including float8/e8m0, int4/int2 and
//! string conversions.
//!
//! The conversions themselves live in [`crate::kernels::convert`]; Cast's target
//! dtype is the output type that inference derived from the `to` code.

use crate::error::{Result, RuntimeError};
use crate::kernels::convert::{cast_rounded, E8m0Round};
use crate::kernels::{input, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{DType, Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Cast", cast);
    r.add("CastLike", cast_like);
    r.add("BitCast", bitcast);
}

/// The dtype inference gave output `i` of the node.
pub(crate) fn out_dtype(ctx: &KernelCtx<'_>, i: usize) -> Result<DType> {
    ctx.node
        .outputs
        .get(i)
        .and_then(|o| o.ty.as_tensor())
        .map(|t| t.dtype)
        .ok_or_else(|| RuntimeError::msg(format!("output {i} has no tensor type")))
}

/// Cast `x` to `to` with the node's `saturate` (default on) and `round_mode`
/// (default `up`, used for float8 e8m0) attributes.
fn cast_with_attrs(ctx: &KernelCtx<'_>, x: &Tensor, to: DType) -> Result<Vec<Value>> {
    let a = ctx.attrs();
    let saturate = a.int_or("saturate", 1)? != 0;
    let round = E8m0Round::parse(a.string_or("round_mode", "up")?)?;
    one(cast_rounded(x, to, saturate, round)?)
}

fn cast(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    cast_with_attrs(ctx, input(inputs, 0)?, out_dtype(ctx, 0)?)
}

fn cast_like(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    cast_with_attrs(ctx, input(inputs, 0)?, input(inputs, 1)?.dtype())
}

/// Reinterpret the bits of each element as `to` (same element size).
fn bitcast_tensor(x: &Tensor, to: DType) -> Result<Tensor> {
    match (x.dtype().size(), to.size()) {
        (Some(a), Some(b)) if a == b && x.dtype() != DType::String => {
            Ok(Tensor::from_bytes(to, x.shape().to_vec(), x.bytes())?)
        }
        _ => Err(RuntimeError::msg(format!(
            "cannot bit-cast {} to {to}",
            x.dtype()
        ))),
    }
}

fn bitcast(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    one(bitcast_tensor(input(inputs, 0)?, out_dtype(ctx, 0)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitcast_reinterprets() {
        let x = Tensor::from_vec(vec![3], vec![1.0f32, -2.5, 3.75]).unwrap();
        let y = bitcast_tensor(&x, DType::I32).unwrap();
        assert_eq!(
            y.as_slice::<i32>().unwrap(),
            &[1065353216, -1071644672, 1081081856]
        );
        let b = Tensor::from_bools(vec![2], vec![true, false]).unwrap();
        assert_eq!(
            bitcast_tensor(&b, DType::U8)
                .unwrap()
                .as_slice::<u8>()
                .unwrap(),
            &[1, 0]
        );
        assert!(bitcast_tensor(&x, DType::I64).is_err());
    }
}
