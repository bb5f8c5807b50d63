//! Table schemas and the options of `CREATE TABLE ... WITH (...)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{parse_duration_micros, ColumnType};

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name (lower case unless it was quoted).
    pub name: String,
    /// Stored type.
    pub ty: ColumnType,
    /// False for NOT NULL and primary-key columns.
    pub nullable: bool,
}

/// The table options Sluice knows, besides [`SOURCE_OPTIONS`] and
/// `kafka.<setting>` (passed to the Kafka client as it is). Each one takes effect.
pub const KNOWN_OPTIONS: &[&str] = &[
    "time_column",
    "retention",
    "upsert",
    "comparison_column",
    "delete_column",
    "dedup",
    "dedup_window",
    "upsert_strategies",
    "segment_rows",
    "segment_bytes",
    "segment_age",
    "sort_key",
    "no_index",
    "kafka_brokers",
    "kafka_topic",
];

/// Options that only make sense with a source stream (`kafka_topic`); the
/// ingest crate checks their values.
pub const SOURCE_OPTIONS: &[&str] = &[
    "kafka_start",
    "kafka_offset_reset",
    "format",
    "column_paths",
    "timestamp_unit",
    "max_message_bytes",
    "max_mutable_bytes",
    "flush_interval",
];

/// Default retention: 180 days.
pub const DEFAULT_RETENTION: &str = "180 days";

/// Validated table options. `raw` keeps every option as written (lower-cased keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableOptions {
    /// The TIMESTAMP column used for retention, pruning and time bucketing;
    /// `None` for a table without one (a dimension table: restaurant names,
    /// a content catalogue), which keeps every row.
    pub time_column: Option<String>,
    /// Rows older than this (microseconds before now) are not kept or seen;
    /// `None` (`retention = 'none'`) keeps them forever.
    pub retention_micros: Option<i64>,
    /// Every option given in `WITH (...)`, key lower-cased, value as text.
    pub raw: BTreeMap<String, String>,
}

/// Default rows at which a mutable segment is sealed.
pub const DEFAULT_SEGMENT_ROWS: usize = 1_000_000;
/// Default size (approximate bytes of the values held) at which a mutable segment
/// is sealed: 256 MiB, so wide rows seal before they crowd memory.
pub const DEFAULT_SEGMENT_BYTES: usize = 256 << 20;
/// Default age at which a source partition's rows are sealed and committed.
pub const DEFAULT_FLUSH_INTERVAL: &str = "60 seconds";
/// Default age at which a mutable segment is sealed.
pub const DEFAULT_SEGMENT_AGE: &str = "10 minutes";

impl TableOptions {
    /// The value of an option as given, if it was.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(String::as_str)
    }

    /// Rows at which the mutable segment is sealed (`segment_rows`).
    pub fn segment_rows(&self) -> usize {
        self.get("segment_rows")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_SEGMENT_ROWS)
    }

    /// Approximate bytes of values at which the mutable segment is sealed
    /// (`segment_bytes`).
    pub fn segment_bytes(&self) -> usize {
        self.get("segment_bytes")
            .and_then(parse_size_bytes)
            .unwrap_or(DEFAULT_SEGMENT_BYTES)
    }

    /// True for a table fed by a source stream (`kafka_topic` is set).
    pub fn has_source(&self) -> bool {
        self.raw.contains_key("kafka_topic")
    }

    /// Age at which a source partition's consuming segment is sealed and its
    /// offset committed (`flush_interval`, default 60 s: a restart reads at
    /// most about this much again).
    pub fn flush_interval(&self) -> std::time::Duration {
        let micros =
            parse_duration_micros(self.get("flush_interval").unwrap_or(DEFAULT_FLUSH_INTERVAL))
                .unwrap_or(60_000_000);
        std::time::Duration::from_micros(micros.max(0) as u64)
    }

    /// Age at which the mutable segment is sealed (`segment_age`).
    pub fn segment_age(&self) -> std::time::Duration {
        let micros = parse_duration_micros(self.get("segment_age").unwrap_or(DEFAULT_SEGMENT_AGE))
            .unwrap_or(600_000_000);
        std::time::Duration::from_micros(micros.max(0) as u64)
    }
}

