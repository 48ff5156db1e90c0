//! The Cranelift JIT: runs a graph as a [`Program`] whose fused loops are
//! native code.
//!
//! [`Jit`] implements [`Executor`]. The first call with a new set of input
//! shapes traces the graph with the interpreter, lowers it and compiles its
//! loops, then runs the compiled variant, as every later call with the same
//! shapes does. (The traced outputs are not returned: a JIT that answered its
//! first call with the interpreter's results would hide its own bugs.)
//!
//! Inputs whose shapes move along one dim from call to call (the past length
//! of a KV cache in decode) would cost a compile per call. When a new shape
//! key differs from one already compiled only along dims that all moved by the
//! same amount, those dims are taken as one symbolic size: the JIT compiles a
//! *symbolic* variant ([`program::trace_symbolic`]) in which only the values
//! that follow that size are run by kernels at run time, and serves every
//! later size from it. A size that keeps coming back ([`HOT`] calls) still
//! gets an exact variant of its own. Graphs a
//! Program cannot express (sequences, strings) and variants whose traced
//! shapes turn out to depend on input *values* run on the interpreter, so the
//! JIT is never less correct than the oracle.

pub mod codegen;
mod exec;
mod vmath;

use crate::program::{self, Axis, LowerError, Program, Step, Storage};
use codegen::{loop_fn, LoopCompiler, LoopFn};
use cranelift_jit::JITModule;
use egret_ir::{DType, Graph, Model, Tensor, Value};
use egret_runtime::kernels::packed_gemm::PackedMatrix;
use egret_runtime::{registry, Executor, Interpreter, Kernel, Result, RuntimeError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many shape variants one [`Jit`] keeps compiled.
const MAX_VARIANTS: usize = 32;

/// Calls with one exact shape, served by a symbolic variant, after which that
/// shape gets an exact variant.
pub const HOT: usize = 4;

/// The size recorded for a symbolic dim in a variant key.
const SYMBOLIC: usize = usize::MAX;

/// What runs one step of a compiled program, resolved at compile time.
enum Native {
    /// A fused loop's machine code.
    Loop(LoopFn),
    /// A `Linear` step's packed weight.
    Linear(Arc<PackedMatrix>),
    /// A `Call` step's runtime kernel.
    Kernel(Kernel),
}

/// A program with its loops compiled.
pub struct Compiled {
    /// The lowered program.
    pub program: Program,
    /// How each step runs, one per [`Program::steps`].
    natives: Vec<Native>,
    /// Owns the machine code the loops point into.
    _module: JITModule,
    /// Reusable arenas (one per concurrent caller).
    arenas: Mutex<Vec<exec::Arena>>,
}

// SAFETY: the JIT module is only kept alive here; its finalized code is
// immutable, and the loop functions are pure functions of their arguments.
unsafe impl Send for Compiled {}
// SAFETY: as above; the only interior mutability is behind a Mutex.
unsafe impl Sync for Compiled {}

/// A compiled variant, or the reason it runs on the interpreter.
enum Variant {
    Compiled(Arc<Compiled>),
    Interpreted(String),
}

/// Timing and fallbacks, for reports.
#[derive(Clone, Debug, Default)]
pub struct JitStats {
    /// Variants compiled.
    pub compiled: usize,
    /// How many of them are symbolic.
    pub symbolic: usize,
    /// Total time spent tracing, lowering and compiling.
    pub compile_time: Duration,
    /// Why variants fell back to the interpreter, if any did.
    pub fallbacks: Vec<String>,
}

/// The graph a [`Jit`] runs: borrowed, or owned when the JIT must outlive
/// its caller's borrow (a decoder keeps its executor next to its graph).
enum GraphRef<'g> {
    Borrowed(&'g Graph),
    Owned(Box<Graph>),
}

impl std::ops::Deref for GraphRef<'_> {
    type Target = Graph;
    fn deref(&self) -> &Graph {
        match self {
            GraphRef::Borrowed(g) => g,
            GraphRef::Owned(g) => g,
        }
    }
}

