//! JSON messages to rows. Pure: bytes in, a row or the reason there is none out.
//!
//! A message is parsed whole into `sonic-rs`'s document (which validates it all,
//! lone surrogate escapes and trailing bytes included), then its fields are
//! matched to columns through a tree built once per table. Measured on a
//! 220-byte order event: the document takes 214 ns, walking the fields lazily
//! without one 405 ns, so the document is both the stricter and the faster way.

use sluice_storage::types::{parse_timestamp, parse_timestamptz};
use sluice_storage::{ColumnType, TableSchema, Value};
use sonic_rs::{JsonContainerTrait, JsonNumberTrait, JsonValueTrait};

use crate::config::{SourceConfig, TimestampUnit};

/// Turns one table's JSON messages into rows.
pub struct JsonDecoder {
    types: Vec<ColumnType>,
    names: Vec<String>,
    fields: FieldTree,
    /// Columns a message must give a value for: the time column and every NOT
    /// NULL (primary-key) column.
    required: Vec<usize>,
    timestamp_unit: TimestampUnit,
    time_column: usize,
}

/// Which column (or nested object) each field name leads to: exact names
/// first, then names compared case-insensitively. A table has a handful of
/// columns, so a scan of short strings beats hashing every key of every
/// message.
#[derive(Default)]
struct FieldTree {
    fields: Vec<(String, Node)>,
}

enum Node {
    Column(usize),
    Object(FieldTree),
}

impl FieldTree {
    fn insert(&mut self, path: &[String], column: usize) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            self.fields.push((first.clone(), Node::Column(column)));
            return;
        }
        let existing = self
            .fields
            .iter()
            .position(|(name, node)| name == first && matches!(node, Node::Object(_)));
        let at = existing.unwrap_or_else(|| {
            self.fields
                .push((first.clone(), Node::Object(FieldTree::default())));
            self.fields.len() - 1
        });
        if let Node::Object(tree) = &mut self.fields[at].1 {
            tree.insert(rest, column);
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .or_else(|| {
                self.fields
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(key))
            })
            .map(|(_, node)| node)
    }
}

impl JsonDecoder {
    /// A decoder for `schema`'s columns: each filled from the field of its name,
    /// or from the nested field `config.column_paths` gives it.
    pub fn new(schema: &TableSchema, config: &SourceConfig) -> Self {
        let mut fields = FieldTree::default();
        for (i, column) in schema.columns.iter().enumerate() {
            let path = config
                .column_paths
                .iter()
                .find(|(c, _)| *c == column.name)
                .map_or_else(|| vec![column.name.clone()], |(_, p)| p.clone());
            fields.insert(&path, i);
        }
        JsonDecoder {
            types: schema.columns.iter().map(|c| c.ty).collect(),
            names: schema.columns.iter().map(|c| c.name.clone()).collect(),
            fields,
            required: schema
                .columns
                .iter()
                .enumerate()
                .filter(|(i, c)| Some(*i) == schema.time_column_index() || !c.nullable)
                .map(|(i, _)| i)
                .collect(),
            time_column: schema.time_column_index().unwrap_or(usize::MAX),
            timestamp_unit: config.timestamp_unit,
        }
    }

    /// The row a message holds, one value per column (NULL for a field that is
    /// missing or null), each of its column's type and within its range, with
    /// every NOT NULL column filled: ready to append as it is.
    ///
    /// # Errors
    /// Why the message is a dead letter: not UTF-8, not a JSON object, a value
    /// that does not fit its column, or no time.
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<Value>, String> {
        let text = std::str::from_utf8(payload).map_err(|e| format!("not valid UTF-8: {e}"))?;
        let doc: sonic_rs::Value =
            sonic_rs::from_str(text).map_err(|e| format!("not valid JSON: {}", first_line(&e)))?;
        if !doc.is_object() {
            return Err("not a JSON object".into());
        }
        let mut row = vec![Value::Null; self.types.len()];
        self.fill(&doc, &self.fields, &mut row)?;
        for &i in &self.required {
            if row[i] == Value::Null {
                let what = if i == self.time_column {
                    "the time column"
                } else {
                    "the NOT NULL column"
                };
                return Err(format!("no value for {what} \"{}\"", self.names[i]));
            }
        }
        Ok(row)
    }

    fn fill(
        &self,
        object: &sonic_rs::Value,
        tree: &FieldTree,
        row: &mut [Value],
    ) -> Result<(), String> {
        let Some(object) = object.as_object() else {
            return Ok(());
        };
        for (key, value) in object.iter() {
            match tree.get(key) {
                Some(Node::Column(i)) => {
                    row[*i] = self.value(value, self.types[*i]).map_err(|e| {
                        format!("field \"{key}\" (column \"{}\"): {e}", self.names[*i])
                    })?;
                }
                Some(Node::Object(sub)) => self.fill(value, sub, row)?,
                None => {}
            }
        }
        Ok(())
    }

