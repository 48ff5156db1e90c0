"""Issue-5 quantization benchmark driver (run through scripts/bench-quantize.sh).

MiniLM: size, and mean / minimum cosine of each sentence's embedding to the f32
model's, for egret's schemes and for onnxruntime's quantize_dynamic (int8, run
here on egret's ONNX export of the same f32 model). SmolLM2: perplexity of the
Devil's Dictionary under each scheme and `auto` budgets, plus decode speed.
Prints Markdown tables.
"""

import json
import os
import re
import subprocess
import sys
import time

EGRET = "target/release/egret"
CACHE = os.environ.get("EGRET_CACHE", os.path.expanduser("~/.cache/egret"))
OUT = sys.argv[1]
MINILM = f"{CACHE}/models/minilm"
SMOL = f"{CACHE}/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEVIL = f"{CACHE}/texts/devils_dictionary.txt"
JARGON = f"{CACHE}/texts/jargon_file.txt"
WINDOWS = os.environ.get("PPL_WINDOWS", "4")


def egret(*args):
    t = time.perf_counter()
    r = subprocess.run([EGRET, *args, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"egret {' '.join(args)} failed:\n{r.stderr}")
    return json.loads(r.stdout), time.perf_counter() - t


def pairs_file():
    """60 sentence pairs: consecutive sentences of the Devil's Dictionary."""
    text = open(DEVIL, encoding="utf-8").read()
    sents = [
        " ".join(s.split())
        for s in re.split(r"(?<=[.!?])\s+", text)
        if 6 <= len(s.split()) <= 30 and s.strip()[:1].isupper()
    ]
    path = f"{OUT}/pairs.tsv"
    with open(path, "w") as f:
        for i in range(60):
            f.write(f"{sents[2 * i]}\t{sents[2 * i + 1]}\n")
    return path


def minilm(pairs):
    rows = []
    runs = [("int8", []), ("w8a8", []), ("int4", []), ("int4", ["--awq"]), ("q4_0", []),
            ("q4_0", ["--awq"]), ("q8_0", [])]
    for scheme, extra in runs:
        label = " ".join([scheme, *extra])
        out = f"{OUT}/minilm-{scheme}{''.join(extra)}.egret"
        rep, secs = egret("optimize", MINILM, "-o", out, "--quantize", scheme,
                          "--calibration", pairs, *extra)
        q = rep["quantize"]
        ev, _ = egret("eval", out, "--similarity", pairs, "--reference", MINILM)
        a = ev["similarity"]["agreement"]
        rows.append((f"egret {label}", q["model_bytes_after"] / 1e6, a["mean_cosine"],
                     a["min_cosine"], q["seconds"], ev["similarity"]["eval_ms"]))
    f32, _ = egret("eval", MINILM, "--similarity", pairs)
    ort = ort_minilm(pairs)
    print("\n### MiniLM (60 sentence pairs, 120 sentences; cosine to the f32 embedding of the same sentence)\n")
    print("| model | MB | mean cosine | min cosine | optimize s | embed 120 sentences ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| f32 | {ort['f32_mb']:.1f} | 1 | 1 | - | {f32['similarity']['eval_ms']:.0f} |")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.5f} | {r[3]:.5f} | {r[4]:.2f} | {r[5]:.0f} |")
    for label, mb, mean, low, secs in ort["rows"]:
        print(f"| {label} | {mb:.2f} | {mean:.5f} | {low:.5f} | {secs:.2f} | - |")


def ort_minilm(pairs):
    """onnxruntime's quantize_dynamic (QInt8) on egret's ONNX export of the
    f32 model, with its default per-tensor weight scales and with
    per_channel=True; returns the f32 file size and one row per setting."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer

    f32 = f"{OUT}/minilm.onnx"
    subprocess.run([EGRET, "export", MINILM, "--format", "onnx", "-o", f32], check=True, capture_output=True)
    tok = Tokenizer.from_file(f"{MINILM}/tokenizer.json")
    sents = [s for line in open(pairs) for s in line.rstrip("\n").split("\t")]

    def embed(path):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        out = []
        for s in sents:
            ids = np.array([tok.encode(s).ids], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if "token_type_ids" in names:
                feed["token_type_ids"] = np.zeros_like(ids)
            h = sess.run(None, feed)[0][0].mean(axis=0)
            out.append(h / np.linalg.norm(h))
        return np.array(out)

    a = embed(f32)
    rows = []
    for label, per_channel in [("per-tensor (default)", False), ("per_channel=True", True)]:
        q = f"{OUT}/minilm.int8.onnx"
        t = time.perf_counter()
        # Attention is left alone: its com.microsoft QAttention form does not
        # accept the ONNX Attention op egret exports (onnxruntime 1.32 rejects it).
        quantize_dynamic(f32, q, weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])
        secs = time.perf_counter() - t
        cos = (a * embed(q)).sum(axis=1)
        rows.append((f"onnxruntime quantize_dynamic QInt8, {label}", os.path.getsize(q) / 1e6,
                     float(cos.mean()), float(cos.min()), secs))
    return {"f32_mb": os.path.getsize(f32) / 1e6, "rows": rows}


def smollm2():
    base, _ = egret("eval", SMOL, "--perplexity", DEVIL, "--windows", WINDOWS)
    p0 = base["perplexity"]["perplexity"]
    rows = [["source (Q4_1 layers, Q8_0 embedding)", os.path.getsize(SMOL) / 1e6, None, p0, 0.0, 0.0, SMOL]]
    runs = [("q8_0", []), ("int8", []), ("q4_0", []), ("q4_0", ["--awq"]), ("i4a_g64", []),
            ("i4s_g128", []), ("auto", ["--budget", "1%"]), ("auto", ["--budget", "5%"])]
    for scheme, extra in runs:
        label = " ".join([scheme, *extra])
        out = f"{OUT}/smol-{scheme}{''.join(extra).replace('%', '')}.egret"
        rep, _ = egret("optimize", SMOL, "-o", out, "--quantize", scheme,
                       "--calibration", JARGON, *extra)
        q = rep["quantize"]
        if rows[0][2] is None:  # the source's bits per weight, over the same matrices
            layers = q["layers"]
            rows[0][2] = 8 * sum(l["bytes_before"] for l in layers) / sum(
                l["shape"][0] * l["shape"][1] for l in layers)
        ev, _ = egret("eval", out, "--perplexity", DEVIL, "--windows", WINDOWS)
        p = ev["perplexity"]["perplexity"]
        rows.append((label, q["model_bytes_after"] / 1e6, q["bits_per_weight"], p,
                     100 * (p / p0 - 1), q["seconds"], out))
    print(f"\n### SmolLM2-135M perplexity (Devil's Dictionary, {WINDOWS}×512 tokens; calibration on the Jargon File)\n")
    print("| weights | MB of constants | bits per weight | perplexity | Δppl | optimize s | decode tok/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, mb, bpw, p, d, secs, path in rows:
        gen, _ = egret("generate", path, "--prompt", "Once upon a time, in a small village by the sea,",
                       "--max-tokens", "32", "--threads", "1")
        tps = gen["decode"]["tokens_per_s"]
        print(f"| {label} | {mb:.1f} | {bpw:.2f} | {p:.3f} | {d:+.2f}% | {secs:.1f} | {tps:.1f} |")


if __name__ == "__main__":
    which = sys.argv[2:] or ["minilm", "smollm2"]
    if "minilm" in which:
        minilm(pairs_file())
    if "smollm2" in which:
        smollm2()
