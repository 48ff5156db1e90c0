//! Kernel: the `ai.onnx.ml` TreeEnsemble.
//!
//! The flat `nodes_*` / `leaf_*` attribute arrays are validated once into a
//! [`Forest`]; each input row then walks every tree from its root to a leaf
//! (with a step bound, so a cyclic encoding is an error rather than a hang),
//! and leaf weights are aggregated per target (`SUM`, `AVERAGE`, `MIN`, `MAX`)
//! and post-transformed.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::workprec::store;
use crate::kernels::{checked_len, input, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{Attrs, DType, Value};

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add_domain("ai.onnx.ml", "TreeEnsemble", tree_ensemble);
}

/// A node's comparison of its feature `x` against its split.
#[derive(Clone, Debug)]
enum Test {
    Leq(f64),
    Lt(f64),
    Gte(f64),
    Gt(f64),
    Eq(f64),
    Neq(f64),
    Member(Vec<f64>),
}

impl Test {
    fn holds(&self, x: f64) -> bool {
        match self {
            Test::Leq(s) => x <= *s,
            Test::Lt(s) => x < *s,
            Test::Gte(s) => x >= *s,
            Test::Gt(s) => x > *s,
            Test::Eq(s) => x == *s,
            Test::Neq(s) => x != *s,
            Test::Member(set) => set.contains(&x),
        }
    }
}

/// Where a branch leads.
#[derive(Clone, Copy, Debug)]
enum Next {
    Node(usize),
    Leaf(usize),
}

/// One interior node.
#[derive(Clone, Debug)]
struct Node {
    feature: usize,
    test: Test,
    nan_true: bool,
    on_true: Next,
    on_false: Next,
}

/// The decoded ensemble.
struct Forest {
    nodes: Vec<Node>,
    /// `(target, weight)` per leaf.
    leaves: Vec<(usize, f64)>,
    roots: Vec<Next>,
    targets: usize,
}

/// An ints attribute (empty if absent).
fn ints(a: &Attrs, name: &str) -> Result<Vec<i64>> {
    Ok(a.ints_opt(name)?.map(<[i64]>::to_vec).unwrap_or_default())
}

/// A tensor attribute's values as `f64` (empty if absent).
fn floats(a: &Attrs, name: &str) -> Result<Vec<f64>> {
    Ok(match a.tensor_opt(name)? {
        Some(t) => t.to_f64_vec()?,
        None => a
            .floats_opt(name)?
            .map(|v| v.iter().map(|&x| x as f64).collect())
            .unwrap_or_default(),
    })
}

/// An index attribute value checked against `len`.
fn index(v: i64, len: usize, what: &str) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| RuntimeError::msg(format!("{what} {v} out of range [0, {len})")))
}

