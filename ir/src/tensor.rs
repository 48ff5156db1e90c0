//! Tensors: a dtype, a concrete shape and shared, possibly memory-mapped bytes.
//!
//! A [`Tensor`] is cheap to clone: its data sits behind an `Arc`. Data produced by a
//! kernel keeps the kernel's own `Vec<T>` (no copy into a byte buffer), and weights
//! loaded from a file can point straight into an mmap ([`Tensor::from_mmap`]), so a
//! pass that rewrites the graph never copies a large weight.

use crate::dtype::DType;
use crate::error::IrError;
use bytemuck::Pod;
use std::fmt;
use std::sync::Arc;

/// A Rust type that is the in-memory element of a dense [`DType`].
///
/// # Safety
/// `DTYPE.size()` must equal `size_of::<Self>()`, and every bit pattern that a
/// tensor of that dtype may hold must be a valid `Self`.
pub unsafe trait Element: Copy + Send + Sync + fmt::Debug + 'static {
    /// The dtype this element type stores.
    const DTYPE: DType;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        // SAFETY: plain-old-data types whose size matches the dtype's.
        unsafe impl Element for $t { const DTYPE: DType = DType::$d; }
    )*};
}
element!(f32 => F32, f64 => F64, half::f16 => F16, half::bf16 => BF16,
         i8 => I8, i16 => I16, i32 => I32, i64 => I64,
         u8 => U8, u16 => U16, u32 => U32, u64 => U64);
// SAFETY: every constructor of a Bool tensor stores only 0 or 1 (see `Tensor::new`).
unsafe impl Element for bool {
    const DTYPE: DType = DType::Bool;
}

/// Something that owns the bytes of a tensor.
trait ByteStore: Send + Sync {
    fn bytes(&self) -> &[u8];
}

impl<T: Pod + Send + Sync> ByteStore for Vec<T> {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }
}

struct BoolVec(Vec<bool>);
impl ByteStore for BoolVec {
    fn bytes(&self) -> &[u8] {
        // SAFETY: bool is one byte holding 0 or 1.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u8, self.0.len()) }
    }
}

struct MmapSlice {
    map: Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
}
impl ByteStore for MmapSlice {
    fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }
}

#[derive(Clone)]
enum Data {
    Bytes(Arc<dyn ByteStore>),
    Strings(Arc<Vec<String>>),
}

/// A dense (or block-quantized) tensor with a concrete shape.
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Data,
}

/// Number of elements of a shape, or an error on overflow.
pub fn checked_numel(shape: &[usize]) -> Result<usize, IrError> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| IrError::TooLarge(format!("shape {shape:?} overflows")))
}

