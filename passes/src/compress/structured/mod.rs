//! Structured pruning: whole FFN channels and attention heads go, and every
//! tensor that holds them shrinks, so the model is smaller and faster with
//! the ordinary dense kernels (no sparse format, no mask).
//!
//! The pass finds each FFN channel group ([`ffn`]) and each attention's
//! heads ([`heads`]: query heads within each key/value group under
//! grouped-query attention, whole query/key/value heads under multi-head
//! attention without a cache), scores channels by the output power
//! their removal adds to the product that reduces them ([`score`]:
//! calibrated fluctuation, or weight magnitude without calibration; a head
//! scores the sum of its channels), chooses how many each group keeps (for
//! FFNs the same share everywhere or a global ranking of standardised
//! scores; for heads the same share in every layer, and under grouped-query
//! attention the same number per key/value group), lets the reducer
//! make up for the loss ([`refit`], or the mean alone), and rewrites the
//! products, per-channel constants, reshapes, head counts and value types
//! ([`linear`]).
//!
//! Unlike the other families this is a graph pass, not an e-graph
//! alternative: removing a channel changes the shapes of three weights and
//! every value between them at once, so the e-graph's per-weight choice
//! cannot express it. It runs before the quantization selection, which then
//! sees the narrower weights (`egret optimize --prune-ffn 25 --quantize …`);
//! under a budget the CLI makes several shares candidates, one selection run
//! each (`--prune-ffn 0,25 --budget 1%`), and keeps the smallest result
//! within the budget.

pub mod ffn;
pub mod heads;
pub mod linear;
pub mod refit;
pub mod score;

use crate::quantize::Calibration;
use egret_ir::{Model, NodeId};
use std::collections::HashSet;

/// Kept channel counts are multiples of this, so the narrower inputs stay
/// whole quantization blocks (32 for Q8_0/Q4_0, 64 for the int4 groups).
pub const CHANNEL_ALIGN: usize = 64;

/// How the dropped channels are spread over the groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocation {
    /// Every group drops the same share.
    Uniform,
    /// One ranking of standardised scores over all groups
    /// ([`score::global_keep`]).
    Global,
}

/// How the reducer makes up for the channels it loses, given calibration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Least squares on the layer output ([`refit`]; needs the
    /// calibration's second moments), else as `Mean`.
    Refit,
    /// The dropped channels' mean output moves into the bias
    /// ([`score::compensation`]).
    Mean,
    /// Nothing: the kept columns stay as they were (no calibration).
    None,
}

/// Settings of a structured pruning run.
#[derive(Clone, Copy, Debug)]
pub struct StructuredConfig {
    /// Share of FFN channels to drop, in percent (0–99; 0 = none).
    pub ffn_drop_pct: u8,
    /// Share of attention heads to drop, in percent (0–99; 0 = none),
    /// rounded per layer, or per key/value group under grouped-query
    /// attention (at least one head each stays).
    pub heads_drop_pct: u8,
    /// How the share is spread over the layers.
    pub allocation: Allocation,
    /// Kept counts are multiples of this ([`CHANNEL_ALIGN`]).
    pub align: usize,
    /// The most the reducer may do to make up for the loss.
    pub fit: Fit,
}

/// What a group is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// FFN hidden channels.
    Ffn,
    /// Attention heads.
    Heads,
}

/// One group in the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupReport {
    /// FFN channels or query heads.
    pub kind: GroupKind,
    /// The reducer's input (the FFN hidden activation, the attention output).
    pub hidden: String,
    /// Channels (FFN) or heads before.
    pub before: usize,
    /// And after.
    pub after: usize,
    /// Whether the scores came from calibration (fluctuation) or from the
    /// weights (magnitude).
    pub calibrated: bool,
    /// How the reducer made up for the loss.
    pub fit: Fit,
}

