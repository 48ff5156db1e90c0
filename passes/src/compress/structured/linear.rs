//! The matrix products structured pruning edits: reading a constant weight
//! as f32 `[n, k]` (rows = output channels) and writing a smaller one back
//! in the layout the node expects.

use crate::quantize::site::oriented_f32;
use egret_ir::{DType, Graph, NodeId, Op, OutletId, Tensor};

/// `Gemm(x, W, b?)` (no `transA`, `alpha = beta = 1`) or `MatMul(x, W)` with a
/// constant 2-D weight: an f32 or f16 constant, or `egret::DequantizeBlocks`
/// of a block constant (a GGUF weight, dequantized here); or
/// `egret::MatMulBlocks(x, W, b?)`, the fused form of the latter, which
/// [`Linear::write`] turns back into a `Gemm` on the f32 result.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The product's node.
    pub node: NodeId,
    /// True for `Gemm` (which can take a bias input), false for `MatMul`.
    pub gemm: bool,
    /// True if the stored weight is `[k, n]`.
    pub transposed: bool,
    /// The weight as f32 `[n, k]`, row-major.
    pub w: Vec<f32>,
    /// Output channels.
    pub n: usize,
    /// Input channels.
    pub k: usize,
    /// The bias, `[n]` f32, if the product has a constant one.
    pub bias: Option<Vec<f32>>,
}

/// The tensor behind a weight operand, if it is one this pass can rewrite:
/// a constant, or `DequantizeBlocks` of one. Weights read elsewhere too
/// (tied embeddings) are left alone: shrinking them would change the other
/// reader.
fn weight_tensor(g: &Graph, w: OutletId) -> Option<&Tensor> {
    if g.consumers(w).len() != 1 {
        return None;
    }
    let node = g.node(w.node);
    match &node.op {
        Op::Const(t) => Some(t),
        Op::Call(c) if c.op_type == "DequantizeBlocks" => {
            let src = (*node.inputs().first()?)?;
            (g.consumers(src).len() == 1)
                .then(|| g.const_value(src))
                .flatten()
        }
        _ => None,
    }
}

impl Linear {
    /// The product at `id`, if it is one (see the type's docs).
    pub fn read(g: &Graph, id: NodeId) -> Option<Linear> {
        let node = g.node(id);
        let Op::Call(c) = &node.op else { return None };
        if node.outputs.len() != 1 {
            return None;
        }
        let fused = c.domain == egret_ir::infer::egret_ops::DOMAIN && c.op_type == "MatMulBlocks";
        let gemm = match c.op_type.as_str() {
            _ if fused => true,
            "Gemm" if c.domain.is_empty() => true,
            "MatMul" if c.domain.is_empty() => false,
            _ => return None,
        };
        let w_in = (*node.inputs().get(1)?)?;
        let t = weight_tensor(g, w_in)?;
        let x = (*node.inputs().first()?)?;
        let x_rank = g.value_type(x).as_tensor()?.shape.as_ref()?.rank();
        if fused && x_rank != 2 {
            return None;
        }
        let transposed = if fused {
            false
        } else if gemm {
            let one = |a: &str| c.attrs.float_or(a, 1.0).ok() == Some(1.0);
            if c.attrs.int_or("transA", 0).ok()? != 0 || !one("alpha") || !one("beta") {
                return None;
            }
            c.attrs.int_or("transB", 0).ok()? == 0
        } else {
            true
        };
        let oriented = oriented_f32(t, transposed)?;
        let &[n, k] = oriented.shape() else {
            return None;
        };
        let bias = match node.inputs().get(2).copied().flatten() {
            None => None,
            Some(b) => {
                let t = g.const_value(b)?;
                if t.dtype() != DType::F32 || t.shape() != [n] || g.consumers(b).len() != 1 {
                    return None;
                }
                Some(t.as_slice::<f32>().ok()?.to_vec())
            }
        };
        Some(Linear {
            node: id,
            gemm,
            transposed,
            w: oriented.as_slice::<f32>().ok()?.to_vec(),
            n,
            k,
            bias,
        })
    }

