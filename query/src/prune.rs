//! Block pruning for sealed segments: before any column data is decoded, each
//! conjunct of a scan's filter that compares a column with constants is checked
//! against the segment's and each block's zone maps (min/max, which include the
//! time range), and `=`/`IN` on a TEXT column against the inverted index. A block
//! is skipped only if it cannot hold a matching row; the filter still runs on the
//! blocks that remain, so pruning never changes an answer.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use roaring::RoaringBitmap;
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
    /// Rows that passed the scan's filter.
    pub rows_selected: usize,
}

/// A constant a column is compared with.
#[derive(Clone, Debug)]
enum Constant {
    Int(i64),
    Float(f64),
    Text(String),
}

/// `column op constant`, with the column on the left.
struct Condition {
    column: usize,
    op: BinaryOp,
    values: Vec<Constant>,
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
        _ => return None,
    })
}

fn flip(op: BinaryOp) -> BinaryOp {
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
    for p in parts {
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
                                column: *c,
                                op: *op,
                                values: vec![v],
                            });
                        }
                    }
                    (other, Expr::Column(c)) => {
                        if let Some(v) = constant(other) {
                            out.push(Condition {
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

/// The id of `value` in a sorted dictionary, if present.
fn dictionary_position(dict: &arrow::array::StringArray, value: &str) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, dict.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        match dict.value(mid).cmp(value) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(mid),
        }
    }
    None
}

/// Which blocks of `segment` may hold rows matching `filter` (columns are table
/// positions). Updates `stats`.
pub fn blocks_to_read(
    segment: &SealedSegment,
    filter: Option<&Expr>,
    stats: &mut ScanStats,
) -> Result<Vec<bool>> {
    let footer = segment.footer();
    let blocks = footer.columns.first().map_or(0, |c| c.blocks.len());
    stats.segments += 1;
    stats.blocks += blocks;
    let mut keep = vec![true; blocks];
    let Some(filter) = filter else {
        return Ok(keep);
    };
    let starts: Vec<u32> = footer
        .columns
        .first()
        .map(|c| {
            c.blocks
                .iter()
                .scan(0u32, |acc, b| {
                    let s = *acc;
                    *acc += b.rows;
                    Some(s)
                })
                .collect()
        })
        .unwrap_or_default();
    // Zone maps first: they cost nothing, and a segment they rule out needs no
    // index lookup.
    let mut conds = conditions(filter);
    conds.sort_by_key(|c| {
        footer
            .columns
            .get(c.column)
            .is_some_and(|m| m.ty == ColumnType::Text)
    });
    for cond in conds {
        let Some(meta) = footer.columns.get(cond.column) else {
            continue;
        };
        if meta.ty == ColumnType::Text {
            if cond.op != BinaryOp::Eq || !keep.contains(&true) {
                continue;
            }
            // =/IN on TEXT: the inverted index says exactly which rows hold the values.
            let dict = segment.dictionary(cond.column)?;
            let mut rows = RoaringBitmap::new();
            for v in &cond.values {
                let Constant::Text(t) = v else { continue };
                if let Some(id) = dictionary_position(&dict, t) {
                    stats.index_lookups += 1;
                    rows |= segment.rows_with(cond.column, id as u32)?;
                }
            }
            for (b, k) in keep.iter_mut().enumerate() {
                if !*k {
                    continue;
                }
                let start = starts[b];
                let end = start + meta.blocks[b].rows;
                if rows.range_cardinality(start..end) == 0 {
                    *k = false;
                    stats.blocks_pruned_by_index += 1;
                }
            }
            continue;
        }
        for (b, k) in keep.iter_mut().enumerate() {
            if !*k {
                continue;
            }
            let block = &meta.blocks[b];
            let may = cond
                .values
                .iter()
                .any(|v| range_may_match(block.min, block.max, cond.op, v));
            if !may {
                *k = false;
                stats.blocks_pruned_by_zone_maps += 1;
            }
        }
    }
    if blocks > 0 && keep.iter().all(|k| !k) {
        stats.segments_pruned += 1;
    }
    Ok(keep)
}
