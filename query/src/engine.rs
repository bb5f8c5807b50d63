//! The statement runner: parses SQL, dispatches DDL and INSERT to storage, binds and
//! executes queries.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_storage::{Catalog, ColumnDef, ColumnType, TableSchema, Value};
use sqlparser::ast::{self, ColumnOption, ObjectType, SqlOption, Statement, TableConstraint};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::binder::{ident_name, object_name_parts, sql_to_arrow_type, table_name, Binder, Param};
use crate::context::QueryContext;
use crate::error::{Error, Result};
use crate::exec::execute;
use crate::logical::LogicalPlan;
use crate::optimize::optimize;
use crate::reuse::{self, GenericPlan, PlanCache, Planned};
use crate::session::{Role, Session};
use crate::stream::RowStream;

/// What a statement returns.
#[derive(Debug)]
pub enum StatementResult {
    /// Rows of a query.
    Rows {
        /// Column names and types.
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
    /// A command's completion tag, as PostgreSQL reports it (`CREATE TABLE`, `INSERT 0 3`).
    Command {
        /// The tag.
        tag: String,
    },
}

impl StatementResult {
    /// Number of rows returned (0 for commands).
    pub fn row_count(&self) -> usize {
        match self {
            StatementResult::Rows { batches, .. } => batches.iter().map(|b| b.num_rows()).sum(),
            StatementResult::Command { .. } => 0,
        }
    }
}

/// What [`Engine::execute_streaming`] returns.
pub enum Streamed {
    /// A query's rows, read as they are pulled.
    Rows(RowStream),
    /// Any other statement, already run.
    Done(StatementResult),
}

/// Parses SQL text into statements (PostgreSQL dialect).
///
/// # Errors
/// [`Error::Syntax`] (42601).
pub fn parse_sql(sql: &str) -> Result<Vec<Statement>> {
    Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| {
        let msg = e.to_string();
        Error::Syntax(msg.trim_start_matches("sql parser error: ").to_string())
    })
}

/// Runs statements against a catalog.
pub struct Engine {
    catalog: Arc<Catalog>,
}

impl Engine {
    /// An engine over `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Engine { catalog }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Parses and runs every statement in `sql`, stopping at the first error.
    ///
    /// # Errors
    /// The first statement's error, with its SQLSTATE ([`Error::sqlstate`]).
    pub fn execute_sql(&self, sql: &str, session: &mut Session) -> Result<Vec<StatementResult>> {
        parse_sql(sql)?
            .iter()
            .map(|s| self.execute(s, session, &[], Arc::new(AtomicBool::new(false))))
            .collect()
    }

    /// What a prepared statement takes and returns: the type of each `$n` and the
    /// result columns (`None` for a statement that returns no rows). A parameter's
    /// type is the one `declared` for it, else the one its context demands under
    /// PostgreSQL's rules for `unknown`, else text.
    ///
    /// # Errors
    /// As binding the statement would fail, including PostgreSQL's errors for a
    /// parameter whose type cannot be decided (`$1 + $2`: 42725).
    pub fn describe(
        &self,
        stmt: &Statement,
        session: &Session,
        declared: Vec<Option<DataType>>,
    ) -> Result<Description> {
        let ctx = QueryContext::new(session.query_options(), Arc::new(AtomicBool::new(false)));
        let mut binder = self.binder(&ctx, session).with_param_types(declared);
        let columns = match stmt {
            Statement::Query(q) => Some(binder.bind_query(q)?.schema().arrow_schema()),
            Statement::Explain { .. } => Some(explain_schema()),
            Statement::ShowVariable { variable } => Some(show_schema(
                &variable
                    .iter()
                    .map(|i| i.value.clone())
                    .collect::<Vec<_>>()
                    .join(" "),
            )),
            Statement::Insert(ins) => {
                self.describe_insert(ins, &mut binder)?;
                None
            }
            // FETCH returns the cursor's columns.
            Statement::Fetch { name, .. } => Some(
                session
                    .cursor_schema(&ident_name(name))
                    .ok_or_else(|| Error::InvalidCursor(ident_name(name)))?,
            ),
            _ => None,
        };
        let params = binder
            .param_types()
            .iter()
            .map(|t| t.clone().unwrap_or(DataType::Utf8))
            .collect();
        Ok(Description { params, columns })
    }

    /// Binds an INSERT's source to learn its parameters' types: a parameter placed
    /// directly in a VALUES row takes the type of its target column.
    fn describe_insert(&self, ins: &ast::Insert, binder: &mut Binder<'_>) -> Result<()> {
        let ast::TableObject::TableName(name) = &ins.table else {
            return Ok(());
        };
        let table = self
            .catalog
            .table(&table_name(name)?)
            .map_err(map_not_found)?;
        if let Some(source) = &ins.source {
            if matches!(source.body.as_ref(), ast::SetExpr::Values(_)) {
                binder.set_insert_targets(target_types(&table, ins));
            }
            binder.bind_query(source)?;
        }
        Ok(())
    }

