//! Nested C loops over strided operands: the shape of every elementwise,
//! broadcasting and data-movement step, and of fused loops.

use super::{expr, Ctx, EmitError};
use crate::program::{broadcast_strides, collapse, FusedLoop, Inst};
use egret_runtime::kernels::strided::strides_of;

/// One array a loop nest walks: a base pointer expression, a first element
/// and a signed element stride per loop axis (0 broadcasts).
#[derive(Clone, Debug)]
pub(crate) struct Operand {
    /// A C pointer expression.
    pub ptr: String,
    /// Element offset of the first element visited.
    pub offset: i64,
    /// Element stride along each axis of the nest.
    pub strides: Vec<i64>,
}

impl Operand {
    /// An operand walking a contiguous array of `dims`.
    pub(crate) fn contiguous(ptr: String, dims: &[usize]) -> Operand {
        Operand {
            ptr,
            offset: 0,
            strides: contiguous_strides(dims),
        }
    }

    /// An operand of `shape` broadcast (numpy rules) to `out`.
    pub(crate) fn broadcast(ptr: String, shape: &[usize], out: &[usize]) -> Operand {
        Operand {
            ptr,
            offset: 0,
            strides: signed(&broadcast_strides(shape, out)),
        }
    }
}

/// Row-major element strides of `dims`.
pub(crate) fn contiguous_strides(dims: &[usize]) -> Vec<i64> {
    signed(&strides_of(dims))
}

fn signed(strides: &[usize]) -> Vec<i64> {
    strides.iter().map(|&s| s as i64).collect()
}

/// `offset + Σ var_k · stride_k` as C.
fn index(offset: i64, strides: &[i64], var: &str) -> String {
    let mut terms: Vec<String> = Vec::new();
    if offset != 0 {
        terms.push(offset.to_string());
    }
    for (k, &s) in strides.iter().enumerate() {
        match s {
            0 => {}
            1 => terms.push(format!("{var}{k}")),
            s => terms.push(format!("{var}{k} * {s}")),
        }
    }
    if terms.is_empty() {
        "0".into()
    } else {
        terms.join(" + ")
    }
}

/// Nested loops over `dims` (index variables `var0`, `var1`, ...), the
/// innermost axis last. `body` gets, per operand, the C lvalue of its
/// current element (`ptr[index]`) and returns the statements of one
/// iteration. Size-1 and mergeable axes are collapsed first.
pub(crate) fn nest(
    dims: &[usize],
    ops: &[Operand],
    var: &str,
    body: &dyn Fn(&[String]) -> String,
) -> String {
    let all: Vec<Vec<i64>> = ops.iter().map(|o| o.strides.clone()).collect();
    let (dims, strides) = collapse(dims, &all);
    let elems: Vec<String> = ops
        .iter()
        .zip(&strides)
        .map(|(o, s)| format!("{}[{}]", o.ptr, index(o.offset, s, var)))
        .collect();
    let mut code = String::new();
    for (k, d) in dims.iter().enumerate() {
        code += &format!("for (long {var}{k} = 0; {var}{k} < {d}; {var}{k}++) ");
    }
    code += &format!("{{\n{}}}\n", body(&elems));
    code
}

/// A fused f32 loop as nested C loops: each body instruction is one `float`
/// temporary, and the output is written contiguously.
pub(crate) fn fused_loop(cx: &mut Ctx<'_>, l: &FusedLoop) -> Result<String, EmitError> {
    let mut ops = vec![Operand::contiguous(cx.ptr(l.output)?, &l.dims)];
    for (&b, s) in l.inputs.iter().zip(&l.strides) {
        ops.push(Operand {
            ptr: cx.ptr(b)?,
            offset: 0,
            strides: signed(s),
        });
    }
    // Instructions the output does not depend on are not emitted (no unused
    // temporaries).
    let mut live = vec![false; l.body.len()];
    if let Some(last) = live.last_mut() {
        *last = true;
    }
    for k in (0..l.body.len()).rev() {
        if live[k] {
            match l.body[k] {
                Inst::Unary(_, a) => live[a] = true,
                Inst::Binary(_, a, b) => {
                    live[a] = true;
                    live[b] = true;
                }
                Inst::Load(_) | Inst::Const(_) => {}
            }
        }
    }
    let body = |e: &[String]| {
        let mut s = String::new();
        for (k, inst) in l.body.iter().enumerate().filter(|(k, _)| live[*k]) {
            let v = |i: usize| format!("v{i}");
            let rhs = match *inst {
                Inst::Load(i) => e[1 + i].clone(),
                Inst::Const(c) => super::ctype::f32_lit(c),
                Inst::Unary(op, a) => expr::unop(op, &v(a), "float"),
                Inst::Binary(op, a, b) => expr::binop(op, &v(a), &v(b), "float"),
            };
            s += &format!("    const float v{k} = {rhs};\n");
        }
        s + &format!("    {} = v{};\n", e[0], l.body.len() - 1)
    };
    Ok(nest(&l.dims, &ops, "i", &body))
}