impl Tensor {
    /// Build a tensor from a typed vector. Fails if the length does not match the shape.
    pub fn from_vec<T: Element + Pod>(shape: Vec<usize>, data: Vec<T>) -> Result<Tensor, IrError> {
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(IrError::ShapeMismatch(format!(
                "{} elements for shape {:?} ({} expected)",
                data.len(),
                shape,
                n
            )));
        }
        Ok(Tensor {
            dtype: T::DTYPE,
            shape,
            data: Data::Bytes(Arc::new(data)),
        })
    }

    /// Build a bool tensor.
    pub fn from_bools(shape: Vec<usize>, data: Vec<bool>) -> Result<Tensor, IrError> {
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(IrError::ShapeMismatch(format!(
                "{} bools for shape {shape:?}",
                data.len()
            )));
        }
        Ok(Tensor {
            dtype: DType::Bool,
            shape,
            data: Data::Bytes(Arc::new(BoolVec(data))),
        })
    }

    /// Build a string tensor.
    pub fn from_strings(shape: Vec<usize>, data: Vec<String>) -> Result<Tensor, IrError> {
        let n = checked_numel(&shape)?;
        if n != data.len() {
            return Err(IrError::ShapeMismatch(format!(
                "{} strings for shape {shape:?}",
                data.len()
            )));
        }
        Ok(Tensor {
            dtype: DType::String,
            shape,
            data: Data::Strings(Arc::new(data)),
        })
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar<T: Element + Pod>(v: T) -> Tensor {
        Tensor::from_vec(vec![], vec![v]).expect("scalar shape is valid")
    }

    /// Build a tensor of any non-string dtype from raw little-endian bytes (copied).
    /// Bool bytes are normalised to 0/1. Sub-byte dtypes must already be unpacked.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Result<Tensor, IrError> {
        let want = dtype.storage_bytes(&shape).ok_or_else(|| {
            IrError::TooLarge(format!("cannot size {dtype} tensor of shape {shape:?}"))
        })?;
        if want != bytes.len() {
            return Err(IrError::ShapeMismatch(format!(
                "{} bytes for {dtype} tensor of shape {shape:?} ({want} expected)",
                bytes.len()
            )));
        }
        let store: Arc<dyn ByteStore> = match dtype.size() {
            Some(8) => Arc::new(bytemuck::pod_collect_to_vec::<u8, u64>(bytes)),
            Some(4) => Arc::new(bytemuck::pod_collect_to_vec::<u8, u32>(bytes)),
            Some(2) => Arc::new(bytemuck::pod_collect_to_vec::<u8, u16>(bytes)),
            _ if dtype == DType::Bool => {
                Arc::new(bytes.iter().map(|&b| (b != 0) as u8).collect::<Vec<u8>>())
            }
            _ => Arc::new(bytes.to_vec()),
        };
        Ok(Tensor {
            dtype,
            shape,
            data: Data::Bytes(store),
        })
    }

    /// A tensor whose bytes live in a memory map (zero-copy). `offset..offset+len`
    /// must lie in the map and be aligned for the dtype; otherwise the bytes are
    /// copied (still correct, just not zero-copy). Bool data is always copied so
    /// it can be validated.
    pub fn from_mmap(
        dtype: DType,
        shape: Vec<usize>,
        map: Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
    ) -> Result<Tensor, IrError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= map.len())
            .ok_or_else(|| {
                IrError::ShapeMismatch(format!(
                    "byte range {offset}+{len} outside a {}-byte file",
                    map.len()
                ))
            })?;
        let bytes = &map[offset..end];
        let align = dtype.size().unwrap_or(1);
        if dtype == DType::Bool || !(bytes.as_ptr() as usize).is_multiple_of(align) {
            return Tensor::from_bytes(dtype, shape, bytes);
        }
        let want = dtype.storage_bytes(&shape).ok_or_else(|| {
            IrError::TooLarge(format!("cannot size {dtype} tensor of shape {shape:?}"))
        })?;
        if want != len {
            return Err(IrError::ShapeMismatch(format!(
                "{len} bytes for {dtype} tensor of shape {shape:?} ({want} expected)"
            )));
        }
        Ok(Tensor {
            dtype,
            shape,
            data: Data::Bytes(Arc::new(MmapSlice { map, offset, len })),
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The concrete shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Rank (number of axes).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of logical elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Raw stored bytes (empty for string tensors).
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Bytes(b) => b.bytes(),
            Data::Strings(_) => &[],
        }
    }

    /// Number of bytes this tensor occupies in memory (string payloads included).
    pub fn byte_size(&self) -> usize {
        match &self.data {
            Data::Bytes(b) => b.bytes().len(),
            Data::Strings(s) => s.iter().map(|x| x.len()).sum(),
        }
    }

    /// Typed view of the elements. Fails if `T` is not this tensor's element type.
    pub fn as_slice<T: Element>(&self) -> Result<&[T], IrError> {
        if T::DTYPE != self.dtype
            // Sub-byte and float8 codes are read as raw bytes.
            && !(T::DTYPE == DType::U8 && self.dtype.size() == Some(1) && self.dtype != DType::Bool)
            && !(T::DTYPE == DType::I8 && matches!(self.dtype, DType::I4 | DType::I2))
        {
            return Err(IrError::DTypeMismatch(format!(
                "tensor is {}, read as {}",
                self.dtype,
                T::DTYPE
            )));
        }
        let b = self.bytes();
        if b.is_empty() {
            return Ok(&[]);
        }
        let size = std::mem::size_of::<T>();
        if !(b.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
            || !b.len().is_multiple_of(size)
        {
            return Err(IrError::DTypeMismatch("misaligned tensor data".into()));
        }
        // SAFETY: alignment and length checked above; `Element` guarantees every
        // stored bit pattern is a valid `T`.
        Ok(unsafe { std::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / size) })
    }

    /// The strings of a string tensor.
    pub fn as_strings(&self) -> Result<&[String], IrError> {
        match &self.data {
            Data::Strings(s) => Ok(s),
            Data::Bytes(_) => Err(IrError::DTypeMismatch(format!(
                "tensor is {}, read as string",
                self.dtype
            ))),
        }
    }

    /// Same data, new shape with the same element count (no copy).
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Tensor, IrError> {
        if checked_numel(&shape)? != self.numel() {
            return Err(IrError::ShapeMismatch(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        Ok(Tensor {
            dtype: self.dtype,
            shape,
            data: self.data.clone(),
        })
    }

    /// True if both tensors share the same underlying storage.
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        match (&self.data, &other.data) {
            (Data::Bytes(a), Data::Bytes(b)) => Arc::ptr_eq(a, b),
            (Data::Strings(a), Data::Strings(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Elements converted to f64 (for printing, comparisons and tests).
    /// Strings and block formats give an error.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, IrError> {
        use DType::*;
        Ok(match self.dtype {
            F32 => self.as_slice::<f32>()?.iter().map(|&x| x as f64).collect(),
            F64 => self.as_slice::<f64>()?.to_vec(),
            F16 => self
                .as_slice::<half::f16>()?
                .iter()
                .map(|x| x.to_f64())
                .collect(),
            BF16 => self
                .as_slice::<half::bf16>()?
                .iter()
                .map(|x| x.to_f64())
                .collect(),
            I8 | I4 | I2 => self.as_slice::<i8>()?.iter().map(|&x| x as f64).collect(),
            I16 => self.as_slice::<i16>()?.iter().map(|&x| x as f64).collect(),
            I32 => self.as_slice::<i32>()?.iter().map(|&x| x as f64).collect(),
            I64 => self.as_slice::<i64>()?.iter().map(|&x| x as f64).collect(),
            U8 | U4 | U2 => self.as_slice::<u8>()?.iter().map(|&x| x as f64).collect(),
            U16 => self.as_slice::<u16>()?.iter().map(|&x| x as f64).collect(),
            U32 => self.as_slice::<u32>()?.iter().map(|&x| x as f64).collect(),
            U64 => self.as_slice::<u64>()?.iter().map(|&x| x as f64).collect(),
            Bool => self
                .as_slice::<bool>()?
                .iter()
                .map(|&x| x as u8 as f64)
                .collect(),
            other => {
                return Err(IrError::DTypeMismatch(format!(
                    "{other} has no numeric view"
                )))
            }
        })
    }

    /// Integer elements as i64 (for shape-like tensors: axes, shapes, indices).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>, IrError> {
        use DType::*;
        Ok(match self.dtype {
            I64 => self.as_slice::<i64>()?.to_vec(),
            I32 => self.as_slice::<i32>()?.iter().map(|&x| x as i64).collect(),
            I16 => self.as_slice::<i16>()?.iter().map(|&x| x as i64).collect(),
            I8 | I4 | I2 => self.as_slice::<i8>()?.iter().map(|&x| x as i64).collect(),
            U8 | U4 | U2 => self.as_slice::<u8>()?.iter().map(|&x| x as i64).collect(),
            U16 => self.as_slice::<u16>()?.iter().map(|&x| x as i64).collect(),
            U32 => self.as_slice::<u32>()?.iter().map(|&x| x as i64).collect(),
            U64 => self.as_slice::<u64>()?.iter().map(|&x| x as i64).collect(),
            Bool => self.as_slice::<bool>()?.iter().map(|&x| x as i64).collect(),
            other => {
                return Err(IrError::DTypeMismatch(format!(
                    "{other} is not an integer type"
                )))
            }
        })
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}{:?}>", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_roundtrip_and_reshape_share_storage() {
        let t = Tensor::from_vec(vec![2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap()[4], 5.0);
        assert!(t.as_slice::<i32>().is_err());
        let r = t.reshaped(vec![3, 2]).unwrap();
        assert!(r.shares_storage(&t));
        assert!(t.reshaped(vec![4]).is_err());
    }

    #[test]
    fn bytes_are_validated() {
        assert!(Tensor::from_bytes(DType::F32, vec![2], &[0; 7]).is_err());
        let b = Tensor::from_bytes(DType::Bool, vec![3], &[0, 5, 1]).unwrap();
        assert_eq!(b.as_slice::<bool>().unwrap(), &[false, true, true]);
        assert!(Tensor::from_vec::<f32>(vec![usize::MAX, 4], vec![]).is_err());
    }
}
