//! Kernels: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv, Col2Im.
//!
//! Float convolutions run at their working precision (f16/bf16 at f32):
//! depthwise 2-D convolutions use a direct per-channel loop (parallel over
//! channels), 1×1 stride-1 unpadded convolutions multiply the input in place,
//! everything else is `im2col` + one GEMM per image and group. ConvTranspose is
//! a GEMM followed by `col2im`. The integer forms are computed exactly in f64 on
//! zero-point-centred values and requantized like QLinearMatMul.

use crate::error::Result;
use crate::kernels::window::{col2im, im2col, usizes_attr, Window};
use crate::kernels::workprec::{self, load, store, Mat, Real};
use crate::kernels::{checked_len, input, one, opt_input};
use crate::ops::linalg::{int_tensor, requantize};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_dtypes, with_workprec};
use egret_ir::{Attrs, Tensor, Value};
use rayon::prelude::*;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Conv", conv);
    r.add("ConvTranspose", conv_transpose);
    r.add("ConvInteger", conv_integer);
    r.add("QLinearConv", qlinear_conv);
    r.add("DeformConv", deform_conv);
    r.add("Col2Im", col2im_op);
}

/// Validated Conv geometry: channel counts, group and the sliding window.
struct ConvGeom {
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    win: Window,
}

impl ConvGeom {
    /// Geometry of a Conv-like node with data shape `xs` and weight shape `ws`.
    fn new(attrs: &Attrs, xs: &[usize], ws: &[usize]) -> Result<ConvGeom> {
        if xs.len() < 3 || ws.len() != xs.len() {
            bail!("conv input {xs:?} and weight {ws:?} ranks do not fit");
        }
        let group = attrs.int_or("group", 1)?;
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        if group < 1
            || c % group as usize != 0
            || m % group as usize != 0
            || ws[1].checked_mul(group as usize) != Some(c)
        {
            bail!("group {group} does not fit input channels {c}, weight {ws:?}");
        }
        let kernel = match attrs.ints_opt("kernel_shape")? {
            Some(k) if k.iter().map(|&v| v as usize).eq(ws[2..].iter().copied()) => {
                ws[2..].to_vec()
            }
            Some(k) => bail!("kernel_shape {k:?} does not match weight {ws:?}"),
            None => ws[2..].to_vec(),
        };
        let win = Window::from_attrs(attrs, &xs[2..], kernel)?;
        Ok(ConvGeom {
            n,
            c,
            m,
            group: group as usize,
            win,
        })
    }

    /// Output shape `[N, M, out...]`.
    fn out_shape(&self) -> Vec<usize> {
        [vec![self.n, self.m], self.win.output.clone()].concat()
    }
}

/// Direct depthwise 2-D convolution of one channel plane (`bias` pre-filled in `out`).
fn depthwise_plane<W: Real>(x: &[W], k: &[W], win: &Window, out: &mut [W]) {
    let (iw, ow) = (win.input[1], win.output[1]);
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    let (sh, sw) = (win.strides[0], win.strides[1]);
    let cols: Vec<(usize, usize, isize)> = (0..kw).map(|j| win.valid_range(1, j)).collect();
    for (oh, orow) in out.chunks_mut(ow).enumerate() {
        for i in 0..kh {
            let ih = (oh * sh + i * win.dilations[0]) as isize - win.pad_begin[0] as isize;
            if ih < 0 || ih >= win.input[0] as isize {
                continue;
            }
            let row = &x[ih as usize * iw..(ih as usize + 1) * iw];
            for (j, &(lo, hi, off)) in cols.iter().enumerate() {
                let wt = k[i * kw + j];
                if hi <= lo {
                    continue;
                }
                let start = (lo * sw) as isize + off;
                if sw == 1 {
                    let src = &row[start as usize..start as usize + (hi - lo)];
                    for (o, &v) in orow[lo..hi].iter_mut().zip(src) {
                        *o = *o + wt * v;
                    }
                } else {
                    for (t, o) in orow[lo..hi].iter_mut().enumerate() {
                        *o = *o + wt * row[start as usize + t * sw];
                    }
                }
            }
        }
    }
}

