//! ONNX `Attention` (opset 23) on f32 through `kernels/attention.c`: 3-D and
//! 4-D Q/K/V, grouped key/value heads, a bool or additive mask broadcast to
//! `(batch, q_heads, q_seq, keys)`, `is_causal`, `scale`, `softcap`, a KV
//! cache (`past_key`/`past_value` in, `present_key`/`present_value` out),
//! `nonpad_kv_seqlen`, and the `qk_matmul_output` of every mode. The shapes
//! are checked here as the interpreter checks them at run time.

use super::{require_f32, Node};
use crate::c::ctype::f32_lit;
use crate::c::{Ctx, EmitError, Kernel};
use crate::program::BufferId;
use egret_ir::DType;

/// A Q/K/V/Y operand as `(batch, heads, seq, size)` and its element strides
/// for batch, head and sequence (the size axis is contiguous).
struct Heads {
    dims: [usize; 4],
    strides: [usize; 3],
}

impl Heads {
    /// The view of a rank-`rank` tensor of `dims`: 4-D is `(b, h, s, d)`,
    /// 3-D is `(b, s, h · d)`.
    fn new(rank: usize, dims: [usize; 4]) -> Heads {
        let [_, h, s, d] = dims;
        let strides = if rank == 4 {
            [h * s * d, s * d, d]
        } else {
            [s * h * d, d, h * d]
        };
        Heads { dims, strides }
    }
}

/// `(batch, heads, seq, size)` of operand `b`; a 3-D operand splits its last
/// axis into `heads` (from the attribute `attr`).
fn heads_of(
    cx: &Ctx<'_>,
    n: &Node<'_>,
    b: BufferId,
    attr: &str,
    what: &str,
) -> Result<Heads, EmitError> {
    match *cx.shape(b) {
        [bt, h, s, d] => Ok(Heads::new(4, [bt, h, s, d])),
        [bt, s, hidden] => {
            let h = usize::try_from(n.int(attr, 0)?).unwrap_or(0);
            if h == 0 || hidden % h != 0 {
                return Err(n.unsupported(format!("{what} hidden size {hidden} with `{attr}` {h}")));
            }
            Ok(Heads::new(3, [bt, h, s, hidden / h]))
        }
        ref s => Err(n.unsupported(format!("{what} of shape {s:?} (3-D or 4-D)"))),
    }
}

/// The mask's strides for batch, head and query row (0 where broadcast) and
/// its width, for a mask broadcast to `(batch, heads, q_seq, ≤ total)`.
fn mask_geometry(
    n: &Node<'_>,
    shape: &[usize],
    [b, h, s]: [usize; 3],
    total: usize,
) -> Result<([usize; 3], usize), EmitError> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(n.unsupported(format!("a mask of shape {shape:?}")));
    }
    let mut d = [1usize; 4];
    d[4 - shape.len()..].copy_from_slice(shape);
    let fits = |m: usize, want: usize| m == 1 || m == want;
    if !fits(d[0], b) || !fits(d[1], h) || !fits(d[2], s) || d[3] > total {
        return Err(n.unsupported(format!(
            "a mask of shape {shape:?} for ({b}, {h}, {s}, {total}) scores"
        )));
    }
    let full = [d[1] * d[2] * d[3], d[2] * d[3], d[3]];
    let strides = [0, 1, 2].map(|i| if d[i] == 1 { 0 } else { full[i] });
    Ok((strides, d[3]))
}

/// `{a, b, c}` as a C initializer.
fn triple(v: [usize; 3]) -> String {
    format!("{{{}, {}, {}}}", v[0], v[1], v[2])
}

