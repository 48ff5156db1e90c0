//! The rule-soundness harness: random differential testing of any rewrite.
//!
//! For each example graph, the rule alone saturates the imported e-graph
//! (a few iterations). Then the graph preferring every e-node the rule added
//! (original operators cost 1000×) is extracted, and it and the example run
//! through the reference interpreter on random inputs; any difference beyond
//! the tolerance is a soundness bug, reported with both graphs in text form. A rule that never fires on its examples is reported too
//! ([`RuleReport::fired`]), so a test can insist that every rule was exercised.
//!
//! Examples are ordinary graphs; [`graph_from_pattern`] builds one from a
//! pattern such as `(Mul ?x (Sigmoid ?x))` and the types of its variables.

use crate::check::{self, MaxError};
use crate::egraph::{export::export, import, Analysis, ENode, Rewrite};
use crate::extract::Extraction;
use egg::{ENodeOrVar, Id, Language, RecExpr, Runner};
use egret_ir::{Graph, OutletId, ValueType};
use std::collections::{HashMap, HashSet};

/// Harness settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Random input sets per example.
    pub trials: usize,
    /// Seed of the first trial.
    pub seed: u64,
    /// Largest accepted error, relative (|a-b| / max(|b|, 1)).
    pub tol: f64,
    /// Sizes of symbolic dims in random inputs (default 2).
    pub dims: HashMap<String, usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            trials: 3,
            seed: 1,
            tol: 1e-5,
            dims: HashMap::new(),
        }
    }
}

/// What the harness found for one rule.
#[derive(Clone, Debug)]
pub struct RuleReport {
    /// Rule name.
    pub rule: String,
    /// Examples on which the rule fired and the rewritten graph was compared.
    pub fired: usize,
    /// Largest error over all comparisons.
    pub max_error: MaxError,
}

/// Why a rule failed the harness.
#[derive(Debug, thiserror::Error)]
pub enum SoundnessError {
    /// The rewritten graph computes something else.
    #[error("rule `{rule}` is unsound on example {example}: error {error:?}\n--- original:\n{before}--- rewritten:\n{after}")]
    Unsound {
        /// Rule name.
        rule: String,
        /// Example index.
        example: usize,
        /// The error measured.
        error: MaxError,
        /// Original graph (text form).
        before: String,
        /// Rewritten graph (text form).
        after: String,
    },
    /// The example, the extraction or a run failed.
    #[error("rule `{rule}`, example {example}: {msg}")]
    Failed {
        /// Rule name.
        rule: String,
        /// Example index.
        example: usize,
        /// What failed.
        msg: String,
    },
}

/// Check `rule` on every example graph.
pub fn check_rule(
    rule: &Rewrite,
    examples: &[Graph],
    opts: &Options,
) -> Result<RuleReport, SoundnessError> {
    let name = rule.name.to_string();
    let mut report = RuleReport {
        rule: name.clone(),
        fired: 0,
        max_error: MaxError::default(),
    };
    for (i, g) in examples.iter().enumerate() {
        let failed = |msg: String| SoundnessError::Failed {
            rule: name.clone(),
            example: i,
            msg,
        };
        let Some(after) = rewrite_once(rule, g).map_err(failed)? else {
            continue;
        };
        let before = g;
        report.fired += 1;
        for t in 0..opts.trials {
            let inputs = check::random_inputs(g, &opts.dims, opts.seed + t as u64)
                .map_err(|e| failed(e.to_string()))?;
            let e = check::compare(before, &after, &inputs).map_err(|e| failed(e.to_string()))?;
            report.max_error.abs = report.max_error.abs.max(e.abs);
            report.max_error.rel = report.max_error.rel.max(e.rel);
            if e.rel.is_nan() || e.rel > opts.tol {
                return Err(SoundnessError::Unsound {
                    rule: name,
                    example: i,
                    error: e,
                    before: egret_ir::text::print_graph(before),
                    after: egret_ir::text::print_graph(&after),
                });
            }
        }
    }
    Ok(report)
}

