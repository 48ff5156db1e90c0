//! `egret run`: run a model on given or random inputs with the reference interpreter.

use super::{load_model, table};
use anyhow::{anyhow, bail, Context, Result};
use egret_frontends::{npy, onnx};
use egret_ir::{DType, Dim, Graph, OutletId, Tensor, TensorType, Value, ValueType};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `egret run` was asked to do.
pub struct RunArgs {
    /// The model file.
    pub model: PathBuf,
    /// `NAME=FILE` pairs: graph input name and a `.npy` or ONNX `.pb` file.
    pub inputs: Vec<(String, PathBuf)>,
    /// Fill inputs not given with deterministic pseudo-random data.
    pub random: bool,
    /// Seed for `random`.
    pub seed: u64,
    /// Sizes of symbolic dims for random inputs (others default to 1).
    pub dims: Vec<(String, usize)>,
    /// Where to write one `.npy` per output, if anywhere.
    pub output_dir: Option<PathBuf>,
    /// Print JSON instead of tables.
    pub json: bool,
    /// Which executor runs the model.
    pub backend: super::backend::Backend,
}

/// The report of one output.
#[derive(Serialize)]
struct OutputReport {
    name: String,
    dtype: Option<String>,
    shape: Option<Vec<usize>>,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    nan: usize,
    file: Option<PathBuf>,
}

/// The whole report.
#[derive(Serialize)]
struct Report {
    load_ms: f64,
    prepare_ms: f64,
    run_ms: f64,
    outputs: Vec<OutputReport>,
}