    /// Runs one parsed statement in `session` with values for its `$n` parameters.
    /// Setting `cancel` from another thread stops it with SQLSTATE 57014.
    ///
    /// # Errors
    /// The statement's error; a panic inside Sluice becomes [`Error::Internal`] for
    /// this statement only.
    pub fn execute(
        &self,
        stmt: &Statement,
        session: &mut Session,
        params: &[Param],
        cancel: Arc<AtomicBool>,
    ) -> Result<StatementResult> {
        refuse_in_failed_block(stmt, session)?;
        // A bug that panics must fail this statement only, never the caller (a
        // server connection, or its neighbours).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.execute_inner(stmt, session, params, cancel)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Internal(format!("statement panicked: {what}")))
        });
        match &result {
            // As PostgreSQL: an error inside a block fails the block (a
            // ROLLBACK that could not undo writes has ended it already).
            Err(_) => session.fail_transaction(),
            Ok(_) if required_role(stmt) > Role::Reader => session.record_write(),
            Ok(_) => {}
        }
        result
    }

    /// Runs one statement as [`Engine::execute`] does, except that a query's
    /// rows come as a [`RowStream`] read as the caller pulls it (a scan
    /// pipeline reads its blocks then; other plans run when the statement
    /// starts). A query calling `set_config()` runs to completion, so the
    /// setting applies once it has run.
    ///
    /// # Errors
    /// As [`Engine::execute`]; errors met while reading come from the stream.
    pub fn execute_streaming(
        &self,
        stmt: &Statement,
        session: &mut Session,
        params: &[Param],
        cancel: Arc<AtomicBool>,
    ) -> Result<Streamed> {
        self.stream_statement(stmt, None, session, params, cancel)
    }

    /// Runs a prepared statement as [`Engine::execute_streaming`] does, a
    /// query from the generic plan kept in `plans` where it has one (bound
    /// and optimized once; see [`crate::reuse`]).
    ///
    /// # Errors
    /// As [`Engine::execute`].
    pub fn execute_prepared(
        &self,
        stmt: &Statement,
        plans: &PlanCache,
        session: &mut Session,
        params: &[Param],
        cancel: Arc<AtomicBool>,
    ) -> Result<Streamed> {
        self.stream_statement(stmt, Some(plans), session, params, cancel)
    }

    fn stream_statement(
        &self,
        stmt: &Statement,
        plans: Option<&PlanCache>,
        session: &mut Session,
        params: &[Param],
        cancel: Arc<AtomicBool>,
    ) -> Result<Streamed> {
        if let Statement::Query(q) = stmt {
            refuse_in_failed_block(stmt, session)?;
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.query_stream(q, plans, session, params, &cancel)
            }))
            .unwrap_or_else(|_| Err(Error::Internal("statement panicked".into())))
            .inspect_err(|_| session.fail_transaction())?;
            if let Some(rows) = started {
                return Ok(Streamed::Rows(rows));
            }
        }
        self.execute(stmt, session, params, cancel)
            .map(Streamed::Done)
    }

    /// A query's rows as a stream; `None` where it must run as a whole.
    fn query_stream(
        &self,
        q: &ast::Query,
        plans: Option<&PlanCache>,
        session: &mut Session,
        params: &[Param],
        cancel: &Arc<AtomicBool>,
    ) -> Result<Option<RowStream>> {
        let ctx = self.context(session, Arc::clone(cancel));
        let plan = match plans {
            Some(plans) => self.prepared_plan(q, plans, session, params, &ctx)?,
            None => self.custom_plan(q, session, params, &ctx)?,
        };
        let Some(plan) = plan else {
            return Ok(None);
        };
        // A stream takes its snapshots when it starts (pruning plans every
        // scan), so the block can keep them now.
        let rows = RowStream::new(&plan, &ctx)?;
        session.keep_block_snapshots(ctx.snapshots());
        Ok(Some(rows))
    }

    /// `q` bound with `params` and optimized; `None` where it calls
    /// `set_config()` and so must run as a whole.
    fn custom_plan(
        &self,
        q: &ast::Query,
        session: &Session,
        params: &[Param],
        ctx: &QueryContext,
    ) -> Result<Option<LogicalPlan>> {
        let mut binder = self.binder(ctx, session).with_params(params.to_vec());
        let plan = optimize(binder.bind_query(q)?, ctx);
        Ok(binder.take_settings().is_empty().then_some(plan))
    }

    /// The plan of prepared query `q` for this execution: from its generic
    /// plan in `plans` if it has a current one, else making one, else bound
    /// afresh as [`Engine::custom_plan`] does.
    fn prepared_plan(
        &self,
        q: &ast::Query,
        plans: &PlanCache,
        session: &Session,
        params: &[Param],
        ctx: &QueryContext,
    ) -> Result<Option<LogicalPlan>> {
        let generation = session.generation();
        let try_generic = match plans.lookup(&self.catalog, generation, params, ctx)? {
            Planned::Reused(plan) => return Ok(Some(plan)),
            Planned::Afresh { try_generic } => try_generic,
        };
        if try_generic {
            if let Some(generic) = self.generic_plan(q, session, params, ctx) {
                if let Some(plan) = plans.keep(generic, params, ctx)? {
                    return Ok(Some(plan));
                }
            }
        }
        reuse::count_afresh();
        let plan = self.custom_plan(q, session, params, ctx)?;
        if try_generic {
            // Bound afresh without error where no generic plan could be made:
            // the statement's shape needs its values (errors may go away).
            plans.refuse_generic();
        }
        Ok(plan)
    }

    /// `q` bound as a generic plan for the types of `params`; `None` where
    /// a value shapes its plan, a parameter came as untyped text, or it
    /// calls `set_config()`.
    fn generic_plan(
        &self,
        q: &ast::Query,
        session: &Session,
        params: &[Param],
        ctx: &QueryContext,
    ) -> Option<GenericPlan> {
        let types = params
            .iter()
            .map(|p| match p {
                Param::Value(v) => Some(v.data_type().clone()),
                Param::Text(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let mut binder = self.binder(ctx, session).generic(types);
        let plan = binder.bind_query(q).ok()?;
        if !binder.take_settings().is_empty() {
            return None;
        }
        let (slots, tables) = binder.take_generic()?;
        Some(GenericPlan::new(plan, slots, tables, session.generation()))
    }

    /// A statement's context; in a transaction block it starts with the
    /// snapshots the block's earlier statements read.
    fn context(&self, session: &Session, cancel: Arc<AtomicBool>) -> QueryContext {
        let ctx = QueryContext::with_catalog(
            session.query_options(),
            cancel,
            Arc::clone(&self.catalog),
            session.user(),
        );
        ctx.seed_snapshots(session.block_snapshots());
        ctx
    }

    fn execute_inner(
        &self,
        stmt: &Statement,
        session: &mut Session,
        params: &[Param],
        cancel: Arc<AtomicBool>,
    ) -> Result<StatementResult> {
        authorize(stmt, session)?;
        let ctx = self.context(session, cancel);
        let result = self.run_statement(stmt, session, params, &ctx);
        session.keep_block_snapshots(ctx.snapshots());
        result
    }

    fn run_statement(
        &self,
        stmt: &Statement,
        session: &mut Session,
        params: &[Param],
        ctx: &QueryContext,
    ) -> Result<StatementResult> {
        let ctx = ctx.clone();
        match stmt {
            Statement::Query(q) => {
                let mut binder = self.binder(&ctx, session).with_params(params.to_vec());
                let plan = optimize(binder.bind_query(q)?, &ctx);
                let settings = binder.take_settings();
                drop(binder);
                let result = run_query(&plan, &ctx)?;
                // set_config() takes effect once its statement has run.
                for (name, value) in settings {
                    session.set(&name, &value)?;
                }
                Ok(result)
            }
            Statement::Declare { stmts, .. } => {
                for d in stmts {
                    self.declare_cursor(&ctx, session, params, d)?;
                }
                Ok(StatementResult::Command {
                    tag: "DECLARE CURSOR".into(),
                })
            }
            Statement::Fetch {
                name, direction, ..
            } => fetch(session, &ident_name(name), direction),
            Statement::Close { cursor } => {
                match cursor {
                    ast::CloseCursor::All => session.cursors().clear(),
                    ast::CloseCursor::Specific { name } => {
                        let n = ident_name(name);
                        if session.cursors().remove(&n).is_none() {
                            return Err(Error::InvalidCursor(n));
                        }
                    }
                }
                Ok(StatementResult::Command {
                    tag: "CLOSE CURSOR".into(),
                })
            }
            Statement::Explain {
                statement, analyze, ..
            } => self.explain(statement, *analyze, &ctx, session, params),
            Statement::Set(set) => session_set(session, set),
            Statement::ShowVariable { variable } => session_show(session, variable),
            Statement::Reset(r) => {
                match &r.reset {
                    ast::Reset::ALL => session.reset(None),
                    ast::Reset::ConfigurationParameter(n) => {
                        session.reset(Some(&object_name_parts(n).join(".")))
                    }
                    ast::Reset::SessionAuthorization => {}
                }
                Ok(StatementResult::Command {
                    tag: "RESET".into(),
                })
            }
            Statement::StartTransaction { modes, .. } => {
                session.set_in_transaction(true);
                set_access_mode(session, modes, "transaction_read_only")?;
                Ok(StatementResult::Command {
                    tag: "BEGIN".into(),
                })
            }
            Statement::Commit { .. } => {
                // COMMIT of a failed block rolls it back, as in PostgreSQL.
                let committed = !session.transaction_failed();
                let tag = if committed { "COMMIT" } else { "ROLLBACK" };
                session.end_block(committed);
                Ok(StatementResult::Command { tag: tag.into() })
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                let writes = session.transaction_writes();
                session.end_block(false);
                if writes > 0 {
                    return Err(cannot_undo(writes, "ROLLBACK"));
                }
                Ok(StatementResult::Command {
                    tag: "ROLLBACK".into(),
                })
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => rollback_to_savepoint(session, &ident_name(name)),
            Statement::Savepoint { name } => {
                if !session.in_transaction() {
                    return Err(no_block("SAVEPOINT"));
                }
                let writes = session.transaction_writes();
                session.savepoints().push((ident_name(name), writes));
                Ok(StatementResult::Command {
                    tag: "SAVEPOINT".into(),
                })
            }
            Statement::ReleaseSavepoint { name } => {
                if !session.in_transaction() {
                    return Err(no_block("RELEASE SAVEPOINT"));
                }
                let at = savepoint_position(session, &ident_name(name))?;
                session.release_savepoint(at);
                Ok(StatementResult::Command {
                    tag: "RELEASE".into(),
                })
            }
            Statement::Discard { object_type } => {
                if matches!(object_type, ast::DiscardObject::ALL) {
                    session.reset(None);
                    session.cursors().clear();
                    session.end_block(false);
                }
                Ok(StatementResult::Command {
                    tag: format!("DISCARD {object_type}"),
                })
            }
            Statement::Deallocate { .. } => Ok(StatementResult::Command {
                tag: "DEALLOCATE".into(),
            }),
            Statement::CreateTable(ct) => self.create_table(ct),
            Statement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } => {
                if *object_type != ObjectType::Table {
                    return Err(Error::NotSupported(format!("DROP {object_type}")));
                }
                for n in names {
                    self.catalog
                        .drop_table(&table_name(n)?, *if_exists)
                        .map_err(map_not_found)?;
                }
                Ok(StatementResult::Command {
                    tag: "DROP TABLE".into(),
                })
            }
            Statement::Insert(ins) => self.insert(ins, &ctx, session, params),
            Statement::Copy { .. } => Err(Error::NotSupported(
                "COPY outside a PostgreSQL connection: it streams its rows over the protocol (psql's \\copy, a driver's copy); COPY to or from a server file is not built".into(),
            )),
            other => Err(Error::NotSupported(format!(
                "statement {}",
                other
                    .to_string()
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            ))),
        }
    }

    fn binder<'s>(&'s self, ctx: &QueryContext, session: &'s Session) -> Binder<'s> {
        Binder::new(&self.catalog, ctx.now_micros(), ctx.options().zone).with_session(session)
    }

    fn explain(
        &self,
        stmt: &Statement,
        analyze: bool,
        ctx: &QueryContext,
        session: &Session,
        params: &[Param],
    ) -> Result<StatementResult> {
        let Statement::Query(q) = stmt else {
            return Err(Error::NotSupported(
                "EXPLAIN of a statement other than a query".into(),
            ));
        };
        let plan = self
            .binder(ctx, session)
            .with_params(params.to_vec())
            .bind_query(q)?;
        let plan = optimize(plan, ctx);
        if !analyze {
            let lines = plan.display_indent().lines().map(String::from).collect();
            return explain_result(lines);
        }
        ctx.enable_profiling();
        let start = Instant::now();
        let result = run_query(&plan, ctx)?;
        let elapsed = start.elapsed();
        // Operators the scan fast path runs inside their parent report nothing.
        let note = |node: &LogicalPlan| {
            Some(match ctx.operator(node.node_id()) {
                Some(s) => format!(
                    "(time={:.3} ms rows={})",
                    s.elapsed.as_secs_f64() * 1e3,
                    s.rows
                ),
                None => "(in the scan above)".to_string(),
            })
        };
        let mut lines: Vec<String> = plan
            .display_indent_with(&note)
            .lines()
            .map(String::from)
            .collect();
        for (table, st) in ctx.scans() {
            let indexes = if st.indexes_used.is_empty() {
                String::new()
            } else {
                format!(" on {}", st.indexes_used.join(", "))
            };
            let unindexed = if st.unindexed_columns.is_empty() {
                String::new()
            } else {
                format!("; no index on {}", st.unindexed_columns.join(", "))
            };
            lines.push(format!(
                "Scan {table}: sealed segments={} pruned={} scanned whole={}; blocks={} pruned by zone maps={} pruned by inverted index={}; index lookups={}{indexes}{unindexed}; conditions answered by index={}; columns read=[{}]; rows selected={}",
                st.segments,
                st.segments_pruned,
                st.segments_scanned_whole,
                st.blocks,
                st.blocks_pruned_by_zone_maps,
                st.blocks_pruned_by_index,
                st.index_lookups,
                st.conditions_answered,
                st.columns_read.join(", "),
                st.rows_selected
            ));
        }
        for spill in ctx.spills() {
            lines.push(format!(
                "Aggregate spilled to disk (past the memory bound): partitions={} rows written={} bytes written={} splits deep={}",
                spill.partitions, spill.rows, spill.bytes, spill.depth
            ));
        }
        lines.push(format!(
            "Execution: rows={} time={:.3} ms",
            result.row_count(),
            elapsed.as_secs_f64() * 1e3
        ));
        explain_result(lines)
    }

    /// `DECLARE name [INSENSITIVE] [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`:
    /// runs the query now and keeps its rows (so the cursor is insensitive to
    /// later writes), counted against the statement's memory bound and held
    /// from the server's pool while the cursor is open.
    fn declare_cursor(
        &self,
        ctx: &QueryContext,
        session: &mut Session,
        params: &[Param],
        d: &ast::Declare,
    ) -> Result<()> {
        let Some(query) = &d.for_query else {
            return Err(Error::NotSupported("DECLARE without FOR query".into()));
        };
        if d.binary == Some(true) {
            return Err(Error::NotSupported(
                "BINARY cursors: FETCH returns the formats the client asks for".into(),
            ));
        }
        if d.scroll == Some(true) {
            return Err(Error::NotSupported(
                "SCROLL cursors: FETCH reads forward only".into(),
            ));
        }
        let hold = d.hold == Some(true);
        if !hold && !session.in_transaction() {
            return Err(no_block("DECLARE CURSOR"));
        }
        let plan = self
            .binder(ctx, session)
            .with_params(params.to_vec())
            .bind_query(query)?;
        let plan = optimize(plan, ctx);
        let schema = plan.schema().arrow_schema();
        let batches = execute(&plan, ctx)?;
        let rows = arrow::compute::concat_batches(&schema, &batches)?;
        // The query has run: what its operators accounted is freed with its
        // batches, and the cursor's rows are held instead, beyond the statement.
        drop(batches);
        ctx.release(ctx.memory_used());
        let memory = ctx.hold(rows.get_array_memory_size())?.map(Arc::new);
        let declared_in_block = session.in_transaction();
        let savepoint_depth = session.savepoints().len();
        for name in &d.names {
            session.cursors().insert(
                ident_name(name),
                crate::session::Cursor {
                    rows: rows.clone(),
                    position: 0,
                    hold,
                    declared_in_block,
                    savepoint_depth,
                    memory: memory.clone(),
                },
            );
        }
        Ok(())
    }

    fn create_table(&self, ct: &ast::CreateTable) -> Result<StatementResult> {
        if ct.query.is_some() || ct.like.is_some() || ct.or_replace || ct.temporary {
            return Err(Error::NotSupported("this form of CREATE TABLE".into()));
        }
        let name = table_name(&ct.name)?;
        let mut primary_key: Vec<String> = Vec::new();
        let mut columns = Vec::new();
        for c in &ct.columns {
            let cname = ident_name(&c.name);
            let arrow = sql_to_arrow_type(&c.data_type)?;
            let ty = stored_column_type(&c.data_type, &arrow)?;
            let mut nullable = true;
            for opt in &c.options {
                match &opt.option {
                    ColumnOption::NotNull => nullable = false,
                    ColumnOption::Null => {}
                    ColumnOption::PrimaryKey(_) => primary_key.push(cname.clone()),
                    other => return Err(Error::NotSupported(format!("column option {other}"))),
                }
            }
            columns.push(ColumnDef {
                name: cname,
                ty,
                nullable,
            });
        }
        for constraint in &ct.constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    if !primary_key.is_empty() {
                        return Err(Error::InvalidDefinition(format!(
                            "multiple primary keys for table \"{name}\" are not allowed"
                        )));
                    }
                    for col in &pk.columns {
                        primary_key.push(match &col.column.expr {
                            ast::Expr::Identifier(i) => ident_name(i),
                            other => other.to_string(),
                        });
                    }
                }
                other => return Err(Error::NotSupported(format!("constraint {other}"))),
            }
        }
        let options = table_options(&ct.table_options)?;
        let schema = TableSchema::new(&name, columns, primary_key, options)?;
        self.catalog.create_table(schema, ct.if_not_exists)?;
        Ok(StatementResult::Command {
            tag: "CREATE TABLE".into(),
        })
    }

    fn insert(
        &self,
        ins: &ast::Insert,
        ctx: &QueryContext,
        session: &Session,
        params: &[Param],
    ) -> Result<StatementResult> {
        if ins.on.is_some() || ins.returning.is_some() {
            return Err(Error::NotSupported(
                "INSERT ... ON CONFLICT / RETURNING".into(),
            ));
        }
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(Error::NotSupported("INSERT into a table function".into()));
        };
        let table = self
            .catalog
            .table(&table_name(name)?)
            .map_err(map_not_found)?;
        let source = ins
            .source
            .as_ref()
            .ok_or_else(|| Error::NotSupported("INSERT without VALUES or SELECT".into()))?;
        let mut binder = self.binder(ctx, session).with_params(params.to_vec());
        if matches!(source.body.as_ref(), ast::SetExpr::Values(_)) {
            binder.set_insert_targets(target_types(&table, ins));
        }
        let plan = optimize(binder.bind_query(source)?, ctx);
        drop(binder);
        let columns = insert_targets(&table, ins);
        let width = plan.schema().fields.len();
        if width > columns.len() {
            return Err(Error::Syntax(
                "INSERT has more expressions than target columns".into(),
            ));
        }
        // Which of the query's columns each table column takes (the rest are
        // NULL); the last of a column named twice.
        let schema = table.schema();
        let mut sources: Vec<Option<usize>> = vec![None; schema.columns.len()];
        for (i, name) in columns[..width].iter().enumerate() {
            let at =
                schema
                    .column_index(name)
                    .ok_or_else(|| sluice_storage::Error::ColumnNotFound {
                        table: schema.name.clone(),
                        column: name.clone(),
                    })?;
            sources[at] = Some(i);
        }
        // The source's rows are pulled batch by batch and handed to storage
        // as they come: a large INSERT ... SELECT holds a few segments' rows,
        // not its whole result (see `Table::append_statement`). Only an upsert
        // or dedup table gathers them all, so only there they are accounted.
        let gathered = schema.upsert_config().is_some();
        let mut accounted = 0usize;
        let batches = RowStream::new(&plan, ctx)?.map(|batch| {
            let batch = stored_batch(&batch?, &sources, schema, ctx)?;
            if gathered {
                // The batch, and its rows as values once gathered.
                let bytes = batch.get_array_memory_size()
                    + batch.num_rows()
                        * (std::mem::size_of::<Vec<Value>>()
                            + batch.num_columns() * std::mem::size_of::<Value>());
                ctx.reserve(bytes)?;
                accounted += bytes;
            }
            Ok::<_, Error>(batch)
        });
        let stored_rows = table.append_statement(batches);
        ctx.release(accounted);
        Ok(StatementResult::Command {
            tag: format!("INSERT 0 {}", stored_rows?),
        })
    }
}

