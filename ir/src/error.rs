//! Errors raised by the IR: construction, inference, verification and parsing.

use thiserror::Error;

/// Everything that can go wrong inside `egret-ir`.
#[derive(Debug, Error)]
pub enum IrError {
    /// Element count or byte length does not match a shape.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A tensor was read as the wrong element type.
    #[error("dtype mismatch: {0}")]
    DTypeMismatch(String),
    /// A size overflowed or exceeded a safety limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The graph has a cycle through the named node.
    #[error("graph has a cycle through node `{0}`")]
    Cycle(String),
    /// An attribute is missing or has the wrong kind.
    #[error("attribute `{name}`: {msg}")]
    Attr {
        /// Attribute name.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// Shape/type inference failed for a node.
    #[error("node `{node}` ({op}): {msg}")]
    Infer {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// What failed.
        msg: String,
    },
    /// The graph is structurally invalid.
    #[error("invalid graph: {0}")]
    Invalid(String),
    /// The text form could not be parsed.
    #[error("parse error at line {line}: {msg}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

/// Result alias for `egret-ir`.
pub type Result<T, E = IrError> = std::result::Result<T, E>;
