//! `egret optimize --quantize`: calibration data, the real-error meter that
//! checks a budget, and the per-layer report.
//!
//! The model's kind decides both: a causal LM (the decoder convention) is
//! calibrated on token windows of the text and judged by the relative increase
//! of perplexity on the windows after them; an embedding model is calibrated
//! on sentences (one per line; a tab separates two) and judged by
//! `1 − mean cosine` between its embeddings and the original model's.

use super::table;
use anyhow::{bail, Context, Result};
use egret_ir::Model;
use egret_passes::compress::structured::{
    prune_structured, Allocation, Fit, StructuredConfig, StructuredReport, CHANNEL_ALIGN,
};
use egret_passes::quantize::calibrate::{calibrate_decoder, calibrate_encoder, Gather};
use egret_passes::quantize::{
    quantize, quantize_sweep, Calibration, Objective, QuantizeConfig, QuantizeReport, Scheme,
};
use egret_passes::saturate::Limits;
use egret_runtime::eval::{agreement, Embedder};
use egret_runtime::generate::Decoder;
use egret_runtime::perplexity::{perplexity, windows};
use egret_runtime::tokenizer::Tokenizer;
use std::path::PathBuf;

/// Quantization flags of `egret optimize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Quantize weights: int8 (per-channel), w8a8 (int8 activations too), int4
    /// (= i4a_g64), q8_0, q4_0, q4_1, i4s_g64, i4s_g128, i4a_g64, i4a_g128, or
    /// auto (all of them); several, comma-separated, are chosen among per
    /// layer within --budget.
    #[arg(long, value_name = "SCHEME")]
    pub quantize: Option<String>,
    /// Offer low-rank factorizations of each matrix product's weight,
    /// keeping these percentages of its parameters (`50,25`). With
    /// calibration the SVD is activation-aware. Alone, every weight takes the
    /// smallest; with --budget they compete with the --quantize schemes.
    #[arg(long, value_name = "PCTS")]
    pub lowrank: Option<String>,
    /// Offer Kronecker factorizations (sums of Kronecker products, Van
    /// Loan's nearest-Kronecker-product) keeping these percentages of each
    /// weight's parameters (`50,25`).
    #[arg(long, value_name = "PCTS")]
    pub kronecker: Option<String>,
    /// Offer pruned forms of each matrix product's weight, stored sparse
    /// (a bitmap and the kept values) and multiplied by a kernel that skips
    /// the dropped weights: METHOD then a percentage to drop, or METHOD-2of4,
    /// optionally -int8 for int8 kept values; METHOD is magnitude, wanda
    /// (|W|·‖X_j‖, needs --calibration to differ from magnitude) or sparsegpt
    /// (OBS error compensation, needs --calibration). `wanda50,sparsegpt-2of4`.
    #[arg(long, value_name = "SPECS")]
    pub prune: Option<String>,
    /// Offer TEAL activation sparsity at these percentages (`40,50`): the
    /// input of each matrix product drops its entries below a magnitude
    /// threshold calibrated to drop that share, and the product skips the
    /// weight rows they multiply (weights stay f32). Needs --calibration.
    /// It saves time, not bytes: the size objective never picks it, use
    /// --objective latency, or it alone. `0` is the dense f32 baseline
    /// (the same weights under a plain MatMul).
    #[arg(long, value_name = "PCTS")]
    pub act_sparsity: Option<String>,
    /// Structured pruning: drop this percentage (0–90) of every FFN's hidden
    /// channels (rows of gate/up, columns of down), so the weights shrink
    /// and stay dense. With --calibration, channels are ranked by the output
    /// variance they carry and their mean moves into the down projection's
    /// bias; without, by weight magnitude. Runs before the per-weight choice
    /// (which recalibrates on the pruned model) and may be used alone. With
    /// --budget, a list (`0,10,25`) makes each share a candidate: the
    /// per-weight choice runs on each pruned model and the smallest result
    /// within the budget wins.
    #[arg(long, value_name = "PCTS", value_delimiter = ',',
          value_parser = clap::value_parser!(u8).range(0..=90))]
    pub prune_ffn: Vec<u8>,
    /// Structured pruning of attention heads: drop this percentage (1–90)
    /// of each layer's heads, with the rows of the query projection and the
    /// columns of the output projection they own. Grouped-query attention
    /// loses the same number of query heads from every key/value group
    /// (rounded; one per group stays) and keeps its keys, values and KV
    /// cache; multi-head attention without a cache (BERT-style encoders)
    /// drops the heads' key and value rows too. Scored and refit like
    /// --prune-ffn, and like it a list of candidates with --budget.
    #[arg(long, value_name = "PCTS", value_delimiter = ',',
          value_parser = clap::value_parser!(u8).range(0..=90))]
    pub prune_heads: Vec<u8>,
    /// How --prune-ffn spreads the channels it drops over the layers:
    /// the same share everywhere, or one global ranking of each layer's
    /// standardised scores.
    #[arg(long, value_enum, default_value = "uniform")]
    pub prune_allocation: AllocationArg,
    /// How --prune-ffn's down projections and --prune-heads' output
    /// projections make up for the dropped channels (with --calibration;
    /// without, they do not).
    #[arg(long, value_enum, default_value = "refit")]
    pub prune_fit: FitArg,
    /// Error budget: `1%` or `0.01`. For a language model, the relative
    /// perplexity increase; for an embedding model, 1 − mean cosine to the
    /// original embeddings. Measured on the calibration text.
    #[arg(long, value_name = "PCT", value_parser = parse_budget)]
    pub budget: Option<f64>,
    /// Calibration text: plain text for a language model, one sentence per
    /// line (a tab separates two) for an embedding model.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// What to minimise within the budget.
    #[arg(long, value_enum, default_value = "size")]
    pub objective: ObjectiveArg,
    /// Language models: tokens per calibration / measurement window.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(16..))]
    pub calibration_window: u64,
    /// Language models: windows used to calibrate (the same number after them
    /// measure the error).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub calibration_windows: u64,
    /// GPTQ error compensation: round each weight column in turn and move its
    /// error onto the columns not yet rounded, guided by the calibration's
    /// second moments. Needs --calibration.
    #[arg(long, conflicts_with = "awq")]
    pub gptq: bool,
    /// AWQ activation-aware scaling: scale each weight's input channels by
    /// a power of the calibration's activation RMS before rounding, and the
    /// activation by the inverse (folded into the preceding norm when there
    /// is one). Needs --calibration.
    #[arg(long)]
    pub awq: bool,
    /// Also write a sweep along the size–error front into DIR, from the same
    /// saturation: --pareto-points budgeted mixes and one uniform model per
    /// scheme, each measured on the calibration data (`NN-<label>.egret`),
    /// with `pareto.json` and `pareto.html` (an SVG plot and a table).
    #[arg(long, value_name = "DIR")]
    pub pareto: Option<PathBuf>,
    /// Budgeted mixes in the --pareto sweep.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub pareto_points: u64,
}

