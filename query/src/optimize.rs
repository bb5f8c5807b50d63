//! The planner step between binding and execution. The binder builds a plan
//! that says what the query means; this step rewrites it into one that reads
//! as little as possible, whatever shape the SQL had (a subquery in FROM, a
//! CTE, a join, a BI tool's `SELECT * FROM (...) AS virtual_table`):
//!
//! 1. **Constants folded**: every expression without columns (`now() -
//!    interval '1 hour'`, `current_date`, `'2026-11-20'::date + 1`) becomes a
//!    literal, once per statement, so the segments' zone maps can prune with it.
//! 2. **Filters pushed down** through projections, sorts, aggregates (on their
//!    group keys), joins (to the side they read) and UNION ALL, into the table
//!    scan, where zone maps and inverted indexes use them.
//! 3. **Columns pruned**: each scan reads only the columns some operator above
//!    it uses.
//! 4. **Limits pushed down** through projections into the scan, which then
//!    stops starting blocks once it has enough rows.
//!
//! The executor then has one shape to recognise for its fast paths: a scan
//! (with its filter), alone or under an aggregate.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};

use sluice_storage::zone::Zone;

use crate::context::QueryContext;
use crate::eval::evaluate;
use crate::exec::one_row_batch;
use crate::logical::{
    BinaryOp, Expr, LogicalPlan, PlanSchema, SubqueryKind, SubqueryPlan, TableSource,
};

/// The plan rewritten to read less; its output columns and results are the
/// same as `plan`'s.
pub fn optimize(plan: LogicalPlan, ctx: &QueryContext) -> LogicalPlan {
    let plan = plan.map_exprs(&|e| fold_constants(e, ctx));
    let plan = push_filters(plan, Vec::new());
    let plan = compare_stored_times(plan, ctx.options().zone);
    let all: BTreeSet<usize> = (0..plan.schema().fields.len()).collect();
    let (plan, _) = prune_columns(plan, &all);
    push_limit(plan, None)
}

/// The steps of [`optimize`] that need no values (2 to 4), for a generic
/// plan whose changing values are still [`Expr::Slot`]s.
pub(crate) fn optimize_generic(plan: LogicalPlan) -> LogicalPlan {
    let plan = push_filters(plan, Vec::new());
    let all: BTreeSet<usize> = (0..plan.schema().fields.len()).collect();
    let (plan, _) = prune_columns(plan, &all);
    push_limit(plan, None)
}

/// The steps of [`optimize`] that need values, for one execution of a
/// generic plan whose slots now hold literals: constants folded, and stored
/// times compared as the scan can prune with.
pub(crate) fn optimize_values(plan: LogicalPlan, ctx: &QueryContext) -> LogicalPlan {
    let plan = plan.map_exprs(&|e| fold_constants(e, ctx));
    compare_stored_times(plan, ctx.options().zone)
}

// ---- 1. constants ----

/// `e` with each largest constant sub-expression replaced by its value, and
/// each subquery's plan optimized in turn.
fn fold_constants(e: &Expr, ctx: &QueryContext) -> Expr {
    e.transform(&mut |x| match x {
        Expr::Column(_) | Expr::Literal(_) | Expr::OuterColumn { .. } | Expr::Slot { .. } => None,
        Expr::Subquery { kind, plan } => Some(Expr::Subquery {
            kind: match kind {
                SubqueryKind::In { expr, negated } => SubqueryKind::In {
                    expr: Box::new(fold_constants(expr, ctx)),
                    negated: *negated,
                },
                other => other.clone(),
            },
            plan: SubqueryPlan(Arc::new(optimize(plan.0.as_ref().clone(), ctx))),
        }),
        _ if is_constant(x) => evaluate_constant(x, ctx),
        _ => None,
    })
}

