//! # egret-passes

pub mod check;
pub mod egraph;
pub mod extract;
pub mod pass;
pub mod rules;
pub mod saturate;
pub mod soundness;
