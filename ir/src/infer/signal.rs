//! Inference rules of the signal family: DFT, STFT, the Hann/Hamming/Blackman
//! windows and MelWeightMatrix.
//!
//! Output sizes come from input *values* (a window's length, `dft_length`, the
//! STFT frame step); when those are compile-time constants the dims are
//! concrete, otherwise they are data-dependent symbols.

use super::cast::onnx_dtype;
use super::common::{norm_axis, tensor, R};
use super::shape::data_dim;
use super::{InferCtx, InferFn};
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "DFT" => dft,
        "STFT" => stft,
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => window,
        "MelWeightMatrix" => mel_weight_matrix,
        _ => return None,
    })
}

/// An int attribute with a default, errors as strings.
fn int_attr(ctx: &InferCtx<'_>, name: &str, default: i64) -> R<i64> {
    ctx.call
        .attrs
        .int_or(name, default)
        .map_err(|e| e.to_string())
}

/// The scalar value of input `i` as a non-negative size, when constant.
fn const_size(ctx: &InferCtx<'_>, i: usize) -> R<Option<usize>> {
    match ctx.const_ints(i).as_deref() {
        None => Ok(None),
        Some([v]) => usize::try_from(*v)
            .map(Some)
            .map_err(|_| format!("input {i} must be non-negative, got {v}")),
        Some(v) => Err(format!(
            "input {i} must be a scalar, got {} values",
            v.len()
        )),
    }
}

/// A known dim, or a data-dependent symbol named `what`.
fn dim_or(ctx: &InferCtx<'_>, n: Option<usize>, what: &str) -> Dim {
    n.map_or_else(|| data_dim(ctx, what), Dim::Known)
}

/// The one-sided spectrum length `n / 2 + 1` of an `n`-point transform.
fn onesided_len(ctx: &InferCtx<'_>, n: &Dim) -> Dim {
    match n {
        Dim::Known(n) => Dim::Known(n / 2 + 1),
        Dim::Sym(_) => data_dim(ctx, "bins"),
    }
}

/// DFT (opset 20 form: `axis` is input 2, default -2). The transformed axis
/// becomes `dft_length` (or `n / 2 + 1` for a one-sided forward transform);
/// the last axis becomes 2 (complex), or 1 for the real inverse of a one-sided
/// spectrum.
fn dft(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let inverse = int_attr(ctx, "inverse", 0)? != 0;
    let onesided = int_attr(ctx, "onesided", 0)? != 0;
    let Some(shape) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let r = shape.rank();
    if r < 2 {
        return Err(format!("input must have rank >= 2, got {r}"));
    }
    let mut dims = shape.dims().to_vec();
    dims[r - 1] = Dim::Known(if inverse && onesided { 1 } else { 2 });
    let axis = match (ctx.has_input(2), ctx.const_ints(2).as_deref()) {
        (false, _) => -2,
        (true, Some([a])) => *a,
        (true, Some(_)) => return Err("axis must be a scalar".into()),
        (true, None) => {
            let rank_only = (0..r)
                .map(|i| match i {
                    _ if i == r - 1 => dims[r - 1].clone(),
                    _ => data_dim(ctx, &format!("d{i}")),
                })
                .collect();
            return Ok(vec![tensor(x.dtype, Some(Shape(rank_only)))]);
        }
    };
    let axis = norm_axis(axis, r)?;
    if axis == r - 1 {
        return Err("axis must not be the last (complex) axis".into());
    }
    let n = if ctx.has_input(1) {
        dim_or(ctx, const_size(ctx, 1)?, "dft_length")
    } else if inverse && onesided {
        match &dims[axis] {
            Dim::Known(m) => Dim::Known(2 * m.saturating_sub(1)),
            Dim::Sym(_) => data_dim(ctx, "dft_length"),
        }
    } else {
        dims[axis].clone()
    };
    dims[axis] = if onesided && !inverse {
        onesided_len(ctx, &n)
    } else {
        n
    };
    Ok(vec![tensor(x.dtype, Some(Shape(dims)))])
}

/// STFT: `[batch, length, 1|2]` → `[batch, frames, bins, 2]` with
/// `frames = 1 + (length - frame_length) / frame_step`.
fn stft(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let onesided = int_attr(ctx, "onesided", 1)? != 0;
    let (batch, len) = match &x.shape {
        Some(s) if s.rank() == 3 => (s.dims()[0].clone(), s.dims()[1].known()),
        Some(s) => return Err(format!("signal must have rank 3, got {}", s.rank())),
        None => (data_dim(ctx, "batch"), None),
    };
    let window_len = ctx
        .opt_tensor(2)?
        .and_then(|w| w.shape.as_ref())
        .and_then(|s| s.dims().first())
        .and_then(Dim::known);
    let frame_len = if ctx.has_input(3) {
        const_size(ctx, 3)?
    } else if ctx.has_input(2) {
        window_len
    } else {
        len
    };
    let step = const_size(ctx, 1)?;
    let frames = match (len, frame_len, step) {
        (Some(l), Some(f), Some(s)) if s > 0 && l >= f => Some(1 + (l - f) / s),
        _ => None,
    };
    let fl = dim_or(ctx, frame_len, "frame_length");
    let bins = if onesided { onesided_len(ctx, &fl) } else { fl };
    Ok(vec![tensor(
        x.dtype,
        Some(Shape(vec![
            batch,
            dim_or(ctx, frames, "frames"),
            bins,
            Dim::Known(2),
        ])),
    )])
}

/// The dtype named by the `output_datatype` attribute (default float).
fn output_datatype(ctx: &InferCtx<'_>) -> R<crate::dtype::DType> {
    let dt = onnx_dtype(int_attr(ctx, "output_datatype", 1)?)?;
    if dt.is_float() || dt.is_int() {
        Ok(dt)
    } else {
        Err(format!("output_datatype {dt} is not numeric"))
    }
}

/// A window of `size` (input 0, a scalar) points.
fn window(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let size = const_size(ctx, 0)?;
    Ok(vec![tensor(
        output_datatype(ctx)?,
        Some(Shape(vec![dim_or(ctx, size, "size")])),
    )])
}

/// MelWeightMatrix: `[dft_length / 2 + 1, num_mel_bins]`.
fn mel_weight_matrix(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let bins = const_size(ctx, 0)?;
    let dft_len = const_size(ctx, 1)?;
    Ok(vec![tensor(
        output_datatype(ctx)?,
        Some(Shape(vec![
            dim_or(ctx, dft_len.map(|n| n / 2 + 1), "spectrogram_bins"),
            dim_or(ctx, bins, "mel_bins"),
        ])),
    )])
}
