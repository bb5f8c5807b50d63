//! The wall clock retention reads, injectable so that tests move time forward
//! instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// Now, in microseconds since the Unix epoch (UTC).
    fn now_micros(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The system clock moved by an adjustable offset: a test advances it by 181
/// days and retention acts as it would half a year later.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_micros: AtomicI64,
}

impl OffsetClock {
    /// A clock that starts at the system time.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Moves the clock forward (or back, for a negative amount).
    pub fn advance_micros(&self, micros: i64) {
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_micros(&self) -> i64 {
        SystemClock
            .now_micros()
            .saturating_add(self.offset_micros.load(Ordering::SeqCst))
    }
}
