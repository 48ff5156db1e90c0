//! Kernels: MaxPool, AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool,
//! GlobalLpPool, MaxUnpool.
//!
//! Windowed pools share one driver ([`pool_planes`]): per axis and output
//! position it precomputes the in-bounds input coordinates and the number of
//! taps inside the padded extent (the `count_include_pad` divisor), then visits
//! every output position of every `(n, c)` plane in parallel. Taps that fall in
//! the extra region `ceil_mode` adds beyond the end padding are never counted.

use crate::error::Result;
use crate::kernels::window::{for_each_index, Window};
use crate::kernels::workprec::{load, store, Real};
use crate::kernels::{checked_len, input, one, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_dtypes, with_workprec};
use egret_ir::{Attrs, Tensor, Value};
use num_traits::{Float, ToPrimitive};
use rayon::prelude::*;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("MaxPool", max_pool);
    r.add("AveragePool", average_pool);
    r.add("LpPool", lp_pool);
    r.add("GlobalAveragePool", global_average_pool);
    r.add("GlobalMaxPool", global_max_pool);
    r.add("GlobalLpPool", global_lp_pool);
    r.add("MaxUnpool", max_unpool);
}

/// Per output position on one axis: the in-bounds input coordinates of its
/// taps, and how many taps lie inside the padded extent.
struct AxisTaps {
    coords: Vec<Vec<usize>>,
    padded: Vec<usize>,
}

fn axis_taps(w: &Window, i: usize) -> AxisTaps {
    let (x, pb, pe) = (
        w.input[i] as isize,
        w.pad_begin[i] as isize,
        w.pad_end[i] as isize,
    );
    let mut coords = Vec::with_capacity(w.output[i]);
    let mut padded = Vec::with_capacity(w.output[i]);
    for o in 0..w.output[i] {
        let start = (o * w.strides[i]) as isize - pb;
        let taps = (0..w.kernel[i]).map(|k| start + (k * w.dilations[i]) as isize);
        padded.push(taps.clone().filter(|&c| c >= -pb && c < x + pe).count());
        coords.push(
            taps.filter(|&c| c >= 0 && c < x)
                .map(|c| c as usize)
                .collect(),
        );
    }
    AxisTaps { coords, padded }
}

/// Run `f(plane, offsets, padded_count)` for every output position of every
/// plane (`offsets` are the row-major spatial offsets of the in-bounds taps),
/// collecting the results in output order.
fn pool_planes<R: Send + Default + Clone>(
    planes: usize,
    w: &Window,
    f: impl Fn(usize, &[usize], usize) -> R + Sync,
) -> Result<Vec<R>> {
    let n = w.rank();
    let osz = w.output_size();
    let taps: Vec<AxisTaps> = (0..n).map(|i| axis_taps(w, i)).collect();
    let mut strides = vec![1usize; n];
    for i in (0..n.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * w.input[i + 1];
    }
    let mut out = vec![R::default(); checked_len(&[planes, osz])?];
    if out.is_empty() {
        return Ok(out);
    }
    out.par_chunks_mut(osz).enumerate().for_each(|(p, dst)| {
        let (mut offs, mut next) = (Vec::new(), Vec::new());
        let mut pos = 0;
        for_each_index(&w.output, |o| {
            offs.clear();
            offs.push(0usize);
            let mut padded = 1;
            for i in 0..n {
                next.clear();
                for &base in &offs {
                    next.extend(taps[i].coords[o[i]].iter().map(|&c| base + c * strides[i]));
                }
                std::mem::swap(&mut offs, &mut next);
                padded *= taps[i].padded[o[i]];
            }
            dst[pos] = f(p, &offs, padded);
            pos += 1;
        });
    });
    Ok(out)
}

