//! Rules whose right-hand side is computed, and the type guard every built-in
//! rule applies through.
//!
//! Most of egret's rules depend on attributes and analysis facts (a perm that
//! composes to the identity, a constant that is all zeros, a BatchNorm whose
//! folded weights must be computed), which egg's static patterns cannot
//! express. A [`FnRule`] scans the e-nodes of the given op types and lets a
//! plain function build the right-hand side as an [`Rhs`]: an expression over
//! existing e-classes, new op nodes and constants. The searcher hands that
//! expression to the applier inside egg's `SearchMatches::ast` slot (egret
//! never enables egg's explanations, the slot's other use).
//!
//! Applying goes through [`guarded_union`]: the new class must be well typed
//! and its types compatible with the matched class's, else nothing is merged.
//! A rule bug can then cost an optimisation, never a wrong shape.

use crate::egraph::{EGraph, ENode, OpId, OpKey};
use egg::{
    Applier, ENodeOrVar, Id, PatternAst, RecExpr, SearchMatches, Searcher, Subst, Symbol, Var,
};
use egret_ir::verify::compatible;
use egret_ir::OpCall;
use std::borrow::Cow;
use std::sync::Arc;

/// A right-hand side under construction: nodes over existing classes.
#[derive(Default)]
pub struct Rhs {
    ast: PatternAst<ENode>,
    subst: Subst,
    vars: u32,
}

impl Rhs {
    /// An empty right-hand side.
    pub fn new() -> Rhs {
        Rhs::default()
    }

    /// Refer to an existing e-class.
    pub fn class(&mut self, id: Id) -> Id {
        let v = Var::from_u32(self.vars);
        self.vars += 1;
        self.subst.insert(v, id);
        self.ast.add(ENodeOrVar::Var(v))
    }

    /// Add a node whose children are ids returned by this builder.
    pub fn node(&mut self, n: ENode) -> Id {
        self.ast.add(ENodeOrVar::ENode(n))
    }

    /// A single-output op on `children` (builder ids).
    pub fn op(&mut self, call: OpCall, children: &[Id]) -> Id {
        self.node(ENode::Op(OpId::intern(call, 1), children.to_vec()))
    }

    /// The constant with table index `k` (see [`crate::egraph::Analysis::add_tensor`]).
    pub fn constant(&mut self, k: usize) -> Id {
        self.node(ENode::Const(k))
    }

    /// The absent optional input.
    pub fn absent(&mut self) -> Id {
        self.node(ENode::Absent)
    }

    /// A right-hand side that is just an existing class.
    pub fn existing(id: Id) -> Rhs {
        let mut r = Rhs::new();
        r.class(id);
        r
    }
}

/// Union `new` into `class` if `new` is valid and its types are compatible.
pub fn guarded_union(eg: &mut EGraph, class: Id, new: Id) -> bool {
    let (a, b) = (&eg[class].data, &eg[new].data);
    let ok = b.valid
        && a.tuple == b.tuple
        && a.types.len() == b.types.len()
        && a.types.iter().zip(&b.types).all(|(x, y)| compatible(x, y));
    ok && eg.union(class, new)
}

/// The signature of a computed rule: given the e-graph, the matched class and
/// an e-node `op(children)` of one of the rule's op types, return the
/// equivalent expression, or `None` if the rule does not apply.
pub type RuleFn = fn(&EGraph, Id, &OpKey, &[Id]) -> Option<Rhs>;

/// A computed rule that carries data (a rule set built at run time, such as
/// one quantization rule per enabled scheme): any thread-safe closure with the
/// [`RuleFn`] signature.
pub type RuleClosure = Arc<dyn Fn(&EGraph, Id, &OpKey, &[Id]) -> Option<Rhs> + Send + Sync>;

/// A rule scanning e-nodes of some op types and computing its right-hand side.
#[derive(Clone)]
pub struct FnRule {
    ops: &'static [&'static str],
    f: RuleClosure,
}

