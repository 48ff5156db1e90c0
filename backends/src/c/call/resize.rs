//! Resize in `nearest` (every dtype) and `linear` (f32) modes: the source
//! taps of each axis are computed here, as the interpreter computes them,
//! and the C code reads them from tables, one or two taps per axis.

use super::Node;
use crate::c::ctype::ctype;
use crate::c::strided::contiguous_strides;
use crate::c::{Ctx, EmitError};
use egret_ir::DType;

/// How a fractional source coordinate picks its taps.
#[derive(Clone, Copy)]
enum Mode {
    /// Nearest, rounding up when this says so for the fraction.
    Nearest(fn(f64) -> bool),
    /// Linear interpolation between the two neighbours.
    Linear,
}

/// The source coordinate of output position `y` (ONNX's transforms).
fn source(
    n: &Node<'_>,
    coord: &str,
    y: f64,
    scale: f64,
    in_len: usize,
    out_len: usize,
) -> Result<f64, EmitError> {
    let width = in_len as f64;
    let out_width = scale * width;
    Ok(match coord {
        "align_corners" if out_width == 1.0 => 0.0,
        "align_corners" => y * (width - 1.0) / (out_width - 1.0),
        "asymmetric" => y / scale,
        "pytorch_half_pixel" if out_width == 1.0 => -0.5,
        "pytorch_half_pixel" | "half_pixel" => (y + 0.5) / scale - 0.5,
        "half_pixel_symmetric" => {
            let offset = width / 2.0 * (1.0 - out_len as f64 / out_width);
            offset + (y + 0.5) / scale - 0.5
        }
        other => return Err(n.unsupported(format!("coordinate_transformation_mode `{other}`"))),
    })
}

/// The taps of one axis: `out_len × taps` source indices and weights.
fn taps(
    n: &Node<'_>,
    mode: Mode,
    coord: &str,
    scale: f64,
    in_len: usize,
    out_len: usize,
) -> Result<(usize, Vec<usize>, Vec<f64>), EmitError> {
    let width = if matches!(mode, Mode::Linear) { 2 } else { 1 };
    let clamp = |i: f64| (i.max(0.0) as usize).min(in_len - 1);
    let (mut idx, mut w) = (Vec::new(), Vec::new());
    for y in 0..out_len {
        let x = source(n, coord, y as f64, scale, in_len, out_len)?;
        if !x.is_finite() {
            return Err(n.unsupported("a non-finite source coordinate"));
        }
        let f = x.floor();
        let r = x - f;
        let (a, b, wb) = if r == 0.0 {
            (clamp(f), clamp(f), 0.0)
        } else {
            (clamp(f), clamp(f + 1.0), r)
        };
        match mode {
            Mode::Linear => {
                idx.extend([a, b]);
                w.extend([1.0 - wb, wb]);
            }
            Mode::Nearest(up) => {
                idx.push(if r != 0.0 && up(r) { b } else { a });
                w.push(1.0);
            }
        }
    }
    Ok((width, idx, w))
}

