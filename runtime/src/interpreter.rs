//! The reference interpreter: runs a graph node by node in topological order.
//!
//! It is egret's correctness oracle, so it favours clarity over speed, except
//! that heavy linear algebra goes through a fast GEMM so real models finish in
//! reasonable time. Values are dropped as soon as their last consumer has run.

use crate::error::{Result, RuntimeError};
use crate::registry::{node_error, registry, Kernel, KernelCtx, SubgraphRunner};
use egret_ir::Value;
use egret_ir::{Attr, Graph, Model, NodeId, Op, OutletId};
use std::collections::{BTreeSet, HashMap};

/// A graph prepared for execution: schedule, kernels and value lifetimes.
pub struct Interpreter<'g> {
    graph: &'g Graph,
    order: Vec<NodeId>,
    kernels: HashMap<NodeId, Kernel>,
    /// For each outlet, how many node inputs read it (graph outputs pin it).
    uses: HashMap<OutletId, usize>,
}

/// Collect `(domain, op)` pairs with no kernel, recursing into subgraphs.
fn missing_kernels(g: &Graph, out: &mut BTreeSet<(String, String)>) {
    for id in g.node_ids() {
        if let Op::Call(c) = &g.node(id).op {
            if registry().get(&c.domain, &c.op_type).is_none() {
                out.insert((c.domain.clone(), c.op_type.clone()));
            }
            for a in c.attrs.0.values() {
                match a {
                    Attr::Graph(sub) => missing_kernels(sub, out),
                    Attr::Graphs(subs) => subs.iter().for_each(|s| missing_kernels(s, out)),
                    _ => {}
                }
            }
        }
    }
}

/// Every op of `model` (subgraphs included) that has no kernel, as
/// `(domain, op, opset)`. Empty when the interpreter can run the model.
pub fn unsupported_ops(model: &Model) -> Vec<(String, String, i64)> {
    let mut missing = BTreeSet::new();
    missing_kernels(&model.graph, &mut missing);
    missing
        .into_iter()
        .map(|(d, o)| {
            let v = model.opsets.get(&d).copied().unwrap_or(0);
            (d, o, v)
        })
        .collect()
}

