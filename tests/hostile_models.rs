//! Hostile ONNX files: every malformed model must fail to load with a typed
//! error whose message names the problem (and the file, node, op or tensor it
//! is about) -- never a panic, never an allocation sized by a declared shape.
//!
//! Each case builds its model here with the prost types, writes it into a
//! scratch folder and calls [`egret_frontends::load`]. The last case runs the
//! `egret` binary on a bad file.

use egret_frontends::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_proto::DataType,
    tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, SparseTensorProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use egret_frontends::onnx::{Message, OnnxError};
use egret_frontends::LoadError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("egret-hostile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Scratch(d)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Write `bytes` to `file` in the folder and return its path.
    fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, bytes).expect("write scratch file");
        p
    }

    fn model(&self, m: &ModelProto) -> PathBuf {
        self.write("model.onnx", &m.encode_to_vec())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tensor_type(elem: DataType, dims: &[i64]) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: elem as i32,
            shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&d| Dimension {
                        value: Some(dimension::Value::DimValue(d)),
                        ..Default::default()
                    })
                    .collect(),
            }),
        })),
        ..Default::default()
    }
}

fn vi(name: &str, ty: TypeProto) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(ty),
        ..Default::default()
    }
}

fn f32_vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    vi(name, tensor_type(DataType::Float, dims))
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn with_attr(mut n: NodeProto, a: AttributeProto) -> NodeProto {
    n.attribute.push(a);
    n
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: kind as i32,
        ..Default::default()
    }
}

fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        g: Some(g),
        ..attr(name, AttributeType::Graph)
    }
}

fn tensor(name: &str, dt: DataType, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: dt as i32,
        dims: dims.to_vec(),
        raw_data: raw,
        ..Default::default()
    }
}

fn graph(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> GraphProto {
    GraphProto {
        name: "g".into(),
        node: nodes,
        input: inputs,
        output: outputs,
        ..Default::default()
    }
}

fn model(g: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 21,
        }],
        graph: Some(g),
        ..Default::default()
    }
}

/// y = Relu(x) plus the given initializers (unused by the node).
fn relu_model(inits: Vec<TensorProto>) -> ModelProto {
    let mut g = graph(
        vec![node("relu", "Relu", &["x"], &["y"])],
        vec![f32_vi("x", &[2])],
        vec![f32_vi("y", &[2])],
    );
    g.initializer = inits;
    model(g)
}

/// An initializer whose data lives in an external file.
fn external(name: &str, dims: &[i64], kv: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        data_location: DataLocation::External as i32,
        external_data: kv
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..tensor(name, DataType::Float, dims, vec![])
    }
}

/// Load `path`, which must fail without panicking; the error is returned.
fn load_err(path: &Path) -> LoadError {
    match catch_unwind(AssertUnwindSafe(|| egret_frontends::load(path))) {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("loading {} panicked: {msg}", path.display())
        }
        Ok(Ok(_)) => panic!("{} loaded, but it is malformed", path.display()),
        Ok(Err(e)) => e,
    }
}

/// [`load_err`], checking that the message contains every needle and names the file.
fn fails_with(path: &Path, needles: &[&str]) -> OnnxError {
    let err = load_err(path);
    let msg = err.to_string();
    let file = path.file_name().unwrap().to_string_lossy();
    assert!(msg.contains(&*file), "error does not name the file: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error lacks `{n}`: {msg}");
    }
    match err {
        LoadError::Onnx(e) => (*e).into_root(),
        other => panic!("not an ONNX error: {other}"),
    }
}

#[test]
fn truncated_file() {
    let dir = Scratch::new("truncated");
    let w = tensor("w", DataType::Float, &[256], vec![0; 1024]);
    let bytes = relu_model(vec![w]).encode_to_vec();
    let p = dir.write("model.onnx", &bytes[..bytes.len() / 2]);
    let e = fails_with(&p, &["not a valid ONNX protobuf"]);
    assert!(matches!(e, OnnxError::Decode { .. }), "{e:?}");
}

#[test]
fn garbage_bytes() {
    let dir = Scratch::new("garbage");
    let p = dir.write("model.onnx", &[0xff; 64]);
    let e = fails_with(&p, &["not a valid ONNX protobuf"]);
    assert!(matches!(e, OnnxError::Decode { .. }), "{e:?}");
}