/// A table's definition: name, columns, primary key and options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDef>,
    /// Primary-key column names, empty if none.
    pub primary_key: Vec<String>,
    /// Validated options.
    pub options: TableOptions,
}

impl TableSchema {
    /// Builds and validates a schema: column names unique, primary-key columns exist
    /// (and become NOT NULL), options known and well-formed.
    ///
    /// # Errors
    /// [`Error::InvalidDefinition`] or [`Error::UnknownOption`] naming what is wrong.
    pub fn new(
        name: &str,
        mut columns: Vec<ColumnDef>,
        primary_key: Vec<String>,
        options: BTreeMap<String, String>,
    ) -> Result<Self> {
        if columns.is_empty() {
            return Err(Error::InvalidDefinition(format!(
                "table \"{name}\" must have at least one column"
            )));
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::InvalidDefinition(format!(
                    "column \"{}\" specified more than once",
                    c.name
                )));
            }
        }
        for key in &primary_key {
            let col = columns.iter_mut().find(|c| &c.name == key).ok_or_else(|| {
                Error::InvalidDefinition(format!("column \"{key}\" named in key does not exist"))
            })?;
            col.nullable = false;
        }
        let options = validate_options(&columns, &primary_key, options)?;
        // A row without a time cannot be placed in retention or in a time
        // range; like a source message without one, it is refused.
        if let Some(time) = columns
            .iter_mut()
            .find(|c| Some(&c.name) == options.time_column.as_ref())
        {
            time.nullable = false;
        }
        Ok(TableSchema {
            name: name.to_string(),
            columns,
            primary_key,
            options,
        })
    }

    /// Position of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The upsert or dedup settings, if the table has them.
    pub fn upsert_config(&self) -> Option<crate::upsert::UpsertConfig> {
        crate::upsert::UpsertConfig::from_options(
            &self.columns,
            &self.primary_key,
            self.time_column_index(),
            &self.options.raw,
        )
        .ok()
        .flatten()
    }

    /// Position of the time column, if the table has one.
    pub fn time_column_index(&self) -> Option<usize> {
        self.options
            .time_column
            .as_deref()
            .and_then(|t| self.column_index(t))
    }

    /// Positions of the columns that order rows inside a sealed segment: the
    /// `sort_key` option's, or the time column (so a time filter is a range);
    /// none for a table without either (rows stay in arrival order).
    pub fn sort_key_indices(&self) -> Vec<usize> {
        match self.options.get("sort_key") {
            Some(key) => key
                .split(',')
                .filter_map(|name| self.column_index(name.trim()))
                .collect(),
            None => self.time_column_index().into_iter().collect(),
        }
    }

    /// Whether sealed segments index column `c`: every TEXT and integer
    /// column unless the `no_index` option names it (the writer still leaves
    /// out an integer column whose values are mostly distinct).
    pub fn indexed(&self, c: usize) -> bool {
        let Some(column) = self.columns.get(c) else {
            return false;
        };
        let indexable = matches!(
            column.ty,
            ColumnType::Text | ColumnType::Integer | ColumnType::BigInt
        );
        let opted_out = self.options.get("no_index").is_some_and(|names| {
            names
                .split(',')
                .any(|n| n.trim().eq_ignore_ascii_case(&column.name))
        });
        indexable && !opted_out
    }

    /// The Arrow schema of the table as the query engine sees it (plain types).
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }
}

