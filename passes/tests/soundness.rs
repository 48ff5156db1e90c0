//! Every built-in rule through the soundness harness, on small example graphs
//! that exercise it (each rule must fire on at least one of its examples), and
//! the fusion rules through the default pipeline (the fused op must appear).

use egret_ir::{Attr, DType, Dim, Graph, OpCall, OutletId, Shape, Tensor, ValueType};
use egret_passes::pass::{PassContext, Registry};
use egret_passes::rules;
use egret_passes::soundness::{check_rule, graph_from_pattern, Options};
use std::collections::HashMap;

/// A tiny graph builder for examples.
struct B {
    g: Graph,
}

fn f32ty(d: &[usize]) -> ValueType {
    ValueType::tensor(DType::F32, Some(Shape::known(d)))
}

impl B {
    fn new() -> B {
        B {
            g: Graph::new("example"),
        }
    }
    fn input(&mut self, name: &str, ty: ValueType) -> OutletId {
        self.g.add_input(name, ty)
    }
    fn x(&mut self, name: &str, d: &[usize]) -> OutletId {
        self.input(name, f32ty(d))
    }
    fn c(&mut self, shape: &[usize], v: Vec<f32>) -> OutletId {
        let n = self.g.node_count();
        self.g.add_const(
            &format!("c{n}"),
            Tensor::from_vec(shape.to_vec(), v).unwrap(),
        )
    }
    fn s(&mut self, v: f32) -> OutletId {
        self.c(&[], vec![v])
    }
    fn ints(&mut self, v: &[i64]) -> OutletId {
        let n = self.g.node_count();
        self.g.add_const(
            &format!("i{n}"),
            Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap(),
        )
    }
    fn op(&mut self, call: OpCall, ins: &[OutletId]) -> OutletId {
        let n = self.g.node_count();
        self.g.call1(&format!("n{n}"), call, ins).unwrap()
    }
    fn o(&mut self, op: &str, ins: &[OutletId]) -> OutletId {
        self.op(OpCall::new(op), ins)
    }
    fn done(mut self, out: OutletId) -> Graph {
        self.g.outputs.push(out);
        self.g
    }
}

fn perm(p: &[i64]) -> OpCall {
    OpCall::new("Transpose").with("perm", Attr::Ints(p.to_vec()))
}

fn cast(to: i64) -> OpCall {
    OpCall::new("Cast").with("to", Attr::Int(to))
}

fn unary_chain(ops: &[&str]) -> Graph {
    let mut b = B::new();
    let mut x = b.x("x", &[2, 3]);
    for op in ops {
        x = b.o(op, &[x]);
    }
    b.done(x)
}

fn binary_with_const(op: &str, v: f32, const_first: bool) -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[2, 3]);
    let c = b.s(v);
    let ins = if const_first { [c, x] } else { [x, c] };
    let y = b.o(op, &ins);
    b.done(y)
}

fn transpose_pair(p: &[i64], q: &[i64]) -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[2, 3, 4]);
    let t = b.op(perm(p), &[x]);
    let y = b.op(perm(q), &[t]);
    b.done(y)
}

fn reduce(b: &mut B, op: &str, x: OutletId, axes: &[i64]) -> OutletId {
    let a = b.ints(axes);
    b.o(op, &[x, a])
}

fn gelu(form: usize) -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[2, 5]);
    let r2 = b.s(std::f32::consts::SQRT_2);
    let d = b.o("Div", &[x, r2]);
    let e = b.o("Erf", &[d]);
    let one = b.s(1.0);
    let a = b.o("Add", &[e, one]);
    let half = b.s(0.5);
    let y = match form {
        0 => {
            let hx = b.o("Mul", &[x, half]);
            b.o("Mul", &[hx, a])
        }
        1 => {
            let xa = b.o("Mul", &[x, a]);
            b.o("Mul", &[xa, half])
        }
        _ => {
            let ah = b.o("Mul", &[a, half]);
            b.o("Mul", &[x, ah])
        }
    };
    b.done(y)
}

