//! # egret-frontends
//!
//! One module per model format, each turning a file into an [`egret_ir::Model`].
