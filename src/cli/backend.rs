//! `--backend`: which executor runs a model.

use anyhow::{Context, Result};
use egret_ir::Model;
use egret_runtime::Executor;

/// The ways egret can run a model in-process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The reference interpreter: every op, node by node.
    #[default]
    Interp,
    /// The Cranelift JIT: compiled per input shape, fused elementwise loops,
    /// egret's kernels for the rest.
    Jit,
}

/// Prepare `model` for running on `backend`.
pub fn executor(model: &Model, backend: Backend) -> Result<Box<dyn Executor + '_>> {
    match backend {
        Backend::Interp => Ok(Box::new(
            egret_runtime::Interpreter::for_model(model)
                .context("preparing the model for the interpreter")?,
        )),
        Backend::Jit => Ok(Box::new(
            egret_backends::jit::Jit::for_model(model)
                .context("preparing the model for the JIT")?,
        )),
    }
}

/// Run `decoder`'s forward passes on `backend`.
pub fn attach_to_decoder(decoder: &mut egret_runtime::generate::Decoder, backend: Backend) {
    match backend {
        Backend::Interp => {}
        Backend::Jit => decoder.use_executor(Box::new(egret_backends::jit::Jit::owning(
            decoder.model().graph.clone(),
        ))),
    }
}

/// Run `embedder`'s batches (of `model`, the model it was built on) on `backend`.
pub fn attach_to_embedder<'m>(
    embedder: &mut egret_runtime::eval::Embedder<'m>,
    model: &'m Model,
    backend: Backend,
) -> Result<()> {
    if backend != Backend::Interp {
        embedder.use_executor(executor(model, backend)?);
    }
    Ok(())
}
