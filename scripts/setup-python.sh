#!/usr/bin/env bash
# Make the Python environment egret's tests call: a venv under
# ~/.cache/egret/venv (or $EGRET_CACHE/venv) with onnxruntime 1.32, numpy and
# gguf (llama.cpp's gguf-py) from PyPI, used by tests/export.rs and
# tests/export_quant.rs (through scripts/ort-check.py, scripts/check-gguf.py) to
# run exported ONNX files and read exported GGUF files. Cached: a no-op when
# the venv already has them.
set -euo pipefail
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
venv="$cache/venv"
py="$venv/bin/python"
check='import numpy, onnxruntime, gguf; assert onnxruntime.__version__.startswith("1.32."), onnxruntime.__version__'
if [ -x "$py" ] && "$py" -c "$check" 2>/dev/null; then
    exit 0
fi
mkdir -p "$cache"
python3 -m venv "$venv"
"$py" -m pip install --quiet --disable-pip-version-check \
    --cache-dir "$cache/pip" 'onnxruntime==1.32.*' numpy 'gguf==0.19.*'
"$py" -c "$check"
echo "python venv ready: $venv"
