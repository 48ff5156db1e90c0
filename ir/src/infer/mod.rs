//! Shape and dtype inference.
//!
//! Every op egret supports has an [`InferFn`] registered in [`lookup`]. Inference
//! works on [`InputFact`]s: each input's static type plus, when the producer is a
//! constant (or a folded shape computation), its value. Shape-typed inputs such as
//! `Reshape`'s target shape therefore resolve to concrete or symbolic dims.
//!
//! The set of ops with an inference rule is egret's definition of "supported":
//! frontends reject a model whose ops are not all in it, listing every missing
//! `(domain, op, opset)` at once.

mod activation;
mod attention;
mod cast;
pub mod common;
pub use cast::onnx_dtype;
mod control;
mod conv;
pub mod egret_ops;
mod elementwise;
mod gather;
mod linalg;
mod loss;
mod norm;
mod pool;
mod quant;
mod random;
mod reduce;
mod resize;
mod rnn;
mod sequence;
mod shape;
mod signal;
mod statespace;
mod strings;
mod tfidf;
mod training;
mod tree;
mod vision;

use crate::error::IrError;
use crate::graph::{Graph, Op, OpCall};
use crate::shape::ValueType;
use crate::tensor::Tensor;

/// What is statically known about one input of a node.
#[derive(Clone, Copy, Debug)]
pub struct InputFact<'a> {
    /// The input's static type.
    pub ty: &'a ValueType,
    /// Its value, when known at compile time.
    pub value: Option<&'a Tensor>,
}

/// Everything an inference rule sees.
pub struct InferCtx<'a> {
    /// The op being inferred.
    pub call: &'a OpCall,
    /// Its inputs, `None` where an optional input is absent.
    pub inputs: &'a [Option<InputFact<'a>>],
    /// How many outputs the node declares.
    pub num_outputs: usize,
}

/// An inference rule: the output types of a node from its input facts.
pub type InferFn = fn(&InferCtx<'_>) -> Result<Vec<ValueType>, String>;

/// The inference rule for `(domain, op_type)`, if egret supports that op.
pub fn lookup(domain: &str, op_type: &str) -> Option<InferFn> {
    match domain {
        "" | "ai.onnx" => None
            .or_else(|| elementwise::rule(op_type))
            .or_else(|| activation::rule(op_type))
            .or_else(|| cast::rule(op_type))
            .or_else(|| shape::rule(op_type))
            .or_else(|| gather::rule(op_type))
            .or_else(|| reduce::rule(op_type))
            .or_else(|| sequence::rule(op_type))
            .or_else(|| linalg::rule(op_type))
            .or_else(|| conv::rule(op_type))
            .or_else(|| pool::rule(op_type))
            .or_else(|| norm::rule(op_type))
            .or_else(|| resize::rule(op_type))
            .or_else(|| quant::rule(op_type))
            .or_else(|| rnn::rule(op_type))
            .or_else(|| control::rule(op_type))
            .or_else(|| attention::rule(op_type))
            .or_else(|| signal::rule(op_type))
            .or_else(|| statespace::rule(op_type))
            .or_else(|| loss::rule(op_type))
            .or_else(|| vision::rule(op_type))
            .or_else(|| strings::rule(op_type))
            .or_else(|| tfidf::rule(op_type))
            .or_else(|| random::rule(op_type)),
        "ai.onnx.ml" => strings::ml_rule(op_type).or_else(|| tree::ml_rule(op_type)),
        "ai.onnx.preview" => attention::preview_rule(op_type),
        egret_ops::DOMAIN => egret_ops::rule(op_type),
        "ai.onnx.preview.training" => training::rule(op_type),
        _ => None,
    }
}

/// Infer the output types of one call. Errors carry the node name and op.
pub fn infer_call(
    node_name: &str,
    call: &OpCall,
    inputs: &[Option<InputFact<'_>>],
    num_outputs: usize,
) -> Result<Vec<ValueType>, IrError> {
    let err = |msg: String| IrError::Infer {
        node: node_name.to_string(),
        op: call.op_type.clone(),
        msg,
    };
    let f = lookup(&call.domain, &call.op_type)
        .ok_or_else(|| err(format!("unsupported op {}::{}", call.domain, call.op_type)))?;
    let ctx = InferCtx {
        call,
        inputs,
        num_outputs,
    };
    let out = f(&ctx).map_err(err)?;
    if out.len() < num_outputs {
        return Err(IrError::Infer {
            node: node_name.into(),
            op: call.op_type.clone(),
            msg: format!(
                "inferred {} outputs, node declares {num_outputs}",
                out.len()
            ),
        });
    }
    Ok(out)
}

/// Re-infer every node's output types in topological order, in place.
pub fn infer_graph(g: &mut Graph) -> Result<(), IrError> {
    for id in g.topo_order()? {
        let node = g.node(id);
        let Op::Call(call) = &node.op else { continue };
        let facts: Vec<Option<InputFact<'_>>> = node
            .inputs()
            .iter()
            .map(|i| {
                i.map(|o| InputFact {
                    ty: g.value_type(o),
                    value: g.const_value(o),
                })
            })
            .collect();
        let tys = infer_call(node.label(), call, &facts, node.outputs.len())?;
        let node = g.node_mut(id);
        for (info, ty) in node.outputs.iter_mut().zip(tys) {
            info.ty = ty;
        }
    }
    Ok(())
}
