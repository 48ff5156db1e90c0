//! Kernels: data movement: Reshape, Transpose, Concat, Slice, Split,
//! Squeeze/Unsqueeze, Flatten, Expand, Tile, Pad, CenterCropPad, Shape, Size,
//! Identity, Dropout, ConstantOfShape, Range, Trilu, EyeLike, OneHot, NonZero,
//! DepthToSpace/SpaceToDepth, Compress, ReverseSequence, Unique.
//!
//! Every kernel that only moves elements is written once over
//! [`Elem`] and dispatched with [`for_any_dtype!`], so strings, bools and
//! float8 codes work everywhere numbers do. Reshape-like ops
//! (Reshape, Squeeze, Unsqueeze, Flatten, identity Transposes) share the input's
//! storage instead of copying.

use crate::error::{Result, RuntimeError};
use crate::kernels::convert::{collect_as, Wide};
use crate::kernels::mt19937::Mt19937;
use crate::kernels::strided::{self, permute, split_at_axis, strided_copy, strides_of, Elem};
use crate::kernels::{broadcast_shapes, checked_len, input, norm_axis, one, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_any_dtype};
use egret_ir::{DType, Tensor, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Reshape", reshape);
    r.add("Transpose", transpose);
    r.add("Concat", concat);
    r.add("Slice", slice);
    r.add("Split", split);
    r.add("Squeeze", squeeze);
    r.add("Unsqueeze", unsqueeze);
    r.add("Flatten", flatten);
    r.add("Expand", expand);
    r.add("Tile", tile);
    r.add("Pad", pad);
    r.add("CenterCropPad", center_crop_pad);
    r.add("Shape", shape);
    r.add("Size", size);
    r.add("Identity", identity);
    r.add("Dropout", dropout);
    r.add("ConstantOfShape", constant_of_shape);
    r.add("Range", range);
    r.add("Trilu", trilu);
    r.add("EyeLike", eye_like);
    r.add("OneHot", one_hot);
    r.add("NonZero", non_zero);
    r.add("DepthToSpace", depth_to_space);
    r.add("SpaceToDepth", space_to_depth);
    r.add("Compress", compress);
    r.add("ReverseSequence", reverse_sequence);
    r.add("Unique", unique);
}

// ---------------------------------------------------------------------------
// Shared helpers (also used by the gather, reduce and sequence families)
// ---------------------------------------------------------------------------

/// Required integer input `i` (axes, shapes, pads...).
pub(crate) fn ints(inputs: &[Option<Value>], i: usize) -> Result<Vec<i64>> {
    Ok(input(inputs, i)?.to_i64_vec()?)
}

/// Optional integer input `i`.
pub(crate) fn opt_ints(inputs: &[Option<Value>], i: usize) -> Result<Option<Vec<i64>>> {
    Ok(match opt_input(inputs, i)? {
        Some(t) => Some(t.to_i64_vec()?),
        None => None,
    })
}

/// A non-negative integer as `usize`, or an error naming `what`.
pub(crate) fn to_usize(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v)
        .map_err(|_| RuntimeError::msg(format!("{what} must be non-negative, got {v}")))
}

/// Apply `f` to the elements of `t` and wrap the result as a tensor of the same dtype.
macro_rules! map_elems {
    ($t:expr, $T:ident, |$src:ident| $body:expr) => {{
        let __t: &Tensor = $t;
        for_any_dtype!(__t.dtype(), $T => {
            let $src: &[$T] = $T::elems(__t)?;
            let (shape, v): (Vec<usize>, Vec<$T>) = $body;
            $T::tensor(__t.dtype(), shape, v)?
        })
    }};
}
pub(crate) use map_elems;

