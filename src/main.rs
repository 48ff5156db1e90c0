//! The `egret` command-line tool.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// egret: a compiler for ML model compression.
#[derive(Parser)]
#[command(
    name = "egret",
    version,
    about,
    propagate_version = true,
    after_help = "\
Examples:
  egret inspect model.onnx
  egret run model.onnx --random --output-dir out/

Run `egret help <COMMAND>` for each command's options and examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's inputs, outputs, opsets, op histogram and parameters.
    #[command(after_help = "\
Examples:
  egret inspect model.onnx
  egret inspect model.onnx --json | jq .ops")]
    Inspect {
        /// The model: .onnx, .gguf, .safetensors (or its folder) or .egret.
        model: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Run a model (the reference interpreter by default) and report (or save) its outputs.
    #[command(after_help = "\
Inputs are .npy files or ONNX TensorProto .pb files (as in the ONNX test data).
Outputs are written as DIR/<output name>.npy, with `/`, `\\` and `:` replaced by `_`.

Examples:
  egret run model.onnx --input x=x.npy --output-dir out/
  egret run model.onnx --input input=test_data_set_0/input_0.pb
  egret run model.onnx --random --seed 42 --dim batch=4 --json")]
    Run {
        /// The model: .onnx, .gguf, .safetensors (or its folder) or .egret.
        model: PathBuf,
        /// A graph input: NAME=FILE (.npy or .pb). Repeat for several inputs.
        #[arg(long = "input", short, value_name = "NAME=FILE", value_parser = parse_input)]
        inputs: Vec<(String, PathBuf)>,
        /// Fill inputs not given with --input with deterministic pseudo-random data.
        #[arg(long)]
        random: bool,
        /// Seed for --random.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Size of a symbolic dim for --random: NAME=N (others default to 1).
        #[arg(long = "dim", value_name = "NAME=N", value_parser = parse_dim)]
        dims: Vec<(String, usize)>,
        /// Write one .npy file per graph output into this directory.
        #[arg(long, short, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Which executor runs the model.
        #[arg(long, value_enum, default_value_t)]
        backend: cli::backend::Backend,
    },
    /// Time a model's runs (latency percentiles, throughput), optionally against
    /// onnxruntime, or measure the machine's memory bandwidth.
    Bench(cli::bench::BenchArgs),
    /// Measure a model's quality: perplexity on a text, embedding similarity of sentence pairs.
    Eval(cli::eval::EvalArgs),
    /// Continue a prompt with a language model, streaming tokens and reporting
    /// prefill and decode speed.
    Generate(cli::generate::GenerateArgs),
    /// Optimize a model by equality saturation (or a chosen pass pipeline).
    Optimize(Box<cli::optimize::OptimizeArgs>),
    /// Write a model in another format (ONNX).
    Export(cli::export::ExportArgs),
    /// Emit a model as a standalone C program (no runtime, no malloc) and
    /// compile it for a target.
    Build(cli::build::BuildArgs),
    /// List the optimizer's passes, or calibrate its cost model.
    #[command(after_help = "\
Examples:
  egret passes
  egret passes --calibrate > cost.json   # then: egret optimize --cost-model cost.json")]
    Passes {
        /// Time the interpreter on micro-graphs and print cost-model constants as JSON.
        #[arg(long)]
        calibrate: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn split_kv(s: &str) -> Result<(&str, &str), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k, v)),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    let (k, v) = split_kv(s)?;
    Ok((k.to_string(), PathBuf::from(v)))
}

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (k, v) = split_kv(s)?;
    let n = v
        .parse()
        .map_err(|_| format!("`{v}` is not a dimension size"))?;
    Ok((k.to_string(), n))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { model, json } => cli::inspect::main(&model, json),
        Command::Bench(args) => cli::bench::main(&args),
        Command::Eval(args) => cli::eval::main(&args),
        Command::Generate(args) => cli::generate::main(&args),
        Command::Optimize(args) => cli::optimize::main(&args),
        Command::Export(args) => cli::export::main(&args),
        Command::Build(args) => cli::build::main(&args),
        Command::Passes { calibrate, json } => cli::passes::main(calibrate, json),
        Command::Run {
            model,
            inputs,
            random,
            seed,
            dims,
            output_dir,
            json,
            backend,
        } => cli::run::main(&cli::run::RunArgs {
            model,
            inputs,
            random,
            seed,
            dims,
            output_dir,
            json,
            backend,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_arguments() {
        assert_eq!(
            parse_input("x=a=b.npy").unwrap(),
            ("x".to_string(), PathBuf::from("a=b.npy"))
        );
        assert!(parse_input("x").is_err());
        assert!(parse_input("=f").is_err());
        assert_eq!(parse_dim("batch=4").unwrap(), ("batch".to_string(), 4));
        assert!(parse_dim("batch=-1")
            .unwrap_err()
            .contains("not a dimension"));
    }
}
