#!/usr/bin/env bash
# First run on a fresh machine: fetch a small real model (silero-vad, from PyPI),
# build egret, then inspect the model and run it on random inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$(scripts/fetch-models.sh silero)
model="$cache/models/silero-vad/silero_vad.onnx"
cargo build --release --quiet
./target/release/egret inspect "$model"
./target/release/egret run "$model" --random --output-dir target/quickstart
