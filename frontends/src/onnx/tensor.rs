//! `TensorProto` → [`Tensor`], including external data.
//!
//! Every length is validated before anything is allocated from it: the element
//! count comes from checked multiplication of the declared dims, and the bytes
//! actually present (inline fields, `raw_data`, or the external file's size) must
//! match it exactly. A file that *declares* a huge tensor therefore fails with a
//! typed error instead of allocating.
//!
//! Sub-byte types arrive packed, lowest bits first: `INT4`, `UINT4`, `FLOAT4E2M1`
//! two per byte, `INT2`, `UINT2` four per byte. They are unpacked to egret's
//! one-element-per-byte form (signed types sign-extended); [`tensor_to_proto`]
//! packs them again. float8 codes (e8m0 included) are kept as raw bytes.

use super::proto::{tensor_proto::DataLocation, SparseTensorProto, TensorProto};
use super::types::{dtype_from_onnx, dtype_to_onnx, onnx_type_name};
use super::OnnxError;
use egret_ir::{DType, Tensor};
use half::{bf16, f16};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Largest dense size (in bytes) a sparse tensor may expand to.
const MAX_SPARSE_DENSE_BYTES: usize = 1 << 30;

/// Memory maps of external-data files, shared by every tensor of one model.
#[derive(Default)]
pub(crate) struct ExternalFiles {
    maps: HashMap<PathBuf, Arc<memmap2::Mmap>>,
}

/// Decode a `TensorProto` into a [`Tensor`]. `model_dir` is the folder external
/// data paths are resolved against (`None`: external data is an error).
pub fn tensor_from_proto(tp: &TensorProto, model_dir: Option<&Path>) -> Result<Tensor, OnnxError> {
    decode(tp, model_dir, &mut ExternalFiles::default())
}

/// [`tensor_from_proto`] with a shared external-file cache.
pub(crate) fn decode(
    tp: &TensorProto,
    model_dir: Option<&Path>,
    ext: &mut ExternalFiles,
) -> Result<Tensor, OnnxError> {
    let name = tp.name.as_str();
    let err = |msg: String| OnnxError::tensor(name, msg);
    let dtype = dtype_from_onnx(tp.data_type).ok_or_else(|| {
        err(format!(
            "data type {} is not supported",
            onnx_type_name(tp.data_type)
        ))
    })?;
    if tp.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let shape = dims(name, &tp.dims)?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("dims {:?} overflow", tp.dims)))?;
    if tp.data_location == DataLocation::External as i32 {
        return external(tp, dtype, shape, numel, model_dir, ext);
    }
    if tp.data_location != DataLocation::Default as i32 {
        return Err(err(format!("unknown data_location {}", tp.data_location)));
    }
    let ir = |e: egret_ir::IrError| err(e.to_string());
    if dtype == DType::String {
        if !tp.raw_data.is_empty() {
            return Err(err(
                "string tensors cannot use raw_data (strings go in string_data)".into(),
            ));
        }
        if tp.string_data.len() != numel {
            return Err(err(format!(
                "{} strings for {numel} elements",
                tp.string_data.len()
            )));
        }
        let strings = tp
            .string_data
            .iter()
            .map(|s| {
                String::from_utf8(s.clone())
                    .map_err(|_| err("string element is not valid UTF-8".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Tensor::from_strings(shape, strings).map_err(ir);
    }
    if !tp.raw_data.is_empty() {
        return from_le_bytes(name, dtype, shape, numel, &tp.raw_data);
    }
    // Typed fields. Each must hold exactly `numel` values (packed bytes for sub-byte types).
    let want = match packed_bits(dtype) {
        Some(bits) => numel.div_ceil(8 / bits),
        None => numel,
    };
    let check = |have: usize, field: &str| {
        if have == want {
            Ok(())
        } else {
            Err(err(format!(
                "{field} holds {have} values, shape {shape:?} of {dtype} needs {want}"
            )))
        }
    };
    use DType::{Bool, BF16, F16, F32, F64, I16, I32, I64, I8, U16, U32, U64};
    match dtype {
        F32 => {
            check(tp.float_data.len(), "float_data")?;
            Tensor::from_vec(shape.clone(), tp.float_data.clone()).map_err(ir)
        }
        F64 => {
            check(tp.double_data.len(), "double_data")?;
            Tensor::from_vec(shape.clone(), tp.double_data.clone()).map_err(ir)
        }
        I64 => {
            check(tp.int64_data.len(), "int64_data")?;
            Tensor::from_vec(shape.clone(), tp.int64_data.clone()).map_err(ir)
        }
        U64 => {
            check(tp.uint64_data.len(), "uint64_data")?;
            Tensor::from_vec(shape.clone(), tp.uint64_data.clone()).map_err(ir)
        }
        U32 => {
            check(tp.uint64_data.len(), "uint64_data")?;
            Tensor::from_vec(
                shape.clone(),
                tp.uint64_data.iter().map(|&v| v as u32).collect(),
            )
            .map_err(ir)
        }
        _ => {
            check(tp.int32_data.len(), "int32_data")?;
            let d = &tp.int32_data;
            match dtype {
                I32 => Tensor::from_vec(shape.clone(), d.clone()),
                I16 => Tensor::from_vec(shape.clone(), d.iter().map(|&v| v as i16).collect()),
                U16 => Tensor::from_vec(shape.clone(), d.iter().map(|&v| v as u16).collect()),
                I8 => Tensor::from_vec(shape.clone(), d.iter().map(|&v| v as i8).collect()),
                F16 => Tensor::from_vec(
                    shape.clone(),
                    d.iter().map(|&v| f16::from_bits(v as u16)).collect(),
                ),
                BF16 => Tensor::from_vec(
                    shape.clone(),
                    d.iter().map(|&v| bf16::from_bits(v as u16)).collect(),
                ),
                Bool => Tensor::from_bools(shape.clone(), d.iter().map(|&v| v != 0).collect()),
                _ => {
                    // One byte per value: u8, float8, or packed sub-byte values.
                    let bytes: Vec<u8> = d.iter().map(|&v| v as u8).collect();
                    return from_le_bytes(name, dtype, shape, numel, &bytes);
                }
            }
            .map_err(ir)
        }
    }
}

/// Declared dims → `usize`, rejecting negatives.
fn dims(name: &str, dims: &[i64]) -> Result<Vec<usize>, OnnxError> {
    dims.iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| OnnxError::tensor(name, format!("negative dimension {d} in {dims:?}")))
        })
        .collect()
}

