//! Kernels of the state-carrying sequence mixers (opset 27):
//! CausalConvWithState and LinearAttention.
//!
//! Both carry a recurrent state between calls (decode steps): the last `k - 1`
//! inputs of a causal depthwise convolution, or the `d_k × d_v` matrix of a
//! linear-attention head. They compute at working precision ([`Real`]) and
//! follow the ONNX reference implementation's order of operations.

use crate::bail;
use crate::error::Result;
use crate::kernels::workprec::{load, store, Real};
use crate::kernels::{checked_len, input, opt_input};
use crate::ops::cast::out_dtype;
use crate::registry::{KernelCtx, Registry};
use crate::with_workprec;
use egret_ir::{DType, Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("CausalConvWithState", causal_conv_with_state);
    r.add("LinearAttention", linear_attention);
}

/// `[b, c, len]` of a rank-3 tensor.
fn dims3(t: &Tensor, what: &str) -> Result<[usize; 3]> {
    match t.shape() {
        &[a, b, c] => Ok([a, b, c]),
        s => bail!("{what} must have rank 3, got {s:?}"),
    }
}

/// Causal depthwise conv of one `[B, C, L]` input with `[C, 1, k]` weights over
/// the past state (or zeros) followed by the input; returns the output and
/// the new state (the last `k - 1` points of that padded sequence).
#[allow(clippy::too_many_arguments)]
fn causal_conv<W: Real>(
    x: &[W],
    w: &[W],
    bias: Option<&[W]>,
    past: Option<&[W]>,
    [b, c, l]: [usize; 3],
    k: usize,
    silu: bool,
) -> (Vec<W>, Vec<W>) {
    let (s, plen) = (k - 1, l + k - 1);
    let mut out = Vec::with_capacity(b * c * l);
    let mut state = Vec::with_capacity(b * c * s);
    let mut padded = vec![W::zero(); plen];
    for bi in 0..b {
        for ci in 0..c {
            let row = bi * c + ci;
            match past {
                Some(p) => padded[..s].copy_from_slice(&p[row * s..(row + 1) * s]),
                None => padded[..s].fill(W::zero()),
            }
            padded[s..].copy_from_slice(&x[row * l..(row + 1) * l]);
            let wk = &w[ci * k..(ci + 1) * k];
            let b0 = bias.map_or(W::zero(), |bv| bv[ci]);
            out.extend((0..l).map(|t| {
                let v = padded[t..t + k]
                    .iter()
                    .zip(wk)
                    .fold(b0, |acc, (&p, &wj)| acc + p * wj);
                if silu {
                    v / (W::one() + (-v).exp())
                } else {
                    v
                }
            }));
            state.extend_from_slice(&padded[plen - s..]);
        }
    }
    (out, state)
}

fn causal_conv_with_state(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let w = input(inputs, 1)?;
    let bias = opt_input(inputs, 2)?;
    let past = opt_input(inputs, 3)?;
    let silu = match ctx.attrs().string_or("activation", "none")? {
        "none" => false,
        "silu" | "swish" => true,
        a => bail!("unknown activation {a:?}"),
    };
    let [b, c, l] = dims3(x, "input")?;
    let k = match dims3(w, "weight")? {
        [wc, 1, k] if wc == c && k > 0 => k,
        s => bail!("weight must be [{c}, 1, k>0], got {s:?}"),
    };
    if let Some(bt) = bias {
        if bt.shape() != [c] {
            bail!("bias must be [{c}], got {:?}", bt.shape());
        }
    }
    if let Some(p) = past {
        if p.shape() != [b, c, k - 1] {
            bail!(
                "past_state must be [{b}, {c}, {}], got {:?}",
                k - 1,
                p.shape()
            );
        }
    }
    checked_len(&[b, c, l + k])?;
    let dt = x.dtype();
    with_workprec!(dt, W => {
        let bias = bias.map(load::<W>).transpose()?;
        let past = past.map(load::<W>).transpose()?;
        let (out, state) = causal_conv::<W>(
            &load::<W>(x)?,
            &load::<W>(w)?,
            bias.as_deref(),
            past.as_deref(),
            [b, c, l],
            k,
            silu,
        );
        Ok(vec![
            Value::Tensor(store(dt, vec![b, c, l], out)?),
            Value::Tensor(store(dt, vec![b, c, k - 1], state)?),
        ])
    })
}

/// LinearAttention's update rule.
#[derive(Clone, Copy)]
struct Rule {
    /// Decay the state by `exp(g_t)` before each update.
    gated: bool,
    /// Write `β_t (v_t - Sᵀk_t)` instead of `v_t`.
    delta: bool,
}

/// Sizes of one LinearAttention call.
#[derive(Clone, Copy)]
struct LaDims {
    b: usize,
    t: usize,
    hq: usize,
    hkv: usize,
    dk: usize,
    dv: usize,
    /// Last dim of `decay` (`hkv` per head, or `hkv · dk` per key dim).
    decay_last: usize,
    /// Last dim of `beta` (`hkv`, or 1 shared by every head).
    beta_last: usize,
}

