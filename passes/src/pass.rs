//! The pass manager: named passes, pipelines, verification between passes.
//!
//! A [`Pass`] transforms a [`Model`] in place. Two kinds ship:
//!
//! * [`EqSatPass`]: equality saturation with staged rule sets (the built-in
//!   sets, or any `egg` rewrites a user writes over [`crate::egraph::ENode`]);
//! * procedural passes implementing [`Pass`] directly, like [`Dce`].
//!
//! A [`Registry`] names passes; a [`Pipeline`] runs a list of them and runs the
//! verifier after each, so a broken pass is caught where it broke.

use crate::egraph::Rewrite;
use crate::extract::CostModel;
use crate::rules;
use crate::saturate::{saturate, Limits, Stage, Stats};
use egret_ir::{Attr, Graph, Model, NodeId, Op};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// A pass failed, or produced a graph the verifier rejects.
#[derive(Debug, thiserror::Error)]
#[error("pass `{pass}`: {msg}")]
pub struct PassError {
    /// The pass.
    pub pass: String,
    /// What went wrong.
    pub msg: String,
}

/// Settings every pass sees.
#[derive(Clone, Debug, Default)]
pub struct PassContext {
    /// Saturation limits.
    pub limits: Limits,
    /// Extraction cost model.
    pub cost: CostModel,
}

/// What one pass reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PassReport {
    /// Pass name.
    pub pass: String,
    /// Nodes before (subgraphs included).
    pub nodes_before: usize,
    /// Nodes after (subgraphs included).
    pub nodes_after: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Saturation statistics, for e-graph passes.
    pub saturation: Option<Stats>,
}

/// A graph transformation.
pub trait Pass: Send + Sync {
    /// Name used in pipelines (`--passes`).
    fn name(&self) -> &str;
    /// One-line description.
    fn doc(&self) -> &str;
    /// Transform `model`; return saturation statistics if the pass saturates.
    fn run(&self, model: &mut Model, ctx: &PassContext) -> Result<Option<Stats>, String>;
}

/// Equality saturation with staged rules.
#[derive(Clone)]
pub struct EqSatPass {
    name: String,
    doc: String,
    stages: Vec<(String, Vec<Rewrite>)>,
}

impl EqSatPass {
    /// A saturation pass running `stages` (name, rules) in order on one e-graph;
    /// each stage keeps the rules of the stages before it.
    pub fn new(name: &str, doc: &str, stages: Vec<(String, Vec<Rewrite>)>) -> EqSatPass {
        EqSatPass {
            name: name.into(),
            doc: doc.into(),
            stages,
        }
    }

