//! Algebraic simplification: identities, zeros and ones, double transposes,
//! reshape chains, exact cast chains, squeeze/unsqueeze cancelling.
//!
//! Every rule here is exact: it holds bit for bit (up to the sign of a zero in
//! `x + 0`, the usual compiler convention).

use super::rhs::{FnRule, Rhs};
use super::util::*;
use crate::egraph::{EGraph, OpKey, Rewrite};
use egg::Id;
use egret_ir::{Attr, DType, OpCall, Tensor};

fn neutral(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let is = |c: Id, v: f64| facts(eg, c).splat() == Some(v);
    let x = match (key.op_type(), ch) {
        ("Add", _) => both_orders(ch).into_iter().find(|&(_, c)| is(c, 0.0))?.0,
        ("Mul", _) => both_orders(ch).into_iter().find(|&(_, c)| is(c, 1.0))?.0,
        ("Sub", [x, c]) if is(*c, 0.0) => *x,
        ("Div" | "Pow", [x, c]) if is(*c, 1.0) => *x,
        _ => return None,
    };
    // Broadcasting against the constant must not change x's shape or type.
    same_type(eg, x, class).then(|| Rhs::existing(x))
}

fn identity(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let x = *ch.first()?;
    let training = ch
        .get(2)
        .is_some_and(|&t| facts(eg, t).splat() != Some(0.0) && !is_absent(eg, t));
    let ok = match key.op_type() {
        "Identity" => true,
        "Dropout" => key.outputs == 1 && !training,
        _ => false,
    };
    (ok && same_type(eg, x, class)).then(|| Rhs::existing(x))
}

/// Ops that are the identity when their output type equals their input type.
fn same_shape_noop(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let x = *ch.first()?;
    if key.is("Slice") {
        let steps_ok = match ch.get(4) {
            None => true,
            Some(&s) => {
                is_absent(eg, s) || crate::egraph::known_ints(eg, s)?.iter().all(|&v| v > 0)
            }
        };
        if !steps_ok {
            return None;
        }
    }
    (same_type(eg, x, class) && facts(eg, x).dims().is_some()).then(|| Rhs::existing(x))
}

/// A Transpose's permutation (default: reversed axes).
pub fn perm(eg: &EGraph, key: &OpKey, x: Id) -> Option<Vec<usize>> {
    let r = rank(eg, x)?;
    match ints_attr(key, "perm") {
        Some(p) => {
            let p: Vec<usize> = p
                .iter()
                .map(|&v| usize::try_from(v).ok())
                .collect::<Option<_>>()?;
            let mut seen = vec![false; r];
            for &i in &p {
                *seen.get_mut(i)? = true;
            }
            (p.len() == r && seen.iter().all(|&s| s)).then_some(p)
        }
        None => Some((0..r).rev().collect()),
    }
}

/// `Transpose{perm}` as an op call.
pub fn transpose_call(p: &[usize]) -> OpCall {
    OpCall::new("Transpose").with("perm", Attr::Ints(p.iter().map(|&v| v as i64).collect()))
}

fn transpose(eg: &EGraph, _class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let a = *ch.first()?;
    let p = perm(eg, key, a)?;
    if p.iter().enumerate().all(|(i, &v)| i == v) {
        return Some(Rhs::existing(a));
    }
    let (inner, ich) = find_op(eg, a, "Transpose")?;
    let x = *ich.first()?;
    let q = perm(eg, &inner, x)?;
    // out[i] = a[p[i]] = x[q[p[i]]]
    let r: Vec<usize> = p
        .iter()
        .map(|&i| q.get(i).copied())
        .collect::<Option<_>>()?;
    if r.iter().enumerate().all(|(i, &v)| i == v) {
        return Some(Rhs::existing(x));
    }
    let mut b = Rhs::new();
    let xi = b.class(x);
    b.op(transpose_call(&r), &[xi]);
    Some(b)
}

const RESHAPE_LIKE: &[&str] = &["Reshape", "Squeeze", "Unsqueeze", "Flatten"];

/// A chain of two reshape-like ops is one Reshape of the innermost input.
fn reshape_chain(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let a = *ch.first()?;
    let x = RESHAPE_LIKE
        .iter()
        .find_map(|op| find_op(eg, a, op))
        .and_then(|(_, ich)| ich.first().copied())?;
    if same_type(eg, x, class) {
        return Some(Rhs::existing(x));
    }
    let target: Vec<i64> = if let Some(shape) = facts(eg, class).known_shape() {
        shape
            .iter()
            .map(|&d| i64::try_from(d).ok())
            .collect::<Option<_>>()?
    } else if key.is("Reshape") && int_attr(key, "allowzero", 0)? == 0 {
        // A target without `0` (copy) entries does not depend on the input's shape.
        let s = crate::egraph::known_ints(eg, *ch.get(1)?)?;
        if s.contains(&0) {
            return None;
        }
        s
    } else {
        return None;
    };
    let k = eg
        .analysis
        .add_tensor(Tensor::from_vec(vec![target.len()], target).ok()?);
    let mut b = Rhs::new();
    let xi = b.class(x);
    let s = b.constant(k);
    b.op(OpCall::new("Reshape"), &[xi, s]);
    Some(b)
}

