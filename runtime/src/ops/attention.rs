//! Kernels: Attention and RotaryEmbedding (opset 23).
//!
//! Both compute at the working precision of their input dtype (f32 for
//! f32/f16/bf16, f64 for f64). `Attention`'s math lives in
//! [`crate::kernels::attention`]; this file validates shapes, lays out the KV
//! cache (`present_key`/`present_value` = past ++ new along the sequence axis)
//! and builds the mask view. The semantics follow the ONNX reference
//! implementation, including its causal alignment with a KV cache: query `i`
//! sees keys `0..=past_len + i`.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::attention::{attention, Dims, Heads, Mask, MaskData, Options, Out};
use crate::kernels::workprec::{load, store, Real};
use crate::kernels::{checked_len, input, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::with_workprec;
use egret_ir::{DType, Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Attention", attention_kernel);
    r.add("RotaryEmbedding", rotary_kernel);
}

/// A positive head-count attribute.
fn heads_attr(ctx: &KernelCtx<'_>, name: &str) -> Result<usize> {
    let n = ctx
        .attrs()
        .int_opt(name)?
        .ok_or_else(|| RuntimeError::msg(format!("3D inputs need the {name} attribute")))?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| RuntimeError::msg(format!("{name} must be positive, got {n}")))
}

/// `(batch, heads, seq, head_size)` of a Q/K/V tensor; 3D tensors split their
/// hidden size into `heads` (which must be given).
fn bhsd(t: &Tensor, heads: Option<usize>, what: &str) -> Result<[usize; 4]> {
    match (t.shape(), heads) {
        (&[b, h, s, e], _) => Ok([b, h, s, e]),
        (&[b, s, hidden], Some(h)) if hidden % h == 0 => Ok([b, h, s, hidden / h]),
        (&[_, _, hidden], Some(h)) => {
            bail!("{what} hidden size {hidden} is not a multiple of {h} heads")
        }
        (s, _) => bail!("{what} must be 3D or 4D, got shape {s:?}"),
    }
}

/// A view of a Q/K/V tensor in its own layout.
fn view<'a, W>(data: &'a [W], rank: usize, [_, h, s, e]: [usize; 4]) -> Heads<'a, W> {
    if rank == 4 {
        Heads::bhsd(data, h, s, e)
    } else {
        Heads::bsd(data, h, s, e)
    }
}

/// `past ++ new` along the sequence axis, as a contiguous `(b, h, p + s, d)` array.
fn concat_cache<W: Real>(
    past: Option<&[W]>,
    p: usize,
    new: Heads<'_, W>,
    [b, h, s, d]: [usize; 4],
) -> Result<Vec<W>> {
    let n = checked_len(&[b, h, p + s, d])?;
    let mut out = Vec::with_capacity(n);
    for bi in 0..b {
        for hi in 0..h {
            if let Some(pd) = past {
                let o = (bi * h + hi) * p * d;
                out.extend_from_slice(&pd[o..o + p * d]);
            }
            for si in 0..s {
                let o = new.at(bi, hi, si);
                out.extend_from_slice(&new.data[o..o + d]);
            }
        }
    }
    Ok(out)
}

/// The mask input as a view broadcast to `(batch, q_heads, q_seq, width)`.
fn mask_view<'a, W: Real>(
    t: &'a Tensor,
    float: Option<&'a [W]>,
    [b, h, s]: [usize; 3],
    total: usize,
) -> Result<Mask<'a, W>> {
    let shape = t.shape();
    if shape.is_empty() || shape.len() > 4 {
        bail!("attn_mask must have rank 1 to 4, got shape {shape:?}");
    }
    let mut d = [1usize; 4];
    d[4 - shape.len()..].copy_from_slice(shape);
    let fits = |m: usize, n: usize| m == 1 || m == n;
    if !fits(d[0], b) || !fits(d[1], h) || !fits(d[2], s) || d[3] > total {
        bail!("attn_mask shape {shape:?} does not broadcast to ({b}, {h}, {s}, {total})");
    }
    let st = [d[1] * d[2] * d[3], d[2] * d[3], d[3]];
    let strides = [0, 1, 2].map(|i| if d[i] == 1 { 0 } else { st[i] });
    let data = match float {
        Some(v) => MaskData::Add(v),
        None => MaskData::Bool(t.as_slice::<bool>()?),
    };
    Ok(Mask {
        data,
        strides,
        key_stride: 1,
        width: d[3],
    })
}

