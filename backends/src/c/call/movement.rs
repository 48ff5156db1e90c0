//! Data movement on every dtype: reshapes (copies), transposes, concat,
//! split, slice, gather, expand/tile and constant padding, each a strided
//! copy with its offsets and strides computed here from the traced shapes.

use super::{Node, Operand};
use crate::c::strided::{contiguous_strides, nest};
use crate::c::{ctype::ctype, Ctx, EmitError};

/// `out = in` over `dims`, through the given operands.
fn copy_nest(dims: &[usize], out: Operand, inp: Operand) -> String {
    nest(dims, &[out, inp], "i", &|e| {
        format!("    {} = {};\n", e[0], e[1])
    })
}

/// Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (inference):
/// the bytes are unchanged.
pub(super) fn copy(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o) = (n.input(0)?, n.output()?);
    let training = n.op == "Dropout" && n.const_ints(cx, 2)?.is_some_and(|t| t != [0]);
    if training {
        return Err(n.unsupported("training mode"));
    }
    let bytes = cx.p.buffers[o].bytes;
    if i == o || bytes == 0 {
        return Ok(String::new());
    }
    Ok(format!(
        "memcpy({}, {}, {bytes});\n",
        cx.ptr(o)?,
        cx.ptr(i)?
    ))
}

/// Transpose by `perm` (default: reversed axes).
pub(super) fn transpose(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o) = (n.input(0)?, n.output()?);
    let ishape = cx.shape(i);
    let rank = ishape.len();
    let perm: Vec<usize> = match n.ints("perm")? {
        Some(p) => p
            .iter()
            .map(|&a| n.axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).rev().collect(),
    };
    let ist = contiguous_strides(ishape);
    let inp = Operand {
        ptr: cx.ptr(i)?,
        offset: 0,
        strides: perm.iter().map(|&a| ist[a]).collect(),
    };
    let oshape = cx.shape(o);
    Ok(copy_nest(
        oshape,
        Operand::contiguous(cx.ptr(o)?, oshape),
        inp,
    ))
}

/// Concat along `axis`: each input copied into its slab of the output.
pub(super) fn concat(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let o = n.output()?;
    let oshape = cx.shape(o);
    let axis = n.axis(n.int("axis", 0)?, oshape.len())?;
    let ost = contiguous_strides(oshape);
    let mut code = String::new();
    let mut at = 0i64;
    for &i in n.inputs.iter().flatten() {
        let ishape = cx.shape(i);
        let out = Operand {
            ptr: cx.ptr(o)?,
            offset: at * ost.get(axis).copied().unwrap_or(0),
            strides: ost.clone(),
        };
        code += &copy_nest(ishape, out, Operand::contiguous(cx.ptr(i)?, ishape));
        at += ishape.get(axis).copied().unwrap_or(0) as i64;
    }
    Ok(code)
}

/// Split along `axis`; the pieces' sizes are the traced output shapes.
pub(super) fn split(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let i = n.input(0)?;
    let ishape = cx.shape(i);
    let axis = n.axis(n.int("axis", 0)?, ishape.len())?;
    let ist = contiguous_strides(ishape);
    let mut code = String::new();
    let mut at = 0i64;
    for &o in n.outputs {
        let oshape = cx.shape(o);
        let inp = Operand {
            ptr: cx.ptr(i)?,
            offset: at * ist[axis],
            strides: ist.clone(),
        };
        code += &copy_nest(oshape, Operand::contiguous(cx.ptr(o)?, oshape), inp);
        at += oshape[axis] as i64;
    }
    Ok(code)
}

/// ONNX Slice clamping of one axis of size `d`: first index and step.
fn slice_axis(start: i64, end: i64, step: i64, d: usize) -> Option<(i64, i64, usize)> {
    if step == 0 || step == i64::MIN {
        return None;
    }
    let d = d as i128;
    let (s, e, st) = (start as i128, end as i128, step as i128);
    let s = if s < 0 { s + d } else { s };
    let e = if e < 0 { e + d } else { e };
    let (s, e) = if st > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, d - 1), e.clamp(-1, d - 1))
    };
    let len = if st > 0 {
        (e - s + st - 1) / st
    } else {
        (s - e - st - 1) / -st
    };
    Some((s as i64, step, len.max(0) as usize))
}

