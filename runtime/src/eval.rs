//! Quality evaluation of embedding models: sentence embeddings and cosines.
//!
//! A sentence embedding is the sentence-transformers recipe: the mean of the
//! encoder's `last_hidden_state` over the sentence's **real** tokens (special
//! tokens included, padding excluded), then L2-normalised. Sentences are run in
//! padded batches, so the attention mask matters twice: inside the encoder and
//! in the pooling. (Perplexity for language models lives in
//! [`crate::perplexity`].)

use crate::error::{Result, RuntimeError};
use crate::executor::Executor;
use crate::interpreter::Interpreter;
use crate::tokenizer::Tokenizer;
use egret_ir::{Model, Tensor, Value};
use std::collections::HashMap;

/// Sentences per encoder run.
const BATCH: usize = 8;

/// An encoder with inputs `input_ids`, `attention_mask` and optionally
/// `token_type_ids` (`[batch, seq]` i64) whose first output is
/// `[batch, seq, width]`, plus its tokenizer.
pub struct Embedder<'m> {
    interp: Interpreter<'m>,
    /// Runs [`Embedder::embed_ids`] when set; the interpreter otherwise.
    executor: Option<Box<dyn Executor + 'm>>,
    tokenizer: Tokenizer,
    token_types: bool,
}

impl<'m> Embedder<'m> {
    /// Prepare `model` with the tokenizer in `tokenizer_json`.
    pub fn new(model: &'m Model, tokenizer_json: &str) -> Result<Embedder<'m>> {
        let interp = Interpreter::for_model(model)?;
        let g = interp.graph();
        let names: Vec<&str> = g.inputs.iter().map(|&o| g.value_name(o)).collect();
        for need in ["input_ids", "attention_mask"] {
            if !names.contains(&need) {
                return Err(RuntimeError::Input {
                    name: need.into(),
                    msg: format!("an embedding model needs this input (it has {names:?})"),
                });
            }
        }
        let token_types = names.contains(&"token_type_ids");
        Ok(Embedder {
            interp,
            executor: None,
            tokenizer: Tokenizer::from_json(tokenizer_json)?,
            token_types,
        })
    }

    /// Run [`Embedder::embed_ids`] on `executor` (built over the same model)
    /// instead of the interpreter. Observed runs stay on the interpreter.
    pub fn use_executor(&mut self, executor: Box<dyn Executor + 'm>) {
        self.executor = Some(executor);
    }

    /// The token ids of `text`, special tokens included.
    pub fn tokens(&self, text: &str) -> Result<Vec<i64>> {
        self.tokenizer.encode(text, true)
    }

    /// L2-normalised embeddings of `texts`, in order. `progress(done)` is called
    /// after every batch with the number of texts embedded so far.
    pub fn embed(&self, texts: &[&str], progress: &mut dyn FnMut(usize)) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            let ids = chunk
                .iter()
                .map(|t| self.tokens(t))
                .collect::<Result<Vec<_>>>()?;
            out.extend(self.embed_ids(&ids)?);
            progress(out.len());
        }
        Ok(out)
    }

    /// Embeddings of pre-tokenized sentences, run as one right-padded batch.
    pub fn embed_ids(&self, ids: &[Vec<i64>]) -> Result<Vec<Vec<f32>>> {
        self.embed_ids_observed(ids, &mut |_, _| {})
    }

    /// [`Embedder::embed_ids`], calling `observe(node, outputs)` after every
    /// operator node, as [`Interpreter::run_observed`] does. Used by calibration.
    pub fn embed_ids_observed(
        &self,
        ids: &[Vec<i64>],
        observe: &mut dyn FnMut(egret_ir::NodeId, &[Value]),
    ) -> Result<Vec<Vec<f32>>> {
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0);
        if seq == 0 {
            return Ok(vec![Vec::new(); ids.len()]);
        }
        let (mut flat, mut mask) = (Vec::new(), Vec::new());
        for s in ids {
            flat.extend(
                s.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, seq - s.len())),
            );
            mask.extend((0..seq).map(|j| i64::from(j < s.len())));
        }
        let shape = vec![ids.len(), seq];
        let t = |v: Vec<i64>| Tensor::from_vec(shape.clone(), v).map(Value::Tensor);
        let mut inputs = HashMap::from([
            ("input_ids".to_string(), t(flat)?),
            ("attention_mask".to_string(), t(mask.clone())?),
        ]);
        if self.token_types {
            inputs.insert("token_type_ids".into(), t(vec![0; ids.len() * seq])?);
        }
        let outs = match &self.executor {
            Some(exec) => {
                let g = self.interp.graph();
                let ordered = g
                    .inputs
                    .iter()
                    .map(|&o| {
                        inputs
                            .remove(g.value_name(o))
                            .ok_or_else(|| RuntimeError::Input {
                                name: g.value_name(o).to_string(),
                                msg: "an input egret does not know how to fill".into(),
                            })
                    })
                    .collect::<Result<Vec<_>>>()?;
                exec.execute(ordered)?
            }
            None => self.interp.run_named_observed(inputs, observe)?,
        };
        let hidden = outs
            .first()
            .ok_or_else(|| RuntimeError::msg("the embedding model has no output"))?
            .as_tensor()?;
        let mut pooled = mean_pool(hidden, &mask)?;
        pooled.iter_mut().for_each(|v| l2_normalize(v));
        Ok(pooled)
    }
}

