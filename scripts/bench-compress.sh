#!/usr/bin/env bash
# Issue-8 compression results. MiniLM: low-rank and Kronecker factorizations
# at three strengths, FFN channel pruning, uniform quantization, budgeted
# mixes, and a --pareto sweep (its HTML page is kept in OUT_DIR). SmolLM2:
# every family (quantization, FFN channels, Wanda/SparseGPT, activation
# sparsity, low rank, Kronecker) and a budgeted mix, with perplexity and
# decode speed. Prints the Markdown tables of docs/compression.md.
#
#   scripts/bench-compress.sh                 # both models; OUT_DIR defaults to a temp folder
#   scripts/bench-compress.sh smollm2         # one of them (about 40 min for SmolLM2)
#   OUT_DIR=/tmp/compress scripts/bench-compress.sh
#
# Needs the models and texts (scripts/fetch-models.sh minilm, scripts/fetch-texts.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
scripts/setup-python.sh >/dev/null
cargo build --release --quiet --bin egret
out="${OUT_DIR:-$(mktemp -d)}"
mkdir -p "$out"
"$cache/venv/bin/python" scripts/bench-compress.py "$out" "$@"
echo
echo "outputs in $out"
