//! Export of quantized models.
//!
//! * ONNX: a hand-built graph with every quantized op (`egret::MatMulBlocks` over
//!   Q4_0, Q4_1, the int4 group formats, Q8_0, Q5_0 and bf16 weights,
//!   `egret::MatMulInt8` W8 and W8A8, `egret::GatherBlocks`,
//!   `egret::DequantizeBlocks`) is exported and run in onnxruntime 1.32 and in
//!   egret's interpreter; each output of both must match an f64 reference computed from the dequantized weights
//!   within 1e-5 of its magnitude `Σ|x·w| + |bias|` (lookups and W8A8's integer
//!   path: exact up to the final f32 scaling). Zero rows, exact rounding ties and
//!   Q4_1 groups with `d = 0` are included.
//! * GGUF: SmolLM2 (Q4_1 + a Q8_0 embedding) with its Q4_1 matrices requantized
//!   (layer 0 to Q8_0, the rest to Q4_0, by `egret_ir::blocks::quantize`, which
//!   is bit-exact with gguf-py's quantizers) is written with
//!   `gguf_export::write`, then read back by egret's `GgufFile` (metadata equal
//!   to the template's except `general.file_type`, which must say Q4_0; every
//!   tensor's bytes equal to what was written, the permuted `attn_q` / `attn_k`
//!   included, through the llama loader) and by the `gguf` Python package
//!   (`scripts/check-gguf.py`: same keys, types and values, same tensor names,
//!   types, dims, sizes and byte hashes as egret sees).

mod common;
mod ort;
use common::{available, cache};
use ort::python;

use egret_backends::gguf_export::{self, GgufExportError};
use egret_backends::onnx_export;
use egret_frontends::gguf::{GgufFile, MetaValue};
use egret_frontends::onnx::Message;
use egret_ir::{
    blocks, BlockFormat, DType, Dim, Graph, Model, Op, OpCall, OutletId, Shape, Tensor, ValueType,
};
use ort::{run_ort, OrtCase};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("egret-xq-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn smollm2() -> Option<PathBuf> {
    let p = cache().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    available(&p, "scripts/fetch-models.sh smollm2").then_some(p)
}

/// The main graph's constant named `name`.
fn const_id(m: &Model, name: &str) -> egret_ir::NodeId {
    m.graph
        .node_ids()
        .find(|&id| {
            matches!(m.graph.node(id).op, Op::Const(_))
                && m.graph.value_name(OutletId::new(id, 0)) == name
        })
        .unwrap_or_else(|| panic!("no constant `{name}`"))
}

/// Dequantize `t` and quantize it again as `fmt` with ggml's reference rounding.
fn requantize(t: &Tensor, fmt: BlockFormat) -> Tensor {
    let mut f = vec![0f32; t.numel()];
    blocks::dequantize_into(t.dtype(), t.bytes(), &mut f).unwrap();
    let f = Tensor::from_vec(t.shape().to_vec(), f).unwrap();
    blocks::quantize(&f, fmt, None).unwrap()
}

/// The hash `scripts/check-gguf.py` prints: sum of b[i]·(i·C + 1) mod 2^64.
fn byte_hash(b: &[u8]) -> u64 {
    const C: u64 = 0x9E37_79B9_7F4A_7C15;
    b.iter().enumerate().fold(0u64, |h, (i, &x)| {
        h.wrapping_add(u64::from(x).wrapping_mul((i as u64).wrapping_mul(C).wrapping_add(1)))
    })
}

/// A metadata value as `check-gguf.py` prints it (arrays as element type + length).
fn meta_json(v: &MetaValue) -> serde_json::Value {
    use serde_json::json;
    match v {
        MetaValue::Array(a) => json!({"elem": a.elem.name(), "len": a.items.len()}),
        MetaValue::String(s) => json!(s),
        MetaValue::Bool(b) => json!(b),
        MetaValue::F32(x) => json!(f64::from(*x)),
        MetaValue::F64(x) => json!(x),
        other => json!(other.as_i64().expect("an integer")),
    }
}

