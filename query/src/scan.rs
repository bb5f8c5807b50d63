//! The fast path: filters and aggregations pushed into a scan of a table's segments.
//!
//! The segments' blocks are morsels; worker threads (one per core) take them from a
//! shared counter, filter each block, and either return the selected rows or fold
//! them into a per-worker partial aggregate. Partials merge at the end.
//!
//! Dictionary-encoded TEXT columns are never decoded row by row when avoidable: a
//! predicate or key that reads one TEXT column and cannot fail (`status = 'NEW'`,
//! `item LIKE 'Pi%'`, `lower(k)`) is evaluated once per dictionary entry and mapped
//! through the row keys, and GROUP BY a TEXT column groups on dictionary ids.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use roaring::RoaringBitmap;
use sluice_storage::segment::format::Stat;
use sluice_storage::segment::SealedSegment;
use sluice_storage::{SegmentSnapshot, Table};

use crate::aggregate::{spill, Aggregator, FoldRows};
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::eval::{decode_dictionary, evaluate, filter_batch, null_as_false};
use crate::logical::{BinaryOp, Expr, ScalarFunction};

/// One block of one segment: rows in memory, or a block of a sealed segment file
/// (decoded when a worker takes it, and only the columns the query reads).
enum Morsel {
    Memory {
        batch: RecordBatch,
        /// The block's first row in its segment.
        first_row: u32,
        /// The segment's rows superseded by later rows of their key.
        cleared: Option<Arc<RoaringBitmap>>,
        /// Rows of the block its equality indexes selected, if they were used.
        selection: Option<Vec<u16>>,
    },
    Sealed {
        segment: Arc<SealedSegment>,
        block: usize,
        rows: usize,
        /// The block's first row in the segment.
        first_row: u32,
        /// Rows of the segment the inverted indexes selected, if they were used.
        selection: Option<Arc<RoaringBitmap>>,
        /// The segment's rows superseded by later rows of their key.
        cleared: Option<Arc<RoaringBitmap>>,
    },
    /// The blocks of one segment where the indexes selected a few rows each
    /// (see [`Morsel::sparse_rows`]), read as one: their rows are taken out
    /// and filtered and aggregated together. One restaurant's thousand rows
    /// spread over a hundred blocks cost ten batches, not a hundred.
    Gathered(Vec<Morsel>),
}

impl Morsel {
    /// The block's valid rows as a mask, if an upsert superseded any of them:
    /// they are out before any filter or aggregate sees the block.
    fn valid_mask(&self) -> Option<BooleanArray> {
        let (rows, first_row, cleared) = match self {
            Morsel::Memory {
                batch,
                first_row,
                cleared,
                ..
            } => (batch.num_rows(), *first_row, cleared.as_ref()?),
            Morsel::Sealed {
                rows,
                first_row,
                cleared,
                ..
            } => (*rows, *first_row, cleared.as_ref()?),
            Morsel::Gathered(_) => return None,
        };
        let range = first_row..first_row + rows as u32;
        if cleared.range_cardinality(range.clone()) == 0 {
            return None;
        }
        let mut mask = vec![true; rows];
        for r in cleared.range(range) {
            mask[(r - first_row) as usize] = false;
        }
        Some(BooleanArray::from(mask))
    }

    /// The block's rows the inverted indexes selected, as a mask, when they are
    /// few enough that cutting the block down before the filter pays (under half);
    /// `None` to run the filter on every row.
    ///
    /// With `bound`, the mask whenever the selection leaves any row out: the
    /// scan left out conjuncts the selection answers (see
    /// [`Morsels::residual`]), so the filter alone would not.
    fn index_mask(&self, bound: bool) -> Option<BooleanArray> {
        let (rows, selected) = self.selected_count()?;
        if selected == rows || (!bound && selected * 2 >= rows) {
            return None;
        }
        let mut mask = vec![false; rows];
        for r in self.selected_rows() {
            mask[r as usize] = true;
        }
        Some(BooleanArray::from(mask))
    }

    /// The block's rows and how many of them its index selection holds, if
    /// the indexes were used.
    fn selected_count(&self) -> Option<(usize, usize)> {
        match self {
            Morsel::Memory {
                batch,
                selection: Some(rows),
                ..
            } => Some((batch.num_rows(), rows.len())),
            Morsel::Sealed {
                rows,
                first_row,
                selection: Some(selection),
                ..
            } => {
                let range = *first_row..*first_row + *rows as u32;
                Some((*rows, selection.range_cardinality(range) as usize))
            }
            _ => None,
        }
    }

