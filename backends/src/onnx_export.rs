//! egret IR → ONNX `ModelProto`: the inverse of the ONNX frontend.
//!
//! * Every value gets one name, unique across the main graph and all subgraphs
//!   (the IR's name when free, else `name_1`, `name_2`, ...), so subgraphs can
//!   read outer values by name. Main-graph inputs keep their names.
//! * `Const` nodes become initializers of their graph (tensor data inline; no
//!   external data). A subgraph constant that shares storage with a constant of
//!   an enclosing graph (the frontend copies outer constants into bodies) is not
//!   written again: the body reads the outer initializer by name.
//! * Captures (see `egret_frontends::onnx`, [`NUM_CAPTURES`]) turn back into
//!   outer-scope references: the node's last `n` inputs and each body's last `n`
//!   inputs are dropped and the body reads the outer values' names directly.
//! * Graph inputs and outputs carry their types; intermediate values carry none
//!   (the runtime infers them). An output that is a graph input, a constant, or
//!   an output listed twice goes through an `Identity`.
//! * Internal attributes (`egret.*`) are dropped; attributes the declared opset
//!   requires but the IR leaves implicit are added (`Split`'s `num_outputs`).
//! * Opsets: the model's own, with the standard domain raised to at least
//!   [`MIN_STANDARD_OPSET`] (the IR holds ops in their latest forms, e.g.
//!   `Squeeze` axes as an input) and to the opset of the newest op the graph uses
//!   (a fused `RMSNormalization` needs 23). Other domains keep their version
//!   (1 when the model does not say); ops in egret's own domain (`egret::...`)
//!   are written as they are, in the custom domain `egret`: ONNX tools can read
//!   the file but onnxruntime cannot run those nodes.
//! * egret's quantized ops (`egret::MatMulBlocks`, `egret::MatMulInt8`,
//!   `egret::GatherBlocks`, `egret::DequantizeBlocks`) are lowered by `quant` to
//!   standard QDQ ops and onnxruntime's `com.microsoft::MatMulNBits`, their
//!   constant weights written in the lowered form. Any other block-quantized
//!   tensor has no ONNX type: export fails with [`ExportError::Unsupported`]
//!   naming the tensor.

