//! Extraction: pick one e-node per e-class, minimising the [`CostModel`].
//!
//! The default extractor is greedy bottom-up: a class costs its cheapest
//! well-typed node plus its children's costs, iterated to a fixpoint (so cycles
//! are handled: a node is only chosen once all its children have a cost). The
//! chosen nodes are then materialised as a DAG, each class once, and the
//! report gives that DAG's cost, the figure that models run time.

pub mod cost;

pub use cost::{calibrate, CostModel};

use crate::egraph::{node_types, EGraph, ENode};
use egg::Id;
use egret_ir::verify::compatible;
use std::collections::{HashMap, HashSet};

/// A node cost for extraction (infinite forbids the node).
pub type NodeCost<'a> = &'a dyn Fn(Id, &ENode) -> f64;

/// The chosen e-node of every extractable class.
pub struct Extraction {
    /// Class (canonical id) → chosen node and its tree cost.
    pub choice: HashMap<Id, (f64, ENode)>,
}

/// True if `node` is well typed where it sits: its inferred output types agree
/// with the class's types. Rules check what they build, but user patterns may
/// not; ill-typed alternatives are simply never chosen.
fn well_typed(eg: &EGraph, class: Id, node: &ENode) -> bool {
    match node {
        ENode::Op(op, ch) => {
            let Some(types) = node_types(eg, *op, ch) else {
                return false;
            };
            let have = &eg[class].data.types;
            types.len() == have.len() && types.iter().zip(have).all(|(a, b)| compatible(a, b))
        }
        ENode::Get(_, [c]) => eg[*c].data.tuple,
        _ => true,
    }
}

impl Extraction {
    /// Greedy bottom-up extraction under `model`.
    pub fn greedy(eg: &EGraph, model: &CostModel) -> Extraction {
        Extraction::greedy_by(eg, &|id, n| model.node_cost(eg, id, n))
    }

    /// Greedy bottom-up extraction with any non-negative node cost.
    pub fn greedy_by(eg: &EGraph, node_cost: &dyn Fn(Id, &ENode) -> f64) -> Extraction {
        let mut ids: Vec<Id> = eg.classes().map(|c| c.id).collect();
        ids.sort();
        let mut ok: HashSet<(Id, usize)> = HashSet::new();
        let mut own: HashMap<(Id, usize), f64> = HashMap::new();
        for &id in &ids {
            for (k, n) in eg[id].nodes.iter().enumerate() {
                if eg[id].data.valid && well_typed(eg, id, n) {
                    ok.insert((id, k));
                    own.insert((id, k), node_cost(id, n));
                }
            }
        }
        let mut choice: HashMap<Id, (f64, ENode)> = HashMap::new();
        loop {
            let mut changed = false;
            for &id in &ids {
                for (k, n) in eg[id].nodes.iter().enumerate() {
                    let Some(&c0) = own.get(&(id, k)) else {
                        continue;
                    };
                    let mut total = c0;
                    let mut ready = true;
                    for &c in egg::Language::children(n) {
                        match choice.get(&eg.find(c)) {
                            Some((cc, _)) => total += cc,
                            None => {
                                ready = false;
                                break;
                            }
                        }
                    }
                    if !ready {
                        continue;
                    }
                    let better = choice.get(&id).is_none_or(|(best, _)| total < *best);
                    if better {
                        choice.insert(id, (total, n.clone()));
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        Extraction { choice }
    }

    /// The chosen node of a class.
    pub fn node(&self, eg: &EGraph, id: Id) -> Option<ENode> {
        self.choice.get(&eg.find(id)).map(|(_, n)| n.clone())
    }

    /// Cost of the DAG reachable from `roots`: every chosen node counted once.
    /// `None` if a root has no extractable node.
    pub fn dag_cost(&self, eg: &EGraph, roots: &[Id], model: &CostModel) -> Option<f64> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
        let mut total = 0.0;
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let (_, n) = self.choice.get(&id)?;
            total += model.node_cost(eg, id, n);
            stack.extend(egg::Language::children(n).iter().map(|&c| eg.find(c)));
        }
        Some(total)
    }
}
