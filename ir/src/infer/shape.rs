//! Inference rules: data movement: Reshape, Transpose, Concat, Slice, Split,
//! Squeeze/Unsqueeze, Flatten, Expand, Tile, Pad, CenterCropPad, Shape, Size,
//! Identity, Dropout, ConstantOfShape, Range, Trilu, EyeLike, OneHot, NonZero,
//! DepthToSpace/SpaceToDepth, Compress, ReverseSequence, Unique.
//!
//! Constant shape-like inputs (`ctx.const_ints`) give concrete dims; symbolic
//! input dims flow through unchanged where the op only moves them (Reshape's
//! `0`, Transpose, Concat off-axis, full Slices, Squeeze/Unsqueeze...). A dim
//! derived from symbols becomes a symbol named by its expression (`(a+b)`,
//! `(a*b)`), so equal expressions compare equal; a data-dependent dim gets a
//! symbol named after the op and its input shape.

use super::common::{dim_of_float, dim_of_int, norm_axis, tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, TensorType, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "Reshape" => reshape,
        "Transpose" => transpose,
        "Concat" => concat,
        "Slice" => slice,
        "Split" => split,
        "Squeeze" => squeeze,
        "Unsqueeze" => unsqueeze,
        "Flatten" => flatten,
        "Expand" => expand,
        "Tile" => tile,
        "Pad" => pad,
        "CenterCropPad" => center_crop_pad,
        "Shape" => shape,
        "Size" => size,
        "Identity" => identity,
        "Dropout" => dropout,
        "ConstantOfShape" => constant_of_shape,
        "Range" => range,
        "Trilu" | "ReverseSequence" => same,
        "EyeLike" => eye_like,
        "OneHot" => one_hot,
        "NonZero" => non_zero,
        "DepthToSpace" | "SpaceToDepth" => depth_space,
        "Compress" => compress,
        "Unique" => unique,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Symbolic dim arithmetic (shared with the gather, reduce and sequence rules)
// ---------------------------------------------------------------------------

/// Product of dims: known if every factor is, else a `(a*b*6)` symbol.
pub(super) fn dim_product(dims: &[Dim]) -> Dim {
    let mut k = 1usize;
    let mut syms = Vec::new();
    for d in dims {
        match d {
            Dim::Known(n) => k = k.saturating_mul(*n),
            Dim::Sym(s) => syms.push(s.clone()),
        }
    }
    if syms.is_empty() || k == 0 {
        return Dim::Known(k);
    }
    if k != 1 {
        syms.push(k.to_string());
    }
    if syms.len() == 1 {
        return Dim::Sym(syms.remove(0));
    }
    Dim::Sym(format!("({})", syms.join("*")))
}

/// Sum of dims: known if every term is, else a `(a+b+3)` symbol.
pub(super) fn dim_sum(dims: &[Dim]) -> Dim {
    let mut k = 0usize;
    let mut syms = Vec::new();
    for d in dims {
        match d {
            Dim::Known(n) => k = k.saturating_add(*n),
            Dim::Sym(s) => syms.push(s.clone()),
        }
    }
    if syms.is_empty() {
        return Dim::Known(k);
    }
    if k != 0 {
        syms.push(k.to_string());
    }
    if syms.len() == 1 {
        return Dim::Sym(syms.remove(0));
    }
    Dim::Sym(format!("({})", syms.join("+")))
}

/// A data-dependent dim, named after the op, what it measures and the input shape.
pub(super) fn data_dim(ctx: &InferCtx<'_>, what: &str) -> Dim {
    let tag = ctx
        .inputs
        .first()
        .copied()
        .flatten()
        .map(|f| f.ty.to_string())
        .unwrap_or_default();
    Dim::Sym(format!("{}_{what}({tag})", ctx.op().to_ascii_lowercase()))
}

/// The shape of tensor input `i`, `None` when its rank is unknown.
pub(super) fn shape_of<'a>(ctx: &InferCtx<'a>, i: usize) -> R<Option<&'a Shape>> {
    Ok(ctx.tensor(i)?.shape.as_ref())
}

