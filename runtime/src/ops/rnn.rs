//! Kernels: LSTM, GRU, RNN.
//!
//! One driver serves all three cells. Per direction, the input projection of the
//! whole sequence (`X·Wᵀ + biases`) is a single GEMM; each time step then adds
//! `H·Rᵀ` (one small GEMM over the batch) and applies the cell's gate math.
//! Reverse directions reverse each batch row's first `sequence_lens[b]` steps,
//! run forward, and write outputs back at the original time index. Rows past
//! their length keep their state and emit zeros, as onnxruntime does.
//!
//! Math runs at the working precision of [`crate::kernels::workprec`]: f32 for
//! f32/f16/bf16 models (no copy on the f32 path), f64 for f64.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::strided::permute;
use crate::kernels::workprec::{gemm, load, store, Mat, Real};
use crate::kernels::{checked_len, input, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::with_workprec;
use egret_ir::{Attrs, Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("RNN", |ctx, inputs| rnn_kernel(ctx, inputs, Cell::Rnn));
    r.add("GRU", |ctx, inputs| {
        let lbr = ctx.attrs().int_or("linear_before_reset", 0)? != 0;
        rnn_kernel(
            ctx,
            inputs,
            Cell::Gru {
                linear_before_reset: lbr,
            },
        )
    });
    r.add("LSTM", |ctx, inputs| {
        let input_forget = ctx.attrs().int_or("input_forget", 0)? != 0;
        rnn_kernel(ctx, inputs, Cell::Lstm { input_forget })
    });
}

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    /// `H = f(X·Wᵀ + H·Rᵀ + b)`.
    Rnn,
    /// Gates `z, r, h`.
    Gru { linear_before_reset: bool },
    /// Gates `i, o, f, c`, with a cell state and optional peepholes.
    Lstm { input_forget: bool },
}