/// What a run did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StructuredReport {
    /// Per group.
    pub groups: Vec<GroupReport>,
    /// Parameters of the groups' weights before.
    pub params_before: usize,
    /// And after.
    pub params_after: usize,
    /// Bytes of all the model's constants before (as
    /// [`crate::quantize::model_bytes`] counts them).
    pub model_bytes_before: usize,
    /// And after: the pruned weights are f32, so a block-quantized source
    /// can grow until a quantization scheme is applied on top.
    pub model_bytes_after: usize,
    /// Wall time.
    pub seconds: f64,
}

/// Drop `cfg.heads_drop_pct` % of the query heads and `cfg.ffn_drop_pct` %
/// of the FFN channels of `model`, scored with `calibration` when it has the
/// statistics of the reducers' inputs.
pub fn prune_structured(
    model: &mut Model,
    calibration: Option<&Calibration>,
    cfg: &StructuredConfig,
) -> Result<StructuredReport, String> {
    let start = std::time::Instant::now();
    let mut report = StructuredReport {
        groups: Vec::new(),
        params_before: 0,
        params_after: 0,
        model_bytes_before: crate::quantize::model_bytes(model),
        model_bytes_after: 0,
        seconds: 0.0,
    };
    if cfg.heads_drop_pct > 0 {
        prune_heads(&mut model.graph, calibration, cfg, &mut report)?;
    }
    if cfg.ffn_drop_pct > 0 {
        prune_ffn(&mut model.graph, calibration, cfg, &mut report)?;
    }
    crate::pass::dce(&mut model.graph);
    report.model_bytes_after = crate::quantize::model_bytes(model);
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The per-channel mean and mean square of activation `name`, if the
/// calibration has them at `width` channels.
fn moments_of(
    calibration: Option<&Calibration>,
    name: &str,
    width: usize,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let m = calibration?.stats.get(name)?.moments()?;
    (m.0.len() == width).then_some(m)
}

/// The reducer's second moments, if the calibration has them.
fn hessian_of(calibration: Option<&Calibration>, name: &str) -> Option<Vec<f64>> {
    calibration?.stats.get(name)?.hessian()
}

/// `bias + offset`, where either may be absent.
fn offset_bias(bias: &Option<Vec<f32>>, offset: Option<Vec<f32>>) -> Option<Vec<f32>> {
    match (bias, offset) {
        (b, None) => b.clone(),
        (None, Some(d)) => Some(d),
        (Some(b), Some(d)) => Some(b.iter().zip(&d).map(|(a, b)| a + b).collect()),
    }
}

/// The query-head part of [`prune_structured`].
fn prune_heads(
    g: &mut egret_ir::Graph,
    calibration: Option<&Calibration>,
    cfg: &StructuredConfig,
    report: &mut StructuredReport,
) -> Result<(), String> {
    let groups = heads::groups(g);
    if groups.is_empty() {
        return Err(
            "no attention heads to prune: that needs an Attention between \
                    two matrix products, either grouped-query (q_num_heads > \
                    kv_num_heads) or multi-head without a KV cache"
                .into(),
        );
    }
    let drop = f64::from(cfg.heads_drop_pct.min(99)) / 100.0;
    for grp in &groups {
        let (q, o) = (grp.query(), &grp.output);
        let m = moments_of(calibration, &grp.hidden, o.k);
        let channel_scores = o.channel_scores(m.as_ref(), &[q]);
        let keep = grp.keep(&grp.head_scores(&channel_scores), grp.keep_count(drop));
        let channels = grp.channels(&keep);
        let hessian = hessian_of(calibration, &grp.hidden);
        let (w, offset, fit) = fit_reducer(o, &channels, m.as_ref(), hessian, cfg.fit);
        if keep.len() < grp.heads {
            grp.apply(g, &keep, w, offset_bias(&o.bias, offset))?;
        }
        let per_channel = grp.params_per_channel();
        report.params_before += per_channel * o.k;
        report.params_after += per_channel * channels.len();
        report.groups.push(GroupReport {
            kind: GroupKind::Heads,
            hidden: grp.hidden.clone(),
            before: grp.heads,
            after: keep.len(),
            calibrated: m.is_some(),
            fit,
        });
    }
    Ok(())
}

/// The FFN part of [`prune_structured`].
fn prune_ffn(
    g: &mut egret_ir::Graph,
    calibration: Option<&Calibration>,
    cfg: &StructuredConfig,
    report: &mut StructuredReport,
) -> Result<(), String> {
    let mut claimed: HashSet<NodeId> = HashSet::new();
    let groups: Vec<ffn::FfnGroup> = ffn::groups(g)?
        .into_iter()
        .filter(|grp| {
            let nodes: Vec<NodeId> = std::iter::once(grp.reducer.node)
                .chain(grp.producers.iter().map(|p| p.node))
                .collect();
            let free = nodes.iter().all(|n| !claimed.contains(n));
            if free {
                claimed.extend(nodes);
            }
            free
        })
        .collect();
    if groups.is_empty() {
        return Err(
            "no FFN channel group found (a product whose input is made by other \
                    products through channel-wise ops only)"
                .into(),
        );
    }
    let moments: Vec<Option<(Vec<f64>, Vec<f64>)>> = groups
        .iter()
        .map(|grp| moments_of(calibration, &grp.hidden, grp.width))
        .collect();
    let scores: Vec<Vec<f64>> = groups
        .iter()
        .zip(&moments)
        .map(|(grp, m)| {
            let producers: Vec<&linear::Linear> = grp.producers.iter().collect();
            grp.reducer.channel_scores(m.as_ref(), &producers)
        })
        .collect();
    let drop = f64::from(cfg.ffn_drop_pct.min(99)) / 100.0;
    let keeps: Vec<usize> = match cfg.allocation {
        Allocation::Uniform => groups
            .iter()
            .map(|grp| {
                let want = (grp.width as f64 * (1.0 - drop)).round() as usize;
                score::aligned(want, grp.width, cfg.align)
            })
            .collect(),
        Allocation::Global => score::global_keep(&scores, drop, cfg.align),
    };
    for ((grp, s), (m, &keep)) in groups.iter().zip(&scores).zip(moments.iter().zip(&keeps)) {
        let kept = score::top(s, keep);
        let hessian = hessian_of(calibration, &grp.hidden);
        let (w, offset, fit) = fit_reducer(&grp.reducer, &kept, m.as_ref(), hessian, cfg.fit);
        grp.apply(g, &kept, w, offset_bias(&grp.reducer.bias, offset))?;
        let r = &grp.reducer;
        let per_channel = r.n + grp.producers.iter().map(|p| p.k).sum::<usize>();
        report.params_before += per_channel * grp.width;
        report.params_after += per_channel * keep;
        report.groups.push(GroupReport {
            kind: GroupKind::Ffn,
            hidden: grp.hidden.clone(),
            before: grp.width,
            after: keep,
            calibrated: m.is_some(),
            fit,
        });
    }
    Ok(())
}

/// The reducer's kept columns (`[n, kept]`) and bias offset after dropping
/// all but `kept`, by the best fit `allowed` that the statistics support.
fn fit_reducer(
    r: &linear::Linear,
    kept: &[usize],
    moments: Option<&(Vec<f64>, Vec<f64>)>,
    hessian: Option<Vec<f64>>,
    allowed: Fit,
) -> (Vec<f32>, Option<Vec<f32>>, Fit) {
    let plain = || linear::select_cols(&r.w, r.k, kept);
    let Some((mean, _)) = moments.filter(|_| allowed != Fit::None) else {
        return (plain(), None, Fit::None);
    };
    if allowed == Fit::Refit {
        let solved = hessian
            .filter(|h| h.len() == r.k * r.k)
            .and_then(|h| refit::refit(&r.w, r.k, kept, &h, mean, refit::DAMP));
        if let Some((w, offset)) = solved {
            return (w, Some(offset), Fit::Refit);
        }
    }
    let mut is_kept = vec![false; r.k];
    for &c in kept {
        is_kept[c] = true;
    }
    let dropped: Vec<usize> = (0..r.k).filter(|&c| !is_kept[c]).collect();
    let offset = score::compensation(&r.w, r.k, mean, &dropped);
    (plain(), Some(offset), Fit::Mean)
}
