//! The dense f64 linear algebra the compression passes share: Cholesky
//! factorisation, solves and inverses of symmetric positive definite
//! matrices, a symmetric eigensolver and column orthonormalisation.
//!
//! Matrices are row-major `Vec<f64>`s. The sizes here are the calibration
//! statistics (`k × k`, `k` up to a few thousand) and sketches of rank a few
//! hundred, so the `O(n³)` parts are written to run as GEMMs
//! ([`gemm_strided`]) where they can, and as contiguous row operations where
//! they cannot. Why not `faer` or `nalgebra`: the five routines below are all
//! the passes need, and either crate would add more to the build than the
//! project's whole pass crate.

use egret_runtime::kernels::gemm::gemm_strided;

/// `Σ a_i b_i`, in four lanes so it vectorises.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Factor the symmetric positive definite `a` (`[k, k]` row-major, lower
/// triangle read) into `L·Lᵀ` in place, row by row (`L` in the lower
/// triangle). False if `a` is not positive definite.
pub fn cholesky_in_place(l: &mut [f64], k: usize) -> bool {
    for i in 0..k {
        let (before, rest) = l.split_at_mut(i * k);
        let li = &mut rest[..k];
        for j in 0..=i {
            let s = if j < i {
                li[j] - dot(&li[..j], &before[j * k..j * k + j])
            } else {
                li[i] - dot(&li[..i], &li[..i])
            };
            if j == i {
                if s <= 0.0 || !s.is_finite() {
                    return false;
                }
                li[i] = s.sqrt();
            } else {
                li[j] = s / before[j * k + j];
            }
        }
    }
    true
}

/// Solve `L·Lᵀ·x = b` in place (`l` from [`cholesky_in_place`]).
pub fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let s = dot(&l[i * n..i * n + i], &b[..i]);
        b[i] = (b[i] - s) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for j in i + 1..n {
            s -= l[j * n + i] * b[j];
        }
        b[i] = s / l[i * n + i];
    }
}

/// `L⁻¹` (lower triangular, `[k, k]`) of the lower factor `l` from
/// [`cholesky_in_place`], row by row: `X_ii = 1 / L_ii` and row `i` is
/// `−(Σ_{m<i} L_im·X_m) / L_ii`.
pub fn lower_inverse(l: &[f64], k: usize) -> Vec<f64> {
    let mut x = vec![0f64; k * k];
    let mut acc = vec![0f64; k];
    for i in 0..k {
        acc[..i].fill(0.0);
        for m in 0..i {
            let c = l[i * k + m];
            if c != 0.0 {
                for (a, &v) in acc[..=m].iter_mut().zip(&x[m * k..m * k + m + 1]) {
                    *a += c * v;
                }
            }
        }
        let d = l[i * k + i];
        for (o, &a) in x[i * k..i * k + i].iter_mut().zip(&acc[..i]) {
            *o = -a / d;
        }
        x[i * k + i] = 1.0 / d;
    }
    x
}

/// The inverse of the symmetric positive semi-definite `g` (`[r, r]`).
///
/// When `g` is singular to working precision it is regularised: the
/// Cholesky factorisation is retried with `10⁻¹²`, `10⁻⁹`, … `10⁻³` times
/// its largest diagonal added, and if even that fails (a non-finite entry)
/// the result is that diagonal's inverse times the identity, so callers
/// (preconditioners) always get a usable positive definite matrix.
pub fn spd_inverse(g: &[f64], r: usize) -> Vec<f64> {
    let top = (0..r)
        .map(|i| g[i * r + i])
        .filter(|v| v.is_finite())
        .fold(f64::MIN_POSITIVE, f64::max);
    for jitter in [0.0, 1e-12, 1e-9, 1e-6, 1e-3] {
        let mut l = g.to_vec();
        (0..r).for_each(|i| l[i * r + i] += jitter * top);
        if cholesky_in_place(&mut l, r) {
            // g⁻¹ = L⁻ᵀ·L⁻¹ = Xᵀ·X.
            let x = lower_inverse(&l, r);
            let mut inv = vec![0f64; r * r];
            let ri = r as isize;
            gemm_strided(r, r, r, &x, 1, ri, &x, ri, 1, &mut inv, 1.0, 0.0);
            return inv;
        }
    }
    let mut inv = vec![0f64; r * r];
    (0..r).for_each(|i| inv[i * r + i] = 1.0 / top);
    inv
}

