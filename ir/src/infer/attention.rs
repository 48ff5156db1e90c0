//! Inference rules: Attention and RotaryEmbedding (opset 23).
//!
//! `Attention` takes Q/K/V either as 4D `(batch, heads, seq, head_size)` or as 3D
//! `(batch, seq, heads * head_size)` with the head counts in `q_num_heads` /
//! `kv_num_heads`. Its outputs are `Y` (same layout as Q, with V's head size),
//! `present_key` / `present_value` (always 4D, past and new keys concatenated
//! along the sequence axis) and `qk_matmul_output` `(batch, q_heads, q_seq,
//! total_seq)`. `RotaryEmbedding` keeps its input's type.

use super::common::{tensor, R};
use super::shape::dim_sum;
use super::{InferCtx, InferFn};
use crate::shape::{Dim, Shape, TensorType, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    match op {
        "Attention" => Some(infer_attention),
        "RotaryEmbedding" => Some(infer_rotary),
        _ => None,
    }
}

/// `d / n` for a head-size computation: known when `d` is, else a symbol.
fn dim_div(d: &Dim, n: usize) -> R<Dim> {
    match d {
        Dim::Known(x) if n == 0 || x % n != 0 => {
            Err(format!("hidden size {x} is not a multiple of {n} heads"))
        }
        Dim::Known(x) => Ok(Dim::Known(x / n)),
        Dim::Sym(s) => Ok(Dim::Sym(format!("({s}/{n})"))),
    }
}

/// The dims of a tensor input, if its rank is known; checks the rank is 3 or 4.
fn dims<'a>(t: &'a TensorType, what: &str) -> R<Option<&'a [Dim]>> {
    match &t.shape {
        None => Ok(None),
        Some(s) if s.rank() == 3 || s.rank() == 4 => Ok(Some(s.dims())),
        Some(s) => Err(format!("{what} must be 3D or 4D, got rank {}", s.rank())),
    }
}

/// A positive head-count attribute, if set.
fn heads(ctx: &InferCtx<'_>, name: &str) -> R<Option<usize>> {
    match ctx.call.attrs.int_opt(name).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(n) if n > 0 => Ok(usize::try_from(n).ok()),
        Some(n) => Err(format!("{name} must be positive, got {n}")),
    }
}

/// `(batch, heads, seq, head_size)` of a Q/K/V input in 4D terms.
fn as_4d(d: &[Dim], n_heads: Option<usize>, what: &str) -> R<[Dim; 4]> {
    if let [b, h, s, e] = d {
        return Ok([b.clone(), h.clone(), s.clone(), e.clone()]);
    }
    let n = n_heads.ok_or_else(|| format!("3D {what} needs its num_heads attribute"))?;
    match d {
        [b, s, hidden] => Ok([b.clone(), Dim::Known(n), s.clone(), dim_div(hidden, n)?]),
        _ => Err(format!("{what} must be 3D or 4D")),
    }
}

fn infer_attention(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (q, k, v) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    let dt = q.dtype;
    if k.dtype != dt || v.dtype != dt {
        return Err(format!(
            "Q, K, V must share a dtype, got {}, {}, {}",
            q.dtype, k.dtype, v.dtype
        ));
    }
    let (qd, kd, vd) = (dims(q, "Q")?, dims(k, "K")?, dims(v, "V")?);
    let (qh, kvh) = (heads(ctx, "q_num_heads")?, heads(ctx, "kv_num_heads")?);
    let (Some(qd), Some(kd), Some(vd)) = (qd, kd, vd) else {
        // Unknown ranks: only the dtypes are known.
        return Ok((0..ctx.num_outputs.max(1))
            .map(|_| tensor(dt, None))
            .collect());
    };
    if qd.len() != kd.len() || kd.len() != vd.len() {
        return Err("Q, K and V must all be 3D or all 4D".into());
    }
    let [b, hq, sq, _] = as_4d(qd, qh, "Q")?;
    let [_, hkv, skv, dk] = as_4d(kd, kvh, "K")?;
    let [_, _, _, dv] = as_4d(vd, kvh, "V")?;
    let past = match ctx.opt_tensor(4)?.and_then(|t| t.shape.as_ref()) {
        Some(s) if s.rank() == 4 => s.dims()[2].clone(),
        Some(s) => return Err(format!("past_key must be 4D, got rank {}", s.rank())),
        None if ctx.has_input(4) => Dim::Sym("attention_past".into()),
        None => Dim::Known(0),
    };
    let total = dim_sum(&[past, skv]);
    let y = if qd.len() == 4 {
        vec![b.clone(), hq.clone(), sq.clone(), dv.clone()]
    } else {
        let hidden = match (&hq, &dv) {
            (Dim::Known(h), Dim::Known(e)) => Dim::Known(
                h.checked_mul(*e)
                    .ok_or_else(|| format!("{h} heads of size {e} overflow"))?,
            ),
            _ => Dim::Sym(format!("({hq}*{dv})")),
        };
        vec![b.clone(), sq.clone(), hidden]
    };
    let out = [
        y,
        vec![b.clone(), hkv.clone(), total.clone(), dk],
        vec![b.clone(), hkv, total.clone(), dv],
        vec![b, hq, sq, total],
    ];
    Ok(out
        .into_iter()
        .take(ctx.num_outputs.max(1))
        .map(|d| tensor(dt, Some(Shape(d))))
        .collect())
}

