//! egret dtypes as C types, and constants as exact C literals.

use super::EmitError;
use egret_ir::{DType, Tensor};

/// The C type holding one element of `d` (`bool` is one byte, 0 or 1).
pub(crate) fn ctype(d: DType) -> Result<&'static str, EmitError> {
    Ok(match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I8 => "int8_t",
        DType::I16 => "int16_t",
        DType::I32 => "int32_t",
        DType::I64 => "int64_t",
        DType::U8 | DType::Bool => "uint8_t",
        DType::U16 => "uint16_t",
        DType::U32 => "uint32_t",
        DType::U64 => "uint64_t",
        other => {
            return Err(EmitError::unsupported(
                "dtype",
                format!("{other} has no C element type in this backend"),
            ))
        }
    })
}

/// The C type a buffer of `d` is addressed as: [`ctype`], or raw bytes for
/// block-quantized storage (which only the block kernels read).
pub(crate) fn storage_ctype(d: DType) -> Result<&'static str, EmitError> {
    match d {
        DType::Block(_) => Ok("uint8_t"),
        _ => ctype(d),
    }
}

/// The unsigned C type of the same width as integer dtype `d` (wrapping
/// arithmetic is done in it).
pub(crate) fn unsigned_of(d: DType) -> &'static str {
    match d.size() {
        Some(1) => "uint8_t",
        Some(2) => "uint16_t",
        Some(4) => "uint32_t",
        _ => "uint64_t",
    }
}

/// The numpy `descr` of `d` (as `egret run` writes it).
pub(crate) fn npy_descr(d: DType) -> Result<&'static str, EmitError> {
    Ok(match d {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        other => {
            return Err(EmitError::unsupported(
                "dtype",
                format!("{other} has no .npy code"),
            ))
        }
    })
}

/// An f32 as an exact C literal (hex float; `INFINITY`/`NAN` macros).
pub(crate) fn f32_lit(v: f32) -> String {
    if v.is_nan() {
        "NAN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "INFINITY" } else { "-INFINITY" }.into()
    } else {
        format!("{}f", hex_float(f64::from(v)))
    }
}

/// An f64 as an exact C literal.
pub(crate) fn f64_lit(v: f64) -> String {
    if v.is_nan() {
        "(double)NAN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "(double)INFINITY"
        } else {
            "(double)-INFINITY"
        }
        .into()
    } else {
        hex_float(v)
    }
}

/// A finite f64 as a C99 hexadecimal floating literal (exact).
fn hex_float(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let bits = v.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (lead, e) = if exp == 0 {
        (0, -1022)
    } else {
        (1, exp - 1023)
    };
    format!("{sign}0x{lead}.{frac:013x}p{e:+}")
}

/// An i64 as a C literal of type `int64_t`.
pub(crate) fn i64_lit(v: i64) -> String {
    if v == i64::MIN {
        "INT64_MIN".into()
    } else {
        format!("INT64_C({v})")
    }
}

/// The elements of `t` as C initialiser literals of its C type.
pub(crate) fn literals(t: &Tensor) -> Result<Vec<String>, EmitError> {
    let b = t.bytes();
    let le = |n: usize| b.chunks_exact(n);
    let bad = || EmitError::unsupported("constant", format!("a {} constant", t.dtype()));
    Ok(match t.dtype() {
        DType::F32 => le(4)
            .map(|c| f32_lit(f32::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        DType::F64 => le(8)
            .map(|c| f64_lit(f64::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        DType::I8 => b.iter().map(|&x| (x as i8).to_string()).collect(),
        DType::U8 | DType::Bool => b.iter().map(|&x| x.to_string()).collect(),
        DType::I16 => le(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]).to_string())
            .collect(),
        DType::U16 => le(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]).to_string())
            .collect(),
        DType::I32 => le(4)
            .map(
                |c| match i32::from_le_bytes(c.try_into().unwrap_or_default()) {
                    i32::MIN => "INT32_MIN".to_string(),
                    v => v.to_string(),
                },
            )
            .collect(),
        DType::U32 => le(4)
            .map(|c| format!("{}u", u32::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        DType::I64 => le(8)
            .map(|c| i64_lit(i64::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
        DType::U64 => le(8)
            .map(|c| {
                format!(
                    "UINT64_C({})",
                    u64::from_le_bytes(c.try_into().unwrap_or_default())
                )
            })
            .collect(),
        DType::Block(_) => b.iter().map(|&x| x.to_string()).collect(),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_exact_hex_literals() {
        assert_eq!(f32_lit(1.5), "0x1.8000000000000p+0f");
        assert_eq!(f32_lit(-0.25), "-0x1.0000000000000p-2f");
        assert_eq!(f32_lit(0.0), "0.0f");
        assert_eq!(f32_lit(f32::NEG_INFINITY), "-INFINITY");
        assert_eq!(f64_lit(f64::MIN_POSITIVE / 4.0), "0x0.4000000000000p-1022");
        assert_eq!(i64_lit(i64::MIN), "INT64_MIN");
    }
}
