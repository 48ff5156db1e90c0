//! Matrix products with block-quantized, f16 and int8 weights, without ever
//! dequantizing a whole matrix (the kernels of `egret::MatMulBlocks` and
//! `egret::MatMulInt8`).
//!
//! * GEMV (fewer than [`GEMM_MIN_ROWS`] rows of `x`): one dot product per output
//!   straight on the packed weight row (Q8_0: int8 x f32 per block; Q4_0 / Q4_1 /
//!   int4 groups: nibbles x f32 per block, the offset or min folded in through
//!   the block sums of `x`; int8 rows: int8 x f32 times the row scale; any other
//!   format dequantizes one row into scratch). Outputs are split over threads.
//! * GEMM: panels of at most [`PANEL_ROWS`] weight rows dequantized into f32
//!   scratch and multiplied through the fast sgemm ([`crate::kernels::gemm`]),
//!   panels split over threads.
//! * W8A8 ([`matmul_w8a8`]): each row of `x` quantized per token to int8, exact
//!   int8 x int8 dots (AVX2: sign-extend to i16 and `_mm256_madd_epi16`).
//!
//! The inner products run with AVX2 + FMA when the CPU has them
//! ([`Isa::best`], `is_x86_feature_detected!`) and portably otherwise; both
//! compute the same sums, in different orders. Every length is checked up front:
//! a mismatch is an error, never a panic. All threading uses the current rayon
//! pool, i.e. the interpreter's.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;

use crate::bail;
use crate::error::Result;
use crate::kernels::gemm::sgemm_strided;
use egret_ir::blocks::{dequantize_into, f16_to_f32};
use egret_ir::{BlockFormat, DType};
use rayon::prelude::*;

/// Rows of `x` from which the panel GEMM path is used instead of per-row dots.
pub const GEMM_MIN_ROWS: usize = 8;
/// Weight rows dequantized per GEMM panel.
pub const PANEL_ROWS: usize = 64;
/// Outputs per GEMV task.
const GEMV_CHUNK: usize = 32;

/// Which inner-product implementation the kernels use. Only [`Isa::avx2`] can
/// select AVX2, and only on a CPU that has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa {
    avx2: bool,
}

/// Call the AVX2 version of `$f` when `$isa` selected it, else the portable one.
macro_rules! dispatch {
    ($isa:expr, $f:ident($($a:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        if $isa.avx2 {
            // SAFETY: `avx2` is only set by `Isa::avx2`, after
            // `is_x86_feature_detected!` confirmed AVX2 and FMA.
            return unsafe { avx2::$f($($a),*) };
        }
        portable::$f($($a),*)
    }};
}

impl Isa {
    /// The portable (scalar) implementation, available everywhere.
    pub fn portable() -> Isa {
        Isa { avx2: false }
    }

    /// AVX2 + FMA, if this CPU has both.
    pub fn avx2() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(Isa { avx2: true });
        }
        None
    }

    /// The fastest implementation this CPU supports.
    pub fn best() -> Isa {
        Isa::avx2().unwrap_or_else(Isa::portable)
    }

    fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        dispatch!(self, dot_f32(a, b))
    }

    fn dot_i8_f32(self, q: &[u8], x: &[f32]) -> f32 {
        dispatch!(self, dot_i8_f32(q, x))
    }

    fn dot_nibbles(self, qs: &[u8], x: &[f32]) -> f32 {
        dispatch!(self, dot_nibbles(qs, x))
    }

    fn dot_i8_i8(self, a: &[i8], b: &[i8]) -> i64 {
        dispatch!(self, dot_i8_i8(a, b))
    }
}

/// A weight matrix of `n` rows of `k` (output channels x input features).
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    /// Rows packed in `dtype`: a block format (blocks along `k`), or the
    /// little-endian bytes of f16, bf16 or f32.
    Packed {
        /// The stored type.
        dtype: DType,
        /// `n` rows of `dtype.storage_bytes(&[k])` bytes.
        bytes: &'a [u8],
    },
    /// Per-row symmetric int8: row `r` is `q[r] * scale[r]`.
    Int8 {
        /// `n * k` quantized values.
        q: &'a [i8],
        /// `n` row scales.
        scale: &'a [f32],
    },
}

/// How a GEMV reads one weight row.
#[derive(Clone, Copy)]
enum RowDot {
    /// Q8_0 blocks.
    Q8,
    /// Int4 groups of `group` with a `head`-byte header: f16 `d`, plus f16 `m`
    /// when asymmetric (else the offset is `-8 d`).
    Nibbles {
        group: usize,
        head: usize,
        asym: bool,
    },
    /// Dequantize the row into scratch, then an f32 dot.
    Dense,
    /// Int8 rows with a scale.
    Int8,
}

