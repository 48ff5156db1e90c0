//! Element conversions shared by Cast, the quantization ops and anything else
//! that moves values between dtypes.
//!
//! * [`FloatFormat`]: exact round-half-to-even encoding of an `f64` into the small
//!   float formats (float8 e4m3fn/e4m3fnuz/e5m2/e5m2fnuz, float4 e2m1) and into
//!   f16/bf16, with ONNX's `saturate` rule, plus decoding of the small formats.
//!   NaN, infinity and overflow follow the ONNX reference (ml_dtypes).
//! * [`e8m0_encode`] / [`e8m0_decode`]: float8 e8m0 (the MX scale type), with
//!   Cast's `round_mode` ([`E8m0Round`]), bit-exact with `onnx.numpy_helper`.
//! * [`Wide`], [`Widen`], [`Narrow`]: a scalar in the widest exact form of its
//!   source type and the numpy-style conversion back to any native type.
//! * [`collect_as`]: build a tensor of any dense dtype from an iterator of [`Wide`].
//! * [`float_to_string`] / [`parse_wide`]: numpy's `astype(str)` formatting and the
//!   string parsing Cast uses.

use crate::error::{Result, RuntimeError};
use egret_ir::{DType, Tensor};
use half::{bf16, f16};

/// How a float format spends its special codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Specials {
    /// IEEE-like: the all-ones exponent holds infinities and NaNs (e5m2, f16, bf16).
    Ieee,
    /// Finite only, `S.1111.111` is NaN (e4m3fn).
    FiniteNan,
    /// Finite only, no negative zero; `0x80` is the single NaN (the `fnuz` types).
    Fnuz,
    /// Finite only, no NaN at all (float4 e2m1).
    None,
}

/// A binary floating-point format of at most 16 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloatFormat {
    /// Exponent field width.
    pub exp_bits: u32,
    /// Mantissa field width.
    pub man_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Special-value layout.
    pub specials: Specials,
}

/// `2^k` for `k` in the normal f64 exponent range.
fn pow2(k: i32) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

impl FloatFormat {
    /// The format of a small-float or half-precision dtype.
    pub fn of(dt: DType) -> Option<FloatFormat> {
        let f = |exp_bits, man_bits, bias, specials| FloatFormat {
            exp_bits,
            man_bits,
            bias,
            specials,
        };
        Some(match dt {
            DType::F8E4M3FN => f(4, 3, 7, Specials::FiniteNan),
            DType::F8E4M3FNUZ => f(4, 3, 8, Specials::Fnuz),
            DType::F8E5M2 => f(5, 2, 15, Specials::Ieee),
            DType::F8E5M2FNUZ => f(5, 2, 16, Specials::Fnuz),
            DType::F4E2M1 => f(2, 1, 1, Specials::None),
            DType::F16 => f(5, 10, 15, Specials::Ieee),
            DType::BF16 => f(8, 7, 127, Specials::Ieee),
            _ => return None,
        })
    }

    fn sign_bit(&self) -> u32 {
        1 << (self.exp_bits + self.man_bits)
    }

    /// Smallest normal exponent.
    fn emin(&self) -> i32 {
        1 - self.bias
    }

    /// Code (without sign) of the largest finite magnitude.
    pub fn max_code(&self) -> u32 {
        let all = self.sign_bit() - 1;
        match self.specials {
            Specials::Ieee => all - (1 << self.man_bits),
            Specials::FiniteNan => all - 1,
            Specials::Fnuz | Specials::None => all,
        }
    }

    /// The largest finite value.
    pub fn max_value(&self) -> f64 {
        self.decode(self.max_code())
    }

    /// Decode a code into its value (exact in f64; also exact in f32 for 8 bits or less).
    pub fn decode(&self, code: u32) -> f64 {
        let sign = code & self.sign_bit() != 0;
        let mag = code & (self.sign_bit() - 1);
        let exp_field = (mag >> self.man_bits) as i32;
        let man = mag & ((1 << self.man_bits) - 1);
        let exp_all_ones = exp_field == (1 << self.exp_bits) - 1;
        let v = match self.specials {
            Specials::Fnuz if code == self.sign_bit() => return f64::NAN,
            Specials::FiniteNan if mag == self.sign_bit() - 1 => return f64::NAN,
            Specials::Ieee if exp_all_ones => {
                if man == 0 {
                    f64::INFINITY
                } else {
                    return f64::NAN;
                }
            }
            _ if exp_field == 0 => man as f64 * pow2(self.emin() - self.man_bits as i32),
            _ => {
                ((1u32 << self.man_bits) + man) as f64
                    * pow2(exp_field - self.bias - self.man_bits as i32)
            }
        };
        if sign {
            -v
        } else {
            v
        }
    }