/// An INSERT source's batch as the table's columns: each value assigned to
/// its column as PostgreSQL's assignment casts do (a numeric into a double,
/// a double into an integer, text parsed), columns not given NULL. TEXT
/// stays dictionary-encoded where it is.
fn stored_batch(
    batch: &RecordBatch,
    sources: &[Option<usize>],
    table: &TableSchema,
    ctx: &QueryContext,
) -> Result<RecordBatch> {
    ctx.check()?;
    let rows = batch.num_rows();
    let columns = table
        .columns
        .iter()
        .zip(sources)
        .map(|(column, source)| {
            let ty = column.ty.arrow_type();
            let Some(c) = source.map(|i| batch.column(i)) else {
                return Ok(arrow::array::new_null_array(&ty, rows));
            };
            match c.data_type() {
                t if column.ty.takes_arrow(t) => Ok(Arc::clone(c)),
                DataType::Null => Ok(arrow::array::new_null_array(&ty, rows)),
                _ => crate::cast::cast_array(c, &ty, ctx.options().zone),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    let fields: Vec<Field> = table
        .columns
        .iter()
        .zip(&columns)
        .map(|(def, c)| Field::new(&def.name, c.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

/// What a prepared statement takes and returns.
#[derive(Clone, Debug)]
pub struct Description {
    /// The type of each `$n`, in order.
    pub params: Vec<DataType>,
    /// The result columns, or `None` for a statement without rows.
    pub columns: Option<SchemaRef>,
}

/// The stored type of a column declared as `declared` (`arrow` as the engine
/// reads it). NUMERIC needs a precision of at most 18 (values are 64-bit
/// integers on disk, and one scale per column): a bare NUMERIC, whose every
/// value may have its own scale in PostgreSQL, is refused rather than rounded.
fn stored_column_type(declared: &ast::DataType, arrow: &DataType) -> Result<ColumnType> {
    if let DataType::Decimal128(precision, scale) = *arrow {
        if !declared.to_string().contains('(') {
            return Err(Error::NotSupported(
                "NUMERIC without a precision as a stored column: declare NUMERIC(p, s) with p up to 18"
                    .into(),
            ));
        }
        if precision > sluice_storage::types::MAX_STORED_NUMERIC_PRECISION {
            return Err(Error::NotSupported(format!(
                "NUMERIC({precision}, {scale}) as a stored column: the precision is at most {}",
                sluice_storage::types::MAX_STORED_NUMERIC_PRECISION
            )));
        }
        return Ok(ColumnType::Numeric { precision, scale });
    }
    ColumnType::from_arrow(arrow)
        .ok_or_else(|| Error::NotSupported(format!("column type {declared} for a stored column")))
}

/// The target columns of an INSERT with their types (an unknown name keeps
/// text; appending reports it).
fn target_types(table: &sluice_storage::Table, ins: &ast::Insert) -> Vec<(String, DataType)> {
    let schema = table.schema();
    insert_targets(table, ins)
        .into_iter()
        .map(|name| {
            let ty = schema
                .column_index(&name)
                .map_or(DataType::Utf8, |i| schema.columns[i].ty.arrow_type());
            (name, ty)
        })
        .collect()
}

fn insert_targets(table: &sluice_storage::Table, ins: &ast::Insert) -> Vec<String> {
    if ins.columns.is_empty() {
        table
            .schema()
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect()
    } else {
        ins.columns
            .iter()
            .map(|c| object_name_parts(c).last().cloned().unwrap_or_default())
            .collect()
    }
}

fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "QUERY PLAN",
        DataType::Utf8,
        false,
    )]))
}

/// SHOW's columns: the setting's name for one, PostgreSQL's three for ALL
/// (Describe and Execute share it, so they agree).
fn show_schema(name: &str) -> SchemaRef {
    if name.eq_ignore_ascii_case("all") {
        return Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("setting", DataType::Utf8, false),
            Field::new("description", DataType::Utf8, false),
        ]));
    }
    Arc::new(Schema::new(vec![Field::new(
        name.to_lowercase(),
        DataType::Utf8,
        false,
    )]))
}

