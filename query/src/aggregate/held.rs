//! Rows held back from an aggregation with millions of groups, to be folded
//! in one range of group ids at a time.
//!
//! Past a few million groups each accumulator's state is far larger than the
//! caches, and folding a row in is a read-modify-write at a random place in
//! memory: one cache miss per row per aggregate, which is where a
//! ten-million-group GROUP BY spent most of its time. [`HeldRows`] keeps each
//! row's group id and argument values instead, partitioned as they come on
//! the high bits of their ids (a radix partition): each range of ids has a
//! region of the held buffers. Once a region is nearly full, every range's
//! rows are folded in, range after range. While one range's rows are folded
//! in, that range's slice of every state (half a megabyte or so) stays in
//! L2: a state's cache line is fetched once a flush, not once a row.
//!
//! Written by hand because it is the aggregation's fast path, and no crate
//! partitions arrow columns by a key's bits.

use arrow::array::{make_array, Array, ArrayData, ArrayRef};
use arrow::buffer::{Buffer, ScalarBuffer};
use arrow::datatypes::{ArrowNativeType, DataType};

use super::accumulators::GroupAccumulator;
use crate::error::{Error, Result};

/// Group ids from which an aggregation holds rows back: two workers' states
/// for this many ids, at eight bytes an id per aggregate, fill the 32 MB L3
/// of the machines measured on; below it the states stay in cache anyway.
pub(super) const HOLD_FROM_GROUPS: usize = 1 << 21;

/// Most rows held at once. A flush brings every state through the cache
/// once, so the more rows a flush folds in the better, up to about one a
/// group; each row costs 4 bytes for its id and its arguments' widths.
const MOST_HELD_ROWS: usize = 1 << 24;

/// Low bits of a group id that stay within one range: an accumulator's
/// state for 2^17 ids (a megabyte at eight bytes an id) stays in L2 while
/// the range's rows are folded in. (2^16 and 2^18 measured within noise of
/// it at ten million groups; 2^15 slower.)
const RANGE_BITS: u32 = 17;

/// Most rows one call holds at once: every region has room for this many
/// beyond its share, so a batch is held whole or the rows are folded in
/// first. Larger batches are held in pieces of this size.
pub(super) const HOLD_CHUNK: usize = 16 * 1024;

/// Rows waiting to be folded into an aggregation's accumulators: their
/// group ids and per aggregate their argument's values (none for
/// COUNT(*)), in one region of the buffers per range of ids. Only
/// arguments without NULLs and of a fixed width are held.
#[derive(Default)]
pub(super) struct HeldRows {
    /// Rows each range's region has room for.
    region: usize,
    /// Per range, where its next row goes in the buffers (its region
    /// starts at `range * region`).
    next: Vec<usize>,
    ids: Vec<u32>,
    /// Per aggregate, its argument's values (`None` where it has none).
    columns: Vec<Option<Box<dyn HeldColumn>>>,
    /// Per row of the batch being held, its place in the buffers.
    places: Vec<usize>,
    rows: usize,
}

impl HeldRows {
    /// True when rows with these arguments can be held: each is absent
    /// (COUNT(*)) or has no NULLs and values of a fixed width.
    pub fn takes(args: &[Option<ArrayRef>]) -> bool {
        args.iter()
            .flatten()
            .all(|a| a.null_count() == 0 && a.data_type().primitive_width().is_some())
    }

    /// Bytes the buffers take to hold rows with these arguments for
    /// `groups` group ids: for checking the statement has room first.
    pub fn bytes_to_hold(groups: usize, args: &[Option<ArrayRef>]) -> usize {
        let row: usize = 4 + args
            .iter()
            .flatten()
            .map(|a| a.data_type().primitive_width().unwrap_or(0))
            .sum::<usize>();
        let (ranges, region) = layout(groups);
        row * ranges * region
    }

    /// Holds a batch of at most [`HOLD_CHUNK`] rows (row `i` of group
    /// `ids[i]`, argument `args[a]` per aggregate, each [`HeldRows::takes`]),
    /// if there is room: false (holding nothing) when a region might run
    /// out, or when the rows do not match those held (argument types, or
    /// ranges of `groups` group ids). Always true when nothing is held and
    /// the batch is no larger than a chunk.
    pub fn hold(&mut self, ids: &[u32], args: &[Option<ArrayRef>], groups: usize) -> bool {
        if self.rows == 0 && !self.matches(args, groups) {
            self.set_up(args, groups);
        }
        if ids.len() > HOLD_CHUNK || !self.matches(args, groups) || !self.has_room(ids.len()) {
            return false;
        }
        let last = self.next.len() - 1;
        let shift = RANGE_BITS;
        // Local slices: the loop keeps them in registers, with nothing
        // but the stores it makes.
        self.places.resize(ids.len(), 0);
        let (next, held, places) = (&mut self.next[..], &mut self.ids[..], &mut self.places[..]);
        for (&id, place) in ids.iter().zip(places.iter_mut()) {
            let at = &mut next[((id >> shift) as usize).min(last)];
            held[*at] = id;
            *place = *at;
            *at += 1;
        }
        for (column, arg) in self.columns.iter_mut().zip(args) {
            if let (Some(column), Some(arg)) = (column, arg) {
                column.push(&arg.to_data(), &self.places);
            }
        }
        self.rows += ids.len();
        true
    }

