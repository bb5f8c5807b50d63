//! The binder: turns `sqlparser`'s PostgreSQL AST into a typed [`LogicalPlan`].
//!
//! It resolves names against the catalog and the FROM clause, applies PostgreSQL's
//! implicit coercions (an untyped string literal takes the type of what it meets,
//! integers widen to bigint and double), folds casts of constants, and turns
//! aggregates into an Aggregate node under the projection.

use sluice_storage::zone::Zone;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, IntervalMonthDayNanoArray,
    StringArray,
};
use arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use sluice_storage::types::{parse_interval, UTC};
use sluice_storage::Catalog;
use sqlparser::ast::{
    self, BinaryOperator, CastKind, DateTimeField, Distinct, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart,
    OrderByKind, SelectItem, SetExpr, SetOperator, SetQuantifier, TableFactor, UnaryOperator,
    Value,
};

use crate::cast::cast_array;
use crate::error::{Error, Result};
use crate::format::sql_type_name;
use crate::logical::{
    arithmetic_result_type, is_numeric, wider_numeric, AggregateExpr, AggregateFunction, BinaryOp,
    DateField, Expr, JoinKind, Literal, LogicalPlan, PlanField, PlanSchema, ScalarFunction,
    SortKey, SubqueryKind, TableSource,
};
use crate::reuse::{Slot, TablesRead};
use crate::session::{Session, SERVER_VERSION};

/// Binds statements against a catalog at a point in time (`now()`).
pub struct Binder<'a> {
    catalog: &'a Catalog,
    ctes: Vec<(String, LogicalPlan)>,
    now_micros: i64,
    zone: Zone,
    /// Values of `$n` when executing; `None` when describing a prepared statement.
    params: Option<Vec<Param>>,
    /// The session, for `current_user`, `current_setting()` and friends.
    session: Option<&'a Session>,
    /// The enclosing query's input while binding a subquery (one level of
    /// correlation is supported).
    outer: Vec<PlanSchema>,
    /// Settings changed by set_config(), applied after the statement runs.
    settings: Vec<(String, String)>,
    /// The type each `$n` was found to need (describing) or was given.
    param_types: Vec<Option<DataType>>,
    /// The target columns' (name, type) of an `INSERT ... VALUES` being bound: its
    /// rows are assigned to them cell by cell, as PostgreSQL does, instead of
    /// meeting in a common type first (`VALUES ('NaN'), (7)` into a double).
    insert_targets: Option<Vec<(String, DataType)>>,
    /// How deep the expression being bound is nested.
    depth: usize,
    /// The ORDER BY of the ordered aggregates (`string_agg(x, ',' ORDER BY
    /// y)`) of the SELECT being bound: its input is sorted by it.
    aggregate_order: Option<Vec<SortKey>>,
    /// Binding a generic plan ([`crate::reuse`]): the slots made so far.
    slots: Option<Vec<Slot>>,
    /// Binding a generic plan: the stored tables read, by name.
    tables_read: TablesRead,
}

/// A name as PostgreSQL folds it: lower case unless quoted.
pub fn ident_name(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The parts of a dotted name, folded.
pub fn object_name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident_name(i),
            other => other.to_string(),
        })
        .collect()
}

/// The table name of a possibly schema-qualified name (`public.t` -> `t`).
///
/// # Errors
/// [`Error::UndefinedTable`] for a schema other than `public`.
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts = object_name_parts(name);
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == "public" => Ok(t.clone()),
        [d, s, t] if s == "public" && !d.is_empty() => Ok(t.clone()),
        _ => Err(Error::UndefinedTable(parts.join("."))),
    }
}

fn lit(value: ArrayRef) -> Expr {
    Expr::literal(value)
}

fn null_literal() -> Expr {
    lit(arrow::array::new_null_array(&DataType::Null, 1))
}

/// Deepest nesting of expressions a statement may have (a chain of 400
/// ORs is 400 deep). PostgreSQL's limit is its stack size; this one keeps a
/// statement within [`STATEMENT_STACK_BYTES`] even in a debug build, where
/// frames are largest.
const MAX_EXPRESSION_DEPTH: usize = 400;

/// The stack the server gives its statement threads: 32 MiB of address
/// space (only the pages a statement touches are used). Recursion over
/// expressions also grows the stack on demand ([`grow_stack`]), so the
/// embedded API is safe on any thread.
pub const STATEMENT_STACK_BYTES: usize = 32 << 20;

/// Runs `f`, first moving to a fresh stack segment if less than 128 KiB is
/// left: binding, optimizing and evaluating recurse once per level of an
/// expression, and a stack overflow would abort the process with every
/// connection in it. (`stacker` is what rustc uses for the same problem.)
pub fn grow_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(128 << 10, 2 << 20, f)
}

/// `numeric(p, s)`, `numeric(p)` or bare `numeric` (scale
/// [`crate::numeric::DIVISION_SCALE`] until a cast picks one from its operand).
fn numeric_type(text: &str) -> Result<DataType> {
    let args: Vec<&str> = text
        .split_once('(')
        .map(|(_, rest)| {
            rest.trim_end_matches(')')
                .split(',')
                .map(str::trim)
                .collect()
        })
        .unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    let (p, s) = match args.as_slice() {
        [] => return Ok(crate::numeric::numeric(crate::numeric::DIVISION_SCALE)),
        [p] => (number(p), Some(0)),
        [p, s] => (number(p), number(s)),
        _ => (None, None),
    };
    match (p, s) {
        (Some(p), Some(s)) if (1..=38).contains(&p) && (0..=p).contains(&s) => {
            Ok(DataType::Decimal128(p as u8, s as i8))
        }
        (Some(p), _) if !(1..=38).contains(&p) => Err(Error::InvalidParameter(format!(
            "NUMERIC precision {p} must be between 1 and 38"
        ))),
        _ => Err(Error::InvalidParameter(format!(
            "NUMERIC scale must be between 0 and the precision: {text}"
        ))),
    }
}

/// The Arrow type for a SQL type name in a CAST or column definition.
pub fn sql_to_arrow_type(dt: &ast::DataType) -> Result<DataType> {
    sql_type_from_name(&dt.to_string().to_lowercase())
}

/// [`sql_to_arrow_type`] for a lower-case type name.
fn sql_type_from_name(text: &str) -> Result<DataType> {
    let text = text.trim_start_matches("pg_catalog.").to_string();
    let element = text
        .strip_suffix("[]")
        .or_else(|| text.strip_prefix('_'))
        .map(str::trim);
    if let Some(element) = element {
        // An array of a value type is a list (`integer[]`); arrays of catalog
        // types (`oid[]`, `regtype[]`) travel in their text form, `{a,b}`.
        return Ok(match sql_type_from_name(element) {
            Ok(DataType::UInt32) | Err(_) => DataType::Utf8,
            Ok(t) => crate::array::list_type(&t),
        });
    }
    if text.contains("vector") {
        return Ok(DataType::Utf8);
    }
    let base = text.split('(').next().unwrap_or(&text).trim().to_string();
    Ok(match base.as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int" | "integer" | "int4" | "smallint" | "int2" => DataType::Int32,
        "bigint" | "int8" | "xid" => DataType::Int64,
        "oid" | "regproc" | "regclass" | "regtype" | "regnamespace" | "regrole"
        | "regprocedure" | "regoper" | "regoperator" | "regconfig" => DataType::UInt32,
        "double precision" | "double" | "float8" | "float" | "real" | "float4" => DataType::Float64,
        "numeric" | "decimal" => numeric_type(&text)?,
        "text" | "varchar" | "character varying" | "char" | "character" | "string" | "name"
        | "bpchar" | "\"char\"" | "pg_catalog.text" | "pg_catalog.name" => DataType::Utf8,
        "timestamp" | "timestamp without time zone" => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        "timestamptz" | "timestamp with time zone" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        }
        "date" => DataType::Date32,
        "interval" => DataType::Interval(IntervalUnit::MonthDayNano),
        _ => {
            return Err(Error::UndefinedFunction(format!(
                "type \"{text}\" does not exist"
            )))
        }
    })
}

impl<'a> Binder<'a> {
    /// A binder whose `now()` is `now_micros` and whose time zone is `zone`.
    pub fn new(catalog: &'a Catalog, now_micros: i64, zone: Zone) -> Self {
        Binder {
            catalog,
            ctes: Vec::new(),
            now_micros,
            zone,
            params: None,
            param_types: Vec::new(),
            session: None,
            outer: Vec::new(),
            settings: Vec::new(),
            insert_targets: None,
            depth: 0,
            aggregate_order: None,
            slots: None,
            tables_read: Vec::new(),
        }
    }

    /// Binds a generic plan for parameters of `types`: each `$n`, `now()`
    /// and retention cutoff becomes an [`Expr::Slot`], and binding fails
    /// wherever a value would shape the plan (see [`crate::reuse`]).
    pub(crate) fn generic(mut self, types: Vec<DataType>) -> Self {
        self.param_types = types.into_iter().map(Some).collect();
        self.slots = Some(Vec::new());
        self
    }

    /// A generic binding's slots and the tables it read; `None` for any
    /// other binding.
    pub(crate) fn take_generic(&mut self) -> Option<(Vec<Slot>, TablesRead)> {
        let slots = self.slots.take()?;
        Some((slots, std::mem::take(&mut self.tables_read)))
    }

    /// The slot expression for `slot` when binding a generic plan.
    fn slot(&mut self, slot: Slot) -> Option<Expr> {
        let slots = self.slots.as_mut()?;
        let data_type = slot.data_type();
        let index = match slots.iter().position(|s| *s == slot) {
            Some(i) => i,
            None => {
                slots.push(slot);
                slots.len() - 1
            }
        };
        Some(Expr::Slot { index, data_type })
    }

    /// Fails a generic binding where `e`'s value would shape the plan: the
    /// binder treats a constant there differently from an expression.
    fn value_shapes_plan(&self, e: &Expr, what: &str) -> Result<()> {
        let mut has_slot = false;
        e.walk(&mut |x| has_slot |= matches!(x, Expr::Slot { .. }));
        if has_slot {
            return Err(Error::NotSupported(format!(
                "a generic plan where a value decides {what}"
            )));
        }
        Ok(())
    }

    /// Binds the next VALUES list (an INSERT's) by assigning each cell to its
    /// target column's (name, type).
    pub fn set_insert_targets(&mut self, targets: Vec<(String, DataType)>) {
        self.insert_targets = Some(targets);
    }

