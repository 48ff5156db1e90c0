//! Matrix products with block-quantized, f16 and int8 weights, without ever
//! dequantizing a whole matrix (the kernels of `egret::MatMulBlocks` and
//! `egret::MatMulInt8`).
//!
//! * GEMV (fewer than [`GEMM_MIN_ROWS`] rows of `x`): one dot product per output
//!   straight on the packed weight row (Q8_0: int8 x f32 per block; Q4_0 / Q4_1 /
//!   int4 groups: nibbles x f32 per block, the offset or min folded in through
//!   the block sums of `x`; int8 rows: int8 x f32 times the row scale; any other
//!   format dequantizes one row into scratch). Outputs are split over threads.
//! * GEMM: tiles of weight rows (about [`TILE_FLOATS`] values) dequantized once
//!   per call into a per-thread f32 scratch (AVX2 widening for int8, Q8_0 and
//!   the int4 groups), then register-blocked dot products of [`MR`] rows of `x`
//!   by [`NR`] weight rows at a time, so every weight load serves `MR` rows of
//!   `x` and every `x` load `NR` weight rows; from [`SGEMM_MIN_ROWS`] rows of
//!   `x`, the tile goes through the `gemm` crate's packed microkernel instead.
//!   Tiles are split over threads; no allocation per tile.
//! * W8A8 ([`matmul_w8a8`]): each row of `x` quantized per token to int8, exact
//!   integer dots. GEMV: int8 x int8 (AVX2: sign-extend to i16 and
//!   `_mm256_madd_epi16`); GEMM: the same register tiles on the integer values
//!   held in f32, which is exact (products at most 127², lanes flushed to i64
//!   every [`EXACT_CHUNK`] elements, before a partial sum could pass 2^24).
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
use egret_ir::blocks::dequantize_into;
use egret_ir::sparse::{SparseValuesRef, SparseView};
use egret_ir::{BlockFormat, DType};
use rayon::prelude::*;

