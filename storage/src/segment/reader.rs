//! A sealed segment, read through a memory map. Opening reads only the tail and the
//! footer (and checks them); a column's block is decoded when a query asks for it,
//! after its section's checksum is verified. Every length and offset read from disk
//! is checked against the file before it is used: a damaged file is an error naming
//! the file and the section, never a panic or a wrong answer.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array,
    StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::buffer::NullBuffer;
use memmap2::Mmap;
use roaring::RoaringBitmap;

use super::bitpack;
use super::cache::{self, Form};
use super::format::*;
use crate::error::{Error, Result};
use crate::types::{ColumnType, UTC};

mod gather;

/// The most bytes one section may decompress to: a damaged size field must
/// be an error, not an allocation that takes the process down.
const MAX_SECTION_BYTES: u64 = 1 << 30;

/// A zstd frame's bytes, decompressed with this thread's reusable context.
/// A new context per call (what `zstd::stream::decode_all` makes) allocates
/// and clears a large workspace: with a sort key a restaurant's posting is
/// one compressed run per segment, and creating contexts took a third of
/// its dashboard query.
fn decompress(frame: &[u8]) -> std::result::Result<Vec<u8>, String> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_SECTION_BYTES => size as usize,
        Ok(Some(size)) => return Err(format!("zstd: a frame of {size} bytes")),
        // Frames Sluice writes record their size; any other is read as a stream.
        _ => return zstd::stream::decode_all(frame).map_err(|e| format!("zstd: {e}")),
    };
    CONTEXT.with(|context| {
        let mut context = context.borrow_mut();
        if context.is_none() {
            *context = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        match context.as_mut() {
            Some(d) => d.decompress(frame, size).map_err(|e| format!("zstd: {e}")),
            None => Err("zstd: no context".into()),
        }
    })
}

/// An open, immutable segment file.
pub struct SealedSegment {
    path: PathBuf,
    map: Mmap,
    footer: Footer,
    /// Offsets of sections whose checksum has been verified (the file never
    /// changes, so once is enough).
    verified: Mutex<HashSet<u64>>,
    /// This segment's key in the process-wide block cache (`super::cache`).
    cache_key: u64,
}

/// A segment's sorted distinct values of one integer column, as stored: the
/// position of a value is its entry in the column's inverted index.
#[derive(Clone, Copy, Debug)]
pub struct KeyDirectory<'a> {
    values: &'a [u8],
}

