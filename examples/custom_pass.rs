//! A complete custom optimization, end to end: a user-defined rewrite rule
//! (egg's `rewrite!` over egret's ops), a procedural pass, both registered in
//! a pipeline next to the built-ins, checked by the soundness harness, and run
//! on a graph. CI runs this example (`cargo run --example custom_pass`); it
//! exits non-zero if any step does not do what it claims.

use egret::ir::{DType, Graph, Model, Op, OpCall, Shape, ValueType};
use egret::passes::egg::rewrite;
use egret::passes::egraph::Rewrite;
use egret::passes::pass::{EqSatPass, Pass, PassContext, Registry};
use egret::passes::saturate::Stats;
use egret::passes::soundness::{check_rule, graph_from_pattern, Options};
use std::process::ExitCode;

/// The user's rule: Relu is idempotent, `Relu(Relu(x)) = Relu(x)`.
fn my_rules() -> Vec<Rewrite> {
    vec![rewrite!("relu-idempotent"; "(Relu (Relu ?x))" => "(Relu ?x)")]
}

/// A procedural pass: name every unnamed operator node after its op type.
struct NameNodes;

impl Pass for NameNodes {
    fn name(&self) -> &str {
        "name-nodes"
    }

    fn doc(&self) -> &str {
        "give unnamed operator nodes a name (<op>_<n>)"
    }

    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<Option<Stats>, String> {
        let g = &mut model.graph;
        let ids: Vec<_> = g.node_ids().collect();
        for (n, id) in ids.into_iter().enumerate() {
            let node = g.node_mut(id);
            if node.name.is_empty() {
                if let Op::Call(c) = &node.op {
                    node.name = format!("{}_{n}", c.op_type);
                }
            }
        }
        Ok(None)
    }
}

fn demo_graph() -> Result<Graph, String> {
    let mut g = Graph::new("demo");
    let ty = ValueType::tensor(DType::F32, Some(Shape::known(&[2, 3])));
    let x = g.add_input("x", ty);
    let e = |e: egret::ir::IrError| e.to_string();
    let a = g.call1("", OpCall::new("Relu"), &[x]).map_err(e)?;
    let b = g.call1("", OpCall::new("Relu"), &[a]).map_err(e)?;
    let c = g.call1("", OpCall::new("Relu"), &[b]).map_err(e)?;
    g.outputs.push(c);
    Ok(g)
}

fn run() -> Result<(), String> {
    // 1. Check the rule: random differential testing through the interpreter.
    let ty = ValueType::tensor(DType::F32, Some(Shape::known(&[8])));
    let example = graph_from_pattern("(Relu (Relu ?x))", &[("?x", ty)])?;
    for rule in my_rules() {
        let report = check_rule(&rule, std::slice::from_ref(&example), &Options::default())
            .map_err(|e| e.to_string())?;
        println!(
            "soundness: {} fired on {} example(s), max error {:?}",
            report.rule, report.fired, report.max_error
        );
        if report.fired == 0 {
            return Err("the rule never fired on its example".into());
        }
    }

    // 2. Register a saturation pass with the custom rule plus the built-in
    //    algebra set, and the procedural pass, next to the built-ins.
    let mut registry = Registry::builtin();
    let mut rules = my_rules();
    rules.extend((egret::passes::rules::by_name("algebra")
        .ok_or("no algebra set")?
        .rules)());
    registry.register(EqSatPass::new(
        "relu-cleanup",
        "Relu idempotence plus algebraic simplification",
        vec![("relu+algebra".into(), rules)],
    ));
    registry.register(NameNodes);

    // 3. Run a pipeline and check the result.
    let mut model = Model {
        graph: demo_graph()?,
        ..Default::default()
    };
    let original = model.graph.clone();
    let pipeline = registry.pipeline(&["relu-cleanup", "name-nodes", "dce"])?;
    let reports = pipeline
        .run(&mut model, &PassContext::default())
        .map_err(|e| e.to_string())?;
    for r in &reports {
        println!("{}: {} -> {} nodes", r.pass, r.nodes_before, r.nodes_after);
    }
    print!("{}", egret::ir::text::print_graph(&model.graph));
    let relus = model
        .graph
        .node_ids()
        .filter(|&id| model.graph.node(id).op.name() == "Relu")
        .count();
    if relus != 1 {
        return Err(format!(
            "expected one Relu after optimization, found {relus}"
        ));
    }
    let inputs = egret::passes::check::random_inputs(&original, &Default::default(), 3)
        .map_err(|e| e.to_string())?;
    let err = egret::passes::check::compare(&original, &model.graph, &inputs)
        .map_err(|e| e.to_string())?;
    println!("max error vs the original: {err:?}");
    if err.abs != 0.0 {
        return Err("outputs changed".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_pass failed: {e}");
            ExitCode::FAILURE
        }
    }
}
