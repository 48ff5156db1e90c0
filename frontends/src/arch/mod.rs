//! Architecture builders: transformer graphs synthesised from weights + a config.
//!
//! A checkpoint (safetensors + `config.json`, or GGUF) holds weights but no graph.
//! Each family file (`bert.rs`, `gpt2.rs`, `llama.rs`) knows its family's weight
//! names and wiring; everything they share lives here, in [`Builder`]:
//!
//! * weights come from a [`WeightSource`], so safetensors and GGUF both plug in;
//! * every node is added through [`Graph::call`], so it carries the same inferred
//!   types an imported ONNX node would, and only standard ONNX ops are emitted
//!   (`Gemm`, `LayerNormalization`, `RMSNormalization`, `Gelu`, `Gather`, ...), so
//!   passes and backends see nothing new;
//! * tensors named by a prefix follow the HF convention `<prefix>.weight` /
//!   `<prefix>.bias` (GGUF uses the same suffixes), which keeps family files to
//!   name tables.
//!
//! ## Layout: token rows
//! Hidden states are 2-D **rows** `[tokens, width]`, `tokens = batch · seq` in
//! row-major order. A linear layer is then one `Gemm` with `transB = 1` straight
//! on the checkpoint's `[out, in]` weight: no transposed copy (weights stay
//! zero-copy in the mmap) and no per-run transpose, and block-quantized GGUF
//! weights keep their blocks along the reduced axis. Only attention needs the
//! batch and sequence axes back; [`Builder::token_input`] records the ids'
//! shape so [`Builder::attention`] and [`Builder::unrows`] can rebuild them.

pub mod bert;
mod config;
pub mod gpt2;
pub mod llama;

pub use config::HfConfig;

use egret_ir::{
    Attr, DType, Dim, Graph, IrError, Model, OpCall, OutletId, Tensor, TensorType, ValueType,
};
use std::collections::{HashMap, HashSet};

/// The ONNX standard opset the builders emit (`RMSNormalization` and
/// `Attention` are opset 23, `Swish` opset 24).
pub const OPSET: i64 = 24;

/// Build the graph of the architecture `cfg` names (`architectures[0]`, else
/// `model_type`).
pub fn build(cfg: &HfConfig, w: &dyn WeightSource) -> Result<Model, ArchError> {
    match cfg.architecture() {
        Some("BertModel" | "bert") => bert::build(cfg, w),
        Some("GPT2LMHeadModel" | "gpt2") => gpt2::build(cfg, w),
        Some("LlamaForCausalLM" | "llama") => llama::build(cfg, w),
        Some(other) => Err(ArchError::Unsupported(format!("architecture `{other}`"))),
        None => Err(ArchError::Config(
            "neither `architectures` nor `model_type` is set".into(),
        )),
    }
}

/// ONNX `TensorProto.DataType` codes of the `Cast` targets the builders use.
const ONNX_FLOAT: i64 = 1;
const ONNX_BOOL: i64 = 9;

/// Every way building an architecture can fail.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// `config.json` is missing a key or has a bad value.
    #[error("config: {0}")]
    Config(String),
    /// The architecture (or one of its options) is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A weight the architecture needs is not in the checkpoint.
    #[error("missing weight `{0}`")]
    MissingWeight(String),
    /// A weight exists but has the wrong shape or dtype.
    #[error("weight `{name}`: {msg}")]
    BadWeight {
        /// The weight's name.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// Adding a node failed (shape inference rejected it).
    #[error("building `{node}`: {source}")]
    Ir {
        /// The node being added.
        node: String,
        /// The IR's error.
        source: IrError,
    },
}

/// Where a builder gets its weights: by checkpoint name.
pub trait WeightSource {
    /// The tensor called `name` (zero-copy where the format allows).
    fn get(&self, name: &str) -> Result<Tensor, ArchError>;
    /// Whether the checkpoint has a tensor called `name`.
    fn contains(&self, name: &str) -> bool;
}

