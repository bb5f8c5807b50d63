//! A table: its schema, its mutable segment and its write-ahead file, behind the one
//! append path that every writer (INSERT, the embedding API, later Kafka) goes through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::fs::{sync_dir, Environment, FileSystem};
use crate::manifest::{Manifest, SegmentEntry};
use crate::mutable_segment::MutableSegment;
use crate::schema::TableSchema;
use crate::segment::{write_segment_ordered, SealedSegment};
use crate::source::{
    read_dead_letters, write_dead_letters, ConsumingSegment, DeadLetter, FrozenPartition,
    PartitionStatus,
};
use crate::types::Value;
use crate::upsert::Location;
use crate::wal::WriteAheadLog;

mod bulk;
mod import;
mod retention;
pub(crate) mod upsert;
pub use bulk::WAL_STATEMENT_ROWS;
pub use import::ImportReport;
pub use retention::RetentionStats;
use upsert::Target;
pub use upsert::UpsertReport;

/// A table of the catalog. Cheap to share (`Arc<Table>`); all methods take `&self`.
///
/// Rows arrive in the mutable segment (and, first, in the current write-ahead
/// generation). Sealing freezes the mutable segment, starts a new one and a new
/// write-ahead generation, writes the frozen rows as a segment file without holding
/// any lock that appends or queries need, commits the manifest, and then swaps the
/// frozen rows for the sealed segment in one step under the state lock, so a query
/// sees every row exactly once whenever it takes its snapshot.
pub struct Table {
    schema: Arc<TableSchema>,
    dir: PathBuf,
    /// Every change to the table's files goes through this.
    fs: Arc<dyn FileSystem>,
    /// Now, for retention.
    clock: Arc<dyn Clock>,
    /// What retention has removed.
    retention: Mutex<RetentionStats>,
    /// The number the next in-memory segment gets (from
    /// [`crate::upsert::FIRST_MEMORY_SEGMENT`]; sealed segments keep theirs).
    next_memory_segment: std::sync::atomic::AtomicU32,
    state: RwLock<TableState>,
    /// Orders writes to the write-ahead file; a seal holds it to rotate the
    /// generation. See [`Table::append`] for the group commit.
    wal: Mutex<Wal>,
    /// Signalled when a group's sync finishes.
    wal_synced: Condvar,
    /// One seal at a time.
    sealing: Mutex<()>,
    /// What the ingesting side last reported per source partition.
    source_status: Mutex<BTreeMap<i32, PartitionStatus>>,
    /// Seals committed since opening, and their total time in microseconds.
    seals: Mutex<(u64, u64)>,
    /// Set (under `sealing`) when the table is dropped: no seal or merge may touch
    /// its files after that.
    retired: std::sync::atomic::AtomicBool,
}

/// The write-ahead generation rows are being written to, and the group commit's
/// bookkeeping. Records are numbered in file order across generations.
struct Wal {
    log: WriteAheadLog,
    generation: u64,
    /// Records written so far.
    written: u64,
    /// Records known durable (and applied to the mutable segment).
    durable: u64,
    /// Rows of the records written but not yet synced, in file order.
    pending: Vec<Vec<Vec<Value>>>,
    /// A writer is syncing the file (with the lock released).
    syncing: bool,
    /// Set when a sync failed. After a failed fsync the kernel may have dropped
    /// the dirty pages, so a retry could report success for data that is gone;
    /// like PostgreSQL, the table takes no more writes until it is reopened,
    /// which replays what really is on disk.
    failed: Option<String>,
    /// Syncs made (each covering one or more records).
    syncs: u64,
}

impl Wal {
    fn new(log: WriteAheadLog, generation: u64) -> Self {
        Wal {
            log,
            generation,
            written: 0,
            durable: 0,
            pending: Vec::new(),
            syncing: false,
            failed: None,
            syncs: 0,
        }
    }

    fn check_failed(&self) -> Result<()> {
        match &self.failed {
            Some(e) => Err(Error::io(
                self.log.path(),
                std::io::Error::other(format!(
                    "an earlier sync of the write-ahead file failed ({e}); writes are refused until Sluice restarts"
                )),
            )),
            None => Ok(()),
        }
    }
}

/// Write-ahead counters of a table, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records (one per append) written since the table was opened.
    pub records: u64,
    /// fsyncs made for them: fewer than `records` when concurrent writers shared one.
    pub syncs: u64,
}

/// What readers see, swapped under one lock.
struct TableState {
    sealed: Vec<Arc<SealedSegment>>,
    /// Segment files the manifest lists that failed their checks, with the check:
    /// kept on disk, left out of queries, reported by `sluice.segments`.
    corrupt: Vec<(String, String)>,
    /// Rows frozen for a seal in progress (or one that failed and will be
    /// retried): still visible, committed together.
    frozen: Option<Frozen>,
    /// Rows written through the write-ahead file.
    mutable: MutableSegment,
    /// When the first row of the mutable segment arrived.
    mutable_since: Option<Instant>,
    /// Rows read from a source stream, per partition (see [`crate::source`]).
    partitions: BTreeMap<i32, ConsumingSegment>,
    manifest: Manifest,
    /// The key map and superseded rows of an upsert or dedup table.
    upsert: Option<crate::upsert::UpsertState>,
}

/// Write-ahead rows frozen for a seal.
#[derive(Clone)]
struct FrozenWal {
    rows: Vec<RecordBatch>,
    /// The last write-ahead generation that holds them.
    generation: u64,
    /// The number they had as the mutable segment.
    segment: u32,
}