/// True if `e` has the same value for every row: no column, outer reference,
/// subquery, aggregate, window or parameter still to be bound. (`now()` is the
/// statement's start, bound as a literal; the functions that act on sessions,
/// `pg_cancel_backend` and `pg_terminate_backend`, run when executed, never
/// while a plan is made, EXPLAIN's included.)
fn is_constant(e: &Expr) -> bool {
    use crate::logical::{CatalogFunction as C, ScalarFunction as F};
    let mut constant = true;
    e.walk(&mut |x| {
        constant &= match x {
            Expr::Column(_)
            | Expr::OuterColumn { .. }
            | Expr::Slot { .. }
            | Expr::Subquery { .. }
            | Expr::Aggregate(_)
            | Expr::Window(_) => false,
            Expr::Function {
                func: F::Catalog(C::CancelBackend | C::TerminateBackend),
                ..
            } => false,
            Expr::Literal(l) => l.param.is_none(),
            _ => true,
        }
    });
    constant
}

/// The value of a constant expression as a literal of the same type, or
/// `None` to leave it as it is: an error (`1/0` in a CASE branch no row
/// reaches) must only surface if the expression is really evaluated.
fn evaluate_constant(e: &Expr, ctx: &QueryContext) -> Option<Expr> {
    let value = evaluate(e, &one_row_batch().ok()?, ctx).ok()?;
    let expected = e.data_type(&PlanSchema::default());
    (value.len() == 1 && *value.data_type() == expected).then(|| Expr::literal(value))
}

// ---- 2. filters ----

/// The conjuncts of `e` (`a AND b AND c` -> `[a, b, c]`), in order.
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        other => out.push(other),
    }
}

/// The conjunction of `parts`, `None` if there are none.
pub(crate) fn and_all(parts: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    parts.into_iter().reduce(|a, b| Expr::Binary {
        op: BinaryOp::And,
        left: Box::new(a),
        right: Box::new(b),
    })
}

/// `plan` under a filter of `conjuncts`, if there are any.
fn filtered(plan: LogicalPlan, conjuncts: Vec<Expr>) -> LogicalPlan {
    match and_all(conjuncts) {
        Some(predicate) => LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        },
        None => plan,
    }
}

