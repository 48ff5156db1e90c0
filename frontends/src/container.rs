//! The `.egret` container: egret's own model format, read by every command.
//!
//! A container is a directory (named `*.egret`) holding
//!
//! * `model.txt`: the model in egret's text form ([`egret_ir::text`]), whose
//!   large tensors are `@name` references;
//! * `weights.safetensors`: the referenced tensors, keyed by those names;
//! * `tokenizer.json` (optional): the tokenizer the source model carried.
//!
//! Tensors whose dtype safetensors cannot name (GGML blocks, unpacked 4- and
//! 2-bit integers, float4) are stored as raw `U8` bytes; the header's
//! `__metadata__` then records the egret dtype and shape under
//! `egret.dtype.<name>` and `egret.shape.<name>`. Every other tensor keeps its
//! native safetensors dtype, so ordinary safetensors tools can read the weights.
//!
//! [`write`] builds the container in a temporary sibling directory and renames
//! it into place, so a reader never sees a half-written container; an existing
//! container at the destination is replaced, anything else there is an error.
//!
//! [`load`] treats the directory as hostile: the three files must be regular
//! files (no symlinks out of the container), the text files are size-bounded,
//! the weights go through the validating [`SafetensorsFile`] reader (memory
//! mapped, zero-copy for native dtypes), every raw tensor's recorded dtype and
//! shape must match its byte length, a reference to a missing tensor is an error,
//! and the parsed graph must pass the verifier.

use crate::safetensors::{SafetensorsError, SafetensorsFile};
use crate::Loaded;
use egret_ir::{DType, Model, Tensor};
use safetensors::{Dtype, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The text form inside a container.
pub const MODEL_FILE: &str = "model.txt";
/// The weights inside a container.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The optional tokenizer inside a container.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The first line of `model.txt` (a comment for the text parser).
const MAGIC: &str = "# egret container 1";
/// Largest `model.txt` or `tokenizer.json` read into memory.
const MAX_TEXT_FILE: u64 = 1 << 30;
/// Metadata key prefixes for tensors stored as raw bytes.
const DTYPE_KEY: &str = "egret.dtype.";
const SHAPE_KEY: &str = "egret.shape.";

/// Every way reading or writing a container can fail.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A file could not be read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The container is malformed.
    #[error("{path}: {msg}")]
    Invalid {
        /// The file or directory.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// The weights file is malformed.
    #[error(transparent)]
    Weights(#[from] SafetensorsError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn invalid(path: &Path, msg: impl Into<String>) -> ContainerError {
    ContainerError::Invalid {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// The safetensors dtype egret stores `d` as natively, if any.
fn native_dtype(d: DType) -> Option<Dtype> {
    Some(match d {
        DType::Bool => Dtype::BOOL,
        DType::U8 => Dtype::U8,
        DType::I8 => Dtype::I8,
        DType::F8E5M2 => Dtype::F8_E5M2,
        DType::F8E4M3FN => Dtype::F8_E4M3,
        DType::F8E4M3FNUZ => Dtype::F8_E4M3FNUZ,
        DType::F8E5M2FNUZ => Dtype::F8_E5M2FNUZ,
        DType::F8E8M0 => Dtype::F8_E8M0,
        DType::I16 => Dtype::I16,
        DType::U16 => Dtype::U16,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I32 => Dtype::I32,
        DType::U32 => Dtype::U32,
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        DType::U64 => Dtype::U64,
        _ => return None,
    })
}

/// One tensor as safetensors sees it: native, or raw bytes with a 1-D shape.
struct Entry<'a> {
    tensor: &'a Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl View for Entry<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.tensor.bytes())
    }
    fn data_len(&self) -> usize {
        self.tensor.bytes().len()
    }
}

fn dims_text(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Write `model` (and the tokenizer, if any) as a container at `path`,
/// atomically: built beside `path`, then renamed into place.
pub fn write(
    path: &Path,
    model: &Model,
    tokenizer_json: Option<&str>,
) -> Result<(), ContainerError> {
    let (text, weights) = egret_ir::text::print_model_with_weights(model);
    let mut meta = HashMap::new();
    let mut entries = Vec::with_capacity(weights.len());
    for (name, t) in &weights {
        if t.dtype() == DType::String {
            return Err(invalid(path, format!("weight `{name}` is a string tensor")));
        }
        let (dtype, shape) = match native_dtype(t.dtype()) {
            Some(d) => (d, t.shape().to_vec()),
            None => {
                meta.insert(format!("{DTYPE_KEY}{name}"), t.dtype().name().to_string());
                meta.insert(format!("{SHAPE_KEY}{name}"), dims_text(t.shape()));
                (Dtype::U8, vec![t.bytes().len()])
            }
        };
        entries.push((
            name.as_str(),
            Entry {
                tensor: t,
                dtype,
                shape,
            },
        ));
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| invalid(path, "not a file name"))?
        .to_string_lossy()
        .to_string();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let filled = (|| {
        let m = tmp.join(MODEL_FILE);
        std::fs::write(&m, format!("{MAGIC}\n{text}")).map_err(io_err(&m))?;
        let w = tmp.join(WEIGHTS_FILE);
        // `safetensors` writes an invalid header for no tensors with an empty
        // metadata map (`{},"__metadata__":{}}`), so omit an empty map.
        safetensors::serialize_to_file(entries, (!meta.is_empty()).then_some(meta), &w)
            .map_err(|e| invalid(&w, e.to_string()))?;
        if let Some(tok) = tokenizer_json {
            let t = tmp.join(TOKENIZER_FILE);
            std::fs::write(&t, tok).map_err(io_err(&t))?;
        }
        replace_dir(
            &tmp,
            &parent.join(format!(".{file_name}.old-{}", std::process::id())),
            path,
        )
    })();
    if filled.is_err() {
        // Best effort: the error being returned matters more than the cleanup's.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    filled
}

/// Move the finished directory `tmp` to `path`, replacing a container there
/// (moved aside to `old` first, then deleted).
fn replace_dir(tmp: &Path, old: &Path, path: &Path) -> Result<(), ContainerError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return std::fs::rename(tmp, path).map_err(io_err(path));
    };
    if !meta.is_dir() || !path.join(MODEL_FILE).is_file() {
        return Err(invalid(
            path,
            "exists and is not an egret container; not replacing it",
        ));
    }
    std::fs::rename(path, old).map_err(io_err(path))?;
    std::fs::rename(tmp, path).map_err(io_err(path))?;
    std::fs::remove_dir_all(old).map_err(io_err(old))
}

/// `dir/name` if it is a regular file (not a symlink); `None` if absent.
fn member(dir: &Path, name: &str) -> Result<Option<PathBuf>, ContainerError> {
    let p = dir.join(name);
    match std::fs::symlink_metadata(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&p)(e)),
        Ok(m) if m.file_type().is_file() => Ok(Some(p)),
        Ok(_) => Err(invalid(&p, "must be a regular file inside the container")),
    }
}

