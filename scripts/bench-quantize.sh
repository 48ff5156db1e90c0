#!/usr/bin/env bash
# Issue-5 quantization results: MiniLM (egret schemes next to onnxruntime's
# quantize_dynamic, cosine to the f32 embeddings) and SmolLM2 (perplexity,
# size, optimize time and decode speed per scheme and `auto` budget).
# Prints the Markdown tables of docs/quantization.md.
#
#   scripts/bench-quantize.sh              # both models
#   scripts/bench-quantize.sh minilm       # one of them
#   PPL_WINDOWS=2 scripts/bench-quantize.sh smollm2
#
# Needs the models and texts (scripts/fetch-models.sh minilm smollm2,
# scripts/fetch-texts.sh); installs `tokenizers` and `onnx` (onnxruntime's
# quantization tool needs it) into the project venv for the onnxruntime side,
# and llama-cpp-python (scripts/setup-llama-cpp.sh) for the llama.cpp side.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
scripts/setup-python.sh >/dev/null
py="$cache/venv/bin/python"
"$py" -c 'import tokenizers, onnx' 2>/dev/null ||
  "$py" -m pip install --quiet --disable-pip-version-check --cache-dir "$cache/pip" \
    'tokenizers==0.22.*' 'onnx==1.22.0'
cargo build --release --quiet --bin egret
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$py" scripts/bench-quantize.py "$out" "$@"
# llama.cpp's own quantizer as the SmolLM2 peer (builds llama-cpp-python once).
if [ $# -eq 0 ] || [[ " $* " == *" smollm2 "* ]]; then
  scripts/setup-llama-cpp.sh >/dev/null
  echo
  echo "### llama.cpp on the same file (scripts/bench-llamacpp.py)"
  echo
  "$py" scripts/bench-llamacpp.py "$out"
fi
