//! Pruning and row selection for sealed segments, before any column data is
//! decoded. First, each conjunct of a scan's filter that compares a column with
//! constants is checked against the segment's and each block's zone maps (min/max,
//! which include the time range). Then the parts of the filter over TEXT columns
//! (`=`, `<>`, `IN`, `NOT IN`, ranges and `LIKE 'prefix%'`, under AND, OR and NOT)
//! are answered from the sorted dictionary and the inverted index as a bitmap of
//! rows: blocks without a selected row are skipped, and in the others the filter
//! runs only on the selected rows. The selection is always a superset of the rows
//! the filter accepts and the filter still runs on it, so neither step can change
//! an answer.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use roaring::RoaringBitmap;
use sluice_storage::block_index::BlockIndex;
use sluice_storage::segment::format::Stat;
use sluice_storage::segment::SealedSegment;
use sluice_storage::ColumnType;

use crate::error::Result;
use crate::logical::{BinaryOp, Expr};
use crate::scan::split_conjunction;

/// What pruning did in one scan, for EXPLAIN ANALYZE.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanStats {
    /// Sealed segments in the snapshot.
    pub segments: usize,
    /// Sealed segments with no block left to read.
    pub segments_pruned: usize,
    /// Blocks in the snapshot (sealed and in memory).
    pub blocks: usize,
    /// Blocks skipped by zone maps.
    pub blocks_pruned_by_zone_maps: usize,
    /// Blocks skipped by an inverted index.
    pub blocks_pruned_by_index: usize,
    /// Inverted-index lookups made.
    pub index_lookups: usize,
    /// The columns whose inverted index was read, in first-use order.
    pub indexes_used: Vec<String>,
    /// Sealed segments a filtered scan read every block of, no index
    /// selecting rows: what a sort key or an index would have saved.
    pub segments_scanned_whole: usize,
    /// Columns compared for equality (`=`, `IN`) that had no index in some
    /// segment (mostly distinct values, `no_index`, a type never indexed).
    pub unindexed_columns: Vec<String>,
    /// The filter's top-level conditions that the index selection answered
    /// in every morsel, so neither evaluated nor their columns read.
    pub conditions_answered: usize,
    /// The columns the scan read, in table order: those the query uses,
    /// less those only its answered conditions used.
    pub columns_read: Vec<String>,
    /// Rows that passed the scan's filter.
    pub rows_selected: usize,
}

/// A constant a column is compared with.
#[derive(Clone, Debug)]
enum Constant {
    Int(i64),
    Float(f64),
    Text(String),
    /// A numeric: its digits and scale.
    Decimal(i128, i8),
}

/// `column op constant`, with the column on the left.
struct Condition {
    /// Which of the filter's top-level conjuncts it is (in
    /// [`crate::scan::split_conjunction`] order).
    conjunct: usize,
    column: usize,
    op: BinaryOp,
    values: Vec<Constant>,
}

/// The value of an integer or timestamp constant (not NULL, not boolean).
pub(crate) fn integer_constant(e: &Expr) -> Option<i64> {
    let Expr::Literal(l) = e else { return None };
    if matches!(l.value.data_type(), DataType::Boolean) {
        return None;
    }
    match constant(e)? {
        Constant::Int(i) => Some(i),
        _ => None,
    }
}

fn constant(e: &Expr) -> Option<Constant> {
    let Expr::Literal(l) = e else { return None };
    if l.is_null() {
        return None;
    }
    let v = &l.value;
    Some(match v.data_type() {
        DataType::Utf8 => Constant::Text(v.as_string::<i32>().value(0).to_string()),
        DataType::Float64 => Constant::Float(v.as_primitive::<Float64Type>().value(0)),
        DataType::Int32 | DataType::Int64 | DataType::Timestamp(..) | DataType::Boolean => {
            let i = arrow::compute::cast(v, &DataType::Int64).ok()?;
            Constant::Int(i.as_primitive::<Int64Type>().value(0))
        }
        DataType::Decimal128(_, scale) => Constant::Decimal(
            v.as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            *scale,
        ),
        _ => return None,
    })
}

/// The operator with its operands swapped (`a < b` is `b > a`).
pub(crate) fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::LtEq => BinaryOp::GtEq,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::GtEq => BinaryOp::LtEq,
        other => other,
    }
}