/// `plan` with `above` (conjuncts over its output, to be applied in order after
/// its own) placed as far down as they can go.
fn push_filters(plan: LogicalPlan, above: Vec<Expr>) -> LogicalPlan {
    match plan {
        LogicalPlan::Filter { input, predicate } => {
            let mut all = Vec::new();
            conjuncts(predicate, &mut all);
            all.extend(above);
            // A subquery may read the enclosing row by position: it stays where
            // the binder put it, over the input it was bound to.
            let (stay, down): (Vec<Expr>, Vec<Expr>) =
                all.into_iter().partition(Expr::has_subquery);
            filtered(push_filters(*input, down), stay)
        }
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let (down, stay): (Vec<Expr>, Vec<Expr>) = above.into_iter().partition(|c| {
                c.columns()
                    .iter()
                    .all(|i| exprs.get(*i).is_some_and(|e| !e.has_subquery()))
            });
            let down = down
                .iter()
                .map(|c| substitute(c, &exprs))
                .collect::<Vec<_>>();
            let project = LogicalPlan::Project {
                input: Box::new(push_filters(*input, down)),
                exprs,
                schema,
            };
            filtered(project, stay)
        }
        LogicalPlan::Scan {
            source,
            schema,
            projection,
            filter,
            limit: None,
        } => {
            let mut parts = Vec::new();
            if let Some(f) = filter {
                conjuncts(f, &mut parts);
            }
            parts.extend(
                above
                    .iter()
                    .map(|c| c.remap_columns(&|i| projection.get(i).copied().unwrap_or(i))),
            );
            LogicalPlan::Scan {
                source,
                schema,
                projection,
                filter: and_all(parts),
                limit: None,
            }
        }
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            schema,
        } => {
            // A condition on group keys alone holds for all of a group's rows or
            // none: it can filter rows before grouping. (One without columns
            // cannot: `HAVING false` over no groups still drops the one row.)
            let (down, stay): (Vec<Expr>, Vec<Expr>) = above.into_iter().partition(|c| {
                let cols = c.columns();
                !cols.is_empty()
                    && cols
                        .iter()
                        .all(|i| group.get(*i).is_some_and(|g| !g.has_subquery()))
            });
            let down = down.iter().map(|c| substitute(c, &group)).collect();
            let aggregate = LogicalPlan::Aggregate {
                input: Box::new(push_filters(*input, down)),
                group,
                aggregates,
                schema,
            };
            filtered(aggregate, stay)
        }
        LogicalPlan::Sort {
            input,
            keys,
            fetch: None,
        } => LogicalPlan::Sort {
            input: Box::new(push_filters(*input, above)),
            keys,
            fetch: None,
        },
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            schema,
        } => {
            let width = left.schema().fields.len();
            let (mut to_left, mut to_right, mut stay) = (Vec::new(), Vec::new(), Vec::new());
            for c in above {
                let cols = c.columns();
                let preserves_left = kind != crate::logical::JoinKind::Full;
                if !cols.is_empty() && cols.iter().all(|i| *i < width) && preserves_left {
                    to_left.push(c);
                } else if !cols.is_empty()
                    && cols.iter().all(|i| *i >= width)
                    && kind == crate::logical::JoinKind::Inner
                {
                    // Under a left join the right side's NULL-extended rows
                    // are made above the join: the condition stays there.
                    to_right.push(c.remap_columns(&|i| i - width));
                } else {
                    stay.push(c);
                }
            }
            let join = LogicalPlan::Join {
                left: Box::new(push_filters(*left, to_left)),
                right: Box::new(push_filters(*right, to_right)),
                kind,
                on,
                filter,
                schema,
            };
            filtered(join, stay)
        }
        LogicalPlan::Union { inputs, schema } => {
            // Each input's columns must already have the union's types for the
            // condition to mean the same on them.
            let same_types = inputs.iter().all(|p| {
                p.schema()
                    .fields
                    .iter()
                    .zip(&schema.fields)
                    .all(|(a, b)| a.data_type == b.data_type)
            });
            if same_types {
                let inputs = inputs
                    .into_iter()
                    .map(|p| push_filters(p, above.clone()))
                    .collect();
                LogicalPlan::Union { inputs, schema }
            } else {
                let inputs = inputs
                    .into_iter()
                    .map(|p| push_filters(p, Vec::new()))
                    .collect();
                filtered(LogicalPlan::Union { inputs, schema }, above)
            }
        }
        // A limit, a top-N sort and a window see every row of their input: a
        // condition above them cannot go below. Leaves keep it above too.
        other => filtered(
            other.map_inputs(&mut |p| push_filters(p, Vec::new())),
            above,
        ),
    }
}

