//! The table's side of upserts and dedup (see [`crate::upsert`]): applying
//! rows in order, reading a stored row back for a partial merge, rebuilding
//! the key map from sealed segments on open, and keeping the superseded rows'
//! bitmaps on disk, one file per sealed segment, committed by the manifest.

use std::collections::HashMap;

use arrow::array::ArrayRef;
use roaring::RoaringBitmap;

use super::*;
use crate::upsert::key::value_at;
use crate::upsert::{ClearedRows, Decision, KeyEntry, KeyHash, Location, UpsertState};

/// Where applied rows go.
pub(super) enum Target {
    /// The write-ahead rows' mutable segment.
    Mutable,
    /// A source partition's consuming segment.
    Partition(i32),
}

/// Magic at the start of a cleared-rows file.
const CLEARED_MAGIC: &[u8; 8] = b"SLCLRD\x00\x01";

/// The name of a sealed segment's cleared-rows file.
pub(super) fn cleared_file(segment: u64, generation: u64) -> String {
    format!("cleared-{segment:06}-{generation:06}.roaring")
}

/// Writes a cleared-rows file durably: magic, CRC-32 of the bitmap, the
/// bitmap (portable roaring).
pub(super) fn write_cleared(fs: &dyn FileSystem, path: &Path, rows: &RoaringBitmap) -> Result<()> {
    let mut bitmap = Vec::with_capacity(rows.serialized_size());
    rows.serialize_into(&mut bitmap)
        .map_err(|e| Error::io(path, e))?;
    let mut bytes = CLEARED_MAGIC.to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&bitmap).to_le_bytes());
    bytes.extend_from_slice(&bitmap);
    crate::fs::write_atomically(fs, path, &bytes)
}

/// Reads a cleared-rows file (also for `sluice check`).
///
/// # Errors
/// [`Error::Corrupt`] naming the file if it is damaged.
pub(crate) fn read_cleared(path: &Path) -> Result<RoaringBitmap> {
    let corrupt = |detail: &str| Error::Corrupt {
        path: path.to_path_buf(),
        section: "cleared rows".into(),
        detail: detail.into(),
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 12 || &bytes[..8] != CLEARED_MAGIC {
        return Err(corrupt("not a cleared-rows file"));
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if crc32fast::hash(&bytes[12..]) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    RoaringBitmap::deserialize_from(&bytes[12..]).map_err(|e| corrupt(&e.to_string()))
}

/// The number of a sealed segment file (`seg-000042.sluice` is 42).
pub(super) fn segment_number(segment: &SealedSegment) -> Option<u32> {
    segment
        .path()
        .file_name()?
        .to_str()?
        .strip_prefix("seg-")?
        .strip_suffix(".sluice")?
        .parse()
        .ok()
}

/// A sealed segment's row, all columns.
fn sealed_row(segment: &SealedSegment, row: u32) -> Option<Vec<Value>> {
    let block_rows = segment.footer().block_rows.max(1);
    let (block, at) = ((row / block_rows) as usize, (row % block_rows) as usize);
    (0..segment.footer().columns.len())
        .map(|c| {
            let values = segment.read_block(c, block).ok()?;
            (at < values.len()).then(|| value_at(&values, at))
        })
        .collect()
}

/// A frozen run's row.
fn frozen_row(blocks: &[RecordBatch], row: u32) -> Option<Vec<Value>> {
    let mut row = row as usize;
    for b in blocks {
        if row < b.num_rows() {
            return Some(b.columns().iter().map(|c| value_at(c, row)).collect());
        }
        row -= b.num_rows();
    }
    None
}

/// The stored row at `at`, wherever it is; `None` if it cannot be read (the
/// merge then starts from the new row alone, and says so in the log).
fn stored_row(
    sealed: &[Arc<SealedSegment>],
    frozen: Option<&Frozen>,
    mutable: &MutableSegment,
    partitions: &BTreeMap<i32, ConsumingSegment>,
    at: Location,
) -> Option<Vec<Value>> {
    let found = if mutable.id() == at.segment {
        mutable.row(at.row as usize)
    } else if let Some(c) = partitions.values().find(|c| c.mutable.id() == at.segment) {
        c.mutable.row(at.row as usize)
    } else if let Some((_, blocks)) = frozen.and_then(|f| f.runs().find(|(s, _)| *s == at.segment))
    {
        frozen_row(blocks, at.row)
    } else {
        sealed
            .iter()
            .find(|s| segment_number(s) == Some(at.segment))
            .and_then(|s| sealed_row(s, at.row))
    };
    if found.is_none() {
        tracing::error!(
            segment = at.segment,
            row = at.row,
            "a stored row could not be read for a partial upsert; the new row is stored alone"
        );
    }
    found
}

/// The segment `target` names.
fn target_segment<'a>(
    mutable: &'a mut MutableSegment,
    partitions: &'a mut BTreeMap<i32, ConsumingSegment>,
    target: &Target,
) -> Result<&'a mut MutableSegment> {
    match target {
        Target::Mutable => Ok(mutable),
        Target::Partition(p) => partitions
            .get_mut(p)
            .map(|c| &mut c.mutable)
            .ok_or_else(|| Error::Arity(format!("no consuming segment for partition {p}"))),
    }
}