/// The conditions of a filter that pruning understands.
fn conditions(filter: &Expr) -> Vec<Condition> {
    let mut parts = Vec::new();
    split_conjunction(filter, &mut parts);
    let mut out = Vec::new();
    for (conjunct, p) in parts.into_iter().enumerate() {
        match p {
            Expr::Binary { op, left, right }
                if matches!(
                    op,
                    BinaryOp::Eq | BinaryOp::Lt | BinaryOp::LtEq | BinaryOp::Gt | BinaryOp::GtEq
                ) =>
            {
                match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), other) => {
                        if let Some(v) = constant(other) {
                            out.push(Condition {
                                conjunct,
                                column: *c,
                                op: *op,
                                values: vec![v],
                            });
                        }
                    }
                    (other, Expr::Column(c)) => {
                        if let Some(v) = constant(other) {
                            out.push(Condition {
                                conjunct,
                                column: *c,
                                op: flip(*op),
                                values: vec![v],
                            });
                        }
                    }
                    _ => {}
                }
            }
            Expr::InList {
                expr,
                list,
                negated: false,
            } => {
                if let Expr::Column(c) = expr.as_ref() {
                    let values: Option<Vec<Constant>> = list.iter().map(constant).collect();
                    if let Some(values) = values {
                        out.push(Condition {
                            conjunct,
                            column: *c,
                            op: BinaryOp::Eq,
                            values,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A constant compared with a numeric column of `scale` decimals, as the
/// column's scaled integer; `None` where that is not exact.
fn at_scale(v: &Constant, scale: i8) -> Option<Constant> {
    let (value, from) = match v {
        Constant::Int(i) => (i128::from(*i), 0),
        Constant::Decimal(v, s) => (*v, *s),
        _ => return None,
    };
    let scaled = if scale >= from {
        value.checked_mul(10i128.checked_pow((scale - from) as u32)?)?
    } else {
        let divisor = 10i128.checked_pow((from - scale) as u32)?;
        if value % divisor != 0 {
            return None;
        }
        value / divisor
    };
    i64::try_from(scaled).ok().map(Constant::Int)
}

/// Could a block whose values lie in `[min, max]` hold `value op constant`?
fn range_may_match(min: Option<Stat>, max: Option<Stat>, op: BinaryOp, v: &Constant) -> bool {
    let (Some(min), Some(max)) = (min, max) else {
        return false; // no non-null value: no comparison is true
    };
    let as_f = |s: Stat| match s {
        Stat::Int(i) => i as f64,
        Stat::Float(f) => f,
    };
    let (lo, hi, x) = match (min, max, v) {
        (Stat::Int(a), Stat::Int(b), Constant::Int(x)) => {
            return match op {
                BinaryOp::Eq => a <= *x && *x <= b,
                BinaryOp::Lt => a < *x,
                BinaryOp::LtEq => a <= *x,
                BinaryOp::Gt => b > *x,
                BinaryOp::GtEq => b >= *x,
                _ => true,
            }
        }
        (a, b, Constant::Float(x)) => (as_f(a), as_f(b), *x),
        (a, b, Constant::Int(x)) => (as_f(a), as_f(b), *x as f64),
        _ => return true,
    };
    if x.is_nan() || lo.is_nan() || hi.is_nan() {
        return true;
    }
    match op {
        BinaryOp::Eq => lo <= x && x <= hi,
        BinaryOp::Lt => lo < x,
        BinaryOp::LtEq => lo <= x,
        BinaryOp::Gt => hi > x,
        BinaryOp::GtEq => hi >= x,
        _ => true,
    }
}

/// The first position in the sorted dictionary whose entry is not `before`.
fn partition(dict: &arrow::array::StringArray, before: impl Fn(&str) -> bool) -> u32 {
    let (mut lo, mut hi) = (0usize, dict.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if before(dict.value(mid)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo as u32
}

/// The dictionary ids (a range, the dictionary being sorted) of the entries that
/// satisfy `entry op value`.
fn id_range(dict: &arrow::array::StringArray, op: BinaryOp, value: &str) -> std::ops::Range<u32> {
    let lower = partition(dict, |e| e < value);
    let upper = partition(dict, |e| e <= value);
    let len = dict.len() as u32;
    match op {
        BinaryOp::Eq => lower..upper,
        BinaryOp::Lt => 0..lower,
        BinaryOp::LtEq => 0..upper,
        BinaryOp::Gt => upper..len,
        BinaryOp::GtEq => lower..len,
        _ => 0..len,
    }
}

/// The prefix of a LIKE pattern of the form `prefix%` (or the whole pattern if it
/// has no wildcard, marked `false`); `None` for any other pattern.
fn like_prefix(pattern: &str) -> Option<(&str, bool)> {
    let special = |c: char| matches!(c, '%' | '_' | '\\');
    match pattern.strip_suffix('%') {
        Some(prefix) if !prefix.contains(special) => Some((prefix, true)),
        None if !pattern.contains(special) => Some((pattern, false)),
        _ => None,
    }
}

/// Most index entries (integer keys) one condition may read: past it, the
/// scan compares packed codes instead of unioning bitmaps.
const MAX_INDEX_ENTRIES: usize = 64;

/// A bitmap of rows of one sealed segment computed from its inverted indexes:
/// TEXT columns' through their dictionaries, integer columns' through their
/// key directories.
struct IndexSelection<'a> {
    segment: &'a SealedSegment,
    stats: &'a mut ScanStats,
}

impl IndexSelection<'_> {
    fn text_column(&self, e: &Expr) -> Option<usize> {
        let Expr::Column(c) = e else { return None };
        let meta = self.segment.footer().columns.get(*c)?;
        (meta.ty == ColumnType::Text && meta.index.is_some()).then_some(*c)
    }

    /// An integer column with a key directory and index in this segment.
    fn integer_column(&self, e: &Expr) -> Option<usize> {
        let Expr::Column(c) = e else { return None };
        let meta = self.segment.footer().columns.get(*c)?;
        (meta.keys.is_some() && meta.index.is_some()).then_some(*c)
    }

    /// Entries in column `c`'s index: its dictionary's or key directory's.
    fn entries(&self, c: usize) -> Result<u32> {
        Ok(match self.segment.keys(c)? {
            Some(keys) => keys.len() as u32,
            None => self.segment.dictionary(c)?.len() as u32,
        })
    }

    /// The index entries of integer column `c` whose value `v` satisfies
    /// `v op x`, found by binary search of its key directory.
    fn key_range(&self, c: usize, op: BinaryOp, x: i64) -> Result<std::ops::Range<u32>> {
        let Some(keys) = self.segment.keys(c)? else {
            return Ok(0..0);
        };
        let below = keys.partition(|v| v < x) as u32;
        let through = keys.partition(|v| v <= x) as u32;
        let all = keys.len() as u32;
        Ok(match op {
            BinaryOp::Eq => below..through,
            BinaryOp::Lt => 0..below,
            BinaryOp::LtEq => 0..through,
            BinaryOp::Gt => through..all,
            BinaryOp::GtEq => below..all,
            _ => 0..0,
        })
    }

    /// Every row of the segment, as dense bitmap containers: a complement is
    /// then word-wise. (`insert_range` makes run containers, from which roaring
    /// removes a bitmap's rows one at a time: 1.3 ms for `status <> 'X'` over
    /// one segment.)
    fn all_rows(&self) -> RoaringBitmap {
        let rows = self.segment.rows();
        let mut bytes = vec![0xffu8; rows / 8];
        if !rows.is_multiple_of(8) {
            bytes.push((1u8 << (rows % 8)) - 1);
        }
        RoaringBitmap::from_lsb0_bytes(0, &bytes)
    }

    /// The rows whose value of column `c` has a dictionary id in `ids`. A value
    /// too frequent to be indexed has no bitmap; then the rows are worked out as
    /// the complement of every other value's rows, if those are all indexed
    /// (`status <> 'DELIVERED'` reads the few rare values). `None` if neither works.
    fn rows_with_ids(
        &mut self,
        c: usize,
        ids: impl Iterator<Item = u32>,
    ) -> Result<Option<RoaringBitmap>> {
        let ids: Vec<u32> = ids.collect();
        if let Some(rows) = self.union_of(c, ids.iter().copied())? {
            return Ok(Some(rows));
        }
        let entries = self.entries(c)?;
        // The complement pays for a handful of other values (statuses), not
        // for the thousands of a restaurant id: the busiest restaurant, too
        // frequent to index, would read every other restaurant's bitmap.
        if entries as usize > ids.len() + MAX_INDEX_ENTRIES {
            return Ok(None);
        }
        let others = (0..entries).filter(|id| ids.binary_search(id).is_err());
        Ok(match self.union_of(c, others)? {
            Some(others) => Some(self.all_rows() - others - self.segment.nulls(c)?),
            None => None,
        })
    }

    /// The union of the bitmaps of `ids` (sorted), or `None` at the first that
    /// is not indexed.
    fn union_of(
        &mut self,
        c: usize,
        ids: impl Iterator<Item = u32>,
    ) -> Result<Option<RoaringBitmap>> {
        let mut rows = RoaringBitmap::new();
        for id in ids {
            self.stats.index_lookups += 1;
            if let Some(meta) = self.segment.footer().columns.get(c) {
                if !self.stats.indexes_used.contains(&meta.name) {
                    self.stats.indexes_used.push(meta.name.clone());
                }
            }
            match self.segment.rows_with(c, id)? {
                Some(r) => rows |= r,
                None => return Ok(None),
            }
        }
        Ok(Some(rows))
    }

    /// The outcome of a condition on column `c` whose true rows are exactly `rows`:
    /// it is false on the other non-NULL rows, NULL on the NULL ones. Negated
    /// (`<>`, `NOT IN`, `NOT LIKE`) when `negated`; only the sides in `want` are
    /// computed.
    fn leaf(
        &self,
        c: usize,
        rows: Option<RoaringBitmap>,
        negated: bool,
        want: Want,
    ) -> Result<Outcome> {
        let Some(rows) = rows else {
            return Ok(Outcome::UNKNOWN);
        };
        let want_false_rows = if negated {
            want.true_rows
        } else {
            want.false_rows
        };
        let false_rows = if want_false_rows {
            Some(self.all_rows() - &rows - self.segment.nulls(c)?)
        } else {
            None
        };
        let o = Outcome {
            may_be_true: Some(rows),
            may_be_false: false_rows,
        };
        Ok(if negated { o.negated() } else { o })
    }

    /// Which rows `e` may be true on and which it may be false on, from the
    /// indexes (three-valued: a row where `e` is NULL is in neither). Only the
    /// sides in `want` are worked out; the others may be left `None`.
    fn outcome(&mut self, e: &Expr, want: Want) -> Result<Outcome> {
        match e {
            Expr::Binary {
                op: BinaryOp::And, ..
            } if !want.false_rows => Ok(self.selective_and(e, want)?.0),
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                let (a, b) = (self.outcome(left, want)?, self.outcome(right, want)?);
                Ok(Outcome {
                    may_be_true: intersect(a.may_be_true, b.may_be_true),
                    may_be_false: union(a.may_be_false, b.may_be_false),
                })
            }
            Expr::Binary {
                op: BinaryOp::Or,
                left,
                right,
            } => {
                let (a, b) = (self.outcome(left, want)?, self.outcome(right, want)?);
                Ok(Outcome {
                    may_be_true: union(a.may_be_true, b.may_be_true),
                    may_be_false: intersect(a.may_be_false, b.may_be_false),
                })
            }
            Expr::Not(inner) => {
                let o = self.outcome(
                    inner,
                    Want {
                        true_rows: want.false_rows,
                        false_rows: want.true_rows,
                    },
                )?;
                Ok(Outcome {
                    may_be_true: o.may_be_false,
                    may_be_false: o.may_be_true,
                })
            }
            Expr::Binary { op, left, right }
                if self.integer_column(left).is_some() || self.integer_column(right).is_some() =>
            {
                let (c, op, value) = match (self.integer_column(left), self.integer_column(right)) {
                    (Some(c), None) => (c, *op, right.as_ref()),
                    (None, Some(c)) => (c, flip(*op), left.as_ref()),
                    _ => return Ok(Outcome::UNKNOWN),
                };
                let Some(Constant::Int(x)) = constant(value) else {
                    return Ok(Outcome::UNKNOWN);
                };
                match op {
                    BinaryOp::NotEq => {
                        let rows = self.rows_with_ids(c, self.key_range(c, BinaryOp::Eq, x)?)?;
                        self.leaf(c, rows, true, want)
                    }
                    BinaryOp::Eq
                    | BinaryOp::Lt
                    | BinaryOp::LtEq
                    | BinaryOp::Gt
                    | BinaryOp::GtEq => {
                        let ids = self.key_range(c, op, x)?;
                        // A wide range is a union of many bitmaps: the scan's
                        // comparison on packed codes is cheaper.
                        if ids.len() > MAX_INDEX_ENTRIES {
                            return Ok(Outcome::UNKNOWN);
                        }
                        let rows = self.rows_with_ids(c, ids)?;
                        self.leaf(c, rows, false, want)
                    }
                    _ => Ok(Outcome::UNKNOWN),
                }
            }
            Expr::InList {
                expr,
                list,
                negated,
            } if self.integer_column(expr).is_some() => {
                let Some(c) = self.integer_column(expr) else {
                    return Ok(Outcome::UNKNOWN);
                };
                let mut ids: Vec<u32> = Vec::new();
                for item in list {
                    let Some(Constant::Int(x)) = constant(item) else {
                        return Ok(Outcome::UNKNOWN);
                    };
                    ids.extend(self.key_range(c, BinaryOp::Eq, x)?);
                }
                if ids.len() > MAX_INDEX_ENTRIES {
                    return Ok(Outcome::UNKNOWN);
                }
                ids.sort_unstable();
                ids.dedup();
                let rows = self.rows_with_ids(c, ids.into_iter())?;
                self.leaf(c, rows, *negated, want)
            }
            Expr::Binary { op, left, right } => {
                let (c, op, value) = match (self.text_column(left), self.text_column(right)) {
                    (Some(c), None) => (c, *op, right.as_ref()),
                    (None, Some(c)) => (c, flip(*op), left.as_ref()),
                    _ => return Ok(Outcome::UNKNOWN),
                };
                let Some(Constant::Text(v)) = constant(value) else {
                    return Ok(Outcome::UNKNOWN);
                };
                let dict = self.segment.dictionary(c)?;
                match op {
                    BinaryOp::NotEq => {
                        let rows = self.rows_with_ids(c, id_range(&dict, BinaryOp::Eq, &v))?;
                        self.leaf(c, rows, true, want)
                    }
                    BinaryOp::Eq
                    | BinaryOp::Lt
                    | BinaryOp::LtEq
                    | BinaryOp::Gt
                    | BinaryOp::GtEq => {
                        let rows = self.rows_with_ids(c, id_range(&dict, op, &v))?;
                        self.leaf(c, rows, false, want)
                    }
                    _ => Ok(Outcome::UNKNOWN),
                }
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let Some(c) = self.text_column(expr) else {
                    return Ok(Outcome::UNKNOWN);
                };
                let dict = self.segment.dictionary(c)?;
                let mut ids: Vec<u32> = Vec::new();
                for item in list {
                    // A NULL in the list, or anything but a text constant: unknown.
                    let Some(Constant::Text(t)) = constant(item) else {
                        return Ok(Outcome::UNKNOWN);
                    };
                    ids.extend(id_range(&dict, BinaryOp::Eq, &t));
                }
                ids.sort_unstable();
                ids.dedup();
                let rows = self.rows_with_ids(c, ids.into_iter())?;
                self.leaf(c, rows, *negated, want)
            }
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive: false,
            } => {
                let (Some(c), Some(Constant::Text(p))) =
                    (self.text_column(expr), constant(pattern))
                else {
                    return Ok(Outcome::UNKNOWN);
                };
                let Some((prefix, open)) = like_prefix(&p) else {
                    return Ok(Outcome::UNKNOWN);
                };
                let dict = self.segment.dictionary(c)?;
                let ids = if open {
                    partition(&dict, |e| e < prefix)..partition(&dict, |e| {
                        e < prefix || e.starts_with(prefix)
                    })
                } else {
                    id_range(&dict, BinaryOp::Eq, prefix)
                };
                let rows = self.rows_with_ids(c, ids)?;
                self.leaf(c, rows, *negated, want)
            }
            _ => Ok(Outcome::UNKNOWN),
        }
    }
}

impl IndexSelection<'_> {
    /// The rows an AND may be true on, its true side alone wanted. Conjuncts
    /// answered by one lookup of a few values go first, smallest first, and
    /// one whose postings hold [`LOOKUP_PAYS_WITHIN`] times the rows already
    /// selected is left to the filter, which runs on the selected rows anyway:
    /// `restaurant_id = 42 AND status IN (...)` reads the restaurant's few
    /// rows, not the hundreds of thousands of each status. Other conjuncts
    /// (ranges, OR, NOT) are worked out only while the selection is larger
    /// than [`FEW_ROWS`].
    ///
    /// Also returns the conjuncts (positions in `e`'s conjunction) whose rows
    /// the selection holds exactly: lookups of one column's values, which
    /// then hold on every selected row without being evaluated.
    fn selective_and(&mut self, e: &Expr, want: Want) -> Result<(Outcome, Vec<usize>)> {
        let mut parts = Vec::new();
        split_conjunction(e, &mut parts);
        let mut lookups: Vec<(u64, usize, &Expr)> = Vec::new();
        let mut entries = Vec::new();
        let mut others = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            match self.lookup_entries(part)? {
                Some(ids) => {
                    lookups.push((0, i, part));
                    entries.push(ids);
                }
                None => others.push(part),
            }
        }
        // Sizes order several lookups; a single one (the restaurant of a
        // dashboard query) needs no counting, in each of a hundred segments.
        if lookups.len() > 1 {
            for ((rows, _, _), ids) in lookups.iter_mut().zip(&entries) {
                for (c, id) in ids {
                    *rows += self.segment.rows_with_count(*c, *id)?;
                }
            }
            lookups.sort_by_key(|(rows, _, _)| *rows);
        }
        let mut selected: Option<RoaringBitmap> = None;
        let mut answered = Vec::new();
        for (rows, i, part) in lookups {
            if selected
                .as_ref()
                .is_some_and(|s| s.len().saturating_mul(LOOKUP_PAYS_WITHIN) < rows)
            {
                continue;
            }
            let exact = self.outcome(part, want)?.may_be_true;
            if exact.is_some() {
                answered.push(i);
            }
            selected = intersect(selected, exact);
        }
        for part in others {
            if selected.as_ref().is_some_and(|s| s.len() <= FEW_ROWS) {
                break;
            }
            selected = intersect(selected, self.outcome(part, want)?.may_be_true);
        }
        answered.sort_unstable();
        let outcome = Outcome {
            may_be_true: selected,
            may_be_false: None,
        };
        Ok((outcome, answered))
    }

    /// For `column = constant` or `column IN (constants)` on an indexed
    /// column, the index entries (column, id) it reads; `None` for any other
    /// condition.
    fn lookup_entries(&self, e: &Expr) -> Result<Option<Vec<(usize, u32)>>> {
        let (column, values): (&Expr, Vec<&Expr>) = match e {
            Expr::Binary {
                op: BinaryOp::Eq,
                left,
                right,
            } => match (left.as_ref(), right.as_ref()) {
                (c @ Expr::Column(_), v) | (v, c @ Expr::Column(_)) => (c, vec![v]),
                _ => return Ok(None),
            },
            Expr::InList {
                expr,
                list,
                negated: false,
            } => (expr.as_ref(), list.iter().collect()),
            _ => return Ok(None),
        };
        let mut ids = Vec::new();
        if let Some(c) = self.integer_column(column) {
            for v in values {
                let Some(Constant::Int(x)) = constant(v) else {
                    return Ok(None);
                };
                ids.extend(self.key_range(c, BinaryOp::Eq, x)?.map(|id| (c, id)));
            }
        } else if let Some(c) = self.text_column(column) {
            let dict = self.segment.dictionary(c)?;
            for v in values {
                let Some(Constant::Text(t)) = constant(v) else {
                    return Ok(None);
                };
                ids.extend(id_range(&dict, BinaryOp::Eq, &t).map(|id| (c, id)));
            }
        } else {
            return Ok(None);
        }
        Ok(Some(ids))
    }
}

/// A lookup is left to the filter when its postings hold more than this many
/// times the rows already selected (see [`IndexSelection::selective_and`]).
const LOOKUP_PAYS_WITHIN: u64 = 16;

/// A selection this small is not narrowed further by conditions that are not
/// a single lookup: the filter on its rows costs less than working them out.
const FEW_ROWS: u64 = 4096;

/// Which sides of an [`Outcome`] are needed.
#[derive(Clone, Copy)]
struct Want {
    true_rows: bool,
    false_rows: bool,
}

/// What the indexes tell about a condition on one segment: supersets of the rows
/// where it is true and of those where it is false (`None`: any row).
struct Outcome {
    may_be_true: Option<RoaringBitmap>,
    may_be_false: Option<RoaringBitmap>,
}

impl Outcome {
    const UNKNOWN: Outcome = Outcome {
        may_be_true: None,
        may_be_false: None,
    };

    fn negated(self) -> Outcome {
        Outcome {
            may_be_true: self.may_be_false,
            may_be_false: self.may_be_true,
        }
    }
}

fn intersect(a: Option<RoaringBitmap>, b: Option<RoaringBitmap>) -> Option<RoaringBitmap> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a & b),
        (a, None) => a,
        (None, b) => b,
    }
}

