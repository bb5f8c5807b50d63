//! The Window operator: ranking (`row_number`, `rank`, `dense_rank`,
//! `percent_rank`, `cume_dist`, `ntile`), offsets (`lag`, `lead`), frame values
//! (`first_value`, `last_value`, `nth_value`) and aggregates `OVER (PARTITION
//! BY ... ORDER BY ... [frame])`. Rows are sorted by partition and order keys
//! once per window; each function walks the sorted rows of each partition.
//!
//! Frames follow PostgreSQL: without a frame clause, the frame is the rows up
//! to the current row's last peer with ORDER BY (RANGE UNBOUNDED PRECEDING)
//! and the whole partition without. `ROWS` frames may have constant offsets;
//! `RANGE` frames take peers along at CURRENT ROW. Sums, counts and averages
//! over a frame come from prefix sums, so every frame costs O(1) per row; min
//! and max scan the frame.

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

    let partitions = partition_ranges(&order, &partition);
    match w.func {
        WindowFunction::PercentRank | WindowFunction::CumeDist | WindowFunction::Ntile(_) => {
            Ok(distribution(w.func, &order, &partitions, &peers, n))
        }
        WindowFunction::Lag(_) | WindowFunction::Lead(_) => {
            offset_value(batch, w, &order, &partitions, ctx)
        }
        WindowFunction::FirstValue | WindowFunction::LastValue | WindowFunction::NthValue(_) => {
            let keys = range_keys(batch, w, ctx)?;
            let frames = frames(w, &order, &partitions, &peers, keys.as_ref());
            frame_value(batch, w, &order, &frames, ctx)
        }
        WindowFunction::Aggregate(f) if w.order_by.is_empty() && w.frame.is_none() => {
            whole_partition(batch, input, f, w, &partition, ctx)
        }
        WindowFunction::Aggregate(f) => {
            let keys = range_keys(batch, w, ctx)?;
            let frames = frames(w, &order, &partitions, &peers, keys.as_ref());
            framed_aggregate(batch, input, f, w, &order, &partitions, &frames, ctx)
        }
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
    }
}

/// The sorted positions `[start, end)` of each partition, in order.
fn partition_ranges(order: &[usize], partition: &[u32]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for pos in 1..=order.len() {
        if pos == order.len() || partition[order[pos]] != partition[order[pos - 1]] {
            out.push((start, pos));
            start = pos;
        }
    }
    out
}

/// percent_rank, cume_dist and ntile, from each row's place among its
/// partition's rows and peers.
fn distribution(
    func: WindowFunction,
    order: &[usize],
    partitions: &[(usize, usize)],
    peers: &[u32],
    n: usize,
) -> ArrayRef {
    let mut floats = vec![0f64; n];
    let mut ints = vec![0i64; n];
    for &(start, end) in partitions {
        let size = end - start;
        let mut group_start = start;
        while group_start < end {
            let mut group_end = group_start + 1;
            while group_end < end && peers[order[group_end]] == peers[order[group_start]] {
                group_end += 1;
            }
            for (pos, &row) in order.iter().enumerate().take(group_end).skip(group_start) {
                match func {
                    WindowFunction::PercentRank => {
                        let rank = (group_start - start) as f64;
                        floats[row] = if size > 1 {
                            rank / (size - 1) as f64
                        } else {
                            0.0
                        };
                    }
                    WindowFunction::CumeDist => {
                        floats[row] = (group_end - start) as f64 / size as f64;
                    }
                    WindowFunction::Ntile(buckets) => {
                        // The first size % buckets buckets hold one row more.
                        let i = (pos - start) as i64;
                        let (q, r) = (size as i64 / buckets, size as i64 % buckets);
                        let big = r * (q + 1);
                        ints[row] = if q == 0 || i < big {
                            i / (q + 1) + 1
                        } else {
                            r + (i - big) / q + 1
                        };
                    }
                    _ => {}
                }
            }
            group_start = group_end;
        }
    }
    match func {
        WindowFunction::Ntile(_) => Arc::new(Int64Array::from(ints)),
        _ => Arc::new(Float64Array::from(floats)),
    }
}

