//! ONNX export and the `.egret` container, end to end.
//!
//! * Real models (silero-vad, PP-OCRv4) and a sample of ONNX node tests are
//!   exported, re-imported with egret and run by the interpreter: outputs must be
//!   bit-identical to the original model's (every node test the interpreter
//!   runs; every 6th of them also goes through onnxruntime).
//! * The same exported files, and the real models after the default optimizer
//!   pipeline, run in onnxruntime 1.32 (the venv of `scripts/setup-python.sh`,
//!   through `scripts/ort-check.py`); their outputs must match onnxruntime's on
//!   the original model within 1e-5 (the committed fixtures for real models,
//!   a fresh onnxruntime run of the original file for node tests).
//! * A real model optimized into an `.egret` container loads back through
//!   `egret_frontends::load` with identical outputs.

mod common;
mod ort;
use common::{available, cache, is_random, real_case, real_cases, NodeCase};
use ort::{close, identical, python, run_ort, OrtCase};

use egret_backends::onnx_export;
use egret_frontends::container;
use egret_frontends::onnx::{self, Message};
use egret_frontends::safetensors::SafetensorsFile;
use egret_ir::{Model, Value};
use egret_passes::pass::{PassContext, Registry, DEFAULT_PIPELINE};
use std::path::PathBuf;

fn run(m: &Model, inputs: &[Value]) -> Result<Vec<Value>, String> {
    egret_runtime::Interpreter::for_model(m)
        .and_then(|it| it.run(inputs.to_vec()))
        .map_err(|e| e.to_string())
}

