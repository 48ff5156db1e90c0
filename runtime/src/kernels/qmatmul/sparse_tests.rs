//! `Weight::Sparse` against the dense f64 product with the densified weights.
//! Tolerance: `|got - want| <= 1e-5 · Σ_j |x_j w_j|` per output (relative 1e-5
//! of the sum of absolute products, the scale of f32 rounding in any order).

use super::*;
use egret_ir::sparse::SparseMatrix;

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The sparsity patterns tested, as keep flags of `[n, k]` weights `w`.
fn patterns(w: &[f32], k: usize) -> Vec<(&'static str, Vec<bool>)> {
    let r = rand(w.len(), 77);
    let two_of_four = w
        .chunks(k)
        .flat_map(|row| {
            row.chunks(4).flat_map(|g| {
                // Keep the two largest magnitudes of each group of 4.
                let mut idx: Vec<usize> = (0..g.len()).collect();
                idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
                let mut keep = vec![false; g.len()];
                idx.iter().take(2).for_each(|&i| keep[i] = true);
                keep
            })
        })
        .collect();
    vec![
        ("0%", vec![true; w.len()]),
        ("50%", r.iter().map(|&v| v >= 0.0).collect()),
        ("2:4", two_of_four),
        ("90%", r.iter().map(|&v| v >= 0.8).collect()),
        ("100%", vec![false; w.len()]),
    ]
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::portable()];
    v.extend(Isa::avx2());
    v
}

#[test]
fn sparse_matches_dense_reference() {
    let n = 13;
    for k in [100, 72, 203] {
        let w = rand(n * k, k as u64);
        for (name, keep) in patterns(&w, k) {
            for int8 in [false, true] {
                let sm = SparseMatrix::encode(&w, n, k, &keep, int8).unwrap();
                let view = sm.view().unwrap();
                let wd = sm.densify();
                for m in [1, 3, 8, 70] {
                    let x = rand(m * k, (m * 31 + k) as u64);
                    for isa in isas() {
                        let mut out = vec![f32::NAN; m * n];
                        matmul(isa, &x, m, k, Weight::Sparse(view), n, None, &mut out).unwrap();
                        for (i, xr) in x.chunks(k).enumerate() {
                            for (r, wr) in wd.chunks(k).enumerate() {
                                let want: f64 =
                                    xr.iter().zip(wr).map(|(&a, &b)| f64::from(a * b)).sum();
                                let mag: f64 = xr
                                    .iter()
                                    .zip(wr)
                                    .map(|(&a, &b)| f64::from((a * b).abs()))
                                    .sum();
                                let got = f64::from(out[i * n + r]);
                                assert!(
                                    (got - want).abs() <= 1e-5 * mag + 1e-30,
                                    "{name} int8={int8} k={k} m={m} {isa:?} [{i}, {r}]: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn sparse_shape_mismatch_is_an_error() {
    let (n, k) = (3, 10);
    let sm = SparseMatrix::encode(&rand(n * k, 1), n, k, &vec![true; n * k], false).unwrap();
    let view = sm.view().unwrap();
    let x = vec![0f32; 2 * 11];
    let mut out = vec![0f32; 2 * n];
    assert!(matmul(
        Isa::best(),
        &x,
        2,
        11,
        Weight::Sparse(view),
        n,
        None,
        &mut out
    )
    .is_err());
    let mut out = vec![0f32; 2 * 4];
    let x = vec![0f32; 2 * k];
    assert!(matmul(
        Isa::best(),
        &x,
        2,
        k,
        Weight::Sparse(view),
        4,
        None,
        &mut out
    )
    .is_err());
}
