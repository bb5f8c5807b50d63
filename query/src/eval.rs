//! Vectorised evaluation of bound expressions over Arrow record batches, with the
//! Arrow compute kernels doing the work. Constants stay one-row "scalars" until an
//! operation needs a full column, so `x = 42` never builds a column of 42s.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, IntervalMonthDayNanoArray, RecordBatch, Scalar,
    UInt32Array,
};
use arrow::compute::kernels::{boolean, cmp, comparison, concat_elements, numeric, zip};
use arrow::compute::{interleave, prep_null_mask_filter};
use arrow::datatypes::{DataType, DurationMicrosecondType, IntervalMonthDayNano, TimeUnit};

use crate::cast::cast_array;
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::functions;
use crate::logical::{BinaryOp, Expr};

/// The value of an expression over a batch: a full column, or one value for all rows.
#[derive(Clone, Debug)]
pub enum ColumnarValue {
    /// One value per row.
    Array(ArrayRef),
    /// The same value for every row, as a one-row array.
    Scalar(ArrayRef),
}

impl ColumnarValue {
    /// The value as a column of `rows` rows.
    pub fn into_array(self, rows: usize) -> Result<ArrayRef> {
        match self {
            ColumnarValue::Array(a) => Ok(a),
            ColumnarValue::Scalar(s) => repeat(&s, rows),
        }
    }

    /// The value's type.
    pub fn data_type(&self) -> &DataType {
        match self {
            ColumnarValue::Array(a) | ColumnarValue::Scalar(a) => a.data_type(),
        }
    }

    fn datum(&self) -> Box<dyn arrow::array::Datum + '_> {
        match self {
            ColumnarValue::Array(a) => Box::new(a),
            ColumnarValue::Scalar(s) => Box::new(Scalar::new(s)),
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, ColumnarValue::Scalar(_))
    }
}

/// A column of `rows` copies of the first value of `one`.
pub fn repeat(one: &ArrayRef, rows: usize) -> Result<ArrayRef> {
    let idx = UInt32Array::from(vec![0u32; rows]);
    Ok(arrow::compute::take(one.as_ref(), &idx, None)?)
}

/// Evaluates `expr` over `batch` into a column of `batch.num_rows()` rows.
/// Dictionary-encoded input columns are decoded first.
pub fn evaluate(expr: &Expr, batch: &RecordBatch, ctx: &QueryContext) -> Result<ArrayRef> {
    evaluate_value(expr, batch, ctx)?.into_array(batch.num_rows())
}

/// Evaluates a predicate into a selection mask where NULL counts as false.
pub fn evaluate_predicate(
    expr: &Expr,
    batch: &RecordBatch,
    ctx: &QueryContext,
) -> Result<BooleanArray> {
    let array = evaluate(expr, batch, ctx)?;
    let mask = array
        .as_boolean_opt()
        .ok_or_else(|| Error::Internal(format!("predicate yielded {}", array.data_type())))?;
    Ok(null_as_false(mask))
}

/// A copy of `mask` with NULL turned into false (SQL's WHERE semantics).
pub fn null_as_false(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    }
}

/// Decodes a dictionary-encoded array to its plain value type; other arrays pass through.
pub fn decode_dictionary(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Dictionary(_, value) => Ok(arrow::compute::cast(array, value)?),
        _ => Ok(Arc::clone(array)),
    }
}

/// Evaluates `expr`, keeping constants as scalars.
pub fn evaluate_value(
    expr: &Expr,
    batch: &RecordBatch,
    ctx: &QueryContext,
) -> Result<ColumnarValue> {
    crate::binder::grow_stack(|| evaluate_nested(expr, batch, ctx))
}

