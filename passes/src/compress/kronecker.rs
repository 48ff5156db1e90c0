//! Van Loan's nearest Kronecker product, and the product it enables.
//!
//! A weight `W` (`n × k`, `n = n1·n2`, `k = k1·k2`) is approximated by
//! `Σᵢ Aᵢ ⊗ Bᵢ`, `Aᵢ` `n1 × k1`, `Bᵢ` `n2 × k2`. Rearranging `W` into
//! `R(W)` (`n1·k1 × n2·k2`, row `(i1, j1)`, column `(i2, j2)` holding
//! `W[i1·n2 + i2, j1·k2 + j2]`) turns each Kronecker term into a rank-one
//! term, `vec(Aᵢ)·vec(Bᵢ)ᵀ`, with the same Frobenius error (Van Loan and
//! Pitsianis, 1993). The best `r` terms are therefore the rank-`r` truncated
//! SVD of `R(W)`.
//!
//! The factored product never forms `W`: for an input row `x` (`k`), with
//! `X` its `k1 × k2` reshape, `(A ⊗ B)·x = vec(A·X·Bᵀ)`, which costs
//! `k1·k2·n2 + n1·k1·n2` multiply-adds per term instead of `n·k`.

use super::svd::{matmul, truncated_svd};
use egret_runtime::kernels::gemm::gemm_strided;

/// The factor shapes of one Kronecker approximation of an `n × k` matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Factors {
    /// Rows of each `A`.
    pub n1: usize,
    /// Columns of each `A`.
    pub k1: usize,
    /// Rows of each `B`.
    pub n2: usize,
    /// Columns of each `B`.
    pub k2: usize,
}

impl Factors {
    /// The shape of the matrix the factors stand for, `[n1·n2, k1·k2]`.
    pub fn dense_shape(self) -> [usize; 2] {
        [self.n1 * self.n2, self.k1 * self.k2]
    }

    /// Stored values per term.
    pub fn params_per_term(self) -> usize {
        self.n1 * self.k1 + self.n2 * self.k2
    }
}

/// `W ≈ Σᵢ Aᵢ ⊗ Bᵢ`.
#[derive(Clone, Debug)]
pub struct Kronecker {
    /// The factor shapes.
    pub shape: Factors,
    /// Each `Aᵢ`, `n1 × k1` row-major, one after another.
    pub a: Vec<f32>,
    /// Each `Bᵢ`, `n2 × k2` row-major, one after another.
    pub b: Vec<f32>,
}

/// `R(W)` as above, `n1·k1 × n2·k2` row-major.
pub fn rearrange(w: &[f32], f: Factors) -> Vec<f32> {
    let mut r = vec![0f32; w.len()];
    for_each_run(f, |ri, wi| {
        r[ri..ri + f.k2].copy_from_slice(&w[wi..wi + f.k2])
    });
    r
}

/// The inverse of [`rearrange`]: `W` (`n × k` row-major) from `R(W)`.
pub fn unrearrange(r: &[f32], f: Factors) -> Vec<f32> {
    let mut w = vec![0f32; r.len()];
    for_each_run(f, |ri, wi| {
        w[wi..wi + f.k2].copy_from_slice(&r[ri..ri + f.k2])
    });
    w
}

/// Calls `visit(r_offset, w_offset)` for each run of `k2` values that is
/// contiguous in both `R(W)` and `W`: row `(i1, j1)`, columns `(i2, ·)` of
/// `R(W)` are row `i1·n2 + i2`, columns `j1·k2 ..` of `W`.
fn for_each_run(f: Factors, mut visit: impl FnMut(usize, usize)) {
    let Factors { n1, k1, n2, k2 } = f;
    let k = k1 * k2;
    for i1 in 0..n1 {
        for j1 in 0..k1 {
            let row = (i1 * k1 + j1) * n2 * k2;
            for i2 in 0..n2 {
                visit(row + i2 * k2, (i1 * n2 + i2) * k + j1 * k2);
            }
        }
    }
}

/// The best `terms`-term Kronecker approximation of the `n × k` row-major
/// `w` with factor shapes `f` (`n = n1·n2`, `k = k1·k2`).
///
/// Panics if the shapes disagree.
pub fn nearest_kronecker(w: &[f32], f: Factors, terms: usize) -> Kronecker {
    let [n, k] = f.dense_shape();
    assert_eq!(
        w.len(),
        n * k,
        "nearest_kronecker: {n}×{k} needs {} values",
        n * k
    );
    let (rows, cols) = (f.n1 * f.k1, f.n2 * f.k2);
    let svd = truncated_svd(&rearrange(w, f), rows, cols, terms);
    let r = svd.rank();
    let mut a = Vec::with_capacity(r * rows);
    let mut b = Vec::with_capacity(r * cols);
    for t in 0..r {
        // Split σ evenly, so neither factor carries the whole scale.
        let root = svd.s[t].sqrt();
        a.extend((0..rows).map(|i| svd.u[i * r + t] * root));
        b.extend(svd.vt[t * cols..(t + 1) * cols].iter().map(|&v| v * root));
    }
    Kronecker { shape: f, a, b }
}

