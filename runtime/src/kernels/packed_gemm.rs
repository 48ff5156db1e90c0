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
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    let out = Out(c.as_mut_ptr());
    let run = |p: usize| {
        // SAFETY: panel `p` writes only columns p*NR..(p+1)*NR of C, which no
        // other panel touches; bounds were asserted above.
        unsafe { panel_product(m, a, lda, b, p, bias, &out, ldc) }
    };
    if threads > 1 && m * n * k >= 1 << 18 && panels > 1 {
        (0..panels).into_par_iter().for_each(run);
    } else {
        (0..panels).for_each(run);
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
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedMatrix,
    p: usize,
    bias: Option<&[f32]>,
    c: &Out,
    ldc: usize,
) {
    let k = b.k;
    let panel = b.panel(p);
    let cols = NR.min(b.n - p * NR);
    let mut tile = [[0f32; NR]; MR];
    let mut row = 0;
    while row < m {
        let rows = MR.min(m - row);
        let a_rows = &a[row * lda..];
        micro_tile(rows, k, a_rows, lda, panel, &mut tile);
        for (r, t) in tile.iter().enumerate().take(rows) {
            // SAFETY: (row + r, p*NR + j) with j < cols lies inside C.
            let dst = unsafe { c.0.add((row + r) * ldc + p * NR) };
            for (j, &v) in t.iter().enumerate().take(cols) {
                let v = v + bias.map_or(0.0, |bv| bv[p * NR + j]);
                unsafe { *dst.add(j) = v };
            }
        }
        row += rows;
    }
}

/// `tile[r][j] = Σ_kk a[r·lda + kk] · panel[kk·NR + j]` for `r < rows`.
fn micro_tile(
    rows: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    panel: &[f32],
    tile: &mut [[f32; NR]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::qmatmul::Isa::avx2().is_some() {
        // SAFETY: AVX2 and FMA were detected; the slices cover `rows` rows of
        // `k` floats and `k` panel rows.
        unsafe {
            match rows {
                6 => avx2::tile::<6>(k, a, lda, panel, tile),
                5 => avx2::tile::<5>(k, a, lda, panel, tile),
                4 => avx2::tile::<4>(k, a, lda, panel, tile),
                3 => avx2::tile::<3>(k, a, lda, panel, tile),
                2 => avx2::tile::<2>(k, a, lda, panel, tile),
                _ => avx2::tile::<1>(k, a, lda, panel, tile),
            }
        }
        return;
    }
    for (r, t) in tile.iter_mut().enumerate().take(rows) {
        *t = [0.0; NR];
        let ar = &a[r * lda..r * lda + k];
        for (kk, &av) in ar.iter().enumerate() {
            let brow = &panel[kk * NR..kk * NR + NR];
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

    /// The `R × 16` micro-kernel: two 8-lane accumulators per row.
    ///
    /// # Safety
    /// Needs AVX2 and FMA; `a` holds `R` rows of stride `lda` with `k`
    /// floats each, `panel` holds `k × 16` floats.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize>(
        k: usize,
        a: &[f32],
        lda: usize,
        panel: &[f32],
        tile: &mut [[f32; NR]; MR],
    ) {
        assert!(a.len() >= (R - 1) * lda + k && panel.len() >= k * NR);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let (ap, bp) = (a.as_ptr(), panel.as_ptr());
        for kk in 0..k {
            // SAFETY: kk < k and r < R stay inside the asserted ranges.
            unsafe {
                let b0 = _mm256_loadu_ps(bp.add(kk * NR));
                let b1 = _mm256_loadu_ps(bp.add(kk * NR + 8));
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*ap.add(r * lda + kk));
                    acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                    acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            // SAFETY: each tile row has 16 floats.
            unsafe {
                _mm256_storeu_ps(tile[r].as_mut_ptr(), acc_r[0]);
                _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), acc_r[1]);
            }
        }
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
