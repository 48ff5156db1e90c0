//! f32 GEMM against a matrix packed once, for weights.
//!
//! The `gemm` crate repacks its right-hand operand on every call. For a
//! model's weights that is wasted work on every inference, and at small M
//! (a short sequence, a decode step) the repacking costs more than the
//! multiplication. Here a weight matrix is packed once into column panels of
//! [`NR`] floats, each panel `k × NR` contiguous, and every call streams the
//! panels through a register-tiled micro-kernel ([`MR`] rows × [`NR`]
//! columns: 12 AVX2 accumulators, FMA), with a portable fallback.

use rayon::prelude::*;

/// Columns per panel.
pub const NR: usize = 16;
/// Rows per micro-tile.
pub const MR: usize = 6;

/// A `k × n` matrix packed into `ceil(n / NR)` panels of `k × NR` floats
/// (the last panel zero-padded).
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl PackedMatrix {
    /// Pack `B` where element `(kk, j)` is `b[kk * rs + j * cs]`: `rs = n,
    /// cs = 1` for a row-major `k × n` matrix, `rs = 1, cs = k` for the
    /// transpose of a row-major `n × k` one (a Linear layer's weight).
    ///
    /// Panics if `b` is too short for those strides (callers check shapes).
    pub fn pack(b: &[f32], k: usize, n: usize, rs: usize, cs: usize) -> PackedMatrix {
        let panels_n = n.div_ceil(NR);
        let mut panels = vec![0f32; panels_n * k * NR];
        panels
            .par_chunks_mut((k * NR).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for kk in 0..k {
                    for j in 0..NR.min(n.saturating_sub(p * NR)) {
                        panel[kk * NR + j] = b[kk * rs + (p * NR + j) * cs];
                    }
                }
            });
        PackedMatrix { k, n, panels }
    }

    /// Rows (the inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.panels[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

/// `C[m × n] = A[m × k] · B (+ bias[n])`, with `A` and `C` row-major with row
/// strides `lda` and `ldc`. Splits the panels across the rayon pool when
/// the product is large enough.
pub fn gemm_packed(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedMatrix,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k && c.len() >= (m - 1) * ldc + n);
    assert!(bias.is_none_or(|v| v.len() >= n));
    SCRATCH.with(|scratch| {
        // A nested call on this thread (work stealing) gets its own buffer.
        let mut fresh = Vec::new();
        let mut held = scratch.try_borrow_mut();
        let buf = match held.as_deref_mut() {
            Ok(v) => v,
            Err(_) => &mut fresh,
        };
        pack_rows(m, k, a, lda, buf);
        product(m, &buf[..m.div_ceil(MR) * k * MR], b, bias, c, ldc);
    });
}