/// N-D grouped convolution: `x` `[N, C, in...]`, `w` `[M, C/group, k...]` → `[N, M, out...]`.
fn conv_nd<W: Real>(g: &ConvGeom, x: &[W], w: &[W], bias: Option<&[W]>) -> Result<Vec<W>> {
    let win = &g.win;
    let (ksz, isz, osz) = (win.kernel_size(), win.input_size(), win.output_size());
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    if x.len() != g.n * g.c * isz || w.len() != g.m * cg * ksz {
        bail!("conv data does not match its shape");
    }
    if bias.is_some_and(|b| b.len() != g.m) {
        bail!("conv bias must have {} values", g.m);
    }
    let mut out = vec![W::default(); checked_len(&[g.n, g.m, osz])?];
    if out.is_empty() {
        return Ok(out);
    }
    // Prefill with the bias (depthwise accumulates onto it; GEMM results get it added).
    let bias_of = |ch: usize| bias.map_or(W::default(), |b| b[ch]);
    let depthwise = cg == 1 && mg == 1 && win.rank() == 2;
    if depthwise {
        out.par_chunks_mut(osz).enumerate().for_each(|(p, plane)| {
            let ch = p % g.m;
            plane.fill(bias_of(ch));
            depthwise_plane(
                &x[p * isz..(p + 1) * isz],
                &w[ch * ksz..(ch + 1) * ksz],
                win,
                plane,
            );
        });
        return Ok(out);
    }
    let pointwise = win.kernel.iter().all(|&k| k == 1)
        && win.strides.iter().all(|&s| s == 1)
        && win.pad_begin.iter().chain(&win.pad_end).all(|&p| p == 0);
    let mut cols = if pointwise {
        Vec::new()
    } else {
        vec![W::default(); checked_len(&[cg * ksz, osz])?]
    };
    for ni in 0..g.n {
        for gi in 0..g.group {
            let xg = &x[(ni * g.c + gi * cg) * isz..(ni * g.c + (gi + 1) * cg) * isz];
            let b: &[W] = if pointwise {
                xg
            } else {
                im2col(xg, cg, win, W::default(), &mut cols)?;
                &cols
            };
            let wg = &w[gi * mg * cg * ksz..(gi + 1) * mg * cg * ksz];
            let o = &mut out[(ni * g.m + gi * mg) * osz..(ni * g.m + (gi + 1) * mg) * osz];
            workprec::gemm(
                mg,
                osz,
                cg * ksz,
                Mat::rows(wg, cg * ksz),
                Mat::rows(b, osz),
                o,
                osz,
                W::one(),
                W::default(),
            )?;
        }
    }
    if let Some(b) = bias {
        for (p, plane) in out.chunks_mut(osz).enumerate() {
            let v = b[p % g.m];
            plane.iter_mut().for_each(|o| *o = *o + v);
        }
    }
    Ok(out)
}

/// Conv (float types).
fn conv(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
    let b = opt_input(inputs, 2)?;
    let g = ConvGeom::new(ctx.attrs(), x.shape(), w.shape())?;
    with_workprec!(x.dtype(), W => {
        let bv = b.map(load::<W>).transpose()?;
        let out = conv_nd::<W>(&g, &load::<W>(x)?, &load::<W>(w)?, bv.as_deref())?;
        one(store::<W>(x.dtype(), g.out_shape(), out)?)
    })
}

/// `t - zp` in f64; `zp` is a scalar or holds one value per index `(i / div) % len`.
fn centered(t: &Tensor, zp: Option<&Tensor>, div: usize) -> Result<Vec<f64>> {
    let v = t.to_f64_vec()?;
    let z = match zp {
        Some(z) => z.to_f64_vec()?,
        None => return Ok(v),
    };
    Ok(match z.len() {
        0 => v,
        1 => v.into_iter().map(|x| x - z[0]).collect(),
        l => v
            .into_iter()
            .enumerate()
            .map(|(i, x)| x - z[(i / div.max(1)) % l])
            .collect(),
    })
}

