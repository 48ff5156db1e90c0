//! SmolLM2-135M-Instruct (Q4_1 GGUF, llama architecture) end to end: GGUF
//! loading with the Q/K un-permute, the tokenizer from GGUF metadata, the KV-cache
//! runtime, greedy generation and perplexity.
//!
//! Reference numbers were computed independently with onnxruntime on the same
//! weights dequantized to f32 (see the team's reference notes); perplexities
//! must agree within 0.5 %, greedy ids exactly.
//!
//! Needs `scripts/fetch-models.sh smollm2` (and `scripts/fetch-texts.sh` for the
//! Devil's Dictionary and Jargon File); each test prints a notice and passes
//! when its data is absent.

mod common;
use common::{available, cache};

use egret_runtime::generate::{generate, last_row, Decoder};
use egret_runtime::perplexity::perplexity;
use egret_runtime::sample::{top_k, Sampler, SamplingConfig};
use egret_runtime::tokenizer::Tokenizer;
use std::path::PathBuf;
use std::sync::OnceLock;

const PROMPT: &str = "The capital of France is";
const PROMPT_IDS: [i64; 5] = [504, 3575, 282, 4649, 314];
const GREEDY_IDS: [i64; 12] = [7042, 30, 198, 198, 504, 2988, 314, 42, 216, 34, 32, 33];
const GREEDY_TEXT: &str = " Paris.\n\nThe answer is: 201";
const TOP5_NEXT: [usize; 5] = [7042, 260, 4528, 2250, 1315];

/// The model and its tokenizer, loaded once for all tests (the folded f32
/// weights take about 540 MB).
fn model() -> Option<&'static (Decoder, Tokenizer)> {
    static M: OnceLock<Option<(Decoder, Tokenizer)>> = OnceLock::new();
    M.get_or_init(|| {
        let path = cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !available(&path, "scripts/fetch-models.sh smollm2") {
            return None;
        }
        let loaded = egret_frontends::load(&path).expect("SmolLM2 loads");
        let tok = Tokenizer::from_json(loaded.tokenizer_json.as_deref().expect("GGUF tokenizer"))
            .expect("tokenizer parses");
        Some((Decoder::new(loaded.model).expect("decoder graph"), tok))
    })
    .as_ref()
}

fn assert_close_rel(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want,
        "{what}: {got:.4}, reference {want} (tolerance {:.2} %)",
        rel * 100.0
    );
}

#[test]
fn greedy_continuation_matches_reference() {
    let Some((dec, tok)) = model() else { return };
    let ids = tok.encode(PROMPT, false).unwrap();
    assert_eq!(ids, PROMPT_IDS, "prompt ids (no BOS)");
    let mut cache = dec.empty_cache().unwrap();
    let logits = dec.forward(&ids, &mut cache).unwrap();
    assert_eq!(top_k(last_row(&logits).unwrap(), 5), TOP5_NEXT);
    let mut sampler = Sampler::new(SamplingConfig::default()).unwrap();
    let mut streamed = Vec::new();
    let stats = generate(dec, &ids, 12, &mut sampler, &[], &mut |t| streamed.push(t)).unwrap();
    assert_eq!(stats.tokens, GREEDY_IDS);
    assert_eq!(streamed, GREEDY_IDS);
    assert_eq!((stats.prefill_tokens, stats.decode_tokens), (5, 11));
    assert_eq!(tok.decode(&stats.tokens, true).unwrap(), GREEDY_TEXT);
}

#[test]
fn jit_prefill_and_decode_match_the_interpreter() {
    let Some((dec, _)) = model() else { return };
    let mut jit = Decoder::new(dec.model().clone()).expect("decoder graph");
    let compiler = std::sync::Arc::new(egret_backends::jit::Jit::owning(jit.model().graph.clone()));
    jit.use_executor(Box::new(compiler.clone()));
    let want = dec
        .forward(&PROMPT_IDS, &mut dec.empty_cache().unwrap())
        .unwrap();
    let got = jit
        .forward(&PROMPT_IDS, &mut jit.empty_cache().unwrap())
        .unwrap();
    assert_eq!(got.shape(), want.shape());
    let worst = got
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(want.as_slice::<f32>().unwrap())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("smollm2 jit prefill: max |logit - interpreter| = {worst:.2e}");
    assert!(worst <= 1e-3, "JIT prefill logits differ by {worst}");
    // Prefill then 7 cached decode steps on the JIT: the same greedy tokens.
    let mut sampler = Sampler::new(SamplingConfig::default()).unwrap();
    let stats = generate(&jit, &PROMPT_IDS, 8, &mut sampler, &[], &mut |_| {}).unwrap();
    assert_eq!(stats.tokens, GREEDY_IDS[..8]);
    // Prefill, the first decode step, then one symbolic variant for every
    // later past length: three compiles, none falling back.
    let s = compiler.stats();
    assert_eq!((s.compiled, s.symbolic), (3, 1), "{s:?}");
    assert!(s.fallbacks.is_empty(), "{s:?}");
}

