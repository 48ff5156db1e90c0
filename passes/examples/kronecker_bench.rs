//! Where the factored Kronecker product beats the dense matrix product.
//!
//! For a Linear layer `y = x·Wᵀ` (`W` `n × k`) replaced by `Σᵣ Aᵣ ⊗ Bᵣ`, this
//! times the computation the Kronecker rewrite puts in the graph
//! ([`egret_passes::compress::factorize`]): `T = X·Bcat` as one GEMM over all
//! rows (`M·k1 × k2` by `k2 × R·n2`), then `Acat · T_m` per row (`n1 × R·k1`
//! by `R·k1 × n2`), against the dense GEMM `x·Wᵀ`, at the projection shapes
//! of all-MiniLM-L6-v2 and SmolLM2-135M, for decode (`M = 1`) and prefill
//! (`M = 128`), with the number of terms `R` doubling until the factors hold
//! as many values as `W`. It prints the fraction of `W`'s parameters the
//! factors hold, the multiply-adds relative to dense, and the speed-up
//! (dense time / factored time; above 1 the factored form is faster).
//!
//! Run with `scripts/bench-kronecker.sh` (a release build, one thread).

use egret_passes::compress::kronecker::Factors;
use egret_runtime::kernels::gemm::{gemm_strided, sgemm};
use std::time::Instant;

/// Best wall time of `f` over enough runs to fill ~0.1 s, in seconds.
fn best_of(mut f: impl FnMut()) -> f64 {
    f();
    let (mut best, start) = (f64::MAX, Instant::now());
    let mut runs = 0;
    while runs < 5 || (start.elapsed().as_secs_f64() < 0.1 && runs < 2000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 7919 % 1009) as f32 - 504.0) / 504.0)
        .collect()
}

/// The factored product for `m` rows: the graph's two steps.
fn factored(x: &[f32], m: usize, f: Factors, r: usize, acat: &[f32], bcat: &[f32], y: &mut [f32]) {
    let Factors { n1, k1, n2, k2 } = f;
    // [M·k1, k2] · [k2, R·n2] -> [M, k1, R, n2]
    let mut t = vec![0f32; m * k1 * r * n2];
    sgemm(m * k1, r * n2, k2, x, bcat, &mut t);
    // Per row: Acat [n1, R·k1] · T_m viewed as [R, k1, n2] = [R·k1, n2] with
    // strides (R axis: n2, k1 axis: R·n2) — the Transpose folded into strides.
    for (row, out) in y.chunks_exact_mut(n1 * n2).enumerate() {
        let tm = &t[row * k1 * r * n2..];
        out.fill(0.0);
        for q in 0..r {
            gemm_strided(
                n1,
                n2,
                k1,
                &acat[q * k1..],
                (r * k1) as isize,
                1,
                &tm[q * n2..],
                (r * n2) as isize,
                1,
                out,
                1.0,
                1.0,
            );
        }
    }
}

fn main() {
    println!(
        "{:<12} {:>4} {:>14} {:>5} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "W (n x k)", "M", "A ⊗ B", "R", "params", "MACs", "dense us", "kron us", "speed-up"
    );
    let shapes = [(384, 384), (1536, 384), (576, 576), (1536, 576)];
    for (n, k) in shapes {
        // Factor shapes as the pass's first candidate: divisors near √n, √k.
        let near = |d: usize| {
            (2..d)
                .filter(|v| d.is_multiple_of(*v))
                .min_by(|a, b| {
                    let r = (d as f64).sqrt();
                    (*a as f64 - r).abs().total_cmp(&(*b as f64 - r).abs())
                })
                .unwrap_or(1)
        };
        let (n2, k2) = (near(n), near(k));
        let f = Factors {
            n1: n / n2,
            k1: k / k2,
            n2,
            k2,
        };
        let w = values(n * k, 1);
        for m in [1usize, 128] {
            let x = values(m * k, 2);
            let mut y = vec![0f32; m * n];
            // Dense: x [M, k] · Wᵀ, W stored [n, k] (read transposed).
            let dense = best_of(|| {
                gemm_strided(
                    m, n, k, &x, k as isize, 1, &w, 1, k as isize, &mut y, 1.0, 0.0,
                )
            });
            let mut r = 1;
            while r * f.params_per_term() <= n * k {
                let acat = values(f.n1 * r * f.k1, 3);
                let bcat = values(f.k2 * r * f.n2, 4);
                let kron = best_of(|| factored(&x, m, f, r, &acat, &bcat, &mut y));
                let macs = r * (f.k1 * f.k2 * f.n2 + f.n1 * f.k1 * f.n2);
                println!(
                    "{:<12} {m:>4} {:>14} {r:>5} {:>7.1}% {:>7.1}% {:>10.1} {:>10.1} {:>8.2}",
                    format!("{n}x{k}"),
                    format!("{}x{} ⊗ {}x{}", f.n1, f.k1, f.n2, f.k2),
                    100.0 * (r * f.params_per_term()) as f64 / (n * k) as f64,
                    100.0 * macs as f64 / (n * k) as f64,
                    dense * 1e6,
                    kron * 1e6,
                    dense / kron
                );
                r *= 2;
            }
        }
    }
}
