//! Kernels of the `ai.onnx.preview.training` optimizers: Adagrad, Adam and
//! Momentum (standard and Nesterov), one update step each.
//!
//! Inputs are the learning rate `R`, the step count `T`, then per optimized
//! tensor `X`, its gradient `G` and the optimizer states; every tensor is
//! updated elementwise in `f64` by the formulas of the ONNX specification.

use crate::bail;
use crate::error::Result;
use crate::kernels::input;
use crate::kernels::workprec::store;
use crate::ops::signal::scalar_i64;
use crate::registry::{KernelCtx, Registry};
use egret_ir::Value;

/// The operator domain of these kernels.
const DOMAIN: &str = "ai.onnx.preview.training";

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add_domain(DOMAIN, "Adagrad", adagrad);
    r.add_domain(DOMAIN, "Adam", adam);
    r.add_domain(DOMAIN, "Momentum", momentum);
}

/// One optimizer step over every `(X, G, states...)` group; `update` maps
/// `(x, g, states)` to the new `x` and updates `states` in place.
fn step(
    inputs: &[Option<Value>],
    n_states: usize,
    update: impl Fn(f64, f64, &mut [f64]) -> f64,
) -> Result<Vec<Value>> {
    let per = 2 + n_states;
    let ins = inputs.len().saturating_sub(2);
    if ins == 0 || !ins.is_multiple_of(per) {
        bail!(
            "expected R, T and {per} inputs per tensor, got {} inputs",
            inputs.len()
        );
    }
    let n = ins / per;
    let mut xs = Vec::with_capacity(n);
    let mut states: Vec<Vec<Value>> = vec![Vec::with_capacity(n); n_states];
    for i in 0..n {
        let x = input(inputs, 2 + i)?;
        let g = input(inputs, 2 + n + i)?;
        let sts = (0..n_states)
            .map(|k| input(inputs, 2 + (k + 2) * n + i))
            .collect::<Result<Vec<_>>>()?;
        if g.shape() != x.shape() || sts.iter().any(|s| s.shape() != x.shape()) {
            bail!("tensor {i}: X, G and the optimizer states must have one shape");
        }
        let (xv, gv) = (x.to_f64_vec()?, g.to_f64_vec()?);
        let mut sv = sts
            .iter()
            .map(|s| s.to_f64_vec())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut buf = vec![0.0; n_states];
        let new_x = (0..xv.len())
            .map(|j| {
                sv.iter().zip(buf.iter_mut()).for_each(|(s, b)| *b = s[j]);
                let nx = update(xv[j], gv[j], &mut buf);
                sv.iter_mut().zip(&buf).for_each(|(s, &b)| s[j] = b);
                nx
            })
            .collect();
        xs.push(Value::Tensor(store(x.dtype(), x.shape().to_vec(), new_x)?));
        for ((out, s), v) in states.iter_mut().zip(&sts).zip(sv) {
            out.push(Value::Tensor(store(s.dtype(), s.shape().to_vec(), v)?));
        }
    }
    xs.extend(states.into_iter().flatten());
    Ok(xs)
}

/// The learning rate `R` and step count `T`.
fn rate_and_step(inputs: &[Option<Value>]) -> Result<(f64, i64)> {
    let r = match input(inputs, 0)?.to_f64_vec()?.as_slice() {
        [r] => *r,
        v => bail!("R must hold one value, got {}", v.len()),
    };
    Ok((r, scalar_i64(input(inputs, 1)?, "T")?))
}

/// A float attribute as `f64`.
fn attr(ctx: &KernelCtx<'_>, name: &str, default: f32) -> Result<f64> {
    Ok(ctx.attrs().float_or(name, default)? as f64)
}

/// Adagrad with learning-rate decay; state `H` (accumulated squared gradients).
fn adagrad(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (r, t) = rate_and_step(inputs)?;
    let decay = attr(ctx, "decay_factor", 0.0)?;
    let eps = attr(ctx, "epsilon", 1e-6)?;
    let norm = attr(ctx, "norm_coefficient", 0.0)?;
    let rate = r / (1.0 + t as f64 * decay);
    step(inputs, 1, |x, g, s| {
        let gr = norm * x + g;
        s[0] += gr * gr;
        x - rate * gr / (s[0].sqrt() + eps)
    })
}

