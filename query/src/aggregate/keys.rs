//! Group keys as fixed-width codes.
//!
//! Every group column becomes one `u64` code per row: the value's bits for
//! fixed-width types, an interned id for text and intervals. A dictionary-encoded
//! column (a block of a segment) is encoded once per dictionary entry and then mapped
//! through the row keys, so grouping by a TEXT column never hashes a string per row.
//! Codes are only meaningful within one [`KeyColumn`]; merging two partial results
//! decodes the other side's keys and encodes them again.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    IntervalMonthDayNanoArray, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, IntervalMonthDayNano,
    IntervalMonthDayNanoType, TimestampMicrosecondType, UInt32Type,
};

use super::used_ids::UsedIds;
use crate::error::{Error, Result};

/// A hasher with fixed seeds: results are the same in every run, which keeps
/// approximate aggregates reproducible.
pub fn fixed_state() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x5151_cafe, 0x0dd5_eed5, 0x1234_5678, 0x9abc_def0)
}

/// Encodes one group column to codes and back.
pub struct KeyColumn {
    data_type: DataType,
    strings: HashMap<Box<str>, u32, ahash::RandomState>,
    string_values: Vec<Box<str>>,
    intervals: HashMap<IntervalMonthDayNano, u32, ahash::RandomState>,
    interval_values: Vec<IntervalMonthDayNano>,
    /// The last dictionary met, with the codes of its entries encoded so far:
    /// a segment's blocks share one dictionary, and a point query meets it in
    /// a hundred blocks of a few rows each, so its entries are interned once,
    /// not once per block. Blocks are told to share it by their values'
    /// buffers (each block's array is a new wrapper around them); holding the
    /// dictionary keeps those addresses from being reused by another.
    last_dictionary: Option<DictionaryCodes>,
}

/// A dictionary's entries as group codes. Text entries are interned when a
/// row first uses them: one restaurant's ninety rows of a segment use a few
/// dozen of its five hundred item names, and hashing all five hundred cost
/// more than grouping the rows did.
struct DictionaryCodes {
    values: ArrayRef,
    /// One per entry; for text, [`UNSEEN`] where no row has used it yet.
    codes: Vec<u64>,
    /// Whether each entry is non-NULL; empty when none is NULL.
    valid: Vec<bool>,
    /// Whether the entries are text, interned lazily. (Other entries are
    /// all encoded at once, and their codes may be any `u64`.)
    lazy: bool,
}

/// The code of a text entry not interned yet (interned ids are `u32`).
const UNSEEN: u64 = u64::MAX;

impl DictionaryCodes {
    /// The code of entry `k` (0 for an entry out of range or not encoded).
    fn code(&self, k: u32) -> u64 {
        match self.codes.get(k as usize) {
            Some(&c) if !(self.lazy && c == UNSEEN) => c,
            _ => 0,
        }
    }

    /// Whether entry `k` exists and is not NULL.
    fn is_valid(&self, k: u32) -> bool {
        (k as usize) < self.codes.len() && self.valid.get(k as usize).copied().unwrap_or(true)
    }
}

impl KeyColumn {
    /// An encoder for a column of (plain) type `data_type`.
    pub fn new(data_type: DataType) -> Self {
        KeyColumn {
            data_type,
            strings: HashMap::with_hasher(fixed_state()),
            string_values: Vec::new(),
            intervals: HashMap::with_hasher(fixed_state()),
            interval_values: Vec::new(),
            last_dictionary: None,
        }
    }

    /// Whether a value's code is the same in every encoder: true except for
    /// text and intervals, coded by the order this encoder first met them.
    pub fn value_coded(&self) -> bool {
        !matches!(self.data_type, DataType::Utf8 | DataType::Interval(_))
    }

    /// Bytes held by interned values.
    pub fn size(&self) -> usize {
        self.string_values
            .iter()
            .map(|s| s.len() + 40)
            .sum::<usize>()
            + self.interval_values.len() * 40
    }

    /// Writes one code per row of `array` into `codes`, and `None` for NULL.
    pub fn encode(&mut self, array: &ArrayRef, codes: &mut Vec<Option<u64>>) -> Result<()> {
        let (mut values, mut valid) = (Vec::new(), Vec::new());
        self.encode_split(array, &mut values, &mut valid)?;
        codes.clear();
        if valid.is_empty() {
            codes.extend(values.into_iter().map(Some));
        } else {
            codes.extend(values.into_iter().zip(valid).map(|(v, ok)| ok.then_some(v)));
        }
        Ok(())
    }

    /// Writes one code per row of `array` into `codes` (0 for NULL) and, if the
    /// array has NULLs, whether each row is non-NULL into `valid` (left empty
    /// otherwise). Eight bytes per row instead of sixteen for `Option<u64>`: this
    /// runs on every row a GROUP BY reads.
    pub fn encode_split(
        &mut self,
        array: &ArrayRef,
        codes: &mut Vec<u64>,
        valid: &mut Vec<bool>,
    ) -> Result<()> {
        codes.clear();
        valid.clear();
        if let DataType::Dictionary(_, _) = array.data_type() {
            let dict = array.as_dictionary_opt::<UInt32Type>().ok_or_else(|| {
                Error::Internal(format!("unsupported dictionary {}", array.data_type()))
            })?;
            let known = self
                .last_dictionary
                .take()
                .filter(|d| d.values.to_data().ptr_eq(&dict.values().to_data()));
            let mut entries = match known {
                Some(known) => known,
                None => self.dictionary_codes(dict.values())?,
            };
            let keys = dict.keys();
            if let Some(strings) = entries
                .lazy
                .then(|| entries.values.as_string_opt::<i32>().cloned())
                .flatten()
            {
                for (i, &k) in keys.values().iter().enumerate() {
                    if entries.codes.get(k as usize) == Some(&UNSEEN)
                        && keys.is_valid(i)
                        && entries.is_valid(k)
                    {
                        entries.codes[k as usize] = self.intern_str(strings.value(k as usize));
                    }
                }
            }
            codes.extend(keys.values().iter().map(|&k| entries.code(k)));
            if keys.null_count() > 0 || !entries.valid.is_empty() {
                valid.extend(keys.iter().map(|k| k.is_some_and(|k| entries.is_valid(k))));
            }
            self.last_dictionary = Some(entries);
            return Ok(());
        }
        if array.null_count() > 0 {
            if let Some(nulls) = array.logical_nulls() {
                valid.extend(nulls.iter());
            }
        }
        match array.data_type() {
            DataType::Null => {
                codes.resize(array.len(), 0);
                valid.clear();
                valid.resize(array.len(), false);
            }
            DataType::Boolean => codes.extend(array.as_boolean().values().iter().map(u64::from)),
            DataType::Int32 => codes.extend(
                array
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|&x| x as i64 as u64),
            ),
            DataType::Int64 => codes.extend(
                array
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .map(|&x| x as u64),
            ),
            DataType::UInt32 => codes.extend(
                array
                    .as_primitive::<arrow::datatypes::UInt32Type>()
                    .values()
                    .iter()
                    .map(|&x| u64::from(x)),
            ),
            DataType::Date32 => codes.extend(
                array
                    .as_primitive::<Date32Type>()
                    .values()
                    .iter()
                    .map(|&x| x as i64 as u64),
            ),
            DataType::Timestamp(_, _) => codes.extend(
                array
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .iter()
                    .map(|&x| x as u64),
            ),
            DataType::Float64 => codes.extend(
                array
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|&x| canonical_float_bits(x)),
            ),
            DataType::Utf8 => {
                for v in array.as_string::<i32>().iter() {
                    codes.push(v.map_or(0, |s| self.intern_str(s)));
                }
            }
            DataType::Interval(_) => {
                for v in array.as_primitive::<IntervalMonthDayNanoType>().iter() {
                    codes.push(v.map_or(0, |iv| self.intern_interval(iv)));
                }
            }
            // A numeric's unscaled value is its code (one scale per column), as
            // long as it fits 64 bits: EXTRACT fields, rounded amounts.
            DataType::Decimal128(..) => {
                for v in array
                    .as_primitive::<arrow::datatypes::Decimal128Type>()
                    .values()
                    .iter()
                {
                    let code = i64::try_from(*v).map_err(|_| {
                        Error::NotSupported("grouping by a numeric of more than 18 digits".into())
                    })?;
                    codes.push(code as u64);
                }
            }
            other => {
                return Err(Error::NotSupported(format!(
                    "grouping by type {}",
                    crate::format::sql_type_name(other)
                )))
            }
        }
        // Codes under NULL slots are whatever the buffer held: make them 0 so
        // equal keys have equal codes whatever sits under a NULL.
        if !valid.is_empty() {
            for (c, ok) in codes.iter_mut().zip(valid.iter()) {
                if !ok {
                    *c = 0;
                }
            }
        }
        Ok(())
    }

    /// A dictionary's entries, to be encoded: text ones as rows use them
    /// (see [`DictionaryCodes`]), others all at once.
    fn dictionary_codes(&mut self, values: &ArrayRef) -> Result<DictionaryCodes> {
        let (mut codes, mut valid) = (Vec::new(), Vec::new());
        let lazy = values.data_type() == &DataType::Utf8;
        if lazy {
            codes.resize(values.len(), UNSEEN);
            if let Some(nulls) = values.logical_nulls() {
                valid.extend(nulls.iter());
            }
        } else {
            self.encode_split(values, &mut codes, &mut valid)?;
        }
        Ok(DictionaryCodes {
            values: Arc::clone(values),
            codes,
            valid,
            lazy,
        })
    }

    fn intern_str(&mut self, s: &str) -> u64 {
        if let Some(id) = self.strings.get(s) {
            return *id as u64;
        }
        let id = self.string_values.len() as u32;
        self.string_values.push(s.into());
        self.strings.insert(s.into(), id);
        id as u64
    }

    fn intern_interval(&mut self, iv: IntervalMonthDayNano) -> u64 {
        let next = self.interval_values.len() as u32;
        let id = *self.intervals.entry(iv).or_insert(next);
        if id == next {
            self.interval_values.push(iv);
        }
        id as u64
    }

    /// Builds the column of values for `codes` (the inverse of [`KeyColumn::encode`]).
    pub fn decode(&self, codes: &[Option<u64>]) -> Result<ArrayRef> {
        let it = codes.iter();
        Ok(match &self.data_type {
            DataType::Null => arrow::array::new_null_array(&DataType::Null, codes.len()),
            DataType::Boolean => Arc::new(it.map(|c| c.map(|v| v != 0)).collect::<BooleanArray>()),
            DataType::Int32 => Arc::new(
                it.map(|c| c.map(|v| v as i64 as i32))
                    .collect::<Int32Array>(),
            ),
            DataType::Int64 => Arc::new(it.map(|c| c.map(|v| v as i64)).collect::<Int64Array>()),
            DataType::UInt32 => Arc::new(
                it.map(|c| c.map(|v| v as u32))
                    .collect::<arrow::array::UInt32Array>(),
            ),
            DataType::Date32 => Arc::new(
                it.map(|c| c.map(|v| v as i64 as i32))
                    .collect::<Date32Array>(),
            ),
            DataType::Timestamp(_, tz) => Arc::new(
                it.map(|c| c.map(|v| v as i64))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone_opt(tz.clone()),
            ),
            DataType::Float64 => {
                Arc::new(it.map(|c| c.map(f64::from_bits)).collect::<Float64Array>())
            }
            DataType::Utf8 => Arc::new(
                it.map(|c| c.and_then(|v| self.string_values.get(v as usize).map(|s| &**s)))
                    .collect::<StringArray>(),
            ),
            DataType::Interval(_) => Arc::new(
                it.map(|c| c.and_then(|v| self.interval_values.get(v as usize).copied()))
                    .collect::<IntervalMonthDayNanoArray>(),
            ),
            DataType::Decimal128(p, s) => Arc::new(
                it.map(|c| c.map(|v| v as i64 as i128))
                    .collect::<arrow::array::Decimal128Array>()
                    .with_precision_and_scale(*p, *s)?,
            ),
            other => {
                return Err(Error::NotSupported(format!(
                    "grouping by type {}",
                    crate::format::sql_type_name(other)
                )))
            }
        })
    }
}

