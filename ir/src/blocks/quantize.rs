//! f32 -> block quantizers, and per-row int8.
//!
//! * Without importance weights, Q8_0, Q4_0 and Q4_1 are **bit-exact** with ggml's
//!   reference quantizers (`quantize_row_q8_0_ref`, `q4_0_ref`, `q4_1_ref`, as
//!   ported by the `gguf` Python package's `gguf.quants.quantize`): the same f32
//!   operations in the same order, no fused multiply-add. The committed vectors in
//!   `tests/fixtures/gguf/quantize/` (made by `scripts/make-quant-vectors.py`)
//!   check this bit for bit. egret's int4 groups (`i4s_g64` .. `i4a_g128`) run the
//!   Q4_0 / Q4_1 algorithm over their larger groups.
//! * With importance weights `w` (one per column of the row, e.g. calibration
//!   `E[x_k^2]`), each block's scale (and min) is chosen by a small search in the
//!   style of llama.cpp's `make_qx_quants`: a grid of candidate scales around the
//!   reference one, each also refitted by weighted least squares, every candidate
//!   scored by `sum_k w_k (x_k - dequant_k)^2` *after* rounding it to the stored
//!   f16. The reference block is itself a candidate and wins ties, so the search
//!   is never worse than the reference quantizer on any block.
//! * [`quantize_rows_i8`]: symmetric per-row (per output channel) int8.

use super::{dequantize_block, f16_at};
use crate::dtype::{BlockFormat, DType};
use crate::error::IrError;
use crate::tensor::Tensor;

/// The three block layouts with a quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// f16 `d`, signed bytes; `x = d * q` (Q8_0).
    Sym8,
    /// f16 `d`, nibbles; `x = d * (q - 8)` (Q4_0, `i4s_g*`).
    Sym4,
    /// f16 `d`, f16 `m`, nibbles; `x = d * q + m` (Q4_1, `i4a_g*`).
    Asym4,
}

fn kind(fmt: BlockFormat) -> Option<Kind> {
    Some(match fmt {
        BlockFormat::Q8_0 => Kind::Sym8,
        BlockFormat::Q4_0 | BlockFormat::I4S64 | BlockFormat::I4S128 => Kind::Sym4,
        BlockFormat::Q4_1 | BlockFormat::I4A64 | BlockFormat::I4A128 => Kind::Asym4,
        _ => return None,
    })
}

/// True if [`quantize_into`] can produce `fmt` (Q8_0, Q4_0, Q4_1 and the int4
/// group formats; not Q5_* or the K-quants).
pub fn can_quantize(fmt: BlockFormat) -> bool {
    kind(fmt).is_some()
}

