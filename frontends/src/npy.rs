//! NumPy `.npy` files: read and write single tensors.
//!
//! Versions 1.0, 2.0 and 3.0 are read; files are written as 1.0 (2.0 only if the
//! header would not fit). Supported element types are the little-endian (or
//! byte-order-free) `f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`; anything else (big
//! endian, strings, structured dtypes, and egret dtypes numpy has no code for,
//! such as bf16) is rejected with [`NpyError::Unsupported`]. Fortran-order arrays
//! are transposed into C order on read.
//!
//! The header is parsed by a small, bounded parser: hostile headers produce
//! errors, never panics, and the data size implied by the shape is checked
//! against the file's length before anything is allocated for it.
//! Writes are atomic: a temporary file in the target directory, then a rename.

use egret_ir::{DType, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

const MAGIC: &[u8] = b"\x93NUMPY";
/// Headers longer than this are rejected (numpy itself refuses more than 10 000
/// bytes by default).
const MAX_HEADER: usize = 1 << 20;

/// Everything that can go wrong reading or writing a `.npy` file.
#[derive(Debug, Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a valid `.npy` file.
    #[error("not a valid .npy file: {0}")]
    Format(String),
    /// A valid file (or tensor) that egret cannot represent in `.npy` form.
    #[error("unsupported .npy content: {0}")]
    Unsupported(String),
}

fn format_err<T>(msg: impl Into<String>) -> Result<T, NpyError> {
    Err(NpyError::Format(msg.into()))
}

/// The numpy type code (without byte order) of a dtype, if `.npy` can hold it.
fn code(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F16 => "f2",
        DType::F32 => "f4",
        DType::F64 => "f8",
        DType::I8 => "i1",
        DType::I16 => "i2",
        DType::I32 => "i4",
        DType::I64 => "i8",
        DType::U8 => "u1",
        DType::U16 => "u2",
        DType::U32 => "u4",
        DType::U64 => "u8",
        DType::Bool => "b1",
        _ => return None,
    })
}

/// Parse a numpy `descr` such as `<f4` or `|b1`.
fn parse_descr(descr: &str) -> Result<DType, NpyError> {
    let unsupported = || {
        NpyError::Unsupported(format!(
            "dtype `{descr}` (egret reads little-endian f2/f4/f8/i1-i8/u1-u8/b1)"
        ))
    };
    let (order, code_str) =
        descr.split_at(descr.char_indices().nth(1).map_or(descr.len(), |(i, _)| i));
    if order == ">" && code_str.len() > 1 && !code_str.ends_with('1') {
        return Err(NpyError::Unsupported(format!("big-endian dtype `{descr}`")));
    }
    if !matches!(order, "<" | "|" | "=" | ">") {
        return Err(unsupported());
    }
    let code_str = if code_str == "?" { "b1" } else { code_str };
    DType::DENSE
        .iter()
        .copied()
        .find(|&d| code(d) == Some(code_str))
        .ok_or_else(unsupported)
}

/// A value in the header dict.
#[derive(Debug, PartialEq)]
enum PyVal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// A bounded parser for the header's Python dict literal.
struct HeaderParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl HeaderParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            format_err(format!(
                "header: expected `{}` at byte {}",
                c as char, self.i
            ))
        }
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.ws();
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return format_err(format!("header: expected a string at byte {}", self.i)),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or_else(|| NpyError::Format("header: unterminated string".into()))?;
        self.i = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec())
            .map_err(|_| NpyError::Format("header: string is not UTF-8".into()))
    }

    fn value(&mut self) -> Result<PyVal, NpyError> {
        self.ws();
        let rest = &self.s[self.i.min(self.s.len())..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(PyVal::Bool(true))
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(PyVal::Bool(false))
        } else if self.eat(b'(') {
            let mut dims = Vec::new();
            while !self.eat(b')') {
                self.ws();
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                // The L suffix of Python 2 longs.
                let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                let d: usize = digits.parse().map_err(|_| {
                    NpyError::Format(format!("header: bad dimension at byte {start}"))
                })?;
                self.eat(b'L');
                dims.push(d);
                if dims.len() > 64 {
                    return format_err("header: more than 64 dimensions");
                }
                if !self.eat(b',') {
                    self.expect(b')')?;
                    break;
                }
            }
            Ok(PyVal::Tuple(dims))
        } else {
            Ok(PyVal::Str(self.string()?))
        }
    }

    /// `{'key': value, ...}` with an optional trailing comma.
    fn dict(&mut self) -> Result<Vec<(String, PyVal)>, NpyError> {
        self.expect(b'{')?;
        let mut out = Vec::new();
        while !self.eat(b'}') {
            let k = self.string()?;
            self.expect(b':')?;
            let v = self.value()?;
            out.push((k, v));
            if out.len() > 16 {
                return format_err("header: too many keys");
            }
            if !self.eat(b',') {
                self.expect(b'}')?;
                break;
            }
        }
        Ok(out)
    }
}