/// The value of an int attribute, with a default.
pub(super) fn int_attr(ctx: &InferCtx<'_>, name: &str, default: i64) -> R<i64> {
    ctx.call
        .attrs
        .int_or(name, default)
        .map_err(|e| e.to_string())
}

/// The length of a 1-D input (how many axes/dims it lists), if statically known.
fn list_len(ctx: &InferCtx<'_>, i: usize) -> Option<usize> {
    if let Some(v) = ctx.const_ints(i) {
        return Some(v.len());
    }
    ctx.opt_tensor(i)
        .ok()
        .flatten()?
        .shape
        .as_ref()?
        .dims()
        .first()?
        .known()
}

/// Normalise a possibly negative axis of a tensor of rank `rank` >= 1.
pub(super) fn axis_of(axis: i64, rank: usize) -> R<usize> {
    if rank == 0 {
        return Err(format!("axis {axis} given for a rank-0 tensor"));
    }
    norm_axis(axis, rank)
}

/// Normalise axes against `rank`, sorted.
pub(super) fn norm_axes(axes: &[i64], rank: usize) -> R<Vec<usize>> {
    let mut v = axes
        .iter()
        .map(|&a| axis_of(a, rank))
        .collect::<R<Vec<_>>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// `rank` fresh dims named after the op (for data-dependent outputs).
fn data_dims(ctx: &InferCtx<'_>, rank: usize) -> Vec<Dim> {
    (0..rank).map(|i| data_dim(ctx, &format!("d{i}"))).collect()
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

/// Output of the same type as input 0 (Trilu, ReverseSequence).
fn same(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![ValueType::Tensor(ctx.tensor(0)?.clone())])
}

fn identity(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let f = ctx
        .inputs
        .first()
        .copied()
        .flatten()
        .ok_or("missing input 0")?;
    Ok(vec![f.ty.clone()])
}

/// Reshape's `-1`: the input's element count divided by the other output dims,
/// cancelling identical factors so `[b, s, 12, 32] -> [0, 0, -1]` gives 384.
fn infer_minus_one(input: &[Dim], others: &[Dim]) -> Dim {
    let mut num: Vec<Dim> = input.to_vec();
    let mut den: Vec<Dim> = Vec::new();
    for d in others {
        match num.iter().position(|n| n == d) {
            Some(p) => {
                num.remove(p);
            }
            None => den.push(d.clone()),
        }
    }
    // Checked: a hostile model may declare dims whose product overflows.
    let known = |v: &[Dim]| {
        v.iter()
            .filter_map(Dim::known)
            .try_fold(1usize, |a, d| a.checked_mul(d))
    };
    let den_syms = den.iter().any(|d| d.known().is_none());
    let quotient = match (known(&num), known(&den)) {
        (Some(nk), Some(dk)) if !den_syms && dk != 0 && nk % dk == 0 => Some(nk / dk),
        _ => None,
    };
    if let Some(q) = quotient {
        let mut rest: Vec<Dim> = num.into_iter().filter(|d| d.known().is_none()).collect();
        rest.push(Dim::Known(q));
        return dim_product(&rest);
    }
    Dim::Sym(format!("({}/{})", dim_product(&num), dim_product(&den)))
}

fn reshape(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let allowzero = int_attr(ctx, "allowzero", 0)? != 0;
    let Some(spec) = ctx.const_ints(1) else {
        let shape = list_len(ctx, 1).map(|n| Shape(data_dims(ctx, n)));
        return Ok(vec![tensor(x.dtype, shape)]);
    };
    let in_dims = x.shape.as_ref().map(|s| s.dims());
    let mut out = Vec::with_capacity(spec.len());
    let mut minus = None;
    for (i, &d) in spec.iter().enumerate() {
        out.push(match d {
            0 if !allowzero => match in_dims {
                Some(s) => s
                    .get(i)
                    .cloned()
                    .ok_or("reshape: 0 beyond the input rank")?,
                None => data_dim(ctx, &format!("d{i}")),
            },
            -1 => {
                if minus.replace(i).is_some() {
                    return Err("reshape: more than one -1".into());
                }
                Dim::Known(1)
            }
            d if d >= 0 => Dim::Known(d as usize),
            d => return Err(format!("reshape: invalid dim {d}")),
        });
    }
    if let Some(i) = minus {
        out[i] = match in_dims {
            Some(s) => {
                let others: Vec<Dim> = out
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, d)| d.clone())
                    .collect();
                let d = infer_minus_one(s, &others);
                if let (Some(n), Some(k)) = (dim_product(s).known(), dim_product(&others).known()) {
                    if k == 0 || n % k != 0 {
                        return Err(format!("cannot reshape {} to {spec:?}", Shape(s.to_vec())));
                    }
                }
                d
            }
            None => data_dim(ctx, "minus1"),
        };
    } else if let Some(n) = in_dims.and_then(super::common::known_product) {
        // Every output dim known (or symbolic): the counts must agree.
        let all_known: Option<Vec<usize>> = out.iter().map(Dim::known).collect();
        if let Some(k) = all_known {
            if k.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(n) {
                return Err(format!("cannot reshape {n} elements to {spec:?}"));
            }
        }
    }
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}

