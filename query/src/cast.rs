//! CAST with PostgreSQL's rules where they differ from Arrow's: text is parsed and
//! printed the PostgreSQL way, doubles round to integers, and a bad value is an error
//! (never a silent NULL).

use sluice_storage::zone::Zone;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array,
    IntervalMonthDayNanoArray, TimestampMicrosecondArray,
};
use arrow::compute::{can_cast_types, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Float64Type, IntervalMonthDayNano, TimeUnit};
use sluice_storage::types::{self as st, MICROS_PER_DAY};

use crate::error::{Error, Result};
use crate::format::{sql_type_name, to_text_array};

/// Casts `array` to `to`. `zone` is the session time zone, used when text
/// without a zone becomes a TIMESTAMPTZ and when a TIMESTAMPTZ becomes text.
///
/// # Errors
/// [`Error::CannotCast`] for a cast that does not exist, [`Error::InvalidText`] for
/// text that does not parse, [`Error::NumericOutOfRange`] for overflow.
pub fn cast_array(array: &ArrayRef, to: &DataType, zone: Zone) -> Result<ArrayRef> {
    let from = array.data_type();
    if from == to {
        return Ok(Arc::clone(array));
    }
    if let DataType::Dictionary(_, value) = from {
        let plain = arrow::compute::cast(array, value)?;
        return cast_array(&plain, to, zone);
    }
    if from == &DataType::Null {
        return Ok(arrow::array::new_null_array(to, array.len()));
    }
    if to == &DataType::Utf8 {
        if from == &DataType::Boolean {
            // CAST(bool AS text) spells the words out; the wire format says t/f.
            let words: arrow::array::StringArray = array
                .as_boolean()
                .iter()
                .map(|b| b.map(|b| if b { "true" } else { "false" }))
                .collect();
            return Ok(Arc::new(words));
        }
        return to_text_array(array.as_ref(), zone);
    }
    if let DataType::List(element) = to {
        return match from {
            DataType::Utf8 => {
                crate::array::parse(array.as_string::<i32>(), element.data_type(), zone)
            }
            DataType::List(_) => {
                crate::array::cast_elements(array.as_list::<i32>(), element.data_type(), zone)
            }
            other => Err(Error::CannotCast {
                from: crate::format::sql_type_name(other),
                to: crate::format::sql_type_name(to),
            }),
        };
    }
    if from == &DataType::Utf8 {
        return parse_text(array.as_string::<i32>(), to, zone);
    }
    match (from, to) {
        (_, DataType::Decimal128(precision, scale)) => {
            let out = crate::numeric::to_decimal(array, *scale)?;
            crate::numeric::check_precision(&out, *precision)?;
            return Ok(Arc::new(out.with_precision_and_scale(*precision, *scale)?));
        }
        (DataType::Decimal128(_, scale), DataType::Int32 | DataType::Int64) => {
            // Rounded half away from zero, as PostgreSQL makes numeric an integer.
            let a = array.as_primitive::<arrow::datatypes::Decimal128Type>();
            let whole = a
                .iter()
                .map(|v| {
                    v.map(|v| {
                        crate::numeric::rescale(v, *scale, 0).and_then(|w| {
                            i64::try_from(w).map_err(|_| {
                                Error::NumericOutOfRange(format!(
                                    "{} out of range",
                                    sql_type_name(to)
                                ))
                            })
                        })
                    })
                    .transpose()
                })
                .collect::<Result<Int64Array>>()?;
            return checked_cast(&(Arc::new(whole) as ArrayRef), to);
        }
        (DataType::Float64, DataType::Int32 | DataType::Int64) => {
            // PostgreSQL rounds a double half to even (rint); Arrow would truncate.
            let rounded: Float64Array = array
                .as_primitive::<Float64Type>()
                .unary(|v: f64| v.round_ties_even());
            return checked_cast(&(Arc::new(rounded) as ArrayRef), to);
        }
        (DataType::Timestamp(_, Some(_)), DataType::Timestamp(u, None)) if zone != Zone::UTC => {
            let shifted = cast_with_options(array, &DataType::Timestamp(*u, None), &strict())?;
            let v = shifted.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let out: TimestampMicrosecondArray = v.unary(|x| zone.to_local(x));
            return Ok(Arc::new(out));
        }
        // A timestamp without a zone is a local time in the session's zone.
        (DataType::Timestamp(_, None), DataType::Timestamp(u, Some(_))) if zone != Zone::UTC => {
            let instants = checked_cast(array, to)?;
            let v = instants.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let out: TimestampMicrosecondArray = v
                .unary::<_, arrow::datatypes::TimestampMicrosecondType>(|x| zone.to_utc(x))
                .with_timezone_opt(to_zone(to));
            debug_assert_eq!(*u, TimeUnit::Microsecond);
            return Ok(Arc::new(out));
        }
        (DataType::Date32, DataType::Timestamp(_, Some(_))) if zone != Zone::UTC => {
            let local = checked_cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            return cast_array(&local, to, zone);
        }
        (DataType::Timestamp(_, Some(_)), DataType::Date32) if zone != Zone::UTC => {
            let local = cast_array(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                zone,
            )?;
            return checked_cast(&local, to);
        }
        _ => {}
    }
    checked_cast(array, to)
}

