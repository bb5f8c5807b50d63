//! The primary-key map: for each key, where its latest row is and that row's
//! comparison value.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use super::key::KeyHash;

/// A row of a segment: sealed segments by their number, in-memory ones by a
/// number from [`super::FIRST_MEMORY_SEGMENT`] up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The segment.
    pub segment: u32,
    /// The row within it.
    pub row: u32,
}

/// What the map knows of a key's latest row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// Where it is.
    pub location: Location,
    /// Its comparison value.
    pub comparison: i64,
    /// It deleted the key (its delete column is true): it is kept, invisible,
    /// so an older row arriving later cannot bring the key back.
    pub deleted: bool,
}

/// Packed to 16 bytes: the deleted flag rides in the segment number's top
/// bit (segment numbers stay below 2^31).
#[derive(Clone, Copy)]
struct Packed {
    segment: u32,
    row: u32,
    comparison: i64,
}

const DELETED: u32 = 1 << 31;

impl Packed {
    fn pack(e: KeyEntry) -> Packed {
        Packed {
            segment: e.location.segment | if e.deleted { DELETED } else { 0 },
            row: e.location.row,
            comparison: e.comparison,
        }
    }

    fn unpack(self) -> KeyEntry {
        KeyEntry {
            location: Location {
                segment: self.segment & !DELETED,
                row: self.row,
            },
            comparison: self.comparison,
            deleted: self.segment & DELETED != 0,
        }
    }
}

/// Keys are exact small integers as often as hashes: mix them before the table
/// uses the low bits.
#[derive(Clone, Copy, Default)]
struct MixKeys;

#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.0 = x ^ (x >> 33);
    }
}

impl BuildHasher for MixKeys {
    type Hasher = MixHasher;
    fn build_hasher(&self) -> MixHasher {
        MixHasher::default()
    }
}

/// Key to latest row.
#[derive(Default)]
pub struct PrimaryKeyMap {
    entries: HashMap<u128, Packed, MixKeys>,
}

impl PrimaryKeyMap {
    /// The key's entry, if the key was seen.
    pub fn get(&self, key: KeyHash) -> Option<KeyEntry> {
        self.entries.get(&key.0).map(|p| p.unpack())
    }

    /// Sets the key's entry.
    pub fn insert(&mut self, key: KeyHash, entry: KeyEntry) {
        self.entries.insert(key.0, Packed::pack(entry));
    }

    /// Forgets a key.
    pub fn remove(&mut self, key: KeyHash) {
        self.entries.remove(&key.0);
    }

    /// Keys known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(KeyHash, KeyEntry) -> bool) {
        self.entries.retain(|k, p| keep(KeyHash(*k), p.unpack()));
    }

    /// Moves entries in one pass: each entry's location goes where `moved`
    /// says (`None` leaves it).
    pub fn relocate(&mut self, mut moved: impl FnMut(Location) -> Option<Location>) {
        for p in self.entries.values_mut() {
            let at = Location {
                segment: p.segment & !DELETED,
                row: p.row,
            };
            if let Some(to) = moved(at) {
                p.segment = to.segment | (p.segment & DELETED);
                p.row = to.row;
            }
        }
    }

    /// Heap bytes the map holds (its table, allocated capacity included).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u128, Packed)>() + 1;
        self.entries.capacity() * slot
    }
}