/// `--prune-allocation`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum AllocationArg {
    /// Every layer drops the same share.
    Uniform,
    /// Layers whose channels matter unevenly drop more.
    Global,
}

/// `--prune-fit`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FitArg {
    /// Least squares on the layer output: the dropped channels' work moves
    /// onto the kept ones they correlate with, their mean into the bias.
    Refit,
    /// Only their mean output moves into the bias.
    Mean,
}

/// What `--quantize` and the other compression flags did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Compressed {
    /// `--prune-ffn` / `--prune-heads`.
    pub structured: Option<StructuredReport>,
    /// The per-weight choice.
    pub quantize: Option<QuantizeReport>,
    /// With lists of structured shares and `--budget`: every share tried
    /// (the chosen one included).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub structure_candidates: Vec<StructureCandidate>,
}

/// One structured-pruning setting tried under `--budget`, and how the
/// per-weight choice on top of it came out.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StructureCandidate {
    /// FFN channels dropped, percent.
    pub ffn_drop_pct: u8,
    /// Attention heads dropped, percent.
    pub heads_drop_pct: u8,
    /// Bytes of constants of the result.
    pub model_bytes: usize,
    /// Its measured error.
    pub measured_err: Option<f64>,
    /// Whether it meets the budget.
    pub within_budget: bool,
    /// Whether it was chosen.
    pub chosen: bool,
}

