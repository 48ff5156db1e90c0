//! Running causal language models: a KV cache, prefill then incremental decode,
//! and the generation loop.
//!
//! A [`Decoder`] wraps any graph that follows the decoder convention of HF's
//! ONNX exports (optimum), which egret's own architecture builders also emit:
//!
//! | inputs | |
//! |---|---|
//! | `input_ids` | `[batch, seq]` i64 |
//! | `position_ids` (optional) | `[batch, seq]` i64, `past..past+seq` |
//! | `attention_mask` (optional) | `[batch, past+seq]` i64, all ones |
//! | `past_key_values.{i}.key` / `.value` | `[batch, kv_heads, past, head_dim]` |
//!
//! | outputs | |
//! |---|---|
//! | `logits` | `[batch, seq, vocab]` |
//! | `present.{i}.key` / `.value` | `[batch, kv_heads, past+seq, head_dim]` |
//!
//! The graph is constant-folded once ([`crate::fold`]): dequantizing and
//! transposing weights happens at load time, not on every decoded token.
//! Generation runs batch 1. What the cache keeps is the decoder's
//! [`KvPolicy`] (full history by default; sliding window, StreamingLLM and
//! SepLLM evict, and int8 storage is an option, see [`crate::kv_policy`]). The
//! policy comes from the model's metadata ([`POLICY_KEY`]) or
//! [`Decoder::set_kv_policy`]. Position ids are cache-relative: a new token's
//! position is the number of positions cached before it, and evicting shifts
//! the cached keys' rotary positions to match.

use crate::error::{Result, RuntimeError};
use crate::executor::Executor;
use crate::fold::fold_constants;
use crate::interpreter::Interpreter;
use crate::kv_policy::{
    parse_separators, rotary_keys, KvPolicy, RotaryKeys, Rows, POLICY_KEY, SEPARATORS_KEY,
};
use crate::sample::Sampler;
use egret_ir::{DType, Model, Tensor, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A decoder-only language model prepared for repeated runs.
pub struct Decoder {
    model: Model,
    /// Graph-input position of `input_ids`, `position_ids`, `attention_mask`.
    ids_input: usize,
    positions_input: Option<usize>,
    mask_input: Option<usize>,
    /// Per layer: graph-input positions of the past key and value.
    past_inputs: Vec<[usize; 2]>,
    /// Graph-output position of `logits`, and per layer of the present key/value.
    logits_output: usize,
    present_outputs: Vec<[usize; 2]>,
    /// `[kv_heads, head_dim]` and dtype of the cache tensors.
    cache_dims: [usize; 2],
    cache_dtype: DType,
    /// Runs [`Decoder::forward`] when set; the interpreter otherwise.
    executor: Option<Box<dyn Executor + Send>>,
    /// What the cache keeps.
    policy: KvPolicy,
    /// Token ids SepLLM keeps as separators.
    separators: HashSet<i64>,
    /// Per layer, the rotary embedding of its keys (needed to shift them), or
    /// why it could not be found.
    rotary: std::result::Result<Vec<RotaryKeys>, String>,
}

/// The attention history of one sequence: per layer the keys and values of
/// the cached positions, and per cached position its token id and its place
/// in the stream.
#[derive(Clone, Debug)]
pub struct KvCache {
    kv: Vec<[Rows; 2]>,
    /// Token id of each cached position.
    tokens: Vec<i64>,
    /// Stream index (0-based, over everything ever run) of each cached position.
    positions: Vec<u64>,
    /// The position each stored key is rotated at (its slot, except for int8
    /// keys, which are rotated when read).
    rotated_at: Vec<usize>,
    /// Tokens run through the cache so far.
    seen: u64,
    peak_len: usize,
    peak_bytes: usize,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Stream index of each cached position, oldest first: which positions
    /// survived eviction.
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }

    /// Token id of each cached position, oldest first.
    pub fn tokens(&self) -> &[i64] {
        &self.tokens
    }

    /// Tokens run through this cache so far (cached or evicted).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Bytes of keys and values held now.
    pub fn bytes(&self) -> usize {
        self.kv.iter().flatten().map(Rows::bytes).sum()
    }

    /// Most bytes of keys and values held at once (just before an eviction).
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// Most positions held at once (just before an eviction).
    pub fn peak_len(&self) -> usize {
        self.peak_len
    }
}