    /// The rows of the block's index selection, as row numbers within the
    /// block, ascending (none without a selection).
    fn selected_rows(&self) -> Vec<u32> {
        match self {
            Morsel::Memory {
                selection: Some(rows),
                ..
            } => rows.iter().map(|r| u32::from(*r)).collect(),
            Morsel::Sealed {
                rows,
                first_row,
                selection: Some(selection),
                ..
            } => {
                let range = *first_row..*first_row + *rows as u32;
                selection.range(range).map(|r| r - first_row).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether the indexes selected at most one row in [`SPARSE_SHARE`] of
    /// the block (see [`Morsel::sparse_rows`]).
    fn is_sparse(&self) -> bool {
        self.selected_count()
            .is_some_and(|(rows, selected)| selected * SPARSE_SHARE <= rows)
    }

    /// The block's rows the indexes selected, when they are so few that taking
    /// them out of the block before the filter pays (at most one in
    /// [`SPARSE_SHARE`]): row numbers within the block, ascending, rows an
    /// upsert superseded left out. `None` to work on the whole block.
    fn sparse_rows(&self) -> Option<Vec<u32>> {
        if !self.is_sparse() {
            return None;
        }
        let selected = self.selected_rows();
        let (first_row, cleared) = match self {
            Morsel::Memory {
                first_row, cleared, ..
            }
            | Morsel::Sealed {
                first_row, cleared, ..
            } => (*first_row, cleared.as_ref()),
            Morsel::Gathered(_) => return None,
        };
        Some(match cleared {
            Some(cleared) => selected
                .into_iter()
                .filter(|r| !cleared.contains(first_row + r))
                .collect(),
            None => selected,
        })
    }

    /// `conjunct` evaluated without comparing decoded values row by row, if it
    /// compares an integer or timestamp column (position in `needed`) with a
    /// constant on a sealed block: by binary search when the block is known to
    /// be ascending, else on its packed codes. `None` to evaluate it the usual way.
    fn compare_codes(&self, conjunct: &Expr, needed: &[usize]) -> Result<Option<BooleanArray>> {
        let Morsel::Sealed { segment, block, .. } = self else {
            return Ok(None);
        };
        let Expr::Binary { op, left, right } = conjunct else {
            return Ok(None);
        };
        let (column, op, constant) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), other) => (*c, *op, other),
            (other, Expr::Column(c)) => (*c, crate::prune::flip(*op), other),
            _ => return Ok(None),
        };
        let (Some(&table_column), Some(value)) =
            (needed.get(column), crate::prune::integer_constant(constant))
        else {
            return Ok(None);
        };
        if segment.block_is_sorted(table_column, *block) {
            let values = segment.read_block(table_column, *block)?;
            if let Some(mask) = crate::packed::compare_sorted(&values, op, value) {
                return Ok(Some(mask));
            }
        }
        match segment.read_block_codes(table_column, *block)? {
            Some(codes) => crate::packed::compare(&codes, op, value),
            None => Ok(None),
        }
    }

    /// True if the block's zone map proves `conjunct` (an integer or
    /// timestamp column compared with a constant) true on every row, so it
    /// need not run: a table's retention filter on blocks well inside it, or
    /// a time filter on blocks wholly in range. Only for a column without
    /// NULLs, where a comparison cannot be NULL.
    fn implies(&self, conjunct: &Expr, needed: &[usize]) -> bool {
        let Morsel::Sealed { segment, block, .. } = self else {
            return false;
        };
        let Expr::Binary { op, left, right } = conjunct else {
            return false;
        };
        let (column, op, constant) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), other) => (*c, *op, other),
            (other, Expr::Column(c)) => (*c, crate::prune::flip(*op), other),
            _ => return false,
        };
        let (Some(&table_column), Some(value)) =
            (needed.get(column), crate::prune::integer_constant(constant))
        else {
            return false;
        };
        let Some(meta) = segment.footer().columns.get(table_column) else {
            return false;
        };
        let zone = meta.blocks.get(*block).map(|b| (b.min, b.max));
        let (Some(Stat::Int(min)), Some(Stat::Int(max))) = zone.unwrap_or((None, None)) else {
            return false;
        };
        meta.nulls.is_none()
            && match op {
                BinaryOp::GtEq => min >= value,
                BinaryOp::Gt => min > value,
                BinaryOp::LtEq => max <= value,
                BinaryOp::Lt => max < value,
                _ => false,
            }
    }

    /// The rows [`Morsel::sparse_rows`] selected, of a sealed block or of a
    /// [`Morsel::Gathered`] run of one sealed segment's blocks, as the segment's
    /// row numbers with the segment; `None` for rows in memory.
    fn sealed_sparse_rows(&self) -> Option<(&Arc<SealedSegment>, Vec<u32>)> {
        let parts = match self {
            Morsel::Gathered(parts) => parts.as_slice(),
            single => std::slice::from_ref(single),
        };
        let Some(Morsel::Sealed { segment, .. }) = parts.first() else {
            return None;
        };
        let mut rows = Vec::new();
        for part in parts {
            let Morsel::Sealed {
                segment: theirs,
                first_row,
                ..
            } = part
            else {
                return None;
            };
            if !Arc::ptr_eq(segment, theirs) {
                return None;
            }
            rows.extend(part.sparse_rows()?.into_iter().map(|r| first_row + r));
        }
        Some((segment, rows))
    }

    /// The `needed` columns of the rows [`Morsel::sealed_sparse_rows`] selected
    /// (see [`gather_rows`]); `None` for rows in memory.
    fn gather(&self, needed: &[usize], schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        let Some((segment, rows)) = self.sealed_sparse_rows() else {
            return Ok(None);
        };
        gather_rows(segment, &rows, needed, schema).map(Some)
    }

    /// The `needed` columns of `rows` (within the block, as
    /// [`Morsel::sparse_rows`] gives them), read in place on a sealed block,
    /// else taken out of the loaded block.
    fn take_rows(&self, rows: &[u32], needed: &[usize], schema: &SchemaRef) -> Result<RecordBatch> {
        if let Morsel::Sealed {
            segment, first_row, ..
        } = self
        {
            let rows: Vec<u32> = rows.iter().map(|r| first_row + r).collect();
            return gather_rows(segment, &rows, needed, schema);
        }
        let block = self.load(needed, schema)?;
        Ok(arrow::compute::take_record_batch(
            &block,
            &UInt32Array::from(rows.to_vec()),
        )?)
    }

    /// The morsel's columns `needed` (positions in the table), TEXT still
    /// dictionary-encoded.
    fn load(&self, needed: &[usize], schema: &SchemaRef) -> Result<RecordBatch> {
        match self {
            Morsel::Memory { batch, .. } => Ok(batch.project(needed)?),
            Morsel::Sealed { rows, .. } => self.load_rows(needed, schema, 0..*rows),
            Morsel::Gathered(parts) => {
                let mut pieces = Vec::with_capacity(parts.len());
                for part in parts {
                    let rows = part.sparse_rows().unwrap_or_default();
                    if !rows.is_empty() {
                        let block = part.load(needed, schema)?;
                        pieces.push(arrow::compute::take_record_batch(
                            &block,
                            &UInt32Array::from(rows),
                        )?);
                    }
                }
                let schema = Arc::new(schema.project(needed)?);
                // The blocks share their segment's dictionaries: concatenated
                // without merging them.
                Ok(arrow::compute::concat_batches(&schema, &pieces)?)
            }
        }
    }

    /// Rows `range` of a block's [`Morsel::load`]; a sealed block decodes
    /// only those rows where it can (see `SealedSegment::read_block_rows`).
    fn load_rows(
        &self,
        needed: &[usize],
        schema: &SchemaRef,
        range: std::ops::Range<usize>,
    ) -> Result<RecordBatch> {
        match self {
            Morsel::Memory { batch, .. } => {
                Ok(batch.project(needed)?.slice(range.start, range.len()))
            }
            Morsel::Gathered(_) => Err(Error::Internal("gathered rows are loaded whole".into())),
            Morsel::Sealed { segment, block, .. } => {
                let columns = needed
                    .iter()
                    .map(|c| segment.read_block_rows(*c, *block, range.clone()))
                    .collect::<sluice_storage::Result<Vec<_>>>()?;
                Ok(RecordBatch::try_new_with_options(
                    Arc::new(schema.project(needed)?),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(range.len())),
                )?)
            }
        }
    }
}

