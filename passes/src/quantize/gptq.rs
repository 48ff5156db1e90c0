//! GPTQ-style error compensation (Frantar et al., 2022): quantize a weight
//! matrix one input column at a time and push each column's rounding error
//! onto the columns not yet quantized, in the direction that the calibration
//! second moments `H = E[xᵀx]` say keeps the layer's *output* closest.
//!
//! For row `w` and the upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = UᵀU`):
//! `e = (w_j − q(w_j)) / U_jj`, then `w_l −= e · U_jl` for `l > j`. Rows are
//! independent, so they run in parallel, in tiles that share each row of `U`.
//!
//! Group formats fix each block's scale (by the same importance-weighted
//! search as plain quantization) when the walk reaches the block, on the
//! weights as compensated so far, then round its elements one by one on that
//! grid ([`BlockGrid`]). Per-channel int8 fixes the row scale up front.
//!
//! `U` comes from one Cholesky factorisation and one triangular inverse in
//! f64: with `P` the reversal permutation and `PHP = LLᵀ`, `U = P L⁻¹ P`.
//! `H` is damped by 1 % of its mean diagonal, and a channel that never fired
//! (zero diagonal) gets a unit diagonal, as in the reference implementation.

use crate::compress::prune::{Pattern, SPARSEGPT_BLOCK};
use crate::linalg::{cholesky_in_place, lower_inverse};
use egret_ir::blocks::{quantize_into, BlockGrid};
use egret_ir::{BlockFormat, IrError};
use rayon::prelude::*;

/// Fraction of the mean diagonal added to `H` before factorising.
const DAMP: f64 = 0.01;
/// Weight rows compensated together (they share each row of `U`).
const TILE_ROWS: usize = 8;

/// The upper Cholesky factor `U` (row-major `[k, k]`, f32) of the inverse of
/// the damped second-moment matrix `h` (`[k, k]`), or `None` if `h` is not
/// positive definite even after damping.
pub fn inverse_factor(h: &[f64], k: usize) -> Option<Vec<f32>> {
    if k == 0 || h.len() != k * k {
        return None;
    }
    let mean_diag = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    let damp = DAMP * mean_diag.max(f64::MIN_POSITIVE);
    // H' = P H P, damped; dead channels get a unit diagonal.
    let mut l = vec![0f64; k * k];
    for a in 0..k {
        for b in 0..=a {
            let (i, j) = (k - 1 - a, k - 1 - b);
            let mut v = h[i * k + j];
            if a == b {
                v = if v > 0.0 { v + damp } else { 1.0 };
            }
            l[a * k + b] = v;
        }
    }
    if !cholesky_in_place(&mut l, k) {
        return None;
    }
    let x = lower_inverse(&l, k);
    // U = P X P: U_ab = X_{k-1-a, k-1-b}.
    let mut u = vec![0f32; k * k];
    for a in 0..k {
        for b in a..k {
            u[a * k + b] = x[(k - 1 - a) * k + (k - 1 - b)] as f32;
        }
    }
    Some(u)
}

/// How one row's elements are rounded while the walk goes on.
enum Rounding<'a> {
    /// Block format: a grid per block, fixed when the walk reaches the block.
    Blocks {
        fmt: BlockFormat,
        importance: Option<&'a [f32]>,
    },
    /// Per-row int8 with this row scale.
    Int8,
    /// SparseGPT: "rounding" is dropping to zero or keeping, the mask chosen
    /// per block of [`SPARSEGPT_BLOCK`] columns (of 4 for 2:4) by the
    /// OBS saliency `w² / U_jj²` of the weights as compensated so far.
    Prune(Pattern),
}

/// What a compensated tile ends as, besides its values.
struct Compensated {
    /// Block formats: the grid of every block, per row.
    grids: Vec<Vec<BlockGrid>>,
    /// Int8: the row scales.
    scales: Vec<f32>,
    /// Pruning: the keep-mask (`rows × k`).
    keep: Vec<bool>,
}

/// Compensate one tile of rows (`w`: `rows × k`) in place: on return every
/// element holds the value it quantizes to (0 where pruning dropped it).
fn compensate_tile(
    w: &mut [f32],
    k: usize,
    u: &[f32],
    rounding: &Rounding<'_>,
) -> Result<Compensated, IrError> {
    let rows = w.len() / k;
    let mut grids: Vec<Vec<BlockGrid>> = vec![Vec::new(); rows];
    let pruning = matches!(rounding, Rounding::Prune(_));
    let mut keep = vec![true; if pruning { w.len() } else { 0 }];
    let mut saliency = Vec::new();
    let scales: Vec<f32> = w
        .chunks_exact(k)
        .map(|r| r.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0)
        .collect();
    let mut err = vec![0f32; rows];
    let mut block = Vec::new();
    for j in 0..k {
        for (r, row) in w.chunks_exact_mut(k).enumerate() {
            let q = match rounding {
                Rounding::Blocks { fmt, importance } => {
                    let g = fmt.block_elems();
                    if j % g == 0 {
                        block.resize(fmt.block_bytes(), 0);
                        let imp = importance.map(|v| &v[j..j + g]);
                        quantize_into(*fmt, &row[j..j + g], imp, &mut block)?;
                        let grid = BlockGrid::of(*fmt, &block).ok_or_else(|| {
                            IrError::DTypeMismatch(format!("no grid for {}", fmt.name()))
                        })?;
                        grids[r].push(grid);
                    }
                    grids[r][j / g].nearest(row[j])
                }
                Rounding::Int8 => {
                    let s = scales[r];
                    if s == 0.0 {
                        0.0
                    } else {
                        s * (row[j] / s).round().clamp(-127.0, 127.0)
                    }
                }
                Rounding::Prune(pattern) => {
                    let b = match pattern {
                        Pattern::TwoOfFour => 4,
                        Pattern::Percent(_) => SPARSEGPT_BLOCK,
                    };
                    let mask = &mut keep[r * k..(r + 1) * k];
                    if j % b == 0 {
                        let end = (j + b).min(k);
                        saliency.clear();
                        saliency.extend(
                            (j..end).map(|l| (row[l] / u[l * k + l]) * (row[l] / u[l * k + l])),
                        );
                        pattern.select(&saliency, j, &mut mask[j..end]);
                    }
                    if mask[j] {
                        row[j]
                    } else {
                        0.0
                    }
                }
            };
            err[r] = (row[j] - q) / u[j * k + j];
            row[j] = q;
        }
        let uj = &u[j * k + j + 1..(j + 1) * k];
        for (row, &e) in w.chunks_exact_mut(k).zip(&err) {
            if e != 0.0 {
                for (x, &c) in row[j + 1..].iter_mut().zip(uj) {
                    *x -= e * c;
                }
            }
        }
    }
    Ok(Compensated {
        grids,
        scales,
        keep,
    })
}

