//! Truncated SVD by randomized range finding (Halko, Martinsson and Tropp,
//! 2011).
//!
//! 1. Sketch the range of `A` (`m × n`): `Y = A·Ω` with `Ω` an `n × l`
//!    pseudo-random matrix, `l = r + OVERSAMPLE`.
//! 2. Sharpen it with [`POWER_ITERS`] power iterations, `Y ← A·(Aᵀ·Y)`,
//!    orthonormalising in between, so slowly decaying spectra (weight
//!    matrices) are still captured.
//! 3. With `Q` the orthonormal basis of `Y`, `B = Qᵀ·A` is only `l × n`; its
//!    SVD comes from the eigen-decomposition of `B·Bᵀ` (`l × l`, cyclic
//!    Jacobi in f64), and `A ≈ (Q·W)·Σ·Vᵀ`.
//!
//! The large products go through the `gemm` crate in f32; everything of size
//! `l²` or `m·l` that decides accuracy (orthonormalisation, the eigensolver)
//! runs in f64.

use egret_runtime::kernels::gemm::sgemm_strided;

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
    sgemm_strided(m, n, k, a, k as isize, 1, b, n as isize, 1, c, 1.0, 0.0);
}

/// `C[m×n] = Aᵀ·B` where `A` is stored `k × m` row-major.
fn matmul_tn(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    sgemm_strided(m, n, k, a, 1, m as isize, b, n as isize, 1, c, 1.0, 0.0);
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

/// Orthonormalise the columns of the `m × l` row-major matrix `y` in place
/// (modified Gram–Schmidt, twice, in f64). A column that falls to round-off
/// level after projection is zeroed: the range has fewer than `l` dimensions.
fn orthonormalize(y: &mut [f32], m: usize, l: usize) {
    let mut cols: Vec<Vec<f64>> = (0..l)
        .map(|j| (0..m).map(|i| f64::from(y[i * l + j])).collect())
        .collect();
    let norms0: Vec<f64> = cols.iter().map(|c| dot(c, c).sqrt()).collect();
    for j in 0..l {
        for _pass in 0..2 {
            for p in 0..j {
                let (done, rest) = cols.split_at_mut(j);
                let proj = dot(&done[p], &rest[0]);
                for (x, q) in rest[0].iter_mut().zip(&done[p]) {
                    *x -= proj * q;
                }
            }
        }
        let norm = dot(&cols[j], &cols[j]).sqrt();
        let keep = norm > 1e-10 * norms0[j].max(f64::MIN_POSITIVE);
        for x in cols[j].iter_mut() {
            *x = if keep { *x / norm } else { 0.0 };
        }
    }
    for (j, c) in cols.iter().enumerate() {
        for (i, &v) in c.iter().enumerate() {
            y[i * l + j] = v as f32;
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Eigen-decomposition of the symmetric `n × n` matrix `a` by cyclic Jacobi
/// rotations: the eigenvalues, and the eigenvectors as the columns of an
/// `n × n` row-major matrix.
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= 1e-26 * total || total == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // Numerical Recipes' rotation: t = tan φ zeroes a[p][q].
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (kp, kq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * kp - s * kq;
                    a[k * n + q] = s * kp + c * kq;
                }
                for k in 0..n {
                    let (pk, qk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * pk - s * qk;
                    a[q * n + k] = s * pk + c * qk;
                }
                for k in 0..n {
                    let (kp, kq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * kp - s * kq;
                    v[k * n + q] = s * kp + c * kq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
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
    orthonormalize(&mut y, m, l);
    let mut z = vec![0f32; n * l];
    for _ in 0..POWER_ITERS {
        matmul_tn(n, l, m, a, &y, &mut z);
        orthonormalize(&mut z, n, l);
        matmul(m, l, n, a, &z, &mut y);
        orthonormalize(&mut y, m, l);
    }
    // B = Qᵀ·A (l × n), and its Gram matrix B·Bᵀ in f64.
    let mut b = vec![0f32; l * n];
    matmul_tn(l, n, m, &y, a, &mut b);
    let rows: Vec<Vec<f64>> = b
        .chunks(n)
        .map(|row| row.iter().map(|&x| f64::from(x)).collect())
        .collect();
    let mut gram = vec![0f64; l * l];
    for i in 0..l {
        for j in i..l {
            let g = dot(&rows[i], &rows[j]);
            gram[i * l + j] = g;
            gram[j * l + i] = g;
        }
    }
    let (values, vectors) = symmetric_eigen(gram, l);
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
    let mut out = Svd {
        s: Vec::with_capacity(r),
        u: vec![0f32; m * r],
        vt: vec![0f32; r * n],
        ..empty()
    };
    for (t, &j) in order.iter().take(r).enumerate() {
        let sigma = values[j].max(0.0).sqrt();
        out.s.push(sigma as f32);
        let w: Vec<f64> = (0..l).map(|i| vectors[i * l + j]).collect();
        for row in 0..m {
            let q = &y[row * l..row * l + l];
            out.u[row * r + t] = q
                .iter()
                .zip(&w)
                .map(|(&a, b)| f64::from(a) * b)
                .sum::<f64>() as f32;
        }
        if sigma > 0.0 {
            for c in 0..n {
                let v: f64 = rows.iter().zip(&w).map(|(row, wi)| row[c] * wi).sum();
                out.vt[t * n + c] = (v / sigma) as f32;
            }
        }
    }
    out
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

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let a = vec![4.0, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, 1.0];
        let (values, v) = symmetric_eigen(a.clone(), 3);
        // A·v_j = λ_j·v_j for every column j.
        for j in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|k| a[i * 3 + k] * v[k * 3 + j]).sum();
                assert!((av - values[j] * v[i * 3 + j]).abs() < 1e-12, "{av}");
            }
        }
        let trace: f64 = values.iter().sum();
        assert!((trace - 8.0).abs() < 1e-12);
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
