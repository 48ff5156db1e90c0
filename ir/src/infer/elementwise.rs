//! Inference rules: binary/unary arithmetic, comparison, logic, bitwise, Where, Clip, variadic Min/Max/Sum/Mean.

use super::common::{broadcast_all, tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::ValueType;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" | "Min" | "Max" | "Sum" | "Mean" => same_dtype_broadcast,
        "Pow" => pow,
        "PRelu" => prelu,
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "And" | "Or" | "Xor" => {
            compare
        }
        "Where" => where_,
        "Clip" | "Abs" | "Neg" | "Sign" | "Floor" | "Ceil" | "Round" | "Sqrt" | "Reciprocal"
        | "Exp" | "Log" | "Erf" | "Sin" | "Cos" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh"
        | "Cosh" | "Asinh" | "Acosh" | "Atanh" | "Not" | "BitwiseNot" => same_as_first,
        "IsNaN" | "IsInf" => predicate,
        _ => return None,
    })
}

/// Broadcast shape of the inputs `from..` (unknown if any rank is unknown).
fn broadcast_inputs(ctx: &InferCtx<'_>, from: usize) -> R<Option<crate::shape::Shape>> {
    let tys = (from..ctx.inputs.len())
        .map(|i| ctx.tensor(i))
        .collect::<R<Vec<_>>>()?;
    broadcast_all(tys.iter().map(|t| t.shape.as_ref()))
}

/// Every input must share input `from`'s dtype; returns it.
fn common_dtype(ctx: &InferCtx<'_>, from: usize) -> R<DType> {
    let dt = ctx.tensor(from)?.dtype;
    for i in from + 1..ctx.inputs.len() {
        let other = ctx.tensor(i)?.dtype;
        if other != dt {
            return Err(format!(
                "{}: input {i} is {other}, input {from} is {dt}",
                ctx.op()
            ));
        }
    }
    Ok(dt)
}

fn same_dtype_broadcast(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    if ctx.inputs.is_empty() {
        return Err(format!("{} needs at least one input", ctx.op()));
    }
    Ok(vec![tensor(
        common_dtype(ctx, 0)?,
        broadcast_inputs(ctx, 0)?,
    )])
}

fn compare(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    common_dtype(ctx, 0)?;
    Ok(vec![tensor(DType::Bool, broadcast_inputs(ctx, 0)?)])
}

fn pow(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![tensor(
        ctx.tensor(0)?.dtype,
        broadcast_inputs(ctx, 0)?,
    )])
}

fn prelu(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    common_dtype(ctx, 0)?;
    // The slope broadcasts to X, so the output has X's shape.
    broadcast_inputs(ctx, 0)?;
    Ok(vec![ValueType::Tensor(x.clone())])
}

fn where_(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let c = ctx.tensor(0)?.dtype;
    if c != DType::Bool {
        return Err(format!("Where condition must be bool, got {c}"));
    }
    Ok(vec![tensor(
        common_dtype(ctx, 1)?,
        broadcast_inputs(ctx, 0)?,
    )])
}

fn same_as_first(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![ValueType::Tensor(ctx.tensor(0)?.clone())])
}

fn predicate(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![tensor(DType::Bool, ctx.tensor(0)?.shape.clone())])
}

#[cfg(test)]
mod tests {
    use super::super::InputFact;
    use super::*;
    use crate::attr::Attrs;
    use crate::graph::OpCall;
    use crate::shape::{Dim, Shape, TensorType};

    fn infer(op: &str, tys: &[ValueType]) -> R<Vec<ValueType>> {
        let call = OpCall {
            domain: String::new(),
            op_type: op.into(),
            attrs: Attrs::default(),
        };
        let inputs: Vec<Option<InputFact<'_>>> = tys
            .iter()
            .map(|t| Some(InputFact { ty: t, value: None }))
            .collect();
        let ctx = InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 1,
        };
        rule(op).ok_or("no rule")?(&ctx)
    }

    fn t(dt: DType, dims: Vec<Dim>) -> ValueType {
        tensor(dt, Some(Shape(dims)))
    }

    #[test]
    fn broadcasting_rules() {
        let a = t(
            DType::F32,
            vec![Dim::Sym("b".into()), Dim::Known(1), Dim::Known(4)],
        );
        let b = t(DType::F32, vec![Dim::Known(3), Dim::Known(1)]);
        let want = t(
            DType::F32,
            vec![Dim::Sym("b".into()), Dim::Known(3), Dim::Known(4)],
        );
        assert_eq!(
            infer("Add", &[a.clone(), b.clone()]).unwrap(),
            vec![want.clone()]
        );
        assert_eq!(
            infer("Sum", &[a.clone(), b.clone(), b.clone()]).unwrap(),
            vec![want.clone()]
        );
        let bools = t(
            DType::Bool,
            vec![Dim::Sym("b".into()), Dim::Known(3), Dim::Known(4)],
        );
        assert_eq!(
            infer("Less", &[a.clone(), b.clone()]).unwrap(),
            vec![bools.clone()]
        );
        let cond = t(DType::Bool, vec![Dim::Known(4)]);
        assert_eq!(
            infer("Where", &[cond, a.clone(), b.clone()]).unwrap(),
            vec![want]
        );
        assert!(infer("Add", &[a.clone(), t(DType::I64, vec![])]).is_err());
        assert!(infer("Mul", &[a.clone(), t(DType::F32, vec![Dim::Known(5)])]).is_err());
        let i = t(DType::I64, vec![Dim::Known(4)]);
        assert_eq!(
            infer("Pow", &[a.clone(), i]).unwrap()[0]
                .as_tensor()
                .unwrap()
                .dtype,
            DType::F32
        );
        let unknown = ValueType::Tensor(TensorType {
            dtype: DType::F32,
            shape: None,
        });
        assert_eq!(
            infer("Max", &[a.clone(), unknown]).unwrap(),
            vec![tensor(DType::F32, None)]
        );
        assert_eq!(
            infer("IsNaN", std::slice::from_ref(&a)).unwrap()[0]
                .as_tensor()
                .unwrap()
                .dtype,
            DType::Bool
        );
        assert_eq!(infer("Clip", std::slice::from_ref(&a)).unwrap(), vec![a]);
    }
}
