#!/usr/bin/env bash
# Install llama-cpp-python (llama.cpp built from source, CPU only) into the
# project venv (scripts/setup-python.sh), for scripts/bench-llamacpp.py: llama.cpp's
# own quantizer (llama_model_quantize), perplexity and decode speed as a peer
# for egret's SmolLM2 quantization table (docs/quantization.md).
# Cached: a no-op when the venv already has the pinned version. The first run
# compiles llama.cpp (about 10-20 minutes on 2 cores); the built wheel is kept
# in the pip cache, so a fresh venv reinstalls it without compiling.
# Needs a C/C++ compiler; cmake and ninja come from PyPI if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
version=0.3.36
scripts/setup-python.sh >/dev/null
py="$cache/venv/bin/python"
check="import llama_cpp; assert llama_cpp.__version__ == '$version', llama_cpp.__version__"
if "$py" -c "$check" 2>/dev/null; then
    exit 0
fi
# CPU only, tuned for this machine, no BLAS/GPU backends, no curl, none of
# llama.cpp's tests, examples or server.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
"$py" -m pip install --disable-pip-version-check --cache-dir "$cache/pip" \
    ${PIP_VERBOSE:+-v} "llama-cpp-python==$version"
"$py" -c "$check"
echo "llama-cpp-python $version ready: $cache/venv"
