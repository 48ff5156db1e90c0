#!/usr/bin/env bash
# Micro-benchmark of egret's quantized matmul kernels (runtime/src/kernels/qmatmul)
# against f32 sgemm at SmolLM2-135M's shapes: GEMV (1 row) and GEMM (128 rows),
# N x K = 1536 x 576 and 576 x 1536. Prints GFLOP/s and weight GB/s per format.
#
#   scripts/bench-qmatmul.sh                 # all cores
#   RAYON_NUM_THREADS=1 scripts/bench-qmatmul.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p egret-runtime --example qmatmul_bench
