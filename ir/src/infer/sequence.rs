//! Inference rules: sequence ops (SequenceConstruct, SequenceEmpty, SequenceAt,
//! SequenceInsert, SequenceErase, SequenceLength, SplitToSequence,
//! ConcatFromSequence, SequenceMap) and optionals (Optional,
//! OptionalHasElement, OptionalGetElement).
//!
//! A sequence's static type is one [`TensorType`] for all its elements: where
//! elements differ in a dim, that dim becomes symbolic; where they differ in
//! rank, the shape is unknown.

use super::common::{norm_axis, tensor, R};
use super::shape::{axis_of, data_dim, int_attr};
use super::{InferCtx, InferFn};
use crate::attr::Attr;
use crate::dtype::DType;
use crate::shape::{Dim, Shape, TensorType, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "SequenceConstruct" => sequence_construct,
        "SequenceEmpty" => sequence_empty,
        "SequenceAt" => sequence_at,
        "SequenceInsert" => sequence_insert,
        "SequenceErase" => sequence_erase,
        "SequenceLength" => |_| Ok(vec![tensor(DType::I64, Some(Shape(vec![])))]),
        "SplitToSequence" => split_to_sequence,
        "ConcatFromSequence" => concat_from_sequence,
        "SequenceMap" => sequence_map,
        "Optional" => optional,
        "OptionalHasElement" => |_| Ok(vec![tensor(DType::Bool, Some(Shape(vec![])))]),
        "OptionalGetElement" => optional_get_element,
        _ => return None,
    })
}

/// One type covering both `a` and `b` (dims that differ become symbols).
fn merge(ctx: &InferCtx<'_>, a: &TensorType, b: &TensorType) -> TensorType {
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) if x.rank() == y.rank() => Some(Shape(
            x.dims()
                .iter()
                .zip(y.dims())
                .enumerate()
                .map(|(i, (p, q))| {
                    if p == q {
                        p.clone()
                    } else {
                        data_dim(ctx, &format!("elem{i}"))
                    }
                })
                .collect(),
        )),
        _ => None,
    };
    TensorType {
        dtype: a.dtype,
        shape,
    }
}

/// The element type of sequence input `i`.
fn seq_elem<'a>(ctx: &InferCtx<'a>, i: usize) -> R<&'a TensorType> {
    match ctx.inputs.get(i).copied().flatten().map(|f| f.ty) {
        Some(ValueType::Sequence(t)) => Ok(t),
        Some(_) => Err(format!("input {i} is not a sequence")),
        None => Err(format!("missing required input {i}")),
    }
}

fn sequence_construct(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let mut ty = ctx.tensor(0)?.clone();
    for i in 1..ctx.inputs.len() {
        ty = merge(ctx, &ty, ctx.tensor(i)?);
    }
    Ok(vec![ValueType::Sequence(ty)])
}

fn sequence_empty(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let dtype = match ctx.call.attrs.int_opt("dtype").map_err(|e| e.to_string())? {
        Some(code) => super::cast::onnx_dtype(code)?,
        None => DType::F32,
    };
    Ok(vec![ValueType::Sequence(TensorType { dtype, shape: None })])
}

fn sequence_at(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![ValueType::Tensor(seq_elem(ctx, 0)?.clone())])
}

fn sequence_insert(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (s, t) = (seq_elem(ctx, 0)?, ctx.tensor(1)?);
    // An empty sequence's element type carries no shape: take the tensor's.
    let ty = if s.shape.is_none() {
        t.clone()
    } else {
        merge(ctx, s, t)
    };
    Ok(vec![ValueType::Sequence(ty)])
}

fn sequence_erase(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![ValueType::Sequence(seq_elem(ctx, 0)?.clone())])
}

fn split_to_sequence(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![ValueType::Sequence(TensorType {
            dtype: x.dtype,
            shape: None,
        })]);
    };
    let a = axis_of(int_attr(ctx, "axis", 0)?, s.rank())?;
    let mut d = s.dims().to_vec();
    if !ctx.has_input(1) {
        if int_attr(ctx, "keepdims", 1)? == 0 {
            d.remove(a);
        } else {
            d[a] = Dim::Known(1);
        }
    } else {
        d[a] = data_dim(ctx, "piece");
    }
    Ok(vec![ValueType::Sequence(TensorType {
        dtype: x.dtype,
        shape: Some(Shape(d)),
    })])
}

fn concat_from_sequence(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let e = seq_elem(ctx, 0)?;
    let new_axis = int_attr(ctx, "new_axis", 0)? != 0;
    let axis = ctx.call.attrs.int("axis").map_err(|e| e.to_string())?;
    let shape = match &e.shape {
        Some(s) => {
            let mut d = s.dims().to_vec();
            if new_axis {
                d.insert(norm_axis(axis, s.rank() + 1)?, data_dim(ctx, "count"));
            } else {
                let a = axis_of(axis, s.rank())?;
                d[a] = data_dim(ctx, "concat");
            }
            Some(Shape(d))
        }
        None => None,
    };
    Ok(vec![tensor(e.dtype, shape)])
}

fn sequence_map(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let body = ctx.call.attrs.graph("body").map_err(|e| e.to_string())?;
    body.outputs
        .iter()
        .map(|&o| match body.value_type(o) {
            ValueType::Tensor(t) => Ok(ValueType::Sequence(t.clone())),
            other => Err(format!("SequenceMap body output {other} is not a tensor")),
        })
        .collect()
}

fn optional(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let inner = match ctx.inputs.first().copied().flatten() {
        Some(f) => f.ty.clone(),
        None => match ctx.call.attrs.get("type") {
            Some(Attr::Type(t)) => t.clone(),
            _ => return Err("Optional needs an input or a `type` attribute".into()),
        },
    };
    Ok(vec![ValueType::Optional(Box::new(inner))])
}

fn optional_get_element(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let f = ctx
        .inputs
        .first()
        .copied()
        .flatten()
        .ok_or("missing input 0")?;
    Ok(vec![match f.ty {
        ValueType::Optional(inner) => (**inner).clone(),
        other => other.clone(),
    }])
}
