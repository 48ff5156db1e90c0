//! Feed-forward channel groups: the channels between the products that make
//! an FFN's hidden activation and the product that reduces it.
//!
//! A group starts at a reducer `Linear(h)` and walks `h` back through
//! channel-wise ops (unary activations; `Mul`/`Add`/`Sub`/`Div` of group
//! values, scalars or per-channel constants) to the products that make
//! it (Llama's gate and up, BERT's intermediate dense). Channel `c` is then
//! row `c` of every producer (and its bias entry), entry `c` of every
//! per-channel constant, and column `c` of the reducer; removing it from all
//! of them removes it from the network. Every value of the group must be
//! read only inside it, so nothing else sees the narrower width.

use super::linear::Linear;
use egret_ir::{Dim, Graph, NodeId, Op, OutletId, Shape, ValueType};
use std::collections::{HashSet, VecDeque};

/// Ops that act on each channel alone and keep the shape.
const UNARY: [&str; 16] = [
    "Swish",
    "Sigmoid",
    "Tanh",
    "Relu",
    "Gelu",
    "Erf",
    "Neg",
    "Exp",
    "Softplus",
    "LeakyRelu",
    "Elu",
    "Selu",
    "HardSigmoid",
    "HardSwish",
    "Abs",
    "Identity",
];

/// Elementwise binary ops whose operands the walk follows.
const BINARY: [&str; 4] = ["Mul", "Add", "Sub", "Div"];

/// One FFN channel group (see the module docs).
#[derive(Clone, Debug)]
pub struct FfnGroup {
    /// The product reading the hidden activation.
    pub reducer: Linear,
    /// The products making it.
    pub producers: Vec<Linear>,
    /// `(node, input slot)` of each per-channel constant operand.
    pub per_channel: Vec<(NodeId, usize)>,
    /// The group's values, whose last axis is the channel axis.
    pub values: Vec<OutletId>,
    /// Channels.
    pub width: usize,
    /// The name of the reducer's input (the calibration key).
    pub hidden: String,
}

/// The last dimension of `o`, if known.
fn last_dim(g: &Graph, o: OutletId) -> Option<usize> {
    g.value_type(o)
        .as_tensor()?
        .shape
        .as_ref()?
        .dims()
        .last()?
        .known()
}

/// The group reduced by the product at `id`, if it is one.
pub fn find(g: &Graph, id: NodeId) -> Option<FfnGroup> {
    let reducer = Linear::read(g, id)?;
    let h = (*g.node(id).inputs().first()?)?;
    let width = reducer.k;
    let mut values = Vec::new();
    let mut producers = Vec::new();
    let mut per_channel = Vec::new();
    let mut nodes: HashSet<NodeId> = HashSet::from([id]);
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([h]);
    while let Some(o) = queue.pop_front() {
        if !seen.insert(o) {
            continue;
        }
        if last_dim(g, o) != Some(width) || g.outputs.contains(&o) {
            return None;
        }
        values.push(o);
        nodes.insert(o.node);
        let node = g.node(o.node);
        let Op::Call(c) = &node.op else { return None };
        if let Some(p) = Linear::read(g, o.node) {
            if p.n != width {
                return None;
            }
            producers.push(p);
            continue;
        }
        if !c.domain.is_empty() || node.outputs.len() != 1 {
            return None;
        }
        if UNARY.contains(&c.op_type.as_str()) {
            queue.push_back((*node.inputs().first()?)?);
        } else if BINARY.contains(&c.op_type.as_str()) {
            for (slot, i) in node.inputs().iter().enumerate() {
                let i = (*i)?;
                match g.const_value(i) {
                    Some(t) if t.numel() == 1 => {}
                    Some(t)
                        if t.numel() == width
                            && t.shape().last() == Some(&width)
                            && t.dtype() == egret_ir::DType::F32 =>
                    {
                        if g.consumers(i).len() != 1 {
                            return None;
                        }
                        per_channel.push((o.node, slot));
                    }
                    Some(_) => return None,
                    None => queue.push_back(i),
                }
            }
        } else {
            return None;
        }
    }
    if producers.is_empty() {
        return None;
    }
    // Nothing outside the group may read its values.
    for &o in &values {
        if g.consumers(o)
            .iter()
            .any(|&(n, slot)| !nodes.contains(&n) || (n == id && slot != 0))
        {
            return None;
        }
    }
    Some(FfnGroup {
        reducer,
        producers,
        per_channel,
        values,
        width,
        hidden: g.value_name(h).to_string(),
    })
}

/// Every FFN group of `g`, in topological order of their reducers.
pub fn groups(g: &Graph) -> Result<Vec<FfnGroup>, String> {
    Ok(g.topo_order()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|id| find(g, id))
        .collect())
}

impl FfnGroup {
    /// Keep only channels `keep` (increasing): the producers' rows and
    /// per-channel constants at them, and `reducer_w` (`[n, keep.len()]`)
    /// with `reducer_bias` as the reducer's weight and bias.
    pub fn apply(
        &self,
        g: &mut Graph,
        keep: &[usize],
        reducer_w: Vec<f32>,
        reducer_bias: Option<Vec<f32>>,
    ) -> Result<(), String> {
        use super::linear::replace_const;
        let r = &self.reducer;
        r.write(g, reducer_w, r.n, keep.len(), reducer_bias)?;
        for p in &self.producers {
            p.keep_rows(g, keep)?;
        }
        for &(node, slot) in &self.per_channel {
            let Some(c) = g.node(node).inputs()[slot] else {
                continue;
            };
            let t = g
                .const_value(c)
                .ok_or("per-channel operand is not constant")?;
            let v = t.as_slice::<f32>().map_err(|e| e.to_string())?;
            let mut shape = t.shape().to_vec();
            if let Some(last) = shape.last_mut() {
                *last = keep.len();
            }
            let kept: Vec<f32> = keep.iter().map(|&i| v[i]).collect();
            let kept = egret_ir::Tensor::from_vec(shape, kept).map_err(|e| e.to_string())?;
            replace_const(g, node, slot, kept)?;
        }
        for &o in &self.values {
            narrow(g, o, keep.len());
        }
        Ok(())
    }
}

/// Set the last dimension of `o`'s static type to `width`.
pub fn narrow(g: &mut Graph, o: OutletId, width: usize) {
    let info = &mut g.node_mut(o.node).outputs[o.slot];
    if let ValueType::Tensor(t) = &mut info.ty {
        if let Some(Shape(dims)) = &mut t.shape {
            if let Some(last) = dims.last_mut() {
                *last = Dim::Known(width);
            }
        }
    }
}
