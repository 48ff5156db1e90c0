//! Fusion recognition: primitives rebuilt into the fused ops egret (and ONNX)
//! define. MatMul+Add → Gemm, GELU (erf form), SiLU → Swish, Softmax,
//! LayerNormalization, RMSNormalization, BatchNormalization folded into Conv,
//! and block weights (`DequantizeBlocks`) read by their consumer directly.
//!
//! The matchers look through e-classes, so after canonicalisation an operand
//! order or an equivalent spelling found by another rule still matches.
//! Fused kernels round differently from the primitive chains they replace;
//! the differences stay within float rounding (checked by the soundness tests).

use super::rhs::{FnRule, Rhs};
use super::util::*;
use crate::egraph::{EGraph, ENode, OpKey, Rewrite};
use egg::Id;
use egret_ir::{Attr, DType, OpCall, Tensor};

const SQRT2: f64 = std::f64::consts::SQRT_2;

fn is_float(eg: &EGraph, id: Id) -> bool {
    facts(eg, id)
        .dtype()
        .is_some_and(|d| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16))
}

/// `x` if class `id` holds `Mul(x, c)` (either order) with `c ≈ v`.
fn mul_by(eg: &EGraph, id: Id, v: f64) -> Vec<Id> {
    ops_in(eg, id, "Mul")
        .flat_map(|(_, ch)| both_orders(ch))
        .filter(|&(_, c)| splat_near(eg, c, v, 1e-6))
        .map(|(x, _)| x)
        .collect()
}

/// `x` if class `id` holds `1 + erf(x / √2)` (any operand order, or `x · (1/√2)`).
fn erf_term(eg: &EGraph, id: Id) -> Option<Id> {
    for (_, ch) in ops_in(eg, id, "Add") {
        for (e, one) in both_orders(ch) {
            if !splat_near(eg, one, 1.0, 1e-6) {
                continue;
            }
            for (_, ech) in ops_in(eg, e, "Erf") {
                let d = *ech.first()?;
                for (_, dch) in ops_in(eg, d, "Div") {
                    if let [x, c] = dch {
                        if splat_near(eg, *c, SQRT2, 1e-5) {
                            return Some(*x);
                        }
                    }
                }
                if let Some(&x) = mul_by(eg, d, 1.0 / SQRT2).first() {
                    return Some(x);
                }
            }
        }
    }
    None
}

fn unary(x: Id, call: OpCall) -> Rhs {
    let mut b = Rhs::new();
    let xi = b.class(x);
    b.op(call, &[xi]);
    b
}

fn gelu(eg: &EGraph, class: Id, _key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    for (p, q) in both_orders(ch) {
        let mut found = None;
        // 0.5x · (1 + erf(x/√2))
        if let Some(x) = erf_term(eg, q) {
            if mul_by(eg, p, 0.5).contains(&x) {
                found = Some(x);
            }
        }
        // (x · (1 + erf(x/√2))) · 0.5
        if found.is_none() && splat_near(eg, q, 0.5, 1e-6) {
            found = ops_in(eg, p, "Mul")
                .flat_map(|(_, c)| both_orders(c))
                .find(|&(x, e)| erf_term(eg, e) == Some(x))
                .map(|(x, _)| x);
        }
        // x · ((1 + erf(x/√2)) · 0.5)
        if found.is_none() {
            found = ops_in(eg, q, "Mul")
                .flat_map(|(_, c)| both_orders(c))
                .find(|&(e, h)| splat_near(eg, h, 0.5, 1e-6) && erf_term(eg, e) == Some(p))
                .map(|_| p);
        }
        if let Some(x) = found.filter(|&x| is_float(eg, x) && same_type(eg, x, class)) {
            return Some(unary(x, OpCall::new("Gelu")));
        }
    }
    None
}

fn silu(eg: &EGraph, class: Id, _key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    both_orders(ch)
        .into_iter()
        .find(|&(x, s)| ops_in(eg, s, "Sigmoid").any(|(_, c)| c.first() == Some(&x)))
        .filter(|&(x, _)| is_float(eg, x) && same_type(eg, x, class))
        .map(|(x, _)| unary(x, OpCall::new("Swish")))
}

