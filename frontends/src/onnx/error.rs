//! The error type of the ONNX frontend.

use egret_ir::IrError;
use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong while importing an ONNX model or test-data file.
///
/// Every variant names what it is about (file, tensor, node and op type), so a
/// message is actionable without a debugger.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a valid protobuf message of the expected kind.
    #[error("{what} is not a valid ONNX protobuf: {source}")]
    Decode {
        /// What was being decoded (a file path, or `model bytes`).
        what: String,
        /// The protobuf decoder's error.
        source: prost::DecodeError,
    },
    /// The model uses ops egret does not support: every `(domain, op, opset)` of
    /// the model (subgraphs included) that has no inference rule, sorted.
    #[error("unsupported ops: {}", fmt_ops(.0))]
    Unsupported(Vec<(String, String, i64)>),
    /// A tensor's data is malformed (length, dims, dtype, encoding).
    #[error("tensor `{tensor}`: {msg}")]
    Tensor {
        /// Tensor name (may be empty).
        tensor: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor's external data reference is invalid or unsafe.
    #[error("tensor `{tensor}`: external data: {msg}")]
    ExternalData {
        /// Tensor name.
        tensor: String,
        /// What is wrong (path escapes the model folder, range beyond the file end, ...).
        msg: String,
    },
    /// A node reads a value that no node, input, initializer or outer scope defines.
    #[error("node `{node}` ({op}): input `{name}` is not defined")]
    UndefinedInput {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// The undefined value name.
        name: String,
    },
    /// Two definitions (inputs, initializers or node outputs) share a value name.
    #[error("value `{name}` is defined more than once (second time by `{by}`)")]
    DuplicateName {
        /// The value name.
        name: String,
        /// What defines it the second time.
        by: String,
    },
    /// The nodes of a graph form a cycle.
    #[error("graph `{graph}` has a cycle through node `{node}` ({op})")]
    Cycle {
        /// Graph name.
        graph: String,
        /// A node on the cycle.
        node: String,
        /// Its op type.
        op: String,
    },
    /// Subgraphs are nested deeper than [`super::MAX_SUBGRAPH_DEPTH`].
    #[error("subgraphs nested deeper than {limit} levels (node `{node}`)")]
    TooDeep {
        /// The depth limit.
        limit: usize,
        /// The node whose subgraph exceeds it.
        node: String,
    },
    /// A node is malformed (bad or missing attribute, wrong input count, failed
    /// normalisation or inference).
    #[error("node `{node}` ({op}): {msg}")]
    Node {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// What is wrong.
        msg: String,
    },
    /// The model as a whole is malformed (no graph, bad type, bad opset import, ...).
    #[error("invalid model: {0}")]
    Invalid(String),
    /// An error from the IR while building the graph.
    #[error("{context}: {source}")]
    Ir {
        /// What was being built.
        context: String,
        /// The IR error.
        source: IrError,
    },
    /// An import error of a model file, with the file named ([`super::load`]
    /// wraps every error that does not already name it).
    #[error("{}: {source}", path.display())]
    InFile {
        /// The model file.
        path: PathBuf,
        /// What went wrong in it.
        source: Box<OnnxError>,
    },
}

fn fmt_ops(ops: &[(String, String, i64)]) -> String {
    ops.iter()
        .map(|(d, o, v)| {
            if d.is_empty() {
                format!("{o}-{v}")
            } else {
                format!("{d}::{o}-{v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl OnnxError {
    /// The error itself, without the [`OnnxError::InFile`] wrapper (for callers
    /// that match on the kind of failure).
    pub fn into_root(self) -> OnnxError {
        match self {
            OnnxError::InFile { source, .. } => source.into_root(),
            other => other,
        }
    }

    /// Wrap the error in [`OnnxError::InFile`] unless it names its file already.
    pub(crate) fn in_file(self, path: &std::path::Path) -> OnnxError {
        match self {
            e @ (OnnxError::Io { .. } | OnnxError::Decode { .. } | OnnxError::InFile { .. }) => e,
            e => OnnxError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }

    /// A [`OnnxError::Tensor`] error.
    pub(crate) fn tensor(name: &str, msg: impl Into<String>) -> OnnxError {
        OnnxError::Tensor {
            tensor: name.to_string(),
            msg: msg.into(),
        }
    }

    /// A [`OnnxError::Node`] error.
    pub(crate) fn node(node: &str, op: &str, msg: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: node.to_string(),
            op: op.to_string(),
            msg: msg.into(),
        }
    }
}
