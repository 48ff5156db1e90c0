//! Kernels: activations and the Softmax family.
//!
//! Every activation is one [`map_float!`] expression evaluated in the compute
//! type (`f32` for f32/f16/bf16 data, `f64` for f64), using numerically stable
//! forms (`Sigmoid`, `Softplus`) that agree with the ONNX reference formulas.
//! `Softmax`, `LogSoftmax` and `Hardmax` work along `axis` (default -1).

use super::elementwise::{erf, map_float, map_num, FloatElem, Num, Real, PAR_MIN};
use crate::bail;
use crate::error::Result;
use crate::for_dtypes;
use crate::kernels::{input, norm_axis, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{Tensor, Value};
use rayon::prelude::*;

/// The float attribute `name` (or `default`) as f64.
fn attr(ctx: &KernelCtx<'_>, name: &str, default: f32) -> Result<f64> {
    Ok(ctx.attrs().float_or(name, default)? as f64)
}

/// Logistic sigmoid, without overflow for large |x|.
/// The logistic function, computed without overflow for either sign.
#[inline(always)]
pub fn sigmoid<F: Real>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
}

/// `ln(1 + e^x)`, without overflow for large x.
/// `ln(1 + eˣ)`, computed without overflow.
#[inline(always)]
pub fn softplus<F: Real>(x: F) -> F {
    if x > F::zero() {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `max(0, min(1, alpha * x + beta))`, keeping NaN.
#[inline(always)]
fn hard_sigmoid<F: Real>(x: F, alpha: F, beta: F) -> F {
    let v = alpha * x + beta;
    if v < F::zero() {
        F::zero()
    } else if v > F::one() {
        F::one()
    } else {
        v
    }
}

/// Gelu with the exact error function: `x·(1 + erf(x/√2))/2`.
#[inline(always)]
pub fn gelu_erf<F: Real>(x: F) -> F {
    F::c(0.5) * x * (F::one() + erf(x * F::c(std::f64::consts::FRAC_1_SQRT_2)))
}

/// Gelu with the tanh approximation.
#[inline(always)]
pub fn gelu_tanh<F: Real>(x: F) -> F {
    let k = F::c((2.0 / std::f64::consts::PI).sqrt());
    F::c(0.5) * x * (F::one() + (k * (x + F::c(0.044715) * x * x * x)).tanh())
}

fn gelu(ctx: &KernelCtx<'_>, ins: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(ins, 0)?;
    one(match ctx.attrs().string_or("approximate", "none")? {
        "none" => map_float!(x, |x: F| gelu_erf(x))?,
        "tanh" => map_float!(x, |x: F| gelu_tanh(x))?,
        a => bail!("Gelu approximate must be none or tanh, got {a:?}"),
    })
}

fn shrink(ctx: &KernelCtx<'_>, ins: &[Option<Value>]) -> Result<Vec<Value>> {
    let (lambd, bias) = (attr(ctx, "lambd", 0.5)?, attr(ctx, "bias", 0.0)?);
    one(map_num!(input(ins, 0)?, |x: T| {
        let v = x.to_f64();
        T::from_f64(if v < -lambd {
            v + bias
        } else if v > lambd {
            v - bias
        } else {
            0.0
        })
    })?)
}

/// Which member of the Softmax family.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Softmax,
    LogSoftmax,
    Hardmax,
}

/// Apply `mode` to one lane (the values along the axis) in place.
fn lane<F: Real>(v: &mut [F], mode: Mode) {
    let m = v.iter().fold(F::neg_infinity(), |a, &b| a.max(b));
    match mode {
        Mode::Softmax => {
            let mut s = F::zero();
            for x in v.iter_mut() {
                *x = (*x - m).exp();
                s = s + *x;
            }
            let inv = F::one() / s;
            v.iter_mut().for_each(|x| *x = *x * inv);
        }
        Mode::LogSoftmax => {
            let s = v.iter().fold(F::zero(), |a, &x| a + (x - m).exp());
            let lse = m + s.ln();
            v.iter_mut().for_each(|x| *x = *x - lse);
        }
        Mode::Hardmax => {
            let first = v.iter().position(|&x| x == m);
            for (i, x) in v.iter_mut().enumerate() {
                *x = if Some(i) == first {
                    F::one()
                } else {
                    F::zero()
                };
            }
        }
    }
}

fn softmax_lanes<T: FloatElem>(t: &Tensor, n: usize, inner: usize, mode: Mode) -> Result<Tensor> {
    let mut buf: Vec<T::C> = t.as_slice::<T>()?.iter().map(|v| v.to_c()).collect();
    if n > 0 && inner > 0 {
        if inner == 1 {
            if buf.len() >= PAR_MIN {
                buf.par_chunks_mut(n).for_each(|l| lane(l, mode));
            } else {
                buf.chunks_mut(n).for_each(|l| lane(l, mode));
            }
        } else {
            let mut tmp = vec![<T::C as Default>::default(); n];
            for block in buf.chunks_mut(n * inner) {
                for i in 0..inner {
                    for (j, v) in tmp.iter_mut().enumerate() {
                        *v = block[j * inner + i];
                    }
                    lane(&mut tmp, mode);
                    for (j, v) in tmp.iter().enumerate() {
                        block[j * inner + i] = *v;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(
        t.shape().to_vec(),
        buf.into_iter().map(T::from_c).collect(),
    )?)
}

/// Softmax / LogSoftmax / Hardmax of `t` along `axis`.
fn softmax_t(t: &Tensor, axis: i64, mode: Mode) -> Result<Tensor> {
    let shape = t.shape();
    let ax = norm_axis(axis, shape.len())?;
    let n = shape.get(ax).copied().unwrap_or(1);
    let inner: usize = shape.get(ax + 1..).unwrap_or(&[]).iter().product();
    for_dtypes!(t.dtype(), T => { softmax_lanes::<T>(t, n, inner, mode) }, [F32, F64, F16, BF16])
}

fn softmax_kernel(ctx: &KernelCtx<'_>, ins: &[Option<Value>], mode: Mode) -> Result<Vec<Value>> {
    one(softmax_t(
        input(ins, 0)?,
        ctx.attrs().int_or("axis", -1)?,
        mode,
    )?)
}

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Relu", |_, ins| {
        one(map_num!(input(ins, 0)?, |x: T| if x < T::default() {
            T::default()
        } else {
            x
        })?)
    });
    r.add("LeakyRelu", |ctx, ins| {
        let a = attr(ctx, "alpha", 0.01)?;
        one(map_float!(input(ins, 0)?, |x: F| if x < 0.0 {
            x * F::c(a)
        } else {
            x
        })?)
    });
    r.add("Elu", |ctx, ins| {
        let a = attr(ctx, "alpha", 1.0)?;
        one(map_float!(input(ins, 0)?, |x: F| if x < 0.0 {
            F::c(a) * x.exp_m1()
        } else {
            x
        })?)
    });
    r.add("Selu", |ctx, ins| {
        let a = attr(ctx, "alpha", 1.673_263_2)?;
        let g = attr(ctx, "gamma", 1.050_701)?;
        one(map_float!(input(ins, 0)?, |x: F| {
            F::c(g) * if x > 0.0 { x } else { F::c(a) * x.exp_m1() }
        })?)
    });
    r.add("Celu", |ctx, ins| {
        let a = attr(ctx, "alpha", 1.0)?;
        one(map_float!(input(ins, 0)?, |x: F| if x > 0.0 {
            x
        } else {
            F::c(a) * (x / F::c(a)).exp_m1()
        })?)
    });
    r.add("Gelu", gelu);
    r.add("HardSigmoid", |ctx, ins| {
        let (a, b) = (attr(ctx, "alpha", 0.2)?, attr(ctx, "beta", 0.5)?);
        one(map_float!(input(ins, 0)?, |x: F| hard_sigmoid(
            x,
            F::c(a),
            F::c(b)
        ))?)
    });
    r.add("HardSwish", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x * hard_sigmoid(
            x,
            F::c(1.0 / 6.0),
            F::c(0.5)
        ))?)
    });
    r.add("Softplus", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| softplus(x))?)
    });
    r.add("Softsign", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x / (1.0 + x.abs()))?)
    });
    r.add("Sigmoid", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| sigmoid(x))?)
    });
    r.add("Tanh", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.tanh())?)
    });
    r.add("ThresholdedRelu", |ctx, ins| {
        let a = attr(ctx, "alpha", 1.0)?;
        one(map_float!(input(ins, 0)?, |x: F| if x > F::c(a) {
            x
        } else {
            0.0
        })?)
    });
    r.add("Shrink", shrink);
    r.add("Mish", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x * softplus(x).tanh())?)
    });
    r.add("Swish", |ctx, ins| {
        let a = attr(ctx, "alpha", 1.0)?;
        one(map_float!(input(ins, 0)?, |x: F| x * sigmoid(F::c(a) * x))?)
    });
    r.add("Softmax", |ctx, ins| {
        softmax_kernel(ctx, ins, Mode::Softmax)
    });
    r.add("LogSoftmax", |ctx, ins| {
        softmax_kernel(ctx, ins, Mode::LogSoftmax)
    });
    r.add("Hardmax", |ctx, ins| {
        softmax_kernel(ctx, ins, Mode::Hardmax)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6 + 1e-5 * y.abs(), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn scalar_activations() {
        assert_eq!(sigmoid(0.0f32), 0.5);
        assert!((sigmoid(-100.0f64) - 3.720075976020836e-44).abs() < 1e-50);
        assert_eq!(sigmoid(100.0f32), 1.0);
        assert!((softplus(1.0f64) - 1.3132616875182228).abs() < 1e-15);
        assert_eq!(softplus(1000.0f32), 1000.0);
        assert_eq!(hard_sigmoid(1.0f32, 0.2, 0.5), 0.7);
        assert_eq!(hard_sigmoid(10.0f32, 0.2, 0.5), 1.0);
        assert!(hard_sigmoid(f32::NAN, 0.2, 0.5).is_nan());
    }

    #[test]
    fn softmax_family_along_axes() {
        let t = Tensor::from_vec(vec![2, 3], vec![1f32, 2., 3., 1., 1., 1.]).unwrap();
        let s = softmax_t(&t, -1, Mode::Softmax).unwrap();
        close(
            s.as_slice::<f32>().unwrap(),
            &[
                0.09003057,
                0.24472847,
                0.66524096,
                1. / 3.,
                1. / 3.,
                1. / 3.,
            ],
        );
        let l = softmax_t(&t, 1, Mode::LogSoftmax).unwrap();
        close(
            l.as_slice::<f32>().unwrap(),
            &[
                -2.407606,
                -1.4076059,
                -0.40760595,
                -1.0986123,
                -1.0986123,
                -1.0986123,
            ],
        );
        // Along axis 0 (strided lanes).
        let s0 = softmax_t(&t, 0, Mode::Softmax).unwrap();
        close(
            s0.as_slice::<f32>().unwrap(),
            &[0.5, 0.7310586, 0.8807971, 0.5, 0.26894142, 0.11920292],
        );
        let h = softmax_t(&t, 0, Mode::Hardmax).unwrap();
        assert_eq!(h.as_slice::<f32>().unwrap(), &[1., 1., 1., 0., 0., 0.]);
        let h = softmax_t(&t, -1, Mode::Hardmax).unwrap();
        assert_eq!(h.as_slice::<f32>().unwrap(), &[0., 0., 1., 1., 0., 0.]);
        assert!(softmax_t(&t, 2, Mode::Softmax).is_err());
    }

    #[test]
    fn large_softmax_rows_sum_to_one() {
        let n = PAR_MIN * 2;
        let t = Tensor::from_vec(
            vec![n / 64, 64],
            (0..n).map(|v| (v % 97) as f32 * 0.1).collect(),
        )
        .unwrap();
        let s = softmax_t(&t, -1, Mode::Softmax).unwrap();
        for row in s.as_slice::<f32>().unwrap().chunks(64) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
