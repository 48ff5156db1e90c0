//! Elementwise functions as C expressions: the fused-loop instructions
//! ([`UnOp`], [`BinOp`]) on `float`/`double`, and ONNX elementwise ops on
//! every numeric dtype (integers wrap, as in the interpreter).

use super::ctype::{ctype, f32_lit, f64_lit, unsigned_of};
use super::EmitError;
use crate::program::{BinOp, UnOp};
use egret_ir::{Attrs, DType};

/// A libm function for C float type `t` (`expf` for `float`, `exp` for `double`).
fn m(name: &str, t: &str) -> String {
    if t == "float" {
        format!("{name}f")
    } else {
        name.to_string()
    }
}

/// A real constant in C float type `t`.
fn lit(v: f64, t: &str) -> String {
    if t == "float" {
        f32_lit(v as f32)
    } else {
        f64_lit(v)
    }
}

/// `op(x)` in C float type `t`.
pub(crate) fn unop(op: UnOp, x: &str, t: &str) -> String {
    let f = |name: &str| format!("{}({x})", m(name, t));
    let one = lit(1.0, t);
    let zero = lit(0.0, t);
    match op {
        UnOp::Neg => format!("(-{x})"),
        UnOp::Abs => f("fabs"),
        UnOp::Relu => format!("({x} < {zero} ? {zero} : {x})"),
        UnOp::Sqrt => f("sqrt"),
        UnOp::Floor => f("floor"),
        UnOp::Ceil => f("ceil"),
        UnOp::Recip => format!("({one} / {x})"),
        UnOp::Exp => f("exp"),
        UnOp::Log => f("log"),
        UnOp::Tanh => f("tanh"),
        UnOp::Sigmoid => format!("({one} / ({one} + {}(-{x})))", m("exp", t)),
        UnOp::Erf => f("erf"),
        UnOp::Sin => f("sin"),
        UnOp::Cos => f("cos"),
        UnOp::Softplus => format!(
            "({x} > {zero} ? {x} + {lp}({e}(-{x})) : {lp}({e}({x})))",
            lp = m("log1p", t),
            e = m("exp", t)
        ),
        UnOp::Gelu => format!(
            "({} * {x} * ({one} + {}({x} * {})))",
            lit(0.5, t),
            m("erf", t),
            lit(std::f64::consts::FRAC_1_SQRT_2, t)
        ),
        UnOp::GeluTanh => format!(
            "({} * {x} * ({one} + {}({} * ({x} + {} * {x} * {x} * {x}))))",
            lit(0.5, t),
            m("tanh", t),
            lit((2.0 / std::f64::consts::PI).sqrt(), t),
            lit(0.044715, t)
        ),
        UnOp::LeakyRelu(a) => format!("({x} < {zero} ? {} * {x} : {x})", lit(a.into(), t)),
        UnOp::HardSigmoid(a, b) => clamp01(
            &format!("({} * {x} + {})", lit(a.into(), t), lit(b.into(), t)),
            t,
        ),
        UnOp::HardSwish => format!(
            "({x} * {})",
            clamp01(&format!("({x} / {} + {})", lit(6.0, t), lit(0.5, t)), t)
        ),
    }
}

/// `max(0, min(1, v))`, keeping NaN.
fn clamp01(v: &str, t: &str) -> String {
    format!(
        "({v} < {z} ? {z} : ({v} > {o} ? {o} : {v}))",
        z = lit(0.0, t),
        o = lit(1.0, t)
    )
}

/// `op(a, b)` in C float type `t`.
pub(crate) fn binop(op: BinOp, a: &str, b: &str, t: &str) -> String {
    match op {
        BinOp::Add => format!("({a} + {b})"),
        BinOp::Sub => format!("({a} - {b})"),
        BinOp::Mul => format!("({a} * {b})"),
        BinOp::Div => format!("({a} / {b})"),
        BinOp::Max => format!("(({a} != {a} || {a} >= {b}) ? {a} : {b})"),
        BinOp::Min => format!("(({a} != {a} || {a} <= {b}) ? {a} : {b})"),
        BinOp::Pow => format!("{}({a}, {b})", m("pow", t)),
        BinOp::PRelu => format!("({a} < {} ? {a} * {b} : {a})", lit(0.0, t)),
    }
}