fn evaluate_nested(expr: &Expr, batch: &RecordBatch, ctx: &QueryContext) -> Result<ColumnarValue> {
    let eval = |e: &Expr| evaluate_value(e, batch, ctx);
    let rows = batch.num_rows();
    Ok(match expr {
        Expr::Column(i) => {
            let col = batch
                .columns()
                .get(*i)
                .ok_or_else(|| Error::Internal(format!("column {i} out of range")))?;
            ColumnarValue::Array(decode_dictionary(col)?)
        }
        Expr::Literal(l) => ColumnarValue::Scalar(Arc::clone(&l.value)),
        Expr::Binary {
            op: op @ (BinaryOp::And | BinaryOp::Or),
            left,
            right,
        } => short_circuit(*op, eval(left)?, right, batch, ctx)?,
        Expr::Binary { op, left, right } => binary(*op, eval(left)?, eval(right)?, rows)?,
        Expr::Not(e) => unary(eval(e)?, |a| Ok(Arc::new(boolean::not(as_bool(a)?)?)))?,
        Expr::Negate(e) => unary(eval(e)?, |a| Ok(numeric::neg(a)?))?,
        Expr::IsNull { expr, negated } => {
            let v = eval(expr)?;
            let negated = *negated;
            unary(v, move |a| {
                let r = if negated {
                    boolean::is_not_null(a)?
                } else {
                    boolean::is_null(a)?
                };
                Ok(Arc::new(r))
            })?
        }
        Expr::Like {
            expr,
            pattern,
            negated,
            case_insensitive,
        } => {
            let (v, p) = (eval(expr)?, eval(pattern)?);
            let both_scalar = v.is_scalar() && p.is_scalar();
            let (l, r) = (v.datum(), p.datum());
            let out = match (negated, case_insensitive) {
                (false, false) => comparison::like(l.as_ref(), r.as_ref())?,
                (false, true) => comparison::ilike(l.as_ref(), r.as_ref())?,
                (true, false) => comparison::nlike(l.as_ref(), r.as_ref())?,
                (true, true) => comparison::nilike(l.as_ref(), r.as_ref())?,
            };
            wrap(Arc::new(out), both_scalar)
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr)?;
            let mut acc: Option<ColumnarValue> = None;
            for item in list {
                let eq = binary(BinaryOp::Eq, v.clone(), eval(item)?, rows)?;
                acc = Some(match acc {
                    None => eq,
                    Some(prev) => binary(BinaryOp::Or, prev, eq, rows)?,
                });
            }
            let acc = acc.ok_or_else(|| Error::Internal("empty IN list".into()))?;
            if *negated {
                unary(acc, |a| Ok(Arc::new(boolean::not(as_bool(a)?)?)))?
            } else {
                acc
            }
        }
        Expr::Case {
            branches,
            else_expr,
        } => ColumnarValue::Array(case(branches, else_expr.as_deref(), batch, ctx)?),
        Expr::Cast { expr, to } => {
            let v = eval(expr)?;
            let offset = ctx.options().zone;
            unary(v, |a| cast_array(a, to, offset))?
        }
        Expr::Function { func, args } => {
            let values = args.iter().map(eval).collect::<Result<Vec<_>>>()?;
            functions::call(*func, values, rows, ctx)?
        }
        Expr::Aggregate(_) => {
            return Err(Error::Internal(
                "aggregate evaluated outside an aggregation".into(),
            ))
        }
        Expr::Subquery { kind, plan } => crate::subquery::evaluate(kind, &plan.0, batch, ctx)?,
        Expr::OuterColumn { .. } => {
            return Err(Error::Internal(
                "outer column evaluated outside its subquery".into(),
            ))
        }
        Expr::Slot { .. } => {
            return Err(Error::Internal(
                "a reused plan ran with a slot not filled".into(),
            ))
        }
        Expr::Window(_) => {
            return Err(Error::Internal(
                "window function evaluated outside a Window node".into(),
            ))
        }
    })
}

fn wrap(array: ArrayRef, scalar: bool) -> ColumnarValue {
    if scalar {
        ColumnarValue::Scalar(array)
    } else {
        ColumnarValue::Array(array)
    }
}

fn unary(v: ColumnarValue, f: impl FnOnce(&ArrayRef) -> Result<ArrayRef>) -> Result<ColumnarValue> {
    Ok(match v {
        ColumnarValue::Array(a) => ColumnarValue::Array(f(&a)?),
        ColumnarValue::Scalar(s) => ColumnarValue::Scalar(f(&s)?),
    })
}

fn as_bool(a: &ArrayRef) -> Result<&BooleanArray> {
    a.as_boolean_opt()
        .ok_or_else(|| Error::Internal(format!("expected boolean, got {}", a.data_type())))
}

