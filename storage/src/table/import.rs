//! Bulk import: rows from a file (Parquet, read by the caller) go straight
//! into sealed segments, with no write-ahead file and no mutable segment, and
//! one manifest commit per file makes them visible together with the file's
//! record. An import interrupted at any point leaves the whole file or
//! nothing (its segment files are orphans the next open removes), and the
//! same file imported again is found in the manifest and skipped.

use std::sync::mpsc;

use arrow::array::{Array, BooleanArray, TimestampMicrosecondArray};

use super::*;
use crate::manifest::ImportedFile;

/// Segment files written at once while a file imports: the reader hands each
/// segment's rows to a writer and reads on.
const IMPORT_WRITERS: usize = 2;

/// Rows of an upsert or dedup table's import per write-ahead record.
const KEY_MAP_CHUNK_ROWS: usize = 1 << 20;

/// What importing one file did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows committed.
    pub rows: u64,
    /// Rows already past retention, left out.
    pub expired: u64,
    /// Segments written.
    pub segments: u64,
    /// The file had been imported before: nothing was done.
    pub already_imported: bool,
    /// The rows went through an upsert or dedup table's key map (and the
    /// write-ahead file), not straight into segments: `rows` counts those
    /// applied, before the key map replaced or dropped any.
    pub through_key_map: bool,
}

impl Table {
    /// The file imported before that `file` is the same as, if any.
    pub fn imported_before(&self, file: &ImportedFile) -> Option<ImportedFile> {
        self.manifest()
            .imported
            .iter()
            .find(|f| f.same_file(file))
            .cloned()
    }

    /// Imports the rows `batches` yields (the table's columns, in order, of
    /// their column types) as the contents of `file`: segments of at most
    /// `segment_rows` rows are written as the batches arrive, two at a time,
    /// and committed with the file's record in one manifest step. Rows past
    /// retention are counted and left out; `progress` is told the rows read
    /// so far. Seals wait meanwhile; appends and queries go on.
    ///
    /// An upsert or dedup table's rows go through its key map instead (see
    /// `import_through_key_map`).
    ///
    /// # Errors
    /// A batch's error, a NULL time, or an I/O error naming the file. Nothing
    /// of the file is committed then (for an upsert or dedup table, nothing of
    /// the chunk that failed).
    pub fn import(
        &self,
        file: &ImportedFile,
        batches: impl Iterator<Item = Result<RecordBatch>>,
        progress: &dyn Fn(u64),
    ) -> Result<ImportReport> {
        if self.schema.upsert_config().is_some() {
            return self.import_through_key_map(file, batches, progress);
        }
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_retired() {
            return Err(Error::TableNotFound(self.schema.name.clone()));
        }
        if self.imported_before(file).is_some() {
            return Ok(ImportReport {
                already_imported: true,
                ..ImportReport::default()
            });
        }
        let mut manifest = self.manifest();
        let mut report = ImportReport::default();
        let mut next_id = || {
            let id = manifest.next_segment;
            manifest.next_segment += 1;
            Ok(id)
        };
        let written = self.write_import_segments(&mut next_id, batches, progress, &mut report)?;
        let mut segments = Vec::with_capacity(written.len());
        for (entry, segment) in written {
            manifest.segments.push(entry);
            segments.push(segment);
        }
        manifest.imported.push(ImportedFile {
            rows: report.rows,
            ..file.clone()
        });
        manifest.save(&*self.fs, &self.dir)?;
        self.count_expired(report.expired as usize);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.sealed.extend(segments);
        state.manifest = manifest;
        Ok(report)
    }

