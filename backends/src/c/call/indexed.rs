//! Ops whose loops work with element coordinates rather than strides alone:
//! Range, Trilu and GatherElements. Scalar operands (Range's bounds,
//! Trilu's `k`) are read at run time, so they may be computed values.

use super::Node;
use crate::c::ctype::ctype;
use crate::c::strided::contiguous_strides;
use crate::c::{Ctx, EmitError};

/// Range: `start + i · delta` for the traced length.
pub(super) fn range(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (s, d, o) = (n.input(0)?, n.input(2)?, n.output()?);
    let t = ctype(cx.dtype(o))?;
    let len: usize = cx.shape(o).iter().product();
    Ok(format!(
        "for (long i = 0; i < {len}; i++) {o}[i] = ({t})({s}[0] + ({t})i * {d}[0]);\n",
        o = cx.ptr(o)?,
        s = cx.ptr(s)?,
        d = cx.ptr(d)?,
    ))
}

/// Trilu: the upper (`upper = 1`) or lower triangle of the last two axes
/// from diagonal `k`, the rest zero.
pub(super) fn trilu(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, o) = (n.input(0)?, n.output()?);
    let shape = cx.shape(x);
    if shape.len() < 2 {
        return Err(n.unsupported("a tensor of rank below 2"));
    }
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let batch: usize = shape[..shape.len() - 2].iter().product();
    let k = match n.opt_input(1) {
        Some(b) => format!("(long){}[0]", cx.ptr(b)?),
        None => "0".into(),
    };
    let keep = if n.int("upper", 1)? != 0 {
        "j - i >= k"
    } else {
        "j - i <= k"
    };
    Ok(format!(
        "const long k = {k};\n\
         for (long b = 0; b < {batch}; b++) for (long i = 0; i < {rows}; i++) for (long j = 0; j < {cols}; j++) {{\n\
         \x20   const long at = (b * {rows} + i) * {cols} + j;\n\
         \x20   {o}[at] = {keep} ? {x}[at] : 0;\n\
         }}\n",
        o = cx.ptr(o)?,
        x = cx.ptr(x)?,
    ))
}

/// GatherElements along `axis`: `out[p] = data[p with p[axis] = index[p]]`
/// (negative indices wrap; one out of range makes `egret_model` return 1).
pub(super) fn gather_elements(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (d, ix, o) = (n.input(0)?, n.input(1)?, n.output()?);
    let (dshape, ishape) = (cx.shape(d), cx.shape(ix));
    if dshape.len() != ishape.len() || dshape.is_empty() {
        return Err(n.unsupported("data and indices of different ranks"));
    }
    let axis = n.axis(n.int("axis", 0)?, dshape.len())?;
    let dst = contiguous_strides(dshape);
    let mut code = format!(
        "const {it} *ix = {ip};\nlong at = 0;\n",
        it = ctype(cx.dtype(ix))?,
        ip = cx.ptr(ix)?
    );
    for (a, dim) in ishape.iter().enumerate() {
        code += &format!("for (long i{a} = 0; i{a} < {dim}; i{a}++) ");
    }
    let offset: Vec<String> = (0..dshape.len())
        .map(|a| {
            let v = if a == axis {
                "k".into()
            } else {
                format!("i{a}")
            };
            format!("{v} * {}", dst[a])
        })
        .collect();
    let dim = dshape[axis];
    code += &format!(
        "{{\n\
         \x20   long k = (long)ix[at];\n\
         \x20   if (k < 0) k += {dim};\n\
         \x20   if (k < 0 || k >= {dim}) return 1;\n\
         \x20   {o}[at++] = {dp}[{off}];\n\
         }}\n",
        o = cx.ptr(o)?,
        dp = cx.ptr(d)?,
        off = offset.join(" + ")
    );
    Ok(code)
}
