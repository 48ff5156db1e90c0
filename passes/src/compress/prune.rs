//! Pruning: which weights of an `n × k` matrix (rows = output channels) to
//! zero, and how the survivors are chosen.
//!
//! * **Magnitude**: score `|W_ij|`.
//! * **Wanda** (Sun et al., 2023): score `|W_ij|·‖X_j‖`, the weight times the
//!   calibration RMS of the input channel it multiplies, compared within each
//!   output row (the paper's per-output comparison group).
//! * **SparseGPT** (Frantar & Alistarh, 2023): the optimal-brain-surgeon walk
//!   of [`crate::quantize::gptq`] with "round to zero" as the rounding. Every
//!   [`SPARSEGPT_BLOCK`] columns each row drops the weights with the smallest
//!   `w² / [H⁻¹]_jj` (on the weights as compensated so far), and every dropped
//!   weight's error is moved onto the columns not yet visited.
//!
//! Patterns: a percentage of every row (unstructured), or **2:4** (in every
//! group of 4 consecutive inputs of a row the 2 best stay: the semi-structured
//! pattern of sparse tensor cores).
//!
//! The kept weights are stored in egret's bitmap format
//! ([`egret_ir::sparse::SparseMatrix`]) and multiplied by
//! `egret::MatMulSparse`, whose kernel skips what the bitmap drops.

/// Columns per SparseGPT mask-selection block (the paper's 128).
pub const SPARSEGPT_BLOCK: usize = 128;

/// How weights are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `|W|`.
    Magnitude,
    /// `|W|·‖X_j‖`.
    Wanda,
    /// OBS with error compensation (needs calibration second moments;
    /// without them it is magnitude pruning).
    SparseGpt,
}

impl Method {
    /// Every method, in the order the command line lists them.
    pub const ALL: [Method; 3] = [Method::Magnitude, Method::Wanda, Method::SparseGpt];

    /// The method's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Magnitude => "magnitude",
            Method::Wanda => "wanda",
            Method::SparseGpt => "sparsegpt",
        }
    }
}

/// Which weights of a row may be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// This percentage (1–99) of every row, anywhere.
    Percent(u8),
    /// 2 of every 4 consecutive weights of a row (`k` a multiple of 4).
    TwoOfFour,
}

impl Pattern {
    /// The fraction of weights dropped.
    pub fn sparsity(self) -> f64 {
        match self {
            Pattern::Percent(p) => f64::from(p) / 100.0,
            Pattern::TwoOfFour => 0.5,
        }
    }

    /// Whether rows of `k` can take the pattern.
    pub fn fits(self, k: usize) -> bool {
        match self {
            Pattern::Percent(_) => k > 0,
            Pattern::TwoOfFour => k > 0 && k.is_multiple_of(4),
        }
    }

    /// The keep-mask of the scores of positions `start..start + len` of a
    /// row: unstructured drops the lowest, as many as keep the row's
    /// total at `round(sparsity · k)` however the row is cut into stretches;
    /// 2:4 drops the 2 lowest of every 4 (`start` a multiple of 4).
    pub fn select(self, scores: &[f32], start: usize, keep: &mut [bool]) {
        match self {
            Pattern::Percent(p) => {
                let upto = |j: usize| (f64::from(p) / 100.0 * j as f64).round() as usize;
                let drop = upto(start + scores.len()) - upto(start);
                drop_lowest(scores, drop, keep);
            }
            Pattern::TwoOfFour => {
                for (group, mask) in scores.chunks(4).zip(keep.chunks_mut(4)) {
                    drop_lowest(group, group.len() / 2, mask);
                }
            }
        }
    }
}

/// Keep-mask of `scores` without the `drop` lowest (ties: the later position
/// goes first).
fn drop_lowest(scores: &[f32], drop: usize, keep: &mut [bool]) {
    let len = scores.len();
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
    keep[..len].fill(true);
    for &j in &order[..drop.min(len)] {
        keep[j] = false;
    }
}

/// The score of every weight of the `n × k` row-major `w` for magnitude or
/// Wanda (`input_ms`: the calibration mean square of each of the `k` inputs;
/// without it Wanda is magnitude).
pub fn scores(w: &[f32], k: usize, method: Method, input_ms: Option<&[f32]>) -> Vec<f32> {
    match (method, input_ms) {
        (Method::Wanda, Some(ms)) if ms.len() == k => {
            let rms: Vec<f32> = ms.iter().map(|v| v.max(0.0).sqrt()).collect();
            w.chunks(k.max(1))
                .flat_map(|row| row.iter().zip(&rms).map(|(&x, &r)| x.abs() * r))
                .collect()
        }
        _ => w.iter().map(|x| x.abs()).collect(),
    }
}

/// Keep-mask of the `n × k` scores under `pattern`, row by row (`None` if
/// rows of `k` cannot take it).
pub fn mask(scores: &[f32], k: usize, pattern: Pattern) -> Option<Vec<bool>> {
    if !pattern.fits(k) {
        return None;
    }
    let mut keep = vec![true; scores.len()];
    for (row, m) in scores.chunks(k).zip(keep.chunks_mut(k)) {
        pattern.select(row, 0, m);
    }
    Some(keep)
}

/// `w` with the weights the mask drops set to zero.
pub fn apply(w: &[f32], keep: &[bool]) -> Vec<f32> {
    w.iter()
        .zip(keep)
        .map(|(&x, &k)| if k { x } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstructured_drops_the_lowest_scores_of_each_row() {
        let w = [0.1, -3.0, 0.5, 2.0, /* row 2 */ 4.0, 0.0, -1.0, 0.2];
        let keep = mask(
            &scores(&w, 4, Method::Magnitude, None),
            4,
            Pattern::Percent(50),
        )
        .unwrap();
        assert_eq!(keep, [false, true, false, true, true, false, true, false]);
        assert_eq!(apply(&w, &keep), [0.0, -3.0, 0.0, 2.0, 4.0, 0.0, -1.0, 0.0]);
        let keep = mask(&w, 4, Pattern::Percent(75)).unwrap();
        assert_eq!(keep.iter().filter(|&&k| k).count(), 2);
    }

    /// Wanda keeps a small weight on a loud input over a larger weight on a
    /// quiet one, where magnitude does the opposite.
    #[test]
    fn wanda_weighs_by_the_input_rms() {
        let w = [1.0, 0.3];
        let ms = [0.01, 100.0];
        let pick = |m| mask(&scores(&w, 2, m, Some(&ms)), 2, Pattern::Percent(50)).unwrap();
        assert_eq!(pick(Method::Magnitude), [true, false]);
        assert_eq!(pick(Method::Wanda), [false, true]);
    }

    #[test]
    fn two_of_four_keeps_half_of_every_group() {
        let s = [0.1, 0.9, 0.5, 0.2, 1.0, 1.0, 1.0, 0.0];
        let keep = mask(&s, 8, Pattern::TwoOfFour).unwrap();
        assert_eq!(keep, [false, true, true, false, true, true, false, false]);
        assert!(mask(&s, 6, Pattern::TwoOfFour).is_none());
    }
}