/// The structured shares to try, `(FFN %, heads %)`: every pair of the two
/// lists (a missing list is `0`); empty without structured pruning.
fn structures(args: &QuantizeArgs) -> Vec<(u8, u8)> {
    if args.prune_ffn.is_empty() && args.prune_heads.is_empty() {
        return Vec::new();
    }
    let or_none = |l: &[u8]| if l.is_empty() { vec![0] } else { l.to_vec() };
    let heads = or_none(&args.prune_heads);
    or_none(&args.prune_ffn)
        .into_iter()
        .flat_map(|f| heads.iter().map(move |&h| (f, h)))
        .collect()
}

/// `--objective`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ObjectiveArg {
    /// Bytes of weights.
    Size,
    /// Modelled time of reading and using the weights.
    Latency,
}

fn parse_budget(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(p) => (p, 0.01),
        None => (s, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a budget like 1% or 0.01"))?;
    let v = v * scale;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!(
            "the budget must be a non-negative number, got `{s}`"
        ));
    }
    Ok(v)
}

/// What the model is, for calibration and measurement.
enum Kind {
    Decoder,
    Encoder,
    Other,
}

fn kind(m: &Model) -> Kind {
    let g = &m.graph;
    let has = |n: &str| g.inputs.iter().any(|&o| g.value_name(o) == n);
    if has("input_ids") && has("past_key_values.0.key") {
        Kind::Decoder
    } else if has("input_ids") && has("attention_mask") {
        Kind::Encoder
    } else {
        Kind::Other
    }
}

/// Measures a candidate's real error (see the module docs).
type Meter = Box<dyn FnMut(&Model) -> Result<f64, String>>;

/// The calibration data and the meter built from it.
struct Data {
    calibration: Calibration,
    meter: Option<Meter>,
    /// What the meter measures, for reports.
    metric: &'static str,
}

/// Whether the flags need the real error measured.
fn measured(args: &QuantizeArgs) -> bool {
    args.budget.is_some() || args.pareto.is_some()
}

/// A language model's calibration and held-out windows of `text`.
fn decoder_windows(tokenizer: &str, text: &str, args: &QuantizeArgs) -> Result<[Vec<i64>; 2]> {
    let tok = Tokenizer::from_json(tokenizer)?;
    let ids = tok.encode(text, false)?;
    let win = args.calibration_window as usize;
    let n = args.calibration_windows as usize;
    let all = windows(&ids, win, Some(2 * n));
    if all.is_empty() {
        bail!("the calibration text has fewer than 2 tokens");
    }
    Ok(if all.len() > n {
        [all[..n].concat(), all[n..].concat()]
    } else {
        [all.concat(), all.concat()]
    })
}

/// The sentences of an embedding model's calibration file (at most 64).
fn encoder_sentences(text: &str) -> Result<Vec<String>> {
    let sentences: Vec<String> = text
        .lines()
        .flat_map(|l| l.split('\t'))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(64)
        .map(String::from)
        .collect();
    if sentences.is_empty() {
        bail!("the calibration file has no sentences");
    }
    Ok(sentences)
}

/// Calibrate `model` (of kind `kind`) on `text`, gathering `what`.
fn calibrate(
    model: &Model,
    kind: &Kind,
    tokenizer: &str,
    text: &str,
    args: &QuantizeArgs,
    what: Gather,
) -> Result<Calibration> {
    match kind {
        Kind::Decoder => {
            let [cal, _] = decoder_windows(tokenizer, text, args)?;
            let win = args.calibration_window as usize;
            let chunks: Vec<&[i64]> = cal.chunks(win).collect();
            calibrate_decoder(model, &chunks, what).map_err(anyhow::Error::msg)
        }
        Kind::Encoder => {
            let sentences = encoder_sentences(text)?;
            let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
            calibrate_encoder(model, tokenizer, &refs, what).map_err(anyhow::Error::msg)
        }
        Kind::Other => bail!(NOT_CALIBRATABLE),
    }
}

/// The error for `--calibration` on a model of neither kind.
const NOT_CALIBRATABLE: &str = "--calibration works on language models (input_ids + \
    past_key_values) and embedding models (input_ids + attention_mask); this model is neither";

