//! `egret build`: a model as a standalone C program for a target (the C
//! backend of `egret_backends::c`), compiled when the target's compiler is
//! installed, with its footprint.

mod elf;

use super::run::gather_inputs;
use super::{human_bytes, load_model, table};
use anyhow::{anyhow, bail, Context, Result};
use egret_backends::c::{self, Target, Weights};
use egret_backends::program::{lower, trace};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the weights go (`--weights`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsArg {
    /// `static const` arrays in model.c.
    #[default]
    Inline,
    /// DIR/weights.bin, read by the harness and passed to `egret_model`.
    Bin,
}

/// Whether to run the compiler (`--compile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CompileArg {
    /// Compile if the target's compiler is installed, else only write the sources.
    #[default]
    Auto,
    /// Compile, and fail if the compiler is missing.
    Always,
    /// Only write the sources.
    Never,
}

/// What `egret build` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
The program is specialised to the shapes of the example inputs: --input files,
else deterministic pseudo-random data (symbolic dims from --dim, else 1). It
runs for inputs of exactly those shapes. Each If runs the branch the example
inputs take (silero-vad's sr picks the 8 or 16 kHz network): egret_model
returns 1 when a run-time condition picks the other, so build one program per
branch.

DIR gets model.c (one static arena, the weights, the kernels, the entry
function egret_model), model.h (the I/O names, dtypes and shapes), main.c (a
harness: `DIR/model IN.npy... OUT.npy...`), a Makefile (`make CC=... CFLAGS=...`)
and, with --weights bin, weights.bin. There is no malloc anywhere.

Targets and their compilers: host (cc), aarch64-linux-gnu, armv7-linux-gnueabihf
and riscv64-linux-gnu (<triple>-gcc, static binaries for qemu-user), cortex-m4
(arm-none-eabi-gcc, model.o only). scripts/setup-cross.sh installs them. With
--compile auto (the default) a missing compiler is reported and the sources are
still written, with exit status 0; --compile always makes it an error.

The footprint is read from model.o's ELF sections: text (code and constants),
data, bss (the arena), plus the arena and weight bytes.

Examples:
  egret build model.onnx --target host -o build/
  ./build/model x.npy out.npy
  egret build model.onnx --target aarch64-linux-gnu -o build-arm --input x=x.npy
  egret build model.onnx --target cortex-m4 -o build-m4 --dim batch=1 --json
  egret build model.onnx -o build/ --weights bin
  egret build smollm2.gguf -o build-lm/ --weights bin --kv-cache 16")]
pub struct BuildArgs {
    /// The model: .onnx, .gguf, .safetensors (or its folder) or .egret.
    pub model: PathBuf,
    /// The machine to build for: host, aarch64-linux-gnu, armv7-linux-gnueabihf,
    /// riscv64-linux-gnu or cortex-m4.
    #[arg(long, default_value = "host", value_parser = parse_target)]
    pub target: Target,
    /// The output folder (created if missing).
    #[arg(long, short, value_name = "DIR")]
    pub output: PathBuf,
    /// An example input: NAME=FILE (.npy or .pb). Inputs not given are random.
    #[arg(long = "input", short, value_name = "NAME=FILE", value_parser = crate::parse_input)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Size of a symbolic dim of the random inputs: NAME=N (others are 1).
    #[arg(long = "dim", value_name = "NAME=N", value_parser = crate::parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Where the weights go.
    #[arg(long, value_enum, default_value_t)]
    pub weights: WeightsArg,
    /// Whether to run make.
    #[arg(long, value_enum, default_value_t)]
    pub compile: CompileArg,
    /// Build a KV-cache decoder (inputs `past_key_values.*`) as one program
    /// over a fixed cache of N positions: adds the bool input `cache_mask`
    /// `[seq, N + seq]` (see docs/c_backend.md); the cache's past dim is N
    /// and the mask's dims follow from --dim (seq defaults to 1).
    #[arg(long, value_name = "N")]
    pub kv_cache: Option<usize>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| {
        let names: Vec<&str> = c::TARGETS.iter().map(|t| t.name()).collect();
        format!("unknown target `{s}` (targets: {})", names.join(", "))
    })
}

/// What `egret build` reports.
#[derive(Serialize)]
struct Report {
    target: &'static str,
    dir: PathBuf,
    files: Vec<&'static str>,
    /// Whether make ran and succeeded.
    compiled: bool,
    /// Why it was not compiled, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_compiled: Option<String>,
    /// The linked program, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<PathBuf>,
    /// model.o's sections.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_o: Option<elf::Sizes>,
    arena_bytes: usize,
    weights_bytes: usize,
    steps: usize,
    kernels: Vec<String>,
}

