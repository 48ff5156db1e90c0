#!/usr/bin/env python3
"""Run ONNX models with onnxruntime for egret's export tests.

Usage: ort-check.py MANIFEST.json

MANIFEST is a JSON list of cases, each {"model": FILE.onnx, "inputs": [FILE.npy,
...] (in graph-input order), "out_dir": DIR}. For each case this writes
DIR/output_<i>.npy for every graph output, or DIR/error.txt with the reason
onnxruntime refused or failed; one bad case does not stop the others.
onnxruntime runs on CPU with graph optimisations disabled, so the outputs are
the plain ONNX semantics of the file. Run it with the venv that
scripts/setup-python.sh makes (onnxruntime 1.32, numpy).
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort


def run_case(case):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(case["model"], opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(case["inputs"]):
        raise ValueError(f"model has {len(names)} inputs, {len(case['inputs'])} given")
    feeds = {n: np.load(p, allow_pickle=False) for n, p in zip(names, case["inputs"])}
    for i, out in enumerate(sess.run(None, feeds)):
        np.save(os.path.join(case["out_dir"], f"output_{i}.npy"), np.asarray(out))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    for case in cases:
        os.makedirs(case["out_dir"], exist_ok=True)
        try:
            run_case(case)
        except Exception as e:  # reported per case, read by the Rust test
            with open(os.path.join(case["out_dir"], "error.txt"), "w") as f:
                f.write(f"{type(e).__name__}: {e}\n")
    print(f"ort-check: onnxruntime {ort.__version__}, {len(cases)} cases")


if __name__ == "__main__":
    main()
