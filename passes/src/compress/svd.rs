//! Truncated SVD by randomized range finding (Halko, Martinsson and Tropp,
//! 2011).
//!
//! 1. Sketch the range of `A` (`m × n`): `Y = A·Ω` with `Ω` an `n × l`
//!    pseudo-random matrix, `l = r + OVERSAMPLE`.
//! 2. Sharpen it with [`POWER_ITERS`] power iterations, `Y ← A·(Aᵀ·Y)`,
//!    orthonormalising in between, so slowly decaying spectra (weight
//!    matrices) are still captured.
//! 3. With `Q` the orthonormal basis of `Y`, `B = Qᵀ·A` is only `l × n`; its
//!    SVD comes from the eigen-decomposition of `B·Bᵀ` (`l × l`,
//!    [`crate::linalg::symmetric_eigen`]), and `A ≈ (Q·W)·Σ·Vᵀ`.
//!
//! The products with `A` go through the GEMM in f32; everything that decides
//! accuracy (orthonormalisation by Cholesky QR, `B`, its Gram matrix, the
//! eigensolver and the singular vectors) runs in f64, also as GEMMs.

use crate::linalg::{orthonormalize, symmetric_eigen};
use egret_runtime::kernels::gemm::gemm_strided;

/// Sketch columns beyond the rank asked for.
pub const OVERSAMPLE: usize = 8;
/// Power iterations over the sketch.
pub const POWER_ITERS: usize = 2;

/// A rank-`r` factorization `A ≈ U·diag(s)·Vᵀ` of an `m × n` matrix.
#[derive(Clone, Debug)]
pub struct Svd {
    /// Rows of `A`.
    pub m: usize,
    /// Columns of `A`.
    pub n: usize,
    /// Singular values, descending.
    pub s: Vec<f32>,
    /// Left singular vectors, `m × r` row-major.
    pub u: Vec<f32>,
    /// Right singular vectors transposed, `r × n` row-major.
    pub vt: Vec<f32>,
}

impl Svd {
    /// The rank kept.
    pub fn rank(&self) -> usize {
        self.s.len()
    }

    /// `U·diag(s)·Vᵀ`, `m × n` row-major.
    pub fn reconstruct(&self) -> Vec<f32> {
        let r = self.rank();
        let mut out = vec![0f32; self.m * self.n];
        if r == 0 {
            return out;
        }
        let us: Vec<f32> = self
            .u
            .chunks(r)
            .flat_map(|row| row.iter().zip(&self.s).map(|(a, b)| a * b))
            .collect();
        matmul(self.m, self.n, r, &us, &self.vt, &mut out);
        out
    }
}

/// Row-major `C[m×n] = A[m×k]·B[k×n]`.
pub(crate) fn matmul(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    gemm_strided(m, n, k, a, k as isize, 1, b, n as isize, 1, c, 1.0, 0.0);
}

/// `C[m×n] = Aᵀ·B` where `A` is stored `k × m` row-major.
fn matmul_tn(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    gemm_strided(m, n, k, a, 1, m as isize, b, n as isize, 1, c, 1.0, 0.0);
}

/// `len` deterministic pseudo-random values, roughly standard normal (a sum
/// of uniforms from a xorshift stream; the sketch needs no better).
fn sketch_matrix(len: usize, mut state: u64) -> Vec<f32> {
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..len)
        .map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0)
        .collect()
}

