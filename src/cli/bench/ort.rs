//! `egret bench --compare onnxruntime`: time the same model on the same inputs
//! in onnxruntime, through the embedded `ort_bench.py` run by a python that has
//! onnxruntime, with every file exchanged in a temporary folder.

use super::Protocol;
use anyhow::{anyhow, bail, Context, Result};
use egret_frontends::npy;
use egret_ir::{Model, Value};
use indicatif::ProgressBar;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The python script that times onnxruntime (see its docstring).
const SCRIPT: &str = include_str!("../ort_bench.py");

/// What onnxruntime measured.
pub struct Measured {
    /// `onnxruntime.__version__`.
    pub version: String,
    /// Latency of each timed run, in milliseconds.
    pub times_ms: Vec<f64>,
    /// The graph outputs of the last run.
    pub outputs: Vec<Value>,
}

/// The script's JSON reply.
#[derive(serde::Deserialize)]
struct Reply {
    version: String,
    times_ms: Vec<f64>,
    outputs: Vec<PathBuf>,
}

/// A fresh temporary folder, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("egret-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("creating temporary folder {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The python to run: `$EGRET_PYTHON`, else the venv of
/// `scripts/setup-python.sh`, else `python3` from the `PATH`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EGRET_PYTHON").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let cache = std::env::var_os("EGRET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/egret")
        });
    let venv = cache.join("venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// The ONNX file onnxruntime runs: `path` itself if it is ONNX, else `model`
/// exported into `dir`.
fn onnx_file(path: &Path, model: &Model, dir: &Path) -> Result<PathBuf> {
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        return Ok(path.to_path_buf());
    }
    let out = dir.join("model.onnx");
    egret_backends::onnx_export::write(model, &out)
        .with_context(|| format!("exporting {} to ONNX for onnxruntime", path.display()))?;
    Ok(out)
}

/// Time `model` (loaded from `path`) in onnxruntime on `inputs` with
/// `threads` intra-op threads and the same `protocol` as egret; `show` allows
/// a spinner on a terminal's stderr.
pub fn run(
    path: &Path,
    model: &Model,
    inputs: &[Value],
    threads: usize,
    protocol: Protocol,
    show: bool,
) -> Result<Measured> {
    let dir = TempDir::new()?;
    let onnx = onnx_file(path, model, &dir.0)?;
    let g = &model.graph;
    let mut feeds = serde_json::Map::new();
    for (i, (&o, v)) in g.inputs.iter().zip(inputs).enumerate() {
        let name = g.value_name(o);
        let t = v.as_tensor().map_err(|_| {
            anyhow!("input `{name}` is not a tensor; onnxruntime gets its inputs as .npy files")
        })?;
        let file = dir.0.join(format!("input_{i}.npy"));
        npy::write(&file, t).with_context(|| format!("writing input `{name}` for onnxruntime"))?;
        feeds.insert(name.to_string(), serde_json::to_value(&file)?);
    }
    let request = serde_json::json!({
        "model": onnx,
        "inputs": feeds,
        "threads": threads,
        "warmup": protocol.warmup,
        "runs": protocol.runs,
        "budget_s": Protocol::BUDGET.as_secs_f64(),
        "min_runs": Protocol::MIN_RUNS,
        "max_runs": Protocol::MAX_RUNS,
        "out_dir": dir.0,
    });
    let request_file = dir.0.join("request.json");
    std::fs::write(&request_file, request.to_string()).context("writing the request")?;
    let script = dir.0.join("ort_bench.py");
    std::fs::write(&script, SCRIPT).context("writing ort_bench.py")?;

    let spinner = if show && std::io::stderr().is_terminal() {
        let s = ProgressBar::new_spinner().with_message("onnxruntime");
        s.enable_steady_tick(Duration::from_millis(100));
        s
    } else {
        ProgressBar::hidden()
    };
    let py = python();
    let out = Command::new(&py).arg(&script).arg(&request_file).output();
    spinner.finish_and_clear();
    let out = out.map_err(|e| {
        anyhow!(
            "cannot run python `{}`: {e}; run scripts/setup-python.sh (or set EGRET_PYTHON)",
            py.display()
        )
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => bail!(
            "`{}` cannot import onnxruntime ({}); run scripts/setup-python.sh, \
             or set EGRET_PYTHON to a python with onnxruntime and numpy",
            py.display(),
            stderr.trim()
        ),
        _ => {
            let tail: Vec<&str> = stderr.trim().lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "onnxruntime failed on {}: {}",
                onnx.display(),
                tail.join("\n")
            )
        }
    }
    let reply: Reply =
        serde_json::from_slice(&out.stdout).context("reading ort_bench.py's reply")?;
    let outputs = reply
        .outputs
        .iter()
        .map(|p| {
            npy::read(p)
                .map(Value::Tensor)
                .with_context(|| format!("reading onnxruntime's output {}", p.display()))
        })
        .collect::<Result<_>>()?;
    Ok(Measured {
        version: reply.version,
        times_ms: reply.times_ms,
        outputs,
    })
}
