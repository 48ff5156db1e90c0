//! f32/f64 matrix multiply through the `gemm` crate.
//!
//! Why `gemm`: it reaches ~90 GFLOP/s per core here with runtime ISA dispatch
//! (AVX2/FMA, AVX-512, NEON), is pure Rust, and takes arbitrary strides, so
//! transposed operands need no copy.

use gemm::{gemm, Parallelism};

/// Threads the interpreter's GEMM may use (rayon pool size).
fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m.saturating_mul(n).saturating_mul(k) > 64 * 64 * 64 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// The element types the GEMM takes: `f32` (the kernels) and `f64` (the
/// compression passes' linear algebra).
pub trait Scalar: Copy + 'static + std::ops::MulAssign + sealed::Sealed {}
impl Scalar for f32 {}
impl Scalar for f64 {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `C[m×n] = alpha·A[m×k]·B[k×n] + beta·C` with arbitrary row/column strides
/// (in elements) for `A` and `B`; `C` is contiguous row-major. `beta == 0`
/// ignores C's old contents.
///
/// Panics if a slice does not cover every index the strides reach.
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided<T: Scalar + PartialEq + Default>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_rs: isize,
    a_cs: isize,
    b: &[T],
    b_rs: isize,
    b_cs: isize,
    c: &mut [T],
    alpha: T,
    beta: T,
) {
    if m == 0 || n == 0 {
        return;
    }
    let reach = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows - 1) as isize * rs.max(0) + (cols - 1) as isize * cs.max(0)
    };
    assert!(c.len() >= m * n, "gemm: C holds {} of {m}×{n}", c.len());
    let read_c = beta != T::default();
    if k == 0 {
        for x in c[..m * n].iter_mut() {
            if read_c {
                *x *= beta;
            } else {
                *x = T::default();
            }
        }
        return;
    }
    assert!(
        a_rs >= 0 && a_cs >= 0 && b_rs >= 0 && b_cs >= 0,
        "gemm: negative strides are not supported"
    );
    assert!(
        (reach(m, k, a_rs, a_cs) as usize) < a.len()
            && (reach(k, n, b_rs, b_cs) as usize) < b.len(),
        "gemm: A or B is shorter than its strides reach"
    );
    // SAFETY: every strided index of A (m×k), B (k×n) and C (m×n,
    // contiguous) was checked to lie inside its slice above.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            read_c,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

/// Row-major `C = A·B` for contiguous f32 matrices.
pub fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    gemm_strided(m, n, k, a, k as isize, 1, b, n as isize, 1, c, 1.0, 0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_matmul_matches_naive() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32).sin()).collect();
        let mut c = vec![0f32; m * n];
        sgemm(m, n, k, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-4, "{i},{j}");
            }
        }
    }
}