    /// True when rows of these arguments' types for `groups` ids go in the
    /// buffers as laid out now.
    fn matches(&self, args: &[Option<ArrayRef>], groups: usize) -> bool {
        layout(groups) == (self.next.len(), self.region)
            && args.len() == self.columns.len()
            && args.iter().zip(&self.columns).all(|(a, c)| match (a, c) {
                (None, None) => true,
                (Some(a), Some(c)) => a.data_type() == c.data_type(),
                _ => false,
            })
    }

    /// Lays the (empty) buffers out for rows of these arguments and
    /// `groups` ids.
    fn set_up(&mut self, args: &[Option<ArrayRef>], groups: usize) {
        let (ranges, region) = layout(groups);
        let rows = ranges * region;
        *self = HeldRows {
            region,
            next: (0..ranges).map(|r| r * region).collect(),
            ids: vec![0; rows],
            columns: args
                .iter()
                .map(|a| a.as_ref().and_then(|a| held_column(a.data_type(), rows)))
                .collect(),
            places: Vec::with_capacity(HOLD_CHUNK),
            rows: 0,
        };
    }

    /// True when every region has room for `rows` more.
    fn has_room(&self, rows: usize) -> bool {
        self.next
            .iter()
            .enumerate()
            .all(|(r, &next)| (r + 1) * self.region - next >= rows)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.ids.capacity() * 4
            + self.places.capacity() * 8
            + self
                .columns
                .iter()
                .flatten()
                .map(|c| c.bytes())
                .sum::<usize>()
    }

    /// Folds every held row into `accumulators` (one per aggregate, with
    /// states for `groups` ids) range by range, and holds nothing after
    /// (keeping the buffers for the next rows).
    pub fn flush(
        &mut self,
        accumulators: &mut [Box<dyn GroupAccumulator>],
        groups: usize,
    ) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays = self
            .columns
            .iter_mut()
            .map(|c| c.as_mut().map(|c| c.lend()).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut folded = Ok(());
        for (r, next) in self.next.iter_mut().enumerate() {
            let start = r * self.region;
            let ids = &self.ids[start..*next];
            if !ids.is_empty() {
                for (acc, array) in accumulators.iter_mut().zip(&arrays) {
                    let arg = array.as_ref().map(|a| a.slice(start, ids.len()));
                    folded = folded.and_then(|_| acc.update(ids, groups, arg.as_ref()));
                }
            }
            *next = start;
        }
        self.rows = 0;
        for (column, array) in self.columns.iter_mut().zip(arrays) {
            if let (Some(column), Some(array)) = (column, array) {
                column.take_back(array);
            }
        }
        folded
    }

    /// Gives back the buffers' memory when nothing is held.
    pub fn shrink(&mut self) {
        if self.rows == 0 {
            *self = HeldRows::default();
        }
    }
}

/// The ranges of ids for `groups` group ids, and the rows each range's
/// region has room for: its share of the rows held at most, a quarter
/// more for uneven ranges, and a batch more.
fn layout(groups: usize) -> (usize, usize) {
    let ranges = ((groups.max(1) - 1) >> RANGE_BITS) + 1;
    let share = groups.min(MOST_HELD_ROWS) / ranges;
    (ranges, share + share / 4 + HOLD_CHUNK)
}

/// One aggregate's held argument values, of one fixed-width type.
trait HeldColumn: Send + Sync {
    fn data_type(&self) -> &DataType;
    /// Puts a batch's values (no NULLs, of this column's type) in the
    /// buffer, row `i` at `places[i]`.
    fn push(&mut self, data: &ArrayData, places: &[usize]);
    /// The buffer as an array, for folding in; [`HeldColumn::take_back`]
    /// returns it.
    fn lend(&mut self) -> Result<ArrayRef>;
    /// Takes the buffer back from the array [`HeldColumn::lend`] made.
    fn take_back(&mut self, array: ArrayRef);
    fn bytes(&self) -> usize;
}

/// The held column for values of `data_type` with room for `rows`, by their
/// width: the values are moved as bits, whatever they mean.
fn held_column(data_type: &DataType, rows: usize) -> Option<Box<dyn HeldColumn>> {
    let data_type = data_type.clone();
    Some(match data_type.primitive_width()? {
        1 => Box::new(FixedWidth::<i8>::new(data_type, rows)),
        2 => Box::new(FixedWidth::<i16>::new(data_type, rows)),
        4 => Box::new(FixedWidth::<i32>::new(data_type, rows)),
        8 => Box::new(FixedWidth::<i64>::new(data_type, rows)),
        16 => Box::new(FixedWidth::<i128>::new(data_type, rows)),
        _ => return None,
    })
}

