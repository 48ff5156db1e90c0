//! Inference rules: string ops (StringNormalizer, StringConcat, StringSplit,
//! RegexFullMatch) and the `ai.onnx.ml` helpers LabelEncoder, Binarizer and
//! ArrayFeatureExtractor.

use super::common::{broadcast_all, tensor, R};
use super::{InferCtx, InferFn};
use crate::attr::Attr;
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "StringNormalizer" => string_normalizer,
        "StringConcat" => string_concat,
        "StringSplit" => string_split,
        "RegexFullMatch" => regex_full_match,
        _ => return None,
    })
}

/// The rule for an `ai.onnx.ml` op of this family.
pub(super) fn ml_rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "LabelEncoder" => label_encoder,
        "Binarizer" => binarizer,
        "ArrayFeatureExtractor" => array_feature_extractor,
        _ => return None,
    })
}

/// A fresh symbolic dim for a data-dependent size.
fn sym(ctx: &InferCtx<'_>, what: &str) -> Dim {
    Dim::Sym(format!("{}_{what}", ctx.op()))
}

/// Stopword filtering makes the last dim data-dependent.
fn string_normalizer(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let shape = match x.shape.as_ref().map(|s| s.dims()) {
        None => None,
        Some([_]) => Some(Shape(vec![sym(ctx, "len")])),
        Some([rows, _]) => Some(Shape(vec![rows.clone(), sym(ctx, "len")])),
        Some(d) => return Err(format!("expected a 1-D or 2-D input, got rank {}", d.len())),
    };
    Ok(vec![tensor(DType::String, shape)])
}

fn string_concat(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (a, b) = (ctx.tensor(0)?, ctx.tensor(1)?);
    Ok(vec![tensor(
        DType::String,
        broadcast_all([a.shape.as_ref(), b.shape.as_ref()])?,
    )])
}

/// Substrings padded to the longest split, plus the per-string counts.
fn string_split(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let parts = x.shape.as_ref().map(|s| {
        let mut d = s.dims().to_vec();
        d.push(sym(ctx, "parts"));
        Shape(d)
    });
    Ok(vec![
        tensor(DType::String, parts),
        tensor(DType::I64, x.shape.clone()),
    ])
}

fn regex_full_match(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    Ok(vec![tensor(DType::Bool, x.shape.clone())])
}

/// Output type from whichever `values_*` attribute is set (opset 1's
/// `classes_strings` maps strings to int64 and back).
fn label_encoder(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let a = &ctx.call.attrs;
    let dt = match (
        a.get("values_tensor"),
        a.get("values_strings"),
        a.get("values_int64s"),
        a.get("values_floats"),
    ) {
        (Some(Attr::Tensor(t)), ..) => t.dtype(),
        (_, Some(_), ..) => DType::String,
        (_, _, Some(_), _) => DType::I64,
        (.., Some(_)) => DType::F32,
        _ if a.has("classes_strings") => {
            if x.dtype == DType::String {
                DType::I64
            } else {
                DType::String
            }
        }
        _ => return Err("no values_* attribute".into()),
    };
    Ok(vec![tensor(dt, x.shape.clone())])
}

fn binarizer(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![ValueType::Tensor(ctx.tensor(0)?.clone())])
}

/// `X[..., indices]`; a 1-D `X` gives a `[1, n]` result.
fn array_feature_extractor(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (x, y) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let n = y
        .shape
        .as_ref()
        .and_then(|s| {
            s.dims()
                .iter()
                .try_fold(1usize, |a, d| a.checked_mul(d.known()?))
        })
        .map_or_else(|| sym(ctx, "n"), Dim::Known);
    let shape = x.shape.as_ref().map(|s| {
        let d = s.dims();
        let mut out = if d.len() <= 1 {
            vec![Dim::Known(1)]
        } else {
            d[..d.len() - 1].to_vec()
        };
        out.push(n);
        Shape(out)
    });
    Ok(vec![tensor(x.dtype, shape)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::OpCall;
    use crate::infer::InputFact;
    use crate::shape::TensorType;

    fn t(dtype: DType, dims: &[usize]) -> ValueType {
        ValueType::Tensor(TensorType::known(dtype, dims))
    }

    fn run(f: InferFn, call: OpCall, inputs: &[ValueType], outs: usize) -> Vec<ValueType> {
        let facts: Vec<Option<InputFact<'_>>> = inputs
            .iter()
            .map(|t| Some(InputFact { ty: t, value: None }))
            .collect();
        f(&InferCtx {
            call: &call,
            inputs: &facts,
            num_outputs: outs,
        })
        .unwrap()
    }

    #[test]
    fn string_shapes() {
        let out = run(
            string_concat,
            OpCall::new("StringConcat"),
            &[t(DType::String, &[3]), t(DType::String, &[1])],
            1,
        );
        assert_eq!(out, vec![t(DType::String, &[3])]);
        let out = run(
            string_split,
            OpCall::new("StringSplit"),
            &[t(DType::String, &[2, 2])],
            2,
        );
        let dims = out[0]
            .as_tensor()
            .unwrap()
            .shape
            .as_ref()
            .unwrap()
            .dims()
            .to_vec();
        assert_eq!(dims[..2], [Dim::Known(2), Dim::Known(2)]);
        assert!(matches!(dims[2], Dim::Sym(_)));
        assert_eq!(out[1], t(DType::I64, &[2, 2]));
        let out = run(
            string_normalizer,
            OpCall::new("StringNormalizer"),
            &[t(DType::String, &[1, 6])],
            1,
        );
        assert_eq!(
            out[0].as_tensor().unwrap().shape.as_ref().unwrap().dims()[0],
            Dim::Known(1)
        );
    }

    #[test]
    fn ml_shapes() {
        let call = OpCall::new("LabelEncoder").with("values_int64s", Attr::Ints(vec![0, 1]));
        assert_eq!(
            run(label_encoder, call, &[t(DType::String, &[5])], 1),
            vec![t(DType::I64, &[5])]
        );
        let call = OpCall::new("ArrayFeatureExtractor");
        let out = run(
            array_feature_extractor,
            call,
            &[t(DType::F32, &[3, 4]), t(DType::I64, &[2])],
            1,
        );
        assert_eq!(out, vec![t(DType::F32, &[3, 2])]);
        let call = OpCall::new("ArrayFeatureExtractor");
        let out = run(
            array_feature_extractor,
            call,
            &[t(DType::F32, &[4]), t(DType::I64, &[1, 3])],
            1,
        );
        assert_eq!(out, vec![t(DType::F32, &[1, 3])]);
    }
}
