//! `LlamaForCausalLM`: pre-norm decoder with RMSNorm, rotary positions, grouped
//! key/value heads (GQA) and a SwiGLU MLP; the LM head may be tied to the token
//! embedding. SmolLM2, TinyLlama, Llama 2/3 and Mistral-style checkpoints share it.
//!
//! One builder serves both sources. [`Params`] (dims, rope base, RMS epsilon)
//! come from `config.json` ([`build`]) or from GGUF metadata ([`build_gguf`]), and
//! a [`Names`] table maps each weight to its HF or GGUF name; everything else is
//! shared. Attention is the standard ONNX `Attention` op (opset 23, GQA through
//! `q_num_heads` / `kv_num_heads`, causal, with a KV cache) after ONNX
//! `RotaryEmbedding` on the queries and keys.
//!
//! The graph follows the decoder convention of HF's ONNX exports that
//! `egret_runtime::generate` runs:
//! inputs `input_ids`, `position_ids` (`[batch, seq]` i64) and
//! `past_key_values.{i}.key` / `.value` (`[batch, kv_heads, past, head_dim]`);
//! outputs `logits` (`[batch, seq, vocab]`) and `present.{i}.key` / `.value`.
//!
//! **GGUF's permuted Q/K rows.** llama.cpp's converter reorders the rows of each
//! head of `attn_q` / `attn_k` so that its rotary kernel can rotate adjacent pairs
//! (`x[2i], x[2i+1]`) instead of HF's halves (`x[i], x[i + d/2]`). [`GgufWeights`]
//! undoes that on load, moving whole rows (so block-quantized weights keep their
//! blocks), which makes the GGUF graph identical to the HF one. Skipping it
//! leaves a model that runs but is wrong (SmolLM2's perplexity goes from 7.5 to 72).

use super::{ArchError, AttnSpec, Builder, HfConfig, WeightSource};
use crate::gguf::GgufFile;
use egret_ir::infer::egret_ops::DOMAIN as EGRET_DOMAIN;
use egret_ir::{Attr, DType, Dim, Model, OpCall, OutletId, Tensor};

/// The numbers that size a llama graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub width: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Leading dims of each head that are rotated (`head_dim` for llama).
    pub rope_dim: usize,
    /// Rotary base frequency (`rope_theta`).
    pub rope_theta: f64,
    /// Longest sequence the rotary tables cover.
    pub max_positions: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
}

/// Most positions the rotary tables are built for (they cost
/// `2 · positions · rope_dim / 2` floats); longer declared contexts are capped.
const MAX_ROPE_POSITIONS: usize = 1 << 17;

impl Params {
    /// Check the dims are consistent.
    fn validate(self) -> Result<Params, ArchError> {
        let bad = |m: String| Err(ArchError::Config(m));
        if self.layers == 0 || self.heads == 0 || self.kv_heads == 0 || self.head_dim == 0 {
            return bad(format!("zero-sized llama dims: {self:?}"));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.heads, self.kv_heads
            ));
        }
        if self.rope_dim == 0 || self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(format!(
                "rotary dim {} must be even and in 2..={}",
                self.rope_dim, self.head_dim
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("rope base {} must be > 1", self.rope_theta));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return bad(format!("RMS epsilon {} must be >= 0", self.rms_eps));
        }
        if self.max_positions == 0 {
            return bad("the context length must be positive".into());
        }
        Ok(Params {
            max_positions: self.max_positions.min(MAX_ROPE_POSITIONS),
            ..self
        })
    }
}

