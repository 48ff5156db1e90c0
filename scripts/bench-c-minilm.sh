#!/usr/bin/env bash
# Latency of all-MiniLM-L6-v2 (batch 1, seq T) on one thread: the standalone C
# program of `egret build --target host --weights bin` (cc -O2 -march=native,
# the generated Makefile's flags) against `egret bench --backend jit --threads 1
# --compare onnxruntime` (the JIT and onnxruntime timed in the same run, on the
# same inputs). Prints a Markdown table (the one in docs/c_backend.md).
# Needs: scripts/fetch-models.sh minilm, scripts/setup-python.sh (onnxruntime).
#
#   scripts/bench-c-minilm.sh              # T = 8 and 128
#   SEQS="32" RUNS=50 scripts/bench-c-minilm.sh
#   EGRET=target/release/egret scripts/bench-c-minilm.sh   # an egret already built
#   EGRET_BUILD=target/debug/egret ...   # another egret for `egret build` only (the
#                                        # C it writes does not depend on the profile)
#
# The C program is timed by a small driver (written here) that includes the
# generated main.c with its `main` renamed: the harness reads weights.bin and
# the inputs and runs once (the warm-up), then `egret_model` runs RUNS more
# times under clock_gettime(CLOCK_MONOTONIC).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EGRET_CACHE:-$HOME/.cache/egret}"
model="$cache/models/minilm"
seqs="${SEQS:-8 128}"
runs="${RUNS:-100}"
if [ -z "${EGRET:-}" ]; then
  cargo build --release --quiet --bin egret
  EGRET=target/release/egret
fi
EGRET_BUILD="${EGRET_BUILD:-$EGRET}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cat >"$out/bench.c" <<'C'
/* Times egret_model: the generated harness (main.c, its main renamed) loads
 * the weights and inputs and runs once, then RUNS timed runs follow. Prints
 * the minimum and median in milliseconds. */
#define main egret_harness_main
#include "main.c"
#undef main
#include <stdlib.h>
#include <time.h>

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static double ms[10000];
    const void *inputs[EGRET_NUM_INPUTS + 1] = {NULL};
    void *outputs[EGRET_NUM_OUTPUTS + 1] = {NULL};
    const void *w = NULL;
    long runs = atol(getenv("RUNS") ? getenv("RUNS") : "100"), r;
    int i;
    if (runs < 1 || runs > 10000 || egret_harness_main(argc, argv) != 0)
        return 1;
#if !EGRET_WEIGHTS_INLINE
    w = weights.bytes;
#endif
    for (i = 0; i < EGRET_NUM_INPUTS; i++)
        inputs[i] = io.bytes + egret_inputs[i].io_offset;
    for (i = 0; i < EGRET_NUM_OUTPUTS; i++)
        outputs[i] = io.bytes + egret_outputs[i].io_offset;
    for (r = 0; r < runs; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (egret_model(w, inputs, outputs) != 0)
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms[r] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
    }
    qsort(ms, (size_t)runs, sizeof ms[0], cmp);
    printf("%.3f %.3f\n", ms[0], ms[runs / 2]);
    return 0;
}
C

echo "| T | C min ms | C median ms | JIT median ms | onnxruntime median ms | C / onnxruntime | C / JIT |"
echo "|---|---|---|---|---|---|---|"
for t in $seqs; do
  d="$out/t$t"
  mkdir -p "$d"
  python3 - "$d" "$t" <<'PY'
import sys
import numpy as np
d, t = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
np.save(f"{d}/input_ids.npy", rng.integers(100, 30000, (1, t), dtype=np.int64))
np.save(f"{d}/attention_mask.npy", np.ones((1, t), np.int64))
np.save(f"{d}/token_type_ids.npy", np.zeros((1, t), np.int64))
PY
  ins=(-i "input_ids=$d/input_ids.npy" -i "attention_mask=$d/attention_mask.npy" -i "token_type_ids=$d/token_type_ids.npy")
  "$EGRET_BUILD" build "$model" --target host --weights bin --compile always -o "$d/build" "${ins[@]}" >/dev/null
  cc -O2 -march=native -std=c99 -fno-strict-aliasing -D_POSIX_C_SOURCE=199309L \
    -I "$d/build" -o "$d/build/bench" "$out/bench.c" "$d/build/model.o" -lm
  read -r cmin cmed < <(RUNS="$runs" "$d/build/bench" "$d/input_ids.npy" "$d/attention_mask.npy" \
    "$d/token_type_ids.npy" "$d/out.npy")
  "$EGRET" bench "$model" --backend jit --threads 1 --compare onnxruntime --json "${ins[@]}" >"$d/jit.json"
  python3 - "$d/jit.json" "$t" "$cmin" "$cmed" <<'PY'
import json
import sys
j = json.load(open(sys.argv[1]))
t, cmin, cmed = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
jit, ort = j["median_ms"], j["compare"]["median_ms"]
print(f"| {t} | {cmin:.2f} | {cmed:.2f} | {jit:.2f} | {ort:.2f} | {cmed / ort:.2f} | {cmed / jit:.2f} |")
PY
done
