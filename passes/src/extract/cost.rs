//! The cost model: per-op overhead + bytes moved + FLOPs, in nanoseconds.
//!
//! The three constants are calibrated by timing the reference interpreter on
//! tiny, memory-bound and compute-bound graphs ([`calibrate`], run by
//! `egret passes --calibrate`); the defaults were measured that way on the
//! development machine. Symbolic dims count as [`CostModel::sym_dim`]: any
//! positive size ranks the alternatives of one class the same way, since they
//! share their symbols.

use crate::egraph::{EGraph, ENode};
use egg::Id;
use egret_ir::Dim;

/// Cost constants.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CostModel {
    /// Fixed cost of running one op (dispatch, allocation), ns.
    pub op_ns: f64,
    /// Cost per byte read or written, ns.
    pub byte_ns: f64,
    /// Cost per floating-point operation, ns.
    pub flop_ns: f64,
    /// Size assumed for a symbolic dim.
    pub sym_dim: usize,
}

impl Default for CostModel {
    fn default() -> CostModel {
        CostModel {
            op_ns: 1500.0,
            byte_ns: 0.15,
            flop_ns: 0.05,
            sym_dim: 8,
        }
    }
}

fn numel(d: &[Dim], sym: usize) -> f64 {
    d.iter().map(|d| d.known().unwrap_or(sym) as f64).product()
}

impl CostModel {
    /// FLOPs of op node `node` in class `class`: 2 per multiply-add for
    /// contractions, else one per output element (at least one per input element).
    pub fn flops(&self, eg: &EGraph, class: Id, node: &ENode) -> f64 {
        let ENode::Op(op, ch) = node else { return 0.0 };
        let sym = self.sym_dim;
        let out = eg[class].data.numel_guess(sym) as f64;
        let dims = |i: usize| {
            ch.get(i)
                .and_then(|&c| eg[c].data.dims().map(|d| d.to_vec()))
        };
        match op.key().op_type() {
            "MatMul" | "Gemm" | "MatMulInteger" | "MatMulBlocks" | "MatMulInt8"
            | "MatMulSparse" | "MatMulActSparse" => {
                let Some(a) = dims(0) else { return out };
                let k = a.last().and_then(|d| d.known()).unwrap_or(sym) as f64;
                2.0 * out * k
            }
            "Conv" | "ConvTranspose" | "ConvInteger" => {
                let Some(w) = dims(1) else { return out };
                let per_out = numel(w.get(1..).unwrap_or(&[]), sym);
                2.0 * out * per_out
            }
            _ => {
                let inp = ch
                    .iter()
                    .map(|&c| eg[c].data.numel_guess(sym) as f64)
                    .fold(0.0, f64::max);
                out.max(inp)
            }
        }
    }

    /// Cost of one e-node, excluding its children (leaves and projections are free).
    pub fn node_cost(&self, eg: &EGraph, class: Id, node: &ENode) -> f64 {
        let ENode::Op(_, ch) = node else { return 0.0 };
        let sym = self.sym_dim;
        let bytes: usize = ch
            .iter()
            .map(|&c| eg[c].data.bytes_guess(sym))
            .chain(std::iter::once(eg[class].data.bytes_guess(sym)))
            .fold(0usize, usize::saturating_add);
        self.op_ns + self.byte_ns * bytes as f64 + self.flop_ns * self.flops(eg, class, node)
    }
}

/// Time the reference interpreter on three micro-graphs and fit the constants:
/// a chain of tiny `Add`s (per-op overhead), a large `Add` (bytes) and a
/// `MatMul` (FLOPs). Takes about a second.
pub fn calibrate() -> Result<CostModel, String> {
    use egret_ir::{DType, Graph, OpCall, Tensor, TensorType, ValueType};
    use std::time::Instant;
    fn time(g: &Graph, inputs: Vec<egret_ir::Value>, reps: usize) -> Result<f64, String> {
        let it = egret_runtime::Interpreter::new(g).map_err(|e| e.to_string())?;
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            let t = Instant::now();
            it.run(inputs.clone()).map_err(|e| e.to_string())?;
            best = best.min(t.elapsed().as_secs_f64() * 1e9);
        }
        Ok(best)
    }
    let f32t = |d: &[usize]| ValueType::Tensor(TensorType::known(DType::F32, d));
    let val = |d: &[usize]| -> Result<egret_ir::Value, String> {
        let n = d.iter().product();
        Ok(Tensor::from_vec(d.to_vec(), vec![0.5f32; n])
            .map_err(|e| e.to_string())?
            .into())
    };
    let e = |e: egret_ir::IrError| e.to_string();
    // Overhead: 200 chained scalar adds.
    let mut g = Graph::new("ops");
    let mut x = g.add_input("x", f32t(&[1]));
    for i in 0..200 {
        x = g
            .call1(&format!("a{i}"), OpCall::new("Add"), &[x, x])
            .map_err(e)?;
    }
    g.outputs.push(x);
    let op_ns = time(&g, vec![val(&[1])?], 20)? / 200.0;
    // Bytes: one add of 4 Mi floats reads 32 MiB and writes 16 MiB.
    let n = 1 << 22;
    let mut g = Graph::new("bytes");
    let x = g.add_input("x", f32t(&[n]));
    let y = g.call1("a", OpCall::new("Add"), &[x, x]).map_err(e)?;
    g.outputs.push(y);
    let byte_ns = ((time(&g, vec![val(&[n])?], 5)? - op_ns) / (12.0 * n as f64)).max(0.0);
    // FLOPs: a 256³ matmul.
    let mut g = Graph::new("flops");
    let a = g.add_input("a", f32t(&[256, 256]));
    let y = g.call1("m", OpCall::new("MatMul"), &[a, a]).map_err(e)?;
    g.outputs.push(y);
    let bytes = 3.0 * 256.0 * 256.0 * 4.0;
    let t = time(&g, vec![val(&[256, 256])?], 5)? - op_ns - byte_ns * bytes;
    let flop_ns = (t / (2.0 * 256f64.powi(3))).max(0.0);
    Ok(CostModel {
        op_ns,
        byte_ns,
        flop_ns,
        sym_dim: CostModel::default().sym_dim,
    })
}
