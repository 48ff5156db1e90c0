//! Kernel: TfIdfVectorizer.
//!
//! The pool of n-grams (`pool_int64s` or `pool_strings`, grouped by length
//! through `ngram_counts`) becomes a hash map from n-gram to its output column.
//! Each row of the input is scanned for every n-gram of a pooled length in
//! `[min_gram_length, max_gram_length]` whose items lie `skip + 1` apart, for
//! every skip up to `max_skip_count`; unigrams are counted once (skip 0 only),
//! as in the ONNX reference. Counts are then weighted by `mode`.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::{checked_len, input, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{Attrs, DType, Tensor, Value};
use std::collections::HashMap;
use std::hash::Hash;

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("TfIdfVectorizer", tfidf_vectorizer);
}

/// The n-gram settings of one TfIdfVectorizer node.
struct Grams {
    min: usize,
    max: usize,
    max_skip: usize,
    counts: Vec<usize>,
    indexes: Vec<usize>,
    width: usize,
}

impl Grams {
    fn new(a: &Attrs, pool_len: usize) -> Result<Grams> {
        let size = |name: &str, default: i64| -> Result<usize> {
            let v = a.int_or(name, default)?;
            usize::try_from(v)
                .map_err(|_| RuntimeError::msg(format!("{name} must be >= 0, got {v}")))
        };
        let list = |name: &str| -> Result<Vec<usize>> {
            a.ints_opt(name)?
                .unwrap_or_default()
                .iter()
                .map(|&v| usize::try_from(v))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| RuntimeError::msg(format!("{name} must be non-negative")))
        };
        let counts = list("ngram_counts")?;
        if counts.windows(2).any(|w| w[0] > w[1]) || counts.iter().any(|&c| c > pool_len) {
            bail!("ngram_counts {counts:?} are not ascending offsets into a pool of {pool_len}");
        }
        let indexes = list("ngram_indexes")?;
        let Some(&top) = indexes.iter().max() else {
            bail!("ngram_indexes is empty");
        };
        Ok(Grams {
            min: size("min_gram_length", 1)?,
            max: size("max_gram_length", 1)?,
            max_skip: size("max_skip_count", 0)?,
            counts,
            indexes,
            width: top + 1,
        })
    }

    /// Map each pooled n-gram of a length in `[min, max]` to its output column.
    fn table<'p, K: Hash + Eq>(&self, pool: &'p [K]) -> Result<HashMap<Vec<&'p K>, usize>> {
        let mut map = HashMap::new();
        let mut id = 0usize;
        for (i, &start) in self.counts.iter().enumerate() {
            let n = i + 1;
            let end = self.counts.get(i + 1).copied().unwrap_or(pool.len());
            for gram in pool[start..end].chunks_exact(n) {
                if (self.min..=self.max).contains(&n) {
                    let Some(&col) = self.indexes.get(id) else {
                        bail!("n-gram {id} has no entry in ngram_indexes");
                    };
                    map.insert(gram.iter().collect(), col);
                }
                id += 1;
            }
        }
        Ok(map)
    }

    /// Add the n-gram counts of one row into `freq` (one row of the output).
    fn count_row<K: Hash + Eq>(
        &self,
        row: &[K],
        table: &HashMap<Vec<&K>, usize>,
        freq: &mut [f32],
    ) {
        let mut key: Vec<&K> = Vec::with_capacity(self.max);
        for skip in 0..=self.max_skip {
            let step = skip + 1;
            let lo = if skip == 0 {
                self.min.max(1)
            } else {
                self.min.max(2)
            };
            for start in 0..row.len() {
                for n in lo..=self.max {
                    if start + (n - 1) * step >= row.len() {
                        break;
                    }
                    key.clear();
                    key.extend((0..n).map(|j| &row[start + j * step]));
                    if let Some(&col) = table.get(&key) {
                        freq[col] += 1.0;
                    }
                }
            }
        }
    }
}

/// Count the n-grams of every row (`rows × row_len` items).
fn counts<K: Hash + Eq>(g: &Grams, items: &[K], pool: &[K], rows: usize) -> Result<Vec<f32>> {
    let table = g.table(pool)?;
    let mut freq = vec![0.0f32; checked_len(&[rows, g.width])?];
    let row_len = items.len() / rows.max(1);
    for (r, out) in freq.chunks_exact_mut(g.width).enumerate() {
        g.count_row(&items[r * row_len..(r + 1) * row_len], &table, out);
    }
    Ok(freq)
}

fn tfidf_vectorizer(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let a = ctx.attrs();
    let (rows, out_shape_batch) = match x.shape() {
        [] | [_] => (1, None),
        &[b, _] => (b, Some(b)),
        s => bail!("input must have rank 1 or 2, got {s:?}"),
    };
    let (mut f, g) = if x.dtype() == DType::String {
        let pool = a.strings_opt("pool_strings")?.unwrap_or_default();
        let g = Grams::new(a, pool.len())?;
        (counts(&g, x.as_strings()?, pool, rows)?, g)
    } else {
        let pool = a.ints_opt("pool_int64s")?.unwrap_or_default();
        let g = Grams::new(a, pool.len())?;
        (counts(&g, &x.to_i64_vec()?, pool, rows)?, g)
    };
    let weights = a.floats_opt("weights")?.unwrap_or_default();
    if !weights.is_empty() && weights.len() < g.width {
        bail!("{} weights for {} outputs", weights.len(), g.width);
    }
    let w = |col: usize| weights.get(col).copied().unwrap_or(1.0);
    match a.string_or("mode", "TF")? {
        "TF" => {}
        "IDF" => f
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if *v > 0.0 { w(i % g.width) } else { 0.0 }),
        "TFIDF" => f
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v *= w(i % g.width)),
        m => bail!("unknown mode {m:?}"),
    }
    let shape = match out_shape_batch {
        Some(b) => vec![b, g.width],
        None => vec![g.width],
    };
    one(Tensor::from_vec(shape, f)?)
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::run1;
    use egret_ir::{Attr, Attrs, Tensor};

    #[test]
    fn counts_unigrams_and_skip_bigrams() {
        // Pool: unigrams [2, 3], bigrams [(2, 3)]; input [2, 9, 3, 2, 3].
        let mut a = Attrs::default();
        a.set("min_gram_length", Attr::Int(1));
        a.set("max_gram_length", Attr::Int(2));
        a.set("max_skip_count", Attr::Int(1));
        a.set("mode", Attr::String("TF".into()));
        a.set("ngram_counts", Attr::Ints(vec![0, 2]));
        a.set("ngram_indexes", Attr::Ints(vec![0, 1, 2]));
        a.set("pool_int64s", Attr::Ints(vec![2, 3, 2, 3]));
        let x = Tensor::from_vec(vec![5], vec![2i64, 9, 3, 2, 3]).unwrap();
        let out = run1("TfIdfVectorizer", a, vec![x], 1);
        // "2" x2, "3" x2, (2,3): adjacent once (positions 3-4) + skip-1 once (0-2).
        assert_eq!(out[0], vec![2.0, 2.0, 2.0]);
    }
}