/// The table's segments as morsels, less the sealed blocks that `filter` (over the
/// table's columns) cannot match, the schema of their blocks, and what pruning did
/// (the caller fills in the rows selected).
fn morsels(table: &Table, filter: Option<&Expr>, ctx: &QueryContext) -> Result<Morsels> {
    let snapshot = ctx.snapshot(table);
    let mut out = Vec::new();
    let mut stats = crate::prune::ScanStats::default();
    let pruning = crate::prune::Pruning::new(filter);
    // The conjuncts answered in every morsel so far (`None` before the first).
    let mut answered: Option<Vec<usize>> = None;
    let mut answered_by = |mut these: Vec<usize>| {
        these.sort_unstable();
        these.dedup();
        answered = Some(match answered.take() {
            None => these,
            Some(before) => before.into_iter().filter(|c| these.contains(c)).collect(),
        });
    };
    for segment in snapshot.segments.iter().cloned() {
        let mut mine = Vec::new();
        match segment {
            SegmentSnapshot::Memory(blocks, cleared, indexes) => {
                stats.blocks += blocks.len();
                let mut first_row = 0u32;
                for (i, batch) in blocks.into_iter().enumerate() {
                    let rows = batch.num_rows() as u32;
                    let mut exact = Vec::new();
                    let selection = match (filter, indexes.get(i)) {
                        (Some(_), Some(index)) => pruning.memory_block_rows(
                            &batch,
                            index,
                            &snapshot.schema.columns,
                            &mut stats,
                            &mut exact,
                        ),
                        _ => None,
                    };
                    if selection.as_ref().is_some_and(Vec::is_empty) {
                        stats.blocks_pruned_by_index += 1;
                    } else if rows > 0 {
                        answered_by(exact);
                        mine.push(Morsel::Memory {
                            batch,
                            first_row,
                            cleared: cleared.clone(),
                            selection,
                        });
                    }
                    first_row += rows;
                }
            }
            SegmentSnapshot::Sealed(seg, cleared) => {
                // Damage found while planning (a zone map or an index) quarantines
                // the segment like damage found while scanning.
                let plan = pruning
                    .plan(&seg, &mut stats)
                    .map_err(|e| quarantine_on_corruption(table, e))?;
                if plan.keep.contains(&true) {
                    answered_by(plan.answered);
                }
                let selection = plan.selection.map(Arc::new);
                let blocks: Vec<usize> = seg
                    .footer()
                    .columns
                    .first()
                    .map(|c| c.blocks.iter().map(|b| b.rows as usize).collect())
                    .unwrap_or_default();
                let mut first_row = 0u32;
                for (block, rows) in blocks.into_iter().enumerate() {
                    if rows > 0 && plan.keep.get(block).copied().unwrap_or(true) {
                        mine.push(Morsel::Sealed {
                            segment: Arc::clone(&seg),
                            block,
                            rows,
                            first_row,
                            selection: selection.clone(),
                            cleared: cleared.clone(),
                        });
                    }
                    first_row += rows as u32;
                }
            }
        }
        gather_sparse(mine, &mut out);
    }
    Ok(Morsels {
        morsels: out,
        block_schema: Arc::clone(&snapshot.block_schema),
        stats,
        answered: answered.unwrap_or_default(),
    })
}