/// Where each llama weight lives in a checkpoint. Per-layer names are
/// `<layer><i>.<part>`; `q`, `k`, `v`, `o`, `gate`, `up`, `down` are linear-layer
/// prefixes (`.weight` is appended), the norms are full names.
#[derive(Clone, Copy, Debug)]
pub struct Names {
    /// Token embedding table `[vocab, width]`.
    pub embed: &'static str,
    /// Final RMSNorm scale.
    pub norm: &'static str,
    /// LM head prefix; absent in tied checkpoints, which reuse `embed`.
    pub head: &'static str,
    /// Prefix of layer `i` (followed by `i` and a dot).
    pub layer: &'static str,
    /// Per-layer parts: attention norm, q, k, v, o, MLP norm, gate, up, down.
    pub parts: [&'static str; 9],
}

/// HF `transformers` names.
pub const HF_NAMES: Names = Names {
    embed: "model.embed_tokens.weight",
    norm: "model.norm.weight",
    head: "lm_head",
    layer: "model.layers.",
    parts: [
        "input_layernorm.weight",
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "post_attention_layernorm.weight",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ],
};

/// llama.cpp GGUF names.
pub const GGUF_NAMES: Names = Names {
    embed: "token_embd.weight",
    norm: "output_norm.weight",
    head: "output",
    layer: "blk.",
    parts: [
        "attn_norm.weight",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm.weight",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ],
};

/// Read the llama dims from an HF `config.json`.
pub fn params_from_config(cfg: &HfConfig) -> Result<Params, ArchError> {
    let width = cfg.dim(&["hidden_size"])?;
    let heads = cfg.dim(&["num_attention_heads"])?;
    let head_dim = cfg.dim_or(&["head_dim"], width / heads.max(1))?;
    if let Ok(kind) = cfg.str_or(&["rope_scaling"], "") {
        if !kind.is_empty() {
            return Err(ArchError::Unsupported(format!("rope_scaling `{kind}`")));
        }
    } else {
        return Err(ArchError::Unsupported("rope_scaling".into()));
    }
    Params {
        layers: cfg.dim(&["num_hidden_layers"])?,
        width,
        heads,
        kv_heads: cfg.dim_or(&["num_key_value_heads"], heads)?,
        head_dim,
        rope_dim: head_dim,
        rope_theta: cfg.float_or(&["rope_theta"], 10_000.0)?,
        max_positions: cfg.dim_or(&["max_position_embeddings"], 2048)?,
        rms_eps: cfg.float_or(&["rms_norm_eps"], 1e-6)?,
    }
    .validate()
}

/// Read the llama dims from GGUF metadata (`<arch>.block_count`, ...).
pub fn params_from_gguf(file: &GgufFile) -> Result<Params, ArchError> {
    let meta = file.metadata();
    let cfg = |e: crate::gguf::GgufError| ArchError::Config(e.to_string());
    let key = |k: &str| meta.arch_key(k).map_err(cfg);
    let dim =
        |k: &str| -> Result<usize, ArchError> { Ok(meta.get_u32(&key(k)?).map_err(cfg)? as usize) };
    let opt_dim = |k: &str| -> Result<Option<usize>, ArchError> {
        Ok(meta.opt_u32(&key(k)?).map_err(cfg)?.map(|n| n as usize))
    };
    let width = dim("embedding_length")?;
    let heads = dim("attention.head_count")?;
    let head_dim = opt_dim("attention.key_length")?.unwrap_or(width / heads.max(1));
    if let Some(kind) = meta.opt_str(&key("rope.scaling.type")?).map_err(cfg)? {
        if kind != "none" {
            return Err(ArchError::Unsupported(format!("rope scaling `{kind}`")));
        }
    }
    Params {
        layers: dim("block_count")?,
        width,
        heads,
        kv_heads: opt_dim("attention.head_count_kv")?.unwrap_or(heads),
        head_dim,
        rope_dim: opt_dim("rope.dimension_count")?.unwrap_or(head_dim),
        rope_theta: meta
            .opt_f32(&key("rope.freq_base")?)
            .map_err(cfg)?
            .map_or(10_000.0, f64::from),
        max_positions: opt_dim("context_length")?.unwrap_or(2048),
        rms_eps: f64::from(
            meta.get_f32(&key("attention.layer_norm_rms_epsilon")?)
                .map_err(cfg)?,
        ),
    }
    .validate()
}

/// Build `LlamaForCausalLM` from its HF config and weights.
pub fn build(cfg: &HfConfig, w: &dyn WeightSource) -> Result<Model, ArchError> {
    // Only a single positive id is recorded (some configs list several).
    let eos = cfg.dim(&["eos_token_id"]).ok().map(|id| id as i64);
    build_with(&params_from_config(cfg)?, &HF_NAMES, w, eos)
}

/// Build the llama graph of a GGUF file (`general.architecture` = `llama`),
/// undoing llama.cpp's Q/K row permutation.
pub fn build_gguf(file: &GgufFile) -> Result<Model, ArchError> {
    let p = params_from_gguf(file)?;
    let w = GgufWeights {
        file,
        heads: p.heads,
        kv_heads: p.kv_heads,
    };
    let eos = file
        .metadata()
        .opt_i64("tokenizer.ggml.eos_token_id")
        .map_err(|e| ArchError::Config(e.to_string()))?;
    build_with(&p, &GGUF_NAMES, &w, eos)
}

/// Build the graph for `p` with weights named by `names`. The end-of-sequence
/// id, when known, is recorded as the metadata `eos_token_id` (generation stops
/// there).
pub fn build_with(
    p: &Params,
    names: &Names,
    w: &dyn WeightSource,
    eos: Option<i64>,
) -> Result<Model, ArchError> {
    let mut b = Builder::new("llama", w);
    let ids = b.token_input("input_ids")?;
    let batch_seq = vec![Dim::Sym("batch".into()), Dim::Sym("seq".into())];
    let positions = b.input("position_ids", DType::I64, batch_seq);
    let rope = rope_tables(&mut b, p, positions)?;
    let quantized = dequantize_blocks(&mut b, &weight_names(p, names, w))?;
    b.set_scope("embed");
    let x = b.embedding(names.embed, ids)?;
    let mut h = b.rows(x)?;

    let spec = AttnSpec {
        heads: p.heads,
        kv_heads: p.kv_heads,
        head_dim: p.head_dim,
        causal: true,
    };
    let mut outputs = Vec::with_capacity(2 * p.layers);
    for i in 0..p.layers {
        let [attn_norm, q, k, v, o, mlp_norm, gate, up, down] = layer_names(names, i);
        let past = b.past_kv(i, p.kv_heads, p.head_dim);
        b.set_scope(&format!("layer.{i}"));
        let n = b.rms_norm(h, &attn_norm, p.rms_eps)?;
        let q = b.linear(n, &q)?;
        let q = rope.rotate(&mut b, q, p.heads)?;
        let k = b.linear(n, &k)?;
        let k = rope.rotate(&mut b, k, p.kv_heads)?;
        let v = b.linear(n, &v)?;
        let att = b.attention(q, k, v, &spec, None, Some(past))?;
        let o = b.linear(att.y, &o)?;
        h = b.op("Add", &[h, o], vec![])?;
        let n = b.rms_norm(h, &mlp_norm, p.rms_eps)?;
        let g = b.linear(n, &gate)?;
        let g = b.silu(g)?;
        let u = b.linear(n, &up)?;
        let m = b.op("Mul", &[g, u], vec![])?;
        let d = b.linear(m, &down)?;
        h = b.op("Add", &[h, d], vec![])?;
        outputs.push((format!("present.{i}.key"), att.present.key));
        outputs.push((format!("present.{i}.value"), att.present.value));
    }
    b.set_scope("head");
    let h = b.rms_norm(h, names.norm, p.rms_eps)?;
    let logits = b.linear(h, head_prefix(names, w))?;
    b.set_scope("");
    let logits = b.unrows(logits)?;
    let mut named: Vec<(&str, OutletId)> = vec![("logits", logits)];
    named.extend(outputs.iter().map(|(n, o)| (n.as_str(), *o)));
    let eos = eos.map(|id| id.to_string());
    let mut meta = vec![("architecture", "LlamaForCausalLM")];
    meta.extend(eos.as_deref().map(|id| ("eos_token_id", id)));
    let mut model = b.finish(&named, &meta)?;
    if quantized {
        model.opsets.insert(EGRET_DOMAIN.to_string(), 1);
    }
    Ok(model)
}

/// The nine per-layer names of layer `i` (see [`Names::parts`]).
fn layer_names(names: &Names, i: usize) -> [String; 9] {
    names.parts.map(|part| format!("{}{i}.{part}", names.layer))
}

/// The LM head's prefix: its own weight, or the embedding table when tied.
fn head_prefix<'n>(names: &'n Names, w: &dyn WeightSource) -> &'n str {
    if w.contains(&format!("{}.weight", names.head)) {
        names.head
    } else {
        names.embed.strip_suffix(".weight").unwrap_or(names.embed)
    }
}

