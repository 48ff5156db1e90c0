//! The shared lowering: an optimized graph, specialised to concrete input
//! shapes, becomes a [`Program`]: a scheduled list of steps over one planned
//! memory arena.
//!
//! * [`Step::Loop`]: a fused chain of f32 elementwise ops ([`fuse`]), which
//!   an emitter turns into native code (the Cranelift JIT; the C emitter will
//!   read the same structure).
//! * [`Step::Call`]: one graph node run by an egret kernel (GEMM, attention,
//!   normalisation, and every other op the runtime has).
//!
//! Every intermediate value lives in the arena at an offset fixed by liveness
//! ([`arena`]); a fused loop writes in place over an input that dies there.
//! Shapes come from tracing one interpreter run ([`specialize`]), so a
//! Program is valid for inputs of exactly the traced shapes, except along
//! symbolic axes traced by [`trace_symbolic`]: values whose size follows such
//! an axis are [`Storage::Dynamic`], made by calls at run time.

pub mod arena;
pub mod fuse;
pub mod specialize;

use egret_ir::{DType, Graph, NodeId, Op, OutletId, Tensor};
use std::collections::{HashMap, HashSet};
use std::fmt;

pub use fuse::{BinOp, Inst, UnOp};
pub use specialize::{trace, trace_symbolic, Axis, Trace, Traced};

/// Why a graph could not be lowered.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// The graph uses something a Program cannot express (the caller falls
    /// back to the interpreter).
    #[error("cannot lower: {0}")]
    Unsupported(String),
    /// The tracing run failed.
    #[error(transparent)]
    Runtime(egret_runtime::RuntimeError),
}

/// Index of a [`Buffer`] in [`Program::buffers`].
pub type BufferId = usize;

/// Where a buffer's bytes are.
#[derive(Clone, Debug)]
pub enum Storage {
    /// In the arena, at this byte offset.
    Arena(usize),
    /// A constant: a weight, or a value fixed by the input shapes.
    Const(Tensor),
    /// A value whose shape follows a symbolic axis: it is held as a tensor of
    /// its own, made at run time by a [`Step::Call`] (or given as an input),
    /// never read or written by a loop or a linear step. The buffer's shape
    /// and size are the traced ones, for display.
    Dynamic,
}

/// One tensor value of the program.
#[derive(Clone, Debug)]
pub struct Buffer {
    /// The graph's name for the value.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: Vec<usize>,
    /// Size in bytes.
    pub bytes: usize,
    /// Where it lives.
    pub storage: Storage,
}

/// A graph node run by an egret kernel.
#[derive(Clone, Debug)]
pub struct Call {
    /// The node (its op and attributes are read from the graph).
    pub node: NodeId,
    /// Its inputs (`None` for an absent optional input).
    pub inputs: Vec<Option<BufferId>>,
    /// Its outputs, one per declared output.
    pub outputs: Vec<BufferId>,
}

/// A fused elementwise loop over a collapsed iteration space.
#[derive(Clone, Debug)]
pub struct FusedLoop {
    /// The graph nodes it computes, in order (the last one is the output).
    pub nodes: Vec<NodeId>,
    /// The f32 buffer written, contiguous.
    pub output: BufferId,
    /// The f32 buffers read; [`Inst::Load`] indexes this list.
    pub inputs: Vec<BufferId>,
    /// The iteration space: the output shape with size-1 axes dropped and
    /// neighbouring axes merged where every input allows it. Never empty.
    pub dims: Vec<usize>,
    /// Per input, its element stride along each of `dims` (0: broadcast).
    pub strides: Vec<Vec<usize>>,
    /// The computation; the last instruction is the output.
    pub body: Vec<Inst>,
}

/// `output[m × n] = a[m × k] · W (+ bias[n])` with `W` a constant f32 weight:
/// a `Gemm` or `MatMul` whose right operand is a weight. Emitters pack the
/// weight once for their GEMM kernel.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The graph node.
    pub node: NodeId,
    /// The activations, `m × k` contiguous f32.
    pub a: BufferId,
    /// The constant weight: `k × n` row-major, or `n × k` when `transposed`.
    pub weight: BufferId,
    /// Whether the weight is stored `n × k` (Gemm's `transB = 1`).
    pub transposed: bool,
    /// An optional constant bias of `n` floats.
    pub bias: Option<BufferId>,
    /// The result, `m × n` contiguous f32.
    pub output: BufferId,
    /// Rows.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns.
    pub n: usize,
}