impl TableState {
    /// Appends `rows` (coerced) to the target segment, deciding each one's fate
    /// by key first for an upsert or dedup table. Returns the rows stored.
    pub(super) fn apply_rows(&mut self, target: Target, rows: &[Vec<Value>]) -> Result<usize> {
        let TableState {
            sealed,
            frozen,
            mutable,
            partitions,
            upsert,
            manifest,
            ..
        } = self;
        let Some(upsert) = upsert else {
            target_segment(mutable, partitions, &target)?.append(rows)?;
            return Ok(rows.len());
        };
        let mut stored = 0;
        for row in rows {
            if let Target::Partition(p) = target {
                note_partition(upsert, row, p, partitions, frozen.as_ref(), manifest);
            }
            let into = {
                let segment = target_segment(mutable, partitions, &target)?;
                Location {
                    segment: segment.id(),
                    row: segment.rows() as u32,
                }
            };
            let decision = upsert.apply(row.clone(), into, |at| {
                stored_row(sealed, frozen.as_ref(), mutable, partitions, at)
            });
            let Decision::Store { row: merged, .. } = decision else {
                continue;
            };
            let segment = target_segment(mutable, partitions, &target)?;
            // The incoming row was checked before it was written; a merge can
            // still leave a column's range (an INTEGER increment past 2^31).
            // Then the incoming row is stored as it came, the same on every
            // replay, rather than a row the table cannot hold.
            let merged = std::slice::from_ref(&merged);
            let stored_row = match segment.check(merged) {
                Ok(()) => merged,
                Err(e) => {
                    tracing::error!(error = %e, "a partial upsert's merge does not fit its column; the new row is stored as it came");
                    std::slice::from_ref(row)
                }
            };
            segment.append(stored_row)?;
            stored += 1;
        }
        Ok(stored)
    }
}

/// Counts (and now and then logs) a row of source partition `partition`
/// whose key's stored row came from another partition.
fn note_partition(
    upsert: &mut UpsertState,
    row: &[Value],
    partition: i32,
    partitions: &BTreeMap<i32, ConsumingSegment>,
    frozen: Option<&Frozen>,
    manifest: &Manifest,
) {
    let Some(entry) = upsert.map.get(upsert.key_of(row)) else {
        return;
    };
    let from = source_partition(entry.location.segment, partitions, frozen, manifest);
    if from.is_some_and(|q| q != partition) {
        upsert.stats.keys_in_two_partitions += 1;
        let n = upsert.stats.keys_in_two_partitions;
        if n.is_power_of_two() {
            tracing::warn!(partition, earlier_partition = from, rows = n, "a key arrived in two source partitions: the topic must be partitioned by the primary key, or rows of a key may apply out of order");
        }
    }
}

