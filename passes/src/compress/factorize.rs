//! Factorized stand-ins for a Linear layer's weight, in the layouts the
//! rewrites compute them with (ONNX `MatMul`s, so every backend and the ONNX
//! export run them unchanged).
//!
//! The weight is `W` (`n × k`, rows = output channels) and the layer computes
//! `y = x·Wᵀ`.
//!
//! * **Low rank** ([`low_rank`]): `Wᵀ ≈ P·Q`, `P` `k × r`, `Q` `r × n`, so
//!   `y = (x·P)·Q`. With calibration, the SVD is of `W·diag(d)`, `d_j` the
//!   RMS of input channel `j`, and `diag(1/d)` is folded back into `P`: the
//!   activation-aware variant, which spends the rank on the directions the
//!   inputs actually excite.
//! * **Kronecker** ([`kronecker`]): `W ≈ Σᵣ Aᵣ ⊗ Bᵣ`, stored as `Acat`
//!   (`n1 × R·k1`, the `Aᵣ` side by side) and `Bcat` (`k2 × R·n2`, the `Bᵣᵀ`
//!   side by side), so that with `X` the `k1 × k2` reshape of a row,
//!   `T = X·Bcat` holds every `X·Bᵣᵀ` and `Acat · [T₁; …; T_R] = Σᵣ Aᵣ·X·Bᵣᵀ`
//!   is the row's output as `n1 × n2`.

use super::kron_refit;
use super::kronecker::{nearest_kronecker, Factors, Kronecker};
use super::svd::{matmul, truncated_svd};
use rayon::prelude::*;

/// The rank whose two factors hold `keep_pct` % of an `n × k` matrix's
/// parameters (0 when not even rank 1 fits).
pub fn low_rank_rank(n: usize, k: usize, keep_pct: u8) -> usize {
    (n * k * usize::from(keep_pct)) / (100 * (n + k).max(1))
}

/// `(P, Q, r)` with `Wᵀ ≈ P·Q` (`P` `k × r`, `Q` `r × n`, row-major) at the
/// rank [`low_rank_rank`] gives, or `None` if that rank is 0 (below 100 %
/// of the parameters the rank is always below `min(n, k)`). `input_ms` (length `k`), the calibration mean of
/// `x_j²`, makes it activation-aware.
pub fn low_rank(
    w: &[f32],
    n: usize,
    k: usize,
    keep_pct: u8,
    input_ms: Option<&[f32]>,
) -> Option<(Vec<f32>, Vec<f32>, usize)> {
    let r = low_rank_rank(n, k, keep_pct);
    if r == 0 || r >= n.min(k) || w.len() != n * k {
        return None;
    }
    let d = input_ms.filter(|v| v.len() == k).map(channel_scale);
    let scaled: Vec<f32> = match &d {
        Some(d) => w
            .chunks_exact(k)
            .flat_map(|row| row.iter().zip(d).map(|(x, s)| x * s))
            .collect(),
        None => w.to_vec(),
    };
    let svd = truncated_svd(&scaled, n, k, r);
    let r = svd.rank();
    // Split each σ evenly between the factors.
    let roots: Vec<f32> = svd.s.iter().map(|s| s.sqrt()).collect();
    let mut p = vec![0f32; k * r];
    for t in 0..r {
        for j in 0..k {
            let undo = d.as_ref().map_or(1.0, |d| 1.0 / d[j]);
            p[j * r + t] = svd.vt[t * k + j] * roots[t] * undo;
        }
    }
    let mut q = vec![0f32; r * n];
    for i in 0..n {
        for t in 0..r {
            q[t * n + i] = svd.u[i * r + t] * roots[t];
        }
    }
    Some((p, q, r))
}

/// Per-channel scale `d_j = √E[x_j²]`, floored at a thousandth of the mean so
/// that a dead channel cannot blow up `1/d`.
fn channel_scale(ms: &[f32]) -> Vec<f32> {
    let rms: Vec<f32> = ms.iter().map(|&v| v.max(0.0).sqrt()).collect();
    let mean = rms.iter().sum::<f32>() / rms.len().max(1) as f32;
    let floor = (mean * 1e-3).max(f32::MIN_POSITIVE);
    rms.into_iter().map(|v| v.max(floor)).collect()
}

/// `Wᵀ = P·Q` back as `W` (`n × k` row-major).
pub fn low_rank_dense(p: &[f32], q: &[f32], n: usize, k: usize) -> Vec<f32> {
    let r = p.len() / k.max(1);
    let mut wt = vec![0f32; k * n];
    matmul(k, n, r, p, q, &mut wt);
    transpose(&wt, k, n)
}

