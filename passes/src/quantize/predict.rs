//! The predicted error of a quantized alternative: the relative noise power
//! it adds to the layer's output, from calibration statistics.
//!
//! * With the second-moment matrix `H = E[xᵀx]` (gathered for GPTQ), exactly
//!   `tr(D H Dᵀ) / tr(W H Wᵀ)` for `D = W − Ŵ`: the output noise over the
//!   output power, cross-channel correlations included (GPTQ's compensation
//!   moves error into directions `H` says are quiet, which only this sees).
//! * Otherwise the diagonal approximation `Σ w_k D² / Σ w_k W²` with `w_k =
//!   E[x_k²]` (uniform without calibration).
//! * W8A8 adds the measured per-token int8 activation noise.
//! * Activation sparsity changes no weight: its error is the power of the
//!   dropped activations through the weight, `Σ_j d_j w_j ‖W_:j‖² / Σ_j w_j
//!   ‖W_:j‖²` with `d_j` the fraction of input `j`'s power the threshold
//!   drops on the calibration sample (cross terms neglected, as in the
//!   diagonal case).

use super::awq::scale_columns;
use super::rules::{kronecker_geometry, Made, SourceStats};
use super::scheme::Scheme;
use super::site::oriented_f32;
use crate::compress::kron_refit::output_error;
use crate::egraph::EGraph;
use egret_ir::{blocks, DType, Tensor};
use std::collections::{HashMap, HashSet};

/// Default per-token int8 activation noise when nothing was calibrated: a
/// row whose peak is 4 standard deviations (`(4/127)² / 12`).
const DEFAULT_ACT_NSR: f64 = 16.0 / (12.0 * 127.0 * 127.0);

