//! Kernels: Resize, GridSample, AffineGrid.
//!
//! Resize is separable: every resized axis gets a plan of `taps` source indices
//! and weights per output position ([`AxisPlan`]), built exactly like the ONNX
//! reference (coordinate transform, neighbour window, edge clamping,
//! `exclude_outside`, antialias kernels), then applied one axis at a time.

use crate::error::{Result, RuntimeError};
use crate::kernels::convert::{collect_as, int_range, Wide};
use crate::kernels::strided::split_at_axis;
use crate::kernels::workprec::{load, store, Real};
use crate::kernels::{checked_len, input, norm_axis, opt_input};
use crate::ops::norm::require_float;
use crate::registry::{KernelCtx, Registry};
use crate::with_workprec;
use egret_ir::Value;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Resize", resize);
    r.add("GridSample", grid_sample);
    r.add("AffineGrid", affine_grid);
}

/// Interpolation kernel of a Resize.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Nearest neighbour with the given rounding rule.
    Nearest(NearestMode),
    /// Linear (optionally antialiased).
    Linear,
    /// Cubic with coefficient `a` (optionally antialiased).
    Cubic(f64),
}

/// `nearest_mode` attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Everything that shapes one axis's plan.
struct Settings<'a> {
    mode: Mode,
    antialias: bool,
    exclude_outside: bool,
    coord: &'a str,
    extrapolation: f64,
}

/// Per-output-position taps along one axis.
#[derive(Debug)]
struct AxisPlan {
    /// Output length.
    out: usize,
    /// Taps per output position.
    taps: usize,
    /// `out * taps` source indices (already clamped into range).
    idx: Vec<usize>,
    /// `out * taps` weights.
    w: Vec<f64>,
    /// Output positions that take the extrapolation value.
    extrapolated: Vec<bool>,
}

