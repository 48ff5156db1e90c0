//! A small complex FFT in `f64`: iterative radix-2 for power-of-two lengths,
//! Bluestein's chirp-z algorithm (three power-of-two FFTs) for every other length,
//! so any length costs O(n log n).
//!
//! Written here rather than pulled from `rustfft`: the signal ops need one
//! unnormalised transform of modest size, and ~100 lines of plain code keep the
//! dependency tree and the audit surface small.

use std::f64::consts::PI;

/// A complex number as `(re, im)`.
pub type C64 = (f64, f64);

fn mul(a: C64, b: C64) -> C64 {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn conj(a: C64) -> C64 {
    (a.0, -a.1)
}

/// `e^{i·θ}`.
fn cis(theta: f64) -> C64 {
    (theta.cos(), theta.sin())
}

/// In-place radix-2 FFT; `x.len()` must be a power of two. `sign` is the
/// exponent's sign: -1 forward, +1 inverse (unnormalised).
fn radix2(x: &mut [C64], sign: f64) {
    let n = x.len();
    if n < 2 {
        return;
    }
    // Bit-reversal permutation.
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            x.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let step = sign * 2.0 * PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let w = cis(step * k as f64);
                let a = x[start + k];
                let b = mul(x[start + k + half], w);
                x[start + k] = (a.0 + b.0, a.1 + b.1);
                x[start + k + half] = (a.0 - b.0, a.1 - b.1);
            }
        }
        len <<= 1;
    }
}

/// The chirp `e^{sign·iπk²/n}`; `k²` is reduced mod `2n` first so large `k`
/// keeps full precision.
fn chirp(k: usize, n: usize, sign: f64) -> C64 {
    let k2 = (k as u128 * k as u128 % (2 * n as u128)) as f64;
    cis(sign * PI * k2 / n as f64)
}

/// Bluestein's algorithm: the length-`n` DFT as a convolution of power-of-two size.
fn bluestein(x: &mut [C64], sign: f64) {
    let n = x.len();
    let m = (2 * n - 1).next_power_of_two();
    let w: Vec<C64> = (0..n).map(|k| chirp(k, n, sign)).collect();
    let mut a = vec![(0.0, 0.0); m];
    for (k, (&xk, &wk)) in x.iter().zip(&w).enumerate() {
        a[k] = mul(xk, wk);
    }
    let mut b = vec![(0.0, 0.0); m];
    b[0] = conj(w[0]);
    for k in 1..n {
        b[k] = conj(w[k]);
        b[m - k] = conj(w[k]);
    }
    radix2(&mut a, -1.0);
    radix2(&mut b, -1.0);
    for (ai, bi) in a.iter_mut().zip(&b) {
        *ai = mul(*ai, *bi);
    }
    radix2(&mut a, 1.0);
    let scale = 1.0 / m as f64;
    for (k, xk) in x.iter_mut().enumerate() {
        let c = mul(a[k], w[k]);
        *xk = (c.0 * scale, c.1 * scale);
    }
}

/// In-place unnormalised DFT of `x`: `X[k] = Σ_t x[t]·e^{∓2πikt/n}` (minus sign
/// forward, plus sign when `inverse`; the caller divides by `n` if it wants to).
pub fn dft(x: &mut [C64], inverse: bool) {
    let sign = if inverse { 1.0 } else { -1.0 };
    if x.len().is_power_of_two() {
        radix2(x, sign);
    } else if x.len() > 1 {
        bluestein(x, sign);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The O(n²) definition, as the oracle.
    fn naive(x: &[C64], inverse: bool) -> Vec<C64> {
        let n = x.len();
        let sign = if inverse { 1.0 } else { -1.0 };
        (0..n)
            .map(|k| {
                x.iter().enumerate().fold((0.0, 0.0), |acc, (t, &v)| {
                    let p = mul(v, cis(sign * 2.0 * PI * (k * t % n) as f64 / n as f64));
                    (acc.0 + p.0, acc.1 + p.1)
                })
            })
            .collect()
    }

    #[test]
    fn matches_naive_dft_for_many_lengths() {
        for n in [1usize, 2, 3, 5, 8, 10, 12, 16, 17, 31, 64, 100] {
            let x: Vec<C64> = (0..n)
                .map(|i| ((i as f64 * 0.7).sin(), (i as f64 * 1.3).cos() - 0.2))
                .collect();
            for inverse in [false, true] {
                let mut y = x.clone();
                dft(&mut y, inverse);
                for (a, b) in y.iter().zip(naive(&x, inverse)) {
                    assert!(
                        (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9,
                        "n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn known_values() {
        // DFT of [0, 1, 2, 3] = [6, -2+2i, -2, -2-2i] (numpy.fft.fft).
        let mut x = vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 0.0)];
        dft(&mut x, false);
        let want = [(6.0, 0.0), (-2.0, 2.0), (-2.0, 0.0), (-2.0, -2.0)];
        for (a, b) in x.iter().zip(want) {
            assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12);
        }
    }
}
