//! Kernels of egret's sparse matrix products (domain `egret`, see
//! `egret_ir::infer::egret_ops`): `MatMulSparse` (bitmap-pruned weights,
//! [`crate::kernels::qmatmul`] with [`Weight::Sparse`]) and `MatMulActSparse`
//! (activation sparsity, [`crate::kernels::act_sparse`]).

use crate::bail;
use crate::error::Result;
use crate::kernels::act_sparse::matmul_act_sparse;
use crate::kernels::qmatmul::{self, Isa, Weight};
use crate::kernels::{checked_len, input, one, opt_input};
use crate::registry::{KernelCtx, Registry};
use egret_ir::infer::egret_ops::DOMAIN;
use egret_ir::sparse::SparseView;
use egret_ir::{Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add_domain(DOMAIN, "MatMulSparse", matmul_sparse);
    r.add_domain(DOMAIN, "MatMulActSparse", matmul_act_sparse_op);
}

/// `x [..., K]` as (data, rows, K) and the output shape `[..., n]`.
fn rows(x: &Tensor, n: usize) -> Result<(&[f32], usize, usize, Vec<usize>)> {
    let Some(&k) = x.shape().last() else {
        bail!("x must have rank >= 1, not {:?}", x.shape());
    };
    let data = x.as_slice::<f32>()?;
    let mut shape = x.shape().to_vec();
    shape.pop();
    let m = checked_len(&shape)?;
    shape.push(n);
    checked_len(&shape)?;
    Ok((data, m, k, shape))
}

fn matmul_sparse(_: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let Some(&k) = x.shape().last() else {
        bail!("x must have rank >= 1, not {:?}", x.shape());
    };
    let (mask, values, row_ptr) = (input(inputs, 1)?, input(inputs, 2)?, input(inputs, 3)?);
    let view = SparseView::from_tensors(mask, values, row_ptr, opt_input(inputs, 4)?, k)?;
    let n = view.n();
    let (xd, m, k, shape) = rows(x, n)?;
    let mut out = vec![0f32; m * n];
    qmatmul::matmul(
        Isa::best(),
        xd,
        m,
        k,
        Weight::Sparse(view),
        n,
        None,
        &mut out,
    )?;
    one(Tensor::from_vec(shape, out)?)
}

fn matmul_act_sparse_op(_: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, w, t) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let &[kw, n] = w.shape() else {
        bail!("w must be [K, N], not {:?}", w.shape());
    };
    let (xd, m, k, shape) = rows(x, n)?;
    if k != kw {
        bail!("x has K = {k} but w has K = {kw}");
    }
    let &[threshold] = t.as_slice::<f32>()? else {
        bail!("threshold must be one f32, not {:?}", t.shape());
    };
    let mut out = vec![0f32; m * n];
    matmul_act_sparse(xd, m, k, w.as_slice::<f32>()?, n, threshold, true, &mut out)?;
    one(Tensor::from_vec(shape, out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::sparse::SparseMatrix;

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

    fn close(got: &Tensor, want: &[f32], shape: &[usize]) {
        assert_eq!(got.shape(), shape);
        for (g, w) in got.as_slice::<f32>().unwrap().iter().zip(want) {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    /// x [2, 1, 10] against W [3, 10] keeping the even columns.
    #[test]
    fn ops_match_dense_products() {
        let (k, n) = (10, 3);
        let xs: Vec<f32> = (0..2 * k).map(|i| i as f32 / 7.0 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i * 13 % 11) as f32 - 5.0).collect();
        let keep: Vec<bool> = (0..n * k).map(|i| i % 2 == 0).collect();
        let x = Tensor::from_vec(vec![2, 1, k], xs.clone()).unwrap();
        for int8 in [false, true] {
            let sm = SparseMatrix::encode(&w, n, k, &keep, int8).unwrap();
            let wd = sm.densify();
            let want: Vec<f32> = xs
                .chunks(k)
                .flat_map(|xr| {
                    wd.chunks(k)
                        .map(|wr| xr.iter().zip(wr).map(|(a, b)| a * b).sum::<f32>())
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut ins = vec![x.clone()];
            ins.extend(sm.tensors());
            close(&run("MatMulSparse", ins).unwrap(), &want, &[2, 1, n]);
        }
        // A row_ptr that disagrees with the mask is an error, not a panic.
        let sm = SparseMatrix::encode(&w, n, k, &keep, false).unwrap();
        let mut t = sm.tensors();
        t[2] = Tensor::from_vec(vec![4], vec![0i64, 4, 10, 15]).unwrap();
        let mut ins = vec![x.clone()];
        ins.extend(t);
        assert!(run("MatMulSparse", ins).is_err());

        // Activation sparsity: w as [K, N], threshold 0.5.
        let wt = Tensor::from_vec(vec![k, n], w.clone()).unwrap();
        let want: Vec<f32> = xs
            .chunks(k)
            .flat_map(|xr| {
                (0..n)
                    .map(|c| {
                        (0..k)
                            .filter(|&j| xr[j].abs() > 0.5)
                            .map(|j| xr[j] * w[j * n + c])
                            .sum::<f32>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let t = Tensor::scalar(0.5f32);
        close(
            &run("MatMulActSparse", vec![x.clone(), wt.clone(), t]).unwrap(),
            &want,
            &[2, 1, n],
        );
        let t2 = Tensor::from_vec(vec![2], vec![0.5f32, 0.5]).unwrap();
        assert!(run("MatMulActSparse", vec![x, wt, t2]).is_err());
    }
}