/// lag and lead: the argument `offset` rows away within the partition, or
/// the default (NULL if none) past its edge.
fn offset_value(
    batch: &RecordBatch,
    w: &WindowExpr,
    order: &[usize],
    partitions: &[(usize, usize)],
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let arg = match &w.arg {
        Some(a) => crate::eval::decode_dictionary(&evaluate(a, batch, ctx)?)?,
        None => return Err(Error::Internal("lag without its argument".into())),
    };
    let shift = match w.func {
        WindowFunction::Lag(k) => -k,
        WindowFunction::Lead(k) => k,
        _ => 0,
    };
    let n = batch.num_rows();
    // Rows at or past n take the default: the argument's rows, then the
    // default's, concatenated.
    let default = match &w.default {
        Some(d) => arrow::compute::cast(
            &crate::eval::decode_dictionary(&evaluate(d, batch, ctx)?)?,
            arg.data_type(),
        )?,
        None => arrow::array::new_null_array(arg.data_type(), n),
    };
    let both = arrow::compute::concat(&[arg.as_ref(), default.as_ref()])?;
    let mut idx = vec![0u32; n];
    for &(start, end) in partitions {
        for pos in start..end {
            let row = order[pos];
            let target = pos as i64 + shift;
            idx[row] = if target >= start as i64 && target < end as i64 {
                order[target as usize] as u32
            } else {
                (n + row) as u32
            };
        }
    }
    Ok(take(both.as_ref(), &UInt32Array::from(idx), None)?)
}

/// The ORDER BY key's value per row, for a RANGE frame with an offset: numbers
/// as they are, timestamps in microseconds, dates as their midnight; `None`
/// for NULL. `None` altogether when the frame has no offset.
fn range_keys(
    batch: &RecordBatch,
    w: &WindowExpr,
    ctx: &QueryContext,
) -> Result<Option<Vec<Option<f64>>>> {
    use crate::logical::FrameBound as B;
    let Some(frame) = w.frame else {
        return Ok(None);
    };
    let offset = |b: B| matches!(b, B::RangePreceding(_) | B::RangeFollowing(_));
    let (true, Some(key)) = (offset(frame.start) || offset(frame.end), w.order_by.first()) else {
        return Ok(None);
    };
    let values = evaluate(&key.expr, batch, ctx)?;
    let values = match values.data_type() {
        DataType::Timestamp(..) => arrow::compute::cast(&values, &DataType::Int64)?,
        DataType::Date32 => {
            let days = arrow::compute::cast(&values, &DataType::Int64)?;
            let days = days.as_primitive::<arrow::datatypes::Int64Type>();
            Arc::new(arrow::compute::kernels::arity::unary::<
                _,
                _,
                arrow::datatypes::Int64Type,
            >(days, |d| {
                d * sluice_storage::types::MICROS_PER_DAY
            }))
        }
        _ => values,
    };
    let values = arrow::compute::cast(&values, &DataType::Float64)?;
    Ok(Some(
        values
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .collect(),
    ))
}

/// `key` moved by `offset`, forward or back: a number by its size, a
/// timestamp (microseconds) by an interval on the calendar.
fn moved(key: f64, offset: crate::logical::RangeOffset, forward: bool) -> f64 {
    use crate::logical::RangeOffset;
    match offset {
        RangeOffset::Number(n) => {
            if forward {
                key + n
            } else {
                key - n
            }
        }
        RangeOffset::Interval(iv) => {
            let sign = if forward { 1 } else { -1 };
            let micros = key as i64;
            let moved = sluice_storage::types::micros_to_datetime(micros).and_then(|d| {
                let months = chrono::Months::new(iv.months.unsigned_abs());
                let d = if forward {
                    d.checked_add_months(months)
                } else {
                    d.checked_sub_months(months)
                }?;
                d.checked_add_signed(chrono::Duration::days(sign * i64::from(iv.days)))?
                    .checked_add_signed(chrono::Duration::microseconds(sign * iv.micros))
            });
            match moved {
                Some(d) => d.and_utc().timestamp_micros() as f64,
                // Past the calendar's range: past every value.
                None if forward => f64::INFINITY,
                None => f64::NEG_INFINITY,
            }
        }
    }
}