/// Build a tensor of `dtype` from f64 values (numpy `astype` semantics).
pub(crate) fn from_f64s(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor> {
    collect_as(dtype, shape, v.into_iter().map(Wide::F), false)
}

/// Concatenate tensors of one dtype along `axis` (possibly negative).
pub(crate) fn concat_tensors(ts: &[&Tensor], axis: i64) -> Result<Tensor> {
    let first = ts
        .first()
        .ok_or_else(|| RuntimeError::msg("concat of nothing"))?;
    let rank = first.rank();
    let axis = axis_of(axis, rank)?;
    let mut out_shape = first.shape().to_vec();
    out_shape[axis] = 0;
    for t in ts {
        if t.dtype() != first.dtype() || t.rank() != rank {
            bail!("concat inputs differ in dtype or rank");
        }
        for (i, (&a, &b)) in t.shape().iter().zip(first.shape()).enumerate() {
            if i != axis && a != b {
                bail!(
                    "concat inputs {:?} and {:?} differ off axis {axis}",
                    t.shape(),
                    first.shape()
                );
            }
        }
        out_shape[axis] += t.shape()[axis];
    }
    checked_len(&out_shape)?;
    let (outer, _, inner) = split_at_axis(&out_shape, axis);
    Ok(map_elems!(first, T, |_s| {
        let parts = ts
            .iter()
            .map(|t| Ok((T::elems(t)?, t.shape()[axis])))
            .collect::<Result<Vec<_>>>()?;
        (out_shape.clone(), strided::concat(&parts, outer, inner)?)
    }))
}

/// Split `t` along `axis` into consecutive pieces of the given sizes.
pub(crate) fn split_tensor(t: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let d = *t
        .shape()
        .get(axis)
        .ok_or_else(|| RuntimeError::msg("split axis out of range"))?;
    if sizes.iter().sum::<usize>() != d {
        bail!("split sizes {sizes:?} do not sum to {d}");
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for &len in sizes {
        let mut shape = t.shape().to_vec();
        shape[axis] = len;
        out.push(map_elems!(t, T, |s| (
            shape.clone(),
            strided::take_range(s, t.shape(), axis, start, len)?
        )));
        start += len;
    }
    Ok(out)
}

/// The piece sizes of Split/SplitToSequence when no explicit `split` is given:
/// `n` pieces of `ceil(d / n)`, the last one smaller.
pub(crate) fn even_split(d: usize, n: usize) -> Result<Vec<usize>> {
    if n == 0 {
        bail!("cannot split into 0 pieces");
    }
    let chunk = d.div_ceil(n);
    let mut sizes = Vec::with_capacity(n);
    let mut left = d;
    for _ in 0..n {
        let c = chunk.min(left);
        sizes.push(c);
        left -= c;
    }
    Ok(sizes)
}

/// Normalise a possibly negative axis of a tensor of rank `rank` >= 1 (scalars have no axis).
pub(crate) fn axis_of(axis: i64, rank: usize) -> Result<usize> {
    if rank == 0 {
        bail!("axis {axis} given for a rank-0 tensor");
    }
    norm_axis(axis, rank)
}

/// Normalise a list of axes against `rank`, sorted and de-duplicated.
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut v = axes
        .iter()
        .map(|&a| axis_of(a, rank))
        .collect::<Result<Vec<_>>>()?;
    v.sort_unstable();
    if v.windows(2).any(|w| w[0] == w[1]) {
        bail!("repeated axis in {axes:?}");
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// Reshape family
// ---------------------------------------------------------------------------

/// Reshape's target: `0` copies the input dim (unless `allowzero`), `-1` is inferred.
fn reshape_target(in_shape: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 if !allowzero => out.push(*in_shape.get(i).ok_or_else(|| {
                RuntimeError::msg(format!("reshape: 0 at {i} beyond input rank"))
            })?),
            -1 => {
                if infer.replace(i).is_some() {
                    bail!("reshape: more than one -1 in {spec:?}");
                }
                out.push(1);
            }
            d => out.push(to_usize(d, "reshape dim")?),
        }
    }
    let n: usize = in_shape.iter().product();
    if let Some(i) = infer {
        let known = egret_ir::tensor::checked_numel(&out)?;
        if known == 0 || !n.is_multiple_of(known) {
            bail!("cannot reshape {in_shape:?} to {spec:?}");
        }
        out[i] = n / known;
    }
    Ok(out)
}

fn reshape(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let spec = ints(inputs, 1)?;
    let shape = reshape_target(x.shape(), &spec, ctx.attrs().int_or("allowzero", 0)? != 0)?;
    one(x.reshaped(shape)?)
}

fn squeeze(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let shape: Vec<usize> = match opt_ints(inputs, 1)? {
        None => x.shape().iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let axes = norm_axes(&axes, x.rank())?;
            if let Some(&a) = axes.iter().find(|&&a| x.shape()[a] != 1) {
                bail!("cannot squeeze axis {a} of size {}", x.shape()[a]);
            }
            x.shape()
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
    };
    one(x.reshaped(shape)?)
}

fn unsqueeze(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let axes = ints(inputs, 1)?;
    let rank = x.rank() + axes.len();
    let axes = norm_axes(&axes, rank)?;
    let mut dims = x.shape().iter();
    let shape: Vec<usize> = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                dims.next().copied().unwrap_or(1)
            }
        })
        .collect();
    one(x.reshaped(shape)?)
}

fn flatten(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let r = x.rank() as i64;
    let mut axis = ctx.attrs().int_or("axis", 1)?;
    if axis < 0 {
        axis += r;
    }
    if !(0..=r).contains(&axis) {
        bail!("flatten axis out of range for rank {r}");
    }
    let a = axis as usize;
    let outer: usize = x.shape()[..a].iter().product();
    let inner: usize = x.shape()[a..].iter().product();
    one(x.reshaped(vec![outer, inner])?)
}

// ---------------------------------------------------------------------------
// Transpose, Concat, Slice, Split, Expand, Tile
// ---------------------------------------------------------------------------

/// Transpose `x` by `perm`, sharing storage when only size-1 axes move.
pub(crate) fn transpose_tensor(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    if perm.len() != x.rank() || perm.iter().any(|&p| p >= x.rank()) {
        bail!("perm {perm:?} does not fit rank {}", x.rank());
    }
    let moved: Vec<usize> = perm
        .iter()
        .copied()
        .filter(|&p| x.shape()[p] != 1)
        .collect();
    if moved.windows(2).all(|w| w[0] < w[1]) {
        let mut seen = vec![false; perm.len()];
        perm.iter().for_each(|&p| seen[p] = true);
        if seen.iter().all(|&s| s) {
            return Ok(x.reshaped(perm.iter().map(|&p| x.shape()[p]).collect())?);
        }
    }
    Ok(map_elems!(x, T, |s| permute(s, x.shape(), perm)?))
}