#[test]
fn kv_cache_decode_equals_recomputation() {
    let Some((dec, _)) = model() else { return };
    const STEPS: usize = 32;
    // Decode 32 greedy steps with the cache, keeping every step's logits.
    let mut cache = dec.empty_cache().unwrap();
    let mut seq = PROMPT_IDS.to_vec();
    let mut step_logits = Vec::new();
    let logits = dec.forward(&seq, &mut cache).unwrap();
    let mut row = last_row(&logits).unwrap().to_vec();
    for _ in 0..STEPS {
        let next = top_k(&row, 1)[0] as i64;
        seq.push(next);
        let logits = dec.forward(&[next], &mut cache).unwrap();
        row = last_row(&logits).unwrap().to_vec();
        step_logits.push(row.clone());
    }
    assert_eq!(cache.len(), PROMPT_IDS.len() + STEPS);
    // Recompute the whole sequence in one uncached run: by causality its row
    // `j` is the prediction after `seq[..=j]`.
    let full = dec.forward(&seq, &mut dec.empty_cache().unwrap()).unwrap();
    let vocab = full.shape()[1];
    let full = full.as_slice::<f32>().unwrap();
    let mut worst = 0f32;
    for (s, cached) in step_logits.iter().enumerate() {
        let j = PROMPT_IDS.len() + s;
        let fresh = &full[j * vocab..(j + 1) * vocab];
        for (a, b) in cached.iter().zip(fresh) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(
        worst <= 1e-4,
        "cached decode differs from recomputation by {worst}"
    );
}

#[test]
fn eiffel_paragraph_perplexity() {
    let Some((dec, tok)) = model() else { return };
    let text = include_str!("fixtures/texts/eiffel_paragraph.txt");
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(ids.len(), 177);
    let r = perplexity(dec, &ids, 512, None, &mut |_, _| {}).unwrap();
    assert_eq!((r.windows.len(), r.predicted()), (1, 176));
    assert_close_rel(r.perplexity(), 7.467, 0.005, "Eiffel perplexity");
}

/// First 4 windows of 512 tokens of a fetched text, scored independently.
fn text_perplexity(file: &str, want: f64) {
    let Some((dec, tok)) = model() else { return };
    let path = cache().join("texts").join(file);
    if !available(&path, "scripts/fetch-texts.sh") {
        return;
    }
    let text = std::fs::read_to_string(&path).expect("text reads");
    let ids = tok.encode(&text, false).unwrap();
    let r = perplexity(dec, &ids, 512, Some(4), &mut |_, _| {}).unwrap();
    assert_eq!(r.predicted(), 4 * 511);
    assert_close_rel(r.perplexity(), want, 0.005, file);
}

#[test]
fn devils_dictionary_perplexity() {
    text_perplexity("devils_dictionary.txt", 47.485);
}

#[test]
fn jargon_file_perplexity() {
    text_perplexity("jargon_file.txt", 14.066);
}

/// `egret eval --perplexity --json` end to end: the binary loads the GGUF file,
/// scores the Eiffel paragraph and reports the reference perplexity, the window
/// layout and its peak RSS.
#[test]
fn eval_cli_reports_eiffel_perplexity() {
    let model = cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !available(&model, "scripts/fetch-models.sh smollm2") {
        return;
    }
    let text =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/texts/eiffel_paragraph.txt");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
        .arg("eval")
        .arg(&model)
        .arg("--perplexity")
        .arg(&text)
        .args(["--window", "512", "--json"])
        .output()
        .expect("egret runs");
    assert!(
        out.status.success(),
        "egret eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let p = &report["perplexity"];
    assert_eq!(p["text_tokens"], 177);
    assert_eq!(p["predicted"], 176);
    assert_eq!(p["windows"].as_array().map(Vec::len), Some(1));
    let ppl = p["perplexity"].as_f64().expect("perplexity is a number");
    assert_close_rel(ppl, 7.467, 0.005, "egret eval Eiffel perplexity");
    // The f32 weights alone take ~540 MB: a real high-water mark is at least that.
    let rss = report["peak_rss_bytes"]
        .as_u64()
        .expect("peak RSS reported");
    assert!(rss > 500_000_000, "peak RSS {rss} B is implausibly small");
}