/// Every weight the graph reads, by full name.
fn weight_names(p: &Params, names: &Names, w: &dyn WeightSource) -> Vec<String> {
    let mut all = vec![
        names.embed.to_string(),
        names.norm.to_string(),
        format!("{}.weight", head_prefix(names, w)),
    ];
    for i in 0..p.layers {
        for n in layer_names(names, i) {
            all.push(if n.ends_with(".weight") {
                n
            } else {
                format!("{n}.weight")
            });
        }
    }
    all
}

/// Put each block-quantized weight among `names` into the graph as
/// `egret::DequantizeBlocks(blocks)`, so the IR keeps the blocks (for passes,
/// exporters and block kernels) while every consumer sees f32; later
/// [`Builder::weight`] calls return the dequantized value (tied weights share
/// it). Returns whether any weight was quantized.
///
/// This is `Builder::weight`'s job for any GGUF architecture; it lives here until
/// the builder grows it (see the egret-frontends report).
fn dequantize_blocks(b: &mut Builder<'_>, names: &[String]) -> Result<bool, ArchError> {
    let mut any = false;
    for name in names {
        if b.loaded.contains_key(name) || !b.weights.contains(name) {
            continue;
        }
        let t = b.weights.get(name)?;
        if !matches!(t.dtype(), DType::Block(_)) {
            continue;
        }
        b.used.insert(name.clone());
        let blocks = b.g.add_const(name, t);
        let node = format!("{name}.dequantize");
        b.used.insert(node.clone());
        let call = OpCall {
            domain: EGRET_DOMAIN.into(),
            ..OpCall::new("DequantizeBlocks")
        };
        let f32s =
            b.g.call(&node, call, &[Some(blocks)], 1)
                .map_err(|source| ArchError::Ir { node, source })?[0];
        b.loaded.insert(name.clone(), f32s);
        any = true;
    }
    Ok(any)
}

