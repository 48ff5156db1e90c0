//! `egret generate`: run a causal language model on a prompt, streaming the
//! continuation and reporting prefill and decode speed.

use super::load;
use anyhow::{bail, Context, Result};
use egret_runtime::generate::{generate, set_threads, Decoder, GenerationStats};
use egret_runtime::sample::{Sampler, SamplingConfig};
use egret_runtime::tokenizer::Tokenizer;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// What `egret generate` was asked to do.
#[derive(clap::Args)]
#[command(after_help = "\
Decoding is greedy unless --temperature is above 0; --top-k and --top-p then
restrict the candidates and --seed fixes the random stream. Generation stops after
--max-tokens tokens or at the model's end-of-sequence token. Prefill (the prompt
in one run) and decode (one cached step per token) speeds go to stderr.

Examples:
  egret generate ~/.cache/egret/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
      --prompt 'The capital of France is' --max-tokens 12
  egret generate model.gguf --prompt 'Once upon a time' --temperature 0.8 \\
      --top-k 40 --top-p 0.95 --seed 1
  egret generate model.gguf --prompt 'Hello' --threads 1 --json
  egret generate model.gguf --prompt 'Once upon a time' --max-tokens 2000 \
      --kv-policy streaming:4,252+int8")]
pub struct GenerateArgs {
    /// The model: a .gguf file, a safetensors model folder, or a decoder .onnx
    /// with the HF export convention (input_ids, past_key_values.*, logits).
    pub model: PathBuf,
    /// The text to continue (no BOS token is added).
    #[arg(long)]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample among the K most likely tokens only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample among the most likely tokens covering probability P (1 = all).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampling stream.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// KV-cache policy (overrides the model's); with an evicting policy the
    /// generation can run past the model's context.
    #[arg(long, value_name = "POLICY", long_help = super::kv::HELP)]
    pub kv_policy: Option<String>,
    /// Threads for the kernels; 0 = RAYON_NUM_THREADS if set, else one per core.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Which executor runs the model.
    #[arg(long, value_enum, default_value_t)]
    pub backend: super::backend::Backend,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

/// Throughput of one phase.
#[derive(Serialize)]
struct Phase {
    tokens: usize,
    ms: f64,
    tokens_per_s: f64,
}

/// The `--json` report.
#[derive(Serialize)]
struct Report {
    model: String,
    load_ms: f64,
    prompt: String,
    prompt_ids: Vec<i64>,
    generated_ids: Vec<i64>,
    text: String,
    prefill: Phase,
    decode: Phase,
    /// The KV-cache policy used.
    kv_policy: String,
    /// Most bytes of keys and values cached at once.
    peak_kv_bytes: usize,
}

/// Prints the growing continuation as its text becomes complete UTF-8: a
/// byte-level BPE token can end inside a multi-byte character, which decodes to
/// U+FFFD until the next token completes it.
struct Streamer<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<i64>,
    printed: usize,
}

impl Streamer<'_> {
    fn push(&mut self, id: i64) -> Result<()> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(());
        }
        if let Some(new) = text.get(self.printed..) {
            let mut out = std::io::stdout().lock();
            out.write_all(new.as_bytes())?;
            out.flush()?;
        }
        self.printed = text.len();
        Ok(())
    }
}

/// The end-of-sequence id the frontend recorded in the model's metadata.
fn eos_id(decoder: &Decoder) -> Option<i64> {
    decoder.model().metadata.get("eos_token_id")?.parse().ok()
}

/// Run `egret generate`.
pub fn main(args: &GenerateArgs) -> Result<()> {
    let sampler = Sampler::new(SamplingConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    });
    let mut sampler = sampler?;
    set_threads(args.threads)?;
    let t0 = Instant::now();
    let loaded = load(&args.model)?;
    let json = loaded
        .tokenizer_json
        .as_deref()
        .context("the model carries no tokenizer (GGUF vocabulary or tokenizer.json)")?;
    let tokenizer = Tokenizer::from_json(json)?;
    let mut decoder = Decoder::new(loaded.model)?;
    super::kv::override_policy(&mut decoder, args.kv_policy.as_deref(), Some(json))?;
    super::backend::attach_to_decoder(&mut decoder, args.backend);
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let prompt_ids = tokenizer.encode(&args.prompt, false)?;
    if prompt_ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }
    let stop: Vec<i64> = eos_id(&decoder).into_iter().collect();
    let mut streamer = Streamer {
        tokenizer: &tokenizer,
        ids: Vec::new(),
        printed: 0,
    };
    let mut failed = None;
    let stats = generate(
        &decoder,
        &prompt_ids,
        args.max_tokens,
        &mut sampler,
        &stop,
        &mut |id| {
            if !args.json && failed.is_none() {
                failed = streamer.push(id).err();
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    let text = tokenizer.decode(&stats.tokens, true)?;
    if args.json {
        let report = Report {
            model: args.model.display().to_string(),
            load_ms,
            prompt: args.prompt.clone(),
            prompt_ids,
            text,
            prefill: phase(&stats, true),
            decode: phase(&stats, false),
            kv_policy: decoder.kv_policy().to_string(),
            peak_kv_bytes: stats.peak_kv_bytes,
            generated_ids: stats.tokens,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!();
        let (p, d) = (phase(&stats, true), phase(&stats, false));
        eprintln!(
            "load {load_ms:.0} ms; prefill {} tokens in {:.0} ms ({:.1} tokens/s); \
             decode {} tokens in {:.0} ms ({:.1} tokens/s)",
            p.tokens, p.ms, p.tokens_per_s, d.tokens, d.ms, d.tokens_per_s
        );
    }
    Ok(())
}

fn phase(s: &GenerationStats, prefill: bool) -> Phase {
    if prefill {
        Phase {
            tokens: s.prefill_tokens,
            ms: s.prefill_time.as_secs_f64() * 1e3,
            tokens_per_s: s.prefill_tokens_per_s(),
        }
    } else {
        Phase {
            tokens: s.decode_tokens,
            ms: s.decode_time.as_secs_f64() * 1e3,
            tokens_per_s: s.decode_tokens_per_s(),
        }
    }
}
