//! Perplexity of a causal language model over a token stream: the quality meter
//! every compression result is judged by.
//!
//! Protocol: the tokens are cut into non-overlapping windows of `window` tokens
//! from the start (the last one may be shorter); each window is run on its own,
//! from an empty cache, and its logits at position `j` score token `j + 1`. So a
//! full window predicts `window - 1` tokens. The perplexity is
//! `exp(total negative log-likelihood / predicted tokens)` over all windows,
//! with log-softmax computed in f64.
//!
//! [`streaming_perplexity`] is the other protocol: the whole stream runs through
//! one cache, `chunk` tokens at a time (1 = token by token), and the decoder's
//! KV policy evicts as it goes, so every token but the first is predicted with
//! whatever context the policy kept.

use crate::error::{Result, RuntimeError};
use crate::generate::Decoder;
use std::time::{Duration, Instant};

/// The score of one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowScore {
    /// Tokens in the window.
    pub tokens: usize,
    /// Tokens predicted (`tokens - 1`).
    pub predicted: usize,
    /// Sum of the negative log-likelihoods (nats) of the predicted tokens.
    pub nll: f64,
}

impl WindowScore {
    /// This window's own perplexity.
    pub fn perplexity(&self) -> f64 {
        (self.nll / self.predicted.max(1) as f64).exp()
    }
}

/// The result of [`perplexity`].
#[derive(Clone, Debug, PartialEq)]
pub struct PerplexityReport {
    /// Every scored window, in order.
    pub windows: Vec<WindowScore>,
    /// Most bytes of keys and values a window's cache held.
    pub peak_kv_bytes: usize,
}

impl PerplexityReport {
    /// Tokens predicted over all windows.
    pub fn predicted(&self) -> usize {
        self.windows.iter().map(|w| w.predicted).sum()
    }

    /// Mean negative log-likelihood per predicted token (nats).
    pub fn mean_nll(&self) -> f64 {
        self.windows.iter().map(|w| w.nll).sum::<f64>() / self.predicted().max(1) as f64
    }

    /// The perplexity over all windows.
    pub fn perplexity(&self) -> f64 {
        self.mean_nll().exp()
    }
}

/// The windows of `ids` the protocol scores: consecutive chunks of `window`
/// tokens, at most `max_windows` of them (`None` = all), skipping a trailing chunk
/// too short to predict anything.
pub fn windows(ids: &[i64], window: usize, max_windows: Option<usize>) -> Vec<&[i64]> {
    ids.chunks(window.max(2))
        .filter(|w| w.len() >= 2)
        .take(max_windows.unwrap_or(usize::MAX))
        .collect()
}

/// Negative log-likelihood (nats) of each `targets[j]` under the logits row `j`
/// of `logits` (`[targets.len(), vocab]`, row-major).
pub fn token_nll(logits: &[f32], vocab: usize, targets: &[i64]) -> Result<Vec<f64>> {
    if vocab == 0 || logits.len() < targets.len() * vocab {
        return Err(RuntimeError::msg(format!(
            "{} logits cannot score {} tokens over a vocabulary of {vocab}",
            logits.len(),
            targets.len()
        )));
    }
    targets
        .iter()
        .zip(logits.chunks_exact(vocab))
        .map(|(&t, row)| {
            let target = usize::try_from(t)
                .ok()
                .and_then(|t| row.get(t))
                .ok_or_else(|| RuntimeError::msg(format!("token id {t} outside the vocabulary")))?;
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let lse = max
                + row
                    .iter()
                    .map(|&x| (f64::from(x) - max).exp())
                    .sum::<f64>()
                    .ln();
            Ok(lse - f64::from(*target))
        })
        .collect()
}

