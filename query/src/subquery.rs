//! Subqueries used as values: scalar, EXISTS and IN. An uncorrelated subquery runs
//! once per batch; a correlated one (reading the enclosing row through
//! [`Expr::OuterColumn`]) runs once per row with that row's values bound in. That
//! is a nested loop, which suits the small catalog queries BI tools send; large
//! correlated subqueries should be written as joins.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::concat;
use arrow::datatypes::DataType;

use crate::aggregate::keys::{fixed_state, KeyColumn};
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::eval::{decode_dictionary, ColumnarValue};
use crate::exec::execute;
use crate::logical::{Expr, LogicalPlan, SubqueryKind};

fn first_type(plan: &LogicalPlan) -> DataType {
    plan.schema()
        .fields
        .first()
        .map_or(DataType::Null, |f| f.data_type.clone())
}

/// Evaluates a subquery expression over `batch`.
pub fn evaluate(
    kind: &SubqueryKind,
    plan: &LogicalPlan,
    batch: &RecordBatch,
    ctx: &QueryContext,
) -> Result<ColumnarValue> {
    if !plan.is_correlated() {
        let key = plan as *const LogicalPlan as usize;
        let values = ctx.subquery_value(key, || first_column(plan, ctx))?;
        return Ok(match kind {
            SubqueryKind::Scalar => ColumnarValue::Scalar(scalar(&values, plan)?),
            SubqueryKind::Array => ColumnarValue::Scalar(array_of(&values, plan)?),
            SubqueryKind::Exists { negated } => {
                ColumnarValue::Scalar(Arc::new(BooleanArray::from(vec![
                    values.is_empty() == *negated,
                ])))
            }
            SubqueryKind::In { expr, negated } => {
                let probe = crate::eval::evaluate(expr, batch, ctx)?;
                ColumnarValue::Array(Arc::new(in_set(&probe, &values, *negated)?))
            }
        });
    }
    let probe = match kind {
        SubqueryKind::In { expr, .. } => Some(crate::eval::evaluate(expr, batch, ctx)?),
        _ => None,
    };
    let mut per_row: Vec<ArrayRef> = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        ctx.check()?;
        let bound = bind_row(plan, batch, row)?;
        let values = first_column(&bound, ctx)?;
        per_row.push(match kind {
            SubqueryKind::Scalar => scalar(&values, plan)?,
            SubqueryKind::Array => array_of(&values, plan)?,
            SubqueryKind::Exists { negated } => {
                Arc::new(BooleanArray::from(vec![values.is_empty() == *negated]))
            }
            SubqueryKind::In { negated, .. } => {
                let probe = probe
                    .as_ref()
                    .map(|p| p.slice(row, 1))
                    .ok_or_else(|| Error::Internal("IN without its value".into()))?;
                Arc::new(in_set(&probe, &values, *negated)?)
            }
        });
    }
    if per_row.is_empty() {
        let dt = match kind {
            SubqueryKind::Scalar => first_type(plan),
            SubqueryKind::Array => array_type(plan),
            _ => DataType::Boolean,
        };
        return Ok(ColumnarValue::Array(arrow::array::new_empty_array(&dt)));
    }
    let parts: Vec<&dyn Array> = per_row.iter().map(|a| a.as_ref()).collect();
    Ok(ColumnarValue::Array(concat(&parts)?))
}

/// The plan with every outer reference replaced by the value in `row` of `batch`.
fn bind_row(plan: &LogicalPlan, batch: &RecordBatch, row: usize) -> Result<LogicalPlan> {
    let missing = std::cell::Cell::new(false);
    let bound = plan.map_exprs(&|e| {
        e.transform(&mut |x| match x {
            Expr::OuterColumn { index, .. } => match batch.columns().get(*index) {
                Some(c) => decode_dictionary(c)
                    .ok()
                    .map(|c| Expr::literal(c.slice(row, 1))),
                None => {
                    missing.set(true);
                    None
                }
            },
            _ => None,
        })
    });
    if missing.get() {
        return Err(Error::Internal("outer column out of range".into()));
    }
    Ok(bound)
}

fn first_column(plan: &LogicalPlan, ctx: &QueryContext) -> Result<ArrayRef> {
    let batches = execute(plan, ctx)?;
    let columns: Vec<ArrayRef> = batches
        .iter()
        .filter_map(|b| b.columns().first().cloned())
        .collect();
    if columns.is_empty() {
        return Ok(arrow::array::new_empty_array(&first_type(plan)));
    }
    let parts: Vec<&dyn Array> = columns.iter().map(|a| a.as_ref()).collect();
    Ok(concat(&parts)?)
}

/// The type of `ARRAY(plan)`: an array of its column's type.
pub fn array_type(plan: &LogicalPlan) -> DataType {
    crate::array::list_type(&match first_type(plan) {
        DataType::Dictionary(_, v) => *v,
        DataType::Null => DataType::Utf8,
        t => t,
    })
}

/// `ARRAY(subquery)`: one array of every value the subquery returned.
fn array_of(values: &ArrayRef, plan: &LogicalPlan) -> Result<ArrayRef> {
    let element = crate::array::element_type(&array_type(plan))
        .cloned()
        .unwrap_or(DataType::Utf8);
    let values = crate::cast::cast_array(values, &element, sluice_storage::zone::Zone::UTC)?;
    Ok(Arc::new(arrow::array::ListArray::try_new(
        Arc::new(arrow::datatypes::Field::new("item", element, true)),
        arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
        values,
        None,
    )?))
}

fn scalar(values: &ArrayRef, plan: &LogicalPlan) -> Result<ArrayRef> {
    match values.len() {
        0 => Ok(arrow::array::new_null_array(&first_type(plan), 1)),
        1 => Ok(Arc::clone(values)),
        _ => Err(Error::CardinalityViolation),
    }
}

/// `probe [NOT] IN (values)` with SQL's NULL rules: a match is true; otherwise a NULL
/// probe or a NULL among the values makes the answer NULL; an empty set is false.
fn in_set(probe: &ArrayRef, values: &ArrayRef, negated: bool) -> Result<BooleanArray> {
    let probe = decode_dictionary(probe)?;
    let values = if values.data_type() == probe.data_type() {
        Arc::clone(values)
    } else {
        crate::cast::cast_array(values, probe.data_type(), sluice_storage::zone::Zone::UTC)?
    };
    let mut keys = KeyColumn::new(probe.data_type().clone());
    let mut codes = Vec::new();
    keys.encode(&values, &mut codes)?;
    let has_null = codes.iter().any(Option::is_none);
    let empty = codes.is_empty();
    let mut set: HashSet<u64, ahash::RandomState> = HashSet::with_hasher(fixed_state());
    set.extend(codes.iter().flatten().copied());
    keys.encode(&probe, &mut codes)?;
    Ok(codes
        .iter()
        .map(|c| {
            if empty {
                return Some(negated);
            }
            match c {
                Some(c) if set.contains(c) => Some(!negated),
                _ if has_null || c.is_none() => None,
                _ => Some(negated),
            }
        })
        .collect())
}
