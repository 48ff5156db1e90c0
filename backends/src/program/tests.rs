//! The lowering of a small graph, as text, and the JIT running it.

use super::{lower, trace, Step};
use crate::jit::Jit;
use egret_ir::{Attr, DType, Graph, OpCall, Shape, Tensor, Value, ValueType};
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

/// A decode-like step: `y = x · w` for the new position, appended to a
/// cache `past` of any length; the output sums the cache over positions and
/// adds `y`. The cache length is the symbolic dim.
fn cached_graph() -> Graph {
    let mut g = Graph::new("cached");
    let x = g.add_input(
        "x",
        ValueType::tensor(DType::F32, Some(Shape::known(&[1, 2]))),
    );
    let past = g.add_input("past", ValueType::tensor(DType::F32, None));
    let w = g.add_const(
        "w",
        Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, -1.0, 0.5]).unwrap(),
    );
    let shape = g.add_const(
        "shape",
        Tensor::from_vec(vec![3], vec![1i64, 1, 2]).unwrap(),
    );
    let axes = g.add_const("axes", Tensor::from_vec(vec![1], vec![1i64]).unwrap());
    let y = g.call1("y", OpCall::new("MatMul"), &[x, w]).unwrap();
    let y3 = g.call1("y3", OpCall::new("Reshape"), &[y, shape]).unwrap();
    let concat = OpCall::new("Concat").with("axis", Attr::Int(1));
    let present = g.call1("present", concat, &[past, y3]).unwrap();
    let sum = OpCall::new("ReduceSum").with("keepdims", Attr::Int(0));
    let s = g.call1("s", sum, &[present, axes]).unwrap();
    let z = g.call1("z", OpCall::new("Add"), &[s, y]).unwrap();
    let out = g.call1("out", OpCall::new("Relu"), &[z]).unwrap();
    g.outputs.extend([out, present]);
    g
}

fn cached_inputs(past_len: usize) -> Vec<Value> {
    let past: Vec<f32> = (0..past_len * 2).map(|i| (i as f32 * 0.37).sin()).collect();
    vec![
        Value::Tensor(Tensor::from_vec(vec![1, 2], vec![0.5f32, -1.5]).unwrap()),
        Value::Tensor(Tensor::from_vec(vec![1, past_len, 2], past).unwrap()),
    ]
}

#[test]
fn a_symbolic_trace_keeps_the_cache_dynamic_and_the_rest_compiled() {
    let g = cached_graph();
    let tr = super::trace_symbolic(&g, cached_inputs(3), &[(1, 1)]).unwrap();
    let p = lower(&g, &tr).unwrap();
    let dynamic: Vec<&str> = p
        .buffers
        .iter()
        .filter(|b| matches!(b.storage, super::Storage::Dynamic))
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(dynamic, ["past", "present"]);
    assert!(matches!(p.steps[0], Step::Linear(_)));
    assert_eq!(p.fused_counts(), (1, 2), "Add and Relu stay fused:\n{p}");
}

#[test]
fn the_jit_serves_every_cache_length_from_one_symbolic_variant() {
    let g = cached_graph();
    let jit = Jit::new(&g);
    let interp = Interpreter::new(&g).unwrap();
    for past_len in 2..12 {
        let got = jit.execute(cached_inputs(past_len)).unwrap();
        let want = interp.run(cached_inputs(past_len)).unwrap();
        for (a, b) in got.iter().zip(&want) {
            let (a, b) = (a.as_tensor().unwrap(), b.as_tensor().unwrap());
            assert_eq!(a.shape(), b.shape());
            assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
        }
    }
    let stats = jit.stats();
    // Length 2 compiles exactly; length 3 is one size apart, so it compiles
    // the symbolic variant that serves every later length.
    assert_eq!((stats.compiled, stats.symbolic), (2, 1), "{stats:?}");
    assert!(stats.fallbacks.is_empty(), "{stats:?}");
    // A length seen HOT times gets an exact variant of its own.
    for _ in 0..crate::jit::HOT {
        jit.execute(cached_inputs(7)).unwrap();
    }
    assert_eq!(jit.stats().compiled, 3);
}