/// Bits per element of a type ONNX packs several to a byte (`None`: not packed).
fn packed_bits(d: DType) -> Option<usize> {
    match d {
        DType::I4 | DType::U4 | DType::F4E2M1 => Some(4),
        DType::I2 | DType::U2 => Some(2),
        _ => None,
    }
}

/// Bytes a tensor of `numel` elements occupies in an ONNX file (sub-byte types packed).
fn file_bytes(name: &str, dtype: DType, numel: usize) -> Result<usize, OnnxError> {
    if let Some(bits) = packed_bits(dtype) {
        return Ok(numel.div_ceil(8 / bits));
    }
    dtype
        .size()
        .and_then(|s| numel.checked_mul(s))
        .ok_or_else(|| OnnxError::tensor(name, format!("{numel} elements of {dtype} overflow")))
}

/// Little-endian file bytes (sub-byte types packed) → tensor. The length is checked first.
fn from_le_bytes(
    name: &str,
    dtype: DType,
    shape: Vec<usize>,
    numel: usize,
    bytes: &[u8],
) -> Result<Tensor, OnnxError> {
    let want = file_bytes(name, dtype, numel)?;
    if bytes.len() != want {
        return Err(OnnxError::tensor(
            name,
            format!(
                "{} data bytes, shape {shape:?} of {dtype} needs {want}",
                bytes.len()
            ),
        ));
    }
    let res = match packed_bits(dtype) {
        Some(bits) => Tensor::from_bytes(dtype, shape, &unpack(bytes, numel, bits, dtype)),
        None => Tensor::from_bytes(dtype, shape, bytes),
    };
    res.map_err(|e| OnnxError::tensor(name, e.to_string()))
}

/// Unpack `8 / bits` values per byte (lowest bits first), sign-extending the
/// signed integer types.
fn unpack(packed: &[u8], numel: usize, bits: usize, dtype: DType) -> Vec<u8> {
    let (per, mask, shift) = (8 / bits, (1u8 << bits) - 1, 8 - bits);
    let signed = dtype.is_signed_int();
    packed
        .iter()
        .flat_map(|&b| (0..per).map(move |k| (b >> (k * bits)) & mask))
        .take(numel)
        .map(|n| {
            if signed {
                (((n << shift) as i8) >> shift) as u8
            } else {
                n
            }
        })
        .collect()
}

