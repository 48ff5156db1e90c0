//! Kernels: SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss.
//!
//! Both reduce to [`nll`]: the negative log-probability of each target class,
//! weighted per class, with `ignore_index` entries weighted zero, then reduced
//! (`none`, `sum`, or `mean` = weighted sum / total weight, as the reference does).

use crate::error::{Result, RuntimeError};
use crate::kernels::workprec::{load, store, Real};
use crate::kernels::{input, opt_input};
use crate::ops::norm::require_float;
use crate::registry::{KernelCtx, Registry};
use crate::with_workprec;
use egret_ir::{Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("SoftmaxCrossEntropyLoss", softmax_cross_entropy);
    r.add("NegativeLogLikelihoodLoss", nll_loss);
}

/// `(N, C, D)` of an `[N, C, d1, ...]` input whose target is `[N, d1, ...]`.
fn ncd(x: &Tensor, target: &Tensor) -> Result<(usize, usize, usize)> {
    let xs = x.shape();
    if xs.len() < 2
        || target.shape().len() + 1 != xs.len()
        || target.shape()[0] != xs[0]
        || target.shape()[1..] != xs[2..]
    {
        return Err(RuntimeError::msg(format!(
            "input shape {xs:?} does not match target shape {:?}",
            target.shape()
        )));
    }
    Ok((xs[0], xs[1], xs[2..].iter().product()))
}

/// Weighted negative log-likelihood of `logp` (`[N, C, D]` log-probabilities).
fn nll<T: Real>(
    ctx: &KernelCtx<'_>,
    logp: &[T],
    (n, c, d): (usize, usize, usize),
    target: &Tensor,
    weight: Option<&Tensor>,
    dtype: egret_ir::DType,
) -> Result<Tensor> {
    let ignore = ctx.attrs().int_opt("ignore_index")?;
    let reduction = ctx.attrs().string_or("reduction", "mean")?;
    let labels = target.to_i64_vec()?;
    let w = weight.map(load::<T>).transpose()?;
    if let Some(w) = &w {
        if w.len() != c {
            return Err(RuntimeError::msg(format!(
                "weight has {} elements for {c} classes",
                w.len()
            )));
        }
    }
    let mut loss = Vec::with_capacity(n * d);
    let mut total_w = T::zero();
    for i in 0..n {
        for j in 0..d {
            let t = labels[i * d + j];
            if Some(t) == ignore {
                loss.push(T::zero());
                continue;
            }
            if t < 0 || t >= c as i64 {
                return Err(RuntimeError::msg(format!(
                    "target class {t} out of range [0, {c})"
                )));
            }
            let t = t as usize;
            let wt = w.as_ref().map_or(T::one(), |w| w[t]);
            total_w = total_w + wt;
            loss.push(-logp[(i * c + t) * d + j] * wt);
        }
    }
    let sum = || loss.iter().copied().sum::<T>();
    Ok(match reduction {
        "none" => store(dtype, target.shape().to_vec(), loss)?,
        "sum" => store(dtype, vec![], vec![sum()])?,
        "mean" => store(dtype, vec![], vec![sum() / total_w])?,
        other => return Err(RuntimeError::msg(format!("unknown reduction {other:?}"))),
    })
}

/// NegativeLogLikelihoodLoss over `[N, C, d...]` log-probabilities.
fn nll_loss(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let target = input(inputs, 1)?;
    require_float(x.dtype(), "input")?;
    let dims = ncd(x, target)?;
    with_workprec!(x.dtype(), T => {
        let xv = load::<T>(x)?;
        Ok(vec![Value::Tensor(nll(ctx, &xv, dims, target, opt_input(inputs, 2)?, x.dtype())?)])
    })
}

/// In-place log-softmax over the class axis of `[N, C, D]` scores.
fn log_softmax<T: Real>(lp: &mut [T], (n, c, d): (usize, usize, usize)) {
    for i in 0..n {
        for j in 0..d {
            let at = |k: usize| (i * c + k) * d + j;
            let max = (0..c).map(|k| lp[at(k)]).fold(T::neg_infinity(), T::max);
            let lse = (0..c).map(|k| (lp[at(k)] - max).exp()).sum::<T>().ln() + max;
            for k in 0..c {
                lp[at(k)] = lp[at(k)] - lse;
            }
        }
    }
}

/// SoftmaxCrossEntropyLoss: log-softmax over the class axis, then NLL; the
/// optional second output is the log-probabilities.
fn softmax_cross_entropy(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let target = input(inputs, 1)?;
    require_float(x.dtype(), "scores")?;
    let (n, c, d) = ncd(x, target)?;
    with_workprec!(x.dtype(), T => {
        let mut lp = load::<T>(x)?.into_owned();
        log_softmax(&mut lp, (n, c, d));
        let loss = nll(ctx, &lp, (n, c, d), target, opt_input(inputs, 2)?, x.dtype())?;
        let mut out = vec![Value::Tensor(loss)];
        if ctx.num_outputs() > 1 {
            out.push(Value::Tensor(store(x.dtype(), x.shape().to_vec(), lp)?));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::{run1, run_op};
    use egret_ir::{Attr, Attrs, Tensor};

    #[test]
    fn nll_mean_with_weights_and_ignore() {
        // x[n, c]: log-probs; targets 0, 1, 2(ignored).
        let x = Tensor::from_vec(vec![3, 2], vec![-1.0f32, -2.0, -3.0, -4.0, -5.0, -6.0]).unwrap();
        let t = Tensor::from_vec(vec![3], vec![0i64, 1, 1]).unwrap();
        let w = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let out = run1(
            "NegativeLogLikelihoodLoss",
            Attrs::default(),
            vec![x.clone(), t.clone(), w.clone()],
            1,
        );
        // (1*1 + 2*4 + 2*6) / (1 + 2 + 2) = 21 / 5
        assert!((out[0][0] - 4.2).abs() < 1e-6);
        let mut a = Attrs::default();
        a.set("ignore_index", Attr::Int(1));
        a.set("reduction", Attr::String("none".into()));
        let out = run1("NegativeLogLikelihoodLoss", a, vec![x, t, w], 1);
        assert_eq!(out[0], vec![1.0, 0.0, 0.0]);
    }

    #[test]
    fn sce_matches_log_softmax() {
        let x = Tensor::from_vec(vec![1, 2], vec![0.0f32, 0.0]).unwrap();
        let t = Tensor::from_vec(vec![1], vec![1i32]).unwrap();
        let mut a = Attrs::default();
        a.set("reduction", Attr::String("sum".into()));
        let out = run_op(
            "SoftmaxCrossEntropyLoss",
            a,
            vec![Some(x), Some(t), None],
            2,
        );
        let ln2 = std::f64::consts::LN_2;
        assert!((out[0].to_f64_vec().unwrap()[0] - ln2).abs() < 1e-6);
        assert_eq!(out[1].shape(), &[1, 2]);
        assert!((out[1].to_f64_vec().unwrap()[0] + ln2).abs() < 1e-6);
    }
}
