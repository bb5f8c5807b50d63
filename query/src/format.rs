//! PostgreSQL's text output for every type the engine produces: what psql prints, what
//! the wire protocol's text format sends, and what `CAST(x AS TEXT)` yields.

use sluice_storage::zone::Zone;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, IntervalMonthDayNanoType,
    IntervalUnit, TimeUnit, TimestampMicrosecondType, UInt32Type,
};
use sluice_storage::types::{
    format_interval, format_timestamp, format_timestamptz, Interval, MICROS_PER_DAY,
};

use crate::error::{Error, Result};

/// Formats a double as PostgreSQL does (`extra_float_digits` = 1, its default since
/// version 12): the shortest text that reads back exactly, in exponent form when the
/// decimal exponent is below -4 or at least 15.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:e}"); // shortest round-trip digits, e.g. "1.5e20"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..15).contains(&exp) {
        format!("{f}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Formats a date (days since the epoch) as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let ts = format_timestamp(days as i64 * MICROS_PER_DAY);
    ts.split(' ').next().unwrap_or(&ts).to_string()
}

/// Converts an Arrow interval to Sluice's interval (nanoseconds are cut to micros).
pub fn to_interval(v: arrow::datatypes::IntervalMonthDayNano) -> Interval {
    Interval {
        months: v.months,
        days: v.days,
        micros: v.nanoseconds / 1000,
    }
}

/// The text of row `row` of `array`, or `None` for NULL. `zone` is the
/// session time zone, used for TIMESTAMPTZ.
///
/// # Errors
/// [`Error::Internal`] for a type the engine never produces.
pub fn format_value(array: &dyn Array, row: usize, zone: Zone) -> Result<Option<String>> {
    if array.is_null(row) {
        return Ok(None);
    }
    let text = match array.data_type() {
        DataType::Null => return Ok(None),
        DataType::Boolean => if array.as_boolean().value(row) {
            "t"
        } else {
            "f"
        }
        .to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::Float64 => format_float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => crate::numeric::format(
            array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(row),
            *scale,
        ),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            format_timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => format_timestamptz(
            array.as_primitive::<TimestampMicrosecondType>().value(row),
            zone,
        ),
        DataType::Date32 => format_date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Interval(IntervalUnit::MonthDayNano) => format_interval(&to_interval(
            array.as_primitive::<IntervalMonthDayNanoType>().value(row),
        )),
        DataType::Dictionary(k, _) if **k == DataType::UInt32 => {
            let dict = array.as_dictionary::<UInt32Type>();
            let key = dict.keys().value(row) as usize;
            return format_value(dict.values().as_ref(), key, zone);
        }
        DataType::Binary => {
            // PostgreSQL's hex output for bytea.
            let bytes = array.as_binary::<i32>().value(row);
            let mut text = String::with_capacity(2 + bytes.len() * 2);
            text.push_str("\\x");
            for b in bytes {
                text.push_str(&format!("{b:02x}"));
            }
            text
        }
        DataType::List(_) => format_array(array.as_list::<i32>().value(row).as_ref(), zone)?,
        other => return Err(Error::Internal(format!("no text output for type {other}"))),
    };
    Ok(Some(text))
}

/// An array's PostgreSQL text form, `{1,2}` or `{"a b",NULL}`: an element is
/// quoted when it is empty, spells NULL, or holds a character the form uses.
fn format_array(elements: &dyn Array, zone: Zone) -> Result<String> {
    let mut out = String::from("{");
    for k in 0..elements.len() {
        if k > 0 {
            out.push(',');
        }
        match format_value(elements, k, zone)? {
            None => out.push_str("NULL"),
            Some(v) => {
                let quote = v.is_empty()
                    || v.eq_ignore_ascii_case("null")
                    || v.chars()
                        .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
                if quote {
                    out.push('"');
                    for c in v.chars() {
                        if matches!(c, '"' | '\\') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str(&v);
                }
            }
        }
    }
    out.push('}');
    Ok(out)
}

/// Casts any array to text with [`format_value`].
pub fn to_text_array(array: &dyn Array, zone: Zone) -> Result<ArrayRef> {
    if array.data_type() == &DataType::Utf8 {
        return Ok(Arc::new(array.as_string::<i32>().clone()));
    }
    let mut b = StringBuilder::with_capacity(array.len(), array.len() * 8);
    for row in 0..array.len() {
        b.append_option(format_value(array, row, zone)?);
    }
    let out: StringArray = b.finish();
    Ok(Arc::new(out))
}

/// PostgreSQL's name for a type, as error messages and `pg_typeof` spell it.
pub fn sql_type_name(dt: &DataType) -> String {
    match dt {
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt32 => "oid".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(..) => "numeric".into(),
        DataType::Utf8 => "text".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Date32 => "date".into(),
        DataType::Interval(_) => "interval".into(),
        DataType::Binary => "bytea".into(),
        DataType::Dictionary(_, v) => sql_type_name(v),
        DataType::List(f) => format!("{}[]", sql_type_name(f.data_type())),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(1e20), "1e+20");
        assert_eq!(format_float(123456789012345.0), "123456789012345");
        assert_eq!(format_float(1e15), "1e+15");
        assert_eq!(format_float(0.0001), "0.0001");
        assert_eq!(format_float(0.00001), "1e-05");
        assert_eq!(format_float(-2.0), "-2");
        assert_eq!(format_float(f64::NAN), "NaN");
    }
}
