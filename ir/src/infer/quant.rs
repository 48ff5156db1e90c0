//! Inference rules: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear.

use super::cast::onnx_dtype;
use super::common::{tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "QuantizeLinear" => quantize,
        "DequantizeLinear" => dequantize,
        "DynamicQuantizeLinear" => dynamic_quantize,
        _ => return None,
    })
}

/// The `output_dtype` attribute, `None` when absent or 0.
fn output_dtype(ctx: &InferCtx<'_>) -> R<Option<DType>> {
    match ctx
        .call
        .attrs
        .int_or("output_dtype", 0)
        .map_err(|e| e.to_string())?
    {
        0 => Ok(None),
        code => onnx_dtype(code).map(Some),
    }
}

/// Output type: the zero point's dtype, else `output_dtype`, else uint8.
fn quantize(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let attr = output_dtype(ctx)?;
    let dt = match ctx.opt_tensor(2)? {
        Some(zp) => {
            if attr.is_some_and(|a| a != zp.dtype) {
                return Err(format!(
                    "output_dtype {attr:?} differs from the zero point's {}",
                    zp.dtype
                ));
            }
            zp.dtype
        }
        None => attr.unwrap_or(DType::U8),
    };
    if !(dt.is_int() || dt.is_small_float()) {
        return Err(format!("{dt} is not a quantized type"));
    }
    Ok(vec![tensor(dt, x.shape.clone())])
}

/// Output type: `output_dtype`, else the scale's dtype.
fn dequantize(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let scale = ctx.tensor(1)?;
    let dt = output_dtype(ctx)?.unwrap_or(scale.dtype);
    Ok(vec![tensor(dt, x.shape.clone())])
}

fn dynamic_quantize(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let scalar = Some(Shape(vec![]));
    Ok(vec![
        tensor(DType::U8, x.shape.clone()),
        tensor(DType::F32, scalar.clone()),
        tensor(DType::U8, scalar),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;
    use crate::graph::OpCall;
    use crate::infer::InputFact;
    use crate::shape::TensorType;

    fn t(dtype: DType, dims: &[usize]) -> ValueType {
        ValueType::Tensor(TensorType::known(dtype, dims))
    }

    fn run(op: &str, out_dtype: i64, inputs: &[ValueType]) -> R<Vec<ValueType>> {
        let call = OpCall::new(op).with("output_dtype", Attr::Int(out_dtype));
        let facts: Vec<Option<InputFact<'_>>> = inputs
            .iter()
            .map(|t| Some(InputFact { ty: t, value: None }))
            .collect();
        let ctx = InferCtx {
            call: &call,
            inputs: &facts,
            num_outputs: 3,
        };
        rule(op).ok_or("no rule")?(&ctx)
    }

    #[test]
    fn quantize_output_types() {
        let x = t(DType::F32, &[3, 4]);
        let s = t(DType::F32, &[3, 2]);
        assert_eq!(
            run("QuantizeLinear", 0, &[x.clone(), s.clone()]).unwrap(),
            vec![t(DType::U8, &[3, 4])]
        );
        assert_eq!(
            run("QuantizeLinear", 5, &[x.clone(), s.clone()]).unwrap(),
            vec![t(DType::I16, &[3, 4])]
        );
        let zp = t(DType::I4, &[3, 2]);
        assert_eq!(
            run("QuantizeLinear", 0, &[x.clone(), s.clone(), zp.clone()]).unwrap(),
            vec![t(DType::I4, &[3, 4])]
        );
        assert!(run("QuantizeLinear", 2, &[x.clone(), s.clone(), zp]).is_err());
        assert!(run("QuantizeLinear", 1, &[x, s]).is_err());
    }

    #[test]
    fn dequantize_output_types() {
        let x = t(DType::F8E4M3FN, &[5]);
        assert_eq!(
            run("DequantizeLinear", 0, &[x.clone(), t(DType::F16, &[])]).unwrap(),
            vec![t(DType::F16, &[5])]
        );
        assert_eq!(
            run("DequantizeLinear", 1, &[x, t(DType::F16, &[])]).unwrap(),
            vec![t(DType::F32, &[5])]
        );
        let out = run("DynamicQuantizeLinear", 0, &[t(DType::F32, &[6])]).unwrap();
        assert_eq!(
            out,
            vec![t(DType::U8, &[6]), t(DType::F32, &[]), t(DType::U8, &[])]
        );
    }
}
