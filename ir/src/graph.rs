//! The dataflow graph.
//!
//! A [`Graph`] is a `petgraph` `StableDiGraph` whose nodes are [`Node`]s and whose
//! edges are [`Wire`]s (producer output slot → consumer input slot). Each node
//! also lists its inputs in order as [`OutletId`]s; the edges mirror that list and
//! are kept in sync by the mutating methods here, which is why `Node::inputs` is
//! read-only from outside.
//!
//! Graph inputs are [`Op::Input`] nodes and weights are [`Op::Const`] nodes, so
//! everything a value can come from is a node.
//!
//! **Subgraphs capture explicitly.** ONNX lets an `If`/`Loop`/`Scan` body read any
//! outer value by name. egret's frontends rewrite those captures into explicit
//! operands: the control-flow node gets the captured values as extra trailing
//! inputs, and each body graph gets matching extra trailing `Input` nodes (listed
//! in [`Graph::inputs`] after the op's own formal inputs). A graph is therefore
//! closed, and no pass needs name-based scoping.

use crate::attr::Attrs;
use crate::error::IrError;
use crate::shape::ValueType;
use crate::tensor::Tensor;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::BTreeMap;

/// Identifies a node in a [`Graph`].
pub type NodeId = NodeIndex<u32>;

/// One output of one node: the unit of dataflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutletId {
    /// Producing node.
    pub node: NodeId,
    /// Output slot of that node.
    pub slot: usize,
}

impl OutletId {
    /// Outlet `slot` of `node`.
    pub fn new(node: NodeId, slot: usize) -> OutletId {
        OutletId { node, slot }
    }
}

/// An edge: the producer's output slot feeds the consumer's input slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wire {
    /// Output slot on the producer.
    pub from_slot: usize,
    /// Input slot on the consumer.
    pub to_slot: usize,
}

/// A call of an operator: ONNX domain, op type and attributes.
///
/// egret keeps ONNX op names (`MatMul`, `LayerNormalization`, ...) in their
/// canonical, latest-opset form: frontends rewrite older opset forms on import
/// (e.g. `Squeeze` axes move from attribute to input), so every consumer sees one
/// semantics per op. egret's own ops live in the `egret` domain.
#[derive(Clone, Debug)]
pub struct OpCall {
    /// Operator domain: `""` for the ONNX standard set, `com.microsoft`, `egret`, ...
    pub domain: String,
    /// Operator type, e.g. `MatMul`.
    pub op_type: String,
    /// Attributes.
    pub attrs: Attrs,
}

impl OpCall {
    /// A standard-domain call with no attributes.
    pub fn new(op_type: &str) -> OpCall {
        OpCall {
            domain: String::new(),
            op_type: op_type.into(),
            attrs: Attrs::default(),
        }
    }

    /// Builder-style attribute setter.
    pub fn with(mut self, name: &str, value: crate::attr::Attr) -> OpCall {
        self.attrs.set(name, value);
        self
    }
}

/// What a node does.
#[derive(Clone, Debug)]
pub enum Op {
    /// A graph input; its value is supplied at run time.
    Input,
    /// A constant (weight, initializer or folded `Constant`).
    Const(Tensor),
    /// An operator applied to the node's inputs.
    Call(OpCall),
}

impl Op {
    /// Human-readable op name: `Input`, `Const` or the op type.
    pub fn name(&self) -> &str {
        match self {
            Op::Input => "Input",
            Op::Const(_) => "Const",
            Op::Call(c) => &c.op_type,
        }
    }

    /// The call, if this is an operator.
    pub fn as_call(&self) -> Option<&OpCall> {
        match self {
            Op::Call(c) => Some(c),
            _ => None,
        }
    }
}

/// Name and static type of one node output.
#[derive(Clone, Debug)]
pub struct ValueInfo {
    /// Value name (unique within the graph).
    pub name: String,
    /// Static type.
    pub ty: ValueType,
}

/// A node: an op, its ordered inputs (absent optional inputs are `None`) and its outputs.
#[derive(Clone, Debug)]
pub struct Node {
    /// Node name (may be empty; not required to be unique).
    pub name: String,
    /// What the node computes.
    pub op: Op,
    inputs: Vec<Option<OutletId>>,
    /// Output values.
    pub outputs: Vec<ValueInfo>,
}

impl Node {
    /// The ordered inputs.
    pub fn inputs(&self) -> &[Option<OutletId>] {
        &self.inputs
    }

    /// A display label for errors: the node name, or its first output's name.
    pub fn label(&self) -> &str {
        if !self.name.is_empty() {
            &self.name
        } else {
            self.outputs.first().map(|o| o.name.as_str()).unwrap_or("")
        }
    }
}

