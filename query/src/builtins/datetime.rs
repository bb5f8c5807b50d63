//! Date and time functions: templates (`to_timestamp`, `to_date`,
//! `to_char`), `date_bin`, zone conversion (`timezone`, which `AT TIME ZONE`
//! binds to) and constructors (`make_date`, `make_timestamp`,
//! `make_interval`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, IntervalMonthDayNanoArray, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{
    Date32Type, Float64Type, Int64Type, IntervalMonthDayNano, IntervalMonthDayNanoType,
    TimestampMicrosecondType,
};
use sluice_storage::types::{micros_to_datetime, MICROS_PER_DAY, MICROS_PER_SEC, UTC};
use sluice_storage::zone::Zone;

use super::format::Template;
use super::{Builtin, Type};
use crate::context::QueryContext;
use crate::error::{Error, Result};

const T: Type = Type::Text;
const TS: Type = Type::Timestamp;
const TSZ: Type = Type::TimestampTz;
const I: Type = Type::Int64;

/// The date/time functions.
pub static FUNCTIONS: &[Builtin] = &[
    Builtin::new("to_timestamp", &[T, T], TSZ, to_timestamp),
    Builtin::new("to_date", &[T, T], Type::Date, to_date),
    Builtin::new("to_char", &[TS, T], T, to_char_timestamp),
    Builtin::new("to_char", &[TSZ, T], T, to_char_timestamptz),
    Builtin::new("to_char", &[Type::Date, T], T, to_char_date),
    Builtin::new("to_char", &[I, T], T, to_char_number),
    Builtin::new("to_char", &[Type::Float64, T], T, to_char_number),
    Builtin::new("date_bin", &[Type::Interval, TS, TS], TS, date_bin),
    Builtin::new("date_bin", &[Type::Interval, TSZ, TSZ], TSZ, date_bin),
    Builtin::new("timezone", &[T, TSZ], TS, timezone_of_instant),
    Builtin::new("timezone", &[T, TS], TSZ, timezone_of_local),
    Builtin::new("make_date", &[I, I, I], Type::Date, make_date),
    Builtin::new(
        "make_timestamp",
        &[I, I, I, I, I, Type::Float64],
        TS,
        make_timestamp,
    ),
    Builtin::new("make_interval", &[], Type::Interval, make_interval),
    Builtin::new("make_interval", &[I], Type::Interval, make_interval),
    Builtin::new("make_interval", &[I, I], Type::Interval, make_interval),
    Builtin::new("make_interval", &[I, I, I], Type::Interval, make_interval),
    Builtin::new(
        "make_interval",
        &[I, I, I, I],
        Type::Interval,
        make_interval,
    ),
    Builtin::new(
        "make_interval",
        &[I, I, I, I, I],
        Type::Interval,
        make_interval,
    ),
    Builtin::new(
        "make_interval",
        &[I, I, I, I, I, I],
        Type::Interval,
        make_interval,
    ),
    Builtin::new(
        "make_interval",
        &[I, I, I, I, I, I, Type::Float64],
        Type::Interval,
        make_interval,
    ),
];

fn text(a: &ArrayRef) -> &StringArray {
    a.as_string::<i32>()
}

fn micros(a: &ArrayRef) -> &arrow::array::PrimitiveArray<TimestampMicrosecondType> {
    a.as_primitive::<TimestampMicrosecondType>()
}

fn nulls_in(args: &[ArrayRef], r: usize) -> bool {
    args.iter().any(|a| a.is_null(r))
}

/// Templates by text, parsed once while a column repeats the same one.
#[derive(Default)]
struct Templates {
    last: Option<(String, Template)>,
}

impl Templates {
    fn get(&mut self, text: &str) -> &Template {
        if !matches!(&self.last, Some((t, _)) if t == text) {
            self.last = None;
        }
        &self
            .last
            .get_or_insert_with(|| (text.to_string(), Template::parse(text)))
            .1
    }
}