/// Each row's frame as sorted positions `[lo, hi)` (empty when lo >= hi).
/// `keys` are the ORDER BY key's values for a RANGE frame with an offset.
fn frames(
    w: &WindowExpr,
    order: &[usize],
    partitions: &[(usize, usize)],
    peers: &[u32],
    keys: Option<&Vec<Option<f64>>>,
) -> Vec<(usize, usize)> {
    use crate::logical::{FrameBound as B, WindowFrame};
    let frame = w.frame.unwrap_or(if w.order_by.is_empty() {
        WindowFrame {
            rows: false,
            start: B::UnboundedPreceding,
            end: B::UnboundedFollowing,
        }
    } else {
        WindowFrame {
            rows: false,
            start: B::UnboundedPreceding,
            end: B::CurrentRow,
        }
    });
    let mut out = vec![(0, 0); order.len()];
    for &(start, end) in partitions {
        // The first and one-past-last position of each position's peer group.
        let mut first_peer = vec![0; end - start];
        let mut after_peer = vec![0; end - start];
        let mut g = start;
        while g < end {
            let mut e = g + 1;
            while e < end && peers[order[e]] == peers[order[g]] {
                e += 1;
            }
            for p in g..e {
                first_peer[p - start] = g;
                after_peer[p - start] = e;
            }
            g = e;
        }
        // With a RANGE offset: the positions whose key is not NULL (NULLs sort
        // together at one end), and the key read in the sort's direction,
        // nondecreasing over them.
        let descending = w.order_by.first().is_some_and(|k| k.descending);
        let direction = if descending { -1.0 } else { 1.0 };
        let key_at = |p: usize| keys.and_then(|k| k[order[p]]);
        let non_null = {
            let lo = (start..end).find(|p| key_at(*p).is_some()).unwrap_or(end);
            let hi = (lo..end).find(|p| key_at(*p).is_none()).unwrap_or(end);
            lo..hi
        };
        // The first position of `non_null` whose key, in the sort's direction,
        // is past `target` (or reaches it, when `inclusive`).
        let search = |target: f64, inclusive: bool| -> usize {
            let target = direction * target;
            let slice = &order[non_null.clone()];
            non_null.start
                + slice.partition_point(|row| {
                    let k = direction * keys.and_then(|k| k[*row]).unwrap_or(0.0);
                    if inclusive {
                        k < target
                    } else {
                        k <= target
                    }
                })
        };
        for pos in start..end {
            let at = |b: B, is_start: bool| -> usize {
                match b {
                    B::RangePreceding(off) | B::RangeFollowing(off) => {
                        let Some(v) = key_at(pos) else {
                            // A NULL key's frame bound is its NULL peers.
                            return if is_start {
                                first_peer[pos - start]
                            } else {
                                after_peer[pos - start]
                            };
                        };
                        // PRECEDING is against the sort, FOLLOWING with it.
                        let forward = matches!(b, B::RangeFollowing(_)) != descending;
                        search(moved(v, off, forward), is_start)
                    }
                    B::UnboundedPreceding => start,
                    B::UnboundedFollowing => end,
                    B::Preceding(k) => {
                        let p = pos.saturating_sub(k as usize).max(start);
                        if is_start {
                            p
                        } else {
                            (p + 1).min(end).max(start)
                        }
                    }
                    B::Following(k) => {
                        let p = pos.saturating_add(k as usize);
                        if is_start {
                            p.min(end)
                        } else {
                            (p + 1).min(end)
                        }
                    }
                    B::CurrentRow if frame.rows => {
                        if is_start {
                            pos
                        } else {
                            pos + 1
                        }
                    }
                    B::CurrentRow => {
                        if is_start {
                            first_peer[pos - start]
                        } else {
                            after_peer[pos - start]
                        }
                    }
                }
            };
            let lo = at(frame.start, true);
            let hi = at(frame.end, false);
            // `n PRECEDING` as an end before the partition's start is empty.
            let hi = match frame.end {
                B::Preceding(k) if (pos as u64) < start as u64 + k => start,
                _ => hi,
            };
            out[order[pos]] = (lo, hi.max(lo));
        }
    }
    out
}