/// One step of a program.
#[derive(Clone, Debug)]
pub enum Step {
    /// A kernel call.
    Call(Call),
    /// A fused loop.
    Loop(FusedLoop),
    /// A product with a constant weight.
    Linear(Linear),
}

impl Step {
    /// The buffers the step reads and the buffers it writes.
    pub fn reads_writes(&self) -> (Vec<BufferId>, Vec<BufferId>) {
        match self {
            Step::Call(c) => (
                c.inputs.iter().flatten().copied().collect(),
                c.outputs.clone(),
            ),
            Step::Loop(l) => (l.inputs.clone(), vec![l.output]),
            Step::Linear(l) => (
                [l.a, l.weight].into_iter().chain(l.bias).collect(),
                vec![l.output],
            ),
        }
    }
}

/// A graph lowered for one set of input shapes.
#[derive(Clone, Debug)]
pub struct Program {
    /// Every value the steps read or write.
    pub buffers: Vec<Buffer>,
    /// The schedule.
    pub steps: Vec<Step>,
    /// The graph inputs, in order (arena buffers the caller fills).
    pub inputs: Vec<BufferId>,
    /// The graph outputs, in order.
    pub outputs: Vec<BufferId>,
    /// The arena size in bytes.
    pub arena_bytes: usize,
}

/// Strides of a contiguous `shape` seen from the `out` shape it broadcasts to
/// (numpy rules: 0 along broadcast axes).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let lead = out.len().saturating_sub(shape.len());
    let mut strides = vec![0; out.len()];
    let mut step = 1;
    for (i, &d) in shape.iter().enumerate().rev() {
        if d != 1 && lead + i < out.len() {
            strides[lead + i] = step;
        }
        step *= d;
    }
    strides
}

/// Drop size-1 axes of `out` and merge neighbouring axes that every operand
/// (one stride list each, `usize` or signed) walks as one. The result is
/// empty for a single element. Shared by the lowering and the C emitter.
pub(crate) fn collapse<S>(out: &[usize], strides: &[Vec<S>]) -> (Vec<usize>, Vec<Vec<S>>)
where
    S: Copy + PartialEq + std::ops::Mul<Output = S> + TryFrom<usize>,
{
    let mut dims: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<S>> = vec![Vec::new(); strides.len()];
    for (ax, &d) in out.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let mergeable = !dims.is_empty()
            && S::try_from(d).is_ok_and(|d| {
                strides
                    .iter()
                    .zip(&st)
                    .all(|(s, prev)| prev.last() == Some(&(s[ax] * d)))
            });
        if mergeable {
            if let Some(last) = dims.last_mut() {
                *last *= d;
            }
            for (s, prev) in strides.iter().zip(st.iter_mut()) {
                if let Some(p) = prev.last_mut() {
                    *p = s[ax];
                }
            }
        } else {
            dims.push(d);
            for (s, prev) in strides.iter().zip(st.iter_mut()) {
                prev.push(s[ax]);
            }
        }
    }
    (dims, st)
}

/// The nodes the outputs need, and every node without outputs (it runs for
/// its effect: an `egret::Guard` may fail the run), with what they read, in
/// topological order (folded values and constants need none).
fn live_nodes(g: &Graph, trace: &Trace) -> Result<Vec<NodeId>, LowerError> {
    let mut needed: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<OutletId> = g.outputs.clone();
    for id in g.node_ids() {
        let node = g.node(id);
        if node.outputs.is_empty() && matches!(node.op, Op::Call(_)) && needed.insert(id) {
            stack.extend(node.inputs().iter().flatten());
        }
    }
    while let Some(o) = stack.pop() {
        if trace.folded.contains_key(&o) || !matches!(g.node(o.node).op, Op::Call(_)) {
            continue;
        }
        if needed.insert(o.node) {
            stack.extend(g.node(o.node).inputs().iter().flatten());
        }
    }
    let order = g
        .topo_order()
        .map_err(|e| LowerError::Unsupported(e.to_string()))?;
    Ok(order.into_iter().filter(|n| needed.contains(n)).collect())
}

