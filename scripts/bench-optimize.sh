#!/usr/bin/env bash
# Measure `egret optimize` (default pipeline) on the real models: node count
# before/after, interpreter latency before/after (best of 3), saturation time,
# peak e-graph size and the largest output error. Prints a Markdown table (the
# one in docs/optimizer.md). Needs: scripts/fetch-models.sh silero ppocr minilm smollm2.
#
#   scripts/bench-optimize.sh            # all models
#   scripts/bench-optimize.sh minilm     # the rows whose name contains `minilm`
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
m="$cache/models"
fx=tests/fixtures/real
cargo build --release --quiet --bin egret
egret=target/release/egret
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# MiniLM's token types must be 0 or 1 and its mask 0/1: fixed inputs (seq 128).
python3 - "$out" <<'PY'
import sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
np.save(f"{d}/input_ids.npy", rng.integers(100, 30000, (1, 128), dtype=np.int64))
np.save(f"{d}/attention_mask.npy", np.ones((1, 128), np.int64))
np.save(f"{d}/token_type_ids.npy", np.zeros((1, 128), np.int64))
PY
minilm_inputs="--input input_ids=$out/input_ids.npy --input attention_mask=$out/attention_mask.npy --input token_type_ids=$out/token_type_ids.npy"

# name | model | extra `egret optimize` arguments (inputs for --check)
cases=(
  "silero-vad|$m/silero-vad/silero_vad.onnx|--input input=$fx/silero_vad_16k/input_input.npy --input state=$fx/silero_vad_16k/input_state.npy --input sr=$fx/silero_vad_16k/input_sr.npy"
  "PP-OCRv4 det|$m/ppocr/ch_PP-OCRv4_det_infer.onnx|--input x=$fx/ppocr_det/input_x.npy"
  "PP-OCRv4 rec|$m/ppocr/ch_PP-OCRv4_rec_infer.onnx|--input x=$fx/ppocr_rec/input_x.npy"
  "PP-OCR cls|$m/ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx|--input x=$fx/ppocr_cls/input_x.npy"
  "MiniLM (batch 1, seq 128)|$m/minilm|$minilm_inputs"
  "SmolLM2-135M Q4_1 (seq 32, past 32)|$(ls "$m"/smollm2/*.gguf | head -1)|--dim batch=1 --dim seq=32 --dim past=32"
)

echo "| model | nodes before | nodes after | interpreter before (ms) | interpreter after (ms) | saturation (ms) | optimize total (ms) | peak e-nodes | max rel error |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in "${cases[@]}"; do
  IFS='|' read -r name model args <<<"$c"
  if [ -n "${1:-}" ] && [[ "${name,,}" != *"${1,,}"* ]]; then continue; fi
  # shellcheck disable=SC2086 # $args is a list of arguments
  "$egret" optimize "$model" -o "$out/m.egret" --check --json $args >"$out/report.json"
  python3 - "$name" "$out/report.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
p = r["passes"]
sat = [x["saturation"] for x in p if x["saturation"]]
c = r["check"]
print("| {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {} | {:.1e} |".format(
    name, p[0]["nodes_before"], p[-1]["nodes_after"], c["before_ms"], c["after_ms"],
    1e3 * sum(s["saturate_seconds"] for s in sat), 1e3 * sum(x["seconds"] for x in p),
    max((s["peak_enodes"] for s in sat), default=0), c["max_error"]["rel"]))
PY
done
