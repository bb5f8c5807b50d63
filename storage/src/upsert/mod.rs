//! Upserts and dedup by primary key.
//!
//! The design is Pinot's: a map from each key to its latest row (segment, row,
//! comparison value), and per segment the rows a later row of their key has
//! superseded ([`ClearedRows`]), which every scan skips. Which row wins is
//! decided in the table's ordered apply step, under the lock queries take
//! their snapshot under, so a query sees exactly one version of each key, and
//! a replay of the same rows after a crash makes the same decisions.

pub mod config;
pub mod key;
pub mod map;

use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

pub use config::{Strategy, UpsertConfig, UpsertMode};
pub use key::KeyHash;
pub use map::{KeyEntry, Location, PrimaryKeyMap};

use crate::types::Value;

/// In-memory segments (mutable, consuming, frozen for a seal) are numbered
/// from here; sealed segments by their file number, below it.
pub const FIRST_MEMORY_SEGMENT: u32 = 1 << 30;

/// Per segment, the rows superseded by a later row of their key. A segment's
/// valid rows are its rows less these. Each bitmap is shared with the
/// snapshots that took it and copied on the next change (`Arc::make_mut`), so
/// a running query keeps the view it started with.
#[derive(Clone, Default, Debug)]
pub struct ClearedRows {
    by_segment: HashMap<u32, Arc<RoaringBitmap>>,
}

impl ClearedRows {
    /// Marks a row superseded.
    pub fn clear(&mut self, at: Location) {
        Arc::make_mut(self.by_segment.entry(at.segment).or_default()).insert(at.row);
    }

    /// The superseded rows of a segment, if any.
    pub fn of(&self, segment: u32) -> Option<Arc<RoaringBitmap>> {
        self.by_segment
            .get(&segment)
            .filter(|b| !b.is_empty())
            .map(Arc::clone)
    }

    /// True if the row is superseded.
    pub fn contains(&self, at: Location) -> bool {
        self.by_segment
            .get(&at.segment)
            .is_some_and(|b| b.contains(at.row))
    }

    /// Replaces a segment's bitmap.
    pub fn set(&mut self, segment: u32, rows: RoaringBitmap) {
        if rows.is_empty() {
            self.by_segment.remove(&segment);
        } else {
            self.by_segment.insert(segment, Arc::new(rows));
        }
    }

    /// Forgets a segment (sealed away, merged or evicted).
    pub fn remove(&mut self, segment: u32) -> Option<Arc<RoaringBitmap>> {
        self.by_segment.remove(&segment)
    }

    /// Rows cleared in all segments.
    pub fn total(&self) -> u64 {
        self.by_segment.values().map(|b| b.len()).sum()
    }
}

/// Why an incoming row was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Its comparison value is below the stored row's: an event that arrived
    /// after a newer one.
    OutOfOrder,
    /// Dedup: its key was already seen.
    Duplicate,
}

/// What the apply step does with one incoming row.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Store this row (merged with the stored one, for a partial upsert); the
    /// key's previous row, if any, is superseded.
    Store {
        /// The row to append.
        row: Vec<Value>,
        /// The key's previous row.
        replaces: Option<Location>,
    },
    /// Store nothing.
    Drop(Dropped),
}

/// Counters of the apply step since the table was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpsertStats {
    /// Rows that replaced a stored row of their key.
    pub replaced: u64,
    /// Rows dropped because they were older than the stored row.
    pub out_of_order: u64,
    /// Rows dropped as duplicates (dedup tables).
    pub duplicates: u64,
    /// Rows whose delete column was true.
    pub deletes: u64,
    /// Rows from a source partition whose key's stored row came from another
    /// partition.
    pub keys_in_two_partitions: u64,
}

/// The comparison values of a block's comparison column (integers and
/// timestamps as they are, NULL below everything).
pub fn comparison_values(array: &arrow::array::ArrayRef) -> Vec<i64> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType};
    let values: Vec<i64> = match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().values().to_vec(),
        DataType::Int32 => array
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|v| i64::from(*v))
            .collect(),
        DataType::Timestamp(_, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec(),
        _ => return vec![i64::MIN; array.len()],
    };
    match array.nulls() {
        Some(nulls) => values
            .into_iter()
            .enumerate()
            .map(|(i, v)| if nulls.is_null(i) { i64::MIN } else { v })
            .collect(),
        None => values,
    }
}

/// The comparison value of a row: integers and timestamps as they are, NULL
/// below everything.
pub fn comparison_value(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Timestamp(i) => *i,
        _ => i64::MIN,
    }
}

/// The upsert state of a table: the key map, the superseded rows, counters.
pub struct UpsertState {
    /// The settings.
    pub config: UpsertConfig,
    /// Key to latest row.
    pub map: PrimaryKeyMap,
    /// Superseded rows per segment.
    pub cleared: ClearedRows,
    /// Superseded rows per sealed segment as its committed cleared file holds
    /// them (what a restart starts from).
    pub persisted: ClearedRows,
    /// Counters.
    pub stats: UpsertStats,
    /// Dedup: the newest time seen, for `dedup_window`.
    pub newest: i64,
}

