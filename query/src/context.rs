//! Per-statement execution context: the deadline, the cancel flag, the memory bound
//! and the statement's start time (`now()`), shared by every operator and worker.

use sluice_storage::zone::Zone;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Set when the server shuts down: statements it cancels then fail with
/// 57P01 (admin shutdown), as PostgreSQL's do, rather than 57014.
pub static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// Limits and settings that apply to one statement.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// Maximum run time; `None` means no limit.
    pub timeout: Option<Duration>,
    /// The longest `timeout` a session may ask for (`SET statement_timeout`,
    /// 0 included): the operator's bound, which a client cannot lift.
    pub max_timeout: Option<Duration>,
    /// Maximum bytes one statement holds in hash tables, sort buffers, join
    /// tables, windows and materialised scan output.
    pub memory_limit: usize,
    /// The budget all statements draw from together (a server's); none for
    /// an embedding caller unless set.
    pub pool: Option<std::sync::Arc<crate::memory::MemoryPool>>,
    /// Each session's `idle_in_transaction_session_timeout` until it sets its
    /// own; `None` for none.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Worker threads for segment scans.
    pub threads: usize,
    /// The server's query pool: a scan starts helpers only on its free slots.
    /// `None` (an embedding caller): helpers start whenever a scan pays for them.
    pub workers: Option<std::sync::Arc<crate::pool::QueryPool>>,
    /// The session's time zone (TIMESTAMPTZ text, local times of TIMESTAMPTZ).
    pub zone: Zone,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            timeout: Some(Duration::from_secs(30)),
            max_timeout: None,
            memory_limit: 2 << 30,
            pool: None,
            idle_in_transaction_timeout: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            workers: None,
            zone: Zone::UTC,
        }
    }
}

/// The context every operator of a statement checks.
#[derive(Clone)]
pub struct QueryContext {
    inner: Arc<Inner>,
}

struct Inner {
    options: QueryOptions,
    deadline: Option<Instant>,
    cancelled: Arc<AtomicBool>,
    memory_used: AtomicUsize,
    /// The most `memory_used` has been.
    memory_peak: AtomicUsize,
    now_micros: i64,
    catalog: Option<Arc<sluice_storage::Catalog>>,
    user: String,
    scans: std::sync::Mutex<Vec<(String, crate::prune::ScanStats)>>,
    /// What each aggregation that spilled to disk wrote.
    spills: std::sync::Mutex<Vec<crate::aggregate::spill::SpillStats>>,
    /// Set by EXPLAIN ANALYZE; read on every operator, so an atomic, not the lock.
    profiling: AtomicBool,
    /// Per plan node (by address), time and rows, while `profiling`.
    profile: std::sync::Mutex<HashMap<usize, OperatorStats>>,
    /// Each table's snapshot, taken by the statement's first scan of it: every
    /// scan and subquery of the statement sees the same rows.
    snapshots: std::sync::Mutex<HashMap<usize, Arc<sluice_storage::TableSnapshot>>>,
    /// The values of uncorrelated subqueries, by plan address: run once per
    /// statement, not once per batch.
    subqueries: std::sync::Mutex<HashMap<usize, arrow::array::ArrayRef>>,
}

impl Drop for Inner {
    /// What the statement still holds goes back to the pool when its context
    /// ends (an error or a cancel skips the operators' own releases).
    /// A statement that held much memory also has it given back to the
    /// operating system soon after (see
    /// [`crate::memory::large_statement_ended`]).
    fn drop(&mut self) {
        if let Some(pool) = &self.options.pool {
            pool.shrink(*self.memory_used.get_mut());
        }
        if *self.memory_peak.get_mut() >= crate::memory::GIVE_BACK_AFTER {
            crate::memory::large_statement_ended();
        }
    }
}

/// What one plan operator did, for EXPLAIN ANALYZE.
#[derive(Clone, Copy, Debug, Default)]
pub struct OperatorStats {
    /// Wall time, including the operator's inputs.
    pub elapsed: std::time::Duration,
    /// Rows it produced.
    pub rows: usize,
}