/// `Σ w_k (a − b)² / Σ w_k a²` over rows of width `imp.len()` (or unweighted).
pub(crate) fn rel_err(a: &[f32], b: &[f32], imp: Option<&[f32]>) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let width = imp.map_or(a.len().max(1), |v| v.len().max(1));
    for (ra, rb) in a.chunks(width).zip(b.chunks(width)) {
        for (j, (&x, &y)) in ra.iter().zip(rb).enumerate() {
            let w = imp.and_then(|v| v.get(j)).map_or(1.0, |&v| f64::from(v));
            let d = f64::from(x) - f64::from(y);
            num += w * d * d;
            den += w * f64::from(x) * f64::from(x);
        }
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// `tr(D H Dᵀ) / tr(W H Wᵀ)`, `D = a − b`, rows of width `k`.
pub(crate) fn hessian_rel_err(a: &[f32], b: &[f32], h: &[f64], k: usize) -> Option<f64> {
    if k == 0 || h.len() != k * k || a.len() != b.len() || !a.len().is_multiple_of(k) {
        return None;
    }
    let h32: Vec<f32> = h.iter().map(|&v| v as f32).collect();
    let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let den = output_error(a, &h32, k);
    Some(if den > 0.0 {
        (output_error(&d, &h32, k) / den).max(0.0)
    } else {
        0.0
    })
}

/// The f32 values a quantized weight stands for: int8 `w` with per-row
/// `scales`, or a block tensor.
pub(crate) fn values(w: &Tensor, scales: Option<&Tensor>) -> Option<Vec<f32>> {
    if w.dtype() == DType::I8 {
        let s = scales?.as_slice::<f32>().ok()?;
        let k = *w.shape().get(1)?;
        return Some(
            w.bytes()
                .iter()
                .enumerate()
                .map(|(i, &v)| f32::from(v as i8) * s.get(i / k.max(1)).copied().unwrap_or(0.0))
                .collect(),
        );
    }
    Some(blocks::dequantize(w).ok()?.as_slice::<f32>().ok()?.to_vec())
}

/// The f32 values a made alternative stands for (`n × k`): dequantized with
/// AWQ's column scaling undone, or multiplied out from a factorization's
/// factors.
fn dequantized(eg: &EGraph, m: &Made, n: usize, k: usize) -> Option<Vec<f32>> {
    if m.scheme.is_factorization() {
        return factorized_dense(eg, m, n, k);
    }
    if let Scheme::Pruned { .. } = m.scheme {
        let t = |i: usize| m.tensors.get(i).and_then(|&c| eg.analysis.tensor(c));
        let sparse =
            egret_ir::sparse::SparseMatrix::from_tensors(&t(0)?, &t(1)?, &t(2)?, t(3).as_ref(), k)
                .ok()?;
        return (sparse.n == n).then(|| sparse.densify());
    }
    let w = eg.analysis.tensor(*m.tensors.first()?)?;
    let scales = m.tensors.get(1).and_then(|&t| eg.analysis.tensor(t));
    let v = values(&w, scales.as_ref())?;
    match m.input_scale {
        Some(inv) => Some(scale_columns(
            &v,
            eg.analysis.tensor(inv)?.as_slice::<f32>().ok()?,
        )),
        None => Some(v),
    }
}

/// The dense `n × k` matrix a factorization's factors stand for.
fn factorized_dense(eg: &EGraph, m: &Made, n: usize, k: usize) -> Option<Vec<f32>> {
    use crate::compress::{factorize, kronecker::Factors};
    let a = eg.analysis.tensor(*m.tensors.first()?)?;
    let b = eg.analysis.tensor(*m.tensors.get(1)?)?;
    let (av, bv) = (a.as_slice::<f32>().ok()?, b.as_slice::<f32>().ok()?);
    match m.scheme {
        Scheme::LowRank(_) => Some(factorize::low_rank_dense(av, bv, n, k)),
        _ => {
            let (n1, k1, n2, k2, _) = kronecker_geometry(a.shape(), b.shape(), n, k)?;
            let f = Factors { n1, k1, n2, k2 };
            Some(factorize::kronecker_from_layout(av, bv, f)?.dense())
        }
    }
}

/// Bytes and predicted error of one scheme for one source over its uses.
pub fn alternative_cost(
    eg: &EGraph,
    src: &Tensor,
    mine: &[&Made],
    stats: &SourceStats,
    act: &HashMap<usize, f64>,
) -> Option<(usize, f64)> {
    let mut seen = HashSet::new();
    let (mut bytes, mut err) = (0usize, 0.0f64);
    for m in mine {
        for &t in &m.tensors {
            if seen.insert(t) {
                bytes += eg.analysis.tensor(t)?.bytes().len();
            }
        }
        let a = oriented_f32(src, m.transposed)?;
        let (n, k) = (*a.shape().first()?, *a.shape().last()?);
        let a = a.as_slice::<f32>().ok()?;
        if let Scheme::ActSparse(p) = m.scheme {
            if p == 0 {
                continue;
            }
            let drop = stats.act_drop.get(&(m.source, p))?;
            let imp = stats.importance.get(&m.source).map(Vec::as_slice);
            err += dropped_input_err(a, k, &drop.dropped_power, imp);
            continue;
        }
        let b = dequantized(eg, m, n, k)?;
        let hessian = stats.hessians.get(&m.source).filter(|_| !m.table);
        err += match hessian.and_then(|h| hessian_rel_err(a, &b, h, k)) {
            Some(e) => e,
            None => {
                let weights = stats.importance.get(&m.source).filter(|_| !m.table);
                rel_err(a, &b, weights.map(|v| v.as_slice()))
            }
        };
        if m.scheme == Scheme::W8A8 && !m.table {
            err += act.get(&m.source).copied().unwrap_or(DEFAULT_ACT_NSR);
        }
    }
    Some((bytes, err))
}

/// The relative output power lost when input `j` of the `n × k` weight `w`
/// loses the fraction `dropped[j]` of its power `imp[j]` (uniform without
/// calibration).
fn dropped_input_err(w: &[f32], k: usize, dropped: &[f32], imp: Option<&[f32]>) -> f64 {
    let mut col = vec![0f64; k];
    for row in w.chunks_exact(k.max(1)) {
        for (c, &v) in col.iter_mut().zip(row) {
            *c += f64::from(v) * f64::from(v);
        }
    }
    let (mut num, mut den) = (0.0, 0.0);
    for (j, &c) in col.iter().enumerate() {
        let p = imp.and_then(|v| v.get(j)).map_or(1.0, |&v| f64::from(v)) * c;
        num += p * dropped.get(j).map_or(0.0, |&d| f64::from(d));
        den += p;
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_inputs_lose_their_share_of_the_output_power() {
        // Column 0 carries 1 + 9 = 10 of the power, column 1 carries 4 + 0.
        let w = [1.0, 2.0, 3.0, 0.0];
        let e = dropped_input_err(&w, 2, &[0.5, 0.0], None);
        assert!((e - 5.0 / 14.0).abs() < 1e-12, "{e}");
        let e = dropped_input_err(&w, 2, &[0.0, 1.0], Some(&[1.0, 2.5]));
        assert!((e - 10.0 / 20.0).abs() < 1e-12, "{e}");
    }

    #[test]
    fn hessian_error_matches_the_diagonal_one_for_a_diagonal_h() {
        let a = [1.0, -2.0, 0.5, 3.0, 0.0, 1.0];
        let b = [0.9, -2.0, 0.4, 3.1, 0.1, 1.0];
        let imp = [2.0f32, 1.0, 0.5];
        let h = [2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5];
        let diag = rel_err(&a, &b, Some(&imp));
        let full = hessian_rel_err(&a, &b, &h, 3).unwrap();
        assert!((diag - full).abs() < 1e-6 * diag, "{diag} vs {full}");
        // A correlation the diagonal cannot see: errors that cancel on x = (1, 1, 0).
        let h = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let e = hessian_rel_err(&[1.0, 1.0, 0.0], &[1.1, 0.9, 0.0], &h, 3).unwrap();
        assert!(e < 1e-6, "{e}");
        assert!(hessian_rel_err(&a, &b, &h, 4).is_none());
    }
}
