//! Kernels: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare,
//! ArgMax/ArgMin, TopK, CumSum/CumProd.
//!
//! Every reduction views its input as `(outer, r, inner)` lanes: when the
//! reduced axes are adjacent this is free, otherwise the input is first
//! transposed so they are. Float sums accumulate in f64; integer sums and
//! products wrap like numpy. Empty reductions give the identity of the
//! operation (0 for sums, 1 for products, -inf/+inf for max/min, -inf for the
//! log-sums, NaN for the mean), as in the ONNX reference.

use crate::error::{Result, RuntimeError};
use crate::kernels::strided::split_at_axis;
use crate::kernels::{checked_len, input, one, opt_input};
use crate::ops::elementwise::Num;
use crate::ops::shape::{axis_of, norm_axes, opt_ints, transpose_tensor};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_dtypes};
use egret_ir::{DType, Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("ReduceSum", |c, i| reduce(c, i, ROp::Sum));
    r.add("ReduceMean", |c, i| reduce(c, i, ROp::Mean));
    r.add("ReduceMax", |c, i| reduce(c, i, ROp::Max));
    r.add("ReduceMin", |c, i| reduce(c, i, ROp::Min));
    r.add("ReduceProd", |c, i| reduce(c, i, ROp::Prod));
    r.add("ReduceL1", |c, i| reduce(c, i, ROp::L1));
    r.add("ReduceL2", |c, i| reduce(c, i, ROp::L2));
    r.add("ReduceLogSum", |c, i| reduce(c, i, ROp::LogSum));
    r.add("ReduceLogSumExp", |c, i| reduce(c, i, ROp::LogSumExp));
    r.add("ReduceSumSquare", |c, i| reduce(c, i, ROp::SumSquare));
    r.add("ArgMax", |c, i| arg_extreme(c, i, true));
    r.add("ArgMin", |c, i| arg_extreme(c, i, false));
    r.add("TopK", top_k);
    r.add("CumSum", |c, i| cumulative(c, i, false));
    r.add("CumProd", |c, i| cumulative(c, i, true));
}

