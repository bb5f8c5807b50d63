//! The Window operator: `row_number`, `rank`, `dense_rank` and aggregates `OVER
//! (PARTITION BY ... ORDER BY ...)`. Rows are sorted by partition and order keys once
//! per window; ranking walks the sorted rows; an aggregate without ORDER BY covers its
//! whole partition, and with ORDER BY it is cumulative up to the current row and its
//! peers (PostgreSQL's default frame, RANGE UNBOUNDED PRECEDING).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, lexsort_to_indices, take, SortColumn, SortOptions};
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};

use crate::aggregate::keys::GroupTable;
use crate::aggregate::{AggregateSpec, Aggregator};
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::eval::evaluate;
use crate::logical::{AggregateExpr, AggregateFunction, PlanSchema, WindowExpr, WindowFunction};

/// Computes every window over the concatenated input and appends one column each.
pub fn execute_window(
    batches: &[RecordBatch],
    input_schema: &PlanSchema,
    windows: &[WindowExpr],
    schema: SchemaRef,
    ctx: &QueryContext,
) -> Result<RecordBatch> {
    let batch = concat_batches(&input_schema.arrow_schema(), batches)?;
    ctx.reserve(batch.get_array_memory_size())?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for w in windows {
        ctx.check()?;
        columns.push(one_window(&batch, input_schema, w, ctx)?);
    }
    ctx.release(batch.get_array_memory_size());
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                Ok(arrow::compute::cast(&c, f.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Dense ids for the distinct values of `exprs` over `batch`, row by row.
fn key_ids(
    batch: &RecordBatch,
    exprs: &[crate::logical::Expr],
    ctx: &QueryContext,
) -> Result<Vec<u32>> {
    let n = batch.num_rows();
    if exprs.is_empty() {
        return Ok(vec![0; n]);
    }
    let arrays = exprs
        .iter()
        .map(|e| evaluate(e, batch, ctx))
        .collect::<Result<Vec<_>>>()?;
    let types: Vec<DataType> = arrays.iter().map(|a| a.data_type().clone()).collect();
    let mut table = GroupTable::new(&types);
    let mut ids = Vec::with_capacity(n);
    table.intern(&arrays, n, &mut ids)?;
    Ok(ids)
}

fn one_window(
    batch: &RecordBatch,
    input: &PlanSchema,
    w: &WindowExpr,
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let n = batch.num_rows();
    let partition = key_ids(batch, &w.partition_by, ctx)?;
    let order_exprs: Vec<_> = w.order_by.iter().map(|k| k.expr.clone()).collect();
    let peers = key_ids(batch, &order_exprs, ctx)?;

    // Sort by partition, then by the window's ORDER BY.
    let mut sort_columns = vec![SortColumn {
        values: Arc::new(UInt32Array::from(partition.clone())),
        options: None,
    }];
    for k in &w.order_by {
        sort_columns.push(SortColumn {
            values: evaluate(&k.expr, batch, ctx)?,
            options: Some(SortOptions {
                descending: k.descending,
                nulls_first: k.nulls_first,
            }),
        });
    }
    let order: Vec<usize> = if n == 0 {
        Vec::new()
    } else {
        lexsort_to_indices(&sort_columns, None)?
            .values()
            .iter()
            .map(|i| *i as usize)
            .collect()
    };

    match w.func {
        WindowFunction::RowNumber | WindowFunction::Rank | WindowFunction::DenseRank => {
            let mut out = vec![0i64; n];
            let (mut row_number, mut rank, mut dense) = (0i64, 0i64, 0i64);
            for (pos, &row) in order.iter().enumerate() {
                let new_partition = pos == 0 || partition[order[pos - 1]] != partition[row];
                let new_peer = new_partition || peers[order[pos - 1]] != peers[row];
                if new_partition {
                    row_number = 0;
                    dense = 0;
                }
                row_number += 1;
                if new_peer {
                    rank = row_number;
                    dense += 1;
                }
                out[row] = match w.func {
                    WindowFunction::RowNumber => row_number,
                    WindowFunction::Rank => rank,
                    _ => dense,
                };
            }
            Ok(Arc::new(Int64Array::from(out)))
        }
        WindowFunction::Aggregate(f) if w.order_by.is_empty() => {
            whole_partition(batch, input, f, w, &partition, ctx)
        }
        WindowFunction::Aggregate(f) => {
            cumulative(batch, input, f, w, &order, &partition, &peers, ctx)
        }
    }
}

/// An aggregate over each whole partition, repeated on each of its rows.
fn whole_partition(
    batch: &RecordBatch,
    input: &PlanSchema,
    f: AggregateFunction,
    w: &WindowExpr,
    partition: &[u32],
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let expr = AggregateExpr {
        func: f,
        arg: w.arg.clone(),
        distinct: false,
        separator: None,
    };
    let spec = AggregateSpec {
        arg_type: w.arg.as_ref().map(|a| a.data_type(input)),
        expr,
    };
    let out_type = w.data_type(input);
    let mut agg = Aggregator::new(vec![DataType::Int64], vec![spec], ctx.clone())?;
    let keys: ArrayRef = Arc::new(Int64Array::from(
        partition.iter().map(|p| *p as i64).collect::<Vec<_>>(),
    ));
    let arg = w
        .arg
        .as_ref()
        .map(|a| evaluate(a, batch, ctx))
        .transpose()?;
    agg.update(&[keys], &[arg], batch.num_rows())?;
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("p", DataType::Int64, true),
        arrow::datatypes::Field::new("v", out_type, true),
    ]));
    let result = agg.finish(schema)?;
    // Map each partition id to its result row.
    let ids = result.column(0).as_primitive::<Int64Type>();
    let mut row_of = vec![0u32; ids.len()];
    for (r, id) in ids.values().iter().enumerate() {
        if let Some(slot) = row_of.get_mut(*id as usize) {
            *slot = r as u32;
        }
    }
    let idx = UInt32Array::from(
        partition
            .iter()
            .map(|p| row_of.get(*p as usize).copied().unwrap_or(0))
            .collect::<Vec<_>>(),
    );
    Ok(take(result.column(1).as_ref(), &idx, None)?)
}

