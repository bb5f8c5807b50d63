//! Column types, the values the append path accepts, and the text forms of timestamps
//! and intervals (parsed as PostgreSQL parses them, printed as PostgreSQL prints them).

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Microseconds per second.
pub const MICROS_PER_SEC: i64 = 1_000_000;
/// Microseconds per day.
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// The Arrow timezone string Sluice uses for TIMESTAMPTZ (values are stored as UTC).
pub const UTC: &str = "+00:00";

/// The type of a stored column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// BOOLEAN.
    Boolean,
    /// INTEGER (32-bit).
    Integer,
    /// BIGINT (64-bit).
    BigInt,
    /// DOUBLE PRECISION; REAL and FLOAT are stored as this too.
    Double,
    /// TEXT / VARCHAR, dictionary-encoded in segments.
    Text,
    /// TIMESTAMP (microseconds, no time zone).
    Timestamp,
    /// TIMESTAMPTZ (microseconds since the epoch, UTC).
    TimestampTz,
    /// NUMERIC(precision, scale), exact: stored as the integer `value · 10^scale`
    /// in 64 bits, so `precision` is at most [`MAX_STORED_NUMERIC_PRECISION`]; the
    /// query engine sees a Decimal128 with this scale.
    Numeric {
        /// Total significant digits allowed.
        precision: u8,
        /// Digits after the decimal point.
        scale: i8,
    },
}

/// The largest precision of a stored NUMERIC column: 18 digits fit in 64 bits.
pub const MAX_STORED_NUMERIC_PRECISION: u8 = 18;

/// `10^n` for `n` up to 38.
pub fn pow10_i128(n: u32) -> i128 {
    10i128.pow(n)
}

impl ColumnType {
    /// The plain Arrow type of this column as the query engine sees it.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Integer => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Text => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            // The engine's numerics are all 38 digits wide; the column's own
            // precision is checked when a value is stored.
            ColumnType::Numeric { scale, .. } => DataType::Decimal128(38, scale),
        }
    }

    /// True when an array of `dt` holds this column's values as they are
    /// stored: its Arrow type, or for TEXT also a dictionary of text with
    /// `u32` keys (a segment's own encoding).
    pub fn takes_arrow(self, dt: &DataType) -> bool {
        *dt == self.arrow_type()
            || (self == ColumnType::Text
                && matches!(dt, DataType::Dictionary(k, v)
                    if **k == DataType::UInt32 && **v == DataType::Utf8))
    }

    /// The column type for an Arrow type, if Sluice can store it.
    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Boolean => ColumnType::Boolean,
            DataType::Int32 => ColumnType::Integer,
            DataType::Int64 => ColumnType::BigInt,
            DataType::Float64 => ColumnType::Double,
            DataType::Utf8 => ColumnType::Text,
            DataType::Timestamp(TimeUnit::Microsecond, None) => ColumnType::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => ColumnType::TimestampTz,
            _ => return None,
        })
    }

    /// The PostgreSQL name of the type, as `format_type` prints it.
    pub fn sql_name(self) -> String {
        let name = match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Integer => "integer",
            ColumnType::BigInt => "bigint",
            ColumnType::Double => "double precision",
            ColumnType::Text => "text",
            ColumnType::Timestamp => "timestamp without time zone",
            ColumnType::TimestampTz => "timestamp with time zone",
            ColumnType::Numeric { precision, scale } => {
                return format!("numeric({precision},{scale})")
            }
        };
        name.to_string()
    }

    /// True for the two timestamp types.
    pub fn is_timestamp(self) -> bool {
        matches!(self, ColumnType::Timestamp | ColumnType::TimestampTz)
    }
}

/// One value on its way into a table. Timestamps are microseconds since the Unix epoch
/// (UTC for TIMESTAMPTZ, wall-clock for TIMESTAMP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer of any width.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text; also accepted for any column type and parsed as PostgreSQL parses literals.
    Text(String),
    /// A timestamp in microseconds.
    Timestamp(i64),
    /// An exact decimal: `value · 10^-scale`.
    Numeric {
        /// The digits, as an integer.
        value: i128,
        /// How many of them follow the decimal point.
        scale: i8,
    },
}