    /// The settings `set_config()` calls asked for, to apply once the statement ran.
    pub fn take_settings(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.settings)
    }

    /// Lets session functions (`current_user`, `current_setting`, ...) see `session`.
    pub fn with_session(mut self, session: &'a Session) -> Self {
        self.session = Some(session);
        self
    }

    /// Supplies the values of `$1`, `$2`, ... for execution. Without this call the
    /// binder describes: each parameter takes the type its context demands.
    pub fn with_params(mut self, params: Vec<Param>) -> Self {
        self.params = Some(params);
        self
    }

    /// The types a client declared for its parameters (in Parse), `None` for one
    /// left unspecified. A declared type is the parameter's type; an unspecified
    /// one is resolved from where it is used, as PostgreSQL resolves `unknown`.
    pub fn with_param_types(mut self, declared: Vec<Option<DataType>>) -> Self {
        self.param_types = declared;
        self
    }

    /// The type of each parameter seen, `None` where nothing decided it.
    pub fn param_types(&self) -> &[Option<DataType>] {
        &self.param_types
    }

    fn record_param_type(&mut self, i: usize, t: &DataType) {
        if self.param_types.len() <= i {
            self.param_types.resize(i + 1, None);
        }
        if self.param_types[i].is_none() {
            self.param_types[i] = Some(t.clone());
        }
    }

    /// The index of `$n` in `p`.
    fn placeholder_index(&mut self, p: &str) -> Result<usize> {
        let n: usize = p
            .strip_prefix('$')
            .and_then(|d| d.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Syntax(format!("invalid parameter reference {p}")))?;
        if self.param_types.len() < n {
            self.param_types.resize(n, None);
        }
        Ok(n - 1)
    }

    /// The value supplied for parameter `i`, `None` while describing.
    fn param_value(&self, i: usize) -> Result<Option<&Param>> {
        match &self.params {
            None => Ok(None),
            Some(values) => values.get(i).map(Some).ok_or_else(|| {
                Error::Protocol(format!(
                    "there is no parameter ${}: {} supplied",
                    i + 1,
                    values.len()
                ))
            }),
        }
    }

    fn bind_placeholder(&mut self, p: &str) -> Result<Expr> {
        let i = self.placeholder_index(p)?;
        let declared = self.param_types[i].clone();
        if self.slots.is_some() {
            return match declared {
                // Outside `= ANY(...)` an array is its text form, made per value.
                Some(DataType::List(_)) | None => Err(Error::NotSupported(
                    "a generic plan of an array or untyped parameter".into(),
                )),
                Some(data_type) => self
                    .slot(Slot::Param {
                        index: i,
                        data_type,
                    })
                    .ok_or_else(|| Error::Internal("generic binding without slots".into())),
            };
        }
        match self.param_value(i)? {
            // Describing: a declared parameter is a typed value whose value is not
            // known yet; an unspecified one stays open until its context types it.
            None => Ok(Expr::Literal(Literal {
                value: arrow::array::new_null_array(
                    &declared.as_ref().map_or(DataType::Null, scalar_param_type),
                    1,
                ),
                untyped: declared.is_none(),
                param: Some(i),
            })),
            Some(Param::Text(Some(t))) => Ok(untyped_text(t)),
            Some(Param::Text(None)) => Ok(null_literal()),
            Some(Param::Value(v)) => {
                let v = Arc::clone(v);
                self.record_param_type(i, v.data_type());
                let v = match v.data_type() {
                    // Outside `= ANY(...)` an array is its text form, as array
                    // columns of the catalog are.
                    DataType::List(_) => {
                        Arc::new(StringArray::from(vec![crate::format::format_value(
                            &v, 0, self.zone,
                        )?])) as ArrayRef
                    }
                    _ => v,
                };
                // A value is a plain constant from here on: it folds like one.
                Ok(lit(v))
            }
        }
    }

    /// The elements of the array parameter `$n` compared with `x` in
    /// `x = ANY($n)`: an unspecified parameter becomes an array of `x`'s type, as
    /// in PostgreSQL. `None` for a NULL array.
    fn bind_array_param(
        &mut self,
        p: &str,
        x: &Expr,
        schema: &PlanSchema,
    ) -> Result<Option<Vec<Expr>>> {
        let i = self.placeholder_index(p)?;
        if self.slots.is_some() {
            // The list is expanded into one candidate per element.
            return Err(Error::NotSupported("a generic plan of = ANY($n)".into()));
        }
        match self.param_value(i)?.cloned() {
            None => {
                let element = match self.param_types[i].clone() {
                    Some(DataType::List(f)) => f.data_type().clone(),
                    Some(other) => {
                        return Err(Error::undefined_function(format!(
                            "op ANY/ALL (array) requires array on right side, not {}",
                            sql_type_name(&other)
                        )))
                    }
                    None => {
                        let t = match x.data_type(schema) {
                            DataType::Null => DataType::Utf8,
                            t => t,
                        };
                        self.record_param_type(i, &list_of(&t));
                        t
                    }
                };
                Ok(Some(vec![Expr::Literal(Literal {
                    value: arrow::array::new_null_array(&element, 1),
                    untyped: false,
                    param: Some(i),
                })]))
            }
            Some(Param::Text(None)) => Ok(None),
            Some(Param::Text(Some(text))) => Ok(Some(
                parse_array_text(&text)
                    .into_iter()
                    .map(|item| item.map_or_else(null_literal, |t| untyped_text(&t)))
                    .collect(),
            )),
            Some(Param::Value(v)) if v.is_null(0) => Ok(None),
            Some(Param::Value(v)) => match v.data_type() {
                DataType::List(_) => {
                    let list = v
                        .as_any()
                        .downcast_ref::<arrow::array::ListArray>()
                        .ok_or_else(|| {
                            Error::Internal("a list parameter that is not a ListArray".into())
                        })?;
                    let values = list.value(0);
                    Ok(Some(
                        (0..values.len()).map(|k| lit(values.slice(k, 1))).collect(),
                    ))
                }
                DataType::Utf8 => {
                    let text = crate::format::format_value(&v, 0, self.zone)?.unwrap_or_default();
                    Ok(Some(
                        parse_array_text(&text)
                            .into_iter()
                            .map(|item| item.map_or_else(null_literal, |t| untyped_text(&t)))
                            .collect(),
                    ))
                }
                other => Err(Error::undefined_function(format!(
                    "op ANY/ALL (array) requires array on right side, not {}",
                    sql_type_name(other)
                ))),
            },
        }
    }

    /// Binds a query (SELECT, VALUES, set operations, WITH).
    pub fn bind_query(&mut self, q: &ast::Query) -> Result<LogicalPlan> {
        let ctes_before = self.ctes.len();
        if let Some(with) = &q.with {
            if with.recursive {
                return Err(Error::NotSupported("WITH RECURSIVE".into()));
            }
            for cte in &with.cte_tables {
                let plan = self.bind_query(&cte.query)?;
                let name = ident_name(&cte.alias.name);
                let columns: Vec<String> = cte
                    .alias
                    .columns
                    .iter()
                    .map(|c| ident_name(&c.name))
                    .collect();
                let plan = alias_plan(plan, &name, &columns)?;
                self.ctes.push((name, plan));
            }
        }
        let result = self.bind_query_body(q);
        self.ctes.truncate(ctes_before);
        result
    }

    fn bind_query_body(&mut self, q: &ast::Query) -> Result<LogicalPlan> {
        let order_by = match &q.order_by {
            Some(ob) => match &ob.kind {
                OrderByKind::Expressions(e) => e.as_slice(),
                OrderByKind::All(_) => return Err(Error::NotSupported("ORDER BY ALL".into())),
            },
            None => &[],
        };
        let mut plan = match q.body.as_ref() {
            SetExpr::Select(select) => self.bind_select(select, order_by)?,
            other => {
                let plan = self.bind_set_expr(other)?;
                if order_by.is_empty() {
                    plan
                } else {
                    self.bind_order_on_output(plan, order_by)?
                }
            }
        };
        if let Some(limit) = &q.limit_clause {
            let (limit, offset) = match limit {
                ast::LimitClause::LimitOffset {
                    limit,
                    offset,
                    limit_by,
                } => {
                    if !limit_by.is_empty() {
                        return Err(Error::NotSupported("LIMIT BY".into()));
                    }
                    (limit.as_ref(), offset.as_ref().map(|o| &o.value))
                }
                ast::LimitClause::OffsetCommaLimit { offset, limit } => (Some(limit), Some(offset)),
            };
            let fetch = match limit {
                Some(e) => self.const_count(e, "LIMIT")?,
                None => None,
            };
            let skip = match offset {
                Some(e) => self.const_count(e, "OFFSET")?.unwrap_or(0),
                None => 0,
            };
            if let LogicalPlan::Sort { fetch: f, .. } = &mut plan {
                if let Some(n) = fetch {
                    *f = Some(n.saturating_add(skip));
                }
            }
            plan = LogicalPlan::Limit {
                input: Box::new(plan),
                skip,
                fetch,
            };
        }
        if let Some(f) = &q.fetch {
            if f.percent {
                return Err(Error::NotSupported("FETCH FIRST ... PERCENT".into()));
            }
            // FETCH FIRST [n] ROWS: n defaults to 1; OFFSET may come with LIMIT.
            let n = match &f.quantity {
                Some(e) => self.const_count(e, "FETCH FIRST")?,
                None => Some(1),
            };
            let (input, skip) = match plan {
                LogicalPlan::Limit {
                    input,
                    skip,
                    fetch: None,
                } => (*input, skip),
                other => (other, 0),
            };
            plan = match (f.with_ties, n) {
                (true, Some(n)) => LogicalPlan::Limit {
                    input: Box::new(with_ties(input, n.saturating_add(skip))?),
                    skip,
                    fetch: None,
                },
                _ => {
                    let mut input = input;
                    if let (LogicalPlan::Sort { fetch: top, .. }, Some(n)) = (&mut input, n) {
                        *top = Some(n.saturating_add(skip));
                    }
                    LogicalPlan::Limit {
                        input: Box::new(input),
                        skip,
                        fetch: n,
                    }
                }
            };
        }
        Ok(plan)
    }

    /// A LIMIT or OFFSET value: a non-negative integer constant (`LIMIT ALL` and
    /// `LIMIT NULL` mean no limit).
    fn const_count(&mut self, e: &ast::Expr, what: &str) -> Result<Option<usize>> {
        if let ast::Expr::Identifier(i) = e {
            if i.value.eq_ignore_ascii_case("all") {
                return Ok(None);
            }
        }
        let bound = self.bind_expr(e, &PlanSchema::default(), false)?;
        let bound = self.coerce(bound, &PlanSchema::default(), &DataType::Int64)?;
        match bound {
            Expr::Literal(l) if l.is_null() => Ok(None),
            Expr::Literal(l) => {
                let v = l
                    .value
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .map(|a| a.value(0));
                match v {
                    Some(n) if n >= 0 => Ok(Some(n as usize)),
                    Some(_) => Err(Error::InvalidParameter(format!(
                        "{what} must not be negative"
                    ))),
                    None => Err(Error::DatatypeMismatch(format!(
                        "argument of {what} must be an integer"
                    ))),
                }
            }
            _ => Err(Error::NotSupported(format!("a non-constant {what}"))),
        }
    }

    fn bind_set_expr(&mut self, body: &SetExpr) -> Result<LogicalPlan> {
        match body {
            SetExpr::Select(s) => self.bind_select(s, &[]),
            SetExpr::Query(q) => self.bind_query(q),
            SetExpr::Values(values) => self.bind_values(values),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let l = self.bind_set_expr(left)?;
                let r = self.bind_set_expr(right)?;
                let all = match set_quantifier {
                    SetQuantifier::All => true,
                    SetQuantifier::Distinct | SetQuantifier::None => false,
                    other => return Err(Error::NotSupported(format!("{op} {other}"))),
                };
                match op {
                    SetOperator::Union => {}
                    SetOperator::Intersect | SetOperator::Except => {
                        return intersect_or_except(l, r, *op == SetOperator::Intersect, all);
                    }
                    other => return Err(Error::NotSupported(format!("{other}"))),
                }
                let union = union_plans(vec![l, r])?;
                match set_quantifier {
                    SetQuantifier::All => Ok(union),
                    SetQuantifier::Distinct | SetQuantifier::None => Ok(distinct_plan(union)),
                    other => Err(Error::NotSupported(format!("UNION {other}"))),
                }
            }
            other => Err(Error::NotSupported(format!("query body {other}"))),
        }
    }

    fn bind_values(&mut self, values: &ast::Values) -> Result<LogicalPlan> {
        if let Some(targets) = self.insert_targets.take() {
            return self.bind_insert_values(values, &targets);
        }
        let empty = PlanSchema::default();
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            let exprs = row
                .iter()
                .map(|e| self.bind_expr(e, &empty, false))
                .collect::<Result<Vec<_>>>()?;
            if let Some(first) = rows.first() {
                let first: &Vec<Expr> = first;
                if first.len() != exprs.len() {
                    return Err(Error::Syntax(
                        "VALUES lists must all be the same length".into(),
                    ));
                }
            }
            rows.push(exprs);
        }
        let width = rows.first().map_or(0, Vec::len);
        let mut fields = Vec::with_capacity(width);
        for c in 0..width {
            let column: Vec<&Expr> = rows.iter().map(|r| &r[c]).collect();
            let ty = common_type(
                &column.iter().map(|e| (*e).clone()).collect::<Vec<_>>(),
                &empty,
                "VALUES",
            )?;
            for r in rows.iter_mut() {
                r[c] = self.coerce(r[c].clone(), &empty, &ty)?;
            }
            fields.push(PlanField {
                qualifier: None,
                name: format!("column{}", c + 1),
                data_type: ty,
                hidden: false,
            });
        }
        Ok(LogicalPlan::Values {
            schema: PlanSchema { fields },
            rows,
        })
    }

    /// An INSERT's VALUES: each cell assigned to its target column's type.
    fn bind_insert_values(
        &mut self,
        values: &ast::Values,
        targets: &[(String, DataType)],
    ) -> Result<LogicalPlan> {
        let empty = PlanSchema::default();
        let width = values.rows.first().map_or(0, |r| r.len());
        if width > targets.len() {
            return Err(Error::Syntax(
                "INSERT has more expressions than target columns".into(),
            ));
        }
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            if row.len() != width {
                return Err(Error::Syntax(
                    "VALUES lists must all be the same length".into(),
                ));
            }
            let mut bound = Vec::with_capacity(width);
            for (e, (column, ty)) in row.iter().zip(targets) {
                let x = self.bind_expr(e, &empty, false)?;
                bound.push(self.assign(x, column, ty)?);
            }
            rows.push(bound);
        }
        let fields = targets[..width]
            .iter()
            .map(|(name, ty)| PlanField {
                qualifier: None,
                name: name.clone(),
                data_type: ty.clone(),
                hidden: false,
            })
            .collect();
        Ok(LogicalPlan::Values {
            schema: PlanSchema { fields },
            rows,
        })
    }

    /// PostgreSQL's assignment of a value to a column of type `to`: an untyped
    /// value takes the type, numbers convert among themselves (doubles round),
    /// dates and timestamps among themselves, anything becomes text; otherwise
    /// 42804 naming the column.
    fn assign(&mut self, e: Expr, column: &str, to: &DataType) -> Result<Expr> {
        let empty = PlanSchema::default();
        let from = e.data_type(&empty);
        let convertible = &from == to
            || from == DataType::Null
            || is_untyped(&e)
            || (is_numeric(&from) && is_numeric(to))
            || (matches!(from, DataType::Timestamp(..) | DataType::Date32)
                && matches!(to, DataType::Timestamp(..) | DataType::Date32))
            || *to == DataType::Utf8;
        if !convertible {
            return Err(Error::DatatypeMismatch(format!(
                "column \"{column}\" is of type {} but expression is of type {}",
                sql_type_name(to),
                sql_type_name(&from)
            )));
        }
        if is_untyped(&e) || from == DataType::Null {
            return self.coerce(e, &empty, to);
        }
        self.explicit_cast(e, &empty, to)
    }

    fn bind_order_on_output(
        &mut self,
        plan: LogicalPlan,
        order_by: &[ast::OrderByExpr],
    ) -> Result<LogicalPlan> {
        let schema = plan.schema().clone();
        let mut keys = Vec::new();
        for o in order_by {
            let expr = match self.output_reference(
                &o.expr,
                &schema
                    .fields
                    .iter()
                    .map(|f| f.name.clone())
                    .collect::<Vec<_>>(),
            )? {
                Some(i) => Expr::Column(i),
                None => self.bind_expr(&o.expr, &schema, false)?,
            };
            keys.push(sort_key(expr, &o.options));
        }
        Ok(LogicalPlan::Sort {
            input: Box::new(plan),
            keys,
            fetch: None,
        })
    }

    /// An ORDER BY / GROUP BY item that names an output column: an ordinal or a bare
    /// name equal to an output column's name.
    fn output_reference(&mut self, e: &ast::Expr, names: &[String]) -> Result<Option<usize>> {
        match e {
            ast::Expr::Value(v) => {
                if let Value::Number(n, _) = &v.value {
                    let i: usize = n.parse().map_err(|_| {
                        Error::Syntax(format!("non-integer constant in ORDER BY: {n}"))
                    })?;
                    if i == 0 || i > names.len() {
                        return Err(Error::InvalidColumnReference(format!(
                            "position {i} is not in select list"
                        )));
                    }
                    return Ok(Some(i - 1));
                }
                Ok(None)
            }
            ast::Expr::Identifier(id) => {
                let name = ident_name(id);
                let hits: Vec<usize> = names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n == name)
                    .map(|(i, _)| i)
                    .collect();
                match hits.as_slice() {
                    [] => Ok(None),
                    [i] => Ok(Some(*i)),
                    _ => Err(Error::AmbiguousColumn(name)),
                }
            }
            _ => Ok(None),
        }
    }

    fn bind_select(
        &mut self,
        select: &ast::Select,
        order_by: &[ast::OrderByExpr],
    ) -> Result<LogicalPlan> {
        // A subquery's ordered aggregates are its own.
        let outer_order = self.aggregate_order.take();
        let plan = self.bind_select_body(select, order_by);
        self.aggregate_order = outer_order;
        plan
    }

    fn bind_select_body(
        &mut self,
        select: &ast::Select,
        order_by: &[ast::OrderByExpr],
    ) -> Result<LogicalPlan> {
        if select.top.is_some() || !select.lateral_views.is_empty() || select.qualify.is_some() {
            return Err(Error::NotSupported("this SELECT form".into()));
        }
        if !select.named_window.is_empty() {
            return Err(Error::NotSupported("window functions".into()));
        }
        let mut plan = self.bind_from(&select.from)?;
        if let Some(w) = &select.selection {
            let schema = plan.schema().clone();
            let predicate = self.bind_predicate(w, &schema, "WHERE")?;
            plan = LogicalPlan::filter(plan, predicate);
        }
        let (mut plan, set_columns) = self.bind_set_functions(&select.projection, plan)?;
        let input_schema = plan.schema().clone();

        // SELECT list.
        let mut items: Vec<(Expr, String)> = Vec::new();
        for (position, item) in select.projection.iter().enumerate() {
            if let Some((column, name)) = set_columns.get(position).cloned().flatten() {
                items.push((Expr::Column(column), name));
                continue;
            }
            match item {
                SelectItem::UnnamedExpr(e) => {
                    items.push((self.bind_expr(e, &input_schema, true)?, output_name(e)))
                }
                SelectItem::ExprWithAlias { expr, alias } => items.push((
                    self.bind_expr(expr, &input_schema, true)?,
                    ident_name(alias),
                )),
                SelectItem::Wildcard(_) => {
                    if input_schema.fields.is_empty() && select.from.is_empty() {
                        return Err(Error::Syntax(
                            "SELECT * with no tables specified is not valid".into(),
                        ));
                    }
                    for (i, f) in input_schema.fields.iter().enumerate() {
                        if !f.hidden {
                            items.push((Expr::Column(i), f.name.clone()));
                        }
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => {
                            object_name_parts(n).last().cloned().unwrap_or_default()
                        }
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => e.to_string(),
                    };
                    let before = items.len();
                    for (i, f) in input_schema.fields.iter().enumerate() {
                        if f.qualifier.as_deref() == Some(q.as_str()) {
                            items.push((Expr::Column(i), f.name.clone()));
                        }
                    }
                    if items.len() == before {
                        return Err(Error::UndefinedTable(format!(
                            "missing FROM-clause entry for table \"{q}\""
                        )));
                    }
                }
                other => return Err(Error::NotSupported(format!("select item {other}"))),
            }
        }
        let output_names: Vec<String> = items.iter().map(|(_, n)| n.clone()).collect();

        // GROUP BY: input columns first, then output names and ordinals.
        // Each element gives the grouping sets it stands for (positions in
        // `group`); the query's sets are their cross product.
        let mut group: Vec<Expr> = Vec::new();
        let mut sets: Vec<Vec<usize>> = vec![vec![]];
        let mut has_sets = false;
        match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(Error::NotSupported("GROUP BY modifiers".into()));
                }
                for e in exprs {
                    let element_sets: Vec<Vec<&ast::Expr>> = match e {
                        ast::Expr::Rollup(lists) => {
                            has_sets = true;
                            (0..=lists.len())
                                .rev()
                                .map(|n| lists[..n].iter().flatten().collect())
                                .collect()
                        }
                        ast::Expr::Cube(lists) => {
                            has_sets = true;
                            if lists.len() > 12 {
                                return Err(Error::NotSupported(
                                    "CUBE of more than 12 elements".into(),
                                ));
                            }
                            (0..1u32 << lists.len())
                                .rev()
                                .map(|mask| {
                                    lists
                                        .iter()
                                        .enumerate()
                                        .filter(|(i, _)| mask & (1 << (lists.len() - 1 - i)) != 0)
                                        .flat_map(|(_, l)| l.iter())
                                        .collect()
                                })
                                .collect()
                        }
                        ast::Expr::GroupingSets(lists) => {
                            has_sets = true;
                            lists.iter().map(|l| l.iter().collect()).collect()
                        }
                        other => vec![vec![other]],
                    };
                    let mut bound_sets = Vec::with_capacity(element_sets.len());
                    for members in element_sets {
                        let mut positions = Vec::new();
                        for m in members {
                            let bound =
                                self.bind_group_expr(m, &items, &output_names, &input_schema)?;
                            let at = match group.iter().position(|g| *g == bound) {
                                Some(i) => i,
                                None => {
                                    group.push(bound);
                                    group.len() - 1
                                }
                            };
                            positions.push(at);
                        }
                        bound_sets.push(positions);
                    }
                    sets = sets
                        .iter()
                        .flat_map(|s| {
                            bound_sets.iter().map(move |b| {
                                let mut joined = s.clone();
                                joined.extend(b.iter().copied());
                                joined.sort_unstable();
                                joined.dedup();
                                joined
                            })
                        })
                        .collect();
                }
            }
            GroupByExpr::All(_) => return Err(Error::NotSupported("GROUP BY ALL".into())),
        }
        let having = match &select.having {
            Some(h) => Some(self.bind_predicate_with_aggs(h, &input_schema)?),
            None => None,
        };

        // ORDER BY: an output column (by ordinal or name) or an expression over the input.
        enum OrderTarget {
            Output(usize),
            Input(Expr),
        }
        let mut order: Vec<(OrderTarget, &ast::OrderByOptions)> = Vec::new();
        for o in order_by {
            let target = match self.output_reference(&o.expr, &output_names)? {
                Some(i) => OrderTarget::Output(i),
                None => OrderTarget::Input(self.bind_expr(&o.expr, &input_schema, true)?),
            };
            order.push((target, &o.options));
        }
        // DISTINCT ON's expressions ride along as extra sort targets, so they
        // get the same rewrites and hidden columns; they are split off below.
        let ascending = ast::OrderByOptions {
            sort: None,
            nulls_first: None,
        };
        let distinct_on: &[ast::Expr] = match &select.distinct {
            Some(Distinct::On(on)) => on,
            _ => &[],
        };
        for e in distinct_on {
            let target = match self.output_reference(e, &output_names)? {
                Some(i) => OrderTarget::Output(i),
                None => OrderTarget::Input(self.bind_expr(e, &input_schema, true)?),
            };
            order.push((target, &ascending));
        }

        let aggregating = !group.is_empty()
            || has_sets
            || items.iter().any(|(e, _)| e.has_aggregate())
            || having.is_some()
            || order
                .iter()
                .any(|(t, _)| matches!(t, OrderTarget::Input(e) if e.has_aggregate()));

        let mut having = having;
        if aggregating && set_columns.iter().any(Option::is_some) {
            return Err(Error::NotSupported(
                "set-returning functions in the SELECT list of a grouped query".into(),
            ));
        }
        if aggregating {
            let mut aggs: Vec<AggregateExpr> = Vec::new();
            let mut collect = |e: &Expr| {
                e.walk(&mut |n| {
                    if let Expr::Aggregate(a) = n {
                        if !aggs.contains(a) {
                            aggs.push((**a).clone());
                        }
                    }
                })
            };
            items.iter().for_each(|(e, _)| collect(e));
            having.iter().for_each(&mut collect);
            for (t, _) in &order {
                if let OrderTarget::Input(e) = t {
                    collect(e);
                }
            }
            for a in &aggs {
                if a.arg.as_ref().is_some_and(Expr::has_aggregate) {
                    return Err(Error::Grouping(
                        "aggregate function calls cannot be nested".into(),
                    ));
                }
            }
            let mut fields = Vec::new();
            for g in &group {
                fields.push(match g {
                    Expr::Column(i) => input_schema.fields[*i].clone(),
                    other => PlanField {
                        qualifier: None,
                        name: "?column?".into(),
                        data_type: other.data_type(&input_schema),
                        hidden: false,
                    },
                });
            }
            for a in &aggs {
                fields.push(PlanField {
                    qualifier: None,
                    name: a.func.name().into(),
                    data_type: Expr::Aggregate(Box::new(a.clone())).data_type(&input_schema),
                    hidden: false,
                });
            }
            let rewrite = |e: &Expr| rewrite_over_aggregate(e, &group, &aggs, &input_schema);
            for (e, _) in items.iter_mut() {
                *e = rewrite(e)?;
            }
            if let Some(h) = having.as_mut() {
                *h = rewrite(h)?;
            }
            for (t, _) in order.iter_mut() {
                if let OrderTarget::Input(e) = t {
                    *e = rewrite(e)?;
                }
            }
            if let Some(keys) = self.aggregate_order.take() {
                // The aggregation takes its input in this order, and
                // string_agg and array_agg keep each group's rows in the
                // order they come.
                plan = LogicalPlan::Sort {
                    input: Box::new(plan),
                    keys,
                    fetch: None,
                };
            }
            let any_grouping = aggs.iter().any(|a| a.func == AggregateFunction::Grouping);
            plan = if has_sets || any_grouping {
                grouping_sets_plan(plan, group, aggs, &sets, PlanSchema { fields })?
            } else {
                LogicalPlan::Aggregate {
                    input: Box::new(plan),
                    group,
                    aggregates: aggs,
                    schema: PlanSchema { fields },
                }
            };
        }
        if let Some(h) = having {
            plan = LogicalPlan::Filter {
                input: Box::new(plan),
                predicate: h,
            };
        }

        // Window functions run after grouping and HAVING, before the projection.
        let mut windows: Vec<crate::logical::WindowExpr> = Vec::new();
        let mut find = |e: &Expr| {
            e.walk(&mut |n| {
                if let Expr::Window(w) = n {
                    if !windows.contains(w) {
                        windows.push((**w).clone());
                    }
                }
            })
        };
        items.iter().for_each(|(e, _)| find(e));
        for (t, _) in &order {
            if let OrderTarget::Input(e) = t {
                find(e);
            }
        }
        if !windows.is_empty() {
            let pre = plan.schema().clone();
            let base = pre.fields.len();
            let mut fields = pre.fields.clone();
            for w in &windows {
                fields.push(PlanField {
                    qualifier: None,
                    name: w.func.name().into(),
                    data_type: w.data_type(&pre),
                    hidden: false,
                });
            }
            let replace = |e: &Expr| {
                e.transform(&mut |n| match n {
                    Expr::Window(w) => windows
                        .iter()
                        .position(|x| x == w.as_ref())
                        .map(|i| Expr::Column(base + i)),
                    _ => None,
                })
            };
            for (e, _) in items.iter_mut() {
                *e = replace(e);
            }
            for (t, _) in order.iter_mut() {
                if let OrderTarget::Input(e) = t {
                    *e = replace(e);
                }
            }
            plan = LogicalPlan::Window {
                input: Box::new(plan),
                windows,
                schema: PlanSchema { fields },
            };
        }

        // Projection, with hidden columns for ORDER BY expressions not in the list.
        let pre_schema = plan.schema().clone();
        let visible = items.len();
        let mut exprs: Vec<Expr> = items.iter().map(|(e, _)| e.clone()).collect();
        let mut names = output_names.clone();
        let mut keys = Vec::new();
        for (t, opts) in order {
            let col = match t {
                OrderTarget::Output(i) => i,
                OrderTarget::Input(e) => match exprs.iter().position(|x| *x == e) {
                    Some(i) => i,
                    None => {
                        exprs.push(e);
                        names.push("?order?".into());
                        exprs.len() - 1
                    }
                },
            };
            keys.push(sort_key(Expr::Column(col), opts));
        }
        let on_keys = keys.split_off(keys.len() - distinct_on.len());
        let fields: Vec<PlanField> = exprs
            .iter()
            .zip(&names)
            .map(|(e, n)| {
                let qualifier = match e {
                    Expr::Column(i) => pre_schema.fields[*i].qualifier.clone(),
                    _ => None,
                };
                PlanField {
                    qualifier,
                    name: n.clone(),
                    data_type: e.data_type(&pre_schema),
                    hidden: false,
                }
            })
            .collect();
        plan = LogicalPlan::Project {
            input: Box::new(plan),
            exprs,
            schema: PlanSchema { fields },
        };
        match &select.distinct {
            None | Some(Distinct::All) => {}
            Some(Distinct::Distinct) => {
                if names.len() > visible {
                    return Err(Error::InvalidColumnReference(
                        "for SELECT DISTINCT, ORDER BY expressions must appear in select list"
                            .into(),
                    ));
                }
                plan = distinct_plan(plan);
            }
            Some(Distinct::On(_)) => {
                // The first row of each DISTINCT ON group in ORDER BY order:
                // row_number() over the group, kept where it is 1.
                let leading = on_keys
                    .iter()
                    .all(|k| keys.iter().take(on_keys.len()).any(|o| o.expr == k.expr));
                if !keys.is_empty() && (keys.len() < on_keys.len() || !leading) {
                    return Err(Error::InvalidColumnReference(
                        "SELECT DISTINCT ON expressions must match initial ORDER BY expressions"
                            .into(),
                    ));
                }
                let mut fields = plan.schema().fields.clone();
                let width = fields.len();
                fields.push(PlanField {
                    qualifier: None,
                    name: "row_number".into(),
                    data_type: DataType::Int64,
                    hidden: true,
                });
                let numbered = LogicalPlan::Window {
                    input: Box::new(plan),
                    windows: vec![crate::logical::WindowExpr {
                        func: crate::logical::WindowFunction::RowNumber,
                        arg: None,
                        default: None,
                        partition_by: on_keys.iter().map(|k| k.expr.clone()).collect(),
                        order_by: keys.clone(),
                        frame: None,
                    }],
                    schema: PlanSchema { fields },
                };
                let one: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1i64]));
                let first = LogicalPlan::Filter {
                    input: Box::new(numbered),
                    predicate: Expr::Binary {
                        op: BinaryOp::Eq,
                        left: Box::new(Expr::Column(width)),
                        right: Box::new(Expr::literal(one)),
                    },
                };
                let schema = first.schema().clone();
                plan = LogicalPlan::Project {
                    input: Box::new(first),
                    exprs: (0..width).map(Expr::Column).collect(),
                    schema: PlanSchema {
                        fields: schema.fields[..width].to_vec(),
                    },
                };
            }
        }
        if !keys.is_empty() {
            plan = LogicalPlan::Sort {
                input: Box::new(plan),
                keys,
                fetch: None,
            };
        }
        if names.len() > visible {
            let schema = plan.schema().clone();
            plan = LogicalPlan::Project {
                input: Box::new(plan),
                exprs: (0..visible).map(Expr::Column).collect(),
                schema: PlanSchema {
                    fields: schema.fields[..visible].to_vec(),
                },
            };
        }
        Ok(plan)
    }

    fn bind_from(&mut self, from: &[ast::TableWithJoins]) -> Result<LogicalPlan> {
        if from.is_empty() {
            return Ok(LogicalPlan::Values {
                schema: PlanSchema::default(),
                rows: vec![vec![]],
            });
        }
        let mut plan: Option<LogicalPlan> = None;
        for twj in from {
            let right = self.bind_table_with_joins(twj)?;
            plan = Some(match plan {
                None => right,
                Some(left) => join_plans(left, right, JoinKind::Inner, vec![], None),
            });
        }
        plan.ok_or_else(|| Error::Internal("empty FROM".into()))
    }

    fn bind_table_with_joins(&mut self, twj: &ast::TableWithJoins) -> Result<LogicalPlan> {
        let mut plan = self.bind_table_factor(&twj.relation)?;
        for join in &twj.joins {
            let right = self.bind_table_factor(&join.relation)?;
            let (kind, constraint, swap) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, Some(c), false),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => {
                    (JoinKind::Left, Some(c), false)
                }
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => {
                    (JoinKind::Left, Some(c), true)
                }
                JoinOperator::FullOuter(c) => (JoinKind::Full, Some(c), false),
                JoinOperator::CrossJoin(_) => (JoinKind::Inner, None, false),
                other => {
                    return Err(Error::NotSupported(
                        format!("join {other:?}").chars().take(40).collect(),
                    ))
                }
            };
            plan = self.bind_join(plan, right, kind, constraint, swap)?;
        }
        Ok(plan)
    }

    fn bind_join(
        &mut self,
        left: LogicalPlan,
        right: LogicalPlan,
        kind: JoinKind,
        constraint: Option<&JoinConstraint>,
        swap: bool,
    ) -> Result<LogicalPlan> {
        let (l, r) = if swap { (right, left) } else { (left, right) };
        let left_len = l.schema().fields.len();
        let mut combined = l.schema().clone();
        combined.fields.extend(r.schema().fields.iter().cloned());
        let mut using: Vec<(String, usize, usize)> = Vec::new();
        let condition = match constraint {
            None | Some(JoinConstraint::None) => None,
            Some(JoinConstraint::On(e)) => Some(self.bind_predicate(e, &combined, "JOIN/ON")?),
            Some(JoinConstraint::Using(cols)) => {
                let mut cond: Option<Expr> = None;
                for c in cols {
                    let name = object_name_parts(c).last().cloned().unwrap_or_default();
                    let li = resolve_column(l.schema(), None, &name)?;
                    let ri = resolve_column(r.schema(), None, &name)? + left_len;
                    using.push((name.clone(), li, ri));
                    let eq = self.comparison(
                        BinaryOp::Eq,
                        Expr::Column(li),
                        Expr::Column(ri),
                        &combined,
                    )?;
                    cond = Some(match cond {
                        None => eq,
                        Some(prev) => and(prev, eq),
                    });
                }
                cond
            }
            Some(other) => return Err(Error::NotSupported(format!("join constraint {other:?}"))),
        };
        // Split equality conjuncts that compare one side with the other into hash keys.
        let mut on = Vec::new();
        let mut residual: Option<Expr> = None;
        if let Some(c) = condition {
            let mut parts = Vec::new();
            crate::scan::split_conjunction(&c, &mut parts);
            for p in parts {
                if let Expr::Binary {
                    op: BinaryOp::Eq,
                    left: a,
                    right: b,
                } = p
                {
                    let (ac, bc) = (a.columns(), b.columns());
                    let left_only =
                        |cols: &[usize]| !cols.is_empty() && cols.iter().all(|c| *c < left_len);
                    let right_only =
                        |cols: &[usize]| !cols.is_empty() && cols.iter().all(|c| *c >= left_len);
                    let to_right = |e: &Expr| e.remap_columns(&|i| i - left_len);
                    if left_only(&ac) && right_only(&bc) {
                        on.push(((**a).clone(), to_right(b)));
                        continue;
                    }
                    if right_only(&ac) && left_only(&bc) {
                        on.push(((**b).clone(), to_right(a)));
                        continue;
                    }
                }
                residual = Some(match residual {
                    None => p.clone(),
                    Some(prev) => and(prev, p.clone()),
                });
            }
        }
        let joined = join_plans(l, r, kind, on, residual);
        let schema = joined.schema().clone();
        // RIGHT JOIN was planned as a LEFT JOIN with the sides swapped; restore the
        // column order the query expects (original left first).
        let right_len = schema.fields.len() - left_len;
        let order: Vec<usize> = if swap {
            (left_len..left_len + right_len)
                .chain(0..left_len)
                .collect()
        } else {
            (0..schema.fields.len()).collect()
        };
        if !swap && using.is_empty() {
            return Ok(joined);
        }
        let mut exprs: Vec<Expr> = Vec::new();
        let mut fields: Vec<PlanField> = Vec::new();
        // USING (k): one merged k first, then every column of both sides with
        // their own k hidden (PostgreSQL's `*`; `a.k` still names a's). The
        // merged value is the preserved side's: `l`, which for a right join
        // is the query's right table.
        for (name, li, ri) in &using {
            let (lt, rt) = (&schema.fields[*li].data_type, &schema.fields[*ri].data_type);
            let data_type = if lt == rt || !is_numeric(lt) || !is_numeric(rt) {
                lt.clone()
            } else {
                wider_numeric(lt, rt)
            };
            let cast = |i: usize, t: &DataType| {
                if t == &data_type {
                    Expr::Column(i)
                } else {
                    Expr::Cast {
                        expr: Box::new(Expr::Column(i)),
                        to: data_type.clone(),
                    }
                }
            };
            // A full join preserves both sides: the key is whichever is there.
            exprs.push(if kind == JoinKind::Full {
                Expr::Function {
                    func: ScalarFunction::Coalesce,
                    args: vec![cast(*li, lt), cast(*ri, rt)],
                }
            } else {
                cast(*li, lt)
            });
            fields.push(PlanField {
                qualifier: None,
                name: name.clone(),
                data_type,
                hidden: false,
            });
        }
        for i in order {
            let mut f = schema.fields[i].clone();
            f.hidden |= using.iter().any(|(_, li, ri)| *li == i || *ri == i);
            exprs.push(Expr::Column(i));
            fields.push(f);
        }
        Ok(LogicalPlan::Project {
            exprs,
            schema: PlanSchema { fields },
            input: Box::new(joined),
        })
    }

    fn bind_table_factor(&mut self, tf: &TableFactor) -> Result<LogicalPlan> {
        match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                if let Some(args) = args {
                    return self.bind_table_function(name, &args.args, alias.as_ref());
                }
                let parts = object_name_parts(name);
                let cte = match parts.as_slice() {
                    [n] => self
                        .ctes
                        .iter()
                        .rev()
                        .find(|(c, _)| c == n)
                        .map(|(_, p)| p.clone()),
                    _ => None,
                };
                let plan = match cte {
                    Some(p) => p,
                    None if self.virtual_table(&parts)?.is_some() => {
                        if self.slots.is_some() {
                            // Its rows are read now, not when the plan runs.
                            return Err(Error::NotSupported(
                                "a generic plan of a catalog table".into(),
                            ));
                        }
                        let (qualifier, batch) = self
                            .virtual_table(&parts)?
                            .ok_or_else(|| Error::Internal("catalog table vanished".into()))?;
                        let fields = batch
                            .schema()
                            .fields()
                            .iter()
                            .map(|f| PlanField {
                                qualifier: Some(qualifier.clone()),
                                name: f.name().clone(),
                                data_type: f.data_type().clone(),
                                hidden: false,
                            })
                            .collect();
                        LogicalPlan::scan(
                            TableSource::Virtual {
                                name: parts.join("."),
                                batch,
                            },
                            PlanSchema { fields },
                        )
                    }
                    None => {
                        let tname = table_name(name)?;
                        let table = self.catalog.table(&tname).map_err(|e| match e {
                            sluice_storage::Error::TableNotFound(t) => Error::UndefinedTable(t),
                            other => Error::Storage(other),
                        })?;
                        let fields = table
                            .schema()
                            .columns
                            .iter()
                            .map(|c| PlanField {
                                qualifier: Some(tname.clone()),
                                name: c.name.clone(),
                                data_type: c.ty.arrow_type(),
                                hidden: false,
                            })
                            .collect();
                        let scan = LogicalPlan::scan(
                            TableSource::Stored(Arc::clone(&table)),
                            PlanSchema { fields },
                        );
                        let scan = apply_alias(scan, alias.as_ref())?;
                        if self.slots.is_some() {
                            self.tables_read.push((tname, Arc::clone(&table)));
                        }
                        return Ok(self.hidden_rows_filter(&table, scan));
                    }
                };
                apply_alias(plan, alias.as_ref())
            }
            TableFactor::Derived {
                subquery,
                alias,
                lateral,
                ..
            } => {
                if *lateral {
                    return Err(Error::NotSupported("LATERAL".into()));
                }
                let plan = self.bind_query(subquery)?;
                apply_alias(plan, alias.as_ref())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let plan = self.bind_table_with_joins(table_with_joins)?;
                match alias {
                    Some(a) => alias_plan(plan, &ident_name(&a.name), &[]),
                    None => Ok(plan),
                }
            }
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset,
                with_ordinality,
                ..
            } => {
                if *with_offset || *with_ordinality {
                    return Err(Error::NotSupported("UNNEST ... WITH ORDINALITY".into()));
                }
                let args: Vec<FunctionArg> = array_exprs
                    .iter()
                    .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e.clone())))
                    .collect();
                self.bind_unnest(&args, alias.as_ref())
            }
            other => Err(Error::NotSupported(format!("FROM item {other}"))),
        }
    }

    /// One GROUP BY expression: an input column first, then an output name
    /// or ordinal, then any expression over the input.
    fn bind_group_expr(
        &mut self,
        e: &ast::Expr,
        items: &[(Expr, String)],
        output_names: &[String],
        input_schema: &PlanSchema,
    ) -> Result<Expr> {
        let bound = match e {
            ast::Expr::Value(_) => match self.output_reference(e, output_names)? {
                Some(i) => items[i].0.clone(),
                None => self.bind_expr(e, input_schema, false)?,
            },
            ast::Expr::Identifier(id)
                if resolve_column(input_schema, None, &ident_name(id)).is_err() =>
            {
                match self.output_reference(e, output_names)? {
                    Some(i) => items[i].0.clone(),
                    None => self.bind_expr(e, input_schema, false)?,
                }
            }
            _ => self.bind_expr(e, input_schema, false)?,
        };
        if bound.has_aggregate() {
            return Err(Error::Grouping(
                "aggregate functions are not allowed in GROUP BY".into(),
            ));
        }
        Ok(bound)
    }

    /// The set-returning calls that make up whole SELECT items (`unnest(a)`,
    /// `generate_subscripts(a, 1) AS ord`), bound into a ProjectSet over
    /// `plan`; for each item that is one, its column in the new plan and name.
    #[allow(clippy::type_complexity)]
    fn bind_set_functions(
        &mut self,
        projection: &[SelectItem],
        plan: LogicalPlan,
    ) -> Result<(LogicalPlan, Vec<Option<(usize, String)>>)> {
        use crate::logical::SetFunction;
        let schema = plan.schema().clone();
        let mut functions = Vec::new();
        let mut fields = schema.fields.clone();
        let mut columns = Vec::with_capacity(projection.len());
        for item in projection {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident_name(alias))),
                _ => {
                    columns.push(None);
                    continue;
                }
            };
            let ast::Expr::Function(f) = e else {
                columns.push(None);
                continue;
            };
            let name = object_name_parts(&f.name).join(".").to_ascii_lowercase();
            let name = name.trim_start_matches("pg_catalog.");
            if !matches!(name, "unnest" | "generate_subscripts" | "generate_series")
                || f.over.is_some()
            {
                columns.push(None);
                continue;
            }
            let FunctionArguments::List(list) = &f.args else {
                columns.push(None);
                continue;
            };
            let mut args = Vec::new();
            for a in &list.args {
                match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => {
                        args.push(self.bind_expr(x, &schema, false)?)
                    }
                    other => {
                        return Err(Error::NotSupported(format!("argument {other} of {name}")))
                    }
                }
            }
            let given = args.len();
            let arity_error = || {
                Error::undefined_function(format!(
                    "function {name} with {given} arguments does not exist"
                ))
            };
            let (function, data_type) = match name {
                "unnest" => {
                    let [array] = args.as_slice() else {
                        return Err(arity_error());
                    };
                    let element = match array {
                        Expr::Column(i) => column_element_type(&plan, *i),
                        _ => None,
                    }
                    .or_else(|| crate::array::element_type(&array.data_type(&schema)).cloned())
                    .unwrap_or(DataType::Utf8);
                    let array = self.explicit_cast(array.clone(), &schema, &DataType::Utf8)?;
                    (
                        SetFunction::Unnest {
                            array,
                            element: element.clone(),
                        },
                        element,
                    )
                }
                "generate_subscripts" => {
                    if args.len() != 2 {
                        return Err(arity_error());
                    }
                    let array = self.explicit_cast(args[0].clone(), &schema, &DataType::Utf8)?;
                    (SetFunction::Subscripts { array }, DataType::Int32)
                }
                _ => {
                    if !(2..=3).contains(&args.len()) {
                        return Err(arity_error());
                    }
                    let timestamp = args.iter().find_map(|a| match a.data_type(&schema) {
                        t @ DataType::Timestamp(..) => Some(t),
                        _ => None,
                    });
                    if let Some(ts) = timestamp {
                        // generate_series(start, stop, step interval): a
                        // timestamp (with time zone if either end has one).
                        let [start, stop, step] =
                            <[Expr; 3]>::try_from(args).map_err(|_| arity_error())?;
                        let tz = [&start, &stop]
                            .iter()
                            .find_map(|a| match a.data_type(&schema) {
                                DataType::Timestamp(_, Some(z)) => Some(z),
                                _ => None,
                            });
                        let ts = match (ts, tz) {
                            (DataType::Timestamp(u, _), Some(z)) => DataType::Timestamp(u, Some(z)),
                            (t, _) => t,
                        };
                        let interval = DataType::Interval(IntervalUnit::MonthDayNano);
                        (
                            SetFunction::Series {
                                start: self.coerce(start, &schema, &ts)?,
                                stop: self.coerce(stop, &schema, &ts)?,
                                step: Some(self.coerce(step, &schema, &interval)?),
                            },
                            ts,
                        )
                    } else {
                        self.integer_series(args, &schema, arity_error)?
                    }
                }
            };
            let output = alias.unwrap_or_else(|| name.to_string());
            columns.push(Some((fields.len(), output.clone())));
            fields.push(PlanField {
                qualifier: None,
                name: output,
                data_type,
                hidden: true,
            });
            functions.push(function);
        }
        if functions.is_empty() {
            return Ok((plan, columns));
        }
        let plan = LogicalPlan::ProjectSet {
            input: Box::new(plan),
            functions,
            schema: PlanSchema { fields },
        };
        Ok((plan, columns))
    }

    /// `generate_series(start, stop [, step])` over integers in the SELECT
    /// list: integer when every argument is, else bigint.
    fn integer_series(
        &mut self,
        args: Vec<Expr>,
        schema: &PlanSchema,
        arity_error: impl Fn() -> Error,
    ) -> Result<(crate::logical::SetFunction, DataType)> {
        if args
            .iter()
            .any(|a| !is_numeric(&a.data_type(schema)) && !is_untyped(a))
        {
            return Err(Error::undefined_function(
                "function generate_series does not exist for these argument types",
            ));
        }
        let ty = if args.iter().all(|a| a.data_type(schema) == DataType::Int32) {
            DataType::Int32
        } else {
            DataType::Int64
        };
        let mut bound = args
            .into_iter()
            .map(|a| self.coerce(a, schema, &DataType::Int64))
            .collect::<Result<Vec<_>>>()?
            .into_iter();
        let (Some(start), Some(stop)) = (bound.next(), bound.next()) else {
            return Err(arity_error());
        };
        Ok((
            crate::logical::SetFunction::Series {
                start,
                stop,
                step: bound.next(),
            },
            ty,
        ))
    }

    /// Binds a boolean condition (WHERE, ON): aggregates are not allowed.
    fn bind_predicate(&mut self, e: &ast::Expr, schema: &PlanSchema, clause: &str) -> Result<Expr> {
        let bound = self.bind_expr(e, schema, false)?;
        if bound.has_aggregate() {
            return Err(Error::Grouping(format!(
                "aggregate functions are not allowed in {clause}"
            )));
        }
        self.require_boolean(bound, schema, clause)
    }

    fn bind_predicate_with_aggs(&mut self, e: &ast::Expr, schema: &PlanSchema) -> Result<Expr> {
        let bound = self.bind_expr(e, schema, true)?;
        self.require_boolean(bound, schema, "HAVING")
    }

    fn require_boolean(&mut self, e: Expr, schema: &PlanSchema, clause: &str) -> Result<Expr> {
        match e.data_type(schema) {
            DataType::Boolean => Ok(e),
            DataType::Null => self.coerce(e, schema, &DataType::Boolean),
            DataType::Utf8 if is_untyped(&e) => self.coerce(e, schema, &DataType::Boolean),
            other => Err(Error::DatatypeMismatch(format!(
                "argument of {clause} must be type boolean, not type {}",
                sql_type_name(&other)
            ))),
        }
    }

    /// Binds an expression over `schema`; aggregate calls are allowed when `allow_agg`.
    pub fn bind_expr(
        &mut self,
        e: &ast::Expr,
        schema: &PlanSchema,
        allow_agg: bool,
    ) -> Result<Expr> {
        // Binding, optimizing and evaluating an expression each recurse once
        // per level: a bound on the depth keeps any statement within a
        // worker's stack (an overflow would abort the whole server).
        self.depth += 1;
        let bound = if self.depth > MAX_EXPRESSION_DEPTH {
            Err(Error::StackDepth(format!(
                "expressions nested more than {MAX_EXPRESSION_DEPTH} deep"
            )))
        } else {
            grow_stack(|| self.bind_expr_nested(e, schema, allow_agg))
        };
        self.depth -= 1;
        bound
    }

    fn bind_expr_nested(
        &mut self,
        e: &ast::Expr,
        schema: &PlanSchema,
        allow_agg: bool,
    ) -> Result<Expr> {
        use ast::Expr as A;
        macro_rules! bind {
            ($x:expr) => {
                self.bind_expr($x, schema, allow_agg)
            };
        }
        Ok(match e {
            A::Identifier(id) => {
                let name = ident_name(id);
                match resolve_column(schema, None, &name) {
                    Ok(i) => Expr::Column(i),
                    Err(err) => {
                        // Keyword-like niladic functions parse as identifiers.
                        match name.as_str() {
                            "current_timestamp" | "localtimestamp" | "current_date" => {
                                return self.bind_niladic(&name)
                            }
                            "current_user" | "session_user" | "user" | "current_role"
                            | "current_schema" | "current_catalog" => {
                                let f = if name == "current_catalog" {
                                    "current_database"
                                } else {
                                    name.as_str()
                                };
                                if let Some(e) = self.bind_session_function(f, &[])? {
                                    return Ok(e);
                                }
                                return Err(err);
                            }
                            _ => return self.outer_column(None, &name).ok_or(err),
                        }
                    }
                }
            }
            A::CompoundIdentifier(parts) => {
                let names: Vec<String> = parts.iter().map(ident_name).collect();
                let (q, c) = match names.as_slice() {
                    [q, c] | [_, q, c] => (q, c),
                    _ => return Err(Error::UndefinedColumn(names.join("."))),
                };
                match resolve_column(schema, Some(q), c) {
                    Ok(i) => Expr::Column(i),
                    Err(err) => return self.outer_column(Some(q), c).ok_or(err),
                }
            }
            A::Value(v) => match &v.value {
                Value::Placeholder(p) => self.bind_placeholder(p)?,
                other => bind_value(other)?,
            },
            A::Nested(inner) => bind!(inner)?,
            A::TypedString(ts) => {
                let text = match &ts.value.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                let to = sql_to_arrow_type(&ts.data_type)?;
                let l = untyped_text(&text);
                self.coerce(l, schema, &to)?
            }
            A::Interval(iv) => self.bind_interval(iv)?,
            A::UnaryOp { op, expr } => {
                let inner = bind!(expr)?;
                match op {
                    UnaryOperator::Not => {
                        let b = self.require_boolean(inner, schema, "NOT")?;
                        Expr::Not(Box::new(b))
                    }
                    UnaryOperator::Minus => {
                        let inner = if is_untyped(&inner) {
                            self.coerce(inner, schema, &DataType::Float64)?
                        } else {
                            inner
                        };
                        match inner {
                            Expr::Literal(l) => {
                                let v = arrow::compute::kernels::numeric::neg(&l.value)?;
                                lit(v)
                            }
                            other => {
                                let t = other.data_type(schema);
                                if !is_numeric(&t) && !matches!(t, DataType::Interval(_)) {
                                    return Err(Error::undefined_function(format!(
                                        "operator does not exist: - {}",
                                        sql_type_name(&t)
                                    )));
                                }
                                Expr::Negate(Box::new(other))
                            }
                        }
                    }
                    UnaryOperator::Plus => inner,
                    other => return Err(Error::NotSupported(format!("operator {other}"))),
                }
            }
            A::BinaryOp { left, op, right } => {
                let l = bind!(left)?;
                let r = bind!(right)?;
                self.binary(op, l, r, schema)?
            }
            A::IsNull(x) => Expr::IsNull {
                expr: Box::new(bind!(x)?),
                negated: false,
            },
            A::IsNotNull(x) => Expr::IsNull {
                expr: Box::new(bind!(x)?),
                negated: true,
            },
            A::IsTrue(x) | A::IsNotTrue(x) | A::IsFalse(x) | A::IsNotFalse(x) => {
                let inner = bind!(x)?;
                let inner = self.require_boolean(inner, schema, "IS TRUE")?;
                let want = matches!(e, A::IsTrue(_) | A::IsNotTrue(_));
                let negated = matches!(e, A::IsNotTrue(_) | A::IsNotFalse(_));
                Expr::Binary {
                    op: if negated {
                        BinaryOp::IsDistinctFrom
                    } else {
                        BinaryOp::IsNotDistinctFrom
                    },
                    left: Box::new(inner),
                    right: Box::new(lit(Arc::new(BooleanArray::from(vec![want])))),
                }
            }
            A::IsDistinctFrom(a, b) => {
                let (a, b) = (bind!(a)?, bind!(b)?);
                self.comparison(BinaryOp::IsDistinctFrom, a, b, schema)?
            }
            A::IsNotDistinctFrom(a, b) => {
                let (a, b) = (bind!(a)?, bind!(b)?);
                self.comparison(BinaryOp::IsNotDistinctFrom, a, b, schema)?
            }
            A::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = bind!(expr)?;
                let lo = bind!(low)?;
                let hi = bind!(high)?;
                let ge = self.comparison(BinaryOp::GtEq, x.clone(), lo, schema)?;
                let le = self.comparison(BinaryOp::LtEq, x, hi, schema)?;
                let both = and(ge, le);
                if *negated {
                    Expr::Not(Box::new(both))
                } else {
                    both
                }
            }
            A::In {
                expr,
                target,
                negated,
                ..
            } => match target {
                ast::InTarget::List(list) => {
                    let x = bind!(expr)?;
                    let items = list
                        .iter()
                        .map(|x| self.bind_expr(x, schema, allow_agg))
                        .collect::<Result<Vec<_>>>()?;
                    let mut all = vec![x];
                    all.extend(items);
                    let ty = common_type(&all, schema, "IN")?;
                    let mut all = all
                        .into_iter()
                        .map(|e| self.coerce(e, schema, &ty))
                        .collect::<Result<Vec<_>>>()?;
                    let x = all.remove(0);
                    Expr::InList {
                        expr: Box::new(x),
                        list: all,
                        negated: *negated,
                    }
                }
                ast::InTarget::Subquery(q) => {
                    let x = bind!(expr)?;
                    let plan = self.bind_subquery(q, schema)?;
                    Expr::Subquery {
                        kind: SubqueryKind::In {
                            expr: Box::new(x),
                            negated: *negated,
                        },
                        plan,
                    }
                }
                _ => return Err(Error::NotSupported("IN UNNEST".into())),
            },
            A::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            }
            | A::ILike {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            } => {
                if *any {
                    return Err(Error::NotSupported("LIKE ANY".into()));
                }
                if let Some(esc) = escape_char {
                    if esc.to_string().trim_matches('\'') != "\\" {
                        return Err(Error::NotSupported(
                            "LIKE ... ESCAPE other than backslash".into(),
                        ));
                    }
                }
                let x = bind!(expr)?;
                let p = bind!(pattern)?;
                let x = self.coerce_text(x, schema, "LIKE")?;
                let p = self.coerce_text(p, schema, "LIKE")?;
                Expr::Like {
                    expr: Box::new(x),
                    pattern: Box::new(p),
                    negated: *negated,
                    case_insensitive: matches!(e, A::ILike { .. }),
                }
            }
            A::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() || matches!(kind, CastKind::TryCast | CastKind::SafeCast) {
                    return Err(Error::NotSupported(format!("{kind:?}")));
                }
                let inner = bind!(expr)?;
                let type_name = data_type.to_string().to_lowercase();
                let type_name = type_name.trim_start_matches("pg_catalog.");
                match type_name {
                    "regclass" | "regtype" => {
                        if matches!(inner.data_type(schema), DataType::Utf8 | DataType::Null) {
                            use crate::logical::CatalogFunction as C;
                            let f = if type_name == "regclass" {
                                C::RegclassOid
                            } else {
                                C::RegtypeOid
                            };
                            self.call_scalar(ScalarFunction::Catalog(f), vec![inner], schema)?
                        } else {
                            self.explicit_cast(inner, schema, &DataType::UInt32)?
                        }
                    }
                    "regproc" | "regprocedure"
                        if matches!(inner.data_type(schema), DataType::Utf8 | DataType::Null) =>
                    {
                        // pg_type's function columns hold names, so a function name
                        // stays one (drivers test `typinput = 'array_in'::regproc`).
                        self.value_shapes_plan(&inner, "a regproc")?;
                        match const_text(&inner) {
                            Some(name) => lit(Arc::new(StringArray::from(vec![name
                                .trim_start_matches("pg_catalog.")
                                .to_string()]))),
                            None => self.explicit_cast(inner, schema, &DataType::Utf8)?,
                        }
                    }
                    "numeric" | "decimal" => {
                        // A bare numeric keeps an exact operand's scale: an
                        // integer's 0, a numeric's own, a literal's written one.
                        let from = inner.data_type(schema);
                        self.value_shapes_plan(&inner, "a numeric's scale")?;
                        let scale = match (&from, const_text(&inner)) {
                            (DataType::Int32 | DataType::Int64 | DataType::UInt32, _) => 0,
                            (DataType::Decimal128(_, s), _) => *s,
                            (DataType::Utf8 | DataType::Null, Some(t)) => {
                                crate::numeric::text_scale(&t)
                            }
                            _ => crate::numeric::DIVISION_SCALE,
                        };
                        self.explicit_cast(inner, schema, &crate::numeric::numeric(scale))?
                    }
                    _ => {
                        let to = sql_to_arrow_type(data_type)?;
                        self.explicit_cast(inner, schema, &to)?
                    }
                }
            }
            A::Extract { field, expr, .. } => {
                let f = date_field(field)?;
                let x = bind!(expr)?;
                let x = self.temporal_arg(x, schema, "extract")?;
                Expr::Function {
                    func: ScalarFunction::Extract(f),
                    args: vec![x],
                }
            }
            A::Ceil { expr, .. } | A::Floor { expr, .. } => {
                let x = bind!(expr)?;
                let func = if matches!(e, A::Ceil { .. }) {
                    ScalarFunction::Ceil
                } else {
                    ScalarFunction::Floor
                };
                self.call_scalar(func, vec![x], schema)?
            }
            A::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![bind!(expr)?];
                args.push(match substring_from {
                    Some(f) => bind!(f)?,
                    None => lit(Arc::new(Int64Array::from(vec![1]))),
                });
                if let Some(f) = substring_for {
                    args.push(bind!(f)?);
                }
                self.call_scalar(ScalarFunction::Substring, args, schema)?
            }
            A::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    return Err(Error::NotSupported("TRIM with a character list".into()));
                }
                let mut args = vec![bind!(expr)?];
                if let Some(w) = trim_what {
                    args.push(bind!(w)?);
                }
                let func = match trim_where {
                    Some(ast::TrimWhereField::Leading) => ScalarFunction::LTrim,
                    Some(ast::TrimWhereField::Trailing) => ScalarFunction::RTrim,
                    _ => ScalarFunction::Trim,
                };
                self.call_scalar(func, args, schema)?
            }
            A::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut branches = Vec::new();
                let operand = operand
                    .as_ref()
                    .map(|o| self.bind_expr(o, schema, allow_agg))
                    .transpose()?;
                for cw in conditions {
                    let c = bind!(&cw.condition)?;
                    let c = match &operand {
                        Some(o) => self.comparison(BinaryOp::Eq, o.clone(), c, schema)?,
                        None => self.require_boolean(c, schema, "CASE/WHEN")?,
                    };
                    let r = bind!(&cw.result)?;
                    branches.push((c, r));
                }
                let else_expr = else_result
                    .as_ref()
                    .map(|x| self.bind_expr(x, schema, allow_agg))
                    .transpose()?;
                let mut results: Vec<Expr> = branches.iter().map(|(_, r)| r.clone()).collect();
                results.extend(else_expr.iter().cloned());
                let ty = common_type(&results, schema, "CASE")?;
                let branches = branches
                    .into_iter()
                    .map(|(c, r)| Ok((c, self.coerce(r, schema, &ty)?)))
                    .collect::<Result<Vec<_>>>()?;
                let else_expr = else_expr
                    .map(|x| self.coerce(x, schema, &ty))
                    .transpose()?
                    .map(Box::new);
                Expr::Case {
                    branches,
                    else_expr,
                }
            }
            A::Function(f) => self.bind_function(f, schema, allow_agg)?,
            A::CompoundFieldAccess { root, access_chain } => {
                let mut value = bind!(root)?;
                for access in access_chain {
                    let ast::AccessExpr::Subscript(ast::Subscript::Index { index }) = access else {
                        return Err(Error::NotSupported(format!("field access {access}")));
                    };
                    let i = bind!(index)?;
                    let i = self.coerce(i, schema, &DataType::Int64)?;
                    if matches!(value.data_type(schema), DataType::List(_)) {
                        value = Expr::Function {
                            func: ScalarFunction::ArraySubscript,
                            args: vec![value, i],
                        };
                        continue;
                    }
                    let v = self.explicit_cast(value, schema, &DataType::Utf8)?;
                    use crate::logical::CatalogFunction as C;
                    value = Expr::Function {
                        func: ScalarFunction::Catalog(C::ArrayElement),
                        args: vec![v, i],
                    };
                }
                value
            }
            // Sluice compares text by bytes (the C collation) whatever is asked.
            A::Collate { expr, .. } => bind!(expr)?,
            A::Subquery(q) => {
                let plan = self.bind_subquery(q, schema)?;
                Expr::Subquery {
                    kind: SubqueryKind::Scalar,
                    plan,
                }
            }
            A::Exists { subquery, negated } => {
                let plan = self.bind_subquery(subquery, schema)?;
                Expr::Subquery {
                    kind: SubqueryKind::Exists { negated: *negated },
                    plan,
                }
            }
            A::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | A::AllOp {
                left,
                compare_op,
                right,
            } => {
                let any = matches!(e, A::AnyOp { .. });
                let negated = match (compare_op, any) {
                    (BinaryOperator::Eq, true) => false,
                    (BinaryOperator::NotEq, false) => true,
                    _ => {
                        return Err(Error::NotSupported(format!(
                            "{compare_op} {}",
                            if any { "ANY" } else { "ALL" }
                        )))
                    }
                };
                let x = bind!(left)?;
                match right.as_ref() {
                    A::Subquery(q) => {
                        let plan = self.bind_subquery(q, schema)?;
                        Expr::Subquery {
                            kind: SubqueryKind::In {
                                expr: Box::new(x),
                                negated,
                            },
                            plan,
                        }
                    }
                    other if array_placeholder(other).is_some() => {
                        let p = array_placeholder(other).unwrap_or_default();
                        match self.bind_array_param(p, &x, schema)? {
                            Some(items) => self.in_list(x, items, negated, schema)?,
                            None => lit(arrow::array::new_null_array(&DataType::Boolean, 1)),
                        }
                    }
                    other => match self.bind_array_items(other, schema, allow_agg) {
                        Ok(items) => self.in_list(x, items, negated, schema)?,
                        Err(_) => {
                            // An array held in a column, in its text form.
                            use crate::logical::CatalogFunction as C;
                            let arr = bind!(other)?;
                            let x = self.explicit_cast(x, schema, &DataType::Utf8)?;
                            let arr = self.explicit_cast(arr, schema, &DataType::Utf8)?;
                            let test = Expr::Function {
                                func: ScalarFunction::Catalog(C::ArrayContains),
                                args: vec![x, arr],
                            };
                            if negated {
                                Expr::Not(Box::new(test))
                            } else {
                                test
                            }
                        }
                    },
                }
            }
            A::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                let ts = bind!(timestamp)?;
                let zone = bind!(time_zone)?;
                // A timestamp without a zone, or text, meets the overload
                // taking a local time; a timestamptz the one taking an instant.
                let ts = match ts.data_type(schema) {
                    DataType::Timestamp(..) => ts,
                    DataType::Date32 => self.coerce(
                        ts,
                        schema,
                        &DataType::Timestamp(TimeUnit::Microsecond, None),
                    )?,
                    _ => {
                        self.coerce(ts, schema, &crate::builtins::Type::TimestampTz.data_type())?
                    }
                };
                self.call_builtin("timezone", vec![zone, ts], schema)?
            }
            A::Array(a) => {
                let items = a
                    .elem
                    .iter()
                    .map(|x| bind!(x))
                    .collect::<Result<Vec<_>>>()?;
                let ty = if items.is_empty() {
                    DataType::Utf8
                } else {
                    common_type(&items, schema, "ARRAY")?
                };
                let items = items
                    .into_iter()
                    .map(|i| self.coerce(i, schema, &ty))
                    .collect::<Result<Vec<_>>>()?;
                Expr::Function {
                    func: ScalarFunction::MakeArray,
                    args: items,
                }
            }
            A::Position { expr, r#in } => {
                let (needle, haystack) = (bind!(expr)?, bind!(r#in)?);
                self.call_builtin("strpos", vec![haystack, needle], schema)?
            }
            other => return Err(Error::NotSupported(format!("expression {other}"))),
        })
    }

    /// A `pg_catalog` / `information_schema` / `sluice` table named by `parts`, with the
    /// qualifier its columns take. A stored table of the same (unqualified) name wins
    /// for names outside `pg_*`.
    fn virtual_table(
        &self,
        parts: &[String],
    ) -> Result<Option<(String, arrow::array::RecordBatch)>> {
        let (schema, name) = match parts {
            [n] if n.starts_with("pg_") => (None, n.as_str()),
            [s, n] => (Some(s.as_str()), n.as_str()),
            [_, s, n] => (Some(s.as_str()), n.as_str()),
            _ => return Ok(None),
        };
        if matches!(schema, Some(s) if !matches!(s, "pg_catalog" | "information_schema" | "sluice"))
        {
            return Ok(None);
        }
        if schema.is_none() && self.catalog.table(name).is_ok() {
            return Ok(None);
        }
        match crate::catalog::virtual_table(schema, name, self.catalog, self.session) {
            Some(batch) => Ok(Some((name.to_string(), batch?))),
            None => Ok(None),
        }
    }

    /// A function in FROM: `generate_series(start, stop [, step])`.
    fn bind_table_function(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        alias: Option<&ast::TableAlias>,
    ) -> Result<LogicalPlan> {
        let parts = object_name_parts(name);
        if parts.last().map(String::as_str) == Some("unnest") {
            return self.bind_unnest(args, alias);
        }
        if parts.last().map(String::as_str) != Some("generate_series") {
            return self.bind_scalar_function_relation(name, args, alias);
        }
        // Arguments may read the enclosing row of a correlated subquery; they are
        // evaluated when the plan runs.
        let scope = PlanSchema::default();
        let mut bound = Vec::new();
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    bound.push(self.bind_expr(e, &scope, false)?)
                }
                other => return Err(Error::NotSupported(format!("argument {other}"))),
            }
        }
        if !(2..=3).contains(&bound.len()) {
            return Err(Error::undefined_function(
                "generate_series takes two or three arguments",
            ));
        }
        let ty = match common_type(&bound[..2], &scope, "generate_series")? {
            t @ (DataType::Int32 | DataType::Int64 | DataType::Timestamp(..)) => t,
            DataType::Utf8 | DataType::Null => DataType::Int64,
            DataType::Date32 => DataType::Timestamp(TimeUnit::Microsecond, None),
            other => {
                return Err(Error::undefined_function(format!(
                    "function generate_series({}) does not exist",
                    sql_type_name(&other)
                )))
            }
        };
        let start = self.coerce(bound[0].clone(), &scope, &ty)?;
        let stop = self.coerce(bound[1].clone(), &scope, &ty)?;
        let is_time = matches!(ty, DataType::Timestamp(..));
        let step = match bound.get(2) {
            None if is_time => {
                return Err(Error::undefined_function(
                    "generate_series over timestamps needs an interval step",
                ))
            }
            None => None,
            Some(s) if is_time => Some(self.coerce(
                s.clone(),
                &scope,
                &DataType::Interval(IntervalUnit::MonthDayNano),
            )?),
            Some(s) => Some(self.coerce(s.clone(), &scope, &ty)?),
        };
        let alias_name = alias.map(|a| ident_name(&a.name));
        let column = alias
            .and_then(|a| a.columns.first().map(|c| ident_name(&c.name)))
            .or_else(|| alias_name.clone())
            .unwrap_or_else(|| "generate_series".into());
        Ok(LogicalPlan::GenerateSeries {
            start,
            stop,
            step,
            schema: PlanSchema {
                fields: vec![PlanField {
                    qualifier: Some(alias_name.unwrap_or_else(|| "generate_series".into())),
                    name: column,
                    data_type: ty,
                    hidden: false,
                }],
            },
        })
    }

    /// `unnest(array)` in FROM: one row per element of an array (text form).
    fn bind_unnest(
        &mut self,
        args: &[FunctionArg],
        alias: Option<&ast::TableAlias>,
    ) -> Result<LogicalPlan> {
        let [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] = args else {
            return Err(Error::NotSupported("unnest of several arrays".into()));
        };
        let scope = PlanSchema::default();
        let value = self.bind_expr(e, &scope, false)?;
        // A list's elements keep their type; an array in text form gives text.
        let element = crate::array::element_type(&value.data_type(&scope))
            .cloned()
            .unwrap_or(DataType::Utf8);
        let array = self.explicit_cast(value, &scope, &DataType::Utf8)?;
        let alias_name = alias.map(|a| ident_name(&a.name));
        let column = alias
            .and_then(|a| a.columns.first().map(|c| ident_name(&c.name)))
            .or_else(|| alias_name.clone())
            .unwrap_or_else(|| "unnest".into());
        let field = PlanField {
            qualifier: Some(alias_name.unwrap_or_else(|| "unnest".into())),
            name: column,
            data_type: DataType::Utf8,
            hidden: false,
        };
        let unnest = LogicalPlan::Unnest {
            array,
            schema: PlanSchema {
                fields: vec![field.clone()],
            },
        };
        if element == DataType::Utf8 {
            return Ok(unnest);
        }
        Ok(LogicalPlan::Project {
            input: Box::new(unnest),
            exprs: vec![Expr::Cast {
                expr: Box::new(Expr::Column(0)),
                to: element.clone(),
            }],
            schema: PlanSchema {
                fields: vec![PlanField {
                    data_type: element,
                    ..field
                }],
            },
        })
    }

    /// A scalar function in FROM is a relation of one row and one column, as in
    /// PostgreSQL (`FROM string_to_array(current_setting('search_path'), ',') s`).
    fn bind_scalar_function_relation(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        alias: Option<&ast::TableAlias>,
    ) -> Result<LogicalPlan> {
        let call = ast::Expr::Function(ast::Function {
            name: name.clone(),
            uses_odbc_syntax: false,
            parameters: FunctionArguments::None,
            args: FunctionArguments::List(ast::FunctionArgumentList {
                duplicate_treatment: None,
                args: args.to_vec(),
                clauses: vec![],
            }),
            within_group: vec![],
            filter: None,
            null_treatment: None,
            over: None,
        });
        let value = self.bind_expr(&call, &PlanSchema::default(), false)?;
        let fname = object_name_parts(name).last().cloned().unwrap_or_default();
        let alias_name = alias.map(|a| ident_name(&a.name));
        let column = alias
            .and_then(|a| a.columns.first().map(|c| ident_name(&c.name)))
            .or_else(|| alias_name.clone())
            .unwrap_or_else(|| fname.clone());
        let data_type = value.data_type(&PlanSchema::default());
        Ok(LogicalPlan::Values {
            schema: PlanSchema {
                fields: vec![PlanField {
                    qualifier: Some(alias_name.unwrap_or(fname)),
                    name: column,
                    data_type,
                    hidden: false,
                }],
            },
            rows: vec![vec![value]],
        })
    }

    /// A column of the enclosing query, for a correlated subquery.
    fn outer_column(&self, qualifier: Option<&str>, name: &str) -> Option<Expr> {
        let outer = self.outer.last()?;
        let index = resolve_column(outer, qualifier, name).ok()?;
        Some(Expr::OuterColumn {
            index,
            data_type: outer.fields[index].data_type.clone(),
        })
    }

    /// Binds a subquery whose expressions may refer to `schema`, the enclosing input.
    fn bind_subquery(
        &mut self,
        q: &ast::Query,
        schema: &PlanSchema,
    ) -> Result<crate::logical::SubqueryPlan> {
        if !self.outer.is_empty() && !schema.fields.is_empty() {
            // A subquery inside a subquery: its outer scope is the middle query.
        }
        self.outer.push(schema.clone());
        let plan = self.bind_query(q);
        self.outer.pop();
        let plan = plan?;
        if plan.schema().fields.len() != 1 {
            return Err(Error::Syntax("subquery must return only one column".into()));
        }
        Ok(crate::logical::SubqueryPlan(Arc::new(plan)))
    }

    /// The elements of an array written as `ARRAY[a, b]` or `'{a,b}'`.
    fn bind_array_items(
        &mut self,
        e: &ast::Expr,
        schema: &PlanSchema,
        allow_agg: bool,
    ) -> Result<Vec<Expr>> {
        match e {
            ast::Expr::Array(a) => a
                .elem
                .iter()
                .map(|x| self.bind_expr(x, schema, allow_agg))
                .collect(),
            ast::Expr::Nested(inner) => self.bind_array_items(inner, schema, allow_agg),
            ast::Expr::Cast { expr, .. } => self.bind_array_items(expr, schema, allow_agg),
            ast::Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(text) => Ok(parse_array_text(text)
                    .into_iter()
                    .map(|item| match item {
                        Some(t) => untyped_text(&t),
                        None => null_literal(),
                    })
                    .collect()),
                other => Err(Error::NotSupported(format!("ANY({other})"))),
            },
            other => Err(Error::NotSupported(format!("ANY({other})"))),
        }
    }

    fn in_list(
        &mut self,
        x: Expr,
        items: Vec<Expr>,
        negated: bool,
        schema: &PlanSchema,
    ) -> Result<Expr> {
        if items.is_empty() {
            return Ok(lit(Arc::new(BooleanArray::from(vec![negated]))));
        }
        let mut all = vec![x];
        all.extend(items);
        let ty = common_type(&all, schema, "IN")?;
        let mut all = all
            .into_iter()
            .map(|e| self.coerce(e, schema, &ty))
            .collect::<Result<Vec<_>>>()?;
        let x = all.remove(0);
        Ok(Expr::InList {
            expr: Box::new(x),
            list: all,
            negated,
        })
    }

    /// `scan` with what the table hides applied: retention (`time >= now -
    /// retention`, with the statement's `now()`, so `count(*)` and `count(*) WHERE
    /// ts >= now() - interval '<retention>'` agree to the row), and for an upsert
    /// table with a delete column, the rows that deleted their key (`delete IS
    /// DISTINCT FROM true`: kept, so an older row cannot bring the key back, but
    /// never seen). Retention's rows are invisible at the row, before eviction
    /// drops the segments that hold only such rows; as a filter on the time
    /// column it prunes with the zone maps like any other.
    fn hidden_rows_filter(
        &mut self,
        table: &sluice_storage::Table,
        scan: LogicalPlan,
    ) -> LogicalPlan {
        let mut hidden = Vec::new();
        if let Some(column) = table.schema().upsert_config().and_then(|c| c.delete) {
            hidden.push(Expr::Binary {
                op: BinaryOp::IsDistinctFrom,
                left: Box::new(Expr::Column(column)),
                right: Box::new(Expr::literal(Arc::new(arrow::array::BooleanArray::from(
                    vec![true],
                )))),
            });
        }
        let time = table.schema().time_column_index();
        let retention = table.schema().options.retention_micros;
        if let (Some(retention_micros), Some(time)) = (retention, time) {
            let DataType::Timestamp(_, zone) = table.schema().columns[time].ty.arrow_type() else {
                return scan;
            };
            // A generic plan takes the cutoff at each execution.
            let slot = self.slot(Slot::RetentionCutoff {
                retention_micros,
                zone: zone.clone(),
            });
            let cutoff = slot.unwrap_or_else(|| {
                let cutoff = table
                    .retention_cutoff_at(self.now_micros)
                    .unwrap_or(i64::MIN);
                Expr::literal(Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(vec![cutoff])
                        .with_timezone_opt(zone),
                ))
            });
            hidden.push(Expr::Binary {
                op: BinaryOp::GtEq,
                left: Box::new(Expr::Column(time)),
                right: Box::new(cutoff),
            });
        }
        match crate::optimize::and_all(hidden) {
            Some(predicate) => LogicalPlan::Filter {
                input: Box::new(scan),
                predicate,
            },
            None => scan,
        }
    }

    fn bind_niladic(&mut self, name: &str) -> Result<Expr> {
        if let Some(now) = self.slot(Slot::Now) {
            // The same casts as below, made when each execution's time is known.
            let schema = PlanSchema::default();
            return match name {
                "current_date" => self.explicit_cast(now, &schema, &DataType::Date32),
                "localtimestamp" => self.explicit_cast(
                    now,
                    &schema,
                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                ),
                _ => Ok(now),
            };
        }
        let now = Arc::new(
            arrow::array::TimestampMicrosecondArray::from(vec![self.now_micros]).with_timezone(UTC),
        ) as ArrayRef;
        Ok(match name {
            "current_date" => lit(cast_array(&now, &DataType::Date32, self.zone)?),
            "localtimestamp" => lit(cast_array(
                &now,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
                self.zone,
            )?),
            _ => lit(now),
        })
    }

    fn bind_interval(&mut self, iv: &ast::Interval) -> Result<Expr> {
        let text = match iv.value.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                Value::Number(n, _) => n.clone(),
                other => return Err(Error::Syntax(format!("invalid interval {other}"))),
            },
            other => return Err(Error::NotSupported(format!("interval of {other}"))),
        };
        let text = match &iv.leading_field {
            Some(f) if iv.last_field.is_none() => {
                format!("{text} {}", f.to_string().to_lowercase())
            }
            _ => text,
        };
        let parsed = parse_interval(&text).map_err(|_| Error::invalid_text("interval", &text))?;
        Ok(lit(Arc::new(IntervalMonthDayNanoArray::from(vec![
            IntervalMonthDayNano::new(parsed.months, parsed.days, parsed.micros * 1000),
        ]))))
    }

    fn binary(
        &mut self,
        op: &BinaryOperator,
        l: Expr,
        r: Expr,
        schema: &PlanSchema,
    ) -> Result<Expr> {
        let bop = match op {
            BinaryOperator::Plus => BinaryOp::Plus,
            BinaryOperator::Minus => BinaryOp::Minus,
            BinaryOperator::Multiply => BinaryOp::Multiply,
            BinaryOperator::Divide => BinaryOp::Divide,
            BinaryOperator::Modulo => BinaryOp::Modulo,
            BinaryOperator::Eq => BinaryOp::Eq,
            BinaryOperator::NotEq => BinaryOp::NotEq,
            BinaryOperator::Lt => BinaryOp::Lt,
            BinaryOperator::LtEq => BinaryOp::LtEq,
            BinaryOperator::Gt => BinaryOp::Gt,
            BinaryOperator::GtEq => BinaryOp::GtEq,
            BinaryOperator::And => BinaryOp::And,
            BinaryOperator::Or => BinaryOp::Or,
            BinaryOperator::StringConcat => BinaryOp::Concat,
            BinaryOperator::PGRegexMatch => BinaryOp::RegexMatch,
            BinaryOperator::PGRegexIMatch => BinaryOp::RegexIMatch,
            BinaryOperator::PGRegexNotMatch => BinaryOp::RegexNotMatch,
            BinaryOperator::PGRegexNotIMatch => BinaryOp::RegexNotIMatch,
            BinaryOperator::PGCustomBinaryOperator(parts) => {
                let symbol = parts.last().map(String::as_str).unwrap_or_default();
                let mapped = match symbol {
                    "~" => BinaryOperator::PGRegexMatch,
                    "~*" => BinaryOperator::PGRegexIMatch,
                    "!~" => BinaryOperator::PGRegexNotMatch,
                    "!~*" => BinaryOperator::PGRegexNotIMatch,
                    "=" => BinaryOperator::Eq,
                    "<>" => BinaryOperator::NotEq,
                    "<" => BinaryOperator::Lt,
                    "<=" => BinaryOperator::LtEq,
                    ">" => BinaryOperator::Gt,
                    ">=" => BinaryOperator::GtEq,
                    "||" => BinaryOperator::StringConcat,
                    other => {
                        return Err(Error::undefined_function(format!(
                            "operator does not exist: {other}"
                        )))
                    }
                };
                return self.binary(&mapped, l, r, schema);
            }
            other => return Err(Error::NotSupported(format!("operator {other}"))),
        };
        match bop {
            BinaryOp::And | BinaryOp::Or => {
                let l = self.require_boolean(l, schema, bop.symbol())?;
                let r = self.require_boolean(r, schema, bop.symbol())?;
                Ok(Expr::Binary {
                    op: bop,
                    left: Box::new(l),
                    right: Box::new(r),
                })
            }
            o if o.is_regex() => {
                let l = self.coerce_text(l, schema, o.symbol())?;
                let r = self.coerce_text(r, schema, o.symbol())?;
                Ok(Expr::Binary {
                    op: o,
                    left: Box::new(l),
                    right: Box::new(r),
                })
            }
            BinaryOp::Concat => {
                let l = self.explicit_cast(l, schema, &DataType::Utf8)?;
                let r = self.explicit_cast(r, schema, &DataType::Utf8)?;
                Ok(Expr::Binary {
                    op: bop,
                    left: Box::new(l),
                    right: Box::new(r),
                })
            }
            o if o.is_comparison() => self.comparison(o, l, r, schema),
            _ => self.arithmetic(bop, l, r, schema),
        }
    }

    fn arithmetic(&mut self, op: BinaryOp, l: Expr, r: Expr, schema: &PlanSchema) -> Result<Expr> {
        // An untyped literal or parameter takes its type from the other side, as
        // PostgreSQL resolves an operator with one `unknown` operand.
        let (l, r) = match (is_untyped(&l), is_untyped(&r)) {
            (true, false) => {
                let t = unknown_operand_type(op, &r.data_type(schema), false)?;
                (self.coerce(l, schema, &t)?, r)
            }
            (false, true) => {
                let t = unknown_operand_type(op, &l.data_type(schema), true)?;
                (l, self.coerce(r, schema, &t)?)
            }
            (true, true) => {
                return Err(Error::AmbiguousFunction(format!(
                    "operator is not unique: unknown {} unknown",
                    op.symbol()
                )))
            }
            _ => (l, r),
        };
        let (lt, rt) = (l.data_type(schema), r.data_type(schema));
        let result = arithmetic_result_type(op, &lt, &rt).ok_or_else(|| {
            Error::undefined_function(format!(
                "operator does not exist: {} {} {}",
                sql_type_name(&lt),
                op.symbol(),
                sql_type_name(&rt)
            ))
        })?;
        let decimal = |t: &DataType| matches!(t, DataType::Decimal128(..));
        let (l, r) = if is_numeric(&lt)
            && is_numeric(&rt)
            && (decimal(&lt) || decimal(&rt))
            && lt != DataType::Float64
            && rt != DataType::Float64
        {
            // Each side keeps its own scale: the result's depends on both.
            let exact = |b: &mut Self, e: Expr, t: &DataType| {
                if decimal(t) {
                    Ok(e)
                } else {
                    b.coerce(e, schema, &crate::numeric::numeric(0))
                }
            };
            (exact(self, l, &lt)?, exact(self, r, &rt)?)
        } else if is_numeric(&lt) && is_numeric(&rt) {
            let w = wider_numeric(&lt, &rt);
            (self.coerce(l, schema, &w)?, self.coerce(r, schema, &w)?)
        } else if matches!(
            (&lt, &rt),
            (DataType::Date32, DataType::Interval(_)) | (DataType::Interval(_), DataType::Date32)
        ) {
            // date + interval is computed as timestamp + interval, as in PostgreSQL.
            (
                self.coerce_date_to_timestamp(l, schema)?,
                self.coerce_date_to_timestamp(r, schema)?,
            )
        } else if matches!(lt, DataType::Interval(_)) && is_numeric(&rt) {
            // PostgreSQL has only interval * float8 and interval / float8.
            (l, self.coerce(r, schema, &DataType::Float64)?)
        } else if is_numeric(&lt) && matches!(rt, DataType::Interval(_)) {
            // float8 * interval: the same product, with the interval first.
            return Ok(Expr::Binary {
                op,
                left: Box::new(r),
                right: Box::new(self.coerce(l, schema, &DataType::Float64)?),
            });
        } else if lt == DataType::Null || rt == DataType::Null {
            (
                self.coerce(l, schema, &result)?,
                self.coerce(r, schema, &result)?,
            )
        } else {
            (l, r)
        };
        Ok(Expr::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        })
    }

    fn coerce_date_to_timestamp(&mut self, e: Expr, schema: &PlanSchema) -> Result<Expr> {
        if e.data_type(schema) == DataType::Date32 {
            self.coerce(e, schema, &DataType::Timestamp(TimeUnit::Microsecond, None))
        } else {
            Ok(e)
        }
    }

    fn comparison(&mut self, op: BinaryOp, l: Expr, r: Expr, schema: &PlanSchema) -> Result<Expr> {
        let ty = common_type(&[l.clone(), r.clone()], schema, op.symbol())?;
        let l = self.coerce(l, schema, &ty)?;
        let r = self.coerce(r, schema, &ty)?;
        Ok(Expr::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        })
    }

    /// Implicit conversion of `e` to `to` (literals are converted now).
    pub fn coerce(&mut self, e: Expr, schema: &PlanSchema, to: &DataType) -> Result<Expr> {
        let from = e.data_type(schema);
        if &from == to {
            return Ok(match e {
                Expr::Literal(l) => {
                    if let Some(i) = l.param {
                        self.record_param_type(i, to);
                    }
                    Expr::Literal(Literal {
                        value: l.value,
                        untyped: false,
                        param: l.param,
                    })
                }
                other => other,
            });
        }
        let allowed = from == DataType::Null
            || is_untyped(&e)
            || (is_numeric(&from) && is_numeric(to) && wider_numeric(&from, to) == *to)
            || matches!(
                (&from, to),
                (
                    DataType::Timestamp(_, None),
                    DataType::Timestamp(_, Some(_))
                )
            )
            || matches!((&from, to), (DataType::Date32, DataType::Timestamp(..)));
        if !allowed {
            return Err(Error::DatatypeMismatch(format!(
                "cannot use {} as {}",
                sql_type_name(&from),
                sql_type_name(to)
            )));
        }
        self.explicit_cast(e, schema, to)
    }

    /// CAST: constants are converted at once (so a bad literal fails at plan time).
    fn explicit_cast(&mut self, e: Expr, schema: &PlanSchema, to: &DataType) -> Result<Expr> {
        if &e.data_type(schema) == to {
            // `'x'::text` is typed text from here on, no longer an open literal.
            return Ok(match e {
                Expr::Literal(l) => {
                    if let Some(i) = l.param {
                        self.record_param_type(i, to);
                    }
                    Expr::Literal(Literal {
                        value: l.value,
                        untyped: false,
                        param: l.param,
                    })
                }
                other => other,
            });
        }
        match e {
            Expr::Literal(l) => {
                if let Some(i) = l.param {
                    self.record_param_type(i, to);
                    // A parameter being described has no value yet; keep its place.
                    return Ok(Expr::Literal(Literal {
                        value: arrow::array::new_null_array(to, 1),
                        untyped: false,
                        param: Some(i),
                    }));
                }
                Ok(lit(cast_array(&l.value, to, self.zone)?))
            }
            other => {
                let from = other.data_type(schema);
                if from != DataType::Utf8
                    && *to != DataType::Utf8
                    && !arrow::compute::can_cast_types(&from, to)
                {
                    return Err(Error::CannotCast {
                        from: sql_type_name(&from),
                        to: sql_type_name(to),
                    });
                }
                Ok(Expr::Cast {
                    expr: Box::new(other),
                    to: to.clone(),
                })
            }
        }
    }

    fn coerce_text(&mut self, e: Expr, schema: &PlanSchema, what: &str) -> Result<Expr> {
        match e.data_type(schema) {
            DataType::Utf8 => self.coerce(e, schema, &DataType::Utf8),
            DataType::Null => self.coerce(e, schema, &DataType::Utf8),
            other => Err(Error::undefined_function(format!(
                "operator does not exist: {} {what} text",
                sql_type_name(&other)
            ))),
        }
    }

    fn numeric_arg(&mut self, e: Expr, schema: &PlanSchema) -> Result<Expr> {
        let t = e.data_type(schema);
        if is_numeric(&t) {
            return Ok(e);
        }
        if t == DataType::Null || is_untyped(&e) {
            return self.coerce(e, schema, &DataType::Float64);
        }
        Err(Error::undefined_function(format!(
            "function does not exist for argument type {}",
            sql_type_name(&t)
        )))
    }

    fn temporal_arg(&mut self, e: Expr, schema: &PlanSchema, f: &str) -> Result<Expr> {
        if is_open_param(&e) {
            // PostgreSQL has timestamp, timestamptz and interval forms of these and
            // will not choose among them for an unspecified parameter.
            return Err(Error::AmbiguousFunction(format!(
                "function {f}(unknown, unknown) is not unique"
            )));
        }
        match e.data_type(schema) {
            DataType::Timestamp(..) | DataType::Interval(_) | DataType::Date32 => Ok(e),
            DataType::Null => {
                self.coerce(e, schema, &DataType::Timestamp(TimeUnit::Microsecond, None))
            }
            DataType::Utf8 if is_untyped(&e) => {
                self.coerce(e, schema, &DataType::Timestamp(TimeUnit::Microsecond, None))
            }
            other => Err(Error::undefined_function(format!(
                "function {f}(unknown, {}) does not exist",
                sql_type_name(&other)
            ))),
        }
    }

    /// Checks and coerces arguments of a scalar function.
    fn call_scalar(
        &mut self,
        func: ScalarFunction,
        mut args: Vec<Expr>,
        schema: &PlanSchema,
    ) -> Result<Expr> {
        use ScalarFunction as F;
        let arity = |lo: usize, hi: usize, args: &Vec<Expr>| -> Result<()> {
            if args.len() < lo || args.len() > hi {
                return Err(Error::undefined_function(format!(
                    "function {} with {} arguments does not exist",
                    func.name(),
                    args.len()
                )));
            }
            Ok(())
        };
        match func {
            // Built by the binder with their arguments already typed.
            F::MakeArray | F::ArraySubscript => {}
            F::Lower | F::Upper | F::Length => {
                arity(1, 1, &args)?;
                args[0] = self.coerce_text(args[0].clone(), schema, func.name())?;
            }
            F::Concat => {
                arity(1, usize::MAX, &args)?;
                args = args
                    .into_iter()
                    .map(|a| self.explicit_cast(a, schema, &DataType::Utf8))
                    .collect::<Result<_>>()?;
            }
            F::Substring => {
                arity(2, 3, &args)?;
                let s = self.coerce_text(args[0].clone(), schema, "substring")?;
                let mut rest = vec![s];
                for a in args.drain(1..) {
                    rest.push(self.coerce(a, schema, &DataType::Int64)?);
                }
                args = rest;
            }
            F::Trim | F::LTrim | F::RTrim => {
                arity(1, 2, &args)?;
                args = args
                    .into_iter()
                    .map(|a| self.coerce_text(a, schema, func.name()))
                    .collect::<Result<_>>()?;
            }
            F::Replace => {
                arity(3, 3, &args)?;
                args = args
                    .into_iter()
                    .map(|a| self.coerce_text(a, schema, "replace"))
                    .collect::<Result<_>>()?;
            }
            F::Left | F::Right => {
                arity(2, 2, &args)?;
                let n = self.coerce(args.remove(1), schema, &DataType::Int64)?;
                args[0] = self.coerce_text(args[0].clone(), schema, func.name())?;
                args.push(n);
            }
            F::Coalesce | F::Greatest | F::Least => {
                arity(1, usize::MAX, &args)?;
                let ty = common_type(&args, schema, func.name())?;
                args = args
                    .into_iter()
                    .map(|a| self.coerce(a, schema, &ty))
                    .collect::<Result<_>>()?;
            }
            F::NullIf => {
                arity(2, 2, &args)?;
                let ty = common_type(&args, schema, "nullif")?;
                args = args
                    .into_iter()
                    .map(|a| self.coerce(a, schema, &ty))
                    .collect::<Result<_>>()?;
            }
            F::Abs => {
                arity(1, 1, &args)?;
                args[0] = self.numeric_arg(args[0].clone(), schema)?;
            }
            F::Floor | F::Ceil => {
                // PostgreSQL has these for double and numeric: an integer
                // argument is a double.
                arity(1, 1, &args)?;
                let x = self.numeric_arg(args[0].clone(), schema)?;
                args[0] = match x.data_type(schema) {
                    DataType::Decimal128(..) | DataType::Float64 => x,
                    _ => self.coerce(x, schema, &DataType::Float64)?,
                };
            }
            F::Round => {
                arity(1, 2, &args)?;
                let x = self.numeric_arg(args.remove(0), schema)?;
                let x = match x.data_type(schema) {
                    DataType::Decimal128(..) | DataType::Float64 => x,
                    _ => self.coerce(x, schema, &DataType::Float64)?,
                };
                let mut new = vec![x.clone()];
                if let Some(d) = args.pop() {
                    let d = self.coerce(d, schema, &DataType::Int64)?;
                    self.value_shapes_plan(&d, "a rounded numeric's scale")?;
                    let constant = matches!(d, Expr::Literal(_));
                    new.push(d);
                    if let (DataType::Decimal128(_, s), false) = (x.data_type(schema), constant) {
                        // Digits that vary: the result keeps the argument's scale.
                        return Ok(Expr::Cast {
                            expr: Box::new(Expr::Function { func, args: new }),
                            to: crate::numeric::numeric(s),
                        });
                    }
                }
                args = new;
            }
            F::DateTrunc => {
                arity(2, 2, &args)?;
                let unit = self.coerce_text(args.remove(0), schema, "date_trunc")?;
                let ts = self.temporal_arg(args.remove(0), schema, "date_trunc")?;
                let ts = if ts.data_type(schema) == DataType::Date32 {
                    self.coerce(
                        ts,
                        schema,
                        &DataType::Timestamp(TimeUnit::Microsecond, None),
                    )?
                } else {
                    ts
                };
                if matches!(ts.data_type(schema), DataType::Interval(_)) {
                    return Err(Error::NotSupported("date_trunc on an interval".into()));
                }
                args = vec![unit, ts];
            }
            F::ToTimestamp => {
                arity(1, 1, &args)?;
                args[0] = self.coerce(args[0].clone(), schema, &DataType::Float64)?;
            }
            F::Extract(_) | F::DatePart(_) | F::Builtin(_) => {}
            F::Catalog(c) => {
                use crate::logical::CatalogFunction as C;
                if matches!(
                    c,
                    C::QuoteIdent
                        | C::RegclassOid
                        | C::RegtypeOid
                        | C::ParseIdent
                        | C::ToRegclass
                        | C::ToRegtype
                ) {
                    arity(1, 2, &args)?;
                    args[0] = self.explicit_cast(args[0].clone(), schema, &DataType::Utf8)?;
                }
                if matches!(c, C::CancelBackend | C::TerminateBackend) {
                    // The caller goes with the call: an admin may signal any
                    // session, anyone else only their own user's.
                    arity(1, 1, &args)?;
                    let pid = self.coerce(args[0].clone(), schema, &DataType::Int32)?;
                    let (user, admin) = self.session.map_or(("sluice".to_string(), true), |s| {
                        (
                            s.user().to_string(),
                            s.role() == crate::session::Role::Admin,
                        )
                    });
                    args = vec![
                        pid,
                        lit(Arc::new(StringArray::from(vec![user]))),
                        lit(Arc::new(BooleanArray::from(vec![admin]))),
                    ];
                }
                if c == C::StringToArray {
                    arity(2, 2, &args)?;
                    args = args
                        .into_iter()
                        .map(|a| self.explicit_cast(a, schema, &DataType::Utf8))
                        .collect::<Result<_>>()?;
                }
            }
        }
        Ok(Expr::Function { func, args })
    }

    fn bind_function(
        &mut self,
        f: &ast::Function,
        schema: &PlanSchema,
        allow_agg: bool,
    ) -> Result<Expr> {
        let parts = object_name_parts(&f.name);
        let name = match parts.as_slice() {
            [n] => n.clone(),
            [s, n] if s == "pg_catalog" => n.clone(),
            _ => {
                return Err(Error::undefined_function(format!(
                    "function {} does not exist",
                    parts.join(".")
                )))
            }
        };
        let (distinct, raw_args): (bool, Vec<&FunctionArg>) = match &f.args {
            FunctionArguments::None => (false, vec![]),
            FunctionArguments::List(list) => {
                // ORDER BY inside an aggregate call orders the rows the
                // aggregation sees (one ordering of the query's input, which
                // string_agg and array_agg follow); LIMIT or IGNORE NULLS
                // would change the answer: taken and ignored they would give
                // a wrong one, so they are refused.
                for clause in &list.clauses {
                    match clause {
                        ast::FunctionArgumentClause::OrderBy(keys) if f.over.is_none() => {
                            let keys = keys
                                .iter()
                                .map(|o| {
                                    Ok(sort_key(
                                        self.bind_expr(&o.expr, schema, false)?,
                                        &o.options,
                                    ))
                                })
                                .collect::<Result<Vec<_>>>()?;
                            match &self.aggregate_order {
                                Some(existing) if *existing != keys => {
                                    return Err(Error::NotSupported(
                                        "aggregates ordered differently in one query".into(),
                                    ))
                                }
                                _ => self.aggregate_order = Some(keys),
                            }
                        }
                        other => {
                            return Err(Error::NotSupported(format!(
                                "{other} inside a call of {name}"
                            )))
                        }
                    }
                }
                (
                    matches!(
                        list.duplicate_treatment,
                        Some(ast::DuplicateTreatment::Distinct)
                    ),
                    list.args.iter().collect(),
                )
            }
            FunctionArguments::Subquery(q) if name == "array" => {
                let plan = self.bind_subquery(q, schema)?;
                return Ok(Expr::Subquery {
                    kind: SubqueryKind::Array,
                    plan,
                });
            }
            FunctionArguments::Subquery(_) => {
                return Err(Error::NotSupported("subquery as function argument".into()))
            }
        };
        let raw_args = positional_arguments(&name, raw_args.into_iter().cloned().collect())?;
        let mut star = false;
        let mut args = Vec::new();
        for a in &raw_args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    args.push(self.bind_expr(e, schema, allow_agg)?)
                }
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                _ => return Err(Error::NotSupported(format!("argument {a} of {name}"))),
            }
        }
        if let Some(over) = &f.over {
            return self.bind_window(&name, f, over, distinct, star, args, schema, allow_agg);
        }
        if let Some(agg) = self.bind_aggregate(&name, f, distinct, star, &args, schema)? {
            if !allow_agg {
                return Err(Error::Grouping(format!(
                    "aggregate function {name} is not allowed here"
                )));
            }
            if args.iter().any(Expr::has_aggregate) {
                return Err(Error::Grouping(
                    "aggregate function calls cannot be nested".into(),
                ));
            }
            return Ok(Expr::Aggregate(Box::new(agg)));
        }
        if distinct || star || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(Error::undefined_function(format!(
                "{name} is not an aggregate function"
            )));
        }
        if let Some(e) = self.bind_session_function(&name, &args)? {
            return Ok(e);
        }
        use crate::logical::CatalogFunction as C;
        use ScalarFunction as F;
        let func = match name.as_str() {
            "now"
            | "current_timestamp"
            | "transaction_timestamp"
            | "statement_timestamp"
            | "localtimestamp"
            | "current_date" => {
                if !args.is_empty() {
                    return Err(Error::undefined_function(format!(
                        "function {name} takes no arguments"
                    )));
                }
                return self.bind_niladic(if name == "current_date" || name == "localtimestamp" {
                    &name
                } else {
                    "now"
                });
            }
            "lower" => F::Lower,
            "upper" => F::Upper,
            "length" | "char_length" | "character_length" => F::Length,
            "concat" => F::Concat,
            "substring" | "substr" => F::Substring,
            "btrim" | "trim" => F::Trim,
            "ltrim" => F::LTrim,
            "rtrim" => F::RTrim,
            "replace" => F::Replace,
            "left" => F::Left,
            "right" => F::Right,
            "coalesce" => F::Coalesce,
            "nullif" => F::NullIf,
            "greatest" => F::Greatest,
            "least" => F::Least,
            "abs" => F::Abs,
            "round" => F::Round,
            "floor" => F::Floor,
            "ceil" | "ceiling" => F::Ceil,
            "date_trunc" => F::DateTrunc,
            "to_timestamp" if args.len() == 1 => F::ToTimestamp,
            "format_type" => F::Catalog(C::FormatType),
            "pg_cancel_backend" => F::Catalog(C::CancelBackend),
            "pg_terminate_backend" => F::Catalog(C::TerminateBackend),
            "pg_table_is_visible"
            | "pg_type_is_visible"
            | "pg_function_is_visible"
            | "pg_collation_is_visible"
            | "pg_opclass_is_visible" => F::Catalog(C::TableIsVisible),
            "pg_get_userbyid" => F::Catalog(C::GetUserById),
            "pg_encoding_to_char" => F::Catalog(C::EncodingToChar),
            "has_table_privilege"
            | "has_schema_privilege"
            | "has_any_column_privilege"
            | "has_column_privilege"
            | "has_database_privilege"
            | "pg_has_role" => F::Catalog(C::HasPrivilege),
            "obj_description"
            | "col_description"
            | "shobj_description"
            | "pg_get_expr"
            | "pg_get_viewdef"
            | "pg_get_triggerdef"
            | "pg_get_functiondef"
            | "pg_get_statisticsobjdef_columns"
            | "pg_get_serial_sequence"
            | "pg_get_function_result"
            | "pg_get_function_arguments"
            | "pg_get_partkeydef"
            | "pg_get_ruledef" => F::Catalog(C::NullText),
            "pg_get_constraintdef" => F::Catalog(C::ConstraintDef),
            "pg_get_indexdef" => F::Catalog(C::IndexDef),
            "quote_ident" => F::Catalog(C::QuoteIdent),
            "pg_relation_size" | "pg_total_relation_size" | "pg_table_size" | "pg_indexes_size" => {
                F::Catalog(C::RelationSize)
            }
            "pg_size_pretty" => F::Catalog(C::SizePretty),
            "array_to_string" => F::Catalog(C::ArrayToString),
            "array_upper" | "array_length" | "cardinality" => F::Catalog(C::ArrayLength),
            "array_lower" => F::Catalog(C::ArrayLower),
            "pg_relation_is_publishable" | "pg_is_in_recovery" => F::Catalog(C::AlwaysFalse),
            "string_to_array" => F::Catalog(C::StringToArray),
            "to_regclass" => F::Catalog(C::ToRegclass),
            "json_build_object" | "jsonb_build_object" => F::Catalog(C::JsonBuildObject),
            "to_regtype" => F::Catalog(C::ToRegtype),
            "parse_ident" => F::Catalog(C::ParseIdent),
            "date_part" => {
                if args.len() != 2 {
                    return Err(Error::undefined_function(
                        "function date_part takes two arguments",
                    ));
                }
                let field = const_text(&args[0])
                    .and_then(|t| DateField::parse(&t))
                    .ok_or_else(|| {
                        Error::InvalidParameter(
                            "date_part needs a constant, known field name".into(),
                        )
                    })?;
                let x = self.temporal_arg(args.remove(1), schema, "date_part")?;
                return Ok(Expr::Function {
                    func: F::DatePart(field),
                    args: vec![x],
                });
            }
            // mod(a, b) is a % b, with the operator's types and errors.
            "mod" if args.len() == 2 => {
                let mut args = args.into_iter();
                let (Some(a), Some(b)) = (args.next(), args.next()) else {
                    return Err(Error::Internal("mod without its arguments".into()));
                };
                return self.arithmetic(BinaryOp::Modulo, a, b, schema);
            }
            other => return self.call_builtin(other, args, schema),
        };
        self.call_scalar(func, args, schema)
    }

    /// A call of a function of the built-in table: the first overload whose
    /// argument types the arguments coerce to implicitly, with them coerced.
    fn call_builtin(&mut self, name: &str, args: Vec<Expr>, schema: &PlanSchema) -> Result<Expr> {
        // The overload needing the fewest conversions; the first of equals.
        let mut known = false;
        let mut best: Option<(usize, &'static crate::builtins::Builtin)> = None;
        for b in crate::builtins::overloads(name) {
            known = true;
            if !b.takes(args.len()) {
                continue;
            }
            let mut conversions = 0;
            let fits = args.iter().enumerate().all(|(i, a)| {
                let from = a.data_type(schema);
                if b.arg_type(i) == crate::builtins::Type::Numeric {
                    // Any numeric meets a numeric parameter as it is.
                    let exact = matches!(from, DataType::Decimal128(..));
                    conversions += usize::from(!exact);
                    return exact || coercible(a, schema, &b.arg_type(i).data_type());
                }
                let to = b.arg_type(i).data_type();
                conversions += usize::from(from != to);
                coercible(a, schema, &to)
            });
            if fits && best.is_none_or(|(c, _)| conversions < c) {
                best = Some((conversions, b));
            }
        }
        if let Some((_, b)) = best {
            let args = args
                .into_iter()
                .enumerate()
                .map(|(i, a)| {
                    let to = b.arg_type(i).data_type();
                    match (b.arg_type(i), a.data_type(schema)) {
                        (crate::builtins::Type::Numeric, DataType::Decimal128(..)) => {
                            self.explicit_cast(a, schema, &to)
                        }
                        _ => self.coerce(a, schema, &to),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Expr::Function {
                func: ScalarFunction::Builtin(b),
                args,
            });
        }
        let types: Vec<String> = args
            .iter()
            .map(|a| {
                if is_untyped(a) {
                    "unknown".to_string()
                } else {
                    sql_type_name(&a.data_type(schema))
                }
            })
            .collect();
        Err(Error::undefined_function(if known {
            format!("function {name}({}) does not exist", types.join(", "))
        } else {
            format!("function {name} does not exist")
        }))
    }

    /// `func(...) OVER (PARTITION BY ... ORDER BY ...)`.
    #[allow(clippy::too_many_arguments)]
    fn bind_window(
        &mut self,
        name: &str,
        f: &ast::Function,
        over: &ast::WindowType,
        distinct: bool,
        star: bool,
        args: Vec<Expr>,
        schema: &PlanSchema,
        allow_agg: bool,
    ) -> Result<Expr> {
        use crate::logical::{WindowExpr, WindowFunction};
        if !allow_agg {
            return Err(Error::Grouping(format!(
                "window function {name} is not allowed here"
            )));
        }
        let ast::WindowType::WindowSpec(spec) = over else {
            return Err(Error::NotSupported("named windows".into()));
        };
        if spec.window_name.is_some() {
            return Err(Error::NotSupported("named windows".into()));
        }
        if distinct {
            return Err(Error::NotSupported("DISTINCT in window functions".into()));
        }
        // A constant integer argument (lag's offset, ntile's buckets).
        let constant = |e: Option<&Expr>, what: &str, default: i64| -> Result<i64> {
            match e {
                None => Ok(default),
                Some(Expr::Literal(l)) if !l.is_null() => {
                    let v = arrow::compute::cast(&l.value, &DataType::Int64)?;
                    Ok(
                        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&v)
                            .value(0),
                    )
                }
                Some(_) => Err(Error::NotSupported(format!(
                    "{name}() with a {what} that is not a constant"
                ))),
            }
        };
        let arity = |lo: usize, hi: usize| -> Result<()> {
            if args.len() < lo || args.len() > hi {
                return Err(Error::undefined_function(format!(
                    "function {name} with {} arguments does not exist",
                    args.len()
                )));
            }
            Ok(())
        };
        let mut default = None;
        let (func, arg) = match name {
            "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" => {
                arity(0, 0)?;
                let func = match name {
                    "row_number" => WindowFunction::RowNumber,
                    "rank" => WindowFunction::Rank,
                    "dense_rank" => WindowFunction::DenseRank,
                    "percent_rank" => WindowFunction::PercentRank,
                    _ => WindowFunction::CumeDist,
                };
                (func, None)
            }
            "ntile" => {
                arity(1, 1)?;
                let n = constant(args.first(), "bucket count", 1)?;
                if n <= 0 {
                    return Err(Error::Data {
                        code: "22014",
                        message: "argument of ntile must be greater than zero".into(),
                    });
                }
                (WindowFunction::Ntile(n), None)
            }
            "lag" | "lead" => {
                arity(1, 3)?;
                let offset = constant(args.get(1), "offset", 1)?;
                let x = args[0].clone();
                if let Some(d) = args.get(2) {
                    let t = x.data_type(schema);
                    default = Some(self.coerce(d.clone(), schema, &t)?);
                }
                let func = if name == "lag" {
                    WindowFunction::Lag(offset)
                } else {
                    WindowFunction::Lead(offset)
                };
                (func, Some(x))
            }
            "first_value" | "last_value" => {
                arity(1, 1)?;
                let func = if name == "first_value" {
                    WindowFunction::FirstValue
                } else {
                    WindowFunction::LastValue
                };
                (func, Some(args[0].clone()))
            }
            "nth_value" => {
                arity(2, 2)?;
                let n = constant(args.get(1), "position", 1)?;
                if n <= 0 {
                    return Err(Error::Data {
                        code: "22016",
                        message: "argument of nth_value must be greater than zero".into(),
                    });
                }
                (WindowFunction::NthValue(n), Some(args[0].clone()))
            }
            _ => match self.bind_aggregate(name, f, false, star, &args, schema)? {
                Some(a)
                    if !matches!(
                        a.func,
                        AggregateFunction::PercentileCont(_)
                            | AggregateFunction::PercentileDisc(_)
                            | AggregateFunction::ApproxPercentile(_)
                            | AggregateFunction::StringAgg
                            | AggregateFunction::Mode
                            | AggregateFunction::Grouping
                    ) =>
                {
                    (WindowFunction::Aggregate(a.func), a.arg)
                }
                Some(_) => {
                    return Err(Error::NotSupported(format!(
                        "{name}() as a window function"
                    )))
                }
                None => {
                    return Err(Error::undefined_function(format!(
                        "window function {name} does not exist"
                    )))
                }
            },
        };
        let partition_by = spec
            .partition_by
            .iter()
            .map(|e| self.bind_expr(e, schema, true))
            .collect::<Result<Vec<_>>>()?;
        let order_by = spec
            .order_by
            .iter()
            .map(|o| Ok(sort_key(self.bind_expr(&o.expr, schema, true)?, &o.options)))
            .collect::<Result<Vec<_>>>()?;
        let key_types: Vec<DataType> = order_by.iter().map(|k| k.expr.data_type(schema)).collect();
        let frame = spec
            .window_frame
            .as_ref()
            .map(|f| self.window_frame(f, &key_types))
            .transpose()?;
        Ok(Expr::Window(Box::new(WindowExpr {
            func,
            arg,
            default,
            partition_by,
            order_by,
            frame,
        })))
    }

    /// A window's frame clause: ROWS or RANGE, bounded by UNBOUNDED, CURRENT
    /// ROW, a constant number of rows (ROWS) or a constant offset from the one
    /// ORDER BY key's value (RANGE: a number for a numeric key, an interval
    /// for a timestamp or date). `key_types` are the ORDER BY keys' types.
    fn window_frame(
        &mut self,
        f: &ast::WindowFrame,
        key_types: &[DataType],
    ) -> Result<crate::logical::WindowFrame> {
        use crate::logical::FrameBound as B;
        let rows = match f.units {
            ast::WindowFrameUnits::Rows => true,
            ast::WindowFrameUnits::Range => false,
            ast::WindowFrameUnits::Groups => {
                return Err(Error::NotSupported("GROUPS window frames".into()))
            }
        };
        let mut bound = |b: &ast::WindowFrameBound, start: bool| -> Result<B> {
            let b = match b {
                ast::WindowFrameBound::CurrentRow => B::CurrentRow,
                ast::WindowFrameBound::Preceding(None) => B::UnboundedPreceding,
                ast::WindowFrameBound::Following(None) => B::UnboundedFollowing,
                ast::WindowFrameBound::Preceding(Some(e)) if rows => B::Preceding(row_offset(e)?),
                ast::WindowFrameBound::Following(Some(e)) if rows => B::Following(row_offset(e)?),
                ast::WindowFrameBound::Preceding(Some(e)) => {
                    B::RangePreceding(self.range_offset(e, key_types)?)
                }
                ast::WindowFrameBound::Following(Some(e)) => {
                    B::RangeFollowing(self.range_offset(e, key_types)?)
                }
            };
            match (start, b) {
                (true, B::UnboundedFollowing) => Err(Error::Syntax(
                    "frame start cannot be UNBOUNDED FOLLOWING".into(),
                )),
                (false, B::UnboundedPreceding) => Err(Error::Syntax(
                    "frame end cannot be UNBOUNDED PRECEDING".into(),
                )),
                (_, b) => Ok(b),
            }
        };
        let start = bound(&f.start_bound, true)?;
        let end = match &f.end_bound {
            Some(e) => bound(e, false)?,
            None => B::CurrentRow,
        };
        Ok(crate::logical::WindowFrame { rows, start, end })
    }

    /// A RANGE frame's offset: a constant, not negative, of the kind the one
    /// ORDER BY key takes (PostgreSQL's rules and SQLSTATEs).
    fn range_offset(
        &mut self,
        e: &ast::Expr,
        key_types: &[DataType],
    ) -> Result<crate::logical::RangeOffset> {
        use crate::logical::RangeOffset;
        let [key] = key_types else {
            return Err(Error::Data {
                code: "42P20",
                message:
                    "RANGE with offset PRECEDING/FOLLOWING requires exactly one ORDER BY column"
                        .into(),
            });
        };
        let bound = self.bind_expr(e, &PlanSchema::default(), false)?;
        let Expr::Literal(l) = &bound else {
            return Err(Error::NotSupported(format!(
                "a RANGE frame offset that is not a constant: {e}"
            )));
        };
        let invalid = || Error::Data {
            code: "22013",
            message: "invalid preceding or following size in window function".into(),
        };
        if l.is_null() {
            return Err(invalid());
        }
        let mismatch = || {
            Error::NotSupported(format!(
                "RANGE with offset PRECEDING/FOLLOWING for column type {} and offset type {}",
                sql_type_name(key),
                sql_type_name(l.value.data_type())
            ))
        };
        match key {
            DataType::Timestamp(..) | DataType::Date32 => {
                let DataType::Interval(_) = l.value.data_type() else {
                    return Err(mismatch());
                };
                let iv =
                    crate::format::to_interval(
                        arrow::array::AsArray::as_primitive::<
                            arrow::datatypes::IntervalMonthDayNanoType,
                        >(&l.value)
                        .value(0),
                    );
                if iv.months < 0 || iv.days < 0 || iv.micros < 0 {
                    return Err(invalid());
                }
                Ok(RangeOffset::Interval(iv))
            }
            k if is_numeric(k) && is_numeric(l.value.data_type()) => {
                let v = arrow::compute::cast(&l.value, &DataType::Float64)?;
                let v = arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(&v)
                    .value(0);
                if v < 0.0 || v.is_nan() {
                    return Err(invalid());
                }
                Ok(RangeOffset::Number(v))
            }
            _ => Err(mismatch()),
        }
    }

    /// Functions whose value is fixed for the statement: identity, version, settings.
    fn bind_session_function(&mut self, name: &str, args: &[Expr]) -> Result<Option<Expr>> {
        let text = |s: &str| Some(lit(Arc::new(StringArray::from(vec![s.to_string()]))));
        let user = self.session.map_or("sluice", |s| s.user()).to_string();
        Ok(match (name, args.len()) {
            ("version", 0) => text(&format!(
                "PostgreSQL {SERVER_VERSION} (Sluice {}) on {}, compiled by rustc",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH
            )),
            ("current_database", 0) => text(self.session.map_or("sluice", |s| s.database())),
            ("current_schema", 0) => text("public"),
            ("current_schemas", 1) => text("{pg_catalog,public}"),
            ("current_user" | "session_user" | "user" | "current_role", 0) => text(&user),
            ("pg_backend_pid", 0) => Some(lit(Arc::new(Int32Array::from(vec![self
                .session
                .map_or(0, |s| s.backend_pid())])))),
            ("set_config", 3) => {
                let (Some(name), Some(value)) = (const_text(&args[0]), const_text(&args[1])) else {
                    return Err(Error::NotSupported(
                        "set_config with non-constant arguments".into(),
                    ));
                };
                self.settings.push((name, value.clone()));
                text(&value)
            }
            ("current_setting", 1 | 2) => {
                let key = const_text(&args[0]).ok_or_else(|| {
                    Error::NotSupported("current_setting of a non-constant name".into())
                })?;
                if let Some(a) = args.get(1) {
                    self.value_shapes_plan(a, "current_setting's missing_ok")?;
                }
                let missing_ok = matches!(args.get(1), Some(Expr::Literal(l)) if l.value.as_any().downcast_ref::<BooleanArray>().is_some_and(|b| b.value(0)));
                match self.session.and_then(|s| s.get(&key)) {
                    Some(v) => text(v),
                    None if missing_ok => {
                        Some(lit(arrow::array::new_null_array(&DataType::Utf8, 1)))
                    }
                    None => return Err(Error::UnknownSetting(key)),
                }
            }
            _ => None,
        })
    }

    fn bind_aggregate(
        &mut self,
        name: &str,
        f: &ast::Function,
        distinct: bool,
        star: bool,
        args: &[Expr],
        schema: &PlanSchema,
    ) -> Result<Option<AggregateExpr>> {
        use AggregateFunction as A;
        let func = match name {
            "count" => {
                if star {
                    A::CountStar
                } else {
                    A::Count
                }
            }
            "sum" => A::Sum,
            "avg" => A::Avg,
            "min" => A::Min,
            "max" => A::Max,
            "approx_count_distinct" => A::ApproxCountDistinct,
            "bool_and" | "every" => A::BoolAnd,
            "bool_or" => A::BoolOr,
            "string_agg" => A::StringAgg,
            "array_agg" => A::ArrayAgg,
            "mode" => {
                if !args.is_empty() || f.within_group.len() != 1 {
                    return Err(Error::Syntax(
                        "mode() takes no arguments and needs WITHIN GROUP (ORDER BY x)".into(),
                    ));
                }
                let arg = self.bind_expr(&f.within_group[0].expr, schema, false)?;
                let arg = if is_untyped(&arg) {
                    self.coerce(arg, schema, &DataType::Utf8)?
                } else {
                    arg
                };
                let arg = self.filtered(f, arg, schema)?;
                return Ok(Some(AggregateExpr {
                    func: A::Mode,
                    arg: Some(arg),
                    distinct: false,
                    separator: None,
                }));
            }
            "grouping" => {
                // A constant per grouping set (see `grouping_sets_plan`); the
                // arguments of grouping(a, b) travel together as a list,
                // never evaluated, one bit each.
                let arg = match args {
                    [] => return Err(Error::Syntax("grouping() needs an argument".into())),
                    [one] => one.clone(),
                    several => Expr::Function {
                        func: ScalarFunction::MakeArray,
                        args: several.to_vec(),
                    },
                };
                return Ok(Some(AggregateExpr {
                    func: A::Grouping,
                    arg: Some(arg),
                    distinct: false,
                    separator: None,
                }));
            }
            "stddev" | "stddev_samp" => A::Variance {
                sample: true,
                sqrt: true,
            },
            "stddev_pop" => A::Variance {
                sample: false,
                sqrt: true,
            },
            "variance" | "var_samp" => A::Variance {
                sample: true,
                sqrt: false,
            },
            "var_pop" => A::Variance {
                sample: false,
                sqrt: false,
            },
            "percentile_cont" | "percentile_disc" => {
                let discrete = name == "percentile_disc";
                let fraction = fraction_arg(args.first())?;
                if f.within_group.len() != 1 {
                    return Err(Error::Syntax(
                        "percentile_cont needs WITHIN GROUP (ORDER BY x)".into(),
                    ));
                }
                let o = &f.within_group[0];
                let arg = self.bind_expr(&o.expr, schema, false)?;
                let t = arg.data_type(schema);
                let arg = if discrete && matches!(t, DataType::Timestamp(..) | DataType::Date32) {
                    arg
                } else {
                    self.numeric_arg(arg, schema)?
                };
                let descending = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
                if discrete && descending {
                    return Err(Error::NotSupported(
                        "percentile_disc WITHIN GROUP (ORDER BY ... DESC)".into(),
                    ));
                }
                let fraction = if descending { 1.0 - fraction } else { fraction };
                let arg = self.filtered(f, arg, schema)?;
                return Ok(Some(AggregateExpr {
                    func: if discrete {
                        A::PercentileDisc(fraction)
                    } else {
                        A::PercentileCont(fraction)
                    },
                    arg: Some(arg),
                    distinct: false,
                    separator: None,
                }));
            }
            "approx_percentile" | "approx_percentile_cont" => {
                if args.len() != 2 {
                    return Err(Error::undefined_function(
                        "approx_percentile(x, fraction) takes two arguments",
                    ));
                }
                let fraction = fraction_arg(args.get(1))?;
                let arg = self.numeric_arg(args[0].clone(), schema)?;
                let arg = self.filtered(f, arg, schema)?;
                return Ok(Some(AggregateExpr {
                    func: A::ApproxPercentile(fraction),
                    arg: Some(arg),
                    distinct: false,
                    separator: None,
                }));
            }
            _ => return Ok(None),
        };
        if f.filter.is_some() && func == A::ArrayAgg {
            // array_agg keeps NULLs, so the filter cannot become NULLs.
            return Err(Error::NotSupported(
                "array_agg(...) FILTER (WHERE ...)".into(),
            ));
        }
        if !f.within_group.is_empty() {
            return Err(Error::Syntax(format!(
                "WITHIN GROUP is not allowed for {name}"
            )));
        }
        let mut args = args.to_vec();
        let separator = if func == A::StringAgg {
            if args.len() != 2 {
                return Err(Error::undefined_function(
                    "string_agg(value, separator) takes two arguments",
                ));
            }
            let sep = args.pop().and_then(|e| const_text(&e)).ok_or_else(|| {
                Error::NotSupported("string_agg with a non-constant separator".into())
            })?;
            Some(sep)
        } else {
            None
        };
        if func == A::CountStar {
            if f.filter.is_some() {
                // count(*) FILTER (WHERE c) counts the rows where c holds.
                let one: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1i64]));
                let arg = self.filtered(f, Expr::literal(one), schema)?;
                return Ok(Some(AggregateExpr {
                    func: A::Count,
                    arg: Some(arg),
                    distinct: false,
                    separator: None,
                }));
            }
            return Ok(Some(AggregateExpr {
                func,
                arg: None,
                distinct: false,
                separator: None,
            }));
        }
        if args.len() != 1 {
            return Err(Error::undefined_function(format!(
                "function {name} with {} arguments does not exist",
                args.len()
            )));
        }
        if distinct && !matches!(func, A::Count | A::Min | A::Max | A::Sum | A::Avg) {
            return Err(Error::NotSupported(format!("{name}(DISTINCT ...)")));
        }
        let mut arg = args[0].clone();
        let t = arg.data_type(schema);
        match func {
            A::Variance { .. } => arg = self.numeric_arg(arg, schema)?,
            A::Sum | A::Avg if distinct && matches!(t, DataType::Interval(_)) => {
                return Err(Error::NotSupported(format!("{name}(DISTINCT interval)")))
            }
            A::Sum | A::Avg => {
                if is_untyped(&arg) || t == DataType::Null {
                    arg = self.coerce(arg, schema, &DataType::Float64)?;
                } else if !is_numeric(&t) {
                    return Err(Error::undefined_function(format!(
                        "function {name}({}) does not exist",
                        sql_type_name(&t)
                    )));
                }
            }
            A::BoolAnd | A::BoolOr => arg = self.require_boolean(arg, schema, name)?,
            A::StringAgg => arg = self.explicit_cast(arg, schema, &DataType::Utf8)?,
            _ => {
                if is_untyped(&arg) {
                    arg = self.coerce(arg, schema, &DataType::Utf8)?;
                }
            }
        }
        let arg = self.filtered(f, arg, schema)?;
        Ok(Some(AggregateExpr {
            func,
            arg: Some(arg),
            distinct: distinct && matches!(func, A::Count | A::Sum | A::Avg),
            separator,
        }))
    }

    /// An aggregate's argument under its `FILTER (WHERE c)`: `CASE WHEN c THEN
    /// arg END`, so the rows where `c` does not hold reach the aggregate as
    /// NULLs, which every aggregate this is used for skips.
    fn filtered(&mut self, f: &ast::Function, arg: Expr, schema: &PlanSchema) -> Result<Expr> {
        let Some(filter) = &f.filter else {
            return Ok(arg);
        };
        let condition = self.bind_predicate(filter, schema, "FILTER")?;
        Ok(Expr::Case {
            branches: vec![(condition, arg)],
            else_expr: None,
        })
    }
}

