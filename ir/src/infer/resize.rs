//! Inference rules: Resize, GridSample, AffineGrid.

use super::common::{dim_of_float, dim_of_int, tensor, unknown_dims, R};
use super::{InferCtx, InferFn};
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Resize" => resize,
        "GridSample" => grid_sample,
        "AffineGrid" => affine_grid,
        _ => return None,
    })
}

/// Output sizes of Resize from constant `sizes` or `scales` (the same rules as the
/// kernel: `axes`, `keep_aspect_ratio_policy`, `floor(in * scale)`), per dim.
fn resize_dims(ctx: &InferCtx<'_>, input: &[Dim]) -> R<Option<Vec<Dim>>> {
    let attrs = &ctx.call.attrs;
    let rank = input.len();
    let axes: Vec<usize> = match attrs.ints_opt("axes").map_err(|e| e.to_string())? {
        Some(a) => a
            .iter()
            .map(|&x| super::common::norm_axis(x, rank))
            .collect::<R<Vec<_>>>()?,
        None => (0..rank).collect(),
    };
    let mut out = input.to_vec();
    if ctx.has_input(3) {
        let Some(sizes) = ctx.const_ints(3) else {
            return Ok(None);
        };
        if sizes.len() != axes.len() {
            return Err(format!(
                "sizes has {} values for {} axes",
                sizes.len(),
                axes.len()
            ));
        }
        let policy = attrs
            .string_or("keep_aspect_ratio_policy", "stretch")
            .map_err(|e| e.to_string())?;
        if policy == "stretch" {
            for (&a, &s) in axes.iter().zip(&sizes) {
                out[a] = Dim::Known(dim_of_int(s, "resize size")?);
            }
            return Ok(Some(out));
        }
        let known: Option<Vec<usize>> = axes.iter().map(|&a| input[a].known()).collect();
        let Some(known) = known else { return Ok(None) };
        let ratios = sizes.iter().zip(&known).map(|(&s, &d)| s as f64 / d as f64);
        let scale = if policy == "not_larger" {
            ratios.fold(f64::INFINITY, f64::min)
        } else {
            ratios.fold(f64::NEG_INFINITY, f64::max)
        };
        for (&a, &d) in axes.iter().zip(&known) {
            out[a] = Dim::Known(dim_of_float(
                (scale * d as f64 + 0.5).floor(),
                "resize size",
            )?);
        }
        return Ok(Some(out));
    }
    if ctx.has_input(2) {
        let Some(scales) = ctx.const_floats(2) else {
            return Ok(None);
        };
        if scales.is_empty() {
            return Ok(None);
        }
        if scales.len() != axes.len() {
            return Err(format!(
                "scales has {} values for {} axes",
                scales.len(),
                axes.len()
            ));
        }
        for (&a, &s) in axes.iter().zip(&scales) {
            if let Some(d) = input[a].known() {
                out[a] = Dim::Known(dim_of_float(
                    (s * d as f64).floor().max(0.0),
                    "resized dim",
                )?);
            } else if s != 1.0 {
                out[a] = Dim::Sym(format!("resize_{a}"));
            }
        }
        return Ok(Some(out));
    }
    Err("Resize needs scales or sizes".into())
}

fn resize(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(shape) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    Ok(vec![match resize_dims(ctx, shape.dims())? {
        Some(d) => tensor(x.dtype, Some(Shape(d))),
        None => unknown_dims(x.dtype, shape.rank(), "resize"),
    }])
}

/// `[N, C, spatial...]` input and `[N, out_spatial..., r]` grid give `[N, C, out_spatial...]`.
fn grid_sample(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let grid = ctx.tensor(1)?;
    let shape = match (&x.shape, &grid.shape) {
        (Some(xs), Some(gs)) if xs.rank() >= 2 && gs.rank() == xs.rank() => {
            let mut d = vec![xs.dims()[0].clone(), xs.dims()[1].clone()];
            d.extend(gs.dims()[1..gs.rank() - 1].iter().cloned());
            Some(Shape(d))
        }
        (Some(xs), _) => return Ok(vec![unknown_dims(x.dtype, xs.rank(), "grid_sample")]),
        _ => None,
    };
    Ok(vec![tensor(x.dtype, shape)])
}

/// `size` = `[N, C, H, W]` (or with D) gives a grid `[N, H, W, 2]` (`[N, D, H, W, 3]`).
fn affine_grid(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let theta = ctx.tensor(0)?;
    if let Some(size) = ctx.const_ints(1) {
        if size.len() < 3 {
            return Err(format!("size has {} values, expected 4 or 5", size.len()));
        }
        let dims: Vec<usize> = size
            .iter()
            .map(|&s| usize::try_from(s).map_err(|_| format!("negative size {s}")))
            .collect::<R<_>>()?;
        let mut out = vec![dims[0]];
        out.extend(&dims[2..]);
        out.push(dims.len() - 2);
        return Ok(vec![tensor(theta.dtype, Some(Shape::known(&out)))]);
    }
    let len = ctx
        .tensor(1)?
        .shape
        .as_ref()
        .and_then(|s| s.dims().first().and_then(Dim::known));
    Ok(vec![match len {
        Some(n) if n >= 3 => {
            let mut t = match unknown_dims(theta.dtype, n, "affine_grid") {
                ValueType::Tensor(t) => t,
                other => return Ok(vec![other]),
            };
            if let Some(s) = t.shape.as_mut() {
                s.0[n - 1] = Dim::Known(n - 2);
            }
            ValueType::Tensor(t)
        }
        _ => tensor(theta.dtype, None),
    }])
}