impl Value {
    /// The SQL name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "unknown",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "bigint",
            Value::Float(_) => "double precision",
            Value::Text(_) => "text",
            Value::Timestamp(_) => "timestamp",
            Value::Numeric { .. } => "numeric",
        }
    }

    /// Converts this value to `ty`, the type of `column`, as an assignment in PostgreSQL
    /// would: integers widen to doubles, doubles round to integers, and text parses.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] for a value of an unrelated type, [`Error::InvalidText`]
    /// for text that does not parse, [`Error::OutOfRange`] for a number too large.
    pub fn coerce_to(self, ty: ColumnType, column: &str) -> Result<Value> {
        let mismatch = |v: &Value| Error::TypeMismatch {
            column: column.to_string(),
            expected: ty.sql_name().to_string(),
            found: v.type_name().to_string(),
        };
        match (ty, self) {
            (_, Value::Null) => Ok(Value::Null),
            (ColumnType::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
            (ColumnType::Boolean, Value::Text(t)) => parse_bool(&t).map(Value::Bool),
            (ColumnType::Integer, Value::Int(i)) => int32_in_range(i).map(Value::Int),
            (ColumnType::BigInt, Value::Int(i)) => Ok(Value::Int(i)),
            (ColumnType::Integer | ColumnType::BigInt, Value::Float(f)) => {
                let r = f.round_ties_even();
                if !r.is_finite() || r < i64::MIN as f64 || r >= i64::MAX as f64 {
                    return Err(Error::OutOfRange(format!("{} value {f}", ty.sql_name())));
                }
                let i = r as i64;
                if ty == ColumnType::Integer {
                    int32_in_range(i).map(Value::Int)
                } else {
                    Ok(Value::Int(i))
                }
            }
            (ColumnType::Integer | ColumnType::BigInt, Value::Text(t)) => {
                let i: i64 = t.trim().parse().map_err(|_| Error::InvalidText {
                    ty: ty.sql_name(),
                    text: t.clone(),
                })?;
                Value::Int(i).coerce_to(ty, column)
            }
            (ColumnType::Double, Value::Float(f)) => Ok(Value::Float(f)),
            (ColumnType::Double, Value::Int(i)) => Ok(Value::Float(i as f64)),
            (ColumnType::Double, Value::Text(t)) => parse_float(&t).map(Value::Float),
            (ColumnType::Text, Value::Text(t)) => Ok(Value::Text(t)),
            (ColumnType::Timestamp | ColumnType::TimestampTz, Value::Timestamp(ts)) => {
                Ok(Value::Timestamp(ts))
            }
            (ColumnType::Timestamp, Value::Text(t)) => parse_timestamp(&t).map(Value::Timestamp),
            (ColumnType::TimestampTz, Value::Text(t)) => {
                parse_timestamptz(&t, crate::zone::Zone::UTC).map(Value::Timestamp)
            }
            (ColumnType::Numeric { precision, scale }, v) => {
                let value = match v {
                    Value::Numeric { value, scale: from } => rescale_numeric(value, from, scale),
                    Value::Int(i) => rescale_numeric(i128::from(i), 0, scale),
                    Value::Float(f) => float_to_numeric(f, scale),
                    Value::Text(t) => parse_numeric(&t, scale),
                    v => return Err(mismatch(&v)),
                }?;
                if value.unsigned_abs() >= pow10_i128(precision as u32) as u128 {
                    return Err(Error::OutOfRange(format!(
                        "numeric field overflow: a field with precision {precision}, scale {scale} \
                         value"
                    )));
                }
                Ok(Value::Numeric { value, scale })
            }
            (ColumnType::Double, Value::Numeric { value, scale }) => {
                Ok(Value::Float(value as f64 / 10f64.powi(scale.into())))
            }
            (ColumnType::Integer | ColumnType::BigInt, Value::Numeric { value, scale }) => {
                let i = rescale_numeric(value, scale, 0)?;
                let i = i64::try_from(i).map_err(|_| Error::OutOfRange(ty.sql_name()))?;
                Value::Int(i).coerce_to(ty, column)
            }
            (_, v) => Err(mismatch(&v)),
        }
    }
}

/// `value · 10^-from` with `to` decimals, rounded half away from zero as
/// PostgreSQL rounds numerics.
pub fn rescale_numeric(value: i128, from: i8, to: i8) -> Result<i128> {
    let overflow = || Error::OutOfRange("numeric".into());
    if to >= from {
        return value
            .checked_mul(pow10_i128((to - from) as u32))
            .ok_or_else(overflow);
    }
    let divisor = pow10_i128((from - to) as u32);
    let (q, r) = (value / divisor, value % divisor);
    Ok(if r.unsigned_abs() * 2 >= divisor as u128 {
        q + value.signum()
    } else {
        q
    })
}

