//! Kernels: binary/unary arithmetic, comparison, logic, bitwise, Where, Clip, variadic Min/Max/Sum/Mean.

use crate::registry::Registry;

/// Register this family's kernels.
pub fn register(_r: &mut Registry) {}