/// The zone of a timestamp type, if it has one.
fn to_zone(t: &DataType) -> Option<Arc<str>> {
    match t {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    }
}

fn strict() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

fn checked_cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if !can_cast_types(array.data_type(), to) || matches!(to, DataType::Interval(_)) {
        return Err(Error::CannotCast {
            from: sql_type_name(array.data_type()),
            to: sql_type_name(to),
        });
    }
    let numeric = |t: &DataType| {
        matches!(
            t,
            DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::Float64
        )
    };
    cast_with_options(array, to, &strict()).map_err(|e| {
        if numeric(array.data_type()) && numeric(to) {
            // A number that does not fit, as PostgreSQL reports it (22003).
            Error::NumericOutOfRange(format!("{} out of range", sql_type_name(to)))
        } else {
            e.into()
        }
    })
}

fn parse_text(text: &arrow::array::StringArray, to: &DataType, zone: Zone) -> Result<ArrayRef> {
    let conv = |e: sluice_storage::Result<i64>| e.map_err(crate::error::Error::from);
    Ok(match to {
        DataType::Boolean => Arc::new(
            text.iter()
                .map(|v| v.map(st::parse_bool).transpose())
                .collect::<sluice_storage::Result<BooleanArray>>()?,
        ),
        DataType::Int32 | DataType::Int64 | DataType::UInt32 => {
            let ints = text
                .iter()
                .map(|v| {
                    v.map(|s| {
                        s.trim()
                            .parse::<i64>()
                            .map_err(|_| Error::invalid_text(&sql_type_name(to), s))
                    })
                    .transpose()
                })
                .collect::<Result<Int64Array>>()?;
            checked_cast(&(Arc::new(ints) as ArrayRef), to)?
        }
        DataType::Float64 => Arc::new(
            text.iter()
                .map(|v| v.map(st::parse_float).transpose())
                .collect::<sluice_storage::Result<Float64Array>>()?,
        ),
        DataType::Decimal128(precision, scale) => {
            let values = text
                .iter()
                .map(|v| v.map(|s| crate::numeric::parse(s, *scale)).transpose())
                .collect::<Result<arrow::array::Decimal128Array>>()?
                .with_precision_and_scale(*precision, *scale)?;
            crate::numeric::check_precision(&values, *precision)?;
            Arc::new(values)
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let values = text
                .iter()
                .map(|v| {
                    v.map(|s| {
                        conv(if tz.is_some() {
                            st::parse_timestamptz(s, zone)
                        } else {
                            st::parse_timestamp(s)
                        })
                    })
                    .transpose()
                })
                .collect::<Result<TimestampMicrosecondArray>>()?;
            Arc::new(values.with_timezone_opt(tz.clone()))
        }
        DataType::Date32 => Arc::new(
            text.iter()
                .map(|v| {
                    v.map(|s| {
                        st::parse_timestamp(s)
                            .map(|m| m.div_euclid(MICROS_PER_DAY) as i32)
                            .map_err(|_| Error::invalid_text("date", s))
                    })
                    .transpose()
                })
                .collect::<Result<Date32Array>>()?,
        ),
        DataType::Interval(_) => Arc::new(
            text.iter()
                .map(|v| {
                    v.map(|s| {
                        st::parse_interval(s).map(|iv| {
                            IntervalMonthDayNano::new(iv.months, iv.days, iv.micros * 1000)
                        })
                    })
                    .transpose()
                })
                .collect::<sluice_storage::Result<IntervalMonthDayNanoArray>>()?,
        ),
        other => {
            return Err(Error::CannotCast {
                from: "text".into(),
                to: sql_type_name(other),
            })
        }
    })
}
