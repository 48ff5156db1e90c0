//! `egret bench`: time a model's runs (latency percentiles and throughput),
//! optionally against onnxruntime on the same inputs, or probe the machine's
//! memory bandwidth.
//!
//! The onnxruntime side lives in [`ort`]; the percentile and run-count rules
//! both sides follow are here ([`Protocol`], [`Latency`]).

mod ort;

use super::backend::{executor, Backend};
use super::run::gather_inputs;
use super::{load_model, table};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use egret_ir::Value;
use egret_runtime::kernels::bandwidth::read_bandwidth;
use egret_runtime::Executor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The runtimes `--compare` can measure against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// onnxruntime from PyPI, run by the python that `scripts/setup-python.sh` sets up.
    Onnxruntime,
}

/// What `egret bench` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
Inputs not given with --input get deterministic pseudo-random data (--seed,
--dim). After --warmup untimed runs, the model runs --runs times, or by default
until about 2 s have passed (at least 10 runs, at most 200). Latencies are in
milliseconds; runs/s is 1000 / mean.

--compare onnxruntime times onnxruntime in the same invocation on the same
input values, with the same threads (intra-op N, inter-op 1, sequential) and the
same protocol, and prints egret/onnxruntime of the medians (below 1: egret is
faster) and the largest absolute difference between the two runtimes' outputs.
A model that is not .onnx is first exported to ONNX. Python is $EGRET_PYTHON,
else ${EGRET_CACHE:-~/.cache/egret}/venv/bin/python (scripts/setup-python.sh
makes it), else python3.

--bandwidth measures how fast the machine reads memory: a 512 MiB buffer summed
5 times with one thread and with --threads threads (best and median pass).

Examples:
  egret bench model.onnx
  egret bench model.egret --input input_ids=ids.npy --threads 1 --json
  egret bench model.onnx --dim batch=8 --runs 50 --compare onnxruntime
  egret bench --bandwidth")]
pub struct BenchArgs {
    /// The model: .onnx, .gguf, .safetensors (or its folder) or .egret.
    #[arg(required_unless_present = "bandwidth")]
    pub model: Option<PathBuf>,
    /// Which executor runs the model.
    #[arg(long, value_enum, default_value_t)]
    pub backend: Backend,
    /// Threads for egret's kernels (and onnxruntime's intra-op pool) [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// A graph input: NAME=FILE (.npy or .pb). Inputs not given are random.
    #[arg(long = "input", short, value_name = "NAME=FILE", value_parser = crate::parse_input)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Size of a symbolic dim of the random inputs: NAME=N (others are 1).
    #[arg(long = "dim", value_name = "NAME=N", value_parser = crate::parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Seed for the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Timed runs [default: as many as fit in about 2 s, 10 to 200].
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,
    /// Untimed runs before the timed ones (egret always makes at least one: the
    /// JIT compiles in its first run, reported as `first_run_ms`).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub warmup: usize,
    /// Also time another runtime on the same model and inputs, and compare.
    #[arg(long, value_enum, value_name = "RUNTIME")]
    pub compare: Option<Peer>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Measure memory read bandwidth instead of a model.
    #[arg(long, conflicts_with_all = ["model", "inputs", "dims", "runs", "compare"])]
    pub bandwidth: bool,
    /// Buffer size of the --bandwidth probe, in MiB.
    #[arg(
        long,
        hide = true,
        value_name = "MIB",
        default_value_t = 512,
        requires = "bandwidth"
    )]
    pub bandwidth_mib: usize,
}

/// How many runs to time: a fixed count, or adaptive until [`Protocol::BUDGET`].
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    /// Untimed runs first.
    pub warmup: usize,
    /// A fixed count of timed runs; `None` is adaptive.
    pub runs: Option<usize>,
}

impl Protocol {
    /// Adaptive runs stop once this much time has passed ...
    pub const BUDGET: Duration = Duration::from_secs(2);
    /// ... and at least this many runs were timed ...
    pub const MIN_RUNS: usize = 10;
    /// ... or when this many were.
    pub const MAX_RUNS: usize = 200;

