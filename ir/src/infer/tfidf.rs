//! Inference rule of TfIdfVectorizer.

use super::common::{tensor, R};
use super::{InferCtx, InferFn};
use crate::dtype::DType;
use crate::shape::{Dim, Shape, ValueType};

/// The rule for a standard-domain op of this family.
pub(super) fn rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "TfIdfVectorizer" => tfidf_vectorizer,
        _ => return None,
    })
}

/// `[C]` → `[max(ngram_indexes) + 1]`, `[B, C]` → `[B, max(ngram_indexes) + 1]`, float.
fn tfidf_vectorizer(ctx: &InferCtx<'_>) -> R<Vec<ValueType>> {
    let x = ctx.tensor(0)?;
    if !matches!(x.dtype, DType::String | DType::I32 | DType::I64) {
        return Err(format!(
            "input must be string, int32 or int64, got {}",
            x.dtype
        ));
    }
    let indexes = ctx
        .call
        .attrs
        .ints_opt("ngram_indexes")
        .map_err(|e| e.to_string())?
        .ok_or("missing ngram_indexes")?;
    let width = match indexes.iter().max() {
        Some(&m) if m >= 0 && indexes.iter().all(|&i| i >= 0) => Dim::Known(m as usize + 1),
        _ => return Err("ngram_indexes must be non-empty and non-negative".into()),
    };
    let shape = match &x.shape {
        None => None,
        Some(s) => Some(Shape(match s.dims() {
            [] | [_] => vec![width],
            [b, _] => vec![b.clone(), width],
            _ => return Err(format!("input must have rank 1 or 2, got {}", s.rank())),
        })),
    };
    Ok(vec![tensor(DType::F32, shape)])
}
