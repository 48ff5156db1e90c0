//! Kernels: binary/unary arithmetic, comparison, logic, bitwise, Where, Clip, variadic Min/Max/Sum/Mean.
//!
//! Also home of the elementwise machinery the activation kernels reuse: the
//! [`Num`] and [`FloatElem`] element traits, the broadcasting [`map2`], the
//! (parallel for large tensors) [`map_same`] / [`map_unary`], the [`map_float!`]
//! macro and an accurate [`erf`].
//!
//! Semantics follow the ONNX reference implementation (numpy): integer
//! arithmetic wraps, integer `Div` truncates toward zero, an integer division or
//! modulo by zero gives 0 (numpy's result) instead of trapping, `Min`/`Max`
//! propagate NaN, `Round` rounds half to even.

use crate::error::{Result, RuntimeError};
use crate::kernels::{broadcast_shapes, checked_len, input, one, opt_input};
use crate::registry::{KernelCtx, Registry};
use crate::{bail, for_dtypes};
use bytemuck::Pod;
use egret_ir::{DType, Element, Tensor, Value};
use num_traits::{AsPrimitive, Float};
use rayon::prelude::*;

/// Element count from which unary maps and same-shape binary maps run in parallel.
pub(crate) const PAR_MIN: usize = 1 << 16;

// ---------------------------------------------------------------------------
// Element traits
// ---------------------------------------------------------------------------

/// Arithmetic on every numeric dtype, with numpy's integer semantics (wrapping,
/// truncating division, zero divisor gives 0) and IEEE semantics for floats.
pub trait Num: Element + Pod + PartialOrd + Default + Send + Sync {
    /// `a + b` (wrapping for integers).
    fn add(self, o: Self) -> Self;
    /// `a - b` (wrapping for integers).
    fn sub(self, o: Self) -> Self;
    /// `a * b` (wrapping for integers).
    fn mul(self, o: Self) -> Self;
    /// `a / b`; integers truncate toward zero and give 0 for a zero divisor.
    fn div(self, o: Self) -> Self;
    /// C `fmod`: the remainder takes the sign of the dividend.
    fn fmod(self, o: Self) -> Self;
    /// Python `%`: the remainder takes the sign of the divisor.
    fn pymod(self, o: Self) -> Self;
    /// Absolute value (wrapping for the most negative integer).
    fn num_abs(self) -> Self;
    /// Negation (wrapping for integers).
    fn num_neg(self) -> Self;
    /// True only for a float NaN.
    fn nan(self) -> bool;
    /// `self` raised to an integer power; negative powers of integers truncate.
    fn pow_int(self, e: i64) -> Self;
    /// Lossy conversion to f64.
    fn to_f64(self) -> f64;
    /// Conversion from f64 (`as` semantics: truncating, saturating).
    fn from_f64(v: f64) -> Self;
}

macro_rules! num_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            #[inline(always)]
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)]
            fn div(self, o: Self) -> Self { if o == 0 { 0 } else { self.wrapping_div(o) } }
            #[inline(always)]
            fn fmod(self, o: Self) -> Self { if o == 0 { 0 } else { self.wrapping_rem(o) } }
            #[inline(always)]
            fn pymod(self, o: Self) -> Self {
                let r = self.fmod(o);
                // Signs differ (only possible for signed types): shift into the divisor's sign.
                if r != 0 && (r ^ o) < <$t>::default() { r.wrapping_add(o) } else { r }
            }
            #[inline(always)]
            fn num_abs(self) -> Self { if self < <$t>::default() { self.wrapping_neg() } else { self } }
            #[inline(always)]
            fn num_neg(self) -> Self { self.wrapping_neg() }
            #[inline(always)]
            fn nan(self) -> bool { false }
            fn pow_int(self, e: i64) -> Self {
                if e >= 0 {
                    return self.wrapping_pow(u32::try_from(e).unwrap_or(u32::MAX));
                }
                // 1 / self^|e| truncated toward zero: only |self| == 1 survives.
                match self as i128 {
                    1 => 1,
                    -1 => if e % 2 == 0 { 1 } else { self },
                    _ => 0,
                }
            }
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn from_f64(v: f64) -> Self { v as $t }
        }
    )*};
}
num_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! num_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            #[inline(always)]
            fn add(self, o: Self) -> Self { self + o }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self - o }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)]
            fn div(self, o: Self) -> Self { self / o }
            #[inline(always)]
            fn fmod(self, o: Self) -> Self { self % o }
            #[inline(always)]
            fn pymod(self, o: Self) -> Self {
                let r = self % o;
                let zero = <$t>::default();
                if r != zero && ((r < zero) != (o < zero)) { r + o } else { r }
            }
            #[inline(always)]
            fn num_abs(self) -> Self { Float::abs(self) }
            #[inline(always)]
            fn num_neg(self) -> Self { -self }
            #[inline(always)]
            fn nan(self) -> bool { Float::is_nan(self) }
            fn pow_int(self, e: i64) -> Self { Self::from_f64(self.to_f64().powf(e as f64)) }
            #[inline(always)]
            fn to_f64(self) -> f64 { self.as_() }
            #[inline(always)]
            fn from_f64(v: f64) -> Self { v.as_() }
        }
    )*};
}
num_float!(f32, f64, half::f16, half::bf16);

/// The float math type `f32` or `f64`: what float kernels compute in.
pub trait Real: Float + Default + Send + Sync + 'static {
    /// A constant given in f64.
    fn c(v: f64) -> Self;
}
impl Real for f32 {
    #[inline(always)]
    fn c(v: f64) -> Self {
        v as f32
    }
}
impl Real for f64 {
    #[inline(always)]
    fn c(v: f64) -> Self {
        v
    }
}

