use super::*;
use crate::blocks::dequantize_into;

/// A deterministic pseudo-random stream (xorshift) of roughly normal values.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            let mut acc = 0f32;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            acc
        })
        .collect()
}

const QUANTIZABLE: [BlockFormat; 7] = [
    BlockFormat::Q8_0,
    BlockFormat::Q4_0,
    BlockFormat::Q4_1,
    BlockFormat::I4S64,
    BlockFormat::I4S128,
    BlockFormat::I4A64,
    BlockFormat::I4A128,
];

fn encode(fmt: BlockFormat, x: &[f32], w: Option<&[f32]>) -> Vec<u8> {
    let mut q = vec![0u8; x.len() / fmt.block_elems() * fmt.block_bytes()];
    quantize_into(fmt, x, w, &mut q).unwrap();
    q
}

fn round_trip(fmt: BlockFormat, x: &[f32], w: Option<&[f32]>) -> Vec<f32> {
    let q = encode(fmt, x, w);
    let mut y = vec![0f32; x.len()];
    dequantize_into(DType::Block(fmt), &q, &mut y).unwrap();
    y
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The committed gguf-py vectors (`scripts/make-quant-vectors.py`): input f32s
/// and `gguf.quants.quantize` bytes (for the int4 groups, gguf-py's Q4_0 / Q4_1
/// code over the larger group, with its dequantization), bit for bit.
#[test]
fn quantizers_match_gguf_py() {
    macro_rules! fixture {
        ($f:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/gguf/quantize/",
                $f
            ))
        };
    }
    let x = floats(fixture!("input.f32"));
    let none: &[u8] = &[];
    let cases: [(BlockFormat, &[u8], &[u8]); 7] = [
        (BlockFormat::Q8_0, fixture!("q8_0.bin"), none),
        (BlockFormat::Q4_0, fixture!("q4_0.bin"), none),
        (BlockFormat::Q4_1, fixture!("q4_1.bin"), none),
        (
            BlockFormat::I4S64,
            fixture!("i4s_g64.bin"),
            fixture!("i4s_g64.f32"),
        ),
        (
            BlockFormat::I4S128,
            fixture!("i4s_g128.bin"),
            fixture!("i4s_g128.f32"),
        ),
        (
            BlockFormat::I4A64,
            fixture!("i4a_g64.bin"),
            fixture!("i4a_g64.f32"),
        ),
        (
            BlockFormat::I4A128,
            fixture!("i4a_g128.bin"),
            fixture!("i4a_g128.f32"),
        ),
    ];
    for (fmt, want, deq) in cases {
        let got = encode(fmt, &x, None);
        assert_eq!(got.len(), want.len(), "{fmt:?}");
        for (i, (g, w)) in got
            .chunks(fmt.block_bytes())
            .zip(want.chunks(fmt.block_bytes()))
            .enumerate()
        {
            assert_eq!(g, w, "{fmt:?} block {i}");
        }
        if !deq.is_empty() {
            let mut y = vec![0f32; x.len()];
            dequantize_into(DType::Block(fmt), want, &mut y).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&floats(deq)), "{fmt:?}");
        }
    }
}

#[test]
fn reference_round_trip_is_within_half_a_step() {
    let x = data(4 * 128, 7);
    for fmt in QUANTIZABLE {
        let g = fmt.block_elems();
        let y = round_trip(fmt, &x, None);
        for (xb, yb) in x.chunks(g).zip(y.chunks(g)) {
            let (lo, hi) = xb
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let amax = lo.abs().max(hi.abs());
            let step = match kind(fmt).unwrap() {
                Kind::Sym8 => amax / 127.0,
                Kind::Sym4 => amax / 8.0,
                Kind::Asym4 => (hi - lo) / 15.0,
            };
            // Half a step, plus what the f16 rounding of the scale (and min) moves
            // the top level by.
            let tol = 0.5 * step + 1e-3 * amax;
            for (a, b) in xb.iter().zip(yb) {
                // Q4_0 maps its extreme to level -8; the other side stops at +7,
                // so values beyond 7.5 steps there clamp to the top level.
                let tol = match kind(fmt).unwrap() {
                    Kind::Sym4 => tol.max(a.abs() - 7.0 * step + 1e-3 * amax),
                    _ => tol,
                };
                assert!((a - b).abs() <= tol, "{fmt:?}: {a} vs {b} (tol {tol})");
            }
        }
    }
}

#[test]
fn weighted_search_is_never_worse() {
    let k = 256;
    let x = data(8 * k, 11);
    let w: Vec<f32> = data(k, 3).iter().map(|v| v * v * 10.0).collect();
    for fmt in QUANTIZABLE {
        let (plain, searched) = (round_trip(fmt, &x, None), round_trip(fmt, &x, Some(&w)));
        let g = fmt.block_elems();
        let mut gained = 0.0;
        for (i, xb) in x.chunks(g).enumerate() {
            let wb = &w[(i * g) % k..][..g];
            let err = |y: &[f32]| -> f64 {
                xb.iter()
                    .zip(&y[i * g..][..g])
                    .zip(wb)
                    .map(|((a, b), w)| f64::from(*w) * f64::from(a - b).powi(2))
                    .sum()
            };
            let (e0, e1) = (err(&plain), err(&searched));
            assert!(e1 <= e0, "{fmt:?} block {i}: {e1} > {e0}");
            gained += e0 - e1;
        }
        assert!(gained > 0.0, "{fmt:?}: the search never improved a block");
    }
}