/// Attention: one call of `egret_attention_f32` with the geometry as a
/// `static const` struct.
pub(super) fn attention(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (q, k, v) = (n.input(0)?, n.input(1)?, n.input(2)?);
    let (past_k, past_v) = (n.opt_input(4), n.opt_input(5));
    let y = *n
        .outputs
        .first()
        .ok_or_else(|| n.unsupported("no output"))?;
    let opt_out = |i: usize| n.outputs.get(i).copied();
    let (present_k, present_v, qk) = (opt_out(1), opt_out(2), opt_out(3));
    let floats = [Some(q), Some(k), Some(v), past_k, past_v, Some(y)];
    for b in floats
        .into_iter()
        .chain([present_k, present_v, qk])
        .flatten()
    {
        require_f32(cx, n, b)?;
    }
    let rank = cx.shape(q).len();
    if cx.shape(k).len() != rank || cx.shape(v).len() != rank {
        return Err(n.unsupported("Q, K and V of different ranks"));
    }
    let qh = heads_of(cx, n, q, "q_num_heads", "Q")?;
    let kh = heads_of(cx, n, k, "kv_num_heads", "K")?;
    let vh = heads_of(cx, n, v, "kv_num_heads", "V")?;
    let [batch, q_heads, q_seq, dk] = qh.dims;
    let [_, kv_heads, kv_seq, dv] = vh.dims;
    if kh.dims != [batch, kv_heads, kv_seq, dk]
        || vh.dims[0] != batch
        || kv_heads == 0
        || q_heads % kv_heads != 0
    {
        return Err(n.unsupported(format!(
            "shapes Q {:?}, K {:?}, V {:?} (as batch, heads, seq, size)",
            qh.dims, kh.dims, vh.dims
        )));
    }
    let past = match (past_k, past_v) {
        (None, None) => 0,
        (Some(pk), Some(pv)) => {
            let p = cx.shape(pk).get(2).copied().unwrap_or(0);
            if cx.shape(pk) != [batch, kv_heads, p, dk] || cx.shape(pv) != [batch, kv_heads, p, dv]
            {
                return Err(n.unsupported("a past key/value cache of another shape"));
            }
            p
        }
        _ => return Err(n.unsupported("only one of past_key and past_value")),
    };
    let total = past + kv_seq;
    let y_view = Heads::new(rank, [batch, q_heads, q_seq, dv]);

    let (mut mask_bool, mut mask_add) = ("NULL".to_string(), "NULL".to_string());
    let (mut mask_st, mut mask_width) = ([0; 3], total);
    if let Some(m) = n.opt_input(3) {
        (mask_st, mask_width) = mask_geometry(n, cx.shape(m), [batch, q_heads, q_seq], total)?;
        match cx.dtype(m) {
            DType::Bool => mask_bool = cx.ptr(m)?,
            DType::F32 => mask_add = cx.ptr(m)?,
            d => return Err(n.unsupported(format!("a {d} mask (bool and f32 are supported)"))),
        }
    }
    let nonpad = match n.opt_input(6) {
        Some(b) if cx.dtype(b) == DType::I64 && cx.shape(b) == [batch] => cx.ptr(b)?,
        Some(_) => return Err(n.unsupported("nonpad_kv_seqlen that is not i64 [batch]")),
        None => "NULL".into(),
    };
    let scale = match n
        .attrs
        .float_opt("scale")
        .map_err(|e| n.unsupported(e.to_string()))?
    {
        Some(s) => s,
        None => 1.0 / (dk as f32).sqrt(),
    };
    let qk_mode = n.int("qk_matmul_output_mode", 0)?;
    if !(0..=3).contains(&qk_mode) {
        return Err(n.unsupported(format!("qk_matmul_output_mode {qk_mode}")));
    }
    let causal = i32::from(n.int("is_causal", 0)? != 0);
    let softcap = f32_lit(n.float("softcap", 0.0)?);
    let mut ptr_or_null = |b: Option<BufferId>| b.map_or(Ok("NULL".into()), |b| cx.ptr(b));
    let (pk, pv) = (ptr_or_null(past_k)?, ptr_or_null(past_v)?);
    let (ok, ov, oqk) = (
        ptr_or_null(present_k)?,
        ptr_or_null(present_v)?,
        ptr_or_null(qk)?,
    );
    let (qp, kp, vp, yp) = (cx.ptr(q)?, cx.ptr(k)?, cx.ptr(v)?, cx.ptr(y)?);
    cx.use_kernel(Kernel::Attention);
    Ok(format!(
        "static const egret_attention_dims d = {{{batch}, {q_heads}, {kv_heads}, {q_seq}, \
         {kv_seq}, {past}, {dk}, {dv}, {}, {}, {}, {}, {}, {mask_width}}};\n\
         if (egret_attention_f32(&d, {}, {softcap}, {causal}, {qk_mode}, {qp}, {kp}, {vp}, \
         {mask_bool}, {mask_add}, {pk}, {pv}, {nonpad}, {yp}, {ok}, {ov}, {oqk}))\n    return 1;\n",
        triple(qh.strides),
        triple(kh.strides),
        triple(vh.strides),
        triple(y_view.strides),
        triple(mask_st),
        f32_lit(scale),
    ))
}
