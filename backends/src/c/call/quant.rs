//! Quantized values: QuantizeLinear and DequantizeLinear, per tensor or per
//! axis, between float and 8/16/32-bit integers (one loop nest, the scale
//! and zero point read with stride 0 or along the quantized axis), and
//! egret's int8 per-channel products (`egret::MatMulInt8`).

use super::{Node, Operand};
use crate::c::ctype::ctype;
use crate::c::strided::nest;
use crate::c::{Ctx, EmitError, Kernel};
use egret_ir::DType;

/// The strides of a scale or zero point over `x`'s shape: all 0 for one
/// value, else 1 along `axis` (blocked layouts are unsupported).
fn param_strides(n: &Node<'_>, x: &[usize], p: &[usize]) -> Result<Vec<i64>, EmitError> {
    let mut st = vec![0; x.len()];
    if p.iter().product::<usize>() == 1 {
        return Ok(st);
    }
    if n.int("block_size", 0)? > 0 {
        return Err(n.unsupported("blocked quantization"));
    }
    let a = n.axis(n.int("axis", 1)?, x.len())?;
    if p != [x[a]] {
        return Err(n.unsupported("parameters that are not per tensor or per axis"));
    }
    st[a] = 1;
    Ok(st)
}

/// The value range of integer dtype `d`, as C literals.
fn range(d: DType) -> Option<(&'static str, &'static str)> {
    Some(match d {
        DType::I8 => ("-128", "127"),
        DType::U8 => ("0", "255"),
        DType::I16 => ("-32768", "32767"),
        DType::U16 => ("0", "65535"),
        DType::I32 => ("-2147483648.0", "2147483647"),
        DType::U32 => ("0", "4294967295.0"),
        _ => return None,
    })
}

/// QuantizeLinear (`saturate(round_half_even(x / scale) + zero_point)`) or
/// DequantizeLinear (`(x − zero_point) · scale`).
pub(super) fn quant(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, scale, o) = (n.input(0)?, n.input(1)?, n.output()?);
    let shape = cx.shape(x);
    let mut ops = vec![
        Operand::contiguous(cx.ptr(o)?, shape),
        Operand::contiguous(cx.ptr(x)?, shape),
    ];
    for b in std::iter::once(scale).chain(n.opt_input(2)) {
        let strides = param_strides(n, shape, cx.shape(b))?;
        ops.push(Operand {
            ptr: cx.ptr(b)?,
            offset: 0,
            strides,
        });
    }
    if !cx.dtype(scale).is_float() {
        return Err(n.unsupported(format!("a {} scale", cx.dtype(scale))));
    }
    let zp = |e: &[String]| e.get(3).map_or("0".to_string(), |z| format!("(double){z}"));
    if n.op == "DequantizeLinear" {
        let t = ctype(cx.dtype(o))?;
        return Ok(nest(shape, &ops, "i", &|e| {
            format!(
                "    {} = ({t})(((double){} - {}) * (double){});\n",
                e[0],
                e[1],
                zp(e),
                e[2]
            )
        }));
    }
    let out = cx.dtype(o);
    let (lo, hi) = range(out).ok_or_else(|| n.unsupported(format!("to {out}")))?;
    let t = ctype(out)?;
    // The quotient is rounded to the scale's precision first, as the
    // interpreter does.
    let st = ctype(cx.dtype(scale))?;
    Ok(nest(shape, &ops, "i", &|e| {
        format!(
            "    {{\n        double q = rint((double)({st})((double){} / (double){})) + {};\n        {} = ({t})(q < {lo} ? {lo} : (q > {hi} ? {hi} : q));\n    }}\n",
            e[1],
            e[2],
            zp(e),
            e[0]
        )
    }))
}

/// `egret::MatMulInt8` with f32 activations (`act_quant = 0`): `x [..., K]`
/// times int8 weights `[N, K]` with `N` f32 scales, plus an optional bias.
pub(super) fn matmul_int8(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    if n.int("act_quant", 0)? != 0 {
        return Err(n.unsupported("quantized activations (W8A8)"));
    }
    let (x, w, scale, o) = (n.input(0)?, n.input(1)?, n.input(2)?, n.output()?);
    let types = [cx.dtype(x), cx.dtype(w), cx.dtype(scale), cx.dtype(o)];
    if types != [DType::F32, DType::I8, DType::F32, DType::F32] {
        return Err(n.unsupported(format!("types {types:?}")));
    }
    let (&[nn, k], Some(&kx)) = (cx.shape(w), cx.shape(x).last()) else {
        return Err(n.unsupported("a weight that is not [N, K]"));
    };
    if k != kx || cx.shape(scale).iter().product::<usize>() != nn {
        return Err(n.unsupported("shapes that do not match"));
    }
    let m = cx.shape(x).iter().product::<usize>() / k.max(1);
    let bias = match n.opt_input(3) {
        Some(b) => cx.ptr(b)?,
        None => "NULL".into(),
    };
    cx.use_kernel(Kernel::MatMulInt8);
    Ok(format!(
        "egret_matmul_int8_f32({m}, {nn}, {k}, {}, {}, {}, {bias}, {});\n",
        cx.ptr(x)?,
        cx.ptr(w)?,
        cx.ptr(scale)?,
        cx.ptr(o)?
    ))
}