fn transpose(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let r = s.rank();
    let perm: Vec<usize> = match ctx.call.attrs.ints_opt("perm").map_err(|e| e.to_string())? {
        Some(p) => p.iter().map(|&a| axis_of(a, r)).collect::<R<_>>()?,
        None => (0..r).rev().collect(),
    };
    if perm.len() != r {
        return Err(format!("perm {perm:?} does not match rank {r}"));
    }
    Ok(vec![tensor(
        x.dtype,
        Some(Shape(perm.iter().map(|&p| s.dims()[p].clone()).collect())),
    )])
}

fn concat(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let first = ctx.tensor(0)?;
    let axis = ctx.call.attrs.int("axis").map_err(|e| e.to_string())?;
    let shapes: Vec<Option<&Shape>> = (0..ctx.inputs.len())
        .map(|i| ctx.tensor(i).map(|t| t.shape.as_ref()))
        .collect::<R<_>>()?;
    let Some(rank) = shapes.iter().flatten().map(|s| s.rank()).next() else {
        return Ok(vec![tensor(first.dtype, None)]);
    };
    let a = axis_of(axis, rank)?;
    let mut out: Vec<Dim> = Vec::with_capacity(rank);
    for i in 0..rank {
        if i == a {
            let parts: Option<Vec<Dim>> = shapes
                .iter()
                .map(|s| s.and_then(|s| s.dims().get(a).cloned()))
                .collect();
            out.push(match parts {
                Some(p) => dim_sum(&p),
                None => data_dim(ctx, "concat"),
            });
        } else {
            // Prefer a known size among the inputs for the shared dims.
            let ds: Vec<&Dim> = shapes
                .iter()
                .flatten()
                .filter_map(|s| s.dims().get(i))
                .collect();
            let pick = ds
                .iter()
                .find(|d| d.known().is_some())
                .or(ds.first())
                .copied()
                .cloned();
            out.push(pick.ok_or("concat inputs differ in rank")?);
        }
    }
    Ok(vec![tensor(first.dtype, Some(Shape(out)))])
}

