//! numpy's legacy random stream (`numpy.random.RandomState(seed)`): the MT19937
//! Mersenne Twister seeded with `init_genrand`, and `random_sample`'s 53-bit
//! doubles. The ONNX reference implementation draws its random numbers
//! (Dropout's mask, ...) from this stream, so reproducing it bit for bit lets
//! seeded node tests match exactly.

const N: usize = 624;
const M: usize = 397;

/// A MT19937 generator in numpy's `RandomState` configuration.
pub struct Mt19937 {
    state: [u32; N],
    pos: usize,
}

impl Mt19937 {
    /// The stream of `numpy.random.RandomState(seed)` (numpy requires `seed < 2^32`).
    pub fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, pos: N }
    }

    fn refill(&mut self) {
        let mag = |y: u32| if y & 1 == 1 { 0x9908_b0df } else { 0 };
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            self.state[i] = self.state[(i + M) % N] ^ (y >> 1) ^ mag(y);
        }
        self.pos = 0;
    }

    /// The next tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.refill();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random_sample()`: a double in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_random_state() {
        // numpy.random.RandomState(0).random_sample(3)
        let mut r = Mt19937::new(0);
        let want = [0.5488135039273248, 0.7151893663724195, 0.6027633760716439];
        for w in want {
            assert!((r.next_f64() - w).abs() < 1e-15);
        }
        // numpy.random.RandomState(5489).randint(0, 2**32, dtype=np.uint64) → first raw output
        assert_eq!(Mt19937::new(5489).next_u32(), 3_499_211_612);
    }
}
