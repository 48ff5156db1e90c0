//! Kernels of the signal family: DFT, STFT, HannWindow, HammingWindow,
//! BlackmanWindow and MelWeightMatrix.
//!
//! Complex tensors follow ONNX's layout: a trailing axis of 2 (`re, im`), or of
//! 1 for real signals. Transforms run in `f64` through [`crate::kernels::fft`]
//! and are stored back in the input's float dtype; windows and mel matrices are
//! computed in `f64` and cast to `output_datatype`.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::convert::cast_tensor;
use crate::kernels::fft::{dft, C64};
use crate::kernels::workprec::store;
use crate::kernels::{checked_len, input, norm_axis, one, opt_input};
use crate::ops::cast::out_dtype;
use crate::registry::{KernelCtx, Registry};
use egret_ir::{Tensor, Value};
use std::f64::consts::PI;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("DFT", dft_op);
    r.add("STFT", stft);
    r.add("HannWindow", hann);
    r.add("HammingWindow", hamming);
    r.add("BlackmanWindow", blackman);
    r.add("MelWeightMatrix", mel_weight_matrix);
}

/// The value of a one-element integer input.
pub(crate) fn scalar_i64(t: &Tensor, what: &str) -> Result<i64> {
    match t.to_i64_vec()?.as_slice() {
        [v] => Ok(*v),
        v => bail!("{what} must hold one value, got {}", v.len()),
    }
}

/// The value of a one-element input as a non-negative size.
fn scalar_size(t: &Tensor, what: &str) -> Result<usize> {
    let v = scalar_i64(t, what)?;
    usize::try_from(v).map_err(|_| RuntimeError::msg(format!("{what} must be >= 0, got {v}")))
}

/// A float tensor whose last axis is 1 (real) or 2 (complex), as complex
/// numbers plus the shape without that axis.
fn complex_input(x: &Tensor) -> Result<(Vec<C64>, Vec<usize>)> {
    if !x.dtype().is_float() {
        bail!("unsupported dtype {}", x.dtype());
    }
    let (last, outer) = match x.shape().split_last() {
        Some((&l, o)) if (l == 1 || l == 2) && !o.is_empty() => (l, o.to_vec()),
        _ => bail!(
            "input must have rank >= 2 and a last axis of 1 or 2, got {:?}",
            x.shape()
        ),
    };
    let v = x.to_f64_vec()?;
    let c = if last == 2 {
        v.chunks_exact(2).map(|p| (p[0], p[1])).collect()
    } else {
        v.into_iter().map(|r| (r, 0.0)).collect()
    };
    Ok((c, outer))
}

/// A tensor of float dtype `like` from complex values (trailing axis 2), or from
/// their real parts only (trailing axis 1) when `real`.
fn complex_output(
    dtype: egret_ir::DType,
    mut shape: Vec<usize>,
    v: &[C64],
    real: bool,
) -> Result<Tensor> {
    let flat: Vec<f64> = if real {
        shape.push(1);
        v.iter().map(|c| c.0).collect()
    } else {
        shape.push(2);
        v.iter().flat_map(|c| [c.0, c.1]).collect()
    };
    store::<f64>(dtype, shape, flat)
}

/// Apply `line` (input line → `out_len` values) to every 1-D line of `data`
/// (shape `dims`) along `axis`.
fn along_axis(
    data: &[C64],
    dims: &[usize],
    axis: usize,
    out_len: usize,
    line: impl Fn(&[C64]) -> Vec<C64>,
) -> Result<(Vec<C64>, Vec<usize>)> {
    let mut out_dims = dims.to_vec();
    out_dims[axis] = out_len;
    let total = checked_len(&out_dims)?;
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let len = dims[axis];
    let mut out = vec![(0.0, 0.0); total];
    let mut buf = Vec::with_capacity(len);
    for o in 0..outer {
        for i in 0..inner {
            buf.clear();
            buf.extend((0..len).map(|k| data[(o * len + k) * inner + i]));
            for (k, v) in line(&buf).into_iter().take(out_len).enumerate() {
                out[(o * out_len + k) * inner + i] = v;
            }
        }
    }
    Ok((out, out_dims))
}

