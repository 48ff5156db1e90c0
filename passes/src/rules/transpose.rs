//! Transpose sinking: elementwise ops commute with transposes, so a transpose
//! can move past them, towards its consumers, until it meets another transpose
//! and cancels (`transpose-transpose` in the algebraic set).

use super::algebra::{perm, transpose_call};
use super::rhs::{FnRule, Rhs};
use super::util::*;
use crate::egraph::{EGraph, OpKey, Rewrite};
use egg::Id;

/// Unary ops that act on each element independently.
pub const ELEMENTWISE_UNARY: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "Erf",
    "Cast",
    "Gelu",
    "Swish",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Elu",
    "Selu",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Not",
    "Sin",
    "Cos",
    "Mish",
];

/// Binary elementwise ops (with broadcasting).
pub const ELEMENTWISE_BINARY: &[&str] = &["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"];

/// `(x, perm)` for each `Transpose{perm}(x)` in class `id`.
fn transposes(eg: &EGraph, id: Id) -> Vec<(Id, Vec<usize>)> {
    ops_in(eg, id, "Transpose")
        .filter_map(|(k, c)| {
            let x = *c.first()?;
            Some((x, perm(eg, &k, x)?))
        })
        .collect()
}

/// `U(Transpose(x))` → `Transpose(U(x))`.
fn sink_unary(eg: &EGraph, _class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let [a] = ch else { return None };
    let (x, p) = transposes(eg, *a).into_iter().next()?;
    let mut b = Rhs::new();
    let xi = b.class(x);
    let u = b.op(key.call.clone(), &[xi]);
    b.op(transpose_call(&p), &[u]);
    Some(b)
}

/// `B(Transpose_p(a), Transpose_p(c))` → `Transpose_p(B(a, c))`, and
/// `B(Transpose_p(a), s)` → `Transpose_p(B(a, s))` for a single-element `s`
/// (either operand order).
fn sink_binary(eg: &EGraph, _class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let [l, r] = ch else { return None };
    let single = |id: Id| {
        facts(eg, id)
            .known_shape()
            .is_some_and(|s| s.iter().product::<usize>() == 1)
    };
    for (ta, pa) in transposes(eg, *l) {
        let build = |rhs_operand: Id| {
            let mut b = Rhs::new();
            let (ai, ci) = (b.class(ta), b.class(rhs_operand));
            let u = b.op(key.call.clone(), &[ai, ci]);
            b.op(transpose_call(&pa), &[u]);
            b
        };
        if let Some((tc, _)) = transposes(eg, *r).into_iter().find(|(_, pc)| *pc == pa) {
            return Some(build(tc));
        }
        if single(*r) && rank(eg, *r).is_some_and(|k| k <= 1) {
            return Some(build(*r));
        }
    }
    if single(*l) && rank(eg, *l).is_some_and(|k| k <= 1) {
        let (tc, pc) = transposes(eg, *r).into_iter().next()?;
        let mut b = Rhs::new();
        let (li, ci) = (b.class(*l), b.class(tc));
        let u = b.op(key.call.clone(), &[li, ci]);
        b.op(transpose_call(&pc), &[u]);
        return Some(b);
    }
    None
}

/// The transpose-sinking rule set.
pub fn rules() -> Vec<Rewrite> {
    vec![
        FnRule::rewrite("transpose-sink-unary", ELEMENTWISE_UNARY, sink_unary),
        FnRule::rewrite("transpose-sink-binary", ELEMENTWISE_BINARY, sink_binary),
    ]
}
