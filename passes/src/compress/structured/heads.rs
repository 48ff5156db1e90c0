//! The heads of an attention, pruned whole.
//!
//! In `Attention(q, k, v, …)` with `q_num_heads = r · kv_num_heads`, query
//! head `h` reads key/value head `h / r`. A query head is `head_dim` rows of
//! the query projection and the same columns of the output projection. Two
//! ways to drop heads keep the mapping:
//!
//! * **Grouped-query attention** (`r > 1`): the same number of query heads
//!   goes from every key/value group (`r' · kv_num_heads` heads, each group's
//!   survivors in order); the keys, values and the KV cache stay as they are.
//! * **Multi-head attention** (`r = 1`): a head goes with its key and value
//!   heads, `head_dim` rows of the key and value projections too. That
//!   shrinks `kv_num_heads`, so it needs keys and values the graph makes and
//!   reads only here: no cache in, no `present` key/value out.
//!
//! The heads are found on the shape the graph builders and ONNX exporters
//! give attention: each of `q`, `k`, `v` is `[RotaryEmbedding ∘]
//! Reshape(Linear(x))` (rows to `[batch, seq, width]`) and the output is
//! `Linear(Reshape(Attention(…)[0]))`, each value read only there. The
//! reshapes' target shapes (a constant, or a `Concat` ending in a constant
//! width) get new constants; the ones the builders share with other reshapes
//! are left alone.

use super::linear::Linear;
use egret_ir::{Attr, Dim, Graph, NodeId, Op, OutletId, Tensor, ValueType};

/// The projection feeding one of `q`, `k`, `v`:
/// `[RotaryEmbedding ∘] Reshape(Linear(x))`.
#[derive(Clone, Debug)]
struct Projection {
    linear: Linear,
    reshape: NodeId,
    rotary: Option<NodeId>,
    /// Values from the product to the attention, whose last axis is the
    /// projection's width.
    values: Vec<OutletId>,
}

/// One attention's heads.
#[derive(Clone, Debug)]
pub struct HeadGroup {
    /// The `Attention` node.
    pub attention: NodeId,
    /// The query projection.
    query: Projection,
    /// The key and value projections, when their heads can go with the
    /// query heads (multi-head attention without a cache).
    key_value: Option<[Projection; 2]>,
    /// The output projection (the reducer).
    pub output: Linear,
    /// The reshape of the attention output.
    out_reshape: NodeId,
    /// The attention output and its rows.
    out_values: [OutletId; 2],
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

/// The projection path ending at attention input `x`, each value on it
/// read once.
fn projection(g: &Graph, mut x: OutletId) -> Option<Projection> {
    only_reader(g, x)?;
    let mut values = vec![x];
    let rotary = is_op(g, x.node, "RotaryEmbedding").then_some(x.node);
    if rotary.is_some() {
        x = (*g.node(x.node).inputs().first()?)?;
        only_reader(g, x)?;
        values.push(x);
    }
    if !is_op(g, x.node, "Reshape") {
        return None;
    }
    let reshape = x.node;
    let rows = (*g.node(reshape).inputs().first()?)?;
    only_reader(g, rows)?;
    values.push(rows);
    Some(Projection {
        linear: Linear::read(g, rows.node)?,
        reshape,
        rotary,
        values,
    })
}

/// True if output `slot` of node `id` is absent or unused.
fn unused(g: &Graph, id: NodeId, slot: usize) -> bool {
    let o = OutletId::new(id, slot);
    slot >= g.node(id).outputs.len() || (g.consumers(o).is_empty() && !g.outputs.contains(&o))
}

/// The heads of the `Attention` at `id`, if they can be pruned (see the
/// module docs).
pub fn find(g: &Graph, id: NodeId) -> Option<HeadGroup> {
    let node = g.node(id);
    let Op::Call(c) = &node.op else { return None };
    if !c.domain.is_empty() || c.op_type != "Attention" {
        return None;
    }
    let heads = usize::try_from(c.attrs.int("q_num_heads").ok()?).ok()?;
    let kv_heads = usize::try_from(c.attrs.int("kv_num_heads").ok()?).ok()?;
    if kv_heads == 0 || heads < kv_heads || heads % kv_heads != 0 {
        return None;
    }
    let inputs = node.inputs();
    let input = |slot: usize| inputs.get(slot).copied().flatten();
    let query = projection(g, input(0)?)?;
    let width = query.linear.n;
    if width % heads != 0 {
        return None;
    }
    let head_dim = width / heads;
    let key_value = (heads == kv_heads)
        .then(|| {
            let no_cache = input(4).is_none() && input(5).is_none();
            let no_present = unused(g, id, 1) && unused(g, id, 2);
            let k = projection(g, input(1)?)?;
            let v = projection(g, input(2)?)?;
            let fits = |p: &Projection| p.linear.n == kv_heads * head_dim;
            (no_cache && no_present && fits(&k) && fits(&v)).then_some([k, v])
        })
        .flatten();
    if heads == kv_heads && key_value.is_none() {
        return None;
    }
    // Forwards from the output.
    let y = OutletId::new(id, 0);
    let (out_reshape, _) = only_reader(g, y).filter(|&(n, s)| s == 0 && is_op(g, n, "Reshape"))?;
    let y_rows = OutletId::new(out_reshape, 0);
    let (o_node, slot) = only_reader(g, y_rows)?;
    let output = Linear::read(g, o_node).filter(|o| slot == 0 && o.k == width)?;
    Some(HeadGroup {
        attention: id,
        query,
        key_value,
        output,
        out_reshape,
        out_values: [y, y_rows],
        heads,
        kv_heads,
        head_dim,
        hidden: g.value_name(y_rows).to_string(),
    })
}

/// Every prunable attention of `g`.
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

