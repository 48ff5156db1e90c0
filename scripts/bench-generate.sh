#!/usr/bin/env bash
# Measure SmolLM2-135M (Q4_1 GGUF) on egret's runtime at 1 and 2 threads:
#   - `egret generate` on a fixed prompt, greedy, --max-tokens 64: prefill and
#     decode tokens/s and the process's peak RSS;
#   - `egret eval --perplexity` on the first 4×512 tokens of the Devil's
#     Dictionary: wall time of the scoring, the perplexity and the peak RSS.
# Prints a Markdown table (the one in docs/real-models.md). Timings are the best
# of $RUNS runs (default 1). Needs: scripts/fetch-models.sh smollm2 and
# scripts/fetch-texts.sh.
#
#   scripts/bench-generate.sh
#   RUNS=3 scripts/bench-generate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
model="$cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
text="$cache/texts/devils_dictionary.txt"
prompt="Once upon a time, in a small village by the sea,"
for f in "$model" "$text"; do
  [ -f "$f" ] || { echo "error: $f is absent (run scripts/fetch-models.sh smollm2 and scripts/fetch-texts.sh)" >&2; exit 1; }
done
cargo build --release --quiet --bin egret
egret=target/release/egret
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Run a command with stdout to $1; print its peak RSS (KiB) from wait4.
run() {
  python3 - "$@" <<'PY'
import os, subprocess, sys
out = open(sys.argv[1], "w")
p = subprocess.Popen(sys.argv[2:], stdout=out)
_, status, usage = os.wait4(p.pid, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"failed: {' '.join(sys.argv[2:])}")
print(usage.ru_maxrss)
PY
}

echo "| threads | prefill tok/s | decode tok/s | generate peak RSS (MiB) | perplexity 4×512 (s) | perplexity | eval peak RSS (MiB) |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for threads in 1 2; do
  for i in $(seq "${RUNS:-1}"); do
    grss=$(run "$out/gen.$i.json" "$egret" generate "$model" --prompt "$prompt" \
      --max-tokens 64 --threads "$threads" --json)
    echo "$grss" >"$out/gen.$i.rss"
    erss=$(run "$out/eval.$i.json" "$egret" eval "$model" --perplexity "$text" \
      --window 512 --windows 4 --threads "$threads" --json)
    echo "$erss" >"$out/eval.$i.rss"
  done
  python3 - "$threads" "$out" "${RUNS:-1}" <<'PY'
import json, sys
threads, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
gen = [json.load(open(f"{out}/gen.{i}.json")) for i in range(1, runs + 1)]
ev = [json.load(open(f"{out}/eval.{i}.json")) for i in range(1, runs + 1)]
rss = lambda kind: max(int(open(f"{out}/{kind}.{i}.rss").read()) for i in range(1, runs + 1)) / 1024
g = [r for r in gen if r["decode"]["tokens"] > 0]
if len(g) < len(gen) or any(len(r["generated_ids"]) != 64 for r in gen):
    sys.exit("generation stopped before 64 tokens: pick another prompt")
p = [r["perplexity"] for r in ev]
print("| {} | {:.1f} | {:.1f} | {:.0f} | {:.1f} | {:.3f} | {:.0f} |".format(
    threads,
    max(r["prefill"]["tokens_per_s"] for r in gen),
    max(r["decode"]["tokens_per_s"] for r in gen),
    rss("gen"),
    min(x["eval_ms"] for x in p) / 1e3,
    p[0]["perplexity"],
    rss("eval")))
PY
done
if command -v llama-bench >/dev/null || command -v llama-cli >/dev/null; then
  echo
  echo "llama.cpp is installed; compare with: llama-bench -m $model -t 1,2 -n 64"
else
  echo
  echo "llama.cpp is not installed here: no llama.cpp comparison."
fi