    /// An upsert or dedup table's import: every row must meet the key map, so
    /// the rows take the normal write path, in time order, a chunk of at most
    /// [`KEY_MAP_CHUNK_ROWS`] rows per write-ahead record (one record is
    /// all or nothing); then a seal, and the file's record in the manifest. A
    /// crash part-way leaves a prefix of a large file; running the import again
    /// applies the whole file, which upserts and dedup make idempotent (a row
    /// replaces itself, a duplicate is dropped), so the table ends as if the
    /// file had been imported once.
    fn import_through_key_map(
        &self,
        file: &ImportedFile,
        batches: impl Iterator<Item = Result<RecordBatch>>,
        progress: &dyn Fn(u64),
    ) -> Result<ImportReport> {
        if self.imported_before(file).is_some() {
            return Ok(ImportReport {
                already_imported: true,
                ..ImportReport::default()
            });
        }
        let cutoff = self.retention_cutoff();
        let time = self.schema.time_column_index();
        let mut report = ImportReport {
            through_key_map: true,
            ..ImportReport::default()
        };
        let mut read = 0u64;
        let mut chunk: Vec<Vec<Value>> = Vec::new();
        let mut write = |chunk: &mut Vec<Vec<Value>>| -> Result<()> {
            if let Some(t) = time {
                chunk.sort_by_key(|row| match row.get(t) {
                    Some(Value::Timestamp(micros)) => *micros,
                    _ => i64::MIN,
                });
            }
            report.rows += chunk.len() as u64;
            self.append(std::mem::take(chunk))?;
            Ok(())
        };
        for batch in batches {
            let batch = batch?;
            read += batch.num_rows() as u64;
            progress(read);
            let (kept, expired) = keep_in_retention(batch, time, cutoff, &self.schema)?;
            report.expired += expired;
            for row in 0..kept.num_rows() {
                chunk.push(
                    kept.columns()
                        .iter()
                        .map(|c| crate::upsert::key::value_at(c, row))
                        .collect(),
                );
            }
            if chunk.len() >= KEY_MAP_CHUNK_ROWS {
                write(&mut chunk)?;
            }
        }
        if !chunk.is_empty() {
            write(&mut chunk)?;
        }
        self.count_expired(report.expired as usize);
        self.seal_now()?;
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        let mut manifest = self.manifest();
        manifest.imported.push(ImportedFile {
            rows: report.rows,
            ..file.clone()
        });
        manifest.save(&*self.fs, &self.dir)?;
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .manifest = manifest;
        Ok(report)
    }

