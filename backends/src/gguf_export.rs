//! egret model → GGUF v3, with the metadata of the GGUF file it was loaded from.
//!
//! [`write`] copies every metadata pair of the *template* (the source GGUF) in
//! its order and type, except `general.file_type`, which is recomputed from the
//! tensor types written (see [`file_type`]). Then, for every tensor of the
//! template in template order, it writes the model's graph constant of the same
//! name: whatever dtype it has now (a block format the quantize pass chose, f32,
//! f16, ...), with the template's dims.
//!
//! * **Layout** (the inverse of `egret_frontends::gguf::reader`): `"GGUF"`, u32
//!   version 3, u64 tensor count, u64 pair count, the pairs, the tensor infos
//!   (name, u32 n_dims, u64 dims innermost first, u32 ggml type, u64 offset
//!   relative to the data section), zero padding to `general.alignment`
//!   (default 32), then each tensor's bytes at an aligned offset.
//! * **llama's permuted projections.** llama.cpp stores `attn_q` / `attn_k`
//!   with the rows of each head interleaved; the llama loader puts them back in
//!   HF order (`egret_frontends::arch::llama::unpermute_rows`), so the writer
//!   applies llama.cpp's permutation again (`egret_frontends::arch::llama::permute_rows`): a model exported
//!   unchanged gets its tensors back byte for byte.
//! * **Errors** name the tensor: a template tensor the model has no constant
//!   for, a shape that differs from the template's, or a dtype GGUF cannot hold
//!   (egret's own `i4s_g*` / `i4a_g*` group formats have no GGML type id).
//! * The file is written to a temporary sibling and renamed into place.

use egret_frontends::arch::llama::permute_rows;
use egret_frontends::gguf::{GgmlType, GgufError, GgufFile, MetaType, MetaValue, TensorInfo};
use egret_ir::{Model, Op, OutletId, Tensor};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The GGUF version written.
pub const VERSION: u32 = 3;
/// The metadata key holding llama.cpp's `llama_ftype`.
pub const FILE_TYPE_KEY: &str = "general.file_type";

