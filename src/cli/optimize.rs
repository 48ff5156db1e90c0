//! `egret optimize`: run a pass pipeline (equality saturation by default) and
//! write the optimized model; `--check` compares interpreter outputs.

use super::{load, table};
use anyhow::{anyhow, bail, Context, Result};
use egret_ir::Value;
use egret_passes::check::{self, MaxError};
use egret_passes::extract::CostModel;
use egret_passes::pass::{PassContext, PassReport, Registry, DEFAULT_PIPELINE};
use egret_passes::saturate::Limits;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `egret optimize` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
Without --passes the default pipeline runs: dce, eqsat (every built-in rule set,
staged). `egret passes` lists the passes. An OUT ending in .egret is a container
directory (text IR + safetensors weights + tokenizer) that every egret command
reads; .onnx and .gguf write those formats (see `egret export --help`; .gguf needs
a GGUF input); any other OUT receives the text form alone (large weights appear
as @name references, without their data).

Examples:
  egret optimize model.onnx -o model.egret
  egret optimize model.onnx -o model.egret --passes algebra,fusion --check
  egret optimize model.onnx -o model.txt --check --dim batch=2 --json
  egret optimize ~/.cache/egret/models/minilm -o minilm-int8.egret --quantize int8
  egret optimize model.gguf -o model-q4.egret --quantize q4_0
  egret optimize model.gguf -o model-auto.egret --quantize auto --budget 1% \
      --calibration ~/.cache/egret/texts/devils_dictionary.txt
  egret optimize ~/.cache/egret/models/minilm -o minilm-mix.egret --quantize int8,q4_0 \
      --lowrank 50,25 --kronecker 50 --budget 2% --calibration pairs.tsv
  egret optimize ~/.cache/egret/models/minilm -o minilm-pruned.egret --quantize int8,q4_0 \
      --prune-ffn 0,25 --prune-heads 0,25 --budget 1% --calibration pairs.tsv

With --quantize, weights of MatMul/Gemm/embedding Gather are quantized after the
pass pipeline; norms, softmax and residuals stay f32. auto chooses a scheme per
layer: the smallest model whose error, predicted from calibration statistics and
then measured on the calibration text, is within --budget. --lowrank and
--kronecker add factorized alternatives (f32 factors holding the given
percentages of each weight's parameters) to the same per-layer choice. Lists of
--prune-ffn / --prune-heads shares with --budget make each (FFN, heads) pair a
candidate: the per-layer choice runs on each pruned model, and the smallest
result within the budget wins.")]
pub struct OptimizeArgs {
    /// The model file.
    pub model: PathBuf,
    /// Where to write the optimized model: an `.egret` container, or text form.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Comma-separated pass names (see `egret passes`).
    #[arg(long, value_delimiter = ',')]
    pub passes: Vec<String>,
    /// Run the interpreter before and after on the same inputs and report the maximum error.
    #[arg(long)]
    pub check: bool,
    /// An input for --check: NAME=FILE (.npy); others are random.
    #[arg(long = "input", short, value_name = "NAME=FILE", value_parser = crate::parse_input)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Size of a symbolic dim for random --check inputs: NAME=N (others are 2).
    #[arg(long = "dim", value_name = "NAME=N", value_parser = crate::parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Seed for random --check inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Saturation limit: e-nodes.
    #[arg(long, default_value_t = Limits::default().nodes)]
    pub max_nodes: usize,
    /// Saturation limit: iterations per stage.
    #[arg(long, default_value_t = Limits::default().iterations)]
    pub max_iters: usize,
    /// Saturation limit: seconds per stage.
    #[arg(long, default_value_t = Limits::default().time.as_secs_f64())]
    pub time_limit: f64,
    /// Cost-model constants (JSON from `egret passes --calibrate`).
    #[arg(long, value_name = "FILE")]
    pub cost_model: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Quantization (after the pass pipeline).
    #[command(flatten)]
    pub quant: super::quantize::QuantizeArgs,
    /// Record a KV-cache policy in the model (see `egret eval --help`).
    #[arg(long, value_name = "POLICY", long_help = super::kv::HELP)]
    pub kv_policy: Option<String>,
}

#[derive(Serialize)]
struct Report {
    passes: Vec<PassReport>,
    #[serde(flatten)]
    compressed: super::quantize::Compressed,
    check: Option<CheckReport>,
}

#[derive(Serialize)]
struct CheckReport {
    max_error: MaxError,
    before_ms: f64,
    after_ms: f64,
}

fn inputs_for(g: &egret_ir::Graph, args: &OptimizeArgs) -> Result<Vec<Value>> {
    let dims: HashMap<String, usize> = args.dims.iter().cloned().collect();
    let mut vals = check::random_inputs(g, &dims, args.seed)?;
    let given: HashMap<&str, &Path> = args
        .inputs
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_path()))
        .collect();
    for (i, &o) in g.inputs.iter().enumerate() {
        if let Some(p) = given.get(g.value_name(o)) {
            let t = egret_frontends::npy::read(p)
                .with_context(|| format!("reading {}", p.display()))?;
            vals[i] = Value::Tensor(t);
        }
    }
    for (n, _) in &args.inputs {
        if !g.inputs.iter().any(|&o| g.value_name(o) == n) {
            bail!("`{n}` is not an input of the model");
        }
    }
    Ok(vals)
}