fn decoder_data(model: &Model, tokenizer: &str, text: &str, args: &QuantizeArgs) -> Result<Data> {
    let calibration = calibrate(model, &Kind::Decoder, tokenizer, text, args, gather(args))?;
    let metric = "relative perplexity increase";
    if !measured(args) {
        return Ok(Data {
            calibration,
            meter: None,
            metric,
        });
    }
    let [_, held] = decoder_windows(tokenizer, text, args)?;
    let win = args.calibration_window as usize;
    let score = move |m: &Model, ids: &[i64]| -> Result<f64, String> {
        let d = Decoder::new(m.clone()).map_err(|e| e.to_string())?;
        let r = perplexity(&d, ids, win, None, &mut |_, _| {}).map_err(|e| e.to_string())?;
        Ok(r.perplexity())
    };
    let reference = score(model, &held).map_err(anyhow::Error::msg)?;
    Ok(Data {
        calibration,
        meter: Some(Box::new(move |m| Ok(score(m, &held)? / reference - 1.0))),
        metric,
    })
}

fn encoder_data(model: &Model, tokenizer: &str, text: &str, args: &QuantizeArgs) -> Result<Data> {
    let calibration = calibrate(model, &Kind::Encoder, tokenizer, text, args, gather(args))?;
    let sentences = encoder_sentences(text)?;
    let metric = "1 − mean cosine to the original embeddings";
    if !measured(args) {
        return Ok(Data {
            calibration,
            meter: None,
            metric,
        });
    }
    let tokenizer = tokenizer.to_string();
    let embed = move |m: &Model, s: &[String]| -> Result<Vec<Vec<f32>>, String> {
        let e = Embedder::new(m, &tokenizer).map_err(|e| e.to_string())?;
        let refs: Vec<&str> = s.iter().map(String::as_str).collect();
        e.embed(&refs, &mut |_| {}).map_err(|e| e.to_string())
    };
    let reference = embed(model, &sentences).map_err(anyhow::Error::msg)?;
    Ok(Data {
        calibration,
        meter: Some(Box::new(move |m| {
            let got = embed(m, &sentences)?;
            Ok(1.0 - agreement(&got, &reference).0)
        })),
        metric,
    })
}

