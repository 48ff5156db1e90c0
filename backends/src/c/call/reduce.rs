//! Reductions (`Reduce*`, `GlobalAveragePool`/`GlobalMaxPool`, `ArgMax`/
//! `ArgMin`): an outer loop nest over the kept axes writing the output
//! contiguously, and an inner nest over the reduced axes.

use super::{Node, Operand};
use crate::c::ctype::ctype;
use crate::c::strided::{contiguous_strides, nest};
use crate::c::{Ctx, EmitError};
use egret_ir::DType;

/// The accumulator type, its initial value, the update with element `v`
/// and the final value of a reduction over `count` elements of C type `t`.
struct Fold {
    acc: String,
    init: String,
    step: String,
    fin: String,
}

fn fold(op: &str, t: &str, dt: DType, count: usize) -> Option<Fold> {
    let float = dt.is_float();
    let acc = if float { "double" } else { t }.to_string();
    let f = |init: &str, step: &str, fin: &str| {
        Some(Fold {
            acc: acc.clone(),
            init: init.into(),
            step: step.into(),
            fin: fin.into(),
        })
    };
    let cnt = count.max(1);
    match (op, float) {
        ("ReduceSum", _) => f("0", "acc += v;", "acc"),
        ("ReduceMean", _) | ("GlobalAveragePool", true) => {
            f("0", "acc += v;", &format!("acc / {cnt}"))
        }
        ("ReduceProd", _) => f("1", "acc *= v;", "acc"),
        ("ReduceSumSquare", _) => f("0", "acc += v * v;", "acc"),
        ("ReduceL1", true) => f("0", "acc += fabs(v);", "acc"),
        ("ReduceL1", false) if dt.is_signed_int() => f("0", "acc += v < 0 ? -v : v;", "acc"),
        ("ReduceL1", false) => f("0", "acc += v;", "acc"),
        ("ReduceL2", true) => f("0", "acc += (double)v * v;", "sqrt(acc)"),
        ("ReduceLogSum", true) => f("0", "acc += v;", "log(acc)"),
        ("ReduceLogSumExp", true) => f("0", "acc += exp((double)v);", "log(acc)"),
        ("ReduceMax" | "GlobalMaxPool", true) => {
            f("-INFINITY", "if (v > acc || v != v) acc = v;", "acc")
        }
        ("ReduceMin", true) => f("INFINITY", "if (v < acc || v != v) acc = v;", "acc"),
        // Integers start from the first element (the nest sees at least one).
        ("ReduceMax", false) if count > 0 => f("first", "if (v > acc) acc = v;", "acc"),
        ("ReduceMin", false) if count > 0 => f("first", "if (v < acc) acc = v;", "acc"),
        _ => None,
    }
}

/// The axes to reduce, or `None` for "no reduction" (a copy).
fn axes(cx: &Ctx<'_>, n: &Node<'_>, rank: usize) -> Result<Option<Vec<bool>>, EmitError> {
    if n.op.starts_with("Global") {
        return Ok(Some((0..rank).map(|a| a >= 2).collect()));
    }
    let runtime = n.opt_input(1).is_some_and(|b| cx.const_value(b).is_none());
    if runtime {
        return shape_axes(cx, n);
    }
    let list = match n.const_ints(cx, 1)? {
        Some(a) => a,
        None => n.ints("axes")?.unwrap_or_default(),
    };
    if list.is_empty() {
        return Ok(if n.int("noop_with_empty_axes", 0)? != 0 {
            None
        } else {
            Some(vec![true; rank])
        });
    }
    let mut r = vec![false; rank];
    for a in list {
        r[n.axis(a, rank)?] = true;
    }
    Ok(Some(r))
}

/// The reduced axes when the `axes` input is computed at run time, from
/// the traced shapes (`keepdims` only): an axis whose size changed is
/// reduced, one of size above 1 that kept it is not. An axis of size 1
/// either way is ambiguous, which only the reductions whose value over one
/// element is that element can ignore. `None`: no axis is reduced (the
/// empty axes of `noop_with_empty_axes`, a copy).
fn shape_axes(cx: &Ctx<'_>, n: &Node<'_>) -> Result<Option<Vec<bool>>, EmitError> {
    let runtime = || n.unsupported("axes computed at run time");
    if n.int("keepdims", 1)? == 0 {
        return Err(runtime());
    }
    let (i, o) = (cx.shape(n.input(0)?), cx.shape(n.output()?));
    if i.len() != o.len() {
        return Err(n.unsupported("the output rank differs from the input's"));
    }
    let idempotent = matches!(
        n.op,
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceLogSumExp"
    );
    let ambiguous = i.iter().zip(o).any(|(&a, &b)| a == 1 && b == 1);
    if ambiguous && !idempotent {
        return Err(runtime());
    }
    let reduced: Vec<bool> = i.iter().zip(o).map(|(a, b)| a != b).collect();
    if reduced.iter().any(|&r| r) {
        Ok(Some(reduced))
    } else if n.int("noop_with_empty_axes", 0)? != 0 || idempotent {
        Ok(None)
    } else {
        Err(runtime())
    }
}

