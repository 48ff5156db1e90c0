#!/usr/bin/env bash
# egret's test command: fetch test data (cached), check formatting and lints,
# run every test. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh onnx silero ppocr minilm smollm2 >/dev/null
scripts/fetch-texts.sh
scripts/setup-python.sh >/dev/null  # onnxruntime venv: the oracle for exported ONNX
scripts/setup-cross.sh >/dev/null   # cross gcc + qemu-user: the C backend's targets
export CARGO_INCREMENTAL=0  # a one-shot build gains nothing from incremental state, which costs GBs of disk
export EGRET_REQUIRE_DATA=1  # a test whose data is missing fails instead of skipping
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast -- --nocapture
cargo run --quiet --example custom_pass  # the library-API example must work end to end
