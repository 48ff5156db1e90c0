//! Inference rules: MatMul, Gemm, Einsum, Det and the integer/QLinear matmuls.

use super::common::{broadcast, tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};
use std::collections::BTreeMap;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "MatMul" | "MatMulInteger" | "QLinearMatMul" => matmul,
        "Gemm" => gemm,
        "Einsum" => einsum,
        "Det" => det,
        _ => return None,
    })
}

/// Numpy `matmul` shape of two operand shapes (1-D operands are promoted and squeezed).
fn matmul_shape(a: &Shape, b: &Shape) -> R<Shape> {
    let (a, b) = (a.dims(), b.dims());
    if a.is_empty() || b.is_empty() {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let (ar, br) = (a.len(), b.len());
    let ak = &a[ar - 1];
    let bk = if br == 1 { &b[0] } else { &b[br - 2] };
    if let (Some(x), Some(y)) = (ak.known(), bk.known()) {
        if x != y {
            return Err(format!("inner dimensions differ: {x} vs {y}"));
        }
    }
    let ab = if ar > 2 { &a[..ar - 2] } else { &[][..] };
    let bb = if br > 2 { &b[..br - 2] } else { &[][..] };
    let mut out = broadcast(&Shape(ab.to_vec()), &Shape(bb.to_vec()))?.0;
    if ar > 1 {
        out.push(a[ar - 2].clone());
    }
    if br > 1 {
        out.push(b[br - 1].clone());
    }
    Ok(Shape(out))
}

/// MatMul, MatMulInteger (→ i32) and QLinearMatMul (→ `y_zero_point`'s type).
fn matmul(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let a = ctx.tensor(0)?;
    let (b, dtype) = match ctx.op() {
        "MatMulInteger" => (ctx.tensor(1)?, DType::I32),
        "QLinearMatMul" => (
            ctx.tensor(3)?,
            ctx.opt_tensor(7)?.map_or(a.dtype, |t| t.dtype),
        ),
        _ => (ctx.tensor(1)?, a.dtype),
    };
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) => Some(matmul_shape(x, y)?),
        _ => None,
    };
    Ok(vec![tensor(dtype, shape)])
}

/// Gemm: `[M, N]` from the (optionally transposed) 2-D operands.
fn gemm(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let a = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    let attrs = &ctx.call.attrs;
    let ta = attrs.int_or("transA", 0).map_err(|e| e.to_string())? != 0;
    let tb = attrs.int_or("transB", 0).map_err(|e| e.to_string())? != 0;
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) => {
            if x.rank() != 2 || y.rank() != 2 {
                return Err("Gemm operands must be 2-D".into());
            }
            let m = x.dims()[if ta { 1 } else { 0 }].clone();
            let n = y.dims()[if tb { 0 } else { 1 }].clone();
            Some(Shape(vec![m, n]))
        }
        _ => None,
    };
    Ok(vec![tensor(a.dtype, shape)])
}

/// Det: the batch dims of a `[..., n, n]` input.
fn det(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let shape = match &x.shape {
        Some(s) if s.rank() >= 2 => Some(Shape(s.dims()[..s.rank() - 2].to_vec())),
        Some(_) => return Err("Det input must have rank >= 2".into()),
        None => None,
    };
    Ok(vec![tensor(x.dtype, shape)])
}

/// Einsum: output dims looked up by label; `...` dims broadcast across operands.
fn einsum(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let eq: String = ctx
        .call
        .attrs
        .string_or("equation", "")
        .map_err(|e| e.to_string())?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ctx.inputs.len() {
        return Err(format!(
            "equation has {} operands, node has {}",
            terms.len(),
            ctx.inputs.len()
        ));
    }
    let mut dims: BTreeMap<char, Dim> = BTreeMap::new();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    let mut ell = Shape(vec![]);
    for (i, term) in terms.iter().enumerate() {
        let Some(s) = &ctx.tensor(i)?.shape else {
            return Ok(vec![tensor(x.dtype, None)]);
        };
        let (pre, post) = match term.split_once("...") {
            Some((p, q)) => (p, Some(q)),
            None => (*term, None),
        };
        let named = pre.chars().count() + post.map_or(0, |q| q.chars().count());
        if named > s.rank() || (post.is_none() && named != s.rank()) {
            return Err(format!("term {term} does not match rank {}", s.rank()));
        }
        let d = s.dims();
        let mut labelled: Vec<(char, Dim)> = pre.chars().zip(d.iter().cloned()).collect();
        if let Some(q) = post {
            let tail = d.len() - q.chars().count();
            ell = broadcast(&ell, &Shape(d[pre.chars().count()..tail].to_vec()))?;
            labelled.extend(q.chars().zip(d[tail..].iter().cloned()));
        }
        for (c, dim) in labelled {
            if !c.is_ascii_alphabetic() {
                return Err(format!("bad einsum label {c:?}"));
            }
            *counts.entry(c).or_default() += 1;
            let e = dims.entry(c).or_insert(dim.clone());
            if *e == Dim::Known(1) {
                *e = dim;
            }
        }
    }
    let mut out = Vec::new();
    let labels: Vec<char> = match rhs {
        Some(r) => {
            let (pre, post) = r.split_once("...").map_or((r, None), |(p, q)| (p, Some(q)));
            let mut v: Vec<char> = pre.chars().collect();
            if let Some(q) = post {
                out.extend(
                    v.iter()
                        .map(|c| {
                            dims.get(c)
                                .cloned()
                                .ok_or(format!("unknown output label {c}"))
                        })
                        .collect::<R<Vec<_>>>()?,
                );
                out.extend(ell.0.iter().cloned());
                v = q.chars().collect();
            }
            v
        }
        None => {
            out.extend(ell.0.iter().cloned());
            counts
                .iter()
                .filter(|(_, &n)| n == 1)
                .map(|(&c, _)| c)
                .collect()
        }
    };
    for c in labels {
        out.push(
            dims.get(&c)
                .cloned()
                .ok_or(format!("unknown output label {c}"))?,
        );
    }
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}
