//! Choosing the next token from logits: greedy, or temperature sampling
//! restricted by top-k and top-p (nucleus), from a seeded generator so a run is
//! reproducible.

use crate::error::{Result, RuntimeError};
use crate::kernels::mt19937::Mt19937;

/// How to pick tokens. `temperature <= 0` means greedy (argmax).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; `0` selects greedy decoding.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`0` = no limit).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `top_p` (`1` = no limit).
    pub top_p: f32,
    /// Seed of the random stream.
    pub seed: u64,
}

impl Default for SamplingConfig {
    /// Greedy.
    fn default() -> SamplingConfig {
        SamplingConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// A token picker: a [`SamplingConfig`] plus its random stream.
pub struct Sampler {
    cfg: SamplingConfig,
    rng: Mt19937,
}

/// Index of the largest finite-or-infinite logit (the first on ties), ignoring NaN.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    logits
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.is_nan())
        .fold(None, |best: Option<(usize, f32)>, (i, &x)| match best {
            Some((_, b)) if b >= x => best,
            _ => Some((i, x)),
        })
        .map(|(i, _)| i)
}

/// The `k` largest logits' indices, most likely first (ties: lower index first).
pub fn top_k(logits: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).filter(|&i| !logits[i].is_nan()).collect();
    let desc = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, desc);
        idx.truncate(k);
    }
    idx.sort_by(desc);
    idx
}

impl Sampler {
    /// A sampler; fails on a negative or non-finite temperature or a top-p
    /// outside `(0, 1]`.
    pub fn new(cfg: SamplingConfig) -> Result<Sampler> {
        if !cfg.temperature.is_finite() || cfg.temperature < 0.0 {
            return Err(RuntimeError::msg(format!(
                "temperature must be a finite number >= 0, got {}",
                cfg.temperature
            )));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(RuntimeError::msg(format!(
                "top-p must be in (0, 1], got {}",
                cfg.top_p
            )));
        }
        let seed = (cfg.seed ^ (cfg.seed >> 32)) as u32;
        Ok(Sampler {
            cfg,
            rng: Mt19937::new(seed),
        })
    }

    /// The candidates and their probabilities (summing to 1), most likely first,
    /// after temperature, top-k and top-p. Greedy gives the argmax alone.
    pub fn distribution(&self, logits: &[f32]) -> Result<Vec<(usize, f64)>> {
        if self.cfg.temperature <= 0.0 {
            let best = argmax(logits).ok_or_else(|| RuntimeError::msg("no finite logits"))?;
            return Ok(vec![(best, 1.0)]);
        }
        let cands = top_k(logits, self.cfg.top_k);
        let t = f64::from(self.cfg.temperature);
        let max = cands
            .first()
            .map(|&i| f64::from(logits[i]))
            .filter(|m| m.is_finite())
            .ok_or_else(|| RuntimeError::msg("no finite logits"))?;
        let mut probs: Vec<(usize, f64)> = cands
            .into_iter()
            .map(|i| (i, ((f64::from(logits[i]) - max) / t).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= total);
        let mut cum = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                cum += p.1;
                cum >= f64::from(self.cfg.top_p)
            })
            .map_or(probs.len(), |n| n + 1);
        probs.truncate(keep);
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= total);
        Ok(probs)
    }

    /// Pick the next token id from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> Result<usize> {
        let probs = self.distribution(logits)?;
        if probs.len() == 1 {
            return Ok(probs[0].0);
        }
        let u = self.rng.next_f64();
        let mut cum = 0.0;
        for &(i, p) in &probs {
            cum += p;
            if u < cum {
                return Ok(i);
            }
        }
        // Rounding left `cum` a hair under 1: the last candidate takes the rest.
        probs
            .last()
            .map(|p| p.0)
            .ok_or_else(|| RuntimeError::msg("no candidates"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f32, top_k: usize, top_p: f32) -> Sampler {
        Sampler::new(SamplingConfig {
            temperature,
            top_k,
            top_p,
            seed: 7,
        })
        .unwrap()
    }

    #[test]
    fn greedy_is_argmax_first_on_ties_and_skips_nan() {
        let l = [0.5, f32::NAN, 2.0, 2.0, -1.0];
        assert_eq!(argmax(&l), Some(2));
        assert_eq!(sampler(0.0, 0, 1.0).sample(&l).unwrap(), 2);
        assert_eq!(argmax(&[f32::NAN]), None);
        assert!(sampler(0.0, 0, 1.0).sample(&[]).is_err());
    }

    #[test]
    fn top_k_orders_by_logit() {
        let l = [0.1, 3.0, -2.0, 3.0, 1.0];
        assert_eq!(top_k(&l, 3), vec![1, 3, 4]);
        assert_eq!(top_k(&l, 0), vec![1, 3, 4, 0, 2]);
    }

    #[test]
    fn distribution_applies_temperature_top_k_and_top_p() {
        // ln(4), ln(2), ln(1), ln(1): probabilities 0.5, 0.25, 0.125, 0.125.
        let l = [2f32.ln(), 4f32.ln(), 0.0, 0.0];
        let d = sampler(1.0, 0, 1.0).distribution(&l).unwrap();
        let want = [(1, 0.5), (0, 0.25), (2, 0.125), (3, 0.125)];
        for (g, w) in d.iter().zip(want) {
            assert_eq!(g.0, w.0);
            assert!((g.1 - w.1).abs() < 1e-7, "{d:?}");
        }
        // Top-p 0.7 keeps {1, 0} (0.75), renormalised to 2/3, 1/3.
        let d = sampler(1.0, 0, 0.7).distribution(&l).unwrap();
        assert_eq!(d.len(), 2);
        assert!((d[0].1 - 2.0 / 3.0).abs() < 1e-7);
        // Top-k 3 drops index 3 (ties keep the lower index).
        let d = sampler(1.0, 3, 1.0).distribution(&l).unwrap();
        assert_eq!(d.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 0, 2]);
        assert!((d[0].1 - 0.5 / 0.875).abs() < 1e-7);
        // Temperature 0.5 squares the odds: 16:4:1:1.
        let d = sampler(0.5, 0, 1.0).distribution(&l).unwrap();
        assert!((d[0].1 - 16.0 / 22.0).abs() < 1e-7);
    }

    #[test]
    fn sampling_is_seeded_and_follows_the_distribution() {
        let l = [2f32.ln(), 4f32.ln(), 0.0, 0.0];
        let draw = |seed| {
            let mut s = Sampler::new(SamplingConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                seed,
            })
            .unwrap();
            (0..4000).map(|_| s.sample(&l).unwrap()).collect::<Vec<_>>()
        };
        let a = draw(3);
        assert_eq!(a, draw(3));
        assert_ne!(a, draw(4));
        let share = a.iter().filter(|&&i| i == 1).count() as f64 / a.len() as f64;
        assert!((share - 0.5).abs() < 0.03, "{share}");
    }

    #[test]
    fn bad_configs_are_rejected() {
        let cfg = |temperature, top_p| SamplingConfig {
            temperature,
            top_p,
            ..Default::default()
        };
        assert!(Sampler::new(cfg(-1.0, 1.0)).is_err());
        assert!(Sampler::new(cfg(f32::NAN, 1.0)).is_err());
        assert!(Sampler::new(cfg(1.0, 0.0)).is_err());
        assert!(Sampler::new(cfg(1.0, 1.5)).is_err());
    }
}
