//! Inference rules: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv, Col2Im.
//!
//! [`Window`] (the sliding-window attributes and output-size arithmetic) is shared
//! with the pooling rules in `pool.rs`.

use super::common::{tensor, unknown_dims, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Conv" | "ConvInteger" | "QLinearConv" | "DeformConv" => conv,
        "ConvTranspose" => conv_transpose,
        "Col2Im" => col2im,
        _ => return None,
    })
}

/// Sliding-window attributes of a Conv or pooling node.
pub(super) struct Window {
    /// Kernel extent per spatial axis (symbolic when it comes from an unknown weight shape).
    pub kernel: Vec<Dim>,
    /// Strides.
    pub strides: Vec<i64>,
    /// Dilations.
    pub dilations: Vec<i64>,
    /// Pads as `[begin..., end...]`.
    pub pads: Vec<i64>,
    /// `auto_pad` attribute.
    pub auto_pad: String,
    /// Pooling `ceil_mode`.
    pub ceil: bool,
}

/// A list attribute of `n` ints, `default` when absent; errors on a wrong length.
fn ints_attr(ctx: &InferCtx<'_>, name: &str, n: usize, default: i64) -> R<Vec<i64>> {
    match ctx.call.attrs.ints_opt(name).map_err(|e| e.to_string())? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v.to_vec()),
        Some(v) => Err(format!("{name} has {} values, expected {n}", v.len())),
    }
}

impl Window {
    /// Read the window attributes for `kernel.len()` spatial axes.
    pub(super) fn from_attrs(ctx: &InferCtx<'_>, kernel: Vec<Dim>) -> R<Window> {
        let n = kernel.len();
        let attrs = &ctx.call.attrs;
        let strides = ints_attr(ctx, "strides", n, 1)?;
        let dilations = ints_attr(ctx, "dilations", n, 1)?;
        let pads = ints_attr(ctx, "pads", 2 * n, 0)?;
        if strides.iter().chain(&dilations).any(|&v| v < 1) || pads.iter().any(|&p| p < 0) {
            return Err("strides and dilations must be >= 1 and pads >= 0".into());
        }
        let auto_pad = attrs
            .string_or("auto_pad", "NOTSET")
            .map_err(|e| e.to_string())?
            .to_string();
        let ceil = attrs.int_or("ceil_mode", 0).map_err(|e| e.to_string())? != 0;
        Ok(Window {
            kernel,
            strides,
            dilations,
            pads,
            auto_pad,
            ceil,
        })
    }

    /// The output extent of spatial axis `i` for an input extent `input`.
    pub(super) fn out_dim(&self, i: usize, input: &Dim) -> R<Dim> {
        let (s, d) = (self.strides[i], self.dilations[i]);
        let n = self.kernel.len();
        let (pb, pe) = (self.pads[i], self.pads[n + i]);
        let (Some(x), Some(k)) = (input.known(), self.kernel[i].known()) else {
            return Ok(Dim::Sym(format!(
                "win({input},{},s{s},d{d},p{pb}_{pe},{}{})",
                self.kernel[i], self.auto_pad, self.ceil as u8
            )));
        };
        // i128 arithmetic: hostile attributes (pads or dilations near i64::MAX)
        // must give an error, not an overflow.
        let (x, k, s, d, pb, pe) = (
            x as i128, k as i128, s as i128, d as i128, pb as i128, pe as i128,
        );
        let ek = (k - 1) * d + 1;
        let out = match self.auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => (x + s - 1) / s,
            "VALID" => {
                if x < ek {
                    return Err(format!("kernel extent {ek} exceeds input {x}"));
                }
                (x - ek) / s + 1
            }
            "NOTSET" | "" => {
                let span = x + pb + pe - ek;
                if span < 0 {
                    return Err(format!(
                        "kernel extent {ek} exceeds padded input {}",
                        x + pb + pe
                    ));
                }
                if self.ceil {
                    let mut o = (span + s - 1) / s + 1;
                    if (o - 1) * s >= x + pb {
                        o -= 1;
                    }
                    o
                } else {
                    span / s + 1
                }
            }
            other => return Err(format!("unknown auto_pad {other}")),
        };
        usize::try_from(out)
            .ok()
            .filter(|&o| o <= i64::MAX as usize)
            .map(Dim::Known)
            .ok_or_else(|| format!("output extent {out} out of range"))
    }
}