    fn value(&self, v: &sonic_rs::Value, ty: ColumnType) -> Result<Value, String> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        if v.is_object() || v.is_array() {
            return Err(format!(
                "expected {}, got a JSON {}",
                ty.sql_name(),
                kind(v)
            ));
        }
        match ty {
            ColumnType::Boolean => match (v.as_bool(), v.as_str()) {
                (Some(b), _) => Ok(Value::Bool(b)),
                (_, Some(s)) => sluice_storage::types::parse_bool(s)
                    .map(Value::Bool)
                    .map_err(|_| format!("\"{s}\" is not a boolean")),
                _ => Err(format!("expected boolean, got {}", kind(v))),
            },
            ColumnType::Integer | ColumnType::BigInt => {
                let n = integer(v)?;
                if ty == ColumnType::Integer && i32::try_from(n).is_err() {
                    return Err(format!("{n} is out of range for integer"));
                }
                Ok(Value::Int(n))
            }
            ColumnType::Double => match (v.as_f64(), v.as_str()) {
                (Some(f), _) => Ok(Value::Float(f)),
                (_, Some(s)) => s
                    .trim()
                    .parse::<f64>()
                    .map(Value::Float)
                    .map_err(|_| format!("\"{s}\" is not a number")),
                _ => Err(format!("expected double precision, got {}", kind(v))),
            },
            ColumnType::Text => match v.as_str() {
                Some(s) => Ok(Value::Text(s.to_string())),
                None => Ok(Value::Text(v.to_string())),
            },
            ColumnType::Timestamp | ColumnType::TimestampTz => self.timestamp(v),
            // A JSON number's text (or a string) read exactly, rounded to the
            // column's scale; past its precision the message is a dead letter.
            ColumnType::Numeric { .. } => {
                let text = match v.as_str() {
                    Some(s) => s.to_string(),
                    None if v.is_number() => v.to_string(),
                    None => return Err(format!("expected {}, got {}", ty.sql_name(), kind(v))),
                };
                Value::Text(text.clone())
                    .coerce_to(ty, "")
                    .map_err(|e| format!("\"{text}\" as {}: {e}", ty.sql_name()))
            }
        }
    }

    /// RFC 3339 (`Z` or an offset, kept as UTC) or PostgreSQL's text form; a
    /// number is an epoch time in `timestamp_unit`.
    fn timestamp(&self, v: &sonic_rs::Value) -> Result<Value, String> {
        if let Some(s) = v.as_str() {
            let micros = match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) => t.timestamp_micros(),
                Err(_) => parse_timestamptz(s, sluice_storage::zone::Zone::UTC)
                    .or_else(|_| parse_timestamp(s))
                    .map_err(|_| format!("\"{s}\" is not a timestamp"))?,
            };
            return Ok(Value::Timestamp(micros));
        }
        let Some(number) = v.as_number() else {
            return Err(format!("expected a timestamp, got {}", kind(v)));
        };
        let epoch = number.as_f64().ok_or("not a number")?;
        let scale = match self.timestamp_unit {
            TimestampUnit::Seconds => 1e6,
            TimestampUnit::Millis => 1e3,
            TimestampUnit::Micros => 1.0,
            TimestampUnit::Auto if epoch.abs() < 1e11 => 1e6,
            TimestampUnit::Auto if epoch.abs() < 1e14 => 1e3,
            TimestampUnit::Auto => 1.0,
        };
        let micros = match number.as_i64() {
            Some(i) => i.checked_mul(scale as i64),
            None => Some((epoch * scale).round() as i64).filter(|_| (epoch * scale).abs() < 9.2e18),
        };
        micros
            .map(Value::Timestamp)
            .ok_or_else(|| format!("{epoch} is out of range for a timestamp"))
    }
}

/// A whole number from a JSON integer, a float with no fraction, or a numeric
/// string: only conversions that lose nothing.
fn integer(v: &sonic_rs::Value) -> Result<i64, String> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    if let Some(f) = v.as_f64() {
        if f.fract() == 0.0 && f.abs() < 9.2e18 {
            return Ok(f as i64);
        }
        return Err(format!("{f} is not a whole number in range"));
    }
    if let Some(s) = v.as_str() {
        return s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("\"{s}\" is not an integer"));
    }
    Err(format!("expected an integer, got {}", kind(v)))
}