fn fraction_arg(e: Option<&Expr>) -> Result<f64> {
    let v = match e {
        Some(Expr::Literal(l)) => {
            let a = arrow::compute::cast(&l.value, &DataType::Float64)?;
            a.as_any()
                .downcast_ref::<Float64Array>()
                .and_then(|a| (!a.is_null(0)).then(|| a.value(0)))
        }
        _ => None,
    };
    match v {
        Some(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Some(f) => Err(Error::InvalidParameter(format!(
            "percentile value {f} is not between 0 and 1"
        ))),
        None => Err(Error::NotSupported(
            "a non-constant percentile fraction".into(),
        )),
    }
}

use arrow::array::Array;

fn const_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(l) => l
            .value
            .as_any()
            .downcast_ref::<StringArray>()
            .and_then(|a| (!a.is_null(0)).then(|| a.value(0).to_string())),
        _ => None,
    }
}

fn date_field(f: &DateTimeField) -> Result<DateField> {
    let name = match f {
        DateTimeField::Custom(i) => i.value.clone(),
        other => other.to_string(),
    };
    DateField::parse(&name)
        .ok_or_else(|| Error::InvalidParameter(format!("unit \"{name}\" not recognized")))
}

/// The elements of PostgreSQL's array text form `{a,"b c",NULL}`.
pub fn parse_array_text(text: &str) -> Vec<Option<String>> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.trim().is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' if !quoted => {
                out.push(array_item(&cur, was_quoted));
                cur.clear();
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    out.push(array_item(&cur, was_quoted));
    out
}