/// Slice with constant starts, ends, axes and steps.
pub(super) fn slice(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o) = (n.input(0)?, n.output()?);
    let ishape = cx.shape(i);
    let oshape = cx.shape(o);
    let runtime = (1..5).any(|k| n.opt_input(k).is_some_and(|b| cx.const_value(b).is_none()));
    if runtime {
        return slice_at_run_time(cx, n);
    }
    let starts = n.const_ints(cx, 1)?.unwrap_or_default();
    let ends = n.const_ints(cx, 2)?.unwrap_or_default();
    let axes = n
        .const_ints(cx, 3)?
        .unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = n
        .const_ints(cx, 4)?
        .unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(n.unsupported("starts, ends, axes and steps differ in length"));
    }
    let ist = contiguous_strides(ishape);
    let mut strides = ist.clone();
    let mut offset = 0i64;
    for k in 0..starts.len() {
        let a = n.axis(axes[k], ishape.len())?;
        let (s, step, len) = slice_axis(starts[k], ends[k], steps[k], ishape[a])
            .ok_or_else(|| n.unsupported("invalid step"))?;
        if len != oshape[a] {
            return Err(n.unsupported("the slice does not match the traced shape"));
        }
        if len > 0 {
            offset += s * ist[a];
        }
        strides[a] = step * ist[a];
    }
    let inp = Operand {
        ptr: cx.ptr(i)?,
        offset,
        strides,
    };
    Ok(copy_nest(
        oshape,
        Operand::contiguous(cx.ptr(o)?, oshape),
        inp,
    ))
}

/// Slice whose starts, ends, axes or steps are computed at run time: the
/// offset and strides are computed (and the output shape checked, else
/// `egret_model` returns 1) before the copy.
fn slice_at_run_time(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o) = (n.input(0)?, n.output()?);
    let (ishape, oshape) = (cx.shape(i), cx.shape(o));
    let rank = ishape.len();
    if rank == 0 {
        return Err(n.unsupported("a scalar input"));
    }
    let list = |v: &[usize]| {
        v.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cst = egret_runtime::kernels::strided::strides_of(ishape);
    let count: usize = cx.shape(n.input(1)?).iter().product();
    let operand = |cx: &mut Ctx<'_>, k: usize, default: &str| -> Result<String, EmitError> {
        Ok(match n.opt_input(k) {
            Some(b) => format!("(int64_t){}[q]", cx.ptr(b)?),
            None => default.to_string(),
        })
    };
    let starts = operand(cx, 1, "0")?;
    let ends = operand(cx, 2, "0")?;
    let axes = operand(cx, 3, "q")?;
    let steps = operand(cx, 4, "1")?;
    let mut code = format!(
        "static const int64_t dims[{rank}] = {{{d}}}, outs[{rank}] = {{{od}}}, cst[{rank}] = {{{c}}};
         int64_t st[{rank}] = {{{c}}}, off = 0;
         for (long q = 0; q < {count}; q++) {{
             int64_t a = {axes}, d, s = {starts}, e = {ends}, step = {steps}, len;
             if (a < 0) a += {rank};
             if (a < 0 || a >= {rank} || step == 0) return 1;
             d = dims[a];
             if (s < 0) s += d;
             if (e < 0) e += d;
             if (step > 0) {{
                 s = s < 0 ? 0 : (s > d ? d : s);
                 e = e < 0 ? 0 : (e > d ? d : e);
                 len = (e - s + step - 1) / step;
             }} else {{
                 s = s < 0 ? 0 : (s > d - 1 ? d - 1 : s);
                 e = e < -1 ? -1 : (e > d - 1 ? d - 1 : e);
                 len = (s - e - step - 1) / -step;
             }}
             if (len < 0) len = 0;
             if (len != outs[a]) return 1;
             if (len > 0) off += s * cst[a];
             st[a] = step * cst[a];
         }}
         {{
    long at = 0;
    ",
        d = list(ishape),
        od = list(oshape),
        c = list(&cst),
    );
    for (a, d) in oshape.iter().enumerate() {
        code += &format!("for (long i{a} = 0; i{a} < {d}; i{a}++) ");
    }
    let index: Vec<String> = (0..rank).map(|a| format!("i{a} * st[{a}]")).collect();
    code += &format!(
        "{o}[at++] = {x}[off + {}];\n}}\n",
        index.join(" + "),
        o = cx.ptr(o)?,
        x = cx.ptr(i)?
    );
    Ok(code)
}

/// Gather along `axis` with run-time indices (negative ones wrap; an index
/// out of range makes `egret_model` return 1).
pub(super) fn gather(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (d, ix, o) = (n.input(0)?, n.input(1)?, n.output()?);
    let dshape = cx.shape(d);
    let axis = n.axis(n.int("axis", 0)?, dshape.len())?;
    let outer: usize = dshape[..axis].iter().product();
    let inner: usize = dshape[axis + 1..].iter().product();
    let dim = dshape[axis];
    let count: usize = cx.shape(ix).iter().product();
    let t = ctype(cx.dtype(d))?;
    let it = ctype(cx.dtype(ix))?;
    Ok(format!(
        "const {t} *d = {dp};\nconst {it} *ix = {ip};\n{t} *o = {op};\n\
         for (long i0 = 0; i0 < {outer}; i0++) for (long i1 = 0; i1 < {count}; i1++) {{\n\
         \x20   long k = (long)ix[i1];\n\
         \x20   if (k < 0) k += {dim};\n\
         \x20   if (k < 0 || k >= {dim}) return 1;\n\
         \x20   for (long i2 = 0; i2 < {inner}; i2++)\n\
         \x20       o[(i0 * {count} + i1) * {inner} + i2] = d[(i0 * {dim} + k) * {inner} + i2];\n\
         }}\n",
        dp = cx.ptr(d)?,
        ip = cx.ptr(ix)?,
        op = cx.ptr(o)?,
    ))
}

/// Expand (numpy broadcast) and Tile (each axis `r` times): the input read
/// with stride 0 along the repeated axes.
pub(super) fn repeat(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o) = (n.input(0)?, n.output()?);
    let (ishape, oshape) = (cx.shape(i), cx.shape(o));
    let out = Operand::contiguous(cx.ptr(o)?, oshape);
    if n.op == "Expand" {
        let inp = Operand::broadcast(cx.ptr(i)?, ishape, oshape);
        return Ok(copy_nest(oshape, out, inp));
    }
    if ishape.len() != oshape.len() {
        return Err(n.unsupported("the output rank differs from the input's"));
    }
    // Output axis a of size r·d is the pair (r, d), row-major.
    let ist = contiguous_strides(ishape);
    let mut dims = Vec::new();
    let mut strides = Vec::new();
    for (a, (&d, &od)) in ishape.iter().zip(oshape).enumerate() {
        dims.push(od.checked_div(d).unwrap_or(0));
        dims.push(d);
        strides.extend([0, ist[a]]);
    }
    let inp = Operand {
        ptr: cx.ptr(i)?,
        offset: 0,
        strides,
    };
    let out = Operand::contiguous(out.ptr, &dims);
    Ok(copy_nest(&dims, out, inp))
}

