#!/usr/bin/env python3
"""Describe a GGUF file as the `gguf` Python package (llama.cpp's gguf-py) reads it.

Usage: check-gguf.py FILE.gguf

Prints one JSON object: {"metadata": [[key, type, value], ...] in file order,
"tensors": [[name, ggml_type, dims, n_bytes, hash], ...] in file order}.
`type` is egret's name of the value type (u32, string, array, ...); arrays are
given as {"elem": type, "len": n} instead of their items. `dims` are the file's
dims (innermost first). `hash` is a position-weighted byte sum,
sum_i b[i] * (i * 0x9E3779B97F4A7C15 + 1) mod 2**64, as a decimal string: egret's
tests (tests/export_quant.rs) compute the same on the bytes egret reads, so a
moved, resized or changed tensor shows. Run it with the venv that
scripts/setup-python.sh makes (gguf, numpy).
"""
import json
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType

TYPE_NAMES = {
    GGUFValueType.UINT8: "u8",
    GGUFValueType.INT8: "i8",
    GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16",
    GGUFValueType.UINT32: "u32",
    GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32",
    GGUFValueType.BOOL: "bool",
    GGUFValueType.STRING: "string",
    GGUFValueType.ARRAY: "array",
    GGUFValueType.UINT64: "u64",
    GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT64: "f64",
}
MUL = np.uint64(0x9E3779B97F4A7C15)
CHUNK = 1 << 22


def byte_hash(data):
    b = np.frombuffer(data.tobytes(), dtype=np.uint8)
    h = np.uint64(0)
    with np.errstate(over="ignore"):
        for start in range(0, len(b), CHUNK):
            i = np.arange(start, min(start + CHUNK, len(b)), dtype=np.uint64)
            w = i * MUL + np.uint64(1)
            h += np.sum(b[start:start + len(i)].astype(np.uint64) * w, dtype=np.uint64)
    return str(int(h))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    r = GGUFReader(sys.argv[1])
    metadata = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        ty = TYPE_NAMES[field.types[0]]
        if ty == "array":
            value = {"elem": TYPE_NAMES[field.types[1]] if len(field.types) > 1 else None,
                     "len": len(field.data)}
        else:
            value = field.contents()
        metadata.append([key, ty, value])
    tensors = [
        [t.name, t.tensor_type.name, [int(d) for d in t.shape], int(t.n_bytes), byte_hash(t.data)]
        for t in r.tensors
    ]
    json.dump({"metadata": metadata, "tensors": tensors}, sys.stdout)


if __name__ == "__main__":
    main()
