//! The quantization rewrites: every site gains one alternative per enabled
//! scheme, and a GGUF weight read through `DequantizeBlocks` gains the exact
//! fused form that computes on its blocks.
//!
//! A quantized tensor is made once per (source, orientation, storage) and
//! cached in the analysis' derived-tensor table, so a weight shared by several
//! sites (a tied embedding's table and LM head) is quantized and stored once. The rules record what they made
//! in a [`Provenance`] table, which the selection step reads.

use super::scheme::Scheme;
use super::site::{oriented_f32, site, Site, SiteKind};
use crate::egraph::{EGraph, OpKey, Rewrite};
use crate::rules::rhs::{FnRule, Rhs};
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
    /// GPTQ's factor of the inverse second moments ([`super::gptq`]), when
    /// error compensation is on.
    pub factors: HashMap<usize, Arc<Vec<f32>>>,
}

fn egret_op(op: &str) -> OpCall {
    OpCall {
        domain: egret_ir::infer::egret_ops::DOMAIN.into(),
        ..OpCall::new(op)
    }
}

/// The quantized tensors of `s` under `scheme`, made on first use.
pub fn quantized(
    eg: &EGraph,
    s: &Site,
    scheme: Scheme,
    stats: &SourceStats,
    prov: &Provenance,
) -> Option<Vec<usize>> {
    let table = s.kind == SiteKind::Gather;
    if !scheme.fits(s.k, table) {
        return None;
    }
    // Calibration statistics belong to the source, whichever use asks first,
    // so a tied embedding's table and LM head get the same tensor (made
    // once, stored once) when their storage agrees.
    let imp = stats.importance.get(&s.source).filter(|v| v.len() == s.k);
    let factor = stats
        .factors
        .get(&s.source)
        .filter(|u| u.len() == s.k * s.k);
    let storage = match (scheme, table) {
        (Scheme::Int8 | Scheme::W8A8, false) => "i8-rows",
        _ => scheme.table_format().name(),
    };
    let key = format!(
        "quantize:{}:{}:{storage}:{}",
        s.source,
        s.transposed,
        factor.is_some()
    );
    let quantize = |f: &egret_ir::Tensor| {
        scheme
            .quantize(
                f,
                imp.map(|v| v.as_slice()),
                table,
                factor.map(|u| u.as_slice()),
            )
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
    prov.record(Made {
        source: s.source,
        scheme,
        table,
        transposed: s.transposed,
        tensors: tensors.clone(),
    });
    Some(tensors)
}

/// The right-hand side computing site `s` from the tensors `t` (constant
/// indices) with the op the scheme names.
fn site_rhs(s: &Site, scheme: Option<Scheme>, t: &[usize]) -> Option<Rhs> {
    let mut b = Rhs::new();
    let x = b.class(s.x);
    let w = b.constant(*t.first()?);
    let bias = s.bias.map(|c| b.class(c));
    match (s.kind, scheme) {
        (SiteKind::Gather, _) => {
            b.op(egret_op("GatherBlocks"), &[w, x]);
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
            let t = quantized(eg, &s, scheme, &stats, &prov)?;
            site_rhs(&s, Some(scheme), &t)
        }),
    )
}

/// The exact rule: a block weight read through `DequantizeBlocks` by a site
/// that needs no transpose is computed on its blocks directly.
pub fn fuse_blocks_rule() -> Rewrite {
    FnRule::rewrite("fuse-dequantize-blocks", SITE_OPS, |eg, _, key, ch| {
        let s = site(eg, key, ch)?;
        (s.blocks && !s.transposed).then_some(())?;
        site_rhs(&s, None, &[s.source])
    })
}
