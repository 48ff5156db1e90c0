//! Quantization sites: the e-nodes whose weight operand can be quantized, and
//! the weight they read.
//!
//! A site is `Gemm(x, W, b?)` (no transA, alpha = beta = 1), `MatMul(x, W)`
//! with a 2-D `W`, or `Gather(W, ids)` on axis 0 (an embedding table). `W` is a
//! constant (f32 or f16) or `egret::DequantizeBlocks` of a block constant (a
//! GGUF weight): the *source*, named by its constant-table index.

use crate::egraph::{EGraph, ENode, OpKey};
use crate::rules::util::{facts, int_attr, is_absent};
use egg::Id;
use egret_ir::{blocks, DType, Tensor};

/// What a site does with its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// `x · Wᵀ` (the weight is `[n, k]` after orienting).
    MatMul,
    /// Rows of an embedding table.
    Gather,
}

/// One quantizable e-node.
#[derive(Clone, Debug)]
pub struct Site {
    /// Matrix product or table lookup.
    pub kind: SiteKind,
    /// The activation class (`x`), or the index class for a lookup.
    pub x: Id,
    /// The bias class (`Gemm`'s `C`, always `[n]`), if any.
    pub bias: Option<Id>,
    /// Constant-table index of the source weight.
    pub source: usize,
    /// True if the stored weight is `[k, n]` (so it is transposed to `[n, k]`).
    pub transposed: bool,
    /// True if the source is block-quantized (read through `DequantizeBlocks`).
    pub blocks: bool,
    /// Output channels (rows of the oriented weight).
    pub n: usize,
    /// Input channels (columns of the oriented weight).
    pub k: usize,
}

/// The constant-table index of a class's constant leaf.
pub fn const_leaf(eg: &EGraph, id: Id) -> Option<usize> {
    eg[id].nodes.iter().find_map(|n| match n {
        ENode::Const(k) => Some(*k),
        _ => None,
    })
}

/// The source weight a class holds: `(const index, is blocks)`.
fn source_of(eg: &EGraph, w: Id) -> Option<(usize, bool)> {
    if let Some(k) = const_leaf(eg, w) {
        let t = facts(eg, w).value.as_ref()?;
        return matches!(t.dtype(), DType::F32 | DType::F16).then_some((k, false));
    }
    let ch = egret_op_in(eg, w, "DequantizeBlocks")?;
    let k = const_leaf(eg, *ch.first()?)?;
    Some((k, true))
}

/// The children of the first `egret::<op_type>` node in class `id`.
pub fn egret_op_in<'a>(eg: &'a EGraph, id: Id, op_type: &str) -> Option<&'a [Id]> {
    eg[id].nodes.iter().find_map(|n| match n {
        ENode::Op(op, ch) if is_egret(&op.key(), op_type) => Some(ch.as_slice()),
        _ => None,
    })
}

/// True if `key` is the egret-domain op `op_type`.
pub fn is_egret(key: &OpKey, op_type: &str) -> bool {
    key.call.domain == egret_ir::infer::egret_ops::DOMAIN && key.call.op_type == op_type
}

/// The 2-D shape of a class, if known.
fn dims2(eg: &EGraph, id: Id) -> Option<[usize; 2]> {
    match facts(eg, id).known_shape()?.as_slice() {
        &[a, b] => Some([a, b]),
        _ => None,
    }
}