fn kind(v: &sonic_rs::Value) -> &'static str {
    if v.is_object() {
        "object"
    } else if v.is_array() {
        "array"
    } else if v.is_str() {
        "string"
    } else if v.is_boolean() {
        "boolean"
    } else if v.is_number() {
        "number"
    } else {
        "null"
    }
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_storage::ColumnDef;

    use super::*;

    fn decoder(extra: &[(&str, &str)]) -> JsonDecoder {
        let columns = [
            ("event_time", ColumnType::Timestamp),
            ("order_id", ColumnType::Text),
            ("qty", ColumnType::Integer),
            ("amount", ColumnType::Double),
            ("paid", ColumnType::Boolean),
            ("lat", ColumnType::Double),
        ]
        .into_iter()
        .map(|(n, ty)| ColumnDef {
            name: n.into(),
            ty,
            nullable: true,
        })
        .collect();
        let mut options: BTreeMap<String, String> = [
            ("time_column", "event_time"),
            ("kafka_brokers", "b:9092"),
            ("kafka_topic", "t"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        options
            .entry("column_paths".into())
            .or_insert_with(|| "lat=courier.pos.lat".into());
        let schema = TableSchema::new("orders", columns, vec![], options).unwrap();
        let config = SourceConfig::from_schema(&schema).unwrap().unwrap();
        JsonDecoder::new(&schema, &config)
    }

    fn micros(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn fields_map_by_name_case_and_path_with_lossless_coercions() {
        let row = decoder(&[])
            .decode(
                br#"{"event_time": "2024-05-01T12:00:00+02:00", "ORDER_ID": "o-1", "qty": "3",
                "amount": 12, "paid": true, "courier": {"pos": {"lat": 1.5}}, "ignored": [1]}"#,
            )
            .unwrap();
        assert_eq!(
            row,
            vec![
                Value::Timestamp(micros("2024-05-01T10:00:00Z")),
                Value::Text("o-1".into()),
                Value::Int(3),
                Value::Float(12.0),
                Value::Bool(true),
                Value::Float(1.5),
            ]
        );
        let row = decoder(&[])
            .decode(br#"{"event_time": 1714564800, "qty": 2.0}"#)
            .unwrap();
        assert_eq!(row[0], Value::Timestamp(micros("2024-05-01T12:00:00Z")));
        assert_eq!(row[2], Value::Int(2));
        assert_eq!(row[1], Value::Null);
    }

    #[test]
    fn numeric_columns_read_json_numbers_exactly() {
        let columns = [
            ("event_time", ColumnType::Timestamp),
            (
                "price",
                ColumnType::Numeric {
                    precision: 6,
                    scale: 2,
                },
            ),
        ]
        .into_iter()
        .map(|(n, ty)| ColumnDef {
            name: n.into(),
            ty,
            nullable: true,
        })
        .collect();
        let options = [
            ("time_column", "event_time"),
            ("kafka_brokers", "b:9092"),
            ("kafka_topic", "t"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let schema = TableSchema::new("p", columns, vec![], options).unwrap();
        let config = SourceConfig::from_schema(&schema).unwrap().unwrap();
        let d = JsonDecoder::new(&schema, &config);
        let price = |price: &str| {
            let json = format!(r#"{{"event_time": 1714564800, "price": {price}}}"#);
            d.decode(json.as_bytes()).map(|row| row[1].clone())
        };
        let numeric = |value| Value::Numeric { value, scale: 2 };
        assert_eq!(price("10.05"), Ok(numeric(1005)));
        assert_eq!(price(r#""0.125""#), Ok(numeric(13)));
        assert_eq!(price("7"), Ok(numeric(700)));
        // Past numeric(6,2): the message is a dead letter, with the reason.
        let err = price("12345.6").unwrap_err();
        assert!(err.contains("numeric field overflow"), "{err}");
        assert!(price(r#""ten""#).is_err());
    }

    #[test]
    fn epoch_units_by_magnitude_or_as_configured() {
        let d = decoder(&[]);
        let at = micros("2024-05-01T12:00:00Z");
        for epoch in ["1714564800", "1714564800000", "1714564800000000"] {
            let row = d
                .decode(format!("{{\"event_time\": {epoch}}}").as_bytes())
                .unwrap();
            assert_eq!(row[0], Value::Timestamp(at), "{epoch}");
        }
        let ms = decoder(&[("timestamp_unit", "ms")]);
        assert_eq!(
            ms.decode(br#"{"event_time": 1714564800}"#).unwrap()[0],
            Value::Timestamp(1_714_564_800_000)
        );
    }

    #[test]
    fn bad_messages_say_why() {
        let d = decoder(&[]);
        let cases: [(&[u8], &str); 8] = [
            (
                b"{\"event_time\": 1, \"order_id\": \"\xff\"}",
                "not valid UTF-8",
            ),
            (
                br#"{"event_time": 1, "order_id": "\ud800"}"#,
                "not valid JSON",
            ),
            (br#"{"event_time": 1,"#, "not valid JSON"),
            (br#"[1, 2]"#, "not a JSON object"),
            (br#"{"order_id": "o-1"}"#, "no value for the time column"),
            (br#"{"event_time": 1, "qty": 2.5}"#, "not a whole number"),
            (
                br#"{"event_time": 1, "qty": 3000000000}"#,
                "out of range for integer",
            ),
            (br#"{"event_time": "yesterday"}"#, "is not a timestamp"),
        ];
        for (payload, why) in cases {
            let err = d.decode(payload).unwrap_err();
            assert!(
                err.contains(why),
                "{}: {err}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
