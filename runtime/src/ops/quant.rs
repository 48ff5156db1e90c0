//! Kernels: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear.
//!
//! Scales and zero points are per tensor, per axis (`axis`) or blocked
//! (`block_size` along `axis`). Quantized values can be any integer type
//! (int4/uint4/int2/uint2 included, saturating) or a float8/float4 type
//! (`saturate`). Scales may be float8 e8m0 (MX scales). The output type is the
//! one inference derived (zero point type / `output_dtype`).

use super::cast::out_dtype;
use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::convert::{collect_as, decode_small, int_range, round_to_float, Wide};
use crate::kernels::{input, norm_axis, one, opt_input};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{DType, Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("QuantizeLinear", quantize_linear);
    r.add("DequantizeLinear", dequantize_linear);
    r.add("DynamicQuantizeLinear", dynamic_quantize_linear);
}

/// How a scale / zero-point tensor maps onto the elements of `x`.
#[derive(Debug, PartialEq)]
enum Layout {
    /// One parameter for the whole tensor.
    Tensor,
    /// One parameter per index of the quantization axis (`len` long, `inner` stride).
    Axis { len: usize, inner: usize },
    /// Blocks of `block` along the axis: the parameter tensor has `blocks` there.
    Blocked {
        len: usize,
        inner: usize,
        block: usize,
        blocks: usize,
    },
}

impl Layout {
    /// Work out the layout from the shapes and the `axis` / `block_size` attributes.
    fn new(x: &[usize], p: &[usize], axis: i64, block_size: i64) -> Result<Layout> {
        let numel: usize = p.iter().product();
        if numel == 1 && block_size <= 0 {
            return Ok(Layout::Tensor);
        }
        let a = norm_axis(axis, x.len())?;
        let Some(&len) = x.get(a) else {
            bail!("axis {axis} out of range for rank {}", x.len())
        };
        let inner: usize = x[a + 1..].iter().product();
        if block_size <= 0 {
            if p.len() != 1 || p[0] != len {
                bail!("per-axis parameters of shape {p:?} do not match axis {a} of {x:?}");
            }
            return Ok(Layout::Axis { len, inner });
        }
        let block = block_size as usize;
        let blocks = len.div_ceil(block);
        let ok = p.len() == x.len()
            && p.iter()
                .zip(x)
                .enumerate()
                .all(|(i, (&pd, &xd))| if i == a { pd == blocks } else { pd == xd });
        if !ok {
            bail!("blocked parameters of shape {p:?} do not match {x:?} with block size {block} on axis {a}");
        }
        Ok(Layout::Blocked {
            len,
            inner,
            block,
            blocks,
        })
    }

    /// The parameter index of flat element `i` of `x`.
    fn index(&self, i: usize) -> usize {
        match *self {
            Layout::Tensor => 0,
            Layout::Axis { len, inner } => (i / inner) % len,
            Layout::Blocked {
                len,
                inner,
                block,
                blocks,
            } => {
                let (outer, a, r) = (i / (inner * len), (i / inner) % len, i % inner);
                (outer * blocks + a / block) * inner + r
            }
        }
    }
}

/// Elements as f64: numbers directly, float8/float4/e8m0 codes decoded.
fn values_f64(t: &Tensor) -> Result<Vec<f64>> {
    if t.dtype().is_small_float() {
        Ok(decode_small(t)?.into_iter().map(f64::from).collect())
    } else {
        Ok(t.to_f64_vec()?)
    }
}

/// Zero-point values (zeros when absent); the tensor must match the scale's shape.
fn zero_points(zp: Option<&Tensor>, scale: &Tensor) -> Result<Vec<f64>> {
    match zp {
        None => Ok(vec![0.0; scale.numel()]),
        Some(z) if z.numel() == scale.numel() => values_f64(z),
        Some(z) => bail!(
            "zero point shape {:?} differs from scale shape {:?}",
            z.shape(),
            scale.shape()
        ),
    }
}

/// The float type of the `precision` attribute code, else the scale's type.
fn division_precision(code: i64, scale: DType) -> Result<DType> {
    Ok(match code {
        0 => scale,
        1 => DType::F32,
        10 => DType::F16,
        11 => DType::F64,
        16 => DType::BF16,
        _ => bail!("unsupported precision {code}"),
    })
}

