//! The ONNX backend conformance runner, shared by every backend's suite.
//!
//! It walks the test directories of the `onnx==1.22.0` wheel (unpacked by
//! `scripts/fetch-models.sh` into `~/.cache/egret/onnx-tests`), imports each
//! model, runs it through a [`Backend`], and compares every output with the
//! expected one: rtol 1e-3 / atol 1e-5 for floats, exact for everything else.
//!
//! A test is *passed*, *failed* (wrong value, error, panic or timeout, or a
//! random draw, which no runtime can reproduce) or
//! *unsupported* (egret reports an op it does not implement). The runner prints
//! a per-op table and the closing line
//! `onnx <suite> conformance: P passed, F failed, U unsupported (of T)`,
//! writes per-test results as JSON, and compares them with the committed
//! baseline: a test that passed there and does not pass now fails the suite.

use egret_frontends::onnx;
use egret_ir::{DType, Model, Tensor, Value, ValueType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Relative tolerance for float outputs.
pub const RTOL: f64 = 1e-3;
/// Absolute tolerance for float outputs.
pub const ATOL: f64 = 1e-5;
/// Wall-clock limit for one test.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A way to execute a model: the interpreter, the JIT, ...
pub type Backend = fn(&Model, Vec<Value>) -> Result<Vec<Value>, String>;

/// Outcome of one test.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every output matched.
    Pass,
    /// A value was wrong, or something errored, panicked or timed out.
    Fail,
    /// The model uses an op egret does not support.
    Unsupported,
}

/// Result of one test.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    /// Test directory name.
    pub name: String,
    /// The op (or op family) under test, for the per-op table.
    pub op: String,
    /// Outcome.
    pub status: Status,
    /// Why it did not pass.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub detail: String,
}

/// Root of the unpacked conformance data.
pub fn data_root() -> PathBuf {
    let cache = std::env::var_os("EGRET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/egret")
        });
    cache.join("onnx-tests")
}

/// One test case: a model, its input files and its expected output files.
struct Case {
    name: String,
    model: PathBuf,
    /// `(inputs, outputs)` per data set; `None` input list = generate light-model inputs.
    data: Vec<(Option<Vec<PathBuf>>, Vec<PathBuf>)>,
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for i in 0.. {
        let p = dir.join(format!("{prefix}_{i}.pb"));
        if !p.exists() {
            break;
        }
        v.push(p);
    }
    v
}

