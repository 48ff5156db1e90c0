//! A KV-cache decoder as one shape-specialised C program.
//!
//! A decoder graph (the convention of `egret_runtime::generate`: inputs
//! `past_key_values.{i}.key/value [batch, kv_heads, past, head_dim]`, outputs
//! `present.{i}.*` with `past + seq` positions) has a different shape at every
//! step, and a C program has one. [`fixed_cache`] makes the cache a fixed
//! number of slots instead: every `Attention` that reads a past key/value
//! also reads a new bool input [`CACHE_MASK`] `[seq, slots + seq]` (true: the
//! key is visible; causality among the new tokens still comes from
//! `is_causal`). The program is then built once for `past = slots`, and the
//! caller keeps the cache: slots `0..len` hold the keys/values of the tokens
//! so far (mask true), the rest are masked, and after each step the new
//! `present` rows (`slots..slots + seq`) are copied into slots `len..`. The
//! positions come from `position_ids`, so keys keep their real rotary
//! positions; attention is a masked sum over keys, so where a key sits in the
//! cache does not matter.

use super::EmitError;
use egret_ir::{DType, Dim, Graph, Shape, ValueType};

/// The name of the graph input [`fixed_cache`] adds.
pub const CACHE_MASK: &str = "cache_mask";

/// The symbolic dims of [`CACHE_MASK`]: the new tokens, and the keys
/// (cache slots plus new tokens).
pub const CACHE_MASK_DIMS: [&str; 2] = ["cache_mask_rows", "cache_mask_keys"];

/// `g` with the bool input [`CACHE_MASK`] as the mask of every `Attention`
/// that reads a past key/value (see the module docs). An `Attention` that
/// has a mask already, or a graph without a past, is unsupported.
pub fn fixed_cache(g: &Graph) -> Result<Graph, EmitError> {
    let mut g = g.clone();
    let attention: Vec<_> = g
        .node_ids()
        .filter(|&id| {
            let node = g.node(id);
            node.op.as_call().is_some_and(|c| c.op_type == "Attention")
                && node.inputs().get(4).copied().flatten().is_some()
        })
        .collect();
    if attention.is_empty() {
        return Err(EmitError::unsupported(
            "Attention",
            "no Attention reads a past key/value (not a KV-cache decoder)",
        ));
    }
    let shape = Shape(CACHE_MASK_DIMS.map(|d| Dim::Sym(d.into())).to_vec());
    let mask = g.add_input(CACHE_MASK, ValueType::tensor(DType::Bool, Some(shape)));
    for id in attention {
        if g.node(id).inputs().get(3).copied().flatten().is_some() {
            return Err(EmitError::unsupported(
                "Attention",
                "a decoder whose attention has a mask already",
            ));
        }
        g.set_input(id, 3, Some(mask))
            .map_err(|e| EmitError::unsupported("Attention", e.to_string()))?;
    }
    Ok(g)
}
