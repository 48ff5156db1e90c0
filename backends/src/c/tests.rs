//! The emitted C of small graphs (snapshots), and typed errors.

use super::{emit, EmitError, Emitted, Options, Weights};
use crate::program::{lower, trace};
use egret_ir::{Attr, DType, Graph, OpCall, Shape, Tensor, Value, ValueType};

fn input(g: &mut Graph, name: &str, dtype: DType, shape: &[usize]) -> egret_ir::OutletId {
    g.add_input(name, ValueType::tensor(dtype, Some(Shape::known(shape))))
}

fn f32s(shape: Vec<usize>, f: impl Fn(usize) -> f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(f).collect()).unwrap()
}

/// Lower and emit `g` for `inputs`.
fn build(g: &Graph, inputs: Vec<Value>, opts: &Options) -> Result<Emitted, EmitError> {
    let tr = trace(g, inputs).unwrap();
    let p = lower(g, &tr).unwrap();
    emit(g, &p, opts)
}

/// `model.c` with each kernel's source replaced by a marker (the kernels
/// are real files, reviewed as such).
fn model_c(e: &Emitted) -> String {
    let mut c = e.files.model_c.clone();
    for k in &e.kernels {
        c = c.replace(k.source(), &format!("/* kernel {k:?} */\n"));
    }
    c
}

/// `sigmoid(2 · relu(x · w + b))`: a Linear step and one fused loop.
fn linear_graph() -> (Graph, Vec<Value>) {
    let mut g = Graph::new("linear");
    let x = input(&mut g, "x", DType::F32, &[2, 3]);
    let w = g.add_const("w", f32s(vec![4, 3], |i| i as f32 * 0.25 - 1.0));
    let b = g.add_const("b", f32s(vec![4], |i| i as f32));
    let two = g.add_const("two", Tensor::scalar(2.0f32));
    let gemm = OpCall::new("Gemm").with("transB", Attr::Int(1));
    let y = g.call1("y", gemm, &[x, w, b]).unwrap();
    let r = g.call1("r", OpCall::new("Relu"), &[y]).unwrap();
    let s = g.call1("s", OpCall::new("Mul"), &[r, two]).unwrap();
    let t = g.call1("t", OpCall::new("Sigmoid"), &[s]).unwrap();
    g.outputs.push(t);
    (g, vec![Value::Tensor(f32s(vec![2, 3], |i| i as f32 - 2.5))])
}

/// Conv → MaxPool → Softmax over a 1×1×4×4 image.
fn conv_graph() -> (Graph, Vec<Value>) {
    let mut g = Graph::new("conv");
    let x = input(&mut g, "x", DType::F32, &[1, 1, 4, 4]);
    let w = g.add_const("w", f32s(vec![2, 1, 3, 3], |i| (i % 5) as f32 - 2.0));
    let conv = OpCall::new("Conv")
        .with("kernel_shape", Attr::Ints(vec![3, 3]))
        .with("pads", Attr::Ints(vec![1, 1, 1, 1]));
    let c = g.call1("c", conv, &[x, w]).unwrap();
    let pool = OpCall::new("MaxPool")
        .with("kernel_shape", Attr::Ints(vec![2, 2]))
        .with("strides", Attr::Ints(vec![2, 2]));
    let p = g.call1("p", pool, &[c]).unwrap();
    let s = g
        .call1("s", OpCall::new("Softmax").with("axis", Attr::Int(1)), &[p])
        .unwrap();
    g.outputs.push(s);
    (
        g,
        vec![Value::Tensor(f32s(vec![1, 1, 4, 4], |i| i as f32 / 8.0))],
    )
}

/// int32: broadcast Add, Transpose, Concat with the input, ReduceMax.
fn int_graph() -> (Graph, Vec<Value>) {
    let mut g = Graph::new("ints");
    let x = input(&mut g, "x", DType::I32, &[2, 3]);
    let b = g.add_const(
        "b",
        Tensor::from_vec(vec![3], vec![10i32, -20, 30]).unwrap(),
    );
    let s = g.call1("s", OpCall::new("Add"), &[x, b]).unwrap();
    let t = g
        .call1(
            "t",
            OpCall::new("Transpose").with("perm", Attr::Ints(vec![1, 0])),
            &[s],
        )
        .unwrap();
    let xt = g
        .call1(
            "xt",
            OpCall::new("Transpose").with("perm", Attr::Ints(vec![1, 0])),
            &[x],
        )
        .unwrap();
    let c = g
        .call1(
            "c",
            OpCall::new("Concat").with("axis", Attr::Int(1)),
            &[t, xt],
        )
        .unwrap();
    let axes = g.add_const("axes", Tensor::from_vec(vec![1], vec![1i64]).unwrap());
    let m = g
        .call1(
            "m",
            OpCall::new("ReduceMax").with("keepdims", Attr::Int(0)),
            &[c, axes],
        )
        .unwrap();
    g.outputs.push(m);
    let x = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, -4, 5, -6]).unwrap();
    (g, vec![Value::Tensor(x)])
}

#[test]
fn linear_and_fused_loop_snapshot() {
    let (g, inputs) = linear_graph();
    let e = build(&g, inputs, &Options::default()).unwrap();
    insta::assert_snapshot!("linear_model_c", model_c(&e));
    insta::assert_snapshot!("linear_model_h", e.files.model_h);
    assert_eq!(e.weights_bytes, 4 * 12 + 4 * 4);
}

#[test]
fn conv_pool_softmax_snapshot() {
    let (g, inputs) = conv_graph();
    let e = build(&g, inputs, &Options::default()).unwrap();
    insta::assert_snapshot!("conv_model_c", model_c(&e));
}

