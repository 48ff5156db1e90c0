//! AVX2 + FMA inner products, the same sums as [`super::portable`]. Every
//! function needs AVX2 and FMA: [`super::Isa`] only reaches them after
//! `is_x86_feature_detected!` confirmed both. Slices of unequal length are read
//! over their common length (tails scalar), so no load leaves a slice.

use egret_ir::blocks::f16_at;
use egret_ir::sparse::SparseValuesRef;
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
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (a, acc) in acc.iter_mut().enumerate() {
            let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_bytes8(q, i + 8 * a)));
            *acc = _mm256_fmadd_ps(w, load8(x, i + 8 * a), *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_bytes8(q, i)));
        acc[0] = _mm256_fmadd_ps(w, load8(x, i), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum(s) + super::portable::dot_i8_f32(&q[i..n], &x[i..n])
}

/// `x · row` for one row of Q8_0 blocks (34 bytes: f16 `d`, 32 int8) against
/// `x` of `32 · blocks` floats; one vector accumulator for the whole row.
#[target_feature(enable = "avx2,fma")]
pub fn row_dot_q8(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for (j, (b, xb)) in row.chunks_exact(34).zip(x.chunks_exact(32)).enumerate() {
        let mut t = _mm256_setzero_ps();
        for a in 0..4 {
            let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_bytes8(b, 2 + 8 * a)));
            t = _mm256_fmadd_ps(w, load8(xb, 8 * a), t);
        }
        acc[j & 1] = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(b, 0)), t, acc[j & 1]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// `x · row` for one row of int4 groups of `group` (a `head`-byte header: f16
/// `d`, plus f16 `m` when `asym`, else the offset is `-8 d`; then `group / 2`
/// bytes of nibbles as in [`super::portable::dot_nibbles`]). `xsum` holds the
/// per-group sums of `x`, which carry the offsets.
#[target_feature(enable = "avx2,fma")]
pub fn row_dot_nibbles(
    row: &[u8],
    x: &[f32],
    xsum: &[f32],
    group: usize,
    head: usize,
    asym: bool,
) -> f32 {
    let half = group / 2;
    if !half.is_multiple_of(8) || half == 0 {
        return super::portable::row_dot_nibbles(row, x, xsum, group, head, asym);
    }
    let mask = _mm256_set1_epi32(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut off = 0f32;
    for ((b, xb), s) in row
        .chunks_exact(head + half)
        .zip(x.chunks_exact(group))
        .zip(xsum)
    {
        let d = f16_at(b, 0);
        off += if asym { f16_at(b, 2) } else { -8.0 * d } * s;
        let (lo_x, hi_x) = xb.split_at(half);
        let mut t = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= half {
            let q = _mm256_cvtepu8_epi32(load_bytes8(b, head + i));
            let lo = _mm256_cvtepi32_ps(_mm256_and_si256(q, mask));
            let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4));
            t = _mm256_fmadd_ps(lo, load8(lo_x, i), t);
            t = _mm256_fmadd_ps(hi, load8(hi_x, i), t);
            i += 8;
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), t, acc);
    }
    hsum(acc) + off
}

/// Signed bytes `q` widened to f32 into `out` (over the common length).
#[target_feature(enable = "avx2,fma")]
pub fn widen_i8(q: &[u8], out: &mut [f32]) {
    let n = q.len().min(out.len());
    let mut i = 0;
    while i + 8 <= n {
        let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_bytes8(q, i)));
        store8(out, i, w);
        i += 8;
    }
    super::portable::widen_i8(&q[i..n], &mut out[i..n]);
}

/// One row of Q8_0 blocks dequantized into `out` (`32 · blocks` floats), the
/// same values as `egret_ir::blocks::dequantize_into`.
#[target_feature(enable = "avx2,fma")]
pub fn dequant_q8(row: &[u8], out: &mut [f32]) {
    for (b, o) in row.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        for a in 0..4 {
            let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(load_bytes8(b, 2 + 8 * a)));
            store8(o, 8 * a, _mm256_mul_ps(w, d));
        }
    }
}

/// One row of int4 groups (layout as [`row_dot_nibbles`]) dequantized into
/// `out`, the same values as `egret_ir::blocks::dequantize_into`: `d · (q - 8)`
/// when symmetric, `d · q + m` when not.
#[target_feature(enable = "avx2,fma")]
pub fn dequant_nibbles(row: &[u8], out: &mut [f32], group: usize, head: usize, asym: bool) {
    let half = group / 2;
    if !half.is_multiple_of(8) || half == 0 {
        return super::portable::dequant_nibbles(row, out, group, head, asym);
    }
    let mask = _mm256_set1_epi32(0x0F);
    for (b, o) in row
        .chunks_exact(head + half)
        .zip(out.chunks_exact_mut(group))
    {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let (sub, add) = if asym {
            (_mm256_setzero_ps(), _mm256_set1_ps(f16_at(b, 2)))
        } else {
            (_mm256_set1_ps(8.0), _mm256_setzero_ps())
        };
        let (lo_o, hi_o) = o.split_at_mut(half);
        let mut i = 0;
        while i + 8 <= half {
            let q = _mm256_cvtepu8_epi32(load_bytes8(b, head + i));
            let lo = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(q, mask)), sub);
            let hi = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4)), sub);
            store8(lo_o, i, _mm256_add_ps(_mm256_mul_ps(d, lo), add));
            store8(hi_o, i, _mm256_add_ps(_mm256_mul_ps(d, hi), add));
            i += 8;
        }
    }
}

