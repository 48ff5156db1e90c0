//! Values: tensors, and the ONNX sequence and optional wrappers around them.
//!
//! This is data vocabulary shared by frontends (test-data readers), the runtime
//! and backends, so it lives in the IR crate.

use crate::error::IrError;
use crate::tensor::Tensor;

/// A value flowing through the interpreter.
#[derive(Clone, Debug)]
pub enum Value {
    /// A tensor.
    Tensor(Tensor),
    /// A sequence of tensors.
    Sequence(Vec<Tensor>),
    /// An optional value; `None` is the empty optional.
    Optional(Option<Box<Value>>),
}

impl Value {
    /// The tensor inside, or an error naming what was found instead.
    pub fn as_tensor(&self) -> Result<&Tensor, IrError> {
        match self {
            Value::Tensor(t) => Ok(t),
            Value::Sequence(_) => Err(IrError::DTypeMismatch(
                "expected a tensor, found a sequence".into(),
            )),
            Value::Optional(_) => Err(IrError::DTypeMismatch(
                "expected a tensor, found an optional".into(),
            )),
        }
    }

    /// Consume into the tensor inside.
    pub fn into_tensor(self) -> Result<Tensor, IrError> {
        match self {
            Value::Tensor(t) => Ok(t),
            _ => Err(IrError::DTypeMismatch("expected a tensor value".into())),
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Value {
        Value::Tensor(t)
    }
}