fn binary(op: BinaryOp, l: ColumnarValue, r: ColumnarValue, rows: usize) -> Result<ColumnarValue> {
    let both_scalar = l.is_scalar() && r.is_scalar();
    // A NULL of unknown type compared or combined with anything is NULL.
    if (l.data_type() == &DataType::Null || r.data_type() == &DataType::Null)
        && !matches!(
            op,
            BinaryOp::And | BinaryOp::Or | BinaryOp::IsDistinctFrom | BinaryOp::IsNotDistinctFrom
        )
    {
        let out_len = if both_scalar { 1 } else { rows };
        let dt = match op {
            o if o.is_comparison() => DataType::Boolean,
            _ if l.data_type() != &DataType::Null => l.data_type().clone(),
            _ => r.data_type().clone(),
        };
        return Ok(wrap(
            arrow::array::new_null_array(&dt, out_len),
            both_scalar,
        ));
    }
    match op {
        BinaryOp::And | BinaryOp::Or => {
            let n = if both_scalar { 1 } else { rows };
            let la = to_bool_array(l, n)?;
            let ra = to_bool_array(r, n)?;
            let out = if op == BinaryOp::And {
                boolean::and_kleene(as_bool(&la)?, as_bool(&ra)?)?
            } else {
                boolean::or_kleene(as_bool(&la)?, as_bool(&ra)?)?
            };
            return Ok(wrap(Arc::new(out), both_scalar));
        }
        BinaryOp::Concat => {
            let n = if both_scalar { 1 } else { rows };
            let la = l.into_array(n)?;
            let ra = r.into_array(n)?;
            let out = concat_elements::concat_elements_utf8(
                la.as_string::<i32>(),
                ra.as_string::<i32>(),
            )?;
            return Ok(wrap(Arc::new(out), both_scalar));
        }
        o if o.is_regex() => {
            let n = if both_scalar { 1 } else { rows };
            let la = l.into_array(n)?;
            let ra = r.into_array(n)?;
            let (Some(text), Some(pattern)) =
                (la.as_string_opt::<i32>(), ra.as_string_opt::<i32>())
            else {
                return Err(Error::Internal(
                    "regular expression operands must be text".into(),
                ));
            };
            let flags = matches!(o, BinaryOp::RegexIMatch | BinaryOp::RegexNotIMatch)
                .then(|| arrow::array::StringArray::from(vec!["i"; n]));
            let matched =
                arrow::compute::kernels::regexp::regexp_is_match(text, pattern, flags.as_ref())
                    .map_err(|e| Error::InvalidText {
                        message: format!("invalid regular expression: {e}"),
                        sqlstate: "2201B",
                    })?;
            let out = if matches!(o, BinaryOp::RegexNotMatch | BinaryOp::RegexNotIMatch) {
                boolean::not(&matched)?
            } else {
                matched
            };
            return Ok(wrap(Arc::new(out), both_scalar));
        }
        _ => {}
    }
    if matches!(l.data_type(), DataType::Decimal128(..))
        || matches!(r.data_type(), DataType::Decimal128(..))
    {
        if let Some(out) = decimal_binary(op, &l, &r, rows, both_scalar)? {
            return Ok(out);
        }
    }
    if l.data_type() == &DataType::Date32 && matches!(op, BinaryOp::Plus | BinaryOp::Minus) {
        let n = if both_scalar { 1 } else { rows };
        let out = date_arithmetic(op, &l.into_array(n)?, &r.into_array(n)?)?;
        return Ok(wrap(out, both_scalar));
    }
    if matches!(op, BinaryOp::Multiply | BinaryOp::Divide)
        && matches!(l.data_type(), DataType::Interval(_))
    {
        let n = if both_scalar { 1 } else { rows };
        let out = scale_intervals(&l.into_array(n)?, &r.into_array(n)?, op == BinaryOp::Divide)?;
        return Ok(wrap(out, both_scalar));
    }
    if op == BinaryOp::Modulo {
        if let Some(out) = remainder_by_constant(&l, &r) {
            return Ok(ColumnarValue::Array(out));
        }
    }
    let (ld, rd) = (l.datum(), r.datum());
    let (ld, rd) = (ld.as_ref(), rd.as_ref());
    let out: ArrayRef = match op {
        BinaryOp::Eq => Arc::new(cmp::eq(ld, rd)?),
        BinaryOp::NotEq => Arc::new(cmp::neq(ld, rd)?),
        BinaryOp::Lt => Arc::new(cmp::lt(ld, rd)?),
        BinaryOp::LtEq => Arc::new(cmp::lt_eq(ld, rd)?),
        BinaryOp::Gt => Arc::new(cmp::gt(ld, rd)?),
        BinaryOp::GtEq => Arc::new(cmp::gt_eq(ld, rd)?),
        BinaryOp::IsDistinctFrom => Arc::new(cmp::distinct(ld, rd)?),
        BinaryOp::IsNotDistinctFrom => Arc::new(cmp::not_distinct(ld, rd)?),
        BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Concat
        | BinaryOp::RegexMatch
        | BinaryOp::RegexIMatch
        | BinaryOp::RegexNotMatch
        | BinaryOp::RegexNotIMatch => unreachable_op(op)?,
        BinaryOp::Plus => numeric::add(ld, rd)?,
        BinaryOp::Minus => {
            let out = numeric::sub(ld, rd)?;
            if matches!(out.data_type(), DataType::Duration(TimeUnit::Microsecond)) {
                duration_to_interval(&out)?
            } else {
                out
            }
        }
        BinaryOp::Multiply => numeric::mul(ld, rd)?,
        BinaryOp::Divide => divide(ld, rd, l.data_type())?,
        BinaryOp::Modulo => numeric::rem(ld, rd)?,
    };
    Ok(wrap(out, both_scalar))
}

