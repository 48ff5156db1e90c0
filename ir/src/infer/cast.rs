//! Inference rules: Cast, CastLike and BitCast, including float8/int4 and string
//! conversions.
//!
//! Kernels take the target dtype from the output type inferred here, so this file
//! is the one place that reads the ONNX `to` code.

use super::common::{tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::ValueType;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Cast" => cast,
        "CastLike" => cast_like,
        "BitCast" => bitcast,
        _ => return None,
    })
}

/// The dtype of an ONNX `TensorProto.DataType` code (types egret cannot hold are errors).
pub fn onnx_dtype(code: i64) -> R<DType> {
    use DType::*;
    Ok(match code {
        1 => F32,
        2 => U8,
        3 => I8,
        4 => U16,
        5 => I16,
        6 => I32,
        7 => I64,
        8 => String,
        9 => Bool,
        10 => F16,
        11 => F64,
        12 => U32,
        13 => U64,
        16 => BF16,
        17 => F8E4M3FN,
        18 => F8E4M3FNUZ,
        19 => F8E5M2,
        20 => F8E5M2FNUZ,
        21 => U4,
        22 => I4,
        23 => F4E2M1,
        24 => F8E8M0,
        25 => U2,
        26 => I2,
        _ => return Err(format!("unsupported ONNX element type code {code}")),
    })
}

/// The dtype named by the `to` attribute (an ONNX type code).
fn to_attr(ctx: &InferCtx<'_>) -> R<DType> {
    let code = ctx.call.attrs.int("to").map_err(|e| e.to_string())?;
    onnx_dtype(code)
}

fn cast(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    Ok(vec![tensor(to_attr(ctx)?, x.shape.clone())])
}

fn cast_like(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (x, like) = (ctx.tensor(0)?, ctx.tensor(1)?);
    Ok(vec![tensor(like.dtype, x.shape.clone())])
}

fn bitcast(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let to = to_attr(ctx)?;
    match (x.dtype.size(), to.size()) {
        (Some(a), Some(b)) if a == b => Ok(vec![tensor(to, x.shape.clone())]),
        _ => Err(format!(
            "cannot bit-cast {} to {to}: element sizes differ",
            x.dtype
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::graph::OpCall;
    use crate::infer::InputFact;
    use crate::shape::{Shape, TensorType};

    fn run(op: &str, attrs: &[(&str, i64)], inputs: &[ValueType]) -> R<Vec<ValueType>> {
        let mut call = OpCall::new(op);
        for (k, v) in attrs {
            call = call.with(k, Attr::Int(*v));
        }
        let facts: Vec<Option<InputFact<'_>>> = inputs
            .iter()
            .map(|t| Some(InputFact { ty: t, value: None }))
            .collect();
        let ctx = InferCtx {
            call: &call,
            inputs: &facts,
            num_outputs: 1,
        };
        rule(op).ok_or("no rule")?(&ctx)
    }

    fn t(dtype: DType, dims: &[usize]) -> ValueType {
        ValueType::Tensor(TensorType::known(dtype, dims))
    }

    #[test]
    fn cast_takes_to_code() {
        assert_eq!(
            run("Cast", &[("to", 17)], &[t(DType::F32, &[3, 5])]).unwrap(),
            vec![t(DType::F8E4M3FN, &[3, 5])]
        );
        assert_eq!(
            run("Cast", &[("to", 22)], &[t(DType::F32, &[2])]).unwrap(),
            vec![t(DType::I4, &[2])]
        );
        assert!(run("Cast", &[("to", 99)], &[t(DType::F32, &[2])]).is_err());
        assert!(run("Cast", &[], &[t(DType::F32, &[2])]).is_err());
    }

    #[test]
    fn castlike_and_bitcast() {
        let out = run("CastLike", &[], &[t(DType::F16, &[4]), t(DType::F64, &[1])]).unwrap();
        assert_eq!(out, vec![t(DType::F64, &[4])]);
        let out = run("BitCast", &[("to", 6)], &[t(DType::F32, &[2, 3])]).unwrap();
        assert_eq!(out, vec![t(DType::I32, &[2, 3])]);
        assert!(run("BitCast", &[("to", 7)], &[t(DType::F32, &[2])]).is_err());
        let unknown = ValueType::Tensor(TensorType {
            dtype: DType::Bool,
            shape: Some(Shape(vec![])),
        });
        assert_eq!(
            run("BitCast", &[("to", 2)], &[unknown]).unwrap(),
            vec![t(DType::U8, &[])]
        );
    }
}
