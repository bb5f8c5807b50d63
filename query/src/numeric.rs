//! NUMERIC: exact decimals as Arrow `Decimal128` with PostgreSQL's rounding
//! (half away from zero) and result scales.
//!
//! A column has one scale, where PostgreSQL keeps one per value. The two
//! agree wherever PostgreSQL's scale is fixed by the types: a `numeric(p, s)`
//! cast, a literal (`2.50` has scale 2), `+`, `-` and `*` (from the operands'
//! scales), `round(x, n)`, `sum`. Where PostgreSQL's scale depends on the
//! value (division, `avg`, a double made numeric), Sluice uses
//! [`DIVISION_SCALE`], PostgreSQL's own choice for values between 1 and
//! 10,000; other values print with as many decimals, equal in value.
//!
//! The arithmetic is hand-written: Arrow's decimal kernels choose their own
//! result scales and truncate, and these must round as PostgreSQL does.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{i256, DataType, Decimal128Type, Float64Type};

use crate::error::{Error, Result};

/// Largest precision (digits) of a numeric.
pub const MAX_PRECISION: u8 = 38;

/// Scale of results whose PostgreSQL scale depends on the value: division,
/// `avg`, variance, and a double cast to numeric.
pub const DIVISION_SCALE: i8 = 16;

/// Largest scale a result gets (products of long fractions are rounded to it).
pub const MAX_SCALE: i8 = 32;

/// The numeric type with `scale` decimals.
pub fn numeric(scale: i8) -> DataType {
    DataType::Decimal128(MAX_PRECISION, scale.clamp(0, MAX_SCALE))
}

/// The scale of a decimal type (0 for others).
pub fn scale_of(t: &DataType) -> i8 {
    match t {
        DataType::Decimal128(_, s) => *s,
        _ => 0,
    }
}

/// 10^n as an i128 (n <= 38).
pub fn pow10(n: u32) -> i128 {
    10i128.pow(n.min(38))
}

fn overflow() -> Error {
    Error::NumericOutOfRange("numeric field overflow".into())
}

/// `v` (with `from` decimals) with `to` decimals, rounding half away from zero.
pub fn rescale(v: i128, from: i8, to: i8) -> Result<i128> {
    if to >= from {
        return v
            .checked_mul(pow10((to - from) as u32))
            .ok_or_else(overflow);
    }
    let div = pow10((from - to) as u32);
    let (q, r) = (v / div, v % div);
    Ok(if r.abs() * 2 >= div {
        q + v.signum()
    } else {
        q
    })
}

/// The text of `v` with `scale` decimals, as PostgreSQL prints a numeric.
pub fn format(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return v.to_string();
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// The number of decimals written in `text` (`2.50` -> 2, `1e3` -> 0).
pub fn text_scale(text: &str) -> i8 {
    let t = text.trim();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().unwrap_or(0)),
        None => (t, 0),
    };
    let decimals = mantissa.find('.').map_or(0, |i| mantissa.len() - i - 1) as i32;
    (decimals - exponent).clamp(0, MAX_SCALE as i32) as i8
}

/// Parses numeric text (`-12.5`, `1e3`) with `scale` decimals, rounding extra
/// digits half away from zero.
pub fn parse(text: &str, scale: i8) -> Result<i128> {
    let bad = || Error::invalid_text("numeric", text);
    let t = text.trim();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (negative, body) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        return Err(overflow());
    }
    let raw: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let written_scale = frac.len() as i32 - exponent;
    let value = if written_scale >= 0 {
        rescale(raw, written_scale.min(76) as i8, scale)?
    } else {
        raw.checked_mul(pow10((-written_scale) as u32))
            .and_then(|v| v.checked_mul(pow10(scale.max(0) as u32)))
            .ok_or_else(overflow)?
    };
    Ok(if negative { -value } else { value })
}

