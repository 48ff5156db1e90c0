//! IR → e-graph.

use super::analysis::{Analysis, EGraph};
use super::fold::nondeterministic;
use super::lang::ENode;
use super::op::OpId;
use egg::Id;
use egret_ir::{Attr, Graph, IrError, Op, OutletId};
use std::collections::HashMap;

/// Attribute that keeps two nondeterministic ops (e.g. `RandomNormal`) apart:
/// hash-consing must not merge them. Removed again on export.
pub const NONCE_ATTR: &str = "_egret_nonce";

/// A graph loaded into an e-graph.
pub struct Imported {
    /// The e-graph.
    pub egraph: EGraph,
    /// The e-class of each graph output, in order.
    pub roots: Vec<Id>,
    /// A readable name per imported e-class (the original value name), used on export.
    pub names: HashMap<Id, String>,
}

/// Load `g` into a fresh e-graph. Each value's recorded type refines the
/// inferred one, so nothing the frontend knew is lost.
pub fn import(g: &Graph) -> Result<Imported, IrError> {
    let inputs = g
        .inputs
        .iter()
        .map(|&o| (g.value_name(o).to_string(), g.value_type(o).clone()))
        .collect();
    let mut eg = EGraph::new(Analysis::new(inputs));
    let input_index: HashMap<OutletId, usize> =
        g.inputs.iter().enumerate().map(|(i, &o)| (o, i)).collect();
    let mut ids: HashMap<OutletId, Id> = HashMap::new();
    let mut names = HashMap::new();
    let absent = eg.add(ENode::Absent);
    for (nonce, id) in g.topo_order()?.into_iter().enumerate() {
        let n = g.node(id);
        let class = match &n.op {
            Op::Input => {
                let i = input_index.get(&OutletId::new(id, 0)).ok_or_else(|| {
                    IrError::Invalid(format!("Input node `{}` is not a graph input", n.label()))
                })?;
                eg.add(ENode::Input(*i))
            }
            Op::Const(t) => {
                let k = eg.analysis.add_tensor(t.clone());
                eg.add(ENode::Const(k))
            }
            Op::Call(call) => {
                let mut children = Vec::with_capacity(n.inputs().len());
                for i in n.inputs() {
                    children.push(match i {
                        None => absent,
                        Some(o) => *ids.get(o).ok_or_else(|| {
                            IrError::Invalid(format!("node `{}` reads an unknown value", n.label()))
                        })?,
                    });
                }
                let mut call = call.clone();
                if nondeterministic(&call.op_type) {
                    call.attrs.set(NONCE_ATTR, Attr::Int(nonce as i64));
                }
                let op = OpId::intern(call, n.outputs.len());
                eg.add(ENode::Op(op, children))
            }
        };
        let single = n.outputs.len() == 1;
        for (slot, info) in n.outputs.iter().enumerate() {
            let c = if single {
                class
            } else {
                eg.add(ENode::Get(slot, [class]))
            };
            let data = &mut eg[c].data;
            if let Some(ty) = data.types.first_mut() {
                super::facts::refine(ty, &info.ty);
            }
            ids.insert(OutletId::new(id, slot), c);
            if !info.name.is_empty() {
                names.entry(c).or_insert_with(|| info.name.clone());
            }
        }
    }
    eg.rebuild();
    let roots = g
        .outputs
        .iter()
        .map(|o| {
            ids.get(o)
                .map(|&c| eg.find(c))
                .ok_or_else(|| IrError::Invalid(format!("graph output {o:?} does not exist")))
        })
        .collect::<Result<_, _>>()?;
    let names = names.into_iter().map(|(c, n)| (eg.find(c), n)).collect();
    Ok(Imported {
        egraph: eg,
        roots,
        names,
    })
}
