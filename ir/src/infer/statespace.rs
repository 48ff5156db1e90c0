//! Inference rules of the state-carrying sequence mixers of recurrent / linear
//! attention models (opset 27): CausalConvWithState, LinearAttention.

use super::common::{tensor, R};
use super::shape::data_dim;
use super::{InferCtx, InferFn};
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "CausalConvWithState" => causal_conv_with_state,
        "LinearAttention" => linear_attention,
        _ => return None,
    })
}

/// Dim `i` of input `input`'s shape when its rank is `rank`, else a symbol.
fn dim(ctx: &InferCtx<'_>, input: usize, rank: usize, i: usize, what: &str) -> R<Dim> {
    match &ctx.tensor(input)?.shape {
        Some(s) if s.rank() == rank => Ok(s.dims()[i].clone()),
        Some(s) => Err(format!(
            "input {input} must have rank {rank}, got {}",
            s.rank()
        )),
        None => Ok(data_dim(ctx, what)),
    }
}

/// A known dim divided by `n`, else a symbol named `what`.
fn div_dim(ctx: &InferCtx<'_>, d: &Dim, n: i64, what: &str) -> R<Dim> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("head count must be positive, got {n}"))?;
    Ok(match d {
        Dim::Known(v) if v % n == 0 => Dim::Known(v / n),
        Dim::Known(v) => return Err(format!("dim {v} is not divisible by {n} heads")),
        Dim::Sym(_) => data_dim(ctx, what),
    })
}

/// `output` shaped like the input; `present_state` `[batch, channels, k - 1]`.
fn causal_conv_with_state(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let batch = dim(ctx, 0, 3, 0, "batch")?;
    let channels = dim(ctx, 0, 3, 1, "channels")?;
    let state = match dim(ctx, 1, 3, 2, "kernel")? {
        Dim::Known(0) => return Err("kernel size must be positive".into()),
        Dim::Known(k) => Dim::Known(k - 1),
        Dim::Sym(_) => data_dim(ctx, "state"),
    };
    Ok(vec![
        tensor(x.dtype, x.shape.clone()),
        tensor(x.dtype, Some(Shape(vec![batch, channels, state]))),
    ])
}

/// `output` `[B, T, H_q·d_v]` in the query's dtype; `present_state`
/// `[B, H_kv, d_k, d_v]` in the past state's dtype (the query's without one).
fn linear_attention(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let q = ctx.tensor(0)?;
    let attr = |name: &str| ctx.call.attrs.int(name).map_err(|e| e.to_string());
    let (hq, hkv) = (attr("q_num_heads")?, attr("kv_num_heads")?);
    if hkv <= 0 || hq <= 0 || hq % hkv != 0 {
        return Err(format!(
            "q_num_heads {hq} must be a positive multiple of kv_num_heads {hkv}"
        ));
    }
    let batch = dim(ctx, 0, 3, 0, "batch")?;
    let seq = dim(ctx, 0, 3, 1, "seq")?;
    let dk = div_dim(ctx, &dim(ctx, 0, 3, 2, "qdim")?, hq, "d_k")?;
    let dv = div_dim(ctx, &dim(ctx, 2, 3, 2, "vdim")?, hkv, "d_v")?;
    let out_last = match &dv {
        Dim::Known(v) => Dim::Known(
            v.checked_mul(hq as usize)
                .ok_or_else(|| format!("{hq} heads of size {v} overflow"))?,
        ),
        Dim::Sym(_) => data_dim(ctx, "out"),
    };
    let state_dt = ctx.opt_tensor(3)?.map_or(q.dtype, |s| s.dtype);
    Ok(vec![
        tensor(q.dtype, Some(Shape(vec![batch.clone(), seq, out_last]))),
        tensor(
            state_dt,
            Some(Shape(vec![batch, Dim::Known(hkv as usize), dk, dv])),
        ),
    ])
}