#[test]
fn empty_file_has_no_graph() {
    let dir = Scratch::new("empty");
    let p = dir.write("model.onnx", &[]);
    let e = fails_with(&p, &["has no graph"]);
    assert!(matches!(e, OnnxError::Invalid(_)), "{e:?}");
}

#[test]
fn external_data_parent_traversal() {
    let dir = Scratch::new("dotdot");
    let w = external("w", &[2], &[("location", "../../etc/passwd")]);
    let e = fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "../../etc/passwd", "forbidden component `..`"],
    );
    assert!(matches!(e, OnnxError::ExternalData { .. }), "{e:?}");
}

#[test]
fn external_data_absolute_path() {
    let dir = Scratch::new("absolute");
    let w = external("w", &[2], &[("location", "/etc/passwd")]);
    let e = fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "`/etc/passwd` is not a relative path"],
    );
    assert!(matches!(e, OnnxError::ExternalData { .. }), "{e:?}");
}

#[cfg(unix)]
#[test]
fn external_data_symlink_escaping_the_folder() {
    let outside = Scratch::new("symlink-outside");
    let target = outside.write("secret.bin", &[0; 8]);
    let dir = Scratch::new("symlink");
    std::os::unix::fs::symlink(&target, dir.path("w.bin")).expect("symlink");
    let w = external("w", &[2], &[("location", "w.bin")]);
    let e = fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "resolves outside the model folder"],
    );
    assert!(matches!(e, OnnxError::ExternalData { .. }), "{e:?}");
}

#[test]
fn external_data_offset_and_length_beyond_the_file() {
    let dir = Scratch::new("beyond");
    dir.write("w.bin", &[0; 16]);
    let far = (1u64 << 40).to_string();
    let w = external("w", &[2], &[("location", "w.bin"), ("offset", &far)]);
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &[
            "tensor `w`",
            "offset 1099511627776 is beyond the end of `w.bin` (16 bytes)",
        ],
    );
    let huge = (1u64 << 62).to_string();
    let w = external(
        "w",
        &[2],
        &[("location", "w.bin"), ("offset", "8"), ("length", &huge)],
    );
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["range 8+4611686018427387904 is beyond the end of `w.bin`"],
    );
    let w = external("w", &[2], &[("location", "w.bin"), ("offset", "-1")]);
    fails_with(&dir.model(&relu_model(vec![w])), &["bad offset `-1`"]);
}

#[test]
fn external_data_without_location() {
    let dir = Scratch::new("nolocation");
    let w = external("w", &[2], &[("offset", "0")]);
    let e = fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "no `location` key"],
    );
    assert!(matches!(e, OnnxError::ExternalData { .. }), "{e:?}");
}

#[test]
fn external_data_declaring_a_huge_tensor() {
    // 2^50 elements "stored" in a 16-byte file: rejected by size, nothing allocated.
    let dir = Scratch::new("external-huge");
    dir.write("w.bin", &[0; 16]);
    let w = external("w", &[1 << 25, 1 << 25], &[("location", "w.bin")]);
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &[
            "tensor `w`",
            "16 bytes in `w.bin`",
            "needs 4503599627370496",
        ],
    );
}

#[test]
fn initializer_declaring_2_pow_50_elements() {
    let dir = Scratch::new("huge");
    let w = tensor("w", DataType::Float, &[1 << 25, 1 << 25], vec![0; 16]);
    let e = fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "16 data bytes", "needs 4503599627370496"],
    );
    assert!(matches!(e, OnnxError::Tensor { .. }), "{e:?}");
}

#[test]
fn negative_dims() {
    let dir = Scratch::new("negative");
    let w = tensor("w", DataType::Float, &[2, -3], vec![]);
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "negative dimension -3 in [2, -3]"],
    );
}

#[test]
fn dims_product_overflows() {
    let dir = Scratch::new("overflow");
    let w = tensor("w", DataType::Float, &[i64::MAX, 4], vec![]);
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "overflow"],
    );
    let w = tensor("w", DataType::Int8, &[1 << 32, 1 << 32, 1 << 32], vec![]);
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "overflow"],
    );
}

