//! Kernels: string ops (StringNormalizer, StringConcat, StringSplit,
//! RegexFullMatch) and the `ai.onnx.ml` helpers LabelEncoder, Binarizer and
//! ArrayFeatureExtractor.

use crate::bail;
use crate::error::{Result, RuntimeError};
use crate::kernels::convert::{collect_as, Wide};
use crate::kernels::{broadcast_shapes, checked_len, input, one};
use crate::registry::{KernelCtx, Registry};
use egret_ir::{Attrs, DType, Tensor, Value};
use std::collections::HashMap;

/// The `ai.onnx.ml` domain name.
const ML: &str = "ai.onnx.ml";

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("StringNormalizer", string_normalizer);
    r.add("StringConcat", string_concat);
    r.add("StringSplit", string_split);
    r.add("RegexFullMatch", regex_full_match);
    r.add_domain(ML, "LabelEncoder", label_encoder);
    r.add_domain(ML, "Binarizer", binarizer);
    r.add_domain(ML, "ArrayFeatureExtractor", array_feature_extractor);
}

/// For each element of a tensor of shape `out`, the flat index of the element of
/// a tensor of shape `src` that numpy broadcasting reads.
fn broadcast_indices(src: &[usize], out: &[usize]) -> Result<Vec<usize>> {
    let n = checked_len(out)?;
    let off = out.len() - src.len();
    // Stride of each output axis in the source (0 where the source broadcasts).
    let mut strides = vec![0usize; out.len()];
    let mut s = 1;
    for i in (0..src.len()).rev() {
        strides[i + off] = if src[i] == 1 { 0 } else { s };
        s *= src[i];
    }
    let mut idx = Vec::with_capacity(n);
    let mut counter = vec![0usize; out.len()];
    for _ in 0..n {
        idx.push(counter.iter().zip(&strides).map(|(c, s)| c * s).sum());
        for ax in (0..out.len()).rev() {
            counter[ax] += 1;
            if counter[ax] < out[ax] {
                break;
            }
            counter[ax] = 0;
        }
    }
    Ok(idx)
}

fn string_concat(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    let (sa, sb) = (a.as_strings()?, b.as_strings()?);
    let (ia, ib) = (
        broadcast_indices(a.shape(), &shape)?,
        broadcast_indices(b.shape(), &shape)?,
    );
    let out = ia
        .iter()
        .zip(&ib)
        .map(|(&i, &j)| format!("{}{}", sa[i], sb[j]))
        .collect();
    one(Tensor::from_strings(shape, out)?)
}

/// Python's `str.split(sep, maxsplit)`; `sep = None` splits on whitespace runs.
fn py_split<'s>(s: &'s str, sep: Option<&str>, maxsplit: Option<usize>) -> Vec<&'s str> {
    match sep {
        Some(d) => match maxsplit {
            Some(m) => s.splitn(m + 1, d).collect(),
            None => s.split(d).collect(),
        },
        None => {
            let mut out = Vec::new();
            let mut rest = s.trim_start();
            while !rest.is_empty() {
                if maxsplit == Some(out.len()) {
                    out.push(rest);
                    break;
                }
                match rest.find(char::is_whitespace) {
                    Some(p) => {
                        out.push(&rest[..p]);
                        rest = rest[p..].trim_start();
                    }
                    None => {
                        out.push(rest);
                        break;
                    }
                }
            }
            out
        }
    }
}

/// Split every string; pad to the longest split with empty strings.
fn split_tensor(
    x: &Tensor,
    sep: Option<&str>,
    maxsplit: Option<usize>,
) -> Result<(Tensor, Tensor)> {
    let parts: Vec<Vec<&str>> = x
        .as_strings()?
        .iter()
        .map(|s| py_split(s, sep, maxsplit))
        .collect();
    let width = parts.iter().map(Vec::len).max().unwrap_or(0);
    let mut shape = x.shape().to_vec();
    shape.push(width);
    checked_len(&shape)?;
    let mut flat = Vec::with_capacity(parts.len() * width);
    for p in &parts {
        flat.extend(p.iter().map(|s| s.to_string()));
        flat.extend(std::iter::repeat_n(String::new(), width - p.len()));
    }
    let counts: Vec<i64> = parts.iter().map(|p| p.len() as i64).collect();
    Ok((
        Tensor::from_strings(shape, flat)?,
        Tensor::from_vec(x.shape().to_vec(), counts)?,
    ))
}

fn string_split(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let a = ctx.attrs();
    let sep = a.string_opt("delimiter")?.filter(|d| !d.is_empty());
    let maxsplit = a.int_opt("maxsplit")?.map(|m| m.max(0) as usize);
    let (y, z) = split_tensor(input(inputs, 0)?, sep, maxsplit)?;
    Ok(vec![Value::Tensor(y), Value::Tensor(z)])
}