#[test]
fn gguf_export_round_trips_through_egret_and_gguf_py() {
    let Some(src) = smollm2() else { return };
    let template = GgufFile::open(&src).unwrap();
    let mut model = egret_frontends::load(&src).unwrap().model;
    let mut written: HashMap<String, Tensor> = HashMap::new();
    for info in template.tensor_infos() {
        if info.ggml_type.name() != "Q4_1" {
            continue;
        }
        let id = const_id(&model, &info.name);
        let Op::Const(t) = &model.graph.node(id).op else {
            unreachable!()
        };
        let fmt = if info.name.starts_with("blk.0.") {
            BlockFormat::Q8_0
        } else {
            BlockFormat::Q4_0
        };
        let q = requantize(t, fmt);
        model.graph.node_mut(id).op = Op::Const(q.clone());
        written.insert(info.name.clone(), q);
    }
    assert_eq!(written.len(), 210);

    let dir = temp_dir("gguf");
    let out = dir.join("smollm2.q4_0.gguf");
    let summary = gguf_export::write(&model, &src, &out).unwrap();
    assert_eq!(summary.tensors, 272);
    assert_eq!(summary.retyped, 210);
    assert_eq!(summary.file_type, 2, "MOSTLY_Q4_0");
    let back = GgufFile::open(&out).unwrap();
    assert_eq!(summary.bytes, back.file_size() as u64);
    assert_eq!(back.version(), 3);

    // Metadata: the template's, in order, except the file type.
    let want: Vec<_> = template.metadata().iter().collect();
    let got: Vec<_> = back.metadata().iter().collect();
    assert_eq!(got.len(), want.len());
    for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
        assert_eq!(gk, wk);
        if *gk == gguf_export::FILE_TYPE_KEY {
            assert_eq!((*gv, *wv), (&MetaValue::U32(2), &MetaValue::U32(3)));
        } else {
            assert_eq!(gv, wv, "{gk}");
        }
    }

    // Tensors: template order and dims; bytes as written (unchanged ones as in
    // the template; permuted projections are compared after the loader undoes
    // the permutation).
    let names: Vec<_> = back.tensor_names().collect();
    assert_eq!(names, template.tensor_names().collect::<Vec<_>>());
    let reloaded = egret_frontends::load(&out).unwrap().model;
    for info in back.tensor_infos() {
        let tin = template.tensor_info(&info.name).unwrap();
        assert_eq!(info.ggml_dims, tin.ggml_dims, "{}", info.name);
        assert_eq!(info.offset % 32, 0);
        let bytes = back.tensor_bytes(&info.name).unwrap();
        match written.get(&info.name) {
            None => {
                assert_eq!(info.ggml_type, tin.ggml_type);
                assert!(bytes == template.tensor_bytes(&info.name).unwrap());
            }
            Some(t) => {
                let fmt = if info.name.starts_with("blk.0.") {
                    "Q8_0"
                } else {
                    "Q4_0"
                };
                assert_eq!(info.ggml_type.name(), fmt, "{}", info.name);
                let Op::Const(r) = &reloaded.graph.node(const_id(&reloaded, &info.name)).op else {
                    unreachable!()
                };
                assert_eq!(r.dtype(), t.dtype());
                assert!(r.bytes() == t.bytes(), "{}", info.name);
                let permuted = info.name.contains("attn_q.") || info.name.contains("attn_k.");
                assert_eq!(bytes == t.bytes(), !permuted, "{}", info.name);
            }
        }
    }

    // The same file through gguf-py.
    let Some(py) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-gguf.py");
    let o = std::process::Command::new(py)
        .arg(script)
        .arg(&out)
        .output()
        .expect("python runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let md = v["metadata"].as_array().unwrap();
    assert_eq!(md.len(), got.len());
    for (row, (k, mv)) in md.iter().zip(&got) {
        let want = serde_json::json!([k, mv.ty().name(), meta_json(mv)]);
        assert_eq!(row, &want);
    }
    let ts = v["tensors"].as_array().unwrap();
    assert_eq!(ts.len(), 272);
    for (row, info) in ts.iter().zip(back.tensor_infos()) {
        let bytes = back.tensor_bytes(&info.name).unwrap();
        let want = serde_json::json!([
            info.name,
            info.ggml_type.name(),
            info.ggml_dims,
            info.nbytes,
            byte_hash(bytes).to_string()
        ]);
        assert_eq!(row, &want);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_export_names_the_tensor_it_cannot_write() {
    let Some(src) = smollm2() else { return };
    let mut model = egret_frontends::load(&src).unwrap().model;
    let dir = temp_dir("gguf-err");
    let out = dir.join("x.gguf");

    let id = const_id(&model, "blk.3.ffn_up.weight");
    let Op::Const(t) = &model.graph.node(id).op else {
        unreachable!()
    };
    let q = requantize(t, BlockFormat::I4S64);
    assert_eq!(q.dtype(), DType::Block(BlockFormat::I4S64));
    model.graph.node_mut(id).op = Op::Const(q);
    let e = gguf_export::write(&model, &src, &out).unwrap_err();
    assert!(
        matches!(&e, GgufExportError::Tensor { tensor, .. } if tensor == "blk.3.ffn_up.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("i4s_g64"), "{e}");

    model.graph.node_mut(id).op = Op::Const(Tensor::from_vec(vec![2], vec![0f32; 2]).unwrap());
    let e = gguf_export::write(&model, &src, &out).unwrap_err();
    assert!(e.to_string().contains("shape [2] differs"), "{e}");

    model.graph.remove_node(id);
    let e = gguf_export::write(&model, &src, &out).unwrap_err();
    assert!(
        matches!(&e, GgufExportError::MissingTensor(n) if n == "blk.3.ffn_up.weight"),
        "{e}"
    );
    // Nothing was left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- ONNX ----

const K: usize = 256;
const N: usize = 24;

/// Deterministic values in [-1, 1) (a 64-bit LCG), scaled.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn egret_call(op: &str) -> OpCall {
    OpCall {
        domain: "egret".into(),
        ..OpCall::new(op)
    }
}

/// What one graph output should be, in f64.
struct Want {
    name: String,
    values: Vec<f64>,
    /// Allowed absolute error per element.
    tol: Vec<f64>,
}

/// `x [M, K] · w[N, K]ᵀ + bias` in f64, with a tolerance of 1e-5 of the
/// magnitude `Σ|x·w| + |bias|` of each output (f32 accumulation).
fn linear_ref(x: &[f32], w: &[f32], bias: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut tol) = (vec![], vec![]);
    for row in x.chunks_exact(K) {
        for (n, wr) in w.chunks_exact(K).enumerate() {
            let b = bias.map_or(0.0, |b| f64::from(b[n]));
            let dot: f64 = row
                .iter()
                .zip(wr)
                .map(|(&a, &c)| f64::from(a) * f64::from(c))
                .sum();
            let mag: f64 = row
                .iter()
                .zip(wr)
                .map(|(&a, &c)| (f64::from(a) * f64::from(c)).abs())
                .sum();
            y.push(dot + b);
            tol.push(1e-5 * (mag + b.abs()) + 1e-6);
        }
    }
    (y, tol)
}

fn dequant(t: &Tensor) -> Vec<f32> {
    let mut f = vec![0f32; t.numel()];
    blocks::dequantize_into(t.dtype(), t.bytes(), &mut f).unwrap();
    f
}

/// A Q5_0 weight made of deterministic bytes (no quantizer exists for it): the
/// exporter's f32 fallback.
fn q5_0_weight() -> Tensor {
    let f = BlockFormat::Q5_0;
    let n_blocks = N * K / f.block_elems();
    let mut bytes = vec![];
    for (i, v) in values(n_blocks * f.block_bytes(), 7, 1.0)
        .chunks(f.block_bytes())
        .enumerate()
    {
        // f16 d = 0x1800 + i % 7: about 0.0019.
        bytes.extend_from_slice(&(0x1800u16 + (i % 7) as u16).to_le_bytes());
        bytes.extend(v[2..].iter().map(|x| ((x + 1.0) * 127.9) as u8));
    }
    Tensor::from_bytes(DType::Block(f), vec![N, K], &bytes).unwrap()
}

/// A graph with one output per quantized op and weight format, its inputs and
/// the f64 reference of each output.
fn quant_model() -> (Model, Vec<egret_ir::Value>, Vec<Want>) {
    let mut w = values(N * K, 1, 0.5);
    // Row 3 is constant: its Q4_1 / i4a blocks have d = 0 (all values = m).
    w[3 * K..4 * K].fill(0.75);
    let wt = Tensor::from_vec(vec![N, K], w.clone()).unwrap();
    let bias = values(N, 2, 0.1);
    let mut x = values(6 * K, 3, 2.0);
    // Row 0 is zero (the per-token scale is 0); row 1 has amax 127 and halves,
    // so x / sx hits exact .5 ties (round half away from zero, not to even).
    x[..K].fill(0.0);
    for (k, v) in x[K..2 * K].iter_mut().enumerate() {
        *v = if k == 0 { 127.0 } else { (k % 8) as f32 - 3.5 };
    }
    let ids = vec![0i64, 5, 23, 3];

    let mut g = Graph::new("quant");
    let shape = |d: &[usize]| Some(Shape(d.iter().map(|&n| Dim::Known(n)).collect()));
    let xi = g.add_input("x", ValueType::tensor(DType::F32, shape(&[2, 3, K])));
    let ii = g.add_input("ids", ValueType::tensor(DType::I64, shape(&[2, 2])));
    let b = g.add_const("bias", Tensor::from_vec(vec![N], bias.clone()).unwrap());
    let mut wants = vec![];
    let mut outs = vec![];

    let mut blocks_case = |g: &mut Graph, tag: &str, wq: Tensor, with_bias: bool| {
        let dq = dequant(&wq);
        let c = g.add_const(&format!("w_{tag}"), wq);
        let bias_in = with_bias.then_some(b);
        let y = g
            .call(
                &format!("mm_{tag}"),
                egret_call("MatMulBlocks"),
                &[Some(xi), Some(c), bias_in],
                1,
            )
            .unwrap()[0];
        let (values, tol) = linear_ref(&x, &dq, with_bias.then_some(&bias[..]));
        outs.push(y);
        wants.push(Want {
            name: format!("MatMulBlocks {tag}"),
            values,
            tol,
        });
    };
    for (i, f) in [
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::I4S64,
        BlockFormat::I4S128,
        BlockFormat::I4A64,
        BlockFormat::I4A128,
        BlockFormat::Q8_0,
    ]
    .into_iter()
    .enumerate()
    {
        blocks_case(
            &mut g,
            f.name(),
            blocks::quantize(&wt, f, None).unwrap(),
            i % 2 == 0,
        );
    }
    blocks_case(&mut g, "q5_0", q5_0_weight(), true);
    let bf16: Vec<u8> = w
        .iter()
        .flat_map(|v| v.to_le_bytes()[2..].to_vec())
        .collect();
    let bf16 = Tensor::from_bytes(DType::BF16, vec![N, K], &bf16).unwrap();
    blocks_case(&mut g, "bf16", bf16, false);

    // W8 / W8A8.
    let (q, s) = blocks::quantize_rows_i8(&w, N, K);
    let wq: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &v)| f32::from(v) * s[i / K])
        .collect();
    let qc = g.add_const("w_i8", Tensor::from_vec(vec![N, K], q.clone()).unwrap());
    let sc = g.add_const("w_i8_scale", Tensor::from_vec(vec![N], s.clone()).unwrap());
    for act in [0i64, 1] {
        let call = egret_call("MatMulInt8").with("act_quant", egret_ir::Attr::Int(act));
        let y = g
            .call(
                &format!("mm_i8_a{act}"),
                call,
                &[Some(xi), Some(qc), Some(sc), Some(b)],
                1,
            )
            .unwrap()[0];
        outs.push(y);
        let (values, tol) = if act == 0 {
            linear_ref(&x, &wq, Some(&bias))
        } else {
            // The contract's W8A8 in f32 (sx, x / sx, rounding) with an exact
            // integer accumulation, then acc · sx · scale + bias.
            let mut qx = vec![];
            let mut sxs = vec![];
            for row in x.chunks_exact(K) {
                let sx = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                sxs.push(sx);
                qx.extend(row.iter().map(|&v| {
                    if sx == 0.0 {
                        0.0
                    } else {
                        (v / sx).round().clamp(-127.0, 127.0)
                    }
                }));
            }
            let qw: Vec<f32> = q.iter().map(|&v| f32::from(v)).collect();
            let (acc, _) = linear_ref(&qx, &qw, None);
            let values: Vec<f64> = acc
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    let (m, n) = (i / N, i % N);
                    a * f64::from(sxs[m]) * f64::from(s[n]) + f64::from(bias[n])
                })
                .collect();
            let tol = values.iter().map(|v| 1e-6 * v.abs() + 1e-6).collect();
            (values, tol)
        };
        wants.push(Want {
            name: format!("MatMulInt8 act_quant={act}"),
            values,
            tol,
        });
    }

    // Embedding lookups and a plain dequantization.
    for f in [BlockFormat::Q8_0, BlockFormat::Q4_1] {
        let wq = blocks::quantize(&wt, f, None).unwrap();
        let dq = dequant(&wq);
        let c = g.add_const(&format!("table_{}", f.name()), wq);
        let y = g
            .call(
                &format!("gather_{}", f.name()),
                egret_call("GatherBlocks"),
                &[Some(c), Some(ii)],
                1,
            )
            .unwrap()[0];
        outs.push(y);
        let values = ids
            .iter()
            .flat_map(|&r| {
                dq[r as usize * K..(r as usize + 1) * K]
                    .iter()
                    .map(|&v| f64::from(v))
            })
            .collect::<Vec<_>>();
        let tol = vec![0.0; values.len()];
        wants.push(Want {
            name: format!("GatherBlocks {}", f.name()),
            values,
            tol,
        });
        if f == BlockFormat::Q8_0 {
            let y = g
                .call(
                    "dequantize_q8_0",
                    egret_call("DequantizeBlocks"),
                    &[Some(c)],
                    1,
                )
                .unwrap()[0];
            outs.push(y);
            let values = dq.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
            let tol = vec![0.0; values.len()];
            wants.push(Want {
                name: "DequantizeBlocks q8_0".into(),
                values,
                tol,
            });
        }
    }
    g.outputs = outs;
    let model = Model {
        graph: g,
        ..Default::default()
    };
    let inputs = vec![
        egret_ir::Value::Tensor(Tensor::from_vec(vec![2, 3, K], x).unwrap()),
        egret_ir::Value::Tensor(Tensor::from_vec(vec![2, 2], ids).unwrap()),
    ];
    (model, inputs, wants)
}