/// Window geometry of a pooling node over input shape `xs` (`[N, C, spatial...]`).
fn pool_window(attrs: &Attrs, xs: &[usize]) -> Result<Window> {
    if xs.len() < 3 {
        bail!("pooling input must have rank >= 3, got {xs:?}");
    }
    let k = attrs
        .ints_opt("kernel_shape")?
        .ok_or_else(|| crate::error::RuntimeError::msg("missing kernel_shape"))?;
    if k.len() != xs.len() - 2 || k.iter().any(|&v| v < 1) {
        bail!("kernel_shape {k:?} does not fit input {xs:?}");
    }
    Window::from_attrs(attrs, &xs[2..], k.iter().map(|&v| v as usize).collect())
}

/// Output shape `[N, C, out...]`.
fn out_shape(xs: &[usize], w: &Window) -> Vec<usize> {
    [xs[..2].to_vec(), w.output.clone()].concat()
}

/// Index of the maximum of `offs` in `plane` (first wins; NaN never replaces).
fn argmax<T: PartialOrd + Copy>(plane: &[T], offs: &[usize]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for &o in offs {
        if best.is_none_or(|b| plane[o] > plane[b]) {
            best = Some(o);
        }
    }
    best
}

/// MaxPool with optional Indices (flat over the whole input, row- or column-major spatially).
fn max_pool(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let xs = x.shape();
    let w = pool_window(ctx.attrs(), xs)?;
    let isz = w.input_size();
    let col_major = ctx.attrs().int_or("storage_order", 0)? != 0;
    let shape = out_shape(xs, &w);
    let planes = xs[0] * xs[1];
    // Convert a row-major spatial offset into the index Indices reports.
    let index_of = |p: usize, off: usize| -> i64 {
        let spatial = if col_major {
            let (mut rem, mut idx, mut cm) = (off, 0, 1);
            let mut coords = vec![0; w.rank()];
            for i in (0..w.rank()).rev() {
                coords[i] = rem % w.input[i];
                rem /= w.input[i];
            }
            for (i, &c) in coords.iter().enumerate() {
                idx += c * cm;
                cm *= w.input[i];
            }
            idx
        } else {
            off
        };
        (p * isz + spatial) as i64
    };
    for_dtypes!(x.dtype(), T => {
        let xv = x.as_slice::<T>()?;
        if xv.len() != planes * isz {
            bail!("MaxPool data does not match its shape");
        }
        let res = pool_planes(planes, &w, |p, offs, _| {
            let plane = &xv[p * isz..(p + 1) * isz];
            argmax(plane, offs).map_or((T::default(), -1), |b| (plane[b], index_of(p, b)))
        })?;
        let mut outs = vec![Value::Tensor(Tensor::from_vec(shape.clone(), res.iter().map(|r| r.0).collect::<Vec<T>>())?)];
        if ctx.num_outputs() > 1 {
            outs.push(Value::Tensor(Tensor::from_vec(shape, res.iter().map(|r| r.1).collect::<Vec<i64>>())?));
        }
        Ok(outs)
    }, [F32, F64, F16, BF16, I8, U8, I16, U16, I32, U32, I64, U64])
}

/// Shared body of AveragePool and LpPool: `f(values, padded_count)` per window, at working precision.
fn float_pool(
    ctx: &KernelCtx<'_>,
    inputs: &[Option<Value>],
    f: impl Fn(&mut dyn Iterator<Item = f64>, usize, usize) -> f64 + Sync,
) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let xs = x.shape();
    let w = pool_window(ctx.attrs(), xs)?;
    let isz = w.input_size();
    let planes = xs[0] * xs[1];
    with_workprec!(x.dtype(), W => {
        let xv = load::<W>(x)?;
        if xv.len() != planes * isz {
            bail!("pooling data does not match its shape");
        }
        let res = pool_planes(planes, &w, |p, offs, padded| {
            let plane = &xv[p * isz..(p + 1) * isz];
            W::of(f(&mut offs.iter().map(|&o| plane[o].to_f64().unwrap_or(f64::NAN)), offs.len(), padded))
        })?;
        one(store::<W>(x.dtype(), out_shape(xs, &w), res)?)
    })
}

