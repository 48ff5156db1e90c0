#!/usr/bin/env python3
"""Make the quantizer test vectors in tests/fixtures/gguf/quantize/ (committed; re-run to refresh).

Oracle: the `gguf` Python package (`pip install gguf`, tested with 0.19.0), whose
`gguf.quants.quantize` ports ggml's reference quantizers (quantize_row_q8_0_ref,
q4_0_ref, q4_1_ref). It writes

  quantize/input.f32     the f32 input (little-endian), 32-element blocks
  quantize/<type>.bin    gguf.quants.quantize(input, type) block bytes

for Q8_0, Q4_0 and Q4_1, and for egret's int4 groups i4s_g64 .. i4a_g128 the same
gguf-py Q4_0 / Q4_1 code run over groups of 64 / 128 (its quantize_blocks and
dequantize_blocks only read the block size from the class), plus

  quantize/<i4 type>.f32 that code's dequantization of the bytes

egret's quantizers must reproduce the bytes exactly, and its dequantizers the
floats (ir/src/blocks/quantize/tests.rs). The input mixes random data at several scales
with awkward blocks: all zeros, one huge value, a negative extreme, values of
equal magnitude and opposite sign, exact rounding ties, constant blocks, f16
subnormal scales and f32 subnormals.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import Q4_0, Q4_1, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf",
                   "quantize")
B = 32
rng = np.random.default_rng(20261123)


def awkward_blocks():
    small = rng.uniform(-1, 1, B)
    ties = np.arange(B, dtype=np.float64) * 0.5 - 8.0
    ties[0] = 127.0  # amax 127: Q8_0's scale is 1, so every x.5 is a rounding tie
    yield np.zeros(B)
    yield np.where(np.arange(B) == 7, 1e4, small)          # one huge value
    yield np.where(np.arange(B) == 3, -5.0, small)          # negative extreme
    yield np.where(np.arange(B) == 0, -3.0, np.where(np.arange(B) == 9, 3.0, small * 0.5))
    yield np.where(np.arange(B) == 0, 3.0, np.where(np.arange(B) == 9, -3.0, small * 0.5))
    yield ties
    yield np.full(B, 0.75)                                  # constant: Q4_1 scale 0
    yield np.full(B, -2.0)
    yield small * 1e-6                                      # f16-subnormal scales
    yield small * 1e-4
    yield np.where(np.arange(B) == 5, 1e-30, small * 1e-32)  # tiny but normal f32
    yield np.where(np.arange(B) == 4, 6e5, small)          # scale beyond f16: inf
    yield np.abs(small) + 10.0                              # all positive, offset


def main():
    os.makedirs(OUT, exist_ok=True)
    rand = [rng.standard_normal(B) * s for s in (0.02, 1.0, 30.0)]
    x = np.concatenate(list(awkward_blocks()) + rand).astype(np.float32)
    x.astype("<f4").tofile(os.path.join(OUT, "input.f32.tmp"))
    os.replace(os.path.join(OUT, "input.f32.tmp"), os.path.join(OUT, "input.f32"))
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1):
        q = quantize(x.reshape(-1, B), qtype).reshape(-1)
        path = os.path.join(OUT, f"{qtype.name.lower()}.bin")
        q.tofile(path + ".tmp")
        os.replace(path + ".tmp", path)
    for name, base, group in [("i4s_g64", Q4_0, 64), ("i4s_g128", Q4_0, 128),
                              ("i4a_g64", Q4_1, 64), ("i4a_g128", Q4_1, 128)]:
        groups = type("Group", (), {"block_size": group})
        q = base.quantize_blocks.__func__(groups, x.reshape(-1, group))
        y = base.dequantize_blocks.__func__(groups, q).astype("<f4")
        for data, ext in ((q, "bin"), (y, "f32")):
            path = os.path.join(OUT, f"{name}.{ext}")
            data.reshape(-1).tofile(path + ".tmp")
            os.replace(path + ".tmp", path)
    print(f"wrote {x.size // B} blocks to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
