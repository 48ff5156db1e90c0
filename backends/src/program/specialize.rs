//! Shape specialisation by tracing.
//!
//! A [`Program`](super::Program) has concrete shapes and a fixed arena, so it is
//! built for one assignment of input shapes. Rather than re-deriving every
//! shape symbolically (Reshape targets are often computed from `Shape` ops at
//! run time), egret runs the reference interpreter once on the real inputs and
//! records the type of every value. Values that depend only on constants and
//! on input *shapes* (the `Shape → Gather → Concat` chains exported models are
//! full of) are the same for every input of these shapes, so their traced
//! values become constants of the specialised program.
//!
//! A *symbolic* dim (the past length of a KV cache, which grows by one every
//! decode step) would otherwise cost a new program per value. For those,
//! [`trace_symbolic`] traces twice, at the real size and one shorter, and
//! marks every value whose shape differs between the runs as
//! [`dynamic`](Trace::dynamic): its size is only known at run time, so it is
//! kept out of the arena and out of fused loops, and the kernels that make it
//! run as calls. Shape-constant values that differ between the runs are not
//! folded. Everything else (the projections and MLPs of a decode step) stays
//! compiled. Two runs cannot prove that a value never depends on the symbolic
//! dim in some other way (a `Slice` clamped at 4 has the same shape for 7 and
//! 6); the executor's shape guard catches a kernel output whose shape differs
//! from the trace, and the variant then falls back to the interpreter.

use egret_ir::{Attr, DType, Graph, NodeId, Op, OutletId, Tensor, Value};
use egret_runtime::Interpreter;
use std::collections::{HashMap, HashSet};

use super::LowerError;

/// One symbolic dim of the inputs: `(input index, axis)`.
pub type Axis = (usize, usize);

/// The concrete type of a traced value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Traced {
    /// Element type.
    pub dtype: DType,
    /// Concrete shape.
    pub shape: Vec<usize>,
    /// Bytes it occupies.
    pub bytes: usize,
}

/// What one interpreter run on real inputs tells the lowering.
pub struct Trace {
    /// The type of every value the run computed or read.
    pub types: HashMap<OutletId, Traced>,
    /// Values that depend only on constants and input shapes, with the value
    /// they had in the run.
    pub folded: HashMap<OutletId, Tensor>,
    /// The graph's outputs from the run.
    pub outputs: Vec<Value>,
    /// Values whose shape depends on a symbolic dim (empty unless traced by
    /// [`trace_symbolic`]); their recorded type is the one of this run.
    pub dynamic: HashSet<OutletId>,
}

fn has_subgraph(op: &Op) -> bool {
    op.as_call().is_some_and(|c| {
        c.attrs
            .0
            .values()
            .any(|a| matches!(a, Attr::Graph(_) | Attr::Graphs(_)))
    })
}

/// The nodes whose outputs depend only on constants and input shapes.
fn shape_constant_nodes(g: &Graph, order: &[NodeId]) -> HashSet<NodeId> {
    let mut fixed: HashSet<NodeId> = HashSet::new();
    for &id in order {
        let node = g.node(id);
        let is_fixed = match &node.op {
            Op::Input => false,
            Op::Const(_) => true,
            Op::Call(c)
                if c.domain.is_empty() && matches!(c.op_type.as_str(), "Shape" | "Size") =>
            {
                true
            }
            Op::Call(c) => {
                !egret_runtime::fold::is_random(&c.op_type)
                    && !has_subgraph(&node.op)
                    && node
                        .inputs()
                        .iter()
                        .flatten()
                        .all(|o| fixed.contains(&o.node))
            }
        };
        if is_fixed {
            fixed.insert(id);
        }
    }
    fixed
}

