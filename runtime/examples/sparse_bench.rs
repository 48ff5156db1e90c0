//! Micro-benchmark of the sparse matrix products against the dense f32 GEMM of
//! the plain `MatMul` op, at SmolLM2-135M's projection shapes (K x N = 576 x
//! 576, 576 x 1536, 1536 x 576) for M = 1 (decode) and M = 128 (prefill):
//!
//! * `MatMulSparse` (bitmap-pruned weights, `qmatmul` with `Weight::Sparse`) at
//!   50 % unstructured, 2:4 and 70 % sparsity, with f32 and int8 values;
//! * `MatMulActSparse` (activation sparsity) dropping 40 % and 50 % of a
//!   standard normal `x` (thresholds the matching quantiles of `|x|`).
//!
//! Prints a markdown table of times (best of several runs) and speed-ups over
//! dense f32 (`x f32`: f32 time / this time, above 1 is faster) and, for int8
//! values, over dense per-row int8 (`Weight::Int8`). Run with
//! `scripts/bench-sparse.sh` (a release build; `RAYON_NUM_THREADS` sets the
//! thread count).

use egret_ir::blocks;
use egret_ir::sparse::SparseMatrix;
use egret_runtime::kernels::act_sparse::matmul_act_sparse;
use egret_runtime::kernels::gemm::sgemm;
use egret_runtime::kernels::qmatmul::{self, Isa, Weight};
use std::time::Instant;

/// Best wall time of `f` over enough runs to fill ~0.2 s, in seconds.
fn best_of(mut f: impl FnMut()) -> f64 {
    f();
    let (mut best, start) = (f64::MAX, Instant::now());
    let mut runs = 0;
    while runs < 5 || (start.elapsed().as_secs_f64() < 0.2 && runs < 2000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

/// Deterministic uniform values in [0, 1) (xorshift).
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 + 0.5) / (1u64 << 24) as f32
        })
        .collect()
}

/// Standard normal values (Box-Muller).
fn normal(n: usize, seed: u64) -> Vec<f32> {
    let u = uniform(2 * n, seed);
    u.chunks(2)
        .map(|p| (-2.0 * p[0].ln()).sqrt() * (std::f32::consts::TAU * p[1]).cos())
        .collect()
}

/// Keep flags for `[n, k]` weights `w` at a named sparsity.
fn keep(w: &[f32], k: usize, pattern: &str) -> Vec<bool> {
    let r = uniform(w.len(), 99);
    match pattern {
        "50%" => r.iter().map(|&v| v >= 0.5).collect(),
        "70%" => r.iter().map(|&v| v >= 0.7).collect(),
        _ => w
            .chunks(k)
            .flat_map(|row| {
                row.chunks(4).flat_map(|g| {
                    let mut idx: Vec<usize> = (0..g.len()).collect();
                    idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
                    let mut kp = vec![false; g.len()];
                    idx.iter().take(2).for_each(|&i| kp[i] = true);
                    kp
                })
            })
            .collect(),
    }
}

/// The threshold dropping fraction `p` of `x`'s magnitudes.
fn quantile(x: &[f32], p: f64) -> f32 {
    let mut a: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    a.sort_by(f32::total_cmp);
    a[((a.len() as f64 * p) as usize).min(a.len() - 1)]
}

fn row(op: &str, k: usize, n: usize, m: usize, secs: f64, f32_secs: f64, i8_secs: Option<f64>) {
    let vs_i8 = i8_secs.map_or(String::new(), |s| format!("{:.2}", s / secs));
    println!(
        "| {op} | {k}x{n} | {m} | {:.1} | {:.2} | {vs_i8} |",
        secs * 1e6,
        f32_secs / secs
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let isa = Isa::best();
    println!("isa: {isa:?}, threads: {}\n", rayon::current_num_threads());
    println!("| op | K x N | M | us | x f32 | x int8 |");
    println!("|---|---|---|---|---|---|");
    for (k, n) in [(576, 576), (576, 1536), (1536, 576)] {
        // W [n, k] (output rows) for the weight-sparse ops, its transpose
        // [k, n] for the dense MatMul and the activation-sparse op.
        let w = normal(n * k, 7);
        let mut w_kn = vec![0f32; k * n];
        for r in 0..n {
            for j in 0..k {
                w_kn[j * n + r] = w[r * k + j];
            }
        }
        let (q8, scale) = blocks::quantize_rows_i8(&w, n, k);
        let sparse: Vec<(String, SparseMatrix)> = ["50%", "2:4", "70%"]
            .iter()
            .flat_map(|p| {
                let kp = keep(&w, k, p);
                [false, true].map(|int8| {
                    let name = format!("sparse {p} {}", if int8 { "i8" } else { "f32" });
                    (name, SparseMatrix::encode(&w, n, k, &kp, int8))
                })
            })
            .map(|(name, m)| m.map(|m| (name, m)))
            .collect::<Result<_, _>>()?;
        for m in [1, 128] {
            let x = normal(m * k, m as u64);
            let mut out = vec![0f32; m * n];
            let f32_secs = best_of(|| sgemm(m, n, k, &x, &w_kn, &mut out));
            row("dense f32", k, n, m, f32_secs, f32_secs, None);
            let wi8 = Weight::Int8 {
                q: &q8,
                scale: &scale,
            };
            let i8_secs = best_of(|| {
                if let Err(e) = qmatmul::matmul(isa, &x, m, k, wi8, n, None, &mut out) {
                    eprintln!("{e}");
                }
            });
            row("dense i8", k, n, m, i8_secs, f32_secs, Some(i8_secs));
            for (name, sm) in &sparse {
                let view = sm.view()?;
                let secs = best_of(|| {
                    let w = Weight::Sparse(view);
                    if let Err(e) = qmatmul::matmul(isa, &x, m, k, w, n, None, &mut out) {
                        eprintln!("{e}");
                    }
                });
                let vs_i8 = name.ends_with("i8").then_some(i8_secs);
                row(name, k, n, m, secs, f32_secs, vs_i8);
            }
            for p in [0.4, 0.5] {
                let t = quantile(&x, p);
                let secs = best_of(|| {
                    if let Err(e) = matmul_act_sparse(&x, m, k, &w_kn, n, t, true, &mut out) {
                        eprintln!("{e}");
                    }
                });
                row(
                    &format!("act-sparse {:.0}%", p * 100.0),
                    k,
                    n,
                    m,
                    secs,
                    f32_secs,
                    None,
                );
            }
        }
    }
    Ok(())
}