/// Resize with constant scales or sizes.
pub(super) fn resize(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, o) = (n.input(0)?, n.output()?);
    let (ishape, oshape) = (cx.shape(x), cx.shape(o));
    let rank = ishape.len();
    let text = |name: &str, d: &'static str| {
        n.attrs
            .string_or(name, d)
            .map(str::to_string)
            .map_err(|e| n.unsupported(e.to_string()))
    };
    let mode = match (
        text("mode", "nearest")?.as_str(),
        text("nearest_mode", "round_prefer_floor")?.as_str(),
    ) {
        ("nearest", "round_prefer_floor") => Mode::Nearest(|r| r > 0.5),
        ("nearest", "round_prefer_ceil") => Mode::Nearest(|r| r >= 0.5),
        ("nearest", "floor") => Mode::Nearest(|_| false),
        ("nearest", "ceil") => Mode::Nearest(|_| true),
        ("linear", _) if cx.dtype(x) == DType::F32 => Mode::Linear,
        (m, nm) => return Err(n.unsupported(format!("mode `{m}` ({nm}) on {}", cx.dtype(x)))),
    };
    if n.int("antialias", 0)? != 0 && matches!(mode, Mode::Linear) {
        return Err(n.unsupported("antialias"));
    }
    if text("keep_aspect_ratio_policy", "stretch")? != "stretch" {
        return Err(n.unsupported("keep_aspect_ratio_policy"));
    }
    let coord = text("coordinate_transformation_mode", "half_pixel")?;
    let axes: Vec<usize> = match n.ints("axes")? {
        Some(a) => a
            .iter()
            .map(|&v| n.axis(v, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    let mut scales = vec![1.0f64; rank];
    let sizes = n
        .opt_input(3)
        .filter(|&b| cx.shape(b).iter().product::<usize>() > 0);
    match sizes {
        Some(_) => {
            let v = n.const_ints(cx, 3)?.unwrap_or_default();
            for (&a, &s) in axes.iter().zip(&v) {
                scales[a] = s as f64 / ishape[a] as f64;
            }
        }
        None => {
            let b = n.input(2)?;
            let t = cx
                .const_value(b)
                .ok_or_else(|| n.unsupported("scales computed at run time"))?;
            let v = t.to_f64_vec().map_err(|e| n.unsupported(e.to_string()))?;
            for (&a, &s) in axes.iter().zip(&v) {
                scales[a] = s;
            }
        }
    }
    if ishape.contains(&0) {
        return Err(n.unsupported("an empty input"));
    }
    let t = ctype(cx.dtype(x))?;
    let st = contiguous_strides(ishape);
    let mut code = String::new();
    let mut widths = Vec::new();
    for a in 0..rank {
        let (width, idx, w) = taps(n, mode, &coord, scales[a], ishape[a], oshape[a])?;
        let list = |v: Vec<String>| v.join(", ");
        code += &format!(
            "static const long ix{a}[{}] = {{{}}};\n",
            idx.len().max(1),
            list(
                idx.iter()
                    .map(|i| (*i as i64 * st[a]).to_string())
                    .collect()
            )
        );
        if width == 2 {
            code += &format!(
                "static const float w{a}[{}] = {{{}}};\n",
                w.len().max(1),
                list(
                    w.iter()
                        .map(|&v| crate::c::ctype::f32_lit(v as f32))
                        .collect()
                )
            );
        }
        widths.push(width);
    }
    let (op, xp) = (cx.ptr(o)?, cx.ptr(x)?);
    code += "long at = 0;\n";
    for (a, d) in oshape.iter().enumerate() {
        code += &format!("for (long i{a} = 0; i{a} < {d}; i{a}++) ");
    }
    if matches!(mode, Mode::Nearest(_)) {
        let src: Vec<String> = (0..rank).map(|a| format!("ix{a}[i{a}]")).collect();
        code += &format!(
            "{op}[at++] = {xp}[{}];\n",
            if src.is_empty() {
                "0".into()
            } else {
                src.join(" + ")
            }
        );
        return Ok(code);
    }
    code += &format!("{{\n    {t} acc = 0;\n");
    for (a, width) in widths.iter().enumerate() {
        code += &format!("    for (long t{a} = 0; t{a} < {width}; t{a}++) ");
    }
    let src: Vec<String> = (0..rank)
        .map(|a| format!("ix{a}[i{a} * {} + t{a}]", widths[a]))
        .collect();
    let w: Vec<String> = (0..rank)
        .filter(|&a| widths[a] == 2)
        .map(|a| format!("w{a}[i{a} * 2 + t{a}] * "))
        .collect();
    code += &format!(
        "acc += {}{xp}[{}];\n    {op}[at++] = acc;\n}}\n",
        w.join(""),
        if src.is_empty() {
            "0".into()
        } else {
            src.join(" + ")
        }
    );
    Ok(code)
}
