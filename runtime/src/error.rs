//! Errors raised while running a graph.

use thiserror::Error;

/// Everything that can go wrong in `egret-runtime`.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// Ops with no kernel, each as `(domain, op, opset)`.
    #[error("unsupported ops: {}", .0.iter().map(|(d, o, v)| format!("{}{o} (opset {v})", if d.is_empty() { String::new() } else { format!("{d}::") })).collect::<Vec<_>>().join(", "))]
    Unsupported(Vec<(String, String, i64)>),
    /// A kernel failed on a node.
    #[error("node `{node}` ({op}): {msg}")]
    Node {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// What went wrong.
        msg: String,
    },
    /// A graph input was missing or malformed.
    #[error("input `{name}`: {msg}")]
    Input {
        /// Input name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// A kernel-level error before node context is attached.
    #[error("{0}")]
    Msg(String),
    /// An IR-level error (bad tensor shape, dtype...).
    #[error(transparent)]
    Ir(#[from] egret_ir::IrError),
}

impl RuntimeError {
    /// A plain message error; the interpreter adds node context.
    pub fn msg(m: impl Into<String>) -> RuntimeError {
        RuntimeError::Msg(m.into())
    }
}

/// Result alias for `egret-runtime`.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Return early with a [`RuntimeError::Msg`] built from a format string.
#[macro_export]
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::RuntimeError::Msg(format!($($t)*))) };
}
