//! The catalog: the data directory's tables, their definitions persisted on disk.
//!
//! Layout: `<data>/LOCK` (held while open), `<data>/tables/<id>/table.json` (the
//! definition, replaced atomically) and `<data>/tables/<id>/wal.log`. A dropped
//! table's directory is first renamed to `<id>.dropped`, so a crash half-way through
//! a drop never leaves a half-deleted table that looks alive.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::fs::{sync_dir, write_atomically, Environment, FileSystem};
use crate::schema::TableSchema;
use crate::table::Table;

/// All tables of one data directory.
pub struct Catalog {
    dir: PathBuf,
    tables: RwLock<BTreeMap<String, Arc<Table>>>,
    maintenance: std::sync::Mutex<Option<Maintenance>>,
    sources: RwLock<Option<Arc<dyn SourceHooks>>>,
    fs: Arc<dyn FileSystem>,
    env: Environment,
    _lock: File,
}

/// What reads tables' source streams (the ingest crate), as the catalog sees
/// it: asked to check a new table's source options, told to start reading a
/// table and to stop before the table goes.
pub trait SourceHooks: Send + Sync {
    /// Checks the source options of a table about to be created.
    ///
    /// # Errors
    /// Why they are wrong; the table is then not created.
    fn check(&self, schema: &TableSchema) -> Result<()>;
    /// Starts reading `table`'s source (a table just created, or opened).
    fn start(&self, table: &Arc<Table>);
    /// Stops reading `table`'s source; returns once nothing reads it any more.
    fn stop(&self, table: &Table);
}

/// The background sealing thread and its stop flag.
struct Maintenance {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl Catalog {
    /// Opens (creating if needed) the data directory and every table in it.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be created or is in use by another
    /// process; [`Error::Corrupt`] if a table's files are damaged.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Environment::default())
    }