/// The parsed header: dtype, shape, Fortran order and where the data starts.
struct Header {
    dtype: DType,
    shape: Vec<usize>,
    fortran: bool,
    data_start: usize,
}

fn parse_header(bytes: &[u8]) -> Result<Header, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return format_err("missing the \\x93NUMPY magic");
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return format_err("truncated header"),
        v => {
            return Err(NpyError::Unsupported(format!(
                "format version {v}.{}",
                bytes[7]
            )))
        }
    };
    if len > MAX_HEADER {
        return format_err(format!("header of {len} bytes is larger than {MAX_HEADER}"));
    }
    let end = start + len;
    let header = bytes
        .get(start..end)
        .ok_or_else(|| NpyError::Format("truncated header".into()))?;
    let mut p = HeaderParser { s: header, i: 0 };
    let entries = p.dict()?;
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let dtype = match get("descr") {
        Some(PyVal::Str(d)) => parse_descr(d)?,
        Some(_) => return Err(NpyError::Unsupported("structured dtypes".into())),
        None => return format_err("header has no 'descr'"),
    };
    let fortran = match get("fortran_order") {
        Some(PyVal::Bool(b)) => *b,
        _ => return format_err("header has no boolean 'fortran_order'"),
    };
    let shape = match get("shape") {
        Some(PyVal::Tuple(s)) => s.clone(),
        _ => return format_err("header has no 'shape' tuple"),
    };
    Ok(Header {
        dtype,
        shape,
        fortran,
        data_start: end,
    })
}

/// Parse a whole `.npy` file held in memory.
pub fn from_bytes(bytes: &[u8]) -> Result<Tensor, NpyError> {
    let h = parse_header(bytes)?;
    let want = h
        .dtype
        .storage_bytes(&h.shape)
        .ok_or_else(|| NpyError::Format(format!("shape {:?} is too large", h.shape)))?;
    let data = &bytes[h.data_start..];
    if data.len() != want {
        return format_err(format!(
            "{} data bytes for a {} array of shape {:?} ({want} expected)",
            data.len(),
            h.dtype,
            h.shape
        ));
    }
    let tensor_err = |e: egret_ir::IrError| NpyError::Format(e.to_string());
    if h.fortran && h.shape.len() > 1 {
        let reversed: Vec<usize> = h.shape.iter().rev().copied().collect();
        let c = transpose_reversed(data, &reversed, h.dtype.size().unwrap_or(1));
        return Tensor::from_bytes(h.dtype, h.shape, &c).map_err(tensor_err);
    }
    Tensor::from_bytes(h.dtype, h.shape, data).map_err(tensor_err)
}

