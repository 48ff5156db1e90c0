//! Kernels: Gather, GatherElements, GatherND, ScatterElements, ScatterND, TensorScatter.
//!
//! Index tensors may be int32 or int64 and negative indices count from the end;
//! every index is validated before use. Gathers copy whole contiguous blocks
//! (Gather on axis 0 is an embedding lookup: one `memcpy` per index). Scatter
//! reductions (`add`, `mul`, `max`, `min`) work on every numeric dtype; plain
//! scatters and all gathers work on every dtype, strings included.

use crate::error::{Result, RuntimeError};
use crate::kernels::strided::{self, strides_of, Elem};
use crate::kernels::{checked_len, input, one, opt_input};
use crate::ops::elementwise::Num;
use crate::ops::shape::{axis_of, map_elems};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_any_dtype, for_dtypes};
use egret_ir::{Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Gather", gather);
    r.add("GatherElements", gather_elements);
    r.add("GatherND", gather_nd);
    r.add("ScatterElements", scatter_elements);
    r.add("ScatterND", scatter_nd);
    r.add("TensorScatter", tensor_scatter);
}

/// Normalise index values against an axis of size `d` (negative counts from the end).
fn norm_indices(t: &Tensor, d: usize) -> Result<Vec<usize>> {
    t.to_i64_vec()?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + d as i64 } else { i };
            if j < 0 || j >= d as i64 {
                bail!("index {i} out of range for axis of size {d}");
            }
            Ok(j as usize)
        })
        .collect()
}

fn gather(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, ind) = (input(inputs, 0)?, input(inputs, 1)?);
    if x.rank() == 0 {
        bail!("Gather needs rank >= 1");
    }
    let axis = axis_of(ctx.attrs().int_or("axis", 0)?, x.rank())?;
    let idx = norm_indices(ind, x.shape()[axis])?;
    let mut shape = x.shape()[..axis].to_vec();
    shape.extend_from_slice(ind.shape());
    shape.extend_from_slice(&x.shape()[axis + 1..]);
    checked_len(&shape)?;
    one(map_elems!(x, T, |s| (
        shape.clone(),
        strided::take(s, x.shape(), axis, &idx)?
    )))
}

/// For each element of an `ishape`-shaped index tensor, the data offset of the
/// same coordinate with the `axis` coordinate replaced by the index.
fn element_offsets(
    dshape: &[usize],
    ishape: &[usize],
    axis: usize,
    idx: &[usize],
) -> Result<Vec<usize>> {
    if dshape.len() != ishape.len() {
        bail!("data and indices differ in rank");
    }
    let dst = strides_of(dshape);
    let ist = strides_of(ishape);
    let mut out = Vec::with_capacity(idx.len());
    for (p, &i) in idx.iter().enumerate() {
        let mut off = i * dst[axis];
        for k in 0..ishape.len() {
            if k != axis {
                let c = (p / ist[k]) % ishape[k];
                if c >= dshape[k] {
                    bail!("indices shape {ishape:?} exceeds data shape {dshape:?} off the axis");
                }
                off += c * dst[k];
            }
        }
        out.push(off);
    }
    Ok(out)
}

fn gather_elements(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, ind) = (input(inputs, 0)?, input(inputs, 1)?);
    let axis = axis_of(ctx.attrs().int_or("axis", 0)?, x.rank())?;
    let idx = norm_indices(ind, *x.shape().get(axis).unwrap_or(&0))?;
    let offs = element_offsets(x.shape(), ind.shape(), axis, &idx)?;
    one(map_elems!(x, T, |s| (
        ind.shape().to_vec(),
        strided::pick(s, &offs)?
    )))
}

