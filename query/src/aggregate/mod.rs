//! Hash aggregation: a [`GroupTable`] maps rows to groups, one grouped accumulator per
//! aggregate folds values in. The same [`Aggregator`] runs per segment block in the
//! parallel scan and above any other plan node; partial aggregators merge.

pub mod accumulators;
pub mod hll;
pub mod keys;
pub mod tdigest;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};

use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::logical::AggregateExpr;
use accumulators::{new_accumulator, GroupAccumulator};
use keys::GroupTable;

/// What one aggregate needs to build its accumulator.
#[derive(Clone, Debug)]
pub struct AggregateSpec {
    /// The call.
    pub expr: AggregateExpr,
    /// The argument's type (plain, not dictionary).
    pub arg_type: Option<DataType>,
}

/// A hash aggregation in progress.
pub struct Aggregator {
    group_types: Vec<DataType>,
    specs: Vec<AggregateSpec>,
    groups: GroupTable,
    accumulators: Vec<Box<dyn GroupAccumulator>>,
    group_ids: Vec<u32>,
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
        Ok(Aggregator {
            groups: GroupTable::new(&group_types),
            group_types,
            specs,
            accumulators,
            group_ids: Vec::new(),
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
        }
        let n = self.groups.len();
        for (acc, arg) in self.accumulators.iter_mut().zip(args) {
            acc.update(&ids, n, arg.as_ref())?;
        }
        self.group_ids = ids;
        self.account()
    }

    fn size(&self) -> usize {
        self.groups.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
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
        if other_groups == 0 {
            return Ok(());
        }
        let mut mapping = Vec::new();
        if self.group_types.is_empty() {
            if self.groups.is_empty() {
                self.groups.intern(&[], 1, &mut Vec::new())?;
            }
            mapping.resize(other_groups, 0);
        } else {
            self.groups.intern_groups_of(&other.groups, &mut mapping)?;
        }
        let n = self.groups.len();
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
        if self.group_types.is_empty() && self.groups.is_empty() {
            self.groups.intern(&[], 1, &mut Vec::new())?;
        }
        let n = self.groups.len();
        let mut columns = self.groups.key_arrays()?;
        for acc in self.accumulators.iter_mut() {
            columns.push(acc.finish(n)?);
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
        RecordBatch::try_new(schema, columns)
            .map_err(|e| Error::Internal(format!("aggregate output: {e}")))
    }
}