/// The schemes the flags enable: `--quantize`'s, then the factorizations;
/// `None` when there are none.
fn schemes(args: &QuantizeArgs) -> Result<Option<Vec<Scheme>>> {
    let mut out = Vec::new();
    if let Some(q) = &args.quantize {
        out.extend(Scheme::parse_list(q).map_err(anyhow::Error::msg)?);
    }
    for (list, min, make, flag) in [
        (
            &args.lowrank,
            1,
            Scheme::LowRank as fn(u8) -> Scheme,
            "--lowrank",
        ),
        (&args.kronecker, 1, Scheme::Kronecker, "--kronecker"),
        (&args.act_sparsity, 0, Scheme::ActSparse, "--act-sparsity"),
    ] {
        if let Some(list) = list {
            out.extend(
                Scheme::parse_percentages(list, min, make)
                    .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?,
            );
        }
    }
    if let Some(list) = &args.prune {
        out.extend(Scheme::parse_pruning(list).map_err(|e| anyhow::anyhow!("--prune: {e}"))?);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// What calibration must gather for the flags: second moments for GPTQ,
/// AWQ's search, SparseGPT and the Kronecker refit; row samples for
/// activation sparsity.
fn gather(args: &QuantizeArgs) -> Gather {
    let structural = !structures(args).is_empty();
    let refit = structural && matches!(args.prune_fit, FitArg::Refit);
    Gather {
        gram: quantize_gram(args) || refit,
        samples: args.act_sparsity.is_some(),
    }
}

/// Whether the per-weight choice needs second moments: GPTQ, AWQ's search,
/// SparseGPT and the Kronecker refit.
fn quantize_gram(args: &QuantizeArgs) -> bool {
    let sparsegpt = args
        .prune
        .as_deref()
        .is_some_and(|p| p.contains("sparsegpt"));
    args.gptq || args.awq || sparsegpt || args.kronecker.is_some()
}

/// Compress `model` in place as the flags say.
pub fn run(
    model: &mut Model,
    tokenizer: Option<&str>,
    args: &QuantizeArgs,
    limits: Limits,
    cost: egret_passes::extract::CostModel,
) -> Result<Compressed> {
    let schemes = schemes(args)?;
    let structures = structures(args);
    if schemes.is_none() && structures.is_empty() {
        if args.budget.is_some()
            || args.calibration.is_some()
            || args.gptq
            || args.awq
            || args.pareto.is_some()
        {
            bail!(
                "--budget, --calibration, --gptq, --awq and --pareto go with --quantize, --prune, \
                 --prune-ffn, --prune-heads, --act-sparsity, --lowrank or --kronecker"
            );
        }
        return Ok(Compressed::default());
    }
    if args.quantize.as_deref() == Some("auto") && args.budget.is_none() {
        bail!("--quantize auto needs --budget (e.g. --budget 1%)");
    }
    if structures.len() > 1 && (args.budget.is_none() || schemes.is_none() || args.pareto.is_some())
    {
        bail!(
            "several --prune-ffn / --prune-heads shares are candidates for --budget: give \
             --budget and a per-weight choice (--quantize, --prune, --lowrank, …), without --pareto"
        );
    }
    let kind = kind(model);
    let text = match &args.calibration {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading calibration file {}", path.display()))?,
        ),
    };
    let tok = || {
        tokenizer
            .context("calibration needs the model's tokenizer (tokenizer.json or GGUF vocabulary)")
    };
    let data = match &text {
        None => None,
        Some(text) => Some(match kind {
            Kind::Decoder => decoder_data(model, tok()?, text, args)?,
            Kind::Encoder => encoder_data(model, tok()?, text, args)?,
            Kind::Other => bail!(NOT_CALIBRATABLE),
        }),
    };
    if schemes.is_some() {
        check_needs(args, data.is_some())?;
    }
    let (calibration, mut meter, metric) = match data {
        Some(d) => (Some(d.calibration), d.meter, d.metric),
        None => (None, None, "predicted error"),
    };
    let mut step = Step {
        schemes: schemes.as_deref(),
        calibration: calibration.as_ref(),
        meter: meter.as_mut(),
        metric,
        text: text.as_deref(),
        tokenizer,
        kind: &kind,
        args,
        limits,
        cost,
    };
    if structures.len() <= 1 {
        return step.compress(model, structures.first().copied());
    }
    // Each structured share is a candidate; the per-weight choice runs on
    // each, and the smallest result within the budget wins (the least error
    // when none is).
    let mut best: Option<(Model, Compressed, (u8, u8))> = None;
    let mut tried = Vec::new();
    for &s in &structures {
        let mut m = model.clone();
        let c = step.compress(&mut m, Some(s))?;
        let q = c
            .quantize
            .as_ref()
            .context("the per-weight choice made no report")?;
        eprintln!(
            "  structured FFN −{}% heads −{}%: {:.2} MB, measured {}{}",
            s.0,
            s.1,
            q.model_bytes_after as f64 / 1e6,
            q.measured_err
                .map_or("-".into(), |e| format!("{:.4}%", 100.0 * e)),
            if q.within_budget {
                ""
            } else {
                " (over budget)"
            }
        );
        tried.push(StructureCandidate {
            ffn_drop_pct: s.0,
            heads_drop_pct: s.1,
            model_bytes: q.model_bytes_after,
            measured_err: q.measured_err,
            within_budget: q.within_budget,
            chosen: false,
        });
        if best
            .as_ref()
            .is_none_or(|(_, b, _)| better(q, b.quantize.as_ref()))
        {
            best = Some((m, c, s));
        }
    }
    let (m, mut c, chosen) = best.context("no structured candidate")?;
    for t in &mut tried {
        t.chosen = (t.ffn_drop_pct, t.heads_drop_pct) == chosen;
    }
    c.structure_candidates = tried;
    *model = m;
    Ok(c)
}

/// Whether result `a` beats `b` under a budget: within it and smaller, or,
/// when neither is within it, of less measured error.
fn better(a: &QuantizeReport, b: Option<&QuantizeReport>) -> bool {
    let Some(b) = b else { return true };
    match (a.within_budget, b.within_budget) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => a.model_bytes_after < b.model_bytes_after,
        (false, false) => {
            a.measured_err.unwrap_or(f64::INFINITY) < b.measured_err.unwrap_or(f64::INFINITY)
        }
    }
}

