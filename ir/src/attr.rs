//! Node attributes.
//!
//! Attributes are kept in a `BTreeMap` so every traversal (printing, hashing,
//! e-graph keys) is deterministic. Typed getters turn a missing or ill-typed
//! attribute into an [`IrError::Attr`] naming it.

use crate::error::IrError;
use crate::graph::Graph;
use crate::shape::ValueType;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One attribute value.
#[derive(Clone, Debug)]
pub enum Attr {
    /// A 64-bit integer.
    Int(i64),
    /// A 32-bit float.
    Float(f32),
    /// A string (ONNX bytes, decoded as UTF-8 lossily).
    String(String),
    /// A tensor.
    Tensor(Tensor),
    /// A subgraph (body of `If`, `Loop`, `Scan`).
    Graph(Arc<Graph>),
    /// A type (e.g. `Optional`'s `type`).
    Type(ValueType),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A list of strings.
    Strings(Vec<String>),
    /// A list of tensors.
    Tensors(Vec<Tensor>),
    /// A list of subgraphs.
    Graphs(Vec<Arc<Graph>>),
}

impl Attr {
    /// Short kind name used in error messages and the text form.
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Int(_) => "int",
            Attr::Float(_) => "float",
            Attr::String(_) => "string",
            Attr::Tensor(_) => "tensor",
            Attr::Graph(_) => "graph",
            Attr::Type(_) => "type",
            Attr::Ints(_) => "ints",
            Attr::Floats(_) => "floats",
            Attr::Strings(_) => "strings",
            Attr::Tensors(_) => "tensors",
            Attr::Graphs(_) => "graphs",
        }
    }
}

/// The attributes of one node, sorted by name.
#[derive(Clone, Debug, Default)]
pub struct Attrs(pub BTreeMap<String, Attr>);

fn wrong(name: &str, want: &str, got: &Attr) -> IrError {
    IrError::Attr {
        name: name.into(),
        msg: format!("expected {want}, found {}", got.kind()),
    }
}

fn missing(name: &str) -> IrError {
    IrError::Attr {
        name: name.into(),
        msg: "required but missing".into(),
    }
}

impl Attrs {
    /// The raw attribute, if present.
    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.0.get(name)
    }

    /// True if the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Set (or replace) an attribute.
    pub fn set(&mut self, name: &str, value: Attr) {
        self.0.insert(name.to_string(), value);
    }

    /// Remove an attribute, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Attr> {
        self.0.remove(name)
    }

    /// An optional int attribute.
    pub fn int_opt(&self, name: &str) -> Result<Option<i64>, IrError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(a) => Err(wrong(name, "int", a)),
        }
    }

    /// An int attribute with a default.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, IrError> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }

    /// A required int attribute.
    pub fn int(&self, name: &str) -> Result<i64, IrError> {
        self.int_opt(name)?.ok_or_else(|| missing(name))
    }

    /// An optional float attribute (ints are accepted and converted).
    pub fn float_opt(&self, name: &str) -> Result<Option<f32>, IrError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(*v)),
            Some(Attr::Int(v)) => Ok(Some(*v as f32)),
            Some(a) => Err(wrong(name, "float", a)),
        }
    }

    /// A float attribute with a default.
    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, IrError> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }

    /// An optional string attribute.
    pub fn string_opt(&self, name: &str) -> Result<Option<&str>, IrError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::String(v)) => Ok(Some(v)),
            Some(a) => Err(wrong(name, "string", a)),
        }
    }

    /// A string attribute with a default.
    pub fn string_or<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str, IrError> {
        Ok(self.string_opt(name)?.unwrap_or(default))
    }

    /// An optional list-of-ints attribute.
    pub fn ints_opt(&self, name: &str) -> Result<Option<&[i64]>, IrError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(a) => Err(wrong(name, "ints", a)),
        }
    }

    /// An optional list-of-floats attribute.
    pub fn floats_opt(&self, name: &str) -> Result<Option<&[f32]>, IrError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v)),
            Some(a) => Err(wrong(name, "floats", a)),
        }
    }

    /// An optional list-of-strings attribute.
    pub fn strings_opt(&self, name: &str) -> Result<Option<&[String]>, IrError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Strings(v)) => Ok(Some(v)),
            Some(a) => Err(wrong(name, "strings", a)),
        }
    }

    /// An optional tensor attribute.
    pub fn tensor_opt(&self, name: &str) -> Result<Option<&Tensor>, IrError> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(v)) => Ok(Some(v)),
            Some(a) => Err(wrong(name, "tensor", a)),
        }
    }

    /// A required subgraph attribute.
    pub fn graph(&self, name: &str) -> Result<&Arc<Graph>, IrError> {
        match self.get(name) {
            None => Err(missing(name)),
            Some(Attr::Graph(g)) => Ok(g),
            Some(a) => Err(wrong(name, "graph", a)),
        }
    }

    /// Iterate over `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Attr)> {
        self.0.iter()
    }
}
