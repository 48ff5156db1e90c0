#!/usr/bin/env bash
# SmolLM2-135M (Q4_1 GGUF) decode tokens/s on egret against onnxruntime 1.32 on
# the equivalent ONNX graph that egret exports, at 1 and 2 threads, with the
# fraction of the memory-bandwidth roofline (`egret bench --bandwidth`):
#   - `egret generate` (greedy, fixed prompt, --max-tokens $TOKENS) with each
#     backend on the GGUF, and on the exported .onnx if `generate` takes it;
#   - onnxruntime: prefill of the same prompt ids, then greedy KV-cache decode,
#     only session.run timed; its ids are checked against egret's;
#   - one decode step of the exported graph in `egret bench --compare
#     onnxruntime` (STEP=0 skips it).
# Prints Markdown tables (the ones in docs/jit.md), or one JSON object with
# --json. scripts/bench-decode.py documents the bytes-per-token choice.
# Needs: scripts/fetch-models.sh smollm2 and scripts/setup-python.sh. Uses
# target/release/egret (or $EGRET), building it only when it is absent.
#
#   scripts/bench-decode.sh
#   TOKENS=32 THREADS=1 BACKENDS=interp scripts/bench-decode.sh --json
#   RUNS=3 scripts/bench-decode.sh
#   SCHEME=int8 scripts/bench-decode.sh   # quantized first (egret optimize --quantize)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
model="$cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
py="$cache/venv/bin/python"
[ -f "$model" ] || { echo "error: $model is absent (run scripts/fetch-models.sh smollm2)" >&2; exit 1; }
[ -x "$py" ] || { echo "error: $py is absent (run scripts/setup-python.sh)" >&2; exit 1; }
"$py" -c 'import numpy, onnxruntime' 2>/dev/null ||
  { echo "error: $py lacks numpy or onnxruntime (run scripts/setup-python.sh)" >&2; exit 1; }
egret="${EGRET:-target/release/egret}"
if [ ! -x "$egret" ]; then
  echo "building $egret (cargo build --release --bin egret)..." >&2
  cargo build --release --quiet --bin egret
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [ -n "${SCHEME:-}" ]; then
  echo "quantizing: egret optimize --quantize $SCHEME..." >&2
  "$egret" optimize "$model" -o "$out/smollm2.egret" --quantize "$SCHEME" >/dev/null
  model="$out/smollm2.egret"
fi
"$egret" export "$model" --format onnx -o "$out/smollm2.onnx" >/dev/null
"$py" scripts/bench-decode.py "$egret" "$model" "$out/smollm2.onnx" "$out" "$@"
