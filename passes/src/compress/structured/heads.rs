//! Query-head groups of grouped-query attention.
//!
//! In `Attention(q, k, v, …)` with `q_num_heads = r · kv_num_heads`, query
//! head `h` reads key/value head `h / r`. Dropping the same number of query
//! heads from every group keeps that mapping (`r' · kv_num_heads` heads, each
//! group's survivors in order) and leaves the keys, values and the KV cache
//! as they are. A head is `head_dim` rows of the query projection and the
//! same columns of the output projection.
//!
//! The group is found on the shape the graph builders and ONNX exporters
//! give attention: `q = [RotaryEmbedding ∘] Reshape(Linear(x))` (rows to
//! `[batch, seq, width]`) and `Linear(Reshape(Attention(…)[0]))`, each value
//! read only there. The reshapes' target shapes (a constant, or a `Concat`
//! ending in a constant width) get new constants; the ones the builders
//! share with other reshapes are left alone.

use super::linear::Linear;
use egret_ir::{Attr, Graph, NodeId, Op, OutletId, Tensor};

/// One attention's query heads.
#[derive(Clone, Debug)]
pub struct HeadGroup {
    /// The `Attention` node.
    pub attention: NodeId,
    /// The query projection.
    pub query: Linear,
    /// The output projection (the reducer).
    pub output: Linear,
    /// The reshape of the query rows, and of the attention output.
    reshapes: [NodeId; 2],
    /// `RotaryEmbedding` on the queries, if any.
    rotary: Option<NodeId>,
    /// Values whose last axis is the query width.
    values: Vec<OutletId>,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// The output projection's input (the calibration key).
    pub hidden: String,
}

/// The single node reading `o` and the slot it reads it at.
fn only_reader(g: &Graph, o: OutletId) -> Option<(NodeId, usize)> {
    match g.consumers(o).as_slice() {
        [one] if !g.outputs.contains(&o) => Some(*one),
        _ => None,
    }
}

/// True if node `id` is the standard-domain op `op_type`.
fn is_op(g: &Graph, id: NodeId, op_type: &str) -> bool {
    matches!(&g.node(id).op, Op::Call(c) if c.domain.is_empty() && c.op_type == op_type)
}

/// The query-head group of the `Attention` at `id`, if it has one.
pub fn find(g: &Graph, id: NodeId) -> Option<HeadGroup> {
    let node = g.node(id);
    let Op::Call(c) = &node.op else { return None };
    if !c.domain.is_empty() || c.op_type != "Attention" {
        return None;
    }
    let heads = usize::try_from(c.attrs.int("q_num_heads").ok()?).ok()?;
    let kv_heads = usize::try_from(c.attrs.int("kv_num_heads").ok()?).ok()?;
    if kv_heads == 0 || heads <= kv_heads || heads % kv_heads != 0 {
        return None;
    }
    let mut values = Vec::new();
    // Backwards from the query input.
    let mut q = (*node.inputs().first()?)?;
    only_reader(g, q)?;
    values.push(q);
    let rotary = is_op(g, q.node, "RotaryEmbedding").then_some(q.node);
    if rotary.is_some() {
        q = (*g.node(q.node).inputs().first()?)?;
        only_reader(g, q)?;
        values.push(q);
    }
    if !is_op(g, q.node, "Reshape") {
        return None;
    }
    let q_reshape = q.node;
    let rows = (*g.node(q_reshape).inputs().first()?)?;
    only_reader(g, rows)?;
    values.push(rows);
    let query = Linear::read(g, rows.node)?;
    // Forwards from the output.
    let y = OutletId::new(id, 0);
    let (out_reshape, _) = only_reader(g, y).filter(|&(n, s)| s == 0 && is_op(g, n, "Reshape"))?;
    values.push(y);
    let y_rows = OutletId::new(out_reshape, 0);
    let (o_node, slot) = only_reader(g, y_rows)?;
    values.push(y_rows);
    let output = Linear::read(g, o_node).filter(|_| slot == 0)?;
    let width = query.n;
    if width % heads != 0 || output.k != width {
        return None;
    }
    Some(HeadGroup {
        attention: id,
        query,
        output,
        reshapes: [q_reshape, out_reshape],
        rotary,
        values,
        heads,
        kv_heads,
        head_dim: width / heads,
        hidden: g.value_name(y_rows).to_string(),
    })
}

/// Every query-head group of `g`.
pub fn groups(g: &Graph) -> Vec<HeadGroup> {
    g.node_ids().filter_map(|id| find(g, id)).collect()
}