/// Length of a slice of a dim with constant bounds, when it can be known.
fn slice_len(d: &Dim, start: i64, end: i64, step: i64) -> R<Option<Dim>> {
    // `i64::MIN` has no negation: no real model uses it, so it is malformed.
    if step == 0 || step == i64::MIN {
        return Err(format!("invalid slice step {step}"));
    }
    Ok(match d {
        Dim::Known(n) => {
            let n = *n as i128;
            let (s, e, st) = (start as i128, end as i128, step as i128);
            let s = if s < 0 { s + n } else { s };
            let e = if e < 0 { e + n } else { e };
            let len = if st > 0 {
                let (s, e) = (s.clamp(0, n), e.clamp(0, n));
                (e - s + st - 1) / st
            } else {
                let (s, e) = (s.clamp(0, n - 1), e.clamp(-1, n - 1));
                (s - e - st - 1) / -st
            };
            Some(Dim::Known(len.max(0) as usize))
        }
        // The whole symbolic dim.
        Dim::Sym(_) if start == 0 && step == 1 && end >= i32::MAX as i64 => Some(d.clone()),
        Dim::Sym(_) => None,
    })
}

fn slice(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let r = s.rank();
    let mut out = s.dims().to_vec();
    let (starts, ends) = (ctx.const_ints(1), ctx.const_ints(2));
    let axes = if ctx.has_input(3) {
        ctx.const_ints(3)
    } else {
        starts.as_ref().map(|v| (0..v.len() as i64).collect())
    };
    let steps = if ctx.has_input(4) {
        ctx.const_ints(4)
    } else {
        starts.as_ref().map(|v| vec![1; v.len()])
    };
    match (starts, ends, axes, steps) {
        (Some(st), Some(en), Some(ax), Some(sp)) => {
            if en.len() != st.len() || ax.len() != st.len() || sp.len() != st.len() {
                return Err("slice starts/ends/axes/steps differ in length".into());
            }
            for k in 0..st.len() {
                let a = axis_of(ax[k], r)?;
                out[a] = slice_len(&s.dims()[a], st[k], en[k], sp[k])?
                    .unwrap_or_else(|| data_dim(ctx, &format!("slice{a}")));
            }
        }
        (_, _, Some(ax), _) => {
            for &a in &ax {
                let a = axis_of(a, r)?;
                out[a] = data_dim(ctx, &format!("slice{a}"));
            }
        }
        _ => out = data_dims(ctx, r),
    }
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}

fn split(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let n = ctx.num_outputs;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None); n]);
    };
    let axis = axis_of(int_attr(ctx, "axis", 0)?, s.rank())?;
    let d = &s.dims()[axis];
    let sizes: Vec<Dim> = if ctx.has_input(1) {
        match ctx.const_ints(1) {
            Some(v) => {
                let v = v
                    .iter()
                    .map(|&k| dim_of_int(k, "split size"))
                    .collect::<R<Vec<_>>>()?;
                let total = v.iter().try_fold(0usize, |a, &k| a.checked_add(k));
                if let Some(dk) = d.known().filter(|&dk| total != Some(dk)) {
                    return Err(format!("split sizes {v:?} do not add up to {dk}"));
                }
                v.into_iter().map(Dim::Known).collect()
            }
            None => (0..n)
                .map(|i| data_dim(ctx, &format!("split{i}")))
                .collect(),
        }
    } else {
        let parts = ctx
            .call
            .attrs
            .int_opt("num_outputs")
            .map_err(|e| e.to_string())?
            .map_or(Ok(n), |k| match usize::try_from(k) {
                Ok(k) if k == n => Ok(k),
                _ => Err(format!("num_outputs {k} but the node has {n} outputs")),
            })?;
        match d.known() {
            Some(dk) => {
                let chunk = dk.div_ceil(parts.max(1));
                (0..parts)
                    .map(|i| Dim::Known(chunk.min(dk.saturating_sub(i * chunk))))
                    .collect()
            }
            None if parts == 1 => vec![d.clone()],
            None => (0..parts)
                .map(|i| data_dim(ctx, &format!("split{i}")))
                .collect(),
        }
    };
    if sizes.len() < n {
        return Err(format!(
            "split gives {} pieces for {n} outputs",
            sizes.len()
        ));
    }
    Ok(sizes
        .into_iter()
        .map(|sz| {
            let mut o = s.dims().to_vec();
            o[axis] = sz;
            tensor(x.dtype, Some(Shape(o)))
        })
        .collect())
}