fn setting_value(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.clone(),
            ast::Value::Boolean(b) => {
                if *b {
                    "on".into()
                } else {
                    "off".into()
                }
            }
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => format!("-{}", setting_value(expr)),
        other => other.to_string(),
    }
}

fn session_set(session: &mut Session, set: &ast::Set) -> Result<StatementResult> {
    match set {
        ast::Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = object_name_parts(variable).join(".");
            let is_default = matches!(values.as_slice(), [ast::Expr::Identifier(i)] if i.value.eq_ignore_ascii_case("default"));
            if is_default {
                session.reset(Some(&name));
            } else {
                let value = values
                    .iter()
                    .map(setting_value)
                    .collect::<Vec<_>>()
                    .join(", ");
                session.set(&name, &value)?;
            }
        }
        ast::Set::SetTimeZone { value, .. } => session.set("timezone", &setting_value(value))?,
        ast::Set::SetNames { charset_name, .. } => {
            session.set("client_encoding", &charset_name.value)?
        }
        ast::Set::SetNamesDefault {} => session.reset(Some("client_encoding")),
        // Every isolation level behaves as each statement reading one
        // consistent snapshot; the access mode (READ ONLY) takes effect.
        ast::Set::SetTransaction {
            modes,
            session: characteristics,
            ..
        } => {
            let key = if *characteristics {
                "default_transaction_read_only"
            } else {
                "transaction_read_only"
            };
            // Outside a block SET TRANSACTION has no transaction to change,
            // as in PostgreSQL (which warns).
            if *characteristics || session.in_transaction() {
                set_access_mode(session, modes, key)?;
            }
        }
        other => return Err(Error::NotSupported(format!("{other}"))),
    }
    Ok(StatementResult::Command { tag: "SET".into() })
}