/// The `needed` columns of a sealed segment's `rows` (ascending row numbers
/// in the segment), read straight from its packed blocks rather than decoding
/// each block (see `SealedSegment::gather`).
fn gather_rows(
    segment: &SealedSegment,
    rows: &[u32],
    needed: &[usize],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = needed
        .iter()
        .map(|c| segment.gather(*c, rows))
        .collect::<sluice_storage::Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::new(schema.project(needed)?),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
}

/// The names of `columns` (positions in `schema`).
fn column_names(schema: &SchemaRef, columns: &[usize]) -> Vec<String> {
    columns
        .iter()
        .filter_map(|c| schema.fields().get(*c).map(|f| f.name().clone()))
        .collect()
}

/// A scan's morsels, as [`morsels`] planned them.
struct Morsels {
    morsels: Vec<Morsel>,
    /// The schema of their blocks (TEXT as dictionaries).
    block_schema: SchemaRef,
    /// What pruning did (the caller fills in the rows selected).
    stats: crate::prune::ScanStats,
    /// The filter's top-level conjuncts that the index selection of every
    /// morsel answers exactly: applied with the selection, they need neither
    /// evaluating nor their columns reading. One restaurant's dashboard
    /// reads its item and amount columns, not its restaurant_id.
    answered: Vec<usize>,
}

impl Morsels {
    /// The part of `filter` left to evaluate once the index selection is
    /// applied, and whether the selection must be applied (some conjunct
    /// was left out for it). Counts the left-out ones in the statistics.
    fn residual(&mut self, filter: Option<&Expr>) -> (Option<Expr>, bool) {
        let Some(filter) = filter else {
            return (None, false);
        };
        if self.answered.is_empty() {
            return (Some(filter.clone()), false);
        }
        self.stats.conditions_answered = self.answered.len();
        let mut parts = Vec::new();
        split_conjunction(filter, &mut parts);
        let rest = parts
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !self.answered.contains(i))
            .map(|(_, e)| e.clone());
        (crate::optimize::and_all(rest), true)
    }
}

/// Takes a segment that failed a check out of the table's later queries; the
/// error still fails this query, naming the file and section.
fn quarantine_on_corruption(table: &Table, e: Error) -> Error {
    if let Error::Storage(sluice_storage::Error::Corrupt { path, .. }) = &e {
        table.quarantine(path, &e.to_string());
    }
    e
}

/// Runs `work` on every morsel (or other piece of work: a spilled
/// partition) on up to `threads` workers (and at most `max_workers`), each
/// with its own state from `init`; returns the workers' states, each passed
/// through `settle` on its worker's thread once its morsels are done.
///
/// The calling thread starts alone and brings in helper threads only once the
/// morsels left look like more than [`HELPERS_PAY_AFTER`] of work at the pace of
/// the first ones: a dashboard query whose filter leaves a few blocks is done
/// before threads could even start, and spawning them cost more than its scan.
/// On a server a helper also needs a free slot of the query pool
/// ([`crate::pool::QueryPool::try_helpers`]), so helpers never crowd the cores
/// other statements hold.
pub(crate) fn run_parallel<S: Send, M: Sync>(
    morsels: &[M],
    ctx: &QueryContext,
    max_workers: usize,
    init: impl Fn() -> Result<S> + Sync,
    work: impl Fn(&mut S, usize, &M) -> Result<()> + Sync,
    settle: impl Fn(&mut S) -> Result<()> + Sync,
) -> Result<Vec<S>> {
    let workers = ctx
        .options()
        .threads
        .min(max_workers)
        .clamp(1, morsels.len().max(1));
    let next = AtomicUsize::new(0);
    let step = |state: &mut S| -> Result<bool> {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(m) = morsels.get(i) else {
            return Ok(false);
        };
        if let Err(e) = ctx.check().and_then(|()| work(state, i, m)) {
            // The statement fails: no worker takes another morsel, so the
            // error comes back now, not after the others read everything.
            next.store(morsels.len(), Ordering::Relaxed);
            return Err(e);
        }
        Ok(true)
    };
    let mut mine = init()?;
    let started = std::time::Instant::now();
    let mut done = 0u32;
    loop {
        if !step(&mut mine)? {
            settle(&mut mine)?;
            return Ok(vec![mine]);
        }
        done += 1;
        let left = morsels.len().saturating_sub(next.load(Ordering::Relaxed)) as u32;
        if workers > 1 && left > 0 && started.elapsed() / done * left > HELPERS_PAY_AFTER {
            break;
        }
    }
    let helper = || -> Result<S> {
        let mut state = init()?;
        while step(&mut state)? {}
        settle(&mut state)?;
        Ok(state)
    };
    // On a server, each helper holds one of the pool's free slots while it
    // runs: with every slot taken, the scan goes on alone.
    let slots: Vec<Option<crate::pool::Slot>> = match &ctx.options().workers {
        Some(pool) => pool
            .try_helpers(workers - 1)
            .into_iter()
            .map(Some)
            .collect(),
        None => (1..workers).map(|_| None).collect(),
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .into_iter()
            .map(|slot| {
                s.spawn(move || {
                    let state = helper();
                    drop(slot);
                    state
                })
            })
            .collect();
        let mut states = Vec::with_capacity(workers);
        while step(&mut mine)? {}
        settle(&mut mine)?;
        states.push(mine);
        for h in handles {
            states.push(
                h.join()
                    .map_err(|_| Error::Internal("a scan worker panicked".into()))??,
            );
        }
        Ok(states)
    })
}