/// `integer % constant` (the shape of `GROUP BY user_id % 100`) without a
/// divide per row: for a dividend in `0..2^32` and a divisor whose magnitude
/// is below 2^32, Lemire's remainder by direct computation (Lemire, Kaser
/// and Kurz, "Faster remainder by direct computation", 2019): two
/// multiplications by `ceil(2^64 / |divisor|)`, taken once. Other
/// dividends divide, with PostgreSQL's sign (the dividend's). Written here
/// because the strength-reduction crates take 128-bit reciprocals for 64-bit
/// dividends, which measured no faster than the divide. `None` where the
/// general kernel applies: other types, a scalar left side, a NULL, zero or
/// wide divisor.
fn remainder_by_constant(l: &ColumnarValue, r: &ColumnarValue) -> Option<ArrayRef> {
    use arrow::datatypes::{Int32Type, Int64Type};
    let (ColumnarValue::Array(l), ColumnarValue::Scalar(r)) = (l, r) else {
        return None;
    };
    if r.is_null(0) {
        return None;
    }
    match (l.data_type(), r.data_type()) {
        (DataType::Int64, DataType::Int64) => remainders::<Int64Type>(l, r),
        (DataType::Int32, DataType::Int32) => remainders::<Int32Type>(l, r),
        _ => None,
    }
}

/// [`remainder_by_constant`] of one integer type, worked in 64 bits.
fn remainders<T>(l: &ArrayRef, r: &ArrayRef) -> Option<ArrayRef>
where
    T: arrow::datatypes::ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    use arrow::datatypes::ArrowNativeType;
    let divisor: i64 = r.as_primitive_opt::<T>()?.value(0).into();
    let magnitude = divisor.unsigned_abs();
    if divisor == 0 || magnitude > u64::from(u32::MAX) {
        return None;
    }
    let reciprocal = (u64::MAX / magnitude).wrapping_add(1);
    let l = l.as_primitive_opt::<T>()?;
    let values: Vec<T::Native> = l
        .values()
        .iter()
        .map(|&a| {
            let a: i64 = a.into();
            let rem = if (a as u64) <= u64::from(u32::MAX) {
                let low = reciprocal.wrapping_mul(a as u64);
                ((u128::from(low) * u128::from(magnitude)) >> 64) as i64
            } else {
                a.wrapping_rem(divisor)
            };
            // A remainder is smaller than the divisor: it fits the type.
            T::Native::usize_as(rem as usize)
        })
        .collect();
    Some(Arc::new(arrow::array::PrimitiveArray::<T>::new(
        values.into(),
        l.nulls().cloned(),
    )))
}