/// Float bits with -0.0 folded into 0.0 and every NaN into one, so equal values
/// (as SQL sees them) share a group.
fn canonical_float_bits(f: f64) -> u64 {
    if f == 0.0 {
        0
    } else if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    }
}

/// Maps rows to dense group ids by the codes of their key columns.
///
/// Every group's full key (a NULL mask, then one code per column) is kept in
/// one flat array, and one index finds a row's group from its codes. Where a
/// key's codes fit in 64 bits, they are packed by a per-column layout and the
/// packed key is looked up in a direct array (up to 2^20 entries) or a hash
/// map of `u64`; only keys too wide to pack are hashed and compared whole. A
/// batch whose codes fall outside the layout re-indexes every group under a
/// wider one (widened with room to spare, so a key that grows batch after
/// batch, as time buckets do, re-indexes a logarithmic number of times). A
/// new group costs one append and one index entry: at a million groups the
/// per-group boxed keys and second map lookup this replaced were most of
/// the query.
pub struct GroupTable {
    columns: Vec<KeyColumn>,
    /// Per column, whether its codes are signed values (kept with the sign
    /// bit flipped, so -1 and 1 are neighbours, not 2^64 apart, and a key
    /// column with negative values still packs).
    signed: Vec<bool>,
    /// Every group's full key, `stride` codes each, in group-id order.
    keys: Vec<u64>,
    stride: usize,
    /// Finds a row's group; covers every group in `keys`.
    index: Index,
    codes: Vec<Vec<u64>>,
    valid: Vec<Vec<bool>>,
    /// The full key being looked up, reused so a lookup allocates nothing.
    key: Vec<u64>,
    /// A batch's packed keys, reused.
    packed: Vec<u64>,
    /// Whether group ids may be packed keys ([`Index::Identity`]); see
    /// [`GroupTable::sparse`].
    sparse: bool,
    /// Where the groups of before a move to or from [`Index::Identity`]
    /// went (old id -> new id; an unused old id -> 0), until
    /// [`GroupTable::take_moved`] takes it.
    moved: Option<Vec<u32>>,
    /// Rows the caller expects to intern in all (0: not known).
    expected_rows: usize,
    /// Rows interned so far.
    rows_seen: usize,
}

/// How many rows ahead a lookup prefetches its table entry: enough to cover
/// a miss to memory at a few nanoseconds a row.
pub const PREFETCH_AHEAD: usize = 16;

/// Starts loading `v`'s cache line without waiting for it; a hint only.
#[inline(always)]
pub fn prefetch<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of every x86_64 target, and a prefetch never
    // faults nor changes memory; the pointer comes from a live reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (v as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// How a [`GroupTable`] finds the group of a row.
enum Index {
    /// No group yet.
    Empty,
    /// Group id by packed key (`u32::MAX`: none).
    Direct {
        layout: Vec<PackedColumn>,
        ids: Vec<u32>,
    },
    /// Group id by packed key in a hash map, with a small direct-mapped cache
    /// in front: dashboards group a few hundred keys (hour x status) that
    /// need 40 bits packed, and the cache answers them without hashing.
    Packed {
        layout: Vec<PackedColumn>,
        bits: u32,
        ids: HashMap<u64, u32, ahash::RandomState>,
        cache: Vec<(u64, u32)>,
    },
    /// Group id by the hash of the full key, for keys too wide to pack.
    Full { ids: hashbrown::HashTable<u32> },
    /// The group id is the packed key itself: no lookup, no stored keys,
    /// and partial tables of the same layout merge id for id. Ids no row
    /// has used are holes ([`GroupTable::present`]). What DuckDB calls a
    /// perfect hash aggregate: at ten million groups the direct array's
    /// lookup was one of three cache misses a row, and the merge a random
    /// access per group.
    Identity {
        layout: Vec<PackedColumn>,
        /// Which of the `1 << bits` ids of the layout a row has used.
        seen: UsedIds,
    },
}

/// Every row's codes packed by `layout` into `packed`, a column at a time
/// (a loop the compiler keeps tight, where packing row by row went through
/// every column for each row).
fn pack_batch(
    layout: &[PackedColumn],
    codes: &[Vec<u64>],
    valid: &[Vec<bool>],
    rows: usize,
    packed: &mut Vec<u64>,
) {
    packed.clear();
    packed.resize(rows, 0);
    for ((p, codes), valid) in layout.iter().zip(codes).zip(valid) {
        if valid.is_empty() {
            for (k, &c) in packed.iter_mut().zip(codes) {
                *k |= (c - p.min) << p.shift;
            }
        } else {
            for ((k, &c), &ok) in packed.iter_mut().zip(codes).zip(valid) {
                *k |= (if ok { c - p.min } else { p.null }) << p.shift;
            }
        }
    }
}

/// The smallest and largest of `codes` where `valid` (empty: every row)
/// holds; `None` if none does. Without NULLs it is four independent
/// minimum/maximum chains, no branch: this runs on every row a GROUP BY
/// reads, and the per-row test for NULL was a tenth of `GROUP BY k % 100`.
fn code_range(codes: &[u64], valid: &[bool]) -> Option<(u64, u64)> {
    let (mut min, mut max) = (u64::MAX, 0u64);
    if valid.is_empty() {
        let mut lanes = [(u64::MAX, 0u64); 4];
        let quads = codes.chunks_exact(4);
        for &c in quads.remainder() {
            (min, max) = (min.min(c), max.max(c));
        }
        for quad in quads {
            for (lane, &c) in lanes.iter_mut().zip(quad) {
                *lane = (lane.0.min(c), lane.1.max(c));
            }
        }
        for (lo, hi) in lanes {
            (min, max) = (min.min(lo), max.max(hi));
        }
    } else {
        for (&c, _) in codes.iter().zip(valid).filter(|(_, ok)| **ok) {
            (min, max) = (min.min(c), max.max(c));
        }
    }
    (min <= max).then_some((min, max))
}

/// A stored full key packed by `layout` (which covers it).
fn pack_stored(layout: &[PackedColumn], key: &[u64]) -> u64 {
    layout.iter().enumerate().fold(0, |packed, (c, p)| {
        let v = if key[0] & (1 << (c % 64)) != 0 {
            p.null
        } else {
            key[c + 1] - p.min
        };
        packed | v << p.shift
    })
}

/// Slots of the cache in front of the packed-key hash map.
const CACHE_BITS: u32 = 10;
const CACHE: usize = 1 << CACHE_BITS;

/// Packed keys spanning at most this many bits may use a direct array
/// (4 MiB): 100,000 restaurant ids are 17 bits, and a direct lookup is half
/// the time of a hashed one over a 100M-row GROUP BY.
const DIRECT_BITS: u32 = 20;

