//! Hash aggregation: a [`GroupTable`] maps rows to groups, one grouped accumulator per
//! aggregate folds values in. The same [`Aggregator`] runs per segment block in the
//! parallel scan and above any other plan node; partial aggregators merge.

pub mod accumulators;
mod held;
pub mod hll;
pub mod keys;
pub mod spill;
pub mod tdigest;
mod used_ids;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};

use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::logical::AggregateExpr;
use accumulators::{new_accumulator, GroupAccumulator};
use held::HeldRows;
use keys::GroupTable;

/// What one aggregate needs to build its accumulator.
#[derive(Clone, Debug)]
pub struct AggregateSpec {
    /// The call.
    pub expr: AggregateExpr,
    /// The argument's type (plain, not dictionary).
    pub arg_type: Option<DataType>,
}

/// Rows to fold into an aggregation: their group keys and the argument of
/// each aggregate, evaluated.
pub struct FoldRows {
    /// One array per group key.
    pub keys: Vec<ArrayRef>,
    /// One per aggregate; `None` for `count(*)`.
    pub args: Vec<Option<ArrayRef>>,
    /// Rows.
    pub rows: usize,
}

/// A hash aggregation in progress.
pub struct Aggregator {
    group_types: Vec<DataType>,
    specs: Vec<AggregateSpec>,
    groups: GroupTable,
    accumulators: Vec<Box<dyn GroupAccumulator>>,
    group_ids: Vec<u32>,
    /// Group ids the accumulators' states cover: the largest count given
    /// to them since the ids last moved.
    state_groups: usize,
    /// Rows not yet folded in, where the groups are too many for the
    /// states to stay in cache (see [`held`]).
    held: HeldRows,
    /// True when rows may be held: every aggregate's state is a fixed few
    /// bytes a group and its result is the same in any row order.
    may_hold: bool,
    reserved: usize,
    ctx: QueryContext,
}