/// The fused-loop function an ONNX float op is, when it is one.
fn as_unop(op: &str, attrs: &Attrs) -> Option<UnOp> {
    let f = |n: &str, d: f32| attrs.float_or(n, d).ok();
    Some(match op {
        "Neg" => UnOp::Neg,
        "Abs" => UnOp::Abs,
        "Relu" => UnOp::Relu,
        "Sqrt" => UnOp::Sqrt,
        "Floor" => UnOp::Floor,
        "Ceil" => UnOp::Ceil,
        "Reciprocal" => UnOp::Recip,
        "Exp" => UnOp::Exp,
        "Log" => UnOp::Log,
        "Tanh" => UnOp::Tanh,
        "Sigmoid" => UnOp::Sigmoid,
        "Erf" => UnOp::Erf,
        "Sin" => UnOp::Sin,
        "Cos" => UnOp::Cos,
        "Softplus" => UnOp::Softplus,
        "Gelu" => match attrs.string_or("approximate", "none").ok()? {
            "none" => UnOp::Gelu,
            "tanh" => UnOp::GeluTanh,
            _ => return None,
        },
        "LeakyRelu" => UnOp::LeakyRelu(f("alpha", 0.01)?),
        "HardSigmoid" => UnOp::HardSigmoid(f("alpha", 0.2)?, f("beta", 0.5)?),
        "HardSwish" => UnOp::HardSwish,
        _ => return None,
    })
}

/// The binary fused-loop function an ONNX op is (variadic ops fold with it).
fn as_binop(op: &str) -> Option<BinOp> {
    Some(match op {
        "Add" | "Sum" | "Mean" => BinOp::Add,
        "Sub" => BinOp::Sub,
        "Mul" => BinOp::Mul,
        "Div" => BinOp::Div,
        "Max" => BinOp::Max,
        "Min" => BinOp::Min,
        "Pow" => BinOp::Pow,
        "PRelu" => BinOp::PRelu,
        _ => return None,
    })
}

/// An elementwise ONNX op as a C expression of its operands (`None` for an
/// absent optional input). `dt` is the dtype of the first input, `out` the
/// output's. `Ok(None)` when the op is not elementwise.
pub(crate) fn onnx(
    op: &str,
    attrs: &Attrs,
    args: &[Option<String>],
    dt: DType,
    out: DType,
) -> Result<Option<String>, EmitError> {
    let unsupported = || EmitError::unsupported(op, format!("on {dt}"));
    let a = |i: usize| args.get(i).cloned().flatten().ok_or_else(unsupported);
    let t = ctype(dt)?;
    let f = |n: &str, d: f32| {
        attrs
            .float_or(n, d)
            .map(f64::from)
            .map_err(|e| EmitError::unsupported(op, e.to_string()))
    };
    let float = dt.is_float();
    let int = dt.is_int() || dt == DType::Bool;
    if op == "Cast" || op == "CastLike" {
        let to = ctype(out)?;
        let x = a(0)?;
        return Ok(Some(if out == DType::Bool {
            format!("({x} != 0)")
        } else {
            format!("(({to})({x}))")
        }));
    }
    if op == "Where" {
        return Ok(Some(format!("({} ? {} : {})", a(0)?, a(1)?, a(2)?)));
    }
    if let Some(cmp) = match op {
        "Equal" => Some("=="),
        "Less" => Some("<"),
        "Greater" => Some(">"),
        "LessOrEqual" => Some("<="),
        "GreaterOrEqual" => Some(">="),
        _ => None,
    } {
        return Ok(Some(format!("({} {cmp} {})", a(0)?, a(1)?)));
    }
    if dt == DType::Bool {
        return Ok(match op {
            "And" => Some(format!("({} && {})", a(0)?, a(1)?)),
            "Or" => Some(format!("({} || {})", a(0)?, a(1)?)),
            "Xor" => Some(format!("({} != {})", a(0)?, a(1)?)),
            "Not" => Some(format!("(!{})", a(0)?)),
            "Identity" => Some(a(0)?),
            _ => None,
        });
    }
    if float {
        return float_op(op, attrs, args, t, &f);
    }
    if !int {
        return Err(unsupported());
    }
    int_op(op, attrs, args, dt, t)
}