impl HeadGroup {
    /// The channels (query rows, output columns) of `heads`.
    pub fn channels(&self, heads: &[usize]) -> Vec<usize> {
        let d = self.head_dim;
        heads.iter().flat_map(|&h| h * d..(h + 1) * d).collect()
    }

    /// Each head's score: the sum of its channels' scores.
    pub fn head_scores(&self, channel_scores: &[f64]) -> Vec<f64> {
        channel_scores
            .chunks(self.head_dim)
            .map(|c| c.iter().sum())
            .collect()
    }

    /// The `per_group` best heads (by `scores`) of every key/value group, in
    /// order.
    pub fn keep(&self, scores: &[f64], per_group: usize) -> Vec<usize> {
        let r = self.heads / self.kv_heads;
        (0..self.kv_heads)
            .flat_map(|grp| {
                let mut hs: Vec<usize> = (grp * r..(grp + 1) * r).collect();
                hs.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
                hs.truncate(per_group.clamp(1, r));
                hs.sort_unstable();
                hs
            })
            .collect()
    }

    /// Keep query heads `keep` (from [`HeadGroup::keep`]), with `output_w`
    /// (`[n, kept channels]`) and `output_bias` as the output projection.
    pub fn apply(
        &self,
        g: &mut Graph,
        keep: &[usize],
        output_w: Vec<f32>,
        output_bias: Option<Vec<f32>>,
    ) -> Result<(), String> {
        let channels = self.channels(keep);
        let width = channels.len();
        self.query.keep_rows(g, &channels)?;
        let o = &self.output;
        o.write(g, output_w, o.n, width, output_bias)?;
        for &r in &self.reshapes {
            retarget_reshape(g, r, width)?;
        }
        let heads = Attr::Int(keep.len() as i64);
        set_attr(g, self.attention, "q_num_heads", heads.clone());
        if let Some(r) = self.rotary {
            set_attr(g, r, "num_heads", heads);
        }
        for &v in &self.values {
            super::ffn::narrow(g, v, width);
        }
        Ok(())
    }
}

/// Set attribute `name` of the call at `id`.
fn set_attr(g: &mut Graph, id: NodeId, name: &str, value: Attr) {
    if let Op::Call(c) = &mut g.node_mut(id).op {
        c.attrs.set(name, value);
    }
}

/// Give the `Reshape` at `id` a target shape ending in `width` instead: a new
/// constant, or a new `Concat` whose last part is a new constant.
fn retarget_reshape(g: &mut Graph, id: NodeId, width: usize) -> Result<(), String> {
    let label = g.node(id).label().to_string();
    let err = || format!("the target shape of {label} is not a constant or a Concat of one");
    let shape = g
        .node(id)
        .inputs()
        .get(1)
        .copied()
        .flatten()
        .ok_or_else(err)?;
    let with_width = |t: &Tensor| -> Option<Tensor> {
        let mut v = t.as_slice::<i64>().ok()?.to_vec();
        *v.last_mut()? = width as i64;
        Tensor::from_vec(t.shape().to_vec(), v).ok()
    };
    if let Some(t) = g.const_value(shape) {
        let t = with_width(t).ok_or_else(err)?;
        let c = g.add_const(&format!("{label}.shape"), t);
        return g.set_input(id, 1, Some(c)).map_err(|e| e.to_string());
    }
    let concat = g.node(shape.node).clone();
    let is_concat =
        matches!(&concat.op, Op::Call(c) if c.domain.is_empty() && c.op_type == "Concat");
    let last = concat
        .inputs()
        .last()
        .copied()
        .flatten()
        .filter(|_| is_concat)
        .ok_or_else(err)?;
    let tail = g.const_value(last).and_then(with_width).ok_or_else(err)?;
    let tail = g.add_const(&format!("{label}.width"), tail);
    let mut inputs = concat.inputs().to_vec();
    *inputs.last_mut().ok_or_else(err)? = Some(tail);
    let Op::Call(call) = concat.op else {
        return Err(err());
    };
    let mut outputs = concat.outputs.clone();
    outputs[0].name = format!("{label}.shape");
    let new = g
        .add_node(&format!("{label}.shape"), Op::Call(call), inputs, outputs)
        .map_err(|e| e.to_string())?;
    g.set_input(id, 1, Some(OutletId::new(new, 0)))
        .map_err(|e| e.to_string())
}