impl Forest {
    fn new(a: &Attrs) -> Result<Forest> {
        let targets = usize::try_from(a.int("n_targets")?)
            .map_err(|_| RuntimeError::msg("negative n_targets"))?;
        let weights = floats(a, "leaf_weights")?;
        let leaf_t = ints(a, "leaf_targetids")?;
        if weights.len() != leaf_t.len() {
            bail!(
                "{} leaf weights for {} leaf targets",
                weights.len(),
                leaf_t.len()
            );
        }
        let leaves = leaf_t
            .iter()
            .zip(&weights)
            .map(|(&t, &w)| Ok((index(t, targets, "leaf target")?, w)))
            .collect::<Result<Vec<_>>>()?;
        let modes = match a.tensor_opt("nodes_modes")? {
            Some(t) => t.to_i64_vec()?,
            None => ints(a, "nodes_modes")?,
        };
        let n = modes.len();
        let splits = floats(a, "nodes_splits")?;
        let features = ints(a, "nodes_featureids")?;
        let (tn, fnodes) = (
            ints(a, "nodes_truenodeids")?,
            ints(a, "nodes_falsenodeids")?,
        );
        let (tl, fl) = (ints(a, "nodes_trueleafs")?, ints(a, "nodes_falseleafs")?);
        let nan_true = ints(a, "nodes_missing_value_tracks_true")?;
        if [
            splits.len(),
            features.len(),
            tn.len(),
            fnodes.len(),
            tl.len(),
            fl.len(),
        ]
        .iter()
        .any(|&l| l != n)
            || !(nan_true.is_empty() || nan_true.len() == n)
        {
            bail!("the nodes_* attributes must all have {n} entries");
        }
        // Member sets, NaN-delimited, in node order.
        let members = floats(a, "membership_values")?;
        let mut sets = members.split(|v| v.is_nan());
        let next = |is_leaf: i64, id: i64| -> Result<Next> {
            Ok(if is_leaf != 0 {
                Next::Leaf(index(id, leaves.len(), "leaf id")?)
            } else {
                Next::Node(index(id, n, "node id")?)
            })
        };
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let s = splits[i];
            let test = match modes[i] {
                0 => Test::Leq(s),
                1 => Test::Lt(s),
                2 => Test::Gte(s),
                3 => Test::Gt(s),
                4 => Test::Eq(s),
                5 => Test::Neq(s),
                6 => match sets.next() {
                    Some(set) => Test::Member(set.to_vec()),
                    None => bail!("node {i}: no membership_values set left"),
                },
                m => bail!("node {i}: unknown mode {m}"),
            };
            nodes.push(Node {
                feature: usize::try_from(features[i])
                    .map_err(|_| RuntimeError::msg(format!("node {i}: negative feature id")))?,
                test,
                nan_true: nan_true.get(i).is_some_and(|&v| v != 0),
                on_true: next(tl[i], tn[i])?,
                on_false: next(fl[i], fnodes[i])?,
            });
        }
        let roots = ints(a, "tree_roots")?
            .iter()
            .map(|&r| {
                let r = index(r, n, "tree root")?;
                let nd = &nodes[r];
                // A single-leaf tree: both branches reach the same leaf.
                Ok(match (nd.on_true, nd.on_false) {
                    (Next::Leaf(a), Next::Leaf(b)) if a == b => Next::Leaf(a),
                    _ => Next::Node(r),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Forest {
            nodes,
            leaves,
            roots,
            targets,
        })
    }

    /// The leaf one tree sends feature row `x` to.
    fn leaf(&self, root: Next, x: &[f64]) -> Result<(usize, f64)> {
        let mut at = root;
        for _ in 0..=self.nodes.len() {
            match at {
                Next::Leaf(l) => return Ok(self.leaves[l]),
                Next::Node(i) => {
                    let nd = &self.nodes[i];
                    let Some(&v) = x.get(nd.feature) else {
                        bail!(
                            "feature {} out of range for {} features",
                            nd.feature,
                            x.len()
                        );
                    };
                    let go_true = nd.test.holds(v) || (nd.nan_true && v.is_nan());
                    at = if go_true { nd.on_true } else { nd.on_false };
                }
            }
        }
        bail!("tree does not reach a leaf (cyclic node references)")
    }
}

/// `post_transform` applied to one row of scores.
fn post_transform(row: &mut [f64], kind: i64) -> Result<()> {
    match kind {
        0 => {}
        1 | 3 => {
            // SOFTMAX, or SOFTMAX_ZERO (zeros stay zero and are left out).
            let keep = |v: f64| kind == 1 || v != 0.0;
            let max = row
                .iter()
                .copied()
                .filter(|&v| keep(v))
                .fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row
                .iter()
                .filter(|&&v| keep(v))
                .map(|&v| (v - max).exp())
                .sum();
            for v in row.iter_mut() {
                *v = if keep(*v) {
                    (*v - max).exp() / sum
                } else {
                    0.0
                };
            }
        }
        2 => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        k => bail!("post_transform {k} is not supported"),
    }
    Ok(())
}

/// The largest finite value of a float dtype (MIN/MAX aggregation's start).
fn dtype_max(dt: DType) -> f64 {
    match dt {
        DType::F64 => f64::MAX,
        DType::F16 => half::f16::MAX.to_f64(),
        DType::BF16 => half::bf16::MAX.to_f64(),
        _ => f32::MAX as f64,
    }
}

fn tree_ensemble(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let x = input(inputs, 0)?;
    let &[n, f] = x.shape() else {
        bail!("input must be [N, F], got {:?}", x.shape());
    };
    if !x.dtype().is_float() {
        bail!("unsupported dtype {}", x.dtype());
    }
    let a = ctx.attrs();
    let forest = Forest::new(a)?;
    let agg = a.int_or("aggregate_function", 1)?;
    let post = a.int_or("post_transform", 0)?;
    let t = forest.targets;
    let start = match agg {
        0 | 1 => 0.0,
        2 => dtype_max(x.dtype()),
        3 => -dtype_max(x.dtype()),
        k => bail!("aggregate_function {k} is not supported"),
    };
    let mut out = vec![start; checked_len(&[n, t])?];
    let xv = x.to_f64_vec()?;
    let trees = forest.roots.len().max(1) as f64;
    for (row, scores) in xv
        .chunks_exact(f.max(1))
        .zip(out.chunks_exact_mut(t.max(1)))
    {
        for &root in &forest.roots {
            let (target, w) = forest.leaf(root, row)?;
            let s = &mut scores[target];
            *s = match agg {
                0 => *s + w / trees,
                1 => *s + w,
                2 => s.min(w),
                _ => s.max(w),
            };
        }
        post_transform(scores, post)?;
    }
    one(store::<f64>(x.dtype(), vec![n, t], out)?)
}

#[cfg(test)]
mod tests {
    use crate::Interpreter;
    use egret_ir::{Attr, Graph, OpCall, Tensor};

    #[test]
    fn single_split_sums_two_trees() {
        // Two identical stumps: x0 <= 1 -> leaf 0 (target 0, 1.5), else leaf 1 (target 1, 4).
        let mut call = OpCall::new("TreeEnsemble")
            .with("n_targets", Attr::Int(2))
            .with("tree_roots", Attr::Ints(vec![0, 1]))
            .with("nodes_featureids", Attr::Ints(vec![0, 0]))
            .with("nodes_truenodeids", Attr::Ints(vec![0, 0]))
            .with("nodes_falsenodeids", Attr::Ints(vec![1, 1]))
            .with("nodes_trueleafs", Attr::Ints(vec![1, 1]))
            .with("nodes_falseleafs", Attr::Ints(vec![1, 1]))
            .with("leaf_targetids", Attr::Ints(vec![0, 1]))
            .with(
                "nodes_modes",
                Attr::Tensor(Tensor::from_vec(vec![2], vec![0u8, 0]).unwrap()),
            )
            .with(
                "nodes_splits",
                Attr::Tensor(Tensor::from_vec(vec![2], vec![1.0f32, 1.0]).unwrap()),
            )
            .with(
                "leaf_weights",
                Attr::Tensor(Tensor::from_vec(vec![2], vec![1.5f32, 4.0]).unwrap()),
            );
        call.domain = "ai.onnx.ml".into();
        let mut g = Graph::new("t");
        let x = g.add_const(
            "x",
            Tensor::from_vec(vec![2, 1], vec![0.5f32, 2.0]).unwrap(),
        );
        g.outputs = g.call("n", call, &[Some(x)], 1).unwrap();
        let out = Interpreter::new(&g).unwrap().run(vec![]).unwrap();
        let y = out[0].as_tensor().unwrap().to_f64_vec().unwrap();
        assert_eq!(y, vec![3.0, 0.0, 0.0, 8.0]);
    }
}
