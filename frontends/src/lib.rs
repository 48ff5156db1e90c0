//! # egret-frontends
//!
//! One module per model format, each turning a file into an [`egret_ir::Model`].
//!
//! * [`onnx`]: ONNX models (`.onnx`, opsets 7 to 22+, external data, subgraphs) and
//!   ONNX test-data `.pb` files. Owns the vendored ONNX 1.22 schema
//!   (`proto/onnx-ml.proto3`, `proto/onnx-data.proto3`) and the prost types
//!   generated from it (`src/onnx/proto.rs`), the lowering of older opset forms to
//!   the latest ones, and the hostile-input guarantees (typed errors, no panics,
//!   no allocation driven by declared sizes).
//!
//! ## Why prost + protox and not `onnx-protobuf`
//! The ONNX types are generated once with `prost-build` and `protox` (a pure-Rust
//! protobuf compiler, so no `protoc`) by `tools/regen-onnx-proto`, and the output
//! is committed: the normal build needs neither tool. The `onnx-protobuf` crate
//! (0.2.3) was rejected: it sits on rust-protobuf, is frozen at ONNX 1.16 (no
//! float4, int2, newer attribute kinds), and its `as_value()` reaches
//! `unreachable!()` on malformed input, which breaks the never-panic rule.

pub mod npy;
pub mod onnx;
