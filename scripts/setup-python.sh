#!/usr/bin/env bash
# Make the Python environment egret's tests call: a venv under
# ~/.cache/egret/venv (or $EGRET_CACHE/venv) with onnxruntime 1.32 and numpy from
# PyPI, used by tests/export.rs (through scripts/ort-check.py) to run exported
# ONNX files. Cached: a no-op when the venv already has them.
set -euo pipefail
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
venv="$cache/venv"
py="$venv/bin/python"
check='import numpy, onnxruntime; assert onnxruntime.__version__.startswith("1.32."), onnxruntime.__version__'
if [ -x "$py" ] && "$py" -c "$check" 2>/dev/null; then
    exit 0
fi
mkdir -p "$cache"
python3 -m venv "$venv"
"$py" -m pip install --quiet --disable-pip-version-check \
    --cache-dir "$cache/pip" 'onnxruntime==1.32.*' numpy
"$py" -c "$check"
echo "python venv ready: $venv"
