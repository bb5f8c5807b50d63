//! Writes a segment file from a table's rows: per column an encoding chosen from
//! the data, a sorted dictionary and inverted index for TEXT, zone maps per block,
//! a NULL bitmap, and a checksum per section. The file is written to a temporary
//! name, fsynced and renamed into place: a segment file either exists whole or not.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use roaring::RoaringBitmap;

use super::bitpack;
use super::format::*;
use crate::error::{Error, Result};
use crate::fs::{write_atomically, FileSystem};
use crate::schema::TableSchema;
use crate::types::ColumnType;

/// Rows per block of a sealed segment.
pub const SEALED_BLOCK_ROWS: usize = 64 * 1024;

/// Appends sections to the file image, recording their checksums.
struct Sections {
    bytes: Vec<u8>,
}

impl Sections {
    fn put(&mut self, data: &[u8], compress: bool) -> Result<Section> {
        let stored;
        let data = if compress {
            stored = zstd::bulk::compress(data, 3)
                .map_err(|e| Error::OutOfRange(format!("zstd: {e}")))?;
            // Compression only where it pays: a tenth smaller at least, since
            // every cold read of the section then decompresses it.
            if stored.len() * 10 <= data.len() * 9 {
                &stored[..]
            } else {
                return self.put(data, false);
            }
        } else {
            data
        };
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(data);
        Ok(Section {
            offset,
            len: data.len() as u64,
            crc: crc32fast::hash(data),
            zstd: compress,
        })
    }
}

/// Writes `batches` (the table's rows, in block schema: TEXT as dictionaries or
/// plain strings) as a segment file at `path`. Returns the footer written.
///
/// # Errors
/// I/O errors naming the file; a batch whose columns do not match the schema.
pub fn write_segment(
    fs: &dyn FileSystem,
    path: &Path,
    schema: &TableSchema,
    batches: &[RecordBatch],
) -> Result<Footer> {
    write_segment_ordered(fs, path, schema, batches).map(|(footer, _)| footer)
}

/// As [`write_segment`], also returning the order the rows were written in:
/// `order[new_row]` is the row's position in `batches` (`None` when the rows
/// kept their order). An upsert table moves its key map along with it.
///
/// # Errors
/// As [`write_segment`].
pub fn write_segment_ordered(
    fs: &dyn FileSystem,
    path: &Path,
    schema: &TableSchema,
    batches: &[RecordBatch],
) -> Result<(Footer, Option<Vec<u32>>)> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    // Row numbers are u32 everywhere in the file (NULL bitmaps, inverted
    // indexes), so this one check keeps every row number below from wrapping.
    u32_field(rows, "rows in a segment")?;
    let mut sections = Sections {
        bytes: HEAD_MAGIC.to_vec(),
    };
    let mut arrays = Vec::with_capacity(schema.columns.len());
    for (c, def) in schema.columns.iter().enumerate() {
        let parts: Vec<ArrayRef> = batches
            .iter()
            .map(|b| {
                b.columns()
                    .get(c)
                    .map(|a| plain(a))
                    .ok_or_else(|| Error::Arity(format!("a batch lacks column {}", def.name)))?
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        let column = if refs.is_empty() {
            arrow::array::new_empty_array(&def.ty.arrow_type())
        } else {
            arrow::compute::concat(&refs)
                .map_err(|e| Error::Arity(format!("column {}: {e}", def.name)))?
        };
        arrays.push(column);
    }
    let (arrays, order) = sort_rows(arrays, &schema.sort_key_indices())?;
    let mut columns = Vec::with_capacity(schema.columns.len());
    for (c, (def, column)) in schema.columns.iter().zip(&arrays).enumerate() {
        columns.push(write_column(
            &mut sections,
            &def.name,
            def.ty,
            column,
            schema.indexed(c),
        )?);
    }
    let time_column = schema.time_column_index();
    let time_stats = time_column.map(|t| (&columns[t].min, &columns[t].max));
    let (time_min, time_max) = match time_stats {
        Some((Some(Stat::Int(a)), Some(Stat::Int(b)))) => (Some(*a), Some(*b)),
        _ => (None, None),
    };
    let footer = Footer {
        version: FORMAT_VERSION,
        rows: rows as u64,
        block_rows: SEALED_BLOCK_ROWS as u32,
        time_column,
        time_min,
        time_max,
        columns,
    };
    let encoded = serde_json::to_vec(&footer).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        section: "footer".into(),
        detail: e.to_string(),
    })?;
    let mut image = sections.bytes;
    image.extend_from_slice(&encoded);
    image.extend_from_slice(&u32_field(encoded.len(), "footer bytes")?.to_le_bytes());
    image.extend_from_slice(&crc32fast::hash(&encoded).to_le_bytes());
    image.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    image.extend_from_slice(TAIL_MAGIC);

    write_atomically(fs, path, &image)?;
    Ok((footer, order))
}

