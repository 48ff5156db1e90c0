//! Kernels for egret's block-quantized storage (domain `egret`):
//! `DequantizeBlocks`, `GatherBlocks`, `MatMulBlocks` and `MatMulInt8` (see
//! `egret_ir::infer::egret_ops`).
//!
//! The first two call the bit-exact dequantizers of [`egret_ir::blocks`] row by
//! row; whole tensors are split across threads by rows (rayon), which keeps every
//! row's arithmetic, and so the result, identical to the single-threaded one.
//! The matrix products run [`crate::kernels::qmatmul`] on the packed weights.

use crate::bail;
use crate::error::Result;
use crate::kernels::qmatmul::{self, Isa, Weight};
use crate::kernels::{checked_len, input, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::infer::egret_ops::DOMAIN;
use egret_ir::{blocks, DType, Tensor, Value};
use rayon::prelude::*;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add_domain(DOMAIN, "DequantizeBlocks", dequantize_blocks);
    r.add_domain(DOMAIN, "GatherBlocks", gather_blocks);
    r.add_domain(DOMAIN, "MatMulBlocks", matmul_blocks);
    r.add_domain(DOMAIN, "MatMulInt8", matmul_int8);
}

/// The f32 `x [..., K]` of a matrix product against `[N, K]` weights `w`, with
/// its row count `m`, `K`, `N`, the optional f32 bias (input `bias_at`) and the
/// output shape `[..., N]`.
struct Linear<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&'a [f32]>,
    shape: Vec<usize>,
}

fn linear<'a>(inputs: &'a [Option<Value>], w: &Tensor, bias_at: usize) -> Result<Linear<'a>> {
    let x = input(inputs, 0)?;
    let x_data = x.as_slice::<f32>()?;
    let (&[n, kw], Some(&k)) = (w.shape(), x.shape().last()) else {
        bail!(
            "x {:?} must be [..., K] and the weight {:?} [N, K]",
            x.shape(),
            w.shape()
        );
    };
    if k != kw {
        bail!("x has K = {k} but the weight has K = {kw}");
    }
    let bias = match inputs.get(bias_at).and_then(|v| v.as_ref()) {
        Some(b) => Some(b.as_tensor()?.as_slice::<f32>()?),
        None => None,
    };
    let mut shape = x.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    let m = match x_data.len().checked_div(k) {
        Some(m) => m,
        None => checked_len(&shape[..shape.len() - 1])?,
    };
    checked_len(&shape)?;
    Ok(Linear {
        x: x_data,
        m,
        k,
        n,
        bias,
        shape,
    })
}

fn matmul_blocks(_: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let w = input(inputs, 1)?;
    let l = linear(inputs, w, 2)?;
    let mut out = vec![0f32; l.m * l.n];
    let weight = Weight::Packed {
        dtype: w.dtype(),
        bytes: w.bytes(),
    };
    qmatmul::matmul(Isa::best(), l.x, l.m, l.k, weight, l.n, l.bias, &mut out)?;
    one(Tensor::from_vec(l.shape, out)?)
}

fn matmul_int8(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (w, scale) = (input(inputs, 1)?, input(inputs, 2)?);
    let l = linear(inputs, w, 3)?;
    let (q, scale) = (w.as_slice::<i8>()?, scale.as_slice::<f32>()?);
    let mut out = vec![0f32; l.m * l.n];
    let isa = Isa::best();
    match ctx.attrs().int_or("act_quant", 0)? {
        0 => {
            let weight = Weight::Int8 { q, scale };
            qmatmul::matmul(isa, l.x, l.m, l.k, weight, l.n, l.bias, &mut out)?;
        }
        1 => qmatmul::matmul_w8a8(isa, l.x, l.m, l.k, q, scale, l.n, l.bias, &mut out)?,
        other => bail!("act_quant must be 0 or 1, not {other}"),
    }
    one(Tensor::from_vec(l.shape, out)?)
}

/// Bytes of one row of `width` elements of `dtype`.
fn row_bytes(dtype: DType, width: usize) -> Result<usize> {
    match dtype.storage_bytes(&[width]) {
        Some(n) => Ok(n),
        None => bail!("rows of {width} elements cannot be stored as {dtype}"),
    }
}

fn dequantize_blocks(_: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let n = checked_len(x.shape())?;
    let width = x.shape().last().copied().unwrap_or(1);
    let mut out = vec![0f32; n];
    if n > 0 {
        let rb = row_bytes(x.dtype(), width)?;
        if x.bytes().len() != rb * (n / width) {
            bail!(
                "{} bytes for a {} tensor of shape {:?}",
                x.bytes().len(),
                x.dtype(),
                x.shape()
            );
        }
        x.bytes()
            .par_chunks(rb)
            .zip(out.par_chunks_mut(width))
            .try_for_each(|(b, o)| blocks::dequantize_into(x.dtype(), b, o))?;
    }
    one(Tensor::from_vec(x.shape().to_vec(), out)?)
}