    /// Writes the segments of an import, numbered by `next_id` in the order
    /// the rows came; returns their entries and opened segments in that
    /// order.
    ///
    /// The batches' own errors are of the caller's type `E` (a query's, for
    /// `INSERT ... SELECT`), so they come back unchanged. On any error, the
    /// segment files written so far are removed: nothing refers to them.
    pub(super) fn write_import_segments<E: From<Error>>(
        &self,
        next_id: &mut dyn FnMut() -> Result<u64>,
        batches: impl Iterator<Item = std::result::Result<RecordBatch, E>>,
        progress: &dyn Fn(u64),
        report: &mut ImportReport,
    ) -> std::result::Result<Vec<(SegmentEntry, Arc<SealedSegment>)>, E> {
        let mut ids = Vec::new();
        let mut numbered = || {
            let id = next_id()?;
            ids.push(id);
            Ok(id)
        };
        let written = self.write_segments_of(&mut numbered, batches, progress, report);
        if written.is_err() {
            // Every writer has stopped (the scope joined them), so these files
            // are complete or absent; none is in a committed manifest.
            for id in ids {
                let path = self.dir.join(segment_file(id));
                if let Err(e) = self.fs.remove_file(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(file = %path.display(), error = %e, "an uncommitted segment could not be removed; the next open moves it to lost+found");
                    }
                }
            }
        }
        written
    }

    fn write_segments_of<E: From<Error>>(
        &self,
        next_id: &mut dyn FnMut() -> Result<u64>,
        batches: impl Iterator<Item = std::result::Result<RecordBatch, E>>,
        progress: &dyn Fn(u64),
        report: &mut ImportReport,
    ) -> std::result::Result<Vec<(SegmentEntry, Arc<SealedSegment>)>, E> {
        let segment_rows = self.schema.options.segment_rows().max(1);
        let cutoff = self.retention_cutoff();
        let time = self.schema.time_column_index();
        let mut written = Vec::new();
        std::thread::scope(|scope| -> std::result::Result<(), E> {
            // A bounded hand-off: at most one segment's rows wait per writer,
            // so memory stays a few segments whatever the file's size.
            let (work, jobs) = mpsc::sync_channel::<(u64, Vec<RecordBatch>)>(IMPORT_WRITERS);
            let jobs = Arc::new(Mutex::new(jobs));
            let (done, results) = mpsc::channel();
            for _ in 0..IMPORT_WRITERS {
                let jobs = Arc::clone(&jobs);
                let done = done.clone();
                scope.spawn(move || loop {
                    let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((id, rows)) = job else { return };
                    let result = self.write_import_segment(id, &rows);
                    let failed = result.is_err();
                    if done.send(result).is_err() || failed {
                        return;
                    }
                });
            }
            // Only the writers hold the jobs now: if every one of them stops
            // (on an error), sending fails instead of waiting forever.
            drop(jobs);
            drop(done);
            let mut pending: Vec<RecordBatch> = Vec::new();
            let mut pending_rows = 0usize;
            // `false` once the writers have stopped: their error is in `results`.
            let mut send = |rows: Vec<RecordBatch>| -> std::result::Result<bool, E> {
                let id = next_id()?;
                sealed_number(id)?;
                Ok(work.send((id, rows)).is_ok())
            };
            let mut writing = true;
            for batch in batches {
                let batch = batch?;
                report.rows += batch.num_rows() as u64;
                progress(report.rows);
                let (kept, expired) = keep_in_retention(batch, time, cutoff, &self.schema)?;
                report.expired += expired;
                let mut offset = 0;
                while offset < kept.num_rows() {
                    let take = (segment_rows - pending_rows).min(kept.num_rows() - offset);
                    pending.push(kept.slice(offset, take));
                    pending_rows += take;
                    offset += take;
                    if pending_rows == segment_rows {
                        writing = send(std::mem::take(&mut pending))?;
                        pending_rows = 0;
                    }
                }
                if !writing {
                    break;
                }
            }
            if pending_rows > 0 && writing {
                send(pending)?;
            }
            drop(work);
            for result in results {
                written.push(result?);
            }
            Ok(())
        })?;
        report.rows -= report.expired;
        report.segments = written.len() as u64;
        written.sort_by_key(|(entry, _)| entry.id);
        Ok(written)
    }

    /// Writes segment `id` of an import and opens it.
    fn write_import_segment(
        &self,
        id: u64,
        rows: &[RecordBatch],
    ) -> Result<(SegmentEntry, Arc<SealedSegment>)> {
        let file = segment_file(id);
        let path = self.dir.join(&file);
        let (footer, _order) = write_segment_ordered(&*self.fs, &path, &self.schema, rows)?;
        let segment = Arc::new(SealedSegment::open(&path)?);
        Ok((SegmentEntry::sealed_now(id, file, &footer), segment))
    }
}

/// The rows of `batch` within retention (time at or after `cutoff`), and how
/// many were past it.
///
/// # Errors
/// A NULL time: every row needs one to be placed in retention and pruning.
fn keep_in_retention(
    batch: RecordBatch,
    time: Option<usize>,
    cutoff: Option<i64>,
    schema: &TableSchema,
) -> Result<(RecordBatch, u64)> {
    let Some(time) = time else {
        return Ok((batch, 0));
    };
    let column = batch.column(time);
    if column.null_count() > 0 {
        return Err(Error::NotNull {
            table: schema.name.clone(),
            column: schema.columns[time].name.clone(),
        });
    }
    let Some(cutoff) = cutoff else {
        return Ok((batch, 0));
    };
    let times = column
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| Error::Arity("the time column is not a timestamp".into()))?;
    if times.values().iter().all(|t| *t >= cutoff) {
        return Ok((batch, 0));
    }
    let keep: BooleanArray = times.values().iter().map(|t| Some(*t >= cutoff)).collect();
    let expired = (batch.num_rows() - keep.true_count()) as u64;
    let kept = arrow::compute::filter_record_batch(&batch, &keep)
        .map_err(|e| Error::Arity(e.to_string()))?;
    Ok((kept, expired))
}
