#!/usr/bin/env bash
# egret's test command: fetch test data (cached), check formatting and lints,
# run every test. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh onnx silero ppocr minilm smollm2 >/dev/null
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --nocapture