/// splitmix64: a tiny, fixed, well-mixed generator, so `--seed` is stable across
/// platforms and versions.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// f32 bits to f16 bits for normal values whose mantissa fits 10 bits (exact).
fn f16_bits(x: f32) -> u16 {
    if x == 0.0 {
        return 0;
    }
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

/// The concrete shape a random input gets: symbolic dims from `--dim`, else 1.
fn concrete_shape(
    name: &str,
    t: &TensorType,
    dims: &BTreeMap<String, usize>,
) -> Result<Vec<usize>> {
    let shape = t.shape.as_ref().ok_or_else(|| {
        anyhow!("input `{name}` has unknown rank; give it with --input {name}=FILE")
    })?;
    Ok(shape
        .dims()
        .iter()
        .map(|d| match d {
            Dim::Known(n) => *n,
            Dim::Sym(s) => dims.get(s).copied().unwrap_or(1),
        })
        .collect())
}

/// Deterministic pseudo-random tensor: floats uniform on the grid k/256 in
/// [-1, 1) (exact in every float type), integers in 0..8 (valid even for 4-bit types), random bools.
fn random_tensor(
    name: &str,
    ty: &ValueType,
    dims: &BTreeMap<String, usize>,
    rng: &mut SplitMix,
) -> Result<Tensor> {
    let t = ty.as_tensor().ok_or_else(|| {
        anyhow!("input `{name}` is a {ty}; only tensors can be random, give it with --input")
    })?;
    let shape = concrete_shape(name, t, dims)?;
    let n = egret_ir::tensor::checked_numel(&shape)?;
    if n > 1 << 26 {
        bail!("input `{name}` would have {n} elements; pick smaller sizes with --dim");
    }
    let raw: Vec<u64> = (0..n).map(|_| rng.next()).collect();
    let floats = || {
        raw.iter()
            .map(|&r| ((r % 512) as f32 - 256.0) / 256.0)
            .collect::<Vec<f32>>()
    };
    let ints = raw.iter().map(|&r| r % 8);
    let t = match t.dtype {
        DType::F32 => Tensor::from_vec(shape, floats()),
        DType::F64 => Tensor::from_vec(shape, floats().into_iter().map(f64::from).collect()),
        DType::F16 => {
            let bits: Vec<u8> = floats()
                .into_iter()
                .flat_map(|x| f16_bits(x).to_le_bytes())
                .collect();
            Tensor::from_bytes(DType::F16, shape, &bits)
        }
        DType::BF16 => {
            let bits: Vec<u8> = floats()
                .into_iter()
                .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
                .collect();
            Tensor::from_bytes(DType::BF16, shape, &bits)
        }
        DType::Bool => Tensor::from_bools(shape, ints.map(|v| v % 2 == 1).collect()),
        d if d.is_int() && d.size() == Some(1) => {
            Tensor::from_bytes(d, shape, &ints.map(|v| v as u8).collect::<Vec<_>>())
        }
        d if d.is_int() => {
            let size = d.size().unwrap_or(8);
            let bytes: Vec<u8> = ints
                .flat_map(|v| v.to_le_bytes().into_iter().take(size))
                .collect();
            Tensor::from_bytes(d, shape, &bytes)
        }
        d => bail!(
            "input `{name}` is {d}; random data is only made for float, integer and bool inputs"
        ),
    };
    Ok(t?)
}

/// Check a loaded tensor against the graph input's declared type.
fn check_tensor(name: &str, t: &Tensor, ty: &ValueType) -> Result<()> {
    let Some(want) = ty.as_tensor() else {
        bail!("input `{name}` is a {ty}; a .npy file holds a tensor (use an ONNX .pb file)");
    };
    if t.dtype() != want.dtype {
        bail!(
            "input `{name}`: the file holds {}, the model expects {}",
            t.dtype(),
            want.dtype
        );
    }
    if let Some(s) = &want.shape {
        let fits = s.rank() == t.rank()
            && s.dims()
                .iter()
                .zip(t.shape())
                .all(|(d, &n)| d.known().is_none_or(|k| k == n));
        if !fits {
            bail!(
                "input `{name}`: the file has shape {:?}, the model expects {ty}",
                t.shape()
            );
        }
    }
    Ok(())
}

/// Load one input file: `.npy` as a tensor, `.pb` as an ONNX TensorProto /
/// SequenceProto / OptionalProto of the input's type.
fn load_input(name: &str, path: &Path, ty: &ValueType) -> Result<Value> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "npy" => {
            let t = npy::read(path)?;
            check_tensor(name, &t, ty)?;
            Ok(Value::Tensor(t))
        }
        "pb" => Ok(onnx::read_value_pb(path, ty)?),
        _ => bail!("{}: input files must be .npy or ONNX .pb", path.display()),
    }
}

/// Gather the graph's inputs in order: `files` holds `NAME=FILE` pairs (`.npy`
/// or ONNX `.pb`); with `random: Some(seed)`, inputs not given get
/// deterministic pseudo-random data sized by `dims` (symbolic dims not named
/// there are 1), and without it a missing input is an error. Shared by
/// `egret run` and `egret bench`.
pub fn gather_inputs(
    g: &Graph,
    files: &[(String, PathBuf)],
    random: Option<u64>,
    dims: &[(String, usize)],
) -> Result<Vec<Value>> {
    let names: Vec<&str> = g.inputs.iter().map(|&o| g.value_name(o)).collect();
    let mut given: BTreeMap<&str, &Path> = BTreeMap::new();
    for (n, p) in files {
        if !names.contains(&n.as_str()) {
            bail!(
                "--input {n}: the model has no input `{n}` (inputs: {})",
                names.join(", ")
            );
        }
        if given.insert(n, p).is_some() {
            bail!("--input {n} is given twice");
        }
    }
    let dims: BTreeMap<String, usize> = dims.iter().cloned().collect();
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !given.contains_key(n))
        .collect();
    if !missing.is_empty() && random.is_none() {
        bail!(
            "no data for input(s) {}; give --input NAME=FILE or --random",
            missing.join(", ")
        );
    }
    let mut rng = SplitMix(random.unwrap_or_default());
    g.inputs
        .iter()
        .map(|&o: &OutletId| {
            let (name, ty) = (g.value_name(o), g.value_type(o));
            match given.get(name) {
                Some(p) => load_input(name, p, ty)
                    .with_context(|| format!("reading input `{name}` from {}", p.display())),
                None => Ok(Value::Tensor(random_tensor(name, ty, &dims, &mut rng)?)),
            }
        })
        .collect()
}

