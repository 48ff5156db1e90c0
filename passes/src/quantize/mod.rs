//! Quantization as rewrites, with accuracy-budgeted extraction.
//!
//! 1. **Rewrite.** Every quantizable site (`Gemm`/`MatMul` with a weight,
//!    embedding `Gather`; see [`site`]) gains, in its e-class, one alternative
//!    per enabled [`Scheme`]: `egret::MatMulInt8`, `egret::MatMulBlocks` or
//!    `egret::GatherBlocks` on a quantized copy of the weight ([`rules`]). A
//!    GGUF weight also gains its exact fused form, computed on its own blocks.
//!    Norms, softmax and residuals are not sites, so they stay in f32.
//! 2. **Predict.** Each (weight, scheme) pair gets a predicted error: the
//!    relative output noise power `Σ w_k (W − Ŵ)² / Σ w_k W²`, where `w_k` is
//!    the calibration mean of `x_k²` for the activation the weight multiplies
//!    ([`calibrate`]; uniform without calibration). W8A8 adds the measured
//!    per-token activation noise. Errors add over weights.
//! 3. **Select.** With a budget, the cheapest assignment whose predicted total
//!    is within it is found by Lagrangian bisection ([`select`]); without one,
//!    every weight takes the cheapest enabled scheme.
//! 4. **Extract.** Extraction forbids every alternative the assignment did not
//!    choose (and the original weight where it was replaced), so the e-graph's
//!    cost model decides everything else.
//! 5. **Check.** If the caller can measure the real error (`egret eval`'s
//!    meters), the result is measured; over budget, the predicted budget is
//!    tightened and the selection redone; well under, it is loosened. The
//!    smallest result within budget wins.

pub mod awq;
pub mod calibrate;
pub mod gptq;
pub mod predict;
pub mod rules;
pub mod scheme;
pub mod select;
pub mod site;

pub use calibrate::Calibration;
pub use scheme::Scheme;

use crate::egraph::{import, EGraph, ENode};
use crate::extract::CostModel;
use crate::saturate::{run_imported, Limits, Saturated, Stage, Stats};
use egg::Id;
use egret_ir::{DType, Model, Op};
use rules::{fuse_blocks_rule, quantize_rule, Made, Provenance, SourceStats};
use select::Option_;
use site::{const_leaf, sites, SiteKind};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// What to optimise for, subject to the error budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Bytes of weights.
    Size,
    /// Modelled time of one pass over the weights: bytes read at the cost
    /// model's per-byte cost, with integer-dot schemes (W8A8) doing their
    /// arithmetic at half the float cost.
    Latency,
}

/// Settings of one quantization run.
#[derive(Clone, Debug)]
pub struct QuantizeConfig {
    /// Schemes the weights may take.
    pub schemes: Vec<Scheme>,
    /// Error budget as a fraction (0.01 = 1 %) of whatever the measure
    /// reports; `None`: every weight takes the cheapest enabled scheme.
    pub budget: Option<f64>,
    /// What to minimise.
    pub objective: Objective,
    /// Activation statistics (importance weights, W8A8 noise, and second
    /// moments for GPTQ).
    pub calibration: Option<Calibration>,
    /// GPTQ error compensation ([`gptq`]) wherever the calibration has the
    /// weight's second moments.
    pub gptq: bool,
    /// AWQ input-channel scaling ([`awq`]) wherever the calibration has the
    /// activation's statistics. It replaces GPTQ on the weights it scales.
    pub awq: bool,
    /// Saturation limits.
    pub limits: Limits,
    /// Extraction cost model.
    pub cost: CostModel,
    /// Selections tried (each measured) before giving up on the budget.
    pub max_attempts: usize,
}

impl Default for QuantizeConfig {
    fn default() -> QuantizeConfig {
        QuantizeConfig {
            schemes: vec![Scheme::Int8],
            budget: None,
            objective: Objective::Size,
            calibration: None,
            gptq: false,
            awq: false,
            limits: Limits::default(),
            cost: CostModel::default(),
            max_attempts: 4,
        }
    }
}

