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
//! [`load`] turns a file into a [`crate::Loaded`]: the graph of its
//! `general.architecture`, built by the frontend's `arch` module from weights
//! read through [`GgufFile`], plus the tokenizer. The GGUF metadata is copied
//! into the model's metadata (arrays summarised) so `egret inspect` shows it.

pub mod ggml_type;
pub mod metadata;
pub mod reader;
pub mod tokenizer;

pub use ggml_type::GgmlType;
pub use metadata::{MetaArray, MetaType, MetaValue, Metadata};
pub use reader::{GgufFile, TensorInfo};

use crate::arch::ArchError;
use crate::Loaded;
use std::path::Path;

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
    /// The architecture's graph could not be built.
    #[error("{file}: {source}")]
    Build {
        /// The file.
        file: String,
        /// The builder's error.
        source: ArchError,
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

/// Load a GGUF model: the graph of its architecture (`llama`), its tokenizer
/// as `tokenizer.json` text, and its metadata.
pub fn load(path: &Path) -> Result<Loaded, GgufError> {
    let file = GgufFile::open(path)?;
    let md = file.metadata();
    let build_err = |source| GgufError::Build {
        file: file.path().to_string(),
        source,
    };
    let mut model = match md.architecture()? {
        "llama" => crate::arch::llama::build_gguf(&file).map_err(build_err)?,
        other => {
            return Err(build_err(ArchError::Unsupported(format!(
                "GGUF architecture `{other}` (egret builds: llama)"
            ))))
        }
    };
    for (k, v) in md.iter() {
        model
            .metadata
            .entry(k.to_string())
            .or_insert_with(|| match v.as_str() {
                Some(s) if s.len() <= 80 && !s.contains('\n') => s.to_string(),
                _ => v.summary(),
            });
    }
    model
        .metadata
        .insert("source".into(), file.path().to_string());
    model
        .metadata
        .insert("format".into(), format!("gguf v{}", file.version()));
    Ok(Loaded {
        model,
        tokenizer_json: file.tokenizer_json()?,
    })
}