/// The site an e-node `key(ch)` is, if it is one.
pub fn site(eg: &EGraph, key: &OpKey, ch: &[Id]) -> Option<Site> {
    if key.outputs != 1 {
        return None;
    }
    if is_egret(key, "MatMulBlocks") || is_egret(key, "GatherBlocks") {
        return block_site(eg, key, ch);
    }
    if !key.call.domain.is_empty() {
        return None;
    }
    let f32_x = |x: Id| facts(eg, x).dtype() == Some(DType::F32);
    match key.op_type() {
        "Gemm" => {
            let (x, w) = (*ch.first()?, *ch.get(1)?);
            let one = |a: &str| key.call.attrs.float_or(a, 1.0).ok() == Some(1.0);
            if int_attr(key, "transA", 0)? != 0 || !one("alpha") || !one("beta") || !f32_x(x) {
                return None;
            }
            let transposed = int_attr(key, "transB", 0)? == 0;
            let (source, blocks) = source_of(eg, w)?;
            let [r, c] = dims2(eg, w)?;
            let (n, k) = if transposed { (c, r) } else { (r, c) };
            let bias = match ch.get(2) {
                Some(&b) if !is_absent(eg, b) => {
                    (facts(eg, b).known_shape()? == [n] && f32_x(b)).then_some(b)?;
                    Some(b)
                }
                _ => None,
            };
            Some(Site {
                kind: SiteKind::MatMul,
                x,
                bias,
                source,
                transposed,
                blocks,
                n,
                k,
            })
        }
        "MatMul" => {
            let (x, w) = (*ch.first()?, *ch.get(1)?);
            if facts(eg, x).dims()?.len() < 2 || !f32_x(x) {
                return None;
            }
            let (source, blocks) = source_of(eg, w)?;
            let [k, n] = dims2(eg, w)?;
            Some(Site {
                kind: SiteKind::MatMul,
                x,
                bias: None,
                source,
                transposed: true,
                blocks,
                n,
                k,
            })
        }
        "Gather" => {
            let (w, ids) = (*ch.first()?, *ch.get(1)?);
            if int_attr(key, "axis", 0)? != 0 {
                return None;
            }
            let (source, blocks) = source_of(eg, w)?;
            let [n, k] = dims2(eg, w)?;
            Some(Site {
                kind: SiteKind::Gather,
                x: ids,
                bias: None,
                source,
                transposed: false,
                blocks,
                n,
                k,
            })
        }
        _ => None,
    }
}

/// A block weight already computed in place (`egret::MatMulBlocks(x, W, b?)`,
/// `egret::GatherBlocks(W, ids)`): a site whose source is the block constant,
/// so a GGUF model re-quantizes whether or not fusion ran first.
fn block_site(eg: &EGraph, key: &OpKey, ch: &[Id]) -> Option<Site> {
    let gather = is_egret(key, "GatherBlocks");
    let (w, x) = if gather {
        (*ch.first()?, *ch.get(1)?)
    } else {
        (*ch.get(1)?, *ch.first()?)
    };
    let source = const_leaf(eg, w)?;
    let t = facts(eg, w).value.as_ref()?;
    if !matches!(t.dtype(), DType::Block(_)) {
        return None;
    }
    let [n, k] = dims2(eg, w)?;
    let bias = ch.get(2).copied().filter(|&b| !gather && !is_absent(eg, b));
    Some(Site {
        kind: if gather {
            SiteKind::Gather
        } else {
            SiteKind::MatMul
        },
        x,
        bias,
        source,
        transposed: false,
        blocks: true,
        n,
        k,
    })
}

/// Every site of the e-graph, by class.
pub fn sites(eg: &EGraph) -> Vec<(Id, Site)> {
    let mut out = Vec::new();
    for c in eg.classes() {
        for n in &c.nodes {
            if let ENode::Op(op, ch) = n {
                if let Some(s) = site(eg, &op.key(), ch) {
                    out.push((c.id, s));
                }
            }
        }
    }
    out
}

/// The source weight as f32 `[n, k]` (dequantized, transposed as the site needs).
pub fn oriented_f32(t: &Tensor, transposed: bool) -> Option<Tensor> {
    let f = if t.dtype() == DType::F32 {
        t.clone()
    } else {
        blocks::dequantize(t).ok()?
    };
    let &[r, c] = f.shape() else { return None };
    if !transposed {
        return Some(f);
    }
    let v = f.as_slice::<f32>().ok()?;
    let mut out = vec![0f32; r * c];
    for (i, row) in v.chunks_exact(c.max(1)).enumerate() {
        for (j, &x) in row.iter().enumerate() {
            out[j * r + i] = x;
        }
    }
    Tensor::from_vec(vec![c, r], out).ok()
}