/// One weight in the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReport {
    /// The weight's name.
    pub weight: String,
    /// `[n, k]` (output channels, input channels).
    pub shape: [usize; 2],
    /// The scheme chosen, or `keep (<dtype>)`.
    pub scheme: String,
    /// Bytes before.
    pub bytes_before: usize,
    /// Bytes after.
    pub bytes_after: usize,
    /// Predicted error (relative output noise power).
    pub predicted_err: f64,
    /// AWQ's exponent for the weight's input, when it was scaled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awq_alpha: Option<f32>,
}

/// One selection tried.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attempt {
    /// The predicted-error budget the selection used.
    pub predicted_budget: f64,
    /// Its predicted total error.
    pub predicted_err: f64,
    /// Bytes of all constants in the resulting model.
    pub model_bytes: usize,
    /// The measured error, if measured.
    pub measured: Option<f64>,
}

/// One model of a Pareto sweep ([`quantize_sweep`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Variant {
    /// `uniform <scheme>` for a reference point (every weight that can take
    /// the scheme does), else `budget <predicted budget>`.
    pub label: String,
    /// True for a uniform reference point.
    pub uniform: bool,
    /// Bytes of all constants.
    pub model_bytes: usize,
    /// Bits per weight over the selectable matrices.
    pub bits_per_weight: f64,
    /// Predicted total error.
    pub predicted_err: f64,
    /// Measured error, if a measure was given.
    pub measured: Option<f64>,
    /// How many weights took each scheme (`keep` for kept ones).
    pub schemes: BTreeMap<String, usize>,
}

/// Receives each variant of a sweep with its model (to write it out), so
/// the sweep never holds more than one model.
pub type Sink<'a> = &'a mut dyn FnMut(&Variant, &Model) -> Result<(), String>;

/// What a quantization run did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantizeReport {
    /// Per weight, in the model's order of first use.
    pub layers: Vec<LayerReport>,
    /// Bytes of all constants before.
    pub model_bytes_before: usize,
    /// Bytes of all constants after.
    pub model_bytes_after: usize,
    /// Bits per weight over the matrices in `layers` (kept ones included).
    pub bits_per_weight: f64,
    /// Predicted total error of the result.
    pub predicted_err: f64,
    /// Measured error of the result, if measured.
    pub measured_err: Option<f64>,
    /// The budget, if any.
    pub budget: Option<f64>,
    /// Whether the result meets the budget (measured if measured, else predicted).
    pub within_budget: bool,
    /// Every selection tried.
    pub attempts: Vec<Attempt>,
    /// Saturation statistics.
    pub saturation: Stats,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Bytes of every constant of a model's main graph.
pub fn model_bytes(m: &Model) -> usize {
    m.graph
        .node_ids()
        .filter_map(|id| match &m.graph.node(id).op {
            Op::Const(t) => Some(t.bytes().len()),
            _ => None,
        })
        .sum()
}

/// A weight and its options: index 0 keeps it, the rest are schemes.
struct Weight {
    source: usize,
    name: String,
    shape: [usize; 2],
    dtype: DType,
    schemes: Vec<Option<Scheme>>,
    options: Vec<Option_>,
    bytes: Vec<usize>,
    /// AWQ's exponent for the weight's input, if AWQ scaled it (reported
    /// only where a scheme replaces the weight).
    awq_alpha: Option<f32>,
}

/// Sources some non-site node reads (they cannot be replaced).
fn pinned_sources(eg: &EGraph) -> HashSet<usize> {
    let mut pinned = HashSet::new();
    for c in eg.classes() {
        for n in &c.nodes {
            let ENode::Op(op, ch) = n else { continue };
            let key = op.key();
            let ok_reader = key.call.domain == egret_ir::infer::egret_ops::DOMAIN
                || site::site(eg, &key, ch).is_some();
            for &child in ch {
                if let Some(k) = const_leaf(eg, child) {
                    if !ok_reader {
                        pinned.insert(k);
                    }
                }
            }
        }
    }
    pinned
}

