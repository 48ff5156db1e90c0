//! Activation-aware weight scaling (AWQ; Lin et al., 2023).
//!
//! A few input channels carry much larger activations than the rest, and the
//! rounding error of their weights dominates the output error. Scaling input
//! channel `j` of every weight that reads an activation by `s_j`, and the
//! activation itself by `1/s_j`, leaves the product unchanged but gives those
//! weights a finer share of each block's grid.
//!
//! * `s_j = rms_j^α`, where `rms_j² = E[x_j²]` comes from calibration, and
//!   then `s` is normalised so that `√(max·min) = 1`, as the paper does.
//! * `α` is searched on a grid ([`ALPHAS`]). Each candidate is scored by the
//!   summed predicted error ([`super::predict`]: the output noise ratio under
//!   the calibration's second moments `H` when they were gathered, which the
//!   paper's output MSE on calibration data amounts to; else the diagonal
//!   form) of every weight reading the activation, rounded by the same importance-weighted
//!   quantizer the pass then uses. Rows are rounded independently, so the
//!   search scores an even sample of at most [`SAMPLE_ROWS`] rows per weight
//!   (it runs 11 times). `α = 0` is the unscaled quantization, so the search
//!   never predicts worse than without scaling.
//! * One `s` is shared by all readers of an activation (q, k and v, or gate
//!   and up). The rewrite then folds `1/s` into the norm that makes the
//!   activation, when there is one ([`super::rules`]), and applies it with a
//!   `Mul` otherwise.
//!
//! The paper searches `α` on the quantized model's real outputs; this module
//! uses the calibration's per-channel second moments instead, which is what
//! the rest of the pass predicts errors with.

use super::predict::{hessian_rel_err, rel_err, values};
use super::scheme::Scheme;
use egret_ir::Tensor;

/// Rows of each weight the search scores.
pub const SAMPLE_ROWS: usize = 96;

