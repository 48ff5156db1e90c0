//! The bitmap storage of a row-pruned matrix `W [n, k]` (the weights of
//! `egret::MatMulSparse`, see [`crate::infer::egret_ops`]).
//!
//! * `mask`: u8 `[n, ceil(k / 8)]`; bit `j % 8` (LSB first) of byte `j / 8` of
//!   row `r` is set when `W[r, j]` is kept. Pad bits past `k` are zero.
//! * `values`: the kept values in row-major order, f32 `[nnz]`, or i8 `[nnz]`
//!   with per-row symmetric scales (`W[r, j] = q · scale[r]`, `scale = max|kept|
//!   / 127`, rounding half away from zero).
//! * `row_ptr`: i64 `[n + 1]`, the start of each row in `values` (`row_ptr[0] =
//!   0`, `row_ptr[n] = nnz`).
//! * `scale`: f32 `[n]`, only with i8 values.
//!
//! [`SparseMatrix`] owns the arrays (for the passes); [`SparseView`] borrows
//! them (for the kernels). Both are only built through validating constructors,
//! so every view in hand is consistent: a kernel may index rows without checks.

use crate::error::{IrError, Result};
use crate::tensor::Tensor;
use crate::DType;

/// A pruned `[n, k]` matrix in the bitmap format.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseMatrix {
    /// Output channels (rows).
    pub n: usize,
    /// Inputs per row.
    pub k: usize,
    /// `n · ceil(k / 8)` bytes of keep bits.
    pub mask: Vec<u8>,
    /// The kept values.
    pub values: SparseValues,
    /// `n + 1` offsets of each row in the values.
    pub row_ptr: Vec<i64>,
}

/// Stored values.
#[derive(Clone, Debug, PartialEq)]
pub enum SparseValues {
    /// f32 values.
    F32(Vec<f32>),
    /// Int8 values with one scale per row.
    Int8 {
        /// The quantized kept values.
        q: Vec<i8>,
        /// `n` row scales.
        scale: Vec<f32>,
    },
}

/// Borrowed values of a [`SparseView`].
#[derive(Clone, Copy, Debug)]
pub enum SparseValuesRef<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// Int8 values with one scale per row.
    Int8 {
        /// The quantized kept values.
        q: &'a [i8],
        /// `n` row scales.
        scale: &'a [f32],
    },
}

/// A validated, borrowed bitmap matrix (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct SparseView<'a> {
    n: usize,
    k: usize,
    mask: &'a [u8],
    values: SparseValuesRef<'a>,
    row_ptr: &'a [i64],
}

/// Bytes of one mask row for `k` inputs.
pub fn mask_row_bytes(k: usize) -> usize {
    k.div_ceil(8)
}

fn bad(msg: String) -> IrError {
    IrError::ShapeMismatch(format!("sparse matrix: {msg}"))
}

