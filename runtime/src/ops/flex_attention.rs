//! Kernel: `ai.onnx.preview::FlexAttention`, scaled dot-product attention with
//! optional `score_mod` / `prob_mod` subgraphs run on the `(b, hq, l, s)`
//! scores and probabilities.
//!
//! The arithmetic runs in f64; the tensors handed to the modifier subgraphs
//! have the `softmax_precision` dtype (f32 unless the inputs are f64), as the
//! subgraphs' own constants expect.

use crate::error::{Result, RuntimeError};
use crate::kernels::convert::cast_tensor;
use crate::kernels::{checked_len, input, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{DType, Tensor, Value};

/// Register the kernel.
pub fn register(r: &mut Registry) {
    r.add_domain("ai.onnx.preview", "FlexAttention", flex_attention);
}

/// The dims of a rank-4 input.
fn dims4(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(t.shape())
        .map_err(|_| RuntimeError::msg(format!("{what} must be 4D, got shape {:?}", t.shape())))
}

/// Run modifier subgraph `name`, if the node has it, on `v` of shape `shape`
/// at dtype `prec`; `caps` are the node's captured outer values.
fn modify(
    ctx: &KernelCtx<'_>,
    name: &str,
    v: Vec<f64>,
    shape: &[usize],
    prec: DType,
    caps: &[Value],
) -> Result<Vec<f64>> {
    if ctx.attrs().get(name).is_none() {
        return Ok(v);
    }
    let g = ctx.attrs().graph(name)?;
    let t = cast_tensor(&Tensor::from_vec(shape.to_vec(), v)?, prec, false)?;
    let mut feeds = vec![Value::Tensor(t)];
    feeds.extend(caps.iter().cloned());
    let out = ctx.runner.run_subgraph(g, feeds)?;
    let r = out
        .first()
        .ok_or_else(|| RuntimeError::msg(format!("{name} yielded no output")))?
        .as_tensor()?;
    if r.shape() != shape {
        return Err(RuntimeError::msg(format!(
            "{name} turned shape {shape:?} into {:?}",
            r.shape()
        )));
    }
    Ok(r.to_f64_vec()?)
}

/// In-place softmax of every `s`-long row.
fn softmax_rows(v: &mut [f64], s: usize) {
    for row in v.chunks_mut(s.max(1)) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

fn flex_attention(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (q, k, v) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let [b, hq, l, e] = dims4(q, "Q")?;
    let [kb, hkv, s, ke] = dims4(k, "K")?;
    let [vb, vh, vs, ev] = dims4(v, "V")?;
    if kb != b || vb != b || ke != e || vh != hkv || vs != s {
        return Err(RuntimeError::msg(format!(
            "Q {:?}, K {:?} and V {:?} do not fit together",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(RuntimeError::msg(format!(
            "{hq} query heads are not a multiple of {hkv} kv heads"
        )));
    }
    let prec = match ctx.attrs().int_opt("softmax_precision")? {
        Some(code) => egret_ir::infer::onnx_dtype(code).map_err(RuntimeError::msg)?,
        None if q.dtype() == DType::F64 => DType::F64,
        None => DType::F32,
    };
    let scale = match ctx.attrs().float_opt("scale")? {
        Some(x) => x as f64,
        None => 1.0 / (e as f64).sqrt(),
    };
    let score_shape = [b, hq, l, s];
    let n = checked_len(&score_shape)?;
    checked_len(&[b, hq, l, ev])?;
    let (qv, kv, vv) = (q.to_f64_vec()?, k.to_f64_vec()?, v.to_f64_vec()?);
    let group = hq / hkv;
    // Offsets of head `(bi, h)` of Q (and Y's scores) and of its shared K/V head.
    let q_head = |bi: usize, h: usize| (bi * hq + h) * l;
    let kv_head = |bi: usize, h: usize| (bi * hkv + h / group) * s;
    let mut scores = Vec::with_capacity(n);
    for bi in 0..b {
        for h in 0..hq {
            for i in 0..l {
                let qr = &qv[(q_head(bi, h) + i) * e..][..e];
                for j in 0..s {
                    let kr = &kv[(kv_head(bi, h) + j) * e..][..e];
                    let dot: f64 = qr.iter().zip(kr).map(|(a, c)| a * c).sum();
                    scores.push(dot * scale);
                }
            }
        }
    }
    let caps: Vec<Value> = inputs[3..].iter().flatten().cloned().collect();
    let mut probs = modify(ctx, "score_mod", scores, &score_shape, prec, &caps)?;
    softmax_rows(&mut probs, s);
    let probs = modify(ctx, "prob_mod", probs, &score_shape, prec, &caps)?;
    let mut y = Vec::with_capacity(b * hq * l * ev);
    for bi in 0..b {
        for h in 0..hq {
            for i in 0..l {
                let pr = &probs[(q_head(bi, h) + i) * s..][..s];
                for c in 0..ev {
                    let acc: f64 = (0..s)
                        .map(|j| pr[j] * vv[(kv_head(bi, h) + j) * ev + c])
                        .sum();
                    y.push(acc);
                }
            }
        }
    }
    let y = Tensor::from_vec(vec![b, hq, l, ev], y)?;
    one(cast_tensor(&y, q.dtype(), false)?)
}

#[cfg(test)]
mod tests {
    use super::softmax_rows;

    #[test]
    fn softmax_rows_normalise_each_row() {
        let mut v = vec![0.0, (2f64).ln(), 1.0, 1.0];
        softmax_rows(&mut v, 2);
        let want = [1.0 / 3.0, 2.0 / 3.0, 0.5, 0.5];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{v:?}");
        }
    }
}
