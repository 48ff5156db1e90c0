//! Working-precision float compute for ops whose math is written once.
//!
//! Recurrent and attention kernels compute in a *working* precision `W`: `f64`
//! for `F64` tensors and `f32` for every other float dtype (`F32`, `F16`, `BF16`).
//! [`load`] reads a tensor at `W` (borrowing when the dtype already matches, so
//! the f32 path copies nothing), [`store`] converts results back, and [`gemm`] is
//! a strided GEMM generic over `W`, so the same code serves both precisions.

use crate::bail;
use crate::error::Result;
use egret_ir::{DType, Element, Tensor};
use gemm::Parallelism;
use half::{bf16, f16};
use std::borrow::Cow;

/// A working-precision float: `f32` or `f64`.
pub trait Real: num_traits::Float + Element + bytemuck::Pod + std::iter::Sum + Default {
    /// Convert from `f64` (rounding for `f32`).
    fn of(x: f64) -> Self;

    /// `v[i] = exp(v[i] - shift)`, returning the sum: a softmax's inner loop.
    fn exp_shifted_sum(v: &mut [Self], shift: Self) -> Self;
}

impl Real for f32 {
    fn of(x: f64) -> f32 {
        x as f32
    }

    /// Vectorised ([`super::vexp`]).
    fn exp_shifted_sum(v: &mut [f32], shift: f32) -> f32 {
        super::vexp::exp_shifted_sum(v, shift)
    }
}

impl Real for f64 {
    fn of(x: f64) -> f64 {
        x
    }

    fn exp_shifted_sum(v: &mut [f64], shift: f64) -> f64 {
        v.iter_mut().fold(0.0, |sum, x| {
            *x = (*x - shift).exp();
            sum + *x
        })
    }
}

/// Run `$body` with `$W` bound to the working precision of float dtype `$dt`
/// (`f64` for `F64`, `f32` for `F32`/`F16`/`BF16`); other dtypes are an error.
#[macro_export]
macro_rules! with_workprec {
    ($dt:expr, $W:ident => $body:block) => {
        match $dt {
            egret_ir::DType::F64 => {
                type $W = f64;
                $body
            }
            egret_ir::DType::F32 | egret_ir::DType::F16 | egret_ir::DType::BF16 => {
                type $W = f32;
                $body
            }
            other => {
                return Err($crate::error::RuntimeError::Msg(format!(
                    "unsupported dtype {other}"
                )))
            }
        }
    };
}

/// The elements of a numeric tensor at precision `W`; borrowed when the tensor
/// already has that dtype.
pub fn load<W: Real>(t: &Tensor) -> Result<Cow<'_, [W]>> {
    if t.dtype() == W::DTYPE {
        return Ok(Cow::Borrowed(t.as_slice::<W>()?));
    }
    Ok(Cow::Owned(match t.dtype() {
        DType::F32 => t
            .as_slice::<f32>()?
            .iter()
            .map(|&x| W::of(x as f64))
            .collect(),
        DType::F16 => t
            .as_slice::<f16>()?
            .iter()
            .map(|x| W::of(x.to_f64()))
            .collect(),
        DType::BF16 => t
            .as_slice::<bf16>()?
            .iter()
            .map(|x| W::of(x.to_f64()))
            .collect(),
        _ => t.to_f64_vec()?.into_iter().map(W::of).collect(),
    }))
}

/// A tensor of float dtype `dtype` holding `v` (converted from precision `W`).
pub fn store<W: Real>(dtype: DType, shape: Vec<usize>, v: Vec<W>) -> Result<Tensor> {
    if dtype == W::DTYPE {
        return Ok(Tensor::from_vec(shape, v)?);
    }
    let f = |x: &W| x.to_f64().unwrap_or(f64::NAN);
    Ok(match dtype {
        DType::F32 => Tensor::from_vec(shape, v.iter().map(|x| f(x) as f32).collect::<Vec<_>>())?,
        DType::F64 => Tensor::from_vec(shape, v.iter().map(f).collect::<Vec<_>>())?,
        DType::F16 => Tensor::from_vec(
            shape,
            v.iter().map(|x| f16::from_f64(f(x))).collect::<Vec<_>>(),
        )?,
        DType::BF16 => Tensor::from_vec(
            shape,
            v.iter().map(|x| bf16::from_f64(f(x))).collect::<Vec<_>>(),
        )?,
        other => bail!("cannot store float results as {other}"),
    })
}