/// `x` rounded to f16 (round to nearest even, as numpy's `astype(float16)`).
fn f16_bits(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

/// Pack `q` (values 0..=15) as nibbles: byte `j` holds `q[j]` low, `q[j + g/2]` high.
fn pack_nibbles(q: impl Fn(usize) -> u8, half: usize, out: &mut [u8]) {
    for (j, o) in out.iter_mut().take(half).enumerate() {
        *o = q(j) | (q(j + half) << 4);
    }
}

/// `x.round()` (half away from zero, like C's `roundf`) without the libm
/// call that `f32::round` compiles to on baseline x86-64: it was a fifth of
/// the importance-weighted scale search. Bit-identical for every input: the
/// result is an integer of at most 25 bits (or `x` itself, already an
/// integer, when `|x| ≥ 2²³`), which f32 holds exactly.
#[inline(always)]
fn round_away(x: f32) -> f32 {
    round_away_f64(f64::from(x)) as f32
}

/// [`round_away`] in f64, exact for every input: below 2⁵² the fraction
/// `x − trunc(x)` is exact, above it every double is an integer already
/// (NaN passes through).
#[inline(always)]
fn round_away_f64(x: f64) -> f64 {
    if x.is_nan() || x.abs() >= 4_503_599_627_370_496.0 {
        return x;
    }
    let t = x as i64 as f64;
    let r = x - t;
    let rounded = if r >= 0.5 {
        t + 1.0
    } else if r <= -0.5 {
        t - 1.0
    } else {
        t
    };
    // −0.3 rounds to −0, as `round` does.
    rounded.copysign(x)
}

/// ggml's reference quantizer for one block (`out.len() == block_bytes`).
fn reference_block(kind: Kind, x: &[f32], out: &mut [u8]) {
    let half = x.len() / 2;
    match kind {
        Kind::Sym8 => {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out[..2].copy_from_slice(&f16_bits(d));
            for (o, &v) in out[2..].iter_mut().zip(x) {
                // Half away from zero, like C's roundf.
                *o = round_away(v * id) as i8 as u8;
            }
        }
        Kind::Sym4 => {
            // The value of largest magnitude, first one on ties (numpy's argmax).
            let mut max = x.first().copied().unwrap_or(0.0);
            for &v in x {
                if max.abs() < v.abs() {
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out[..2].copy_from_slice(&f16_bits(d));
            let q = |j: usize| (x[j] * id + 8.5).trunc().clamp(0.0, 15.0) as u8;
            pack_nibbles(q, half, &mut out[2..]);
        }
        Kind::Asym4 => {
            let (mut min, mut max) = (f32::MAX, -f32::MAX);
            for &v in x {
                if v < min {
                    min = v;
                }
                if v > max {
                    max = v;
                }
            }
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out[..2].copy_from_slice(&f16_bits(d));
            out[2..4].copy_from_slice(&f16_bits(min));
            let q = |j: usize| ((x[j] - min) * id + 0.5).trunc().clamp(0.0, 15.0) as u8;
            pack_nibbles(q, half, &mut out[4..]);
        }
    }
}

/// Encode one block with scale `d` (and min `m`), each element at its nearest
/// level given the *stored* (f16) scale and min.
fn encode_nearest(kind: Kind, x: &[f32], d: f32, m: f32, out: &mut [u8]) {
    let half = x.len() / 2;
    out[..2].copy_from_slice(&f16_bits(d));
    let ds = f16_at(out, 0);
    let id = if ds != 0.0 && ds.is_finite() {
        1.0 / ds
    } else {
        0.0
    };
    match kind {
        Kind::Sym8 => {
            for (o, &v) in out[2..].iter_mut().zip(x) {
                *o = round_away(v * id).clamp(-128.0, 127.0) as i8 as u8;
            }
        }
        Kind::Sym4 => {
            let q = |j: usize| (round_away(x[j] * id) + 8.0).clamp(0.0, 15.0) as u8;
            pack_nibbles(q, half, &mut out[2..]);
        }
        Kind::Asym4 => {
            out[2..4].copy_from_slice(&f16_bits(m));
            let ms = f16_at(out, 2);
            let q = |j: usize| round_away((x[j] - ms) * id).clamp(0.0, 15.0) as u8;
            pack_nibbles(q, half, &mut out[4..]);
        }
    }
}

/// The levels one encoded block can represent: its stored scale (and min).
///
/// Error-compensating quantizers (GPTQ) fix a block's scale first, then round
/// its elements one at a time while they still change; `nearest` gives the
/// value an element would decode to, and `encode` writes the block with the
/// same scale and exactly those levels.
#[derive(Clone, Copy, Debug)]
pub struct BlockGrid {
    kind: Kind,
    d: f32,
    m: f32,
}

impl BlockGrid {
    /// The grid of the encoded block `block` of `fmt`, or `None` for a format
    /// without a quantizer or a block of the wrong length.
    pub fn of(fmt: BlockFormat, block: &[u8]) -> Option<BlockGrid> {
        let kind = kind(fmt)?;
        (block.len() == fmt.block_bytes()).then_some(())?;
        let m = if kind == Kind::Asym4 {
            f16_at(block, 2)
        } else {
            0.0
        };
        Some(BlockGrid {
            kind,
            d: f16_at(block, 0),
            m,
        })
    }

    fn inverse(&self) -> f32 {
        if self.d != 0.0 && self.d.is_finite() {
            1.0 / self.d
        } else {
            0.0
        }
    }

    /// The value `x` decodes to once encoded on this grid (as [`Self::encode`]
    /// rounds it).
    pub fn nearest(&self, x: f32) -> f32 {
        let id = self.inverse();
        match self.kind {
            Kind::Sym8 => self.d * round_away(x * id).clamp(-128.0, 127.0),
            Kind::Sym4 => self.d * ((round_away(x * id) + 8.0).clamp(0.0, 15.0) - 8.0),
            Kind::Asym4 => self.d * round_away((x - self.m) * id).clamp(0.0, 15.0) + self.m,
        }
    }

    /// Encode `x` (one block's elements) on this grid into `out` (one block).
    pub fn encode(&self, x: &[f32], out: &mut [u8]) {
        encode_nearest(self.kind, x, self.d, self.m, out);
    }
}

/// `sum_k w_k (x_k - dequant_k)^2` of one encoded block, in f64.
fn weighted_error(fmt: BlockFormat, block: &[u8], x: &[f32], w: &[f32], buf: &mut [f32]) -> f64 {
    dequantize_block(fmt, block, buf);
    x.iter()
        .zip(w)
        .zip(buf.iter())
        .map(|((&x, &w), &y)| f64::from(w) * (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

/// The levels `l_k` the grid scale `d` (and min `m`) would pick, as f64, for the
/// least-squares refit.
fn levels(kind: Kind, x: &[f32], d: f64, m: f64) -> impl Iterator<Item = f64> + '_ {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    x.iter().map(move |&v| match kind {
        Kind::Sym8 => round_away_f64(f64::from(v) * id).clamp(-128.0, 127.0),
        Kind::Sym4 => round_away_f64(f64::from(v) * id).clamp(-8.0, 7.0),
        Kind::Asym4 => round_away_f64((f64::from(v) - m) * id).clamp(0.0, 15.0),
    })
}

/// Weighted least-squares `(d, m)` for fixed levels: `m = 0` for the symmetric
/// kinds, or `None` if the system is singular.
fn refit(kind: Kind, x: &[f32], w: &[f32], d: f64, m: f64) -> Option<(f64, f64)> {
    let (mut sw, mut sl, mut sll, mut sx, mut slx) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for ((l, &xv), &wv) in levels(kind, x, d, m).zip(x).zip(w) {
        let (xv, wv) = (f64::from(xv), f64::from(wv));
        sw += wv;
        sl += wv * l;
        sll += wv * l * l;
        sx += wv * xv;
        slx += wv * l * xv;
    }
    if kind == Kind::Asym4 {
        let det = sll * sw - sl * sl;
        (det > 0.0).then(|| ((slx * sw - sl * sx) / det, (sll * sx - sl * slx) / det))
    } else {
        (sll > 0.0).then(|| (slx / sll, 0.0))
    }
}

/// Replace the reference block in `out` by the candidate of least weighted error
/// (ties keep the earlier candidate, so the reference wins them).
fn search_block(fmt: BlockFormat, kind: Kind, x: &[f32], w: &[f32], out: &mut [u8]) {
    let mut buf = vec![0f32; x.len()];
    let mut cand = vec![0u8; out.len()];
    let mut best = weighted_error(fmt, out, x, w, &mut buf);
    if best == 0.0 || !best.is_finite() {
        return;
    }
    // The reference scale (and min) the grid is centred on, and its level count.
    let (min, max) = x.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| {
        (lo.min(f64::from(v)), hi.max(f64::from(v)))
    });
    let (d0, m0, nmax) = match kind {
        Kind::Sym8 => (min.abs().max(max.abs()) / 127.0, 0.0, 127.0),
        Kind::Sym4 => {
            let signed = if max.abs() > min.abs() { max } else { min };
            (signed / -8.0, 0.0, 8.0)
        }
        Kind::Asym4 => ((max - min) / 15.0, min, 15.0),
    };
    if d0 == 0.0 || !d0.is_finite() {
        return;
    }
    for step in -9..=9 {
        let d = d0 * nmax / (nmax + 0.1 * f64::from(step));
        let refitted = refit(kind, x, w, d, m0);
        for (cd, cm) in std::iter::once((d, m0)).chain(refitted) {
            encode_nearest(kind, x, cd as f32, cm as f32, &mut cand);
            let e = weighted_error(fmt, &cand, x, w, &mut buf);
            if e < best {
                best = e;
                out.copy_from_slice(&cand);
            }
        }
    }
}

/// Quantize `src` (a whole number of `fmt` blocks) into `dst`
/// (`src.len() / block_elems * block_bytes` bytes).
///
/// `importance`, if given, holds one non-negative weight per column and is
/// repeated along `src`: its length must be a multiple of the block size that
/// divides `src.len()` (one row's `K` weights for a whole `[N, K]` matrix, or
/// exactly `src.len()` weights). With it, each block's scale minimises the
/// weighted squared error (see the module docs); without it the result is ggml's
/// reference quantization.
pub fn quantize_into(
    fmt: BlockFormat,
    src: &[f32],
    importance: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<(), IrError> {
    let kind = kind(fmt).ok_or_else(|| {
        IrError::DTypeMismatch(format!("egret has no quantizer for {}", fmt.name()))
    })?;
    let (g, bb) = (fmt.block_elems(), fmt.block_bytes());
    if !src.len().is_multiple_of(g) || dst.len() != src.len() / g * bb {
        return Err(IrError::ShapeMismatch(format!(
            "{} floats into {} bytes of {}: need whole blocks of {g} and {bb} bytes per block",
            src.len(),
            dst.len(),
            fmt.name()
        )));
    }
    if let Some(w) = importance {
        if w.is_empty() || !w.len().is_multiple_of(g) || !src.len().is_multiple_of(w.len()) {
            return Err(IrError::ShapeMismatch(format!(
                "{} importance weights for {} values of {}: need a multiple of {g} dividing the values",
                w.len(),
                src.len(),
                fmt.name()
            )));
        }
        if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(IrError::ShapeMismatch(format!(
                "importance weights must be finite and non-negative, found {bad}"
            )));
        }
    }
    for (i, (x, out)) in src
        .chunks_exact(g)
        .zip(dst.chunks_exact_mut(bb))
        .enumerate()
    {
        reference_block(kind, x, out);
        if let Some(w) = importance {
            let at = (i * g) % w.len();
            search_block(fmt, kind, x, &w[at..at + g], out);
        }
    }
    Ok(())
}

/// Quantize an f32 tensor of shape `[.., K]` (blocks along `K`) to `fmt`, with
/// optional per-column importance weights (`K` of them). The result has the same
/// logical shape and dtype `Block(fmt)`.
pub fn quantize(
    t: &Tensor,
    fmt: BlockFormat,
    importance: Option<&[f32]>,
) -> Result<Tensor, IrError> {
    let src = t.as_slice::<f32>()?;
    let k = t
        .shape()
        .last()
        .copied()
        .ok_or_else(|| IrError::ShapeMismatch("cannot block-quantize a scalar".to_string()))?;
    if let Some(w) = importance {
        if w.len() != k {
            return Err(IrError::ShapeMismatch(format!(
                "{} importance weights for rows of {k}",
                w.len()
            )));
        }
    }
    let dtype = DType::Block(fmt);
    let bytes = dtype.storage_bytes(t.shape()).ok_or_else(|| {
        IrError::ShapeMismatch(format!(
            "shape {:?} is not whole {} blocks of {} along the last axis",
            t.shape(),
            fmt.name(),
            fmt.block_elems()
        ))
    })?;
    let mut dst = vec![0u8; bytes];
    if !src.is_empty() {
        quantize_into(fmt, src, importance, &mut dst)?;
    }
    Tensor::from_bytes(dtype, t.shape().to_vec(), &dst)
}

/// Symmetric per-row int8 of an `[n, k]` row-major matrix: `scale[r] =
/// amax_r / 127` (an all-zero row gets scale 0 and all-zero q) and `q =
/// round-half-away(x / scale)` clamped to `[-127, 127]`.
///
/// The caller checks `w.len() == n * k`; rows `w` does not hold are not produced
/// (the outputs then hold fewer than `n * k` / `n` entries), so a wrong length can
/// never panic or over-allocate.
pub fn quantize_rows_i8(w: &[f32], n: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    if k == 0 {
        return (Vec::new(), vec![0.0; n]);
    }
    let rows = n.min(w.len() / k);
    let mut q = Vec::with_capacity(rows * k);
    let mut scale = Vec::with_capacity(rows);
    for row in w.chunks_exact(k).take(rows) {
        let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let s = amax / 127.0;
        scale.push(s);
        q.extend(row.iter().map(|&v| {
            if s == 0.0 {
                0
            } else {
                round_away(v / s).clamp(-127.0, 127.0) as i8
            }
        }));
    }
    (q, scale)
}

#[cfg(test)]
mod tests;
