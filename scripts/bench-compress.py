"""Issue-8 compression results (run through scripts/bench-compress.sh).

`bench-compress.sh OUT [minilm] [smollm2]` (both by default).

SmolLM2: size, perplexity on the Devil's Dictionary (calibration on the Jargon
File, 8 windows) and 1-thread decode speed of each family at one to three
strengths, the uniform quantization baselines and a budgeted mix.

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
# Structured shares tried as candidates under the budget (each (FFN, heads)
# pair runs the per-weight choice on its pruned model).
STRUCTURED = ["--prune-ffn", "0,25", "--prune-heads", "0,25"]


def summary(rep):
    """(MB before, MB after, bits per weight or None, seconds, schemes) of an optimize report."""
    q, st = rep.get("quantize"), rep.get("structured")
    mix = {}
    for layer in (q or {}).get("layers", []):
        mix[layer["scheme"]] = mix.get(layer["scheme"], 0) + 1
    if st:
        for kind, name in [("ffn", "FFN channels"), ("heads", "heads")]:
            gs = [g for g in st["groups"] if g["kind"] == kind]
            if gs:
                mix[f"{name} {sum(g['after'] for g in gs)}/{sum(g['before'] for g in gs)}"] = 1
    before = (st or q)["model_bytes_before"] / 1e6
    after = (q or st)["model_bytes_after"] / 1e6
    secs = (q or {}).get("seconds", 0) + (st or {}).get("seconds", 0)
    schemes = ", ".join(f"{k} ×{v}" if v > 1 else k for k, v in sorted(mix.items()))
    return before, after, q["bits_per_weight"] if q else None, secs, schemes


def run(label, args, pairs):
    out = f"{OUT}/minilm-{len(os.listdir(OUT))}.egret"
    rep, _ = bq.egret("optimize", bq.MINILM, "-o", out, *args, "--calibration", pairs)
    before, after, bpw, secs, schemes = summary(rep)
    BEFORE[0] = before
    ev, _ = bq.egret("eval", out, "--similarity", pairs, "--reference", bq.MINILM)
    a = ev["similarity"]["agreement"]
    return (label, after, bpw or 32.0, a["mean_cosine"], a["min_cosine"], secs, schemes)


SMOL_RUNS = [
    ("uniform q8_0", ["--quantize", "q8_0"]),
    ("uniform q4_0", ["--quantize", "q4_0"]),
    ("FFN channels −10 % (global)", ["--prune-ffn", "10", "--prune-allocation", "global"]),
    ("FFN channels −25 % (global)", ["--prune-ffn", "25", "--prune-allocation", "global"]),
    ("FFN channels −25 % (uniform)", ["--prune-ffn", "25"]),
    ("FFN −25 % + q8_0", ["--prune-ffn", "25", "--prune-allocation", "global", "--quantize", "q8_0"]),
    ("query heads −33 %", ["--prune-heads", "33"]),
    ("Wanda 50 %", ["--prune", "wanda50"]),
    ("Wanda 2:4", ["--prune", "wanda-2of4"]),
    ("SparseGPT 50 %", ["--prune", "sparsegpt50"]),
    ("activation sparsity 0 (dense f32)", ["--act-sparsity", "0"]),
    ("activation sparsity 40 %", ["--act-sparsity", "40"]),
    ("low rank 75 %", ["--lowrank", "75"]),
    ("low rank 50 %", ["--lowrank", "50"]),
    ("Kronecker 50 %", ["--kronecker", "50"]),
    # Kronecker is left out of the mix here: its alternative takes ~10 min to
    # build on SmolLM2 and, like low rank, costs thousands of perplexity
    # points at 50 % (its own row), so a 5 % budget never picks it.
    ("mix, budget 5 %", ["--quantize", "int8,q4_0", "--prune", "wanda50", "--lowrank", "50",
                         "--budget", "5%"]),
]


def smollm2():
    """The SmolLM2 table: each family on the GGUF model, against its source."""
    def decode(path):
        gen, _ = bq.egret("generate", path, "--prompt",
                          "Once upon a time, in a small village by the sea,",
                          "--max-tokens", "32", "--threads", "1")
        return gen["decode"]["tokens_per_s"]

    base, _ = bq.egret("eval", bq.SMOL, "--perplexity", bq.DEVIL, "--windows", bq.WINDOWS)
    p0 = base["perplexity"]["perplexity"]
    t0 = decode(bq.SMOL)
    rows = []
    for label, args in SMOL_RUNS:
        out = f"{OUT}/smol-{len(os.listdir(OUT))}.egret"
        rep, _ = bq.egret("optimize", bq.SMOL, "-o", out, *args, "--calibration", bq.JARGON,
                          "--calibration-windows", "8")
        before, after, bpw, secs, schemes = summary(rep)
        ev, _ = bq.egret("eval", out, "--perplexity", bq.DEVIL, "--windows", bq.WINDOWS)
        p = ev["perplexity"]["perplexity"]
        rows.append((label, after, p, 100 * (p / p0 - 1), decode(out), secs, schemes))
        print(f"  {label}: {after:.1f} MB, ppl {p:.3f}", file=sys.stderr)
    print(f"\n### SmolLM2-135M (perplexity on the Devil's Dictionary, {bq.WINDOWS}×512 tokens; "
          "calibration on the Jargon File, 8×256 tokens; decode: 32 tokens, 1 thread)\n")
    print("| variant | MB of constants | perplexity | Δppl | decode tok/s | vs source | optimize s | chosen |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print(f"| source GGUF (Q4_1 layers, Q8_0 embedding) | {os.path.getsize(bq.SMOL) / 1e6:.1f} | "
          f"{p0:.3f} | 0 | {t0:.1f} | 1.00× | - | |")
    for label, mb, p, d, tps, secs, schemes in rows:
        print(f"| {label} | {mb:.1f} | {p:.3f} | {d:+.1f} % | {tps:.1f} | {tps / t0:.2f}× | "
              f"{secs:.1f} | {schemes} |")


def minilm():
    pairs = bq.pairs_file()
    rows = []
    for pct in ["75", "50", "25"]:
        rows.append(run(f"low rank {pct} %", ["--lowrank", pct], pairs))
    for pct in ["75", "50", "25"]:
        rows.append(run(f"Kronecker {pct} %", ["--kronecker", pct], pairs))
    for pct in ["25", "50"]:
        rows.append(run(f"FFN channels −{pct} %", ["--prune-ffn", pct], pairs))
    for pct in ["25", "50"]:
        rows.append(run(f"heads −{pct} % (with keys and values)", ["--prune-heads", pct], pairs))
    for scheme in ["int8", "q4_0"]:
        rows.append(run(f"uniform {scheme}", ["--quantize", scheme], pairs))
    for budget in ["0.05%", "0.5%", "2%"]:
        rows.append(run(f"mix, budget {budget}", [*MIX, "--budget", budget], pairs))
    for budget in ["0.5%", "2%"]:
        rows.append(run(f"mix + structured candidates, budget {budget}",
                        [*MIX, *STRUCTURED, "--budget", budget], pairs))
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


which = sys.argv[2:] or ["minilm", "smollm2"]
if "minilm" in which:
    minilm()
if "smollm2" in which:
    smollm2()
