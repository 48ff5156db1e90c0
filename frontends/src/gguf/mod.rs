//! GGUF: llama.cpp's single-file model format.
//!
//! * [`reader`]: header, metadata and tensor table of GGUF v2/v3, memory-mapped;
//!   [`GgufFile::tensor`] gives zero-copy [`egret_ir::Tensor`]s, with block-quantized
//!   weights kept in their [`egret_ir::BlockFormat`] (see the reader's docs for the
//!   reversed dimension order).
//! * [`metadata`]: typed key-value pairs with typed getters.
//! * [`ggml_type`]: the GGML tensor types and their block geometry.
//! * [`tokenizer`]: the vocabulary in the metadata converted to an HF
//!   `tokenizer.json`, so one tokenizer implementation serves every format.
//!
//! The architecture graph builders (llama, ...) live in the frontend's `arch`
//! module and read weights through [`GgufFile`].

pub mod ggml_type;
pub mod metadata;
pub mod reader;
pub mod tokenizer;

pub use ggml_type::GgmlType;
pub use metadata::{MetaArray, MetaType, MetaValue, Metadata};
pub use reader::{GgufFile, TensorInfo};

/// Everything that can go wrong reading a GGUF file. Each variant names the file
/// and, where it applies, the metadata key or tensor.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The header or layout is malformed.
    #[error("{file}: malformed GGUF: {msg}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong, with the byte offset.
        msg: String,
    },
    /// A metadata key is malformed, missing or has an unusable type.
    #[error("{file}: metadata key `{key}`: {msg}")]
    Key {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor info is malformed or the tensor cannot be used.
    #[error("{file}: tensor `{tensor}`: {msg}")]
    Tensor {
        /// The file.
        file: String,
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        msg: String,
    },
}