#[test]
fn zero_weights_keep_the_reference() {
    let x = data(128, 5);
    let zeros = vec![0f32; 64];
    for fmt in [BlockFormat::Q4_0, BlockFormat::I4A64, BlockFormat::Q8_0] {
        assert_eq!(encode(fmt, &x, None), encode(fmt, &x, Some(&zeros)));
    }
}

#[test]
fn bad_lengths_and_formats_are_errors() {
    let mut dst = vec![0u8; 18];
    let f = BlockFormat::Q4_0;
    assert!(quantize_into(f, &[0.0; 31], None, &mut dst).is_err());
    assert!(quantize_into(f, &[0.0; 32], None, &mut dst[..17]).is_err());
    assert!(quantize_into(f, &[0.0; 32], Some(&[1.0; 16]), &mut dst).is_err());
    assert!(quantize_into(f, &[0.0; 32], Some(&[-1.0; 32]), &mut dst).is_err());
    assert!(quantize_into(f, &[0.0; 32], Some(&[f32::NAN; 32]), &mut dst).is_err());
    assert!(quantize_into(BlockFormat::Q6K, &[0.0; 256], None, &mut [0; 210]).is_err());
    assert!(!can_quantize(BlockFormat::Q5_0) && can_quantize(BlockFormat::I4A128));
    let t = Tensor::from_vec(vec![2, 33], vec![0f32; 66]).unwrap();
    assert!(quantize(&t, f, None).is_err());
    let t = Tensor::from_vec(vec![2, 64], data(128, 1)).unwrap();
    let q = quantize(&t, BlockFormat::I4S64, Some(&[1.0; 64])).unwrap();
    assert_eq!(
        (q.dtype(), q.shape(), q.bytes().len()),
        (DType::Block(BlockFormat::I4S64), &[2usize, 64][..], 68)
    );
    assert!(quantize(&t, f, Some(&[1.0; 32])).is_err());
    let i = Tensor::from_vec(vec![32], vec![0i32; 32]).unwrap();
    assert!(quantize(&i, f, None).is_err());
}

#[test]
fn rows_i8_by_hand() {
    // Row 1 has amax 127, so scale 1 and q = round-half-away(x).
    let (q, s) = quantize_rows_i8(&[0.0, 0.0, 0.0, 0.0, 127.0, -63.5, 2.5, 0.49], 2, 4);
    assert_eq!(s, vec![0.0, 1.0]);
    assert_eq!(q, vec![0, 0, 0, 0, 127, -64, 3, 0]);
    let (q, s) = quantize_rows_i8(&[1.0; 5], 3, 2);
    assert_eq!((q.len(), s.len()), (4, 2));
    let (q, s) = quantize_rows_i8(&[], 2, 0);
    assert_eq!((q.len(), s), (0, vec![0.0, 0.0]));
}

/// A block's grid rounds each element to exactly the value its encoding
/// decodes to, for values inside, at the edge of and outside the block's range.
#[test]
fn grid_nearest_is_what_encode_decodes_to() {
    for fmt in QUANTIZABLE {
        let g = fmt.block_elems();
        let x = data(g, 7 + g as u64);
        let block = encode(fmt, &x, None);
        let grid = BlockGrid::of(fmt, &block).unwrap();
        // Shifted and stretched values: some land between levels, some clamp.
        let probe: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * 1.7 + 0.01 * i as f32)
            .collect();
        let mut out = vec![0u8; fmt.block_bytes()];
        grid.encode(&probe, &mut out);
        let mut y = vec![0f32; g];
        dequantize_into(DType::Block(fmt), &out, &mut y).unwrap();
        for (j, (&p, &got)) in probe.iter().zip(&y).enumerate() {
            assert_eq!(grid.nearest(p), got, "{} element {j}", fmt.name());
        }
        // The scale (and min) are the ones the grid came from.
        assert_eq!(out[..2], block[..2], "{}", fmt.name());
    }
    assert!(BlockGrid::of(BlockFormat::Q6K, &[0; 210]).is_none());
    assert!(BlockGrid::of(BlockFormat::Q4_0, &[0; 17]).is_none());
}

/// `round_away` is `f32::round` bit for bit: halves, the values just under
/// them, the 2²³ boundary, signed zeros, infinities, NaN and a sweep.
#[test]
fn round_away_matches_f32_round() {
    let mut xs = vec![
        0.5,
        -0.5,
        1.5,
        -2.5,
        0.49999997,
        -0.49999997,
        8_388_607.5,
        8_388_608.0,
        -8_388_609.0,
        1e30,
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
    ];
    xs.extend((0..20_000).map(|i| (i as f32 - 10_000.0) * 0.013_7));
    xs.extend(data(5_000, 3).iter().map(|v| v * 300.0));
    for x in xs {
        assert_eq!(round_away(x).to_bits(), x.round().to_bits(), "{x}");
        let y = f64::from(x) * 1.000_000_1;
        assert_eq!(round_away_f64(y).to_bits(), y.round().to_bits(), "{y}");
    }
    assert!(round_away(f32::NAN).is_nan() && round_away_f64(f64::NAN).is_nan());
}
