//! Choosing one scheme per weight under an error budget.
//!
//! Each weight has options (keep it as it is, or one quantized alternative per
//! scheme), each with a cost (bytes, or modelled time) and a predicted error.
//! Predicted errors add up over weights. Minimising `cost + λ·error` picks each
//! weight's option independently; the total error falls as `λ` grows, so the
//! cheapest choice within a budget is found by bisection on `λ` (the
//! Lagrangian relaxation of the knapsack-like problem; exact on the convex
//! hull of each weight's options, which is where the useful choices lie).

/// One option of one weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Option_ {
    /// Cost to minimise (bytes, or modelled nanoseconds).
    pub cost: f64,
    /// Predicted error (relative output noise power).
    pub err: f64,
}

/// The option index each weight takes at multiplier `lambda`.
pub fn pick(weights: &[Vec<Option_>], lambda: f64) -> Vec<usize> {
    weights
        .iter()
        .map(|opts| {
            let score = |o: &Option_| o.cost + lambda * o.err;
            (0..opts.len())
                .min_by(|&a, &b| {
                    score(&opts[a])
                        .total_cmp(&score(&opts[b]))
                        .then(opts[a].err.total_cmp(&opts[b].err))
                })
                .unwrap_or(0)
        })
        .collect()
}

/// Total predicted error of a choice.
pub fn total_err(weights: &[Vec<Option_>], choice: &[usize]) -> f64 {
    weights
        .iter()
        .zip(choice)
        .filter_map(|(o, &i)| o.get(i))
        .map(|o| o.err)
        .sum()
}

/// The cheapest choice whose total predicted error is at most `budget`, found
/// by bisection on the multiplier, then filled greedily: the relaxation only
/// reaches choices on the convex hull, so budget it leaves unspent goes to
/// the cheaper options with the largest saving that still fit. Every weight
/// must have a zero-error option (keeping it), so a choice within any budget
/// ≥ 0 exists.
pub fn within_budget(weights: &[Vec<Option_>], budget: f64) -> Vec<usize> {
    let cheapest = pick(weights, 0.0);
    if total_err(weights, &cheapest) <= budget {
        return cheapest;
    }
    let mut choice = bisect(weights, budget);
    fill(weights, &mut choice, budget);
    choice
}

/// Spend what `budget` leaves: while some weight has a cheaper option that
/// keeps the total within it, take the one saving the most.
fn fill(weights: &[Vec<Option_>], choice: &mut [usize], budget: f64) {
    let mut total = total_err(weights, choice);
    loop {
        let mut best: Option<(usize, usize, f64)> = None;
        for (w, opts) in weights.iter().enumerate() {
            let cur = &opts[choice[w]];
            for (i, o) in opts.iter().enumerate() {
                let saving = cur.cost - o.cost;
                if saving > 0.0
                    && total - cur.err + o.err <= budget
                    && best.is_none_or(|(_, _, s)| saving > s)
                {
                    best = Some((w, i, saving));
                }
            }
        }
        let Some((w, i, _)) = best else { return };
        total += weights[w][i].err - weights[w][choice[w]].err;
        choice[w] = i;
    }
}

/// The bisection on the multiplier: the cheapest choice within `budget`
/// among those some multiplier picks.
fn bisect(weights: &[Vec<Option_>], budget: f64) -> Vec<usize> {
    let (mut lo, mut hi) = (1e-6f64, 1e-6f64);
    while total_err(weights, &pick(weights, hi)) > budget && hi < 1e30 {
        lo = hi;
        hi *= 16.0;
    }
    for _ in 0..100 {
        let mid = (lo * hi).sqrt();
        if total_err(weights, &pick(weights, mid)) > budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    pick(weights, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(cost: f64, err: f64) -> Option_ {
        Option_ { cost, err }
    }

    #[test]
    fn budget_trades_cost_for_error() {
        // Two weights: keep (100, 0), 8-bit (50, 0.001 / 0.0012), 4-bit (28, 0.02 / 0.05).
        let w = vec![
            vec![o(100.0, 0.0), o(50.0, 0.001), o(28.0, 0.02)],
            vec![o(100.0, 0.0), o(50.0, 0.0012), o(28.0, 0.05)],
        ];
        assert_eq!(within_budget(&w, 1.0), vec![2, 2]);
        assert_eq!(within_budget(&w, 0.03), vec![2, 1]);
        assert_eq!(within_budget(&w, 0.0025), vec![1, 1]);
        assert_eq!(within_budget(&w, 0.0015), vec![1, 0]);
        assert_eq!(within_budget(&w, 0.0), vec![0, 0]);
        for b in [1.0, 0.03, 0.0025, 0.0015, 0.0] {
            assert!(total_err(&w, &within_budget(&w, b)) <= b);
        }
    }

    /// A small weight whose saving per unit of error is poor is never picked
    /// by the multiplier alone when a large weight's option is better per
    /// error but too big for the budget; the fill takes it.
    #[test]
    fn unspent_budget_is_filled() {
        let w = vec![
            vec![o(5120.0, 0.0), o(1360.0, 1.4e-5)],
            vec![o(65536.0, 0.0), o(16896.0, 4.0e-5)],
        ];
        assert_eq!(within_budget(&w, 2.0e-5), vec![1, 0]);
        assert_eq!(within_budget(&w, 1.0e-4), vec![1, 1]);
        assert_eq!(within_budget(&w, 1.0e-5), vec![0, 0]);
    }
}