/// Per-source calibration statistics ([`SourceStats`]: importance, second
/// moments, inverse factors for GPTQ and SparseGPT, AWQ scales when
/// `cfg.awq`, TEAL thresholds for the activation-sparsity schemes) and W8A8
/// noise, by the name of each site's activation. Sources reading the same
/// activation share its matrices and scales, and each is computed once, in
/// parallel over activations.
fn per_source_stats(
    eg: &EGraph,
    names: &HashMap<Id, String>,
    cfg: &QuantizeConfig,
) -> (SourceStats, HashMap<usize, f64>) {
    use rayon::prelude::*;
    let cal = cfg.calibration.as_ref();
    let sparsegpt = cfg.schemes.iter().any(|s| {
        matches!(
            s,
            Scheme::Pruned {
                method: crate::compress::prune::Method::SparseGpt,
                ..
            }
        )
    });
    let factors = cfg.gptq || sparsegpt;
    let act_pcts: Vec<u8> = cfg
        .schemes
        .iter()
        .filter_map(|s| match s {
            Scheme::ActSparse(p) => Some(*p),
            _ => None,
        })
        .collect();
    let mut stats = SourceStats {
        gptq: cfg.gptq,
        ..SourceStats::default()
    };
    let mut act = HashMap::new();
    let Some(cal) = cal else {
        return (stats, act);
    };
    let mut readers: BTreeMap<&str, Vec<site::Site>> = BTreeMap::new();
    for (_, s) in sites(eg) {
        if s.kind != SiteKind::MatMul {
            continue;
        }
        let Some((name, st)) = names
            .get(&eg.find(s.x))
            .and_then(|n| cal.stats.get_key_value(n))
        else {
            continue;
        };
        if st.sum_sq.len() != s.k {
            continue;
        }
        if let Some(v) = st.importance() {
            stats.importance.entry(s.source).or_insert(v);
        }
        if let Some(a) = st.act_nsr() {
            act.entry(s.source).or_insert(a);
        }
        for &p in &act_pcts {
            if let Some(d) = st.act_drop(f64::from(p) / 100.0) {
                stats
                    .act_drop
                    .entry((s.source, p))
                    .or_insert_with(|| Arc::new(d));
            }
        }
        readers.entry(name.as_str()).or_default().push(s);
    }
    if cfg.awq {
        stats.awq = awq_inputs(eg, cal, &readers, &cfg.schemes);
    }
    /// The sources reading one activation, its second moments and GPTQ factor.
    type Shared = (Vec<usize>, Arc<Vec<f64>>, Option<Arc<Vec<f32>>>);
    let matrices: Vec<Shared> = readers
        .into_par_iter()
        .filter_map(|(name, sites)| {
            let sources = sites.iter().map(|s| s.source).collect();
            let st = cal.stats.get(name)?;
            let h = st.hessian()?;
            let u = factors
                .then(|| gptq::inverse_factor(&h, st.sum_sq.len()))
                .flatten()
                .map(Arc::new);
            Some((sources, Arc::new(h), u))
        })
        .collect();
    for (sources, h, u) in matrices {
        for s in sources {
            stats.hessians.entry(s).or_insert_with(|| h.clone());
            if let Some(u) = &u {
                stats.factors.entry(s).or_insert_with(|| u.clone());
            }
        }
    }
    (stats, act)
}

