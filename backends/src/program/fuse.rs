//! Elementwise fusion: chains of f32 elementwise ops become one loop.
//!
//! A fused loop reads each external input once per output element (with
//! broadcasting done by strides), evaluates a small SSA body, and writes one
//! output. Intermediate values never touch memory. A node joins the loop of
//! a producer when the producer's value has no other reader and both have the
//! same shape, so every loop is a tree rooted at its output.

use egret_ir::{DType, Graph, Node, NodeId, OutletId};
use std::collections::{HashMap, HashSet};

use super::specialize::Trace;

/// A one-input elementwise function on f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `|x|`
    Abs,
    /// `max(x, 0)` (NaN stays NaN)
    Relu,
    /// `√x`
    Sqrt,
    /// `⌊x⌋`
    Floor,
    /// `⌈x⌉`
    Ceil,
    /// `1/x`
    Recip,
    /// `eˣ`
    Exp,
    /// `ln x`
    Log,
    /// `tanh x`
    Tanh,
    /// `1/(1+e⁻ˣ)`
    Sigmoid,
    /// The error function.
    Erf,
    /// `sin x`
    Sin,
    /// `cos x`
    Cos,
    /// `ln(1+eˣ)`
    Softplus,
    /// Gelu with the exact erf.
    Gelu,
    /// Gelu with the tanh approximation.
    GeluTanh,
    /// `x` if `x ≥ 0`, else `alpha·x`.
    LeakyRelu(f32),
    /// `clamp(alpha·x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
    /// `x · clamp(x/6 + 1/2, 0, 1)`.
    HardSwish,
}

impl UnOp {
    /// Whether the function is computed by a call into egret's runtime
    /// (transcendentals) rather than inline instructions.
    pub fn is_call(self) -> bool {
        matches!(
            self,
            UnOp::Exp
                | UnOp::Log
                | UnOp::Tanh
                | UnOp::Sigmoid
                | UnOp::Erf
                | UnOp::Sin
                | UnOp::Cos
                | UnOp::Softplus
                | UnOp::Gelu
                | UnOp::GeluTanh
        )
    }
}

/// A two-input elementwise function on f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b`
    Div,
    /// ONNX `Max`: `a` if `a` is NaN or `a ≥ b`, else `b`.
    Max,
    /// ONNX `Min`: `a` if `a` is NaN or `a ≤ b`, else `b`.
    Min,
    /// `aᵇ` (by a runtime call).
    Pow,
    /// `PRelu`: `a` if `a ≥ 0`, else `a·b`.
    PRelu,
}

/// One instruction of a loop body; operands index earlier instructions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Inst {
    /// The current element of external input `i`.
    Load(usize),
    /// A constant.
    Const(f32),
    /// A unary function of an earlier value.
    Unary(UnOp, usize),
    /// A binary function of two earlier values.
    Binary(BinOp, usize, usize),
}

/// How a node computes, if it is fusable: its function, and which of its
/// inputs are operands.
enum Elementwise {
    Unary(UnOp),
    Binary(BinOp),
}

fn attr_f32(node: &Node, name: &str, default: f32) -> Option<f32> {
    node.op.as_call()?.attrs.float_or(name, default).ok()
}

/// The elementwise function `node` computes, when egret can fuse it.
fn classify(node: &Node) -> Option<Elementwise> {
    let c = node.op.as_call()?;
    if !(c.domain.is_empty() || c.domain == "ai.onnx") || node.outputs.len() != 1 {
        return None;
    }
    let n_in = node.inputs().len();
    let un = |op| (n_in == 1).then_some(Elementwise::Unary(op));
    let bin = |op| (n_in == 2).then_some(Elementwise::Binary(op));
    match c.op_type.as_str() {
        "Neg" => un(UnOp::Neg),
        "Abs" => un(UnOp::Abs),
        "Relu" => un(UnOp::Relu),
        "Sqrt" => un(UnOp::Sqrt),
        "Floor" => un(UnOp::Floor),
        "Ceil" => un(UnOp::Ceil),
        "Reciprocal" => un(UnOp::Recip),
        "Exp" => un(UnOp::Exp),
        "Log" => un(UnOp::Log),
        "Tanh" => un(UnOp::Tanh),
        "Sigmoid" => un(UnOp::Sigmoid),
        "Erf" => un(UnOp::Erf),
        "Sin" => un(UnOp::Sin),
        "Cos" => un(UnOp::Cos),
        "Softplus" => un(UnOp::Softplus),
        "Gelu" => match c.attrs.string_or("approximate", "none").ok()? {
            "none" => un(UnOp::Gelu),
            "tanh" => un(UnOp::GeluTanh),
            _ => None,
        },
        "LeakyRelu" => un(UnOp::LeakyRelu(attr_f32(node, "alpha", 0.01)?)),
        "HardSigmoid" => un(UnOp::HardSigmoid(
            attr_f32(node, "alpha", 0.2)?,
            attr_f32(node, "beta", 0.5)?,
        )),
        "HardSwish" => un(UnOp::HardSwish),
        "Add" => bin(BinOp::Add),
        "Sub" => bin(BinOp::Sub),
        "Mul" => bin(BinOp::Mul),
        "Div" => bin(BinOp::Div),
        "Max" => bin(BinOp::Max),
        "Min" => bin(BinOp::Min),
        "Pow" => bin(BinOp::Pow),
        "PRelu" => bin(BinOp::PRelu),
        _ => None,
    }
}