fn array_item(raw: &str, quoted: bool) -> Option<String> {
    let t = if quoted {
        raw.to_string()
    } else {
        raw.trim().to_string()
    };
    if !quoted && t.eq_ignore_ascii_case("null") {
        None
    } else {
        Some(t)
    }
}

/// True for a value whose type is still open: a quoted literal, or an element
/// taken out of a text-form array; it takes the type of what it meets.
fn is_untyped(e: &Expr) -> bool {
    matches!(e, Expr::Literal(Literal { untyped: true, .. }))
        || matches!(
            e,
            Expr::Function {
                func: ScalarFunction::Catalog(crate::logical::CatalogFunction::ArrayElement),
                ..
            }
        )
}

/// The type a parameter of type `t` has inside an expression: an array is its
/// text form there (only `= ANY($n)` looks at its elements).
fn scalar_param_type(t: &DataType) -> DataType {
    match t {
        DataType::List(_) => DataType::Utf8,
        other => other.clone(),
    }
}

/// The array type whose elements are `t`, as parameter types name arrays.
pub fn list_of(t: &DataType) -> DataType {
    DataType::List(Arc::new(arrow::datatypes::Field::new(
        "item",
        t.clone(),
        true,
    )))
}

/// True for a parameter whose type nothing has decided yet (PostgreSQL's
/// `unknown`) while a statement is described.
fn is_open_param(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal(Literal {
            untyped: true,
            param: Some(_),
            ..
        })
    )
}