/// A block's index selection is taken out row by row when it holds at most
/// one row in this many (see [`Morsel::sparse_rows`]).
const SPARSE_SHARE: usize = 32;

/// Work left beyond which a scan brings in helper threads (see [`run_parallel`]).
const HELPERS_PAY_AFTER: std::time::Duration = std::time::Duration::from_micros(100);

/// Appends one segment's morsels to `out`: as one [`Morsel::Gathered`] when
/// the indexes selected a few rows in every one of several blocks, else as
/// they are.
fn gather_sparse(mine: Vec<Morsel>, out: &mut Vec<Morsel>) {
    if mine.len() > 1 && mine.iter().all(Morsel::is_sparse) {
        out.push(Morsel::Gathered(mine));
    } else {
        out.extend(mine);
    }
}

/// The rows of `morsel` where `filter` holds, cut to the `needed` columns (which
/// `filter` is written against); `None` when no row qualifies.
///
/// On a sealed block, two things narrow the rows before the filter's other
/// conjuncts run: the inverted indexes' selection, and conjuncts comparing an
/// integer column with a constant, which run on the block's packed codes. If
/// they leave no row, no column is loaded at all.
fn select_rows(
    morsel: &Morsel,
    needed: &[usize],
    schema: &SchemaRef,
    filter: (Option<&Expr>, bool),
    ctx: &QueryContext,
) -> Result<Option<RecordBatch>> {
    let mut out = None;
    for_each_selected(
        morsel,
        needed,
        schema,
        filter,
        ctx,
        usize::MAX,
        &mut |batch| {
            out = Some(batch);
            Ok(())
        },
    )?;
    Ok(out)
}

/// Rows of a block an aggregation takes at a time where the block decodes in
/// place: a slice's decoded columns, keys and group ids stay in the core's
/// cache between decoding and aggregating (4,096 and 32,768 measured no
/// better over 100M rows).
const AGGREGATE_SLICE_ROWS: usize = 16 * 1024;

/// Like [`select_rows`], but hands the selected rows to `emit` in batches
/// from slices of at most `slice_rows` rows of the morsel's block (one batch
/// for gathered and sparse morsels, which are small). Nothing is emitted for
/// a slice with no row selected.
fn for_each_selected(
    morsel: &Morsel,
    needed: &[usize],
    schema: &SchemaRef,
    (filter, bound): (Option<&Expr>, bool),
    ctx: &QueryContext,
    slice_rows: usize,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let mut conjuncts = Vec::new();
    if let Some(f) = filter {
        split_conjunction(f, &mut conjuncts);
    }
    let mut emit_some = |batch: Option<RecordBatch>| match batch {
        Some(b) => emit(b),
        None => Ok(()),
    };
    if let Morsel::Gathered(_) = morsel {
        let block = match morsel.gather(needed, schema)? {
            Some(rows) => rows,
            None => morsel.load(needed, schema)?,
        };
        return emit_some(apply_conjuncts(block, &conjuncts, ctx)?);
    }
    if let Some(rows) = morsel.sparse_rows() {
        // A few rows of the block: take them out, then filter those alone,
        // rather than build and combine masks over every row of the block.
        if rows.is_empty() {
            return Ok(());
        }
        let block = morsel.take_rows(&rows, needed, schema)?;
        let rest: Vec<&Expr> = conjuncts
            .into_iter()
            .filter(|c| !morsel.implies(c, needed))
            .collect();
        return emit_some(apply_conjuncts(block, &rest, ctx)?);
    }
    let mut pre_mask = match (morsel.index_mask(bound), morsel.valid_mask()) {
        (Some(a), Some(b)) => Some(arrow::compute::kernels::boolean::and(&a, &b)?),
        (a, b) => a.or(b),
    };
    let mut rest = Vec::with_capacity(conjuncts.len());
    for c in conjuncts {
        if morsel.implies(c, needed) {
            continue;
        }
        match morsel.compare_codes(c, needed)? {
            Some(m) => {
                let m = null_as_false(&m);
                pre_mask = Some(match pre_mask {
                    Some(prev) => arrow::compute::kernels::boolean::and(&prev, &m)?,
                    None => m,
                });
            }
            None => rest.push(c),
        }
    }
    if pre_mask.as_ref().is_some_and(|m| m.true_count() == 0) {
        return Ok(());
    }
    let rows = match morsel {
        Morsel::Sealed { rows, .. } => *rows,
        Morsel::Memory { batch, .. } => batch.num_rows(),
        Morsel::Gathered(_) => 0, // answered above
    };
    let slice_rows = slice_rows.max(1);
    let mut start = 0;
    while start < rows {
        let range = start..rows.min(start.saturating_add(slice_rows));
        start = range.end;
        let mask = pre_mask.as_ref().map(|m| m.slice(range.start, range.len()));
        let kept = mask.as_ref().map_or(range.len(), |m| m.true_count());
        if kept == 0 {
            continue;
        }
        let whole = range.len() == rows;
        let mut block = if whole {
            morsel.load(needed, schema)?
        } else {
            morsel.load_rows(needed, schema, range.clone())?
        };
        if let Some(mask) = mask.filter(|_| kept < range.len()) {
            block = filter_batch(&block, &mask)?;
        }
        emit_some(apply_conjuncts(block, &rest, ctx)?)?;
    }
    Ok(())
}