/// AWQ's scaling for each activation whose readers are all matrix products
/// of unpinned source weights (a weight also used as a table, like a tied
/// embedding, keeps one storage for both uses and is not scaled). The scale
/// is searched for the enabled scheme with the fewest bits, where rounding
/// hurts most, in parallel over activations.
fn awq_inputs(
    eg: &EGraph,
    cal: &Calibration,
    readers: &BTreeMap<&str, Vec<site::Site>>,
    schemes: &[Scheme],
) -> HashMap<usize, Arc<rules::AwqInput>> {
    use rayon::prelude::*;
    let all = sites(eg);
    let pinned = pinned_sources(eg);
    let tables: HashSet<usize> = all
        .iter()
        .filter(|(_, s)| s.kind == SiteKind::Gather)
        .map(|(_, s)| s.source)
        .collect();
    let found: Vec<(Vec<usize>, awq::Searched)> = readers
        .par_iter()
        .filter_map(|(name, sites)| {
            let k = sites.first()?.k;
            let scheme = schemes
                .iter()
                .copied()
                .filter(|s| !s.is_structural() && s.fits(k, false))
                .min_by_key(|s| s.bytes(1, k, false))?;
            let st = cal.stats.get(*name)?;
            let imp = st.importance()?;
            let hessian = st.hessian();
            let mut sources = Vec::new();
            let mut weights = Vec::new();
            for s in sites {
                if tables.contains(&s.source) || pinned.contains(&s.source) {
                    return None;
                }
                if !sources.contains(&s.source) {
                    sources.push(s.source);
                    weights.push(site::oriented_f32(
                        &eg.analysis.tensor(s.source)?,
                        s.transposed,
                    )?);
                }
            }
            let found = awq::search(&weights, &imp, hessian.as_deref(), scheme)?;
            (found.alpha > 0.0).then_some((sources, found))
        })
        .collect();
    let mut out = HashMap::new();
    for (sources, found) in found {
        let inv: Vec<f32> = found.scale.iter().map(|&f| 1.0 / f).collect();
        let Some(inverse) = egret_ir::Tensor::from_vec(vec![inv.len()], inv)
            .ok()
            .and_then(|t| {
                eg.analysis
                    .derived(format!("awq-inverse:{sources:?}"), || Some(t))
            })
        else {
            continue;
        };
        let input = Arc::new(rules::AwqInput {
            alpha: found.alpha,
            scale: found.scale,
            inverse,
        });
        for s in sources {
            out.entry(s).or_insert_with(|| input.clone());
        }
    }
    out
}

fn build_weights(
    sat: &Saturated<'_>,
    originals: usize,
    made: &[Made],
    stats: &SourceStats,
    act: &HashMap<usize, f64>,
    cfg: &QuantizeConfig,
) -> Vec<Weight> {
    let eg = &sat.egraph;
    let pinned = pinned_sources(eg);
    let mut uses: BTreeMap<usize, HashSet<(bool, bool)>> = BTreeMap::new();
    for (_, s) in sites(eg).into_iter().filter(|(_, s)| s.source < originals) {
        uses.entry(s.source)
            .or_default()
            .insert((s.kind == SiteKind::Gather, s.transposed));
    }
    let mut out = Vec::new();
    for (&source, need) in &uses {
        let Some(src) = eg.analysis.tensor(source) else {
            continue;
        };
        let name = eg
            .lookup(ENode::Const(source))
            .and_then(|c| sat.names.get(&eg.find(c)).cloned())
            .unwrap_or_else(|| format!("weight{source}"));
        let shape = match src.shape() {
            &[a, b] => [a, b],
            _ => continue,
        };
        let keep_bytes = src.bytes().len();
        let mut w = Weight {
            source,
            name,
            shape,
            dtype: src.dtype(),
            schemes: vec![None],
            options: vec![Option_ {
                cost: objective_cost(cfg, None, keep_bytes, shape[0] * shape[1]),
                err: 0.0,
            }],
            bytes: vec![keep_bytes],
            awq_alpha: stats.awq.get(&source).map(|a| a.alpha),
        };
        if !pinned.contains(&source) {
            for &scheme in &cfg.schemes {
                let mine: Vec<&Made> = made
                    .iter()
                    .filter(|m| m.source == source && m.scheme == scheme)
                    .collect();
                let covered = need
                    .iter()
                    .all(|&(t, tr)| mine.iter().any(|m| m.table == t && m.transposed == tr));
                if !covered {
                    continue;
                }
                let Some((bytes, err)) = predict::alternative_cost(eg, &src, &mine, stats, act)
                else {
                    continue;
                };
                let macs = mine
                    .first()
                    .and_then(|m| rules::alternative_macs(eg, m, shape[0], shape[1]))
                    .unwrap_or(shape[0] * shape[1]);
                w.schemes.push(Some(scheme));
                w.options.push(Option_ {
                    cost: objective_cost(cfg, Some(scheme), bytes, macs),
                    err,
                });
                w.bytes.push(bytes);
            }
        }
        out.push(w);
    }
    out
}