/// The exponents tried, 0 (no scaling) to 1.
pub const ALPHAS: [f32; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The scaling chosen for one activation.
#[derive(Clone, Debug, PartialEq)]
pub struct Searched {
    /// The exponent chosen.
    pub alpha: f32,
    /// Per input channel, the factor the weights' columns are multiplied by.
    pub scale: Vec<f32>,
    /// Summed predicted error of the readers at `alpha`.
    pub err: f64,
    /// The same at `α = 0` (no scaling).
    pub err_unscaled: f64,
}

/// `s_j = importance_j^(α/2)` (importance is `E[x_j²]` up to a constant),
/// normalised so that `√(max·min) = 1`.
pub fn channel_scales(importance: &[f32], alpha: f32) -> Vec<f32> {
    let s: Vec<f32> = importance
        .iter()
        .map(|&v| v.max(1e-12).powf(alpha / 2.0))
        .collect();
    let (lo, hi) = s
        .iter()
        .fold((f32::INFINITY, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let norm = (lo * hi).sqrt();
    if norm.is_finite() && norm > 0.0 {
        s.iter().map(|&v| v / norm).collect()
    } else {
        vec![1.0; importance.len()]
    }
}

/// The `[n, k]` row-major matrix `w` with column `j` multiplied by `s[j]`.
pub fn scale_columns(w: &[f32], s: &[f32]) -> Vec<f32> {
    w.chunks(s.len().max(1))
        .flat_map(|row| row.iter().zip(s).map(|(&x, &f)| x * f))
        .collect()
}

/// The importance of a weight whose columns were scaled by `s`, in the
/// original units: undoing the scaling divides column `j`'s error by `s_j`,
/// so its weight in the error is divided by `s_j²`.
pub fn scaled_importance(importance: &[f32], s: &[f32]) -> Vec<f32> {
    importance
        .iter()
        .zip(s)
        .map(|(&w, &f)| w / (f * f))
        .collect()
}

/// An even sample of at most [`SAMPLE_ROWS`] rows of the `[n, k]` matrix `w`.
fn sample_rows(w: &[f32], k: usize) -> Vec<f32> {
    let n = w.len() / k.max(1);
    let step = n.div_ceil(SAMPLE_ROWS).max(1);
    w.chunks(k.max(1))
        .step_by(step)
        .flatten()
        .copied()
        .collect()
}

/// The predicted error of the readers `weights` (each `[n, k]` f32, already
/// sampled) when quantized by `scheme` after scaling their columns by `s`,
/// under the second moments `hessian` if given.
fn scaled_error(
    weights: &[Vec<f32>],
    importance: &[f32],
    hessian: Option<&[f64]>,
    s: &[f32],
    scheme: Scheme,
) -> Option<f64> {
    let k = s.len().max(1);
    let weighted = scaled_importance(importance, s);
    let inverse: Vec<f32> = s.iter().map(|&f| 1.0 / f).collect();
    let mut err = 0.0;
    for x in weights {
        let scaled = Tensor::from_vec(vec![x.len() / k, k], scale_columns(x, s)).ok()?;
        let (q, scales) = scheme
            .quantize(&scaled, Some(&weighted), false, None)
            .ok()?;
        let back = scale_columns(&values(&q, scales.as_ref())?, &inverse);
        err += match hessian {
            Some(h) => hessian_rel_err(x, &back, h, k)?,
            None => rel_err(x, &back, Some(importance)),
        };
    }
    Some(err)
}

/// The best exponent in [`ALPHAS`] for the readers `weights` of an
/// activation with calibration `importance` (and second moments `hessian`,
/// `[k, k]`, if gathered), under `scheme`.
pub fn search(
    weights: &[Tensor],
    importance: &[f32],
    hessian: Option<&[f64]>,
    scheme: Scheme,
) -> Option<Searched> {
    let k = importance.len();
    let weights: Vec<Vec<f32>> = weights
        .iter()
        .map(|w| Some(sample_rows(w.as_slice::<f32>().ok()?, k)))
        .collect::<Option<_>>()?;
    let mut best: Option<Searched> = None;
    let mut unscaled = f64::NAN;
    for alpha in ALPHAS {
        let scale = channel_scales(importance, alpha);
        let err = scaled_error(&weights, importance, hessian, &scale, scheme)?;
        if alpha == 0.0 {
            unscaled = err;
        }
        if best.as_ref().is_none_or(|b| err < b.err) {
            best = Some(Searched {
                alpha,
                scale,
                err,
                err_unscaled: f64::NAN,
            });
        }
    }
    best.map(|b| Searched {
        err_unscaled: unscaled,
        ..b
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::BlockFormat;

    #[test]
    fn scales_are_normalised_powers_of_the_rms() {
        let s = channel_scales(&[4.0, 1.0, 0.25], 1.0);
        // rms 2, 1, 0.5; √(max·min) = 1 already.
        assert_eq!(s, vec![2.0, 1.0, 0.5]);
        assert_eq!(channel_scales(&[9.0, 1.0], 0.0), vec![1.0, 1.0]);
        let s = channel_scales(&[16.0, 1.0], 0.5);
        assert!((s[0] / s[1] - 2.0).abs() < 1e-6 && (s[0] * s[1] - 1.0).abs() < 1e-6);
        assert_eq!(
            scale_columns(&[1.0, 2.0, 3.0, 4.0], &[2.0, 0.5]),
            [2.0, 1.0, 6.0, 2.0]
        );
    }

    /// Weights whose inputs have a few loud channels: scaling must cut the
    /// predicted Q4_0 error well below plain rounding, and `α = 0` must be
    /// plain rounding.
    #[test]
    fn search_cuts_the_error_when_a_few_channels_are_loud() {
        let (n, k) = (16, 64);
        let mut state = 7u64;
        let mut rand = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let w: Vec<f32> = (0..n * k).map(|_| rand()).collect();
        let importance: Vec<f32> = (0..k)
            .map(|j| if j % 16 == 3 { 400.0 } else { 0.5 })
            .collect();
        let t = Tensor::from_vec(vec![n, k], w.clone()).unwrap();
        let scheme = Scheme::Blocks(BlockFormat::Q4_0);
        let found = search(std::slice::from_ref(&t), &importance, None, scheme).unwrap();
        let (q, _) = scheme.quantize(&t, Some(&importance), false, None).unwrap();
        let plain = rel_err(&w, &values(&q, None).unwrap(), Some(&importance));
        assert!((found.err_unscaled - plain).abs() < 1e-12 * plain.max(1.0));
        assert!(found.alpha > 0.0, "{found:?}");
        assert!(found.err < 0.8 * plain, "{} vs {plain}", found.err);
    }
}
