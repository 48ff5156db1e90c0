//! Calibration-aware refit of a Kronecker approximation: alternating least
//! squares on the layer's outputs.
//!
//! Van Loan's factors ([`super::kronecker`]) minimise `‖W − Ŵ‖_F`, but what a
//! Linear layer `y = x·Wᵀ` loses is output error. Over calibration inputs
//! with second moments `H = E[xᵀx]` (`k × k`) the mean output error is
//!
//! ```text
//! f(Ŵ) = E‖x·(W − Ŵ)ᵀ‖² = tr((W − Ŵ)·H·(W − Ŵ)ᵀ),
//! ```
//!
//! the same quantity the predicted error of an alternative is made of
//! (`crate::quantize::predict`).
//!
//! **Rearranged form.** With `R` the rearrangement of
//! [`super::kronecker::rearrange`], `R(Σₜ Aₜ ⊗ Bₜ) = 𝐀·𝐁ᵀ`, `𝐀` (`n1·k1 × r`)
//! holding `vec(Aₜ)` in column `t` and `𝐁` (`n2·k2 × r`) holding `vec(Bₜ)`.
//! `H` acts on the rearranged space as the self-adjoint positive
//! semi-definite operator `𝓗(M) = R(R⁻¹(M)·H)`, and with `Y = R(W)`
//!
//! ```text
//! f = ⟨Y − 𝐀𝐁ᵀ, 𝓗(Y − 𝐀𝐁ᵀ)⟩,
//! ```
//!
//! a weighted rank-`r` approximation. For `H = I` it is the plain one, which
//! the truncated SVD (Van Loan) solves exactly; otherwise there is no closed
//! form, and we alternate.
//!
//! **Alternating least squares.** For fixed `𝐁`, `f` is a convex quadratic in
//! `𝐀`; with a small ridge `λ‖𝐀‖²` for conditioning, its minimiser solves the
//! normal equations
//!
//! ```text
//! 𝓗(𝐀𝐁ᵀ)·𝐁 + λ𝐀 = 𝓗(Y)·𝐁,        and for fixed 𝐀:  𝓗(𝐀𝐁ᵀ)ᵀ·𝐀 + λ𝐁 = 𝓗(Y)ᵀ·𝐀.
//! ```
//!
//! Writing them out: row `(i1, i2)` of `Ŵ` depends on `𝐀` only through row
//! `i1` of every `Aₜ`, and `H` mixes columns within a row, so the `𝐀` step
//! separates over `i1` into `n1` systems of `r·k1` unknowns that share one
//! matrix, `G[(t, j1), (s, l1)] = ⟨Bₜᵀ·Bₛ, H_{j1 l1}⟩` (`H_{j1 l1}` the
//! `k2 × k2` block of `H` at block row `j1`, block column `l1`); the `𝐁` step
//! separates over `i2` into `n2` systems of `r·k2` unknowns with
//! `G[(t, j2), (s, l2)] = Σ_{j1 l1} (Aₜᵀ·Aₛ)[j1, l1]·H[(j1, j2), (l1, l2)]`.
//! `H`'s off-diagonal blocks couple all `k1` (or `k2`) block columns, so
//! forming and factoring `G` costs `r²·k² + (r·k1)³/3`: ~10¹¹ for a
//! `384 × 1536` weight at half its parameters, too slow for an optimizer
//! pass. Each half-step instead runs a few steps of preconditioned conjugate
//! gradients on the normal equations, started at the current factors:
//!
//! * the operator is applied with GEMMs, `𝐀 ↦ 𝓗(𝐀𝐁ᵀ)·𝐁`, costing
//!   `n·k² + 2·n·k·r` per step without ever forming `G`;
//! * the preconditioner is the exact solve for `diag(H)`: then `G` is block
//!   diagonal, one `r × r` block per `j1`,
//!   `G_{j1}[t, s] = Σ_{i2 j2} H[(j1, j2), (j1, j2)]·Bₜ[i2, j2]·Bₛ[i2, j2]`
//!   (per `j2` in the `𝐁` step), cheap to invert. Where `H` is diagonal
//!   (per-input-channel scaling, the statistic activation-aware low rank
//!   uses) one step is the exact half-step.
//!
//! CG started at the current factors only lowers the (ridged) quadratic, so
//! every sweep lowers `f` up to the ridge; sweeps stop when the gain falls
//! below [`MIN_GAIN`], and the best factors seen, the start included, are
//! returned, so the refit is never worse than Van Loan's.

