//! The e-graph analysis: types, known values and side tables.
//!
//! [`Analysis`] owns the side tables the language's leaves index into: graph
//! inputs (name and type) and constant tensors. Tensors are `Arc`-shared, so the
//! table holds the same storage as the source graph; nothing is copied. Small
//! constants are deduplicated by content so hash-consing can merge them.
//!
//! The per-class data is [`Facts`]: value types from egret's own inference
//! rules (so the e-graph and the verifier agree), a compile-time value when one
//! is known, and symbolic integer elements for shape arithmetic. `modify` adds a
//! constant leaf to every class whose value became known (constant folding).

use super::facts::{Facts, SymInt};
use super::fold;
use super::lang::ENode;
use super::op::{OpId, OpKey};
use egg::{DidMerge, Id};
use egret_ir::infer::{infer_call, InputFact};
use egret_ir::{DType, Tensor, TensorType, ValueType};
use std::collections::HashMap;
use std::sync::Mutex;

/// The e-graph type egret uses.
pub type EGraph = egg::EGraph<ENode, Analysis>;
/// A rewrite rule over egret's language.
pub type Rewrite = egg::Rewrite<ENode, Analysis>;

/// The constant table: tensors by index, deduplicated.
#[derive(Clone, Debug, Default)]
struct Tensors {
    list: Vec<Tensor>,
    small: HashMap<(DType, Vec<usize>, Vec<u8>), usize>,
    large: HashMap<(usize, usize, DType, Vec<usize>), usize>,
    derived: HashMap<String, usize>,
}

/// Side tables: graph inputs and constants.
///
/// The constant table sits behind a lock so rules, which only see `&EGraph`
/// while searching, can add the tensors their right-hand sides need (a folded
/// BatchNorm's new weights). Derived tensors are cached by a key naming the
/// transform and its sources, so a rule firing again reuses them.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Graph inputs by index: name and type.
    pub inputs: Vec<(String, ValueType)>,
    tensors: Mutex<Tensors>,
}

impl Clone for Analysis {
    fn clone(&self) -> Analysis {
        Analysis {
            inputs: self.inputs.clone(),
            tensors: Mutex::new(self.table().clone()),
        }
    }
}

/// Tensors up to this many bytes are deduplicated by content.
const DEDUP_BYTES: usize = 4096;