/// A float storage dtype and the [`Real`] type it computes in (f16/bf16 go through f32).
pub trait FloatElem: Num {
    /// The compute type.
    type C: Real;
    /// Widen to the compute type.
    fn to_c(self) -> Self::C;
    /// Narrow from the compute type (round to nearest).
    fn from_c(c: Self::C) -> Self;
}
impl FloatElem for f32 {
    type C = f32;
    #[inline(always)]
    fn to_c(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_c(c: f32) -> f32 {
        c
    }
}
impl FloatElem for f64 {
    type C = f64;
    #[inline(always)]
    fn to_c(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_c(c: f64) -> f64 {
        c
    }
}
impl FloatElem for half::f16 {
    type C = f32;
    #[inline(always)]
    fn to_c(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_c(c: f32) -> Self {
        half::f16::from_f32(c)
    }
}
impl FloatElem for half::bf16 {
    type C = f32;
    #[inline(always)]
    fn to_c(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_c(c: f32) -> Self {
        half::bf16::from_f32(c)
    }
}

// ---------------------------------------------------------------------------
// Maps
// ---------------------------------------------------------------------------

/// Apply `f` to every element of `t`, keeping its shape (parallel for large tensors).
pub fn map_same<T, O>(t: &Tensor, f: impl Fn(T) -> O + Sync + Send) -> Result<Tensor>
where
    T: Element + Pod,
    O: Element + Pod,
{
    let x = t.as_slice::<T>()?;
    let out: Vec<O> = if x.len() >= PAR_MIN {
        x.par_iter().map(|&v| f(v)).collect()
    } else {
        x.iter().map(|&v| f(v)).collect()
    };
    Ok(Tensor::from_vec(t.shape().to_vec(), out)?)
}

/// Apply `f` to every element of `t`, producing a bool tensor of the same shape.
pub fn map_bool<T: Element>(t: &Tensor, f: impl Fn(T) -> bool) -> Result<Tensor> {
    let out = t.as_slice::<T>()?.iter().map(|&v| f(v)).collect();
    Ok(Tensor::from_bools(t.shape().to_vec(), out)?)
}

/// Apply a compute-type function to every element of a float tensor.
pub fn map_unary<T: FloatElem>(
    t: &Tensor,
    f: impl Fn(T::C) -> T::C + Sync + Send,
) -> Result<Tensor> {
    map_same::<T, T>(t, |v| T::from_c(f(v.to_c())))
}

/// `map_float!(tensor, |x: F| expr)`: map a float tensor (f32, f64, f16, bf16)
/// with `expr`, where `F` names the compute type (`f32`, or `f64` for f64 data).
/// Evaluates to `Result<Tensor>`; other dtypes return an error.
macro_rules! map_float {
    ($t:expr, |$x:ident : $F:ident| $body:expr) => {{
        let t: &egret_ir::Tensor = $t;
        $crate::for_dtypes!(t.dtype(), T => {
            #[allow(dead_code)]
            type $F = <T as $crate::ops::elementwise::FloatElem>::C;
            $crate::ops::elementwise::map_unary::<T>(t, |$x: $F| $body)
        }, [F32, F64, F16, BF16])
    }};
}
pub(crate) use map_float;

/// `map_num!(tensor, |x: T| expr)`: map a tensor of any numeric dtype with
/// `expr` (same dtype out), `T` naming its Rust element type.
macro_rules! map_num {
    ($t:expr, |$x:ident : $T:ident| $body:expr) => {{
        let t: &egret_ir::Tensor = $t;
        $crate::for_dtypes!(t.dtype(), $T => {
            $crate::ops::elementwise::map_same::<$T, $T>(t, |$x: $T| $body)
        }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
    }};
}
pub(crate) use map_num;

/// A broadcast of several input shapes: the output shape, and the output
/// iterated as rows of its innermost axis after dropping size-1 axes and merging
/// neighbouring axes that every input treats alike (both broadcast or both not).
struct Plan {
    shape: Vec<usize>,
    dims: Vec<usize>,
    /// Per input, the element stride along each merged axis (0 where broadcast).
    strides: Vec<Vec<usize>>,
}

impl Plan {
    fn new(shapes: &[&[usize]]) -> Result<Plan> {
        let shape = shapes
            .iter()
            .try_fold(Vec::new(), |acc, s| broadcast_shapes(&acc, s))?;
        let n = shape.len();
        let aligned = |s: &[usize], ax: usize| {
            if ax + s.len() >= n {
                s[ax + s.len() - n]
            } else {
                1
            }
        };
        let mut dims: Vec<usize> = Vec::new();
        let mut flags: Vec<Vec<bool>> = Vec::new();
        for (ax, &d) in shape.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let f: Vec<bool> = shapes.iter().map(|s| aligned(s, ax) == 1).collect();
            match (dims.last_mut(), flags.last()) {
                (Some(last), Some(lf)) if *lf == f => *last *= d,
                _ => {
                    dims.push(d);
                    flags.push(f);
                }
            }
        }
        let strides = (0..shapes.len())
            .map(|i| {
                let mut st = vec![0; dims.len()];
                let mut run = 1;
                for ax in (0..dims.len()).rev() {
                    if !flags[ax][i] {
                        st[ax] = run;
                        run *= dims[ax];
                    }
                }
                st
            })
            .collect();
        Ok(Plan {
            shape,
            dims,
            strides,
        })
    }

    /// Length of a row (the innermost merged axis).
    fn inner(&self) -> usize {
        self.dims.last().copied().unwrap_or(1)
    }

    /// Input `i`'s stride along a row (0 or 1).
    fn inner_stride(&self, i: usize) -> usize {
        self.strides[i].last().copied().unwrap_or(0)
    }

    /// Call `row` with every input's offset at the start of each row, in order.
    fn for_rows(&self, mut row: impl FnMut(&[usize])) {
        let m = self.strides.len();
        let mut offs = vec![0usize; m];
        let k = self.dims.len();
        if k <= 1 {
            row(&offs);
            return;
        }
        let outer = &self.dims[..k - 1];
        let total: usize = outer.iter().product();
        let mut idx = vec![0usize; k - 1];
        for _ in 0..total {
            row(&offs);
            for ax in (0..k - 1).rev() {
                idx[ax] += 1;
                for (o, s) in offs.iter_mut().zip(&self.strides) {
                    *o += s[ax];
                }
                if idx[ax] < outer[ax] {
                    break;
                }
                for (o, s) in offs.iter_mut().zip(&self.strides) {
                    *o -= s[ax] * outer[ax];
                }
                idx[ax] = 0;
            }
        }
    }
}

fn check_len(len: usize, shape: &[usize]) -> Result<()> {
    if checked_len(shape)? != len {
        bail!("{len} elements for shape {shape:?}");
    }
    Ok(())
}

/// Numpy-broadcast `f` over two slices with their shapes; returns the output
/// shape and elements. Same-shape inputs run in parallel when large.
pub fn map2<A, B, O>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Result<(Vec<usize>, Vec<O>)>
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Send,
{
    check_len(a.len(), ash)?;
    check_len(b.len(), bsh)?;
    if ash == bsh {
        let out = if a.len() >= PAR_MIN {
            a.par_iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
        } else {
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
        };
        return Ok((ash.to_vec(), out));
    }
    let p = Plan::new(&[ash, bsh])?;
    let len = checked_len(&p.shape)?;
    let mut out = Vec::with_capacity(len);
    if len == 0 {
        return Ok((p.shape, out));
    }
    let n = p.inner();
    let (sa, sb) = (p.inner_stride(0), p.inner_stride(1));
    p.for_rows(|o| {
        let (oa, ob) = (o[0], o[1]);
        match (sa, sb) {
            (0, 0) => {
                let (x, y) = (a[oa], b[ob]);
                out.extend((0..n).map(|_| f(x, y)));
            }
            (0, _) => {
                let x = a[oa];
                out.extend(b[ob..ob + n].iter().map(|&y| f(x, y)));
            }
            (_, 0) => {
                let y = b[ob];
                out.extend(a[oa..oa + n].iter().map(|&x| f(x, y)));
            }
            _ => out.extend(
                a[oa..oa + n]
                    .iter()
                    .zip(&b[ob..ob + n])
                    .map(|(&x, &y)| f(x, y)),
            ),
        }
    });
    Ok((p.shape, out))
}

/// Numpy-broadcast `f` over three slices with their shapes.
fn map3<A, B, C, O>(
    (a, ash): (&[A], &[usize]),
    (b, bsh): (&[B], &[usize]),
    (c, csh): (&[C], &[usize]),
    f: impl Fn(&A, &B, &C) -> O,
) -> Result<(Vec<usize>, Vec<O>)> {
    check_len(a.len(), ash)?;
    check_len(b.len(), bsh)?;
    check_len(c.len(), csh)?;
    let p = Plan::new(&[ash, bsh, csh])?;
    let len = checked_len(&p.shape)?;
    let mut out = Vec::with_capacity(len);
    if len == 0 {
        return Ok((p.shape, out));
    }
    let n = p.inner();
    let (sa, sb, sc) = (p.inner_stride(0), p.inner_stride(1), p.inner_stride(2));
    p.for_rows(|o| {
        out.extend((0..n).map(|j| f(&a[o[0] + j * sa], &b[o[1] + j * sb], &c[o[2] + j * sc])))
    });
    Ok((p.shape, out))
}

/// Error unless both tensors have the same dtype.
fn same_dtype(a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        bail!("input dtypes differ: {} and {}", a.dtype(), b.dtype());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Binary arithmetic, variadic ops
// ---------------------------------------------------------------------------

/// A binary function on numeric elements, monomorphised per dtype.
trait BinOp {
    fn apply<T: Num>(a: T, b: T) -> T;
}

macro_rules! bin_ops {
    ($($name:ident => |$a:ident, $b:ident| $body:expr),* $(,)?) => {$(
        struct $name;
        impl BinOp for $name {
            #[inline(always)]
            fn apply<T: Num>($a: T, $b: T) -> T { $body }
        }
    )*};
}
bin_ops! {
    AddOp => |a, b| a.add(b),
    SubOp => |a, b| a.sub(b),
    MulOp => |a, b| a.mul(b),
    DivOp => |a, b| a.div(b),
    FModOp => |a, b| a.fmod(b),
    PyModOp => |a, b| a.pymod(b),
    // NaN wins, as with numpy's maximum / minimum.
    MaxOp => |a, b| if a.nan() || a >= b { a } else { b },
    MinOp => |a, b| if a.nan() || a <= b { a } else { b },
}

/// `O` on two broadcast tensors of one numeric dtype.
fn binary_t<O: BinOp>(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_dtype(a, b)?;
    for_dtypes!(a.dtype(), T => {
        let (s, v) = map2(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), O::apply::<T>)?;
        Ok(Tensor::from_vec(s, v)?)
    }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
}

fn binary<O: BinOp>(_: &KernelCtx<'_>, ins: &[Option<Value>]) -> Result<Vec<Value>> {
    one(binary_t::<O>(input(ins, 0)?, input(ins, 1)?)?)
}

/// Fold `O` over every (broadcast) input, left to right.
fn variadic_t<O: BinOp>(ins: &[&Tensor]) -> Result<Tensor> {
    let (first, rest) = ins
        .split_first()
        .ok_or_else(|| RuntimeError::msg("needs at least one input"))?;
    rest.iter()
        .try_fold((*first).clone(), |acc, t| binary_t::<O>(&acc, t))
}

fn tensors(ins: &[Option<Value>]) -> Result<Vec<&Tensor>> {
    (0..ins.len()).map(|i| input(ins, i)).collect()
}

fn variadic<O: BinOp>(_: &KernelCtx<'_>, ins: &[Option<Value>]) -> Result<Vec<Value>> {
    one(variadic_t::<O>(&tensors(ins)?)?)
}

fn mean_t(ins: &[&Tensor]) -> Result<Tensor> {
    let sum = variadic_t::<AddOp>(ins)?;
    let n = ins.len() as f64;
    map_num!(&sum, |x: T| x.div(T::from_f64(n)))
}

fn modulo(ctx: &KernelCtx<'_>, ins: &[Option<Value>]) -> Result<Vec<Value>> {
    let (a, b) = (input(ins, 0)?, input(ins, 1)?);
    one(if ctx.attrs().int_or("fmod", 0)? != 0 {
        binary_t::<FModOp>(a, b)?
    } else {
        binary_t::<PyModOp>(a, b)?
    })
}

/// `Pow`: the output has the base's dtype; the exponent may be any numeric dtype.
fn pow_t(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dtype() == DType::F32 && b.dtype() == DType::F32 {
        let e = b.as_slice::<f32>()?;
        if e == [2.0] {
            return map_same::<f32, f32>(a, |x| x * x);
        }
        let (s, v) = map2(a.as_slice::<f32>()?, a.shape(), e, b.shape(), f32::powf)?;
        return Ok(Tensor::from_vec(s, v)?);
    }
    let int_exp = b.dtype().is_int();
    for_dtypes!(a.dtype(), T => {
        let x = a.as_slice::<T>()?;
        let (s, v) = if int_exp && a.dtype().is_int() {
            map2(x, a.shape(), &b.to_i64_vec()?, b.shape(), |x: T, e| x.pow_int(e))?
        } else {
            map2(x, a.shape(), &b.to_f64_vec()?, b.shape(), |x: T, e| T::from_f64(x.to_f64().powf(e)))?
        };
        Ok(Tensor::from_vec(s, v)?)
    }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
}

fn prelu_t(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    same_dtype(x, slope)?;
    for_dtypes!(x.dtype(), T => {
        let zero = T::default();
        let (s, v) = map2(x.as_slice::<T>()?, x.shape(), slope.as_slice::<T>()?, slope.shape(),
            |x: T, a: T| if x < zero { x.mul(a) } else { x })?;
        if s != x.shape() {
            bail!("slope {:?} does not broadcast to X {:?}", slope.shape(), x.shape());
        }
        Ok(Tensor::from_vec(s, v)?)
    }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
}

/// `Clip` with optional scalar bounds; NaN inputs stay NaN.
fn clip_t(x: &Tensor, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Result<Tensor> {
    for_dtypes!(x.dtype(), T => {
        let bound = |b: Option<&Tensor>| -> Result<Option<T>> {
            let Some(b) = b else { return Ok(None) };
            match b.as_slice::<T>()? {
                [] => Ok(None),
                [v] => Ok(Some(*v)),
                _ => bail!("Clip bounds must be scalars, got shape {:?}", b.shape()),
            }
        };
        let (lo, hi) = (bound(lo)?, bound(hi)?);
        map_same::<T, T>(x, |v| {
            let v = match lo { Some(l) if v < l => l, _ => v };
            match hi { Some(h) if v > h => h, _ => v }
        })
    }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64])
}

// ---------------------------------------------------------------------------
// Comparison, logic, bitwise
// ---------------------------------------------------------------------------

/// A comparison, monomorphised per element type.
trait CmpOp {
    fn apply<T: PartialOrd>(a: T, b: T) -> bool;
}

macro_rules! cmp_ops {
    ($($name:ident => $op:tt),* $(,)?) => {$(
        struct $name;
        impl CmpOp for $name {
            #[inline(always)]
            fn apply<T: PartialOrd>(a: T, b: T) -> bool { a $op b }
        }
    )*};
}
cmp_ops! { EqOp => ==, LtOp => <, LeOp => <=, GtOp => >, GeOp => >= }

fn compare_t<O: CmpOp>(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_dtype(a, b)?;
    let (s, v) = if a.dtype() == DType::String {
        let sa: Vec<&str> = a.as_strings()?.iter().map(String::as_str).collect();
        let sb: Vec<&str> = b.as_strings()?.iter().map(String::as_str).collect();
        map2(&sa, a.shape(), &sb, b.shape(), O::apply::<&str>)?
    } else {
        for_dtypes!(a.dtype(), T => {
            map2(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), O::apply::<T>)?
        }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool])
    };
    Ok(Tensor::from_bools(s, v)?)
}

fn compare<O: CmpOp>(_: &KernelCtx<'_>, ins: &[Option<Value>]) -> Result<Vec<Value>> {
    one(compare_t::<O>(input(ins, 0)?, input(ins, 1)?)?)
}

/// A bitwise / logical binary function on integers and bools.
trait BitOp {
    fn apply<T: num_traits::PrimInt>(a: T, b: T) -> T;
    fn apply_bool(a: bool, b: bool) -> bool;
}

macro_rules! bit_ops {
    ($($name:ident => $op:tt),* $(,)?) => {$(
        struct $name;
        impl BitOp for $name {
            #[inline(always)]
            fn apply<T: num_traits::PrimInt>(a: T, b: T) -> T { a $op b }
            #[inline(always)]
            fn apply_bool(a: bool, b: bool) -> bool { a $op b }
        }
    )*};
}
bit_ops! { AndOp => &, OrOp => |, XorOp => ^ }

/// `O` on two broadcast integer tensors, or on two bool tensors.
fn bitwise_t<O: BitOp>(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_dtype(a, b)?;
    if a.dtype() == DType::Bool {
        let (s, v) = map2(
            a.as_slice::<bool>()?,
            a.shape(),
            b.as_slice::<bool>()?,
            b.shape(),
            O::apply_bool,
        )?;
        return Ok(Tensor::from_bools(s, v)?);
    }
    for_dtypes!(a.dtype(), T => {
        let (s, v) = map2(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), O::apply::<T>)?;
        Ok(Tensor::from_vec(s, v)?)
    }, [I8, I16, I32, I64, U8, U16, U32, U64])
}

fn bitwise<O: BitOp>(_: &KernelCtx<'_>, ins: &[Option<Value>]) -> Result<Vec<Value>> {
    one(bitwise_t::<O>(input(ins, 0)?, input(ins, 1)?)?)
}

/// `BitShift`; shifting by the bit width or more gives 0.
fn bitshift_t(a: &Tensor, b: &Tensor, left: bool) -> Result<Tensor> {
    same_dtype(a, b)?;
    for_dtypes!(a.dtype(), T => {
        // One body serves every unsigned width, so the conversion is
        // infallible for some `T` and a no-op for `u32`.
        #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
        let f = |x: T, s: T| {
            let s = u32::try_from(s).unwrap_or(u32::MAX);
            let r = if left { x.checked_shl(s) } else { x.checked_shr(s) };
            r.unwrap_or(0)
        };
        let (s, v) = map2(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), f)?;
        Ok(Tensor::from_vec(s, v)?)
    }, [U8, U16, U32, U64])
}

fn not_t(t: &Tensor) -> Result<Tensor> {
    if t.dtype() == DType::Bool {
        return map_bool::<bool>(t, |x| !x);
    }
    for_dtypes!(t.dtype(), T => { map_same::<T, T>(t, |x| !x) }, [I8, I16, I32, I64, U8, U16, U32, U64])
}

// ---------------------------------------------------------------------------
// Where
// ---------------------------------------------------------------------------

/// `Where` for elements of any fixed size: picks raw bit patterns.
fn where_words<W: Pod + Sync>(c: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let words = |t: &Tensor| -> Result<Vec<W>> {
        bytemuck::try_cast_slice::<u8, W>(t.bytes())
            .map(<[W]>::to_vec)
            .or_else(|_| Ok(bytemuck::pod_collect_to_vec::<u8, W>(t.bytes())))
    };
    let (wx, wy) = (words(x)?, words(y)?);
    let (s, v) = map3(
        (c.as_slice::<bool>()?, c.shape()),
        (&wx, x.shape()),
        (&wy, y.shape()),
        |&c, &a, &b| if c { a } else { b },
    )?;
    Ok(Tensor::from_bytes(x.dtype(), s, bytemuck::cast_slice(&v))?)
}

fn where_t(c: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    same_dtype(x, y)?;
    if c.dtype() != DType::Bool {
        bail!("Where condition must be bool, got {}", c.dtype());
    }
    match x.dtype() {
        DType::String => {
            let (s, v) = map3(
                (c.as_slice::<bool>()?, c.shape()),
                (x.as_strings()?, x.shape()),
                (y.as_strings()?, y.shape()),
                |&c, a: &String, b: &String| if c { a.clone() } else { b.clone() },
            )?;
            Ok(Tensor::from_strings(s, v)?)
        }
        dt => match dt.size() {
            Some(1) => where_words::<u8>(c, x, y),
            Some(2) => where_words::<u16>(c, x, y),
            Some(4) => where_words::<u32>(c, x, y),
            Some(8) => where_words::<u64>(c, x, y),
            _ => bail!("Where does not support dtype {dt}"),
        },
    }
}

// ---------------------------------------------------------------------------
// erf
// ---------------------------------------------------------------------------

/// The error function, accurate to a few ulp in `f32` and `f64` (the FreeBSD
/// `s_erf.c` rational approximations, via the `libm` crate's port).
pub fn erf<F: Real>(x: F) -> F {
    let c = F::c;
    let poly = |z: F, cs: &[f64]| cs.iter().rev().fold(F::zero(), |acc, &k| acc * z + c(k));
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let y = if ax < c(0.84375) {
        let z = x * x;
        let r = poly(
            z,
            &[
                1.283_791_670_955_125_6e-1,
                -3.250_421_072_470_015e-1,
                -2.848_174_957_559_851e-2,
                -5.770_270_296_489_442e-3,
                -2.376_301_665_665_016_3e-5,
            ],
        );
        let s = poly(
            z,
            &[
                1.0,
                3.979_172_239_591_553_5e-1,
                6.502_224_998_876_73e-2,
                5.081_306_281_875_766e-3,
                1.324_947_380_043_216_4e-4,
                -3.960_228_278_775_368e-6,
            ],
        );
        return x + x * (r / s);
    } else if ax < c(1.25) {
        let s = ax - F::one();
        let p = poly(
            s,
            &[
                -2.362_118_560_752_659_4e-3,
                4.148_561_186_837_483_3e-1,
                -3.722_078_760_357_013e-1,
                3.183_466_199_011_617_5e-1,
                -1.108_946_942_823_966_8e-1,
                3.547_830_432_561_823_6e-2,
                -2.166_375_594_868_791e-3,
            ],
        );
        let q = poly(
            s,
            &[
                1.0,
                1.064_208_804_008_442_3e-1,
                5.403_979_177_021_71e-1,
                7.182_865_441_419_627e-2,
                1.261_712_198_087_616_4e-1,
                1.363_708_391_202_905e-2,
                1.198_449_984_679_910_7e-2,
            ],
        );
        c(8.450_629_115_104_675e-1) + p / q
    } else if ax < c(6.0) {
        let s = F::one() / (ax * ax);
        let (r, q) = if ax < c(1.0 / 0.35) {
            (
                poly(
                    s,
                    &[
                        -9.864_944_034_847_148e-3,
                        -6.938_585_727_071_818e-1,
                        -1.055_862_622_532_329_1e1,
                        -6.237_533_245_032_600_6e1,
                        -1.623_966_694_625_734_7e2,
                        -1.846_050_929_067_110_4e2,
                        -8.128_743_550_630_66e1,
                        -9.814_329_344_169_145,
                    ],
                ),
                poly(
                    s,
                    &[
                        1.0,
                        1.965_127_166_743_925_7e1,
                        1.376_577_541_435_190_4e2,
                        4.345_658_774_752_292_3e2,
                        6.453_872_717_332_679e2,
                        4.290_081_400_275_678_3e2,
                        1.086_350_055_417_794_4e2,
                        6.570_249_770_319_282,
                        -6.042_441_521_485_81e-2,
                    ],
                ),
            )
        } else {
            (
                poly(
                    s,
                    &[
                        -9.864_942_924_700_1e-3,
                        -7.992_832_376_805_23e-1,
                        -1.775_795_491_775_475_2e1,
                        -1.606_363_848_558_219_2e2,
                        -6.375_664_433_683_896e2,
                        -1.025_095_131_611_077_2e3,
                        -4.835_191_916_086_514e2,
                    ],
                ),
                poly(
                    s,
                    &[
                        1.0,
                        3.033_806_074_348_246e1,
                        3.257_925_129_965_739e2,
                        1.536_729_586_084_437e3,
                        3.199_858_219_508_595_5e3,
                        2.553_050_406_433_164_4e3,
                        4.745_285_412_069_553_7e2,
                        -2.244_095_244_658_582e1,
                    ],
                ),
            )
        };
        F::one() - (-ax * ax - c(0.5625) + r / q).exp() / ax
    } else {
        F::one()
    };
    if x < F::zero() {
        -y
    } else {
        y
    }
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

/// Register this family's kernels.
pub fn register(r: &mut Registry) {
    r.add("Add", binary::<AddOp>);
    r.add("Sub", binary::<SubOp>);
    r.add("Mul", binary::<MulOp>);
    r.add("Div", binary::<DivOp>);
    r.add("Mod", modulo);
    r.add("Pow", |_, ins| one(pow_t(input(ins, 0)?, input(ins, 1)?)?));
    r.add("PRelu", |_, ins| {
        one(prelu_t(input(ins, 0)?, input(ins, 1)?)?)
    });
    r.add("Min", variadic::<MinOp>);
    r.add("Max", variadic::<MaxOp>);
    r.add("Sum", variadic::<AddOp>);
    r.add("Mean", |_, ins| one(mean_t(&tensors(ins)?)?));
    r.add("Clip", |_, ins| {
        one(clip_t(
            input(ins, 0)?,
            opt_input(ins, 1)?,
            opt_input(ins, 2)?,
        )?)
    });
    r.add("Where", |_, ins| {
        one(where_t(input(ins, 0)?, input(ins, 1)?, input(ins, 2)?)?)
    });

    r.add("Equal", compare::<EqOp>);
    r.add("Less", compare::<LtOp>);
    r.add("LessOrEqual", compare::<LeOp>);
    r.add("Greater", compare::<GtOp>);
    r.add("GreaterOrEqual", compare::<GeOp>);
    r.add("And", bitwise::<AndOp>);
    r.add("Or", bitwise::<OrOp>);
    r.add("Xor", bitwise::<XorOp>);
    r.add("Not", |_, ins| one(not_t(input(ins, 0)?)?));
    r.add("BitwiseAnd", bitwise::<AndOp>);
    r.add("BitwiseOr", bitwise::<OrOp>);
    r.add("BitwiseXor", bitwise::<XorOp>);
    r.add("BitwiseNot", |_, ins| one(not_t(input(ins, 0)?)?));
    r.add("BitShift", |ctx, ins| {
        let left = match ctx.attrs().string_or("direction", "")? {
            "LEFT" => true,
            "RIGHT" => false,
            d => bail!("BitShift direction must be LEFT or RIGHT, got {d:?}"),
        };
        one(bitshift_t(input(ins, 0)?, input(ins, 1)?, left)?)
    });

    r.add("Abs", |_, ins| {
        one(map_num!(input(ins, 0)?, |x: T| x.num_abs())?)
    });
    r.add("Neg", |_, ins| {
        one(map_num!(input(ins, 0)?, |x: T| x.num_neg())?)
    });
    r.add("Sign", |_, ins| {
        one(map_num!(input(ins, 0)?, |x: T| {
            let zero = T::default();
            if x > zero {
                T::from_f64(1.0)
            } else if x < zero {
                T::from_f64(-1.0)
            } else {
                x
            }
        })?)
    });
    r.add("Floor", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.floor())?)
    });
    r.add("Ceil", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.ceil())?)
    });
    r.add("Round", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.round_ties_even())?)
    });
    r.add("Sqrt", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.sqrt())?)
    });
    r.add("Reciprocal", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| 1.0 / x)?)
    });
    r.add("Exp", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.exp())?)
    });
    r.add("Log", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.ln())?)
    });
    r.add("Erf", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| erf(x))?)
    });
    r.add("Sin", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.sin())?)
    });
    r.add("Cos", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.cos())?)
    });
    r.add("Tan", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.tan())?)
    });
    r.add("Asin", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.asin())?)
    });
    r.add("Acos", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.acos())?)
    });
    r.add("Atan", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.atan())?)
    });
    r.add("Sinh", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.sinh())?)
    });
    r.add("Cosh", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.cosh())?)
    });
    r.add("Asinh", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.asinh())?)
    });
    r.add("Acosh", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.acosh())?)
    });
    r.add("Atanh", |_, ins| {
        one(map_float!(input(ins, 0)?, |x: F| x.atanh())?)
    });
    r.add("IsNaN", |_, ins| {
        let t = input(ins, 0)?;
        one(for_dtypes!(t.dtype(), T => { map_bool::<T>(t, |x| x.nan())? }, [F32, F64, F16, BF16]))
    });
    r.add("IsInf", |ctx, ins| {
        let t = input(ins, 0)?;
        let neg = ctx.attrs().int_or("detect_negative", 1)? != 0;
        let pos = ctx.attrs().int_or("detect_positive", 1)? != 0;
        one(for_dtypes!(t.dtype(), T => {
            map_bool::<T>(t, |x| {
                let x = x.to_c();
                x.is_infinite() && if x > 0.0 { pos } else { neg }
            })?
        }, [F32, F64, F16, BF16]))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(t: &Tensor) -> Vec<f32> {
        t.as_slice::<f32>().unwrap().to_vec()
    }

    fn tf(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v).unwrap()
    }

    #[test]
    fn add_broadcasts_like_numpy() {
        // [2,3] + [3] (row bias), [2,1] + [1,3] (outer), scalar + [2,3].
        let a = tf(&[2, 3], vec![1., 2., 3., 4., 5., 6.]);
        let r = binary_t::<AddOp>(&a, &tf(&[3], vec![10., 20., 30.])).unwrap();
        assert_eq!(f32s(&r), vec![11., 22., 33., 14., 25., 36.]);
        let r =
            binary_t::<SubOp>(&tf(&[2, 1], vec![1., 2.]), &tf(&[1, 3], vec![1., 2., 3.])).unwrap();
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(f32s(&r), vec![0., -1., -2., 1., 0., -1.]);
        let r = binary_t::<MulOp>(&tf(&[], vec![2.]), &a).unwrap();
        assert_eq!(f32s(&r), vec![2., 4., 6., 8., 10., 12.]);
        // Channel bias [1,2,1,1] on [1,2,2,2].
        let x = tf(&[1, 2, 2, 2], (0..8).map(|v| v as f32).collect());
        let r = binary_t::<AddOp>(&x, &tf(&[1, 2, 1, 1], vec![100., 200.])).unwrap();
        assert_eq!(
            f32s(&r),
            vec![100., 101., 102., 103., 204., 205., 206., 207.]
        );
        assert!(binary_t::<AddOp>(&a, &tf(&[2], vec![1., 2.])).is_err());
    }

    #[test]
    fn integer_div_and_mod_follow_numpy() {
        let a = Tensor::from_vec(vec![4], vec![7i32, -7, 7, -7]).unwrap();
        let b = Tensor::from_vec(vec![4], vec![2i32, 2, -2, 0]).unwrap();
        let d = binary_t::<DivOp>(&a, &b).unwrap();
        assert_eq!(d.as_slice::<i32>().unwrap(), &[3, -3, -3, 0]);
        let m = binary_t::<PyModOp>(&a, &b).unwrap();
        assert_eq!(m.as_slice::<i32>().unwrap(), &[1, 1, -1, 0]);
        let m = binary_t::<FModOp>(&a, &b).unwrap();
        assert_eq!(m.as_slice::<i32>().unwrap(), &[1, -1, 1, 0]);
        let u = Tensor::from_vec(vec![2], vec![250u8, 7]).unwrap();
        let s = binary_t::<AddOp>(&u, &Tensor::from_vec(vec![2], vec![10u8, 1]).unwrap()).unwrap();
        assert_eq!(s.as_slice::<u8>().unwrap(), &[4, 8]);
        let fm = binary_t::<PyModOp>(&tf(&[2], vec![-4.5, 4.5]), &tf(&[2], vec![2., -2.])).unwrap();
        assert_eq!(f32s(&fm), vec![1.5, -1.5]);
    }

    #[test]
    fn min_max_propagate_nan_and_mean_averages() {
        let a = tf(&[3], vec![1., f32::NAN, 5.]);
        let b = tf(&[3], vec![2., 0., f32::NAN]);
        let c = tf(&[1], vec![3.]);
        let mx = f32s(&variadic_t::<MaxOp>(&[&a, &b, &c]).unwrap());
        assert_eq!(mx[0], 3.);
        assert!(mx[1].is_nan() && mx[2].is_nan());
        let mn = f32s(&variadic_t::<MinOp>(&[&a, &c]).unwrap());
        assert_eq!(mn[0], 1.);
        assert!(mn[1].is_nan());
        assert_eq!(mn[2], 3.);
        let m = mean_t(&[&tf(&[2], vec![1., 2.]), &tf(&[2], vec![3., 6.])]).unwrap();
        assert_eq!(f32s(&m), vec![2., 4.]);
    }

    #[test]
    fn pow_mixes_dtypes() {
        let r = pow_t(
            &tf(&[3], vec![1., 2., 3.]),
            &Tensor::from_vec(vec![1], vec![3i64]).unwrap(),
        )
        .unwrap();
        assert_eq!(f32s(&r), vec![1., 8., 27.]);
        let r = pow_t(
            &Tensor::from_vec(vec![2], vec![2i32, 3]).unwrap(),
            &tf(&[2], vec![0.5, 2.]),
        )
        .unwrap();
        assert_eq!(r.as_slice::<i32>().unwrap(), &[1, 9]);
        let r = pow_t(
            &Tensor::from_vec(vec![3], vec![2i64, -1, 3]).unwrap(),
            &Tensor::from_vec(vec![3], vec![10i64, -3, -1]).unwrap(),
        )
        .unwrap();
        assert_eq!(r.as_slice::<i64>().unwrap(), &[1024, -1, 0]);
        let r = pow_t(&tf(&[2], vec![3., -2.]), &tf(&[], vec![2.])).unwrap();
        assert_eq!(f32s(&r), vec![9., 4.]);
    }

    #[test]
    fn compare_logic_and_bits() {
        let a = Tensor::from_vec(vec![3], vec![1i8, 5, -3]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![1i8]).unwrap();
        assert_eq!(
            compare_t::<GtOp>(&a, &b)
                .unwrap()
                .as_slice::<bool>()
                .unwrap(),
            &[false, true, false]
        );
        assert_eq!(
            compare_t::<LeOp>(&a, &b)
                .unwrap()
                .as_slice::<bool>()
                .unwrap(),
            &[true, false, true]
        );
        let s1 = Tensor::from_strings(vec![2], vec!["a".into(), "b".into()]).unwrap();
        let s2 = Tensor::from_strings(vec![], vec!["b".into()]).unwrap();
        assert_eq!(
            compare_t::<EqOp>(&s1, &s2)
                .unwrap()
                .as_slice::<bool>()
                .unwrap(),
            &[false, true]
        );
        let t = Tensor::from_bools(vec![2], vec![true, false]).unwrap();
        let f = Tensor::from_bools(vec![2, 1], vec![true, false]).unwrap();
        let x = bitwise_t::<XorOp>(&t, &f).unwrap();
        assert_eq!(x.shape(), &[2, 2]);
        assert_eq!(x.as_slice::<bool>().unwrap(), &[false, true, true, false]);
        let u = Tensor::from_vec(vec![3], vec![16u8, 1, 255]).unwrap();
        let s = Tensor::from_vec(vec![3], vec![1u8, 3, 9]).unwrap();
        assert_eq!(
            bitshift_t(&u, &s, false).unwrap().as_slice::<u8>().unwrap(),
            &[8, 0, 0]
        );
        assert_eq!(
            bitshift_t(&u, &s, true).unwrap().as_slice::<u8>().unwrap(),
            &[32, 8, 0]
        );
        assert_eq!(not_t(&u).unwrap().as_slice::<u8>().unwrap(), &[239, 254, 0]);
        let i = Tensor::from_vec(vec![2], vec![0b1100i32, -1]).unwrap();
        let j = Tensor::from_vec(vec![2], vec![0b1010i32, 6]).unwrap();
        assert_eq!(
            bitwise_t::<AndOp>(&i, &j)
                .unwrap()
                .as_slice::<i32>()
                .unwrap(),
            &[0b1000, 6]
        );
    }

    #[test]
    fn where_broadcasts_any_dtype() {
        let c = Tensor::from_bools(vec![2, 1], vec![true, false]).unwrap();
        let x = tf(&[2], vec![1., 2.]);
        let y = tf(&[], vec![-1.]);
        let r = where_t(&c, &x, &y).unwrap();
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(f32s(&r), vec![1., 2., -1., -1.]);
        let xs = Tensor::from_strings(vec![2], vec!["a".into(), "b".into()]).unwrap();
        let ys = Tensor::from_strings(vec![2], vec!["c".into(), "d".into()]).unwrap();
        let c = Tensor::from_bools(vec![2], vec![false, true]).unwrap();
        assert_eq!(
            where_t(&c, &xs, &ys).unwrap().as_strings().unwrap(),
            &["c".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn clip_and_prelu() {
        let x = tf(&[4], vec![-2., 0.5, 3., f32::NAN]);
        let r = f32s(&clip_t(&x, Some(&tf(&[], vec![-1.])), Some(&tf(&[], vec![1.]))).unwrap());
        assert_eq!(&r[..3], &[-1., 0.5, 1.]);
        assert!(r[3].is_nan());
        let r = clip_t(&x, None, Some(&tf(&[], vec![0.]))).unwrap();
        assert_eq!(&f32s(&r)[..3], &[-2., 0., 0.]);
        let i = Tensor::from_vec(vec![3], vec![-100i8, 5, 100]).unwrap();
        let r = clip_t(
            &i,
            Some(&Tensor::from_vec(vec![], vec![-5i8]).unwrap()),
            None,
        )
        .unwrap();
        assert_eq!(r.as_slice::<i8>().unwrap(), &[-5, 5, 100]);
        let x = tf(&[2, 2], vec![-1., 2., -3., 4.]);
        let r = prelu_t(&x, &tf(&[2], vec![0.5, 0.25])).unwrap();
        // The slope broadcasts along the last axis, as in numpy.
        assert_eq!(f32s(&r), vec![-0.5, 2., -1.5, 4.]);
    }

    #[test]
    fn erf_matches_reference_values() {
        // erf values from mpmath.
        let cases = [
            (0.0, 0.0),
            (1e-5, 1.1283791670578999e-05),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (-0.7, -0.6778011938374184),
            (4.5, 0.9999999998033839),
            (1.1, 0.8802050695740817),
            (2.9, 0.9999589021219005),
        ];
        for (x, want) in cases {
            let got = erf(x);
            assert!(
                (got - want).abs() <= 1e-15 + 1e-14 * want.abs(),
                "erf({x}) = {got}, want {want}"
            );
            let got = erf(x as f32) as f64;
            assert!(
                (got - want).abs() <= 1e-7 * want.abs().max(1e-3),
                "erff({x}) = {got}, want {want}"
            );
        }
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(-30.0f32), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn float_unary_maps_cover_half_types() {
        let h = Tensor::from_vec(
            vec![3],
            vec![
                half::f16::from_f32(2.5),
                half::f16::from_f32(-0.5),
                half::f16::from_f32(1.5),
            ],
        )
        .unwrap();
        let round = |t: &Tensor| -> Result<Tensor> { map_float!(t, |x: F| x.round_ties_even()) };
        let r = round(&h).unwrap();
        let v: Vec<f32> = r
            .as_slice::<half::f16>()
            .unwrap()
            .iter()
            .map(|x| x.to_f32())
            .collect();
        assert_eq!(v, vec![2., -0., 2.]);
        let i = Tensor::from_vec(vec![2], vec![i8::MIN, -3]).unwrap();
        let abs = |t: &Tensor| -> Result<Tensor> { map_num!(t, |x: T| x.num_abs()) };
        assert_eq!(abs(&i).unwrap().as_slice::<i8>().unwrap(), &[i8::MIN, 3]);
        assert!(round(&i).is_err());
    }

    #[test]
    fn large_maps_run_in_parallel_and_match() {
        let n = PAR_MIN + 7;
        let a = tf(&[n], (0..n).map(|v| v as f32).collect());
        let r = binary_t::<AddOp>(&a, &a).unwrap();
        assert_eq!(f32s(&r)[n - 1], 2.0 * (n - 1) as f32);
        let neg = |t: &Tensor| -> Result<Tensor> { map_float!(t, |x: F| -x) };
        let r = neg(&a).unwrap();
        assert_eq!(f32s(&r)[5], -5.0);
    }
}
