//! Kernels: BatchNormalization, InstanceNormalization, LayerNormalization,
//! RMSNormalization, GroupNormalization, LRN, LpNormalization,
//! MeanVarianceNormalization.
//!
//! Every normalization reduces to "standardize contiguous rows" ([`row_stats`])
//! after viewing the input as a `[rows, cols]` matrix (MeanVarianceNormalization
//! first permutes its reduced axes to the back). Computation is generic over
//! [`Real`]: f32 and f64 natively, f16/bf16 through f32.

use crate::error::{Result, RuntimeError};
use crate::kernels::workprec::{load, store, Real};
use crate::kernels::{input, norm_axis, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::with_workprec;
use egret_ir::{Tensor, Value};
use ndarray::{ArrayViewD, IxDyn};
use num_traits::{One, Zero};
use rayon::prelude::*;
use std::borrow::Cow;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("BatchNormalization", batch_norm);
    r.add("InstanceNormalization", instance_norm);
    r.add("LayerNormalization", layer_norm);
    r.add("RMSNormalization", rms_norm);
    r.add("GroupNormalization", group_norm);
    r.add("LRN", lrn);
    r.add("LpNormalization", lp_norm);
    r.add("MeanVarianceNormalization", mvn);
}

/// Elements above which row loops are split across threads.
const PAR_THRESHOLD: usize = 1 << 15;

/// `(outer, len, inner)` sizes of `shape` around `axis`.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// The values of `t` broadcast (numpy-style, unidirectionally) to `target`.
fn broadcast_to<'a, T: Real>(t: &'a Tensor, target: &[usize]) -> Result<Cow<'a, [T]>> {
    let s = load::<T>(t)?;
    if t.shape() == target {
        return Ok(s);
    }
    let v = ArrayViewD::from_shape(IxDyn(t.shape()), &s)
        .map_err(|e| RuntimeError::msg(e.to_string()))?;
    let b = v.broadcast(IxDyn(target)).ok_or_else(|| {
        RuntimeError::msg(format!("cannot broadcast {:?} to {target:?}", t.shape()))
    })?;
    Ok(Cow::Owned(b.iter().copied().collect()))
}

/// Mean and inverse standard deviation `1/sqrt(var + eps)` of one row. With
/// `rms`, the mean is taken as zero (root-mean-square normalization).
fn row_stats<T: Real>(row: &[T], eps: T, rms: bool) -> (T, T) {
    let n = T::of(row.len().max(1) as f64);
    let mean = if rms {
        T::zero()
    } else {
        lane_sum(row, |x| x) / n
    };
    let var = lane_sum(row, |x| (x - mean) * (x - mean)) / n;
    (mean, T::one() / (var + eps).sqrt())
}

/// `Σ f(x)` over `row` in eight interleaved partial sums, which the compiler
/// turns into SIMD (one serial sum waits on every add: it was most of a
/// LayerNorm's time at BERT sizes).
fn lane_sum<T: Real>(row: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = *a + f(x);
        }
    }
    let tail = chunks.remainder().iter().fold(T::zero(), |s, &x| s + f(x));
    acc.iter().fold(tail, |s, &a| s + a)
}

/// Standardize each `cols`-long row of `x` in place, then apply `finish(row, col, y)`.
/// Returns the per-row `(mean, inv_std)`.
fn normalize_rows<T: Real>(
    x: &mut [T],
    cols: usize,
    eps: T,
    rms: bool,
    finish: impl Fn(usize, usize, T) -> T + Sync,
) -> Vec<(T, T)> {
    if cols == 0 {
        return Vec::new();
    }
    let work = |(r, row): (usize, &mut [T])| {
        let (mean, inv) = row_stats(row, eps, rms);
        for (c, v) in row.iter_mut().enumerate() {
            *v = finish(r, c, (*v - mean) * inv);
        }
        (mean, inv)
    };
    if x.len() >= PAR_THRESHOLD {
        x.par_chunks_mut(cols).enumerate().map(work).collect()
    } else {
        x.chunks_mut(cols).enumerate().map(work).collect()
    }
}

/// Output tensor of input `x`'s dtype.
fn out_like<T: Real>(x: &Tensor, data: Vec<T>) -> Result<Value> {
    Ok(Value::Tensor(store(x.dtype(), x.shape().to_vec(), data)?))
}

fn epsilon<T: Real>(ctx: &KernelCtx<'_>, default: f32) -> Result<T> {
    Ok(T::of(ctx.attrs().float_or("epsilon", default)? as f64))
}