fn squeeze(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let out = if ctx.has_input(1) {
        let Some(axes) = ctx.const_ints(1) else {
            return Ok(vec![tensor(x.dtype, None)]);
        };
        let axes = norm_axes(&axes, s.rank())?;
        for &a in &axes {
            if let Some(k) = s.dims()[a].known().filter(|&k| k != 1) {
                return Err(format!("cannot squeeze axis {a} of size {k}"));
            }
        }
        Some(
            s.dims()
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, d)| d.clone())
                .collect(),
        )
    } else if s.dims().iter().all(|d| d.known().is_some()) {
        Some(
            s.dims()
                .iter()
                .filter(|d| d.known() != Some(1))
                .cloned()
                .collect(),
        )
    } else {
        None
    };
    Ok(vec![tensor(x.dtype, out.map(Shape))])
}

fn unsqueeze(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let (Some(s), Some(axes)) = (&x.shape, ctx.const_ints(1)) else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let rank = s.rank() + axes.len();
    let axes = norm_axes(&axes, rank)?;
    let mut dims = s.dims().iter();
    let out = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                Dim::Known(1)
            } else {
                dims.next().cloned().unwrap_or(Dim::Known(1))
            }
        })
        .collect();
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}

fn flatten(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        let d = vec![data_dim(ctx, "outer"), data_dim(ctx, "inner")];
        return Ok(vec![tensor(x.dtype, Some(Shape(d)))]);
    };
    let r = s.rank() as i64;
    let mut a = int_attr(ctx, "axis", 1)?;
    if a < 0 {
        a += r;
    }
    if !(0..=r).contains(&a) {
        return Err(format!("flatten axis out of range for rank {r}"));
    }
    let (o, i) = s.dims().split_at(a as usize);
    Ok(vec![tensor(
        x.dtype,
        Some(Shape(vec![dim_product(o), dim_product(i)])),
    )])
}

fn expand(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let target = match ctx.const_ints(1) {
        Some(v) => Shape(
            v.iter()
                .map(|&d| dim_of_int(d, "expand dim").map(Dim::Known))
                .collect::<R<_>>()?,
        ),
        None => match list_len(ctx, 1) {
            Some(n) => Shape(data_dims(ctx, n)),
            None => return Ok(vec![tensor(x.dtype, None)]),
        },
    };
    // A target dim of 1 keeps the input's dim (bidirectional broadcast).
    Ok(vec![tensor(
        x.dtype,
        Some(super::common::broadcast(s, &target)?),
    )])
}

fn tile(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let out = match ctx.const_ints(1) {
        Some(r) if r.len() == s.rank() => s
            .dims()
            .iter()
            .zip(&r)
            .map(|(d, &k)| {
                let k = dim_of_int(k, "tile repeat")?;
                match d {
                    Dim::Known(n) => n
                        .checked_mul(k)
                        .filter(|&m| m <= i64::MAX as usize)
                        .map(Dim::Known)
                        .ok_or_else(|| format!("tiling {n} by {k} overflows")),
                    Dim::Sym(_) => Ok(dim_product(&[d.clone(), Dim::Known(k)])),
                }
            })
            .collect::<R<_>>()?,
        Some(_) => return Err("tile repeats do not match the rank".into()),
        None => data_dims(ctx, s.rank()),
    };
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}

/// `d + before + after` for a possibly symbolic dim.
fn padded(d: &Dim, before: i64, after: i64) -> R<Dim> {
    Ok(match d {
        Dim::Known(n) => {
            // i128: pads are untrusted and may be near i64::MAX.
            let v = *n as i128 + before as i128 + after as i128;
            if !(0..=i64::MAX as i128).contains(&v) {
                return Err(format!("padding gives an out-of-range dim {v}"));
            }
            Dim::Known(v as usize)
        }
        Dim::Sym(s) => match before as i128 + after as i128 {
            0 => Dim::Sym(s.clone()),
            total => Dim::Sym(format!("({s}{total:+})")),
        },
    })
}

