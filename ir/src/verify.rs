//! The verifier: structural and type checks run after import and between passes.
//!
//! [`verify`] checks, and fails with an [`IrError::Invalid`] naming the node on
//! the first violation:
//!
//! * the graph is acyclic ([`IrError::Cycle`] otherwise);
//! * every node input points at an existing outlet;
//! * non-empty value names are unique within the graph (empty names mark unused
//!   optional outputs and may repeat);
//! * graph inputs are `Input` nodes, each listed once, and every `Input` node is
//!   listed; `Input` and `Const` nodes have exactly one output;
//! * graph outputs exist;
//! * each `Const` node's type is exactly its tensor's type;
//! * re-running inference on every `Call` node gives output types compatible
//!   with the recorded ones (same kind and dtype, same rank when both are
//!   known, equal dims where both are known);
//! * every subgraph attribute verifies too (checked before the node's own
//!   inference, so the innermost problem is the one reported).

use crate::attr::Attr;
use crate::error::IrError;
use crate::graph::{Graph, Node, Op, OutletId};
use crate::infer::{infer_call, InputFact};
use crate::shape::{Dim, TensorType, ValueType};
use std::collections::{HashMap, HashSet};

fn invalid(node: &Node, msg: impl std::fmt::Display) -> IrError {
    IrError::Invalid(format!(
        "node `{}` ({}): {msg}",
        node.label(),
        node.op.name()
    ))
}

fn outlet_exists(g: &Graph, o: OutletId) -> bool {
    g.try_node(o.node).is_some_and(|n| o.slot < n.outputs.len())
}

