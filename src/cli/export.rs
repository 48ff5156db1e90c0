//! `egret export`: write a model (any format egret reads, an optimized `.egret`
//! container included) in another format. ONNX is the one format so far.

use super::load_model;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// The formats `egret export` writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// An ONNX model (inline weights; opsets from the model, raised to what
    /// the graph's ops need).
    Onnx,
}

/// What `egret export` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
Block-quantized weights (GGML formats) have no ONNX type and are refused. Ops
in egret's own domain are written in the custom domain `egret`.

Examples:
  egret export model.egret --format onnx -o model.onnx
  egret optimize model.onnx -o opt.egret && egret export opt.egret --format onnx -o opt.onnx")]
pub struct ExportArgs {
    /// The model to export.
    pub model: PathBuf,
    /// The output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write the exported model.
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Run `egret export`.
pub fn main(args: &ExportArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    match args.format {
        Format::Onnx => egret_backends::onnx_export::write(&model, &args.output)
            .with_context(|| format!("exporting {} to ONNX", args.model.display()))?,
    }
    println!("wrote {}", args.output.display());
    Ok(())
}
