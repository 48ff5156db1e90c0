//! Scaled dot-product attention core, generic over the working precision.
//!
//! Per `(batch, q_head)` pair it computes `softmax(softcap(scale·Q·Kᵀ) + bias)·V`
//! with two strided GEMMs, processing query rows in blocks so the score buffer
//! stays small. The bias combines an optional mask (bool or additive, broadcast
//! to `(batch, q_heads, q_seq, mask_width)` and treated as masked beyond its
//! width), the causal mask and the per-batch `nonpad_kv_seqlen`.
//!
//! Causal masking with a KV cache: query row `i` (0-based within this call) may
//! see key `j` (0-based over past + new keys) iff `j <= past_len + i`, i.e. the
//! queries are the *last* `q_seq` positions of the sequence. With a causal mask
//! and no requested `qk_matmul_output`, columns every row of a block masks are
//! never computed.

use super::workprec::{gemm, Mat, Real};
use crate::bail;
use crate::error::Result;
use rayon::prelude::*;

/// Query rows processed together (bounds the score buffer to `ROWS × total_seq`).
const ROWS: usize = 64;

/// Heads run on several threads once a call has this many multiply-adds.
const PARALLEL_WORK: usize = 1 << 16;

/// A 4D `(batch, head, seq, head_size)` array behind strides (head_size stride 1).
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a, W> {
    /// Backing elements.
    pub data: &'a [W],
    /// Batch stride.
    pub sb: usize,
    /// Head stride.
    pub sh: usize,
    /// Sequence stride.
    pub ss: usize,
}

impl<'a, W> Heads<'a, W> {
    /// The contiguous `(batch, heads, seq, size)` layout.
    pub fn bhsd(data: &'a [W], heads: usize, seq: usize, size: usize) -> Heads<'a, W> {
        Heads {
            data,
            sb: heads * seq * size,
            sh: seq * size,
            ss: size,
        }
    }

    /// The contiguous `(batch, seq, heads · size)` layout of 3D inputs.
    pub fn bsd(data: &'a [W], heads: usize, seq: usize, size: usize) -> Heads<'a, W> {
        Heads {
            data,
            sb: seq * heads * size,
            sh: size,
            ss: heads * size,
        }
    }

    /// Offset of row `s` of head `(b, h)`.
    pub fn at(&self, b: usize, h: usize, s: usize) -> usize {
        b * self.sb + h * self.sh + s * self.ss
    }

    /// The rows `s..` of head `(b, h)` as a matrix of `seq × size` (or its
    /// transpose when `t`).
    fn mat(&self, b: usize, h: usize, s: usize, t: bool) -> Result<Mat<'a, W>> {
        let off = self.at(b, h, s);
        let data = self
            .data
            .get(off..)
            .ok_or_else(|| crate::error::RuntimeError::msg("attention operand too short"))?;
        let (rs, cs) = if t { (1, self.ss) } else { (self.ss, 1) };
        Ok(Mat { data, rs, cs })
    }
}

/// The mask's values.
#[derive(Clone, Copy, Debug)]
pub enum MaskData<'a, W> {
    /// `false` = masked out.
    Bool(&'a [bool]),
    /// Added to the scores.
    Add(&'a [W]),
}

/// An attention mask broadcast to `(batch, q_heads, q_seq, width)`.
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a, W> {
    /// The values.
    pub data: MaskData<'a, W>,
    /// Strides for batch, head and query row (0 where broadcast).
    pub strides: [usize; 3],
    /// Stride of the key axis (0 where broadcast).
    pub key_stride: usize,
    /// Keys the mask covers; keys beyond it are masked out.
    pub width: usize,
}

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads (divides `q_heads`).
    pub kv_heads: usize,
    /// Query sequence length.
    pub q_seq: usize,
    /// Past keys (from the cache).
    pub past: usize,
    /// Past plus new keys.
    pub total: usize,
    /// Q/K head size.
    pub dk: usize,
    /// V head size.
    pub dv: usize,
}

/// Everything besides the operands.
#[derive(Clone, Debug)]
pub struct Options<W> {
    /// Multiplies `Q·Kᵀ`.
    pub scale: W,
    /// `> 0`: scores become `softcap·tanh(scores / softcap)` before the bias.
    pub softcap: W,
    /// Mask keys after each query's position (see the module docs).
    pub causal: bool,
    /// Per batch, keys at or after this index are masked.
    pub nonpad: Option<Vec<usize>>,
    /// Which stage `qk_matmul_output` captures (ONNX reference semantics):
    /// 0/1 scaled and softcapped scores, 2 plus the bias, 3 the softmax.
    pub qk_mode: i64,
}

/// The outputs being written: `Y` (through its layout) and optionally the
/// `(batch, q_heads, q_seq, total)` `qk_matmul_output`.
pub struct Out<'a, W> {
    /// `Y` elements.
    pub y: &'a mut [W],
    /// `Y`'s layout (head size `dv`).
    pub y_layout: Heads<'a, ()>,
    /// The captured scores, if requested.
    pub qk: Option<&'a mut [W]>,
}