/// The float-only part of [`onnx`].
fn float_op(
    op: &str,
    attrs: &Attrs,
    args: &[Option<String>],
    t: &str,
    f: &dyn Fn(&str, f32) -> Result<f64, EmitError>,
) -> Result<Option<String>, EmitError> {
    let missing = || EmitError::unsupported(op, "a required input is absent");
    let a = |i: usize| args.get(i).cloned().flatten().ok_or_else(missing);
    let zero = lit(0.0, t);
    let one = lit(1.0, t);
    if let Some(u) = as_unop(op, attrs) {
        return Ok(Some(unop(u, &a(0)?, t)));
    }
    if let Some(b) = as_binop(op) {
        let mut e = a(0)?;
        for i in 1..args.len() {
            e = binop(b, &e, &a(i)?, t);
        }
        if op == "Mean" {
            e = format!("({e} / {})", lit(args.len() as f64, t));
        }
        return Ok(Some(e));
    }
    let x = a(0)?;
    let fun = |name: &str| format!("{}({x})", m(name, t));
    let expm1 = |v: &str| format!("{}({v})", m("expm1", t));
    Ok(Some(match op {
        "Identity" => x,
        "Tan" | "Asin" | "Acos" | "Atan" | "Sinh" | "Cosh" | "Asinh" | "Acosh" | "Atanh" => {
            fun(&op.to_ascii_lowercase())
        }
        "Round" => fun("rint"),
        "Sign" => format!("({x} > {zero} ? {one} : ({x} < {zero} ? -{one} : {x}))"),
        "IsNaN" => format!("({x} != {x})"),
        "IsInf" => {
            let pos = attrs.int_or("detect_positive", 1).unwrap_or(1) != 0;
            let neg = attrs.int_or("detect_negative", 1).unwrap_or(1) != 0;
            format!(
                "(({} && {x} == INFINITY) || ({} && {x} == -INFINITY))",
                u8::from(pos),
                u8::from(neg)
            )
        }
        "Elu" => format!(
            "({x} < {zero} ? {} * {} : {x})",
            lit(f("alpha", 1.0)?, t),
            expm1(&x)
        ),
        "Selu" => format!(
            "({} * ({x} > {zero} ? {x} : {} * {}))",
            lit(f("gamma", 1.050_701)?, t),
            lit(f("alpha", 1.673_263_2)?, t),
            expm1(&x)
        ),
        "Celu" => {
            let al = lit(f("alpha", 1.0)?, t);
            format!(
                "({x} > {zero} ? {x} : {al} * {})",
                expm1(&format!("({x} / {al})"))
            )
        }
        "Softsign" => format!("({x} / ({one} + {}))", fun("fabs")),
        "ThresholdedRelu" => format!("({x} > {} ? {x} : {zero})", lit(f("alpha", 1.0)?, t)),
        "Mish" => format!("({x} * {}({}))", m("tanh", t), unop(UnOp::Softplus, &x, t)),
        "Swish" => format!(
            "({x} * {})",
            unop(
                UnOp::Sigmoid,
                &format!("({} * {x})", lit(f("alpha", 1.0)?, t)),
                t
            )
        ),
        "Shrink" => {
            let (bias, l) = (lit(f("bias", 0.0)?, t), lit(f("lambd", 0.5)?, t));
            format!("({x} < -{l} ? {x} + {bias} : ({x} > {l} ? {x} - {bias} : {zero}))")
        }
        "Mod" => {
            let y = a(1)?;
            let r = format!("{}({x}, {y})", m("fmod", t));
            if attrs.int_or("fmod", 0).unwrap_or(0) == 1 {
                r
            } else {
                format!("(({r} != {zero} && (({r} < {zero}) != ({y} < {zero}))) ? {r} + {y} : {r})")
            }
        }
        "Clip" => {
            let mut e = x;
            if let Some(lo) = args.get(1).cloned().flatten() {
                e = format!("({e} < {lo} ? {lo} : {e})");
            }
            if let Some(hi) = args.get(2).cloned().flatten() {
                e = format!("({e} > {hi} ? {hi} : {e})");
            }
            e
        }
        _ => return Ok(None),
    }))
}