impl KeyDirectory<'_> {
    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.values.len() / 8
    }

    /// True if the column had no non-NULL value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Value at position `i`.
    pub fn get(&self, i: usize) -> i64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.values[i * 8..i * 8 + 8]);
        i64::from_le_bytes(word)
    }

    /// How many leading values `before` holds for: the values are sorted, so
    /// `before` must hold on a prefix (`|v| v < x` gives the position of `x`).
    pub fn partition(&self, before: impl Fn(i64) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if before(self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// A frame-of-reference block as its packed codes: row `i` holds
/// `base + codes[i] * scale`. Comparing a column with a constant on codes of one,
/// two or four bytes reads a quarter or less of what the decoded `i64`s take,
/// which is what a one-restaurant filter over every block is bound by.
#[derive(Clone, Debug)]
pub struct BlockCodes {
    /// The frame of reference.
    pub base: i64,
    /// The common step of the values (at least 1).
    pub scale: u64,
    /// `UInt8`, `UInt16` or `UInt32` codes, NULL where the column is NULL.
    pub codes: ArrayRef,
}

impl Drop for SealedSegment {
    fn drop(&mut self) {
        cache::forget_segment(self.cache_key);
    }
}

impl std::fmt::Debug for SealedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSegment")
            .field("path", &self.path)
            .field("rows", &self.footer.rows)
            .finish()
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Largest block a reader accepts: sixteen times what the writer makes, so a
/// damaged footer cannot ask a decoder for gigabytes.
const MAX_BLOCK_ROWS: u32 = 1 << 20;

/// Largest `decimals` of a packed double block (the writer tries 0 to 4; a
/// larger power of ten would no longer be exact).
const MAX_DECIMALS: u8 = 15;

/// Checks every footer field the reader relies on: the version against the
/// tail's, each section inside the data area, block boundaries the same in
/// every column and at most `block_rows` rows, bit widths, scales and
/// encodings each column's type allows. The error names the section.
fn check_footer(
    footer: &Footer,
    tail_version: u32,
    data_end: u64,
) -> std::result::Result<(), (String, String)> {
    let fail = |section: &str, detail: String| Err((section.to_string(), detail));
    if footer.version != tail_version {
        return fail(
            "footer",
            format!(
                "version {} but the tail says {tail_version}",
                footer.version
            ),
        );
    }
    if footer.rows > u64::from(u32::MAX) {
        return fail(
            "footer",
            format!("{} rows: more than row numbers hold", footer.rows),
        );
    }
    if footer.block_rows == 0 || footer.block_rows > MAX_BLOCK_ROWS {
        return fail(
            "footer",
            format!(
                "blocks of {} rows; at most {MAX_BLOCK_ROWS}",
                footer.block_rows
            ),
        );
    }
    if let Some(time) = footer.time_column {
        if !footer.columns.is_empty() && time >= footer.columns.len() {
            return fail(
                "footer",
                format!("time column {time} of {} columns", footer.columns.len()),
            );
        }
    }
    let in_bounds = |s: &Section| {
        s.offset >= HEAD_MAGIC.len() as u64
            && s.offset
                .checked_add(s.len)
                .is_some_and(|end| end <= data_end)
    };
    let first = footer.columns.first();
    for c in &footer.columns {
        let column = format!("column {}", c.name);
        let text = c.ty == ColumnType::Text;
        let integer = matches!(c.ty, ColumnType::Integer | ColumnType::BigInt);
        // Before version 4 every TEXT column had an index and nothing else did;
        // since, an index is optional, and an integer column's comes with its
        // key directory.
        let index_ok = if footer.version < 4 {
            text == c.index.is_some()
        } else if integer {
            c.keys.is_some() == c.index.is_some()
        } else {
            text || c.index.is_none()
        };
        if text != c.dictionary.is_some() || !index_ok || (c.keys.is_some() && !integer) {
            return fail(
                &column,
                "a dictionary belongs to TEXT columns, keys to integer ones, an index to either"
                    .into(),
            );
        }
        if c.encoding == Encoding::RawF64 && c.ty != ColumnType::Double {
            return fail(&column, format!("raw doubles in a {:?} column", c.ty));
        }
        for (kind, s) in [
            ("dictionary", &c.dictionary),
            ("index", &c.index),
            ("keys", &c.keys),
            ("nulls", &c.nulls),
        ] {
            if let Some(s) = s.as_ref().filter(|s| !in_bounds(s)) {
                return fail(
                    &format!("{column} {kind}"),
                    format!("range {}+{} outside the data", s.offset, s.len),
                );
            }
        }
        if first.is_some_and(|f| f.blocks.len() != c.blocks.len()) {
            return fail(
                &column,
                "a different number of blocks from the first column".into(),
            );
        }
        let mut rows = 0u64;
        for (i, b) in c.blocks.iter().enumerate() {
            let block = format!("{column} block {i}");
            if !in_bounds(&b.section) {
                return fail(
                    &block,
                    format!(
                        "range {}+{} outside the data",
                        b.section.offset, b.section.len
                    ),
                );
            }
            let last = i + 1 == c.blocks.len();
            if b.rows > footer.block_rows || (!last && b.rows != footer.block_rows) {
                return fail(
                    &block,
                    format!("{} rows; blocks hold {}", b.rows, footer.block_rows),
                );
            }
            if first.is_some_and(|f| f.blocks[i].rows != b.rows) {
                return fail(&block, "rows differ from the first column's block".into());
            }
            if b.width > 64 || b.scale == 0 || b.decimals.is_some_and(|d| d > MAX_DECIMALS) {
                return fail(
                    &block,
                    format!(
                        "width {}, scale {}, decimals {:?}",
                        b.width, b.scale, b.decimals
                    ),
                );
            }
            if b.decimals.is_some() && c.ty != ColumnType::Double {
                return fail(&block, "decimals outside a DOUBLE column".into());
            }
            rows += u64::from(b.rows);
        }
        if rows != footer.rows {
            return fail(
                &column,
                format!("blocks hold {rows} rows, footer says {}", footer.rows),
            );
        }
    }
    Ok(())
}

impl SealedSegment {
    /// Opens a segment file: maps it, checks the magic, version and footer checksum,
    /// and that every section lies inside the data area.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read; [`Error::Corrupt`] naming the file and
    /// section if it is truncated, damaged or of another format version.
    pub fn open(path: &Path) -> Result<Self> {
        let corrupt = |section: &str, detail: String| Error::Corrupt {
            path: path.to_path_buf(),
            section: section.to_string(),
            detail,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: segment files are immutable once renamed into place (they are
        // written under a temporary name, and never modified or truncated after), so
        // the mapping cannot change under us while the segment is open.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let len = map.len();
        if len < HEAD_MAGIC.len() + TAIL_LEN || &map[..HEAD_MAGIC.len()] != HEAD_MAGIC {
            return Err(corrupt(
                "header",
                format!("not a Sluice segment ({len} bytes)"),
            ));
        }
        let tail = &map[len - TAIL_LEN..];
        if &tail[12..16] != TAIL_MAGIC {
            return Err(corrupt(
                "tail",
                "bad magic: truncated or not a segment".into(),
            ));
        }
        let footer_len = read_u32(tail, 0).unwrap_or(0) as usize;
        let footer_crc = read_u32(tail, 4).unwrap_or(0);
        let version = read_u32(tail, 8).unwrap_or(0);
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(corrupt(
                "tail",
                format!(
                    "format version {version}, this build reads {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
                ),
            ));
        }
        let data_end = (len - TAIL_LEN)
            .checked_sub(footer_len)
            .filter(|end| *end >= HEAD_MAGIC.len())
            .ok_or_else(|| {
                corrupt(
                    "tail",
                    format!("footer length {footer_len} exceeds the file"),
                )
            })?;
        let footer_bytes = &map[data_end..len - TAIL_LEN];
        if crc32fast::hash(footer_bytes) != footer_crc {
            return Err(corrupt("footer", "checksum mismatch".into()));
        }
        let footer: Footer =
            serde_json::from_slice(footer_bytes).map_err(|e| corrupt("footer", e.to_string()))?;
        check_footer(&footer, version, data_end as u64)
            .map_err(|(section, detail)| corrupt(&section, detail))?;
        Ok(SealedSegment {
            path: path.to_path_buf(),
            verified: Mutex::new(HashSet::new()),
            cache_key: cache::new_segment_key(),
            map,
            footer,
        })
    }

    /// Checks that the segment's columns are the table's: the same names and
    /// types in the same order, and the same time column.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and the first column that differs.
    pub fn check_schema(&self, schema: &crate::schema::TableSchema) -> Result<()> {
        if self.footer.columns.len() != schema.columns.len() {
            return Err(self.corrupt(
                "footer".into(),
                format!(
                    "{} columns; the table has {}",
                    self.footer.columns.len(),
                    schema.columns.len()
                ),
            ));
        }
        for (meta, def) in self.footer.columns.iter().zip(&schema.columns) {
            if meta.name != def.name || meta.ty != def.ty {
                return Err(self.corrupt(
                    format!("column {}", meta.name),
                    format!(
                        "{:?} column; the table has {} {:?}",
                        meta.ty, def.name, def.ty
                    ),
                ));
            }
        }
        if schema.time_column_index() != self.footer.time_column {
            return Err(self.corrupt(
                "footer".into(),
                format!("time column {:?}, not the table's", self.footer.time_column),
            ));
        }
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The footer: rows, time range, columns, zone maps.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Rows in the segment.
    pub fn rows(&self) -> usize {
        self.footer.rows as usize
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> usize {
        self.map.len()
    }

    fn corrupt(&self, section: String, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            section,
            detail: detail.into(),
        }
    }

    /// A section's bytes, checksum verified and decompressed.
    fn section(
        &self,
        s: &Section,
        name: impl Fn() -> String,
    ) -> Result<std::borrow::Cow<'_, [u8]>> {
        // `open` checked the range against the file.
        let start = s.offset as usize;
        let stored = self
            .map
            .get(start..start + s.len as usize)
            .ok_or_else(|| self.corrupt(name(), "range outside the file"))?;
        let known_good = self
            .verified
            .lock()
            .map(|v| v.contains(&s.offset))
            .unwrap_or(false);
        if !known_good {
            if crc32fast::hash(stored) != s.crc {
                return Err(self.corrupt(name(), "checksum mismatch"));
            }
            if let Ok(mut v) = self.verified.lock() {
                v.insert(s.offset);
            }
        }
        if s.zstd {
            let out = decompress(stored).map_err(|e| self.corrupt(name(), e))?;
            Ok(std::borrow::Cow::Owned(out))
        } else {
            Ok(std::borrow::Cow::Borrowed(stored))
        }
    }

    fn column(&self, c: usize) -> Result<&ColumnMeta> {
        self.footer
            .columns
            .get(c)
            .ok_or_else(|| self.corrupt(format!("column {c}"), "no such column"))
    }

    /// The sorted dictionary of a TEXT column, decoded once and shared by its
    /// blocks while it stays in the block cache (which charges it once).
    pub fn dictionary(&self, c: usize) -> Result<Arc<StringArray>> {
        let key = (self.cache_key, c, 0, Form::Dictionary);
        if let Some(hit) = cache::get(key) {
            return Ok(Arc::new(StringArray::from(hit.to_data())));
        }
        let meta = self.column(c)?;
        let name = || format!("column {} dictionary", meta.name);
        let section = meta
            .dictionary
            .as_ref()
            .ok_or_else(|| self.corrupt(name(), "missing"))?;
        let bytes = self.section(section, name)?;
        let count = read_u32(&bytes, 0).ok_or_else(|| self.corrupt(name(), "truncated"))? as usize;
        let offsets_end = 4usize
            .checked_add(
                count
                    .checked_add(1)
                    .and_then(|n| n.checked_mul(4))
                    .ok_or_else(|| self.corrupt(name(), "bad count"))?,
            )
            .ok_or_else(|| self.corrupt(name(), "bad count"))?;
        let data = bytes
            .get(offsets_end..)
            .ok_or_else(|| self.corrupt(name(), "truncated offsets"))?;
        let mut values = Vec::with_capacity(count);
        for i in 0..count {
            let (a, b) = (read_u32(&bytes, 4 + i * 4), read_u32(&bytes, 8 + i * 4));
            let (Some(a), Some(b)) = (a, b) else {
                return Err(self.corrupt(name(), "truncated offsets"));
            };
            let s = data
                .get(a as usize..b as usize)
                .and_then(|s| std::str::from_utf8(s).ok())
                .ok_or_else(|| {
                    self.corrupt(name(), format!("entry {i} is out of range or not UTF-8"))
                })?;
            values.push(s);
        }
        let dict = Arc::new(StringArray::from(values));
        let shared: ArrayRef = Arc::clone(&dict) as ArrayRef;
        cache::put(key, &shared);
        Ok(dict)
    }

    /// Whether column `c` has an inverted index.
    pub fn has_index(&self, c: usize) -> bool {
        self.footer
            .columns
            .get(c)
            .is_some_and(|m| m.index.is_some())
    }

    /// The key directory of indexed integer column `c`: its distinct values,
    /// sorted, read straight from the mapped file (nothing decoded, no block
    /// touched); `None` if the column has none.
    ///
    /// # Errors
    /// A damaged section, naming the file.
    pub fn keys(&self, c: usize) -> Result<Option<KeyDirectory<'_>>> {
        let meta = self.column(c)?;
        let Some(section) = meta.keys.as_ref() else {
            return Ok(None);
        };
        let name = || format!("column {} keys", meta.name);
        let bytes = self.section(section, name)?;
        let std::borrow::Cow::Borrowed(bytes) = bytes else {
            return Err(self.corrupt(name(), "compressed, which keys never are"));
        };
        let count = read_u32(bytes, 0).ok_or_else(|| self.corrupt(name(), "truncated"))? as usize;
        let values = bytes
            .get(4..)
            .filter(|v| v.len() == count * 8)
            .ok_or_else(|| {
                self.corrupt(name(), format!("{count} keys in {} bytes", bytes.len()))
            })?;
        Ok(Some(KeyDirectory { values }))
    }

    /// Calls `read` on the stored bytes of entry `id` of column `c`'s
    /// inverted index (with a name for its errors); `None` when the index has
    /// no such entry, so no row holds the value.
    fn with_posting<T>(
        &self,
        c: usize,
        id: u32,
        read: impl FnOnce(&[u8], &dyn Fn(String) -> Error) -> Result<T>,
    ) -> Result<Option<T>> {
        let meta = self.column(c)?;
        let name = || format!("column {} index", meta.name);
        let section = meta
            .index
            .as_ref()
            .ok_or_else(|| self.corrupt(name(), "missing"))?;
        let bytes = self.section(section, name)?;
        let count = read_u32(&bytes, 0).ok_or_else(|| self.corrupt(name(), "truncated"))? as usize;
        if id as usize >= count {
            return Ok(None);
        }
        let body_start = 4 + (count + 1) * 4;
        let (Some(a), Some(b)) = (
            read_u32(&bytes, 4 + id as usize * 4),
            read_u32(&bytes, 8 + id as usize * 4),
        ) else {
            return Err(self.corrupt(name(), "truncated offsets"));
        };
        let slice = bytes
            .get(body_start + a as usize..body_start + b as usize)
            .ok_or_else(|| self.corrupt(name(), format!("bitmap {id} out of range")))?;
        let bad = |detail: String| self.corrupt(name(), format!("bitmap {id}: {detail}"));
        read(slice, &bad).map(Some)
    }

    /// The rows holding entry `id` of column `c`'s inverted index (a TEXT
    /// column's dictionary id, an integer column's position in its key
    /// directory); `None` if the value is too frequent to be indexed.
    pub fn rows_with(&self, c: usize, id: u32) -> Result<Option<RoaringBitmap>> {
        let rows = self.with_posting(c, id, |slice, bad| {
            if self.footer.version < 2 {
                return RoaringBitmap::deserialize_from(slice)
                    .map(Some)
                    .map_err(|e| bad(e.to_string()));
            }
            match slice.split_first() {
                Some((&BITMAP_RAW, raw)) => RoaringBitmap::deserialize_from(raw)
                    .map(Some)
                    .map_err(|e| bad(e.to_string())),
                Some((&BITMAP_ZSTD, frame)) => {
                    let raw = decompress(frame).map_err(bad)?;
                    RoaringBitmap::deserialize_from(&raw[..])
                        .map(Some)
                        .map_err(|e| bad(e.to_string()))
                }
                Some((&BITMAP_DENSE, [])) => Ok(None),
                Some((&BITMAP_GAPS, gaps)) => self.gap_rows(gaps).map(Some).map_err(bad),
                Some((tag, _)) => Err(bad(format!("unknown encoding tag {tag}"))),
                None => Err(bad("empty".into())),
            }
        })?;
        Ok(rows.unwrap_or_else(|| Some(RoaringBitmap::new())))
    }

    /// How many rows [`SealedSegment::rows_with`] would give for `id`, read
    /// from the posting's header without decoding it: exact for gap-coded and
    /// raw roaring postings, the segment's row count (an upper bound) for
    /// compressed ones and values too frequent to be indexed.
    pub fn rows_with_count(&self, c: usize, id: u32) -> Result<u64> {
        let everything = self.footer.rows;
        let count = self.with_posting(c, id, |slice, _| {
            if self.footer.version < 2 {
                return Ok(everything);
            }
            Ok(match slice.split_first() {
                Some((&BITMAP_GAPS, gaps)) => read_u32(gaps, 0).map_or(everything, u64::from),
                Some((&BITMAP_RAW, raw)) => roaring_len(raw).unwrap_or(everything),
                _ => everything,
            })
        })?;
        Ok(count.unwrap_or(0))
    }

    /// Decodes a [`BITMAP_GAPS`] bitmap; the error says what is wrong.
    fn gap_rows(&self, bytes: &[u8]) -> std::result::Result<RoaringBitmap, String> {
        let count = read_u32(bytes, 0).ok_or("truncated")? as usize;
        if count as u64 > self.footer.rows {
            return Err(format!("{count} rows in a segment of {}", self.footer.rows));
        }
        let mut pos = 4;
        let mut rows = Vec::with_capacity(count);
        let mut next = 0u64;
        let mut gaps = Vec::with_capacity(GAP_RUN);
        while rows.len() < count {
            let n = GAP_RUN.min(count - rows.len());
            let width = *bytes.get(pos).ok_or("truncated")?;
            let len = bitpack::packed_len(n, width);
            let packed = bytes.get(pos + 1..pos + 1 + len).ok_or("truncated")?;
            if width > 32 || !bitpack::unpack(packed, width, n, &mut gaps) {
                return Err("bad run".into());
            }
            for g in &gaps {
                let row = next + g;
                if row >= self.footer.rows {
                    return Err(format!("row {row} past the segment's end"));
                }
                rows.push(row as u32);
                next = row + 1;
            }
            pos += 1 + len;
        }
        RoaringBitmap::from_sorted_iter(rows).map_err(|e| e.to_string())
    }

    /// The NULL rows of column `c`.
    pub fn nulls(&self, c: usize) -> Result<RoaringBitmap> {
        let meta = self.column(c)?;
        match &meta.nulls {
            None => Ok(RoaringBitmap::new()),
            Some(s) => {
                let name = || format!("column {} nulls", meta.name);
                let bytes = self.section(s, name)?;
                RoaringBitmap::deserialize_from(&bytes[..])
                    .map_err(|e| self.corrupt(name(), e.to_string()))
            }
        }
    }

    /// Decodes block `b` of column `c` into an Arrow array: TEXT as a dictionary
    /// array over the segment's sorted dictionary (so ids are comparable across the
    /// segment's blocks), other types plain.
    pub fn read_block(&self, c: usize, b: usize) -> Result<ArrayRef> {
        if let Some(hit) = cache::get((self.cache_key, c, b, Form::Values)) {
            return Ok(hit);
        }
        let array = self.decode_block(c, b)?;
        cache::put((self.cache_key, c, b, Form::Values), &array);
        Ok(array)
    }

    /// The NULL buffer of block `b` of column `c`, if the column has NULLs.
    fn validity(&self, c: usize, b: usize) -> Result<Option<NullBuffer>> {
        let meta = self.column(c)?;
        let start_row: u64 = meta.blocks[..b.min(meta.blocks.len())]
            .iter()
            .map(|x| x.rows as u64)
            .sum();
        let rows = meta.blocks.get(b).map_or(0, |x| x.rows as usize);
        let null_rows = self.nulls(c)?;
        Ok(if null_rows.is_empty() {
            None
        } else {
            Some(NullBuffer::from(
                (0..rows)
                    .map(|i| !null_rows.contains((start_row + i as u64) as u32))
                    .collect::<Vec<_>>(),
            ))
        })
    }

    /// True if block `b` of column `c` is known to be in ascending order (NULL
    /// slots hold the value before them): a delta-packed block whose smallest
    /// difference is not negative, as the leading `sort_key` column always is.
    pub fn block_is_sorted(&self, c: usize, b: usize) -> bool {
        self.footer
            .columns
            .get(c)
            .and_then(|m| m.blocks.get(b))
            .is_some_and(|block| block.delta_first.is_some() && block.base >= 0)
    }

    /// Block `b` of integer or timestamp column `c` as packed codes, if it is
    /// frame-of-reference packed in at most 32 bits (`None` otherwise: delta-packed
    /// blocks, TEXT, doubles, booleans). Cached like [`SealedSegment::read_block`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and block.
    pub fn read_block_codes(&self, c: usize, b: usize) -> Result<Option<BlockCodes>> {
        let meta = self.column(c)?;
        let integer = matches!(
            meta.ty,
            ColumnType::Integer
                | ColumnType::BigInt
                | ColumnType::Timestamp
                | ColumnType::TimestampTz
        );
        let Some(block) = meta.blocks.get(b) else {
            return Ok(None);
        };
        if !integer || meta.encoding != Encoding::BitPacked {
            return Ok(None);
        }
        // A delta-packed block (or one packed wider than 32 bits) has no codes on
        // disk; if its values span less than 2^32, codes relative to its minimum
        // are derived from the decoded values once and cached.
        let derived = block.delta_first.is_some() || block.width > 32;
        let (base, scale) = if derived {
            match (block.min, block.max) {
                (Some(Stat::Int(min)), Some(Stat::Int(max)))
                    if max >= min && (max as i128 - min as i128) <= u32::MAX as i128 =>
                {
                    (min, 1)
                }
                _ => return Ok(None),
            }
        } else {
            (block.base, block.scale.max(1))
        };
        let codes = |codes: ArrayRef| Some(BlockCodes { base, scale, codes });
        if let Some(hit) = cache::get((self.cache_key, c, b, Form::Codes)) {
            return Ok(codes(hit));
        }
        let name = || format!("column {} block {b}", meta.name);
        let rows = block.rows as usize;
        let array = if derived {
            let values = self.read_block(c, b)?;
            let as_i64 = arrow::compute::cast(&values, &arrow::datatypes::DataType::Int64)
                .map_err(|e| self.corrupt(name(), e.to_string()))?;
            let as_i64 = as_i64
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| self.corrupt(name(), "not an integer block"))?;
            let span = block
                .max
                .zip(block.min)
                .map_or(0, |(max, min)| match (max, min) {
                    (Stat::Int(max), Stat::Int(min)) => max.wrapping_sub(min) as u64,
                    _ => 0,
                });
            let mut packed = Vec::with_capacity(rows);
            for (i, &v) in as_i64.values().iter().enumerate() {
                if as_i64.is_null(i) {
                    packed.push(0);
                    continue;
                }
                let code = v.wrapping_sub(base) as u64;
                if v < base || code > span {
                    return Err(self.corrupt(name(), "a value lies outside the block's zone map"));
                }
                packed.push(code);
            }
            narrow_codes(
                &packed,
                (64 - span.leading_zeros()) as u8,
                as_i64.nulls().cloned(),
            )
        } else {
            let bytes = self.section(&block.section, name)?;
            codes_array(&bytes, block.width, rows, self.validity(c, b)?)
                .ok_or_else(|| self.corrupt(name(), "packed data shorter than its row count"))?
        };
        cache::put((self.cache_key, c, b, Form::Codes), &array);
        Ok(codes(array))
    }

    /// Rows `rows` of block `b` of column `c`, decoded. A block in the block
    /// cache is sliced; one that can be decoded in place (bit-packed or raw,
    /// not delta-packed, not zstd-compressed, no NULLs) has only those rows
    /// decoded, and is not cached; any other is read whole through the cache
    /// and sliced.
    /// An aggregation reads its blocks this way a slice at a time, so that
    /// the decoded values are still in the core's cache when the slice is
    /// aggregated, and the process keeps no decoded copy of the table.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and block; rows past the block's
    /// end are reported as corrupt too.
    pub fn read_block_rows(&self, c: usize, b: usize, rows: Range<usize>) -> Result<ArrayRef> {
        let meta = self.column(c)?;
        let block = meta.blocks.get(b).ok_or_else(|| {
            self.corrupt(format!("column {} block {b}", meta.name), "no such block")
        })?;
        let in_place = !block.section.zstd && block.delta_first.is_none() && meta.nulls.is_none();
        let whole = rows.start == 0 && rows.end == block.rows as usize;
        let cached = cache::get((self.cache_key, c, b, Form::Values));
        if !in_place || whole || cached.is_some() {
            let whole = match cached {
                Some(hit) => hit,
                None => self.read_block(c, b)?,
            };
            if rows.start > rows.end || rows.end > whole.len() {
                return Err(self.corrupt(
                    format!("column {} block {b}", meta.name),
                    format!("rows {rows:?} of a block of {}", whole.len()),
                ));
            }
            return Ok(whole.slice(rows.start, rows.len()));
        }
        self.decode_rows(c, b, rows)
    }

    fn decode_block(&self, c: usize, b: usize) -> Result<ArrayRef> {
        let rows = self
            .column(c)?
            .blocks
            .get(b)
            .map_or(0, |block| block.rows as usize);
        self.decode_rows(c, b, 0..rows)
    }

    /// Rows `rows` of block `b` of column `c` decoded. A delta-packed block's
    /// values are a running sum from its first row, so its `rows` start at 0
    /// (`read_block_rows` never slices one in place).
    fn decode_rows(&self, c: usize, b: usize, rows: Range<usize>) -> Result<ArrayRef> {
        let meta = self.column(c)?;
        let block = meta.blocks.get(b).ok_or_else(|| {
            self.corrupt(format!("column {} block {b}", meta.name), "no such block")
        })?;
        let name = || format!("column {} block {b}", meta.name);
        let block_rows = block.rows as usize;
        if rows.start > rows.end || rows.end > block_rows {
            return Err(self.corrupt(name(), format!("rows {rows:?} of a block of {block_rows}")));
        }
        let validity = self
            .validity(c, b)?
            .map(|v| v.slice(rows.start, rows.len()));
        let bytes = self.section(&block.section, name)?;
        if meta.encoding == Encoding::RawF64 && block.decimals.is_none() {
            if bytes.len() != block_rows * 8 {
                return Err(self.corrupt(
                    name(),
                    format!("{} bytes for {block_rows} doubles", bytes.len()),
                ));
            }
            let values: Vec<f64> = bytes[rows.start * 8..rows.end * 8]
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            return Ok(Arc::new(Float64Array::new(values.into(), validity)));
        }
        let (base, scale) = (block.base, block.scale);
        let mut values: Vec<i64> = Vec::new();
        // Most blocks have no common divisor: their decode is an add the
        // compiler can vectorise, not a multiply per value.
        let unpacked = if scale == 1 {
            let offset = move |code: u64| base.wrapping_add(code as i64);
            bitpack::unpack_with(&bytes, block.width, rows.clone(), &mut values, offset)
        } else {
            let offset = move |code: u64| base.wrapping_add(code.wrapping_mul(scale) as i64);
            bitpack::unpack_with(&bytes, block.width, rows.clone(), &mut values, offset)
        };
        if !unpacked {
            return Err(self.corrupt(name(), "packed data shorter than its row count"));
        }
        if let Some(first) = block.delta_first {
            debug_assert_eq!(rows.start, 0, "a delta-packed block sliced in place");
            // Delta-packed: a running sum from the first value (the first packed
            // slot is not a difference).
            let mut last = first;
            for (i, v) in values.iter_mut().enumerate() {
                if i > 0 {
                    last = last.wrapping_add(*v);
                }
                *v = last;
            }
        }
        if meta.ty == ColumnType::Double {
            let Some(decimals) = block.decimals else {
                return Err(self.corrupt(name(), "a packed double block without decimals"));
            };
            let p = 10f64.powi(decimals.into());
            let values: Vec<f64> = values.iter().map(|&n| n as f64 / p).collect();
            return Ok(Arc::new(Float64Array::new(values.into(), validity)));
        }
        self.integer_array(c, values, validity, name)
    }

    /// Column `c`'s decoded integers (of any type stored as integers: not
    /// DOUBLE) as an array of its block type: TEXT ids as a dictionary array
    /// over the segment's dictionary, checked against it.
    fn integer_array(
        &self,
        c: usize,
        values: Vec<i64>,
        validity: Option<NullBuffer>,
        name: impl Fn() -> String,
    ) -> Result<ArrayRef> {
        let meta = self.column(c)?;
        Ok(match meta.ty {
            ColumnType::Boolean => Arc::new(BooleanArray::new(
                values.iter().map(|v| *v != 0).collect::<Vec<_>>().into(),
                validity,
            )),
            ColumnType::Integer => Arc::new(Int32Array::new(
                values.iter().map(|v| *v as i32).collect::<Vec<_>>().into(),
                validity,
            )),
            ColumnType::BigInt => Arc::new(Int64Array::new(values.into(), validity)),
            ColumnType::Numeric { scale, .. } => Arc::new(
                arrow::array::Decimal128Array::new(
                    values
                        .iter()
                        .map(|v| i128::from(*v))
                        .collect::<Vec<_>>()
                        .into(),
                    validity,
                )
                .with_precision_and_scale(38, scale)
                .map_err(|e| self.corrupt(name(), format!("numeric column: {e}")))?,
            ),
            ColumnType::Timestamp => {
                Arc::new(TimestampMicrosecondArray::new(values.into(), validity))
            }
            ColumnType::TimestampTz => {
                Arc::new(TimestampMicrosecondArray::new(values.into(), validity).with_timezone(UTC))
            }
            ColumnType::Double => {
                return Err(self.corrupt(name(), "a DOUBLE column read as integers"));
            }
            ColumnType::Text => {
                let dict = self.dictionary(c)?;
                let keys: Vec<u32> = values.iter().map(|v| *v as u32).collect();
                // NULL slots hold no id (a column of only NULLs has an empty dictionary).
                let is_valid = |i: usize| validity.as_ref().is_none_or(|v| v.is_valid(i));
                if (0..keys.len()).any(|i| is_valid(i) && keys[i] as usize >= dict.len()) {
                    return Err(self.corrupt(name(), "dictionary id out of range"));
                }
                let keys = UInt32Array::new(keys.into(), validity);
                Arc::new(
                    DictionaryArray::try_new(keys, dict as ArrayRef)
                        .map_err(|e| self.corrupt(name(), e.to_string()))?,
                )
            }
        })
    }

    /// Every row of the segment, block by block, all columns (TEXT as dictionary
    /// arrays), for compaction. Bypasses the decoded-block cache: the segment is
    /// about to be replaced, and its blocks would only push out ones queries need.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first damaged section.
    pub fn read_all(&self) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        let blocks = self.footer.columns.first().map_or(0, |c| c.blocks.len());
        let mut out = Vec::with_capacity(blocks);
        for b in 0..blocks {
            let columns = (0..self.footer.columns.len())
                .map(|c| self.decode_block(c, b))
                .collect::<Result<Vec<_>>>()?;
            let fields: Vec<arrow::datatypes::Field> = self
                .footer
                .columns
                .iter()
                .zip(&columns)
                .map(|(m, a)| arrow::datatypes::Field::new(&m.name, a.data_type().clone(), true))
                .collect();
            let batch = arrow::record_batch::RecordBatch::try_new(
                Arc::new(arrow::datatypes::Schema::new(fields)),
                columns,
            )
            .map_err(|e| self.corrupt(format!("block {b}"), e.to_string()))?;
            out.push(batch);
        }
        Ok(out)
    }

    /// Checks every section's checksum (for `sluice inspect` and after writing).
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first damaged section.
    pub fn verify(&self) -> Result<()> {
        if let Ok(mut v) = self.verified.lock() {
            v.clear();
        }
        for (c, meta) in self.footer.columns.iter().enumerate() {
            for b in 0..meta.blocks.len() {
                self.decode_block(c, b)?;
            }
            if meta.index.is_some() {
                let entries = match self.keys(c)? {
                    Some(keys) => keys.len(),
                    None => self.dictionary(c)?.len(),
                };
                for id in 0..entries {
                    self.rows_with(c, id as u32)?;
                }
            }
        }
        Ok(())
    }
}

