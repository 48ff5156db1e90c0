//! `If` specialised to the branch the example inputs take: a graph rewrite
//! run before tracing.
//!
//! A C program is specialised to its traced shapes, and the two branches of
//! an `If` generally compute different shapes (silero-vad's `sr` input picks
//! the 8 kHz or the 16 kHz network, with its own weights and window), so
//! emitting both and selecting at run time does not fit. Instead
//! [`specialize_ifs`] runs the model once on the example inputs, replaces
//! every `If` by the nodes of the branch it took, and keeps the condition as
//! an `egret::Guard` node (no outputs; fails unless the condition has the
//! same truth value). The lowering keeps guards live, and the C backend
//! makes a failing guard return 1 from `egret_model`, as for the other traced
//! facts (a Gather index, Slice parameters). A condition that is a constant
//! gets no guard; one fixed by the input shapes (the many `rank == 3` tests
//! of exported models) is folded by the trace, and its guard emits no code.
//!
//! Branches may hold `If`s of their own: the rewrite repeats, one nesting
//! level per run, until none is left.

use egret_ir::infer::egret_ops::DOMAIN;
use egret_ir::{Attr, Graph, NodeId, Op, OpCall, OutletId, Tensor, Value, ValueInfo};
use egret_runtime::Interpreter;
use std::collections::{HashMap, HashSet};

/// The deepest nesting of `If`s [`specialize_ifs`] unfolds.
const MAX_DEPTH: usize = 64;

