//! The `egret` binary end to end, on the tiny model of `tests/fixtures/tiny/`
//! (built by `make_tiny.py`): y = Relu(x @ w + b), "stats/y:0" = Identity(y).

mod common;
mod ort;
use common::{available, cache};

use egret_frontends::npy;
use egret_ir::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const W: [[f32; 2]; 3] = [[1.0, -1.0], [2.0, 0.5], [-3.0, 1.0]];
const B: [f32; 2] = [0.5, -0.25];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// Run `egret` in the fixtures directory (so paths in the output are relative).
fn egret(args: &[&str]) -> Output {
    egret_env(args, &[])
}

/// [`egret`] with extra environment variables.
fn egret_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(fixtures())
        .output()
        .expect("spawn egret")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "egret failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

/// Expect a failure whose stderr mentions `needle`.
fn fails(args: &[&str], needle: &str) {
    let o = egret(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{args:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("egret-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn expected(x: &[f32], batch: usize) -> Vec<f32> {
    let mut y = Vec::new();
    for r in 0..batch {
        for (c, b) in B.iter().enumerate() {
            let v: f32 = (0..3).map(|k| x[r * 3 + k] * W[k][c]).sum::<f32>() + b;
            y.push(v.max(0.0));
        }
    }
    y
}

#[test]
fn inspect_tables() {
    insta::assert_snapshot!("inspect", stdout(&egret(&["inspect", "tiny.onnx"])));
}

#[test]
fn inspect_json() {
    let out = stdout(&egret(&["inspect", "tiny.onnx", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["nodes"], 4);
    assert_eq!(v["parameters"], 8);
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["batch", 3]));
    insta::assert_snapshot!("inspect_json", out);
}

#[test]
fn run_writes_npy_outputs() {
    let dir = scratch("run");
    let x = [1f32, 2.0, 3.0, -1.0, 0.5, 0.25];
    let xp = dir.join("x.npy");
    npy::write(&xp, &Tensor::from_vec(vec![2, 3], x.to_vec()).unwrap()).unwrap();
    let out_dir = dir.join("out");
    let arg = format!("x={}", xp.display());
    let text = stdout(&egret(&[
        "run",
        "tiny.onnx",
        "--input",
        &arg,
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]));
    assert!(
        text.contains("stats/y:0") && text.contains("run "),
        "{text}"
    );
    let want = expected(&x, 2);
    for file in ["y.npy", "stats_y_0.npy"] {
        let t = npy::read(&out_dir.join(file)).unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        let got = t.as_slice::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{file}: {got:?} vs {want:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_random_is_deterministic() {
    let dir = scratch("random");
    let mut files = Vec::new();
    for run in ["a", "b"] {
        let out = dir.join(run);
        let text = stdout(&egret(&[
            "run",
            "tiny.onnx",
            "--random",
            "--seed",
            "3",
            "--dim",
            "batch=5",
            "--json",
            "-o",
            out.to_str().unwrap(),
        ]));
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["outputs"][0]["name"], "y");
        assert_eq!(v["outputs"][0]["shape"], serde_json::json!([5, 2]));
        assert!(
            v["outputs"][0]["min"].as_f64().unwrap() >= 0.0,
            "relu output"
        );
        assert!(v["run_ms"].is_number());
        files.push(std::fs::read(out.join("y.npy")).unwrap());
    }
    assert_eq!(files[0], files[1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failures_are_clear_errors() {
    let dir = scratch("errors");
    fails(&["inspect", "no-such-model.onnx"], "no such file");
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xfe this is not a protobuf \x00\x01\x02").unwrap();
    fails(
        &["inspect", garbage.to_str().unwrap()],
        "is not a valid ONNX protobuf",
    );
    fails(
        &["run", garbage.to_str().unwrap(), "--random"],
        "is not a valid ONNX protobuf",
    );
    fails(&["run", "tiny.onnx"], "give --input NAME=FILE or --random");
    fails(
        &["run", "tiny.onnx", "--input", "nope=x.npy"],
        "the model has no input `nope`",
    );
    fails(
        &["run", "tiny.onnx", "--input", "x=missing.npy"],
        "missing.npy",
    );
    let wrong = dir.join("wrong.npy");
    npy::write(
        &wrong,
        &Tensor::from_vec(vec![2, 3], vec![0f64; 6]).unwrap(),
    )
    .unwrap();
    fails(
        &[
            "run",
            "tiny.onnx",
            "--input",
            &format!("x={}", wrong.display()),
        ],
        "the file holds f64, the model expects f32",
    );
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"\x93NUMPY\x01\x00\x05\x00{'a'").unwrap();
    fails(
        &[
            "run",
            "tiny.onnx",
            "--input",
            &format!("x={}", bad.display()),
        ],
        "not a valid .npy file",
    );
    let gguf = dir.join("model.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    fails(&["inspect", gguf.to_str().unwrap()], "malformed GGUF");
    std::fs::remove_dir_all(&dir).unwrap();
    // Usage errors come from clap (exit code 2), not from a panic.
    let o = egret(&["run", "tiny.onnx", "--dim", "batch"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `--prune-ffn 0,25` with `--budget`: both shares are tried under the same
/// per-weight choice, each is reported with its measured error, and the one
/// chosen is the smallest within the budget, the size of the model written.
#[test]
fn optimize_chooses_a_structured_share_under_a_budget() {
    let model = cache().join("models/minilm");
    if !available(&model, "scripts/fetch-models.sh minilm") {
        return;
    }
    let pairs = fixtures().join("../similarity-pairs.tsv");
    let out = scratch("structured").join("m.egret");
    let args = [
        "optimize",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quantize",
        "int8",
        "--prune-ffn",
        "0,25",
        "--budget",
        "1%",
        "--calibration",
        pairs.to_str().unwrap(),
        "--json",
    ];
    let v: serde_json::Value = serde_json::from_str(&stdout(&egret(&args))).unwrap();
    let tried = v["structure_candidates"].as_array().unwrap();
    let shares: Vec<u64> = tried
        .iter()
        .map(|c| c["ffn_drop_pct"].as_u64().unwrap())
        .collect();
    assert_eq!(shares, [0, 25]);
    let within: Vec<&serde_json::Value> = tried
        .iter()
        .filter(|c| c["within_budget"] == true)
        .collect();
    for c in &within {
        assert!(c["measured_err"].as_f64().unwrap() <= 0.01, "{c}");
    }
    let smallest = within
        .iter()
        .min_by_key(|c| c["model_bytes"].as_u64())
        .unwrap();
    assert_eq!(smallest["chosen"], true, "{tried:?}");
    assert_eq!(tried.iter().filter(|c| c["chosen"] == true).count(), 1);
    assert_eq!(v["quantize"]["model_bytes_after"], smallest["model_bytes"]);
    // Pruning 25 % of the FFN channels leaves a smaller model.
    assert!(tried[1]["model_bytes"].as_u64() < tried[0]["model_bytes"].as_u64());
    fails(
        &[
            "optimize",
            "tiny.onnx",
            "-o",
            "x.egret",
            "--prune-ffn",
            "10,25",
        ],
        "candidates for --budget",
    );
}

#[test]
fn help_and_version() {
    for sub in [
        "inspect", "run", "optimize", "passes", "export", "eval", "generate", "bench",
    ] {
        let text = stdout(&egret(&[sub, "--help"]));
        assert!(
            text.contains("Examples:") && text.contains(&format!("egret {sub}")),
            "{sub} --help lacks examples:\n{text}"
        );
    }
    assert_eq!(
        stdout(&egret(&["--version"])).trim(),
        format!("egret {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The printed IR of a real model, once the frontend imports the real models:
/// gated on silero-vad being present and loading, then snapshots PP-OCR's
/// direction classifier and checks that its text form round-trips.
#[test]
fn real_model_ir_snapshot() {
    let cls = cache().join("models/ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    if !available(&cls, "scripts/fetch-models.sh ppocr") {
        return;
    }
    let mut model = egret_frontends::onnx::load(&cls).expect("ppocr cls imports");
    // The source path differs between machines.
    model.metadata.remove("source");
    let (text, weights) = egret_ir::text::print_model_with_weights(&model);
    let table: std::collections::HashMap<String, Tensor> = weights.into_iter().collect();
    let back = egret_ir::text::parse_model(&text, &|k| table.get(k).cloned())
        .expect("printed IR parses back");
    assert_eq!(
        egret_ir::text::print_model(&back),
        text,
        "print -> parse -> print is the identity"
    );
    insta::assert_snapshot!("ppocr_cls_ir", text);
}

/// `egret passes`: the registered passes with their one-line docs.
#[test]
fn passes_list() {
    insta::assert_snapshot!("passes", stdout(&egret(&["passes"])));
}

/// A positive finite number at `v[key]`.
fn positive(v: &serde_json::Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"));
    assert!(x.is_finite() && x > 0.0, "`{key}` = {x}");
    x
}

/// The latency statistics every bench report (and its `compare`) carries.
fn check_latency(v: &serde_json::Value, runs: u64) {
    assert_eq!(v["runs"], runs, "{v}");
    let [min, median, p90, p99, max, mean] = [
        "min_ms",
        "median_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "mean_ms",
    ]
    .map(|k| positive(v, k));
    assert!(
        min <= median && median <= p90 && p90 <= p99 && p99 <= max,
        "{v}"
    );
    assert!(min <= mean && mean <= max, "{v}");
    assert!((positive(v, "runs_per_s") - 1e3 / mean).abs() < 1e-6 * (1e3 / mean));
}

#[test]
fn bench_json() {
    let out = stdout(&egret(&[
        "bench",
        "tiny.onnx",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--dim",
        "batch=4",
        "--threads",
        "1",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    check_latency(&v, 3);
    assert_eq!(v["backend"], "interp");
    assert_eq!(v["threads"], 1);
    assert_eq!(v["warmup"], 1);
    assert!(v["prepare_ms"].as_f64().is_some_and(|x| x >= 0.0), "{v}");
    assert_eq!(
        v["inputs"],
        serde_json::json!([{"name": "x", "dtype": "f32", "shape": [4, 3]}])
    );
    assert!(v.get("compare").is_none(), "{v}");
    // The text form names the same things.
    let text = stdout(&egret(&["bench", "tiny.onnx", "--runs", "2"]));
    assert!(
        text.contains("interp") && text.contains("median") && text.contains("egret"),
        "{text}"
    );
}

#[test]
fn bench_compares_with_onnxruntime() {
    let Some(py) = ort::python() else { return };
    let dir = scratch("bench-compare");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // A model that is not ONNX (GPT-2 safetensors) goes through the ONNX exporter.
    for model in ["tiny.onnx", "../gpt2-tiny"] {
        let out = stdout(&egret_env(
            &[
                "bench",
                model,
                "--runs",
                "4",
                "--dim",
                "batch=3",
                "--dim",
                "seq=4",
                "--threads",
                "1",
                "--seed",
                "5",
                "--compare",
                "onnxruntime",
                "--json",
            ],
            &[("EGRET_PYTHON", &py), ("TMPDIR", &tmp)],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        check_latency(&v, 4);
        let c = &v["compare"];
        check_latency(c, 4);
        assert_eq!(c["runtime"], "onnxruntime");
        assert!(
            c["version"]
                .as_str()
                .is_some_and(|s| s.starts_with("1.32.")),
            "{c}"
        );
        let ratio = positive(c, "ratio");
        let want = positive(&v, "median_ms") / positive(c, "median_ms");
        assert!((ratio - want).abs() <= 1e-9 * want, "{ratio} vs {want}");
        let diff = c["max_abs_diff"].as_f64().expect("max_abs_diff");
        assert!((0.0..=1e-4).contains(&diff), "{model}: max diff {diff}");
    }
    // egret's temporary folder is removed afterwards.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("egret-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `bench --compare onnxruntime` with `EGRET_PYTHON=python`: it must fail
/// with exit code 1; returns stderr.
fn compare_fails_with_python(python: &std::path::Path) -> String {
    let o = egret_env(
        &[
            "bench",
            "tiny.onnx",
            "--runs",
            "1",
            "--compare",
            "onnxruntime",
        ],
        &[("EGRET_PYTHON", python)],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

#[test]
fn bench_failures_are_clear_errors() {
    let o = egret(&["bench", "tiny.onnx", "--threads", "0"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("bench_threads_zero", String::from_utf8_lossy(&o.stderr));
    fails(
        &["bench", "tiny.onnx", "--runs", "0"],
        "--runs must be at least 1",
    );
    fails(
        &["bench", "tiny.onnx", "--input", "nope=x.npy"],
        "the model has no input `nope`",
    );
    let dir = scratch("bench-errors");
    let missing = dir.join("no-python");
    let err = compare_fails_with_python(&missing);
    assert!(
        err.starts_with("error: cannot run python") && err.contains("scripts/setup-python.sh"),
        "{err}"
    );
    // A python without numpy and onnxruntime (-S: no site-packages).
    let bare = dir.join("bare-python");
    std::fs::write(&bare, "#!/bin/sh\nexec python3 -S \"$@\"\n").unwrap();
    let mut perm = std::fs::metadata(&bare).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&bare, perm).unwrap();
    let err = compare_fails_with_python(&bare);
    assert!(
        err.contains("cannot import onnxruntime") && err.contains("scripts/setup-python.sh"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    // Usage errors come from clap: no model, or a model with --bandwidth.
    assert_eq!(egret(&["bench"]).status.code(), Some(2));
    assert_eq!(
        egret(&["bench", "tiny.onnx", "--bandwidth"]).status.code(),
        Some(2)
    );
}

#[test]
fn bench_bandwidth_json() {
    let out = stdout(&egret(&[
        "bench",
        "--bandwidth",
        "--bandwidth-mib",
        "8",
        "--threads",
        "2",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["bytes"], 8 << 20);
    assert_eq!(v["passes"], 5);
    let read = v["read"].as_array().expect("read rows");
    assert_eq!(read.len(), 2, "{v}");
    for (row, threads) in read.iter().zip([1, 2]) {
        assert_eq!(row["threads"], threads);
        let best = positive(row, "best_gbps");
        assert!(best >= positive(row, "median_gbps"), "{row}");
    }
}