/// What one seal takes aside and commits in one manifest.
#[derive(Clone)]
struct Frozen {
    /// Write-ahead rows.
    wal: Option<FrozenWal>,
    /// An upsert table's superseded rows as of the freeze: the effect of every
    /// row this seal commits, and of no later one, so the cleared files it
    /// writes are what a replay from this commit on starts from.
    cleared: Option<crate::upsert::ClearedRows>,
    /// Each source partition's rows, dead letters and position.
    partitions: BTreeMap<i32, FrozenPartition>,
}

impl Frozen {
    fn rows(&self) -> usize {
        let wal: usize = self
            .wal
            .iter()
            .flat_map(|w| &w.rows)
            .map(|b| b.num_rows())
            .sum();
        let partitions: usize = self
            .partitions
            .values()
            .flat_map(|p| &p.rows)
            .map(|b| b.num_rows())
            .sum();
        wal + partitions
    }

    /// Each frozen run's rows, with the number it had in memory.
    fn runs(&self) -> impl Iterator<Item = (u32, &Vec<RecordBatch>)> {
        self.wal
            .iter()
            .map(|w| (w.segment, &w.rows))
            .chain(self.partitions.values().map(|p| (p.segment, &p.rows)))
    }
}

/// What a query reads: the table's schema and an immutable view of its segments.
#[derive(Clone)]
pub struct TableSnapshot {
    /// The table's definition.
    pub schema: Arc<TableSchema>,
    /// Schema of the blocks (TEXT dictionary-encoded).
    pub block_schema: SchemaRef,
    /// The segments: sealed ones first, then rows not yet sealed.
    pub segments: Vec<SegmentSnapshot>,
}

/// One segment as of a snapshot.
#[derive(Clone)]
pub enum SegmentSnapshot {
    /// A sealed segment file, and its rows that later rows of their key
    /// superseded (an upsert table's), which a scan must skip.
    Sealed(Arc<SealedSegment>, Option<Arc<RoaringBitmap>>),
    /// Rows in memory (the mutable segment, or rows being sealed), in blocks of at
    /// most [`crate::BLOCK_ROWS`], the superseded ones (numbered across the
    /// blocks), and the equality indexes of the leading blocks that are
    /// finished (fewer than the blocks, or none for rows being sealed).
    Memory(
        Vec<RecordBatch>,
        Option<Arc<RoaringBitmap>>,
        Vec<Arc<crate::block_index::BlockIndex>>,
    ),
}

/// Where files that no manifest lists are moved on open, never deleted.
pub const LOST_AND_FOUND: &str = "lost+found";

/// The table's manifest. A table made before manifests were written at creation
/// has none until its first seal; it gets an empty one, but only when nothing a
/// manifest would list (a segment or dead-letter file) is there: otherwise the
/// missing manifest is an error, never an empty table.
fn load_manifest(fs: &dyn FileSystem, dir: &Path, table: &str) -> Result<Manifest> {
    if dir.join(crate::manifest::MANIFEST_FILE).exists() {
        return Manifest::load(dir);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("seg-") || name.starts_with("dead-") {
            return Manifest::load(dir);
        }
    }
    tracing::info!(table, "writing the empty manifest of a table never sealed");
    let manifest = Manifest::default();
    manifest.save(fs, dir)?;
    Ok(manifest)
}

fn wal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("wal-{generation:06}.log"))
}

/// Where each row of a piece went in the segment `number` written from it:
/// `order[new] = old` is the order the writer sorted the rows in (`None`:
/// unchanged).
fn new_places(number: u32, rows: u32, order: Option<&[u32]>) -> Vec<Location> {
    let mut places = vec![
        Location {
            segment: number,
            row: 0
        };
        rows as usize
    ];
    for new_row in 0..rows {
        let old = order.map_or(new_row, |o| o[new_row as usize]);
        places[old as usize] = Location {
            segment: number,
            row: new_row,
        };
    }
    places
}

/// A new sealed segment's number as the key map holds it: below the numbers
/// of in-memory segments.
fn sealed_number(id: u64) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|n| *n < crate::upsert::FIRST_MEMORY_SEGMENT)
        .ok_or_else(|| Error::OutOfRange(format!("segment number {id}")))
}

fn segment_file(id: u64) -> String {
    format!("seg-{id:06}.sluice")
}