fn untyped_text(s: &str) -> Expr {
    Expr::Literal(Literal {
        value: Arc::new(StringArray::from(vec![s.to_string()])),
        untyped: true,
        param: None,
    })
}

/// The `$n` of `x = ANY($n)` or `x = ANY($n::type[])`.
fn array_placeholder(e: &ast::Expr) -> Option<&str> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => Some(p.as_str()),
            _ => None,
        },
        ast::Expr::Nested(inner) | ast::Expr::Cast { expr: inner, .. } => array_placeholder(inner),
        _ => None,
    }
}

/// The value of a `$n` parameter when a prepared statement is executed.
#[derive(Clone, Debug)]
pub enum Param {
    /// Text whose type is decided by where it is used (PostgreSQL's "unknown"), or
    /// NULL.
    Text(Option<String>),
    /// A typed value, as a one-row array.
    Value(ArrayRef),
}

fn bind_value(v: &Value) -> Result<Expr> {
    Ok(match v {
        Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                match i32::try_from(i) {
                    Ok(small) => lit(Arc::new(Int32Array::from(vec![small]))),
                    Err(_) => lit(Arc::new(Int64Array::from(vec![i]))),
                }
            } else {
                // 2.5, 1e3 and integers too long for bigint are numeric, as
                // in PostgreSQL, with the scale they are written with.
                let scale = crate::numeric::text_scale(n);
                let v = crate::numeric::parse(n, scale)
                    .map_err(|_| Error::Syntax(format!("invalid number {n}")))?;
                lit(Arc::new(
                    arrow::array::Decimal128Array::from(vec![v])
                        .with_precision_and_scale(crate::numeric::MAX_PRECISION, scale)?,
                ))
            }
        }
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::NationalStringLiteral(s) => untyped_text(s),
        Value::DollarQuotedString(d) => untyped_text(&d.value),
        Value::Boolean(b) => lit(Arc::new(BooleanArray::from(vec![*b]))),
        Value::Null => null_literal(),
        Value::Placeholder(p) => {
            return Err(Error::NotSupported(format!(
                "parameter {p} outside a prepared statement"
            )))
        }
        other => return Err(Error::NotSupported(format!("literal {other}"))),
    })
}

