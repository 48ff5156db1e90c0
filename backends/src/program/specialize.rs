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

use egret_ir::{Attr, DType, Graph, NodeId, Op, OutletId, Tensor, Value};
use egret_runtime::Interpreter;
use std::collections::{HashMap, HashSet};

use super::LowerError;

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
}

/// Ops whose result is not a function of their inputs.
fn is_random(op_type: &str) -> bool {
    op_type.starts_with("Random") || matches!(op_type, "Multinomial" | "Bernoulli")
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
                !is_random(&c.op_type)
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
    })
}