/// Numeric dtypes the reductions compute on natively.
macro_rules! numeric {
    ($dt:expr, $T:ident => $body:block) => {
        for_dtypes!($dt, $T => $body, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
    };
}

/// A reduction operator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ROp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// Reduce one lane of `n` values.
fn reduce_lane<T: Num>(lane: impl Iterator<Item = T> + Clone, n: usize, op: ROp) -> T {
    let int = T::DTYPE.is_int();
    match op {
        ROp::Max | ROp::Min => {
            let init = T::from_f64(if op == ROp::Max {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
            lane.fold(init, |a, v| {
                if a.nan() || v.nan() {
                    if a.nan() {
                        a
                    } else {
                        v
                    }
                } else if (op == ROp::Max && v > a) || (op == ROp::Min && v < a) {
                    v
                } else {
                    a
                }
            })
        }
        ROp::Sum if int => lane.fold(T::default(), |a, v| a.add(v)),
        ROp::Prod if int => lane.fold(T::from_f64(1.0), |a, v| a.mul(v)),
        ROp::SumSquare if int => lane.fold(T::default(), |a, v| a.add(v.mul(v))),
        ROp::L1 if int => lane.fold(T::default(), |a, v| a.add(v.num_abs())),
        ROp::Sum => T::from_f64(lane.map(|v| v.to_f64()).sum()),
        ROp::Prod => T::from_f64(lane.map(|v| v.to_f64()).product()),
        ROp::SumSquare => T::from_f64(lane.map(|v| v.to_f64() * v.to_f64()).sum()),
        ROp::L1 => T::from_f64(lane.map(|v| v.to_f64().abs()).sum()),
        ROp::Mean => T::from_f64(lane.map(|v| v.to_f64()).sum::<f64>() / n as f64),
        ROp::L2 => T::from_f64(lane.map(|v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt()),
        ROp::LogSum => T::from_f64(lane.map(|v| v.to_f64()).sum::<f64>().ln()),
        ROp::LogSumExp => {
            let m = lane
                .clone()
                .map(|v| v.to_f64())
                .fold(f64::NEG_INFINITY, f64::max);
            if m.is_infinite() {
                return T::from_f64(lane.map(|v| v.to_f64().exp()).sum::<f64>().ln());
            }
            T::from_f64(m + lane.map(|v| (v.to_f64() - m).exp()).sum::<f64>().ln())
        }
    }
}

/// Reduce `src` viewed as `(outer, r, inner)` over the middle axis.
fn reduce_lanes<T: Num>(src: &[T], outer: usize, r: usize, inner: usize, op: ROp) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        let plane = &src[o * r * inner..(o + 1) * r * inner];
        if inner == 1 {
            out.push(reduce_lane(plane.iter().copied(), r, op));
        } else {
            for i in 0..inner {
                out.push(reduce_lane((0..r).map(|k| plane[k * inner + i]), r, op));
            }
        }
    }
    out
}

/// Reduce `x` over `axes` (sorted, unique); the result has the reduced dims kept as 1.
pub(crate) fn reduce_axes(x: &Tensor, axes: &[usize], op: ROp) -> Result<Tensor> {
    let rank = x.rank();
    let kept_shape: Vec<usize> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    // Lay the reduced axes out contiguously: free when they are adjacent (ignoring size-1 axes).
    let live: Vec<usize> = axes
        .iter()
        .copied()
        .filter(|&a| x.shape()[a] != 1)
        .collect();
    let adjacent = live
        .windows(2)
        .all(|w| (w[0] + 1..w[1]).all(|k| x.shape()[k] == 1));
    let (src, outer, r, inner) = if live.is_empty() {
        (x.clone(), x.numel(), 1, 1)
    } else if adjacent {
        let (a, b) = (live[0], live[live.len() - 1]);
        let outer: usize = x.shape()[..a].iter().product();
        let r: usize = x.shape()[a..=b].iter().product();
        (x.clone(), outer, r, x.shape()[b + 1..].iter().product())
    } else {
        let perm: Vec<usize> = (0..rank)
            .filter(|i| !axes.contains(i))
            .chain(axes.iter().copied())
            .collect();
        let r: usize = axes.iter().map(|&a| x.shape()[a]).product();
        let t = transpose_tensor(x, &perm)?;
        let outer = x
            .numel()
            .checked_div(r)
            .unwrap_or_else(|| kept_shape.iter().product());
        (t, outer, r, 1)
    };
    if x.dtype() == DType::Bool {
        if !matches!(op, ROp::Max | ROp::Min) {
            bail!("{op:?} is not defined on bool");
        }
        let v: Vec<u8> = src.as_slice::<bool>()?.iter().map(|&b| b as u8).collect();
        let out = reduce_lanes(&v, outer, r, inner, op);
        return Ok(Tensor::from_bools(
            kept_shape,
            out.iter().map(|&b| b != 0).collect(),
        )?);
    }
    numeric!(x.dtype(), T => {
        Ok(Tensor::from_vec(kept_shape, reduce_lanes(src.as_slice::<T>()?, outer, r, inner, op))?)
    })
}

fn reduce(ctx: &KernelCtx<'_>, inputs: &[Option<Value>], op: ROp) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let keepdims = ctx.attrs().int_or("keepdims", 1)? != 0;
    let noop = ctx.attrs().int_or("noop_with_empty_axes", 0)? != 0;
    let axes = match opt_ints(inputs, 1)? {
        Some(a) if !a.is_empty() => norm_axes(&a, x.rank())?,
        _ if noop => return one(x.clone()),
        _ => (0..x.rank()).collect(),
    };
    let out = reduce_axes(x, &axes, op)?;
    if keepdims {
        return one(out);
    }
    let shape: Vec<usize> = x
        .shape()
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    one(out.reshaped(shape)?)
}

/// Output shape of an op that reduces `axis` to `k` entries (or drops it).
fn shape_with_axis(shape: &[usize], axis: usize, k: Option<usize>) -> Vec<usize> {
    let mut s = shape.to_vec();
    match k {
        Some(k) => s[axis] = k,
        None => {
            s.remove(axis);
        }
    }
    s
}

fn arg_extreme(ctx: &KernelCtx<'_>, inputs: &[Option<Value>], max: bool) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let axis = axis_of(ctx.attrs().int_or("axis", 0)?, x.rank())?;
    let keepdims = ctx.attrs().int_or("keepdims", 1)? != 0;
    let last = ctx.attrs().int_or("select_last_index", 0)? != 0;
    let (outer, r, inner) = split_at_axis(x.shape(), axis);
    if r == 0 {
        bail!("cannot take ArgMax/ArgMin of an empty axis");
    }
    let v = if x.dtype() == DType::Bool {
        Tensor::from_vec(x.shape().to_vec(), x.to_i64_vec()?)?
    } else {
        x.clone()
    };
    let out: Vec<i64> = numeric!(v.dtype(), T => {
        let s = v.as_slice::<T>()?;
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| s[(o * r + k) * inner + i];
                let mut best = 0;
                for k in 1..r {
                    let (a, b) = (at(k), at(best));
                    let better = if b.nan() {
                        false
                    } else if a.nan() {
                        true
                    } else if max {
                        a > b || (last && a == b)
                    } else {
                        a < b || (last && a == b)
                    };
                    if better {
                        best = k;
                    }
                }
                out.push(best as i64);
            }
        }
        out
    });
    one(Tensor::from_vec(
        shape_with_axis(x.shape(), axis, keepdims.then_some(1)),
        out,
    )?)
}

