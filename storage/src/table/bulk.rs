//! One statement's rows, appended all or nothing in bounded memory
//! (`INSERT ... SELECT`). A statement of a few rows takes the write-ahead
//! path of [`Table::append`]; one of many rows is written straight into
//! sealed segments as an import's are, and committed in one manifest step,
//! so it never holds more than a few segments' rows whatever its size and a
//! crash or an error part-way leaves nothing of it.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Decimal128Type;

use super::*;
use crate::types::{pow10_i128, ColumnType};

/// Rows a statement appends through the write-ahead file and the mutable
/// segment; past this many, its rows go straight into sealed segments. At
/// this size the rows held as values before the choice is made stay a few
/// megabytes, and a segment written for them is worth its file.
pub const WAL_STATEMENT_ROWS: usize = 64 * 1024;

impl Table {
    /// Appends the rows `batches` yields as one statement: either every row
    /// is stored or none is. Each batch has one column per table column, in
    /// order, of the column's type (`ColumnType::arrow_type`; TEXT may be
    /// dictionary-encoded). Returns the rows stored (those past retention
    /// are counted and left out), durable and visible to the next query.
    ///
    /// Up to [`WAL_STATEMENT_ROWS`] rows are appended as [`Table::append`]
    /// does. Past that, a table without a key map writes its rows into
    /// sealed segments as they come, as an import does, committed together
    /// in one manifest step; appends, seals and queries go on meanwhile. An
    /// upsert or dedup table's rows must meet its key map in one write-ahead
    /// record, so they are gathered whole first: the caller bounds that
    /// memory.
    ///
    /// # Errors
    /// A batch's own error (of the caller's type); a NULL in a NOT NULL
    /// column, a numeric past its precision, a batch not of the table's
    /// columns; or as [`Table::append`]. Nothing of the statement is stored
    /// then.
    pub fn append_statement<E: From<Error>>(
        &self,
        batches: impl Iterator<Item = std::result::Result<RecordBatch, E>>,
    ) -> std::result::Result<usize, E> {
        let mut batches = batches.map(|b| b.and_then(|b| Ok(self.checked(b)?)));
        let mut head: Vec<RecordBatch> = Vec::new();
        let mut head_rows = 0;
        let bounded = self.schema.upsert_config().is_none();
        while !bounded || head_rows <= WAL_STATEMENT_ROWS {
            match batches.next() {
                Some(batch) => {
                    let batch = batch?;
                    head_rows += batch.num_rows();
                    head.push(batch);
                }
                None => return Ok(self.append(values_of(&head))?),
            }
        }
        self.append_sealed(head.into_iter().map(Ok).chain(batches))
    }

    /// Writes the rows `batches` yields as sealed segments and commits them
    /// in one manifest step.
    ///
    /// `sealing` is held only to number a segment and to commit, not while
    /// the rows are pulled: the statement's own scan may need it (to
    /// quarantine a damaged segment of the table it reads), and seals of
    /// other writers' rows go on meanwhile.
    fn append_sealed<E: From<Error>>(
        &self,
        batches: impl Iterator<Item = std::result::Result<RecordBatch, E>>,
    ) -> std::result::Result<usize, E> {
        let mut report = ImportReport::default();
        let written = self.write_import_segments(
            &mut || self.reserve_segment_id(),
            batches,
            &|_| {},
            &mut report,
        )?;
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        let committed = if self.is_retired() {
            Err(Error::TableNotFound(self.schema.name.clone()))
        } else {
            let mut manifest = self.manifest();
            manifest
                .segments
                .extend(written.iter().map(|(entry, _)| entry.clone()));
            manifest.save(&*self.fs, &self.dir).map(|()| manifest)
        };
        let manifest = match committed {
            Ok(manifest) => manifest,
            Err(e) => {
                for (entry, _) in &written {
                    let _ = self.fs.remove_file(&self.dir.join(&entry.file));
                }
                return Err(e.into());
            }
        };
        self.count_expired(report.expired as usize);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state
            .sealed
            .extend(written.into_iter().map(|(_, segment)| segment));
        state.manifest = manifest;
        Ok(report.rows as usize)
    }

    /// A segment number no other seal, merge or import will use: the
    /// table's next one, taken under `sealing` so they all see it taken.
    /// Written to the manifest with the next commit, whoever makes it.
    fn reserve_segment_id(&self) -> Result<u64> {
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let id = state.manifest.next_segment;
        state.manifest.next_segment = id + 1;
        Ok(id)
    }

    /// `batch` if its columns are the table's, of their types, with no NULL
    /// in a NOT NULL column and no numeric past its column's precision: what
    /// [`Table::append`] checks of each value, checked a column at a time.
    fn checked(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if batch.num_columns() != self.schema.columns.len() {
            return Err(Error::Arity(format!(
                "a batch of {} columns for table \"{}\" of {}",
                batch.num_columns(),
                self.schema.name,
                self.schema.columns.len()
            )));
        }
        for (array, column) in batch.columns().iter().zip(&self.schema.columns) {
            if !column.ty.takes_arrow(array.data_type()) {
                return Err(Error::Arity(format!(
                    "internal error: column \"{}\" given as {}, stored as {}",
                    column.name,
                    array.data_type(),
                    column.ty.arrow_type()
                )));
            }
            if !column.nullable && array.null_count() > 0 {
                return Err(Error::NotNull {
                    table: self.schema.name.clone(),
                    column: column.name.clone(),
                });
            }
            if let ColumnType::Numeric { precision, scale } = column.ty {
                let limit = pow10_i128(precision as u32).unsigned_abs();
                let values = array.as_primitive::<Decimal128Type>();
                if values.iter().flatten().any(|v| v.unsigned_abs() >= limit) {
                    return Err(Error::OutOfRange(format!(
                        "numeric field overflow: a field with precision {precision}, scale {scale} \
                         value"
                    )));
                }
            }
        }
        Ok(batch)
    }
}

/// The rows of `batches` as values, for the write-ahead path.
fn values_of(batches: &[RecordBatch]) -> Vec<Vec<Value>> {
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| crate::upsert::key::value_at(c, row))
                    .collect(),
            );
        }
    }
    rows
}