/// Checks that every value fits `precision` digits (a `numeric(p, s)`).
pub fn check_precision(values: &Decimal128Array, precision: u8) -> Result<()> {
    if precision >= MAX_PRECISION {
        return Ok(());
    }
    let limit = pow10(precision as u32);
    if values.iter().flatten().any(|v| v.abs() >= limit) {
        return Err(Error::NumericOutOfRange(format!(
            "numeric field overflow: a field with precision {precision}, scale {} must round to an absolute value less than 10^{}",
            values.scale(),
            precision as i8 - values.scale()
        )));
    }
    Ok(())
}

/// `array` (integers, doubles or decimals) as decimals with `scale` decimals.
pub fn to_decimal(array: &ArrayRef, scale: i8) -> Result<Decimal128Array> {
    let out: Decimal128Array = match array.data_type() {
        DataType::Decimal128(_, from) => {
            let a = array.as_primitive::<Decimal128Type>();
            a.iter()
                .map(|v| v.map(|v| rescale(v, *from, scale)).transpose())
                .collect::<Result<_>>()?
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            let factor = pow10(scale.max(0) as u32) as f64;
            a.iter()
                .map(|v| {
                    v.map(|x| {
                        if !x.is_finite() {
                            return Err(Error::NotSupported("NaN and infinity as numeric".into()));
                        }
                        let scaled = (x * factor).round();
                        if scaled.abs() >= 1e38 {
                            return Err(overflow());
                        }
                        Ok(scaled as i128)
                    })
                    .transpose()
                })
                .collect::<Result<_>>()?
        }
        DataType::Int32 | DataType::Int64 | DataType::UInt32 => {
            let ints = arrow::compute::cast(array, &DataType::Int64)?;
            let a = ints.as_primitive::<arrow::datatypes::Int64Type>();
            let factor = pow10(scale.max(0) as u32);
            a.iter()
                .map(|v| {
                    v.map(|x| (x as i128).checked_mul(factor).ok_or_else(overflow))
                        .transpose()
                })
                .collect::<Result<_>>()?
        }
        DataType::Null => Decimal128Array::new_null(array.len()),
        other => {
            return Err(Error::CannotCast {
                from: crate::format::sql_type_name(other),
                to: "numeric".into(),
            })
        }
    };
    Ok(out.with_precision_and_scale(MAX_PRECISION, scale)?)
}

/// The arithmetic operators over numerics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// The scale PostgreSQL gives `l op r` for operands with these scales.
pub fn result_scale(op: Op, l: i8, r: i8) -> i8 {
    match op {
        Op::Add | Op::Sub | Op::Rem => l.max(r),
        Op::Mul => (l + r).min(MAX_SCALE),
        Op::Div => l.max(r).max(DIVISION_SCALE),
    }
}

/// `l op r` element by element (both decimals), with `out` decimals.
pub fn arithmetic(op: Op, l: &Decimal128Array, r: &Decimal128Array, out: i8) -> Result<ArrayRef> {
    let (ls, rs) = (l.scale(), r.scale());
    let n = l.len().max(r.len());
    let at = |a: &Decimal128Array, i: usize| {
        let i = if a.len() == 1 { 0 } else { i };
        a.is_valid(i).then(|| a.value(i))
    };
    let wide = |v: i128| i256::from_i128(v);
    let narrow = |v: i256| v.to_i128().ok_or_else(overflow);
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let (Some(a), Some(b)) = (at(l, i), at(r, i)) else {
            values.push(None);
            continue;
        };
        let v = match op {
            Op::Add | Op::Sub | Op::Rem => {
                let common = ls.max(rs);
                let (a, b) = (rescale(a, ls, common)?, rescale(b, rs, common)?);
                let v = match op {
                    Op::Add => a.checked_add(b).ok_or_else(overflow)?,
                    Op::Sub => a.checked_sub(b).ok_or_else(overflow)?,
                    _ => {
                        if b == 0 {
                            return Err(Error::DivisionByZero);
                        }
                        a % b
                    }
                };
                rescale(v, common, out)?
            }
            Op::Mul => {
                let product = wide(a) * wide(b);
                narrow(rescale_wide(product, ls + rs, out)?)?
            }
            Op::Div => {
                if b == 0 {
                    return Err(Error::DivisionByZero);
                }
                // a / b with `out` decimals: (a * 10^(out + rs - ls)) / b, rounded.
                let shift = out as i32 + rs as i32 - ls as i32;
                let mut num = wide(a);
                let mut den = wide(b);
                if shift >= 0 {
                    num *= pow10_wide(shift as u32);
                } else {
                    den *= pow10_wide((-shift) as u32);
                }
                narrow(divide_rounded(num, den))?
            }
        };
        values.push(Some(v));
    }
    let array = Decimal128Array::from(values).with_precision_and_scale(MAX_PRECISION, out)?;
    Ok(Arc::new(array))
}