fn attention_kernel(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let dt = input(inputs, 0)?.dtype();
    with_workprec!(dt, W => { attention_at::<W>(ctx, inputs) })
}

fn attention_at<W: Real>(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (q, k, v) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let dt = q.dtype();
    if k.dtype() != dt || v.dtype() != dt {
        bail!("Q, K, V must share a dtype");
    }
    let rank = q.rank();
    if k.rank() != rank || v.rank() != rank {
        bail!("Q, K and V must all be 3D or all 4D");
    }
    let (qh, kvh) = if rank == 3 {
        (
            Some(heads_attr(ctx, "q_num_heads")?),
            Some(heads_attr(ctx, "kv_num_heads")?),
        )
    } else {
        (None, None)
    };
    let qs = bhsd(q, qh, "Q")?;
    let ks = bhsd(k, kvh, "K")?;
    let vs = bhsd(v, kvh, "V")?;
    let [batch, q_heads, q_seq, dk] = qs;
    let [_, kv_heads, kv_seq, dv] = vs;
    if ks[0] != batch || vs[0] != batch || ks[1] != kv_heads || ks[2] != kv_seq || ks[3] != dk {
        bail!("incompatible shapes Q {qs:?}, K {ks:?}, V {vs:?} (as batch, heads, seq, size)");
    }
    let (pk, pv) = (opt_input(inputs, 4)?, opt_input(inputs, 5)?);
    let past = pk.map_or(0, |t| t.shape().get(2).copied().unwrap_or(0));
    for (t, size, what) in [(pk, dk, "past_key"), (pv, dv, "past_value")] {
        match t {
            Some(t) if t.shape() == [batch, kv_heads, past, size] && t.dtype() == dt => {}
            Some(t) => bail!(
                "{what} has shape {:?}, expected [{batch}, {kv_heads}, {past}, {size}]",
                t.shape()
            ),
            None if past > 0 => bail!("past_key given without past_value"),
            None => {}
        }
    }
    let total = past + kv_seq;
    let (qd, kd, vd) = (load::<W>(q)?, load::<W>(k)?, load::<W>(v)?);
    let pkd = pk.map(load::<W>).transpose()?;
    let pvd = pv.map(load::<W>).transpose()?;
    let present_k = concat_cache(pkd.as_deref(), past, view(&kd, rank, ks), ks)?;
    let present_v = concat_cache(pvd.as_deref(), past, view(&vd, rank, vs), vs)?;

    let mask_t = opt_input(inputs, 3)?;
    let mask_f = match mask_t {
        Some(m) if m.dtype() != DType::Bool => Some(load::<W>(m)?),
        _ => None,
    };
    let mask = mask_t
        .map(|m| mask_view(m, mask_f.as_deref(), [batch, q_heads, q_seq], total))
        .transpose()?;
    let nonpad = opt_input(inputs, 6)?
        .map(|t| {
            t.to_i64_vec()?
                .into_iter()
                .map(|n| {
                    usize::try_from(n)
                        .map_err(|_| RuntimeError::msg(format!("negative nonpad_kv_seqlen {n}")))
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let attrs = ctx.attrs();
    let scale = match attrs.float_opt("scale")? {
        Some(s) => W::of(s as f64),
        None => W::one() / W::of(dk as f64).sqrt(),
    };
    let qk_mode = attrs.int_or("qk_matmul_output_mode", 0)?;
    if !(0..=3).contains(&qk_mode) {
        bail!("qk_matmul_output_mode must be 0..=3, got {qk_mode}");
    }
    let opt = Options {
        scale,
        softcap: W::of(attrs.float_or("softcap", 0.0)? as f64),
        causal: attrs.int_or("is_causal", 0)? != 0,
        nonpad,
        qk_mode,
    };
    let n_out = ctx.num_outputs().max(1);
    let mut y = vec![W::zero(); checked_len(&[batch, q_heads, q_seq, dv])?];
    let mut qk = if n_out >= 4 {
        Some(vec![
            W::zero();
            checked_len(&[batch, q_heads, q_seq, total])?
        ])
    } else {
        None
    };
    let d = Dims {
        batch,
        q_heads,
        kv_heads,
        q_seq,
        past,
        total,
        dk,
        dv,
    };
    attention(
        d,
        view(&qd, rank, qs),
        Heads::bhsd(&present_k, kv_heads, total, dk),
        Heads::bhsd(&present_v, kv_heads, total, dv),
        mask.as_ref(),
        &opt,
        Out {
            y: &mut y,
            y_layout: view(&[], rank, [batch, q_heads, q_seq, dv]),
            qk: qk.as_deref_mut(),
        },
    )?;
    let y_shape = if rank == 4 {
        vec![batch, q_heads, q_seq, dv]
    } else {
        vec![batch, q_seq, q_heads * dv]
    };
    let mut out = vec![store(dt, y_shape, y)?];
    if n_out >= 2 {
        out.push(store(dt, vec![batch, kv_heads, total, dk], present_k)?);
    }
    if n_out >= 3 {
        out.push(store(dt, vec![batch, kv_heads, total, dv], present_v)?);
    }
    if let Some(qk) = qk {
        out.push(store(dt, vec![batch, q_heads, q_seq, total], qk)?);
    }
    Ok(out.into_iter().map(Value::Tensor).collect())
}

fn rotary_kernel(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let dt = input(inputs, 0)?.dtype();
    with_workprec!(dt, W => { rotary_at::<W>(ctx, inputs) })
}

fn rotary_at<W: Real>(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let (cos_t, sin_t) = (input(inputs, 1)?, input(inputs, 2)?);
    let pos = opt_input(inputs, 3)?;
    let rank = x.rank();
    let heads = if rank == 3 {
        Some(heads_attr(ctx, "num_heads")?)
    } else {
        None
    };
    let dims = bhsd(x, heads, "input")?;
    // 4D input is (batch, heads, seq, size); `bhsd` read it in that order.
    let [batch, n_heads, seq, size] = dims;
    let rd = match ctx.attrs().int_or("rotary_embedding_dim", 0)? {
        0 => size,
        n => usize::try_from(n)
            .ok()
            .filter(|&n| n <= size && n % 2 == 0)
            .ok_or_else(|| {
                RuntimeError::msg(format!(
                    "rotary_embedding_dim {n} must be even and at most the head size {size}"
                ))
            })?,
    };
    if rd % 2 != 0 {
        bail!("rotary dimension {rd} must be even");
    }
    let half = rd / 2;
    let interleaved = ctx.attrs().int_or("interleaved", 0)? != 0;
    if cos_t.shape() != sin_t.shape() || cos_t.shape().last() != Some(&half) {
        bail!(
            "cos/sin caches {:?}/{:?} must match and end in rotary_dim/2 = {half}",
            cos_t.shape(),
            sin_t.shape()
        );
    }
    // Row of the caches for each (batch, position).
    let rows: Vec<usize> = match pos {
        Some(p) => {
            if p.shape() != [batch, seq] || cos_t.rank() != 2 {
                bail!(
                    "position_ids {:?} must be [{batch}, {seq}] with 2D caches, caches are {:?}",
                    p.shape(),
                    cos_t.shape()
                );
            }
            let max = cos_t.shape()[0];
            p.to_i64_vec()?
                .into_iter()
                .map(|i| {
                    usize::try_from(i).ok().filter(|&i| i < max).ok_or_else(|| {
                        RuntimeError::msg(format!("position id {i} out of range 0..{max}"))
                    })
                })
                .collect::<Result<_>>()?
        }
        None => {
            if cos_t.shape() != [batch, seq, half] {
                bail!(
                    "without position_ids the caches must be [{batch}, {seq}, {half}], got {:?}",
                    cos_t.shape()
                );
            }
            (0..batch * seq).collect()
        }
    };
    let (xd, cd, sd) = (load::<W>(x)?, load::<W>(cos_t)?, load::<W>(sin_t)?);
    let mut out = xd.to_vec();
    let layout: Heads<'_, ()> = view(&[], rank, dims);
    for b in 0..batch {
        for s in 0..seq {
            let r = rows[b * seq + s] * half;
            let (c, sn) = (&cd[r..r + half], &sd[r..r + half]);
            for h in 0..n_heads {
                let o = layout.at(b, h, s);
                let src = &xd[o..o + rd];
                let dst = &mut out[o..o + rd];
                for i in 0..half {
                    let (a, bb) = if interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (x1, x2) = (src[a], src[bb]);
                    dst[a] = c[i] * x1 - sn[i] * x2;
                    dst[bb] = sn[i] * x1 + c[i] * x2;
                }
            }
        }
    }
    Ok(vec![Value::Tensor(store(
        x.dtype(),
        x.shape().to_vec(),
        out,
    )?)])
}

#[cfg(test)]
mod tests {
    use crate::Interpreter;
    use egret_ir::{Attr, DType, Graph, OpCall, Shape, Tensor, Value, ValueType};

    const HIDDEN_Q: usize = 32; // 4 query heads of 8
    const HIDDEN_KV: usize = 16; // 2 key/value heads of 8

    /// Deterministic values in [-1, 1).
    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    /// Causal 3D GQA attention on `seq` new tokens, optionally after a cache of
    /// `past` tokens; returns `(Y, present_key, present_value)`.
    fn run(q: &[f32], k: &[f32], v: &[f32], past: Option<(&Tensor, &Tensor)>) -> Vec<Tensor> {
        let seq = q.len() / HIDDEN_Q;
        let f32_ty = |d: &[usize]| ValueType::tensor(DType::F32, Some(Shape::known(d)));
        let mut g = Graph::new("attn");
        let qi = g.add_input("q", f32_ty(&[1, seq, HIDDEN_Q]));
        let ki = g.add_input("k", f32_ty(&[1, seq, HIDDEN_KV]));
        let vi = g.add_input("v", f32_ty(&[1, seq, HIDDEN_KV]));
        let mut ins = vec![Some(qi), Some(ki), Some(vi), None];
        let mut vals = vec![
            Tensor::from_vec(vec![1, seq, HIDDEN_Q], q.to_vec()).unwrap(),
            Tensor::from_vec(vec![1, seq, HIDDEN_KV], k.to_vec()).unwrap(),
            Tensor::from_vec(vec![1, seq, HIDDEN_KV], v.to_vec()).unwrap(),
        ];
        if let Some((pk, pv)) = past {
            ins.push(Some(g.add_input("pk", f32_ty(pk.shape()))));
            ins.push(Some(g.add_input("pv", f32_ty(pv.shape()))));
            vals.extend([pk.clone(), pv.clone()]);
        }
        let call = OpCall::new("Attention")
            .with("q_num_heads", Attr::Int(4))
            .with("kv_num_heads", Attr::Int(2))
            .with("is_causal", Attr::Int(1));
        g.outputs = g.call("attn", call, &ins, 3).unwrap();
        Interpreter::new(&g)
            .unwrap()
            .run(vals.into_iter().map(Value::Tensor).collect())
            .unwrap()
            .into_iter()
            .map(|v| v.into_tensor().unwrap())
            .collect()
    }

    fn assert_close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-5, "[{i}]: {x} vs {y}");
        }
    }

    /// Decoding with a KV cache (4 cached tokens, then 2 new ones) gives the same
    /// outputs and cache as one causal pass over all 6 tokens.
    #[test]
    fn cached_decode_equals_full_recompute() {
        let (q, k, v) = (
            data(6 * HIDDEN_Q, 1),
            data(6 * HIDDEN_KV, 2),
            data(6 * HIDDEN_KV, 3),
        );
        let full = run(&q, &k, &v, None);
        let (cut_q, cut_kv) = (4 * HIDDEN_Q, 4 * HIDDEN_KV);
        let first = run(&q[..cut_q], &k[..cut_kv], &v[..cut_kv], None);
        let second = run(
            &q[cut_q..],
            &k[cut_kv..],
            &v[cut_kv..],
            Some((&first[1], &first[2])),
        );
        let y_full = full[0].as_slice::<f32>().unwrap();
        assert_close(&y_full[..cut_q], first[0].as_slice::<f32>().unwrap());
        assert_close(&y_full[cut_q..], second[0].as_slice::<f32>().unwrap());
        assert_eq!(second[1].shape(), &[1, 2, 6, 8]);
        assert_close(
            full[1].as_slice::<f32>().unwrap(),
            second[1].as_slice::<f32>().unwrap(),
        );
        assert_close(
            full[2].as_slice::<f32>().unwrap(),
            second[2].as_slice::<f32>().unwrap(),
        );
    }
}
