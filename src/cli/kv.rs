//! `--kv-policy`: the KV-cache policy flag of `optimize` (recorded in the
//! model), `eval` and `generate` (override what the model records).

use anyhow::{bail, Context, Result};
use egret_ir::Model;
use egret_runtime::generate::Decoder;
use egret_runtime::kv_policy::{separator_ids, KvPolicy};
use egret_runtime::tokenizer::Tokenizer;
use std::path::Path;

/// What `--kv-policy` accepts, for `--help`.
pub const HELP: &str = "full, window:W, streaming:S,W (S sink tokens + the last W) or \
sepllm:A,S,N,C (A initial + S separators + a local window of N, at most C cached; \
sepllm alone = 4,32,224,324); append +int8 for int8 storage";

/// Parse a `--kv-policy` value.
pub fn parse(spec: &str) -> Result<KvPolicy> {
    Ok(spec.parse::<KvPolicy>()?)
}

/// The separator ids SepLLM needs, from the model's tokenizer (none when the
/// policy does not need them).
fn separators(policy: KvPolicy, tokenizer_json: Option<&str>) -> Result<Vec<i64>> {
    if !policy.needs_separators() {
        return Ok(Vec::new());
    }
    let json = tokenizer_json
        .context("SepLLM needs the model's tokenizer to find its separator tokens")?;
    Ok(separator_ids(&Tokenizer::from_json(json)?)?)
}

/// Run `decoder` with the `--kv-policy` given, if any.
pub fn override_policy(
    decoder: &mut Decoder,
    spec: Option<&str>,
    tokenizer_json: Option<&str>,
) -> Result<()> {
    let Some(spec) = spec else { return Ok(()) };
    let policy = parse(spec)?;
    let seps = separators(policy, tokenizer_json)?;
    decoder
        .set_kv_policy(policy, &seps)
        .with_context(|| format!("--kv-policy {spec}"))?;
    Ok(())
}

/// Record the `--kv-policy` given, if any, in `model` (`egret optimize`),
/// which will be written to `output`: `.egret`, `.onnx` and text keep model
/// metadata, `.gguf` does not.
pub fn record(
    model: &mut Model,
    spec: Option<&str>,
    tokenizer_json: Option<&str>,
    output: &Path,
) -> Result<()> {
    let Some(spec) = spec else { return Ok(()) };
    if output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        bail!("--kv-policy: a .gguf output cannot record a KV policy; write .egret or .onnx");
    }
    let policy = parse(spec)?;
    let seps = separators(policy, tokenizer_json)?;
    egret_passes::kv_segment::apply(model, policy, &seps)?;
    Ok(())
}
