#!/usr/bin/env bash
# Where the factored Kronecker product (the Kronecker rewrite's two GEMMs)
# beats the dense matrix product, at MiniLM's and SmolLM2's projection shapes,
# for decode (M = 1) and prefill (M = 128), as the number of terms grows.
# One thread (the comparison is per core).
#
#   scripts/bench-kronecker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RAYON_NUM_THREADS=1 cargo run --release --quiet -p egret-passes --example kronecker_bench
