//! The quantization rewrites: every site gains one alternative per enabled
//! scheme, and a GGUF weight read through `DequantizeBlocks` gains the exact
//! fused form that computes on its blocks.
//!
//! A quantized tensor is made once per (source, orientation, storage) and
//! cached in the analysis' derived-tensor table, so a weight shared by several
//! sites (a tied embedding's table and LM head) is quantized and stored once. The rules record what they made
//! in a [`Provenance`] table, which the selection step reads.

use super::calibrate::ActDrop;
use super::scheme::Scheme;
use super::site::{const_leaf, oriented_f32, site, Site, SiteKind};
use crate::egraph::{EGraph, ENode, OpKey, Rewrite};
use crate::rules::rhs::{FnRule, Rhs};
use crate::rules::util::facts;
use egg::Id;
use egret_ir::{Attr, OpCall};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The op types a site can be.
pub const SITE_OPS: &[&str] = &["Gemm", "MatMul", "Gather", "MatMulBlocks", "GatherBlocks"];

/// One quantized alternative a rule made.
#[derive(Clone, Debug, PartialEq)]
pub struct Made {
    /// The source weight's constant index.
    pub source: usize,
    /// The scheme.
    pub scheme: Scheme,
    /// Whether it serves a table lookup.
    pub table: bool,
    /// Whether the source was transposed.
    pub transposed: bool,
    /// Constant indices of the quantized tensors (weight, then scales).
    pub tensors: Vec<usize>,
    /// With AWQ ([`super::awq`]): the constant (`[k]`) the activation is
    /// multiplied by, the inverse of the scale the weight's columns took.
    pub input_scale: Option<usize>,
}

/// What the rules made, shared with the pass that runs them.
#[derive(Default)]
pub struct Provenance {
    made: Mutex<Vec<Made>>,
}

impl Provenance {
    fn record(&self, m: Made) {
        let mut v = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if !v.contains(&m) {
            v.push(m);
        }
    }