/// The data offsets addressed by the index tuples of GatherND/ScatterND, plus
/// the size of the slice each one selects. `batch_dims` leading dims are shared.
fn nd_offsets(dshape: &[usize], ind: &Tensor, batch_dims: usize) -> Result<(Vec<usize>, usize)> {
    let ishape = ind.shape();
    let k = *ishape
        .last()
        .ok_or_else(|| RuntimeError::msg("indices must have rank >= 1"))?;
    if batch_dims + k > dshape.len()
        || batch_dims >= ishape.len()
        || ishape[..batch_dims] != dshape[..batch_dims]
    {
        bail!("indices {ishape:?} do not fit data {dshape:?} with batch_dims {batch_dims}");
    }
    let raw = ind.to_i64_vec()?;
    let dst = strides_of(dshape);
    let batch: usize = dshape[..batch_dims].iter().product();
    let tuples: usize = ishape[..ishape.len() - 1].iter().product();
    let per_batch = tuples.checked_div(batch).unwrap_or(0);
    let inner: usize = dshape[batch_dims + k..].iter().product();
    let bstride = if batch_dims == 0 {
        0
    } else {
        dst[batch_dims - 1]
    };
    let mut offs = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let b = t.checked_div(per_batch).unwrap_or(0);
        let mut off = b * bstride;
        for j in 0..k {
            let d = dshape[batch_dims + j];
            let i = raw[t * k + j];
            let i = if i < 0 { i + d as i64 } else { i };
            if i < 0 || i >= d as i64 {
                bail!("index {} out of range for axis of size {d}", raw[t * k + j]);
            }
            off += i as usize * dst[batch_dims + j];
        }
        offs.push(off);
    }
    Ok((offs, inner))
}

fn gather_nd(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, ind) = (input(inputs, 0)?, input(inputs, 1)?);
    let b = usize::try_from(ctx.attrs().int_or("batch_dims", 0)?)
        .map_err(|_| RuntimeError::msg("negative batch_dims"))?;
    let (offs, inner) = nd_offsets(x.shape(), ind, b)?;
    let k = ind.shape().last().copied().unwrap_or(0);
    let mut shape = ind.shape()[..ind.rank() - 1].to_vec();
    shape.extend_from_slice(&x.shape()[b + k..]);
    checked_len(&shape)?;
    one(map_elems!(x, T, |s| {
        let mut v = Vec::with_capacity(offs.len() * inner);
        for &o in &offs {
            v.extend_from_slice(&s[o..o + inner]);
        }
        (shape.clone(), v)
    }))
}

/// How a scatter combines an update with the existing value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(ctx: &KernelCtx<'_>) -> Result<Reduction> {
    Ok(match ctx.attrs().string_or("reduction", "none")? {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        r => bail!("unknown reduction {r}"),
    })
}

/// Copy `data` and write `updates` at `offs` (`inner` contiguous elements each),
/// combining with the reduction. `Reduction::None` needs no arithmetic, so it is
/// dispatched over every dtype; the others over numeric dtypes.
fn scatter(
    data: &Tensor,
    updates: &Tensor,
    offs: &[usize],
    inner: usize,
    red: Reduction,
) -> Result<Tensor> {
    if data.dtype() != updates.dtype() || updates.numel() != offs.len() * inner {
        bail!("updates do not match the data dtype or the indices");
    }
    if offs.iter().any(|&o| o + inner > data.numel()) {
        bail!("scatter target out of range");
    }
    fn apply<T: Elem>(
        data: &Tensor,
        up: &[T],
        offs: &[usize],
        inner: usize,
        f: impl Fn(&mut T, &T),
    ) -> Result<Vec<T>> {
        let mut out = T::elems(data)?.to_vec();
        for (n, &o) in offs.iter().enumerate() {
            for (dst, u) in out[o..o + inner]
                .iter_mut()
                .zip(&up[n * inner..(n + 1) * inner])
            {
                f(dst, u);
            }
        }
        Ok(out)
    }
    let shape = data.shape().to_vec();
    if red == Reduction::None {
        return Ok(for_any_dtype!(data.dtype(), T => {
            T::tensor(data.dtype(), shape, apply(data, T::elems(updates)?, offs, inner, |d: &mut T, u: &T| d.clone_from(u))?)?
        }));
    }
    for_dtypes!(data.dtype(), T => {
        let f = move |d: &mut T, u: &T| {
            *d = match red {
                Reduction::Add => d.add(*u),
                Reduction::Mul => d.mul(*u),
                Reduction::Max if *u > *d => *u,
                Reduction::Min if *u < *d => *u,
                _ => *d,
            }
        };
        Ok(Tensor::from_vec(shape, apply(data, updates.as_slice::<T>()?, offs, inner, f)?)?)
    }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
}

fn scatter_elements(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, ind, up) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let axis = axis_of(ctx.attrs().int_or("axis", 0)?, x.rank())?;
    if ind.shape() != up.shape() {
        bail!("indices and updates differ in shape");
    }
    let idx = norm_indices(ind, *x.shape().get(axis).unwrap_or(&0))?;
    let offs = element_offsets(x.shape(), ind.shape(), axis, &idx)?;
    one(scatter(x, up, &offs, 1, reduction(ctx)?)?)
}

