//! The lowering of a small graph, as text, and the JIT running it.

use super::{lower, trace, Step};
use crate::jit::Jit;
use egret_ir::{DType, Graph, OpCall, Shape, Tensor, Value, ValueType};
use egret_runtime::{Executor, Interpreter};

/// `relu(x · w + b) · 2` and `x · w` as outputs: a Linear step, one fused
/// loop (Add with a broadcast bias, Relu, Mul by a scalar) and a second loop.
fn graph() -> Graph {
    let mut g = Graph::new("g");
    let x = g.add_input(
        "x",
        ValueType::tensor(DType::F32, Some(Shape::known(&[2, 3]))),
    );
    let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    let w = g.add_const("w", Tensor::from_vec(vec![3, 4], w).unwrap());
    let b = g.add_const(
        "b",
        Tensor::from_vec(vec![4], vec![4.0f32, 5.0, 1.0, 2.0]).unwrap(),
    );
    let two = g.add_const("two", Tensor::scalar(2.0f32));
    let y = g.call1("y", OpCall::new("MatMul"), &[x, w]).unwrap();
    let z = g.call1("z", OpCall::new("Add"), &[y, b]).unwrap();
    let r = g.call1("r", OpCall::new("Relu"), &[z]).unwrap();
    let s = g.call1("s", OpCall::new("Mul"), &[r, two]).unwrap();
    let t = g.call1("t", OpCall::new("Sigmoid"), &[s]).unwrap();
    g.outputs.push(t);
    g
}

fn input() -> Value {
    let x: Vec<f32> = vec![1.0, -2.0, 0.5, 3.0, 0.25, -1.0];
    Value::Tensor(Tensor::from_vec(vec![2, 3], x).unwrap())
}

#[test]
fn lowering_fuses_and_plans_in_place() {
    let g = graph();
    let tr = trace(&g, vec![input()]).unwrap();
    let p = lower(&g, &tr).unwrap();
    assert!(matches!(p.steps[0], Step::Linear(_)));
    assert_eq!(p.fused_counts(), (1, 4));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn jit_computes_what_the_interpreter_computes() {
    let g = graph();
    let want = Interpreter::new(&g).unwrap().run(vec![input()]).unwrap();
    let jit = Jit::new(&g);
    let got = jit.execute(vec![input()]).unwrap();
    assert!(
        jit.program_for(&[input()]).is_some(),
        "compiled, not interpreted"
    );
    let (got, want) = (
        got[0]
            .as_tensor()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec(),
        want[0]
            .as_tensor()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec(),
    );
    // Computed in float64 with numpy-free Python: sigmoid(2·relu(x·w + b)).
    let expected: [f64; 8] = [
        0.999_088_95,
        0.999_841_56,
        0.622_459_3,
        0.904_650_5,
        0.5,
        0.957_912_3,
        0.5,
        0.5,
    ];
    for (&a, e) in got.iter().zip(expected) {
        assert!((f64::from(a) - e).abs() <= 1e-6, "{got:?}");
    }
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6, "{got:?} vs {want:?}");
    }
}