/// The integer part of [`onnx`]: wrapping arithmetic through the unsigned
/// type of the same width, division by zero giving 0.
fn int_op(
    op: &str,
    attrs: &Attrs,
    args: &[Option<String>],
    dt: DType,
    t: &str,
) -> Result<Option<String>, EmitError> {
    let missing = || EmitError::unsupported(op, "a required input is absent");
    let a = |i: usize| args.get(i).cloned().flatten().ok_or_else(missing);
    let u = unsigned_of(dt);
    let signed = dt.is_signed_int();
    let wrap = |sym: &str, x: &str, y: &str| format!("(({t})(({u}){x} {sym} ({u}){y}))");
    let fold = |f: &dyn Fn(&str, &str) -> String| -> Result<String, EmitError> {
        let mut e = a(0)?;
        for i in 1..args.len() {
            e = f(&e, &a(i)?);
        }
        Ok(e)
    };
    Ok(Some(match op {
        "Identity" => a(0)?,
        "Add" | "Sum" => fold(&|x, y| wrap("+", x, y))?,
        "Sub" => wrap("-", &a(0)?, &a(1)?),
        "Mul" => fold(&|x, y| wrap("*", x, y))?,
        "Div" => {
            let (x, y) = (a(0)?, a(1)?);
            format!("({y} == 0 ? ({t})0 : ({t})({x} / {y}))")
        }
        "Mod" => {
            let (x, y) = (a(0)?, a(1)?);
            let r = format!("({t})({x} % {y})");
            if signed && attrs.int_or("fmod", 0).unwrap_or(0) == 0 {
                format!(
                    "({y} == 0 ? ({t})0 : (({r} != 0 && (({r} < 0) != ({y} < 0))) ? ({t})({r} + {y}) : {r}))"
                )
            } else {
                format!("({y} == 0 ? ({t})0 : {r})")
            }
        }
        "Max" => fold(&|x, y| format!("({x} >= {y} ? {x} : {y})"))?,
        "Min" => fold(&|x, y| format!("({x} <= {y} ? {x} : {y})"))?,
        "Neg" => format!("(({t})(({u})0 - ({u}){}))", a(0)?),
        "Abs" if signed => {
            let x = a(0)?;
            format!("({x} < 0 ? ({t})(({u})0 - ({u}){x}) : {x})")
        }
        "Abs" => a(0)?,
        "Relu" if signed => {
            let x = a(0)?;
            format!("({x} < 0 ? ({t})0 : {x})")
        }
        "Relu" => a(0)?,
        "Sign" if signed => {
            let x = a(0)?;
            format!("(({t})(({x} > 0) - ({x} < 0)))")
        }
        "Sign" => format!("(({t})({} > 0))", a(0)?),
        "BitwiseAnd" => format!("(({t})({} & {}))", a(0)?, a(1)?),
        "BitwiseOr" => format!("(({t})({} | {}))", a(0)?, a(1)?),
        "BitwiseXor" => format!("(({t})({} ^ {}))", a(0)?, a(1)?),
        "BitwiseNot" => format!("(({t})~{})", a(0)?),
        "BitShift" => {
            let (x, y) = (a(0)?, a(1)?);
            let bits = 8 * dt.size().unwrap_or(8);
            let dir = match attrs.string_or("direction", "") {
                Ok("LEFT") => "<<",
                Ok("RIGHT") => ">>",
                _ => return Err(EmitError::unsupported(op, "direction is not LEFT or RIGHT")),
            };
            format!("({y} >= {bits} ? ({t})0 : ({t})({x} {dir} {y}))")
        }
        "Pow" => format!("(({t})pow((double){}, (double){}))", a(0)?, a(1)?),
        "Clip" => {
            let mut e = a(0)?;
            if let Some(lo) = args.get(1).cloned().flatten() {
                e = format!("({e} < {lo} ? {lo} : {e})");
            }
            if let Some(hi) = args.get(2).cloned().flatten() {
                e = format!("({e} > {hi} ? {hi} : {e})");
            }
            e
        }
        _ => return Ok(None),
    }))
}