fn pad(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let r = s.rank();
    let axes: Option<Vec<usize>> = if ctx.has_input(3) {
        ctx.const_ints(3)
            .map(|a| a.iter().map(|&a| axis_of(a, r)).collect::<R<_>>())
            .transpose()?
    } else {
        Some((0..r).collect())
    };
    let out = match (ctx.const_ints(1), axes) {
        (Some(p), Some(axes)) => {
            if p.len() != 2 * axes.len() {
                return Err(format!(
                    "pads has {} entries for {} axes",
                    p.len(),
                    axes.len()
                ));
            }
            let mut out = s.dims().to_vec();
            for (k, &a) in axes.iter().enumerate() {
                out[a] = padded(&s.dims()[a], p[k], p[k + axes.len()])?;
            }
            out
        }
        _ => data_dims(ctx, r),
    };
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}

fn center_crop_pad(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let r = s.rank();
    let axes: Vec<usize> = match ctx.call.attrs.ints_opt("axes").map_err(|e| e.to_string())? {
        Some(a) => a.iter().map(|&a| axis_of(a, r)).collect::<R<_>>()?,
        None => (0..r).collect(),
    };
    let mut out = s.dims().to_vec();
    match ctx.const_ints(1) {
        Some(t) if t.len() == axes.len() => {
            for (&a, &k) in axes.iter().zip(&t) {
                out[a] = Dim::Known(dim_of_int(k, "crop size")?);
            }
        }
        Some(_) => return Err("shape does not match axes".into()),
        None => axes
            .iter()
            .for_each(|&a| out[a] = data_dim(ctx, &format!("crop{a}"))),
    }
    Ok(vec![tensor(x.dtype, Some(Shape(out)))])
}

fn shape(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(
            DType::I64,
            Some(Shape(vec![data_dim(ctx, "rank")])),
        )]);
    };
    let r = s.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
    let start = clamp(int_attr(ctx, "start", 0)?);
    let end = clamp(int_attr(ctx, "end", r)?);
    Ok(vec![tensor(
        DType::I64,
        Some(Shape::known(&[(end - start).max(0) as usize])),
    )])
}

fn size(_ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    Ok(vec![tensor(DType::I64, Some(Shape(vec![])))])
}

fn dropout(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    Ok(vec![
        ValueType::Tensor(x.clone()),
        tensor(DType::Bool, x.shape.clone()),
    ])
}

fn constant_of_shape(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let dtype = ctx
        .call
        .attrs
        .tensor_opt("value")
        .map_err(|e| e.to_string())?
        .map_or(DType::F32, |t| t.dtype());
    let shape = match ctx.const_ints(0) {
        Some(v) => Some(Shape(
            v.iter()
                .map(|&d| dim_of_int(d, "shape dim").map(Dim::Known))
                .collect::<R<_>>()?,
        )),
        None => list_len(ctx, 0).map(|n| Shape(data_dims(ctx, n))),
    };
    Ok(vec![tensor(dtype, shape)])
}

fn range(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let dt = ctx.tensor(0)?.dtype;
    let n = match (
        ctx.const_floats(0),
        ctx.const_floats(1),
        ctx.const_floats(2),
    ) {
        (Some(s), Some(l), Some(d)) if s.len() == 1 && l.len() == 1 && d.len() == 1 => {
            if d[0] == 0.0 {
                return Err("range delta is 0".into());
            }
            // Checked before `max`, which would turn a NaN length into 0.
            let len = ((l[0] - s[0]) / d[0]).ceil();
            if len.is_nan() {
                return Err(format!(
                    "range length is NaN (start {}, limit {}, delta {})",
                    s[0], l[0], d[0]
                ));
            }
            Dim::Known(dim_of_float(len.max(0.0), "range length")?)
        }
        _ => data_dim(ctx, "len"),
    };
    Ok(vec![tensor(dt, Some(Shape(vec![n])))])
}

