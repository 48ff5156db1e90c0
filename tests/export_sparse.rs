//! ONNX export of egret's sparse ops: `egret::MatMulSparse` (f32 and int8
//! values) lowers to a dense f32 constant and `MatMul`, `egret::MatMulActSparse`
//! to `Abs`, `Greater`, `Where` and `MatMul`. The exported file, read back by
//! egret's ONNX frontend and run by its interpreter, must match the original
//! graph within 1e-5 relative (the same products in another order), and so
//! must onnxruntime when the venv of `scripts/setup-python.sh` exists.

mod common;
mod ort;

use egret_backends::onnx_export;
use egret_frontends::onnx::Message;
use egret_ir::sparse::SparseMatrix;
use egret_ir::{DType, Graph, Model, OpCall, Shape, Tensor, Value, ValueType};
use ort::{close, python, run_ort, OrtCase};

const K: usize = 45;
const N: usize = 7;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn egret_call(op: &str) -> OpCall {
    OpCall {
        domain: "egret".into(),
        ..OpCall::new(op)
    }
}

/// Three outputs: MatMulSparse with f32 and int8 values, MatMulActSparse.
fn model() -> (Model, Vec<Value>) {
    let mut g = Graph::new("sparse");
    let ty = ValueType::tensor(DType::F32, Some(Shape::known(&[2, 3, K])));
    let x = g.add_input("x", ty);
    let w = values(N * K, 1);
    let keep: Vec<bool> = values(N * K, 2).iter().map(|&v| v > 0.0).collect();
    let mut outs = vec![];
    for int8 in [false, true] {
        let sm = SparseMatrix::encode(&w, N, K, &keep, int8).unwrap();
        let mut ins = vec![Some(x)];
        for (i, t) in sm.tensors().into_iter().enumerate() {
            ins.push(Some(g.add_const(&format!("s{}_{i}", u8::from(int8)), t)));
        }
        let name = format!("mm_sparse{}", u8::from(int8));
        outs.push(g.call(&name, egret_call("MatMulSparse"), &ins, 1).unwrap()[0]);
    }
    let wkn = g.add_const("w_kn", Tensor::from_vec(vec![K, N], w).unwrap());
    let t = g.add_const("t", Tensor::scalar(0.4f32));
    let call = egret_call("MatMulActSparse");
    outs.push(
        g.call("mm_act", call, &[Some(x), Some(wkn), Some(t)], 1)
            .unwrap()[0],
    );
    g.outputs = outs;
    let x = Tensor::from_vec(vec![2, 3, K], values(6 * K, 3)).unwrap();
    let m = Model {
        graph: g,
        ..Default::default()
    };
    (m, vec![Value::Tensor(x)])
}

#[test]
fn sparse_ops_export_to_onnx_and_match() {
    let (model, inputs) = model();
    let proto = onnx_export::export(&model).unwrap();
    let g = proto.graph.as_ref().unwrap();
    let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!(count("MatMul"), 3);
    assert_eq!((count("Abs"), count("Greater"), count("Where")), (1, 1, 1));
    assert!(g.node.iter().all(|n| n.domain != "egret"));
    // The sparse arrays are not written: only the dense [K, N] weights.
    assert!(g.initializer.iter().all(|t| !t.name.starts_with("s0_")));

    let want = egret_runtime::Interpreter::for_model(&model)
        .and_then(|it| it.run(inputs.clone()))
        .unwrap();
    let bytes = proto.encode_to_vec();
    let back = egret_frontends::onnx::load_bytes(&bytes, None).unwrap();
    let got = egret_runtime::Interpreter::for_model(&back)
        .and_then(|it| it.run(inputs.clone()))
        .unwrap();
    close(&got, &want).unwrap();

    let Some(py) = python() else { return };
    let dir = std::env::temp_dir().join(format!("egret-xs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let case = OrtCase::new(&dir, &bytes, &inputs).unwrap();
    run_ort(&py, &dir, &[&case]);
    close(&case.outputs(want.len()).unwrap(), &want).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
