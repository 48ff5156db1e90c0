//! Block weights read in place: a graph rewrite run before lowering.
//!
//! egret's GGUF loader puts each block-quantized weight into the graph as
//! `egret::DequantizeBlocks(blocks)` read by a plain `Gemm` or `Gather`; the
//! lowering would fold the dequantization into an f32 constant (SmolLM2's
//! 98 MB of Q4_1/Q8_0 would become 650 MB). [`read_blocks_in_place`] makes
//! those consumers `egret::MatMulBlocks` and `egret::GatherBlocks` on the
//! blocks, which dequantize on the fly to exactly the same values. The
//! optimizer's fusion rules do the same, within the e-graph's limits; this
//! rewrite is deterministic and also covers a tied LM head (a `Gemm` with
//! `transB = 1` on the embedding table).

use super::EmitError;
use egret_ir::infer::egret_ops::DOMAIN;
use egret_ir::{DType, Graph, NodeId, OpCall, OutletId};

/// The block constant `o` is the dequantization of, if it is one.
fn dequantized_blocks(g: &Graph, o: OutletId) -> Option<OutletId> {
    let node = g.node(o.node);
    let call = node.op.as_call()?;
    if call.domain != DOMAIN || call.op_type != "DequantizeBlocks" {
        return None;
    }
    let w = node.inputs().first().copied().flatten()?;
    matches!(g.const_value(w)?.dtype(), DType::Block(_)).then_some(w)
}

/// The egret op computing node `id` on block weights, and its inputs, if
/// `id` is a `Gemm` (`transA = 0`, `transB = 1`, `alpha = beta = 1`, no
/// bias or an `[N]` one) or a `Gather` (`axis = 0`) of a
/// `DequantizeBlocks` output.
fn in_place(g: &Graph, id: NodeId) -> Option<(&'static str, Vec<Option<OutletId>>)> {
    let node = g.node(id);
    let call = node.op.as_call()?;
    if !(call.domain.is_empty() || call.domain == "ai.onnx") {
        return None;
    }
    let ins = node.inputs();
    let a = |name: &str, d: i64| call.attrs.int_or(name, d).ok();
    let f = |name: &str| call.attrs.float_or(name, 1.0).ok();
    match call.op_type.as_str() {
        "Gemm" => {
            let w = dequantized_blocks(g, ins.get(1).copied().flatten()?)?;
            let plain = a("transA", 0)? == 0 && a("transB", 0)? == 1;
            (plain && f("alpha")? == 1.0 && f("beta")? == 1.0).then_some(())?;
            let n = g.const_value(w)?.shape().first().copied()?;
            let bias = ins.get(2).copied().flatten();
            if let Some(b) = bias {
                let t = g.value_type(b).as_tensor()?;
                let known = t.shape.as_ref()?.as_known()?;
                (t.dtype == DType::F32 && known == [n]).then_some(())?;
            }
            Some((
                "MatMulBlocks",
                vec![ins.first().copied().flatten(), Some(w), bias],
            ))
        }
        "Gather" => {
            let w = dequantized_blocks(g, ins.first().copied().flatten()?)?;
            (a("axis", 0)? == 0).then_some(())?;
            Some(("GatherBlocks", vec![Some(w), ins.get(1).copied().flatten()]))
        }
        _ => None,
    }
}

/// `g` with every `Gemm`/`Gather` of a `DequantizeBlocks` (see [`in_place`])
/// computed on the blocks, and the `DequantizeBlocks` nodes nothing reads
/// any more removed.
pub fn read_blocks_in_place(g: &Graph) -> Result<Graph, EmitError> {
    let mut g = g.clone();
    let ir = |e: egret_ir::IrError| EmitError::unsupported("DequantizeBlocks", e.to_string());
    let ids: Vec<NodeId> = g.node_ids().collect();
    for id in ids {
        let Some((op, ins)) = in_place(&g, id) else {
            continue;
        };
        let dequantize = g.node(id).inputs()[usize::from(op == "MatMulBlocks")];
        let name = format!("{}.blocks", g.node(id).name);
        let call = OpCall {
            domain: DOMAIN.into(),
            ..OpCall::new(op)
        };
        let new = g.call(&name, call, &ins, 1).map_err(ir)?[0];
        let old = OutletId::new(id, 0);
        let value = g.value_name(old).to_string();
        g.replace_uses(old, new).map_err(ir)?;
        g.remove_node(id);
        // The value keeps its name (a graph output such as `logits`).
        g.node_mut(new.node).outputs[0].name = value;
        if let Some(d) = dequantize {
            if g.consumers(d).is_empty() && !g.outputs.contains(&d) {
                g.remove_node(d.node);
            }
        }
    }
    Ok(g)
}