/// In a block that had an error only COMMIT and ROLLBACK run (25P02).
///
/// # Errors
/// 25P02 for any other statement there.
pub fn refuse_in_failed_block(stmt: &Statement, session: &Session) -> Result<()> {
    if session.transaction_failed()
        && !matches!(stmt, Statement::Commit { .. } | Statement::Rollback { .. })
    {
        return Err(Error::Data {
            code: "25P02",
            message:
                "current transaction is aborted, commands ignored until end of transaction block"
                    .into(),
        });
    }
    Ok(())
}

/// Sluice applies each statement when it completes, so a rollback over
/// writes cannot undo them: it says so (0A000) rather than report success.
fn cannot_undo(writes: u64, what: &str) -> Error {
    Error::NotSupported(format!(
        "{what} cannot undo the {writes} write(s) made since: Sluice applies each statement when it completes (docs/sql.md, transactions); the block has ended"
    ))
}

fn no_block(what: &str) -> Error {
    Error::Data {
        code: "25P01",
        message: format!("{what} can only be used in transaction blocks"),
    }
}

/// Where savepoint `name` is in the block's list (the latest of that name).
fn savepoint_position(session: &mut Session, name: &str) -> Result<usize> {
    session
        .savepoints()
        .iter()
        .rposition(|(n, _)| n == name)
        .ok_or_else(|| Error::Data {
            code: "3B001",
            message: format!("savepoint \"{name}\" does not exist"),
        })
}

