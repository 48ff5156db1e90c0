//! The standalone C99 backend: a lowered [`Program`] becomes a
//! self-contained C program with no runtime library and no heap.
//!
//! [`emit`] writes:
//! * `model.c`: one static arena (its size planned by the lowering), the
//!   weights as `static const` arrays (or read from `weights.bin`, see
//!   [`Weights`]), the kernels the program uses (from `kernels/*.c`), and the
//!   entry function `egret_model`;
//! * `model.h`: the entry function and the I/O names, dtypes and shapes;
//! * `main.c`: a harness reading `.npy` inputs and writing `.npy` outputs;
//! * `Makefile`: `model.o` and `main.o` linked into `model`.
//!
//! Steps become C as follows: a fused loop ([`crate::program::FusedLoop`])
//! becomes nested loops with its strides baked in; a `Linear` step calls the
//! blocked GEMM of `kernels/gemm.c` on a weight stored `k × n`; a `Call` is
//! lowered by [`call`] into a strided loop or a kernel call with the node's
//! attributes and traced shapes as constants. An op without a C lowering is
//! an [`EmitError::Unsupported`] naming it.
//!
//! Two graph rewrites run before lowering: [`read_blocks_in_place`] (block
//! weights stay blocks) and [`specialize_ifs`] (each `If` becomes the branch
//! the example inputs take, its condition a run-time guard).

mod blocks;
mod cache;
mod call;
mod ctype;
mod expr;
mod files;
mod ifs;
mod kernels;
mod strided;

use crate::program::{BufferId, Program, Step, Storage};
use egret_ir::{DType, Graph, Tensor};
use std::collections::BTreeSet;

pub use blocks::read_blocks_in_place;
pub use cache::{fixed_cache, CACHE_MASK, CACHE_MASK_DIMS};
pub use files::{Files, Target, TARGETS};
pub use ifs::{specialize_ifs, IfError};
pub use kernels::Kernel;

/// Why a program could not be emitted as C.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// An op (or a form of one) the C backend does not implement.
    #[error("unsupported by the C backend: {op}: {reason}")]
    Unsupported {
        /// The op type (or the step kind).
        op: String,
        /// What exactly is missing.
        reason: String,
    },
}

impl EmitError {
    fn unsupported(op: &str, reason: impl Into<String>) -> EmitError {
        EmitError::Unsupported {
            op: op.to_string(),
            reason: reason.into(),
        }
    }
}

/// Where the weights go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weights {
    /// `static const` arrays in `model.c` (one self-contained object file).
    #[default]
    Inline,
    /// One `weights.bin` blob the caller loads and passes to `egret_model`
    /// (for models whose weights should not be compiled in).
    Bin,
}

/// Options of [`emit`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where the weights go.
    pub weights: Weights,
    /// The target the Makefile compiles for.
    pub target: Target,
}

/// The generated sources and what they occupy.
#[derive(Clone, Debug)]
pub struct Emitted {
    /// The files to write into the output folder, with their names.
    pub files: Files,
    /// The arena size in bytes (`EGRET_ARENA_BYTES`).
    pub arena_bytes: usize,
    /// The bytes of constant data the program reads (inline or in `weights.bin`).
    pub weights_bytes: usize,
    /// Bytes of the static scratch buffer the block and W8A8 kernels share
    /// (`EGRET_SCRATCH_BYTES`, 0 when none is used); in bss next to the arena.
    pub scratch_bytes: usize,
    /// The kernels `model.c` includes.
    pub kernels: Vec<Kernel>,
}

/// What the step emitters share: the program, the graph, and the constants
/// and kernels used so far.
pub(crate) struct Ctx<'a> {
    pub(crate) g: &'a Graph,
    pub(crate) p: &'a Program,
    weights: Weights,
    /// Const buffers referenced by the emitted code, and whether as the
    /// transpose of a 2-D weight (`n × k` weights of `Linear` steps are
    /// emitted `k × n`).
    used_consts: BTreeSet<(BufferId, bool)>,
    kernels: BTreeSet<Kernel>,
    /// The largest scratch any step asked for ([`Ctx::scratch`]).
    scratch_bytes: usize,
}

impl<'a> Ctx<'a> {
    /// A C expression for buffer `b`'s first element, as a pointer to its
    /// element type (`const` for constants).
    pub(crate) fn ptr(&mut self, b: BufferId) -> Result<String, EmitError> {
        self.pointer(b, false)
    }

    /// [`Ctx::ptr`] of the transpose of a constant 2-D f32 weight.
    pub(crate) fn ptr_transposed(&mut self, b: BufferId) -> Result<String, EmitError> {
        self.pointer(b, true)
    }

