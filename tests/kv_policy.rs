//! KV-cache policies (`egret_runtime::kv_policy`) through the real `Decoder`:
//! which stream positions survive each policy, flat memory over streams longer
//! than the model's context, shifted (re-rotated) keys against recomputation
//! from scratch, int8 storage against f32, the separator lookup on SmolLM2's
//! vocabulary, and the policy recorded in a model by the kv_segment pass.
//!
//! The policy tests run on small random llama graphs built by egret's own llama
//! builder (the same graph SmolLM2 gets); the SmolLM2 tests need
//! `scripts/fetch-models.sh smollm2` and skip (or fail under
//! `EGRET_REQUIRE_DATA=1`) without it.

mod common;
use common::{available, cache};

use egret_frontends::arch::llama::{self, Params, HF_NAMES};
use egret_frontends::arch::{ArchError, WeightSource};
use egret_ir::{Model, Tensor};
use egret_runtime::generate::{last_row, Decoder};
use egret_runtime::kv_policy::{separator_ids, KvPolicy};
use egret_runtime::perplexity::streaming_perplexity;
use egret_runtime::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Weights held in a map.
struct Map(HashMap<String, Tensor>);

impl WeightSource for Map {
    fn get(&self, name: &str) -> Result<Tensor, ArchError> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| ArchError::MissingWeight(name.into()))
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

const VOCAB: usize = 40;

/// A random llama: width 32, 4 heads over 2 key/value heads of 8, rotary
/// tables for `context` positions.
fn tiny(layers: usize, context: usize) -> Model {
    let p = Params {
        layers,
        width: 32,
        heads: 4,
        kv_heads: 2,
        head_dim: 8,
        rope_dim: 8,
        rope_theta: 10_000.0,
        max_positions: context,
        rms_eps: 1e-5,
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = |shape: Vec<usize>, scale: f32| {
        let n = shape.iter().product();
        let v = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        Tensor::from_vec(shape, v).unwrap()
    };
    let mut w = HashMap::new();
    w.insert(HF_NAMES.embed.to_string(), rand(vec![VOCAB, 32], 1.0));
    w.insert(HF_NAMES.norm.to_string(), rand(vec![32], 1.0));
    let dims = [
        vec![32],
        vec![32, 32],
        vec![16, 32],
        vec![16, 32],
        vec![32, 32],
        vec![32],
        vec![64, 32],
        vec![64, 32],
        vec![32, 64],
    ];
    for i in 0..layers {
        for (part, shape) in HF_NAMES.parts.iter().zip(&dims) {
            let name = format!("{}{i}.{part}", HF_NAMES.layer);
            let name = if name.ends_with(".weight") {
                name
            } else {
                format!("{name}.weight")
            };
            w.insert(name, rand(shape.clone(), 0.4));
        }
    }
    llama::build_with(&p, &HF_NAMES, &Map(w), None).unwrap()
}

fn decoder(model: Model, policy: &str, separators: &[i64]) -> Decoder {
    let mut d = Decoder::new(model).unwrap();
    d.set_kv_policy(policy.parse().unwrap(), separators)
        .unwrap();
    d
}

/// The tiny models' separator ids.
const SEPS: [i64; 10] = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36];

/// A deterministic token stream over the tiny vocabulary.
fn stream(n: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|i| (i * 7 + i / 3) % VOCAB as i64)
        .collect()
}

