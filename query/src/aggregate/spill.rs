//! A GROUP BY past the memory bound, answered by spilling to disk (grace
//! hash aggregation). When the in-memory aggregation would pass the
//! statement's memory bound, the rows are read again and each row's group
//! keys and aggregate arguments are written to one of [`FANOUT`] temporary
//! files, chosen by a hash of its keys. Every row of a group lands in the
//! same file, so each file is aggregated on its own with the memory of about
//! one [`FANOUT`]th of the groups, and the files' results together are the
//! answer. A file whose groups still do not fit is split again with another
//! hash, up to [`MAX_DEPTH`] times.
//!
//! The files are Arrow IPC streams, created unlinked in the data directory's
//! `spill/` folder (the system's temporary directory without a catalog): the
//! operating system removes them when the statement ends, however it ends.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::row::{RowConverter, SortField};

use super::{Aggregator, FoldRows};
use crate::context::QueryContext;
use crate::error::{Error, Result};

/// Files one pass splits its rows into.
pub const FANOUT: usize = 64;

/// Times a file may be split again before the statement gives up with
/// 53200: 64^3 (262,144) files' worth of groups.
pub const MAX_DEPTH: u32 = 3;

/// What spilling did in one statement (for EXPLAIN ANALYZE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Files aggregated one by one.
    pub partitions: u64,
    /// Rows written, over every pass.
    pub rows: u64,
    /// Bytes written, over every pass.
    pub bytes: u64,
    /// The most times a row was split (1: once).
    pub depth: u32,
}

static SPILLS: AtomicU64 = AtomicU64::new(0);
static SPILLED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Aggregations answered by spilling, and the bytes they wrote, since the
/// process started (`sluice_aggregate_spills_total`,
/// `sluice_aggregate_spilled_bytes_total`).
pub fn spill_totals() -> (u64, u64) {
    (
        SPILLS.load(Ordering::Relaxed),
        SPILLED_BYTES.load(Ordering::Relaxed),
    )
}

/// Aggregates `input` (rows to fold, as the in-memory path would have
/// folded them) a partition of groups at a time through spill files, with
/// `template`'s shape; one result batch of `schema` per partition.
///
/// # Errors
/// The input's errors; I/O errors naming the spill directory; 53200 when a
/// partition's groups still do not fit after [`MAX_DEPTH`] splits.
pub fn aggregate_spilled(
    input: impl Iterator<Item = Result<FoldRows>>,
    template: &Aggregator,
    schema: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    let dir = spill_dir(ctx)?;
    let mut split = Partitions::new(&dir, 1);
    for fold in input {
        ctx.check()?;
        split.write_fold(fold?)?;
    }
    aggregate_partitions(vec![split], &dir, template, schema, ctx)
}

/// Aggregates what `writers` (one per scan worker, or one) split into
/// files: partition by partition, each partition's files from every writer
/// together; one result batch of `schema` per partition.
///
/// # Errors
/// As [`aggregate_spilled`].
pub fn aggregate_partitions(
    writers: Vec<Partitions>,
    dir: &Path,
    template: &Aggregator,
    schema: SchemaRef,
    ctx: &QueryContext,
) -> Result<Vec<RecordBatch>> {
    let mut stats = SpillStats::default();
    let mut by_partition: Vec<Vec<SpillFile>> = (0..FANOUT).map(|_| Vec::new()).collect();
    for writer in writers {
        for (p, file) in writer.finish(&mut stats)?.into_iter().enumerate() {
            by_partition[p].extend(file);
        }
    }
    let shape = Shape {
        template,
        keys: template.group_types.len(),
        has_arg: template
            .specs
            .iter()
            .map(|s| s.expr.arg.is_some())
            .collect(),
        schema,
        dir,
        ctx,
    };
    // Partitions are aggregated side by side, each with its own groups:
    // together they hold the memory of a few partitions' groups.
    let parts: Vec<Vec<SpillFile>> = by_partition.into_iter().filter(|f| !f.is_empty()).collect();
    let done = crate::scan::run_parallel(
        &parts,
        ctx,
        usize::MAX,
        || Ok((Vec::new(), SpillStats::default())),
        |(out, stats), _, files| aggregate_part(files, &shape, 1, stats, out),
        |_| Ok(()),
    )?;
    let mut out = Vec::new();
    for (batches, part_stats) in done {
        out.extend(batches);
        stats.partitions += part_stats.partitions;
        stats.rows += part_stats.rows;
        stats.bytes += part_stats.bytes;
        stats.depth = stats.depth.max(part_stats.depth);
    }
    if out.is_empty() {
        out.push(template.empty_like()?.finish(Arc::clone(&shape.schema))?);
    }
    SPILLS.fetch_add(1, Ordering::Relaxed);
    SPILLED_BYTES.fetch_add(stats.bytes, Ordering::Relaxed);
    ctx.record_spill(stats);
    tracing::debug!(?stats, "aggregation spilled to disk");
    Ok(out)
}

