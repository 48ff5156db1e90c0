//! Inference rules: MaxPool, AveragePool, LpPool, their Global forms, MaxUnpool.

use super::common::{tensor, unknown_dims, R};
use super::conv::Window;
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "MaxPool" | "AveragePool" | "LpPool" => pool,
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => global_pool,
        "MaxUnpool" => max_unpool,
        _ => return None,
    })
}

/// The `kernel_shape` attribute (required for windowed pools).
fn kernel_shape(ctx: &InferCtx<'_>) -> R<Vec<i64>> {
    let k = ctx
        .call
        .attrs
        .ints_opt("kernel_shape")
        .map_err(|e| e.to_string())?;
    let k = k.ok_or("missing kernel_shape")?;
    if k.iter().any(|&v| v < 1) {
        return Err("kernel_shape values must be >= 1".into());
    }
    Ok(k.to_vec())
}

/// MaxPool (with optional Indices), AveragePool, LpPool.
fn pool(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let k = kernel_shape(ctx)?;
    let shape = match &x.shape {
        None => None,
        Some(s) => {
            let d = s.dims();
            if d.len() != k.len() + 2 {
                return Err(format!(
                    "input rank {} does not match kernel rank {}",
                    d.len(),
                    k.len()
                ));
            }
            let win = Window::from_attrs(ctx, k.iter().map(|&v| Dim::Known(v as usize)).collect())?;
            let mut out = d[..2].to_vec();
            for (i, dim) in d[2..].iter().enumerate() {
                out.push(win.out_dim(i, dim)?);
            }
            Some(Shape(out))
        }
    };
    let mut outs = vec![tensor(x.dtype, shape.clone())];
    if ctx.num_outputs > 1 {
        outs.push(tensor(DType::I64, shape));
    }
    Ok(outs)
}

/// GlobalAveragePool / GlobalMaxPool / GlobalLpPool: spatial dims become 1.
fn global_pool(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let shape = x.shape.as_ref().map(|s| {
        Shape(
            s.dims()
                .iter()
                .enumerate()
                .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) })
                .collect(),
        )
    });
    Ok(vec![tensor(x.dtype, shape)])
}

/// MaxUnpool: `output_shape` input when given, else `(in-1)·s - pads + k`.
fn max_unpool(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    if ctx.has_input(2) {
        return Ok(vec![match ctx.const_ints(2) {
            Some(v) if v.iter().all(|&d| d >= 0) => tensor(
                x.dtype,
                Some(Shape::known(
                    &v.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                )),
            ),
            Some(_) => return Err("negative output_shape".into()),
            None => match x.shape.as_ref() {
                Some(s) => unknown_dims(x.dtype, s.rank(), "maxunpool"),
                None => tensor(x.dtype, None),
            },
        }]);
    }
    let k = kernel_shape(ctx)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let d = s.dims();
    if d.len() != k.len() + 2 {
        return Err("input rank does not match kernel rank".into());
    }
    let win = Window::from_attrs(ctx, k.iter().map(|&v| Dim::Known(v as usize)).collect())?;
    let n = k.len();
    let mut out = d[..2].to_vec();
    for i in 0..n {
        out.push(match d[i + 2].known() {
            Some(v) => {
                // i128: strides, pads and kernel are untrusted attributes.
                let o = (v as i128 - 1) * win.strides[i] as i128
                    - win.pads[i] as i128
                    - win.pads[n + i] as i128
                    + k[i] as i128;
                if !(0..=i64::MAX as i128).contains(&o) {
                    return Err(format!("output extent {o} out of range"));
                }
                Dim::Known(o as usize)
            }
            None => Dim::Sym(format!("unpool({},{},{})", d[i + 2], k[i], win.strides[i])),
        });
    }
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}