/// Whether `cc` runs.
fn have(cc: &str) -> bool {
    Command::new(cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run make in `dir`; `Err` carries the compiler's messages.
fn make(dir: &Path, target: Target) -> Result<()> {
    let out = Command::new("make")
        .arg("-C")
        .arg(dir)
        .arg(format!("CC={}", target.cc()))
        .output()
        .context("running make (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "make failed in {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The symbolic dims of a [`c::fixed_cache`] decoder with `slots` cache
/// positions: the past length of `past_key_values.0.key` is `slots`, and
/// `cache_mask` is `[seq, slots + seq]` with `seq` the length of
/// `input_ids` (from `given`, else 1); `given` comes last, so it wins.
fn cache_dims(
    g: &egret_ir::Graph,
    slots: usize,
    given: &[(String, usize)],
) -> Vec<(String, usize)> {
    let sym = |input: &str, axis: usize| {
        let o = g.inputs.iter().find(|&&o| g.value_name(o) == input)?;
        let shape = g.value_type(*o).as_tensor()?.shape.as_ref()?;
        match shape.dims().get(axis)? {
            egret_ir::Dim::Sym(s) => Some(s.clone()),
            egret_ir::Dim::Known(_) => None,
        }
    };
    let seq = sym("input_ids", 1)
        .and_then(|s| given.iter().rev().find(|(n, _)| *n == s).map(|d| d.1))
        .unwrap_or(1);
    let mut dims: Vec<(String, usize)> = sym("past_key_values.0.key", 2)
        .map(|p| (p, slots))
        .into_iter()
        .collect();
    let [rows, keys] = c::CACHE_MASK_DIMS;
    dims.push((rows.into(), seq));
    dims.push((keys.into(), slots + seq));
    dims.extend(given.iter().cloned());
    dims
}

/// Run `egret build`.
pub fn main(args: &BuildArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    // Block weights stay blocks (exact: the kernels dequantize on the fly).
    let in_place = c::read_blocks_in_place(&model.graph).context("reading block weights")?;
    let (graph, dims) = match args.kv_cache {
        Some(slots) => {
            let g = c::fixed_cache(&in_place).context("--kv-cache")?;
            let dims = cache_dims(&g, slots, &args.dims);
            (g, dims)
        }
        None => (in_place, args.dims.clone()),
    };
    let inputs = gather_inputs(&graph, &args.inputs, Some(0), &dims)?;
    // Each If becomes the branch the example inputs take, its condition a guard.
    let graph = c::specialize_ifs(&graph, &inputs).context("specialising If nodes")?;
    let g = &graph;
    let tr = trace(g, inputs).context(
        "tracing the model on the example inputs (inputs not given with --input are random, \
         with every unnamed dim 1 and named dims from --dim: give a real input with --input NAME=FILE)",
    )?;
    let program = lower(g, &tr).context("lowering the model")?;
    let opts = c::Options {
        weights: match args.weights {
            WeightsArg::Inline => Weights::Inline,
            WeightsArg::Bin => Weights::Bin,
        },
        target: args.target,
    };
    let emitted = c::emit(g, &program, &opts).context("emitting C")?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let list = emitted.files.list();
    for (name, bytes) in &list {
        super::write_atomic(&args.output.join(name), bytes)?;
    }
    let target = args.target;
    let not_compiled = match args.compile {
        CompileArg::Never => Some("--compile never".to_string()),
        _ if !have(target.cc()) => Some(format!(
            "{} is not installed (scripts/setup-cross.sh installs the cross compilers)",
            target.cc()
        )),
        _ => None,
    };
    if let (CompileArg::Always, Some(why)) = (args.compile, &not_compiled) {
        bail!(
            "cannot compile: {why}; the sources are in {}",
            args.output.display()
        );
    }
    let mut model_o = None;
    if not_compiled.is_none() {
        make(&args.output, target)?;
        let obj = args.output.join("model.o");
        let bytes = std::fs::read(&obj).with_context(|| format!("reading {}", obj.display()))?;
        model_o = Some(elf::sizes(&bytes).map_err(|e| anyhow!("{}: {e}", obj.display()))?);
    }
    let binary = (model_o.is_some() && !target.compile_only()).then(|| args.output.join("model"));
    let report = Report {
        target: target.name(),
        dir: args.output.clone(),
        files: list.iter().map(|(n, _)| *n).collect(),
        compiled: model_o.is_some(),
        not_compiled,
        binary,
        model_o,
        arena_bytes: emitted.arena_bytes,
        weights_bytes: emitted.weights_bytes,
        steps: program.steps.len(),
        kernels: emitted.kernels.iter().map(|k| format!("{k:?}")).collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "wrote {} ({}) for target {}: {} steps",
        r.dir.display(),
        r.files.join(", "),
        r.target,
        r.steps
    );
    match (&r.binary, &r.not_compiled) {
        (Some(b), _) => println!("compiled {}", b.display()),
        (None, None) => println!("compiled model.o (no harness for this target)"),
        (None, Some(why)) => println!("not compiled: {why}"),
    }
    let row = |what: &str, n: Option<u64>, note: &str| {
        vec![
            what.to_string(),
            n.map_or("-".into(), |v| v.to_string()),
            n.map_or("-".into(), |v| human_bytes(v as usize)),
            note.to_string(),
        ]
    };
    let o = r.model_o;
    let rows = vec![
        row("text", o.map(|s| s.text), "model.o code and constants"),
        row("data", o.map(|s| s.data), "model.o initialised data"),
        row("bss", o.map(|s| s.bss), "model.o zeroed data (the arena)"),
        row(
            "arena",
            Some(r.arena_bytes as u64),
            "every intermediate value",
        ),
        row("weights", Some(r.weights_bytes as u64), "constant data"),
    ];
    println!("footprint");
    print!("{}", table(&["section", "bytes", "size", "what"], &rows));
}