/// Packed keys this narrow always use the direct array (256 KiB at most).
const SMALL_DIRECT_BITS: u32 = 16;

/// The widest packed keys a direct array may take once the groups fill it
/// densely (256 MiB at most): ten million groups of `k % 10000000` are 24
/// bits.
const DENSE_DIRECT_BITS: u32 = 26;

/// Whether a direct array for packed keys of `bits` bits pays for a batch
/// of `rows` rows into a table of `groups` groups: always when small; when
/// wider, if the batch fills at least a sixteenth of its entries (a point
/// query's 100-row batch would spend longer filling 4 MiB than grouping), or
/// if the groups alone fill a quarter of it. At four bytes an entry it is
/// then no larger than a hash map of those groups, and a lookup is one
/// memory access instead of a hash and a probe: at a million groups the
/// hash map was most of the query.
fn direct_pays(bits: u32, rows: usize, groups: usize) -> bool {
    let entries = 1usize << bits.min(63);
    bits <= SMALL_DIRECT_BITS
        || (bits <= DIRECT_BITS && entries <= rows.saturating_mul(16))
        || (bits <= DENSE_DIRECT_BITS && entries <= groups.saturating_mul(4))
}

/// Rows a table sees before it judges from them how many groups to expect.
const CARDINALITY_SAMPLE: usize = 4096;

/// Packed keys this narrow may always be group ids themselves (4,096 ids).
const SMALL_IDENTITY_BITS: u32 = 12;

/// Whether group ids of `bits` bits used as they are ([`Index::Identity`])
/// pay for a batch of `rows` rows into a table of `groups` groups: as for
/// the direct array, but "always" only up to 4,096 ids, and past 2^20 ids
/// only once the groups fill half of them, since every id costs each
/// accumulator a slot of eight bytes or more, where the direct array costs
/// four (a point query's few rows keep a lookup, and a wide sparse key its
/// compact state).
fn identity_pays(bits: u32, rows: usize, groups: usize) -> bool {
    let slots = 1usize << bits.min(63);
    bits <= SMALL_IDENTITY_BITS
        || (bits <= DIRECT_BITS && slots <= rows.saturating_mul(16))
        || (bits <= DIRECT_BITS && slots <= groups.saturating_mul(4))
        || (bits <= DENSE_DIRECT_BITS && slots <= groups.saturating_mul(2))
}

/// The widest packed-key ids a table expecting many rows takes before its
/// groups fill them (16M ids: `k % 10000000`); wider ones wait for the
/// groups, as a wide key may be sparse.
const EXPECTED_IDENTITY_BITS: u32 = 24;

/// How one key column occupies the bits of a packed key.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PackedColumn {
    min: u64,
    shift: u32,
    /// The packed value standing for NULL (one past the largest code's offset).
    null: u64,
}