impl FnRule {
    /// A rewrite named `name` firing `f` on e-nodes whose op type is in `ops`.
    pub fn rewrite(name: &str, ops: &'static [&'static str], f: RuleFn) -> crate::egraph::Rewrite {
        FnRule::rewrite_with(name, ops, Arc::new(f))
    }

    /// [`FnRule::rewrite`] with a closure, for rules parameterised at run time.
    pub fn rewrite_with(
        name: &str,
        ops: &'static [&'static str],
        f: RuleClosure,
    ) -> crate::egraph::Rewrite {
        let r = FnRule { ops, f };
        // Neither side declares pattern variables, so `Rewrite::new` cannot fail.
        match egg::Rewrite::new(name, r.clone(), r) {
            Ok(rw) => rw,
            Err(e) => unreachable!("FnRule has no variables: {e}"),
        }
    }

    fn matches_in(&self, eg: &EGraph, id: Id, out: &mut Vec<SearchMatches<'static, ENode>>) {
        for n in &eg[id].nodes {
            let ENode::Op(op, ch) = n else { continue };
            let key: Arc<OpKey> = op.key();
            if !self.ops.contains(&key.op_type()) {
                continue;
            }
            if let Some(rhs) = (self.f)(eg, id, &key, ch) {
                out.push(SearchMatches {
                    eclass: id,
                    substs: vec![rhs.subst],
                    ast: Some(Cow::Owned(rhs.ast)),
                });
            }
        }
    }
}

impl Searcher<ENode, crate::egraph::Analysis> for FnRule {
    fn search_eclass_with_limit(
        &self,
        eg: &EGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, ENode>> {
        let mut v = Vec::new();
        self.matches_in(eg, eg.find(eclass), &mut v);
        v.truncate(limit);
        v.into_iter().next()
    }

    fn search_with_limit(&self, eg: &EGraph, limit: usize) -> Vec<SearchMatches<'_, ENode>> {
        let mut v = Vec::new();
        for c in eg.classes() {
            if v.len() >= limit {
                break;
            }
            self.matches_in(eg, c.id, &mut v);
        }
        v.truncate(limit);
        v
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

impl Applier<ENode, crate::egraph::Analysis> for FnRule {
    fn apply_matches(
        &self,
        eg: &mut EGraph,
        matches: &[SearchMatches<ENode>],
        _rule: Symbol,
    ) -> Vec<Id> {
        let mut changed = vec![];
        for m in matches {
            let Some(ast) = &m.ast else { continue };
            for s in &m.substs {
                let new = eg.add_instantiation(ast, s);
                if guarded_union(eg, m.eclass, new) {
                    changed.push(new);
                }
            }
        }
        changed
    }

    fn apply_one(
        &self,
        _eg: &mut EGraph,
        _eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<ENode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        // Every match carries its right-hand side; `apply_matches` handles them.
        vec![]
    }
}

/// A side condition on a pattern match.
pub type Condition = Box<dyn Fn(&EGraph, &Subst) -> bool + Send + Sync>;

/// An egg pattern applied through [`guarded_union`]: for built-in rules written
/// as patterns (`egg::rewrite!` users get egg's plain applier).
pub struct Guarded {
    rhs: PatternAst<ENode>,
    conds: Vec<Condition>,
}

impl Guarded {
    /// Apply pattern `rhs` when every condition holds.
    pub fn new(rhs: &str, conds: Vec<Condition>) -> Result<Guarded, String> {
        let rhs: RecExpr<ENodeOrVar<ENode>> = rhs.parse().map_err(|e| format!("{e:?}"))?;
        Ok(Guarded { rhs, conds })
    }
}

impl Applier<ENode, crate::egraph::Analysis> for Guarded {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<ENode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        if !self.conds.iter().all(|c| c(eg, subst)) {
            return vec![];
        }
        let new = eg.add_instantiation(&self.rhs, subst);
        if guarded_union(eg, eclass, new) {
            vec![new]
        } else {
            vec![]
        }
    }

    fn vars(&self) -> Vec<Var> {
        self.rhs
            .iter()
            .filter_map(|n| match n {
                ENodeOrVar::Var(v) => Some(*v),
                ENodeOrVar::ENode(_) => None,
            })
            .collect()
    }
}