/// The flags' requirements on calibration, checked before any work.
fn check_needs(args: &QuantizeArgs, calibrated: bool) -> Result<()> {
    if args.gptq && !calibrated {
        bail!(
            "--gptq needs --calibration: it compensates errors along the calibration's activations"
        );
    }
    if args.awq && !calibrated {
        bail!("--awq needs --calibration: it scales channels by the calibration's activations");
    }
    if !calibrated {
        if args
            .act_sparsity
            .as_deref()
            .is_some_and(|a| a.split(',').any(|p| p.trim().trim_end_matches('%') != "0"))
        {
            bail!(
                "--act-sparsity needs --calibration: its thresholds are set on the calibration's activations"
            );
        }
        if args
            .prune
            .as_deref()
            .is_some_and(|p| p.contains("sparsegpt"))
        {
            bail!("--prune sparsegpt needs --calibration: it compensates along the calibration's activations");
        }
    }
    if args.budget.is_some() && !calibrated {
        bail!("--budget needs --calibration: the budget is checked by measuring the error on it");
    }
    Ok(())
}

/// Everything one structured share and the per-weight choice on top of it
/// need.
struct Step<'a> {
    schemes: Option<&'a [Scheme]>,
    /// The calibration of the unpruned model.
    calibration: Option<&'a Calibration>,
    meter: Option<&'a mut Meter>,
    metric: &'static str,
    text: Option<&'a str>,
    tokenizer: Option<&'a str>,
    kind: &'a Kind,
    args: &'a QuantizeArgs,
    limits: Limits,
    cost: egret_passes::extract::CostModel,
}

impl Step<'_> {
    /// Prune `model` to `structure` (`(FFN %, heads %)`, if any), then run
    /// the per-weight choice on it, recalibrated.
    fn compress(&mut self, model: &mut Model, structure: Option<(u8, u8)>) -> Result<Compressed> {
        let args = self.args;
        let mut recalibrated = None;
        let structured = match structure {
            None | Some((0, 0)) => None,
            Some((ffn, heads)) => {
                let cfg = StructuredConfig {
                    ffn_drop_pct: ffn,
                    heads_drop_pct: heads,
                    allocation: match args.prune_allocation {
                        AllocationArg::Uniform => Allocation::Uniform,
                        AllocationArg::Global => Allocation::Global,
                    },
                    align: CHANNEL_ALIGN,
                    fit: match args.prune_fit {
                        FitArg::Refit => Fit::Refit,
                        FitArg::Mean => Fit::Mean,
                    },
                };
                let report = prune_structured(model, self.calibration, &cfg)
                    .map_err(|e| anyhow::anyhow!("structured pruning: {e}"))?;
                // The statistics downstream of the pruned channels changed;
                // the refit's second moments are no longer needed.
                if let (Some(text), Some(_)) = (self.text, self.schemes) {
                    let what = Gather {
                        gram: quantize_gram(args),
                        ..gather(args)
                    };
                    let tok = self
                        .tokenizer
                        .context("calibration needs the model's tokenizer")?;
                    recalibrated = Some(calibrate(model, self.kind, tok, text, args, what)?);
                }
                Some(report)
            }
        };
        let Some(schemes) = self.schemes else {
            return Ok(Compressed {
                structured,
                ..Compressed::default()
            });
        };
        let cfg = QuantizeConfig {
            schemes: schemes.to_vec(),
            budget: args.budget,
            objective: match args.objective {
                ObjectiveArg::Size => Objective::Size,
                ObjectiveArg::Latency => Objective::Latency,
            },
            calibration: recalibrated.or_else(|| self.calibration.cloned()),
            gptq: args.gptq,
            awq: args.awq,
            limits: self.limits,
            cost: self.cost,
            ..QuantizeConfig::default()
        };
        let measure = self
            .meter
            .as_deref_mut()
            .map(|f| f.as_mut() as &mut dyn FnMut(&Model) -> Result<f64, String>);
        let (m, report) = match &args.pareto {
            None => quantize(model, &cfg, measure).map_err(anyhow::Error::msg)?,
            Some(dir) => pareto(model, &cfg, measure, args, dir, self.tokenizer, self.metric)?,
        };
        *model = m;
        Ok(Compressed {
            structured,
            quantize: Some(report),
            ..Compressed::default()
        })
    }
}

