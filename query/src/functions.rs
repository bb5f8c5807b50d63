//! Scalar functions. Each works on whole columns; when every argument is a constant
//! the work is done once and the result stays a constant.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::kernels::{boolean, cmp};
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, IntervalMonthDayNanoType, TimestampMicrosecondType,
};
use chrono::{Datelike, NaiveDate, Timelike};
use sluice_storage::types::{micros_to_datetime, MICROS_PER_DAY, MICROS_PER_SEC, UTC};

use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::eval::{null_as_false, select, ColumnarValue};
use crate::format::to_interval;
use crate::logical::{CatalogFunction, DateField, ScalarFunction};
use sluice_storage::zone::Zone;

/// Calls `func` on evaluated arguments over a batch of `rows` rows.
pub fn call(
    func: ScalarFunction,
    args: Vec<ColumnarValue>,
    rows: usize,
    ctx: &QueryContext,
) -> Result<ColumnarValue> {
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    // date_trunc('hour', ts) on every row of a dashboard's GROUP BY: the unit is
    // a constant, so parse it once and truncate the values in one tight loop.
    if let (ScalarFunction::DateTrunc, [ColumnarValue::Scalar(unit), ColumnarValue::Array(ts)]) =
        (func, args.as_slice())
    {
        let offset = ctx.options().zone;
        return Ok(ColumnarValue::Array(date_trunc_by_constant(
            unit, ts, offset,
        )?));
    }
    let n = if all_scalar { 1 } else { rows };
    let arrays = args
        .into_iter()
        .map(|a| a.into_array(n))
        .collect::<Result<Vec<_>>>()?;
    let out = call_arrays(func, &arrays, n, ctx)?;
    Ok(if all_scalar {
        ColumnarValue::Scalar(out)
    } else {
        ColumnarValue::Array(out)
    })
}

/// A numeric function applied value by value, the result with `scale` decimals.
fn decimal_map(a: &ArrayRef, scale: i8, f: impl Fn(i128) -> Result<i128>) -> Result<ArrayRef> {
    let out = a
        .as_primitive::<arrow::datatypes::Decimal128Type>()
        .iter()
        .map(|v| v.map(&f).transpose())
        .collect::<Result<arrow::array::Decimal128Array>>()?
        .with_precision_and_scale(crate::numeric::MAX_PRECISION, scale)?;
    Ok(Arc::new(out))
}

/// round(numeric [, digits]): half away from zero. With a constant digit
/// count (the binder's case for `round(x, 2)`) the result has that many
/// decimals; with varying ones, the argument's.
fn round_decimal(a: &ArrayRef, scale: i8, digits: Option<&ArrayRef>) -> Result<ArrayRef> {
    let digits = digits.map(|d| d.as_primitive::<Int64Type>());
    let constant = match digits {
        None => Some(0),
        Some(d) if d.null_count() == 0 && d.values().windows(2).all(|w| w[0] == w[1]) => {
            d.values().first().copied().or(Some(0))
        }
        Some(_) => None,
    };
    let out_scale = constant.map_or(scale, |d| {
        d.clamp(0, crate::numeric::MAX_SCALE as i64) as i8
    });
    let v = a.as_primitive::<arrow::datatypes::Decimal128Type>();
    let out = (0..v.len())
        .map(|r| {
            if v.is_null(r) || digits.is_some_and(|d| d.is_null(r)) {
                return Ok(None);
            }
            let d = digits
                .map_or(0, |d| d.value(r))
                .clamp(-38, crate::numeric::MAX_SCALE as i64) as i8;
            let rounded = crate::numeric::rescale(v.value(r), scale, d.min(scale))?;
            crate::numeric::rescale(rounded, d.min(scale), out_scale).map(Some)
        })
        .collect::<Result<arrow::array::Decimal128Array>>()?
        .with_precision_and_scale(crate::numeric::MAX_PRECISION, out_scale)?;
    Ok(Arc::new(out))
}

fn arg(args: &[ArrayRef], i: usize) -> Result<&ArrayRef> {
    args.get(i)
        .ok_or_else(|| Error::Internal(format!("missing argument {i}")))
}

