//! `GPT2LMHeadModel`: pre-norm causal decoder with learned positions, fused QKV
//! `Conv1D` projections (`[in, out]` weights) and an LM head tied to `wte`.
//!
//! Input `input_ids` `[batch, seq]` i64; output `logits` `[batch, seq, vocab]`.
//! Weights may carry the `transformer.` prefix that `GPT2LMHeadModel` saves.

use super::{ArchError, AttnSpec, Builder, HfConfig, WeightLayout, WeightSource};
use egret_ir::{Attr, Model};

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

    let mut b = Builder::new("gpt2", w);
    let ids = b.token_input("input_ids")?;
    b.set_scope("embeddings");
    let tok = b.embedding(&format!("{p}wte.weight"), ids)?;
    let pos_ids = b.positions(None)?;
    let pos = b.embedding(&format!("{p}wpe.weight"), pos_ids)?;
    let x = b.op("Add", &[tok, pos], vec![])?;
    let mut h = b.rows(x)?;

    let spec = AttnSpec {
        heads,
        kv_heads: heads,
        head_dim: width / heads,
        causal: true,
    };
    let split = b.ints(&[width as i64; 3])?;
    for i in 0..layers {
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
        let att = b.attention(parts[0], parts[1], parts[2], &spec, None, None)?;
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
    b.finish(
        &[("logits", logits)],
        &[("architecture", "GPT2LMHeadModel")],
    )
}
