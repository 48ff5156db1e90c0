//! Helpers shared by the integration tests: where the fetched test data lives
//! and what happens when it is missing.
//!
//! Models and texts are fetched by `scripts/fetch-models.sh` and
//! `scripts/fetch-texts.sh` into `~/.cache/egret` (or `$EGRET_CACHE`). A plain
//! `cargo test` on a machine without them skips the tests that need them, with a
//! message. `scripts/test.sh` (and so CI) sets `EGRET_REQUIRE_DATA=1`, which turns
//! every such skip into a failure: CI can never pass by silently skipping.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

/// The cache folder the fetch scripts fill.
pub fn cache() -> PathBuf {
    std::env::var_os("EGRET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/egret")
        })
}

/// Whether `path` exists. If it does not, panic when `EGRET_REQUIRE_DATA` is
/// set, and otherwise print a SKIP line naming `fetch`, the command that makes it.
pub fn available(path: &Path, fetch: &str) -> bool {
    path.exists() || skip(&format!("{} is absent (run {fetch})", path.display()))
}

/// Whether the program `tool` runs (`tool --version` succeeds). If it does
/// not, panic when `EGRET_REQUIRE_DATA` is set, and otherwise print a SKIP
/// line naming `install`, the command that installs it.
pub fn tool_available(tool: &str, install: &str) -> bool {
    let runs = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    runs || skip(&format!("{tool} is not installed (run {install})"))
}

/// Reports a missing prerequisite: a panic when `EGRET_REQUIRE_DATA` is set,
/// a SKIP line otherwise. Returns false, for the callers' `||`.
fn skip(msg: &str) -> bool {
    if std::env::var_os("EGRET_REQUIRE_DATA").is_some_and(|v| v != "0") {
        panic!("EGRET_REQUIRE_DATA is set but {msg}");
    }
    eprintln!("SKIP: {msg}");
    false
}

/// An ONNX backend node test that egret imports, with the inputs of its first
/// data set.
pub struct NodeCase {
    /// The test's name (its folder, e.g. `test_add_bcast`).
    pub name: String,
    /// The test's folder.
    pub dir: PathBuf,
    /// The imported `model.onnx`.
    pub model: egret_ir::Model,
    /// `test_data_set_0/input_<i>.pb`, typed by the graph's inputs.
    pub inputs: Vec<egret_ir::Value>,
}

/// Whether a node test draws random values (Bernoulli, Random*, Multinomial):
/// without a seed, two runs cannot be compared.
pub fn is_random(name: &str) -> bool {
    ["bernoulli", "random", "multinomial"]
        .iter()
        .any(|r| name.contains(r))
}

/// The ONNX node tests egret imports and whose inputs it reads, sorted by name
/// (nothing, after [`available`], when the conformance data is absent).
pub fn node_cases() -> impl Iterator<Item = NodeCase> {
    use egret_frontends::onnx;
    let root = cache().join("onnx-tests/node");
    let mut dirs: Vec<PathBuf> = if available(&root, "scripts/fetch-models.sh onnx") {
        let rd = std::fs::read_dir(&root).expect("node test folder reads");
        rd.flatten().map(|e| e.path()).collect()
    } else {
        vec![]
    };
    dirs.sort();
    dirs.into_iter().filter_map(|dir| {
        let name = dir.file_name()?.to_string_lossy().to_string();
        let model = onnx::load(&dir.join("model.onnx")).ok()?;
        let g = &model.graph;
        let data = dir.join("test_data_set_0");
        let inputs = g
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &o)| {
                onnx::read_value_pb(&data.join(format!("input_{i}.pb")), g.value_type(o)).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(NodeCase {
            name,
            dir,
            model,
            inputs,
        })
    })
}

/// A real-model fixture of `tests/fixtures/real/<name>/`: the model fetched from
/// PyPI, the committed inputs and onnxruntime's outputs on them
/// (`scripts/make-fixtures.py`).
pub struct RealCase {
    /// The fixture's folder name, e.g. `silero_vad_16k`.
    pub name: String,
    /// The model file.
    pub path: PathBuf,
    /// The imported model.
    pub model: egret_ir::Model,
    /// The graph input names, as the fixture recorded them.
    pub input_names: Vec<String>,
    /// The inputs, in that order.
    pub inputs: Vec<egret_ir::Value>,
    /// The graph output names.
    pub output_names: Vec<String>,
    /// onnxruntime's outputs, in order.
    pub want: Vec<egret_ir::Value>,
}

#[derive(serde::Deserialize)]
struct Manifest {
    model: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// The real-model fixture `name` (`None`, after [`available`], when its model
/// has not been fetched).
pub fn real_case(name: &str) -> Option<RealCase> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(name);
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    let m: Manifest = serde_json::from_str(&text).expect("manifest json");
    let path = cache().join("models").join(&m.model);
    if !available(&path, "scripts/fetch-models.sh silero ppocr") {
        return None;
    }
    let model = egret_frontends::onnx::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let read = |f: String| {
        let t = egret_frontends::npy::read(&dir.join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        egret_ir::Value::Tensor(t)
    };
    let inputs = m
        .inputs
        .iter()
        .map(|n| read(format!("input_{n}.npy")))
        .collect();
    let want = (0..m.outputs.len())
        .map(|i| read(format!("output_{i}.npy")))
        .collect();
    Some(RealCase {
        name: name.to_string(),
        path,
        model,
        input_names: m.inputs,
        inputs,
        output_names: m.outputs,
        want,
    })
}

/// Every real-model fixture whose model has been fetched, sorted by name.
pub fn real_cases() -> Vec<RealCase> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .expect("fixtures")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names.iter().filter_map(|n| real_case(n)).collect()
}
