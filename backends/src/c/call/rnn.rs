//! ONNX `LSTM` on f32 through `kernels/lstm.c`: forward, reverse and
//! bidirectional, both layouts, optional bias, `sequence_lens`, initial
//! states and peepholes, `clip`, `input_forget`, and the outputs Y, Y_h and
//! Y_c (each optional). The activations may be Sigmoid, Tanh or Relu (the
//! defaults are Sigmoid, Tanh, Tanh); the others are unsupported.

use super::{require_f32, Node};
use crate::c::ctype::f32_lit;
use crate::c::{Ctx, EmitError, Kernel};
use crate::program::BufferId;
use egret_ir::DType;

/// The kernel's code (`EGRET_ACT_*`) of an activation name.
fn act_code(n: &Node<'_>, name: &str) -> Result<&'static str, EmitError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "sigmoid" => "EGRET_ACT_SIGMOID",
        "tanh" => "EGRET_ACT_TANH",
        "relu" => "EGRET_ACT_RELU",
        other => {
            return Err(n.unsupported(format!(
                "activation `{other}` (the C kernel has Sigmoid, Tanh and Relu)"
            )))
        }
    })
}

/// The `{f, g, h}` activations of each of `dirs` directions, as the
/// interpreter reads the `activations` attribute (one direction's list
/// serves both directions of a bidirectional op).
fn activations(n: &Node<'_>, dirs: usize) -> Result<Vec<[&'static str; 3]>, EmitError> {
    let names: Vec<String> = match n
        .attrs
        .strings_opt("activations")
        .map_err(|e| n.unsupported(e.to_string()))?
    {
        None => vec!["Sigmoid".into(), "Tanh".into(), "Tanh".into()],
        Some(v) if v.len() == 3 || v.len() == 3 * dirs => v.to_vec(),
        Some(v) => return Err(n.unsupported(format!("{} activations", v.len()))),
    };
    let codes = names
        .iter()
        .map(|s| act_code(n, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..dirs)
        .map(|d| {
            let at = |k: usize| codes[(d * 3 + k) % codes.len()];
            [at(0), at(1), at(2)]
        })
        .collect())
}

/// Requires buffer `b` (named `what`) to have shape `want`.
fn expect_shape(
    cx: &Ctx<'_>,
    n: &Node<'_>,
    b: BufferId,
    what: &str,
    want: &[usize],
) -> Result<(), EmitError> {
    match cx.shape(b) {
        s if s == want => Ok(()),
        s => Err(n.unsupported(format!("{what} of shape {s:?}, expected {want:?}"))),
    }
}

/// LSTM: one call of `egret_lstm_f32` with the geometry as a `static const`
/// struct and its state in the shared scratch buffer.
pub(super) fn lstm(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (x, w, r) = (n.input(0)?, n.input(1)?, n.input(2)?);
    let (bias, lens, h0, c0, p) = (
        n.opt_input(3),
        n.opt_input(4),
        n.opt_input(5),
        n.opt_input(6),
        n.opt_input(7),
    );
    let outs: Vec<Option<BufferId>> = (0..3).map(|i| n.outputs.get(i).copied()).collect();
    for b in [Some(x), Some(w), Some(r), bias, h0, c0, p]
        .into_iter()
        .chain(outs.iter().copied())
        .flatten()
    {
        require_f32(cx, n, b)?;
    }
    let (ndirs, reverse) = match n
        .attrs
        .string_or("direction", "forward")
        .map_err(|e| n.unsupported(e.to_string()))?
    {
        "forward" => (1, false),
        "reverse" => (1, true),
        "bidirectional" => (2, false),
        other => return Err(n.unsupported(format!("direction `{other}`"))),
    };
    let layout = n.int("layout", 0)?;
    let (seq, batch, isz) = match (layout, cx.shape(x)) {
        (0, &[s, b, i]) => (s, b, i),
        (1, &[b, s, i]) => (s, b, i),
        (_, s) => return Err(n.unsupported(format!("layout {layout} with X of shape {s:?}"))),
    };
    let hidden = match cx.shape(r) {
        &[_, _, h] => h,
        s => return Err(n.unsupported(format!("R of shape {s:?}"))),
    };
    expect_shape(cx, n, w, "W", &[ndirs, 4 * hidden, isz])?;
    expect_shape(cx, n, r, "R", &[ndirs, 4 * hidden, hidden])?;
    if let Some(b) = bias {
        expect_shape(cx, n, b, "B", &[ndirs, 8 * hidden])?;
    }
    if let Some(b) = p {
        expect_shape(cx, n, b, "P", &[ndirs, 3 * hidden])?;
    }
    let state = if layout == 0 {
        [ndirs, batch, hidden]
    } else {
        [batch, ndirs, hidden]
    };
    for (b, what) in [(h0, "initial_h"), (c0, "initial_c")] {
        if let Some(b) = b {
            expect_shape(cx, n, b, what, &state)?;
        }
    }
    if let Some(l) = lens {
        if cx.dtype(l) != DType::I32 || cx.shape(l) != [batch] {
            return Err(n.unsupported("sequence_lens that is not i32 [batch]"));
        }
    }
    let acts = activations(n, ndirs)?;
    let acts_c = (0..2)
        .map(|d| format!("{{{}}}", acts[d.min(ndirs - 1)].join(", ")))
        .collect::<Vec<_>>()
        .join(", ");
    let clip = n
        .attrs
        .float_opt("clip")
        .map_err(|e| n.unsupported(e.to_string()))?;
    let input_forget = i32::from(n.int("input_forget", 0)? != 0);
    let scratch = cx.scratch("float", (2 * batch * hidden + 4 * hidden) * 4);
    let mut ptr_or_null = |b: Option<BufferId>| b.map_or(Ok("NULL".into()), |b| cx.ptr(b));
    let args = [bias, lens, h0, c0, p, outs[0], outs[1], outs[2]]
        .into_iter()
        .map(&mut ptr_or_null)
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    let (xp, wp, rp) = (cx.ptr(x)?, cx.ptr(w)?, cx.ptr(r)?);
    cx.use_kernel(Kernel::Lstm);
    Ok(format!(
        "static const egret_lstm_dims d = {{{seq}, {batch}, {isz}, {hidden}, {ndirs}, {layout}, \
         {}, {input_forget}, {}, {}, {{{acts_c}}}}};\n\
         if (egret_lstm_f32(&d, {xp}, {wp}, {rp}, {args}, {scratch}))\n    return 1;\n",
        i32::from(reverse),
        i32::from(clip.is_some()),
        f32_lit(clip.unwrap_or(0.0)),
    ))
}