/// How a linear layer's weight matrix is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[out, in]`: PyTorch `nn.Linear`, GGUF.
    OutIn,
    /// `[in, out]`: GPT-2's `Conv1D`.
    InOut,
}

/// Shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnSpec {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` for MHA; fewer for GQA, dividing `heads`).
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Causal (decoder) masking, aligned to the end of the cache: query `i` of
    /// `S` new tokens sees keys `0..=past + i`.
    pub causal: bool,
}

/// A key or value cache pair, each `[batch, kv_heads, len, head_dim]`.
#[derive(Clone, Copy, Debug)]
pub struct Kv {
    /// Keys.
    pub key: OutletId,
    /// Values.
    pub value: OutletId,
}

/// What [`Builder::attention`] returns.
#[derive(Clone, Copy, Debug)]
pub struct AttnOut {
    /// The attended values as rows `[tokens, heads · head_dim]`.
    pub y: OutletId,
    /// The cache after this call: past keys/values followed by the new ones.
    pub present: Kv,
}

/// The token ids input and shape values derived from it once.
#[derive(Clone, Copy, Debug)]
struct Tokens {
    /// `[batch, seq]` as a 1-D i64 tensor.
    batch_seq: OutletId,
    /// `seq` as an i64 scalar.
    seq: OutletId,
}

/// A graph under construction plus the weights it draws on.
pub struct Builder<'w> {
    g: Graph,
    weights: &'w dyn WeightSource,
    /// Outlets of weights already added (tied weights are added once).
    loaded: HashMap<String, OutletId>,
    /// Small i64 constants already added, by value.
    ints: HashMap<Vec<i64>, OutletId>,
    /// i64 scalar constants already added, by value.
    int_scalars: HashMap<i64, OutletId>,
    /// `[batch, seq, ..tail]` shape tensors already built, by tail.
    bs_shapes: HashMap<Vec<i64>, OutletId>,
    used: HashSet<String>,
    scope: String,
    tokens: Option<Tokens>,
}

impl<'w> Builder<'w> {
    /// A builder for a graph called `name`. Graphs compute in f32.
    pub fn new(name: &str, weights: &'w dyn WeightSource) -> Builder<'w> {
        Builder {
            g: Graph::new(name),
            weights,
            loaded: HashMap::new(),
            ints: HashMap::new(),
            int_scalars: HashMap::new(),
            bs_shapes: HashMap::new(),
            used: HashSet::new(),
            scope: String::new(),
            tokens: None,
        }
    }

    /// Prefix the names of the nodes added next (e.g. `layer.3.attn`).
    pub fn set_scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph {
        &self.g
    }

    /// A node name `<scope>.<what>` not used before in this graph.
    fn fresh(&mut self, what: &str) -> String {
        let base = if self.scope.is_empty() {
            what.to_string()
        } else {
            format!("{}.{what}", self.scope)
        };
        let mut name = base.clone();
        let mut n = 1;
        while !self.used.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }

    /// Add a graph input.
    pub fn input(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) -> OutletId {
        self.used.insert(name.to_string());
        self.g.add_input(
            name,
            ValueType::Tensor(TensorType {
                dtype,
                shape: Some(egret_ir::Shape(dims)),
            }),
        )
    }

    /// Add the `[batch, seq]` i64 token-id input every builder starts from, and
    /// remember its shape for [`Builder::attention`] and [`Builder::unrows`].
    pub fn token_input(&mut self, name: &str) -> Result<OutletId, ArchError> {
        let ids = self.input(
            name,
            DType::I64,
            vec![Dim::Sym("batch".into()), Dim::Sym("seq".into())],
        );
        let batch_seq = self.op("Shape", &[ids], vec![])?;
        let one = self.int_scalar(1);
        let seq = self.op("Gather", &[batch_seq, one], vec![("axis", Attr::Int(0))])?;
        self.tokens = Some(Tokens { batch_seq, seq });
        Ok(ids)
    }

    fn tokens(&self) -> Result<Tokens, ArchError> {
        self.tokens
            .ok_or_else(|| ArchError::Unsupported("builder used before token_input".into()))
    }

    /// Whether the checkpoint has a tensor called `name`.
    pub fn has_weight(&self, name: &str) -> bool {
        self.loaded.contains_key(name) || self.weights.contains(name)
    }

    /// The weight `name` as a constant (added once; later calls reuse it, which
    /// is how tied embeddings share storage). f16/bf16/f64 weights get a `Cast`
    /// to f32 after them (the stored tensor stays zero-copy); block-quantized
    /// weights are left as they are for the kernels that read blocks.
    pub fn weight(&mut self, name: &str) -> Result<OutletId, ArchError> {
        if let Some(&o) = self.loaded.get(name) {
            return Ok(o);
        }
        let t = self.weights.get(name)?;
        let dtype = t.dtype();
        self.used.insert(name.to_string());
        let mut o = self.g.add_const(name, t);
        if dtype.is_float() && dtype != DType::F32 {
            o = self.global(|b| b.op("Cast", &[o], vec![("to", Attr::Int(ONNX_FLOAT))]))?;
        }
        self.loaded.insert(name.to_string(), o);
        Ok(o)
    }

    /// Run `f` with the scope cleared, for nodes shared by every layer.
    fn global<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::take(&mut self.scope);
        let r = f(self);
        self.scope = saved;
        r
    }

