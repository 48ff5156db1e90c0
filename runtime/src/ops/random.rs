//! Kernels of the random generators: RandomUniform, RandomNormal, their `*Like`
//! forms, Bernoulli and Multinomial.
//!
//! Draws come from numpy's legacy `RandomState` stream ([`Mt19937`]), as in the
//! ONNX reference: `seed` selects `RandomState(int(seed))`; without one a fresh
//! seed is taken from the process's hash-map keys (OS entropy), so unseeded
//! nodes differ from run to run as the specification says. Normal draws use
//! numpy's polar Box–Muller (`randn`), Bernoulli numpy's `binomial(1, p)`.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::convert::cast_tensor;
use crate::kernels::mt19937::Mt19937;
use crate::kernels::{checked_len, input, one};
use crate::ops::cast::out_dtype;
use crate::registry::{KernelCtx, Registry};
use egret_ir::{Tensor, Value};
use std::hash::{BuildHasher, Hasher};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("RandomUniform", random_uniform);
    r.add("RandomUniformLike", random_uniform);
    r.add("RandomNormal", random_normal);
    r.add("RandomNormalLike", random_normal);
    r.add("Bernoulli", bernoulli);
    r.add("Multinomial", multinomial);
}

/// numpy's legacy generator: uniform doubles plus `randn`'s cached second normal.
struct Rng {
    mt: Mt19937,
    gauss: Option<f64>,
}

impl Rng {
    /// The stream of the node's `seed` attribute, or an entropy-seeded one.
    fn new(ctx: &KernelCtx<'_>) -> Result<Rng> {
        let seed = match ctx.attrs().float_opt("seed")? {
            Some(s) if s.is_finite() => {
                let s = s.trunc();
                if !(0.0..4_294_967_296.0).contains(&s) {
                    bail!("seed {s} outside 0..2^32");
                }
                s as u32
            }
            _ => std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish() as u32,
        };
        Ok(Rng {
            mt: Mt19937::new(seed),
            gauss: None,
        })
    }

    /// `random_sample()` in `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        self.mt.next_f64()
    }

    /// `randn()`: the polar method, caching the second value as numpy does.
    fn normal(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.uniform() - 1.0;
            let x2 = 2.0 * self.uniform() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// `binomial(1, p)` by numpy's inversion (on the smaller of `p`, `1 - p`).
    fn bernoulli(&mut self, p: f64) -> f64 {
        if p <= 0.0 || p.is_nan() {
            return 0.0;
        }
        let u = self.uniform();
        if p <= 0.5 {
            f64::from(u > 1.0 - p)
        } else {
            f64::from(u <= p)
        }
    }
}

