//! Inference rules for egret's own domain, `egret`: ops with no ONNX equivalent.
//!
//! * `egret::DequantizeBlocks(x) -> f32`: a block-quantized tensor (any
//!   [`crate::BlockFormat`], or f16 / bf16 / f32) as f32 of the same logical
//!   shape, with [`crate::blocks`]' bit-exact dequantizers. It keeps quantized
//!   weights quantized in the graph: passes and kernels see the blocks.
//! * `egret::GatherBlocks(table, indices) -> f32`: `Gather(axis = 0)` of the
//!   dequantized `[rows, width]` table, dequantizing only the selected rows (an
//!   embedding lookup in a quantized table). Output shape `indices.shape + [width]`.
//! * `egret::MatMulBlocks(x, w, bias?) -> f32`: `x · dequant(w)ᵀ (+ bias)` for
//!   f32 `x [..., K]`, `w [N, K]` in a block format (K a whole number of blocks)
//!   or f16 / bf16 / f32, and an optional f32 `bias [N]`. Output `[..., N]`.
//! * `egret::MatMulInt8(x, w, scale, bias?) -> f32`, attr `act_quant` (0 or 1,
//!   default 0): `x · (w · scale)ᵀ (+ bias)` for f32 `x [..., K]`, int8
//!   `w [N, K]`, f32 per-row `scale [N]`; with `act_quant = 1` the rows of `x` are
//!   quantized to int8 per token first (W8A8). Output `[..., N]`.
//! * `egret::MatMulSparse(x, mask, values, row_ptr, scale?) -> f32`: `x · Wᵀ`
//!   for f32 `x [..., K]` and a row-pruned `W [N, K]` in the bitmap format of
//!   [`crate::sparse`]: u8 `mask [N, ceil(K/8)]`, f32 or i8 `values [nnz]`,
//!   i64 `row_ptr [N + 1]`, and f32 `scale [N]` exactly when the values are i8.
//!   No bias. Output `[..., N]`. The kernel validates the arrays' contents.
//! * `egret::MatMulActSparse(x, w, threshold) -> f32`: `(x ⊙ [|x| > t]) · w`
//!   for f32 `x [..., K]`, f32 `w [K, N]` (ONNX `MatMul` layout) and an f32
//!   scalar `threshold` (shape `[]` or `[1]`): activation sparsity. Output
//!   `[..., N]`.
//! * `egret::Guard(cond)`, attr `value` (0 or 1): no outputs. Fails unless the
//!   one-element `cond` (any numeric dtype, nonzero = true) has the truth value
//!   `value`. A graph specialised to one branch of an `If` keeps its condition
//!   as a guard (`egret_backends::c::specialize_ifs`); the C backend makes a
//!   failing guard return 1 from `egret_model`.

use super::common::{tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, TensorType, ValueType};

/// The domain name of egret's own ops.
pub const DOMAIN: &str = "egret";

/// The rule for an op in the `egret` domain.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "DequantizeBlocks" => dequantize_blocks,
        "GatherBlocks" => gather_blocks,
        "MatMulBlocks" => matmul_blocks,
        "MatMulInt8" => matmul_int8,
        "MatMulSparse" => matmul_sparse,
        "MatMulActSparse" => matmul_act_sparse,
        "Guard" => guard,
        _ => return None,
    })
}

/// True for the stored types the dequantizers read.
fn dequantizable(dt: DType) -> bool {
    matches!(dt, DType::Block(_) | DType::F16 | DType::BF16 | DType::F32)
}

fn check(ctx: &InferCtx<'_>, dt: DType) -> R<()> {
    if dequantizable(dt) {
        Ok(())
    } else {
        Err(format!(
            "{} reads block formats, f16, bf16 or f32, not {dt}",
            ctx.op()
        ))
    }
}

fn dequantize_blocks(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    check(ctx, x.dtype)?;
    Ok(vec![tensor(DType::F32, x.shape.clone())])
}

fn gather_blocks(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (table, ind) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check(ctx, table.dtype)?;
    if !matches!(ind.dtype, DType::I32 | DType::I64) {
        return Err(format!("indices must be int32 or int64, not {}", ind.dtype));
    }
    let shape = match (&table.shape, &ind.shape) {
        (Some(t), _) if t.rank() != 2 => {
            return Err(format!(
                "table must be [rows, width], got rank {}",
                t.rank()
            ))
        }
        (Some(t), Some(i)) => {
            let mut d = i.dims().to_vec();
            d.push(t.dims()[1].clone());
            Some(Shape(d))
        }
        _ => None,
    };
    Ok(vec![tensor(DType::F32, shape)])
}