/// Eigen-decomposition of the symmetric `a` (`[n, n]`): the eigenvalues in
/// descending order, and the matching unit eigenvectors as the *rows* of an
/// `[n, n]` matrix.
///
/// Householder reduction to tridiagonal form, then the implicit QL
/// algorithm with Wilkinson-style shifts (the EISPACK `tred2` / `tql2` pair,
/// as in JAMA): `O(n³)` with small constants. The cyclic Jacobi method this
/// replaced needed about ten times the work at `n` in the hundreds, the
/// randomized SVD's sketch sizes. Rotations are applied to rows of the
/// transposed eigenvector matrix, so the inner loops are contiguous.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut v = a.to_vec();
    let (mut d, mut e) = (vec![0f64; n], vec![0f64; n]);
    tridiagonalize(&mut v, &mut d, &mut e, n);
    // Rows of `vt` are the columns of `v`: the eigenvectors, once QL is done.
    let mut vt = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            vt[j * n + i] = v[i * n + j];
        }
    }
    tridiagonal_ql(&mut d, &mut e, &mut vt, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[j].total_cmp(&d[i]));
    let values = order.iter().map(|&i| d[i]).collect();
    let vectors = order
        .iter()
        .flat_map(|&i| vt[i * n..(i + 1) * n].iter().copied())
        .collect();
    (values, vectors)
}

/// `tred2`: reduce the symmetric `v` to tridiagonal form `QᵀAQ` with the
/// diagonal in `d` and the subdiagonal in `e[1..]`, leaving `Q` in `v`.
fn tridiagonalize(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    d.copy_from_slice(&v[(n - 1) * n..n * n]);
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[(i - 1) * n + j];
                v[i * n + j] = 0.0;
                v[j * n + i] = 0.0;
            }
        } else {
            for x in d[..i].iter_mut() {
                *x /= scale;
                h += *x * *x;
            }
            let f = d[i - 1];
            let g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            for j in 0..i {
                let f = d[j];
                v[j * n + i] = f;
                let mut g = e[j] + v[j * n + j] * f;
                for k in j + 1..i {
                    g += v[k * n + j] * d[k];
                    e[k] += v[k * n + j] * f;
                }
                e[j] = g;
            }
            let mut f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let (f, g) = (d[j], e[j]);
                for k in j..i {
                    v[k * n + j] -= f * e[k] + g * d[k];
                }
                d[j] = v[(i - 1) * n + j];
                v[i * n + j] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n - 1 {
        v[(n - 1) * n + i] = v[i * n + i];
        v[i * n + i] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[k * n + i + 1] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[k * n + i + 1] * v[k * n + j]).sum();
                for k in 0..=i {
                    v[k * n + j] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[k * n + i + 1] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[(n - 1) * n + j];
        v[(n - 1) * n + j] = 0.0;
    }
    v[(n - 1) * n + n - 1] = 1.0;
    e[0] = 0.0;
}