/// AveragePool (`count_include_pad` divides by the taps inside the padded extent).
fn average_pool(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    if ctx.attrs().int_or("count_include_pad", 0)? != 0 {
        float_pool(ctx, inputs, |v, _, padded| v.sum::<f64>() / padded as f64)
    } else {
        float_pool(ctx, inputs, |v, valid, _| v.sum::<f64>() / valid as f64)
    }
}

/// `(Σ|x|^p)^(1/p)`.
fn lp_norm(v: &mut dyn Iterator<Item = f64>, p: f64) -> f64 {
    v.map(|x| x.abs().powf(p)).sum::<f64>().powf(1.0 / p)
}

/// LpPool (any integer p >= 1; padding contributes nothing).
fn lp_pool(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let p = ctx.attrs().int_or("p", 2)?;
    if p < 1 {
        bail!("LpPool p = {p} must be >= 1");
    }
    float_pool(ctx, inputs, move |v, _, _| lp_norm(v, p as f64))
}

/// Reduce every `(n, c)` plane of a float tensor to one value; output `[N, C, 1...]`.
fn global<W: Real>(x: &Tensor, f: impl Fn(&[W]) -> W + Sync) -> Result<Tensor> {
    let xs = x.shape();
    if xs.len() < 2 {
        bail!("global pooling input must have rank >= 2");
    }
    let xv = load::<W>(x)?;
    let isz: usize = xs[2..].iter().product();
    let planes = xs[0] * xs[1];
    if xv.len() != planes * isz {
        bail!("pooling data does not match its shape");
    }
    let out: Vec<W> = (0..planes)
        .into_par_iter()
        .map(|p| f(&xv[p * isz..(p + 1) * isz]))
        .collect();
    let shape: Vec<usize> = xs
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect();
    store::<W>(x.dtype(), shape, out)
}

/// GlobalAveragePool.
fn global_average_pool(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    with_workprec!(x.dtype(), W => {
        one(global::<W>(x, |p| p.iter().fold(W::default(), |a, &b| a + b) / W::of(p.len() as f64))?)
    })
}

/// GlobalMaxPool.
fn global_max_pool(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    with_workprec!(x.dtype(), W => {
        one(global::<W>(x, |p| p.iter().copied().fold(W::neg_infinity(), |a, b| if b > a || b.is_nan() { b } else { a }))?)
    })
}

/// GlobalLpPool.
fn global_lp_pool(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let p = ctx.attrs().int_or("p", 2)? as f64;
    if p <= 0.0 {
        bail!("GlobalLpPool p must be positive");
    }
    with_workprec!(x.dtype(), W => {
        one(global::<W>(x, |v| W::of(lp_norm(&mut v.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)), p)))?)
    })
}