#[test]
fn integer_movement_and_reduction_snapshot() {
    let (g, inputs) = int_graph();
    let e = build(&g, inputs, &Options::default()).unwrap();
    insta::assert_snapshot!("ints_model_c", model_c(&e));
}

#[test]
fn weights_can_live_in_a_blob() {
    let (g, inputs) = linear_graph();
    let e = build(
        &g,
        inputs,
        &Options {
            weights: Weights::Bin,
            ..Options::default()
        },
    )
    .unwrap();
    let blob = e.files.weights_bin.as_ref().unwrap();
    // Two constants, each padded to 64 bytes.
    assert_eq!(blob.len(), 128);
    assert!(e.files.model_c.contains("#define egret_c1t (W + 0)"));
    assert!(e.files.model_h.contains("#define EGRET_WEIGHTS_INLINE 0"));
    assert!(!e.files.model_c.contains("static const float"));
}

#[test]
fn an_unsupported_op_is_a_typed_error_naming_it() {
    let mut g = Graph::new("topk");
    let x = input(&mut g, "x", DType::F32, &[4]);
    let k = g.add_const("k", Tensor::from_vec(vec![1], vec![2i64]).unwrap());
    let outs = g
        .call("t", OpCall::new("TopK"), &[Some(x), Some(k)], 2)
        .unwrap();
    g.outputs.extend(outs);
    let err = build(
        &g,
        vec![Value::Tensor(f32s(vec![4], |i| i as f32))],
        &Options::default(),
    )
    .unwrap_err();
    let EmitError::Unsupported { op, .. } = &err;
    assert_eq!(op, "TopK", "{err}");
}

/// `y = If(c > 0, then: x + 1, else: If(c < -5, then: x · 2, else: x))`:
/// a condition computed from an input, and an `If` nested in a branch,
/// both reading `x` as a capture.
fn if_graph() -> Graph {
    use std::sync::Arc;
    let branch = |name: &str, op: Option<(&str, f32)>| {
        let mut b = Graph::new(name);
        let x = input(&mut b, "x_cap", DType::F32, &[3]);
        let y = match op {
            Some((op, k)) => {
                let k = b.add_const(&format!("{name}_k"), Tensor::scalar(k));
                b.call1(&format!("{name}_y"), OpCall::new(op), &[x, k])
                    .unwrap()
            }
            None => b
                .call1(&format!("{name}_y"), OpCall::new("Identity"), &[x])
                .unwrap(),
        };
        b.outputs.push(y);
        b
    };
    let if_call = |then: Graph, els: Graph| {
        OpCall::new("If")
            .with("then_branch", Attr::Graph(Arc::new(then)))
            .with("else_branch", Attr::Graph(Arc::new(els)))
            .with("egret.num_captures", Attr::Int(1))
    };
    // The inner If, inside the outer else branch.
    let mut inner_else = Graph::new("outer_else");
    let x = input(&mut inner_else, "x_cap", DType::F32, &[3]);
    let c = input(&mut inner_else, "c_cap", DType::F32, &[]);
    let m5 = inner_else.add_const("m5", Tensor::scalar(-5.0f32));
    let lt = inner_else
        .call1("lt", OpCall::new("Less"), &[c, m5])
        .unwrap();
    let inner = if_call(branch("twice", Some(("Mul", 2.0))), branch("same", None));
    let y = inner_else.call1("inner", inner, &[lt, x]).unwrap();
    inner_else.outputs.push(y);

    let mut g = Graph::new("ifs");
    let x = input(&mut g, "x", DType::F32, &[3]);
    let c = input(&mut g, "c", DType::F32, &[]);
    let zero = g.add_const("zero", Tensor::scalar(0.0f32));
    let gt = g.call1("gt", OpCall::new("Greater"), &[c, zero]).unwrap();
    // Both outer branches take (x, c); the then branch ignores c.
    let mut plus = branch("plus", Some(("Add", 1.0)));
    input(&mut plus, "c_cap", DType::F32, &[]);
    let outer = if_call(plus, inner_else).with("egret.num_captures", Attr::Int(2));
    let y = g.call1("y", outer, &[gt, x, c]).unwrap();
    g.outputs.push(y);
    g
}

#[test]
fn ifs_become_the_taken_branch_with_guards() {
    use egret_runtime::Interpreter;
    let g = if_graph();
    let x = Value::Tensor(f32s(vec![3], |i| i as f32));
    let with_c = |c: f32| vec![x.clone(), Value::Tensor(Tensor::scalar(c))];
    for (c, want) in [
        (1.0, [1.0, 2.0, 3.0]),
        (-9.0, [0.0, 2.0, 4.0]),
        (-1.0, [0.0, 1.0, 2.0]),
    ] {
        let s = super::specialize_ifs(&g, &with_c(c)).unwrap();
        let ops: Vec<&str> = s
            .node_ids()
            .filter_map(|id| s.node(id).op.as_call().map(|c| c.op_type.as_str()))
            .collect();
        assert!(!ops.contains(&"If"), "{ops:?}");
        let guards = ops.iter().filter(|&&o| o == "Guard").count();
        assert_eq!(guards, if c > 0.0 { 1 } else { 2 }, "{ops:?}");
        assert_eq!(s.value_name(s.outputs[0]), "y");
        let interp = Interpreter::new(&s).unwrap();
        let got = interp.run(with_c(c)).unwrap();
        assert_eq!(got[0].as_tensor().unwrap().as_slice::<f32>().unwrap(), want);
        // Another branch's condition fails the guard.
        let other = if c > 0.0 { -1.0 } else { 1.0 };
        assert!(interp.run(with_c(other)).is_err());
        // The C program checks it.
        let c_code = build(&s, with_c(c), &Options::default())
            .unwrap()
            .files
            .model_c;
        assert!(c_code.contains("!= 0) != "), "no guard in the C code");
    }
}