fn read_text(path: &Path) -> Result<String, ContainerError> {
    crate::text_file::read(path, MAX_TEXT_FILE).map_err(io_err(path))
}

/// The tensors of a weights file, with raw-byte entries turned back into their
/// recorded dtype and shape.
fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>, ContainerError> {
    let file = SafetensorsFile::open(path)?;
    let meta = file.metadata();
    let mut out = HashMap::new();
    for name in file.names() {
        let t = file.tensor(name)?;
        let t = match meta.get(&format!("{DTYPE_KEY}{name}")) {
            None => t,
            Some(d) => {
                let bad = |msg: String| invalid(path, format!("`{name}`: {msg}"));
                let dtype: DType = d.parse().map_err(bad)?;
                let shape = meta
                    .get(&format!("{SHAPE_KEY}{name}"))
                    .ok_or_else(|| bad("raw tensor without a recorded shape".into()))?;
                let shape = shape
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad(format!("bad shape `{shape}`")))?;
                if t.dtype() != DType::U8 || dtype == DType::String {
                    return Err(bad(format!("a {dtype} tensor stored as {}", t.dtype())));
                }
                Tensor::from_bytes(dtype, shape, t.bytes()).map_err(|e| bad(e.to_string()))?
            }
        };
        out.insert(name.to_string(), t);
    }
    Ok(out)
}

