//! AVX2 + FMA inner products, the same sums as [`super::portable`]. Every
//! function needs AVX2 and FMA: [`super::Isa`] only reaches them after
//! `is_x86_feature_detected!` confirmed both. Slices of unequal length are read
//! over their common length (tails scalar), so no load leaves a slice.

use std::arch::x86_64::*;

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Eight floats at `x[i..i + 8]`; callers guarantee `i + 8 <= x.len()`.
#[target_feature(enable = "avx2,fma")]
fn load8(x: &[f32], i: usize) -> __m256 {
    debug_assert!(i + 8 <= x.len());
    // SAFETY: the caller guarantees `i + 8 <= x.len()`; unaligned load.
    unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) }
}

/// Eight bytes at `q[i..i + 8]` in the low half of a vector; `i + 8 <= q.len()`.
#[target_feature(enable = "avx2,fma")]
fn load_bytes8(q: &[u8], i: usize) -> __m128i {
    debug_assert!(i + 8 <= q.len());
    // SAFETY: the caller guarantees `i + 8 <= q.len()`; an unaligned 8-byte load.
    unsafe { _mm_loadl_epi64(q.as_ptr().add(i).cast()) }
}

/// Sixteen bytes at `q[i..i + 16]`; `i + 16 <= q.len()`.
#[target_feature(enable = "avx2,fma")]
fn load_bytes16(q: &[u8], i: usize) -> __m128i {
    debug_assert!(i + 16 <= q.len());
    // SAFETY: the caller guarantees `i + 16 <= q.len()`; unaligned load.
    unsafe { _mm_loadu_si128(q.as_ptr().add(i).cast()) }
}

/// `Σ a_j b_j` over the common length.
#[target_feature(enable = "avx2,fma")]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(load8(a, i), load8(b, i), acc0);
        acc1 = _mm256_fmadd_ps(load8(a, i + 8), load8(b, i + 8), acc1);
        i += 16;
    }
    if i + 8 <= n {
        acc0 = _mm256_fmadd_ps(load8(a, i), load8(b, i), acc0);
        i += 8;
    }
    hsum(_mm256_add_ps(acc0, acc1)) + super::portable::dot_f32(&a[i..n], &b[i..n])
}

/// `Σ q_j x_j` for signed bytes `q` and floats `x`, over the common length.
#[target_feature(enable = "avx2,fma")]
pub fn dot_i8_f32(q: &[u8], x: &[f32]) -> f32 {
    let n = q.len().min(x.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_bytes8(q, i)));
        acc = _mm256_fmadd_ps(w, load8(x, i), acc);
        i += 8;
    }
    hsum(acc) + super::portable::dot_i8_f32(&q[i..n], &x[i..n])
}

/// `Σ_j nibble_j x_j` over one int4 group (layout as [`super::portable::dot_nibbles`]).
#[target_feature(enable = "avx2,fma")]
pub fn dot_nibbles(qs: &[u8], x: &[f32]) -> f32 {
    let half = qs.len();
    if x.len() != 2 * half || !half.is_multiple_of(8) {
        return super::portable::dot_nibbles(qs, x);
    }
    let (lo_x, hi_x) = x.split_at(half);
    let mask = _mm256_set1_epi32(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= half {
        let b = _mm256_cvtepu8_epi32(load_bytes8(qs, i));
        let lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, mask));
        let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
        acc = _mm256_fmadd_ps(lo, load8(lo_x, i), acc);
        acc = _mm256_fmadd_ps(hi, load8(hi_x, i), acc);
        i += 8;
    }
    hsum(acc)
}

/// `Σ a_j b_j` of two int8 vectors, exactly: 16 lanes sign-extended to i16,
/// `_mm256_madd_epi16` into i32 lanes, flushed to i64 every 4096 elements (so
/// the i32 lanes cannot overflow).
#[target_feature(enable = "avx2,fma")]
pub fn dot_i8_i8(a: &[i8], b: &[i8]) -> i64 {
    let n = a.len().min(b.len());
    let (a, b): (&[u8], &[u8]) = (bytemuck::cast_slice(&a[..n]), bytemuck::cast_slice(&b[..n]));
    let mut total = 0i64;
    let mut i = 0;
    while i + 16 <= n {
        let end = (i + 4096).min(n);
        let mut acc = _mm256_setzero_si256();
        while i + 16 <= end {
            let va = _mm256_cvtepi8_epi16(load_bytes16(a, i));
            let vb = _mm256_cvtepi8_epi16(load_bytes16(b, i));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
            i += 16;
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` holds exactly 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
        total += lanes.iter().map(|&v| i64::from(v)).sum::<i64>();
    }
    total + super::portable::dot_i8_i8(bytemuck::cast_slice(&a[i..]), bytemuck::cast_slice(&b[i..]))
}