fn pow10_wide(n: u32) -> i256 {
    let mut v = i256::ONE;
    let ten = i256::from_i128(10);
    for _ in 0..n {
        v *= ten;
    }
    v
}

/// `num / den` rounded half away from zero.
fn divide_rounded(num: i256, den: i256) -> i256 {
    let (q, r) = (num / den, num % den);
    let twice = r.wrapping_abs() * i256::from_i128(2);
    if twice >= den.wrapping_abs() {
        let negative = (num < i256::ZERO) != (den < i256::ZERO);
        if negative {
            q - i256::ONE
        } else {
            q + i256::ONE
        }
    } else {
        q
    }
}

/// The variance (or, with `sqrt`, the standard deviation) of `count` values
/// whose sum is `sum` and sum of squares `sum_squares`, all with `scale`
/// decimals, as PostgreSQL computes it for integers and numerics: exactly, from
/// `(n·Σx² − (Σx)²) / (n·(n−1))` (or `n·n` for the population form), rounded
/// half away from zero to `out` decimals; a square root is taken of the exact
/// quotient, not of a rounded one. `None` where the result is NULL (no values,
/// or one value for the sample form); a zero or negative numerator is 0.
pub fn variance(
    count: i64,
    sum: i256,
    sum_squares: i256,
    scale: i8,
    sample: bool,
    sqrt: bool,
    out: i8,
) -> Result<Option<i128>> {
    if count == 0 || (sample && count == 1) {
        return Ok(None);
    }
    let n = i256::from_i128(count as i128);
    let overflow_wide = |v: Option<i256>| v.ok_or_else(overflow);
    let numerator = overflow_wide(
        n.checked_mul(sum_squares)
            .and_then(|a| sum.checked_mul(sum).and_then(|b| a.checked_sub(b))),
    )?;
    if numerator <= i256::ZERO {
        return Ok(Some(0));
    }
    let denominator = n * if sample { n - i256::ONE } else { n };
    // The numerator has 2·scale decimals; the quotient is wanted with `out`
    // decimals, or 2·out under a square root.
    let want = if sqrt { 2 * out as i32 } else { out as i32 };
    let shift = want - 2 * scale as i32;
    let (num, den) = if shift >= 0 {
        let num = overflow_wide(numerator.checked_mul(pow10_wide(shift as u32)))?;
        (num, denominator)
    } else {
        (numerator, denominator * pow10_wide((-shift) as u32))
    };
    let result = if sqrt {
        sqrt_rounded(num / den, num % den != i256::ZERO)
    } else {
        divide_rounded(num, den)
    };
    result.to_i128().map(Some).ok_or_else(overflow)
}

