//! The server-wide query memory pool: every statement's accounted memory
//! (hash tables, sorts, joins, windows, materialised scan output) is drawn
//! from one budget, so many statements together stay bounded and the one
//! that would go past it fails with 53200 instead of the process being
//! killed for running out of memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A budget of bytes shared by statements.
#[derive(Debug)]
pub struct MemoryPool {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryPool {
    /// A pool of `limit` bytes.
    pub fn new(limit: usize) -> MemoryPool {
        MemoryPool {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The pool's size in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes statements hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the pool; `false` (taking nothing) when that would
    /// pass its limit.
    pub fn try_grow(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    pub fn shrink(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// Bytes taken from a pool beyond one statement's life (an open cursor's
/// rows), given back when dropped.
#[derive(Debug)]
pub struct PoolReservation {
    pool: std::sync::Arc<MemoryPool>,
    bytes: usize,
}

impl PoolReservation {
    /// Takes `bytes` from `pool` until the reservation is dropped; `None`
    /// (taking nothing) when that would pass the pool's limit.
    pub fn take(pool: &std::sync::Arc<MemoryPool>, bytes: usize) -> Option<PoolReservation> {
        pool.try_grow(bytes).then(|| PoolReservation {
            pool: std::sync::Arc::clone(pool),
            bytes,
        })
    }
}

impl Drop for PoolReservation {
    fn drop(&mut self) {
        self.pool.shrink(self.bytes);
    }
}

/// What gives freed memory back to the operating system: set once by the
/// binary to its allocator's collection (the library does not choose the
/// allocator an embedding program uses).
static GIVE_BACK: OnceLock<fn()> = OnceLock::new();

/// A statement whose accounted memory peaked at this many bytes or more
/// gives freed memory back when it ends.
pub const GIVE_BACK_AFTER: usize = 64 << 20;

/// How long after the last large statement ended, with none running, freed
/// memory is given back. Not at once: a large statement that follows soon
/// (a dashboard's next refresh, a benchmark's next run) reuses what the one
/// before freed instead of having the kernel zero it afresh, which on the
/// benchmark VM was a quarter of a ten-million-group GROUP BY.
pub const GIVE_BACK_IDLE: Duration = Duration::from_millis(500);

/// Installs `give_back`, called [`GIVE_BACK_IDLE`] after the last
/// statement that held at least [`GIVE_BACK_AFTER`] bytes ended, once no
/// such statement is running; the first installation wins.
pub fn set_give_back(give_back: fn()) {
    let _ = GIVE_BACK.set(give_back);
}

/// Statements running now whose accounted memory reached
/// [`GIVE_BACK_AFTER`].
static LARGE_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Times memory was given back since start.
static GIVEN_BACK: AtomicUsize = AtomicUsize::new(0);

/// How many times freed memory has been given back to the operating system
/// since the process started (`sluice_memory_given_back_total`).
pub fn times_given_back() -> usize {
    GIVEN_BACK.load(Ordering::Relaxed)
}

/// When memory is next due to be given back, if it is; the thread that
/// gives it back waits on the condition variable.
struct GiveBackSchedule {
    due: Mutex<Option<Instant>>,
    changed: Condvar,
}

fn schedule() -> &'static GiveBackSchedule {
    static SCHEDULE: OnceLock<GiveBackSchedule> = OnceLock::new();
    static THREAD: OnceLock<()> = OnceLock::new();
    let schedule = SCHEDULE.get_or_init(|| GiveBackSchedule {
        due: Mutex::new(None),
        changed: Condvar::new(),
    });
    THREAD.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("sluice-give-back".into())
            .spawn(move || give_back_when_due(schedule));
        if let Err(e) = spawned {
            tracing::warn!("no thread to give memory back: {e}");
        }
    });
    schedule
}

/// The giving-back thread: waits for a due time, and gives memory back
/// once it has passed with no large statement running (postponing by
/// [`GIVE_BACK_IDLE`] while one is).
fn give_back_when_due(schedule: &GiveBackSchedule) {
    let Ok(mut due) = schedule.due.lock() else {
        return;
    };
    loop {
        let Some(at) = *due else {
            match schedule.changed.wait(due) {
                Ok(d) => due = d,
                Err(_) => return,
            }
            continue;
        };
        let now = Instant::now();
        if now < at {
            match schedule.changed.wait_timeout(due, at - now) {
                Ok((d, _)) => due = d,
                Err(_) => return,
            }
            continue;
        }
        if LARGE_RUNNING.load(Ordering::Acquire) > 0 {
            *due = Some(now + GIVE_BACK_IDLE);
            continue;
        }
        *due = None;
        drop(due);
        if let Some(f) = GIVE_BACK.get() {
            f();
            GIVEN_BACK.fetch_add(1, Ordering::Relaxed);
        }
        due = match schedule.due.lock() {
            Ok(d) => d,
            Err(_) => return,
        };
    }
}

/// A statement's accounted memory reached [`GIVE_BACK_AFTER`]: until its
/// [`large_statement_ended`], memory is not given back.
pub fn large_statement_started() {
    LARGE_RUNNING.fetch_add(1, Ordering::AcqRel);
}

/// A statement that [`large_statement_started`] has ended: freed memory is
/// given back [`GIVE_BACK_IDLE`] from now, if no large statement is running
/// then and a way to give it back was installed. Why at all: mimalloc purges
/// freed memory lazily, on its heap's later allocations, and the heaps of a
/// large scan's helper threads end with the threads, so a GROUP BY over ten
/// million groups left a gigabyte resident for good.
pub fn large_statement_ended() {
    LARGE_RUNNING.fetch_sub(1, Ordering::AcqRel);
    if GIVE_BACK.get().is_none() {
        return;
    }
    let schedule = schedule();
    if let Ok(mut due) = schedule.due.lock() {
        *due = Some(Instant::now() + GIVE_BACK_IDLE);
        schedule.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_its_limit_and_no_further() {
        let pool = MemoryPool::new(100);
        assert!(pool.try_grow(60));
        assert!(!pool.try_grow(41));
        assert_eq!(pool.used(), 60);
        assert!(pool.try_grow(40));
        pool.shrink(100);
        assert_eq!(pool.used(), 0);
        pool.shrink(5);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn a_reservation_holds_its_bytes_until_dropped() {
        let pool = std::sync::Arc::new(MemoryPool::new(100));
        let held = PoolReservation::take(&pool, 70).expect("fits");
        assert!(PoolReservation::take(&pool, 31).is_none());
        assert_eq!(pool.used(), 70);
        drop(held);
        assert_eq!(pool.used(), 0);
    }
}
