//! Statement parameters on the wire: the engine type of each PostgreSQL type a
//! client may declare in Parse, and the decoding of bound values (text or binary)
//! into typed one-row arrays once the statement has resolved every type.
//!
//! The binary forms are decoded here by hand, not through `postgres-types`,
//! because two that dashboards send (numeric and arrays of any element type)
//! have no `FromSql` there that yields engine values, and the rest are a few
//! big-endian reads each.

use sluice_storage::zone::Zone;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array,
    Int32Array, Int64Array, IntervalMonthDayNanoArray, ListArray, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use pgwire::api::Type;
use sluice_query::binder::{list_of, parse_array_text};
use sluice_query::cast::cast_array;
use sluice_query::{Error, Param};
use sluice_storage::types::UTC;

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's epoch.
const PG_EPOCH_DAYS: i32 = 10_957;

/// The engine type of a type a client declared, `None` for "unspecified"
/// (OID 0 or `unknown`), which the statement's context then decides. A type
/// Sluice has no values of (json, uuid, ...) is taken in its text form.
pub fn declared_type(t: &Type) -> Option<DataType> {
    if t.oid() == 0 || *t == Type::UNKNOWN {
        return None;
    }
    if let postgres_types::Kind::Array(element) = t.kind() {
        return Some(list_of(&declared_type(element).unwrap_or(DataType::Utf8)));
    }
    Some(scalar_type(t))
}

fn scalar_type(t: &Type) -> DataType {
    match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 | Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::OID => DataType::UInt32,
        Type::FLOAT4 | Type::FLOAT8 => DataType::Float64,
        // A bound value keeps its own scale (see `decode_text`); this one
        // types the statement while it is described.
        Type::NUMERIC => sluice_query::numeric::numeric(sluice_query::numeric::DIVISION_SCALE),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        Type::DATE => DataType::Date32,
        Type::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        _ => DataType::Utf8,
    }
}

/// Decodes parameter `i`'s bytes, sent as `binary` or text, as a value of the
/// wire type `ty` the statement resolved it to. NULL is a typed NULL; text
/// without a zone for a TIMESTAMPTZ is in the session's zone, `zone`.
///
/// # Errors
/// 22P02 (22007 for dates and times) for bytes that are not a value of `ty`;
/// 0A000 for a binary value of a type Sluice keeps only as text.
pub fn decode(
    i: usize,
    ty: &Type,
    bytes: Option<&[u8]>,
    binary: bool,
    zone: Zone,
) -> Result<Param, Error> {
    let engine_type = declared_type(ty).unwrap_or(DataType::Utf8);
    let Some(bytes) = bytes else {
        return Ok(Param::Value(new_null_array(&engine_type, 1)));
    };
    let bad = |detail: String| Error::InvalidText {
        message: format!("invalid value for parameter ${}: {detail}", i + 1),
        sqlstate: "22P02",
    };
    let value = if binary {
        decode_binary(ty, bytes).map_err(bad)?
    } else {
        let text = std::str::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
        decode_text(text, &engine_type, zone)?
    };
    Ok(Param::Value(value))
}

/// Text is parsed as PostgreSQL parses a literal of the type.
fn decode_text(text: &str, ty: &DataType, zone: Zone) -> Result<ArrayRef, Error> {
    match ty {
        DataType::List(element) => {
            let items: ArrayRef = Arc::new(StringArray::from(parse_array_text(text)));
            let values = cast_array(&items, element.data_type(), zone)?;
            Ok(one_list(element.data_type(), values))
        }
        // A numeric keeps the scale it was written with (`12.25` has 2), as
        // PostgreSQL's does.
        DataType::Decimal128(..) => {
            let scale = sluice_query::numeric::text_scale(text);
            numeric_value(sluice_query::numeric::parse(text, scale)?, scale)
                .map_err(|e| Error::Internal(e.to_string()))
        }
        _ => {
            let one: ArrayRef = Arc::new(StringArray::from(vec![text]));
            cast_array(&one, ty, zone)
        }
    }
}

/// One numeric value with `scale` decimals.
fn numeric_value(value: i128, scale: i8) -> Result<ArrayRef, String> {
    Decimal128Array::from(vec![value])
        .with_precision_and_scale(sluice_query::numeric::MAX_PRECISION, scale)
        .map(|a| Arc::new(a) as ArrayRef)
        .map_err(|e| e.to_string())
}