/// Export `m`, re-import the bytes with egret; the file bytes and the model.
fn export_reimport(m: &Model) -> Result<(Vec<u8>, Model), String> {
    let bytes = onnx_export::export(m)
        .map_err(|e| format!("export: {e}"))?
        .encode_to_vec();
    let back = onnx::load_bytes(&bytes, None).map_err(|e| format!("re-import: {e}"))?;
    Ok((bytes, back))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("egret-export-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn optimized(m: &Model) -> Model {
    let mut m = m.clone();
    Registry::builtin()
        .pipeline(DEFAULT_PIPELINE)
        .unwrap()
        .run(&mut m, &PassContext::default())
        .unwrap();
    m
}

#[test]
fn real_models_export_and_run_in_onnxruntime() {
    let cases = real_cases();
    let dir = temp_dir("real");
    let mut ort = vec![];
    for c in &cases {
        let (bytes, back) = export_reimport(&c.model).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let want = run(&c.model, &c.inputs).unwrap();
        identical(&run(&back, &c.inputs).unwrap(), &want)
            .unwrap_or_else(|e| panic!("{}: re-imported: {e}", c.name));
        let opt = optimized(&c.model);
        let (opt_bytes, opt_back) =
            export_reimport(&opt).unwrap_or_else(|e| panic!("{} optimized: {e}", c.name));
        identical(
            &run(&opt_back, &c.inputs).unwrap(),
            &run(&opt, &c.inputs).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{} optimized: re-imported: {e}", c.name));
        for (tag, b) in [("plain", bytes), ("optimized", opt_bytes)] {
            let case = OrtCase::new(&dir.join(&c.name).join(tag), &b, &c.inputs).unwrap();
            ort.push((format!("{} {tag}", c.name), case, c.want.clone()));
        }
    }
    let Some(py) = python() else { return };
    run_ort(
        &py,
        &dir,
        &ort.iter().map(|(_, c, _)| c).collect::<Vec<_>>(),
    );
    for (name, case, want) in &ort {
        let got = case
            .outputs(want.len())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        close(&got, want).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("{name}: onnxruntime on the export matches the fixture");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every runnable node test is exported and re-imported; every `STEP`-th
/// (sorted by name) also runs in onnxruntime.
const STEP: usize = 6;

#[test]
fn node_tests_export_and_run_in_onnxruntime() {
    let tmp = temp_dir("node");
    let (mut runnable, mut failures, mut ort) = (0, vec![], vec![]);
    // egret's and onnxruntime's random streams differ, seeded or not.
    for case in common::node_cases().filter(|c| !is_random(&c.name)) {
        let NodeCase {
            name,
            dir,
            model,
            inputs,
        } = case;
        if inputs.iter().any(|v| v.as_tensor().is_err()) {
            continue;
        }
        let Ok(want) = run(&model, &inputs) else {
            continue;
        };
        if want.iter().any(|v| v.as_tensor().is_err()) {
            continue;
        }
        runnable += 1;
        let (bytes, back) = match export_reimport(&model) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if let Err(e) = run(&back, &inputs).and_then(|got| identical(&got, &want)) {
            failures.push(format!("{name}: re-imported: {e}"));
            continue;
        }
        if runnable % STEP != 0 {
            continue;
        }
        let original = std::fs::read(dir.join("model.onnx")).unwrap();
        let case = |tag: &str, b: &[u8]| OrtCase::new(&tmp.join(&name).join(tag), b, &inputs);
        if let (Some(orig), Some(exp)) = (case("original", &original), case("exported", &bytes)) {
            ort.push((name, orig, exp, want.len()));
        }
    }
    println!(
        "{runnable} runnable node tests exported and re-imported, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(runnable > 1500, "only {runnable} node tests exported");
    let Some(py) = python() else { return };
    let all: Vec<&OrtCase> = ort.iter().flat_map(|(_, o, e, _)| [o, e]).collect();
    run_ort(&py, &tmp, &all);
    let (mut compared, mut ort_refused) = (0, vec![]);
    for (name, orig, exp, n) in &ort {
        let Ok(want) = orig.outputs(*n) else {
            ort_refused.push(name.as_str()); // onnxruntime cannot run the original either
            continue;
        };
        compared += 1;
        match exp.outputs(*n).and_then(|got| close(&got, &want)) {
            Ok(()) => {}
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    println!(
        "onnxruntime: {compared} exported node tests match the originals; \
         {} originals onnxruntime cannot run ({})",
        ort_refused.len(),
        ort_refused.join(", ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared > 150, "only {compared} node tests compared");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn optimized_container_loads_with_the_same_outputs() {
    let Some(c) = real_case("ppocr_cls") else {
        return;
    };
    let dir = temp_dir("container");
    let path = dir.join("cls.egret");
    let opt = optimized(&c.model);
    container::write(&path, &opt, None).unwrap();
    let loaded = egret_frontends::load(&path).unwrap();
    assert_eq!(
        egret_ir::text::print_model(&loaded.model),
        egret_ir::text::print_model(&opt)
    );
    let got = run(&loaded.model, &c.inputs).unwrap();
    identical(&got, &run(&opt, &c.inputs).unwrap()).unwrap();
    close(&got, &c.want).unwrap();
    // Every large tensor is data in the safetensors file, none is missing.
    let (_, weights) = egret_ir::text::print_model_with_weights(&opt);
    let file = SafetensorsFile::open(&path.join(container::WEIGHTS_FILE)).unwrap();
    assert!(!weights.is_empty());
    let mut names: Vec<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(file.names(), names);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// MiniLM (safetensors → IR by egret's BERT builder) exported to ONNX runs in
/// onnxruntime: a batch of two sentences, the second padded, so the attention
/// mask matters. onnxruntime's outputs must match egret's interpreter on the
/// original graph within 1e-5 relative (measured: 2.1e-6).
#[test]
fn minilm_export_runs_in_onnxruntime() {
    let dir = cache().join("models/minilm");
    if !available(
        &dir.join("model.safetensors"),
        "scripts/fetch-models.sh minilm",
    ) {
        return;
    }
    let model = egret_frontends::load(&dir).expect("MiniLM loads").model;
    // "[CLS] a man is eating food . [SEP]" and "[CLS] a man eats [SEP]" + padding.
    let ids = [
        101i64, 1037, 2158, 2003, 5983, 2833, 1012, 102, 101, 1037, 2158, 20323, 102, 0, 0, 0,
    ];
    let mask = [1i64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0];
    let tensor =
        |v: &[i64]| Value::Tensor(egret_ir::Tensor::from_vec(vec![2, 8], v.to_vec()).unwrap());
    let inputs: Vec<Value> = model
        .graph
        .inputs
        .iter()
        .map(|&o| match model.graph.value_name(o) {
            "input_ids" => tensor(&ids),
            "attention_mask" => tensor(&mask),
            "token_type_ids" => tensor(&[0; 16]),
            other => panic!("unexpected MiniLM input {other}"),
        })
        .collect();
    let want = run(&model, &inputs).unwrap();
    let (bytes, back) = export_reimport(&model).unwrap();
    identical(&run(&back, &inputs).unwrap(), &want).expect("re-imported MiniLM");
    let Some(py) = python() else { return };
    let tmp = temp_dir("minilm");
    let case = OrtCase::new(&tmp.join("plain"), &bytes, &inputs).unwrap();
    run_ort(&py, &tmp, &[&case]);
    let got = case.outputs(want.len()).unwrap();
    let e = egret_passes::check::max_error(&got, &want).unwrap();
    println!("minilm: onnxruntime on the export vs the interpreter: {e:?}");
    assert!(e.rel <= 1e-5, "MiniLM export in onnxruntime: {e:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