/// The exact integer convolution of zero-point-centred `x` and `w` (weight zero
/// point per output channel or scalar), with an optional integer bias.
fn centered_conv(
    attrs: &Attrs,
    x: &Tensor,
    xzp: Option<&Tensor>,
    w: &Tensor,
    wzp: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<(ConvGeom, Vec<f64>)> {
    let g = ConvGeom::new(attrs, x.shape(), w.shape())?;
    if xzp.is_some_and(|z| z.numel() > 1) {
        bail!("x_zero_point must be a scalar");
    }
    let per_m = w.numel() / g.m.max(1);
    if wzp.is_some_and(|z| z.numel() > 1 && z.numel() != g.m) {
        bail!("w_zero_point must be a scalar or have one value per output channel");
    }
    let bv = bias.map(|b| b.to_f64_vec()).transpose()?;
    let out = conv_nd::<f64>(
        &g,
        &centered(x, xzp, 1)?,
        &centered(w, wzp, per_m)?,
        bv.as_deref(),
    )?;
    Ok((g, out))
}

/// ConvInteger: the i32 convolution of `x - x_zp` and `w - w_zp`.
fn conv_integer(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
    let (g, out) = centered_conv(
        ctx.attrs(),
        x,
        opt_input(inputs, 2)?,
        w,
        opt_input(inputs, 3)?,
        None,
    )?;
    one(Tensor::from_vec(
        g.out_shape(),
        out.into_iter().map(|v| v as i32).collect::<Vec<i32>>(),
    )?)
}

/// QLinearConv: requantized `conv(x - x_zp, w - w_zp) + B`, scaled by
/// `x_scale·w_scale/y_scale` (w_scale per tensor or per output channel).
fn qlinear_conv(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, xs, w, ws, ys) = (
        input(inputs, 0)?,
        input(inputs, 1)?,
        input(inputs, 3)?,
        input(inputs, 4)?,
        input(inputs, 6)?,
    );
    let yzp = opt_input(inputs, 7)?;
    let (g, acc) = centered_conv(
        ctx.attrs(),
        x,
        opt_input(inputs, 2)?,
        w,
        opt_input(inputs, 5)?,
        opt_input(inputs, 8)?,
    )?;
    let sdt = xs.dtype();
    let (xsv, wsv, ysv) = (xs.to_f64_vec()?, ws.to_f64_vec()?, ys.to_f64_vec()?);
    if xsv.len() != 1 || ysv.len() != 1 || (wsv.len() != 1 && wsv.len() != g.m) {
        bail!("QLinearConv scales must be scalars (w_scale may be per output channel)");
    }
    let scales: Vec<f64> = (0..g.m)
        .map(|m| {
            let r = |v: f64| crate::kernels::convert::round_to_float(sdt, v);
            r(r(xsv[0] * wsv[if wsv.len() == 1 { 0 } else { m }]) / ysv[0])
        })
        .collect();
    let out_dt = yzp.map_or(x.dtype(), |t| t.dtype());
    let z = yzp
        .map(|t| t.to_f64_vec())
        .transpose()?
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0);
    let osz = g.win.output_size().max(1);
    let q = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| requantize(a * scales[(i / osz) % g.m], z, out_dt))
        .collect::<Result<Vec<f64>>>()?;
    one(int_tensor(out_dt, g.out_shape(), &q)?)
}

/// ConvTranspose geometry: the output extents and a [`Window`] whose "input" is
/// the transposed convolution's output and whose "output" is X's spatial shape.
fn transpose_window(attrs: &Attrs, xs: &[usize], kernel: Vec<usize>) -> Result<Window> {
    let n = kernel.len();
    let strides = usizes_attr(attrs, "strides", n, 1)?;
    let dilations = usizes_attr(attrs, "dilations", n, 1)?;
    let opad = usizes_attr(attrs, "output_padding", n, 0)?;
    let pads = usizes_attr(attrs, "pads", 2 * n, 0)?;
    let auto_pad = attrs.string_or("auto_pad", "NOTSET")?;
    let out_attr = match attrs.ints_opt("output_shape")? {
        None => None,
        Some(v) if v.len() == n || v.len() == n + 2 => Some(
            v[v.len() - n..]
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect::<Vec<_>>(),
        ),
        Some(v) => bail!("output_shape {v:?} does not match spatial rank {n}"),
    };
    if strides
        .iter()
        .chain(&dilations)
        .chain(&kernel)
        .any(|&v| v == 0)
    {
        bail!("kernel, strides and dilations must be >= 1");
    }
    let mut w = Window {
        kernel,
        strides,
        dilations,
        pad_begin: pads[..n].to_vec(),
        pad_end: pads[n..].to_vec(),
        input: vec![0; n],
        output: xs.to_vec(),
    };
    for i in 0..n {
        let natural = w.strides[i] * xs[i].saturating_sub(1) + opad[i] + w.extent(i);
        match auto_pad {
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = out_attr.as_ref().map_or(xs[i] * w.strides[i], |o| o[i]);
                let total = natural.checked_sub(out).ok_or_else(|| {
                    crate::error::RuntimeError::msg("output_shape too large for SAME padding")
                })?;
                let small = total / 2;
                (w.pad_begin[i], w.pad_end[i]) = if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                w.input[i] = out;
            }
            _ => {
                w.input[i] = match &out_attr {
                    Some(o) => o[i],
                    None => natural
                        .checked_sub(w.pad_begin[i] + w.pad_end[i])
                        .ok_or_else(|| {
                            crate::error::RuntimeError::msg("pads exceed the ConvTranspose output")
                        })?,
                };
            }
        }
    }
    Ok(w)
}

