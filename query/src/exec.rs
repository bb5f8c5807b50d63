//! Executes a logical plan into record batches. Scans, filters over scans and
//! aggregations over scans take the parallel segment fast path ([`crate::scan`]);
//! every other operator works batch by batch with the Arrow kernels.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat_batches, lexsort_to_indices, SortColumn, SortOptions};
use arrow::datatypes::SchemaRef;

use crate::aggregate::{spill, AggregateSpec, Aggregator, FoldRows};
use crate::cast::cast_array;
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::eval::{evaluate, evaluate_predicate, filter_batch};
use crate::join::hash_join;
use crate::logical::{Expr, LogicalPlan, PlanSchema, TableSource};
use crate::scan;

/// Runs `plan` to completion.
///
/// # Errors
/// Any evaluation error, [`Error::Cancelled`] on timeout or cancel, and
/// [`Error::ResourcesExhausted`] past the memory bound.
pub fn execute(plan: &LogicalPlan, ctx: &QueryContext) -> Result<Vec<RecordBatch>> {
    if !ctx.profiling() {
        return execute_node(plan, ctx);
    }
    let start = std::time::Instant::now();
    let out = execute_node(plan, ctx)?;
    let rows = out.iter().map(RecordBatch::num_rows).sum();
    ctx.record_operator(plan.node_id(), start.elapsed(), rows);
    Ok(out)
}