/// LayerNormalization (and, with `rms`, RMSNormalization) over `axis..`.
fn layer_like(ctx: &KernelCtx<'_>, inputs: &[Option<Value>], rms: bool) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    require_float(x.dtype(), "X")?;
    let axis = norm_axis(ctx.attrs().int_or("axis", -1)?, x.rank())?;
    let tail = &x.shape()[axis..];
    let cols: usize = tail.iter().product();
    let scale = input(inputs, 1)?;
    let bias = if rms { None } else { opt_input(inputs, 2)? };
    with_workprec!(x.dtype(), T => {
        let eps = epsilon::<T>(ctx, 1e-5)?;
        let s = broadcast_to::<T>(scale, tail)?;
        let b = bias.map(|b| broadcast_to::<T>(b, tail)).transpose()?;
        let mut y = load::<T>(x)?.into_owned();
        let stats = match &b {
            Some(b) => normalize_rows(&mut y, cols, eps, rms, |_, c, v| v * s[c] + b[c]),
            None => normalize_rows(&mut y, cols, eps, rms, |_, c, v| v * s[c]),
        };
        let mut out = vec![out_like(x, y)?];
        if !rms && ctx.num_outputs() > 1 {
            let mut stat_shape = x.shape()[..axis].to_vec();
            stat_shape.resize(x.rank(), 1);
            let means = stats.iter().map(|s| s.0).collect();
            let invs = stats.iter().map(|s| s.1).collect();
            out.push(Value::Tensor(store(x.dtype(), stat_shape.clone(), means)?));
            out.push(Value::Tensor(store(x.dtype(), stat_shape, invs)?));
            out.truncate(ctx.num_outputs());
        }
        Ok(out)
    })
}

fn layer_norm(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    layer_like(ctx, inputs, false)
}

fn rms_norm(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    layer_like(ctx, inputs, true)
}

/// `(N, C, spatial)` of an `[N, C, ...]` input.
fn nc_spatial(x: &Tensor) -> Result<(usize, usize, usize)> {
    if x.rank() < 2 {
        return Err(RuntimeError::msg(format!(
            "expected an [N, C, ...] input, got shape {:?}",
            x.shape()
        )));
    }
    Ok((x.shape()[0], x.shape()[1], x.shape()[2..].iter().product()))
}

/// A per-channel parameter of length `c`.
fn per_channel<T: Real>(t: &Tensor, c: usize, what: &str) -> Result<Vec<T>> {
    let v = load::<T>(t)?;
    if v.len() != c {
        return Err(RuntimeError::msg(format!(
            "{what} has {} elements, expected {c}",
            v.len()
        )));
    }
    Ok(v.into_owned())
}

/// InstanceNormalization: standardize each (n, c) plane, then per-channel affine.
fn instance_norm(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    require_float(x.dtype(), "input")?;
    let (_, c, spatial) = nc_spatial(x)?;
    with_workprec!(x.dtype(), T => {
        let s = per_channel::<T>(input(inputs, 1)?, c, "scale")?;
        let b = per_channel::<T>(input(inputs, 2)?, c, "B")?;
        let mut y = load::<T>(x)?.into_owned();
        normalize_rows(&mut y, spatial, epsilon::<T>(ctx, 1e-5)?, false, |r, _, v| v * s[r % c] + b[r % c]);
        Ok(vec![out_like(x, y)?])
    })
}

/// GroupNormalization (opset 21): standardize each (n, group), per-channel affine.
fn group_norm(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    require_float(x.dtype(), "X")?;
    let (_, c, spatial) = nc_spatial(x)?;
    let g = ctx.attrs().int("num_groups")?;
    if g <= 0 || c % g as usize != 0 {
        return Err(RuntimeError::msg(format!(
            "num_groups {g} does not divide {c} channels"
        )));
    }
    let g = g as usize;
    let per_group = c / g;
    with_workprec!(x.dtype(), T => {
        let s = per_channel::<T>(input(inputs, 1)?, c, "scale")?;
        let b = per_channel::<T>(input(inputs, 2)?, c, "bias")?;
        let mut y = load::<T>(x)?.into_owned();
        normalize_rows(&mut y, per_group * spatial, epsilon::<T>(ctx, 1e-5)?, false, |r, col, v| {
            let ch = (r % g) * per_group + col / spatial.max(1);
            v * s[ch] + b[ch]
        });
        Ok(vec![out_like(x, y)?])
    })
}

