#!/usr/bin/env python3
"""Write the tiny random GPT-2 fixture tests/fixtures/gpt2-tiny/ and its expected logits.

No GPT-2 weights are on PyPI, so egret's GPT2LMHeadModel builder is checked on a
tiny random-weight checkpoint (2 layers, width 64, 4 heads, MLP width 128,
vocabulary 100) in the
layout `transformers` saves (`transformer.`-prefixed names, Conv1D weights as
[in, out], LM head tied to `wte` and not stored). The expected logits come from the
independent float64 numpy implementation of GPT-2 below.

Matrices are stored as f16 and the position table as bf16 (so the fixture stays
small and the loader's f16/bf16 paths are exercised); the reference computes with
exactly the stored values. Only numpy is needed (no torch, no safetensors package).

    python3 scripts/make-gpt2-fixture.py   # rewrites tests/fixtures/gpt2-tiny/
"""
import json
import os
import struct
import tempfile

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gpt2-tiny")
VOCAB, POSITIONS, WIDTH, LAYERS, HEADS, INNER = 100, 32, 64, 2, 4, 128
EPS = 1e-5
IDS = np.array([[5, 17, 99, 0, 42, 42, 3, 64], [1, 2, 3, 4, 5, 6, 7, 8]], dtype=np.int64)


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def make_weights(rng):
    """name -> (safetensors dtype, raw bytes, float64 value as stored)."""
    w = {}

    def put(name, arr, dtype):
        arr = np.asarray(arr, dtype=np.float32)
        if dtype == "F16":
            stored = arr.astype(np.float16)
            w[name] = ("F16", stored.tobytes(), stored.astype(np.float64), arr.shape)
        elif dtype == "BF16":
            bits = bf16_bits(arr)
            w[name] = ("BF16", bits.tobytes(), bf16_value(bits).astype(np.float64), arr.shape)
        else:
            w[name] = ("F32", arr.tobytes(), arr.astype(np.float64), arr.shape)

    n = lambda *shape, s=0.2: rng.normal(0.0, s, size=shape)
    put("transformer.wte.weight", n(VOCAB, WIDTH, s=0.5), "F16")
    put("transformer.wpe.weight", n(POSITIONS, WIDTH, s=0.3), "BF16")
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        put(p + "ln_1.weight", 1.0 + n(WIDTH, s=0.1), "F32")
        put(p + "ln_1.bias", n(WIDTH, s=0.1), "F32")
        put(p + "attn.c_attn.weight", n(WIDTH, 3 * WIDTH), "F16")
        put(p + "attn.c_attn.bias", n(3 * WIDTH, s=0.1), "F32")
        put(p + "attn.c_proj.weight", n(WIDTH, WIDTH), "F16")
        put(p + "attn.c_proj.bias", n(WIDTH, s=0.1), "F32")
        put(p + "ln_2.weight", 1.0 + n(WIDTH, s=0.1), "F32")
        put(p + "ln_2.bias", n(WIDTH, s=0.1), "F32")
        put(p + "mlp.c_fc.weight", n(WIDTH, INNER), "F16")
        put(p + "mlp.c_fc.bias", n(INNER, s=0.1), "F32")
        put(p + "mlp.c_proj.weight", n(INNER, WIDTH, s=0.1), "F16")
        put(p + "mlp.c_proj.bias", n(WIDTH, s=0.1), "F32")
    put("transformer.ln_f.weight", 1.0 + n(WIDTH, s=0.1), "F32")
    put("transformer.ln_f.bias", n(WIDTH, s=0.1), "F32")
    return w


def safetensors_bytes(w):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, raw, _, shape) in w.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # keep the data 8-byte aligned
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


# ---- independent float64 GPT-2 (HF GPT2LMHeadModel semantics) ----

def layer_norm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * g + b


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def gpt2_logits(v, ids):
    batch, seq = ids.shape
    d = WIDTH // HEADS
    x = v["transformer.wte.weight"][ids] + v["transformer.wpe.weight"][np.arange(seq)]
    causal = np.tril(np.ones((seq, seq), dtype=bool))
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        h = layer_norm(x, v[p + "ln_1.weight"], v[p + "ln_1.bias"])
        qkv = h @ v[p + "attn.c_attn.weight"] + v[p + "attn.c_attn.bias"]
        q, k, vv = np.split(qkv, 3, axis=-1)
        heads = lambda t: t.reshape(batch, seq, HEADS, d).transpose(0, 2, 1, 3)
        q, k, vv = heads(q), heads(k), heads(vv)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
        s = np.where(causal, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ vv).transpose(0, 2, 1, 3).reshape(batch, seq, WIDTH)
        x = x + a @ v[p + "attn.c_proj.weight"] + v[p + "attn.c_proj.bias"]
        h = layer_norm(x, v[p + "ln_2.weight"], v[p + "ln_2.bias"])
        m = gelu_new(h @ v[p + "mlp.c_fc.weight"] + v[p + "mlp.c_fc.bias"])
        x = x + m @ v[p + "mlp.c_proj.weight"] + v[p + "mlp.c_proj.bias"]
    x = layer_norm(x, v["transformer.ln_f.weight"], v["transformer.ln_f.bias"])
    return x @ v["transformer.wte.weight"].T


def write_atomic(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def npy_bytes(arr):
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    w = make_weights(np.random.default_rng(20240611))
    values = {k: val.reshape(shape) for k, (_, _, val, shape) in w.items()}
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "layer_norm_epsilon": EPS,
        "n_embd": WIDTH,
        "n_head": HEADS,
        "n_layer": LAYERS,
        "n_inner": INNER,
        "n_positions": POSITIONS,
        "n_ctx": POSITIONS,
        "vocab_size": VOCAB,
        "tie_word_embeddings": True,
    }
    logits = gpt2_logits(values, IDS).astype(np.float32)
    write_atomic(os.path.join(OUT, "model.safetensors"), safetensors_bytes(w))
    write_atomic(os.path.join(OUT, "config.json"), (json.dumps(config, indent=2) + "\n").encode())
    write_atomic(os.path.join(OUT, "input_ids.npy"), npy_bytes(IDS))
    write_atomic(os.path.join(OUT, "logits.npy"), npy_bytes(logits))
    size = os.path.getsize(os.path.join(OUT, "model.safetensors"))
    print(f"wrote {OUT}: model.safetensors {size} bytes, logits {logits.shape}, "
          f"|logits| max {np.abs(logits).max():.3f}")


if __name__ == "__main__":
    main()