impl Weight<'_> {
    fn row_dot_kind(&self) -> RowDot {
        let fmt = match self {
            Weight::Int8 { .. } => return RowDot::Int8,
            Weight::Packed {
                dtype: DType::Block(f),
                ..
            } => *f,
            Weight::Packed { .. } => return RowDot::Dense,
        };
        let (head, asym) = match fmt {
            BlockFormat::Q8_0 => return RowDot::Q8,
            BlockFormat::Q4_0 | BlockFormat::I4S64 | BlockFormat::I4S128 => (2, false),
            BlockFormat::Q4_1 | BlockFormat::I4A64 | BlockFormat::I4A128 => (4, true),
            _ => return RowDot::Dense,
        };
        RowDot::Nibbles {
            group: fmt.block_elems(),
            head,
            asym,
        }
    }

    /// Check the weight holds `n` rows of `k`.
    fn check(&self, n: usize, k: usize) -> Result<()> {
        match *self {
            Weight::Packed { dtype, bytes } => {
                if !matches!(
                    dtype,
                    DType::Block(_) | DType::F16 | DType::BF16 | DType::F32
                ) {
                    bail!("weights must be a block format, f16, bf16 or f32, not {dtype}");
                }
                let want = dtype.storage_bytes(&[n, k]);
                if want != Some(bytes.len()) {
                    bail!(
                        "{} bytes of {dtype} weights for [{n}, {k}] ({})",
                        bytes.len(),
                        want.map_or("K is not a whole number of blocks".into(), |w| format!(
                            "{w} expected"
                        ))
                    );
                }
            }
            Weight::Int8 { q, scale } => {
                if Some(q.len()) != n.checked_mul(k) || scale.len() != n {
                    bail!(
                        "int8 weights of {} values and {} scales for [{n}, {k}]",
                        q.len(),
                        scale.len()
                    );
                }
            }
        }
        Ok(())
    }

    /// Bytes (or values) of row `r` of `k`.
    fn packed_row(&self, r: usize, k: usize) -> Result<&[u8]> {
        let (dtype, bytes) = match *self {
            Weight::Packed { dtype, bytes } => (dtype, bytes),
            Weight::Int8 { q, .. } => (DType::I8, bytemuck::cast_slice(q)),
        };
        let rb = dtype.storage_bytes(&[k]).unwrap_or(0);
        match bytes.get(r * rb..(r + 1) * rb) {
            Some(row) => Ok(row),
            None => bail!("weight row {r} out of range"),
        }
    }

    /// Row `r` dequantized to f32 into `out` (`k` values).
    fn dequant_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        let row = self.packed_row(r, out.len())?;
        match *self {
            Weight::Packed { dtype, .. } => dequantize_into(dtype, row, out)?,
            Weight::Int8 { scale, .. } => {
                let s = scale.get(r).copied().unwrap_or(0.0);
                for (o, &q) in out.iter_mut().zip(row) {
                    *o = f32::from(q as i8) * s;
                }
            }
        }
        Ok(())
    }

    /// `x · row r` (`xsum`: per-group sums of `x` for the int4 kinds).
    fn row_dot(
        &self,
        isa: Isa,
        kind: RowDot,
        r: usize,
        x: &[f32],
        xsum: &[f32],
        scratch: &mut [f32],
    ) -> Result<f32> {
        let k = x.len();
        let row = self.packed_row(r, k)?;
        let f16 = |b: &[u8], i: usize| f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
        Ok(match kind {
            RowDot::Q8 => row
                .chunks_exact(34)
                .zip(x.chunks_exact(32))
                .map(|(b, xb)| f16(b, 0) * isa.dot_i8_f32(&b[2..], xb))
                .sum(),
            RowDot::Nibbles { group, head, asym } => row
                .chunks_exact(head + group / 2)
                .zip(x.chunks_exact(group))
                .zip(xsum)
                .map(|((b, xb), s)| {
                    let d = f16(b, 0);
                    let offset = if asym { f16(b, 2) } else { -8.0 * d };
                    d * isa.dot_nibbles(&b[head..], xb) + offset * s
                })
                .sum(),
            RowDot::Int8 => {
                let s = match self {
                    Weight::Int8 { scale, .. } => scale.get(r).copied().unwrap_or(0.0),
                    Weight::Packed { .. } => 1.0,
                };
                s * isa.dot_i8_f32(row, x)
            }
            RowDot::Dense => {
                self.dequant_row(r, scratch)?;
                isa.dot_f32(scratch, x)
            }
        })
    }
}

/// Check `x [m, k]`, `bias [n]` and `out [m, n]` lengths.
fn check_io(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    out: &[f32],
) -> Result<()> {
    if Some(x.len()) != m.checked_mul(k) || Some(out.len()) != m.checked_mul(n) {
        bail!(
            "x has {} values for [{m}, {k}] and out {} for [{m}, {n}]",
            x.len(),
            out.len()
        );
    }
    if let Some(b) = bias {
        if b.len() != n {
            bail!("bias has {} values for {n} outputs", b.len());
        }
    }
    Ok(())
}

