//! Plan reuse for prepared statements: a query is bound and optimized once,
//! with every value that may change between executions left as an
//! [`Expr::Slot`] (its `$n` parameters, `now()`, a table's retention cutoff);
//! each execution fills the slots with literals, folds the constants they
//! make and hands the plan to the executor, whose pruning (zone maps, index
//! lookups) is planned per execution anyway.
//!
//! A plan is generic only where it means the same for every value. The
//! binder refuses to make one (and the statement is then bound afresh each
//! time, as before) wherever a value would shape the plan: `LIMIT $1`,
//! `= ANY($1)` (its list is expanded), `round(x, $1)` (the scale of the
//! result), an array parameter outside `ANY`, a catalog table (its rows are
//! read when bound), `set_config()`, parameters sent as untyped text. A
//! NUMERIC parameter keeps the scale it was sent with, so a value of another
//! scale is bound afresh too.
//!
//! A generic plan is dropped when what it was bound against changes: the
//! session's settings (time zone, search path, role) or a table it reads
//! (dropped, or dropped and created again).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use sluice_storage::types::UTC;
use sluice_storage::zone::Zone;
use sluice_storage::{Catalog, Table};

use crate::binder::Param;
use crate::cast::cast_array;
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::logical::{Expr, LogicalPlan, SubqueryKind, SubqueryPlan};

/// A value a generic plan takes at each execution.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Slot {
    /// The `$n` parameter at this (zero-based) position, of this type.
    Param {
        /// Zero-based position.
        index: usize,
        /// The type the plan was bound for.
        data_type: DataType,
    },
    /// The statement's time, `now()`.
    Now,
    /// The oldest time a table with retention shows: `now()` less its
    /// retention, in its time column's type.
    RetentionCutoff {
        /// The table's retention.
        retention_micros: i64,
        /// Its time column's zone (`None` for TIMESTAMP without time zone).
        zone: Option<Arc<str>>,
    },
}

impl Slot {
    /// The type of the slot's values.
    pub(crate) fn data_type(&self) -> DataType {
        match self {
            Slot::Param { data_type, .. } => data_type.clone(),
            Slot::Now => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            Slot::RetentionCutoff { zone, .. } => {
                DataType::Timestamp(TimeUnit::Microsecond, zone.clone())
            }
        }
    }

    /// The slot's value for an execution at `now_micros` with `params`;
    /// `None` where a parameter's value is not of the type the plan was
    /// bound for (a NUMERIC of another scale).
    fn value(&self, params: &[Param], now_micros: i64) -> Option<ArrayRef> {
        match self {
            Slot::Param { index, data_type } => match params.get(*index)? {
                Param::Value(v) if v.data_type() == data_type => Some(Arc::clone(v)),
                _ => None,
            },
            Slot::Now => Some(Arc::new(
                TimestampMicrosecondArray::from(vec![now_micros]).with_timezone(UTC),
            )),
            Slot::RetentionCutoff {
                retention_micros,
                zone,
            } => Some(Arc::new(
                TimestampMicrosecondArray::from(vec![now_micros.saturating_sub(*retention_micros)])
                    .with_timezone_opt(zone.clone()),
            )),
        }
    }
}

/// The stored tables a plan reads, by name, as the catalog held them when
/// it was bound.
pub(crate) type TablesRead = Vec<(String, Arc<Table>)>;

/// A query bound and optimized once, its changing values left as slots.
pub(crate) struct GenericPlan {
    /// The plan, optimized except for what depends on values.
    plan: LogicalPlan,
    /// What each [`Expr::Slot`] index stands for.
    slots: Vec<Slot>,
    /// The tables it reads.
    tables: TablesRead,
    /// The session's settings generation it was bound under.
    session_generation: u64,
}

impl std::fmt::Debug for GenericPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericPlan")
            .field("plan", &self.plan)
            .field("slots", &self.slots)
            .field(
                "tables",
                &self.tables.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl GenericPlan {
    /// A generic plan of `plan`, which the binder made with `slots` and read
    /// `tables`, under session settings generation `session_generation`.
    pub(crate) fn new(
        plan: LogicalPlan,
        slots: Vec<Slot>,
        tables: TablesRead,
        session_generation: u64,
    ) -> Self {
        GenericPlan {
            plan: crate::optimize::optimize_generic(plan),
            slots,
            tables,
            session_generation,
        }
    }

    /// True while the plan still means what it meant when bound: the same
    /// session settings, and each table it reads still the one in the
    /// catalog under its name.
    fn is_current(&self, catalog: &Catalog, session_generation: u64) -> bool {
        self.session_generation == session_generation
            && self
                .tables
                .iter()
                .all(|(name, held)| catalog.table(name).is_ok_and(|now| Arc::ptr_eq(&now, held)))
    }

    /// The plan for one execution: slots filled with `params` and the
    /// statement's time, constants folded. `None` where a parameter is not
    /// of the type the plan was bound for.
    ///
    /// # Errors
    /// A slot's value that its cast rejects (`$1::int` of a bigint too
    /// large), as binding afresh would report it.
    fn instantiate(&self, params: &[Param], ctx: &QueryContext) -> Result<Option<LogicalPlan>> {
        let Some(values) = self
            .slots
            .iter()
            .map(|s| s.value(params, ctx.now_micros()))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let filled = Filler {
            values: &values,
            zone: ctx.options().zone,
            error: RefCell::new(None),
        };
        let plan = filled.plan(&self.plan);
        if let Some(e) = filled.error.into_inner() {
            return Err(e);
        }
        Ok(Some(crate::optimize::optimize_values(plan, ctx)))
    }
}

/// Replaces a plan's slots by their values.
struct Filler<'a> {
    values: &'a [ArrayRef],
    zone: Zone,
    /// The first cast of a value that failed.
    error: RefCell<Option<Error>>,
}