/// Interpolation weights for fractional offset `ratio` in `(0, 1]`.
fn coeffs(s: &Settings<'_>, ratio: f64, scale: f64) -> Vec<f64> {
    match s.mode {
        Mode::Nearest(m) => {
            if ratio == 1.0 {
                return vec![0.0, 1.0];
            }
            let up = match m {
                NearestMode::RoundPreferFloor => ratio > 0.5,
                NearestMode::RoundPreferCeil => ratio >= 0.5,
                NearestMode::Floor => false,
                NearestMode::Ceil => true,
            };
            if up {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        Mode::Linear if s.antialias => {
            let scale = scale.min(1.0);
            let start = (-1.0 / scale).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            let c: Vec<f64> = (start..start + footprint)
                .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                .collect();
            normalized(c)
        }
        Mode::Linear => vec![1.0 - ratio, ratio],
        Mode::Cubic(a) if s.antialias => {
            let scale = scale.min(1.0);
            let start = (-2.0 / scale).floor() as i64 + 1;
            let c: Vec<f64> = (start..2 - start)
                .map(|i| cubic_weight(a, scale * (i as f64 - ratio)))
                .collect();
            normalized(c)
        }
        Mode::Cubic(a) => vec![
            cubic_weight(a, ratio + 1.0),
            cubic_weight(a, ratio),
            cubic_weight(a, 1.0 - ratio),
            cubic_weight(a, 2.0 - ratio),
        ],
    }
}

/// Keys' cubic convolution kernel with parameter `a`.
fn cubic_weight(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

fn normalized(mut c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    if sum != 0.0 {
        c.iter_mut().for_each(|v| *v /= sum);
    }
    c
}

/// Source coordinate of output position `y` (and whether it is extrapolated).
fn source_coord(
    s: &Settings<'_>,
    y: f64,
    scale: f64,
    in_len: usize,
    out_len: usize,
    roi: (f64, f64),
) -> Result<(f64, bool)> {
    let input_width = in_len as f64;
    let output_width = scale * input_width;
    Ok(match s.coord {
        "align_corners" => (
            if output_width == 1.0 {
                0.0
            } else {
                y * (input_width - 1.0) / (output_width - 1.0)
            },
            false,
        ),
        "asymmetric" => (y / scale, false),
        "tf_crop_and_resize" => {
            let x = if output_width == 1.0 {
                (roi.1 - roi.0) * (input_width - 1.0) / 2.0
            } else {
                y * (roi.1 - roi.0) * (input_width - 1.0) / (output_width - 1.0)
            } + roi.0 * (input_width - 1.0);
            (x, x < 0.0 || x > input_width - 1.0)
        }
        "pytorch_half_pixel" => (
            if output_width == 1.0 {
                -0.5
            } else {
                (y + 0.5) / scale - 0.5
            },
            false,
        ),
        "half_pixel" => ((y + 0.5) / scale - 0.5, false),
        "half_pixel_symmetric" => {
            let adjustment = out_len as f64 / output_width;
            let offset = input_width / 2.0 * (1.0 - adjustment);
            (offset + (y + 0.5) / scale - 0.5, false)
        }
        other => {
            return Err(RuntimeError::msg(format!(
                "unknown coordinate_transformation_mode {other:?}"
            )))
        }
    })
}

/// Build the taps of one axis (the vectorised ONNX reference, output by output).
fn plan_axis(
    s: &Settings<'_>,
    in_len: usize,
    out_len: usize,
    scale: f64,
    roi: (f64, f64),
) -> Result<AxisPlan> {
    let mut plan = AxisPlan {
        out: out_len,
        taps: 0,
        idx: Vec::new(),
        w: Vec::new(),
        extrapolated: Vec::new(),
    };
    if in_len == 0 {
        return Err(RuntimeError::msg("cannot resize an empty axis"));
    }
    for y in 0..out_len {
        let (x, extra) = source_coord(s, y as f64, scale, in_len, out_len, roi)?;
        if !x.is_finite() {
            return Err(RuntimeError::msg(format!(
                "non-finite source coordinate {x}"
            )));
        }
        let ratio = if x == x.floor() { 1.0 } else { x - x.floor() };
        let mut c = coeffs(s, ratio, scale);
        let n = c.len();
        let pad = n.div_ceil(2) as f64;
        let xp = x + pad;
        let p = xp.floor();
        let frac = xp - p;
        let half = (n / 2) as f64;
        let off = if n.is_multiple_of(2) {
            if frac == 0.0 {
                -half
            } else {
                -half + 1.0
            }
        } else {
            let base = -(((n - 1) / 2) as f64);
            if frac <= 0.5 {
                base
            } else {
                base + 1.0
            }
        };
        let start = (p + off - pad) as i64;
        if s.exclude_outside {
            for (k, v) in c.iter_mut().enumerate() {
                let i = start + k as i64;
                if i < 0 || i >= in_len as i64 {
                    *v = 0.0;
                }
            }
            c = normalized(c);
        }
        plan.taps = n;
        for (k, v) in c.into_iter().enumerate() {
            plan.idx
                .push((start + k as i64).clamp(0, in_len as i64 - 1) as usize);
            plan.w.push(v);
        }
        plan.extrapolated.push(extra);
    }
    Ok(plan)
}

/// Apply one axis plan to `data` of `shape`, returning the resized data.
fn apply_plan<T: Real>(
    data: &[T],
    shape: &[usize],
    axis: usize,
    plan: &AxisPlan,
    extrapolation: T,
) -> Vec<T> {
    let (outer, in_len, inner) = split_at_axis(shape, axis);
    let mut out = vec![T::zero(); outer * plan.out * inner];
    let w: Vec<T> = plan.w.iter().map(|&v| T::of(v)).collect();
    for o in 0..outer {
        for j in 0..plan.out {
            let dst = &mut out[(o * plan.out + j) * inner..(o * plan.out + j + 1) * inner];
            if plan.extrapolated[j] {
                dst.fill(extrapolation);
                continue;
            }
            for k in 0..plan.taps {
                let wk = w[j * plan.taps + k];
                if wk.is_zero() {
                    continue;
                }
                let src_row = (o * in_len + plan.idx[j * plan.taps + k]) * inner;
                for (d, &v) in dst.iter_mut().zip(&data[src_row..src_row + inner]) {
                    *d = *d + wk * v;
                }
            }
        }
    }
    out
}

/// Apply every axis plan in turn, updating `shape`.
fn run_plans<T: Real>(
    plans: &[(usize, AxisPlan)],
    shape: &mut [usize],
    mut data: Vec<T>,
    ext: T,
) -> Vec<T> {
    for (ax, plan) in plans {
        data = apply_plan(&data, shape, *ax, plan, ext);
        shape[*ax] = plan.out;
    }
    data
}

/// Output sizes and per-axis scales of a Resize, from `scales` or `sizes`.
fn target(
    ctx: &KernelCtx<'_>,
    inputs: &[Option<Value>],
    shape: &[usize],
    axes: &[usize],
) -> Result<(Vec<usize>, Vec<f64>)> {
    let rank = shape.len();
    let mut sizes = shape.to_vec();
    let mut scales = vec![1.0; rank];
    if let Some(sz) = opt_input(inputs, 3)?.filter(|t| t.numel() > 0) {
        let v = sz.to_i64_vec()?;
        if v.len() != axes.len() {
            return Err(RuntimeError::msg(format!(
                "sizes has {} values for {} axes",
                v.len(),
                axes.len()
            )));
        }
        for (&a, &s) in axes.iter().zip(&v) {
            if s < 0 {
                return Err(RuntimeError::msg(format!("negative output size {s}")));
            }
            sizes[a] = s as usize;
            scales[a] = s as f64 / shape[a] as f64;
        }
        let policy = ctx
            .attrs()
            .string_or("keep_aspect_ratio_policy", "stretch")?;
        if policy != "stretch" {
            let picked = axes.iter().map(|&a| scales[a]);
            let scale = match policy {
                "not_larger" => picked.fold(f64::INFINITY, f64::min),
                "not_smaller" => picked.fold(f64::NEG_INFINITY, f64::max),
                other => {
                    return Err(RuntimeError::msg(format!(
                        "unknown keep_aspect_ratio_policy {other:?}"
                    )))
                }
            };
            for &a in axes {
                scales[a] = scale;
                sizes[a] = (scale * shape[a] as f64 + 0.5) as usize;
            }
        }
    } else if let Some(sc) = opt_input(inputs, 2)?.filter(|t| t.numel() > 0) {
        let v = sc.to_f64_vec()?;
        if v.len() != axes.len() {
            return Err(RuntimeError::msg(format!(
                "scales has {} values for {} axes",
                v.len(),
                axes.len()
            )));
        }
        for (&a, &s) in axes.iter().zip(&v) {
            if !(s > 0.0 && s.is_finite()) {
                return Err(RuntimeError::msg(format!("scale {s} must be positive")));
            }
            scales[a] = s;
            sizes[a] = (s * shape[a] as f64).floor() as usize;
        }
    } else {
        return Err(RuntimeError::msg("Resize needs scales or sizes"));
    }
    checked_len(&sizes)?;
    Ok((sizes, scales))
}

/// Resize with every mode, coordinate transform and option of opset 19.
fn resize(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let a = ctx.attrs();
    let rank = x.rank();
    let axes: Vec<usize> = match a.ints_opt("axes")? {
        Some(v) => v
            .iter()
            .map(|&i| norm_axis(i, rank))
            .collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    let nearest = match a.string_or("nearest_mode", "round_prefer_floor")? {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        other => return Err(RuntimeError::msg(format!("unknown nearest_mode {other:?}"))),
    };
    let mode = match a.string_or("mode", "nearest")? {
        "nearest" => Mode::Nearest(nearest),
        "linear" => Mode::Linear,
        "cubic" => Mode::Cubic(a.float_or("cubic_coeff_a", -0.75)? as f64),
        other => return Err(RuntimeError::msg(format!("unknown Resize mode {other:?}"))),
    };
    let s = Settings {
        mode,
        antialias: a.int_or("antialias", 0)? != 0 && !matches!(mode, Mode::Nearest(_)),
        exclude_outside: a.int_or("exclude_outside", 0)? != 0,
        coord: a.string_or("coordinate_transformation_mode", "half_pixel")?,
        extrapolation: a.float_or("extrapolation_value", 0.0)? as f64,
    };
    let (sizes, scales) = target(ctx, inputs, x.shape(), &axes)?;
    // ROI per full-rank axis as (start, end); only tf_crop_and_resize reads it.
    let mut roi = vec![(0.0, 1.0); rank];
    if let Some(r) = opt_input(inputs, 1)?.filter(|t| t.numel() > 0) {
        let v = r.to_f64_vec()?;
        if v.len() != 2 * axes.len() {
            return Err(RuntimeError::msg(format!(
                "roi has {} values, expected {}",
                v.len(),
                2 * axes.len()
            )));
        }
        for (i, &ax) in axes.iter().enumerate() {
            roi[ax] = (v[i], v[axes.len() + i]);
        }
    }
    let mut plans = Vec::new();
    for &ax in &axes {
        let identity = (scales[ax] - 1.0).abs() < 1e-9
            && sizes[ax] == x.shape()[ax]
            && (s.coord != "tf_crop_and_resize" || roi[ax] == (0.0, 1.0));
        if !identity {
            plans.push((
                ax,
                plan_axis(&s, x.shape()[ax], sizes[ax], scales[ax], roi[ax])?,
            ));
        }
    }
    let mut shape = x.shape().to_vec();
    let out = if x.dtype().is_float() {
        with_workprec!(x.dtype(), T => {
            let data = run_plans(&plans, &mut shape, load::<T>(x)?.into_owned(), T::of(s.extrapolation));
            store(x.dtype(), shape, data)?
        })
    } else {
        let (lo, hi) = int_range(x.dtype())
            .ok_or_else(|| RuntimeError::msg(format!("Resize does not support {}", x.dtype())))?;
        let data = run_plans(
            &plans,
            &mut shape,
            load::<f64>(x)?.into_owned(),
            s.extrapolation,
        );
        let vals = data
            .into_iter()
            .map(|v| Wide::I(v.round_ties_even().clamp(lo as f64, hi as f64) as i64));
        collect_as(x.dtype(), shape, vals, false)?
    };
    Ok(vec![Value::Tensor(out)])
}

/// Interpolation of GridSample.
#[derive(Clone, Copy, PartialEq)]
enum GridMode {
    Nearest,
    Linear,
    Cubic,
}

/// Padding of GridSample.
#[derive(Clone, Copy, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

/// Reflect `x` into `[lo, hi]` by bouncing off the borders.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let bounce = |dx: f64, near: f64, far: f64, sign: f64| {
        let n = (dx / range).trunc();
        let r = dx - n * range;
        if n % 2.0 == 0.0 {
            near + sign * r
        } else {
            far - sign * r
        }
    };
    if x < lo {
        bounce(lo - x, lo, hi, 1.0)
    } else if x > hi {
        bounce(x - hi, hi, lo, -1.0)
    } else {
        x
    }
}

/// One spatial dimension's taps `(index, weight)` for GridSample; an index of
/// `None` reads as zero (zeros padding).
fn grid_taps(
    mode: GridMode,
    pad: Padding,
    x: f64,
    len: usize,
    border: (f64, f64),
) -> Vec<(Option<usize>, f64)> {
    let fetch = |i: i64| -> Option<usize> {
        let last = len as i64 - 1;
        match pad {
            Padding::Zeros => (0..len as i64).contains(&i).then_some(i as usize),
            Padding::Border => Some(i.clamp(0, last) as usize),
            Padding::Reflection => {
                Some((reflect(i as f64, border.0, border.1) as i64).clamp(0, last) as usize)
            }
        }
    };
    match mode {
        GridMode::Nearest => vec![(fetch(x as i64), 1.0)],
        GridMode::Linear => {
            let x0 = x.floor();
            let t = x - x0;
            vec![(fetch(x0 as i64), 1.0 - t), (fetch(x0 as i64 + 1), t)]
        }
        GridMode::Cubic => {
            let x0 = x.floor();
            let t = x - x0;
            let a = -0.75;
            let w = [
                cubic_weight(a, t + 1.0),
                cubic_weight(a, t),
                cubic_weight(a, 1.0 - t),
                cubic_weight(a, 2.0 - t),
            ];
            (0..4)
                .map(|k| (fetch(x0 as i64 - 1 + k as i64), w[k]))
                .collect()
        }
    }
}

/// GridSample over 2-D or 3-D (any rank) spatial inputs.
fn grid_sample(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let grid = input(inputs, 1)?;
    require_float(x.dtype(), "X")?;
    let a = ctx.attrs();
    let mode = match a.string_or("mode", "linear")? {
        "nearest" => GridMode::Nearest,
        "linear" | "bilinear" => GridMode::Linear,
        "cubic" | "bicubic" => GridMode::Cubic,
        other => {
            return Err(RuntimeError::msg(format!(
                "unknown GridSample mode {other:?}"
            )))
        }
    };
    let pad = match a.string_or("padding_mode", "zeros")? {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        other => return Err(RuntimeError::msg(format!("unknown padding_mode {other:?}"))),
    };
    let align = a.int_or("align_corners", 0)? != 0;
    let xs = x.shape();
    let gs = grid.shape();
    let d = xs.len().saturating_sub(2);
    if xs.len() < 3 || gs.len() != xs.len() || gs[0] != xs[0] || gs[gs.len() - 1] != d {
        return Err(RuntimeError::msg(format!(
            "GridSample shapes {xs:?} and grid {gs:?} do not match"
        )));
    }
    let (n, c) = (xs[0], xs[1]);
    let dims = &xs[2..];
    let in_plane: usize = dims.iter().product();
    let out_spatial = &gs[1..gs.len() - 1];
    let out_plane: usize = out_spatial.iter().product();
    let mut out_shape = vec![n, c];
    out_shape.extend_from_slice(out_spatial);
    checked_len(&out_shape)?;
    let borders: Vec<(f64, f64)> = dims
        .iter()
        .map(|&l| {
            if align {
                (0.0, l as f64 - 1.0)
            } else {
                (-0.5, l as f64 - 0.5)
            }
        })
        .collect();
    let g = load::<f64>(grid)?;
    {
        let xv = load::<f64>(x)?;
        let mut out = vec![0.0; n * c * out_plane];
        for b in 0..n {
            for p in 0..out_plane {
                let coords = &g[(b * out_plane + p) * d..(b * out_plane + p + 1) * d];
                // Grid holds (x, y[, z]): the last spatial dim first.
                let taps: Vec<Vec<(Option<usize>, f64)>> = (0..d)
                    .map(|i| {
                        let len = dims[i];
                        let v = coords[d - 1 - i];
                        let mut px = if align {
                            (v + 1.0) / 2.0 * (len as f64 - 1.0)
                        } else {
                            ((v + 1.0) * len as f64 - 1.0) / 2.0
                        };
                        if mode == GridMode::Nearest {
                            px = px.round_ties_even();
                        }
                        let (lo, hi) = borders[i];
                        if px < lo || px > hi {
                            match pad {
                                Padding::Border => px = px.clamp(0.0, len as f64 - 1.0),
                                Padding::Reflection => px = reflect(px, lo, hi),
                                Padding::Zeros => {}
                            }
                        }
                        grid_taps(mode, pad, px, len, borders[i])
                    })
                    .collect();
                // Cartesian product of the per-dimension taps.
                let mut combos: Vec<(Option<usize>, f64)> = vec![(Some(0), 1.0)];
                for (i, t) in taps.iter().enumerate() {
                    combos = combos
                        .iter()
                        .flat_map(|&(off, w)| {
                            t.iter().map(move |&(ix, wt)| {
                                (off.zip(ix).map(|(o, ix)| o * dims[i] + ix), w * wt)
                            })
                        })
                        .collect();
                }
                for ch in 0..c {
                    let plane = &xv[(b * c + ch) * in_plane..(b * c + ch + 1) * in_plane];
                    let v: f64 = combos
                        .iter()
                        .filter_map(|&(off, w)| off.map(|o| plane[o] * w))
                        .sum();
                    out[(b * c + ch) * out_plane + p] = v;
                }
            }
        }
        Ok(vec![Value::Tensor(store(x.dtype(), out_shape, out)?)])
    }
}

/// AffineGrid: `theta [N, r, r+1]` applied to the normalized base grid of `size`.
fn affine_grid(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let theta = input(inputs, 0)?;
    require_float(theta.dtype(), "theta")?;
    let size = input(inputs, 1)?.to_i64_vec()?;
    let align = ctx.attrs().int_or("align_corners", 0)? != 0;
    if size.len() != 4 && size.len() != 5 {
        return Err(RuntimeError::msg(format!(
            "size must have 4 or 5 values, got {size:?}"
        )));
    }
    let dims: Vec<usize> = size
        .iter()
        .map(|&s| usize::try_from(s).map_err(|_| RuntimeError::msg(format!("negative size {s}"))))
        .collect::<Result<_>>()?;
    let n = dims[0];
    let spatial = &dims[2..];
    let r = spatial.len();
    if theta.shape() != [n, r, r + 1] {
        return Err(RuntimeError::msg(format!(
            "theta shape {:?}, expected [{n}, {r}, {}]",
            theta.shape(),
            r + 1
        )));
    }
    let mut out_shape = vec![n];
    out_shape.extend_from_slice(spatial);
    out_shape.push(r);
    let total = checked_len(&out_shape)?;
    let base = |i: usize, len: usize| -> f64 {
        match (align, len) {
            (true, 1) => -1.0,
            (true, _) => -1.0 + 2.0 * i as f64 / (len as f64 - 1.0),
            (false, _) => -1.0 + (2 * i + 1) as f64 / len as f64,
        }
    };
    let plane: usize = spatial.iter().product();
    let th = load::<f64>(theta)?;
    let mut out = Vec::with_capacity(total);
    for b in 0..n {
        let t = &th[b * r * (r + 1)..(b + 1) * r * (r + 1)];
        for p in 0..plane {
            // Homogeneous point (x, y[, z], 1): x runs along the last spatial dim.
            let mut rem = p;
            let mut point = vec![0.0; r + 1];
            for i in (0..r).rev() {
                point[r - 1 - i] = base(rem % spatial[i], spatial[i]);
                rem /= spatial[i];
            }
            point[r] = 1.0;
            for row in 0..r {
                out.push(
                    (0..=r)
                        .map(|k| t[row * (r + 1) + k] * point[k])
                        .sum::<f64>(),
                );
            }
        }
    }
    Ok(vec![Value::Tensor(store(theta.dtype(), out_shape, out)?)])
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::run1;
    use egret_ir::{Attr, Attrs, Tensor};

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }

    fn attrs(kv: &[(&str, Attr)]) -> Attrs {
        let mut a = Attrs::default();
        for (k, v) in kv {
            a.set(k, v.clone());
        }
        a
    }

    #[test]
    fn resize_nearest_and_linear_upsample() {
        let x = t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let empty = t(&[0], &[]);
        let scales = t(&[4], &[1.0, 1.0, 2.0, 2.0]);
        let out = run1(
            "Resize",
            attrs(&[]),
            vec![x.clone(), empty.clone(), scales.clone()],
            1,
        );
        close(
            &out[0],
            &[
                1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.,
            ],
        );
        let a = attrs(&[("mode", Attr::String("linear".into()))]);
        let out = run1("Resize", a, vec![x, empty, scales], 1);
        // numpy/ORT reference for half_pixel linear 2x upsampling.
        let want = [
            1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0,
        ];
        close(&out[0], &want);
    }

    #[test]
    fn resize_sizes_with_axes_and_align_corners() {
        let x = t(&[1, 3], &[0.0, 1.0, 2.0]);
        let sizes = Tensor::from_vec(vec![1], vec![5i64]).unwrap();
        let a = attrs(&[
            ("mode", Attr::String("linear".into())),
            ("axes", Attr::Ints(vec![1])),
            (
                "coordinate_transformation_mode",
                Attr::String("align_corners".into()),
            ),
        ]);
        let out = crate::ops::norm::run_op("Resize", a, vec![Some(x), None, None, Some(sizes)], 1);
        assert_eq!(out[0].shape(), &[1, 5]);
        close(&out[0].to_f64_vec().unwrap(), &[0.0, 0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn grid_sample_identity_and_affine_grid() {
        let theta = t(&[1, 2, 3], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let size = Tensor::from_vec(vec![4], vec![1i64, 1, 2, 3]).unwrap();
        let grid =
            crate::ops::norm::run_op("AffineGrid", attrs(&[]), vec![Some(theta), Some(size)], 1)
                .remove(0);
        assert_eq!(grid.shape(), &[1, 2, 3, 2]);
        let g = grid.to_f64_vec().unwrap();
        close(&g[..4], &[-2.0 / 3.0, -0.5, 0.0, -0.5]);
        let x = t(&[1, 1, 2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        for mode in ["linear", "nearest", "cubic"] {
            let out = run1(
                "GridSample",
                attrs(&[("mode", Attr::String(mode.into()))]),
                vec![x.clone(), grid.clone()],
                1,
            );
            if mode == "cubic" {
                assert_eq!(out[0].len(), 6);
            } else {
                close(&out[0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
            }
        }
        // Sampling outside with zeros padding gives zero, border padding clamps.
        let far = t(&[1, 1, 1, 2], &[5.0, 5.0]);
        let out = run1("GridSample", attrs(&[]), vec![x.clone(), far.clone()], 1);
        close(&out[0], &[0.0]);
        let out = run1(
            "GridSample",
            attrs(&[("padding_mode", Attr::String("border".into()))]),
            vec![x, far],
            1,
        );
        close(&out[0], &[6.0]);
    }
}
