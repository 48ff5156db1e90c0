//! The kernel registry: `(domain, op_type)` → kernel function.
//!
//! Each file in [`crate::ops`] contributes its kernels through a `register`
//! function; [`registry`] builds the table once.

use crate::error::{Result, RuntimeError};
use egret_ir::Value;
use egret_ir::{Attrs, Graph, Node, OpCall};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Runs a subgraph (the body of `If`, `Loop`, `Scan`) on the given inputs.
pub trait SubgraphRunner {
    /// Run `g` with `inputs` bound to its inputs in order; return its outputs.
    fn run_subgraph(&self, g: &Graph, inputs: Vec<Value>) -> Result<Vec<Value>>;
}

/// What a kernel sees besides its input values.
pub struct KernelCtx<'a> {
    /// The node being run.
    pub node: &'a Node,
    /// Its op call (domain, type, attributes).
    pub call: &'a OpCall,
    /// Runs subgraphs for control-flow kernels.
    pub runner: &'a dyn SubgraphRunner,
}

impl KernelCtx<'_> {
    /// The node's attributes.
    pub fn attrs(&self) -> &Attrs {
        &self.call.attrs
    }

    /// Number of outputs the node declares.
    pub fn num_outputs(&self) -> usize {
        self.node.outputs.len()
    }
}

/// A kernel: computes a node's outputs from its inputs (`None` = absent optional input).
pub type Kernel = fn(&KernelCtx<'_>, &[Option<Value>]) -> Result<Vec<Value>>;

/// The kernel table.
#[derive(Default)]
pub struct Registry {
    map: HashMap<(String, String), Kernel>,
}

impl Registry {
    /// Register a kernel for a standard-domain op.
    pub fn add(&mut self, op_type: &str, k: Kernel) {
        self.add_domain("", op_type, k);
    }

    /// Register a kernel for an op in a named domain.
    pub fn add_domain(&mut self, domain: &str, op_type: &str, k: Kernel) {
        self.map
            .insert((domain.to_string(), op_type.to_string()), k);
    }

    /// The kernel for `(domain, op_type)`.
    pub fn get(&self, domain: &str, op_type: &str) -> Option<Kernel> {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.map.get(&(d.to_string(), op_type.to_string())).copied()
    }

    /// Every registered `(domain, op_type)`, sorted.
    pub fn ops(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.map.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The global kernel table.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = Registry::default();
        crate::ops::register_all(&mut r);
        r
    })
}

/// Attach node context to an error from a kernel.
pub fn node_error(node: &Node, call: &OpCall, e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::Node { .. } | RuntimeError::Unsupported(_) => e,
        other => RuntimeError::Node {
            node: node.label().to_string(),
            op: call.op_type.clone(),
            msg: other.to_string(),
        },
    }
}
