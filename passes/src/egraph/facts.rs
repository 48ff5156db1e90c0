//! What the analysis knows about one e-class: [`Facts`].

use egret_ir::{DType, Dim, Tensor, ValueType};

/// One element of a small integer tensor whose value is known symbolically:
/// shape arithmetic (`Shape → Gather → Concat`) produces these.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SymInt {
    /// A known integer.
    Int(i64),
    /// The run-time size of a symbolic dim.
    Sym(String),
}

impl From<&Dim> for SymInt {
    fn from(d: &Dim) -> SymInt {
        match d {
            Dim::Known(n) => SymInt::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
            Dim::Sym(s) => SymInt::Sym(s.clone()),
        }
    }
}

/// The analysis data of an e-class.
#[derive(Clone, Debug)]
pub struct Facts {
    /// False if inference failed for every e-node seen (a rule built an ill-typed
    /// node). Invalid classes are never extracted.
    pub valid: bool,
    /// True for the tuple class of a multi-output op (read it through `get.N`).
    pub tuple: bool,
    /// The value types: one for a value class, one per output for a tuple,
    /// none for the absent input.
    pub types: Vec<ValueType>,
    /// The value, when known at compile time (constants and folded results).
    pub value: Option<Tensor>,
    /// The elements of a rank-0/1 integer value, possibly symbolic.
    pub ints: Option<Vec<SymInt>>,
}

impl Facts {
    /// Facts of a class nothing is known about (failed inference).
    pub fn invalid() -> Facts {
        Facts {
            valid: false,
            tuple: false,
            types: vec![],
            value: None,
            ints: None,
        }
    }

    /// Facts of a plain value of type `ty`.
    pub fn of_type(ty: ValueType) -> Facts {
        Facts {
            valid: true,
            tuple: false,
            types: vec![ty],
            value: None,
            ints: None,
        }
    }

    /// The single value type (`None` for tuples, the absent input and invalid classes).
    pub fn ty(&self) -> Option<&ValueType> {
        match (&self.types[..], self.tuple, self.valid) {
            ([t], false, true) => Some(t),
            _ => None,
        }
    }

    /// Dtype of a tensor value.
    pub fn dtype(&self) -> Option<DType> {
        Some(self.ty()?.as_tensor()?.dtype)
    }

    /// Dims of a tensor value with known rank.
    pub fn dims(&self) -> Option<&[Dim]> {
        Some(self.ty()?.as_tensor()?.shape.as_ref()?.dims())
    }

    /// Fully known shape of a tensor value.
    pub fn known_shape(&self) -> Option<Vec<usize>> {
        self.ty()?.as_tensor()?.shape.as_ref()?.as_known()
    }

    /// The value as f64s, when known and numeric.
    pub fn floats(&self) -> Option<Vec<f64>> {
        self.value.as_ref()?.to_f64_vec().ok()
    }

    /// The single scalar value, when the value is known and all its elements are equal.
    pub fn splat(&self) -> Option<f64> {
        let v = self.floats()?;
        let first = *v.first()?;
        v.iter()
            .all(|x| x.to_bits() == first.to_bits())
            .then_some(first)
    }

    /// Element count of the value(s), with each symbolic dim counted as `sym`.
    pub fn numel_guess(&self, sym: usize) -> usize {
        self.types.iter().map(|t| numel_guess(t, sym)).sum()
    }

    /// Bytes of the value(s), symbolic dims counted as `sym`.
    pub fn bytes_guess(&self, sym: usize) -> usize {
        self.types
            .iter()
            .map(|t| {
                let size = t.as_tensor().and_then(|t| t.dtype.size()).unwrap_or(4);
                numel_guess(t, sym).saturating_mul(size)
            })
            .sum()
    }

    /// Comparison key for change detection in merges.
    fn info(&self) -> (bool, usize, usize, bool, usize) {
        let known = |t: &ValueType| {
            t.as_tensor().and_then(|t| t.shape.as_ref()).map_or(0, |s| {
                1 + s.dims().iter().filter(|d| d.known().is_some()).count()
            })
        };
        let ints_known = self.ints.as_ref().map_or(0, |v| {
            1 + v.iter().filter(|x| matches!(x, SymInt::Int(_))).count()
        });
        (
            self.valid,
            self.types.len(),
            self.types.iter().map(known).sum(),
            self.value.is_some(),
            ints_known,
        )
    }

    /// Merge what `other` knows into `self`; returns whether `self` changed.
    pub fn absorb(&mut self, other: Facts) -> bool {
        if !other.valid {
            return false;
        }
        if !self.valid {
            *self = other;
            return true;
        }
        let before = self.info();
        if self.types.len() == other.types.len() {
            for (a, b) in self.types.iter_mut().zip(&other.types) {
                refine(a, b);
            }
        }
        if self.value.is_none() {
            self.value = other.value;
        }
        match (&mut self.ints, other.ints) {
            (None, b) => self.ints = b,
            (Some(a), Some(b)) if a.len() == b.len() => {
                for (x, y) in a.iter_mut().zip(b) {
                    if matches!(x, SymInt::Sym(_)) && matches!(y, SymInt::Int(_)) {
                        *x = y;
                    }
                }
            }
            _ => {}
        }
        self.info() != before
    }
}

/// Element count of a value type, symbolic dims counted as `sym` (unknown rank: `sym`).
pub fn numel_guess(t: &ValueType, sym: usize) -> usize {
    match t.as_tensor().and_then(|t| t.shape.as_ref()) {
        Some(s) => s
            .dims()
            .iter()
            .map(|d| d.known().unwrap_or(sym))
            .fold(1usize, usize::saturating_mul),
        None => sym,
    }
}

/// Make `a` at least as precise as `b`: same dtype and rank, known dims win.
pub fn refine(a: &mut ValueType, b: &ValueType) {
    match (a, b) {
        (ValueType::Tensor(x), ValueType::Tensor(y)) if x.dtype == y.dtype => {
            match (&mut x.shape, &y.shape) {
                (None, Some(s)) => x.shape = Some(s.clone()),
                (Some(p), Some(q)) if p.rank() == q.rank() => {
                    for (d, e) in p.0.iter_mut().zip(q.dims()) {
                        if d.known().is_none() && e.known().is_some() {
                            *d = e.clone();
                        }
                    }
                }
                _ => {}
            }
        }
        (ValueType::Optional(x), ValueType::Optional(y)) => refine(x, y),
        _ => {}
    }
}

/// True if two value types are certainly the same at run time: same kind and
/// dtype, and every dim pair is equal (equal sizes, or the same symbol).
pub fn same_type(a: &ValueType, b: &ValueType) -> bool {
    match (a.as_tensor(), b.as_tensor()) {
        (Some(x), Some(y)) => {
            x.dtype == y.dtype && matches!((&x.shape, &y.shape), (Some(p), Some(q)) if p == q)
        }
        _ => a == b,
    }
}