/// The single reduced axis of a keepdims `op` node in class `id` reading `x`.
fn reduce_of(eg: &EGraph, id: Id, op: &str, x: Id) -> Option<usize> {
    ops_in(eg, id, op).find_map(|(k, c)| {
        if c.first() != Some(&x) || int_attr(&k, "keepdims", 1)? != 1 {
            return None;
        }
        match reduce_axes(eg, &k, c)?[..] {
            [a] => Some(a),
            _ => None,
        }
    })
}

fn softmax(eg: &EGraph, class: Id, _key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let [e, s] = ch else { return None };
    for (_, ech) in ops_in(eg, *e, "Exp") {
        let d = *ech.first()?;
        let Some(axis) = reduce_of(eg, *s, "ReduceSum", *e) else {
            continue;
        };
        for (_, dch) in ops_in(eg, d, "Sub") {
            let [x, m] = dch else { continue };
            if reduce_of(eg, *m, "ReduceMax", *x) == Some(axis) && same_type(eg, *x, class) {
                let call = OpCall::new("Softmax").with("axis", Attr::Int(axis as i64));
                return Some(unary(*x, call));
            }
        }
    }
    None
}

/// `(mean-square class, eps)` if class `id` holds `sqrt(ms + eps)` (either order).
fn sqrt_plus_eps(eg: &EGraph, id: Id) -> Option<(Id, f64)> {
    ops_in(eg, id, "Sqrt").find_map(|(_, c)| {
        ops_in(eg, *c.first()?, "Add")
            .flat_map(|(_, a)| both_orders(a))
            .find_map(|(v, e)| {
                let eps = facts(eg, e).splat()?;
                (eps >= 0.0 && facts(eg, e).numel_guess(2) == 1).then_some((v, eps))
            })
    })
}

/// The trailing axes `[k, rank)` reduced by a keepdims ReduceMean of `x` in class `id`.
fn mean_over_trailing(eg: &EGraph, id: Id, x: Id) -> Option<usize> {
    let r = rank(eg, x)?;
    ops_in(eg, id, "ReduceMean").find_map(|(k, c)| {
        if c.first() != Some(&x) || int_attr(&k, "keepdims", 1)? != 1 {
            return None;
        }
        let axes = reduce_axes(eg, &k, c)?;
        let first = *axes.first()?;
        (axes == (first..r).collect::<Vec<_>>()).then_some(first)
    })
}

/// True if class `id` holds `d²` (as `Pow(d, 2)` or `Mul(d, d)`).
fn square_of(eg: &EGraph, id: Id, d: Id) -> bool {
    ops_in(eg, id, "Pow").any(|(_, c)| {
        c.first() == Some(&d) && c.get(1).is_some_and(|&e| splat_near(eg, e, 2.0, 0.0))
    }) || ops_in(eg, id, "Mul").any(|(_, c)| c == [d, d])
}

/// `(x, axis, eps)` if class `n` holds `(x - mean(x)) / sqrt(mean((x - mean(x))²) + eps)`.
fn layer_norm_core(eg: &EGraph, n: Id) -> Option<(Id, usize, f64)> {
    ops_in(eg, n, "Div").find_map(|(_, c)| {
        let [d, sd] = c else { return None };
        let (var, eps) = sqrt_plus_eps(eg, *sd)?;
        ops_in(eg, *d, "Sub").find_map(|(_, s)| {
            let [x, mu] = s else { return None };
            let axis = mean_over_trailing(eg, *mu, *x)?;
            let sq = ops_in(eg, var, "ReduceMean").find_map(|(_, m)| m.first().copied())?;
            (mean_over_trailing(eg, var, sq) == Some(axis) && square_of(eg, sq, *d))
                .then_some((*x, axis, eps))
        })
    })
}

