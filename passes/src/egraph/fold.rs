//! Compile-time evaluation: constant folding through the interpreter, and
//! symbolic values of shape arithmetic.
//!
//! * [`eval`] runs one op on constant inputs with the reference interpreter's
//!   own kernel, so folding can never disagree with execution. It only runs when
//!   the result is small ([`FOLD_MAX_ELEMS`]): folding must not materialise new
//!   large tensors.
//! * [`sym_ints`] tracks the elements of small integer tensors built from
//!   shapes (`Shape`, `Gather`, `Unsqueeze`, `Concat`, `Slice`, `Cast`, ...), each
//!   a known integer or a symbolic dim. When every element is known the value
//!   folds to a constant; otherwise the symbols let rules such as the Reshape
//!   canonicalisation see that a computed shape copies the input's dims.

use super::facts::{Facts, SymInt};
use super::op::OpKey;
use egret_ir::{Attr, DType, Graph, Tensor, ValueType};
use egret_runtime::{registry, Interpreter};

/// Largest result (in elements) that constant folding materialises.
pub const FOLD_MAX_ELEMS: usize = 4096;

/// Ops with subgraphs, whose evaluation at compile time is not worth it.
const WITH_SUBGRAPHS: &[&str] = &["If", "Loop", "Scan"];

/// True for ops whose every evaluation gives a fresh value (never merged by
/// hash-consing, never folded).
pub fn nondeterministic(op_type: &str) -> bool {
    egret_runtime::fold::is_random(op_type)
}

/// Evaluate `key` on constant inputs (`None` = absent) when the single result is
/// a tensor of at most [`FOLD_MAX_ELEMS`] elements. Any failure means "not folded".
pub fn eval(key: &OpKey, inputs: &[Option<&Tensor>], out: &ValueType) -> Option<Tensor> {
    if key.outputs != 1
        || nondeterministic(key.op_type())
        || WITH_SUBGRAPHS.contains(&key.op_type())
    {
        return None;
    }
    let shape = out.as_tensor()?.shape.as_ref()?.as_known()?;
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n > FOLD_MAX_ELEMS || out.as_tensor()?.dtype == DType::String {
        return None;
    }
    registry().get(&key.call.domain, &key.call.op_type)?;
    let has_graph = key
        .call
        .attrs
        .iter()
        .any(|(_, a)| matches!(a, Attr::Graph(_) | Attr::Graphs(_)));
    if has_graph {
        return None;
    }
    let mut g = Graph::new("fold");
    let ins: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| t.map(|t| g.add_const(&format!("c{i}"), t.clone())))
        .collect();
    let y = g.call("y", key.call.clone(), &ins, 1).ok()?;
    g.outputs = y;
    let out = Interpreter::new(&g).ok()?.run(vec![]).ok()?;
    let t = out.into_iter().next()?.into_tensor().ok()?;
    (t.shape() == shape.as_slice()).then_some(t)
}

fn int_elems(t: &Tensor) -> Option<Vec<SymInt>> {
    if t.rank() > 1 || t.numel() > 64 || !t.dtype().is_int() {
        return None;
    }
    Some(t.to_i64_vec().ok()?.into_iter().map(SymInt::Int).collect())
}

/// The symbolic elements of a constant's value.
pub fn const_ints(t: &Tensor) -> Option<Vec<SymInt>> {
    int_elems(t)
}

fn norm(i: i64, n: usize) -> Option<usize> {
    let n = i64::try_from(n).ok()?;
    let j = if i < 0 { i + n } else { i };
    (0..n).contains(&j).then(|| usize::try_from(j).ok())?
}

fn attr_int(key: &OpKey, name: &str, default: i64) -> Option<i64> {
    key.call.attrs.int_or(name, default).ok()
}

fn ints_of(f: Option<&Facts>) -> Option<&Vec<SymInt>> {
    f?.ints.as_ref()
}

fn known_ints(f: Option<&Facts>) -> Option<Vec<i64>> {
    ints_of(f)?
        .iter()
        .map(|x| match x {
            SymInt::Int(i) => Some(*i),
            SymInt::Sym(_) => None,
        })
        .collect()
}

/// Symbolic elements of an op's result from its inputs' facts (`None` = unknown).
pub fn sym_ints(key: &OpKey, ins: &[Option<&Facts>], out: &ValueType) -> Option<Vec<SymInt>> {
    let t = out.as_tensor()?;
    if !t.dtype.is_int() || t.shape.as_ref()?.rank() > 1 || key.outputs != 1 {
        return None;
    }
    let arg = |i: usize| ins.get(i).copied().flatten();
    match key.op_type() {
        "Shape" => {
            let dims = arg(0)?.dims()?;
            let r = dims.len() as i64;
            let clamp = |v: i64| {
                let v = if v < 0 { v + r } else { v };
                v.clamp(0, r) as usize
            };
            let start = clamp(attr_int(key, "start", 0)?);
            let end = clamp(attr_int(key, "end", r)?);
            Some(
                dims.get(start..end.max(start))?
                    .iter()
                    .map(SymInt::from)
                    .collect(),
            )
        }
        "Identity" | "Cast" | "Squeeze" | "Unsqueeze" => ints_of(arg(0)).cloned(),
        "Gather" => {
            let data = ints_of(arg(0))?;
            let idx = known_ints(arg(1))?;
            idx.iter()
                .map(|&i| data.get(norm(i, data.len())?).cloned())
                .collect()
        }
        "Concat" => {
            let mut v = Vec::new();
            for f in ins {
                v.extend(ints_of(*f)?.iter().cloned());
            }
            Some(v)
        }
        "Slice" => {
            let data = ints_of(arg(0))?;
            let (s, e) = (known_ints(arg(1))?, known_ints(arg(2))?);
            let step = match arg(4) {
                Some(_) => known_ints(arg(4))?,
                None => vec![1],
            };
            if s.len() != 1 || e.len() != 1 || step != [1] {
                return None;
            }
            let n = data.len() as i64;
            let c = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
            Some(data.get(c(s[0])..c(e[0]).max(c(s[0])))?.to_vec())
        }
        _ => None,
    }
}

/// The constant tensor of fully known symbolic elements, typed as `out`.
pub fn ints_value(ints: &[SymInt], out: &ValueType) -> Option<Tensor> {
    let t = out.as_tensor()?;
    let v: Vec<i64> = ints
        .iter()
        .map(|x| match x {
            SymInt::Int(i) => Some(*i),
            SymInt::Sym(_) => None,
        })
        .collect::<Option<_>>()?;
    let shape = match t.shape.as_ref()?.rank() {
        0 if v.len() == 1 => vec![],
        1 => vec![v.len()],
        _ => return None,
    };
    match t.dtype {
        DType::I64 => Tensor::from_vec(shape, v).ok(),
        DType::I32 => Tensor::from_vec(
            shape,
            v.iter()
                .map(|&x| i32::try_from(x).ok())
                .collect::<Option<Vec<_>>>()?,
        )
        .ok(),
        _ => None,
    }
}
