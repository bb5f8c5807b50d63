//! Grouped accumulators: each holds one state per group and is updated a batch at a
//! time with the group id of every row, so the per-row work is a typed loop with no
//! dynamic dispatch.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use arrow::array::{ArrowPrimitiveType, PrimitiveArray};
use arrow::datatypes::{
    i256, DataType, Date32Type, Float64Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, UInt32Type,
};

use super::hll::HyperLogLog;
use super::keys::{fixed_state, prefetch, KeyColumn, PREFETCH_AHEAD};
use super::tdigest::TDigest;
use crate::error::{Error, Result};
use crate::logical::AggregateFunction;

/// One aggregate's state for every group.
pub trait GroupAccumulator: Send + Sync {
    /// Folds in a batch: row `i` belongs to group `groups[i]`; `values` is the
    /// argument column (absent for COUNT(*)). `num_groups` is the total so far.
    fn update(
        &mut self,
        groups: &[u32],
        num_groups: usize,
        values: Option<&ArrayRef>,
    ) -> Result<()>;
    /// Folds in another accumulator of the same kind; its group `g` is our `mapping[g]`.
    fn merge(
        &mut self,
        other: Box<dyn GroupAccumulator>,
        mapping: &[u32],
        num_groups: usize,
    ) -> Result<()>;
    /// Folds in another accumulator of the same kind whose group `g` is our
    /// group `g` (partials whose group tables gave out the same ids).
    fn merge_same_ids(
        &mut self,
        other: Box<dyn GroupAccumulator>,
        num_groups: usize,
    ) -> Result<()> {
        let mapping: Vec<u32> = (0..num_groups as u32).collect();
        self.merge(other, &mapping, num_groups)
    }
    /// The result for groups `0..num_groups`.
    fn finish(&mut self, num_groups: usize) -> Result<ArrayRef>;
    /// The result for the ids among `0..num_groups` that `present` marks
    /// (a sparse table's groups, its unused ids left out), in id order.
    fn finish_present(
        &mut self,
        num_groups: usize,
        present: &arrow::buffer::BooleanBuffer,
    ) -> Result<ArrayRef> {
        let all = self.finish(num_groups)?;
        let present = arrow::array::BooleanArray::new(present.clone(), None);
        Ok(arrow::compute::filter(&all, &present)?)
    }
    /// Approximate bytes held.
    fn size(&self) -> usize;
    /// True when a group no row has updated is nothing but an empty slot:
    /// merging it changes no other group, finishing it fails nothing, and
    /// it costs a few bytes. Group ids may then leave holes
    /// ([`crate::aggregate::keys::GroupTable::sparse`]).
    fn sparse_groups_ok(&self) -> bool {
        false
    }
    /// For `merge`: the concrete accumulator.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// Builds the accumulator for an aggregate whose argument has type `arg`.
pub fn new_accumulator(
    func: AggregateFunction,
    distinct: bool,
    arg: Option<&DataType>,
    separator: Option<&str>,
) -> Result<Box<dyn GroupAccumulator>> {
    let arg_type = arg.cloned().unwrap_or(DataType::Null);
    Ok(match func {
        AggregateFunction::Grouping => {
            return Err(Error::Internal(
                "grouping() is a constant per grouping set, not accumulated".into(),
            ))
        }
        AggregateFunction::Mode => Box::new(Mode {
            keys: KeyColumn::new(plain_type(&arg_type)),
            counts: Vec::new(),
        }),
        AggregateFunction::CountStar => Box::new(Count::default()),
        AggregateFunction::Count if distinct => Box::new(CountDistinct::new(arg_type)),
        AggregateFunction::Count => Box::new(Count::default()),
        AggregateFunction::Sum | AggregateFunction::Avg if distinct => Box::new(SumDistinct {
            avg: func == AggregateFunction::Avg,
            arg_type,
            sets: Vec::new(),
        }),
        AggregateFunction::Variance { sample, sqrt }
            if matches!(
                arg_type,
                DataType::Int32 | DataType::Int64 | DataType::Decimal128(..)
            ) =>
        {
            Box::new(ExactVariance {
                sample,
                sqrt,
                scale: crate::numeric::scale_of(&arg_type),
                states: Vec::new(),
            })
        }
        AggregateFunction::Variance { sample, sqrt } => Box::new(Variance {
            sample,
            sqrt,
            states: Vec::new(),
        }),
        AggregateFunction::PercentileDisc(f) => Box::new(Percentile {
            fraction: f,
            values: Vec::new(),
            discrete: Some(arg_type),
        }),
        AggregateFunction::Sum | AggregateFunction::Avg => {
            Box::new(SumAvg::new(func == AggregateFunction::Avg, &arg_type)?)
        }
        AggregateFunction::Min | AggregateFunction::Max => {
            let max = func == AggregateFunction::Max;
            match arg_type {
                DataType::Int32 => Box::new(PrimitiveMinMax::<Int32Type>::new(max, arg_type)),
                DataType::Int64 => Box::new(PrimitiveMinMax::<Int64Type>::new(max, arg_type)),
                DataType::Float64 => Box::new(PrimitiveMinMax::<Float64Type>::new(max, arg_type)),
                DataType::Date32 => Box::new(PrimitiveMinMax::<Date32Type>::new(max, arg_type)),
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    Box::new(PrimitiveMinMax::<TimestampMicrosecondType>::new(
                        max, arg_type,
                    ))
                }
                other => Box::new(MinMax::new(max, other)),
            }
        }
        AggregateFunction::ApproxCountDistinct => Box::new(Hll::default()),
        AggregateFunction::PercentileCont(f) => Box::new(Percentile {
            fraction: f,
            discrete: None,
            values: Vec::new(),
        }),
        AggregateFunction::ApproxPercentile(f) => Box::new(ApproxPercentile {
            fraction: f,
            digests: Vec::new(),
        }),
        AggregateFunction::StringAgg | AggregateFunction::ArrayAgg => Box::new(StringAgg {
            separator: separator.unwrap_or(",").to_string(),
            array: (func == AggregateFunction::ArrayAgg).then(|| match plain_type(&arg_type) {
                DataType::Null => DataType::Utf8,
                t => t,
            }),
            values: Vec::new(),
        }),
        AggregateFunction::BoolAnd | AggregateFunction::BoolOr => Box::new(BoolAgg {
            and: func == AggregateFunction::BoolAnd,
            values: Vec::new(),
        }),
    })
}

fn downcast<T: 'static>(other: Box<dyn GroupAccumulator>) -> Result<Box<T>> {
    other
        .into_any()
        .downcast::<T>()
        .map_err(|_| Error::Internal("merging accumulators of different kinds".into()))
}

fn plain(values: Option<&ArrayRef>) -> Result<ArrayRef> {
    let v = values.ok_or_else(|| Error::Internal("aggregate without its argument".into()))?;
    crate::eval::decode_dictionary(v)
}

/// COUNT(*) and COUNT(x).
#[derive(Default)]
struct Count {
    counts: Vec<i64>,
}