fn scatter_nd(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (x, ind, up) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let (offs, inner) = nd_offsets(x.shape(), ind, 0)?;
    one(scatter(x, up, &offs, inner, reduction(ctx)?)?)
}

fn tensor_scatter(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (past, up) = (input(inputs, 0)?, input(inputs, 1)?);
    let r = past.rank();
    let axis = axis_of(ctx.attrs().int_or("axis", -2)?, r)?;
    if up.rank() != r || (0..r).any(|i| i != axis && up.shape()[i] != past.shape()[i]) || axis == 0
    {
        bail!(
            "update {:?} does not fit cache {:?} on axis {axis}",
            up.shape(),
            past.shape()
        );
    }
    let circular = ctx.attrs().string_or("mode", "linear")? == "circular";
    let (outer, max_len, inner) = strided::split_at_axis(past.shape(), axis);
    let seq = up.shape()[axis];
    let batch = past.shape()[0];
    let writes = match opt_input(inputs, 2)? {
        Some(w) => w.to_i64_vec()?,
        None => vec![0; batch],
    };
    if writes.len() != batch {
        bail!(
            "write_indices has {} entries for batch {batch}",
            writes.len()
        );
    }
    let per_batch = outer.checked_div(batch).unwrap_or(0);
    let mut offs = Vec::with_capacity(outer * seq);
    for o in 0..outer {
        let w = writes[o / per_batch.max(1)];
        for s in 0..seq {
            let mut p = w + s as i64;
            if circular {
                p = p.rem_euclid(max_len.max(1) as i64);
            }
            if p < 0 || p >= max_len as i64 {
                bail!("write position {p} outside the cache of length {max_len}");
            }
            offs.push((o * max_len + p as usize) * inner);
        }
    }
    one(scatter(past, up, &offs, inner, Reduction::None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_offsets_replace_axis_coordinate() {
        // data 2x3, indices 2x2 on axis 1: [[2,0],[1,1]]
        let offs = element_offsets(&[2, 3], &[2, 2], 1, &[2, 0, 1, 1]).unwrap();
        assert_eq!(offs, vec![2, 0, 4, 4]);
        assert!(element_offsets(&[2, 3], &[3, 1], 1, &[0, 0, 0]).is_err());
    }

    #[test]
    fn nd_offsets_with_batch_dims() {
        let ind = Tensor::from_vec(vec![2, 1, 1], vec![1i64, 0]).unwrap();
        let (offs, inner) = nd_offsets(&[2, 2, 2], &ind, 1).unwrap();
        assert_eq!((offs, inner), (vec![2, 4], 2));
        let bad = Tensor::from_vec(vec![1, 1], vec![5i64]).unwrap();
        assert!(nd_offsets(&[2, 2], &bad, 0).is_err());
    }

    #[test]
    fn scatter_reductions() {
        let data = Tensor::from_vec(vec![4], vec![1f32, 2., 3., 4.]).unwrap();
        let up = Tensor::from_vec(vec![2], vec![10f32, 0.5]).unwrap();
        let add = scatter(&data, &up, &[1, 1], 1, Reduction::Add).unwrap();
        assert_eq!(add.as_slice::<f32>().unwrap(), &[1., 12.5, 3., 4.]);
        let max = scatter(&data, &up, &[0, 3], 1, Reduction::Max).unwrap();
        assert_eq!(max.as_slice::<f32>().unwrap(), &[10., 2., 3., 4.]);
        let none = scatter(&data, &up, &[3, 0], 1, Reduction::None).unwrap();
        assert_eq!(none.as_slice::<f32>().unwrap(), &[0.5, 2., 3., 10.]);
    }
}