#[test]
fn initializer_size_does_not_match_shape() {
    let dir = Scratch::new("size");
    let w = tensor("w", DataType::Float, &[2, 3], vec![0; 20]);
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "20 data bytes, shape [2, 3] of f32 needs 24"],
    );
    let w = TensorProto {
        float_data: vec![1.0; 5],
        ..tensor("w", DataType::Float, &[2, 3], vec![])
    };
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "float_data holds 5 values", "needs 6"],
    );
}

#[test]
fn raw_data_for_a_string_tensor() {
    let dir = Scratch::new("string-raw");
    let w = tensor("w", DataType::String, &[2], b"ab".to_vec());
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "string tensors cannot use raw_data"],
    );
}

#[test]
fn unknown_element_type() {
    let dir = Scratch::new("dtype");
    let w = TensorProto {
        data_type: 99,
        ..tensor("w", DataType::Float, &[1], vec![0; 4])
    };
    fails_with(
        &dir.model(&relu_model(vec![w])),
        &["tensor `w`", "data type code 99 is not supported"],
    );
}

#[test]
fn sparse_initializer_index_out_of_range() {
    let dir = Scratch::new("sparse");
    let mut m = relu_model(vec![]);
    let g = m.graph.as_mut().unwrap();
    g.sparse_initializer.push(SparseTensorProto {
        values: Some(TensorProto {
            int64_data: vec![5],
            ..tensor("s", DataType::Int64, &[1], vec![])
        }),
        indices: Some(TensorProto {
            int64_data: vec![1000],
            ..tensor("", DataType::Int64, &[1], vec![])
        }),
        dims: vec![4],
    });
    fails_with(
        &dir.model(&m),
        &[
            "tensor `s`",
            "sparse indices do not fit 1 values in shape [4]",
        ],
    );
}

#[test]
fn graph_cycle() {
    let dir = Scratch::new("cycle");
    let g = graph(
        vec![
            node("first", "Relu", &["b"], &["a"]),
            node("second", "Neg", &["a"], &["b"]),
        ],
        vec![],
        vec![f32_vi("b", &[2])],
    );
    let e = fails_with(
        &dir.model(&model(g)),
        &["has a cycle through node `first` (Relu)"],
    );
    assert!(matches!(e, OnnxError::Cycle { .. }), "{e:?}");
}

#[test]
fn undefined_input_name() {
    let dir = Scratch::new("undefined");
    let g = graph(
        vec![node("adder", "Add", &["x", "nowhere"], &["y"])],
        vec![f32_vi("x", &[2])],
        vec![f32_vi("y", &[2])],
    );
    let e = fails_with(
        &dir.model(&model(g)),
        &["node `adder` (Add): input `nowhere` is not defined"],
    );
    assert!(matches!(e, OnnxError::UndefinedInput { .. }), "{e:?}");
}

#[test]
fn undefined_graph_output() {
    let dir = Scratch::new("undefined-output");
    let g = graph(
        vec![node("relu", "Relu", &["x"], &["y"])],
        vec![f32_vi("x", &[2])],
        vec![f32_vi("ghost", &[2])],
    );
    fails_with(&dir.model(&model(g)), &["input `ghost` is not defined"]);
}

#[test]
fn duplicate_output_names() {
    let dir = Scratch::new("duplicate");
    let g = graph(
        vec![
            node("one", "Relu", &["x"], &["y"]),
            node("two", "Neg", &["x"], &["y"]),
        ],
        vec![f32_vi("x", &[2])],
        vec![f32_vi("y", &[2])],
    );
    let e = fails_with(
        &dir.model(&model(g)),
        &["value `y` is defined more than once (second time by `two`)"],
    );
    assert!(matches!(e, OnnxError::DuplicateName { .. }), "{e:?}");
}

#[test]
fn unknown_domain_lists_every_unsupported_op() {
    let dir = Scratch::new("domain");
    let evil = |name: &str, op: &str, i: &str, o: &str| NodeProto {
        domain: "com.evil".into(),
        ..node(name, op, &[i], &[o])
    };
    let mut m = model(graph(
        vec![
            evil("a", "Frobnicate", "x", "t1"),
            node("b", "NotAnOp", &["t1"], &["t2"]),
            evil("c", "Bake", "t2", "y"),
        ],
        vec![f32_vi("x", &[2])],
        vec![f32_vi("y", &[2])],
    ));
    m.opset_import.push(OperatorSetIdProto {
        domain: "com.evil".into(),
        version: 3,
    });
    let e = fails_with(
        &dir.model(&m),
        &["unsupported ops: NotAnOp-21, com.evil::Bake-3, com.evil::Frobnicate-3"],
    );
    let OnnxError::Unsupported(list) = e else {
        panic!("{e:?}")
    };
    assert_eq!(list.len(), 3);
}