impl Aggregator {
    /// An empty aggregation with group keys of `group_types`.
    pub fn new(
        group_types: Vec<DataType>,
        specs: Vec<AggregateSpec>,
        ctx: QueryContext,
    ) -> Result<Self> {
        let accumulators = specs
            .iter()
            .map(|s| {
                new_accumulator(
                    s.expr.func,
                    s.expr.distinct,
                    s.arg_type.as_ref(),
                    s.expr.separator.as_deref(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // Group ids may be packed keys with holes between them when every
        // accumulator takes an unused id as an empty slot.
        let sparse = accumulators.iter().all(|a| a.sparse_groups_ok());
        let groups = if sparse {
            GroupTable::sparse(&group_types)
        } else {
            GroupTable::new(&group_types)
        };
        Ok(Aggregator {
            groups,
            group_types,
            specs,
            accumulators,
            group_ids: Vec::new(),
            state_groups: 0,
            held: HeldRows::default(),
            // The accumulators that take a sparse table's empty slots are
            // the fixed-size, order-blind ones (count, sum, avg, min, max).
            may_hold: sparse,
            reserved: 0,
            ctx,
        })
    }

    /// True if an aggregate's result depends on the order rows arrive in
    /// (`string_agg`, `array_agg`): such an aggregation must see rows in scan
    /// order, so it is not split across workers whose partials would interleave.
    pub fn order_sensitive(&self) -> bool {
        self.specs.iter().any(|s| {
            matches!(
                s.expr.func,
                crate::logical::AggregateFunction::StringAgg
                    | crate::logical::AggregateFunction::ArrayAgg
            )
        })
    }

    /// How many scan workers may fold rows into partials of this shape: one
    /// for an order-sensitive aggregation, any number otherwise.
    pub fn max_workers(&self) -> usize {
        if self.order_sensitive() {
            1
        } else {
            usize::MAX
        }
    }

    /// Tells the group table that about `rows` rows will be folded in (0:
    /// not known), so that it may take its final form from the first batch.
    pub fn expect_rows(&mut self, rows: usize) {
        self.groups.expect_rows(rows);
    }

    /// A new, empty aggregator of the same shape (for another worker).
    pub fn empty_like(&self) -> Result<Self> {
        Aggregator::new(
            self.group_types.clone(),
            self.specs.clone(),
            self.ctx.clone(),
        )
    }

    /// Folds in `rows` rows: their group-key columns and each aggregate's argument
    /// column (`None` for COUNT(*)). Columns may be dictionary-encoded.
    pub fn update(
        &mut self,
        keys: &[ArrayRef],
        args: &[Option<ArrayRef>],
        rows: usize,
    ) -> Result<()> {
        let mut ids = std::mem::take(&mut self.group_ids);
        if keys.is_empty() {
            ids.clear();
            ids.resize(rows, 0);
            if self.groups.is_empty() && rows > 0 {
                self.groups.intern(&[], 1, &mut Vec::new())?;
            }
        } else {
            self.groups.intern(keys, rows, &mut ids)?;
            self.follow_moved_groups()?;
        }
        let n = self.groups.len();
        self.state_groups = self.state_groups.max(n);
        if !self.hold(&ids, args, n)? {
            for (acc, arg) in self.accumulators.iter_mut().zip(args) {
                acc.update(&ids, n, arg.as_ref())?;
            }
        }
        self.group_ids = ids;
        self.account()
    }

    /// Holds the batch's rows back to fold in later by id ranges, if the
    /// groups are many, the arguments can be held and the statement has
    /// room; folds the held rows in whenever the buffers fill. False when
    /// the caller is to fold the batch in.
    fn hold(&mut self, ids: &[u32], args: &[Option<ArrayRef>], n: usize) -> Result<bool> {
        if !self.may_hold || n < held::HOLD_FROM_GROUPS || !HeldRows::takes(args) {
            return Ok(false);
        }
        // Room for the held rows and for the states, which grow to `n`
        // groups only as the rows are folded in (about 16 bytes a group
        // each for the aggregates that hold rows: 8 for COUNT, up to 24
        // for AVG of numerics).
        let states = n * 16 * self.accumulators.len();
        if self.held.bytes() == 0
            && !self
                .ctx
                .has_room(HeldRows::bytes_to_hold(n, args).saturating_add(states))
        {
            return Ok(false);
        }
        for start in (0..ids.len()).step_by(held::HOLD_CHUNK) {
            let rows = held::HOLD_CHUNK.min(ids.len() - start);
            let sliced;
            let chunk_args = if rows == ids.len() {
                args
            } else {
                sliced = args
                    .iter()
                    .map(|a| a.as_ref().map(|a| a.slice(start, rows)))
                    .collect::<Vec<_>>();
                &sliced
            };
            let chunk = &ids[start..start + rows];
            if !self.held.hold(chunk, chunk_args, n) {
                self.fold_held()?;
                if !self.held.hold(chunk, chunk_args, n) {
                    return Err(Error::Internal("held rows refused with none held".into()));
                }
            }
        }
        Ok(true)
    }

    fn fold_held(&mut self) -> Result<()> {
        self.held.flush(&mut self.accumulators, self.state_groups)
    }

    /// Folds in any rows held back and gives their memory back. A worker
    /// calls it when its part of a scan is done, so that the folding runs
    /// on its own thread, not in the merge.
    pub fn settle(&mut self) -> Result<()> {
        self.fold_held()?;
        self.held.shrink();
        self.account()
    }

    /// Moves every accumulator's state to the groups' new ids, if the last
    /// lookup moved them (a sparse table's ids changing layout): each
    /// accumulator is merged into an empty one through the move.
    fn follow_moved_groups(&mut self) -> Result<()> {
        let Some(moved) = self.groups.take_moved() else {
            return Ok(());
        };
        // Held rows carry the old ids: folded in before the states move.
        self.fold_held()?;
        let n = self.groups.len();
        self.state_groups = n;
        for (acc, spec) in self.accumulators.iter_mut().zip(&self.specs) {
            let fresh = new_accumulator(
                spec.expr.func,
                spec.expr.distinct,
                spec.arg_type.as_ref(),
                spec.expr.separator.as_deref(),
            )?;
            let old = std::mem::replace(acc, fresh);
            if n > 0 && !moved.is_empty() {
                acc.merge(old, &moved, n)?;
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.groups.size()
            + self.held.bytes()
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Brings the statement's memory account up to date; errors past the bound.
    fn account(&mut self) -> Result<()> {
        let now = self.size();
        if now > self.reserved {
            self.ctx.reserve(now - self.reserved)?;
        } else {
            self.ctx.release(self.reserved - now);
        }
        self.reserved = now;
        Ok(())
    }

    /// Folds another partial aggregation of the same shape into this one.
    pub fn merge(&mut self, mut other: Aggregator) -> Result<()> {
        let other_groups = other.groups.len();
        if other.groups.is_empty() {
            return Ok(());
        }
        self.settle()?;
        other.settle()?;
        if self.groups.shares_ids_with(&other.groups) {
            // The same ids for the same keys: states add up slot by slot.
            self.groups.absorb_groups_of(&other.groups);
            let n = self.groups.len();
            self.state_groups = self.state_groups.max(n);
            let theirs = std::mem::take(&mut other.accumulators);
            for (mine, theirs) in self.accumulators.iter_mut().zip(theirs) {
                mine.merge_same_ids(theirs, n)?;
            }
            self.ctx.release(other.reserved);
            other.reserved = 0;
            return self.account();
        }
        let mut mapping = Vec::new();
        if self.group_types.is_empty() {
            if self.groups.is_empty() {
                self.groups.intern(&[], 1, &mut Vec::new())?;
            }
            mapping.resize(other_groups, 0);
        } else {
            self.groups.intern_groups_of(&other.groups, &mut mapping)?;
            self.follow_moved_groups()?;
        }
        let n = self.groups.len();
        self.state_groups = self.state_groups.max(n);
        let theirs = std::mem::take(&mut other.accumulators);
        for (mine, theirs) in self.accumulators.iter_mut().zip(theirs) {
            mine.merge(theirs, &mapping, n)?;
        }
        self.ctx.release(other.reserved);
        other.reserved = 0;
        self.account()
    }

    /// The result: group keys then aggregates, one row per group. Without group keys
    /// there is always exactly one row (COUNT(*) of nothing is 0).
    pub fn finish(mut self, schema: SchemaRef) -> Result<RecordBatch> {
        self.settle()?;
        if self.group_types.is_empty() && self.groups.is_empty() {
            self.groups.intern(&[], 1, &mut Vec::new())?;
        }
        let n = self.groups.len();
        let present = self.groups.present();
        let mut columns = self.groups.key_arrays()?;
        for acc in self.accumulators.iter_mut() {
            // The key arrays hold groups only; the states of unused ids go.
            columns.push(match &present {
                Some(present) => acc.finish_present(n, present.values())?,
                None => acc.finish(n)?,
            });
        }
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    Ok(arrow::compute::cast(&c, f.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.ctx.release(self.reserved);
        self.reserved = 0;
        RecordBatch::try_new(schema, columns)
            .map_err(|e| Error::Internal(format!("aggregate output: {e}")))
    }
}

impl Drop for Aggregator {
    /// An aggregation dropped unfinished (on an error, or to spill instead)
    /// gives its memory back to the statement.
    fn drop(&mut self) {
        self.ctx.release(self.reserved);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Decimal128Type, Field, Int64Type, Schema};

    use super::*;
    use crate::context::QueryOptions;
    use crate::logical::{AggregateFunction, Expr};

    fn aggregator() -> Aggregator {
        aggregator_within(QueryOptions::default().memory_limit)
    }

    /// count(*) and sum(x) by a bigint key, in a statement of this memory
    /// bound.
    fn aggregator_within(memory_limit: usize) -> Aggregator {
        let spec = |func, arg: Option<Expr>, arg_type| AggregateSpec {
            expr: AggregateExpr {
                func,
                arg,
                distinct: false,
                separator: None,
            },
            arg_type,
        };
        let options = QueryOptions {
            memory_limit,
            ..QueryOptions::default()
        };
        let ctx = QueryContext::new(options, Arc::new(AtomicBool::new(false)));
        Aggregator::new(
            vec![DataType::Int64],
            vec![
                spec(AggregateFunction::CountStar, None, None),
                spec(
                    AggregateFunction::Sum,
                    Some(Expr::Column(1)),
                    Some(DataType::Int64),
                ),
            ],
            ctx,
        )
        .unwrap()
    }

    /// A xorshift step: the tests' keys and values, the same every run.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Key `k` seen `times` more with value `x`, in the expected counts
    /// and exact sums.
    fn count_in(reference: &mut HashMap<i64, (i64, i128)>, k: i64, x: i64, times: i64) {
        let e = reference.entry(k).or_default();
        e.0 += times;
        e.1 += i128::from(times) * i128::from(x);
    }

    /// Folds a batch of keys and values into [`aggregator`]'s count and sum.
    fn update(agg: &mut Aggregator, keys: Vec<i64>, xs: Vec<i64>) {
        let rows = keys.len();
        let keys: ArrayRef = Arc::new(Int64Array::from(keys));
        let xs: ArrayRef = Arc::new(Int64Array::from(xs));
        agg.update(&[keys], &[None, Some(xs)], rows).unwrap();
    }

    /// `agg`'s result has exactly one row per key of `reference`, with its
    /// count and exact sum.
    fn assert_counts_and_sums(agg: Aggregator, reference: &HashMap<i64, (i64, i128)>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("count", DataType::Int64, false),
            Field::new("sum", DataType::Decimal128(38, 0), true),
        ]));
        let out = agg.finish(schema).unwrap();
        assert_eq!(out.num_rows(), reference.len(), "one row per key");
        let k = out.column(0).as_primitive::<Int64Type>();
        let c = out.column(1).as_primitive::<Int64Type>();
        let s = out.column(2).as_primitive::<Decimal128Type>();
        for i in 0..out.num_rows() {
            let expected = reference[&k.value(i)];
            assert_eq!((c.value(i), s.value(i)), expected, "key {}", k.value(i));
        }
    }

    /// count(*) and sum(x) by key through two partial aggregations whose
    /// group ids are packed keys: batches that move the ids (ranges below
    /// and above the first; a batch of many new groups, whose ids move
    /// after it was looked up) carry the states along, the merge maps one
    /// partial's ids into the other's (moving those), and the result has
    /// one row per key that occurred, none for the unused ids between them.
    #[test]
    fn sparse_partials_follow_their_moving_ids_and_leave_no_empty_groups() {
        let mut reference: HashMap<i64, (i64, i128)> = HashMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        // (lowest key, range, partial). The third partial's batches are
        // many groups over a wide range: looked up by hash until the end of
        // its first batch, when the ids become the keys.
        let batches = [
            (5_000, 3_000, 0),
            (1_000, 9_000, 1),
            (4_000, 100, 0),
            (20_000, 5_000, 1),
            (-100_000, 300_000, 2),
            (-90_000, 300_000, 2),
            (-700_000, 1_000, 3),
        ];
        let mut partials = [aggregator(), aggregator(), aggregator(), aggregator()];
        for &(lo, range, partial) in &batches {
            let agg = &mut partials[partial];
            agg.expect_rows(4_000_000);
            let (mut keys, mut xs) = (Vec::new(), Vec::new());
            for _ in 0..10_000 {
                let r = xorshift(&mut seed);
                let (k, x) = (lo + (r % range) as i64, (r >> 40) as i64 - 5_000);
                keys.push(k);
                xs.push(x);
                count_in(&mut reference, k, x, 1);
            }
            update(agg, keys, xs);
        }
        // The last partial's keys lie past the total's layout: its ids move.
        let [first, second, mut total, last] = partials;
        total.merge(first).unwrap();
        total.merge(second).unwrap();
        total.merge(last).unwrap();
        assert!(
            total.groups.present().is_some(),
            "unused ids among the groups"
        );
        assert_counts_and_sums(total, &reference);
    }

    /// Two partials whose first batches met slightly different keys take
    /// one packed-key layout and merge slot by slot: counts and sums (some
    /// wrapping past 64 bits in each partial) come out exact, and the
    /// groups of either partial alone are kept.
    #[test]
    fn partials_sharing_their_ids_merge_slot_by_slot() {
        let mut reference: HashMap<i64, (i64, i128)> = HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut partials = [aggregator(), aggregator()];
        for (p, lo) in [(0, 10), (1, 377), (0, 10)] {
            let agg = &mut partials[p];
            agg.expect_rows(1 << 26);
            let (mut keys, mut xs) = (Vec::new(), Vec::new());
            for i in 0..16_384 {
                let r = xorshift(&mut seed);
                let k = lo + (r % 100_000) as i64;
                let x = if i % 5 == 0 {
                    i64::MAX - 7
                } else {
                    (r >> 44) as i64
                };
                keys.push(k);
                xs.push(x);
                count_in(&mut reference, k, x, 1);
            }
            update(agg, keys, xs);
        }
        let [mut a, b] = partials;
        assert!(a.groups.shares_ids_with(&b.groups), "layouts differ");
        a.merge(b).unwrap();
        assert_counts_and_sums(a, &reference);
    }

    /// count(*) and sum(x) over more group ids than the states keep in
    /// cache, so that rows are held back and folded in by id ranges: two
    /// partials whose first batches differed slightly share their ids and
    /// merge slot by slot; a third, whose held rows are folded in before
    /// its ids move (a batch below its first range), merges through a map
    /// of its ids; sums that wrap past 64 bits stay exact.
    #[test]
    fn held_rows_survive_moves_and_both_kinds_of_merge() {
        let mut reference: HashMap<i64, (i64, i128)> = HashMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        // (lowest key, range, partial)
        let batches = [
            (1_000, 3_000_000, 0),
            (3_000, 3_000_000, 1),
            (1_000, 3_000_000, 0),
            (3_000, 3_000_000, 1),
            (9_000_000, 2_000_000, 2),
            (-2_000_000, 100_000, 2),
            (9_000_000, 2_000_000, 2),
        ];
        let mut partials = [aggregator(), aggregator(), aggregator()];
        let mut ever_held = [false; 3];
        for &(lo, range, partial) in &batches {
            let agg = &mut partials[partial];
            agg.expect_rows(1 << 26);
            let (mut keys, mut xs) = (Vec::new(), Vec::new());
            for _ in 0..16_384 {
                let r = xorshift(&mut seed);
                let k = lo + (r % range) as i64;
                // Now and then a value near the limit: sums wrap.
                let x = match r % 7 {
                    0 => i64::MAX - (r >> 50) as i64,
                    1 => i64::MIN + (r >> 50) as i64,
                    _ => (r >> 40) as i64 - 5_000,
                };
                keys.push(k);
                xs.push(x);
                count_in(&mut reference, k, x, 1);
            }
            // One key many times: its sum wraps many times over.
            keys.extend([lo; 64]);
            xs.extend([i64::MAX; 64]);
            count_in(&mut reference, lo, i64::MAX, 64);
            update(agg, keys, xs);
            ever_held[partial] |= agg.held.bytes() > 0;
        }
        assert_eq!(ever_held, [true; 3], "rows not held");
        let [mut total, second, third] = partials;
        assert!(total.groups.shares_ids_with(&second.groups));
        assert!(!total.groups.shares_ids_with(&third.groups));
        total.merge(second).unwrap();
        total.merge(third).unwrap();
        assert_counts_and_sums(total, &reference);
    }

    /// Holding rows only speeds an aggregation up: where the statement's
    /// bound has room for the states but not for the held rows too, the
    /// rows are folded in as they come and the statement succeeds.
    #[test]
    fn rows_are_held_only_where_the_memory_bound_has_room() {
        // 2^21 ids: about 33 MB of states, 35 MB more to hold rows.
        for (limit, holds) in [(50 << 20, false), (200 << 20, true)] {
            let mut agg = aggregator_within(limit);
            agg.expect_rows(1 << 26);
            let keys: Vec<i64> = (0..16_384).map(|i| i * 127).collect();
            let keys: ArrayRef = Arc::new(Int64Array::from(keys));
            agg.update(&[Arc::clone(&keys)], &[None, Some(keys)], 16_384)
                .unwrap();
            assert!(agg.groups.len() >= held::HOLD_FROM_GROUPS);
            assert_eq!(agg.held.bytes() > 0, holds, "bound of {limit} bytes");
        }
    }
}
