//! Built-in rule sets, named and staged.
//!
//! Each set is a list of `egg` rewrites over [`crate::egraph::ENode`]. Sets are
//! grouped into stages ([`default_stages`]): each stage saturates the same
//! e-graph with its sets plus everything from earlier stages, so order still
//! does not matter within a stage and later stages only add rules.

pub mod algebra;
pub mod canon;
pub mod fusion;
pub mod rhs;
pub mod shape;
pub mod transpose;
pub mod util;

use crate::egraph::Rewrite;

/// A named set of rewrite rules.
#[derive(Clone, Copy)]
pub struct RuleSet {
    /// Name used on the command line.
    pub name: &'static str,
    /// One-line description.
    pub doc: &'static str,
    /// Builds the rules.
    pub rules: fn() -> Vec<Rewrite>,
}

/// Every built-in rule set.
pub fn builtin() -> Vec<RuleSet> {
    vec![
        RuleSet {
            name: "algebra",
            doc: "identities (x+0, x*1, Identity, Dropout), double transposes, reshape/cast chains, squeeze/unsqueeze",
            rules: algebra::rules,
        },
        RuleSet {
            name: "shape",
            doc: "shape arithmetic: computed Reshape targets become constants (0 = copy dim, -1 = rest)",
            rules: shape::rules,
        },
        RuleSet {
            name: "canon",
            doc: "canonicalisation: commutative operands in both orders",
            rules: canon::rules,
        },
        RuleSet {
            name: "fusion",
            doc: "MatMul+Add→Gemm, GELU, SiLU→Swish, Softmax, LayerNorm, RMSNorm, BatchNorm folded into Conv, block weights read in place (MatMulBlocks)",
            rules: fusion::rules,
        },
        RuleSet {
            name: "transpose",
            doc: "transpose sinking through elementwise ops (cancels with transpose-transpose)",
            rules: transpose::rules,
        },
    ]
}

/// A rule set by name.
pub fn by_name(name: &str) -> Option<RuleSet> {
    builtin().into_iter().find(|s| s.name == name)
}

/// The default stages: simplify first, then fuse, then move transposes.
pub fn default_stages() -> Vec<Vec<&'static str>> {
    vec![
        vec!["algebra", "shape", "canon"],
        vec!["fusion"],
        vec!["transpose"],
    ]
}

/// Every built-in rule with its set's name.
pub fn all_rules() -> Vec<(&'static str, Rewrite)> {
    builtin()
        .into_iter()
        .flat_map(|s| (s.rules)().into_iter().map(move |r| (s.name, r)))
        .collect()
}
