//! Kernels: sequences (SequenceConstruct, SequenceEmpty, SequenceAt, SequenceInsert,
//! SequenceErase, SequenceLength, SplitToSequence, ConcatFromSequence, SequenceMap)
//! and optionals (Optional, OptionalHasElement, OptionalGetElement).
//!
//! Positions may be negative (counting from the end) and are validated.
//! SequenceMap runs its body through [`KernelCtx::runner`]; captured outer values
//! arrive as extra trailing inputs matching the body's extra trailing inputs.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::{input, norm_axis, one};
use crate::ops::shape::{axis_of, concat_tensors, even_split, opt_ints, split_tensor, to_usize};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{Tensor, Value, ValueType};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("SequenceConstruct", sequence_construct);
    r.add("SequenceEmpty", |_, _| Ok(vec![Value::Sequence(vec![])]));
    r.add("SequenceAt", sequence_at);
    r.add("SequenceInsert", sequence_insert);
    r.add("SequenceErase", sequence_erase);
    r.add("SequenceLength", |_, i| {
        Ok(vec![Value::Tensor(Tensor::scalar(seq(i, 0)?.len() as i64))])
    });
    r.add("SplitToSequence", split_to_sequence);
    r.add("ConcatFromSequence", concat_from_sequence);
    r.add("SequenceMap", sequence_map);
    r.add("Optional", optional);
    r.add("OptionalHasElement", optional_has_element);
    r.add("OptionalGetElement", optional_get_element);
}

/// Required sequence input `i`.
fn seq(inputs: &[Option<Value>], i: usize) -> Result<&[Tensor]> {
    match inputs.get(i).and_then(|v| v.as_ref()) {
        Some(Value::Sequence(s)) => Ok(s),
        Some(_) => bail!("input {i} is not a sequence"),
        None => bail!("missing required input {i}"),
    }
}

/// A position input (scalar, possibly negative) against a sequence of length `n`;
/// `end_ok` also accepts `n` itself (insertion at the back).
fn position(inputs: &[Option<Value>], i: usize, n: usize, end_ok: bool) -> Result<Option<usize>> {
    let Some(p) = opt_ints(inputs, i)? else {
        return Ok(None);
    };
    let p = *p
        .first()
        .ok_or_else(|| RuntimeError::msg("empty position"))?;
    let q = if p < 0 { p + n as i64 } else { p };
    let hi = if end_ok { n as i64 } else { n as i64 - 1 };
    if q < 0 || q > hi {
        bail!("position {p} out of range for a sequence of {n}");
    }
    Ok(Some(q as usize))
}

fn sequence_construct(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let ts = (0..inputs.len())
        .map(|i| input(inputs, i).cloned())
        .collect::<Result<Vec<_>>>()?;
    Ok(vec![Value::Sequence(ts)])
}

fn sequence_at(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let s = seq(inputs, 0)?;
    let p = position(inputs, 1, s.len(), false)?
        .ok_or_else(|| RuntimeError::msg("missing position"))?;
    one(s[p].clone())
}

fn sequence_insert(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let mut s = seq(inputs, 0)?.to_vec();
    let t = input(inputs, 1)?.clone();
    let p = position(inputs, 2, s.len(), true)?.unwrap_or(s.len());
    s.insert(p, t);
    Ok(vec![Value::Sequence(s)])
}

fn sequence_erase(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let mut s = seq(inputs, 0)?.to_vec();
    if s.is_empty() {
        bail!("cannot erase from an empty sequence");
    }
    let p = position(inputs, 1, s.len(), false)?.unwrap_or(s.len() - 1);
    s.remove(p);
    Ok(vec![Value::Sequence(s)])
}

