//! # egret-runtime
//!
//! What executes: the reference [`Interpreter`], the kernels behind it, and (as
//! later issues land) KV-cache policies, generation and evaluation.
//!
//! The interpreter is the oracle every pass and backend is checked against, so
//! each op kernel in [`ops`] follows the ONNX specification literally. Heavy
//! linear algebra goes through [`kernels::gemm`] (the `gemm` crate).
//!
//! Depends only on `egret-ir`. Start reading at [`interpreter`], then
//! [`registry`] for how kernels plug in.

pub mod error;
pub mod eval;
pub mod executor;
pub mod fold;
pub mod generate;
pub mod interpreter;
pub mod kernels;
pub mod kv_policy;
pub mod ops;
pub mod perplexity;
pub mod registry;
pub mod sample;
pub mod tokenizer;

pub use egret_ir::Value;
pub use error::{Result, RuntimeError};
pub use executor::Executor;
pub use interpreter::{unsupported_ops, Interpreter};
pub use registry::{node_error, registry, Kernel, KernelCtx, Registry, SubgraphRunner};