/// Checks `t` (named `what` in messages) has dtype `want`.
fn expect_dtype(t: &TensorType, want: DType, what: &str) -> R<()> {
    if t.dtype == want {
        Ok(())
    } else {
        Err(format!("{what} must be {want}, not {}", t.dtype))
    }
}

/// Checks an optional `[N]` vector (bias, scale) against the weight's `n`.
fn expect_vector(t: &TensorType, n: Option<&Dim>, what: &str) -> R<()> {
    expect_dtype(t, DType::F32, what)?;
    match (t.shape.as_ref().map(|s| s.dims()), n) {
        (Some([d]), Some(n)) if matches!((d, n), (Dim::Known(a), Dim::Known(b)) if a != b) => {
            Err(format!("{what} has {d} entries for a weight of {n} rows"))
        }
        (Some(d), _) if d.len() != 1 => Err(format!("{what} must be [N], got rank {}", d.len())),
        _ => Ok(()),
    }
}

/// The output type of `x [..., K] · w[N, K]ᵀ`: checks `x` is f32, `w` is
/// `[N, K]` with the same `K`, and `K` a multiple of `block` when known; `[..., N]`.
fn linear(x: &TensorType, w: &TensorType, block: usize) -> R<Option<Shape>> {
    expect_dtype(x, DType::F32, "x")?;
    let wd = match &w.shape {
        Some(s) if s.rank() != 2 => {
            return Err(format!("weight must be [N, K], got rank {}", s.rank()))
        }
        Some(s) => Some(s.dims()),
        None => None,
    };
    let xd = match &x.shape {
        Some(s) if s.rank() == 0 => return Err("x must have rank >= 1 (a K axis)".into()),
        Some(s) => Some(s.dims()),
        None => None,
    };
    let k_w = wd.map(|d| &d[1]);
    let k_x = xd.and_then(|d| d.last());
    if let (Some(Dim::Known(a)), Some(Dim::Known(b))) = (k_x, k_w) {
        if a != b {
            return Err(format!("x has K = {a} but the weight has K = {b}"));
        }
    }
    for k in [k_x, k_w].into_iter().flatten() {
        if let Dim::Known(k) = k {
            if !k.is_multiple_of(block) {
                return Err(format!(
                    "K = {k} is not a multiple of the weight's block of {block}"
                ));
            }
        }
    }
    Ok(match (xd, wd) {
        (Some(xd), Some(wd)) => {
            let mut d = xd[..xd.len() - 1].to_vec();
            d.push(wd[0].clone());
            Some(Shape(d))
        }
        _ => None,
    })
}

fn matmul_blocks(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let block = match w.dtype {
        DType::Block(f) => f.block_elems(),
        DType::F16 | DType::BF16 | DType::F32 => 1,
        other => {
            return Err(format!(
                "weight must be a block format, f16, bf16 or f32, not {other}"
            ))
        }
    };
    let shape = linear(x, w, block)?;
    let n = w.shape.as_ref().map(|s| &s.dims()[0]);
    if let Some(b) = ctx.opt_tensor(2)? {
        expect_vector(b, n, "bias")?;
    }
    Ok(vec![tensor(DType::F32, shape)])
}

fn matmul_int8(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (x, w, scale) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    let act_quant = ctx
        .call
        .attrs
        .int_or("act_quant", 0)
        .map_err(|e| e.to_string())?;
    if !matches!(act_quant, 0 | 1) {
        return Err(format!("act_quant must be 0 or 1, not {act_quant}"));
    }
    expect_dtype(w, DType::I8, "weight")?;
    let shape = linear(x, w, 1)?;
    let n = w.shape.as_ref().map(|s| &s.dims()[0]);
    expect_vector(scale, n, "scale")?;
    if let Some(b) = ctx.opt_tensor(3)? {
        expect_vector(b, n, "bias")?;
    }
    Ok(vec![tensor(DType::F32, shape)])
}

/// The dims of `t` when known, checking its rank is `rank` (`what` in messages).
fn dims_of<'a>(t: &'a TensorType, rank: usize, what: &str) -> R<Option<&'a [Dim]>> {
    match &t.shape {
        Some(s) if s.rank() != rank => {
            Err(format!("{what} must have rank {rank}, not {}", s.rank()))
        }
        Some(s) => Ok(Some(s.dims())),
        None => Ok(None),
    }
}

/// `x`'s dims (rank >= 1, f32) when known.
fn x_dims(x: &TensorType) -> R<Option<&[Dim]>> {
    expect_dtype(x, DType::F32, "x")?;
    match &x.shape {
        Some(s) if s.rank() == 0 => Err("x must have rank >= 1 (a K axis)".into()),
        Some(s) => Ok(Some(s.dims())),
        None => Ok(None),
    }
}