/// A double as a numeric with `scale` decimals (through its shortest exact text,
/// as PostgreSQL converts float8 to numeric).
fn float_to_numeric(f: f64, scale: i8) -> Result<i128> {
    if !f.is_finite() {
        return Err(Error::OutOfRange(format!("numeric value {f}")));
    }
    parse_numeric(&format!("{f}"), scale)
}

/// Parses a decimal (`-12.345`, `1e3`, `.5`) with `scale` decimals, rounded half
/// away from zero.
pub fn parse_numeric(text: &str, scale: i8) -> Result<i128> {
    let invalid = || Error::InvalidText {
        ty: "numeric".into(),
        text: text.to_string(),
    };
    let t = text.trim();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(at) => (&t[..at], t[at + 1..].parse::<i32>().map_err(|_| invalid())?),
        None => (t, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        || int.len() + frac.len() > 38
    {
        return Err(invalid());
    }
    let all: i128 = format!("{int}{frac}").parse().map_err(|_| invalid())?;
    let signed = if negative { -all } else { all };
    // `signed · 10^-from` is the value; it is wanted with `scale` decimals.
    let from = frac.len() as i32 - exponent;
    let overflow = || Error::OutOfRange("numeric".into());
    if from <= scale as i32 {
        let up = (scale as i32 - from) as u32;
        if signed == 0 {
            return Ok(0);
        }
        10i128
            .checked_pow(up)
            .and_then(|f| signed.checked_mul(f))
            .ok_or_else(overflow)
    } else {
        let down = (from - scale as i32) as u32;
        if down > 38 {
            return Ok(0);
        }
        let divisor = pow10_i128(down);
        let (q, r) = (signed / divisor, signed % divisor);
        Ok(if r.unsigned_abs() * 2 >= divisor as u128 {
            q + signed.signum()
        } else {
            q
        })
    }
}

fn int32_in_range(i: i64) -> Result<i64> {
    if i32::try_from(i).is_ok() {
        Ok(i)
    } else {
        Err(Error::OutOfRange("integer".into()))
    }
}

/// Parses a boolean as PostgreSQL does (`t`, `true`, `yes`, `on`, `1` and their opposites,
/// any case, any unique prefix of the words).
pub fn parse_bool(text: &str) -> Result<bool> {
    let t = text.trim().to_ascii_lowercase();
    let is_prefix = |word: &str| !t.is_empty() && word.starts_with(t.as_str());
    if t == "1" || is_prefix("true") || is_prefix("yes") || t == "on" {
        Ok(true)
    } else if t == "0" || is_prefix("false") || is_prefix("no") || t == "off" || t == "of" {
        Ok(false)
    } else {
        Err(Error::InvalidText {
            ty: "boolean".into(),
            text: text.into(),
        })
    }
}

/// Parses a double as PostgreSQL does, including `NaN` and `Infinity`.
pub fn parse_float(text: &str) -> Result<f64> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let parsed = match lower.as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse::<f64>().ok().filter(|f| f.is_finite()),
    };
    parsed.ok_or_else(|| Error::InvalidText {
        ty: "double precision".into(),
        text: text.into(),
    })
}

/// Splits a timestamp literal into wall-clock microseconds and an optional UTC offset
/// in seconds. Accepts `YYYY-MM-DD`, optionally followed by ` ` or `T` and
/// `HH:MM[:SS[.ffffff]]`, optionally followed by `Z`, `UTC`, `±HH`, `±HH:MM` or `±HHMM`.
fn parse_timestamp_parts(text: &str) -> Option<(i64, Option<i64>)> {
    let t = text.trim();
    // PostgreSQL's special value for 1970-01-01 00:00:00 UTC.
    if t.eq_ignore_ascii_case("epoch") {
        return Some((0, Some(0)));
    }
    let (date_part, rest) = match t.find([' ', 'T', 't']) {
        Some(i) => (&t[..i], t[i + 1..].trim()),
        None => (t, ""),
    };
    let date = NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()?;
    // Split the time from a trailing zone.
    let (time_text, zone_text) = match rest.find(['+', '-', 'Z', 'z', 'U', ' ']) {
        Some(i) => (rest[..i].trim(), rest[i..].trim()),
        None => (rest, ""),
    };
    let time = if time_text.is_empty() {
        NaiveTime::MIN
    } else {
        parse_time(time_text)?
    };
    let local = NaiveDateTime::new(date, time).and_utc();
    let micros = local.timestamp_micros();
    let offset = if zone_text.is_empty() {
        None
    } else {
        Some(parse_zone_offset(zone_text)?)
    };
    Some((micros, offset))
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    let mut parts = text.split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let (s, micros) = match parts.next() {
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let s: u32 = whole.parse().ok()?;
            let mut digits: String = frac.chars().take(6).collect();
            if !digits.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            while digits.len() < 6 {
                digits.push('0');
            }
            (s, digits.parse::<u32>().ok()?)
        }
        None => (0, 0),
    };
    if parts.next().is_some() {
        return None;
    }
    if h == 24 && m == 0 && s == 0 && micros == 0 {
        return None;
    }
    NaiveTime::from_hms_micro_opt(h, m, s, micros)
}