thread_local! {
    /// The packed rows of A, reused from call to call: a fresh zeroed buffer
    /// per call cost a few percent of a BERT layer in `memset` and page faults.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The product once A is packed.
fn product(
    m: usize,
    a_blocks: &[f32],
    b: &PackedMatrix,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
) {
    let (k, n) = (b.k, b.n);
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    let out = Out(c.as_mut_ptr());
    let run = |p: usize| {
        // SAFETY: panel `p` writes only columns p*NR..(p+1)*NR of C, which no
        // other panel touches; bounds were asserted above.
        unsafe { panel_product(m, a_blocks, b, p, bias, &out, ldc) }
    };
    if threads > 1 && m * n * k >= 1 << 18 && panels > 1 {
        (0..panels).into_par_iter().for_each(run);
    } else {
        (0..panels).for_each(run);
    }
}

/// Copy `A` into `out` as blocks of [`MR`] rows, each block `k × MR` with the
/// rows interleaved (`block[kk·MR + r] = A[r][kk]`). The micro-kernel then
/// reads one contiguous stream of A instead of six. The padding rows of the
/// last block keep whatever `out` held: the kernels never store their results.
fn pack_rows(m: usize, k: usize, a: &[f32], lda: usize, out: &mut Vec<f32>) {
    let blocks = m.div_ceil(MR);
    if out.len() < blocks * k * MR {
        out.resize(blocks * k * MR, 0.0);
    }
    for (bi, block) in out[..blocks * k * MR]
        .chunks_mut((k * MR).max(1))
        .enumerate()
    {
        for r in 0..MR.min(m - bi * MR) {
            let row = &a[(bi * MR + r) * lda..(bi * MR + r) * lda + k];
            for (kk, &v) in row.iter().enumerate() {
                block[kk * MR + r] = v;
            }
        }
    }
}

/// C's base pointer, shared by the workers that write disjoint columns.
struct Out(*mut f32);
// SAFETY: workers write disjoint column ranges.
unsafe impl Sync for Out {}

/// All rows of C for panel `p`.
///
/// # Safety
/// `c` must address an `m × ldc` matrix with `ldc ≥ n`.
unsafe fn panel_product(
    m: usize,
    a_blocks: &[f32],
    b: &PackedMatrix,
    p: usize,
    bias: Option<&[f32]>,
    c: &Out,
    ldc: usize,
) {
    let k = b.k;
    let panel = b.panel(p);
    let cols = NR.min(b.n - p * NR);
    let bias = bias.map(|b| &b[p * NR..p * NR + cols]);
    let mut tile = [[0f32; NR]; MR];
    for (bi, block) in a_blocks.chunks(k * MR).enumerate() {
        let rows = MR.min(m - bi * MR);
        // SAFETY: (bi*MR + r, p*NR + j) with r < rows, j < cols lies inside C.
        let dst = unsafe { c.0.add(bi * MR * ldc + p * NR) };
        #[cfg(target_arch = "x86_64")]
        if cols == NR && crate::kernels::qmatmul::Isa::avx2().is_some() {
            // SAFETY: AVX2/FMA detected; `rows` full rows of 16 columns of C
            // at `dst`.
            unsafe {
                match rows {
                    1 => avx2::rows_tile::<1>(k, block, panel, dst, ldc, bias),
                    2 => avx2::rows_tile::<2>(k, block, panel, dst, ldc, bias),
                    3 => avx2::rows_tile::<3>(k, block, panel, dst, ldc, bias),
                    4 => avx2::rows_tile::<4>(k, block, panel, dst, ldc, bias),
                    5 => avx2::rows_tile::<5>(k, block, panel, dst, ldc, bias),
                    _ => avx2::rows_tile::<MR>(k, block, panel, dst, ldc, bias),
                }
            }
            continue;
        }
        micro_tile(k, block, panel, &mut tile);
        for (r, t) in tile.iter().enumerate().take(rows) {
            for (j, &v) in t.iter().enumerate().take(cols) {
                // SAFETY: inside C, as above.
                unsafe { *dst.add(r * ldc + j) = v + bias.map_or(0.0, |bv| bv[j]) };
            }
        }
    }
}

/// `tile[r][j] = Σ_kk block[kk·MR + r] · panel[kk·NR + j]`.
fn micro_tile(k: usize, block: &[f32], panel: &[f32], tile: &mut [[f32; NR]; MR]) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::qmatmul::Isa::avx2().is_some() {
        // SAFETY: AVX2 and FMA were detected.
        unsafe { avx2::tile(k, block, panel, tile) };
        return;
    }
    *tile = [[0.0; NR]; MR];
    for kk in 0..k {
        let brow = &panel[kk * NR..kk * NR + NR];
        for (r, t) in tile.iter_mut().enumerate() {
            let av = block[kk * MR + r];
            for (o, &bv) in t.iter_mut().zip(brow) {
                *o += av * bv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// The `6 × 16` micro-kernel into a scratch tile.
    ///
    /// # Safety
    /// Needs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile(k: usize, block: &[f32], panel: &[f32], tile: &mut [[f32; NR]; MR]) {
        let acc = unsafe { accumulate::<MR>(k, block, panel) };
        for (r, acc_r) in acc.iter().enumerate() {
            // SAFETY: each tile row has 16 floats.
            unsafe {
                _mm256_storeu_ps(tile[r].as_mut_ptr(), acc_r[0]);
                _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), acc_r[1]);
            }
        }
    }

    /// `R` full rows (`R ≤ 6`) of a 16-column tile straight into C (row
    /// stride `ldc`), plus `bias`. Only the real rows are computed, so a
    /// one-row product (a decode step) costs a sixth of a full tile.
    ///
    /// # Safety
    /// Needs AVX2 and FMA; `dst` addresses `R` rows of 16 writable floats.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows_tile<const R: usize>(
        k: usize,
        block: &[f32],
        panel: &[f32],
        dst: *mut f32,
        ldc: usize,
        bias: Option<&[f32]>,
    ) {
        let acc = unsafe { accumulate::<R>(k, block, panel) };
        let (b0, b1) = match bias {
            // SAFETY: the bias slice holds the panel's 16 columns.
            Some(b) => unsafe {
                (
                    _mm256_loadu_ps(b.as_ptr()),
                    _mm256_loadu_ps(b.as_ptr().add(8)),
                )
            },
            None => (_mm256_setzero_ps(), _mm256_setzero_ps()),
        };
        for (r, acc_r) in acc.iter().enumerate() {
            // SAFETY: row r of the tile is inside C.
            unsafe {
                _mm256_storeu_ps(dst.add(r * ldc), _mm256_add_ps(acc_r[0], b0));
                _mm256_storeu_ps(dst.add(r * ldc + 8), _mm256_add_ps(acc_r[1], b1));
            }
        }
    }

    /// The products of the first `R` rows of a packed A block with a panel
    /// (`6 × 16` in 12 registers at most): per step of k, two loads of the
    /// panel, `R` broadcasts from the block, `2R` FMAs.
    ///
    /// # Safety
    /// Needs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn accumulate<const R: usize>(
        k: usize,
        block: &[f32],
        panel: &[f32],
    ) -> [[__m256; 2]; R] {
        assert!(R <= MR && block.len() >= k * MR && panel.len() >= k * NR);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let (ap, bp) = (block.as_ptr(), panel.as_ptr());
        for kk in 0..k {
            // SAFETY: kk < k stays inside the asserted lengths.
            unsafe {
                let b0 = _mm256_loadu_ps(bp.add(kk * NR));
                let b1 = _mm256_loadu_ps(bp.add(kk * NR + 8));
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*ap.add(kk * MR + r));
                    acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                    acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, k: usize, n: usize, a: &[f32], w: &[f32], bias: &[f32]) -> Vec<f64> {
        // w is n × k (a Linear weight); C = A · wᵀ + bias.
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias[j] as f64;
                for kk in 0..k {
                    s += a[i * k + kk] as f64 * w[j * k + kk] as f64;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_a_float64_reference_on_ragged_shapes() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(m, k, n) in &[
            (1, 7, 5),
            (1, 576, 1536),
            (2, 40, 32),
            (4, 50, 48),
            (9, 30, 64),
            (8, 384, 1536),
            (13, 33, 17),
            (6, 16, 16),
            (128, 64, 40),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..n).map(|_| rnd()).collect();
            let packed = PackedMatrix::pack(&w, k, n, 1, k);
            let mut c = vec![f32::NAN; m * n];
            gemm_packed(m, &a, k, &packed, Some(&bias), &mut c, n);
            let want = reference(m, k, n, &a, &w, &bias);
            let tol = 1e-6 * (k as f64).sqrt() * 4.0;
            for (i, (&g, &w)) in c.iter().zip(&want).enumerate() {
                assert!((g as f64 - w).abs() <= tol, "{m}x{k}x{n} [{i}]: {g} vs {w}");
            }
        }
    }

    #[test]
    fn row_major_b_packs_like_its_transpose() {
        // B row-major k × n against the same matrix given as n × k transposed.
        let (k, n) = (5, 19);
        let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let p1 = PackedMatrix::pack(&b, k, n, n, 1);
        let p2 = PackedMatrix::pack(&bt, k, n, 1, k);
        assert_eq!(p1.panels, p2.panels);
        assert_eq!(p1.bytes(), 2 * k * NR * 4);
    }
}
