//! Parquet import: a file's columns are matched to a table's by name (case
//! does not matter, columns the table lacks are skipped, columns the file
//! lacks are NULL), converted with the coercions JSON ingestion applies, and
//! handed to [`Table::import`], which writes sealed segments and commits the
//! file in one step.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::kernels::cast::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use sluice_storage::manifest::ImportedFile;
use sluice_storage::schema::TableSchema;
use sluice_storage::table::{ImportReport, Table};
use sluice_storage::types::{pow10_i128, ColumnType};
use sluice_storage::Error;

/// Rows per batch read from a file.
const BATCH_ROWS: usize = 65_536;

/// Imports the Parquet file at `path` into `table` (see [`Table::import`]);
/// `progress` is told the file's rows (once) and then the rows read so far.
///
/// # Errors
/// The file cannot be read or is not Parquet (the error names it), a column
/// cannot be converted to its table column's type (naming both), a NULL time,
/// or the table's own errors. Nothing of the file is committed then.
pub fn import_parquet(
    table: &Table,
    path: &Path,
    progress: &dyn Fn(ImportProgress),
) -> Result<ImportReport, Error> {
    let path = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let identity = identify(&path)?;
    if table.imported_before(&identity).is_some() {
        return Ok(ImportReport {
            already_imported: true,
            ..ImportReport::default()
        });
    }
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let corrupt = |e: parquet::errors::ParquetError| Error::Corrupt {
        path: path.clone(),
        section: "parquet".into(),
        detail: e.to_string(),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(corrupt)?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
    progress(ImportProgress::Total(total));
    let schema = table.schema();
    let plan = ColumnPlan::new(schema, builder.schema(), &path)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), plan.file_columns());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(corrupt)?;
    let batches = reader.map(|batch| {
        let batch = batch.map_err(|e| Error::Corrupt {
            path: path.clone(),
            section: "parquet".into(),
            detail: e.to_string(),
        })?;
        plan.convert(&batch)
    });
    table.import(&identity, batches, &|rows| {
        progress(ImportProgress::Read(rows))
    })
}

/// What an import tells its progress bar.
#[derive(Clone, Copy, Debug)]
pub enum ImportProgress {
    /// The file's rows, from its metadata.
    Total(u64),
    /// Rows read so far.
    Read(u64),
}

/// The files `patterns` name: each a path, or a glob (`*`, `?`) in its last
/// component, sorted by name.
///
/// # Errors
/// A pattern that names no file.
pub fn expand_paths(patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains(['*', '?']) {
            out.push(path.to_path_buf());
            continue;
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut matched: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
            .map(|e| e.path())
            .collect();
        if matched.is_empty() {
            return Err(format!("no file matches {pattern}"));
        }
        matched.sort();
        out.extend(matched);
    }
    Ok(out)
}

/// `*` (any run) and `?` (one character) matching of a whole file name.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// The file's identity as the manifest records it: absolute path, size, and
/// the CRC-32 of its Parquet footer (which holds every row group's offsets
/// and statistics, so a rewritten file has another).
fn identify(path: &Path) -> Result<ImportedFile, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let corrupt = |detail: &str| Error::Corrupt {
        path: path.to_path_buf(),
        section: "parquet footer".into(),
        detail: detail.into(),
    };
    if size < 12 {
        return Err(corrupt("too short to be a Parquet file"));
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::End(-8))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| Error::io(path, e))?;
    if &tail[4..] != b"PAR1" {
        return Err(corrupt("no PAR1 magic at the end: not a Parquet file"));
    }
    let footer_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if footer_len + 12 > size {
        return Err(corrupt("the footer length is past the file's start"));
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::End(-8 - footer_len as i64))
        .and_then(|_| file.read_exact(&mut footer))
        .map_err(|e| Error::io(path, e))?;
    Ok(ImportedFile {
        path: path.display().to_string(),
        size,
        checksum: format!("crc32:{:08x}", crc32fast::hash(&footer)),
        rows: 0,
    })
}

/// How each table column is filled from a file: which file column (by its
/// position among the columns read), converted how.
struct ColumnPlan {
    table: Arc<TableSchema>,
    /// Per table column, its file column's index in the file's Arrow schema.
    sources: Vec<Option<usize>>,
}