impl QueryContext {
    /// A context starting now; `cancel` lets another thread stop the statement.
    pub fn new(options: QueryOptions, cancel: Arc<AtomicBool>) -> Self {
        let now_micros = chrono::Utc::now().timestamp_micros();
        QueryContext {
            inner: Arc::new(Inner {
                deadline: options.timeout.map(|t| Instant::now() + t),
                options,
                cancelled: cancel,
                memory_used: AtomicUsize::new(0),
                memory_peak: AtomicUsize::new(0),
                now_micros,
                catalog: None,
                user: "sluice".into(),
                scans: std::sync::Mutex::new(Vec::new()),
                spills: std::sync::Mutex::new(Vec::new()),
                profiling: AtomicBool::new(false),
                profile: std::sync::Mutex::new(HashMap::new()),
                snapshots: std::sync::Mutex::new(HashMap::new()),
                subqueries: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A context whose catalog functions (`pg_get_constraintdef`, `regclass`, ...)
    /// read `catalog`, for statements run by `user`.
    pub fn with_catalog(
        options: QueryOptions,
        cancel: Arc<AtomicBool>,
        catalog: Arc<sluice_storage::Catalog>,
        user: &str,
    ) -> Self {
        let mut ctx = QueryContext::new(options, cancel);
        if let Some(inner) = Arc::get_mut(&mut ctx.inner) {
            // now() is the database's clock, the one retention reads.
            inner.now_micros = catalog.clock().now_micros();
            inner.catalog = Some(catalog);
            inner.user = user.to_string();
        }
        ctx
    }

    /// The catalog, when the statement runs against one.
    pub fn catalog(&self) -> Option<&Arc<sluice_storage::Catalog>> {
        self.inner.catalog.as_ref()
    }

    /// Records what a table scan read and skipped (for EXPLAIN ANALYZE).
    pub fn record_scan(&self, table: &str, stats: crate::prune::ScanStats) {
        if let Ok(mut scans) = self.inner.scans.lock() {
            scans.push((table.to_string(), stats));
        }
    }

    /// Starts recording each operator's time and rows (EXPLAIN ANALYZE).
    pub fn enable_profiling(&self) {
        self.inner.profiling.store(true, Ordering::Relaxed);
    }

    /// True if operators should report to [`QueryContext::record_operator`].
    pub fn profiling(&self) -> bool {
        self.inner.profiling.load(Ordering::Relaxed)
    }

    /// Adds a run of the operator `node` (a plan node's address).
    pub fn record_operator(&self, node: usize, elapsed: std::time::Duration, rows: usize) {
        if let Ok(mut profile) = self.inner.profile.lock() {
            let s = profile.entry(node).or_default();
            s.elapsed += elapsed;
            s.rows += rows;
        }
    }

    /// What the operator `node` did, if it ran while profiling.
    pub fn operator(&self, node: usize) -> Option<OperatorStats> {
        self.inner
            .profile
            .lock()
            .ok()
            .and_then(|p| p.get(&node).copied())
    }

    /// Records an aggregation that spilled to disk (for EXPLAIN ANALYZE).
    pub fn record_spill(&self, stats: crate::aggregate::spill::SpillStats) {
        if let Ok(mut spills) = self.inner.spills.lock() {
            spills.push(stats);
        }
    }

    /// The spills recorded so far.
    pub fn spills(&self) -> Vec<crate::aggregate::spill::SpillStats> {
        self.inner
            .spills
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The scans recorded so far.
    pub fn scans(&self) -> Vec<(String, crate::prune::ScanStats)> {
        self.inner
            .scans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The statement's snapshot of `table`: taken on first use, then the same
    /// for every later scan of it in this statement.
    pub fn snapshot(&self, table: &sluice_storage::Table) -> Arc<sluice_storage::TableSnapshot> {
        let key = table as *const sluice_storage::Table as usize;
        let mut snapshots = self
            .inner
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            snapshots
                .entry(key)
                .or_insert_with(|| Arc::new(table.snapshot())),
        )
    }

    /// Starts the statement with snapshots already taken (its transaction
    /// block's), so it reads the rows the block's earlier statements read.
    pub fn seed_snapshots(&self, taken: &HashMap<usize, Arc<sluice_storage::TableSnapshot>>) {
        let mut snapshots = self
            .inner
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (k, v) in taken {
            snapshots.insert(*k, Arc::clone(v));
        }
    }

    /// The snapshots the statement has taken, by table.
    pub fn snapshots(&self) -> HashMap<usize, Arc<sluice_storage::TableSnapshot>> {
        self.inner
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The value of the uncorrelated subquery `plan` (by address), computed by
    /// `run` the first time it is asked for in this statement.
    pub fn subquery_value(
        &self,
        plan: usize,
        run: impl FnOnce() -> Result<arrow::array::ArrayRef>,
    ) -> Result<arrow::array::ArrayRef> {
        let cached = self
            .inner
            .subqueries
            .lock()
            .ok()
            .and_then(|c| c.get(&plan).cloned());
        if let Some(v) = cached {
            return Ok(v);
        }
        let v = run()?;
        if let Ok(mut c) = self.inner.subqueries.lock() {
            c.insert(plan, Arc::clone(&v));
        }
        Ok(v)
    }

    /// The user running the statement.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// The statement's options.
    pub fn options(&self) -> &QueryOptions {
        &self.inner.options
    }

    /// The statement's start time in microseconds since the epoch: `now()`.
    pub fn now_micros(&self) -> i64 {
        self.inner.now_micros
    }

    /// Errors with 57014 if the statement was cancelled or is past its deadline.
    /// Operators call this between blocks and batches.
    pub fn check(&self) -> Result<()> {
        if self.inner.cancelled.load(Ordering::Relaxed) {
            if SHUTTING_DOWN.load(Ordering::Relaxed) {
                return Err(Error::AdminShutdown);
            }
            return Err(Error::Cancelled("user request"));
        }
        if let Some(deadline) = self.inner.deadline {
            if Instant::now() >= deadline {
                return Err(Error::Cancelled("statement timeout"));
            }
        }
        Ok(())
    }

    /// Accounts `bytes` more memory to the statement.
    ///
    /// # Errors
    /// [`Error::ResourcesExhausted`] (53200) once the total passes the bound.
    pub fn reserve(&self, bytes: usize) -> Result<()> {
        let total = self.inner.memory_used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let peak = self.inner.memory_peak.fetch_max(total, Ordering::Relaxed);
        if peak < crate::memory::GIVE_BACK_AFTER && total >= crate::memory::GIVE_BACK_AFTER {
            crate::memory::large_statement_started();
        }
        if total > self.inner.options.memory_limit {
            // Not taken: what the statement holds is unchanged, so an operator
            // that answers otherwise (an aggregation that spills) starts from it.
            self.inner.memory_used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Error::ResourcesExhausted(format!(
                "the statement needs more than its memory bound of {} bytes",
                self.inner.options.memory_limit
            )));
        }
        if let Some(pool) = &self.inner.options.pool {
            if !pool.try_grow(bytes) {
                self.inner.memory_used.fetch_sub(bytes, Ordering::Relaxed);
                return Err(Error::ResourcesExhausted(format!(
                    "the server's query memory pool of {} bytes is in use by other statements",
                    pool.limit()
                )));
            }
        }
        Ok(())
    }

    /// Takes `bytes` for something that outlives the statement (an open
    /// cursor's rows): within the statement's own bound, and held from the
    /// server's pool until the returned reservation is dropped (`None` when
    /// there is no pool).
    ///
    /// # Errors
    /// [`Error::ResourcesExhausted`] (53200) past either bound.
    pub fn hold(&self, bytes: usize) -> Result<Option<crate::memory::PoolReservation>> {
        if self.memory_used().saturating_add(bytes) > self.inner.options.memory_limit {
            return Err(Error::ResourcesExhausted(format!(
                "the statement needs more than its memory bound of {} bytes",
                self.inner.options.memory_limit
            )));
        }
        let Some(pool) = &self.inner.options.pool else {
            return Ok(None);
        };
        crate::memory::PoolReservation::take(pool, bytes)
            .map(Some)
            .ok_or_else(|| {
                Error::ResourcesExhausted(format!(
                    "the server's query memory pool of {} bytes is in use by other statements",
                    pool.limit()
                ))
            })
    }

    /// True when `bytes` more would fit the statement's bound and the
    /// server's pool now: for memory that is worth taking but not needed
    /// (a buffer that only speeds things up).
    pub fn has_room(&self, bytes: usize) -> bool {
        let statement = self.memory_used().saturating_add(bytes) <= self.inner.options.memory_limit;
        let pool = self
            .inner
            .options
            .pool
            .as_ref()
            .is_none_or(|p| p.used().saturating_add(bytes) <= p.limit());
        statement && pool
    }

    /// Returns memory accounted with [`QueryContext::reserve`].
    pub fn release(&self, bytes: usize) {
        let bytes = bytes.min(self.memory_used());
        self.inner.memory_used.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(pool) = &self.inner.options.pool {
            pool.shrink(bytes);
        }
    }

    /// Bytes currently accounted.
    pub fn memory_used(&self) -> usize {
        self.inner.memory_used.load(Ordering::Relaxed)
    }
}