fn local_micros(t: chrono::NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// to_timestamp(text, template): the local time read, in the session's zone
/// (or the zone the text names with `OF`/`TZ`).
fn to_timestamp(args: &[ArrayRef], rows: usize, ctx: &QueryContext) -> Result<ArrayRef> {
    let zone = ctx.options().zone;
    let mut templates = Templates::default();
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let (t, offset) = templates
                .get(text(&args[1]).value(r))
                .read(text(&args[0]).value(r))?;
            let local = local_micros(t);
            Ok(Some(match offset {
                Some(o) => local - o * MICROS_PER_SEC,
                None => zone.to_utc(local),
            }))
        })
        .collect::<Result<TimestampMicrosecondArray>>()?;
    Ok(Arc::new(out.with_timezone(UTC)))
}

fn to_date(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let mut templates = Templates::default();
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let (t, _) = templates
                .get(text(&args[1]).value(r))
                .read(text(&args[0]).value(r))?;
            Ok(Some(local_micros(t).div_euclid(MICROS_PER_DAY) as i32))
        })
        .collect::<Result<Date32Array>>()?;
    Ok(Arc::new(out))
}

/// to_char over local times given as microseconds, with the zone's
/// abbreviation and offset at each for `TZ` and `OF`.
fn to_char_local(
    args: &[ArrayRef],
    rows: usize,
    local: impl Fn(usize) -> i64,
    zone: Option<Zone>,
) -> Result<ArrayRef> {
    let mut templates = Templates::default();
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let m = local(r);
            let t = micros_to_datetime(m)
                .ok_or_else(|| Error::NumericOutOfRange("timestamp out of range".into()))?;
            let named = zone.map(|z| {
                let instant = z.to_utc(m);
                (z.abbreviation_at(instant), z.offset_at(instant))
            });
            let named = named
                .as_ref()
                .map(|(name, offset)| (name.as_str(), *offset));
            Ok(Some(
                templates.get(text(&args[1]).value(r)).format(t, named),
            ))
        })
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

fn to_char_timestamp(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let v = micros(&args[0]);
    to_char_local(args, rows, |r| v.value(r), None)
}

fn to_char_timestamptz(args: &[ArrayRef], rows: usize, ctx: &QueryContext) -> Result<ArrayRef> {
    let zone = ctx.options().zone;
    let v = micros(&args[0]);
    to_char_local(args, rows, |r| zone.to_local(v.value(r)), Some(zone))
}

fn to_char_date(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let v = args[0].as_primitive::<Date32Type>();
    to_char_local(args, rows, |r| v.value(r) as i64 * MICROS_PER_DAY, None)
}

/// to_char(number, template) for the number templates dashboards use:
/// digits `9` (blank when not significant) and `0` (always a digit), `D` or
/// `.` for the decimal point, `G` or `,` for group separators, a leading
/// `S` for an explicit sign, and `FM` to drop padding. Like PostgreSQL,
/// the result keeps one leading position for the sign and fills with `#`
/// when the number does not fit.
fn to_char_number(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let value = |r: usize| -> f64 {
        match args[0].data_type() {
            arrow::datatypes::DataType::Int64 => {
                args[0].as_primitive::<Int64Type>().value(r) as f64
            }
            _ => args[0].as_primitive::<Float64Type>().value(r),
        }
    };
    let out = (0..rows)
        .map(|r| (!nulls_in(args, r)).then(|| number_text(value(r), text(&args[1]).value(r))))
        .collect::<StringArray>();
    Ok(Arc::new(out))
}

