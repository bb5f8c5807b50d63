//! Sluice's query engine: SQL (via `sqlparser`) is bound into a logical plan and
//! executed over Arrow record batches. Scans, filters and aggregations over a table's
//! segments run on a parallel fast path ([`scan`]); everything above the scan uses the
//! Arrow compute kernels.

pub mod activity;
pub mod aggregate;
pub mod array;
pub mod binder;
pub mod builtins;
pub mod cast;
pub mod catalog;
pub mod context;
pub mod engine;
pub mod error;
pub mod eval;
pub mod exec;
pub mod format;
pub mod functions;
pub mod join;
pub mod logical;
pub mod memory;
pub mod numeric;
pub mod optimize;
pub mod packed;
pub mod pool;
pub mod prune;
pub mod reuse;
pub mod scan;
pub mod session;
pub mod set_functions;
pub mod stream;
pub mod subquery;
pub mod window;

pub use binder::{Param, STATEMENT_STACK_BYTES};
pub use context::{QueryContext, QueryOptions};
pub use engine::{parse_sql, Description, Engine, StatementResult, Streamed};
pub use error::{Error, Result};
pub use session::Session;
pub use stream::RowStream;