fn layer_norm(with_beta: bool) -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[2, 3, 4]);
    let mu = reduce(&mut b, "ReduceMean", x, &[-1]);
    let d = b.o("Sub", &[x, mu]);
    let two = b.s(2.0);
    let sq = b.o("Pow", &[d, two]);
    let var = reduce(&mut b, "ReduceMean", sq, &[-1]);
    let eps = b.s(1e-5);
    let ve = b.o("Add", &[var, eps]);
    let sd = b.o("Sqrt", &[ve]);
    let n = b.o("Div", &[d, sd]);
    let gamma = b.c(&[4], vec![0.5, 1.0, 1.5, -2.0]);
    let m = b.o("Mul", &[n, gamma]);
    let y = if with_beta {
        let beta = b.c(&[4], vec![0.1, 0.2, -0.3, 0.0]);
        b.o("Add", &[m, beta])
    } else {
        m
    };
    b.done(y)
}

fn rms_norm() -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[2, 4]);
    let two = b.s(2.0);
    let sq = b.o("Pow", &[x, two]);
    let ms = reduce(&mut b, "ReduceMean", sq, &[-1]);
    let eps = b.s(1e-6);
    let ve = b.o("Add", &[ms, eps]);
    let sd = b.o("Sqrt", &[ve]);
    let r = b.o("Reciprocal", &[sd]);
    let n = b.o("Mul", &[x, r]);
    let gamma = b.c(&[4], vec![0.5, 1.0, 1.5, -2.0]);
    let y = b.o("Mul", &[gamma, n]);
    b.done(y)
}

fn softmax() -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[3, 5]);
    let m = reduce(&mut b, "ReduceMax", x, &[1]);
    let d = b.o("Sub", &[x, m]);
    let e = b.o("Exp", &[d]);
    let s = reduce(&mut b, "ReduceSum", e, &[1]);
    let y = b.o("Div", &[e, s]);
    b.done(y)
}

fn gemm() -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[3, 4]);
    let w = b.c(&[4, 5], (0..20).map(|i| i as f32 * 0.1 - 1.0).collect());
    let bias = b.c(&[5], vec![0.5, -0.5, 1.0, 0.0, 2.0]);
    let m = b.o("MatMul", &[x, w]);
    let y = b.o("Add", &[bias, m]);
    b.done(y)
}

fn conv_bn() -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[1, 2, 5, 5]);
    let w = b.c(
        &[3, 2, 3, 3],
        (0..54).map(|i| (i as f32 * 0.37).sin()).collect(),
    );
    let bias = b.c(&[3], vec![0.1, -0.2, 0.3]);
    let conv = OpCall::new("Conv").with("pads", Attr::Ints(vec![1, 1, 1, 1]));
    let c = b.op(conv, &[x, w, bias]);
    let scale = b.c(&[3], vec![1.5, 0.5, -1.0]);
    let shift = b.c(&[3], vec![0.0, 1.0, -1.0]);
    let mean = b.c(&[3], vec![0.2, -0.1, 0.0]);
    let var = b.c(&[3], vec![1.0, 0.25, 4.0]);
    let y = b.o("BatchNormalization", &[c, scale, shift, mean, var]);
    b.done(y)
}

/// `Gemm(x, DequantizeBlocks(W)ᵀ, b?)` with a block-quantized `W` (GGUF's form).
fn gemm_blocks(format: egret_ir::BlockFormat, bias: bool) -> Graph {
    let mut b = B::new();
    let x = b.x("x", &[3, 64]);
    let w = (0..80 * 64).map(|i| (i as f32 * 0.29).sin()).collect();
    let w = Tensor::from_vec(vec![80, 64], w).unwrap();
    let q = egret_ir::blocks::quantize(&w, format, None).unwrap();
    let wq = b.g.add_const("wq", q);
    let deq = OpCall {
        domain: "egret".into(),
        ..OpCall::new("DequantizeBlocks")
    };
    let w = b.op(deq, &[wq]);
    let mut ins = vec![x, w];
    if bias {
        ins.push(b.c(&[80], (0..80).map(|i| i as f32 * 0.01 - 0.4).collect()));
    }
    let y = b.op(OpCall::new("Gemm").with("transB", Attr::Int(1)), &ins);
    b.done(y)
}

