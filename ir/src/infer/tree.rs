//! Inference rule of the `ai.onnx.ml` TreeEnsemble.

use super::common::{tensor, R};
use super::shape::data_dim;
use super::{InferCtx, InferFn};
use crate::shape::{Dim, Shape, ValueType};

/// The rule for an op of the `ai.onnx.ml` domain in this family.
pub(super) fn ml_rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "TreeEnsemble" => tree_ensemble,
        _ => return None,
    })
}

/// `[N, F]` features → `[N, n_targets]` scores of the input's dtype.
fn tree_ensemble(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    if !x.dtype.is_float() {
        return Err(format!("input must be float, got {}", x.dtype));
    }
    let targets = ctx.call.attrs.int("n_targets").map_err(|e| e.to_string())?;
    let targets = usize::try_from(targets).map_err(|_| format!("negative n_targets {targets}"))?;
    let n = match &x.shape {
        Some(s) if s.rank() == 2 => s.dims()[0].clone(),
        Some(s) => return Err(format!("input must have rank 2, got {}", s.rank())),
        None => data_dim(ctx, "batch"),
    };
    Ok(vec![tensor(
        x.dtype,
        Some(Shape(vec![n, Dim::Known(targets)])),
    )])
}