/// MaxUnpool: scatter X by Indices into the inferred `(in-1)·s - pads + k`
/// shape, then place that at the origin of `output_shape` (when given).
fn max_unpool(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, idx) = (input(inputs, 0)?, input(inputs, 1)?);
    let xs = x.shape();
    if xs.len() < 3 || idx.shape() != xs {
        bail!(
            "MaxUnpool X {:?} and I {:?} must match with rank >= 3",
            xs,
            idx.shape()
        );
    }
    let n = xs.len() - 2;
    let attrs = ctx.attrs();
    let k = attrs
        .ints_opt("kernel_shape")?
        .ok_or_else(|| crate::error::RuntimeError::msg("missing kernel_shape"))?;
    let s = crate::kernels::window::usizes_attr(attrs, "strides", n, 1)?;
    let pads = crate::kernels::window::usizes_attr(attrs, "pads", 2 * n, 0)?;
    if k.len() != n || k.iter().any(|&v| v < 1) {
        bail!("kernel_shape {k:?} does not fit input {xs:?}");
    }
    let mut inferred = xs[..2].to_vec();
    for i in 0..n {
        // i128: strides, pads and kernel are untrusted attributes.
        let v = (xs[i + 2] as i128 - 1) * s[i] as i128 - pads[i] as i128 - pads[n + i] as i128
            + k[i] as i128;
        inferred.push(usize::try_from(v).map_err(|_| {
            crate::error::RuntimeError::msg(format!("MaxUnpool output extent {v} out of range"))
        })?);
    }
    let shape = match opt_input(inputs, 2)? {
        None => inferred.clone(),
        Some(t) => {
            let v = t.to_i64_vec()?;
            if v.len() != xs.len() || v.iter().zip(&inferred).any(|(&o, &i)| o < i as i64) {
                bail!("MaxUnpool output_shape {v:?} smaller than inferred {inferred:?}");
            }
            v.iter().map(|&d| d as usize).collect()
        }
    };
    let total = checked_len(&inferred)?;
    let len = checked_len(&shape)?;
    let iv = idx.to_i64_vec()?;
    // Map a flat index of the inferred shape to the output shape.
    let remap = |mut f: usize| -> usize {
        let (mut out, mut mul) = (0, 1);
        for d in (0..shape.len()).rev() {
            out += (f % inferred[d]) * mul;
            f /= inferred[d];
            mul *= shape[d];
        }
        out
    };
    for_dtypes!(x.dtype(), T => {
        let xv = x.as_slice::<T>()?;
        let mut out = vec![T::default(); len];
        for (&i, &v) in iv.iter().zip(xv) {
            if i < 0 || i as usize >= total {
                bail!("MaxUnpool index {i} out of range for {inferred:?}");
            }
            out[remap(i as usize)] = v;
        }
        one(Tensor::from_vec(shape, out)?)
    }, [F32, F64, F16, BF16, I8, U8, I16, U16, I32, U32, I64, U64])
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::Attr;

    fn window(list: &[(&str, Attr)], input: &[usize], k: Vec<usize>) -> Window {
        let mut a = Attrs::default();
        for (name, v) in list {
            a.set(name, v.clone());
        }
        Window::from_attrs(&a, input, k).unwrap()
    }

    #[test]
    fn average_counts_and_max() {
        // 1-D input [1,2,3,4], k 3, s 2, pads 1/1 -> windows [-1..2), [1..4), [3..6)
        let w = window(
            &[
                ("strides", Attr::Ints(vec![2])),
                ("pads", Attr::Ints(vec![1, 1])),
            ],
            &[4],
            vec![3],
        );
        assert_eq!(w.output, vec![2]);
        let x = [1.0, 2.0, 3.0, 4.0];
        let avg = pool_planes(1, &w, |_, offs, padded| {
            (offs.iter().map(|&o| x[o]).sum::<f64>(), offs.len(), padded)
        })
        .unwrap();
        assert_eq!(avg, vec![(3.0, 2, 3), (9.0, 3, 3)]);
        let mx = pool_planes(1, &w, |_, offs, _| argmax(&x, offs)).unwrap();
        assert_eq!(mx, vec![Some(1), Some(3)]);
    }

    #[test]
    fn ceil_mode_excludes_beyond_padding() {
        // in 5, k 2, s 2, ceil: 3 windows, the last covers [4, 6) of which only 4 is real
        // and 5 is beyond the (zero) end padding, so the padded count is 1.
        let w = window(
            &[
                ("strides", Attr::Ints(vec![2])),
                ("ceil_mode", Attr::Int(1)),
            ],
            &[5],
            vec![2],
        );
        let r = pool_planes(1, &w, |_, offs, padded| (offs.to_vec(), padded)).unwrap();
        assert_eq!(r, vec![(vec![0, 1], 2), (vec![2, 3], 2), (vec![4], 1)]);
    }

    #[test]
    fn two_d_offsets() {
        let w = window(
            &[("pads", Attr::Ints(vec![1, 1, 0, 0]))],
            &[2, 3],
            vec![2, 2],
        );
        assert_eq!(w.output, vec![2, 3]);
        let r = pool_planes(1, &w, |_, offs, padded| (offs.to_vec(), padded)).unwrap();
        assert_eq!(r[0], (vec![0], 4));
        assert_eq!(r[4], (vec![0, 1, 3, 4], 4));
        assert_eq!(lp_norm(&mut [3.0, -4.0].into_iter(), 2.0), 5.0);
    }
}