fn reshape_target() -> Graph {
    let mut b = B::new();
    let ty = ValueType::tensor(
        DType::F32,
        Some(Shape(vec![
            Dim::Sym("n".into()),
            Dim::Known(4),
            Dim::Known(6),
        ])),
    );
    let x = b.input("x", ty);
    let s = b.o("Shape", &[x]);
    let zero = b.g.add_const("zero", Tensor::scalar(0i64));
    let n = b.o("Gather", &[s, zero]);
    let ax = b.ints(&[0]);
    let n1 = b.o("Unsqueeze", &[n, ax]);
    let rest = b.ints(&[24]);
    let target = b.op(
        OpCall::new("Concat").with("axis", Attr::Int(0)),
        &[n1, rest],
    );
    let y = b.o("Reshape", &[x, target]);
    b.done(y)
}

fn examples(rule: &str) -> Vec<Graph> {
    let f = |d: &[usize]| f32ty(d);
    let pat = |p: &str, vars: &[(&str, ValueType)]| graph_from_pattern(p, vars).unwrap();
    match rule {
        "neutral-element" => vec![
            binary_with_const("Add", 0.0, true),
            binary_with_const("Mul", 1.0, false),
            binary_with_const("Sub", 0.0, false),
            binary_with_const("Div", 1.0, false),
            binary_with_const("Pow", 1.0, false),
        ],
        "identity" => vec![
            unary_chain(&["Relu", "Identity"]),
            unary_chain(&["Dropout"]),
        ],
        "same-shape-noop" => {
            let mut b = B::new();
            let x = b.x("x", &[2, 3]);
            let s = b.ints(&[2, 3]);
            let r = b.o("Reshape", &[x, s]);
            let c = b.op(cast(1), &[r]);
            let e = b.o("Expand", &[c, s]);
            vec![b.done(e)]
        }
        "transpose-transpose" => vec![
            transpose_pair(&[1, 2, 0], &[2, 0, 1]),
            transpose_pair(&[1, 0, 2], &[0, 2, 1]),
        ],
        "reshape-chain" => {
            let mut b = B::new();
            let x = b.x("x", &[2, 3]);
            let ax = b.ints(&[0]);
            let u = b.o("Unsqueeze", &[x, ax]);
            let s = b.ints(&[3, 2]);
            let r = b.o("Reshape", &[u, s]);
            let relu = b.o("Relu", &[r]);
            vec![b.done(relu)]
        }
        "cast-chain" => {
            let mut b = B::new();
            let x = b.x("x", &[2, 3]);
            let d = b.op(cast(11), &[x]);
            let y = b.op(cast(1), &[d]);
            let mut b2 = B::new();
            let xi = b2.input("x", ValueType::tensor(DType::I32, Some(Shape::known(&[4]))));
            let l = b2.op(cast(7), &[xi]);
            let y2 = b2.op(cast(1), &[l]);
            vec![b.done(y), b2.done(y2)]
        }
        "involution" => vec![unary_chain(&["Neg", "Neg"])],
        "squeeze-unsqueeze" => vec![{
            let mut b = B::new();
            let x = b.x("x", &[2, 3]);
            let ax = b.ints(&[1]);
            let u = b.o("Unsqueeze", &[x, ax]);
            let s = b.o("Squeeze", &[u, ax]);
            b.done(s)
        }],
        "reshape-target" => vec![reshape_target()],
        "commute" => vec![pat(
            "(Sub (Add ?a ?b) ?b)",
            &[("?a", f(&[3])), ("?b", f(&[2, 3]))],
        )],
        "matmul-add-gemm" => vec![gemm()],
        "gelu" => vec![gelu(0), gelu(1), gelu(2)],
        "silu" => vec![pat("(Mul ?x (Sigmoid ?x))", &[("?x", f(&[2, 3]))])],
        "softmax" => vec![softmax()],
        "layer-norm" => vec![layer_norm(true), layer_norm(false)],
        "rms-norm" => vec![rms_norm()],
        "batchnorm-into-conv" => vec![conv_bn()],
        "fuse-dequantize-blocks" => vec![
            gemm_blocks(egret_ir::BlockFormat::Q4_1, true),
            gemm_blocks(egret_ir::BlockFormat::Q8_0, false),
            gemm_blocks(egret_ir::BlockFormat::I4S64, true),
        ],
        "transpose-sink-unary" => vec![pat(
            "(Relu (Transpose{perm=[1,0]} ?x))",
            &[("?x", f(&[2, 3]))],
        )],
        "transpose-sink-binary" => vec![
            pat(
                "(Add (Transpose{perm=[1,0]} ?a) (Transpose{perm=[1,0]} ?b))",
                &[("?a", f(&[2, 3])), ("?b", f(&[1, 3]))],
            ),
            {
                let mut b = B::new();
                let x = b.x("x", &[2, 3]);
                let t = b.op(perm(&[1, 0]), &[x]);
                let c = b.s(3.0);
                let y = b.o("Mul", &[c, t]);
                b.done(y)
            },
        ],
        other => panic!("no examples for rule `{other}`: add some here"),
    }
}