impl Table {
    /// Opens a table in `dir`: maps its committed segments, removes files an
    /// interrupted seal left behind, and replays the write-ahead generations the
    /// manifest does not cover into a new mutable segment.
    pub(crate) fn open(schema: TableSchema, dir: &Path, env: &Environment) -> Result<Self> {
        let fs = Arc::clone(&env.fs);
        // Data directories from before write-ahead generations had one file.
        let legacy = dir.join("wal.log");
        if legacy.exists() {
            fs.rename(&legacy, &wal_path(dir, 0))
                .map_err(|e| Error::io(&legacy, e))?;
            sync_dir(&*fs, dir)?;
        }
        let manifest = load_manifest(&*fs, dir, &schema.name)?;
        let mut sealed = Vec::new();
        let mut corrupt = Vec::new();
        for entry in &manifest.segments {
            if let Some(error) = manifest.quarantined.get(&entry.file) {
                tracing::error!(table = %schema.name, file = %entry.file, error, "segment left out: quarantined earlier");
                corrupt.push((entry.file.clone(), error.clone()));
                continue;
            }
            let opened = SealedSegment::open(&dir.join(&entry.file))
                .and_then(|seg| seg.check_schema(&schema).map(|()| seg));
            match opened {
                Ok(seg) => sealed.push(Arc::new(seg)),
                Err(e) => {
                    tracing::error!(table = %schema.name, error = %e, "segment left out: it failed its checks");
                    corrupt.push((entry.file.clone(), e.to_string()));
                }
            }
        }
        let mut generations = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let orphan_segment =
                name.starts_with("seg-") && !manifest.segments.iter().any(|s| s.file == name);
            let orphan_dead_letters =
                name.starts_with("dead-") && !manifest.dead_letter_files.contains(&name);
            let orphan_cleared = name.starts_with("cleared-")
                && !manifest
                    .segments
                    .iter()
                    .any(|s| s.cleared.as_deref() == Some(name.as_str()));
            if orphan_segment || orphan_dead_letters || orphan_cleared || name.ends_with(".tmp") {
                // Most likely left by a seal interrupted before its commit; kept
                // rather than deleted, in case the manifest is what went wrong.
                let lost = dir.join(LOST_AND_FOUND);
                fs.create_dir_all(&lost).map_err(|e| Error::io(&lost, e))?;
                let to = lost.join(&name);
                tracing::warn!(file = %path.display(), to = %to.display(), "moving a file the manifest does not list to lost+found");
                fs.rename(&path, &to).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            if let Some(g) = name
                .strip_prefix("wal-")
                .and_then(|r| r.strip_suffix(".log"))
                .and_then(|g| g.parse::<u64>().ok())
            {
                if g < manifest.wal_floor {
                    fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
                } else {
                    generations.push(g);
                }
            }
        }
        generations.sort_unstable();
        let upsert = match schema.upsert_config() {
            Some(config) => Some(upsert::rebuild(config, dir, &manifest, &sealed)?),
            None => None,
        };
        let next_memory_segment = crate::upsert::FIRST_MEMORY_SEGMENT;
        let mut state = TableState {
            sealed,
            corrupt,
            frozen: None,
            mutable_since: None,
            mutable: MutableSegment::new(&schema).numbered(next_memory_segment),
            partitions: BTreeMap::new(),
            manifest,
            upsert,
        };
        let mut replayed = 0;
        let mut wal = None;
        for (i, g) in generations.iter().enumerate() {
            let (log, rows) = WriteAheadLog::open(&*fs, &wal_path(dir, *g))?;
            let rows = coerce_rows(&schema, rows)?;
            replayed += rows.len();
            state.apply_rows(Target::Mutable, &rows)?;
            if i + 1 == generations.len() {
                wal = Some(Wal::new(log, *g));
            }
        }
        let wal = match wal {
            Some(w) => w,
            None => {
                let generation = state.manifest.wal_floor;
                let (log, _) = WriteAheadLog::open(&*fs, &wal_path(dir, generation))?;
                Wal::new(log, generation)
            }
        };
        if replayed > 0 {
            tracing::info!(table = %schema.name, rows = replayed, "replayed write-ahead file");
        }
        state.mutable_since = (state.mutable.rows() > 0).then(Instant::now);
        Ok(Table {
            schema: Arc::new(schema),
            dir: dir.to_path_buf(),
            fs,
            clock: Arc::clone(&env.clock),
            retention: Mutex::new(RetentionStats::default()),
            next_memory_segment: std::sync::atomic::AtomicU32::new(next_memory_segment + 1),
            state: RwLock::new(state),
            wal: Mutex::new(wal),
            wal_synced: Condvar::new(),
            sealing: Mutex::new(()),
            source_status: Mutex::new(BTreeMap::new()),
            seals: Mutex::new((0, 0)),
            retired: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The table's definition.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.schema.name
    }

    /// The directory holding the table's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The table's number in its data directory: stable for the table's life and
    /// never reused while the directory exists (catalog OIDs derive from it).
    pub fn id(&self) -> u64 {
        self.dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Appends full-width rows (one value per column, in column order). Values are
    /// coerced to the column types first; if any row fails, nothing is written.
    /// Rows already past retention are counted and not stored. Returns the
    /// rows stored, once they are durable and visible to the next query.
    ///
    /// Group commit: each writer writes its record under the write-ahead lock, then
    /// either waits for a sync already running to finish or, if none is, syncs the
    /// file itself with the lock released, covering every record written so far.
    /// Writers arriving during one fsync share the next, so concurrent INSERTs
    /// cost one fsync per group rather than one each. The syncing writer applies
    /// the group's rows to the mutable segment in file order before anyone
    /// returns, so a replay after a crash rebuilds the same rows in the same order.
    ///
    /// # Errors
    /// Type, range, NOT NULL and width errors name the column; I/O errors the file.
    pub fn append(&self, rows: Vec<Vec<Value>>) -> Result<usize> {
        let rows = self.drop_expired(coerce_rows(&self.schema, rows)?);
        if rows.is_empty() {
            return Ok(0);
        }
        // No row is made durable (and acknowledged) that the mutable segment
        // could not take.
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .mutable
            .check(&rows)?;
        let count = rows.len();
        let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        wal.check_failed()?;
        wal.log.write(&rows)?;
        wal.written += 1;
        let mine = wal.written;
        wal.pending.push(rows);
        loop {
            wal.check_failed()?;
            if wal.durable >= mine {
                return Ok(count);
            }
            wal = if wal.syncing {
                self.wal_synced.wait(wal).unwrap_or_else(|p| p.into_inner())
            } else {
                self.sync_group(wal)
            };
        }
    }

    /// Syncs every record written so far and applies their rows to the mutable
    /// segment; the write-ahead lock is released during the fsync so the next
    /// group can write meanwhile. Returns the lock again.
    fn sync_group<'a>(&'a self, mut wal: MutexGuard<'a, Wal>) -> MutexGuard<'a, Wal> {
        wal.syncing = true;
        let target = wal.written;
        let group = std::mem::take(&mut wal.pending);
        let file = wal.log.sync_handle();
        drop(wal);
        let synced = file.sync();
        if synced.is_ok() {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            for rows in &group {
                // The rows were checked against the mutable segment before they
                // were written, so this cannot fail short of a bug; the rows are
                // durable and come back on replay, so it is logged, not returned.
                if let Err(e) = state.apply_rows(Target::Mutable, rows) {
                    tracing::error!(table = %self.schema.name, error = %e, "durable rows could not be applied in memory");
                }
            }
            state.mutable_since.get_or_insert_with(Instant::now);
        }
        let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        wal.syncing = false;
        wal.syncs += 1;
        match synced {
            Ok(()) => wal.durable = target,
            Err(e) => {
                tracing::error!(file = %wal.log.path().display(), error = %e, "fsync of the write-ahead file failed; the table refuses writes until restart");
                wal.failed = Some(e.to_string());
            }
        }
        self.wal_synced.notify_all();
        wal
    }

    /// Write-ahead counters since the table was opened.
    pub fn wal_stats(&self) -> WalStats {
        let wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        WalStats {
            records: wal.written,
            syncs: wal.syncs,
        }
    }
    /// Appends rows that give values for the named columns only; the other columns
    /// are NULL. Column names are matched exactly.
    ///
    /// # Errors
    /// As [`Table::append`], plus [`Error::ColumnNotFound`] for an unknown column.
    pub fn append_named(&self, columns: &[String], rows: Vec<Vec<Value>>) -> Result<usize> {
        let positions = self.column_positions(columns)?;
        self.append(self.widen(&positions, rows)?)
    }

    /// The position in the table of each named column.
    ///
    /// # Errors
    /// [`Error::ColumnNotFound`] for an unknown name.
    fn column_positions(&self, columns: &[String]) -> Result<Vec<usize>> {
        columns
            .iter()
            .map(|name| {
                self.schema
                    .column_index(name)
                    .ok_or_else(|| Error::ColumnNotFound {
                        table: self.schema.name.clone(),
                        column: name.clone(),
                    })
            })
            .collect()
    }

    /// Full-width rows from rows of values for the columns at `positions`
    /// (the others NULL).
    ///
    /// # Errors
    /// [`Error::Arity`] for a row without one value per position.
    fn widen(&self, positions: &[usize], rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>> {
        let width = self.schema.columns.len();
        rows.into_iter()
            .map(|row| {
                if row.len() != positions.len() {
                    return Err(Error::Arity(format!(
                        "INSERT has {} target columns but a row has {} values",
                        positions.len(),
                        row.len()
                    )));
                }
                let mut full = vec![Value::Null; width];
                for (pos, value) in positions.iter().zip(row) {
                    full[*pos] = value;
                }
                Ok(full)
            })
            .collect()
    }

    /// An immutable view of the table for one query: taken under one lock, so a
    /// seal completing at the same moment never shows a row twice or not at all.
    pub fn snapshot(&self) -> TableSnapshot {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let cleared = |segment: u32| state.upsert.as_ref().and_then(|u| u.cleared.of(segment));
        let mut segments: Vec<SegmentSnapshot> = state
            .sealed
            .iter()
            .map(|s| {
                // Only an upsert table has superseded rows to look up.
                let superseded = state
                    .upsert
                    .as_ref()
                    .and_then(|_| upsert::segment_number(s))
                    .and_then(cleared);
                SegmentSnapshot::Sealed(Arc::clone(s), superseded)
            })
            .collect();
        if let Some(frozen) = &state.frozen {
            for (run, blocks) in frozen.runs() {
                segments.push(SegmentSnapshot::Memory(
                    blocks.clone(),
                    cleared(run),
                    Vec::new(),
                ));
            }
        }
        segments.push(SegmentSnapshot::Memory(
            state.mutable.blocks(),
            cleared(state.mutable.id()),
            state.mutable.block_indexes(),
        ));
        for partition in state.partitions.values() {
            if partition.mutable.rows() > 0 {
                segments.push(SegmentSnapshot::Memory(
                    partition.mutable.blocks(),
                    cleared(partition.mutable.id()),
                    partition.mutable.block_indexes(),
                ));
            }
        }
        TableSnapshot {
            schema: Arc::clone(&self.schema),
            block_schema: state.mutable.block_schema(),
            segments,
        }
    }

    /// Number of rows in the table.
    pub fn rows(&self) -> usize {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.sealed.iter().map(|s| s.rows()).sum::<usize>()
            + state.frozen.as_ref().map_or(0, Frozen::rows)
            + state.mutable.rows()
            + state
                .partitions
                .values()
                .map(|p| p.mutable.rows())
                .sum::<usize>()
    }

    /// Takes the sealed segment at `path` out of queries after it failed a check;
    /// it stays on disk and in the manifest, and `sluice.segments` reports it.
    ///
    /// The quarantine is recorded in the manifest, so it holds after a restart.
    pub fn quarantine(&self, path: &Path, error: &str) {
        if let Some(file) = self.quarantine_in_memory(path, error) {
            // Commit it like a seal does (one manifest writer at a time).
            let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
            self.record_quarantine(file, error);
        }
    }

    /// Takes the segment out of queries; returns its file name unless it was
    /// out already.
    fn quarantine_in_memory(&self, path: &Path, error: &str) -> Option<String> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let pos = state.sealed.iter().position(|s| s.path() == path)?;
        state.sealed.remove(pos);
        let file = path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        tracing::error!(table = %self.schema.name, file, error, "segment left out: it failed its checks");
        state.corrupt.push((file.clone(), error.to_string()));
        Some(file)
    }

    /// Records a quarantine in the manifest. The caller holds `sealing`.
    fn record_quarantine(&self, file: String, error: &str) {
        if self.is_retired() {
            return;
        }
        let mut manifest = self.manifest();
        manifest.quarantined.insert(file, error.to_string());
        match manifest.save(&*self.fs, &self.dir) {
            Ok(()) => {
                self.state
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .manifest = manifest;
            }
            Err(e) => {
                tracing::error!(table = %self.schema.name, error = %e, "could not record the quarantine; it lasts until restart")
            }
        }
    }

    /// The segments left out of queries because they failed a check, as
    /// (file, check).
    pub fn quarantined(&self) -> Vec<(String, String)> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .corrupt
            .clone()
    }

    /// Every segment with its state, for `sluice.segments`.
    pub fn segment_states(&self) -> Vec<SegmentState> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for entry in &state.manifest.segments {
            let sealed = state.sealed.iter().find(|s| {
                s.path()
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy() == entry.file)
            });
            let corrupt = state.corrupt.iter().find(|(file, _)| *file == entry.file);
            out.push(SegmentState {
                id: entry.id,
                state: if corrupt.is_some() {
                    "corrupt"
                } else {
                    "sealed"
                },
                rows: entry.rows,
                bytes: sealed.map(|s| s.bytes() as u64),
                time_min: entry.time_min,
                time_max: entry.time_max,
                created_micros: Some(entry.created_micros),
                error: corrupt.map(|(_, e)| e.clone()),
            });
        }
        let frozen_rows = state.frozen.as_ref().map_or(0, Frozen::rows);
        let consuming_rows: usize = state.partitions.values().map(|p| p.mutable.rows()).sum();
        out.push(SegmentState {
            id: state.manifest.next_segment,
            state: "mutable",
            rows: (state.mutable.rows() + frozen_rows + consuming_rows) as u64,
            bytes: None,
            time_min: None,
            time_max: None,
            created_micros: None,
            error: None,
        });
        out
    }

