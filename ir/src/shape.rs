//! Shapes with symbolic dimensions, and the static type of a graph value.

use crate::dtype::DType;
use std::fmt;

/// One dimension: a known size or a named symbol (`batch`, `seq`, `unk_3`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A concrete size.
    Known(usize),
    /// A symbolic size; equal names denote equal sizes within one graph.
    Sym(String),
}

impl Dim {
    /// The concrete size, if known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// A tensor shape whose dims may be symbolic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A fully known shape.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// All dims as concrete sizes, if every dim is known.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }

    /// The dims.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The static type of a tensor value: dtype, and a shape unless the rank is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape, or `None` when even the rank is unknown.
    pub shape: Option<Shape>,
}

impl TensorType {
    /// A tensor type with a fully known shape.
    pub fn known(dtype: DType, dims: &[usize]) -> TensorType {
        TensorType {
            dtype,
            shape: Some(Shape::known(dims)),
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shape {
            Some(s) => write!(f, "{}{}", self.dtype, s),
            None => write!(f, "{}[?]", self.dtype),
        }
    }
}

/// The static type of any graph value. ONNX sequences and optionals are kept so
/// control-flow and sequence ops round-trip; almost every value is a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// A tensor.
    Tensor(TensorType),
    /// A sequence of tensors of one element type.
    Sequence(TensorType),
    /// An optional holding a value of the inner type.
    Optional(Box<ValueType>),
}

impl ValueType {
    /// The tensor type, if this is a tensor.
    pub fn as_tensor(&self) -> Option<&TensorType> {
        match self {
            ValueType::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// Shorthand for a tensor type.
    pub fn tensor(dtype: DType, shape: Option<Shape>) -> ValueType {
        ValueType::Tensor(TensorType { dtype, shape })
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Tensor(t) => write!(f, "{t}"),
            ValueType::Sequence(t) => write!(f, "seq<{t}>"),
            ValueType::Optional(t) => write!(f, "opt<{t}>"),
        }
    }
}
