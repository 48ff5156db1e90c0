#!/usr/bin/env bash
# Regenerate frontends/proto/*.proto3 and frontends/src/onnx/proto.rs from the onnx wheel.
# usage: tools/regen-onnx-proto/regen.sh [path/to/onnx-*.whl]   (run from anywhere)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
wheel="${1:-$(ls ~/.cache/egret/wheels/onnx-1.22.0-*.whl | head -n1)}"
python3 "$here/convert_proto3.py" "$wheel" "$root/frontends/proto"
CARGO_TARGET_DIR="$root/target/regen-onnx-proto" cargo run --release --manifest-path "$here/Cargo.toml"
rustfmt --edition 2021 "$root/frontends/src/onnx/proto.rs"
