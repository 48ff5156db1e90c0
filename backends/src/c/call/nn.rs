//! Neural-network ops on f32 through the kernels of `kernels/*.c`: MatMul,
//! Gemm, Conv, pooling, Softmax, LayerNorm, and BatchNormalization (a
//! strided expression).

use super::{require_f32, Node, Operand};
use crate::c::ctype::f32_lit;
use crate::c::strided::nest;
use crate::c::{Ctx, EmitError, Kernel};
use crate::program::BufferId;

/// Batched MatMul (numpy broadcasting of the batch axes; 1-D operands are
/// promoted), one GEMM call per output matrix.
pub(super) fn matmul(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (a, b, o) = (n.input(0)?, n.input(1)?, n.output()?);
    for x in [a, b, o] {
        require_f32(cx, n, x)?;
    }
    let (ash, bsh) = (cx.shape(a).to_vec(), cx.shape(b).to_vec());
    if ash.is_empty() || bsh.is_empty() {
        return Err(n.unsupported("a scalar operand"));
    }
    let (m, k) = if ash.len() == 1 {
        (1, ash[0])
    } else {
        (ash[ash.len() - 2], ash[ash.len() - 1])
    };
    let nn = if bsh.len() == 1 {
        1
    } else {
        bsh[bsh.len() - 1]
    };
    let ab = &ash[..ash.len().saturating_sub(2)];
    let bb = &bsh[..bsh.len().saturating_sub(2)];
    let rank = ab.len().max(bb.len());
    let batch: Vec<usize> = (0..rank)
        .map(|i| {
            let get = |s: &[usize]| (i + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
            get(ab).max(get(bb))
        })
        .collect();
    let scaled = |mut op: Operand, size: usize| {
        op.strides.iter_mut().for_each(|s| *s *= size as i64);
        op
    };
    let ops = [
        scaled(Operand::contiguous(cx.ptr(o)?, &batch), m * nn),
        scaled(Operand::broadcast(cx.ptr(a)?, ab, &batch), m * k),
        scaled(Operand::broadcast(cx.ptr(b)?, bb, &batch), k * nn),
    ];
    cx.use_kernel(Kernel::Gemm);
    Ok(nest(&batch, &ops, "i", &|e| {
        format!(
            "    egret_gemm_f32({m}, {nn}, {k}, &{}, &{}, NULL, &{});\n",
            e[1], e[2], e[0]
        )
    }))
}

/// Gemm: `alpha · op(A) · op(B) + beta · C` with transposes as strides.
pub(super) fn gemm(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (a, b, o) = (n.input(0)?, n.input(1)?, n.output()?);
    for x in [a, b, o] {
        require_f32(cx, n, x)?;
    }
    let (ash, bsh) = (cx.shape(a), cx.shape(b));
    if ash.len() != 2 || bsh.len() != 2 {
        return Err(n.unsupported("operands that are not 2-D"));
    }
    let (ta, tb) = (n.int("transA", 0)? != 0, n.int("transB", 0)? != 0);
    let (m, k) = if ta {
        (ash[1], ash[0])
    } else {
        (ash[0], ash[1])
    };
    let nn = if tb { bsh[0] } else { bsh[1] };
    let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if tb { (1, k) } else { (nn, 1) };
    let (c, c_rs, c_cs) = match n.opt_input(2) {
        Some(c) => {
            require_f32(cx, n, c)?;
            let st = Operand::broadcast(String::new(), cx.shape(c), &[m, nn]).strides;
            (cx.ptr(c)?, st[0], st[1])
        }
        None => ("NULL".into(), 0, 0),
    };
    cx.use_kernel(Kernel::GemmGeneral);
    Ok(format!(
        "egret_gemm_general_f32({m}, {nn}, {k}, {alpha}, {ap}, {a_rs}, {a_cs}, {bp}, {b_rs}, {b_cs}, {beta}, {c}, {c_rs}, {c_cs}, {op});\n",
        alpha = f32_lit(n.float("alpha", 1.0)?),
        beta = f32_lit(n.float("beta", 1.0)?),
        ap = cx.ptr(a)?,
        bp = cx.ptr(b)?,
        op = cx.ptr(o)?,
    ))
}

/// The spatial geometry of a 1-D or 2-D Conv or pooling: per axis (h, w)
/// input size, output size, kernel size, stride, dilation, leading and
/// trailing pad.
struct Window {
    ins: [usize; 2],
    outs: [usize; 2],
    kernel: [usize; 2],
    strides: [i64; 2],
    dilations: [i64; 2],
    begin: [i64; 2],
    end: [i64; 2],
}

/// Read the window attributes of `n` for input spatial dims `ins` and
/// traced output dims `outs` (both 1 or 2 long).
fn window(
    n: &Node<'_>,
    ins: &[usize],
    outs: &[usize],
    kernel: &[usize],
) -> Result<Window, EmitError> {
    let r = ins.len();
    if !(1..=2).contains(&r) || outs.len() != r || kernel.len() != r {
        return Err(n.unsupported(format!("{r}-D windows (1-D and 2-D are supported)")));
    }
    let list = |name: &str, d: i64, len: usize| -> Result<Vec<i64>, EmitError> {
        let v = n.ints(name)?.unwrap_or_else(|| vec![d; len]);
        if v.len() == len {
            Ok(v)
        } else {
            Err(n.unsupported(format!("`{name}` has the wrong length")))
        }
    };
    let strides = list("strides", 1, r)?;
    let dilations = list("dilations", 1, r)?;
    let pads = list("pads", 0, 2 * r)?;
    let auto = n
        .attrs
        .string_or("auto_pad", "NOTSET")
        .map_err(|e| n.unsupported(e.to_string()))?;
    let mut begin = pads[..r].to_vec();
    let mut end = pads[r..].to_vec();
    for ax in 0..r {
        let need =
            (outs[ax] as i64 - 1) * strides[ax] + (kernel[ax] as i64 - 1) * dilations[ax] + 1
                - ins[ax] as i64;
        let total = need.max(0);
        match auto {
            "NOTSET" => {}
            "VALID" => (begin[ax], end[ax]) = (0, 0),
            "SAME_UPPER" => (begin[ax], end[ax]) = (total / 2, total - total / 2),
            "SAME_LOWER" => (begin[ax], end[ax]) = (total - total / 2, total / 2),
            other => return Err(n.unsupported(format!("auto_pad `{other}`"))),
        }
    }
    // 1-D is 2-D with a height of one.
    let two = |v: &[i64], d: i64| if r == 1 { [d, v[0]] } else { [v[0], v[1]] };
    let two_u = |v: &[usize]| if r == 1 { [1, v[0]] } else { [v[0], v[1]] };
    Ok(Window {
        ins: two_u(ins),
        outs: two_u(outs),
        kernel: two_u(kernel),
        strides: two(&strides, 1),
        dilations: two(&dilations, 1),
        begin: two(&begin, 0),
        end: two(&end, 0),
    })
}

/// Conv (NCHW, 1-D or 2-D, groups, strides, dilations, pads).
pub(super) fn conv(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, w, o) = (n.input(0)?, n.input(1)?, n.output()?);
    for b in [x, w, o] {
        require_f32(cx, n, b)?;
    }
    let (xs, ws, os) = (cx.shape(x), cx.shape(w), cx.shape(o));
    if xs.len() < 3 || ws.len() != xs.len() || os.len() != xs.len() {
        return Err(n.unsupported("shapes that are not N×C×spatial"));
    }
    let win = window(n, &xs[2..], &os[2..], &ws[2..])?;
    let group = n.int("group", 1)?;
    let bias = match n.opt_input(2) {
        Some(b) => cx.ptr(b)?,
        None => "NULL".into(),
    };
    cx.use_kernel(Kernel::Conv);
    Ok(format!(
        "egret_conv2d_f32({}, {}, {}, {}, {}, {}, {}, {}, {}, {group}, {}, {}, {}, {}, {}, {}, {}, {}, {bias}, {});\n",
        xs[0], xs[1], win.ins[0], win.ins[1], os[1], win.outs[0], win.outs[1],
        win.kernel[0], win.kernel[1], win.strides[0], win.strides[1],
        win.dilations[0], win.dilations[1], win.begin[0], win.begin[1],
        cx.ptr(x)?, cx.ptr(w)?, cx.ptr(o)?
    ))
}