/// `plan` with each scan filter's comparisons of a TIMESTAMP column, made a
/// TIMESTAMPTZ to meet a TIMESTAMPTZ constant (`ts > now() - interval '1
/// hour'`), joined by comparisons of the column itself with the constant in
/// the session's local time, which a segment's zone map can check.
///
/// In a zone with a fixed offset the cast only shifts, so the second
/// comparison replaces the first. In a named zone, local time is a
/// non-decreasing function of the instant whose offset changes by less than
/// a day, so the column compared with the local constant widened by a day is
/// implied by the original comparison, which stays for the exact answer.
fn compare_stored_times(plan: LogicalPlan, zone: Zone) -> LogicalPlan {
    match plan {
        LogicalPlan::Scan {
            source,
            schema,
            projection,
            filter: Some(filter),
            limit,
        } => {
            let columns = source.full_schema();
            let filter = filter.transform(&mut |e| {
                let Expr::Binary { op, left, right } = e else {
                    return None;
                };
                if !op.is_comparison() {
                    return None;
                }
                let (cast, constant, op) = match (left.as_ref(), right.as_ref()) {
                    (c @ Expr::Cast { .. }, Expr::Literal(l)) => (c, l, *op),
                    (Expr::Literal(l), c @ Expr::Cast { .. }) => (c, l, op.flipped()?),
                    _ => return None,
                };
                let Expr::Cast { expr, to } = cast else {
                    return None;
                };
                let Expr::Column(i) = expr.as_ref() else {
                    return None;
                };
                let from = &columns.fields.get(*i)?.data_type;
                let (DataType::Timestamp(unit, None), DataType::Timestamp(_, Some(_))) = (from, to)
                else {
                    return None;
                };
                if constant.value.data_type() != to || constant.is_null() {
                    return None;
                }
                let instant = constant
                    .value
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(0);
                debug_assert_eq!(*unit, TimeUnit::Microsecond);
                let local = zone.to_local(instant);
                let compare = |op: BinaryOp, micros: i64| {
                    let value: ArrayRef = Arc::new(
                        TimestampMicrosecondArray::from(vec![micros])
                            .with_timezone_opt(None::<&str>),
                    );
                    Expr::Binary {
                        op,
                        left: Box::new(Expr::Column(*i)),
                        right: Box::new(Expr::literal(value)),
                    }
                };
                if zone.fixed_offset().is_some() {
                    return Some(compare(op, local));
                }
                let day = 86_400_000_000i64;
                let bounds = match op {
                    BinaryOp::Gt | BinaryOp::GtEq => vec![compare(BinaryOp::GtEq, local - day)],
                    BinaryOp::Lt | BinaryOp::LtEq => vec![compare(BinaryOp::LtEq, local + day)],
                    BinaryOp::Eq | BinaryOp::IsNotDistinctFrom => vec![
                        compare(BinaryOp::GtEq, local - day),
                        compare(BinaryOp::LtEq, local + day),
                    ],
                    _ => return None,
                };
                and_all(bounds.into_iter().chain([e.clone()]))
            });
            LogicalPlan::Scan {
                source,
                schema,
                projection,
                filter: Some(filter),
                limit,
            }
        }
        other => other.map_inputs(&mut |p| compare_stored_times(p, zone)),
    }
}

/// `c` (over a node's output) rewritten over its input, where output column
/// `i` is `exprs[i]`.
fn substitute(c: &Expr, exprs: &[Expr]) -> Expr {
    c.transform(&mut |x| match x {
        Expr::Column(i) => exprs.get(*i).cloned(),
        _ => None,
    })
}

// ---- 3. columns ----

/// Marks a dropped column in a position map.
const DROPPED: usize = usize::MAX;

/// The old-to-new position map of a node that keeps the columns `kept` (sorted)
/// of `width`.
fn positions(width: usize, kept: &[usize]) -> Vec<usize> {
    let mut map = vec![DROPPED; width];
    for (new, old) in kept.iter().enumerate() {
        map[*old] = new;
    }
    map
}

fn remap(e: &Expr, map: &[usize]) -> Expr {
    e.remap_columns(&|i| map.get(i).copied().unwrap_or(DROPPED))
}

fn columns_of<'a>(exprs: impl IntoIterator<Item = &'a Expr>, into: &mut BTreeSet<usize>) {
    for e in exprs {
        into.extend(e.columns());
    }
}

