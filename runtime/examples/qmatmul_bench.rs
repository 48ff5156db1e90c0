//! Micro-benchmark of the quantized matrix-product kernels against f32 sgemm at
//! SmolLM2-135M's projection shapes: GEMV (1 row) and GEMM (128 rows), for
//! N x K = 1536 x 576 and 576 x 1536. Prints GFLOP/s (2·M·N·K / time) and the
//! weight bytes streamed per second (GB/s), best of several runs.
//!
//! Run with `scripts/bench-qmatmul.sh` (a release build; `RAYON_NUM_THREADS`
//! sets the thread count).

use egret_ir::{blocks, BlockFormat, DType, Tensor};
use egret_runtime::kernels::gemm::sgemm_strided;
use egret_runtime::kernels::qmatmul::{self, Isa, Weight};
use std::time::Instant;

/// Best wall time of `f` over enough runs to fill ~0.3 s, in seconds.
fn best_of(mut f: impl FnMut()) -> f64 {
    f();
    let (mut best, start) = (f64::MAX, Instant::now());
    let mut runs = 0;
    while runs < 5 || (start.elapsed().as_secs_f64() < 0.3 && runs < 2000) {
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

fn report(name: &str, m: usize, n: usize, k: usize, weight_bytes: usize, secs: f64) {
    let gflops = 2.0 * (m * n * k) as f64 / secs / 1e9;
    let gbs = weight_bytes as f64 / secs / 1e9;
    println!(
        "{name:<10} M={m:<4} N={n:<5} K={k:<5} {:>9.1} us {gflops:>8.2} GFLOP/s {gbs:>7.2} GB/s",
        secs * 1e6
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let isa = Isa::best();
    println!("isa: {isa:?}, threads: {}", rayon::current_num_threads());
    for (n, k) in [(1536, 576), (576, 1536)] {
        let wf = values(n * k);
        let wt = Tensor::from_vec(vec![n, k], wf.clone())?;
        let packed: Vec<(BlockFormat, Tensor)> =
            [BlockFormat::Q8_0, BlockFormat::Q4_0, BlockFormat::Q4_1]
                .into_iter()
                .map(|f| blocks::quantize(&wt, f, None).map(|t| (f, t)))
                .collect::<Result<_, _>>()?;
        let (q8, scale) = blocks::quantize_rows_i8(&wf, n, k);
        for m in [1, 128] {
            let x = values(m * k);
            let mut out = vec![0f32; m * n];
            let secs = best_of(|| {
                sgemm_strided(
                    m, n, k, &x, k as isize, 1, &wf, 1, k as isize, &mut out, 1.0, 0.0,
                )
            });
            report("f32", m, n, k, n * k * 4, secs);
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
                report(f.name(), m, n, k, t.bytes().len(), secs);
            }
            let w = Weight::Int8 {
                q: &q8,
                scale: &scale,
            };
            let secs = best_of(|| {
                if let Err(e) = qmatmul::matmul(isa, &x, m, k, w, n, None, &mut out) {
                    eprintln!("{e}");
                }
            });
            report("i8 (w8)", m, n, k, n * k + 4 * n, secs);
            let secs = best_of(|| {
                if let Err(e) = qmatmul::matmul_w8a8(isa, &x, m, k, &q8, &scale, n, None, &mut out)
                {
                    eprintln!("{e}");
                }
            });
            report("i8 (w8a8)", m, n, k, n * k + 4 * n, secs);
        }
    }
    Ok(())
}
