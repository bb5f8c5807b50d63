//! The decoded-block cache, shared by every open segment of the process under
//! one byte budget. It was a cache per segment (64 MiB each), which bounded
//! nothing once a table had months of segments: 100 segments could hold 6 GiB.
//!
//! Eviction is first in, first out: the blocks a dashboard reads over and over
//! come back after eviction at the cost of one decode, and FIFO needs no
//! bookkeeping on the read path, which every block of every query takes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray};

/// The budget when none is set: enough for the working set of a 100M-row table's
/// dashboard queries on the benchmark machine (about 3.5 GiB), well inside its
/// 24 GiB.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 4 << 30;

static BUDGET: AtomicUsize = AtomicUsize::new(DEFAULT_BLOCK_CACHE_BYTES);
static NEXT_SEGMENT: AtomicU64 = AtomicU64::new(1);

/// Sets the bytes of decoded blocks the process keeps (all segments together);
/// blocks over it are evicted as new ones come in.
pub fn set_block_cache_bytes(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
}

/// The current budget.
pub fn block_cache_bytes() -> usize {
    BUDGET.load(Ordering::Relaxed)
}

/// A number for a newly opened segment, never reused in the process, so a
/// closed segment's leftover entries can never be taken for a new one's.
pub(crate) fn new_segment_key() -> u64 {
    NEXT_SEGMENT.fetch_add(1, Ordering::Relaxed)
}

/// What a block is cached as.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Form {
    /// Decoded values.
    Values,
    /// Packed codes (see `BlockCodes`).
    Codes,
    /// A TEXT column's sorted dictionary (block number 0).
    Dictionary,
    /// A zstd-compressed block's packed bytes, decompressed, for reading a
    /// few rows without decoding the block (see `SealedSegment::gather`).
    Packed,
}

/// (segment, column, block, form).
pub(crate) type Key = (u64, usize, usize, Form);

#[derive(Default)]
struct Cache {
    /// Each entry with the bytes it is charged.
    blocks: HashMap<Key, (ArrayRef, usize)>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// The bytes an entry is charged. A TEXT block is a dictionary array whose
/// values are its segment's whole dictionary, shared by every block of the
/// column: the block is charged its keys, and the dictionary is charged once,
/// as its own entry.
fn charge(array: &ArrayRef) -> usize {
    match array.as_any_dictionary_opt() {
        Some(d) => d.keys().get_array_memory_size(),
        None => array.get_array_memory_size(),
    }
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The cached block, if present.
pub(crate) fn get(key: Key) -> Option<ArrayRef> {
    cache()
        .lock()
        .ok()?
        .blocks
        .get(&key)
        .map(|(a, _)| std::sync::Arc::clone(a))
}

/// Caches a block, evicting the oldest ones to stay within the budget; a block
/// larger than the whole budget is not kept.
pub(crate) fn put(key: Key, array: &ArrayRef) {
    let budget = block_cache_bytes();
    let size = charge(array);
    let Ok(mut c) = cache().lock() else { return };
    if size > budget || c.blocks.contains_key(&key) {
        return;
    }
    while c.bytes + size > budget {
        let Some(old) = c.order.pop_front() else {
            break;
        };
        if let Some((_, charged)) = c.blocks.remove(&old) {
            c.bytes -= charged;
        }
    }
    c.bytes += size;
    c.order.push_back(key);
    c.blocks.insert(key, (std::sync::Arc::clone(array), size));
}

/// Drops every block of a segment (closed, or merged away by compaction).
pub(crate) fn forget_segment(segment: u64) {
    let Ok(mut c) = cache().lock() else { return };
    let mut freed = 0;
    c.blocks.retain(|k, (_, charged)| {
        let keep = k.0 != segment;
        if !keep {
            freed += *charged;
        }
        keep
    });
    c.bytes -= freed;
    c.order.retain(|k| k.0 != segment);
}

/// Bytes the cache holds now.
pub fn cached_bytes() -> usize {
    cache().lock().map_or(0, |c| c.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn stays_within_its_budget_and_forgets_closed_segments() {
        // The budget is process-wide: this test uses its own segment keys and
        // only checks what it put in.
        let a: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![0i64; 1000]));
        let size = a.get_array_memory_size();
        let (s1, s2) = (new_segment_key(), new_segment_key());
        for b in 0..4 {
            put((s1, 0, b, Form::Values), &a);
        }
        put((s2, 0, 0, Form::Codes), &a);
        assert!(get((s1, 0, 3, Form::Values)).is_some());
        assert!(get((s2, 0, 0, Form::Codes)).is_some());
        assert!(
            get((s2, 0, 0, Form::Values)).is_none(),
            "forms are kept apart"
        );
        forget_segment(s1);
        assert!((0..4).all(|b| get((s1, 0, b, Form::Values)).is_none()));
        assert!(get((s2, 0, 0, Form::Codes)).is_some());
        assert!(cached_bytes() >= size);
    }

    /// A TEXT block is charged its keys; the dictionary its blocks share is
    /// charged once, as its own entry.
    #[test]
    fn a_shared_dictionary_is_charged_once() {
        let dict: ArrayRef = Arc::new(arrow::array::StringArray::from_iter_values(
            (0..10_000).map(|i| format!("a fairly long dictionary entry {i}")),
        ));
        let keys = arrow::array::UInt32Array::from_iter_values(0..1000);
        let block: ArrayRef = Arc::new(
            arrow::array::DictionaryArray::try_new(keys.clone(), Arc::clone(&dict)).unwrap(),
        );
        assert_eq!(charge(&block), keys.get_array_memory_size());
        assert_eq!(charge(&dict), dict.get_array_memory_size());
        assert!(charge(&block) * 20 < charge(&dict));
    }
}
