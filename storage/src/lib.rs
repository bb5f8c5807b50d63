//! Sluice storage: column types, table schemas and options, mutable segments, the
//! write-ahead file and the persisted table catalog.
//!
//! This crate knows nothing of SQL or Kafka. It hands segment data to the query engine
//! as Arrow [`RecordBatch`](arrow::record_batch::RecordBatch)es, one per block, and takes
//! rows in through one append path ([`Table::append`]).

pub mod block_index;
pub mod catalog;
pub mod check;
pub mod clock;
pub mod error;
pub mod fs;
pub mod manifest;
pub mod mutable_segment;
#[cfg(test)]
mod power_loss;
pub mod schema;
pub mod segment;
pub mod source;
pub mod table;
#[cfg(test)]
mod testing;
pub mod types;
pub mod upsert;
pub mod wal;
pub mod zone;

pub use catalog::{Catalog, SourceHooks};
pub use error::{Error, Result};
pub use fs::Environment;
pub use mutable_segment::{MutableSegment, BLOCK_ROWS};
pub use schema::{parse_size_bytes, ColumnDef, TableOptions, TableSchema};
pub use source::{DeadLetter, PartitionStatus};
pub use table::{
    RetentionStats, SegmentSnapshot, SegmentState, Table, TableSnapshot, UpsertReport, WalStats,
};
pub use types::{ColumnType, Interval, Value};
