//! Kernels for egret's block-quantized storage (domain `egret`):
//! `DequantizeBlocks` and `GatherBlocks` (see `egret_ir::infer::egret_ops`).
//!
//! Both call the bit-exact dequantizers of [`egret_ir::blocks`] row by row; whole
//! tensors are split across threads by rows (rayon), which keeps every row's
//! arithmetic, and so the result, identical to the single-threaded one.

use crate::bail;
use crate::error::Result;
use crate::kernels::{checked_len, input, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::infer::egret_ops::DOMAIN;
use egret_ir::{blocks, DType, Tensor, Value};
use rayon::prelude::*;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add_domain(DOMAIN, "DequantizeBlocks", dequantize_blocks);
    r.add_domain(DOMAIN, "GatherBlocks", gather_blocks);
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
        let mut g = egret_ir::Graph::new("t");
        let ins: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| g.add_const(&format!("in{i}"), t))
            .collect();
        let mut call = egret_ir::OpCall::new(op);
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
}
