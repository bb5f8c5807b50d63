//! The footer of a segment file: everything needed to find and check each section.
//! Encoded as JSON (it is read once per segment open and is small next to the data),
//! followed by a fixed 16-byte tail. docs/format.md describes the whole file.
//!
//! Every change to what a file holds takes a new [`FORMAT_VERSION`], and the
//! footer's structs refuse fields they do not know: a file from a newer writer
//! is an error naming it, never read as if the new field were not there. Each
//! version's file is kept in `fixtures/` and read back by a test.

use serde::{Deserialize, Serialize};

use crate::types::ColumnType;

/// Magic bytes at the start of every segment file.
pub const HEAD_MAGIC: &[u8; 8] = b"SLUICESG";
/// Magic bytes ending every segment file.
pub const TAIL_MAGIC: &[u8; 4] = b"SLSG";
/// The format version this build writes. It also reads [`OLDEST_READABLE_VERSION`]
/// onwards.
pub const FORMAT_VERSION: u32 = 4;
/// Version 1 stored every inverted-index bitmap raw; version 2 tags each one as
/// raw or zstd-compressed.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Bytes in the tail: footer length, footer checksum, version, magic.
pub const TAIL_LEN: usize = 16;

/// A byte range of the file with the CRC-32 of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Start, from the beginning of the file.
    pub offset: u64,
    /// Length in bytes as stored.
    pub len: u64,
    /// CRC-32 (IEEE) of the stored bytes.
    pub crc: u32,
    /// True if the stored bytes are zstd-compressed.
    pub zstd: bool,
}

/// How a column's blocks are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// Integers, timestamps, booleans and dictionary ids: `(value - base) / scale`
    /// bit-packed at `width` bits per value.
    BitPacked,
    /// Doubles: little-endian IEEE 754, zstd-compressed per block.
    RawF64,
}

/// A value in a zone map. Text columns store dictionary ids: the dictionary is
/// sorted, so id order is text order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stat {
    /// Integer, timestamp, boolean (0/1) or dictionary id.
    Int(i64),
    /// Double. JSON has no infinities or NaN, so those are written as the strings
    /// `"Infinity"`, `"-Infinity"` and `"NaN"`. NaN is ordered as PostgreSQL orders
    /// it, above every number (version 3; versions 1 and 2 left NaN out, so a
    /// block of NaN alone had no zone map).
    Float(#[serde(with = "float_with_infinities")] f64),
}

/// Serde for a double that may be infinite, in JSON.
mod float_with_infinities {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            v.serialize(s)
        } else if v.is_nan() {
            "NaN".serialize(s)
        } else if *v > 0.0 {
            "Infinity".serialize(s)
        } else {
            "-Infinity".serialize(s)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Stored::deserialize(d)? {
            Stored::Number(v) => Ok(v),
            Stored::Text(t) if t == "Infinity" => Ok(f64::INFINITY),
            Stored::Text(t) if t == "-Infinity" => Ok(f64::NEG_INFINITY),
            Stored::Text(t) if t == "NaN" => Ok(f64::NAN),
            Stored::Text(t) => Err(serde::de::Error::custom(format!("not a double: {t}"))),
        }
    }
}

/// One block of one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockMeta {
    /// Rows in the block.
    pub rows: u32,
    /// The block's values.
    pub section: Section,
    /// Frame of reference (bit-packed blocks).
    pub base: i64,
    /// Common divisor of `value - base` (bit-packed blocks; at least 1).
    pub scale: u64,
    /// Bits per packed value.
    pub width: u8,
    /// Set on delta-packed blocks: the block's first value. The packed values are
    /// then the differences between neighbours (`base` and `scale` apply to them),
    /// which for time-ordered columns are far narrower than the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_first: Option<i64>,
    /// Set on a block of a DOUBLE column stored as decimals (version 2): the
    /// values are `n / 10^decimals` for the bit-packed integers `n`, each one
    /// checked at write time to give back exactly the double written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
    /// Smallest non-null value, if any.
    pub min: Option<Stat>,
    /// Largest non-null value, if any.
    pub max: Option<Stat>,
}

/// One column of a segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMeta {
    /// Column name.
    pub name: String,
    /// Stored type.
    pub ty: ColumnType,
    /// Block encoding.
    pub encoding: Encoding,
    /// Sorted dictionary (TEXT): `[count u32][count + 1 offsets u32][utf-8 bytes]`.
    pub dictionary: Option<Section>,
    /// Inverted index: per dictionary id (TEXT) or per key (an integer
    /// column's `keys`), a tagged bitmap of rows;
    /// `[count u32][count + 1 offsets u32][bitmaps]`. Every TEXT column had
    /// one before version 4; since, a column named by `no_index` has none,
    /// nor an integer column whose values are mostly distinct.
    pub index: Option<Section>,
    /// Key directory of an indexed INTEGER or BIGINT column (version 4): its
    /// distinct values sorted, `[count u32][value i64 LE]...`, stored raw;
    /// the index's bitmap `i` holds the rows of value `i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Section>,
    /// Rows that are NULL, as a portable roaring bitmap; absent if none are.
    pub nulls: Option<Section>,
    /// The column's blocks, in row order.
    pub blocks: Vec<BlockMeta>,
    /// Smallest non-null value of the column.
    pub min: Option<Stat>,
    /// Largest non-null value of the column.
    pub max: Option<Stat>,
}

/// The footer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Footer {
    /// Format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// Rows in the segment.
    pub rows: u64,
    /// Rows per block (the last block may be shorter).
    pub block_rows: u32,
    /// Position of the table's time column; `None` (written as `null`) for a
    /// table without one.
    pub time_column: Option<usize>,
    /// Smallest time in the segment, microseconds.
    pub time_min: Option<i64>,
    /// Largest time in the segment, microseconds.
    pub time_max: Option<i64>,
    /// The columns, in table order.
    pub columns: Vec<ColumnMeta>,
}

/// Inverted-index bitmap tag (version 2): portable roaring bytes follow.
pub const BITMAP_RAW: u8 = 0;
/// Inverted-index bitmap tag (version 2): a zstd frame of portable roaring bytes follows.
pub const BITMAP_ZSTD: u8 = 1;
/// Inverted-index bitmap tag (version 2): nothing follows; the value is on so many
/// rows (more than a sixteenth of the segment and more than 4,096) that its
/// bitmap would cost a bit per row and prune nothing, so it is not indexed.
pub const BITMAP_DENSE: u8 = 2;
/// Inverted-index bitmap tag (version 2): the rows as gaps, bit-packed.
/// `[count: u32]`, then per run of up to [`GAP_RUN`] rows `[width: u8]` and the
/// run's gaps packed at that width, where a row's gap is its distance from the
/// previous row less one (the first row's gap is the row itself). For values on
/// a few percent of the rows this takes about half the bytes of roaring's
/// sixteen bits per row, even compressed.
pub const BITMAP_GAPS: u8 = 3;
/// Rows per run of [`BITMAP_GAPS`].
pub const GAP_RUN: usize = 128;