/// Arithmetic and comparisons with a numeric operand (the other numeric or an
/// integer; the binder makes a numeric meeting a double a double): exact, at
/// PostgreSQL's result scale. `None` for operators this does not handle.
fn decimal_binary(
    op: BinaryOp,
    l: &ColumnarValue,
    r: &ColumnarValue,
    rows: usize,
    both_scalar: bool,
) -> Result<Option<ColumnarValue>> {
    use crate::numeric::{arithmetic, result_scale, scale_of, to_decimal, Op};
    let n = if both_scalar { 1 } else { rows };
    let (lt, rt) = (l.data_type().clone(), r.data_type().clone());
    if lt == DataType::Float64
        || rt == DataType::Float64
        || lt == DataType::Null
        || rt == DataType::Null
    {
        return Ok(None);
    }
    let (la, ra) = (l.clone().into_array(n)?, r.clone().into_array(n)?);
    let arith = match op {
        BinaryOp::Plus => Some(Op::Add),
        BinaryOp::Minus => Some(Op::Sub),
        BinaryOp::Multiply => Some(Op::Mul),
        BinaryOp::Divide => Some(Op::Div),
        BinaryOp::Modulo => Some(Op::Rem),
        _ => None,
    };
    if let Some(a) = arith {
        let (ls, rs) = (scale_of(&lt), scale_of(&rt));
        let out = arithmetic(
            a,
            &to_decimal(&la, ls)?,
            &to_decimal(&ra, rs)?,
            result_scale(a, ls, rs),
        )?;
        return Ok(Some(wrap(out, both_scalar)));
    }
    if !op.is_comparison() || lt == rt {
        return Ok(None);
    }
    // Comparisons: both sides at one scale and precision, then Arrow's kernels.
    let common = scale_of(&lt).max(scale_of(&rt));
    let la: ArrayRef = Arc::new(to_decimal(&la, common)?);
    let ra: ArrayRef = Arc::new(to_decimal(&ra, common)?);
    let out = binary(op, ColumnarValue::Array(la), ColumnarValue::Array(ra), n)?;
    Ok(Some(match (out, both_scalar) {
        (ColumnarValue::Array(a), true) => ColumnarValue::Scalar(a),
        (other, _) => other,
    }))
}

fn unreachable_op(op: BinaryOp) -> Result<ArrayRef> {
    Err(Error::Internal(format!(
        "operator {op:?} reached the kernel dispatch"
    )))
}

/// `left AND right` or `left OR right`, with `right` evaluated only on the rows
/// `left` does not decide, as PostgreSQL does: `qty <> 0 AND amount / qty > 5`
/// never divides by zero, whichever path (segment scan or not) evaluates it.
fn short_circuit(
    op: BinaryOp,
    left: ColumnarValue,
    right: &Expr,
    batch: &RecordBatch,
    ctx: &QueryContext,
) -> Result<ColumnarValue> {
    let rows = batch.num_rows();
    // The left value that decides the result without the right one.
    let decisive = op == BinaryOp::Or;
    let l = to_bool_array(left.clone(), if left.is_scalar() { 1 } else { rows })?;
    let l = as_bool(&l)?;
    let decided = |i: usize| l.is_valid(i) && l.value(i) == decisive;
    if left.is_scalar() {
        if decided(0) {
            return Ok(left);
        }
        return binary(op, left, evaluate_value(right, batch, ctx)?, rows);
    }
    let need = BooleanArray::from((0..rows).map(|i| !decided(i)).collect::<Vec<bool>>());
    let needed = need.true_count();
    if needed == rows {
        return binary(op, left, evaluate_value(right, batch, ctx)?, rows);
    }
    if needed == 0 {
        return Ok(left);
    }
    let sub = filter_batch(batch, &need)?;
    let r = to_bool_array(evaluate_value(right, &sub, ctx)?, needed)?;
    let r = as_bool(&r)?;
    // Rows the left side decided get the right value that leaves them as
    // they are (`false AND true`, `true OR false`).
    let mut next = 0;
    let full: BooleanArray = (0..rows)
        .map(|i| {
            if need.value(i) {
                next += 1;
                r.is_valid(next - 1).then(|| r.value(next - 1))
            } else {
                Some(!decisive)
            }
        })
        .collect();
    binary(op, left, ColumnarValue::Array(Arc::new(full)), rows)
}