/// `[N, M, spatial...]` for a Conv-like node with data input 0 and weight input `w`.
fn conv_shape(ctx: &InferCtx<'_>, w: usize) -> R<Option<Shape>> {
    let (Some(xs), Some(ws)) = (&ctx.tensor(0)?.shape, &ctx.tensor(w)?.shape) else {
        return Ok(None);
    };
    let (xd, wd) = (xs.dims(), ws.dims());
    if xd.len() < 3 || wd.len() != xd.len() {
        return Err(format!(
            "input rank {} and weight rank {} do not fit a convolution",
            xd.len(),
            wd.len()
        ));
    }
    let kernel = match ctx
        .call
        .attrs
        .ints_opt("kernel_shape")
        .map_err(|e| e.to_string())?
    {
        Some(k) => k.iter().map(|&v| Dim::Known(v.max(0) as usize)).collect(),
        None => wd[2..].to_vec(),
    };
    if kernel.len() != xd.len() - 2 {
        return Err("kernel_shape rank does not match the input".into());
    }
    check_groups(ctx, &xd[1], &wd[0], &wd[1])?;
    let win = Window::from_attrs(ctx, kernel)?;
    let mut out = vec![xd[0].clone(), wd[0].clone()];
    for (i, d) in xd[2..].iter().enumerate() {
        out.push(win.out_dim(i, d)?);
    }
    Ok(Some(Shape(out)))
}

/// The `group` attribute against known channel counts: input channels =
/// weight channels · group, and the output channels split evenly into groups.
fn check_groups(ctx: &InferCtx<'_>, input_c: &Dim, out_c: &Dim, w_c: &Dim) -> R<()> {
    let group = ctx
        .call
        .attrs
        .int_or("group", 1)
        .map_err(|e| e.to_string())?;
    if group < 1 {
        return Err(format!("group {group} is below 1"));
    }
    let group = group as u64;
    if let (Some(c), Some(wc)) = (input_c.known(), w_c.known()) {
        if (wc as u64).checked_mul(group) != Some(c as u64) {
            return Err(format!(
                "input channels {c} are not weight channels {wc} × group {group}"
            ));
        }
    }
    match out_c.known() {
        Some(m) if !(m as u64).is_multiple_of(group) => Err(format!(
            "output channels {m} do not split into {group} groups"
        )),
        _ => Ok(()),
    }
}

/// Conv, ConvInteger, QLinearConv and DeformConv.
fn conv(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let (w, dtype) = match ctx.op() {
        "ConvInteger" => (1, DType::I32),
        "QLinearConv" => (3, ctx.opt_tensor(7)?.map_or(x.dtype, |t| t.dtype)),
        _ => (1, x.dtype),
    };
    Ok(vec![tensor(dtype, conv_shape(ctx, w)?)])
}

