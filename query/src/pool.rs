//! The bounded query pool: a server runs at most `size` statements at once
//! (one per core by default); the rest wait their turn, first come first
//! served. Scan helpers draw from the same slots, so a large scan spreads over
//! idle cores but never onto a core another statement holds.
//!
//! Why slots and not a thread pool of our own: a statement already runs on its
//! connection's thread (`block_in_place`), so a thread pool would only add two
//! hand-offs to every point query. What must be bounded is how many threads
//! compute at once: with 100 clients on two cores, unbounded statements each
//! get a fiftieth of a core and every one of them is slow; bounded, two run at
//! full speed while the others queue, which gives more answers per second and
//! a shorter median wait.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Woken whenever some statement's cancel flag is set (a cancel request, a
/// terminated session, a shutdown), so that statements waiting in a pool's
/// queue look at their own flag at once instead of polling it.
pub fn cancel_signal() -> &'static tokio::sync::Notify {
    static SIGNAL: std::sync::LazyLock<tokio::sync::Notify> =
        std::sync::LazyLock::new(tokio::sync::Notify::new);
    &SIGNAL
}

/// Sets a statement's cancel `flag` and wakes the queue to see it.
pub fn cancel(flag: &std::sync::atomic::AtomicBool) {
    flag.store(true, Ordering::Relaxed);
    cancel_signal().notify_waiters();
}

/// Slots for executing statements, shared by a server's connections.
#[derive(Debug)]
pub struct QueryPool {
    size: usize,
    slots: Arc<Semaphore>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    waiting: AtomicUsize,
    running: AtomicUsize,
    helpers: AtomicUsize,
    admitted: AtomicU64,
    queued: AtomicU64,
    wait_micros: AtomicU64,
    helpers_granted: AtomicU64,
    helpers_refused: AtomicU64,
}

/// What a pool is doing, for `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Slots in the pool.
    pub size: usize,
    /// Statements holding a slot now.
    pub running: usize,
    /// Statements waiting for a slot now.
    pub waiting: usize,
    /// Scan helpers holding a slot now.
    pub helpers: usize,
    /// Statements admitted since the pool was made.
    pub admitted: u64,
    /// Of those, statements that had to wait.
    pub queued: u64,
    /// Time statements spent waiting, in total.
    pub wait: Duration,
    /// Scan helpers started on a free slot.
    pub helpers_granted: u64,
    /// Scan helpers not started because every slot was taken.
    pub helpers_refused: u64,
}

/// A held slot: a statement (or a scan helper) may compute while it lives.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    pool: Arc<QueryPool>,
    helper: bool,
    waited: Duration,
}

impl Slot {
    /// How long the statement waited for this slot (zero for a helper).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let gauge = if self.helper {
            &self.pool.counters.helpers
        } else {
            &self.pool.counters.running
        };
        gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a waiting statement for as long as it waits, including when its
/// wait is abandoned (the statement cancelled or timed out in the queue).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl QueryPool {
    /// A pool of `size` slots (at least one).
    pub fn new(size: usize) -> Arc<QueryPool> {
        let size = size.max(1);
        Arc::new(QueryPool {
            size,
            slots: Arc::new(Semaphore::new(size)),
            counters: Counters::default(),
        })
    }

    /// A slot per core.
    pub fn per_core() -> Arc<QueryPool> {
        QueryPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits for a slot, behind every statement that asked before. Dropping
    /// the future gives up the place in the queue.
    pub async fn admit(self: &Arc<Self>) -> Slot {
        let c = &self.counters;
        let started = Instant::now();
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                c.waiting.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&c.waiting);
                let Ok(p) = Arc::clone(&self.slots).acquire_owned().await else {
                    // The semaphore is never closed; were it, no statement
                    // could ever run again, so fail loudly rather than hang.
                    unreachable!("the query pool's semaphore is never closed")
                };
                c.queued.fetch_add(1, Ordering::Relaxed);
                p
            }
        };
        let waited = started.elapsed();
        c.wait_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        c.admitted.fetch_add(1, Ordering::Relaxed);
        c.running.fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            pool: Arc::clone(self),
            helper: false,
            waited,
        }
    }

    /// Up to `want` slots for scan helpers, taken only if free now: a queued
    /// statement comes before another helper, and a busy pool gives none.
    pub fn try_helpers(self: &Arc<Self>, want: usize) -> Vec<Slot> {
        let c = &self.counters;
        let mut granted = Vec::new();
        while granted.len() < want {
            let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
                break;
            };
            c.helpers.fetch_add(1, Ordering::Relaxed);
            granted.push(Slot {
                _permit: permit,
                pool: Arc::clone(self),
                helper: true,
                waited: Duration::ZERO,
            });
        }
        c.helpers_granted
            .fetch_add(granted.len() as u64, Ordering::Relaxed);
        c.helpers_refused
            .fetch_add((want - granted.len()) as u64, Ordering::Relaxed);
        granted
    }

    /// The pool's gauges and counters now.
    pub fn stats(&self) -> PoolStats {
        let c = &self.counters;
        PoolStats {
            size: self.size,
            running: c.running.load(Ordering::Relaxed),
            waiting: c.waiting.load(Ordering::Relaxed),
            helpers: c.helpers.load(Ordering::Relaxed),
            admitted: c.admitted.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            wait: Duration::from_micros(c.wait_micros.load(Ordering::Relaxed)),
            helpers_granted: c.helpers_granted.load(Ordering::Relaxed),
            helpers_refused: c.helpers_refused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_full_pool_queues_statements_and_refuses_helpers() {
        let pool = QueryPool::new(2);
        let a = now(pool.admit()).expect("a free slot");
        let helpers = pool.try_helpers(3);
        assert_eq!(helpers.len(), 1, "one slot was free");
        assert_eq!(pool.stats().helpers_refused, 2);
        let mut third = Box::pin(pool.admit());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(third.as_mut().poll(&mut cx).is_pending());
        assert_eq!(pool.stats().waiting, 1);
        // A helper may not take the slot a queued statement waits for.
        drop(helpers);
        assert!(pool.try_helpers(1).is_empty());
        let third = match third.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(s) => s,
            std::task::Poll::Pending => panic!("the freed slot goes to the queued statement"),
        };
        let s = pool.stats();
        assert_eq!((s.running, s.waiting, s.queued, s.admitted), (2, 0, 1, 2));
        drop((a, third));
        assert_eq!(pool.stats().running, 0);
    }

    #[test]
    fn an_abandoned_wait_leaves_the_queue() {
        let pool = QueryPool::new(1);
        let _a = now(pool.admit()).expect("a free slot");
        assert!(now(pool.admit()).is_none());
        assert_eq!(pool.stats().waiting, 0);
    }
}
