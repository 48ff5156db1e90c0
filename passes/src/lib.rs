//! # egret-passes
//!
//! (Design notes are being written; see the module docs.)

pub mod egraph;