/// What every partition's aggregation shares.
struct Shape<'a> {
    template: &'a Aggregator,
    keys: usize,
    /// Per aggregate, whether it takes an argument (a column of the files).
    has_arg: Vec<bool>,
    schema: SchemaRef,
    /// Where files split again go.
    dir: &'a Path,
    ctx: &'a QueryContext,
}

/// Aggregates one partition's files into `out`, splitting them again (one
/// level deeper) if its groups do not fit.
fn aggregate_part(
    files: &[SpillFile],
    shape: &Shape,
    depth: u32,
    stats: &mut SpillStats,
    out: &mut Vec<RecordBatch>,
) -> Result<()> {
    stats.depth = stats.depth.max(depth);
    let mut agg = shape.template.empty_like()?;
    for file in files {
        for batch in file.read()? {
            shape.ctx.check()?;
            let batch = batch?;
            let (keys, args) = from_batch(&batch, shape);
            match agg.update(&keys, &args, batch.num_rows()) {
                Ok(()) => {}
                Err(Error::ResourcesExhausted(_)) if depth < MAX_DEPTH => {
                    // Give the groups' memory back before splitting.
                    drop(agg);
                    return split_again(files, shape, depth, stats, out);
                }
                Err(e) => return Err(e),
            }
        }
    }
    stats.partitions += 1;
    out.push(agg.finish(Arc::clone(&shape.schema))?);
    Ok(())
}

/// Splits a partition's files into [`FANOUT`] smaller ones by the next
/// level's hash and aggregates each.
fn split_again(
    files: &[SpillFile],
    shape: &Shape,
    depth: u32,
    stats: &mut SpillStats,
    out: &mut Vec<RecordBatch>,
) -> Result<()> {
    let mut split = Partitions::new(shape.dir, depth + 1);
    for file in files {
        for batch in file.read()? {
            shape.ctx.check()?;
            split.write(&batch?, shape.keys)?;
        }
    }
    for smaller in split.finish(stats)?.into_iter().flatten() {
        aggregate_part(&[smaller], shape, depth + 1, stats, out)?;
    }
    Ok(())
}

/// The folded rows as one batch: keys, then the arguments present.
fn to_batch(fold: &FoldRows) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = fold
        .keys
        .iter()
        .chain(fold.args.iter().flatten())
        .map(plain)
        .collect::<Result<_>>()?;
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(fold.rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

/// A spilled batch's keys and per-aggregate arguments.
fn from_batch(batch: &RecordBatch, shape: &Shape) -> (Vec<ArrayRef>, Vec<Option<ArrayRef>>) {
    let keys = batch.columns()[..shape.keys].to_vec();
    let mut next = shape.keys;
    let args = shape
        .has_arg
        .iter()
        .map(|&has| {
            has.then(|| {
                next += 1;
                Arc::clone(batch.column(next - 1))
            })
        })
        .collect();
    (keys, args)
}

/// A dictionary array as its plain values (the files hold no dictionaries,
/// which an IPC stream would have to resend with every batch).
fn plain(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Dictionary(_, value) => Ok(arrow::compute::cast(array, value)?),
        _ => Ok(Arc::clone(array)),
    }
}

