//! `GPT2LMHeadModel` from safetensors + config.json, on the tiny random-weight
//! checkpoint `tests/fixtures/gpt2-tiny/` (f16 matrices, a bf16 position table,
//! tied LM head) written by `scripts/make-gpt2-fixture.py`, against the logits
//! of that script's independent float64 numpy GPT-2.

use egret_frontends::npy;
use egret_ir::{Tensor, Value};
use egret_runtime::generate::Decoder;
use egret_runtime::Interpreter;
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-4;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const HEAD_DIM: usize = 16;
const VOCAB: usize = 100;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny")
}

fn max_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn gpt2_logits_match_numpy() {
    let dir = fixture();
    let loaded = egret_frontends::load(&dir).expect("load gpt2-tiny");
    let ids = npy::read(&dir.join("input_ids.npy")).unwrap();
    let want = npy::read(&dir.join("logits.npy")).unwrap();
    let batch = ids.shape()[0];
    // Inputs: the ids, then an empty cache per layer.
    let empty = Tensor::from_vec(vec![batch, HEADS, 0, HEAD_DIM], Vec::<f32>::new()).unwrap();
    let mut inputs = vec![Value::Tensor(ids)];
    inputs.extend((0..2 * LAYERS).map(|_| Value::Tensor(empty.clone())));
    let outs = Interpreter::for_model(&loaded.model)
        .unwrap()
        .run(inputs)
        .expect("run");
    let logits = outs[0].as_tensor().unwrap();
    assert_eq!(logits.shape(), want.shape());
    let err = max_err(&logits.to_f64_vec().unwrap(), &want.to_f64_vec().unwrap());
    println!("gpt2-tiny: max |logit - numpy| = {err:.2e}");
    assert!(err <= TOL, "max logit error {err}");
    // The present cache holds every position.
    assert_eq!(
        outs[1].as_tensor().unwrap().shape(),
        &[batch, HEADS, 8, HEAD_DIM]
    );
}

#[test]
fn gpt2_kv_cache_decode_equals_full_pass() {
    let dir = fixture();
    let loaded = egret_frontends::load(&dir).expect("load gpt2-tiny");
    let ids = npy::read(&dir.join("input_ids.npy")).unwrap();
    let want = npy::read(&dir.join("logits.npy"))
        .unwrap()
        .to_f64_vec()
        .unwrap();
    let seq0: Vec<i64> = ids.as_slice::<i64>().unwrap()[..8].to_vec();
    let dec = Decoder::new(loaded.model).expect("decoder convention");
    assert_eq!(dec.layers(), LAYERS);
    let mut cache = dec.empty_cache().unwrap();
    // Prefill 5 tokens, then decode the other 3 one at a time.
    let mut got = dec
        .forward(&seq0[..5], &mut cache)
        .unwrap()
        .to_f64_vec()
        .unwrap();
    for &t in &seq0[5..] {
        let step = dec.forward(&[t], &mut cache).unwrap();
        got.extend(step.to_f64_vec().unwrap());
    }
    assert_eq!(cache.len(), 8);
    let err = max_err(&got, &want[..8 * VOCAB]);
    assert!(err <= TOL, "cached decode differs from numpy by {err}");
}

#[test]
fn eval_errors_are_clear() {
    let model = fixture();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
            .arg("eval")
            .arg(&model)
            .args(args)
            .output()
            .expect("run egret");
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    assert!(run(&[]).contains("nothing to evaluate"));
    let pairs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/similarity-pairs.tsv"
    );
    // gpt2-tiny has no tokenizer.json.
    assert!(run(&["--similarity", pairs]).contains("tokenizer"));
}
