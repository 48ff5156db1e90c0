//! Kernels: If, Loop, Scan (latest opset semantics), and `egret::Guard`, the
//! condition an `If` specialised to one branch keeps.
//!
//! Bodies run through [`KernelCtx::runner`]. Following egret's capture
//! convention (see `egret_ir::graph`), the node's last `egret.num_captures`
//! inputs are outer values the bodies read; they are passed unchanged as each
//! body's last inputs. Loop-carried values may be tensors, sequences or
//! optionals: they are passed through as [`Value`]s.
//!
//! Per-iteration outputs (Loop scan outputs, Scan outputs) are collected as
//! they are produced and stacked at the end, so memory grows only with work
//! actually done: a hostile trip count costs time, never a preallocation.

use crate::error::{Result, RuntimeError};
use crate::kernels::strided::{concat, take_range, Elem};
use crate::kernels::{checked_len, norm_axis};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_any_dtype};
use egret_ir::infer::egret_ops::DOMAIN;
use egret_ir::{Attr, DType, Graph, Tensor, Value, ValueType};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("If", if_kernel);
    r.add("Loop", loop_kernel);
    r.add("Scan", scan_kernel);
    r.add_domain(DOMAIN, "Guard", guard_kernel);
}

/// Split the node's inputs into its formal ONNX inputs and the captured values.
fn split_captures<'v>(
    ctx: &KernelCtx<'_>,
    inputs: &'v [Option<Value>],
) -> Result<(&'v [Option<Value>], Vec<Value>)> {
    let n = ctx.attrs().int_or("egret.num_captures", 0)?;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= inputs.len())
        .ok_or_else(|| {
            RuntimeError::msg(format!(
                "egret.num_captures {n} out of range for {} inputs",
                inputs.len()
            ))
        })?;
    let (formal, caps) = inputs.split_at(inputs.len() - n);
    let caps = caps
        .iter()
        .map(|v| {
            v.clone()
                .ok_or_else(|| RuntimeError::msg("a captured value is absent"))
        })
        .collect::<Result<_>>()?;
    Ok((formal, caps))
}

/// The subgraph attribute `name`.
fn body<'a>(ctx: &'a KernelCtx<'_>, name: &str) -> Result<&'a Graph> {
    Ok(ctx.attrs().graph(name)?)
}

/// The single element of a one-element tensor as a bool (any numeric dtype).
fn truthy(v: &Value, what: &str) -> Result<bool> {
    let t = v.as_tensor()?;
    if t.numel() != 1 {
        bail!("{what} must have one element, has shape {:?}", t.shape());
    }
    match t.dtype() {
        DType::Bool => Ok(t.as_slice::<bool>()?[0]),
        _ => Ok(t.to_f64_vec()?.first().is_some_and(|&x| x != 0.0)),
    }
}

/// Run `g` and check it yields at least `want` outputs.
fn run_body(ctx: &KernelCtx<'_>, g: &Graph, inputs: Vec<Value>, want: usize) -> Result<Vec<Value>> {
    let outs = ctx.runner.run_subgraph(g, inputs)?;
    if outs.len() < want {
        bail!(
            "body `{}` yielded {} outputs, {want} needed",
            g.name,
            outs.len()
        );
    }
    Ok(outs)
}

fn if_kernel(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (formal, caps) = split_captures(ctx, inputs)?;
    let cond = formal
        .first()
        .and_then(Option::as_ref)
        .ok_or_else(|| RuntimeError::msg("If needs a condition"))?;
    let branch = if truthy(cond, "If condition")? {
        "then_branch"
    } else {
        "else_branch"
    };
    run_body(ctx, body(ctx, branch)?, caps, ctx.num_outputs())
}

/// `egret::Guard(cond)`: no outputs; fails unless `cond`'s truth value is the
/// attribute `value` (the branch the graph was specialised to).
fn guard_kernel(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let cond = inputs
        .first()
        .and_then(Option::as_ref)
        .ok_or_else(|| RuntimeError::msg("Guard needs a condition"))?;
    let want = ctx.attrs().int_or("value", 1)? != 0;
    let got = truthy(cond, "Guard condition")?;
    if got != want {
        bail!(
            "the condition is {got}, but the graph was specialised to the {want} branch of an If"
        );
    }
    Ok(Vec::new())
}