/// Pack one-per-byte values `8 / bits` to a byte, lowest bits first (the inverse
/// of [`unpack`]; high bits of each value are dropped).
fn pack(values: &[u8], bits: usize) -> Vec<u8> {
    let (per, mask) = (8 / bits, (1u8 << bits) - 1);
    values
        .chunks(per)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (k, &v)| acc | ((v & mask) << (k * bits)))
        })
        .collect()
}

/// Encode a tensor as an inline `TensorProto` named `name`: `raw_data` in ONNX's
/// little-endian layout (sub-byte types packed), `string_data` for strings. The
/// inverse of [`tensor_from_proto`]; block-quantized tensors have no ONNX form.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> Result<TensorProto, OnnxError> {
    let dtype = t.dtype();
    let data_type = dtype_to_onnx(dtype)
        .ok_or_else(|| OnnxError::tensor(name, format!("{dtype} has no ONNX type")))?;
    let dims = t
        .shape()
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| OnnxError::tensor(name, format!("dims {:?} overflow", t.shape())))?;
    let mut tp = TensorProto {
        name: name.to_string(),
        data_type,
        dims,
        ..Default::default()
    };
    if dtype == DType::String {
        let strings = t
            .as_strings()
            .map_err(|e| OnnxError::tensor(name, e.to_string()))?;
        tp.string_data = strings.iter().map(|s| s.as_bytes().to_vec()).collect();
    } else {
        tp.raw_data = match packed_bits(dtype) {
            Some(bits) => pack(t.bytes(), bits),
            None => t.bytes().to_vec(),
        };
    }
    Ok(tp)
}

