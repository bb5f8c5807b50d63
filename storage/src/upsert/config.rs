//! A table's upsert and dedup settings, read from its `WITH (...)` options.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::schema::ColumnDef;
use crate::types::{parse_bool, parse_duration_micros, ColumnType};

/// What a row with a key already stored does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsertMode {
    /// The newest row replaces the stored one.
    Full,
    /// The newest row is merged into the stored one, column by column.
    Partial,
}

/// How a partial upsert merges one column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The new value, NULL included.
    Overwrite,
    /// The new value unless it is NULL (the default).
    OverwriteNonNull,
    /// The stored value plus the new one (numbers).
    Increment,
    /// The larger of the two.
    Max,
    /// The smaller of the two.
    Min,
    /// The first value ever stored is kept.
    Ignore,
}

impl Strategy {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "overwrite" => Strategy::Overwrite,
            "overwrite_non_null" => Strategy::OverwriteNonNull,
            "increment" => Strategy::Increment,
            "max" => Strategy::Max,
            "min" => Strategy::Min,
            "ignore" => Strategy::Ignore,
            _ => return None,
        })
    }
}

/// The settings of a table with a primary key and `upsert` or `dedup`.
#[derive(Clone, Debug, PartialEq)]
pub struct UpsertConfig {
    /// Positions of the primary-key columns.
    pub key: Vec<usize>,
    /// `Some` for an upsert table, `None` for a dedup table.
    pub mode: Option<UpsertMode>,
    /// Position of the comparison column (default: the time column).
    pub comparison: usize,
    /// Position of the BOOLEAN column whose true value deletes the key.
    pub delete: Option<usize>,
    /// Per column, how a partial upsert merges it.
    pub strategies: Vec<Strategy>,
    /// For a dedup table, how far behind the newest time a key is remembered.
    pub dedup_window_micros: Option<i64>,
}

impl UpsertConfig {
    /// Reads and checks the upsert options; `None` for a plain append table.
    ///
    /// # Errors
    /// [`Error::InvalidDefinition`] naming the option that is wrong.
    pub fn from_options(
        columns: &[ColumnDef],
        primary_key: &[String],
        time_column: Option<usize>,
        raw: &BTreeMap<String, String>,
    ) -> Result<Option<Self>> {
        let invalid = |m: String| Err(Error::InvalidDefinition(m));
        let mode = match raw.get("upsert").map(|m| m.trim().to_ascii_lowercase()) {
            None => None,
            Some(m) if m == "none" => None,
            Some(m) if m == "full" => Some(UpsertMode::Full),
            Some(m) if m == "partial" => Some(UpsertMode::Partial),
            Some(m) => {
                return invalid(format!(
                    "upsert must be 'none', 'full' or 'partial', not '{m}'"
                ))
            }
        };
        let dedup = match raw.get("dedup") {
            None => false,
            Some(d) => parse_bool(d).map_err(|_| {
                Error::InvalidDefinition(format!("dedup must be a boolean, not '{d}'"))
            })?,
        };
        let upsert_only = ["comparison_column", "delete_column", "upsert_strategies"];
        if mode.is_none() {
            if let Some(option) = upsert_only.iter().find(|o| raw.contains_key(**o)) {
                return invalid(format!(
                    "option {option} needs upsert = 'full' or 'partial'"
                ));
            }
        }
        if !dedup && raw.contains_key("dedup_window") {
            return invalid("option dedup_window needs dedup = true".into());
        }
        if mode.is_none() && !dedup {
            return Ok(None);
        }
        if mode.is_some() && dedup {
            return invalid("a table is either upsert or dedup, not both: an upsert already keeps one row per key".into());
        }
        if primary_key.is_empty() {
            return invalid(format!(
                "{} requires a PRIMARY KEY",
                if dedup { "dedup" } else { "upsert" }
            ));
        }
        let position = |option: &str, name: &str| {
            columns.iter().position(|c| c.name == name).ok_or_else(|| {
                Error::InvalidDefinition(format!(
                    "option {option} names column \"{name}\", which does not exist"
                ))
            })
        };
        let key = primary_key
            .iter()
            .map(|k| position("PRIMARY KEY", k))
            .collect::<Result<Vec<_>>>()?;
        let comparison = match raw.get("comparison_column") {
            Some(name) => position("comparison_column", name)?,
            None => time_column.ok_or_else(|| {
                Error::InvalidDefinition(
                    "upsert without a time column needs a comparison_column".into(),
                )
            })?,
        };
        if !matches!(
            columns[comparison].ty,
            ColumnType::Integer
                | ColumnType::BigInt
                | ColumnType::Timestamp
                | ColumnType::TimestampTz
        ) {
            return invalid(format!(
                "comparison_column \"{}\" must be an integer or timestamp column",
                columns[comparison].name
            ));
        }
        let delete = match raw.get("delete_column") {
            Some(name) => {
                let at = position("delete_column", name)?;
                if columns[at].ty != ColumnType::Boolean {
                    return invalid(format!("delete_column \"{name}\" must be BOOLEAN"));
                }
                Some(at)
            }
            None => None,
        };
        let mut strategies = vec![Strategy::OverwriteNonNull; columns.len()];
        if let Some(text) = raw.get("upsert_strategies") {
            if mode != Some(UpsertMode::Partial) {
                return invalid("option upsert_strategies needs upsert = 'partial'".into());
            }
            for part in text.split(',').filter(|p| !p.trim().is_empty()) {
                let Some((name, strategy)) = part.split_once('=') else {
                    return invalid(format!(
                        "upsert_strategies: '{}' is not column=strategy",
                        part.trim()
                    ));
                };
                let at = position("upsert_strategies", name.trim())?;
                let Some(s) = Strategy::parse(strategy) else {
                    return invalid(format!(
                        "upsert_strategies: unknown strategy '{}' (overwrite, overwrite_non_null, increment, max, min, ignore)",
                        strategy.trim()
                    ));
                };
                if key.contains(&at) || at == comparison {
                    return invalid(format!(
                        "upsert_strategies: column \"{}\" is a key or the comparison column, which are never merged",
                        columns[at].name
                    ));
                }
                let ty = columns[at].ty;
                let numeric = matches!(
                    ty,
                    ColumnType::Integer
                        | ColumnType::BigInt
                        | ColumnType::Double
                        | ColumnType::Numeric { .. }
                );
                let ordered = numeric
                    || matches!(
                        ty,
                        ColumnType::Timestamp | ColumnType::TimestampTz | ColumnType::Text
                    );
                if (s == Strategy::Increment && !numeric)
                    || (matches!(s, Strategy::Max | Strategy::Min) && !ordered)
                {
                    return invalid(format!(
                        "upsert_strategies: {} cannot apply to {} column \"{}\"",
                        strategy.trim(),
                        ty.sql_name(),
                        columns[at].name
                    ));
                }
                strategies[at] = s;
            }
        }
        let dedup_window_micros = match raw.get("dedup_window") {
            Some(w) => Some(parse_duration_micros(w).map_err(|_| {
                Error::InvalidDefinition(format!(
                    "dedup_window '{w}' is not a positive interval such as '1 day'"
                ))
            })?),
            None => None,
        };
        Ok(Some(UpsertConfig {
            key,
            mode,
            comparison,
            delete,
            strategies,
            dedup_window_micros,
        }))
    }
}
