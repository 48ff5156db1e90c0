//! Inference rules of the random generators: RandomUniform, RandomNormal, their
//! `*Like` forms, Bernoulli and Multinomial.

use super::cast::onnx_dtype;
use super::common::{tensor, R};
use super::shape::data_dim;
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "RandomUniform" | "RandomNormal" => from_shape_attr,
        "RandomUniformLike" | "RandomNormalLike" | "Bernoulli" => like_input,
        "Multinomial" => multinomial,
        _ => return None,
    })
}

/// The dtype named by the `dtype` attribute, or `default` without one.
fn dtype_attr(ctx: &InferCtx<'_>, default: DType) -> R<DType> {
    match ctx.call.attrs.int_opt("dtype").map_err(|e| e.to_string())? {
        Some(code) => onnx_dtype(code),
        None => Ok(default),
    }
}

/// A float tensor of the `shape` attribute.
fn from_shape_attr(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let dt = dtype_attr(ctx, DType::F32)?;
    if !dt.is_float() {
        return Err(format!("dtype must be a float type, got {dt}"));
    }
    let shape = ctx
        .call
        .attrs
        .ints_opt("shape")
        .map_err(|e| e.to_string())?
        .ok_or("missing shape")?
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map(Dim::Known)
                .map_err(|_| format!("negative dim {d} in shape"))
        })
        .collect::<R<Vec<_>>>()?;
    Ok(vec![tensor(dt, Some(Shape(shape)))])
}

/// A tensor shaped like input 0, of the `dtype` attribute or input 0's dtype.
fn like_input(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    Ok(vec![tensor(dtype_attr(ctx, x.dtype)?, x.shape.clone())])
}

/// `[batch, sample_size]` class indices (int32 by default, or int64).
fn multinomial(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let dt = dtype_attr(ctx, DType::I32)?;
    if !matches!(dt, DType::I32 | DType::I64) {
        return Err(format!("dtype must be int32 or int64, got {dt}"));
    }
    let n = ctx
        .call
        .attrs
        .int_or("sample_size", 1)
        .map_err(|e| e.to_string())?;
    let n = usize::try_from(n).map_err(|_| format!("negative sample_size {n}"))?;
    let batch = match &x.shape {
        Some(s) if s.rank() == 2 => s.dims()[0].clone(),
        Some(s) => return Err(format!("input must have rank 2, got {}", s.rank())),
        None => data_dim(ctx, "batch"),
    };
    Ok(vec![tensor(dt, Some(Shape(vec![batch, Dim::Known(n)])))])
}
