//! `ModelProto` → [`Model`], in two stages.
//!
//! 1. **Lowering** ([`Lower`]) turns each `GraphProto` into an [`LGraph`]: decoded
//!    constants (initializers, `Constant` nodes, constants made by normalisation),
//!    converted attributes, nodes rewritten to their latest-opset form
//!    ([`super::normalize`]), and the graph's *free names* (values it reads from
//!    enclosing scopes). Everything is still name-based, so unsupported ops can be
//!    collected across the whole model before anything is built.
//! 2. **Building** ([`build`]) sorts each graph's nodes topologically, resolves
//!    names to outlets, turns outer-scope reads into explicit captures, and infers
//!    every node's output types with [`egret_ir::infer::infer_call`].

use super::normalize::{normalize, resolve_deferred};
use super::proto::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, ModelProto, NodeProto,
    ValueInfoProto,
};
use super::tensor::{decode, sparse_to_dense, ExternalFiles};
use super::types::{more_specific, value_type, SymGen};
use super::{OnnxError, MAX_SUBGRAPH_DEPTH, NUM_CAPTURES};
use egret_ir::infer::{infer_call, lookup, InputFact};
use egret_ir::{
    Attr, Attrs, DType, Graph, Model, Op, OpCall, OutletId, Tensor, TensorType, ValueInfo,
    ValueType,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// One node after lowering: still name-based, attributes converted, graphs lowered.
pub(crate) struct Spec {
    /// Node name (may be empty).
    pub name: String,
    /// Domain (`""` for the standard set, `ai.onnx` already mapped to it).
    pub domain: String,
    /// Op type.
    pub op_type: String,
    /// The opset version imported for the domain.
    pub opset: i64,
    /// Input value names; `""` is an absent optional input.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Non-graph attributes.
    pub attrs: Attrs,
    /// Graph-valued attributes.
    pub graphs: Vec<GraphAttr>,
}

/// A graph-valued attribute (`GRAPH` or `GRAPHS`).
pub(crate) struct GraphAttr {
    /// Attribute name.
    pub name: String,
    /// The lowered graphs (exactly one unless `list`).
    pub graphs: Vec<LGraph>,
    /// True for a `GRAPHS` attribute.
    pub list: bool,
}

impl Spec {
    /// A new standard-domain node derived from `from` (by a normalisation rule).
    pub fn derived(
        from: &Spec,
        suffix: &str,
        op: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> Spec {
        Spec {
            name: format!("{}/{suffix}", from.label()),
            domain: String::new(),
            op_type: op.into(),
            opset: from.opset,
            inputs,
            outputs,
            attrs: Attrs::default(),
            graphs: vec![],
        }
    }

    /// Builder-style attribute setter.
    pub fn with_attr(mut self, name: &str, a: Attr) -> Spec {
        self.attrs.set(name, a);
        self
    }

    /// The node name, or its first output's name.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            self.outputs.first().map(String::as_str).unwrap_or("")
        } else {
            &self.name
        }
    }

    /// Every outer value the node's subgraphs read.
    fn captured_names(&self) -> impl Iterator<Item = &String> {
        self.graphs
            .iter()
            .flat_map(|g| &g.graphs)
            .flat_map(|g| &g.free)
    }

    /// Every value the node reads: its inputs and its subgraphs' free names.
    fn reads(&self) -> impl Iterator<Item = &String> {
        self.inputs
            .iter()
            .filter(|n| !n.is_empty())
            .chain(self.captured_names())
    }
}

/// What a normalisation rule may add to the graph being lowered.
pub(crate) struct NormCx<'a> {
    /// Constants of the graph.
    pub consts: &'a mut Vec<(String, Tensor)>,
    /// Counter for fresh value names.
    pub fresh: &'a mut usize,
}

impl NormCx<'_> {
    /// A fresh value name.
    pub fn name(&mut self, hint: &str) -> String {
        *self.fresh += 1;
        format!("__egret_{hint}_{}", self.fresh)
    }

    /// Add a constant under a fresh name and return the name.
    pub fn konst(&mut self, hint: &str, t: Tensor) -> String {
        let n = self.name(hint);
        self.consts.push((n.clone(), t));
        n
    }
}