/// A file name for an output: `/`, `\` and `:` become `_`; empty or clashing
/// names get the output index appended.
fn file_stem(name: &str, index: usize, used: &mut HashSet<String>) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | ':') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." || used.contains(&s) {
        s = format!("{s}_{index}");
    }
    used.insert(s.clone());
    s
}

fn report(name: &str, v: &Value) -> OutputReport {
    let mut r = OutputReport {
        name: name.into(),
        dtype: None,
        shape: None,
        min: None,
        max: None,
        mean: None,
        nan: 0,
        file: None,
    };
    if let Value::Tensor(t) = v {
        r.dtype = Some(t.dtype().to_string());
        r.shape = Some(t.shape().to_vec());
        if let Ok(xs) = t.to_f64_vec() {
            r.nan = xs.iter().filter(|x| x.is_nan()).count();
            let finite: Vec<f64> = xs.into_iter().filter(|x| !x.is_nan()).collect();
            if !finite.is_empty() {
                r.min = finite.iter().copied().reduce(f64::min);
                r.max = finite.iter().copied().reduce(f64::max);
                r.mean = Some(finite.iter().sum::<f64>() / finite.len() as f64);
            }
        }
    }
    r
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.6}"))
}

/// Run `egret run`.
pub fn main(args: &RunArgs) -> Result<()> {
    let t0 = Instant::now();
    let model = load_model(&args.model)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let exec = super::backend::executor(&model, args.backend)?;
    let prepare_ms = t1.elapsed().as_secs_f64() * 1e3;
    let g = &model.graph;
    let inputs = gather_inputs(
        g,
        &args.inputs,
        args.random.then_some(args.seed),
        &args.dims,
    )?;
    let t2 = Instant::now();
    let outputs = exec.execute(inputs).context("running the model")?;
    let run_ms = t2.elapsed().as_secs_f64() * 1e3;

    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating output directory {}", dir.display()))?;
    }
    let mut used = HashSet::new();
    let mut reports = Vec::new();
    for (i, (&o, v)) in g.outputs.iter().zip(&outputs).enumerate() {
        let name = g.value_name(o);
        let mut r = report(name, v);
        if let Some(dir) = &args.output_dir {
            let path = dir.join(format!("{}.npy", file_stem(name, i, &mut used)));
            let t = v.as_tensor().map_err(|_| {
                anyhow!("output `{name}` is not a tensor and cannot be written as .npy")
            })?;
            npy::write(&path, t).with_context(|| format!("writing output `{name}`"))?;
            r.file = Some(path);
        }
        reports.push(r);
    }
    let rep = Report {
        load_ms,
        prepare_ms,
        run_ms,
        outputs: reports,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rep
        .outputs
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.dtype.clone().unwrap_or_else(|| "-".into()),
                r.shape
                    .as_ref()
                    .map_or_else(|| "-".into(), |s| format!("{s:?}")),
                num(r.min),
                num(r.max),
                num(r.mean),
                r.nan.to_string(),
                r.file
                    .as_ref()
                    .map_or_else(String::new, |f| f.display().to_string()),
            ]
        })
        .collect();
    println!("outputs ({})", rows.len());
    print!(
        "{}",
        table(
            &["name", "dtype", "shape", "min", "max", "mean", "nan", "file"],
            &rows
        )
    );
    println!("\nload {load_ms:.1} ms, prepare {prepare_ms:.1} ms, run {run_ms:.1} ms");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::Shape;

    #[test]
    fn file_stems_are_safe_and_unique() {
        let mut used = HashSet::new();
        assert_eq!(file_stem("a/b\\c:0", 0, &mut used), "a_b_c_0");
        assert_eq!(file_stem("a/b\\c:0", 1, &mut used), "a_b_c_0_1");
        assert_eq!(file_stem("", 2, &mut used), "_2");
        assert_eq!(file_stem("..", 3, &mut used), ".._3");
    }

    #[test]
    fn random_inputs_are_deterministic_and_typed() {
        let dims: BTreeMap<String, usize> = [("batch".to_string(), 3)].into();
        let ty = ValueType::tensor(
            DType::F16,
            Some(Shape(vec![
                Dim::Sym("batch".into()),
                Dim::Known(2),
                Dim::Sym("x".into()),
            ])),
        );
        let a = random_tensor("x", &ty, &dims, &mut SplitMix(7)).unwrap();
        let b = random_tensor("x", &ty, &dims, &mut SplitMix(7)).unwrap();
        assert_eq!(a.shape(), &[3, 2, 1]);
        assert_eq!(a.bytes(), b.bytes());
        let f32ty = ValueType::tensor(DType::F32, Some(Shape::known(&[6])));
        let c = random_tensor("x", &f32ty, &dims, &mut SplitMix(7)).unwrap();
        // f16 and f32 draws of the same seed agree exactly (the grid is exact in f16).
        assert_eq!(a.to_f64_vec().unwrap(), c.to_f64_vec().unwrap());
        assert!(c
            .to_f64_vec()
            .unwrap()
            .iter()
            .all(|v| (-1.0..1.0).contains(v)));
        let bf = random_tensor(
            "x",
            &ValueType::tensor(DType::BF16, Some(Shape::known(&[6]))),
            &dims,
            &mut SplitMix(7),
        )
        .unwrap();
        assert_eq!(bf.to_f64_vec().unwrap(), c.to_f64_vec().unwrap());
        let i = random_tensor(
            "i",
            &ValueType::tensor(DType::I64, Some(Shape::known(&[50]))),
            &dims,
            &mut SplitMix(1),
        )
        .unwrap();
        assert!(i
            .as_slice::<i64>()
            .unwrap()
            .iter()
            .all(|v| (0..8).contains(v)));
        let u = random_tensor(
            "u",
            &ValueType::tensor(DType::U8, Some(Shape::known(&[5]))),
            &dims,
            &mut SplitMix(1),
        )
        .unwrap();
        assert_eq!(u.as_slice::<u8>().unwrap().len(), 5);
        assert!(random_tensor(
            "s",
            &ValueType::tensor(DType::String, Some(Shape::known(&[1]))),
            &dims,
            &mut SplitMix(1)
        )
        .is_err());
        assert!(random_tensor(
            "r",
            &ValueType::tensor(DType::F32, None),
            &dims,
            &mut SplitMix(1)
        )
        .is_err());
        let huge = ValueType::tensor(DType::F32, Some(Shape::known(&[1 << 20, 1 << 20])));
        assert!(random_tensor("h", &huge, &dims, &mut SplitMix(1)).is_err());
    }

    #[test]
    fn declared_types_are_checked() {
        let t = Tensor::from_vec(vec![2, 3], vec![0f32; 6]).unwrap();
        let ty = |d, s: Vec<Dim>| ValueType::tensor(d, Some(Shape(s)));
        assert!(check_tensor(
            "x",
            &t,
            &ty(DType::F32, vec![Dim::Sym("n".into()), Dim::Known(3)])
        )
        .is_ok());
        let e = check_tensor("x", &t, &ty(DType::F64, vec![]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds f32, the model expects f64"), "{e}");
        assert!(
            check_tensor("x", &t, &ty(DType::F32, vec![Dim::Known(2), Dim::Known(4)])).is_err()
        );
        assert!(check_tensor("x", &t, &ty(DType::F32, vec![Dim::Known(6)])).is_err());
    }
}
