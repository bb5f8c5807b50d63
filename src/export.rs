//! Parquet export: a table's valid rows (an upsert table's latest per key),
//! written as Hive-style partitions by day of the time column
//! (`DIR/table/date=2026-11-29/part-0.parquet`), zstd-compressed, with
//! statistics, streamed so that memory stays bounded whatever the table's
//! size. Trino, Spark and DuckDB read the result without any Sluice code.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sluice_query::engine::Streamed;
use sluice_query::{Error, Result};
use sluice_storage::types::ColumnType;

use crate::Database;

/// Rows per row group: large enough that a scan reads long runs, small enough
/// that the writer's buffer stays tens of megabytes.
const ROW_GROUP_ROWS: usize = 1 << 20;

/// Microseconds in a day.
const DAY: i64 = 86_400_000_000;

/// What an export wrote.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    /// Rows written.
    pub rows: u64,
    /// The files written, in day order.
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Exports table `name` under `out/name/`, one partition per day of its time
/// column (a table without one is one file, `out/name/part-0.parquet`), only
/// rows with a time at or after `since` and before `until` (microseconds;
/// UTC for TIMESTAMPTZ, wall clock for TIMESTAMP). Each file is written
/// beside its place and renamed into it, so a reader never sees half a file.
/// `progress` is told the rows written so far.
///
/// # Errors
/// An unknown table, a query error, or an I/O error naming the file.
pub fn export_table(
    db: &Database,
    name: &str,
    out: &Path,
    since: Option<i64>,
    until: Option<i64>,
    progress: &dyn Fn(u64),
) -> Result<ExportReport> {
    let table = db
        .engine()
        .catalog()
        .table(name)
        .map_err(|_| Error::UndefinedTable(name.to_string()))?;
    let schema = Arc::clone(table.schema());
    let dir = out.join(&schema.name);
    let mut report = ExportReport::default();
    let columns: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
    let select = format!("SELECT {} FROM {}", columns.join(", "), quote(&schema.name));
    let Some(time) = schema.time_column_index() else {
        let path = dir.join("part-0.parquet");
        write_query(db, &select, &schema, &path, &mut report, progress)?;
        return Ok(report);
    };
    let time_def = &schema.columns[time];
    let literal = |micros: i64| -> String {
        let text = sluice_storage::types::format_timestamp(micros);
        if time_def.ty == ColumnType::TimestampTz {
            format!("TIMESTAMPTZ '{text}+00'")
        } else {
            format!("TIMESTAMP '{text}'")
        }
    };
    let column = quote(&time_def.name);
    let mut bounds = Vec::new();
    if let Some(s) = since {
        bounds.push(format!("{column} >= {}", literal(s)));
    }
    if let Some(u) = until {
        bounds.push(format!("{column} < {}", literal(u)));
    }
    let range = db.query(&format!(
        "SELECT min({column}), max({column}) FROM {}{}",
        quote(&schema.name),
        where_clause(&bounds)
    ))?;
    let (Some(first), Some(last)) = (first_micros(&range, 0), first_micros(&range, 1)) else {
        return Ok(report);
    };
    let mut day = first.div_euclid(DAY) * DAY;
    while day <= last {
        let mut conditions = bounds.clone();
        conditions.push(format!("{column} >= {}", literal(day)));
        conditions.push(format!("{column} < {}", literal(day + DAY)));
        let date = chrono::DateTime::from_timestamp_micros(day)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let path = dir.join(format!("date={date}")).join("part-0.parquet");
        let sql = format!("{select}{}", where_clause(&conditions));
        write_query(db, &sql, &schema, &path, &mut report, progress)?;
        day += DAY;
    }
    Ok(report)
}

/// Writes the rows of `sql` to `path` (nothing, and no file, when there are
/// none), through `path.tmp` renamed into place.
fn write_query(
    db: &Database,
    sql: &str,
    schema: &sluice_storage::schema::TableSchema,
    path: &Path,
    report: &mut ExportReport,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let stmt = sluice_query::parse_sql(sql)?
        .pop()
        .ok_or_else(|| Error::Syntax("empty export query".into()))?;
    let mut session = db.session();
    let cancel = Arc::new(AtomicBool::new(false));
    let Streamed::Rows(rows) = db
        .engine()
        .execute_streaming(&stmt, &mut session, &[], cancel)?
    else {
        return Ok(());
    };
    let file_schema = file_schema(schema);
    let mut writer: Option<(ArrowWriter<std::fs::File>, PathBuf)> = None;
    for batch in rows {
        let batch = to_file_types(&batch?, &file_schema)?;
        if batch.num_rows() == 0 {
            continue;
        }
        if writer.is_none() {
            writer = Some(open_writer(path, &file_schema)?);
        }
        if let Some((w, tmp)) = &mut writer {
            w.write(&batch).map_err(|e| io_error(tmp, e))?;
        }
        report.rows += batch.num_rows() as u64;
        progress(report.rows);
    }
    if let Some((w, tmp)) = writer {
        w.close().map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
        report.bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        report.files.push(path.to_path_buf());
    }
    Ok(())
}

/// Writes every row of `batches` to the Parquet file `path` (through
/// `path.tmp`), in the types Sluice's columns export as; returns the rows.
///
/// # Errors
/// An error of the stream, or I/O naming the file.
pub fn write_parquet(
    batches: impl Iterator<Item = Result<RecordBatch>>,
    schema: &SchemaRef,
    path: &Path,
) -> Result<u64> {
    let file_schema = plain_schema(schema);
    let (mut writer, tmp) = open_writer(path, &file_schema)?;
    let mut rows = 0u64;
    for batch in batches {
        let batch = to_file_types(&batch?, &file_schema)?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(|e| io_error(&tmp, e))?;
    }
    writer.close().map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
    Ok(rows)
}

fn open_writer(path: &Path, schema: &SchemaRef) -> Result<(ArrowWriter<std::fs::File>, PathBuf)> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(properties))
        .map_err(|e| io_error(&tmp, e))?;
    Ok((writer, tmp))
}

/// The file's columns: each table column in its plain Arrow type, NUMERIC
/// with its own precision.
fn file_schema(schema: &sluice_storage::schema::TableSchema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .columns
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    ColumnType::Numeric { precision, scale } => {
                        DataType::Decimal128(precision, scale)
                    }
                    other => other.arrow_type(),
                };
                Field::new(&c.name, ty, c.nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

/// A query's schema with dictionary columns as their values' type.
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let ty = match f.data_type() {
                    DataType::Dictionary(_, value) => value.as_ref().clone(),
                    other => other.clone(),
                };
                Field::new(f.name(), ty, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// `batch` in `schema`'s types (dictionaries decoded, decimals narrowed).
fn to_file_types(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| {
            if a.data_type() == f.data_type() {
                Ok(Arc::clone(a))
            } else {
                arrow::compute::cast(a, f.data_type()).map_err(Error::from)
            }
        })
        .collect::<Result<_>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(Error::from)
}

/// The first row's timestamp in `column`, as microseconds.
fn first_micros(batches: &[RecordBatch], column: usize) -> Option<i64> {
    let batch = batches.iter().find(|b| b.num_rows() > 0)?;
    let array = batch.column(column);
    if array.is_null(0) {
        return None;
    }
    array
        .as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>()
        .map(|times| times.value(0))
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// `name` as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(sluice_storage::Error::io(
        path,
        std::io::Error::other(e.to_string()),
    ))
}