fn execute_node(plan: &LogicalPlan, ctx: &QueryContext) -> Result<Vec<RecordBatch>> {
    ctx.check()?;
    let schema = plan.schema().arrow_schema();
    match plan {
        LogicalPlan::Scan {
            source,
            projection,
            filter,
            limit,
            ..
        } => match source {
            TableSource::Stored(table) => {
                scan::scan(table, filter.as_ref(), projection, *limit, schema, ctx)
            }
            TableSource::Virtual { batch, .. } => {
                let batch = match filter {
                    Some(f) => {
                        let mask = evaluate_predicate(f, batch, ctx)?;
                        filter_batch(batch, &mask)?
                    }
                    None => batch.clone(),
                };
                let columns = projection
                    .iter()
                    .map(|c| Arc::clone(batch.column(*c)))
                    .collect();
                Ok(vec![RecordBatch::try_new_with_options(
                    schema,
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
                )?])
            }
        },
        LogicalPlan::Values { rows, schema: s } => values(rows, s, ctx),
        LogicalPlan::Unnest { array, .. } => {
            let one_row = one_row_batch()?;
            let value = crate::format::format_value(
                evaluate(array, &one_row, ctx)?.as_ref(),
                0,
                sluice_storage::zone::Zone::UTC,
            )?;
            let items = value
                .map(|v| crate::binder::parse_array_text(&v))
                .unwrap_or_default();
            let column: ArrayRef = Arc::new(arrow::array::StringArray::from(items));
            Ok(vec![RecordBatch::try_new(schema, vec![column])?])
        }
        LogicalPlan::Window { input, windows, .. } => {
            let batches = execute(input, ctx)?;
            Ok(vec![crate::window::execute_window(
                &batches,
                input.schema(),
                windows,
                schema,
                ctx,
            )?])
        }
        LogicalPlan::GenerateSeries {
            start, stop, step, ..
        } => generate_series(start, stop, step.as_ref(), schema, ctx),
        LogicalPlan::Filter { input, predicate } => {
            let mut out = Vec::new();
            for batch in execute(input, ctx)? {
                ctx.check()?;
                let mask = evaluate_predicate(predicate, &batch, ctx)?;
                let b = filter_batch(&batch, &mask)?;
                if b.num_rows() > 0 {
                    out.push(b);
                }
            }
            Ok(out)
        }
        LogicalPlan::Project { input, exprs, .. } => project(input, exprs, schema, ctx),
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            ..
        } => {
            let input_schema = input.schema();
            let group_types = group.iter().map(|g| g.data_type(input_schema)).collect();
            let specs: Vec<AggregateSpec> = aggregates
                .iter()
                .map(|a| AggregateSpec {
                    expr: a.clone(),
                    arg_type: a.arg.as_ref().map(|e| e.data_type(input_schema)),
                })
                .collect();
            let args: Vec<Option<Expr>> = aggregates.iter().map(|a| a.arg.clone()).collect();
            let template = Aggregator::new(group_types, specs, ctx.clone())?;
            let plain = !group
                .iter()
                .chain(args.iter().flatten())
                .any(Expr::has_subquery);
            let grouped = !group.is_empty();
            if let Some((table, projection, filter)) = stored_scan(input).filter(|_| plain) {
                // The scan's output column i is the table's column projection[i].
                let to_table = |e: &Expr| e.remap_columns(&|i| projection[i]);
                let table_group: Vec<Expr> = group.iter().map(to_table).collect();
                let table_args: Vec<Option<Expr>> =
                    args.iter().map(|a| a.as_ref().map(to_table)).collect();
                let in_memory = scan::scan_aggregate(
                    table,
                    filter,
                    &table_group,
                    &table_args,
                    &template,
                    Arc::clone(&schema),
                    ctx,
                );
                return match in_memory {
                    Ok(batch) => Ok(vec![batch]),
                    // Only the aggregators take memory in the scan: their groups
                    // do not fit, so they go through disk, the rows read again.
                    Err(Error::ResourcesExhausted(_)) if grouped => scan::scan_aggregate_spilled(
                        table,
                        filter,
                        &table_group,
                        &table_args,
                        &template,
                        schema,
                        ctx,
                    ),
                    Err(e) => Err(e),
                };
            }
            let input = execute(input, ctx)?;
            let mut agg = template.empty_like()?;
            let mut folded = Ok(());
            for batch in &input {
                ctx.check()?;
                let fold = fold_rows(batch, group, &args, ctx)?;
                folded = agg.update(&fold.keys, &fold.args, fold.rows);
                if folded.is_err() {
                    break;
                }
            }
            match folded {
                Ok(()) => Ok(vec![agg.finish(schema)?]),
                Err(Error::ResourcesExhausted(_)) if grouped => {
                    drop(agg);
                    let folds = input.iter().map(|b| fold_rows(b, group, &args, ctx));
                    spill::aggregate_spilled(folds, &template, schema, ctx)
                }
                Err(e) => Err(e),
            }
        }
        LogicalPlan::Sort { input, keys, fetch } => {
            let batches = execute(input, ctx)?;
            match fetch {
                Some(k) if batches.len() > 1 && *k <= TOP_K_MAX_ROWS => {
                    top_k(batches, keys, *k, &schema, ctx)
                }
                _ => {
                    let batch = concat_batches(&schema, &batches)?;
                    drop(batches);
                    if batch.num_rows() == 0 {
                        return Ok(vec![]);
                    }
                    Ok(vec![sort_batch(&batch, keys, *fetch, ctx)?])
                }
            }
        }
        LogicalPlan::Limit { input, skip, fetch } => {
            let mut skip = *skip;
            let mut remaining = fetch.unwrap_or(usize::MAX);
            let mut out = Vec::new();
            for batch in execute(input, ctx)? {
                if remaining == 0 {
                    break;
                }
                let rows = batch.num_rows();
                if skip >= rows {
                    skip -= rows;
                    continue;
                }
                let take = (rows - skip).min(remaining);
                out.push(batch.slice(skip, take));
                remaining -= take;
                skip = 0;
            }
            Ok(out)
        }
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            ..
        } => {
            let l = execute(left, ctx)?;
            let r = execute(right, ctx)?;
            let l = concat_batches(&left.schema().arrow_schema(), &l)?;
            let r = concat_batches(&right.schema().arrow_schema(), &r)?;
            let out = hash_join(&l, &r, *kind, on, filter.as_ref(), schema, ctx)?;
            Ok(vec![out])
        }
        LogicalPlan::ProjectSet {
            input, functions, ..
        } => {
            let mut out = Vec::new();
            for batch in execute(input, ctx)? {
                ctx.check()?;
                let b = crate::set_functions::expand(&batch, functions, &schema, ctx)?;
                if b.num_rows() > 0 {
                    out.push(b);
                }
            }
            Ok(out)
        }
        LogicalPlan::Union { inputs, .. } => {
            let mut out = Vec::new();
            for input in inputs {
                for batch in execute(input, ctx)? {
                    out.push(conform(&batch, &schema, ctx)?);
                }
            }
            Ok(out)
        }
    }
}

/// If `plan` is a scan of a stored table with no row limit: the table, the
/// table column behind each output column, and the scan's filter. The
/// aggregate fast path folds such a scan's blocks straight into its groups.
fn stored_scan(
    plan: &LogicalPlan,
) -> Option<(&Arc<sluice_storage::Table>, &[usize], Option<&Expr>)> {
    match plan {
        LogicalPlan::Scan {
            source: TableSource::Stored(t),
            projection,
            filter,
            limit: None,
            ..
        } if !filter.as_ref().is_some_and(Expr::has_subquery) => {
            Some((t, projection.as_slice(), filter.as_ref()))
        }
        _ => None,
    }
}

