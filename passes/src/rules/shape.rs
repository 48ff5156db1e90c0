//! Shape arithmetic.
//!
//! Constant folding itself happens in the analysis: a class whose value is
//! known (a `Shape` of a static shape, `Gather`/`Concat`/... of known values)
//! gets a constant leaf, so `Shape → Gather → Unsqueeze → Concat → Reshape`
//! chains fold away when the shapes are known. When they are not, the analysis
//! still tracks each element symbolically, and [`reshape_target`] rewrites a
//! computed Reshape target into a constant using `0` ("copy this input dim")
//! and `-1` ("the rest"), which removes the chain while staying symbolic.

use super::rhs::{FnRule, Rhs};
use super::util::*;
use crate::egraph::{EGraph, OpKey, Rewrite, SymInt};
use egg::Id;
use egret_ir::{Dim, Tensor};

fn reshape_target(eg: &EGraph, _class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let [x, s] = ch else { return None };
    let sf = facts(eg, *s);
    if sf.value.is_some() || int_attr(key, "allowzero", 0)? != 0 {
        return None;
    }
    let elems = sf.ints.as_ref()?;
    let dims = facts(eg, *x).dims()?;
    let mut out = Vec::with_capacity(elems.len());
    let mut unresolved = 0;
    for (i, e) in elems.iter().enumerate() {
        out.push(match e {
            SymInt::Int(v) => *v,
            SymInt::Sym(name) if dims.get(i) == Some(&Dim::Sym(name.clone())) => 0,
            SymInt::Sym(_) => {
                unresolved += 1;
                -1
            }
        });
    }
    let minus = out.iter().filter(|&&v| v == -1).count();
    if unresolved > 1 || minus > 1 {
        return None;
    }
    let k = eg
        .analysis
        .add_tensor(Tensor::from_vec(vec![out.len()], out).ok()?);
    let mut b = Rhs::new();
    let xi = b.class(*x);
    let si = b.constant(k);
    b.op(key.call.clone(), &[xi, si]);
    Some(b)
}

/// The shape rule set (folding is done by the analysis; see the module docs).
pub fn rules() -> Vec<Rewrite> {
    vec![FnRule::rewrite(
        "reshape-target",
        &["Reshape"],
        reshape_target,
    )]
}