/// The square root of `v` (plus a fraction below one when `inexact`), rounded
/// half away from zero: Newton's iteration on integers.
fn sqrt_rounded(v: i256, inexact: bool) -> i256 {
    if v <= i256::ZERO {
        return i256::ZERO;
    }
    let two = i256::from_i128(2);
    // Start above the root (2^(bits/2 + 1)) so the iteration falls to it.
    let bits = 256 - v.leading_zeros();
    let mut x = i256::ONE << (bits / 2 + 1) as u8;
    loop {
        let next = (x + v / x) / two;
        if next >= x {
            break;
        }
        x = next;
    }
    // x = floor(sqrt(v)); round up when v (+ fraction) > x² + x, i.e. past x + ½.
    let rem = v - x * x;
    if rem > x || (rem == x && inexact) {
        x + i256::ONE
    } else {
        x
    }
}

fn rescale_wide(v: i256, from: i8, to: i8) -> Result<i256> {
    if to >= from {
        return Ok(v * pow10_wide((to - from) as u32));
    }
    Ok(divide_rounded(v, pow10_wide((from - to) as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero_as_postgresql() {
        assert_eq!(rescale(51_4757, 4, 2).unwrap(), 51_48);
        assert_eq!(rescale(25, 1, 0).unwrap(), 3);
        assert_eq!(rescale(-25, 1, 0).unwrap(), -3);
        assert_eq!(rescale(24, 1, 0).unwrap(), 2);
        assert_eq!(format(-5, 2), "-0.05");
        assert_eq!(format(12345, 2), "123.45");
        assert_eq!(format(7, 0), "7");
        assert_eq!(parse("51.4757048", 2).unwrap(), 5148);
        assert_eq!(parse("1e3", 0).unwrap(), 1000);
        assert_eq!(parse("-0.005", 2).unwrap(), -1);
        assert_eq!(text_scale("2.50"), 2);
        assert!(parse("1.2.3", 2).is_err());
    }

    #[test]
    fn divides_to_sixteen_decimals() {
        let a = Decimal128Array::from(vec![70])
            .with_precision_and_scale(38, 1)
            .unwrap();
        let b = Decimal128Array::from(vec![2])
            .with_precision_and_scale(38, 0)
            .unwrap();
        let q = arithmetic(Op::Div, &a, &b, result_scale(Op::Div, 1, 0)).unwrap();
        let q = q.as_primitive::<Decimal128Type>();
        assert_eq!(format(q.value(0), q.scale()), "3.5000000000000000");
        let one_third = arithmetic(
            Op::Div,
            &Decimal128Array::from(vec![1])
                .with_precision_and_scale(38, 0)
                .unwrap(),
            &Decimal128Array::from(vec![3])
                .with_precision_and_scale(38, 0)
                .unwrap(),
            16,
        )
        .unwrap();
        let t = one_third.as_primitive::<Decimal128Type>();
        assert_eq!(format(t.value(0), 16), "0.3333333333333333");
    }

    #[test]
    fn variance_is_exact_as_in_postgresql() {
        let w = |v: i128| i256::from_i128(v);
        // 1, 2, 4, 8: mean 3.75; sum of squared deviations 28.75.
        let (n, sum, sq) = (4, w(15), w(85));
        let var = variance(n, sum, sq, 0, true, false, 16).unwrap();
        assert_eq!(format(var.unwrap(), 16), "9.5833333333333333");
        // PostgreSQL: stddev of 1, 2, 4, 8 is 3.0956959368344517.
        let sd = variance(n, sum, sq, 0, true, true, 16).unwrap();
        assert_eq!(format(sd.unwrap(), 16), "3.0956959368344517");
        assert_eq!(variance(1, w(5), w(25), 0, true, false, 16).unwrap(), None);
        assert_eq!(
            variance(1, w(5), w(25), 0, false, true, 16).unwrap(),
            Some(0)
        );
        assert_eq!(sqrt_rounded(w(16), false), w(4));
        assert_eq!(sqrt_rounded(w(20), false), w(4)); // 4.47
        assert_eq!(sqrt_rounded(w(21), false), w(5)); // 4.58
        assert_eq!(sqrt_rounded(w(1), false), w(1));
    }
}
