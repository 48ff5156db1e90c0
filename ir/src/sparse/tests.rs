use super::*;

/// Deterministic values in [-1, 1) and keep flags dropping about `drop` of them.
fn fixture(n: usize, k: usize, drop: f32, seed: u64) -> (Vec<f32>, Vec<bool>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let w = (0..n * k).map(|_| 2.0 * next() - 1.0).collect();
    let keep = (0..n * k).map(|_| next() >= drop).collect();
    (w, keep)
}

fn masked(w: &[f32], keep: &[bool]) -> Vec<f32> {
    w.iter()
        .zip(keep)
        .map(|(&v, &kp)| if kp { v } else { 0.0 })
        .collect()
}

#[test]
fn f32_round_trip_is_exact() {
    for (n, k, drop) in [
        (5, 13, 0.5),
        (3, 64, 0.0),
        (4, 7, 1.0),
        (0, 9, 0.5),
        (2, 0, 0.5),
    ] {
        let (w, keep) = fixture(n, k, drop, 3);
        let m = SparseMatrix::encode(&w, n, k, &keep, false).unwrap();
        assert_eq!(m.densify(), masked(&w, &keep), "[{n}, {k}] drop {drop}");
        let t = m.tensors();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].shape(), &[n, k.div_ceil(8)]);
        let back = SparseMatrix::from_tensors(&t[0], &t[1], &t[2], None, k).unwrap();
        assert_eq!(back, m);
        let nnz = keep.iter().filter(|&&b| b).count();
        assert_eq!(m.bytes(), n * k.div_ceil(8) + 4 * nnz + 8 * (n + 1));
    }
}

#[test]
fn int8_error_is_within_half_a_step() {
    let (n, k) = (6, 37);
    let (w, keep) = fixture(n, k, 0.5, 9);
    let m = SparseMatrix::encode(&w, n, k, &keep, true).unwrap();
    let SparseValues::Int8 { scale, .. } = &m.values else {
        panic!("int8 values expected");
    };
    let want = masked(&w, &keep);
    for (r, (got, want)) in m.densify().chunks(k).zip(want.chunks(k)).enumerate() {
        let amax = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert_eq!(scale[r], amax / 127.0);
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= scale[r] / 2.0 * 1.0001,
                "row {r}: {g} vs {w}"
            );
        }
    }
    let t = m.tensors();
    assert_eq!(t.len(), 4);
    let back = SparseMatrix::from_tensors(&t[0], &t[1], &t[2], Some(&t[3]), k).unwrap();
    assert_eq!(back, m);
}

#[test]
fn encode_rejects_wrong_lengths() {
    assert!(SparseMatrix::encode(&[0.0; 5], 2, 3, &[true; 6], false).is_err());
    assert!(SparseMatrix::encode(&[0.0; 6], 2, 3, &[true; 5], true).is_err());
    assert!(SparseMatrix::encode(&[], usize::MAX, 2, &[], false).is_err());
}

/// A valid 2 x 10 f32 matrix: row 0 keeps {0, 9}, row 1 keeps {3}.
fn valid() -> (Tensor, Tensor, Tensor) {
    let mask = Tensor::from_vec(vec![2, 2], vec![0b1u8, 0b10, 0b1000, 0]).unwrap();
    let values = Tensor::from_vec(vec![3], vec![1f32, 2.0, 3.0]).unwrap();
    let row_ptr = Tensor::from_vec(vec![3], vec![0i64, 2, 3]).unwrap();
    (mask, values, row_ptr)
}