/// The type PostgreSQL gives an `unknown` operand of arithmetic `op` whose other
/// operand is `known` (on the left when `known_on_left`): the known type itself
/// when `known op known` exists (so `ts - $1` is timestamp minus timestamp), else
/// the one type every remaining candidate accepts (`ts + $1` takes an interval,
/// `$1 * interval` a double precision).
///
/// # Errors
/// 42725 where candidates of different kinds remain (`date + $1`), 42883 where
/// none does.
fn unknown_operand_type(op: BinaryOp, known: &DataType, known_on_left: bool) -> Result<DataType> {
    use DataType as T;
    if *known == T::Null || arithmetic_result_type(op, known, known).is_some() {
        return Ok(match known {
            T::Null => T::Float64,
            t => t.clone(),
        });
    }
    let interval = T::Interval(IntervalUnit::MonthDayNano);
    let sides = if known_on_left {
        format!("{} {} unknown", sql_type_name(known), op.symbol())
    } else {
        format!("unknown {} {}", op.symbol(), sql_type_name(known))
    };
    match (op, known) {
        (BinaryOp::Plus | BinaryOp::Minus, T::Timestamp(..)) => Ok(interval),
        (BinaryOp::Multiply, T::Interval(_)) => Ok(T::Float64),
        (BinaryOp::Divide, T::Interval(_)) if known_on_left => Ok(T::Float64),
        (BinaryOp::Plus, T::Date32) => Err(Error::AmbiguousFunction(format!(
            "operator is not unique: {sides}"
        ))),
        _ => Err(Error::undefined_function(format!(
            "operator does not exist: {sides}"
        ))),
    }
}