    /// As [`Catalog::open`], with every change to the directory made through
    /// `env.fs` (a simulated disk, in the power-loss tests) and retention
    /// reading `env.clock`.
    ///
    /// # Errors
    /// As [`Catalog::open`].
    pub fn open_with(dir: &Path, env: Environment) -> Result<Self> {
        let fs = Arc::clone(&env.fs);
        let tables_dir = dir.join("tables");
        if !tables_dir.exists() {
            let new_data_dir = !dir.exists();
            fs.create_dir_all(&tables_dir)
                .map_err(|e| Error::io(&tables_dir, e))?;
            sync_dir(&*fs, dir)?;
            match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) if new_data_dir => sync_dir(&*fs, parent)?,
                _ => {}
            }
        }
        let lock = lock_data_dir(dir)?;
        let mut tables = BTreeMap::new();
        let entries = fs::read_dir(&tables_dir).map_err(|e| Error::io(&tables_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&tables_dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".dropped") {
                fs.remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            let def_path = path.join("table.json");
            if !def_path.exists() {
                // Most likely a create that crashed before its definition was
                // renamed into place; kept in lost+found rather than deleted.
                let lost = dir.join(crate::table::LOST_AND_FOUND);
                fs.create_dir_all(&lost).map_err(|e| Error::io(&lost, e))?;
                let to = lost.join(&name);
                tracing::warn!(dir = %path.display(), to = %to.display(), "moving a table directory without a definition to lost+found");
                fs.rename(&path, &to).map_err(|e| Error::io(&path, e))?;
                continue;
            }
            let bytes = fs::read(&def_path).map_err(|e| Error::io(&def_path, e))?;
            let schema: TableSchema =
                serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    path: def_path.clone(),
                    section: "table definition".into(),
                    detail: e.to_string(),
                })?;
            let table = Table::open(schema, &path, &env)?;
            tables.insert(table.name().to_string(), Arc::new(table));
        }
        Ok(Catalog {
            dir: dir.to_path_buf(),
            tables: RwLock::new(tables),
            maintenance: std::sync::Mutex::new(None),
            sources: RwLock::new(None),
            fs,
            env,
            _lock: lock,
        })
    }

    /// The clock retention reads (and a statement's `now()`).
    pub fn clock(&self) -> &Arc<dyn crate::clock::Clock> {
        &self.env.clock
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands source tables to `hooks`: every table with a source starts being
    /// read now, and tables created later as they are created.
    pub fn set_source_hooks(&self, hooks: Arc<dyn SourceHooks>) {
        *self.sources.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&hooks));
        for table in self.tables() {
            if table.schema().options.has_source() {
                hooks.start(&table);
            }
        }
    }

    /// Stops reading every source (before the catalog is closed).
    pub fn stop_sources(&self) {
        let hooks = self
            .sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(hooks) = hooks {
            for table in self.tables() {
                if table.schema().options.has_source() {
                    hooks.stop(&table);
                }
            }
        }
    }

    fn source_hooks(&self) -> Option<Arc<dyn SourceHooks>> {
        self.sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates a table (and starts reading its source, if it has one). Returns
    /// false (and changes nothing) if it exists and `if_not_exists` is set.
    ///
    /// # Errors
    /// [`Error::TableExists`], a source option the source reader refuses, or
    /// [`Error::Io`] if its files cannot be written.
    pub fn create_table(&self, schema: TableSchema, if_not_exists: bool) -> Result<bool> {
        let hooks = self.source_hooks();
        if let (true, Some(hooks)) = (schema.options.has_source(), &hooks) {
            hooks.check(&schema)?;
        }
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        if tables.contains_key(&schema.name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::TableExists(schema.name))
            };
        }
        let dir = self.new_table_dir()?;
        let fs = &*self.fs;
        fs.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        sync_dir(fs, &self.dir.join("tables"))?;
        // The manifest exists from the start, so that its absence later is damage.
        crate::manifest::Manifest::default().save(fs, &dir)?;
        let bytes = serde_json::to_vec_pretty(&schema).map_err(|e| Error::Corrupt {
            path: dir.clone(),
            section: "table definition".into(),
            detail: e.to_string(),
        })?;
        write_atomically(fs, &dir.join("table.json"), &bytes)?;
        let table = Arc::new(Table::open(schema, &dir, &self.env)?);
        tables.insert(table.name().to_string(), Arc::clone(&table));
        drop(tables);
        if let (true, Some(hooks)) = (table.schema().options.has_source(), &hooks) {
            hooks.start(&table);
        }
        Ok(true)
    }

    /// Drops a table and deletes its files. Returns false if it does not exist and
    /// `if_exists` is set. Queries already running keep their snapshot.
    ///
    /// # Errors
    /// [`Error::TableNotFound`], or [`Error::Io`].
    pub fn drop_table(&self, name: &str, if_exists: bool) -> Result<bool> {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        let Some(table) = tables.get(name) else {
            return if if_exists {
                Ok(false)
            } else {
                Err(Error::TableNotFound(name.to_string()))
            };
        };
        if table.schema().options.has_source() {
            if let Some(hooks) = self.source_hooks() {
                hooks.stop(table);
            }
        }
        // A seal or merge running now must not write into the directory after it
        // is gone (or into a new table's).
        table.retire();
        let dir = table.dir().to_path_buf();
        let mut dropped = dir.clone().into_os_string();
        dropped.push(".dropped");
        self.fs
            .rename(&dir, Path::new(&dropped))
            .map_err(|e| Error::io(&dir, e))?;
        sync_dir(&*self.fs, &self.dir.join("tables"))?;
        tables.remove(name);
        if let Err(e) = self.fs.remove_dir_all(Path::new(&dropped)) {
            // The rename already committed the drop; the leftovers go on next open.
            tracing::warn!(dir = ?dropped, error = %e, "could not delete a dropped table's files");
        }
        Ok(true)
    }

    /// The table of that name.
    ///
    /// # Errors
    /// [`Error::TableNotFound`].
    pub fn table(&self, name: &str) -> Result<Arc<Table>> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Error::TableNotFound(name.to_string()))
    }

    /// Seals every table whose mutable segment has reached its `segment_rows` or
    /// `segment_age`. Returns how many segments were sealed. Errors are logged and
    /// the rows stay in memory and in the write-ahead file for the next attempt.
    pub fn seal_due(&self) -> usize {
        let mut sealed = 0;
        for t in self.tables() {
            if t.seal_is_due() {
                match t.seal_now() {
                    Ok(Some(_)) => sealed += 1,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(table = %t.name(), error = %e, "sealing failed; will retry")
                    }
                }
            }
        }
        sealed
    }

    /// Drops every table's sealed segments that are wholly past its retention.
    /// Returns how many were dropped; errors are logged and retried next time.
    pub fn evict_expired(&self) -> usize {
        let mut evicted = 0;
        for t in self.tables() {
            match t.evict_expired() {
                Ok(n) => evicted += n,
                Err(e) => {
                    tracing::error!(table = %t.name(), error = %e, "evicting expired segments failed; will retry")
                }
            }
        }
        evicted
    }

    /// Merges small sealed segments, up to `max_merges` merges over all tables
    /// (bounded so one busy table does not hold up the next seal). Returns how
    /// many merges were made. Errors are logged; the segments stay as they were.
    pub fn compact_due(&self, max_merges: usize) -> usize {
        let mut merged = 0;
        for t in self.tables() {
            while merged < max_merges {
                match t.compact_now() {
                    Ok(Some(_)) => merged += 1,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(table = %t.name(), error = %e, "compaction failed");
                        break;
                    }
                }
            }
        }
        merged
    }

    /// Starts the background thread that seals tables when they are due and then
    /// merges their small segments; it stops when the catalog is dropped.
    pub fn start_maintenance(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("sluice-maintenance".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::park_timeout(std::time::Duration::from_millis(200));
                    if flag.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    match weak.upgrade() {
                        Some(catalog) => {
                            catalog.seal_due();
                            catalog.evict_expired();
                            catalog.compact_due(4);
                        }
                        None => return,
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                *self.maintenance.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Maintenance { stop, handle });
            }
            Err(e) => tracing::error!(
                error = %e,
                "could not start the maintenance thread; segments seal only on demand"
            ),
        }
    }

    /// Stops the background thread and waits for it, so the directory is free to
    /// reopen as soon as the owner is gone.
    pub fn stop_maintenance(&self) {
        let taken = self
            .maintenance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(m) = taken {
            m.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            m.handle.thread().unpark();
            if m.handle.thread().id() != std::thread::current().id() {
                let _ = m.handle.join();
            }
        }
    }

    /// Every table, ordered by name.
    pub fn tables(&self) -> Vec<Arc<Table>> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A directory for a new table, numbered past every table this data
    /// directory ever had: `<data>/next_table_id` remembers the next number
    /// durably, so a dropped table's number (and with it its catalog OIDs and
    /// any seal still naming its directory) is never reused.
    fn new_table_dir(&self) -> Result<PathBuf> {
        let tables_dir = self.dir.join("tables");
        let counter = self.dir.join(NEXT_TABLE_ID);
        let mut next = match fs::read_to_string(&counter) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| Error::Corrupt {
                path: counter.clone(),
                section: "next table id".into(),
                detail: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(Error::io(&counter, e)),
        };
        // Directories made before the counter existed.
        let entries = fs::read_dir(&tables_dir).map_err(|e| Error::io(&tables_dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(id) = name.trim_end_matches(".dropped").parse::<u64>() {
                next = next.max(id + 1);
            }
        }
        write_atomically(&*self.fs, &counter, format!("{}\n", next + 1).as_bytes())?;
        Ok(tables_dir.join(format!("{next:06}")))
    }
}

