//! Inference rules: BatchNormalization, InstanceNormalization, LayerNormalization,
//! RMSNormalization, GroupNormalization, LRN, LpNormalization, MeanVarianceNormalization.

use super::common::{norm_axis, tensor, R};
use super::{InferCtx, InferFn};
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "InstanceNormalization"
        | "RMSNormalization"
        | "GroupNormalization"
        | "LRN"
        | "LpNormalization"
        | "MeanVarianceNormalization" => same_as_input,
        "BatchNormalization" => batch_norm,
        "LayerNormalization" => layer_norm,
        _ => return None,
    })
}

/// One output with input 0's type.
fn same_as_input(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    Ok(vec![tensor(x.dtype, x.shape.clone())])
}

/// Y like X; in training mode also running mean/var shaped like the `mean` input.
fn batch_norm(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let mut out = vec![tensor(x.dtype, x.shape.clone())];
    if ctx.num_outputs > 1 {
        let mean = ctx.tensor(3)?;
        let channels = x.shape.as_ref().and_then(|s| s.dims().get(1).cloned());
        let stat_shape = mean
            .shape
            .clone()
            .or_else(|| channels.map(|c| Shape(vec![c])));
        for _ in 1..ctx.num_outputs {
            out.push(tensor(mean.dtype, stat_shape.clone()));
        }
    }
    Ok(out)
}

/// Y like X; Mean and InvStdDev keep the leading `axis` dims and are 1 after.
fn layer_norm(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let mut out = vec![tensor(x.dtype, x.shape.clone())];
    if ctx.num_outputs > 1 {
        let axis = ctx
            .call
            .attrs
            .int_or("axis", -1)
            .map_err(|e| e.to_string())?;
        let stat_shape = match &x.shape {
            Some(s) => {
                let a = norm_axis(axis, s.rank())?;
                let dims: Vec<Dim> = s
                    .dims()
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if i < a { d.clone() } else { Dim::Known(1) })
                    .collect();
                Some(Shape(dims))
            }
            None => None,
        };
        for _ in 1..ctx.num_outputs {
            out.push(tensor(x.dtype, stat_shape.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{Attr, Attrs};
    use crate::dtype::DType;
    use crate::graph::OpCall;
    use crate::infer::InputFact;

    #[test]
    fn layer_norm_stats_shape() {
        let x = ValueType::tensor(DType::F32, Some(Shape::known(&[2, 3, 4])));
        let w = ValueType::tensor(DType::F32, Some(Shape::known(&[4])));
        let mut attrs = Attrs::default();
        attrs.set("axis", Attr::Int(-2));
        let call = OpCall {
            domain: String::new(),
            op_type: "LayerNormalization".into(),
            attrs,
        };
        let inputs = [
            Some(InputFact {
                ty: &x,
                value: None,
            }),
            Some(InputFact {
                ty: &w,
                value: None,
            }),
        ];
        let ctx = InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 3,
        };
        let out = layer_norm(&ctx).unwrap();
        assert_eq!(
            out[1],
            ValueType::tensor(DType::F32, Some(Shape::known(&[2, 1, 1])))
        );
        assert_eq!(out[0], x);
    }
}