fn project(
    input: &LogicalPlan,
    exprs: &[Expr],
    schema: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    project_batches(&execute(input, ctx)?, exprs, schema, ctx)
}

pub(crate) fn project_batches(
    batches: &[RecordBatch],
    exprs: &[Expr],
    schema: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|batch| {
            ctx.check()?;
            let columns = exprs
                .iter()
                .zip(schema.fields())
                .map(|(e, f)| {
                    let a = evaluate(e, batch, ctx)?;
                    if a.data_type() == f.data_type() {
                        Ok(a)
                    } else {
                        cast_array(&a, f.data_type(), ctx.options().zone)
                    }
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?)
        })
        .collect()
}

/// Casts a batch's columns to `schema`'s types (for UNION ALL and VALUES).
fn conform(batch: &RecordBatch, schema: &SchemaRef, ctx: &QueryContext) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast_array(c, f.data_type(), ctx.options().zone))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

fn values(rows: &[Vec<Expr>], schema: &PlanSchema, ctx: &QueryContext) -> Result<Vec<RecordBatch>> {
    let arrow_schema = schema.arrow_schema();
    let one_row = one_row_batch()?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let columns = row
            .iter()
            .map(|e| evaluate(e, &one_row, ctx))
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new_with_options(
            Arc::new(arrow::datatypes::Schema::new(
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        arrow::datatypes::Field::new(format!("c{i}"), c.data_type().clone(), true)
                    })
                    .collect::<Vec<_>>(),
            )),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        out.push(conform(&batch, &arrow_schema, ctx)?);
    }
    if out.len() > 1 {
        return Ok(vec![concat_batches(&arrow_schema, &out)?]);
    }
    Ok(out)
}

/// The largest LIMIT that [`top_k`] serves; past it a sort of everything
/// costs less than merging every batch into a running top.
const TOP_K_MAX_ROWS: usize = 64 * 1024;

/// The first `k` rows of `batches` in `keys` order, a batch at a time: a
/// running top k is merged with each batch and cut back to k, so the sort
/// holds k rows and one batch rather than a copy of all of them (the
/// partitions of a spilled GROUP BY under `ORDER BY ... LIMIT k`), and no
/// more than k rows of any batch are ever ordered.
fn top_k(
    batches: Vec<RecordBatch>,
    keys: &[crate::logical::SortKey],
    k: usize,
    schema: &SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    let mut top: Option<RecordBatch> = None;
    for batch in batches {
        ctx.check()?;
        if batch.num_rows() == 0 {
            continue;
        }
        let candidates = match top.take() {
            Some(top) => concat_batches(schema, [&top, &batch])?,
            None => batch,
        };
        top = Some(sort_batch(&candidates, keys, Some(k), ctx)?);
    }
    Ok(top.into_iter().collect())
}

