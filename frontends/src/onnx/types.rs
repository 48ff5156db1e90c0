//! ONNX element types and type protos → egret [`DType`] / [`ValueType`].

use super::proto::{tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, TypeProto};
use super::OnnxError;
use egret_ir::{DType, Dim, Shape, TensorType, ValueType};

/// The egret dtype of an ONNX `TensorProto.DataType` code, `None` for types egret
/// does not represent (complex, undefined).
pub fn dtype_from_onnx(code: i32) -> Option<DType> {
    Some(match DataType::try_from(code).ok()? {
        DataType::Float => DType::F32,
        DataType::Uint8 => DType::U8,
        DataType::Int8 => DType::I8,
        DataType::Uint16 => DType::U16,
        DataType::Int16 => DType::I16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::String => DType::String,
        DataType::Bool => DType::Bool,
        DataType::Float16 => DType::F16,
        DataType::Double => DType::F64,
        DataType::Uint32 => DType::U32,
        DataType::Uint64 => DType::U64,
        DataType::Bfloat16 => DType::BF16,
        DataType::Float8e4m3fn => DType::F8E4M3FN,
        DataType::Float8e4m3fnuz => DType::F8E4M3FNUZ,
        DataType::Float8e5m2 => DType::F8E5M2,
        DataType::Float8e5m2fnuz => DType::F8E5M2FNUZ,
        DataType::Uint4 => DType::U4,
        DataType::Int4 => DType::I4,
        DataType::Float4e2m1 => DType::F4E2M1,
        DataType::Float8e8m0 => DType::F8E8M0,
        DataType::Uint2 => DType::U2,
        DataType::Int2 => DType::I2,
        DataType::Undefined | DataType::Complex64 | DataType::Complex128 => return None,
    })
}

/// The ONNX `TensorProto.DataType` code of an egret dtype (`None` for block formats).
pub fn dtype_to_onnx(d: DType) -> Option<i32> {
    let t = match d {
        DType::F32 => DataType::Float,
        DType::U8 => DataType::Uint8,
        DType::I8 => DataType::Int8,
        DType::U16 => DataType::Uint16,
        DType::I16 => DataType::Int16,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::String => DataType::String,
        DType::Bool => DataType::Bool,
        DType::F16 => DataType::Float16,
        DType::F64 => DataType::Double,
        DType::U32 => DataType::Uint32,
        DType::U64 => DataType::Uint64,
        DType::BF16 => DataType::Bfloat16,
        DType::F8E4M3FN => DataType::Float8e4m3fn,
        DType::F8E4M3FNUZ => DataType::Float8e4m3fnuz,
        DType::F8E5M2 => DataType::Float8e5m2,
        DType::F8E5M2FNUZ => DataType::Float8e5m2fnuz,
        DType::U4 => DataType::Uint4,
        DType::I4 => DataType::Int4,
        DType::F4E2M1 => DataType::Float4e2m1,
        DType::F8E8M0 => DataType::Float8e8m0,
        DType::U2 => DataType::Uint2,
        DType::I2 => DataType::Int2,
        DType::Block(_) => return None,
    };
    Some(t as i32)
}

/// A `DataType` code's name for messages (`FLOAT`, `COMPLEX64`, `code 99`).
pub fn onnx_type_name(code: i32) -> String {
    DataType::try_from(code)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("code {code}"))
}

/// Hands out fresh symbolic dim names for dims a model leaves unnamed.
#[derive(Debug, Default)]
pub struct SymGen(usize);

impl SymGen {
    /// The next fresh symbol, `unk__N`.
    pub fn fresh(&mut self) -> Dim {
        self.0 += 1;
        Dim::Sym(format!("unk__{}", self.0))
    }
}

/// The egret type of an ONNX type proto. `Ok(None)` when the proto leaves the
/// element type undefined (common for subgraph inputs, whose types the frontend
/// then takes from the enclosing node). Symbolic dims keep their `dim_param`;
/// dims with neither value nor param get fresh symbols.
pub fn value_type(tp: &TypeProto, syms: &mut SymGen) -> Result<Option<ValueType>, OnnxError> {
    use type_proto::Value as V;
    match &tp.value {
        None => Ok(None),
        Some(V::TensorType(t)) => Ok(tensor_type(t, syms)?.map(ValueType::Tensor)),
        Some(V::SequenceType(s)) => match s
            .elem_type
            .as_deref()
            .map(|e| value_type(e, syms))
            .transpose()?
        {
            Some(Some(ValueType::Tensor(t))) => Ok(Some(ValueType::Sequence(t))),
            None | Some(None) => Ok(None),
            Some(Some(other)) => Err(OnnxError::Invalid(format!(
                "sequences of {other} are not supported"
            ))),
        },
        Some(V::OptionalType(o)) => match o
            .elem_type
            .as_deref()
            .map(|e| value_type(e, syms))
            .transpose()?
        {
            Some(Some(inner @ (ValueType::Tensor(_) | ValueType::Sequence(_)))) => {
                Ok(Some(ValueType::Optional(Box::new(inner))))
            }
            None | Some(None) => Ok(None),
            Some(Some(other)) => Err(OnnxError::Invalid(format!(
                "optionals of {other} are not supported"
            ))),
        },
        Some(V::MapType(_)) => Err(OnnxError::Invalid("map types are not supported".into())),
        Some(V::SparseTensorType(_)) => Err(OnnxError::Invalid(
            "sparse tensor types are not supported".into(),
        )),
        Some(V::OpaqueType(_)) => Err(OnnxError::Invalid("opaque types are not supported".into())),
    }
}