/// Where a statement's spill files go: `spill/` in the data directory, or
/// the system's temporary directory for an engine without one.
///
/// # Errors
/// The directory cannot be created (the error names it).
pub fn spill_dir(ctx: &QueryContext) -> Result<PathBuf> {
    let dir = match ctx.catalog() {
        Some(catalog) => catalog.dir().join("spill"),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    Ok(dir)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(sluice_storage::Error::io(path, e))
}

/// Rows being split into [`FANOUT`] files by a hash of their keys; a file is
/// created when its first row comes.
pub struct Partitions {
    dir: PathBuf,
    /// Each pass hashes with its own seed, so a file split again spreads
    /// over all of the next pass's files.
    hasher: ahash::RandomState,
    writers: Vec<Option<StreamWriter<BufWriter<File>>>>,
    rows: Vec<u64>,
    /// Rows waiting to be written, per partition: a file gets batches of
    /// [`WRITE_ROWS`], not a few rows of every batch split (which cost more
    /// to frame, read back and fold than the rows themselves).
    pending: Vec<Vec<RecordBatch>>,
    pending_rows: Vec<usize>,
}

/// Rows a partition gathers before they are written as one batch.
const WRITE_ROWS: usize = 8 * 1024;

impl Partitions {
    /// Empty files for the pass at `depth` (1: the first), in `dir`.
    pub fn new(dir: &Path, depth: u32) -> Self {
        let seed = u64::from(depth).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Partitions {
            dir: dir.to_path_buf(),
            hasher: ahash::RandomState::with_seeds(seed, seed ^ 1, seed ^ 2, seed ^ 3),
            writers: (0..FANOUT).map(|_| None).collect(),
            rows: vec![0; FANOUT],
            pending: (0..FANOUT).map(|_| Vec::new()).collect(),
            pending_rows: vec![0; FANOUT],
        }
    }

    /// Sends each folded row to its file.
    ///
    /// # Errors
    /// I/O errors naming the spill directory.
    pub fn write_fold(&mut self, fold: FoldRows) -> Result<()> {
        let keys = fold.keys.len();
        self.write(&to_batch(&fold)?, keys)
    }

    /// Sends each row of `batch` (its first `keys` columns the group keys)
    /// to its file.
    fn write(&mut self, batch: &RecordBatch, keys: usize) -> Result<()> {
        let hashes = key_hashes(&batch.columns()[..keys], batch.num_rows(), &self.hasher)?;
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); FANOUT];
        for (row, hash) in hashes.iter().enumerate() {
            rows_of[(*hash as usize) % FANOUT].push(row as u32);
        }
        for (p, rows) in rows_of.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                arrow::compute::take_record_batch(batch, &UInt32Array::from(rows))?
            };
            self.rows[p] += part.num_rows() as u64;
            self.pending_rows[p] += part.num_rows();
            self.pending[p].push(part);
            if self.pending_rows[p] >= WRITE_ROWS {
                self.flush(p)?;
            }
        }
        Ok(())
    }

    /// Writes partition `p`'s waiting rows as one batch.
    fn flush(&mut self, p: usize) -> Result<()> {
        let pending = std::mem::take(&mut self.pending[p]);
        self.pending_rows[p] = 0;
        let Some(first) = pending.first() else {
            return Ok(());
        };
        let batch = arrow::compute::concat_batches(&first.schema(), &pending)?;
        drop(pending);
        let writer = match &mut self.writers[p] {
            Some(w) => w,
            slot => {
                let file = tempfile::tempfile_in(&self.dir).map_err(|e| io(&self.dir, e))?;
                slot.insert(StreamWriter::try_new(
                    BufWriter::new(file),
                    &batch.schema(),
                )?)
            }
        };
        writer.write(&batch)?;
        Ok(())
    }

    /// The files written, by partition (`None` where no row went), ready to
    /// read back.
    fn finish(mut self, stats: &mut SpillStats) -> Result<Vec<Option<SpillFile>>> {
        for p in 0..FANOUT {
            self.flush(p)?;
        }
        let mut files = Vec::with_capacity(FANOUT);
        for (writer, rows) in self.writers.into_iter().zip(self.rows) {
            let Some(mut writer) = writer else {
                files.push(None);
                continue;
            };
            writer.finish()?;
            let mut file = writer
                .into_inner()?
                .into_inner()
                .map_err(|e| io(&self.dir, e.into_error()))?;
            let bytes = file.stream_position().map_err(|e| io(&self.dir, e))?;
            stats.rows += rows;
            stats.bytes += bytes;
            files.push(Some(SpillFile {
                file,
                dir: self.dir.clone(),
            }));
        }
        Ok(files)
    }
}

/// One written spill file (unlinked: it goes when this is dropped).
struct SpillFile {
    file: File,
    dir: PathBuf,
}

impl SpillFile {
    /// Its batches, from the start.
    fn read(&self) -> Result<StreamReader<BufReader<File>>> {
        let mut file = self.file.try_clone().map_err(|e| io(&self.dir, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io(&self.dir, e))?;
        Ok(StreamReader::try_new(BufReader::new(file), None)?)
    }
}

/// A hash of each row's keys under `hasher`, equal for rows the group table
/// puts in one group: floats are compared as SQL compares them (-0 and 0
/// alike, every NaN alike), everything else by value.
fn key_hashes(keys: &[ArrayRef], rows: usize, hasher: &ahash::RandomState) -> Result<Vec<u64>> {
    if keys.is_empty() {
        return Ok(vec![0; rows]);
    }
    let keys: Vec<ArrayRef> = keys.iter().map(canonical_floats).collect();
    let fields = keys
        .iter()
        .map(|k| SortField::new(k.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let encoded = converter.convert_columns(&keys)?;
    Ok(encoded
        .iter()
        .map(|row| hasher.hash_one(row.as_ref()))
        .collect())
}

/// A float array with -0 as 0 and every NaN as one NaN; others as they are.
fn canonical_floats(array: &ArrayRef) -> ArrayRef {
    fn canonical64(f: f64) -> f64 {
        if f == 0.0 {
            0.0
        } else if f.is_nan() {
            f64::NAN
        } else {
            f
        }
    }
    match array.data_type() {
        DataType::Float64 => Arc::new(
            array
                .as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(canonical64),
        ),
        DataType::Float32 => Arc::new(
            array
                .as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(|f| canonical64(f as f64) as f32),
        ),
        _ => Arc::clone(array),
    }
}