/// `plan` producing at least the `required` columns of its output, and the
/// map from its old output positions to its new ones ([`DROPPED`] for columns
/// no longer produced). With every column required the output is unchanged.
fn prune_columns(plan: LogicalPlan, required: &BTreeSet<usize>) -> (LogicalPlan, Vec<usize>) {
    let width = plan.schema().fields.len();
    let identity: Vec<usize> = (0..width).collect();
    let all_of = |p: &LogicalPlan| (0..p.schema().fields.len()).collect::<BTreeSet<usize>>();
    match plan {
        LogicalPlan::Scan {
            source,
            schema,
            projection,
            filter,
            limit,
        } => {
            let kept: Vec<usize> = required.iter().copied().filter(|i| *i < width).collect();
            let scan = LogicalPlan::Scan {
                source,
                schema: PlanSchema {
                    fields: kept.iter().map(|i| schema.fields[*i].clone()).collect(),
                },
                projection: kept.iter().map(|i| projection[*i]).collect(),
                filter,
                limit,
            };
            (scan, positions(width, &kept))
        }
        LogicalPlan::Filter { input, predicate } => {
            let need = if predicate.has_correlated_subquery() {
                all_of(&input)
            } else {
                let mut need = required.clone();
                need.extend(predicate.columns());
                need
            };
            let (input, map) = prune_columns(*input, &need);
            let predicate = remap(&predicate, &map);
            (
                LogicalPlan::Filter {
                    input: Box::new(input),
                    predicate,
                },
                map,
            )
        }
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let kept: Vec<usize> = required.iter().copied().filter(|i| *i < width).collect();
            let need = if kept.iter().any(|i| exprs[*i].has_correlated_subquery()) {
                all_of(&input)
            } else {
                let mut need = BTreeSet::new();
                columns_of(kept.iter().map(|i| &exprs[*i]), &mut need);
                need
            };
            let (input, map) = prune_columns(*input, &need);
            let project = LogicalPlan::Project {
                input: Box::new(input),
                exprs: kept.iter().map(|i| remap(&exprs[*i], &map)).collect(),
                schema: PlanSchema {
                    fields: kept.iter().map(|i| schema.fields[*i].clone()).collect(),
                },
            };
            (project, positions(width, &kept))
        }
        LogicalPlan::Aggregate {
            input,
            group,
            aggregates,
            schema,
        } => {
            let args: Vec<&Expr> = aggregates.iter().filter_map(|a| a.arg.as_ref()).collect();
            let need = if group
                .iter()
                .chain(args.iter().copied())
                .any(Expr::has_correlated_subquery)
            {
                all_of(&input)
            } else {
                let mut need = BTreeSet::new();
                columns_of(group.iter().chain(args), &mut need);
                need
            };
            let (input, map) = prune_columns(*input, &need);
            let aggregate = LogicalPlan::Aggregate {
                input: Box::new(input),
                group: group.iter().map(|g| remap(g, &map)).collect(),
                aggregates: aggregates
                    .iter()
                    .map(|a| {
                        let mut a = a.clone();
                        a.arg = a.arg.as_ref().map(|e| remap(e, &map));
                        a
                    })
                    .collect(),
                schema,
            };
            (aggregate, identity)
        }
        LogicalPlan::Sort { input, keys, fetch } => {
            let need = if keys.iter().any(|k| k.expr.has_correlated_subquery()) {
                all_of(&input)
            } else {
                let mut need = required.clone();
                columns_of(keys.iter().map(|k| &k.expr), &mut need);
                need
            };
            let (input, map) = prune_columns(*input, &need);
            let keys = keys
                .into_iter()
                .map(|mut k| {
                    k.expr = remap(&k.expr, &map);
                    k
                })
                .collect();
            let sort = LogicalPlan::Sort {
                input: Box::new(input),
                keys,
                fetch,
            };
            (sort, map)
        }
        LogicalPlan::Limit { input, skip, fetch } => {
            let (input, map) = prune_columns(*input, required);
            let limit = LogicalPlan::Limit {
                input: Box::new(input),
                skip,
                fetch,
            };
            (limit, map)
        }
        LogicalPlan::Join {
            left,
            right,
            kind,
            on,
            filter,
            schema,
        } => prune_join(*left, *right, kind, on, filter, schema, required),
        LogicalPlan::Window {
            input,
            windows,
            schema,
        } => {
            let input_width = input.schema().fields.len();
            let as_exprs: Vec<Expr> = windows
                .iter()
                .map(|w| Expr::Window(Box::new(w.clone())))
                .collect();
            let need = if as_exprs.iter().any(Expr::has_correlated_subquery) {
                all_of(&input)
            } else {
                let mut need: BTreeSet<usize> = required
                    .iter()
                    .copied()
                    .filter(|i| *i < input_width)
                    .collect();
                columns_of(&as_exprs, &mut need);
                need
            };
            let (input, map) = prune_columns(*input, &need);
            let new_width = input.schema().fields.len();
            let mut fields = input.schema().fields.clone();
            fields.extend(schema.fields[input_width..].iter().cloned());
            let windows = windows
                .iter()
                .map(|w| w.map(&mut |e| remap(e, &map)))
                .collect();
            let out_map = (0..width)
                .map(|i| {
                    if i < input_width {
                        map[i]
                    } else {
                        new_width + (i - input_width)
                    }
                })
                .collect();
            let window = LogicalPlan::Window {
                input: Box::new(input),
                windows,
                schema: PlanSchema { fields },
            };
            (window, out_map)
        }
        // UNION ALL lines its inputs up by position: each keeps every column.
        other => {
            let plan = other.map_inputs(&mut |p| {
                let all = all_of(&p);
                prune_columns(p, &all).0
            });
            (plan, identity)
        }
    }
}