#[test]
fn missing_opset_import() {
    let dir = Scratch::new("opset");
    let mut m = relu_model(vec![]);
    m.opset_import.clear();
    fails_with(
        &dir.model(&m),
        &[
            "node `relu` (Relu)",
            "imports no opset for the standard domain",
        ],
    );
}

#[test]
fn empty_op_type() {
    let dir = Scratch::new("empty-op");
    let g = graph(
        vec![node("blank", "", &["x"], &["y"])],
        vec![f32_vi("x", &[2])],
        vec![f32_vi("y", &[2])],
    );
    fails_with(&dir.model(&model(g)), &["node `blank` ()", "empty op_type"]);
}

/// A graph computing `out` = a constant, nesting `depth` more levels of If inside
/// (in the `then` branches; the `else` branches are flat).
fn nested_if(depth: usize, out: &str) -> GraphProto {
    let cond = with_attr(
        node(
            &format!("cond{depth}"),
            "Constant",
            &[],
            &[&format!("c{depth}")],
        ),
        AttributeProto {
            t: Some(tensor("", DataType::Bool, &[], vec![1])),
            ..attr("value", AttributeType::Tensor)
        },
    );
    let body = if depth == 0 {
        with_attr(
            node("leaf", "Constant", &[], &[out]),
            AttributeProto {
                f: 1.0,
                ..attr("value_float", AttributeType::Float)
            },
        )
    } else {
        let inner = format!("v{depth}");
        let n = node(&format!("if{depth}"), "If", &[&format!("c{depth}")], &[out]);
        let n = with_attr(n, graph_attr("then_branch", nested_if(depth - 1, &inner)));
        with_attr(n, graph_attr("else_branch", nested_if(0, &inner)))
    };
    graph(vec![cond, body], vec![], vec![f32_vi(out, &[])])
}

#[test]
fn deeply_nested_subgraphs() {
    let dir = Scratch::new("deep");
    // 16 levels are accepted ...
    let ok = dir.model(&model(nested_if(16, "y")));
    let loaded = egret_frontends::load(&ok).expect("16 nested levels load");
    assert_eq!(loaded.model.graph.outputs.len(), 1);
    // ... 20 are not ...
    let e = fails_with(
        &dir.model(&model(nested_if(20, "y"))),
        &["subgraphs nested deeper than 16 levels (node `if4`)"],
    );
    assert!(matches!(e, OnnxError::TooDeep { .. }), "{e:?}");
    // ... and 200 stop the protobuf decoder before any graph is built.
    let e = fails_with(
        &dir.model(&model(nested_if(200, "y"))),
        &["not a valid ONNX protobuf", "recursion limit reached"],
    );
    assert!(matches!(e, OnnxError::Decode { .. }), "{e:?}");
}

#[test]
fn if_without_branches() {
    let dir = Scratch::new("if");
    let g = graph(
        vec![node("choose", "If", &["c"], &["y"])],
        vec![vi("c", tensor_type(DataType::Bool, &[]))],
        vec![f32_vi("y", &[2])],
    );
    fails_with(
        &dir.model(&model(g)),
        &[
            "node `choose` (If)",
            "required graph attribute `then_branch` is missing",
        ],
    );
}

#[test]
fn attribute_of_the_wrong_kind() {
    let dir = Scratch::new("attr");
    let perm = AttributeProto {
        f: 1.0,
        ..attr("perm", AttributeType::Float)
    };
    let g = graph(
        vec![with_attr(node("tr", "Transpose", &["x"], &["y"]), perm)],
        vec![f32_vi("x", &[2, 3])],
        vec![f32_vi("y", &[3, 2])],
    );
    fails_with(&dir.model(&model(g)), &["node `tr` (Transpose)", "perm"]);
}