/// Position of the graph input or output named `name`, if any.
fn position(names: impl Iterator<Item = String>, name: &str) -> Option<usize> {
    names.into_iter().position(|n| n == name)
}

fn missing(what: &str, name: &str) -> RuntimeError {
    RuntimeError::msg(format!(
        "not a decoder graph: no {what} named `{name}` (see egret_runtime::generate)"
    ))
}

impl Decoder {
    /// Check that `model` follows the decoder convention and fold its constants.
    pub fn new(mut model: Model) -> Result<Decoder> {
        fold_constants(&mut model.graph)?;
        let g = &model.graph;
        let in_names = || g.inputs.iter().map(|&o| g.value_name(o).to_string());
        let out_names = || g.outputs.iter().map(|&o| g.value_name(o).to_string());
        let input = |n: &str| position(in_names(), n);
        let output = |n: &str| position(out_names(), n);
        let ids_input = input("input_ids").ok_or_else(|| missing("input", "input_ids"))?;
        let logits_output = output("logits").ok_or_else(|| missing("output", "logits"))?;
        let mut past_inputs = Vec::new();
        let mut present_outputs = Vec::new();
        while let Some(k) = input(&format!("past_key_values.{}.key", past_inputs.len())) {
            let i = past_inputs.len();
            let need_in = |s: &str| {
                let n = format!("past_key_values.{i}.{s}");
                input(&n).ok_or_else(|| missing("input", &n))
            };
            let need_out = |s: &str| {
                let n = format!("present.{i}.{s}");
                output(&n).ok_or_else(|| missing("output", &n))
            };
            past_inputs.push([k, need_in("value")?]);
            present_outputs.push([need_out("key")?, need_out("value")?]);
        }
        let first = past_inputs
            .first()
            .ok_or_else(|| missing("input", "past_key_values.0.key"))?;
        let ty = g.value_type(g.inputs[first[0]]).as_tensor();
        let dims = ty
            .and_then(|t| t.shape.as_ref())
            .filter(|s| s.rank() == 4)
            .and_then(|s| Some([s.dims()[1].known()?, s.dims()[3].known()?]))
            .ok_or_else(|| {
                RuntimeError::msg(
                    "past_key_values.0.key must be [batch, kv_heads, past, head_dim] \
                     with known kv_heads and head_dim",
                )
            })?;
        let cache_dtype = ty.map_or(DType::F32, |t| t.dtype);
        let rotary = rotary_keys(g).map_err(|e| e.to_string());
        let meta = |key: &str| model.metadata.get(key).cloned();
        let policy = meta(POLICY_KEY);
        let separators = meta(SEPARATORS_KEY);
        let mut decoder = Decoder {
            ids_input,
            positions_input: input("position_ids"),
            mask_input: input("attention_mask"),
            past_inputs,
            logits_output,
            present_outputs,
            cache_dims: dims,
            cache_dtype,
            model,
            executor: None,
            policy: KvPolicy::default(),
            separators: HashSet::new(),
            rotary,
        };
        if let Some(spec) = policy {
            let policy = spec
                .parse()
                .map_err(|e| RuntimeError::msg(format!("model metadata {POLICY_KEY}: {e}")))?;
            let seps = parse_separators(separators.as_deref().unwrap_or(""))?;
            decoder.set_kv_policy(policy, &seps)?;
        }
        Ok(decoder)
    }

