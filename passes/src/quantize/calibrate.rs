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
use egret_runtime::kernels::gemm::gemm_strided;
use std::collections::HashMap;

/// Statistics of one activation over the rows (tokens) seen.
#[derive(Clone, Debug, Default)]
pub struct ChannelStats {
    /// Sum of squares per channel (last axis).
    pub sum_sq: Vec<f64>,
    /// Sum per channel (for means: structured pruning's variances and bias
    /// compensation).
    pub sum: Vec<f64>,
    /// Rows seen.
    pub rows: usize,
    /// Sum over rows of the noise-to-signal ratio that per-token symmetric int8
    /// quantization of the row would add: `(Δ²/12) / mean(x²)`, `Δ = max|x| / 127`.
    pub act_nsr_sum: f64,
    /// `Σ xᵀx` over rows, row-major `[width, width]`, when the calibration
    /// asked for second moments (GPTQ); empty otherwise.
    pub gram: Vec<f64>,
    /// A uniform subsample of the rows (every `sample_stride`-th, at most
    /// [`SAMPLE_ROWS`]), row-major, when the calibration asked for samples
    /// (activation-sparsity thresholds); empty otherwise.
    pub sample: Vec<f32>,
    /// Rows between two sampled rows (doubles whenever the sample fills).
    pub sample_stride: usize,
}

/// Most rows an activation's sample holds.
pub const SAMPLE_ROWS: usize = 256;

/// What a TEAL threshold drops from one activation ([`ChannelStats::act_drop`]).
#[derive(Clone, Debug)]
pub struct ActDrop {
    /// Entries with `|x|` at or below this are dropped.
    pub threshold: f32,
    /// Per channel, the fraction of its power `E[x²]` the dropped entries held.
    pub dropped_power: Vec<f32>,
}

/// What a calibration run gathers besides per-channel mean squares.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gather {
    /// Second-moment matrices (GPTQ, SparseGPT).
    pub gram: bool,
    /// Row samples (activation-sparsity thresholds).
    pub samples: bool,
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

    /// Per channel, the mean `E[x]` and the mean square `E[x²]`.
    pub fn moments(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        let r = self.rows as f64;
        (self.rows > 0 && self.sum.len() == self.sum_sq.len()).then(|| {
            (
                self.sum.iter().map(|s| s / r).collect(),
                self.sum_sq.iter().map(|s| s / r).collect(),
            )
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

    /// The magnitude threshold dropping `sparsity` of the sampled entries,
    /// and what it drops per channel, if rows were sampled.
    pub fn act_drop(&self, sparsity: f64) -> Option<ActDrop> {
        let width = self.sum_sq.len();
        if width == 0 || self.sample.is_empty() {
            return None;
        }
        let mut mags: Vec<f32> = self.sample.iter().map(|v| v.abs()).collect();
        let at = ((sparsity.clamp(0.0, 1.0) * mags.len() as f64) as usize).min(mags.len() - 1);
        let (_, &mut threshold, _) = mags.select_nth_unstable_by(at, f32::total_cmp);
        let (mut dropped, mut total) = (vec![0f64; width], vec![0f64; width]);
        for row in self.sample.chunks_exact(width) {
            for (j, &v) in row.iter().enumerate() {
                let p = f64::from(v) * f64::from(v);
                total[j] += p;
                if v.abs() <= threshold {
                    dropped[j] += p;
                }
            }
        }
        let dropped_power = dropped
            .iter()
            .zip(&total)
            .map(|(&d, &t)| if t > 0.0 { (d / t) as f32 } else { 0.0 })
            .collect();
        Some(ActDrop {
            threshold,
            dropped_power,
        })
    }

    /// Keep row `row` (the `index`-th seen) in the sample if it falls on the
    /// stride; when the sample is full, every other kept row goes and the
    /// stride doubles, so the sample stays uniform over everything seen.
    fn sample_row(&mut self, index: usize, row: &[f32]) {
        let stride = self.sample_stride.max(1);
        if !index.is_multiple_of(stride) {
            return;
        }
        self.sample.extend_from_slice(row);
        let width = row.len();
        if self.sample.len() / width > SAMPLE_ROWS {
            let kept: Vec<f32> = self
                .sample
                .chunks_exact(width)
                .step_by(2)
                .flatten()
                .copied()
                .collect();
            self.sample = kept;
            self.sample_stride = stride * 2;
        }
    }

    fn add(&mut self, x: &[f32], width: usize, what: Gather) {
        if self.sum_sq.len() != width {
            *self = ChannelStats {
                sum_sq: vec![0.0; width],
                sum: vec![0.0; width],
                gram: if what.gram {
                    vec![0.0; width * width]
                } else {
                    Vec::new()
                },
                sample_stride: 1,
                ..ChannelStats::default()
            };
        }
        if what.gram {
            add_gram(&mut self.gram, x, width);
        }
        for row in x.chunks_exact(width) {
            if what.samples {
                self.sample_row(self.rows, row);
            }
            let mut ss = 0.0f64;
            let mut amax = 0.0f32;
            for ((acc, sum), &v) in self.sum_sq.iter_mut().zip(&mut self.sum).zip(row) {
                let v2 = f64::from(v) * f64::from(v);
                *acc += v2;
                *sum += f64::from(v);
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
    gemm_strided(width, width, rows, x, 1, w, x, w, 1, &mut g, 1.0, 0.0);
    for (a, &v) in acc.iter_mut().zip(&g) {
        *a += f64::from(v);
    }
}

/// Activation statistics by value name.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// By activation value name.
    pub stats: HashMap<String, ChannelStats>,
    /// What to gather besides mean squares: second-moment matrices
    /// ([`ChannelStats::gram`], `width²` f64 per activation) and row samples
    /// ([`ChannelStats::sample`]).
    pub gather: Gather,
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
    /// An empty calibration gathering `gather` besides mean squares.
    pub fn new(gather: Gather) -> Calibration {
        Calibration {
            stats: HashMap::new(),
            gather,
        }
    }

    /// An observer for [`egret_runtime::Interpreter::run_observed`] on `g`
    /// that adds every watched activation to these statistics.
    pub fn observer<'a>(&'a mut self, g: &Graph) -> impl FnMut(NodeId, &[Value]) + 'a {
        let watch = watched(g);
        let gather = self.gather;
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
                        .add(x, width, gather);
                }
            }
        }
    }
}