/// `(x, axis, eps)` if class `n` holds `x / sqrt(mean(x²) + eps)` or `x · 1/sqrt(...)`.
fn rms_core(eg: &EGraph, n: Id) -> Option<(Id, usize, f64)> {
    let check = |x: Id, sd: Id| -> Option<(Id, usize, f64)> {
        let (ms, eps) = sqrt_plus_eps(eg, sd)?;
        let sq = ops_in(eg, ms, "ReduceMean").find_map(|(_, m)| m.first().copied())?;
        let axis = mean_over_trailing(eg, ms, sq)?;
        square_of(eg, sq, x).then_some((x, axis, eps))
    };
    let div = ops_in(eg, n, "Div").find_map(|(_, c)| match c {
        [x, sd] => check(*x, *sd),
        _ => None,
    });
    div.or_else(|| {
        ops_in(eg, n, "Mul")
            .flat_map(|(_, c)| both_orders(c))
            .find_map(|(x, r)| {
                ops_in(eg, r, "Reciprocal").find_map(|(_, rc)| check(x, *rc.first()?))
            })
    })
}

/// True if `p`'s dims equal the trailing dims of `x` from `axis` (after leading 1s).
fn affine_param(eg: &EGraph, p: Id, x: Id, axis: usize) -> bool {
    let (Some(pd), Some(xd)) = (facts(eg, p).dims(), facts(eg, x).dims()) else {
        return false;
    };
    let tail = xd.get(axis..).unwrap_or(&[]);
    let start = pd.len().saturating_sub(tail.len());
    pd[..start].iter().all(|d| d.known() == Some(1))
        && &pd[start..] == tail
        && pd.len() >= tail.len()
        && facts(eg, p).dtype() == facts(eg, x).dtype()
}

fn norm_call(op: &str, axis: usize, eps: f64) -> OpCall {
    OpCall::new(op)
        .with("axis", Attr::Int(axis as i64))
        .with("epsilon", Attr::Float(eps as f32))
}

fn layer_norm(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    // Mul(core, gamma) [+ beta]
    let scaled = |m: Id| -> Option<(Id, usize, f64, Id)> {
        ops_in(eg, m, "Mul")
            .flat_map(|(_, c)| both_orders(c))
            .find_map(|(n, g)| {
                let (x, axis, eps) = layer_norm_core(eg, n)?;
                affine_param(eg, g, x, axis).then_some((x, axis, eps, g))
            })
    };
    let (x, axis, eps, g, beta) = if key.is("Add") {
        both_orders(ch).into_iter().find_map(|(m, bt)| {
            let (x, axis, eps, g) = scaled(m)?;
            affine_param(eg, bt, x, axis).then_some((x, axis, eps, g, Some(bt)))
        })?
    } else {
        let (x, axis, eps, g) = scaled(class)?;
        (x, axis, eps, g, None)
    };
    if !is_float(eg, x) || !same_type(eg, x, class) {
        return None;
    }
    let mut b = Rhs::new();
    let mut ins = vec![b.class(x), b.class(g)];
    if let Some(bt) = beta {
        ins.push(b.class(bt));
    }
    b.op(norm_call("LayerNormalization", axis, eps), &ins);
    Some(b)
}

fn rms_norm(eg: &EGraph, class: Id, _key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let (x, axis, eps, g) = both_orders(ch).into_iter().find_map(|(n, g)| {
        let (x, axis, eps) = rms_core(eg, n)?;
        affine_param(eg, g, x, axis).then_some((x, axis, eps, g))
    })?;
    if !is_float(eg, x) || !same_type(eg, x, class) {
        return None;
    }
    let mut b = Rhs::new();
    let ins = [b.class(x), b.class(g)];
    b.op(norm_call("RMSNormalization", axis, eps), &ins);
    Some(b)
}

fn gemm(eg: &EGraph, class: Id, _key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    both_orders(ch).into_iter().find_map(|(m, bias)| {
        let (_, mm) = ops_in(eg, m, "MatMul").next()?;
        let [x, w] = mm else { return None };
        let ok = rank(eg, *x) == Some(2)
            && rank(eg, *w) == Some(2)
            && rank(eg, bias).is_some_and(|r| r <= 2)
            && matches!(facts(eg, *x).dtype(), Some(DType::F32 | DType::F64))
            && facts(eg, bias).dtype() == facts(eg, *x).dtype()
            && same_type(eg, m, class);
        if !ok {
            return None;
        }
        let mut b = Rhs::new();
        let ins = [b.class(*x), b.class(*w), b.class(bias)];
        b.op(OpCall::new("Gemm"), &ins);
        Some(b)
    })
}

