//! Small queries rules share.

use crate::egraph::{EGraph, ENode, Facts, OpKey};
use egg::Id;
use egret_ir::Attr;
use std::sync::Arc;

/// The facts of a class.
pub fn facts(eg: &EGraph, id: Id) -> &Facts {
    &eg[id].data
}

/// Every op node of type `op_type` in class `id`, with its key and children.
pub fn ops_in<'a>(
    eg: &'a EGraph,
    id: Id,
    op_type: &'a str,
) -> impl Iterator<Item = (Arc<OpKey>, &'a [Id])> + 'a {
    eg[id].nodes.iter().filter_map(move |n| match n {
        ENode::Op(op, ch) => {
            let k = op.key();
            k.is(op_type).then_some((k, ch.as_slice()))
        }
        _ => None,
    })
}

/// The children of the first `op_type` node in class `id` with `n` inputs present
/// (absent trailing inputs allowed).
pub fn find_op(eg: &EGraph, id: Id, op_type: &str) -> Option<(Arc<OpKey>, Vec<Id>)> {
    ops_in(eg, id, op_type).next().map(|(k, c)| (k, c.to_vec()))
}

/// Both orders of a binary node's operands.
pub fn both_orders(ch: &[Id]) -> Vec<(Id, Id)> {
    match ch {
        [a, b] => vec![(*a, *b), (*b, *a)],
        _ => vec![],
    }
}

/// True if classes `a` and `b` certainly hold values of the same type.
pub fn same_type(eg: &EGraph, a: Id, b: Id) -> bool {
    match (facts(eg, a).ty(), facts(eg, b).ty()) {
        (Some(x), Some(y)) => crate::egraph::facts::same_type(x, y),
        _ => false,
    }
}

/// True if the class is a known constant whose elements all equal `x` (within `tol`).
pub fn splat_near(eg: &EGraph, id: Id, x: f64, tol: f64) -> bool {
    facts(eg, id)
        .splat()
        .is_some_and(|v| (v - x).abs() <= tol * x.abs().max(1.0))
}

/// True if the class is an absent optional input.
pub fn is_absent(eg: &EGraph, id: Id) -> bool {
    eg[id].nodes.iter().any(|n| matches!(n, ENode::Absent))
}

/// An int-list attribute.
pub fn ints_attr(key: &OpKey, name: &str) -> Option<Vec<i64>> {
    match key.call.attrs.get(name) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

/// Rank of a class's tensor value.
pub fn rank(eg: &EGraph, id: Id) -> Option<usize> {
    facts(eg, id).dims().map(|d| d.len())
}

/// Normalise axes against `rank` (negative counts from the end), sorted; `None` if out of range.
pub fn norm_axes(axes: &[i64], rank: usize) -> Option<Vec<usize>> {
    let r = i64::try_from(rank).ok()?;
    let mut v: Vec<usize> = axes
        .iter()
        .map(|&a| {
            let a = if a < 0 { a + r } else { a };
            (0..r).contains(&a).then_some(a as usize)
        })
        .collect::<Option<_>>()?;
    v.sort_unstable();
    Some(v)
}

/// The reduction axes of a `Reduce*` node (attribute or, from opset 13/18, input 1),
/// normalised against the input rank. `None` when not statically known or when
/// the node reduces everything by default.
pub fn reduce_axes(eg: &EGraph, key: &OpKey, ch: &[Id]) -> Option<Vec<usize>> {
    let r = rank(eg, *ch.first()?)?;
    let axes = match ints_attr(key, "axes") {
        Some(a) => a,
        None => crate::egraph::known_ints(eg, *ch.get(1)?)?,
    };
    if axes.is_empty() {
        return None;
    }
    norm_axes(&axes, r)
}

/// The int attribute `name` (default `d`).
pub fn int_attr(key: &OpKey, name: &str, d: i64) -> Option<i64> {
    key.call.attrs.int_or(name, d).ok()
}
