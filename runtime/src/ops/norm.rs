//! Kernels: BatchNormalization, InstanceNormalization, LayerNormalization, RMSNormalization, GroupNormalization, LRN, ....

use crate::registry::Registry;

/// Register this family's kernels.
pub fn register(_r: &mut Registry) {}
