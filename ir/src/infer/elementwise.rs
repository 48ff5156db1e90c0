//! Inference rules: binary/unary arithmetic, comparison, logic, bitwise, Where, Clip, variadic Min/Max/Sum/Mean.

use super::InferFn;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(_op: &str) -> Option<InferFn> {
    None
}
