//! The tensor transforms of the compression families beyond quantization: a
//! truncated SVD ([`svd`], the low-rank family and the engine of the next
//! one), Van Loan's nearest Kronecker product ([`kronecker`]) with the
//! factored product that never forms the dense matrix, its calibration-aware
//! refit on the layer's outputs ([`kron_refit`]), and pruning masks
//! ([`prune`]: magnitude, Wanda, 2:4). [`factorize`] puts the low-rank and
//! Kronecker factors in the layouts the rewrites compute with; the
//! quantization pass offers them as e-graph alternatives
//! ([`crate::quantize::Scheme::LowRank`], [`crate::quantize::Scheme::Kronecker`]).
//!
//! They are written here rather than taken from a linear-algebra crate
//! because the passes only need the top singular triplets of matrices of a
//! few thousand rows: a randomized range finder over the `gemm` crate
//! (already a dependency) plus the small dense routines of
//! [`crate::linalg`] (Cholesky QR, a tridiagonal-QL eigensolver) does that
//! in a fraction of a full SVD's time, without another large dependency.

pub mod factorize;
pub mod kron_refit;
pub mod kronecker;
pub mod prune;
pub mod structured;
pub mod svd;

/// Deterministic test matrices with values in `[-1, 1)`, shared by the
/// factorization tests.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}