/// The type values of `exprs` are converted to when they meet (CASE, IN, UNION,
/// comparison): PostgreSQL's resolution, simplified to Sluice's types.
fn common_type(exprs: &[Expr], schema: &PlanSchema, context: &str) -> Result<DataType> {
    let mut result: Option<DataType> = None;
    for e in exprs {
        if is_untyped(e) {
            continue;
        }
        let t = e.data_type(schema);
        if t == DataType::Null {
            continue;
        }
        result = Some(match result {
            None => t,
            Some(r) if r == t => r,
            Some(r) if is_numeric(&r) && is_numeric(&t) => wider_numeric(&r, &t),
            Some(DataType::Timestamp(u, a)) if matches!(t, DataType::Timestamp(..)) => {
                let tz = if let DataType::Timestamp(_, b) = &t {
                    a.or(b.clone())
                } else {
                    a
                };
                DataType::Timestamp(u, tz)
            }
            Some(DataType::Date32) if matches!(t, DataType::Timestamp(..)) => t,
            Some(r @ DataType::Timestamp(..)) if t == DataType::Date32 => r,
            Some(r) => {
                return Err(Error::undefined_function(format!(
                    "{context} types {} and {} cannot be matched",
                    sql_type_name(&r),
                    sql_type_name(&t)
                )))
            }
        });
    }
    Ok(result.unwrap_or_else(|| {
        if exprs.iter().any(is_untyped) {
            DataType::Utf8
        } else {
            DataType::Null
        }
    }))
}

fn resolve_column(schema: &PlanSchema, qualifier: Option<&str>, name: &str) -> Result<usize> {
    let hits: Vec<usize> = schema
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.name == name
                && match qualifier {
                    Some(q) => f.qualifier.as_deref() == Some(q),
                    None => !f.hidden,
                }
        })
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [i] => Ok(*i),
        [] => Err(Error::UndefinedColumn(match qualifier {
            Some(q) => format!("{q}.{name}"),
            None => name.to_string(),
        })),
        _ => Err(Error::AmbiguousColumn(name.to_string())),
    }
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::Binary {
        op: BinaryOp::And,
        left: Box::new(a),
        right: Box::new(b),
    }
}

fn sort_key(expr: Expr, o: &ast::OrderByOptions) -> SortKey {
    let descending = matches!(o.sort, Some(ast::OrderBySort::Desc));
    SortKey {
        expr,
        descending,
        // PostgreSQL: NULLs sort as larger than any value.
        nulls_first: o.nulls_first.unwrap_or(descending),
    }
}