/// Resolve, validate and read (memory-map when possible) a tensor's external data.
fn external(
    tp: &TensorProto,
    dtype: DType,
    shape: Vec<usize>,
    numel: usize,
    model_dir: Option<&Path>,
    ext: &mut ExternalFiles,
) -> Result<Tensor, OnnxError> {
    let name = tp.name.as_str();
    let err = |msg: String| OnnxError::ExternalData {
        tensor: name.to_string(),
        msg,
    };
    let mut location = None;
    let (mut offset, mut length) = (0usize, None);
    for kv in &tp.external_data {
        let num = || {
            kv.value
                .trim()
                .parse::<usize>()
                .map_err(|_| err(format!("bad {} `{}`", kv.key, kv.value)))
        };
        match kv.key.as_str() {
            "location" => location = Some(kv.value.as_str()),
            "offset" => offset = num()?,
            "length" => length = Some(num()?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| err("no `location` key".into()))?;
    if dtype == DType::String {
        return Err(err("string tensors cannot use external data".into()));
    }
    let dir =
        model_dir.ok_or_else(|| err("the model's folder is unknown (loaded from bytes)".into()))?;
    let rel = Path::new(location);
    if location.is_empty() || rel.is_absolute() || rel.has_root() {
        return Err(err(format!("location `{location}` is not a relative path")));
    }
    if let Some(c) = rel
        .components()
        .find(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(err(format!(
            "location `{location}` has a forbidden component `{}`",
            c.as_os_str().to_string_lossy()
        )));
    }
    let base = dir
        .canonicalize()
        .map_err(|e| err(format!("model folder {}: {e}", dir.display())))?;
    let path = base
        .join(rel)
        .canonicalize()
        .map_err(|e| err(format!("cannot open `{location}`: {e}")))?;
    if !path.starts_with(&base) {
        return Err(err(format!(
            "location `{location}` resolves outside the model folder"
        )));
    }
    let map = match ext.maps.get(&path) {
        Some(m) => m.clone(),
        None => {
            let file = std::fs::File::open(&path)
                .map_err(|e| err(format!("cannot open `{location}`: {e}")))?;
            let meta = file
                .metadata()
                .map_err(|e| err(format!("cannot stat `{location}`: {e}")))?;
            if !meta.is_file() {
                return Err(err(format!("`{location}` is not a regular file")));
            }
            if meta.len() == 0 {
                // An empty file cannot be mapped; only empty tensors can live in it.
                let want = file_bytes(name, dtype, numel)?;
                if offset != 0 || length.unwrap_or(0) != 0 || want != 0 {
                    return Err(err(format!(
                        "`{location}` is empty, {want} bytes needed at offset {offset}"
                    )));
                }
                return from_le_bytes(name, dtype, shape, numel, &[]);
            }
            // SAFETY: the map is read-only. Like every mmap-based loader we rely on the
            // file not being truncated while the model is alive.
            let m = Arc::new(
                unsafe { memmap2::Mmap::map(&file) }
                    .map_err(|e| err(format!("cannot map `{location}`: {e}")))?,
            );
            ext.maps.insert(path.clone(), m.clone());
            m
        }
    };
    let size = map.len();
    if offset > size {
        return Err(err(format!(
            "offset {offset} is beyond the end of `{location}` ({size} bytes)"
        )));
    }
    let length = length.unwrap_or(size - offset);
    let end = offset
        .checked_add(length)
        .filter(|&e| e <= size)
        .ok_or_else(|| {
            err(format!(
                "range {offset}+{length} is beyond the end of `{location}` ({size} bytes)"
            ))
        })?;
    let want = file_bytes(name, dtype, numel)?;
    if length != want {
        return Err(err(format!(
            "{length} bytes in `{location}`, shape {shape:?} of {dtype} needs {want}"
        )));
    }
    if packed_bits(dtype).is_some() {
        return from_le_bytes(name, dtype, shape, numel, &map[offset..end]);
    }
    Tensor::from_mmap(dtype, shape, map, offset, length)
        .map_err(|e| OnnxError::tensor(name, e.to_string()))
}

/// Densify a sparse tensor (`values` of shape `[NNZ]`, `indices` of shape `[NNZ]`
/// (linear) or `[NNZ, rank]`). The dense size is capped at 1 GiB.
pub(crate) fn sparse_to_dense(
    sp: &SparseTensorProto,
    model_dir: Option<&Path>,
    ext: &mut ExternalFiles,
) -> Result<Tensor, OnnxError> {
    let values = sp
        .values
        .as_ref()
        .ok_or_else(|| OnnxError::tensor("", "sparse tensor without values"))?;
    let name = values.name.as_str();
    let err = |msg: String| OnnxError::tensor(name, msg);
    let vals = decode(values, model_dir, ext)?;
    let shape = dims(name, &sp.dims)?;
    let dtype = vals.dtype();
    let elem = dtype
        .size()
        .filter(|_| packed_bits(dtype).is_none())
        .ok_or_else(|| err(format!("sparse {dtype} tensors are not supported")))?;
    let dense_bytes = dtype
        .storage_bytes(&shape)
        .filter(|&b| b <= MAX_SPARSE_DENSE_BYTES)
        .ok_or_else(|| {
            err(format!(
                "sparse tensor of shape {shape:?} is too large to densify"
            ))
        })?;
    let numel = dense_bytes / elem;
    let nnz = vals.numel();
    let idx = match &sp.indices {
        Some(i) => decode(i, model_dir, ext)?
            .to_i64_vec()
            .map_err(|e| err(e.to_string()))?,
        None => vec![],
    };
    let rank = shape.len();
    let linear: Vec<usize> = if idx.len() == nnz {
        idx.iter()
            .map(|&i| usize::try_from(i).ok().filter(|&i| i < numel))
            .collect::<Option<_>>()
    } else if rank > 0 && Some(idx.len()) == nnz.checked_mul(rank) {
        idx.chunks(rank)
            .map(|c| {
                c.iter().zip(&shape).try_fold(0usize, |acc, (&i, &d)| {
                    let i = usize::try_from(i).ok().filter(|&i| i < d)?;
                    Some(acc * d + i)
                })
            })
            .collect::<Option<_>>()
    } else {
        None
    }
    .ok_or_else(|| {
        err(format!(
            "sparse indices do not fit {nnz} values in shape {shape:?}"
        ))
    })?;
    let mut dense = vec![0u8; dense_bytes];
    let src = vals.bytes();
    for (k, &li) in linear.iter().enumerate() {
        dense[li * elem..(li + 1) * elem].copy_from_slice(&src[k * elem..(k + 1) * elem]);
    }
    Tensor::from_bytes(dtype, shape, &dense).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::tensor_proto::DataType;

    fn tp(dt: DataType, dims: Vec<i64>) -> TensorProto {
        TensorProto {
            data_type: dt as i32,
            dims,
            name: "t".into(),
            ..Default::default()
        }
    }

    #[test]
    fn typed_fields_decode() {
        let mut t = tp(DataType::Float16, vec![2]);
        t.int32_data = vec![0x3c00, 0xc000];
        let x = tensor_from_proto(&t, None).unwrap();
        assert_eq!(x.to_f64_vec().unwrap(), vec![1.0, -2.0]);
        let mut t = tp(DataType::Int8, vec![3]);
        t.int32_data = vec![-1, 5, -128];
        assert_eq!(
            tensor_from_proto(&t, None).unwrap().to_i64_vec().unwrap(),
            vec![-1, 5, -128]
        );
        let mut t = tp(DataType::Uint32, vec![1]);
        t.uint64_data = vec![4_000_000_000];
        assert_eq!(
            tensor_from_proto(&t, None).unwrap().to_i64_vec().unwrap(),
            vec![4_000_000_000]
        );
    }

    #[test]
    fn raw_and_int4() {
        let mut t = tp(DataType::Int4, vec![3]);
        t.raw_data = vec![0xf7, 0x08];
        let x = tensor_from_proto(&t, None).unwrap();
        assert_eq!(x.to_i64_vec().unwrap(), vec![7, -1, -8]);
        t.raw_data = vec![0xf7];
        assert!(matches!(
            tensor_from_proto(&t, None),
            Err(OnnxError::Tensor { .. })
        ));
        let mut t = tp(DataType::Uint4, vec![2]);
        t.int32_data = vec![0xa3];
        assert_eq!(
            tensor_from_proto(&t, None).unwrap().to_i64_vec().unwrap(),
            vec![3, 10]
        );
        let mut t = tp(DataType::Int32, vec![2]);
        t.raw_data = [7i32.to_le_bytes(), (-2i32).to_le_bytes()].concat();
        assert_eq!(
            tensor_from_proto(&t, None).unwrap().to_i64_vec().unwrap(),
            vec![7, -2]
        );
    }

    #[test]
    fn int2_uint2_e8m0_decode_and_pack_back() {
        // x0 | x1 << 2 | x2 << 4 | x3 << 6, as the ONNX spec packs 2-bit values.
        let mut t = tp(DataType::Int2, vec![5]);
        t.raw_data = vec![0b00_11_10_01, 0b10];
        let x = tensor_from_proto(&t, None).unwrap();
        assert_eq!(x.to_i64_vec().unwrap(), vec![1, -2, -1, 0, -2]);
        assert_eq!(tensor_to_proto("t", &x).unwrap().raw_data, t.raw_data);
        let mut t = tp(DataType::Uint2, vec![4]);
        t.int32_data = vec![0b11_10_01_00];
        let x = tensor_from_proto(&t, None).unwrap();
        assert_eq!(x.to_i64_vec().unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(tensor_to_proto("t", &x).unwrap().raw_data, vec![0xe4]);
        t.int32_data = vec![0xe4, 0];
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .to_string()
            .contains("int32_data holds 2 values"));
        let mut t = tp(DataType::Float8e8m0, vec![3]);
        t.int32_data = vec![127, 0, 255];
        let x = tensor_from_proto(&t, None).unwrap();
        assert_eq!(x.dtype(), DType::F8E8M0);
        assert_eq!(x.bytes(), &[127, 0, 255]);
        let i4 = Tensor::from_bytes(DType::I4, vec![3], &[0xf9, 7, 0xff]).unwrap();
        let back = tensor_from_proto(&tensor_to_proto("q", &i4).unwrap(), None).unwrap();
        assert_eq!(back.to_i64_vec().unwrap(), vec![-7, 7, -1]);
    }

    #[test]
    fn huge_and_negative_dims_fail_cleanly() {
        let mut t = tp(DataType::Float, vec![1 << 25, 1 << 25]);
        t.raw_data = vec![0; 8];
        assert!(matches!(
            tensor_from_proto(&t, None),
            Err(OnnxError::Tensor { .. })
        ));
        let t = tp(DataType::Float, vec![-1]);
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .to_string()
            .contains("negative"));
        let t = tp(DataType::Float, vec![i64::MAX, i64::MAX]);
        assert!(tensor_from_proto(&t, None)
            .unwrap_err()
            .to_string()
            .contains("overflow"));
    }

    #[test]
    fn sparse_densifies() {
        let mut values = tp(DataType::Int64, vec![2]);
        values.int64_data = vec![5, 6];
        let mut indices = tp(DataType::Int64, vec![2]);
        indices.int64_data = vec![1, 3];
        let sp = SparseTensorProto {
            values: Some(values),
            indices: Some(indices),
            dims: vec![2, 2],
        };
        let d = sparse_to_dense(&sp, None, &mut ExternalFiles::default()).unwrap();
        assert_eq!(d.to_i64_vec().unwrap(), vec![0, 5, 0, 6]);
    }
}
