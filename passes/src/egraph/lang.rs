//! The e-graph language: one generic operator node plus leaves.
//!
//! egret has hundreds of ONNX ops, so the language does not list them: an
//! [`ENode::Op`] carries an interned [`OpId`] (domain, op type, attributes and
//! output count) and its ordered children. Leaves are graph inputs and constants
//! *by id* into side tables kept by the [`crate::egraph::Analysis`], so a weight
//! is never copied into the e-graph. A multi-output op's e-class is a tuple and
//! each output is a [`ENode::Get`] projection of it. An absent optional input is
//! the [`ENode::Absent`] leaf, so children stay positional.
//!
//! Pattern syntax (what `egg::rewrite!` parses): an op atom is
//! `[domain::]Op{attr=value,...}[#outputs]` (see [`crate::egraph::op`]); `get.N`
//! projects output `N`; `_` is an absent input. `input.N` and `const.N` name
//! leaves by index and only make sense inside one e-graph.

use super::op::{parse_op, OpId};
use egg::{FromOp, Id, Language};
use std::fmt;

/// One e-node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ENode {
    /// An operator applied to its inputs (`Absent` where an optional input is missing).
    Op(OpId, Vec<Id>),
    /// Output `N` of a multi-output op's tuple class.
    Get(usize, [Id; 1]),
    /// Graph input number `N` (its name and type live in the analysis).
    Input(usize),
    /// Constant number `N` in the analysis' tensor table.
    Const(usize),
    /// An absent optional input.
    Absent,
}

/// What must agree for two e-nodes to match (everything but the children).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Discriminant {
    /// An op with this key and arity.
    Op(OpId, usize),
    /// A projection.
    Get(usize),
    /// An input leaf.
    Input(usize),
    /// A constant leaf.
    Const(usize),
    /// The absent leaf.
    Absent,
}

impl ENode {
    /// The op key, if this is an operator node.
    pub fn op(&self) -> Option<OpId> {
        match self {
            ENode::Op(o, _) => Some(*o),
            _ => None,
        }
    }
}

impl Language for ENode {
    type Discriminant = Discriminant;

    fn discriminant(&self) -> Discriminant {
        match self {
            ENode::Op(o, c) => Discriminant::Op(*o, c.len()),
            ENode::Get(i, _) => Discriminant::Get(*i),
            ENode::Input(i) => Discriminant::Input(*i),
            ENode::Const(i) => Discriminant::Const(*i),
            ENode::Absent => Discriminant::Absent,
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.discriminant() == other.discriminant()
    }

    fn children(&self) -> &[Id] {
        match self {
            ENode::Op(_, c) => c,
            ENode::Get(_, c) => c,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            ENode::Op(_, c) => c,
            ENode::Get(_, c) => c,
            _ => &mut [],
        }
    }
}

impl fmt::Display for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ENode::Op(o, _) => write!(f, "{o}"),
            ENode::Get(i, _) => write!(f, "get.{i}"),
            ENode::Input(i) => write!(f, "input.{i}"),
            ENode::Const(i) => write!(f, "const.{i}"),
            ENode::Absent => f.write_str("_"),
        }
    }
}

/// Why an atom does not parse as an e-node.
#[derive(Debug)]
pub struct ParseError(pub String);

fn leaf_index(op: &str, prefix: &str) -> Option<usize> {
    op.strip_prefix(prefix)?.parse().ok()
}

impl FromOp for ENode {
    type Error = ParseError;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, ParseError> {
        let leaf = |n: ENode| {
            if children.is_empty() {
                Ok(n)
            } else {
                Err(ParseError(format!("`{op}` is a leaf")))
            }
        };
        if op == "_" {
            return leaf(ENode::Absent);
        }
        if let Some(i) = leaf_index(op, "input.") {
            return leaf(ENode::Input(i));
        }
        if let Some(i) = leaf_index(op, "const.") {
            return leaf(ENode::Const(i));
        }
        if let Some(i) = leaf_index(op, "get.") {
            return match children[..] {
                [c] => Ok(ENode::Get(i, [c])),
                _ => Err(ParseError(format!("`{op}` takes one child"))),
            };
        }
        let (call, outputs) = parse_op(op).map_err(ParseError)?;
        Ok(ENode::Op(OpId::intern(call, outputs), children))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egg::RecExpr;

    #[test]
    fn expressions_parse_and_print() {
        let text = "(Add (get.1 (Split{axis=0}#2 input.0)) const.3)";
        let e: RecExpr<ENode> = text.parse().unwrap();
        // egg quotes atoms with special characters; the quoted form parses back.
        let again: RecExpr<ENode> = e.to_string().parse().unwrap();
        assert_eq!(again, e);
        assert_eq!(e.to_string().replace('"', ""), text);
        let e: RecExpr<ENode> = "(Clip input.0 _ const.1)".parse().unwrap();
        assert_eq!(e.to_string(), "(Clip input.0 _ const.1)");
        assert!("(get.0 input.0 input.1)".parse::<RecExpr<ENode>>().is_err());
        assert!("(input.0 input.1)".parse::<RecExpr<ENode>>().is_err());
    }
}