fn cases(suite: &str) -> Vec<Case> {
    let root = data_root().join(suite);
    let Ok(rd) = std::fs::read_dir(&root) else {
        return vec![];
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    let mut out = Vec::new();
    for p in entries {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if suite == "light" {
            if let Some(stem) = name.strip_suffix(".onnx") {
                let expected = root.join(format!("{stem}_output_0.pb"));
                out.push(Case {
                    name: stem.to_string(),
                    model: p.clone(),
                    data: vec![(None, vec![expected])],
                });
            }
            continue;
        }
        if !p.join("model.onnx").exists() {
            continue;
        }
        let mut sets: Vec<PathBuf> = std::fs::read_dir(&p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|d| d.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        sets.sort();
        let data = sets
            .iter()
            .map(|d| (Some(numbered(d, "input")), numbered(d, "output")))
            .collect();
        out.push(Case {
            name,
            model: p.join("model.onnx"),
            data,
        });
    }
    out
}

/// The op a test exercises: the single op type of the graph, or `expanded` /
/// `model` for multi-op graphs.
fn op_under_test(name: &str, model: Option<&Model>) -> String {
    if let Some(m) = model {
        let mut ops: Vec<String> = m
            .graph
            .node_ids()
            .filter_map(|id| m.graph.node(id).op.as_call().map(|c| c.op_type.clone()))
            .collect();
        ops.sort();
        ops.dedup();
        if ops.len() == 1 && !name.contains("_expanded") {
            return ops.remove(0);
        }
    }
    if name.contains("_expanded") {
        "(function-expanded)".into()
    } else {
        "(multi-op model)".into()
    }
}

/// The light models' input: `arange(n)/n` in the declared shape (symbolic dims = 1).
fn light_input(ty: &ValueType) -> Result<Value, String> {
    let tt = ty.as_tensor().ok_or("light model input is not a tensor")?;
    let shape: Vec<usize> = tt
        .shape
        .as_ref()
        .ok_or("unknown rank")?
        .dims()
        .iter()
        .map(|d| d.known().unwrap_or(1))
        .collect();
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
    Ok(Value::Tensor(
        Tensor::from_vec(shape, data).map_err(|e| e.to_string())?,
    ))
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= ATOL + RTOL * b.abs()
}

/// Compare two tensors; `Err` describes the first mismatch.
pub fn compare_tensors(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} != expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} != expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let dt = want.dtype();
    if dt == DType::String {
        let (g, w) = (
            got.as_strings().map_err(|e| e.to_string())?,
            want.as_strings().map_err(|e| e.to_string())?,
        );
        return match g.iter().zip(w).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(i) => Err(format!("element {i}: {:?} != expected {:?}", g[i], w[i])),
        };
    }
    if dt.is_float() {
        let (g, w) = (
            got.to_f64_vec().map_err(|e| e.to_string())?,
            want.to_f64_vec().map_err(|e| e.to_string())?,
        );
        let mut worst: Option<(usize, f64)> = None;
        let mut bad = 0usize;
        for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
            if !close(a, b) {
                bad += 1;
                let d = (a - b).abs();
                if worst.is_none_or(|(_, wd)| d > wd || wd.is_nan()) {
                    worst = Some((i, d));
                }
            }
        }
        return match worst {
            None => Ok(()),
            Some((i, _)) => Err(format!(
                "{bad} of {} elements differ; worst at {i}: {} vs expected {}",
                w.len(),
                g[i],
                w[i]
            )),
        };
    }
    // Integers, bools, float8/float4 codes: exact bytes.
    match got
        .bytes()
        .iter()
        .zip(want.bytes())
        .position(|(a, b)| a != b)
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "byte {i} differs: {} vs expected {}",
            got.bytes()[i],
            want.bytes()[i]
        )),
    }
}

/// Compare two values of any kind.
pub fn compare_values(got: &Value, want: &Value) -> Result<(), String> {
    match (got, want) {
        (Value::Tensor(g), Value::Tensor(w)) => compare_tensors(g, w),
        (Value::Sequence(g), Value::Sequence(w)) => {
            if g.len() != w.len() {
                return Err(format!(
                    "sequence length {} != expected {}",
                    g.len(),
                    w.len()
                ));
            }
            g.iter().zip(w).enumerate().try_for_each(|(i, (a, b))| {
                compare_tensors(a, b).map_err(|e| format!("sequence item {i}: {e}"))
            })
        }
        (Value::Optional(g), Value::Optional(w)) => match (g, w) {
            (None, None) => Ok(()),
            (Some(a), Some(b)) => compare_values(a, b),
            _ => Err("optional presence differs".into()),
        },
        // An optional holding a tensor compares equal to that tensor, and back.
        (Value::Optional(Some(a)), b) => compare_values(a, b),
        (a, Value::Optional(Some(b))) => compare_values(a, b),
        _ => Err("value kinds differ".into()),
    }
}

/// Whether the model's graph samples (Bernoulli, Random*, Multinomial).
fn draws_random_values(model: &Model) -> bool {
    let g = &model.graph;
    g.node_ids().any(|id| {
        g.node(id)
            .op
            .as_call()
            .is_some_and(|c| egret_runtime::fold::is_random(&c.op_type))
    })
}