/// Whole-string regex matches.
fn full_match(x: &Tensor, pattern: &str) -> Result<Tensor> {
    let re = regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| RuntimeError::msg(format!("bad pattern {pattern:?}: {e}")))?;
    let out = x.as_strings()?.iter().map(|s| re.is_match(s)).collect();
    Ok(Tensor::from_bools(x.shape().to_vec(), out)?)
}

fn regex_full_match(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let pattern = ctx
        .attrs()
        .string_opt("pattern")?
        .ok_or_else(|| RuntimeError::msg("missing `pattern`"))?;
    one(full_match(input(inputs, 0)?, pattern)?)
}

/// Case handling of StringNormalizer.
#[derive(Clone, Copy, PartialEq)]
enum CaseChange {
    None,
    Lower,
    Upper,
}

impl CaseChange {
    fn apply(self, s: &str) -> String {
        match self {
            CaseChange::None => s.to_string(),
            CaseChange::Lower => s.to_lowercase(),
            CaseChange::Upper => s.to_uppercase(),
        }
    }
}

/// Drop stopwords from a space-separated string (whole words), change case, and
/// drop strings that end up empty. A `[C]` or `[1, C]` input keeps its rank; an
/// empty result is a single empty string.
fn normalize(
    x: &Tensor,
    case: CaseChange,
    case_sensitive: bool,
    stops: &[String],
) -> Result<Tensor> {
    let shape = x.shape();
    if !(shape.len() == 1 || (shape.len() == 2 && shape[0] == 1)) {
        bail!("StringNormalizer expects shape [C] or [1, C], got {shape:?}");
    }
    let lowered: Vec<String> = stops.iter().map(|s| s.to_lowercase()).collect();
    let is_stop = |w: &str| {
        if case_sensitive {
            stops.iter().any(|s| s == w)
        } else {
            lowered.contains(&w.to_lowercase())
        }
    };
    let mut out: Vec<String> = x
        .as_strings()?
        .iter()
        .map(|s| {
            let kept = if stops.is_empty() {
                s.clone()
            } else {
                s.split(' ')
                    .filter(|w| !is_stop(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            case.apply(&kept)
        })
        .filter(|s| !s.is_empty())
        .collect();
    if out.is_empty() {
        out.push(String::new());
    }
    let n = out.len();
    let shape = if shape.len() == 2 {
        vec![1, n]
    } else {
        vec![n]
    };
    Ok(Tensor::from_strings(shape, out)?)
}

fn string_normalizer(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let a = ctx.attrs();
    let case = match a.string_or("case_change_action", "NONE")? {
        "NONE" => CaseChange::None,
        "LOWER" => CaseChange::Lower,
        "UPPER" => CaseChange::Upper,
        other => bail!("unknown case_change_action {other:?}"),
    };
    let sensitive = a.int_or("is_case_sensitive", 0)? != 0;
    let stops = a.strings_opt("stopwords")?.unwrap_or(&[]);
    one(normalize(input(inputs, 0)?, case, sensitive, stops)?)
}

/// Gather flat elements of `src` (`None` takes `default`'s single element).
fn take(
    src: &Tensor,
    default: Option<&Tensor>,
    idx: &[Option<usize>],
    shape: Vec<usize>,
) -> Result<Tensor> {
    let n = src.numel();
    if let Some(bad) = idx.iter().flatten().find(|&&i| i >= n) {
        bail!("index {bad} out of range for {n} elements");
    }
    let no_default = || RuntimeError::msg("key not found and no default value");
    if src.dtype() == DType::String {
        let (s, d) = (
            src.as_strings()?,
            default.map(|d| d.as_strings()).transpose()?,
        );
        let out = idx
            .iter()
            .map(|&i| match (i, d) {
                (Some(i), _) => Ok(s[i].clone()),
                (None, Some(d)) => d.first().cloned().ok_or_else(no_default),
                (None, None) => Err(no_default()),
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(Tensor::from_strings(shape, out)?);
    }
    let dt = src.dtype();
    crate::for_dtypes!(dt, T => {
        let s = src.as_slice::<T>()?;
        let d = match default {
            Some(d) => d.as_slice::<T>()?.first().copied(),
            None => None,
        };
        let out = idx
            .iter()
            .map(|&i| match (i, d) {
                (Some(i), _) => Ok(s[i]),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(no_default()),
            })
            .collect::<Result<Vec<T>>>()?;
        Ok(Tensor::from_vec(shape, out)?)
    }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
}

/// A hashable lookup key: strings, integers, or floats by bit pattern (all NaNs equal).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    S(String),
    I(i64),
    F(u64),
}

impl Key {
    fn float(f: f64) -> Key {
        Key::F(if f.is_nan() {
            f64::NAN.to_bits()
        } else {
            (f + 0.0).to_bits()
        })
    }

    /// The keys of a tensor's elements.
    fn all(t: &Tensor) -> Result<Vec<Key>> {
        Ok(match t.dtype() {
            DType::String => t.as_strings()?.iter().cloned().map(Key::S).collect(),
            dt if dt.is_float() => t.to_f64_vec()?.into_iter().map(Key::float).collect(),
            _ => t.to_i64_vec()?.into_iter().map(Key::I).collect(),
        })
    }
}

/// LabelEncoder's keys, values and default, all as tensors.
fn label_tables(a: &Attrs) -> Result<(Tensor, Tensor, Tensor)> {
    let keys = if let Some(t) = a.tensor_opt("keys_tensor")? {
        t.clone()
    } else if let Some(s) = a.strings_opt("keys_strings")? {
        Tensor::from_strings(vec![s.len()], s.to_vec())?
    } else if let Some(i) = a.ints_opt("keys_int64s")? {
        Tensor::from_vec(vec![i.len()], i.to_vec())?
    } else if let Some(f) = a.floats_opt("keys_floats")? {
        Tensor::from_vec(vec![f.len()], f.to_vec())?
    } else {
        bail!("LabelEncoder has no keys_* attribute")
    };
    let (values, default) = if let Some(t) = a.tensor_opt("values_tensor")? {
        let d = match a.tensor_opt("default_tensor")? {
            Some(d) => d.clone(),
            // The spec's default: "_Unused" for strings, -1 for ints, -0.0 for floats.
            None if t.dtype() == DType::String => {
                Tensor::from_strings(vec![1], vec!["_Unused".into()])?
            }
            None => collect_as(
                t.dtype(),
                vec![1],
                std::iter::once(if t.dtype().is_float() {
                    Wide::F(-0.0)
                } else {
                    Wide::I(-1)
                }),
                true,
            )?,
        };
        (t.clone(), d)
    } else if let Some(s) = a.strings_opt("values_strings")? {
        let d = a.string_or("default_string", "_Unused")?.to_string();
        (
            Tensor::from_strings(vec![s.len()], s.to_vec())?,
            Tensor::from_strings(vec![1], vec![d])?,
        )
    } else if let Some(i) = a.ints_opt("values_int64s")? {
        (
            Tensor::from_vec(vec![i.len()], i.to_vec())?,
            Tensor::from_vec(vec![1], vec![a.int_or("default_int64", -1)?])?,
        )
    } else if let Some(f) = a.floats_opt("values_floats")? {
        (
            Tensor::from_vec(vec![f.len()], f.to_vec())?,
            Tensor::from_vec(vec![1], vec![a.float_or("default_float", -0.0)?])?,
        )
    } else {
        bail!("LabelEncoder has no values_* attribute")
    };
    if keys.numel() != values.numel() {
        bail!("{} keys but {} values", keys.numel(), values.numel());
    }
    Ok((keys, values, default))
}

/// Map each element through the key → value table, `default` when absent.
fn label_encode(x: &Tensor, keys: &Tensor, values: &Tensor, default: &Tensor) -> Result<Tensor> {
    let table: HashMap<Key, usize> = Key::all(keys)?
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, i))
        .collect();
    let idx: Vec<Option<usize>> = Key::all(x)?.iter().map(|k| table.get(k).copied()).collect();
    take(values, Some(default), &idx, x.shape().to_vec())
}

fn label_encoder(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let (keys, values, default) = label_tables(ctx.attrs())?;
    one(label_encode(input(inputs, 0)?, &keys, &values, &default)?)
}

/// 1 where `x > threshold`, else 0, in `x`'s type.
fn binarize(x: &Tensor, threshold: f64) -> Result<Tensor> {
    let it = x
        .to_f64_vec()?
        .into_iter()
        .map(|v| Wide::F(if v > threshold { 1.0 } else { 0.0 }));
    collect_as(x.dtype(), x.shape().to_vec(), it, true)
}

fn binarizer(ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    let t = ctx.attrs().float_or("threshold", 0.0)?;
    one(binarize(input(inputs, 0)?, t as f64)?)
}

/// `x[..., indices]`, with a 1-D `x` treated as one row.
fn extract_features(x: &Tensor, indices: &Tensor) -> Result<Tensor> {
    let last = *x
        .shape()
        .last()
        .ok_or_else(|| RuntimeError::msg("ArrayFeatureExtractor needs rank >= 1"))?;
    let idx = indices.to_i64_vec()?;
    let cols = idx
        .iter()
        .map(|&i| {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < last)
                .ok_or_else(|| {
                    RuntimeError::msg(format!("index {i} out of range for {last} features"))
                })
        })
        .collect::<Result<Vec<usize>>>()?;
    let rows = x.numel().checked_div(last).unwrap_or(0);
    let mut shape = if x.rank() == 1 {
        vec![1]
    } else {
        x.shape()[..x.rank() - 1].to_vec()
    };
    shape.push(cols.len());
    checked_len(&shape)?;
    let flat: Vec<Option<usize>> = (0..rows)
        .flat_map(|r| cols.iter().map(move |&c| Some(r * last + c)))
        .collect();
    take(x, None, &flat, shape)
}

fn array_feature_extractor(_ctx: &KernelCtx<'_>, inputs: &[Option<Value>]) -> Result<Vec<Value>> {
    one(extract_features(input(inputs, 0)?, input(inputs, 1)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(shape: &[usize], v: &[&str]) -> Tensor {
        Tensor::from_strings(shape.to_vec(), v.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn broadcast_index_map() {
        assert_eq!(
            broadcast_indices(&[3], &[2, 3]).unwrap(),
            vec![0, 1, 2, 0, 1, 2]
        );
        assert_eq!(
            broadcast_indices(&[2, 1], &[2, 3]).unwrap(),
            vec![0, 0, 0, 1, 1, 1]
        );
        assert_eq!(broadcast_indices(&[], &[2]).unwrap(), vec![0, 0]);
    }

    #[test]
    fn split_like_python() {
        assert_eq!(
            py_split("o-n-n--x-", Some("-"), None),
            vec!["o", "n", "n", "", "x", ""]
        );
        assert_eq!(
            py_split(" hello world   ! ", None, None),
            vec!["hello", "world", "!"]
        );
        assert_eq!(py_split("o n n x", None, Some(2)), vec!["o", "n", "n x"]);
        assert_eq!(py_split("", None, None), Vec::<&str>::new());
        let (y, z) = split_tensor(&strs(&[2], &["abc.com", "def"]), Some("."), None).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_strings().unwrap(), &["abc", "com", "def", ""]);
        assert_eq!(z.as_slice::<i64>().unwrap(), &[2, 1]);
        let (y, _) = split_tensor(&strs(&[0], &[]), None, None).unwrap();
        assert_eq!(y.shape(), &[0, 0]);
    }

    #[test]
    fn regex_is_anchored() {
        let x = strs(&[3], &["www.google.com", "www.bbc.co.uk", "xwww.a.com"]);
        let y = full_match(&x, r"www\.[\w.-]+\.\bcom\b").unwrap();
        assert_eq!(y.as_slice::<bool>().unwrap(), &[true, false, false]);
        assert!(full_match(&x, "(").is_err());
    }

    #[test]
    fn normalizer_filters_and_changes_case() {
        let x = strs(&[1, 4], &["Monday", "tuesday", "monday", "wed monday"]);
        let y = normalize(&x, CaseChange::Upper, false, &["monday".into()]).unwrap();
        assert_eq!(y.shape(), &[1, 2]);
        assert_eq!(y.as_strings().unwrap(), &["TUESDAY", "WED"]);
        let y = normalize(
            &strs(&[2], &["monday", "monday"]),
            CaseChange::None,
            true,
            &["monday".into()],
        )
        .unwrap();
        assert_eq!(y.as_strings().unwrap(), &[""]);
    }

    #[test]
    fn label_encoder_with_default() {
        let keys = strs(&[3], &["a", "b", "c"]);
        let values = Tensor::from_vec(vec![3], vec![0i16, 1, 2]).unwrap();
        let default = Tensor::from_vec(vec![1], vec![42i16]).unwrap();
        let y = label_encode(&strs(&[4], &["a", "d", "c", "b"]), &keys, &values, &default).unwrap();
        assert_eq!(y.as_slice::<i16>().unwrap(), &[0, 42, 2, 1]);
        let fk = Tensor::from_vec(vec![2], vec![f32::NAN, 1.0]).unwrap();
        let sv = strs(&[2], &["nan", "one"]);
        let x = Tensor::from_vec(vec![3], vec![1.0f32, f32::NAN, 2.0]).unwrap();
        let y = label_encode(&x, &fk, &sv, &strs(&[1], &["_Unused"])).unwrap();
        assert_eq!(y.as_strings().unwrap(), &["one", "nan", "_Unused"]);
    }

    #[test]
    fn binarizer_and_feature_extractor() {
        let x = Tensor::from_vec(vec![2, 3], vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(
            binarize(&x, 1.0).unwrap().as_slice::<f32>().unwrap(),
            &[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
        );
        let idx = Tensor::from_vec(vec![2], vec![2i64, 0]).unwrap();
        let y = extract_features(&x, &idx).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2.0, 0.0, 5.0, 3.0]);
        let v = Tensor::from_vec(vec![3], vec![7i64, 8, 9]).unwrap();
        assert_eq!(extract_features(&v, &idx).unwrap().shape(), &[1, 2]);
        assert!(extract_features(&x, &Tensor::from_vec(vec![1], vec![3i64]).unwrap()).is_err());
    }
}