/// `block`'s rows where every one of `conjuncts` holds; `None` if none does.
/// Each conjunct runs on the rows the ones before it kept, as the AND of them
/// would (see `eval::short_circuit`): cheaper, and no error from a row an
/// earlier conjunct ruled out.
fn apply_conjuncts(
    mut block: RecordBatch,
    conjuncts: &[&Expr],
    ctx: &QueryContext,
) -> Result<Option<RecordBatch>> {
    if block.num_rows() == 0 {
        return Ok(None);
    }
    for c in conjuncts {
        let m = evaluate_lifted(c, &block, ctx)?;
        let m = decode_dictionary(&m)?;
        let m = m
            .as_boolean_opt()
            .ok_or_else(|| Error::Internal("predicate is not boolean".into()))?;
        let m = null_as_false(m);
        if m.true_count() == 0 {
            return Ok(None);
        }
        if m.true_count() < m.len() {
            block = filter_batch(&block, &m)?;
        }
    }
    Ok(Some(block))
}

fn remap(expr: &Expr, needed: &[usize]) -> Expr {
    expr.remap_columns(&|i| needed.iter().position(|n| *n == i).unwrap_or(usize::MAX))
}

/// Splits `a AND b AND c` into its parts.
pub fn split_conjunction<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            split_conjunction(left, out);
            split_conjunction(right, out);
        }
        other => out.push(other),
    }
}

/// True if evaluating `e` cannot raise an error on any input, so it may be run on
/// dictionary entries whose rows a filter has removed.
fn is_infallible(e: &Expr) -> bool {
    let mut ok = true;
    e.walk(&mut |n| {
        ok &= match n {
            Expr::Column(_)
            | Expr::Literal(_)
            | Expr::Not(_)
            | Expr::IsNull { .. }
            | Expr::Like { .. }
            | Expr::InList { .. }
            | Expr::Case { .. } => true,
            Expr::Binary { op, .. } => {
                op.is_comparison() || matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Concat)
            }
            Expr::Function { func, .. } => matches!(
                func,
                ScalarFunction::Lower
                    | ScalarFunction::Upper
                    | ScalarFunction::Length
                    | ScalarFunction::Concat
                    | ScalarFunction::Coalesce
                    | ScalarFunction::Trim
                    | ScalarFunction::LTrim
                    | ScalarFunction::RTrim
            ),
            _ => false,
        };
    });
    ok
}

/// Evaluates `expr`; if it reads exactly one dictionary-encoded column and cannot
/// fail, evaluates it once per dictionary entry and returns a dictionary array.
pub fn evaluate_lifted(expr: &Expr, block: &RecordBatch, ctx: &QueryContext) -> Result<ArrayRef> {
    let cols = expr.columns();
    if let [c] = cols.as_slice() {
        let col = block.column(*c);
        if matches!(col.data_type(), DataType::Dictionary(_, _)) && is_infallible(expr) {
            if let Expr::Column(_) = expr {
                return Ok(Arc::clone(col));
            }
            let dict = col
                .as_dictionary_opt::<UInt32Type>()
                .ok_or_else(|| Error::Internal("unexpected dictionary key type".into()))?;
            let values = dict.values();
            let null_slot = values.len() as u32;
            // One extra NULL entry stands for NULL keys, so `k IS NULL` and
            // `coalesce(k, 'x')` come out right.
            let extended = arrow::compute::concat(&[
                values.as_ref(),
                arrow::array::new_null_array(values.data_type(), 1).as_ref(),
            ])?;
            let schema = Arc::new(Schema::new(vec![Field::new(
                "v",
                values.data_type().clone(),
                true,
            )]));
            let entries = RecordBatch::try_new(schema, vec![extended])?;
            let per_entry = evaluate(&expr.remap_columns(&|_| 0), &entries, ctx)?;
            let keys: UInt32Array = dict
                .keys()
                .iter()
                .map(|k| Some(k.unwrap_or(null_slot)))
                .collect();
            let out = DictionaryArray::<UInt32Type>::try_new(keys, per_entry)?;
            return Ok(Arc::new(out));
        }
    }
    evaluate(expr, block, ctx)
}

/// What a scan of one table reads: the morsels left after pruning, and how each
/// is cut to the output (the columns the filter needs, then the projection).
struct ScanPlan {
    morsels: Vec<Morsel>,
    block_schema: SchemaRef,
    /// The table's columns the scan loads, sorted.
    needed: Vec<usize>,
    /// The filter over `needed`, less the conjuncts the index selection
    /// answers.
    filter: Option<Expr>,
    /// Whether the index selection must be applied (see [`Morsels::residual`]).
    bound: bool,
    /// Each output column's place in `needed`.
    out_positions: Vec<usize>,
    output: SchemaRef,
    stats: crate::prune::ScanStats,
}

impl ScanPlan {
    fn new(
        table: &Table,
        filter: Option<&Expr>,
        projection: &[usize],
        output: SchemaRef,
        ctx: &QueryContext,
    ) -> Result<ScanPlan> {
        let mut planned = morsels(table, filter, ctx)?;
        let (filter, bound) = planned.residual(filter);
        let mut needed: Vec<usize> = projection.to_vec();
        if let Some(f) = &filter {
            needed.extend(f.columns());
        }
        needed.sort_unstable();
        needed.dedup();
        let filter = filter.map(|f| remap(&f, &needed));
        let Morsels {
            morsels,
            block_schema,
            mut stats,
            ..
        } = planned;
        stats.columns_read = column_names(&block_schema, &needed);
        let out_positions = projection
            .iter()
            .map(|p| needed.iter().position(|n| n == p).unwrap_or(0))
            .collect();
        Ok(ScanPlan {
            morsels,
            block_schema,
            needed,
            filter,
            bound,
            out_positions,
            output,
            stats,
        })
    }