/// The number of values in portable roaring bytes, from the header alone (the
/// format's cookie, then one key and cardinality less one per container);
/// `None` if the header does not parse.
fn roaring_len(raw: &[u8]) -> Option<u64> {
    const NO_RUNS: u32 = 12346;
    const WITH_RUNS: u32 = 12347;
    let cookie = read_u32(raw, 0)?;
    let (containers, header) = if cookie == NO_RUNS {
        (read_u32(raw, 4)? as usize, 8)
    } else if cookie & 0xffff == WITH_RUNS {
        let n = (cookie >> 16) as usize + 1;
        (n, 4 + n.div_ceil(8))
    } else {
        return None;
    };
    let mut total = 0u64;
    for i in 0..containers {
        let at = header + i * 4 + 2;
        let less_one = u16::from_le_bytes(raw.get(at..at + 2)?.try_into().ok()?);
        total += u64::from(less_one) + 1;
    }
    Some(total)
}

/// `codes` (each below `2^width`, `width` at most 32) as the narrowest
/// unsigned array that holds them.
fn narrow_codes(codes: &[u64], width: u8, validity: Option<NullBuffer>) -> ArrayRef {
    match width {
        0..=8 => Arc::new(arrow::array::UInt8Array::new(
            codes.iter().map(|&p| p as u8).collect::<Vec<_>>().into(),
            validity,
        )),
        9..=16 => Arc::new(arrow::array::UInt16Array::new(
            codes.iter().map(|&p| p as u16).collect::<Vec<_>>().into(),
            validity,
        )),
        _ => Arc::new(UInt32Array::new(
            codes.iter().map(|&p| p as u32).collect::<Vec<_>>().into(),
            validity,
        )),
    }
}