/// The largest error of `got` against `want`, failing past the tolerance.
fn check(got: &egret_ir::Value, want: &Want) -> f64 {
    let got = got.as_tensor().unwrap().to_f64_vec().unwrap();
    assert_eq!(got.len(), want.values.len(), "{}", want.name);
    let mut worst = 0f64;
    for (i, ((g, w), t)) in got.iter().zip(&want.values).zip(&want.tol).enumerate() {
        let e = (g - w).abs();
        assert!(
            e <= *t,
            "{}: element {i}: {g} vs {w} (tolerance {t})",
            want.name
        );
        worst = worst.max(e);
    }
    worst
}

#[test]
fn quantized_ops_export_to_onnx_and_run_in_onnxruntime() {
    let (model, inputs, wants) = quant_model();
    let proto = onnx_export::export(&model).unwrap();
    let domains: Vec<_> = proto
        .opset_import
        .iter()
        .map(|o| (o.domain.as_str(), o.version))
        .collect();
    assert_eq!(domains, [("", 21), ("com.microsoft", 1)]);
    let g = proto.graph.as_ref().unwrap();
    let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    // 6 int4 formats and Q8_0 through MatMulNBits; Q5_0, bf16 and W8 through MatMul.
    assert_eq!(count("MatMulNBits"), 7);
    assert_eq!(count("MatMulInteger"), 1);
    assert!(g.node.iter().all(|n| n.domain != "egret"));
    // No quantized weight is left as an initializer (they are written in
    // their lowered forms, under new names).
    assert!(g
        .initializer
        .iter()
        .all(|t| !t.name.starts_with("w_") || t.name == "w_i8_scale"));

    let Some(py) = python() else { return };
    let dir = temp_dir("onnx");
    let case = OrtCase::new(&dir, &proto.encode_to_vec(), &inputs).unwrap();
    run_ort(&py, &dir, &[&case]);
    let got = case.outputs(wants.len()).unwrap();
    let egret = egret_runtime::Interpreter::for_model(&model)
        .and_then(|it| it.run(inputs.clone()))
        .unwrap();
    for ((v, mine), w) in got.iter().zip(&egret).zip(&wants) {
        let e = check(v, w);
        let m = check(mine, w);
        let a = v.as_tensor().unwrap().to_f64_vec().unwrap();
        let b = mine.as_tensor().unwrap().to_f64_vec().unwrap();
        let d = a
            .iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        eprintln!(
            "{}: max abs error onnxruntime {e:.3e}, egret {m:.3e}; onnxruntime vs egret {d:.3e}",
            w.name
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn onnx_export_refuses_a_computed_quantized_weight() {
    let mut g = Graph::new("bad");
    let x = g.add_input("x", ValueType::tensor(DType::F32, None));
    let c = Tensor::from_bytes(DType::Block(BlockFormat::Q4_0), vec![1, 32], &[0; 18]).unwrap();
    let c = g.add_const("c", c);
    let w = g
        .call("w", egret_call("DequantizeBlocks"), &[Some(c)], 1)
        .unwrap()[0];
    let y = g
        .call("mm", egret_call("MatMulBlocks"), &[Some(x), Some(w)], 1)
        .unwrap()[0];
    g.outputs = vec![y];
    let m = Model {
        graph: g,
        ..Default::default()
    };
    let e = onnx_export::export(&m).unwrap_err().to_string();
    assert!(e.contains("`mm`") && e.contains("constant"), "{e}");
}
