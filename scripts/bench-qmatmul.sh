#!/usr/bin/env bash
# Micro-benchmark of egret's quantized matmul kernels (runtime/src/kernels/qmatmul)
# against f32 sgemm at MiniLM's shapes (M = 24 and 128) and SmolLM2-135M's (M = 1,
# decode, and 128, prefill). Prints time, GFLOP/s, weight GB/s and the speed-up
# over f32 per format.
#
#   scripts/bench-qmatmul.sh                 # all cores
#   RAYON_NUM_THREADS=1 scripts/bench-qmatmul.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p egret-runtime --example qmatmul_bench