/// Score `ids` window by window (see the module docs). `progress(done, total)`
/// is called after each window.
pub fn perplexity(
    decoder: &Decoder,
    ids: &[i64],
    window: usize,
    max_windows: Option<usize>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityReport> {
    let chunks = windows(ids, window, max_windows);
    if chunks.is_empty() {
        return Err(RuntimeError::msg(format!(
            "perplexity needs at least 2 tokens, the text has {}",
            ids.len()
        )));
    }
    let mut scores = Vec::with_capacity(chunks.len());
    let mut peak_kv_bytes = 0;
    for (n, w) in chunks.iter().enumerate() {
        let mut cache = decoder.empty_cache()?;
        let logits = decoder.forward(w, &mut cache)?;
        peak_kv_bytes = peak_kv_bytes.max(cache.peak_bytes());
        let vocab = logits.shape().get(1).copied().unwrap_or(0);
        let nll = token_nll(logits.as_slice::<f32>()?, vocab, &w[1..])?;
        scores.push(WindowScore {
            tokens: w.len(),
            predicted: nll.len(),
            nll: nll.iter().sum(),
        });
        progress(n + 1, chunks.len());
    }
    Ok(PerplexityReport {
        windows: scores,
        peak_kv_bytes,
    })
}

/// The result of [`streaming_perplexity`].
#[derive(Clone, Debug, PartialEq)]
pub struct StreamReport {
    /// Tokens run.
    pub tokens: usize,
    /// Tokens predicted (`tokens - 1`).
    pub predicted: usize,
    /// Sum of the negative log-likelihoods (nats).
    pub nll: f64,
    /// Most positions the cache held at once.
    pub peak_kv_len: usize,
    /// Most bytes of keys and values the cache held at once.
    pub peak_kv_bytes: usize,
    /// Positions cached at the end.
    pub final_kv_len: usize,
    /// Wall time of the runs.
    pub elapsed: Duration,
}

impl StreamReport {
    /// Mean negative log-likelihood per predicted token (nats).
    pub fn mean_nll(&self) -> f64 {
        self.nll / self.predicted.max(1) as f64
    }

    /// The perplexity of the stream.
    pub fn perplexity(&self) -> f64 {
        self.mean_nll().exp()
    }

    /// Tokens run per second.
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Score `ids` as one stream through one cache, `chunk` tokens per run, with
/// the decoder's KV policy evicting (see the module docs). `progress(done,
/// total)` is called after each run with tokens done.
pub fn streaming_perplexity(
    decoder: &Decoder,
    ids: &[i64],
    chunk: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<StreamReport> {
    if ids.len() < 2 {
        return Err(RuntimeError::msg(format!(
            "perplexity needs at least 2 tokens, the text has {}",
            ids.len()
        )));
    }
    if chunk == 0 {
        return Err(RuntimeError::msg("the streaming chunk must hold a token"));
    }
    let mut cache = decoder.empty_cache()?;
    let (mut nll, mut predicted) = (0.0, 0);
    let start = Instant::now();
    for (n, piece) in ids.chunks(chunk).enumerate() {
        let at = n * chunk;
        let logits = decoder.forward(piece, &mut cache)?;
        let vocab = logits.shape().get(1).copied().unwrap_or(0);
        let targets = &ids[at + 1..(at + 1 + piece.len()).min(ids.len())];
        let scores = token_nll(logits.as_slice::<f32>()?, vocab, targets)?;
        nll += scores.iter().sum::<f64>();
        predicted += scores.len();
        progress(at + piece.len(), ids.len());
    }
    Ok(StreamReport {
        tokens: ids.len(),
        predicted,
        nll,
        peak_kv_len: cache.peak_len(),
        peak_kv_bytes: cache.peak_bytes(),
        final_kv_len: cache.len(),
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_protocol() {
        let ids: Vec<i64> = (0..11).collect();
        let w = windows(&ids, 4, None);
        assert_eq!(w, vec![&ids[0..4], &ids[4..8], &ids[8..11]]);
        assert_eq!(windows(&ids, 4, Some(2)).len(), 2);
        // A trailing single token predicts nothing and is dropped.
        assert_eq!(windows(&ids[..9], 4, None).len(), 2);
    }

    #[test]
    fn nll_is_the_negative_log_softmax() {
        // Row 0: uniform over 4 -> ln 4. Row 1: p(target) = e^2/(e^2+3).
        let logits = [0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        let nll = token_nll(&logits, 4, &[3, 0]).unwrap();
        assert!((nll[0] - 4f64.ln()).abs() < 1e-12);
        let e2 = 2f64.exp();
        assert!((nll[1] + (e2 / (e2 + 3.0)).ln()).abs() < 1e-12);
        assert!(token_nll(&logits, 4, &[4, 0]).is_err());
        assert!(token_nll(&logits, 4, &[-1, 0]).is_err());
        assert!(token_nll(&logits, 4, &[0, 0, 0]).is_err());
        let r = PerplexityReport {
            windows: vec![WindowScore {
                tokens: 3,
                predicted: 2,
                nll: nll.iter().sum(),
            }],
            peak_kv_bytes: 0,
        };
        assert!((r.perplexity() - ((nll[0] + nll[1]) / 2.0).exp()).abs() < 1e-12);
    }
}