    /// The code for an out-of-range magnitude (infinity or overflow after rounding).
    fn overflow(&self, sign: u32, saturate: bool) -> u32 {
        if saturate {
            return sign | self.max_code();
        }
        match self.specials {
            Specials::Ieee => sign | (self.max_code() + 1),
            Specials::FiniteNan => sign | (self.sign_bit() - 1),
            Specials::Fnuz => self.sign_bit(),
            Specials::None => sign | self.max_code(),
        }
    }

    /// Encode `x`, rounding half to even. With `saturate`, values beyond the finite
    /// range (infinities included) clamp to the largest finite value; otherwise they
    /// become infinity where the format has one and NaN where it does not. Float4
    /// e2m1 has neither, so it always saturates.
    pub fn encode(&self, x: f64, saturate: bool) -> u32 {
        let sign = if x.is_sign_negative() {
            self.sign_bit()
        } else {
            0
        };
        if x.is_nan() {
            return match self.specials {
                Specials::Ieee => sign | (self.max_code() + 1) | (1 << (self.man_bits - 1)),
                Specials::FiniteNan => sign | (self.sign_bit() - 1),
                Specials::Fnuz => self.sign_bit(),
                // ml_dtypes (the ONNX reference) maps NaN to zero with the sign flipped.
                Specials::None => sign ^ self.sign_bit(),
            };
        }
        let zero = if self.specials == Specials::Fnuz {
            0
        } else {
            sign
        };
        let a = x.abs();
        if a.is_infinite() {
            return self.overflow(sign, saturate);
        }
        let bits = a.to_bits();
        let exp_field = (bits >> 52) as i32;
        if exp_field == 0 {
            // Zero or an f64 subnormal: far below every format's smallest subnormal.
            return zero;
        }
        let e_max = (1 << self.exp_bits) - 1 - self.bias;
        let e = exp_field - 1023;
        if e > e_max {
            return self.overflow(sign, saturate);
        }
        let e = e.max(self.emin());
        let quantum = e - self.man_bits as i32;
        let r = (a * pow2(-quantum)).round_ties_even() as u32;
        if r == 0 {
            return zero;
        }
        // `r` is the significand in units of 2^quantum: 2^man_bits <= r <= 2^(man_bits+1)
        // for normals (the top value carries into the next binade), below for subnormals.
        let code = if r < (1 << self.man_bits) {
            r
        } else {
            let exp_field = (e + self.bias) as u32;
            (exp_field << self.man_bits) + (r - (1 << self.man_bits))
        };
        if code > self.max_code() {
            return self.overflow(sign, saturate);
        }
        sign | code
    }
}

/// How Cast rounds a value to float8 e8m0 (its `round_mode` attribute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum E8m0Round {
    /// Towards +infinity in magnitude: any mantissa bit bumps the exponent (the default).
    #[default]
    Up,
    /// Truncate the mantissa.
    Down,
    /// To nearest, ties away from zero.
    Nearest,
}

impl E8m0Round {
    /// Parse a `round_mode` attribute value (`up`, `down`, `nearest`).
    pub fn parse(s: &str) -> Result<E8m0Round> {
        match s {
            "up" => Ok(E8m0Round::Up),
            "down" => Ok(E8m0Round::Down),
            "nearest" => Ok(E8m0Round::Nearest),
            _ => Err(RuntimeError::msg(format!(
                "round_mode `{s}` is not one of up, down, nearest"
            ))),
        }
    }
}

/// The value of a float8 e8m0 code: `2^(code - 127)`, `0xff` is NaN.
pub fn e8m0_decode(code: u8) -> f64 {
    if code == 0xff {
        f64::NAN
    } else {
        2f64.powi(code as i32 - 127)
    }
}