/// The run with a `--pareto` sweep into `dir`.
fn pareto(
    model: &Model,
    cfg: &QuantizeConfig,
    measure: Option<egret_passes::quantize::Measure<'_>>,
    args: &QuantizeArgs,
    dir: &std::path::Path,
    tokenizer: Option<&str>,
    metric: &str,
) -> Result<(Model, QuantizeReport)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0usize;
    let mut sink = |v: &egret_passes::quantize::Variant, m: &Model| -> Result<(), String> {
        let path = dir.join(super::pareto::variant_file(written, v));
        egret_frontends::container::write(&path, m, tokenizer)
            .map_err(|e| format!("writing {}: {e:#}", path.display()))?;
        eprintln!(
            "  pareto {:>2}: {:<22} {:>8.2} MB  {}",
            written,
            v.label,
            v.model_bytes as f64 / 1e6,
            v.measured
                .map_or("-".into(), |e| format!("{:.4}%", 100.0 * e))
        );
        written += 1;
        Ok(())
    };
    let points = args.pareto_points as usize;
    let (m, report, variants) =
        quantize_sweep(model, cfg, measure, points, &mut sink).map_err(anyhow::Error::msg)?;
    super::pareto::write_report(dir, &variants, metric)?;
    eprintln!(
        "  pareto: {} variants, pareto.json and pareto.html in {}",
        variants.len(),
        dir.display()
    );
    Ok((m, report))
}

/// Print what `--prune-ffn` / `--prune-heads` did.
pub fn print_structured(r: &StructuredReport) {
    let rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|g| {
            vec![
                format!("{:?}", g.kind).to_lowercase(),
                g.hidden.clone(),
                g.before.to_string(),
                g.after.to_string(),
                if g.calibrated {
                    "fluctuation"
                } else {
                    "magnitude"
                }
                .into(),
                format!("{:?}", g.fit).to_lowercase(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["group", "reducer input", "before", "after", "score", "fit"],
            &rows
        )
    );
    println!(
        "  structured pruning: {} groups, {:.2}M -> {:.2}M parameters; {:.2} MB -> {:.2} MB of constants ({:.1} s)",
        r.groups.len(),
        r.params_before as f64 / 1e6,
        r.params_after as f64 / 1e6,
        r.model_bytes_before as f64 / 1e6,
        r.model_bytes_after as f64 / 1e6,
        r.seconds
    );
}

/// Print the per-layer table and the summary.
pub fn print_report(r: &QuantizeReport) {
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .map(|l| {
            vec![
                l.weight.clone(),
                format!("{}x{}", l.shape[0], l.shape[1]),
                match l.awq_alpha {
                    Some(a) => format!("{} (awq α {a:.1})", l.scheme),
                    None => l.scheme.clone(),
                },
                format!("{:.1}", l.bytes_before as f64 / 1024.0),
                format!("{:.1}", l.bytes_after as f64 / 1024.0),
                format!("{:.2e}", l.predicted_err),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "weight",
                "shape",
                "scheme",
                "KiB before",
                "KiB after",
                "predicted error"
            ],
            &rows
        )
    );
    let mb = |b: usize| b as f64 / 1e6;
    println!(
        "  quantize: {:.2} MB -> {:.2} MB of constants, {:.3} bits per weight; predicted error {:.3e}{}{} ({:.1} s)",
        mb(r.model_bytes_before),
        mb(r.model_bytes_after),
        r.bits_per_weight,
        r.predicted_err,
        r.measured_err
            .map_or(String::new(), |m| format!(", measured {:.3}%", 100.0 * m)),
        r.budget.map_or(String::new(), |b| format!(
            " against a budget of {:.3}%",
            100.0 * b
        )),
        r.seconds
    );
    for (i, a) in r.attempts.iter().enumerate() {
        println!(
            "    attempt {}: predicted budget {:.3e} -> predicted {:.3e}, {:.2} MB{}",
            i + 1,
            a.predicted_budget,
            a.predicted_err,
            mb(a.model_bytes),
            a.measured
                .map_or(String::new(), |m| format!(", measured {:.3}%", 100.0 * m))
        );
    }
    if !r.within_budget {
        println!("  warning: no selection tried met the budget; this is the closest one");
    }
}