/// `batch` ordered by `keys`, only its first `fetch` rows if given (a
/// partial sort); its memory is accounted while the order is worked out.
fn sort_batch(
    batch: &RecordBatch,
    keys: &[crate::logical::SortKey],
    fetch: Option<usize>,
    ctx: &QueryContext,
) -> Result<RecordBatch> {
    let bytes = batch.get_array_memory_size();
    ctx.reserve(bytes)?;
    let sorted = (|| {
        let columns = keys
            .iter()
            .map(|k| {
                Ok(SortColumn {
                    values: evaluate(&k.expr, batch, ctx)?,
                    options: Some(SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    }),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let indices = lexsort_to_indices(&columns, fetch)?;
        Ok(arrow::compute::take_record_batch(batch, &indices)?)
    })();
    ctx.release(bytes);
    sorted
}

/// A batch's group keys and aggregate arguments, evaluated.
fn fold_rows(
    batch: &RecordBatch,
    group: &[Expr],
    args: &[Option<Expr>],
    ctx: &QueryContext,
) -> Result<FoldRows> {
    Ok(FoldRows {
        keys: group
            .iter()
            .map(|g| evaluate(g, batch, ctx))
            .collect::<Result<Vec<_>>>()?,
        args: args
            .iter()
            .map(|a| a.as_ref().map(|e| evaluate(e, batch, ctx)).transpose())
            .collect::<Result<Vec<_>>>()?,
        rows: batch.num_rows(),
    })
}

/// Rows of `generate_series`: integers stepping by an integer, or timestamps
/// stepping by an interval; bounds inclusive; a NULL bound gives no rows.
/// The timestamps from `lo` to `hi` (microseconds) `step` apart: months and
/// days step on the calendar, as PostgreSQL's do. At most `max_rows`.
///
/// # Errors
/// A zero step (22023), more than `max_rows` values (53000), a timestamp out of
/// range (22008).
pub(crate) fn timestamp_series(
    lo: i64,
    hi: i64,
    step: sluice_storage::Interval,
    max_rows: usize,
) -> Result<Vec<i64>> {
    if step.approx_micros() == 0 {
        return Err(Error::InvalidParameter(
            "step size cannot equal zero".into(),
        ));
    }
    let mut values = Vec::new();
    let mut cur = lo;
    let forward = step.approx_micros() > 0;
    while (forward && cur <= hi) || (!forward && cur >= hi) {
        values.push(cur);
        if values.len() > max_rows {
            return Err(Error::ResourcesExhausted(format!(
                "generate_series of more than {max_rows} rows"
            )));
        }
        cur = sluice_storage::types::micros_to_datetime(cur)
            .and_then(|d| {
                let d = if step.months >= 0 {
                    d.checked_add_months(chrono::Months::new(step.months as u32))
                } else {
                    d.checked_sub_months(chrono::Months::new(step.months.unsigned_abs()))
                }?;
                d.checked_add_signed(chrono::Duration::days(step.days as i64))?
                    .checked_add_signed(chrono::Duration::microseconds(step.micros))
            })
            .map(|d| d.and_utc().timestamp_micros())
            .ok_or_else(|| Error::NumericOutOfRange("timestamp out of range".into()))?;
    }
    Ok(values)
}

fn generate_series(
    start: &Expr,
    stop: &Expr,
    step: Option<&Expr>,
    schema: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{
        DataType, Int64Type, IntervalMonthDayNanoType, TimestampMicrosecondType,
    };
    const MAX_ROWS: usize = 10_000_000;
    let one_row = one_row_batch()?;
    let out_type = schema.field(0).data_type().clone();
    let value = |e: &Expr| evaluate(e, &one_row, ctx);
    let (a, b) = (value(start)?, value(stop)?);
    if a.is_null(0) || b.is_null(0) {
        return Ok(vec![]);
    }
    let too_many =
        || Error::ResourcesExhausted(format!("generate_series of more than {MAX_ROWS} rows"));
    let column: ArrayRef = if let DataType::Timestamp(_, tz) = &out_type {
        let (lo, hi) = (
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            b.as_primitive::<TimestampMicrosecondType>().value(0),
        );
        let step = match step {
            Some(s) => value(s)?,
            None => return Err(Error::Internal("timestamp series without a step".into())),
        };
        if step.is_null(0) {
            return Ok(vec![]);
        }
        let iv =
            crate::format::to_interval(step.as_primitive::<IntervalMonthDayNanoType>().value(0));
        let values = timestamp_series(lo, hi, iv, MAX_ROWS)?;
        Arc::new(
            arrow::array::TimestampMicrosecondArray::from(values).with_timezone_opt(tz.clone()),
        )
    } else {
        let as_i64 = |x: &ArrayRef| -> Result<i64> {
            Ok(arrow::compute::cast(x, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .value(0))
        };
        let (lo, hi) = (as_i64(&a)?, as_i64(&b)?);
        let step = match step {
            Some(s) => {
                let v = value(s)?;
                if v.is_null(0) {
                    return Ok(vec![]);
                }
                as_i64(&v)?
            }
            None => 1,
        };
        if step == 0 {
            return Err(Error::InvalidParameter(
                "step size cannot equal zero".into(),
            ));
        }
        let count = if (step > 0 && lo > hi) || (step < 0 && lo < hi) {
            0
        } else {
            ((hi as i128 - lo as i128) / step as i128 + 1) as u128
        };
        if count > MAX_ROWS as u128 {
            return Err(too_many());
        }
        ctx.reserve(count as usize * 8)?;
        let values: Int64Array = (0..count as i64).map(|i| lo + i * step).collect();
        arrow::compute::cast(&(Arc::new(values) as ArrayRef), &out_type)?
    };
    Ok(vec![RecordBatch::try_new(schema, vec![column])?])
}

/// A batch of one row and no columns: what constant expressions are evaluated on.
pub fn one_row_batch() -> Result<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?)
}

/// Flattens batches into one (empty batches allowed).
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    concat_batches(schema, batches).map_err(Error::from)
}
