//! Dtype-agnostic data movement: every dense dtype (strings included) as a
//! Rust element type, and fast strided copies.
//!
//! Data-movement kernels (Transpose, Slice, Expand, Concat, Gather, ...) never
//! look at element values, so they are written once over [`Elem`] and
//! dispatched with [`for_any_dtype!`]. [`strided_copy`] materialises any
//! strided view (permutation, slice, broadcast) with contiguous block copies
//! where the layout allows, and [`permute`] is the transpose built on it.

use crate::error::{Result, RuntimeError};
use egret_ir::{DType, Element, Tensor};

/// An element type that data-movement kernels can read from and write to a tensor.
pub trait Elem: Clone + Default + PartialOrd + Send + Sync + 'static {
    /// The elements of `t` (which must have a dtype stored as `Self`).
    fn elems(t: &Tensor) -> Result<&[Self]>;
    /// Build a tensor of `dtype` from elements (the dtype is kept even when
    /// `Self` is only its storage type, e.g. `u8` for float8).
    fn tensor(dtype: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor>;
}

macro_rules! pod_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn elems(t: &Tensor) -> Result<&[Self]> {
                Ok(t.as_slice::<$t>()?)
            }
            fn tensor(dtype: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor> {
                if dtype == <$t as Element>::DTYPE {
                    Ok(Tensor::from_vec(shape, v)?)
                } else {
                    Ok(Tensor::from_bytes(dtype, shape, bytemuck::cast_slice(&v))?)
                }
            }
        }
    )*};
}
pod_elem!(
    f32,
    f64,
    half::f16,
    half::bf16,
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64
);

