//! A memory-bandwidth probe: how fast this machine streams a large buffer from
//! RAM into the cores, the roofline for memory-bound work such as decoding a
//! language model (every weight read once per token).
//!
//! [`read_bandwidth`] sums a buffer much larger than the caches, several
//! times, with one or several threads, and reports the sustained read rate.

use std::hint::black_box;
use std::time::Instant;

/// The result of one [`read_bandwidth`] measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Bandwidth {
    /// Bytes read per pass (the buffer size).
    pub bytes: usize,
    /// Threads that shared each pass.
    pub threads: usize,
    /// Passes over the buffer that were timed.
    pub passes: usize,
    /// The fastest pass, in GB/s (10^9 bytes per second).
    pub best_gbps: f64,
    /// The median pass, in GB/s.
    pub median_gbps: f64,
}

/// Sum a slice with eight independent accumulators (so the adds do not wait on
/// each other and the loop is limited by memory, not by add latency).
fn sum(xs: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |s, &x| s.wrapping_add(x));
    acc.iter().fold(tail, |s, &a| s.wrapping_add(a))
}

/// Measure sustained read bandwidth: fill a buffer of `bytes` (rounded down to
/// whole `u64`s, at least one), then time `passes` passes (at least one), each
/// summing the whole buffer split into `threads` contiguous parts (at least
/// one thread; each pass spawns its threads, whose start-up is counted but
/// is microseconds against a buffer of hundreds of MiB).
///
/// The buffer is written before the first pass, so its pages are resident and
/// no pass pays for page faults. Every sum passes through
/// [`std::hint::black_box`], so the reads cannot be optimised away.
pub fn read_bandwidth(bytes: usize, threads: usize, passes: usize) -> Bandwidth {
    let threads = threads.max(1);
    let passes = passes.max(1);
    let n = (bytes / 8).max(1);
    let buf: Vec<u64> = (0..n as u64).collect();
    let part = n.div_ceil(threads);
    let mut gbps: Vec<f64> = (0..passes)
        .map(|_| {
            let data = black_box(buf.as_slice());
            let t = Instant::now();
            let total = std::thread::scope(|s| {
                let handles: Vec<_> = data
                    .chunks(part)
                    .map(|c| s.spawn(move || sum(black_box(c))))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .fold(0u64, u64::wrapping_add)
            });
            let secs = t.elapsed().as_secs_f64();
            black_box(total);
            (n * 8) as f64 / secs.max(1e-9) / 1e9
        })
        .collect();
    gbps.sort_by(f64::total_cmp);
    Bandwidth {
        bytes: n * 8,
        threads,
        passes,
        best_gbps: gbps[passes - 1],
        median_gbps: gbps[passes / 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_is_a_real_reduction() {
        let xs: Vec<u64> = (0..1003).collect();
        assert_eq!(sum(&xs), 1003 * 1002 / 2);
        assert_eq!(sum(&[u64::MAX, 2]), 1);
    }

    #[test]
    fn bandwidth_is_measured() {
        let b = read_bandwidth(1 << 20, 2, 3);
        assert_eq!((b.bytes, b.threads, b.passes), (1 << 20, 2, 3));
        assert!(b.best_gbps >= b.median_gbps && b.median_gbps > 0.0, "{b:?}");
    }
}
