//! Real models from PyPI against onnxruntime.
//!
//! `scripts/make-fixtures.py` ran onnxruntime (graph optimisations off) on fixed
//! inputs and committed inputs and outputs under `tests/fixtures/real/<case>/`.
//! Here each model (fetched by `scripts/fetch-models.sh silero ppocr`) is imported
//! and run by the interpreter, and every output must match within
//! |got - want| <= 1e-4 + 1e-4·|want|.

mod common;
use common::real_case;

const TOL: f64 = 1e-4;

fn check_case(case: &str) {
    let Some(c) = real_case(case) else { return };
    let model = &c.model;
    let names: Vec<&str> = model
        .graph
        .inputs
        .iter()
        .map(|&o| model.graph.value_name(o))
        .collect();
    assert_eq!(names, c.input_names, "{case}: graph inputs");
    let inputs = c.inputs.clone();
    let interp =
        egret_runtime::Interpreter::for_model(model).unwrap_or_else(|e| panic!("{case}: {e}"));
    let outs = interp
        .run(inputs)
        .unwrap_or_else(|e| panic!("{case}: run failed: {e}"));
    assert_eq!(outs.len(), c.want.len(), "{case}: output count");
    for (i, (got, want)) in outs.iter().zip(&c.want).enumerate() {
        let (got, want) = (
            got.as_tensor().expect("tensor output"),
            want.as_tensor().unwrap(),
        );
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
            c.output_names[i],
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
