//! GGUF metadata: typed key-value pairs, in file order, with typed getters.

use super::GgufError;
use std::collections::HashMap;
use std::fmt;

/// The type tag of a metadata value (`gguf_type` in ggml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaType {
    /// `uint8`.
    U8,
    /// `int8`.
    I8,
    /// `uint16`.
    U16,
    /// `int16`.
    I16,
    /// `uint32`.
    U32,
    /// `int32`.
    I32,
    /// `float32`.
    F32,
    /// `bool`, one byte.
    Bool,
    /// UTF-8 string with a u64 length.
    String,
    /// Array: element type, u64 count, elements.
    Array,
    /// `uint64`.
    U64,
    /// `int64`.
    I64,
    /// `float64`.
    F64,
}

impl MetaType {
    /// The type with this on-disk tag.
    pub fn from_id(id: u32) -> Option<MetaType> {
        use MetaType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Lower-case name (`u32`, `string`, `array`, ...).
    pub fn name(self) -> &'static str {
        use MetaType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// The fewest bytes one value of this type occupies on disk. Used to bound
    /// declared array lengths by the bytes actually left in the file.
    pub fn min_bytes(self) -> usize {
        use MetaType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata array: its declared element type and its items.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaArray {
    /// Element type (kept so an empty array round-trips).
    pub elem: MetaType,
    /// The elements, all of type `elem`.
    pub items: Vec<MetaValue>,
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Array, possibly nested.
    Array(MetaArray),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl MetaValue {
    /// This value's type tag.
    pub fn ty(&self) -> MetaType {
        match self {
            MetaValue::U8(_) => MetaType::U8,
            MetaValue::I8(_) => MetaType::I8,
            MetaValue::U16(_) => MetaType::U16,
            MetaValue::I16(_) => MetaType::I16,
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::String(_) => MetaType::String,
            MetaValue::Array(_) => MetaType::Array,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::I64(_) => MetaType::I64,
            MetaValue::F64(_) => MetaType::F64,
        }
    }

    /// Any integer value as i128 (so every GGUF integer type fits losslessly).
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer value of any width, if it fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer value of any width, if it fits in `u32`.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }

    /// An integer value of any width, if it fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// A float value (f32 or f64) as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A bool value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&MetaArray> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short human-readable form: scalars in full (strings cut at 60 chars),
    /// arrays as `[string; 49152]` with their first items.
    pub fn summary(&self) -> String {
        match self {
            MetaValue::String(s) if s.chars().count() > 60 => {
                format!("{:?}...", s.chars().take(57).collect::<String>())
            }
            MetaValue::Array(a) => {
                let head: Vec<String> = a.items.iter().take(3).map(|v| v.summary()).collect();
                let more = if a.items.len() > 3 { ", ..." } else { "" };
                format!(
                    "[{}; {}] [{}{more}]",
                    a.elem.name(),
                    a.items.len(),
                    head.join(", ")
                )
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::String(s) => write!(f, "{s:?}"),
            MetaValue::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            other => match other.as_i128() {
                Some(v) => write!(f, "{v}"),
                None => f.write_str("?"),
            },
        }
    }
}

/// The metadata of a GGUF file: key-value pairs in file order, looked up by key.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    file: String,
    entries: Vec<(String, MetaValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// Empty metadata for the file `file` (named in errors).
    pub(crate) fn new(file: String) -> Metadata {
        Metadata {
            file,
            ..Metadata::default()
        }
    }

    /// Add a pair; a duplicate key is an error.
    pub(crate) fn insert(&mut self, key: String, value: MetaValue) -> Result<(), GgufError> {
        if self.index.contains_key(&key) {
            return Err(self.key_err(&key, "duplicate key".into()));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    fn key_err(&self, key: &str, msg: String) -> GgufError {
        GgufError::Key {
            file: self.file.clone(),
            key: key.to_string(),
            msg,
        }
    }

    /// The file the metadata came from (as named in errors).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All pairs in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index
            .get(key)
            .and_then(|&i| self.entries.get(i))
            .map(|e| &e.1)
    }

    /// The value of `key` converted by `f`; `Ok(None)` when absent, an error
    /// naming the key when present with an unusable type or value.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        f: impl FnOnce(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| {
                self.key_err(
                    key,
                    format!("expected {want}, found {} {}", v.ty().name(), v.summary()),
                )
            }),
        }
    }

    fn required<T>(&self, key: &str, v: Result<Option<T>, GgufError>) -> Result<T, GgufError> {
        v?.ok_or_else(|| self.key_err(key, "missing key".into()))
    }

    /// An optional integer key that fits in `u32` (any integer type is accepted).
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.typed(key, "an integer fitting u32", MetaValue::as_u32)
    }

    /// A required integer key that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.required(key, self.opt_u32(key))
    }

    /// An optional integer key that fits in `u64`.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "an integer fitting u64", MetaValue::as_u64)
    }

    /// A required integer key that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.required(key, self.opt_u64(key))
    }

    /// An optional integer key that fits in `i64`.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.typed(key, "an integer fitting i64", MetaValue::as_i64)
    }

    /// An optional float key (f32 or f64), as f32.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.typed(key, "a float", |v| v.as_f64().map(|x| x as f32))
    }

    /// A required float key (f32 or f64), as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.required(key, self.opt_f32(key))
    }

    /// An optional bool key.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a bool", MetaValue::as_bool)
    }

    /// An optional string key.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", MetaValue::as_str)
    }

    /// A required string key.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.required(key, self.opt_str(key))
    }

    /// An optional array key.
    pub fn opt_array(&self, key: &str) -> Result<Option<&MetaArray>, GgufError> {
        self.typed(key, "an array", MetaValue::as_array)
    }

    /// A required array key.
    pub fn get_array(&self, key: &str) -> Result<&MetaArray, GgufError> {
        self.required(key, self.opt_array(key))
    }

    /// An optional array of strings.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        self.typed(key, "an array of strings", |v| {
            v.as_array()?.items.iter().map(MetaValue::as_str).collect()
        })
    }

    /// An optional array of integers, each fitting `i64`.
    pub fn opt_i64s(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        self.typed(key, "an array of integers", |v| {
            v.as_array()?.items.iter().map(MetaValue::as_i64).collect()
        })
    }

    /// The file's architecture (`general.architecture`, e.g. `llama`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// Architecture-prefixed key: `arch_key("block_count")` reads
    /// `<general.architecture>.block_count`.
    pub fn arch_key(&self, suffix: &str) -> Result<String, GgufError> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_convert_and_name_the_key() {
        let mut m = Metadata::new("f.gguf".into());
        m.insert("a".into(), MetaValue::I32(7)).unwrap();
        m.insert("b".into(), MetaValue::I64(-1)).unwrap();
        m.insert("c".into(), MetaValue::F64(0.5)).unwrap();
        m.insert(
            "general.architecture".into(),
            MetaValue::String("llama".into()),
        )
        .unwrap();
        assert!(m.insert("a".into(), MetaValue::U8(1)).is_err());
        assert_eq!(m.get_u32("a").unwrap(), 7);
        assert_eq!(m.get_f32("c").unwrap(), 0.5);
        assert_eq!(m.opt_u32("zz").unwrap(), None);
        let e = m.get_u32("b").unwrap_err().to_string();
        assert!(e.contains("f.gguf") && e.contains("`b`"), "{e}");
        assert!(m.get_u32("zz").unwrap_err().to_string().contains("missing"));
        assert_eq!(m.arch_key("block_count").unwrap(), "llama.block_count");
    }
}