fn validate_options(
    columns: &[ColumnDef],
    primary_key: &[String],
    raw: BTreeMap<String, String>,
) -> Result<TableOptions> {
    for key in raw.keys() {
        let for_source = SOURCE_OPTIONS.contains(&key.as_str()) || key.starts_with("kafka.");
        if !KNOWN_OPTIONS.contains(&key.as_str()) && !for_source {
            return Err(Error::UnknownOption(key.clone()));
        }
        if for_source && !raw.contains_key("kafka_topic") {
            return Err(Error::InvalidDefinition(format!(
                "option {key} needs a source: set kafka_topic and kafka_brokers"
            )));
        }
    }
    if raw.contains_key("kafka_topic") != raw.contains_key("kafka_brokers") {
        return Err(Error::InvalidDefinition(
            "a Kafka source needs both kafka_brokers and kafka_topic".into(),
        ));
    }
    let column = |option: &str| -> Result<Option<&ColumnDef>> {
        match raw.get(option) {
            None => Ok(None),
            Some(name) => columns
                .iter()
                .find(|c| &c.name == name)
                .map(Some)
                .ok_or_else(|| {
                    Error::InvalidDefinition(format!(
                        "option {option} names column \"{name}\", which does not exist"
                    ))
                }),
        }
    };
    let time = column("time_column")?;
    if let Some(time) = time.filter(|t| !t.ty.is_timestamp()) {
        return Err(Error::InvalidDefinition(format!(
            "time_column \"{}\" must be a TIMESTAMP or TIMESTAMPTZ column, not {}",
            time.name,
            time.ty.sql_name()
        )));
    }
    if time.is_none() {
        // Retention, a source's arrival times, and upsert's and dedup's
        // versions and windows are all times: they need the column.
        let needs_time = ["kafka_topic", "upsert", "dedup"]
            .into_iter()
            .chain(
                raw.get("retention")
                    .filter(|r| !r.trim().eq_ignore_ascii_case("none"))
                    .map(|_| "retention"),
            )
            .find(|o| raw.contains_key(*o));
        if let Some(option) = needs_time {
            return Err(Error::InvalidDefinition(format!(
                "option {option} needs a time column: WITH (time_column = '<a TIMESTAMP column>')"
            )));
        }
    }
    let retention_text = match time {
        Some(_) => raw
            .get("retention")
            .map_or(DEFAULT_RETENTION, String::as_str),
        None => "none",
    };
    let retention_micros = if retention_text.trim().eq_ignore_ascii_case("none") {
        None
    } else {
        Some(parse_duration_micros(retention_text).map_err(|_| {
            Error::InvalidDefinition(format!(
                "retention '{retention_text}' is not a positive interval such as '180 days', or 'none'"
            ))
        })?)
    };
    if let Some(sort_key) = raw.get("sort_key") {
        for name in sort_key.split(',').map(str::trim) {
            if !columns.iter().any(|c| c.name == name) {
                return Err(Error::InvalidDefinition(format!(
                    "option sort_key names column \"{name}\", which does not exist"
                )));
            }
        }
    }
    if let Some(names) = raw.get("no_index") {
        for name in names.split(',').map(str::trim) {
            let Some(column) = columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)) else {
                return Err(Error::InvalidDefinition(format!(
                    "option no_index names column \"{name}\", which does not exist"
                )));
            };
            if !matches!(
                column.ty,
                ColumnType::Text | ColumnType::Integer | ColumnType::BigInt
            ) {
                return Err(Error::InvalidDefinition(format!(
                    "option no_index names column \"{name}\" of type {}, which is never indexed",
                    column.ty.sql_name()
                )));
            }
        }
    }
    let time_index = time.and_then(|t| columns.iter().position(|c| c.name == t.name));
    crate::upsert::UpsertConfig::from_options(columns, primary_key, time_index, &raw)?;
    for key in ["flush_interval"] {
        if let Some(age) = raw.get(key) {
            parse_duration_micros(age).map_err(|_| {
                Error::InvalidDefinition(format!(
                    "{key} '{age}' is not a positive interval such as '60 seconds'"
                ))
            })?;
        }
    }
    for key in ["max_message_bytes", "max_mutable_bytes"] {
        if let Some(size) = raw.get(key) {
            parse_size_bytes(size).ok_or_else(|| {
                Error::InvalidDefinition(format!(
                    "{key} '{size}' is not a positive size such as '1MB' or '1000000'"
                ))
            })?;
        }
    }
    if let Some(n) = raw.get("segment_rows") {
        match n.trim().parse::<u64>() {
            Ok(v) if v > 0 => {}
            _ => {
                return Err(Error::InvalidDefinition(format!(
                    "segment_rows must be a positive integer, not '{n}'"
                )))
            }
        }
    }
    if let Some(size) = raw.get("segment_bytes") {
        parse_size_bytes(size).ok_or_else(|| {
            Error::InvalidDefinition(format!(
                "segment_bytes '{size}' is not a positive size such as '256MB' or '1048576'"
            ))
        })?;
    }
    if let Some(age) = raw.get("segment_age") {
        parse_duration_micros(age).map_err(|_| {
            Error::InvalidDefinition(format!(
                "segment_age '{age}' is not a positive interval such as '10 minutes'"
            ))
        })?;
    }
    if let Some(f) = raw.get("format") {
        if !f.eq_ignore_ascii_case("json") {
            return Err(Error::InvalidDefinition(format!(
                "format '{f}' is not supported; supported: 'json'"
            )));
        }
    }
    Ok(TableOptions {
        time_column: time.map(|t| t.name.clone()),
        retention_micros,
        raw,
    })
}

