//! The GGUF frontend: reader, bit-exact dequantizers and tokenizer.
//!
//! Oracles: `scripts/make-gguf-vectors.py` wrote `tests/fixtures/gguf/` with the
//! `gguf` Python package (its writer, its reader and `gguf.quants.dequantize`).
//! The SmolLM2 tests use the model fetched by `scripts/fetch-models.sh smollm2`.

mod common;
use common::{available, cache};

use egret_frontends::gguf::{GgufError, GgufFile, MetaValue};
use egret_ir::{blocks, BlockFormat, DType};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

/// The dtype of each vector file, by the gguf type name used in its file name.
const TYPES: [(&str, DType); 13] = [
    ("f32", DType::F32),
    ("f16", DType::F16),
    ("bf16", DType::BF16),
    ("q8_0", DType::Block(BlockFormat::Q8_0)),
    ("q4_0", DType::Block(BlockFormat::Q4_0)),
    ("q4_1", DType::Block(BlockFormat::Q4_1)),
    ("q5_0", DType::Block(BlockFormat::Q5_0)),
    ("q5_1", DType::Block(BlockFormat::Q5_1)),
    ("q2_k", DType::Block(BlockFormat::Q2K)),
    ("q3_k", DType::Block(BlockFormat::Q3K)),
    ("q4_k", DType::Block(BlockFormat::Q4K)),
    ("q5_k", DType::Block(BlockFormat::Q5K)),
    ("q6_k", DType::Block(BlockFormat::Q6K)),
];

fn expected(name: &str) -> Vec<u32> {
    let raw = std::fs::read(fixtures().join(format!("quants/{name}.f32"))).unwrap();
    raw.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn dequantizers_are_bit_exact_with_gguf_py() {
    for (name, dtype) in TYPES {
        let bytes = std::fs::read(fixtures().join(format!("quants/{name}.bin"))).unwrap();
        let want = expected(name);
        assert!(want.len() >= 64, "{name}: too few vectors");
        let mut got = vec![0f32; want.len()];
        blocks::dequantize_into(dtype, &bytes, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                *w,
                "{name}[{i}]: {g} ({:#010x}) != {} ({w:#010x})",
                g.to_bits(),
                f32::from_bits(*w)
            );
        }
    }
}

#[derive(serde::Deserialize)]
struct TinyTensor {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    shape: Vec<usize>,
    offset: usize,
    bytes: usize,
}

#[derive(serde::Deserialize)]
struct Tiny {
    tensors: Vec<TinyTensor>,
    alignment: u64,
}

#[test]
fn reader_matches_gguf_py_on_every_type() {
    let desc: Tiny =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny.json")).unwrap())
            .unwrap();
    let f = GgufFile::open(&fixtures().join("tiny.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), desc.alignment);
    assert_eq!(f.tensor_names().count(), desc.tensors.len());
    for t in &desc.tensors {
        let info = f.tensor_info(&t.name).unwrap();
        assert_eq!(info.ggml_type.name(), t.ty, "{}", t.name);
        assert_eq!(info.shape(), t.shape, "{}", t.name);
        assert_eq!(
            (info.offset, info.nbytes),
            (t.offset, t.bytes),
            "{}",
            t.name
        );
        // Zero-copy tensor with the row-major shape; same bytes as the vectors.
        let tensor = f.tensor(&t.name).unwrap();
        assert_eq!(tensor.shape(), &t.shape[..]);
        let short = t.name.trim_start_matches("t.");
        let (_, dtype) = TYPES.iter().find(|(n, _)| *n == short).unwrap();
        assert_eq!(tensor.dtype(), *dtype);
        let vec_bytes = std::fs::read(fixtures().join(format!("quants/{short}.bin"))).unwrap();
        assert_eq!(tensor.bytes(), &vec_bytes[..], "{}", t.name);
        let deq = blocks::dequantize(&tensor).unwrap();
        let bits: Vec<u32> = deq
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(bits, expected(short), "{}", t.name);
    }
}

#[test]
fn metadata_of_every_value_type() {
    let f = GgufFile::open(&fixtures().join("tiny.gguf")).unwrap();
    let md = f.metadata();
    assert_eq!(md.architecture().unwrap(), "llama");
    assert_eq!(md.get_u32(&md.arch_key("block_count").unwrap()).unwrap(), 2);
    assert_eq!(md.get("t.u8"), Some(&MetaValue::U8(200)));
    assert_eq!(md.get("t.i8"), Some(&MetaValue::I8(-100)));
    assert_eq!(md.get("t.u16"), Some(&MetaValue::U16(60000)));
    assert_eq!(md.get("t.i16"), Some(&MetaValue::I16(-30000)));
    assert_eq!(md.get("t.i32"), Some(&MetaValue::I32(-2_000_000_000)));
    assert_eq!(md.get_f32("t.f32").unwrap(), 0.25);
    assert_eq!(md.opt_bool("t.bool").unwrap(), Some(true));
    assert_eq!(md.get_str("t.str").unwrap(), "h\u{e9}llo \u{1F600}");
    assert_eq!(md.get_u64("t.u64").unwrap(), (1u64 << 63) + 5);
    assert_eq!(md.opt_i64("t.i64").unwrap(), Some(-(1i64 << 62)));
    assert_eq!(md.get("t.f64"), Some(&MetaValue::F64(-1.5e300)));
    assert_eq!(
        md.opt_strings("t.strs").unwrap(),
        Some(vec!["a", "", "c d"])
    );
    let nested = md.get_array("t.nested").unwrap();
    let inner: Vec<Vec<i64>> = nested
        .items
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .items
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(inner, vec![vec![1, 2], vec![3]]);
    // Wrong type and missing keys are errors that name the key.
    let e = md.get_u32("t.str").unwrap_err().to_string();
    assert!(e.contains("t.str") && e.contains("tiny.gguf"), "{e}");
    assert!(md.get_u32("t.i8").is_err());
    assert!(matches!(md.get_str("nope"), Err(GgufError::Key { .. })));
}

/// Write `bytes` to a temp file and open it.
fn open_bytes(tag: &str, bytes: &[u8]) -> Result<GgufFile, GgufError> {
    let dir = std::env::temp_dir().join(format!("egret-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{tag}.gguf"));
    std::fs::write(&p, bytes).unwrap();
    let r = GgufFile::open(&p);
    std::fs::remove_file(&p).unwrap();
    r
}

#[test]
fn version_2_reads_like_version_3() {
    let mut bytes = std::fs::read(fixtures().join("tiny.gguf")).unwrap();
    bytes[4] = 2;
    let f = open_bytes("v2", &bytes).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensor_names().count(), 13);
    bytes[4] = 1;
    let e = open_bytes("v1", &bytes).unwrap_err().to_string();
    assert!(e.contains("version 1"), "{e}");
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let good = std::fs::read(fixtures().join("tiny.gguf")).unwrap();
    let header_end = 1088; // first tensor's data offset (tiny.json)
                           // Every truncation inside the header, and some inside the data, fails cleanly.
    for cut in (0..header_end).chain((header_end..good.len()).step_by(97)) {
        let r = open_bytes("cut", &good[..cut]);
        assert!(r.is_err(), "truncated at {cut} was accepted");
    }
    // Byte flips anywhere in the header never panic (they may still parse).
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut b = good.clone();
        let at = (seed as usize) % header_end;
        b[at] = (seed >> 32) as u8;
        let _ = open_bytes("flip", &b).map(|f| {
            for n in f.tensor_names().map(String::from).collect::<Vec<_>>() {
                let _ = f.tensor(&n).map(|t| blocks::dequantize(&t));
            }
        });
    }
    // Huge declared counts are rejected before any allocation.
    let mut b = good.clone();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // kv count
    assert!(open_bytes("kv", &b)
        .unwrap_err()
        .to_string()
        .contains("metadata count"));
    let mut b = good.clone();
    b[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes()); // tensor count
    assert!(open_bytes("tc", &b).is_err());
    assert!(open_bytes("magic", b"GGML\x03\0\0\0")
        .unwrap_err()
        .to_string()
        .contains("not a GGUF file"));
    assert!(open_bytes("empty", b"").is_err());
}