/// Rotary position embedding: the tables and the positions they are read at.
struct Rope {
    cos: OutletId,
    sin: OutletId,
    positions: OutletId,
    rope_dim: usize,
}

/// The rotary tables `cos`, `sin`: `[max_positions, rope_dim / 2]` f32 with
/// entry `[p, j] = cos|sin(p · theta^(-2j / rope_dim))`, computed in f64.
fn rope_tables(b: &mut Builder<'_>, p: &Params, positions: OutletId) -> Result<Rope, ArchError> {
    let half = p.rope_dim / 2;
    let inv: Vec<f64> = (0..half)
        .map(|j| p.rope_theta.powf(-((2 * j) as f64) / p.rope_dim as f64))
        .collect();
    let angles = |f: fn(f64) -> f64| -> Vec<f32> {
        (0..p.max_positions)
            .flat_map(|pos| inv.iter().map(move |&w| f(pos as f64 * w) as f32))
            .collect()
    };
    let mut table = |what: &str, v: Vec<f32>| -> Result<OutletId, ArchError> {
        let t =
            Tensor::from_vec(vec![p.max_positions, half], v).map_err(|source| ArchError::Ir {
                node: what.into(),
                source,
            })?;
        Ok(b.constant(what, t))
    };
    Ok(Rope {
        cos: table("rope_cos", angles(f64::cos))?,
        sin: table("rope_sin", angles(f64::sin))?,
        positions,
        rope_dim: p.rope_dim,
    })
}

impl Rope {
    /// ONNX `RotaryEmbedding` (HF half-split layout) on rows
    /// `[tokens, heads · head_dim]`; the result is `[batch, seq, heads · head_dim]`.
    fn rotate(
        &self,
        b: &mut Builder<'_>,
        x: OutletId,
        heads: usize,
    ) -> Result<OutletId, ArchError> {
        let x = b.unrows(x)?;
        let attrs = vec![
            ("num_heads", Attr::Int(heads as i64)),
            ("rotary_embedding_dim", Attr::Int(self.rope_dim as i64)),
            ("interleaved", Attr::Int(0)),
        ];
        b.op(
            "RotaryEmbedding",
            &[x, self.cos, self.sin, self.positions],
            attrs,
        )
    }
}

/// The weights of a llama GGUF file, with the rows of `attn_q` / `attn_k` put
/// back in HF order (see the module docs).
pub struct GgufWeights<'a> {
    /// The file.
    pub file: &'a GgufFile,
    /// Query heads (the permutation of `attn_q` works per head).
    pub heads: usize,
    /// Key/value heads (for `attn_k`).
    pub kv_heads: usize,
}

impl GgufWeights<'_> {
    /// Heads of the permuted projection `name`, if it is one.
    fn permuted_heads(&self, name: &str) -> Option<usize> {
        let part = name.strip_prefix("blk.")?.split_once('.')?.1;
        match part {
            "attn_q.weight" => Some(self.heads),
            "attn_k.weight" => Some(self.kv_heads),
            _ => None,
        }
    }
}

impl WeightSource for GgufWeights<'_> {
    fn get(&self, name: &str) -> Result<Tensor, ArchError> {
        if !self.file.has_tensor(name) {
            return Err(ArchError::MissingWeight(name.to_string()));
        }
        let t = self.file.tensor(name).map_err(|e| ArchError::BadWeight {
            name: name.to_string(),
            msg: e.to_string(),
        })?;
        match self.permuted_heads(name) {
            Some(h) => unpermute_rows(&t, h).map_err(|msg| ArchError::BadWeight {
                name: name.to_string(),
                msg,
            }),
            None => Ok(t),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.file.has_tensor(name)
    }
}