    /// The selected rows of morsels `range`, in morsel order, read in parallel.
    /// Once `passed` (rows selected so far, these morsels' included) reaches
    /// `limit`, morsels not yet started are skipped. With `account`, each
    /// batch is counted against the statement's memory (and the server's
    /// pool) until the statement ends: a materialised scan holds them all.
    fn read(
        &self,
        range: std::ops::Range<usize>,
        limit: usize,
        passed: &AtomicUsize,
        account: bool,
        ctx: &QueryContext,
    ) -> Result<Vec<RecordBatch>> {
        let first = range.start;
        let states = run_parallel(
            &self.morsels[range],
            ctx,
            usize::MAX,
            || Ok(Vec::<(usize, RecordBatch)>::new()),
            |out, i, morsel| {
                if passed.load(Ordering::Relaxed) >= limit {
                    return Ok(());
                }
                let Some(selected) = select_rows(
                    morsel,
                    &self.needed,
                    &self.block_schema,
                    (self.filter.as_ref(), self.bound),
                    ctx,
                )?
                else {
                    return Ok(());
                };
                passed.fetch_add(selected.num_rows(), Ordering::Relaxed);
                let columns = self
                    .out_positions
                    .iter()
                    .map(|p| decode_dictionary(selected.column(*p)))
                    .collect::<Result<Vec<_>>>()?;
                let batch = RecordBatch::try_new_with_options(
                    Arc::clone(&self.output),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(selected.num_rows())),
                )?;
                if account {
                    ctx.reserve(batch.get_array_memory_size())?;
                }
                out.push((first + i, batch));
                Ok(())
            },
            |_| Ok(()),
        )?;
        let mut all: Vec<(usize, RecordBatch)> = states.into_iter().flatten().collect();
        all.sort_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, b)| b).collect())
    }
}

/// Scans a table: rows where `filter` holds, columns `projection`, dictionaries
/// decoded. Batches come back in segment and block order.
///
/// With a `limit`, blocks not yet started once that many rows have passed
/// are skipped (a LIMIT without ORDER BY may return any rows that qualify).
/// Blocks are taken in order and every block started is read to its end, so
/// the rows returned still start at the table's first qualifying rows.
pub fn scan(
    table: &Table,
    filter: Option<&Expr>,
    projection: &[usize],
    limit: Option<usize>,
    output: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    let mut plan = ScanPlan::new(table, filter, projection, output, ctx)?;
    let passed = AtomicUsize::new(0);
    let all = plan
        .read(
            0..plan.morsels.len(),
            limit.unwrap_or(usize::MAX),
            &passed,
            true,
            ctx,
        )
        .map_err(|e| quarantine_on_corruption(table, e))?;
    plan.stats.rows_selected = all.iter().map(RecordBatch::num_rows).sum();
    ctx.record_scan(table.name(), plan.stats);
    Ok(all)
}

/// A table scan read a few morsels at a time as its batches are pulled: the
/// first rows of `SELECT * FROM events` reach the client while later blocks
/// are still unread, and memory holds one chunk, not the whole table.
pub struct ScanStream {
    table: Arc<Table>,
    plan: ScanPlan,
    ctx: QueryContext,
    /// The first morsel not yet read.
    next: usize,
    limit: usize,
    passed: AtomicUsize,
    ready: std::collections::VecDeque<RecordBatch>,
    failed: bool,
}

impl ScanStream {
    /// A stream over `table` as [`scan`] reads it; nothing is read until the
    /// first batch is pulled (pruning is planned now).
    ///
    /// # Errors
    /// A corrupt segment found while pruning.
    pub fn new(
        table: &Arc<Table>,
        filter: Option<&Expr>,
        projection: &[usize],
        limit: Option<usize>,
        output: SchemaRef,
        ctx: &QueryContext,
    ) -> Result<ScanStream> {
        let plan = ScanPlan::new(table, filter, projection, output, ctx)?;
        Ok(ScanStream {
            table: Arc::clone(table),
            plan,
            ctx: ctx.clone(),
            next: 0,
            limit: limit.unwrap_or(usize::MAX),
            passed: AtomicUsize::new(0),
            ready: std::collections::VecDeque::new(),
            failed: false,
        })
    }

    /// Morsels read per pull: enough for every worker to take a few.
    fn chunk(&self) -> usize {
        (self.ctx.options().threads * 4).max(8)
    }
}

impl Iterator for ScanStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Some(Ok(b));
            }
            let total = self.plan.morsels.len();
            if self.failed
                || self.next >= total
                || self.passed.load(Ordering::Relaxed) >= self.limit
            {
                return None;
            }
            let end = (self.next + self.chunk()).min(total);
            let range = self.next..end;
            self.next = end;
            match self
                .plan
                .read(range, self.limit, &self.passed, false, &self.ctx)
            {
                Ok(batches) => self.ready.extend(batches),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(quarantine_on_corruption(&self.table, e)));
                }
            }
        }
    }
}

