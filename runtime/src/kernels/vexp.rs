//! Vectorised `exp` for softmax rows.
//!
//! A softmax spends most of its time in `exp`; libm's scalar `expf` costs
//! about as much as the two attention GEMMs at BERT sizes. [`exp_shifted_sum`]
//! computes `v[i] = exp(v[i] - shift)` in place and returns the sum, eight
//! lanes at a time with AVX2/FMA (Cephes' `expf`: range reduction by `ln 2`
//! split in two, a degree-5 polynomial, the exponent built in the integer
//! unit; within 2 ulp of the exact value), and with `f32::exp` elsewhere.
//! Arguments below `ln(f32::MIN_POSITIVE)` (masked scores, `-∞`) give exactly
//! 0 (`f32::exp` would give a subnormal or 0); NaN stays NaN.

/// `v[i] = exp(v[i] - shift)`; returns `Σ v[i]`.
pub fn exp_shifted_sum(v: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::qmatmul::Isa::avx2().is_some() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { avx2::exp_shifted_sum(v, shift) };
    }
    scalar(v, shift)
}

fn scalar(v: &mut [f32], shift: f32) -> f32 {
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - shift).exp();
        sum += *x;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Below this, `exp` is under `f32::MIN_POSITIVE`: flushed to 0.
    const LOW: f32 = -87.336_55;
    /// Above this, `2ⁿ` would overflow (the softmax never gets here: its
    /// arguments are `≤ 0`).
    const HIGH: f32 = 88.0;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// `ln 2 = C1 + C2`, `C1` exact in few bits so `n · C1` is exact.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ];

    /// `exp` of eight lanes.
    ///
    /// # Safety
    /// Needs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn exp8(x: __m256) -> __m256 {
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(LOW));
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
        let c = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LOW)), _mm256_set1_ps(HIGH));
        let n = _mm256_floor_ps(_mm256_fmadd_ps(
            c,
            _mm256_set1_ps(LOG2E),
            _mm256_set1_ps(0.5),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C1), c);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C2), r);
        let mut y = _mm256_set1_ps(P[0]);
        for &p in &P[1..] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(p));
        }
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_add_ps(_mm256_fmadd_ps(y, r2, r), _mm256_set1_ps(1.0));
        let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        let e = _mm256_mul_ps(y, pow2);
        let e = _mm256_andnot_ps(tiny, e);
        _mm256_blendv_ps(e, x, nan)
    }

    /// [`super::exp_shifted_sum`] with AVX2.
    ///
    /// # Safety
    /// Needs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted_sum(v: &mut [f32], shift: f32) -> f32 {
        let s = _mm256_set1_ps(shift);
        let mut acc = _mm256_setzero_ps();
        let mut chunks = v.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` holds eight floats.
            unsafe {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), s));
                _mm256_storeu_ps(c.as_mut_ptr(), e);
                acc = _mm256_add_ps(acc, e);
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let tail = chunks.into_remainder();
        let mut pad = [f32::NEG_INFINITY; 8];
        pad[..tail.len()].copy_from_slice(tail);
        // SAFETY: eight floats.
        let e = unsafe { exp8(_mm256_sub_ps(_mm256_loadu_ps(pad.as_ptr()), s)) };
        // SAFETY: eight floats.
        unsafe { _mm256_storeu_ps(pad.as_mut_ptr(), e) };
        tail.copy_from_slice(&pad[..tail.len()]);
        lanes.iter().sum::<f32>() + tail.iter().sum::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_exp_within_two_ulp_above_the_normal_range() {
        let xs: Vec<f32> = (0..20_011)
            .map(|i| -100.0 + i as f32 * 0.0051)
            .chain([f32::NEG_INFINITY, 0.0, -87.0, -88.0, 5.5])
            .collect();
        let mut got = xs.clone();
        let sum = exp_shifted_sum(&mut got, 2.0);
        let mut want_sum = 0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = f64::from(x - 2.0).exp(); // the shift is applied in f32
            want_sum += want;
            // Results below the normal range may flush to zero.
            let tol = 2.0 * f64::from(f32::EPSILON) * want + f64::from(f32::MIN_POSITIVE);
            assert!(
                (f64::from(g) - want).abs() <= tol,
                "exp({x} - 2) = {g}, want {want}"
            );
        }
        // An f32 sum of 20k terms: a sanity check, not an ulp bound.
        assert!((f64::from(sum) - want_sum).abs() <= 1e-4 * want_sum);
    }

    #[test]
    fn masked_scores_give_zero_and_nan_stays_nan() {
        let mut v = [f32::NEG_INFINITY, -200.0, f32::NAN, 0.0];
        let sum = exp_shifted_sum(&mut v, 0.0);
        assert_eq!(&v[..2], &[0.0, 0.0]);
        assert!(v[2].is_nan() && sum.is_nan());
        assert_eq!(v[3], 1.0);
    }
}