impl Filler<'_> {
    /// `plan` with every slot, in its subqueries too, replaced by its value.
    fn plan(&self, plan: &LogicalPlan) -> LogicalPlan {
        plan.map_exprs(&|e| self.expr(e))
    }

    fn expr(&self, e: &Expr) -> Expr {
        e.transform(&mut |x| match x {
            Expr::Slot { index, .. } => self
                .values
                .get(*index)
                .map(|v| Expr::literal(Arc::clone(v))),
            // Binding afresh casts a value at once, failing the statement
            // for one its cast rejects; so does this.
            Expr::Cast { expr, to } => match expr.as_ref() {
                Expr::Slot { index, .. } => {
                    let v = self.values.get(*index)?;
                    match cast_array(v, to, self.zone) {
                        Ok(cast) => Some(Expr::literal(cast)),
                        Err(e) => {
                            self.error.borrow_mut().get_or_insert(e);
                            None
                        }
                    }
                }
                _ => None,
            },
            Expr::Subquery { kind, plan } => Some(Expr::Subquery {
                kind: match kind {
                    SubqueryKind::In { expr, negated } => SubqueryKind::In {
                        expr: Box::new(self.expr(expr)),
                        negated: *negated,
                    },
                    other => other.clone(),
                },
                plan: SubqueryPlan(Arc::new(self.plan(&plan.0))),
            }),
            _ => None,
        })
    }
}

/// What a prepared statement knows of its plan.
#[derive(Debug, Default)]
enum Cached {
    /// Not planned yet, or its generic plan went stale.
    #[default]
    Unknown,
    /// A generic plan, reused while it is current.
    Generic(Arc<GenericPlan>),
    /// No generic plan can be made: bound afresh at each execution.
    Custom,
}

/// The plan a prepared statement keeps between executions (one per
/// statement, on its connection). Empty until the first execution.
#[derive(Debug, Default)]
pub struct PlanCache {
    state: Mutex<Cached>,
}

/// How a prepared query was planned for one execution.
pub(crate) enum Planned {
    /// From its generic plan: ready to run.
    Reused(LogicalPlan),
    /// Bind it afresh.
    Afresh {
        /// No generic plan is known: try to make one.
        try_generic: bool,
    },
}

impl PlanCache {
    /// The plan for this execution if a current generic plan exists.
    ///
    /// # Errors
    /// A parameter value its plan's cast rejects.
    pub(crate) fn lookup(
        &self,
        catalog: &Catalog,
        session_generation: u64,
        params: &[Param],
        ctx: &QueryContext,
    ) -> Result<Planned> {
        let generic = match &*self.lock() {
            Cached::Generic(g) => Arc::clone(g),
            Cached::Custom => return Ok(Planned::Afresh { try_generic: false }),
            Cached::Unknown => return Ok(Planned::Afresh { try_generic: true }),
        };
        if !generic.is_current(catalog, session_generation) {
            *self.lock() = Cached::Unknown;
            return Ok(Planned::Afresh { try_generic: true });
        }
        Ok(match generic.instantiate(params, ctx)? {
            Some(plan) => {
                REUSED.fetch_add(1, Ordering::Relaxed);
                Planned::Reused(plan)
            }
            None => Planned::Afresh { try_generic: false },
        })
    }

    /// Keeps `plan` for the executions to come and returns this one's plan.
    ///
    /// # Errors
    /// A parameter value its plan's cast rejects.
    pub(crate) fn keep(
        &self,
        plan: GenericPlan,
        params: &[Param],
        ctx: &QueryContext,
    ) -> Result<Option<LogicalPlan>> {
        let plan = Arc::new(plan);
        *self.lock() = Cached::Generic(Arc::clone(&plan));
        let this = plan.instantiate(params, ctx)?;
        if this.is_some() {
            PLANNED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(this)
    }

    /// Records that the statement cannot have a generic plan.
    pub(crate) fn refuse_generic(&self) {
        *self.lock() = Cached::Custom;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Executions of prepared queries from a generic plan kept from an earlier
/// execution, since start.
static REUSED: AtomicU64 = AtomicU64::new(0);
/// Executions of prepared queries that bound and optimized the statement
/// (making a generic plan, or binding it afresh), since start.
static PLANNED: AtomicU64 = AtomicU64::new(0);

/// Counts an execution of a prepared query bound afresh.
pub(crate) fn count_afresh() {
    PLANNED.fetch_add(1, Ordering::Relaxed);
}

/// Executions of prepared queries since start: (from a plan kept from an
/// earlier execution, planned for this one).
pub fn execution_counts() -> (u64, u64) {
    (
        REUSED.load(Ordering::Relaxed),
        PLANNED.load(Ordering::Relaxed),
    )
}