impl ColumnPlan {
    fn new(
        table: &Arc<TableSchema>,
        file: &arrow::datatypes::SchemaRef,
        path: &Path,
    ) -> Result<ColumnPlan, Error> {
        let sources: Vec<Option<usize>> = table
            .columns
            .iter()
            .map(|c| {
                file.fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(&c.name))
            })
            .collect();
        if sources.iter().all(Option::is_none) {
            return Err(Error::InvalidDefinition(format!(
                "{}: no column has the name of a column of \"{}\"",
                path.display(),
                table.name
            )));
        }
        for (c, source) in table.columns.iter().zip(&sources) {
            if source.is_none() && !c.nullable {
                return Err(Error::NotNull {
                    table: table.name.clone(),
                    column: c.name.clone(),
                });
            }
        }
        Ok(ColumnPlan {
            table: Arc::clone(table),
            sources,
        })
    }

    /// The file's root columns read, by position, in file order.
    fn file_columns(&self) -> Vec<usize> {
        let mut used: Vec<usize> = self.sources.iter().flatten().copied().collect();
        used.sort_unstable();
        used
    }

    /// A batch of the table's columns from a batch of the file's projected
    /// columns.
    fn convert(&self, batch: &RecordBatch) -> Result<RecordBatch, Error> {
        let read = self.file_columns();
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.table.columns.len());
        for (def, source) in self.table.columns.iter().zip(&self.sources) {
            let array = match source {
                Some(i) => {
                    let at = read
                        .binary_search(i)
                        .map_err(|_| Error::Arity(format!("column {} was not read", def.name)))?;
                    coerce(batch.column(at), def.ty, &def.name)?
                }
                None => arrow::array::new_null_array(&def.ty.arrow_type(), rows),
            };
            if !def.nullable && array.null_count() > 0 {
                return Err(Error::NotNull {
                    table: self.table.name.clone(),
                    column: def.name.clone(),
                });
            }
            columns.push(array);
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(
            self.table
                .columns
                .iter()
                .map(|c| arrow::datatypes::Field::new(&c.name, c.ty.arrow_type(), true))
                .collect::<Vec<_>>(),
        ));
        RecordBatch::try_new(schema, columns).map_err(|e| Error::Arity(e.to_string()))
    }
}