/// ConvTranspose: `[N, W[1]·group, spatial...]`.
fn conv_transpose(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let (Some(xs), Some(ws)) = (&x.shape, &ctx.tensor(1)?.shape) else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let (xd, wd) = (xs.dims(), ws.dims());
    if xd.len() < 3 || wd.len() != xd.len() {
        return Err("input and weight ranks do not fit a transposed convolution".into());
    }
    let n = xd.len() - 2;
    let attrs = &ctx.call.attrs;
    let group = attrs.int_or("group", 1).map_err(|e| e.to_string())?;
    let m = match wd[1].known() {
        Some(c) if group >= 1 => Dim::Known(
            c.checked_mul(group as usize)
                .ok_or_else(|| format!("{c} channels times group {group} overflow"))?,
        ),
        _ => Dim::Sym(format!("convt_m({},{group})", wd[1])),
    };
    let mut out = vec![xd[0].clone(), m];
    if let Some(os) = attrs.ints_opt("output_shape").map_err(|e| e.to_string())? {
        let os = if os.len() == n + 2 { &os[2..] } else { os };
        if os.len() != n || os.iter().any(|&v| v < 0) {
            return Err("output_shape does not match the spatial rank".into());
        }
        out.extend(os.iter().map(|&v| Dim::Known(v as usize)));
        return Ok(vec![tensor(x.dtype, Some(Shape(out)))]);
    }
    let kernel = match attrs.ints_opt("kernel_shape").map_err(|e| e.to_string())? {
        Some(k) => k.iter().map(|&v| Dim::Known(v.max(0) as usize)).collect(),
        None => wd[2..].to_vec(),
    };
    if kernel.len() != n {
        return Err("kernel_shape rank does not match the input".into());
    }
    let win = Window::from_attrs(ctx, kernel)?;
    let opad = ints_attr(ctx, "output_padding", n, 0)?;
    for i in 0..n {
        let (s, d) = (win.strides[i], win.dilations[i]);
        out.push(match (xd[i + 2].known(), win.kernel[i].known()) {
            (Some(x), Some(k)) => {
                // i128, as in `Window::out_dim`: attributes are untrusted.
                let (x, k, s, d) = (x as i128, k as i128, s as i128, d as i128);
                let v = match win.auto_pad.as_str() {
                    "SAME_UPPER" | "SAME_LOWER" => x * s,
                    _ => {
                        s * (x - 1) + opad[i] as i128 + (k - 1) * d + 1
                            - win.pads[i] as i128
                            - win.pads[n + i] as i128
                    }
                };
                if !(0..=i64::MAX as i128).contains(&v) {
                    return Err(format!("output extent {v} out of range"));
                }
                Dim::Known(v as usize)
            }
            _ => Dim::Sym(format!(
                "convt({},{},s{s},d{d},{})",
                xd[i + 2],
                win.kernel[i],
                win.auto_pad
            )),
        });
    }
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}

/// Col2Im: `[N, C·∏block, L]` → `[N, C, image_shape...]`.
fn col2im(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let rank = match (ctx.const_ints(1), &ctx.tensor(1)?.shape) {
        (Some(img), _) => img.len(),
        (None, Some(s)) if s.rank() == 1 => match s.dims()[0].known() {
            Some(n) => n,
            None => return Ok(vec![tensor(x.dtype, None)]),
        },
        _ => return Ok(vec![tensor(x.dtype, None)]),
    };
    let (Some(img), Some(block), Some(xs)) = (ctx.const_ints(1), ctx.const_ints(2), &x.shape)
    else {
        return Ok(vec![unknown_dims(x.dtype, rank + 2, "col2im")]);
    };
    // Checked: block_shape is an untrusted constant.
    let bl = block
        .iter()
        .try_fold(1i64, |a, &b| a.checked_mul(b))
        .ok_or("block_shape product overflows")?;
    if xs.rank() != 3 || bl <= 0 || img.iter().any(|&v| v < 0) {
        return Err("Col2Im expects a rank-3 input and positive block_shape".into());
    }
    let c = match xs.dims()[1].known() {
        Some(cb) if cb as i64 % bl == 0 => Dim::Known(cb / bl as usize),
        Some(cb) => {
            return Err(format!(
                "input channels {cb} not divisible by block size {bl}"
            ))
        }
        None => Dim::Sym(format!("col2im_c({})", xs.dims()[1])),
    };
    let mut out = vec![xs.dims()[0].clone(), c];
    out.extend(img.iter().map(|&v| Dim::Known(v as usize)));
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}