fn top_k(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let k = input(inputs, 1)?
        .to_i64_vec()?
        .first()
        .copied()
        .ok_or_else(|| RuntimeError::msg("empty K"))?;
    let axis = axis_of(ctx.attrs().int_or("axis", -1)?, x.rank())?;
    let largest = ctx.attrs().int_or("largest", 1)? != 0;
    let (outer, r, inner) = split_at_axis(x.shape(), axis);
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= r)
        .ok_or_else(|| RuntimeError::msg(format!("K={k} outside 0..={r}")))?;
    let shape = shape_with_axis(x.shape(), axis, Some(k));
    checked_len(&shape)?;
    let mut idx_out = vec![0i64; outer * k * inner];
    let values: Tensor = numeric!(x.dtype(), T => {
        let s = x.as_slice::<T>()?;
        let mut vals = vec![T::default(); outer * k * inner];
        let mut lane: Vec<(T, usize)> = Vec::with_capacity(r);
        for o in 0..outer {
            for i in 0..inner {
                lane.clear();
                lane.extend((0..r).map(|j| (s[(o * r + j) * inner + i], j)));
                // NaN counts as the largest value; ties keep the lower index first.
                let cmp = |a: &(T, usize), b: &(T, usize)| {
                    let ord = match (a.0.nan(), b.0.nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ => a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal),
                    };
                    (if largest { ord.reverse() } else { ord }).then(a.1.cmp(&b.1))
                };
                if k < r {
                    lane.select_nth_unstable_by(k, cmp);
                    lane.truncate(k);
                }
                lane.sort_by(cmp);
                for (j, &(v, src)) in lane.iter().take(k).enumerate() {
                    vals[(o * k + j) * inner + i] = v;
                    idx_out[(o * k + j) * inner + i] = src as i64;
                }
            }
        }
        Tensor::from_vec(shape.clone(), vals)?
    });
    Ok(vec![
        Value::Tensor(values),
        Value::Tensor(Tensor::from_vec(shape, idx_out)?),
    ])
}

fn cumulative(ctx: &KernelCtx<'_>, inputs: &[Option<Value>], prod: bool) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let axis = match opt_input(inputs, 1)? {
        Some(a) => a
            .to_i64_vec()?
            .first()
            .copied()
            .ok_or_else(|| RuntimeError::msg("empty axis"))?,
        None => bail!("missing axis"),
    };
    let axis = axis_of(axis, x.rank())?;
    let exclusive = ctx.attrs().int_or("exclusive", 0)? != 0;
    let reverse = ctx.attrs().int_or("reverse", 0)? != 0;
    let (outer, r, inner) = split_at_axis(x.shape(), axis);
    numeric!(x.dtype(), T => {
        let s = x.as_slice::<T>()?;
        let identity = T::from_f64(if prod { 1.0 } else { 0.0 });
        let mut out = vec![identity; s.len()];
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = identity;
                for step in 0..r {
                    let j = if reverse { r - 1 - step } else { step };
                    let p = (o * r + j) * inner + i;
                    let next = if prod { acc.mul(s[p]) } else { acc.add(s[p]) };
                    out[p] = if exclusive { acc } else { next };
                    acc = next;
                }
            }
        }
        one(Tensor::from_vec(x.shape().to_vec(), out)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn reduce_adjacent_and_strided_axes() {
        let x = t(
            &[2, 3, 2],
            &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
        );
        let s = reduce_axes(&x, &[1], ROp::Sum).unwrap();
        assert_eq!(s.shape(), &[2, 1, 2]);
        assert_eq!(s.as_slice::<f32>().unwrap(), &[9., 12., 27., 30.]);
        let m = reduce_axes(&x, &[0, 2], ROp::Max).unwrap();
        assert_eq!(m.as_slice::<f32>().unwrap(), &[8., 10., 12.]);
        let mean = reduce_axes(&x, &[2], ROp::Mean).unwrap();
        assert_eq!(
            mean.as_slice::<f32>().unwrap(),
            &[1.5, 3.5, 5.5, 7.5, 9.5, 11.5]
        );
        let lse = reduce_axes(&t(&[2], &[0., 0.]), &[0], ROp::LogSumExp).unwrap();
        assert!((lse.as_slice::<f32>().unwrap()[0] - 2f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn empty_reductions_give_identities() {
        let x = t(&[2, 0], &[]);
        let s = reduce_axes(&x, &[1], ROp::Sum).unwrap();
        assert_eq!(s.as_slice::<f32>().unwrap(), &[0., 0.]);
        let p = reduce_axes(&x, &[1], ROp::Prod).unwrap();
        assert_eq!(p.as_slice::<f32>().unwrap(), &[1., 1.]);
        let m = reduce_axes(&x, &[1], ROp::Max).unwrap();
        assert_eq!(m.as_slice::<f32>().unwrap(), &[f32::NEG_INFINITY; 2]);
    }

    #[test]
    fn integer_and_bool_reductions() {
        let x = Tensor::from_vec(vec![3], vec![i64::MAX, 1, 1]).unwrap();
        let s = reduce_axes(&x, &[0], ROp::Sum).unwrap();
        assert_eq!(s.as_slice::<i64>().unwrap(), &[i64::MIN + 1]);
        let b = Tensor::from_bools(vec![2, 2], vec![true, false, false, false]).unwrap();
        let m = reduce_axes(&b, &[1], ROp::Max).unwrap();
        assert_eq!(m.as_slice::<bool>().unwrap(), &[true, false]);
    }
}
