//! The 32-element GGML formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, and egret's int4
//! group formats (`i4s_g64` .. `i4a_g128`), which are Q4_0 / Q4_1 over groups of
//! 64 or 128.
//!
//! Each function takes one whole block and writes its values (`out.len()` of
//! them). In every format byte `j` of the `g / 2` packed nibble bytes holds
//! element `j` (low nibble) and element `j + g / 2` (high nibble); Q5 formats add
//! bit 4 of element `i` from bit `i` of a little-endian u32.

use super::f16_at;

/// Element `j` (of `2 * qs.len()`) of the nibbles `qs`: low nibbles first, then high.
#[inline]
pub fn nibble(qs: &[u8], j: usize) -> u8 {
    let half = qs.len();
    if j < half {
        qs[j] & 0x0F
    } else {
        qs[j - half] >> 4
    }
}

/// Element `j` of a 5-bit block: its nibble plus bit `j` of `qh` as bit 4.
#[inline]
fn five_bit(qs: &[u8], qh: u32, j: usize) -> u8 {
    nibble(qs, j) | ((((qh >> j) & 1) as u8) << 4)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Symmetric int4 group of `g = out.len()` elements (Q4_0 for g = 32, `i4s_g64`,
/// `i4s_g128`; `2 + g / 2` bytes): f16 `d`, `g / 2` bytes of nibbles;
/// `x = d * (q - 8)`.
pub fn int4_sym(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..2 + out.len() / 2];
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(nibble(qs, j) as i8 - 8);
    }
}

/// Asymmetric int4 group of `g = out.len()` elements (Q4_1 for g = 32,
/// `i4a_g64`, `i4a_g128`; `4 + g / 2` bytes): f16 `d`, f16 `m`, `g / 2` bytes of
/// nibbles; `x = d * q + m`.
pub fn int4_asym(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..4 + out.len() / 2];
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(nibble(qs, j)) + m;
    }
}

/// Q5_0 (22 bytes): f16 `d`, u32 high bits, 16 bytes of nibbles; `x = d * (q - 16)`.
pub fn q5_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32_at(b, 2);
    let qs = &b[6..22];
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(five_bit(qs, qh, j) as i8 - 16);
    }
}

/// Q5_1 (24 bytes): f16 `d`, f16 `m`, u32 high bits, 16 bytes of nibbles;
/// `x = d * q + m`.
pub fn q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32_at(b, 4);
    let qs = &b[8..24];
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(five_bit(qs, qh, j)) + m;
    }
}

/// Q8_0 (34 bytes): f16 `d`, 32 signed bytes; `x = q * d`.
pub fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..34]) {
        *o = f32::from(q as i8) * d;
    }
}
