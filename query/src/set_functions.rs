//! Set-returning functions in the SELECT list ([`LogicalPlan::ProjectSet`]):
//! each input row is repeated once per value of its longest function
//! result, the functions side by side, a shorter one padded with NULLs.
//!
//! [`LogicalPlan::ProjectSet`]: crate::logical::LogicalPlan::ProjectSet

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow::datatypes::{
    DataType, Int64Type, IntervalMonthDayNanoType, SchemaRef, TimestampMicrosecondType,
};

use crate::cast::cast_array;
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::eval::{decode_dictionary, evaluate};
use crate::logical::SetFunction;

/// Most rows one input row may turn into.
const MAX_ROWS_PER_INPUT: usize = 10_000_000;

/// One function's values for one input row.
enum Values {
    Text(Vec<Option<String>>),
    Ints(Vec<i64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Text(v) => v.len(),
            Values::Ints(v) => v.len(),
        }
    }
}

/// The elements of an array in text form: `{a,b}`, or an int2vector's `1 2`.
fn elements(text: &str) -> Vec<Option<String>> {
    let t = text.trim();
    if t.starts_with('{') {
        crate::binder::parse_array_text(t)
    } else {
        t.split_whitespace().map(|s| Some(s.to_string())).collect()
    }
}

fn row_values(f: &SetFunction, args: &[ArrayRef], row: usize) -> Result<Values> {
    let null = |i: usize| args[i].is_null(row);
    Ok(match f {
        SetFunction::Unnest { .. } | SetFunction::Subscripts { .. } => {
            let text = (!null(0)).then(|| args[0].as_string::<i32>().value(row));
            let items = text.map(elements).unwrap_or_default();
            // An int2vector (`1 2`, no braces) is numbered from 0, an array from 1.
            let first = i64::from(text.is_none_or(|t| t.trim_start().starts_with('{')));
            match f {
                SetFunction::Unnest { .. } => Values::Text(items),
                _ => Values::Ints((first..first + items.len() as i64).collect()),
            }
        }
        SetFunction::Series { .. } => {
            if (0..args.len()).any(null) {
                return Ok(Values::Ints(Vec::new()));
            }
            if let (DataType::Timestamp(..), Some(step)) = (args[0].data_type(), args.get(2)) {
                let at = |i: usize| {
                    args[i]
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(row)
                };
                let step = crate::format::to_interval(
                    step.as_primitive::<IntervalMonthDayNanoType>().value(row),
                );
                let times = crate::exec::timestamp_series(at(0), at(1), step, MAX_ROWS_PER_INPUT)?;
                return Ok(Values::Ints(times));
            }
            let v = |i: usize| args[i].as_primitive::<Int64Type>().value(row);
            let (lo, hi) = (v(0), v(1));
            let step = if args.len() > 2 { v(2) } else { 1 };
            if step == 0 {
                return Err(Error::InvalidParameter(
                    "step size cannot equal zero".into(),
                ));
            }
            let count = if (step > 0 && lo > hi) || (step < 0 && lo < hi) {
                0
            } else {
                (hi as i128 - lo as i128) / step as i128 + 1
            };
            if count > MAX_ROWS_PER_INPUT as i128 {
                return Err(Error::ResourcesExhausted(format!(
                    "generate_series of more than {MAX_ROWS_PER_INPUT} rows"
                )));
            }
            Values::Ints((0..count as i64).map(|i| lo + i * step).collect())
        }
    })
}

/// `batch` expanded by `functions`, as `schema` (the batch's columns, then one
/// per function).
pub fn expand(
    batch: &RecordBatch,
    functions: &[SetFunction],
    schema: &SchemaRef,
    ctx: &QueryContext,
) -> Result<RecordBatch> {
    let args: Vec<Vec<ArrayRef>> = functions
        .iter()
        .map(|f| {
            f.args()
                .iter()
                .map(|a| decode_dictionary(&evaluate(a, batch, ctx)?))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let mut take: Vec<u32> = Vec::new();
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); functions.len()];
    let mut ints: Vec<Vec<Option<i64>>> = vec![Vec::new(); functions.len()];
    for row in 0..batch.num_rows() {
        let values = functions
            .iter()
            .zip(&args)
            .map(|(f, a)| row_values(f, a, row))
            .collect::<Result<Vec<_>>>()?;
        let n = values.iter().map(Values::len).max().unwrap_or(0);
        if row % 1024 == 0 {
            ctx.check()?;
        }
        for i in 0..n {
            take.push(row as u32);
            for (k, v) in values.iter().enumerate() {
                match v {
                    Values::Text(t) => columns[k].push(t.get(i).cloned().flatten()),
                    Values::Ints(t) => ints[k].push(t.get(i).copied()),
                }
            }
        }
        if take.len() > MAX_ROWS_PER_INPUT {
            return Err(Error::ResourcesExhausted(format!(
                "set-returning functions made more than {MAX_ROWS_PER_INPUT} rows"
            )));
        }
    }
    let indices = UInt32Array::from(take);
    let mut out: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &indices, None).map_err(Error::from))
        .collect::<Result<_>>()?;
    let first = batch.num_columns();
    for (k, f) in functions.iter().enumerate() {
        let target = schema.field(first + k).data_type();
        let column: ArrayRef = match f {
            SetFunction::Unnest { .. } => {
                let text: ArrayRef = Arc::new(StringArray::from(std::mem::take(&mut columns[k])));
                cast_array(&text, target, ctx.options().zone)?
            }
            SetFunction::Subscripts { .. } => Arc::new(Int32Array::from(
                ints[k]
                    .iter()
                    .map(|v| v.map(|x| x as i32))
                    .collect::<Vec<_>>(),
            )),
            SetFunction::Series { .. } if matches!(target, DataType::Timestamp(..)) => {
                let zone = match target {
                    DataType::Timestamp(_, zone) => zone.clone(),
                    _ => None,
                };
                Arc::new(
                    TimestampMicrosecondArray::from(std::mem::take(&mut ints[k]))
                        .with_timezone_opt(zone),
                )
            }
            SetFunction::Series { .. } => {
                let values: ArrayRef = Arc::new(Int64Array::from(std::mem::take(&mut ints[k])));
                if target == &DataType::Int64 {
                    values
                } else {
                    cast_array(&values, target, ctx.options().zone)?
                }
            }
        };
        out.push(column);
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        out,
        &RecordBatchOptions::new().with_row_count(Some(indices.len())),
    )?)
}