/// first_value, last_value and nth_value: the argument at a position of the
/// frame, NULL where the frame has no such row.
fn frame_value(
    batch: &RecordBatch,
    w: &WindowExpr,
    order: &[usize],
    frames: &[(usize, usize)],
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let arg = match &w.arg {
        Some(a) => crate::eval::decode_dictionary(&evaluate(a, batch, ctx)?)?,
        None => return Err(Error::Internal("first_value without its argument".into())),
    };
    let idx: UInt32Array = frames
        .iter()
        .map(|&(lo, hi)| {
            let pos = match w.func {
                WindowFunction::FirstValue => lo,
                WindowFunction::LastValue => hi.wrapping_sub(1),
                WindowFunction::NthValue(k) => lo.saturating_add(k as usize - 1),
                _ => lo,
            };
            (lo < hi && pos >= lo && pos < hi).then(|| order[pos] as u32)
        })
        .collect();
    Ok(take(arg.as_ref(), &idx, None)?)
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

/// An aggregate over each row's frame: count, sum and avg from prefix sums
/// in window order; min and max from running extremes when the frame reaches
/// an edge of its partition (the default frame does), else by scanning it.
#[allow(clippy::too_many_arguments)]
fn framed_aggregate(
    batch: &RecordBatch,
    input: &PlanSchema,
    f: AggregateFunction,
    w: &WindowExpr,
    order: &[usize],
    partitions: &[(usize, usize)],
    frames: &[(usize, usize)],
    ctx: &QueryContext,
) -> Result<ArrayRef> {
    let n = batch.num_rows();
    let values: Option<Float64Array> = match &w.arg {
        Some(a) => {
            let v = crate::eval::decode_dictionary(&evaluate(a, batch, ctx)?)?;
            let numeric = matches!(
                v.data_type(),
                DataType::Int32 | DataType::Int64 | DataType::Float64
            );
            if !numeric && !matches!(f, AggregateFunction::Count) {
                return Err(Error::NotSupported(format!(
                    "{}() OVER (ORDER BY ... or a frame) on type {}",
                    f.name(),
                    crate::format::sql_type_name(v.data_type())
                )));
            }
            let as_f64 = if numeric {
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
    // Prefix counts and sums over the sorted positions.
    let mut counts = vec![0i64; n + 1];
    let mut sums = vec![0f64; n + 1];
    for (pos, &row) in order.iter().enumerate() {
        let (c, x) = match &values {
            None => (1, 0.0),
            Some(v) if v.is_valid(row) => (1, v.value(row)),
            Some(_) => (0, 0.0),
        };
        counts[pos + 1] = counts[pos] + c;
        sums[pos + 1] = sums[pos] + x;
    }
    // Running extremes from each partition's start and to its end.
    let better = |a: Option<f64>, x: Option<f64>| match (a, x) {
        (None, x) | (x, None) => x,
        (Some(a), Some(x)) if f == AggregateFunction::Min => Some(a.min(x)),
        (Some(a), Some(x)) => Some(a.max(x)),
    };
    let value_at = |pos: usize| -> Option<f64> {
        let row = order[pos];
        values
            .as_ref()
            .and_then(|v| v.is_valid(row).then(|| v.value(row)))
    };
    let extremes = matches!(f, AggregateFunction::Min | AggregateFunction::Max);
    let mut from_start: Vec<Option<f64>> = vec![None; if extremes { n } else { 0 }];
    let mut to_end: Vec<Option<f64>> = vec![None; if extremes { n } else { 0 }];
    let mut bounds = vec![(0usize, 0usize); if extremes { n } else { 0 }];
    if extremes {
        for &(start, end) in partitions {
            let mut run = None;
            for pos in start..end {
                run = better(run, value_at(pos));
                from_start[pos] = run;
                bounds[pos] = (start, end);
            }
            let mut run = None;
            for pos in (start..end).rev() {
                run = better(run, value_at(pos));
                to_end[pos] = run;
            }
        }
    }
    let mut out: Vec<Option<f64>> = Vec::with_capacity(n);
    for (row, &(lo, hi)) in frames.iter().enumerate() {
        if row % 4096 == 0 {
            ctx.check()?;
        }
        let count = counts[hi] - counts[lo];
        let value = match f {
            AggregateFunction::Count | AggregateFunction::CountStar => Some(count as f64),
            AggregateFunction::Sum => (count > 0).then(|| sums[hi] - sums[lo]),
            AggregateFunction::Avg => (count > 0).then(|| (sums[hi] - sums[lo]) / count as f64),
            AggregateFunction::Min | AggregateFunction::Max if lo < hi => {
                let (start, end) = bounds[lo];
                if lo == start {
                    from_start[hi - 1]
                } else if hi == end {
                    to_end[lo]
                } else {
                    (lo..hi).fold(None, |acc, pos| better(acc, value_at(pos)))
                }
            }
            AggregateFunction::Min | AggregateFunction::Max => None,
            other => {
                return Err(Error::NotSupported(format!(
                    "{}() OVER (ORDER BY ... or a frame)",
                    other.name()
                )))
            }
        };
        out.push(value);
    }
    let out: ArrayRef = Arc::new(Float64Array::from(out));
    Ok(arrow::compute::cast(&out, &w.data_type(input))?)
}
