//! `BertModel` (encoder only, e.g. sentence-transformers' MiniLM).
//!
//! Inputs `input_ids`, `attention_mask`, `token_type_ids` (all `[batch, seq]`
//! i64, as HF's ONNX exports have them); output `last_hidden_state`
//! `[batch, seq, hidden]`. Weights may carry a `bert.` prefix (checkpoints of
//! `BertFor*` heads); the head itself is not built.

use super::{ArchError, AttnSpec, Builder, HfConfig, WeightSource};
use egret_ir::{DType, Dim, Model};

/// Build `BertModel` from its config and weights.
pub fn build(cfg: &HfConfig, w: &dyn WeightSource) -> Result<Model, ArchError> {
    let hidden = cfg.dim(&["hidden_size"])?;
    let heads = cfg.dim(&["num_attention_heads"])?;
    let layers = cfg.dim(&["num_hidden_layers"])?;
    let eps = cfg.float_or(&["layer_norm_eps"], 1e-12)?;
    let act = cfg.str_or(&["hidden_act"], "gelu")?;
    let pos_kind = cfg.str_or(&["position_embedding_type"], "absolute")?;
    if pos_kind != "absolute" {
        return Err(ArchError::Unsupported(format!(
            "BERT position_embedding_type `{pos_kind}`"
        )));
    }
    if hidden % heads != 0 {
        return Err(ArchError::Config(format!(
            "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
        )));
    }
    let p = if w.contains("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };

    let mut b = Builder::new("bert", w);
    let ids = b.token_input("input_ids")?;
    let bs = || vec![Dim::Sym("batch".into()), Dim::Sym("seq".into())];
    let mask = b.input("attention_mask", DType::I64, bs());
    let types = b.input("token_type_ids", DType::I64, bs());

    b.set_scope("embeddings");
    let words = b.embedding(&format!("{p}embeddings.word_embeddings.weight"), ids)?;
    let pos_ids = b.positions(None)?;
    let pos = b.embedding(
        &format!("{p}embeddings.position_embeddings.weight"),
        pos_ids,
    )?;
    let typ = b.embedding(
        &format!("{p}embeddings.token_type_embeddings.weight"),
        types,
    )?;
    let x = b.op("Add", &[words, pos], vec![])?;
    let x = b.op("Add", &[x, typ], vec![])?;
    let x = b.rows(x)?;
    let mut h = b.layer_norm(x, &format!("{p}embeddings.LayerNorm"), eps)?;

    let key_mask = b.key_mask(mask)?;
    let spec = AttnSpec {
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        causal: false,
    };
    for i in 0..layers {
        let l = format!("{p}encoder.layer.{i}");
        b.set_scope(&format!("layer.{i}"));
        let q = b.linear(h, &format!("{l}.attention.self.query"))?;
        let k = b.linear(h, &format!("{l}.attention.self.key"))?;
        let v = b.linear(h, &format!("{l}.attention.self.value"))?;
        let att = b.attention(q, k, v, &spec, Some(key_mask), None)?;
        let o = b.linear(att.y, &format!("{l}.attention.output.dense"))?;
        let o = b.op("Add", &[o, h], vec![])?;
        h = b.layer_norm(o, &format!("{l}.attention.output.LayerNorm"), eps)?;
        let m = b.linear(h, &format!("{l}.intermediate.dense"))?;
        let m = b.activation(m, act)?;
        let m = b.linear(m, &format!("{l}.output.dense"))?;
        let m = b.op("Add", &[m, h], vec![])?;
        h = b.layer_norm(m, &format!("{l}.output.LayerNorm"), eps)?;
    }
    b.set_scope("");
    let out = b.unrows(h)?;
    b.finish(
        &[("last_hidden_state", out)],
        &[("architecture", "BertModel")],
    )
}