/// ConvTranspose (NCHW, 1-D or 2-D): the output size is the traced one, the
/// leading pads are `pads` or, with `auto_pad = SAME_*`, derived as the
/// interpreter derives them.
pub(super) fn conv_transpose(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, w, o) = (n.input(0)?, n.input(1)?, n.output()?);
    for b in [x, w, o] {
        require_f32(cx, n, b)?;
    }
    let (xs, ws, os) = (cx.shape(x), cx.shape(w), cx.shape(o));
    let r = xs.len().saturating_sub(2);
    if !(1..=2).contains(&r) || ws.len() != xs.len() || os.len() != xs.len() {
        return Err(n.unsupported("shapes that are not N×C×(1-D or 2-D)"));
    }
    let list = |name: &str, d: i64, len: usize| -> Result<Vec<i64>, EmitError> {
        let v = n.ints(name)?.unwrap_or_else(|| vec![d; len]);
        (v.len() == len)
            .then_some(v)
            .ok_or_else(|| n.unsupported(format!("`{name}` has the wrong length")))
    };
    let (strides, dilations) = (list("strides", 1, r)?, list("dilations", 1, r)?);
    let (pads, opad) = (list("pads", 0, 2 * r)?, list("output_padding", 0, r)?);
    let auto = n
        .attrs
        .string_or("auto_pad", "NOTSET")
        .map_err(|e| n.unsupported(e.to_string()))?;
    let mut begin = pads[..r].to_vec();
    for i in 0..r {
        let natural = strides[i] * (xs[2 + i] as i64 - 1).max(0)
            + opad[i]
            + (ws[2 + i] as i64 - 1) * dilations[i]
            + 1;
        let total = natural - os[2 + i] as i64;
        match auto {
            "SAME_UPPER" => begin[i] = total / 2,
            "SAME_LOWER" => begin[i] = total - total / 2,
            "NOTSET" | "VALID" => {}
            other => return Err(n.unsupported(format!("auto_pad `{other}`"))),
        }
    }
    let two = |v: &[i64], d: i64| if r == 1 { [d, v[0]] } else { [v[0], v[1]] };
    let two_u = |v: &[usize]| if r == 1 { [1, v[0]] } else { [v[0], v[1]] };
    let (ins, outs, k) = (two_u(&xs[2..]), two_u(&os[2..]), two_u(&ws[2..]));
    let (st, di, pb) = (two(&strides, 1), two(&dilations, 1), two(&begin, 0));
    let group = n.int("group", 1)?;
    let bias = match n.opt_input(2) {
        Some(b) => cx.ptr(b)?,
        None => "NULL".into(),
    };
    cx.use_kernel(Kernel::ConvTranspose);
    Ok(format!(
        "egret_conv_transpose2d_f32({}, {}, {}, {}, {}, {}, {}, {}, {}, {group}, {}, {}, {}, {}, {}, {}, {}, {}, {bias}, {});\n",
        xs[0], xs[1], ins[0], ins[1], os[1], outs[0], outs[1], k[0], k[1],
        st[0], st[1], di[0], di[1], pb[0], pb[1],
        cx.ptr(x)?, cx.ptr(w)?, cx.ptr(o)?
    ))
}