/// Builds the buffer table, one buffer per graph value.
struct Buffers<'a> {
    g: &'a Graph,
    trace: &'a Trace,
    ids: HashMap<OutletId, BufferId>,
    list: Vec<Buffer>,
}

impl Buffers<'_> {
    fn get(&mut self, o: OutletId) -> Result<BufferId, LowerError> {
        if let Some(&b) = self.ids.get(&o) {
            return Ok(b);
        }
        let name = self.g.value_name(o).to_string();
        let t =
            self.trace.types.get(&o).ok_or_else(|| {
                LowerError::Unsupported(format!("value `{name}` has no traced type"))
            })?;
        let storage = match (self.g.const_value(o), self.trace.folded.get(&o)) {
            (Some(c), _) | (None, Some(c)) => Storage::Const(c.clone()),
            (None, None) if self.trace.dynamic.contains(&o) => Storage::Dynamic,
            (None, None) => Storage::Arena(0),
        };
        self.list.push(Buffer {
            name,
            dtype: t.dtype,
            shape: t.shape.clone(),
            bytes: t.bytes,
            storage,
        });
        self.ids.insert(o, self.list.len() - 1);
        Ok(self.list.len() - 1)
    }
}

/// `node` as a [`Linear`] step, when it is a product with a constant 2-D
/// f32 weight that egret's packed GEMM computes exactly as the op does.
fn linear(g: &Graph, id: NodeId, bufs: &mut Buffers<'_>) -> Result<Option<Linear>, LowerError> {
    let node = g.node(id);
    let Some(call) = node.op.as_call() else {
        return Ok(None);
    };
    if !call.domain.is_empty() || node.outputs.len() != 1 {
        return Ok(None);
    }
    let attrs = &call.attrs;
    let ins = node.inputs();
    let (Some(Some(a)), Some(Some(w))) = (ins.first(), ins.get(1)) else {
        return Ok(None);
    };
    let is_const = |o: &OutletId| g.const_value(*o).is_some() || bufs.trace.folded.contains_key(o);
    let ty = |o: &OutletId| bufs.trace.types.get(o);
    let (Some(at), Some(wt)) = (ty(a), ty(w)) else {
        return Ok(None);
    };
    let dynamic =
        bufs.trace.dynamic.contains(a) || bufs.trace.dynamic.contains(&OutletId::new(id, 0));
    if dynamic
        || !is_const(w)
        || at.dtype != DType::F32
        || wt.dtype != DType::F32
        || wt.shape.len() != 2
    {
        return Ok(None);
    }
    let (transposed, bias) = match call.op_type.as_str() {
        "MatMul" if at.shape.len() >= 2 => (false, None),
        "Gemm" => {
            let int = |n: &str| attrs.int_or(n, 0).ok();
            let float = |n: &str| attrs.float_or(n, 1.0).ok();
            if int("transA") != Some(0) || float("alpha") != Some(1.0) || at.shape.len() != 2 {
                return Ok(None);
            }
            let bias = match ins.get(2) {
                Some(Some(c)) => {
                    let n = if int("transB") == Some(1) {
                        wt.shape[0]
                    } else {
                        wt.shape[1]
                    };
                    let ok_shape = ty(c).is_some_and(|t| {
                        t.dtype == DType::F32 && (t.shape == [n] || t.shape == [1, n])
                    });
                    if float("beta") != Some(1.0) || !is_const(c) || !ok_shape {
                        return Ok(None);
                    }
                    Some(*c)
                }
                _ => None,
            };
            match int("transB") {
                Some(0) => (false, bias),
                Some(1) => (true, bias),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let (k, n) = if transposed {
        (wt.shape[1], wt.shape[0])
    } else {
        (wt.shape[0], wt.shape[1])
    };
    if at.shape.last() != Some(&k) || k == 0 {
        return Ok(None);
    }
    let m = at.shape.iter().product::<usize>() / k;
    Ok(Some(Linear {
        node: id,
        a: bufs.get(*a)?,
        weight: bufs.get(*w)?,
        transposed,
        bias: bias.map(|c| bufs.get(c)).transpose()?,
        output: bufs.get(OutletId::new(id, 0))?,
        m,
        k,
        n,
    }))
}

/// Lower `g` for the shapes recorded in `trace`.
pub fn lower(g: &Graph, trace: &Trace) -> Result<Program, LowerError> {
    let live = live_nodes(g, trace)?;
    let pinned: HashSet<OutletId> = g.outputs.iter().copied().collect();
    let mut uses: HashMap<OutletId, usize> = HashMap::new();
    for &id in &live {
        for o in g.node(id).inputs().iter().flatten() {
            *uses.entry(*o).or_default() += 1;
        }
    }
    let groups = fuse::groups(g, &live, trace, &uses, &pinned);
    let mut root_of: HashMap<NodeId, usize> = HashMap::new();
    let mut fused: HashSet<NodeId> = HashSet::new();
    for (i, grp) in groups.iter().enumerate() {
        root_of.insert(*grp.nodes.last().expect("groups are not empty"), i);
        fused.extend(grp.nodes.iter().copied());
    }

    let mut bufs = Buffers {
        g,
        trace,
        ids: HashMap::new(),
        list: Vec::new(),
    };
    let inputs = g
        .inputs
        .iter()
        .map(|&o| bufs.get(o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut steps = Vec::new();
    for &id in &live {
        if let Some(&gi) = root_of.get(&id) {
            let grp = &groups[gi];
            let output = bufs.get(OutletId::new(id, 0))?;
            let out_shape = bufs.list[output].shape.clone();
            let loop_inputs = grp
                .inputs
                .iter()
                .map(|&o| bufs.get(o))
                .collect::<Result<Vec<_>, _>>()?;
            let full: Vec<Vec<usize>> = loop_inputs
                .iter()
                .map(|&b| broadcast_strides(&bufs.list[b].shape, &out_shape))
                .collect();
            let (mut dims, mut strides) = collapse(&out_shape, &full);
            if dims.is_empty() {
                // One element: a loop of one iteration.
                dims.push(1);
                strides.iter_mut().for_each(|s| s.push(0));
            }
            steps.push(Step::Loop(FusedLoop {
                nodes: grp.nodes.clone(),
                output,
                inputs: loop_inputs,
                dims,
                strides,
                body: grp.body.clone(),
            }));
        } else if let Some(l) = linear(g, id, &mut bufs)? {
            steps.push(Step::Linear(l));
        } else if !fused.contains(&id) {
            let node = g.node(id);
            let ins = node
                .inputs()
                .iter()
                .map(|i| i.map(|o| bufs.get(o)).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            let outs = (0..node.outputs.len())
                .map(|s| bufs.get(OutletId::new(id, s)))
                .collect::<Result<Vec<_>, _>>()?;
            steps.push(Step::Call(Call {
                node: id,
                inputs: ins,
                outputs: outs,
            }));
        }
    }
    let outputs = g
        .outputs
        .iter()
        .map(|&o| bufs.get(o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut buffers = bufs.list;
    let arena_bytes = place(&mut buffers, &steps, &inputs, &outputs);
    Ok(Program {
        buffers,
        steps,
        inputs,
        outputs,
        arena_bytes,
    })
}

/// Assign arena offsets from liveness; return the arena size.
fn place(
    buffers: &mut [Buffer],
    steps: &[Step],
    inputs: &[BufferId],
    outputs: &[BufferId],
) -> usize {
    let in_arena = |b: &Buffer| matches!(b.storage, Storage::Arena(_));
    let mut first: Vec<Option<usize>> = vec![None; buffers.len()];
    let mut last: Vec<usize> = vec![0; buffers.len()];
    for &b in inputs {
        first[b] = Some(0);
    }
    for (i, s) in steps.iter().enumerate() {
        let (reads, writes) = s.reads_writes();
        for b in reads {
            last[b] = last[b].max(i);
        }
        for b in writes {
            first[b].get_or_insert(i);
            last[b] = last[b].max(i);
        }
    }
    for &b in outputs {
        last[b] = steps.len();
    }
    // Slots: a fused loop's output shares the slot of a same-shaped input
    // that dies at that loop (reading and writing element i in the same
    // iteration is safe).
    let mut slot_of: Vec<Option<usize>> = vec![None; buffers.len()];
    let mut slots: Vec<arena::Interval> = Vec::new();
    let pinned: HashSet<BufferId> = outputs.iter().copied().collect();
    let mut order: Vec<BufferId> = (0..buffers.len())
        .filter(|&b| in_arena(&buffers[b]) && first[b].is_some())
        .collect();
    order.sort_by_key(|&b| (first[b], b));
    for b in order {
        let f = first[b].unwrap_or(0);
        let reuse = match steps.get(f) {
            Some(Step::Loop(l)) if l.output == b => l.inputs.iter().find_map(|&i| {
                let s = slot_of[i]?;
                let dies_here = last[i] == f && slots[s].last == f && !pinned.contains(&i);
                let same =
                    buffers[i].bytes == buffers[b].bytes && buffers[i].shape == buffers[b].shape;
                (dies_here && same).then_some(s)
            }),
            _ => None,
        };
        let s = reuse.unwrap_or_else(|| {
            slots.push(arena::Interval {
                first: f,
                last: last[b],
                bytes: buffers[b].bytes,
            });
            slots.len() - 1
        });
        slots[s].last = slots[s].last.max(last[b]);
        slot_of[b] = Some(s);
    }
    let (offsets, total) = arena::plan(&slots);
    for (b, s) in slot_of.iter().enumerate() {
        if let Some(s) = s {
            buffers[b].storage = Storage::Arena(offsets[*s]);
        }
    }
    total
}

impl Program {
    /// How many steps are fused loops, and how many graph nodes they cover.
    pub fn fused_counts(&self) -> (usize, usize) {
        self.steps.iter().fold((0, 0), |(l, n), s| match s {
            Step::Loop(f) => (l + 1, n + f.nodes.len()),
            Step::Call(_) | Step::Linear(_) => (l, n),
        })
    }
}

impl fmt::Display for Program {
    /// A readable listing: one line per step, buffers as `%id`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "arena {} bytes", self.arena_bytes)?;
        let name = |b: BufferId| {
            let buf = &self.buffers[b];
            let at = match buf.storage {
                Storage::Arena(o) => format!("@{o}"),
                Storage::Const(_) => "const".into(),
                Storage::Dynamic => "dyn".into(),
            };
            format!("%{b}:{}{:?}{at}", buf.dtype, buf.shape)
        };
        for &b in &self.inputs {
            writeln!(f, "input {}", name(b))?;
        }
        for s in &self.steps {
            match s {
                Step::Call(c) => {
                    let ins: Vec<String> = c
                        .inputs
                        .iter()
                        .map(|i| i.map_or("-".into(), name))
                        .collect();
                    let outs: Vec<String> = c.outputs.iter().map(|&o| name(o)).collect();
                    writeln!(
                        f,
                        "call {} = node{}({})",
                        outs.join(", "),
                        c.node.index(),
                        ins.join(", ")
                    )?;
                }
                Step::Linear(l) => {
                    let bias = l.bias.map_or(String::new(), |b| format!(" + {}", name(b)));
                    let t = if l.transposed { "ᵀ" } else { "" };
                    writeln!(
                        f,
                        "linear {} = {} · {}{t}{bias}  ({}×{}×{})",
                        name(l.output),
                        name(l.a),
                        name(l.weight),
                        l.m,
                        l.k,
                        l.n
                    )?;
                }
                Step::Loop(l) => {
                    let ins: Vec<String> = l
                        .inputs
                        .iter()
                        .zip(&l.strides)
                        .map(|(&i, s)| format!("{} strides {s:?}", name(i)))
                        .collect();
                    writeln!(
                        f,
                        "loop {} over {:?} = ({})",
                        name(l.output),
                        l.dims,
                        ins.join(", ")
                    )?;
                    for (k, inst) in l.body.iter().enumerate() {
                        writeln!(f, "    v{k} = {inst:?}")?;
                    }
                }
            }
        }
        for &b in &self.outputs {
            writeln!(f, "output {}", name(b))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
