//! Executes a logical plan into record batches. Scans, filters over scans and
//! aggregations over scans take the parallel segment fast path ([`crate::scan`]);
//! every other operator works batch by batch with the Arrow kernels.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat_batches, lexsort_to_indices, SortColumn, SortOptions};
use arrow::datatypes::SchemaRef;

use crate::aggregate::{AggregateSpec, Aggregator};
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
    ctx.check()?;
    let schema = plan.schema().arrow_schema();
    match plan {
        LogicalPlan::Scan { source, .. } => {
            let TableSource::Stored(table) = source;
            let all: Vec<usize> = (0..schema.fields().len()).collect();
            scan::scan(table, None, &all, schema, ctx)
        }
        LogicalPlan::Values { rows, schema: s } => values(rows, s, ctx),
        LogicalPlan::Filter { input, predicate } => {
            if let LogicalPlan::Scan { source, .. } = input.as_ref() {
                let TableSource::Stored(table) = source;
                let all: Vec<usize> = (0..schema.fields().len()).collect();
                return scan::scan(table, Some(predicate), &all, schema, ctx);
            }
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
            if let Some((table, filter)) = table_scan(input) {
                let batch =
                    scan::scan_aggregate(table, filter, group, &args, &template, schema, ctx)?;
                return Ok(vec![batch]);
            }
            let mut agg = template;
            for batch in execute(input, ctx)? {
                ctx.check()?;
                let keys = group
                    .iter()
                    .map(|g| evaluate(g, &batch, ctx))
                    .collect::<Result<Vec<_>>>()?;
                let values = args
                    .iter()
                    .map(|a| a.as_ref().map(|e| evaluate(e, &batch, ctx)).transpose())
                    .collect::<Result<Vec<_>>>()?;
                agg.update(&keys, &values, batch.num_rows())?;
            }
            Ok(vec![agg.finish(schema)?])
        }
        LogicalPlan::Sort { input, keys, fetch } => {
            let batches = execute(input, ctx)?;
            let batch = concat_batches(&schema, &batches)?;
            if batch.num_rows() == 0 {
                return Ok(vec![]);
            }
            let bytes = batch.get_array_memory_size();
            ctx.reserve(bytes)?;
            let columns = keys
                .iter()
                .map(|k| {
                    Ok(SortColumn {
                        values: evaluate(&k.expr, &batch, ctx)?,
                        options: Some(SortOptions {
                            descending: k.descending,
                            nulls_first: k.nulls_first,
                        }),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let indices = lexsort_to_indices(&columns, *fetch)?;
            let sorted = arrow::compute::take_record_batch(&batch, &indices)?;
            ctx.release(bytes);
            Ok(vec![sorted])
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

/// If `plan` is a stored table's scan, possibly under one filter, the table and filter.
fn table_scan(plan: &LogicalPlan) -> Option<(&Arc<sluice_storage::Table>, Option<&Expr>)> {
    match plan {
        LogicalPlan::Scan {
            source: TableSource::Stored(t),
            ..
        } => Some((t, None)),
        LogicalPlan::Filter { input, predicate } => match input.as_ref() {
            LogicalPlan::Scan {
                source: TableSource::Stored(t),
                ..
            } => Some((t, Some(predicate))),
            _ => None,
        },
        _ => None,
    }
}

fn project(
    input: &LogicalPlan,
    exprs: &[Expr],
    schema: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    // Over a table scan, read only the columns the expressions use.
    let batches = if let Some((table, filter)) = table_scan(input) {
        let mut used: Vec<usize> = exprs.iter().flat_map(|e| e.columns()).collect();
        used.sort_unstable();
        used.dedup();
        let fields: Vec<_> = used
            .iter()
            .map(|i| input.schema().fields[*i].clone())
            .collect();
        let scan_schema = PlanSchema { fields }.arrow_schema();
        let batches = scan::scan(table, filter, &used, scan_schema, ctx)?;
        let exprs: Vec<Expr> = exprs
            .iter()
            .map(|e| e.remap_columns(&|i| used.iter().position(|u| *u == i).unwrap_or(usize::MAX)))
            .collect();
        return project_batches(&batches, &exprs, schema, ctx);
    } else {
        execute(input, ctx)?
    };
    project_batches(&batches, exprs, schema, ctx)
}

fn project_batches(
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
                        cast_array(&a, f.data_type(), ctx.options().utc_offset_secs)
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
        .map(|(c, f)| cast_array(c, f.data_type(), ctx.options().utc_offset_secs))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

fn values(rows: &[Vec<Expr>], schema: &PlanSchema, ctx: &QueryContext) -> Result<Vec<RecordBatch>> {
    let arrow_schema = schema.arrow_schema();
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
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

/// Flattens batches into one (empty batches allowed).
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    concat_batches(schema, batches).map_err(Error::from)
}