/// Encode an f32 as float8 e8m0 like the ONNX reference (`to_float8e8m0`): the
/// code is the f32's biased exponent (the sign is dropped, NaN and infinities
/// give `0xff`), bumped by one when `round` says so. With `saturate`, the largest
/// exponent is never bumped into the NaN code.
pub fn e8m0_encode(x: f32, saturate: bool, round: E8m0Round) -> u8 {
    let bits = x.to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return 0xff;
    }
    let bump = match round {
        E8m0Round::Down => false,
        E8m0Round::Up => bits & 0x7f_ffff != 0,
        E8m0Round::Nearest => {
            let (guard, round_bit, sticky) = (
                bits & 0x40_0000 != 0,
                bits & 0x20_0000 != 0,
                bits & 0x1f_ffff != 0,
            );
            guard && (round_bit || sticky || exp > 0)
        }
    };
    if bump && !(saturate && exp == 0xfe) {
        (exp + 1) as u8
    } else {
        exp as u8
    }
}

/// Decode a small-float tensor (float8 / float4 / e8m0 codes) into f32 values.
pub fn decode_small(t: &Tensor) -> Result<Vec<f32>> {
    let dt = t.dtype();
    let table: Vec<f32> = if dt == DType::F8E8M0 {
        (0..=255u8).map(|c| e8m0_decode(c) as f32).collect()
    } else {
        let fmt = FloatFormat::of(dt)
            .filter(|_| dt.is_small_float())
            .ok_or_else(|| RuntimeError::msg(format!("{dt} is not a float8/float4 type")))?;
        (0..=255u32).map(|c| fmt.decode(c) as f32).collect()
    };
    Ok(t.as_slice::<u8>()?
        .iter()
        .map(|&c| table[c as usize])
        .collect())
}

/// Wrap an integer into a sub-byte integer dtype (int4, uint4, int2, uint2) as a
/// cast does: keep the low bits, sign-extend for the signed types. Returns the
/// stored byte (two's complement for negative values), `None` for other dtypes.
pub fn wrap_sub_byte(dt: DType, v: i64) -> Option<u8> {
    let bits = match dt {
        DType::I4 | DType::U4 => 4,
        DType::I2 | DType::U2 => 2,
        _ => return None,
    };
    let low = (v & ((1 << bits) - 1)) as u8;
    Some(if dt.is_signed_int() {
        (((low << (8 - bits)) as i8) >> (8 - bits)) as u8
    } else {
        low
    })
}

/// Inclusive value range of an integer dtype (sub-byte types included), for saturation.
pub fn int_range(dt: DType) -> Option<(i64, i64)> {
    use DType::*;
    Some(match dt {
        I4 => (-8, 7),
        U4 => (0, 15),
        I2 => (-2, 1),
        U2 => (0, 3),
        I8 => (i8::MIN as i64, i8::MAX as i64),
        U8 => (0, u8::MAX as i64),
        I16 => (i16::MIN as i64, i16::MAX as i64),
        U16 => (0, u16::MAX as i64),
        I32 => (i32::MIN as i64, i32::MAX as i64),
        U32 => (0, u32::MAX as i64),
        I64 => (i64::MIN, i64::MAX),
        _ => return None,
    })
}

/// Round `x` to the nearest value of float dtype `dt` (f16, bf16, f32; f64 unchanged).
pub fn round_to_float(dt: DType, x: f64) -> f64 {
    match dt {
        DType::F32 => x as f32 as f64,
        DType::F16 => {
            f16::from_bits(FloatFormat::of(DType::F16).map_or(0, |f| f.encode(x, false)) as u16)
                .to_f64()
        }
        DType::BF16 => {
            bf16::from_bits(FloatFormat::of(DType::BF16).map_or(0, |f| f.encode(x, false)) as u16)
                .to_f64()
        }
        _ => x,
    }
}

/// A scalar in the widest exact form of its source type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wide {
    /// A signed integer (or bool).
    I(i64),
    /// An unsigned integer.
    U(u64),
    /// A float.
    F(f64),
}

impl Wide {
    /// The value as f64 (rounded for integers beyond 2^53).
    pub fn to_f64(self) -> f64 {
        match self {
            Wide::I(i) => i as f64,
            Wide::U(u) => u as f64,
            Wide::F(f) => f,
        }
    }

