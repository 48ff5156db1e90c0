//! # egret-backends
//!
//! Code generation from an optimized graph.
//!
//! * [`onnx_export`]: egret IR → ONNX `ModelProto` (`egret export --format onnx`),
//!   built on the ONNX frontend's prost types (`egret-frontends` owns the
//!   vendored schema, so the writer and the reader cannot drift apart);
//!   `thiserror` for its typed errors. Quantized egret ops are lowered to
//!   standard QDQ ops and onnxruntime's `com.microsoft::MatMulNBits`
//!   (`onnx_export::quant`); `bytemuck` (already the IR's tensor-storage
//!   dependency) for building the lowered weight tensors from typed vectors.
//! * [`gguf_export`]: egret IR → GGUF v3 (`egret export --format gguf`), with the
//!   metadata and tensor list of the GGUF file the model came from, read through
//!   the GGUF frontend's `GgufFile` (one layout definition for reader and writer).
//!
//! * [`program`]: the shared lowering. An optimized graph, specialised to
//!   concrete input shapes by tracing one interpreter run, becomes a
//!   `Program`: fused elementwise loops, products with constant weights and
//!   kernel calls over one arena whose offsets come from liveness analysis.
//! * [`jit`]: the Cranelift emitter for that Program (`--backend jit`).
//!   `cranelift-codegen`/`-frontend`/`-jit`/`-module`/`-native` (0.135, the
//!   newest that builds on rustc 1.95) generate the loops as SIMD code for the
//!   host ISA; `rayon` splits loops and GEMM panels across cores.
//!
//! Still to come: `c`, the standalone C99 emitter reading the same Program
//! (const weights, one static arena, no malloc), cross-compiled for aarch64,
//! armv7, riscv64 and Cortex-M.
//!
//! It sits at the top of the library ladder: ir ← frontends/runtime ← passes ←
//! backends ← egret.

pub mod c;
pub mod gguf_export;
pub mod jit;
pub mod onnx_export;
pub mod program;