/// Pad in `constant`, `edge`, `reflect` or `wrap` mode, with pads (and
/// axes, and the constant) that may be computed at run time: each output
/// element's source coordinate is mapped per axis. Pads that do not give
/// the traced output shape make `egret_model` return 1.
pub(super) fn pad(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o, pads) = (n.input(0)?, n.output()?, n.input(1)?);
    let mode = n
        .attrs
        .string_or("mode", "constant")
        .map_err(|e| n.unsupported(e.to_string()))?;
    let (ishape, oshape) = (cx.shape(i), cx.shape(o));
    let rank = ishape.len();
    if rank == 0 {
        return Err(n.unsupported("a scalar input"));
    }
    let map = match mode {
        "constant" => "",
        "edge" => "c = c < 0 ? 0 : (c >= d ? d - 1 : c);",
        "reflect" => {
            "if (d == 1) c = 0; else { const int64_t p = 2 * (d - 1); c %= p; if (c < 0) c += p; if (c >= d) c = p - c; }"
        }
        "wrap" => "c %= d; if (c < 0) c += d;",
        other => return Err(n.unsupported(format!("mode `{other}`"))),
    };
    if mode != "constant" && ishape.contains(&0) {
        return Err(n.unsupported("an empty input"));
    }
    let list = |v: &[i64]| {
        v.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cst = contiguous_strides(ishape);
    let idims: Vec<i64> = ishape.iter().map(|&d| d as i64).collect();
    let odims: Vec<i64> = oshape.iter().map(|&d| d as i64).collect();
    let count = cx.shape(pads).iter().product::<usize>() / 2;
    let axes = match n.opt_input(3) {
        Some(b) => format!("(int64_t){}[q]", cx.ptr(b)?),
        None => "q".into(),
    };
    let value = match n.opt_input(2) {
        Some(v) if cx.shape(v).iter().product::<usize>() == 1 => format!("{}[0]", cx.ptr(v)?),
        _ => "0".into(),
    };
    let mut code = format!(
        "static const int64_t dims[{rank}] = {{{d}}}, outs[{rank}] = {{{od}}}, cst[{rank}] = {{{c}}};\n\
         int64_t begin[{rank}] = {{0}};\n\
         long at = 0;\n\
         for (long q = 0; q < {count}; q++) {{\n\
         \x20   int64_t a = {axes};\n\
         \x20   if (a < 0) a += {rank};\n\
         \x20   if (a < 0 || a >= {rank}) return 1;\n\
         \x20   begin[a] = (int64_t){p}[q];\n\
         \x20   if (dims[a] + begin[a] + (int64_t){p}[q + {count}] != outs[a]) return 1;\n\
         }}\n",
        d = list(&idims),
        od = list(&odims),
        c = list(&cst),
        p = cx.ptr(pads)?,
    );
    for (a, d) in oshape.iter().enumerate() {
        code += &format!("for (long i{a} = 0; i{a} < {d}; i{a}++) ");
    }
    code += "{\n    int64_t off = 0;\n    int inside = 1;\n";
    for a in 0..rank {
        code += &format!(
            "    {{\n        const int64_t d = dims[{a}];\n        int64_t c = i{a} - begin[{a}];\n        {map}\n        if (c < 0 || c >= d) inside = 0; else off += c * cst[{a}];\n    }}\n"
        );
    }
    code += &format!(
        "    {o}[at++] = inside ? {x}[off] : {value};\n}}\n",
        o = cx.ptr(o)?,
        x = cx.ptr(i)?
    );
    Ok(code)
}