#[test]
fn from_tensors_rejects_every_malformed_input() {
    let (mask, values, row_ptr) = valid();
    let m = SparseMatrix::from_tensors(&mask, &values, &row_ptr, None, 10).unwrap();
    let mut want = vec![0f32; 20];
    (want[0], want[9], want[13]) = (1.0, 2.0, 3.0);
    assert_eq!(m.densify(), want);

    let err = |mask: &Tensor, values: &Tensor, row_ptr: &Tensor, scale: Option<&Tensor>, k| {
        let e = SparseMatrix::from_tensors(mask, values, row_ptr, scale, k).unwrap_err();
        e.to_string()
    };
    let t = |shape: Vec<usize>, v: Vec<i64>| Tensor::from_vec(shape, v).unwrap();
    let u8s = |shape: Vec<usize>, v: Vec<u8>| Tensor::from_vec(shape, v).unwrap();
    let f32s = |v: Vec<f32>| Tensor::from_vec(vec![v.len()], v).unwrap();
    // k does not match the mask's row bytes.
    assert!(err(&mask, &values, &row_ptr, None, 17).contains("mask rows"));
    // Mask of rank 1.
    assert!(err(&u8s(vec![4], vec![0; 4]), &values, &row_ptr, None, 10).contains("[n, kb]"));
    // row_ptr too short / too long.
    assert!(err(&mask, &values, &t(vec![2], vec![0, 3]), None, 10).contains("row_ptr has"));
    assert!(err(&mask, &values, &t(vec![4], vec![0, 2, 3, 3]), None, 10).contains("row_ptr has"));
    // row_ptr not starting at 0, not ending at nnz.
    assert!(err(&mask, &values, &t(vec![3], vec![1, 2, 3]), None, 10).contains("from 0"));
    assert!(err(&mask, &values, &t(vec![3], vec![0, 2, 2]), None, 10).contains("from 0"));
    // Decreasing row_ptr (the end still nnz).
    let dec = Tensor::from_vec(vec![3], vec![0i64, 4, 3]).unwrap();
    assert!(err(&mask, &values, &dec, None, 10).contains("decreases"));
    // Popcount of a row differs from its span.
    assert!(err(&mask, &values, &t(vec![3], vec![0, 1, 3]), None, 10).contains("keeps"));
    // Too few / too many values for the mask.
    assert!(err(&mask, &f32s(vec![1.0, 2.0]), &row_ptr, None, 10).contains("from 0"));
    // Pad bits past k set.
    let pad = u8s(vec![2, 2], vec![0b1, 0b110, 0b1000, 0]);
    let rp = t(vec![3], vec![0, 3, 4]);
    assert!(err(&pad, &f32s(vec![1.0; 4]), &rp, None, 10).contains("past k"));
    // Wrong dtypes and scale combinations.
    let i8v = Tensor::from_vec(vec![3], vec![1i8, 2, 3]).unwrap();
    assert!(err(&mask, &i8v, &row_ptr, None, 10).contains("without"));
    let s2 = f32s(vec![1.0, 1.0]);
    assert!(err(&mask, &values, &row_ptr, Some(&s2), 10).contains("with one"));
    assert!(err(&mask, &i8v, &row_ptr, Some(&f32s(vec![1.0])), 10).contains("scales"));
    assert!(SparseMatrix::from_tensors(&mask, &i8v, &row_ptr, Some(&s2), 10).is_ok());
    let f64v = Tensor::from_vec(vec![3], vec![1f64, 2.0, 3.0]).unwrap();
    assert!(err(&mask, &f64v, &row_ptr, None, 10).contains("f64"));
    let row_ptr_i32 = Tensor::from_vec(vec![3], vec![0i32, 2, 3]).unwrap();
    assert!(SparseMatrix::from_tensors(&mask, &values, &row_ptr_i32, None, 10).is_err());
    let mask_i8 = Tensor::from_vec(vec![2, 2], vec![1i8, 2, 8, 0]).unwrap();
    assert!(SparseMatrix::from_tensors(&mask_i8, &values, &row_ptr, None, 10).is_err());
    // Values of rank 2.
    let v2 = Tensor::from_vec(vec![3, 1], vec![1f32, 2.0, 3.0]).unwrap();
    assert!(err(&mask, &v2, &row_ptr, None, 10).contains("vectors"));
}