impl Cell {
    /// Number of gates stacked in W and R.
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru { .. } => 3,
            Cell::Lstm { .. } => 4,
        }
    }

    /// Default activations of one direction.
    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru { .. } => &["Sigmoid", "Tanh"],
            Cell::Lstm { .. } => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// An activation function allowed in recurrent cells, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Act {
    /// Parse one activation name, taking its alpha/beta from the iterators (ONNX
    /// consumes the lists in order, only for functions that have parameters).
    fn parse(
        name: &str,
        alphas: &mut impl Iterator<Item = f64>,
        betas: &mut impl Iterator<Item = f64>,
    ) -> Result<Act> {
        let mut a = |d: f64| alphas.next().unwrap_or(d);
        Ok(match name.to_ascii_lowercase().as_str() {
            "relu" => Act::Relu,
            "tanh" => Act::Tanh,
            "sigmoid" => Act::Sigmoid,
            "affine" => Act::Affine(a(1.0), betas.next().unwrap_or(0.0)),
            "leakyrelu" => Act::LeakyRelu(a(0.01)),
            "thresholdedrelu" => Act::ThresholdedRelu(a(1.0)),
            "scaledtanh" => Act::ScaledTanh(a(1.0), betas.next().unwrap_or(1.0)),
            "hardsigmoid" => Act::HardSigmoid(a(0.2), betas.next().unwrap_or(0.5)),
            "elu" => Act::Elu(a(1.0)),
            "softsign" => Act::Softsign,
            "softplus" => Act::Softplus,
            other => bail!("unsupported recurrent activation `{other}`"),
        })
    }

    /// Apply to one value.
    fn apply<W: Real>(self, x: W) -> W {
        let c = W::of;
        let one = W::one();
        match self {
            Act::Relu => x.max(W::zero()),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => one / (one + (-x).exp()),
            Act::Affine(a, b) => c(a) * x + c(b),
            Act::LeakyRelu(a) => {
                if x >= W::zero() {
                    x
                } else {
                    c(a) * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > c(a) {
                    x
                } else {
                    W::zero()
                }
            }
            Act::ScaledTanh(a, b) => c(a) * (c(b) * x).tanh(),
            Act::HardSigmoid(a, b) => (c(a) * x + c(b)).max(W::zero()).min(one),
            Act::Elu(a) => {
                if x >= W::zero() {
                    x
                } else {
                    c(a) * (x.exp() - one)
                }
            }
            Act::Softsign => x / (one + x.abs()),
            Act::Softplus => {
                // log(1 + e^x) without overflow for large x.
                if x > W::of(20.0) {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }
}

/// The activations of each direction (`[direction][function]`).
fn parse_acts(attrs: &Attrs, cell: Cell, ndirs: usize) -> Result<Vec<Vec<Act>>> {
    let per = cell.default_acts().len();
    let names: Vec<String> = match attrs.strings_opt("activations")? {
        Some(v) if v.len() == per * ndirs => v.to_vec(),
        // One direction's list given for a bidirectional op: use it for both.
        Some(v) if v.len() == per => v.iter().cycle().take(per * ndirs).cloned().collect(),
        Some(v) => bail!(
            "{} activations given, {cell:?} needs {}",
            v.len(),
            per * ndirs
        ),
        None => cell
            .default_acts()
            .iter()
            .cycle()
            .take(per * ndirs)
            .map(|s| s.to_string())
            .collect(),
    };
    let floats = |n: &str| -> Result<Vec<f64>> {
        Ok(attrs
            .floats_opt(n)?
            .unwrap_or(&[])
            .iter()
            .map(|&x| x as f64)
            .collect())
    };
    let (al, be) = (floats("activation_alpha")?, floats("activation_beta")?);
    let (mut al, mut be) = (al.into_iter(), be.into_iter());
    let acts = names
        .iter()
        .map(|n| Act::parse(n, &mut al, &mut be))
        .collect::<Result<Vec<_>>>()?;
    Ok(acts.chunks(per).map(<[Act]>::to_vec).collect())
}

/// Everything fixed across the directions of one call.
struct Dims {
    seq: usize,
    batch: usize,
    isz: usize,
    hidden: usize,
    gates: usize,
}

/// The per-direction operands of one run, at working precision.
struct DirArgs<'a, W> {
    /// W for this direction, `[G·H, I]`.
    w: &'a [W],
    /// R for this direction, `[G·H, H]`.
    r: &'a [W],
    /// B for this direction, `[2·G·H]`, if given.
    b: Option<&'a [W]>,
    /// Peepholes `[3·H]` (`i, o, f`), LSTM only.
    p: Option<&'a [W]>,
    /// Activations of this direction.
    acts: &'a [Act],
    /// Clip threshold of gate pre-activations.
    clip: Option<W>,
    /// Process the sequence back to front.
    reverse: bool,
}

/// The mutable outputs one direction writes.
struct DirOut<'a, W> {
    /// Y, `[seq, dirs, batch, H]`.
    y: &'a mut [W],
    /// Which direction this is, and how many there are (for Y's layout).
    dir: usize,
    ndirs: usize,
    /// In: initial hidden state; out: final one (`[batch, H]`).
    h: &'a mut [W],
    /// In/out cell state (`[batch, H]`), LSTM only.
    c: &'a mut [W],
}

fn rnn_kernel(ctx: &KernelCtx<'_>, inputs: &[Option<Value>], cell: Cell) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    with_workprec!(x.dtype(), W => { run::<W>(ctx, inputs, cell) })
}

/// Check a tensor's shape, naming it in the error.
fn expect_shape(t: &Tensor, name: &str, want: &[usize]) -> Result<()> {
    if t.shape() != want {
        bail!("{name} has shape {:?}, expected {want:?}", t.shape());
    }
    Ok(())
}

fn run<W: Real>(ctx: &KernelCtx<'_>, inputs: &[Option<Value>], cell: Cell) -> Result<Vec<Value>> {
    let attrs = ctx.attrs();
    let (x, w, r) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let is_lstm = matches!(cell, Cell::Lstm { .. });
    let b = opt_input(inputs, 3)?;
    let lens = opt_input(inputs, 4)?;
    let h0 = opt_input(inputs, 5)?;
    let (c0, p) = if is_lstm {
        (opt_input(inputs, 6)?, opt_input(inputs, 7)?)
    } else {
        (None, None)
    };

    let ndirs = match attrs.string_or("direction", "forward")? {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        other => bail!("unknown direction `{other}`"),
    };
    let reverse_only = attrs.string_or("direction", "forward")? == "reverse";
    let layout = attrs.int_or("layout", 0)?;
    if x.rank() != 3 || r.rank() != 3 {
        bail!(
            "X and R must be 3-D, got {:?} and {:?}",
            x.shape(),
            r.shape()
        );
    }
    let hidden = r.shape()[2];
    if let Some(hs) = attrs.int_opt("hidden_size")? {
        if hs < 0 || hs as usize != hidden {
            bail!("hidden_size {hs} does not match R's shape {:?}", r.shape());
        }
    }
    let (seq, batch) = match layout {
        0 => (x.shape()[0], x.shape()[1]),
        1 => (x.shape()[1], x.shape()[0]),
        other => bail!("layout must be 0 or 1, got {other}"),
    };
    let gates = cell.gates();
    let d = Dims {
        seq,
        batch,
        isz: x.shape()[2],
        hidden,
        gates,
    };
    let gh = gates * hidden;
    expect_shape(w, "W", &[ndirs, gh, d.isz])?;
    expect_shape(r, "R", &[ndirs, gh, hidden])?;
    if let Some(b) = b {
        expect_shape(b, "B", &[ndirs, 2 * gh])?;
    }
    if let Some(p) = p {
        expect_shape(p, "P", &[ndirs, 3 * hidden])?;
    }
    let state_shape = if layout == 0 {
        [ndirs, batch, hidden]
    } else {
        [batch, ndirs, hidden]
    };
    for (t, name) in [(h0, "initial_h"), (c0, "initial_c")] {
        if let Some(t) = t {
            expect_shape(t, name, &state_shape)?;
        }
    }
    let seq_lens: Vec<usize> = match lens {
        None => vec![seq; batch],
        Some(l) => {
            let v = l.to_i64_vec()?;
            if v.len() != batch {
                bail!("sequence_lens has {} entries for batch {batch}", v.len());
            }
            v.iter()
                .map(|&n| usize::try_from(n).ok().filter(|&n| n <= seq))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    RuntimeError::msg(format!("sequence_lens {v:?} out of range 0..={seq}"))
                })?
        }
    };
    let acts = parse_acts(attrs, cell, ndirs)?;
    let clip = attrs.float_opt("clip")?.map(|c| W::of(c as f64));

    // Time-major X [seq, batch, I], and states as [dirs, batch, H].
    let xv = load::<W>(x)?;
    let x_tm = if layout == 0 {
        xv.into_owned()
    } else {
        permute(&xv, x.shape(), &[1, 0, 2])?.1
    };
    let state = |t: Option<&Tensor>| -> Result<Vec<W>> {
        match t {
            None => Ok(vec![W::zero(); ndirs * batch * hidden]),
            Some(t) if layout == 0 => Ok(load::<W>(t)?.into_owned()),
            Some(t) => Ok(permute(&load::<W>(t)?, t.shape(), &[1, 0, 2])?.1),
        }
    };
    let (mut hs, mut cs) = (state(h0)?, state(c0)?);
    let (wv, rv) = (load::<W>(w)?, load::<W>(r)?);
    let bv = b.map(load::<W>).transpose()?;
    let pv = p.map(load::<W>).transpose()?;
    let mut y = vec![W::zero(); checked_len(&[seq, ndirs, batch, hidden])?];
    let bh = batch * hidden;
    for dir in 0..ndirs {
        let args = DirArgs {
            w: &wv[dir * gh * d.isz..(dir + 1) * gh * d.isz],
            r: &rv[dir * gh * hidden..(dir + 1) * gh * hidden],
            b: bv.as_deref().map(|b| &b[dir * 2 * gh..(dir + 1) * 2 * gh]),
            p: pv
                .as_deref()
                .map(|p| &p[dir * 3 * hidden..(dir + 1) * 3 * hidden]),
            acts: &acts[dir],
            clip,
            reverse: reverse_only || dir == 1,
        };
        let out = DirOut {
            y: &mut y,
            dir,
            ndirs,
            h: &mut hs[dir * bh..(dir + 1) * bh],
            c: &mut cs[dir * bh..(dir + 1) * bh],
        };
        run_direction(cell, &d, &x_tm, &seq_lens, &args, out)?;
    }

    let dt = x.dtype();
    let (y_shape, y, hs, cs) = if layout == 0 {
        (vec![seq, ndirs, batch, hidden], y, hs, cs)
    } else {
        let (ys, y) = permute(&y, &[seq, ndirs, batch, hidden], &[2, 0, 1, 3])?;
        let sh = [ndirs, batch, hidden];
        (
            ys,
            y,
            permute(&hs, &sh, &[1, 0, 2])?.1,
            permute(&cs, &sh, &[1, 0, 2])?.1,
        )
    };
    let mut outs = vec![
        Value::Tensor(store(dt, y_shape, y)?),
        Value::Tensor(store(dt, state_shape.to_vec(), hs)?),
    ];
    if is_lstm {
        outs.push(Value::Tensor(store(dt, state_shape.to_vec(), cs)?));
    }
    Ok(outs)
}

