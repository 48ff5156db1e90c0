//! # egret-frontends
//!
//! One module per model format, each turning a file into an [`egret_ir::Model`].
//!
//! * [`onnx`]: ONNX models (`.onnx`, opsets 7 to 22+, external data, subgraphs) and
//!   ONNX test-data `.pb` files. Owns the vendored ONNX 1.22 schema
//!   (`proto/onnx-ml.proto3`, `proto/onnx-data.proto3`) and the prost types
//!   generated from it (`src/onnx/proto.rs`), the lowering of older opset forms to
//!   the latest ones, and the hostile-input guarantees (typed errors, no panics,
//!   no allocation driven by declared sizes).
//!
//! * [`container`]: egret's own `.egret` container (text IR + safetensors
//!   weights), written by `egret optimize`.
//!
//! ## Why prost + protox and not `onnx-protobuf`
//! The ONNX types are generated once with `prost-build` and `protox` (a pure-Rust
//! protobuf compiler, so no `protoc`) by `tools/regen-onnx-proto`, and the output
//! is committed: the normal build needs neither tool. The `onnx-protobuf` crate
//! (0.2.3) was rejected: it sits on rust-protobuf, is frozen at ONNX 1.16 (no
//! float4, int2, newer attribute kinds), and its `as_value()` reaches
//! `unreachable!()` on malformed input, which breaks the never-panic rule.

pub mod arch;
pub mod container;
pub mod gguf;
pub mod npy;
pub mod onnx;
pub mod safetensors;
mod text_file;

use egret_ir::Model;
use std::path::Path;

/// A loaded model plus what its frontend found beside the graph.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The graph, opsets and metadata.
    pub model: Model,
    /// The model's tokenizer as HF `tokenizer.json` text, when the source carries
    /// one (a `tokenizer.json` beside safetensors weights, or the vocabulary in
    /// GGUF metadata converted to that form). Kept out of [`Model`] so the IR
    /// text form stays small; the runtime's tokenizer reads this.
    pub tokenizer_json: Option<String>,
}

/// Every way [`load`] can fail: the error of the frontend the file went to.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not name a file egret can read.
    #[error("{path}: {msg}")]
    Path {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The ONNX frontend failed. (The frontend errors are boxed so a
    /// `Result<Loaded, LoadError>` stays small on the happy path.)
    #[error(transparent)]
    Onnx(Box<onnx::OnnxError>),
    /// The safetensors frontend (or its architecture builder) failed.
    #[error(transparent)]
    Safetensors(Box<safetensors::SafetensorsError>),
    /// The GGUF frontend (or its architecture builder) failed.
    #[error(transparent)]
    Gguf(Box<gguf::GgufError>),
    /// The `.egret` container reader failed.
    #[error(transparent)]
    Container(Box<container::ContainerError>),
}

impl From<onnx::OnnxError> for LoadError {
    fn from(e: onnx::OnnxError) -> Self {
        LoadError::Onnx(Box::new(e))
    }
}

impl From<safetensors::SafetensorsError> for LoadError {
    fn from(e: safetensors::SafetensorsError) -> Self {
        LoadError::Safetensors(Box::new(e))
    }
}

impl From<gguf::GgufError> for LoadError {
    fn from(e: gguf::GgufError) -> Self {
        LoadError::Gguf(Box::new(e))
    }
}

impl From<container::ContainerError> for LoadError {
    fn from(e: container::ContainerError) -> Self {
        LoadError::Container(Box::new(e))
    }
}

/// Load a model, choosing the frontend by file extension (`.onnx`,
/// `.safetensors`, `.gguf`, an `.egret` container directory; any other folder
/// is a safetensors model folder). This is the
/// one place a new format gets wired in; the CLI and library users both call it.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bad = |msg: String| LoadError::Path {
        path: path.display().to_string(),
        msg,
    };
    if !path.exists() {
        return Err(bad("no such file or directory".into()));
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "egret" {
        return Ok(container::load(path)?);
    }
    if path.is_dir() {
        return Ok(safetensors::load(path)?);
    }
    match ext.as_str() {
        "safetensors" => Ok(safetensors::load(path)?),
        "gguf" => Ok(gguf::load(path)?),
        "onnx" => Ok(Loaded {
            model: onnx::load(path)?,
            tokenizer_json: None,
        }),
        _ => Err(bad(format!(
            "unknown model format `.{ext}` (expected .onnx, .safetensors, .gguf, .egret or a model folder)"
        ))),
    }
}