use super::kronecker::{rearrange, unrearrange, Factors, Kronecker};
use crate::linalg::spd_inverse;
use egret_runtime::kernels::gemm::{gemm_strided, sgemm};
use rayon::prelude::*;

/// Alternating sweeps (an `𝐀` step and a `𝐁` step each) at most.
const SWEEPS: usize = 4;
/// Conjugate-gradient steps per half-step.
const CG_STEPS: usize = 4;
/// Ridge `λ` relative to the mean diagonal of the preconditioner's blocks.
const RIDGE: f64 = 1e-6;
/// A sweep improving `f` by less than this fraction ends the refit.
const MIN_GAIN: f64 = 1e-2;

/// `Σ_rows d·H·dᵀ` for the rows `d` (width `k`) of `m`: the output error
/// power of a weight error `m` under inputs with second moments `h`
/// (`k × k`, f32), through the GEMM.
pub fn output_error(m: &[f32], h: &[f32], k: usize) -> f64 {
    let n = m.len() / k.max(1);
    let mut mh = vec![0f32; n * k];
    sgemm(n, k, k, m, h, &mut mh);
    mh.iter()
        .zip(m)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

/// `start` refit to minimise `tr((W − Ŵ)·H·(W − Ŵ)ᵀ)` for the `n × k` weight
/// `w` and the inputs' second moments `h` (`k × k`), by alternating least
/// squares (see the module docs). The result has `start`'s shapes and terms
/// and an output error at most `start`'s.
///
/// Panics if the lengths disagree with `start`'s shapes.
pub fn refit(w: &[f32], h: &[f64], start: &Kronecker) -> Kronecker {
    let f = start.shape;
    let [n, k] = f.dense_shape();
    assert!(
        w.len() == n * k && h.len() == k * k,
        "refit: a {n}×{k} weight and a {k}×{k} H"
    );
    let r = start.terms();
    if r == 0 {
        return start.clone();
    }
    let p = Problem::new(w, h, f, r);
    let (mut a, mut b) = (columns(&start.a, r), columns(&start.b, r));
    let mut best = (p.objective(&a, &b), a.clone(), b.clone());
    for _ in 0..SWEEPS {
        p.half_step(Side::A, &mut a, &b);
        p.half_step(Side::B, &mut b, &a);
        let err = p.objective(&a, &b);
        // Stops on NaN too.
        if err.partial_cmp(&best.0) != Some(std::cmp::Ordering::Less) {
            break;
        }
        let gain = (best.0 - err) / best.0;
        best = (err, a.clone(), b.clone());
        if gain < MIN_GAIN {
            break;
        }
    }
    let (_, a, b) = best;
    balanced(f, &a, &b, r)
}

/// The factors of `r` terms, each `len` values one after another, as the
/// columns of a `len × r` row-major matrix.
fn columns(terms: &[f32], r: usize) -> Vec<f32> {
    let len = terms.len() / r;
    let mut out = vec![0f32; terms.len()];
    for (t, term) in terms.chunks_exact(len).enumerate() {
        for (i, &v) in term.iter().enumerate() {
            out[i * r + t] = v;
        }
    }
    out
}

/// The inverse of [`columns`] for both factors, with each term's scale split
/// evenly between `Aₜ` and `Bₜ` (`Aₜ⊗Bₜ = cAₜ ⊗ Bₜ/c`; ALS leaves it
/// arbitrary).
fn balanced(f: Factors, a: &[f32], b: &[f32], r: usize) -> Kronecker {
    let (la, lb) = (f.n1 * f.k1, f.n2 * f.k2);
    let mut out = Kronecker {
        shape: f,
        a: Vec::with_capacity(la * r),
        b: Vec::with_capacity(lb * r),
    };
    for t in 0..r {
        let col = |m: &[f32], len: usize| -> Vec<f32> { (0..len).map(|i| m[i * r + t]).collect() };
        let (at, bt) = (col(a, la), col(b, lb));
        let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        let (na, nb) = (norm(&at), norm(&bt));
        let c = if na > 0.0 && nb > 0.0 {
            (nb / na).sqrt() as f32
        } else {
            1.0
        };
        out.a.extend(at.iter().map(|&v| v * c));
        out.b.extend(bt.iter().map(|&v| v / c));
    }
    out
}

/// Which factor a half-step solves for.
#[derive(Clone, Copy)]
enum Side {
    /// `𝐀` (`n1·k1 × r`), with `𝐁` fixed.
    A,
    /// `𝐁` (`n2·k2 × r`), with `𝐀` fixed.
    B,
}

/// One refit's fixed data.
struct Problem<'a> {
    f: Factors,
    r: usize,
    w: &'a [f32],
    /// `H` in f32 for the GEMMs.
    h: Vec<f32>,
    /// `H`'s diagonal, by input channel `j1·k2 + j2`.
    h_diag: Vec<f32>,
    /// `𝓗(Y) = R(W·H)`.
    target: Vec<f32>,
}