/// Saturate `g` with `rule` alone and extract the graph preferring what the
/// rule added; `None` if the rule did not change the e-graph.
fn rewrite_once(rule: &Rewrite, g: &Graph) -> Result<Option<Graph>, String> {
    let imp = import(g).map_err(|e| e.to_string())?;
    let original: Vec<ENode> = imp.egraph.classes().flat_map(|c| c.nodes.clone()).collect();
    let runner = Runner::<ENode, Analysis, ()>::new(Default::default())
        .with_egraph(imp.egraph)
        .with_iter_limit(3)
        .with_node_limit(10_000)
        .run(std::slice::from_ref(rule));
    let applied: usize = runner
        .iterations
        .iter()
        .flat_map(|it| it.applied.values())
        .sum();
    if applied == 0 {
        return Ok(None);
    }
    let eg = runner.egraph;
    let canon = |n: &ENode| n.clone().map_children(|c| eg.find(c));
    let old: HashSet<ENode> = original.iter().map(canon).collect();
    let is_old = |n: &ENode| old.contains(&canon(n));
    let take = Extraction::greedy_by(&eg, &|_, n| match (is_old(n), n) {
        (true, ENode::Op(..)) => 1e3,
        _ => 1.0,
    });
    let roots: Vec<Id> = imp.roots.iter().map(|&r| eg.find(r)).collect();
    let names: HashMap<Id, String> = imp
        .names
        .iter()
        .map(|(&c, n)| (eg.find(c), n.clone()))
        .collect();
    export(&eg, &roots, &|id| take.node(&eg, id), &names, g)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Build a graph computing `pattern` (egg syntax over egret's ops), with one
/// graph input per variable, typed by `vars` (`("?x", type)`).
pub fn graph_from_pattern(pattern: &str, vars: &[(&str, ValueType)]) -> Result<Graph, String> {
    let ast: RecExpr<ENodeOrVar<ENode>> = pattern.parse().map_err(|e| format!("{e:?}"))?;
    let mut g = Graph::new("pattern");
    let mut outs: Vec<Option<OutletId>> = Vec::with_capacity(ast.len());
    let mut var_outs: HashMap<String, OutletId> = HashMap::new();
    for (_, n) in ast.items() {
        let get = |id: Id| outs.get(usize::from(id)).copied().flatten();
        let o = match n {
            ENodeOrVar::Var(v) => {
                let key = v.to_string();
                match var_outs.get(&key) {
                    Some(&o) => Some(o),
                    None => {
                        let ty = vars
                            .iter()
                            .find(|(name, _)| *name == key)
                            .map(|(_, t)| t.clone())
                            .ok_or_else(|| format!("no type given for {key}"))?;
                        let o = g.add_input(key.trim_start_matches('?'), ty);
                        var_outs.insert(key, o);
                        Some(o)
                    }
                }
            }
            ENodeOrVar::ENode(ENode::Absent) => None,
            ENodeOrVar::ENode(ENode::Op(op, ch)) => {
                let key = op.key();
                let ins: Vec<Option<OutletId>> = ch.iter().map(|&c| get(c)).collect();
                let name = format!("n{}", g.node_count());
                let o = g
                    .call(&name, key.call.clone(), &ins, key.outputs)
                    .map_err(|e| e.to_string())?;
                o.first().copied()
            }
            ENodeOrVar::ENode(ENode::Get(i, [c])) => {
                let t = get(*c).ok_or("get.N of an absent value")?;
                Some(OutletId::new(t.node, *i))
            }
            ENodeOrVar::ENode(other) => {
                return Err(format!("`{other}` cannot appear in an example pattern"))
            }
        };
        outs.push(o);
    }
    let root = outs.last().copied().flatten().ok_or("empty pattern")?;
    g.outputs.push(root);
    Ok(g)
}