fn bias_at(bias: Option<&[f32]>, j: usize) -> f32 {
    bias.and_then(|b| b.get(j)).copied().unwrap_or(0.0)
}

/// `out[m, n] = x[m, k] · dequant(w)[n, k]ᵀ (+ bias)`, all row-major.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: Weight<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    check_io(x, m, k, n, bias, out)?;
    w.check(n, k)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for row in out.chunks_exact_mut(n) {
            for (j, o) in row.iter_mut().enumerate() {
                *o = bias_at(bias, j);
            }
        }
        return Ok(());
    }
    if m >= GEMM_MIN_ROWS {
        gemm_panels(x, m, k, w, n, bias, out)
    } else {
        gemv(isa, x, k, w, n, bias, out)
    }
}

fn gemv(
    isa: Isa,
    x: &[f32],
    k: usize,
    w: Weight<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let kind = w.row_dot_kind();
    let scratch_len = if matches!(kind, RowDot::Dense) { k } else { 0 };
    for (xr, orow) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        let xsum: Vec<f32> = match kind {
            RowDot::Nibbles { group, .. } => {
                xr.chunks_exact(group).map(|c| c.iter().sum()).collect()
            }
            _ => Vec::new(),
        };
        orow.par_chunks_mut(GEMV_CHUNK)
            .enumerate()
            .try_for_each_init(
                || vec![0f32; scratch_len],
                |scratch, (c, o)| -> Result<()> {
                    for (i, y) in o.iter_mut().enumerate() {
                        let r = c * GEMV_CHUNK + i;
                        *y = w.row_dot(isa, kind, r, xr, &xsum, scratch)? + bias_at(bias, r);
                    }
                    Ok(())
                },
            )?;
    }
    Ok(())
}

fn gemm_panels(
    x: &[f32],
    m: usize,
    k: usize,
    w: Weight<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let panels: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(PANEL_ROWS))
        .into_par_iter()
        .map(|p| -> Result<(usize, Vec<f32>)> {
            let r0 = p * PANEL_ROWS;
            let rows = PANEL_ROWS.min(n - r0);
            let mut panel = vec![0f32; rows * k];
            for (i, pr) in panel.chunks_exact_mut(k).enumerate() {
                w.dequant_row(r0 + i, pr)?;
            }
            // C[m, rows] = X[m, k] · P[rows, k]ᵀ: B[kk][j] = P[j][kk].
            let mut c = vec![0f32; m * rows];
            sgemm_strided(
                m, rows, k, x, k as isize, 1, &panel, 1, k as isize, &mut c, 1.0, 0.0,
            );
            Ok((r0, c))
        })
        .collect::<Result<_>>()?;
    for (r0, c) in panels {
        let rows = c.len() / m;
        for (orow, crow) in out.chunks_exact_mut(n).zip(c.chunks_exact(rows)) {
            for (j, (o, v)) in orow[r0..r0 + rows].iter_mut().zip(crow).enumerate() {
                *o = v + bias_at(bias, r0 + j);
            }
        }
    }
    Ok(())
}

/// W8A8: `out[m, n]` with each row of `x` quantized per token (`sx = amax / 127`,
/// `qx = round-half-away(x / sx)` clamped to ±127), exact int8 dots with `q`, and
/// `y = acc · sx · scale[r] (+ bias)`. A row of `x` that is all zero gives the bias.
#[allow(clippy::too_many_arguments)]
pub fn matmul_w8a8(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    q: &[i8],
    scale: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    check_io(x, m, k, n, bias, out)?;
    Weight::Int8 { q, scale }.check(n, k)?;
    if n == 0 {
        return Ok(());
    }
    let mut qx = vec![0i8; k];
    for (i, orow) in out.chunks_exact_mut(n).enumerate() {
        let xr = x.get(i * k..(i + 1) * k).unwrap_or(&[]);
        let sx = xr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
        for (o, &v) in qx.iter_mut().zip(xr) {
            *o = if sx == 0.0 {
                0
            } else {
                (v / sx).round().clamp(-127.0, 127.0) as i8
            };
        }
        let qx = &qx;
        orow.par_chunks_mut(GEMV_CHUNK)
            .enumerate()
            .for_each(|(c, o)| {
                for (i, y) in o.iter_mut().enumerate() {
                    let r = c * GEMV_CHUNK + i;
                    let acc = q
                        .get(r * k..(r + 1) * k)
                        .map_or(0, |wr| isa.dot_i8_i8(qx, wr));
                    let s = scale.get(r).copied().unwrap_or(0.0);
                    *y = acc as f32 * sx * s + bias_at(bias, r);
                }
            });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