/// `saturate(round(x / scale) + zero_point)` into `out`.
#[allow(clippy::too_many_arguments)]
fn quantize(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    out: DType,
    axis: i64,
    block: i64,
    saturate: bool,
    precision: i64,
) -> Result<Tensor> {
    let layout = Layout::new(x.shape(), scale.shape(), axis, block)?;
    let (xs, ss, zs) = (x.to_f64_vec()?, values_f64(scale)?, zero_points(zp, scale)?);
    let prec = division_precision(precision, scale.dtype())?;
    let q = xs.iter().enumerate().map(|(i, &v)| {
        let p = layout.index(i);
        (round_to_float(prec, v / ss[p]), zs[p])
    });
    let shape = x.shape().to_vec();
    if let Some((lo, hi)) = int_range(out) {
        let it =
            q.map(|(v, z)| Wide::I((v.round_ties_even() + z).clamp(lo as f64, hi as f64) as i64));
        collect_as(out, shape, it, saturate)
    } else if out.is_small_float() {
        collect_as(out, shape, q.map(|(v, z)| Wide::F(v + z)), saturate)
    } else {
        bail!("{out} is not a quantized type")
    }
}

fn quantize_linear(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let a = ctx.attrs();
    let y = quantize(
        input(inputs, 0)?,
        input(inputs, 1)?,
        opt_input(inputs, 2)?,
        out_dtype(ctx, 0)?,
        a.int_or("axis", 1)?,
        a.int_or("block_size", 0)?,
        a.int_or("saturate", 1)? != 0,
        a.int_or("precision", 0)?,
    )?;
    one(y)
}

/// `(x - zero_point) * scale` as `out`. Float8/float4 inputs ignore the zero point.
fn dequantize(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    out: DType,
    axis: i64,
    block: i64,
) -> Result<Tensor> {
    let layout = Layout::new(x.shape(), scale.shape(), axis, block)?;
    let xs = values_f64(x)?;
    let ss = values_f64(scale)?;
    let zs = if x.dtype().is_small_float() {
        vec![0.0; ss.len()]
    } else {
        zero_points(zp, scale)?
    };
    // The reference computes in f32 (f64 only for f64 scales) and then casts.
    let work = if scale.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let it = xs.iter().enumerate().map(|(i, &v)| {
        let p = layout.index(i);
        Wide::F(round_to_float(work, (v - zs[p]) * ss[p]))
    });
    collect_as(out, x.shape().to_vec(), it, true)
}

fn dequantize_linear(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let a = ctx.attrs();
    one(dequantize(
        input(inputs, 0)?,
        input(inputs, 1)?,
        opt_input(inputs, 2)?,
        out_dtype(ctx, 0)?,
        a.int_or("axis", 1)?,
        a.int_or("block_size", 0)?,
    )?)
}

/// uint8 quantization with scale and zero point from the data range (including 0).
fn dynamic_quantize(x: &Tensor) -> Result<(Tensor, f32, u8)> {
    let xs: Vec<f32> = x.to_f64_vec()?.into_iter().map(|v| v as f32).collect();
    let maxx = xs.iter().copied().fold(0f32, f32::max);
    let minx = xs.iter().copied().fold(0f32, f32::min);
    let scale = if maxx == minx { 1.0 } else { maxx - minx } / 255.0;
    let zp = (0.0 - minx / scale).clamp(0.0, 255.0).round_ties_even();
    let y: Vec<u8> = xs
        .iter()
        .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8)
        .collect();
    Ok((Tensor::from_vec(x.shape().to_vec(), y)?, scale, zp as u8))
}