/// Run attention. `k`/`v` hold all (past + new) keys/values, as
/// `(batch, kv_heads, total, dk|dv)` views.
pub fn attention<W: Real>(
    d: Dims,
    q: Heads<'_, W>,
    k: Heads<'_, W>,
    v: Heads<'_, W>,
    mask: Option<&Mask<'_, W>>,
    opt: &Options<W>,
    out: Out<'_, W>,
) -> Result<()> {
    if d.kv_heads == 0 || !d.q_heads.is_multiple_of(d.kv_heads) {
        bail!(
            "{} query heads cannot share {} key/value heads",
            d.q_heads,
            d.kv_heads
        );
    }
    if let Some(n) = &opt.nonpad {
        if n.len() != d.batch {
            bail!(
                "nonpad_kv_seqlen has {} entries for batch {}",
                n.len(),
                d.batch
            );
        }
    }
    let Out {
        y,
        y_layout,
        mut qk,
    } = out;
    let pairs: Vec<(usize, usize)> = (0..d.batch)
        .flat_map(|b| (0..d.q_heads).map(move |h| (b, h)))
        .collect();
    let want_qk = qk.is_some();
    let run = |&(b, h): &(usize, usize)| head(d, b, h, q, k, v, mask, opt, want_qk);
    let work = d.batch * d.q_heads * d.q_seq * d.total * (d.dk + d.dv);
    let heads: Vec<Result<HeadOut<W>>> =
        if rayon::current_num_threads() > 1 && pairs.len() > 1 && work >= PARALLEL_WORK {
            pairs.par_iter().map(run).collect()
        } else {
            pairs.iter().map(run).collect()
        };
    for (&(b, h), out) in pairs.iter().zip(heads) {
        let out = out?;
        for (i, row) in out.y.chunks_exact(d.dv.max(1)).enumerate() {
            let yo = y_layout.at(b, h, i);
            y.get_mut(yo..yo + d.dv)
                .ok_or_else(|| crate::error::RuntimeError::msg("Y buffer too short"))?
                .copy_from_slice(row);
        }
        if let (Some(dst), Some(src)) = (qk.as_deref_mut(), out.qk) {
            let off = (b * d.q_heads + h) * d.q_seq * d.total;
            dst[off..off + src.len()].copy_from_slice(&src);
        }
    }
    Ok(())
}

/// One head's results: `Y` rows (`q_seq × dv`, contiguous) and, if asked
/// for, its `q_seq × total` captured scores.
struct HeadOut<W> {
    y: Vec<W>,
    qk: Option<Vec<W>>,
}

/// Attention for query head `h` of batch `b`.
#[allow(clippy::too_many_arguments)]
fn head<W: Real>(
    d: Dims,
    b: usize,
    h: usize,
    q: Heads<'_, W>,
    k: Heads<'_, W>,
    v: Heads<'_, W>,
    mask: Option<&Mask<'_, W>>,
    opt: &Options<W>,
    want_qk: bool,
) -> Result<HeadOut<W>> {
    let kvh = h / (d.q_heads / d.kv_heads);
    let mut y = vec![W::zero(); d.q_seq * d.dv];
    let mut qk = want_qk.then(|| vec![W::zero(); d.q_seq * d.total]);
    let mut scores = vec![W::zero(); ROWS.min(d.q_seq.max(1)) * d.total];
    for r0 in (0..d.q_seq).step_by(ROWS) {
        let rows = ROWS.min(d.q_seq - r0);
        // Keys any row of this block can see (all of them if the raw scores are wanted).
        let cols = if opt.causal && !want_qk {
            d.total.min(d.past + r0 + rows)
        } else {
            d.total
        };
        let s = &mut scores[..rows * d.total];
        gemm(
            rows,
            cols,
            d.dk,
            q.mat(b, h, r0, false)?,
            k.mat(b, kvh, 0, true)?,
            s,
            d.total,
            opt.scale,
            W::zero(),
        )?;
        let qk_rows = qk
            .as_deref_mut()
            .map(|buf| &mut buf[r0 * d.total..(r0 + rows) * d.total]);
        scores_to_probs(d, opt, mask, (b, h, r0), cols, s, qk_rows)?;
        gemm(
            rows,
            d.dv,
            cols,
            Mat {
                data: s,
                rs: d.total,
                cs: 1,
            },
            v.mat(b, kvh, 0, false)?,
            &mut y[r0 * d.dv..],
            d.dv,
            W::one(),
            W::zero(),
        )?;
    }
    Ok(HeadOut { y, qk })
}

