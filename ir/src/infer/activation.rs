//! Inference rules: activations and the Softmax family.

use super::common::norm_axis;
use super::{InferCtx, InferFn};
use crate::shape::ValueType;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Relu" | "LeakyRelu" | "Elu" | "Selu" | "Celu" | "Gelu" | "HardSigmoid" | "HardSwish"
        | "Softplus" | "Softsign" | "Sigmoid" | "Tanh" | "ThresholdedRelu" | "Shrink" | "Mish"
        | "Swish" => same_as_input,
        "Softmax" | "LogSoftmax" | "Hardmax" => softmax,
        _ => return None,
    })
}

fn same_as_input(ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, String> {
    Ok(vec![ValueType::Tensor(ctx.tensor(0)?.clone())])
}

fn softmax(ctx: &InferCtx<'_>) -> Result<Vec<ValueType>, String> {
    let x = ctx.tensor(0)?;
    if let Some(s) = &x.shape {
        let axis = ctx
            .call
            .attrs
            .int_or("axis", -1)
            .map_err(|e| e.to_string())?;
        norm_axis(axis, s.rank())?;
    }
    Ok(vec![ValueType::Tensor(x.clone())])
}

#[cfg(test)]
mod tests {
    use super::super::InputFact;
    use super::*;
    use crate::attr::{Attr, Attrs};
    use crate::dtype::DType;
    use crate::graph::OpCall;
    use crate::shape::TensorType;

    fn infer(op: &str, axis: Option<i64>, ty: &ValueType) -> Result<Vec<ValueType>, String> {
        let mut attrs = Attrs::default();
        if let Some(a) = axis {
            attrs.set("axis", Attr::Int(a));
        }
        let call = OpCall {
            domain: String::new(),
            op_type: op.into(),
            attrs,
        };
        let inputs = [Some(InputFact { ty, value: None })];
        let ctx = InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 1,
        };
        rule(op).ok_or("no rule")?(&ctx)
    }

    #[test]
    fn activations_keep_type_and_softmax_checks_axis() {
        let x = ValueType::Tensor(TensorType::known(DType::F16, &[2, 3]));
        assert_eq!(infer("Gelu", None, &x).unwrap(), vec![x.clone()]);
        assert_eq!(infer("Softmax", Some(-2), &x).unwrap(), vec![x.clone()]);
        assert!(infer("LogSoftmax", Some(2), &x).is_err());
        assert!(rule("Conv").is_none());
    }
}