    /// Use `policy` for caches made from now on ([`Decoder::empty_cache`]),
    /// with `separators` the token ids SepLLM keeps (see
    /// [`crate::kv_policy::separator_ids`]). Errors when the policy evicts and
    /// the graph's keys cannot be shifted, when SepLLM gets no separators, when
    /// the graph's cache is not f32 and the policy evicts or stores int8, or
    /// when the capacity reaches the positions the model's rotary tables cover.
    pub fn set_kv_policy(&mut self, policy: KvPolicy, separators: &[i64]) -> Result<()> {
        if policy.evicts() {
            let rotary = self
                .rotary
                .as_ref()
                .map_err(|e| RuntimeError::msg(e.clone()))?;
            if rotary.len() != self.layers() {
                return Err(RuntimeError::msg(format!(
                    "KV policy {policy}: {} layers have rotary keys, the cache has {}",
                    rotary.len(),
                    self.layers()
                )));
            }
            let room = rotary.iter().map(RotaryKeys::positions).min().unwrap_or(0);
            if policy.capacity().is_some_and(|c| c >= room) {
                return Err(RuntimeError::msg(format!(
                    "KV policy {policy}: the capacity must stay below the {room} positions \
                     the model's rotary tables cover"
                )));
            }
        }
        if policy.needs_separators() && separators.is_empty() {
            return Err(RuntimeError::msg(format!(
                "KV policy {policy}: no separator tokens given (see kv_policy::separator_ids)"
            )));
        }
        if (policy.int8 || policy.evicts()) && self.cache_dtype != DType::F32 {
            return Err(RuntimeError::msg(format!(
                "KV policy {policy}: needs an f32 cache, the graph's is {}",
                self.cache_dtype
            )));
        }
        self.policy = policy;
        self.separators = separators.iter().copied().collect();
        Ok(())
    }

    /// The cache policy in use.
    pub fn kv_policy(&self) -> KvPolicy {
        self.policy
    }

    /// Run [`Decoder::forward`] on `executor` (built over this decoder's
    /// folded graph, [`Decoder::model`]) instead of the interpreter. Observed
    /// runs stay on the interpreter.
    pub fn use_executor(&mut self, executor: Box<dyn Executor + Send>) {
        self.executor = Some(executor);
    }

    /// The (constant-folded) model being run.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of transformer layers (cache entries).
    pub fn layers(&self) -> usize {
        self.past_inputs.len()
    }

    /// A cache holding nothing, stored as the policy says.
    pub fn empty_cache(&self) -> Result<KvCache> {
        let [h, d] = self.cache_dims;
        let rows = if self.policy.int8 {
            Rows::empty_int8(h, d)
        } else {
            Rows::F32(Tensor::from_bytes(self.cache_dtype, vec![1, h, 0, d], &[])?)
        };
        Ok(KvCache {
            kv: vec![[rows.clone(), rows]; self.layers()],
            tokens: Vec::new(),
            positions: Vec::new(),
            rotated_at: Vec::new(),
            seen: 0,
            peak_len: 0,
            peak_bytes: 0,
        })
    }

    /// Run `ids` (one sequence) after what `cache` holds; append them to the cache,
    /// evict what the policy says, and return the logits `[ids.len(), vocab]` as f32.
    ///
    /// The pass runs on a worker of the rayon pool (inline when the caller is
    /// one). From any other thread each parallel kernel would hand its work
    /// to the pool and sleep until it is done: a decode step has a few
    /// hundred kernels, and those context switches cost about a quarter of
    /// the int8 SmolLM2 decode time.
    pub fn forward(&self, ids: &[i64], cache: &mut KvCache) -> Result<Tensor> {
        rayon::scope(|_| match &self.executor {
            Some(exec) => {
                let outs = exec.execute(self.inputs(ids, cache)?)?;
                self.absorb(outs, ids, cache)
            }
            None => self.forward_observed(ids, cache, &mut |_, _| {}),
        })
    }

    /// [`Decoder::forward`], calling `observe(node, outputs)` after every
    /// operator node of the (folded) graph, as
    /// [`Interpreter::run_observed`] does. Used by calibration.
    pub fn forward_observed(
        &self,
        ids: &[i64],
        cache: &mut KvCache,
        observe: &mut dyn FnMut(egret_ir::NodeId, &[Value]),
    ) -> Result<Tensor> {
        let inputs = self.inputs(ids, cache)?;
        let outs = Interpreter::new(&self.model.graph)?.run_observed(inputs, observe)?;
        self.absorb(outs, ids, cache)
    }