fn union(a: Option<RoaringBitmap>, b: Option<RoaringBitmap>) -> Option<RoaringBitmap> {
    Some(a? | b?)
}

/// What to read of one sealed segment.
pub struct SegmentPlan {
    /// Per block: may it hold a matching row?
    pub keep: Vec<bool>,
    /// The rows the inverted indexes selected (a superset of the matching rows),
    /// when the filter has a part they answer.
    pub selection: Option<RoaringBitmap>,
    /// The filter's top-level conjuncts (positions in its conjunction) true
    /// on every row of `selection`, their rows having been looked up
    /// exactly: once the selection is applied, they need no evaluating.
    pub answered: Vec<usize>,
}

/// A scan's filter prepared for pruning: its column-vs-constant conditions are
/// extracted once per scan rather than once per segment (a dashboard query over
/// 100 segments would otherwise spend more time there than reading its block).
pub struct Pruning<'a> {
    filter: Option<&'a Expr>,
    conditions: Vec<Condition>,
}

impl<'a> Pruning<'a> {
    /// Prepares `filter` (over the table's columns).
    pub fn new(filter: Option<&'a Expr>) -> Self {
        Pruning {
            filter,
            conditions: filter.map(conditions).unwrap_or_default(),
        }
    }

    /// Which blocks of `segment` may hold matching rows, and which rows the
    /// indexes select. Updates `stats`.
    pub fn plan(&self, segment: &SealedSegment, stats: &mut ScanStats) -> Result<SegmentPlan> {
        plan_segment(segment, self.filter, &self.conditions, stats)
    }
}

