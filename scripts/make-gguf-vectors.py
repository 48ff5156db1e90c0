#!/usr/bin/env python3
"""Make the GGUF test vectors in tests/fixtures/gguf/ (committed; re-run to refresh).

Oracle: the `gguf` Python package (`pip install gguf`, tested with 0.19.0), the
reference port of ggml's quantizers. For every type egret dequantizes it writes

  quants/<type>.bin   raw block bytes (or raw f32/f16/bf16 elements)
  quants/<type>.f32   gguf.quants.dequantize(bytes) as little-endian f32

The bytes mix real quantizations of random data (gguf.quants.quantize, where the
package implements it) with random block bytes whose f16 scale fields are set to
random finite values, so every bit field of every format is exercised. F16 and
BF16 cover specials (zeros, subnormals, infinities, NaNs with payloads).

It also writes tiny.gguf: a GGUF v3 file with one tensor per type (the same
bytes, shaped [rows, 2 * block]) and metadata of every value type, including
nested arrays, for the reader tests. Its metadata and tensor table are described
in tiny.json for the Rust test to check against.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf")
rng = np.random.default_rng(20241123)

# Byte offsets of the f16 scale fields in each block format.
SCALES = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
CAN_QUANTIZE = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}


def random_blocks(qtype, n):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for off in SCALES[qtype]:
        scale = (rng.standard_normal(n) * rng.choice([1e-3, 0.05, 1.0, 300.0], n)).astype(np.float16)
        b[:, off:off + 2] = scale.view(np.uint8).reshape(n, 2)
    return b


def block_bytes(qtype):
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    parts = [random_blocks(qtype, 6)]
    if qtype in CAN_QUANTIZE:
        data = (rng.standard_normal((2, block)) * np.array([[0.02], [3.0]])).astype(np.float32)
        parts.append(quantize(data, qtype).reshape(2, -1))
    return np.concatenate(parts, axis=0)  # 8 blocks (6 random + 2 real where possible)


def dense_bytes(qtype):
    if qtype == T.F32:
        x = rng.standard_normal(62).astype(np.float32)
        specials = np.array([np.inf, -0.0], dtype=np.float32)
        x = np.concatenate([x, specials])
        return x.view(np.uint8)
    if qtype == T.F16:
        x = rng.integers(0, 1 << 16, size=48, dtype=np.uint16)
        specials = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x8200, 0x0400, 0x7BFF, 0x7C00,
                             0xFC00, 0x7C01, 0x7E00, 0xFE01, 0x7FFF, 0x3C00, 0xBC00, 0x3555],
                            dtype=np.uint16)
        return np.concatenate([x, specials]).view(np.uint8)
    if qtype == T.BF16:
        x = rng.integers(0, 1 << 16, size=56, dtype=np.uint16)
        specials = np.array([0x0000, 0x8000, 0x0001, 0x7F80, 0xFF80, 0x7F81, 0x7FC0, 0x3F80],
                            dtype=np.uint16)
        return np.concatenate([x, specials]).view(np.uint8)
    raise ValueError(qtype)


def main():
    os.makedirs(os.path.join(OUT, "quants"), exist_ok=True)
    types = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1,
             T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
    writer = gguf.GGUFWriter(os.path.join(OUT, "tiny.gguf.tmp"), arch="llama")
    tensors = []
    for qtype in types:
        name = qtype.name.lower()
        if qtype in SCALES:
            raw = block_bytes(qtype)
            expected = dequantize(raw, qtype).astype(np.float32).reshape(-1)
            block = gguf.GGML_QUANT_SIZES[qtype][0]
            rows = raw.shape[0] // 2
            byte_rows = raw.reshape(rows, -1)
            writer.add_tensor(f"t.{name}", byte_rows, raw_shape=byte_rows.shape, raw_dtype=qtype)
            shape = [rows, 2 * block]
        else:
            raw = dense_bytes(qtype)
            expected = dequantize(raw, qtype).astype(np.float32).reshape(-1)
            elems = expected.size
            shape = [elems // 16, 16]
            typed = raw.view({T.F32: np.float32, T.F16: np.float16, T.BF16: np.uint16}[qtype])
            writer.add_tensor(f"t.{name}", typed.reshape(shape), raw_shape=shape,
                              raw_dtype=qtype if qtype == T.BF16 else None)
        raw.tofile(os.path.join(OUT, "quants", f"{name}.bin"))
        np.ascontiguousarray(expected, dtype="<f4").tofile(os.path.join(OUT, "quants", f"{name}.f32"))
        tensors.append({"name": f"t.{name}", "type": qtype.name, "shape": shape,
                        "bytes": int(raw.size)})

    # Metadata of every value type, nested arrays included.
    writer.add_uint32("llama.block_count", 2)
    writer.add_key_value("t.u8", 200, gguf.GGUFValueType.UINT8)
    writer.add_key_value("t.i8", -100, gguf.GGUFValueType.INT8)
    writer.add_key_value("t.u16", 60000, gguf.GGUFValueType.UINT16)
    writer.add_key_value("t.i16", -30000, gguf.GGUFValueType.INT16)
    writer.add_key_value("t.i32", -2000000000, gguf.GGUFValueType.INT32)
    writer.add_key_value("t.f32", 0.25, gguf.GGUFValueType.FLOAT32)
    writer.add_key_value("t.bool", True, gguf.GGUFValueType.BOOL)
    writer.add_key_value("t.str", "h\u00e9llo \U0001F600", gguf.GGUFValueType.STRING)
    writer.add_key_value("t.u64", 2**63 + 5, gguf.GGUFValueType.UINT64)
    writer.add_key_value("t.i64", -(2**62), gguf.GGUFValueType.INT64)
    writer.add_key_value("t.f64", -1.5e300, gguf.GGUFValueType.FLOAT64)
    writer.add_array("t.strs", ["a", "", "c d"])
    writer.add_array("t.nested", [[1, 2], [3]])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(os.path.join(OUT, "tiny.gguf.tmp"), os.path.join(OUT, "tiny.gguf"))

    # Describe what the reader must find, as read back by gguf's own reader.
    r = gguf.GGUFReader(os.path.join(OUT, "tiny.gguf"))
    desc = {"tensors": [], "alignment": 32}
    for t in r.tensors:
        desc["tensors"].append({"name": t.name, "type": t.tensor_type.name,
                                "shape": [int(d) for d in reversed(t.shape)],
                                "offset": int(t.data_offset), "bytes": int(t.n_bytes)})
    assert [t["name"] for t in desc["tensors"]] == [t["name"] for t in tensors]
    with open(os.path.join(OUT, "tiny.json.tmp"), "w") as f:
        json.dump(desc, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(OUT, "tiny.json.tmp"), os.path.join(OUT, "tiny.json"))
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"wrote {len(types)} types to {OUT} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