/// The recurrence of every `(batch, kv head)`, token by token. `state` is
/// `[B, H_kv, d_k, d_v]` and is updated in place; returns the `[B, T, H_q·d_v]` output.
#[allow(clippy::too_many_arguments)]
fn linear_attention_core<W: Real>(
    q: &[W],
    k: &[W],
    v: &[W],
    decay: Option<&[W]>,
    beta: Option<&[W]>,
    state: &mut [W],
    d: LaDims,
    rule: Rule,
    scale: W,
) -> Vec<W> {
    let group = d.hq / d.hkv;
    let mut out = vec![W::zero(); d.b * d.t * d.hq * d.dv];
    let mut vt = vec![W::zero(); d.dv];
    for b in 0..d.b {
        for h in 0..d.hkv {
            let s = &mut state[(b * d.hkv + h) * d.dk * d.dv..(b * d.hkv + h + 1) * d.dk * d.dv];
            for t in 0..d.t {
                let bt = b * d.t + t;
                let kt = &k[(bt * d.hkv + h) * d.dk..(bt * d.hkv + h + 1) * d.dk];
                vt.copy_from_slice(&v[(bt * d.hkv + h) * d.dv..(bt * d.hkv + h + 1) * d.dv]);
                if let (true, Some(g)) = (rule.gated, decay) {
                    for i in 0..d.dk {
                        let gi = if d.decay_last == d.hkv {
                            g[bt * d.hkv + h]
                        } else {
                            g[(bt * d.hkv + h) * d.dk + i]
                        };
                        let e = gi.exp();
                        s[i * d.dv..(i + 1) * d.dv]
                            .iter_mut()
                            .for_each(|x| *x = *x * e);
                    }
                }
                if let (true, Some(bv)) = (rule.delta, beta) {
                    let beta_t = bv[bt * d.beta_last + if d.beta_last == 1 { 0 } else { h }];
                    for (m, vm) in vt.iter_mut().enumerate() {
                        let retrieved =
                            (0..d.dk).fold(W::zero(), |a, i| a + s[i * d.dv + m] * kt[i]);
                        *vm = beta_t * (*vm - retrieved);
                    }
                }
                for (i, &ki) in kt.iter().enumerate() {
                    for (x, &vm) in s[i * d.dv..(i + 1) * d.dv].iter_mut().zip(&vt) {
                        *x = *x + ki * vm;
                    }
                }
                for hq in h * group..(h + 1) * group {
                    let qt = &q[(bt * d.hq + hq) * d.dk..(bt * d.hq + hq + 1) * d.dk];
                    let o = &mut out[(bt * d.hq + hq) * d.dv..(bt * d.hq + hq + 1) * d.dv];
                    for (i, &qi) in qt.iter().enumerate() {
                        for (om, &sm) in o.iter_mut().zip(&s[i * d.dv..(i + 1) * d.dv]) {
                            *om = *om + qi * sm;
                        }
                    }
                    o.iter_mut().for_each(|x| *x = *x * scale);
                }
            }
        }
    }
    out
}

/// Check the shapes of a LinearAttention call and derive its sizes.
fn la_dims(ctx: &KernelCtx<'_>, inputs: &[Option<Value>], rule: Rule) -> Result<LaDims> {
    let hq = ctx.attrs().int("q_num_heads")?;
    let hkv = ctx.attrs().int("kv_num_heads")?;
    let (hq, hkv) = match (usize::try_from(hq), usize::try_from(hkv)) {
        (Ok(a), Ok(b)) if a > 0 && b > 0 && a % b == 0 => (a, b),
        _ => bail!("q_num_heads {hq} must be a positive multiple of kv_num_heads {hkv}"),
    };
    let [b, t, qd] = dims3(input(inputs, 0)?, "query")?;
    let kd = dims3(input(inputs, 1)?, "key")?;
    let vd = dims3(input(inputs, 2)?, "value")?;
    if qd % hq != 0 || vd[2] % hkv != 0 {
        bail!(
            "query/value last dims {qd}/{} do not split into {hq}/{hkv} heads",
            vd[2]
        );
    }
    let (dk, dv) = (qd / hq, vd[2] / hkv);
    if kd != [b, t, hkv * dk] || vd[..2] != [b, t] {
        bail!("key {kd:?} / value {vd:?} do not match query [{b}, {t}, {qd}]");
    }
    if let Some(p) = opt_input(inputs, 3)? {
        if p.shape() != [b, hkv, dk, dv] {
            bail!(
                "past_state must be [{b}, {hkv}, {dk}, {dv}], got {:?}",
                p.shape()
            );
        }
    }
    let mut d = LaDims {
        b,
        t,
        hq,
        hkv,
        dk,
        dv,
        decay_last: 0,
        beta_last: 0,
    };
    match (rule.gated, opt_input(inputs, 4)?) {
        (true, Some(g)) => match dims3(g, "decay")? {
            [gb, gt, gl] if gb == b && gt == t && (gl == hkv || gl == hkv * dk) => {
                d.decay_last = gl
            }
            s => bail!("decay must be [{b}, {t}, {hkv} or {}], got {s:?}", hkv * dk),
        },
        (false, None) => {}
        (true, None) => bail!("this update_rule requires decay"),
        (false, Some(_)) => bail!("this update_rule forbids decay"),
    }
    match (rule.delta, opt_input(inputs, 5)?) {
        (true, Some(bt)) => match dims3(bt, "beta")? {
            [bb, btt, bl] if bb == b && btt == t && (bl == hkv || bl == 1) => d.beta_last = bl,
            s => bail!("beta must be [{b}, {t}, {hkv} or 1], got {s:?}"),
        },
        (false, None) => {}
        (true, None) => bail!("this update_rule requires beta"),
        (false, Some(_)) => bail!("this update_rule forbids beta"),
    }
    checked_len(&[b, t, hq, dv])?;
    checked_len(&[b, hkv, dk, dv])?;
    Ok(d)
}