/// A Kronecker plan for an `n × k` matrix at `keep_pct` % of its parameters:
/// candidate factor shapes (`n2`, `k2` divisors of `n`, `k` near their square
/// roots, and twice or half that), each with as many terms as the budget
/// allows, scored by their error; the best wins. `None` when no shape leaves
/// room for a term.
///
/// With `h`, the second moments `E[xᵀx]` (`k × k`) of the layer's input,
/// the error is the output error `tr((W − Ŵ)·H·(W − Ŵ)ᵀ)` and the winner is
/// refit to it ([`kron_refit::refit`]); otherwise it is the Frobenius error
/// and Van Loan's factors are kept.
pub fn kronecker(
    w: &[f32],
    n: usize,
    k: usize,
    keep_pct: u8,
    h: Option<&[f64]>,
) -> Option<Kronecker> {
    if w.len() != n * k {
        return None;
    }
    let h = h.filter(|h| h.len() == k * k);
    let h32: Option<Vec<f32>> = h.map(|h| h.iter().map(|&v| v as f32).collect());
    let budget = n * k * usize::from(keep_pct) / 100;
    let mut shapes = Vec::new();
    for n2 in near_root_divisors(n) {
        for k2 in near_root_divisors(k) {
            let f = Factors {
                n1: n / n2,
                k1: k / k2,
                n2,
                k2,
            };
            let terms = budget / f.params_per_term();
            // R(W) is n1·k1 × n2·k2: beyond its rank a term adds nothing.
            if terms > 0 && terms < (f.n1 * f.k1).min(f.n2 * f.k2) {
                shapes.push((f, terms));
            }
        }
    }
    // The shapes are scored in parallel: the SVD's small dense steps
    // (Cholesky, the eigensolver) run on one core each.
    let best = shapes
        .into_par_iter()
        .map(|(f, terms)| {
            let found = nearest_kronecker(w, f, terms);
            let approx = found.dense();
            let err = match &h32 {
                Some(h) => {
                    let d: Vec<f32> = w.iter().zip(&approx).map(|(a, b)| a - b).collect();
                    kron_refit::output_error(&d, h, k)
                }
                None => sq_dist(w, &approx),
            };
            (err, found)
        })
        .collect::<Vec<_>>()
        .into_iter()
        // The first of equal errors, whatever the threads' timing.
        .reduce(|a, b| if b.0 < a.0 { b } else { a });
    let (_, found) = best?;
    Some(match h {
        Some(h) => kron_refit::refit(w, h, &found),
        None => found,
    })
}

/// Divisors of `n` nearest `√n`, and those nearest twice and half of it
/// (at most three, each at least 2 and below `n`).
fn near_root_divisors(n: usize) -> Vec<usize> {
    let divisors: Vec<usize> = (2..n).filter(|d| n.is_multiple_of(*d)).collect();
    let root = (n as f64).sqrt();
    let mut out: Vec<usize> = Vec::new();
    for target in [root, root * 2.0, root / 2.0] {
        let near = divisors.iter().copied().min_by(|&a, &b| {
            (a as f64 - target)
                .abs()
                .total_cmp(&(b as f64 - target).abs())
        });
        if let Some(d) = near.filter(|d| !out.contains(d)) {
            out.push(d);
        }
    }
    out
}

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x - y).powi(2))
        .sum()
}

/// The Kronecker factors in the rewrite's layout: `(Acat, Bcat)`, `Acat`
/// `n1 × R·k1`, `Bcat` `k2 × R·n2` (see the module docs).
pub fn kronecker_layout(kr: &Kronecker) -> (Vec<f32>, Vec<f32>) {
    let Factors { n1, k1, n2, k2 } = kr.shape;
    let r = kr.terms();
    let mut acat = vec![0f32; n1 * r * k1];
    let mut bcat = vec![0f32; k2 * r * n2];
    for (t, (a, b)) in kr.a.chunks(n1 * k1).zip(kr.b.chunks(n2 * k2)).enumerate() {
        for i in 0..n1 {
            acat[i * r * k1 + t * k1..i * r * k1 + (t + 1) * k1]
                .copy_from_slice(&a[i * k1..(i + 1) * k1]);
        }
        for i2 in 0..n2 {
            for j2 in 0..k2 {
                bcat[j2 * r * n2 + t * n2 + i2] = b[i2 * k2 + j2];
            }
        }
    }
    (acat, bcat)
}

/// The inverse of [`kronecker_layout`]: the factors back from `(Acat, Bcat)`
/// with `f`'s shapes.
pub fn kronecker_from_layout(acat: &[f32], bcat: &[f32], f: Factors) -> Option<Kronecker> {
    let Factors { n1, k1, n2, k2 } = f;
    let r = acat.len() / (n1 * k1).max(1);
    if acat.len() != n1 * r * k1 || bcat.len() != k2 * r * n2 {
        return None;
    }
    let mut a = Vec::with_capacity(r * n1 * k1);
    let mut b = Vec::with_capacity(r * n2 * k2);
    for t in 0..r {
        for i in 0..n1 {
            a.extend_from_slice(&acat[i * r * k1 + t * k1..i * r * k1 + (t + 1) * k1]);
        }
        for i2 in 0..n2 {
            b.extend((0..k2).map(|j2| bcat[j2 * r * n2 + t * n2 + i2]));
        }
    }
    Some(Kronecker { shape: f, a, b })
}