/// A graph prepared for the JIT.
pub struct Jit<'g> {
    graph: GraphRef<'g>,
    variants: Mutex<Variants>,
    packs: PackCache,
    stats: Mutex<JitStats>,
}

/// The key of a variant: every input's dtype and shape ([`SYMBOLIC`] for a
/// symbolic dim).
type ShapeKey = Vec<(DType, Vec<usize>)>;

/// The compiled variants of a [`Jit`], and what it learned about its inputs.
#[derive(Default)]
struct Variants {
    /// By exact key, or by symbolic key.
    map: HashMap<ShapeKey, Arc<Variant>>,
    /// The symbolic dims learned last.
    symbolic: Vec<Axis>,
    /// Calls per exact key served by a symbolic variant.
    hits: HashMap<ShapeKey, usize>,
}

/// What to do with a call.
enum Plan {
    /// Run this variant, stored under this key.
    Run(Arc<Variant>, ShapeKey),
    /// Compile an exact variant.
    Exact,
    /// Compile a symbolic variant with these dims, stored under this key.
    Symbolic(ShapeKey, Vec<Axis>),
}

fn is_symbolic(key: &ShapeKey) -> bool {
    key.iter().any(|(_, s)| s.contains(&SYMBOLIC))
}

/// `key` with the dims in `axes` made symbolic.
fn masked(key: &ShapeKey, axes: &[Axis]) -> ShapeKey {
    let mut k = key.clone();
    for &(i, ax) in axes {
        if let Some(d) = k.get_mut(i).and_then(|(_, s)| s.get_mut(ax)) {
            *d = SYMBOLIC;
        }
    }
    k
}

/// The dims in which `new` differs from `old`, if it differs, with the same
/// dtypes and ranks, only in dims that all moved by the same amount (one
/// symbolic size).
fn one_size_apart(old: &ShapeKey, new: &ShapeKey) -> Option<Vec<Axis>> {
    if old.len() != new.len() {
        return None;
    }
    let mut axes = Vec::new();
    let mut delta = None;
    for (i, ((dt_old, old), (dt_new, new))) in old.iter().zip(new).enumerate() {
        if dt_old != dt_new || old.len() != new.len() {
            return None;
        }
        for (ax, (&a, &b)) in old.iter().zip(new).enumerate() {
            if a != b {
                let d = b as i128 - a as i128;
                if *delta.get_or_insert(d) != d {
                    return None;
                }
                axes.push((i, ax));
            }
        }
    }
    (!axes.is_empty()).then_some(axes)
}

impl Variants {
    fn plan(&mut self, key: &ShapeKey) -> Plan {
        if let Some(v) = self.map.get(key) {
            return Plan::Run(v.clone(), key.clone());
        }
        if !self.symbolic.is_empty() {
            let sym = masked(key, &self.symbolic);
            if let Some(v) = self.map.get(&sym).cloned() {
                let hits = self.hits.entry(key.clone()).or_default();
                *hits += 1;
                if *hits < HOT {
                    return Plan::Run(v, sym);
                }
                self.hits.remove(key);
                return Plan::Exact;
            }
        }
        let nearest = self
            .map
            .keys()
            .filter(|k| !is_symbolic(k))
            .filter_map(|k| one_size_apart(k, key))
            .min_by_key(Vec::len);
        match nearest {
            Some(axes) => {
                self.symbolic = axes.clone();
                Plan::Symbolic(masked(key, &axes), axes)
            }
            None => Plan::Exact,
        }
    }

    fn remember(&mut self, key: ShapeKey, v: Arc<Variant>) {
        if self.map.len() >= MAX_VARIANTS {
            // Exact variants go first; the symbolic ones serve many shapes.
            self.map.retain(|k, _| is_symbolic(k));
            if self.map.len() >= MAX_VARIANTS {
                self.map.clear();
            }
        }
        if self.hits.len() >= 64 * MAX_VARIANTS {
            self.hits.clear();
        }
        self.map.insert(key, v);
    }
}

