//! Running a compiled program: fill the arena, run the steps, read the outputs.

use super::{Compiled, Native};
use crate::program::{BufferId, Call, FusedLoop, Linear, Program, Step, Storage};
use egret_ir::{Graph, Op, Tensor, Value};
use egret_runtime::kernels::packed_gemm::{gemm_packed, PackedMatrix};
use egret_runtime::{node_error, Interpreter, Kernel, KernelCtx, RuntimeError, SubgraphRunner};
use rayon::prelude::*;

/// A loop runs on several threads once it has this many elements.
const PARALLEL_MIN: usize = 1 << 15;

/// 64-byte aligned memory for one run.
pub(super) struct Arena {
    mem: Vec<Chunk>,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

impl Arena {
    fn new(bytes: usize) -> Arena {
        Arena {
            mem: vec![Chunk([0; 64]); bytes.div_ceil(64)],
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        let len = self.mem.len() * 64;
        // SAFETY: `Chunk` is 64 plain bytes with no padding.
        unsafe { std::slice::from_raw_parts_mut(self.mem.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// Why a run stopped.
pub(super) enum RunError {
    /// A kernel's output did not have its traced shape.
    ShapeGuard(String),
    /// A kernel failed.
    Runtime(RuntimeError),
}

impl From<RuntimeError> for RunError {
    fn from(e: RuntimeError) -> RunError {
        RunError::Runtime(e)
    }
}

/// Runs If/Loop/Scan bodies with the interpreter.
struct Subgraphs;

impl SubgraphRunner for Subgraphs {
    fn run_subgraph(&self, g: &Graph, inputs: Vec<Value>) -> egret_runtime::Result<Vec<Value>> {
        Interpreter::new(g)?.run(inputs)
    }
}

/// Pointers a loop reads and writes, sendable to worker threads.
struct Pointers(Vec<*mut u8>);
// SAFETY: workers write disjoint slices of the output and only read inputs.
unsafe impl Send for Pointers {}
// SAFETY: as above.
unsafe impl Sync for Pointers {}

/// The values of one run: the arena, and the dynamic tensors by buffer id.
struct Memory<'a> {
    arena: &'a mut [u8],
    dynamic: Vec<Option<Tensor>>,
}

impl Memory<'_> {
    /// Buffer `b` of `p` as a tensor (arena bytes are copied).
    fn tensor(&self, p: &Program, b: BufferId) -> Result<Tensor, RuntimeError> {
        let buf = &p.buffers[b];
        match &buf.storage {
            Storage::Const(t) => Ok(t.clone()),
            Storage::Arena(off) => Ok(Tensor::from_bytes(
                buf.dtype,
                buf.shape.clone(),
                &self.arena[*off..*off + buf.bytes],
            )?),
            Storage::Dynamic => self.dynamic[b].clone().ok_or_else(|| {
                RuntimeError::msg(format!("`{}` is read before it is made", buf.name))
            }),
        }
    }
}

/// Run `c` on `inputs` (which match the variant's signature).
pub(super) fn run(g: &Graph, c: &Compiled, inputs: &[Value]) -> Result<Vec<Value>, RunError> {
    let p = &c.program;
    let mut arena = c
        .arenas
        .lock()
        .ok()
        .and_then(|mut a| a.pop())
        .unwrap_or_else(|| Arena::new(p.arena_bytes));
    let mut mem = Memory {
        arena: arena.bytes(),
        dynamic: vec![None; p.buffers.len()],
    };
    let result = run_in(g, c, inputs, &mut mem);
    drop(mem);
    if let Ok(mut pool) = c.arenas.lock() {
        pool.push(arena);
    }
    result
}

fn run_in(
    g: &Graph,
    c: &Compiled,
    inputs: &[Value],
    mem: &mut Memory<'_>,
) -> Result<Vec<Value>, RunError> {
    let p = &c.program;
    for (&b, v) in p.inputs.iter().zip(inputs) {
        let buf = &p.buffers[b];
        let t = v.as_tensor().map_err(RuntimeError::from)?;
        match buf.storage {
            Storage::Arena(off) => mem.arena[off..off + buf.bytes].copy_from_slice(t.bytes()),
            Storage::Dynamic => mem.dynamic[b] = Some(t.clone()),
            Storage::Const(_) => {}
        }
    }
    for (step, native) in p.steps.iter().zip(&c.natives) {
        match (step, native) {
            (Step::Loop(l), Native::Loop(f)) => run_loop(p, l, *f, mem.arena),
            (Step::Call(call), Native::Kernel(k)) => run_call(g, p, call, *k, mem)?,
            (Step::Linear(l), Native::Linear(w)) => run_linear(p, l, w, mem.arena)?,
            _ => unreachable!("`compile` makes one matching native per step"),
        }
    }
    Ok(p.outputs
        .iter()
        .map(|&b| mem.tensor(p, b).map(Value::Tensor))
        .collect::<Result<Vec<_>, _>>()?)
}

fn run_loop(p: &Program, l: &FusedLoop, f: super::LoopFn, mem: &mut [u8]) {
    let base = mem.as_mut_ptr();
    let ptr = |b: usize| -> *mut u8 {
        match &p.buffers[b].storage {
            // SAFETY (of the add): the planner placed the buffer inside the arena.
            Storage::Arena(off) => unsafe { base.add(*off) },
            Storage::Const(t) => t.bytes().as_ptr().cast_mut(),
            Storage::Dynamic => unreachable!("lowering keeps dynamic values out of loops"),
        }
    };
    let ptrs = Pointers(
        std::iter::once(l.output)
            .chain(l.inputs.iter().copied())
            .map(ptr)
            .collect(),
    );
    let outer = l.dims[0] as u64;
    let total: usize = l.dims.iter().product();
    let threads = rayon::current_num_threads();
    if total < PARALLEL_MIN || outer < 2 || threads < 2 {
        // SAFETY: the loop was compiled for exactly these buffers' shapes and
        // strides; every pointer addresses a buffer of the traced size.
        unsafe { f(ptrs.0.as_ptr(), 0, outer) };
        return;
    }
    let parts = (threads as u64 * 4).min(outer);
    let ptrs = &ptrs;
    (0..parts).into_par_iter().for_each(move |k| {
        let (lo, hi) = (outer * k / parts, outer * (k + 1) / parts);
        // SAFETY: as above; parts cover disjoint output ranges.
        unsafe { f(ptrs.0.as_ptr(), lo, hi) };
    });
}

fn run_linear(
    p: &Program,
    l: &Linear,
    w: &PackedMatrix,
    mem: &mut [u8],
) -> Result<(), RuntimeError> {
    let base = mem.as_mut_ptr();
    let len = mem.len();
    let view = |b: usize| -> Result<&[f32], RuntimeError> {
        let buf = &p.buffers[b];
        match &buf.storage {
            Storage::Const(t) => Ok(t.as_slice::<f32>()?),
            Storage::Arena(off) => {
                assert!(off + buf.bytes <= len);
                // SAFETY: inside the arena (asserted), 64-byte aligned, and
                // not the output: an input is alive while the output is
                // written, so the planner gave them disjoint bytes.
                Ok(unsafe {
                    std::slice::from_raw_parts(base.add(*off).cast::<f32>(), buf.bytes / 4)
                })
            }
            Storage::Dynamic => unreachable!("lowering keeps dynamic values out of linear steps"),
        }
    };
    let a = view(l.a)?;
    let bias = l.bias.map(view).transpose()?;
    let out = &p.buffers[l.output];
    let Storage::Arena(off) = out.storage else {
        unreachable!("step outputs live in the arena")
    };
    assert!(off + out.bytes <= len);
    // SAFETY: as above; no other view of these bytes exists during the call.
    let c = unsafe { std::slice::from_raw_parts_mut(base.add(off).cast::<f32>(), out.bytes / 4) };
    gemm_packed(l.m, a, l.k, w, bias, c, l.n);
    Ok(())
}

fn run_call(
    g: &Graph,
    p: &Program,
    call: &Call,
    kernel: Kernel,
    mem: &mut Memory<'_>,
) -> Result<(), RunError> {
    let node = g.node(call.node);
    let Op::Call(op) = &node.op else {
        unreachable!("calls are lowered from operator nodes")
    };
    let args = call
        .inputs
        .iter()
        .map(|i| i.map(|b| mem.tensor(p, b).map(Value::Tensor)).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = KernelCtx {
        node,
        call: op,
        runner: &Subgraphs,
    };
    let outs = kernel(&ctx, &args).map_err(|e| node_error(node, op, e))?;
    drop(args);
    for (&b, v) in call.outputs.iter().zip(&outs) {
        let buf = &p.buffers[b];
        let t = v.as_tensor().map_err(RuntimeError::from)?;
        let dynamic = matches!(buf.storage, Storage::Dynamic);
        let fits = if dynamic {
            t.rank() == buf.shape.len()
        } else {
            t.shape() == buf.shape.as_slice()
        };
        if t.dtype() != buf.dtype || !fits {
            return Err(RunError::ShapeGuard(format!(
                "{} `{}` produced {}{:?} where the trace had {}{:?}",
                op.op_type,
                node.label(),
                t.dtype(),
                t.shape(),
                buf.dtype,
                buf.shape
            )));
        }
        match buf.storage {
            Storage::Arena(off) => mem.arena[off..off + buf.bytes].copy_from_slice(t.bytes()),
            Storage::Dynamic => mem.dynamic[b] = Some(t.clone()),
            Storage::Const(_) => {}
        }
    }
    if outs.len() < call.outputs.len() {
        return Err(RunError::Runtime(node_error(
            node,
            op,
            RuntimeError::msg("kernel produced fewer outputs than the node declares"),
        )));
    }
    Ok(())
}