/// Why the `If`s of a graph could not be specialised.
#[derive(Debug, thiserror::Error)]
pub enum IfError {
    /// The run that finds the conditions failed.
    #[error("running the model on the example inputs to find its If conditions: {0}")]
    Runtime(#[from] egret_runtime::RuntimeError),
    /// An `If` node that cannot be inlined.
    #[error("If `{node}`: {reason}")]
    Invalid {
        /// The node's label.
        node: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(node: &str, reason: impl Into<String>) -> IfError {
    IfError::Invalid {
        node: node.to_string(),
        reason: reason.into(),
    }
}

/// Whether node `id` is a standard-domain `If`.
fn is_if(g: &Graph, id: NodeId) -> bool {
    g.node(id)
        .op
        .as_call()
        .is_some_and(|c| (c.domain.is_empty() || c.domain == "ai.onnx") && c.op_type == "If")
}

/// The truth value of a one-element tensor (nonzero is true, as the
/// interpreter's `If` reads it).
fn truth(t: &Tensor) -> Option<bool> {
    match t.to_f64_vec().ok()?.as_slice() {
        [x] => Some(*x != 0.0),
        _ => None,
    }
}

/// `g` with every `If` replaced by the branch `inputs` take (see the module
/// docs). The graph's inputs and outputs keep their names.
pub fn specialize_ifs(g: &Graph, inputs: &[Value]) -> Result<Graph, IfError> {
    let mut g = g.clone();
    for _ in 0..MAX_DEPTH {
        let ifs: Vec<NodeId> = g.node_ids().filter(|&id| is_if(&g, id)).collect();
        if ifs.is_empty() {
            return Ok(g);
        }
        let taken = conditions(&g, &ifs, inputs)?;
        for id in ifs {
            inline(&mut g, id, taken[&id])?;
        }
    }
    Err(IfError::Invalid {
        node: g.name.clone(),
        reason: format!("If nodes nested deeper than {MAX_DEPTH}"),
    })
}

/// The branch each `If` of `ifs` takes on `inputs` (true: `then_branch`).
fn conditions(
    g: &Graph,
    ifs: &[NodeId],
    inputs: &[Value],
) -> Result<HashMap<NodeId, bool>, IfError> {
    let cond = |id: NodeId| {
        g.node(id)
            .inputs()
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| invalid(g.node(id).label(), "no condition"))
    };
    let wanted: HashSet<OutletId> = ifs.iter().map(|&id| cond(id)).collect::<Result<_, _>>()?;
    let mut seen: HashMap<OutletId, Option<bool>> = HashMap::new();
    for &o in &wanted {
        if let Some(t) = g.const_value(o) {
            seen.insert(o, truth(t));
        }
    }
    Interpreter::new(g)?.run_observed(inputs.to_vec(), &mut |id, outs| {
        for (slot, v) in outs.iter().enumerate() {
            let o = OutletId::new(id, slot);
            if wanted.contains(&o) {
                seen.insert(o, v.as_tensor().ok().and_then(truth));
            }
        }
    })?;
    ifs.iter()
        .map(|&id| match seen.get(&cond(id)?) {
            Some(Some(b)) => Ok((id, *b)),
            Some(None) => Err(invalid(
                g.node(id).label(),
                "the condition is not one number",
            )),
            None => Err(invalid(
                g.node(id).label(),
                "the condition was not computed",
            )),
        })
        .collect()
}

/// The value names of `g`.
fn value_names(g: &Graph) -> HashSet<String> {
    g.node_ids()
        .flat_map(|id| g.node(id).outputs.iter().map(|o| o.name.clone()))
        .collect()
}

/// `name`, or it under `scope` (then numbered) when `names` has it; the
/// result is added to `names`.
fn fresh(names: &mut HashSet<String>, scope: &str, name: &str) -> String {
    let mut n = name.to_string();
    let mut k = 0;
    while names.contains(&n) {
        k += 1;
        n = format!("{scope}/{name}#{k}");
    }
    names.insert(n.clone());
    n
}

/// Replace `If` node `id` by the nodes of its `then_branch` (`taken`) or
/// `else_branch`, guarded by its condition unless that is a constant.
fn inline(g: &mut Graph, id: NodeId, taken: bool) -> Result<(), IfError> {
    let node = g.node(id).clone();
    let scope = node.label().to_string();
    let call = node
        .op
        .as_call()
        .ok_or_else(|| invalid(&scope, "not an op call"))?;
    let attr_err = |e: egret_ir::IrError| invalid(&scope, e.to_string());
    let branch = if taken { "then_branch" } else { "else_branch" };
    let body = call.attrs.graph(branch).map_err(attr_err)?.clone();
    let ncap = call
        .attrs
        .int_or("egret.num_captures", 0)
        .map_err(attr_err)?;
    let caps = usize::try_from(ncap)
        .ok()
        .and_then(|n| node.inputs().len().checked_sub(n))
        .map(|first| &node.inputs()[first..])
        .filter(|caps| caps.len() == body.inputs.len())
        .ok_or_else(|| invalid(&scope, format!("{ncap} captures for {branch}")))?;
    let mut map: HashMap<OutletId, OutletId> = HashMap::new();
    for (&b, cap) in body.inputs.iter().zip(caps) {
        map.insert(
            b,
            cap.ok_or_else(|| invalid(&scope, "a capture is absent"))?,
        );
    }
    let created = copy_nodes(g, &body, &mut map, &scope)?;
    if body.outputs.len() < node.outputs.len() {
        return Err(invalid(
            &scope,
            format!(
                "{branch} has {} outputs, the node {}",
                body.outputs.len(),
                node.outputs.len()
            ),
        ));
    }
    let mut renamed: HashSet<OutletId> = HashSet::new();
    for (k, info) in node.outputs.iter().enumerate() {
        let mut new = map
            .get(&body.outputs[k])
            .copied()
            .ok_or_else(|| unmade(&scope, &body, body.outputs[k]))?;
        let old = OutletId::new(id, k);
        if created.contains(&new.node) && renamed.insert(new) {
            // The value takes the If output's (outer) name.
            g.node_mut(new.node).outputs[new.slot].name = info.name.clone();
        } else if g.outputs.contains(&old) {
            // A graph output keeps its name through an Identity.
            let ident = OpCall::new("Identity");
            new = g
                .call(&info.name, ident, &[Some(new)], 1)
                .map_err(attr_err)?[0];
            g.node_mut(new.node).outputs[0].name = info.name.clone();
        }
        g.replace_uses(old, new).map_err(attr_err)?;
    }
    if let Some(cond) = node.inputs().first().copied().flatten() {
        if g.const_value(cond).is_none() {
            let guard = OpCall {
                domain: DOMAIN.into(),
                ..OpCall::new("Guard")
            }
            .with("value", Attr::Int(i64::from(taken)));
            g.add_node(
                &format!("{scope}.guard"),
                Op::Call(guard),
                vec![Some(cond)],
                vec![],
            )
            .map_err(attr_err)?;
        }
    }
    g.remove_node(id);
    Ok(())
}

/// Copy the nodes of `body` into `g` (inputs through `map`, which gets
/// every copied value); the new nodes that compute something.
fn copy_nodes(
    g: &mut Graph,
    body: &Graph,
    map: &mut HashMap<OutletId, OutletId>,
    scope: &str,
) -> Result<HashSet<NodeId>, IfError> {
    let mut names = value_names(g);
    let attr_err = |e: egret_ir::IrError| invalid(scope, e.to_string());
    let order = body.topo_order().map_err(attr_err)?;
    let mut created: HashSet<NodeId> = HashSet::new();
    for bid in order {
        let bn = body.node(bid);
        match &bn.op {
            Op::Input => {}
            Op::Const(t) => {
                let o = g.add_const(&fresh(&mut names, scope, &bn.outputs[0].name), t.clone());
                map.insert(OutletId::new(bid, 0), o);
            }
            Op::Call(_) => {
                let ins = bn
                    .inputs()
                    .iter()
                    .map(|i| {
                        i.map(|o| map.get(&o).copied().ok_or_else(|| unmade(scope, body, o)))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let outs = bn
                    .outputs
                    .iter()
                    .map(|o| ValueInfo {
                        name: fresh(&mut names, scope, &o.name),
                        ty: o.ty.clone(),
                    })
                    .collect();
                let nid = g
                    .add_node(&bn.name, bn.op.clone(), ins, outs)
                    .map_err(attr_err)?;
                created.insert(nid);
                for slot in 0..bn.outputs.len() {
                    map.insert(OutletId::new(bid, slot), OutletId::new(nid, slot));
                }
            }
        }
    }
    Ok(created)
}

/// The error for a branch value read before it is made.
fn unmade(node: &str, body: &Graph, o: OutletId) -> IfError {
    invalid(
        node,
        format!(
            "branch value `{}` is read before it is made",
            body.value_name(o)
        ),
    )
}
