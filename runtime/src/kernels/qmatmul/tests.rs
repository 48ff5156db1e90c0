use super::*;
use egret_ir::blocks;

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

/// Packed `[n, k]` weights of `dtype`: quantized random data where egret has a
/// quantizer, else random bytes below 0x3c (so every f16 field is finite, < 1).
fn packed(dtype: DType, n: usize, k: usize, seed: u64) -> Vec<u8> {
    let w = rand(n * k, seed);
    match dtype {
        DType::Block(f) if blocks::quantize::can_quantize(f) => {
            let t = egret_ir::Tensor::from_vec(vec![n, k], w).unwrap();
            blocks::quantize(&t, f, None).unwrap().bytes().to_vec()
        }
        DType::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => w
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        _ => {
            let len = dtype.storage_bytes(&[n, k]).unwrap();
            rand(len, seed)
                .iter()
                .map(|v| ((v + 1.0) * 30.0) as u8)
                .collect()
        }
    }
}

/// f64 `x · wᵀ + bias` from the dequantized weights `wf [n, k]`.
fn reference(x: &[f32], wf: &[f32], k: usize, bias: Option<&[f32]>) -> Vec<f64> {
    let mut y = Vec::new();
    for xr in x.chunks_exact(k) {
        for (r, wr) in wf.chunks_exact(k).enumerate() {
            let dot: f64 = xr
                .iter()
                .zip(wr)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            y.push(dot + bias.map_or(0.0, |b| f64::from(b[r])));
        }
    }
    y
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::portable()];
    v.extend(Isa::avx2());
    v
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "{what} [{i}]: {g} vs {w} (tol {tol})"
        );
    }
}

fn amax(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |a, &b| a.max(f64::from(b).abs()))
}

const K: usize = 256;
const N: usize = 67;

#[test]
fn every_format_both_paths_gemv_and_gemm() {
    let dtypes = BlockFormat::ALL.iter().map(|&f| DType::Block(f)).chain([
        DType::F16,
        DType::BF16,
        DType::F32,
    ]);
    for (t, dtype) in dtypes.enumerate() {
        let bytes = packed(dtype, N, K, t as u64 + 1);
        let mut wf = vec![0f32; N * K];
        blocks::dequantize_into(dtype, &bytes, &mut wf).unwrap();
        let w = Weight::Packed {
            dtype,
            bytes: &bytes,
        };
        for (m, with_bias) in [(1, true), (3, false), (37, true), (8, false)] {
            let x = rand(m * K, 100 + m as u64);
            let bias = rand(N, 7);
            let bias = with_bias.then_some(&bias[..]);
            let want = reference(&x, &wf, K, bias);
            let tol = 1e-5 * K as f64 * amax(&x) * amax(&wf) + 1e-6;
            for isa in isas() {
                let mut out = vec![f32::NAN; m * N];
                matmul(isa, &x, m, K, w, N, bias, &mut out).unwrap();
                assert_close(&out, &want, tol, &format!("{dtype} m={m} {isa:?}"));
            }
        }
    }
}

#[test]
fn int8_weights_w8_and_w8a8() {
    let wf32 = rand(N * K, 5);
    let (q, scale) = blocks::quantize_rows_i8(&wf32, N, K);
    let wf: Vec<f32> = q
        .chunks(K)
        .zip(&scale)
        .flat_map(|(r, &s)| r.iter().map(move |&v| f32::from(v) * s))
        .collect();
    for m in [1, 37] {
        let mut x = rand(m * K, 9);
        // An all-zero row: W8A8 gives exactly the bias there.
        x[..K].fill(0.0);
        let bias = rand(N, 3);
        let want = reference(&x, &wf, K, Some(&bias));
        let tol = 1e-5 * K as f64 * amax(&x) * amax(&wf);
        // W8A8 oracle: the contract's per-token quantization, exact integer dots.
        let mut want8 = Vec::new();
        for xr in x.chunks(K) {
            let sx = xr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            let qx: Vec<i64> = xr
                .iter()
                .map(|&v| {
                    if sx == 0.0 {
                        0
                    } else {
                        (v / sx).round().clamp(-127.0, 127.0) as i64
                    }
                })
                .collect();
            for (r, wr) in q.chunks(K).enumerate() {
                let acc: i64 = qx.iter().zip(wr).map(|(a, &b)| a * i64::from(b)).sum();
                want8.push(acc as f64 * f64::from(sx) * f64::from(scale[r]) + f64::from(bias[r]));
            }
        }
        for isa in isas() {
            let mut out = vec![f32::NAN; m * N];
            let w = Weight::Int8 {
                q: &q,
                scale: &scale,
            };
            matmul(isa, &x, m, K, w, N, Some(&bias), &mut out).unwrap();
            assert_close(&out, &want, tol, &format!("w8 m={m} {isa:?}"));
            matmul_w8a8(isa, &x, m, K, &q, &scale, N, Some(&bias), &mut out).unwrap();
            assert_close(
                &out,
                &want8,
                1e-5 * amax(&out),
                &format!("w8a8 m={m} {isa:?}"),
            );
            assert_eq!(&out[..N], &bias[..], "zero row");
            // Activation quantization costs little against the f32 product.
            assert_close(&out, &want, 0.02 * amax(&out), &format!("w8a8~f32 m={m}"));
        }
    }
}