/// A lowered graph.
pub(crate) struct LGraph {
    name: String,
    /// Formal inputs (initializer-shadowed inputs excluded) with declared types.
    inputs: Vec<(String, Option<ValueType>)>,
    consts: Vec<(String, Tensor)>,
    nodes: Vec<Spec>,
    outputs: Vec<(String, Option<ValueType>)>,
    value_info: HashMap<String, ValueType>,
    /// Sorted names read from enclosing scopes.
    free: Vec<String>,
}

impl LGraph {
    /// A graph of the single node `spec`, with formal `inputs` (typed by the
    /// enclosing node's hints) and `outputs`; it reads what `spec`'s subgraphs read.
    pub(crate) fn single_node(
        name: String,
        spec: Spec,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> LGraph {
        let free: BTreeSet<String> = spec.captured_names().cloned().collect();
        LGraph {
            name,
            inputs: inputs.into_iter().map(|n| (n, None)).collect(),
            consts: vec![],
            nodes: vec![spec],
            outputs: outputs.into_iter().map(|n| (n, None)).collect(),
            value_info: HashMap::new(),
            free: free.into_iter().collect(),
        }
    }
}

/// Graph attributes the standard control-flow ops cannot do without.
const REQUIRED_GRAPHS: &[(&str, &[&str])] = &[
    ("If", &["then_branch", "else_branch"]),
    ("Loop", &["body"]),
    ("Scan", &["body"]),
];

/// Lowering state for one model.
pub(crate) struct Lower<'a> {
    model_dir: Option<&'a Path>,
    opsets: &'a BTreeMap<String, i64>,
    syms: SymGen,
    fresh: usize,
    ext: ExternalFiles,
}

enum Converted {
    Attr(Attr),
    Graphs(Vec<LGraph>, bool),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl<'a> Lower<'a> {
    fn new(model_dir: Option<&'a Path>, opsets: &'a BTreeMap<String, i64>) -> Lower<'a> {
        Lower {
            model_dir,
            opsets,
            syms: SymGen::default(),
            fresh: 0,
            ext: ExternalFiles::default(),
        }
    }

    fn decode_type(
        &mut self,
        tp: Option<&super::proto::TypeProto>,
    ) -> Result<Option<ValueType>, OnnxError> {
        Ok(match tp {
            None => None,
            Some(t) => value_type(t, &mut self.syms)?,
        })
    }