/// Rows of `x` from which the panel GEMM path is used instead of per-row dots.
pub const GEMM_MIN_ROWS: usize = 8;
/// f32 values of weights dequantized per GEMM tile (96 KiB: the tile stays in L2).
pub const TILE_FLOATS: usize = 24 * 1024;
/// Rows of `x` from which the float GEMM tiles are multiplied by the packed
/// sgemm microkernel (the `gemm` crate) instead of the dot tiles.
pub const SGEMM_MIN_ROWS: usize = 64;
/// Rows of `x` per register tile.
pub const MR: usize = 4;
/// Weight rows per register tile.
pub const NR: usize = 3;
/// Elements after which exact (integer-valued) f32 lanes are flushed to i64:
/// each lane then holds at most `EXACT_CHUNK / 8 · 127²` < 2^24.
pub const EXACT_CHUNK: usize = 4096;
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
            // `is_x86_feature_detected!` confirmed AVX2, FMA and POPCNT.
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

    /// AVX2 + FMA (and POPCNT, which every AVX2 CPU has; the sparse rows use
    /// it), if this CPU has them.
    pub fn avx2() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("popcnt")
        {
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

    fn row_dot_q8(self, row: &[u8], x: &[f32]) -> f32 {
        dispatch!(self, row_dot_q8(row, x))
    }

    fn row_dot_nibbles(
        self,
        row: &[u8],
        x: &[f32],
        xsum: &[f32],
        group: usize,
        head: usize,
        asym: bool,
    ) -> f32 {
        dispatch!(self, row_dot_nibbles(row, x, xsum, group, head, asym))
    }

    fn widen_i8(self, q: &[u8], out: &mut [f32]) {
        dispatch!(self, widen_i8(q, out))
    }

    fn tile(self, xs: &[&[f32]], ws: &[&[f32]], k: usize, exact: bool, out: &mut Tile) {
        dispatch!(self, tile(xs, ws, k, exact, out))
    }

    fn dot_i8_i8(self, a: &[i8], b: &[i8]) -> i64 {
        dispatch!(self, dot_i8_i8(a, b))
    }

    fn sparse_dot(self, mask: &[u8], values: SparseValuesRef<'_>, start: usize, x: &[f32]) -> f32 {
        dispatch!(self, sparse_dot(mask, values, start, x))
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
    /// A row-pruned matrix in the bitmap format of [`egret_ir::sparse`]
    /// (validated when the view was built): f32 values, or int8 with row scales.
    Sparse(SparseView<'a>),
}

/// The results of one register tile.
type Tile = [[f64; NR]; MR];

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
    /// Bitmap-sparse rows: only the kept values are read.
    Sparse,
}

impl Weight<'_> {
    fn row_dot_kind(&self) -> RowDot {
        let fmt = match self {
            Weight::Int8 { .. } => return RowDot::Int8,
            Weight::Sparse(_) => return RowDot::Sparse,
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
            Weight::Sparse(v) => {
                if (v.n(), v.k()) != (n, k) {
                    bail!("sparse weights of [{}, {}] for [{n}, {k}]", v.n(), v.k());
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
            Weight::Sparse(_) => bail!("sparse weights have no packed rows"),
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
            Weight::Sparse(_) => bail!("sparse weights have no packed rows"),
        }
        Ok(())
    }

    /// Row `r` into `out` (`k` values) for the GEMM tiles: dequantized, except
    /// int8 rows, which are widened without their scale (applied per output);
    /// sparse rows are decompressed the same way (zeros where dropped).
    fn tile_row(&self, isa: Isa, r: usize, out: &mut [f32]) -> Result<()> {
        if let Weight::Sparse(v) = self {
            v.row_unscaled_into(r, out);
            return Ok(());
        }
        let row = self.packed_row(r, out.len())?;
        #[cfg(target_arch = "x86_64")]
        if isa.avx2 {
            if let Weight::Packed {
                dtype: DType::Block(_),
                ..
            } = self
            {
                match self.row_dot_kind() {
                    RowDot::Q8 => {
                        // SAFETY: `avx2` is only set by `Isa::avx2`, after
                        // `is_x86_feature_detected!` confirmed AVX2 and FMA.
                        unsafe { avx2::dequant_q8(row, out) };
                        return Ok(());
                    }
                    RowDot::Nibbles { group, head, asym } => {
                        // SAFETY: as above.
                        unsafe { avx2::dequant_nibbles(row, out, group, head, asym) };
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
        match self {
            Weight::Int8 { .. } => {
                isa.widen_i8(row, out);
                Ok(())
            }
            Weight::Packed { .. } | Weight::Sparse(_) => self.dequant_row(r, out),
        }
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
        if let Weight::Sparse(v) = self {
            let dot = isa.sparse_dot(v.mask_row(r), v.values(), v.row_start(r), x);
            return Ok(dot * v.row_scale(r));
        }
        let row = self.packed_row(r, k)?;
        Ok(match kind {
            RowDot::Q8 => isa.row_dot_q8(row, x),
            RowDot::Nibbles { group, head, asym } => {
                isa.row_dot_nibbles(row, x, xsum, group, head, asym)
            }
            RowDot::Int8 => {
                let s = match self {
                    Weight::Int8 { scale, .. } => scale.get(r).copied().unwrap_or(0.0),
                    Weight::Packed { .. } | Weight::Sparse(_) => 1.0,
                };
                s * isa.dot_i8_f32(row, x)
            }
            RowDot::Sparse => bail!("sparse rows are read above"),
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
        let fill = |r: usize, row: &mut [f32]| w.tile_row(isa, r, row);
        match w {
            Weight::Int8 { scale, .. } => {
                let finish = |_: usize, r: usize, v: f64| {
                    v as f32 * scale.get(r).copied().unwrap_or(0.0) + bias_at(bias, r)
                };
                gemm_tiles(isa, x, m, k, n, false, &fill, &finish, out)
            }
            Weight::Sparse(sv) => {
                let finish =
                    |_: usize, r: usize, v: f64| v as f32 * sv.row_scale(r) + bias_at(bias, r);
                gemm_tiles(isa, x, m, k, n, false, &fill, &finish, out)
            }
            Weight::Packed { .. } => {
                let finish = |_: usize, r: usize, v: f64| v as f32 + bias_at(bias, r);
                gemm_tiles(isa, x, m, k, n, false, &fill, &finish, out)
            }
        }
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

thread_local! {
    /// Per-thread scratch of the GEMM tiles (dequantized weight rows).
    static TILE_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The output matrix, written by tiles over disjoint column ranges.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
impl OutPtr {
    /// The pointer (a method, so closures capture the whole `OutPtr`).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: the tasks holding an `OutPtr` write disjoint elements (see `gemm_tiles`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// `out[i, r] = finish(i, r, xs[i] · row(r))` for all `m` rows of `xs [m, k]` and
/// `n` weight rows, where `fill(r, buf)` writes weight row `r` (`k` values) to
/// `buf`. The weight rows are split into tiles over threads; each tile is filled
/// once into per-thread scratch and multiplied by every row of `x` in register
/// tiles of [`MR`] x [`NR`]. With `exact`, all values are integers of magnitude
/// at most 127 and the dots exact.
#[allow(clippy::too_many_arguments)]
fn gemm_tiles(
    isa: Isa,
    xs: &[f32],
    m: usize,
    k: usize,
    n: usize,
    exact: bool,
    fill: &(dyn Fn(usize, &mut [f32]) -> Result<()> + Sync),
    finish: &(dyn Fn(usize, usize, f64) -> f32 + Sync),
    out: &mut [f32],
) -> Result<()> {
    if xs.len() != m * k || out.len() != m * n || k == 0 {
        bail!("gemm tiles: bad lengths");
    }
    // Weight rows per tile: about TILE_FLOATS values, a multiple of NR, and
    // enough tiles to keep every thread busy.
    let threads = rayon::current_num_threads().max(1);
    let by_cache = (TILE_FLOATS / k).max(NR);
    let by_threads = n.div_ceil(4 * threads);
    // The sgemm path wants whole 16-column micro-panels (48 = lcm(NR, 16)).
    let step = if !exact && m >= SGEMM_MIN_ROWS {
        48
    } else {
        NR
    };
    let nt = (by_cache.min(by_threads) / step * step).max(step);
    let optr = OutPtr(out.as_mut_ptr());
    (0..n.div_ceil(nt)).into_par_iter().try_for_each(|t| {
        let r0 = t * nt;
        let rows = nt.min(n - r0);
        TILE_SCRATCH.with(|cell| -> Result<()> {
            let mut buf = cell.borrow_mut();
            if buf.len() < rows * k {
                buf.resize(rows * k, 0.0);
            }
            let buf = &mut buf[..rows * k];
            for (j, row) in buf.chunks_exact_mut(k).enumerate() {
                fill(r0 + j, row)?;
            }
            if !exact && m >= SGEMM_MIN_ROWS {
                // Many rows of x: the packed sgemm microkernel beats the dot
                // tiles; single-threaded here, the tiles are the parallelism.
                // SAFETY: C[m, rows] lies at column offset `r0` of `out [m, n]`
                // (row stride `n`, `r0 + rows <= n`), columns disjoint from every
                // other tile's; A = xs [m, k] (row stride k) and B[kk][j] =
                // buf[j * k + kk] cover exactly their slices.
                unsafe {
                    gemm::gemm(
                        m,
                        rows,
                        k,
                        optr.ptr().add(r0),
                        1,
                        n as isize,
                        false,
                        xs.as_ptr(),
                        1,
                        k as isize,
                        buf.as_ptr(),
                        k as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for i in 0..m {
                    for r in r0..r0 + rows {
                        // SAFETY: `i * n + r < m * n`; this tile's columns only.
                        unsafe {
                            let o = optr.ptr().add(i * n + r);
                            *o = finish(i, r, f64::from(*o));
                        }
                    }
                }
                return Ok(());
            }
            let mut res: Tile = [[0.0; NR]; MR];
            let mut xr: [&[f32]; MR] = [&[]; MR];
            let mut wr: [&[f32]; NR] = [&[]; NR];
            for i0 in (0..m).step_by(MR) {
                let mr = MR.min(m - i0);
                for (a, x) in xr.iter_mut().take(mr).enumerate() {
                    *x = &xs[(i0 + a) * k..(i0 + a + 1) * k];
                }
                for b0 in (0..rows).step_by(NR) {
                    let nr = NR.min(rows - b0);
                    for (b, w) in wr.iter_mut().take(nr).enumerate() {
                        *w = &buf[(b0 + b) * k..(b0 + b + 1) * k];
                    }
                    isa.tile(&xr[..mr], &wr[..nr], k, exact, &mut res);
                    for (a, resr) in res.iter().take(mr).enumerate() {
                        for (b, &v) in resr.iter().take(nr).enumerate() {
                            let (i, r) = (i0 + a, r0 + b0 + b);
                            let y = finish(i, r, v);
                            // SAFETY: `i < m` and `r < n`, so the index is within
                            // `out` (`m * n` values, checked above), which outlives
                            // this parallel loop; tile `t` writes only the columns
                            // `r0..r0 + rows`, disjoint from every other tile's.
                            unsafe { *optr.ptr().add(i * n + r) = y };
                        }
                    }
                }
            }
            Ok(())
        })
    })
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
    let quant = |xr: &[f32]| {
        let sx = xr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
        let q = move |v: f32| {
            if sx == 0.0 {
                0
            } else {
                (v / sx).round().clamp(-127.0, 127.0) as i8
            }
        };
        (sx, q)
    };
    if m >= GEMM_MIN_ROWS && k > 0 {
        // Integer values held exactly in f32: one tile path for all formats.
        let mut qx = vec![0f32; m * k];
        let mut sxs = vec![0f32; m];
        for ((xr, qr), sx) in x.chunks_exact(k).zip(qx.chunks_exact_mut(k)).zip(&mut sxs) {
            let (s, q) = quant(xr);
            *sx = s;
            for (o, &v) in qr.iter_mut().zip(xr) {
                *o = f32::from(q(v));
            }
        }
        let w = Weight::Int8 { q, scale };
        let fill = |r: usize, row: &mut [f32]| w.tile_row(isa, r, row);
        let finish = |i: usize, r: usize, v: f64| {
            let s = scale.get(r).copied().unwrap_or(0.0);
            v as f32 * sxs[i] * s + bias_at(bias, r)
        };
        return gemm_tiles(isa, &qx, m, k, n, true, &fill, &finish, out);
    }
    let mut qx = vec![0i8; k];
    for (i, orow) in out.chunks_exact_mut(n).enumerate() {
        let xr = x.get(i * k..(i + 1) * k).unwrap_or(&[]);
        let (sx, quant) = quant(xr);
        for (o, &v) in qx.iter_mut().zip(xr) {
            *o = quant(v);
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
mod sparse_tests;
#[cfg(test)]
mod tests;