/// Run `g` on `inputs` with the interpreter and record what lowering needs.
pub fn trace(g: &Graph, inputs: Vec<Value>) -> Result<Trace, LowerError> {
    let interp = Interpreter::new(g).map_err(LowerError::Runtime)?;
    let order = g
        .topo_order()
        .map_err(|e| LowerError::Unsupported(e.to_string()))?;
    let fixed = shape_constant_nodes(g, &order);
    let mut types = HashMap::new();
    let mut folded = HashMap::new();
    let mut non_tensor: Option<String> = None;
    let mut record = |o: OutletId, v: &Value, types: &mut HashMap<OutletId, Traced>| match v {
        Value::Tensor(t) if t.dtype() != DType::String => {
            types.insert(
                o,
                Traced {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    bytes: t.byte_size(),
                },
            );
        }
        _ => {
            non_tensor.get_or_insert_with(|| g.value_name(o).to_string());
        }
    };
    for (&o, v) in g.inputs.iter().zip(&inputs) {
        record(o, v, &mut types);
    }
    let outputs = interp
        .run_observed(inputs, &mut |id, outs| {
            for (slot, v) in outs.iter().enumerate().take(g.node(id).outputs.len()) {
                let o = OutletId::new(id, slot);
                record(o, v, &mut types);
                if fixed.contains(&id) && !matches!(g.node(id).op, Op::Const(_)) {
                    if let Value::Tensor(t) = v {
                        folded.insert(o, t.clone());
                    }
                }
            }
        })
        .map_err(LowerError::Runtime)?;
    if let Some(name) = non_tensor {
        return Err(LowerError::Unsupported(format!(
            "value `{name}` is not a numeric tensor (sequences, optionals and strings stay in the interpreter)"
        )));
    }
    for id in g.node_ids() {
        if let Op::Const(t) = &g.node(id).op {
            types.insert(
                OutletId::new(id, 0),
                Traced {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    bytes: t.byte_size(),
                },
            );
        }
    }
    Ok(Trace {
        types,
        folded,
        outputs,
        dynamic: HashSet::new(),
    })
}

/// Trace `g` for inputs whose `axes` are symbolic: run it on `inputs` and on
/// `inputs` cut one shorter along every axis in `axes`, and mark what differs
/// (see the module docs). Fails as `Unsupported` when an axis cannot be cut
/// (size 0, or a packed dtype).
pub fn trace_symbolic(g: &Graph, inputs: Vec<Value>, axes: &[Axis]) -> Result<Trace, LowerError> {
    let shorter = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            axes.iter()
                .filter(|(input, _)| *input == i)
                .try_fold(v.clone(), |v, &(_, axis)| drop_last(v, axis))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let other = trace(g, shorter)?;
    let mut t = trace(g, inputs)?;
    t.dynamic = t
        .types
        .iter()
        .filter(|(o, ty)| other.types.get(o).is_some_and(|u| u.shape != ty.shape))
        .map(|(o, _)| *o)
        .collect();
    t.folded.retain(|o, v| {
        other.folded.get(o).is_some_and(|u| {
            u.dtype() == v.dtype() && u.shape() == v.shape() && u.bytes() == v.bytes()
        })
    });
    Ok(t)
}

/// `v` without its last index along `axis`.
fn drop_last(v: Value, axis: usize) -> Result<Value, LowerError> {
    let cannot = || LowerError::Unsupported(format!("cannot shorten axis {axis} of an input"));
    let Value::Tensor(t) = v else {
        return Err(cannot());
    };
    let size = t.dtype().size().ok_or_else(cannot)?;
    let dim = *t.shape().get(axis).ok_or_else(cannot)?;
    if dim == 0 {
        return Err(cannot());
    }
    let inner = t.shape()[axis + 1..].iter().product::<usize>() * size;
    let (keep, stride) = ((dim - 1) * inner, dim * inner);
    let bytes: Vec<u8> = if stride == 0 {
        Vec::new()
    } else {
        t.bytes()
            .chunks_exact(stride)
            .flat_map(|row| &row[..keep])
            .copied()
            .collect()
    };
    let mut shape = t.shape().to_vec();
    shape[axis] = dim - 1;
    Tensor::from_bytes(t.dtype(), shape, &bytes)
        .map(Value::Tensor)
        .map_err(|e| LowerError::Runtime(e.into()))
}