impl Elem for bool {
    fn elems(t: &Tensor) -> Result<&[Self]> {
        Ok(t.as_slice::<bool>()?)
    }
    fn tensor(_dtype: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor> {
        Ok(Tensor::from_bools(shape, v)?)
    }
}

impl Elem for String {
    fn elems(t: &Tensor) -> Result<&[Self]> {
        Ok(t.as_strings()?)
    }
    fn tensor(_dtype: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor> {
        Ok(Tensor::from_strings(shape, v)?)
    }
}

/// Run a block with `$T` bound to the storage type ([`Elem`]) of any dense
/// dtype: strings, bools, and sub-byte / float8 codes (as `u8`/`i8`) included.
/// Block-quantized dtypes give an error.
#[macro_export]
macro_rules! for_any_dtype {
    ($dt:expr, $T:ident => $body:block) => {{
        use egret_ir::DType as __D;
        match $dt {
            __D::F32 => {
                type $T = f32;
                $body
            }
            __D::F64 => {
                type $T = f64;
                $body
            }
            __D::F16 => {
                type $T = half::f16;
                $body
            }
            __D::BF16 => {
                type $T = half::bf16;
                $body
            }
            __D::I8 | __D::I4 | __D::I2 => {
                type $T = i8;
                $body
            }
            __D::I16 => {
                type $T = i16;
                $body
            }
            __D::I32 => {
                type $T = i32;
                $body
            }
            __D::I64 => {
                type $T = i64;
                $body
            }
            __D::U8
            | __D::U4
            | __D::U2
            | __D::F8E8M0
            | __D::F8E4M3FN
            | __D::F8E4M3FNUZ
            | __D::F8E5M2
            | __D::F8E5M2FNUZ
            | __D::F4E2M1 => {
                type $T = u8;
                $body
            }
            __D::U16 => {
                type $T = u16;
                $body
            }
            __D::U32 => {
                type $T = u32;
                $body
            }
            __D::U64 => {
                type $T = u64;
                $body
            }
            __D::Bool => {
                type $T = bool;
                $body
            }
            __D::String => {
                type $T = String;
                $body
            }
            other => {
                return Err($crate::error::RuntimeError::Msg(format!(
                    "unsupported dtype {other}"
                )))
            }
        }
    }};
}

/// Row-major strides (in elements) of a shape.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// Drop size-1 axes and merge axes that are contiguous with their successor.
fn simplify(shape: &[usize], strides: &[isize]) -> (Vec<usize>, Vec<isize>) {
    let mut sh: Vec<usize> = Vec::with_capacity(shape.len());
    let mut st: Vec<isize> = Vec::with_capacity(shape.len());
    for (&d, &s) in shape.iter().zip(strides) {
        if d == 1 {
            continue;
        }
        if let (Some(pd), Some(ps)) = (sh.last_mut(), st.last_mut()) {
            if *ps == s * d as isize {
                *pd *= d;
                *ps = s;
                continue;
            }
        }
        sh.push(d);
        st.push(s);
    }
    (sh, st)
}

/// Materialise the strided view of `src` that starts at element `offset` and has
/// the given output `shape` and per-axis element `strides` (negative = reversed,
/// zero = broadcast). Every reachable index is bounds-checked up front.
pub fn strided_copy<T: Clone>(
    src: &[T],
    offset: usize,
    shape: &[usize],
    strides: &[isize],
) -> Result<Vec<T>> {
    if shape.len() != strides.len() {
        return Err(RuntimeError::msg(
            "strided_copy: shape and strides differ in rank",
        ));
    }
    let n = super::checked_len(shape)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    // Range of reachable indices.
    let (mut lo, mut hi) = (offset as i128, offset as i128);
    for (&d, &s) in shape.iter().zip(strides) {
        let span = (d as i128 - 1) * s as i128;
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    if lo < 0 || hi >= src.len() as i128 {
        return Err(RuntimeError::msg(format!(
            "strided view {shape:?}/{strides:?}+{offset} out of bounds of {} elements",
            src.len()
        )));
    }
    let (sh, st) = simplify(shape, strides);
    let mut out = Vec::with_capacity(n);
    let rank = sh.len();
    if rank == 0 {
        out.push(src[offset].clone());
        return Ok(out);
    }
    let inner = sh[rank - 1];
    let istride = st[rank - 1];
    // Tiled 2-D transpose for the innermost pair when the second-last axis is unit-stride.
    if rank >= 2 && istride != 1 && st[rank - 2] == 1 && istride > 0 {
        transpose_tiled(src, offset as isize, &sh, &st, &mut out);
        return Ok(out);
    }
    let outer_shape = &sh[..rank - 1];
    let outer_strides = &st[..rank - 1];
    let mut idx = vec![0usize; rank - 1];
    let mut base = offset as isize;
    loop {
        let b = base as usize;
        if istride == 1 {
            out.extend_from_slice(&src[b..b + inner]);
        } else if istride == 0 {
            out.extend(std::iter::repeat_n(src[b].clone(), inner));
        } else {
            let mut p = base;
            for _ in 0..inner {
                out.push(src[p as usize].clone());
                p += istride;
            }
        }
        // Odometer over the outer axes.
        let mut ax = rank - 1;
        loop {
            if ax == 0 {
                return Ok(out);
            }
            ax -= 1;
            idx[ax] += 1;
            base += outer_strides[ax];
            if idx[ax] < outer_shape[ax] {
                break;
            }
            base -= outer_strides[ax] * outer_shape[ax] as isize;
            idx[ax] = 0;
        }
    }
}

/// Copy a view whose last two output axes are (unit-stride, strided): a batch of
/// 2-D transposes, done in cache-friendly tiles.
fn transpose_tiled<T: Clone>(
    src: &[T],
    offset: isize,
    sh: &[usize],
    st: &[isize],
    out: &mut Vec<T>,
) {
    const TILE: usize = 32;
    let rank = sh.len();
    let (rows, cols) = (sh[rank - 2], sh[rank - 1]);
    let cstride = st[rank - 1];
    let outer_shape = &sh[..rank - 2];
    let outer_strides = &st[..rank - 2];
    let outer: usize = outer_shape.iter().product();
    let mut idx = vec![0usize; rank - 2];
    let mut base = offset;
    let start = out.len();
    let plane = rows * cols;
    // Fill with clones of a valid element so the tile loops can assign in place.
    out.resize(start + outer * plane, src[offset as usize].clone());
    for o in 0..outer {
        let dst = &mut out[start + o * plane..start + (o + 1) * plane];
        for r0 in (0..rows).step_by(TILE) {
            for c0 in (0..cols).step_by(TILE) {
                for c in c0..(c0 + TILE).min(cols) {
                    let col_base = base + c as isize * cstride;
                    for r in r0..(r0 + TILE).min(rows) {
                        dst[r * cols + c] = src[(col_base + r as isize) as usize].clone();
                    }
                }
            }
        }
        for ax in (0..rank - 2).rev() {
            idx[ax] += 1;
            base += outer_strides[ax];
            if idx[ax] < outer_shape[ax] {
                break;
            }
            base -= outer_strides[ax] * outer_shape[ax] as isize;
            idx[ax] = 0;
        }
    }
}

/// Transpose `src` (row-major, `shape`) by `perm`: output axis `i` is input axis `perm[i]`.
pub fn permute<T: Clone>(
    src: &[T],
    shape: &[usize],
    perm: &[usize],
) -> Result<(Vec<usize>, Vec<T>)> {
    if perm.len() != shape.len() {
        return Err(RuntimeError::msg(format!(
            "perm {perm:?} does not match rank {}",
            shape.len()
        )));
    }
    let mut seen = vec![false; perm.len()];
    for &p in perm {
        if p >= perm.len() || seen[p] {
            return Err(RuntimeError::msg(format!("invalid permutation {perm:?}")));
        }
        seen[p] = true;
    }
    let st = strides_of(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    Ok((
        out_shape.clone(),
        strided_copy(src, 0, &out_shape, &out_strides)?,
    ))
}

/// `(outer, dim, inner)` of `shape` around `axis`: the products of the dims
/// before it, the dim itself, and the product of the dims after it.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Select whole slices along `axis` by index (the core of Gather, Compress and
/// Unique): the output has `idx.len()` in place of `shape[axis]`.
pub fn take<T: Clone>(src: &[T], shape: &[usize], axis: usize, idx: &[usize]) -> Result<Vec<T>> {
    if axis >= shape.len() || src.len() != shape.iter().product::<usize>() {
        return Err(RuntimeError::msg(format!(
            "take: axis {axis} / data of {} elements do not fit shape {shape:?}",
            src.len()
        )));
    }
    let (outer, d, inner) = split_at_axis(shape, axis);
    if let Some(&bad) = idx.iter().find(|&&i| i >= d) {
        return Err(RuntimeError::msg(format!(
            "index {bad} out of range for axis of size {d}"
        )));
    }
    let n = outer
        .checked_mul(idx.len())
        .and_then(|x| x.checked_mul(inner));
    let n = n.ok_or_else(|| RuntimeError::msg("take: output size overflows"))?;
    super::checked_len(&[n])?;
    let mut out = Vec::with_capacity(n);
    for o in 0..outer {
        let plane = &src[o * d * inner..(o + 1) * d * inner];
        for &i in idx {
            out.extend_from_slice(&plane[i * inner..(i + 1) * inner]);
        }
    }
    Ok(out)
}

/// The elements of `src` at the given flat offsets (validated).
pub fn pick<T: Clone>(src: &[T], offsets: &[usize]) -> Result<Vec<T>> {
    offsets
        .iter()
        .map(|&o| {
            src.get(o).cloned().ok_or_else(|| {
                RuntimeError::msg(format!("offset {o} out of range of {} elements", src.len()))
            })
        })
        .collect()
}

/// The slices `start..start + len` along `axis` (the core of Split).
pub fn take_range<T: Clone>(
    src: &[T],
    shape: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> Result<Vec<T>> {
    if axis >= shape.len()
        || src.len() != shape.iter().product::<usize>()
        || start + len > shape[axis]
    {
        return Err(RuntimeError::msg(format!(
            "take_range: {start}+{len} on axis {axis} does not fit shape {shape:?}"
        )));
    }
    let (outer, d, inner) = split_at_axis(shape, axis);
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let b = (o * d + start) * inner;
        out.extend_from_slice(&src[b..b + len * inner]);
    }
    Ok(out)
}

/// Concatenate row-major blocks along an axis: part `k` has `dims[k]` entries on
/// that axis; `outer`/`inner` are the products of the dims before/after it.
pub fn concat<T: Clone>(parts: &[(&[T], usize)], outer: usize, inner: usize) -> Result<Vec<T>> {
    let mut total = 0usize;
    for (p, d) in parts {
        if p.len() != outer * d * inner {
            return Err(RuntimeError::msg(
                "concat: input sizes do not match their shapes",
            ));
        }
        total += p.len();
    }
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (p, d) in parts {
            let blk = d * inner;
            out.extend_from_slice(&p[o * blk..(o + 1) * blk]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_2d_and_3d() {
        let v: Vec<i32> = (0..6).collect();
        let (s, o) = permute(&v, &[2, 3], &[1, 0]).unwrap();
        assert_eq!(s, vec![3, 2]);
        assert_eq!(o, vec![0, 3, 1, 4, 2, 5]);
        let v: Vec<i32> = (0..24).collect();
        let (s, o) = permute(&v, &[2, 3, 4], &[1, 0, 2]).unwrap();
        assert_eq!(s, vec![3, 2, 4]);
        assert_eq!(&o[..8], &[0, 1, 2, 3, 12, 13, 14, 15]);
        let (_, o) = permute(&v, &[2, 3, 4], &[2, 1, 0]).unwrap();
        assert_eq!(&o[..4], &[0, 12, 4, 16]);
        assert!(permute(&v, &[2, 3, 4], &[0, 0, 1]).is_err());
    }

    #[test]
    fn big_transpose_matches_naive() {
        let (r, c) = (70, 45);
        let v: Vec<u32> = (0..(r * c) as u32).collect();
        let (_, o) = permute(&v, &[r, c], &[1, 0]).unwrap();
        for i in 0..c {
            for j in 0..r {
                assert_eq!(o[i * r + j], (j * c + i) as u32);
            }
        }
    }

    #[test]
    fn reversed_and_broadcast_views() {
        let v = vec![1, 2, 3, 4];
        assert_eq!(strided_copy(&v, 3, &[4], &[-1]).unwrap(), vec![4, 3, 2, 1]);
        assert_eq!(
            strided_copy(&v, 1, &[2, 3], &[2, 0]).unwrap(),
            vec![2, 2, 2, 4, 4, 4]
        );
        assert!(strided_copy(&v, 2, &[3], &[1]).is_err());
        let s = vec!["a".to_string(), "b".to_string()];
        assert_eq!(strided_copy(&s, 1, &[2], &[-1]).unwrap(), vec!["b", "a"]);
    }

    #[test]
    fn take_range_and_concat() {
        let v: Vec<i32> = (0..12).collect();
        assert_eq!(
            take(&v, &[3, 4], 1, &[3, 0]).unwrap(),
            vec![3, 0, 7, 4, 11, 8]
        );
        assert_eq!(take(&v, &[3, 4], 0, &[2]).unwrap(), vec![8, 9, 10, 11]);
        assert!(take(&v, &[3, 4], 0, &[3]).is_err());
        assert_eq!(
            take_range(&v, &[3, 4], 1, 1, 2).unwrap(),
            vec![1, 2, 5, 6, 9, 10]
        );
        let a = [1, 2, 3, 4];
        let b = [5, 6];
        assert_eq!(
            concat(&[(&a[..], 2), (&b[..], 1)], 2, 1).unwrap(),
            vec![1, 2, 5, 3, 4, 6]
        );
    }
}