fn dynamic_quantize_linear(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    if !x.dtype().is_float() {
        return Err(RuntimeError::msg(format!(
            "DynamicQuantizeLinear expects a float input, got {}",
            x.dtype()
        )));
    }
    let (y, scale, zp) = dynamic_quantize(x)?;
    Ok(vec![
        Value::Tensor(y),
        Value::Tensor(Tensor::scalar(scale)),
        Value::Tensor(Tensor::scalar(zp)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn quantize_per_tensor_rounds_half_even_and_saturates() {
        let x = f32s(&[7], &[0.0, 2.0, 3.0, 5.0, 1000.0, -254.0, -1000.0]);
        let zp = Tensor::scalar(128u8);
        let y = quantize(
            &x,
            &Tensor::scalar(2f32),
            Some(&zp),
            DType::U8,
            1,
            0,
            true,
            0,
        )
        .unwrap();
        // 3/2 = 1.5 -> 2 and 5/2 = 2.5 -> 2 (ties to even).
        assert_eq!(
            y.as_slice::<u8>().unwrap(),
            &[128, 129, 130, 130, 255, 1, 0]
        );
    }

    #[test]
    fn quantize_per_axis_int4_and_blocked() {
        let x = f32s(
            &[3, 4],
            &[
                0.0, 2.5, 4.8, 8.6, -30.0, -20.0, 6.0, 9.0, 12.0, 15.0, 16.0, 40.0,
            ],
        );
        let s = f32s(&[3], &[2.0, 3.0, 4.0]);
        let zp = Tensor::from_bytes(DType::I4, vec![3], &[1, 1, 1]).unwrap();
        let y = quantize(&x, &s, Some(&zp), DType::I4, 0, 0, true, 0).unwrap();
        assert_eq!(
            y.as_slice::<i8>().unwrap(),
            &[1, 2, 3, 5, -8, -6, 3, 4, 4, 5, 5, 7]
        );
        // ONNX test_quantizelinear_blocked_asymmetric.
        let x = f32s(
            &[3, 4],
            &[
                6.0, 12.0, 50.0, 5.0, 1.0, 8.0, 4.0, 5.0, 0.0, 20.0, 10.0, 4.0,
            ],
        );
        let s = f32s(&[3, 2], &[1.5, 2.5, 3.0, 4.9, 5.1, 6.9]);
        let zp = Tensor::from_vec(vec![3, 2], vec![0u8, 1, 1, 0, 2, 3]).unwrap();
        let y = quantize(&x, &s, Some(&zp), DType::U8, 1, 2, true, 0).unwrap();
        assert_eq!(
            y.as_slice::<u8>().unwrap(),
            &[4, 8, 21, 3, 1, 4, 1, 1, 2, 6, 4, 4]
        );
        assert!(quantize(
            &x,
            &f32s(&[3, 3], &[1.0; 9]),
            None,
            DType::U8,
            1,
            2,
            true,
            0
        )
        .is_err());
    }

    #[test]
    fn quantize_float8() {
        let x = f32s(&[5], &[0.0, 1.0, 2.0, 100000.0, 200.0]);
        let y = quantize(
            &x,
            &Tensor::scalar(2f32),
            None,
            DType::F8E4M3FN,
            1,
            0,
            true,
            0,
        )
        .unwrap();
        assert_eq!(y.as_slice::<u8>().unwrap(), &[0x00, 0x30, 0x38, 0x7e, 0x6c]);
    }

    #[test]
    fn dequantize_axis_and_float8() {
        let x = Tensor::from_vec(vec![1, 3, 1, 2], vec![3u8, 89, 34, 200, 74, 59]).unwrap();
        let s = f32s(&[3], &[2.0, 4.0, 5.0]);
        let zp = Tensor::from_vec(vec![3], vec![84u8, 24, 196]).unwrap();
        let y = dequantize(&x, &s, Some(&zp), DType::F32, 1, 0).unwrap();
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[-162.0, 10.0, 40.0, 704.0, -610.0, -685.0]
        );
        let x8 = Tensor::from_bytes(DType::F8E4M3FN, vec![3], &[0x30, 0x7e, 0xed]).unwrap();
        let y = dequantize(
            &x8,
            &Tensor::scalar(half::f16::from_f32(2.0)),
            None,
            DType::F16,
            0,
            0,
        )
        .unwrap();
        let got: Vec<f32> = y
            .as_slice::<half::f16>()
            .unwrap()
            .iter()
            .map(|v| v.to_f32())
            .collect();
        assert_eq!(got, vec![1.0, 896.0, -208.0]);
    }

    #[test]
    fn dynamic_quantize_matches_reference() {
        let (y, scale, zp) =
            dynamic_quantize(&f32s(&[6], &[0.0, 2.0, -3.0, -2.5, 1.34, 0.5])).unwrap();
        assert_eq!(y.as_slice::<u8>().unwrap(), &[153, 255, 0, 26, 221, 179]);
        assert!((scale - 0.019607844).abs() < 1e-9);
        assert_eq!(zp, 153);
        let (_, _, zp) = dynamic_quantize(&f32s(&[2], &[-1.0, -4.0])).unwrap();
        assert_eq!(zp, 255);
    }
}