/// A dataflow graph with named inputs and outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Graph name.
    pub name: String,
    g: StableDiGraph<Node, Wire>,
    /// Graph inputs, in order (each an `Op::Input` node's outlet 0).
    pub inputs: Vec<OutletId>,
    /// Graph outputs, in order.
    pub outputs: Vec<OutletId>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Add a graph input and return its outlet.
    pub fn add_input(&mut self, name: &str, ty: ValueType) -> OutletId {
        let id = self.g.add_node(Node {
            name: name.into(),
            op: Op::Input,
            inputs: vec![],
            outputs: vec![ValueInfo {
                name: name.into(),
                ty,
            }],
        });
        let o = OutletId::new(id, 0);
        self.inputs.push(o);
        o
    }

    /// Add a constant and return its outlet.
    pub fn add_const(&mut self, name: &str, t: Tensor) -> OutletId {
        let ty = ValueType::Tensor(crate::shape::TensorType::known(t.dtype(), t.shape()));
        let id = self.g.add_node(Node {
            name: name.into(),
            op: Op::Const(t),
            inputs: vec![],
            outputs: vec![ValueInfo {
                name: name.into(),
                ty,
            }],
        });
        OutletId::new(id, 0)
    }

    /// Add an operator node. Fails if an input outlet does not exist.
    pub fn add_node(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<Option<OutletId>>,
        outputs: Vec<ValueInfo>,
    ) -> Result<NodeId, IrError> {
        for o in inputs.iter().flatten() {
            self.check_outlet(*o)?;
        }
        let id = self.g.add_node(Node {
            name: name.into(),
            op,
            inputs: inputs.clone(),
            outputs,
        });
        for (slot, o) in inputs.iter().enumerate() {
            if let Some(o) = o {
                self.g.add_edge(
                    o.node,
                    id,
                    Wire {
                        from_slot: o.slot,
                        to_slot: slot,
                    },
                );
            }
        }
        Ok(id)
    }

    pub(crate) fn check_outlet(&self, o: OutletId) -> Result<(), IrError> {
        match self.g.node_weight(o.node) {
            Some(n) if o.slot < n.outputs.len() => Ok(()),
            _ => Err(IrError::Invalid(format!("outlet {o:?} does not exist"))),
        }
    }

    /// Rewire input `slot` of `node` to `src` (or disconnect it with `None`).
    pub fn set_input(
        &mut self,
        node: NodeId,
        slot: usize,
        src: Option<OutletId>,
    ) -> Result<(), IrError> {
        if let Some(o) = src {
            self.check_outlet(o)?;
        }
        let n = self
            .g
            .node_weight_mut(node)
            .ok_or_else(|| IrError::Invalid("no such node".into()))?;
        if slot >= n.inputs.len() {
            n.inputs.resize(slot + 1, None);
        }
        n.inputs[slot] = src;
        let old: Vec<_> = self
            .g
            .edges_directed(node, Direction::Incoming)
            .filter(|e| e.weight().to_slot == slot)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        if let Some(o) = src {
            self.g.add_edge(
                o.node,
                node,
                Wire {
                    from_slot: o.slot,
                    to_slot: slot,
                },
            );
        }
        Ok(())
    }

    /// Redirect every use of `old` (node inputs and graph outputs) to `new`.
    pub fn replace_uses(&mut self, old: OutletId, new: OutletId) -> Result<(), IrError> {
        for (node, slot) in self.consumers(old) {
            self.set_input(node, slot, Some(new))?;
        }
        for o in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
        Ok(())
    }

    /// Remove a node and its edges. Callers must first redirect its uses.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.inputs.retain(|o| o.node != id);
        self.g.remove_node(id)
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// Mutable access to a node's name, op and outputs (inputs stay managed here).
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    /// The node with this id, if it exists.
    pub fn try_node(&self, id: NodeId) -> Option<&Node> {
        self.g.node_weight(id)
    }

    /// All node ids, in insertion order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// Number of nodes (including inputs and constants).
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// The static type of an outlet.
    pub fn value_type(&self, o: OutletId) -> &ValueType {
        &self.g[o.node].outputs[o.slot].ty
    }

    /// The name of an outlet.
    pub fn value_name(&self, o: OutletId) -> &str {
        &self.g[o.node].outputs[o.slot].name
    }

    /// The constant tensor behind an outlet, if its producer is a `Const`.
    pub fn const_value(&self, o: OutletId) -> Option<&Tensor> {
        match &self.g[o.node].op {
            Op::Const(t) => Some(t),
            _ => None,
        }
    }

    /// Every `(consumer node, input slot)` reading `o`, sorted.
    pub fn consumers(&self, o: OutletId) -> Vec<(NodeId, usize)> {
        let mut v: Vec<_> = self
            .g
            .edges_directed(o.node, Direction::Outgoing)
            .filter(|e| e.weight().from_slot == o.slot)
            .map(|e| (e.target(), e.weight().to_slot))
            .collect();
        v.sort();
        v
    }

    /// Nodes in a deterministic topological order (ties broken by node id).
    pub fn topo_order(&self) -> Result<Vec<NodeId>, IrError> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut indeg: BTreeMap<NodeId, usize> = BTreeMap::new();
        for id in self.g.node_indices() {
            indeg.insert(id, self.g.edges_directed(id, Direction::Incoming).count());
        }
        let mut ready: BinaryHeap<Reverse<NodeId>> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&id, _)| Reverse(id))
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            for e in self.g.edges_directed(id, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target exists");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(e.target()));
                }
            }
        }
        if order.len() != indeg.len() {
            let stuck = indeg
                .iter()
                .find(|(id, &d)| d > 0 && !order.contains(id))
                .map(|(id, _)| self.g[*id].label().to_string())
                .unwrap_or_default();
            return Err(IrError::Cycle(stuck));
        }
        Ok(order)
    }

    /// Read-only access to the underlying petgraph graph.
    pub fn petgraph(&self) -> &StableDiGraph<Node, Wire> {
        &self.g
    }
}

/// A whole model: the main graph plus opset imports and metadata.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// The main graph.
    pub graph: Graph,
    /// Opset version per domain, as imported (`""` is the ONNX standard domain).
    pub opsets: BTreeMap<String, i64>,
    /// Free-form metadata (producer, source file, ...).
    pub metadata: BTreeMap<String, String>,
}