/// ConvTranspose: per image and group, `cols = W_gᵀ·X_g`, then `col2im` into the output.
fn conv_transpose(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
    let b = opt_input(inputs, 2)?;
    let (xs, wsh) = (x.shape(), w.shape());
    if xs.len() < 3 || wsh.len() != xs.len() {
        bail!("ConvTranspose input {xs:?} and weight {wsh:?} ranks do not fit");
    }
    let group = ctx.attrs().int_or("group", 1)?;
    let (n, c) = (xs[0], xs[1]);
    if group < 1 || wsh[0] != c || c % group as usize != 0 {
        bail!("group {group} does not fit input channels {c}, weight {wsh:?}");
    }
    let group = group as usize;
    let (cg, mg) = (c / group, wsh[1]);
    let m = mg * group;
    let win = transpose_window(ctx.attrs(), &xs[2..], wsh[2..].to_vec())?;
    let (ksz, isz, osz) = (win.kernel_size(), win.output_size(), win.input_size());
    let shape = [vec![n, m], win.input.clone()].concat();
    let len = checked_len(&shape)?;
    with_workprec!(x.dtype(), W => {
        let (xv, wv) = (load::<W>(x)?, load::<W>(w)?);
        let bv = b.map(load::<W>).transpose()?;
        if bv.as_ref().is_some_and(|b| b.len() != m) {
            bail!("ConvTranspose bias must have {m} values");
        }
        let mut out = vec![W::default(); len];
        let mut cols = vec![W::default(); checked_len(&[mg * ksz, isz])?];
        for ni in 0..n {
            for gi in 0..group {
                let xg = &xv[(ni * c + gi * cg) * isz..(ni * c + (gi + 1) * cg) * isz];
                let wg = &wv[gi * cg * mg * ksz..(gi + 1) * cg * mg * ksz];
                workprec::gemm(mg * ksz, isz, cg, Mat::rows_t(wg, mg * ksz), Mat::rows(xg, isz), &mut cols, isz, W::of(1.0), W::default())?;
                let o = &mut out[(ni * m + gi * mg) * osz..(ni * m + (gi + 1) * mg) * osz];
                col2im(&cols, mg, &win, o)?;
            }
        }
        if let Some(bv) = &bv {
            for (p, plane) in out.chunks_mut(osz.max(1)).enumerate() {
                let v = bv[p % m];
                plane.iter_mut().for_each(|o| *o += v);
            }
        }
        one(store::<W>(x.dtype(), shape, out)?)
    })
}

/// Col2Im: `[N, C·∏block, L]` scatter-added into `[N, C, image...]`.
fn col2im_op(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let img: Vec<i64> = input(inputs, 1)?.to_i64_vec()?;
    let block: Vec<i64> = input(inputs, 2)?.to_i64_vec()?;
    if img.len() != block.len()
        || img.is_empty()
        || img.iter().chain(&block).any(|&v| v < 1)
        || x.rank() != 3
    {
        bail!("Col2Im needs a rank-3 input and positive image_shape/block_shape of equal length");
    }
    let img: Vec<usize> = img.iter().map(|&v| v as usize).collect();
    let win = Window::from_attrs(
        ctx.attrs(),
        &img,
        block.iter().map(|&v| v as usize).collect(),
    )?;
    let ksz = win.kernel_size();
    let (n, ck, l) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    if ck % ksz != 0 || l != win.output_size() {
        bail!(
            "Col2Im input {:?} does not match blocks of {ksz} over {} positions",
            x.shape(),
            win.output_size()
        );
    }
    let c = ck / ksz;
    let shape = [vec![n, c], img].concat();
    let isz = win.input_size();
    let len = checked_len(&shape)?;
    let run = |out: &mut [f64], v: &[f64]| -> Result<()> {
        for ni in 0..n {
            col2im(
                &v[ni * ck * l..(ni + 1) * ck * l],
                c,
                &win,
                &mut out[ni * c * isz..(ni + 1) * c * isz],
            )?;
        }
        Ok(())
    };
    let mut out = vec![0f64; len];
    run(&mut out, &x.to_f64_vec()?)?;
    if x.dtype().is_float() {
        with_workprec!(x.dtype(), W => { one(store::<W>(x.dtype(), shape, out.into_iter().map(W::of).collect())?) })
    } else {
        for_dtypes!(x.dtype(), T => {
            one(Tensor::from_vec(shape, out.into_iter().map(|v| v as T).collect::<Vec<T>>())?)
        }, [I8, I16, I32, I64, U8, U16, U32, U64])
    }
}

