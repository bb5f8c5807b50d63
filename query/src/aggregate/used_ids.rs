//! Which ids of a group table whose ids are its packed keys rows have used
//! (see `keys::Index::Identity`): the unused ones are holes, left out when
//! the aggregation ends.

/// Whether a row has used each id of a table whose ids are packed keys.
pub(super) enum UsedIds {
    /// A byte per id, for up to [`BYTE_IDS`] ids: marking is a store with
    /// nothing to wait for, where a bit's read-modify-write chains a
    /// hundred groups' rows through the same two words (12% of `GROUP BY
    /// k % 100`).
    Bytes(Vec<u8>),
    /// A bit per id: at ten million groups over 2^24 ids it is 2 MiB that
    /// stays in cache, where 16 MiB of bytes cost a miss a row (a third of
    /// the query).
    Bits { words: Vec<u64>, len: usize },
}

/// Tables of up to this many ids mark them in bytes (64 KiB at most).
const BYTE_IDS: usize = 1 << 16;

impl UsedIds {
    /// `len` ids, none used.
    pub(super) fn new(len: usize) -> Self {
        if len <= BYTE_IDS {
            UsedIds::Bytes(vec![0; len])
        } else {
            UsedIds::Bits {
                words: vec![0; len.div_ceil(64)],
                len,
            }
        }
    }

    /// How many ids there are, used or not.
    pub(super) fn len(&self) -> usize {
        match self {
            UsedIds::Bytes(bytes) => bytes.len(),
            UsedIds::Bits { len, .. } => *len,
        }
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        match self {
            UsedIds::Bytes(bytes) => bytes.capacity(),
            UsedIds::Bits { words, .. } => words.capacity() * 8,
        }
    }

    /// Marks every id `other` has marked. Both cover the same ids (tables
    /// of one layout), so they are of one kind and length and the word-wise
    /// OR below drops nothing.
    pub(super) fn union(&mut self, other: &UsedIds) {
        debug_assert_eq!(self.len(), other.len(), "used ids of two layouts");
        match (self, other) {
            (UsedIds::Bytes(mine), UsedIds::Bytes(theirs)) => {
                mine.iter_mut().zip(theirs).for_each(|(m, t)| *m |= t)
            }
            (UsedIds::Bits { words: mine, .. }, UsedIds::Bits { words: theirs, .. }) => {
                mine.iter_mut().zip(theirs).for_each(|(m, t)| *m |= t)
            }
            (mine, theirs) => theirs.iter().for_each(|id| mine.mark(id)),
        }
    }

    /// Marks `id` used.
    pub(super) fn mark(&mut self, id: usize) {
        match self {
            UsedIds::Bytes(bytes) => bytes[id] = 1,
            UsedIds::Bits { words, .. } => words[id / 64] |= 1 << (id % 64),
        }
    }

    /// Marks every id of `ids` (each below `len`).
    pub(super) fn mark_all(&mut self, ids: &[u32]) {
        match self {
            UsedIds::Bytes(bytes) => ids.iter().for_each(|&id| bytes[id as usize] = 1),
            UsedIds::Bits { words, .. } => ids
                .iter()
                .for_each(|&id| words[id as usize / 64] |= 1 << (id % 64)),
        }
    }

    /// Marks a batch's ids, whose smallest and largest are `range`: not at
    /// all where the range is no wider than the batch and every id in it
    /// is already marked (a hundred groups after their first batch).
    pub(super) fn mark_batch(&mut self, ids: &[u32], (lo, hi): (u64, u64)) {
        let (lo, hi) = (lo as usize, hi as usize);
        if hi - lo < ids.len() && (lo..=hi).all(|id| self.contains(id)) {
            return;
        }
        self.mark_all(ids);
    }

    /// Whether `id` is used.
    pub(super) fn contains(&self, id: usize) -> bool {
        match self {
            UsedIds::Bytes(bytes) => bytes[id] != 0,
            UsedIds::Bits { words, .. } => words[id / 64] & (1 << (id % 64)) != 0,
        }
    }

    /// Whether any id is used.
    pub(super) fn any(&self) -> bool {
        match self {
            UsedIds::Bytes(bytes) => bytes.contains(&1),
            UsedIds::Bits { words, .. } => words.iter().any(|&w| w != 0),
        }
    }

    /// Whether every id is used.
    pub(super) fn all(&self) -> bool {
        match self {
            UsedIds::Bytes(bytes) => !bytes.contains(&0),
            UsedIds::Bits { words, len } => {
                words.iter().map(|w| w.count_ones() as usize).sum::<usize>() == *len
            }
        }
    }

    /// The used ids, in order.
    pub(super) fn iter(&self) -> UsedIdsIter<'_> {
        UsedIdsIter { ids: self, next: 0 }
    }
}

/// The used ids of a [`UsedIds`], in order; a bitmap's empty words skipped
/// whole.
#[derive(Clone)]
pub(super) struct UsedIdsIter<'a> {
    ids: &'a UsedIds,
    next: usize,
}

impl Iterator for UsedIdsIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            let id = self.next;
            if id >= self.ids.len() {
                return None;
            }
            match self.ids {
                UsedIds::Bytes(bytes) => {
                    self.next += 1;
                    if bytes[id] != 0 {
                        return Some(id);
                    }
                }
                UsedIds::Bits { words, len } => {
                    let rest = words[id / 64] >> (id % 64);
                    if rest == 0 {
                        self.next = (id / 64 + 1) * 64;
                        continue;
                    }
                    let found = id + rest.trailing_zeros() as usize;
                    self.next = found + 1;
                    return (found < *len).then_some(found);
                }
            }
        }
    }
}
