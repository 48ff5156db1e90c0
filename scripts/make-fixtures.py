#!/usr/bin/env python3
"""Make the expected outputs of the real-model tests with onnxruntime.

For each case, writes tests/fixtures/real/<case>/{input_<name>.npy, output_<i>.npy}
and a manifest.json naming the model file (relative to ~/.cache/egret/models),
the input names in graph order and the output names. Inputs are deterministic
(seeded numpy). onnxruntime runs with graph optimisations disabled, so the
reference is the plain ONNX semantics. Needs: pip install onnxruntime numpy.

Run scripts/fetch-models.sh silero ppocr first.
"""
import json
import os
import shutil
import sys

import numpy as np
import onnxruntime as ort

CACHE = os.environ.get("EGRET_CACHE", os.path.expanduser("~/.cache/egret"))
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "real")


def signal(n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def image(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def state(shape, seed):
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


CASES = {
    "silero_vad_16k": ("silero-vad/silero_vad.onnx",
                       {"input": signal(512, 1)[None], "state": state((2, 1, 128), 2), "sr": np.array(16000, np.int64)}),
    "silero_vad_8k": ("silero-vad/silero_vad.onnx",
                      {"input": signal(256, 3)[None], "state": state((2, 1, 128), 4), "sr": np.array(8000, np.int64)}),
    "silero_vad_16k_op15": ("silero-vad/silero_vad_16k_op15.onnx",
                            {"input": signal(512, 5)[None], "state": state((2, 1, 128), 6), "sr": np.array(16000, np.int64)}),
    "silero_vad_16k_sequence": ("silero-vad/silero_vad_16k_sequence.onnx",
                                {"input": signal(576 * 3, 7).reshape(3, 576), "h": state((1, 1, 128), 8), "c": state((1, 1, 128), 9)}),
    "silero_vad_half": ("silero-vad/silero_vad_half.onnx",
                        {"input": signal(512, 10)[None], "state": state((2, 1, 128), 11)}),
    "silero_vad_op18_ifless": ("silero-vad/silero_vad_op18_ifless.onnx",
                               {"input": signal(512, 12)[None], "sr": np.array(16000, np.int64), "state": state((2, 1, 128), 13)}),
    "silero_vad_openvino_16k": ("silero-vad/silero_vad_openvino_16k.onnx",
                                {"input": signal(576, 14)[None], "state": state((2, 1, 128), 15)}),
    "ppocr_det": ("ppocr/ch_PP-OCRv4_det_infer.onnx", {"x": image((1, 3, 64, 96), 16)}),
    "ppocr_rec": ("ppocr/ch_PP-OCRv4_rec_infer.onnx", {"x": image((1, 3, 48, 80), 17)}),
    "ppocr_cls": ("ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx", {"x": image((1, 3, 48, 192), 18)}),
}


def main():
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    for case, (model, feeds) in CASES.items():
        path = os.path.join(CACHE, "models", model)
        if not os.path.exists(path):
            sys.exit(f"{path} missing: run scripts/fetch-models.sh silero ppocr")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        outs = sess.run(None, {k: feeds[k] for k in names})
        d = os.path.join(OUT, case)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for k in names:
            np.save(os.path.join(d, f"input_{k}.npy"), feeds[k])
        for i, o in enumerate(outs):
            np.save(os.path.join(d, f"output_{i}.npy"), o)
        manifest = {"model": model, "inputs": names, "outputs": [o.name for o in sess.get_outputs()],
                    "onnxruntime": ort.__version__}
        with open(os.path.join(d, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        print(case, [o.shape for o in outs])


if __name__ == "__main__":
    main()
