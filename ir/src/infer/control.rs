//! Inference rules: If, Loop, Scan.
//!
//! Bodies are already typed by the frontend, so these rules read each body's
//! declared output types (`g.value_type(g.outputs[i])`) and combine them with the
//! node's inputs: `If` merges its two branches, `Loop`/`Scan` merge a state's
//! initial type with the body's output type (zero iterations return the initial
//! value) and stack scan outputs along a new, iteration-count axis. Where two
//! types disagree on a dim, the result gets a fresh symbol.

use super::common::R;
use super::{InferCtx, InferFn};
use crate::graph::Graph;
use crate::shape::{Dim, Shape, TensorType, ValueType};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    match op {
        "If" => Some(infer_if),
        "Loop" => Some(infer_loop),
        "Scan" => Some(infer_scan),
        _ => None,
    }
}

/// A symbol no other inference result uses.
fn fresh_sym(tag: &str) -> Dim {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    Dim::Sym(format!("{tag}_{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// The most specific type both `a` and `b` are instances of: equal dims stay,
/// differing dims become fresh symbols, differing ranks an unknown shape;
/// differing kinds (tensor, sequence, optional) give `b`.
fn merge(a: &ValueType, b: &ValueType) -> ValueType {
    match (a, b) {
        (ValueType::Tensor(x), ValueType::Tensor(y)) => ValueType::Tensor(merge_tensor(x, y)),
        (ValueType::Sequence(x), ValueType::Sequence(y)) => ValueType::Sequence(merge_tensor(x, y)),
        (ValueType::Optional(x), ValueType::Optional(y)) => {
            ValueType::Optional(Box::new(merge(x, y)))
        }
        // Kinds differ (an optional initial value, a plain body result): the
        // body's type is what every iteration after the first produces.
        _ => b.clone(),
    }
}

fn merge_tensor(a: &TensorType, b: &TensorType) -> TensorType {
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) if x.rank() == y.rank() => Some(Shape(
            x.dims()
                .iter()
                .zip(y.dims())
                .map(|(p, q)| {
                    if p == q {
                        p.clone()
                    } else {
                        fresh_sym("merged")
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

/// A subgraph attribute.
fn body<'a>(ctx: &InferCtx<'a>, name: &str) -> R<&'a Graph> {
    ctx.call
        .attrs
        .graph(name)
        .map(|g| &**g)
        .map_err(|e| e.to_string())
}

/// The declared type of output `i` of `g`.
fn out_type(g: &Graph, i: usize) -> R<&ValueType> {
    let o = g
        .outputs
        .get(i)
        .ok_or_else(|| format!("body `{}` has no output {i}", g.name))?;
    Ok(g.value_type(*o))
}

/// How many of the node's trailing inputs are captured outer values.
fn num_captures(ctx: &InferCtx<'_>) -> R<usize> {
    let n = ctx
        .call
        .attrs
        .int_or("egret.num_captures", 0)
        .map_err(|e| e.to_string())?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= ctx.inputs.len())
        .ok_or_else(|| {
            format!(
                "egret.num_captures {n} out of range for {} inputs",
                ctx.inputs.len()
            )
        })
}

/// The type of input `i`, if present.
fn in_type<'a>(ctx: &InferCtx<'a>, i: usize) -> Option<&'a ValueType> {
    ctx.inputs.get(i).copied().flatten().map(|f| f.ty)
}

/// `ty` with `dim` inserted at `axis` (a tensor type; anything else stays unknown).
fn insert_dim(ty: &ValueType, axis: i64, dim: Dim) -> R<ValueType> {
    let ValueType::Tensor(t) = ty else {
        return Err(format!("scan output must be a tensor, body yields {ty}"));
    };
    let shape = match &t.shape {
        None => None,
        Some(s) => {
            let a = super::common::norm_axis(axis, s.rank() + 1)?;
            let mut d = s.dims().to_vec();
            d.insert(a, dim);
            Some(Shape(d))
        }
    };
    Ok(ValueType::Tensor(TensorType {
        dtype: t.dtype,
        shape,
    }))
}

fn infer_if(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (then_g, else_g) = (body(ctx, "then_branch")?, body(ctx, "else_branch")?);
    (0..ctx.num_outputs)
        .map(|i| Ok(merge(out_type(then_g, i)?, out_type(else_g, i)?)))
        .collect()
}

fn infer_loop(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let g = body(ctx, "body")?;
    let formal = ctx.inputs.len() - num_captures(ctx)?;
    let n_carried = formal.saturating_sub(2);
    let n_scan = g.outputs.len().checked_sub(1 + n_carried).ok_or_else(|| {
        format!(
            "Loop body has {} outputs, needs at least {}",
            g.outputs.len(),
            1 + n_carried
        )
    })?;
    if ctx.num_outputs > n_carried + n_scan {
        return Err(format!(
            "Loop declares {} outputs, body yields {}",
            ctx.num_outputs,
            n_carried + n_scan
        ));
    }
    let iters = fresh_sym("loop_iters");
    (0..ctx.num_outputs)
        .map(|i| {
            let t = out_type(g, 1 + i)?;
            if i < n_carried {
                Ok(in_type(ctx, 2 + i).map_or_else(|| t.clone(), |init| merge(init, t)))
            } else {
                insert_dim(t, 0, iters.clone())
            }
        })
        .collect()
}

fn infer_scan(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let g = body(ctx, "body")?;
    let attrs = &ctx.call.attrs;
    let err = |e: crate::error::IrError| e.to_string();
    let formal = ctx.inputs.len() - num_captures(ctx)?;
    let m = usize::try_from(attrs.int("num_scan_inputs").map_err(err)?)
        .ok()
        .filter(|&m| m <= formal)
        .ok_or("num_scan_inputs out of range")?;
    let n_state = formal - m;
    let n_scan_out = g
        .outputs
        .len()
        .checked_sub(n_state)
        .ok_or("Scan body has fewer outputs than states")?;
    if ctx.num_outputs > n_state + n_scan_out {
        return Err(format!(
            "Scan declares {} outputs, body yields {}",
            ctx.num_outputs,
            n_state + n_scan_out
        ));
    }
    // The sequence length: the first scan input's dim along its scan axis.
    let in_axis = attrs
        .ints_opt("scan_input_axes")
        .map_err(err)?
        .and_then(|v| v.first().copied())
        .unwrap_or(0);
    let seq = match in_type(ctx, n_state)
        .and_then(ValueType::as_tensor)
        .and_then(|t| t.shape.as_ref())
    {
        Some(s) => {
            let a = super::common::norm_axis(in_axis, s.rank())?;
            s.dims()
                .get(a)
                .cloned()
                .ok_or("a scan input must have rank >= 1")?
        }
        None => fresh_sym("scan_len"),
    };
    let out_axes = attrs
        .ints_opt("scan_output_axes")
        .map_err(err)?
        .unwrap_or(&[]);
    (0..ctx.num_outputs)
        .map(|i| {
            let t = out_type(g, i)?;
            if i < n_state {
                Ok(in_type(ctx, i).map_or_else(|| t.clone(), |init| merge(init, t)))
            } else {
                insert_dim(
                    t,
                    out_axes.get(i - n_state).copied().unwrap_or(0),
                    seq.clone(),
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::dtype::DType;
    use crate::graph::OpCall;
    use crate::infer::InputFact;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    fn const_body(name: &str, shape: &[usize]) -> Arc<Graph> {
        let mut g = Graph::new(name);
        let n: usize = shape.iter().product();
        let c = g.add_const(
            "c",
            Tensor::from_vec(shape.to_vec(), vec![0f32; n]).unwrap(),
        );
        g.outputs.push(c);
        Arc::new(g)
    }

    #[test]
    fn if_merges_branch_shapes() {
        let call = OpCall::new("If")
            .with("then_branch", Attr::Graph(const_body("t", &[2, 3])))
            .with("else_branch", Attr::Graph(const_body("e", &[2, 4])));
        let cond = ValueType::tensor(DType::Bool, Some(Shape::known(&[])));
        let inputs = [Some(InputFact {
            ty: &cond,
            value: None,
        })];
        let out = infer_if(&InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 1,
        })
        .unwrap();
        let s = out[0].as_tensor().unwrap().shape.clone().unwrap();
        assert_eq!(s.dims()[0], Dim::Known(2));
        assert!(matches!(s.dims()[1], Dim::Sym(_)));
    }

    #[test]
    fn scan_inserts_sequence_length_at_output_axis() {
        // Body: (state f32[2], slice f32[2]) -> (state f32[2], out f32[2]).
        let mut g = Graph::new("body");
        let t2 = ValueType::tensor(DType::F32, Some(Shape::known(&[2])));
        let s = g.add_input("s", t2.clone());
        let x = g.add_input("x", t2.clone());
        g.outputs = vec![s, x];
        let call = OpCall::new("Scan")
            .with("body", Attr::Graph(Arc::new(g)))
            .with("num_scan_inputs", Attr::Int(1))
            .with("scan_output_axes", Attr::Ints(vec![-1]));
        let xs = ValueType::tensor(DType::F32, Some(Shape::known(&[5, 2])));
        let inputs = [
            Some(InputFact {
                ty: &t2,
                value: None,
            }),
            Some(InputFact {
                ty: &xs,
                value: None,
            }),
        ];
        let out = infer_scan(&InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 2,
        })
        .unwrap();
        assert_eq!(out[0], t2);
        assert_eq!(
            out[1],
            ValueType::tensor(DType::F32, Some(Shape::known(&[2, 5])))
        );
    }
}