/// `array` as a column of type `ty`, with JSON ingestion's coercions: any
/// integer or an integral float into an integer column (in range), numbers
/// into double precision and numeric (rounded half away from zero to its
/// scale, within its precision), anything into text, timestamps of any unit
/// and zone, dates, epoch numbers (seconds, milliseconds or microseconds by
/// magnitude) and text into timestamps.
fn coerce(array: &ArrayRef, ty: ColumnType, column: &str) -> Result<ArrayRef, Error> {
    let mismatch = || Error::TypeMismatch {
        column: column.to_string(),
        expected: ty.sql_name(),
        found: array.data_type().to_string(),
    };
    let strict = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let cast = |to: &DataType| -> Result<ArrayRef, Error> {
        cast_with_options(array, to, &strict).map_err(|e| match e {
            arrow::error::ArrowError::CastError(m) if m.contains("overflow") => {
                Error::OutOfRange(format!("{column}: {m}"))
            }
            other => Error::InvalidText {
                ty: ty.sql_name(),
                text: format!("{column}: {other}"),
            },
        })
    };
    let from = array.data_type();
    let numeric = from.is_numeric();
    match ty {
        ColumnType::Boolean if matches!(from, DataType::Boolean) || is_text(from) => {
            cast(&DataType::Boolean)
        }
        ColumnType::Integer | ColumnType::BigInt if from.is_integer() || is_text(from) => {
            cast(&ty.arrow_type())
        }
        ColumnType::Integer | ColumnType::BigInt if from.is_floating() => {
            let wide = cast(&DataType::Float64)?;
            let lossless = wide
                .as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .flatten()
                .all(|f| f.fract() == 0.0);
            if !lossless {
                return Err(Error::InvalidText {
                    ty: ty.sql_name(),
                    text: format!("{column}: a number with a fraction"),
                });
            }
            cast(&ty.arrow_type())
        }
        ColumnType::Double if numeric || is_text(from) => cast(&DataType::Float64),
        ColumnType::Text => cast(&DataType::Utf8),
        ColumnType::Numeric { precision, scale } if numeric || is_text(from) => {
            let source = if from.is_floating() {
                // Through the shortest text that reads back as the double, as
                // JSON ingestion reads a number's text.
                cast(&DataType::Utf8)?
            } else {
                Arc::clone(array)
            };
            let decimal = cast_with_options(&source, &DataType::Decimal128(38, scale), &strict)
                .map_err(|e| Error::InvalidText {
                    ty: ty.sql_name(),
                    text: format!("{column}: {e}"),
                })?;
            let limit = pow10_i128(precision as u32);
            let values = decimal.as_primitive::<arrow::datatypes::Decimal128Type>();
            if values.iter().flatten().any(|v| v.abs() >= limit) {
                return Err(Error::OutOfRange(format!(
                    "{column}: a value needs more than numeric({precision},{scale})"
                )));
            }
            Ok(decimal)
        }
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            let micros = match from {
                DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
                    // Zoned instants are UTC; zone-less ones are taken as UTC.
                    let plain = cast(&DataType::Timestamp(TimeUnit::Microsecond, None))?;
                    strip_zone(&plain)
                }
                d if d.is_integer() => epoch_micros(&cast(&DataType::Int64)?, column)?,
                d if is_text(d) => text_micros(&cast(&DataType::Utf8)?, ty, column)?,
                _ => return Err(mismatch()),
            };
            let zone = match ty.arrow_type() {
                DataType::Timestamp(_, zone) => zone,
                _ => None,
            };
            Ok(Arc::new(
                TimestampMicrosecondArray::new(micros.values().clone(), micros.nulls().cloned())
                    .with_timezone_opt(zone),
            ))
        }
        _ => Err(mismatch()),
    }
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(dt, DataType::Dictionary(_, v) if is_text(v))
}

/// A timestamp array's values as plain microseconds (its zone dropped).
fn strip_zone(array: &ArrayRef) -> Int64Array {
    let ts = array.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    Int64Array::new(ts.values().clone(), ts.nulls().cloned())
}

/// Epoch numbers as microseconds: seconds, milliseconds or microseconds by
/// magnitude, as JSON ingestion reads them.
fn epoch_micros(array: &ArrayRef, column: &str) -> Result<Int64Array, Error> {
    let values = array.as_primitive::<Int64Type>();
    let mut out = Vec::with_capacity(values.len());
    for v in values.iter() {
        out.push(match v {
            None => None,
            Some(v) => {
                let scale = if v.unsigned_abs() < 100_000_000_000 {
                    1_000_000
                } else if v.unsigned_abs() < 100_000_000_000_000 {
                    1_000
                } else {
                    1
                };
                Some(
                    v.checked_mul(scale)
                        .ok_or_else(|| Error::OutOfRange(format!("{column}: timestamp {v}")))?,
                )
            }
        });
    }
    Ok(Int64Array::from(out))
}

/// Timestamp text as microseconds, as a literal of the column's type reads.
fn text_micros(array: &ArrayRef, ty: ColumnType, column: &str) -> Result<Int64Array, Error> {
    let text: &StringArray = array.as_string::<i32>();
    let mut out = Vec::with_capacity(text.len());
    for v in text.iter() {
        out.push(match v {
            None => None,
            Some(s) => Some(
                if ty == ColumnType::TimestampTz {
                    sluice_storage::types::parse_timestamptz(s, sluice_storage::zone::Zone::UTC)
                } else {
                    sluice_storage::types::parse_timestamp(s)
                }
                .map_err(|_| Error::InvalidText {
                    ty: ty.sql_name(),
                    text: format!("{column}: {s}"),
                })?,
            ),
        });
    }
    Ok(Int64Array::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("*.parquet", "a.parquet"));
        assert!(glob_match("part-?.parquet", "part-1.parquet"));
        assert!(!glob_match("part-?.parquet", "part-12.parquet"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("*.parquet", "a.parquet.tmp"));
        assert!(glob_match("a*b*c", "axxbyyc"));
    }
}