    /// The declared type of a graph input or output (`what`), errors naming it.
    fn declared(
        &mut self,
        vi: &ValueInfoProto,
        what: &str,
        graph: &str,
    ) -> Result<(String, Option<ValueType>), OnnxError> {
        let ty = self.decode_type(vi.r#type.as_ref()).map_err(|e| {
            OnnxError::Invalid(format!("{what} `{}` of graph `{graph}`: {e}", vi.name))
        })?;
        Ok((vi.name.clone(), ty))
    }

    /// Lower one graph; `depth` counts enclosing graphs, `owner` names the node holding it.
    fn graph(&mut self, gp: &GraphProto, depth: usize, owner: &str) -> Result<LGraph, OnnxError> {
        if depth > MAX_SUBGRAPH_DEPTH {
            return Err(OnnxError::TooDeep {
                limit: MAX_SUBGRAPH_DEPTH,
                node: owner.to_string(),
            });
        }
        let mut consts = Vec::with_capacity(gp.initializer.len());
        for t in &gp.initializer {
            consts.push((t.name.clone(), decode(t, self.model_dir, &mut self.ext)?));
        }
        for sp in &gp.sparse_initializer {
            let name = sp
                .values
                .as_ref()
                .map(|v| v.name.clone())
                .unwrap_or_default();
            consts.push((name, sparse_to_dense(sp, self.model_dir, &mut self.ext)?));
        }
        let init: HashSet<String> = consts.iter().map(|(n, _)| n.clone()).collect();
        let mut inputs = vec![];
        for vi in gp.input.iter().filter(|vi| !init.contains(&vi.name)) {
            inputs.push(self.declared(vi, "input", &gp.name)?);
        }
        let mut nodes = vec![];
        for np in &gp.node {
            self.node(np, depth, &mut consts, &mut nodes)?;
        }
        let mut outputs = vec![];
        for vi in &gp.output {
            outputs.push(self.declared(vi, "output", &gp.name)?);
        }
        let mut value_info = HashMap::new();
        for vi in &gp.value_info {
            // value_info is advisory: types egret cannot represent are skipped.
            if let Ok(Some(t)) = self.decode_type(vi.r#type.as_ref()) {
                value_info.insert(vi.name.clone(), t);
            }
        }
        let defined: HashSet<&String> = inputs
            .iter()
            .map(|(n, _)| n)
            .chain(consts.iter().map(|(n, _)| n))
            .chain(nodes.iter().flat_map(|s| &s.outputs))
            .collect();
        let free: BTreeSet<String> = nodes
            .iter()
            .flat_map(Spec::reads)
            .chain(outputs.iter().map(|(n, _)| n))
            .filter(|n| !defined.contains(n))
            .cloned()
            .collect();
        Ok(LGraph {
            name: gp.name.clone(),
            inputs,
            consts,
            nodes,
            outputs,
            value_info,
            free: free.into_iter().collect(),
        })
    }

    fn node(
        &mut self,
        np: &NodeProto,
        depth: usize,
        consts: &mut Vec<(String, Tensor)>,
        nodes: &mut Vec<Spec>,
    ) -> Result<(), OnnxError> {
        let domain = if np.domain == "ai.onnx" {
            ""
        } else {
            np.domain.as_str()
        };
        let label = if np.name.is_empty() {
            np.output.first().cloned().unwrap_or_default()
        } else {
            np.name.clone()
        };
        let op = np.op_type.as_str();
        let nerr = |msg: String| OnnxError::node(&label, op, msg);
        if op.is_empty() {
            return Err(nerr("empty op_type".into()));
        }
        let opset = match self.opsets.get(domain) {
            Some(&v) => v,
            None if domain.is_empty() => {
                return Err(nerr(
                    "the model imports no opset for the standard domain".into(),
                ))
            }
            None => 0,
        };
        let mut inputs = np.input.clone();
        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
        let mut outputs = np.output.clone();
        while outputs.last().is_some_and(String::is_empty) {
            outputs.pop();
        }
        for o in outputs.iter_mut().filter(|o| o.is_empty()) {
            self.fresh += 1;
            *o = format!("__egret_unused_{}", self.fresh);
        }
        let mut attrs = Attrs::default();
        let mut graphs = vec![];
        for a in &np.attribute {
            if a.name.is_empty() {
                return Err(nerr("attribute without a name".into()));
            }
            if !a.ref_attr_name.is_empty() {
                return Err(nerr(format!(
                    "attribute `{}` references a function attribute outside a function",
                    a.name
                )));
            }
            // Subgraph errors carry their own context; the rest get this node's.
            match self.attr(a, depth, &label).map_err(|e| match e {
                OnnxError::Invalid(m) => nerr(format!("attribute `{}`: {m}", a.name)),
                e @ (OnnxError::Tensor { .. } | OnnxError::ExternalData { .. }) => {
                    nerr(format!("attribute `{}`: {e}", a.name))
                }
                other => other,
            })? {
                Converted::Attr(x) => attrs.set(&a.name, x),
                Converted::Graphs(g, list) => graphs.push(GraphAttr {
                    name: a.name.clone(),
                    graphs: g,
                    list,
                }),
            }
        }
        if domain.is_empty() {
            let required = REQUIRED_GRAPHS
                .iter()
                .filter(|(o, _)| *o == op)
                .flat_map(|(_, a)| a.iter());
            if let Some(a) = required
                .into_iter()
                .find(|a| !graphs.iter().any(|g: &GraphAttr| g.name == **a))
            {
                return Err(nerr(format!("required graph attribute `{a}` is missing")));
            }
        }
        if domain.is_empty() && op == "Constant" {
            let [out] = outputs.as_slice() else {
                return Err(nerr(format!(
                    "Constant must have exactly one output, has {}",
                    outputs.len()
                )));
            };
            consts.push((out.clone(), constant_value(&attrs).map_err(nerr)?));
            return Ok(());
        }
        let spec = Spec {
            name: np.name.clone(),
            domain: domain.to_string(),
            op_type: op.to_string(),
            opset,
            inputs,
            outputs,
            attrs,
            graphs,
        };
        let mut cx = NormCx {
            consts,
            fresh: &mut self.fresh,
        };
        nodes.extend(normalize(spec, &mut cx).map_err(nerr)?);
        Ok(())
    }

    fn attr(
        &mut self,
        a: &AttributeProto,
        depth: usize,
        owner: &str,
    ) -> Result<Converted, OnnxError> {
        use AttributeType as T;
        let kind = match T::try_from(a.r#type) {
            Ok(T::Undefined) | Err(_) => guess_kind(a),
            Ok(k) => k,
        };
        let missing =
            || OnnxError::Invalid(format!("{} attribute without a value", kind.as_str_name()));
        let (dir, ext) = (self.model_dir, &mut self.ext);
        let attr = match kind {
            T::Float => Attr::Float(a.f),
            T::Int => Attr::Int(a.i),
            T::String => Attr::String(lossy(&a.s)),
            T::Tensor => Attr::Tensor(decode(a.t.as_ref().ok_or_else(missing)?, dir, ext)?),
            T::SparseTensor => Attr::Tensor(sparse_to_dense(
                a.sparse_tensor.as_ref().ok_or_else(missing)?,
                dir,
                ext,
            )?),
            T::TypeProto => Attr::Type(self.decode_type(a.tp.as_ref())?.ok_or_else(missing)?),
            T::Floats => Attr::Floats(a.floats.clone()),
            T::Ints => Attr::Ints(a.ints.clone()),
            T::Strings => Attr::Strings(a.strings.iter().map(|s| lossy(s)).collect()),
            T::Tensors => Attr::Tensors(
                a.tensors
                    .iter()
                    .map(|t| decode(t, dir, ext))
                    .collect::<Result<_, _>>()?,
            ),
            T::SparseTensors => Attr::Tensors(
                a.sparse_tensors
                    .iter()
                    .map(|t| sparse_to_dense(t, dir, ext))
                    .collect::<Result<_, _>>()?,
            ),
            T::Graph => {
                let g = a.g.as_ref().ok_or_else(missing)?;
                return Ok(Converted::Graphs(
                    vec![self.graph(g, depth + 1, owner)?],
                    false,
                ));
            }
            T::Graphs => {
                let gs = a
                    .graphs
                    .iter()
                    .map(|g| self.graph(g, depth + 1, owner))
                    .collect::<Result<_, _>>()?;
                return Ok(Converted::Graphs(gs, true));
            }
            T::TypeProtos | T::Undefined => {
                return Err(OnnxError::Invalid(format!(
                    "{} attributes are not supported",
                    kind.as_str_name()
                )))
            }
        };
        Ok(Converted::Attr(attr))
    }
}