fn number_text(v: f64, template: &str) -> String {
    let fill = template.contains("FM") || template.contains("fm");
    let t = template.replace("FM", "").replace("fm", "");
    let explicit_sign = t.starts_with('S');
    let t = t.trim_start_matches('S');
    let (int_part, frac_part) = match t.find(['D', '.']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let int_digits = int_part.chars().filter(|c| matches!(c, '9' | '0')).count();
    let frac_digits = frac_part.chars().filter(|c| matches!(c, '9' | '0')).count();
    let rounded = format!("{:.*}", frac_digits, v.abs());
    let (whole, frac) = rounded.split_once('.').unwrap_or((&rounded, ""));
    let whole = whole.trim_start_matches('0');
    let sign = if v < 0.0 {
        "-"
    } else if explicit_sign {
        "+"
    } else {
        ""
    };
    if whole.len() > int_digits {
        let hashes: String = t
            .chars()
            .map(|c| match c {
                '9' | '0' => '#',
                'D' => '.',
                'G' => ',',
                other => other,
            })
            .collect();
        return format!(" {hashes}");
    }
    // The integer part, right-aligned into the template's digit positions.
    let first_zero = int_part.find('0').map(|i| {
        int_part[..i]
            .chars()
            .filter(|c| matches!(c, '9' | '0'))
            .count()
    });
    let mut digits: Vec<char> = whole.chars().collect();
    let mut out_int = String::new();
    let mut position = int_digits;
    for c in int_part.chars() {
        match c {
            '9' | '0' => {
                let index_from_right = position;
                position -= 1;
                if index_from_right <= digits.len() {
                    let d = digits[digits.len() - index_from_right];
                    out_int.push(d);
                } else if c == '0' || first_zero.is_some_and(|z| int_digits - index_from_right >= z)
                {
                    out_int.push('0');
                } else if !fill {
                    out_int.push(' ');
                }
            }
            'G' | ',' => {
                if out_int.trim().is_empty() {
                    if !fill {
                        out_int.push(' ');
                    }
                } else {
                    out_int.push(',');
                }
            }
            other => out_int.push(other),
        }
    }
    digits.clear();
    if whole.is_empty() && !out_int.contains(|c: char| c.is_ascii_digit()) && frac_digits == 0 {
        // Zero with only 9s: PostgreSQL prints a single 0.
        out_int = out_int.trim_end().to_string() + "0";
    }
    // Put the sign right before the first digit.
    let lead = out_int.len() - out_int.trim_start().len();
    let body = out_int.trim_start();
    let mut out = String::new();
    if !fill {
        out.push_str(&" ".repeat(lead));
        out.push_str(if sign.is_empty() { " " } else { sign });
    } else {
        out.push_str(sign);
    }
    out.push_str(body);
    if !frac_part.is_empty() || t.contains(['D', '.']) {
        let mut f: String = frac.chars().collect();
        if fill {
            // FM drops trailing zeros that come from 9s.
            let keep_zeros = frac_part.rfind('0').map_or(0, |i| i + 1);
            while f.len() > keep_zeros && f.ends_with('0') {
                f.pop();
            }
        }
        out.push('.');
        out.push_str(&f);
    }
    out
}

/// date_bin(stride, source, origin): the start of the stride-wide bin,
/// counted from origin, that holds source.
fn date_bin(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let strides = args[0].as_primitive::<IntervalMonthDayNanoType>();
    let (source, origin) = (micros(&args[1]), micros(&args[2]));
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let s = strides.value(r);
            if s.months != 0 {
                return Err(Error::Data {
                    code: "0A000",
                    message:
                        "timestamps cannot be binned into intervals containing months or years"
                            .into(),
                });
            }
            let stride = s.days as i64 * MICROS_PER_DAY + s.nanoseconds / 1000;
            if stride <= 0 {
                return Err(Error::InvalidParameter(
                    "stride must be greater than zero".into(),
                ));
            }
            let delta = source.value(r) - origin.value(r);
            Ok(Some(origin.value(r) + delta.div_euclid(stride) * stride))
        })
        .collect::<Result<TimestampMicrosecondArray>>()?;
    let zone = match args[1].data_type() {
        arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    Ok(Arc::new(out.with_timezone_opt(zone)))
}

/// The zone `AT TIME ZONE` names: an IANA name, or an offset read the POSIX
/// way (as PostgreSQL does there, `'+02'` is two hours west).
fn at_zone(name: &str) -> Result<Zone> {
    let trimmed = name.trim();
    let posix = trimmed.starts_with(['+', '-']) || trimmed.parse::<f64>().is_ok();
    let zone = if posix {
        Zone::parse(&format!(
            "UTC{}{}",
            if trimmed.starts_with(['+', '-']) {
                ""
            } else {
                "+"
            },
            trimmed
        ))
    } else {
        Zone::parse(trimmed)
    };
    zone.ok_or_else(|| Error::InvalidParameter(format!("time zone \"{name}\" not recognized")))
}