/// The source partition whose rows segment `segment` holds, if any.
fn source_partition(
    segment: u32,
    partitions: &BTreeMap<i32, ConsumingSegment>,
    frozen: Option<&Frozen>,
    manifest: &Manifest,
) -> Option<i32> {
    if let Some((p, _)) = partitions.iter().find(|(_, c)| c.mutable.id() == segment) {
        return Some(*p);
    }
    if let Some((p, _)) =
        frozen.and_then(|f| f.partitions.iter().find(|(_, c)| c.segment == segment))
    {
        return Some(*p);
    }
    manifest
        .segments
        .iter()
        .find(|e| e.id == u64::from(segment))
        .and_then(|e| e.partition)
}

/// The upsert state of a table opened from `sealed` (in seal order, as the
/// manifest lists them): each segment's rows less its cleared file's are the
/// keys' latest rows. Nothing of history is re-applied.
///
/// # Errors
/// A cleared-rows file or a segment's key columns that cannot be read.
pub(super) fn rebuild(
    config: crate::upsert::UpsertConfig,
    dir: &Path,
    manifest: &Manifest,
    sealed: &[Arc<SealedSegment>],
) -> Result<UpsertState> {
    let mut state = UpsertState::new(config);
    for entry in &manifest.segments {
        let Some(segment) = sealed.iter().find(|s| s.path() == dir.join(&entry.file)) else {
            continue; // quarantined: its rows are out of queries and of the map
        };
        let number = entry.id as u32;
        let cleared = match &entry.cleared {
            Some(file) => match read_cleared(&dir.join(file)) {
                Ok(rows) => rows,
                Err(e) => {
                    // The table still opens: a key with two valid rows keeps
                    // the newer (below), which is right unless two of its rows
                    // had equal comparison values. `sluice check` reports it.
                    tracing::error!(error = %e, "a cleared-rows file cannot be read; the segment's keys are resolved by comparison value");
                    RoaringBitmap::new()
                }
            },
            None => RoaringBitmap::new(),
        };
        state.persisted.set(number, cleared.clone());
        state.cleared.set(number, cleared.clone());
        let config = state.config.clone();
        let blocks = segment
            .footer()
            .columns
            .first()
            .map_or(0, |c| c.blocks.len());
        let mut row = 0u32;
        for b in 0..blocks {
            let read = |c: usize| segment.read_block(c, b);
            let keys = config
                .key
                .iter()
                .map(|&c| read(c))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let key_refs: Vec<&ArrayRef> = keys.iter().collect();
            let block_keys = KeyHash::of_rows(&key_refs);
            let comparison = read(config.comparison)?;
            let comparisons = crate::upsert::comparison_values(&comparison);
            let delete = config.delete.map(read).transpose()?;
            for (i, (&key, &compared)) in block_keys.iter().zip(&comparisons).enumerate() {
                let at = Location {
                    segment: number,
                    row: row + i as u32,
                };
                if cleared.contains(at.row) {
                    continue;
                }
                let entry = KeyEntry {
                    location: at,
                    comparison: compared,
                    deleted: delete
                        .as_ref()
                        .is_some_and(|d| matches!(value_at(d, i), Value::Bool(true))),
                };
                if let Some(earlier) = state.map.get(key) {
                    // Two valid rows of one key: only if the files were made
                    // by hand. The later one wins, as it would have.
                    tracing::warn!(
                        segment = number,
                        row = at.row,
                        "a key has two valid rows; the later one is kept"
                    );
                    state.cleared.clear(earlier.location);
                }
                state.newest = state.newest.max(entry.comparison);
                state.map.insert(key, entry);
            }
            row += comparison.len() as u32;
        }
    }
    Ok(state)
}

/// The superseded rows of a run's rows after a seal moved them: `moves[old]`
/// is each old row's new place.
pub(super) fn moved_cleared(
    cleared: &RoaringBitmap,
    moves: &[Location],
) -> HashMap<u32, RoaringBitmap> {
    let mut out: HashMap<u32, RoaringBitmap> = HashMap::new();
    for old in cleared {
        if let Some(to) = moves.get(old as usize) {
            out.entry(to.segment).or_default().insert(to.row);
        }
    }
    out
}

/// The cleared rows as of the freeze, to persist with the seal.
pub(super) fn cleared_at_freeze(state: &TableState) -> Option<ClearedRows> {
    state.upsert.as_ref().map(|u| u.cleared.clone())
}