fn transpose(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let perm: Vec<usize> = match ctx.attrs().ints_opt("perm")? {
        Some(p) => p
            .iter()
            .map(|&a| axis_of(a, x.rank()))
            .collect::<Result<_>>()?,
        None => (0..x.rank()).rev().collect(),
    };
    one(transpose_tensor(x, &perm)?)
}

fn concat(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let ts = (0..inputs.len())
        .map(|i| input(inputs, i))
        .collect::<Result<Vec<_>>>()?;
    one(concat_tensors(&ts, ctx.attrs().int("axis")?)?)
}

/// One axis of a normalised slice: first index, step and length.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SliceAxis {
    start: i64,
    step: i64,
    len: usize,
}

/// ONNX Slice clamping for one axis of size `d`.
fn slice_axis(start: i64, end: i64, step: i64, d: usize) -> Result<SliceAxis> {
    // `i64::MIN` has no negation: no real model uses it, so it is malformed.
    if step == 0 || step == i64::MIN {
        bail!("invalid slice step {step}");
    }
    let d = d as i128;
    let (start, end, step) = (start as i128, end as i128, step as i128);
    let s = if start < 0 { start + d } else { start };
    let e = if end < 0 { end + d } else { end };
    let (s, e) = if step > 0 {
        (s.clamp(0, d), e.clamp(0, d))
    } else {
        (s.clamp(0, d - 1), e.clamp(-1, d - 1))
    };
    let len = if step > 0 {
        (e - s + step - 1) / step
    } else {
        (s - e + (-step) - 1) / (-step)
    };
    let len = len.max(0) as usize;
    Ok(SliceAxis {
        start: s.max(0) as i64,
        // A step only matters between two elements: a huge one with a single
        // element would overflow the stride arithmetic for nothing.
        step: if len > 1 { step as i64 } else { 1 },
        len,
    })
}

fn slice(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let (starts, ends) = (ints(inputs, 1)?, ints(inputs, 2)?);
    let axes = opt_ints(inputs, 3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = opt_ints(inputs, 4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        bail!("slice starts/ends/axes/steps differ in length");
    }
    let rank = x.rank();
    let mut plan: Vec<SliceAxis> = x
        .shape()
        .iter()
        .map(|&d| SliceAxis {
            start: 0,
            step: 1,
            len: d,
        })
        .collect();
    let mut seen = vec![false; rank];
    for k in 0..starts.len() {
        let a = axis_of(axes[k], rank)?;
        if std::mem::replace(&mut seen[a], true) {
            bail!("slice axis {a} repeated");
        }
        plan[a] = slice_axis(starts[k], ends[k], steps[k], x.shape()[a])?;
    }
    let shape: Vec<usize> = plan.iter().map(|p| p.len).collect();
    if plan
        .iter()
        .zip(x.shape())
        .all(|(p, &d)| p.step == 1 && p.len == d)
    {
        return one(x.clone());
    }
    let st = strides_of(x.shape());
    let empty = shape.contains(&0);
    let offset: usize = if empty {
        0
    } else {
        plan.iter()
            .zip(&st)
            .map(|(p, &s)| p.start as usize * s)
            .sum()
    };
    let strides: Vec<isize> = plan
        .iter()
        .zip(&st)
        .map(|(p, &s)| p.step as isize * s as isize)
        .collect();
    one(map_elems!(x, T, |s| (
        shape.clone(),
        strided_copy(s, offset, &shape, &strides)?
    )))
}

fn split(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let axis = axis_of(ctx.attrs().int_or("axis", 0)?, x.rank())?;
    let d = x.shape()[axis];
    let sizes = match opt_ints(inputs, 1)? {
        Some(s) => s
            .iter()
            .map(|&v| to_usize(v, "split size"))
            .collect::<Result<Vec<_>>>()?,
        None => {
            let n = match ctx.attrs().int_opt("num_outputs")? {
                Some(n) => to_usize(n, "num_outputs")?,
                None => ctx.num_outputs(),
            };
            // Checked before sizing anything by the untrusted attribute.
            if n != ctx.num_outputs() {
                bail!(
                    "num_outputs {n} but the node has {} outputs",
                    ctx.num_outputs()
                );
            }
            even_split(d, n)?
        }
    };
    if sizes.len() != ctx.num_outputs() {
        bail!(
            "split into {} pieces but the node has {} outputs",
            sizes.len(),
            ctx.num_outputs()
        );
    }
    Ok(split_tensor(x, axis, &sizes)?
        .into_iter()
        .map(Value::Tensor)
        .collect())
}

/// Broadcast `x` to `shape` (which must already be broadcast-compatible and of rank >= x's).
pub(crate) fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if x.shape() == shape {
        return Ok(x.clone());
    }
    let off = shape
        .len()
        .checked_sub(x.rank())
        .ok_or_else(|| RuntimeError::msg("broadcast to a lower rank"))?;
    let st = strides_of(x.shape());
    let mut strides = vec![0isize; shape.len()];
    for (i, (&d, &s)) in x.shape().iter().zip(&st).enumerate() {
        if d == shape[off + i] {
            strides[off + i] = s as isize;
        } else if d != 1 {
            bail!("cannot broadcast {:?} to {shape:?}", x.shape());
        }
    }
    Ok(map_elems!(x, T, |s| (
        shape.to_vec(),
        strided_copy(s, 0, shape, &strides)?
    )))
}

