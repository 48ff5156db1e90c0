//! The cost model: per-op overhead + bytes moved + FLOPs, in nanoseconds.
//!
//! The three constants are calibrated by timing the reference interpreter on
//! tiny, memory-bound and compute-bound graphs ([`crate::calibrate`], run by
//! `egret passes --calibrate`); the defaults were measured that way on the
//! development machine. Symbolic dims count as [`CostModel::sym_dim`]: any
//! positive size ranks the alternatives of one class the same way, since they
//! share their symbols.

use crate::egraph::{EGraph, ENode};
use egg::Id;
use egret_ir::Dim;

/// Cost constants.
#[derive(Clone, Copy, Debug, PartialEq)]
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
        let dims = |i: usize| ch.get(i).and_then(|&c| eg[c].data.dims().map(|d| d.to_vec()));
        match op.key().op_type() {
            "MatMul" | "Gemm" | "MatMulInteger" => {
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
