//! A table's source, as its `CREATE TABLE ... WITH (...)` options describe it.

use sluice_storage::{parse_size_bytes, Error, Result, TableSchema};

/// Where a partition with no committed offset starts (`kafka_start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message the broker still has (the default).
    Earliest,
    /// Only messages produced from now on.
    Latest,
}

/// What to do when the committed offset is no longer on the broker
/// (`kafka_offset_reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    /// Continue from the oldest message still there (the default).
    Earliest,
    /// Continue from the newest.
    Latest,
    /// Stop the partition and report it.
    Fail,
}

/// How epoch numbers in a timestamp field are read (`timestamp_unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampUnit {
    /// By magnitude: seconds below 10^11, milliseconds below 10^14,
    /// microseconds above (each covers dates up to the year 5138).
    Auto,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
}

/// Default `max_message_bytes`: a larger message is a dead letter.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;
/// Default `max_mutable_bytes`: consuming pauses while a table's unsealed
/// source rows hold more than this.
pub const DEFAULT_MAX_MUTABLE_BYTES: usize = 512 << 20;

/// A table's Kafka source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    /// `kafka_brokers`: `host:port[,...]`.
    pub brokers: String,
    /// `kafka_topic`.
    pub topic: String,
    /// `kafka_start`.
    pub start: StartAt,
    /// `kafka_offset_reset`.
    pub offset_reset: OffsetReset,
    /// `"kafka.<setting>"` options, passed to librdkafka as they are.
    pub client_settings: Vec<(String, String)>,
    /// `column_paths`: a column filled from a nested field, `col=a.b.c`.
    pub column_paths: Vec<(String, Vec<String>)>,
    /// `timestamp_unit`.
    pub timestamp_unit: TimestampUnit,
    /// `max_message_bytes`.
    pub max_message_bytes: usize,
    /// `max_mutable_bytes`.
    pub max_mutable_bytes: usize,
}

impl SourceConfig {
    /// The source of `schema`, `None` for a table without one.
    ///
    /// # Errors
    /// [`Error::InvalidDefinition`] naming the option whose value is wrong.
    pub fn from_schema(schema: &TableSchema) -> Result<Option<Self>> {
        let opts = &schema.options;
        let (Some(brokers), Some(topic)) = (opts.get("kafka_brokers"), opts.get("kafka_topic"))
        else {
            return Ok(None);
        };
        let bad = |key: &str, value: &str, want: &str| {
            Error::InvalidDefinition(format!("{key} must be {want}, not '{value}'"))
        };
        if brokers.trim().is_empty() || topic.trim().is_empty() {
            return Err(Error::InvalidDefinition(
                "kafka_brokers and kafka_topic must not be empty".into(),
            ));
        }
        let start = match opts
            .get("kafka_start")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("earliest") => StartAt::Earliest,
            Some("latest") => StartAt::Latest,
            Some(v) => return Err(bad("kafka_start", v, "'earliest' or 'latest'")),
        };
        let offset_reset = match opts
            .get("kafka_offset_reset")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("earliest") => OffsetReset::Earliest,
            Some("latest") => OffsetReset::Latest,
            Some("fail") => OffsetReset::Fail,
            Some(v) => {
                return Err(bad(
                    "kafka_offset_reset",
                    v,
                    "'earliest', 'latest' or 'fail'",
                ))
            }
        };
        let timestamp_unit = match opts
            .get("timestamp_unit")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("auto") => TimestampUnit::Auto,
            Some("s") => TimestampUnit::Seconds,
            Some("ms") => TimestampUnit::Millis,
            Some("us") => TimestampUnit::Micros,
            Some(v) => return Err(bad("timestamp_unit", v, "'auto', 's', 'ms' or 'us'")),
        };
        let mut column_paths = Vec::new();
        if let Some(paths) = opts.get("column_paths") {
            for part in paths.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (column, path) = part
                    .split_once('=')
                    .ok_or_else(|| bad("column_paths", part, "'column=field.field, ...'"))?;
                let column = column.trim().to_string();
                if schema.column_index(&column).is_none() {
                    return Err(Error::InvalidDefinition(format!(
                        "column_paths names column \"{column}\", which does not exist"
                    )));
                }
                let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
                if path.iter().any(String::is_empty) {
                    return Err(bad("column_paths", part, "'column=field.field, ...'"));
                }
                column_paths.push((column, path));
            }
        }
        let size = |key: &str, default: usize| -> Result<usize> {
            match opts.get(key) {
                None => Ok(default),
                Some(v) => parse_size_bytes(v).ok_or_else(|| bad(key, v, "a positive size")),
            }
        };
        let client_settings = opts
            .raw
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("kafka.").map(|s| (s.to_string(), v.clone())))
            .collect();
        Ok(Some(SourceConfig {
            brokers: brokers.trim().to_string(),
            topic: topic.trim().to_string(),
            start,
            offset_reset,
            client_settings,
            column_paths,
            timestamp_unit,
            max_message_bytes: size("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)?,
            max_mutable_bytes: size("max_mutable_bytes", DEFAULT_MAX_MUTABLE_BYTES)?,
        }))
    }
}