fn prune_join(
    left: LogicalPlan,
    right: LogicalPlan,
    kind: crate::logical::JoinKind,
    on: Vec<(Expr, Expr)>,
    filter: Option<Expr>,
    schema: PlanSchema,
    required: &BTreeSet<usize>,
) -> (LogicalPlan, Vec<usize>) {
    let left_width = left.schema().fields.len();
    let width = schema.fields.len();
    let correlated = on
        .iter()
        .flat_map(|(l, r)| [l, r])
        .chain(filter.as_ref())
        .any(Expr::has_correlated_subquery);
    let mut need_left = BTreeSet::new();
    let mut need_right = BTreeSet::new();
    let mut joined: BTreeSet<usize> = required.clone();
    if correlated {
        joined.extend(0..width);
    }
    if let Some(f) = &filter {
        joined.extend(f.columns());
    }
    for i in joined {
        if i < left_width {
            need_left.insert(i);
        } else if i < width {
            need_right.insert(i - left_width);
        }
    }
    for (l, r) in &on {
        need_left.extend(l.columns());
        need_right.extend(r.columns());
    }
    let (left, left_map) = prune_columns(left, &need_left);
    let (right, right_map) = prune_columns(right, &need_right);
    let new_left_width = left.schema().fields.len();
    let map: Vec<usize> = (0..width)
        .map(|i| {
            if i < left_width {
                left_map[i]
            } else {
                match right_map[i - left_width] {
                    DROPPED => DROPPED,
                    r => new_left_width + r,
                }
            }
        })
        .collect();
    let on = on
        .iter()
        .map(|(l, r)| (remap(l, &left_map), remap(r, &right_map)))
        .collect();
    let filter = filter.as_ref().map(|f| remap(f, &map));
    let mut fields = Vec::new();
    for (i, f) in schema.fields.iter().enumerate() {
        if map[i] != DROPPED {
            fields.push(f.clone());
        }
    }
    let join = LogicalPlan::Join {
        left: Box::new(left),
        right: Box::new(right),
        kind,
        on,
        filter,
        schema: PlanSchema { fields },
    };
    (join, map)
}

// ---- 4. limits ----

/// `plan` with `limit` (rows enough for the nodes above) passed down through
/// row-preserving nodes to a table scan.
fn push_limit(plan: LogicalPlan, limit: Option<usize>) -> LogicalPlan {
    match plan {
        LogicalPlan::Limit {
            input,
            skip,
            fetch: Some(fetch),
        } => LogicalPlan::Limit {
            input: Box::new(push_limit(*input, Some(skip.saturating_add(fetch)))),
            skip,
            fetch: Some(fetch),
        },
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => LogicalPlan::Project {
            input: Box::new(push_limit(*input, limit)),
            exprs,
            schema,
        },
        LogicalPlan::Scan {
            source: source @ TableSource::Stored(_),
            schema,
            projection,
            filter,
            limit: None,
        } => LogicalPlan::Scan {
            source,
            schema,
            projection,
            filter,
            limit,
        },
        other => other.map_inputs(&mut |p| push_limit(p, None)),
    }
}