/// A size such as `1048576`, `512kB`, `256MB` or `1GB` (units of 1024, as
/// PostgreSQL's settings take them) in bytes; `None` unless it is one and positive.
pub fn parse_size_bytes(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number.parse().ok()?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale).filter(|bytes| *bytes > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MICROS_PER_DAY;

    fn cols() -> Vec<ColumnDef> {
        vec![
            ColumnDef {
                name: "ts".into(),
                ty: ColumnType::Timestamp,
                nullable: true,
            },
            ColumnDef {
                name: "k".into(),
                ty: ColumnType::Text,
                nullable: true,
            },
        ]
    }

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn time_column_must_be_a_timestamp_and_is_needed_by_times() {
        let dimension = TableSchema::new("t", cols(), vec![], opts(&[])).unwrap();
        assert_eq!(dimension.time_column_index(), None);
        assert_eq!(dimension.options.retention_micros, None);
        for needs_time in [
            opts(&[("retention", "30 days")]),
            opts(&[("dedup", "true")]),
            opts(&[("upsert", "full")]),
            opts(&[("kafka_topic", "t"), ("kafka_brokers", "b")]),
        ] {
            let e = TableSchema::new("t", cols(), vec!["k".into()], needs_time.clone());
            assert!(
                matches!(&e, Err(Error::InvalidDefinition(m)) if m.contains("needs a time column")),
                "{needs_time:?}: {e:?}"
            );
        }
        assert!(TableSchema::new("t", cols(), vec![], opts(&[("retention", "none")])).is_ok());
        assert!(TableSchema::new("t", cols(), vec![], opts(&[("time_column", "k")])).is_err());
        let s = TableSchema::new(
            "t",
            cols(),
            vec!["k".into()],
            opts(&[("time_column", "ts")]),
        )
        .unwrap();
        assert_eq!(s.options.retention_micros, Some(180 * MICROS_PER_DAY));
        assert!(
            !s.columns[1].nullable,
            "primary key columns become NOT NULL"
        );
    }

    #[test]
    fn unknown_options_are_named() {
        let err = TableSchema::new(
            "t",
            cols(),
            vec![],
            opts(&[("time_column", "ts"), ("colour", "red")]),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "unrecognized table option \"colour\"");
        let sourced = opts(&[
            ("time_column", "ts"),
            ("kafka_topic", "orders"),
            ("kafka_brokers", "localhost:9092"),
            ("kafka.security.protocol", "plaintext"),
            ("segment_rows", "10"),
        ]);
        assert!(TableSchema::new("t", cols(), vec![], sourced).is_ok());
        let unsourced = opts(&[("time_column", "ts"), ("kafka.acks", "all")]);
        assert!(TableSchema::new("t", cols(), vec![], unsourced).is_err());
    }

    #[test]
    fn segment_bytes_takes_a_size_with_units_of_1024() {
        let with = |size: &str| {
            TableSchema::new(
                "t",
                cols(),
                vec![],
                opts(&[("time_column", "ts"), ("segment_bytes", size)]),
            )
        };
        assert_eq!(with("256MB").unwrap().options.segment_bytes(), 256 << 20);
        assert_eq!(with(" 512 kB ").unwrap().options.segment_bytes(), 512 << 10);
        assert_eq!(with("4096").unwrap().options.segment_bytes(), 4096);
        for bad in ["0", "lots", "12 parsecs", "-1MB", "99999999999999999999GB"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("segment_bytes"), "{bad}: {err}");
        }
        let default = TableSchema::new("t", cols(), vec![], opts(&[("time_column", "ts")]));
        assert_eq!(
            default.unwrap().options.segment_bytes(),
            DEFAULT_SEGMENT_BYTES
        );
    }
}