/// `x` truncated or zero-padded to `n` points.
fn fit(x: &[C64], n: usize) -> Vec<C64> {
    let mut v: Vec<C64> = x.iter().copied().take(n).collect();
    v.resize(n, (0.0, 0.0));
    v
}

/// The `n`-point DFT of `x` (inverse ones divided by `n`, like numpy's `ifft`).
fn transform(x: &[C64], n: usize, inverse: bool) -> Vec<C64> {
    let mut v = fit(x, n);
    dft(&mut v, inverse);
    if inverse && n > 0 {
        let s = 1.0 / n as f64;
        v.iter_mut().for_each(|c| *c = (c.0 * s, c.1 * s));
    }
    v
}

/// The `n`-point real signal of a one-sided spectrum (numpy's `irfft`): the
/// spectrum is completed by Hermitian symmetry, and imaginary parts that
/// cannot contribute to a real signal (DC, Nyquist) drop out with the real part.
fn inverse_real(x: &[C64], n: usize) -> Vec<C64> {
    let half = fit(x, n / 2 + 1);
    let full: Vec<C64> = (0..n)
        .map(|k| match half.get(k) {
            Some(&c) => c,
            None => {
                let c = half[n - k];
                (c.0, -c.1)
            }
        })
        .collect();
    transform(&full, n, true)
}

/// DFT (opset 20): `axis` is input 2 (default -2), `dft_length` input 1.
fn dft_op(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let inverse = ctx.attrs().int_or("inverse", 0)? != 0;
    let onesided = ctx.attrs().int_or("onesided", 0)? != 0;
    let (data, dims) = complex_input(x)?;
    let axis = match opt_input(inputs, 2)? {
        Some(a) => scalar_i64(a, "axis")?,
        None => -2,
    };
    let axis = norm_axis(axis, x.rank())?;
    if axis + 1 >= x.rank() {
        bail!("axis must not be the last (complex) axis");
    }
    let len = dims[axis];
    let n = match opt_input(inputs, 1)? {
        Some(t) => scalar_size(t, "dft_length")?,
        None if inverse && onesided => 2 * len.saturating_sub(1),
        None => len,
    };
    if n == 0 {
        bail!("dft_length must be positive");
    }
    let real_out = inverse && onesided;
    let (out, out_dims) = if real_out {
        along_axis(&data, &dims, axis, n, |l| inverse_real(l, n))?
    } else {
        let out_len = if onesided { n / 2 + 1 } else { n };
        along_axis(&data, &dims, axis, out_len, |l| transform(l, n, inverse))?
    };
    one(complex_output(x.dtype(), out_dims, &out, real_out)?)
}