    /// True when the mutable segment or a source partition's consuming segment
    /// has reached `segment_rows`, `segment_bytes` or its age limit
    /// (`segment_age`; `flush_interval` for a source partition, which also counts
    /// from its first dead letter so that those commit too).
    pub fn seal_is_due(&self) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let opts = &self.schema.options;
        let due = |mutable: &MutableSegment, since: Option<Instant>, age| {
            mutable.rows() >= opts.segment_rows()
                || mutable.bytes() >= opts.segment_bytes()
                || since.is_some_and(|t| t.elapsed() >= age)
        };
        (state.mutable.rows() > 0 && due(&state.mutable, state.mutable_since, opts.segment_age()))
            || state
                .partitions
                .values()
                .any(|p| due(&p.mutable, p.since, opts.flush_interval()))
    }

    /// The sealed segments as the manifest records them.
    pub fn manifest(&self) -> Manifest {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .manifest
            .clone()
    }

    /// Seals the mutable segment and every source partition's consuming segment
    /// now (and retries a seal that failed before), into segments of at most
    /// `segment_rows` rows, one source partition per segment. Appends, consuming
    /// and queries go on meanwhile. One manifest commits it all: the segments,
    /// the write-ahead floor, each partition's next offset and its dead letters,
    /// so a restart resumes every partition exactly after what was committed.
    /// Returns the first new segment's number, or `None` if there was nothing to
    /// seal.
    ///
    /// # Errors
    /// I/O errors naming the file; the rows stay in memory (and in the
    /// write-ahead file or the source stream), and the next seal retries them.
    pub fn seal_now(&self) -> Result<Option<u64>> {
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_retired() {
            return Ok(None);
        }
        let started = Instant::now();
        let Some(frozen) = self.freeze()? else {
            return Ok(None);
        };
        // 2. Write the segment files with no lock held: one per `segment_rows`
        //    rows, so one huge INSERT still makes segments of the usual size. A
        //    file written before a failure is an orphan the next open removes.
        let mut manifest = self.manifest();
        let first = manifest.next_segment;
        let mut segments = Vec::new();
        // Per frozen run (by its in-memory number), where each of its rows went.
        let mut moves: Vec<(u32, Vec<Location>)> = Vec::new();
        let runs = frozen.wal.iter().map(|w| (None, w.segment, &w.rows)).chain(
            frozen
                .partitions
                .iter()
                .map(|(p, f)| (Some(*p), f.segment, &f.rows)),
        );
        for (partition, run, blocks) in runs {
            let mut moved = Vec::new();
            for rows in split_rows(blocks, self.schema.options.segment_rows()) {
                if rows.iter().all(|b| b.num_rows() == 0) {
                    continue;
                }
                let id = manifest.next_segment;
                let number = sealed_number(id)?;
                let file = segment_file(id);
                let path = self.dir.join(&file);
                let (footer, order) = write_segment_ordered(&*self.fs, &path, &self.schema, &rows)?;
                moved.extend(new_places(number, footer.rows as u32, order.as_deref()));
                segments.push(Arc::new(SealedSegment::open(&path)?));
                let mut entry = SegmentEntry::sealed_now(id, file, &footer);
                entry.partition = partition;
                manifest.segments.push(entry);
                manifest.next_segment = id + 1;
            }
            moves.push((run, moved));
        }
        let written_cleared = self.write_cleared_files(&frozen, &moves, &mut manifest)?;
        let letters: Vec<DeadLetter> = frozen
            .partitions
            .values()
            .flat_map(|p| p.dead_letters.iter().cloned())
            .collect();
        if !letters.is_empty() {
            let file = format!("dead-{:06}.jsonl", manifest.next_dead_letters);
            write_dead_letters(&*self.fs, &self.dir.join(&file), &letters)?;
            manifest.dead_letter_files.push(file);
            manifest.next_dead_letters += 1;
        }
        // 3. Commit: the manifest now lists the segments (and an upsert
        //    table's superseded rows as of the freeze), no longer needs the
        //    write-ahead generations that held their rows, and records how far
        //    each source partition is sealed.
        if let Some(w) = &frozen.wal {
            manifest.wal_floor = w.generation + 1;
        }
        for (partition, f) in &frozen.partitions {
            manifest.source_offsets.insert(*partition, f.next_offset);
        }
        let replaced_cleared = self.manifest().segments;
        manifest.save(&*self.fs, &self.dir)?;
        // 4. Swap for readers, in one step: the key map and superseded rows
        //    follow the rows to their sealed places.
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.sealed.extend(segments);
            state.frozen = None;
            if let Some(upsert) = &mut state.upsert {
                upsert.map.relocate(|at| {
                    let (_, moved) = moves.iter().find(|(run, _)| *run == at.segment)?;
                    moved.get(at.row as usize).copied()
                });
                for (run, moved) in &moves {
                    if let Some(cleared) = upsert.cleared.remove(*run) {
                        for (segment, rows) in upsert::moved_cleared(&cleared, moved) {
                            upsert.cleared.set(segment, rows);
                        }
                    }
                }
                for (segment, rows) in written_cleared {
                    upsert.persisted.set(segment, rows);
                }
                upsert.forget_outside_window();
            }
            state.manifest = manifest;
        }
        self.remove_replaced_cleared_files(&replaced_cleared);
        // 5. The old generations are no longer needed.
        if let Some(w) = frozen.wal {
            for g in 0..=w.generation {
                let p = wal_path(&self.dir, g);
                if p.exists() {
                    self.fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
        }
        {
            let mut seals = self.seals.lock().unwrap_or_else(|p| p.into_inner());
            seals.0 += 1;
            seals.1 += started.elapsed().as_micros() as u64;
        }
        tracing::debug!(table = %self.schema.name, first_segment = first, "sealed");
        Ok(Some(first))
    }

    /// Step 1 of a seal: the rows to seal go aside (still visible) and appends
    /// continue into new segments (and a new write-ahead generation); a seal that
    /// failed before is retried with what it froze. `None` when there is nothing.
    fn freeze(&self) -> Result<Option<Frozen>> {
        let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        // Records written to this generation but not yet synced must reach the
        // mutable segment before it is frozen: their generation is deleted once
        // the frozen rows are sealed.
        while wal.syncing || !wal.pending.is_empty() {
            wal.check_failed()?;
            wal = if wal.syncing {
                self.wal_synced.wait(wal).unwrap_or_else(|p| p.into_inner())
            } else {
                self.sync_group(wal)
            };
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &state.frozen {
            return Ok(Some(f.clone()));
        }
        let wal_rows = if state.mutable.rows() > 0 {
            let next = wal.generation + 1;
            let (log, _) = WriteAheadLog::open(&*self.fs, &wal_path(&self.dir, next))?;
            let old = std::mem::replace(&mut wal.generation, next);
            wal.log = log;
            let fresh = MutableSegment::new(&self.schema).numbered(self.new_memory_segment());
            let mutable = std::mem::replace(&mut state.mutable, fresh);
            state.mutable_since = None;
            Some(FrozenWal {
                rows: mutable.blocks(),
                generation: old,
                segment: mutable.id(),
            })
        } else {
            None
        };
        let state = &mut *state;
        let committed = &state.manifest.source_offsets;
        let partitions: BTreeMap<i32, FrozenPartition> = state
            .partitions
            .iter_mut()
            .filter(|(p, c)| {
                c.mutable.rows() > 0
                    || !c.dead_letters.is_empty()
                    || committed.get(p) != Some(&c.next_offset)
            })
            .map(|(p, c)| (*p, c.freeze(&self.schema, self.new_memory_segment())))
            .collect();
        if wal_rows.is_none() && partitions.is_empty() {
            return Ok(None);
        }
        let frozen = Frozen {
            wal: wal_rows,
            partitions,
            cleared: upsert::cleared_at_freeze(state),
        };
        state.frozen = Some(frozen.clone());
        Ok(Some(frozen))
    }

    /// Appends rows read from source partition `partition`, with the messages
    /// that did not become rows, and records `next_offset` as the partition's
    /// position. Rows must already hold values of the column types (see
    /// [`Table::coerce_row`]); they are visible to the next query and become
    /// durable with the next seal. A partition not seen before starts from its
    /// committed offset.
    ///
    /// # Errors
    /// A row of the wrong width or type, which is the caller's bug.
    pub fn append_consumed(
        &self,
        partition: i32,
        rows: &[Vec<Value>],
        dead_letters: Vec<DeadLetter>,
        next_offset: i64,
    ) -> Result<()> {
        let rows = self.without_expired(rows);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        let committed = state.manifest.source_offsets.get(&partition).copied();
        let consuming = state.partitions.entry(partition).or_insert_with(|| {
            ConsumingSegment::new(
                &self.schema,
                committed.unwrap_or(next_offset),
                self.new_memory_segment(),
            )
        });
        consuming.mutable.check(&rows)?;
        if !rows.is_empty() || !dead_letters.is_empty() {
            consuming.since.get_or_insert_with(Instant::now);
        }
        consuming.dead_letters.extend(dead_letters);
        consuming.next_offset = next_offset;
        state.apply_rows(Target::Partition(partition), &rows)?;
        Ok(())
    }

    /// A number for a new in-memory segment.
    fn new_memory_segment(&self) -> u32 {
        self.next_memory_segment
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Each source partition's committed next offset: where reading resumes
    /// after a restart.
    pub fn committed_offsets(&self) -> BTreeMap<i32, i64> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .manifest
            .source_offsets
            .clone()
    }

    /// Each source partition's position as read so far (rows not yet sealed
    /// included); committed ones for partitions not read since opening.
    pub fn consumed_offsets(&self) -> BTreeMap<i32, i64> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = state.manifest.source_offsets.clone();
        for (p, c) in &state.partitions {
            out.insert(*p, c.next_offset);
        }
        out
    }

    /// Approximate bytes held by source partitions' rows not yet sealed,
    /// including a seal in progress: what backpressure bounds.
    pub fn buffered_source_bytes(&self) -> usize {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let frozen: usize = state
            .frozen
            .iter()
            .flat_map(|f| f.partitions.values())
            .map(|p| p.bytes)
            .sum();
        frozen
            + state
                .partitions
                .values()
                .map(|p| p.mutable.bytes())
                .sum::<usize>()
    }

    /// Every dead letter: the committed ones (oldest first), then those waiting
    /// for the next seal.
    ///
    /// # Errors
    /// A dead-letter file that cannot be read, naming it.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let (files, mut pending) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let mut pending: Vec<DeadLetter> = state
                .frozen
                .iter()
                .flat_map(|f| f.partitions.values())
                .flat_map(|p| p.dead_letters.iter().cloned())
                .collect();
            pending.extend(
                state
                    .partitions
                    .values()
                    .flat_map(|p| p.dead_letters.iter().cloned()),
            );
            (state.manifest.dead_letter_files.clone(), pending)
        };
        let mut out = Vec::new();
        for file in files {
            out.extend(read_dead_letters(&self.dir.join(file))?);
        }
        out.append(&mut pending);
        Ok(out)
    }

    /// Marks the table dropped once any seal or merge in progress has finished;
    /// none starts after this returns, so its files can be removed safely.
    pub fn retire(&self) {
        let _wait = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Seals committed since the table was opened, and their total duration in
    /// microseconds.
    pub fn seal_stats(&self) -> (u64, u64) {
        *self.seals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what the ingesting side knows of `partition` for `sluice.ingestion`.
    pub fn set_source_status(&self, partition: i32, status: PartitionStatus) {
        self.source_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, status);
    }

    /// What the ingesting side last reported, per partition.
    pub fn source_status(&self) -> BTreeMap<i32, PartitionStatus> {
        self.source_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Merges the first run of adjacent small sealed segments (see
    /// [`compaction_run`]) into one, committed through the manifest like a seal.
    /// Queries running meanwhile keep the segments of their snapshot; later ones
    /// see the merged segment instead, never both. Returns the new segment's
    /// number, or `None` if no run qualifies.
    ///
    /// # Errors
    /// I/O errors naming the file, or a segment of the run failing its checks (it
    /// is then quarantined); the run's segments stay as they were.
    pub fn compact_now(&self) -> Result<Option<u64>> {
        let _one_at_a_time = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_retired() {
            return Ok(None);
        }
        let (mut manifest, run) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let usable = |e: &SegmentEntry| {
                state
                    .sealed
                    .iter()
                    .find(|s| s.path() == self.dir.join(&e.file))
            };
            let Some(range) = compaction_run(
                &state.manifest.segments,
                self.schema.options.segment_rows(),
                |e| usable(e).is_some(),
            ) else {
                return Ok(None);
            };
            let run: Vec<Arc<SealedSegment>> = state.manifest.segments[range.clone()]
                .iter()
                .filter_map(|e| usable(e).cloned())
                .collect();
            (state.manifest.clone(), (range, run))
        };
        let (range, inputs) = run;
        let mut per_input = Vec::new();
        for segment in &inputs {
            match segment.read_all() {
                Ok(b) => per_input.push(b),
                Err(e) => {
                    // This merge holds `sealing` already.
                    if let Some(file) = self.quarantine_in_memory(segment.path(), &e.to_string()) {
                        self.record_quarantine(file, &e.to_string());
                    }
                    return Err(e);
                }
            }
        }
        // An upsert table's superseded rows, as committed, are left out; the
        // rest move, and the key map and the superseded rows since follow.
        let (batches, origins) = self.without_committed_superseded(&inputs, per_input)?;
        let id = manifest.next_segment;
        let number = sealed_number(id)?;
        let file = segment_file(id);
        let path = self.dir.join(&file);
        let (footer, order) = write_segment_ordered(&*self.fs, &path, &self.schema, &batches)?;
        let merged = Arc::new(SealedSegment::open(&path)?);
        let replaced: Vec<SegmentEntry> = manifest
            .segments
            .splice(range.clone(), [SegmentEntry::sealed_now(id, file, &footer)])
            .collect();
        manifest.next_segment = id + 1;
        manifest.save(&*self.fs, &self.dir)?;
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            if let (Some(upsert), Some(origins)) = (&mut state.upsert, origins) {
                let numbers: Vec<u32> = inputs
                    .iter()
                    .filter_map(|s| upsert::segment_number(s))
                    .collect();
                upsert::follow_merge(upsert, &numbers, &origins, order.as_deref(), number);
            }
            let is_input = |p: &Path| inputs.iter().any(|s| s.path() == p);
            let at = state
                .sealed
                .iter()
                .position(|s| is_input(s.path()))
                .unwrap_or(state.sealed.len());
            state.sealed.insert(at, merged);
            state.sealed.retain(|s| !is_input(s.path()));
            state
                .corrupt
                .retain(|(f, _)| !replaced.iter().any(|e| e.file == *f));
            state.manifest = manifest;
        }
        self.remove_replaced_cleared_files(&replaced);
        for entry in &replaced {
            let p = self.dir.join(&entry.file);
            if let Err(e) = self.fs.remove_file(&p) {
                // Committed already; the next open removes it as an orphan.
                tracing::warn!(file = %p.display(), error = %e, "could not delete a compacted segment");
            }
        }
        tracing::debug!(table = %self.schema.name, segment = id, merged = replaced.len(), "compacted");
        Ok(Some(id))
    }
}