/// The kind of an attribute from IR versions that did not record it.
fn guess_kind(a: &AttributeProto) -> AttributeType {
    use AttributeType as T;
    if a.t.is_some() {
        T::Tensor
    } else if a.g.is_some() {
        T::Graph
    } else if !a.floats.is_empty() {
        T::Floats
    } else if !a.ints.is_empty() {
        T::Ints
    } else if !a.strings.is_empty() {
        T::Strings
    } else if !a.tensors.is_empty() {
        T::Tensors
    } else if !a.graphs.is_empty() {
        T::Graphs
    } else if !a.s.is_empty() {
        T::String
    } else if a.f != 0.0 {
        T::Float
    } else {
        T::Int
    }
}

/// The value of a `Constant` node, from whichever `value*` attribute it has.
fn constant_value(attrs: &Attrs) -> Result<Tensor, String> {
    let mut it = attrs.iter();
    let (Some((name, a)), None) = (it.next(), it.next()) else {
        return Err("Constant needs exactly one value attribute".into());
    };
    let ir = |e: egret_ir::IrError| e.to_string();
    match (name.as_str(), a) {
        ("value" | "sparse_value", Attr::Tensor(t)) => Ok(t.clone()),
        ("value_float", Attr::Float(v)) => Ok(Tensor::scalar(*v)),
        ("value_floats", Attr::Floats(v)) => Tensor::from_vec(vec![v.len()], v.clone()).map_err(ir),
        ("value_int", Attr::Int(v)) => Ok(Tensor::scalar(*v)),
        ("value_ints", Attr::Ints(v)) => Tensor::from_vec(vec![v.len()], v.clone()).map_err(ir),
        ("value_string", Attr::String(v)) => {
            Tensor::from_strings(vec![], vec![v.clone()]).map_err(ir)
        }
        ("value_strings", Attr::Strings(v)) => {
            Tensor::from_strings(vec![v.len()], v.clone()).map_err(ir)
        }
        (n, a) => Err(format!(
            "unexpected Constant attribute `{n}` of kind {}",
            a.kind()
        )),
    }
}

