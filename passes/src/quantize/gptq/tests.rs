use super::*;
use egret_ir::blocks::dequantize_into;
use egret_ir::DType;

/// Deterministic values in [-0.5, 0.5) (xorshift).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// `rows` activations of width `k` with strongly correlated channels (each a
/// mix of a few shared factors plus a little noise), and `E[xᵀx]`.
fn activations(rows: usize, k: usize) -> (Vec<f32>, Vec<f64>) {
    let f = noise(rows * 4, 11);
    let mix = noise(4 * k, 12);
    let e = noise(rows * k, 13);
    let mut x = vec![0f32; rows * k];
    for r in 0..rows {
        for c in 0..k {
            let v: f32 = (0..4).map(|t| f[r * 4 + t] * mix[t * k + c]).sum();
            x[r * k + c] = 4.0 * v + 0.05 * e[r * k + c];
        }
    }
    let mut h = vec![0f64; k * k];
    for row in x.chunks_exact(k) {
        for i in 0..k {
            for j in 0..k {
                h[i * k + j] += f64::from(row[i]) * f64::from(row[j]) / rows as f64;
            }
        }
    }
    (x, h)
}

/// `‖(W − Ŵ) Xᵀ‖²`: the squared error of the layer's outputs.
fn output_err(w: &[f32], wq: &[f32], x: &[f32], k: usize) -> f64 {
    let mut total = 0.0;
    for (a, b) in w.chunks_exact(k).zip(wq.chunks_exact(k)) {
        for row in x.chunks_exact(k) {
            let d: f64 = (0..k)
                .map(|c| (f64::from(a[c]) - f64::from(b[c])) * f64::from(row[c]))
                .sum();
            total += d * d;
        }
    }
    total
}

#[test]
fn factor_inverts_the_damped_matrix() {
    let k = 6;
    let (_, h) = activations(64, k);
    let u = inverse_factor(&h, k).unwrap();
    let mean = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    for a in 0..k {
        for b in 0..a {
            assert_eq!(u[a * k + b], 0.0, "U is upper triangular");
        }
        assert!(u[a * k + a] > 0.0);
    }
    // (H + λI) · UᵀU = I.
    for i in 0..k {
        for j in 0..k {
            let mut s = 0.0;
            for m in 0..k {
                let hd = h[i * k + m] + if i == m { DAMP * mean } else { 0.0 };
                let inv: f64 = (0..k)
                    .map(|t| f64::from(u[t * k + m]) * f64::from(u[t * k + j]))
                    .sum();
                s += hd * inv;
            }
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((s - want).abs() < 1e-3, "({i},{j}) = {s}");
        }
    }
    assert!(inverse_factor(&h, k + 1).is_none());
}

#[test]
fn compensation_cuts_output_error_for_blocks_and_int8() {
    let (n, k) = (16, 64);
    let (x, h) = activations(256, k);
    let w = noise(n * k, 5);
    let u = inverse_factor(&h, k).unwrap();
    for fmt in [BlockFormat::Q4_0, BlockFormat::Q4_1, BlockFormat::I4S64] {
        let bytes = gptq_blocks(&w, n, k, fmt, &u, None).unwrap();
        let mut g = vec![0f32; n * k];
        dequantize_into(DType::Block(fmt), &bytes, &mut g).unwrap();
        let mut plain = vec![0u8; bytes.len()];
        quantize_into(fmt, &w, None, &mut plain).unwrap();
        let mut p = vec![0f32; n * k];
        dequantize_into(DType::Block(fmt), &plain, &mut p).unwrap();
        let (eg, ep) = (output_err(&w, &g, &x, k), output_err(&w, &p, &x, k));
        assert!(eg < 0.7 * ep, "{}: GPTQ {eg} vs plain {ep}", fmt.name());
    }
    let (q, s) = gptq_rows_i8(&w, n, k, &u).unwrap();
    let g: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &v)| f32::from(v) * s[i / k])
        .collect();
    let (pq, ps) = egret_ir::blocks::quantize_rows_i8(&w, n, k);
    assert_eq!(s, ps, "int8 keeps the rows' own scales");
    let p: Vec<f32> = pq
        .iter()
        .enumerate()
        .map(|(i, &v)| f32::from(v) * ps[i / k])
        .collect();
    let (eg, ep) = (output_err(&w, &g, &x, k), output_err(&w, &p, &x, k));
    assert!(eg < 0.7 * ep, "int8: GPTQ {eg} vs plain {ep}");
}

#[test]
fn bad_shapes_are_errors() {
    let u = vec![1.0; 64 * 64];
    assert!(gptq_blocks(&[0.0; 63], 1, 64, BlockFormat::Q4_0, &u, None).is_err());
    assert!(gptq_blocks(&[0.0; 48], 1, 48, BlockFormat::I4S64, &u[..48 * 48], None).is_err());
    assert!(gptq_rows_i8(&[0.0; 64], 1, 64, &u[..10]).is_err());
}

#[test]
fn sparsegpt_prunes_to_the_pattern_with_less_output_error_than_wanda() {
    use crate::compress::prune::{apply, mask, scores, Method, Pattern};
    let (n, k) = (16, 256);
    let (x, h) = activations(512, k);
    let w = noise(n * k, 5);
    let u = inverse_factor(&h, k).unwrap();
    let ms: Vec<f32> = (0..k).map(|i| h[i * k + i] as f32).collect();
    for pattern in [
        Pattern::Percent(50),
        Pattern::TwoOfFour,
        Pattern::Percent(70),
    ] {
        let (g, keep) = sparsegpt(&w, n, k, &u, pattern).unwrap();
        for (row, m) in g.chunks_exact(k).zip(keep.chunks_exact(k)) {
            let kept = m.iter().filter(|&&b| b).count();
            assert_eq!(kept, k - (pattern.sparsity() * k as f64).round() as usize);
            assert!(row.iter().zip(m).all(|(&v, &b)| b || v == 0.0));
            if pattern == Pattern::TwoOfFour {
                assert!(m.chunks(4).all(|c| c.iter().filter(|&&b| b).count() == 2));
            }
        }
        let wanda = apply(
            &w,
            &mask(&scores(&w, k, Method::Wanda, Some(&ms)), k, pattern).unwrap(),
        );
        let (es, ew) = (output_err(&w, &g, &x, k), output_err(&w, &wanda, &x, k));
        assert!(es < 0.7 * ew, "{pattern:?}: SparseGPT {es} vs Wanda {ew}");
    }
    assert!(sparsegpt(&w[..n * 255], n, 255, &u[..255 * 255], Pattern::TwoOfFour).is_err());
}