    fn pointer(&mut self, b: BufferId, transposed: bool) -> Result<String, EmitError> {
        let buf = &self.p.buffers[b];
        let t = ctype::storage_ctype(buf.dtype)?;
        match &buf.storage {
            Storage::Arena(off) => Ok(format!("(({t} *)(A + {off}))")),
            Storage::Const(_) => {
                self.used_consts.insert((b, transposed));
                let name = const_name(b, transposed);
                Ok(match self.weights {
                    Weights::Inline => name,
                    Weights::Bin => format!("((const {t} *){name})"),
                })
            }
            #[allow(unreachable_patterns)]
            _ => Err(EmitError::unsupported(
                "storage",
                format!(
                    "buffer `{}` has a storage kind the C backend does not know",
                    buf.name
                ),
            )),
        }
    }

    /// The value of a constant buffer (a shape, axes, pads ... operand).
    pub(crate) fn const_value(&self, b: BufferId) -> Option<&'a Tensor> {
        match &self.p.buffers[b].storage {
            Storage::Const(t) => Some(t),
            _ => None,
        }
    }

    /// The dtype of buffer `b`.
    pub(crate) fn dtype(&self, b: BufferId) -> DType {
        self.p.buffers[b].dtype
    }

    /// The shape of buffer `b`.
    pub(crate) fn shape(&self, b: BufferId) -> &'a [usize] {
        &self.p.buffers[b].shape
    }

    /// A pointer of C type `t` to the static scratch buffer, which holds at
    /// least `bytes` bytes during one step (steps run one after another, so
    /// they all share it).
    pub(crate) fn scratch(&mut self, t: &str, bytes: usize) -> String {
        self.scratch_bytes = self.scratch_bytes.max(bytes);
        format!("(({t} *)egret_scratch.bytes)")
    }

    /// Include `k` (and what it needs) in `model.c`.
    pub(crate) fn use_kernel(&mut self, k: Kernel) {
        self.kernels.insert(k);
    }
}

/// The C name of constant buffer `b` (or of its transpose).
fn const_name(b: BufferId, transposed: bool) -> String {
    if transposed {
        format!("egret_c{b}t")
    } else {
        format!("egret_c{b}")
    }
}

/// Emit `p` (lowered from `g`) as C sources.
pub fn emit(g: &Graph, p: &Program, opts: &Options) -> Result<Emitted, EmitError> {
    let mut cx = Ctx {
        g,
        p,
        weights: opts.weights,
        used_consts: BTreeSet::new(),
        kernels: BTreeSet::new(),
        scratch_bytes: 0,
    };
    let mut body = String::new();
    for (i, &b) in p.inputs.iter().enumerate() {
        if p.buffers[b].bytes > 0 {
            let dst = cx.ptr(b)?;
            body += &format!("    memcpy({dst}, inputs[{i}], {});\n", p.buffers[b].bytes);
        }
    }
    for (i, s) in p.steps.iter().enumerate() {
        let code = match s {
            Step::Loop(l) => strided::fused_loop(&mut cx, l)?,
            Step::Linear(l) => call::linear(&mut cx, l)?,
            Step::Call(c) => call::call(&mut cx, c)?,
            #[allow(unreachable_patterns)]
            _ => {
                return Err(EmitError::unsupported(
                    "step",
                    format!("step {i} has a kind the C backend does not know"),
                ))
            }
        };
        body += &format!(
            "    /* step {i}: {} */\n    {{\n{}    }}\n",
            step_label(g, s),
            indent(&code)
        );
    }
    for (i, &b) in p.outputs.iter().enumerate() {
        if p.buffers[b].bytes > 0 {
            let src = cx.ptr(b)?;
            body += &format!("    memcpy(outputs[{i}], {src}, {});\n", p.buffers[b].bytes);
        }
    }
    files::assemble(&mut cx, &body, opts)
}

/// `code` indented to sit in a block of `egret_model`.
fn indent(code: &str) -> String {
    code.lines().map(|l| format!("        {l}\n")).collect()
}

/// A comment naming what a step computes.
fn step_label(g: &Graph, s: &Step) -> String {
    let name = |n: egret_ir::NodeId| {
        let node = g.node(n);
        let op = node.op.as_call().map_or("?", |c| c.op_type.as_str());
        // `*/` must not end the comment early.
        format!("{op} `{}`", node.name.replace("*/", "* /"))
    };
    match s {
        Step::Loop(l) => format!(
            "fused loop of {}",
            l.nodes
                .iter()
                .map(|&n| name(n))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Step::Linear(l) => format!("linear {}", name(l.node)),
        Step::Call(c) => name(c.node),
        #[allow(unreachable_patterns)]
        _ => String::from("step"),
    }
}

#[cfg(test)]
mod tests;
