//! `egret inspect`: a model's interface, opsets, op histogram and parameters.

use super::{human_bytes, load_model, table};
use anyhow::Result;
use egret_ir::{Attr, Dim, Graph, Model, Op, ValueType};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One graph input or output.
#[derive(Serialize)]
pub struct IoInfo {
    /// Value name.
    pub name: String,
    /// The type as egret prints it (`f32[batch,3]`).
    #[serde(rename = "type")]
    pub ty: String,
    /// Element type, when the value is a tensor or sequence of tensors.
    pub dtype: Option<String>,
    /// Dims (numbers or symbol names), or `None` when the rank is unknown.
    pub shape: Option<Vec<serde_json::Value>>,
}

/// How often one op occurs.
#[derive(Serialize)]
pub struct OpCount {
    /// `Op` or `domain::Op`.
    pub op: String,
    /// Number of nodes, subgraphs included.
    pub count: usize,
}

/// Constant storage of one dtype.
#[derive(Serialize)]
pub struct DTypeParams {
    /// Element type.
    pub dtype: String,
    /// Number of constants of this dtype.
    pub tensors: usize,
    /// Total elements.
    pub count: usize,
    /// Total bytes.
    pub bytes: usize,
}

/// Everything `inspect` reports.
#[derive(Serialize)]
pub struct Summary {
    /// Main graph name.
    pub graph: String,
    /// Graph inputs.
    pub inputs: Vec<IoInfo>,
    /// Graph outputs.
    pub outputs: Vec<IoInfo>,
    /// Opset version per domain (`""` is the ONNX standard domain).
    pub opsets: BTreeMap<String, i64>,
    /// Model metadata.
    pub metadata: BTreeMap<String, String>,
    /// Operator nodes (inputs and constants excluded), subgraphs included.
    pub nodes: usize,
    /// Op histogram, most frequent first, ties by name.
    pub ops: Vec<OpCount>,
    /// Total constant elements.
    pub parameters: usize,
    /// Total constant bytes.
    pub parameter_bytes: usize,
    /// Constants by dtype.
    pub parameters_by_dtype: Vec<DTypeParams>,
}

fn io_info(g: &Graph, o: egret_ir::OutletId) -> IoInfo {
    let ty = g.value_type(o);
    let tt = match ty {
        ValueType::Tensor(t) | ValueType::Sequence(t) => Some(t),
        ValueType::Optional(_) => None,
    };
    IoInfo {
        name: g.value_name(o).to_string(),
        ty: ty.to_string(),
        dtype: tt.map(|t| t.dtype.to_string()),
        shape: tt.and_then(|t| t.shape.as_ref()).map(|s| {
            s.dims()
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => serde_json::Value::from(*n),
                    Dim::Sym(s) => serde_json::Value::from(s.as_str()),
                })
                .collect()
        }),
    }
}

/// Count ops and constants of `g` and its subgraphs.
fn tally(g: &Graph, ops: &mut BTreeMap<String, usize>, params: &mut BTreeMap<String, DTypeParams>) {
    for id in g.node_ids() {
        match &g.node(id).op {
            Op::Input => {}
            Op::Const(t) => {
                let e = params
                    .entry(t.dtype().to_string())
                    .or_insert_with(|| DTypeParams {
                        dtype: t.dtype().to_string(),
                        tensors: 0,
                        count: 0,
                        bytes: 0,
                    });
                e.tensors += 1;
                e.count += t.numel();
                e.bytes += t.byte_size();
            }
            Op::Call(c) => {
                let name = if c.domain.is_empty() {
                    c.op_type.clone()
                } else {
                    format!("{}::{}", c.domain, c.op_type)
                };
                *ops.entry(name).or_default() += 1;
                for a in c.attrs.0.values() {
                    match a {
                        Attr::Graph(s) => tally(s, ops, params),
                        Attr::Graphs(v) => v.iter().for_each(|s| tally(s, ops, params)),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Summarize a model.
pub fn summarize(m: &Model) -> Summary {
    let g = &m.graph;
    let mut ops = BTreeMap::new();
    let mut params = BTreeMap::new();
    tally(g, &mut ops, &mut params);
    let mut ops: Vec<OpCount> = ops
        .into_iter()
        .map(|(op, count)| OpCount { op, count })
        .collect();
    ops.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.op.cmp(&b.op)));
    let by_dtype: Vec<DTypeParams> = params.into_values().collect();
    Summary {
        graph: g.name.clone(),
        inputs: g.inputs.iter().map(|&o| io_info(g, o)).collect(),
        outputs: g.outputs.iter().map(|&o| io_info(g, o)).collect(),
        opsets: m.opsets.clone(),
        metadata: m.metadata.clone(),
        nodes: ops.iter().map(|o| o.count).sum(),
        ops,
        parameters: by_dtype.iter().map(|d| d.count).sum(),
        parameter_bytes: by_dtype.iter().map(|d| d.bytes).sum(),
        parameters_by_dtype: by_dtype,
    }
}

/// Render a summary as human-readable aligned tables.
pub fn render(path: &Path, s: &Summary) -> String {
    let mut out = format!("model: {}\n", path.display());
    if !s.graph.is_empty() {
        out.push_str(&format!("graph: {}\n", s.graph));
    }
    let io_rows = |v: &[IoInfo]| -> Vec<Vec<String>> {
        v.iter()
            .map(|i| vec![i.name.clone(), i.ty.clone()])
            .collect()
    };
    out.push_str(&format!("\ninputs ({})\n", s.inputs.len()));
    out.push_str(&table(&["name", "type"], &io_rows(&s.inputs)));
    out.push_str(&format!("\noutputs ({})\n", s.outputs.len()));
    out.push_str(&table(&["name", "type"], &io_rows(&s.outputs)));
    out.push_str("\nopsets\n");
    let opset_rows: Vec<Vec<String>> = s
        .opsets
        .iter()
        .map(|(d, v)| {
            vec![
                if d.is_empty() {
                    "ai.onnx".to_string()
                } else {
                    d.clone()
                },
                v.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["domain", "version"], &opset_rows));
    if !s.metadata.is_empty() {
        out.push_str("\nmetadata\n");
        let rows: Vec<Vec<String>> = s
            .metadata
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect();
        out.push_str(&table(&["key", "value"], &rows));
    }
    out.push_str(&format!(
        "\nops ({} nodes, {} distinct)\n",
        s.nodes,
        s.ops.len()
    ));
    let op_rows: Vec<Vec<String>> = s
        .ops
        .iter()
        .map(|o| vec![o.op.clone(), o.count.to_string()])
        .collect();
    out.push_str(&table(&["op", "count"], &op_rows));
    out.push_str(&format!(
        "\nparameters: {} ({})\n",
        s.parameters,
        human_bytes(s.parameter_bytes)
    ));
    let p_rows: Vec<Vec<String>> = s
        .parameters_by_dtype
        .iter()
        .map(|d| {
            vec![
                d.dtype.clone(),
                d.tensors.to_string(),
                d.count.to_string(),
                d.bytes.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["dtype", "tensors", "elements", "bytes"], &p_rows));
    out
}

/// Run `egret inspect`.
pub fn main(path: &Path, json: bool) -> Result<()> {
    let model = load_model(path)?;
    let s = summarize(&model);
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(path, &s));
    }
    Ok(())
}
