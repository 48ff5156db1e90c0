//! `egret::Guard`: the condition of an `If` specialised to one branch
//! ([`crate::c::specialize_ifs`]) as a run-time check.

use super::super::{ctype, Ctx, EmitError};
use super::Node;

/// `egret_model` returns 1 unless the one-element condition has the truth
/// value of attribute `value`. A condition the shapes fix (a constant
/// buffer) is checked here instead and emits no code.
pub(crate) fn guard(cx: &mut Ctx<'_>, n: &Node<'_>) -> Result<String, EmitError> {
    let cond = n.input(0)?;
    let want = n.int("value", 1)? != 0;
    if cx.shape(cond).iter().product::<usize>() != 1 {
        return Err(n.unsupported(format!("a condition of shape {:?}", cx.shape(cond))));
    }
    if let Some(t) = cx.const_value(cond) {
        let holds = t
            .to_f64_vec()
            .map_err(|e| n.unsupported(e.to_string()))?
            .first()
            .is_some_and(|&x| (x != 0.0) == want);
        return if holds {
            Ok("/* the shapes fix the condition: it holds */\n".into())
        } else {
            Err(n.unsupported("the shapes fix the condition to the other branch"))
        };
    }
    ctype::ctype(cx.dtype(cond))?;
    Ok(format!(
        "if (({}[0] != 0) != {}) return 1;\n",
        cx.ptr(cond)?,
        u8::from(want)
    ))
}
