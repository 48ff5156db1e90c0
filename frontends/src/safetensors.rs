//! safetensors checkpoints + HF `config.json` → an architecture graph.
//!
//! A model is named by its `.safetensors` file or by the folder holding it; the
//! folder must hold `config.json` and may hold `tokenizer.json` (returned as
//! [`Loaded::tokenizer_json`]). Sharded checkpoints are read through
//! `model.safetensors.index.json`.
//!
//! Files are memory-mapped and every tensor points into the map
//! ([`Tensor::from_mmap`]): loading copies nothing, whatever the model size.
//!
//! ## Why the `safetensors` crate
//! Its `read_metadata` is the format's reference header parser: it bounds the
//! header size (100 MB), checks that the tensors' byte ranges are contiguous,
//! non-overlapping, exactly sized for dtype × shape (with overflow checks) and
//! that they end exactly at the end of the file. Re-implementing those rules
//! would only add a second, less-tested copy; this module adds the mapping to
//! egret dtypes and the zero-copy views.

use crate::arch::{self, ArchError, HfConfig, WeightSource};
use crate::Loaded;
use egret_ir::{DType, Tensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest `config.json` / `tokenizer.json` / index file read into memory.
const MAX_TEXT_FILE: u64 = 256 << 20;

/// Every way loading a safetensors model can fail.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// A file could not be read or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is malformed (header, index, dtype, size).
    #[error("{path}: {msg}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// Building the architecture from `config.json` failed.
    #[error("{path}: {source}")]
    Arch {
        /// The model folder.
        path: String,
        /// The builder's error.
        source: ArchError,
    },
}

/// One memory-mapped `.safetensors` file: its tensor table, validated.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Arc<memmap2::Mmap>,
    /// name → (dtype, shape, absolute byte offset, byte length).
    entries: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
}

#[derive(Clone, Debug)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    offset: usize,
    len: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SafetensorsError + '_ {
    move |source| SafetensorsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn invalid(path: &Path, msg: String) -> SafetensorsError {
    SafetensorsError::Invalid {
        path: path.display().to_string(),
        msg,
    }
}

impl SafetensorsFile {
    /// Map `path` and validate its header against the file size.
    pub fn open(path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        if size < 8 {
            return Err(invalid(
                path,
                format!("{size} bytes: too short for a header"),
            ));
        }
        // SAFETY: the map is read-only. Like every mmap-based loader we rely on the
        // file not being truncated while the model is alive.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))?);
        let (header_len, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| invalid(path, format!("bad header: {e}")))?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::new();
        for (name, info) in meta.tensors() {
            let (start, end) = info.data_offsets;
            // read_metadata checked start <= end and that the data ends at EOF.
            let offset = data_start
                .checked_add(start)
                .filter(|&o| o <= map.len() && end >= start && end - start <= map.len() - o)
                .ok_or_else(|| invalid(path, format!("`{name}`: byte range outside the file")))?;
            entries.insert(
                name,
                Entry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    offset,
                    len: end - start,
                },
            );
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            map,
            entries,
            metadata: meta
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The header's `__metadata__` map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The tensor `name`, pointing into the map (bool data is copied to be
    /// validated; misaligned data is copied).
    pub fn tensor(&self, name: &str) -> Result<Tensor, SafetensorsError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| invalid(&self.path, format!("no tensor `{name}`")))?;
        let dtype = egret_dtype(e.dtype).ok_or_else(|| {
            invalid(
                &self.path,
                format!("`{name}`: unsupported dtype {:?}", e.dtype),
            )
        })?;
        Tensor::from_mmap(dtype, e.shape.clone(), self.map.clone(), e.offset, e.len)
            .map_err(|err| invalid(&self.path, format!("`{name}`: {err}")))
    }
}

/// The egret dtype of a safetensors dtype; `None` for packed sub-byte floats
/// (F4, F6) and complex numbers.
fn egret_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::F8_E5M2 => DType::F8E5M2,
        Dtype::F8_E4M3 => DType::F8E4M3FN,
        Dtype::F8_E4M3FNUZ => DType::F8E4M3FNUZ,
        Dtype::F8_E5M2FNUZ => DType::F8E5M2FNUZ,
        Dtype::F8_E8M0 => DType::F8E8M0,
        Dtype::I16 => DType::I16,
        Dtype::U16 => DType::U16,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::U64 => DType::U64,
        _ => return None,
    })
}

/// A checkpoint: one or more safetensors files, looked up by tensor name.
pub struct Checkpoint {
    files: Vec<SafetensorsFile>,
    /// tensor name → index into `files`.
    owner: HashMap<String, usize>,
}