impl Kronecker {
    /// Terms kept.
    pub fn terms(&self) -> usize {
        self.a.len() / (self.shape.n1 * self.shape.k1).max(1)
    }

    /// Stored values.
    pub fn params(&self) -> usize {
        self.a.len() + self.b.len()
    }

    /// `Σᵢ Aᵢ ⊗ Bᵢ` as a dense `n × k` row-major matrix (for tests and
    /// error measurement): one GEMM, `R(Ŵ) = 𝐀·𝐁ᵀ` (`𝐀` holding `vec(Aᵢ)`
    /// in column `i`, as [`Kronecker::a`] stores its transpose), then
    /// [`unrearrange`].
    pub fn dense(&self) -> Vec<f32> {
        let f = self.shape;
        let (rows, cols, r) = (f.n1 * f.k1, f.n2 * f.k2, self.terms());
        let mut flat = vec![0f32; rows * cols];
        let (ri, ci) = (rows as isize, cols as isize);
        gemm_strided(
            rows, cols, r, &self.a, 1, ri, &self.b, ci, 1, &mut flat, 1.0, 0.0,
        );
        unrearrange(&flat, f)
    }

    /// `y = x·Wᵀ` for the `rows × k` row-major `x` (a Linear layer's
    /// product), computed on the factors: per term, `T = X·Bᵀ` for all rows
    /// at once (`rows·k1 × n2`), then `Y_r = A·T_r` per row.
    pub fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let Factors { n1, k1, n2, k2 } = self.shape;
        let (n, k) = (n1 * n2, k1 * k2);
        assert_eq!(
            x.len(),
            rows * k,
            "Kronecker::apply: {rows} rows of {k} values"
        );
        let mut y = vec![0f32; rows * n];
        let mut t = vec![0f32; rows * k1 * n2];
        let mut yr = vec![0f32; n];
        for (a, b) in self.a.chunks(n1 * k1).zip(self.b.chunks(n2 * k2)) {
            // T = X·Bᵀ: X is (rows·k1) × k2; Bᵀ is B (n2 × k2) read transposed.
            gemm_strided(
                rows * k1,
                n2,
                k2,
                x,
                k2 as isize,
                1,
                b,
                1,
                k2 as isize,
                &mut t,
                1.0,
                0.0,
            );
            for r in 0..rows {
                matmul(n1, n2, k1, a, &t[r * k1 * n2..(r + 1) * k1 * n2], &mut yr);
                for (o, v) in y[r * n..(r + 1) * n].iter_mut().zip(&yr) {
                    *o += v;
                }
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compress::test_values as values;

    fn rel(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x - y).powi(2))
            .sum();
        let s: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum();
        (d / s).sqrt()
    }

    #[test]
    fn an_exact_kronecker_product_is_recovered_and_applied() {
        let f = Factors {
            n1: 3,
            k1: 4,
            n2: 5,
            k2: 2,
        };
        let a = values(12, 7);
        let b = values(10, 99);
        let exact = Kronecker { shape: f, a, b };
        let w = exact.dense();
        assert_eq!(w.len(), 15 * 8);
        // (A ⊗ B)[(i1·n2 + i2), (j1·k2 + j2)] = A[i1, j1]·B[i2, j2].
        let (i1, j1, i2, j2) = (2, 1, 3, 1);
        assert_eq!(
            w[(i1 * f.n2 + i2) * 8 + j1 * f.k2 + j2],
            exact.a[i1 * f.k1 + j1] * exact.b[i2 * f.k2 + j2]
        );
        let found = nearest_kronecker(&w, f, 1);
        assert!(rel(&found.dense(), &w) < 1e-5);
        let x = values(3 * 8, 5);
        let mut dense = vec![0f32; 3 * 15];
        for r in 0..3 {
            for o in 0..15 {
                dense[r * 15 + o] = (0..8).map(|i| x[r * 8 + i] * w[o * 8 + i]).sum();
            }
        }
        assert!(rel(&found.apply(&x, 3), &dense) < 1e-5);
        assert!(rel(&exact.apply(&x, 3), &dense) < 1e-6);
    }

    /// On a general matrix the error falls with the number of terms and is
    /// the tail of R(W)'s spectrum; all terms reproduce W.
    #[test]
    fn more_terms_fit_better_and_all_terms_are_exact() {
        let f = Factors {
            n1: 6,
            k1: 4,
            n2: 4,
            k2: 8,
        };
        let w = values(24 * 32, 3);
        let mut last = f64::INFINITY;
        for terms in [1, 2, 4, 8] {
            let err = rel(&nearest_kronecker(&w, f, terms).dense(), &w);
            assert!(err < last, "{terms} terms: {err} after {last}");
            last = err;
        }
        // R(W) is 24 × 32: 24 terms span it.
        let all = nearest_kronecker(&w, f, 24);
        assert_eq!(all.terms(), 24);
        assert!(rel(&all.dense(), &w) < 1e-4);
        assert_eq!(all.params(), 24 * f.params_per_term());
    }
}
