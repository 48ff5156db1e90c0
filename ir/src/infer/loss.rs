//! Inference rules: SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss.

use super::common::{tensor, R};
use super::{InferCtx, InferFn};
use crate::shape::{Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "SoftmaxCrossEntropyLoss" | "NegativeLogLikelihoodLoss" => loss,
        _ => return None,
    })
}

/// The loss is shaped like the target for `reduction = none`, a scalar otherwise;
/// SoftmaxCrossEntropyLoss's optional log-probabilities are shaped like the scores.
fn loss(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let target = ctx.tensor(1)?;
    let reduction = ctx
        .call
        .attrs
        .string_or("reduction", "mean")
        .map_err(|e| e.to_string())?;
    let loss_shape = if reduction == "none" {
        target.shape.clone()
    } else {
        Some(Shape(vec![]))
    };
    let mut out = vec![tensor(x.dtype, loss_shape)];
    if ctx.num_outputs > 1 {
        out.push(tensor(x.dtype, x.shape.clone()));
    }
    Ok(out)
}