/// Eight floats stored at `out[i..i + 8]` (bounds-checked).
#[target_feature(enable = "avx2,fma")]
fn store8(out: &mut [f32], i: usize, v: __m256) {
    let dst = &mut out[i..i + 8];
    // SAFETY: `dst` holds exactly 8 floats; unaligned store.
    unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) }
}

/// The `R x C` dot products of a register tile: `out[a][b] = Σ_j xs[a][j] ·
/// ws[b][j]` over the first `k` elements. With `EXACT` every value is an integer
/// of magnitude at most 127 and the sums are exact: the f32 lanes are flushed to
/// i64 every [`super::EXACT_CHUNK`] elements, before they could pass 2^24.
#[target_feature(enable = "avx2,fma")]
fn tile_rc<const R: usize, const C: usize, const EXACT: bool>(
    xs: &[&[f32]],
    ws: &[&[f32]],
    k: usize,
    out: &mut [[f64; super::NR]; super::MR],
) {
    // Every load below stays within the first `k` elements of each slice.
    assert!(xs.len() >= R && ws.len() >= C);
    assert!(xs.iter().chain(ws).all(|s| s.len() >= k));
    let chunk = if EXACT { super::EXACT_CHUNK } else { k.max(1) };
    let mut total = [[0f64; C]; R];
    let mut start = 0;
    while start < k {
        let end = (start + chunk).min(k);
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut i = start;
        while i + 8 <= end {
            let mut wv = [_mm256_setzero_ps(); C];
            for (b, v) in wv.iter_mut().enumerate() {
                *v = load8(ws[b], i);
            }
            for (a, row) in acc.iter_mut().enumerate() {
                let xv = load8(xs[a], i);
                for (b, v) in row.iter_mut().enumerate() {
                    *v = _mm256_fmadd_ps(xv, wv[b], *v);
                }
            }
            i += 8;
        }
        for a in 0..R {
            for b in 0..C {
                let tail = super::portable::dot_f32(&xs[a][i..end], &ws[b][i..end]);
                total[a][b] += if EXACT {
                    let mut lanes = [0i32; 8];
                    // SAFETY: `lanes` holds exactly 32 bytes; unaligned store.
                    // The lanes are exact integers below 2^24, so the
                    // conversion is exact.
                    unsafe {
                        _mm256_storeu_si256(
                            lanes.as_mut_ptr().cast(),
                            _mm256_cvtps_epi32(acc[a][b]),
                        )
                    };
                    let s: i64 = lanes.iter().map(|&v| i64::from(v)).sum();
                    (s + tail as i64) as f64
                } else {
                    f64::from(hsum(acc[a][b]) + tail)
                };
            }
        }
        start = end;
    }
    for a in 0..R {
        out[a][..C].copy_from_slice(&total[a]);
    }
}