/// MaxPool (one output) and AveragePool, 1-D or 2-D.
pub(super) fn pool(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, o) = (n.input(0)?, n.output()?);
    require_f32(cx, n, x)?;
    let (xs, os) = (cx.shape(x), cx.shape(o));
    let kernel: Vec<usize> = n
        .ints("kernel_shape")?
        .ok_or_else(|| n.unsupported("no kernel_shape"))?
        .iter()
        .map(|&k| usize::try_from(k).unwrap_or(0))
        .collect();
    if xs.len() < 3 || os.len() != xs.len() {
        return Err(n.unsupported("shapes that are not N×C×spatial"));
    }
    let win = window(n, &xs[2..], &os[2..], &kernel)?;
    let nc = xs[0] * xs[1];
    let geometry = format!(
        "{nc}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}",
        win.ins[0],
        win.ins[1],
        win.outs[0],
        win.outs[1],
        win.kernel[0],
        win.kernel[1],
        win.strides[0],
        win.strides[1],
        win.dilations[0],
        win.dilations[1],
        win.begin[0],
        win.begin[1]
    );
    let (xp, op) = (cx.ptr(x)?, cx.ptr(o)?);
    if n.op == "MaxPool" {
        cx.use_kernel(Kernel::MaxPool);
        return Ok(format!("egret_maxpool2d_f32({geometry}, {xp}, {op});\n"));
    }
    cx.use_kernel(Kernel::AvgPool);
    Ok(format!(
        "egret_avgpool2d_f32({geometry}, {}, {}, {}, {xp}, {op});\n",
        win.end[0],
        win.end[1],
        n.int("count_include_pad", 0)?
    ))
}

