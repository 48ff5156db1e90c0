//! Element literals: how each dtype's elements are written, bit-exactly.
//!
//! Floats use Rust's shortest round-trip form (`1.0`, `1e-7`, `-0.0`, `inf`);
//! the canonical quiet NaN is `nan` and any other NaN spells its bits,
//! `nan_0x7fc00001`. f16 and bf16 print their exact value as an f32 literal.
//! Integer-like storage (including i4/u4 and the raw codes of float8/float4) is
//! decimal; bools are `true`/`false`.

use crate::dtype::DType;
use crate::tensor::Tensor;
use bytemuck::Pod;
use half::{bf16, f16};

/// An element type with a text literal.
pub(super) trait Lit: Pod {
    /// The literal for one element.
    fn print(self) -> String;
    /// Parse one literal token, or `None` if it is not a valid element.
    fn parse(tok: &str) -> Option<Self>;
}

macro_rules! int_lit {
    ($($t:ty),*) => {$(
        impl Lit for $t {
            fn print(self) -> String {
                self.to_string()
            }
            fn parse(tok: &str) -> Option<Self> {
                tok.parse().ok()
            }
        }
    )*};
}
int_lit!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Shared NaN handling: `nan` for the canonical quiet NaN, else its bits.
fn nan_text(bits: u64, canonical: u64, hex_digits: usize) -> String {
    if bits == canonical {
        "nan".into()
    } else {
        format!("nan_0x{bits:0hex_digits$x}")
    }
}

/// Parse `nan_0x...` into raw bits.
fn nan_bits(tok: &str) -> Option<u64> {
    u64::from_str_radix(tok.strip_prefix("nan_0x")?, 16).ok()
}

/// Parse a finite or infinite float, or `nan` (not a payload NaN), straight into
/// the target type (no double rounding through f64).
fn parse_float<T: std::str::FromStr>(tok: &str) -> Option<T> {
    let plain = tok
        .bytes()
        .all(|b| !b.is_ascii_alphabetic() || matches!(b, b'e' | b'E'));
    if plain || matches!(tok, "nan" | "inf" | "-inf") {
        tok.parse().ok()
    } else {
        None
    }
}

macro_rules! float_lit {
    ($t:ty, $bits:ty, $digits:expr, $to_f:expr, $from_str:expr) => {
        impl Lit for $t {
            fn print(self) -> String {
                if self.is_nan() {
                    nan_text(self.to_bits() as u64, <$t>::NAN.to_bits() as u64, $digits)
                } else {
                    format!("{:?}", $to_f(self))
                }
            }
            fn parse(tok: &str) -> Option<Self> {
                if let Some(bits) = nan_bits(tok) {
                    let b = <$bits>::try_from(bits).ok()?;
                    let v = <$t>::from_bits(b);
                    return v.is_nan().then_some(v);
                }
                $from_str(tok)
            }
        }
    };
}
float_lit!(f32, u32, 8, |x: f32| x, parse_float::<f32>);
float_lit!(f64, u64, 16, |x: f64| x, parse_float::<f64>);
// f16/bf16 print their exact value as an f32 literal, so f32 -> f16 is exact.
float_lit!(f16, u16, 4, |x: f16| x.to_f32(), |t: &str| {
    parse_float::<f32>(t).map(f16::from_f32)
});
float_lit!(bf16, u16, 4, |x: bf16| x.to_f32(), |t: &str| parse_float::<
    f32,
>(t)
.map(bf16::from_f32));

/// Print the elements of a non-string, non-block tensor as literals.
pub(super) fn print_elems(t: &Tensor) -> Option<Vec<String>> {
    fn each<T: Lit + crate::tensor::Element>(t: &Tensor) -> Option<Vec<std::string::String>> {
        Some(t.as_slice::<T>().ok()?.iter().map(|&x| x.print()).collect())
    }
    use DType::*;
    match t.dtype() {
        F32 => each::<f32>(t),
        F64 => each::<f64>(t),
        F16 => each::<f16>(t),
        BF16 => each::<bf16>(t),
        I8 | I4 | I2 => each::<i8>(t),
        I16 => each::<i16>(t),
        I32 => each::<i32>(t),
        I64 => each::<i64>(t),
        U8 | U4 | U2 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F4E2M1 | F8E8M0 => {
            each::<u8>(t)
        }
        U16 => each::<u16>(t),
        U32 => each::<u32>(t),
        U64 => each::<u64>(t),
        Bool => Some(
            t.as_slice::<bool>()
                .ok()?
                .iter()
                .map(|b| b.to_string())
                .collect(),
        ),
        String | Block(_) => None,
    }
}