fn one_list(element: &DataType, values: ArrayRef) -> ArrayRef {
    let field = Arc::new(Field::new("item", element.clone(), true));
    Arc::new(ListArray::new(
        field,
        OffsetBuffer::from_lengths([values.len()]),
        values,
        None,
    ))
}

pub(crate) fn decode_binary(ty: &Type, b: &[u8]) -> Result<ArrayRef, String> {
    if let postgres_types::Kind::Array(element) = ty.kind() {
        return decode_binary_array(element, b);
    }
    Ok(match *ty {
        Type::BOOL => Arc::new(BooleanArray::from(vec![fixed::<1>(b)?[0] != 0])),
        Type::INT2 => Arc::new(Int32Array::from(vec![i32::from(i16::from_be_bytes(
            fixed(b)?,
        ))])),
        Type::INT4 => Arc::new(Int32Array::from(vec![i32::from_be_bytes(fixed(b)?)])),
        Type::INT8 => Arc::new(Int64Array::from(vec![i64::from_be_bytes(fixed(b)?)])),
        Type::OID => Arc::new(UInt32Array::from(vec![u32::from_be_bytes(fixed(b)?)])),
        Type::FLOAT4 => Arc::new(Float64Array::from(vec![f64::from(f32::from_be_bytes(
            fixed(b)?,
        ))])),
        Type::FLOAT8 => Arc::new(Float64Array::from(vec![f64::from_be_bytes(fixed(b)?)])),
        Type::NUMERIC => {
            let (value, scale) = decode_numeric(b)?;
            numeric_value(value, scale)?
        }
        Type::TIMESTAMP => Arc::new(TimestampMicrosecondArray::from(vec![pg_timestamp(b)?])),
        Type::TIMESTAMPTZ => {
            Arc::new(TimestampMicrosecondArray::from(vec![pg_timestamp(b)?]).with_timezone(UTC))
        }
        Type::DATE => Arc::new(Date32Array::from(vec![i32::from_be_bytes(fixed(b)?)
            .checked_add(PG_EPOCH_DAYS)
            .ok_or("date out of range")?])),
        Type::INTERVAL => {
            let micros = i64::from_be_bytes(fixed(&b[..b.len().min(8)])?);
            let days = i32::from_be_bytes(fixed(b.get(8..12).ok_or("short interval")?)?);
            let months = i32::from_be_bytes(fixed(b.get(12..).ok_or("short interval")?)?);
            let nanos = micros.checked_mul(1000).ok_or("interval out of range")?;
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                IntervalMonthDayNano::new(months, days, nanos),
            ]))
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Arc::new(StringArray::from(vec![
                std::str::from_utf8(b).map_err(|e| e.to_string())?
            ]))
        }
        _ => {
            return Err(format!(
                "binary values of type {} are not supported",
                ty.name()
            ))
        }
    })
}

/// Exactly `N` bytes, or an error naming the length found.
fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn pg_timestamp(b: &[u8]) -> Result<i64, String> {
    let v = i64::from_be_bytes(fixed(b)?);
    // PostgreSQL's infinities are the extreme values; keep them extreme.
    Ok(match v {
        i64::MAX | i64::MIN => v,
        _ => v
            .checked_add(PG_EPOCH_MICROS)
            .ok_or("timestamp out of range")?,
    })
}

