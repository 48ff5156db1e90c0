//! The one interface every way of running a graph shares.
//!
//! The reference [`crate::Interpreter`] implements it, and so does the JIT in
//! `egret-backends`. Tools that only need "inputs in, outputs out" (the CLI's
//! `run` and `bench`, differential tests) take a `&dyn Executor` and so work
//! with either backend.

use crate::error::Result;
use egret_ir::Value;

/// Something that runs one graph: inputs in graph-input order, outputs in
/// graph-output order.
pub trait Executor: Sync {
    /// Run once.
    fn execute(&self, inputs: Vec<Value>) -> Result<Vec<Value>>;
}

impl Executor for crate::Interpreter<'_> {
    fn execute(&self, inputs: Vec<Value>) -> Result<Vec<Value>> {
        self.run(inputs)
    }
}

/// A shared executor runs like the one it shares (so a caller can hand a
/// decoder an executor and still read its statistics).
impl<E: Executor + Send + ?Sized> Executor for std::sync::Arc<E> {
    fn execute(&self, inputs: Vec<Value>) -> Result<Vec<Value>> {
        (**self).execute(inputs)
    }
}
