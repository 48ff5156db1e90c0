//! `egret export`: write a model (any format egret reads, an optimized `.egret`
//! container included) as ONNX or GGUF.

use super::load_model;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The formats `egret export` writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// An ONNX model (inline weights; opsets from the model, raised to what
    /// the graph's ops need).
    Onnx,
    /// A GGUF file: the template GGUF's metadata and tensor list, each tensor
    /// taken from the model (so quantized weights keep their new format).
    Gguf,
}

/// What `egret export` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
ONNX: int8 weights become QDQ (DequantizeLinear + MatMul; W8A8 an exact
MatMulInteger decomposition), 4-bit and Q8_0 blocks com.microsoft.MatMulNBits,
which onnxruntime runs; other block formats are written dequantized to f32.
GGUF: the model must come from a GGUF file (the template, by default the file it
was loaded from); egret's int4 group formats have no GGML type and are refused.

Examples:
  egret export model.egret --format onnx -o model.onnx
  egret optimize model.onnx -o opt.egret && egret export opt.egret --format onnx -o opt.onnx
  egret optimize smollm2.gguf -o q8.egret --quantize q8_0 && \\
      egret export q8.egret --format gguf -o smollm2-q8_0.gguf")]
pub struct ExportArgs {
    /// The model to export.
    pub model: PathBuf,
    /// The output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write the exported model.
    #[arg(long, short)]
    pub output: PathBuf,
    /// GGUF: the GGUF file whose metadata and tensor list to follow (default:
    /// the file the model was loaded from).
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
}

/// Run `egret export`.
pub fn main(args: &ExportArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    match args.format {
        Format::Onnx => egret_backends::onnx_export::write(&model, &args.output)
            .with_context(|| format!("exporting {} to ONNX", args.model.display()))?,
        Format::Gguf => {
            let template = match (&args.template, model.metadata.get("source")) {
                (Some(t), _) => t.clone(),
                (None, Some(s)) if s.ends_with(".gguf") => PathBuf::from(s),
                _ => anyhow::bail!(
                    "GGUF export needs --template FILE.gguf (the model was not loaded from a GGUF file)"
                ),
            };
            write_gguf(&model, &template, &args.output)?;
        }
    }
    println!("wrote {}", args.output.display());
    Ok(())
}

/// Write `model` as GGUF following `template`; prints what changed.
pub fn write_gguf(model: &egret_ir::Model, template: &Path, out: &Path) -> Result<()> {
    let s = egret_backends::gguf_export::write(model, template, out)
        .with_context(|| format!("exporting to GGUF with template {}", template.display()))?;
    println!(
        "  {} tensors ({} retyped), file type {}, {:.1} MB",
        s.tensors,
        s.retyped,
        s.file_type,
        s.bytes as f64 / 1e6
    );
    Ok(())
}