impl UpsertState {
    /// An empty state.
    pub fn new(config: UpsertConfig) -> Self {
        UpsertState {
            config,
            map: PrimaryKeyMap::default(),
            cleared: ClearedRows::default(),
            persisted: ClearedRows::default(),
            stats: UpsertStats::default(),
            newest: i64::MIN,
        }
    }

    /// Dedup: keys seen before this time are forgotten (`i64::MIN` without a
    /// window).
    fn dedup_horizon(&self) -> i64 {
        match self.config.dedup_window_micros {
            Some(w) if self.newest > i64::MIN => self.newest.saturating_sub(w),
            _ => i64::MIN,
        }
    }

    /// Dedup: removes the keys outside `dedup_window`, giving their memory
    /// back. Decisions do not change: such keys are treated as unseen anyway.
    pub fn forget_outside_window(&mut self) {
        let horizon = self.dedup_horizon();
        if self.config.mode.is_none() && horizon > i64::MIN {
            self.map.retain(|_, e| e.comparison >= horizon);
        }
    }

    /// The key of a row of the table.
    pub fn key_of(&self, row: &[Value]) -> KeyHash {
        let values: Vec<&Value> = self.config.key.iter().map(|&c| &row[c]).collect();
        KeyHash::of(&values)
    }

    /// Decides what `row` (coerced to the column types) does when it would be
    /// stored at `at`, and records it: the map points at `at`, the previous
    /// row is cleared. `stored` reads a stored row, for a partial merge.
    pub fn apply(
        &mut self,
        row: Vec<Value>,
        at: Location,
        stored: impl FnOnce(Location) -> Option<Vec<Value>>,
    ) -> Decision {
        let key = self.key_of(&row);
        let comparison = comparison_value(&row[self.config.comparison]);
        let existing = self.map.get(key);
        let Some(mode) = self.config.mode else {
            // Dedup: the first row of a key is kept. A key last seen more than
            // `dedup_window` before the newest time is forgotten, whether or not
            // `forget_outside_window` has removed it yet, so a replay decides the
            // same as the first run.
            let horizon = self.dedup_horizon();
            if existing.is_some_and(|e| e.comparison >= horizon) {
                self.stats.duplicates += 1;
                return Decision::Drop(Dropped::Duplicate);
            }
            self.newest = self.newest.max(comparison);
            self.map.insert(
                key,
                KeyEntry {
                    location: at,
                    comparison,
                    deleted: false,
                },
            );
            return Decision::Store {
                row,
                replaces: None,
            };
        };
        if let Some(e) = existing {
            if comparison < e.comparison {
                self.stats.out_of_order += 1;
                return Decision::Drop(Dropped::OutOfOrder);
            }
        }
        let deletes = self
            .config
            .delete
            .is_some_and(|d| matches!(row[d], Value::Bool(true)));
        let row = match existing {
            Some(e) if mode == UpsertMode::Partial && !e.deleted && !deletes => {
                match stored(e.location) {
                    Some(old) => merge(&self.config, old, row),
                    None => row,
                }
            }
            _ => row,
        };
        if let Some(e) = existing {
            self.cleared.clear(e.location);
            self.stats.replaced += 1;
        }
        if deletes {
            self.stats.deletes += 1;
        }
        self.map.insert(
            key,
            KeyEntry {
                location: at,
                comparison,
                deleted: deletes,
            },
        );
        Decision::Store {
            row,
            replaces: existing.map(|e| e.location),
        }
    }
}

/// A partial upsert: `new` merged into `old`, column by column.
fn merge(config: &UpsertConfig, old: Vec<Value>, mut new: Vec<Value>) -> Vec<Value> {
    for (c, old) in old.into_iter().enumerate() {
        if config.key.contains(&c) || c == config.comparison || Some(c) == config.delete {
            continue;
        }
        let Some(slot) = new.get_mut(c) else { continue };
        let merged = match (config.strategies[c], &old, &*slot) {
            (Strategy::Overwrite, _, _) => continue,
            (_, Value::Null, _) => continue,
            (_, _, Value::Null) => old,
            (Strategy::OverwriteNonNull, _, _) => continue,
            (Strategy::Ignore, _, _) => old,
            (Strategy::Increment, Value::Int(a), Value::Int(b)) => Value::Int(a.saturating_add(*b)),
            (Strategy::Increment, Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            // Both have the column's scale; the sum stays within 64 bits'
            // 18 digits only as far as the column's precision allows, and a
            // sum past it saturates as integers do.
            (
                Strategy::Increment,
                Value::Numeric { value: a, scale },
                Value::Numeric { value: b, .. },
            ) => Value::Numeric {
                value: a.saturating_add(*b),
                scale: *scale,
            },
            (Strategy::Max, _, _) => {
                if value_less(slot, &old) {
                    old
                } else {
                    continue;
                }
            }
            (Strategy::Min, _, _) => {
                if value_less(&old, slot) {
                    old
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        *slot = merged;
    }
    new
}

/// `a < b` for two values of one column type (NaN above every number, as in
/// PostgreSQL).
fn value_less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) | (Value::Timestamp(x), Value::Timestamp(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x.total_cmp(y).is_lt(),
        (Value::Numeric { value: x, .. }, Value::Numeric { value: y, .. }) => x < y,
        (Value::Text(x), Value::Text(y)) => x < y,
        (Value::Bool(x), Value::Bool(y)) => x < y,
        _ => false,
    }
}
