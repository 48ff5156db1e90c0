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
use egret_passes::quantize::calibrate::{calibrate_decoder, calibrate_encoder};
use egret_passes::quantize::{
    quantize, Calibration, Objective, QuantizeConfig, QuantizeReport, Scheme,
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
    /// auto (choose per layer within --budget).
    #[arg(long, value_name = "SCHEME")]
    pub quantize: Option<String>,
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
}

fn decoder_data(model: &Model, tokenizer: &str, text: &str, args: &QuantizeArgs) -> Result<Data> {
    let tok = Tokenizer::from_json(tokenizer)?;
    let ids = tok.encode(text, false)?;
    let win = args.calibration_window as usize;
    let n = args.calibration_windows as usize;
    let all = windows(&ids, win, Some(2 * n));
    if all.is_empty() {
        bail!("the calibration text has fewer than 2 tokens");
    }
    let (cal, held): (Vec<&[i64]>, Vec<i64>) = if all.len() > n {
        (all[..n].to_vec(), all[n..].concat())
    } else {
        (all.clone(), all.concat())
    };
    let calibration =
        calibrate_decoder(model, &cal, args.gptq || args.awq).map_err(anyhow::Error::msg)?;
    let score = move |m: &Model, ids: &[i64]| -> Result<f64, String> {
        let d = Decoder::new(m.clone()).map_err(|e| e.to_string())?;
        let r = perplexity(&d, ids, win, None, &mut |_, _| {}).map_err(|e| e.to_string())?;
        Ok(r.perplexity())
    };
    if args.budget.is_none() {
        return Ok(Data {
            calibration,
            meter: None,
        });
    }
    let reference = score(model, &held).map_err(anyhow::Error::msg)?;
    Ok(Data {
        calibration,
        meter: Some(Box::new(move |m| Ok(score(m, &held)? / reference - 1.0))),
    })
}

fn encoder_data(model: &Model, tokenizer: &str, text: &str, args: &QuantizeArgs) -> Result<Data> {
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
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let calibration = calibrate_encoder(model, tokenizer, &refs, args.gptq || args.awq)
        .map_err(anyhow::Error::msg)?;
    if args.budget.is_none() {
        return Ok(Data {
            calibration,
            meter: None,
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
    })
}

/// Quantize `model` in place as the flags say; `None` when `--quantize` is absent.
pub fn run(
    model: &mut Model,
    tokenizer: Option<&str>,
    args: &QuantizeArgs,
    limits: Limits,
    cost: egret_passes::extract::CostModel,
) -> Result<Option<QuantizeReport>> {
    let Some(q) = &args.quantize else {
        if args.budget.is_some() || args.calibration.is_some() || args.gptq || args.awq {
            bail!("--budget, --calibration, --gptq and --awq go with --quantize");
        }
        return Ok(None);
    };
    let schemes = Scheme::parse_list(q).map_err(anyhow::Error::msg)?;
    if q == "auto" && args.budget.is_none() {
        bail!("--quantize auto needs --budget (e.g. --budget 1%)");
    }
    let data = match &args.calibration {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading calibration file {}", path.display()))?;
            let tok = || {
                tokenizer.context(
                    "calibration needs the model's tokenizer (tokenizer.json or GGUF vocabulary)",
                )
            };
            Some(match kind(model) {
                Kind::Decoder => decoder_data(model, tok()?, &text, args)?,
                Kind::Encoder => encoder_data(model, tok()?, &text, args)?,
                Kind::Other => bail!(
                    "--calibration works on language models (input_ids + past_key_values) and \
                     embedding models (input_ids + attention_mask); this model is neither"
                ),
            })
        }
    };
    if args.gptq && data.is_none() {
        bail!(
            "--gptq needs --calibration: it compensates errors along the calibration's activations"
        );
    }
    if args.awq && data.is_none() {
        bail!("--awq needs --calibration: it scales channels by the calibration's activations");
    }
    if args.budget.is_some() && data.is_none() {
        bail!("--budget needs --calibration: the budget is checked by measuring the error on it");
    }
    let (calibration, mut meter) = match data {
        Some(d) => (Some(d.calibration), d.meter),
        None => (None, None),
    };
    let cfg = QuantizeConfig {
        schemes,
        budget: args.budget,
        objective: match args.objective {
            ObjectiveArg::Size => Objective::Size,
            ObjectiveArg::Latency => Objective::Latency,
        },
        calibration,
        gptq: args.gptq,
        awq: args.awq,
        limits,
        cost,
        ..QuantizeConfig::default()
    };
    let measure = meter
        .as_mut()
        .map(|f| f.as_mut() as &mut dyn FnMut(&Model) -> Result<f64, String>);
    let (m, report) = quantize(model, &cfg, measure).map_err(anyhow::Error::msg)?;
    *model = m;
    Ok(Some(report))
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
