"""SmolLM2-135M decode speed: egret against onnxruntime, and the roofline.

Run through scripts/bench-decode.sh, which exports the ONNX graph and passes:

    bench-decode.py EGRET MODEL.gguf MODEL.onnx TMPDIR [--json]

Environment: TOKENS (default 64), THREADS (default "1 2"), BACKENDS (default
"interp jit"), RUNS (default 1; best of), PROMPT, STEP (default 1: also time
one decode step of the exported graph with `egret bench --compare onnxruntime`).

For each thread count T:
  * `egret bench --bandwidth --threads T --json`: the read bandwidth (best pass
    at T threads), the roofline.
  * `egret generate MODEL --backend B --threads T --json` on the GGUF (egret's
    own graph), and on the exported .onnx when `generate` accepts it.
  * onnxruntime on the exported .onnx: prefill the prompt ids egret reported,
    then greedy decode with the KV cache (present.* fed back as
    past_key_values.*), as many decode steps as egret made. Only session.run is
    timed; a fresh session per run, no warm-up (like a fresh `egret generate`).
    intra_op_num_threads=T, inter_op_num_threads=1, sequential, default graph
    optimisations. Two configurations:
      - "default": as above. onnxruntime does not constant-fold the
        DequantizeLinear of the tied embedding (it keeps DQ nodes for its QDQ
        fusions), so it dequantizes the 49152x576 table on every step;
      - "dq folded": plus the session config entry session.disable_quant_qdq=1,
        which lets constant folding fold that DequantizeLinear at load, as
        egret does. This is the f32-equivalent peer, so the "vs onnxruntime"
        column divides by the faster onnxruntime row of the same thread count.
  * with STEP=1, `egret bench` on the exported .onnx at one decode shape
    (input_ids [1,1], the real KV cache after the prompt and half the tokens),
    with `--compare onnxruntime` (default options; same inputs, same invocation,
    gives the max output difference), and the "dq folded" session timed here on
    the same feeds (3 warm-up runs, median of 20).

With SCHEME (int8, q4_0, ...), bench-decode.sh first quantizes the GGUF with
`egret optimize --quantize SCHEME` (no calibration), and MODEL is that .egret:
egret runs its quantized kernels, onnxruntime its QDQ / MatMulNBits export.
Bytes per token are then every weight at its stored size, except a table that
only a Gather reads (one row per token); scales and zero points included.

Otherwise, bytes read per decode token: every weight of the exported graph counted once,
at its f32 size (numel x 4). The tied token embedding is stored in the ONNX file
as int8 blocks + scales behind a DequantizeLinear; it is counted once at its f32
size (49152 x 576 x 4 B = 113 MB), because each token reads all of it as the
f32 LM head; the embedding Gather reads one row (2.3 KB), which is not counted
again, and the block scales are not counted. int64 shape constants are skipped.
Achieved GB/s = bytes/token x decode tok/s; fraction = achieved / probe.
"""

import json
import mmap
import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

EGRET, GGUF, ONNX, TMP = sys.argv[1:5]
AS_JSON = "--json" in sys.argv[5:]
TOKENS = int(os.environ.get("TOKENS", "64"))
THREADS = [int(t) for t in os.environ.get("THREADS", "1 2").split()]
BACKENDS = os.environ.get("BACKENDS", "interp jit").split()
RUNS = int(os.environ.get("RUNS", "1"))
STEP = os.environ.get("STEP", "1") != "0"
PROMPT = os.environ.get("PROMPT", "Once upon a time, in a small village by the sea,")
SCHEME = os.environ.get("SCHEME", "")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def egret(*args, check=True):
    r = subprocess.run([EGRET, *args], capture_output=True, text=True)
    if r.returncode != 0:
        if check:
            sys.exit(f"error: egret {' '.join(args)} failed:\n{r.stderr.strip()}")
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        return None, last.removeprefix("error: ")
    return json.loads(r.stdout), None


# ---------------------------------------------------------------------------
# Weight bytes of the ONNX graph: a minimal protobuf walk (no `onnx` package).


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf, start, end):
    """(field number, wire type, value or (begin, end)) of one message."""
    i = start
    while i < end:
        key, i = varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(buf, i)
            yield num, wire, v
        elif wire == 2:
            n, i = varint(buf, i)
            yield num, wire, (i, i + n)
            i += n
        elif wire == 1:
            yield num, wire, None
            i += 8
        elif wire == 5:
            yield num, wire, None
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