impl GroupAccumulator for Count {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.counts.resize(n, 0);
        match values.and_then(|v| v.logical_nulls()) {
            Some(nulls) => {
                for (i, g) in groups.iter().enumerate() {
                    self.counts[*g as usize] += i64::from(nulls.is_valid(i));
                }
            }
            None if n > PREFETCH_GROUPS => {
                for (i, &g) in groups.iter().enumerate() {
                    prefetch_ahead(&self.counts, groups, i);
                    self.counts[g as usize] += 1;
                }
            }
            None => groups.iter().for_each(|g| self.counts[*g as usize] += 1),
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<Count>(other)?;
        self.counts.resize(n, 0);
        let big = n > PREFETCH_GROUPS;
        for (g, c) in other.counts.iter().enumerate() {
            if big {
                prefetch_ahead(&self.counts, mapping, g);
            }
            self.counts[mapping[g] as usize] += c;
        }
        Ok(())
    }
    fn merge_same_ids(&mut self, other: Box<dyn GroupAccumulator>, n: usize) -> Result<()> {
        let other = downcast::<Count>(other)?;
        self.counts.resize(n.max(other.counts.len()), 0);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.counts.resize(n, 0);
        Ok(Arc::new(Int64Array::from(std::mem::take(&mut self.counts))))
    }
    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
    fn sparse_groups_ok(&self) -> bool {
        true
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// SUM and AVG. Integers are summed exactly: integer and bigint arguments
/// in a wrapping 64-bit sum per group with a count of its wraps beside it
/// (the exact sum is the two combined in 128 bits), numerics in 128 bits.
/// Eight bytes a group rather than sixteen: past a few hundred thousand
/// groups every update is a cache miss, and the state's size decides how
/// many. SUM of integers errors if the result does not fit a bigint.
struct SumAvg {
    avg: bool,
    float: bool,
    /// The argument's type: integers and numerics sum exactly, numerics as
    /// their unscaled values.
    arg: DataType,
    /// Numeric arguments' sums.
    ints: Vec<i128>,
    /// Integer arguments' sums, wrapped to 64 bits...
    narrow: Vec<i64>,
    /// ...and how many times each wrapped (+1 up, -1 down); empty until one
    /// does, shorter than `narrow` where none has since.
    wraps: Vec<i64>,
    floats: Vec<f64>,
    seen: Seen,
}

/// Per group, the non-NULL values folded in: a count where AVG divides by
/// it, one bit where SUM only needs to know whether there were any (which
/// keeps SUM's state for a million groups in cache).
enum Seen {
    Counts(Vec<i64>),
    Any(Vec<u64>),
}

impl Seen {
    fn resize(&mut self, n: usize) {
        match self {
            Seen::Counts(c) => c.resize(n, 0),
            Seen::Any(bits) => bits.resize(n.div_ceil(64), 0),
        }
    }

    #[inline(always)]
    fn add(&mut self, g: usize, count: i64) {
        match self {
            Seen::Counts(c) => c[g] += count,
            // Tested before set: with a hundred groups every row would
            // otherwise store to one of two words, each store waiting on
            // the last.
            Seen::Any(bits) => {
                let bit = u64::from(count > 0) << (g % 64);
                if bits[g / 64] & bit != bit {
                    bits[g / 64] |= bit;
                }
            }
        }
    }

    /// Adds `other`'s counts (ORs its bits) group by group, for `n` groups.
    fn merge_same_ids(&mut self, other: &Seen, n: usize) {
        match (self, other) {
            (Seen::Counts(mine), Seen::Counts(theirs)) => {
                add_same_ids(mine, theirs, n, |a, b| a + b)
            }
            (Seen::Any(mine), Seen::Any(theirs)) => {
                add_same_ids(mine, theirs, n.div_ceil(64), |a, b| a | b)
            }
            (mine, theirs) => {
                mine.resize(n);
                for g in 0..n {
                    mine.add(g, theirs.count(g));
                }
            }
        }
    }

    /// Group `g`'s count (for `Any`, 1 if it has values).
    fn count(&self, g: usize) -> i64 {
        match self {
            Seen::Counts(c) => c.get(g).copied().unwrap_or(0),
            Seen::Any(bits) => bits
                .get(g / 64)
                .map_or(0, |w| i64::from(w & (1 << (g % 64)) != 0)),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Seen::Counts(c) => c.capacity() * 8,
            Seen::Any(bits) => bits.capacity() * 8,
        }
    }
}

/// Sets the presence bit of every group in `groups`, a batch whose rows all
/// had values: not at all where the batch's groups lie in a range no wider
/// than it has rows whose bits are all set (a hundred groups after their
/// first batch: a bit's test per row was a tenth of `GROUP BY k % 100`).
fn mark_present(bits: &mut [u64], groups: &[u32]) {
    // Folds of their own, which the compiler vectorises: taking the
    // largest id inside the add loop instead measured slower.
    let lo = groups.iter().fold(u32::MAX, |m, &g| m.min(g)) as usize;
    let hi = groups.iter().fold(0, |m, &g| m.max(g)) as usize;
    let is_set =
        |bits: &[u64], g: usize| bits.get(g / 64).is_some_and(|w| w & (1 << (g % 64)) != 0);
    if lo > hi || (hi - lo < groups.len() && (lo..=hi).all(|g| is_set(bits, g))) {
        return;
    }
    for &g in groups {
        let g = g as usize;
        // Tested before set, as in `Seen::add`.
        let bit = 1u64 << (g % 64);
        if let Some(word) = bits.get_mut(g / 64).filter(|w| **w & bit == 0) {
            *word |= bit;
        }
    }
}

/// `sums[g] += v` for every row's group `g` and value `v`, each wrap of a
/// sum noted in `wraps` as (group, direction); a group past `sums` is
/// skipped. `PREFETCH` (past a cache's worth of groups) fetches a later
/// row's sum ahead; a loop of its own for each, as a per-row test of it
/// measured a tenth slower at a hundred groups.
fn add_rows<const PREFETCH: bool, V: Copy + Into<i64>>(
    sums: &mut [i64],
    groups: &[u32],
    values: &[V],
    wraps: &mut Vec<(usize, i64)>,
) {
    for (i, (&g, &v)) in groups.iter().zip(values).enumerate() {
        if PREFETCH {
            prefetch_ahead(sums, groups, i);
        }
        let Some(slot) = sums.get_mut(g as usize) else {
            continue;
        };
        let v: i64 = v.into();
        let (sum, wrapped) = slot.overflowing_add(v);
        *slot = sum;
        if wrapped {
            wraps.push((g as usize, v.signum()));
        }
    }
}

/// `mine[g] = add(mine[g], theirs[g])` for every `g` of `theirs`, `mine`
/// grown to at least `n` first; nothing where `theirs` is empty.
fn add_same_ids<T: Copy + Default>(
    mine: &mut Vec<T>,
    theirs: &[T],
    n: usize,
    add: impl Fn(T, T) -> T,
) {
    if theirs.is_empty() {
        return;
    }
    if mine.len() < n.max(theirs.len()) {
        mine.resize(n.max(theirs.len()), T::default());
    }
    for (m, &t) in mine.iter_mut().zip(theirs) {
        *m = add(*m, t);
    }
}

/// Groups past which an update loop prefetches their state: below it the
/// state stays in cache and a prefetch is a wasted instruction.
const PREFETCH_GROUPS: usize = 1 << 15;

/// Prefetches the state of the group `PREFETCH_AHEAD` rows after row `i`.
#[inline(always)]
fn prefetch_ahead<T>(state: &[T], groups: &[u32], i: usize) {
    if let Some(s) = groups
        .get(i + PREFETCH_AHEAD)
        .and_then(|&g| state.get(g as usize))
    {
        prefetch(s);
    }
}

impl SumAvg {
    fn new(avg: bool, arg: &DataType) -> Result<Self> {
        let float = match arg {
            DataType::Float64 => true,
            DataType::Int32 | DataType::Int64 | DataType::Decimal128(..) | DataType::Null => false,
            other => {
                return Err(Error::undefined_function(format!(
                    "function {}({}) does not exist",
                    if avg { "avg" } else { "sum" },
                    crate::format::sql_type_name(other)
                )))
            }
        };
        Ok(SumAvg {
            avg,
            float,
            arg: arg.clone(),
            ints: Vec::new(),
            narrow: Vec::new(),
            wraps: Vec::new(),
            floats: Vec::new(),
            seen: if avg {
                Seen::Counts(Vec::new())
            } else {
                Seen::Any(Vec::new())
            },
        })
    }

    /// Adds `v` to group `g`'s 64-bit sum, counting a wrap.
    #[inline(always)]
    fn add_narrow(&mut self, g: usize, v: i64) {
        let (sum, wrapped) = self.narrow[g].overflowing_add(v);
        self.narrow[g] = sum;
        if wrapped {
            self.wrap(g, if v > 0 { 1 } else { -1 });
        }
    }

    #[cold]
    fn wrap(&mut self, g: usize, by: i64) {
        if self.wraps.len() <= g {
            self.wraps.resize(self.narrow.len().max(g + 1), 0);
        }
        self.wraps[g] += by;
    }

    /// Folds an integer column in: one 64-bit add per row, no branch on NULL
    /// where the column has none.
    fn update_narrow<T>(&mut self, groups: &[u32], a: &PrimitiveArray<T>)
    where
        T: ArrowPrimitiveType,
        T::Native: Into<i64>,
    {
        let values = a.values();
        match a.nulls().filter(|n| n.null_count() > 0) {
            Some(nulls) => {
                for (i, &g) in groups.iter().enumerate() {
                    if nulls.is_valid(i) {
                        self.add_narrow(g as usize, values[i].into());
                        self.seen.add(g as usize, 1);
                    }
                }
            }
            None => {
                // One pass over local slices: the presence state's kind is
                // decided once, not per row, no vector is reloaded per row,
                // and a wrap (rare) is noted for after the loop.
                let big = self.narrow.len() > PREFETCH_GROUPS;
                let mut wraps: Vec<(usize, i64)> = Vec::new();
                let narrow = &mut self.narrow[..];
                let rows = groups.iter().zip(values.iter()).enumerate();
                let mut add = |i: usize, g: usize, v: i64| -> bool {
                    if big {
                        prefetch_ahead(narrow, groups, i);
                    }
                    let Some(slot) = narrow.get_mut(g) else {
                        return false;
                    };
                    let (sum, wrapped) = slot.overflowing_add(v);
                    *slot = sum;
                    if wrapped {
                        wraps.push((g, if v > 0 { 1 } else { -1 }));
                    }
                    true
                };
                match &mut self.seen {
                    Seen::Any(bits) => {
                        // Every row has a value: the sums first, then the
                        // groups' presence as a batch.
                        if big {
                            add_rows::<true, _>(narrow, groups, values, &mut wraps);
                        } else {
                            add_rows::<false, _>(narrow, groups, values, &mut wraps);
                        }
                        mark_present(bits, groups);
                    }
                    Seen::Counts(counts) => {
                        for (i, (&g, &v)) in rows {
                            let g = g as usize;
                            if add(i, g, v.into()) {
                                if let Some(count) = counts.get_mut(g) {
                                    *count += 1;
                                }
                            }
                        }
                    }
                }
                for (g, by) in wraps {
                    self.wrap(g, by);
                }
            }
        }
    }

    /// SUM of integers or numerics: the exact sums written once into the
    /// output's buffer, NULL where a group had no values (the presence bits
    /// are the validity bitmap). No per-group temporaries: at ten million
    /// groups each was 80-160 MB of fresh memory.
    fn finish_integer_sum(&mut self, n: usize) -> Result<ArrayRef> {
        let valid: arrow::buffer::BooleanBuffer = match &self.seen {
            Seen::Any(bits) if bits.len() * 64 >= n => arrow::buffer::BooleanBuffer::new(
                arrow::buffer::Buffer::from_slice_ref(bits.as_slice()),
                0,
                n,
            ),
            seen => (0..n).map(|g| seen.count(g) > 0).collect(),
        };
        self.integer_sums(0..n, valid)
    }

    /// The exact sums of `groups` (in order), NULL where `valid` (one per
    /// group) is not set.
    fn integer_sums(
        &self,
        groups: impl Iterator<Item = usize>,
        valid: arrow::buffer::BooleanBuffer,
    ) -> Result<ArrayRef> {
        let nulls = Some(arrow::buffer::NullBuffer::new(valid)).filter(|b| b.null_count() > 0);
        let scale = crate::numeric::scale_of(&self.arg);
        if matches!(self.arg, DataType::Int64 | DataType::Decimal128(..)) {
            // sum(bigint) and sum(numeric) are numerics: no overflow at 2^63.
            let sums: Vec<i128> = if self.ints.is_empty() && self.wraps.is_empty() {
                // No numerics and no wraps: each sum is its 64-bit one.
                let narrow = &self.narrow;
                groups
                    .map(|g| narrow.get(g).map_or(0, |&v| i128::from(v)))
                    .collect()
            } else {
                groups.map(|g| self.exact(g)).collect()
            };
            let out = arrow::array::Decimal128Array::new(sums.into(), nulls)
                .with_precision_and_scale(crate::numeric::MAX_PRECISION, scale)?;
            return Ok(Arc::new(out));
        }
        // (A group without values sums to 0, which always fits.)
        let sums = groups
            .map(|g| {
                i64::try_from(self.exact(g))
                    .map_err(|_| Error::NumericOutOfRange("bigint out of range".into()))
            })
            .collect::<Result<Vec<i64>>>()?;
        Ok(Arc::new(Int64Array::new(sums.into(), nulls)))
    }

    /// Starts loading group `g`'s sum, wherever this accumulator keeps it.
    fn prefetch_group(&self, g: usize) {
        if let Some(v) = self.narrow.get(g) {
            prefetch(v);
        } else if let Some(v) = self.ints.get(g) {
            prefetch(v);
        } else if let Some(v) = self.floats.get(g) {
            prefetch(v);
        }
    }

    /// Group `g`'s exact integer sum.
    fn exact(&self, g: usize) -> i128 {
        let wraps = self.wraps.get(g).copied().unwrap_or(0);
        self.ints.get(g).copied().unwrap_or(0)
            + i128::from(self.narrow.get(g).copied().unwrap_or(0))
            + (i128::from(wraps) << 64)
    }
}

impl GroupAccumulator for SumAvg {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.seen.resize(n);
        let v = plain(values)?;
        if self.float {
            self.floats.resize(n, 0.0);
            let a = v.as_primitive::<Float64Type>();
            for (i, g) in groups.iter().enumerate() {
                if a.is_valid(i) {
                    self.floats[*g as usize] += a.value(i);
                    self.seen.add(*g as usize, 1);
                }
            }
        } else {
            match v.data_type() {
                DataType::Int32 => {
                    self.narrow.resize(n, 0);
                    self.update_narrow(groups, v.as_primitive::<Int32Type>());
                }
                DataType::Int64 => {
                    self.narrow.resize(n, 0);
                    self.update_narrow(groups, v.as_primitive::<Int64Type>());
                }
                DataType::Decimal128(..) => {
                    self.ints.resize(n, 0);
                    let a = v.as_primitive::<arrow::datatypes::Decimal128Type>();
                    for (i, g) in groups.iter().enumerate() {
                        if a.is_valid(i) {
                            let slot = &mut self.ints[*g as usize];
                            *slot = slot.checked_add(a.value(i)).ok_or_else(|| {
                                Error::NumericOutOfRange("numeric field overflow".into())
                            })?;
                            self.seen.add(*g as usize, 1);
                        }
                    }
                }
                _ => {} // all NULL
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<SumAvg>(other)?;
        self.seen.resize(n);
        if !other.ints.is_empty() {
            self.ints.resize(n, 0);
        }
        if !other.narrow.is_empty() {
            self.narrow.resize(n, 0);
        }
        if !other.floats.is_empty() {
            self.floats.resize(n, 0.0);
        }
        let big = n > PREFETCH_GROUPS;
        for (g, &to) in mapping.iter().enumerate() {
            if big {
                if let Some(&ahead) = mapping.get(g + PREFETCH_AHEAD) {
                    self.prefetch_group(ahead as usize);
                }
            }
            let to = to as usize;
            self.seen.add(to, other.seen.count(g));
            if let Some(&v) = other.ints.get(g) {
                self.ints[to] += v;
            }
            if let Some(&v) = other.narrow.get(g) {
                self.add_narrow(to, v);
            }
            if let Some(&w) = other.wraps.get(g).filter(|w| **w != 0) {
                self.wrap(to, w);
            }
            if let Some(&v) = other.floats.get(g) {
                self.floats[to] += v;
            }
        }
        Ok(())
    }
    fn merge_same_ids(&mut self, other: Box<dyn GroupAccumulator>, n: usize) -> Result<()> {
        let other = downcast::<SumAvg>(other)?;
        self.seen.merge_same_ids(&other.seen, n);
        add_same_ids(&mut self.ints, &other.ints, n, |a, b| a + b);
        add_same_ids(&mut self.floats, &other.floats, n, |a, b| a + b);
        if !other.narrow.is_empty() {
            self.narrow.resize(n.max(other.narrow.len()), 0);
            // Wraps noted for after the loop, which then stays a plain add.
            let mut wraps = Vec::new();
            for (g, (mine, &theirs)) in self.narrow.iter_mut().zip(&other.narrow).enumerate() {
                let (sum, wrapped) = mine.overflowing_add(theirs);
                *mine = sum;
                if wrapped {
                    wraps.push((g, if theirs > 0 { 1 } else { -1 }));
                }
            }
            for (g, by) in wraps {
                self.wrap(g, by);
            }
        }
        for (g, &w) in other.wraps.iter().enumerate().filter(|(_, w)| **w != 0) {
            self.wrap(g, w);
        }
        Ok(())
    }
    fn finish_present(
        &mut self,
        n: usize,
        present: &arrow::buffer::BooleanBuffer,
    ) -> Result<ArrayRef> {
        if self.avg || self.float {
            let all = self.finish(n)?;
            let present = arrow::array::BooleanArray::new(present.clone(), None);
            return Ok(arrow::compute::filter(&all, &present)?);
        }
        // Only the groups' sums built: at ten million groups among 2^24
        // ids, the others were 100 MB more to build and filter out.
        let valid = present
            .set_indices()
            .map(|g| self.seen.count(g) > 0)
            .collect();
        self.integer_sums(present.set_indices(), valid)
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        if !self.avg && !self.float {
            return self.finish_integer_sum(n);
        }
        self.floats.resize(n, 0.0);
        let counts: Vec<i64> = (0..n).map(|g| self.seen.count(g)).collect();
        let counts = &counts;
        if !self.float {
            self.ints = (0..n).map(|g| self.exact(g)).collect();
            self.narrow = Vec::new();
            self.wraps = Vec::new();
        }
        let scale = crate::numeric::scale_of(&self.arg);
        if self.avg && !self.float {
            // avg of integers and numerics is an exact numeric, as in
            // PostgreSQL: sum / count at the division scale, rounded.
            let out_scale = scale.max(crate::numeric::DIVISION_SCALE);
            let sums = arrow::array::Decimal128Array::from(self.ints.clone())
                .with_precision_and_scale(crate::numeric::MAX_PRECISION, scale)?;
            let ns = arrow::array::Decimal128Array::from(
                counts.iter().map(|c| *c as i128).collect::<Vec<_>>(),
            )
            .with_precision_and_scale(crate::numeric::MAX_PRECISION, 0)?;
            let q = crate::numeric::arithmetic(crate::numeric::Op::Div, &sums, &ns, out_scale);
            let q = match q {
                Ok(q) => q,
                // Groups without rows divide by zero; they are NULL below.
                Err(Error::DivisionByZero) => {
                    let safe = arrow::array::Decimal128Array::from(
                        counts
                            .iter()
                            .map(|c| (*c).max(1) as i128)
                            .collect::<Vec<_>>(),
                    )
                    .with_precision_and_scale(crate::numeric::MAX_PRECISION, 0)?;
                    crate::numeric::arithmetic(crate::numeric::Op::Div, &sums, &safe, out_scale)?
                }
                Err(e) => return Err(e),
            };
            let q = q.as_primitive::<arrow::datatypes::Decimal128Type>();
            let out = (0..n)
                .map(|g| (counts[g] > 0).then(|| q.value(g)))
                .collect::<arrow::array::Decimal128Array>()
                .with_precision_and_scale(crate::numeric::MAX_PRECISION, out_scale)?;
            return Ok(Arc::new(out));
        }
        if !self.avg && matches!(self.arg, DataType::Int64 | DataType::Decimal128(..)) {
            // sum(bigint) and sum(numeric) are numerics: no overflow at 2^63.
            let out = (0..n)
                .map(|g| (counts[g] > 0).then(|| self.ints[g]))
                .collect::<arrow::array::Decimal128Array>()
                .with_precision_and_scale(crate::numeric::MAX_PRECISION, scale)?;
            return Ok(Arc::new(out));
        }
        if self.avg {
            let out: Float64Array = (0..n)
                .map(|g| {
                    (counts[g] > 0).then(|| {
                        if self.float {
                            self.floats[g] / counts[g] as f64
                        } else {
                            self.ints[g] as f64 / counts[g] as f64
                        }
                    })
                })
                .collect();
            return Ok(Arc::new(out));
        }
        if self.float {
            let out: Float64Array = (0..n)
                .map(|g| (counts[g] > 0).then(|| self.floats[g]))
                .collect();
            return Ok(Arc::new(out));
        }
        let out = (0..n)
            .map(|g| {
                if counts[g] == 0 {
                    return Ok(None);
                }
                i64::try_from(self.ints[g])
                    .map(Some)
                    .map_err(|_| Error::NumericOutOfRange("bigint out of range".into()))
            })
            .collect::<Result<Int64Array>>()?;
        Ok(Arc::new(out))
    }
    fn size(&self) -> usize {
        self.ints.capacity() * 16
            + (self.narrow.capacity() + self.wraps.capacity() + self.floats.capacity()) * 8
            + self.seen.bytes()
    }
    fn sparse_groups_ok(&self) -> bool {
        true
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// MIN and MAX over a fixed-width type: one typed value per group. Doubles order as
/// PostgreSQL orders them (NaN above every number).
struct PrimitiveMinMax<T: ArrowPrimitiveType> {
    max: bool,
    data_type: DataType,
    best: Vec<Option<T::Native>>,
}

impl<T: ArrowPrimitiveType> PrimitiveMinMax<T> {
    fn new(max: bool, data_type: DataType) -> Self {
        PrimitiveMinMax {
            max,
            data_type,
            best: Vec::new(),
        }
    }

    fn offer(&mut self, g: usize, v: T::Native) {
        use arrow::datatypes::ArrowNativeTypeOp;
        let slot = &mut self.best[g];
        let replace = match slot {
            None => true,
            Some(cur) if self.max => v.compare(*cur).is_gt(),
            Some(cur) => v.compare(*cur).is_lt(),
        };
        if replace {
            *slot = Some(v);
        }
    }
}

impl<T: ArrowPrimitiveType> GroupAccumulator for PrimitiveMinMax<T> {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.best.resize(n, None);
        let v = plain(values)?;
        let a = v
            .as_primitive_opt::<T>()
            .ok_or_else(|| Error::Internal(format!("min/max input is {}", v.data_type())))?;
        for (i, g) in groups.iter().enumerate() {
            if a.is_valid(i) {
                self.offer(*g as usize, a.value(i));
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<PrimitiveMinMax<T>>(other)?;
        self.best.resize(n, None);
        for (g, v) in other.best.iter().enumerate() {
            if let Some(v) = v {
                self.offer(mapping[g] as usize, *v);
            }
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.best.resize(n, None);
        let out = PrimitiveArray::<T>::from_iter(self.best.iter().copied())
            .with_data_type(self.data_type.clone());
        Ok(Arc::new(out))
    }
    fn size(&self) -> usize {
        self.best.capacity() * 16
    }
    fn sparse_groups_ok(&self) -> bool {
        true
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// MIN and MAX over any ordered type, comparing with the Arrow `cmp` kernels'
/// semantics (NaN greatest) through a per-group "best row so far" kept as a
/// one-row array per group.
struct MinMax {
    max: bool,
    data_type: DataType,
    best: Vec<Option<ArrayRef>>,
}

impl MinMax {
    fn new(max: bool, data_type: DataType) -> Self {
        MinMax {
            max,
            data_type,
            best: Vec::new(),
        }
    }

    fn better(&self, candidate: &ArrayRef, current: &ArrayRef) -> Result<bool> {
        let c = arrow::array::Scalar::new(current);
        let r = if self.max {
            arrow::compute::kernels::cmp::gt(candidate, &c)?
        } else {
            arrow::compute::kernels::cmp::lt(candidate, &c)?
        };
        Ok(r.value(0))
    }

    fn offer(&mut self, g: usize, candidate: ArrayRef) -> Result<()> {
        let replace = match &self.best[g] {
            None => true,
            Some(cur) => self.better(&candidate, cur)?,
        };
        if replace {
            self.best[g] = Some(candidate);
        }
        Ok(())
    }
}

impl GroupAccumulator for MinMax {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.best.resize(n, None);
        let v = plain(values)?;
        // Reduce the batch to one candidate row per group first (a typed sort-free
        // pass using the kernels on whole columns would need a per-group layout;
        // the batch-local winner keeps the per-row cost to one comparison).
        let mut local: Vec<Option<usize>> = vec![None; n];
        for (i, g) in groups.iter().enumerate() {
            if v.is_null(i) {
                continue;
            }
            let g = *g as usize;
            local[g] = Some(match local[g] {
                None => i,
                Some(j) => {
                    let cand = v.slice(i, 1);
                    if self.better(&cand, &v.slice(j, 1))? {
                        i
                    } else {
                        j
                    }
                }
            });
        }
        for (g, row) in local.into_iter().enumerate() {
            if let Some(i) = row {
                self.offer(g, v.slice(i, 1))?;
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<MinMax>(other)?;
        self.best.resize(n, None);
        for (g, v) in other.best.into_iter().enumerate() {
            if let Some(v) = v {
                self.offer(mapping[g] as usize, v)?;
            }
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.best.resize(n, None);
        let null = arrow::array::new_null_array(&self.data_type, 1);
        let parts: Vec<&dyn Array> = self
            .best
            .iter()
            .map(|b| b.as_ref().map_or(null.as_ref(), |a| a.as_ref()))
            .collect();
        if parts.is_empty() {
            return Ok(arrow::array::new_empty_array(&self.data_type));
        }
        Ok(arrow::compute::concat(&parts)?)
    }
    fn size(&self) -> usize {
        self.best.len() * 64
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// One group's distinct value codes: a bitset while that takes no more
/// than eight bytes a value (a hash set takes more), a hash set otherwise.
/// Setting a bit costs far less than a hash insert: TEXT codes are small
/// dense ids (interned in order of first sight), and integers are often a
/// dense range; a million distinct values under 2^20 per group are 128 KiB
/// of bits instead of 9 MiB of hash set, so a hundred such groups fit in
/// cache.
enum DistinctSet {
    /// Code `c` is present when bit `c % 64` of word `c / 64` is set;
    /// `len` counts the set bits.
    Bits { words: Vec<u64>, len: usize },
    /// Any codes, and the largest of them (to tell when bits would do).
    Hash {
        set: HashSet<u64, ahash::RandomState>,
        max: u64,
    },
}

/// Codes below this always fit the bitset (at most 512 bytes per group).
const BITSET_CODES: u64 = 4096;

/// The largest bitset, in words (a 2^26-code range, 8 MiB per group).
const BITSET_MAX_WORDS: usize = 1 << 20;

impl Default for DistinctSet {
    fn default() -> Self {
        DistinctSet::Bits {
            words: Vec::new(),
            len: 0,
        }
    }
}

/// Whether a bitset of `words` words is worth it for `len` values.
fn bits_pay(words: usize, len: usize) -> bool {
    words as u64 <= BITSET_CODES / 64 || (words <= BITSET_MAX_WORDS && words <= len)
}

impl DistinctSet {
    /// Adds `code`. The common case, a code inside a bitset, is inlined into
    /// the caller's loop (it was a call per row, a third of a count(DISTINCT)
    /// over a thousand values); the rest is [`DistinctSet::insert_slow`].
    #[inline(always)]
    fn insert(&mut self, code: u64) {
        if let DistinctSet::Bits { words, len } = self {
            if let Some(word) = words.get_mut((code / 64) as usize) {
                let bit = 1u64 << (code % 64);
                *len += usize::from(*word & bit == 0);
                *word |= bit;
                return;
            }
        }
        self.insert_slow(code);
    }

    /// [`DistinctSet::insert`] of a code past a bitset's end (growing it or
    /// moving to a hash set) or into a hash set.
    #[cold]
    #[inline(never)]
    fn insert_slow(&mut self, code: u64) {
        match self {
            DistinctSet::Bits { words, len } if code / 64 < words.len() as u64 => {
                let (w, bit) = ((code / 64) as usize, 1u64 << (code % 64));
                *len += usize::from(words[w] & bit == 0);
                words[w] |= bit;
            }
            DistinctSet::Bits { len, .. } => {
                let needed = usize::try_from(code / 64 + 1).unwrap_or(usize::MAX);
                if bits_pay(needed, *len + 1) {
                    if let DistinctSet::Bits { words, .. } = self {
                        words.resize(needed.max(words.len() * 2).min(BITSET_MAX_WORDS), 0);
                    }
                } else {
                    let codes = self.codes();
                    let max = codes.iter().copied().max().unwrap_or(0);
                    let mut set = HashSet::with_capacity_and_hasher(codes.len() + 1, fixed_state());
                    set.extend(codes);
                    *self = DistinctSet::Hash { set, max };
                }
                self.insert(code);
            }
            DistinctSet::Hash { set, max } => {
                if set.insert(code) {
                    *max = (*max).max(code);
                    let needed = usize::try_from(*max / 64 + 1).unwrap_or(usize::MAX);
                    if set.len() >= BITSET_CODES as usize && bits_pay(needed, set.len()) {
                        let mut words = vec![0u64; needed];
                        for &c in set.iter() {
                            words[(c / 64) as usize] |= 1 << (c % 64);
                        }
                        *self = DistinctSet::Bits {
                            words,
                            len: set.len(),
                        };
                    }
                }
            }
        }
    }

    /// Adds every code of `other`; word by word between two bitsets.
    fn union(&mut self, other: &DistinctSet) {
        if let (
            DistinctSet::Bits { words, len },
            DistinctSet::Bits {
                words: theirs,
                len: their_len,
            },
        ) = (&mut *self, other)
        {
            if theirs.len() <= words.len() || bits_pay(theirs.len(), *len + their_len) {
                if theirs.len() > words.len() {
                    words.resize(theirs.len(), 0);
                }
                for (w, t) in words.iter_mut().zip(theirs) {
                    *w |= t;
                }
                *len = words.iter().map(|w| w.count_ones() as usize).sum();
                return;
            }
        }
        for c in other.codes() {
            self.insert(c);
        }
    }

    fn len(&self) -> usize {
        match self {
            DistinctSet::Bits { len, .. } => *len,
            DistinctSet::Hash { set, .. } => set.len(),
        }
    }

    fn codes(&self) -> Vec<u64> {
        match self {
            DistinctSet::Bits { words, .. } => words
                .iter()
                .enumerate()
                .flat_map(|(w, &word)| {
                    (0..64u64)
                        .filter(move |b| word & (1 << b) != 0)
                        .map(move |b| w as u64 * 64 + b)
                })
                .collect(),
            DistinctSet::Hash { set, .. } => set.iter().copied().collect(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            DistinctSet::Bits { words, .. } => words.capacity() * 8 + 40,
            DistinctSet::Hash { set, .. } => set.capacity() * 9 + 56,
        }
    }
}

/// COUNT(DISTINCT x): a set of value codes per group.
struct CountDistinct {
    keys: KeyColumn,
    sets: Vec<DistinctSet>,
    codes: Vec<u64>,
    valid: Vec<bool>,
}

impl CountDistinct {
    fn new(data_type: DataType) -> Self {
        CountDistinct {
            keys: KeyColumn::new(data_type),
            sets: Vec::new(),
            codes: Vec::new(),
            valid: Vec::new(),
        }
    }
}

impl GroupAccumulator for CountDistinct {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.sets.resize_with(n, DistinctSet::default);
        let v = values.ok_or_else(|| Error::Internal("count distinct without argument".into()))?;
        self.keys
            .encode_split(v, &mut self.codes, &mut self.valid)?;
        let sets = &mut self.sets[..];
        if self.valid.is_empty() {
            for (&g, &c) in groups.iter().zip(&self.codes) {
                if let Some(set) = sets.get_mut(g as usize) {
                    set.insert(c);
                }
            }
        } else {
            let rows = groups.iter().zip(&self.codes).zip(&self.valid);
            for ((&g, &c), _) in rows.filter(|(_, ok)| **ok) {
                if let Some(set) = sets.get_mut(g as usize) {
                    set.insert(c);
                }
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<CountDistinct>(other)?;
        self.sets.resize_with(n, DistinctSet::default);
        for (g, set) in other.sets.iter().enumerate() {
            if self.keys.value_coded() {
                // The same value has the same code in both: no decoding.
                self.sets[mapping[g] as usize].union(set);
                continue;
            }
            let codes: Vec<Option<u64>> = set.codes().into_iter().map(Some).collect();
            let values = other.keys.decode(&codes)?;
            let mut mine = Vec::new();
            self.keys.encode(&values, &mut mine)?;
            let target = &mut self.sets[mapping[g] as usize];
            for c in mine.into_iter().flatten() {
                target.insert(c);
            }
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.sets.resize_with(n, DistinctSet::default);
        Ok(Arc::new(
            self.sets
                .iter()
                .map(|s| s.len() as i64)
                .collect::<Int64Array>(),
        ))
    }
    fn size(&self) -> usize {
        self.sets.iter().map(DistinctSet::bytes).sum::<usize>() + self.keys.size()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Hashes every value of a column (dictionary columns: each entry once).
fn hash_values(v: &ArrayRef, out: &mut Vec<Option<u64>>) -> Result<()> {
    out.clear();
    if let Some(dict) = v.as_dictionary_opt::<UInt32Type>() {
        let mut value_hashes = Vec::new();
        hash_values(dict.values(), &mut value_hashes)?;
        out.extend(
            dict.keys()
                .iter()
                .map(|k| k.and_then(|k| value_hashes.get(k as usize).copied().flatten())),
        );
        return Ok(());
    }
    let state = fixed_state();
    match v.data_type() {
        DataType::Utf8 => out.extend(
            v.as_string::<i32>()
                .iter()
                .map(|s| s.map(|s| state.hash_one(s))),
        ),
        DataType::Float64 => out.extend(
            v.as_primitive::<Float64Type>()
                .iter()
                .map(|x| x.map(|x| state.hash_one(if x == 0.0 { 0 } else { x.to_bits() }))),
        ),
        _ => {
            // Every other type groups by its fixed-width code; hash that.
            let mut keys = KeyColumn::new(v.data_type().clone());
            let mut codes = Vec::new();
            keys.encode(v, &mut codes)?;
            out.extend(codes.into_iter().map(|c| c.map(|c| state.hash_one(c))));
        }
    }
    Ok(())
}

/// approx_count_distinct(x): a HyperLogLog sketch per group.
#[derive(Default)]
struct Hll {
    sketches: Vec<HyperLogLog>,
    hashes: Vec<Option<u64>>,
}

impl GroupAccumulator for Hll {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.sketches.resize_with(n, HyperLogLog::default);
        let v = values
            .ok_or_else(|| Error::Internal("approx_count_distinct without argument".into()))?;
        let mut hashes = std::mem::take(&mut self.hashes);
        hash_values(v, &mut hashes)?;
        for (g, h) in groups.iter().zip(&hashes) {
            if let Some(h) = h {
                self.sketches[*g as usize].add(*h);
            }
        }
        self.hashes = hashes;
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<Hll>(other)?;
        self.sketches.resize_with(n, HyperLogLog::default);
        for (g, s) in other.sketches.iter().enumerate() {
            self.sketches[mapping[g] as usize].merge(s);
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.sketches.resize_with(n, HyperLogLog::default);
        Ok(Arc::new(
            self.sketches
                .iter()
                .map(|s| s.estimate() as i64)
                .collect::<Int64Array>(),
        ))
    }
    fn size(&self) -> usize {
        self.sketches.iter().map(HyperLogLog::size).sum()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

fn as_f64(values: Option<&ArrayRef>) -> Result<ArrayRef> {
    let v = plain(values)?;
    Ok(arrow::compute::cast(&v, &DataType::Float64)?)
}

/// percentile_cont and percentile_disc: every value per group, sorted at the
/// end (exact).
struct Percentile {
    fraction: f64,
    values: Vec<Vec<f64>>,
    /// For percentile_disc, the argument's type, which the result has.
    discrete: Option<DataType>,
}

impl GroupAccumulator for Percentile {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.values.resize_with(n, Vec::new);
        let v = as_f64(values)?;
        let a = v.as_primitive::<Float64Type>();
        for (i, g) in groups.iter().enumerate() {
            if a.is_valid(i) {
                self.values[*g as usize].push(a.value(i));
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<Percentile>(other)?;
        self.values.resize_with(n, Vec::new);
        for (g, vals) in other.values.into_iter().enumerate() {
            self.values[mapping[g] as usize].extend(vals);
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.values.resize_with(n, Vec::new);
        let f = self.fraction;
        let discrete = self.discrete.is_some();
        let out: Float64Array = self
            .values
            .iter_mut()
            .map(|vals| {
                if vals.is_empty() {
                    return None;
                }
                vals.sort_by(|a, b| a.total_cmp(b));
                if discrete {
                    // The first value whose cumulative share reaches f.
                    let n = vals.len() as f64;
                    let at = ((f * n).ceil() as usize).clamp(1, vals.len()) - 1;
                    return Some(vals[at]);
                }
                let pos = f * (vals.len() - 1) as f64;
                let lo = pos.floor() as usize;
                let hi = pos.ceil() as usize;
                Some(vals[lo] + (vals[hi] - vals[lo]) * (pos - lo as f64))
            })
            .collect();
        let out: ArrayRef = Arc::new(out);
        match &self.discrete {
            Some(t) if t != &DataType::Float64 => Ok(arrow::compute::cast(&out, t)?),
            _ => Ok(out),
        }
    }
    fn size(&self) -> usize {
        self.values.iter().map(|v| v.capacity() * 8 + 24).sum()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// var_samp, var_pop, stddev_samp, stddev_pop: count, mean and the sum of
/// squared differences from the mean per group (Welford's update, Chan's
/// merge), which stays accurate where the sum of squares would cancel.
struct Variance {
    sample: bool,
    sqrt: bool,
    states: Vec<(f64, f64, f64)>,
}

impl GroupAccumulator for Variance {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.states.resize(n, (0.0, 0.0, 0.0));
        let v = as_f64(values)?;
        let a = v.as_primitive::<Float64Type>();
        for (i, g) in groups.iter().enumerate() {
            if a.is_valid(i) {
                let (count, mean, m2) = &mut self.states[*g as usize];
                let x = a.value(i);
                *count += 1.0;
                let delta = x - *mean;
                *mean += delta / *count;
                *m2 += delta * (x - *mean);
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<Variance>(other)?;
        self.states.resize(n, (0.0, 0.0, 0.0));
        for (g, (nb, mb, m2b)) in other.states.into_iter().enumerate() {
            if nb == 0.0 {
                continue;
            }
            let (na, ma, m2a) = &mut self.states[mapping[g] as usize];
            let total = *na + nb;
            let delta = mb - *ma;
            *m2a += m2b + delta * delta * *na * nb / total;
            *ma += delta * nb / total;
            *na = total;
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.states.resize(n, (0.0, 0.0, 0.0));
        let out: Float64Array = self
            .states
            .iter()
            .map(|(count, _, m2)| {
                let divisor = if self.sample { count - 1.0 } else { *count };
                if *count == 0.0 || divisor <= 0.0 {
                    return None;
                }
                let variance = (m2 / divisor).max(0.0);
                Some(if self.sqrt { variance.sqrt() } else { variance })
            })
            .collect();
        Ok(Arc::new(out))
    }
    fn size(&self) -> usize {
        self.states.capacity() * 24
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The variances and standard deviations of integers and numerics, exact as
/// in PostgreSQL (which returns them as numeric): count, sum and sum of squares
/// per group, the squares in 256 bits, and one exact division at the end.
struct ExactVariance {
    sample: bool,
    sqrt: bool,
    /// The argument's decimals (0 for integers).
    scale: i8,
    states: Vec<(i64, i256, i256)>,
}

impl GroupAccumulator for ExactVariance {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.states.resize(n, (0, i256::ZERO, i256::ZERO));
        let Some(values) = values else {
            return Ok(());
        };
        let decimals = crate::numeric::to_decimal(values, self.scale)?;
        for (i, g) in groups.iter().enumerate() {
            if decimals.is_valid(i) {
                let x = i256::from_i128(decimals.value(i));
                let (count, sum, squares) = &mut self.states[*g as usize];
                *count += 1;
                *sum = sum.checked_add(x).ok_or_else(numeric_overflow)?;
                *squares = x
                    .checked_mul(x)
                    .and_then(|sq| squares.checked_add(sq))
                    .ok_or_else(numeric_overflow)?;
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<ExactVariance>(other)?;
        self.states.resize(n, (0, i256::ZERO, i256::ZERO));
        for (g, (count, sum, squares)) in other.states.into_iter().enumerate() {
            let to = &mut self.states[mapping[g] as usize];
            to.0 += count;
            to.1 = to.1.checked_add(sum).ok_or_else(numeric_overflow)?;
            to.2 = to.2.checked_add(squares).ok_or_else(numeric_overflow)?;
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.states.resize(n, (0, i256::ZERO, i256::ZERO));
        let out = self.scale.max(crate::numeric::DIVISION_SCALE);
        let values = self
            .states
            .iter()
            .map(|(count, sum, squares)| {
                crate::numeric::variance(
                    *count,
                    *sum,
                    *squares,
                    self.scale,
                    self.sample,
                    self.sqrt,
                    out,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(
            arrow::array::Decimal128Array::from(values)
                .with_precision_and_scale(crate::numeric::MAX_PRECISION, out)?,
        ))
    }
    fn size(&self) -> usize {
        self.states.capacity() * std::mem::size_of::<(i64, i256, i256)>()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

fn numeric_overflow() -> Error {
    Error::Data {
        code: "22003",
        message: "numeric value out of range".into(),
    }
}

/// sum(DISTINCT x) and avg(DISTINCT x): the distinct values per group (as
/// their bits: integers as i64, doubles with -0 made 0), summed at the end.
struct SumDistinct {
    avg: bool,
    arg_type: DataType,
    sets: Vec<HashSet<u64>>,
}

impl SumDistinct {
    fn is_float(&self) -> bool {
        self.arg_type == DataType::Float64
    }
}

impl GroupAccumulator for SumDistinct {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.sets.resize_with(n, HashSet::new);
        let v = plain(values)?;
        if self.is_float() {
            let a = v.as_primitive::<Float64Type>();
            for (i, g) in groups.iter().enumerate() {
                if a.is_valid(i) {
                    let x = a.value(i) + 0.0;
                    self.sets[*g as usize].insert(x.to_bits());
                }
            }
        } else {
            let v = arrow::compute::cast(&v, &DataType::Int64)?;
            let a = v.as_primitive::<Int64Type>();
            for (i, g) in groups.iter().enumerate() {
                if a.is_valid(i) {
                    self.sets[*g as usize].insert(a.value(i) as u64);
                }
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<SumDistinct>(other)?;
        self.sets.resize_with(n, HashSet::new);
        for (g, set) in other.sets.into_iter().enumerate() {
            self.sets[mapping[g] as usize].extend(set);
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.sets.resize_with(n, HashSet::new);
        let float = self.is_float();
        let value = |bits: u64| {
            if float {
                f64::from_bits(bits)
            } else {
                bits as i64 as f64
            }
        };
        if !self.avg && !float {
            let out = self
                .sets
                .iter()
                .map(|s| {
                    if s.is_empty() {
                        return Ok(None);
                    }
                    s.iter()
                        .try_fold(0i64, |acc, b| acc.checked_add(*b as i64))
                        .map(Some)
                        .ok_or_else(|| Error::NumericOutOfRange("bigint out of range".into()))
                })
                .collect::<Result<Int64Array>>()?;
            return Ok(Arc::new(out));
        }
        let out: Float64Array = self
            .sets
            .iter()
            .map(|s| {
                if s.is_empty() {
                    return None;
                }
                let sum: f64 = s.iter().map(|b| value(*b)).sum();
                Some(if self.avg { sum / s.len() as f64 } else { sum })
            })
            .collect();
        Ok(Arc::new(out))
    }
    fn size(&self) -> usize {
        self.sets.iter().map(|s| s.capacity() * 9 + 48).sum()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The type of a column's values, under its dictionary encoding if it has one.
fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, v) => (**v).clone(),
        other => other.clone(),
    }
}

/// mode(): how often each value occurs per group, by the value's key code.
struct Mode {
    keys: KeyColumn,
    counts: Vec<std::collections::HashMap<u64, u64>>,
}

impl GroupAccumulator for Mode {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.counts.resize_with(n, Default::default);
        let mut codes = Vec::new();
        self.keys.encode(&plain(values)?, &mut codes)?;
        for (g, code) in groups.iter().zip(codes) {
            if let Some(code) = code {
                *self.counts[*g as usize].entry(code).or_default() += 1;
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<Mode>(other)?;
        self.counts.resize_with(n, Default::default);
        // The other side's codes are its own: decode its values, encode ours.
        for (g, counts) in other.counts.iter().enumerate() {
            let theirs: Vec<Option<u64>> = counts.keys().map(|c| Some(*c)).collect();
            let values = other.keys.decode(&theirs)?;
            let mut ours = Vec::new();
            self.keys.encode(&values, &mut ours)?;
            for (code, count) in ours.into_iter().zip(counts.values()) {
                if let Some(code) = code {
                    *self.counts[mapping[g] as usize].entry(code).or_default() += count;
                }
            }
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.counts.resize_with(n, Default::default);
        let mut chosen = Vec::with_capacity(n);
        for counts in &self.counts {
            let Some(top) = counts.values().copied().max() else {
                chosen.push(None);
                continue;
            };
            let tied: Vec<Option<u64>> = counts
                .iter()
                .filter(|(_, c)| **c == top)
                .map(|(code, _)| Some(*code))
                .collect();
            // Of equally frequent values, the first in sort order.
            let values = self.keys.decode(&tied)?;
            let order = arrow::compute::sort_to_indices(&values, None, Some(1))?;
            chosen.push(order.values().first().and_then(|i| tied[*i as usize]));
        }
        self.keys.decode(&chosen)
    }
    fn size(&self) -> usize {
        self.keys.size()
            + self
                .counts
                .iter()
                .map(|c| c.capacity() * 24 + 48)
                .sum::<usize>()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// approx_percentile: a t-digest per group.
struct ApproxPercentile {
    fraction: f64,
    digests: Vec<TDigest>,
}

impl GroupAccumulator for ApproxPercentile {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.digests.resize_with(n, TDigest::default);
        let v = as_f64(values)?;
        let a = v.as_primitive::<Float64Type>();
        for (i, g) in groups.iter().enumerate() {
            if a.is_valid(i) {
                self.digests[*g as usize].add(a.value(i));
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<ApproxPercentile>(other)?;
        self.digests.resize_with(n, TDigest::default);
        for (g, d) in other.digests.iter().enumerate() {
            self.digests[mapping[g] as usize].merge(d);
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.digests.resize_with(n, TDigest::default);
        let f = self.fraction;
        Ok(Arc::new(
            self.digests
                .iter_mut()
                .map(|d| d.quantile(f))
                .collect::<Float64Array>(),
        ))
    }
    fn size(&self) -> usize {
        self.digests.iter().map(TDigest::size).sum()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// string_agg and array_agg: the values in input order, joined at the end.
struct StringAgg {
    separator: String,
    /// For array_agg, the element type: values are kept as text (in UTC) and
    /// read back as this type at the end.
    array: Option<DataType>,
    values: Vec<Option<Vec<Option<String>>>>,
}

impl GroupAccumulator for StringAgg {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.values.resize(n, None);
        let v = plain(values)?;
        for (i, g) in groups.iter().enumerate() {
            let text = crate::format::format_value(v.as_ref(), i, sluice_storage::zone::Zone::UTC)?;
            if text.is_none() && self.array.is_none() {
                continue;
            }
            self.values[*g as usize]
                .get_or_insert_with(Vec::new)
                .push(text);
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<StringAgg>(other)?;
        self.values.resize(n, None);
        for (g, v) in other.values.into_iter().enumerate() {
            if let Some(v) = v {
                self.values[mapping[g] as usize]
                    .get_or_insert_with(Vec::new)
                    .extend(v);
            }
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.values.resize(n, None);
        if let Some(element) = &self.array {
            return crate::array::from_texts(
                std::mem::take(&mut self.values),
                element,
                sluice_storage::zone::Zone::UTC,
            );
        }
        let out: arrow::array::StringArray = self
            .values
            .iter()
            .map(|v| {
                v.as_ref().map(|items| {
                    items
                        .iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(&self.separator)
                })
            })
            .collect();
        Ok(Arc::new(out))
    }
    fn size(&self) -> usize {
        self.values
            .iter()
            .flatten()
            .map(|v| v.iter().flatten().map(|s| s.len() + 24).sum::<usize>())
            .sum()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// One element of PostgreSQL's array text form, quoted where needed.
pub fn array_item_text(item: Option<&str>) -> String {
    match item {
        None => "NULL".to_string(),
        Some(t)
            if t.is_empty()
                || t.eq_ignore_ascii_case("null")
                || t.contains([',', '"', ' ', '{', '}', '\\']) =>
        {
            format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
        }
        Some(t) => t.to_string(),
    }
}

/// bool_and / bool_or.
struct BoolAgg {
    and: bool,
    values: Vec<Option<bool>>,
}

impl GroupAccumulator for BoolAgg {
    fn update(&mut self, groups: &[u32], n: usize, values: Option<&ArrayRef>) -> Result<()> {
        self.values.resize(n, None);
        let v = plain(values)?;
        let a = v.as_boolean();
        for (i, g) in groups.iter().enumerate() {
            if a.is_valid(i) {
                let slot = &mut self.values[*g as usize];
                let x = a.value(i);
                *slot = Some(match *slot {
                    None => x,
                    Some(cur) if self.and => cur && x,
                    Some(cur) => cur || x,
                });
            }
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn GroupAccumulator>, mapping: &[u32], n: usize) -> Result<()> {
        let other = downcast::<BoolAgg>(other)?;
        self.values.resize(n, None);
        for (g, v) in other.values.iter().enumerate() {
            if let Some(x) = v {
                let slot = &mut self.values[mapping[g] as usize];
                *slot = Some(match *slot {
                    None => *x,
                    Some(cur) if self.and => cur && *x,
                    Some(cur) => cur || *x,
                });
            }
        }
        Ok(())
    }
    fn finish(&mut self, n: usize) -> Result<ArrayRef> {
        self.values.resize(n, None);
        Ok(Arc::new(
            self.values.iter().copied().collect::<BooleanArray>(),
        ))
    }
    fn size(&self) -> usize {
        self.values.capacity()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distinct_set_moves_between_bits_and_a_hash_set_and_counts_the_same() {
        let mut set = DistinctSet::default();
        let mut expected = std::collections::BTreeSet::new();
        // Sparse codes far apart: a hash set.
        for i in 0..3000u64 {
            let code = i * 1_000_003 % 900_000_007;
            set.insert(code);
            expected.insert(code);
        }
        assert!(matches!(set, DistinctSet::Hash { .. }));
        assert_eq!(set.len(), expected.len());
        // Dense codes under 2^20 fill in: back to bits once they pay.
        let mut dense = DistinctSet::default();
        let mut dense_expected = std::collections::BTreeSet::new();
        for i in 0..400_000u64 {
            let code = (i * 7919 + 999_983) % 1_000_000;
            dense.insert(code);
            dense_expected.insert(code);
            if i % 49_999 == 0 {
                assert_eq!(dense.len(), dense_expected.len(), "after {i} inserts");
            }
        }
        assert!(matches!(dense, DistinctSet::Bits { .. }));
        let mut codes = dense.codes();
        codes.sort_unstable();
        assert_eq!(codes, dense_expected.iter().copied().collect::<Vec<_>>());
        // Unions: bits into bits word by word, hash into bits code by code.
        let mut other = DistinctSet::default();
        for code in [3, 64, 1_000_001, 999_999] {
            other.insert(code);
            dense_expected.insert(code);
        }
        dense.union(&other);
        dense.union(&set);
        dense_expected.extend(expected.iter().copied());
        assert_eq!(dense.len(), dense_expected.len());
        let mut codes = dense.codes();
        codes.sort_unstable();
        assert_eq!(codes, dense_expected.into_iter().collect::<Vec<_>>());
        let mut small = DistinctSet::default();
        for code in [3, 64, 3, 4095, 0, 64] {
            small.insert(code);
        }
        assert_eq!((small.len(), small.codes()), (4, vec![0, 3, 64, 4095]));
        let mut few = DistinctSet::default();
        for code in [5, 64, 700] {
            few.insert(code);
        }
        few.union(&small);
        assert!(matches!(few, DistinctSet::Bits { .. }));
        assert_eq!((few.len(), few.codes()), (6, vec![0, 3, 5, 64, 700, 4095]));
    }

    /// Batches without NULLs take the one-pass loop: its sums wrap and are
    /// rebuilt exactly, SUM's presence bits and AVG's counts are kept, and
    /// a group no row reached stays NULL.
    #[test]
    fn sums_and_averages_of_batches_without_nulls_wrap_exactly() {
        let rows = |v: Vec<i64>| Arc::new(Int64Array::from(v)) as ArrayRef;
        let (max, min) = (i64::MAX, i64::MIN);
        let ids: Vec<u32> = vec![0, 0, 1, 0, 1, 3];
        let values = rows(vec![max, max, min, 1, min, 4]);
        let mut sum = SumAvg::new(false, &DataType::Int64).unwrap();
        sum.update(&ids, 4, Some(&values)).unwrap();
        let out = sum.finish(4).unwrap();
        let out = out.as_primitive::<arrow::datatypes::Decimal128Type>();
        let got: Vec<Option<i128>> = out.iter().collect();
        let (max, min) = (i128::from(max), i128::from(min));
        assert_eq!(got, [Some(2 * max + 1), Some(2 * min), None, Some(4)]);
        let mut avg = SumAvg::new(true, &DataType::Int64).unwrap();
        avg.update(&ids, 4, Some(&values)).unwrap();
        let out = avg.finish(4).unwrap();
        let out = out.as_primitive::<arrow::datatypes::Decimal128Type>();
        let unit = 10i128.pow(u32::from(out.scale() as u8));
        assert_eq!(
            out.value(0),
            (2 * max + 1) / 3 * unit + ((2 * max + 1) % 3) * unit / 3
        );
        assert_eq!(out.value(1), min * unit);
        assert!(out.is_null(2));
        assert_eq!(out.value(3), 4 * unit);
    }

    /// Two partial sums that each wrap past 2^63 (one up, one down, one
    /// both ways) merge into the exact numeric sum, with NULL where a
    /// group had no values, over enough groups for the prefetching loop.
    #[test]
    fn bigint_sums_that_wrap_merge_exactly() {
        let groups = PREFETCH_GROUPS + 10;
        let sum = || SumAvg::new(false, &DataType::Int64).unwrap();
        let (mut a, mut b) = (sum(), sum());
        let ids: Vec<u32> = vec![0, 0, 1, 1, 2, groups as u32 - 1];
        let rows = |v: Vec<Option<i64>>| Arc::new(Int64Array::from(v)) as ArrayRef;
        let (max, min) = (i64::MAX, i64::MIN);
        a.update(
            &ids,
            groups,
            Some(&rows(vec![
                Some(max),
                Some(max),
                Some(min),
                Some(-1),
                Some(max),
                None,
            ])),
        )
        .unwrap();
        b.update(
            &ids,
            groups,
            Some(&rows(vec![
                Some(max),
                Some(9),
                Some(min),
                Some(min),
                Some(min),
                None,
            ])),
        )
        .unwrap();
        let mapping: Vec<u32> = (0..groups as u32).collect();
        a.merge(Box::new(b), &mapping, groups).unwrap();
        let out = a.finish(groups).unwrap();
        let out = out.as_primitive::<arrow::datatypes::Decimal128Type>();
        let (max, min) = (i128::from(max), i128::from(min));
        assert_eq!(out.value(0), 3 * max + 9);
        assert_eq!(out.value(1), 3 * min - 1);
        assert_eq!(out.value(2), max + min);
        assert!(out.is_null(3) && out.is_null(groups - 1));
    }
}