fn tensor_type(t: &type_proto::Tensor, syms: &mut SymGen) -> Result<Option<TensorType>, OnnxError> {
    if t.elem_type == 0 {
        return Ok(None);
    }
    let dtype = dtype_from_onnx(t.elem_type).ok_or_else(|| {
        OnnxError::Invalid(format!(
            "element type {} is not supported",
            onnx_type_name(t.elem_type)
        ))
    })?;
    let shape = t.shape.as_ref().map(|s| {
        Shape(
            s.dim
                .iter()
                .map(|d| match &d.value {
                    // Some exporters write -1 for a dynamic dim: it is an unnamed one.
                    Some(dimension::Value::DimValue(v)) => usize::try_from(*v)
                        .map(Dim::Known)
                        .unwrap_or_else(|_| syms.fresh()),
                    Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                    _ => syms.fresh(),
                })
                .collect(),
        )
    });
    Ok(Some(TensorType { dtype, shape }))
}

/// The more specific of two types for the same value: per dim, a known size
/// beats a symbol and a named symbol beats a fresh one; a known rank beats an
/// unknown one. When the two disagree (different dtype, rank or sizes), the
/// inferred type wins.
pub fn more_specific(inferred: &ValueType, declared: &ValueType) -> ValueType {
    match (inferred, declared) {
        (ValueType::Tensor(a), ValueType::Tensor(b)) => ValueType::Tensor(merge_tensor(a, b)),
        (ValueType::Sequence(a), ValueType::Sequence(b)) => ValueType::Sequence(merge_tensor(a, b)),
        (ValueType::Optional(a), ValueType::Optional(b)) => {
            ValueType::Optional(Box::new(more_specific(a, b)))
        }
        _ => inferred.clone(),
    }
}

fn merge_tensor(a: &TensorType, b: &TensorType) -> TensorType {
    if a.dtype != b.dtype {
        return a.clone();
    }
    let shape = match (&a.shape, &b.shape) {
        (None, s) | (s, None) => s.clone(),
        (Some(x), Some(y)) if x.rank() == y.rank() => {
            let dims = x.0.iter().zip(&y.0).map(|(p, q)| pick_dim(p, q));
            match dims.collect::<Option<Vec<_>>>() {
                Some(d) => Some(Shape(d)),
                None => Some(x.clone()),
            }
        }
        (Some(x), Some(_)) => Some(x.clone()),
    };
    TensorType {
        dtype: a.dtype,
        shape,
    }
}

/// `None` on a conflict of two known sizes.
fn pick_dim(inferred: &Dim, declared: &Dim) -> Option<Dim> {
    let fresh = |d: &Dim| matches!(d, Dim::Sym(s) if s.starts_with("unk__"));
    match (inferred, declared) {
        (Dim::Known(x), Dim::Known(y)) if x != y => None,
        (Dim::Known(_), _) => Some(inferred.clone()),
        (Dim::Sym(_), Dim::Known(_)) => Some(declared.clone()),
        (Dim::Sym(_), Dim::Sym(_)) if fresh(inferred) && !fresh(declared) => Some(declared.clone()),
        _ => Some(inferred.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{tensor_shape_proto::Dimension, TensorShapeProto};

    fn dim(v: Option<dimension::Value>) -> Dimension {
        Dimension {
            denotation: String::new(),
            value: v,
        }
    }

    #[test]
    fn tensor_type_dims() {
        let tp = TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(Some(dimension::Value::DimParam("N".into()))),
                        dim(Some(dimension::Value::DimValue(3))),
                        dim(None),
                    ],
                }),
            })),
        };
        let mut syms = SymGen::default();
        let t = value_type(&tp, &mut syms).unwrap().unwrap();
        assert_eq!(t.to_string(), "f32[N,3,unk__1]");
    }

    #[test]
    fn merge_prefers_known_dims() {
        let a = ValueType::tensor(
            DType::F32,
            Some(Shape(vec![Dim::Sym("unk__1".into()), Dim::Known(2)])),
        );
        let b = ValueType::tensor(
            DType::F32,
            Some(Shape(vec![Dim::Known(4), Dim::Sym("x".into())])),
        );
        assert_eq!(more_specific(&a, &b).to_string(), "f32[4,2]");
        let none = ValueType::tensor(DType::F32, None);
        assert_eq!(more_specific(&none, &b).to_string(), "f32[4,x]");
    }

    #[test]
    fn dtype_codes_roundtrip() {
        for d in DType::DENSE {
            let code = dtype_to_onnx(d).unwrap();
            assert_eq!(dtype_from_onnx(code), Some(d));
        }
        assert_eq!(dtype_from_onnx(14), None);
        assert_eq!(dtype_from_onnx(1000), None);
    }
}