/// Undo llama.cpp's `permute`: within each of the `heads` row groups of a
/// `[heads · d, in]` weight, GGUF row `2i + t` is HF row `t · d/2 + i`. Rows are
/// moved whole, so any dtype (block formats included) works.
pub fn unpermute_rows(t: &Tensor, heads: usize) -> Result<Tensor, String> {
    reorder_rows(t, heads, |h, d, r| h * d + 2 * (r % (d / 2)) + r / (d / 2))
}

/// llama.cpp's `permute`, the inverse of [`unpermute_rows`] (what a GGUF
/// writer applies to HF-ordered `attn_q` / `attn_k` weights).
pub fn permute_rows(t: &Tensor, heads: usize) -> Result<Tensor, String> {
    reorder_rows(t, heads, |h, d, r| h * d + (r % 2) * (d / 2) + r / 2)
}

/// Output row `h·d + r` of a `[heads · d, in]` weight (`d` rows per head) is
/// input row `source(h, d, r)`; whole rows move.
fn reorder_rows(
    t: &Tensor,
    heads: usize,
    source: impl Fn(usize, usize, usize) -> usize,
) -> Result<Tensor, String> {
    let (rows, cols) = match t.shape() {
        [r, c] => (*r, *c),
        s => return Err(format!("expected a 2-D weight, got shape {s:?}")),
    };
    if heads == 0 || rows % heads != 0 || !(rows / heads).is_multiple_of(2) {
        return Err(format!(
            "{rows} rows do not split into {heads} heads of even size"
        ));
    }
    let row_bytes = t
        .dtype()
        .storage_bytes(&[cols])
        .ok_or_else(|| format!("cannot size a row of {cols} {} elements", t.dtype()))?;
    let src = t.bytes();
    if src.len() != rows * row_bytes {
        return Err(format!(
            "{} bytes for {rows} rows of {row_bytes}",
            src.len()
        ));
    }
    let d = rows / heads;
    let mut out = Vec::with_capacity(src.len());
    for row in 0..rows {
        let from = source(row / d, d, row % d);
        out.extend_from_slice(&src[from * row_bytes..(from + 1) * row_bytes]);
    }
    Tensor::from_bytes(t.dtype(), t.shape().to_vec(), &out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, d/2, in).swapaxes(1, 2).reshape(w.shape).
        let (heads, d, cols) = (2, 4, 3);
        let hf: Vec<f32> = (0..heads * d * cols).map(|x| x as f32).collect();
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for t in 0..2 {
                for i in 0..d / 2 {
                    for c in 0..cols {
                        gguf[((h * d) + 2 * i + t) * cols + c] =
                            hf[((h * d) + t * (d / 2) + i) * cols + c];
                    }
                }
            }
        }
        let g = Tensor::from_vec(vec![heads * d, cols], gguf).unwrap();
        let back = unpermute_rows(&g, heads).unwrap();
        assert_eq!(permute_rows(&back, heads).unwrap().bytes(), g.bytes());
        assert_eq!(back.as_slice::<f32>().unwrap(), &hf[..]);
        assert!(unpermute_rows(&g, 3).is_err());
        let flat = Tensor::from_vec(vec![24], vec![0f32; 24]).unwrap();
        assert!(unpermute_rows(&flat, 2).is_err());
    }

    #[test]
    fn params_are_read_from_config_and_validated() {
        let cfg = HfConfig::parse(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":576,
                "num_attention_heads":9,"num_key_value_heads":3,"num_hidden_layers":30,
                "rope_theta":100000,"rms_norm_eps":1e-5,"max_position_embeddings":8192}"#,
        )
        .unwrap();
        let p = params_from_config(&cfg).unwrap();
        assert_eq!(
            (p.layers, p.heads, p.kv_heads, p.head_dim, p.rope_dim),
            (30, 9, 3, 64, 64)
        );
        assert_eq!((p.rope_theta, p.rms_eps), (100_000.0, 1e-5));
        let bad = HfConfig::parse(
            r#"{"hidden_size":576,"num_attention_heads":9,"num_key_value_heads":4,
                "num_hidden_layers":1}"#,
        )
        .unwrap();
        assert!(params_from_config(&bad).is_err());
        let scaled = HfConfig::parse(
            r#"{"hidden_size":64,"num_attention_heads":1,"num_hidden_layers":1,
                "rope_scaling":{"type":"llama3"}}"#,
        )
        .unwrap();
        assert!(params_from_config(&scaled).is_err());
    }
}
