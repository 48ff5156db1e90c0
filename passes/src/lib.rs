//! # egret-passes

pub mod egraph;
pub mod extract;
pub mod rules;
