//! Helpers shared by the inference rules of every op family.

use super::InferCtx;
use crate::dtype::DType;
use crate::shape::{Dim, Shape, TensorType, ValueType};

/// Result type of inference rules: errors are plain messages, the caller adds context.
pub type R<T> = Result<T, String>;

impl<'a> InferCtx<'a> {
    /// The tensor type of required input `i`.
    pub fn tensor(&self, i: usize) -> R<&'a TensorType> {
        let f = self
            .inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("missing required input {i}"))?;
        f.ty.as_tensor()
            .ok_or_else(|| format!("input {i} is not a tensor"))
    }

    /// The tensor type of optional input `i`, `None` if absent.
    pub fn opt_tensor(&self, i: usize) -> R<Option<&'a TensorType>> {
        match self.inputs.get(i).copied().flatten() {
            None => Ok(None),
            Some(f) => {
                f.ty.as_tensor()
                    .map(Some)
                    .ok_or_else(|| format!("input {i} is not a tensor"))
            }
        }
    }

    /// True if input `i` is present.
    pub fn has_input(&self, i: usize) -> bool {
        matches!(self.inputs.get(i), Some(Some(_)))
    }

    /// The value of input `i` as integers, when it is known at compile time.
    pub fn const_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.inputs
            .get(i)
            .copied()
            .flatten()?
            .value?
            .to_i64_vec()
            .ok()
    }

    /// The value of input `i` as f64s, when known at compile time.
    pub fn const_floats(&self, i: usize) -> Option<Vec<f64>> {
        self.inputs
            .get(i)
            .copied()
            .flatten()?
            .value?
            .to_f64_vec()
            .ok()
    }

    /// The node's name-independent op type, for messages.
    pub fn op(&self) -> &str {
        &self.call.op_type
    }
}

/// A tensor value type.
pub fn tensor(dtype: DType, shape: Option<Shape>) -> ValueType {
    ValueType::Tensor(TensorType { dtype, shape })
}

/// A tensor value type with a rank but entirely unknown dims, named after `tag`.
pub fn unknown_dims(dtype: DType, rank: usize, tag: &str) -> ValueType {
    tensor(
        dtype,
        Some(Shape(
            (0..rank).map(|i| Dim::Sym(format!("{tag}_{i}"))).collect(),
        )),
    )
}

/// Numpy broadcast of two (possibly symbolic) shapes.
pub fn broadcast(a: &Shape, b: &Shape) -> R<Shape> {
    let (a, b) = (a.dims(), b.dims());
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n].clone()
        } else {
            Dim::Known(1)
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n].clone()
        } else {
            Dim::Known(1)
        };
        out.push(match (da, db) {
            (x, y) if x == y => x,
            (Dim::Known(1), y) => y,
            (x, Dim::Known(1)) => x,
            (Dim::Known(x), Dim::Known(y)) => return Err(format!("cannot broadcast {x} with {y}")),
            // A symbol against a known size > 1: the symbol must equal it at run time.
            (Dim::Sym(_), y @ Dim::Known(_)) => y,
            (x @ Dim::Known(_), Dim::Sym(_)) => x,
            (x @ Dim::Sym(_), Dim::Sym(_)) => x,
        });
    }
    Ok(Shape(out))
}

/// Broadcast many optional shapes (`None` = unknown rank makes the result unknown).
pub fn broadcast_all<'s>(shapes: impl IntoIterator<Item = Option<&'s Shape>>) -> R<Option<Shape>> {
    let mut acc = Shape(vec![]);
    for s in shapes {
        match s {
            None => return Ok(None),
            Some(s) => acc = broadcast(&acc, s)?,
        }
    }
    Ok(Some(acc))
}

/// Normalise a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// Product of dims when all are known.
pub fn known_product(dims: &[Dim]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |a, d| a.checked_mul(d.known()?))
}

/// A dim from an untrusted integer (a constant input or attribute): must be `>= 0`.
pub fn dim_of_int(v: i64, what: &str) -> R<usize> {
    usize::try_from(v).map_err(|_| format!("{what} must be non-negative, got {v}"))
}

/// A dim from an untrusted float count: finite, non-negative and below 2^63.
pub fn dim_of_float(v: f64, what: &str) -> R<usize> {
    if (0.0..i64::MAX as f64).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("{what} {v} is not a valid size"))
    }
}
