//! Sluice: a real-time OLAP database you embed. Rows go in through SQL `INSERT` or
//! [`Database::append`] and are queryable at once; queries are PostgreSQL SQL.
//!
//! ```
//! use sluice::{Database, Value};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Database::open(dir.path())?;
//! db.execute("CREATE TABLE orders (ts TIMESTAMP, item TEXT, amount DOUBLE PRECISION) \
//!             WITH (time_column = 'ts')")?;
//! db.execute("INSERT INTO orders VALUES (now() - interval '5 minutes', 'pizza', 12.5)")?;
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
//! db.append("orders", vec![vec![
//!     Value::Timestamp(now.as_micros() as i64),
//!     Value::Text("pizza".into()),
//!     Value::Float(10.0),
//! ]])?;
//!
//! let batches = db.query("SELECT item, count(*) AS n, sum(amount) FROM orders GROUP BY item")?;
//! let text = sluice::pretty::format_batches(&batches)?;
//! assert!(text.contains("pizza") && text.contains("22.5"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod demo;
pub mod export;
pub mod import;
pub mod pretty;
pub mod server;
pub mod workload;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use arrow::record_batch::RecordBatch;
pub use sluice_query::{
    parse_sql, Error, Param, QueryOptions, RowStream, Session, StatementResult, Streamed,
};
pub use sluice_storage::clock::{Clock, OffsetClock};
pub use sluice_storage::Value;

use sluice_query::Engine;
use sluice_storage::Catalog;

/// Result alias for the embedding API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open Sluice database: a data directory and the engine over it. Share it
/// between threads with an `Arc`; every method takes `&self`.
pub struct Database {
    engine: Engine,
    options: QueryOptions,
}

impl Drop for Database {
    fn drop(&mut self) {
        self.engine.catalog().stop_sources();
        self.engine.catalog().stop_maintenance();
    }
}

impl Database {
    /// Opens the database in `path`, creating the directory if needed, replays
    /// rows not yet sealed, and starts reading every table's Kafka source from
    /// its committed offsets. Only one process may have a directory open.
    ///
    /// # Errors
    /// I/O errors naming the file, or a corrupt-file error naming the file and section.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_clock(path, sluice_storage::clock::system())
    }

    /// As [`Database::open`], with retention reading `clock` instead of the
    /// system clock (an [`OffsetClock`] a test moves forward).
    ///
    /// # Errors
    /// As [`Database::open`].
    pub fn open_with_clock(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with(path, sluice_ingest::Ingestion::new(), clock)
    }

    /// Opens the database to run statements only: as [`Database::open`], but
    /// no Kafka source is read (a one-shot `sluice sql` must not start
    /// consumers). Source options of a new table are still checked.
    ///
    /// # Errors
    /// As [`Database::open`].
    pub fn open_for_statements(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(
            path,
            sluice_ingest::Ingestion::check_only(),
            sluice_storage::clock::system(),
        )
    }

    fn open_with(
        path: impl AsRef<Path>,
        sources: sluice_ingest::Ingestion,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let env = sluice_storage::Environment {
            clock,
            ..Default::default()
        };
        let catalog = Arc::new(Catalog::open_with(path.as_ref(), env)?);
        catalog.start_maintenance();
        catalog.set_source_hooks(Arc::new(sources));
        Ok(Database {
            engine: Engine::new(catalog),
            options: QueryOptions::default(),
        })
    }

    /// The limits applied to each statement (timeout, memory bound, threads).
    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    /// Changes the limits applied to each later statement.
    pub fn set_options(&mut self, options: QueryOptions) {
        self.options = options;
    }

    /// The query engine, for front ends (the Postgres protocol server) that run
    /// statements themselves.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs every statement in `sql` in order and returns each one's result. Stops at
    /// the first error; statements before it have taken effect.
    ///
    /// # Errors
    /// The failing statement's error; [`Error::sqlstate`] gives its SQLSTATE.
    pub fn execute(&self, sql: &str) -> Result<Vec<StatementResult>> {
        self.execute_in(&mut self.session(), sql)
    }

    /// A new session: the state `SET` changes (time zone, statement timeout, ...),
    /// starting from this database's options. [`Database::execute`] uses a fresh one
    /// per call; keep one to carry settings across calls.
    pub fn session(&self) -> Session {
        Session::new(self.options.clone(), "sluice", "sluice")
    }

    /// A new session for a named user and database (as a protocol client gives them).
    pub fn session_for(&self, user: &str, database: &str) -> Session {
        Session::new(self.options.clone(), user, database)
    }

    /// Runs every statement in `sql` in `session`.
    ///
    /// # Errors
    /// As [`Database::execute`].
    pub fn execute_in(&self, session: &mut Session, sql: &str) -> Result<Vec<StatementResult>> {
        self.engine.execute_sql(sql, session)
    }

    /// Runs `sql` and returns the rows of its last statement.
    ///
    /// # Errors
    /// As [`Database::execute`].
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut results = self.execute(sql)?;
        match results.pop() {
            Some(StatementResult::Rows { batches, .. }) => Ok(batches),
            _ => Ok(Vec::new()),
        }
    }

    /// Runs one statement; setting `cancel` from another thread stops it with 57014.
    ///
    /// # Errors
    /// As [`Database::execute`]; a statement list with other than one statement is a
    /// syntax error.
    pub fn execute_cancellable(
        &self,
        sql: &str,
        cancel: Arc<AtomicBool>,
    ) -> Result<StatementResult> {
        let mut stmts = sluice_query::parse_sql(sql)?;
        if stmts.len() != 1 {
            return Err(Error::Syntax(format!(
                "expected one statement, got {}",
                stmts.len()
            )));
        }
        let stmt = stmts.remove(0);
        self.engine.execute(&stmt, &mut self.session(), &[], cancel)
    }

    /// Seals every table's rows held in memory into segment files now, whatever
    /// their size or age (the background thread does this when `segment_rows` or
    /// `segment_age` is reached). Returns the number of segments written.
    ///
    /// # Errors
    /// I/O errors naming the file; unsealed rows stay durable in the write-ahead file.
    pub fn seal(&self) -> Result<usize> {
        let mut n = 0;
        for t in self.engine.catalog().tables() {
            if t.seal_now()?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Merges every table's small sealed segments now (the background thread does
    /// this as well): adjacent segments of at most half `segment_rows` rows each
    /// become one of at most `segment_rows`. Returns the number of merges made.
    ///
    /// # Errors
    /// I/O errors naming the file, or a segment failing its checks (it is then
    /// quarantined); the segments involved stay as they were.
    pub fn compact(&self) -> Result<usize> {
        let mut n = 0;
        for t in self.engine.catalog().tables() {
            while t.compact_now()?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Appends rows to `table` through the same path as INSERT: each row has one value
    /// per column in column order; values are converted as an INSERT would convert
    /// them; if any row is rejected, none is written. Returns once the rows are
    /// durable and visible to queries.
    ///
    /// # Errors
    /// Unknown table, type, range and NOT NULL errors naming the column.
    pub fn append(&self, table: &str, rows: Vec<Vec<Value>>) -> Result<usize> {
        let t = self.engine.catalog().table(table).map_err(|e| match e {
            sluice_storage::Error::TableNotFound(t) => Error::UndefinedTable(t),
            other => Error::Storage(other),
        })?;
        Ok(t.append(rows)?)
    }
}
