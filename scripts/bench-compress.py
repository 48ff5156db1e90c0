"""Issue-8 compression results (run through scripts/bench-compress.sh).

MiniLM: size and mean / minimum cosine of each sentence's embedding to the f32
model's, for low-rank and Kronecker factorizations at three strengths, the
uniform quantization schemes, and budgeted mixes of all of them chosen by one
`egret optimize --budget`; then a `--pareto` sweep of the same mix. Prints
Markdown tables; the sweep's HTML page lands in the output folder.
"""

import importlib.util
import os
import sys

spec = importlib.util.spec_from_file_location(
    "bench_quantize", os.path.join(os.path.dirname(__file__), "bench-quantize.py"))
bq = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bq)

OUT = sys.argv[1]
BEFORE = [0.0]
MIX = ["--quantize", "int8,q4_0", "--lowrank", "50,25", "--kronecker", "50"]


def run(label, args, pairs):
    out = f"{OUT}/minilm-{len(os.listdir(OUT))}.egret"
    rep, _ = bq.egret("optimize", bq.MINILM, "-o", out, *args, "--calibration", pairs)
    q = rep["quantize"]
    BEFORE[0] = q["model_bytes_before"] / 1e6
    ev, _ = bq.egret("eval", out, "--similarity", pairs, "--reference", bq.MINILM)
    a = ev["similarity"]["agreement"]
    mix = {}
    for layer in q["layers"]:
        mix[layer["scheme"]] = mix.get(layer["scheme"], 0) + 1
    return (label, q["model_bytes_after"] / 1e6, q["bits_per_weight"], a["mean_cosine"],
            a["min_cosine"], q["seconds"], ", ".join(f"{k} ×{v}" for k, v in sorted(mix.items())))


def main():
    pairs = bq.pairs_file()
    rows = []
    for pct in ["75", "50", "25"]:
        rows.append(run(f"low rank {pct} %", ["--lowrank", pct], pairs))
    for pct in ["75", "50", "25"]:
        rows.append(run(f"Kronecker {pct} %", ["--kronecker", pct], pairs))
    for scheme in ["int8", "q4_0"]:
        rows.append(run(f"uniform {scheme}", ["--quantize", scheme], pairs))
    for budget in ["0.05%", "0.5%", "2%"]:
        rows.append(run(f"mix, budget {budget}", [*MIX, "--budget", budget], pairs))
    print("\n### MiniLM (60 sentence pairs; cosine to the f32 embedding of the same sentence)\n")
    print("| variant | MB | bits/weight | mean cosine | min cosine | optimize s | schemes chosen |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print(f"| f32 | {BEFORE[0]:.2f} | 32 | 1 | 1 | - | |")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.5f} | {r[4]:.5f} | {r[5]:.1f} | {r[6]} |")
    pareto = f"{OUT}/pareto"
    bq.egret("optimize", bq.MINILM, "-o", f"{OUT}/minilm-pareto.egret", *MIX, "--calibration",
             pairs, "--pareto", pareto, "--pareto-points", "6")
    import json
    rep = json.load(open(f"{pareto}/pareto.json"))
    print(f"\n### `--pareto` sweep of the mix ({pareto}/pareto.html)\n")
    print("| variant | MB | bits/weight | predicted | measured 1 − cosine | schemes |")
    print("|---|---:|---:|---:|---:|---|")
    for v in rep["variants"]:
        mix = ", ".join(f"{k} ×{n}" for k, n in v["schemes"].items())
        print(f"| {v['label']} | {v['model_bytes'] / 1e6:.2f} | {v['bits_per_weight']:.2f} | "
              f"{v['predicted_err']:.2e} | {v['measured']:.2e} | {mix} |")


main()
