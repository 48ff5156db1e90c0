//! Which channels of a group to keep, and what their removal costs.
//!
//! The score of a channel is the output power its removal adds. Removing
//! channel `c` of the reducer's input `h` drops `W[:, c]·h_c` from the output;
//! its mean `W[:, c]·E[h_c]` moves into the bias ([`compensation`]), so what
//! remains is the fluctuation `Var(h_c)·‖W[:, c]‖²` (FLAP, An et al., 2024;
//! SAAP's importance is of the same family: a channel's calibrated
//! contribution to the layer output, compared across layers after
//! standardisation). Without calibration the score falls back to the
//! weights alone ([`magnitude`]).

/// `‖W[:, c]‖²` for every column of the `[n, k]` matrix `w`.
pub fn col_norms_sq(w: &[f32], k: usize) -> Vec<f64> {
    let mut out = vec![0f64; k];
    for row in w.chunks_exact(k) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += f64::from(v) * f64::from(v);
        }
    }
    out
}

/// `‖W[r, :]‖²` for every row of the `[n, k]` matrix `w`.
pub fn row_norms_sq(w: &[f32], k: usize) -> Vec<f64> {
    w.chunks_exact(k)
        .map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect()
}

/// The fluctuation score of each input channel of the reducer `w` (`[n, k]`)
/// from its input's per-channel mean and mean square.
pub fn fluctuation(w: &[f32], k: usize, mean: &[f64], mean_sq: &[f64]) -> Vec<f64> {
    col_norms_sq(w, k)
        .iter()
        .zip(mean.iter().zip(mean_sq))
        .map(|(&norm, (&m, &ms))| (ms - m * m).max(0.0) * norm)
        .collect()
}

/// The calibration-free score: the reducer's column norm times the summed
/// row norms of the producers' rows that make the channel (each producer
/// given as `([n, k] weight, k)`).
pub fn magnitude(w: &[f32], k: usize, producers: &[(&[f32], usize)]) -> Vec<f64> {
    let mut made = vec![0f64; k];
    for &(p, pk) in producers {
        for (m, r) in made.iter_mut().zip(row_norms_sq(p, pk)) {
            *m += r;
        }
    }
    col_norms_sq(w, k)
        .iter()
        .zip(&made)
        .map(|(&c, &m)| c * m)
        .collect()
}

/// The bias change that keeps the reducer's mean output when the channels
/// `dropped` of its input go: `Σ_{c ∈ dropped} W[:, c]·E[h_c]` (`[n]`).
pub fn compensation(w: &[f32], k: usize, mean: &[f64], dropped: &[usize]) -> Vec<f32> {
    w.chunks_exact(k)
        .map(|row| {
            dropped
                .iter()
                .map(|&c| f64::from(row[c]) * mean[c])
                .sum::<f64>() as f32
        })
        .collect()
}

/// `count` rounded to the nearest multiple of `align`, within
/// `[min(align, width), width]`.
pub fn aligned(count: usize, width: usize, align: usize) -> usize {
    let align = align.max(1);
    let rounded = (count + align / 2) / align * align;
    rounded.clamp(align.min(width), width)
}

/// The `keep` highest-scoring channels, in increasing index order.
pub fn top(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

/// How many channels each group keeps when `drop` (a fraction) of all
/// channels go, chosen globally: each group's scores are standardised
/// (minus their mean, over their standard deviation), pooled, and the
/// lowest `drop` of the pool go, so a group whose channels matter
/// unevenly loses more of its weak ones. Counts are then [`aligned`].
pub fn global_keep(scores: &[Vec<f64>], drop: f64, align: usize) -> Vec<usize> {
    let z: Vec<Vec<f64>> = scores.iter().map(|s| standardised(s)).collect();
    let mut pool: Vec<f64> = z.iter().flatten().copied().collect();
    let total = pool.len();
    let dropped = ((drop.clamp(0.0, 1.0) * total as f64).round() as usize).min(total);
    if dropped == 0 {
        return scores.iter().map(Vec::len).collect();
    }
    pool.sort_by(f64::total_cmp);
    let threshold = pool[dropped - 1];
    z.iter()
        .map(|g| aligned(g.iter().filter(|&&v| v > threshold).count(), g.len(), align))
        .collect()
}

/// `(s − mean) / std`, or zeros when the scores do not vary.
fn standardised(s: &[f64]) -> Vec<f64> {
    let n = s.len().max(1) as f64;
    let mean = s.iter().sum::<f64>() / n;
    let var = s.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let sd = var.sqrt();
    s.iter()
        .map(|v| if sd > 0.0 { (v - mean) / sd } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluctuation_is_variance_times_column_power() {
        // W [2, 3]: column norms² 1+16, 4+25, 9+36.
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let s = fluctuation(&w, 3, &[1.0, 0.0, 2.0], &[2.0, 1.0, 4.0]);
        assert_eq!(s, vec![17.0, 29.0, 0.0]);
        // Dropping channels 0 and 2 moves 1·1 + 3·2 and 4·1 + 6·2 into the bias.
        assert_eq!(
            compensation(&w, 3, &[1.0, 0.0, 2.0], &[0, 2]),
            vec![7.0, 16.0]
        );
        assert_eq!(top(&s, 2), vec![0, 1]);
        let m = magnitude(&w, 3, &[(&[1.0, 1.0, 2.0, 0.0, 0.0, 3.0], 2)]);
        assert_eq!(m, vec![17.0 * 2.0, 29.0 * 4.0, 45.0 * 9.0]);
    }

    #[test]
    fn counts_are_aligned_and_bounded() {
        assert_eq!(aligned(1150, 1536, 64), 1152);
        assert_eq!(aligned(10, 1536, 64), 64);
        assert_eq!(aligned(1600, 1536, 64), 1536);
        assert_eq!(aligned(3, 4, 64), 4);
    }

    #[test]
    fn global_allocation_follows_each_groups_spread() {
        // Group 0: 112 strong channels and 16 dead ones; group 1: a ramp.
        // Standardised, the dead 16 are the lowest of the pool, then the
        // ramp's bottom: a quarter of 256 takes 16 from group 0, 48 from 1.
        let a: Vec<f64> = (0..128).map(|i| if i < 112 { 1.0 } else { 0.0 }).collect();
        let b: Vec<f64> = (0..128).map(|i| i as f64).collect();
        assert_eq!(global_keep(&[a, b], 0.25, 16), vec![112, 80]);
        assert_eq!(global_keep(&[vec![1.0; 32]], 0.0, 16), vec![32]);
    }
}
