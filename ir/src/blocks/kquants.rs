//! The K-quant super-blocks of 256 elements: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
//!
//! Each super-block holds 8 or 16 sub-blocks, each with its own small integer
//! scale (and min) multiplied by the super-block's f16 scale(s). The index
//! arithmetic below follows the array reshapes of `gguf.quants` exactly; each
//! function documents the block layout in file order.

use super::f16_at;

/// `(q >> shift) & mask` of the byte holding flat element `f` when a run of
/// `run` bytes is split into `planes` bit-planes of width `bits`: element `f`
/// lives in chunk `f / (run * planes)`, plane `(f / run) % planes`, byte `f % run`.
#[inline]
fn plane(bytes: &[u8], f: usize, run: usize, planes: usize, bits: u32) -> u8 {
    let chunk = f / (run * planes);
    let p = (f / run) % planes;
    let mask = (1u8 << bits) - 1;
    (bytes[chunk * run + f % run] >> (p as u32 * bits)) & mask
}

/// Q2_K (84 bytes): `scales[16]` (low nibble scale, high nibble min), `qs[64]`
/// (2-bit planes), f16 `d`, f16 `dmin`; sub-blocks of 16:
/// `x = (d * sc) * q - dmin * m`.
pub fn q2_k(b: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (f, o) in out.iter_mut().enumerate() {
        let s = scales[f / 16];
        let dl = d * f32::from(s & 0x0F);
        let ml = dmin * f32::from(s >> 4);
        *o = dl * f32::from(plane(qs, f, 32, 4, 2)) - ml;
    }
}

/// The 16 six-bit signed scales of Q3_K, packed in 12 bytes: low nibbles in
/// bytes 0..8 (elements 0..8 low, 8..16 high), 2-bit high parts in bytes 8..12.
fn q3_k_scale(sc: &[u8], i: usize) -> i8 {
    let lo = if i < 8 { sc[i] & 0x0F } else { sc[i - 8] >> 4 };
    let hi = (sc[8 + i % 4] >> (2 * (i / 4) as u32)) & 0x03;
    (lo | (hi << 4)) as i8 - 32
}

/// Q3_K (110 bytes): `hmask[32]` (bit-planes of the high bit), `qs[64]` (2-bit
/// planes), `scales[12]`, f16 `d`; sub-blocks of 16:
/// `x = (d * sc) * (q_low - 4 * !high_bit)`.
pub fn q3_k(b: &[u8], out: &mut [f32]) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    for (f, o) in out.iter_mut().enumerate() {
        let dl = d * f32::from(q3_k_scale(scales, f / 16));
        let low = plane(qs, f, 32, 4, 2) as i8;
        let high = plane(hmask, f, 32, 8, 1) ^ 1;
        *o = dl * f32::from(low - ((high << 2) as i8));
    }
}

/// Scale and min of sub-block `j` (of 8) in the 12 packed bytes shared by Q4_K
/// and Q5_K: 6 bits each, the high 2 bits of sub-blocks 4..8 in the top bits of
/// bytes 0..8.
fn k_scale_min(sc: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (sc[j] & 0x3F, sc[j + 4] & 0x3F)
    } else {
        (
            (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 2) & 0x30),
            (sc[j + 4] >> 4) | ((sc[j] >> 2) & 0x30),
        )
    }
}

/// Shared body of Q4_K and Q5_K: `x = (d * sc) * q - dmin * m` over sub-blocks
/// of 32, with `q(f)` the element's quantized value.
fn scaled_mins(b: &[u8], out: &mut [f32], q: impl Fn(usize) -> u8) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    for (f, o) in out.iter_mut().enumerate() {
        let (sc, m) = k_scale_min(scales, f / 32);
        let dd = d * f32::from(sc);
        let dm = dmin * f32::from(m);
        *o = dd * f32::from(q(f)) - dm;
    }
}

/// Q4_K (144 bytes): f16 `d`, f16 `dmin`, `scales[12]`, `qs[128]` (nibble planes
/// over runs of 32 bytes).
pub fn q4_k(b: &[u8], out: &mut [f32]) {
    let qs = &b[16..144];
    scaled_mins(b, out, |f| plane(qs, f, 32, 2, 4));
}

/// Q5_K (176 bytes): f16 `d`, f16 `dmin`, `scales[12]`, `qh[32]` (bit-planes of
/// bit 4), `qs[128]` (nibble planes).
pub fn q5_k(b: &[u8], out: &mut [f32]) {
    let (qh, qs) = (&b[16..48], &b[48..176]);
    scaled_mins(b, out, |f| {
        plane(qs, f, 32, 2, 4) | (plane(qh, f, 32, 8, 1) << 4)
    });
}

/// Q6_K (210 bytes): `ql[128]` (nibble planes over runs of 64), `qh[64]` (2-bit
/// planes over runs of 32), `scales[16]` (i8), f16 `d`; sub-blocks of 16:
/// `x = (d * sc) * (q - 32)`.
pub fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for (f, o) in out.iter_mut().enumerate() {
        let ds = d * f32::from(scales[f / 16] as i8);
        let q = plane(ql, f, 64, 2, 4) | (plane(qh, f, 32, 4, 2) << 4);
        *o = ds * f32::from(q as i8 - 32);
    }
}