/// Clip to `[-c, c]` when a threshold is set.
fn clipped<W: Real>(x: W, clip: Option<W>) -> W {
    match clip {
        Some(c) => x.max(-c).min(c),
        None => x,
    }
}

/// Run one direction over the whole sequence.
fn run_direction<W: Real>(
    cell: Cell,
    d: &Dims,
    x_tm: &[W],
    lens: &[usize],
    a: &DirArgs<'_, W>,
    out: DirOut<'_, W>,
) -> Result<()> {
    let (seq, batch, isz, hsz) = (d.seq, d.batch, d.isz, d.hidden);
    let gh = d.gates * hsz;
    // Step s of row b reads time t(b, s): s forward, lens[b]-1-s in reverse.
    let time = |b: usize, s: usize| if a.reverse { lens[b] - 1 - s } else { s };
    let xs: Vec<W> = if a.reverse {
        let mut v = vec![W::zero(); x_tm.len()];
        for (b, &len) in lens.iter().enumerate() {
            for s in 0..len {
                let (src, dst) = ((time(b, s) * batch + b) * isz, (s * batch + b) * isz);
                v[dst..dst + isz].copy_from_slice(&x_tm[src..src + isz]);
            }
        }
        v
    } else {
        x_tm.to_vec()
    };
    // Input projection of the whole sequence plus biases: [seq·batch, G·H].
    let mut xw = vec![W::zero(); checked_len(&[seq, batch, gh])?];
    gemm(
        seq * batch,
        gh,
        isz,
        Mat::rows(&xs, isz),
        Mat::rows_t(a.w, isz),
        &mut xw,
        gh,
        W::one(),
        W::zero(),
    )?;
    let lbr = matches!(
        cell,
        Cell::Gru {
            linear_before_reset: true
        }
    );
    if let Some(bias) = a.b {
        let (wb, rb) = bias.split_at(gh);
        // GRU with linear_before_reset adds Rb_h inside the reset product instead.
        let fold: Vec<W> = (0..gh)
            .map(|j| {
                if lbr && j >= 2 * hsz {
                    wb[j]
                } else {
                    wb[j] + rb[j]
                }
            })
            .collect();
        for row in xw.chunks_exact_mut(gh) {
            row.iter_mut().zip(&fold).for_each(|(v, &f)| *v = *v + f);
        }
    }
    let rbh: Vec<W> = match (lbr, a.b) {
        (true, Some(bias)) => bias[gh + 2 * hsz..2 * gh].to_vec(),
        _ => vec![W::zero(); hsz],
    };
    let act = |i: usize| {
        a.acts
            .get(i)
            .copied()
            .ok_or_else(|| RuntimeError::msg("missing activation"))
    };
    let (f, g) = (act(0)?, act(1).unwrap_or(Act::Tanh));
    let hact = act(2).unwrap_or(Act::Tanh);
    let clip = a.clip;
    let zero_p = vec![W::zero(); 3 * hsz];
    let p = a.p.unwrap_or(&zero_p);
    let (p_i, p_o, p_f) = (&p[..hsz], &p[hsz..2 * hsz], &p[2 * hsz..]);

    // Recurrent product H·Rᵀ of the current step, and GRU's (r ⊙ H)·R_hᵀ.
    let mut hr = vec![W::zero(); batch * gh];
    let mut zr = vec![W::zero(); batch * 2 * hsz];
    let mut rh_in = vec![W::zero(); batch * hsz];
    let mut rh = vec![W::zero(); batch * hsz];
    let h = out.h;
    let c = out.c;
    for s in 0..seq {
        let active: Vec<usize> = (0..batch).filter(|&b| s < lens[b]).collect();
        if active.is_empty() {
            continue;
        }
        // For default GRU only z and r use H·Rᵀ; h's product needs r first.
        let ncols = if matches!(
            cell,
            Cell::Gru {
                linear_before_reset: false
            }
        ) {
            2 * hsz
        } else {
            gh
        };
        gemm(
            batch,
            ncols,
            hsz,
            Mat::rows(h, hsz),
            Mat::rows_t(a.r, hsz),
            &mut hr,
            gh,
            W::one(),
            W::zero(),
        )?;
        let pre = |b: usize, j: usize| xw[(s * batch + b) * gh + j] + hr[b * gh + j];
        match cell {
            Cell::Rnn => {
                for &b in &active {
                    for j in 0..hsz {
                        h[b * hsz + j] = f.apply(clipped(pre(b, j), clip));
                    }
                }
            }
            Cell::Lstm { input_forget } => {
                for &b in &active {
                    for j in 0..hsz {
                        let k = b * hsz + j;
                        let cp = c[k];
                        let i = f.apply(clipped(pre(b, j) + p_i[j] * cp, clip));
                        let fg = if input_forget {
                            W::one() - i
                        } else {
                            f.apply(clipped(pre(b, 2 * hsz + j) + p_f[j] * cp, clip))
                        };
                        let ct = g.apply(clipped(pre(b, 3 * hsz + j), clip));
                        let cn = fg * cp + i * ct;
                        let o = f.apply(clipped(pre(b, hsz + j) + p_o[j] * cn, clip));
                        c[k] = cn;
                        h[k] = o * hact.apply(cn);
                    }
                }
            }
            Cell::Gru {
                linear_before_reset,
            } => {
                for &b in &active {
                    for j in 0..2 * hsz {
                        zr[b * 2 * hsz + j] = f.apply(clipped(pre(b, j), clip));
                    }
                }
                if !linear_before_reset {
                    for b in 0..batch {
                        for j in 0..hsz {
                            rh_in[b * hsz + j] = zr[b * 2 * hsz + hsz + j] * h[b * hsz + j];
                        }
                    }
                    let rh_w = &a.r[2 * hsz * hsz..];
                    gemm(
                        batch,
                        hsz,
                        hsz,
                        Mat::rows(&rh_in, hsz),
                        Mat::rows_t(rh_w, hsz),
                        &mut rh,
                        hsz,
                        W::one(),
                        W::zero(),
                    )?;
                }
                for &b in &active {
                    for j in 0..hsz {
                        let (z, r) = (zr[b * 2 * hsz + j], zr[b * 2 * hsz + hsz + j]);
                        let xh = xw[(s * batch + b) * gh + 2 * hsz + j];
                        let rec = if linear_before_reset {
                            r * (hr[b * gh + 2 * hsz + j] + rbh[j])
                        } else {
                            rh[b * hsz + j]
                        };
                        let cand = g.apply(clipped(xh + rec, clip));
                        let k = b * hsz + j;
                        h[k] = (W::one() - z) * cand + z * h[k];
                    }
                }
            }
        }
        for &b in &active {
            let t = time(b, s);
            let dst = ((t * out.ndirs + out.dir) * batch + b) * hsz;
            out.y[dst..dst + hsz].copy_from_slice(&h[b * hsz..(b + 1) * hsz]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(seq: usize, batch: usize, isz: usize, hidden: usize, gates: usize) -> Dims {
        Dims {
            seq,
            batch,
            isz,
            hidden,
            gates,
        }
    }

    fn args<'a>(
        w: &'a [f64],
        r: &'a [f64],
        b: Option<&'a [f64]>,
        acts: &'a [Act],
        reverse: bool,
    ) -> DirArgs<'a, f64> {
        DirArgs {
            w,
            r,
            b,
            p: None,
            acts,
            clip: None,
            reverse,
        }
    }

    #[test]
    fn simple_rnn_matches_hand_computation() {
        // hidden 1, input 1: h1 = tanh(0.5·1 + 0), h2 = tanh(0.5·2 + 0.25·h1 + 0.1).
        let (w, r, b) = ([0.5], [0.25], [0.1, 0.0]);
        let x = [1.0, 2.0];
        let (mut y, mut h, mut c) = (vec![0.0; 2], vec![0.0], vec![0.0]);
        let acts = [Act::Tanh];
        let out = DirOut {
            y: &mut y,
            dir: 0,
            ndirs: 1,
            h: &mut h,
            c: &mut c,
        };
        run_direction(
            Cell::Rnn,
            &dims(2, 1, 1, 1, 1),
            &x,
            &[2],
            &args(&w, &r, Some(&b), &acts, false),
            out,
        )
        .unwrap();
        let h1 = (0.5f64 + 0.1).tanh();
        let h2 = (1.0 + 0.25 * h1 + 0.1f64).tanh();
        assert!(
            (y[0] - h1).abs() < 1e-12 && (y[1] - h2).abs() < 1e-12 && (h[0] - h2).abs() < 1e-12
        );
    }

    #[test]
    fn reverse_respects_sequence_lens() {
        // Identity-like RNN (Affine 1,0, W = 1, R = 1): reverse cumulative sums.
        let acts = [Act::Affine(1.0, 0.0)];
        let x = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]; // [seq 3, batch 2, 1]
        let (mut y, mut h, mut c) = (vec![0.0; 6], vec![0.0; 2], vec![0.0; 2]);
        let out = DirOut {
            y: &mut y,
            dir: 0,
            ndirs: 1,
            h: &mut h,
            c: &mut c,
        };
        run_direction(
            Cell::Rnn,
            &dims(3, 2, 1, 1, 1),
            &x,
            &[3, 2],
            &args(&[1.0], &[1.0], None, &acts, true),
            out,
        )
        .unwrap();
        // batch 0: t2=3, t1=5, t0=6; batch 1 (len 2): t1=20, t0=30, t2 = 0.
        assert_eq!(y, vec![6.0, 30.0, 5.0, 20.0, 3.0, 0.0]);
        assert_eq!(h, vec![6.0, 30.0]);
    }

    #[test]
    fn gru_step_both_reset_modes() {
        // hidden 1, input 1, all weights 1, bias Rb_h = 1: one step from h0 = 0.5, x = 1.
        let w = [1.0, 1.0, 1.0];
        let r = [1.0, 1.0, 1.0];
        let b = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let acts = [Act::Sigmoid, Act::Tanh];
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (z, rr) = (sig(1.5), sig(1.5));
        for (lbr, want_cand) in [
            (false, (1.0 + rr * 0.5 + 1.0f64).tanh()),
            (true, (1.0 + rr * (0.5 + 1.0f64)).tanh()),
        ] {
            let (mut y, mut h, mut c) = (vec![0.0], vec![0.5], vec![0.0]);
            let out = DirOut {
                y: &mut y,
                dir: 0,
                ndirs: 1,
                h: &mut h,
                c: &mut c,
            };
            let cell = Cell::Gru {
                linear_before_reset: lbr,
            };
            run_direction(
                cell,
                &dims(1, 1, 1, 1, 3),
                &[1.0],
                &[1],
                &args(&w, &r, Some(&b), &acts, false),
                out,
            )
            .unwrap();
            let want = (1.0 - z) * want_cand + z * 0.5;
            assert!((h[0] - want).abs() < 1e-12, "lbr={lbr}: {} vs {want}", h[0]);
        }
    }

    #[test]
    fn lstm_step_with_peepholes() {
        // hidden 1, input 1, W = [1,1,1,1], R = 0, P = [0.5, 0.25, 0.125], c0 = 1.
        let w = [1.0; 4];
        let r = [0.0; 4];
        let p = [0.5, 0.25, 0.125];
        let acts = [Act::Sigmoid, Act::Tanh, Act::Tanh];
        let (mut y, mut h, mut c) = (vec![0.0], vec![0.0], vec![1.0]);
        let mut a = args(&w, &r, None, &acts, false);
        a.p = Some(&p);
        let out = DirOut {
            y: &mut y,
            dir: 0,
            ndirs: 1,
            h: &mut h,
            c: &mut c,
        };
        run_direction(
            Cell::Lstm {
                input_forget: false,
            },
            &dims(1, 1, 1, 1, 4),
            &[2.0],
            &[1],
            &a,
            out,
        )
        .unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let i = sig(2.0 + 0.5);
        let f = sig(2.0 + 0.125);
        let cn = f + i * 2f64.tanh();
        let o = sig(2.0 + 0.25 * cn);
        assert!((c[0] - cn).abs() < 1e-12);
        assert!((h[0] - o * cn.tanh()).abs() < 1e-12);
    }

    #[test]
    fn activation_params_are_consumed_in_order() {
        let mut attrs = Attrs::default();
        attrs.set(
            "activations",
            egret_ir::Attr::Strings(vec!["LeakyRelu".into(), "Tanh".into(), "Affine".into()]),
        );
        attrs.set("activation_alpha", egret_ir::Attr::Floats(vec![0.5, 2.0]));
        attrs.set("activation_beta", egret_ir::Attr::Floats(vec![3.0]));
        let acts = parse_acts(
            &attrs,
            Cell::Lstm {
                input_forget: false,
            },
            1,
        )
        .unwrap();
        assert_eq!(
            acts,
            vec![vec![Act::LeakyRelu(0.5), Act::Tanh, Act::Affine(2.0, 3.0)]]
        );
        assert_eq!(Act::HardSigmoid(0.2, 0.5).apply(1.0f64), 0.7);
    }
}
