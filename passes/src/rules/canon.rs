//! Canonicalisation: commutativity, so every other rule can match one operand
//! order and still see both.

use super::rhs::{FnRule, Rhs};
use super::util::*;
use crate::egraph::{EGraph, OpKey, Rewrite};
use egg::Id;

fn commute(eg: &EGraph, _class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let [a, b] = ch else { return None };
    if a == b || facts(eg, *a).dtype()? != facts(eg, *b).dtype()? {
        return None;
    }
    let mut r = Rhs::new();
    let (ai, bi) = (r.class(*b), r.class(*a));
    r.op(key.call.clone(), &[ai, bi]);
    Some(r)
}

/// Binary ops whose operands commute (with broadcasting, which is symmetric).
pub const COMMUTATIVE: &[&str] = &["Add", "Mul", "And", "Or", "Xor", "Equal"];

/// The canonicalisation rule set.
pub fn rules() -> Vec<Rewrite> {
    vec![FnRule::rewrite("commute", COMMUTATIVE, commute)]
}