    /// A named constant.
    pub fn constant(&mut self, what: &str, t: Tensor) -> OutletId {
        let name = self.fresh(what);
        self.g.add_const(&name, t)
    }

    /// A 1-D i64 constant (shared between uses of the same value).
    pub fn ints(&mut self, v: &[i64]) -> Result<OutletId, ArchError> {
        if let Some(&o) = self.ints.get(v) {
            return Ok(o);
        }
        let t = Tensor::from_vec(vec![v.len()], v.to_vec()).map_err(|source| ArchError::Ir {
            node: "ints".into(),
            source,
        })?;
        let o = self.global(|b| b.constant("ints", t));
        self.ints.insert(v.to_vec(), o);
        Ok(o)
    }

    /// An i64 scalar constant (shared between uses of the same value).
    pub fn int_scalar(&mut self, v: i64) -> OutletId {
        if let Some(&o) = self.int_scalars.get(&v) {
            return o;
        }
        let o = self.global(|b| b.constant("int", Tensor::scalar(v)));
        self.int_scalars.insert(v, o);
        o
    }

    /// An f32 scalar constant.
    pub fn scalar(&mut self, what: &str, v: f32) -> OutletId {
        self.constant(what, Tensor::scalar(v))
    }

    /// Add `op_type(inputs)` with `attrs`, named `<scope>.<op type>`.
    pub fn op(
        &mut self,
        op_type: &str,
        inputs: &[OutletId],
        attrs: Vec<(&str, Attr)>,
    ) -> Result<OutletId, ArchError> {
        let ins: Vec<Option<OutletId>> = inputs.iter().copied().map(Some).collect();
        Ok(self.op_n(op_type, &ins, attrs, 1)?[0])
    }

    /// [`Builder::op`] with optional inputs and `n` outputs.
    pub fn op_n(
        &mut self,
        op_type: &str,
        inputs: &[Option<OutletId>],
        attrs: Vec<(&str, Attr)>,
        n: usize,
    ) -> Result<Vec<OutletId>, ArchError> {
        let name = self.fresh(&op_type.to_ascii_lowercase());
        let mut call = OpCall::new(op_type);
        for (k, v) in attrs {
            call = call.with(k, v);
        }
        self.g
            .call(&name, call, inputs, n)
            .map_err(|source| ArchError::Ir { node: name, source })
    }

    /// `x · Wᵀ + b` on rows `x: [tokens, in]` with the weight `<prefix>.weight`
    /// (`[out, in]`) and `<prefix>.bias` when the checkpoint has one.
    pub fn linear(&mut self, x: OutletId, prefix: &str) -> Result<OutletId, ArchError> {
        self.linear_as(x, prefix, WeightLayout::OutIn)
    }