fn check(w: &[f32], n: usize, k: usize, u: &[f32]) -> Result<(), IrError> {
    if k == 0 || w.len() != n * k || u.len() != k * k {
        return Err(IrError::ShapeMismatch(format!(
            "GPTQ of {} weights as [{n}, {k}] with a {}-element factor",
            w.len(),
            u.len()
        )));
    }
    Ok(())
}

/// GPTQ into block format `fmt`: `w` is `[n, k]` row-major (rows = output
/// channels, blocks along `k`), `u` from [`inverse_factor`]; `importance`
/// (length `k`) steers each block's scale search. Returns the packed blocks.
pub fn gptq_blocks(
    w: &[f32],
    n: usize,
    k: usize,
    fmt: BlockFormat,
    u: &[f32],
    importance: Option<&[f32]>,
) -> Result<Vec<u8>, IrError> {
    check(w, n, k, u)?;
    let g = fmt.block_elems();
    if !k.is_multiple_of(g) || importance.is_some_and(|v| v.len() != k) {
        return Err(IrError::ShapeMismatch(format!(
            "GPTQ: rows of {k} are not whole {} blocks of {g}",
            fmt.name()
        )));
    }
    let rounding = Rounding::Blocks { fmt, importance };
    let row_bytes = k / g * fmt.block_bytes();
    let mut out = vec![0u8; n * row_bytes];
    let mut work = w.to_vec();
    work.par_chunks_mut(TILE_ROWS * k)
        .zip(out.par_chunks_mut(TILE_ROWS * row_bytes))
        .try_for_each(|(tile, dst)| {
            let grids = compensate_tile(tile, k, u, &rounding)?.grids;
            for ((row, grids), dst) in tile
                .chunks_exact(k)
                .zip(&grids)
                .zip(dst.chunks_exact_mut(row_bytes))
            {
                for ((x, grid), b) in row
                    .chunks_exact(g)
                    .zip(grids)
                    .zip(dst.chunks_exact_mut(fmt.block_bytes()))
                {
                    grid.encode(x, b);
                }
            }
            Ok(())
        })?;
    Ok(out)
}

/// GPTQ into per-row symmetric int8 (`scale = amax / 127` of the original
/// row): the int8 values and the row scales.
pub fn gptq_rows_i8(
    w: &[f32],
    n: usize,
    k: usize,
    u: &[f32],
) -> Result<(Vec<i8>, Vec<f32>), IrError> {
    check(w, n, k, u)?;
    let mut work = w.to_vec();
    let mut scales = vec![0f32; n];
    work.par_chunks_mut(TILE_ROWS * k)
        .zip(scales.par_chunks_mut(TILE_ROWS))
        .try_for_each(|(tile, sc)| {
            let s = compensate_tile(tile, k, u, &Rounding::Int8)?.scales;
            sc.copy_from_slice(&s);
            Ok::<(), IrError>(())
        })?;
    let q = work
        .chunks_exact(k)
        .zip(&scales)
        .flat_map(|(row, &s)| {
            row.iter()
                .map(move |&v| if s == 0.0 { 0 } else { (v / s).round() as i8 })
        })
        .collect();
    Ok((q, scales))
}

/// SparseGPT: prune `w` (`[n, k]`, rows = output channels) to `pattern`
/// with OBS error compensation (`u` from [`inverse_factor`]). Returns the
/// compensated weights (dropped ones 0) and the keep-mask.
pub fn sparsegpt(
    w: &[f32],
    n: usize,
    k: usize,
    u: &[f32],
    pattern: Pattern,
) -> Result<(Vec<f32>, Vec<bool>), IrError> {
    check(w, n, k, u)?;
    if !pattern.fits(k) {
        return Err(IrError::ShapeMismatch(format!(
            "SparseGPT: rows of {k} cannot take {pattern:?}"
        )));
    }
    let mut work = w.to_vec();
    let mut keep = vec![true; n * k];
    work.par_chunks_mut(TILE_ROWS * k)
        .zip(keep.par_chunks_mut(TILE_ROWS * k))
        .try_for_each(|(tile, mask)| {
            let done = compensate_tile(tile, k, u, &Rounding::Prune(pattern))?;
            mask.copy_from_slice(&done.keep);
            Ok::<(), IrError>(())
        })?;
    Ok((work, keep))
}

#[cfg(test)]
mod tests;
