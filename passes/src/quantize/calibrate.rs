//! Calibration: per-channel statistics of the activations that quantizable
//! weights multiply, recorded while the interpreter runs sample inputs.
//!
//! The statistics are keyed by the activation's value name, which survives
//! constant folding and e-graph import, so they can be gathered on whatever
//! graph the runtime actually executes (a decoder's folded graph) and used on
//! the graph being optimized.

use egret_ir::{Graph, Model, NodeId, Op, OutletId, Value};
use egret_runtime::eval::Embedder;
use egret_runtime::generate::Decoder;
use std::collections::HashMap;

/// Statistics of one activation over the rows (tokens) seen.
#[derive(Clone, Debug, Default)]
pub struct ChannelStats {
    /// Sum of squares per channel (last axis).
    pub sum_sq: Vec<f64>,
    /// Rows seen.
    pub rows: usize,
    /// Sum over rows of the noise-to-signal ratio that per-token symmetric int8
    /// quantization of the row would add: `(Δ²/12) / mean(x²)`, `Δ = max|x| / 127`.
    pub act_nsr_sum: f64,
}

impl ChannelStats {
    /// Mean of `x²` per channel, normalised to mean 1 (importance weights).
    pub fn importance(&self) -> Option<Vec<f32>> {
        let total: f64 = self.sum_sq.iter().sum();
        (self.rows > 0 && total > 0.0).then(|| {
            let mean = total / self.sum_sq.len() as f64;
            self.sum_sq
                .iter()
                .map(|&s| ((s / mean) as f32).max(1e-6))
                .collect()
        })
    }

    /// Mean per-token int8 activation noise-to-signal ratio.
    pub fn act_nsr(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.act_nsr_sum / self.rows as f64)
    }

    fn add(&mut self, x: &[f32], width: usize) {
        if self.sum_sq.len() != width {
            *self = ChannelStats {
                sum_sq: vec![0.0; width],
                ..ChannelStats::default()
            };
        }
        for row in x.chunks_exact(width) {
            let mut ss = 0.0f64;
            let mut amax = 0.0f32;
            for (acc, &v) in self.sum_sq.iter_mut().zip(row) {
                let v2 = f64::from(v) * f64::from(v);
                *acc += v2;
                ss += v2;
                amax = amax.max(v.abs());
            }
            if ss > 0.0 {
                let delta = f64::from(amax) / 127.0;
                self.act_nsr_sum += (delta * delta / 12.0) / (ss / width as f64);
            }
            self.rows += 1;
        }
    }
}

/// Activation statistics by value name.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// By activation value name.
    pub stats: HashMap<String, ChannelStats>,
}

/// True if `o` is a constant or computed from constants only (a weight).
fn is_weight(g: &Graph, o: OutletId) -> bool {
    let node = g.node(o.node);
    match &node.op {
        Op::Const(_) => true,
        Op::Call(_) => {
            !node.inputs().is_empty()
                && node
                    .inputs()
                    .iter()
                    .flatten()
                    .all(|i| matches!(g.node(i.node).op, Op::Const(_)))
        }
        Op::Input => false,
    }
}

/// The outlets of `g` that are the activation of a `MatMul` / `Gemm` with a
/// weight operand, with their names.
fn watched(g: &Graph) -> HashMap<OutletId, String> {
    let mut out = HashMap::new();
    for id in g.node_ids() {
        let node = g.node(id);
        let Op::Call(c) = &node.op else { continue };
        if !c.domain.is_empty() || !matches!(c.op_type.as_str(), "MatMul" | "Gemm") {
            continue;
        }
        if let [Some(x), Some(w), ..] = node.inputs() {
            if is_weight(g, *w) {
                out.insert(*x, g.value_name(*x).to_string());
            }
        }
    }
    out
}

impl Calibration {
    /// An observer for [`egret_runtime::Interpreter::run_observed`] on `g`
    /// that adds every watched activation to these statistics.
    pub fn observer<'a>(&'a mut self, g: &Graph) -> impl FnMut(NodeId, &[Value]) + 'a {
        let watch = watched(g);
        move |id, outs| {
            for (slot, v) in outs.iter().enumerate() {
                let Some(name) = watch.get(&OutletId::new(id, slot)) else {
                    continue;
                };
                let Ok(t) = v.as_tensor() else { continue };
                let (Some(&width), Ok(x)) = (t.shape().last(), t.as_slice::<f32>()) else {
                    continue;
                };
                if width > 0 {
                    self.stats.entry(name.clone()).or_default().add(x, width);
                }
            }
        }
    }
}

/// Calibrate a causal LM (the [`Decoder`] convention) on token windows, each
/// run from an empty cache.
pub fn calibrate_decoder(model: &Model, windows: &[&[i64]]) -> Result<Calibration, String> {
    let decoder = Decoder::new(model.clone()).map_err(|e| e.to_string())?;
    let mut cal = Calibration::default();
    let g = decoder.model().graph.clone();
    let mut observe = cal.observer(&g);
    for w in windows {
        let mut cache = decoder.empty_cache().map_err(|e| e.to_string())?;
        decoder
            .forward_observed(w, &mut cache, &mut observe)
            .map_err(|e| e.to_string())?;
    }
    drop(observe);
    Ok(cal)
}

/// Calibrate an embedding model ([`Embedder`]'s convention) on sentences, run
/// in batches of eight.
pub fn calibrate_encoder(
    model: &Model,
    tokenizer_json: &str,
    sentences: &[&str],
) -> Result<Calibration, String> {
    let embedder = Embedder::new(model, tokenizer_json).map_err(|e| e.to_string())?;
    let mut cal = Calibration::default();
    let mut observe = cal.observer(&model.graph);
    for chunk in sentences.chunks(8) {
        let ids = chunk
            .iter()
            .map(|t| embedder.tokens(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        embedder
            .embed_ids_observed(&ids, &mut observe)
            .map_err(|e| e.to_string())?;
    }
    drop(observe);
    Ok(cal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_two_rows() {
        let mut s = ChannelStats::default();
        s.add(&[1.0, -2.0, 0.0, 0.0, 127.0, 0.0], 3);
        assert_eq!(s.rows, 2);
        assert_eq!(s.sum_sq, vec![1.0, 4.0 + 127.0 * 127.0, 0.0]);
        // Row 1: Δ = 2/127, mean x² = 5/3; row 2: Δ = 1, mean x² = 127²/3.
        let r1 = ((2.0f64 / 127.0).powi(2) / 12.0) / (5.0 / 3.0);
        let r2 = (1.0 / 12.0) / (127.0f64 * 127.0 / 3.0);
        assert!((s.act_nsr().unwrap() - (r1 + r2) / 2.0).abs() < 1e-15);
        let imp = s.importance().unwrap();
        let mean = (1.0 + 4.0 + 127.0 * 127.0) / 3.0;
        assert!((f64::from(imp[0]) - 1.0 / mean).abs() < 1e-6);
        assert_eq!(imp[2], 1e-6);
    }
}
