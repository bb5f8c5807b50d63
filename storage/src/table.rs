//! A table: its schema, its mutable segment and its write-ahead file, behind the one
//! append path that every writer (INSERT, the embedding API, later Kafka) goes through.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::mutable_segment::MutableSegment;
use crate::schema::TableSchema;
use crate::types::Value;
use crate::wal::WriteAheadLog;

/// A table of the catalog. Cheap to share (`Arc<Table>`); all methods take `&self`.
pub struct Table {
    schema: Arc<TableSchema>,
    dir: PathBuf,
    segment: RwLock<MutableSegment>,
    /// Held across "write the record, apply the rows" so the file's order is the
    /// segment's order.
    wal: Mutex<WriteAheadLog>,
}

/// What a query reads: the table's schema and an immutable view of its segments.
#[derive(Clone)]
pub struct TableSnapshot {
    /// The table's definition.
    pub schema: Arc<TableSchema>,
    /// Schema of the blocks (TEXT dictionary-encoded).
    pub block_schema: SchemaRef,
    /// The segments, each a list of blocks.
    pub segments: Vec<SegmentSnapshot>,
}

/// One segment as of a snapshot.
#[derive(Clone)]
pub struct SegmentSnapshot {
    /// Position of the segment in the table, for EXPLAIN and system tables.
    pub id: u64,
    /// The segment's rows, in blocks of at most [`crate::BLOCK_ROWS`].
    pub blocks: Vec<RecordBatch>,
}

impl Table {
    /// Opens a table in `dir`, replaying its write-ahead file into a new mutable segment.
    pub(crate) fn open(schema: TableSchema, dir: &Path) -> Result<Self> {
        let (wal, replay) = WriteAheadLog::open(&dir.join("wal.log"))?;
        let mut segment = MutableSegment::new(&schema);
        let replay = coerce_rows(&schema, replay)?;
        segment.append(&replay)?;
        if !replay.is_empty() {
            tracing::info!(table = %schema.name, rows = replay.len(), "replayed write-ahead file");
        }
        Ok(Table {
            schema: Arc::new(schema),
            dir: dir.to_path_buf(),
            segment: RwLock::new(segment),
            wal: Mutex::new(wal),
        })
    }

    /// The table's definition.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.schema.name
    }

    /// The directory holding the table's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The table's number in its data directory: stable for the table's life and
    /// never reused while the directory exists (catalog OIDs derive from it).
    pub fn id(&self) -> u64 {
        self.dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Appends full-width rows (one value per column, in column order). Values are
    /// coerced to the column types first; if any row fails, nothing is written.
    /// Returns when the rows are durable and visible to the next query.
    ///
    /// # Errors
    /// Type, range, NOT NULL and width errors name the column; I/O errors the file.
    pub fn append(&self, rows: Vec<Vec<Value>>) -> Result<usize> {
        let rows = coerce_rows(&self.schema, rows)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut wal = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        wal.append(&rows)?;
        let mut segment = self.segment.write().unwrap_or_else(|p| p.into_inner());
        segment.append(&rows)?;
        Ok(rows.len())
    }

    /// Appends rows that give values for the named columns only; the other columns
    /// are NULL. Column names are matched exactly.
    ///
    /// # Errors
    /// As [`Table::append`], plus [`Error::ColumnNotFound`] for an unknown column.
    pub fn append_named(&self, columns: &[String], rows: Vec<Vec<Value>>) -> Result<usize> {
        let positions = columns
            .iter()
            .map(|name| {
                self.schema
                    .column_index(name)
                    .ok_or_else(|| Error::ColumnNotFound {
                        table: self.schema.name.clone(),
                        column: name.clone(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let width = self.schema.columns.len();
        let full = rows
            .into_iter()
            .map(|row| {
                if row.len() != positions.len() {
                    return Err(Error::Arity(format!(
                        "INSERT has {} target columns but a row has {} values",
                        positions.len(),
                        row.len()
                    )));
                }
                let mut full = vec![Value::Null; width];
                for (pos, value) in positions.iter().zip(row) {
                    full[*pos] = value;
                }
                Ok(full)
            })
            .collect::<Result<Vec<_>>>()?;
        self.append(full)
    }

    /// An immutable view of the table for one query.
    pub fn snapshot(&self) -> TableSnapshot {
        let segment = self.segment.read().unwrap_or_else(|p| p.into_inner());
        TableSnapshot {
            schema: Arc::clone(&self.schema),
            block_schema: segment.block_schema(),
            segments: vec![SegmentSnapshot {
                id: 0,
                blocks: segment.blocks(),
            }],
        }
    }

    /// Number of rows in the table.
    pub fn rows(&self) -> usize {
        self.segment
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rows()
    }
}

/// Coerces every value to its column's type and checks NOT NULL and row width.
fn coerce_rows(schema: &TableSchema, rows: Vec<Vec<Value>>) -> Result<Vec<Vec<Value>>> {
    rows.into_iter()
        .map(|row| {
            if row.len() != schema.columns.len() {
                return Err(Error::Arity(format!(
                    "row has {} values but table \"{}\" has {} columns",
                    row.len(),
                    schema.name,
                    schema.columns.len()
                )));
            }
            row.into_iter()
                .zip(&schema.columns)
                .map(|(value, col)| {
                    let v = value.coerce_to(col.ty, &col.name)?;
                    if v == Value::Null && !col.nullable {
                        return Err(Error::NotNull {
                            table: schema.name.clone(),
                            column: col.name.clone(),
                        });
                    }
                    Ok(v)
                })
                .collect()
        })
        .collect()
}