fn split_to_sequence(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let axis = axis_of(ctx.attrs().int_or("axis", 0)?, x.rank())?;
    let d = x.shape()[axis];
    let split = inputs
        .get(1)
        .and_then(|v| v.as_ref())
        .map(|_| input(inputs, 1))
        .transpose()?;
    let parts = match split {
        None => {
            let pieces = split_tensor(x, axis, &vec![1; d])?;
            if ctx.attrs().int_or("keepdims", 1)? != 0 {
                pieces
            } else {
                let mut shape = x.shape().to_vec();
                shape.remove(axis);
                pieces
                    .into_iter()
                    .map(|p| p.reshaped(shape.clone()))
                    .collect::<Result<_, _>>()?
            }
        }
        Some(s) if s.rank() == 0 => {
            let chunk = to_usize(s.to_i64_vec()?.first().copied().unwrap_or(0), "split")?;
            if chunk == 0 {
                bail!("split size must be positive");
            }
            split_tensor(x, axis, &even_split(d, d.div_ceil(chunk))?)?
        }
        Some(s) => {
            let sizes = s
                .to_i64_vec()?
                .iter()
                .map(|&v| to_usize(v, "split"))
                .collect::<Result<Vec<_>>>()?;
            split_tensor(x, axis, &sizes)?
        }
    };
    Ok(vec![Value::Sequence(parts)])
}

fn concat_from_sequence(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let s = seq(inputs, 0)?;
    let first = s
        .first()
        .ok_or_else(|| RuntimeError::msg("cannot concatenate an empty sequence"))?;
    let axis = ctx.attrs().int("axis")?;
    if ctx.attrs().int_or("new_axis", 0)? == 0 {
        return one(concat_tensors(&s.iter().collect::<Vec<_>>(), axis)?);
    }
    // new_axis: stack along a new axis in -r-1..=r.
    let a = norm_axis(axis, first.rank() + 1)?;
    let stacked = s
        .iter()
        .map(|t| {
            let mut shape = t.shape().to_vec();
            shape.insert(a, 1);
            t.reshaped(shape)
        })
        .collect::<Result<Vec<_>, _>>()?;
    one(concat_tensors(
        &stacked.iter().collect::<Vec<_>>(),
        a as i64,
    )?)
}

fn sequence_map(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let body = ctx.attrs().graph("body")?;
    let n = seq(inputs, 0)?.len();
    if body.inputs.len() != inputs.len() {
        bail!(
            "SequenceMap body takes {} inputs, node has {}",
            body.inputs.len(),
            inputs.len()
        );
    }
    let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); body.outputs.len()];
    for i in 0..n {
        let args = inputs
            .iter()
            .zip(&body.inputs)
            .map(|(v, &b)| match (v, body.value_type(b)) {
                // A sequence feeding a tensor-typed body input is mapped element-wise.
                (Some(Value::Sequence(s)), ValueType::Tensor(_)) => s
                    .get(i)
                    .cloned()
                    .map(Value::Tensor)
                    .ok_or_else(|| RuntimeError::msg("SequenceMap sequences differ in length")),
                (Some(v), _) => Ok(v.clone()),
                (None, _) => bail!("SequenceMap input missing"),
            })
            .collect::<Result<Vec<_>>>()?;
        for (k, v) in ctx.runner.run_subgraph(body, args)?.into_iter().enumerate() {
            outs.get_mut(k)
                .ok_or_else(|| RuntimeError::msg("body returned too many outputs"))?
                .push(v.into_tensor()?);
        }
    }
    Ok(outs.into_iter().map(Value::Sequence).collect())
}

fn optional(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    Ok(vec![Value::Optional(
        inputs.first().cloned().flatten().map(Box::new),
    )])
}

fn optional_has_element(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let has = match inputs.first().and_then(|v| v.as_ref()) {
        None | Some(Value::Optional(None)) => false,
        Some(_) => true,
    };
    one(Tensor::from_bools(vec![], vec![has])?)
}

fn optional_get_element(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    match inputs.first().and_then(|v| v.as_ref()) {
        Some(Value::Optional(Some(v))) => Ok(vec![(**v).clone()]),
        Some(Value::Optional(None)) | None => bail!("optional has no element"),
        Some(v) => Ok(vec![v.clone()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_checked() {
        let p = |v: i64| vec![Some(Value::Tensor(Tensor::scalar(v)))];
        assert_eq!(position(&p(-1), 0, 3, false).unwrap(), Some(2));
        assert_eq!(position(&p(3), 0, 3, true).unwrap(), Some(3));
        assert!(position(&p(3), 0, 3, false).is_err());
        assert!(position(&p(-4), 0, 3, false).is_err());
        assert_eq!(position(&[], 0, 3, false).unwrap(), None);
    }
}
