//! Inference rules: Gather, GatherElements, GatherND, ScatterElements, ScatterND, TensorScatter.

use super::common::{tensor, R};
use super::shape::{axis_of, int_attr};
use super::{InferCtx, InferFn};
use crate::shape::{Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Gather" => gather,
        "GatherElements" => gather_elements,
        "GatherND" => gather_nd,
        "ScatterElements" | "ScatterND" | "TensorScatter" => scatter,
        _ => return None,
    })
}

fn gather(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (x, ind) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let shape = match (&x.shape, &ind.shape) {
        (Some(s), Some(i)) => {
            let a = axis_of(int_attr(ctx, "axis", 0)?, s.rank())?;
            let mut d = s.dims()[..a].to_vec();
            d.extend_from_slice(i.dims());
            d.extend_from_slice(&s.dims()[a + 1..]);
            Some(Shape(d))
        }
        _ => None,
    };
    Ok(vec![tensor(x.dtype, shape)])
}

fn gather_elements(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![tensor(
        ctx.tensor(0)?.dtype,
        ctx.tensor(1)?.shape.clone(),
    )])
}

fn gather_nd(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (x, ind) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let b = int_attr(ctx, "batch_dims", 0)?.max(0) as usize;
    let shape = match (&x.shape, &ind.shape) {
        (Some(s), Some(i)) if i.rank() >= 1 => {
            let last = &i.dims()[i.rank() - 1];
            match last.known() {
                Some(k) if b + k <= s.rank() => {
                    let mut d = i.dims()[..i.rank() - 1].to_vec();
                    d.extend_from_slice(&s.dims()[b + k..]);
                    Some(Shape(d))
                }
                Some(k) => {
                    return Err(format!(
                        "index tuples of {k} do not fit rank {} with batch_dims {b}",
                        s.rank()
                    ))
                }
                None => None,
            }
        }
        _ => None,
    };
    Ok(vec![tensor(x.dtype, shape)])
}

/// Scatters return a tensor of the data input's type.
fn scatter(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![ValueType::Tensor(ctx.tensor(0)?.clone())])
}
