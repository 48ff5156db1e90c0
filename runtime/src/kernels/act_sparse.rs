//! `y = (x ⊙ [|x| > t]) · w` for f32 `x [m, k]` and `w [k, n]` (row `j` of `w`
//! is what input `j` multiplies): the kernel of `egret::MatMulActSparse`
//! (TEAL-style activation sparsity).
//!
//! * Decode (fewer than [`DECODE_MAX_ROWS`] rows): the kept inputs `j` are
//!   gathered, then `y = Σ x_j · w[j, :]` as axpys (AVX2 + FMA when available),
//!   the output columns split over threads, each doing every kept `j` for its
//!   columns (no reduction). Only the kept rows of `w` are read, so the time
//!   falls with the sparsity.
//! * Prefill: the small entries of a copy of `x` are zeroed, then the dense
//!   f32 GEMM of the plain `MatMul` ([`crate::kernels::gemm::sgemm`]).

use crate::bail;
use crate::error::Result;
use crate::kernels::gemm::sgemm;
use rayon::prelude::*;

/// Rows of `x` below which the gather-and-axpy decode path is used.
pub const DECODE_MAX_ROWS: usize = 4;
/// Fewest output columns per decode task.
const MIN_COLS: usize = 128;

/// `out [m, n] = (x ⊙ [|x| > threshold]) · w`, row-major. `simd` allows the
/// AVX2 axpy where the CPU has it (tests pass false for the portable one).
#[allow(clippy::too_many_arguments)]
pub fn matmul_act_sparse(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    threshold: f32,
    simd: bool,
    out: &mut [f32],
) -> Result<()> {
    if Some(x.len()) != m.checked_mul(k)
        || Some(w.len()) != k.checked_mul(n)
        || Some(out.len()) != m.checked_mul(n)
    {
        bail!(
            "x has {} values for [{m}, {k}], w {} for [{k}, {n}], out {} for [{m}, {n}]",
            x.len(),
            w.len(),
            out.len()
        );
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    if m >= DECODE_MAX_ROWS {
        let xz: Vec<f32> = x
            .iter()
            .map(|&v| if v.abs() > threshold { v } else { 0.0 })
            .collect();
        sgemm(m, n, k, &xz, w, out);
        return Ok(());
    }
    let axpy = pick_axpy(simd);
    let chunk = n
        .div_ceil(rayon::current_num_threads().max(1))
        .max(MIN_COLS)
        .next_multiple_of(8);
    for (xr, orow) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        let kept: Vec<(usize, f32)> = xr
            .iter()
            .enumerate()
            .filter(|(_, v)| v.abs() > threshold)
            .map(|(j, &v)| (j, v))
            .collect();
        orow.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
            o.fill(0.0);
            let c0 = c * chunk;
            for &(j, a) in &kept {
                let row = &w[j * n + c0..j * n + c0 + o.len()];
                axpy(a, row, o);
            }
        });
    }
    Ok(())
}

/// The axpy `y += a · x` to use.
fn pick_axpy(simd: bool) -> fn(f32, &[f32], &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        return |a, x, y| {
            // SAFETY: AVX2 and FMA were detected above.
            unsafe { avx2_axpy(a, x, y) }
        };
    }
    let _ = simd;
    axpy_portable
}

/// `y += a · x` over the common length.
fn axpy_portable(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `y += a · x` over the common length, 8 lanes at a time (AVX2 + FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2_axpy(a: f32, x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` ≤ both lengths; unaligned loads and store.
        unsafe {
            let xv = _mm256_loadu_ps(x.as_ptr().add(i));
            let yv = _mm256_loadu_ps(y.as_ptr().add(i));
            _mm256_storeu_ps(y.as_mut_ptr().add(i), _mm256_fmadd_ps(av, xv, yv));
        }
        i += 8;
    }
    axpy_portable(a, &x[i..n], &mut y[i..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) (xorshift).
    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Against the dense f64 `MatMul(Where(|x| > t, x, 0), w)`; tolerance
    /// `1e-5 · Σ_j |x_j w_jc|` per output.
    #[test]
    fn matches_masked_dense_product() {
        let (k, n) = (77, 203);
        let w = rand(k * n, 5);
        for m in [1, 2, 9, 130] {
            let x = rand(m * k, m as u64);
            let mut mags: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            mags.sort_by(f32::total_cmp);
            let median = mags[mags.len() / 2];
            for t in [0.0, median, f32::INFINITY] {
                for simd in [false, true] {
                    let mut out = vec![f32::NAN; m * n];
                    matmul_act_sparse(&x, m, k, &w, n, t, simd, &mut out).unwrap();
                    for i in 0..m {
                        for c in 0..n {
                            let (mut want, mut mag) = (0f64, 0f64);
                            for j in 0..k {
                                let xv = x[i * k + j];
                                let xv = if xv.abs() > t { xv } else { 0.0 };
                                let p = f64::from(xv) * f64::from(w[j * n + c]);
                                want += p;
                                mag += p.abs();
                            }
                            let got = f64::from(out[i * n + c]);
                            assert!(
                                (got - want).abs() <= 1e-5 * mag + 1e-30,
                                "m={m} t={t} simd={simd} [{i}, {c}]: {got} vs {want}"
                            );
                            if t == f32::INFINITY {
                                assert_eq!(got, 0.0);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = vec![0f32; 6];
        assert!(matmul_act_sparse(&[0.0; 5], 2, 3, &[0.0; 9], 3, 0.0, true, &mut out).is_err());
        assert!(matmul_act_sparse(&[0.0; 6], 2, 3, &[0.0; 8], 3, 0.0, true, &mut out).is_err());
        assert!(
            matmul_act_sparse(&[0.0; 6], 2, 3, &[0.0; 9], 3, 0.0, true, &mut out[..5]).is_err()
        );
    }
}
