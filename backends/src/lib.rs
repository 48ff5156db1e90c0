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
//! Still to come: this crate will own the lowering of an optimized graph into a
//! `Program` (a scheduled list of kernel calls and fused loops over one planned
//! memory arena, buffer offsets from liveness analysis) and the two emitters
//! that consume it:
//!
//! * `jit`: Cranelift builds the fused loops (SIMD, FMA) and calls runtime
//!   kernels for GEMM, quantized GEMV/GEMM and attention;
//! * `c`: standalone C99 with const weights, one static arena and no malloc,
//!   cross-compiled for aarch64, armv7, riscv64 and Cortex-M.
//!
//! It sits at the top of the library ladder: ir ← frontends/runtime ← passes ←
//! backends ← egret.

pub mod gguf_export;
pub mod jit;
pub mod onnx_export;
pub mod program;
