//! Admission to the query pool ([`sluice_query::pool`]) for the protocol front
//! ends: a statement waits for a slot before it computes, gives up waiting when
//! cancelled or past its timeout, and a query's rows are read a batch at a time,
//! each read holding a slot only while it computes, never while the batch
//! waits for a slow client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use sluice_query::pool::{QueryPool, Slot};
use sluice_query::{Error, RowStream};

/// How often a queued statement looks at its cancel flag if nothing woke it:
/// a backstop, every path that sets a flag also signals
/// ([`sluice_query::pool::cancel`]).
const CANCEL_BACKSTOP: Duration = Duration::from_secs(1);

/// Waits for a slot of `pool`. Fails with 57014 when `cancel` is set or the
/// wait reaches `timeout` (the session's statement_timeout), and records the
/// wait in `/metrics`. A waiting statement sleeps until a slot, a cancel
/// signal or its deadline wakes it: a hundred queued statements cost nothing
/// while they wait.
pub async fn admit(
    pool: &Arc<QueryPool>,
    cancel: &AtomicBool,
    timeout: Option<Duration>,
) -> Result<Slot, Error> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let admit = pool.admit();
    tokio::pin!(admit);
    loop {
        let signal = sluice_query::pool::cancel_signal().notified();
        tokio::pin!(signal);
        // Registered before the flag is read, so a cancel in between still wakes us.
        signal.as_mut().enable();
        if cancel.load(Ordering::Relaxed) {
            if sluice_query::context::SHUTTING_DOWN.load(Ordering::Relaxed) {
                return Err(Error::AdminShutdown);
            }
            return Err(Error::Cancelled("user request"));
        }
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            slot = &mut admit => {
                super::metrics::queue_wait().observe(slot.waited().as_secs_f64());
                return Ok(slot);
            }
            () = &mut signal => {}
            () = expired => return Err(Error::Cancelled("statement timeout")),
            () = tokio::time::sleep(CANCEL_BACKSTOP) => {}
        }
    }
}

/// A slot held by one statement, taken again whenever the statement has more
/// to compute. Without a pool (an embedding caller), holding is a no-op.
pub struct Admission {
    pool: Option<Arc<QueryPool>>,
    slot: Option<Slot>,
    cancel: Arc<AtomicBool>,
    timeout: Option<Duration>,
}

impl Admission {
    /// Admission to `pool` for a statement cancelled through `cancel`, which
    /// waits in the queue at most `timeout` each time.
    pub fn new(
        pool: Option<Arc<QueryPool>>,
        cancel: Arc<AtomicBool>,
        timeout: Option<Duration>,
    ) -> Admission {
        Admission {
            pool,
            slot: None,
            cancel,
            timeout,
        }
    }

    /// Waits until the statement holds a slot (at once if it already does).
    pub async fn hold(&mut self) -> Result<(), Error> {
        if let (None, Some(pool)) = (&self.slot, &self.pool) {
            self.slot = Some(admit(pool, &self.cancel, self.timeout).await?);
        }
        Ok(())
    }

    /// Gives the slot back until [`Admission::hold`] is called again.
    pub fn release(&mut self) {
        self.slot = None;
    }
}

/// A query's rows, read one batch ahead so that the read which finds the end
/// happens with the last batch's: a dashboard query's one batch costs a single
/// admission, not a second one to learn there is nothing more.
pub struct PooledRows {
    rows: RowStream,
    /// The batch read ahead, if any.
    ahead: Option<Result<RecordBatch, Error>>,
    /// The stream has ended (or failed): nothing more to read from `rows`.
    finished: bool,
}

impl PooledRows {
    /// `rows`, not yet read.
    pub fn new(rows: RowStream) -> PooledRows {
        PooledRows {
            rows,
            ahead: None,
            finished: false,
        }
    }

    /// The rows' schema.
    pub fn schema(&self) -> &arrow::datatypes::SchemaRef {
        self.rows.schema()
    }

    /// The next batch (`None` at the end). Computing holds a slot of
    /// `admission`, given back before the batch is returned; handing over the
    /// last batch read ahead needs none.
    pub async fn next(&mut self, admission: &mut Admission) -> Option<Result<RecordBatch, Error>> {
        if self.finished {
            return self.ahead.take();
        }
        if let Err(e) = admission.hold().await {
            self.finished = true;
            return Some(Err(e));
        }
        let current = tokio::task::block_in_place(|| {
            let current = self.ahead.take().or_else(|| self.rows.next());
            match &current {
                Some(Ok(_)) => {
                    self.ahead = self.rows.next();
                    self.finished = !matches!(self.ahead, Some(Ok(_)));
                }
                _ => self.finished = true,
            }
            current
        });
        admission.release();
        current
    }
}