#[test]
fn every_builtin_rule_is_sound_and_fires() {
    let opts = Options::default();
    for (set, rule) in rules::all_rules() {
        let name = rule.name.to_string();
        let report = check_rule(&rule, &examples(&name), &opts).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "{set}/{name}: fired on {} examples, max error {:?}",
            report.fired, report.max_error
        );
        assert!(
            report.fired > 0,
            "rule `{name}` never fired on its examples"
        );
    }
}

#[test]
fn an_unsound_rule_is_caught() {
    // Claims Relu(x) = x: wrong for negative inputs, which random data contains.
    let bad: egret_passes::egraph::Rewrite = egg::rewrite!("bad"; "(Relu ?x)" => "?x");
    let g = graph_from_pattern("(Relu ?x)", &[("?x", f32ty(&[16]))]).unwrap();
    let err = check_rule(&bad, &[g], &Options::default()).unwrap_err();
    assert!(err.to_string().contains("rule `bad` is unsound"), "{err}");
}

/// Op types of a graph, for checking what the optimizer produced.
fn op_types(g: &Graph) -> Vec<String> {
    let mut v: Vec<String> = g
        .node_ids()
        .filter_map(|id| g.node(id).op.as_call().map(|c| c.op_type.clone()))
        .collect();
    v.sort();
    v
}

#[test]
fn fusions_are_chosen_by_the_default_pipeline() {
    let cases: Vec<(Graph, Vec<&str>)> = vec![
        (gelu(0), vec!["Gelu"]),
        (gelu(2), vec!["Gelu"]),
        (layer_norm(true), vec!["LayerNormalization"]),
        (rms_norm(), vec!["RMSNormalization"]),
        (softmax(), vec!["Softmax"]),
        (gemm(), vec!["Gemm"]),
        (conv_bn(), vec!["Conv"]),
        (transpose_pair(&[1, 2, 0], &[2, 0, 1]), vec!["Identity"]),
        (reshape_target(), vec!["Reshape"]),
        (examples("silu").remove(0), vec!["Swish"]),
    ];
    let reg = Registry::builtin();
    let pipeline = reg.pipeline(&["dce", "eqsat"]).unwrap();
    for (g, want) in cases {
        let mut m = egret_ir::Model {
            graph: g.clone(),
            ..Default::default()
        };
        pipeline.run(&mut m, &PassContext::default()).unwrap();
        assert_eq!(
            op_types(&m.graph),
            want,
            "{}",
            egret_ir::text::print_graph(&m.graph)
        );
        let inputs = egret_passes::check::random_inputs(&g, &HashMap::new(), 7).unwrap();
        let e = egret_passes::check::compare(&g, &m.graph, &inputs).unwrap();
        assert!(e.rel <= 1e-5, "{e:?}");
    }
}