/// `rows` codes of `width` (at most 32) bits unpacked straight into the
/// narrowest unsigned array that holds them (as [`narrow_codes`], without
/// the `u64` copy); `None` if `bytes` is short.
fn codes_array(
    bytes: &[u8],
    width: u8,
    rows: usize,
    validity: Option<NullBuffer>,
) -> Option<ArrayRef> {
    Some(match width {
        0..=8 => {
            let mut codes = Vec::new();
            bitpack::unpack_with(bytes, width, 0..rows, &mut codes, |c| c as u8).then_some(())?;
            Arc::new(arrow::array::UInt8Array::new(codes.into(), validity))
        }
        9..=16 => {
            let mut codes = Vec::new();
            bitpack::unpack_with(bytes, width, 0..rows, &mut codes, |c| c as u16).then_some(())?;
            Arc::new(arrow::array::UInt16Array::new(codes.into(), validity))
        }
        _ => {
            let mut codes = Vec::new();
            bitpack::unpack_with(bytes, width, 0..rows, &mut codes, |c| c as u32).then_some(())?;
            Arc::new(UInt32Array::new(codes.into(), validity))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::roaring_len;
    use roaring::RoaringBitmap;

    #[test]
    fn roaring_len_reads_the_count_from_the_header() {
        let sparse: RoaringBitmap = (0..100_000u32).step_by(7).collect();
        let mut runs: RoaringBitmap = (5..70_000u32).collect();
        runs.insert(200_000);
        runs.optimize();
        for bitmap in [RoaringBitmap::new(), sparse, runs] {
            let mut raw = Vec::new();
            bitmap.serialize_into(&mut raw).unwrap();
            assert_eq!(roaring_len(&raw), Some(bitmap.len()));
        }
        assert_eq!(roaring_len(&[1, 2, 3]), None);
    }
}
