//! Parsing a GGUF file: header, metadata, tensor infos and the data section.
//!
//! Layout (little-endian, versions 2 and 3; version 1 used 32-bit counts and is
//! rejected):
//!
//! ```text
//! "GGUF" u32 version, u64 tensor_count, u64 kv_count
//! kv_count x   { string key, u32 type, value }          string = u64 len + bytes
//! tensor_count x { string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset }
//! padding to general.alignment (default 32)
//! data section: each tensor at data_start + offset
//! ```
//!
//! **Dimension order.** GGUF lists dims innermost first (ggml's `ne[0]` is the
//! contiguous axis), the reverse of row-major. A GGUF `token_embd.weight` with
//! dims `[576, 49152]` is the row-major tensor `[49152, 576]`; [`TensorInfo::shape`]
//! returns the row-major order used everywhere in egret, and block-quantized data
//! are packed along that last (contiguous) axis, matching [`egret_ir::BlockFormat`].
//!
//! **Hostile input.** Every count, length and offset is checked against the bytes
//! actually present before anything is allocated from it: a declared array length
//! must fit in the remaining file at the element type's minimum on-disk size, a
//! tensor's byte range must lie inside the data section, nesting is bounded.

use super::ggml_type::GgmlType;
use super::metadata::{MetaArray, MetaType, MetaValue, Metadata};
use super::GgufError;
use egret_ir::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The four magic bytes that open every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Data-section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array nesting accepted (real files nest at most once).
const MAX_DEPTH: usize = 8;
/// Most dims a ggml tensor can have.
const MAX_DIMS: usize = 4;
/// Most metadata values (array elements included) accepted in one file. A value
/// takes as little as one byte on disk but a [`MetaValue`] in memory, so this
/// bounds memory independently of the file size; the largest real vocabularies
/// (256k tokens plus merges) need well under a million.
const MAX_META_VALUES: usize = 1 << 24;

/// One tensor's entry in the GGUF tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dims as stored in the file: innermost (contiguous) first.
    pub ggml_dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    /// Byte length of the data.
    pub nbytes: usize,
}

impl TensorInfo {
    /// The row-major (egret) shape: the file's dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        // Every dim was checked to fit usize when the table was read.
        self.ggml_dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of logical elements.
    pub fn numel(&self) -> usize {
        self.ggml_dims.iter().map(|&d| d as usize).product()
    }

    /// The egret dtype, or `None` for GGML types egret does not compute on.
    pub fn dtype(&self) -> Option<DType> {
        self.ggml_type.dtype()
    }
}

/// An open, memory-mapped GGUF file.
///
/// Tensors are created on demand by [`GgufFile::tensor`] and point into the map
/// (zero-copy); block-quantized tensors stay in their block format.
pub struct GgufFile {
    path: String,
    map: Arc<memmap2::Mmap>,
    version: u32,
    alignment: u64,
    data_offset: usize,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A bounds-checked little-endian reader over the mapped bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Metadata values still allowed (see [`MAX_META_VALUES`]).
    budget: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {what} needs {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A declared count, checked so that `count` items of at least `min` bytes
    /// each fit in what is left of the file.
    fn count(&mut self, min: usize, what: &str) -> Result<usize, String> {
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(min).is_some_and(|b| b <= self.remaining()));
        fits.ok_or_else(|| {
            format!(
                "{what} {n} cannot fit in the {} bytes left at offset {}",
                self.remaining(),
                self.pos
            )
        })
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.count(1, &format!("{what} length"))?;
        let at = self.pos;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} at offset {at} is not UTF-8"))
    }

    fn value(&mut self, ty: MetaType, depth: usize) -> Result<MetaValue, String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| format!("more than {MAX_META_VALUES} metadata values"))?;
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.array::<1>("u8")?[0]),
            MetaType::I8 => MetaValue::I8(i8::from_le_bytes(self.array("i8")?)),
            MetaType::U16 => MetaValue::U16(u16::from_le_bytes(self.array("u16")?)),
            MetaType::I16 => MetaValue::I16(i16::from_le_bytes(self.array("i16")?)),
            MetaType::U32 => MetaValue::U32(self.u32("u32")?),
            MetaType::I32 => MetaValue::I32(i32::from_le_bytes(self.array("i32")?)),
            MetaType::F32 => MetaValue::F32(f32::from_le_bytes(self.array("f32")?)),
            MetaType::U64 => MetaValue::U64(self.u64("u64")?),
            MetaType::I64 => MetaValue::I64(i64::from_le_bytes(self.array("i64")?)),
            MetaType::F64 => MetaValue::F64(f64::from_le_bytes(self.array("f64")?)),
            MetaType::Bool => match self.array::<1>("bool")?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(format!("bool byte {b} at offset {}", self.pos - 1)),
            },
            MetaType::String => MetaValue::String(self.string("string")?),
            MetaType::Array => {
                if depth >= MAX_DEPTH {
                    return Err(format!("arrays nested deeper than {MAX_DEPTH}"));
                }
                let elem = self.meta_type("array element type")?;
                let n = self.count(elem.min_bytes(), "array length")?;
                if n > self.budget {
                    return Err(format!(
                        "array of {n} values exceeds the limit of {MAX_META_VALUES} metadata values"
                    ));
                }
                let items = (0..n)
                    .map(|_| self.value(elem, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                MetaValue::Array(MetaArray { elem, items })
            }
        })
    }

    fn meta_type(&mut self, what: &str) -> Result<MetaType, String> {
        let id = self.u32(what)?;
        MetaType::from_id(id).ok_or_else(|| format!("unknown {what} {id}"))
    }
}