/// The cost of storing a weight in `bytes` under `scheme` (`None`: kept),
/// computing with it in `macs` multiply-adds per input row.
fn objective_cost(cfg: &QuantizeConfig, scheme: Option<Scheme>, bytes: usize, macs: usize) -> f64 {
    match cfg.objective {
        Objective::Size => bytes as f64,
        Objective::Latency => {
            let per_byte = cfg.cost.byte_ns;
            let arith = match scheme {
                Some(Scheme::W8A8) => 0.5,
                _ => 1.0,
            };
            // Every byte read once (activation sparsity reads the rows its
            // kept inputs multiply), 2 flops per multiply-add.
            let read = match scheme {
                Some(Scheme::ActSparse(p)) => f64::from(100 - p.min(100)) / 100.0,
                _ => 1.0,
            };
            read * bytes as f64 * per_byte + arith * 2.0 * macs as f64 * cfg.cost.flop_ns
        }
    }
}

/// Extract the model for `choice` (option index per weight).
fn extract_choice(
    sat: &mut Saturated<'_>,
    weights: &[Weight],
    choice: &[usize],
    made: &[Made],
    template: &Model,
    cost: &CostModel,
) -> Result<(Model, Stats), String> {
    let chosen: HashMap<usize, Option<Scheme>> = weights
        .iter()
        .zip(choice)
        .map(|(w, &i)| (w.source, w.schemes.get(i).copied().flatten()))
        .collect();
    // Constant index → allowed? Sources replaced by a scheme are banned, and
    // so is every alternative not chosen.
    let mut allowed: HashMap<usize, bool> = HashMap::new();
    for (&s, c) in &chosen {
        allowed.insert(s, c.is_none());
    }
    for m in made {
        let ok = chosen.get(&m.source) == Some(&Some(m.scheme));
        // Every tensor: two schemes may share a weight and differ in another
        // tensor (activation sparsity's threshold).
        for &w in &m.tensors {
            let e = allowed.entry(w).or_insert(false);
            *e = *e || ok;
        }
    }
    // Readable names: a quantized weight takes its source's name.
    let eg = &sat.egraph;
    let mut names = Vec::new();
    for w in weights {
        let Some(scheme) = chosen.get(&w.source).copied().flatten() else {
            continue;
        };
        for m in made
            .iter()
            .filter(|m| m.source == w.source && m.scheme == scheme)
        {
            let base = if m.table || !m.transposed {
                w.name.clone()
            } else {
                format!("{}.t", w.name)
            };
            for (i, &t) in m.tensors.iter().enumerate() {
                if let Some(c) = eg.lookup(ENode::Const(t)) {
                    let name = match (i, scheme) {
                        (0, Scheme::LowRank(_)) => format!("{base}.lowrank_p"),
                        (_, Scheme::LowRank(_)) => format!("{base}.lowrank_q"),
                        (0, Scheme::Kronecker(_)) => format!("{base}.kron_a"),
                        (_, Scheme::Kronecker(_)) => format!("{base}.kron_b"),
                        (0, Scheme::Pruned { .. }) => format!("{}.mask", w.name),
                        (1, Scheme::Pruned { .. }) => format!("{}.values", w.name),
                        (2, Scheme::Pruned { .. }) => format!("{}.row_ptr", w.name),
                        (_, Scheme::Pruned { .. }) => format!("{}.scale", w.name),
                        (0, Scheme::ActSparse(_)) => format!("{}.kn", w.name),
                        (_, Scheme::ActSparse(_)) => format!("{base}.act_threshold"),
                        (0, _) => base.clone(),
                        _ => format!("{base}.scale"),
                    };
                    names.push((eg.find(c), name));
                }
            }
        }
    }
    for (c, n) in names {
        sat.names.insert(c, n);
    }
    let eg = &sat.egraph;
    let node_cost = |id: Id, n: &ENode| -> f64 {
        if let ENode::Const(k) = n {
            if allowed.get(k) == Some(&false) {
                return f64::INFINITY;
            }
        }
        if let ENode::Op(op, ch) = n {
            let key = op.key();
            if site::is_egret(&key, "MatMulInt8") {
                let w8a8 = key.call.attrs.int_or("act_quant", 0).ok() == Some(1);
                let want = if w8a8 { Scheme::W8A8 } else { Scheme::Int8 };
                let ok = ch.get(1).and_then(|&c| const_leaf(eg, c)).is_some_and(|k| {
                    made.iter().any(|m| {
                        m.tensors.first() == Some(&k) && chosen.get(&m.source) == Some(&Some(want))
                    })
                });
                if !ok {
                    return f64::INFINITY;
                }
            }
        }
        cost.node_cost(eg, id, n)
    };
    let (graph, stats) = sat
        .extract_by(cost, &node_cost)
        .map_err(|e| format!("extraction: {e}"))?;
    let mut model = template.clone();
    model.graph = graph;
    Ok((model, stats))
}