/// `[..., n]` from `x`'s dims.
fn with_last(xd: Option<&[Dim]>, n: Option<&Dim>) -> Option<Shape> {
    let (xd, n) = (xd?, n?);
    let mut d = xd[..xd.len() - 1].to_vec();
    d.push(n.clone());
    Some(Shape(d))
}

fn matmul_sparse(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let (mask, values, row_ptr) = (ctx.tensor(1)?, ctx.tensor(2)?, ctx.tensor(3)?);
    let xd = x_dims(x)?;
    expect_dtype(mask, DType::U8, "mask")?;
    expect_dtype(row_ptr, DType::I64, "row_ptr")?;
    let md = dims_of(mask, 2, "mask")?;
    dims_of(values, 1, "values")?;
    dims_of(row_ptr, 1, "row_ptr")?;
    if let (Some(Dim::Known(k)), Some([_, Dim::Known(kb)])) = (xd.and_then(|d| d.last()), md) {
        if k.div_ceil(8) != *kb {
            return Err(format!(
                "mask rows of {kb} bytes for K = {k} (want {})",
                k.div_ceil(8)
            ));
        }
    }
    let n = md.map(|d| &d[0]);
    match (values.dtype, ctx.opt_tensor(4)?) {
        (DType::F32, None) => {}
        (DType::I8, Some(s)) => expect_vector(s, n, "scale")?,
        (dt, s) => {
            return Err(format!(
                "values must be f32 without a scale or i8 with one, not {dt} {}",
                if s.is_some() { "with one" } else { "without" }
            ))
        }
    }
    Ok(vec![tensor(DType::F32, with_last(xd, n))])
}

fn guard(_: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(Vec::new())
}

fn matmul_act_sparse(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let (x, w, t) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    let xd = x_dims(x)?;
    expect_dtype(w, DType::F32, "w")?;
    expect_dtype(t, DType::F32, "threshold")?;
    let wd = dims_of(w, 2, "w")?;
    if let Some(s) = &t.shape {
        if !matches!(s.dims(), [] | [Dim::Known(1)]) {
            return Err(format!("threshold must be a scalar ([] or [1]), not {s:?}"));
        }
    }
    if let (Some(Dim::Known(a)), Some([Dim::Known(b), _])) = (xd.and_then(|d| d.last()), wd) {
        if a != b {
            return Err(format!("x has K = {a} but w has K = {b}"));
        }
    }
    Ok(vec![tensor(DType::F32, with_last(xd, wd.map(|d| &d[1])))])
}

#[cfg(test)]
mod tests {
    use crate::{Attr, BlockFormat, DType, Dim, Graph, OpCall, Shape, TensorType, ValueType};

    fn ty(dtype: DType, dims: &[&str]) -> ValueType {
        let dims = dims
            .iter()
            .map(|d| d.parse().map_or(Dim::Sym(d.to_string()), Dim::Known))
            .collect();
        ValueType::Tensor(TensorType {
            dtype,
            shape: Some(Shape(dims)),
        })
    }

