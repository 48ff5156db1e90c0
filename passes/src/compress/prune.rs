//! Pruning masks for the pruning family of issue 8: which weights of an
//! `n × k` matrix (rows = output channels) to zero.
//!
//! * **Magnitude**: score `|W_ij|`.
//! * **Wanda** (Sun et al., 2023): score `|W_ij|·‖X_j‖`, the weight times the
//!   calibration RMS of the input channel it multiplies, compared within each
//!   output row (the paper's per-output comparison group).
//! * **2:4**: in every group of 4 consecutive inputs of a row, the 2 best
//!   scores stay (the semi-structured pattern sparse tensor cores and
//!   compressed kernels use).

/// How weights are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// `|W|`.
    Magnitude,
    /// `|W|·‖X_j‖`.
    Wanda,
}

/// The score of every weight of the `n × k` row-major `w`. `input_rms`
/// (length `k`) is needed for [`Criterion::Wanda`]; without it Wanda is
/// magnitude.
pub fn scores(w: &[f32], k: usize, criterion: Criterion, input_rms: Option<&[f32]>) -> Vec<f32> {
    match (criterion, input_rms) {
        (Criterion::Wanda, Some(rms)) if rms.len() == k => w
            .chunks(k.max(1))
            .flat_map(|row| row.iter().zip(rms).map(|(&x, &r)| x.abs() * r))
            .collect(),
        _ => w.iter().map(|x| x.abs()).collect(),
    }
}

/// Keep-mask zeroing the `round(sparsity·k)` lowest scores of every row
/// (ties: the later column goes first).
pub fn unstructured(scores: &[f32], k: usize, sparsity: f64) -> Vec<bool> {
    let drop = ((sparsity.clamp(0.0, 1.0) * k as f64).round() as usize).min(k);
    let mut keep = vec![true; scores.len()];
    let mut order: Vec<usize> = Vec::with_capacity(k);
    for (row, mask) in scores.chunks(k.max(1)).zip(keep.chunks_mut(k.max(1))) {
        order.clear();
        order.extend(0..row.len());
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)));
        for &j in &order[..drop.min(row.len())] {
            mask[j] = false;
        }
    }
    keep
}

/// Keep-mask with exactly 2 of every 4 consecutive weights of a row (the 2
/// best scores; ties keep the earlier column). Needs `k % 4 == 0`.
pub fn two_of_four(scores: &[f32], k: usize) -> Option<Vec<bool>> {
    if k == 0 || !k.is_multiple_of(4) {
        return None;
    }
    let mut keep = vec![false; scores.len()];
    for (group, mask) in scores.chunks(4).zip(keep.chunks_mut(4)) {
        let mut idx = [0usize, 1, 2, 3];
        idx.sort_by(|&a, &b| group[b].total_cmp(&group[a]).then(a.cmp(&b)));
        mask[idx[0]] = true;
        mask[idx[1]] = true;
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
        let keep = unstructured(&scores(&w, 4, Criterion::Magnitude, None), 4, 0.5);
        assert_eq!(keep, [false, true, false, true, true, false, true, false]);
        assert_eq!(apply(&w, &keep), [0.0, -3.0, 0.0, 2.0, 4.0, 0.0, -1.0, 0.0]);
        assert!(unstructured(&w, 4, 0.0).iter().all(|&k| k));
        assert!(unstructured(&w, 4, 1.0).iter().all(|&k| !k));
    }

    /// Wanda keeps a small weight on a loud input over a larger weight on a
    /// quiet one, where magnitude does the opposite.
    #[test]
    fn wanda_weighs_by_the_input_rms() {
        let w = [1.0, 0.3];
        let rms = [0.1, 10.0];
        let mag = unstructured(&scores(&w, 2, Criterion::Magnitude, Some(&rms)), 2, 0.5);
        let wanda = unstructured(&scores(&w, 2, Criterion::Wanda, Some(&rms)), 2, 0.5);
        assert_eq!(mag, [true, false]);
        assert_eq!(wanda, [false, true]);
    }

    #[test]
    fn two_of_four_keeps_half_of_every_group() {
        let s = [0.1, 0.9, 0.5, 0.2, 1.0, 1.0, 1.0, 0.0];
        let keep = two_of_four(&s, 8).unwrap();
        assert_eq!(keep, [false, true, true, false, true, true, false, false]);
        assert!(two_of_four(&s, 6).is_none());
    }
}