impl Analysis {
    /// An analysis for a graph with these inputs.
    pub fn new(inputs: Vec<(String, ValueType)>) -> Analysis {
        Analysis {
            inputs,
            tensors: Mutex::default(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Tensors> {
        self.tensors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a tensor to the constant table (or find an identical one) and return its index.
    pub fn add_tensor(&self, t: Tensor) -> usize {
        let mut tab = self.table();
        let n = tab.list.len();
        if t.dtype() == DType::String {
            tab.list.push(t);
            return n;
        }
        let bytes = t.bytes();
        let slot = if bytes.len() <= DEDUP_BYTES {
            *tab.small
                .entry((t.dtype(), t.shape().to_vec(), bytes.to_vec()))
                .or_insert(n)
        } else {
            let key = (
                bytes.as_ptr() as usize,
                bytes.len(),
                t.dtype(),
                t.shape().to_vec(),
            );
            *tab.large.entry(key).or_insert(n)
        };
        if slot == n {
            tab.list.push(t);
        }
        slot
    }

    /// The index of a tensor derived by a transform, computing it on first use.
    /// `key` must name the transform and its source constants.
    pub fn derived(&self, key: String, f: impl FnOnce() -> Option<Tensor>) -> Option<usize> {
        if let Some(&i) = self.table().derived.get(&key) {
            return Some(i);
        }
        let i = self.add_tensor(f()?);
        self.table().derived.insert(key, i);
        Some(i)
    }

    /// The constant with this index (a cheap shared handle).
    pub fn tensor(&self, i: usize) -> Option<Tensor> {
        self.table().list.get(i).cloned()
    }

    /// Number of constants in the table.
    pub fn tensor_count(&self) -> usize {
        self.table().list.len()
    }
}

fn const_facts(t: &Tensor) -> Facts {
    Facts {
        valid: true,
        tuple: false,
        types: vec![ValueType::Tensor(TensorType::known(t.dtype(), t.shape()))],
        value: Some(t.clone()),
        ints: fold::const_ints(t),
    }
}

/// The facts of an op's children, `None` for absent inputs; `None` overall if a
/// child is invalid or a tuple (a tuple is read only through `get.N`).
fn child_facts<'a>(eg: &'a EGraph, children: &[Id]) -> Option<Vec<Option<&'a Facts>>> {
    children
        .iter()
        .map(|&c| {
            let f = &eg[c].data;
            if f.types.is_empty() && f.valid {
                Some(None)
            } else {
                f.ty().map(|_| Some(f))
            }
        })
        .collect()
}

fn infer(key: &OpKey, ins: &[Option<&Facts>]) -> Option<Vec<ValueType>> {
    let facts: Vec<Option<InputFact<'_>>> = ins
        .iter()
        .map(|f| {
            f.and_then(|f| {
                Some(InputFact {
                    ty: f.ty()?,
                    value: f.value.as_ref(),
                })
            })
        })
        .collect();
    let mut types = infer_call("egraph", &key.call, &facts, key.outputs).ok()?;
    types.truncate(key.outputs);
    Some(types)
}

/// The output types egret's inference gives an op e-node, `None` if it is ill-typed.
pub fn node_types(eg: &EGraph, op: OpId, children: &[Id]) -> Option<Vec<ValueType>> {
    infer(&op.key(), &child_facts(eg, children)?)
}

/// Infer the facts of an op node from its children's facts.
fn op_facts(eg: &EGraph, op: OpId, children: &[Id]) -> Facts {
    let key = op.key();
    let Some(ins) = child_facts(eg, children) else {
        return Facts::invalid();
    };
    let Some(types) = infer(&key, &ins) else {
        return Facts::invalid();
    };
    let tuple = key.outputs != 1;
    let (mut value, mut ints) = (None, None);
    if let (false, Some(out)) = (tuple, types.first()) {
        ints = fold::sym_ints(&key, &ins, out);
        value = ints.as_deref().and_then(|v| fold::ints_value(v, out));
        let all_const = ins.iter().all(|f| f.is_none_or(|f| f.value.is_some()));
        if value.is_none() && all_const {
            let vals: Vec<Option<&Tensor>> = ins
                .iter()
                .map(|f| f.and_then(|f| f.value.as_ref()))
                .collect();
            value = fold::eval(&key, &vals, out);
            if let Some(v) = &value {
                ints = fold::const_ints(v);
            }
        }
    }
    Facts {
        valid: true,
        tuple,
        types,
        value,
        ints,
    }
}

impl egg::Analysis<ENode> for Analysis {
    type Data = Facts;

    fn make(eg: &mut EGraph, node: &ENode, _id: Id) -> Facts {
        match node {
            ENode::Absent => Facts {
                valid: true,
                tuple: false,
                types: vec![],
                value: None,
                ints: None,
            },
            ENode::Input(i) => match eg.analysis.inputs.get(*i) {
                Some((_, ty)) => Facts::of_type(ty.clone()),
                None => Facts::invalid(),
            },
            ENode::Const(i) => match eg.analysis.tensor(*i) {
                Some(t) => const_facts(&t),
                None => Facts::invalid(),
            },
            ENode::Get(i, [c]) => {
                let f = &eg[*c].data;
                match (f.tuple && f.valid, f.types.get(*i)) {
                    (true, Some(t)) => Facts::of_type(t.clone()),
                    _ => Facts::invalid(),
                }
            }
            ENode::Op(op, children) => op_facts(eg, *op, children),
        }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        let mut b_copy = b.clone();
        let a_changed = a.absorb(b);
        let b_changed = b_copy.absorb(a.clone());
        DidMerge(a_changed, b_changed)
    }

    fn modify(eg: &mut EGraph, id: Id) {
        let Some(t) = eg[id].data.value.clone() else {
            return;
        };
        if t.numel() > fold::FOLD_MAX_ELEMS
            || eg[id].nodes.iter().any(|n| matches!(n, ENode::Const(_)))
        {
            return;
        }
        let k = eg.analysis.add_tensor(t);
        let c = eg.add(ENode::Const(k));
        eg.union(id, c);
    }
}

/// True if the class's value is a known constant whose every element equals `x`.
pub fn is_splat(eg: &EGraph, id: Id, x: f64) -> bool {
    eg[id].data.splat() == Some(x)
}

/// The known integer elements of a class (all elements must be known).
pub fn known_ints(eg: &EGraph, id: Id) -> Option<Vec<i64>> {
    eg[id]
        .data
        .ints
        .as_ref()?
        .iter()
        .map(|x| match x {
            SymInt::Int(i) => Some(*i),
            SymInt::Sym(_) => None,
        })
        .collect()
}