fn linear_attention(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let rule = match ctx.attrs().string_or("update_rule", "gated_delta")? {
        "linear" => Rule {
            gated: false,
            delta: false,
        },
        "gated" => Rule {
            gated: true,
            delta: false,
        },
        "delta" => Rule {
            gated: false,
            delta: true,
        },
        "gated_delta" => Rule {
            gated: true,
            delta: true,
        },
        r => bail!("unknown update_rule {r:?}"),
    };
    let d = la_dims(ctx, inputs, rule)?;
    let q = input(inputs, 0)?;
    let dt = q.dtype();
    let state_dt: DType = out_dtype(ctx, 1)?;
    let given = ctx.attrs().float_or("scale", 0.0)?;
    let scale = if given == 0.0 {
        1.0 / (d.dk as f64).sqrt()
    } else {
        given as f64
    };
    with_workprec!(dt, W => {
        let mut state = match opt_input(inputs, 3)? {
            Some(p) => load::<W>(p)?.into_owned(),
            None => vec![W::default(); d.b * d.hkv * d.dk * d.dv],
        };
        let decay = opt_input(inputs, 4)?.map(load::<W>).transpose()?;
        let beta = opt_input(inputs, 5)?.map(load::<W>).transpose()?;
        let out = linear_attention_core::<W>(
            &load::<W>(q)?,
            &load::<W>(input(inputs, 1)?)?,
            &load::<W>(input(inputs, 2)?)?,
            decay.as_deref(),
            beta.as_deref(),
            &mut state,
            d,
            rule,
            W::of(scale),
        );
        Ok(vec![
            Value::Tensor(store(dt, vec![d.b, d.t, d.hq * d.dv], out)?),
            Value::Tensor(store(state_dt, vec![d.b, d.hkv, d.dk, d.dv], state)?),
        ])
    })
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::run_op;
    use egret_ir::{Attr, Attrs, Tensor};

    #[test]
    fn causal_conv_uses_past_state() {
        // One channel, k = 3: out[t] = w0·p[t] + w1·p[t+1] + w2·p[t+2] over
        // p = [past(2), x(2)] = [1, 2, 3, 4]; weights [1, 10, 100].
        let x = Tensor::from_vec(vec![1, 1, 2], vec![3.0f32, 4.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 3], vec![1.0f32, 10.0, 100.0]).unwrap();
        let past = Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 2.0]).unwrap();
        let out = run_op(
            "CausalConvWithState",
            Attrs::default(),
            vec![Some(x), Some(w), None, Some(past)],
            2,
        );
        assert_eq!(out[0].to_f64_vec().unwrap(), vec![321.0, 432.0]);
        assert_eq!(out[1].to_f64_vec().unwrap(), vec![3.0, 4.0]);
    }

    #[test]
    fn linear_attention_accumulates_outer_products() {
        // One head, d_k = d_v = 1, scale 1: S_t = Σ k·v, o_t = q_t·S_t.
        let t = |v: &[f32]| Tensor::from_vec(vec![1, 3, 1], v.to_vec()).unwrap();
        let mut a = Attrs::default();
        a.set("q_num_heads", Attr::Int(1));
        a.set("kv_num_heads", Attr::Int(1));
        a.set("scale", Attr::Float(1.0));
        a.set("update_rule", Attr::String("linear".into()));
        let out = run_op(
            "LinearAttention",
            a,
            vec![
                Some(t(&[1.0, 2.0, 3.0])),
                Some(t(&[1.0, 1.0, 2.0])),
                Some(t(&[2.0, 3.0, 1.0])),
            ],
            2,
        );
        // S = 2, 5, 7 -> o = 2, 10, 21.
        assert_eq!(out[0].to_f64_vec().unwrap(), vec![2.0, 10.0, 21.0]);
        assert_eq!(out[1].shape(), &[1, 1, 1, 1]);
        assert_eq!(out[1].to_f64_vec().unwrap(), vec![7.0]);
    }
}
