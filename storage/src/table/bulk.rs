//! One statement's rows, appended all or nothing in bounded memory
//! (`INSERT ... SELECT`). A statement of a few rows takes the write-ahead
//! path of [`Table::append`]; one of many rows is written straight into
//! sealed segments as an import's are, and committed in one manifest step,
//! so it never holds more than a few segments' rows whatever its size and a
//! crash or an error part-way leaves nothing of it.

use super::*;

/// Rows a statement appends through the write-ahead file and the mutable
/// segment; past this many, its rows go straight into sealed segments. At
/// this size the rows held as values before the choice is made stay a few
/// megabytes, and a segment written for them is worth its file.
pub const WAL_STATEMENT_ROWS: usize = 64 * 1024;

impl Table {
    /// Appends the rows `chunks` yields, values for the named `columns` (the
    /// others NULL), as one statement: either every row is stored or none is.
    /// Returns the rows stored (those past retention are counted and left
    /// out), durable and visible to the next query.
    ///
    /// Up to [`WAL_STATEMENT_ROWS`] rows are appended as [`Table::append`]
    /// does. Past that, a table without a key map writes its rows into
    /// sealed segments as they come (a chunk at a time is converted to
    /// columns), committed together in one manifest step; appends, seals
    /// and queries go on meanwhile. An upsert or dedup table's rows must
    /// meet its key map in one write-ahead record, so they are gathered whole
    /// first: the caller bounds that memory.
    ///
    /// # Errors
    /// A chunk's own error (of the caller's type), or as [`Table::append`].
    /// Nothing of the statement is stored then.
    pub fn append_statement<E: From<Error>>(
        &self,
        columns: &[String],
        chunks: impl Iterator<Item = std::result::Result<Vec<Vec<Value>>, E>>,
    ) -> std::result::Result<usize, E> {
        let positions = self.column_positions(columns)?;
        let mut chunks =
            chunks.map(|chunk| chunk.and_then(|rows| Ok(self.widen(&positions, rows)?)));
        let mut head: Vec<Vec<Value>> = Vec::new();
        let bounded = self.schema.upsert_config().is_none();
        while !bounded || head.len() <= WAL_STATEMENT_ROWS {
            match chunks.next() {
                Some(chunk) => head.extend(chunk?),
                None => return Ok(self.append(head)?),
            }
        }
        let rest = std::iter::once(Ok(head)).chain(chunks);
        self.append_sealed(rest)
    }

    /// Writes the full-width rows `chunks` yields as sealed segments and
    /// commits them in one manifest step.
    ///
    /// `sealing` is held only to number a segment and to commit, not while
    /// the rows are pulled: the statement's own scan may need it (to
    /// quarantine a damaged segment of the table it reads), and seals of
    /// other writers' rows go on meanwhile.
    fn append_sealed<E: From<Error>>(
        &self,
        chunks: impl Iterator<Item = std::result::Result<Vec<Vec<Value>>, E>>,
    ) -> std::result::Result<usize, E> {
        let batches =
            chunks.flat_map(
                |chunk| match chunk.and_then(|rows| Ok(self.blocks_of(rows)?)) {
                    Ok(blocks) => blocks.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                },
            );
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

    /// Coerced rows as column blocks of the table's types, built as the
    /// mutable segment builds its own (so a value stored either way is the
    /// same value).
    fn blocks_of(&self, rows: Vec<Vec<Value>>) -> Result<Vec<RecordBatch>> {
        let rows = coerce_rows(&self.schema, rows)?;
        let mut segment = MutableSegment::new(&self.schema);
        segment.append(&rows)?;
        drop(rows);
        Ok(segment.blocks())
    }
}