fn gather_blocks(_: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (table, ind) = (input(inputs, 0)?, input(inputs, 1)?);
    let &[rows, width] = table.shape() else {
        bail!("table must be [rows, width], got shape {:?}", table.shape());
    };
    let mut shape = ind.shape().to_vec();
    shape.push(width);
    let n = checked_len(&shape)?;
    let rb = row_bytes(table.dtype(), width)?;
    let bytes = table.bytes();
    let mut out = vec![0f32; n];
    for (i, o) in ind
        .to_i64_vec()?
        .into_iter()
        .zip(out.chunks_mut(width.max(1)))
    {
        let r = if i < 0 { i + rows as i64 } else { i };
        let Some(row) = usize::try_from(r)
            .ok()
            .filter(|&r| r < rows)
            .and_then(|r| bytes.get(r * rb..(r + 1) * rb))
        else {
            bail!("index {i} out of range for a table of {rows} rows");
        };
        blocks::dequantize_into(table.dtype(), row, o)?;
    }
    one(Tensor::from_vec(shape, out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::BlockFormat;

    /// Two Q8_0 rows of 32: row r holds d = 0.5 (f16 0x3800) and q_j = j - 16 + r.
    fn table() -> Tensor {
        let mut b = Vec::new();
        for r in 0..2i32 {
            b.extend([0x00, 0x38]);
            b.extend((0..32).map(|j| (j - 16 + r) as i8 as u8));
        }
        Tensor::from_bytes(DType::Block(BlockFormat::Q8_0), vec![2, 32], &b).unwrap()
    }

    fn want(r: usize, j: usize) -> f32 {
        (j as f32 - 16.0 + r as f32) * 0.5
    }

    /// Build a one-node graph (inputs as constants, types inferred) and run it.
    fn run(op: &str, inputs: Vec<Tensor>) -> Result<Tensor> {
        run_call(egret_ir::OpCall::new(op), inputs)
    }

    fn run_call(mut call: egret_ir::OpCall, inputs: Vec<Tensor>) -> Result<Tensor> {
        let mut g = egret_ir::Graph::new("t");
        let ins: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| g.add_const(&format!("in{i}"), t))
            .collect();
        call.domain = DOMAIN.into();
        let out = g.call1("n", call, &ins)?;
        g.outputs = vec![out];
        let mut v = crate::Interpreter::new(&g)?.run(vec![])?;
        Ok(v.remove(0).into_tensor()?)
    }

    #[test]
    fn dequantize_and_gather_rows() {
        let d = run("DequantizeBlocks", vec![table()]).unwrap();
        let v = d.as_slice::<f32>().unwrap();
        assert_eq!(d.shape(), &[2, 32]);
        assert_eq!((v[0], v[33], v[63]), (want(0, 0), want(1, 1), want(1, 31)));
        let ids = Tensor::from_vec(vec![3], vec![1i64, 0, -1]).unwrap();
        let g = run("GatherBlocks", vec![table(), ids]).unwrap();
        assert_eq!(g.shape(), &[3, 32]);
        let v = g.as_slice::<f32>().unwrap();
        assert_eq!(
            (v[0], v[32], v[64 + 5]),
            (want(1, 0), want(0, 0), want(1, 5))
        );
        let bad = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        assert!(run("GatherBlocks", vec![table(), bad]).is_err());
    }

    /// `[2, 3, 64]` inputs against `[5, 64]` weights, checked against an f64
    /// product with the dequantized weights; the kernels' own tests cover every
    /// format and both code paths.
    #[test]
    fn matmul_ops_keep_batch_dims() {
        let (k, n) = (64, 5);
        let xs: Vec<f32> = (0..6 * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let wf: Vec<f32> = (0..n * k)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0)
            .collect();
        let x = Tensor::from_vec(vec![2, 3, k], xs.clone()).unwrap();
        let bias = Tensor::from_vec(vec![n], vec![0.5f32, -1.0, 0.0, 2.0, 0.25]).unwrap();
        let b = bias.as_slice::<f32>().unwrap().to_vec();
        let check = |y: &Tensor, w: &[f32], with_bias: bool, tol: f64| {
            assert_eq!(y.shape(), &[2, 3, n]);
            let y = y.as_slice::<f32>().unwrap();
            for (i, xr) in xs.chunks(k).enumerate() {
                for (r, wr) in w.chunks(k).enumerate() {
                    let mut want: f64 = xr
                        .iter()
                        .zip(wr)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    if with_bias {
                        want += f64::from(b[r]);
                    }
                    let got = f64::from(y[i * n + r]);
                    assert!((got - want).abs() <= tol, "[{i}, {r}]: {got} vs {want}");
                }
            }
        };
        let wt = Tensor::from_vec(vec![n, k], wf.clone()).unwrap();
        let q = blocks::quantize(&wt, BlockFormat::Q4_0, None).unwrap();
        let deq = blocks::dequantize(&q)
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        let y = run("MatMulBlocks", vec![x.clone(), q.clone(), bias.clone()]).unwrap();
        check(&y, &deq, true, 1e-4);
        let y = run("MatMulBlocks", vec![x.clone(), q]).unwrap();
        check(&y, &deq, false, 1e-4);

        let (qi, s) = blocks::quantize_rows_i8(&wf, n, k);
        let deq8: Vec<f32> = qi
            .chunks(k)
            .zip(&s)
            .flat_map(|(r, &s)| r.iter().map(move |&v| f32::from(v) * s))
            .collect();
        let qi = Tensor::from_vec(vec![n, k], qi).unwrap();
        let s = Tensor::from_vec(vec![n], s).unwrap();
        let call =
            |aq| egret_ir::OpCall::new("MatMulInt8").with("act_quant", egret_ir::Attr::Int(aq));
        let y = run_call(
            call(0),
            vec![x.clone(), qi.clone(), s.clone(), bias.clone()],
        )
        .unwrap();
        check(&y, &deq8, true, 1e-4);
        // W8A8 also quantizes x (to 1/127 of each row's max): close, not exact.
        let y = run_call(call(1), vec![x.clone(), qi.clone(), s.clone()]).unwrap();
        check(&y, &deq8, false, 0.1);
        assert!(run_call(call(1), vec![x.clone(), qi.clone(), s.clone(), s.clone()]).is_ok());
        let short = Tensor::from_vec(vec![2, 32], vec![0f32; 64]).unwrap();
        assert!(run_call(call(0), vec![short, qi, s]).is_err());
    }
}