/// Timed runs of each graph for `--check`.
const RUNS: usize = 5;

/// Run the original and the optimized graph on `inputs`, alternating, [`RUNS`]
/// times each (so load on the machine hits both alike); their outputs and
/// best times in ms.
fn timed_pair(
    before: &egret_ir::Graph,
    after: &egret_ir::Graph,
    inputs: &[Value],
) -> Result<[(Vec<Value>, f64); 2]> {
    let its = [
        egret_runtime::Interpreter::new(before).context("the original model")?,
        egret_runtime::Interpreter::new(after).context("the optimized model")?,
    ];
    let mut out = [(Vec::new(), f64::INFINITY), (Vec::new(), f64::INFINITY)];
    for _ in 0..RUNS {
        for ((what, it), (vals, best)) in ["original", "optimized"].iter().zip(&its).zip(&mut out) {
            let t = Instant::now();
            *vals = it
                .run(inputs.to_vec())
                .with_context(|| format!("running the {what} model"))?;
            *best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(out)
}

/// Run `egret optimize`.
pub fn main(args: &OptimizeArgs) -> Result<()> {
    let loaded = load(&args.model)?;
    let mut model = loaded.model;
    let before = model.graph.clone();
    let registry = Registry::builtin();
    let names: Vec<&str> = if args.passes.is_empty() {
        DEFAULT_PIPELINE.to_vec()
    } else {
        args.passes.iter().map(|s| s.trim()).collect()
    };
    let pipeline = registry.pipeline(&names).map_err(|e| anyhow!(e))?;
    let cost = match &args.cost_model {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing cost model {}", p.display()))?,
        None => CostModel::default(),
    };
    if !(args.time_limit.is_finite() && args.time_limit > 0.0) {
        bail!("--time-limit must be a positive number of seconds");
    }
    let ctx = PassContext {
        limits: Limits {
            nodes: args.max_nodes,
            iterations: args.max_iters,
            time: Duration::from_secs_f64(args.time_limit),
        },
        cost,
    };
    let passes = pipeline.run(&mut model, &ctx)?;
    let compressed = super::quantize::run(
        &mut model,
        loaded.tokenizer_json.as_deref(),
        &args.quant,
        ctx.limits,
        ctx.cost,
    )?;
    let check = if args.check {
        let inputs = inputs_for(&before, args)?;
        let [(want, before_ms), (got, after_ms)] = timed_pair(&before, &model.graph, &inputs)?;
        Some(CheckReport {
            max_error: check::max_error(&got, &want)?,
            before_ms,
            after_ms,
        })
    } else {
        None
    };
    super::kv::record(
        &mut model,
        args.kv_policy.as_deref(),
        loaded.tokenizer_json.as_deref(),
        &args.output,
    )?;
    let ext = args
        .output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("egret") => egret_frontends::container::write(
            &args.output,
            &model,
            loaded.tokenizer_json.as_deref(),
        )?,
        Some("onnx") => egret_backends::onnx_export::write(&model, &args.output)
            .with_context(|| format!("writing {}", args.output.display()))?,
        Some("gguf") => {
            let source = model.metadata.get("source").cloned().unwrap_or_default();
            if !source.ends_with(".gguf") {
                bail!("a .gguf output needs a GGUF input (its metadata and tensor list are the template)");
            }
            super::export::write_gguf(&model, Path::new(&source), &args.output)?;
        }
        _ => super::write_atomic(&args.output, egret_ir::text::print_model(&model).as_bytes())?,
    }
    let report = Report {
        passes,
        compressed,
        check,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = report
        .passes
        .iter()
        .map(|p| {
            let s = p.saturation.as_ref();
            vec![
                p.pass.clone(),
                p.nodes_before.to_string(),
                p.nodes_after.to_string(),
                s.map_or("-".into(), |s| s.peak_enodes.to_string()),
                s.map_or("-".into(), |s| {
                    s.stages
                        .iter()
                        .map(|t| t.iterations)
                        .sum::<usize>()
                        .to_string()
                }),
                s.map_or("-".into(), |s| format!("{:.0}", s.cost_before / 1e3)),
                s.map_or("-".into(), |s| format!("{:.0}", s.cost_after / 1e3)),
                format!("{:.3}", p.seconds),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "pass",
                "nodes before",
                "nodes after",
                "peak e-nodes",
                "iterations",
                "cost before (us)",
                "cost after (us)",
                "seconds"
            ],
            &rows
        )
    );
    if let Some(s) = &report.compressed.structured {
        super::quantize::print_structured(s);
    }
    if let Some(q) = &report.compressed.quantize {
        super::quantize::print_report(q);
    }
    if let Some(c) = &report.check {
        println!(
            "  check: max abs error {:.3e}, max rel error {:.3e}; interpreter {:.1} ms before, {:.1} ms after (best of {RUNS}, alternating)",
            c.max_error.abs, c.max_error.rel, c.before_ms, c.after_ms
        );
    }
    println!("  wrote {}", args.output.display());
    Ok(())
}