/// The constant-table index of a class's constant leaf.
fn const_index(eg: &EGraph, id: Id) -> Option<usize> {
    eg[id].nodes.iter().find_map(|n| match n {
        ENode::Const(k) => Some(*k),
        _ => None,
    })
}

fn f32s(eg: &EGraph, id: Id) -> Option<Vec<f32>> {
    let t = facts(eg, id).value.as_ref()?;
    Some(t.as_slice::<f32>().ok()?.to_vec())
}

fn fold_bn(eg: &EGraph, class: Id, key: &OpKey, ch: &[Id]) -> Option<Rhs> {
    let [c, scale, bias, mean, var] = ch else {
        return None;
    };
    if key.outputs != 1 || int_attr(key, "training_mode", 0)? != 0 {
        return None;
    }
    let eps = f64::from(key.call.attrs.float_or("epsilon", 1e-5).ok()?);
    let (ck, cch) = ops_in(eg, *c, "Conv").next()?;
    let (x, w) = (*cch.first()?, *cch.get(1)?);
    let b0 = cch.get(2).copied().filter(|&b| !is_absent(eg, b));
    let wt = facts(eg, w).value.clone()?;
    let cout = *wt.shape().first()?;
    let params: Vec<Vec<f32>> = [*scale, *bias, *mean, *var]
        .iter()
        .map(|&p| f32s(eg, p))
        .collect::<Option<_>>()?;
    if params.iter().any(|p| p.len() != cout)
        || wt.dtype() != DType::F32
        || !same_type(eg, *c, class)
    {
        return None;
    }
    let b0v = match b0 {
        Some(b) => f32s(eg, b).filter(|v| v.len() == cout)?,
        None => vec![0.0; cout],
    };
    let s: Vec<f64> = (0..cout)
        .map(|o| f64::from(params[0][o]) / (f64::from(params[3][o]) + eps).sqrt())
        .collect();
    let ids = [w, *scale, *bias, *mean, *var].map(|i| const_index(eg, i));
    let tag = format!(
        "bnfold:{ids:?}:{:?}:{eps}",
        b0.and_then(|b| const_index(eg, b))
    );
    let wk = eg.analysis.derived(format!("{tag}:w"), || {
        let v = wt.as_slice::<f32>().ok()?;
        let per = v.len() / cout.max(1);
        let out: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| (f64::from(x) * s[i / per.max(1)]) as f32)
            .collect();
        Tensor::from_vec(wt.shape().to_vec(), out).ok()
    })?;
    let bk = eg.analysis.derived(format!("{tag}:b"), || {
        let out: Vec<f32> = (0..cout)
            .map(|o| {
                ((f64::from(b0v[o]) - f64::from(params[2][o])) * s[o] + f64::from(params[1][o]))
                    as f32
            })
            .collect();
        Tensor::from_vec(vec![cout], out).ok()
    })?;
    let mut b = Rhs::new();
    let ins = [b.class(x), b.constant(wk), b.constant(bk)];
    b.op(ck.call.clone(), &ins);
    Some(b)
}

/// The fusion rule set.
pub fn rules() -> Vec<Rewrite> {
    vec![
        FnRule::rewrite("matmul-add-gemm", &["Add"], gemm),
        FnRule::rewrite("gelu", &["Mul"], gelu),
        FnRule::rewrite("silu", &["Mul"], silu),
        FnRule::rewrite("softmax", &["Div"], softmax),
        FnRule::rewrite("layer-norm", &["Add", "Mul"], layer_norm),
        FnRule::rewrite("rms-norm", &["Mul"], rms_norm),
        FnRule::rewrite("batchnorm-into-conv", &["BatchNormalization"], fold_bn),
        crate::quantize::rules::fuse_blocks_rule(),
    ]
}