/// BatchNormalization: inference with running stats, or (training_mode=1) with
/// batch stats, also returning the updated running mean and variance.
fn batch_norm(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    require_float(x.dtype(), "X")?;
    let (n, c, spatial) = nc_spatial(x)?;
    let training = ctx.attrs().int_or("training_mode", 0)? != 0;
    let mean_t = input(inputs, 3)?;
    with_workprec!(x.dtype(), T => {
        let eps = epsilon::<T>(ctx, 1e-5)?;
        let s = per_channel::<T>(input(inputs, 1)?, c, "scale")?;
        let b = per_channel::<T>(input(inputs, 2)?, c, "B")?;
        let run_mean = per_channel::<T>(mean_t, c, "input_mean")?;
        let run_var = per_channel::<T>(input(inputs, 4)?, c, "input_var")?;
        let xs = load::<T>(x)?;
        let (mean, var) = if training {
            let count = T::of((n * spatial).max(1) as f64);
            let plane = |ch: usize| (0..n).flat_map(move |i| (i * c + ch) * spatial..(i * c + ch + 1) * spatial);
            let mean: Vec<T> = (0..c).map(|ch| plane(ch).map(|k| xs[k]).sum::<T>() / count).collect();
            let var: Vec<T> =
                (0..c).map(|ch| plane(ch).map(|k| (xs[k] - mean[ch]) * (xs[k] - mean[ch])).sum::<T>() / count).collect();
            (mean, var)
        } else {
            (run_mean.clone(), run_var.clone())
        };
        let mul: Vec<T> = (0..c).map(|ch| s[ch] / (var[ch] + eps).sqrt()).collect();
        let y: Vec<T> = xs
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let ch = (k / spatial.max(1)) % c;
                (v - mean[ch]) * mul[ch] + b[ch]
            })
            .collect();
        let mut out = vec![out_like(x, y)?];
        if training && ctx.num_outputs() > 1 {
            let m = T::of(ctx.attrs().float_or("momentum", 0.9)? as f64);
            let upd = |run: &[T], cur: &[T]| -> Vec<T> {
                run.iter().zip(cur).map(|(&r, &v)| r * m + v * (T::one() - m)).collect()
            };
            out.push(Value::Tensor(store(mean_t.dtype(), vec![c], upd(&run_mean, &mean))?));
            out.push(Value::Tensor(store(mean_t.dtype(), vec![c], upd(&run_var, &var))?));
            out.truncate(ctx.num_outputs());
        }
        Ok(out)
    })
}

/// LRN across channels: `x / (bias + alpha/size * sum(x^2 over the window))^beta`.
fn lrn(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    require_float(x.dtype(), "X")?;
    let (n, c, spatial) = nc_spatial(x)?;
    let a = ctx.attrs();
    let size = a.int("size")?;
    if size <= 0 {
        return Err(RuntimeError::msg(format!(
            "LRN size must be positive, got {size}"
        )));
    }
    let (alpha, beta, bias) = (
        a.float_or("alpha", 1e-4)? as f64,
        a.float_or("beta", 0.75)? as f64,
        a.float_or("bias", 1.0)? as f64,
    );
    let before = ((size - 1) / 2) as usize;
    let after = (size as usize - 1).div_ceil(2);
    with_workprec!(x.dtype(), T => {
        let xs = load::<T>(x)?;
        let (alpha, beta, bias) = (T::of(alpha / size as f64), T::of(beta), T::of(bias));
        let mut y = vec![T::zero(); xs.len()];
        for i in 0..n {
            for ch in 0..c {
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                for p in 0..spatial {
                    let sq: T = (lo..=hi).map(|k| xs[(i * c + k) * spatial + p]).map(|v| v * v).sum();
                    let at = (i * c + ch) * spatial + p;
                    y[at] = xs[at] / (bias + alpha * sq).powf(beta);
                }
            }
        }
        Ok(vec![out_like(x, y)?])
    })
}

/// LpNormalization along `axis` with p = 1 or 2; a zero norm gives zeros.
fn lp_norm(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    require_float(x.dtype(), "input")?;
    let axis = norm_axis(ctx.attrs().int_or("axis", -1)?, x.rank())?;
    let p = ctx.attrs().int_or("p", 2)?;
    if p != 1 && p != 2 {
        return Err(RuntimeError::msg(format!(
            "LpNormalization supports p = 1 or 2, got {p}"
        )));
    }
    if x.rank() == 0 {
        return Err(RuntimeError::msg(
            "LpNormalization needs a tensor of rank >= 1",
        ));
    }
    let (outer, len, inner) = split_at_axis(x.shape(), axis);
    with_workprec!(x.dtype(), T => {
        let xs = load::<T>(x)?;
        let mut y = xs.to_vec();
        for o in 0..outer {
            for i in 0..inner {
                let idx = |k: usize| (o * len + k) * inner + i;
                let norm = if p == 1 {
                    (0..len).map(|k| xs[idx(k)].abs()).sum::<T>()
                } else {
                    (0..len).map(|k| xs[idx(k)] * xs[idx(k)]).sum::<T>().sqrt()
                };
                for k in 0..len {
                    y[idx(k)] = if norm == T::zero() { T::zero() } else { xs[idx(k)] / norm };
                }
            }
        }
        Ok(vec![out_like(x, y)?])
    })
}

