//! A few rows of a sealed segment's column, read without decoding its blocks.
//!
//! A point query ("this restaurant's orders") selects a handful of rows in
//! each of a segment's blocks. Decoding each 64K-row block to take ten rows
//! out of it, then joining the pieces, cost more than the rest of the query.
//! A bit-packed block stores value `r` at bits `r * width` onward, so one
//! row's code is two word reads away; only delta-packed blocks (a running
//! sum) need decoding, and those are decoded once and cached as usual.

use std::borrow::Cow;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, UInt8Array};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::datatypes::{
    Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt32Type,
};

use super::super::bitpack;
use super::super::cache::{self, Form};
use super::super::format::{BlockMeta, Encoding};
use super::SealedSegment;
use crate::error::Result;
use crate::types::ColumnType;

/// Values gathered so far: doubles, or integers of any other stored type
/// (TEXT as dictionary ids).
enum Gathered {
    Integers(Vec<i64>),
    Doubles(Vec<f64>),
}

impl SealedSegment {
    /// The values of column `c` at `rows` (row numbers in the segment,
    /// ascending), as one array of the column's block type: what
    /// [`SealedSegment::read_block`] and a take of those rows would give, TEXT
    /// as a dictionary array over the segment's dictionary.
    ///
    /// # Errors
    /// [`crate::Error::Corrupt`] naming the file and block, for a row past
    /// the segment's end or a damaged block.
    pub fn gather(&self, c: usize, rows: &[u32]) -> Result<ArrayRef> {
        let meta = self.column(c)?;
        let block_rows = self.footer.block_rows.max(1) as usize;
        let mut out = if meta.ty == ColumnType::Double {
            Gathered::Doubles(Vec::with_capacity(rows.len()))
        } else {
            Gathered::Integers(Vec::with_capacity(rows.len()))
        };
        for run in rows.chunk_by(|a, b| *a as usize / block_rows == *b as usize / block_rows) {
            let b = run[0] as usize / block_rows;
            let first = (b * block_rows) as u32;
            let in_block = run.iter().map(|r| (r - first) as usize);
            self.gather_block(c, b, in_block, &mut out)?;
        }
        let validity = match meta.nulls {
            Some(_) => {
                let nulls = self.nulls(c)?;
                Some(NullBuffer::from(
                    rows.iter().map(|r| !nulls.contains(*r)).collect::<Vec<_>>(),
                ))
            }
            None => None,
        };
        let name = || format!("column {} rows {:?}..", meta.name, rows.first());
        match out {
            Gathered::Doubles(values) => Ok(std::sync::Arc::new(Float64Array::new(
                values.into(),
                validity,
            ))),
            Gathered::Integers(values) => self.integer_array(c, values, validity, name),
        }
    }