    /// Everything made so far.
    pub fn made(&self) -> Vec<Made> {
        self.made.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What calibration says about the activations each source multiplies, by
/// source constant index.
#[derive(Default)]
pub struct SourceStats {
    /// Importance of each input channel (calibration `E[x²]`), used by the
    /// block quantizers' scale search.
    pub importance: HashMap<usize, Vec<f32>>,
    /// The second-moment matrix `E[xᵀx]` (`[k, k]`), when gathered.
    pub hessians: HashMap<usize, Arc<Vec<f64>>>,
    /// The factor of the inverse second moments ([`super::gptq`]), when GPTQ
    /// or SparseGPT needs it.
    pub factors: HashMap<usize, Arc<Vec<f32>>>,
    /// Whether quantization uses [`SourceStats::factors`] (GPTQ); SparseGPT
    /// uses them regardless.
    pub gptq: bool,
    /// By (source, percentage): the TEAL threshold of the activation the
    /// source multiplies, and what it drops.
    pub act_drop: HashMap<(usize, u8), Arc<ActDrop>>,
    /// AWQ's input-channel scaling ([`super::awq`]), when it is on.
    pub awq: HashMap<usize, Arc<AwqInput>>,
}

/// The AWQ scaling of one activation, shared by every weight reading it.
#[derive(Debug)]
pub struct AwqInput {
    /// The exponent the search chose.
    pub alpha: f32,
    /// Per input channel, the factor the weights' columns are multiplied by.
    pub scale: Vec<f32>,
    /// Constant index of `1 / scale`, what the activation is multiplied by.
    pub inverse: usize,
}

fn egret_op(op: &str) -> OpCall {
    OpCall {
        domain: egret_ir::infer::egret_ops::DOMAIN.into(),
        ..OpCall::new(op)
    }
}

/// The quantized tensors of `s` under `scheme`, made on first use, as the
/// record of what was made.
pub fn quantized(
    eg: &EGraph,
    s: &Site,
    scheme: Scheme,
    stats: &SourceStats,
    prov: &Provenance,
) -> Option<Made> {
    let table = s.kind == SiteKind::Gather;
    if !scheme.fits(s.k, table) {
        return None;
    }
    match scheme {
        Scheme::LowRank(_) | Scheme::Kronecker(_) => return factorized(eg, s, scheme, stats, prov),
        Scheme::Pruned { .. } => return pruned(eg, s, scheme, stats, prov),
        Scheme::ActSparse(p) => return act_sparse(eg, s, p, stats, prov),
        _ => {}
    }
    // Calibration statistics belong to the source, whichever use asks first,
    // so a tied embedding's table and LM head get the same tensor (made
    // once, stored once) when their storage agrees.
    let imp = stats.importance.get(&s.source).filter(|v| v.len() == s.k);
    let awq = stats
        .awq
        .get(&s.source)
        .filter(|a| !table && a.scale.len() == s.k);
    // GPTQ's factor describes the unscaled activation, so AWQ turns it off.
    let factor = stats
        .factors
        .get(&s.source)
        .filter(|u| stats.gptq && awq.is_none() && u.len() == s.k * s.k);
    let imp: Option<Vec<f32>> = match (imp, awq) {
        (Some(v), Some(a)) => Some(super::awq::scaled_importance(v, &a.scale)),
        (v, _) => v.cloned(),
    };
    let storage = match (scheme, table) {
        (Scheme::Int8 | Scheme::W8A8, false) => "i8-rows",
        _ => scheme.table_format().name(),
    };
    let key = format!(
        "quantize:{}:{}:{storage}:{}:{:?}",
        s.source,
        s.transposed,
        factor.is_some(),
        awq.map(|a| a.inverse)
    );
    let quantize = |f: &egret_ir::Tensor| {
        let f = match awq {
            Some(a) => egret_ir::Tensor::from_vec(
                f.shape().to_vec(),
                super::awq::scale_columns(f.as_slice::<f32>().ok()?, &a.scale),
            )
            .ok()?,
            None => f.clone(),
        };
        scheme
            .quantize(&f, imp.as_deref(), table, factor.map(|u| u.as_slice()))
            .ok()
    };
    let mut scales = None;
    let w = eg.analysis.derived(format!("{key}:w"), || {
        let src = eg.analysis.tensor(s.source)?;
        let f = oriented_f32(&src, s.transposed)?;
        let (q, sc) = quantize(&f)?;
        scales = sc;
        Some(q)
    })?;
    let mut tensors = vec![w];
    if matches!(scheme, Scheme::Int8 | Scheme::W8A8) && !table {
        let sc = eg.analysis.derived(format!("{key}:s"), || {
            scales.take().or_else(|| {
                let src = eg.analysis.tensor(s.source)?;
                let f = oriented_f32(&src, s.transposed)?;
                quantize(&f)?.1
            })
        })?;
        tensors.push(sc);
    }
    let made = Made {
        source: s.source,
        scheme,
        table,
        transposed: s.transposed,
        tensors,
        input_scale: awq.map(|a| a.inverse),
    };
    prov.record(made.clone());
    Some(made)
}

/// The factors of `s`'s weight under a factorization scheme
/// ([`crate::compress::factorize`]), made on first use: low rank `[P, Q]`,
/// Kronecker `[Acat, Bcat]`. Low rank is activation-aware where calibration
/// gave the input's mean squares; Kronecker is refit to the layer's outputs
/// where it gave their second moments.
fn factorized(
    eg: &EGraph,
    s: &Site,
    scheme: Scheme,
    stats: &SourceStats,
    prov: &Provenance,
) -> Option<Made> {
    use crate::compress::factorize;
    use egret_ir::Tensor;
    let key = format!("{}:{}:{}", scheme.name(), s.source, s.transposed);
    let (n, k) = (s.n, s.k);
    let mut second: Option<Tensor> = None;
    let first = eg.analysis.derived(format!("{key}:0"), || {
        let src = eg.analysis.tensor(s.source)?;
        let w = oriented_f32(&src, s.transposed)?;
        let w = w.as_slice::<f32>().ok()?;
        let (a, b) = match scheme {
            Scheme::LowRank(p) => {
                let ms = stats.importance.get(&s.source).map(Vec::as_slice);
                let (pm, qm, r) = factorize::low_rank(w, n, k, p, ms)?;
                (
                    Tensor::from_vec(vec![k, r], pm).ok()?,
                    Tensor::from_vec(vec![r, n], qm).ok()?,
                )
            }
            Scheme::Kronecker(p) => {
                let h = stats.hessians.get(&s.source).map(|h| h.as_slice());
                let kr = factorize::kronecker(w, n, k, p, h)?;
                let f = kr.shape;
                let terms = kr.terms();
                let (acat, bcat) = factorize::kronecker_layout(&kr);
                (
                    Tensor::from_vec(vec![f.n1, terms * f.k1], acat).ok()?,
                    Tensor::from_vec(vec![f.k2, terms * f.n2], bcat).ok()?,
                )
            }
            _ => return None,
        };
        second = Some(b);
        Some(a)
    })?;
    let second = eg.analysis.derived(format!("{key}:1"), || second.take())?;
    let made = Made {
        source: s.source,
        scheme,
        table: false,
        transposed: s.transposed,
        tensors: vec![first, second],
        input_scale: None,
    };
    prov.record(made.clone());
    Some(made)
}

/// The pruned form of `s`'s weight ([`crate::compress::prune`]), made on
/// first use: the tensors of its bitmap storage (mask, values, row offsets,
/// and the row scales when int8). Wanda weighs by the calibration mean
/// squares; SparseGPT needs the inverse second moments' factor and is not
/// offered without it.
fn pruned(
    eg: &EGraph,
    s: &Site,
    scheme: Scheme,
    stats: &SourceStats,
    prov: &Provenance,
) -> Option<Made> {
    use crate::compress::prune::{self, Method};
    use egret_ir::sparse::SparseMatrix;
    let Scheme::Pruned {
        method,
        pattern,
        int8,
    } = scheme
    else {
        return None;
    };
    let (n, k) = (s.n, s.k);
    let key = format!("{}:{}:{}", scheme.name(), s.source, s.transposed);
    // The tensors after the first, kept for their own cache entries.
    let mut rest = Vec::new().into_iter();
    let first = eg.analysis.derived(format!("{key}:0"), || {
        let src = eg.analysis.tensor(s.source)?;
        let w = oriented_f32(&src, s.transposed)?;
        let w = w.as_slice::<f32>().ok()?;
        let (values, keep) = match method {
            Method::SparseGpt => {
                let u = stats.factors.get(&s.source).filter(|u| u.len() == k * k)?;
                super::gptq::sparsegpt(w, n, k, u, pattern).ok()?
            }
            _ => {
                let ms = stats.importance.get(&s.source).map(Vec::as_slice);
                let keep = prune::mask(&prune::scores(w, k, method, ms), k, pattern)?;
                (w.to_vec(), keep)
            }
        };
        let mut all = SparseMatrix::encode(&values, n, k, &keep, int8)
            .ok()?
            .tensors()
            .into_iter();
        let first = all.next();
        rest = all;
        first
    })?;
    let mut tensors = vec![first];
    for i in 1..if int8 { 4 } else { 3 } {
        tensors.push(eg.analysis.derived(format!("{key}:{i}"), || rest.next())?);
    }
    let made = Made {
        source: s.source,
        scheme,
        table: false,
        transposed: s.transposed,
        tensors,
        input_scale: None,
    };
    prov.record(made.clone());
    Some(made)
}

/// The TEAL form of `s`'s weight: the f32 weight as `[k, n]` and the scalar
/// threshold of its activation at `pct` % sparsity, made on first use; not
/// offered without the calibration's row samples. At 0 % it is the dense
/// f32 weight alone (the baseline TEAL is measured against).
fn act_sparse(
    eg: &EGraph,
    s: &Site,
    pct: u8,
    stats: &SourceStats,
    prov: &Provenance,
) -> Option<Made> {
    let w = eg
        .analysis
        .derived(format!("kn:{}:{}", s.source, s.transposed), || {
            // The weight as the site reads it, `[n, k]`, transposed back to `[k, n]`.
            let src = eg.analysis.tensor(s.source)?;
            let nk = oriented_f32(&src, s.transposed)?;
            oriented_f32(&nk, true)
        })?;
    let mut tensors = vec![w];
    if pct > 0 {
        let drop = stats.act_drop.get(&(s.source, pct))?;
        tensors.push(eg.analysis.derived(format!("act{pct}:{}", s.source), || {
            egret_ir::Tensor::from_vec(vec![], vec![drop.threshold]).ok()
        })?);
    }
    let made = Made {
        source: s.source,
        scheme: Scheme::ActSparse(pct),
        table: false,
        transposed: s.transposed,
        tensors,
        input_scale: None,
    };
    prov.record(made.clone());
    Some(made)
}

/// The Kronecker geometry `(n1, k1, n2, k2, terms)` of the factors `Acat`
/// (`n1 × R·k1`) and `Bcat` (`k2 × R·n2`) of an `n × k` weight.
pub fn kronecker_geometry(
    acat: &[usize],
    bcat: &[usize],
    n: usize,
    k: usize,
) -> Option<(usize, usize, usize, usize, usize)> {
    let (&[n1, ak], &[k2, bn]) = (acat, bcat) else {
        return None;
    };
    if n1 == 0 || k2 == 0 || !n.is_multiple_of(n1) || !k.is_multiple_of(k2) {
        return None;
    }
    let (n2, k1) = (n / n1, k / k2);
    let terms = ak / k1.max(1);
    (terms > 0 && ak == terms * k1 && bn == terms * n2).then_some((n1, k1, n2, k2, terms))
}

/// Multiply-adds per input row of a structural alternative of an `n × k`
/// weight (`None` for a quantization, which does all `n·k`): low rank
/// `r·(k + n)`, one per stored value; Kronecker `R·(k1·k2·n2 + n1·k1·n2)`,
/// many per stored value; pruning one per kept weight; activation sparsity
/// the kept fraction of `n·k`.
pub fn alternative_macs(eg: &EGraph, m: &Made, n: usize, k: usize) -> Option<usize> {
    let t = |i: usize| eg.analysis.tensor(*m.tensors.get(i)?);
    match m.scheme {
        Scheme::LowRank(_) => Some(t(0)?.numel() + t(1)?.numel()),
        Scheme::Kronecker(_) => {
            let (a, b) = (t(0)?, t(1)?);
            let (n1, k1, n2, k2, terms) = kronecker_geometry(a.shape(), b.shape(), n, k)?;
            Some(terms * (k1 * k2 * n2 + n1 * k1 * n2))
        }
        Scheme::Pruned { .. } => Some(t(1)?.numel()),
        Scheme::ActSparse(p) => Some(n * k * usize::from(100 - p.min(100)) / 100),
        _ => None,
    }
}

/// An i64 shape constant, made once per value.
fn shape_constant(eg: &EGraph, dims: &[i64]) -> Option<usize> {
    eg.analysis.derived(format!("shape:{dims:?}"), || {
        egret_ir::Tensor::from_vec(vec![dims.len()], dims.to_vec()).ok()
    })
}

/// `x·Ŵᵀ` on Kronecker factors (see [`crate::compress::factorize`]): with
/// `L` leading axes of `x`, `x → [L…, k1, k2] · Bcat → [L…, k1, R, n2] →
/// [L…, R, k1, n2] → [L…, R·k1, n2]`, then `Acat ·` it gives `[L…, n1, n2]`,
/// reshaped to `[L…, n]`.
fn kronecker_rhs(eg: &EGraph, s: &Site, b: &mut Rhs, x: Id, t: &[usize]) -> Option<Id> {
    let (a_t, b_t) = (
        eg.analysis.tensor(*t.first()?)?,
        eg.analysis.tensor(*t.get(1)?)?,
    );
    let (n1, k1, n2, k2, terms) = kronecker_geometry(a_t.shape(), b_t.shape(), s.n, s.k)?;
    let lead = facts(eg, s.x).dims()?.len().checked_sub(1)?;
    let dims = |tail: &[usize]| -> Vec<i64> {
        let mut v = vec![0i64; lead];
        v.extend(tail.iter().map(|&d| d as i64));
        v
    };
    let reshape = |b: &mut Rhs, v: Id, tail: &[usize]| -> Option<Id> {
        let shape = b.constant(shape_constant(eg, &dims(tail))?);
        Some(b.op(OpCall::new("Reshape"), &[v, shape]))
    };
    let x = reshape(b, x, &[k1, k2])?;
    let bcat = b.constant(*t.get(1)?);
    let xb = b.op(OpCall::new("MatMul"), &[x, bcat]);
    let split = reshape(b, xb, &[k1, terms, n2])?;
    let mut perm: Vec<i64> = (0..lead as i64).collect();
    let l = lead as i64;
    perm.extend([l + 1, l, l + 2]);
    let swapped = b.op(
        OpCall::new("Transpose").with("perm", Attr::Ints(perm)),
        &[split],
    );
    let stacked = reshape(b, swapped, &[terms * k1, n2])?;
    let acat = b.constant(*t.first()?);
    let y = b.op(OpCall::new("MatMul"), &[acat, stacked]);
    reshape(b, y, &[n1 * n2])
}

/// The norm ops whose scale (and shift) AWQ's `1/s` folds into.
const FOLDABLE_NORMS: &[&str] = &["RMSNormalization", "LayerNormalization"];

/// Builds `x · inverse` in `b`: a norm in `x`'s class with constant `[k]`
/// scale (and shift) is rebuilt with them multiplied by `inverse`, so the
/// scaling costs nothing at run time; otherwise a `Mul`.
fn scaled_input(eg: &EGraph, b: &mut Rhs, x: Id, inverse: usize) -> Option<Id> {
    let inv = eg.analysis.tensor(inverse)?;
    let k = inv.shape().first().copied();
    let fold = |param: usize| -> Option<usize> {
        let t = eg.analysis.tensor(param)?;
        (t.dtype() == egret_ir::DType::F32 && t.shape().first().copied() == k && t.rank() == 1)
            .then_some(())?;
        eg.analysis
            .derived(format!("awq-norm:{param}:{inverse}"), || {
                let v: Vec<f32> = t
                    .as_slice::<f32>()
                    .ok()?
                    .iter()
                    .zip(inv.as_slice::<f32>().ok()?)
                    .map(|(&p, &f)| p * f)
                    .collect();
                egret_ir::Tensor::from_vec(t.shape().to_vec(), v).ok()
            })
    };
    let norm = eg[x].nodes.iter().find_map(|n| {
        let ENode::Op(op, ch) = n else { return None };
        let key = op.key();
        let ok = key.outputs == 1
            && key.call.domain.is_empty()
            && FOLDABLE_NORMS.contains(&key.op_type())
            && (2..=3).contains(&ch.len());
        ok.then_some(())?;
        let params: Option<Vec<usize>> =
            ch[1..].iter().map(|&c| fold(const_leaf(eg, c)?)).collect();
        Some((key.call.clone(), ch[0], params?))
    });
    Some(match norm {
        Some((call, y, params)) => {
            let mut ins = vec![b.class(y)];
            ins.extend(params.into_iter().map(|p| b.constant(p)));
            b.op(call, &ins)
        }
        None => {
            let (x, c) = (b.class(x), b.constant(inverse));
            b.op(OpCall::new("Mul"), &[x, c])
        }
    })
}

/// The right-hand side computing site `s` from the tensors `t` (constant
/// indices) with the op the scheme names, its input first multiplied by the
/// constant `input_scale` if given.
fn site_rhs(
    eg: &EGraph,
    s: &Site,
    scheme: Option<Scheme>,
    t: &[usize],
    input_scale: Option<usize>,
) -> Option<Rhs> {
    let mut b = Rhs::new();
    let x = match input_scale {
        Some(inv) => scaled_input(eg, &mut b, s.x, inv)?,
        None => b.class(s.x),
    };
    let bias = s.bias.map(|c| b.class(c));
    let w = b.constant(*t.first()?);
    match (s.kind, scheme) {
        (SiteKind::Gather, _) => {
            b.op(egret_op("GatherBlocks"), &[w, x]);
        }
        (SiteKind::MatMul, Some(Scheme::LowRank(_) | Scheme::Kronecker(_))) => {
            let y = match scheme {
                Some(Scheme::LowRank(_)) => {
                    let q = b.constant(*t.get(1)?);
                    let xp = b.op(OpCall::new("MatMul"), &[x, w]);
                    b.op(OpCall::new("MatMul"), &[xp, q])
                }
                _ => kronecker_rhs(eg, s, &mut b, x, t)?,
            };
            if let Some(bias) = bias {
                b.op(OpCall::new("Add"), &[y, bias]);
            }
        }
        (SiteKind::MatMul, Some(Scheme::Pruned { .. } | Scheme::ActSparse(_))) => {
            let op = match scheme {
                Some(Scheme::ActSparse(0)) => OpCall::new("MatMul"),
                Some(Scheme::ActSparse(_)) => egret_op("MatMulActSparse"),
                _ => egret_op("MatMulSparse"),
            };
            let mut ins = vec![x, w];
            ins.extend(t[1..].iter().map(|&c| b.constant(c)));
            let y = b.op(op, &ins);
            if let Some(bias) = bias {
                b.op(OpCall::new("Add"), &[y, bias]);
            }
        }
        (SiteKind::MatMul, Some(sc @ (Scheme::Int8 | Scheme::W8A8))) => {
            let scale = b.constant(*t.get(1)?);
            let call =
                egret_op("MatMulInt8").with("act_quant", Attr::Int((sc == Scheme::W8A8) as i64));
            let mut ins = vec![x, w, scale];
            ins.extend(bias);
            b.op(call, &ins);
        }
        (SiteKind::MatMul, _) => {
            let mut ins = vec![x, w];
            ins.extend(bias);
            b.op(egret_op("MatMulBlocks"), &ins);
        }
    }
    Some(b)
}

/// The rule adding the `scheme` alternative at every site whose source is one
/// of the model's own constants (index below `originals`), never at the
/// alternatives the rules made.
pub fn quantize_rule(
    scheme: Scheme,
    originals: usize,
    stats: Arc<SourceStats>,
    prov: Arc<Provenance>,
) -> Rewrite {
    let name = format!("quantize-{}", scheme.name());
    FnRule::rewrite_with(
        &name,
        SITE_OPS,
        Arc::new(move |eg: &EGraph, _class: Id, key: &OpKey, ch: &[Id]| {
            let s = site(eg, key, ch).filter(|s| s.source < originals)?;
            let m = quantized(eg, &s, scheme, &stats, &prov)?;
            site_rhs(eg, &s, Some(scheme), &m.tensors, m.input_scale)
        }),
    )
}

/// The exact rule: a block weight read through `DequantizeBlocks` by a site
/// that needs no transpose is computed on its blocks directly.
pub fn fuse_blocks_rule() -> Rewrite {
    FnRule::rewrite("fuse-dequantize-blocks", SITE_OPS, |eg, _, key, ch| {
        let s = site(eg, key, ch)?;
        (s.blocks && !s.transposed).then_some(())?;
        site_rhs(eg, &s, None, &[s.source], None)
    })
}
