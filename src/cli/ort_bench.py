"""Time an ONNX model in onnxruntime for `egret bench --compare onnxruntime`.

Usage: python ort_bench.py REQUEST.json

REQUEST is {"model": FILE.onnx, "inputs": {NAME: FILE.npy, ...}, "threads": N,
"warmup": W, "runs": R or null, "budget_s": S, "min_runs": A, "max_runs": B,
"out_dir": DIR}. The session runs on the CPU with N intra-op threads, one
inter-op thread and sequential execution, with onnxruntime's default graph
optimisations. After W warm-up runs, R timed runs (or, when R is null, runs
until S seconds have passed, at least A and at most B: egret's own protocol).
Writes DIR/output_<i>.npy from the last run and prints one JSON object:
{"version": ..., "times_ms": [...], "outputs": [...]}. Exits with status 3
and a message on stderr when onnxruntime or numpy cannot be imported.
egret embeds this file and writes it to a temporary folder to run it.
"""
import json
import os
import sys
import time

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    sys.stderr.write(f"cannot import onnxruntime and numpy: {e}\n")
    sys.exit(3)


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = req["threads"]
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(req["model"], opts, providers=["CPUExecutionProvider"])
    feeds = {n: np.load(p, allow_pickle=False) for n, p in req["inputs"].items()}
    for _ in range(req["warmup"]):
        sess.run(None, feeds)
    times = []
    start = time.perf_counter()
    while True:
        if req["runs"] is not None:
            if len(times) >= req["runs"]:
                break
        elif len(times) >= req["max_runs"] or (
            len(times) >= req["min_runs"] and time.perf_counter() - start >= req["budget_s"]
        ):
            break
        t = time.perf_counter()
        outs = sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    files = []
    for i, o in enumerate(outs):
        p = os.path.join(req["out_dir"], f"output_{i}.npy")
        np.save(p, np.asarray(o))
        files.append(p)
    print(json.dumps({"version": ort.__version__, "times_ms": times, "outputs": files}))


if __name__ == "__main__":
    main()
