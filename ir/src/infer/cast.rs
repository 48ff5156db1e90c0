//! Inference rules: Cast and CastLike, including float8/int4 and string conversions.

use super::InferFn;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(_op: &str) -> Option<InferFn> {
    None
}