/// Parse element literals of `dtype` into little-endian bytes. On failure returns
/// the index of the offending token.
pub(super) fn parse_elems(dtype: DType, toks: &[String]) -> Result<Vec<u8>, Option<usize>> {
    fn each<T: Lit>(
        toks: &[std::string::String],
        ok: impl Fn(&T) -> bool,
    ) -> Result<Vec<u8>, Option<usize>> {
        let mut v: Vec<T> = Vec::with_capacity(toks.len());
        for (i, t) in toks.iter().enumerate() {
            match T::parse(t) {
                Some(x) if ok(&x) => v.push(x),
                _ => return Err(Some(i)),
            }
        }
        Ok(bytemuck::cast_slice(&v).to_vec())
    }
    fn any<T>(_: &T) -> bool {
        true
    }
    use DType::*;
    match dtype {
        F32 => each::<f32>(toks, any),
        F64 => each::<f64>(toks, any),
        F16 => each::<f16>(toks, any),
        BF16 => each::<bf16>(toks, any),
        I8 => each::<i8>(toks, any),
        I4 => each::<i8>(toks, |x| (-8..=7).contains(x)),
        I2 => each::<i8>(toks, |x| (-2..=1).contains(x)),
        I16 => each::<i16>(toks, any),
        I32 => each::<i32>(toks, any),
        I64 => each::<i64>(toks, any),
        U8 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => each::<u8>(toks, any),
        U4 | F4E2M1 => each::<u8>(toks, |x| *x <= 15),
        U2 => each::<u8>(toks, |x| *x <= 3),
        U16 => each::<u16>(toks, any),
        U32 => each::<u32>(toks, any),
        U64 => each::<u64>(toks, any),
        Bool => {
            let mut v = Vec::with_capacity(toks.len());
            for (i, t) in toks.iter().enumerate() {
                v.push(t.parse::<bool>().map_err(|_| Some(i))? as u8);
            }
            Ok(v)
        }
        String | Block(_) => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_bit_exactly() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            0.1,
            1e-7,
            3.4028235e38,
            f32::MIN_POSITIVE,
            1e-45,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0xffc0_0001),
        ] {
            let s = x.print();
            assert_eq!(f32::parse(&s).map(f32::to_bits), Some(x.to_bits()), "{s}");
        }
        assert_eq!(1.5f32.print(), "1.5");
        assert_eq!(f32::from_bits(0x7fc0_0001).print(), "nan_0x7fc00001");
        for x in [
            0.1f64,
            -1e300,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
        ] {
            assert_eq!(f64::parse(&x.print()).map(f64::to_bits), Some(x.to_bits()));
        }
        for b in [
            0u16, 0x8000, 0x3c00, 0x0001, 0x7bff, 0x7c00, 0x7e00, 0x7e01, 0xfe00,
        ] {
            let h = f16::from_bits(b);
            assert_eq!(
                f16::parse(&h.print()).map(f16::to_bits),
                Some(b),
                "{}",
                h.print()
            );
            let g = bf16::from_bits(b);
            assert_eq!(
                bf16::parse(&g.print()).map(bf16::to_bits),
                Some(b),
                "{}",
                g.print()
            );
        }
        assert_eq!(
            f32::parse("nan_0x00000001"),
            None,
            "a payload that is not a NaN"
        );
        assert_eq!(f32::parse("abc"), None);
        assert_eq!(f32::parse("2"), Some(2.0));
    }

    #[test]
    fn int_ranges_are_checked() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_elems(DType::I4, &s(&["-8", "7"])), Ok(vec![0xf8, 7]));
        assert_eq!(parse_elems(DType::I4, &s(&["8"])), Err(Some(0)));
        assert_eq!(parse_elems(DType::U8, &s(&["1", "256"])), Err(Some(1)));
        assert_eq!(
            parse_elems(DType::Bool, &s(&["true", "false"])),
            Ok(vec![1, 0])
        );
        assert_eq!(parse_elems(DType::String, &s(&[])), Err(None));
    }
}
