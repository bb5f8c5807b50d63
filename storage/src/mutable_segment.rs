//! The mutable (consuming) segment: where appended rows land and become queryable at once.
//!
//! Rows are kept in Arrow builders, one per column. Every [`BLOCK_ROWS`] rows the
//! builders are finished into an immutable block (a `RecordBatch`), so a query's snapshot
//! shares the finished blocks and copies at most one block's worth of rows. TEXT columns
//! are dictionary-encoded per block (`Dictionary(UInt32, Utf8)`): the scan groups and
//! filters on the small dictionary, not on every row's string.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use arrow::record_batch::RecordBatch;

use crate::block_index::BlockIndex;
use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::types::{ColumnType, Value, UTC};

/// Rows per block of a mutable segment.
pub const BLOCK_ROWS: usize = 64 * 1024;

/// The Arrow schema of a segment's blocks: the table's types, with TEXT dictionary-encoded.
pub fn block_schema(schema: &TableSchema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .columns
            .iter()
            .map(|c| {
                let dt = match c.ty {
                    ColumnType::Text => {
                        DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8))
                    }
                    other => other.arrow_type(),
                };
                Field::new(&c.name, dt, c.nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Integer(Int32Builder),
    BigInt(Int64Builder),
    Double(Float64Builder),
    Text(StringDictionaryBuilder<UInt32Type>),
    Timestamp(TimestampMicrosecondBuilder),
    Numeric(Decimal128Builder),
}

/// True when a column of type `ty` can take `v` as it is.
fn holds(ty: ColumnType, v: &Value) -> bool {
    match (ty, v) {
        (_, Value::Null) => true,
        (ColumnType::Boolean, Value::Bool(_)) => true,
        (ColumnType::Integer, Value::Int(i)) => i32::try_from(*i).is_ok(),
        (ColumnType::BigInt, Value::Int(_)) => true,
        (ColumnType::Double, Value::Float(_)) => true,
        (ColumnType::Numeric { scale, .. }, Value::Numeric { scale: s, .. }) => scale == *s,
        (ColumnType::Text, Value::Text(_)) => true,
        (ColumnType::Timestamp | ColumnType::TimestampTz, Value::Timestamp(_)) => true,
        _ => false,
    }
}

impl ColumnBuilder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            ColumnType::Integer => ColumnBuilder::Integer(Int32Builder::new()),
            ColumnType::BigInt => ColumnBuilder::BigInt(Int64Builder::new()),
            ColumnType::Double => ColumnBuilder::Double(Float64Builder::new()),
            ColumnType::Text => ColumnBuilder::Text(StringDictionaryBuilder::new()),
            ColumnType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            ColumnType::TimestampTz => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone(UTC))
            }
            // A schema's scale is within 0..=18 (checked when the table is
            // defined), which precision 38 always admits.
            ColumnType::Numeric { scale, .. } => ColumnBuilder::Numeric(
                Decimal128Builder::new()
                    .with_precision_and_scale(38, scale)
                    .unwrap_or_else(|_| Decimal128Builder::new()),
            ),
        }
    }

    /// Appends a value already coerced to this column's type.
    fn push(&mut self, value: &Value) -> Result<()> {
        match (self, value) {
            (ColumnBuilder::Boolean(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Integer(b), Value::Null) => b.append_null(),
            (ColumnBuilder::BigInt(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Double(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Text(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Numeric(b), Value::Null) => b.append_null(),
            (ColumnBuilder::Numeric(b), Value::Numeric { value, .. }) => b.append_value(*value),
            (ColumnBuilder::Boolean(b), Value::Bool(v)) => b.append_value(*v),
            (ColumnBuilder::Integer(b), Value::Int(v)) => {
                b.append_value(i32::try_from(*v).map_err(|_| Error::OutOfRange("integer".into()))?)
            }
            (ColumnBuilder::BigInt(b), Value::Int(v)) => b.append_value(*v),
            (ColumnBuilder::Double(b), Value::Float(v)) => b.append_value(*v),
            (ColumnBuilder::Text(b), Value::Text(v)) => {
                // A block holds at most BLOCK_ROWS distinct strings, far below u32::MAX.
                b.append(v)
                    .map_err(|e| Error::OutOfRange(format!("dictionary: {e}")))?;
            }
            (ColumnBuilder::Timestamp(b), Value::Timestamp(v)) => b.append_value(*v),
            (_, v) => {
                return Err(Error::Arity(format!(
                    "internal error: value {v:?} was not coerced to the column type"
                )))
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Integer(b) => Arc::new(b.finish()),
            ColumnBuilder::BigInt(b) => Arc::new(b.finish()),
            ColumnBuilder::Double(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Numeric(b) => Arc::new(b.finish()),
        }
    }

    fn finish_cloned(&self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish_cloned()),
            ColumnBuilder::Integer(b) => Arc::new(b.finish_cloned()),
            ColumnBuilder::BigInt(b) => Arc::new(b.finish_cloned()),
            ColumnBuilder::Double(b) => Arc::new(b.finish_cloned()),
            ColumnBuilder::Text(b) => Arc::new(b.finish_cloned()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish_cloned()),
            ColumnBuilder::Numeric(b) => Arc::new(b.finish_cloned()),
        }
    }

    fn len(&self) -> usize {
        match self {
            ColumnBuilder::Boolean(b) => b.len(),
            ColumnBuilder::Integer(b) => b.len(),
            ColumnBuilder::BigInt(b) => b.len(),
            ColumnBuilder::Double(b) => b.len(),
            ColumnBuilder::Text(b) => b.len(),
            ColumnBuilder::Timestamp(b) => b.len(),
            ColumnBuilder::Numeric(b) => b.len(),
        }
    }
}

/// A growable, columnar, in-memory segment. Appends need `&mut self`; readers take
/// [`MutableSegment::blocks`], an immutable view that later appends do not change.
pub struct MutableSegment {
    schema: SchemaRef,
    types: Vec<ColumnType>,
    finished: Vec<RecordBatch>,
    /// One per finished block: its equality indexes, built when first asked.
    indexes: Vec<Arc<BlockIndex>>,
    active: Vec<ColumnBuilder>,
    rows: usize,
    /// Approximate bytes of the values appended (see [`MutableSegment::bytes`]).
    bytes: usize,
    /// The table's number for this segment (see `upsert::FIRST_MEMORY_SEGMENT`).
    id: u32,
    /// The rows of the block being built, kept as values where a partial
    /// upsert must read a stored row back (Arrow builders cannot be read).
    active_rows: Option<Vec<Vec<Value>>>,
}

impl MutableSegment {
    /// An empty segment for a table.
    pub fn new(table: &TableSchema) -> Self {
        let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
        let partial = table
            .options
            .get("upsert")
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("partial"));
        MutableSegment {
            schema: block_schema(table),
            active: types.iter().map(|t| ColumnBuilder::new(*t)).collect(),
            types,
            finished: Vec::new(),
            indexes: Vec::new(),
            rows: 0,
            bytes: 0,
            id: 0,
            active_rows: partial.then(Vec::new),
        }
    }

    /// The same segment with the table's number `id`.
    pub fn numbered(mut self, id: u32) -> Self {
        self.id = id;
        self
    }

    /// The table's number for this segment.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Row `row`'s values, if the segment can read rows back (a partial-upsert
    /// table's) and has it.
    pub fn row(&self, row: usize) -> Option<Vec<Value>> {
        let mut first = 0;
        for block in &self.finished {
            if row < first + block.num_rows() {
                return Some(
                    block
                        .columns()
                        .iter()
                        .map(|c| crate::upsert::key::value_at(c, row - first))
                        .collect(),
                );
            }
            first += block.num_rows();
        }
        self.active_rows.as_ref()?.get(row - first).cloned()
    }

    /// Number of rows in the segment.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate size of the values appended, in bytes: 8 per number or
    /// timestamp, 1 per boolean or NULL, a string's length plus 4. It is what the
    /// rows weigh before dictionary encoding, a bound on what they hold in memory;
    /// `segment_bytes` compares against it.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Schema of the blocks (TEXT as `Dictionary(UInt32, Utf8)`).
    pub fn block_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Appends rows whose values have already been coerced to the column types
    /// (as [`crate::Table::append`] does). Each row must have one value per column.
    ///
    /// # Errors
    /// Only on a row of the wrong width or an uncoerced value: a caller bug, reported
    /// rather than panicking.
    pub fn append(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        // Every row is checked before any value is pushed, so a bad row leaves
        // no column builder longer than the others.
        self.check(rows)?;
        for row in rows {
            for (builder, value) in self.active.iter_mut().zip(row) {
                builder.push(value)?;
                self.bytes += match value {
                    Value::Null | Value::Bool(_) => 1,
                    Value::Text(t) => t.len() + 4,
                    _ => 8,
                };
            }
            self.rows += 1;
            if let Some(kept) = &mut self.active_rows {
                kept.push(row.clone());
            }
            if self.active.first().map_or(0, ColumnBuilder::len) >= BLOCK_ROWS {
                self.finish_block()?;
            }
        }
        Ok(())
    }

    /// Checks that every row has one value per column, each one the column can
    /// hold as it is (what [`MutableSegment::append`] needs to push a row whole).
    ///
    /// # Errors
    /// The first row of the wrong width or with an uncoerced value.
    pub fn check(&self, rows: &[Vec<Value>]) -> Result<()> {
        for row in rows {
            if row.len() != self.types.len() {
                return Err(Error::Arity(format!(
                    "row has {} values, table has {} columns",
                    row.len(),
                    self.types.len()
                )));
            }
            if let Some((ty, v)) = self.types.iter().zip(row).find(|(ty, v)| !holds(**ty, v)) {
                return Err(Error::Arity(format!(
                    "internal error: value {v:?} was not coerced to {}",
                    ty.sql_name()
                )));
            }
        }
        Ok(())
    }

    fn finish_block(&mut self) -> Result<()> {
        let columns: Vec<ArrayRef> = self.active.iter_mut().map(ColumnBuilder::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|e| Error::Arity(format!("internal error finishing a block: {e}")))?;
        self.indexes
            .push(Arc::new(BlockIndex::new(batch.num_columns())));
        self.finished.push(batch);
        if let Some(kept) = &mut self.active_rows {
            kept.clear();
        }
        Ok(())
    }

    /// The equality indexes of the finished blocks, in order: the leading
    /// blocks of [`MutableSegment::blocks`] (the active block has none).
    pub fn block_indexes(&self) -> Vec<Arc<BlockIndex>> {
        self.indexes.clone()
    }

    /// The segment's rows as immutable blocks: the finished ones shared, the active one
    /// copied. Later appends do not change what this returns.
    pub fn blocks(&self) -> Vec<RecordBatch> {
        let mut blocks = self.finished.clone();
        let active_rows = self.active.first().map_or(0, ColumnBuilder::len);
        if active_rows > 0 {
            let columns: Vec<ArrayRef> = self
                .active
                .iter()
                .map(ColumnBuilder::finish_cloned)
                .collect();
            // The builders always hold equal-length columns of the schema's types, so
            // this cannot fail; if it ever did, the rows stay in the builders.
            if let Ok(batch) = RecordBatch::try_new(Arc::clone(&self.schema), columns) {
                blocks.push(batch);
            }
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnDef;
    use std::collections::BTreeMap;

    #[test]
    fn a_bad_row_appends_nothing_of_its_batch() {
        let schema = TableSchema::new(
            "t",
            vec![
                ColumnDef {
                    name: "ts".into(),
                    ty: ColumnType::Timestamp,
                    nullable: true,
                },
                ColumnDef {
                    name: "n".into(),
                    ty: ColumnType::Integer,
                    nullable: true,
                },
            ],
            vec![],
            BTreeMap::from([
                ("time_column".to_string(), "ts".to_string()),
                ("retention".to_string(), "none".to_string()),
            ]),
        )
        .unwrap();
        let mut seg = MutableSegment::new(&schema);
        let good = vec![Value::Timestamp(1), Value::Int(1)];
        for bad in [
            vec![Value::Timestamp(2), Value::Int(i64::MAX)],
            vec![Value::Timestamp(2), Value::Text("x".into())],
            vec![Value::Timestamp(2)],
        ] {
            assert!(seg.append(&[good.clone(), bad]).is_err());
            assert_eq!(seg.rows(), 0);
        }
        seg.append(&[good]).unwrap();
        let blocks = seg.blocks();
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            blocks[0].num_rows(),
            1,
            "every column holds exactly the good row"
        );
    }

    #[test]
    fn blocks_are_finished_every_block_rows_and_snapshots_are_stable() {
        let schema = TableSchema::new(
            "t",
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
            ],
            vec![],
            BTreeMap::from([
                ("time_column".to_string(), "ts".to_string()),
                ("retention".to_string(), "none".to_string()),
            ]),
        )
        .unwrap();
        let mut seg = MutableSegment::new(&schema);
        let rows: Vec<Vec<Value>> = (0..BLOCK_ROWS + 10)
            .map(|i| {
                vec![
                    Value::Timestamp(i as i64),
                    Value::Text(format!("k{}", i % 3)),
                ]
            })
            .collect();
        seg.append(&rows).unwrap();
        let before = seg.blocks();
        assert_eq!(before.len(), 2);
        assert_eq!(before[1].num_rows(), 10);
        seg.append(&rows[..5]).unwrap();
        assert_eq!(
            before[1].num_rows(),
            10,
            "a snapshot does not see later appends"
        );
        assert_eq!(
            seg.blocks().iter().map(|b| b.num_rows()).sum::<usize>(),
            BLOCK_ROWS + 15
        );
    }
}