    /// The value as an integer, truncating floats like numpy's `astype(int64)`
    /// (NaN gives 0, out-of-range floats saturate).
    pub fn to_i64(self) -> i64 {
        match self {
            Wide::I(i) => i,
            Wide::U(u) => u as i64,
            Wide::F(f) => f as i64,
        }
    }
}

/// A native element type that widens losslessly into [`Wide`].
pub trait Widen: Copy {
    /// The widened value.
    fn widen(self) -> Wide;
}

/// A native element type that a [`Wide`] converts into, with numpy's `astype` rules
/// (integers wrap, floats round to nearest even, float to int truncates).
pub trait Narrow: Sized {
    /// The converted value.
    fn narrow(w: Wide) -> Self;
}

macro_rules! int_conv {
    ($($t:ty => $v:ident as $w:ty),*) => {$(
        impl Widen for $t {
            fn widen(self) -> Wide { Wide::$v(self as $w) }
        }
        impl Narrow for $t {
            fn narrow(w: Wide) -> $t {
                match w {
                    Wide::I(i) => i as $t,
                    Wide::U(u) => u as $t,
                    Wide::F(f) if f < 0.0 => f as i64 as $t,
                    Wide::F(f) => f as u64 as $t,
                }
            }
        }
    )*};
}
int_conv!(i8 => I as i64, i16 => I as i64, i32 => I as i64, i64 => I as i64,
          u8 => U as u64, u16 => U as u64, u32 => U as u64, u64 => U as u64);

impl Widen for bool {
    fn widen(self) -> Wide {
        Wide::I(self as i64)
    }
}

impl Narrow for bool {
    fn narrow(w: Wide) -> bool {
        match w {
            Wide::I(i) => i != 0,
            Wide::U(u) => u != 0,
            Wide::F(f) => f != 0.0,
        }
    }
}

impl Widen for f32 {
    fn widen(self) -> Wide {
        Wide::F(self as f64)
    }
}

impl Narrow for f32 {
    fn narrow(w: Wide) -> f32 {
        match w {
            Wide::I(i) => i as f32,
            Wide::U(u) => u as f32,
            Wide::F(f) => f as f32,
        }
    }
}

impl Widen for f64 {
    fn widen(self) -> Wide {
        Wide::F(self)
    }
}

impl Narrow for f64 {
    fn narrow(w: Wide) -> f64 {
        w.to_f64()
    }
}

macro_rules! half_conv {
    ($($t:ident => $d:ident),*) => {$(
        impl Widen for $t {
            fn widen(self) -> Wide { Wide::F(self.to_f64()) }
        }
        impl Narrow for $t {
            fn narrow(w: Wide) -> $t {
                let x = match w {
                    // Integers round once, straight to the half type.
                    Wide::I(i) => i as f64,
                    Wide::U(u) => u as f64,
                    Wide::F(f) => f,
                };
                $t::from_bits(FloatFormat::of(DType::$d).map_or(0, |fmt| fmt.encode(x, false)) as u16)
            }
        }
    )*};
}
half_conv!(f16 => F16, bf16 => BF16);

/// Build a tensor of dtype `dt` from widened values. Integers wrap (sub-byte
/// types too), float8 types honour `saturate`, e8m0 rounds up, strings use
/// numpy's formatting.
pub fn collect_as(
    dt: DType,
    shape: Vec<usize>,
    it: impl Iterator<Item = Wide>,
    saturate: bool,
) -> Result<Tensor> {
    collect_rounded(dt, shape, it, saturate, E8m0Round::Up)
}