/// The hash of a full group key: its words folded by multiplication, then
/// mixed (MurmurHash3's finaliser) so that the high bits hashbrown tags
/// with and the low bits it indexes with both depend on every word.
fn hash_key(key: &[u64]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for &w in key {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// True when codes in `ranges` pack by `layout`: the same columns, each range
/// inside its column's (NULL keeps its own value).
fn fits(layout: &[PackedColumn], ranges: &[Option<(u64, u64)>]) -> bool {
    layout.len() == ranges.len()
        && layout.iter().zip(ranges).all(|(p, r)| match r {
            None => true,
            Some((min, max)) => *min >= p.min && max - p.min < p.null,
        })
}

/// The ranges `layout` covers, each widened to take in `ranges`' own. A
/// column whose new range still fits the bits it has keeps them and spreads
/// what is left of them evenly below and above (a million groups of `k %
/// 1000000` first seen as 3..999990 and then meeting 0 and 999999 stay 20
/// bits: an extra bit doubles a direct array). One that outgrows its bits
/// takes half its new width again on the side it grew, so that codes that
/// keep growing (time buckets) widen it a logarithmic number of times.
fn widen(layout: &[PackedColumn], ranges: &[Option<(u64, u64)>]) -> Vec<Option<(u64, u64)>> {
    layout
        .iter()
        .zip(ranges)
        .map(|(p, r)| {
            let (lo, hi) = (p.min, p.min + (p.null - 1));
            let Some((min, max)) = *r else {
                return Some((lo, hi));
            };
            let (new_lo, new_hi) = (lo.min(min), hi.max(max));
            let width = new_hi - new_lo;
            let bits = 64 - p.null.leading_zeros();
            if let Some(spread) = spread_over(new_lo, new_hi, bits) {
                return Some(spread);
            }
            let room = width / 2;
            let new_lo = if new_lo < lo {
                new_lo.saturating_sub(room)
            } else {
                lo
            };
            let new_hi = if new_hi > hi {
                new_hi.saturating_add(room)
            } else {
                hi
            };
            Some((new_lo, new_hi))
        })
        .collect()
}

/// The range `lo..=hi` widened to fill `bits` bits (with NULL's offset
/// last), what is left spread evenly below and above; `None` if it does not
/// fit them.
fn spread_over(lo: u64, hi: u64, bits: u32) -> Option<(u64, u64)> {
    // Offsets 0..=span are values; span + 1 is NULL's, the largest these
    // bits hold.
    let span = 1u64.checked_shl(bits).map_or(u64::MAX, |c| c - 2);
    let width = hi - lo;
    if bits >= 63 || width > span {
        return None;
    }
    let below = ((span - width) / 2).min(lo);
    let end = (lo - below).saturating_add(span);
    Some((end - span, end))
}

/// A first table's ranges: each filling the bits it needs, so that the
/// next batches' codes, and other workers' (whose first batches met other
/// codes), most likely fit, and ids that are packed keys stay where they
/// are; each then moved down to a round start ([`round_start`]).
fn first_ranges(ranges: &[Option<(u64, u64)>]) -> Vec<Option<(u64, u64)>> {
    ranges
        .iter()
        .map(|r| {
            r.map(|(lo, hi)| {
                let null = (hi - lo).saturating_add(1);
                spread_over(lo, hi, 64 - null.leading_zeros())
                    .map_or((lo, hi), |spread| round_start(spread, hi))
            })
        })
        .collect()
}

/// The range `start..=end` moved down, keeping `hi` in it, to start at a
/// multiple of the largest power of two it can: workers whose first
/// batches met slightly different codes then most likely take one layout,
/// and their partials merge id for id
/// ([`GroupTable::shares_ids_with`]), not through a map of every id.
fn round_start((start, end): (u64, u64), hi: u64) -> (u64, u64) {
    let room = end - hi;
    // A power of two no larger than room + 1 moves the range down at most
    // `room`.
    let align = 1u64 << (63 - room.saturating_add(1).leading_zeros());
    let down = start % align;
    (start - down, end - down)
}

/// The packing of codes in `ranges`, and its width in bits; `None` if they
/// do not fit in 64 bits.
fn layout_of(ranges: &[Option<(u64, u64)>]) -> Option<(Vec<PackedColumn>, u32)> {
    let mut layout = Vec::with_capacity(ranges.len());
    let mut shift = 0u32;
    for r in ranges {
        let (min, max) = r.unwrap_or((0, 0));
        let null = (max - min).checked_add(1)?;
        let bits = 64 - null.leading_zeros();
        layout.push(PackedColumn { min, shift, null });
        shift = shift.checked_add(bits).filter(|&s| s <= 64)?;
    }
    Some((layout, shift))
}

impl GroupTable {
    /// A table for key columns of these types.
    pub fn new(types: &[DataType]) -> Self {
        GroupTable {
            columns: types.iter().cloned().map(KeyColumn::new).collect(),
            signed: types.iter().map(signed_codes).collect(),
            keys: Vec::new(),
            stride: types.len() + 1,
            index: Index::Empty,
            codes: vec![Vec::new(); types.len()],
            valid: vec![Vec::new(); types.len()],
            key: Vec::new(),
            packed: Vec::new(),
            sparse: false,
            moved: None,
            expected_rows: 0,
            rows_seen: 0,
        }
    }

    /// Tells the table that about `rows` rows will be interned in all: if
    /// the first rows are nearly all new groups and more rows are to come
    /// than a packed key has values, ids become packed keys at once (ten
    /// million groups of a 100M-row table spent a fifth of their time in
    /// the hash map before the groups had filled a quarter of the range).
    pub fn expect_rows(&mut self, rows: usize) {
        self.expected_rows = rows;
    }

    /// Whether ids of packed keys of `bits` bits should be the keys
    /// themselves, for a batch of `rows` rows into `groups` groups: see
    /// [`identity_pays`] and [`GroupTable::expect_rows`]. A few thousand
    /// rows of which half were new groups are taken as the sign of many
    /// groups to come; a thousand keys spread over a wide range are not.
    fn ids_may_be_keys(&self, bits: u32, rows: usize, groups: usize) -> bool {
        self.sparse
            && (identity_pays(bits, rows, groups)
                || (bits <= EXPECTED_IDENTITY_BITS
                    && 1usize << bits <= self.expected_rows
                    && self.rows_seen >= CARDINALITY_SAMPLE
                    && groups.saturating_mul(2) >= self.rows_seen))
    }

    /// A table whose group ids may be packed keys themselves, with unused
    /// ids between them (see [`GroupTable::present`]), and whose ids may
    /// move ([`GroupTable::take_moved`]): for an aggregation whose
    /// accumulators take a group never updated as empty.
    pub fn sparse(types: &[DataType]) -> Self {
        GroupTable {
            sparse: !types.is_empty(),
            ..GroupTable::new(types)
        }
    }

    /// Number of group ids: the groups seen, and for a sparse table the
    /// unused ids between them.
    pub fn len(&self) -> usize {
        match &self.index {
            Index::Identity { seen, .. } => seen.len(),
            _ => self.keys.len() / self.stride,
        }
    }

    /// True when no group has been seen.
    pub fn is_empty(&self) -> bool {
        match &self.index {
            Index::Identity { seen, .. } => !seen.any(),
            _ => self.keys.is_empty(),
        }
    }

    /// Which ids are groups, where some are not (a sparse table's unused
    /// ids); `None` when every id is a group.
    pub fn present(&self) -> Option<BooleanArray> {
        let Index::Identity { seen, .. } = &self.index else {
            return None;
        };
        if seen.all() {
            return None;
        }
        let bits = arrow::buffer::BooleanBuffer::collect_bool(seen.len(), |i| seen.contains(i));
        Some(BooleanArray::new(bits, None))
    }

    /// Where the ids of before the last [`GroupTable::intern`] or
    /// [`GroupTable::intern_groups_of`] went, if they moved (only a sparse
    /// table's do): old id `i` is now id `moved[i]`. State kept by old id
    /// must move with it before the new ids are used; an old id that was
    /// no group maps to 0, and its state must be empty.
    pub fn take_moved(&mut self) -> Option<Vec<u32>> {
        self.moved.take()
    }

    /// Records that old id `i` is now `map[i]`, after any earlier move not
    /// yet taken.
    fn note_moved(&mut self, map: Vec<u32>) {
        self.moved = Some(match self.moved.take() {
            None => map,
            Some(earlier) => then_moved(earlier, &map),
        });
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        let index = match &self.index {
            Index::Empty => 0,
            Index::Direct { ids, .. } => ids.capacity() * 4,
            Index::Packed { ids, cache, .. } => ids.capacity() * 13 + cache.capacity() * 16,
            Index::Full { ids } => ids.capacity() * 5,
            Index::Identity { seen, .. } => seen.bytes(),
        };
        self.keys.capacity() * 8 + index + self.columns.iter().map(KeyColumn::size).sum::<usize>()
    }

    /// The group id of every row, creating groups as needed.
    pub fn intern(&mut self, keys: &[ArrayRef], rows: usize, out: &mut Vec<u32>) -> Result<()> {
        if self.identity_from_integers(keys, out) {
            self.rows_seen += rows;
            return Ok(());
        }
        for (c, (col, array)) in self.columns.iter_mut().zip(keys).enumerate() {
            col.encode_split(array, &mut self.codes[c], &mut self.valid[c])?;
            if self.signed[c] {
                self.codes[c].iter_mut().for_each(|code| *code ^= SIGN);
            }
        }
        self.assign(rows, out)
    }

    /// For a table whose ids are packed keys of one integer column: the
    /// ids of a batch without NULLs straight from its values, if they fit
    /// the layout (false, and nothing done, if not). No codes are built:
    /// `GROUP BY k % 100` spent a tenth of its time copying them.
    fn identity_from_integers(&mut self, keys: &[ArrayRef], out: &mut Vec<u32>) -> bool {
        let (Index::Identity { layout, seen }, [array]) = (&mut self.index, keys) else {
            return false;
        };
        if layout.len() != 1 || array.null_count() > 0 {
            return false;
        }
        let p = layout[0];
        // The codes `KeyColumn` gives these types, sign bit flipped as
        // `intern` flips it.
        let range = if let Some(a) = array.as_primitive_opt::<Int64Type>() {
            offsets_within(a.values(), |v| v as u64 ^ SIGN, p, out)
        } else if let Some(a) = array.as_primitive_opt::<Int32Type>() {
            offsets_within(a.values(), |v| i64::from(v) as u64 ^ SIGN, p, out)
        } else {
            return false;
        };
        match range {
            Some(range) => {
                seen.mark_batch(out, range);
                true
            }
            None => {
                out.clear();
                false
            }
        }
    }

    /// The group id here of every group id of `other` (a table of the same
    /// key types), creating groups as needed: how partial aggregations
    /// merge. An id of `other` that is no group maps to an id whose state
    /// it leaves alone. Where every key column is coded by its value (not
    /// text or intervals, whose codes are each table's own interned ids)
    /// the codes are taken as they are (decoding ten million keys into
    /// arrays to encode them again was most of a merge), and two sparse
    /// tables map id to id by arithmetic alone.
    pub fn intern_groups_of(&mut self, other: &GroupTable, out: &mut Vec<u32>) -> Result<()> {
        let value_coded = self.columns.iter().all(KeyColumn::value_coded);
        if let (Index::Identity { layout, seen }, Index::Identity { layout: l, seen: s }, true) =
            (&mut self.index, &other.index, value_coded)
        {
            // Each of `other`'s ids re-packed under this layout, where that
            // covers the whole of `other`'s: arithmetic per id, no keys
            // built. (Text codes are each table's own: not for them.)
            let theirs: Vec<_> = l
                .iter()
                .map(|p| Some((p.min, p.min + (p.null - 1))))
                .collect();
            if layout == l || fits(layout, &theirs) {
                out.clear();
                out.extend((0..s.len() as u64).map(|id| repack(l, layout, id).unwrap_or(0) as u32));
                for theirs in s.iter() {
                    seen.mark(out[theirs] as usize);
                }
                return Ok(());
            }
        }
        let mut groups = 0;
        if !value_coded {
            let keys = other.key_arrays()?;
            groups = keys.first().map_or(0, |k| k.len());
            self.intern(&keys, groups, out)?;
        } else {
            for c in 0..self.columns.len() {
                let (codes, valid) = other.column_codes(c);
                groups = codes.len();
                self.codes[c] = codes;
                self.valid[c] = valid.unwrap_or_default();
            }
            self.assign(groups, out)?;
        }
        if let Index::Identity { seen, .. } = &other.index {
            // Back from `other`'s groups to all of its ids.
            if out.len() != seen.iter().count() {
                return Err(Error::Internal("a group of a merge lost".into()));
            }
            let mut spread = vec![0u32; seen.len()];
            for (id, &mine) in seen.iter().zip(out.iter()) {
                spread[id] = mine;
            }
            *out = spread;
        }
        Ok(())
    }

    /// True when `other`'s ids are this table's ids for the same keys: both
    /// take packed keys as ids, under one layout, of keys coded by value
    /// (text codes are each table's own).
    pub fn shares_ids_with(&self, other: &GroupTable) -> bool {
        let same_layout = matches!(
            (&self.index, &other.index),
            (Index::Identity { layout, .. }, Index::Identity { layout: theirs, .. })
                if layout == theirs
        );
        same_layout && self.columns.iter().all(KeyColumn::value_coded)
    }

    /// Takes in the groups of `other`, whose ids are this table's
    /// ([`GroupTable::shares_ids_with`]): no id moves, none is looked up.
    pub fn absorb_groups_of(&mut self, other: &GroupTable) {
        if let (Index::Identity { seen, .. }, Index::Identity { seen: theirs, .. }) =
            (&mut self.index, &other.index)
        {
            seen.union(theirs);
        }
    }

    /// Looks up (and creates) the groups of the `rows` rows whose codes are
    /// in `self.codes` and `self.valid`.
    fn assign(&mut self, rows: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        self.rows_seen += rows;
        if self.identity_batch(rows, out) {
            return Ok(());
        }
        let ranges = self.ranges();
        let fitting = match &self.index {
            Index::Empty => false,
            Index::Direct { layout, .. }
            | Index::Packed { layout, .. }
            | Index::Identity { layout, .. } => fits(layout, &ranges),
            Index::Full { .. } => true,
        };
        if !fitting {
            if let Some(moved) = self.reindex(&ranges, rows) {
                self.note_moved(moved);
            }
        }
        match &self.index {
            Index::Identity { .. } => {
                if !self.identity_batch(rows, out) {
                    return Err(Error::Internal(
                        "group keys outside the layout made for them".into(),
                    ));
                }
                return Ok(());
            }
            Index::Direct { layout, .. } | Index::Packed { layout, .. } => {
                pack_batch(layout, &self.codes, &self.valid, rows, &mut self.packed);
            }
            Index::Full { .. } | Index::Empty => {}
        }
        if matches!(self.index, Index::Direct { .. }) {
            self.direct_batch(rows, out);
        } else {
            for row in 0..rows {
                out.push(self.group_of(row));
            }
        }
        // Groups that have come to fill a quarter of their packed range go
        // to a direct array (or become their own ids) from the next batch on.
        let bits = match &self.index {
            Index::Direct { layout, .. } if self.sparse => layout_bits(layout),
            Index::Packed { bits, .. } => Some(*bits),
            _ => None,
        };
        if let Some(bits) = bits {
            let groups = self.len();
            let switch = match &self.index {
                Index::Packed { .. } => direct_pays(bits, 0, groups),
                _ => false,
            } || self.ids_may_be_keys(bits, rows, groups);
            if switch {
                if let Index::Direct { layout, .. } | Index::Packed { layout, .. } = &self.index {
                    let same = widen(layout, &vec![None; layout.len()]);
                    // This batch's ids were handed out before the move.
                    if let Some(moved) = self.reindex(&same, rows) {
                        out.iter_mut().for_each(|id| *id = moved[*id as usize]);
                        self.note_moved(moved);
                    }
                }
            }
        }
        Ok(())
    }

    /// For a table whose ids are its packed keys: every row's id, if every
    /// row's codes fit the layout (false, and nothing done, if not). One
    /// key column without NULLs, the common case, takes one pass: each
    /// code's offset, the largest of them, and the id.
    fn identity_batch(&mut self, rows: usize, out: &mut Vec<u32>) -> bool {
        let single = self.codes.len() == 1 && self.valid[0].is_empty();
        // Several columns, or NULLs: the ranges first, as for any index.
        let ranges = if single { Vec::new() } else { self.ranges() };
        let Index::Identity { layout, seen } = &mut self.index else {
            return false;
        };
        if single {
            let Some(range) = offsets_within(&self.codes[0][..rows], |c| c, layout[0], out) else {
                out.clear();
                return false;
            };
            seen.mark_batch(out, range);
            return true;
        }
        if !fits(layout, &ranges) {
            return false;
        }
        pack_batch(layout, &self.codes, &self.valid, rows, &mut self.packed);
        out.extend(self.packed.iter().map(|&k| k as u32));
        seen.mark_all(out);
        true
    }

    /// Each key column's (smallest, largest) code among this batch's
    /// non-NULL rows; `None` for a column with only NULLs.
    fn ranges(&self) -> Vec<Option<(u64, u64)>> {
        self.codes
            .iter()
            .zip(&self.valid)
            .map(|(codes, valid)| code_range(codes, valid))
            .collect()
    }

    /// Rebuilds the index for a batch with codes in `ranges`: under the
    /// current layout widened to take them in (the batch's own ranges for
    /// the first), or by full keys where that does not fit in 64 bits. Every
    /// group already seen is entered under the new index. Where the ids
    /// move, returns the move, for the caller to note (and to apply to ids
    /// it handed out before it).
    fn reindex(&mut self, ranges: &[Option<(u64, u64)>], rows: usize) -> Option<Vec<u32>> {
        let mut moved = None;
        let target = match &self.index {
            Index::Direct { layout, .. }
            | Index::Packed { layout, .. }
            | Index::Identity { layout, .. } => widen(layout, ranges),
            Index::Empty => first_ranges(ranges),
            Index::Full { .. } => ranges.to_vec(),
        };
        if let Index::Identity { .. } = &self.index {
            // Its groups become stored keys first, each index below being
            // built from those.
            let (keys, ids) = self.identity_keys();
            self.keys = keys;
            self.index = Index::Empty;
            moved = Some(ids);
        }
        let groups = self.len();
        let layout = layout_of(&target);
        if let Some((layout, bits)) = layout
            .as_ref()
            .filter(|(_, bits)| self.ids_may_be_keys(*bits, rows, groups))
        {
            let mut seen = UsedIds::new(1usize << bits);
            let ids: Vec<u32> = self
                .keys
                .chunks_exact(self.stride)
                .map(|key| pack_stored(layout, key) as u32)
                .collect();
            seen.mark_all(&ids);
            self.keys.clear();
            self.index = Index::Identity {
                layout: layout.clone(),
                seen,
            };
            return Some(match moved {
                None => ids,
                Some(earlier) => then_moved(earlier, &ids),
            });
        }
        let stored = self.keys.chunks_exact(self.stride);
        self.index = match layout {
            Some((layout, bits)) if direct_pays(bits, rows, groups) => {
                let mut ids = vec![u32::MAX; 1usize << bits];
                for (id, key) in stored.enumerate() {
                    ids[pack_stored(&layout, key) as usize] = id as u32;
                }
                Index::Direct { layout, ids }
            }
            Some((layout, bits)) => {
                let mut ids = HashMap::with_capacity_and_hasher(groups, fixed_state());
                for (id, key) in stored.enumerate() {
                    ids.insert(pack_stored(&layout, key), id as u32);
                }
                Index::Packed {
                    layout,
                    bits,
                    ids,
                    cache: vec![(0, u32::MAX); CACHE],
                }
            }
            None => {
                let (keys, stride) = (&self.keys, self.stride);
                let mut ids = hashbrown::HashTable::with_capacity(groups);
                for (id, key) in stored.enumerate() {
                    ids.insert_unique(hash_key(key), id as u32, |&i| {
                        hash_key(&keys[i as usize * stride..][..stride])
                    });
                }
                Index::Full { ids }
            }
        };
        moved
    }

    /// For a table whose ids are its packed keys: its groups' full keys as
    /// `keys` holds them (in id order), and each id's place among them (0
    /// for an id that is no group). Empty for any other table.
    fn identity_keys(&self) -> (Vec<u64>, Vec<u32>) {
        let Index::Identity { layout, seen } = &self.index else {
            return (Vec::new(), Vec::new());
        };
        let mut keys = Vec::new();
        let mut places = vec![0u32; seen.len()];
        for id in seen.iter() {
            let start = keys.len();
            keys.resize(start + self.stride, 0);
            for (c, p) in layout.iter().enumerate() {
                let bits = 64 - p.null.leading_zeros();
                let offset = (id as u64 >> p.shift) & (u64::MAX >> (64 - bits));
                if offset == p.null {
                    keys[start] |= 1 << (c % 64);
                } else {
                    keys[start + c + 1] = p.min + offset;
                }
            }
            places[id] = (start / self.stride) as u32;
        }
        (keys, places)
    }

    /// The group of every row through the direct array, from the batch's
    /// packed keys, each lookup prefetching the entry a few rows ahead. Past
    /// a few hundred thousand groups the array is out of cache and every
    /// lookup a miss; issued ahead, the misses overlap instead of following
    /// one another.
    fn direct_batch(&mut self, rows: usize, out: &mut Vec<u32>) {
        let Index::Direct { ids, .. } = &mut self.index else {
            return;
        };
        let packed = &self.packed[..rows];
        // First every row's group as the array has it (no branch per row,
        // and no prefetch while the array sits in the core's cache), then
        // groups for the rows whose key had none: after the first batches
        // there are few or none.
        if ids.len() > PREFETCH_ENTRIES {
            out.extend(packed.iter().enumerate().map(|(row, &k)| {
                if let Some(&ahead) = packed.get(row + PREFETCH_AHEAD) {
                    prefetch(&ids[ahead as usize]);
                }
                ids.get(k as usize).copied().unwrap_or(u32::MAX)
            }));
        } else {
            out.extend(
                packed
                    .iter()
                    .map(|&k| ids.get(k as usize).copied().unwrap_or(u32::MAX)),
            );
        }
        if !out.contains(&u32::MAX) {
            return;
        }
        for (row, (id, &k)) in out.iter_mut().zip(packed).enumerate() {
            if *id == u32::MAX {
                let slot = &mut ids[k as usize];
                if *slot == u32::MAX {
                    *slot = push_key(&mut self.keys, &self.codes, &self.valid, row);
                }
                *id = *slot;
            }
        }
    }

    /// The group of `row`, created if new, through the packed-key hash map
    /// or the full-key table (the direct array goes a batch at a time,
    /// [`GroupTable::direct_batch`]).
    fn group_of(&mut self, row: usize) -> u32 {
        match &mut self.index {
            Index::Packed { ids, cache, .. } => {
                let k = self.packed[row];
                // Fibonacci hashing: the top bits of k * 2^64/phi pick the slot.
                let slot = (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - CACHE_BITS)) as usize;
                let (cached_key, cached_id) = cache[slot];
                if cached_id != u32::MAX && cached_key == k {
                    return cached_id;
                }
                let (codes, valid, keys) = (&self.codes, &self.valid, &mut self.keys);
                let id = *ids
                    .entry(k)
                    .or_insert_with(|| push_key(keys, codes, valid, row));
                cache[slot] = (k, id);
                id
            }
            Index::Full { ids } => {
                let key = &mut self.key;
                full_key(key, &self.codes, &self.valid, row);
                let (keys, stride) = (&mut self.keys, self.stride);
                let hash = hash_key(key);
                let stored = |id: u32| &keys[id as usize * stride..][..stride];
                if let Some(&id) = ids.find(hash, |&id| stored(id) == key.as_slice()) {
                    return id;
                }
                let id = (keys.len() / stride) as u32;
                keys.extend_from_slice(key);
                let keys = &*keys;
                ids.insert_unique(hash, id, |&id| {
                    hash_key(&keys[id as usize * stride..][..stride])
                });
                id
            }
            Index::Direct { .. } | Index::Identity { .. } | Index::Empty => unreachable_group(),
        }
    }

    /// Column `c`'s code for every group in group-id order (a sparse
    /// table's unused ids left out), and whether each is non-NULL (`None`
    /// when none is NULL).
    fn column_codes(&self, c: usize) -> (Vec<u64>, Option<Vec<bool>>) {
        if let Index::Identity { layout, seen } = &self.index {
            let p = layout[c];
            let bits = 64 - p.null.leading_zeros();
            let mask = u64::MAX >> (64 - bits);
            let offsets = seen.iter().map(|id| (id as u64 >> p.shift) & mask);
            let codes = offsets
                .clone()
                .map(|o| if o == p.null { 0 } else { p.min + o });
            let codes: Vec<u64> = codes.collect();
            let valid = offsets
                .clone()
                .any(|o| o == p.null)
                .then(|| offsets.map(|o| o != p.null).collect());
            return (codes, valid);
        }
        let keys = self.keys.chunks_exact(self.stride);
        (
            keys.map(|k| k[c + 1]).collect(),
            stored_valid(&self.keys, self.stride, c),
        )
    }

    /// One column per key column with every group's key value, in group-id
    /// order (a sparse table's unused ids left out).
    pub fn key_arrays(&self) -> Result<Vec<ArrayRef>> {
        self.columns
            .iter()
            .enumerate()
            .map(|(c, col)| {
                let flip = if self.signed[c] { SIGN } else { 0 };
                if let (Index::Identity { layout, seen }, DataType::Int64) =
                    (&self.index, &col.data_type)
                {
                    return Ok(identity_int64_keys(layout[c], seen, flip));
                }
                let (codes, valid) = self.column_codes(c);
                if col.data_type == DataType::Int64 {
                    // The common key, built straight from the codes: at ten
                    // million groups the per-value path took a third of a second.
                    let values: Vec<i64> = codes.iter().map(|&k| (k ^ flip) as i64).collect();
                    let nulls = valid.map(arrow::buffer::NullBuffer::from);
                    return Ok(Arc::new(Int64Array::new(values.into(), nulls)) as ArrayRef);
                }
                let codes: Vec<Option<u64>> = match valid {
                    None => codes.iter().map(|&k| Some(k ^ flip)).collect(),
                    Some(valid) => codes
                        .iter()
                        .zip(valid)
                        .map(|(&k, ok)| ok.then_some(k ^ flip))
                        .collect(),
                };
                col.decode(&codes)
            })
            .collect()
    }
}

/// A bigint key column of a packed-key table, column `p` of its layout,
/// straight from the used ids in one pass (`flip` undoing the sign flip of
/// its codes): no codes vector between, which at ten million groups was
/// 80 MB more and two more passes over the ids.
fn identity_int64_keys(p: PackedColumn, seen: &UsedIds, flip: u64) -> ArrayRef {
    let bits = 64 - p.null.leading_zeros();
    let mask = u64::MAX >> (64 - bits);
    let mut any_null = false;
    let values: Vec<i64> = seen
        .iter()
        .map(|id| {
            let offset = (id as u64 >> p.shift) & mask;
            any_null |= offset == p.null;
            (p.min.wrapping_add(offset) ^ flip) as i64
        })
        .collect();
    let nulls = any_null.then(|| {
        seen.iter()
            .map(|id| (id as u64 >> p.shift) & mask != p.null)
            .collect::<arrow::buffer::NullBuffer>()
    });
    Arc::new(Int64Array::new(values.into(), nulls))
}

/// The sign bit of a 64-bit code.
const SIGN: u64 = 1 << 63;

/// Whether each stored key (`stride` codes each) is non-NULL in column
/// `c`; `None` when none is NULL.
fn stored_valid(keys: &[u64], stride: usize, c: usize) -> Option<Vec<bool>> {
    let null = 1u64 << (c % 64);
    let keys = keys.chunks_exact(stride);
    keys.clone()
        .any(|k| k[0] & null != 0)
        .then(|| keys.map(|k| k[0] & null == 0).collect())
}

/// Each value's offset from `p.min` (of its code, `code(value)`) as an id
/// into `out`, and the smallest and largest offsets, if every one is a
/// value's offset under `p` (below NULL's): four lanes of minima and
/// maxima, no branch. A code below `p.min` wraps to a huge offset and
/// fails the test.
fn offsets_within<T: Copy>(
    values: &[T],
    code: impl Fn(T) -> u64,
    p: PackedColumn,
    out: &mut Vec<u32>,
) -> Option<(u64, u64)> {
    out.clear();
    out.resize(values.len(), 0);
    let (mut lo, mut hi) = ([u64::MAX; 4], [0u64; 4]);
    let mut ids = out.chunks_exact_mut(4);
    let mut quads = values.chunks_exact(4);
    for (ids, quad) in (&mut ids).zip(&mut quads) {
        for lane in 0..4 {
            let offset = code(quad[lane]).wrapping_sub(p.min);
            lo[lane] = lo[lane].min(offset);
            hi[lane] = hi[lane].max(offset);
            ids[lane] = offset as u32;
        }
    }
    for (id, &value) in ids.into_remainder().iter_mut().zip(quads.remainder()) {
        let offset = code(value).wrapping_sub(p.min);
        lo[0] = lo[0].min(offset);
        hi[0] = hi[0].max(offset);
        *id = offset as u32;
    }
    let (lo, hi) = (lo.into_iter().min()?, hi.into_iter().max()?);
    (hi < p.null).then_some((lo, hi))
}

/// Id `id` of `from` packed by `to` (which covers `from`'s ranges);
/// `None` for an id that packs no key (an offset past a column's NULL).
fn repack(from: &[PackedColumn], to: &[PackedColumn], id: u64) -> Option<u64> {
    from.iter().zip(to).try_fold(0, |packed, (f, t)| {
        let bits = 64 - f.null.leading_zeros();
        let offset = (id >> f.shift) & (u64::MAX >> (64 - bits));
        let value = match offset.cmp(&f.null) {
            std::cmp::Ordering::Equal => t.null,
            std::cmp::Ordering::Greater => return None,
            std::cmp::Ordering::Less => f.min + offset - t.min,
        };
        Some(packed | value << t.shift)
    })
}

/// A move `earlier` (old id -> id) followed by `later` (id -> new id).
fn then_moved(earlier: Vec<u32>, later: &[u32]) -> Vec<u32> {
    earlier
        .into_iter()
        .map(|id| later.get(id as usize).copied().unwrap_or(0))
        .collect()
}

/// How many bits a packed key of `layout` spans.
fn layout_bits(layout: &[PackedColumn]) -> Option<u32> {
    layout.last().map(|p| p.shift + 64 - p.null.leading_zeros())
}

/// Whether [`KeyColumn`] codes values of `t` as two's complement integers
/// (of the value, a date's days, a time's microseconds, a numeric's
/// unscaled digits), whose order the sign bit breaks.
fn signed_codes(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int32
            | DataType::Int64
            | DataType::Date32
            | DataType::Timestamp(..)
            | DataType::Decimal128(..)
    )
}