impl GgufFile {
    /// Open and validate a GGUF file. The file is memory-mapped; nothing of the
    /// tensor data is read until a tensor is used.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let file_name = path.display().to_string();
        let io = |e: std::io::Error| GgufError::Io {
            file: file_name.clone(),
            source: e,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only. Like every mmap-based model loader, egret
        // assumes the file is not truncated or rewritten while it is open.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
        GgufFile::parse(file_name, Arc::new(map))
    }

    /// Parse GGUF bytes held in a map; `file` names the source in errors.
    pub fn parse(file: String, map: Arc<memmap2::Mmap>) -> Result<GgufFile, GgufError> {
        let fmt_err = |msg: String| GgufError::Format {
            file: file.clone(),
            msg,
        };
        let mut c = Cursor {
            buf: &map,
            pos: 0,
            budget: MAX_META_VALUES,
        };
        let magic = c.array::<4>("magic").map_err(fmt_err)?;
        if &magic != MAGIC {
            return Err(fmt_err(format!("not a GGUF file (magic {magic:02x?})")));
        }
        let version = c.u32("version").map_err(fmt_err)?;
        if !(2..=3).contains(&version) {
            let hint = if version.swap_bytes() <= 3 {
                " (big-endian files are not supported)"
            } else {
                ""
            };
            return Err(fmt_err(format!(
                "unsupported GGUF version {version}{hint}; egret reads versions 2 and 3"
            )));
        }
        // The smallest tensor info is an empty name, n_dims, type and offset: 24 bytes.
        let n_tensors = c.count(24, "tensor count").map_err(fmt_err)?;
        // The smallest pair is an empty key, a type and a u8: 13 bytes.
        let n_kv = c.count(13, "metadata count").map_err(fmt_err)?;

        let mut metadata = Metadata::new(file.clone());
        for i in 0..n_kv {
            let key = c
                .string("key")
                .map_err(|m| fmt_err(format!("metadata pair {i}: {m}")))?;
            let key_err = |msg: String| GgufError::Key {
                file: file.clone(),
                key: key.clone(),
                msg,
            };
            let ty = c.meta_type("value type").map_err(key_err)?;
            let v = c.value(ty, 0).map_err(key_err)?;
            metadata.insert(key, v)?;
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => {
                v.as_u64()
                    .filter(|a| a.is_power_of_two())
                    .ok_or_else(|| GgufError::Key {
                        file: file.clone(),
                        key: "general.alignment".into(),
                        msg: format!("must be a power of two, found {}", v.summary()),
                    })?
            }
        };

        let mut infos = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c
                .string("tensor name")
                .map_err(|m| fmt_err(format!("tensor info {i}: {m}")))?;
            let t_err = |msg: String| GgufError::Tensor {
                file: file.clone(),
                tensor: name.clone(),
                msg,
            };
            let n_dims = c.u32("n_dims").map_err(t_err)? as usize;
            if n_dims > MAX_DIMS {
                return Err(t_err(format!("{n_dims} dims (at most {MAX_DIMS})")));
            }
            let dims = (0..n_dims)
                .map(|_| c.u64("dim"))
                .collect::<Result<Vec<u64>, _>>()
                .map_err(t_err)?;
            let type_id = c.u32("type").map_err(t_err)?;
            let offset = c.u64("offset").map_err(t_err)?;
            infos.push((name, dims, type_id, offset));
        }
        let data_offset = usize::try_from(align_up(c.pos as u64, alignment).unwrap_or(u64::MAX))
            .ok()
            .filter(|&d| d <= map.len())
            .ok_or_else(|| {
                fmt_err(format!(
                    "data section at {} (aligned to {alignment}) is past the end of the {}-byte file",
                    c.pos,
                    map.len()
                ))
            })?;