fn collect_unsupported(g: &LGraph, out: &mut BTreeSet<(String, String, i64)>) {
    for n in &g.nodes {
        if lookup(&n.domain, &n.op_type).is_none() {
            out.insert((n.domain.clone(), n.op_type.clone(), n.opset));
        }
        for sub in n.graphs.iter().flat_map(|a| &a.graphs) {
            collect_unsupported(sub, out);
        }
    }
}

/// The enclosing graph of a subgraph being built.
#[derive(Clone, Copy)]
struct Scope<'a> {
    graph: &'a Graph,
    names: &'a HashMap<String, OutletId>,
}

fn define(
    names: &mut HashMap<String, OutletId>,
    name: &str,
    o: OutletId,
    by: &str,
) -> Result<(), OnnxError> {
    if names.insert(name.to_string(), o).is_some() {
        return Err(OnnxError::DuplicateName {
            name: name.to_string(),
            by: by.to_string(),
        });
    }
    Ok(())
}

/// Node indices of `g` in a topological order (ties broken by file order).
/// `known` holds the values defined before any node (inputs, constants, captures).
fn topo_order(g: &LGraph, known: &HashMap<String, OutletId>) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for o in &n.outputs {
            if known.contains_key(o) || producer.insert(o, i).is_some() {
                return Err(OnnxError::DuplicateName {
                    name: o.clone(),
                    by: n.label().to_string(),
                });
            }
        }
    }
    let mut indeg = vec![0usize; g.nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![vec![]; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        let mut deps = BTreeSet::new();
        for name in n.reads() {
            match producer.get(name.as_str()) {
                Some(&p) => {
                    deps.insert(p);
                }
                None if known.contains_key(name) => {}
                None => {
                    return Err(OnnxError::UndefinedInput {
                        node: n.label().to_string(),
                        op: n.op_type.clone(),
                        name: name.clone(),
                    })
                }
            }
        }
        indeg[i] = deps.len();
        for p in deps {
            users[p].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..g.nodes.len())
        .filter(|&i| indeg[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(g.nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if let Some(n) = (0..g.nodes.len())
        .find(|&i| indeg[i] > 0)
        .and_then(|i| g.nodes.get(i))
    {
        return Err(OnnxError::Cycle {
            graph: g.name.clone(),
            node: n.label().to_string(),
            op: n.op_type.clone(),
        });
    }
    Ok(order)
}

/// A tensor or sequence type with its shape forgotten (dtype kept).
fn erase_shape(t: &ValueType) -> ValueType {
    match t {
        ValueType::Tensor(tt) => ValueType::Tensor(TensorType {
            dtype: tt.dtype,
            shape: None,
        }),
        ValueType::Sequence(tt) => ValueType::Sequence(TensorType {
            dtype: tt.dtype,
            shape: None,
        }),
        other => other.clone(),
    }
}

/// Types for a body's formal inputs that the body itself leaves undeclared,
/// derived from the enclosing node's inputs.
fn body_hints(spec: &Spec, attr: &str, in_types: &[Option<ValueType>]) -> Vec<Option<ValueType>> {
    match (spec.op_type.as_str(), attr) {
        ("Loop", "body") => {
            let mut v = vec![
                Some(ValueType::Tensor(TensorType::known(DType::I64, &[]))),
                Some(ValueType::Tensor(TensorType::known(DType::Bool, &[]))),
            ];
            v.extend(in_types.iter().skip(2).map(|t| t.as_ref().map(erase_shape)));
            v
        }
        ("Scan", "body") => in_types
            .iter()
            .map(|t| t.as_ref().map(erase_shape))
            .collect(),
        _ => vec![],
    }
}

/// Build one graph. `parent` is the enclosing graph of a subgraph; `captures` the
/// outer values to add as trailing inputs; `hints` types for undeclared formal inputs.
fn build(
    lg: &LGraph,
    parent: Option<Scope<'_>>,
    captures: &[String],
    hints: &[Option<ValueType>],
) -> Result<Graph, OnnxError> {
    let mut g = Graph::new(&lg.name);
    let mut names: HashMap<String, OutletId> = HashMap::new();
    for (i, (name, ty)) in lg.inputs.iter().enumerate() {
        let ty = ty
            .clone()
            .or_else(|| hints.get(i).cloned().flatten())
            .ok_or_else(|| {
                OnnxError::Invalid(format!("input `{name}` of graph `{}` has no type", lg.name))
            })?;
        let o = g.add_input(name, ty);
        define(&mut names, name, o, "a graph input")?;
    }
    if let Some(p) = parent {
        let outer = |name: &String| {
            p.names
                .get(name)
                .copied()
                .ok_or_else(|| OnnxError::UndefinedInput {
                    node: format!("graph `{}`", lg.name),
                    op: String::new(),
                    name: name.clone(),
                })
        };
        // Outer constants are copied in (cheap: tensors are shared), the rest captured.
        for name in &lg.free {
            if let Some(t) = p.graph.const_value(outer(name)?) {
                let o = g.add_const(name, t.clone());
                define(&mut names, name, o, "an outer constant")?;
            }
        }
        for name in captures {
            let o = g.add_input(name, p.graph.value_type(outer(name)?).clone());
            define(&mut names, name, o, "a captured outer value")?;
        }
    }
    for (name, t) in &lg.consts {
        let o = g.add_const(name, t.clone());
        define(&mut names, name, o, "an initializer or Constant")?;
    }
    for i in topo_order(lg, &names)? {
        let spec = &lg.nodes[i];
        build_node(&mut g, &mut names, spec, lg)?;
    }
    for (name, declared) in &lg.outputs {
        let o = *names.get(name).ok_or_else(|| OnnxError::UndefinedInput {
            node: format!("graph `{}` output", lg.name),
            op: String::new(),
            name: name.clone(),
        })?;
        if let Some(d) = declared {
            let merged = more_specific(g.value_type(o), d);
            g.node_mut(o.node).outputs[o.slot].ty = merged;
        }
        g.outputs.push(o);
    }
    Ok(g)
}

fn build_node(
    g: &mut Graph,
    names: &mut HashMap<String, OutletId>,
    spec: &Spec,
    lg: &LGraph,
) -> Result<(), OnnxError> {
    let label = spec.label();
    let ranks: Vec<Option<usize>> = spec
        .inputs
        .iter()
        .map(|n| {
            let o = *names.get(n)?;
            Some(g.value_type(o).as_tensor()?.shape.as_ref()?.rank())
        })
        .collect();
    let deferred =
        resolve_deferred(spec, &ranks).map_err(|m| OnnxError::node(label, &spec.op_type, m))?;
    if let Some(d) = deferred {
        for (name, t) in d.consts {
            let o = g.add_const(&name, t);
            define(names, &name, o, label)?;
        }
        return d.nodes.iter().try_for_each(|p| build_node(g, names, p, lg));
    }
    let resolve = |n: &String| -> Result<Option<OutletId>, OnnxError> {
        if n.is_empty() {
            return Ok(None);
        }
        names
            .get(n)
            .copied()
            .map(Some)
            .ok_or_else(|| OnnxError::UndefinedInput {
                node: label.to_string(),
                op: spec.op_type.clone(),
                name: n.clone(),
            })
    };
    let mut inputs = spec
        .inputs
        .iter()
        .map(resolve)
        .collect::<Result<Vec<_>, _>>()?;
    let mut call = OpCall {
        domain: spec.domain.clone(),
        op_type: spec.op_type.clone(),
        attrs: spec.attrs.clone(),
    };
    if !spec.graphs.is_empty() {
        // One capture list for all of the node's bodies (If's branches must agree).
        let caps: Vec<String> = spec
            .captured_names()
            .filter(|n| names.get(*n).is_some_and(|&o| g.const_value(o).is_none()))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let in_types: Vec<Option<ValueType>> = inputs
            .iter()
            .map(|o| o.map(|o| g.value_type(o).clone()))
            .collect();
        for ga in &spec.graphs {
            let hints = body_hints(spec, &ga.name, &in_types);
            let scope = Scope { graph: g, names };
            let built = ga
                .graphs
                .iter()
                .map(|sub| build(sub, Some(scope), &caps, &hints).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            let attr = match (ga.list, built.as_slice()) {
                (true, _) => Attr::Graphs(built),
                (false, [one]) => Attr::Graph(one.clone()),
                _ => {
                    return Err(OnnxError::node(
                        label,
                        &spec.op_type,
                        format!("attribute `{}` must hold one graph", ga.name),
                    ))
                }
            };
            call.attrs.set(&ga.name, attr);
        }
        for c in &caps {
            inputs.push(resolve(c)?);
        }
        call.attrs.set(NUM_CAPTURES, Attr::Int(caps.len() as i64));
    }
    let facts: Vec<Option<InputFact<'_>>> = inputs
        .iter()
        .map(|o| {
            o.map(|o| InputFact {
                ty: g.value_type(o),
                value: g.const_value(o),
            })
        })
        .collect();
    let tys = infer_call(label, &call, &facts, spec.outputs.len()).map_err(|e| {
        let msg = match e {
            egret_ir::IrError::Infer { msg, .. } => msg,
            other => other.to_string(),
        };
        OnnxError::node(label, &spec.op_type, msg)
    })?;
    let outputs: Vec<ValueInfo> = spec
        .outputs
        .iter()
        .zip(tys)
        .map(|(name, ty)| {
            let ty = match lg.value_info.get(name) {
                Some(d) => more_specific(&ty, d),
                None => ty,
            };
            ValueInfo {
                name: name.clone(),
                ty,
            }
        })
        .collect();
    let id = g
        .add_node(&spec.name, Op::Call(call), inputs, outputs)
        .map_err(|e| OnnxError::Ir {
            context: format!("node `{label}`"),
            source: e,
        })?;
    for (slot, name) in spec.outputs.iter().enumerate() {
        define(names, name, OutletId::new(id, slot), label)?;
    }
    Ok(())
}

/// Import a decoded model. `model_dir` resolves external data.
pub(crate) fn import_model(mp: &ModelProto, model_dir: Option<&Path>) -> Result<Model, OnnxError> {
    let gp = mp
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Invalid("the model has no graph".into()))?;
    let mut opsets = BTreeMap::new();
    for o in &mp.opset_import {
        let d = if o.domain == "ai.onnx" {
            String::new()
        } else {
            o.domain.clone()
        };
        let v = opsets.entry(d).or_insert(o.version);
        *v = (*v).max(o.version);
    }
    if mp.opset_import.is_empty() && mp.ir_version < 3 {
        // IR versions 1-2 predate opset imports; they mean the standard opset 1.
        opsets.insert(String::new(), 1);
    }
    let mut lower = Lower::new(model_dir, &opsets);
    let lg = lower.graph(gp, 0, "")?;
    let mut unsupported = BTreeSet::new();
    collect_unsupported(&lg, &mut unsupported);
    if !unsupported.is_empty() {
        return Err(OnnxError::Unsupported(unsupported.into_iter().collect()));
    }
    if let Some(name) = lg.free.first() {
        let user = lg.nodes.iter().find(|n| n.reads().any(|r| r == name));
        return Err(OnnxError::UndefinedInput {
            node: user
                .map(|n| n.label().to_string())
                .unwrap_or_else(|| "graph output".into()),
            op: user.map(|n| n.op_type.clone()).unwrap_or_default(),
            name: name.clone(),
        });
    }
    let graph = build(&lg, None, &[], &[])?;
    let mut metadata = BTreeMap::new();
    let mut meta = |k: &str, v: String| {
        if !v.is_empty() {
            metadata.insert(k.to_string(), v);
        }
    };
    meta("onnx.ir_version", mp.ir_version.to_string());
    meta("onnx.producer_name", mp.producer_name.clone());
    meta("onnx.producer_version", mp.producer_version.clone());
    meta("onnx.domain", mp.domain.clone());
    meta("onnx.model_version", mp.model_version.to_string());
    meta("onnx.doc_string", mp.doc_string.clone());
    for kv in &mp.metadata_props {
        meta(&kv.key, kv.value.clone());
    }
    Ok(Model {
        graph,
        opsets,
        metadata,
    })
}