fn eye_like(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let dtype = match ctx.call.attrs.int_opt("dtype").map_err(|e| e.to_string())? {
        Some(code) => super::cast::onnx_dtype(code)?,
        None => x.dtype,
    };
    Ok(vec![tensor(dtype, x.shape.clone())])
}

fn one_hot(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let idx = ctx.tensor(0)?;
    let dtype = ctx.tensor(2)?.dtype;
    let Some(s) = &idx.shape else {
        return Ok(vec![tensor(dtype, None)]);
    };
    let axis = norm_axis(int_attr(ctx, "axis", -1)?, s.rank() + 1)?;
    let depth = match ctx.const_floats(1).and_then(|v| v.first().copied()) {
        Some(d) if d >= 1.0 => Dim::Known(dim_of_float(d, "OneHot depth")?),
        Some(d) => return Err(format!("OneHot depth {d} is below 1")),
        None => data_dim(ctx, "depth"),
    };
    let mut out = s.dims().to_vec();
    out.insert(axis, depth);
    Ok(vec![tensor(dtype, Some(Shape(out)))])
}

fn non_zero(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let rank = match shape_of(ctx, 0)? {
        Some(s) => Dim::Known(s.rank()),
        None => data_dim(ctx, "rank"),
    };
    Ok(vec![tensor(
        DType::I64,
        Some(Shape(vec![rank, data_dim(ctx, "count")])),
    )])
}

fn depth_space(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let b = ctx.call.attrs.int("blocksize").map_err(|e| e.to_string())?;
    // Bounded so `b * b` and `k * b` cannot overflow; real block sizes are tiny.
    if !(1..=1 << 16).contains(&b) {
        return Err(format!("blocksize {b} out of range 1..=65536"));
    }
    let b = b as usize;
    let Some(s) = &x.shape else {
        return Ok(vec![tensor(x.dtype, None)]);
    };
    let [n, c, h, w] = s.dims() else {
        return Err("expected a 4-D input".into());
    };
    let scale = |d: &Dim, up: bool| -> R<Dim> {
        Ok(match d {
            Dim::Known(k) if up => Dim::Known(k.saturating_mul(b)),
            Dim::Known(k) if k % b == 0 => Dim::Known(k / b),
            Dim::Known(k) => return Err(format!("dim {k} not divisible by block {b}")),
            Dim::Sym(s) if up => Dim::Sym(format!("({s}*{b})")),
            Dim::Sym(s) => Dim::Sym(format!("({s}/{b})")),
        })
    };
    let bb = TensorType {
        dtype: x.dtype,
        shape: None,
    };
    let out = if ctx.op() == "DepthToSpace" {
        let c2 = match c {
            Dim::Known(k) if k % (b * b) == 0 => Dim::Known(k / (b * b)),
            Dim::Known(k) => return Err(format!("channels {k} not divisible by blocksize^2")),
            Dim::Sym(s) => Dim::Sym(format!("({s}/{})", b * b)),
        };
        vec![n.clone(), c2, scale(h, true)?, scale(w, true)?]
    } else {
        vec![
            n.clone(),
            dim_product(&[c.clone(), Dim::Known(b * b)]),
            scale(h, false)?,
            scale(w, false)?,
        ]
    };
    Ok(vec![ValueType::Tensor(TensorType {
        shape: Some(Shape(out)),
        ..bb
    })])
}

fn compress(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let count = match ctx.const_ints(1) {
        Some(c) => Dim::Known(c.iter().filter(|&&v| v != 0).count()),
        None => data_dim(ctx, "count"),
    };
    let out = match ctx.call.attrs.int_opt("axis").map_err(|e| e.to_string())? {
        None => Some(Shape(vec![count])),
        Some(a) => match &x.shape {
            Some(s) => {
                let mut d = s.dims().to_vec();
                d[axis_of(a, s.rank())?] = count;
                Some(Shape(d))
            }
            None => None,
        },
    };
    Ok(vec![tensor(x.dtype, out)])
}

