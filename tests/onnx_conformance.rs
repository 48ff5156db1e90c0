//! ONNX backend conformance on the reference interpreter.
//!
//! Runs the `node`, `simple`, `pytorch-operator`, `pytorch-converted` and `light`
//! test directories of `onnx==1.22.0` (fetched by `scripts/fetch-models.sh onnx`).
//! `EGRET_FILTER=substr` runs only matching tests and prints every failure;
//! `EGRET_UPDATE_BASELINE=1` rewrites `tests/conformance/baseline-*.json`.

mod conformance;

use conformance::{report, run_suite, write_baseline};
use egret_ir::{Model, Value};
use std::path::PathBuf;

fn interpreter(model: &Model, inputs: Vec<Value>) -> Result<Vec<Value>, String> {
    let interp = egret_runtime::Interpreter::for_model(model).map_err(|e| e.to_string())?;
    interp.run(inputs).map_err(|e| e.to_string())
}

#[test]
fn onnx_backend_conformance_interpreter() {
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
        let results = run_suite(suite, interpreter, filter.as_deref());
        if results.is_empty() {
            continue;
        }
        let baseline = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/conformance/baseline-{suite}.json"));
        if update && filter.is_none() {
            write_baseline(&baseline, &results).expect("write baseline");
        }
        regressions.extend(
            report(
                suite,
                "interp",
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
