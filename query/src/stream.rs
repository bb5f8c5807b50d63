//! Query results pulled batch by batch: a plan whose top is a table scan with
//! filters, projections and a LIMIT above it produces its rows as the client
//! reads them, a few blocks at a time; any other plan runs to completion first
//! and is then handed out a batch at a time. The server sends each batch as it
//! comes, so the first rows of a large result leave before the last are read,
//! and a LIMIT that the client stops short of stops the scan.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::eval::{evaluate_predicate, filter_batch};
use crate::exec::{execute, project_batches};
use crate::logical::{LogicalPlan, TableSource};
use crate::scan::ScanStream;

/// Batches as they are produced.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// A query's result, read batch by batch; the statement's snapshot, deadline
/// and cancel flag stay with it until it is dropped.
pub struct RowStream {
    schema: SchemaRef,
    batches: BatchIter,
    done: bool,
}

impl RowStream {
    /// The rows of `plan`, produced as they are pulled.
    ///
    /// # Errors
    /// What planning the first scan found (a corrupt segment's zone maps).
    pub fn new(plan: &LogicalPlan, ctx: &QueryContext) -> Result<RowStream> {
        Ok(RowStream {
            schema: plan.schema().arrow_schema(),
            batches: stream(plan, ctx)?,
            done: false,
        })
    }

    /// Rows already computed (a command's, or a materialised result).
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> RowStream {
        RowStream {
            schema,
            batches: Box::new(batches.into_iter().map(Ok)),
            done: false,
        }
    }

    /// The result's columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl Iterator for RowStream {
    type Item = Result<RecordBatch>;

    /// The next batch; after an error, nothing more. A panic inside Sluice is
    /// this statement's error, as in [`crate::Engine::execute`].
    fn next(&mut self) -> Option<Result<RecordBatch>> {
        if self.done {
            return None;
        }
        let batches = &mut self.batches;
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batches.next()))
            .unwrap_or_else(|_| Some(Err(Error::Internal("statement panicked".into()))));
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

/// The batches of `plan`, pulled lazily where the plan is a pipeline over a
/// stored table's scan.
fn stream(plan: &LogicalPlan, ctx: &QueryContext) -> Result<BatchIter> {
    match plan {
        LogicalPlan::Scan {
            source: TableSource::Stored(table),
            projection,
            filter,
            limit,
            ..
        } => Ok(Box::new(ScanStream::new(
            table,
            filter.as_ref(),
            projection,
            *limit,
            plan.schema().arrow_schema(),
            ctx,
        )?)),
        LogicalPlan::Filter { input, predicate } => {
            let (predicate, ctx) = (predicate.clone(), ctx.clone());
            Ok(Box::new(stream(input, &ctx)?.filter_map(move |batch| {
                let filtered = batch.and_then(|b| {
                    ctx.check()?;
                    let mask = evaluate_predicate(&predicate, &b, &ctx)?;
                    filter_batch(&b, &mask)
                });
                match filtered {
                    Ok(b) if b.num_rows() == 0 => None,
                    other => Some(other),
                }
            })))
        }
        LogicalPlan::Project { input, exprs, .. } => {
            let (exprs, ctx) = (exprs.clone(), ctx.clone());
            let schema = plan.schema().arrow_schema();
            Ok(Box::new(stream(input, &ctx)?.map(move |batch| {
                let b = batch?;
                let mut out = project_batches(&[b], &exprs, Arc::clone(&schema), &ctx)?;
                out.pop()
                    .ok_or_else(|| Error::Internal("a projection lost its batch".into()))
            })))
        }
        LogicalPlan::Limit { input, skip, fetch } => Ok(Box::new(Limited {
            input: stream(input, ctx)?,
            skip: *skip,
            remaining: fetch.unwrap_or(usize::MAX),
        })),
        // The series is one array; handed on in slices, the projections over
        // it (an INSERT ... SELECT's generator) work a slice at a time.
        LogicalPlan::GenerateSeries { .. } => Ok(Box::new(
            execute(plan, ctx)?
                .into_iter()
                .flat_map(|batch| slices(batch, SERIES_SLICE_ROWS))
                .map(Ok),
        )),
        _ => Ok(Box::new(execute(plan, ctx)?.into_iter().map(Ok))),
    }
}

/// Rows per batch handed on from a `generate_series`.
const SERIES_SLICE_ROWS: usize = 64 * 1024;

/// `batch` as batches of at most `rows` rows (views of it, not copies).
pub(crate) fn slices(batch: RecordBatch, rows: usize) -> impl Iterator<Item = RecordBatch> {
    let total = batch.num_rows();
    (0..total)
        .step_by(rows.max(1))
        .map(move |at| batch.slice(at, rows.min(total - at)))
}

/// OFFSET and LIMIT over a stream: stops pulling its input once enough rows passed.
struct Limited {
    input: BatchIter,
    skip: usize,
    remaining: usize,
}

impl Iterator for Limited {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        while self.remaining > 0 {
            let batch = match self.input.next()? {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let rows = batch.num_rows();
            if self.skip >= rows {
                self.skip -= rows;
                continue;
            }
            let take = (rows - self.skip).min(self.remaining);
            let out = batch.slice(self.skip, take);
            self.skip = 0;
            self.remaining -= take;
            return Some(Ok(out));
        }
        None
    }
}