    /// A pass over built-in rule sets, staged as given. Unknown set names are errors.
    pub fn from_sets(name: &str, doc: &str, stages: &[Vec<&str>]) -> Result<EqSatPass, String> {
        let stages = stages
            .iter()
            .map(|sets| {
                let rules = sets
                    .iter()
                    .map(|s| {
                        rules::by_name(s)
                            .map(|r| (r.rules)())
                            .ok_or_else(|| format!("no rule set `{s}`"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((sets.join("+"), rules.into_iter().flatten().collect()))
            })
            .collect::<Result<_, String>>()?;
        Ok(EqSatPass::new(name, doc, stages))
    }
}

impl EqSatPass {
    /// Saturate `g`, and first, recursively, every subgraph (`If`/`Loop`/`Scan`
    /// bodies: closed graphs, since captures are explicit inputs). The returned
    /// statistics are the main graph's stages and costs; node counts include
    /// subgraphs, times are summed over all graphs and the peak e-graph size is
    /// the largest of any graph's.
    pub fn optimize(&self, g: &Graph, ctx: &PassContext) -> Result<(Graph, Stats), String> {
        let mut g = g.clone();
        let before = total_nodes(&g);
        let ids: Vec<NodeId> = g.node_ids().collect();
        let (mut sub_saturate, mut sub_extract, mut sub_peak) = (0.0, 0.0, 0);
        for id in ids {
            let Op::Call(call) = &g.node(id).op else {
                continue;
            };
            let mut call = call.clone();
            let mut changed = false;
            for (_, a) in call.attrs.0.iter_mut() {
                let subs: Vec<&mut Arc<Graph>> = match a {
                    Attr::Graph(s) => vec![s],
                    Attr::Graphs(s) => s.iter_mut().collect(),
                    _ => continue,
                };
                for s in subs {
                    let (sg, st) = self.optimize(s, ctx)?;
                    *s = Arc::new(sg);
                    sub_saturate += st.saturate_seconds;
                    sub_extract += st.extract_seconds;
                    sub_peak = sub_peak.max(st.peak_enodes);
                    changed = true;
                }
            }
            if changed {
                g.node_mut(id).op = Op::Call(call);
            }
        }
        let stages = self
            .stages
            .iter()
            .map(|(n, r)| Stage {
                name: n.clone(),
                rules: r.clone(),
            })
            .collect();
        let (out, mut stats) =
            saturate(&g, stages, ctx.limits, &ctx.cost).map_err(|e| e.to_string())?;
        stats.nodes_before = before;
        stats.nodes_after = total_nodes(&out);
        stats.saturate_seconds += sub_saturate;
        stats.extract_seconds += sub_extract;
        stats.peak_enodes = stats.peak_enodes.max(sub_peak);
        Ok((out, stats))
    }
}

/// Nodes of a graph including those of its subgraphs.
pub fn total_nodes(g: &Graph) -> usize {
    g.node_ids()
        .map(|id| {
            1 + g.node(id).op.as_call().map_or(0, |c| {
                c.attrs
                    .iter()
                    .map(|(_, a)| match a {
                        Attr::Graph(s) => total_nodes(s),
                        Attr::Graphs(s) => s.iter().map(|s| total_nodes(s)).sum(),
                        _ => 0,
                    })
                    .sum()
            })
        })
        .sum()
}

impl Pass for EqSatPass {
    fn name(&self) -> &str {
        &self.name
    }

    fn doc(&self) -> &str {
        &self.doc
    }

    fn run(&self, model: &mut Model, ctx: &PassContext) -> Result<Option<Stats>, String> {
        let (g, stats) = self.optimize(&model.graph, ctx)?;
        model.graph = g;
        Ok(Some(stats))
    }
}

/// Dead-code elimination: drop nodes no graph output depends on (inputs stay).
pub struct Dce;

/// Remove every node of `g` that no output depends on, except graph inputs.
pub fn dce(g: &mut Graph) {
    let mut live: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = g.outputs.iter().map(|o| o.node).collect();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(g.node(id).inputs().iter().flatten().map(|o| o.node));
        }
    }
    let dead: Vec<NodeId> = g
        .node_ids()
        .filter(|id| !live.contains(id) && !matches!(g.node(*id).op, Op::Input))
        .collect();
    for id in dead {
        g.remove_node(id);
    }
}

impl Pass for Dce {
    fn name(&self) -> &str {
        "dce"
    }

    fn doc(&self) -> &str {
        "dead-code elimination: remove nodes no output depends on"
    }

    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<Option<Stats>, String> {
        dce(&mut model.graph);
        Ok(None)
    }
}

/// Named passes.
#[derive(Clone)]
pub struct Registry {
    passes: Vec<Arc<dyn Pass>>,
}

/// The default pipeline's pass names.
pub const DEFAULT_PIPELINE: &[&str] = &["dce", "eqsat"];

impl Registry {
    /// The built-in passes: `eqsat` (every rule set, staged), one pass per rule set, and `dce`.
    pub fn builtin() -> Registry {
        let mut r = Registry { passes: vec![] };
        let stages = rules::default_stages();
        if let Ok(p) = EqSatPass::from_sets(
            "eqsat",
            "equality saturation with every built-in rule set, staged: simplify, fuse, sink transposes",
            &stages,
        ) {
            r.register(p);
        }
        for set in rules::builtin() {
            if let Ok(p) = EqSatPass::from_sets(set.name, set.doc, &[vec![set.name]]) {
                r.register(p);
            }
        }
        r.register(Dce);
        r
    }

    /// Add (or replace) a pass under its name.
    pub fn register(&mut self, p: impl Pass + 'static) {
        self.passes.retain(|q| q.name() != p.name());
        self.passes.push(Arc::new(p));
    }

    /// The pass with this name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Pass>> {
        self.passes.iter().find(|p| p.name() == name).cloned()
    }

    /// Every pass, in registration order.
    pub fn passes(&self) -> &[Arc<dyn Pass>] {
        &self.passes
    }

    /// A pipeline of the named passes.
    pub fn pipeline(&self, names: &[&str]) -> Result<Pipeline, String> {
        let passes = names
            .iter()
            .map(|n| {
                self.get(n).ok_or_else(|| {
                    let known: Vec<&str> = self.passes.iter().map(|p| p.name()).collect();
                    format!("no pass `{n}` (known: {})", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Pipeline { passes })
    }
}

/// An ordered list of passes.
pub struct Pipeline {
    passes: Vec<Arc<dyn Pass>>,
}

impl Pipeline {
    /// Run every pass, verifying the graph after each one.
    pub fn run(&self, model: &mut Model, ctx: &PassContext) -> Result<Vec<PassReport>, PassError> {
        let mut reports = Vec::new();
        for p in &self.passes {
            let err = |msg: String| PassError {
                pass: p.name().to_string(),
                msg,
            };
            let before = total_nodes(&model.graph);
            let t = Instant::now();
            let saturation = p.run(model, ctx).map_err(err)?;
            egret_ir::verify::verify(&model.graph).map_err(|e| err(format!("verifier: {e}")))?;
            reports.push(PassReport {
                pass: p.name().to_string(),
                nodes_before: before,
                nodes_after: total_nodes(&model.graph),
                seconds: t.elapsed().as_secs_f64(),
                saturation,
            });
        }
        Ok(reports)
    }
}
