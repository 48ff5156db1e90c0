//! The ONNX frontend: `.onnx` files (and ONNX test-data `.pb` files) → egret.
//!
//! # API
//! * [`load`] / [`load_bytes`]: a model file (or its bytes) → [`Model`].
//! * [`read_value_pb`]: a test-data `.pb` file → [`Value`] (a `TensorProto`,
//!   `SequenceProto` or `OptionalProto`, chosen by the expected [`ValueType`]).
//! * [`tensor_from_proto`]: one `TensorProto` → [`Tensor`]; [`tensor_to_proto`]
//!   the inverse (inline `raw_data`, sub-byte types packed).
//! * [`OnnxError`]: every failure, typed, naming the file, node, op or tensor it
//!   is about. A model with ops egret does not support fails with
//!   [`OnnxError::Unsupported`] listing *all* of them at once.
//!
//! # What import does
//! * Graph inputs become `Input` nodes, except inputs shadowed by an initializer
//!   (old IR versions), which are constants like every initializer and every
//!   `Constant` node (all `value*` forms, `sparse_value` densified).
//! * `ai.onnx` is renamed to the standard domain `""`; other domains are kept.
//! * Nodes are sorted topologically (files need not be); cycles, undefined input
//!   names and values defined twice are errors. An empty input name is an absent
//!   optional input; trailing empty outputs are dropped.
//! * Older opset forms are rewritten into the latest opset's ([`normalize`]), so
//!   inference rules and kernels implement one semantics per op.
//! * Output types come from [`egret_ir::infer`]; where the model declares a type
//!   (graph outputs, `value_info`), the more specific of the two is kept.
//!
//! # Subgraphs and captures
//! Subgraph attributes (`If`'s branches, `Loop`/`Scan` bodies, any `GRAPH(S)`
//! attribute) are converted recursively, at most [`MAX_SUBGRAPH_DEPTH`] deep.
//! Outer-scope reads become explicit captures (see `egret_ir::graph`):
//! * Outer *constants* are copied into the body as `Const` nodes (tensors share
//!   storage, so this is free) and are not captured.
//! * Every other outer value a node's bodies read is captured: the node gets the
//!   captured values as extra trailing inputs, after its own ONNX inputs, and
//!   each of its bodies gets matching extra trailing `Input` nodes, after its
//!   formal inputs. All bodies of one node (both `If` branches) take the same
//!   capture list: the sorted union of what any of them reads.
//! * The node carries the int attribute [`NUM_CAPTURES`] (`egret.num_captures`) =
//!   `n`: its LAST `n` inputs and each body's LAST `n` inputs are the captures
//!   (absent attribute = 0).
//! * Body inputs without a declared type get one from the node: `Loop` bodies get
//!   `i64[]`, `bool[]` and the loop-carried inputs' dtypes; `Scan` bodies get the
//!   node inputs' dtypes (shapes unknown).
//!
//! # Safety against hostile files
//! Nothing here panics on file data. Tensor sizes are computed with checked
//! arithmetic and compared with the bytes actually present before anything is
//! allocated; external data must stay inside the model's folder (no absolute
//! paths, no `..`, no symlink escapes) and inside the file's bounds.

mod error;
mod import;
pub mod normalize;
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto;
mod tensor;
pub mod types;

pub use error::OnnxError;
/// Re-exported so callers can encode and decode the [`proto`] types (e.g. to
/// build test models) without depending on `prost` themselves.
pub use prost::Message;
pub use tensor::{tensor_from_proto, tensor_to_proto};

use egret_ir::{Model, Tensor, Value, ValueType};
use proto::{
    optional_proto, sequence_proto, ModelProto, OptionalProto, SequenceProto, TensorProto,
};
use std::path::Path;

/// Deepest subgraph nesting accepted (the main graph is depth 0).
pub const MAX_SUBGRAPH_DEPTH: usize = 16;

/// Int attribute on a node with subgraphs: how many of its trailing inputs (and of
/// each body's trailing inputs) are captured outer values.
pub const NUM_CAPTURES: &str = "egret.num_captures";

fn read(path: &Path) -> Result<Vec<u8>, OnnxError> {
    std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<M: Message + Default>(bytes: &[u8], what: impl Fn() -> String) -> Result<M, OnnxError> {
    M::decode(bytes).map_err(|source| OnnxError::Decode {
        what: what(),
        source,
    })
}

/// The folder a file's relative references resolve against.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Load an `.onnx` model file. External data is resolved relative to its folder.
/// Every error names the file ([`OnnxError::into_root`] strips that wrapper).
pub fn load(path: &Path) -> Result<Model, OnnxError> {
    let bytes = read(path)?;
    let mp: ModelProto = parse(&bytes, || path.display().to_string())?;
    let mut model =
        import::import_model(&mp, Some(folder_of(path))).map_err(|e| e.in_file(path))?;
    model
        .metadata
        .insert("source".into(), path.display().to_string());
    Ok(model)
}

/// Load a model from its serialized bytes. `model_dir` is where external data
/// lives (`None`: a model with external data is an error).
pub fn load_bytes(bytes: &[u8], model_dir: Option<&Path>) -> Result<Model, OnnxError> {
    let mp: ModelProto = parse(bytes, || "model bytes".to_string())?;
    import::import_model(&mp, model_dir)
}

/// Read an ONNX test-data `.pb` file holding a value of type `ty`: a
/// `TensorProto` for tensors, a `SequenceProto` for sequences, an
/// `OptionalProto` for optionals.
pub fn read_value_pb(path: &Path, ty: &ValueType) -> Result<Value, OnnxError> {
    let bytes = read(path)?;
    let what = || path.display().to_string();
    let dir = Some(folder_of(path));
    match ty {
        ValueType::Tensor(_) => Ok(Value::Tensor(tensor_from_proto(
            &parse::<TensorProto>(&bytes, what)?,
            dir,
        )?)),
        ValueType::Sequence(_) => sequence_value(&parse::<SequenceProto>(&bytes, what)?, dir),
        ValueType::Optional(_) => optional_value(&parse::<OptionalProto>(&bytes, what)?, dir),
    }
}

fn sequence_value(sp: &SequenceProto, dir: Option<&Path>) -> Result<Value, OnnxError> {
    use sequence_proto::DataType as D;
    match D::try_from(sp.elem_type) {
        Ok(D::Tensor) | Ok(D::Undefined) => Ok(Value::Sequence(
            sp.tensor_values
                .iter()
                .map(|t| tensor_from_proto(t, dir))
                .collect::<Result<Vec<Tensor>, _>>()?,
        )),
        _ => Err(OnnxError::Invalid(format!(
            "sequence `{}`: only sequences of tensors are supported (elem_type {})",
            sp.name, sp.elem_type
        ))),
    }
}

fn optional_value(op: &OptionalProto, dir: Option<&Path>) -> Result<Value, OnnxError> {
    use optional_proto::DataType as D;
    let inner = match D::try_from(op.elem_type) {
        Ok(D::Undefined) => None,
        Ok(D::Tensor) => op
            .tensor_value
            .as_ref()
            .map(|t| tensor_from_proto(t, dir).map(Value::Tensor))
            .transpose()?,
        Ok(D::Sequence) => op
            .sequence_value
            .as_ref()
            .map(|s| sequence_value(s, dir))
            .transpose()?,
        _ => {
            return Err(OnnxError::Invalid(format!(
                "optional `{}`: elem_type {} is not supported",
                op.name, op.elem_type
            )))
        }
    };
    Ok(Value::Optional(inner.map(Box::new)))
}