/// MeanVarianceNormalization over `axes` (default `[0, 2, 3]`): `(x - E x) / sqrt(Var x)`,
/// with the function body's epsilon of 1e-9 inside the square root.
fn mvn(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    require_float(x.dtype(), "X")?;
    let rank = x.rank();
    let mut reduced = vec![false; rank];
    for &a in ctx.attrs().ints_opt("axes")?.unwrap_or(&[0, 2, 3]) {
        reduced[norm_axis(a, rank)?] = true;
    }
    // Permute kept axes first, reduced axes last, so each kept index is a row.
    let perm: Vec<usize> = (0..rank)
        .filter(|&i| !reduced[i])
        .chain((0..rank).filter(|&i| reduced[i]))
        .collect();
    let cols: usize = perm
        .iter()
        .filter(|&&i| reduced[i])
        .map(|&i| x.shape()[i])
        .product();
    with_workprec!(x.dtype(), T => {
        let xs = load::<T>(x)?;
        let v = ArrayViewD::from_shape(IxDyn(x.shape()), &xs).map_err(|e| RuntimeError::msg(e.to_string()))?;
        let mut rows: Vec<T> = v.view().permuted_axes(IxDyn(&perm)).iter().copied().collect();
        normalize_rows(&mut rows, cols, T::of(1e-9), false, |_, _, v| v);
        let permuted_shape: Vec<usize> = perm.iter().map(|&i| x.shape()[i]).collect();
        let arr = ndarray::ArrayD::from_shape_vec(IxDyn(&permuted_shape), rows).map_err(|e| RuntimeError::msg(e.to_string()))?;
        let mut inverse = vec![0; rank];
        for (k, &p) in perm.iter().enumerate() {
            inverse[p] = k;
        }
        let y: Vec<T> = arr.permuted_axes(IxDyn(&inverse)).iter().copied().collect();
        Ok(vec![out_like(x, y)?])
    })
}

/// Fail unless `dt` is a natively computed float dtype.
pub(crate) fn require_float(dt: egret_ir::DType, what: &str) -> Result<()> {
    if dt.is_float() {
        Ok(())
    } else {
        Err(RuntimeError::msg(format!(
            "{what} must be a float tensor, got {dt}"
        )))
    }
}

/// Test support shared by this helper's op files: run one node (inputs as
/// constants, `None` = absent) through inference and the interpreter.
#[cfg(test)]
pub(crate) fn run_op(
    op: &str,
    attrs: egret_ir::Attrs,
    inputs: Vec<Option<Tensor>>,
    nout: usize,
) -> Vec<Tensor> {
    use egret_ir::infer::{infer_call, InputFact};
    use egret_ir::{Graph, Op, OpCall, OutletId, ValueInfo};
    let mut g = Graph::new("t");
    let outlets: Vec<Option<OutletId>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.clone().map(|t| g.add_const(&format!("in{i}"), t)))
        .collect();
    let call = OpCall {
        domain: String::new(),
        op_type: op.into(),
        attrs,
    };
    let facts: Vec<Option<InputFact<'_>>> = outlets
        .iter()
        .map(|o| {
            o.map(|o| InputFact {
                ty: g.value_type(o),
                value: g.const_value(o),
            })
        })
        .collect();
    let tys = infer_call("n", &call, &facts, nout).unwrap();
    let outputs = tys
        .into_iter()
        .take(nout)
        .enumerate()
        .map(|(i, ty)| ValueInfo {
            name: format!("out{i}"),
            ty,
        })
        .collect();
    let id = g.add_node("n", Op::Call(call), outlets, outputs).unwrap();
    g.outputs = (0..nout).map(|k| OutletId::new(id, k)).collect();
    let interp = crate::Interpreter::new(&g).unwrap();
    interp
        .run(vec![])
        .unwrap()
        .into_iter()
        .map(|v| v.into_tensor().unwrap())
        .collect()
}

