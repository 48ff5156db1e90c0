//! Equality saturation of a graph: import, run staged rule sets under limits,
//! extract, export, and report what happened.

use crate::egraph::{export::export, import, EGraph, ENode, Rewrite};
use crate::extract::{CostModel, Extraction};
use egg::{Id, Runner, StopReason};
use egret_ir::{Graph, IrError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bounds on saturation, applied to each stage.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Stop when the e-graph has this many e-nodes.
    pub nodes: usize,
    /// Stop after this many iterations.
    pub iterations: usize,
    /// Stop after this much time.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nodes: 200_000,
            iterations: 30,
            time: Duration::from_secs(10),
        }
    }
}

/// One saturation stage: rules run together until saturation or a limit.
pub struct Stage {
    /// Stage name (for the report).
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rewrite>,
}

/// What one stage did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StageStats {
    /// Stage name.
    pub name: String,
    /// Iterations run.
    pub iterations: usize,
    /// Why it stopped.
    pub stop: String,
    /// E-nodes at the end of the stage.
    pub enodes: usize,
    /// E-classes at the end of the stage.
    pub eclasses: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Rule applications that changed the e-graph, by rule name.
    pub applied: Vec<(String, usize)>,
}

/// The saturation report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Stats {
    /// Graph nodes before (including inputs and constants).
    pub nodes_before: usize,
    /// Graph nodes after.
    pub nodes_after: usize,
    /// Per stage.
    pub stages: Vec<StageStats>,
    /// Largest e-graph seen (e-nodes).
    pub peak_enodes: usize,
    /// Total saturation time, seconds.
    pub saturate_seconds: f64,
    /// Extraction time, seconds.
    pub extract_seconds: f64,
    /// Modelled cost (ns) of the imported graph.
    pub cost_before: f64,
    /// Modelled cost (ns) of the extracted graph.
    pub cost_after: f64,
}

fn stop_text(s: &Option<StopReason>) -> String {
    match s {
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t:.1}s)"),
        Some(StopReason::Other(o)) => o.clone(),
        None => "not run".into(),
    }
}

fn extract_graph(
    eg: &EGraph,
    roots: &[Id],
    names: &HashMap<Id, String>,
    template: &Graph,
    model: &CostModel,
) -> Result<(Graph, f64), IrError> {
    let ex = Extraction::greedy(eg, model);
    let cost = ex
        .dag_cost(eg, roots, model)
        .ok_or_else(|| IrError::Invalid("an output has no well-typed implementation".into()))?;
    let choice = |id: Id| -> Option<ENode> { ex.node(eg, id) };
    Ok((export(eg, roots, &choice, names, template)?, cost))
}

/// Saturate `g` with `stages` under `limits` and extract the cheapest graph.
pub fn saturate(
    g: &Graph,
    stages: Vec<Stage>,
    limits: Limits,
    model: &CostModel,
) -> Result<(Graph, Stats), IrError> {
    let imported = import(g)?;
    let roots = imported.roots.clone();
    let mut eg = imported.egraph;
    let before = Extraction::greedy(&eg, model);
    let cost_before = before.dag_cost(&eg, &roots, model).unwrap_or(f64::NAN);
    let mut peak = eg.total_number_of_nodes();
    let mut stage_stats = Vec::new();
    let t0 = Instant::now();
    let mut rules: Vec<Rewrite> = Vec::new();
    for stage in stages {
        rules.extend(stage.rules);
        let t = Instant::now();
        let runner = Runner::<ENode, crate::egraph::Analysis, ()>::new(Default::default())
            .with_egraph(eg)
            .with_node_limit(limits.nodes)
            .with_iter_limit(limits.iterations)
            .with_time_limit(limits.time)
            .run(&rules);
        let mut applied: HashMap<String, usize> = HashMap::new();
        for it in &runner.iterations {
            peak = peak.max(it.egraph_nodes);
            for (r, n) in &it.applied {
                *applied.entry(r.to_string()).or_default() += n;
            }
        }
        let mut applied: Vec<_> = applied.into_iter().collect();
        applied.sort();
        eg = runner.egraph;
        peak = peak.max(eg.total_number_of_nodes());
        stage_stats.push(StageStats {
            name: stage.name,
            iterations: runner.iterations.len(),
            stop: stop_text(&runner.stop_reason),
            enodes: eg.total_number_of_nodes(),
            eclasses: eg.number_of_classes(),
            seconds: t.elapsed().as_secs_f64(),
            applied,
        });
    }
    let saturate_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let roots: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    let names: HashMap<Id, String> = imported
        .names
        .into_iter()
        .map(|(c, n)| (eg.find(c), n))
        .collect();
    let (out, cost_after) = extract_graph(&eg, &roots, &names, g, model)?;
    Ok((
        out.clone(),
        Stats {
            nodes_before: g.node_count(),
            nodes_after: out.node_count(),
            stages: stage_stats,
            peak_enodes: peak,
            saturate_seconds,
            extract_seconds: t1.elapsed().as_secs_f64(),
            cost_before,
            cost_after,
        },
    ))
}

/// Import `g` and export it again with no rewriting (tests the translation).
pub fn round_trip(g: &Graph) -> Result<Graph, IrError> {
    let imported = import(g)?;
    extract_graph(
        &imported.egraph,
        &imported.roots,
        &imported.names,
        g,
        &CostModel::default(),
    )
    .map(|r| r.0)
}