/// ROLLBACK TO SAVEPOINT: back to the savepoint (it stays), a failed block
/// healthy again, when nothing was written since; refused when writes were
/// (they cannot be undone), which ends the block.
fn rollback_to_savepoint(session: &mut Session, name: &str) -> Result<StatementResult> {
    if !session.in_transaction() {
        return Err(no_block("ROLLBACK TO SAVEPOINT"));
    }
    let at = savepoint_position(session, name)?;
    let before = session.savepoints()[at].1;
    let since = session.transaction_writes() - before;
    if since > 0 {
        session.end_block(false);
        return Err(cannot_undo(since, "ROLLBACK TO SAVEPOINT"));
    }
    session.rollback_to_savepoint(at);
    Ok(StatementResult::Command {
        tag: ROLLBACK_TO_SAVEPOINT.into(),
    })
}

/// The tag of ROLLBACK TO SAVEPOINT: the wire says `ROLLBACK`, as PostgreSQL
/// does, but the block goes on (the server maps it back).
pub const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT";

/// Applies READ ONLY / READ WRITE among `modes` to the setting `key`.
fn set_access_mode(session: &mut Session, modes: &[ast::TransactionMode], key: &str) -> Result<()> {
    for m in modes {
        if let ast::TransactionMode::AccessMode(mode) = m {
            let on = matches!(mode, ast::TransactionAccessMode::ReadOnly);
            session.set(key, if on { "on" } else { "off" })?;
        }
    }
    Ok(())
}

