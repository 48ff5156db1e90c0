//! Inference rules of the vision family: NonMaxSuppression, RoiAlign.

use super::common::{tensor, R};
use super::shape::data_dim;
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "NonMaxSuppression" => non_max_suppression,
        "RoiAlign" => roi_align,
        _ => return None,
    })
}

/// `[num_selected, 3]` int64 `(batch, class, box)` triples; the count is data-dependent.
fn non_max_suppression(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let boxes = ctx.tensor(0)?;
    if !boxes.dtype.is_float() {
        return Err(format!("boxes must be float, got {}", boxes.dtype));
    }
    Ok(vec![tensor(
        DType::I64,
        Some(Shape(vec![data_dim(ctx, "selected"), Dim::Known(3)])),
    )])
}

/// `[num_rois, channels, output_height, output_width]`.
fn roi_align(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let rois = ctx.tensor(1)?;
    let size = |name: &str| -> R<Dim> {
        let v = ctx.call.attrs.int_or(name, 1).map_err(|e| e.to_string())?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n > 0)
            .map(Dim::Known)
            .ok_or_else(|| format!("{name} must be positive, got {v}"))
    };
    let channels = match &x.shape {
        Some(s) if s.rank() == 4 => s.dims()[1].clone(),
        Some(s) => return Err(format!("X must have rank 4, got {}", s.rank())),
        None => data_dim(ctx, "channels"),
    };
    let num_rois = match &rois.shape {
        Some(s) if s.rank() == 2 => s.dims()[0].clone(),
        Some(s) => return Err(format!("rois must have rank 2, got {}", s.rank())),
        None => data_dim(ctx, "rois"),
    };
    Ok(vec![tensor(
        x.dtype,
        Some(Shape(vec![
            num_rois,
            channels,
            size("output_height")?,
            size("output_width")?,
        ])),
    )])
}