/// Every way writing a GGUF file can fail.
#[derive(Debug, thiserror::Error)]
pub enum GgufExportError {
    /// The template could not be read.
    #[error("template: {0}")]
    Template(#[from] GgufError),
    /// A template tensor has no constant of that name in the model.
    #[error("tensor `{0}`: the model has no constant of that name")]
    MissingTensor(String),
    /// A tensor cannot be written (its dtype has no GGML type, its shape differs
    /// from the template's, its rows are not whole blocks).
    #[error("tensor `{tensor}`: {msg}")]
    Tensor {
        /// The tensor name.
        tensor: String,
        /// What is wrong.
        msg: String,
    },
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What [`write`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufSummary {
    /// Tensors written.
    pub tensors: usize,
    /// Tensors whose GGML type differs from the template's.
    pub retyped: usize,
    /// The `general.file_type` written (llama.cpp's `llama_ftype`).
    pub file_type: u32,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// Write `model` as a GGUF file at `out`, with the metadata and tensor list of
/// `template` (the GGUF file the model was loaded from).
pub fn write(model: &Model, template: &Path, out: &Path) -> Result<GgufSummary, GgufExportError> {
    let file = GgufFile::open(template)?;
    let consts = named_consts(model);
    let heads = llama_heads(&file)?;
    let mut tensors = Vec::with_capacity(file.tensor_infos().len());
    for info in file.tensor_infos() {
        let t = consts
            .get(info.name.as_str())
            .ok_or_else(|| GgufExportError::MissingTensor(info.name.clone()))?;
        tensors.push(tensor_for(info, t, heads)?);
    }
    let file_type = file_type(&file, &tensors);
    let retyped = file
        .tensor_infos()
        .iter()
        .zip(&tensors)
        .filter(|(i, t)| i.ggml_type != t.ty)
        .count();
    let bytes = encode_to(out, &file, &tensors, file_type)?;
    Ok(GgufSummary {
        tensors: tensors.len(),
        retyped,
        file_type,
        bytes,
    })
}

/// The main graph's constants by value name (the first of a name wins).
fn named_consts(model: &Model) -> HashMap<&str, &Tensor> {
    let g = &model.graph;
    let mut m = HashMap::new();
    for id in g.node_ids() {
        if let Op::Const(t) = &g.node(id).op {
            m.entry(g.value_name(OutletId::new(id, 0))).or_insert(t);
        }
    }
    m
}

/// One tensor ready to write.
struct Out {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Tensor,
}

/// Query and key/value head counts of a llama file, whose `attn_q` / `attn_k`
/// rows llama.cpp permutes; `None` for other architectures.
fn llama_heads(file: &GgufFile) -> Result<Option<(usize, usize)>, GgufError> {
    let md = file.metadata();
    if md.opt_str("general.architecture")? != Some("llama") {
        return Ok(None);
    }
    let heads = md.get_u32(&md.arch_key("attention.head_count")?)?;
    let kv = md
        .opt_u32(&md.arch_key("attention.head_count_kv")?)?
        .unwrap_or(heads);
    Ok(Some((heads as usize, kv as usize)))
}

/// Check the model's tensor `t` against the template's `info` and put it in
/// file form.
fn tensor_for(
    info: &TensorInfo,
    t: &Tensor,
    heads: Option<(usize, usize)>,
) -> Result<Out, GgufExportError> {
    let err = |msg: String| GgufExportError::Tensor {
        tensor: info.name.clone(),
        msg,
    };
    let ty = GgmlType::from_dtype(t.dtype()).ok_or_else(|| {
        err(format!(
            "{} has no GGML type; GGUF cannot hold it",
            t.dtype()
        ))
    })?;
    if t.shape() != info.shape() {
        return Err(err(format!(
            "shape {:?} differs from the template's {:?}",
            t.shape(),
            info.shape()
        )));
    }
    let inner = t.shape().last().copied().unwrap_or(1);
    if ty.byte_size(inner, t.numel()) != Some(t.bytes().len()) {
        return Err(err(format!(
            "{} bytes of {ty} do not make shape {:?}",
            t.bytes().len(),
            t.shape()
        )));
    }
    let part = info
        .name
        .strip_prefix("blk.")
        .and_then(|s| s.split_once('.'));
    let permute = match (part.map(|p| p.1), heads) {
        (Some("attn_q.weight"), Some((h, _))) => Some(h),
        (Some("attn_k.weight"), Some((_, kv))) => Some(kv),
        _ => None,
    };
    let data = match permute {
        Some(h) => permute_rows(t, h).map_err(err)?,
        None => t.clone(),
    };
    Ok(Out {
        name: info.name.clone(),
        dims: info.ggml_dims.clone(),
        ty,
        data,
    })
}

/// llama.cpp's `llama_ftype` for a file whose main weights are `ty`.
fn ftype_of(ty: GgmlType) -> u32 {
    match ty.name() {
        "F16" => 1,
        "Q4_0" => 2,
        "Q4_1" => 3,
        "Q8_0" => 7,
        "Q5_0" => 8,
        "Q5_1" => 9,
        "Q2_K" => 10,
        "Q3_K" => 12,
        "Q4_K" => 15,
        "Q5_K" => 17,
        "Q6_K" => 18,
        "BF16" => 32,
        _ => 0,
    }
}

/// The type holding the most elements among the matrices (tensors of 2+ dims).
fn dominant<'a>(tensors: impl Iterator<Item = (&'a [u64], GgmlType)>) -> Option<GgmlType> {
    let mut elems: HashMap<GgmlType, u64> = HashMap::new();
    for (dims, ty) in tensors.filter(|(d, _)| d.len() >= 2) {
        *elems.entry(ty).or_default() += dims.iter().product::<u64>();
    }
    elems.into_iter().max_by_key(|&(t, n)| (n, t)).map(|e| e.0)
}

/// `general.file_type` for the tensors written: the template's value when the
/// dominant matrix type did not change (it may say more, e.g. `Q4_K_S` vs
/// `Q4_K_M`), else llama.cpp's `llama_ftype` of the new dominant type.
fn file_type(file: &GgufFile, tensors: &[Out]) -> u32 {
    let before = dominant(
        file.tensor_infos()
            .iter()
            .map(|i| (i.ggml_dims.as_slice(), i.ggml_type)),
    );
    let after = dominant(tensors.iter().map(|t| (t.dims.as_slice(), t.ty)));
    let old = file
        .metadata()
        .get(FILE_TYPE_KEY)
        .and_then(MetaValue::as_u32);
    match (old, after) {
        (Some(v), _) if before == after => v,
        (_, Some(t)) => ftype_of(t),
        (_, None) => 0,
    }
}

/// Write the file to a temporary sibling of `out`, then rename it; the size.
fn encode_to(
    out: &Path,
    file: &GgufFile,
    tensors: &[Out],
    file_type: u32,
) -> Result<u64, GgufExportError> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(
        ".{}.tmp{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| GgufExportError::Io { path, source }
    };
    let written = std::fs::File::create(&tmp).and_then(|f| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let n = encode(&mut w, file, tensors, file_type)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(n)
    });
    match written {
        Ok(n) => {
            std::fs::rename(&tmp, out).map_err(io(out))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io(&tmp)(e))
        }
    }
}