impl Table {
    /// Writes the cleared-rows files a seal commits: for each new segment, the
    /// rows of its run superseded as of the freeze; for each older sealed
    /// segment whose superseded rows changed since its file was written, a new
    /// file. Points the manifest's entries at them; returns what was written.
    pub(super) fn write_cleared_files(
        &self,
        frozen: &Frozen,
        moves: &[(u32, Vec<Location>)],
        manifest: &mut Manifest,
    ) -> Result<Vec<(u32, RoaringBitmap)>> {
        let Some(at_freeze) = &frozen.cleared else {
            return Ok(Vec::new());
        };
        let mut to_write: HashMap<u32, RoaringBitmap> = HashMap::new();
        for (run, moved) in moves {
            if let Some(cleared) = at_freeze.of(*run) {
                to_write.extend(moved_cleared(&cleared, moved));
            }
        }
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            if let Some(upsert) = &state.upsert {
                for entry in &manifest.segments {
                    let number = entry.id as u32;
                    let now = at_freeze.of(number);
                    if now.as_deref() != upsert.persisted.of(number).as_deref() {
                        to_write.insert(number, now.map(|b| (*b).clone()).unwrap_or_default());
                    }
                }
            }
        }
        let mut written = Vec::new();
        for entry in &mut manifest.segments {
            let number = entry.id as u32;
            let Some(rows) = to_write.remove(&number) else {
                continue;
            };
            entry.cleared = if rows.is_empty() {
                None
            } else {
                let file = cleared_file(entry.id, manifest.next_cleared);
                manifest.next_cleared += 1;
                write_cleared(&*self.fs, &self.dir.join(&file), &rows)?;
                Some(file)
            };
            written.push((number, rows));
        }
        Ok(written)
    }

    /// Deletes the cleared-rows files `before` listed that the committed
    /// manifest no longer does. A file left behind goes to lost+found on the
    /// next open.
    pub(super) fn remove_replaced_cleared_files(&self, before: &[SegmentEntry]) {
        let now = self.manifest();
        for file in before.iter().filter_map(|e| e.cleared.as_ref()) {
            if !now
                .segments
                .iter()
                .any(|e| e.cleared.as_ref() == Some(file))
            {
                let path = self.dir.join(file);
                if let Err(e) = self.fs.remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete a replaced cleared-rows file");
                }
            }
        }
    }
}

/// What an upsert or dedup table's key map holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpsertReport {
    /// Keys in the map (deleted keys included, until their rows go).
    pub keys: u64,
    /// Bytes the map holds.
    pub map_bytes: u64,
    /// Rows superseded and still stored (skipped by every scan).
    pub superseded_rows: u64,
    /// Counters since the table was opened.
    pub stats: crate::upsert::UpsertStats,
}

impl Table {
    /// The key map's size and counters, for an upsert or dedup table.
    pub fn upsert_report(&self) -> Option<UpsertReport> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let u = state.upsert.as_ref()?;
        Some(UpsertReport {
            keys: u.map.len() as u64,
            map_bytes: u.map.heap_bytes() as u64,
            superseded_rows: u.cleared.total(),
            stats: u.stats,
        })
    }
}

impl Table {
    /// The rows of a merge's `inputs`, less (for an upsert or dedup table) the
    /// rows their committed cleared files supersede; for such a table also
    /// each remaining row's origin (input segment, row), in order.
    pub(super) fn without_committed_superseded(
        &self,
        inputs: &[Arc<SealedSegment>],
        per_input: Vec<Vec<RecordBatch>>,
    ) -> Result<(Vec<RecordBatch>, Option<Vec<Location>>)> {
        let persisted: Option<Vec<Option<Arc<RoaringBitmap>>>> = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            state.upsert.as_ref().map(|u| {
                inputs
                    .iter()
                    .map(|s| segment_number(s).and_then(|n| u.persisted.of(n)))
                    .collect()
            })
        };
        let Some(persisted) = persisted else {
            return Ok((per_input.into_iter().flatten().collect(), None));
        };
        let mut batches = Vec::new();
        let mut origins = Vec::new();
        for ((segment, blocks), cleared) in inputs.iter().zip(per_input).zip(persisted) {
            let number = segment_number(segment).ok_or_else(|| {
                Error::Arity(format!(
                    "{} is not a numbered segment",
                    segment.path().display()
                ))
            })?;
            let mut row = 0u32;
            for block in blocks {
                let n = block.num_rows() as u32;
                let keep: Vec<bool> = (row..row + n)
                    .map(|r| !cleared.as_ref().is_some_and(|c| c.contains(r)))
                    .collect();
                origins.extend(
                    (row..row + n)
                        .zip(&keep)
                        .filter(|(_, k)| **k)
                        .map(|(r, _)| Location {
                            segment: number,
                            row: r,
                        }),
                );
                let mask = arrow::array::BooleanArray::from(keep);
                batches.push(
                    arrow::compute::filter_record_batch(&block, &mask)
                        .map_err(|e| Error::Arity(format!("merging segments: {e}")))?,
                );
                row += n;
            }
        }
        Ok((batches, Some(origins)))
    }
}