/// The first run of two or more adjacent segments (in manifest order, which is
/// the order they were sealed in, so a merged segment keeps a narrow time range)
/// that are each at most half of `segment_rows`, readable (`usable`), and
/// together at most `segment_rows`. Only small segments are taken so that no row
/// is rewritten more than a few times over its life: a segment that is over
/// half full is left alone.
pub(crate) fn compaction_run(
    segments: &[SegmentEntry],
    segment_rows: usize,
    usable: impl Fn(&SegmentEntry) -> bool,
) -> Option<std::ops::Range<usize>> {
    let limit = segment_rows.max(2) as u64;
    let small = |e: &SegmentEntry| e.rows <= limit / 2 && usable(e);
    let mut start = 0;
    while start < segments.len() {
        if !small(&segments[start]) {
            start += 1;
            continue;
        }
        let mut end = start + 1;
        let mut rows = segments[start].rows;
        while end < segments.len() && small(&segments[end]) && rows + segments[end].rows <= limit {
            rows += segments[end].rows;
            end += 1;
        }
        if end - start >= 2 {
            return Some(start..end);
        }
        start = end;
    }
    None
}

/// `batches` cut into runs of at most `max_rows` rows (slices share the buffers).
fn split_rows(batches: &[RecordBatch], max_rows: usize) -> Vec<Vec<RecordBatch>> {
    let max_rows = max_rows.max(1);
    let mut out: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut room = max_rows;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if room == 0 {
                out.push(Vec::new());
                room = max_rows;
            }
            let take = room.min(batch.num_rows() - offset);
            if let Some(run) = out.last_mut() {
                run.push(batch.slice(offset, take));
            }
            offset += take;
            room -= take;
        }
    }
    out
}