/// Turn a block of raw scores (`rows × total`, first `cols` columns valid) into
/// probabilities in place: softcap, bias, softmax; capture `qk_matmul_output`.
fn scores_to_probs<W: Real>(
    d: Dims,
    opt: &Options<W>,
    mask: Option<&Mask<'_, W>>,
    (b, h, r0): (usize, usize, usize),
    cols: usize,
    s: &mut [W],
    mut qk: Option<&mut [W]>,
) -> Result<()> {
    let neg_inf = W::neg_infinity();
    let limit = opt.nonpad.as_ref().map_or(d.total, |n| n[b].min(d.total));
    for (r, row) in s.chunks_exact_mut(d.total).enumerate() {
        let row = &mut row[..cols];
        let i = r0 + r;
        if opt.softcap > W::zero() {
            for x in row.iter_mut() {
                *x = opt.softcap * (*x / opt.softcap).tanh();
            }
        }
        let mut qk_row = qk
            .as_deref_mut()
            .map(|buf| &mut buf[r * d.total..r * d.total + cols]);
        if opt.qk_mode <= 1 {
            if let Some(dst) = qk_row.as_deref_mut() {
                dst.copy_from_slice(row);
            }
        }
        if let Some(m) = mask {
            let base = b * m.strides[0] + h * m.strides[1] + i * m.strides[2];
            let w = m.width.min(cols);
            match m.data {
                MaskData::Bool(v) => {
                    for (j, x) in row[..w].iter_mut().enumerate() {
                        if !v.get(base + j * m.key_stride).copied().unwrap_or(false) {
                            *x = neg_inf;
                        }
                    }
                }
                MaskData::Add(v) => {
                    for (j, x) in row[..w].iter_mut().enumerate() {
                        *x = *x + v.get(base + j * m.key_stride).copied().unwrap_or(neg_inf);
                    }
                }
            }
            row[w..].fill(neg_inf);
        }
        if opt.causal {
            let first_hidden = (d.past + i + 1).min(cols);
            row[first_hidden..].fill(neg_inf);
        }
        if limit < cols {
            row[limit..].fill(neg_inf);
        }
        if opt.qk_mode == 2 {
            if let Some(dst) = qk_row.as_deref_mut() {
                dst.copy_from_slice(row);
            }
        }
        let max = row.iter().copied().fold(neg_inf, W::max);
        let sum = W::exp_shifted_sum(row, max);
        let inv = W::one() / sum;
        for x in row.iter_mut() {
            *x = *x * inv;
        }
        if opt.qk_mode == 3 {
            if let Some(dst) = qk_row {
                dst.copy_from_slice(row);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive reference: one head, causal with a past.
    #[test]
    fn causal_with_past_matches_naive() {
        let d = Dims {
            batch: 1,
            q_heads: 2,
            kv_heads: 1,
            q_seq: 3,
            past: 2,
            total: 5,
            dk: 4,
            dv: 3,
        };
        let q: Vec<f64> = (0..2 * 3 * 4)
            .map(|i| ((i * 7) % 11) as f64 * 0.1 - 0.5)
            .collect();
        let k: Vec<f64> = (0..5 * 4)
            .map(|i| ((i * 5) % 13) as f64 * 0.1 - 0.6)
            .collect();
        let v: Vec<f64> = (0..5 * 3)
            .map(|i| ((i * 3) % 7) as f64 * 0.2 - 0.4)
            .collect();
        let mut y = vec![0.0; 2 * 3 * 3];
        let opt = Options {
            scale: 0.5,
            softcap: 0.0,
            causal: true,
            nonpad: None,
            qk_mode: 0,
        };
        attention(
            d,
            Heads::bhsd(&q, 2, 3, 4),
            Heads::bhsd(&k, 1, 5, 4),
            Heads::bhsd(&v, 1, 5, 3),
            None,
            &opt,
            Out {
                y: &mut y,
                y_layout: Heads::bhsd(&[], 2, 3, 3),
                qk: None,
            },
        )
        .unwrap();
        for h in 0..2 {
            for i in 0..3 {
                let visible = 2 + i + 1;
                let s: Vec<f64> = (0..visible)
                    .map(|j| {
                        (0..4)
                            .map(|e| q[(h * 3 + i) * 4 + e] * k[j * 4 + e])
                            .sum::<f64>()
                            * 0.5
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for c in 0..3 {
                    let want: f64 = (0..visible)
                        .map(|j| (s[j] - m).exp() / z * v[j * 3 + c])
                        .sum();
                    let got = y[(h * 3 + i) * 3 + c];
                    assert!(
                        (got - want).abs() < 1e-12,
                        "h{h} i{i} c{c}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