fn run_case(case: &Case, backend: Backend) -> TestResult {
    let fail = |op: String, detail: String| TestResult {
        name: case.name.clone(),
        op,
        status: Status::Fail,
        detail,
    };
    let model = match onnx::load(&case.model).map_err(onnx::OnnxError::into_root) {
        Ok(m) => m,
        Err(onnx::OnnxError::Unsupported(list)) => {
            let ops: Vec<String> = list
                .iter()
                .map(|(d, o, _)| {
                    if d.is_empty() {
                        o.clone()
                    } else {
                        format!("{d}::{o}")
                    }
                })
                .collect();
            let op = if ops.len() == 1 && !case.name.contains("_expanded") {
                ops[0].clone()
            } else {
                op_under_test(&case.name, None)
            };
            return TestResult {
                name: case.name.clone(),
                op,
                status: Status::Unsupported,
                detail: format!("unsupported: {}", ops.join(", ")),
            };
        }
        Err(e) => return fail(op_under_test(&case.name, None), format!("import: {e}")),
    };
    let op = op_under_test(&case.name, Some(&model));
    if draws_random_values(&model) {
        // A match would be chance, and chance made the pass counts of two
        // runs differ.
        return fail(
            op,
            "draws random values: ONNX specifies no generator, so the expected draw cannot be reproduced".into(),
        );
    }
    for (inputs, outputs) in &case.data {
        let g = &model.graph;
        let feeds: Result<Vec<Value>, String> = match inputs {
            Some(files) => {
                if files.len() > g.inputs.len() {
                    return fail(
                        op,
                        format!(
                            "{} input files for {} graph inputs",
                            files.len(),
                            g.inputs.len()
                        ),
                    );
                }
                files
                    .iter()
                    .zip(&g.inputs)
                    .map(|(f, &o)| {
                        onnx::read_value_pb(f, g.value_type(o))
                            .map_err(|e| format!("input {}: {e}", f.display()))
                    })
                    .collect()
            }
            None => g
                .inputs
                .iter()
                .map(|&o| light_input(g.value_type(o)))
                .collect(),
        };
        let feeds = match feeds {
            Ok(f) => f,
            Err(e) => return fail(op, e),
        };
        // ONNX tests may leave trailing optional inputs without a file.
        if feeds.len() < g.inputs.len() {
            return fail(
                op,
                format!("{} inputs given, graph has {}", feeds.len(), g.inputs.len()),
            );
        }
        let got = match backend(&model, feeds) {
            Ok(v) => v,
            Err(e) if e.starts_with("unsupported ops") => {
                return TestResult {
                    name: case.name.clone(),
                    op,
                    status: Status::Unsupported,
                    detail: e,
                }
            }
            Err(e) => return fail(op, e),
        };
        if got.len() < outputs.len() {
            return fail(
                op,
                format!("{} outputs, expected {}", got.len(), outputs.len()),
            );
        }
        for (i, (f, gv)) in outputs.iter().zip(&got).enumerate() {
            let want = match onnx::read_value_pb(f, g.value_type(g.outputs[i])) {
                Ok(w) => w,
                Err(e) => return fail(op, format!("expected output {i}: {e}")),
            };
            if let Err(e) = compare_values(gv, &want) {
                return fail(
                    op,
                    format!("output {i} ({}): {e}", g.value_name(g.outputs[i])),
                );
            }
        }
    }
    TestResult {
        name: case.name.clone(),
        op,
        status: Status::Pass,
        detail: String::new(),
    }
}

/// Run one case on a worker thread with a timeout, turning panics into failures.
fn run_guarded(case: Case, backend: Backend) -> TestResult {
    let name = case.name.clone();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(64 << 20)
        .spawn(move || {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&case, backend)));
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return TestResult {
            name,
            op: "?".into(),
            status: Status::Fail,
            detail: format!("could not spawn: {e}"),
        };
    }
    match rx.recv_timeout(TIMEOUT) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            TestResult {
                name,
                op: "?".into(),
                status: Status::Fail,
                detail: format!("PANIC: {msg}"),
            }
        }
        Err(_) => TestResult {
            name,
            op: "?".into(),
            status: Status::Fail,
            detail: format!("timeout after {TIMEOUT:?}"),
        },
    }
}