/// Bilinear sample of a `h×w` plane at `(y, x)`; zero outside.
fn bilinear(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    if y <= -1.0 || y >= h as f64 || x <= -1.0 || x >= w as f64 {
        return 0.0;
    }
    let (y0, x0) = (y.floor(), x.floor());
    let (dy, dx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| -> f64 {
        if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
            0.0
        } else {
            plane[yy as usize * w + xx as usize]
        }
    };
    at(y0, x0) * (1.0 - dy) * (1.0 - dx)
        + at(y0, x0 + 1.0) * (1.0 - dy) * dx
        + at(y0 + 1.0, x0) * dy * (1.0 - dx)
        + at(y0 + 1.0, x0 + 1.0) * dy * dx
}

/// DeformConv (2-D): im2col with bilinear sampling at offset positions
/// (optionally masked), then one GEMM per image and group. Computed in f64.
fn deform_conv(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, w, off) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let (b, mask) = (opt_input(inputs, 3)?, opt_input(inputs, 4)?);
    let g = ConvGeom::new(ctx.attrs(), x.shape(), w.shape())?;
    if g.win.rank() != 2 {
        bail!("DeformConv supports 2-D inputs only");
    }
    let og = ctx.attrs().int_or("offset_group", 1)?.max(1) as usize;
    let win = &g.win;
    let (kh, kw) = (win.kernel[0], win.kernel[1]);
    let (h, wd, oh, ow) = (win.input[0], win.input[1], win.output[0], win.output[1]);
    let (ksz, osz, isz) = (kh * kw, oh * ow, h * wd);
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    if g.c % og != 0
        || off.shape() != [g.n, og * 2 * ksz, oh, ow]
        || mask.is_some_and(|m| m.shape() != [g.n, og * ksz, oh, ow])
    {
        bail!("DeformConv offset/mask shapes do not match the output");
    }
    let (xv, wv, ov) = (x.to_f64_vec()?, w.to_f64_vec()?, off.to_f64_vec()?);
    let mv = mask.map(|m| m.to_f64_vec()).transpose()?;
    let bv = b.map(|b| b.to_f64_vec()).transpose()?;
    let shape = g.out_shape();
    let mut out = vec![0f64; checked_len(&shape)?];
    let mut cols = vec![0f64; checked_len(&[cg * ksz, osz])?];
    let cpo = g.c / og;
    for ni in 0..g.n {
        for gi in 0..g.group {
            for cl in 0..cg {
                let ch = gi * cg + cl;
                let o_g = ch / cpo;
                let plane = &xv[(ni * g.c + ch) * isz..(ni * g.c + ch + 1) * isz];
                for k in 0..ksz {
                    let (ki, kj) = (k / kw, k % kw);
                    let obase = ((ni * og + o_g) * 2 * ksz + 2 * k) * osz;
                    for p in 0..osz {
                        let (py, px) = (p / ow, p % ow);
                        let y = (py * win.strides[0] + ki * win.dilations[0]) as f64
                            - win.pad_begin[0] as f64
                            + ov[obase + p];
                        let xx = (px * win.strides[1] + kj * win.dilations[1]) as f64
                            - win.pad_begin[1] as f64
                            + ov[obase + osz + p];
                        let mval = mv
                            .as_ref()
                            .map_or(1.0, |m| m[((ni * og + o_g) * ksz + k) * osz + p]);
                        cols[(cl * ksz + k) * osz + p] = bilinear(plane, h, wd, y, xx) * mval;
                    }
                }
            }
            let wg = &wv[gi * mg * cg * ksz..(gi + 1) * mg * cg * ksz];
            let o = &mut out[(ni * g.m + gi * mg) * osz..(ni * g.m + (gi + 1) * mg) * osz];
            workprec::gemm(
                mg,
                osz,
                cg * ksz,
                Mat::rows(wg, cg * ksz),
                Mat::rows(&cols, osz),
                o,
                osz,
                1.0,
                0.0,
            )?;
        }
    }
    if let Some(bv) = &bv {
        for (p, plane) in out.chunks_mut(osz.max(1)).enumerate() {
            let v = bv.get(p % g.m).copied().unwrap_or(0.0);
            plane.iter_mut().for_each(|o| *o += v);
        }
    }
    with_workprec!(x.dtype(), W => { one(store::<W>(x.dtype(), shape, out.into_iter().map(W::of).collect())?) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::Attr;

    fn attrs(list: &[(&str, Attr)]) -> Attrs {
        let mut a = Attrs::default();
        for (k, v) in list {
            a.set(k, v.clone());
        }
        a
    }

    /// Direct reference convolution for 2-D inputs.
    fn naive(g: &ConvGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
        let win = &g.win;
        let (cg, mg) = (g.c / g.group, g.m / g.group);
        let (h, wd, oh, ow, kh, kw) = (
            win.input[0],
            win.input[1],
            win.output[0],
            win.output[1],
            win.kernel[0],
            win.kernel[1],
        );
        let mut out = vec![0.0; g.n * g.m * oh * ow];
        for n in 0..g.n {
            for m in 0..g.m {
                let gi = m / mg;
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut s = 0.0;
                        for c in 0..cg {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let iy = (y * win.strides[0] + i * win.dilations[0]) as isize
                                        - win.pad_begin[0] as isize;
                                    let ix = (xx * win.strides[1] + j * win.dilations[1]) as isize
                                        - win.pad_begin[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        s += x[((n * g.c + gi * cg + c) * h + iy as usize) * wd
                                            + ix as usize]
                                            * w[((m * cg + c) * kh + i) * kw + j];
                                    }
                                }
                            }
                        }
                        out[((n * g.m + m) * oh + y) * ow + xx] = s;
                    }
                }
            }
        }
        out
    }

    fn check(a: &Attrs, xs: &[usize], ws: &[usize]) {
        let g = ConvGeom::new(a, xs, ws).unwrap();
        let x: Vec<f64> = (0..xs.iter().product::<usize>())
            .map(|i| ((i * 7) % 11) as f64 - 5.0)
            .collect();
        let w: Vec<f64> = (0..ws.iter().product::<usize>())
            .map(|i| ((i * 5) % 7) as f64 - 3.0)
            .collect();
        let got = conv_nd::<f64>(&g, &x, &w, None).unwrap();
        assert_eq!(got, naive(&g, &x, &w), "{xs:?} {ws:?}");
    }

    #[test]
    fn conv_paths_match_naive() {
        let pads = attrs(&[
            ("pads", Attr::Ints(vec![1, 2, 0, 1])),
            ("strides", Attr::Ints(vec![2, 1])),
        ]);
        check(&pads, &[2, 3, 6, 7], &[4, 3, 3, 3]);
        let grouped = attrs(&[
            ("group", Attr::Int(2)),
            ("dilations", Attr::Ints(vec![2, 1])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ]);
        check(&grouped, &[1, 4, 7, 6], &[6, 2, 3, 2]);
        let dw = attrs(&[
            ("group", Attr::Int(3)),
            ("pads", Attr::Ints(vec![2, 2, 2, 2])),
            ("strides", Attr::Ints(vec![2, 2])),
        ]);
        check(&dw, &[2, 3, 9, 8], &[3, 1, 5, 5]);
        let dw1 = attrs(&[
            ("group", Attr::Int(3)),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ]);
        check(&dw1, &[1, 3, 5, 6], &[3, 1, 3, 3]);
        check(&Attrs::default(), &[2, 5, 4, 3], &[3, 5, 1, 1]);
    }

    #[test]
    fn transpose_window_shapes() {
        let a = attrs(&[
            ("strides", Attr::Ints(vec![3, 2])),
            ("output_padding", Attr::Ints(vec![1, 1])),
        ]);
        let w = transpose_window(&a, &[3, 3], vec![3, 3]).unwrap();
        assert_eq!(w.input, vec![10, 8]);
        let a = attrs(&[
            ("strides", Attr::Ints(vec![2])),
            ("auto_pad", Attr::String("SAME_UPPER".into())),
        ]);
        let w = transpose_window(&a, &[3], vec![3]).unwrap();
        assert_eq!((w.input[0], w.pad_begin[0], w.pad_end[0]), (6, 0, 1));
    }
}