impl Checkpoint {
    /// Open the given shard files. A tensor name in two shards is an error.
    pub fn open(paths: &[PathBuf]) -> Result<Checkpoint, SafetensorsError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut owner = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            let f = SafetensorsFile::open(p)?;
            for name in f.entries.keys() {
                if owner.insert(name.clone(), i).is_some() {
                    return Err(invalid(p, format!("tensor `{name}` is in two shards")));
                }
            }
            files.push(f);
        }
        Ok(Checkpoint { files, owner })
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.owner.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

impl WeightSource for Checkpoint {
    fn get(&self, name: &str) -> Result<Tensor, ArchError> {
        let f = self
            .owner
            .get(name)
            .and_then(|&i| self.files.get(i))
            .ok_or_else(|| ArchError::MissingWeight(name.to_string()))?;
        f.tensor(name).map_err(|e| ArchError::BadWeight {
            name: name.to_string(),
            msg: e.to_string(),
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.owner.contains_key(name)
    }
}

/// Read a small text file beside the weights, bounded in size.
fn read_text(path: &Path) -> Result<String, SafetensorsError> {
    crate::text_file::read(path, MAX_TEXT_FILE).map_err(io_err(path))
}

/// The weight files of a model folder: `model.safetensors`, or the shards an
/// index file names (each confined to the folder).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, SafetensorsError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(invalid(
            dir,
            "no model.safetensors or model.safetensors.index.json".into(),
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(&read_text(&index)?).map_err(|e| invalid(&index, e.to_string()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid(&index, "no `weight_map` object".into()))?;
    let mut shards: Vec<&str> = Vec::new();
    for f in map.values() {
        let f = f
            .as_str()
            .ok_or_else(|| invalid(&index, format!("shard name {f} is not a string")))?;
        let plain = Path::new(f).components().count() == 1
            && matches!(
                Path::new(f).components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain {
            return Err(invalid(
                &index,
                format!("shard `{f}` is not a file name in the folder"),
            ));
        }
        if !shards.contains(&f) {
            shards.push(f);
        }
    }
    shards.sort_unstable();
    Ok(shards.into_iter().map(|f| dir.join(f)).collect())
}

/// Load a model from its `.safetensors` file or its folder.
pub fn load(path: &Path) -> Result<Loaded, SafetensorsError> {
    let (dir, files) = if path.is_dir() {
        (path.to_path_buf(), weight_files(path)?)
    } else {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        (dir, vec![path.to_path_buf()])
    };
    let cfg_path = dir.join("config.json");
    if !cfg_path.is_file() {
        return Err(invalid(&dir, "no config.json beside the weights".into()));
    }
    let arch_err = |source| SafetensorsError::Arch {
        path: dir.display().to_string(),
        source,
    };
    let cfg = HfConfig::parse(&read_text(&cfg_path)?).map_err(arch_err)?;
    let ckpt = Checkpoint::open(&files)?;
    let mut model = arch::build(&cfg, &ckpt).map_err(arch_err)?;
    model
        .metadata
        .insert("source".into(), path.display().to_string());
    model.metadata.insert("format".into(), "safetensors".into());
    let tok = dir.join("tokenizer.json");
    let tokenizer_json = if tok.is_file() {
        Some(read_text(&tok)?)
    } else {
        None
    };
    Ok(Loaded {
        model,
        tokenizer_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Write `bytes` to a fresh temp file and return its path.
    fn temp_file(bytes: &[u8]) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "egret-st-{}-{}.safetensors",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        p
    }

    /// A file with the given header JSON and data bytes.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn open(bytes: &[u8]) -> Result<SafetensorsFile, SafetensorsError> {
        let p = temp_file(bytes);
        let r = SafetensorsFile::open(&p);
        std::fs::remove_file(&p).unwrap();
        r
    }

    #[test]
    fn every_dtype_reads_its_values() {
        let cases: [(&str, DType, Vec<u8>, Vec<f64>); 12] = [
            ("F64", DType::F64, 2.5f64.to_le_bytes().to_vec(), vec![2.5]),
            (
                "F32",
                DType::F32,
                (-1.5f32).to_le_bytes().to_vec(),
                vec![-1.5],
            ),
            (
                "F16",
                DType::F16,
                half::f16::from_f32(0.5).to_le_bytes().to_vec(),
                vec![0.5],
            ),
            (
                "BF16",
                DType::BF16,
                half::bf16::from_f32(-3.0).to_le_bytes().to_vec(),
                vec![-3.0],
            ),
            (
                "I64",
                DType::I64,
                (-7i64).to_le_bytes().to_vec(),
                vec![-7.0],
            ),
            (
                "I32",
                DType::I32,
                (-6i32).to_le_bytes().to_vec(),
                vec![-6.0],
            ),
            (
                "I16",
                DType::I16,
                (-5i16).to_le_bytes().to_vec(),
                vec![-5.0],
            ),
            ("I8", DType::I8, vec![0xfc], vec![-4.0]),
            ("U8", DType::U8, vec![200], vec![200.0]),
            (
                "U16",
                DType::U16,
                60000u16.to_le_bytes().to_vec(),
                vec![60000.0],
            ),
            ("U32", DType::U32, 7u32.to_le_bytes().to_vec(), vec![7.0]),
            ("BOOL", DType::Bool, vec![1], vec![1.0]),
        ];
        for (st, dt, bytes, want) in cases {
            let n = bytes.len();
            let h = format!(r#"{{"t":{{"dtype":"{st}","shape":[1],"data_offsets":[0,{n}]}}}}"#);
            let f = open(&file(&h, &bytes)).unwrap();
            let t = f.tensor("t").unwrap();
            assert_eq!(t.dtype(), dt, "{st}");
            assert_eq!(t.to_f64_vec().unwrap(), want, "{st}");
        }
        for (st, dt) in [
            ("F8_E4M3", DType::F8E4M3FN),
            ("F8_E5M2", DType::F8E5M2),
            ("F8_E4M3FNUZ", DType::F8E4M3FNUZ),
            ("F8_E5M2FNUZ", DType::F8E5M2FNUZ),
            ("F8_E8M0", DType::F8E8M0),
        ] {
            let h = format!(r#"{{"t":{{"dtype":"{st}","shape":[2],"data_offsets":[0,2]}}}}"#);
            let t = open(&file(&h, &[0x38, 0xc0])).unwrap().tensor("t").unwrap();
            assert_eq!(
                (t.dtype(), t.as_slice::<u8>().unwrap()),
                (dt, &[0x38u8, 0xc0][..])
            );
        }
        let h = r#"{"t":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#;
        let err = open(&file(h, &[0; 8])).unwrap().tensor("t").unwrap_err();
        assert!(err.to_string().contains("unsupported dtype"), "{err}");
    }

    #[test]
    fn tensors_point_into_the_map() {
        // 8-byte header length + 64-byte header keeps the f32 data 4-aligned.
        let mut h = r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#.to_string();
        while h.len() < 64 {
            h.push(' ');
        }
        let data: Vec<u8> = [1f32, 2., 3., 4.]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f = open(&file(&h, &data)).unwrap();
        let (a, b) = (f.tensor("a").unwrap(), f.tensor("a").unwrap());
        assert_eq!(a.shape(), &[2, 2]);
        assert_eq!(a.as_slice::<f32>().unwrap(), &[1., 2., 3., 4.]);
        let base = f.map.as_ptr() as usize;
        assert_eq!(a.bytes().as_ptr() as usize, base + 8 + 64, "not zero-copy");
        assert_eq!(b.bytes().as_ptr(), a.bytes().as_ptr());
        assert_eq!(f.names(), vec!["a"]);
    }

    #[test]
    fn hostile_files_are_rejected() {
        let t = |h: &str, data: &[u8]| open(&file(h, data)).err().map(|e| e.to_string());
        let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(t(ok, &[0; 8]).is_none());
        // Too short, header length beyond the file, huge header length.
        assert!(open(&[1, 2, 3]).is_err());
        let mut v = file(ok, &[0; 8]);
        v[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(open(&v).is_err());
        v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(open(&v).is_err());
        let bad = [
            (ok, &[0u8; 7][..]), // data truncated
            (ok, &[0u8; 9][..]), // trailing bytes
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ), // size != shape
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
                &[0; 8],
            ), // reversed
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999]}}"#,
                &[0; 8],
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            (
                r#"{"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 8],
            ),
            ("{not json", &[0; 8]),
            ("[1,2]", &[]),
        ];
        for (h, d) in bad {
            assert!(t(h, d).is_some(), "accepted {h}");
        }
    }

    #[test]
    fn index_shards_must_stay_in_the_folder() {
        let dir = std::env::temp_dir().join(format!("egret-st-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let idx = dir.join("model.safetensors.index.json");
        for (json, ok) in [
            (
                r#"{"weight_map":{"a":"s1.safetensors","b":"s0.safetensors","c":"s1.safetensors"}}"#,
                true,
            ),
            (r#"{"weight_map":{"a":"../x.safetensors"}}"#, false),
            (r#"{"weight_map":{"a":"/etc/passwd"}}"#, false),
            (r#"{"weight_map":{"a":3}}"#, false),
            (r#"{"nothing":1}"#, false),
        ] {
            std::fs::write(&idx, json).unwrap();
            let r = weight_files(&dir);
            assert_eq!(r.is_ok(), ok, "{json}");
            if let Ok(files) = r {
                assert_eq!(
                    files,
                    vec![dir.join("s0.safetensors"), dir.join("s1.safetensors")]
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