impl<'g> Interpreter<'g> {
    /// Prepare a model's main graph. Fails with one error listing every unsupported op.
    pub fn for_model(model: &'g Model) -> Result<Interpreter<'g>> {
        let missing = unsupported_ops(model);
        if !missing.is_empty() {
            return Err(RuntimeError::Unsupported(missing));
        }
        Interpreter::new(&model.graph)
    }

    /// Prepare a graph.
    pub fn new(graph: &'g Graph) -> Result<Interpreter<'g>> {
        let order = graph.topo_order()?;
        let mut kernels = HashMap::new();
        let mut uses: HashMap<OutletId, usize> = HashMap::new();
        let mut missing = BTreeSet::new();
        for &id in &order {
            let node = graph.node(id);
            if let Op::Call(c) = &node.op {
                match registry().get(&c.domain, &c.op_type) {
                    Some(k) => {
                        kernels.insert(id, k);
                    }
                    None => {
                        missing.insert((c.domain.clone(), c.op_type.clone(), 0));
                    }
                }
            }
            for o in node.inputs().iter().flatten() {
                *uses.entry(*o).or_default() += 1;
            }
        }
        if !missing.is_empty() {
            return Err(RuntimeError::Unsupported(missing.into_iter().collect()));
        }
        Ok(Interpreter {
            graph,
            order,
            kernels,
            uses,
        })
    }

    /// The graph being run.
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// Run with inputs given in graph-input order.
    pub fn run(&self, inputs: Vec<Value>) -> Result<Vec<Value>> {
        self.run_observed(inputs, &mut |_, _| {})
    }

    /// Run with inputs given by name. Unknown or missing names are errors.
    pub fn run_named(&self, inputs: HashMap<String, Value>) -> Result<Vec<Value>> {
        self.run_named_observed(inputs, &mut |_, _| {})
    }

    /// [`Interpreter::run_named`] with an observer (see [`Interpreter::run_observed`]).
    pub fn run_named_observed(
        &self,
        mut inputs: HashMap<String, Value>,
        observe: &mut dyn FnMut(NodeId, &[Value]),
    ) -> Result<Vec<Value>> {
        let mut ordered = Vec::with_capacity(self.graph.inputs.len());
        for &o in &self.graph.inputs {
            let name = self.graph.value_name(o);
            let v = inputs.remove(name).ok_or_else(|| RuntimeError::Input {
                name: name.to_string(),
                msg: "not provided".into(),
            })?;
            ordered.push(v);
        }
        if let Some(extra) = inputs.keys().next() {
            return Err(RuntimeError::Input {
                name: extra.clone(),
                msg: "not an input of the graph".into(),
            });
        }
        self.run_observed(ordered, observe)
    }

    /// Run, calling `observe(node, outputs)` for every graph input (its input
    /// node, one value) and after every operator node. Used by calibration
    /// (a first layer reads a graph input) and by debugging tools that diff
    /// intermediate values.
    pub fn run_observed(
        &self,
        inputs: Vec<Value>,
        observe: &mut dyn FnMut(NodeId, &[Value]),
    ) -> Result<Vec<Value>> {
        let g = self.graph;
        if inputs.len() != g.inputs.len() {
            return Err(RuntimeError::msg(format!(
                "graph `{}` takes {} inputs, {} given",
                g.name,
                g.inputs.len(),
                inputs.len()
            )));
        }
        let mut env: HashMap<OutletId, Value> = HashMap::new();
        let mut remaining = self.uses.clone();
        for (&o, v) in g.inputs.iter().zip(inputs) {
            check_input(g, o, &v)?;
            observe(o.node, std::slice::from_ref(&v));
            env.insert(o, v);
        }
        let pinned: BTreeSet<OutletId> = g.outputs.iter().copied().collect();
        for &id in &self.order {
            let node = g.node(id);
            match &node.op {
                Op::Input => continue,
                Op::Const(t) => {
                    env.insert(OutletId::new(id, 0), Value::Tensor(t.clone()));
                }
                Op::Call(call) => {
                    let mut args = Vec::with_capacity(node.inputs().len());
                    for i in node.inputs() {
                        args.push(match i {
                            None => None,
                            Some(o) => Some(env.get(o).cloned().ok_or_else(|| {
                                RuntimeError::msg(format!(
                                    "value {} not computed",
                                    g.value_name(*o)
                                ))
                            })?),
                        });
                    }
                    let ctx = KernelCtx {
                        node,
                        call,
                        runner: self,
                    };
                    let outs =
                        (self.kernels[&id])(&ctx, &args).map_err(|e| node_error(node, call, e))?;
                    drop(args);
                    if outs.len() < node.outputs.len() {
                        return Err(node_error(
                            node,
                            call,
                            RuntimeError::msg(format!(
                                "kernel produced {} outputs, node declares {}",
                                outs.len(),
                                node.outputs.len()
                            )),
                        ));
                    }
                    observe(id, &outs);
                    for (slot, v) in outs.into_iter().enumerate().take(node.outputs.len()) {
                        env.insert(OutletId::new(id, slot), v);
                    }
                }
            }
            for o in node.inputs().iter().flatten() {
                let r = remaining.get_mut(o).expect("use counted");
                *r -= 1;
                if *r == 0 && !pinned.contains(o) {
                    env.remove(o);
                }
            }
        }
        g.outputs
            .iter()
            .map(|o| {
                env.get(o).cloned().ok_or_else(|| {
                    RuntimeError::msg(format!("output {} not computed", g.value_name(*o)))
                })
            })
            .collect()
    }
}

/// Check a supplied input against the graph input's declared dtype and rank.
fn check_input(g: &Graph, o: OutletId, v: &Value) -> Result<()> {
    let name = g.value_name(o);
    if let (Some(tt), Value::Tensor(t)) = (g.value_type(o).as_tensor(), v) {
        if tt.dtype != t.dtype() {
            return Err(RuntimeError::Input {
                name: name.into(),
                msg: format!("expected {}, got {}", tt.dtype, t.dtype()),
            });
        }
        if let Some(s) = &tt.shape {
            let ok = s.rank() == t.rank()
                && s.dims()
                    .iter()
                    .zip(t.shape())
                    .all(|(d, &n)| d.known().is_none_or(|k| k == n));
            if !ok {
                return Err(RuntimeError::Input {
                    name: name.into(),
                    msg: format!("expected shape {s}, got {:?}", t.shape()),
                });
            }
        }
    }
    Ok(())
}

impl SubgraphRunner for Interpreter<'_> {
    fn run_subgraph(&self, g: &Graph, inputs: Vec<Value>) -> Result<Vec<Value>> {
        Interpreter::new(g)?.run(inputs)
    }
}