/// `row`'s full key into `key`: the NULL mask (NULLs group together, as
/// GROUP BY requires), then each column's code (0 where NULL).
fn full_key(key: &mut Vec<u64>, codes: &[Vec<u64>], valid: &[Vec<bool>], row: usize) {
    key.clear();
    key.resize(codes.len() + 1, 0);
    for (c, (codes, valid)) in codes.iter().zip(valid).enumerate() {
        if valid.get(row).copied().unwrap_or(true) {
            key[c + 1] = codes[row];
        } else {
            key[0] |= 1 << (c % 64);
        }
    }
}

/// Appends `row`'s full key to `keys` as a new group; its id.
fn push_key(keys: &mut Vec<u64>, codes: &[Vec<u64>], valid: &[Vec<bool>], row: usize) -> u32 {
    let stride = codes.len() + 1;
    let id = (keys.len() / stride) as u32;
    let start = keys.len();
    keys.resize(start + stride, 0);
    for (c, (codes, valid)) in codes.iter().zip(valid).enumerate() {
        if valid.get(row).copied().unwrap_or(true) {
            keys[start + c + 1] = codes[row];
        } else {
            keys[start] |= 1 << (c % 64);
        }
    }
    id
}

/// Direct arrays of more entries than this (1 MiB of ids) are prefetched
/// ahead of the rows that look them up; smaller ones stay in cache.
const PREFETCH_ENTRIES: usize = 1 << 18;