/// `tql2`: diagonalise the tridiagonal (`d`, `e[1..]`) by implicit QL,
/// rotating the rows of `vt` along; `d` ends as the eigenvalues.
fn tridiagonal_ql(d: &mut [f64], e: &mut [f64], vt: &mut [f64], n: usize) {
    e.copy_within(1.., 0);
    e[n - 1] = 0.0;
    let (mut f, mut tst1) = (0f64, 0f64);
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        // Each eigenvalue takes a few iterations; the cap only guards
        // against non-finite input.
        let mut iterations = 0;
        while m > l && iterations < 64 {
            iterations += 1;
            let g = d[l];
            let mut p = (d[l + 1] - g) / (2.0 * e[l]);
            let mut r = p.hypot(1.0);
            if p < 0.0 {
                r = -r;
            }
            d[l] = e[l] / (p + r);
            d[l + 1] = e[l] * (p + r);
            let dl1 = d[l + 1];
            let h = g - d[l];
            for x in d[l + 2..].iter_mut() {
                *x -= h;
            }
            f += h;
            p = d[m];
            let (mut c, mut c2, mut c3) = (1f64, 1f64, 1f64);
            let el1 = e[l + 1];
            let (mut s, mut s2) = (0f64, 0f64);
            for i in (l..m).rev() {
                c3 = c2;
                c2 = c;
                s2 = s;
                let g = c * e[i];
                let h = c * p;
                r = p.hypot(e[i]);
                e[i + 1] = s * r;
                s = e[i] / r;
                c = p / r;
                p = c * d[i] - s * g;
                d[i + 1] = h + s * (c * g + s * d[i]);
                let (lo, hi) = vt.split_at_mut((i + 1) * n);
                let (row_i, row_next) = (&mut lo[i * n..], &mut hi[..n]);
                for (a, b) in row_i.iter_mut().zip(row_next.iter_mut()) {
                    let h = *b;
                    *b = s * *a + c * h;
                    *a = c * *a - s * h;
                }
            }
            p = -s * s2 * c3 * el1 * e[l] / dl1;
            e[l] = s * p;
            d[l] = c * p;
            if e[l].abs() <= eps * tst1 || !e[l].is_finite() {
                break;
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

/// Orthonormalise the columns of the `[m, l]` row-major `y` in place, so
/// they span the same space.
///
/// Cholesky QR (`R = chol(YᵀY)`, `Y ← Y·R⁻¹`): all GEMMs, and orthogonal to
/// about `κ(Y)²·ε`. A second pass (CholQR2) runs when the first one's
/// condition estimate (the ratio of `R`'s largest to smallest diagonal) puts
/// that above `10⁻¹²`; sketches orthonormalised after every product, as in
/// the randomized SVD, rarely need it. When a pass finds `YᵀY` numerically
/// singular (condition above `10⁶`: a range of fewer than `l` dimensions, or
/// a column of zeros) it falls back to modified Gram–Schmidt, twice, which
/// zeroes the columns that fall to round-off level after projection.
pub fn orthonormalize(y: &mut [f64], m: usize, l: usize) {
    if m == 0 || l == 0 {
        return;
    }
    for _pass in 0..2 {
        match cholesky_qr_step(y, m, l) {
            None => return gram_schmidt(y, m, l),
            Some(condition) if condition * condition * f64::EPSILON < 1e-12 => return,
            Some(_) => {}
        }
    }
}

/// One Cholesky QR step, returning the condition estimate of `Y` (largest
/// over smallest diagonal of `R`); `None` (and `y` untouched) when `YᵀY` is
/// singular to within `10⁻¹²` of its largest diagonal (condition above
/// `10⁶`).
fn cholesky_qr_step(y: &mut [f64], m: usize, l: usize) -> Option<f64> {
    let li = l as isize;
    let mut gram = vec![0f64; l * l];
    gemm_strided(l, l, m, y, 1, li, y, li, 1, &mut gram, 1.0, 0.0);
    let top = (0..l).map(|i| gram[i * l + i]).fold(0f64, f64::max);
    if top <= 0.0 || !cholesky_in_place(&mut gram, l) {
        return None;
    }
    let pivots = (0..l).map(|i| gram[i * l + i]);
    let (small, large) = pivots.fold((f64::INFINITY, 0f64), |(s, b), p| (s.min(p), b.max(p)));
    if small * small < 1e-12 * top {
        return None;
    }
    // Y·R⁻¹ = Y·L⁻ᵀ = Y·Xᵀ with X = L⁻¹.
    let x = lower_inverse(&gram, l);
    let before = y.to_vec();
    gemm_strided(m, l, l, &before, li, 1, &x, 1, li, y, 1.0, 0.0);
    Some(large / small)
}

/// Modified Gram–Schmidt, twice, on columns copied out contiguous.
fn gram_schmidt(y: &mut [f64], m: usize, l: usize) {
    let mut cols: Vec<Vec<f64>> = (0..l)
        .map(|j| (0..m).map(|i| y[i * l + j]).collect())
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
            y[i * l + j] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1), in f64.
    fn noise(len: usize, seed: u32) -> Vec<f64> {
        crate::compress::test_values(len, seed)
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn gram(y: &[f64], m: usize, l: usize) -> Vec<f64> {
        let mut g = vec![0f64; l * l];
        for i in 0..l {
            for j in 0..l {
                g[i * l + j] = (0..m).map(|r| y[r * l + i] * y[r * l + j]).sum();
            }
        }
        g
    }

    fn assert_identity(g: &[f64], l: usize, tol: f64) {
        for i in 0..l {
            for j in 0..l {
                let want = f64::from(u8::from(i == j));
                assert!(
                    (g[i * l + j] - want).abs() < tol,
                    "[{i}][{j}] = {}",
                    g[i * l + j]
                );
            }
        }
    }

    /// `A·v = λ·v` for every pair, the vectors are orthonormal, and the
    /// values descend and sum to the trace; on a random matrix, a matrix
    /// with repeated eigenvalues and the trivial sizes.
    #[test]
    fn eigen_pairs_satisfy_the_definition() {
        let n = 40;
        let b = noise(n * n, 7);
        let random: Vec<f64> = (0..n * n).map(|i| b[i] + b[(i % n) * n + i / n]).collect();
        let mut repeated = vec![0f64; 9];
        (0..3).for_each(|i| repeated[i * 3 + i] = 2.0);
        repeated[8] = 5.0;
        let small = vec![4.0, 1.0, 2.0, 1.0, 3.0, 0.5, 2.0, 0.5, 1.0];
        for (a, n) in [(random, n), (repeated, 3), (small, 3), (vec![-3.0], 1)] {
            let (values, v) = symmetric_eigen(&a, n);
            for j in 0..n {
                for i in 0..n {
                    let av: f64 = (0..n).map(|k| a[i * n + k] * v[j * n + k]).sum();
                    assert!((av - values[j] * v[j * n + i]).abs() < 1e-10, "{av}");
                }
            }
            let vt: Vec<f64> = (0..n * n).map(|i| v[(i % n) * n + i / n]).collect();
            assert_identity(&gram(&vt, n, n), n, 1e-12);
            assert!(values.windows(2).all(|w| w[0] >= w[1]));
            let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
            assert!((values.iter().sum::<f64>() - trace).abs() < 1e-10);
        }
        assert_eq!(symmetric_eigen(&[], 0).0.len(), 0);
    }

    /// Orthonormal columns spanning the input's space, by Cholesky QR on a
    /// full-rank input and by the Gram–Schmidt fallback on a rank-deficient
    /// one (whose surplus column becomes zero).
    #[test]
    fn orthonormalize_keeps_the_span() {
        let (m, l) = (50, 6);
        let y0 = noise(m * l, 3);
        let mut y = y0.clone();
        orthonormalize(&mut y, m, l);
        assert_identity(&gram(&y, m, l), l, 1e-12);
        // Each input column is its own projection onto the new basis.
        for j in 0..l {
            let col: Vec<f64> = (0..m).map(|i| y0[i * l + j]).collect();
            let mut rest = col.clone();
            for q in 0..l {
                let qc: Vec<f64> = (0..m).map(|i| y[i * l + q]).collect();
                let p = dot(&qc, &col);
                rest.iter_mut().zip(&qc).for_each(|(r, c)| *r -= p * c);
            }
            assert!(dot(&rest, &rest).sqrt() < 1e-10, "column {j}");
        }
        // Column 2 = column 0 + column 1: rank 5 of 6.
        let mut d = y0.clone();
        (0..m).for_each(|i| d[i * l + 2] = d[i * l] + d[i * l + 1]);
        orthonormalize(&mut d, m, l);
        let g = gram(&d, m, l);
        assert!((0..m).all(|i| d[i * l + 2] == 0.0));
        for i in (0..l).filter(|&i| i != 2) {
            assert!((g[i * l + i] - 1.0).abs() < 1e-12);
        }
    }

    /// `spd_inverse` inverts a positive definite matrix, and still returns
    /// a finite positive definite matrix for a singular one.
    #[test]
    fn spd_inverse_inverts_and_regularises() {
        let g = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inv = spd_inverse(&g, 3);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|m| g[i * 3 + m] * inv[m * 3 + j]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        let singular = [1.0, 1.0, 1.0, 1.0];
        let inv = spd_inverse(&singular, 2);
        assert!(inv.iter().all(|v| v.is_finite()) && inv[0] > 0.0 && inv[3] > 0.0);
    }

    /// Solving through the factor recovers `x` from `A·x`, and `L·L⁻¹ = I`.
    #[test]
    fn cholesky_solves_and_inverts() {
        let a = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let mut l = a.to_vec();
        assert!(cholesky_in_place(&mut l, 3));
        let x = [1.0, -2.0, 0.5];
        let mut b: Vec<f64> = (0..3)
            .map(|i| (0..3).map(|j| a[i * 3 + j] * x[j]).sum())
            .collect();
        cholesky_solve(&l, 3, &mut b);
        b.iter()
            .zip(x)
            .for_each(|(g, w)| assert!((g - w).abs() < 1e-12));
        let inv = lower_inverse(&l, 3);
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3)
                    .filter(|&m| m <= i)
                    .map(|m| l[i * 3 + m] * inv[m * 3 + j])
                    .sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        assert!(!cholesky_in_place(&mut [1.0, 2.0, 2.0, 1.0], 2));
    }
}