impl<'a> Problem<'a> {
    fn new(w: &'a [f32], h: &[f64], f: Factors, r: usize) -> Self {
        let [n, k] = f.dense_shape();
        let h: Vec<f32> = h.iter().map(|&v| v as f32).collect();
        let h_diag = (0..k).map(|j| h[j * k + j].max(0.0)).collect();
        let mut wh = vec![0f32; n * k];
        sgemm(n, k, k, w, &h, &mut wh);
        Problem {
            f,
            r,
            w,
            target: rearrange(&wh, f),
            h,
            h_diag,
        }
    }

    /// Rows of the unknown factor on `side`, and rows of the fixed one.
    fn rows(&self, side: Side) -> (usize, usize) {
        let (ra, rb) = (self.f.n1 * self.f.k1, self.f.n2 * self.f.k2);
        match side {
            Side::A => (ra, rb),
            Side::B => (rb, ra),
        }
    }

    /// `𝓗(M)` for `M` in the rearranged space.
    fn weigh(&self, m: &[f32]) -> Vec<f32> {
        let [n, k] = self.f.dense_shape();
        let mut mh = vec![0f32; n * k];
        sgemm(n, k, k, &unrearrange(m, self.f), &self.h, &mut mh);
        rearrange(&mh, self.f)
    }

    /// `R(Ŵ) = 𝐀·𝐁ᵀ` for the unknown `x` on `side` and the `fixed` other
    /// factor.
    fn outer(&self, side: Side, x: &[f32], fixed: &[f32]) -> Vec<f32> {
        let r = self.r as isize;
        let (ra, rb) = (self.f.n1 * self.f.k1, self.f.n2 * self.f.k2);
        let (a, b) = match side {
            Side::A => (x, fixed),
            Side::B => (fixed, x),
        };
        let mut m = vec![0f32; ra * rb];
        // 𝐁ᵀ is 𝐁 read with swapped strides.
        gemm_strided(ra, rb, self.r, a, r, 1, b, 1, r, &mut m, 1.0, 0.0);
        m
    }

    /// `M·𝐁` (`Side::A`) or `Mᵀ·𝐀` (`Side::B`) for `M` in the rearranged
    /// space: the normal equations' left side after [`Problem::weigh`].
    fn project(&self, side: Side, m: &[f32], fixed: &[f32]) -> Vec<f32> {
        let (rows, inner) = self.rows(side);
        let (rs, cs) = match side {
            Side::A => (inner as isize, 1),
            Side::B => (1, rows as isize),
        };
        let mut out = vec![0f32; rows * self.r];
        gemm_strided(
            rows,
            self.r,
            inner,
            m,
            rs,
            cs,
            fixed,
            self.r as isize,
            1,
            &mut out,
            1.0,
            0.0,
        );
        out
    }

    /// `f = tr((W − Ŵ)·H·(W − Ŵ)ᵀ)` for the factors `a`, `b`.
    fn objective(&self, a: &[f32], b: &[f32]) -> f64 {
        let approx = unrearrange(&self.outer(Side::A, a, b), self.f);
        let d: Vec<f32> = self.w.iter().zip(&approx).map(|(x, y)| x - y).collect();
        output_error(&d, &self.h, self.f.k1 * self.f.k2)
    }

