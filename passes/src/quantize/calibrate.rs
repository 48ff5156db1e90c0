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
use egret_runtime::kernels::gemm::sgemm_strided;
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
    /// `Σ xᵀx` over rows, row-major `[width, width]`, when the calibration
    /// asked for second moments (GPTQ); empty otherwise.
    pub gram: Vec<f64>,
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

    /// The mean second-moment matrix `E[xᵀx]` (`[width, width]`), if gathered.
    pub fn hessian(&self) -> Option<Vec<f64>> {
        let n = self.sum_sq.len();
        (self.rows > 0 && self.gram.len() == n * n).then(|| {
            let r = self.rows as f64;
            self.gram.iter().map(|&v| v / r).collect()
        })
    }

    fn add(&mut self, x: &[f32], width: usize, gram: bool) {
        if self.sum_sq.len() != width {
            *self = ChannelStats {
                sum_sq: vec![0.0; width],
                gram: if gram {
                    vec![0.0; width * width]
                } else {
                    Vec::new()
                },
                ..ChannelStats::default()
            };
        }
        if gram {
            add_gram(&mut self.gram, x, width);
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

/// Add `XᵀX` of the rows `x` (`[rows, width]`) to `acc` (`[width, width]`),
/// through the f32 GEMM one batch at a time and summed in f64 across batches.
fn add_gram(acc: &mut [f64], x: &[f32], width: usize) {
    let rows = x.len() / width;
    if rows == 0 || acc.len() != width * width {
        return;
    }
    let mut g = vec![0f32; width * width];
    let w = width as isize;
    // Xᵀ is X read with swapped strides.
    sgemm_strided(width, width, rows, x, 1, w, x, w, 1, &mut g, 1.0, 0.0);
    for (a, &v) in acc.iter_mut().zip(&g) {
        *a += f64::from(v);
    }
}

/// Activation statistics by value name.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// By activation value name.
    pub stats: HashMap<String, ChannelStats>,
    /// Whether to gather second-moment matrices ([`ChannelStats::gram`]), as
    /// GPTQ needs: `width²` f64 per activation.
    pub gram: bool,
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

/// True for the ops whose input 0 is an activation and input 1 a weight:
/// ONNX `MatMul` / `Gemm`, and the fused forms the optimizer makes of them
/// (`egret::MatMulBlocks` on GGUF blocks, `egret::MatMulInt8`).
fn is_weighted_product(c: &egret_ir::OpCall) -> bool {
    match c.domain.as_str() {
        "" => matches!(c.op_type.as_str(), "MatMul" | "Gemm"),
        d if d == egret_ir::infer::egret_ops::DOMAIN => {
            matches!(c.op_type.as_str(), "MatMulBlocks" | "MatMulInt8")
        }
        _ => false,
    }
}

/// The outlets of `g` that are the activation of a weighted product (see
/// [`is_weighted_product`]), with their names.
fn watched(g: &Graph) -> HashMap<OutletId, String> {
    let mut out = HashMap::new();
    for id in g.node_ids() {
        let node = g.node(id);
        let Op::Call(c) = &node.op else { continue };
        if !is_weighted_product(c) {
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
    /// An empty calibration; `gram`: also gather second-moment matrices.
    pub fn new(gram: bool) -> Calibration {
        Calibration {
            stats: HashMap::new(),
            gram,
        }
    }

    /// An observer for [`egret_runtime::Interpreter::run_observed`] on `g`
    /// that adds every watched activation to these statistics.
    pub fn observer<'a>(&'a mut self, g: &Graph) -> impl FnMut(NodeId, &[Value]) + 'a {
        let watch = watched(g);
        let gram = self.gram;
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
                    self.stats
                        .entry(name.clone())
                        .or_default()
                        .add(x, width, gram);
                }
            }
        }
    }
}

/// Calibrate a causal LM (the [`Decoder`] convention) on token windows, each
/// run from an empty cache; `gram`: also gather second moments (GPTQ).
pub fn calibrate_decoder(
    model: &Model,
    windows: &[&[i64]],
    gram: bool,
) -> Result<Calibration, String> {
    let decoder = Decoder::new(model.clone()).map_err(|e| e.to_string())?;
    let mut cal = Calibration::new(gram);
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
/// in batches of eight; `gram`: also gather second moments (GPTQ).
pub fn calibrate_encoder(
    model: &Model,
    tokenizer_json: &str,
    sentences: &[&str],
    gram: bool,
) -> Result<Calibration, String> {
    let embedder = Embedder::new(model, tokenizer_json).map_err(|e| e.to_string())?;
    let mut cal = Calibration::new(gram);
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
        s.add(&[1.0, -2.0, 0.0, 0.0, 127.0, 0.0], 3, true);
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
        // E[xᵀx] over the two rows.
        let h = s.hessian().unwrap();
        let want = [
            1.0,
            -2.0,
            0.0,
            -2.0,
            4.0 + 127.0 * 127.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ];
        for (got, want) in h.iter().zip(want) {
            assert!((got - want / 2.0).abs() < 1e-9, "{h:?}");
        }
    }
}
