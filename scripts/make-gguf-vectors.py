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

With the SmolLM2 model fetched (scripts/fetch-models.sh smollm2) it also writes
smollm2-tokens.json: token ids of tricky strings from a from-scratch byte-level
BPE written here after llama.cpp's (`llm_tokenizer_bpe`, pre-tokenizer `smollm`:
the regexes `\p{N}` then GPT-2's, applied in turn), independent of the HF
`tokenizers` library the Rust side uses. Needs `pip install regex`.

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


# llama.cpp's pre-tokenizer regexes for `tokenizer.ggml.pre = smollm`, in order.
SMOLLM_SPLITS = [
    r"\p{N}",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
]

TRICKY = [
    "The capital of France is",
    "Hello world",
    " leading space and trailing  ",
    "multiple   spaces\there\n\nnew lines\r\n",
    "digits 1234567 and 3.14159, 2024-11-23",
    "unicode: caf\u00e9, na\u00efve, \u00fcber, \u65e5\u672c\u8a9e, \U0001F600\U0001F44D",
    "I'm sure they'll say it's 'quoted' and won't",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "code: fn main() { println!(\"{}\", x[0] + 1); }",
    "\u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938\u094d\u0924\u0947 \u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435",
    "tabs\t\tand   \n  mixed \u00a0nbsp",
]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def split_all(text, patterns):
    """Apply each regex in turn to every fragment; matches and gaps both stay."""
    import regex
    frags = [text]
    for pat in patterns:
        out = []
        for f in frags:
            pos = 0
            for m in regex.finditer(pat, f):
                if m.start() > pos:
                    out.append(f[pos:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                pos = m.end()
            if pos < len(f):
                out.append(f[pos:])
        frags = out
    return frags


def bpe_encode(text, vocab, ranks, specials):
    """Byte-level BPE: special tokens whole, then split, map bytes, merge by rank."""
    import regex
    b2u = bytes_to_unicode()
    ids = []
    special_re = "(" + "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
    for part in regex.split(special_re, text):
        if part in specials:
            ids.append(vocab[part])
            continue
        for frag in split_all(part, SMOLLM_SPLITS):
            word = [b2u[b] for b in frag.encode("utf-8")]
            while len(word) > 1:
                pairs = [(ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
                rank, i = min(pairs)
                if rank == 1 << 60:
                    break
                word[i:i + 2] = [word[i] + word[i + 1]]
            ids.extend(vocab[w] for w in word)
    return ids


def smollm2_tokens():
    path = os.path.expanduser(os.environ.get("EGRET_CACHE", "~/.cache/egret"))
    path = os.path.join(path, "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        print(f"skipping tokenizer vectors: {path} absent", file=sys.stderr)
        return
    r = gguf.GGUFReader(path)

    def field(name):
        f = r.fields[name]
        return [bytes(f.parts[i]).decode("utf-8") if f.types[-1] == gguf.GGUFValueType.STRING
                else int(f.parts[i][0]) for i in f.data]

    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = field("tokenizer.ggml.merges")
    vocab = {t: i for i, t in enumerate(tokens)}
    ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
    specials = {t for t, ty in zip(tokens, types) if ty == 3}
    cases = [{"text": t, "ids": bpe_encode(t, vocab, ranks, specials)} for t in TRICKY]
    assert cases[0]["ids"] == [504, 3575, 282, 4649, 314], cases[0]["ids"]
    out = os.path.join(OUT, "smollm2-tokens.json")
    with open(out + ".tmp", "w") as f:
        json.dump(cases, f, indent=1, ensure_ascii=True)
        f.write("\n")
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
    smollm2_tokens()