/// One strided matrix operand: `data[r * rs + c * cs]` is element `(r, c)`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, W> {
    /// Backing elements.
    pub data: &'a [W],
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a, W> Mat<'a, W> {
    /// A contiguous row-major matrix with `cols` columns.
    pub fn rows(data: &'a [W], cols: usize) -> Mat<'a, W> {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [W], cols: usize) -> Mat<'a, W> {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn covers(&self, nrows: usize, ncols: usize) -> bool {
        if nrows == 0 || ncols == 0 {
            return true;
        }
        let last = (nrows - 1)
            .checked_mul(self.rs)
            .zip((ncols - 1).checked_mul(self.cs));
        matches!(last, Some((r, c)) if r.checked_add(c).is_some_and(|i| i < self.data.len()))
    }
}

/// `C[m×n] = alpha·A[m×k]·B[k×n] + beta·C`, where C is row-major with row stride
/// `c_rs`. `beta == 0` ignores C's old contents (NaNs included). Operands that do
/// not cover their extent are an error, so the unsafe GEMM call stays in bounds.
#[allow(clippy::too_many_arguments)]
pub fn gemm<W: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_, W>,
    b: Mat<'_, W>,
    c: &mut [W],
    c_rs: usize,
    alpha: W,
    beta: W,
) -> Result<()> {
    let c_ok = m == 0
        || n == 0
        || ((m - 1)
            .checked_mul(c_rs)
            .and_then(|x| x.checked_add(n))
            .is_some_and(|e| e <= c.len())
            && c_rs >= n);
    if !a.covers(m, k) || !b.covers(k, n) || !c_ok {
        bail!("gemm operands do not cover a {m}x{k} by {k}x{n} product");
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for r in 0..m {
            for x in &mut c[r * c_rs..r * c_rs + n] {
                *x = if beta == W::zero() {
                    W::zero()
                } else {
                    *x * beta
                };
            }
        }
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m.saturating_mul(n).saturating_mul(k) > 64 * 64 * 64 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: `covers`/`c_ok` checked above that every strided index of the
    // m×k, k×n and m×n operands lies inside its slice; all strides fit isize
    // because the indices they produce are below a slice length.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            beta != W::zero(),
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_store_roundtrip_f16() {
        let t = Tensor::from_vec(
            vec![3],
            vec![f16::from_f32(1.5), f16::from_f32(-2.0), f16::from_f32(0.25)],
        )
        .unwrap();
        let v = load::<f32>(&t).unwrap();
        assert_eq!(&*v, &[1.5, -2.0, 0.25]);
        let back = store::<f32>(DType::F16, vec![3], v.into_owned()).unwrap();
        assert_eq!(back.to_f64_vec().unwrap(), vec![1.5, -2.0, 0.25]);
    }

    #[test]
    fn load_borrows_matching_dtype() {
        let t = Tensor::from_vec(vec![2], vec![1f32, 2.0]).unwrap();
        assert!(matches!(load::<f32>(&t).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn gemm_transposed_b_into_strided_c() {
        // A = [[1,2],[3,4]], B^T stored row-major as [[5,6],[7,8]] -> A·B = [[17,23],[39,53]].
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let bt = [5.0f64, 6.0, 7.0, 8.0];
        let mut c = [1.0f64; 6];
        gemm(
            2,
            2,
            2,
            Mat::rows(&a, 2),
            Mat::rows_t(&bt, 2),
            &mut c,
            3,
            1.0,
            1.0,
        )
        .unwrap();
        assert_eq!(c, [18.0, 24.0, 1.0, 40.0, 54.0, 1.0]);
    }

    #[test]
    fn gemm_rejects_short_operands() {
        let a = [1.0f32; 3];
        let mut c = [0.0f32; 4];
        assert!(gemm(
            2,
            2,
            2,
            Mat::rows(&a, 2),
            Mat::rows(&a, 2),
            &mut c,
            2,
            1.0,
            0.0
        )
        .is_err());
    }
}