#[test]
fn long_int8_dots_are_exact() {
    // Long enough to flush the AVX2 i32 lanes several times, plus a tail.
    let a: Vec<i8> = (0..20_011)
        .map(|i| if i % 3 == 0 { -127 } else { 127 })
        .collect();
    let b: Vec<i8> = (0..20_011)
        .map(|i| if i % 2 == 0 { -127 } else { 127 })
        .collect();
    let want = portable::dot_i8_i8(&a, &b);
    let exact: i64 = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| i64::from(x) * i64::from(y))
        .sum();
    assert_eq!(want, exact);
    for isa in isas() {
        assert_eq!(isa.dot_i8_i8(&a, &b), exact, "{isa:?}");
    }
}

#[test]
fn bad_lengths_are_errors() {
    let isa = Isa::best();
    let q8 = DType::Block(BlockFormat::Q8_0);
    let bytes = vec![0u8; 2 * 34];
    let w = Weight::Packed {
        dtype: q8,
        bytes: &bytes,
    };
    let mut out = vec![0f32; 2];
    assert!(matmul(isa, &[0.0; 32], 1, 32, w, 2, None, &mut out).is_ok());
    assert!(matmul(isa, &[0.0; 31], 1, 32, w, 2, None, &mut out).is_err());
    assert!(matmul(isa, &[0.0; 32], 1, 32, w, 3, None, &mut out).is_err());
    assert!(matmul(isa, &[0.0; 32], 1, 32, w, 2, Some(&[0.0]), &mut out).is_err());
    assert!(matmul(isa, &[0.0; 16], 1, 16, w, 2, None, &mut out).is_err());
    let bad = Weight::Packed {
        dtype: DType::I32,
        bytes: &bytes,
    };
    assert!(matmul(isa, &[0.0; 17], 1, 17, bad, 2, None, &mut out).is_err());
    let q = [0i8; 6];
    assert!(matmul_w8a8(isa, &[0.0; 3], 1, 3, &q, &[1.0], 2, None, &mut out).is_err());
    assert!(matmul_w8a8(isa, &[0.0; 3], 1, 3, &q, &[1.0; 2], 2, None, &mut out).is_ok());
}

#[test]
fn gemm_sgemm_tiles_and_long_exact_w8a8() {
    // Enough rows for the packed sgemm tiles, and a ragged N.
    let (m, n, k) = (SGEMM_MIN_ROWS + 5, 29, 64);
    let x = rand(m * k, 41);
    let wf32 = rand(n * k, 42);
    let (q, scale) = blocks::quantize_rows_i8(&wf32, n, k);
    let wf: Vec<f32> = q
        .chunks(k)
        .zip(&scale)
        .flat_map(|(r, &s)| r.iter().map(move |&v| f32::from(v) * s))
        .collect();
    let bias = rand(n, 43);
    let want = reference(&x, &wf, k, Some(&bias));
    let tol = 1e-5 * k as f64 * amax(&x) * amax(&wf);
    for isa in isas() {
        let mut out = vec![f32::NAN; m * n];
        let w = Weight::Int8 {
            q: &q,
            scale: &scale,
        };
        matmul(isa, &x, m, k, w, n, Some(&bias), &mut out).unwrap();
        assert_close(&out, &want, tol, &format!("w8 sgemm tiles {isa:?}"));
    }
    // W8A8 GEMM over a K that flushes the exact lanes twice, plus a tail: equal
    // to the integer oracle.
    let (m, n, k) = (GEMM_MIN_ROWS + 1, 5, 2 * EXACT_CHUNK + 13);
    let x = rand(m * k, 44);
    let q: Vec<i8> = (0..n * k)
        .map(|i| if i % 3 == 0 { -127 } else { 127 })
        .collect();
    let scale = vec![1.0f32; n];
    for isa in isas() {
        let mut out = vec![f32::NAN; m * n];
        matmul_w8a8(isa, &x, m, k, &q, &scale, n, None, &mut out).unwrap();
        for (i, xr) in x.chunks(k).enumerate() {
            let sx = xr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            for (r, wr) in q.chunks(k).enumerate() {
                let acc: i64 = xr
                    .iter()
                    .zip(wr)
                    .map(|(&v, &b)| ((v / sx).round().clamp(-127.0, 127.0) as i64) * i64::from(b))
                    .sum();
                assert_eq!(out[i * n + r], acc as f32 * sx, "w8a8 [{i}, {r}] {isa:?}");
            }
        }
    }
}