/// The rule for an `ai.onnx.preview` op of this family.
pub(super) fn preview_rule(op: &str) -> Option<InferFn> {
    match op {
        "FlexAttention" => Some(infer_flex_attention),
        _ => None,
    }
}

/// FlexAttention: 4D Q `(b, hq, l, e)`, K `(b, hkv, s, e)`, V `(b, hkv, s, ev)`
/// give Y `(b, hq, l, ev)`; `hq` must be a multiple of `hkv`.
fn infer_flex_attention(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (q, k, v) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    if k.dtype != q.dtype || v.dtype != q.dtype {
        return Err(format!(
            "Q, K, V must share a dtype, got {}, {}, {}",
            q.dtype, k.dtype, v.dtype
        ));
    }
    let rank4 = |t: &TensorType, what: &str| -> R<Option<Vec<Dim>>> {
        match &t.shape {
            None => Ok(None),
            Some(s) if s.rank() == 4 => Ok(Some(s.dims().to_vec())),
            Some(s) => Err(format!("{what} must be 4D, got rank {}", s.rank())),
        }
    };
    let (qd, kd, vd) = (rank4(q, "Q")?, rank4(k, "K")?, rank4(v, "V")?);
    if let (Some(qd), Some(kd)) = (&qd, &kd) {
        if let (Some(hq), Some(hkv)) = (qd[1].known(), kd[1].known()) {
            if hkv == 0 || hq % hkv != 0 {
                return Err(format!(
                    "{hq} query heads are not a multiple of {hkv} kv heads"
                ));
            }
        }
    }
    let shape = match (qd, vd) {
        (Some(qd), Some(vd)) => Some(Shape(vec![
            qd[0].clone(),
            qd[1].clone(),
            qd[2].clone(),
            vd[3].clone(),
        ])),
        _ => None,
    };
    Ok(vec![tensor(q.dtype, shape)])
}

fn infer_rotary(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    if let Some(s) = &x.shape {
        if s.rank() != 3 && s.rank() != 4 {
            return Err(format!("input must be 3D or 4D, got rank {}", s.rank()));
        }
        if s.rank() == 3 && heads(ctx, "num_heads")?.is_none() {
            return Err("3D input needs the num_heads attribute".into());
        }
    }
    Ok(vec![tensor(x.dtype, x.shape.clone())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::dtype::DType;
    use crate::graph::OpCall;
    use crate::infer::InputFact;

    fn fact(t: &ValueType) -> Option<InputFact<'_>> {
        Some(InputFact { ty: t, value: None })
    }

    #[test]
    fn attention_3d_gqa_with_past() {
        let f = |d: &[usize]| ValueType::tensor(DType::F32, Some(Shape::known(d)));
        let (q, k, v) = (f(&[2, 5, 64]), f(&[2, 5, 32]), f(&[2, 5, 24]));
        let (pk, pv) = (f(&[2, 2, 7, 16]), f(&[2, 2, 7, 12]));
        let call = OpCall::new("Attention")
            .with("q_num_heads", Attr::Int(4))
            .with("kv_num_heads", Attr::Int(2));
        let inputs = [fact(&q), fact(&k), fact(&v), None, fact(&pk), fact(&pv)];
        let out = infer_attention(&InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 4,
        })
        .unwrap();
        assert_eq!(out[0], f(&[2, 5, 48]));
        assert_eq!(out[1], f(&[2, 2, 12, 16]));
        assert_eq!(out[2], f(&[2, 2, 12, 12]));
        assert_eq!(out[3], f(&[2, 4, 5, 12]));
    }

    #[test]
    fn attention_3d_needs_head_counts() {
        let t = ValueType::tensor(DType::F32, Some(Shape::known(&[1, 3, 8])));
        let call = OpCall::new("Attention");
        let inputs = [fact(&t), fact(&t), fact(&t)];
        let ctx = InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 1,
        };
        assert!(infer_attention(&ctx).is_err());
    }

    #[test]
    fn attention_4d_symbolic_total_length() {
        let sym = |d: [&str; 4]| {
            ValueType::tensor(
                DType::F32,
                Some(Shape(d.iter().map(|s| Dim::Sym((*s).into())).collect())),
            )
        };
        let q = sym(["b", "h", "s", "e"]);
        let p = sym(["b", "h", "p", "e"]);
        let call = OpCall::new("Attention");
        let inputs = [fact(&q), fact(&q), fact(&q), None, fact(&p), fact(&p)];
        let out = infer_attention(&InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 2,
        })
        .unwrap();
        let s = out[1].as_tensor().unwrap().shape.clone().unwrap();
        assert_eq!(s.dims()[2], Dim::Sym("(p+s)".into()));
    }
}