#[test]
fn each_policy_keeps_the_documented_stream_positions() {
    let ids = stream(40);
    let run = |policy: &str, seps: &[i64]| {
        let d = decoder(tiny(2, 64), policy, seps);
        let mut cache = d.empty_cache().unwrap();
        for &t in &ids {
            d.forward(&[t], &mut cache).unwrap();
        }
        assert_eq!(cache.seen(), 40);
        cache.positions().to_vec()
    };
    assert_eq!(run("full", &[]), (0..40).collect::<Vec<u64>>());
    assert_eq!(run("window:6", &[]), (34..40).collect::<Vec<u64>>());
    let mut want: Vec<u64> = vec![0, 1, 2];
    want.extend(35..40);
    assert_eq!(run("streaming:3,5", &[]), want);
    // SepLLM: 2 initial, 3 separators, local window 4, capacity 14. The
    // separators (ids divisible by 4) are at stream positions 0, 5, 6, 11, 12,
    // 17, 18, 23, 24, 29, 30, 35, 36. Compressions come every 6 tokens from
    // position 14 on; the last, at 39, kept the initial 0, 1, the three newest
    // separators before the local window (29, 30, 35) and the window 36..39.
    let sep_positions: Vec<usize> = (0..40).filter(|&i| SEPS.contains(&ids[i])).collect();
    assert_eq!(
        sep_positions,
        [0, 5, 6, 11, 12, 17, 18, 23, 24, 29, 30, 35, 36]
    );
    assert_eq!(
        run("sepllm:2,3,4,14", &SEPS),
        [0, 1, 29, 30, 35, 36, 37, 38, 39]
    );
}

#[test]
fn memory_stays_flat_over_a_stream_longer_than_the_context() {
    // Rotary tables for 32 positions; 200 tokens streamed.
    let ids = stream(200);
    for (policy, cap) in [
        ("window:20", 20),
        ("streaming:4,20", 24),
        ("sepllm:2,4,8,24", 24),
        ("streaming:4,20+int8", 24),
    ] {
        let d = decoder(tiny(2, 32), policy, &SEPS);
        let mut cache = d.empty_cache().unwrap();
        let mut bytes_at = Vec::new();
        for (i, &t) in ids.iter().enumerate() {
            d.forward(&[t], &mut cache).unwrap();
            assert!(cache.len() <= cap, "{policy}: {} cached", cache.len());
            if i >= 100 {
                bytes_at.push(cache.bytes());
            }
        }
        // Keys and values of 2 layers, 2 heads of 8, cap + 1 positions at most.
        let row = if policy.ends_with("int8") {
            8 + 4
        } else {
            8 * 4
        };
        assert_eq!(cache.peak_len(), cap + 1, "{policy}");
        assert_eq!(cache.peak_bytes(), 2 * 2 * 2 * (cap + 1) * row, "{policy}");
        assert!(bytes_at.iter().all(|&b| b <= cache.peak_bytes()));
    }
    // Full attention runs out of rotary positions on the same stream.
    let d = decoder(tiny(2, 32), "full", &[]);
    let mut cache = d.empty_cache().unwrap();
    let err = ids
        .iter()
        .map(|&t| d.forward(&[t], &mut cache))
        .find_map(Result::err)
        .expect("full attention past the context fails");
    assert!(err.to_string().contains("position id 32"), "{err}");
}