    /// Whether `done` timed runs taking `elapsed` in all are enough.
    fn finished(&self, done: usize, elapsed: Duration) -> bool {
        match self.runs {
            Some(n) => done >= n,
            None => done >= Self::MAX_RUNS || (done >= Self::MIN_RUNS && elapsed >= Self::BUDGET),
        }
    }
}

/// Latency statistics of a list of timed runs, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    /// How many runs were timed.
    pub runs: usize,
    /// Fastest run.
    pub min_ms: f64,
    /// Median run.
    pub median_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// Mean run.
    pub mean_ms: f64,
    /// Throughput: runs per second (1000 / mean).
    pub runs_per_s: f64,
}

impl Latency {
    /// Statistics of `times_ms` (at least one time).
    pub fn of(times_ms: &[f64]) -> Result<Latency> {
        if times_ms.is_empty() {
            bail!("no runs were timed");
        }
        let mut t = times_ms.to_vec();
        t.sort_by(f64::total_cmp);
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        Ok(Latency {
            runs: t.len(),
            min_ms: t[0],
            median_ms: percentile(&t, 50.0),
            p90_ms: percentile(&t, 90.0),
            p99_ms: percentile(&t, 99.0),
            max_ms: t[t.len() - 1],
            mean_ms: mean,
            runs_per_s: 1e3 / mean.max(1e-9),
        })
    }

    /// One table row: `name`, then the runs and every statistic.
    fn row(&self, name: &str) -> Vec<String> {
        let mut r = vec![name.to_string(), self.runs.to_string()];
        r.extend(
            [
                self.min_ms,
                self.median_ms,
                self.p90_ms,
                self.p99_ms,
                self.max_ms,
                self.mean_ms,
            ]
            .map(|v| format!("{v:.3}")),
        );
        r.push(format!("{:.1}", self.runs_per_s));
        r
    }
}

/// The `p`-th percentile (0..=100) of ascending `sorted` (not empty), linearly
/// interpolated between the two nearest ranks (numpy's default).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// One graph input as the report shows it.
#[derive(Serialize)]
struct InputInfo {
    name: String,
    dtype: String,
    shape: Vec<usize>,
}

/// The `--compare` section of the report.
#[derive(Serialize)]
struct Comparison {
    runtime: &'static str,
    version: String,
    #[serde(flatten)]
    latency: Latency,
    /// egret's median over the peer's.
    ratio: f64,
    /// max |egret - peer| over every output element.
    max_abs_diff: f64,
}

/// The whole report of a model bench.
#[derive(Serialize)]
struct Report {
    model: PathBuf,
    backend: String,
    threads: usize,
    warmup: usize,
    load_ms: f64,
    prepare_ms: f64,
    /// The first run, warm-up included: for the JIT it traces and compiles
    /// the variant for these input shapes.
    first_run_ms: f64,
    inputs: Vec<InputInfo>,
    #[serde(flatten)]
    latency: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare: Option<Comparison>,
}

/// A progress bar over `len` runs on stderr, or a hidden one.
fn progress(len: usize, show: bool) -> ProgressBar {
    if !(show && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:12} {bar:40} {pos}/{len} [{elapsed}]") {
        bar.set_style(style);
    }
    bar
}

/// What [`time_runs`] measured.
struct Timings {
    /// The timed latencies, ms.
    times: Vec<f64>,
    /// The latency of the very first run, ms.
    first_ms: f64,
    /// The outputs of the last run.
    outputs: Vec<Value>,
}

