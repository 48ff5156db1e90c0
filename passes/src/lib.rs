//! # egret-passes
//!
//! Not yet filled. This crate will own:
//!
//! * the pass manager: named passes, pipelines, verification between passes and
//!   differential checking against the interpreter;
//! * the e-graph layer (`egg`): the IR ⇄ e-graph language, an analysis carrying
//!   shape, dtype, constness, bytes and error estimates, staged rule sets, cost
//!   models and extractors, including accuracy-budgeted extraction;
//! * calibration statistics gathered by running the interpreter;
//! * one module per compression family: `quantize`, `prune`, `kronecker`,
//!   `lowrank`, `act_sparsity`, `kv_segment`.
//!
//! It depends on `egret-ir`, `egret-frontends` and `egret-runtime` (the
//! interpreter is its oracle) and on nothing above it.