/// The dot products of up to [`super::MR`] rows `xs` with up to [`super::NR`]
/// rows `ws` (first `k` elements each) into `out[a][b]`; see [`tile_rc`].
#[target_feature(enable = "avx2,fma")]
pub fn tile(
    xs: &[&[f32]],
    ws: &[&[f32]],
    k: usize,
    exact: bool,
    out: &mut [[f64; super::NR]; super::MR],
) {
    macro_rules! go {
        ($($r:literal, $c:literal);*) => {
            match (xs.len(), ws.len(), exact) {
                $(
                    ($r, $c, false) => tile_rc::<$r, $c, false>(xs, ws, k, out),
                    ($r, $c, true) => tile_rc::<$r, $c, true>(xs, ws, k, out),
                )*
                _ => super::portable::tile(xs, ws, k, exact, out),
            }
        };
    }
    go!(4, 3; 4, 2; 4, 1; 3, 3; 3, 2; 3, 1; 2, 3; 2, 2; 2, 1; 1, 3; 1, 2; 1, 1)
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

/// For each mask byte `b`, the value index of every lane: lane `i` takes the
/// `popcount(b & ((1 << i) - 1))`-th of the byte's kept values (0 where the
/// bit is clear; those lanes are zeroed after the permute).
static SPARSE_PERM: [[i32; 8]; 256] = sparse_perm();

const fn sparse_perm() -> [[i32; 8]; 256] {
    let mut t = [[0i32; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let (mut i, mut c) = (0, 0);
        while i < 8 {
            if (b >> i) & 1 == 1 {
                t[b][i] = c;
                c += 1;
            }
            i += 1;
        }
        b += 1;
    }
    t
}

/// `x · row` for one bitmap-sparse row (unscaled; needs POPCNT too, which
/// [`super::Isa::avx2`] checks), as
/// [`super::portable::sparse_dot`]: per nonzero mask byte, the next 8 values
/// are loaded, expanded to their columns with `_mm256_permutevar8x32`, the
/// lanes not kept zeroed, and multiplied by 8 entries of `x`. The mask is read
/// a u64 word at a time: zero words are skipped, and each byte's value offset
/// is the popcount of the lower bytes of its word, so the bytes of a word do
/// not wait on each other. A byte whose 8 values would pass the end of the
/// values (or whose 8 columns pass `x`) is done in scalar.
#[target_feature(enable = "avx2,fma,popcnt")]
pub fn sparse_dot(mask: &[u8], values: SparseValuesRef<'_>, start: usize, x: &[f32]) -> f32 {
    match values {
        SparseValuesRef::F32(v) => sparse_dot_as::<false>(mask, v, &[], values, start, x),
        SparseValuesRef::Int8 { q, .. } => {
            sparse_dot_as::<true>(mask, &[], bytemuck::cast_slice(q), values, start, x)
        }
    }
}

/// The kept values of mask byte `byte` (from position `p`) expanded to their
/// 8 columns, zeros elsewhere; `p + 8` must be within the values.
#[target_feature(enable = "avx2,fma,popcnt")]
fn expand<const I8: bool>(byte: u8, vf: &[f32], vq: &[u8], p: usize) -> __m256 {
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let perm = &SPARSE_PERM[usize::from(byte)];
    // SAFETY: `perm` holds exactly 8 i32 (32 bytes); unaligned load.
    let idx = unsafe { _mm256_loadu_si256(perm.as_ptr().cast()) };
    let keep = _mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_set1_epi32(i32::from(byte)), bits),
        bits,
    );
    let v = if I8 {
        let q = _mm256_cvtepi8_epi32(load_bytes8(vq, p));
        _mm256_cvtepi32_ps(_mm256_permutevar8x32_epi32(q, idx))
    } else {
        _mm256_permutevar8x32_ps(load8(vf, p), idx)
    };
    _mm256_and_ps(v, _mm256_castsi256_ps(keep))
}

/// [`sparse_dot`] on f32 values `vf`, or with `I8` on int8 values `vq`.
#[target_feature(enable = "avx2,fma,popcnt")]
fn sparse_dot_as<const I8: bool>(
    mask: &[u8],
    vf: &[f32],
    vq: &[u8],
    values: SparseValuesRef<'_>,
    start: usize,
    x: &[f32],
) -> f32 {
    let len = if I8 { vq.len() } else { vf.len() };
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut tail = 0f32;
    let mut p = start;
    let (words, rest) = mask.split_at(mask.len() / 8 * 8);
    for (w, word) in words.chunks_exact(8).enumerate() {
        let bits = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        if bits == 0 {
            continue;
        }
        let base = 64 * w;
        // Every fast byte of this word reads x[base..base + 64] and at most
        // values[p..p + 64]: check once.
        let fast = base + 64 <= x.len() && p + bits.count_ones() as usize + 8 <= len;
        if fast {
            // Two accumulators, even and odd bytes, kept in registers.
            let mut h = 0;
            while h < 8 {
                let (b0, b1) = ((bits >> (8 * h)) as u8, (bits >> (8 * h + 8)) as u8);
                if b0 != 0 {
                    let off = p + (bits & ((1u64 << (8 * h)) - 1)).count_ones() as usize;
                    acc0 = _mm256_fmadd_ps(
                        expand::<I8>(b0, vf, vq, off),
                        load8(x, base + 8 * h),
                        acc0,
                    );
                }
                if b1 != 0 {
                    let off = p + (bits & ((1u64 << (8 * h + 8)) - 1)).count_ones() as usize;
                    acc1 = _mm256_fmadd_ps(
                        expand::<I8>(b1, vf, vq, off),
                        load8(x, base + 8 * h + 8),
                        acc1,
                    );
                }
                h += 2;
            }
        } else {
            let mut off = p;
            for (h, &byte) in word.iter().enumerate() {
                tail += super::portable::sparse_byte(byte, base + 8 * h, values, off, x);
                off += byte.count_ones() as usize;
            }
        }
        p += bits.count_ones() as usize;
    }
    let base = 8 * words.len();
    for (o, &byte) in rest.iter().enumerate() {
        tail += super::portable::sparse_byte(byte, base + 8 * o, values, p, x);
        p += byte.count_ones() as usize;
    }
    hsum(_mm256_add_ps(acc0, acc1)) + tail
}
