//! Constant folding: run every node whose inputs are all constants once, and
//! replace it by its result.
//!
//! Frontends keep weights in their stored form (a GGUF `Q4_1` weight feeds an
//! `egret::DequantizeBlocks` node, an HF `[out, in]` weight a `Transpose`), which is
//! what passes and exporters want to see. A graph that is run many times (one
//! decode step per generated token) should not redo that work on every run, so
//! the generation runtime folds it away first, trading the compact stored form
//! for the computed one.
//!
//! Folding uses the interpreter's own kernels, so a folded graph computes exactly
//! what the unfolded one does. Random ops are never folded, nor nodes that carry
//! subgraphs.

use crate::error::{Result, RuntimeError};
use crate::registry::{node_error, registry, KernelCtx, SubgraphRunner};
use egret_ir::{Attr, Graph, Op, OutletId, Value};

/// Whether a (default-domain) op samples, so its result differs between
/// runs: never folded, never traced into a constant, never comparable with
/// another runtime's draw.
pub fn is_random(op_type: &str) -> bool {
    op_type.starts_with("Random") || matches!(op_type, "Multinomial" | "Bernoulli")
}

/// Folding never runs subgraphs (nodes that carry one are skipped).
struct NoSubgraphs;

impl SubgraphRunner for NoSubgraphs {
    fn run_subgraph(&self, g: &Graph, _inputs: Vec<Value>) -> Result<Vec<Value>> {
        Err(RuntimeError::msg(format!(
            "constant folding does not run subgraph `{}`",
            g.name
        )))
    }
}

/// True if `id` is an operator node that may be folded: it has inputs, all of them
/// constants, and it is deterministic and has no subgraph.
fn foldable(g: &Graph, id: egret_ir::NodeId) -> bool {
    let node = g.node(id);
    let Op::Call(call) = &node.op else {
        return false;
    };
    !node.inputs().is_empty()
        && node
            .inputs()
            .iter()
            .flatten()
            .all(|o| g.const_value(*o).is_some())
        && !is_random(&call.op_type)
        && !call
            .attrs
            .0
            .values()
            .any(|a| matches!(a, Attr::Graph(_) | Attr::Graphs(_)))
}

/// Fold every constant subexpression of `g` in place and drop constants nobody
/// reads any more. Returns the number of operator nodes folded.
pub fn fold_constants(g: &mut Graph) -> Result<usize> {
    let mut folded = 0;
    for id in g.topo_order()? {
        if !foldable(g, id) {
            continue;
        }
        let node = g.node(id);
        let Op::Call(call) = &node.op else {
            continue;
        };
        let kernel = registry().get(&call.domain, &call.op_type).ok_or_else(|| {
            RuntimeError::Unsupported(vec![(call.domain.clone(), call.op_type.clone(), 0)])
        })?;
        let args: Vec<Option<Value>> = node
            .inputs()
            .iter()
            .map(|i| i.and_then(|o| g.const_value(o).cloned().map(Value::Tensor)))
            .collect();
        let ctx = KernelCtx {
            node,
            call,
            runner: &NoSubgraphs,
        };
        let outs = kernel(&ctx, &args).map_err(|e| node_error(node, call, e))?;
        let n_out = node.outputs.len();
        let mut tensors = Vec::with_capacity(n_out);
        for v in outs.into_iter().take(n_out) {
            match v {
                Value::Tensor(t) => tensors.push(t),
                // A sequence or optional result cannot be a `Const`: keep the node.
                _ => break,
            }
        }
        if tensors.len() != n_out {
            continue;
        }
        let inputs: Vec<OutletId> = node.inputs().iter().flatten().copied().collect();
        for (slot, t) in tensors.into_iter().enumerate() {
            let old = OutletId::new(id, slot);
            let name = g.value_name(old).to_string();
            let new = g.add_const(&name, t);
            g.replace_uses(old, new)?;
        }
        g.remove_node(id);
        for o in inputs {
            remove_if_dead(g, o);
        }
        folded += 1;
    }
    Ok(folded)
}

/// Remove the constant behind `o` if nothing reads it and it is not a graph output.
fn remove_if_dead(g: &mut Graph, o: OutletId) {
    let dead = g
        .try_node(o.node)
        .is_some_and(|n| matches!(n.op, Op::Const(_)))
        && g.consumers(o).is_empty()
        && !g.outputs.contains(&o);
    if dead {
        g.remove_node(o.node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Interpreter;
    use egret_ir::{DType, OpCall, Shape, Tensor, ValueType};

    #[test]
    fn folds_constant_chains_and_keeps_results() {
        let mut g = Graph::new("g");
        let x = g.add_input(
            "x",
            ValueType::tensor(DType::F32, Some(Shape::known(&[2, 3]))),
        );
        let w = g.add_const(
            "w",
            Tensor::from_vec(vec![3, 2], vec![1f32, 2., 3., 4., 5., 6.]).unwrap(),
        );
        let wt = g.call1("wt", OpCall::new("Transpose"), &[w]).unwrap();
        let wt2 = g.call1("wt2", OpCall::new("Neg"), &[wt]).unwrap();
        let y = g.call1("y", OpCall::new("Add"), &[x, wt2]).unwrap();
        g.outputs.push(y);
        let xv = Tensor::from_vec(vec![2, 3], vec![10f32; 6]).unwrap();
        let before = Interpreter::new(&g)
            .unwrap()
            .run(vec![xv.clone().into()])
            .unwrap();
        assert_eq!(fold_constants(&mut g).unwrap(), 2);
        // x, one folded constant and the Add remain.
        assert_eq!(g.node_count(), 3);
        let after = Interpreter::new(&g).unwrap().run(vec![xv.into()]).unwrap();
        let b = before[0].as_tensor().unwrap().to_f64_vec().unwrap();
        let a = after[0].as_tensor().unwrap().to_f64_vec().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, vec![9., 7., 5., 8., 6., 4.]);
    }
}
