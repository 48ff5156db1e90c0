//! Differential checking: run two graphs on the same inputs through the
//! reference interpreter and report the largest difference.
//!
//! Used by `egret optimize --check`, by the pass manager's optional checking
//! and by the rule-soundness harness ([`crate::soundness`]).

use egret_ir::{DType, Dim, Graph, Tensor, Value};
use egret_runtime::Interpreter;
use std::collections::HashMap;

/// A failed check or an input that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// An input cannot be generated at random.
    #[error("input `{0}`: {1}")]
    Input(String, String),
    /// The interpreter failed.
    #[error("{which} graph: {msg}")]
    Run {
        /// `before` or `after`.
        which: &'static str,
        /// The interpreter's error.
        msg: String,
    },
    /// The graphs disagree structurally (output count, shape, dtype).
    #[error("{0}")]
    Mismatch(String),
}

/// splitmix64, a small deterministic generator.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A random tensor of `dtype` and `shape`: floats uniform in [-1, 1), integers
/// in 0..4, random bools. Other dtypes are made by casting f32 or i64 data with
/// the interpreter's own cast kernel.
pub fn random_tensor(dtype: DType, shape: &[usize], rng: &mut Rng) -> Result<Tensor, String> {
    let n = egret_ir::tensor::checked_numel(shape).map_err(|e| e.to_string())?;
    if n > 1 << 24 {
        return Err(format!("{n} elements is too many for a random input"));
    }
    let shape = shape.to_vec();
    let t = match dtype {
        DType::F32 => Tensor::from_vec(shape, (0..n).map(|_| rng.uniform()).collect()),
        DType::Bool => Tensor::from_bools(shape, (0..n).map(|_| rng.next_u64() & 1 == 1).collect()),
        d if d.is_int() => {
            let t = Tensor::from_vec(shape, (0..n).map(|_| (rng.next_u64() % 4) as i64).collect())
                .map_err(|e| e.to_string())?;
            return cast(t, d);
        }
        d if d.is_float() => {
            let t = Tensor::from_vec(shape, (0..n).map(|_| rng.uniform()).collect())
                .map_err(|e| e.to_string())?;
            return cast(t, d);
        }
        d => return Err(format!("cannot make random {d} data")),
    };
    t.map_err(|e| e.to_string())
}

fn cast(t: Tensor, to: DType) -> Result<Tensor, String> {
    egret_runtime::kernels::convert::cast_rounded(&t, to, true, Default::default())
        .map_err(|e| e.to_string())
}

/// Random values for every input of `g`. Symbolic dims take their size from
/// `dims` (default 2); the same symbol gets the same size everywhere.
pub fn random_inputs(
    g: &Graph,
    dims: &HashMap<String, usize>,
    seed: u64,
) -> Result<Vec<Value>, CheckError> {
    let mut rng = Rng(seed);
    g.inputs
        .iter()
        .map(|&o| {
            let name = g.value_name(o).to_string();
            let err = |m: String| CheckError::Input(name.clone(), m);
            let t = g
                .value_type(o)
                .as_tensor()
                .ok_or_else(|| err("not a tensor".into()))?;
            let shape: Vec<usize> = t
                .shape
                .as_ref()
                .ok_or_else(|| err("unknown rank".into()))?
                .dims()
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    Dim::Sym(s) => dims.get(s).copied().unwrap_or(2),
                })
                .collect();
            random_tensor(t.dtype, &shape, &mut rng)
                .map(Value::Tensor)
                .map_err(err)
        })
        .collect()
}

/// The largest differences between two runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct MaxError {
    /// max |a - b|.
    pub abs: f64,
    /// max |a - b| / max(|b|, 1): relative for large values, absolute near zero.
    pub rel: f64,
}

/// Compare output lists (`got` against `want`). NaN matches NaN; infinities must match exactly.
pub fn max_error(got: &[Value], want: &[Value]) -> Result<MaxError, CheckError> {
    if got.len() != want.len() {
        return Err(CheckError::Mismatch(format!(
            "{} outputs vs {}",
            got.len(),
            want.len()
        )));
    }
    let mut e = MaxError::default();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (Ok(g), Ok(w)) = (g.as_tensor(), w.as_tensor()) else {
            continue;
        };
        if g.shape() != w.shape() || g.dtype() != w.dtype() {
            return Err(CheckError::Mismatch(format!(
                "output {i}: {}{:?} vs {}{:?}",
                g.dtype(),
                g.shape(),
                w.dtype(),
                w.shape()
            )));
        }
        let (Ok(a), Ok(b)) = (g.to_f64_vec(), w.to_f64_vec()) else {
            if g.as_strings().ok() != w.as_strings().ok() {
                return Err(CheckError::Mismatch(format!("output {i}: values differ")));
            }
            continue;
        };
        for (x, y) in a.iter().zip(&b) {
            if x.is_nan() && y.is_nan() || x == y {
                continue;
            }
            let d = (x - y).abs();
            let d = if d.is_nan() { f64::INFINITY } else { d };
            e.abs = e.abs.max(d);
            e.rel = e.rel.max(d / y.abs().max(1.0));
        }
    }
    Ok(e)
}

/// Run `before` and `after` on `inputs` and compare.
pub fn compare(before: &Graph, after: &Graph, inputs: &[Value]) -> Result<MaxError, CheckError> {
    let run = |g: &Graph, which: &'static str| {
        Interpreter::new(g)
            .and_then(|i| i.run(inputs.to_vec()))
            .map_err(|e| CheckError::Run {
                which,
                msg: e.to_string(),
            })
    };
    max_error(&run(after, "after")?, &run(before, "before")?)
}