/// Run a suite (`node`, `simple`, ...) on a backend. `filter` keeps tests whose
/// name contains it. Returns results sorted by name.
pub fn run_suite(suite: &str, backend: Backend, filter: Option<&str>) -> Vec<TestResult> {
    let all: Vec<Case> = cases(suite)
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
        .collect();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let queue = std::sync::Mutex::new(all);
    // A function, so the lock guard is dropped before the case runs.
    let next = || queue.lock().map(|mut q| q.pop()).unwrap_or(None);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(case) = next() {
                    let r = run_guarded(case, backend);
                    if let Ok(mut v) = results.lock() {
                        v.push(r);
                    }
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_default();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Counts of (passed, failed, unsupported).
pub fn tally(results: &[TestResult]) -> (usize, usize, usize) {
    let c = |s: Status| results.iter().filter(|r| r.status == s).count();
    (c(Status::Pass), c(Status::Fail), c(Status::Unsupported))
}

/// The per-op table, sorted by op name.
pub fn op_table(results: &[TestResult]) -> String {
    let mut by_op: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for r in results {
        let e = by_op.entry(&r.op).or_default();
        match r.status {
            Status::Pass => e.0 += 1,
            Status::Fail => e.1 += 1,
            Status::Unsupported => e.2 += 1,
        }
    }
    let mut s = format!("{:<36} {:>6} {:>6} {:>6}\n", "op", "pass", "fail", "unsup");
    for (op, (p, f, u)) in by_op {
        s += &format!("{op:<36} {p:>6} {f:>6} {u:>6}\n");
    }
    s
}

/// Print the table, failures and closing line; write JSON; check the baseline.
/// Returns the tests that regressed against the baseline.
pub fn report(
    suite: &str,
    backend_name: &str,
    results: &[TestResult],
    baseline: Option<&Path>,
) -> Vec<String> {
    let verbose =
        std::env::var_os("EGRET_VERBOSE").is_some() || std::env::var_os("EGRET_FILTER").is_some();
    println!("{}", op_table(results));
    if verbose {
        for r in results.iter().filter(|r| r.status != Status::Pass) {
            println!("{:?} {}: {}", r.status, r.name, r.detail);
        }
    }
    let (p, f, u) = tally(results);
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    let _ = std::fs::create_dir_all(&out_dir);
    let json_path = out_dir.join(format!("{suite}-{backend_name}.json"));
    if let Ok(j) = serde_json::to_string_pretty(results) {
        let _ = std::fs::write(&json_path, j);
    }
    let mut regressions = Vec::new();
    if let Some(b) = baseline {
        if let Ok(text) = std::fs::read_to_string(b) {
            let base: BTreeMap<String, Status> = serde_json::from_str(&text).unwrap_or_default();
            let now: BTreeMap<&str, &TestResult> =
                results.iter().map(|r| (r.name.as_str(), r)).collect();
            for (name, st) in &base {
                if *st == Status::Pass {
                    match now.get(name.as_str()) {
                        Some(r) if r.status == Status::Pass => {}
                        Some(r) => regressions.push(format!("{name}: {:?} {}", r.status, r.detail)),
                        None => regressions.push(format!("{name}: missing")),
                    }
                }
            }
        }
    }
    println!("per-test results: {}", json_path.display());
    println!("onnx {suite} conformance ({backend_name}): {p} passed, {f} failed, {u} unsupported (of {})", results.len());
    regressions
}

/// Write results as a baseline map `{test: status}`.
pub fn write_baseline(path: &Path, results: &[TestResult]) -> std::io::Result<()> {
    let map: BTreeMap<&str, &Status> = results
        .iter()
        .map(|r| (r.name.as_str(), &r.status))
        .collect();
    let text = serde_json::to_string_pretty(&map).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(tmp, path)
}