struct FixedWidth<T> {
    data_type: DataType,
    values: Vec<T>,
}

impl<T: ArrowNativeType> FixedWidth<T> {
    fn new(data_type: DataType, rows: usize) -> Self {
        FixedWidth {
            data_type,
            values: vec![T::default(); rows],
        }
    }
}

impl<T: ArrowNativeType> HeldColumn for FixedWidth<T> {
    fn data_type(&self) -> &DataType {
        &self.data_type
    }

    fn push(&mut self, data: &ArrayData, places: &[usize]) {
        let Some(buffer) = data.buffers().first() else {
            return;
        };
        let values = ScalarBuffer::<T>::new(buffer.clone(), data.offset(), data.len());
        for (&at, &v) in places.iter().zip(values.iter()) {
            self.values[at] = v;
        }
    }

    fn lend(&mut self) -> Result<ArrayRef> {
        let values = std::mem::take(&mut self.values);
        let data = ArrayData::builder(self.data_type.clone())
            .len(values.len())
            .add_buffer(Buffer::from_vec(values))
            .build()
            .map_err(|e| Error::Internal(format!("held rows: {e}")))?;
        Ok(make_array(data))
    }

    fn take_back(&mut self, array: ArrayRef) {
        let rows = array.len();
        let buffer = array.to_data().buffers().first().cloned();
        drop(array);
        // The array was the buffer's only holder (its slices are gone); if
        // not, a fresh buffer.
        self.values = match buffer.map(|b| b.into_vec::<T>()) {
            Some(Ok(values)) => values,
            _ => vec![T::default(); rows],
        };
    }

    fn bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;
    use crate::aggregate::accumulators::new_accumulator;
    use crate::logical::AggregateFunction;

    fn accumulators() -> Vec<Box<dyn GroupAccumulator>> {
        let new = |f, t: Option<DataType>| new_accumulator(f, false, t.as_ref(), None).unwrap();
        vec![
            new(AggregateFunction::CountStar, None),
            new(AggregateFunction::Sum, Some(DataType::Int64)),
            new(AggregateFunction::Max, Some(DataType::Int32)),
        ]
    }

    /// Rows held and folded in range by range leave the same states as the
    /// same rows folded in as they came: ids over six ranges (the last one
    /// short), batches all in one range that fill its region (the hold
    /// refused until a flush) among batches spread over all; and what is
    /// not held is refused whole.
    #[test]
    fn held_rows_fold_into_the_states_direct_updates_reach() {
        let groups = (5 << RANGE_BITS) + 1_234;
        let (mut held_states, mut direct) = (accumulators(), accumulators());
        let mut held = HeldRows::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut refused = 0;
        for batch in 0..60 {
            let (mut ids, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..HOLD_CHUNK {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Every third batch falls in the first range only.
                let span = if batch % 3 == 0 {
                    1 << RANGE_BITS
                } else {
                    groups
                };
                ids.push((seed % span as u64) as u32);
                xs.push((seed >> 20) as i64 - (1 << 43));
                ys.push((seed >> 40) as i32);
            }
            let args: Vec<Option<ArrayRef>> = vec![
                None,
                Some(Arc::new(Int64Array::from(xs))),
                Some(Arc::new(Int32Array::from(ys))),
            ];
            assert!(HeldRows::takes(&args));
            for (acc, arg) in direct.iter_mut().zip(&args) {
                acc.update(&ids, groups, arg.as_ref()).unwrap();
            }
            if !held.hold(&ids, &args, groups) {
                refused += 1;
                held.flush(&mut held_states, groups).unwrap();
                assert!(held.hold(&ids, &args, groups), "refused with none held");
            }
        }
        held.flush(&mut held_states, groups).unwrap();
        assert!(refused >= 2, "no region filled: {refused} refusals");
        for (mut from_held, mut from_direct) in held_states.into_iter().zip(direct) {
            assert_eq!(
                from_held.finish(groups).unwrap().to_data(),
                from_direct.finish(groups).unwrap().to_data()
            );
        }

        // Not held: NULLs, values of no fixed width, more than a chunk, or
        // another type than the rows held.
        let nulls: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        assert!(!HeldRows::takes(&[None, Some(nulls)]));
        assert!(!HeldRows::takes(&[Some(text)]));
        let mut held = HeldRows::default();
        let many = vec![0u32; HOLD_CHUNK + 1];
        assert!(!held.hold(&many, &[None], groups));
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let int32s: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        assert!(held.hold(&[0, 1], &[Some(ints)], groups));
        assert!(!held.hold(&[0, 1], &[Some(Arc::clone(&int32s))], groups));
        let mut sums =
            vec![
                new_accumulator(AggregateFunction::Sum, false, Some(&DataType::Int64), None)
                    .unwrap(),
            ];
        held.flush(&mut sums, groups).unwrap();
        assert!(
            held.hold(&[0, 1], &[Some(int32s)], groups),
            "laid out anew once empty"
        );
    }
}