/// One segment as `sluice.segments` shows it.
#[derive(Clone, Debug)]
pub struct SegmentState {
    /// The segment's number in its table (the next number for the mutable one).
    pub id: u64,
    /// `sealed`, `corrupt` or `mutable`.
    pub state: &'static str,
    /// Rows.
    pub rows: u64,
    /// Bytes on disk (sealed segments).
    pub bytes: Option<u64>,
    /// Time range, microseconds (sealed segments).
    pub time_min: Option<i64>,
    /// Time range, microseconds (sealed segments).
    pub time_max: Option<i64>,
    /// When it was sealed, microseconds since the epoch.
    pub created_micros: Option<i64>,
    /// Why a corrupt segment is left out.
    pub error: Option<String>,
}

/// Coerces every value to its column's type and checks NOT NULL and row width.
fn coerce_rows(schema: &TableSchema, rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>> {
    rows.into_iter()
        .map(|row| {
            if row.len() != schema.columns.len() {
                return Err(Error::Arity(format!(
                    "row has {} values but table \"{}\" has {} columns",
                    row.len(),
                    schema.name,
                    schema.columns.len()
                )));
            }
            row.into_iter()
                .zip(&schema.columns)
                .map(|(value, col)| {
                    let v = value.coerce_to(col.ty, &col.name)?;
                    if v == Value::Null && !col.nullable {
                        return Err(Error::NotNull {
                            table: schema.name.clone(),
                            column: col.name.clone(),
                        });
                    }
                    Ok(v)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn source_schema() -> TableSchema {
        crate::testing::ts_v_schema(
            "events",
            &[
                ("kafka_brokers", "localhost:9092"),
                ("kafka_topic", "events"),
            ],
        )
    }

    fn row(v: i64) -> Vec<Value> {
        vec![Value::Timestamp(v * 1_000_000), Value::Int(v)]
    }

    #[test]
    fn a_seal_commits_each_partitions_rows_offset_and_dead_letters_together() {
        let dir = tempfile::tempdir().unwrap();
        {
            let catalog = Catalog::open(dir.path()).unwrap();
            catalog.create_table(source_schema(), false).unwrap();
            let t = catalog.table("events").unwrap();
            t.append_consumed(0, &[row(1), row(2)], vec![], 2).unwrap();
            let bad = DeadLetter::new(1, 0, "not JSON", b"{");
            t.append_consumed(1, &[row(3)], vec![bad.clone()], 2)
                .unwrap();
            assert_eq!(
                t.rows(),
                3,
                "consumed rows are visible before they are sealed"
            );
            assert_eq!(t.dead_letters().unwrap(), vec![bad.clone()]);
            assert!(t.committed_offsets().is_empty());
            t.seal_now().unwrap();
            // Consumed after the seal: visible, but not committed.
            t.append_consumed(0, &[row(4)], vec![], 3).unwrap();
            assert_eq!(t.committed_offsets(), BTreeMap::from([(0, 2), (1, 2)]));
            assert_eq!(t.consumed_offsets(), BTreeMap::from([(0, 3), (1, 2)]));
            let partitions: Vec<Option<i32>> =
                t.manifest().segments.iter().map(|s| s.partition).collect();
            assert_eq!(partitions, vec![Some(0), Some(1)]);
        }
        // After a restart: what was sealed, from where to read again, and the
        // dead letters once (the unsealed row is read again from the source).
        let catalog = Catalog::open(dir.path()).unwrap();
        let t = catalog.table("events").unwrap();
        assert_eq!(t.rows(), 3);
        assert_eq!(t.committed_offsets(), BTreeMap::from([(0, 2), (1, 2)]));
        assert_eq!(t.dead_letters().unwrap().len(), 1);
        // A partition with only dead letters still commits its offset.
        t.append_consumed(1, &[], vec![DeadLetter::new(1, 2, "too large", b"x")], 3)
            .unwrap();
        t.seal_now().unwrap();
        assert_eq!(t.committed_offsets()[&1], 3);
        assert_eq!(t.dead_letters().unwrap().len(), 2);
        assert_eq!(t.rows(), 3);
    }
}