/// The `rows × cols` row-major matrix `m`, transposed.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for (i, row) in m.chunks_exact(cols.max(1)).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compress::test_values as values;

    fn rel(a: &[f32], b: &[f32]) -> f64 {
        (sq_dist(a, b) / b.iter().map(|&y| f64::from(y).powi(2)).sum::<f64>()).sqrt()
    }

    #[test]
    fn low_rank_recovers_a_low_rank_matrix_and_sizes_by_parameters() {
        // W = U·V of rank 4, 48 × 40.
        let (n, k) = (48, 40);
        let (u, v) = (values(n * 4, 1), values(4 * k, 2));
        let mut w = vec![0f32; n * k];
        matmul(n, k, 4, &u, &v, &mut w);
        // 25 % of 48·40 = 480 values: rank 480 / 88 = 5.
        assert_eq!(low_rank_rank(n, k, 25), 5);
        let (p, q, r) = low_rank(&w, n, k, 25, None).unwrap();
        assert_eq!((r, p.len(), q.len()), (5, k * 5, 5 * n));
        assert!(rel(&low_rank_dense(&p, &q, n, k), &w) < 1e-4);
        // Activation-aware: still exact on an exactly low-rank matrix.
        let ms: Vec<f32> = (0..k).map(|j| 0.1 + j as f32).collect();
        let (p, q, _) = low_rank(&w, n, k, 25, Some(&ms)).unwrap();
        assert!(rel(&low_rank_dense(&p, &q, n, k), &w) < 1e-4);
        // Not even rank 1 fits in 1 % of the parameters.
        assert!(low_rank(&w, n, k, 1, None).is_none());
    }

    /// Weighting by the input RMS moves the error off the loud channels.
    #[test]
    fn activation_aware_low_rank_protects_loud_channels() {
        let (n, k) = (32, 32);
        let w = values(n * k, 9);
        let ms: Vec<f32> = (0..k).map(|j| if j < 4 { 100.0 } else { 0.01 }).collect();
        let weighted = |p: &[f32], q: &[f32]| {
            let d = low_rank_dense(p, q, n, k);
            (0..n * k)
                .map(|i| f64::from(ms[i % k]) * f64::from(d[i] - w[i]).powi(2))
                .sum::<f64>()
        };
        let (p0, q0, _) = low_rank(&w, n, k, 25, None).unwrap();
        let (p1, q1, _) = low_rank(&w, n, k, 25, Some(&ms)).unwrap();
        assert!(weighted(&p1, &q1) < 0.1 * weighted(&p0, &q0));
    }

    #[test]
    fn kronecker_layout_round_trips_and_computes_the_product() {
        let (n, k) = (24, 16);
        let w = values(n * k, 4);
        let kr = kronecker(&w, n, k, 40, None).unwrap();
        assert!(kr.params() <= n * k * 40 / 100);
        let (acat, bcat) = kronecker_layout(&kr);
        let back = kronecker_from_layout(&acat, &bcat, kr.shape).unwrap();
        assert_eq!(back.dense(), kr.dense());
        // y = Acat · [X·Bcat reshaped] for one row x, against x·Ŵᵀ.
        let Factors { n1, k1, n2, k2 } = kr.shape;
        let r = kr.terms();
        let x = values(k, 8);
        let mut t = vec![0f32; k1 * r * n2];
        matmul(k1, r * n2, k2, &x, &bcat, &mut t);
        // [k1, R, n2] -> [R, k1, n2]
        let mut stacked = vec![0f32; r * k1 * n2];
        for j1 in 0..k1 {
            for q in 0..r {
                for i2 in 0..n2 {
                    stacked[(q * k1 + j1) * n2 + i2] = t[(j1 * r + q) * n2 + i2];
                }
            }
        }
        let mut y = vec![0f32; n1 * n2];
        matmul(n1, n2, r * k1, &acat, &stacked, &mut y);
        let dense = kr.dense();
        let want: Vec<f32> = (0..n)
            .map(|o| (0..k).map(|j| x[j] * dense[o * k + j]).sum())
            .collect();
        assert!(rel(&y, &want) < 1e-5);
    }

    #[test]
    fn factor_shapes_are_divisors_near_the_root() {
        assert_eq!(near_root_divisors(384), vec![16, 32, 8]);
        assert_eq!(near_root_divisors(7), Vec::<usize>::new());
    }
}