/// Adam with bias correction from step 1 on; states `V` (first moment), `H` (second).
fn adam(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (r, t) = rate_and_step(inputs)?;
    let alpha = attr(ctx, "alpha", 0.9)?;
    let beta = attr(ctx, "beta", 0.999)?;
    let eps = attr(ctx, "epsilon", 1e-6)?;
    let norm = attr(ctx, "norm_coefficient", 0.0)?;
    let post = attr(ctx, "norm_coefficient_post", 0.0)?;
    let rate = if t > 0 {
        let t = t as f64;
        r * (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t))
    } else {
        r
    };
    step(inputs, 2, |x, g, s| {
        let gr = norm * x + g;
        s[0] = alpha * s[0] + (1.0 - alpha) * gr;
        s[1] = beta * s[1] + (1.0 - beta) * gr * gr;
        (1.0 - post) * (x - rate * s[0] / (s[1].sqrt() + eps))
    })
}

/// A required float attribute as `f64`.
fn required(ctx: &KernelCtx<'_>, name: &str) -> Result<f64> {
    match ctx.attrs().float_opt(name)? {
        Some(v) => Ok(v as f64),
        None => bail!("missing required attribute {name}"),
    }
}

/// Momentum (`mode` `standard` or `nesterov`); state `V` (velocity).
fn momentum(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (r, t) = rate_and_step(inputs)?;
    let alpha = required(ctx, "alpha")?;
    let beta = if t > 0 { required(ctx, "beta")? } else { 1.0 };
    let norm = required(ctx, "norm_coefficient")?;
    let nesterov = match ctx.attrs().string_opt("mode")? {
        Some("standard") => false,
        Some("nesterov") => true,
        m => bail!("mode must be standard or nesterov, got {m:?}"),
    };
    step(inputs, 1, |x, g, s| {
        let gr = norm * x + g;
        s[0] = alpha * s[0] + beta * gr;
        if nesterov {
            x - r * (gr + alpha * s[0])
        } else {
            x - r * s[0]
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::Interpreter;
    use egret_ir::{Attr, Graph, OpCall, Tensor, Value};

    /// Run one training-domain node on constant inputs.
    fn run(op: &str, attrs: &[(&str, f32)], inputs: Vec<Tensor>, nout: usize) -> Vec<Vec<f64>> {
        let mut g = Graph::new("t");
        let ins: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| Some(g.add_const(&format!("in{i}"), t)))
            .collect();
        let mut call = OpCall::new(op);
        call.domain = super::DOMAIN.into();
        for (k, v) in attrs {
            call = call.with(k, Attr::Float(*v));
        }
        g.outputs = g.call("n", call, &ins, nout).unwrap();
        let out = Interpreter::new(&g).unwrap().run(vec![]).unwrap();
        out.into_iter()
            .map(|v: Value| v.into_tensor().unwrap().to_f64_vec().unwrap())
            .collect()
    }

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn adagrad_matches_onnx_test_data() {
        // onnx test_adagrad: expected X_new 1.0576962, H_new 2.998001.
        let out = run(
            "Adagrad",
            &[
                ("decay_factor", 0.1),
                ("epsilon", 1e-5),
                ("norm_coefficient", 0.001),
            ],
            vec![
                Tensor::scalar(0.1f32),
                Tensor::scalar(0i64),
                t(&[1.0]),
                t(&[-1.0]),
                t(&[2.0]),
            ],
            2,
        );
        assert!((out[0][0] - 1.057_696_2).abs() < 1e-6);
        assert!((out[1][0] - 2.998_001).abs() < 1e-6);
    }

    #[test]
    fn adam_applies_bias_correction_after_step_zero() {
        // T = 1, alpha = beta = 0.5, no regularisation: v = 0.5·g, h = 0.5·g²,
        // rate = r·sqrt(0.5)/0.5, x' = x - rate·v/sqrt(h) = 1 - 0.1·sqrt(2)·sqrt(0.5) = 0.9.
        let out = run(
            "Adam",
            &[("alpha", 0.5), ("beta", 0.5), ("epsilon", 0.0)],
            vec![
                Tensor::scalar(0.1f64),
                Tensor::scalar(1i64),
                t(&[1.0]),
                t(&[2.0]),
                t(&[0.0]),
                t(&[0.0]),
            ],
            3,
        );
        assert!((out[0][0] - 0.9).abs() < 1e-6, "{out:?}");
        assert_eq!(out[1], vec![1.0]);
        assert_eq!(out[2], vec![2.0]);
    }
}
