//! Arena planning: give every buffer an offset so that buffers alive at the
//! same time never overlap, and the arena's size is known before running.
//!
//! The heuristic is "greedy by size" (as in TensorFlow Lite's planner): place
//! the largest buffers first, each at the lowest offset that clears every
//! already-placed buffer whose lifetime overlaps its own.

/// A buffer's lifetime (in steps, inclusive) and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// The step that writes it first.
    pub first: usize,
    /// The last step that reads it.
    pub last: usize,
    /// Its size in bytes.
    pub bytes: usize,
}

impl Interval {
    fn overlaps(&self, other: &Interval) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Every buffer starts at a multiple of this, which suits 512-bit vectors.
pub const ALIGN: usize = 64;

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Offsets for `slots` (in their order) and the arena size.
pub fn plan(slots: &[Interval]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(slots[i].bytes), slots[i].first, i));
    let mut offsets = vec![0usize; slots.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut total = 0;
    for i in order {
        let me = slots[i];
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| slots[j].overlaps(&me) && slots[j].bytes > 0)
            .map(|&j| (offsets[j], offsets[j] + slots[j].bytes))
            .collect();
        busy.sort_unstable();
        let mut at = 0;
        for (start, end) in busy {
            if at + me.bytes <= start {
                break;
            }
            at = at.max(align_up(end));
        }
        offsets[i] = at;
        total = total.max(at + me.bytes);
        placed.push(i);
    }
    (offsets, align_up(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(slots: &[Interval]) -> usize {
        let (off, total) = plan(slots);
        for (i, a) in slots.iter().enumerate() {
            assert_eq!(off[i] % ALIGN, 0);
            assert!(off[i] + a.bytes <= total);
            for (j, b) in slots.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) && a.bytes > 0 && b.bytes > 0 {
                    let disjoint = off[i] + a.bytes <= off[j] || off[j] + b.bytes <= off[i];
                    assert!(disjoint, "slots {i} and {j} overlap in memory and time");
                }
            }
        }
        total
    }

    #[test]
    fn a_chain_reuses_memory() {
        // x -> a -> b -> c: each lives two steps, so two 1 KiB slots suffice.
        let slots: Vec<Interval> = (0..4)
            .map(|i| Interval {
                first: i,
                last: i + 1,
                bytes: 1024,
            })
            .collect();
        assert_eq!(check(&slots), 2048);
    }

    #[test]
    fn overlapping_lifetimes_never_share_bytes() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let slots: Vec<Interval> = (0..200)
            .map(|_| {
                let first = next() % 50;
                Interval {
                    first,
                    last: first + next() % 10,
                    bytes: next() % 5000,
                }
            })
            .collect();
        let total = check(&slots);
        let sum: usize = slots.iter().map(|s| align_up(s.bytes)).sum();
        assert!(total < sum / 3, "{total} of {sum}");
    }
}
