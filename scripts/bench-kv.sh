#!/usr/bin/env bash
# KV-cache policies on SmolLM2-135M (Q4_1 GGUF) over the Devil's Dictionary:
#   - full attention, the text cut into 2048-token windows (each from an empty cache);
#   - StreamingLLM and SepLLM at the same cache capacity (324 positions), the
#     text streamed through one cache, $CHUNK tokens per step, positions
#     cache-relative; SepLLM also with int8 storage;
#   - decode tokens/s: the same policies token by token ($DECODE_TOKENS tokens).
# Prints a Markdown table (the one in docs/kv_cache.md): perplexity, peak bytes
# of keys and values, tokens/s. Each row's command is printed above the table.
# Needs scripts/fetch-models.sh smollm2 and scripts/fetch-texts.sh.
#
#   scripts/bench-kv.sh                     # first 8192 tokens, chunks of 16
#   TOKENS=0 scripts/bench-kv.sh            # the whole text (~95k tokens; 15–25 min per policy)
#   TOKENS=16384 CHUNK=1 scripts/bench-kv.sh
#   EGRET=target/release/egret scripts/bench-kv.sh   # no build
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
model="$cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
text="$cache/texts/devils_dictionary.txt"
tokens="${TOKENS:-8192}"
chunk="${CHUNK:-16}"
decode_tokens="${DECODE_TOKENS:-1024}"
threads="${THREADS:-2}"
for f in "$model" "$text"; do
  [ -f "$f" ] || { echo "error: $f is absent (run scripts/fetch-models.sh smollm2 and scripts/fetch-texts.sh)" >&2; exit 1; }
done
# EGRET=path/to/egret skips the build.
if [ -z "${EGRET:-}" ]; then
  cargo build --release --quiet --bin egret
fi
egret="${EGRET:-${CARGO_TARGET_DIR:-target}/release/egret}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
limit=()
[ "$tokens" != 0 ] && limit=(--max-tokens "$tokens")

# name, then the eval arguments after the model; the JSON goes to $out/name.json.
run() {
  local name="$1"; shift
  local cmd=(egret eval "$model" --perplexity "$text" --threads "$threads" --json "$@")
  echo "# $name: ${cmd[*]}" | sed "s|$cache|~/.cache/egret|g" >&2
  "$egret" "${cmd[@]:1}" >"$out/$name.json"
}

run full --window 2048 "${limit[@]}"
run streaming --stream --chunk "$chunk" --kv-policy streaming:4,320 "${limit[@]}"
run sepllm --stream --chunk "$chunk" --kv-policy sepllm:4,32,224,324 "${limit[@]}"
run sepllm_int8 --stream --chunk "$chunk" --kv-policy sepllm:4,32,224,324+int8 "${limit[@]}"
run decode_full --stream --chunk 1 --kv-policy full --max-tokens "$decode_tokens"
run decode_streaming --stream --chunk 1 --kv-policy streaming:4,320 --max-tokens "$decode_tokens"
run decode_sepllm --stream --chunk 1 --kv-policy sepllm:4,32,224,324 --max-tokens "$decode_tokens"
run decode_sepllm_int8 --stream --chunk 1 --kv-policy sepllm:4,32,224,324+int8 --max-tokens "$decode_tokens"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def load(name):
    return json.load(open(f"{out}/{name}.json"))["perplexity"]
rows = [
    ("full attention, 2048-token windows", "full"),
    ("StreamingLLM 4 + 320", "streaming"),
    ("SepLLM 4 / 32 / 224 / 324", "sepllm"),
    ("SepLLM 4 / 32 / 224 / 324, int8 KV", "sepllm_int8"),
]
print("| policy | protocol | tokens | perplexity | peak KV | peak positions | tokens/s | decode tok/s (first %d tokens, 1 per step) |"
      % load("decode_full")["tokens"])
print("|---|---|---|---|---|---|---|---|")
for label, name in rows:
    p = load(name)
    d = load("decode_" + name) if name != "full" else load("decode_full")
    proto = "windows of %d" % p["window"] if p["protocol"] == "windows" else "stream, %d per step" % p["window"]
    print("| %s | %s | %d | %.3f | %.2f MiB | %s | %.1f | %.1f |" % (
        label, proto, p["tokens"], p["perplexity"], p["peak_kv_bytes"] / 2**20,
        p.get("peak_kv_len", p["window"]), p["tokens_per_s"], d["tokens_per_s"]))
print()
print("decode runs (token by token): " + ", ".join(
    "%s ppl %.3f, peak KV %.2f MiB" % (n, load(n)["perplexity"], load(n)["peak_kv_bytes"] / 2**20)
    for n in ["decode_full", "decode_streaming", "decode_sepllm", "decode_sepllm_int8"]))
PY