/// The variant key of `inputs` (`None` if one is not a tensor).
fn signature(inputs: &[Value]) -> Option<ShapeKey> {
    inputs
        .iter()
        .map(|v| match v {
            Value::Tensor(t) => Some((t.dtype(), t.shape().to_vec())),
            _ => None,
        })
        .collect()
}

impl<'g> Jit<'g> {
    /// Prepare `model`'s main graph. Fails, like the interpreter, when an op
    /// has no kernel.
    pub fn for_model(model: &'g Model) -> Result<Jit<'g>> {
        Interpreter::for_model(model)?;
        Ok(Jit::new(&model.graph))
    }

    /// Prepare a graph (kernels are checked on first use).
    pub fn new(graph: &'g Graph) -> Jit<'g> {
        Jit {
            graph: GraphRef::Borrowed(graph),
            variants: Mutex::default(),
            packs: PackCache::default(),
            stats: Mutex::new(JitStats::default()),
        }
    }

    /// Prepare a graph the JIT keeps (weights are shared, not copied).
    pub fn owning(graph: Graph) -> Jit<'static> {
        Jit {
            graph: GraphRef::Owned(Box::new(graph)),
            variants: Mutex::default(),
            packs: PackCache::default(),
            stats: Mutex::new(JitStats::default()),
        }
    }

    /// Compile statistics so far.
    pub fn stats(&self) -> JitStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The compiled program for inputs of these shapes, if one exists: the
    /// exact variant, else the symbolic one that would serve them.
    pub fn program_for(&self, inputs: &[Value]) -> Option<Arc<Compiled>> {
        let key = signature(inputs)?;
        let vs = self.variants.lock().ok()?;
        let v = vs
            .map
            .get(&key)
            .or_else(|| vs.map.get(&masked(&key, &vs.symbolic)))?;
        match v.as_ref() {
            Variant::Compiled(c) => Some(c.clone()),
            Variant::Interpreted(_) => None,
        }
    }

    fn remember(&self, key: ShapeKey, v: Arc<Variant>) {
        if let Ok(mut vs) = self.variants.lock() {
            vs.remember(key, v);
        }
    }

    fn note_fallback(&self, why: String) {
        if let Ok(mut s) = self.stats.lock() {
            s.fallbacks.push(why);
        }
    }

    /// Trace, lower and compile the variant for `inputs`, symbolic along
    /// `axes` (exact when there are none), and keep it under `key`.
    fn specialise(&self, key: ShapeKey, inputs: &[Value], axes: &[Axis]) -> Result<Arc<Variant>> {
        let t0 = Instant::now();
        let traced = if axes.is_empty() {
            program::trace(&self.graph, inputs.to_vec())
        } else {
            program::trace_symbolic(&self.graph, inputs.to_vec(), axes)
        };
        let variant = match traced {
            Err(LowerError::Runtime(e)) => return Err(e),
            Err(LowerError::Unsupported(why)) => Variant::Interpreted(why),
            Ok(trace) => match program::lower(&self.graph, &trace) {
                Ok(p) => match compile(&self.graph, p, &self.packs) {
                    Ok(c) => Variant::Compiled(Arc::new(c)),
                    Err(e) => Variant::Interpreted(e),
                },
                Err(why) => Variant::Interpreted(why.to_string()),
            },
        };
        if let Ok(mut s) = self.stats.lock() {
            s.compile_time += t0.elapsed();
            match &variant {
                Variant::Compiled(_) => {
                    s.compiled += 1;
                    s.symbolic += usize::from(!axes.is_empty());
                }
                Variant::Interpreted(why) => s.fallbacks.push(why.clone()),
            }
        }
        let variant = Arc::new(variant);
        self.remember(key, variant.clone());
        Ok(variant)
    }
}

/// Weights packed for the GEMM kernel, shared by every variant of a [`Jit`].
/// Keyed by the weight's address; the entry keeps the tensor alive so the
/// address cannot be reused by another tensor.
#[derive(Default)]
pub struct PackCache {
    packed: Mutex<HashMap<PackKey, (Tensor, Arc<PackedMatrix>)>>,
}

/// A weight's address, and whether it is used transposed.
type PackKey = (usize, bool);

impl PackCache {
    /// The packed form of `w` (`k × n`, or `n × k` when `transposed`).
    fn get(&self, w: &Tensor, k: usize, n: usize, transposed: bool) -> Result<Arc<PackedMatrix>> {
        let key = (w.bytes().as_ptr() as usize, transposed);
        let mut map = self
            .packed
            .lock()
            .map_err(|_| RuntimeError::msg("JIT weight cache poisoned"))?;
        if let Some((_, p)) = map.get(&key) {
            return Ok(p.clone());
        }
        let data = w.as_slice::<f32>()?;
        let (rs, cs) = if transposed { (1, k) } else { (n, 1) };
        let p = Arc::new(PackedMatrix::pack(data, k, n, rs, cs));
        map.insert(key, (w.clone(), p.clone()));
        Ok(p)
    }
}

/// Compile every loop of `program`, pack its weights (through `packs`) and
/// look up the kernel of every call (in `g`, the graph it was lowered from).
pub fn compile(
    g: &Graph,
    program: Program,
    packs: &PackCache,
) -> std::result::Result<Compiled, String> {
    enum Pending {
        Loop(cranelift_module::FuncId),
        Ready(Native),
    }
    let mut compiler = LoopCompiler::new().map_err(|e| e.to_string())?;
    let mut pending = Vec::with_capacity(program.steps.len());
    for s in &program.steps {
        pending.push(match s {
            Step::Loop(l) => Pending::Loop(compiler.compile(l).map_err(|e| e.to_string())?),
            Step::Linear(l) => match &program.buffers[l.weight].storage {
                Storage::Const(w) => Pending::Ready(Native::Linear(
                    packs
                        .get(w, l.k, l.n, l.transposed)
                        .map_err(|e| e.to_string())?,
                )),
                Storage::Arena(_) | Storage::Dynamic => {
                    return Err("a Linear weight is not constant".into())
                }
            },
            Step::Call(c) => {
                let op = g
                    .node(c.node)
                    .op
                    .as_call()
                    .ok_or("a call step is not an operator node")?;
                let k = registry()
                    .get(&op.domain, &op.op_type)
                    .ok_or_else(|| format!("no kernel for {}::{}", op.domain, op.op_type))?;
                Pending::Ready(Native::Kernel(k))
            }
        });
    }
    let module = compiler.finish().map_err(|e| e.to_string())?;
    let natives = pending
        .into_iter()
        .map(|p| match p {
            Pending::Loop(id) => Native::Loop(loop_fn(&module, id)),
            Pending::Ready(n) => n,
        })
        .collect();
    Ok(Compiled {
        program,
        natives,
        _module: module,
        arenas: Mutex::new(Vec::new()),
    })
}

impl Executor for Jit<'_> {
    fn execute(&self, inputs: Vec<Value>) -> Result<Vec<Value>> {
        let Some(key) = signature(&inputs) else {
            return Interpreter::new(&self.graph)?.run(inputs);
        };
        let plan = self
            .variants
            .lock()
            .map_err(|_| RuntimeError::msg("JIT variant cache poisoned"))?
            .plan(&key);
        let (variant, key) = match plan {
            Plan::Run(v, stored) => (v, stored),
            Plan::Exact => (self.specialise(key.clone(), &inputs, &[])?, key),
            Plan::Symbolic(sym, axes) => (self.specialise(sym.clone(), &inputs, &axes)?, sym),
        };
        match variant.as_ref() {
            Variant::Interpreted(_) => Interpreter::new(&self.graph)?.run(inputs),
            Variant::Compiled(c) => match exec::run(&self.graph, c, &inputs) {
                Ok(out) => Ok(out),
                Err(exec::RunError::ShapeGuard(why)) => {
                    // A kernel produced a shape other than the traced one: the
                    // graph's shapes depend on input values. Never compile it
                    // again for these shapes.
                    self.note_fallback(why.clone());
                    self.remember(key, Arc::new(Variant::Interpreted(why)));
                    Interpreter::new(&self.graph)?.run(inputs)
                }
                Err(exec::RunError::Runtime(e)) => Err(e),
            },
        }
    }
}
