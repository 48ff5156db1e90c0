//! Equality saturation of a graph: import, run staged rule sets under limits,
//! extract, export, and report what happened.

use crate::egraph::{export::export, import, EGraph, ENode, Imported, Rewrite};
use crate::extract::{CostModel, Extraction, NodeCost};
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
    node_cost: Option<NodeCost<'_>>,
) -> Result<(Graph, f64), IrError> {
    let ex = match node_cost {
        Some(f) => Extraction::greedy_by(eg, f),
        None => Extraction::greedy(eg, model),
    };
    let cost = ex
        .dag_cost(eg, roots, model)
        .filter(|c| c.is_finite())
        .ok_or_else(|| IrError::Invalid("an output has no well-typed implementation".into()))?;
    let choice = |id: Id| -> Option<ENode> { ex.node(eg, id) };
    Ok((export(eg, roots, &choice, names, template)?, cost))
}

/// A graph's e-graph after saturation, ready for extraction. Passes that
/// choose among alternatives by more than the cost model (quantization under
/// an error budget) inspect [`Saturated::egraph`] and extract with their own
/// node cost ([`Saturated::extract_by`]).
pub struct Saturated<'g> {
    /// The saturated e-graph.
    pub egraph: EGraph,
    /// The classes of the graph outputs (canonical ids).
    pub roots: Vec<Id>,
    /// Readable value names by class (canonical ids), used on export.
    pub names: HashMap<Id, String>,
    template: &'g Graph,
    stats: Stats,
}

/// Saturate `g` with `stages` under `limits`; extraction is left to the caller.
pub fn run_stages<'g>(
    g: &'g Graph,
    stages: Vec<Stage>,
    limits: Limits,
    model: &CostModel,
) -> Result<Saturated<'g>, IrError> {
    run_imported(g, import(g)?, stages, limits, model)
}

/// [`run_stages`] on `g` already imported (for passes whose rules depend on
/// what the import found, such as per-weight calibration data).
pub fn run_imported<'g>(
    g: &'g Graph,
    imported: Imported,
    stages: Vec<Stage>,
    limits: Limits,
    model: &CostModel,
) -> Result<Saturated<'g>, IrError> {
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
    let roots: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    let names: HashMap<Id, String> = imported
        .names
        .into_iter()
        .map(|(c, n)| (eg.find(c), n))
        .collect();
    Ok(Saturated {
        egraph: eg,
        roots,
        names,
        template: g,
        stats: Stats {
            nodes_before: g.node_count(),
            nodes_after: 0,
            stages: stage_stats,
            peak_enodes: peak,
            saturate_seconds: t0.elapsed().as_secs_f64(),
            extract_seconds: 0.0,
            cost_before,
            cost_after: f64::NAN,
        },
    })
}

impl Saturated<'_> {
    /// Extract the cheapest graph under the cost model.
    pub fn extract(&self, model: &CostModel) -> Result<(Graph, Stats), IrError> {
        self.finish(model, None)
    }

    /// Extract with `node_cost` in place of the cost model's node cost (an
    /// infinite cost forbids a node); the report's cost is still the model's.
    pub fn extract_by(
        &self,
        model: &CostModel,
        node_cost: &dyn Fn(Id, &ENode) -> f64,
    ) -> Result<(Graph, Stats), IrError> {
        self.finish(model, Some(node_cost))
    }

    fn finish(
        &self,
        model: &CostModel,
        node_cost: Option<NodeCost<'_>>,
    ) -> Result<(Graph, Stats), IrError> {
        let t1 = Instant::now();
        let (out, cost_after) = extract_graph(
            &self.egraph,
            &self.roots,
            &self.names,
            self.template,
            model,
            node_cost,
        )?;
        let stats = Stats {
            nodes_after: out.node_count(),
            extract_seconds: t1.elapsed().as_secs_f64(),
            cost_after,
            ..self.stats.clone()
        };
        Ok((out, stats))
    }
}

/// Saturate `g` with `stages` under `limits` and extract the cheapest graph.
pub fn saturate(
    g: &Graph,
    stages: Vec<Stage>,
    limits: Limits,
    model: &CostModel,
) -> Result<(Graph, Stats), IrError> {
    run_stages(g, stages, limits, model)?.extract(model)
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
        None,
    )
    .map(|r| r.0)
}