fn smollm2() -> Option<GgufFile> {
    let p = cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !available(&p, "scripts/fetch-models.sh smollm2") {
        return None;
    }
    Some(GgufFile::open(&p).unwrap())
}

#[test]
fn smollm2_header_and_tensors() {
    let Some(f) = smollm2() else { return };
    let md = f.metadata();
    assert_eq!(md.architecture().unwrap(), "llama");
    assert_eq!(md.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(md.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(md.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(f.tensor_names().count(), 272);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.shape(), &[49152, 576]);
    assert_eq!(emb.dtype(), DType::Block(BlockFormat::Q8_0));
    let q = f.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(q.shape(), &[192, 576]);
    assert_eq!(q.dtype(), DType::Block(BlockFormat::Q4_1));
    assert_eq!(
        f.tensor("blk.0.attn_norm.weight").unwrap().dtype(),
        DType::F32
    );
    assert!(f.tensor("output.weight").is_err()); // tied embeddings
}

#[derive(serde::Deserialize)]
struct TokenCase {
    text: String,
    ids: Vec<i64>,
}

#[test]
fn smollm2_tokenizer_matches_llama_cpp_semantics() {
    let Some(f) = smollm2() else { return };
    let json = f
        .tokenizer_json()
        .unwrap()
        .expect("SmolLM2 has a tokenizer");
    let tok = egret_runtime::tokenizer::Tokenizer::from_json(&json).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    // The reference ids of the issue (no BOS: add_bos_token is false).
    let ids = tok.encode("The capital of France is", true).unwrap();
    assert_eq!(ids, [504, 3575, 282, 4649, 314]);
    // Tricky strings against the script's from-scratch BPE (llama.cpp's rules).
    let cases: Vec<TokenCase> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smollm2-tokens.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 10);
    for c in &cases {
        let got = tok.encode(&c.text, true).unwrap();
        assert_eq!(got, c.ids, "{:?}", c.text);
        assert_eq!(tok.decode(&got, false).unwrap(), c.text, "round trip");
    }
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
}

#[test]
fn smollm2_loads_with_tokenizer_and_metadata() {
    let p = cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if smollm2().is_none() {
        return;
    }
    let loaded = egret_frontends::load(&p).unwrap();
    let md = &loaded.model.metadata;
    assert_eq!(
        md.get("general.architecture").map(String::as_str),
        Some("llama")
    );
    assert_eq!(md.get("llama.block_count").map(String::as_str), Some("30"));
    assert_eq!(md.get("format").map(String::as_str), Some("gguf v3"));
    assert!(md["tokenizer.ggml.tokens"].starts_with("[string; 49152]"));
    let json = loaded.tokenizer_json.expect("tokenizer");
    assert!(json.contains("\"pre_tokenizer\""));
}