/// Reverse the axes of a C-order array of shape `shape` with `elem`-byte
/// elements (a Fortran-order array read as C order has its axes reversed).
fn transpose_reversed(data: &[u8], shape: &[usize], elem: usize) -> Vec<u8> {
    let rank = shape.len();
    // Strides of the source (C order over `shape`), in elements.
    let mut strides = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    // Output shape is shape reversed; walk it in C order with an odometer.
    let out_shape: Vec<usize> = shape.iter().rev().copied().collect();
    let out_strides: Vec<usize> = strides.iter().rev().copied().collect();
    let mut out = Vec::with_capacity(data.len());
    if data.is_empty() {
        return out;
    }
    let mut idx = vec![0usize; rank];
    loop {
        let src: usize = idx
            .iter()
            .zip(&out_strides)
            .map(|(i, s)| i * s)
            .sum::<usize>()
            * elem;
        out.extend_from_slice(&data[src..src + elem]);
        let mut k = rank;
        loop {
            if k == 0 {
                return out;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < out_shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Read a `.npy` file.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes).map_err(|e| match e {
        NpyError::Format(m) => NpyError::Format(format!("{}: {m}", path.display())),
        NpyError::Unsupported(m) => NpyError::Unsupported(format!("{}: {m}", path.display())),
        io => io,
    })
}

/// Serialize a tensor as a `.npy` file (version 1.0, C order).
pub fn to_bytes(t: &Tensor) -> Result<Vec<u8>, NpyError> {
    let c = code(t.dtype())
        .ok_or_else(|| NpyError::Unsupported(format!("numpy has no {} dtype", t.dtype())))?;
    let order = if t.dtype().size() == Some(1) {
        '|'
    } else {
        '<'
    };
    let shape = match t.shape() {
        [one] => format!("({one},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{order}{c}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so the data starts at a multiple of 64, with a final newline.
    let (version, prefix) = if header.len() + 11 <= u16::MAX as usize {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - prefix - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + t.bytes().len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    let hl = header.len();
    if version == 1 {
        out.extend_from_slice(&(hl as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hl as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.bytes());
    Ok(out)
}

/// Write a tensor to `path` atomically (temporary file in the same directory,
/// then rename).
pub fn write(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    let bytes = to_bytes(t)?;
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("not a file path")))?;
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn header(version: u8, dict: &str) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[version, 0]);
        if version == 1 {
            v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(dict.as_bytes());
        v
    }

    #[test]
    fn round_trips_every_dtype() {
        let tensors = vec![
            Tensor::from_vec(vec![2, 3], vec![1f32, -2.5, 3.0, f32::INFINITY, 0.0, 7.0]).unwrap(),
            Tensor::from_vec(vec![], vec![1.5f64]).unwrap(),
            Tensor::from_vec(vec![2], vec![f16::from_f32(0.5), f16::from_f32(-1.0)]).unwrap(),
            Tensor::from_vec(vec![3], vec![-1i8, 0, 1]).unwrap(),
            Tensor::from_vec(vec![1], vec![-300i16]).unwrap(),
            Tensor::from_vec(vec![1], vec![i32::MIN]).unwrap(),
            Tensor::from_vec(vec![1, 1], vec![i64::MAX]).unwrap(),
            Tensor::from_vec(vec![0, 4], Vec::<u8>::new()).unwrap(),
            Tensor::from_vec(vec![1], vec![65535u16]).unwrap(),
            Tensor::from_vec(vec![1], vec![u32::MAX]).unwrap(),
            Tensor::from_vec(vec![1], vec![u64::MAX]).unwrap(),
            Tensor::from_bools(vec![2], vec![true, false]).unwrap(),
        ];
        for t in tensors {
            let bytes = to_bytes(&t).unwrap();
            assert_eq!(
                (bytes.len() - t.bytes().len()) % 64,
                0,
                "data is 64-byte aligned"
            );
            let back = from_bytes(&bytes).unwrap();
            assert_eq!(back.dtype(), t.dtype());
            assert_eq!(back.shape(), t.shape());
            assert_eq!(back.bytes(), t.bytes());
        }
    }

    #[test]
    fn header_matches_numpy() {
        let t = Tensor::from_vec(vec![3], vec![1f32, 2.0, 3.0]).unwrap();
        let b = to_bytes(&t).unwrap();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!(10 + hl, 128, "numpy pads a 1-d f32 header to 128 bytes");
        let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(
            h.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"),
            "{h}"
        );
        assert!(h.ends_with('\n'));
        let s = Tensor::from_vec(vec![], vec![1u8]).unwrap();
        let sb = to_bytes(&s).unwrap();
        assert!(std::str::from_utf8(&sb[10..sb.len() - 1])
            .unwrap()
            .contains("'|u1', 'fortran_order': False, 'shape': ()"));
    }

    #[test]
    fn reads_v2_v3_fortran_and_python2_forms() {
        let mut b = header(
            2,
            "{'descr': '<i4', 'fortran_order': True, 'shape': (2L, 3L), }\n",
        );
        // Fortran order: column-major 1 4 2 5 3 6 is [[1,2,3],[4,5,6]].
        for v in [1i32, 4, 2, 5, 3, 6] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let t = from_bytes(&b).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.as_slice::<i32>().unwrap(), &[1, 2, 3, 4, 5, 6]);
        let mut b = header(
            3,
            "{\"descr\":\"|?\",\"fortran_order\":False,\"shape\":(2,)}",
        );
        b.extend_from_slice(&[1, 0]);
        assert_eq!(
            from_bytes(&b).unwrap().as_slice::<bool>().unwrap(),
            &[true, false]
        );
    }

    #[test]
    fn fortran_transpose_rank3() {
        // A 2x3x4 array with value = C index, stored in Fortran order.
        let shape = [2usize, 3, 4];
        let mut f = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    f.push((i * 12 + j * 4 + k) as u8);
                }
            }
        }
        let mut b = header(
            1,
            "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3, 4), }",
        );
        b.extend_from_slice(&f);
        let t = from_bytes(&b).unwrap();
        assert_eq!(t.shape(), &shape);
        assert_eq!(
            t.as_slice::<u8>().unwrap(),
            (0..24).collect::<Vec<u8>>().as_slice()
        );
    }

    #[test]
    fn hostile_headers_error() {
        let d = |s: &str| header(1, s);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"hello".to_vec(), "magic"),
            (b"\x93NUMPY\x01\x00\xff\xff{".to_vec(), "truncated"),
            (b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec(), "larger than"),
            (b"\x93NUMPY\x09\x00\x00\x00".to_vec(), "version 9"),
            (d("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }"), "big-endian"),
            (d("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }"), "dtype `<U3`"),
            (d("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }"), "expected a string"),
            (d("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999), }"), "too large"),
            (d("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000,), }"), "0 data bytes"),
            (d("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), "bad dimension"),
            (d("{'descr': '<f4', 'fortran_order': False, 'shape': (1,"), "bad dimension"),
            (d("{'descr': '<f4', 'fortran_order': False, 'shape': (1"), "expected `)`"),
            (d("{'descr': '<f4', 'shape': (1,), }"), "fortran_order"),
            (d("{'descr': '<f4', 'fortran_order': False}"), "shape"),
            (d("{'descr': '<f4"), "unterminated"),
            (d(""), "expected `{`"),
            (d(&format!("{{'shape': ({}), }}", "1,".repeat(100))), "64 dimensions"),
        ];
        for (bytes, needle) in cases {
            let e = from_bytes(&bytes).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        // Every prefix of a valid file is an error, never a panic.
        let good = to_bytes(&Tensor::from_vec(vec![2], vec![1f32, 2.0]).unwrap()).unwrap();
        for n in 0..good.len() {
            assert!(from_bytes(&good[..n]).is_err());
        }
    }

    #[test]
    fn unsupported_dtypes_are_rejected_on_write() {
        let t = Tensor::from_vec(vec![1], vec![half::bf16::from_f32(1.0)]).unwrap();
        assert!(matches!(to_bytes(&t), Err(NpyError::Unsupported(m)) if m.contains("bf16")));
        let s = Tensor::from_strings(vec![1], vec!["a".into()]).unwrap();
        assert!(to_bytes(&s).is_err());
    }

    #[test]
    fn file_write_is_atomic_and_readable() {
        let dir = std::env::temp_dir().join(format!("egret-npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.npy");
        let t = Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]).unwrap();
        write(&p, &t).unwrap();
        write(&p, &t).unwrap();
        assert_eq!(read(&p).unwrap().as_slice::<i64>().unwrap(), &[1, 2, 3, 4]);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        let missing = read(&dir.join("nope.npy")).unwrap_err().to_string();
        assert!(missing.contains("nope.npy"), "{missing}");
        assert!(write(&dir.join("no/such/dir/x.npy"), &t).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
