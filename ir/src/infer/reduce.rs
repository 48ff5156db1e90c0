//! Inference rules: the Reduce* family, ArgMax/ArgMin, TopK, CumSum/CumProd.

use super::common::{tensor, R};
use super::shape::{axis_of, data_dim, int_attr, norm_axes};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce,
        "ArgMax" | "ArgMin" => arg_extreme,
        "TopK" => top_k,
        "CumSum" | "CumProd" => same,
        _ => return None,
    })
}

fn same(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![ValueType::Tensor(ctx.tensor(0)?.clone())])
}

/// Shape after reducing `axes`: kept as 1 or dropped.
fn reduced(s: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    Shape(
        s.dims()
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(Dim::Known(1)),
                (true, false) => None,
            })
            .collect(),
    )
}

fn reduce(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let keepdims = int_attr(ctx, "keepdims", 1)? != 0;
    let noop = int_attr(ctx, "noop_with_empty_axes", 0)? != 0;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let axes = if ctx.has_input(1) {
        match ctx.const_ints(1) {
            Some(a) if a.is_empty() && noop => return Ok(vec![ValueType::Tensor(x.clone())]),
            Some(a) if a.is_empty() => (0..s.rank()).collect(),
            Some(a) => norm_axes(&a, s.rank())?,
            // Unknown axes: with keepdims the rank is known, the dims are not.
            None if keepdims => {
                let d = (0..s.rank())
                    .map(|i| data_dim(ctx, &format!("r{i}")))
                    .collect();
                return Ok(vec![tensor(x.dtype, Some(Shape(d)))]);
            }
            None => return Ok(vec![tensor(x.dtype, None)]),
        }
    } else if noop {
        return Ok(vec![ValueType::Tensor(x.clone())]);
    } else {
        (0..s.rank()).collect()
    };
    Ok(vec![tensor(x.dtype, Some(reduced(s, &axes, keepdims)))])
}

fn arg_extreme(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let keepdims = int_attr(ctx, "keepdims", 1)? != 0;
    let shape = match &x.shape {
        Some(s) => Some(reduced(
            s,
            &[axis_of(int_attr(ctx, "axis", 0)?, s.rank())?],
            keepdims,
        )),
        None => None,
    };
    Ok(vec![tensor(DType::I64, shape)])
}

fn top_k(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let shape = match &x.shape {
        Some(s) => {
            let a = axis_of(int_attr(ctx, "axis", -1)?, s.rank())?;
            let mut d = s.dims().to_vec();
            d[a] = match ctx.const_ints(1).and_then(|k| k.first().copied()) {
                Some(k) if k < 0 => return Err(format!("negative K {k}")),
                Some(k) => match d[a].known() {
                    Some(n) if k as u64 > n as u64 => {
                        return Err(format!("K={k} exceeds the axis size {n}"))
                    }
                    _ => Dim::Known(k as usize),
                },
                None => data_dim(ctx, "k"),
            };
            Some(Shape(d))
        }
        None => None,
    };
    Ok(vec![
        tensor(x.dtype, shape.clone()),
        tensor(DType::I64, shape),
    ])
}