/// Run one node in a test and return its outputs as f64 vectors.
#[cfg(test)]
pub(crate) fn run1(
    op: &str,
    attrs: egret_ir::Attrs,
    inputs: Vec<Tensor>,
    nout: usize,
) -> Vec<Vec<f64>> {
    run_op(op, attrs, inputs.into_iter().map(Some).collect(), nout)
        .into_iter()
        .map(|t| t.to_f64_vec().unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::{Attr, Attrs};

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn layer_norm_last_axis_with_stats() {
        let out = run1(
            "LayerNormalization",
            Attrs::default(),
            vec![
                t(&[2, 2], &[1.0, 3.0, 2.0, 2.0]),
                t(&[2], &[1.0, 2.0]),
                t(&[2], &[0.5, 0.0]),
            ],
            3,
        );
        close(&out[0], &[-0.5 + 0.0, 2.0 * 0.999995, 0.5, 0.0]);
        close(&out[1], &[2.0, 2.0]);
        close(
            &out[2],
            &[1.0 / (1.0f64 + 1e-5).sqrt(), 1.0 / 1e-5f64.sqrt()],
        );
    }

    #[test]
    fn rms_norm_scales_by_rms() {
        let out = run1(
            "RMSNormalization",
            Attrs::default(),
            vec![t(&[1, 2], &[3.0, 4.0]), t(&[2], &[1.0, 1.0])],
            1,
        );
        let rms = (12.5f64 + 1e-5).sqrt();
        close(&out[0], &[3.0 / rms, 4.0 / rms]);
    }

    #[test]
    fn group_and_instance_norm_agree_when_groups_eq_channels() {
        let x = t(&[1, 2, 2], &[1.0, 2.0, 10.0, 30.0]);
        let s = t(&[2], &[2.0, 1.0]);
        let b = t(&[2], &[0.0, 1.0]);
        let mut a = Attrs::default();
        a.set("num_groups", Attr::Int(2));
        let g = run1(
            "GroupNormalization",
            a,
            vec![x.clone(), s.clone(), b.clone()],
            1,
        );
        let i = run1("InstanceNormalization", Attrs::default(), vec![x, s, b], 1);
        close(&g[0], &i[0]);
        close(
            &i[0],
            &[-2.0 * 0.99998, 2.0 * 0.99998, 1.0 - 0.99999, 1.0 + 0.99999],
        );
    }

    #[test]
    fn batch_norm_inference_and_training() {
        let x = t(&[2, 1, 1], &[1.0, 3.0]);
        let one = t(&[1], &[1.0]);
        let zero = t(&[1], &[0.0]);
        let out = run1(
            "BatchNormalization",
            Attrs::default(),
            vec![
                x.clone(),
                one.clone(),
                zero.clone(),
                zero.clone(),
                one.clone(),
            ],
            1,
        );
        close(
            &out[0],
            &[1.0 / (1.0f64 + 1e-5).sqrt(), 3.0 / (1.0f64 + 1e-5).sqrt()],
        );
        let mut a = Attrs::default();
        a.set("training_mode", Attr::Int(1));
        let out = run1(
            "BatchNormalization",
            a,
            vec![x, one.clone(), zero.clone(), zero, one],
            3,
        );
        close(
            &out[0],
            &[-1.0 / (1.0f64 + 1e-5).sqrt(), 1.0 / (1.0f64 + 1e-5).sqrt()],
        );
        close(&out[1], &[0.2]);
        close(&out[2], &[0.9 + 0.1]);
    }

    #[test]
    fn lp_lrn_mvn() {
        let out = run1(
            "LpNormalization",
            Attrs::default(),
            vec![t(&[2, 2], &[3.0, 4.0, 0.0, 0.0])],
            1,
        );
        close(&out[0], &[0.6, 0.8, 0.0, 0.0]);
        let mut a = Attrs::default();
        a.set("size", Attr::Int(3));
        a.set("alpha", Attr::Float(3.0));
        a.set("beta", Attr::Float(1.0));
        let out = run1("LRN", a, vec![t(&[1, 2, 1, 1], &[1.0, 2.0])], 1);
        // window covers both channels: sum of squares 5, denominator 1 + 3/3*5 = 6.
        close(&out[0], &[1.0 / 6.0, 2.0 / 6.0]);
        let out = run1(
            "MeanVarianceNormalization",
            Attrs::default(),
            vec![t(&[2, 1, 1, 1], &[1.0, 3.0])],
            1,
        );
        close(&out[0], &[-1.0, 1.0]);
    }
}
