//! # egret-ir
//!
//! The vocabulary every other egret crate speaks, and nothing that runs models.
//!
//! * [`DType`] and [`BlockFormat`]: element types, including block-quantized storage;
//!   [`blocks`]: the block layouts and their bit-exact dequantization.
//! * [`Shape`], [`Dim`], [`TensorType`], [`ValueType`]: static types with symbolic dims.
//! * [`Tensor`]: shared (`Arc`), possibly memory-mapped data.
//! * [`Graph`], [`Node`], [`Op`], [`OpCall`]: a typed dataflow graph on `petgraph`.
//! * [`infer`]: shape and dtype inference for every supported op.
//! * [`verify`]: the structural and type verifier that runs between passes.
//! * [`text`]: a deterministic text form that prints and parses back.
//!
//! This crate depends on no other egret crate. It must not grow a dependency on
//! anything that executes models; the interpreter lives in `egret-runtime`.
//!
//! Start reading at [`graph`].

pub mod attr;
pub mod blocks;
mod build;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod infer;
pub mod shape;
pub mod sparse;
pub mod tensor;
pub mod text;
pub mod value;
pub mod verify;

pub use attr::{Attr, Attrs};
pub use dtype::{BlockFormat, DType};
pub use error::{IrError, Result};
pub use graph::{Graph, Model, Node, NodeId, Op, OpCall, OutletId, ValueInfo, Wire};
pub use shape::{Dim, Shape, TensorType, ValueType};
pub use tensor::{Element, Tensor};
pub use value::Value;
