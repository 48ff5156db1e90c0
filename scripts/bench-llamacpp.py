"""llama.cpp as a peer for egret's SmolLM2 quantization table (issue 5).

    scripts/setup-llama-cpp.sh
    PPL_WINDOWS=2 ~/.cache/egret/venv/bin/python scripts/bench-llamacpp.py OUT

Requantizes the SmolLM2 GGUF (Q4_1 at source) with llama.cpp's own quantizer
(llama-cpp-python's `llama_model_quantize`, allow_requantize) to Q8_0 and
Q4_0, then for the source and both files measures:
- perplexity with egret's evaluator (`egret eval FILE --perplexity DEVIL
  --windows N`, exactly as scripts/bench-quantize.py does), so the rows compare
  with egret's own;
- perplexity with llama.cpp's own forward pass under the same protocol
  (non-overlapping 512-token windows from the start of the text, no BOS, each
  window from an empty cache, logits at j score token j+1, log-softmax in f64),
  on llama.cpp's own tokenization of the text;
- llama.cpp's decode speed at 1 thread, 64 greedy tokens (EOS ignored) after
  the same prompt as bench-quantize.py, best of 3, and egret's (`egret generate`, 32
  tokens, 1 thread, as bench-quantize.py);
- file size and bits per weight (tensor data bits / weights).
Prints a Markdown table and writes the same to OUT/llamacpp.json. The egret
binary is $EGRET_BIN (default target/release/egret).
"""

import collections
import ctypes
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import llama_cpp
from gguf import GGUFReader

EGRET = os.environ.get("EGRET_BIN", "target/release/egret")
CACHE = os.environ.get("EGRET_CACHE", os.path.expanduser("~/.cache/egret"))
SMOL = f"{CACHE}/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEVIL = f"{CACHE}/texts/devils_dictionary.txt"
WINDOWS = os.environ.get("PPL_WINDOWS", "4")
WINDOW = 512
PROMPT = "Once upon a time, in a small village by the sea,"
DECODE_TOKENS = 64
FTYPES = {"q8_0": 7, "q4_0": 2}  # llama_ftype: LLAMA_FTYPE_MOSTLY_Q8_0, _Q4_0


def egret(*args):
    r = subprocess.run([EGRET, *args, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"egret {' '.join(args)} failed:\n{r.stderr}")
    return json.loads(r.stdout)


def quantize(src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    t = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize({src}, ftype {ftype}) returned {rc}")
    return time.perf_counter() - t


def weights(path):
    """(weights, tensor data bytes, {ggml type: tensor count}) of a GGUF file."""
    r = GGUFReader(path)
    n = sum(int(t.n_elements) for t in r.tensors)
    b = sum(int(t.n_bytes) for t in r.tensors)
    types = collections.Counter(t.tensor_type.name for t in r.tensors)
    return n, b, dict(sorted(types.items()))


def llama_perplexity(path):
    """Mean NLL over the first WINDOWS windows, egret's protocol, llama.cpp's logits."""
    llm = llama_cpp.Llama(model_path=path, n_ctx=WINDOW, n_batch=WINDOW, n_ubatch=WINDOW,
                          logits_all=True, n_threads=2, verbose=False)
    text = open(DEVIL, encoding="utf-8").read()
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    chunks = [ids[i:i + WINDOW] for i in range(0, len(ids), WINDOW)]
    chunks = [c for c in chunks if len(c) >= 2][:int(WINDOWS)]
    nll, predicted = 0.0, 0
    for c in chunks:
        llm.reset()
        llm.eval(c)
        logits = np.asarray(llm.scores[:len(c) - 1], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))
        nll += float((lse - logits[np.arange(len(c) - 1), c[1:]]).sum())
        predicted += len(c) - 1
    del llm
    return math.exp(nll / predicted), len(ids)


def llama_decode(path):
    """Tokens/s of llama.cpp decoding DECODE_TOKENS greedy tokens at 1 thread."""
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=1, n_threads_batch=1,
                          verbose=False)
    prompt = llm.tokenize(PROMPT.encode("utf-8"), add_bos=False, special=False)
    best = 0.0
    for _ in range(3):  # best of 3: the machine is shared
        llm.reset()
        llm.eval(prompt)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t = time.perf_counter()
        for _ in range(DECODE_TOKENS):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        best = max(best, DECODE_TOKENS / (time.perf_counter() - t))
    del llm
    return best


def row(label, path, quantize_s, p0=None, lp0=None):
    n, b, types = weights(path)
    ev = egret("eval", path, "--perplexity", DEVIL, "--windows", WINDOWS)["perplexity"]
    lp, ltoks = llama_perplexity(path)
    gen = egret("generate", path, "--prompt", PROMPT, "--max-tokens", "32", "--threads", "1")
    p = ev["perplexity"]
    return {
        "label": label, "file": path, "mb": os.path.getsize(path) / 1e6,
        "bpw": 8 * b / n, "weights": n, "tensor_types": types,
        "quantize_s": quantize_s,
        "egret_ppl": p, "egret_dppl_pct": 100 * (p / p0 - 1) if p0 else 0.0,
        "egret_text_tokens": ev["text_tokens"],
        "llamacpp_ppl": lp, "llamacpp_dppl_pct": 100 * (lp / lp0 - 1) if lp0 else 0.0,
        "llamacpp_text_tokens": ltoks,
        "llamacpp_decode_tok_s": llama_decode(path),
        "egret_decode_tok_s": gen["decode"]["tokens_per_s"],
    }


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    src = row("source (Q4_1)", SMOL, None)
    rows = [src]
    for name, ftype in FTYPES.items():
        path = f"{out}/smol-llamacpp-{name}.gguf"
        secs = quantize(SMOL, path, ftype)
        rows.append(row(f"llama.cpp {name}", path, secs, src["egret_ppl"], src["llamacpp_ppl"]))
    result = {
        "llama_cpp_python": llama_cpp.__version__, "model": SMOL, "text": DEVIL,
        "windows": int(WINDOWS), "window": WINDOW, "decode_tokens": DECODE_TOKENS,
        "rows": rows,
    }
    with open(f"{out}/llamacpp.json", "w") as f:
        json.dump(result, f, indent=2)
    print(f"\n### SmolLM2-135M requantized by llama.cpp (llama-cpp-python {llama_cpp.__version__}; "
          f"Devil's Dictionary, {WINDOWS}×{WINDOW} tokens)\n")
    print("| weights | MB | bpw | quantize s | egret ppl | Δppl | llama.cpp ppl | Δppl (llama.cpp) "
          f"| llama.cpp decode tok/s ({DECODE_TOKENS} tok) | egret decode tok/s (32 tok) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        qs = "-" if r["quantize_s"] is None else f"{r['quantize_s']:.1f}"
        print(f"| {r['label']} | {r['mb']:.1f} | {r['bpw']:.2f} | {qs} | {r['egret_ppl']:.3f} "
              f"| {r['egret_dppl_pct']:+.2f}% | {r['llamacpp_ppl']:.3f} | {r['llamacpp_dppl_pct']:+.2f}% "
              f"| {r['llamacpp_decode_tok_s']:.1f} | {r['egret_decode_tok_s']:.1f} |")
    print("\nTensor types: " + "; ".join(
        f"{r['label']}: " + ", ".join(f"{k} {v}" for k, v in r["tensor_types"].items()) for r in rows))
    print(f"Text tokens: egret {src['egret_text_tokens']}, llama.cpp {src['llamacpp_text_tokens']}.")


if __name__ == "__main__":
    main()
