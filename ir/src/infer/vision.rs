//! Inference rules of the vision family.

use super::InferFn;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(_op: &str) -> Option<InferFn> {
    None
}