/// After a merge into segment `merged`: the map's entries and the rows
/// superseded since the inputs' files were written follow the rows that
/// moved; the inputs' bitmaps go. `origins[i]` is where the merge's `i`-th row
/// came from, `order[new] = i` the order it was written in.
pub(super) fn follow_merge(
    upsert: &mut UpsertState,
    inputs: &[u32],
    origins: &[Location],
    order: Option<&[u32]>,
    merged: u32,
) {
    let mut moves: HashMap<Location, Location> = HashMap::with_capacity(origins.len());
    for new_row in 0..origins.len() as u32 {
        let i = order.map_or(new_row, |o| o[new_row as usize]);
        moves.insert(
            origins[i as usize],
            Location {
                segment: merged,
                row: new_row,
            },
        );
    }
    upsert.map.relocate(|at| {
        if inputs.contains(&at.segment) {
            moves.get(&at).copied()
        } else {
            None
        }
    });
    let mut superseded = RoaringBitmap::new();
    for &input in inputs {
        if let Some(cleared) = upsert.cleared.remove(input) {
            superseded.extend(cleared.iter().filter_map(|row| {
                moves
                    .get(&Location {
                        segment: input,
                        row,
                    })
                    .map(|to| to.row)
            }));
        }
        upsert.persisted.remove(input);
    }
    upsert.cleared.set(merged, superseded);
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::schema::{ColumnDef, TableSchema};
    use crate::types::{ColumnType, Value};

    fn schema() -> TableSchema {
        let col = |name: &str, ty| ColumnDef {
            name: name.into(),
            ty,
            nullable: true,
        };
        TableSchema::new(
            "u",
            vec![
                col("ts", ColumnType::Timestamp),
                col("k", ColumnType::BigInt),
            ],
            vec!["k".into()],
            [
                ("time_column", "ts"),
                ("retention", "none"),
                ("upsert", "full"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
        .unwrap()
    }

    /// A damaged cleared-rows file names itself in `sluice check`, and the
    /// table still opens with each key once (resolved by comparison value).
    #[test]
    fn a_damaged_cleared_file_is_reported_and_the_table_opens() {
        let dir = tempfile::tempdir().unwrap();
        let file = {
            let catalog = Catalog::open(dir.path()).unwrap();
            catalog.create_table(schema(), false).unwrap();
            let t = catalog.table("u").unwrap();
            for version in 0..3 {
                let rows = (0..4)
                    .map(|k| vec![Value::Timestamp(version * 10 + k), Value::Int(k)])
                    .collect();
                t.append(rows).unwrap();
            }
            t.seal_now().unwrap();
            let cleared = t.manifest().segments[0]
                .cleared
                .clone()
                .expect("a cleared file");
            t.dir().join(cleared)
        };
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&file, bytes).unwrap();
        let report = crate::check::check_data_dir(dir.path(), false).unwrap();
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.path == file && f.problem.contains("cleared rows")),
            "{:?}",
            report.findings
        );
        let catalog = Catalog::open(dir.path()).unwrap();
        let t = catalog.table("u").unwrap();
        assert_eq!(t.upsert_report().unwrap().keys, 4);
        assert_eq!(
            t.upsert_report().unwrap().superseded_rows,
            8,
            "resolved by comparison"
        );
    }
}