/// Logits of `ids` run from an empty cache (positions 0..), last row.
fn from_scratch(d: &Decoder, ids: &[i64]) -> Vec<f32> {
    let mut cache = d.empty_cache().unwrap();
    let logits = d.forward(ids, &mut cache).unwrap();
    last_row(&logits).unwrap().to_vec()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// With one layer, a cached key or value depends only on its token and its
/// position, so after any eviction the next token's logits must equal a run
/// from scratch over the surviving tokens at positions 0, 1, ...: the shifted
/// keys equal keys computed at their new positions.
fn shifted_cache_matches_recomputation(
    model: Model,
    ids: &[i64],
    policy: &str,
    seps: &[i64],
) -> f32 {
    let d = decoder(model.clone(), policy, seps);
    let reference = decoder(model, "full", &[]);
    let mut cache = d.empty_cache().unwrap();
    let mut worst = 0f32;
    let mut shifted = false;
    for &t in ids {
        let kept: Vec<i64> = cache.tokens().iter().copied().chain([t]).collect();
        shifted |= cache
            .positions()
            .iter()
            .enumerate()
            .any(|(i, &p)| p != i as u64);
        let logits = d.forward(&[t], &mut cache).unwrap();
        let want = from_scratch(&reference, &kept);
        worst = worst.max(max_diff(last_row(&logits).unwrap(), &want));
    }
    assert!(shifted, "{policy}: no key was ever shifted");
    worst
}

#[test]
fn shifted_keys_give_the_logits_of_recomputation_on_a_random_model() {
    let ids = stream(60);
    for policy in ["streaming:2,9", "window:7", "sepllm:2,3,4,14"] {
        let err = shifted_cache_matches_recomputation(tiny(1, 64), &ids, policy, &SEPS);
        assert!(err < 2e-5, "{policy}: max |Δlogit| {err}");
    }
}

fn smollm2_path() -> Option<std::path::PathBuf> {
    let path = cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    available(&path, "scripts/fetch-models.sh smollm2").then_some(path)
}

/// SmolLM2 and its tokenizer, loaded once.
fn smollm2() -> Option<&'static (Model, Tokenizer)> {
    static M: OnceLock<Option<(Model, Tokenizer)>> = OnceLock::new();
    M.get_or_init(|| {
        let loaded = egret_frontends::load(&smollm2_path()?).expect("SmolLM2 loads");
        let tok = Tokenizer::from_json(loaded.tokenizer_json.as_deref().expect("tokenizer"))
            .expect("tokenizer parses");
        Some((loaded.model, tok))
    })
    .as_ref()
}

const TEXT: &str = "ABSURDITY, n. A statement or belief manifestly inconsistent with \
one's own opinion. ACADEME, n. An ancient school where morality and philosophy were \
taught. ACADEMY, n. (from academe) A modern school where football is taught. \
ACCIDENT, n. An inevitable occurrence due to the action of immutable natural laws. \
ACCOMPLICE, n. One associated with another in a crime, having guilty knowledge and \
complicity, as an attorney who defends a criminal, knowing him guilty.";

#[test]
fn smollm2_separators_come_from_its_vocabulary() {
    let Some((_, tok)) = smollm2() else { return };
    let seps = separator_ids(tok).unwrap();
    let id = |s: &str| tok.encode(s, false).unwrap();
    for mark in [".", ",", "?", "!", ";", ":", "\n"] {
        let ids = id(mark);
        assert_eq!(ids.len(), 1, "{mark:?}");
        assert!(seps.contains(&ids[0]), "{mark:?} = {}", ids[0]);
    }
    // " ." is one token; "Ġ" (a lone space) and runs of newlines and spaces too.
    for t in ["Ġ", "ĠĠ", "ĊĊ", "Ġ.", "Ġ,"] {
        let i = tok
            .token_id(t)
            .unwrap_or_else(|| panic!("{t} in the vocabulary"));
        assert!(seps.contains(&i), "{t}");
    }
    for word in [" the", " Paris", "A", "..."] {
        assert!(id(word).iter().all(|i| !seps.contains(i)), "{word:?}");
    }
    assert_eq!(seps.len(), SMOLLM2_SEPARATORS, "{seps:?}");
}

/// Separator tokens in SmolLM2's 49152-token vocabulary: the six marks with
/// and without a leading space (12) and 160 whitespace-only tokens (runs of
/// spaces, tabs, `\r` and newlines). Counted independently with gguf-py from
/// the file's `tokenizer.ggml.tokens`.
const SMOLLM2_SEPARATORS: usize = 172;

/// SmolLM2's first layer alone, with its real weights.
fn smollm2_first_layer() -> Option<Model> {
    let path = smollm2_path()?;
    let file = egret_frontends::gguf::GgufFile::open(&path).unwrap();
    let mut p = llama::params_from_gguf(&file).unwrap();
    p.layers = 1;
    let w = llama::GgufWeights {
        file: &file,
        heads: p.heads,
        kv_heads: p.kv_heads,
    };
    Some(llama::build_with(&p, &llama::GGUF_NAMES, &w, None).unwrap())
}