/// The least role that may run `stmt`: reading and session statements need a
/// reader, INSERT a writer, anything else (DDL) an admin.
fn required_role(stmt: &Statement) -> Role {
    match stmt {
        Statement::Query(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::Set(_)
        | Statement::Reset(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. } => Role::Reader,
        Statement::Explain { statement, .. } => required_role(statement),
        Statement::Insert(_) => Role::Writer,
        Statement::Copy { to: true, .. } => Role::Reader,
        Statement::Copy { to: false, .. } => Role::Writer,
        _ => Role::Admin,
    }
}

/// The statement's name in a permission error (`INSERT`, `DROP`).
fn statement_name(stmt: &Statement) -> String {
    let text = stmt.to_string();
    let mut words = text.split_whitespace();
    match (words.next(), words.next()) {
        (Some(a), Some(b)) if matches!(a, "CREATE" | "ALTER") => format!("{a} {b}"),
        (Some(a), _) => a.to_string(),
        _ => "this statement".into(),
    }
}

/// Refuses a statement the session's role does not allow (42501), and a
/// write in a read-only transaction (25006), before anything runs. Front
/// ends that run a statement themselves (the server's COPY) call it too.
///
/// # Errors
/// 42501 or 25006.
pub fn authorize(stmt: &Statement, session: &Session) -> Result<()> {
    let needed = required_role(stmt);
    if session.role() < needed {
        return Err(Error::InsufficientPrivilege(format!(
            "user \"{}\" has role {}, which may not run {} (it needs {})",
            session.user(),
            session.role().name(),
            statement_name(stmt),
            needed.name()
        )));
    }
    if needed > Role::Reader && session.read_only() {
        return Err(Error::ReadOnlyTransaction(statement_name(stmt)));
    }
    Ok(())
}

fn session_show(session: &Session, variable: &[ast::Ident]) -> Result<StatementResult> {
    let name = variable
        .iter()
        .map(|i| i.value.clone())
        .collect::<Vec<_>>()
        .join(" ");
    if name.eq_ignore_ascii_case("all") {
        let schema = show_schema("all");
        let (names, values): (Vec<&str>, Vec<&str>) = session.all().unzip();
        let descriptions = vec![""; names.len()];
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(values)),
                Arc::new(StringArray::from(descriptions)),
            ],
        )?;
        return Ok(StatementResult::Rows {
            schema,
            batches: vec![batch],
        });
    }
    let value = session
        .get(&name)
        .map(str::to_string)
        .ok_or_else(|| Error::UnknownSetting(name.to_lowercase()))?;
    let schema = show_schema(&name);
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(vec![value]))],
    )?;
    Ok(StatementResult::Rows {
        schema,
        batches: vec![batch],
    })
}