    /// Infer `op(inputs..)` (absent optional inputs as `None`) with `act_quant`.
    fn infer(op: &str, inputs: &[Option<ValueType>], act_quant: i64) -> Result<ValueType, String> {
        let mut g = Graph::new("t");
        let ins: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| t.clone().map(|t| g.add_input(&format!("i{i}"), t)))
            .collect();
        let mut call = OpCall::new(op).with("act_quant", Attr::Int(act_quant));
        call.domain = super::DOMAIN.into();
        let out = g.call("n", call, &ins, 1).map_err(|e| e.to_string())?;
        Ok(g.value_type(out[0]).clone())
    }

    #[test]
    fn matmul_blocks_shapes_and_errors() {
        let q = DType::Block(BlockFormat::Q4_0);
        let x = Some(ty(DType::F32, &["b", "3", "64"]));
        let w = Some(ty(q, &["10", "64"]));
        let bias = Some(ty(DType::F32, &["10"]));
        let want = ty(DType::F32, &["b", "3", "10"]);
        assert_eq!(
            infer("MatMulBlocks", &[x.clone(), w.clone(), None], 0),
            Ok(want.clone())
        );
        assert_eq!(
            infer("MatMulBlocks", &[x.clone(), w.clone(), bias], 0),
            Ok(want)
        );
        let f16 = Some(ty(DType::F16, &["n", "k"]));
        assert_eq!(
            infer("MatMulBlocks", &[x.clone(), f16], 0),
            Ok(ty(DType::F32, &["b", "3", "n"]))
        );
        let bad = |inputs: &[Option<ValueType>], needle: &str| {
            let e = infer("MatMulBlocks", inputs, 0).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        bad(&[x.clone(), Some(ty(q, &["10", "32"]))], "K = 64");
        bad(
            &[Some(ty(DType::F32, &["48"])), Some(ty(q, &["10", "48"]))],
            "multiple",
        );
        bad(&[x.clone(), Some(ty(q, &["64"]))], "rank 1");
        bad(
            &[x.clone(), w.clone(), Some(ty(DType::F32, &["9"]))],
            "bias has 9",
        );
        bad(
            &[x.clone(), w.clone(), Some(ty(DType::F16, &["10"]))],
            "bias must be f32",
        );
        bad(&[Some(ty(DType::F16, &["64"])), w.clone()], "x must be f32");
        bad(&[x, Some(ty(DType::I8, &["10", "64"]))], "block format");
    }

    #[test]
    fn sparse_ops_shapes_and_errors() {
        let x = Some(ty(DType::F32, &["b", "3", "20"]));
        let mask = Some(ty(DType::U8, &["7", "3"]));
        let vf = Some(ty(DType::F32, &["nnz"]));
        let vq = Some(ty(DType::I8, &["nnz"]));
        let rp = Some(ty(DType::I64, &["8"]));
        let s = Some(ty(DType::F32, &["7"]));
        let want = Ok(ty(DType::F32, &["b", "3", "7"]));
        let f32_in = [x.clone(), mask.clone(), vf.clone(), rp.clone()];
        assert_eq!(infer("MatMulSparse", &f32_in, 0), want);
        let i8_in = [x.clone(), mask.clone(), vq.clone(), rp.clone(), s.clone()];
        assert_eq!(infer("MatMulSparse", &i8_in, 0), want);
        let bad = |op: &str, inputs: &[Option<ValueType>], needle: &str| {
            let e = infer(op, inputs, 0).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        bad(
            "MatMulSparse",
            &[x.clone(), mask.clone(), vq, rp.clone()],
            "without",
        );
        bad(
            "MatMulSparse",
            &[x.clone(), mask.clone(), vf.clone(), rp.clone(), s],
            "with one",
        );
        let short = Some(ty(DType::U8, &["7", "2"]));
        bad(
            "MatMulSparse",
            &[x.clone(), short, vf.clone(), rp.clone()],
            "2 bytes",
        );
        let i32p = Some(ty(DType::I32, &["8"]));
        bad(
            "MatMulSparse",
            &[x.clone(), mask.clone(), vf, i32p],
            "row_ptr must be i64",
        );

        let w = Some(ty(DType::F32, &["20", "11"]));
        let t = Some(ty(DType::F32, &[]));
        let want = Ok(ty(DType::F32, &["b", "3", "11"]));
        assert_eq!(
            infer("MatMulActSparse", &[x.clone(), w.clone(), t.clone()], 0),
            want
        );
        let t1 = Some(ty(DType::F32, &["1"]));
        assert!(infer("MatMulActSparse", &[x.clone(), w.clone(), t1], 0).is_ok());
        let t2 = Some(ty(DType::F32, &["2"]));
        bad("MatMulActSparse", &[x.clone(), w.clone(), t2], "scalar");
        let w19 = Some(ty(DType::F32, &["19", "11"]));
        bad("MatMulActSparse", &[x.clone(), w19, t.clone()], "K = 19");
        let wq = Some(ty(DType::I8, &["20", "11"]));
        bad("MatMulActSparse", &[x, wq, t], "w must be f32");
    }

    #[test]
    fn matmul_int8_shapes_and_errors() {
        let x = Some(ty(DType::F32, &["7", "48"]));
        let w = Some(ty(DType::I8, &["5", "48"]));
        let s = Some(ty(DType::F32, &["5"]));
        let want = ty(DType::F32, &["7", "5"]);
        for aq in [0, 1] {
            let got = infer("MatMulInt8", &[x.clone(), w.clone(), s.clone()], aq);
            assert_eq!(got, Ok(want.clone()));
        }
        let with_bias = [x.clone(), w.clone(), s.clone(), s.clone()];
        assert_eq!(infer("MatMulInt8", &with_bias, 0), Ok(want));
        let bad = |inputs: &[Option<ValueType>], aq: i64, needle: &str| {
            let e = infer("MatMulInt8", inputs, aq).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        bad(&[x.clone(), w.clone(), s.clone()], 2, "act_quant");
        bad(&[x.clone(), w.clone()], 0, "missing required input 2");
        bad(
            &[x.clone(), Some(ty(DType::U8, &["5", "48"])), s.clone()],
            0,
            "weight must be i8",
        );
        bad(
            &[x.clone(), w.clone(), Some(ty(DType::F32, &["6"]))],
            0,
            "scale has 6",
        );
        bad(
            &[x.clone(), w.clone(), Some(ty(DType::F32, &["5", "1"]))],
            0,
            "rank 2",
        );
        bad(&[Some(ty(DType::F32, &["7", "47"])), w, s], 0, "K = 47");
    }
}