    /// [`Builder::linear`] for a weight stored in `layout`.
    pub fn linear_as(
        &mut self,
        x: OutletId,
        prefix: &str,
        layout: WeightLayout,
    ) -> Result<OutletId, ArchError> {
        let w = self.weight(&format!("{prefix}.weight"))?;
        let bias = format!("{prefix}.bias");
        let b = if self.has_weight(&bias) {
            Some(self.weight(&bias)?)
        } else {
            None
        };
        let trans_b = Attr::Int((layout == WeightLayout::OutIn) as i64);
        Ok(self.op_n("Gemm", &[Some(x), Some(w), b], vec![("transB", trans_b)], 1)?[0])
    }

    /// `LayerNormalization` over the last axis with `<prefix>.weight` and, when
    /// present, `<prefix>.bias`.
    pub fn layer_norm(
        &mut self,
        x: OutletId,
        prefix: &str,
        eps: f64,
    ) -> Result<OutletId, ArchError> {
        let w = self.weight(&format!("{prefix}.weight"))?;
        let bias = format!("{prefix}.bias");
        let b = if self.has_weight(&bias) {
            Some(self.weight(&bias)?)
        } else {
            None
        };
        let attrs = vec![
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(eps as f32)),
        ];
        Ok(self.op_n("LayerNormalization", &[Some(x), Some(w), b], attrs, 1)?[0])
    }

    /// `RMSNormalization` over the last axis with the scale tensor `weight`
    /// (a full name: GGUF's `blk.0.attn_norm.weight`, HF's `...norm.weight`).
    pub fn rms_norm(&mut self, x: OutletId, weight: &str, eps: f64) -> Result<OutletId, ArchError> {
        let w = self.weight(weight)?;
        let attrs = vec![
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(eps as f32)),
        ];
        self.op("RMSNormalization", &[x, w], attrs)
    }

    /// GELU: exact (erf) or the tanh approximation.
    pub fn gelu(&mut self, x: OutletId, tanh: bool) -> Result<OutletId, ArchError> {
        let approx = if tanh { "tanh" } else { "none" };
        self.op(
            "Gelu",
            &[x],
            vec![("approximate", Attr::String(approx.into()))],
        )
    }

    /// SiLU (`x · sigmoid(x)`, ONNX `Swish` with alpha 1).
    pub fn silu(&mut self, x: OutletId) -> Result<OutletId, ArchError> {
        self.op("Swish", &[x], vec![])
    }

    /// The activation an HF config names in `hidden_act` / `activation_function`.
    pub fn activation(&mut self, x: OutletId, name: &str) -> Result<OutletId, ArchError> {
        match name {
            "gelu" => self.gelu(x, false),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => self.gelu(x, true),
            "silu" | "swish" => self.silu(x),
            "relu" => self.op("Relu", &[x], vec![]),
            other => Err(ArchError::Unsupported(format!("activation `{other}`"))),
        }
    }

    /// Rows of the embedding table `table` (`[vocab, width]`) picked by `ids`
    /// (any shape; the result has shape `ids.shape + [width]`).
    pub fn embedding(&mut self, table: &str, ids: OutletId) -> Result<OutletId, ArchError> {
        let w = self.weight(table)?;
        self.op("Gather", &[w, ids], vec![("axis", Attr::Int(0))])
    }

    /// The static size of `x`'s last axis.
    pub fn width(&self, x: OutletId) -> Result<usize, ArchError> {
        self.g
            .value_type(x)
            .as_tensor()
            .and_then(|t| t.shape.as_ref())
            .and_then(|s| s.dims().last())
            .and_then(|d| d.known())
            .ok_or_else(|| {
                ArchError::Unsupported(format!(
                    "`{}` has no static last dimension",
                    self.g.value_name(x)
                ))
            })
    }

    /// `[.., width]` to rows `[tokens, width]`.
    pub fn rows(&mut self, x: OutletId) -> Result<OutletId, ArchError> {
        let s = self.ints(&[-1, self.width(x)? as i64])?;
        self.op("Reshape", &[x, s], vec![])
    }

    /// Rows `[tokens, width]` back to `[batch, seq, width]`. The result is typed
    /// `[batch, seq, width]` (shape inference alone cannot see through the
    /// run-time shape tensor, and later ops need the static width).
    pub fn unrows(&mut self, x: OutletId) -> Result<OutletId, ArchError> {
        let width = self.width(x)?;
        let s = self.bs_shape(&[width as i64])?;
        let y = self.op("Reshape", &[x, s], vec![])?;
        let dtype = self
            .g
            .value_type(x)
            .as_tensor()
            .map_or(DType::F32, |t| t.dtype);
        if let Some(out) = self.g.node_mut(y.node).outputs.get_mut(y.slot) {
            out.ty = ValueType::Tensor(TensorType {
                dtype,
                shape: Some(egret_ir::Shape(vec![
                    Dim::Sym("batch".into()),
                    Dim::Sym("seq".into()),
                    Dim::Known(width),
                ])),
            });
        }
        Ok(y)
    }

    /// The shape `[batch, seq, ..tail]` as an i64 tensor.
    fn bs_shape(&mut self, tail: &[i64]) -> Result<OutletId, ArchError> {
        if let Some(&o) = self.bs_shapes.get(tail) {
            return Ok(o);
        }
        let bs = self.tokens()?.batch_seq;
        let t = self.ints(tail)?;
        let o = self.global(|b| b.op("Concat", &[bs, t], vec![("axis", Attr::Int(0))]))?;
        self.bs_shapes.insert(tail.to_vec(), o);
        Ok(o)
    }

    /// Positions `offset .. offset + seq` as i64 `[seq]` (`offset` an i64
    /// scalar, e.g. the cache length; `None` = 0).
    pub fn positions(&mut self, offset: Option<OutletId>) -> Result<OutletId, ArchError> {
        let seq = self.tokens()?.seq;
        let (zero, step) = (self.int_scalar(0), self.int_scalar(1));
        let start = offset.unwrap_or(zero);
        let end = self.op("Add", &[start, seq], vec![])?;
        self.op("Range", &[start, end, step], vec![])
    }

    /// A `[batch, seq]` 0/1 (any integer type) attention mask as the boolean
    /// mask `[batch, 1, seq, seq]` that [`Builder::attention`] takes, every
    /// query row the same. The ONNX spec would accept `[batch, 1, 1, seq]`, but
    /// onnxruntime's `Attention` insists on the query length in the third axis,
    /// and egret's ONNX exports must run there.
    pub fn key_mask(&mut self, mask: OutletId) -> Result<OutletId, ArchError> {
        let b = self.op("Cast", &[mask], vec![("to", Attr::Int(ONNX_BOOL))])?;
        let axes = self.ints(&[1, 2])?;
        let keys = self.op("Unsqueeze", &[b, axes], vec![])?;
        let shape = self.op("Shape", &[mask], vec![])?;
        let (one, two) = (self.ints(&[1])?, self.ints(&[2])?);
        let seq = self.op("Slice", &[shape, one, two], vec![])?;
        let ones = self.ints(&[1, 1])?;
        let rows = self.op("Concat", &[ones, seq, one], vec![("axis", Attr::Int(0))])?;
        self.op("Expand", &[keys, rows], vec![])
    }

    /// A `[batch, kv_heads, past, head_dim]` f32 cache input named by the decoder
    /// convention of `egret_runtime::generate`: `past_key_values.{layer}.key` /
    /// `.value`.
    pub fn past_kv(&mut self, layer: usize, kv_heads: usize, head_dim: usize) -> Kv {
        let mut one = |what: &str| {
            let dims = vec![
                Dim::Sym("batch".into()),
                Dim::Known(kv_heads),
                Dim::Sym("past".into()),
                Dim::Known(head_dim),
            ];
            self.input(&format!("past_key_values.{layer}.{what}"), DType::F32, dims)
        };
        Kv {
            key: one("key"),
            value: one("value"),
        }
    }

    /// The number of cached positions of `past` as an i64 scalar.
    pub fn cache_len(&mut self, past: Kv) -> Result<OutletId, ArchError> {
        let shape = self.op("Shape", &[past.key], vec![])?;
        let two = self.int_scalar(2);
        self.op("Gather", &[shape, two], vec![("axis", Attr::Int(0))])
    }

    /// `x` as `[batch, seq, width]`: rows are reshaped (the result keeps its
    /// static width), 3-D values pass through.
    fn batched(&mut self, x: OutletId) -> Result<OutletId, ArchError> {
        let rank = self
            .g
            .value_type(x)
            .as_tensor()
            .and_then(|t| t.shape.as_ref())
            .map(|s| s.rank());
        match rank {
            Some(2) => self.unrows(x),
            _ => Ok(x),
        }
    }

    /// Scaled dot-product attention: the ONNX `Attention` op (opset 23) on
    /// `q: [.., heads · head_dim]`, `k`, `v: [.., kv_heads · head_dim]` given as
    /// rows `[tokens, ..]` or as `[batch, seq, ..]`, with an optional boolean key
    /// mask (`[batch, 1, 1, past + seq]`, true = attend, see
    /// [`Builder::key_mask`]) and an optional cache of earlier keys/values
    /// (see [`Builder::past_kv`]). The scale is `1/sqrt(head_dim)`; GQA repeats
    /// each key/value head `heads / kv_heads` times (`h0 h0 h1 h1 ..`, as HF's
    /// `repeat_kv`). `y` comes back as rows.
    pub fn attention(
        &mut self,
        q: OutletId,
        k: OutletId,
        v: OutletId,
        spec: &AttnSpec,
        mask: Option<OutletId>,
        past: Option<Kv>,
    ) -> Result<AttnOut, ArchError> {
        let AttnSpec {
            heads,
            kv_heads,
            head_dim,
            causal,
        } = *spec;
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(ArchError::Config(format!(
                "{heads} attention heads are not a multiple of {kv_heads} key/value heads"
            )));
        }
        let (q, k, v) = (self.batched(q)?, self.batched(k)?, self.batched(v)?);
        let attrs = vec![
            ("q_num_heads", Attr::Int(heads as i64)),
            ("kv_num_heads", Attr::Int(kv_heads as i64)),
            ("is_causal", Attr::Int(i64::from(causal))),
            ("scale", Attr::Float(1.0 / (head_dim as f32).sqrt())),
        ];
        let ins = [
            Some(q),
            Some(k),
            Some(v),
            mask,
            past.map(|p| p.key),
            past.map(|p| p.value),
        ];
        let outs = self.op_n("Attention", &ins, attrs, 3)?;
        let y = self.rows(outs[0])?;
        Ok(AttnOut {
            y,
            present: Kv {
                key: outs[1],
                value: outs[2],
            },
        })
    }

    /// Finish: name the outputs and wrap the graph in a [`Model`] with the
    /// standard opset and the given metadata.
    pub fn finish(
        mut self,
        outputs: &[(&str, OutletId)],
        metadata: &[(&str, &str)],
    ) -> Result<Model, ArchError> {
        for &(name, o) in outputs {
            if self.used.contains(name) && self.g.value_name(o) != name {
                return Err(ArchError::Unsupported(format!(
                    "output name `{name}` already used"
                )));
            }
            let node = self.g.node_mut(o.node);
            if let Some(v) = node.outputs.get_mut(o.slot) {
                v.name = name.to_string();
            }
            self.g.outputs.push(o);
        }
        let mut model = Model {
            graph: self.g,
            ..Default::default()
        };
        model.opsets.insert(String::new(), OPSET);
        for &(k, v) in metadata {
            model.metadata.insert(k.to_string(), v.to_string());
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights held in a map.
    struct Map(HashMap<String, Tensor>);

    impl WeightSource for Map {
        fn get(&self, name: &str) -> Result<Tensor, ArchError> {
            self.0
                .get(name)
                .cloned()
                .ok_or_else(|| ArchError::MissingWeight(name.into()))
        }
        fn contains(&self, name: &str) -> bool {
            self.0.contains_key(name)
        }
    }

    fn weights() -> Map {
        let f16 = |v: &[f32]| v.iter().map(|&x| half::f16::from_f32(x)).collect();
        Map(HashMap::from([
            (
                "emb.weight".to_string(),
                Tensor::from_vec(vec![3, 2], vec![1f32, 2., 3., 4., 5., 6.]).unwrap(),
            ),
            (
                "fc.weight".to_string(),
                Tensor::from_vec::<half::f16>(vec![1, 2], f16(&[1., -1.])).unwrap(),
            ),
            (
                "fc.bias".to_string(),
                Tensor::from_vec(vec![1], vec![0.5f32]).unwrap(),
            ),
        ]))
    }

    fn op_types(g: &Graph) -> Vec<String> {
        g.topo_order()
            .unwrap()
            .into_iter()
            .filter_map(|n| g.node(n).op.as_call().map(|c| c.op_type.clone()))
            .collect()
    }

    #[test]
    fn weights_are_shared_cast_and_typed() {
        let w = weights();
        let mut b = Builder::new("t", &w);
        let ids = b.token_input("ids").unwrap();
        let x = b.embedding("emb.weight", ids).unwrap();
        let again = b.weight("emb.weight").unwrap();
        assert_eq!(
            b.weight("emb.weight").unwrap(),
            again,
            "tied weights added once"
        );
        let x = b.rows(x).unwrap();
        let y = b.linear(x, "fc").unwrap();
        assert_eq!(b.width(y).unwrap(), 1);
        let y = b.unrows(y).unwrap();
        let ty = b.graph().value_type(y).as_tensor().unwrap().clone();
        assert_eq!(ty.dtype, DType::F32);
        assert_eq!(
            ty.shape.unwrap().dims(),
            &[
                Dim::Sym("batch".into()),
                Dim::Sym("seq".into()),
                Dim::Known(1)
            ]
        );
        let m = b.finish(&[("out", y)], &[("k", "v")]).unwrap();
        assert_eq!(m.graph.value_name(m.graph.outputs[0]), "out");
        assert_eq!(m.opsets[""], OPSET);
        // The f16 weight is cast to f32 before the Gemm (transB: [out, in]).
        let ops = op_types(&m.graph);
        assert!(ops.contains(&"Cast".to_string()) && ops.contains(&"Gemm".to_string()));
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let w = weights();
        let mut b = Builder::new("t", &w);
        let ids = b.token_input("ids").unwrap();
        assert!(matches!(b.weight("nope"), Err(ArchError::MissingWeight(_))));
        assert!(matches!(
            b.activation(ids, "quick_gelu_v9"),
            Err(ArchError::Unsupported(_))
        ));
        let spec = AttnSpec {
            heads: 3,
            kv_heads: 2,
            head_dim: 4,
            causal: true,
        };
        assert!(b.attention(ids, ids, ids, &spec, None, None).is_err());
        // A Gemm of mismatched widths fails in shape inference, naming the node.
        let x = b.embedding("emb.weight", ids).unwrap();
        let err = b.linear(x, "fc").unwrap_err().to_string();
        assert!(err.contains("gemm"), "{err}");
        let cfg = HfConfig::parse(r#"{"architectures":["Mamba"]}"#).unwrap();
        assert!(matches!(build(&cfg, &w), Err(ArchError::Unsupported(_))));
        let cfg = HfConfig::parse(r#"{"architectures":["BertModel"]}"#).unwrap();
        assert!(matches!(build(&cfg, &w), Err(ArchError::Config(_))));
        let cfg = HfConfig::parse("{}").unwrap();
        assert!(matches!(build(&cfg, &w), Err(ArchError::Config(_))));
    }
}
