//! Mathematical functions over double precision (and `mod` over integers),
//! with PostgreSQL's errors for arguments outside a function's domain.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int32Array};
use arrow::datatypes::{Float64Type, Int64Type};

use super::{Builtin, Type};
use crate::context::QueryContext;
use crate::error::{Error, Result};

const F: Type = Type::Float64;
const N: Type = Type::Numeric;

/// The math functions.
pub static FUNCTIONS: &[Builtin] = &[
    Builtin::new("power", &[F, F], F, power),
    Builtin::new("pow", &[F, F], F, power),
    Builtin::new("sqrt", &[F], F, sqrt),
    Builtin::new("cbrt", &[F], F, cbrt),
    Builtin::new("exp", &[F], F, exp),
    Builtin::new("ln", &[F], F, ln),
    Builtin::new("log", &[F], F, log10),
    Builtin::new("log10", &[F], F, log10),
    // PostgreSQL has log(b, x) for numeric only.
    Builtin::new("log", &[N, N], N, log_base),
    Builtin::new("trunc", &[F], F, trunc),
    Builtin::new("trunc", &[F, Type::Int64], F, trunc),
    Builtin::new("sign", &[F], F, sign),
    Builtin::new("pi", &[], F, pi),
    Builtin::new("degrees", &[F], F, degrees),
    Builtin::new("radians", &[F], F, radians),
    // Numeric arguments pick these, as in PostgreSQL (computed in double).
    Builtin::new("sqrt", &[N], N, sqrt),
    Builtin::new("exp", &[N], N, exp),
    Builtin::new("ln", &[N], N, ln),
    Builtin::new("log", &[N], N, log10),
    Builtin::new("log10", &[N], N, log10),
    Builtin::new("power", &[N, N], N, power),
    Builtin::new("pow", &[N, N], N, power),
    Builtin::new("trunc", &[N], N, trunc),
    Builtin::new("trunc", &[N, Type::Int64], N, trunc),
    Builtin::new("sign", &[N], N, sign),
    Builtin::new(
        "width_bucket",
        &[F, F, F, Type::Int64],
        Type::Int32,
        width_bucket,
    ),
];

fn float(a: &ArrayRef) -> &arrow::array::PrimitiveArray<Float64Type> {
    a.as_primitive::<Float64Type>()
}

/// A double result row by row, NULL where any argument is NULL.
fn float_rows(
    args: &[ArrayRef],
    rows: usize,
    mut f: impl FnMut(usize) -> Result<f64>,
) -> Result<ArrayRef> {
    let out = (0..rows)
        .map(|r| {
            if args.iter().any(|a| a.is_null(r)) {
                Ok(None)
            } else {
                f(r).map(Some)
            }
        })
        .collect::<Result<Float64Array>>()?;
    Ok(Arc::new(out))
}

fn unary(args: &[ArrayRef], rows: usize, f: impl Fn(f64) -> Result<f64>) -> Result<ArrayRef> {
    float_rows(args, rows, |r| f(float(&args[0]).value(r)))
}

fn domain(code: &'static str, message: &str) -> Error {
    Error::Data {
        code,
        message: message.into(),
    }
}

fn power(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    float_rows(args, rows, |r| {
        let (x, y) = (float(&args[0]).value(r), float(&args[1]).value(r));
        if x == 0.0 && y < 0.0 {
            return Err(domain(
                "2201F",
                "zero raised to a negative power is undefined",
            ));
        }
        if x < 0.0 && y.fract() != 0.0 {
            return Err(domain(
                "2201F",
                "a negative number raised to a non-integer power yields a complex result",
            ));
        }
        let v = x.powf(y);
        if v.is_infinite() && x.is_finite() && y.is_finite() {
            return Err(Error::NumericOutOfRange(
                "value out of range: overflow".into(),
            ));
        }
        Ok(v)
    })
}

fn sqrt(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| {
        if x < 0.0 {
            Err(domain(
                "2201F",
                "cannot take square root of a negative number",
            ))
        } else {
            Ok(x.sqrt())
        }
    })
}

fn cbrt(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| Ok(x.cbrt()))
}

fn exp(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| {
        let v = x.exp();
        if v.is_infinite() && x.is_finite() {
            Err(Error::NumericOutOfRange(
                "value out of range: overflow".into(),
            ))
        } else {
            Ok(v)
        }
    })
}

fn check_log(x: f64) -> Result<()> {
    if x == 0.0 {
        return Err(domain("2201E", "cannot take logarithm of zero"));
    }
    if x < 0.0 {
        return Err(domain(
            "2201E",
            "cannot take logarithm of a negative number",
        ));
    }
    Ok(())
}

fn ln(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| check_log(x).map(|_| x.ln()))
}

fn log10(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| check_log(x).map(|_| x.log10()))
}

fn log_base(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    float_rows(args, rows, |r| {
        let (b, x) = (float(&args[0]).value(r), float(&args[1]).value(r));
        check_log(b)?;
        check_log(x)?;
        if b == 1.0 {
            return Err(Error::DivisionByZero);
        }
        Ok(x.ln() / b.ln())
    })
}

fn trunc(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    float_rows(args, rows, |r| {
        let x = float(&args[0]).value(r);
        let digits = args
            .get(1)
            .map_or(0, |d| d.as_primitive::<Int64Type>().value(r))
            .clamp(-300, 300) as i32;
        let scale = 10f64.powi(digits);
        Ok((x * scale).trunc() / scale)
    })
}

fn sign(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| {
        Ok(if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        })
    })
}

fn pi(_: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    Ok(Arc::new(Float64Array::from(vec![
        std::f64::consts::PI;
        rows
    ])))
}

fn degrees(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| Ok(x.to_degrees()))
}

fn radians(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    unary(args, rows, |x| Ok(x.to_radians()))
}

/// width_bucket(x, low, high, count): which of `count` equal buckets over
/// [low, high) holds x; 0 below, count + 1 at or above.
fn width_bucket(args: &[ArrayRef], rows: usize, _: &QueryContext) -> Result<ArrayRef> {
    let out = (0..rows)
        .map(|r| {
            if args.iter().any(|a| a.is_null(r)) {
                return Ok(None);
            }
            let (x, lo, hi) = (
                float(&args[0]).value(r),
                float(&args[1]).value(r),
                float(&args[2]).value(r),
            );
            let n = args[3].as_primitive::<Int64Type>().value(r);
            if n <= 0 || n > i32::MAX as i64 - 1 {
                return Err(domain("2201G", "count must be greater than zero"));
            }
            if lo == hi {
                return Err(domain("2201G", "lower bound cannot equal upper bound"));
            }
            if !x.is_finite() && !x.is_infinite() || !lo.is_finite() || !hi.is_finite() {
                return Err(domain(
                    "2201G",
                    "operand, lower bound, and upper bound cannot be NaN",
                ));
            }
            let bucket = if lo < hi {
                if x < lo {
                    0
                } else if x >= hi {
                    n + 1
                } else {
                    ((n as f64) * (x - lo) / (hi - lo)).floor() as i64 + 1
                }
            } else if x > lo {
                0
            } else if x <= hi {
                n + 1
            } else {
                ((n as f64) * (lo - x) / (lo - hi)).floor() as i64 + 1
            };
            Ok(Some(bucket.min(n + 1) as i32))
        })
        .collect::<Result<Int32Array>>()?;
    Ok(Arc::new(out))
}
