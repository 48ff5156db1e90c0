//! Inference rules: LSTM, GRU, RNN.
//!
//! `X` is `[seq, batch, input]` (`layout = 0`) or `[batch, seq, input]`
//! (`layout = 1`). Outputs: `Y` is `[seq, dirs, batch, hidden]` (layout 1:
//! `[batch, seq, dirs, hidden]`), `Y_h`/`Y_c` are `[dirs, batch, hidden]`
//! (layout 1: `[batch, dirs, hidden]`).

use super::common::{tensor, R};
use super::{InferCtx, InferFn};
use crate::shape::{Dim, Shape};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    match op {
        "LSTM" | "GRU" | "RNN" => Some(infer_recurrent),
        _ => None,
    }
}

fn infer_recurrent(ctx: &InferCtx<'_>) -> R<Vec<super::ValueType>> {
    let attrs = &ctx.call.attrs;
    let x = ctx.tensor(0)?;
    let r = ctx.tensor(2)?;
    let err = |e: crate::error::IrError| e.to_string();
    let ndirs = match attrs.string_or("direction", "forward").map_err(err)? {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        other => return Err(format!("unknown direction `{other}`")),
    };
    let layout = attrs.int_or("layout", 0).map_err(err)?;
    if layout != 0 && layout != 1 {
        return Err(format!("layout must be 0 or 1, got {layout}"));
    }
    let hidden = match attrs.int_opt("hidden_size").map_err(err)? {
        Some(h) if h > 0 => Dim::Known(h as usize),
        Some(h) => return Err(format!("hidden_size must be positive, got {h}")),
        None => match &r.shape {
            Some(s) if s.rank() == 3 => s.dims()[2].clone(),
            _ => Dim::Sym("rnn_hidden".into()),
        },
    };
    let (seq, batch) = match &x.shape {
        Some(s) if s.rank() == 3 => {
            let d = s.dims();
            if layout == 0 {
                (d[0].clone(), d[1].clone())
            } else {
                (d[1].clone(), d[0].clone())
            }
        }
        Some(s) => return Err(format!("X must be 3-D, got rank {}", s.rank())),
        None => (Dim::Sym("rnn_seq".into()), Dim::Sym("rnn_batch".into())),
    };
    let dirs = Dim::Known(ndirs);
    let y = if layout == 0 {
        vec![seq, dirs.clone(), batch.clone(), hidden.clone()]
    } else {
        vec![batch.clone(), seq, dirs.clone(), hidden.clone()]
    };
    let state = if layout == 0 {
        vec![dirs, batch, hidden]
    } else {
        vec![batch, dirs, hidden]
    };
    let mut out = vec![tensor(x.dtype, Some(Shape(y)))];
    out.extend((1..ctx.num_outputs.max(1)).map(|_| tensor(x.dtype, Some(Shape(state.clone())))));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::dtype::DType;
    use crate::graph::OpCall;
    use crate::infer::InputFact;
    use crate::shape::ValueType;

    #[test]
    fn bidirectional_batch_first_lstm() {
        let x = ValueType::tensor(DType::F32, Some(Shape::known(&[2, 5, 3])));
        let w = ValueType::tensor(DType::F32, Some(Shape::known(&[2, 16, 3])));
        let r = ValueType::tensor(DType::F32, Some(Shape::known(&[2, 16, 4])));
        let call = OpCall::new("LSTM")
            .with("direction", Attr::String("bidirectional".into()))
            .with("layout", Attr::Int(1));
        let f = |t| Some(InputFact { ty: t, value: None });
        let inputs = [f(&x), f(&w), f(&r)];
        let ctx = InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 3,
        };
        let out = infer_recurrent(&ctx).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0],
            ValueType::tensor(DType::F32, Some(Shape::known(&[2, 5, 2, 4])))
        );
        assert_eq!(
            out[2],
            ValueType::tensor(DType::F32, Some(Shape::known(&[2, 2, 4])))
        );
    }
}