    /// The graph inputs for running `ids` after `cache`.
    fn inputs(&self, ids: &[i64], cache: &KvCache) -> Result<Vec<Value>> {
        let g = &self.model.graph;
        let (n, past) = (ids.len(), cache.len());
        let i64s = |shape: Vec<usize>, v: Vec<i64>| -> Result<Value> {
            Ok(Value::Tensor(Tensor::from_vec(shape, v)?))
        };
        let mut inputs: Vec<Option<Value>> = vec![None; g.inputs.len()];
        inputs[self.ids_input] = Some(i64s(vec![1, n], ids.to_vec())?);
        if let Some(p) = self.positions_input {
            let pos = (past..past + n).map(|p| p as i64).collect();
            inputs[p] = Some(i64s(vec![1, n], pos)?);
        }
        if let Some(m) = self.mask_input {
            inputs[m] = Some(i64s(vec![1, past + n], vec![1; past + n])?);
        }
        for (i, (slots, kv)) in self.past_inputs.iter().zip(&cache.kv).enumerate() {
            let rope = self.rotary.as_ref().ok().and_then(|r| r.get(i));
            let key = kv[0].to_tensor(rope, &cache.rotated_at)?;
            inputs[slots[0]] = Some(Value::Tensor(key));
            inputs[slots[1]] = Some(Value::Tensor(kv[1].to_tensor(None, &cache.rotated_at)?));
        }
        inputs
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| RuntimeError::Input {
                    name: g.value_name(g.inputs[i]).to_string(),
                    msg: "a decoder graph input egret does not know how to fill".into(),
                })
            })
            .collect()
    }

    /// Take the logits and the grown cache from the outputs of a run over the
    /// new tokens `ids`, then evict by the policy.
    fn absorb(&self, outs: Vec<Value>, ids: &[i64], cache: &mut KvCache) -> Result<Tensor> {
        let (n, past) = (ids.len(), cache.len());
        let mut outs: Vec<Option<Value>> = outs.into_iter().map(Some).collect();
        let mut take = |slot: usize| -> Result<Tensor> {
            outs.get_mut(slot)
                .and_then(Option::take)
                .ok_or_else(|| RuntimeError::msg(format!("decoder output {slot} missing")))?
                .into_tensor()
                .map_err(RuntimeError::from)
        };
        let logits = take(self.logits_output)?;
        let mut kv = Vec::with_capacity(self.layers());
        for slots in &self.present_outputs {
            let (k, v) = (take(slots[0])?, take(slots[1])?);
            for t in [&k, &v] {
                let [h, d] = self.cache_dims;
                if t.shape() != [1, h, past + n, d] {
                    return Err(RuntimeError::msg(format!(
                        "present cache has shape {:?}, expected [1, {h}, {}, {d}]",
                        t.shape(),
                        past + n
                    )));
                }
            }
            kv.push([k, v]);
        }
        for (rows, [k, v]) in cache.kv.iter_mut().zip(kv) {
            rows[0].absorb(k, past)?;
            rows[1].absorb(v, past)?;
        }
        cache.tokens.extend_from_slice(ids);
        cache.positions.extend(cache.seen..cache.seen + n as u64);
        cache.rotated_at.extend(past..past + n);
        cache.seen += n as u64;
        cache.peak_len = cache.peak_len.max(cache.len());
        cache.peak_bytes = cache.peak_bytes.max(cache.bytes());
        self.evict(cache)?;
        let vocab = match logits.shape() {
            [1, s, v] if *s == n => *v,
            other => {
                return Err(RuntimeError::msg(format!(
                    "logits have shape {other:?}, expected [1, {n}, vocab]"
                )))
            }
        };
        if logits.dtype() != DType::F32 {
            return Err(RuntimeError::msg(format!(
                "logits are {}, expected f32",
                logits.dtype()
            )));
        }
        Ok(logits.reshaped(vec![n, vocab])?)
    }
}