/// STFT: `[batch, length, 1|2]` signal, frames of `frame_length` points every
/// `frame_step`, each multiplied by the window and transformed.
fn stft(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let onesided = ctx.attrs().int_or("onesided", 1)? != 0;
    let (data, dims) = complex_input(x)?;
    let &[batch, len] = dims.as_slice() else {
        bail!("signal must have rank 3, got {:?}", x.shape());
    };
    let step = scalar_size(input(inputs, 1)?, "frame_step")?;
    let window = opt_input(inputs, 2)?.map(|w| w.to_f64_vec()).transpose()?;
    let frame_len = match (opt_input(inputs, 3)?, &window) {
        (Some(t), _) => scalar_size(t, "frame_length")?,
        (None, Some(w)) => w.len(),
        (None, None) => len,
    };
    if let Some(w) = &window {
        if w.len() != frame_len {
            bail!("window has {} points for frame_length {frame_len}", w.len());
        }
    }
    if step == 0 || frame_len == 0 || frame_len > len {
        bail!("invalid frame_step {step} / frame_length {frame_len} for a signal of {len}");
    }
    let frames = 1 + (len - frame_len) / step;
    let bins = if onesided {
        frame_len / 2 + 1
    } else {
        frame_len
    };
    let total = checked_len(&[batch, frames, bins])?;
    let mut out = Vec::with_capacity(total);
    for b in 0..batch {
        let signal = &data[b * len..(b + 1) * len];
        for f in 0..frames {
            let frame: Vec<C64> = signal[f * step..f * step + frame_len]
                .iter()
                .enumerate()
                .map(|(t, &(re, im))| {
                    let w = window.as_ref().map_or(1.0, |w| w[t]);
                    (re * w, im * w)
                })
                .collect();
            out.extend(transform(&frame, frame_len, false).into_iter().take(bins));
        }
    }
    one(complex_output(
        x.dtype(),
        vec![batch, frames, bins],
        &out,
        false,
    )?)
}

/// A cosine-sum window `a0 - a1·cos(2πn/N) + a2·cos(4πn/N)` of `size` points,
/// where `N = size` (periodic, the default) or `size - 1` (symmetric).
fn cosine_window(
    ctx: &KernelCtx<'_>,
    inputs: &[Option<Value>],
    (a0, a1, a2): (f64, f64, f64),
) -> Result<Vec<Value>> {
    let size = scalar_size(input(inputs, 0)?, "size")?;
    checked_len(&[size])?;
    let periodic = ctx.attrs().int_or("periodic", 1)? != 0;
    let denom = if periodic {
        size
    } else {
        size.saturating_sub(1)
    } as f64;
    let w: Vec<f64> = (0..size)
        .map(|n| {
            let t = 2.0 * PI * n as f64 / denom;
            a0 - a1 * t.cos() + a2 * (2.0 * t).cos()
        })
        .collect();
    let t = Tensor::from_vec(vec![size], w)?;
    one(cast_tensor(&t, out_dtype(ctx, 0)?, true)?)
}

/// HannWindow: `sin²(πn/N) = 0.5 - 0.5·cos(2πn/N)`.
fn hann(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    cosine_window(ctx, inputs, (0.5, 0.5, 0.0))
}

/// HammingWindow with ONNX's `α = 25/46`, `β = 1 - α`.
fn hamming(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let alpha = 25.0 / 46.0;
    cosine_window(ctx, inputs, (alpha, 1.0 - alpha, 0.0))
}

/// BlackmanWindow: `0.42 - 0.5·cos(2πn/N) + 0.08·cos(4πn/N)`.
fn blackman(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    cosine_window(ctx, inputs, (0.42, 0.5, 0.08))
}

/// The float value of a one-element input.
fn scalar_f64(t: &Tensor, what: &str) -> Result<f64> {
    match t.to_f64_vec()?.as_slice() {
        [v] => Ok(*v),
        v => bail!("{what} must hold one value, got {}", v.len()),
    }
}