/// A group of fused nodes, before its loop is laid out.
pub struct Group {
    /// The nodes, in topological order; the last one is the root.
    pub nodes: Vec<NodeId>,
    /// The external values read, in first-use order.
    pub inputs: Vec<OutletId>,
    /// The body over those inputs.
    pub body: Vec<Inst>,
}

/// Whether `shape` broadcasts to `out` (numpy rules, right-aligned).
fn broadcasts_to(shape: &[usize], out: &[usize]) -> bool {
    shape.len() <= out.len()
        && shape
            .iter()
            .rev()
            .zip(out.iter().rev())
            .all(|(&s, &o)| s == o || s == 1)
}

/// Whether `node` can be computed inside a fused loop, given the traced types.
fn fusable(g: &Graph, id: NodeId, trace: &Trace) -> Option<Elementwise> {
    let node = g.node(id);
    let kind = classify(node)?;
    let out = trace.types.get(&OutletId::new(id, 0))?;
    if out.dtype != DType::F32
        || out.shape.iter().product::<usize>() == 0
        || trace.dynamic.contains(&OutletId::new(id, 0))
    {
        return None;
    }
    for i in node.inputs() {
        let i = (*i)?;
        if trace.dynamic.contains(&i) {
            return None;
        }
        let t = trace.types.get(&i)?;
        if t.dtype != DType::F32 || !broadcasts_to(&t.shape, &out.shape) {
            return None;
        }
    }
    Some(kind)
}

/// Partition the fusable nodes among `live` (in topological order) into
/// groups. `uses` counts the readers of each value; `pinned` holds the graph
/// outputs, which must be materialised.
pub fn groups(
    g: &Graph,
    live: &[NodeId],
    trace: &Trace,
    uses: &HashMap<OutletId, usize>,
    pinned: &HashSet<OutletId>,
) -> Vec<Group> {
    // The group each fused node belongs to, by root-to-be index.
    let mut group_of: HashMap<NodeId, usize> = HashMap::new();
    let mut members: Vec<Vec<NodeId>> = Vec::new();
    let mut kinds: HashMap<NodeId, Elementwise> = HashMap::new();
    for &id in live {
        let Some(kind) = fusable(g, id, trace) else {
            continue;
        };
        kinds.insert(id, kind);
        let shape = &trace.types[&OutletId::new(id, 0)].shape;
        // Producers whose value only this node reads, with the same shape.
        let absorbed: Vec<usize> = g
            .node(id)
            .inputs()
            .iter()
            .flatten()
            .filter(|o| {
                o.slot == 0
                    && group_of.contains_key(&o.node)
                    && uses.get(o) == Some(&1)
                    && !pinned.contains(o)
                    && trace.types[o].shape == *shape
            })
            .map(|o| group_of[&o.node])
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let gi = match absorbed.split_first() {
            None => {
                members.push(Vec::new());
                members.len() - 1
            }
            Some((&first, rest)) => {
                for &other in rest {
                    let moved = std::mem::take(&mut members[other]);
                    for &n in &moved {
                        group_of.insert(n, first);
                    }
                    members[first].extend(moved);
                }
                first
            }
        };
        members[gi].push(id);
        group_of.insert(id, gi);
    }
    let position: HashMap<NodeId, usize> = live.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    members
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(|mut nodes| {
            nodes.sort_by_key(|n| position[n]);
            build_body(g, nodes, &kinds, trace)
        })
        .collect()
}

/// Lay out the body of one group.
fn build_body(
    g: &Graph,
    nodes: Vec<NodeId>,
    kinds: &HashMap<NodeId, Elementwise>,
    trace: &Trace,
) -> Group {
    let mut inputs: Vec<OutletId> = Vec::new();
    let mut body: Vec<Inst> = Vec::new();
    let mut value: HashMap<OutletId, usize> = HashMap::new();
    let inner: HashSet<NodeId> = nodes.iter().copied().collect();
    for &id in &nodes {
        let mut operands = Vec::new();
        for o in g.node(id).inputs().iter().flatten() {
            let v = match value.get(o) {
                Some(&v) => v,
                None => {
                    debug_assert!(!inner.contains(&o.node));
                    let inst = match scalar_const(g, trace, *o) {
                        Some(c) => Inst::Const(c),
                        None => {
                            let i = inputs.iter().position(|x| x == o).unwrap_or_else(|| {
                                inputs.push(*o);
                                inputs.len() - 1
                            });
                            Inst::Load(i)
                        }
                    };
                    body.push(inst);
                    value.insert(*o, body.len() - 1);
                    body.len() - 1
                }
            };
            operands.push(v);
        }
        let inst = match (&kinds[&id], operands.as_slice()) {
            (Elementwise::Unary(op), &[a]) => Inst::Unary(*op, a),
            (Elementwise::Binary(BinOp::Pow), &[a, b]) if body[b] == Inst::Const(2.0) => {
                Inst::Binary(BinOp::Mul, a, a)
            }
            (Elementwise::Binary(op), &[a, b]) => Inst::Binary(*op, a, b),
            _ => unreachable!("classify checked the input count"),
        };
        body.push(inst);
        value.insert(OutletId::new(id, 0), body.len() - 1);
    }
    Group {
        nodes,
        inputs,
        body,
    }
}

/// The value of a single-element f32 constant (or folded value).
fn scalar_const(g: &Graph, trace: &Trace, o: OutletId) -> Option<f32> {
    let t = g.const_value(o).or_else(|| trace.folded.get(&o))?;
    match t.as_slice::<f32>().ok()? {
        [v] => Some(*v),
        _ => None,
    }
}