/// True if every value of `from` is exactly representable in `to`.
pub fn lossless(from: DType, to: DType) -> bool {
    use DType::*;
    let int_bits = |d: DType| -> Option<(u32, bool)> {
        Some(match d {
            I8 => (8, true),
            I16 => (16, true),
            I32 => (32, true),
            I64 => (64, true),
            U8 => (8, false),
            U16 => (16, false),
            U32 => (32, false),
            U64 => (64, false),
            Bool => (1, false),
            _ => return None,
        })
    };
    // Significand bits of float types (an int of ≤ that many bits is exact).
    let mant = |d: DType| -> Option<u32> {
        Some(match d {
            F16 => 11,
            BF16 => 8,
            F32 => 24,
            F64 => 53,
            _ => return None,
        })
    };
    if from == to {
        return true;
    }
    match (int_bits(from), int_bits(to), mant(from), mant(to)) {
        (Some((fb, fs)), Some((tb, ts)), _, _) => {
            if fb == 1 {
                true
            } else if fs == ts {
                tb >= fb
            } else {
                !fs && ts && tb > fb
            }
        }
        (Some((fb, fs)), None, _, Some(m)) => fb - u32::from(fs) <= m,
        (None, None, Some(_), Some(_)) => {
            matches!(
                (from, to),
                (F16, F32) | (F16, F64) | (BF16, F32) | (BF16, F64) | (F32, F64)
            )
        }
        _ => false,
    }
}

fn cast_chain(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let a = *ch.first()?;
    let (_, ich) = find_op(eg, a, "Cast")?;
    let x = *ich.first()?;
    let (from, mid) = (facts(eg, x).dtype()?, facts(eg, a).dtype()?);
    if !lossless(from, mid) {
        return None;
    }
    if same_type(eg, x, class) {
        return Some(Rhs::existing(x));
    }
    let mut b = Rhs::new();
    let xi = b.class(x);
    b.op(key.call.clone(), &[xi]);
    Some(b)
}

fn involution(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let (_, ich) = find_op(eg, *ch.first()?, key.op_type())?;
    let x = *ich.first()?;
    same_type(eg, x, class).then(|| Rhs::existing(x))
}

fn squeeze_unsqueeze(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let other = if key.is("Squeeze") {
        "Unsqueeze"
    } else {
        "Squeeze"
    };
    let (_, ich) = find_op(eg, *ch.first()?, other)?;
    let x = *ich.first()?;
    same_type(eg, x, class).then(|| Rhs::existing(x))
}

/// The algebraic rule set.
pub fn rules() -> Vec<Rewrite> {
    vec![
        FnRule::rewrite(
            "neutral-element",
            &["Add", "Sub", "Mul", "Div", "Pow"],
            neutral,
        ),
        FnRule::rewrite("identity", &["Identity", "Dropout"], identity),
        FnRule::rewrite(
            "same-shape-noop",
            &[
                "Reshape", "Expand", "Squeeze", "Flatten", "Tile", "Cast", "Slice",
            ],
            same_shape_noop,
        ),
        FnRule::rewrite("transpose-transpose", &["Transpose"], transpose),
        FnRule::rewrite("reshape-chain", RESHAPE_LIKE, reshape_chain),
        FnRule::rewrite("cast-chain", &["Cast"], cast_chain),
        FnRule::rewrite("involution", &["Neg", "Not"], involution),
        FnRule::rewrite(
            "squeeze-unsqueeze",
            &["Squeeze", "Unsqueeze"],
            squeeze_unsqueeze,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::lossless;
    use egret_ir::DType::*;

    #[test]
    fn lossless_casts() {
        assert!(lossless(F32, F64) && lossless(F16, F32) && lossless(I32, I64));
        assert!(lossless(U8, I16) && lossless(I16, F32) && lossless(Bool, I8));
        assert!(!lossless(F64, F32) && !lossless(I64, I32) && !lossless(I8, U8));
        assert!(!lossless(I32, F32) && !lossless(U8, I8) && !lossless(F32, I32));
        assert!(lossless(I32, F64) && !lossless(I64, F64) && !lossless(F16, BF16));
    }
}