fn expand(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let spec = ints(inputs, 1)?
        .iter()
        .map(|&d| to_usize(d, "expand dim"))
        .collect::<Result<Vec<_>>>()?;
    let shape = broadcast_shapes(x.shape(), &spec)?;
    checked_len(&shape)?;
    one(broadcast_to(x, &shape)?)
}

fn tile(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let reps = ints(inputs, 1)?;
    if reps.len() != x.rank() {
        bail!("tile repeats {reps:?} do not match rank {}", x.rank());
    }
    let reps = reps
        .iter()
        .map(|&r| to_usize(r, "repeat"))
        .collect::<Result<Vec<_>>>()?;
    let out_shape: Vec<usize> = x
        .shape()
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.saturating_mul(r))
        .collect();
    checked_len(&out_shape)?;
    one(map_elems!(x, T, |s| {
        // Tile one axis at a time, innermost first: each step repeats whole blocks.
        let mut cur: Vec<T> = s.to_vec();
        let mut shape = x.shape().to_vec();
        for ax in (0..shape.len()).rev() {
            let outer: usize = shape[..ax].iter().product();
            let blk: usize = shape[ax..].iter().product();
            let mut next = Vec::with_capacity(cur.len() * reps[ax]);
            for o in 0..outer {
                for _ in 0..reps[ax] {
                    next.extend_from_slice(&cur[o * blk..(o + 1) * blk]);
                }
            }
            cur = next;
            shape[ax] *= reps[ax];
        }
        (shape, cur)
    }))
}

// ---------------------------------------------------------------------------
// Pad and CenterCropPad
// ---------------------------------------------------------------------------

/// How Pad fills the border.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// Map output coordinate `o` of one axis to its source coordinate (`None` = fill).
fn pad_source(o: usize, begin: i64, d: usize, mode: PadMode) -> Result<Option<usize>> {
    // i128: `begin` is untrusted and may be near i64::MIN/MAX.
    let i = o as i128 - begin as i128;
    let n = d as i128;
    if (0..n).contains(&i) {
        return Ok(Some(i as usize));
    }
    if mode == PadMode::Constant {
        return Ok(None);
    }
    if d == 0 {
        bail!("cannot {mode:?}-pad an empty axis");
    }
    Ok(Some(match mode {
        PadMode::Edge => i.clamp(0, n - 1) as usize,
        PadMode::Wrap => i.rem_euclid(n) as usize,
        _ => {
            if n == 1 {
                0
            } else {
                let period = 2 * (n - 1);
                let m = i.rem_euclid(period);
                (if m < n { m } else { period - m }) as usize
            }
        }
    }))
}