/// Aggregates a table's rows where `filter` holds, in parallel over blocks, merging
/// the workers' partial aggregates. `group` and `args` are over the table's columns.
pub fn scan_aggregate(
    table: &Table,
    filter: Option<&Expr>,
    group: &[Expr],
    args: &[Option<Expr>],
    template: &Aggregator,
    output: SchemaRef,
    ctx: &QueryContext,
) -> Result<RecordBatch> {
    let partials = fold_scan(
        table,
        filter,
        group,
        args,
        ctx,
        template.max_workers(),
        |expected_rows| {
            let mut agg = template.empty_like()?;
            agg.expect_rows(expected_rows);
            Ok(agg)
        },
        |agg, fold| agg.update(&fold.keys, &fold.args, fold.rows),
        Aggregator::settle,
    )?;
    let mut iter = partials.into_iter();
    let mut total = match iter.next() {
        Some(first) => first,
        None => template.empty_like()?,
    };
    for p in iter {
        ctx.check()?;
        total.merge(p)?;
    }
    total.finish(output)
}

/// As [`scan_aggregate`], through spill files (see [`spill`]): each scan
/// worker splits its rows' keys and arguments into files by a hash of the
/// keys, then the files of each partition are aggregated one partition at
/// a time.
pub fn scan_aggregate_spilled(
    table: &Table,
    filter: Option<&Expr>,
    group: &[Expr],
    args: &[Option<Expr>],
    template: &Aggregator,
    output: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    let dir = spill::spill_dir(ctx)?;
    let workers = fold_scan(
        table,
        filter,
        group,
        args,
        ctx,
        template.max_workers(),
        |_| Ok(spill::Partitions::new(&dir, 1)),
        spill::Partitions::write_fold,
        |_| Ok(()),
    )?;
    spill::aggregate_partitions(workers, &dir, template, output, ctx)
}

/// Runs `fold` over the group keys and arguments (`group`, `args`, over the
/// table's columns) of every row of `table` where `filter` holds, in parallel
/// over blocks on at most `max_workers` workers, each with its own state from
/// `init` (told the rows it may expect, 0 if not known) and `settle`d at its
/// end; returns the states, the calling thread's first. Records the scan for
/// EXPLAIN ANALYZE; a damaged segment is quarantined.
#[allow(clippy::too_many_arguments)]
fn fold_scan<S: Send>(
    table: &Table,
    filter: Option<&Expr>,
    group: &[Expr],
    args: &[Option<Expr>],
    ctx: &QueryContext,
    max_workers: usize,
    init: impl Fn(usize) -> Result<S> + Sync,
    fold: impl Fn(&mut S, FoldRows) -> Result<()> + Sync,
    settle: impl Fn(&mut S) -> Result<()> + Sync,
) -> Result<Vec<S>> {
    let unfiltered = filter.is_none();
    let mut planned = morsels(table, filter, ctx)?;
    let (filter, bound) = planned.residual(filter);
    let Morsels {
        morsels,
        block_schema,
        mut stats,
        ..
    } = planned;
    // Without a filter every row of every morsel is aggregated: the group
    // table may size itself for them from the first batch.
    let expected_rows = if unfiltered {
        morsels.iter().map(Morsel::rows).sum()
    } else {
        0
    };
    let selected_rows = AtomicUsize::new(0);
    let mut needed: Vec<usize> = Vec::new();
    for e in group.iter().chain(args.iter().flatten()).chain(&filter) {
        needed.extend(e.columns());
    }
    needed.sort_unstable();
    needed.dedup();
    stats.columns_read = column_names(&block_schema, &needed);
    let filter = filter.map(|f| remap(&f, &needed));
    let group: Vec<Expr> = group.iter().map(|e| remap(e, &needed)).collect();
    let args: Vec<Option<Expr>> = args
        .iter()
        .map(|a| a.as_ref().map(|e| remap(e, &needed)))
        .collect();
    // Blocks are aggregated a slice at a time where that reads no TEXT column:
    // a TEXT column's block is one dictionary array, and a key or filter over
    // it is worked out once per dictionary entry per batch.
    let slice_rows = if needed
        .iter()
        .any(|&c| matches!(block_schema.field(c).data_type(), DataType::Dictionary(..)))
    {
        usize::MAX
    } else {
        AGGREGATE_SLICE_ROWS
    };
    let states = run_parallel(
        &morsels,
        ctx,
        max_workers,
        || init(expected_rows),
        |state, _, morsel| {
            let mut each = |selected: RecordBatch| {
                let keys = group
                    .iter()
                    .map(|e| evaluate_lifted(e, &selected, ctx))
                    .collect::<Result<Vec<_>>>()?;
                let args = args
                    .iter()
                    .map(|a| {
                        a.as_ref()
                            .map(|e| evaluate_lifted(e, &selected, ctx))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()?;
                selected_rows.fetch_add(selected.num_rows(), Ordering::Relaxed);
                let rows = selected.num_rows();
                fold(state, FoldRows { keys, args, rows })
            };
            let filter = (filter.as_ref(), bound);
            for_each_selected(
                morsel,
                &needed,
                &block_schema,
                filter,
                ctx,
                slice_rows,
                &mut each,
            )
        },
        settle,
    );
    let states = states.map_err(|e| quarantine_on_corruption(table, e))?;
    stats.rows_selected = selected_rows.into_inner();
    ctx.record_scan(table.name(), stats);
    Ok(states)
}

impl Morsel {
    /// Rows the morsel holds before any selection or filter.
    fn rows(&self) -> usize {
        match self {
            Morsel::Memory { batch, .. } => batch.num_rows(),
            Morsel::Sealed { rows, .. } => *rows,
            Morsel::Gathered(parts) => parts.iter().map(Morsel::rows).sum(),
        }
    }
}
