//! Running ONNX files in onnxruntime from tests: the venv that
//! `scripts/setup-python.sh` makes, driven through `scripts/ort-check.py` (one
//! python process for a whole batch of models), and output comparisons.

#![allow(dead_code)] // each test binary uses its own subset

use crate::common::{available, cache};
use egret_frontends::npy;
use egret_ir::Value;
use egret_passes::check::max_error;
use std::path::{Path, PathBuf};

/// Bitwise equality of two output lists (tensors only).
pub fn identical(a: &[Value], b: &[Value]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} outputs vs {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let (x, y) = (x.as_tensor().unwrap(), y.as_tensor().unwrap());
        let same = x.dtype() == y.dtype()
            && x.shape() == y.shape()
            && x.bytes() == y.bytes()
            && x.as_strings().ok() == y.as_strings().ok();
        if !same {
            return Err(format!("output {i} differs"));
        }
    }
    Ok(())
}

/// One model for onnxruntime to run: the file, its inputs, where outputs go.
#[derive(serde::Serialize)]
pub struct OrtCase {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// One `.npy` per graph input, in order.
    pub inputs: Vec<PathBuf>,
    /// Where `output_<i>.npy` (or `error.txt`) is written.
    pub out_dir: PathBuf,
}

impl OrtCase {
    /// Write `bytes` and `inputs` under `dir`; `None` if numpy cannot hold an input.
    pub fn new(dir: &Path, bytes: &[u8], inputs: &[Value]) -> Option<OrtCase> {
        std::fs::create_dir_all(dir).unwrap();
        let model = dir.join("model.onnx");
        std::fs::write(&model, bytes).unwrap();
        let mut files = vec![];
        for (i, v) in inputs.iter().enumerate() {
            let p = dir.join(format!("input_{i}.npy"));
            npy::write(&p, v.as_tensor().ok()?).ok()?;
            files.push(p);
        }
        Some(OrtCase {
            model,
            inputs: files,
            out_dir: dir.join("out"),
        })
    }

    /// onnxruntime's outputs, or the reason it failed.
    pub fn outputs(&self, n: usize) -> Result<Vec<Value>, String> {
        if let Ok(e) = std::fs::read_to_string(self.out_dir.join("error.txt")) {
            return Err(format!("onnxruntime: {}", e.trim()));
        }
        (0..n)
            .map(|i| {
                npy::read(&self.out_dir.join(format!("output_{i}.npy")))
                    .map(Value::Tensor)
                    .map_err(|e| format!("output {i}: {e}"))
            })
            .collect()
    }
}

/// The venv's python, when `scripts/setup-python.sh` made it.
pub fn python() -> Option<PathBuf> {
    let py = cache().join("venv/bin/python");
    available(&py, "scripts/setup-python.sh").then_some(py)
}

/// Run every case through `scripts/ort-check.py` in one python process.
pub fn run_ort(py: &Path, dir: &Path, cases: &[&OrtCase]) {
    let manifest = dir.join("ort-cases.json");
    std::fs::write(&manifest, serde_json::to_string(cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort-check.py");
    let st = std::process::Command::new(py)
        .arg(script)
        .arg(&manifest)
        .status()
        .expect("python runs");
    assert!(st.success(), "ort-check.py failed");
}

/// Within 1e-5 relative, or exactly equal for what has no numeric error.
pub fn close(got: &[Value], want: &[Value]) -> Result<(), String> {
    match max_error(got, want) {
        Ok(e) if e.rel <= 1e-5 => Ok(()),
        Ok(e) => Err(format!("max error {e:?}")),
        Err(_) => identical(got, want),
    }
}