        let data_len = map.len() - data_offset;
        let mut tensors = Vec::with_capacity(infos.len());
        let mut by_name = HashMap::with_capacity(infos.len());
        for (name, dims, type_id, offset) in infos {
            let t_err = |msg: String| GgufError::Tensor {
                file: file.clone(),
                tensor: name.clone(),
                msg,
            };
            let ggml_type = GgmlType::from_id(type_id)
                .ok_or_else(|| t_err(format!("unknown ggml type {type_id}")))?;
            let inner = dims.first().copied().unwrap_or(1);
            let numel = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| t_err(format!("dims {dims:?} overflow")))?;
            let nbytes = usize::try_from(inner)
                .ok()
                .and_then(|inner| ggml_type.byte_size(inner, numel))
                .ok_or_else(|| {
                    t_err(format!(
                        "dims {dims:?} do not fit {ggml_type} blocks of {}",
                        ggml_type.block_elems()
                    ))
                })?;
            if offset % alignment != 0 {
                return Err(t_err(format!(
                    "offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let start = usize::try_from(offset)
                .ok()
                .filter(|&o| o.checked_add(nbytes).is_some_and(|e| e <= data_len))
                .ok_or_else(|| {
                    t_err(format!(
                        "data {offset}+{nbytes} lies outside the {data_len}-byte data section"
                    ))
                })?;
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(t_err("duplicate tensor name".into()));
            }
            tensors.push(TensorInfo {
                name,
                ggml_dims: dims,
                ggml_type,
                offset: data_offset + start,
                nbytes,
            });
        }
        Ok(GgufFile {
            path: file,
            map,
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            by_name,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data alignment in bytes (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> usize {
        self.map.len()
    }

    /// The metadata key-value pairs.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Tensor names in file order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// The info of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// True if the file has a tensor called `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Tensor `name` with its row-major shape, pointing into the map (zero-copy).
    /// Block-quantized tensors keep their [`DType::Block`] format.
    pub fn tensor(&self, name: &str) -> Result<Tensor, GgufError> {
        let t_err = |msg: String| GgufError::Tensor {
            file: self.path.clone(),
            tensor: name.to_string(),
            msg,
        };
        let info = self
            .tensor_info(name)
            .ok_or_else(|| t_err("no such tensor".into()))?;
        let dtype = info.dtype().ok_or_else(|| {
            t_err(format!(
                "egret does not support ggml type {}",
                info.ggml_type
            ))
        })?;
        Tensor::from_mmap(
            dtype,
            info.shape(),
            self.map.clone(),
            info.offset,
            info.nbytes,
        )
        .map_err(|e| t_err(e.to_string()))
    }

    /// The model's tokenizer as HF `tokenizer.json` text (see
    /// [`super::tokenizer`]), or `None` if the file has none.
    pub fn tokenizer_json(&self) -> Result<Option<String>, GgufError> {
        super::tokenizer::tokenizer_json(&self.metadata)
    }

    /// The raw bytes of tensor `name` (packed blocks for quantized types).
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        let info = self.tensor_info(name)?;
        self.map.get(info.offset..info.offset + info.nbytes)
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? / a * a)
}