/// Pad (or, with negative amounts, crop) `x` by `begin`/`end` per axis.
fn pad_tensor<T: Elem>(
    src: &[T],
    shape: &[usize],
    begin: &[i64],
    end: &[i64],
    mode: PadMode,
    fill: T,
) -> Result<(Vec<usize>, Vec<T>)> {
    let mut out_shape = Vec::with_capacity(shape.len());
    for ((&d, &b), &e) in shape.iter().zip(begin).zip(end) {
        let n = d as i128 + b as i128 + e as i128;
        out_shape.push(
            usize::try_from(n)
                .map_err(|_| RuntimeError::msg(format!("padded dim {n} out of range")))?,
        );
    }
    let total = checked_len(&out_shape)?;
    let maps = out_shape
        .iter()
        .enumerate()
        .map(|(ax, &n)| {
            (0..n)
                .map(|o| pad_source(o, begin[ax], shape[ax], mode))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let st = strides_of(shape);
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return Ok((out_shape, out));
    }
    let rank = shape.len();
    if rank == 0 {
        return Ok((out_shape, src.to_vec()));
    }
    let mut idx = vec![0usize; rank];
    loop {
        // Source base of the outer coordinates; None if any outer axis is in the fill border.
        let mut base = Some(0usize);
        for ax in 0..rank - 1 {
            base = match (base, maps[ax][idx[ax]]) {
                (Some(b), Some(i)) => Some(b + i * st[ax]),
                _ => None,
            };
        }
        for m in &maps[rank - 1] {
            out.push(match (base, m) {
                (Some(b), Some(i)) => src[b + i].clone(),
                _ => fill.clone(),
            });
        }
        let mut ax = rank - 1;
        loop {
            if ax == 0 {
                return Ok((out_shape, out));
            }
            ax -= 1;
            idx[ax] += 1;
            if idx[ax] < out_shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}

fn pad(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let rank = x.rank();
    let pads = ints(inputs, 1)?;
    let axes: Vec<usize> = match opt_ints(inputs, 3)? {
        Some(a) => a.iter().map(|&a| axis_of(a, rank)).collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        bail!("pads has {} entries for {} axes", pads.len(), axes.len());
    }
    let (mut begin, mut end) = (vec![0i64; rank], vec![0i64; rank]);
    for (k, &a) in axes.iter().enumerate() {
        begin[a] = pads[k];
        end[a] = pads[k + axes.len()];
    }
    let mode = match ctx.attrs().string_or("mode", "constant")? {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => bail!("unknown pad mode {m}"),
    };
    let value = opt_input(inputs, 2)?;
    one(map_elems!(x, T, |s| {
        let fill = match value {
            Some(v) => T::elems(v)?.first().cloned().unwrap_or_default(),
            None => T::default(),
        };
        pad_tensor(s, x.shape(), &begin, &end, mode, fill)?
    }))
}

fn center_crop_pad(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let rank = x.rank();
    let target = ints(inputs, 1)?;
    let axes: Vec<usize> = match ctx.attrs().ints_opt("axes")? {
        Some(a) => a.iter().map(|&a| axis_of(a, rank)).collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if target.len() != axes.len() {
        bail!("shape has {} entries for {} axes", target.len(), axes.len());
    }
    let (mut begin, mut end) = (vec![0i64; rank], vec![0i64; rank]);
    for (&a, &t) in axes.iter().zip(&target) {
        let d = x.shape()[a] as i64;
        to_usize(t, "target dim")?;
        let diff = t - d;
        // Crop: start rounded down; pad: the odd pixel goes to the end.
        let b = if diff < 0 { -((-diff) / 2) } else { diff / 2 };
        begin[a] = b;
        end[a] = diff - b;
    }
    one(map_elems!(x, T, |s| pad_tensor(
        s,
        x.shape(),
        &begin,
        &end,
        PadMode::Constant,
        T::default()
    )?))
}

// ---------------------------------------------------------------------------
// Shape, Size, Identity, Dropout, ConstantOfShape, Range
// ---------------------------------------------------------------------------

/// Clamp Shape's `start`/`end` attribute into `0..=rank`.
fn clamp_dim_index(v: i64, rank: usize) -> usize {
    let r = rank as i64;
    (if v < 0 { v + r } else { v }).clamp(0, r) as usize
}

fn shape(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let r = x.rank();
    let start = clamp_dim_index(ctx.attrs().int_or("start", 0)?, r);
    let end = clamp_dim_index(ctx.attrs().int_or("end", r as i64)?, r).max(start);
    let dims: Vec<i64> = x.shape()[start..end].iter().map(|&d| d as i64).collect();
    one(Tensor::from_vec(vec![dims.len()], dims)?)
}

fn size(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    one(Tensor::scalar(input(inputs, 0)?.numel() as i64))
}

fn identity(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let v = inputs
        .first()
        .cloned()
        .flatten()
        .ok_or_else(|| RuntimeError::msg("missing input"))?;
    Ok(vec![v])
}

fn dropout(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let ratio = match opt_input(inputs, 1)? {
        Some(r) => r.to_f64_vec()?.first().copied().unwrap_or(0.5),
        None => 0.5,
    };
    let training = match opt_input(inputs, 2)? {
        Some(t) => t.to_f64_vec()?.first().is_some_and(|&v| v != 0.0),
        None => false,
    };
    let n = x.numel();
    if !training || ratio == 0.0 {
        let mut out = vec![Value::Tensor(x.clone())];
        if ctx.num_outputs() > 1 {
            out.push(Value::Tensor(Tensor::from_bools(
                x.shape().to_vec(),
                vec![true; n],
            )?));
        }
        return Ok(out);
    }
    if !(0.0..1.0).contains(&ratio) {
        bail!("dropout ratio {ratio} outside [0, 1)");
    }
    // Training mode: numpy's RandomState(seed) stream, as the ONNX reference draws it.
    let seed = ctx.attrs().int_or("seed", 0)?;
    let mut rng = Mt19937::new(
        u32::try_from(seed)
            .map_err(|_| RuntimeError::msg(format!("seed {seed} outside 0..2^32")))?,
    );
    let mask: Vec<bool> = (0..n).map(|_| rng.next_f64() >= ratio).collect();
    let scale = 1.0 / (1.0 - ratio);
    let vals: Vec<f64> = x
        .to_f64_vec()?
        .iter()
        .zip(&mask)
        .map(|(&v, &m)| if m { v * scale } else { 0.0 })
        .collect();
    let mut out = vec![Value::Tensor(from_f64s(
        x.dtype(),
        x.shape().to_vec(),
        vals,
    )?)];
    if ctx.num_outputs() > 1 {
        out.push(Value::Tensor(Tensor::from_bools(x.shape().to_vec(), mask)?));
    }
    Ok(out)
}

fn constant_of_shape(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let shape = ints(inputs, 0)?
        .iter()
        .map(|&d| to_usize(d, "shape dim"))
        .collect::<Result<Vec<_>>>()?;
    let n = checked_len(&shape)?;
    let zero = Tensor::scalar(0f32);
    let value = ctx.attrs().tensor_opt("value")?.unwrap_or(&zero);
    one(map_elems!(value, T, |s| {
        let v = s
            .first()
            .cloned()
            .ok_or_else(|| RuntimeError::msg("ConstantOfShape value is empty"))?;
        (shape.clone(), vec![v; n])
    }))
}

fn range(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (s, l, d) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    let dt = s.dtype();
    let scalar = |t: &Tensor| -> Result<f64> {
        t.to_f64_vec()?
            .first()
            .copied()
            .ok_or_else(|| RuntimeError::msg("range bound is empty"))
    };
    if dt.is_int() {
        let get = |t: &Tensor| -> Result<i64> {
            t.to_i64_vec()?
                .first()
                .copied()
                .ok_or_else(|| RuntimeError::msg("range bound is empty"))
        };
        let (start, limit, delta) = (get(s)? as i128, get(l)? as i128, get(d)? as i128);
        if delta == 0 {
            bail!("range delta is 0");
        }
        let n = ((limit - start) + delta - delta.signum()) / delta;
        let n = usize::try_from(n.max(0)).map_err(|_| RuntimeError::msg("range too long"))?;
        checked_len(&[n])?;
        let it = (0..n as i128).map(|i| Wide::I((start + i * delta) as i64));
        return one(collect_as(dt, vec![n], it, false)?);
    }
    let (start, limit, delta) = (scalar(s)?, scalar(l)?, scalar(d)?);
    if delta == 0.0 || !delta.is_finite() {
        bail!("range delta must be finite and non-zero");
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if !n.is_finite() || n > crate::kernels::MAX_ELEMENTS as f64 {
        bail!("range of {n} elements is too long");
    }
    let n = n as usize;
    one(from_f64s(
        dt,
        vec![n],
        (0..n).map(|i| start + i as f64 * delta).collect(),
    )?)
}

// ---------------------------------------------------------------------------
// Trilu, EyeLike, OneHot, NonZero
// ---------------------------------------------------------------------------

fn trilu(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let k = opt_ints(inputs, 1)?
        .and_then(|v| v.first().copied())
        .unwrap_or(0);
    let upper = ctx.attrs().int_or("upper", 1)? != 0;
    let r = x.rank();
    if r < 2 {
        bail!("Trilu needs rank >= 2");
    }
    let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
    one(map_elems!(x, T, |s| {
        let mut v = s.to_vec();
        for (p, e) in v.iter_mut().enumerate() {
            let (i, j) = (
                ((p / cols.max(1)) % rows.max(1)) as i64,
                (p % cols.max(1)) as i64,
            );
            let keep = if upper { j - i >= k } else { j - i <= k };
            if !keep {
                *e = T::default();
            }
        }
        (x.shape().to_vec(), v)
    }))
}

/// The dtype the node's inference gave output `i`, falling back to `dflt`.
fn declared_dtype(ctx: &KernelCtx<'_>, i: usize, dflt: DType) -> DType {
    ctx.node
        .outputs
        .get(i)
        .and_then(|o| o.ty.as_tensor())
        .map_or(dflt, |t| t.dtype)
}

fn eye_like(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    if x.rank() != 2 {
        bail!("EyeLike needs a 2-D input");
    }
    let k = ctx.attrs().int_or("k", 0)?;
    let dt = declared_dtype(ctx, 0, x.dtype());
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    let v: Vec<f64> = (0..rows * cols)
        .map(|p| {
            if (p % cols) as i64 - (p / cols) as i64 == k {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    one(from_f64s(dt, vec![rows, cols], v)?)
}

fn one_hot(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let idx = input(inputs, 0)?.to_f64_vec()?;
    let ishape = input(inputs, 0)?.shape().to_vec();
    let depth = input(inputs, 1)?
        .to_f64_vec()?
        .first()
        .copied()
        .ok_or_else(|| RuntimeError::msg("empty depth"))?;
    if depth.is_nan() || depth < 1.0 || depth > crate::kernels::MAX_ELEMENTS as f64 {
        bail!("invalid OneHot depth {depth}");
    }
    let depth = depth as usize;
    let values = input(inputs, 2)?;
    let axis = ctx.attrs().int_or("axis", -1)?;
    let out_rank = ishape.len() + 1;
    let axis = norm_axis(axis, out_rank)?;
    let mut out_shape = ishape.clone();
    out_shape.insert(axis, depth);
    checked_len(&out_shape)?;
    let (outer, _, inner) = split_at_axis(&out_shape, axis);
    let hot: Vec<Option<usize>> = idx
        .iter()
        .map(|&i| {
            let i = i.trunc() as i64;
            let i = if i < 0 { i + depth as i64 } else { i };
            (0..depth as i64).contains(&i).then_some(i as usize)
        })
        .collect();
    if values.numel() != 2 {
        bail!("OneHot values must have 2 elements");
    }
    // Each output element picks values[0] (off) or values[1] (on).
    let mut picks = vec![0usize; outer * depth * inner];
    for o in 0..outer {
        for i in 0..inner {
            if let Some(h) = hot[o * inner + i] {
                picks[(o * depth + h) * inner + i] = 1;
            }
        }
    }
    one(map_elems!(values, T, |s| (
        out_shape.clone(),
        strided::pick(s, &picks)?
    )))
}

fn non_zero(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let nz: Vec<bool> = if x.dtype() == DType::String {
        x.as_strings()?.iter().map(|s| !s.is_empty()).collect()
    } else {
        x.to_f64_vec()?.iter().map(|&v| v != 0.0).collect()
    };
    let hits: Vec<usize> = nz
        .iter()
        .enumerate()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i)
        .collect();
    let r = x.rank();
    let st = strides_of(x.shape());
    let mut out = vec![0i64; r * hits.len()];
    for (k, &p) in hits.iter().enumerate() {
        for ax in 0..r {
            out[ax * hits.len() + k] = ((p / st[ax]) % x.shape()[ax]) as i64;
        }
    }
    one(Tensor::from_vec(vec![r, hits.len()], out)?)
}

// ---------------------------------------------------------------------------
// DepthToSpace, SpaceToDepth, Compress, ReverseSequence, Unique
// ---------------------------------------------------------------------------

/// Reshape to `split`, transpose by `perm`, reshape to `out`.
fn rearrange(x: &Tensor, split: Vec<usize>, perm: &[usize], out: Vec<usize>) -> Result<Tensor> {
    Ok(transpose_tensor(&x.reshaped(split)?, perm)?.reshaped(out)?)
}

fn nchw_block(ctx: &KernelCtx<'_>, x: &Tensor) -> Result<([usize; 4], usize)> {
    let b = to_usize(ctx.attrs().int("blocksize")?, "blocksize")?;
    match (x.shape(), b) {
        (&[n, c, h, w], b) if b > 0 => Ok(([n, c, h, w], b)),
        _ => bail!("expected a 4-D input and a positive blocksize"),
    }
}

fn depth_to_space(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let ([n, c, h, w], b) = nchw_block(ctx, x)?;
    if c % (b * b) != 0 {
        bail!("channels {c} not divisible by blocksize^2");
    }
    let c2 = c / (b * b);
    let out = vec![n, c2, h * b, w * b];
    one(match ctx.attrs().string_or("mode", "DCR")? {
        "CRD" => rearrange(x, vec![n, c2, b, b, h, w], &[0, 1, 4, 2, 5, 3], out)?,
        _ => rearrange(x, vec![n, b, b, c2, h, w], &[0, 3, 4, 1, 5, 2], out)?,
    })
}

fn space_to_depth(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let ([n, c, h, w], b) = nchw_block(ctx, x)?;
    if h % b != 0 || w % b != 0 {
        bail!("spatial dims not divisible by blocksize");
    }
    let out = vec![n, c * b * b, h / b, w / b];
    one(rearrange(
        x,
        vec![n, c, h / b, b, w / b, b],
        &[0, 3, 5, 1, 2, 4],
        out,
    )?)
}

fn compress(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let cond = input(inputs, 1)?.to_f64_vec()?;
    let (x, axis) = match ctx.attrs().int_opt("axis")? {
        Some(a) => (x.clone(), axis_of(a, x.rank())?),
        None => (x.reshaped(vec![x.numel()])?, 0),
    };
    let d = x.shape()[axis];
    if cond.len() > d && cond[d..].iter().any(|&c| c != 0.0) {
        bail!("compress condition selects beyond axis size {d}");
    }
    let keep: Vec<usize> = cond
        .iter()
        .take(d)
        .enumerate()
        .filter(|(_, &c)| c != 0.0)
        .map(|(i, _)| i)
        .collect();
    let mut shape = x.shape().to_vec();
    shape[axis] = keep.len();
    one(map_elems!(&x, T, |s| (
        shape.clone(),
        strided::take(s, x.shape(), axis, &keep)?
    )))
}

fn reverse_sequence(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let lens = ints(inputs, 1)?;
    let r = x.rank();
    let baxis = axis_of(ctx.attrs().int_or("batch_axis", 1)?, r)?;
    let taxis = axis_of(ctx.attrs().int_or("time_axis", 0)?, r)?;
    if baxis == taxis || lens.len() != x.shape()[baxis] {
        bail!("bad batch/time axes or sequence_lens length");
    }
    let t = x.shape()[taxis];
    let lens = lens
        .iter()
        .map(|&l| to_usize(l, "sequence length").map(|l| l.min(t)))
        .collect::<Result<Vec<_>>>()?;
    let st = strides_of(x.shape());
    let src: Vec<usize> = (0..x.numel())
        .map(|p| {
            let b = (p / st[baxis]) % x.shape()[baxis];
            let ti = (p / st[taxis]) % t;
            if ti < lens[b] {
                p - ti * st[taxis] + (lens[b] - 1 - ti) * st[taxis]
            } else {
                p
            }
        })
        .collect();
    one(map_elems!(x, T, |s| (
        x.shape().to_vec(),
        strided::pick(s, &src)?
    )))
}

fn unique(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let sorted = ctx.attrs().int_or("sorted", 1)? != 0;
    let (x, axis) = match ctx.attrs().int_opt("axis")? {
        Some(a) => (x.clone(), axis_of(a, x.rank())?),
        None => (x.reshaped(vec![x.numel()])?, 0),
    };
    let (outer, d, inner) = split_at_axis(x.shape(), axis);
    let mut y_shape = x.shape().to_vec();
    let (y, firsts, inverse, counts) = for_any_dtype!(x.dtype(), T => {
        let s = T::elems(&x)?;
        // Slice k along the axis, as a comparable list of elements.
        let slice_of = |k: usize| -> Vec<&T> {
            (0..outer).flat_map(|o| s[(o * d + k) * inner..(o * d + k + 1) * inner].iter()).collect()
        };
        let slices: Vec<Vec<&T>> = (0..d).map(slice_of).collect();
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| {
            slices[a].partial_cmp(&slices[b]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
        });
        // Groups of equal slices: (first occurrence, members).
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for &k in &order {
            match groups.last_mut() {
                Some((_, m)) if slices[m[0]] == slices[k] => m.push(k),
                _ => groups.push((k, vec![k])),
            }
        }
        if !sorted {
            groups.sort_by_key(|g| g.0);
        }
        let firsts: Vec<usize> = groups.iter().map(|g| g.0).collect();
        let mut inverse = vec![0i64; d];
        for (gi, (_, m)) in groups.iter().enumerate() {
            m.iter().for_each(|&k| inverse[k] = gi as i64);
        }
        let counts: Vec<i64> = groups.iter().map(|g| g.1.len() as i64).collect();
        y_shape[axis] = firsts.len();
        let y = T::tensor(x.dtype(), y_shape.clone(), strided::take(s, x.shape(), axis, &firsts)?)?;
        (y, firsts, inverse, counts)
    });
    let n = firsts.len();
    let firsts: Vec<i64> = firsts.iter().map(|&f| f as i64).collect();
    Ok(vec![
        Value::Tensor(y),
        Value::Tensor(Tensor::from_vec(vec![n], firsts)?),
        Value::Tensor(Tensor::from_vec(vec![d], inverse)?),
        Value::Tensor(Tensor::from_vec(vec![n], counts)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_target_rules() {
        assert_eq!(
            reshape_target(&[2, 3, 4], &[0, -1], false).unwrap(),
            vec![2, 12]
        );
        assert_eq!(reshape_target(&[0, 3], &[3, 0], true).unwrap(), vec![3, 0]);
        assert!(reshape_target(&[2, 3], &[-1, -1], false).is_err());
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
    }

    #[test]
    fn slice_axis_clamping() {
        assert_eq!(
            slice_axis(0, i64::MAX, 1, 5).unwrap(),
            SliceAxis {
                start: 0,
                step: 1,
                len: 5
            }
        );
        assert_eq!(
            slice_axis(-1, i64::MIN, -1, 5).unwrap(),
            SliceAxis {
                start: 4,
                step: -1,
                len: 5
            }
        );
        assert_eq!(slice_axis(20, 1000, 1, 5).unwrap().len, 0);
        assert_eq!(
            slice_axis(1, 5, 2, 5).unwrap(),
            SliceAxis {
                start: 1,
                step: 2,
                len: 2
            }
        );
        assert!(slice_axis(0, 1, 0, 5).is_err());
    }

    #[test]
    fn scalars_have_no_axis() {
        assert!(axis_of(0, 0).is_err());
        assert_eq!(axis_of(-1, 3).unwrap(), 2);
        let s = Tensor::scalar(1f32);
        assert!(concat_tensors(&[&s, &s], 0).is_err());
        assert!(split_tensor(&s, 0, &[1]).is_err());
    }

    #[test]
    fn even_split_uneven_last() {
        assert_eq!(even_split(7, 3).unwrap(), vec![3, 3, 1]);
        assert_eq!(even_split(6, 3).unwrap(), vec![2, 2, 2]);
    }

    #[test]
    fn pad_modes() {
        let x = [1, 2, 3];
        let run = |m| pad_tensor(&x, &[3], &[2], &[2], m, 0).unwrap().1;
        assert_eq!(run(PadMode::Constant), vec![0, 0, 1, 2, 3, 0, 0]);
        assert_eq!(run(PadMode::Reflect), vec![3, 2, 1, 2, 3, 2, 1]);
        assert_eq!(run(PadMode::Edge), vec![1, 1, 1, 2, 3, 3, 3]);
        assert_eq!(run(PadMode::Wrap), vec![2, 3, 1, 2, 3, 1, 2]);
        assert_eq!(
            pad_tensor(&x, &[3], &[-1], &[1], PadMode::Constant, 9)
                .unwrap()
                .1,
            vec![2, 3, 9]
        );
    }

    #[test]
    fn concat_split_broadcast_transpose() {
        let a = Tensor::from_vec(vec![2, 2], vec![1f32, 2., 3., 4.]).unwrap();
        let b = Tensor::from_vec(vec![2, 1], vec![5f32, 6.]).unwrap();
        let c = concat_tensors(&[&a, &b], -1).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(c.as_slice::<f32>().unwrap(), &[1., 2., 5., 3., 4., 6.]);
        let parts = split_tensor(&c, 1, &[2, 1]).unwrap();
        assert_eq!(parts[1].as_slice::<f32>().unwrap(), &[5., 6.]);
        let e = broadcast_to(&b, &[2, 3]).unwrap();
        assert_eq!(e.as_slice::<f32>().unwrap(), &[5., 5., 5., 6., 6., 6.]);
        let t = transpose_tensor(&c, &[1, 0]).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1., 3., 2., 4., 5., 6.]);
        let s = Tensor::from_strings(vec![1, 2], vec!["x".into(), "y".into()]).unwrap();
        let st = transpose_tensor(&s, &[1, 0]).unwrap();
        assert!(st.shares_storage(&s));
        assert_eq!(st.shape(), &[2, 1]);
    }
}
