//! Portable (scalar) inner products: the fallback of [`super::avx2`], computing
//! the same sums (in a different order).

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