#[test]
fn attribute_tensor_with_bad_data_names_the_node() {
    let dir = Scratch::new("attr-tensor");
    let value = AttributeProto {
        t: Some(tensor("", DataType::Float, &[4], vec![0; 3])),
        ..attr("value", AttributeType::Tensor)
    };
    let g = graph(
        vec![with_attr(node("k", "Constant", &[], &["y"]), value)],
        vec![],
        vec![f32_vi("y", &[4])],
    );
    fails_with(
        &dir.model(&model(g)),
        &["node `k` (Constant)", "attribute `value`", "3 data bytes"],
    );
}

#[test]
fn constant_without_a_value() {
    let dir = Scratch::new("constant");
    let g = graph(
        vec![node("k", "Constant", &[], &["y"])],
        vec![],
        vec![f32_vi("y", &[])],
    );
    fails_with(
        &dir.model(&model(g)),
        &[
            "node `k` (Constant)",
            "Constant needs exactly one value attribute",
        ],
    );
}

#[test]
fn unsupported_input_type_names_the_input() {
    let dir = Scratch::new("map");
    let map = TypeProto {
        value: Some(type_proto::Value::MapType(Box::new(type_proto::Map {
            key_type: DataType::Int64 as i32,
            value_type: Some(Box::new(tensor_type(DataType::Float, &[]))),
        }))),
        ..Default::default()
    };
    let g = graph(
        vec![node("relu", "Relu", &["x"], &["y"])],
        vec![vi("x", map)],
        vec![f32_vi("y", &[2])],
    );
    fails_with(
        &dir.model(&model(g)),
        &["input `x` of graph `g`", "map types are not supported"],
    );
}

#[test]
fn huge_declared_shapes_do_not_allocate_or_overflow() {
    // Types alone may be huge: loading only does shape arithmetic, checked.
    let dir = Scratch::new("huge-types");
    let shape = tensor("shape", DataType::Int64, &[3], {
        [1i64 << 40, 1 << 40, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    });
    let minus_one = tensor("m1", DataType::Int64, &[1], (-1i64).to_le_bytes().to_vec());
    let mut g = graph(
        vec![
            node("fill", "ConstantOfShape", &["shape"], &["big"]),
            node("flat", "Reshape", &["big", "m1"], &["y"]),
        ],
        vec![],
        vec![f32_vi("y", &[])],
    );
    g.initializer = vec![shape, minus_one];
    let p = dir.model(&model(g));
    let r = catch_unwind(AssertUnwindSafe(|| egret_frontends::load(&p)));
    let r = r.unwrap_or_else(|_| panic!("loading a model with 2^120-element types panicked"));
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(msg.contains("model.onnx") && msg.contains("flat"), "{msg}");
    }
}

#[test]
fn cli_inspect_reports_a_bad_model() {
    let dir = Scratch::new("cli");
    let p = dir.model(&relu_model(vec![tensor(
        "w",
        DataType::Float,
        &[2, -3],
        vec![],
    )]));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["inspect", p.to_str().unwrap()])
        .output()
        .expect("spawn egret");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("model.onnx") && err.contains("negative dimension -3"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let garbage = dir.write("garbage.onnx", b"\x08\x96\x01\x3a\xff\xff\xff\xff\x0f");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_egret"))
        .args(["inspect", garbage.to_str().unwrap()])
        .output()
        .expect("spawn egret");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not a valid ONNX protobuf"), "{err}");
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: v,
        ..attr(name, AttributeType::Int)
    }
}

fn i64_init(name: &str, v: &[i64]) -> TensorProto {
    let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    tensor(name, DataType::Int64, &[v.len() as i64], raw)
}

/// One node `op` reading graph input `x` (f32[1,1,4,4]) and int64 initializers.
fn one_op(
    op: &str,
    inputs: &[&str],
    inits: Vec<TensorProto>,
    attrs: Vec<AttributeProto>,
) -> ModelProto {
    let mut n = node("victim", op, inputs, &["y"]);
    n.attribute = attrs;
    let mut g = graph(vec![n], vec![f32_vi("x", &[1, 1, 4, 4])], vec![]);
    g.output.push(ValueInfoProto {
        name: "y".into(),
        ..Default::default()
    });
    g.initializer = inits;
    model(g)
}

