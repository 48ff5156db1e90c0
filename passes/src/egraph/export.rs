//! e-graph → IR: materialise one chosen e-node per reachable e-class.

use super::analysis::EGraph;
use super::facts::refine;
use super::import::NONCE_ATTR;
use super::lang::ENode;
use egg::Id;
use egret_ir::{Graph, IrError, NodeId, OpCall, OutletId};
use std::collections::{HashMap, HashSet};

/// How a built e-class appears in the graph.
#[derive(Clone, Copy)]
enum Built {
    Value(OutletId),
    Tuple(NodeId),
    Absent,
}

/// Unique value names: originals where possible, `v<N>` otherwise. Graph
/// output names are reserved for their root class.
struct Names {
    used: HashSet<String>,
    reserved: HashMap<String, Id>,
    next: usize,
}

impl Names {
    fn fresh(&mut self, want: Option<&String>, owner: Option<Id>) -> String {
        if let Some(w) = want {
            let free = self.reserved.get(w).is_none_or(|&r| Some(r) == owner);
            if free && self.used.insert(w.clone()) {
                return w.clone();
            }
        }
        loop {
            self.next += 1;
            let n = match want {
                Some(w) => format!("{w}_{}", self.next),
                None => format!("v{}", self.next),
            };
            if self.used.insert(n.clone()) {
                return n;
            }
        }
    }
}

/// Build a graph computing `roots` (one per output of `template`) from the
/// e-nodes `choice` picks. `template` supplies the graph name, the inputs (all
/// kept, in order) and the output names; `names` suggests value names.
pub fn export(
    eg: &EGraph,
    roots: &[Id],
    choice: &dyn Fn(Id) -> Option<ENode>,
    names: &HashMap<Id, String>,
    template: &Graph,
) -> Result<Graph, IrError> {
    let mut g = Graph::new(&template.name);
    let mut inputs = Vec::new();
    let mut nm = Names {
        used: HashSet::new(),
        reserved: HashMap::new(),
        next: 0,
    };
    for &o in &template.inputs {
        let name = template.value_name(o);
        nm.used.insert(name.to_string());
        inputs.push(g.add_input(name, template.value_type(o).clone()));
    }
    let out_names: Vec<String> = template
        .outputs
        .iter()
        .map(|&o| template.value_name(o).to_string())
        .collect();
    // Root classes carry their output name.
    let mut want: HashMap<Id, String> = names.clone();
    for (r, n) in roots.iter().zip(&out_names) {
        want.insert(eg.find(*r), n.clone());
        nm.reserved.insert(n.clone(), eg.find(*r));
    }
    let mut built: HashMap<Id, Built> = HashMap::new();
    for &root in roots {
        build(
            eg, root, choice, &want, &inputs, &mut nm, &mut g, &mut built,
        )?;
    }
    for (i, (&r, name)) in roots.iter().zip(&out_names).enumerate() {
        let o = match built.get(&eg.find(r)) {
            Some(Built::Value(o)) => *o,
            _ => return Err(IrError::Invalid(format!("output {i} is not a value"))),
        };
        let o = if g.value_name(o) == name && !g.outputs.contains(&o) {
            o
        } else {
            let fresh = nm.fresh(Some(name), Some(eg.find(r)));
            g.call1(&fresh, OpCall::new("Identity"), &[o])?
        };
        g.outputs.push(o);
    }
    Ok(g)
}

#[allow(clippy::too_many_arguments)]
fn build(
    eg: &EGraph,
    root: Id,
    choice: &dyn Fn(Id) -> Option<ENode>,
    want: &HashMap<Id, String>,
    inputs: &[OutletId],
    nm: &mut Names,
    g: &mut Graph,
    built: &mut HashMap<Id, Built>,
) -> Result<(), IrError> {
    let mut stack = vec![(eg.find(root), false)];
    let mut open: HashSet<Id> = HashSet::new();
    while let Some((id, expanded)) = stack.pop() {
        if built.contains_key(&id) {
            continue;
        }
        let node = choice(id)
            .ok_or_else(|| IrError::Invalid(format!("no e-node chosen for class {id}")))?;
        if !expanded {
            if !open.insert(id) {
                return Err(IrError::Cycle(format!("e-class {id}")));
            }
            stack.push((id, true));
            for &c in egg::Language::children(&node) {
                let c = eg.find(c);
                if !built.contains_key(&c) {
                    stack.push((c, false));
                }
            }
            continue;
        }
        open.remove(&id);
        let b = match &node {
            ENode::Absent => Built::Absent,
            ENode::Input(i) => Built::Value(
                *inputs
                    .get(*i)
                    .ok_or_else(|| IrError::Invalid(format!("input {i} out of range")))?,
            ),
            ENode::Const(k) => {
                let t = eg
                    .analysis
                    .tensor(*k)
                    .ok_or_else(|| IrError::Invalid(format!("constant {k} out of range")))?;
                let name = nm.fresh(want.get(&id), Some(id));
                Built::Value(g.add_const(&name, t))
            }
            ENode::Get(i, [c]) => match built.get(&eg.find(*c)) {
                Some(Built::Tuple(n)) => {
                    let o = OutletId::new(*n, *i);
                    let name = nm.fresh(want.get(&id), Some(id));
                    g.node_mut(*n).outputs[*i].name = name;
                    Built::Value(o)
                }
                _ => return Err(IrError::Invalid(format!("get.{i} of a non-tuple class"))),
            },
            ENode::Op(op, children) => {
                let key = op.key();
                let mut ins = Vec::with_capacity(children.len());
                for &c in children {
                    ins.push(match built.get(&eg.find(c)) {
                        Some(Built::Value(o)) => Some(*o),
                        Some(Built::Absent) => None,
                        _ => {
                            return Err(IrError::Invalid(format!(
                                "{} reads a tuple class directly",
                                key.text()
                            )))
                        }
                    });
                }
                let mut call = key.call.clone();
                call.attrs.remove(NONCE_ATTR);
                let name = nm.fresh(want.get(&id), Some(id));
                let outs = g.call(&name, call, &ins, key.outputs)?;
                let node = outs
                    .first()
                    .map(|o| o.node)
                    .ok_or_else(|| IrError::Invalid(format!("{} has no outputs", key.text())))?;
                let data = &eg[id].data;
                for (slot, info) in g.node_mut(node).outputs.iter_mut().enumerate() {
                    if let Some(t) = data.types.get(slot) {
                        refine(&mut info.ty, t);
                    }
                    if key.outputs != 1 {
                        // Unread outputs stay unnamed; `get.N` names the read ones.
                        info.name.clear();
                    }
                }
                match outs[..] {
                    [o] if key.outputs == 1 => Built::Value(o),
                    _ => Built::Tuple(node),
                }
            }
        };
        built.insert(id, b);
    }
    Ok(())
}