/// Calibrate a causal LM (the [`Decoder`] convention) on token windows, each
/// run from an empty cache, gathering `gather` besides mean squares.
pub fn calibrate_decoder(
    model: &Model,
    windows: &[&[i64]],
    gather: Gather,
) -> Result<Calibration, String> {
    let decoder = Decoder::new(model.clone()).map_err(|e| e.to_string())?;
    let mut cal = Calibration::new(gather);
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
/// in batches of eight, gathering `gather` besides mean squares.
pub fn calibrate_encoder(
    model: &Model,
    tokenizer_json: &str,
    sentences: &[&str],
    gather: Gather,
) -> Result<Calibration, String> {
    let embedder = Embedder::new(model, tokenizer_json).map_err(|e| e.to_string())?;
    let mut cal = Calibration::new(gather);
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
        let all = Gather {
            gram: true,
            samples: true,
        };
        s.add(&[1.0, -2.0, 0.0, 0.0, 127.0, 0.0], 3, all);
        // Half the six entries are at most 1 in magnitude: 1 of channel 0's
        // power 1, none of channel 1's, all (zero) of channel 2's.
        let d = s.act_drop(0.5).unwrap();
        assert_eq!(d.threshold, 1.0);
        assert_eq!(d.dropped_power, vec![1.0, 0.0, 0.0]);
        assert_eq!(s.rows, 2);
        assert_eq!(s.sum_sq, vec![1.0, 4.0 + 127.0 * 127.0, 0.0]);
        let (mean, ms) = s.moments().unwrap();
        assert_eq!(mean, vec![0.5, 62.5, 0.0]);
        assert_eq!(ms, vec![0.5, (4.0 + 127.0 * 127.0) / 2.0, 0.0]);
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

    /// The sample stays at most SAMPLE_ROWS rows, evenly strided over
    /// everything seen.
    #[test]
    fn the_row_sample_is_bounded_and_uniform() {
        let mut s = ChannelStats::default();
        let rows: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let only = Gather {
            gram: false,
            samples: true,
        };
        s.add(&rows, 1, only);
        assert_eq!(s.sample_stride, 4);
        assert_eq!(s.sample.len(), 250);
        assert!(s
            .sample
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (4 * i) as f32));
    }
}