/// Mean of `hidden` (`[batch, seq, width]`, f32) over the positions where
/// `mask` (`[batch, seq]`, row-major) is non-zero; a row with no real token
/// pools to zeros.
pub fn mean_pool(hidden: &Tensor, mask: &[i64]) -> Result<Vec<Vec<f32>>> {
    let &[batch, seq, width] = hidden.shape() else {
        return Err(RuntimeError::msg(format!(
            "pooling needs a [batch, seq, width] output, got {:?}",
            hidden.shape()
        )));
    };
    if mask.len() != batch * seq {
        return Err(RuntimeError::msg(format!(
            "mask of {} values for a {batch}x{seq} batch",
            mask.len()
        )));
    }
    let h = hidden.as_slice::<f32>()?;
    let rows = h.chunks_exact(width.max(1));
    let mut out = vec![vec![0f64; width]; batch];
    let mut counts = vec![0usize; batch];
    for (i, (row, &m)) in rows.zip(mask).enumerate() {
        if m != 0 {
            let b = i / seq;
            counts[b] += 1;
            out[b]
                .iter_mut()
                .zip(row)
                .for_each(|(o, &x)| *o += f64::from(x));
        }
    }
    Ok(out
        .into_iter()
        .zip(counts)
        .map(|(v, n)| {
            v.into_iter()
                .map(|x| (x / n.max(1) as f64) as f32)
                .collect()
        })
        .collect())
}

/// Scale `v` to unit L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let n = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / n) as f32);
    }
}

/// Cosine similarity of two vectors (0 if either is zero), in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum::<f64>()
    };
    let d = (dot(a, a) * dot(b, b)).sqrt();
    if d > 0.0 {
        dot(a, b) / d
    } else {
        0.0
    }
}

/// Mean and minimum [`cosine`] between paired embeddings (the same sentences
/// embedded by two models); `(0, +inf)` for no pairs.
pub fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f64) {
    let c: Vec<f64> = a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect();
    let mean = c.iter().sum::<f64>() / c.len().max(1) as f64;
    (mean, c.iter().copied().fold(f64::INFINITY, f64::min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ignores_padding() {
        // Two sentences: 2 real tokens, then 1 real token + 1 pad.
        let h =
            Tensor::from_vec(vec![2, 2, 2], vec![1f32, 2., 3., 6., 5., 5., 100., -100.]).unwrap();
        let p = mean_pool(&h, &[1, 1, 1, 0]).unwrap();
        assert_eq!(p, vec![vec![2., 4.], vec![5., 5.]]);
        assert!(mean_pool(&h, &[1, 1, 1]).is_err());
        let flat = Tensor::from_vec(vec![4], vec![0f32; 4]).unwrap();
        assert!(mean_pool(&flat, &[1; 4]).is_err());
        assert_eq!(mean_pool(&h, &[0; 4]).unwrap(), vec![vec![0., 0.]; 2]);
    }

    #[test]
    fn normalise_and_cosine() {
        let mut v = vec![3f32, 4.];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0f32; 2];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0; 2]);
        assert!((cosine(&[1., 0.], &[1., 1.]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert_eq!(cosine(&[1., 2.], &[-2., 1.]), 0.0);
        assert_eq!(cosine(&[0., 0.], &[1., 1.]), 0.0);
    }
}