/// Stack equal-shaped tensors along a new axis `axis` (in `0..=rank`).
fn stack(parts: &[Tensor], axis: usize) -> Result<Tensor> {
    let first = parts
        .first()
        .ok_or_else(|| RuntimeError::msg("nothing to stack"))?;
    let (dtype, shape) = (first.dtype(), first.shape());
    if let Some(bad) = parts
        .iter()
        .find(|t| t.dtype() != dtype || t.shape() != shape)
    {
        bail!(
            "per-iteration outputs differ: {dtype}{shape:?} vs {}{:?}",
            bad.dtype(),
            bad.shape()
        );
    }
    let mut out_shape = shape.to_vec();
    out_shape.insert(axis, parts.len());
    checked_len(&out_shape)?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    for_any_dtype!(dtype, T => {
        let slices = parts
            .iter()
            .map(|t| Ok((T::elems(t)?, 1)))
            .collect::<Result<Vec<_>>>()?;
        T::tensor(dtype, out_shape, concat(&slices, outer, inner)?)
    })
}

/// Index `i` of `t` along `axis`, with that axis removed.
fn slice_axis(t: &Tensor, axis: usize, i: usize) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    for_any_dtype!(t.dtype(), T => {
        let part = take_range(T::elems(t)?, &shape, axis, i, 1)?;
        shape.remove(axis);
        T::tensor(t.dtype(), shape, part)
    })
}

/// The result of zero iterations for a per-iteration output: an empty tensor
/// of the node output's declared dtype, its unknown dims taken as 0.
fn empty_output(ctx: &KernelCtx<'_>, slot: usize) -> Result<Tensor> {
    let ty = ctx.node.outputs.get(slot).map(|o| &o.ty);
    let Some(ValueType::Tensor(tt)) = ty else {
        bail!("output {slot}: zero iterations and no declared tensor type");
    };
    let shape: Vec<usize> = match &tt.shape {
        Some(s) => s.dims().iter().map(|d| d.known().unwrap_or(0)).collect(),
        None => vec![0],
    };
    if checked_len(&shape)? != 0 {
        bail!("output {slot}: zero iterations but declared shape {shape:?} is not empty");
    }
    for_any_dtype!(tt.dtype, T => { T::tensor(tt.dtype, shape, Vec::new()) })
}

/// Stack each per-iteration output list (or make it empty after zero iterations).
fn finish_scans(
    ctx: &KernelCtx<'_>,
    scans: Vec<Vec<Tensor>>,
    axes: &[usize],
    first_slot: usize,
) -> Result<Vec<Value>> {
    scans
        .into_iter()
        .enumerate()
        .map(|(j, parts)| {
            let t = if parts.is_empty() {
                empty_output(ctx, first_slot + j)?
            } else {
                stack(&parts, axes.get(j).copied().unwrap_or(0))?
            };
            Ok(Value::Tensor(t))
        })
        .collect()
}

fn loop_kernel(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (formal, caps) = split_captures(ctx, inputs)?;
    let g = body(ctx, "body")?;
    let trip = match formal.first().and_then(Option::as_ref) {
        Some(m) => {
            let m = m.as_tensor()?.to_i64_vec()?;
            match m.as_slice() {
                [m] => Some(*m),
                _ => bail!("trip count M must have one element"),
            }
        }
        None => None,
    };
    let mut cond = match formal.get(1).and_then(Option::as_ref) {
        Some(c) => truthy(c, "Loop condition")?,
        None => true,
    };
    let mut carried: Vec<Value> = formal
        .iter()
        .skip(2)
        .map(|v| v.clone().unwrap_or(Value::Optional(None)))
        .collect();
    let n = carried.len();
    let n_scan = g.outputs.len().checked_sub(1 + n).ok_or_else(|| {
        RuntimeError::msg(format!(
            "body has {} outputs, needs at least {}",
            g.outputs.len(),
            1 + n
        ))
    })?;
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan];
    let mut i: i64 = 0;
    while cond && trip.is_none_or(|m| i < m) {
        let mut args = Vec::with_capacity(2 + n + caps.len());
        args.push(Value::Tensor(Tensor::scalar(i)));
        args.push(Value::Tensor(Tensor::from_bools(vec![], vec![cond])?));
        args.append(&mut carried);
        args.extend(caps.iter().cloned());
        let mut outs = run_body(ctx, g, args, 1 + n + n_scan)?.into_iter();
        cond = truthy(
            &outs.next().ok_or_else(|| RuntimeError::msg("no cond"))?,
            "Loop body condition",
        )?;
        carried = outs.by_ref().take(n).collect();
        for (acc, v) in scans.iter_mut().zip(outs) {
            acc.push(v.into_tensor()?);
        }
        i = i
            .checked_add(1)
            .ok_or_else(|| RuntimeError::msg("iteration count overflows"))?;
    }
    let mut out = carried;
    out.extend(finish_scans(ctx, scans, &[], n)?);
    Ok(out)
}

