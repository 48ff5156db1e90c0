//! Portable (scalar) inner products: the fallback of [`super::avx2`], computing
//! the same sums (in a different order).

use egret_ir::blocks::f16_at;
use egret_ir::sparse::SparseValuesRef;

/// `Σ a_j b_j` over the common length.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `Σ q_j x_j` for signed bytes `q` (raw `u8` storage) and floats `x`.
pub fn dot_i8_f32(q: &[u8], x: &[f32]) -> f32 {
    q.iter().zip(x).map(|(&q, x)| f32::from(q as i8) * x).sum()
}

/// `Σ_j nibble_j x_j` over one int4 group: `x.len() == 2 * qs.len()`, byte `j`
/// holding element `j` (low nibble) and element `j + qs.len()` (high nibble).
pub fn dot_nibbles(qs: &[u8], x: &[f32]) -> f32 {
    let (lo, hi) = x.split_at(qs.len().min(x.len()));
    qs.iter()
        .zip(lo)
        .zip(hi)
        .map(|((&q, l), h)| f32::from(q & 0x0F) * l + f32::from(q >> 4) * h)
        .sum()
}

/// `Σ a_j b_j` of two int8 vectors, exactly.
pub fn dot_i8_i8(a: &[i8], b: &[i8]) -> i64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i64::from(x) * i64::from(y))
        .sum()
}

/// `x · row` for one row of Q8_0 blocks (34 bytes: f16 `d`, 32 int8).
pub fn row_dot_q8(row: &[u8], x: &[f32]) -> f32 {
    row.chunks_exact(34)
        .zip(x.chunks_exact(32))
        .map(|(b, xb)| f16_at(b, 0) * dot_i8_f32(&b[2..], xb))
        .sum()
}

/// `x · row` for one row of int4 groups (see [`super::avx2::row_dot_nibbles`]).
pub fn row_dot_nibbles(
    row: &[u8],
    x: &[f32],
    xsum: &[f32],
    group: usize,
    head: usize,
    asym: bool,
) -> f32 {
    row.chunks_exact(head + group / 2)
        .zip(x.chunks_exact(group))
        .zip(xsum)
        .map(|((b, xb), s)| {
            let d = f16_at(b, 0);
            let offset = if asym { f16_at(b, 2) } else { -8.0 * d };
            d * dot_nibbles(&b[head..], xb) + offset * s
        })
        .sum()
}

/// Signed bytes `q` widened to f32 into `out` (over the common length).
pub fn widen_i8(q: &[u8], out: &mut [f32]) {
    for (o, &q) in out.iter_mut().zip(q) {
        *o = f32::from(q as i8);
    }
}

/// One row of int4 groups dequantized into `out`: `d · (q - 8)` when symmetric,
/// `d · q + m` when not (the values of `egret_ir::blocks::dequantize_into`).
pub fn dequant_nibbles(row: &[u8], out: &mut [f32], group: usize, head: usize, asym: bool) {
    let half = group / 2;
    for (b, o) in row
        .chunks_exact(head + half)
        .zip(out.chunks_exact_mut(group))
    {
        let d = f16_at(b, 0);
        let (lo, hi) = o.split_at_mut(half);
        for ((&q, l), h) in b[head..].iter().zip(lo).zip(hi) {
            let (ql, qh) = (f32::from(q & 0x0F), f32::from(q >> 4));
            if asym {
                let m = f16_at(b, 2);
                (*l, *h) = (d * ql + m, d * qh + m);
            } else {
                (*l, *h) = (d * (ql - 8.0), d * (qh - 8.0));
            }
        }
    }
}

/// The dot products of rows `xs` with rows `ws` (first `k` elements each) into
/// `out[a][b]`; with `exact` the values are small integers and the sums exact.
pub fn tile(
    xs: &[&[f32]],
    ws: &[&[f32]],
    k: usize,
    exact: bool,
    out: &mut [[f64; super::NR]; super::MR],
) {
    for (o, x) in out.iter_mut().zip(xs) {
        for (o, w) in o.iter_mut().zip(ws) {
            *o = if exact {
                x[..k]
                    .iter()
                    .zip(&w[..k])
                    .map(|(&a, &b)| (a * b) as i64)
                    .sum::<i64>() as f64
            } else {
                f64::from(dot_f32(&x[..k], &w[..k]))
            };
        }
    }
}

/// `x · row` for one bitmap-sparse row (unscaled): `mask` holds the row's keep
/// bits (LSB first), its kept values start at `start` of `values`. Zero 8-byte
/// words of the mask are skipped whole; values or `x` entries missing (never
/// for a validated view) count as 0.
pub fn sparse_dot(mask: &[u8], values: SparseValuesRef<'_>, start: usize, x: &[f32]) -> f32 {
    let mut p = start;
    let mut acc = 0f32;
    for (w, word) in mask.chunks(8).enumerate() {
        if word.iter().all(|&b| b == 0) {
            continue;
        }
        for (o, &byte) in word.iter().enumerate() {
            acc += sparse_byte(byte, 8 * (8 * w + o), values, p, x);
            p += byte.count_ones() as usize;
        }
    }
    acc
}

/// `Σ x[base + i] · value` over the set bits `i` of `byte`, the values read in
/// order from position `p`.
pub fn sparse_byte(byte: u8, base: usize, values: SparseValuesRef<'_>, p: usize, x: &[f32]) -> f32 {
    let mut bits = byte;
    let mut p = p;
    let mut acc = 0f32;
    while bits != 0 {
        let j = base + bits.trailing_zeros() as usize;
        let v = match values {
            SparseValuesRef::F32(v) => v.get(p).copied(),
            SparseValuesRef::Int8 { q, .. } => q.get(p).map(|&q| f32::from(q)),
        };
        acc += v.unwrap_or(0.0) * x.get(j).copied().unwrap_or(0.0);
        p += 1;
        bits &= bits - 1;
    }
    acc
}