    /// A few preconditioned CG steps on the normal equations for the factor
    /// `x` on `side` with `fixed` the other one, from `x`'s current value.
    fn half_step(&self, side: Side, x: &mut [f32], fixed: &[f32]) {
        let pre = Preconditioner::new(self, side, fixed);
        let apply = |p: &[f32]| -> Vec<f32> {
            let mut q = self.project(side, &self.weigh(&self.outer(side, p, fixed)), fixed);
            for (o, &v) in q.iter_mut().zip(p) {
                *o += pre.ridge * v;
            }
            q
        };
        let mut res = self.project(side, &self.target, fixed);
        for (o, v) in res.iter_mut().zip(apply(x)) {
            *o -= v;
        }
        let mut z = pre.apply(&res);
        let mut p = z.clone();
        let mut rz = dot(&res, &z);
        let first = rz;
        for _ in 0..CG_STEPS {
            if !rz.is_finite() || rz <= 1e-12 * first {
                break;
            }
            let q = apply(&p);
            let pq = dot(&p, &q);
            if !pq.is_finite() || pq <= 0.0 {
                break;
            }
            let alpha = (rz / pq) as f32;
            for ((xv, rv), (&pv, &qv)) in x.iter_mut().zip(res.iter_mut()).zip(p.iter().zip(&q)) {
                *xv += alpha * pv;
                *rv -= alpha * qv;
            }
            z = pre.apply(&res);
            let next = dot(&res, &z);
            let beta = (next / rz) as f32;
            for (pv, &zv) in p.iter_mut().zip(&z) {
                *pv = zv + beta * *pv;
            }
            rz = next;
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// The exact half-step solve for `diag(H)` (see the module docs): the
/// inverse of one `r × r` block per value of `j1` (`Side::A`) or `j2`
/// (`Side::B`), the unknown's row index modulo the block count, and the
/// ridge `λ` the operator adds too.
struct Preconditioner {
    blocks: usize,
    r: usize,
    /// The `blocks` inverses, `r × r` row-major each.
    inverse: Vec<f32>,
    ridge: f32,
}

impl Preconditioner {
    fn new(p: &Problem, side: Side, fixed: &[f32]) -> Self {
        let Factors { k1, k2, .. } = p.f;
        let (r, (_, inner)) = (p.r, p.rows(side));
        let blocks = match side {
            Side::A => k1,
            Side::B => k2,
        };
        // H's diagonal at block `b` and fixed-factor row `c`.
        let weight = |b: usize, c: usize| match side {
            Side::A => p.h_diag[b * k2 + c % k2],
            Side::B => p.h_diag[(c % k1) * k2 + b],
        };
        let grams: Vec<Vec<f64>> = (0..blocks)
            .into_par_iter()
            .map(|b| {
                // G_b = Fsᵀ·Fs, Fs the fixed factor's rows scaled by √weight.
                let mut fs = fixed.to_vec();
                for (c, row) in fs.chunks_exact_mut(r).enumerate() {
                    let s = weight(b, c).sqrt();
                    row.iter_mut().for_each(|v| *v *= s);
                }
                let mut g = vec![0f32; r * r];
                let ri = r as isize;
                gemm_strided(r, r, inner, &fs, 1, ri, &fs, ri, 1, &mut g, 1.0, 0.0);
                g.into_iter().map(f64::from).collect()
            })
            .collect();
        let trace: f64 = grams
            .iter()
            .map(|g| (0..r).map(|i| g[i * r + i]).sum::<f64>())
            .sum();
        let ridge = (RIDGE * trace / (blocks * r) as f64).max(f64::MIN_POSITIVE);
        let inverse = grams
            .into_par_iter()
            .flat_map_iter(|mut g| {
                (0..r).for_each(|i| g[i * r + i] += ridge);
                spd_inverse(&g, r).into_iter().map(|v| v as f32)
            })
            .collect();
        Preconditioner {
            blocks,
            r,
            inverse,
            ridge: ridge as f32,
        }
    }

    /// `z = M⁻¹·res`: each row times the inverse of its block.
    fn apply(&self, res: &[f32]) -> Vec<f32> {
        let (r, m) = (self.r, self.blocks);
        let rows = res.len() / r;
        let mut z = vec![0f32; res.len()];
        let mut part = vec![0f32; rows.div_ceil(m) * r];
        for b in 0..m.min(rows) {
            let count = (rows - b).div_ceil(m);
            // Block b's rows are b, b + m, …: a strided view of `res`.
            gemm_strided(
                count,
                r,
                r,
                &res[b * r..],
                (m * r) as isize,
                1,
                &self.inverse[b * r * r..],
                r as isize,
                1,
                &mut part,
                1.0,
                0.0,
            );
            for (i, row) in part.chunks_exact(r).take(count).enumerate() {
                let at = (b + i * m) * r;
                z[at..at + r].copy_from_slice(row);
            }
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::super::kronecker::nearest_kronecker;
    use super::*;

    use crate::compress::test_values as values;

    /// `tr(D·H·Dᵀ)` by the definition, in f64.
    fn dense_objective(w: &[f32], approx: &[f32], h: &[f64], k: usize) -> f64 {
        let d: Vec<f64> = w
            .iter()
            .zip(approx)
            .map(|(&a, &b)| f64::from(a - b))
            .collect();
        d.chunks_exact(k)
            .map(|row| {
                (0..k)
                    .flat_map(|i| (0..k).map(move |j| (i, j)))
                    .map(|(i, j)| row[i] * h[i * k + j] * row[j])
                    .sum::<f64>()
            })
            .sum()
    }

    /// `E[xᵀx]` over `m` rows whose channels have RMS from 1 to `spread` and
    /// a shared component (correlations): strongly anisotropic.
    fn second_moments(k: usize, m: usize, spread: f32) -> Vec<f64> {
        let x = values(m * k, 17);
        let common = values(m, 5);
        let mut h = vec![0f64; k * k];
        for (row, &c) in x.chunks_exact(k).zip(&common) {
            let xs: Vec<f64> = row
                .iter()
                .enumerate()
                .map(|(j, &v)| f64::from((v + c) * spread.powf(j as f32 / k as f32)))
                .collect();
            for i in 0..k {
                for j in 0..k {
                    h[i * k + j] += xs[i] * xs[j] / m as f64;
                }
            }
        }
        h
    }

    const F: Factors = Factors {
        n1: 6,
        k1: 4,
        n2: 4,
        k2: 8,
    };

    #[test]
    fn refit_lowers_the_output_error_under_anisotropic_inputs() {
        let [n, k] = F.dense_shape();
        let w = values(n * k, 3);
        let h = second_moments(k, 4 * k, 30.0);
        let start = nearest_kronecker(&w, F, 3);
        let fit = refit(&w, &h, &start);
        assert_eq!((fit.shape, fit.terms()), (F, 3));
        let before = dense_objective(&w, &start.dense(), &h, k);
        let after = dense_objective(&w, &fit.dense(), &h, k);
        assert!(after < 0.8 * before, "{after} vs {before}");
        // output_error is the same quantity.
        let h32: Vec<f32> = h.iter().map(|&v| v as f32).collect();
        let d: Vec<f32> = w.iter().zip(fit.dense()).map(|(a, b)| a - b).collect();
        assert!((output_error(&d, &h32, k) - after).abs() < 1e-4 * after);
        // The factored product still computes x·Ŵᵀ.
        let x = values(3 * k, 8);
        let dense = fit.dense();
        let want: Vec<f32> = (0..3 * n)
            .map(|i| {
                (0..k)
                    .map(|j| x[i / n * k + j] * dense[i % n * k + j])
                    .sum()
            })
            .collect();
        let got = fit.apply(&x, 3);
        let err: f32 = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum();
        assert!(err < 1e-4 * want.iter().map(|v| v.abs()).sum::<f32>());
    }

    /// With diagonal `H` the preconditioner is the exact half-step: the
    /// objective falls monotonically, and below the start.
    #[test]
    fn diagonal_weights_are_solved_exactly_per_half_step() {
        let [n, k] = F.dense_shape();
        let w = values(n * k, 11);
        let mut h = vec![0f64; k * k];
        for j in 0..k {
            h[j * k + j] = if j % 5 == 0 { 100.0 } else { 0.01 };
        }
        let start = nearest_kronecker(&w, F, 2);
        let fit = refit(&w, &h, &start);
        let before = dense_objective(&w, &start.dense(), &h, k);
        let after = dense_objective(&w, &fit.dense(), &h, k);
        assert!(after < 0.5 * before, "{after} vs {before}");
    }

    /// Under `H = I` Van Loan's factors are optimal: from the exact ones
    /// (every term of the full SVD of `R(W)`, truncated) the refit keeps
    /// their error; from the randomized SVD's it cannot go below it.
    #[test]
    fn identity_weights_keep_van_loans_optimum() {
        let [n, k] = F.dense_shape();
        let w = values(n * k, 23);
        let mut h = vec![0f64; k * k];
        (0..k).for_each(|j| h[j * k + j] = 1.0);
        let full = nearest_kronecker(&w, F, F.n1 * F.k1);
        for terms in [1, 4] {
            let exact = Kronecker {
                shape: F,
                a: full.a[..terms * F.n1 * F.k1].to_vec(),
                b: full.b[..terms * F.n2 * F.k2].to_vec(),
            };
            let optimum = dense_objective(&w, &exact.dense(), &h, k);
            let kept = dense_objective(&w, &refit(&w, &h, &exact).dense(), &h, k);
            assert!(
                (kept - optimum).abs() <= 1e-6 * optimum,
                "{kept} vs {optimum}"
            );
            let start = nearest_kronecker(&w, F, terms);
            let before = dense_objective(&w, &start.dense(), &h, k);
            let after = dense_objective(&w, &refit(&w, &h, &start).dense(), &h, k);
            assert!(after <= before && after >= optimum * (1.0 - 1e-6));
        }
    }
}
