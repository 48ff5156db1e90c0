//! # egret
//!
//! The facade: the stable public API of egret, re-exported from its crates.
//! Library users depend on this crate only; the internal crates may change.
//!
//! * [`ir`]: the graph IR (types, tensors, graphs, inference, text form).
//! * [`frontends`]: importers (ONNX today).
//! * [`runtime`]: the reference interpreter.
//! * [`passes`]: the pass manager and equality-saturation optimizer.

pub use egret_frontends as frontends;
pub use egret_ir as ir;
pub use egret_passes as passes;
pub use egret_runtime as runtime;