/// The output shape: input 0's for the `*Like` forms, else the `shape` attribute.
fn out_shape(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<usize>> {
    if ctx.call.op_type.ends_with("Like") {
        return Ok(input(inputs, 0)?.shape().to_vec());
    }
    let Some(dims) = ctx.attrs().ints_opt("shape")? else {
        bail!("missing shape");
    };
    dims.iter()
        .map(|&d| usize::try_from(d).map_err(|_| RuntimeError::msg(format!("negative dim {d}"))))
        .collect()
}

/// A tensor of the node's output dtype from `f64` values.
fn typed(ctx: &KernelCtx<'_>, shape: Vec<usize>, v: Vec<f64>) -> Result<Vec<Value>> {
    one(cast_tensor(
        &Tensor::from_vec(shape, v)?,
        out_dtype(ctx, 0)?,
        true,
    )?)
}

/// `low + (high - low)·U` per element.
fn random_uniform(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let shape = out_shape(ctx, inputs)?;
    let n = checked_len(&shape)?;
    let low = ctx.attrs().float_or("low", 0.0)? as f64;
    let high = ctx.attrs().float_or("high", 1.0)? as f64;
    let mut rng = Rng::new(ctx)?;
    let v = (0..n).map(|_| low + (high - low) * rng.uniform()).collect();
    typed(ctx, shape, v)
}

/// `mean + scale·N(0, 1)` per element.
fn random_normal(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let shape = out_shape(ctx, inputs)?;
    let n = checked_len(&shape)?;
    let mean = ctx.attrs().float_or("mean", 0.0)? as f64;
    let scale = ctx.attrs().float_or("scale", 1.0)? as f64;
    let mut rng = Rng::new(ctx)?;
    let v = (0..n).map(|_| mean + scale * rng.normal()).collect();
    typed(ctx, shape, v)
}

/// 1 with probability `p` (the input element), else 0.
fn bernoulli(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let mut rng = Rng::new(ctx)?;
    let v = x
        .to_f64_vec()?
        .into_iter()
        .map(|p| rng.bernoulli(p))
        .collect();
    typed(ctx, x.shape().to_vec(), v)
}

/// `sample_size` class indices per batch row, drawn with probabilities
/// proportional to `exp(input)` (unnormalised log-probabilities).
fn multinomial(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let &[batch, classes] = x.shape() else {
        bail!("input must be [batch, classes], got {:?}", x.shape());
    };
    if classes == 0 {
        bail!("input has no classes");
    }
    let samples = usize::try_from(ctx.attrs().int_or("sample_size", 1)?)
        .map_err(|_| RuntimeError::msg("negative sample_size"))?;
    let total = checked_len(&[batch, samples])?;
    let logits = x.to_f64_vec()?;
    let mut rng = Rng::new(ctx)?;
    let mut v = Vec::with_capacity(total);
    for row in logits.chunks_exact(classes) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let cdf: Vec<f64> = row
            .iter()
            .scan(0.0, |acc, &l| {
                *acc += (l - max).exp();
                Some(*acc)
            })
            .collect();
        let sum = cdf[classes - 1];
        for _ in 0..samples {
            let u = rng.uniform() * sum;
            v.push(cdf.iter().position(|&c| u < c).unwrap_or(classes - 1) as f64);
        }
    }
    typed(ctx, vec![batch, samples], v)
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::run1;
    use egret_ir::{Attr, Attrs, Tensor};

    fn seeded(seed: f32) -> Attrs {
        let mut a = Attrs::default();
        a.set("seed", Attr::Float(seed));
        a
    }

    #[test]
    fn seeded_uniform_and_normal_match_numpy() {
        let mut a = seeded(0.0);
        a.set("shape", Attr::Ints(vec![3]));
        a.set("dtype", Attr::Int(11));
        let out = run1("RandomUniform", a.clone(), vec![], 1);
        // numpy.random.RandomState(0).rand(3)
        assert_eq!(
            out[0],
            vec![0.5488135039273248, 0.7151893663724195, 0.6027633760716439]
        );
        let out = run1("RandomNormal", a, vec![], 1);
        // numpy.random.RandomState(0).randn(3)
        let want = [1.764052345967664, 0.4001572083672233, 0.9787379841057392];
        for (g, w) in out[0].iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{:?}", out[0]);
        }
    }

    #[test]
    fn bernoulli_matches_numpy_binomial() {
        // numpy.random.RandomState(0).binomial(1, [0.2, 0.9, 0.5, 0.0, 1.0])
        let p = Tensor::from_vec(vec![5], vec![0.2f64, 0.9, 0.5, 0.0, 1.0]).unwrap();
        let out = run1("Bernoulli", seeded(0.0), vec![p], 1);
        assert_eq!(out[0], vec![0.0, 1.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn multinomial_never_draws_impossible_classes() {
        let mut a = seeded(3.0);
        a.set("sample_size", Attr::Int(50));
        let x =
            Tensor::from_vec(vec![1, 3], vec![f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]).unwrap();
        let out = run1("Multinomial", a, vec![x], 1);
        assert!(out[0].iter().all(|&c| c == 1.0));
    }
}
