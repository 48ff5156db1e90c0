//! Inference rules: data movement: Reshape, Transpose, Concat, Slice, Split, Squeeze/Unsqueeze, Flatten, Expand, Tile, Pad, Shape, Size, Identity, Dropout, ConstantOfShape, Range, Trilu, OneHot, NonZero, DepthToSpace/SpaceToDepth, ....

use super::InferFn;

/// The rule for a standard-domain op of this family.
pub(super) fn rule(_op: &str) -> Option<InferFn> {
    None
}