/// A binary NUMERIC: digit count, weight (of the first base-10000 digit), sign,
/// display scale, then the digits; as an exact value with the display scale.
fn decode_numeric(b: &[u8]) -> Result<(i128, i8), String> {
    let word = |k: usize| -> Result<u16, String> {
        Ok(u16::from_be_bytes(fixed(
            b.get(2 * k..2 * k + 2).ok_or("short numeric")?,
        )?))
    };
    let ndigits = usize::from(word(0)?);
    let weight = word(1)? as i16;
    let sign = word(2)?;
    let scale = word(3)?;
    match sign {
        0xC000 | 0xD000 | 0xF000 => {
            return Err("NaN and infinity are not numeric values in Sluice".into())
        }
        0x0000 | 0x4000 => {}
        other => return Err(format!("invalid numeric sign {other:#x}")),
    }
    let scale = i8::try_from(scale)
        .ok()
        .filter(|s| *s <= sluice_query::numeric::MAX_SCALE)
        .ok_or_else(|| format!("numeric scale {scale} is past 32"))?;
    // Build the decimal text and parse it, so the result is the double nearest
    // the exact value rather than a sum of rounded powers.
    let mut text = String::from(if sign == 0x4000 { "-0" } else { "0" });
    let mut fraction = String::new();
    for k in 0..ndigits {
        let d = word(4 + k)?;
        if d > 9999 {
            return Err(format!("invalid numeric digit {d}"));
        }
        let position = i32::from(weight) - k as i32;
        if position >= 0 {
            text.push_str(&format!("{d:04}"));
        } else {
            if fraction.is_empty() {
                fraction.push_str(&"0000".repeat((-position - 1) as usize));
            }
            fraction.push_str(&format!("{d:04}"));
        }
    }
    let trailing_zero_groups = i32::from(weight) + 1 - ndigits as i32;
    if trailing_zero_groups > 0 {
        text.push_str(&"0000".repeat(trailing_zero_groups as usize));
    }
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(&fraction);
    }
    sluice_query::numeric::parse(&text, scale)
        .map(|v| (v, scale))
        .map_err(|e| format!("numeric {text}: {e}"))
}

/// A binary one-dimensional array: dimensions, a null flag, the element type,
/// each dimension's length and lower bound, then each element length-prefixed.
fn decode_binary_array(element: &Type, b: &[u8]) -> Result<ArrayRef, String> {
    let int = |at: usize| -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(
            b.get(at..at + 4).ok_or("short array")?,
        )?))
    };
    let element_type = declared_type(element).unwrap_or(DataType::Utf8);
    let ndim = int(0)?;
    let (len, mut at) = match ndim {
        0 => (0, 12),
        1 => (int(12)?, 20),
        _ => return Err("multidimensional arrays are not supported".into()),
    };
    let len = usize::try_from(len).map_err(|_| "negative array length")?;
    let mut items: Vec<ArrayRef> = Vec::with_capacity(len);
    for _ in 0..len {
        let n = int(at)?;
        at += 4;
        if n < 0 {
            items.push(new_null_array(&element_type, 1));
            continue;
        }
        let end = at
            .checked_add(n as usize)
            .filter(|end| *end <= b.len())
            .ok_or("short array element")?;
        items.push(decode_binary(element, &b[at..end])?);
        at = end;
    }
    let refs: Vec<&dyn Array> = items.iter().map(|a| a.as_ref()).collect();
    let values = if refs.is_empty() {
        new_null_array(&element_type, 0)
    } else {
        arrow::compute::concat(&refs).map_err(|e| e.to_string())?
    };
    Ok(one_list(&element_type, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, scale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn binary_numerics_decode_exactly_with_their_scale() {
        assert_eq!(
            decode_numeric(&numeric(2, 0, 0, 2, &[12, 3400])),
            Ok((1234, 2))
        );
        assert_eq!(
            decode_numeric(&numeric(1, -1, 0x4000, 4, &[5])),
            Ok((-5, 4))
        );
        assert_eq!(decode_numeric(&numeric(1, 1, 0, 0, &[7])), Ok((70000, 0)));
        assert_eq!(decode_numeric(&numeric(0, 0, 0, 1, &[])), Ok((0, 1)));
        // 0.1 has no exact double; as a numeric it stays 0.1.
        assert_eq!(decode_numeric(&numeric(1, -1, 0, 1, &[1000])), Ok((1, 1)));
        assert!(decode_numeric(&numeric(1, 0, 0, 0, &[10000])).is_err());
        assert!(decode_numeric(&numeric(0, 0, 0xC000, 0, &[])).is_err());
        assert!(decode_numeric(&[0, 1]).is_err());
    }

    #[test]
    fn binary_arrays_keep_elements_and_nulls() {
        let mut b = Vec::new();
        for v in [1i32, 1, 20, 3, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [Some(5i64), None, Some(-2)] {
            match v {
                Some(v) => {
                    b.extend_from_slice(&8i32.to_be_bytes());
                    b.extend_from_slice(&v.to_be_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let a = decode_binary(&Type::INT8_ARRAY, &b).unwrap();
        let text = sluice_query::format::format_value(a.as_ref(), 0, Zone::UTC).unwrap();
        assert_eq!(text.as_deref(), Some("{5,NULL,-2}"));
        assert!(decode_binary(&Type::INT8_ARRAY, &b[..b.len() - 3]).is_err());
    }
}