fn parse_zone_offset(zone: &str) -> Option<i64> {
    let z = zone.trim();
    if z.eq_ignore_ascii_case("z") || z.eq_ignore_ascii_case("utc") || z.eq_ignore_ascii_case("gmt")
    {
        return Some(0);
    }
    let (sign, digits) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let (h, m) = if let Some((h, m)) = digits.split_once(':') {
        (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?)
    } else if digits.len() == 4 {
        (digits[..2].parse().ok()?, digits[2..].parse().ok()?)
    } else {
        (digits.parse().ok()?, 0)
    };
    if h > 15 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

fn invalid_timestamp(text: &str, ty: &str) -> Error {
    Error::InvalidText {
        ty: ty.into(),
        text: text.into(),
    }
}

/// Parses a TIMESTAMP literal; like PostgreSQL, a zone suffix is ignored.
pub fn parse_timestamp(text: &str) -> Result<i64> {
    parse_timestamp_parts(text)
        .map(|(micros, _)| micros)
        .ok_or_else(|| invalid_timestamp(text, "timestamp"))
}

/// Parses a TIMESTAMPTZ literal into UTC microseconds; text without a zone is a
/// local time in `zone` (the session's time zone).
pub fn parse_timestamptz(text: &str, zone: crate::zone::Zone) -> Result<i64> {
    let (micros, offset) = parse_timestamp_parts(text)
        .ok_or_else(|| invalid_timestamp(text, "timestamp with time zone"))?;
    Ok(match offset {
        Some(offset) => micros - offset * MICROS_PER_SEC,
        None => zone.to_utc(micros),
    })
}

/// Converts microseconds since the epoch to a chrono date-time (UTC), if in range.
pub fn micros_to_datetime(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

/// Formats wall-clock microseconds as PostgreSQL prints a TIMESTAMP:
/// `2024-01-31 10:05:00`, with `.ffffff` (trailing zeros trimmed) when not whole seconds.
pub fn format_timestamp(micros: i64) -> String {
    let Some(dt) = micros_to_datetime(micros) else {
        return format!("<timestamp out of range: {micros}>");
    };
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    push_fraction(&mut s, dt.nanosecond() / 1000);
    if dt.year() <= 0 {
        // PostgreSQL prints BC years as positive numbers with a suffix.
        s = format!(
            "{:04}{} BC",
            1 - dt.year(),
            &s[s.find('-').map_or(0, |i| i)..]
        );
    }
    s
}

/// Formats UTC microseconds as PostgreSQL prints a TIMESTAMPTZ in `zone`:
/// `2024-01-31 10:05:00+00`.
pub fn format_timestamptz(micros: i64, zone: crate::zone::Zone) -> String {
    let offset_secs = zone.offset_at(micros);
    let mut s = format_timestamp(micros + offset_secs * MICROS_PER_SEC);
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let abs = offset_secs.abs();
    s.push_str(&format!("{sign}{:02}", abs / 3600));
    if abs % 3600 != 0 {
        s.push_str(&format!(":{:02}", (abs % 3600) / 60));
    }
    s
}

fn push_fraction(s: &mut String, micros: u32) {
    if micros != 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
}

/// A PostgreSQL interval: months, days and microseconds are kept apart, because a
/// month is not a fixed number of days and a day is not always 24 hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interval {
    /// Whole months.
    pub months: i32,
    /// Whole days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

impl Interval {
    /// The interval's length in microseconds, counting a month as 30 days (as
    /// PostgreSQL does when it must compare or total intervals).
    pub fn approx_micros(&self) -> i64 {
        (self.months as i64 * 30 + self.days as i64) * MICROS_PER_DAY + self.micros
    }

    /// The length in seconds as `EXTRACT(EPOCH FROM interval)` computes it: a year is
    /// 365.25 days, a month 30 days.
    pub fn epoch_seconds(&self) -> f64 {
        let years = (self.months / 12) as f64;
        let months = (self.months % 12) as f64;
        years * 365.25 * 86400.0
            + months * 30.0 * 86400.0
            + self.days as f64 * 86400.0
            + self.micros as f64 / 1e6
    }
}

/// Parses interval text as PostgreSQL accepts it: `1 hour`, `90 minutes`,
/// `1 day 02:00:00`, `2 weeks`, `6 mons`, `1.5 hours`, `-3 days`, `00:30:00`, `1 day ago`.
pub fn parse_interval(text: &str) -> Result<Interval> {
    parse_interval_inner(text).ok_or_else(|| Error::InvalidText {
        ty: "interval".into(),
        text: text.into(),
    })
}

fn parse_interval_inner(text: &str) -> Option<Interval> {
    let mut months = 0f64;
    let mut days = 0f64;
    let mut micros = 0f64;
    let mut tokens = text.split_whitespace().peekable();
    let mut seen = false;
    let mut negate = false;
    while let Some(tok) = tokens.next() {
        let lower = tok.to_ascii_lowercase();
        if lower == "ago" {
            negate = true;
            continue;
        }
        if lower.contains(':') {
            let (sign, body) = match lower.strip_prefix('-') {
                Some(b) => (-1.0, b),
                None => (1.0, lower.trim_start_matches('+')),
            };
            let mut parts = body.split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let s: f64 = match parts.next() {
                Some(p) => p.parse().ok()?,
                None => 0.0,
            };
            micros += sign * ((h * 3600.0 + m * 60.0 + s) * 1e6);
            seen = true;
            continue;
        }
        // A number, possibly with the unit glued on (`10min`).
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(lower.len());
        let (num_text, glued_unit) = lower.split_at(split);
        let n: f64 = num_text.parse().ok()?;
        let unit = if glued_unit.is_empty() {
            match tokens.next() {
                Some(u) => u.to_ascii_lowercase(),
                // A bare number means seconds, as in PostgreSQL.
                None => "seconds".into(),
            }
        } else {
            glued_unit.to_string()
        };
        let unit = unit.trim_end_matches(',');
        match unit {
            "millennium" | "millennia" | "millenniums" => months += n * 12000.0,
            "century" | "centuries" => months += n * 1200.0,
            "decade" | "decades" => months += n * 120.0,
            "y" | "yr" | "yrs" | "year" | "years" => months += n * 12.0,
            "mon" | "mons" | "month" | "months" => months += n,
            "w" | "week" | "weeks" => days += n * 7.0,
            "d" | "day" | "days" => days += n,
            "h" | "hr" | "hrs" | "hour" | "hours" => micros += n * 3600.0 * 1e6,
            "m" | "min" | "mins" | "minute" | "minutes" => micros += n * 60.0 * 1e6,
            "s" | "sec" | "secs" | "second" | "seconds" => micros += n * 1e6,
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => micros += n * 1e3,
            "us" | "usec" | "usecs" | "microsecond" | "microseconds" => micros += n,
            _ => return None,
        }
        seen = true;
    }
    if !seen {
        return None;
    }
    // Fractions cascade down as in PostgreSQL: a fraction of a month becomes days
    // (30 per month), a fraction of a day becomes microseconds.
    let whole_months = months.trunc();
    days += (months - whole_months) * 30.0;
    let whole_days = days.trunc();
    micros += (days - whole_days) * MICROS_PER_DAY as f64;
    let sign = if negate { -1 } else { 1 };
    Some(Interval {
        months: sign * i32::try_from(whole_months as i64).ok()?,
        days: sign * i32::try_from(whole_days as i64).ok()?,
        micros: sign as i64 * micros.round() as i64,
    })
}

/// Formats an interval as PostgreSQL's default `postgres` interval style prints it:
/// `1 year 2 mons 3 days 04:05:06.5`, `-01:30:00`, `00:00:00`.
pub fn format_interval(iv: &Interval) -> String {
    let mut parts: Vec<String> = Vec::new();
    let years = iv.months / 12;
    let months = iv.months % 12;
    let plural = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if years != 0 {
        parts.push(plural(years as i64, "year", "years"));
    }
    if months != 0 {
        parts.push(plural(months as i64, "mon", "mons"));
    }
    if iv.days != 0 {
        parts.push(plural(iv.days as i64, "day", "days"));
    }
    if iv.micros != 0 || parts.is_empty() {
        let neg = iv.micros < 0;
        let abs = iv.micros.unsigned_abs();
        let secs = abs / 1_000_000;
        let mut t = format!(
            "{}{:02}:{:02}:{:02}",
            if neg { "-" } else { "" },
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        push_fraction(&mut t, (abs % 1_000_000) as u32);
        parts.push(t);
    }
    parts.join(" ")
}

/// Parses a retention or age option such as `'180 days'` into microseconds.
pub fn parse_duration_micros(text: &str) -> Result<i64> {
    let iv = parse_interval(text)?;
    let micros = iv.approx_micros();
    if micros <= 0 {
        return Err(Error::InvalidDefinition(format!(
            "duration \"{text}\" must be positive"
        )));
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_in_postgres_format() {
        let t = parse_timestamp("2024-01-31 10:05:00.25").unwrap();
        assert_eq!(format_timestamp(t), "2024-01-31 10:05:00.25");
        assert_eq!(parse_timestamp("2024-01-31").unwrap() % MICROS_PER_DAY, 0);
        assert_eq!(
            parse_timestamptz("2024-01-31T12:00:00+02:00", crate::zone::Zone::UTC).unwrap(),
            parse_timestamp("2024-01-31 10:00:00").unwrap()
        );
        assert!(parse_timestamp("2024-13-01").is_err());
        assert!(parse_timestamp("yesterday-ish").is_err());
        assert_eq!(
            format_timestamptz(t, crate::zone::Zone::UTC),
            "2024-01-31 10:05:00.25+00"
        );
    }

    #[test]
    fn intervals_parse_and_print_like_postgres() {
        let cases = [
            ("1 hour", "01:00:00"),
            ("90 minutes", "01:30:00"),
            ("1 day 02:00:00", "1 day 02:00:00"),
            ("2 weeks", "14 days"),
            ("6 mons", "6 mons"),
            ("14 months", "1 year 2 mons"),
            ("1.5 hours", "01:30:00"),
            ("-3 days", "-3 days"),
            ("1 day ago", "-1 days"),
            ("0 seconds", "00:00:00"),
            ("1.5 days", "1 day 12:00:00"),
        ];
        for (text, want) in cases {
            assert_eq!(
                format_interval(&parse_interval(text).unwrap()),
                want,
                "{text}"
            );
        }
        assert!(parse_interval("soon").is_err());
        assert_eq!(
            parse_duration_micros("180 days").unwrap(),
            180 * MICROS_PER_DAY
        );
    }

    #[test]
    fn coercion_follows_assignment_rules() {
        assert_eq!(
            Value::Float(2.5)
                .coerce_to(ColumnType::BigInt, "c")
                .unwrap(),
            Value::Int(2)
        );
        assert!(matches!(
            Value::Int(1 << 40).coerce_to(ColumnType::Integer, "c"),
            Err(Error::OutOfRange(_))
        ));
        assert!(matches!(
            Value::Bool(true).coerce_to(ColumnType::BigInt, "c"),
            Err(Error::TypeMismatch { .. })
        ));
        assert_eq!(
            Value::Text("yes".into())
                .coerce_to(ColumnType::Boolean, "c")
                .unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn numerics_parse_exactly_and_round_half_away_from_zero() {
        assert_eq!(parse_numeric("10.05", 2).unwrap(), 1005);
        assert_eq!(parse_numeric("-0.125", 2).unwrap(), -13);
        assert_eq!(parse_numeric("0.124", 2).unwrap(), 12);
        assert_eq!(parse_numeric("1e3", 0).unwrap(), 1000);
        assert_eq!(parse_numeric("1.5e-1", 2).unwrap(), 15);
        assert_eq!(parse_numeric(".5", 0).unwrap(), 1);
        assert!(parse_numeric("1.2.3", 2).is_err());
        assert!(parse_numeric("", 2).is_err());
        let ty = ColumnType::Numeric {
            precision: 4,
            scale: 2,
        };
        assert_eq!(
            Value::Text("99.994".into()).coerce_to(ty, "c").unwrap(),
            Value::Numeric {
                value: 9999,
                scale: 2
            }
        );
        assert!(Value::Text("99.995".into()).coerce_to(ty, "c").is_err());
        assert_eq!(
            Value::Float(0.1).coerce_to(ty, "c").unwrap(),
            Value::Numeric {
                value: 10,
                scale: 2
            }
        );
        // Coercing twice changes nothing.
        let once = Value::Int(7).coerce_to(ty, "c").unwrap();
        assert_eq!(once.clone().coerce_to(ty, "c").unwrap(), once);
    }
}