fn unique(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    let n = data_dim(ctx, "count");
    let i64v = |d: Dim| tensor(DType::I64, Some(Shape(vec![d])));
    let (y, total) = match (
        ctx.call.attrs.int_opt("axis").map_err(|e| e.to_string())?,
        &x.shape,
    ) {
        (None, s) => (
            Some(Shape(vec![n.clone()])),
            s.as_ref().map(|s| dim_product(s.dims())),
        ),
        (Some(a), Some(s)) => {
            let a = axis_of(a, s.rank())?;
            let mut d = s.dims().to_vec();
            let total = d[a].clone();
            d[a] = n.clone();
            (Some(Shape(d)), Some(total))
        }
        (Some(_), None) => (None, None),
    };
    let total = total.unwrap_or_else(|| data_dim(ctx, "total"));
    Ok(vec![
        tensor(x.dtype, y),
        i64v(n.clone()),
        i64v(total),
        i64v(n),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::OpCall;
    use crate::infer::InputFact;
    use crate::tensor::Tensor;

    fn sym(s: &str) -> Dim {
        Dim::Sym(s.into())
    }

    #[test]
    fn minus_one_cancels_symbols() {
        let input = [sym("b"), sym("s"), Dim::Known(12), Dim::Known(32)];
        assert_eq!(
            infer_minus_one(&input, &[sym("b"), sym("s")]),
            Dim::Known(384)
        );
        assert_eq!(
            infer_minus_one(&[sym("b"), Dim::Known(6)], &[Dim::Known(3)]),
            sym("(b*2)")
        );
        assert_eq!(infer_minus_one(&[sym("b")], &[sym("c")]), sym("(b/c)"));
        assert_eq!(
            dim_sum(&[Dim::Known(2), sym("a"), Dim::Known(3)]),
            sym("(a+5)")
        );
        assert_eq!(dim_product(&[Dim::Known(0), sym("a")]), Dim::Known(0));
    }

    #[test]
    fn reshape_with_constant_shape_keeps_symbols() {
        let x = ValueType::Tensor(TensorType {
            dtype: DType::F32,
            shape: Some(Shape(vec![
                sym("b"),
                sym("s"),
                Dim::Known(12),
                Dim::Known(32),
            ])),
        });
        let spec = Tensor::from_vec(vec![3], vec![0i64, 0, -1]).unwrap();
        let sty = ValueType::Tensor(TensorType::known(DType::I64, &[3]));
        let call = OpCall::new("Reshape");
        let inputs = [
            Some(InputFact {
                ty: &x,
                value: None,
            }),
            Some(InputFact {
                ty: &sty,
                value: Some(&spec),
            }),
        ];
        let ctx = InferCtx {
            call: &call,
            inputs: &inputs,
            num_outputs: 1,
        };
        let out = reshape(&ctx).unwrap();
        assert_eq!(out[0].to_string(), "f32[b,s,384]");
    }

    #[test]
    fn slice_len_rules() {
        assert_eq!(
            slice_len(&Dim::Known(10), 2, -1, 2),
            Ok(Some(Dim::Known(4)))
        );
        assert_eq!(
            slice_len(&Dim::Known(5), -1, i64::MIN, -1),
            Ok(Some(Dim::Known(5)))
        );
        assert_eq!(slice_len(&sym("n"), 0, i64::MAX, 1), Ok(Some(sym("n"))));
        assert_eq!(slice_len(&sym("n"), 1, 3, 1), Ok(None));
        assert!(slice_len(&Dim::Known(5), 0, 5, 0).is_err());
        assert!(slice_len(&Dim::Known(5), 0, 5, i64::MIN).is_err());
    }
}