/// Run `model` with the values of `feeds` (raw int64 or f32 tensors) for the
/// inputs they name and a tensor of ones of its declared shape for the others.
fn run_with(model: &egret_ir::Model, feeds: &[TensorProto]) -> Result<(), String> {
    let g = &model.graph;
    let inputs = g
        .inputs
        .iter()
        .map(|&o| {
            if let Some(t) = feeds.iter().find(|t| t.name == g.value_name(o)) {
                let dims = t.dims.iter().map(|&d| d as usize).collect();
                let dt = if t.data_type == DataType::Int64 as i32 {
                    egret_ir::DType::I64
                } else {
                    egret_ir::DType::F32
                };
                return egret_ir::Tensor::from_bytes(dt, dims, &t.raw_data)
                    .map(egret_ir::Value::Tensor)
                    .map_err(|e| e.to_string());
            }
            let ty = g.value_type(o).as_tensor().ok_or("non-tensor input")?;
            let dims: Vec<usize> = ty
                .shape
                .as_ref()
                .ok_or("unknown input shape")?
                .dims()
                .iter()
                .map(|d| d.known().ok_or("symbolic input dim"))
                .collect::<Result<_, _>>()?;
            let n = dims.iter().product();
            egret_ir::Tensor::from_vec(dims, vec![1f32; n])
                .map(egret_ir::Value::Tensor)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let interp = egret_runtime::Interpreter::for_model(model).map_err(|e| e.to_string())?;
    interp.run(inputs).map(|_| ()).map_err(|e| e.to_string())
}

/// Malformed attribute or constant values: inference rejects them at load
/// time (an error naming the node), or, where it cannot, running the model is a
/// clean error naming the node. Never a panic, never a huge allocation.
/// One-node models whose attributes or constant inputs are malformed: each
/// must be a clean error naming the node (`victim`).
fn extreme_cases() -> Vec<(&'static str, ModelProto)> {
    let big = i64::MAX;
    let min = i64::MIN;
    vec![
        (
            "perm out of range",
            one_op(
                "Transpose",
                &["x"],
                vec![],
                vec![ints_attr("perm", &[0, 1, 2, 99])],
            ),
        ),
        (
            "gather axis",
            one_op(
                "Gather",
                &["x", "i"],
                vec![i64_init("i", &[0])],
                vec![int_attr("axis", 9)],
            ),
        ),
        (
            "conv pads overflow",
            one_op(
                "Conv",
                &["x", "w"],
                vec![tensor("w", DataType::Float, &[1, 1, 3, 3], vec![0; 36])],
                vec![ints_attr("pads", &[big, 0, big, 0])],
            ),
        ),
        (
            "pool stride zero",
            one_op(
                "MaxPool",
                &["x"],
                vec![],
                vec![
                    ints_attr("kernel_shape", &[2, 2]),
                    ints_attr("strides", &[0, 0]),
                ],
            ),
        ),
        (
            "pool kernel huge",
            one_op(
                "AveragePool",
                &["x"],
                vec![],
                vec![ints_attr("kernel_shape", &[big, big])],
            ),
        ),
        (
            "slice step min",
            one_op(
                "Slice",
                &["x", "s", "e", "a", "st"],
                vec![
                    i64_init("s", &[min]),
                    i64_init("e", &[big]),
                    i64_init("a", &[2]),
                    i64_init("st", &[min]),
                ],
                vec![],
            ),
        ),
        (
            "slice step zero",
            one_op(
                "Slice",
                &["x", "s", "e", "a", "st"],
                vec![
                    i64_init("s", &[0]),
                    i64_init("e", &[4]),
                    i64_init("a", &[2]),
                    i64_init("st", &[0]),
                ],
                vec![],
            ),
        ),
        (
            "squeeze axis min",
            one_op("Squeeze", &["x", "a"], vec![i64_init("a", &[min])], vec![]),
        ),
        (
            "unsqueeze axis huge",
            one_op(
                "Unsqueeze",
                &["x", "a"],
                vec![i64_init("a", &[big])],
                vec![],
            ),
        ),
        (
            "split negative",
            one_op(
                "Split",
                &["x", "s"],
                vec![i64_init("s", &[-5, 9])],
                vec![int_attr("axis", 2)],
            ),
        ),
        (
            "concat axis min",
            one_op("Concat", &["x", "x"], vec![], vec![int_attr("axis", min)]),
        ),
        (
            "flatten axis min",
            one_op("Flatten", &["x"], vec![], vec![int_attr("axis", min)]),
        ),
        (
            "reshape two minus ones",
            one_op(
                "Reshape",
                &["x", "s"],
                vec![i64_init("s", &[-1, -1])],
                vec![],
            ),
        ),
        (
            "reshape wrong count",
            one_op(
                "Reshape",
                &["x", "s"],
                vec![i64_init("s", &[big, 3])],
                vec![],
            ),
        ),
        (
            "expand negative",
            one_op("Expand", &["x", "s"], vec![i64_init("s", &[-3])], vec![]),
        ),
        (
            "tile repeats overflow",
            one_op(
                "Tile",
                &["x", "r"],
                vec![i64_init("r", &[big, big, big, big])],
                vec![],
            ),
        ),
        (
            "tile negative",
            one_op(
                "Tile",
                &["x", "r"],
                vec![i64_init("r", &[1, 1, -2, 1])],
                vec![],
            ),
        ),
        (
            "pad overflow",
            one_op(
                "Pad",
                &["x", "p"],
                vec![i64_init("p", &[0, 0, big, big, 0, 0, big, big])],
                vec![],
            ),
        ),
        (
            "pad negative beyond dim",
            one_op(
                "Pad",
                &["x", "p"],
                vec![i64_init("p", &[0, 0, -9, 0, 0, 0, 0, 0])],
                vec![],
            ),
        ),
        (
            "constant of negative shape",
            one_op(
                "ConstantOfShape",
                &["s"],
                vec![i64_init("s", &[-1])],
                vec![],
            ),
        ),
        (
            "range delta zero",
            one_op(
                "Range",
                &["a", "b", "c"],
                vec![
                    tensor("a", DataType::Int64, &[], 0i64.to_le_bytes().to_vec()),
                    tensor("b", DataType::Int64, &[], 10i64.to_le_bytes().to_vec()),
                    tensor("c", DataType::Int64, &[], 0i64.to_le_bytes().to_vec()),
                ],
                vec![],
            ),
        ),
        (
            "range huge",
            one_op(
                "Range",
                &["a", "b", "c"],
                vec![
                    tensor("a", DataType::Int64, &[], min.to_le_bytes().to_vec()),
                    tensor("b", DataType::Int64, &[], big.to_le_bytes().to_vec()),
                    tensor("c", DataType::Int64, &[], 1i64.to_le_bytes().to_vec()),
                ],
                vec![],
            ),
        ),
        (
            "topk k huge",
            one_op("TopK", &["x", "k"], vec![i64_init("k", &[big])], vec![]),
        ),
        (
            "onehot depth huge",
            one_op(
                "OneHot",
                &["i", "d", "v"],
                vec![
                    i64_init("i", &[0]),
                    i64_init("d", &[big]),
                    tensor("v", DataType::Float, &[2], vec![0; 8]),
                ],
                vec![],
            ),
        ),
        (
            "depth to space blocksize zero",
            one_op(
                "DepthToSpace",
                &["x"],
                vec![],
                vec![int_attr("blocksize", 0)],
            ),
        ),
        (
            "space to depth blocksize huge",
            one_op(
                "SpaceToDepth",
                &["x"],
                vec![],
                vec![int_attr("blocksize", big)],
            ),
        ),
        (
            "einsum malformed",
            one_op(
                "Einsum",
                &["x"],
                vec![],
                vec![AttributeProto {
                    s: b"ab..,->z".to_vec(),
                    ..attr("equation", AttributeType::String)
                }],
            ),
        ),
        (
            "resize scales huge",
            one_op(
                "Resize",
                &["x", "", "sc"],
                vec![tensor(
                    "sc",
                    DataType::Float,
                    &[4],
                    [1f32, 1.0, 1e30, 1e30]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                )],
                vec![],
            ),
        ),
        (
            "resize sizes negative",
            one_op(
                "Resize",
                &["x", "", "", "sz"],
                vec![i64_init("sz", &[1, 1, -4, 4])],
                vec![],
            ),
        ),
        (
            "split num_outputs huge",
            one_op("Split", &["x"], vec![], vec![int_attr("num_outputs", big)]),
        ),
        (
            "conv group huge",
            one_op(
                "Conv",
                &["x", "w"],
                vec![tensor("w", DataType::Float, &[1, 1, 3, 3], vec![0; 36])],
                vec![int_attr("group", big)],
            ),
        ),
        (
            "max unpool strides huge",
            one_op(
                "MaxUnpool",
                &["x", "i"],
                vec![tensor("i", DataType::Int64, &[1, 1, 4, 4], vec![0; 128])],
                vec![
                    ints_attr("kernel_shape", &[2, 2]),
                    ints_attr("strides", &[big, big]),
                ],
            ),
        ),
        (
            "center crop negative",
            one_op(
                "CenterCropPad",
                &["x", "s"],
                vec![i64_init("s", &[1, 1, -2, 4])],
                vec![],
            ),
        ),
        (
            "range nan delta",
            one_op(
                "Range",
                &["a", "b", "c"],
                vec![
                    tensor("a", DataType::Float, &[], 0f32.to_le_bytes().to_vec()),
                    tensor("b", DataType::Float, &[], 10f32.to_le_bytes().to_vec()),
                    tensor("c", DataType::Float, &[], f32::NAN.to_le_bytes().to_vec()),
                ],
                vec![],
            ),
        ),
        (
            "onehot depth zero",
            one_op(
                "OneHot",
                &["i", "d", "v"],
                vec![
                    i64_init("i", &[0]),
                    i64_init("d", &[0]),
                    tensor("v", DataType::Float, &[2], vec![0; 8]),
                ],
                vec![],
            ),
        ),
    ]
}

/// A case: its name, the model, and values fed to its int64/f32 graph inputs
/// (other inputs get ones).
type Case = (&'static str, ModelProto, Vec<TensorProto>);

/// Load every case and, if it loads, run it: the load (or, unless
/// `at_load`, the run) must fail cleanly, naming the node. Returns the cases
/// that did not.
fn check_extreme(dir: &Scratch, cases: Vec<Case>, at_load: bool) -> Vec<String> {
    let mut problems = vec![];
    for (what, m, feeds) in cases {
        let p = dir.write(
            &format!("{}.onnx", what.replace(' ', "_")),
            &m.encode_to_vec(),
        );
        match catch_unwind(AssertUnwindSafe(|| egret_frontends::load(&p))) {
            Err(_) => problems.push(format!("{what}: loading panicked")),
            Ok(Ok(_)) if at_load => problems.push(format!("{what}: loaded")),
            Ok(Ok(l)) => {
                // Not caught by inference: running it must then be a clean error.
                match catch_unwind(AssertUnwindSafe(|| run_with(&l.model, &feeds))) {
                    Err(_) => problems.push(format!("{what}: running panicked")),
                    Ok(Ok(())) => problems.push(format!("{what}: ran")),
                    Ok(Err(msg)) if !msg.contains("node `victim`") => {
                        problems.push(format!("{what}: run error without node: {msg}"))
                    }
                    Ok(Err(_)) => {}
                }
            }
            Ok(Err(e)) => {
                let msg = e.to_string();
                if !msg.contains("node `victim`") {
                    problems.push(format!("{what}: load error without node: {msg}"));
                }
            }
        }
    }
    problems
}

#[test]
fn extreme_attribute_and_constant_values_are_errors() {
    let dir = Scratch::new("extreme");
    let cases = extreme_cases()
        .into_iter()
        .map(|(what, m)| (what, m, vec![]))
        .collect();
    // Every value is a constant here, so shape inference must catch it at load.
    let problems = check_extreme(&dir, cases, true);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn extreme_runtime_values_are_errors() {
    // The same values as graph inputs: inference cannot see them, so the
    // kernels must reject them (checked arithmetic, no huge allocation).
    let dir = Scratch::new("extreme-runtime");
    let cases = extreme_cases()
        .into_iter()
        .map(|(what, mut m)| {
            let g = m.graph.as_mut().expect("case has a graph");
            let feeds = std::mem::take(&mut g.initializer);
            for t in &feeds {
                let dt = DataType::try_from(t.data_type).expect("case dtype");
                g.input.push(vi(&t.name, tensor_type(dt, &t.dims)));
            }
            (what, m, feeds)
        })
        .collect();
    let problems = check_extreme(&dir, cases, false);
    assert!(problems.is_empty(), "{problems:#?}");
}
