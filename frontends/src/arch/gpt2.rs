//! `GPT2LMHeadModel`: pre-norm causal decoder with learned positions, fused QKV
//! `Conv1D` projections (`[in, out]` weights) and an LM head tied to `wte`.
//!
//! The graph follows the decoder convention of `egret_runtime::generate`: inputs
//! `input_ids` `[batch, seq]` i64 and `past_key_values.{i}.key` / `.value`
//! `[batch, heads, past, head_dim]` (empty for a plain forward pass); outputs
//! `logits` `[batch, seq, vocab]` and `present.{i}.key` / `.value`. Positions
//! continue after the cache. Weights may carry the `transformer.` prefix that
//! `GPT2LMHeadModel` saves.

use super::{ArchError, AttnSpec, Builder, HfConfig, Kv, WeightLayout, WeightSource};
use egret_ir::{Attr, Model, OutletId};

/// Build `GPT2LMHeadModel` from its config and weights.
pub fn build(cfg: &HfConfig, w: &dyn WeightSource) -> Result<Model, ArchError> {
    let width = cfg.dim(&["n_embd", "hidden_size"])?;
    let heads = cfg.dim(&["n_head", "num_attention_heads"])?;
    let layers = cfg.dim(&["n_layer", "num_hidden_layers"])?;
    let eps = cfg.float_or(&["layer_norm_epsilon"], 1e-5)?;
    let act = cfg.str_or(&["activation_function"], "gelu_new")?;
    if width % heads != 0 {
        return Err(ArchError::Config(format!(
            "n_embd {width} is not a multiple of n_head {heads}"
        )));
    }
    let p = if w.contains("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };

    let head_dim = width / heads;
    let mut b = Builder::new("gpt2", w);
    let ids = b.token_input("input_ids")?;
    let past: Vec<Kv> = (0..layers).map(|i| b.past_kv(i, heads, head_dim)).collect();
    b.set_scope("embeddings");
    let tok = b.embedding(&format!("{p}wte.weight"), ids)?;
    let offset = match past.first() {
        Some(&kv) => Some(b.cache_len(kv)?),
        None => None,
    };
    let pos_ids = b.positions(offset)?;
    let pos = b.embedding(&format!("{p}wpe.weight"), pos_ids)?;
    let x = b.op("Add", &[tok, pos], vec![])?;
    let mut h = b.rows(x)?;

    let spec = AttnSpec {
        heads,
        kv_heads: heads,
        head_dim,
        causal: true,
    };
    let split = b.ints(&[width as i64; 3])?;
    let mut outputs = Vec::with_capacity(1 + 2 * layers);
    for (i, &cache) in past.iter().enumerate() {
        let l = format!("{p}h.{i}");
        b.set_scope(&format!("layer.{i}"));
        let n = b.layer_norm(h, &format!("{l}.ln_1"), eps)?;
        let qkv = b.linear_as(n, &format!("{l}.attn.c_attn"), WeightLayout::InOut)?;
        let parts = b.op_n(
            "Split",
            &[Some(qkv), Some(split)],
            vec![("axis", Attr::Int(1))],
            3,
        )?;
        let att = b.attention(parts[0], parts[1], parts[2], &spec, None, Some(cache))?;
        outputs.push((format!("present.{i}.key"), att.present.key));
        outputs.push((format!("present.{i}.value"), att.present.value));
        let o = b.linear_as(att.y, &format!("{l}.attn.c_proj"), WeightLayout::InOut)?;
        h = b.op("Add", &[h, o], vec![])?;
        let n = b.layer_norm(h, &format!("{l}.ln_2"), eps)?;
        let m = b.linear_as(n, &format!("{l}.mlp.c_fc"), WeightLayout::InOut)?;
        let m = b.activation(m, act)?;
        let m = b.linear_as(m, &format!("{l}.mlp.c_proj"), WeightLayout::InOut)?;
        h = b.op("Add", &[h, m], vec![])?;
    }
    b.set_scope("head");
    let h = b.layer_norm(h, &format!("{p}ln_f"), eps)?;
    let head = if b.has_weight("lm_head.weight") {
        "lm_head"
    } else {
        &format!("{p}wte")
    };
    let logits = b.linear(h, head)?;
    b.set_scope("");
    let logits = b.unrows(logits)?;
    outputs.insert(0, ("logits".to_string(), logits));
    let named: Vec<(&str, OutletId)> = outputs.iter().map(|(n, o)| (n.as_str(), *o)).collect();
    b.finish(&named, &[("architecture", "GPT2LMHeadModel")])
}