impl Decoder {
    /// Drop the positions the policy evicts, shifting the keys that move.
    fn evict(&self, cache: &mut KvCache) -> Result<()> {
        let is_sep = |t: i64| self.separators.contains(&t);
        let Some(keep) = self.policy.keep(&cache.tokens, &is_sep) else {
            return Ok(());
        };
        let rotary = self
            .rotary
            .as_ref()
            .map_err(|e| RuntimeError::msg(e.clone()))?;
        for (rows, rope) in cache.kv.iter_mut().zip(rotary) {
            rows[0].retain(&keep, Some(rope))?;
            rows[1].retain(&keep, None)?;
        }
        cache.positions = keep.iter().map(|&i| cache.positions[i]).collect();
        cache.tokens = keep.iter().map(|&i| cache.tokens[i]).collect();
        cache.rotated_at = if self.policy.int8 {
            keep.iter().map(|&i| cache.rotated_at[i]).collect()
        } else {
            (0..keep.len()).collect()
        };
        Ok(())
    }
}

/// Size the thread pool every kernel shares (rayon's global pool, which the
/// GEMM and the row-parallel kernels use) to `threads`; `0` keeps rayon's
/// default (`RAYON_NUM_THREADS`, else one per core). Call it before the first
/// run: once the pool exists its size is fixed, and asking for another is an error.
pub fn set_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Ok(());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| RuntimeError::msg(format!("cannot use {threads} threads: {e}")))
}

/// Timings of one [`generate`] call.
#[derive(Clone, Debug, Default)]
pub struct GenerationStats {
    /// Prompt tokens run in the prefill.
    pub prefill_tokens: usize,
    /// Wall time of the prefill (including sampling the first token).
    pub prefill_time: Duration,
    /// Tokens produced by incremental decode steps (after the first).
    pub decode_tokens: usize,
    /// Wall time of the decode steps.
    pub decode_time: Duration,
    /// Every generated token id, in order.
    pub tokens: Vec<i64>,
    /// Most bytes of keys and values the cache held at once.
    pub peak_kv_bytes: usize,
}

fn per_second(n: usize, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        n as f64 / t.as_secs_f64()
    }
}

impl GenerationStats {
    /// Prompt tokens per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        per_second(self.prefill_tokens, self.prefill_time)
    }

    /// Decoded tokens per second.
    pub fn decode_tokens_per_s(&self) -> f64 {
        per_second(self.decode_tokens, self.decode_time)
    }
}

/// The last row of a `[seq, vocab]` logits tensor.
pub fn last_row(logits: &Tensor) -> Result<&[f32]> {
    let v = logits.as_slice::<f32>()?;
    let vocab = logits.shape().last().copied().unwrap_or(0);
    v.get(v.len().saturating_sub(vocab)..)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| RuntimeError::msg("empty logits"))
}

/// Generate up to `max_tokens` tokens after `prompt`: one prefill run over the
/// prompt, then one cached decode step per token. Stops early after a token in
/// `stop`. `on_token` sees each token as soon as it is chosen (for streaming).
pub fn generate(
    decoder: &Decoder,
    prompt: &[i64],
    max_tokens: usize,
    sampler: &mut Sampler,
    stop: &[i64],
    on_token: &mut dyn FnMut(i64),
) -> Result<GenerationStats> {
    if prompt.is_empty() {
        return Err(RuntimeError::msg("generation needs a non-empty prompt"));
    }
    let mut stats = GenerationStats {
        prefill_tokens: prompt.len(),
        ..Default::default()
    };
    if max_tokens == 0 {
        return Ok(stats);
    }
    let mut cache = decoder.empty_cache()?;
    let start = Instant::now();
    let logits = decoder.forward(prompt, &mut cache)?;
    let mut next = sampler.sample(last_row(&logits)?)? as i64;
    stats.prefill_time = start.elapsed();
    let start = Instant::now();
    loop {
        stats.tokens.push(next);
        on_token(next);
        if stats.tokens.len() >= max_tokens || stop.contains(&next) {
            break;
        }
        let logits = decoder.forward(&[next], &mut cache)?;
        next = sampler.sample(last_row(&logits)?)? as i64;
        stats.decode_tokens += 1;
    }
    stats.decode_time = start.elapsed();
    stats.peak_kv_bytes = cache.peak_bytes();
    Ok(stats)
}