fn call_arrays(
    func: ScalarFunction,
    args: &[ArrayRef],
    rows: usize,
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let offset = ctx.options().zone;
    Ok(match func {
        ScalarFunction::Lower => map_text(arg(args, 0)?, |s| s.to_lowercase()),
        ScalarFunction::Upper => map_text(arg(args, 0)?, |s| s.to_uppercase()),
        ScalarFunction::Length => {
            let a = arg(args, 0)?.as_string::<i32>();
            Arc::new(
                a.iter()
                    .map(|v| v.map(|s| s.chars().count() as i32))
                    .collect::<Int32Array>(),
            )
        }
        ScalarFunction::Concat => {
            let parts: Vec<&StringArray> = args.iter().map(|a| a.as_string::<i32>()).collect();
            Arc::new(
                (0..rows)
                    .map(|r| {
                        let mut s = String::new();
                        for p in &parts {
                            if p.is_valid(r) {
                                s.push_str(p.value(r));
                            }
                        }
                        Some(s)
                    })
                    .collect::<StringArray>(),
            )
        }
        ScalarFunction::Substring => substring(args, rows)?,
        ScalarFunction::Trim | ScalarFunction::LTrim | ScalarFunction::RTrim => {
            trim(func, args, rows)?
        }
        ScalarFunction::Replace => {
            let (s, from, to) = (
                arg(args, 0)?.as_string::<i32>(),
                arg(args, 1)?.as_string::<i32>(),
                arg(args, 2)?.as_string::<i32>(),
            );
            Arc::new(
                (0..rows)
                    .map(|r| {
                        if s.is_null(r) || from.is_null(r) || to.is_null(r) {
                            None
                        } else if from.value(r).is_empty() {
                            Some(s.value(r).to_string())
                        } else {
                            Some(s.value(r).replace(from.value(r), to.value(r)))
                        }
                    })
                    .collect::<StringArray>(),
            )
        }
        ScalarFunction::Left | ScalarFunction::Right => {
            let s = arg(args, 0)?.as_string::<i32>();
            let n = arg(args, 1)?.as_primitive::<Int64Type>();
            Arc::new(
                (0..rows)
                    .map(|r| {
                        if s.is_null(r) || n.is_null(r) {
                            return None;
                        }
                        let chars: Vec<char> = s.value(r).chars().collect();
                        let len = chars.len() as i64;
                        let k = n.value(r);
                        let take = if k >= 0 { k.min(len) } else { (len + k).max(0) } as usize;
                        Some(if func == ScalarFunction::Left {
                            chars[..take].iter().collect::<String>()
                        } else {
                            chars[chars.len() - take..].iter().collect::<String>()
                        })
                    })
                    .collect::<StringArray>(),
            )
        }
        ScalarFunction::Coalesce => {
            let mut acc = Arc::clone(arg(args, 0)?);
            for next in &args[1..] {
                let present = boolean::is_not_null(&acc)?;
                acc = select(&present, &acc, next)?;
            }
            acc
        }
        ScalarFunction::NullIf => {
            let (a, b) = (arg(args, 0)?, arg(args, 1)?);
            let eq = cmp::eq(a, b)?;
            let eq = null_as_false(&eq);
            let nulls = arrow::array::new_null_array(a.data_type(), a.len());
            select(&eq, &nulls, a)?
        }
        ScalarFunction::Greatest | ScalarFunction::Least => {
            let mut acc = Arc::clone(arg(args, 0)?);
            for next in &args[1..] {
                let better = if func == ScalarFunction::Greatest {
                    cmp::gt(next, &acc)?
                } else {
                    cmp::lt(next, &acc)?
                };
                // NULLs are ignored: take `next` where acc is NULL or next is better.
                let take_next = boolean::or(&null_as_false(&better), &boolean::is_null(&acc)?)?;
                acc = select(&take_next, next, &acc)?;
            }
            acc
        }
        ScalarFunction::Abs => match arg(args, 0)?.data_type() {
            DataType::Float64 => float_map(arg(args, 0)?, f64::abs),
            DataType::Decimal128(_, s) => decimal_map(arg(args, 0)?, *s, |v| Ok(v.abs()))?,
            DataType::Int32 => {
                let a = arg(args, 0)?.as_primitive::<Int32Type>();
                Arc::new(
                    a.iter()
                        .map(|v| v.map(|x| x.checked_abs().ok_or_else(overflow)).transpose())
                        .collect::<Result<Int32Array>>()?,
                )
            }
            _ => {
                let a = arg(args, 0)?.as_primitive::<Int64Type>();
                Arc::new(
                    a.iter()
                        .map(|v| v.map(|x| x.checked_abs().ok_or_else(overflow)).transpose())
                        .collect::<Result<Int64Array>>()?,
                )
            }
        },
        ScalarFunction::Round => {
            let a = arg(args, 0)?;
            if let DataType::Decimal128(_, scale) = a.data_type() {
                return round_decimal(a, *scale, args.get(1));
            }
            if a.data_type() != &DataType::Float64 {
                return Ok(Arc::clone(a));
            }
            let digits = args.get(1).map(|d| d.as_primitive::<Int64Type>());
            let v = a.as_primitive::<Float64Type>();
            Arc::new(
                (0..rows)
                    .map(|r| {
                        if v.is_null(r) || digits.is_some_and(|d| d.is_null(r)) {
                            return None;
                        }
                        // round(double) rounds half to even, as PostgreSQL's
                        // rint does. (round(double, n) is Sluice's: PostgreSQL
                        // has it for numeric only, which rounds half away.)
                        let Some(d) = digits else {
                            return Some(v.value(r).round_ties_even());
                        };
                        let d = d.value(r).clamp(-300, 300) as i32;
                        let scale = 10f64.powi(d);
                        Some((v.value(r) * scale).round() / scale)
                    })
                    .collect::<Float64Array>(),
            )
        }
        ScalarFunction::Floor => match arg(args, 0)?.data_type() {
            DataType::Float64 => float_map(arg(args, 0)?, f64::floor),
            DataType::Decimal128(_, s) => decimal_map(arg(args, 0)?, 0, |v| {
                let unit = crate::numeric::pow10(*s as u32);
                Ok(v.div_euclid(unit))
            })?,
            _ => Arc::clone(arg(args, 0)?),
        },
        ScalarFunction::Ceil => match arg(args, 0)?.data_type() {
            DataType::Float64 => float_map(arg(args, 0)?, f64::ceil),
            DataType::Decimal128(_, s) => decimal_map(arg(args, 0)?, 0, |v| {
                let unit = crate::numeric::pow10(*s as u32);
                Ok(-(-v).div_euclid(unit))
            })?,
            _ => Arc::clone(arg(args, 0)?),
        },
        ScalarFunction::DateTrunc => date_trunc(arg(args, 0)?, arg(args, 1)?, rows, offset)?,
        ScalarFunction::Extract(field) => date_part(field, arg(args, 0)?, false, offset)?,
        ScalarFunction::DatePart(field) => date_part(field, arg(args, 0)?, true, offset)?,
        ScalarFunction::Catalog(f) => catalog_function(f, args, rows, ctx)?,
        ScalarFunction::Builtin(b) => {
            use crate::builtins::Type as T;
            let args = args
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let a = crate::eval::decode_dictionary(a)?;
                    // Numeric overloads run their double kernels.
                    if b.arg_type(i) == T::Numeric {
                        return Ok(arrow::compute::cast(&a, &DataType::Float64)?);
                    }
                    Ok(a)
                })
                .collect::<Result<Vec<_>>>()?;
            let out = (b.kernel)(&args, rows, ctx)?;
            if b.returns == T::Numeric {
                Arc::new(crate::numeric::to_decimal(
                    &out,
                    crate::numeric::DIVISION_SCALE,
                )?)
            } else {
                out
            }
        }
        ScalarFunction::MakeArray => {
            let element = args
                .first()
                .map_or(DataType::Utf8, |a| a.data_type().clone());
            crate::array::make_array(args, &element, rows)?
        }
        ScalarFunction::ArraySubscript => {
            crate::array::element_at(arg(args, 0)?, arg(args, 1)?, rows)?
        }
        ScalarFunction::ToTimestamp => {
            let a = arg(args, 0)?.as_primitive::<Float64Type>();
            Arc::new(
                a.iter()
                    .map(|v| v.map(|s| (s * MICROS_PER_SEC as f64).round() as i64))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone(UTC),
            )
        }
    })
}