use egret_frontends::onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use egret_frontends::onnx::types::dtype_to_onnx;
use egret_frontends::onnx::{tensor_to_proto, Message, OnnxError, NUM_CAPTURES};
use egret_ir::{
    Attr, DType, Dim, Graph, Model, Op, OpCall, OutletId, Tensor, TensorType, ValueType,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;

mod quant;

/// The lowest standard-domain opset written: every op form the IR holds is
/// valid at this opset (the frontend normalises older forms up to opset 21).
pub const MIN_STANDARD_OPSET: i64 = 21;

/// Ops the optimizer may introduce, with the opset that first defines them.
const OP_SINCE: &[(&str, i64)] = &[
    ("Gelu", 20),
    ("RMSNormalization", 23),
    ("Attention", 24),
    ("RotaryEmbedding", 23),
    ("Swish", 24),
];

/// Every way exporting can fail.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The model holds something ONNX cannot express.
    #[error("cannot export to ONNX: {0}")]
    Unsupported(String),
    /// Encoding a tensor failed.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The graph is malformed (a cycle, a dangling edge).
    #[error(transparent)]
    Ir(#[from] egret_ir::IrError),
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Convert `model` to an ONNX `ModelProto`.
pub fn export(model: &Model) -> Result<ModelProto, ExportError> {
    let mut cx = Exporter::default();
    let mut names = HashMap::new();
    for &i in &model.graph.inputs {
        let n = cx.fresh(model.graph.value_name(i));
        names.insert(i, n);
    }
    let graph = cx.graph(&model.graph, names, &[])?;
    Ok(ModelProto {
        ir_version: ir_version(cx.opset(model)),
        opset_import: cx.opset_imports(model),
        producer_name: "egret".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: model
            .metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    })
}

/// Export `model` and write it to `path` atomically (temp file + rename).
pub fn write(model: &Model, path: &Path) -> Result<(), ExportError> {
    let bytes = export(model)?.encode_to_vec();
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| ExportError::Io { path, source }
    };
    let tmp = path.with_extension(format!("onnx.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The ONNX IR version that goes with a standard-domain opset.
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=22 => 10,
        23 => 11,
        24 => 12,
        _ => 13,
    }
}

/// Identity of a constant's data, to find copies of outer constants in bodies.
type DataKey = (usize, usize, DType, Vec<usize>);

fn data_key(t: &Tensor) -> Option<DataKey> {
    (t.dtype() != DType::String && !t.bytes().is_empty()).then(|| {
        (
            t.bytes().as_ptr() as usize,
            t.bytes().len(),
            t.dtype(),
            t.shape().to_vec(),
        )
    })
}

#[derive(Default)]
struct Exporter {
    /// Every value name handed out so far, in any graph.
    used: HashSet<String>,
    /// Constants of the graphs enclosing the one being written, by data.
    outer_consts: Vec<HashMap<DataKey, String>>,
    /// Every (domain, op) written.
    ops: HashSet<(String, String)>,
}

impl Exporter {
    /// A name not used yet, as close to `hint` as possible.
    fn fresh(&mut self, hint: &str) -> String {
        let base = if hint.is_empty() { "v" } else { hint };
        let mut name = base.to_string();
        let mut k = 0;
        while self.used.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.used.insert(name.clone());
        name
    }

    /// The standard-domain opset to declare.
    fn opset(&self, model: &Model) -> i64 {
        // Builders may spell the standard domain `ai.onnx`.
        let declared = ["", "ai.onnx"]
            .iter()
            .filter_map(|d| model.opsets.get(*d).copied())
            .max()
            .unwrap_or(0);
        let needed = self
            .ops
            .iter()
            .filter(|(d, _)| d.is_empty())
            .filter_map(|(_, op)| OP_SINCE.iter().find(|(o, _)| o == op).map(|&(_, v)| v));
        needed.fold(declared.max(MIN_STANDARD_OPSET), i64::max)
    }

    fn opset_imports(&self, model: &Model) -> Vec<OperatorSetIdProto> {
        let mut domains: Vec<&str> = self
            .ops
            .iter()
            .map(|(d, _)| d.as_str())
            .filter(|d| !d.is_empty())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        domains.sort_unstable();
        std::iter::once(OperatorSetIdProto {
            domain: String::new(),
            version: self.opset(model),
        })
        .chain(domains.into_iter().map(|d| OperatorSetIdProto {
            domain: d.to_string(),
            version: model.opsets.get(d).copied().unwrap_or(1),
        }))
        .collect()
    }

    /// Write `g`. `names` holds the names already fixed for its values (the main
    /// graph's inputs, or a body's captured inputs bound to outer names);
    /// `formal` is how many of `g.inputs` are real graph inputs (the rest are
    /// captures, absent from the ONNX graph's input list).
    fn graph(
        &mut self,
        g: &Graph,
        mut names: HashMap<OutletId, String>,
        captures: &[String],
    ) -> Result<GraphProto, ExportError> {
        let formal = g.inputs.len().checked_sub(captures.len()).ok_or_else(|| {
            ExportError::Unsupported(format!("graph `{}` has fewer inputs than captures", g.name))
        })?;
        let mut gp = GraphProto {
            name: g.name.clone(),
            ..Default::default()
        };
        for (k, &i) in g.inputs.iter().enumerate() {
            if k >= formal {
                names.insert(i, captures[k - formal].clone());
                continue;
            }
            let n = match names.get(&i) {
                Some(n) => n.clone(),
                None => {
                    let n = self.fresh(g.value_name(i));
                    names.insert(i, n.clone());
                    n
                }
            };
            gp.input.push(value_info(&n, g.value_type(i))?);
        }
        // Constants first: bodies may read any of them, wherever they sort.
        let order = g.topo_order()?;
        let lowered = quant::lowered_weights(g);
        let mut consts = HashMap::new();
        for &id in &order {
            let node = g.node(id);
            match &node.op {
                Op::Const(_) if lowered.contains(&id) => {}
                Op::Input if !g.inputs.iter().any(|o| o.node == id) => {
                    return Err(ExportError::Unsupported(format!(
                        "input node `{}` of graph `{}` is not a graph input",
                        node.label(),
                        g.name
                    )));
                }
                Op::Const(t) => {
                    let o = OutletId::new(id, 0);
                    let key = data_key(t);
                    let outer = key.as_ref().and_then(|k| {
                        self.outer_consts
                            .iter()
                            .rev()
                            .find_map(|m| m.get(k).cloned())
                    });
                    if let Some(n) = outer {
                        names.insert(o, n);
                        continue;
                    }
                    let n = self.fresh(g.value_name(o));
                    gp.initializer.push(tensor(&n, t)?);
                    if let Some(k) = key {
                        consts.insert(k, n.clone());
                    }
                    names.insert(o, n);
                }
                _ => {}
            }
        }
        for id in order {
            let node = g.node(id);
            match &node.op {
                Op::Input | Op::Const(_) => {}
                Op::Call(call) if quant::weight_slot(call).is_some() => {
                    quant::lower(self, &mut gp, g, id, &mut names)?;
                }
                Op::Call(call) => {
                    let n_caps = match call.attrs.0.get(NUM_CAPTURES) {
                        Some(Attr::Int(n)) => usize::try_from(*n).map_err(|_| {
                            ExportError::Unsupported(format!(
                                "node `{}`: negative {NUM_CAPTURES}",
                                node.label()
                            ))
                        })?,
                        _ => 0,
                    };
                    let ins = node.inputs();
                    let own = ins.len().checked_sub(n_caps).ok_or_else(|| {
                        ExportError::Unsupported(format!(
                            "node `{}` has fewer inputs than captures",
                            node.label()
                        ))
                    })?;
                    let name_of = |o: &Option<OutletId>| -> Result<String, ExportError> {
                        match o {
                            None => Ok(String::new()),
                            Some(o) => names.get(o).cloned().ok_or_else(|| {
                                ExportError::Unsupported(format!(
                                    "node `{}` reads a value defined after it",
                                    node.label()
                                ))
                            }),
                        }
                    };
                    let input: Vec<String> =
                        ins[..own].iter().map(name_of).collect::<Result<_, _>>()?;
                    let caps: Vec<String> =
                        ins[own..].iter().map(name_of).collect::<Result<_, _>>()?;
                    // Bodies see this graph's constants too.
                    self.outer_consts.push(consts);
                    let attrs = call
                        .attrs
                        .0
                        .iter()
                        .filter(|(k, _)| !k.starts_with("egret."))
                        .map(|(k, a)| self.attr(k, a, &caps))
                        .collect::<Result<Vec<_>, _>>();
                    consts = self.outer_consts.pop().unwrap_or_default();
                    let mut output = Vec::with_capacity(node.outputs.len());
                    for slot in 0..node.outputs.len() {
                        let o = OutletId::new(id, slot);
                        let n = self.fresh(g.value_name(o));
                        names.insert(o, n.clone());
                        output.push(n);
                    }
                    let mut attribute = attrs?;
                    if let Some(a) = opset_form_attr(call, &input, output.len()) {
                        attribute.push(a);
                    }
                    self.ops.insert((call.domain.clone(), call.op_type.clone()));
                    gp.node.push(NodeProto {
                        input,
                        output,
                        name: node.name.clone(),
                        op_type: call.op_type.clone(),
                        domain: call.domain.clone(),
                        attribute,
                        ..Default::default()
                    });
                }
            }
        }
        let mut emitted = HashSet::new();
        for &o in &g.outputs {
            let src = names.get(&o).cloned().ok_or_else(|| {
                ExportError::Unsupported(format!("an output of graph `{}` is undefined", g.name))
            })?;
            let direct = matches!(g.node(o.node).op, Op::Call(_)) && !emitted.contains(&src);
            let n = if direct {
                src
            } else {
                let n = self.fresh(g.value_name(o));
                self.ops.insert((String::new(), "Identity".into()));
                gp.node.push(NodeProto {
                    input: vec![src],
                    output: vec![n.clone()],
                    op_type: "Identity".into(),
                    ..Default::default()
                });
                n
            };
            emitted.insert(n.clone());
            gp.output.push(value_info(&n, g.value_type(o))?);
        }
        Ok(gp)
    }

    fn attr(
        &mut self,
        name: &str,
        a: &Attr,
        caps: &[String],
    ) -> Result<AttributeProto, ExportError> {
        use AttributeType as T;
        let mut p = AttributeProto {
            name: name.to_string(),
            ..Default::default()
        };
        let kind = match a {
            Attr::Int(i) => {
                p.i = *i;
                T::Int
            }
            Attr::Float(f) => {
                p.f = *f;
                T::Float
            }
            Attr::String(s) => {
                p.s = s.as_bytes().to_vec();
                T::String
            }
            Attr::Tensor(t) => {
                p.t = Some(tensor(name, t)?);
                T::Tensor
            }
            Attr::Graph(g) => {
                p.g = Some(self.graph(g, HashMap::new(), caps)?);
                T::Graph
            }
            Attr::Type(t) => {
                p.tp = Some(type_proto(t)?);
                T::TypeProto
            }
            Attr::Ints(v) => {
                p.ints = v.clone();
                T::Ints
            }
            Attr::Floats(v) => {
                p.floats = v.clone();
                T::Floats
            }
            Attr::Strings(v) => {
                p.strings = v.iter().map(|s| s.as_bytes().to_vec()).collect();
                T::Strings
            }
            Attr::Tensors(v) => {
                p.tensors = v
                    .iter()
                    .map(|t| tensor(name, t))
                    .collect::<Result<_, _>>()?;
                T::Tensors
            }
            Attr::Graphs(v) => {
                p.graphs = v
                    .iter()
                    .map(|g| self.graph(g, HashMap::new(), caps))
                    .collect::<Result<_, _>>()?;
                T::Graphs
            }
        };
        p.r#type = kind as i32;
        Ok(p)
    }
}

/// An attribute the declared opset requires but the IR leaves implicit: a
/// `Split` into equal parts names its output count (`num_outputs`, required
/// since opset 18; the IR reads it from the node's outputs).
fn opset_form_attr(call: &OpCall, input: &[String], n_out: usize) -> Option<AttributeProto> {
    let split_sizes = input.get(1).is_some_and(|s| !s.is_empty());
    (call.domain.is_empty()
        && call.op_type == "Split"
        && !split_sizes
        && !call.attrs.0.contains_key("num_outputs"))
    .then(|| AttributeProto {
        name: "num_outputs".into(),
        r#type: AttributeType::Int as i32,
        i: n_out as i64,
        ..Default::default()
    })
}

/// A tensor as an inline `TensorProto`; block formats are refused by name.
fn tensor(name: &str, t: &Tensor) -> Result<TensorProto, ExportError> {
    if let DType::Block(b) = t.dtype() {
        return Err(ExportError::Unsupported(format!(
            "tensor `{name}` is {}-block-quantized; ONNX has no such type \
             (export the unquantized model)",
            b.name()
        )));
    }
    Ok(tensor_to_proto(name, t)?)
}

fn elem_type(d: DType) -> Result<i32, ExportError> {
    dtype_to_onnx(d).ok_or_else(|| ExportError::Unsupported(format!("{d} has no ONNX type")))
}

fn tensor_type(t: &TensorType) -> Result<type_proto::Tensor, ExportError> {
    Ok(type_proto::Tensor {
        elem_type: elem_type(t.dtype)?,
        shape: t.shape.as_ref().map(|s| TensorShapeProto {
            dim: s
                .0
                .iter()
                .map(|d| tensor_shape_proto::Dimension {
                    value: Some(match d {
                        Dim::Known(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                        Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
                    }),
                    ..Default::default()
                })
                .collect(),
        }),
    })
}

fn type_proto(t: &ValueType) -> Result<TypeProto, ExportError> {
    use type_proto::Value as V;
    let value = match t {
        ValueType::Tensor(t) => V::TensorType(tensor_type(t)?),
        ValueType::Sequence(t) => V::SequenceType(Box::new(type_proto::Sequence {
            elem_type: Some(Box::new(TypeProto {
                value: Some(V::TensorType(tensor_type(t)?)),
                ..Default::default()
            })),
        })),
        ValueType::Optional(inner) => V::OptionalType(Box::new(type_proto::Optional {
            elem_type: Some(Box::new(type_proto(inner)?)),
        })),
    };
    Ok(TypeProto {
        value: Some(value),
        ..Default::default()
    })
}

fn value_info(name: &str, t: &ValueType) -> Result<ValueInfoProto, ExportError> {
    Ok(ValueInfoProto {
        name: name.to_string(),
        r#type: Some(type_proto(t)?),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &Model, x: &Tensor) -> Vec<f64> {
        let out = egret_runtime::Interpreter::new(&m.graph)
            .unwrap()
            .run(vec![egret_ir::Value::Tensor(x.clone())])
            .unwrap();
        out.iter()
            .flat_map(|v| v.as_tensor().unwrap().to_f64_vec().unwrap())
            .collect()
    }

    /// `y = Relu(x + w)`, with `x` also a second output and `Squeeze` reading
    /// its axes as an input (an opset-13+ form) under a model that says opset 11.
    fn model() -> Model {
        let mut g = Graph::new("m");
        let x = g.add_input("x", ValueType::tensor(DType::F32, None));
        let w = g.add_const(
            "w",
            Tensor::from_vec(vec![1, 3], vec![1f32, -2.0, 0.5]).unwrap(),
        );
        let s = g.call1("s", OpCall::new("Add"), &[x, w]).unwrap();
        let axes = g.add_const("axes", Tensor::from_vec(vec![1], vec![0i64]).unwrap());
        let q = g.call1("q", OpCall::new("Squeeze"), &[s, axes]).unwrap();
        let y = g.call1("y", OpCall::new("Relu"), &[q]).unwrap();
        g.outputs = vec![y, x, y];
        Model {
            graph: g,
            opsets: [(String::new(), 11)].into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reimports_with_the_same_outputs() {
        let m = model();
        let p = export(&m).unwrap();
        assert_eq!(p.opset_import[0].version, MIN_STANDARD_OPSET);
        let g = p.graph.as_ref().unwrap();
        let outs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outs, ["y", "x_1", "y_1"]);
        let back = egret_frontends::onnx::load_bytes(&p.encode_to_vec(), None).unwrap();
        let x = Tensor::from_vec(vec![1, 3], vec![0.5f32, 1.0, -1.0]).unwrap();
        assert_eq!(
            run(&back, &x),
            [1.5, 0.0, 0.0, 0.5, 1.0, -1.0, 1.5, 0.0, 0.0]
        );
        assert_eq!(run(&back, &x), run(&m, &x));
    }

    #[test]
    fn block_tensors_are_refused_by_name() {
        let mut m = model();
        let t = Tensor::from_bytes(
            DType::Block(egret_ir::BlockFormat::Q8_0),
            vec![32],
            &[0; 34],
        )
        .unwrap();
        let c = m.graph.add_const("blocks", t);
        m.graph.outputs.push(c);
        let e = export(&m).unwrap_err().to_string();
        assert!(e.contains("`blocks`") && e.contains("q8_0"), "{e}");
    }
}
