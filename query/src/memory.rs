//! The server-wide query memory pool: every statement's accounted memory
//! (hash tables, sorts, joins, windows, materialised scan output) is drawn
//! from one budget, so many statements together stay bounded and the one
//! that would go past it fails with 53200 instead of the process being
//! killed for running out of memory.

use std::sync::atomic::{AtomicUsize, Ordering};

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
static GIVE_BACK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// A statement whose accounted memory peaked at this many bytes or more
/// gives freed memory back when it ends.
pub const GIVE_BACK_AFTER: usize = 64 << 20;

/// Installs `give_back`, called when a statement that held at least
/// [`GIVE_BACK_AFTER`] bytes ends; the first installation wins.
pub fn set_give_back(give_back: fn()) {
    let _ = GIVE_BACK.set(give_back);
}

/// Gives freed memory back to the operating system, if a way to was
/// installed. Why a statement calls it: mimalloc purges freed memory lazily,
/// on its heap's later allocations, and the heaps of a large scan's helper
/// threads end with the threads, so a GROUP BY over ten million groups left
/// a gigabyte resident for good.
pub fn give_back() {
    if let Some(f) = GIVE_BACK.get() {
        f();
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