/// [`collect_as`] with an explicit e8m0 rounding mode.
pub fn collect_rounded(
    dt: DType,
    shape: Vec<usize>,
    it: impl Iterator<Item = Wide>,
    saturate: bool,
    round: E8m0Round,
) -> Result<Tensor> {
    use DType::*;
    Ok(match dt {
        Bool => Tensor::from_bools(shape, it.map(bool::narrow).collect())?,
        I4 | U4 | I2 | U2 => {
            let bytes: Vec<u8> = it
                .map(|w| wrap_sub_byte(dt, w.to_i64()).unwrap_or(0))
                .collect();
            Tensor::from_bytes(dt, shape, &bytes)?
        }
        // numpy-style: the value goes to f32 first, then its exponent is taken.
        F8E8M0 => {
            let codes: Vec<u8> = it
                .map(|w| e8m0_encode(f32::narrow(w), saturate, round))
                .collect();
            Tensor::from_bytes(dt, shape, &codes)?
        }
        F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F4E2M1 => {
            let fmt = FloatFormat::of(dt)
                .ok_or_else(|| RuntimeError::msg(format!("no format for {dt}")))?;
            let codes: Vec<u8> = it.map(|w| fmt.encode(w.to_f64(), saturate) as u8).collect();
            Tensor::from_bytes(dt, shape, &codes)?
        }
        String => Tensor::from_strings(
            shape,
            it.map(|w| match w {
                Wide::I(i) => i.to_string(),
                Wide::U(u) => u.to_string(),
                Wide::F(f) => float_to_string(f, |s| s.parse::<f64>().ok() == Some(f)),
            })
            .collect(),
        )?,
        _ => crate::for_dtypes!(dt, D => {
            Tensor::from_vec(shape, it.map(D::narrow).collect::<Vec<D>>())?
        }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64]),
    })
}