/// Split the input's axes into kept (outer) and reduced (inner) ones:
/// dims and element strides of each.
fn partition(shape: &[usize], reduced: &[bool]) -> [(Vec<usize>, Vec<i64>); 2] {
    let st = contiguous_strides(shape);
    let mut kept = (Vec::new(), Vec::new());
    let mut red = (Vec::new(), Vec::new());
    for (a, &d) in shape.iter().enumerate() {
        let side = if reduced[a] { &mut red } else { &mut kept };
        side.0.push(d);
        side.1.push(st[a]);
    }
    [kept, red]
}

/// The two loop nests: for each output element (`out` contiguous over the
/// kept axes), `inner(first)` gets the input's first element of the
/// reduction and returns the code before the inner nest, one iteration of
/// it (the current element written `@v@`) and the output value.
fn nests(
    out_ptr: String,
    in_ptr: String,
    kept: &(Vec<usize>, Vec<i64>),
    red: &(Vec<usize>, Vec<i64>),
    inner: &dyn Fn(&str) -> (String, String, String),
) -> String {
    let ops = [
        Operand::contiguous(out_ptr, &kept.0),
        Operand {
            ptr: in_ptr,
            offset: 0,
            strides: kept.1.clone(),
        },
    ];
    nest(&kept.0, &ops, "i", &|e| {
        let base = format!("(&{})", e[1]);
        let elem_ops = [Operand {
            ptr: base.clone(),
            offset: 0,
            strides: red.1.clone(),
        }];
        let (pre, each, post) = inner(&format!("{base}[0]"));
        let body = nest(&red.0, &elem_ops, "r", &|el| each.replace("@v@", &el[0]));
        format!("{pre}{body}    {} = {post};\n", e[0])
    })
}

/// A `Reduce*` op or a global pooling.
pub(super) fn reduce(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o) = (n.input(0)?, n.output()?);
    let ishape = cx.shape(i);
    let Some(reduced) = axes(cx, n, ishape.len())? else {
        return super::movement::copy(cx, n);
    };
    let [kept, red] = partition(ishape, &reduced);
    let count: usize = red.0.iter().product();
    let dt = cx.dtype(i);
    let t = ctype(dt)?;
    let fold = fold(n.op, t, dt, count).ok_or_else(|| n.unsupported(format!("on {dt}")))?;
    let acc = fold.acc.clone();
    let out_t = ctype(cx.dtype(o))?;
    let inner = |first: &str| {
        let init = if fold.init == "first" {
            first.to_string()
        } else {
            fold.init.clone()
        };
        (
            format!("    {acc} acc = {init};\n"),
            format!("    const {t} v = @v@;\n    {}\n", fold.step),
            format!("({out_t})({})", fold.fin),
        )
    };
    Ok(nests(cx.ptr(o)?, cx.ptr(i)?, &kept, &red, &inner))
}

/// ArgMax / ArgMin along `axis` (first or, with `select_last_index`, last
/// extreme), as int64.
pub(super) fn arg(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let (i, o) = (n.input(0)?, n.output()?);
    let ishape = cx.shape(i);
    let axis = n.axis(n.int("axis", 0)?, ishape.len())?;
    let last = n.int("select_last_index", 0)? != 0;
    let reduced: Vec<bool> = (0..ishape.len()).map(|a| a == axis).collect();
    let [kept, red] = partition(ishape, &reduced);
    match red.0.iter().product::<usize>() {
        0 => return Err(n.unsupported("an empty axis")),
        1 => {
            let total: usize = kept.0.iter().product();
            let op = cx.ptr(o)?;
            return Ok(format!("for (long i = 0; i < {total}; i++) {op}[i] = 0;\n"));
        }
        _ => {}
    }
    let t = ctype(cx.dtype(i))?;
    let cmp = match (n.op, last) {
        ("ArgMax", false) => ">",
        ("ArgMax", true) => ">=",
        (_, false) => "<",
        (_, true) => "<=",
    };
    let inner = |first: &str| {
        (
            format!("    {t} best = {first};\n    int64_t arg = 0;\n"),
            format!("    if (@v@ {cmp} best) {{ best = @v@; arg = r0; }}\n"),
            "arg".to_string(),
        )
    };
    Ok(nests(cx.ptr(o)?, cx.ptr(i)?, &kept, &red, &inner))
}