/// `n` as a u32 field of the file, or an error saying the segment cannot hold
/// so much: the writer refuses what the format cannot represent rather than
/// wrapping.
fn u32_field(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        Error::OutOfRange(format!(
            "{what} ({n}): a segment file holds at most {}",
            u32::MAX
        ))
    })
}

/// The columns' rows ordered by the `key` columns (ascending, NULLs last), ties
/// kept in arrival order. Sorted by the time column, a time filter selects a run
/// of blocks; sorted by, say, `restaurant_id`, one restaurant's rows share a few
/// blocks and the zone maps skip the rest.
fn sort_rows(columns: Vec<ArrayRef>, key: &[usize]) -> Result<(Vec<ArrayRef>, Option<Vec<u32>>)> {
    let rows = columns.first().map_or(0, |c| c.len());
    let options = Some(arrow::compute::SortOptions {
        descending: false,
        nulls_first: false,
    });
    let mut sort_columns: Vec<arrow::compute::SortColumn> = key
        .iter()
        .filter_map(|&c| columns.get(c))
        .map(|values| arrow::compute::SortColumn {
            values: Arc::clone(values),
            options,
        })
        .collect();
    if sort_columns.is_empty() || rows < 2 {
        return Ok((columns, None));
    }
    // The row number as the last key makes the sort stable.
    sort_columns.push(arrow::compute::SortColumn {
        values: Arc::new(arrow::array::UInt32Array::from_iter_values(0..rows as u32)),
        options,
    });
    let order = arrow::compute::lexsort_to_indices(&sort_columns, None)
        .map_err(|e| Error::Arity(format!("sorting a segment: {e}")))?;
    if order
        .values()
        .iter()
        .enumerate()
        .all(|(i, &r)| i == r as usize)
    {
        return Ok((columns, None));
    }
    let sorted = columns
        .iter()
        .map(|c| {
            arrow::compute::take(c.as_ref(), &order, None)
                .map_err(|e| Error::Arity(format!("sorting a segment: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((sorted, Some(order.values().to_vec())))
}

/// Dictionary arrays decoded to their values; other arrays as they are.
/// True for a value on more than a sixteenth of a segment's rows (and more than
/// 4,096 of them): it is in nearly every block, so its bitmap prunes nothing,
/// and it costs about a bit per row. Such values are left out of the index and
/// a filter on them reads the dictionary ids instead.
fn is_dense(value_rows: u64, segment_rows: u64) -> bool {
    value_rows > 4096 && value_rows * 16 > segment_rows
}

/// Appends one inverted-index bitmap, tagged, in the smallest of three forms:
/// bit-packed gaps (sparse values spread over the segment), zstd-compressed
/// roaring (when that saves at least a tenth), or raw roaring (dense ones, and
/// runs: read with no decoding on every lookup).
fn put_bitmap(body: &mut Vec<u8>, bitmap: &RoaringBitmap, raw: &[u8]) -> Result<()> {
    let gaps = gap_encoding(bitmap);
    let frame = if raw.len() >= 64 {
        Some(zstd::bulk::compress(raw, 3).map_err(|e| Error::OutOfRange(format!("zstd: {e}")))?)
            .filter(|f| f.len() * 10 <= raw.len() * 9)
    } else {
        None
    };
    let best_other = frame.as_ref().map_or(raw.len(), Vec::len);
    if gaps.len() < best_other {
        body.push(BITMAP_GAPS);
        body.extend_from_slice(&gaps);
    } else if let Some(frame) = frame {
        body.push(BITMAP_ZSTD);
        body.extend_from_slice(&frame);
    } else {
        body.push(BITMAP_RAW);
        body.extend_from_slice(raw);
    }
    Ok(())
}

/// The rows of `bitmap` as [`BITMAP_GAPS`] bytes.
fn gap_encoding(bitmap: &RoaringBitmap) -> Vec<u8> {
    let rows: Vec<u32> = bitmap.iter().collect();
    let mut out = Vec::with_capacity(4 + rows.len());
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    let mut next = 0u64; // the row after the previous one
    let mut gaps = Vec::with_capacity(GAP_RUN);
    for run in rows.chunks(GAP_RUN) {
        gaps.clear();
        for &r in run {
            gaps.push(u64::from(r) - next);
            next = u64::from(r) + 1;
        }
        let width = bitpack::width_for(gaps.iter().copied().max().unwrap_or(0));
        out.push(width);
        out.extend_from_slice(&bitpack::pack(&gaps, width));
    }
    out
}

fn plain(a: &ArrayRef) -> Result<ArrayRef> {
    match a.data_type() {
        DataType::Dictionary(_, v) => {
            arrow::compute::cast(a, v).map_err(|e| Error::Arity(e.to_string()))
        }
        _ => Ok(std::sync::Arc::clone(a)),
    }
}

fn write_column(
    sections: &mut Sections,
    name: &str,
    ty: ColumnType,
    column: &ArrayRef,
    indexed: bool,
) -> Result<ColumnMeta> {
    let n = column.len();
    let mut nulls = RoaringBitmap::new();
    for i in 0..n {
        if column.is_null(i) {
            nulls.insert(i as u32);
        }
    }
    let nulls = if nulls.is_empty() {
        None
    } else {
        let mut buf = Vec::new();
        nulls
            .serialize_into(&mut buf)
            .map_err(|e| Error::io("null bitmap", e))?;
        Some(sections.put(&buf, false)?)
    };
    let (encoding, dictionary, index, values): (
        Encoding,
        Option<Section>,
        Option<Section>,
        Vec<Option<i64>>,
    ) = match ty {
        ColumnType::Double => {
            let a = column.as_primitive::<Float64Type>();
            let mut blocks = Vec::new();
            for start in (0..n).step_by(SEALED_BLOCK_ROWS) {
                let len = SEALED_BLOCK_ROWS.min(n - start);
                if let Some((decimals, ints)) = as_decimals(a, start, len) {
                    let mut meta = write_packed_block(sections, &ints)?;
                    let p = 10f64.powi(decimals.into());
                    let as_float = |s: Option<Stat>| match s {
                        Some(Stat::Int(i)) => Some(Stat::Float(i as f64 / p)),
                        other => other,
                    };
                    meta.min = as_float(meta.min);
                    meta.max = as_float(meta.max);
                    meta.decimals = Some(decimals);
                    blocks.push(meta);
                    continue;
                }
                let mut raw = Vec::with_capacity(len * 8);
                let (mut min, mut max) = (None::<f64>, None::<f64>);
                for i in start..start + len {
                    let v = if a.is_valid(i) { a.value(i) } else { 0.0 };
                    raw.extend_from_slice(&v.to_le_bytes());
                    if a.is_valid(i) {
                        min = Some(min.map_or(v, |m| pg_min(m, v)));
                        max = Some(max.map_or(v, |m| pg_max(m, v)));
                    }
                }
                blocks.push(BlockMeta {
                    rows: len as u32,
                    section: sections.put(&raw, true)?,
                    base: 0,
                    scale: 1,
                    width: 64,
                    delta_first: None,
                    decimals: None,
                    min: min.map(Stat::Float),
                    max: max.map(Stat::Float),
                });
            }
            let min =
                blocks
                    .iter()
                    .filter_map(|b| b.min)
                    .fold(None, |acc: Option<Stat>, s| match (acc, s) {
                        (None, s) => Some(s),
                        (Some(Stat::Float(a)), Stat::Float(b)) => Some(Stat::Float(pg_min(a, b))),
                        (acc, _) => acc,
                    });
            let max =
                blocks
                    .iter()
                    .filter_map(|b| b.max)
                    .fold(None, |acc: Option<Stat>, s| match (acc, s) {
                        (None, s) => Some(s),
                        (Some(Stat::Float(a)), Stat::Float(b)) => Some(Stat::Float(pg_max(a, b))),
                        (acc, _) => acc,
                    });
            return Ok(ColumnMeta {
                name: name.to_string(),
                ty,
                encoding: Encoding::RawF64,
                dictionary: None,
                index: None,
                keys: None,
                nulls,
                blocks,
                min,
                max,
            });
        }
        ColumnType::Text => {
            // Hash the values into a dictionary first (arrow's kernel),
            // then sort only the distinct ones: sorting every row's string
            // and searching it again cost a seal or an import a third of
            // its time in string comparisons.
            let encoded = arrow::compute::cast(
                column,
                &DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8)),
            )
            .map_err(|e| Error::Arity(format!("column {name}: {e}")))?;
            let encoded = encoded.as_dictionary::<arrow::datatypes::UInt32Type>();
            let values = encoded.values().as_string::<i32>();
            let mut by_value: Vec<u32> = (0..values.len() as u32).collect();
            by_value
                .sort_unstable_by(|x, y| values.value(*x as usize).cmp(values.value(*y as usize)));
            // rank[first-seen id] = its place among the sorted distinct values.
            let mut rank = vec![0u32; values.len()];
            let mut distinct: Vec<&str> = Vec::with_capacity(values.len());
            for v in by_value {
                let text = values.value(v as usize);
                if distinct.last() != Some(&text) {
                    distinct.push(text);
                }
                rank[v as usize] = (distinct.len() - 1) as u32;
            }
            let ids: Vec<Option<i64>> = encoded
                .keys()
                .iter()
                .map(|k| k.map(|k| i64::from(rank[k as usize])))
                .collect();
            // Dictionary: count, offsets, bytes.
            let mut dict = Vec::new();
            dict.extend_from_slice(&(distinct.len() as u32).to_le_bytes());
            let mut offset = 0usize;
            dict.extend_from_slice(&0u32.to_le_bytes());
            for s in &distinct {
                offset += s.len();
                let end = u32_field(offset, "dictionary bytes of a column")?;
                dict.extend_from_slice(&end.to_le_bytes());
            }
            for s in &distinct {
                dict.extend_from_slice(s.as_bytes());
            }
            // Inverted index: one bitmap of rows per dictionary id.
            let index = if indexed {
                let mut bitmaps = vec![RoaringBitmap::new(); distinct.len()];
                for (row, id) in ids.iter().enumerate() {
                    if let Some(id) = id {
                        // Rows come in order: appending is the cheap insert.
                        let _ = bitmaps[*id as usize].try_push(row as u32);
                    }
                }
                Some(write_index(sections, &bitmaps, n)?)
            } else {
                None
            };
            (
                Encoding::BitPacked,
                Some(sections.put(&dict, true)?),
                index,
                ids,
            )
        }
        ColumnType::Boolean => (
            Encoding::BitPacked,
            None,
            None,
            column
                .as_boolean()
                .iter()
                .map(|v| v.map(i64::from))
                .collect(),
        ),
        ColumnType::Integer => (
            Encoding::BitPacked,
            None,
            None,
            column
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(i64::from))
                .collect(),
        ),
        ColumnType::BigInt => (
            Encoding::BitPacked,
            None,
            None,
            column.as_primitive::<Int64Type>().iter().collect(),
        ),
        // The scaled integers; a stored numeric has at most 18 digits.
        ColumnType::Numeric { .. } => (
            Encoding::BitPacked,
            None,
            None,
            column
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .iter()
                .map(|v| v.map(|v| v as i64))
                .collect(),
        ),
        ColumnType::Timestamp | ColumnType::TimestampTz => (
            Encoding::BitPacked,
            None,
            None,
            column
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect(),
        ),
    };
    let (keys, index) = match ty {
        ColumnType::Integer | ColumnType::BigInt if indexed => {
            match integer_index(sections, &values)? {
                Some((keys, index)) => (Some(keys), Some(index)),
                None => (None, index),
            }
        }
        _ => (None, index),
    };
    let mut blocks = Vec::new();
    for start in (0..n).step_by(SEALED_BLOCK_ROWS) {
        let len = SEALED_BLOCK_ROWS.min(n - start);
        blocks.push(write_packed_block(sections, &values[start..start + len])?);
    }
    let min = blocks.iter().filter_map(|b| b.min).min_by_key(stat_int);
    let max = blocks.iter().filter_map(|b| b.max).max_by_key(stat_int);
    Ok(ColumnMeta {
        name: name.to_string(),
        ty,
        encoding,
        dictionary,
        index,
        keys,
        nulls,
        blocks,
        min,
        max,
    })
}

/// An integer column's key directory and inverted index: its distinct values,
/// sorted (`[count u32][value i64 LE]...`, stored raw so that a lookup
/// binary-searches the mapped bytes without decoding anything), and one bitmap
/// of rows per value, in the directory's order. `None` when the values are
/// mostly distinct (more than one per eight rows, and more than
/// [`MOSTLY_DISTINCT_FLOOR`]): an id-like column whose index would outweigh
/// the column and select a row or two a value.
fn integer_index(
    sections: &mut Sections,
    values: &[Option<i64>],
) -> Result<Option<(Section, Section)>> {
    let limit = MOSTLY_DISTINCT_FLOOR.max(values.len() / 8);
    // One pass numbers the distinct values in first-seen order and gives up
    // as soon as the column proves mostly distinct (an id column costs a
    // hash pass, not a sort of every row).
    let mut seen: std::collections::HashMap<i64, u32> = std::collections::HashMap::new();
    let mut first_seen: Vec<u32> = Vec::with_capacity(values.len());
    for v in values {
        let Some(v) = v else {
            first_seen.push(u32::MAX);
            continue;
        };
        let next = seen.len() as u32;
        first_seen.push(*seen.entry(*v).or_insert(next));
        if seen.len() > limit {
            return Ok(None);
        }
    }
    let mut keys: Vec<(i64, u32)> = seen.into_iter().collect();
    keys.sort_unstable();
    let mut position = vec![0u32; keys.len()];
    for (at, (_, number)) in keys.iter().enumerate() {
        position[*number as usize] = at as u32;
    }
    let mut bitmaps = vec![RoaringBitmap::new(); keys.len()];
    for (row, number) in first_seen.iter().enumerate() {
        if *number != u32::MAX {
            // Rows come in order: appending is the cheap insert.
            let _ = bitmaps[position[*number as usize] as usize].try_push(row as u32);
        }
    }
    let mut directory = Vec::with_capacity(4 + keys.len() * 8);
    directory
        .extend_from_slice(&u32_field(keys.len(), "distinct values of a column")?.to_le_bytes());
    for (k, _) in &keys {
        directory.extend_from_slice(&k.to_le_bytes());
    }
    let keys = sections.put(&directory, false)?;
    let index = write_index(sections, &bitmaps, values.len())?;
    Ok(Some((keys, index)))
}

/// Distinct values an integer column may have in any case and still be
/// indexed (a small segment's restaurant ids are all distinct).
const MOSTLY_DISTINCT_FLOOR: usize = 4096;

/// Writes an inverted index: `[count u32][count + 1 offsets u32][bitmaps]`,
/// each bitmap tagged ([`BITMAP_DENSE`] for a value on too many of the `n`
/// rows to pay).
fn write_index(sections: &mut Sections, bitmaps: &[RoaringBitmap], n: usize) -> Result<Section> {
    let mut index = Vec::new();
    index.extend_from_slice(&(bitmaps.len() as u32).to_le_bytes());
    let mut body = Vec::new();
    let mut offsets = vec![0u32];
    let mut raw = Vec::new();
    for b in bitmaps {
        if is_dense(b.len(), n as u64) {
            body.push(BITMAP_DENSE);
            offsets.push(u32_field(body.len(), "inverted index bytes")?);
            continue;
        }
        raw.clear();
        b.serialize_into(&mut raw)
            .map_err(|e| Error::io("inverted index", e))?;
        put_bitmap(&mut body, b, &raw)?;
        offsets.push(u32_field(body.len(), "inverted index bytes")?);
    }
    for o in offsets {
        index.extend_from_slice(&o.to_le_bytes());
    }
    index.extend_from_slice(&body);
    sections.put(&index, false)
}

fn stat_int(s: &Stat) -> i64 {
    match s {
        Stat::Int(v) => *v,
        Stat::Float(f) => *f as i64,
    }
}

/// The block's doubles as integers `n` with `value == n / 10^d` exactly, for the
/// smallest `d` in 0..=4 that works for every value (prices, durations in tenths,
/// percentages: most measured doubles are short decimals). `None` if no `d`
/// does, or for NaN, infinities and -0.0, which stay raw. Bit-packed, a price
/// in cents takes two bytes where the raw double took eight (zstd cannot find
/// that structure in IEEE bits).
fn as_decimals(
    a: &arrow::array::Float64Array,
    start: usize,
    len: usize,
) -> Option<(u8, Vec<Option<i64>>)> {
    const LIMIT: f64 = (1u64 << 52) as f64;
    'exponent: for d in 0..=4u8 {
        let p = 10f64.powi(d.into());
        let mut ints = Vec::with_capacity(len);
        for i in start..start + len {
            if a.is_null(i) {
                ints.push(None);
                continue;
            }
            let v = a.value(i);
            let n = (v * p).round();
            let negative_zero = v == 0.0 && v.is_sign_negative();
            if !v.is_finite()
                || negative_zero
                || n.abs() >= LIMIT
                || (n / p).to_bits() != v.to_bits()
            {
                continue 'exponent;
            }
            ints.push(Some(n as i64));
        }
        return Some((d, ints));
    }
    None
}

/// Frame of reference, then a common divisor, then bit-packing; over the values or,
/// when that packs narrower (sorted or slowly changing columns such as event
/// time), over the differences between neighbours. NULL slots hold the previous
/// value, or the first present one (the NULL bitmap says they are NULL).
fn write_packed_block(sections: &mut Sections, values: &[Option<i64>]) -> Result<BlockMeta> {
    let present = || values.iter().flatten().copied();
    let min = present().min();
    let max = present().max();
    let base = min.unwrap_or(0);
    let first_present = present().next().unwrap_or(base);
    let filled: Vec<i64> = values
        .iter()
        .scan(first_present, |last, v| {
            *last = v.unwrap_or(*last);
            Some(*last)
        })
        .collect();
    let mut packing = Packing::frame_of_reference(&filled, base);
    if let Some(delta) = Packing::delta(&filled) {
        if delta.width < packing.width {
            packing = delta;
        }
    }
    let packed = bitpack::pack(&packing.packed, packing.width);
    Ok(BlockMeta {
        rows: values.len() as u32,
        // Skewed values (a few popular items) leave bit-packed bytes zstd can
        // shrink further.
        section: sections.put(&packed, true)?,
        base: packing.base,
        scale: packing.scale,
        width: packing.width,
        delta_first: packing.delta_first,
        decimals: None,
        min: min.map(Stat::Int),
        max: max.map(Stat::Int),
    })
}

/// One way of packing a block's integers.
struct Packing {
    base: i64,
    scale: u64,
    width: u8,
    delta_first: Option<i64>,
    packed: Vec<u64>,
}

impl Packing {
    /// `(value - base) / scale`, `base` the smallest value.
    fn frame_of_reference(values: &[i64], base: i64) -> Packing {
        let offsets: Vec<u64> = values.iter().map(|v| v.wrapping_sub(base) as u64).collect();
        Packing::scaled(offsets, base, None)
    }

    /// Frame of reference over the differences between neighbours (the first
    /// difference is taken as the smallest, so it packs as 0). `None` if a
    /// difference does not fit in an i64.
    fn delta(values: &[i64]) -> Option<Packing> {
        let (&first, _) = values.split_first()?;
        let diffs: Vec<i64> = values
            .windows(2)
            .map(|w| w[1].checked_sub(w[0]))
            .collect::<Option<_>>()?;
        let base = diffs.iter().copied().min().unwrap_or(0);
        let offsets: Vec<u64> = std::iter::once(0)
            .chain(diffs.iter().map(|d| d.wrapping_sub(base) as u64))
            .collect();
        Some(Packing::scaled(offsets, base, Some(first)))
    }

    fn scaled(offsets: Vec<u64>, base: i64, delta_first: Option<i64>) -> Packing {
        let scale = bitpack::gcd_of(offsets.iter().copied()).max(1);
        let packed: Vec<u64> = offsets.iter().map(|d| d / scale).collect();
        let width = bitpack::width_for(packed.iter().copied().max().unwrap_or(0));
        Packing {
            base,
            scale,
            width,
            delta_first,
            packed,
        }
    }
}

/// The smaller of two doubles as PostgreSQL orders them (NaN above every number).
fn pg_min(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        b
    } else if b.is_nan() {
        a
    } else {
        a.min(b)
    }
}

/// The larger of two doubles as PostgreSQL orders them (NaN above every number).
fn pg_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}