/// The file holding the next table number of a data directory.
const NEXT_TABLE_ID: &str = "next_table_id";

/// Takes the data directory's `LOCK` (an exclusive file lock, released when
/// the returned file is dropped), so one process at a time has it.
///
/// # Errors
/// [`Error::Io`] naming the lock file if another process holds it.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<File> {
    let lock_path = dir.join("LOCK");
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.try_lock().map_err(|_| {
        Error::io(
            &lock_path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "the data directory is in use by another Sluice process",
            ),
        )
    })?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnDef;
    use crate::types::{ColumnType, Value};

    fn schema(name: &str) -> TableSchema {
        TableSchema::new(
            name,
            vec![
                ColumnDef {
                    name: "ts".into(),
                    ty: ColumnType::Timestamp,
                    nullable: true,
                },
                ColumnDef {
                    name: "v".into(),
                    ty: ColumnType::BigInt,
                    nullable: false,
                },
            ],
            vec![],
            BTreeMap::from([
                ("time_column".to_string(), "ts".to_string()),
                ("retention".to_string(), "none".to_string()),
            ]),
        )
        .unwrap()
    }

    #[test]
    fn a_dropped_tables_number_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        cat.create_table(schema("a"), false).unwrap();
        let first = cat.table("a").unwrap().id();
        cat.drop_table("a", false).unwrap();
        cat.create_table(schema("a"), false).unwrap();
        let second = cat.table("a").unwrap().id();
        assert!(second > first, "{first} then {second}");
        drop(cat);
        let cat = Catalog::open(dir.path()).unwrap();
        cat.drop_table("a", false).unwrap();
        cat.create_table(schema("b"), false).unwrap();
        assert!(cat.table("b").unwrap().id() > second);
    }

    #[test]
    fn a_deleted_manifest_stops_the_open_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let table_dir = {
            let cat = Catalog::open(dir.path()).unwrap();
            cat.create_table(schema("t"), false).unwrap();
            let t = cat.table("t").unwrap();
            t.append(vec![vec![Value::Timestamp(1), Value::Int(1)]])
                .unwrap();
            t.seal_now().unwrap();
            t.append(vec![vec![Value::Timestamp(2), Value::Int(2)]])
                .unwrap();
            t.dir().to_path_buf()
        };
        let files = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        fs::remove_file(table_dir.join("manifest.json")).unwrap();
        let before = files(&table_dir);
        let err = Catalog::open(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("manifest.json") && err.contains("missing"),
            "{err}"
        );
        assert_eq!(files(&table_dir), before, "no file deleted or moved");
        assert!(before.iter().any(|f| f.starts_with("seg-")), "{before:?}");
    }

    #[test]
    fn files_no_manifest_lists_go_to_lost_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let table_dir = {
            let cat = Catalog::open(dir.path()).unwrap();
            cat.create_table(schema("t"), false).unwrap();
            cat.table("t").unwrap().dir().to_path_buf()
        };
        fs::write(table_dir.join("seg-000099.sluice"), b"left by a seal").unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(cat.table("t").unwrap().rows(), 0);
        let kept = table_dir
            .join(crate::table::LOST_AND_FOUND)
            .join("seg-000099.sluice");
        assert_eq!(fs::read(kept).unwrap(), b"left by a seal");
    }

    #[test]
    fn tables_and_rows_survive_reopen_and_drops_stay_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cat = Catalog::open(dir.path()).unwrap();
            assert!(cat.create_table(schema("a"), false).unwrap());
            assert!(!cat.create_table(schema("a"), true).unwrap());
            assert!(matches!(
                cat.create_table(schema("a"), false),
                Err(Error::TableExists(_))
            ));
            cat.create_table(schema("b"), false).unwrap();
            let a = cat.table("a").unwrap();
            a.append(vec![vec![Value::Text("2024-01-01".into()), Value::Int(7)]])
                .unwrap();
            let err = a.append(vec![vec![Value::Null, Value::Null]]).unwrap_err();
            assert!(matches!(err, Error::NotNull { .. }));
            cat.drop_table("b", false).unwrap();
            assert!(!cat.drop_table("b", true).unwrap());
        }
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(cat.tables().len(), 1);
        assert_eq!(cat.table("a").unwrap().rows(), 1);
        assert!(matches!(cat.table("b"), Err(Error::TableNotFound(_))));
    }

    fn row(ts: &str, v: i64) -> Vec<Value> {
        vec![Value::Text(ts.into()), Value::Int(v)]
    }

    #[test]
    fn a_seal_cuts_segments_of_segment_rows() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let mut options = schema("a").options.raw;
        options.insert("segment_rows".into(), "2".into());
        let a_schema = TableSchema::new("a", schema("a").columns, vec![], options).unwrap();
        cat.create_table(a_schema, false).unwrap();
        let a = cat.table("a").unwrap();
        a.append((0..5).map(|i| row("2024-01-01", i)).collect())
            .unwrap();
        assert_eq!(a.seal_now().unwrap(), Some(0));
        let rows: Vec<u64> = a.manifest().segments.iter().map(|s| s.rows).collect();
        assert_eq!(rows, [2, 2, 1]);
        assert_eq!(a.rows(), 5);
        drop(a);
        drop(cat);
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(cat.table("a").unwrap().rows(), 5);
    }

    #[test]
    fn the_sealer_seals_a_mutable_segment_at_segment_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let mut options = schema("a").options.raw;
        options.insert("segment_bytes".into(), "1kB".into());
        let a_schema = TableSchema::new("a", schema("a").columns, vec![], options).unwrap();
        cat.create_table(a_schema, false).unwrap();
        let a = cat.table("a").unwrap();
        // A row is 16 bytes (a timestamp and a bigint): 63 rows stay under 1 KiB.
        a.append((0..63).map(|i| row("2024-01-01", i)).collect())
            .unwrap();
        assert_eq!(cat.seal_due(), 0);
        a.append(vec![row("2024-01-02", 63)]).unwrap();
        assert_eq!(cat.seal_due(), 1);
        assert_eq!(a.manifest().segments.len(), 1);
        assert_eq!(a.manifest().segments[0].rows, 64);
    }

    #[test]
    fn sealed_segments_and_unsealed_rows_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let table_dir;
        {
            let cat = Catalog::open(dir.path()).unwrap();
            cat.create_table(schema("a"), false).unwrap();
            let a = cat.table("a").unwrap();
            table_dir = a.dir().to_path_buf();
            a.append(vec![row("2024-01-01", 1), row("2024-01-02", 2)])
                .unwrap();
            assert_eq!(a.seal_now().unwrap(), Some(0));
            assert_eq!(a.seal_now().unwrap(), None, "nothing left to seal");
            a.append(vec![row("2024-01-03", 3)]).unwrap();
            assert_eq!(a.seal_now().unwrap(), Some(1));
            a.append(vec![row("2024-01-04", 4)]).unwrap();
            assert_eq!(a.rows(), 4);
            let m = a.manifest();
            assert_eq!(m.segments.len(), 2);
            assert_eq!(m.wal_floor, 2);
        }
        // A seal interrupted before its commit leaves a segment file the manifest
        // does not list; it is removed on open.
        std::fs::write(table_dir.join("seg-000009.sluice"), b"half written").unwrap();
        std::fs::write(table_dir.join("manifest.tmp"), b"{").unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let a = cat.table("a").unwrap();
        assert_eq!(a.rows(), 4, "two sealed segments and one replayed row");
        assert!(!table_dir.join("seg-000009.sluice").exists());
        assert!(!table_dir.join("manifest.tmp").exists());
        let wal_files: Vec<_> = std::fs::read_dir(&table_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("wal-"))
            .collect();
        assert_eq!(
            wal_files,
            vec!["wal-000002.log".to_string()],
            "sealed generations are gone"
        );
    }

    /// Column `v` of every row, segment by segment: sealed ones, then in memory.
    fn values(table: &Table) -> (Vec<i64>, Vec<i64>) {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let (mut sealed, mut memory) = (Vec::new(), Vec::new());
        for segment in table.snapshot().segments {
            match segment {
                crate::SegmentSnapshot::Sealed(s, _) => {
                    for b in 0..s.footer().columns[1].blocks.len() {
                        let a = s.read_block(1, b).unwrap();
                        sealed.extend(a.as_primitive::<Int64Type>().values().iter());
                    }
                }
                crate::SegmentSnapshot::Memory(blocks, _, _) => {
                    for b in blocks {
                        memory.extend(b.column(1).as_primitive::<Int64Type>().values().iter());
                    }
                }
            }
        }
        (sealed, memory)
    }

    #[test]
    fn concurrent_writers_share_syncs_and_replay_in_the_order_they_were_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (writers, appends) = (6, 150);
        let unsealed_before;
        {
            let cat = Catalog::open(dir.path()).unwrap();
            cat.create_table(schema("a"), false).unwrap();
            let a = cat.table("a").unwrap();
            std::thread::scope(|s| {
                for w in 0..writers {
                    let a = &a;
                    s.spawn(move || {
                        for i in 0..appends {
                            let v = w * 1000 + i;
                            a.append(vec![row("2024-01-01", v), row("2024-01-01", -v - 1)])
                                .unwrap();
                        }
                    });
                }
                // Seals race the writers: rows written but not yet synced when a
                // seal rotates the generation must not be lost or doubled.
                s.spawn(|| {
                    for _ in 0..5 {
                        a.seal_now().unwrap();
                        std::thread::yield_now();
                    }
                });
            });
            let stats = a.wal_stats();
            assert_eq!(stats.records, (writers * appends) as u64);
            assert!(
                stats.syncs >= 1 && stats.syncs <= stats.records,
                "{stats:?}"
            );
            let (sealed, memory) = values(&a);
            let mut all: Vec<i64> = sealed.iter().chain(&memory).copied().collect();
            all.sort_unstable();
            let mut expected: Vec<i64> = (0..writers)
                .flat_map(|w| (0..appends).flat_map(move |i| [w * 1000 + i, -(w * 1000 + i) - 1]))
                .collect();
            expected.sort_unstable();
            assert_eq!(all, expected, "every acknowledged row exactly once");
            unsealed_before = memory;
        }
        let cat = Catalog::open(dir.path()).unwrap();
        let (_, memory) = values(&cat.table("a").unwrap());
        assert_eq!(
            memory, unsealed_before,
            "replay rebuilds the rows in applied order"
        );
    }

    #[test]
    fn compaction_takes_runs_of_adjacent_small_segments() {
        let entries = |rows: &[u64]| -> Vec<crate::manifest::SegmentEntry> {
            rows.iter()
                .enumerate()
                .map(|(i, r)| crate::manifest::SegmentEntry {
                    partition: None,
                    cleared: None,
                    id: i as u64,
                    file: format!("seg-{i}"),
                    rows: *r,
                    time_min: None,
                    time_max: None,
                    created_micros: 0,
                })
                .collect()
        };
        let run = |rows: &[u64]| crate::table::compaction_run(&entries(rows), 100, |_| true);
        assert_eq!(run(&[10, 20, 30]), Some(0..3));
        assert_eq!(run(&[90, 10, 20, 90]), Some(1..3), "full segments stay");
        assert_eq!(run(&[50, 50, 50]), Some(0..2), "at most segment_rows rows");
        assert_eq!(run(&[40, 90, 40]), None, "only adjacent segments");
        assert_eq!(run(&[30]), None);
        let skip_first = crate::table::compaction_run(&entries(&[5, 5, 5]), 100, |e| e.id != 0);
        assert_eq!(skip_first, Some(1..3), "a quarantined segment is not read");
    }

    #[test]
    fn compaction_merges_small_segments_while_queries_count_every_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let mut options = schema("a").options.raw;
        options.insert("segment_rows".into(), "4".into());
        let a_schema = TableSchema::new("a", schema("a").columns, vec![], options).unwrap();
        cat.create_table(a_schema, false).unwrap();
        let a = cat.table("a").unwrap();
        for i in 0..6 {
            a.append(vec![row("2024-01-01", 2 * i), row("2024-01-02", 2 * i + 1)])
                .unwrap();
            a.seal_now().unwrap();
        }
        a.append(vec![row("2024-01-03", 12)]).unwrap();
        let old_files: Vec<String> = a
            .manifest()
            .segments
            .iter()
            .map(|e| e.file.clone())
            .collect();
        assert_eq!(old_files.len(), 6);
        let (before_sealed, before_memory) = values(&a);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let rows: usize = a
                        .snapshot()
                        .segments
                        .iter()
                        .map(|seg| match seg {
                            crate::SegmentSnapshot::Sealed(s, _) => s.rows(),
                            crate::SegmentSnapshot::Memory(b, _, _) => {
                                b.iter().map(|b| b.num_rows()).sum()
                            }
                        })
                        .sum();
                    assert_eq!(rows, 13, "a snapshot sees every row exactly once");
                }
            });
            assert_eq!(cat.compact_due(usize::MAX), 3);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let m = a.manifest();
        assert_eq!(
            m.segments.iter().map(|e| e.rows).collect::<Vec<_>>(),
            [4, 4, 4]
        );
        assert_eq!(
            cat.compact_due(usize::MAX),
            0,
            "full segments are left alone"
        );
        for f in &old_files {
            assert!(!a.dir().join(f).exists(), "{f} is deleted once merged");
        }
        let (mut sealed, memory) = values(&a);
        sealed.sort_unstable();
        let mut expected = before_sealed.clone();
        expected.sort_unstable();
        assert_eq!((sealed, &memory), (expected.clone(), &before_memory));
        drop(a);
        drop(cat);
        let cat = Catalog::open(dir.path()).unwrap();
        let (mut sealed, memory) = values(&cat.table("a").unwrap());
        sealed.sort_unstable();
        assert_eq!((sealed, memory), (expected, before_memory), "after reopen");
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Catalog::open(dir.path()).unwrap();
        assert!(Catalog::open(dir.path()).is_err());
    }
}
