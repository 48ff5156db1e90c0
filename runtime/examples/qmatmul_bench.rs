//! Micro-benchmark of the quantized matrix-product kernels against f32 sgemm at
//! the projection shapes of all-MiniLM-L6-v2 (N x K = 384 x 384, 1536 x 384,
//! 384 x 1536; M = 24, a typical sentence, and 128) and SmolLM2-135M (576 x
//! 576, 1536 x 576, 576 x 1536; M = 1, decode, and 128, prefill). For each
//! format it prints the time, GFLOP/s (2·M·N·K / time), the weight bytes
//! streamed per second (GB/s) and the speed-up over f32 (`x f32`: f32 time /
//! this time, above 1 is faster), best of several runs.
//!
//! Run with `scripts/bench-qmatmul.sh` (a release build; `RAYON_NUM_THREADS`
//! sets the thread count).

use egret_ir::{blocks, BlockFormat, DType, Tensor};
use egret_runtime::kernels::gemm::gemm_strided;
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

fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 504.0)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn report(name: &str, m: usize, n: usize, k: usize, weight_bytes: usize, secs: f64, f32_secs: f64) {
    let gflops = 2.0 * (m * n * k) as f64 / secs / 1e9;
    let gbs = weight_bytes as f64 / secs / 1e9;
    println!(
        "{name:<10} M={m:<4} N={n:<5} K={k:<5} {:>9.1} us {gflops:>7.2} GFLOP/s {gbs:>7.2} GB/s {:>6.2} x f32",
        secs * 1e6,
        f32_secs / secs
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let isa = Isa::best();
    println!("isa: {isa:?}, threads: {}", rayon::current_num_threads());
    let minilm = [(384, 384), (1536, 384), (384, 1536)].map(|s| (s, [24, 128]));
    let smol = [(576, 576), (1536, 576), (576, 1536)].map(|s| (s, [1, 128]));
    for ((n, k), ms) in minilm.into_iter().chain(smol) {
        let wf = values(n * k);
        let wt = Tensor::from_vec(vec![n, k], wf.clone())?;
        let packed: Vec<(BlockFormat, Tensor)> = [
            BlockFormat::Q8_0,
            BlockFormat::Q4_0,
            BlockFormat::Q4_1,
            BlockFormat::I4S128,
        ]
        .into_iter()
        .filter_map(|f| blocks::quantize(&wt, f, None).ok().map(|t| (f, t)))
        .collect();
        let (q8, scale) = blocks::quantize_rows_i8(&wf, n, k);
        for m in ms {
            let x = values(m * k);
            let mut out = vec![0f32; m * n];
            let f32_secs = best_of(|| {
                gemm_strided(
                    m, n, k, &x, k as isize, 1, &wf, 1, k as isize, &mut out, 1.0, 0.0,
                )
            });
            report("f32", m, n, k, n * k * 4, f32_secs, f32_secs);
            let w = Weight::Int8 {
                q: &q8,
                scale: &scale,
            };
            let secs = best_of(|| {
                if let Err(e) = qmatmul::matmul(isa, &x, m, k, w, n, None, &mut out) {
                    eprintln!("{e}");
                }
            });
            report("i8 (w8)", m, n, k, n * k + 4 * n, secs, f32_secs);
            let secs = best_of(|| {
                if let Err(e) = qmatmul::matmul_w8a8(isa, &x, m, k, &q8, &scale, n, None, &mut out)
                {
                    eprintln!("{e}");
                }
            });
            report("i8 (w8a8)", m, n, k, n * k + 4 * n, secs, f32_secs);
            for (f, t) in &packed {
                let w = Weight::Packed {
                    dtype: DType::Block(*f),
                    bytes: t.bytes(),
                };
                let secs = best_of(|| {
                    if let Err(e) = qmatmul::matmul(isa, &x, m, k, w, n, None, &mut out) {
                        eprintln!("{e}");
                    }
                });
                report(f.name(), m, n, k, t.bytes().len(), secs, f32_secs);
            }
        }
        println!();
    }
    Ok(())
}