fn to_bool_array(v: ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let a = v.into_array(rows)?;
    if a.data_type() == &DataType::Null {
        return Ok(arrow::array::new_null_array(&DataType::Boolean, a.len()));
    }
    Ok(a)
}

/// Division with PostgreSQL's rule for doubles: dividing by zero is an error, not
/// infinity.
fn divide(
    l: &dyn arrow::array::Datum,
    r: &dyn arrow::array::Datum,
    lt: &DataType,
) -> Result<ArrayRef> {
    let (ra, _) = r.get();
    if ra.data_type() == &DataType::Float64 || lt == &DataType::Float64 {
        let zero = Scalar::new(arrow::array::Float64Array::from(vec![0.0]));
        if ra.data_type() == &DataType::Float64 {
            let is_zero = cmp::eq(&ra, &zero)?;
            if is_zero.true_count() > 0 {
                return Err(Error::DivisionByZero);
            }
        }
    }
    Ok(numeric::div(l, r)?)
}

/// `date - date` (days between, an integer) and `date ± integer` (a date), as in
/// PostgreSQL; Arrow's date kernels count seconds and take no integers.
fn date_arithmetic(op: BinaryOp, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef> {
    let days = l.as_primitive::<arrow::datatypes::Date32Type>();
    let out_of_range = || Error::NumericOutOfRange("date out of range".into());
    if r.data_type() == &DataType::Date32 {
        let other = r.as_primitive::<arrow::datatypes::Date32Type>();
        let diff: arrow::array::Int32Array = days
            .iter()
            .zip(other.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => a.checked_sub(b).map(Some).ok_or_else(out_of_range),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        return Ok(Arc::new(diff));
    }
    let by = arrow::compute::cast(r, &DataType::Int64)?;
    let by = by.as_primitive::<arrow::datatypes::Int64Type>();
    let shifted: arrow::array::Date32Array = days
        .iter()
        .zip(by.iter())
        .map(|(d, k)| match (d, k) {
            (Some(d), Some(k)) => {
                let k = if op == BinaryOp::Minus {
                    k.checked_neg()
                } else {
                    Some(k)
                };
                k.and_then(|k| i64::from(d).checked_add(k))
                    .and_then(|v| i32::try_from(v).ok())
                    .map(Some)
                    .ok_or_else(out_of_range)
            }
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    Ok(Arc::new(shifted))
}

/// `interval * float8` and `interval / float8` as PostgreSQL computes them: each
/// field is scaled, and the fraction a scaled month or day leaves cascades down
/// (a month as 30 days, a day as 24 hours) instead of being dropped.
fn scale_intervals(intervals: &ArrayRef, factors: &ArrayRef, divide: bool) -> Result<ArrayRef> {
    let intervals = intervals.as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>();
    let factors = factors.as_primitive::<arrow::datatypes::Float64Type>();
    let mut out = Vec::with_capacity(intervals.len());
    for (iv, f) in intervals.iter().zip(factors.iter()) {
        out.push(match (iv, f) {
            (Some(iv), Some(f)) => {
                if divide && f == 0.0 {
                    return Err(Error::DivisionByZero);
                }
                Some(scale_interval(iv, f, divide)?)
            }
            _ => None,
        });
    }
    Ok(Arc::new(IntervalMonthDayNanoArray::from(out)))
}

fn scale_interval(iv: IntervalMonthDayNano, f: f64, divide: bool) -> Result<IntervalMonthDayNano> {
    let scale = |x: f64| if divide { x / f } else { x * f };
    // PostgreSQL rounds the cascaded remainders to whole microseconds.
    let round_us = |x: f64| (x * 1e6).round_ties_even() / 1e6;
    let out_of_range = || Error::NumericOutOfRange("interval out of range".into());
    let months = scale(f64::from(iv.months));
    let days = scale(f64::from(iv.days));
    let whole_months = months.trunc();
    let whole_days = days.trunc();
    if whole_months.abs() > f64::from(i32::MAX) || whole_days.abs() > f64::from(i32::MAX) {
        return Err(out_of_range());
    }
    let month_remainder_days = round_us((months - whole_months) * 30.0);
    let mut secs = round_us((days - whole_days + month_remainder_days.fract()) * 86_400.0);
    let mut day_total = whole_days + month_remainder_days.trunc();
    if secs.abs() >= 86_400.0 {
        day_total += (secs / 86_400.0).trunc();
        secs -= (secs / 86_400.0).trunc() * 86_400.0;
    }
    let micros = (scale(iv.nanoseconds as f64 / 1000.0) + secs * 1e6).round_ties_even();
    if day_total.abs() > f64::from(i32::MAX) || micros.abs() > (i64::MAX / 1000) as f64 {
        return Err(out_of_range());
    }
    Ok(IntervalMonthDayNano::new(
        whole_months as i32,
        day_total as i32,
        micros as i64 * 1000,
    ))
}

/// `timestamp - timestamp` yields an interval of days and microseconds, as in PostgreSQL.
fn duration_to_interval(d: &ArrayRef) -> Result<ArrayRef> {
    let d = d.as_primitive::<DurationMicrosecondType>();
    let day = sluice_storage::types::MICROS_PER_DAY;
    let out: IntervalMonthDayNanoArray = d
        .iter()
        .map(|v| {
            v.map(|micros| {
                let days = micros / day;
                IntervalMonthDayNano::new(0, days as i32, (micros - days * day) * 1000)
            })
        })
        .collect();
    Ok(Arc::new(out))
}

/// CASE: each result is evaluated only on the rows that select it, so a guarded
/// `CASE WHEN b = 0 THEN NULL ELSE a / b END` never divides by zero.
fn case(
    branches: &[(Expr, Expr)],
    else_expr: Option<&Expr>,
    batch: &RecordBatch,
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let rows = batch.num_rows();
    // For each row, the branch that decided it (branches.len() = ELSE).
    let mut chosen: Vec<usize> = vec![usize::MAX; rows];
    let mut undecided = rows;
    for (b, (cond, _)) in branches.iter().enumerate() {
        if undecided == 0 {
            break;
        }
        // A condition is evaluated only on the rows no earlier one took, as
        // PostgreSQL does (`WHEN qty = 0 THEN 0 WHEN amount / qty > 5 ...`).
        let open: Vec<u32> = (0..rows)
            .filter(|r| chosen[*r] == usize::MAX)
            .map(|r| r as u32)
            .collect();
        let mask = if open.len() == rows {
            evaluate_predicate(cond, batch, ctx)?
        } else {
            evaluate_predicate(cond, &take_batch(batch, &open)?, ctx)?
        };
        for (i, row) in open.iter().enumerate() {
            if mask.value(i) {
                chosen[*row as usize] = b;
                undecided -= 1;
            }
        }
    }
    let mut results: Vec<ArrayRef> = Vec::with_capacity(branches.len() + 1);
    let mut positions: Vec<(usize, usize)> = vec![(0, 0); rows];
    for b in 0..=branches.len() {
        let selected: Vec<u32> = (0..rows)
            .filter(|&r| chosen[r] == b || (b == branches.len() && chosen[r] == usize::MAX))
            .map(|r| r as u32)
            .collect();
        let expr = if b < branches.len() {
            Some(&branches[b].1)
        } else {
            else_expr
        };
        let values = match expr {
            _ if selected.is_empty() => None,
            Some(e) => {
                let sub = take_batch(batch, &selected)?;
                Some(evaluate(e, &sub, ctx)?)
            }
            None => None,
        };
        let values = match values {
            Some(v) => v,
            None => arrow::array::new_null_array(&DataType::Null, selected.len()),
        };
        for (i, r) in selected.iter().enumerate() {
            positions[*r as usize] = (b, i);
        }
        results.push(values);
    }
    // Unify types: branches that produced nothing are NULL-typed placeholders.
    let mut target = results
        .iter()
        .map(|a| a.data_type().clone())
        .find(|t| *t != DataType::Null)
        .unwrap_or(DataType::Null);
    if target == DataType::Null {
        // No row took a branch with a value (a block where the CASE is NULL
        // throughout): the type still comes from the branches, found by
        // evaluating them on no rows, so a function over the CASE sees the type
        // the binder checked.
        let empty = batch.slice(0, 0);
        let exprs = branches.iter().map(|(_, e)| e).chain(else_expr);
        for e in exprs {
            let t = evaluate(e, &empty, ctx)?.data_type().clone();
            if t != DataType::Null {
                target = t;
                break;
            }
        }
    }
    let results = results
        .into_iter()
        .map(|a| {
            if a.data_type() == &target {
                Ok(a)
            } else {
                Ok(arrow::array::new_null_array(&target, a.len()))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&dyn Array> = results.iter().map(|a| a.as_ref()).collect();
    Ok(interleave(&refs, &positions)?)
}

/// The rows of `batch` at `indices`.
pub fn take_batch(batch: &RecordBatch, indices: &[u32]) -> Result<RecordBatch> {
    let idx = UInt32Array::from(indices.to_vec());
    Ok(arrow::compute::take_record_batch(batch, &idx)?)
}

/// Keeps the rows where `mask` is true (NULL as false).
pub fn filter_batch(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
    Ok(arrow::compute::filter_record_batch(batch, mask)?)
}

/// The zip kernel re-exported for functions: `mask ? a : b` row by row.
pub fn select(mask: &BooleanArray, a: &ArrayRef, b: &ArrayRef) -> Result<ArrayRef> {
    Ok(zip::zip(mask, a, b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    /// Every remainder by a constant equals the divide's, with the
    /// dividend's sign: dividends at the ends of the multiply-and-shift
    /// range and past it, negative ones, and divisors of both signs; a NULL
    /// stays NULL; zero and wide divisors are left to the general kernel.
    #[test]
    fn remainders_by_a_constant_match_the_divide() {
        let wide = i64::from(u32::MAX);
        let mut dividends = vec![
            Some(0),
            Some(1),
            Some(99),
            Some(100),
            Some(wide - 1),
            Some(wide),
            Some(wide + 1),
            Some(i64::MAX),
            Some(i64::MIN),
            Some(-1),
            Some(-101),
            None,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            dividends.push(Some((x >> (x % 40)) as i64));
        }
        let left = ColumnarValue::Array(Arc::new(Int64Array::from(dividends.clone())));
        for divisor in [1, 2, 3, 7, 100, 1000, 10_000_000, wide, -1, -3, -100] {
            let right = ColumnarValue::Scalar(Arc::new(Int64Array::from(vec![divisor])));
            let out = remainder_by_constant(&left, &right).expect("a narrow divisor");
            let out = out.as_primitive::<arrow::datatypes::Int64Type>();
            for (i, a) in dividends.iter().enumerate() {
                let want = a.map(|a| a.wrapping_rem(divisor));
                assert_eq!(
                    out.is_valid(i).then(|| out.value(i)),
                    want,
                    "{a:?} % {divisor}"
                );
            }
        }
        for divisor in [0, wide + 1, i64::MIN, i64::MAX] {
            let right = ColumnarValue::Scalar(Arc::new(Int64Array::from(vec![divisor])));
            assert!(remainder_by_constant(&left, &right).is_none(), "{divisor}");
        }
        // INTEGER: the same, in 32 bits.
        let narrow: Vec<Option<i32>> = dividends.iter().map(|a| a.map(|a| a as i32)).collect();
        let left = ColumnarValue::Array(Arc::new(arrow::array::Int32Array::from(narrow.clone())));
        for divisor in [1, 7, 100, i32::MAX, -1, -100, i32::MIN] {
            let right =
                ColumnarValue::Scalar(Arc::new(arrow::array::Int32Array::from(vec![divisor])));
            let out = remainder_by_constant(&left, &right).expect("a 32-bit divisor");
            let out = out.as_primitive::<arrow::datatypes::Int32Type>();
            for (i, a) in narrow.iter().enumerate() {
                let want = a.map(|a| a.wrapping_rem(divisor));
                assert_eq!(
                    out.is_valid(i).then(|| out.value(i)),
                    want,
                    "{a:?} % {divisor}"
                );
            }
        }
    }
}