    /// The query projection.
    pub fn query(&self) -> &Linear {
        &self.query.linear
    }

    /// How many query heads to keep when dropping the share `drop` (0–1):
    /// the same number from every key/value group under grouped-query
    /// attention, at least one head in all.
    pub fn keep_count(&self, drop: f64) -> usize {
        let r = self.heads / self.kv_heads;
        let per = |n: usize| ((n as f64 * (1.0 - drop)).round() as usize).clamp(1, n);
        if r > 1 {
            per(r) * self.kv_heads
        } else {
            per(self.heads)
        }
    }

    /// The `count` best query heads (by `scores`, from
    /// [`HeadGroup::keep_count`]), in order: the best `count / kv_heads` of
    /// every key/value group under grouped-query attention, the best overall
    /// otherwise.
    pub fn keep(&self, scores: &[f64], count: usize) -> Vec<usize> {
        let r = self.heads / self.kv_heads;
        let (groups, size, per_group) = if r > 1 {
            (self.kv_heads, r, count / self.kv_heads)
        } else {
            (1, self.heads, count)
        };
        (0..groups)
            .flat_map(|grp| {
                let mut hs: Vec<usize> = (grp * size..(grp + 1) * size).collect();
                hs.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
                hs.truncate(per_group.clamp(1, size));
                hs.sort_unstable();
                hs
            })
            .collect()
    }

    /// Stored values per kept channel, across every projection a head
    /// spans (query, output, and key and value when they go too).
    pub fn params_per_channel(&self) -> usize {
        let kv: usize = self.key_value.iter().flatten().map(|p| p.linear.k).sum();
        self.query.linear.k + self.output.n + kv
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
        let heads = Attr::Int(keep.len() as i64);
        self.query.shrink(g, &channels, heads.clone())?;
        let o = &self.output;
        o.write(g, output_w, o.n, width, output_bias)?;
        retarget_reshape(g, self.out_reshape, width)?;
        for &v in &self.out_values {
            super::ffn::narrow(g, v, width);
        }
        set_attr(g, self.attention, "q_num_heads", heads.clone());
        if let Some(kv) = &self.key_value {
            // Multi-head: key/value head h goes with query head h.
            for p in kv {
                p.shrink(g, &channels, heads.clone())?;
            }
            set_attr(g, self.attention, "kv_num_heads", heads);
            // The unused `present` key/value, `[batch, kv heads, seq, head_dim]`.
            for slot in [1, 2] {
                set_dim(g, OutletId::new(self.attention, slot), 1, keep.len());
            }
        }
        Ok(())
    }
}

impl Projection {
    /// Keep rows `channels` of the product and narrow the path after it to
    /// them, `heads` heads.
    fn shrink(&self, g: &mut Graph, channels: &[usize], heads: Attr) -> Result<(), String> {
        self.linear.keep_rows(g, channels)?;
        retarget_reshape(g, self.reshape, channels.len())?;
        if let Some(r) = self.rotary {
            set_attr(g, r, "num_heads", heads);
        }
        for &v in &self.values {
            super::ffn::narrow(g, v, channels.len());
        }
        Ok(())
    }
}

/// Give axis `axis` of value `o`'s static shape (when it has one) size `n`.
fn set_dim(g: &mut Graph, o: OutletId, axis: usize, n: usize) {
    let Some(info) = g.node_mut(o.node).outputs.get_mut(o.slot) else {
        return;
    };
    if let ValueType::Tensor(t) = &mut info.ty {
        if let Some(d) = t.shape.as_mut().and_then(|s| s.0.get_mut(axis)) {
            *d = Dim::Known(n);
        }
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
