//! Sluice ingestion: a table's Kafka source read into its consuming segments.
//!
//! [`Ingestion`] starts one [`consumer::TableConsumer`] thread per source table
//! and stops it on DROP; [`decode::JsonDecoder`] turns messages into rows; the
//! storage crate's seal commits each partition's rows, dead letters and next
//! offset together, so Kafka is the write-ahead log of these tables.

pub mod config;
pub mod consumer;
pub mod decode;
pub mod metrics;
pub mod produce;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use config::SourceConfig;
pub use decode::JsonDecoder;
use sluice_storage::{Result, SourceHooks, Table, TableSchema};

/// Reads every source table of a catalog, one consumer thread per table.
/// Register it with [`sluice_storage::Catalog::set_source_hooks`].
pub struct Ingestion {
    /// False for a database opened to run statements only: sources are checked
    /// but not read.
    read: bool,
    /// Running consumers by table directory (unique per table, never reused).
    running: Mutex<HashMap<std::path::PathBuf, Running>>,
}

impl Ingestion {
    /// Checks new tables' sources and reads every source table.
    pub fn new() -> Self {
        Ingestion {
            read: true,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Checks new tables' sources but reads none.
    pub fn check_only() -> Self {
        Ingestion {
            read: false,
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for Ingestion {
    fn default() -> Self {
        Self::new()
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl SourceHooks for Ingestion {
    fn check(&self, schema: &TableSchema) -> Result<()> {
        SourceConfig::from_schema(schema).map(|_| ())
    }

    fn start(&self, table: &Arc<Table>) {
        if !self.read {
            return;
        }
        let config = match SourceConfig::from_schema(table.schema()) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(table = %table.name(), error = %e, "source not started");
                return;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = consumer::TableConsumer::new(Arc::clone(table), config, Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name(format!("sluice-ingest-{}", table.name()))
            .spawn(move || consumer.run());
        match spawned {
            Ok(handle) => {
                let previous = self
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(table.dir().to_path_buf(), Running { stop, handle });
                if let Some(old) = previous {
                    old.stop.store(true, Ordering::Relaxed);
                    let _ = old.handle.join();
                }
            }
            Err(e) => {
                tracing::error!(table = %table.name(), error = %e, "could not start the consumer thread")
            }
        }
    }

    fn stop(&self, table: &Table) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(table.dir());
        if let Some(r) = running {
            r.stop.store(true, Ordering::Relaxed);
            if r.handle.join().is_err() {
                tracing::error!(table = %table.name(), "the consumer thread panicked");
            }
        }
    }
}

impl Drop for Ingestion {
    fn drop(&mut self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        for r in running.values() {
            r.stop.store(true, Ordering::Relaxed);
        }
        for (_, r) in running {
            let _ = r.handle.join();
        }
    }
}