/// FETCH from a cursor: the next rows (n, NEXT, ALL, FORWARD n/ALL).
fn fetch(
    session: &mut Session,
    name: &str,
    direction: &ast::FetchDirection,
) -> Result<StatementResult> {
    use ast::FetchDirection as D;
    let count = |v: &ast::ValueWithSpan| -> Result<usize> {
        v.value
            .to_string()
            .parse::<usize>()
            .map_err(|_| Error::NotSupported(format!("FETCH {}", v.value)))
    };
    let cursor = session
        .cursors()
        .get_mut(name)
        .ok_or_else(|| Error::InvalidCursor(name.to_string()))?;
    let remaining = cursor.rows.num_rows() - cursor.position;
    let n = match direction {
        D::Count { limit } | D::Forward { limit: Some(limit) } => count(limit)?,
        D::Next | D::Forward { limit: None } => 1,
        D::All | D::ForwardAll => remaining,
        other => return Err(Error::NotSupported(format!("FETCH {other}"))),
    }
    .min(remaining);
    let batch = cursor.rows.slice(cursor.position, n);
    cursor.position += n;
    Ok(StatementResult::Rows {
        schema: batch.schema(),
        batches: vec![batch],
    })
}

fn map_not_found(e: sluice_storage::Error) -> Error {
    match e {
        sluice_storage::Error::TableNotFound(t) => Error::UndefinedTable(t),
        other => Error::Storage(other),
    }
}

fn run_query(plan: &LogicalPlan, ctx: &QueryContext) -> Result<StatementResult> {
    let batches = execute(plan, ctx)?;
    Ok(StatementResult::Rows {
        schema: plan.schema().arrow_schema(),
        batches,
    })
}

fn table_options(opts: &ast::CreateTableOptions) -> Result<BTreeMap<String, String>> {
    let list: &[SqlOption] = match opts {
        ast::CreateTableOptions::None => &[],
        ast::CreateTableOptions::With(l) => l,
        _ => {
            return Err(Error::NotSupported(
                "table options other than WITH (...)".into(),
            ))
        }
    };
    let mut out = BTreeMap::new();
    for o in list {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(Error::Syntax(format!(
                "table option {o} must be key = value"
            )));
        };
        let key = object_name_parts(key).join(".");
        let value = match value {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                ast::Value::Number(n, _) => n.clone(),
                ast::Value::Boolean(b) => b.to_string(),
                other => other.to_string(),
            },
            ast::Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// EXPLAIN's answer: one text column, one row per line.
fn explain_result(lines: Vec<String>) -> Result<StatementResult> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "QUERY PLAN",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(lines))],
    )?;
    Ok(StatementResult::Rows {
        schema,
        batches: vec![batch],
    })
}