/// A per-input (or per-output) int list attribute, defaulting to zeros.
fn per_item(ctx: &KernelCtx<'_>, name: &str, count: usize) -> Result<Vec<i64>> {
    match ctx.attrs().get(name) {
        None => Ok(vec![0; count]),
        Some(Attr::Ints(v)) if v.len() == count => Ok(v.clone()),
        Some(other) => bail!("{name} must list {count} ints, got {other:?}"),
    }
}

fn scan_kernel(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (formal, caps) = split_captures(ctx, inputs)?;
    let g = body(ctx, "body")?;
    let m = usize::try_from(ctx.attrs().int("num_scan_inputs")?)
        .ok()
        .filter(|&m| m <= formal.len())
        .ok_or_else(|| RuntimeError::msg("num_scan_inputs out of range"))?;
    let n = formal.len() - m;
    let k = g
        .outputs
        .len()
        .checked_sub(n)
        .ok_or_else(|| RuntimeError::msg("body has fewer outputs than states"))?;
    let mut states: Vec<Value> = formal[..n]
        .iter()
        .map(|v| v.clone().ok_or_else(|| RuntimeError::msg("absent state")))
        .collect::<Result<_>>()?;
    let xs: Vec<&Tensor> = formal[n..]
        .iter()
        .map(|v| match v {
            Some(v) => Ok(v.as_tensor()?),
            None => bail!("absent scan input"),
        })
        .collect::<Result<_>>()?;
    let in_axes = per_item(ctx, "scan_input_axes", m)?
        .iter()
        .zip(&xs)
        .map(|(&a, x)| norm_axis(a, x.rank()))
        .collect::<Result<Vec<_>>>()?;
    let in_rev = per_item(ctx, "scan_input_directions", m)?;
    let out_rev = per_item(ctx, "scan_output_directions", k)?;
    let out_axes_raw = per_item(ctx, "scan_output_axes", k)?;
    let len = match (xs.first(), in_axes.first()) {
        (Some(x), Some(&a)) => x.shape()[a],
        _ => bail!("Scan needs at least one scan input"),
    };
    if let Some((x, &a)) = xs.iter().zip(&in_axes).find(|(x, &a)| x.shape()[a] != len) {
        bail!(
            "scan inputs disagree on the sequence length: {len} vs {} (shape {:?})",
            x.shape()[a],
            x.shape()
        );
    }
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); k];
    for t in 0..len {
        let mut args = Vec::with_capacity(n + m + caps.len());
        args.append(&mut states);
        for ((x, &a), &rev) in xs.iter().zip(&in_axes).zip(&in_rev) {
            let idx = if rev != 0 { len - 1 - t } else { t };
            args.push(Value::Tensor(slice_axis(x, a, idx)?));
        }
        args.extend(caps.iter().cloned());
        let mut outs = run_body(ctx, g, args, n + k)?.into_iter();
        states = outs.by_ref().take(n).collect();
        for (acc, v) in scans.iter_mut().zip(outs) {
            acc.push(v.into_tensor()?);
        }
    }
    let mut out_axes = Vec::with_capacity(k);
    for (j, acc) in scans.iter_mut().enumerate() {
        if out_rev[j] != 0 {
            acc.reverse();
        }
        let rank = acc.first().map_or(0, Tensor::rank);
        out_axes.push(norm_axis(out_axes_raw[j], rank + 1)?);
    }
    let mut out = states;
    out.extend(finish_scans(ctx, scans, &out_axes, n)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Interpreter;
    use egret_ir::{OpCall, Shape};
    use std::sync::Arc;

    fn f32_ty(dims: &[usize]) -> ValueType {
        ValueType::tensor(DType::F32, Some(Shape::known(dims)))
    }

    /// A huge trip count with a condition that turns false after iteration 3:
    /// the loop stops there, carrying `x + 4` and scanning the iteration numbers.
    #[test]
    fn loop_stops_on_condition_despite_huge_trip_count() {
        let mut body = Graph::new("body");
        let i = body.add_input("i", ValueType::tensor(DType::I64, Some(Shape::known(&[]))));
        body.add_input("c", ValueType::tensor(DType::Bool, Some(Shape::known(&[]))));
        let x = body.add_input("x", f32_ty(&[1]));
        let three = body.add_const("three", Tensor::scalar(3i64));
        let one = body.add_const("one", Tensor::from_vec(vec![1], vec![1f32]).unwrap());
        let c = body.call1("lt", OpCall::new("Less"), &[i, three]).unwrap();
        let y = body.call1("add", OpCall::new("Add"), &[x, one]).unwrap();
        body.outputs = vec![c, y, i];

        let mut g = Graph::new("main");
        let x0 = g.add_input("x0", f32_ty(&[1]));
        let m = g.add_const("m", Tensor::scalar(i64::MAX));
        let t = g.add_const("t", Tensor::from_bools(vec![], vec![true]).unwrap());
        let outs = g
            .call(
                "loop",
                OpCall::new("Loop").with("body", Attr::Graph(Arc::new(body))),
                &[Some(m), Some(t), Some(x0)],
                2,
            )
            .unwrap();
        g.outputs = outs;
        let x0 = Tensor::from_vec(vec![1], vec![10f32]).unwrap();
        let got = Interpreter::new(&g)
            .unwrap()
            .run(vec![Value::Tensor(x0)])
            .unwrap();
        assert_eq!(
            got[0].as_tensor().unwrap().as_slice::<f32>().unwrap(),
            &[14.0]
        );
        let scan = got[1].as_tensor().unwrap();
        assert_eq!(scan.shape(), &[4]);
        assert_eq!(scan.as_slice::<i64>().unwrap(), &[0, 1, 2, 3]);
    }

    /// Scan along axis 1 in reverse: the state sums each row, the scan output
    /// (stacked on axis 1) is each row reversed.
    #[test]
    fn scan_reverse_input_along_axis_1() {
        let mut body = Graph::new("body");
        let s = body.add_input("s", f32_ty(&[2]));
        let x = body.add_input("x", f32_ty(&[2]));
        let s2 = body.call1("add", OpCall::new("Add"), &[s, x]).unwrap();
        body.outputs = vec![s2, x];

        let mut g = Graph::new("main");
        let s0 = g.add_input("s0", f32_ty(&[2]));
        let xs = g.add_input("xs", f32_ty(&[2, 3]));
        let outs = g
            .call(
                "scan",
                OpCall::new("Scan")
                    .with("body", Attr::Graph(Arc::new(body)))
                    .with("num_scan_inputs", Attr::Int(1))
                    .with("scan_input_axes", Attr::Ints(vec![1]))
                    .with("scan_input_directions", Attr::Ints(vec![1]))
                    .with("scan_output_axes", Attr::Ints(vec![-1])),
                &[Some(s0), Some(xs)],
                2,
            )
            .unwrap();
        g.outputs = outs;
        let s0 = Tensor::from_vec(vec![2], vec![0f32, 100.]).unwrap();
        let xs = Tensor::from_vec(vec![2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        let got = Interpreter::new(&g)
            .unwrap()
            .run(vec![Value::Tensor(s0), Value::Tensor(xs)])
            .unwrap();
        assert_eq!(
            got[0].as_tensor().unwrap().as_slice::<f32>().unwrap(),
            &[6., 115.]
        );
        let y = got[1].as_tensor().unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3., 2., 1., 6., 5., 4.]);
    }

    #[test]
    fn stack_inserts_axis() {
        let a = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
        let b = Tensor::from_vec(vec![2, 2], vec![5i32, 6, 7, 8]).unwrap();
        let s0 = stack(&[a.clone(), b.clone()], 0).unwrap();
        assert_eq!(s0.shape(), &[2, 2, 2]);
        assert_eq!(s0.as_slice::<i32>().unwrap(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let s1 = stack(&[a.clone(), b.clone()], 1).unwrap();
        assert_eq!(s1.as_slice::<i32>().unwrap(), &[1, 2, 5, 6, 3, 4, 7, 8]);
        let s2 = stack(&[a, b], 2).unwrap();
        assert_eq!(s2.shape(), &[2, 2, 2]);
        assert_eq!(s2.as_slice::<i32>().unwrap(), &[1, 5, 2, 6, 3, 7, 4, 8]);
    }

    #[test]
    fn slice_axis_drops_axis() {
        let t = Tensor::from_vec(vec![2, 3], vec![0f32, 1., 2., 3., 4., 5.]).unwrap();
        let c = slice_axis(&t, 1, 2).unwrap();
        assert_eq!(c.shape(), &[2]);
        assert_eq!(c.as_slice::<f32>().unwrap(), &[2., 5.]);
        assert!(slice_axis(&t, 0, 2).is_err());
    }
}
