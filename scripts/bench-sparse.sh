#!/usr/bin/env bash
# Micro-benchmark of egret's sparse matrix products (MatMulSparse: bitmap-pruned
# weights, f32 and int8 values; MatMulActSparse: activation sparsity) against
# the dense f32 GEMM and dense int8 at SmolLM2-135M's shapes (M = 1, decode, and
# 128, prefill). Prints a markdown table of times and speed-ups.
#
#   scripts/bench-sparse.sh                 # all cores
#   RAYON_NUM_THREADS=1 scripts/bench-sparse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p egret-runtime --example sparse_bench