/// Format a float like numpy's `str()` of a scalar: the shortest digits that
/// `round_trips` back to the value, positional for `1e-4 <= |x| < 1e16`
/// (`"0.5"`, `"1000000.0"`), scientific otherwise (`"1e-07"`, `"1.5e+16"`).
pub fn float_to_string(x: f64, round_trips: impl Fn(&str) -> bool) -> std::string::String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = (0..17usize)
        .map(|p| format!("{x:.p$e}"))
        .find(|s| round_trips(s))
        .unwrap_or_else(|| format!("{x:e}"));
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: std::string::String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            let e = exp as usize;
            let int_len = e + 1;
            if digits.len() <= int_len {
                format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
            } else {
                format!("{}.{}", &digits[..int_len], &digits[int_len..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.to_string()
        };
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// Parse a string for Cast: integers exactly, otherwise a float (`"1e-7"`, `"inf"`,
/// `"-INF"`, `"NaN"` ...); `"true"`/`"false"` give 1/0. Surrounding spaces are ignored.
pub fn parse_wide(s: &str) -> Result<Wide> {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Ok(Wide::I(i));
    }
    if let Ok(u) = t.parse::<u64>() {
        return Ok(Wide::U(u));
    }
    if let Ok(f) = t.parse::<f64>() {
        return Ok(Wide::F(f));
    }
    match t.to_ascii_lowercase().as_str() {
        "true" => Ok(Wide::I(1)),
        "false" => Ok(Wide::I(0)),
        _ => Err(RuntimeError::msg(format!("cannot parse {s:?} as a number"))),
    }
}

/// Convert a tensor to dtype `to` with ONNX Cast semantics (numpy `astype` rules:
/// integers wrap, floats round to nearest even, float8 honours `saturate`, e8m0
/// rounds up, strings are formatted and parsed like numpy does).
pub fn cast_tensor(x: &Tensor, to: DType, saturate: bool) -> Result<Tensor> {
    cast_rounded(x, to, saturate, E8m0Round::Up)
}

/// [`cast_tensor`] with an explicit e8m0 rounding mode (Cast's `round_mode`).
pub fn cast_rounded(x: &Tensor, to: DType, saturate: bool, round: E8m0Round) -> Result<Tensor> {
    use DType::*;
    let shape = x.shape().to_vec();
    if x.dtype() == to {
        return Ok(x.clone());
    }
    if to == String {
        return Ok(Tensor::from_strings(shape, to_strings(x)?)?);
    }
    let collect =
        |it: Vec<Wide>| collect_rounded(to, shape.clone(), it.into_iter(), saturate, round);
    match x.dtype() {
        String => collect(
            x.as_strings()?
                .iter()
                .map(|s| parse_wide(s))
                .collect::<Result<Vec<_>>>()?,
        ),
        I4 | I2 => collect(x.as_slice::<i8>()?.iter().map(|v| v.widen()).collect()),
        U4 | U2 => collect(x.as_slice::<u8>()?.iter().map(|v| v.widen()).collect()),
        dt if dt.is_small_float() => collect(decode_small(x)?.iter().map(|v| v.widen()).collect()),
        dt => crate::for_dtypes!(dt, S => {
            collect(x.as_slice::<S>()?.iter().map(|v| v.widen()).collect())
        }, [F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool]),
    }
}

/// numpy's `astype(str)` of a tensor: floats in their own precision's shortest
/// form, integers in decimal, bools as `True`/`False`.
fn to_strings(x: &Tensor) -> Result<Vec<std::string::String>> {
    use DType::*;
    let dt = x.dtype();
    let floats = |v: Vec<f64>, prec: DType| -> Vec<std::string::String> {
        v.into_iter()
            .map(|f| {
                float_to_string(f, |s| match prec {
                    F32 => s.parse::<f32>().map(|p| p as f64) == Ok(f),
                    _ => s.parse::<f64>().map(|p| round_to_float(prec, p)) == Ok(f),
                })
            })
            .collect()
    };
    Ok(match dt {
        F32 | F64 | F16 | BF16 => floats(x.to_f64_vec()?, dt),
        _ if dt.is_small_float() => {
            floats(decode_small(x)?.into_iter().map(f64::from).collect(), F32)
        }
        Bool => x
            .as_slice::<bool>()?
            .iter()
            .map(|&b| if b { "True" } else { "False" }.to_string())
            .collect(),
        U64 => x.as_slice::<u64>()?.iter().map(|v| v.to_string()).collect(),
        _ => x.to_i64_vec()?.iter().map(|v| v.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(dt: DType) -> FloatFormat {
        FloatFormat::of(dt).unwrap()
    }

    #[test]
    fn float8_known_encodings() {
        let e4 = fmt(DType::F8E4M3FN);
        // Values of the ONNX test_cast_FLOAT_to_FLOAT8E4M3FN data.
        assert_eq!(e4.encode(0.47892547, true), 0x2f);
        assert_eq!(e4.encode(0.49968487, true), 0x30);
        assert_eq!(e4.encode(1e6, true), 0x7e);
        assert_eq!(e4.encode(1e-7, true), 0x00);
        assert_eq!(e4.encode(f64::NAN, true), 0x7f);
        assert_eq!(e4.encode(f64::INFINITY, true), 0x7e);
        assert_eq!(e4.encode(f64::NEG_INFINITY, true), 0xfe);
        assert_eq!(e4.encode(f64::INFINITY, false), 0x7f);
        assert_eq!(e4.encode(f64::NEG_INFINITY, false), 0xff);
        // 464 is halfway between 448 (even mantissa) and 480: ties to 448.
        assert_eq!(e4.encode(464.0, false), 0x7e);
        assert_eq!(e4.encode(465.0, false), 0x7f);
        assert_eq!(e4.encode(-0.0, false), 0x80);
        assert_eq!(e4.max_value(), 448.0);
        let e5 = fmt(DType::F8E5M2);
        assert_eq!(e5.encode(1e6, false), 0x7c);
        assert_eq!(e5.encode(1e6, true), 0x7b);
        assert_eq!(e5.encode(61440.0, false), 0x7c);
        assert_eq!(e5.encode(61439.0, false), 0x7b);
        assert_eq!(e5.encode(f64::NAN, false), 0x7e);
        assert_eq!(e5.max_value(), 57344.0);
        let uz = fmt(DType::F8E4M3FNUZ);
        assert_eq!(uz.encode(-0.0, false), 0x00);
        assert_eq!(uz.encode(248.0, false), 0x80);
        assert_eq!(uz.encode(248.0, true), 0x7f);
        assert_eq!(uz.encode(0.0009765625, false), 0x01);
        assert_eq!(uz.max_value(), 240.0);
        assert_eq!(fmt(DType::F8E5M2FNUZ).max_value(), 57344.0);
    }

    #[test]
    fn float4_rounds_half_even_and_saturates() {
        let f4 = fmt(DType::F4E2M1);
        let codes: Vec<u32> = [
            0.48,
            0.25,
            1.05,
            -3.5,
            -8.0,
            9.0,
            1e6,
            f64::INFINITY,
            -0.0,
            0.75,
            2.5,
        ]
        .iter()
        .map(|&x| f4.encode(x, false))
        .collect();
        assert_eq!(
            codes,
            vec![0x1, 0x0, 0x2, 0xe, 0xf, 0x7, 0x7, 0x7, 0x8, 0x2, 0x4]
        );
        assert_eq!(f4.encode(f64::NAN, false), 0x8);
        let values: Vec<f64> = (0..16).map(|c| f4.decode(c)).collect();
        assert_eq!(&values[..8], &[0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
        assert_eq!(values[15], -6.0);
    }

    #[test]
    fn decode_specials() {
        assert!(fmt(DType::F8E4M3FN).decode(0xff).is_nan());
        assert_eq!(fmt(DType::F8E4M3FN).decode(0x01), 2f64.powi(-9));
        assert!(fmt(DType::F8E4M3FNUZ).decode(0x80).is_nan());
        assert_eq!(fmt(DType::F8E5M2).decode(0xfc), f64::NEG_INFINITY);
        assert_eq!(fmt(DType::F8E5M2).decode(0x5f), 448.0);
    }

    #[test]
    fn every_float8_code_round_trips() {
        for dt in [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
            DType::F4E2M1,
        ] {
            let f = fmt(dt);
            let n = f.sign_bit() * 2;
            for c in 0..n {
                let v = f.decode(c);
                if !v.is_nan() {
                    assert_eq!(f.encode(v, false), c, "{dt} code {c:#x}");
                }
            }
        }
    }

    #[test]
    fn half_encoding_is_exactly_rounded() {
        // 1 + 2^-11 + 2^-40 is just above the halfway point between two f16 values.
        let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(round_to_float(DType::F16, x), 1.0 + 2f64.powi(-10));
        assert_eq!(round_to_float(DType::F16, 1.0 + 2f64.powi(-11)), 1.0);
        assert_eq!(round_to_float(DType::F16, 70000.0), f64::INFINITY);
        assert_eq!(round_to_float(DType::BF16, 1.00390625), 1.0);
        assert_eq!(f16::narrow(Wide::F(f64::NAN)).to_bits(), 0x7e00);
    }

    #[test]
    fn sub_byte_ints_wrap() {
        let w = |dt, v| wrap_sub_byte(dt, v).unwrap();
        assert_eq!(w(DType::I4, -9) as i8, 7);
        assert_eq!(w(DType::I4, 8) as i8, -8);
        assert_eq!(w(DType::U4, -1), 15);
        // ONNX test_cast_FLOAT_to_INT2 / _UINT2: -3..=3 wrap to [1,-2,-1,0,1,-2,-1] / [1,2,3,0,1,2,3].
        let i2: Vec<i8> = (-3..=3).map(|v| w(DType::I2, v) as i8).collect();
        assert_eq!(i2, vec![1, -2, -1, 0, 1, -2, -1]);
        let u2: Vec<u8> = (-3..=3).map(|v| w(DType::U2, v)).collect();
        assert_eq!(u2, vec![1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(wrap_sub_byte(DType::I8, 3), None);
        assert_eq!(int_range(DType::I4), Some((-8, 7)));
        assert_eq!(int_range(DType::I2), Some((-2, 1)));
        assert_eq!(int_range(DType::U2), Some((0, 3)));
    }

    #[test]
    fn e8m0_matches_onnx_reference() {
        // Values and codes of ONNX test_cast_e8m0_FLOAT_to_FLOAT8E8M0 (round up).
        let x = [0.0f32, 0.124, 0.25, 0.5, 1.1, 2.0, 4.0, 8.0];
        let up: Vec<u8> = x
            .iter()
            .map(|&v| e8m0_encode(v, true, E8m0Round::Up))
            .collect();
        assert_eq!(up, vec![0, 124, 125, 126, 128, 128, 129, 130]);
        // Hand-derived from to_float8e8m0: 1.5 = 1.1b * 2^0 (guard bit set).
        let enc = |v: f32, r| e8m0_encode(v, true, r);
        assert_eq!(enc(1.5, E8m0Round::Down), 127);
        assert_eq!(enc(1.5, E8m0Round::Nearest), 128);
        assert_eq!(enc(1.25, E8m0Round::Nearest), 127);
        assert_eq!(enc(-4.0, E8m0Round::Up), 129);
        assert_eq!(enc(f32::INFINITY, E8m0Round::Up), 0xff);
        assert_eq!(enc(f32::MAX, E8m0Round::Up), 0xfe);
        assert_eq!(e8m0_encode(f32::MAX, false, E8m0Round::Up), 0xff);
        assert_eq!(e8m0_decode(127), 1.0);
        assert_eq!(e8m0_decode(0), 2f64.powi(-127));
        assert!(e8m0_decode(0xff).is_nan());
        let t = Tensor::from_vec(vec![3], vec![1.5f32, 3.0, 0.3]).unwrap();
        let y = cast_rounded(&t, DType::F8E8M0, true, E8m0Round::Down).unwrap();
        assert_eq!(y.bytes(), &[127, 128, 125]);
        let back = cast_tensor(&y, DType::F16, true).unwrap();
        assert_eq!(back.to_f64_vec().unwrap(), vec![1.0, 2.0, 0.25]);
        assert!(E8m0Round::parse("sideways").is_err());
    }

    #[test]
    fn numpy_float_strings() {
        let f32_rt = |x: f32| move |s: &str| s.parse::<f32>().ok() == Some(x);
        assert_eq!(
            float_to_string(0.47892547f32 as f64, f32_rt(0.47892547)),
            "0.47892547"
        );
        assert_eq!(float_to_string(1e6, f32_rt(1e6)), "1000000.0");
        assert_eq!(float_to_string(1e-7f32 as f64, f32_rt(1e-7)), "1e-07");
        assert_eq!(float_to_string(-1.5e16, f32_rt(-1.5e16)), "-1.5e+16");
        assert_eq!(
            float_to_string(0.0001, |s| s.parse::<f64>() == Ok(0.0001)),
            "0.0001"
        );
        assert_eq!(float_to_string(f64::NEG_INFINITY, |_| true), "-inf");
        assert_eq!(parse_wide(" -INF ").unwrap(), Wide::F(f64::NEG_INFINITY));
        assert_eq!(parse_wide("12").unwrap(), Wide::I(12));
        assert!(parse_wide("abc").is_err());
    }

    #[test]
    fn cast_tensor_examples() {
        let x = Tensor::from_vec(vec![5], vec![-9f32, -1.0, 0.0, 8.0, 15.0]).unwrap();
        let i4 = cast_tensor(&x, DType::I4, true).unwrap();
        assert_eq!(i4.as_slice::<i8>().unwrap(), &[7, -1, 0, -8, -1]);
        let u4 = cast_tensor(&x, DType::U4, true).unwrap();
        assert_eq!(u4.as_slice::<u8>().unwrap(), &[7, 15, 0, 8, 15]);
        let back = cast_tensor(&i4, DType::F32, true).unwrap();
        assert_eq!(
            back.as_slice::<f32>().unwrap(),
            &[7.0, -1.0, 0.0, -8.0, -1.0]
        );
        let y = Tensor::from_vec(vec![3], vec![0.1f32, 1e6, 1e-7]).unwrap();
        let s = cast_tensor(&y, DType::String, true).unwrap();
        assert_eq!(s.as_strings().unwrap(), &["0.1", "1000000.0", "1e-07"]);
        let f = cast_tensor(&s, DType::F32, true).unwrap();
        assert_eq!(f.as_slice::<f32>().unwrap(), &[0.1, 1e6, 1e-7]);
        let f8 = cast_tensor(
            &Tensor::from_vec(vec![2], vec![1e6f32, -0.5]).unwrap(),
            DType::F8E4M3FN,
            false,
        )
        .unwrap();
        assert_eq!(f8.as_slice::<u8>().unwrap(), &[0x7f, 0xb0]);
        let h = cast_tensor(&f8, DType::F16, true).unwrap();
        assert!(h.as_slice::<f16>().unwrap()[0].is_nan());
        assert_eq!(h.as_slice::<f16>().unwrap()[1], f16::from_f32(-0.5));
        let b = cast_tensor(
            &Tensor::from_vec(vec![2], vec![0i64, -3]).unwrap(),
            DType::Bool,
            true,
        )
        .unwrap();
        assert_eq!(b.as_slice::<bool>().unwrap(), &[false, true]);
    }

    #[test]
    fn narrow_follows_numpy() {
        assert_eq!(u8::narrow(Wide::F(-1.0)), 255);
        assert_eq!(i8::narrow(Wide::I(300)), 44);
        assert!(bool::narrow(Wide::F(f64::NAN)));
        assert_eq!(f32::narrow(Wide::I(16_777_217)), 16_777_216.0);
    }
}