/// A running aggregate in window order; peers (equal ORDER BY values) share the
/// value reached after the last of them.
#[allow(clippy::too_many_arguments)]
fn cumulative(
    batch: &RecordBatch,
    input: &PlanSchema,
    f: AggregateFunction,
    w: &WindowExpr,
    order: &[usize],
    partition: &[u32],
    peers: &[u32],
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let n = batch.num_rows();
    let values: Option<Float64Array> = match &w.arg {
        Some(a) => {
            let v = crate::eval::decode_dictionary(&evaluate(a, batch, ctx)?)?;
            if !matches!(
                v.data_type(),
                DataType::Int32 | DataType::Int64 | DataType::Float64
            ) && f != AggregateFunction::Count
            {
                return Err(Error::NotSupported(format!(
                    "{}() OVER (ORDER BY ...) on type {}",
                    f.name(),
                    crate::format::sql_type_name(v.data_type())
                )));
            }
            let as_f64 = if matches!(
                v.data_type(),
                DataType::Int32 | DataType::Int64 | DataType::Float64
            ) {
                arrow::compute::cast(&v, &DataType::Float64)?
            } else {
                // COUNT of a non-numeric column only needs to know which rows are NULL.
                let ones: Float64Array =
                    (0..v.len()).map(|i| v.is_valid(i).then_some(1.0)).collect();
                Arc::new(ones)
            };
            Some(as_f64.as_primitive::<Float64Type>().clone())
        }
        None => None,
    };
    let mut out: Vec<Option<f64>> = vec![None; n];
    let (mut count, mut sum, mut min, mut max) = (0i64, 0f64, f64::INFINITY, f64::NEG_INFINITY);
    let mut pos = 0;
    while pos < order.len() {
        let row = order[pos];
        if pos == 0 || partition[order[pos - 1]] != partition[row] {
            (count, sum, min, max) = (0, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        }
        // Fold in the whole peer group, then give each of its rows the result.
        let start = pos;
        while pos < order.len()
            && partition[order[pos]] == partition[row]
            && peers[order[pos]] == peers[row]
        {
            let r = order[pos];
            match &values {
                None => count += 1,
                Some(v) if v.is_valid(r) => {
                    let x = v.value(r);
                    count += 1;
                    sum += x;
                    min = min.min(x);
                    max = max.max(x);
                }
                Some(_) => {}
            }
            pos += 1;
        }
        let value = match f {
            AggregateFunction::Count | AggregateFunction::CountStar => Some(count as f64),
            AggregateFunction::Sum => (count > 0).then_some(sum),
            AggregateFunction::Avg => (count > 0).then(|| sum / count as f64),
            AggregateFunction::Min => (count > 0).then_some(min),
            AggregateFunction::Max => (count > 0).then_some(max),
            other => {
                return Err(Error::NotSupported(format!(
                    "{}() OVER (ORDER BY ...)",
                    other.name()
                )))
            }
        };
        for &r in &order[start..pos] {
            out[r] = value;
        }
    }
    let out: ArrayRef = Arc::new(Float64Array::from(out));
    Ok(arrow::compute::cast(&out, &w.data_type(input))?)
}