/// The catalog functions PostgreSQL clients call (see [`CatalogFunction`]).
fn catalog_function(
    f: CatalogFunction,
    args: &[ArrayRef],
    rows: usize,
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    use crate::catalog;
    let oids = |i: usize| -> Result<Vec<Option<i64>>> {
        let a = arrow::compute::cast(arg(args, i)?, &DataType::Int64)?;
        Ok(a.as_primitive::<Int64Type>().iter().collect())
    };
    let texts = |i: usize| -> Result<Vec<Option<String>>> {
        // An array argument may be a list or its text form.
        let a = crate::cast::cast_array(arg(args, i)?, &DataType::Utf8, ctx.options().zone)?;
        Ok(a.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let cat = ctx.catalog();
    Ok(match f {
        CatalogFunction::FormatType => {
            let typmods = if args.len() > 1 {
                oids(1)?
            } else {
                vec![None; rows]
            };
            Arc::new(
                oids(0)?
                    .into_iter()
                    .zip(typmods)
                    .map(|(o, m)| {
                        o.map(|o| catalog::format_type_mod(o, m).unwrap_or_else(|| "???".into()))
                    })
                    .collect::<StringArray>(),
            )
        }
        CatalogFunction::TableIsVisible | CatalogFunction::HasPrivilege => {
            Arc::new(arrow::array::BooleanArray::from(vec![true; rows]))
        }
        CatalogFunction::GetUserById => Arc::new(StringArray::from(vec![ctx.user(); rows])),
        CatalogFunction::EncodingToChar => Arc::new(StringArray::from(vec!["UTF8"; rows])),
        CatalogFunction::NullText => arrow::array::new_null_array(&DataType::Utf8, rows),
        CatalogFunction::ConstraintDef | CatalogFunction::IndexDef => Arc::new(
            oids(0)?
                .into_iter()
                .map(|o| {
                    o.zip(cat).and_then(|(o, c)| {
                        catalog::primary_key_definition(c, o, f == CatalogFunction::IndexDef)
                    })
                })
                .collect::<StringArray>(),
        ),
        CatalogFunction::QuoteIdent => Arc::new(
            texts(0)?
                .into_iter()
                .map(|t| t.map(|t| quote_ident(&t)))
                .collect::<StringArray>(),
        ),
        CatalogFunction::RegclassOid => Arc::new(
            texts(0)?
                .into_iter()
                .map(|t| {
                    t.map(|t| {
                        cat.and_then(|c| catalog::table_oid_by_name(c, &t))
                            .ok_or_else(|| Error::UndefinedTable(t.clone()))
                    })
                    .transpose()
                })
                .collect::<Result<Int64Array>>()?
                .unary::<_, arrow::datatypes::UInt32Type>(|v| v as u32),
        ),
        CatalogFunction::RegtypeOid => Arc::new(
            texts(0)?
                .into_iter()
                .map(|t| {
                    t.map(|t| {
                        catalog::type_oid_by_name(&t).ok_or_else(|| {
                            Error::UndefinedFunction(format!("type \"{t}\" does not exist"))
                        })
                    })
                    .transpose()
                })
                .collect::<Result<Int64Array>>()?
                .unary::<_, arrow::datatypes::UInt32Type>(|v| v as u32),
        ),
        CatalogFunction::JsonBuildObject => {
            let mut out = Vec::with_capacity(rows);
            for r in 0..rows {
                let mut fields = Vec::new();
                for pair in args.chunks(2) {
                    let key = crate::format::format_value(
                        pair[0].as_ref(),
                        r,
                        sluice_storage::zone::Zone::UTC,
                    )?
                    .unwrap_or_default();
                    let value = match pair.get(1) {
                        Some(v) => json_value(v.as_ref(), r)?,
                        None => "null".to_string(),
                    };
                    fields.push(format!("{} : {value}", json_string(&key)));
                }
                out.push(Some(format!("{{{}}}", fields.join(", "))));
            }
            Arc::new(StringArray::from(out))
        }
        CatalogFunction::ToRegclass => Arc::new(
            texts(0)?
                .into_iter()
                .map(|t| {
                    t.and_then(|t| cat.and_then(|c| catalog::table_oid_by_name(c, &t)))
                        .map(|o| o as u32)
                })
                .collect::<arrow::array::UInt32Array>(),
        ),
        CatalogFunction::ToRegtype => Arc::new(
            texts(0)?
                .into_iter()
                .map(|t| {
                    t.and_then(|t| catalog::type_oid_by_name(&t))
                        .map(|o| o as u32)
                })
                .collect::<arrow::array::UInt32Array>(),
        ),
        CatalogFunction::RelationSize => Arc::new(Int64Array::from(vec![0i64; rows])),
        CatalogFunction::ArrayContains => {
            let (needles, arrays) = (texts(0)?, texts(1)?);
            Arc::new(
                needles
                    .into_iter()
                    .zip(arrays)
                    .map(|(n, a)| {
                        let (n, a) = (n?, a?);
                        let items = crate::binder::parse_array_text(&a);
                        if items.iter().any(|i| i.as_deref() == Some(n.as_str())) {
                            Some(true)
                        } else if items.iter().any(Option::is_none) {
                            None
                        } else {
                            Some(false)
                        }
                    })
                    .collect::<arrow::array::BooleanArray>(),
            )
        }
        CatalogFunction::ArrayLength | CatalogFunction::ArrayLower => Arc::new(
            texts(0)?
                .into_iter()
                .map(|a| {
                    let n = crate::binder::parse_array_text(&a?).len() as i32;
                    (n > 0).then_some(if f == CatalogFunction::ArrayLower {
                        1
                    } else {
                        n
                    })
                })
                .collect::<Int32Array>(),
        ),
        CatalogFunction::ArrayElement => {
            let index = oids(1)?;
            Arc::new(
                texts(0)?
                    .into_iter()
                    .zip(index)
                    .map(|(a, i)| {
                        let items = crate::binder::parse_array_text(&a?);
                        let i = usize::try_from(i?).ok()?.checked_sub(1)?;
                        items.into_iter().nth(i).flatten()
                    })
                    .collect::<StringArray>(),
            )
        }
        CatalogFunction::AlwaysFalse => {
            Arc::new(arrow::array::BooleanArray::from(vec![false; rows]))
        }
        CatalogFunction::StringToArray => {
            let (values, seps) = (texts(0)?, texts(1)?);
            let rows = values
                .into_iter()
                .zip(seps)
                .map(|(v, sep)| {
                    let v = v?;
                    Some(match sep {
                        // PostgreSQL: an empty string is an empty array.
                        _ if v.is_empty() => Vec::new(),
                        Some(sep) if !sep.is_empty() => {
                            v.split(sep.as_str()).map(|p| Some(p.to_string())).collect()
                        }
                        // A NULL or empty separator splits into characters.
                        _ => v.chars().map(|c| Some(c.to_string())).collect(),
                    })
                })
                .collect();
            crate::array::from_texts(rows, &DataType::Utf8, ctx.options().zone)?
        }
        CatalogFunction::ParseIdent => Arc::new(
            texts(0)?
                .into_iter()
                .map(|v| {
                    let parts: Vec<String> = split_identifier(&v?)
                        .iter()
                        .map(|p| crate::aggregate::accumulators::array_item_text(Some(p)))
                        .collect();
                    Some(format!("{{{}}}", parts.join(",")))
                })
                .collect::<StringArray>(),
        ),
        CatalogFunction::ArrayToString => {
            let (arrays, seps) = (texts(0)?, texts(1)?);
            Arc::new(
                arrays
                    .into_iter()
                    .zip(seps)
                    .map(|(a, sep)| {
                        let (a, sep) = (a?, sep?);
                        let items: Vec<String> = crate::binder::parse_array_text(&a)
                            .into_iter()
                            .flatten()
                            .collect();
                        Some(items.join(&sep))
                    })
                    .collect::<StringArray>(),
            )
        }
        CatalogFunction::CancelBackend | CatalogFunction::TerminateBackend => {
            let pids = oids(0)?;
            let users = texts(1)?;
            let admin = arg(args, 2)?.as_boolean();
            let activity = crate::activity::activity();
            Arc::new(
                pids.into_iter()
                    .enumerate()
                    .map(|(i, pid)| {
                        let pid = i32::try_from(pid?).ok()?;
                        let at = |n: usize| if n == 1 { 0 } else { i };
                        let user = users.get(at(users.len()))?.clone()?;
                        let admin = admin.value(at(admin.len()));
                        Some(if f == CatalogFunction::CancelBackend {
                            activity.cancel(pid, &user, admin)
                        } else {
                            activity.terminate(pid, &user, admin)
                        })
                    })
                    .collect::<arrow::array::BooleanArray>(),
            )
        }
        CatalogFunction::SizePretty => Arc::new(
            oids(0)?
                .into_iter()
                .map(|b| b.map(size_pretty))
                .collect::<StringArray>(),
        ),
    })
}

/// The parts of a possibly qualified, possibly quoted name: `a."B c".d` -> a, B c, d.
fn split_identifier(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One value as JSON: numbers and booleans bare, NULL as null, the rest as strings.
fn json_value(a: &dyn Array, row: usize) -> Result<String> {
    Ok(
        match crate::format::format_value(a, row, sluice_storage::zone::Zone::UTC)? {
            None => "null".into(),
            Some(t) => match a.data_type() {
                DataType::Int32 | DataType::Int64 | DataType::Float64 => t,
                DataType::Boolean => {
                    if t == "t" {
                        "true".into()
                    } else {
                        "false".into()
                    }
                }
                _ => json_string(&t),
            },
        },
    )
}

/// `quote_ident`: quotes a name unless it is a plain lower-case identifier.
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn size_pretty(bytes: i64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v.abs() >= 10.0 * 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", v.round() as i64, units[u])
}

fn overflow() -> Error {
    Error::NumericOutOfRange("integer out of range".into())
}

fn map_text(a: &ArrayRef, f: impl Fn(&str) -> String) -> ArrayRef {
    Arc::new(
        a.as_string::<i32>()
            .iter()
            .map(|v| v.map(&f))
            .collect::<StringArray>(),
    )
}

fn float_map(a: &ArrayRef, f: impl Fn(f64) -> f64) -> ArrayRef {
    let out: Float64Array = a.as_primitive::<Float64Type>().unary(f);
    Arc::new(out)
}

/// `substring(s FROM start [FOR count])` with PostgreSQL's rules: 1-based character
/// positions; a start before 1 eats into the count.
fn substring(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let s = arg(args, 0)?.as_string::<i32>();
    let start = arg(args, 1)?.as_primitive::<Int64Type>();
    let count = args.get(2).map(|c| c.as_primitive::<Int64Type>());
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        if s.is_null(r) || start.is_null(r) || count.is_some_and(|c| c.is_null(r)) {
            out.push(None);
            continue;
        }
        let from = start.value(r);
        let end = match count {
            Some(c) => {
                let n = c.value(r);
                if n < 0 {
                    return Err(Error::InvalidParameter(
                        "negative substring length not allowed".into(),
                    ));
                }
                Some(from.saturating_add(n))
            }
            None => None,
        };
        let lo = from.max(1) as usize - 1;
        let text: String = match end {
            Some(e) if e <= 1 => String::new(),
            Some(e) => s
                .value(r)
                .chars()
                .skip(lo)
                .take((e - 1) as usize - lo.min((e - 1) as usize))
                .collect(),
            None => s.value(r).chars().skip(lo).collect(),
        };
        out.push(Some(text));
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn trim(func: ScalarFunction, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let s = arg(args, 0)?.as_string::<i32>();
    let chars = args.get(1).map(|c| c.as_string::<i32>());
    let out: StringArray = (0..rows)
        .map(|r| {
            if s.is_null(r) || chars.is_some_and(|c| c.is_null(r)) {
                return None;
            }
            let set: Vec<char> = chars.map_or(vec![' '], |c| c.value(r).chars().collect());
            let pred = |c: char| set.contains(&c);
            let v = s.value(r);
            Some(match func {
                ScalarFunction::LTrim => v.trim_start_matches(pred).to_string(),
                ScalarFunction::RTrim => v.trim_end_matches(pred).to_string(),
                _ => v.trim_matches(pred).to_string(),
            })
        })
        .collect();
    Ok(Arc::new(out))
}

/// The time zone of a timestamp argument of date_trunc, and the zone its
/// values are truncated in: the session's for a TIMESTAMPTZ (truncation
/// happens on local time, and the result is that local time's instant), none
/// for a TIMESTAMP.
fn date_trunc_zone(ts: &ArrayRef, zone: Zone) -> Result<(Option<Arc<str>>, Option<Zone>)> {
    match ts.data_type() {
        DataType::Timestamp(_, tz) => Ok((tz.clone(), tz.is_some().then_some(zone))),
        other => Err(Error::undefined_function(format!(
            "function date_trunc(unknown, {}) does not exist",
            crate::format::sql_type_name(other)
        ))),
    }
}

/// Truncates `micros` to `field`, in `zone`'s local time when there is one.
fn truncate_in(micros: i64, field: DateField, zone: Option<Zone>) -> Result<i64> {
    match zone {
        None => truncate_micros(micros, field),
        Some(z) => Ok(z.to_utc(truncate_micros(z.to_local(micros), field)?)),
    }
}

/// date_trunc with a constant unit (`unit` has one row) over a column.
fn date_trunc_by_constant(unit: &ArrayRef, ts: &ArrayRef, zone: Zone) -> Result<ArrayRef> {
    let (tz, local) = date_trunc_zone(ts, zone)?;
    let units = unit.as_string::<i32>();
    if units.is_empty() || units.is_null(0) {
        return Ok(arrow::array::new_null_array(ts.data_type(), ts.len()));
    }
    let field = DateField::parse(units.value(0)).ok_or_else(|| {
        Error::InvalidParameter(format!(
            "unit \"{}\" not recognized for type timestamp",
            units.value(0)
        ))
    })?;
    let values = ts.as_primitive::<TimestampMicrosecondType>();
    let mut out = Vec::with_capacity(values.len());
    for (i, &v) in values.values().iter().enumerate() {
        // A NULL slot holds an arbitrary value: never truncate it (it could be
        // out of the calendar's range).
        out.push(if values.is_null(i) {
            0
        } else {
            truncate_in(v, field, local)?
        });
    }
    Ok(Arc::new(
        TimestampMicrosecondArray::new(out.into(), values.nulls().cloned()).with_timezone_opt(tz),
    ))
}

fn date_trunc(unit: &ArrayRef, ts: &ArrayRef, rows: usize, zone: Zone) -> Result<ArrayRef> {
    let units = unit.as_string::<i32>();
    let (tz, local) = date_trunc_zone(ts, zone)?;
    let values = ts.as_primitive::<TimestampMicrosecondType>();
    let mut out = Vec::with_capacity(rows);
    // The unit is nearly always one literal: parse it once, not once a row.
    let mut parsed: Option<(&str, DateField)> = None;
    for r in 0..rows {
        if units.is_null(r) || values.is_null(r) {
            out.push(None);
            continue;
        }
        let unit = units.value(r);
        let field = match parsed {
            Some((u, f)) if u == unit => f,
            _ => {
                let f = DateField::parse(unit).ok_or_else(|| {
                    Error::InvalidParameter(format!(
                        "unit \"{unit}\" not recognized for type timestamp"
                    ))
                })?;
                parsed = Some((unit, f));
                f
            }
        };
        out.push(Some(truncate_in(values.value(r), field, local)?));
    }
    Ok(Arc::new(
        TimestampMicrosecondArray::from(out).with_timezone_opt(tz),
    ))
}

fn truncate_micros(micros: i64, field: DateField) -> Result<i64> {
    let floor_to = |unit: i64| micros.div_euclid(unit) * unit;
    // Fixed-width units need no calendar.
    match field {
        DateField::Microseconds => return Ok(micros),
        DateField::Milliseconds => return Ok(floor_to(1000)),
        DateField::Second => return Ok(floor_to(MICROS_PER_SEC)),
        DateField::Minute => return Ok(floor_to(60 * MICROS_PER_SEC)),
        DateField::Hour => return Ok(floor_to(3600 * MICROS_PER_SEC)),
        DateField::Day => return Ok(floor_to(MICROS_PER_DAY)),
        _ => {}
    }
    let dt = micros_to_datetime(micros)
        .ok_or_else(|| Error::NumericOutOfRange("timestamp out of range".into()))?;
    let date_micros = |d: Option<NaiveDate>| -> Result<i64> {
        d.and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp_micros())
            .ok_or_else(|| Error::NumericOutOfRange("timestamp out of range".into()))
    };
    let year = dt.year();
    Ok(match field {
        DateField::Week => {
            let days_from_monday = dt.weekday().num_days_from_monday() as i64;
            floor_to(MICROS_PER_DAY) - days_from_monday * MICROS_PER_DAY
        }
        DateField::Month => date_micros(NaiveDate::from_ymd_opt(year, dt.month(), 1))?,
        DateField::Quarter => {
            date_micros(NaiveDate::from_ymd_opt(year, (dt.month0() / 3) * 3 + 1, 1))?
        }
        DateField::Year => date_micros(NaiveDate::from_ymd_opt(year, 1, 1))?,
        DateField::Decade => date_micros(NaiveDate::from_ymd_opt(year.div_euclid(10) * 10, 1, 1))?,
        DateField::Century => date_micros(NaiveDate::from_ymd_opt(
            (year - 1).div_euclid(100) * 100 + 1,
            1,
            1,
        ))?,
        DateField::Millennium => date_micros(NaiveDate::from_ymd_opt(
            (year - 1).div_euclid(1000) * 1000 + 1,
            1,
            1,
        ))?,
        other => {
            return Err(Error::InvalidParameter(format!(
                "unit \"{other:?}\" not supported for type timestamp"
            )))
        }
    })
}

/// EXTRACT (`as_double` = false: bigint for whole fields, double for fractional ones)
/// and date_part (`as_double` = true) on timestamps and intervals.
fn date_part(field: DateField, input: &ArrayRef, as_double: bool, zone: Zone) -> Result<ArrayRef> {
    let values: Vec<Option<f64>> = match input.data_type() {
        DataType::Timestamp(_, tz) => {
            let local = |m: i64| if tz.is_some() { zone.to_local(m) } else { m };
            let a = input.as_primitive::<TimestampMicrosecondType>();
            a.iter()
                .map(|v| v.map(|m| timestamp_field(local(m), m, field)).transpose())
                .collect::<Result<_>>()?
        }
        DataType::Date32 => {
            let a = input.as_primitive::<arrow::datatypes::Date32Type>();
            a.iter()
                .map(|v| {
                    v.map(|d| {
                        let m = d as i64 * MICROS_PER_DAY;
                        timestamp_field(m, m, field)
                    })
                    .transpose()
                })
                .collect::<Result<_>>()?
        }
        DataType::Interval(_) => {
            let a = input.as_primitive::<IntervalMonthDayNanoType>();
            a.iter()
                .map(|v| {
                    v.map(|iv| interval_field(&to_interval(iv), field))
                        .transpose()
                })
                .collect::<Result<_>>()?
        }
        other => {
            return Err(Error::undefined_function(format!(
                "function extract(unknown, {}) does not exist",
                crate::format::sql_type_name(other)
            )))
        }
    };
    if as_double {
        return Ok(Arc::new(Float64Array::from(values)));
    }
    // EXTRACT is numeric (PostgreSQL 14 and later): seconds and epochs to the
    // microsecond, milliseconds to the microsecond too, other fields whole.
    let scale = field.extract_scale();
    if let (DateField::Epoch, DataType::Timestamp(..)) = (field, input.data_type()) {
        // Exactly, from the microseconds (a double would round the last digits).
        let micros = input.as_primitive::<TimestampMicrosecondType>();
        let out = micros
            .iter()
            .map(|v| v.map(i128::from))
            .collect::<arrow::array::Decimal128Array>()
            .with_precision_and_scale(crate::numeric::MAX_PRECISION, 6)?;
        return Ok(Arc::new(out));
    }
    let floats: ArrayRef = Arc::new(Float64Array::from(values));
    Ok(Arc::new(crate::numeric::to_decimal(&floats, scale)?))
}

fn timestamp_field(local_micros: i64, utc_micros: i64, field: DateField) -> Result<f64> {
    let dt = micros_to_datetime(local_micros)
        .ok_or_else(|| Error::NumericOutOfRange("timestamp out of range".into()))?;
    let sec_micros = dt.second() as i64 * MICROS_PER_SEC + (dt.nanosecond() / 1000) as i64;
    let year = dt.year() as f64;
    Ok(match field {
        DateField::Microseconds => sec_micros as f64,
        DateField::Milliseconds => sec_micros as f64 / 1000.0,
        DateField::Second => sec_micros as f64 / 1e6,
        DateField::Minute => dt.minute() as f64,
        DateField::Hour => dt.hour() as f64,
        DateField::Day => dt.day() as f64,
        DateField::Week => dt.iso_week().week() as f64,
        DateField::Month => dt.month() as f64,
        DateField::Quarter => (dt.month0() / 3 + 1) as f64,
        DateField::Year => year,
        DateField::Decade => (year / 10.0).floor(),
        DateField::Century => ((year - 1.0) / 100.0).floor() + 1.0,
        DateField::Millennium => ((year - 1.0) / 1000.0).floor() + 1.0,
        DateField::Dow => dt.weekday().num_days_from_sunday() as f64,
        DateField::IsoDow => dt.weekday().number_from_monday() as f64,
        DateField::Doy => dt.ordinal() as f64,
        DateField::IsoYear => dt.iso_week().year() as f64,
        DateField::Epoch => utc_micros as f64 / 1e6,
    })
}

fn interval_field(iv: &sluice_storage::Interval, field: DateField) -> Result<f64> {
    Ok(match field {
        DateField::Epoch => iv.epoch_seconds(),
        DateField::Microseconds => (iv.micros % 60_000_000) as f64,
        DateField::Milliseconds => (iv.micros % 60_000_000) as f64 / 1000.0,
        DateField::Second => (iv.micros % 60_000_000) as f64 / 1e6,
        DateField::Minute => ((iv.micros / 60_000_000) % 60) as f64,
        DateField::Hour => (iv.micros / 3_600_000_000) as f64,
        DateField::Day => iv.days as f64,
        DateField::Month => (iv.months % 12) as f64,
        DateField::Quarter => ((iv.months % 12) / 3 + 1) as f64,
        DateField::Year => (iv.months / 12) as f64,
        DateField::Decade => (iv.months / 120) as f64,
        DateField::Century => (iv.months / 1200) as f64,
        DateField::Millennium => (iv.months / 12000) as f64,
        other => {
            return Err(Error::InvalidParameter(format!(
                "unit \"{other:?}\" not supported for type interval"
            )));
        }
    })
}