/// Check that `g` is well formed (see the module documentation for the list).
pub fn verify(g: &Graph) -> Result<(), IrError> {
    // Dangling inputs first: the topological sort would trip over them.
    for id in g.node_ids() {
        let n = g.node(id);
        for (slot, o) in n.inputs().iter().enumerate() {
            if let Some(o) = o {
                if !outlet_exists(g, *o) {
                    return Err(invalid(
                        n,
                        format_args!("input {slot} reads a missing outlet {o:?}"),
                    ));
                }
            }
        }
    }
    let order = g.topo_order()?;

    let mut names: HashMap<&str, &Node> = HashMap::new();
    for &id in &order {
        let n = g.node(id);
        for v in &n.outputs {
            if v.name.is_empty() {
                continue;
            }
            if let Some(prev) = names.insert(&v.name, n) {
                return Err(invalid(
                    n,
                    format_args!(
                        "value name `{}` is also defined by node `{}`",
                        v.name,
                        prev.label()
                    ),
                ));
            }
        }
    }

    let mut listed = HashSet::new();
    for (i, &o) in g.inputs.iter().enumerate() {
        let Some(n) = g.try_node(o.node) else {
            return Err(IrError::Invalid(format!(
                "graph input {i} ({o:?}) does not exist"
            )));
        };
        if !matches!(n.op, Op::Input) || o.slot != 0 {
            return Err(invalid(
                n,
                format_args!("listed as graph input {i} but is not an Input node's outlet 0"),
            ));
        }
        if !listed.insert(o.node) {
            return Err(invalid(n, "listed more than once as a graph input"));
        }
    }
    for (i, &o) in g.outputs.iter().enumerate() {
        if !outlet_exists(g, o) {
            return Err(IrError::Invalid(format!(
                "graph output {i} ({o:?}) does not exist"
            )));
        }
    }

    for &id in &order {
        let n = g.node(id);
        match &n.op {
            Op::Input => {
                if n.outputs.len() != 1 || !n.inputs().is_empty() {
                    return Err(invalid(
                        n,
                        "an Input node has no inputs and exactly one output",
                    ));
                }
                if !listed.contains(&id) {
                    return Err(invalid(n, "Input node is not listed in the graph inputs"));
                }
            }
            Op::Const(t) => {
                if n.outputs.len() != 1 || !n.inputs().is_empty() {
                    return Err(invalid(
                        n,
                        "a Const node has no inputs and exactly one output",
                    ));
                }
                let own = ValueType::Tensor(TensorType::known(t.dtype(), t.shape()));
                if n.outputs[0].ty != own {
                    return Err(invalid(
                        n,
                        format_args!("recorded type {} but the tensor is {own}", n.outputs[0].ty),
                    ));
                }
            }
            Op::Call(call) => {
                for (k, a) in call.attrs.iter() {
                    let subs: &[_] = match a {
                        Attr::Graph(s) => std::slice::from_ref(s),
                        Attr::Graphs(s) => s,
                        _ => continue,
                    };
                    for s in subs {
                        verify(s).map_err(|e| invalid(n, format_args!("subgraph `{k}`: {e}")))?;
                    }
                }
                let facts: Vec<Option<InputFact<'_>>> = n
                    .inputs()
                    .iter()
                    .map(|i| {
                        i.map(|o| InputFact {
                            ty: g.value_type(o),
                            value: g.const_value(o),
                        })
                    })
                    .collect();
                let inferred = infer_call(n.label(), call, &facts, n.outputs.len())
                    .map_err(|e| invalid(n, format_args!("inference fails: {e}")))?;
                for (slot, (v, ty)) in n.outputs.iter().zip(&inferred).enumerate() {
                    if !compatible(&v.ty, ty) {
                        return Err(invalid(
                            n,
                            format_args!(
                                "output {slot} `{}` is recorded as {} but infers as {ty}",
                                v.name, v.ty
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// True if a recorded type agrees with an inferred one: same kind and dtype,
/// same rank when both ranks are known, equal sizes where both dims are known.
pub fn compatible(a: &ValueType, b: &ValueType) -> bool {
    fn tensors(a: &TensorType, b: &TensorType) -> bool {
        a.dtype == b.dtype
            && match (&a.shape, &b.shape) {
                (Some(x), Some(y)) => {
                    x.rank() == y.rank()
                        && x.dims().iter().zip(y.dims()).all(|(p, q)| match (p, q) {
                            (Dim::Known(p), Dim::Known(q)) => p == q,
                            _ => true,
                        })
                }
                _ => true,
            }
    }
    match (a, b) {
        (ValueType::Tensor(x), ValueType::Tensor(y))
        | (ValueType::Sequence(x), ValueType::Sequence(y)) => tensors(x, y),
        (ValueType::Optional(x), ValueType::Optional(y)) => compatible(x, y),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::graph::{OpCall, ValueInfo};
    use crate::shape::Shape;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    fn f32t(dims: &[usize]) -> ValueType {
        ValueType::Tensor(TensorType::known(DType::F32, dims))
    }

    /// `y = MatMul(x, w)` with x: f32[2,3], w: f32[3,4]; returns the graph and `y`.
    fn mm_graph(out_ty: ValueType) -> (Graph, OutletId) {
        let mut g = Graph::new("g");
        let x = g.add_input("x", f32t(&[2, 3]));
        let w = g.add_input("w", f32t(&[3, 4]));
        let id = g
            .add_node(
                "mm",
                Op::Call(OpCall::new("MatMul")),
                vec![Some(x), Some(w)],
                vec![ValueInfo {
                    name: "y".into(),
                    ty: out_ty,
                }],
            )
            .unwrap();
        let y = OutletId::new(id, 0);
        g.outputs.push(y);
        (g, y)
    }

    fn msg(g: &Graph) -> String {
        verify(g).unwrap_err().to_string()
    }

    #[test]
    fn compatibility_rules() {
        let sym = |s: &str| {
            ValueType::tensor(
                DType::F32,
                Some(Shape(vec![Dim::Sym(s.into()), Dim::Known(3)])),
            )
        };
        assert!(compatible(&f32t(&[2, 3]), &sym("n")));
        assert!(compatible(&sym("a"), &sym("b")));
        assert!(compatible(
            &f32t(&[2, 3]),
            &ValueType::tensor(DType::F32, None)
        ));
        assert!(!compatible(&f32t(&[2, 3]), &f32t(&[2, 4])));
        assert!(!compatible(&f32t(&[2, 3]), &f32t(&[2, 3, 1])));
        assert!(!compatible(
            &f32t(&[2]),
            &ValueType::Tensor(TensorType::known(DType::F16, &[2]))
        ));
        assert!(!compatible(
            &f32t(&[2]),
            &ValueType::Sequence(TensorType::known(DType::F32, &[2]))
        ));
        assert!(compatible(
            &ValueType::Optional(Box::new(f32t(&[2]))),
            &ValueType::Optional(Box::new(f32t(&[2])))
        ));
    }

    #[test]
    fn valid_graph_passes() {
        let (g, _) = mm_graph(f32t(&[2, 4]));
        verify(&g).unwrap();
    }

    #[test]
    fn recorded_type_must_match_inference() {
        let (g, _) = mm_graph(f32t(&[2, 3]));
        let m = msg(&g);
        let want =
            "node `mm` (MatMul): output 0 `y` is recorded as f32[2,3] but infers as f32[2,4]";
        assert!(m.contains(want), "{m}");
        let (g, _) = mm_graph(ValueType::Tensor(TensorType::known(DType::F16, &[2, 4])));
        assert!(msg(&g).contains("recorded as f16[2,4]"));
    }

    #[test]
    fn unsupported_op_is_reported() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", f32t(&[1]));
        g.add_node(
            "n",
            Op::Call(OpCall::new("NoSuchOp")),
            vec![Some(x)],
            vec![ValueInfo {
                name: "y".into(),
                ty: f32t(&[1]),
            }],
        )
        .unwrap();
        let m = msg(&g);
        assert!(
            m.contains("node `n` (NoSuchOp): inference fails") && m.contains("unsupported op"),
            "{m}"
        );
    }

    #[test]
    fn cycle_is_reported() {
        let (mut g, y) = mm_graph(f32t(&[2, 4]));
        g.set_input(y.node, 0, Some(y)).unwrap();
        assert!(matches!(verify(&g), Err(IrError::Cycle(n)) if n == "mm"));
    }

    #[test]
    fn dangling_input_is_reported() {
        let (mut g, y) = mm_graph(f32t(&[2, 4]));
        let x = g.inputs[0];
        g.remove_node(x.node);
        let m = msg(&g);
        assert!(
            m.contains("node `mm` (MatMul): input 0 reads a missing outlet"),
            "{m}"
        );
        // And a graph output pointing at a removed node.
        let (mut g2, _) = mm_graph(f32t(&[2, 4]));
        g2.remove_node(y.node);
        assert!(msg(&g2).contains("graph output 0"));
    }

    #[test]
    fn duplicate_names_are_reported() {
        let (mut g, _) = mm_graph(f32t(&[2, 4]));
        g.add_const("y", Tensor::scalar(1f32));
        let m = msg(&g);
        assert!(m.contains("value name `y` is also defined by node"), "{m}");
        // Empty names may repeat.
        let (mut g, y) = mm_graph(f32t(&[2, 4]));
        g.node_mut(y.node).outputs[0].name.clear();
        let c = g.add_const("c", Tensor::scalar(1f32));
        g.node_mut(c.node).outputs[0].name.clear();
        verify(&g).unwrap();
    }

    #[test]
    fn graph_inputs_are_checked() {
        let (mut g, y) = mm_graph(f32t(&[2, 4]));
        g.inputs.push(g.inputs[0]);
        assert!(msg(&g).contains("listed more than once"));
        g.inputs.pop();
        g.inputs.push(y);
        assert!(msg(&g).contains("node `mm` (MatMul): listed as graph input 2 but is not an Input"));
        g.inputs.pop();
        g.inputs.remove(0);
        assert!(msg(&g).contains("node `x` (Input): Input node is not listed"));
        g.inputs.clear();
        g.inputs
            .push(OutletId::new(petgraph::stable_graph::NodeIndex::new(99), 0));
        assert!(msg(&g).contains("graph input 0"));
    }

    #[test]
    fn const_types_are_checked() {
        let mut g = Graph::new("g");
        let c = g.add_const("c", Tensor::from_vec(vec![2], vec![1f32, 2.0]).unwrap());
        g.outputs.push(c);
        verify(&g).unwrap();
        g.node_mut(c.node).outputs[0].ty = f32t(&[3]);
        let m = msg(&g);
        assert!(
            m.contains("node `c` (Const): recorded type f32[3] but the tensor is f32[2]"),
            "{m}"
        );
        g.node_mut(c.node).outputs.push(ValueInfo {
            name: "d".into(),
            ty: f32t(&[2]),
        });
        assert!(msg(&g).contains("exactly one output"));
    }

    #[test]
    fn subgraphs_are_verified() {
        let (body, _) = mm_graph(f32t(&[9]));
        let mut g = Graph::new("g");
        let c = g.add_const("c", Tensor::from_bools(vec![], vec![true]).unwrap());
        let call = OpCall::new("If").with("then_branch", Attr::Graph(Arc::new(body)));
        g.add_node("if", Op::Call(call), vec![Some(c)], vec![])
            .unwrap();
        let m = msg(&g);
        assert!(m.contains("node `if` (If): subgraph `then_branch`: invalid graph: node `mm` (MatMul): output 0"), "{m}");
    }
}
