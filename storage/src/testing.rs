//! Helpers shared by this crate's tests.

use crate::schema::{ColumnDef, TableSchema};
use crate::types::ColumnType;

/// A table `name (ts TIMESTAMP, v BIGINT)` with `time_column = 'ts'`,
/// `retention = 'none'` (test rows are from 1970) and the `options` given.
pub(crate) fn ts_v_schema(name: &str, options: &[(&str, &str)]) -> TableSchema {
    let columns = vec![
        ColumnDef {
            name: "ts".into(),
            ty: ColumnType::Timestamp,
            nullable: true,
        },
        ColumnDef {
            name: "v".into(),
            ty: ColumnType::BigInt,
            nullable: true,
        },
    ];
    let defaults = [("time_column", "ts"), ("retention", "none")];
    let options = defaults
        .iter()
        .filter(|(k, _)| !options.iter().any(|(o, _)| o == k))
        .chain(options)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TableSchema::new(name, columns, vec![], options).expect("a valid test schema")
}

pub(crate) mod simulated_disk;