#[test]
fn smollm2_shifted_keys_give_the_logits_of_recomputation() {
    let (Some(model), Some((_, tok))) = (smollm2_first_layer(), smollm2()) else {
        return;
    };
    let ids = tok.encode(TEXT, false).unwrap();
    let ids = &ids[..48];
    let seps = separator_ids(tok).unwrap();
    for policy in ["streaming:4,12", "sepllm:2,4,8,20"] {
        let err = shifted_cache_matches_recomputation(model.clone(), ids, policy, &seps);
        assert!(err < 1e-3, "{policy}: max |Δlogit| {err}");
    }
}

#[test]
fn smollm2_int8_kv_stays_close_to_f32() {
    let Some((model, tok)) = smollm2() else {
        return;
    };
    let ids = tok.encode(TEXT, false).unwrap();
    let seps = separator_ids(tok).unwrap();
    let score = |policy: &str| {
        let d = decoder(model.clone(), policy, &seps);
        streaming_perplexity(&d, &ids, 4, &mut |_, _| {}).unwrap()
    };
    let f32s = score("streaming:4,28");
    let int8 = score("streaming:4,28+int8");
    let rel = (int8.perplexity() / f32s.perplexity() - 1.0).abs();
    assert!(
        rel < 0.01,
        "int8 perplexity {:.4} vs f32 {:.4}",
        int8.perplexity(),
        f32s.perplexity()
    );
    // int8 rows: 64 codes + one f32 scale against 256 bytes.
    assert_eq!(int8.peak_kv_bytes * 256, f32s.peak_kv_bytes * 68);
    // Prefill then decode: next-token logits within 2 % of their spread.
    let prefix = &ids[..40];
    let logits = |policy: &str| {
        let d = decoder(model.clone(), policy, &seps);
        let mut cache = d.empty_cache().unwrap();
        d.forward(&prefix[..32], &mut cache).unwrap();
        let mut rows = Vec::new();
        for &t in &prefix[32..] {
            rows.extend(
                last_row(&d.forward(&[t], &mut cache).unwrap())
                    .unwrap()
                    .to_vec(),
            );
        }
        rows
    };
    let (a, b) = (logits("full"), logits("full+int8"));
    let spread = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = max_diff(&a, &b);
    assert!(err < 0.02 * spread, "max |Δlogit| {err} of {spread}");
}

#[test]
fn the_recorded_policy_is_the_decoders_default() {
    let mut model = tiny(2, 64);
    let policy: KvPolicy = "sepllm:2,3,4,14+int8".parse().unwrap();
    let r = egret_passes::kv_segment::apply(&mut model, policy, &SEPS).unwrap();
    assert_eq!(
        (r.capacity, r.separators, r.rotary_layers),
        (Some(14), 10, 2)
    );
    // Through the container's text form and back.
    let (text, weights) = egret_ir::text::print_model_with_weights(&model);
    let weights: HashMap<String, Tensor> = weights.into_iter().collect();
    let model = egret_ir::text::parse_model(&text, &|n| weights.get(n).cloned()).unwrap();
    let d = Decoder::new(model).unwrap();
    assert_eq!(d.kv_policy(), policy);
    let mut cache = d.empty_cache().unwrap();
    for &t in &stream(40) {
        d.forward(&[t], &mut cache).unwrap();
    }
    assert_eq!(cache.positions(), [0, 1, 29, 30, 35, 36, 37, 38, 39]);
    // A capacity beyond the rotary tables is refused.
    let mut m = tiny(1, 16);
    let e = egret_passes::kv_segment::apply(&mut m, "streaming:4,12".parse().unwrap(), &[]);
    assert!(e.unwrap_err().to_string().contains("16 positions"));
}