/// MelWeightMatrix as the ONNX reference computes it: `num_mel_bins + 2` points
/// evenly spaced on the mel scale (`2595·log10(1 + f/700)`) between the edges,
/// mapped to DFT bins `⌊(dft_length + 1)·f / sample_rate⌋`, and a triangle per
/// mel bin rising from its left point to its centre and falling to its right.
fn mel_weight_matrix(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let mels = scalar_size(input(inputs, 0)?, "num_mel_bins")?;
    let dft_len = scalar_size(input(inputs, 1)?, "dft_length")?;
    let rate = scalar_i64(input(inputs, 2)?, "sample_rate")?;
    let lo = scalar_f64(input(inputs, 3)?, "lower_edge_hertz")?;
    let hi = scalar_f64(input(inputs, 4)?, "upper_edge_hertz")?;
    if rate <= 0 {
        bail!("sample_rate must be positive, got {rate}");
    }
    let spec_bins = dft_len / 2 + 1;
    let total = checked_len(&[spec_bins, mels])?;
    let to_mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let (lo_mel, hi_mel) = (to_mel(lo), to_mel(hi));
    let step = (hi_mel - lo_mel) / (mels + 2) as f64;
    let points: Vec<usize> = (0..mels + 2)
        .map(|i| {
            let hz = 700.0 * (10f64.powf((i as f64 * step + lo_mel) / 2595.0) - 1.0);
            let bin = ((dft_len as f64 + 1.0) * hz / rate as f64).floor();
            if bin >= 0.0 && bin < spec_bins as f64 {
                Ok(bin as usize)
            } else {
                bail!("mel point {hz} Hz falls outside the {spec_bins} spectrogram bins")
            }
        })
        .collect::<Result<_>>()?;
    let mut out = vec![0.0f64; total];
    for (i, p) in points.windows(3).enumerate() {
        let (left, centre, right) = (p[0], p[1], p[2]);
        if centre == left {
            out[centre * mels + i] = 1.0;
        } else {
            for j in left..=centre {
                out[j * mels + i] = (j - left) as f64 / (centre - left) as f64;
            }
        }
        for j in centre..right {
            out[j * mels + i] = (right - j) as f64 / (right - centre) as f64;
        }
    }
    let t = Tensor::from_vec(vec![spec_bins, mels], out)?;
    one(cast_tensor(&t, out_dtype(ctx, 0)?, true)?)
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::{run1, run_op};
    use egret_ir::{Attr, Attrs, Tensor};

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    fn attrs(kv: &[(&str, i64)]) -> Attrs {
        let mut a = Attrs::default();
        for (k, v) in kv {
            a.set(k, Attr::Int(*v));
        }
        a
    }

    #[test]
    fn rfft_and_back() {
        // numpy.fft.rfft([1, 2, 0, -1, 3]) = [5, 3.3541+0.3633i, -3.3541+1.5388i].
        let x = Tensor::from_vec(vec![1, 5, 1], vec![1.0f32, 2.0, 0.0, -1.0, 3.0]).unwrap();
        let out = run1("DFT", attrs(&[("onesided", 1)]), vec![x], 1);
        let want = [
            5.0,
            0.0,
            3.354_101_97,
            0.363_271_26,
            -3.354_101_97,
            1.538_841_77,
        ];
        close(&out[0], &want, 1e-5);
        // irfft(n=5) of that spectrum restores the signal.
        let spec = Tensor::from_vec(vec![1, 3, 2], want.map(|v| v as f32).to_vec()).unwrap();
        let len = Tensor::scalar(5i64);
        let back = run_op(
            "DFT",
            attrs(&[("onesided", 1), ("inverse", 1)]),
            vec![Some(spec), Some(len), None],
            1,
        );
        assert_eq!(back[0].shape(), &[1, 5, 1]);
        close(
            &back[0].to_f64_vec().unwrap(),
            &[1.0, 2.0, 0.0, -1.0, 3.0],
            1e-5,
        );
    }

    #[test]
    fn windows_match_numpy() {
        // numpy.hanning(5) (symmetric) = [0, 0.5, 1, 0.5, 0].
        let out = run1(
            "HannWindow",
            attrs(&[("periodic", 0)]),
            vec![Tensor::scalar(5i32)],
            1,
        );
        close(&out[0], &[0.0, 0.5, 1.0, 0.5, 0.0], 1e-6);
        // Periodic Blackman of 4 = numpy.blackman(5)[:4] = [-1.4e-17, 0.34, 1, 0.34].
        let out = run1(
            "BlackmanWindow",
            Attrs::default(),
            vec![Tensor::scalar(4i64)],
            1,
        );
        close(&out[0], &[0.0, 0.34, 1.0, 0.34], 1e-6);
    }
}