/// A writer that counts the bytes written.
struct Counted<W> {
    w: W,
    n: u64,
}

impl<W: Write> Counted<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        self.n += b.len() as u64;
        Ok(())
    }

    fn string(&mut self, s: &str) -> std::io::Result<()> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s.as_bytes())
    }

    fn pad_to(&mut self, align: u64) -> std::io::Result<()> {
        let pad = self.n.next_multiple_of(align) - self.n;
        self.put(&vec![0; pad as usize])
    }

    fn value(&mut self, v: &MetaValue) -> std::io::Result<()> {
        match v {
            MetaValue::U8(x) => self.put(&x.to_le_bytes()),
            MetaValue::I8(x) => self.put(&x.to_le_bytes()),
            MetaValue::U16(x) => self.put(&x.to_le_bytes()),
            MetaValue::I16(x) => self.put(&x.to_le_bytes()),
            MetaValue::U32(x) => self.put(&x.to_le_bytes()),
            MetaValue::I32(x) => self.put(&x.to_le_bytes()),
            MetaValue::F32(x) => self.put(&x.to_le_bytes()),
            MetaValue::Bool(x) => self.put(&[u8::from(*x)]),
            MetaValue::String(s) => self.string(s),
            MetaValue::Array(a) => {
                self.put(&type_id(a.elem).to_le_bytes())?;
                self.put(&(a.items.len() as u64).to_le_bytes())?;
                a.items.iter().try_for_each(|x| self.value(x))
            }
            MetaValue::U64(x) => self.put(&x.to_le_bytes()),
            MetaValue::I64(x) => self.put(&x.to_le_bytes()),
            MetaValue::F64(x) => self.put(&x.to_le_bytes()),
        }
    }
}

/// The on-disk tag of a metadata type (the inverse of `MetaType::from_id`).
fn type_id(t: MetaType) -> u32 {
    use MetaType::*;
    match t {
        U8 => 0,
        I8 => 1,
        U16 => 2,
        I16 => 3,
        U32 => 4,
        I32 => 5,
        F32 => 6,
        Bool => 7,
        String => 8,
        Array => 9,
        U64 => 10,
        I64 => 11,
        F64 => 12,
    }
}

/// The whole file into `w`; the number of bytes written.
fn encode(w: impl Write, file: &GgufFile, tensors: &[Out], file_type: u32) -> std::io::Result<u64> {
    let align = file.alignment();
    let md = file.metadata();
    let ft = MetaValue::U32(file_type);
    let has_ft = md.get(FILE_TYPE_KEY).is_some();
    let pairs: Vec<(&str, &MetaValue)> = md
        .iter()
        .map(|(k, v)| (k, if k == FILE_TYPE_KEY { &ft } else { v }))
        .chain((!has_ft).then_some((FILE_TYPE_KEY, &ft)))
        .collect();
    let mut c = Counted { w, n: 0 };
    c.put(b"GGUF")?;
    c.put(&VERSION.to_le_bytes())?;
    c.put(&(tensors.len() as u64).to_le_bytes())?;
    c.put(&(pairs.len() as u64).to_le_bytes())?;
    for (k, v) in pairs {
        c.string(k)?;
        c.put(&type_id(v.ty()).to_le_bytes())?;
        c.value(v)?;
    }
    let mut offset = 0u64;
    for t in tensors {
        c.string(&t.name)?;
        c.put(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            c.put(&d.to_le_bytes())?;
        }
        c.put(&t.ty.id().to_le_bytes())?;
        c.put(&offset.to_le_bytes())?;
        offset = (offset + t.data.bytes().len() as u64).next_multiple_of(align);
    }
    c.pad_to(align)?;
    for t in tensors {
        c.put(t.data.bytes())?;
        c.pad_to(align)?;
    }
    c.w.flush()?;
    Ok(c.n)
}
