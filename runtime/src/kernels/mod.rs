//! Building blocks shared by every op implementation: dtype dispatch, ndarray
//! views of tensors, broadcasting and input access. Op files in [`crate::ops`]
//! use these instead of re-deriving them.

pub mod act_sparse;
pub mod attention;
pub mod bandwidth;
pub mod convert;
pub mod fft;
pub mod gemm;
pub mod mt19937;
pub mod packed_gemm;
pub mod qmatmul;
pub mod strided;
pub mod vexp;
pub mod window;
pub mod workprec;

use crate::error::{Result, RuntimeError};
use egret_ir::Value;
use egret_ir::{DType, Element, Tensor};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// Rust element types named after their [`DType`] variants, for [`for_dtypes!`].
pub mod dtypes {
    #![allow(missing_docs)]
    pub type F32 = f32;
    pub type F64 = f64;
    pub type F16 = half::f16;
    pub type BF16 = half::bf16;
    pub type I8 = i8;
    pub type I16 = i16;
    pub type I32 = i32;
    pub type I64 = i64;
    pub type U8 = u8;
    pub type U16 = u16;
    pub type U32 = u32;
    pub type U64 = u64;
    pub type Bool = bool;
}

/// Run a block with `$T` bound to the Rust type of `$dt`, for the listed variants;
/// any other dtype returns an "unsupported dtype" error.
///
/// ```ignore
/// for_dtypes!(t.dtype(), T => { relu::<T>(t) }, [F32, F64, F16])
/// ```
#[macro_export]
macro_rules! for_dtypes {
    ($dt:expr, $T:ident => $body:block, [$($v:ident),* $(,)?]) => {
        match $dt {
            $( egret_ir::DType::$v => { #[allow(dead_code)] type $T = $crate::kernels::dtypes::$v; $body } )*
            #[allow(unreachable_patterns)]
            other => return Err($crate::error::RuntimeError::Msg(format!("unsupported dtype {other}"))),
        }
    };
}

/// Float dtypes (computed natively).
#[macro_export]
macro_rules! float_dtypes {
    () => {
        [F32, F64, F16, BF16]
    };
}

/// A read-only ndarray view of a tensor (zero-copy).
pub fn view<T: Element>(t: &Tensor) -> Result<ArrayViewD<'_, T>> {
    let s = t.as_slice::<T>()?;
    ArrayViewD::from_shape(IxDyn(t.shape()), s).map_err(|e| RuntimeError::msg(e.to_string()))
}

/// Turn an owned ndarray into a tensor (copies only if the array is not in
/// standard layout).
pub fn from_array<T: Element + bytemuck::Pod>(a: ArrayD<T>) -> Result<Tensor> {
    let shape = a.shape().to_vec();
    let data = if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().copied().collect()
    };
    Ok(Tensor::from_vec(shape, data)?)
}

/// Turn an owned bool ndarray into a tensor.
pub fn from_bool_array(a: ArrayD<bool>) -> Result<Tensor> {
    let shape = a.shape().to_vec();
    let data: Vec<bool> = a.iter().copied().collect();
    Ok(Tensor::from_bools(shape, data)?)
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(RuntimeError::msg(format!(
                    "cannot broadcast {a:?} with {b:?}"
                )))
            }
        };
    }
    Ok(out)
}

/// Elementwise map over two broadcast inputs into a new vector of the broadcast shape.
pub fn zip_map<A: Element, B: Element, O>(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(A, B) -> O,
) -> Result<(Vec<usize>, Vec<O>)> {
    let (sa, sb) = (a.as_slice::<A>()?, b.as_slice::<B>()?);
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    if a.shape() == b.shape() {
        return Ok((shape, sa.iter().zip(sb).map(|(&x, &y)| f(x, y)).collect()));
    }
    if sb.len() == 1 && a.shape() == shape.as_slice() {
        let y = sb[0];
        return Ok((shape, sa.iter().map(|&x| f(x, y)).collect()));
    }
    if sa.len() == 1 && b.shape() == shape.as_slice() {
        let x = sa[0];
        return Ok((shape, sb.iter().map(|&y| f(x, y)).collect()));
    }
    let va = view::<A>(a)?;
    let vb = view::<B>(b)?;
    let ba = va
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| RuntimeError::msg("broadcast failed"))?;
    let bb = vb
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| RuntimeError::msg("broadcast failed"))?;
    let out: Vec<O> = ba.iter().zip(bb.iter()).map(|(&x, &y)| f(x, y)).collect();
    Ok((shape, out))
}

/// A required input tensor.
pub fn input(inputs: &[Option<Value>], i: usize) -> Result<&Tensor> {
    inputs
        .get(i)
        .and_then(|v| v.as_ref())
        .ok_or_else(|| RuntimeError::msg(format!("missing required input {i}")))?
        .as_tensor()
        .map_err(Into::into)
}

/// An optional input tensor (absent, or beyond the given inputs, is `None`).
pub fn opt_input(inputs: &[Option<Value>], i: usize) -> Result<Option<&Tensor>> {
    match inputs.get(i).and_then(|v| v.as_ref()) {
        None => Ok(None),
        Some(v) => Ok(Some(v.as_tensor()?)),
    }
}

/// Normalise a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(RuntimeError::msg(format!(
            "axis {axis} out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// Wrap a single tensor as a one-output kernel result.
pub fn one(t: Tensor) -> Result<Vec<Value>> {
    Ok(vec![Value::Tensor(t)])
}

/// True if `dt` is one of the float dtypes computed natively.
pub fn is_native_float(dt: DType) -> bool {
    dt.is_float()
}

/// Largest element count any kernel will allocate for one output (2^31). A model
/// can declare any size; this turns a hostile size into an error, not an OOM.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Element count of `shape`, refusing overflow and sizes above [`MAX_ELEMENTS`].
pub fn checked_len(shape: &[usize]) -> Result<usize> {
    let n = egret_ir::tensor::checked_numel(shape)?;
    if n > MAX_ELEMENTS {
        return Err(RuntimeError::msg(format!(
            "output shape {shape:?} has {n} elements, above the limit of {MAX_ELEMENTS}"
        )));
    }
    Ok(n)
}
