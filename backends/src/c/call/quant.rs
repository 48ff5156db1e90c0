//! Quantized values: QuantizeLinear and DequantizeLinear, per tensor or per
//! axis, between float and 8/16/32-bit integers (one loop nest, the scale
//! and zero point read with stride 0 or along the quantized axis), and
//! egret's int8 per-channel products (`egret::MatMulInt8`).

use super::{Node, Operand};
use crate::c::ctype::ctype;
use crate::c::strided::nest;
use crate::c::{Ctx, EmitError, Kernel};
use egret_ir::{BlockFormat, DType};

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

/// The f32 `x [..., K]` of a product against `[N, K]` weights `w`, checked:
/// its row count `m`, `N`, `K` and the bias pointer (input `bias_at`, or
/// `NULL`).
struct Product {
    m: usize,
    n: usize,
    k: usize,
    bias: String,
}

fn product(cx: &mut Ctx<'_>, n: &Node<'_>, bias_at: usize) -> Result<Product, EmitError> {
    let (x, w, o) = (n.input(0)?, n.input(1)?, n.output()?);
    if [cx.dtype(x), cx.dtype(o)] != [DType::F32, DType::F32] {
        return Err(n.unsupported("activations that are not f32"));
    }
    let (&[nn, k], Some(&kx)) = (cx.shape(w), cx.shape(x).last()) else {
        return Err(n.unsupported("a weight that is not [N, K]"));
    };
    if k != kx {
        return Err(n.unsupported("shapes that do not match"));
    }
    let bias = match n.opt_input(bias_at) {
        Some(b) if cx.dtype(b) == DType::F32 && cx.shape(b).iter().product::<usize>() == nn => {
            cx.ptr(b)?
        }
        Some(_) => return Err(n.unsupported("a bias that is not f32 [N]")),
        None => "NULL".into(),
    };
    Ok(Product {
        m: cx.shape(x).iter().product::<usize>() / k.max(1),
        n: nn,
        k,
        bias,
    })
}

/// `egret::MatMulInt8`: `x [..., K]` times int8 weights `[N, K]` with `N` f32
/// scales, plus an optional bias; with `act_quant = 1` (W8A8) each row of `x`
/// is quantized to int8 first and the dots are exact integers.
pub(super) fn matmul_int8(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, w, scale, o) = (n.input(0)?, n.input(1)?, n.input(2)?, n.output()?);
    let pr = product(cx, n, 3)?;
    if [cx.dtype(w), cx.dtype(scale)] != [DType::I8, DType::F32]
        || cx.shape(scale).iter().product::<usize>() != pr.n
    {
        return Err(n.unsupported("weights that are not int8 with one f32 scale per row"));
    }
    let Product { m, n: nn, k, bias } = pr;
    let args = format!(
        "{m}, {nn}, {k}, {}, {}, {}, {bias}, {}",
        cx.ptr(x)?,
        cx.ptr(w)?,
        cx.ptr(scale)?,
        cx.ptr(o)?
    );
    match n.int("act_quant", 0)? {
        0 => {
            cx.use_kernel(Kernel::MatMulInt8);
            Ok(format!("egret_matmul_int8_f32({args});\n"))
        }
        1 if k <= 1 << 17 => {
            cx.use_kernel(Kernel::MatMulW8A8);
            let qx = cx.scratch("int8_t", k);
            Ok(format!("egret_matmul_w8a8_f32({args}, {qx});\n"))
        }
        1 => Err(n.unsupported("W8A8 with K above 131072 (the int32 sums could overflow)")),
        a => Err(n.unsupported(format!("act_quant = {a}"))),
    }
}

/// The C kernel's format code (`EGRET_Q8_0` ...) and group size of block
/// storage `d`.
fn block_kind(n: &Node<'_>, d: DType) -> Result<(&'static str, usize), EmitError> {
    let DType::Block(f) = d else {
        return Err(n.unsupported(format!("a {d} weight (block formats only)")));
    };
    let kind = match f {
        BlockFormat::Q8_0 => "EGRET_Q8_0",
        BlockFormat::Q4_0 | BlockFormat::I4S64 | BlockFormat::I4S128 => "EGRET_INT4_SYM",
        BlockFormat::Q4_1 | BlockFormat::I4A64 | BlockFormat::I4A128 => "EGRET_INT4_ASYM",
        BlockFormat::Q5_0 => "EGRET_Q5_0",
        BlockFormat::Q5_1 => "EGRET_Q5_1",
        _ => return Err(n.unsupported(format!("{d} blocks (k-quants have no C kernel)"))),
    };
    Ok((kind, f.block_elems()))
}

/// `egret::MatMulBlocks`: `x [..., K]` times block-quantized weights
/// `[N, K]`, plus an optional f32 bias; weight rows are dequantized a tile at
/// a time into the scratch.
pub(super) fn matmul_blocks(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, w, o) = (n.input(0)?, n.input(1)?, n.output()?);
    let (kind, g) = block_kind(n, cx.dtype(w))?;
    let Product { m, n: nn, k, bias } = product(cx, n, 2)?;
    cx.use_kernel(Kernel::Blocks);
    cx.use_kernel(Kernel::MatMulBlocks);
    // EGRET_BLOCKS_TILE (8) rows of k floats.
    let scratch = cx.scratch("float", 8 * k * 4);
    Ok(format!(
        "egret_matmul_blocks_f32({m}, {nn}, {k}, {}, {}, {kind}, {g}, {bias}, {}, {scratch});\n",
        cx.ptr(x)?,
        cx.ptr(w)?,
        cx.ptr(o)?
    ))
}

/// `egret::GatherBlocks`: rows of a block-quantized `[rows, width]` table
/// picked by run-time indices (negative ones wrap; one out of range makes
/// `egret_model` return 1), dequantized into the f32 output.
pub(super) fn gather_blocks(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (table, ix, o) = (n.input(0)?, n.input(1)?, n.output()?);
    let (kind, g) = block_kind(n, cx.dtype(table))?;
    let &[rows, width] = cx.shape(table) else {
        return Err(n.unsupported("a table that is not [rows, width]"));
    };
    let it = ctype(cx.dtype(ix))?;
    if !cx.dtype(ix).is_int() || cx.dtype(o) != DType::F32 {
        return Err(n.unsupported("indices that are not integers"));
    }
    let count: usize = cx.shape(ix).iter().product();
    cx.use_kernel(Kernel::Blocks);
    Ok(format!(
        "const {it} *ix = {ip};\n\
         const long rb = {width} / {g} * egret_block_bytes({kind}, {g});\n\
         for (long i = 0; i < {count}; i++) {{\n\
         \x20   long r = (long)ix[i];\n\
         \x20   if (r < 0) r += {rows};\n\
         \x20   if (r < 0 || r >= {rows}) return 1;\n\
         \x20   egret_dequant_row({kind}, {g}, {tp} + r * rb, {width}, {op} + i * {width});\n\
         }}\n",
        ip = cx.ptr(ix)?,
        tp = cx.ptr(table)?,
        op = cx.ptr(o)?,
    ))
}