def weight_bytes(path):
    """Bytes/token as documented above, plus the tensor count and file bytes."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        graph = next(v for n, w, v in fields(buf, 0, len(buf)) if n == 7 and w == 2)
        inits, dq = [], {}  # dq: initializer name -> role in a DequantizeLinear
        readers, dq_out = {}, {}  # value -> op types reading it; DQ input -> output
        for num, wire, span in fields(buf, *graph):
            if num == 5 and wire == 2:  # TensorProto
                dims, dtype, name, stored = [], 1, "", 0
                for n, w, v in fields(buf, *span):
                    if n == 1 and w == 0:
                        dims.append(v)
                    elif n == 1 and w == 2:  # packed dims
                        i, e = v
                        while i < e:
                            d, i = varint(buf, i)
                            dims.append(d)
                    elif n == 2 and w == 0:
                        dtype = v
                    elif n == 8 and w == 2:
                        name = bytes(buf[v[0]:v[1]]).decode()
                    elif n in (4, 5, 7, 9, 10, 11) and w == 2:
                        stored += v[1] - v[0]
                inits.append((name, int(np.prod(dims)) if dims else 1, dtype, stored))
            elif num == 1 and wire == 2:  # NodeProto
                ins, outs, op = [], [], ""
                for n, w, v in fields(buf, *span):
                    if n == 1 and w == 2:
                        ins.append(bytes(buf[v[0]:v[1]]).decode())
                    elif n == 2 and w == 2:
                        outs.append(bytes(buf[v[0]:v[1]]).decode())
                    elif n == 4 and w == 2:
                        op = bytes(buf[v[0]:v[1]]).decode()
                for i in ins:
                    readers.setdefault(i, set()).add(op)
                if op == "DequantizeLinear":
                    dq[ins[0]] = "x"
                    dq_out[ins[0]] = outs[0]
                    for s in ins[1:]:
                        dq[s] = "scale"
    per_token = 0
    if SCHEME:
        # Quantized: every weight at its stored size, except a table only
        # Gather reads (directly or through its DequantizeLinear): one row.
        for name, numel, dtype, stored in inits:
            users = readers.get(dq_out.get(name, name), set())
            if dtype != 7 and users != {"Gather"}:
                per_token += numel * DTYPE_BYTES.get(dtype, 4)
        return per_token, len(inits), sum(s for *_, s in inits)
    for name, numel, dtype, _ in inits:
        if dq.get(name) == "x":
            per_token += numel * 4  # read as the f32 (dequantized) LM head
        elif dq.get(name) == "scale" or dtype == 7:
            continue
        else:
            per_token += numel * DTYPE_BYTES.get(dtype, 4)
    return per_token, len(inits), sum(s for *_, s in inits)


# ---------------------------------------------------------------------------
# onnxruntime: greedy decode with the KV cache.


ORT_CONFIGS = {"default": {}, "dq folded": {"session.disable_quant_qdq": "1"}}


def ort_session(threads, config):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    for k, v in ORT_CONFIGS[config].items():
        so.add_session_config_entry(k, v)
    return ort.InferenceSession(ONNX, so, providers=["CPUExecutionProvider"])


def ort_generate(sess, prompt_ids, decode_steps, snapshot_at=None):
    """Prefill, then `decode_steps` cached steps. Returns the generated ids,
    prefill seconds, decode seconds and (at step `snapshot_at`) the feeds."""
    past_names = [i.name for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    _, heads, _, head_dim = next(i.shape for i in sess.get_inputs() if i.name == past_names[0])
    outs = [o.name for o in sess.get_outputs()]
    ids = np.array([prompt_ids], dtype=np.int64)
    feeds = {
        "input_ids": ids,
        "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None, :],
        **{n: np.zeros((1, heads, 0, head_dim), np.float32) for n in past_names},
    }
    t = time.perf_counter()
    res = sess.run(outs, feeds)
    prefill_s = time.perf_counter() - t
    out = dict(zip(outs, res))
    past = ids.shape[1]
    generated = [int(out["logits"][0, -1].argmax())]
    decode_s, snapshot = 0.0, None
    for step in range(decode_steps):
        feeds = {
            "input_ids": np.array([[generated[-1]]], np.int64),
            "position_ids": np.array([[past]], np.int64),
            **{n: out[n.replace("past_key_values.", "present.")] for n in past_names},
        }
        if step == snapshot_at:
            snapshot = feeds
        t = time.perf_counter()
        res = sess.run(outs, feeds)
        decode_s += time.perf_counter() - t
        out = dict(zip(outs, res))
        past += 1
        generated.append(int(out["logits"][0, -1].argmax()))
    return generated, prefill_s, decode_s, snapshot


def first_mismatch(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


# ---------------------------------------------------------------------------


def main():
    per_token, n_inits, file_bytes = weight_bytes(ONNX)
    log(f"exported graph: {n_inits} initializers, {file_bytes / 1e6:.1f} MB stored; "
        f"{per_token / 1e6:.1f} MB of f32 weights read per decode token")
    rows, notes, bandwidth, steps = [], [], {}, []
    for threads in THREADS:
        bw, _ = egret("bench", "--bandwidth", "--threads", str(threads), "--json")
        read = [r for r in bw["read"] if r["threads"] == threads] or bw["read"][-1:]
        bandwidth[threads] = read[0]["best_gbps"]
        log(f"T={threads}: read bandwidth {bandwidth[threads]:.2f} GB/s")

        ref_ids, prompt_ids = None, None
        native = f"{SCHEME} .egret" if SCHEME else "gguf"
        for graph, path in ((native, GGUF), ("onnx", ONNX)):
            for backend in BACKENDS:
                best = None
                for _ in range(RUNS):
                    log(f"T={threads}: egret generate {graph} --backend {backend}")
                    r, err = egret("generate", path, "--prompt", PROMPT, "--max-tokens",
                                   str(TOKENS), "--backend", backend, "--threads",
                                   str(threads), "--json", check=(graph == native))
                    if r is None:
                        break
                    if best is None or r["decode"]["tokens_per_s"] > best["decode"]["tokens_per_s"]:
                        best = r
                if best is None:
                    note = f"`egret generate` on the exported .onnx failed: {err}"
                    if note not in notes:
                        notes.append(note)
                    break  # same failure for every backend
                if ref_ids is None:
                    ref_ids, prompt_ids = best["generated_ids"], best["prompt_ids"]
                m = first_mismatch(best["generated_ids"], ref_ids)
                if m is not None:
                    notes.append(f"WARNING: egret {graph}/{backend} T={threads} ids differ from "
                                 f"egret {native}/{BACKENDS[0]} from generated position {m}")
                rows.append({
                    "runtime": "egret", "graph": graph, "backend": backend, "threads": threads,
                    "prefill_tok_s": best["prefill"]["tokens_per_s"],
                    "decode_tok_s": best["decode"]["tokens_per_s"],
                    "decode_tokens": best["decode"]["tokens"],
                    "generated_ids": best["generated_ids"],
                })

        decode_steps = len(ref_ids) - 1
        for config in ORT_CONFIGS:
            log(f"T={threads}: onnxruntime {ort.__version__} ({config}) greedy decode")
            best = None
            for _ in range(RUNS):
                sess = ort_session(threads, config)
                gen, pre_s, dec_s, snap = ort_generate(sess, prompt_ids, decode_steps,
                                                       snapshot_at=decode_steps // 2)
                del sess
                if best is None or dec_s < best[2]:
                    best = (gen, pre_s, dec_s, snap)
            gen, pre_s, dec_s, snap = best
            m = first_mismatch(gen, ref_ids)
            if m is not None:
                notes.append(f"WARNING: onnxruntime ({config}, T={threads}) greedy ids diverge from "
                             f"egret's at generated position {m}: onnxruntime {gen[m:m + 4]}, "
                             f"egret {ref_ids[m:m + 4]}")
            rows.append({
                "runtime": f"onnxruntime {ort.__version__}", "graph": "onnx", "backend": config,
                "threads": threads, "prefill_tok_s": len(prompt_ids) / pre_s,
                "decode_tok_s": decode_steps / dec_s if decode_steps else 0.0,
                "decode_tokens": decode_steps, "generated_ids": gen,
            })

        if STEP and snap is not None:
            files = []
            for name, value in snap.items():
                f = os.path.join(TMP, f"step.{name}.npy")
                np.save(f, value)
                files += ["-i", f"{name}={f}"]
            past = snap["past_key_values.0.key"].shape[2]
            sess = ort_session(threads, "dq folded")
            for _ in range(3):
                sess.run(None, snap)
            times = []
            for _ in range(20):
                t = time.perf_counter()
                sess.run(None, snap)
                times.append(time.perf_counter() - t)
            del sess
            folded_ms = 1e3 * float(np.median(times))
            for backend in BACKENDS:
                log(f"T={threads}: egret bench onnx decode step (past {past}) --backend {backend} "
                    "--compare onnxruntime")
                r, err = egret("bench", ONNX, "--backend", backend, "--threads", str(threads),
                               *files, "--compare", "onnxruntime", "--json", check=False)
                if r is None:
                    note = f"`egret bench` on the exported .onnx failed: {err}"
                    if note not in notes:
                        notes.append(note)
                    continue
                steps.append({
                    "backend": backend, "threads": threads, "past": past,
                    "egret_median_ms": r["median_ms"],
                    "ort_median_ms": r["compare"]["median_ms"],
                    "ort_folded_median_ms": folded_ms,
                    "ratio": r["compare"]["ratio"],
                    "ratio_folded": r["median_ms"] / folded_ms,
                    "max_abs_diff": r["compare"]["max_abs_diff"],
                    "first_run_ms": r.get("first_run_ms"),
                })

    ort_rate = {}
    for r in rows:
        if r["runtime"] != "egret":
            ort_rate[r["threads"]] = max(ort_rate.get(r["threads"], 0.0), r["decode_tok_s"])
    for r in rows:
        r["decode_gbps"] = per_token * r["decode_tok_s"] / 1e9
        r["roofline_fraction"] = r["decode_gbps"] / bandwidth[r["threads"]]
        r["vs_onnxruntime"] = r["decode_tok_s"] / ort_rate[r["threads"]]
    ids_match = all(first_mismatch(r["generated_ids"], rows[0]["generated_ids"]) is None
                    for r in rows)

    if AS_JSON:
        print(json.dumps({
            "prompt": PROMPT, "prompt_ids": prompt_ids, "max_tokens": TOKENS, "runs": RUNS,
            "weight_bytes_per_token": per_token, "bandwidth_gbps": bandwidth,
            "ids_match": ids_match, "rows": rows, "decode_step": steps, "notes": notes,
        }, indent=2))
        return

    print(f"Prompt {PROMPT!r} ({len(prompt_ids)} tokens), greedy, --max-tokens {TOKENS} "
          f"({rows[0]['decode_tokens']} decode steps), best of {RUNS}. "
          f"Weights read per decode token: {per_token / 1e6:.1f} MB ({'stored' if SCHEME else 'f32'}). Read bandwidth "
          f"(egret bench --bandwidth, best pass): "
          + ", ".join(f"{bandwidth[t]:.1f} GB/s at {t} thread{'s' * (t > 1)}" for t in THREADS) + ".")
    print()
    print("| runtime | graph | backend / options | threads | prefill tok/s | decode tok/s "
          "| decode GB/s | % of roofline | decode vs onnxruntime |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['runtime']} | {r['graph']} | {r['backend']} | {r['threads']} "
              f"| {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} | {r['decode_gbps']:.1f} "
              f"| {100 * r['roofline_fraction']:.0f} % | {r['vs_onnxruntime']:.2f}× |")
    print()
    print("Greedy ids: " + ("identical in every row." if ids_match else "NOT identical (see below)."))
    if steps:
        print()
        print(f"One decode step of the exported graph (input_ids [1,1], past {steps[0]['past']}), "
              "medians: `egret bench --compare onnxruntime` (onnxruntime default options, same "
              "invocation) and onnxruntime with the DequantizeLinear folded on the same feeds:")
        print()
        print("| egret backend | threads | egret ms | egret tok/s | onnxruntime ms (default) "
              "| onnxruntime ms (dq folded) | egret / onnxruntime (dq folded) | max abs diff |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in steps:
            print(f"| {s['backend']} | {s['threads']} | {s['egret_median_ms']:.2f} "
                  f"| {1e3 / s['egret_median_ms']:.1f} | {s['ort_median_ms']:.2f} "
                  f"| {s['ort_folded_median_ms']:.2f} | {s['ratio_folded']:.2f} "
                  f"| {s['max_abs_diff']:.1e} |")
    for n in notes:
        print()
        print(n)


main()