/// Run `exec` on `inputs` by `protocol`: one first run (the JIT compiles
/// there), the remaining warm-up runs, then the timed runs.
fn time_runs(
    exec: &dyn Executor,
    inputs: &[Value],
    protocol: Protocol,
    bar: &ProgressBar,
) -> Result<Timings> {
    let run = |x: Vec<Value>| exec.execute(x).context("running the model");
    bar.set_message("warm-up");
    bar.set_length(protocol.warmup.max(1) as u64);
    let t = Instant::now();
    run(inputs.to_vec())?;
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    bar.inc(1);
    for _ in 1..protocol.warmup {
        run(inputs.to_vec())?;
        bar.inc(1);
    }
    bar.set_message("timed runs");
    bar.set_position(0);
    bar.set_length(protocol.runs.unwrap_or(Protocol::MAX_RUNS) as u64);
    let (mut times, mut outputs) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while !protocol.finished(times.len(), start.elapsed()) {
        let x = inputs.to_vec();
        let t = Instant::now();
        let out = run(x)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        outputs = out;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Timings {
        times,
        first_ms,
        outputs,
    })
}

/// The thread count: `--threads`, else one per core.
fn threads(args: &BenchArgs) -> Result<usize> {
    match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// Run `egret bench`.
pub fn main(args: &BenchArgs) -> Result<()> {
    let threads = threads(args)?;
    match &args.model {
        Some(model) if !args.bandwidth => bench_model(args, model, threads),
        _ => bandwidth(args, threads),
    }
}

fn bench_model(args: &BenchArgs, path: &std::path::Path, threads: usize) -> Result<()> {
    if args.runs == Some(0) {
        bail!("--runs must be at least 1");
    }
    let protocol = Protocol {
        warmup: args.warmup,
        runs: args.runs,
    };
    let t0 = Instant::now();
    let model = load_model(path)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let g = &model.graph;
    let inputs = gather_inputs(g, &args.inputs, Some(args.seed), &args.dims)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .with_context(|| format!("cannot start {threads} threads"))?;
    let t1 = Instant::now();
    // Constant subexpressions (a weight behind its DequantizeLinear) are
    // computed once, as onnxruntime does when it opens a session; the peer
    // still gets the model as stored.
    let mut folded = model.clone();
    egret_runtime::fold::fold_constants(&mut folded.graph)
        .context("folding the model's constants")?;
    let exec = executor(&folded, args.backend)?;
    let prepare_ms = t1.elapsed().as_secs_f64() * 1e3;
    let bar = progress(0, !args.json);
    let Timings {
        times,
        first_ms,
        outputs,
    } = pool.install(|| time_runs(&*exec, &inputs, protocol, &bar))?;
    let latency = Latency::of(&times)?;
    let compare = match args.compare {
        None => None,
        Some(Peer::Onnxruntime) => {
            let peer = ort::run(path, &model, &inputs, threads, protocol, !args.json)?;
            let max_abs_diff = egret_passes::check::max_error(&outputs, &peer.outputs)
                .context("comparing egret's outputs with onnxruntime's")?
                .abs;
            let peer_latency = Latency::of(&peer.times_ms)?;
            Some(Comparison {
                runtime: "onnxruntime",
                version: peer.version,
                ratio: latency.median_ms / peer_latency.median_ms.max(1e-9),
                latency: peer_latency,
                max_abs_diff,
            })
        }
    };
    let report = Report {
        model: path.to_path_buf(),
        backend: args
            .backend
            .to_possible_value()
            .map_or_else(|| format!("{:?}", args.backend), |v| v.get_name().into()),
        threads,
        warmup: args.warmup,
        load_ms,
        prepare_ms,
        first_run_ms: first_ms,
        inputs: g
            .inputs
            .iter()
            .zip(&inputs)
            .map(|(&o, v)| InputInfo {
                name: g.value_name(o).to_string(),
                dtype: v.as_tensor().map_or("-".into(), |t| t.dtype().to_string()),
                shape: v.as_tensor().map_or(vec![], |t| t.shape().to_vec()),
            })
            .collect(),
        latency,
        compare,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("model    {}", r.model.display());
    let plural = if r.threads == 1 { "" } else { "s" };
    println!("backend  {}, {} thread{plural}", r.backend, r.threads);
    for i in &r.inputs {
        println!("input    {} {} {:?}", i.name, i.dtype, i.shape);
    }
    println!(
        "load {:.1} ms, prepare {:.1} ms, first run {:.1} ms, {} warm-up runs\n",
        r.load_ms, r.prepare_ms, r.first_run_ms, r.warmup
    );
    let mut rows = vec![r.latency.row("egret")];
    if let Some(c) = &r.compare {
        rows.push(c.latency.row(&format!("onnxruntime {}", c.version)));
    }
    let header = [
        "latency ms",
        "runs",
        "min",
        "median",
        "p90",
        "p99",
        "max",
        "mean",
        "runs/s",
    ];
    print!("{}", table(&header, &rows));
    if let Some(c) = &r.compare {
        println!(
            "\negret / onnxruntime (median): {:.3}x ({})",
            c.ratio,
            if c.ratio < 1.0 {
                "egret faster"
            } else {
                "onnxruntime faster"
            }
        );
        println!(
            "max |egret - onnxruntime| over the outputs: {:.3e}",
            c.max_abs_diff
        );
    }
}

/// Passes of the bandwidth probe.
const BANDWIDTH_PASSES: usize = 5;

fn bandwidth(args: &BenchArgs, threads: usize) -> Result<()> {
    let bytes = args
        .bandwidth_mib
        .checked_mul(1 << 20)
        .filter(|&b| b > 0)
        .with_context(|| {
            format!(
                "--bandwidth-mib {} is not a usable size",
                args.bandwidth_mib
            )
        })?;
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    let results: Vec<_> = counts
        .into_iter()
        .map(|t| read_bandwidth(bytes, t, BANDWIDTH_PASSES))
        .collect();
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|b| {
                serde_json::json!({
                    "threads": b.threads,
                    "best_gbps": b.best_gbps,
                    "median_gbps": b.median_gbps,
                })
            })
            .collect();
        let out = serde_json::json!({
            "bytes": bytes,
            "passes": BANDWIDTH_PASSES,
            "read": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "memory read bandwidth: {} summed {BANDWIDTH_PASSES} times",
        super::human_bytes(bytes)
    );
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|b| {
            vec![
                b.threads.to_string(),
                format!("{:.2}", b.best_gbps),
                format!("{:.2}", b.median_gbps),
            ]
        })
        .collect();
    print!("{}", table(&["threads", "best GB/s", "median GB/s"], &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.0), 1.0);
        assert_eq!(percentile(&xs, 100.0), 10.0);
        assert!((percentile(&xs, 50.0) - 5.5).abs() < 1e-12);
        assert!((percentile(&xs, 90.0) - 9.1).abs() < 1e-12);
        assert!((percentile(&xs, 99.0) - 9.91).abs() < 1e-12);
        assert_eq!(percentile(&[4.0], 90.0), 4.0);
    }

    #[test]
    fn latency_statistics() {
        let l = Latency::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((l.runs, l.min_ms, l.max_ms), (4, 1.0, 4.0));
        assert_eq!((l.median_ms, l.mean_ms), (2.5, 2.5));
        assert!((l.runs_per_s - 400.0).abs() < 1e-9);
        assert!(Latency::of(&[]).is_err());
    }

    #[test]
    fn adaptive_protocol_bounds() {
        let adaptive = Protocol {
            warmup: 0,
            runs: None,
        };
        let long = Protocol::BUDGET + Duration::from_millis(1);
        assert!(!adaptive.finished(Protocol::MIN_RUNS - 1, long));
        assert!(adaptive.finished(Protocol::MIN_RUNS, long));
        assert!(!adaptive.finished(50, Duration::ZERO));
        assert!(adaptive.finished(Protocol::MAX_RUNS, Duration::ZERO));
        let fixed = Protocol {
            warmup: 0,
            runs: Some(3),
        };
        assert!(!fixed.finished(2, long) && fixed.finished(3, Duration::ZERO));
    }
}