impl<'a> SparseView<'a> {
    /// Check the arrays describe an `[n, k]` matrix: lengths, `row_ptr` from 0
    /// to `nnz` and non-decreasing, each mask row's popcount equal to its
    /// `row_ptr` span, pad bits zero. Costs one pass over the mask.
    pub fn new(
        n: usize,
        k: usize,
        mask: &'a [u8],
        values: SparseValuesRef<'a>,
        row_ptr: &'a [i64],
    ) -> Result<SparseView<'a>> {
        let kb = mask_row_bytes(k);
        if Some(mask.len()) != n.checked_mul(kb) {
            return Err(bad(format!(
                "mask has {} bytes for [{n}, {kb}]",
                mask.len()
            )));
        }
        if Some(row_ptr.len()) != n.checked_add(1) {
            return Err(bad(format!(
                "row_ptr has {} entries for {n} rows",
                row_ptr.len()
            )));
        }
        let nnz = match values {
            SparseValuesRef::F32(v) => v.len(),
            SparseValuesRef::Int8 { q, scale } => {
                if scale.len() != n {
                    return Err(bad(format!("{} scales for {n} rows", scale.len())));
                }
                q.len()
            }
        };
        if row_ptr[0] != 0 || usize::try_from(row_ptr[n]).ok() != Some(nnz) {
            return Err(bad(format!(
                "row_ptr must run from 0 to nnz = {nnz}, not {} to {}",
                row_ptr[0], row_ptr[n]
            )));
        }
        let pad = if k.is_multiple_of(8) {
            0
        } else {
            0xFFu8 << (k % 8)
        };
        if let Some(r) = row_ptr.windows(2).position(|w| w[1] < w[0]) {
            return Err(bad(format!(
                "row_ptr decreases at row {r}: {} > {}",
                row_ptr[r],
                row_ptr[r + 1]
            )));
        }
        for r in 0..n {
            let (a, b) = (row_ptr[r], row_ptr[r + 1]);
            let row = &mask[r * kb..(r + 1) * kb];
            if row.last().is_some_and(|&l| l & pad != 0) {
                return Err(bad(format!("row {r} sets mask bits past k = {k}")));
            }
            let ones: u64 = row.iter().map(|b| u64::from(b.count_ones())).sum();
            if ones != (b - a) as u64 {
                return Err(bad(format!(
                    "row {r} keeps {ones} entries but row_ptr gives it {}",
                    b - a
                )));
            }
        }
        Ok(SparseView {
            n,
            k,
            mask,
            values,
            row_ptr,
        })
    }

    /// Parse and validate the op-input tensors: mask u8 `[n, ceil(k/8)]`,
    /// values f32 or i8 `[nnz]`, row_ptr i64 `[n + 1]`, and f32 scale `[n]`
    /// exactly when the values are i8.
    pub fn from_tensors(
        mask: &'a Tensor,
        values: &'a Tensor,
        row_ptr: &'a Tensor,
        scale: Option<&'a Tensor>,
        k: usize,
    ) -> Result<SparseView<'a>> {
        let &[n, kb] = mask.shape() else {
            return Err(bad(format!("mask must be [n, kb], not {:?}", mask.shape())));
        };
        if kb != mask_row_bytes(k) {
            return Err(bad(format!(
                "mask rows of {kb} bytes for k = {k} (want {})",
                mask_row_bytes(k)
            )));
        }
        if mask.dtype() != DType::U8 || row_ptr.dtype() != DType::I64 {
            return Err(bad(format!(
                "mask must be u8 and row_ptr i64, not {} and {}",
                mask.dtype(),
                row_ptr.dtype()
            )));
        }
        if values.rank() != 1 || row_ptr.rank() != 1 {
            return Err(bad(format!(
                "values {:?} and row_ptr {:?} must be vectors",
                values.shape(),
                row_ptr.shape()
            )));
        }
        let vals = match (values.dtype(), scale) {
            (DType::F32, None) => SparseValuesRef::F32(values.as_slice()?),
            (DType::I8, Some(s)) if s.rank() == 1 && s.dtype() == DType::F32 => {
                SparseValuesRef::Int8 {
                    q: values.as_slice()?,
                    scale: s.as_slice()?,
                }
            }
            (dt, s) => {
                return Err(bad(format!(
                    "values must be f32 without a scale or i8 with a [n] scale, not {dt} {}",
                    if s.is_some() { "with one" } else { "without" }
                )))
            }
        };
        SparseView::new(n, k, mask.as_slice()?, vals, row_ptr.as_slice()?)
    }

    /// Rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// All the values.
    pub fn values(&self) -> SparseValuesRef<'a> {
        self.values
    }

    /// The mask bytes of row `r` (empty past the last row).
    pub fn mask_row(&self, r: usize) -> &'a [u8] {
        let kb = mask_row_bytes(self.k);
        self.mask.get(r * kb..(r + 1) * kb).unwrap_or(&[])
    }

    /// Where row `r`'s values start (validated: within the values).
    pub fn row_start(&self, r: usize) -> usize {
        self.row_ptr.get(r).map_or(0, |&p| p as usize)
    }

    /// The scale of row `r` (1 for f32 values).
    pub fn row_scale(&self, r: usize) -> f32 {
        match self.values {
            SparseValuesRef::F32(_) => 1.0,
            SparseValuesRef::Int8 { scale, .. } => scale.get(r).copied().unwrap_or(0.0),
        }
    }

    /// Row `r` densified into `out` (`k` values) without the int8 scale:
    /// dropped entries 0.
    pub fn row_unscaled_into(&self, r: usize, out: &mut [f32]) {
        out.fill(0.0);
        let mut p = self.row_start(r);
        for (b, &byte) in self.mask_row(r).iter().enumerate() {
            let mut bits = byte;
            while bits != 0 {
                let j = 8 * b + bits.trailing_zeros() as usize;
                let v = match self.values {
                    SparseValuesRef::F32(v) => v.get(p).copied(),
                    SparseValuesRef::Int8 { q, .. } => q.get(p).map(|&q| f32::from(q)),
                };
                if let (Some(o), Some(v)) = (out.get_mut(j), v) {
                    *o = v;
                }
                p += 1;
                bits &= bits - 1;
            }
        }
    }

    /// The dense row-major `[n, k]` matrix (dropped entries 0).
    pub fn densify(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.k];
        if self.k == 0 {
            return out;
        }
        for (r, row) in out.chunks_exact_mut(self.k).enumerate() {
            self.row_unscaled_into(r, row);
            let s = self.row_scale(r);
            if s != 1.0 {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        out
    }

    /// An owned copy.
    pub fn to_owned(&self) -> SparseMatrix {
        SparseMatrix {
            n: self.n,
            k: self.k,
            mask: self.mask.to_vec(),
            values: match self.values {
                SparseValuesRef::F32(v) => SparseValues::F32(v.to_vec()),
                SparseValuesRef::Int8 { q, scale } => SparseValues::Int8 {
                    q: q.to_vec(),
                    scale: scale.to_vec(),
                },
            },
            row_ptr: self.row_ptr.to_vec(),
        }
    }
}