/// Read the container directory `path`.
pub fn load(path: &Path) -> Result<Loaded, ContainerError> {
    if !path.is_dir() {
        return Err(invalid(path, "an .egret container must be a directory"));
    }
    let missing = |f: &str| invalid(path, format!("no `{f}` in the container"));
    let model_path = member(path, MODEL_FILE)?.ok_or_else(|| missing(MODEL_FILE))?;
    let text = read_text(&model_path)?;
    if text.lines().next() != Some(MAGIC) {
        return Err(invalid(
            &model_path,
            format!("does not start with `{MAGIC}`"),
        ));
    }
    let weights = match member(path, WEIGHTS_FILE)? {
        Some(w) => read_weights(&w)?,
        None => HashMap::new(),
    };
    let model = egret_ir::text::parse_model(&text, &|n| weights.get(n).cloned())
        .map_err(|e| invalid(&model_path, e.to_string()))?;
    egret_ir::verify::verify(&model.graph).map_err(|e| invalid(&model_path, e.to_string()))?;
    let tokenizer_json = member(path, TOKENIZER_FILE)?
        .map(|t| read_text(&t))
        .transpose()?;
    Ok(Loaded {
        model,
        tokenizer_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ir::{BlockFormat, Graph, OpCall};

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("egret-container-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `y = DequantizeBlocks(q) + w` with a large f32 weight and a q8_0 one.
    fn model() -> Model {
        let mut g = Graph::new("m");
        let w: Vec<f32> = (0..64).map(|i| i as f32 * 0.5 - 3.0).collect();
        let w = g.add_const("w", Tensor::from_vec(vec![2, 32], w).unwrap());
        let mut block = vec![0u8; 34];
        block[0..2].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
        for (i, b) in block[2..].iter_mut().enumerate() {
            *b = (i as i8 - 16) as u8;
        }
        let q = [block.clone(), block].concat();
        let q = Tensor::from_bytes(DType::Block(BlockFormat::Q8_0), vec![2, 32], &q).unwrap();
        let q = g.add_const("q", q);
        let d = g
            .call1(
                "dq",
                OpCall {
                    domain: "egret".into(),
                    ..OpCall::new("DequantizeBlocks")
                },
                &[q],
            )
            .unwrap();
        let y = g.call1("y", OpCall::new("Add"), &[d, w]).unwrap();
        g.outputs.push(y);
        Model {
            graph: g,
            ..Default::default()
        }
    }

    #[test]
    fn a_model_without_weights_round_trips() {
        let dir = temp_dir("empty");
        let p = dir.join("m.egret");
        let mut g = Graph::new("g");
        let x = g.add_input("x", egret_ir::ValueType::tensor(DType::F32, None));
        let y = g.call1("y", OpCall::new("Relu"), &[x]).unwrap();
        g.outputs.push(y);
        let m = Model {
            graph: g,
            ..Default::default()
        };
        write(&p, &m, None).unwrap();
        let l = load(&p).unwrap();
        assert_eq!(
            egret_ir::text::print_model(&l.model),
            egret_ir::text::print_model(&m)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trip_keeps_text_weights_and_tokenizer() {
        let dir = temp_dir("rt");
        let p = dir.join("m.egret");
        let m = model();
        write(&p, &m, Some("{\"tok\": 1}")).unwrap();
        // Writing again replaces the container.
        write(&p, &m, Some("{\"tok\": 2}")).unwrap();
        let l = load(&p).unwrap();
        assert_eq!(
            egret_ir::text::print_model(&l.model),
            egret_ir::text::print_model(&m)
        );
        assert_eq!(l.tokenizer_json.as_deref(), Some("{\"tok\": 2}"));
        let st = SafetensorsFile::open(&p.join(WEIGHTS_FILE)).unwrap();
        assert_eq!(st.tensor("w").unwrap().dtype(), DType::F32);
        let q = &l.model.graph;
        let qt = q
            .node_ids()
            .find_map(|id| match &q.node(id).op {
                egret_ir::Op::Const(t) if t.dtype() != DType::F32 => Some(t.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(qt.dtype(), DType::Block(BlockFormat::Q8_0));
        assert_eq!(qt.shape(), &[2, 32]);
        assert!(
            std::fs::read_dir(&dir).unwrap().count() == 1,
            "temp dirs left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_to_replace_other_directories() {
        let dir = temp_dir("other");
        let p = dir.join("x.egret");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("keep.txt"), "x").unwrap();
        let e = write(&p, &model(), None).unwrap_err().to_string();
        assert!(e.contains("not an egret container"), "{e}");
        assert!(p.join("keep.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_containers_are_errors() {
        let dir = temp_dir("hostile");
        let p = dir.join("m.egret");
        write(&p, &model(), None).unwrap();
        let text = std::fs::read_to_string(p.join(MODEL_FILE)).unwrap();
        let weights = std::fs::read(p.join(WEIGHTS_FILE)).unwrap();
        let err = |p: &Path| load(p).unwrap_err().to_string();

        // A missing weight.
        std::fs::write(p.join(MODEL_FILE), text.replace("@w", "@nope")).unwrap();
        assert!(err(&p).contains("`@nope` not found"), "{}", err(&p));
        // No magic line.
        std::fs::write(p.join(MODEL_FILE), text.replacen(MAGIC, "", 1)).unwrap();
        assert!(err(&p).contains("does not start with"), "{}", err(&p));
        std::fs::write(p.join(MODEL_FILE), &text).unwrap();
        // Truncated weights.
        std::fs::write(p.join(WEIGHTS_FILE), &weights[..weights.len() - 3]).unwrap();
        assert!(err(&p).contains(WEIGHTS_FILE), "{}", err(&p));
        // A raw tensor whose recorded shape does not fit its bytes.
        let mut lied = weights.clone();
        let at = lied.windows(6).position(|w| w == b"\"2,32\"").unwrap();
        lied[at + 1] = b'3';
        std::fs::write(p.join(WEIGHTS_FILE), &lied).unwrap();
        assert!(err(&p).contains("`q`"), "{}", err(&p));
        std::fs::write(p.join(WEIGHTS_FILE), &weights).unwrap();
        // A symlinked member.
        #[cfg(unix)]
        {
            let outside = dir.join("outside.txt");
            std::fs::write(&outside, &text).unwrap();
            std::fs::remove_file(p.join(MODEL_FILE)).unwrap();
            std::os::unix::fs::symlink(&outside, p.join(MODEL_FILE)).unwrap();
            assert!(err(&p).contains("regular file"), "{}", err(&p));
        }
        // Not a directory, or empty.
        assert!(err(&dir.join("nope.egret")).contains("directory"));
        std::fs::create_dir(dir.join("e.egret")).unwrap();
        assert!(err(&dir.join("e.egret")).contains("no `model.txt`"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