impl Pruning<'_> {
    /// The rows of a finished in-memory block that the filter's equality
    /// conditions (`col = constant`, `col IN (...)`, under AND) can hold, from
    /// the block's equality indexes: ascending row numbers, empty when no row
    /// can match, `None` when no condition has an index (every row is read).
    /// `columns` are the table's, for EXPLAIN ANALYZE.
    ///
    /// The conjuncts the selection answers exactly (see
    /// [`SegmentPlan::answered`]) are added to `answered`.
    pub fn memory_block_rows(
        &self,
        block: &arrow::array::RecordBatch,
        index: &BlockIndex,
        columns: &[sluice_storage::ColumnDef],
        stats: &mut ScanStats,
        answered: &mut Vec<usize>,
    ) -> Option<Vec<u16>> {
        let mut selected: Option<Vec<u16>> = None;
        for cond in self.conditions.iter().filter(|c| c.op == BinaryOp::Eq) {
            let Some(rows) = condition_rows(block, index, cond) else {
                continue;
            };
            answered.push(cond.conjunct);
            stats.index_lookups += cond.values.len();
            if let Some(c) = columns.get(cond.column) {
                if !stats.indexes_used.contains(&c.name) {
                    stats.indexes_used.push(c.name.clone());
                }
            }
            selected = Some(match selected {
                None => rows,
                Some(before) => intersect_sorted(&before, &rows),
            });
        }
        selected
    }
}