impl SparseMatrix {
    /// Encode the kept entries (`keep[r*k + j]`) of row-major `w`, in f32 or per-row int8.
    pub fn encode(
        w: &[f32],
        n: usize,
        k: usize,
        keep: &[bool],
        int8: bool,
    ) -> Result<SparseMatrix> {
        let len = n
            .checked_mul(k)
            .ok_or_else(|| IrError::TooLarge(format!("[{n}, {k}]")))?;
        if w.len() != len || keep.len() != len {
            return Err(bad(format!(
                "{} weights and {} keep flags for [{n}, {k}]",
                w.len(),
                keep.len()
            )));
        }
        let kb = mask_row_bytes(k);
        let mut mask = vec![0u8; n * kb];
        let mut kept = Vec::new();
        let mut row_ptr = vec![0i64];
        let mut scale = Vec::new();
        for r in 0..n {
            let start = kept.len();
            for j in 0..k {
                if keep[r * k + j] {
                    mask[r * kb + j / 8] |= 1 << (j % 8);
                    kept.push(w[r * k + j]);
                }
            }
            if int8 {
                let amax = kept[start..].iter().fold(0f32, |a, v| a.max(v.abs()));
                scale.push(amax / 127.0);
            }
            row_ptr.push(kept.len() as i64);
        }
        let values = if int8 {
            let mut q = Vec::with_capacity(kept.len());
            for r in 0..n {
                let s = scale[r];
                let span = row_ptr[r] as usize..row_ptr[r + 1] as usize;
                q.extend(kept[span].iter().map(|&v| {
                    if s == 0.0 {
                        0
                    } else {
                        (v / s).round().clamp(-127.0, 127.0) as i8
                    }
                }));
            }
            SparseValues::Int8 { q, scale }
        } else {
            SparseValues::F32(kept)
        };
        Ok(SparseMatrix {
            n,
            k,
            mask,
            values,
            row_ptr,
        })
    }

    /// A validated borrowed view (errors if the public fields were made inconsistent).
    pub fn view(&self) -> Result<SparseView<'_>> {
        let values = match &self.values {
            SparseValues::F32(v) => SparseValuesRef::F32(v),
            SparseValues::Int8 { q, scale } => SparseValuesRef::Int8 { q, scale },
        };
        SparseView::new(self.n, self.k, &self.mask, values, &self.row_ptr)
    }

    /// The dense row-major `[n, k]` matrix it stands for (dropped entries 0).
    /// An inconsistent matrix (fields edited by hand) densifies to zeros.
    pub fn densify(&self) -> Vec<f32> {
        self.view()
            .map_or_else(|_| vec![0.0; self.n * self.k], |v| v.densify())
    }

    /// The tensors in op-input order: mask, values, row_ptr, then scale for int8.
    pub fn tensors(&self) -> Vec<Tensor> {
        let kb = mask_row_bytes(self.k);
        let mut out = Vec::with_capacity(4);
        let mut push = |t: Result<Tensor>| {
            if let Ok(t) = t {
                out.push(t);
            }
        };
        push(Tensor::from_vec(vec![self.n, kb], self.mask.clone()));
        match &self.values {
            SparseValues::F32(v) => push(Tensor::from_vec(vec![v.len()], v.clone())),
            SparseValues::Int8 { q, .. } => push(Tensor::from_vec(vec![q.len()], q.clone())),
        }
        push(Tensor::from_vec(
            vec![self.row_ptr.len()],
            self.row_ptr.clone(),
        ));
        if let SparseValues::Int8 { scale, .. } = &self.values {
            push(Tensor::from_vec(vec![scale.len()], scale.clone()));
        }
        out
    }

    /// Parse and fully validate tensors in that order (hostile input: lengths,
    /// monotonic row_ptr, popcount of each mask row equal to its row_ptr span,
    /// trailing pad bits zero).
    pub fn from_tensors(
        mask: &Tensor,
        values: &Tensor,
        row_ptr: &Tensor,
        scale: Option<&Tensor>,
        k: usize,
    ) -> Result<SparseMatrix> {
        Ok(SparseView::from_tensors(mask, values, row_ptr, scale, k)?.to_owned())
    }

    /// Bytes the stored tensors take.
    pub fn bytes(&self) -> usize {
        let values = match &self.values {
            SparseValues::F32(v) => 4 * v.len(),
            SparseValues::Int8 { q, scale } => q.len() + 4 * scale.len(),
        };
        self.mask.len() + values + 8 * self.row_ptr.len()
    }
}

#[cfg(test)]
mod tests;