/// The best rank-`rank` approximation of the `m × n` row-major matrix `a`
/// (rank capped at `min(m, n)`).
///
/// Panics if `a.len() != m·n`.
pub fn truncated_svd(a: &[f32], m: usize, n: usize, rank: usize) -> Svd {
    assert_eq!(
        a.len(),
        m * n,
        "truncated_svd: {m}×{n} needs {} values",
        m * n
    );
    let r = rank.min(m).min(n);
    let l = (r + OVERSAMPLE).min(m).min(n);
    let empty = || Svd {
        m,
        n,
        s: Vec::new(),
        u: Vec::new(),
        vt: Vec::new(),
    };
    if r == 0 {
        return empty();
    }
    let omega = sketch_matrix(n * l, 0x9e37_79b9_7f4a_7c15 ^ (m * 31 + n) as u64);
    let mut y = vec![0f32; m * l];
    matmul(m, l, n, a, &omega, &mut y);
    let mut q = orthonormal(&y, m, l);
    let mut z = vec![0f32; n * l];
    for _ in 0..POWER_ITERS {
        matmul_tn(n, l, m, a, &narrow(&q), &mut z);
        let qz = orthonormal(&z, n, l);
        matmul(m, l, n, a, &narrow(&qz), &mut y);
        q = orthonormal(&y, m, l);
    }
    // B = Qᵀ·A (l × n) and its Gram matrix B·Bᵀ, in f64.
    let a64: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
    let (ni, li) = (n as isize, l as isize);
    let mut b = vec![0f64; l * n];
    gemm_strided(l, n, m, &q, 1, li, &a64, ni, 1, &mut b, 1.0, 0.0);
    let mut gram = vec![0f64; l * l];
    gemm_strided(l, l, n, &b, ni, 1, &b, 1, ni, &mut gram, 1.0, 0.0);
    // B·Bᵀ = W·Λ·Wᵀ, so A ≈ Q·B = (Q·W)·Σ·(Σ⁻¹·Wᵀ·B).
    let (values, vectors) = symmetric_eigen(&gram, l);
    let wt = &vectors[..r * l];
    let mut u = vec![0f64; m * r];
    gemm_strided(m, r, l, &q, li, 1, wt, 1, li, &mut u, 1.0, 0.0);
    let mut vt = vec![0f64; r * n];
    gemm_strided(r, n, l, wt, li, 1, &b, ni, 1, &mut vt, 1.0, 0.0);
    let s: Vec<f64> = values[..r].iter().map(|v| v.max(0.0).sqrt()).collect();
    for (row, &sigma) in vt.chunks_mut(n).zip(&s) {
        let inv = if sigma > 0.0 { 1.0 / sigma } else { 0.0 };
        row.iter_mut().for_each(|v| *v *= inv);
    }
    Svd {
        m,
        n,
        s: narrow(&s),
        u: narrow(&u),
        vt: narrow(&vt),
    }
}

/// The `[rows, l]` f32 sketch `y` with orthonormal columns, in f64.
fn orthonormal(y: &[f32], rows: usize, l: usize) -> Vec<f64> {
    let mut out: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
    orthonormalize(&mut out, rows, l);
    out
}

fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frobenius(a: &[f32]) -> f64 {
        a.iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    }

    fn diff(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// A full-rank truncation reproduces the matrix; its vectors are
    /// orthonormal; truncating to rank r leaves exactly the tail of the
    /// spectrum (Eckart–Young), here against the full decomposition.
    #[test]
    fn truncation_error_is_the_spectral_tail() {
        let (m, n) = (48, 30);
        let a = sketch_matrix(m * n, 11);
        let full = truncated_svd(&a, m, n, n);
        assert_eq!(full.rank(), n);
        let rel = diff(&full.reconstruct(), &a) / frobenius(&a);
        assert!(rel < 1e-5, "full rank: relative error {rel}");
        assert!(full.s.windows(2).all(|w| w[0] >= w[1]));
        for p in 0..n {
            for q in 0..n {
                let d: f64 = (0..m)
                    .map(|i| f64::from(full.u[i * n + p]) * f64::from(full.u[i * n + q]))
                    .sum();
                assert!(
                    (d - f64::from(u8::from(p == q))).abs() < 1e-5,
                    "UᵀU[{p}][{q}] = {d}"
                );
            }
        }
        for r in [1, 5, 12] {
            let t = truncated_svd(&a, m, n, r);
            let err = diff(&t.reconstruct(), &a);
            let tail: f64 = full.s[r..]
                .iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum::<f64>()
                .sqrt();
            assert!(
                (err - tail).abs() < 0.02 * tail,
                "rank {r}: {err} vs optimal {tail}"
            );
        }
    }

    #[test]
    fn an_exactly_low_rank_matrix_is_recovered() {
        let (m, n, r) = (40, 25, 3);
        let left = sketch_matrix(m * r, 1);
        let right = sketch_matrix(r * n, 2);
        let mut a = vec![0f32; m * n];
        matmul(m, n, r, &left, &right, &mut a);
        let t = truncated_svd(&a, m, n, r);
        let rel = diff(&t.reconstruct(), &a) / frobenius(&a);
        assert!(rel < 1e-5, "{rel}");
        assert!(truncated_svd(&a, m, n, 0)
            .reconstruct()
            .iter()
            .all(|&x| x == 0.0));
    }
}
