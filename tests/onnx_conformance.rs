//! ONNX backend conformance on the reference interpreter and on the JIT.
//!
//! Both backends are held to the same baseline: the JIT must pass every test
//! the interpreter passes.
//!
//! Runs the `node`, `simple`, `pytorch-operator`, `pytorch-converted` and `light`
//! test directories of `onnx==1.22.0` (fetched by `scripts/fetch-models.sh onnx`).
//! `EGRET_FILTER=substr` runs only matching tests and prints every failure;
//! `EGRET_UPDATE_BASELINE=1` rewrites `tests/conformance/baseline-*.json`.

mod conformance;

use conformance::{report, run_suite, write_baseline};
use egret_ir::{Model, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

fn interpreter(model: &Model, inputs: Vec<Value>) -> Result<Vec<Value>, String> {
    let interp = egret_runtime::Interpreter::for_model(model).map_err(|e| e.to_string())?;
    interp.run(inputs).map_err(|e| e.to_string())
}

/// Cases the JIT compiled, compiled with at least one fused loop, and ran on
/// its interpreter fallback.
static JIT_COUNTS: [AtomicUsize; 3] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

fn jit(model: &Model, inputs: Vec<Value>) -> Result<Vec<Value>, String> {
    use egret_runtime::Executor;
    let jit = egret_backends::jit::Jit::for_model(model).map_err(|e| e.to_string())?;
    let out = jit.execute(inputs.clone()).map_err(|e| e.to_string())?;
    let slot = match jit.program_for(&inputs) {
        Some(c) if c.program.fused_counts().0 > 0 => 1,
        Some(_) => 0,
        None => 2,
    };
    JIT_COUNTS[slot].fetch_add(1, Ordering::Relaxed);
    if slot == 1 {
        JIT_COUNTS[0].fetch_add(1, Ordering::Relaxed);
    }
    Ok(out)
}

#[test]
fn onnx_backend_conformance_interpreter() {
    conformance_on("interp", interpreter);
}

#[test]
fn onnx_backend_conformance_jit() {
    conformance_on("jit", jit);
    let [compiled, looped, fallback] = JIT_COUNTS.each_ref().map(|c| c.load(Ordering::Relaxed));
    println!(
        "jit: {compiled} cases ran compiled ({looped} with fused Cranelift loops), {fallback} on the interpreter fallback"
    );
    if std::env::var_os("EGRET_FILTER").is_none() {
        // Guards against the JIT silently degrading to the fallback.
        assert!(looped >= 300, "only {looped} cases used fused loops");
        assert!(compiled >= 1700, "only {compiled} cases compiled");
    }
}

fn conformance_on(name: &str, backend: conformance::Backend) {
    if !conformance::data_root().join("node").exists() {
        panic!(
            "conformance data missing at {}: run scripts/fetch-models.sh onnx",
            conformance::data_root().display()
        );
    }
    let filter = std::env::var("EGRET_FILTER").ok();
    let update = std::env::var_os("EGRET_UPDATE_BASELINE").is_some();
    let mut regressions = Vec::new();
    for suite in [
        "node",
        "simple",
        "pytorch-operator",
        "pytorch-converted",
        "light",
    ] {
        let results = run_suite(suite, backend, filter.as_deref());
        if results.is_empty() {
            continue;
        }
        let baseline = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/conformance/baseline-{suite}.json"));
        if update && filter.is_none() && name == "interp" {
            write_baseline(&baseline, &results).expect("write baseline");
        }
        regressions.extend(
            report(
                suite,
                name,
                &results,
                filter.is_none().then_some(baseline.as_path()),
            )
            .into_iter()
            .map(|r| format!("[{suite}] {r}")),
        );
    }
    assert!(
        regressions.is_empty(),
        "{} tests regressed against the baseline:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}
