//! ONNX RotaryEmbedding (opset 23): the first `rotary_embedding_dim` values
//! of every head rotated by the cos/sin caches, in the half-split or the
//! interleaved layout, the rest copied; as the interpreter computes it
//! (`runtime/src/ops/attention.rs`), in the input's float type.

use super::Node;
use crate::c::ctype::ctype;
use crate::c::{Ctx, EmitError};
use egret_ir::DType;

/// RotaryEmbedding on a 4-D `(batch, heads, seq, size)` input or a 3-D
/// `(batch, seq, heads · size)` one (`num_heads`). With `position_ids`
/// (`[batch, seq]`, run-time) each token reads row `position` of 2-D caches
/// (a position out of range makes `egret_model` return 1); without, the
/// caches are `[batch, seq, rotary_dim / 2]`.
pub(super) fn rotary(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, cos, sin, o) = (n.input(0)?, n.input(1)?, n.input(2)?, n.output()?);
    if !matches!(cx.dtype(x), DType::F32 | DType::F64) {
        return Err(n.unsupported(format!("on {}", cx.dtype(x))));
    }
    if cx.dtype(cos) != cx.dtype(x) || cx.dtype(sin) != cx.dtype(x) {
        return Err(n.unsupported("caches of another type than the input"));
    }
    let (rank4, [batch, heads, seq, size]) = match *cx.shape(x) {
        [b, h, s, d] => (true, [b, h, s, d]),
        [b, s, hidden] => {
            let h = usize::try_from(n.int("num_heads", 0)?)
                .ok()
                .filter(|&h| h > 0 && hidden % h == 0)
                .ok_or_else(|| n.unsupported("a 3-D input without a num_heads dividing it"))?;
            (false, [b, h, s, hidden / h])
        }
        _ => return Err(n.unsupported("an input that is not 3-D or 4-D")),
    };
    let rd = match n.int("rotary_embedding_dim", 0)? {
        0 => size,
        r => usize::try_from(r)
            .ok()
            .filter(|&r| r <= size && r % 2 == 0)
            .ok_or_else(|| n.unsupported(format!("rotary_embedding_dim {r}")))?,
    };
    let half = rd / 2;
    let cshape = cx.shape(cos);
    if cshape != cx.shape(sin) || cshape.last() != Some(&half) || rd % 2 != 0 {
        return Err(n.unsupported("caches that do not end in rotary_dim / 2"));
    }
    let row = match n.opt_input(3) {
        Some(p) => {
            if cx.shape(p) != [batch, seq] || cshape.len() != 2 || !cx.dtype(p).is_int() {
                return Err(n.unsupported("position_ids that are not [batch, seq] integers"));
            }
            format!(
                "(long)(({} *){})[b * {seq} + s];\n\
                 \x20   if (r < 0 || r >= {max}) return 1;",
                ctype(cx.dtype(p))?,
                cx.ptr(p)?,
                max = cshape[0]
            )
        }
        None if cshape == [batch, seq, half] => format!("b * {seq} + s;"),
        None => return Err(n.unsupported("caches that are not [batch, seq, rotary_dim / 2]")),
    };
    let (a, b) = if n.int("interleaved", 0)? != 0 {
        ("2 * i", "2 * i + 1".to_string())
    } else {
        ("i", format!("i + {half}"))
    };
    let offset = if rank4 {
        format!("((b * {heads} + h) * {seq} + s) * {size}")
    } else {
        format!("(b * {seq} + s) * {} + h * {size}", heads * size)
    };
    let t = ctype(cx.dtype(x))?;
    Ok(format!(
        "const {t} *x = {xp}, *cs = {cp}, *sn = {sp};\n{t} *o = {op};\n\
         for (long b = 0; b < {batch}; b++) for (long s = 0; s < {seq}; s++) {{\n\
         \x20   long r = {row}\n\
         \x20   const {t} *c = cs + r * {half}, *sv = sn + r * {half};\n\
         \x20   for (long h = 0; h < {heads}; h++) {{\n\
         \x20       const long off = {offset};\n\
         \x20       for (long i = 0; i < {half}; i++) {{\n\
         \x20           const {t} x1 = x[off + {a}], x2 = x[off + {b}];\n\
         \x20           o[off + {a}] = c[i] * x1 - sv[i] * x2;\n\
         \x20           o[off + {b}] = sv[i] * x1 + c[i] * x2;\n\
         \x20       }}\n\
         \x20       for (long i = {rd}; i < {size}; i++) o[off + i] = x[off + i];\n\
         \x20   }}\n\
         }}\n",
        xp = cx.ptr(x)?,
        cp = cx.ptr(cos)?,
        sp = cx.ptr(sin)?,
        op = cx.ptr(o)?,
    ))
}