    /// Appends the values of block `b` of column `c` at `rows` (within the block).
    fn gather_block(
        &self,
        c: usize,
        b: usize,
        rows: impl Iterator<Item = usize> + Clone,
        out: &mut Gathered,
    ) -> Result<()> {
        let meta = self.column(c)?;
        let name = || format!("column {} block {b}", meta.name);
        let block = meta
            .blocks
            .get(b)
            .ok_or_else(|| self.corrupt(name(), "no such block"))?;
        let count = block.rows as usize;
        if rows.clone().any(|r| r >= count) {
            return Err(self.corrupt(name(), format!("a row past the block's {count}")));
        }
        if block.delta_first.is_some() {
            // A running sum: no value stands alone.
            let decoded = self.read_block(c, b)?;
            return push_decoded(&decoded, rows, out)
                .ok_or_else(|| self.corrupt(name(), "decoded block of an unexpected type"));
        }
        let bytes = self.packed_bytes(c, b, block)?;
        touch(&bytes, rows.clone(), block_bits(meta.encoding, block));
        let short = || self.corrupt(name(), "data shorter than its row count");
        if meta.encoding == Encoding::RawF64 && block.decimals.is_none() {
            let Gathered::Doubles(values) = out else {
                return Err(self.corrupt(name(), "raw doubles outside a DOUBLE column"));
            };
            for r in rows {
                let b = bytes.get(r * 8..r * 8 + 8).ok_or_else(short)?;
                values.push(f64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]));
            }
            return Ok(());
        }
        let value = |r: usize| {
            bitpack::get(&bytes, block.width, r)
                .map(|p| block.base.wrapping_add(p.wrapping_mul(block.scale) as i64))
        };
        match out {
            Gathered::Integers(values) => {
                for r in rows {
                    values.push(value(r).ok_or_else(short)?);
                }
            }
            Gathered::Doubles(values) => {
                let Some(decimals) = block.decimals else {
                    return Err(self.corrupt(name(), "a packed double block without decimals"));
                };
                let p = 10f64.powi(decimals.into());
                for r in rows {
                    values.push(value(r).ok_or_else(short)? as f64 / p);
                }
            }
        }
        Ok(())
    }

    /// Block `b`'s stored bytes, checksum verified: straight from the map, or
    /// decompressed once and cached when the block is zstd-compressed.
    fn packed_bytes(&self, c: usize, b: usize, block: &BlockMeta) -> Result<PackedBytes<'_>> {
        let name = || format!("column {} block {b}", self.footer.columns[c].name);
        if !block.section.zstd {
            return Ok(PackedBytes::Mapped(self.section(&block.section, name)?));
        }
        let key = (self.cache_key, c, b, Form::Packed);
        if let Some(hit) = cache::get(key) {
            if let Some(bytes) = hit.as_any().downcast_ref::<UInt8Array>() {
                return Ok(PackedBytes::Cached(bytes.values().inner().clone()));
            }
        }
        let bytes = self.section(&block.section, name)?.into_owned();
        let array = UInt8Array::from(bytes);
        let buffer = array.values().inner().clone();
        cache::put(key, &(std::sync::Arc::new(array) as ArrayRef));
        Ok(PackedBytes::Cached(buffer))
    }
}

/// A block's packed bytes: mapped, or decompressed and shared with the cache.
enum PackedBytes<'a> {
    Mapped(Cow<'a, [u8]>),
    Cached(Buffer),
}

impl std::ops::Deref for PackedBytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            PackedBytes::Mapped(bytes) => bytes,
            PackedBytes::Cached(buffer) => buffer.as_slice(),
        }
    }
}

/// Bits per row of a block that is not delta-packed.
fn block_bits(encoding: Encoding, block: &BlockMeta) -> usize {
    if encoding == Encoding::RawF64 && block.decimals.is_none() {
        64
    } else {
        usize::from(block.width)
    }
}

/// Reads one byte of each row's value before the values are decoded. The
/// rows lie far apart, so each read misses the CPU's caches; these reads
/// depend on nothing and branch on nothing, so the processor has many of
/// them in flight at once, where the decoding loop (which branches on each
/// value's position in its word) waited for one miss after another.
fn touch(bytes: &[u8], rows: impl Iterator<Item = usize>, bits: usize) {
    let mut sum = 0u8;
    for r in rows {
        sum ^= bytes.get(r * bits / 8).copied().unwrap_or(0);
    }
    std::hint::black_box(sum);
}

/// Appends the values of a decoded block at `rows`; `None` if its type is not
/// one a segment decodes to.
fn push_decoded(
    array: &ArrayRef,
    rows: impl Iterator<Item = usize>,
    out: &mut Gathered,
) -> Option<()> {
    match out {
        Gathered::Doubles(values) => {
            let a = array.as_primitive_opt::<Float64Type>()?;
            values.extend(rows.map(|r| a.value(r)));
        }
        Gathered::Integers(values) => {
            if let Some(a) = array.as_boolean_opt() {
                values.extend(rows.map(|r| i64::from(a.value(r))));
            } else if let Some(a) = array.as_primitive_opt::<Int32Type>() {
                values.extend(rows.map(|r| i64::from(a.value(r))));
            } else if let Some(a) = array.as_primitive_opt::<Int64Type>() {
                values.extend(rows.map(|r| a.value(r)));
            } else if let Some(a) = array.as_primitive_opt::<TimestampMicrosecondType>() {
                values.extend(rows.map(|r| a.value(r)));
            } else if let Some(a) = array.as_primitive_opt::<Decimal128Type>() {
                // Stored as 64-bit integers: the cast cannot truncate.
                values.extend(rows.map(|r| a.value(r) as i64));
            } else {
                let keys = array.as_dictionary_opt::<UInt32Type>()?.keys();
                values.extend(rows.map(|r| i64::from(keys.value(r))));
            }
        }
    }
    Some(())
}