    /// Store `w` (`[n, k]` f32) and `bias` as this product's weight and bias,
    /// in the stored layout, under the original weight's name. The old weight
    /// (and the block constant it dequantized) is removed. A `MatMul` given
    /// a bias gains an `Add` after it.
    pub fn write(
        &self,
        g: &mut Graph,
        w: Vec<f32>,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<(), String> {
        let tensor = if self.transposed {
            Tensor::from_vec(vec![k, n], crate::compress::factorize::transpose(&w, n, k))
        } else {
            Tensor::from_vec(vec![n, k], w)
        }
        .map_err(|e| e.to_string())?;
        if !self.transposed {
            // `[n, k]` weights are read by `Gemm(transB = 1)`; this turns a
            // fused `MatMulBlocks` back into one.
            let gemm = egret_ir::OpCall::new("Gemm").with("transB", egret_ir::Attr::Int(1));
            g.node_mut(self.node).op = Op::Call(gemm);
        }
        let name = replace_const(g, self.node, 1, tensor)?;
        let Some(bias) = bias else { return Ok(()) };
        let t = Tensor::from_vec(vec![n], bias).map_err(|e| e.to_string())?;
        let has_bias = g.node(self.node).inputs().get(2).copied().flatten();
        if has_bias.is_some() {
            replace_const(g, self.node, 2, t)?;
            return Ok(());
        }
        let bias_name = format!("{}.bias", name.strip_suffix(".weight").unwrap_or(&name));
        let b = g.add_const(&unique(g, &bias_name), t);
        if self.gemm {
            return g
                .set_input(self.node, 2, Some(b))
                .map_err(|e| e.to_string());
        }
        let y = OutletId::new(self.node, 0);
        let info = g.node(self.node).outputs[0].clone();
        let out = egret_ir::ValueInfo {
            name: unique(g, &format!("{}.biased", info.name)),
            ty: info.ty,
        };
        let add = g
            .add_node(
                "",
                Op::Call(egret_ir::OpCall::new("Add")),
                vec![Some(y), Some(b)],
                vec![out],
            )
            .map_err(|e| e.to_string())?;
        let sum = OutletId::new(add, 0);
        g.replace_uses(y, sum).map_err(|e| e.to_string())?;
        // `replace_uses` also redirected the Add's own input.
        g.set_input(add, 0, Some(y)).map_err(|e| e.to_string())
    }
}

impl Linear {
    /// Keep only output channels `rows` (increasing): their weight rows and
    /// bias entries.
    pub fn keep_rows(&self, g: &mut Graph, rows: &[usize]) -> Result<(), String> {
        let bias = self
            .bias
            .as_ref()
            .map(|b| rows.iter().map(|&c| b[c]).collect());
        let w = select_rows(&self.w, self.k, rows);
        self.write(g, w, rows.len(), self.k, bias)
    }

    /// Each input channel's score (see [`super::score`]): the calibrated
    /// fluctuation when `moments` (mean, mean square) are given, else the
    /// magnitude of this weight's columns and of the `producers`' rows.
    pub fn channel_scores(
        &self,
        moments: Option<&(Vec<f64>, Vec<f64>)>,
        producers: &[&Linear],
    ) -> Vec<f64> {
        match moments {
            Some((mean, ms)) => super::score::fluctuation(&self.w, self.k, mean, ms),
            None => {
                let p: Vec<(&[f32], usize)> =
                    producers.iter().map(|p| (p.w.as_slice(), p.k)).collect();
                super::score::magnitude(&self.w, self.k, &p)
            }
        }
    }
}

/// `name`, or `name` with a numeric suffix if a value already has it.
fn unique(g: &Graph, name: &str) -> String {
    let taken = |n: &str| {
        g.node_ids()
            .any(|id| g.node(id).outputs.iter().any(|o| o.name == n))
    };
    if !taken(name) {
        return name.to_string();
    }
    (1..)
        .map(|i| format!("{name}.{i}"))
        .find(|n| !taken(n))
        .unwrap_or_default()
}

/// Point input `slot` of `node` at a new constant `t`, named after the
/// constant it replaces (the block constant behind a `DequantizeBlocks`),
/// and remove the old producer chain. Returns the name.
pub fn replace_const(
    g: &mut Graph,
    node: NodeId,
    slot: usize,
    t: Tensor,
) -> Result<String, String> {
    let old = g
        .node(node)
        .inputs()
        .get(slot)
        .copied()
        .flatten()
        .ok_or("no input to replace")?;
    let mut chain = vec![old.node];
    if let Some(src) = g.node(old.node).inputs().first().copied().flatten() {
        chain.push(src.node);
    }
    let root = *chain.last().unwrap_or(&old.node);
    let name = g.node(root).outputs[0].name.clone();
    let new = g.add_const(&format!("{name}.structured"), t);
    g.set_input(node, slot, Some(new))
        .map_err(|e| e.to_string())?;
    for id in chain {
        let outs = g.node(id).outputs.len();
        let used = (0..outs).any(|s| !g.consumers(OutletId::new(id, s)).is_empty());
        if !used && !g.outputs.iter().any(|o| o.node == id) {
            g.remove_node(id);
        }
    }
    let fresh = unique(g, &name);
    let n = g.node_mut(new.node);
    n.name = fresh.clone();
    n.outputs[0].name = fresh.clone();
    Ok(fresh)
}

/// Rows `keep` of the `[n, k]` matrix `w`.
pub fn select_rows(w: &[f32], k: usize, keep: &[usize]) -> Vec<f32> {
    keep.iter()
        .flat_map(|&r| &w[r * k..(r + 1) * k])
        .copied()
        .collect()
}

/// Columns `keep` of the `[n, k]` matrix `w`.
pub fn select_cols(w: &[f32], k: usize, keep: &[usize]) -> Vec<f32> {
    w.chunks_exact(k)
        .flat_map(|row| keep.iter().map(move |&c| row[c]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_columns_are_selected() {
        let w: Vec<f32> = (0..12).map(|v| v as f32).collect(); // [3, 4]
        assert_eq!(
            select_rows(&w, 4, &[0, 2]),
            [0., 1., 2., 3., 8., 9., 10., 11.]
        );
        assert_eq!(select_cols(&w, 4, &[1, 3]), [1., 3., 5., 7., 9., 11.]);
    }
}