/// [`GroupTable::intern`] re-indexes before looking up any row, so the
/// index is never empty there, and direct arrays are looked up a batch at a
/// time.
fn unreachable_group() -> u32 {
    unreachable!("a group looked up before the table was indexed")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range of a batch's codes counts every row, the last few (past
    /// the four lanes) included, and only valid ones where there are NULLs.
    #[test]
    fn code_ranges_cover_every_row_and_skip_nulls() {
        for n in 1..12u64 {
            let codes: Vec<u64> = (0..n).map(|i| 100 + (i * 7) % n).collect();
            let (lo, hi) = (codes.iter().min().copied(), codes.iter().max().copied());
            assert_eq!(code_range(&codes, &[]), lo.zip(hi), "{n} rows");
        }
        let codes = [5, 900, 7, 1, 6];
        assert_eq!(
            code_range(&codes, &[true, false, true, false, true]),
            Some((5, 7))
        );
        assert_eq!(code_range(&codes, &[false; 5]), None);
        assert_eq!(code_range(&[], &[]), None);
    }

    /// A deterministic stream of pseudo-random numbers (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Batches whose key ranges change from batch to batch, so every path is taken
    /// (direct array, packed hash map, full keys) and layouts change in between:
    /// the group ids must always agree with a plain map from the key values.
    /// Dictionary entries keep distinct codes: text interned as rows use it
    /// (across batches sharing the dictionary), and integer entries whose
    /// code is u64::MAX (-1), the value that marks text not yet interned.
    #[test]
    fn dictionary_entries_code_apart_whether_text_or_integer() {
        use arrow::array::{DictionaryArray, UInt32Array};
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let mut column = KeyColumn::new(DataType::Utf8);
        let (mut codes, mut valid) = (Vec::new(), Vec::new());
        let batch = |keys: Vec<u32>| -> ArrayRef {
            Arc::new(DictionaryArray::try_new(UInt32Array::from(keys), Arc::clone(&text)).unwrap())
        };
        column
            .encode_split(&batch(vec![2, 0]), &mut codes, &mut valid)
            .unwrap();
        let first = codes.clone();
        column
            .encode_split(&batch(vec![0, 1, 2]), &mut codes, &mut valid)
            .unwrap();
        assert_eq!(codes[0], first[1], "a");
        assert_eq!(codes[2], first[0], "c");
        assert!(codes[1] != codes[0] && codes[1] != codes[2], "b: {codes:?}");
        let decoded = column
            .decode(&codes.iter().map(|c| Some(*c)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            decoded.as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("a"), Some("b"), Some("c")]
        );

        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![-1, 0]));
        let dict: ArrayRef =
            Arc::new(DictionaryArray::try_new(UInt32Array::from(vec![0, 1, 0]), numbers).unwrap());
        let mut column = KeyColumn::new(DataType::Int64);
        column.encode_split(&dict, &mut codes, &mut valid).unwrap();
        assert_ne!(codes[0], codes[1], "-1 and 0 group apart: {codes:?}");
        assert_eq!(codes[0], codes[2]);
    }

    /// A value one past another batch's range and a NULL group apart: the
    /// packed key standing for NULL is never a value's.
    #[test]
    fn a_value_one_past_the_layout_does_not_meet_null() {
        let mut table = GroupTable::new(&[DataType::Int64]);
        let mut ids = Vec::new();
        let batch = |v: Vec<Option<i64>>| vec![Arc::new(Int64Array::from(v)) as ArrayRef];
        table
            .intern(&batch(vec![Some(10), Some(11), None]), 3, &mut ids)
            .unwrap();
        assert_eq!(ids, [0, 1, 2]);
        table
            .intern(&batch(vec![Some(12), None, Some(10)]), 3, &mut ids)
            .unwrap();
        assert_eq!(ids, [3, 2, 0]);
        table
            .intern(&batch(vec![Some(9), Some(12), None]), 3, &mut ids)
            .unwrap();
        assert_eq!(ids, [4, 3, 2]);
    }

    /// 100,000 keys in one large batch take the wide direct array, and each
    /// row still finds its own group.
    #[test]
    fn a_large_batch_of_wide_keys_groups_through_the_wide_direct_array() {
        let mut table = GroupTable::new(&[DataType::Int64]);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let rows = 200_000;
        let values: Vec<Option<i64>> = (0..rows)
            .map(|_| (!rng.next().is_multiple_of(50)).then(|| (rng.next() % 100_000) as i64 + 7))
            .collect();
        let mut ids = Vec::new();
        let keys = vec![Arc::new(Int64Array::from(values.clone())) as ArrayRef];
        table.intern(&keys, rows, &mut ids).unwrap();
        assert!(
            matches!(&table.index, Index::Direct { ids, .. } if ids.len() > 1 << SMALL_DIRECT_BITS),
            "the wide array"
        );
        let mut reference: HashMap<Option<i64>, u32> = HashMap::new();
        for (v, id) in values.iter().zip(&ids) {
            let next = reference.len() as u32;
            assert_eq!(*reference.entry(*v).or_insert(next), *id, "{v:?}");
        }
        assert_eq!(table.len(), reference.len());
    }

    /// Merging one table's groups into another straight from its codes
    /// finds the same groups as decoding its keys and interning them again,
    /// with NULLs, negative values and a NULL in only one column; a text key
    /// (coded per table) takes the decoding path and agrees too.
    #[test]
    fn groups_of_another_table_map_as_their_decoded_keys_do() {
        for types in [
            vec![DataType::Int64, DataType::Int32],
            vec![DataType::Int64, DataType::Utf8],
        ] {
            let batch = |a: Vec<Option<i64>>, b: Vec<Option<i64>>| -> Vec<ArrayRef> {
                let second: ArrayRef = if types[1] == DataType::Utf8 {
                    Arc::new(StringArray::from(
                        b.iter()
                            .map(|v| v.map(|v| format!("s{v}")))
                            .collect::<Vec<_>>(),
                    ))
                } else {
                    Arc::new(Int32Array::from(
                        b.iter().map(|v| v.map(|v| v as i32)).collect::<Vec<_>>(),
                    ))
                };
                vec![Arc::new(Int64Array::from(a)), second]
            };
            let mut ids = Vec::new();
            let mut mine = GroupTable::new(&types);
            let a = vec![Some(-5), None, Some(7), Some(1 << 40), None];
            let b = vec![Some(1), Some(2), None, Some(-3), None];
            mine.intern(&batch(a, b), 5, &mut ids).unwrap();
            let mut theirs = GroupTable::new(&types);
            let a = vec![None, Some(7), Some(8), Some(-5), None, Some(-1 << 50)];
            let b = vec![None, None, Some(9), Some(1), Some(2), Some(4)];
            theirs.intern(&batch(a, b), 6, &mut ids).unwrap();
            let mut decoded = GroupTable::new(&types);
            decoded
                .intern(&mine.key_arrays().unwrap(), 5, &mut ids)
                .unwrap();
            let mut expected = Vec::new();
            decoded
                .intern(&theirs.key_arrays().unwrap(), 6, &mut expected)
                .unwrap();
            let mut mapping = Vec::new();
            mine.intern_groups_of(&theirs, &mut mapping).unwrap();
            assert_eq!(mapping, expected, "{types:?}");
            assert_eq!(mapping, [4, 2, 5, 0, 1, 6], "{types:?}");
        }
    }

    /// A million keys arriving in scan-sized batches (a segment block of
    /// 62,500 rows is too small for a direct array of 2^20): the first go
    /// to the packed hash map, the table moves to a direct array once the
    /// groups fill a quarter of one, and batches meeting the range's edges
    /// keep it at 20 bits (a 21st doubles the array and, at a million
    /// groups, sent the table back to the hash map).
    #[test]
    fn a_million_groups_end_in_a_direct_array_of_twenty_bits() {
        let mut table = GroupTable::new(&[DataType::Int64]);
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut reference: HashMap<i64, u32> = HashMap::new();
        let mut ids = Vec::new();
        for batch in 0..40 {
            let mut values: Vec<i64> = (0..60_000)
                .map(|_| 3 + (rng.next() % 999_987) as i64)
                .collect();
            if batch == 30 {
                values[0] = 0;
                values[1] = 999_999;
            }
            let keys = vec![Arc::new(Int64Array::from(values.clone())) as ArrayRef];
            table.intern(&keys, values.len(), &mut ids).unwrap();
            for (v, id) in values.iter().zip(&ids) {
                let next = reference.len() as u32;
                assert_eq!(*reference.entry(*v).or_insert(next), *id, "{v}");
            }
        }
        assert!(
            matches!(&table.index, Index::Direct { ids, .. } if ids.len() == 1 << 20),
            "a direct array of 2^20 entries"
        );
        assert_eq!(table.len(), reference.len());
    }

    /// Per-id row counts kept the way an aggregation keeps its state:
    /// following every move the table reports.
    fn count_rows(table: &mut GroupTable, counts: &mut Vec<u64>, ids: &[u32]) {
        if let Some(moved) = table.take_moved() {
            let mut moved_counts = vec![0; table.len()];
            for (old, &new) in moved.iter().enumerate() {
                moved_counts[new as usize] += counts.get(old).copied().unwrap_or(0);
            }
            *counts = moved_counts;
        }
        counts.resize(table.len(), 0);
        for &id in ids {
            counts[id as usize] += 1;
        }
    }

    /// Rows counted per key through a sparse table's ids, moves and present
    /// ids, as `key_arrays` gives the keys back.
    fn counts_by_key(table: &GroupTable, counts: &[u64]) -> HashMap<Option<i64>, u64> {
        let keys = table.key_arrays().unwrap();
        let keys = arrow::compute::cast(&keys[0], &DataType::Int64).unwrap();
        let keys = keys.as_primitive::<Int64Type>();
        let present = table.present();
        let counts: Vec<u64> = (0..table.len())
            .filter(|&i| present.as_ref().is_none_or(|p| p.value(i)))
            .map(|i| counts[i])
            .collect();
        assert_eq!(keys.len(), counts.len(), "one key per present id");
        (0..keys.len())
            .map(|i| (keys.is_valid(i).then(|| keys.value(i)), counts[i]))
            .collect()
    }

    /// A sparse table's ids are its packed keys from the first batch; when
    /// a batch falls outside the layout (below, far above, then too wide
    /// to pack) the ids move, and counts that follow the moves stay with
    /// their keys. Two tables whose first batches gave them different
    /// layouts merge by arithmetic on the ids, NULL keys included.
    #[test]
    fn sparse_ids_move_with_their_groups_and_merge_by_layout() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut reference: HashMap<Option<i64>, u64> = HashMap::new();
        let mut tables = [
            GroupTable::sparse(&[DataType::Int64]),
            GroupTable::sparse(&[DataType::Int64]),
        ];
        let mut counts = [Vec::new(), Vec::new()];
        // (lowest key, keys' range, whether some are NULL), alternating tables.
        let shapes = [
            (1_000, 3_000, false),
            (5_000, 2_000, false),
            (-50, 900, true),
            (1_000, 3_000, false),
            (0, 1 << 40, false),
            (100, 50, true),
        ];
        let mut ids = Vec::new();
        for (batch, &(lo, range, nulls)) in shapes.iter().enumerate() {
            let which = batch % 2;
            let values: Vec<Option<i64>> = (0..8_000)
                .map(|_| {
                    (!nulls || !rng.next().is_multiple_of(5))
                        .then(|| lo + (rng.next() % range) as i64)
                })
                .collect();
            let table = &mut tables[which];
            table.expect_rows(64_000);
            let keys = vec![Arc::new(Int64Array::from(values.clone())) as ArrayRef];
            table.intern(&keys, values.len(), &mut ids).unwrap();
            if batch < 2 {
                assert!(
                    matches!(table.index, Index::Identity { .. }),
                    "batch {batch}"
                );
                for (v, &id) in values.iter().zip(&ids) {
                    let Index::Identity { layout, .. } = &table.index else {
                        unreachable!()
                    };
                    let code = (v.unwrap() as u64) ^ SIGN;
                    assert_eq!(u64::from(id), code - layout[0].min, "the id is the key");
                }
            }
            count_rows(table, &mut counts[which], &ids);
            for v in values {
                *reference.entry(v).or_default() += 1;
            }
        }
        assert!(matches!(
            tables[0].index,
            Index::Packed { .. } | Index::Full { .. }
        ));
        assert!(matches!(tables[1].index, Index::Identity { .. }));
        // The packed-again table into the sparse one, then the other way.
        let [a, b] = &mut tables;
        let mut merged = GroupTable::sparse(&[DataType::Int64]);
        let mut merged_counts = Vec::new();
        for (other, other_counts) in [(&*b, &counts[1]), (&*a, &counts[0])] {
            merged.intern_groups_of(other, &mut ids).unwrap();
            assert_eq!(ids.len(), other.len(), "an id for each of the other's ids");
            count_rows(&mut merged, &mut merged_counts, &[]);
            for (theirs, &mine) in ids.iter().enumerate() {
                merged_counts[mine as usize] += other_counts[theirs];
            }
        }
        assert_eq!(counts_by_key(&merged, &merged_counts), reference);

        // Two sparse tables of one value range but different first batches.
        let mut reference: HashMap<Option<i64>, u64> = HashMap::new();
        let mut pair = [
            GroupTable::sparse(&[DataType::Int64]),
            GroupTable::sparse(&[DataType::Int64]),
        ];
        let mut pair_counts = [Vec::new(), Vec::new()];
        for (which, (lo, range)) in [(0, (0, 5_000)), (1, (2_000, 3_000)), (0, (0, 4_000))] {
            let values: Vec<Option<i64>> = (0..20_000)
                .map(|_| (!rng.next().is_multiple_of(50)).then(|| lo + (rng.next() % range) as i64))
                .collect();
            let keys = vec![Arc::new(Int64Array::from(values.clone())) as ArrayRef];
            pair[which].intern(&keys, values.len(), &mut ids).unwrap();
            count_rows(&mut pair[which], &mut pair_counts[which], &ids);
            for v in values {
                *reference.entry(v).or_default() += 1;
            }
        }
        let [a, b] = &mut pair;
        assert!(matches!(
            (&a.index, &b.index),
            (Index::Identity { .. }, Index::Identity { .. })
        ));
        a.intern_groups_of(b, &mut ids).unwrap();
        assert!(a.take_moved().is_none(), "merged without a move");
        for (theirs, &mine) in ids.iter().enumerate() {
            pair_counts[0][mine as usize] += pair_counts[1][theirs];
        }
        assert_eq!(counts_by_key(a, &pair_counts[0]), reference);
        // And a third whose keys lie past the first's layout: the first
        // widens (its ids move) before the third's map into it.
        let mut c = GroupTable::sparse(&[DataType::Int64]);
        let values: Vec<Option<i64>> = (0..3_000).map(|i| Some(90_000 + i % 700)).collect();
        let keys = vec![Arc::new(Int64Array::from(values.clone())) as ArrayRef];
        let mut c_counts = Vec::new();
        c.intern(&keys, values.len(), &mut ids).unwrap();
        count_rows(&mut c, &mut c_counts, &ids);
        for v in values {
            *reference.entry(v).or_default() += 1;
        }
        a.intern_groups_of(&c, &mut ids).unwrap();
        count_rows(a, &mut pair_counts[0], &[]);
        for (theirs, &mine) in ids.iter().enumerate() {
            pair_counts[0][mine as usize] += c_counts[theirs];
        }
        assert_eq!(counts_by_key(a, &pair_counts[0]), reference);
        // A fourth of many groups over a wide range, expecting many rows:
        // packed-key ids after its first batch, marked in a bitmap.
        let mut d = GroupTable::sparse(&[DataType::Int64]);
        d.expect_rows(1_000_000);
        let mut d_counts = Vec::new();
        for _ in 0..3 {
            let values: Vec<Option<i64>> = (0..20_000)
                .map(|_| Some(-40_000 + (rng.next() % 300_000) as i64))
                .collect();
            let keys = vec![Arc::new(Int64Array::from(values.clone())) as ArrayRef];
            d.intern(&keys, values.len(), &mut ids).unwrap();
            count_rows(&mut d, &mut d_counts, &ids);
            for v in values {
                *reference.entry(v).or_default() += 1;
            }
        }
        assert!(matches!(
            &d.index,
            Index::Identity {
                seen: UsedIds::Bits { .. },
                ..
            }
        ));
        a.intern_groups_of(&d, &mut ids).unwrap();
        count_rows(a, &mut pair_counts[0], &[]);
        for (theirs, &mine) in ids.iter().enumerate() {
            pair_counts[0][mine as usize] += d_counts[theirs];
        }
        assert_eq!(counts_by_key(a, &pair_counts[0]), reference);
    }

    /// Integer keys without NULLs take their ids straight from their values
    /// where the ids are packed keys: the same ids, moves and keys as the
    /// codes would give, for integer and bigint, negative values included;
    /// a batch with a NULL, and one past the layout, take the general path.
    /// A batch whose range holds an id no row used yet marks it.
    #[test]
    fn integer_keys_give_packed_key_ids_from_their_values() {
        for data_type in [DataType::Int32, DataType::Int64] {
            let mut table = GroupTable::sparse(std::slice::from_ref(&data_type));
            let mut counts = Vec::new();
            let mut reference: HashMap<Option<i64>, u64> = HashMap::new();
            let batches: [Vec<Option<i64>>; 5] = [
                (0..300).map(|i| Some(i % 3 * 2 - 60)).collect(),
                (0..300).map(|i| Some(i % 5 - 60)).collect(),
                (0..300)
                    .map(|i| (i % 7 != 0).then_some(i % 50 - 25))
                    .collect(),
                (0..300).map(|i| Some(i % 40 - 20)).collect(),
                (0..300).map(|i| Some(i * 1_000 - 5)).collect(),
            ];
            let mut ids = Vec::new();
            for values in batches {
                let array: ArrayRef = Arc::new(Int64Array::from(values.clone()));
                let array = arrow::compute::cast(&array, &data_type).unwrap();
                table.intern(&[array], values.len(), &mut ids).unwrap();
                count_rows(&mut table, &mut counts, &ids);
                for v in values {
                    *reference.entry(v).or_default() += 1;
                }
                assert_eq!(counts_by_key(&table, &counts), reference, "{data_type}");
            }
        }
    }

    #[test]
    fn every_packing_path_agrees_with_a_plain_map() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut table = GroupTable::new(&[DataType::Int64, DataType::Utf8, DataType::Int64]);
        type Key = (Option<i64>, Option<String>, Option<i64>);
        let mut reference: HashMap<Key, u32> = HashMap::new();
        // (range of column a, range of column c, where a's range starts, rows):
        // small, medium, huge; windows that move up and down, as the batches
        // of a point query's segments do; a range past the small direct
        // array in a batch too small for a wide one.
        let shapes = [
            (4, 3, 0, 3000),
            (1000, 50, 0, 3000),
            (4, 3, 0, 3000),
            (10, 3, 500, 3000),
            (10, 3, 480, 3000),
            (10, 3, 520, 3000),
            (10, 3, 505, 3000),
            (100_000, 3, 7, 3000),
            (10, 3, 90_000, 3000),
            (1 << 40, 1 << 40, 0, 3000),
            (u64::MAX, 7, 0, 3000),
            (4, 3, 0, 3000),
        ];
        for (batch, &(ra, rc, base, rows)) in shapes.iter().enumerate() {
            let mut a = Vec::new();
            let mut b = Vec::new();
            let mut c = Vec::new();
            for _ in 0..rows {
                let null = rng.next().is_multiple_of(10);
                a.push((!null).then(|| (rng.next() % ra) as i64 - 2 + base));
                b.push((!rng.next().is_multiple_of(7)).then(|| format!("s{}", rng.next() % 5)));
                c.push((!rng.next().is_multiple_of(9)).then(|| (rng.next() % rc) as i64));
            }
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(a.clone())),
                Arc::new(StringArray::from(b.clone())),
                Arc::new(Int64Array::from(c.clone())),
            ];
            let mut ids = Vec::new();
            table.intern(&arrays, rows, &mut ids).unwrap();
            for r in 0..rows {
                let key = (a[r], b[r].clone(), c[r]);
                let next = reference.len() as u32;
                let expected = *reference.entry(key.clone()).or_insert(next);
                assert_eq!(ids[r], expected, "batch {batch} row {r}: {key:?}");
            }
        }
        assert_eq!(table.len(), reference.len());
        // And the keys come back as they went in.
        let keys = table.key_arrays().unwrap();
        let a = keys[0].as_primitive::<Int64Type>();
        let b = keys[1].as_string::<i32>();
        for ((ka, kb, _), id) in &reference {
            let id = *id as usize;
            assert_eq!(a.is_valid(id).then(|| a.value(id)), *ka);
            assert_eq!(b.is_valid(id).then(|| b.value(id).to_string()), *kb);
        }
    }
}
