//! Round-trip and error tests for the text form.

use super::*;
use crate::attr::Attr;
use crate::dtype::{BlockFormat, DType};
use crate::graph::{Model, Op, OpCall, ValueInfo};
use crate::shape::{Dim, Shape, TensorType, ValueType};
use half::{bf16, f16};
use std::collections::HashMap;
use std::sync::Arc;

fn t(dtype: DType, dims: &[usize]) -> ValueType {
    ValueType::Tensor(TensorType::known(dtype, dims))
}

fn f32s(n: usize) -> Tensor {
    Tensor::from_vec(vec![n], (0..n).map(|i| i as f32 * 0.25 - 1.0).collect()).unwrap()
}

fn vi(name: &str, ty: ValueType) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        ty,
    }
}

/// Print with weights, parse back, print again: both texts and weight tables must agree.
fn round_trip(m: &Model) -> (String, Model) {
    let (text, weights) = print_model_with_weights(m);
    let table: HashMap<String, Tensor> = weights.iter().cloned().collect();
    assert_eq!(table.len(), weights.len(), "weight keys are unique");
    let parsed =
        parse_model(&text, &|k| table.get(k).cloned()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (again, weights2) = print_model_with_weights(&parsed);
    assert_eq!(text, again);
    assert_eq!(
        weights.iter().map(|w| &w.0).collect::<Vec<_>>(),
        weights2.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    (text, parsed)
}

/// A subgraph with its own input, a const and one op.
fn body(name: &str) -> Arc<Graph> {
    let mut g = Graph::new(name);
    let a = g.add_input("a", t(DType::F32, &[2]));
    let c = g.add_const("c", Tensor::from_vec(vec![2], vec![1f32, 2.0]).unwrap());
    let n = g
        .add_node(
            "",
            Op::Call(OpCall::new("Add")),
            vec![Some(a), Some(c)],
            vec![vi("r", t(DType::F32, &[2]))],
        )
        .unwrap();
    g.outputs.push(crate::graph::OutletId::new(n, 0));
    Arc::new(g)
}

/// A model touching every feature of the text form.
fn kitchen_sink() -> Model {
    let mut g = Graph::new("main");
    let sym = ValueType::tensor(
        DType::F32,
        Some(Shape(vec![
            Dim::Sym("batch".into()),
            Dim::Known(3),
            Dim::Sym("n+1".into()),
        ])),
    );
    let x = g.add_input("x", sym);
    let q = g.add_input("onnx::in", ValueType::tensor(DType::I64, None));
    let s = g.add_input(
        "s",
        ValueType::Sequence(TensorType {
            dtype: DType::F16,
            shape: None,
        }),
    );
    let o = g.add_input(
        "o",
        ValueType::Optional(Box::new(ValueType::Sequence(TensorType::known(
            DType::U8,
            &[],
        )))),
    );
    g.node_mut(o.node).name = "input node".into();
    let big = f32s(20);
    let w = g.add_const("w", big.clone());
    let w2 = g.add_const("w_shared", big.clone());
    let _w3 = g.add_const("w.1", f32s(17));
    let consts = [
        Tensor::from_vec(
            vec![2, 2],
            vec![1f32, -0.0, f32::INFINITY, f32::from_bits(0xffc0_0001)],
        )
        .unwrap(),
        Tensor::from_vec(vec![], vec![1e-300f64]).unwrap(),
        Tensor::from_vec(
            vec![3],
            vec![
                f16::from_f32(0.1),
                f16::from_bits(0x7e01),
                f16::NEG_INFINITY,
            ],
        )
        .unwrap(),
        Tensor::from_vec(vec![1], vec![bf16::from_f32(3.5)]).unwrap(),
        Tensor::from_vec(vec![2], vec![i64::MIN, i64::MAX]).unwrap(),
        Tensor::from_vec(vec![2], vec![u64::MAX, 0]).unwrap(),
        Tensor::from_vec(vec![1], vec![-7i32]).unwrap(),
        Tensor::from_vec(vec![1], vec![-7i16]).unwrap(),
        Tensor::from_vec(vec![1], vec![u16::MAX]).unwrap(),
        Tensor::from_vec(vec![1], vec![u32::MAX]).unwrap(),
        Tensor::from_vec(vec![2], vec![-128i8, 127]).unwrap(),
        Tensor::from_vec(vec![0, 3], Vec::<u8>::new()).unwrap(),
        Tensor::from_bools(vec![3], vec![true, false, true]).unwrap(),
        Tensor::from_bytes(DType::I4, vec![2], &[0xf8, 7]).unwrap(),
        Tensor::from_bytes(DType::U4, vec![1], &[15]).unwrap(),
        Tensor::from_bytes(DType::F8E4M3FN, vec![2], &[0x7f, 0x01]).unwrap(),
        Tensor::from_bytes(DType::F8E5M2FNUZ, vec![1], &[0x80]).unwrap(),
        Tensor::from_bytes(DType::F4E2M1, vec![1], &[9]).unwrap(),
        Tensor::from_strings(vec![2], vec!["a \"q\"\n".into(), "".into()]).unwrap(),
        Tensor::from_strings(vec![17], (0..17).map(|i| i.to_string()).collect()).unwrap(),
        Tensor::from_bytes(DType::Block(BlockFormat::Q8_0), vec![1, 32], &[3; 34]).unwrap(),
    ];
    for (i, c) in consts.into_iter().enumerate() {
        g.add_const(&format!("c{i}"), c);
    }
    // A const whose recorded type differs from its tensor, with its own node name.
    let odd = g.add_const("odd", Tensor::scalar(2i64));
    g.node_mut(odd.node).name = "odd node".into();
    g.node_mut(odd.node).outputs[0].ty = ValueType::tensor(DType::I64, None);
    // An Input node that is not a graph input.
    let stray = g.add_input("stray", t(DType::F32, &[1]));
    g.inputs.pop();

    let mut call = OpCall::new("Everything");
    let attrs: Vec<(&str, Attr)> = vec![
        ("i", Attr::Int(-3)),
        ("f", Attr::Float(1e-5)),
        ("f_negzero", Attr::Float(-0.0)),
        ("f_nan", Attr::Float(f32::from_bits(0x7fc0_1234))),
        ("f_inf", Attr::Float(f32::NEG_INFINITY)),
        ("f_int", Attr::Float(3.0)),
        ("s", Attr::String("tab\there \\ \"quoted\" é \u{1}".into())),
        ("ints", Attr::Ints(vec![1, -2, i64::MAX])),
        ("floats", Attr::Floats(vec![1.0, 0.5, f32::NAN])),
        ("strings", Attr::Strings(vec!["a".into(), "b c".into()])),
        ("e_ints", Attr::Ints(vec![])),
        ("e_floats", Attr::Floats(vec![])),
        ("e_strings", Attr::Strings(vec![])),
        ("e_tensors", Attr::Tensors(vec![])),
        ("e_graphs", Attr::Graphs(vec![])),
        ("tensor", Attr::Tensor(Tensor::scalar(0.5f32))),
        ("big_tensor", Attr::Tensor(f32s(32))),
        (
            "tensors",
            Attr::Tensors(vec![Tensor::scalar(1i64), f32s(18)]),
        ),
        (
            "ty",
            Attr::Type(ValueType::Optional(Box::new(t(DType::BF16, &[2, 3])))),
        ),
        (
            "ty_seq",
            Attr::Type(ValueType::Sequence(TensorType::known(DType::String, &[]))),
        ),
        (
            "ty_tensor",
            Attr::Type(ValueType::tensor(DType::Bool, None)),
        ),
        ("body", Attr::Graph(body("then"))),
        ("bodies", Attr::Graphs(vec![body("b0"), body("b 1")])),
        ("weird name", Attr::Int(0)),
    ];
    for (k, v) in attrs {
        call.attrs.set(k, v);
    }
    call.domain = "com.microsoft".into();
    let a = g
        .add_node(
            "everything",
            Op::Call(call),
            vec![
                Some(x),
                None,
                Some(w),
                Some(w2),
                Some(q),
                Some(s),
                Some(o),
                Some(stray),
                None,
            ],
            vec![
                vi("y", t(DType::F32, &[2])),
                vi("", t(DType::F32, &[1])),
                vi("z:0", ValueType::tensor(DType::F32, Some(Shape(vec![])))),
            ],
        )
        .unwrap();
    let y = crate::graph::OutletId::new(a, 0);
    let mut odd_call = OpCall::new("const");
    odd_call.domain = "my domain".into();
    g.add_node("", Op::Call(odd_call), vec![Some(y)], vec![])
        .unwrap();
    let n = g
        .add_node(
            "",
            Op::Call(OpCall::new("Relu")),
            vec![Some(y)],
            vec![vi("r", t(DType::F32, &[2]))],
        )
        .unwrap();
    g.outputs = vec![
        crate::graph::OutletId::new(n, 0),
        x,
        crate::graph::OutletId::new(a, 2),
        crate::graph::OutletId::new(n, 0),
    ];

    let mut m = Model {
        graph: g,
        ..Default::default()
    };
    m.opsets.insert(String::new(), 21);
    m.opsets.insert("com.microsoft".into(), 1);
    m.metadata
        .insert("producer".into(), "hand \"built\"\n".into());
    m
}

#[test]
fn kitchen_sink_round_trips() {
    let m = kitchen_sink();
    let (text, parsed) = round_trip(&m);
    // Spot checks of the text itself.
    for needle in [
        "opset \"\" = 21\n",
        "graph main(%x: f32[batch,3,\"n+1\"], %\"onnx::in\": i64[?], %s: seq<f16[?]>, %o \"input node\": opt<seq<u8[]>>) -> (%r, %x, %\"z:0\", %r) {",
        "%w = const f32[20] @w\n",
        "%w_shared = const f32[20] @w\n",
        "%w.1 = const f32[17] @w.1\n",
        "%c0 = const f32[2,2] {1.0, -0.0, inf, nan_0xffc00001}\n",
        "%c2 = const f16[3] {0.099975586, nan_0x7e01, -inf}\n",
        "%c11 = const u8[0,3] {}\n",
        "%c20 = const q8_0[1,32] @c20\n",
        "%odd = const \"odd node\" i64[] {2} : i64[?]\n",
        "%stray = input: f32[1]\n",
        "f_nan=nan_0x7fc01234",
        "e_ints=ints[], e_strings=strings[], e_tensors=tensors[]",
        "big_tensor=f32[32] @everything.big_tensor",
        "tensors=[i64[] {1}, f32[18] @everything.tensors.1]",
        "ty=opt<bf16[2,3]>",
        "\"weird name\"=0",
        "](%x, _, %w, %w_shared, %\"onnx::in\", %s, %o, %stray, _) : f32[2], f32[1], f32[]\n",
        "() = \"my domain\"::\"const\"(%y)\n",
        "body=graph then(%a: f32[2]) -> (%r) {\n    %c = const f32[2] {1.0, 2.0}\n    %r = Add(%a, %c) : f32[2]\n  }",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // Structural checks of the parsed model.
    assert_eq!(parsed.opsets, m.opsets);
    assert_eq!(parsed.metadata, m.metadata);
    let g = &parsed.graph;
    assert_eq!(g.inputs.len(), 4);
    assert_eq!(g.node(g.inputs[3].node).name, "input node");
    assert_eq!(g.node_count(), m.graph.node_count());
    let call = g
        .node_ids()
        .find_map(|id| {
            g.node(id)
                .op
                .as_call()
                .filter(|c| c.op_type == "Everything")
                .cloned()
        })
        .unwrap();
    assert_eq!(call.domain, "com.microsoft");
    match call.attrs.get("f_nan") {
        Some(Attr::Float(f)) => assert_eq!(f.to_bits(), 0x7fc0_1234),
        other => panic!("{other:?}"),
    }
    match call.attrs.get("f_negzero") {
        Some(Attr::Float(f)) => assert_eq!(f.to_bits(), (-0.0f32).to_bits()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        call.attrs
            .get("s")
            .map(|a| matches!(a, Attr::String(s) if s == "tab\there \\ \"quoted\" é \u{1}")),
        Some(true)
    );
}

#[test]
fn every_dense_dtype_const_round_trips_bit_exactly() {
    for dtype in DType::DENSE {
        for n in [0usize, 1, 5, 16, 17] {
            let tensor = if dtype == DType::String {
                Tensor::from_strings(vec![n], (0..n).map(|i| format!("s{i}")).collect()).unwrap()
            } else {
                let size = dtype.size().unwrap();
                // Byte patterns valid for every dtype: small codes for the sub-byte ones.
                let bytes: Vec<u8> = (0..n * size)
                    .map(|i| {
                        if size == 1 {
                            (i % 2) as u8
                        } else {
                            (i * 37 % 251) as u8
                        }
                    })
                    .collect();
                Tensor::from_bytes(dtype, vec![n], &bytes).unwrap()
            };
            let mut g = Graph::new("g");
            let c = g.add_const("c", tensor.clone());
            g.outputs.push(c);
            let m = Model {
                graph: g,
                ..Default::default()
            };
            let (text, parsed) = round_trip(&m);
            let got = parsed.graph.const_value(parsed.graph.outputs[0]).unwrap();
            assert_eq!(got.dtype(), dtype);
            assert_eq!(got.shape(), &[n]);
            assert_eq!(got.bytes(), tensor.bytes(), "{text}");
            assert_eq!(got.as_strings().ok(), tensor.as_strings().ok());
            assert_eq!(
                text.contains('@'),
                n > INLINE_MAX_ELEMS && dtype != DType::String,
                "{text}"
            );
        }
    }
}

#[test]
fn every_attr_kind_round_trips_alone() {
    let mut cases = vec![
        Attr::Int(0),
        Attr::Int(i64::MIN),
        Attr::String(String::new()),
        Attr::Ints(vec![0]),
        Attr::Floats(vec![2.0]),
        Attr::Strings(vec![String::new()]),
        Attr::Type(t(DType::F32, &[])),
        Attr::Graph(Arc::new(Graph::new(""))),
        Attr::Graphs(vec![Arc::new(Graph::new("x"))]),
        Attr::Tensors(vec![Tensor::scalar(1u8)]),
        Attr::Tensor(Tensor::from_strings(vec![1], vec!["x".into()]).unwrap()),
    ];
    for bits in [
        0u32,
        0x8000_0000,
        0x7f80_0000,
        0xff80_0000,
        0x7fc0_0000,
        0x7fa0_0000,
        1,
        0x3dcc_cccd,
        0x4b80_0000,
    ] {
        cases.push(Attr::Float(f32::from_bits(bits)));
    }
    for a in cases {
        let mut g = Graph::new("g");
        let x = g.add_input("x", t(DType::F32, &[1]));
        let n = g
            .add_node(
                "",
                Op::Call(OpCall::new("Op").with("a", a.clone())),
                vec![Some(x)],
                vec![vi("y", t(DType::F32, &[1]))],
            )
            .unwrap();
        g.outputs.push(crate::graph::OutletId::new(n, 0));
        let m = Model {
            graph: g,
            ..Default::default()
        };
        let (text, parsed) = round_trip(&m);
        let got = parsed
            .graph
            .node(n)
            .op
            .as_call()
            .unwrap()
            .attrs
            .get("a")
            .unwrap()
            .clone();
        assert_eq!(got.kind(), a.kind(), "{text}");
        if let (Attr::Float(x), Attr::Float(y)) = (&got, &a) {
            assert_eq!(x.to_bits(), y.to_bits(), "{text}");
        }
    }
}

#[test]
fn print_graph_and_empty_model() {
    let m = Model::default();
    let (text, _) = round_trip(&m);
    assert_eq!(text, "graph \"\"() -> () {\n}\n");
    assert_eq!(
        print_graph(&body("b")).lines().next(),
        Some("graph b(%a: f32[2]) -> (%r) {")
    );
}

#[test]
fn hand_written_text_parses() {
    let text = r#"
        # a comment
        opset "" = 17
        graph main(%x: f32[N,2]) -> (%y) {
          %k = const i64[1] {1}
          %y = Foo[alpha=1, beta=[1, 2.5], t=f32[] {3}, u=seq<i64[?]>](%x, %k) : f32[N,2]
        }
    "#;
    let m = parse_model(text, &|_| None).unwrap();
    let call = m
        .graph
        .node_ids()
        .find_map(|id| m.graph.node(id).op.as_call().cloned())
        .unwrap();
    assert!(matches!(call.attrs.get("alpha"), Some(Attr::Int(1))));
    assert!(matches!(call.attrs.get("beta"), Some(Attr::Floats(v)) if v == &[1.0, 2.5]));
    assert!(
        matches!(call.attrs.get("t"), Some(Attr::Tensor(t)) if t.as_slice::<f32>().unwrap() == [3.0])
    );
    assert!(matches!(
        call.attrs.get("u"),
        Some(Attr::Type(ValueType::Sequence(_)))
    ));
}

fn parse_err(text: &str) -> (usize, String) {
    match parse_model(text, &|k| (k == "w").then(|| f32s(20))) {
        Err(IrError::Parse { line, msg }) => (line, msg),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("graph g() -> (%y) {\n}", 1, "`%y` is not defined"),
        (
            "graph g(%x: f32[1]) -> () {\n  %x = Relu(%x) : f32[1]\n}",
            2,
            "defined twice",
        ),
        (
            "graph g() -> () {\n  %y = Relu(%z) : f32[1]\n}",
            2,
            "`%z` is not defined",
        ),
        (
            "graph g() -> () {\n\n  %w = const f32[20] @nope\n}",
            3,
            "`@nope` not found",
        ),
        (
            "graph g() -> () {\n  %w = const f32[21] @w\n}",
            2,
            "the text says f32[21]",
        ),
        (
            "graph g() -> () {\n  %c = const f32[2] {1.0}\n}",
            2,
            "1 elements for shape [2]",
        ),
        (
            "graph g() -> () {\n  %c = const u8[1] {300}\n}",
            2,
            "not a valid u8 element",
        ),
        (
            "graph g() -> () {\n  %c = const f32[n] {1.0}\n}",
            2,
            "fully known",
        ),
        (
            "graph g() -> () {\n  %c = const q4_0[1,32] {1}\n}",
            2,
            "cannot be written inline",
        ),
        (
            "graph g() -> () {\n  %c = const f99[1] {1}\n}",
            2,
            "unknown dtype",
        ),
        (
            "graph g() -> () {\n  %a, %b = Relu() : f32[1]\n}",
            2,
            "2 outputs but 1 output types",
        ),
        (
            "graph g() -> () {\n  %a = Relu[x=1, x=2]() : f32[1]\n}",
            2,
            "given twice",
        ),
        (
            "graph g() -> () {\n  %a = Relu[x=[1, \"s\"]]() : f32[1]\n}",
            2,
            "mixes ints",
        ),
        (
            "graph g() -> () {\n  %a = Relu[x=[opt<f32[1]>]]() : f32[1]\n}",
            2,
            "lists of type",
        ),
        (
            "graph g() -> () {\n  %a, %b = input: f32[1]\n}",
            2,
            "exactly one value",
        ),
        (
            "graph g() -> () {\n  %a = Relu(%\"\") : f32[1]\n}",
            2,
            "cannot be referenced",
        ),
        ("graph g() -> () {\n}\nextra", 3, "expected end of input"),
        (
            "opset \"\" = 1\nopset \"\" = 2\ngraph g() -> () {}",
            2,
            "given twice",
        ),
        (
            "opset \"\" = x\ngraph g() -> () {}",
            1,
            "expected an integer",
        ),
        (
            "graph g() -> () {\n  %a = Relu[x=99999999999999999999]() : f32[1]\n}",
            2,
            "bad number",
        ),
        ("graph g(%x: f32[1]) {}", 1, "expected `->`"),
        ("", 1, "expected `graph`"),
    ];
    for &(text, line, needle) in cases {
        let (l, msg) = parse_err(text);
        assert!(msg.contains(needle), "{text:?}: {msg}");
        assert_eq!(l, line, "{text:?}: {msg}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!(
        "graph g() -> () {{ %a = If[b={}]() : f32[1] }}",
        "graph g() -> () { %a = If[b=".repeat(200)
    );
    let (_, msg) = parse_err(&text);
    assert!(msg.contains("nesting deeper"), "{msg}");
    let ty = format!(
        "graph g(%x: {}f32[1]{}) -> () {{}}",
        "opt<".repeat(200),
        ">".repeat(200)
    );
    assert!(parse_err(&ty).1.contains("nesting deeper"));
}

#[test]
fn truncated_texts_never_panic() {
    let (text, weights) = print_model_with_weights(&kitchen_sink());
    let table: HashMap<String, Tensor> = weights.into_iter().collect();
    let chars: Vec<char> = text.chars().collect();
    for cut in (0..chars.len()).step_by(7) {
        let s: String = chars[..cut].iter().collect();
        assert!(
            parse_model(&s, &|k| table.get(k).cloned()).is_err(),
            "prefix of {cut} chars parsed"
        );
    }
}