/// BatchNormalization (inference): `(x − mean) / √(var + ε) · scale + bias`
/// per channel (axis 1), as one loop nest.
pub(super) fn batchnorm(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, o) = (n.input(0)?, n.output()?);
    if n.int("training_mode", 0)? != 0 {
        return Err(n.unsupported("training mode"));
    }
    let shape = cx.shape(x);
    require_f32(cx, n, x)?;
    let mut ops = vec![
        Operand::contiguous(cx.ptr(o)?, shape),
        Operand::contiguous(cx.ptr(x)?, shape),
    ];
    for i in 1..5 {
        let b = n.input(i)?;
        require_f32(cx, n, b)?;
        let mut strides = vec![0; shape.len()];
        if shape.len() > 1 && cx.shape(b).iter().product::<usize>() == shape[1] {
            strides[1] = 1;
        } else if shape.len() > 1 {
            return Err(n.unsupported("parameters that are not one per channel"));
        }
        ops.push(Operand {
            ptr: cx.ptr(b)?,
            offset: 0,
            strides,
        });
    }
    let eps = f32_lit(n.float("epsilon", 1e-5)?);
    Ok(nest(shape, &ops, "i", &|e| {
        format!(
            "    {} = ({} - {}) / sqrtf({} + {eps}) * {} + {};\n",
            e[0], e[1], e[4], e[5], e[2], e[3]
        )
    }))
}

/// Softmax, LogSoftmax and Hardmax along `axis`.
pub(super) fn softmax(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, o) = (n.input(0)?, n.output()?);
    require_f32(cx, n, x)?;
    let shape = cx.shape(x);
    let axis = n.axis(n.int("axis", -1)?, shape.len())?;
    let outer: usize = shape[..axis.min(shape.len())].iter().product();
    let len = shape.get(axis).copied().unwrap_or(1);
    let inner: usize = shape.get(axis + 1..).unwrap_or(&[]).iter().product();
    let mode = match n.op {
        "Softmax" => 0,
        "LogSoftmax" => 1,
        _ => 2,
    };
    cx.use_kernel(Kernel::Softmax);
    Ok(format!(
        "egret_softmax_f32({outer}, {len}, {inner}, {mode}, {}, {});\n",
        cx.ptr(x)?,
        cx.ptr(o)?
    ))
}

/// LayerNormalization (with its optional Mean and InvStdDev outputs) and
/// RMSNormalization, over the axes from `axis` on.
pub(super) fn layernorm(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, scale) = (n.input(0)?, n.input(1)?);
    let o = *n
        .outputs
        .first()
        .ok_or_else(|| n.unsupported("no output"))?;
    for &b in n.inputs.iter().flatten().chain(n.outputs) {
        require_f32(cx, n, b)?;
    }
    let shape = cx.shape(x);
    let axis = n.axis(n.int("axis", -1)?, shape.len())?;
    let outer: usize = shape[..axis].iter().product();
    let len: usize = shape[axis..].iter().product();
    let rms = n.op == "RMSNormalization";
    let bias = if rms { None } else { n.opt_input(2) };
    for b in std::iter::once(scale).chain(bias) {
        if cx.shape(b).iter().product::<usize>() != len {
            return Err(n.unsupported("a broadcast scale or bias"));
        }
    }
    let mut opt = |b: Option<BufferId>| -> Result<String, EmitError> {
        b.map_or(Ok("NULL".into()), |b| cx.ptr(b))
    };
    let bias = opt(bias)?;
    let mean = opt(n.outputs.get(1).copied().filter(|_| !rms))?;
    let inv = opt(n.outputs.get(2).copied().filter(|_| !rms))?;
    cx.use_kernel(Kernel::LayerNorm);
    Ok(format!(
        "egret_layernorm_f32({outer}, {len}, {}, {}, {}, {}, {bias}, {}, {mean}, {inv});\n",
        f32_lit(n.float("epsilon", 1e-5)?),
        u8::from(rms),
        cx.ptr(x)?,
        cx.ptr(scale)?,
        cx.ptr(o)?
    ))
}
