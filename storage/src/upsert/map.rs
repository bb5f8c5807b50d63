//! The primary-key map: for each key, where its latest row is and that row's
//! comparison value.

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

/// A key's 64-bit hash for the index. Keys are exact small integers as often
/// as hashes, so they are mixed before the table uses their low bits.
fn hash(key: u128) -> u64 {
    let x = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// One key and its entry: 32 bytes.
#[derive(Clone, Copy)]
struct Slot {
    key: u128,
    entry: Packed,
}

/// Entries per arena chunk: growing adds a chunk and never copies or doubles
/// what is there.
const CHUNK: usize = 1 << 16;

/// Key to latest row.
///
/// Written by hand because memory per key is the budget (under 48 bytes at
/// ten million keys; a `HashMap<u128, 16-byte value>` takes about 55, since
/// its power-of-two table is often little more than half full and each slot
/// carries the whole entry). Entries live densely in an arena of fixed-size
/// chunks, 32 bytes each; the hash table holds only their 4-byte positions,
/// so its empty slots cost 5 bytes instead of 33.
#[derive(Default)]
pub struct PrimaryKeyMap {
    index: hashbrown::HashTable<u32>,
    chunks: Vec<Vec<Slot>>,
    len: usize,
}

impl PrimaryKeyMap {
    fn slot(&self, i: u32) -> &Slot {
        let i = i as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        let i = i as usize;
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    fn position(&self, key: u128) -> Option<u32> {
        self.index
            .find(hash(key), |&i| self.slot(i).key == key)
            .copied()
    }

    /// The key's entry, if the key was seen.
    pub fn get(&self, key: KeyHash) -> Option<KeyEntry> {
        self.position(key.0).map(|i| self.slot(i).entry.unpack())
    }

    /// Sets the key's entry.
    pub fn insert(&mut self, key: KeyHash, entry: KeyEntry) {
        let packed = Packed::pack(entry);
        if let Some(i) = self.position(key.0) {
            self.slot_mut(i).entry = packed;
            return;
        }
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let i = self.len as u32;
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(Slot {
                key: key.0,
                entry: packed,
            });
        }
        self.len += 1;
        let chunks = &self.chunks;
        self.index.insert_unique(hash(key.0), i, |&j| {
            let j = j as usize;
            hash(chunks[j / CHUNK][j % CHUNK].key)
        });
    }

    /// Forgets a key.
    pub fn remove(&mut self, key: KeyHash) {
        let k = key.0;
        let Ok(found) = self.index.find_entry(hash(k), |&i| {
            let i = i as usize;
            self.chunks[i / CHUNK][i % CHUNK].key == k
        }) else {
            return;
        };
        let (i, _) = found.remove();
        // The last entry moves into the hole; its index slot follows it.
        let last = (self.len - 1) as u32;
        if i != last {
            let moved = *self.slot(last);
            *self.slot_mut(i) = moved;
            if let Some(p) = self.index.find_mut(hash(moved.key), |&j| j == last) {
                *p = i;
            }
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.pop();
            if chunk.is_empty() {
                self.chunks.pop();
            }
        }
        self.len -= 1;
    }

    /// Keys known.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is known.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the entries `keep` says yes to, and gives back the memory of the
    /// rest: the arena and the index are rebuilt to fit.
    pub fn retain(&mut self, mut keep: impl FnMut(KeyHash, KeyEntry) -> bool) {
        let kept: Vec<Slot> = self
            .chunks
            .iter()
            .flatten()
            .filter(|s| keep(KeyHash(s.key), s.entry.unpack()))
            .copied()
            .collect();
        if kept.len() == self.len {
            return;
        }
        *self = PrimaryKeyMap::default();
        self.index.reserve(kept.len(), |_| 0);
        for s in kept {
            self.insert(KeyHash(s.key), s.entry.unpack());
        }
    }

    /// Moves entries in one pass: each entry's location goes where `moved`
    /// says (`None` leaves it).
    pub fn relocate(&mut self, mut moved: impl FnMut(Location) -> Option<Location>) {
        for s in self.chunks.iter_mut().flatten() {
            let p = &mut s.entry;
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

    /// Heap bytes the map holds: the index's table and the arena's chunks.
    pub fn heap_bytes(&self) -> usize {
        self.index.allocation_size() + self.chunks.len() * CHUNK * std::mem::size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(i: u32) -> KeyEntry {
        KeyEntry {
            location: Location {
                segment: i % 7,
                row: i,
            },
            comparison: i64::from(i) * 3,
            deleted: i.is_multiple_of(5),
        }
    }

    /// The map against a `HashMap` through inserts, updates, removes,
    /// retains and relocations across chunk boundaries.
    #[test]
    fn behaves_as_a_hash_map() {
        let mut map = PrimaryKeyMap::default();
        let mut model: HashMap<u128, KeyEntry> = HashMap::new();
        for i in 0..200_000u32 {
            let key = u128::from(i.wrapping_mul(2_654_435_761) % 150_000);
            map.insert(KeyHash(key), entry(i));
            model.insert(key, entry(i));
            if i % 3 == 0 {
                let gone = u128::from(i % 150_000);
                map.remove(KeyHash(gone));
                model.remove(&gone);
            }
        }
        map.retain(|k, _| k.0 % 4 != 1);
        model.retain(|k, _| k % 4 != 1);
        map.relocate(|at| {
            (at.segment == 3).then_some(Location {
                segment: 9,
                row: at.row + 1,
            })
        });
        for e in model.values_mut() {
            if e.location.segment == 3 {
                e.location = Location {
                    segment: 9,
                    row: e.location.row + 1,
                };
            }
        }
        assert_eq!(map.len(), model.len());
        for (k, e) in &model {
            assert_eq!(map.get(KeyHash(*k)), Some(*e));
        }
        assert_eq!(map.get(KeyHash(1)), None);
    }
}