/// timezone(zone, timestamptz): the local time at that instant in `zone`.
fn timezone_of_instant(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    convert(args, rows, |z, v| z.to_local(v), None)
}

/// timezone(zone, timestamp): the instant of that local time in `zone`.
fn timezone_of_local(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    convert(args, rows, |z, v| z.to_utc(v), Some(UTC))
}

fn convert(
    args: &[ArrayRef],
    rows: usize,
    f: impl Fn(Zone, i64) -> i64,
    out_zone: Option<&str>,
) -> Result<ArrayRef> {
    let v = micros(&args[1]);
    let mut last: Option<(String, Zone)> = None;
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let name = text(&args[0]).value(r);
            let zone = match &last {
                Some((n, z)) if n == name => *z,
                _ => {
                    let z = at_zone(name)?;
                    last = Some((name.to_string(), z));
                    z
                }
            };
            Ok(Some(f(zone, v.value(r))))
        })
        .collect::<Result<TimestampMicrosecondArray>>()?;
    Ok(Arc::new(out.with_timezone_opt(out_zone)))
}

fn int(a: &ArrayRef, r: usize) -> i64 {
    a.as_primitive::<Int64Type>().value(r)
}

fn make_date(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let (y, m, d) = (int(&args[0], r), int(&args[1], r), int(&args[2], r));
            let date = i32::try_from(y)
                .ok()
                .and_then(|y| chrono::NaiveDate::from_ymd_opt(y, m as u32, d as u32))
                .ok_or_else(|| Error::Data {
                    code: "22008",
                    message: format!("date field value out of range: {y}-{m:02}-{d:02}"),
                })?;
            Ok(Some(
                local_micros(date.and_hms_opt(0, 0, 0).unwrap_or_default())
                    .div_euclid(MICROS_PER_DAY) as i32,
            ))
        })
        .collect::<Result<Date32Array>>()?;
    Ok(Arc::new(out))
}

fn make_timestamp(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let secs = args[5].as_primitive::<Float64Type>().value(r);
            let whole = secs.trunc();
            let t = i32::try_from(int(&args[0], r))
                .ok()
                .and_then(|y| {
                    chrono::NaiveDate::from_ymd_opt(
                        y,
                        int(&args[1], r) as u32,
                        int(&args[2], r) as u32,
                    )
                })
                .and_then(|d| {
                    d.and_hms_micro_opt(
                        int(&args[3], r) as u32,
                        int(&args[4], r) as u32,
                        whole as u32,
                        ((secs - whole) * 1e6).round() as u32,
                    )
                })
                .filter(|_| (0.0..60.0).contains(&secs))
                .ok_or_else(|| Error::Data {
                    code: "22008",
                    message: "date/time field value out of range".into(),
                })?;
            Ok(Some(local_micros(t)))
        })
        .collect::<Result<TimestampMicrosecondArray>>()?;
    Ok(Arc::new(out))
}

/// make_interval(years, months, weeks, days, hours, mins, secs), each
/// defaulting to 0.
fn make_interval(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out = (0..rows)
        .map(|r| {
            if nulls_in(args, r) {
                return Ok(None);
            }
            let part = |i: usize| args.get(i).map_or(0, |a| int(a, r));
            let secs = args
                .get(6)
                .map_or(0.0, |a| a.as_primitive::<Float64Type>().value(r));
            let months = part(0) * 12 + part(1);
            let days = part(2) * 7 + part(3);
            let micros =
                (part(4) * 3600 + part(5) * 60) * MICROS_PER_SEC + (secs * 1e6).round() as i64;
            let overflow = || Error::NumericOutOfRange("interval out of range".into());
            Ok(Some(IntervalMonthDayNano::new(
                i32::try_from(months).map_err(|_| overflow())?,
                i32::try_from(days).map_err(|_| overflow())?,
                micros.checked_mul(1000).ok_or_else(overflow)?,
            )))
        })
        .collect::<Result<IntervalMonthDayNanoArray>>()?;
    Ok(Arc::new(out))
}