/// The block's rows where `cond` (an equality) can hold, ascending; `None`
/// when the index cannot answer one of its values.
fn condition_rows(
    block: &arrow::array::RecordBatch,
    index: &BlockIndex,
    cond: &Condition,
) -> Option<Vec<u16>> {
    let mut rows = Vec::new();
    for value in &cond.values {
        let found = match value {
            Constant::Int(i) => index.rows_equal_to_int(block, cond.column, *i),
            Constant::Text(t) => index.rows_equal_to_text(block, cond.column, t),
            _ => None,
        }?;
        rows.extend_from_slice(found);
    }
    if cond.values.len() > 1 {
        rows.sort_unstable();
        rows.dedup();
    }
    Some(rows)
}

/// The rows in both ascending lists.
fn intersect_sorted(a: &[u16], b: &[u16]) -> Vec<u16> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn plan_segment(
    segment: &SealedSegment,
    filter: Option<&Expr>,
    conds: &[Condition],
    stats: &mut ScanStats,
) -> Result<SegmentPlan> {
    let footer = segment.footer();
    let blocks = footer.columns.first().map_or(0, |c| c.blocks.len());
    stats.segments += 1;
    stats.blocks += blocks;
    let mut keep = vec![true; blocks];
    let Some(filter) = filter else {
        return Ok(SegmentPlan {
            keep,
            selection: None,
            answered: Vec::new(),
        });
    };
    // Zone maps first: they cost nothing, and a segment they rule out needs no
    // index lookup. The whole column's zone map first of all: most segments of
    // a time-filtered query go in one test.
    for cond in conds {
        let Some(meta) = footer.columns.get(cond.column) else {
            continue;
        };
        if meta.ty == ColumnType::Text {
            continue;
        }
        // A numeric column's zone maps hold its scaled integers: constants are
        // compared at the column's scale, and only where that is exact.
        let values: Vec<Constant> = match meta.ty {
            ColumnType::Numeric { scale, .. } => {
                match cond.values.iter().map(|v| at_scale(v, scale)).collect() {
                    Some(v) => v,
                    None => continue,
                }
            }
            _ => cond.values.clone(),
        };
        // Before version 3 a double block of NaN alone had no zone map, which
        // otherwise means no non-NULL value: such a block cannot be ruled out.
        let old_doubles = footer.version < 3 && meta.ty == ColumnType::Double;
        let may = |min: Option<Stat>, max: Option<Stat>| {
            (old_doubles && min.is_none())
                || values.iter().any(|v| range_may_match(min, max, cond.op, v))
        };
        if blocks > 0 && !may(meta.min, meta.max) {
            stats.blocks_pruned_by_zone_maps += keep.iter().filter(|k| **k).count();
            keep.iter_mut().for_each(|k| *k = false);
            break;
        }
        for (b, k) in keep.iter_mut().enumerate() {
            if !*k {
                continue;
            }
            let block = &meta.blocks[b];
            if !may(block.min, block.max) {
                *k = false;
                stats.blocks_pruned_by_zone_maps += 1;
            }
        }
    }
    for cond in conds.iter().filter(|c| c.op == BinaryOp::Eq) {
        if let Some(meta) = footer.columns.get(cond.column) {
            if meta.index.is_none() && !stats.unindexed_columns.contains(&meta.name) {
                stats.unindexed_columns.push(meta.name.clone());
            }
        }
    }
    let mut selection = None;
    let mut answered = Vec::new();
    if keep.contains(&true) {
        let mut index = IndexSelection {
            segment,
            stats: &mut *stats,
        };
        let want = Want {
            true_rows: true,
            false_rows: false,
        };
        let (outcome, exact) = index.selective_and(filter, want)?;
        if let Some(rows) = outcome.may_be_true {
            answered = exact;
            let mut start = 0u32;
            let block_rows = footer.columns.first().map(|c| &c.blocks);
            for (b, k) in keep.iter_mut().enumerate() {
                let n = block_rows.map_or(0, |br| br[b].rows);
                if *k && rows.range_cardinality(start..start + n) == 0 {
                    *k = false;
                    stats.blocks_pruned_by_index += 1;
                }
                start += n;
            }
            selection = Some(rows);
        }
    }
    if blocks > 0 && keep.iter().all(|k| !k) {
        stats.segments_pruned += 1;
    }
    if blocks > 0 && selection.is_none() && keep.iter().all(|k| *k) {
        stats.segments_scanned_whole += 1;
    }
    Ok(SegmentPlan {
        keep,
        selection,
        answered,
    })
}
