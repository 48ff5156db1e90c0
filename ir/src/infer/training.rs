//! Inference rules of the `ai.onnx.preview.training` optimizers: Adagrad, Adam,
//! Momentum.
//!
//! Inputs are `R, T` then `n` tensors per group (`X`, `G`, then one or two
//! optimizer states); outputs are the updated `X`s followed by the updated
//! states, each typed like the tensor it replaces.

use super::{InferCtx, InferFn};
use crate::shape::ValueType;

/// The rule for an op of the `ai.onnx.preview.training` domain.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Adagrad" | "Momentum" => |ctx| optimizer(ctx, 3),
        "Adam" => |ctx| optimizer(ctx, 4),
        _ => return None,
    })
}

/// An optimizer with `groups` input groups (`X`, `G`, states...) per tensor.
fn optimizer(ctx: &InferCtx<'_>, groups: usize) -> Result<Vec<ValueType>, String> {
    let ins = ctx.inputs.len().saturating_sub(2);
    if ins == 0 || !ins.is_multiple_of(groups) {
        return Err(format!(
            "expected R, T and {groups} inputs per optimized tensor, got {} inputs",
            ctx.inputs.len()
        ));
    }
    let n = ins / groups;
    // Output group 0 is X (input group 0); output group g >= 1 is the state in
    // input group g + 1 (input group 1 is the gradient).
    (0..(groups - 1) * n)
        .map(|o| {
            let (g, i) = (o / n, o % n);
            let src = 2 + if g == 0 { i } else { (g + 1) * n + i };
            Ok(ValueType::Tensor(ctx.tensor(src)?.clone()))
        })
        .collect()
}