/// A measure of the real error of a candidate model, as a fraction (e.g.
/// relative perplexity increase, or 1 − mean cosine).
pub type Measure<'a> = &'a mut dyn FnMut(&Model) -> Result<f64, String>;

/// Quantize `model` as `cfg` says; `measure`, if given, checks each candidate.
pub fn quantize(
    model: &Model,
    cfg: &QuantizeConfig,
    measure: Option<Measure<'_>>,
) -> Result<(Model, QuantizeReport), String> {
    let (m, report, _) = quantize_sweep(model, cfg, measure, 0, &mut |_, _| Ok(()))?;
    Ok((m, report))
}

/// [`quantize`], then, from the same saturated e-graph, a sweep along the
/// size–error front: `points` selections at predicted budgets spaced
/// geometrically from the smallest error an alternative has to the error of
/// the cheapest choice, plus one uniform reference per scheme. Each variant
/// is measured (if `measure` is given) and handed to `sink`; duplicates
/// (the same choice twice) are skipped.
pub fn quantize_sweep(
    model: &Model,
    cfg: &QuantizeConfig,
    mut measure: Option<Measure<'_>>,
    points: usize,
    sink: Sink<'_>,
) -> Result<(Model, QuantizeReport, Vec<Variant>), String> {
    let t0 = Instant::now();
    let g = &model.graph;
    let imported = import(g).map_err(|e| e.to_string())?;
    // Constants the model had; everything from here on is derived.
    let originals = imported.egraph.analysis.tensor_count();
    let (stats, act) = per_source_stats(&imported.egraph, &imported.names, cfg);
    let stats = Arc::new(stats);
    let prov = Arc::new(Provenance::default());
    precompute(&imported.egraph, &cfg.schemes, &stats, &prov);
    let mut rules = vec![fuse_blocks_rule()];
    for &s in &cfg.schemes {
        rules.push(quantize_rule(s, originals, stats.clone(), prov.clone()));
    }
    let stage = Stage {
        name: "quantize".into(),
        rules,
    };
    // Every quantized tensor already exists, so the rules only look them up:
    // one iteration adds every alternative, and the limits need not bound
    // quantization time.
    let limits = Limits {
        time: cfg.limits.time.max(std::time::Duration::from_secs(600)),
        ..cfg.limits
    };
    let mut sat =
        run_imported(g, imported, vec![stage], limits, &cfg.cost).map_err(|e| e.to_string())?;
    let made = prov.made();
    let weights = build_weights(&sat, originals, &made, &stats, &act, cfg);
    let opts: Vec<Vec<Option_>> = weights.iter().map(|w| w.options.clone()).collect();
    let before = model_bytes(model);

    let mut attempts = Vec::new();
    let mut best: Option<(Model, Stats, Vec<usize>, Option<f64>)> = None;
    let mut predicted_budget = cfg.budget.unwrap_or(f64::INFINITY);
    for _ in 0..cfg.max_attempts.max(1) {
        let choice = match cfg.budget {
            None => cheapest_scheme(&opts),
            Some(_) => select::within_budget(&opts, predicted_budget),
        };
        let (m, stats) = extract_choice(&mut sat, &weights, &choice, &made, model, &cfg.cost)?;
        let measured = match measure.as_mut() {
            Some(f) if cfg.budget.is_some() => Some(f(&m)?),
            _ => None,
        };
        let pred = select::total_err(&opts, &choice);
        attempts.push(Attempt {
            predicted_budget,
            predicted_err: pred,
            model_bytes: model_bytes(&m),
            measured,
        });
        let (Some(budget), Some(meas)) = (cfg.budget, measured) else {
            best = Some((m, stats, choice, measured));
            break;
        };
        let fits = meas <= budget;
        // Within budget beats over it; then the smaller model, or the
        // smaller error when over.
        let rank = |m: &Model, meas: Option<f64>| {
            let e = meas.unwrap_or(f64::INFINITY);
            if e <= budget {
                (0, model_bytes(m) as f64)
            } else {
                (1, e)
            }
        };
        let better = best
            .as_ref()
            .is_none_or(|(bm, _, _, bmeas)| rank(&m, measured) < rank(bm, *bmeas));
        if better {
            best = Some((m, stats, choice, measured));
        }
        // Rescale the predicted budget by how far the measurement is from the
        // real one (the predicted error is only proportional to it).
        let ratio = if meas > 0.0 { budget / meas } else { 8.0 };
        predicted_budget *= if fits {
            ratio.clamp(1.2, 8.0) * 0.9
        } else {
            (ratio * 0.8).clamp(0.02, 0.8)
        };
        if pred == 0.0 && fits {
            break;
        }
    }
    let (m, stats, choice, measured) = best.ok_or("no selection was tried")?;
    let predicted_err = select::total_err(&opts, &choice);
    let layers: Vec<LayerReport> = weights
        .iter()
        .zip(&choice)
        .map(|(w, &i)| LayerReport {
            weight: w.name.clone(),
            shape: w.shape,
            scheme: match w.schemes.get(i).copied().flatten() {
                Some(s) => s.name(),
                None => format!("keep ({})", w.dtype),
            },
            bytes_before: w.bytes[0],
            bytes_after: w.bytes.get(i).copied().unwrap_or(0),
            predicted_err: w.options.get(i).map_or(0.0, |o| o.err),
            awq_alpha: w.schemes.get(i).copied().flatten().and(w.awq_alpha),
        })
        .collect();
    let within_budget = match (cfg.budget, measured) {
        (None, _) => true,
        (Some(b), Some(x)) => x <= b,
        (Some(b), None) => predicted_err <= b,
    };
    let variants = sweep(
        &mut sat,
        &weights,
        &opts,
        &made,
        model,
        cfg,
        &mut measure,
        points,
        sink,
    )?;
    let report = QuantizeReport {
        bits_per_weight: bits_per_weight(&weights, &choice),
        layers,
        model_bytes_before: before,
        model_bytes_after: model_bytes(&m),
        predicted_err,
        measured_err: measured,
        budget: cfg.budget,
        within_budget,
        attempts,
        saturation: stats,
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((m, report, variants))
}

/// Bits per weight of `choice` over the weights' matrices.
fn bits_per_weight(weights: &[Weight], choice: &[usize]) -> f64 {
    let (bits, elems) = weights
        .iter()
        .zip(choice)
        .fold((0.0, 0.0), |(b, n), (w, &i)| {
            (
                b + 8.0 * w.bytes.get(i).copied().unwrap_or(0) as f64,
                n + (w.shape[0] * w.shape[1]) as f64,
            )
        });
    if elems > 0.0 {
        bits / elems
    } else {
        0.0
    }
}

/// The choices of a sweep: `points` budgets spaced geometrically, then one
/// uniform choice per scheme, with labels. Uniform references always appear;
/// a budgeted mix equal to one of them or to an earlier mix is left out.
fn sweep_choices(
    weights: &[Weight],
    opts: &[Vec<Option_>],
    schemes: &[Scheme],
    points: usize,
) -> Vec<(String, bool, Vec<usize>)> {
    if points == 0 {
        return Vec::new();
    }
    let uniform: Vec<(String, bool, Vec<usize>)> = schemes
        .iter()
        .map(|&s| {
            let choice = weights
                .iter()
                .map(|w| w.schemes.iter().position(|&c| c == Some(s)).unwrap_or(0))
                .collect();
            (format!("uniform {}", s.name()), true, choice)
        })
        .collect();
    let mut mixes: Vec<(String, bool, Vec<usize>)> = Vec::new();
    let top = select::total_err(opts, &cheapest_scheme(opts));
    let floor = opts
        .iter()
        .flatten()
        .map(|o| o.err)
        .filter(|&e| e > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(top);
    if top > 0.0 && floor.is_finite() {
        for i in 0..points {
            let t = if points == 1 {
                1.0
            } else {
                i as f64 / (points - 1) as f64
            };
            let budget = floor * (top / floor).powf(t);
            let choice = select::within_budget(opts, budget);
            if !mixes.iter().chain(&uniform).any(|(_, _, c)| *c == choice) {
                mixes.push((format!("budget {budget:.3e}"), false, choice));
            }
        }
    }
    mixes.extend(uniform);
    mixes
}

/// Extract, measure and hand over every choice of the sweep.
#[allow(clippy::too_many_arguments)]
fn sweep(
    sat: &mut Saturated<'_>,
    weights: &[Weight],
    opts: &[Vec<Option_>],
    made: &[Made],
    template: &Model,
    cfg: &QuantizeConfig,
    measure: &mut Option<Measure<'_>>,
    points: usize,
    sink: Sink<'_>,
) -> Result<Vec<Variant>, String> {
    let mut out = Vec::new();
    for (label, uniform, choice) in sweep_choices(weights, opts, &cfg.schemes, points) {
        let (m, _) = extract_choice(sat, weights, &choice, made, template, &cfg.cost)?;
        let measured = match measure.as_mut() {
            Some(f) => Some(f(&m)?),
            None => None,
        };
        let mut schemes = BTreeMap::new();
        for (w, &i) in weights.iter().zip(&choice) {
            let name = w
                .schemes
                .get(i)
                .copied()
                .flatten()
                .map_or("keep".into(), Scheme::name);
            *schemes.entry(name).or_insert(0) += 1;
        }
        let v = Variant {
            label,
            uniform,
            model_bytes: model_bytes(&m),
            bits_per_weight: bits_per_weight(weights, &choice),
            predicted_err: select::total_err(opts, &choice),
            measured,
            schemes,
        };
        sink(&v, &m)?;
        out.push(v);
    }
    Ok(out)
}

/// Make every site's quantized tensors, in parallel over (site, scheme): the
/// expensive part of the pass, done once before saturation.
fn precompute(eg: &EGraph, schemes: &[Scheme], stats: &SourceStats, prov: &Provenance) {
    use rayon::prelude::*;
    let mut jobs: Vec<(site::Site, Scheme)> = Vec::new();
    let mut seen = HashSet::new();
    for (_, s) in sites(eg) {
        for &scheme in schemes {
            if seen.insert((s.source, s.transposed, s.kind, scheme)) {
                jobs.push((s.clone(), scheme));
            }
        }
    }
    jobs.par_iter().for_each(|(s, scheme)| {
        rules::quantized(eg, s, *scheme, stats, prov);
    });
}

/// Without a budget: every weight takes its cheapest scheme (keeping it only
/// when no scheme applies).
fn cheapest_scheme(opts: &[Vec<Option_>]) -> Vec<usize> {
    opts.iter()
        .map(|o| {
            (1..o.len())
                .min_by(|&a, &b| o[a].cost.total_cmp(&o[b].cost))
                .unwrap_or(0)
        })
        .collect()
}
