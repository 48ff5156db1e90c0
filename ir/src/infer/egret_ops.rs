//! Inference rules for egret's own domain, `egret`: ops with no ONNX equivalent.
//!
//! * `egret::DequantizeBlocks(x) -> f32`: a block-quantized tensor (any
//!   [`crate::BlockFormat`], or f16 / bf16 / f32) as f32 of the same logical
//!   shape, with [`crate::blocks`]' bit-exact dequantizers. It keeps quantized
//!   weights quantized in the graph: passes and kernels see the blocks.
//! * `egret::GatherBlocks(table, indices) -> f32`: `Gather(axis = 0)` of the
//!   dequantized `[rows, width]` table, dequantizing only the selected rows (an
//!   embedding lookup in a quantized table). Output shape `indices.shape + [width]`.

use super::common::{tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Shape, ValueType};

/// The domain name of egret's own ops.
pub const DOMAIN: &str = "egret";

/// The rule for an op in the `egret` domain.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "DequantizeBlocks" => dequantize_blocks,
        "GatherBlocks" => gather_blocks,
        _ => return None,
    })
}

/// True for the stored types the dequantizers read.
fn dequantizable(dt: DType) -> bool {
    matches!(dt, DType::Block(_) | DType::F16 | DType::BF16 | DType::F32)
}

fn check(ctx: &InferCtx<'_>, dt: DType) -> R<()> {
    if dequantizable(dt) {
        Ok(())
    } else {
        Err(format!(
            "{} reads block formats, f16, bf16 or f32, not {dt}",
            ctx.op()
        ))
    }
}

fn dequantize_blocks(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    check(ctx, x.dtype)?;
    Ok(vec![tensor(DType::F32, x.shape.clone())])
}

fn gather_blocks(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (table, ind) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check(ctx, table.dtype)?;
    if !matches!(ind.dtype, DType::I32 | DType::I64) {
        return Err(format!("indices must be int32 or int64, not {}", ind.dtype));
    }
    let shape = match (&table.shape, &ind.shape) {
        (Some(t), _) if t.rank() != 2 => {
            return Err(format!(
                "table must be [rows, width], got rank {}",
                t.rank()
            ))
        }
        (Some(t), Some(i)) => {
            let mut d = i.dims().to_vec();
            d.push(t.dims()[1].clone());
            Some(Shape(d))
        }
        _ => None,
    };
    Ok(vec![tensor(DType::F32, shape)])
}