/// Rewrites an expression over the input of an aggregation into one over its output:
/// group expressions and aggregates become column references; any other input column
/// is an error.
fn rewrite_over_aggregate(
    e: &Expr,
    group: &[Expr],
    aggs: &[AggregateExpr],
    input: &PlanSchema,
) -> Result<Expr> {
    let mut error = None;
    let out = e.transform(&mut |n| {
        if let Some(i) = group.iter().position(|g| g == n) {
            return Some(Expr::Column(i));
        }
        match n {
            Expr::Aggregate(a) => aggs.iter().position(|x| x == a.as_ref()).map(|j| Expr::Column(group.len() + j)),
            Expr::Subquery { kind, plan } => {
                // A correlated subquery runs over the groups, not the input rows:
                // its references to the input must become references to the
                // group keys they are.
                let kind = match kind {
                    SubqueryKind::In { expr, negated } => match rewrite_over_aggregate(expr, group, aggs, input) {
                        Ok(expr) => SubqueryKind::In { expr: Box::new(expr), negated: *negated },
                        Err(e) => {
                            error.get_or_insert(e);
                            kind.clone()
                        }
                    },
                    other => other.clone(),
                };
                let plan = plan.0.map_exprs(&|x| {
                    x.transform(&mut |y| match y {
                        Expr::OuterColumn { index, data_type } => Some(
                            match group.iter().position(|g| *g == Expr::Column(*index)) {
                                Some(k) => Expr::OuterColumn { index: k, data_type: data_type.clone() },
                                None => Expr::OuterColumn { index: usize::MAX, data_type: data_type.clone() },
                            },
                        ),
                        _ => None,
                    })
                });
                let found = std::cell::Cell::new(false);
                plan.map_exprs(&|x| {
                    x.walk(&mut |y| {
                        if matches!(y, Expr::OuterColumn { index: usize::MAX, .. }) {
                            found.set(true);
                        }
                    });
                    x.clone()
                });
                if found.get() {
                    error.get_or_insert_with(|| {
                        Error::Grouping(
                            "subquery uses ungrouped column from outer query".into(),
                        )
                    });
                }
                Some(Expr::Subquery { kind, plan: crate::logical::SubqueryPlan(Arc::new(plan)) })
            }
            Expr::Column(i) => {
                let name = input.fields.get(*i).map_or("?".to_string(), |f| match &f.qualifier {
                    Some(q) => format!("{q}.{}", f.name),
                    None => f.name.clone(),
                });
                error.get_or_insert_with(|| {
                    Error::Grouping(format!(
                        "column \"{name}\" must appear in the GROUP BY clause or be used in an aggregate function"
                    ))
                });
                Some(n.clone())
            }
            _ => None,
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The parameter names of the functions that take named arguments
/// (`make_interval(days => 3)`), in order, with the value an omitted one has.
const NAMED_PARAMETERS: &[(&str, &[(&str, &str)])] = &[(
    "make_interval",
    &[
        ("years", "0"),
        ("months", "0"),
        ("weeks", "0"),
        ("days", "0"),
        ("hours", "0"),
        ("mins", "0"),
        ("secs", "0.0"),
    ],
)];

/// A call's arguments in positional order: named ones (`days => 3`, after any
/// positional ones, as PostgreSQL requires) go to their parameter's place, and
/// the parameters left out take their defaults.
fn positional_arguments(name: &str, args: Vec<FunctionArg>) -> Result<Vec<FunctionArg>> {
    let named_as = |a: &FunctionArg| match a {
        FunctionArg::Named { name, .. } => Some(name.value.to_lowercase()),
        FunctionArg::ExprNamed {
            name: ast::Expr::Identifier(name),
            ..
        } => Some(name.value.to_lowercase()),
        _ => None,
    };
    if !args.iter().any(|a| named_as(a).is_some()) {
        return Ok(args);
    }
    let no_such =
        |what: String| Error::undefined_function(format!("function {name}({what}) does not exist"));
    let Some((_, params)) = NAMED_PARAMETERS.iter().find(|(n, _)| *n == name) else {
        return Err(no_such("with named arguments".into()));
    };
    let mut slots: Vec<Option<FunctionArgExpr>> = vec![None; params.len()];
    let mut named = false;
    for (k, a) in args.into_iter().enumerate() {
        let (at, value) = match (named_as(&a), a) {
            (None, FunctionArg::Unnamed(v)) if !named => (k, v),
            (Some(p), FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. }) => {
                named = true;
                let at = params
                    .iter()
                    .position(|(n, _)| *n == p)
                    .ok_or_else(|| no_such(format!("{p} => ...")))?;
                (at, arg)
            }
            (_, other) => {
                return Err(Error::Syntax(format!(
                    "positional argument cannot follow named argument: {other}"
                )))
            }
        };
        let slot = slots
            .get_mut(at)
            .ok_or_else(|| no_such("with too many arguments".into()))?;
        if slot.replace(value).is_some() {
            return Err(Error::Syntax(format!(
                "argument name \"{}\" used more than once",
                params[at].0
            )));
        }
    }
    slots
        .into_iter()
        .zip(params.iter())
        .map(|(slot, (_, default))| {
            Ok(FunctionArg::Unnamed(slot.unwrap_or_else(|| {
                FunctionArgExpr::Expr(ast::Expr::Value(
                    Value::Number((*default).to_string(), false).into(),
                ))
            })))
        })
        .collect()
}

/// A ROWS frame's offset: a constant count of rows.
fn row_offset(e: &ast::Expr) -> Result<u64> {
    let text = e.to_string();
    text.trim().parse::<u64>().map_err(|_| {
        Error::NotSupported(format!(
            "a window frame offset that is not a constant integer: {text}"
        ))
    })
}

/// The element type of the text-form array in output column `i` of `plan`,
/// where the catalog table it comes from says (its `int2vector` columns).
fn column_element_type(plan: &LogicalPlan, i: usize) -> Option<DataType> {
    match plan {
        LogicalPlan::Scan {
            source: TableSource::Virtual { batch, .. },
            projection,
            ..
        } => {
            let field = batch.schema_ref().field(*projection.get(i)?).clone();
            (field.metadata().get(crate::catalog::ELEMENT_TYPE_KEY)? == "int2")
                .then_some(DataType::Int32)
        }
        LogicalPlan::Filter { input, .. }
        | LogicalPlan::Sort { input, .. }
        | LogicalPlan::Limit { input, .. } => column_element_type(input, i),
        LogicalPlan::Project { input, exprs, .. } => match exprs.get(i)? {
            Expr::Column(j) => column_element_type(input, *j),
            _ => None,
        },
        LogicalPlan::Join { left, right, .. } => {
            let width = left.schema().fields.len();
            if i < width {
                column_element_type(left, i)
            } else {
                column_element_type(right, i - width)
            }
        }
        _ => None,
    }
}

/// True if `e` converts to `to` implicitly: the conversions
/// [`Binder::coerce`] makes without a cast.
fn coercible(e: &Expr, schema: &PlanSchema, to: &DataType) -> bool {
    let from = e.data_type(schema);
    &from == to
        || from == DataType::Null
        || is_untyped(e)
        || (is_numeric(&from) && is_numeric(to) && wider_numeric(&from, to) == *to)
        || matches!(
            (&from, to),
            (
                DataType::Timestamp(_, None),
                DataType::Timestamp(_, Some(_))
            ) | (DataType::Date32, DataType::Timestamp(..))
        )
}

/// Applies `AS alias [(columns)]` to a plan, if there is an alias.
fn apply_alias(plan: LogicalPlan, alias: Option<&ast::TableAlias>) -> Result<LogicalPlan> {
    match alias {
        Some(a) => alias_plan(
            plan,
            &ident_name(&a.name),
            &a.columns
                .iter()
                .map(|c| ident_name(&c.name))
                .collect::<Vec<_>>(),
        ),
        None => Ok(plan),
    }
}

/// Renames a plan's columns' qualifier (and names, if given) for an alias.
fn alias_plan(plan: LogicalPlan, alias: &str, columns: &[String]) -> Result<LogicalPlan> {
    let mut schema = plan.schema().requalified(alias);
    if columns.len() > schema.fields.len() {
        return Err(Error::Syntax(format!(
            "table \"{alias}\" has {} columns available but {} columns specified",
            schema.fields.len(),
            columns.len()
        )));
    }
    for (f, c) in schema.fields.iter_mut().zip(columns) {
        f.name = c.clone();
    }
    if let LogicalPlan::Scan {
        source,
        projection,
        filter,
        limit,
        ..
    } = plan
    {
        return Ok(LogicalPlan::Scan {
            source,
            schema,
            projection,
            filter,
            limit,
        });
    }
    Ok(LogicalPlan::Project {
        exprs: (0..schema.fields.len()).map(Expr::Column).collect(),
        schema,
        input: Box::new(plan),
    })
}

fn join_plans(
    left: LogicalPlan,
    right: LogicalPlan,
    kind: JoinKind,
    on: Vec<(Expr, Expr)>,
    filter: Option<Expr>,
) -> LogicalPlan {
    let mut schema = left.schema().clone();
    schema.fields.extend(right.schema().fields.iter().cloned());
    LogicalPlan::Join {
        left: Box::new(left),
        right: Box::new(right),
        kind,
        on,
        filter,
        schema,
    }
}

fn union_plans(inputs: Vec<LogicalPlan>) -> Result<LogicalPlan> {
    let width = inputs[0].schema().fields.len();
    if inputs.iter().any(|p| p.schema().fields.len() != width) {
        return Err(Error::Syntax(
            "each UNION query must have the same number of columns".into(),
        ));
    }
    let mut fields = inputs[0].schema().fields.clone();
    for (c, field) in fields.iter_mut().enumerate() {
        let exprs: Vec<Expr> = inputs.iter().map(|_| Expr::Column(c)).collect();
        let _ = exprs;
        let mut ty = DataType::Null;
        for p in &inputs {
            let t = &p.schema().fields[c].data_type;
            ty = match (&ty, t) {
                (DataType::Null, t) => t.clone(),
                (a, DataType::Null) => a.clone(),
                (a, b) if a == b => a.clone(),
                (a, b) if is_numeric(a) && is_numeric(b) => wider_numeric(a, b),
                (a, b) => {
                    return Err(Error::DatatypeMismatch(format!(
                        "UNION types {} and {} cannot be matched",
                        sql_type_name(a),
                        sql_type_name(b)
                    )))
                }
            };
        }
        field.data_type = ty;
        field.qualifier = None;
    }
    Ok(LogicalPlan::Union {
        inputs,
        schema: PlanSchema { fields },
    })
}

/// GROUP BY with grouping sets (ROLLUP, CUBE, GROUPING SETS) or grouping():
/// one aggregation of `input` per set, each projected to the full layout
/// (`group` columns, NULL where the set leaves one out, then `aggs`, with
/// grouping(x) the constant 1 where x is left out, else 0), then UNION ALL.
fn grouping_sets_plan(
    input: LogicalPlan,
    group: Vec<Expr>,
    aggs: Vec<AggregateExpr>,
    sets: &[Vec<usize>],
    schema: PlanSchema,
) -> Result<LogicalPlan> {
    let input_schema = input.schema().clone();
    let real: Vec<AggregateExpr> = aggs
        .iter()
        .filter(|a| a.func != AggregateFunction::Grouping)
        .cloned()
        .collect();
    let mut branches = Vec::with_capacity(sets.len());
    for set in sets {
        let mut fields: Vec<PlanField> = set.iter().map(|i| schema.fields[*i].clone()).collect();
        fields.extend(real.iter().map(|a| {
            schema.fields[group.len() + aggs.iter().position(|x| x == a).unwrap_or(0)].clone()
        }));
        let aggregate = LogicalPlan::Aggregate {
            input: Box::new(input.clone()),
            group: set.iter().map(|i| group[*i].clone()).collect(),
            aggregates: real.clone(),
            schema: PlanSchema { fields },
        };
        let mut exprs = Vec::with_capacity(schema.fields.len());
        for (k, field) in schema.fields.iter().take(group.len()).enumerate() {
            exprs.push(match set.iter().position(|i| *i == k) {
                Some(at) => Expr::Column(at),
                None => Expr::literal(arrow::array::new_null_array(&field.data_type, 1)),
            });
        }
        for a in &aggs {
            exprs.push(if a.func == AggregateFunction::Grouping {
                let arg = a.arg.as_ref().ok_or_else(|| {
                    Error::Internal("grouping() without its argument".into())
                })?;
                // grouping(a, b): a's bit is the high one; 1 where left out.
                let args = match arg {
                    _ if group.contains(arg) => std::slice::from_ref(arg),
                    Expr::Function {
                        func: ScalarFunction::MakeArray,
                        args,
                    } => args.as_slice(),
                    _ => std::slice::from_ref(arg),
                };
                let mut bits = 0i32;
                for arg in args {
                    let k = group.iter().position(|g| g == arg).ok_or_else(|| {
                        Error::Grouping(format!(
                            "arguments to GROUPING must be grouping expressions of the associated query level: {}",
                            arg.display(&input_schema)
                        ))
                    })?;
                    bits = bits << 1 | i32::from(!set.contains(&k));
                }
                Expr::literal(Arc::new(arrow::array::Int32Array::from(vec![bits])))
            } else {
                let j = real.iter().position(|x| x == a).unwrap_or(0);
                Expr::Column(set.len() + j)
            });
        }
        branches.push(LogicalPlan::Project {
            input: Box::new(aggregate),
            exprs,
            schema: schema.clone(),
        });
    }
    if branches.len() == 1 {
        return branches
            .pop()
            .ok_or_else(|| Error::Internal("no grouping set".into()));
    }
    Ok(LogicalPlan::Union {
        inputs: branches,
        schema,
    })
}

/// `plan` (sorted) cut to its first `n` rows and every row tied with the
/// last of them on the sort keys: the rows whose rank() is at most `n`.
fn with_ties(plan: LogicalPlan, n: usize) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Sort { input, keys, .. } => {
            let mut fields = input.schema().fields.clone();
            let width = fields.len();
            fields.push(PlanField {
                qualifier: None,
                name: "rank".into(),
                data_type: DataType::Int64,
                hidden: true,
            });
            let ranked = LogicalPlan::Window {
                input,
                windows: vec![crate::logical::WindowExpr {
                    func: crate::logical::WindowFunction::Rank,
                    arg: None,
                    default: None,
                    partition_by: vec![],
                    order_by: keys.clone(),
                    frame: None,
                }],
                schema: PlanSchema {
                    fields: fields.clone(),
                },
            };
            let limit = Expr::literal(Arc::new(Int64Array::from(vec![n as i64])));
            let kept = LogicalPlan::Filter {
                input: Box::new(ranked),
                predicate: Expr::Binary {
                    op: BinaryOp::LtEq,
                    left: Box::new(Expr::Column(width)),
                    right: Box::new(limit),
                },
            };
            let trimmed = LogicalPlan::Project {
                input: Box::new(kept),
                exprs: (0..width).map(Expr::Column).collect(),
                schema: PlanSchema {
                    fields: fields[..width].to_vec(),
                },
            };
            Ok(LogicalPlan::Sort {
                input: Box::new(trimmed),
                keys,
                fetch: None,
            })
        }
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } if matches!(input.as_ref(), LogicalPlan::Sort { .. }) => Ok(LogicalPlan::Project {
            input: Box::new(with_ties(*input, n)?),
            exprs,
            schema,
        }),
        _ => Err(Error::Syntax(
            "WITH TIES cannot be specified without ORDER BY clause".into(),
        )),
    }
}

/// INTERSECT and EXCEPT: both sides' rows tagged by side and grouped on every
/// column (so NULLs match NULLs, as set operations require); a group's
/// counts per side decide how many copies it keeps: one if both sides (or,
/// for EXCEPT, only the left) have it, or with ALL, min(l, r) or l - r.
fn intersect_or_except(
    left: LogicalPlan,
    right: LogicalPlan,
    intersect: bool,
    all: bool,
) -> Result<LogicalPlan> {
    let tag = |plan: LogicalPlan, side: i64| {
        let mut fields = plan.schema().fields.clone();
        let width = fields.len();
        fields.push(PlanField {
            qualifier: None,
            name: "?side?".into(),
            data_type: DataType::Int64,
            hidden: false,
        });
        let mut exprs: Vec<Expr> = (0..width).map(Expr::Column).collect();
        exprs.push(Expr::literal(Arc::new(arrow::array::Int64Array::from(
            vec![side],
        ))));
        LogicalPlan::Project {
            input: Box::new(plan),
            exprs,
            schema: PlanSchema { fields },
        }
    };
    let width = left.schema().fields.len();
    let union = union_plans(vec![tag(left, 1), tag(right, 0)])?;
    let mut fields = union.schema().fields[..width].to_vec();
    for name in ["?left?", "?rows?"] {
        fields.push(PlanField {
            qualifier: None,
            name: name.into(),
            data_type: DataType::Int64,
            hidden: false,
        });
    }
    let grouped = LogicalPlan::Aggregate {
        input: Box::new(union),
        group: (0..width).map(Expr::Column).collect(),
        aggregates: vec![
            AggregateExpr {
                func: AggregateFunction::Sum,
                arg: Some(Expr::Column(width)),
                distinct: false,
                separator: None,
            },
            AggregateExpr {
                func: AggregateFunction::CountStar,
                arg: None,
                distinct: false,
                separator: None,
            },
        ],
        schema: PlanSchema { fields },
    };
    let int = |v: i64| Expr::literal(Arc::new(arrow::array::Int64Array::from(vec![v])));
    let binary = |op: BinaryOp, l: Expr, r: Expr| Expr::Binary {
        op,
        left: Box::new(l),
        right: Box::new(r),
    };
    let left_rows = Expr::Column(width);
    let right_rows = binary(
        BinaryOp::Minus,
        Expr::Column(width + 1),
        Expr::Column(width),
    );
    // Copies of each group to keep.
    let copies = match (intersect, all) {
        (true, true) => Expr::Function {
            func: ScalarFunction::Least,
            args: vec![left_rows, right_rows],
        },
        (false, true) => binary(BinaryOp::Minus, left_rows, right_rows),
        (true, false) => Expr::Case {
            branches: vec![(
                binary(
                    BinaryOp::And,
                    binary(BinaryOp::Gt, left_rows, int(0)),
                    binary(BinaryOp::Gt, right_rows, int(0)),
                ),
                int(1),
            )],
            else_expr: Some(Box::new(int(0))),
        },
        (false, false) => Expr::Case {
            branches: vec![(
                binary(
                    BinaryOp::And,
                    binary(BinaryOp::Gt, left_rows, int(0)),
                    binary(BinaryOp::Eq, right_rows, int(0)),
                ),
                int(1),
            )],
            else_expr: Some(Box::new(int(0))),
        },
    };
    // Each group's row, repeated `copies` times by a series over 1..copies.
    let schema = grouped.schema().clone();
    let hidden = |name: &str| PlanField {
        qualifier: None,
        name: name.into(),
        data_type: DataType::Int64,
        hidden: true,
    };
    let mut counted = schema.fields[..width].to_vec();
    counted.push(hidden("?copies?"));
    let mut repeated = counted.clone();
    repeated.push(hidden("?copy?"));
    let expanded = LogicalPlan::ProjectSet {
        input: Box::new(LogicalPlan::Project {
            exprs: (0..width).map(Expr::Column).chain([copies]).collect(),
            schema: PlanSchema { fields: counted },
            input: Box::new(grouped),
        }),
        functions: vec![crate::logical::SetFunction::Series {
            start: int(1),
            stop: Expr::Column(width),
            step: None,
        }],
        schema: PlanSchema { fields: repeated },
    };
    Ok(LogicalPlan::Project {
        exprs: (0..width).map(Expr::Column).collect(),
        schema: PlanSchema {
            fields: schema.fields[..width].to_vec(),
        },
        input: Box::new(expanded),
    })
}

fn distinct_plan(plan: LogicalPlan) -> LogicalPlan {
    let schema = plan.schema().clone();
    LogicalPlan::Aggregate {
        group: (0..schema.fields.len()).map(Expr::Column).collect(),
        aggregates: vec![],
        schema,
        input: Box::new(plan),
    }
}

/// PostgreSQL's name for an unaliased select item.
pub fn output_name(e: &ast::Expr) -> String {
    use ast::Expr as A;
    match e {
        A::Identifier(i) => ident_name(i),
        A::CompoundIdentifier(parts) => parts.last().map(ident_name).unwrap_or_default(),
        A::Function(f) => object_name_parts(&f.name)
            .last()
            .cloned()
            .unwrap_or_default(),
        A::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            A::Value(_) => data_type.to_string().to_lowercase(),
            inner => output_name(inner),
        },
        A::Nested(inner) => output_name(inner),
        A::Case { .. } => "case".into(),
        A::Extract { .. } => "extract".into(),
        A::Substring { .. } => "substring".into(),
        A::Trim { .. } => "btrim".into(),
        A::Ceil { .. } => "ceil".into(),
        A::Floor { .. } => "floor".into(),
        A::Interval(_) => "interval".into(),
        _ => "?column?".into(),
    }
}
