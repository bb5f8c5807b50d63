//! The PostgreSQL protocol front end, on `pgwire`: startup, simple and extended
//! query, cancel. Statements run on their connection's runtime thread inside
//! `block_in_place`, which hands the thread's other tasks to another thread, so a
//! long query never stalls other connections; a CancelRequest sets the running
//! statement's cancel flag. Each connection keeps its own [`Session`].

use sluice_storage::zone::Zone;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{send_describe_response, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribeResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionGuard, ConnectionHandle, ConnectionManager,
    PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type, DEFAULT_NAME,
    METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sluice_query::activity::SessionActivity;
use sluice_query::reuse::PlanCache;
use sluice_query::session::Role;
use sluice_query::session::SERVER_VERSION;
use sluice_query::{Engine, Error, Param, Session, StatementResult, Streamed};
use sqlparser::ast::{self, Statement};

use super::auth::Credentials;
use super::copy::{CopyFormat, CopyOptions};
use super::encode::{encode_rows, fields, pg_type};
use super::params;
use crate::Database;

/// A statement prepared with Parse: its AST and what Describe reports.
#[derive(Debug)]
pub struct Prepared {
    stmt: Statement,
    /// Its text as logs and pg_stat_activity show it, formatted once.
    text: String,
    params: Vec<Type>,
    columns: Option<arrow::datatypes::SchemaRef>,
    /// Its plan, kept between executions where it can be reused.
    plans: PlanCache,
}

/// Everything a connection needs; shared by all connections.
pub struct Backend {
    db: Arc<Database>,
    manager: Arc<ConnectionManager>,
    pids: RandomPidSecretKeyGenerator,
    parser: Arc<SluiceQueryParser>,
    running: Running,
    /// Each configured user's role; `None` in trust mode, where everyone is
    /// an admin.
    roles: Option<Arc<BTreeMap<String, Role>>>,
    /// `log_min_duration_statement`: statements that take this long are logged.
    slow_after: Option<std::time::Duration>,
    /// Where COPY may read and write server files.
    files: Arc<super::files::FileAccess>,
}

/// The cancel flag of each statement running now, by the (process id, secret key)
/// a CancelRequest names.
type Running = Arc<Mutex<HashMap<(i32, Vec<u8>), Arc<AtomicBool>>>>;

/// Answers CancelRequests: sets the named connection's running statement's
/// cancel flag, which the engine checks between blocks (the statement runs on
/// its connection's thread, so there is no future for `pgwire` to drop).
pub struct StatementCancel {
    running: Running,
    manager: Arc<ConnectionManager>,
}

#[async_trait]
impl CancelHandler for StatementCancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        if let Some(flag) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            sluice_query::pool::cancel(flag);
        }
        self.manager.cancel(request.pid, &request.secret_key).await;
    }
}

/// Takes a statement out of [`Running`] when it ends, however it ends.
struct RunningEntry {
    running: Running,
    key: (i32, Vec<u8>),
}

impl Drop for RunningEntry {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// The handler set `pgwire` asks for.
pub struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Startup>,
    cancel: Arc<StatementCancel>,
}

/// How connections authenticate.
pub struct Startup {
    method: StartupMethod,
    limits: Limits,
    /// Connections open now (counted from accept to close).
    open: Arc<AtomicUsize>,
    /// Each open connection's way to be closed, by the client's address.
    closers: Closers,
}

/// How to close each open connection (`pg_terminate_backend`, shutdown), by
/// the client's address.
type Closers = Arc<Mutex<HashMap<std::net::SocketAddr, Arc<Closer>>>>;

/// The FATAL error of a connection ended by shutdown or `pg_terminate_backend`.
pub const ADMIN_SHUTDOWN: EndReason = (
    "57P01",
    "terminating connection due to administrator command",
);

/// Why the server ends a connection: the SQLSTATE and message of the FATAL
/// error its client is told.
pub type EndReason = (&'static str, &'static str);

/// How to end one connection from outside it (`pg_terminate_backend`,
/// shutdown, the authentication timeout): its message loop tells the client
/// why, in band, at its next message boundary, and closes.
pub struct Closer {
    ending: tokio::sync::watch::Sender<Option<EndReason>>,
    /// A second handle on the socket, to notice a client that hangs up while
    /// its statement runs.
    raw: Option<std::net::TcpStream>,
    /// That handle registered with the runtime, on the first statement
    /// watched: registering one per statement cost a dup, two epoll_ctl and
    /// a close for every query of a dashboard's connection.
    watched: std::sync::OnceLock<Option<Arc<tokio::net::TcpStream>>>,
    authenticated: AtomicBool,
}

impl Closer {
    /// A closer for a connection; `raw` is a second handle on its socket.
    pub fn new(raw: Option<std::net::TcpStream>) -> Closer {
        Closer {
            ending: tokio::sync::watch::channel(None).0,
            raw,
            watched: std::sync::OnceLock::new(),
            authenticated: AtomicBool::new(false),
        }
    }

    /// Asks the connection to end for `reason`; the first reason given wins.
    pub fn end(&self, reason: EndReason) {
        self.ending.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(reason);
            }
            first
        });
    }

    /// What the connection's loop watches for the reason it must end.
    pub fn ending(&self) -> tokio::sync::watch::Receiver<Option<EndReason>> {
        self.ending.subscribe()
    }

    /// Resolves `grace` after the connection was asked to end: the backstop
    /// for a loop that cannot reach a message boundary (a client that does
    /// not read what it is sent).
    pub async fn ended_past(&self, grace: std::time::Duration) {
        let mut ending = self.ending();
        if ending.wait_for(Option::is_some).await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Asks a connection not authenticated within `timeout` to end (08P01);
    /// never resolves.
    pub async fn authentication_deadline(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await;
        if !self.authenticated.load(Ordering::Relaxed) {
            tracing::warn!("connection closed: authentication timeout");
            self.end(("08P01", "canceling authentication due to timeout"));
        }
        std::future::pending::<()>().await;
    }
}

/// What the server admits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Refuse connections that did not negotiate TLS (28000).
    pub require_tls: bool,
    /// Most connections at once; past it a new one is refused (53300).
    pub max_connections: usize,
    /// Statements that take this long are logged (`log_min_duration_statement`).
    pub log_min_duration_statement: Option<std::time::Duration>,
}

/// One open connection: counted against `max_connections`, closable by
/// `pg_terminate_backend` and at shutdown, until dropped.
pub struct OpenConnection {
    open: Arc<AtomicUsize>,
    closers: Closers,
    peer: std::net::SocketAddr,
    /// How to close the connection.
    pub closer: Arc<Closer>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.closers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.peer);
    }
}

/// How a connection proves who it is.
enum StartupMethod {
    /// No password (loopback, or `--insecure-trust`).
    Trust(Arc<Backend>),
    /// SCRAM-SHA-256 against configured verifiers.
    Scram(Arc<SASLAuthStartupHandler<Parameters>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let starting = matches!(message, PgWireFrontendMessage::Startup(_));
        if starting && self.open.load(Ordering::Relaxed) > self.limits.max_connections {
            tracing::warn!(client = %client.socket_addr(), max_connections = self.limits.max_connections, "connection refused: too many clients");
            // Refused before authentication, as PostgreSQL does; a
            // CancelRequest never gets here, so cancelling still works.
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "53300".into(),
                format!(
                    "sorry, too many clients already (max_connections is {})",
                    self.limits.max_connections
                ),
            ))));
        }
        if self.limits.require_tls && starting && !client.is_secure() {
            tracing::warn!(client = %client.socket_addr(), "connection refused: TLS required");
            // PostgreSQL's answer when pg_hba.conf has only hostssl lines.
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this server accepts TLS connections only (require_tls): connect with sslmode=require"
                    .into(),
            ))));
        }
        let outcome = match &self.method {
            StartupMethod::Trust(b) => b.on_startup(client, message).await,
            StartupMethod::Scram(s) => s.on_startup(client, message).await,
        };
        if let Err(e) = &outcome {
            if e.code().starts_with("28") {
                tracing::warn!(
                    client = %client.socket_addr(),
                    user = %client.metadata().get(METADATA_USER).cloned().unwrap_or_default(),
                    sqlstate = e.code(),
                    "authentication failed"
                );
            }
        }
        outcome?;
        if matches!(
            client.state(),
            pgwire::api::PgWireConnectionState::ReadyForQuery
        ) && client.session_extensions().get::<ActivityEntry>().is_none()
        {
            self.register_activity(client);
        }
        Ok(())
    }
}

impl Handlers {
    /// Handlers over an open database. With `credentials`, clients must
    /// authenticate with SCRAM-SHA-256.
    ///
    /// Channel binding (SCRAM-SHA-256-PLUS) is not offered: `pgwire` would offer it
    /// on plain connections too when a certificate is configured, and clients refuse
    /// that, so a TLS server could not accept non-TLS clients.
    pub fn new(
        db: Arc<Database>,
        credentials: Option<Credentials>,
        limits: Limits,
        files: super::files::FileAccess,
    ) -> Self {
        let manager = Arc::new(ConnectionManager::new());
        let running: Running = Arc::default();
        let backend = Arc::new(Backend {
            running: Arc::clone(&running),
            parser: Arc::new(SluiceQueryParser {
                db: Arc::clone(&db),
                roles: credentials.as_ref().map(|c| Arc::new(c.roles())),
            }),
            db,
            manager: Arc::clone(&manager),
            pids: RandomPidSecretKeyGenerator::default(),
            files: Arc::new(files),
            roles: credentials.as_ref().map(|c| Arc::new(c.roles())),
            slow_after: limits.log_min_duration_statement,
        });
        let roles = backend.roles.clone();
        let method = match credentials {
            None => StartupMethod::Trust(Arc::clone(&backend)),
            Some(c) => {
                let mut scram = ScramAuth::new(Arc::new(c));
                scram.set_iterations(super::auth::ITERATIONS);
                StartupMethod::Scram(Arc::new(
                    SASLAuthStartupHandler::new(Arc::new(Parameters { roles }))
                        .with_scram(scram)
                        .with_connection_manager(Arc::clone(&manager)),
                ))
            }
        };
        Handlers {
            backend,
            startup: Arc::new(Startup {
                method,
                limits,
                open: Arc::new(AtomicUsize::new(0)),
                closers: Arc::default(),
            }),
            cancel: Arc::new(StatementCancel { running, manager }),
        }
    }
}

impl Handlers {
    /// Counts a connection just accepted from `peer` (`raw`: a second handle
    /// on its socket), until the returned value is dropped.
    pub fn connection_opened(
        &self,
        peer: std::net::SocketAddr,
        raw: Option<std::net::TcpStream>,
    ) -> OpenConnection {
        self.startup.open.fetch_add(1, Ordering::Relaxed);
        let closer = Arc::new(Closer::new(raw));
        self.startup
            .closers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, Arc::clone(&closer));
        OpenConnection {
            open: Arc::clone(&self.startup.open),
            closers: Arc::clone(&self.startup.closers),
            peer,
            closer,
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.startup.open.load(Ordering::Relaxed)
    }

    /// Statements running now.
    pub fn running_statements(&self) -> usize {
        self.backend
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Shutdown's last step: cancels what still runs (57P01), and asks every
    /// connection to tell its client the server is going away, and close.
    pub fn close_all(&self) {
        sluice_query::context::SHUTTING_DOWN.store(true, Ordering::Relaxed);
        for flag in self
            .backend
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            sluice_query::pool::cancel(flag);
        }
        let closers: Vec<Arc<Closer>> = self
            .startup
            .closers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for c in closers {
            c.end(ADMIN_SHUTDOWN);
        }
    }
}

impl Startup {
    /// Lists an authenticated connection in pg_stat_activity until it ends.
    fn register_activity<C: ClientInfo>(&self, client: &C) {
        let meta = client.metadata();
        let get = |k: &str| meta.get(k).cloned().unwrap_or_default();
        let peer = client.socket_addr();
        let close = self
            .closers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .cloned();
        if let Some(c) = &close {
            c.authenticated.store(true, Ordering::Relaxed);
        }
        let closer = close.clone();
        let terminate: sluice_query::activity::Terminate = Box::new(move |reason| {
            if let Some(c) = &close {
                c.end(reason);
            }
        });
        tracing::info!(
            pid = client.pid_and_secret_key().0,
            user = %get(METADATA_USER),
            database = %get(METADATA_DATABASE),
            application = %get("application_name"),
            client = %peer,
            tls = client.is_secure(),
            "connection authorized"
        );
        let (session, registered) =
            sluice_query::activity::activity().register(SessionActivity::new(
                client.pid_and_secret_key().0,
                &get(METADATA_USER),
                &get(METADATA_DATABASE),
                &get("application_name"),
                &peer.to_string(),
                terminate,
            ));
        client.session_extensions().insert(ActivityEntry {
            session,
            _registered: registered,
            closer,
        });
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::clone(&self.backend)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// The server parameters sent after authentication: drivers read `server_version`
/// to decide which PostgreSQL features they may use.
pub struct Parameters {
    /// Each user's role (`None`: trust, everyone an admin), for `is_superuser`
    /// and `default_transaction_read_only`.
    roles: Option<Arc<BTreeMap<String, Role>>>,
}

impl Parameters {
    /// The role of the connection's user.
    fn role_of(&self, user: Option<&String>) -> Role {
        role_of(self.roles.as_deref(), user)
    }
}

/// A user's role: an admin in trust mode; in SCRAM mode the configured one
/// (an unknown user never gets this far).
fn role_of(roles: Option<&BTreeMap<String, Role>>, user: Option<&String>) -> Role {
    match (roles, user) {
        (None, _) => Role::Admin,
        (Some(r), Some(u)) => r.get(u).copied().unwrap_or(Role::Reader),
        (Some(_), None) => Role::Reader,
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let meta = client.metadata();
        let mut p = HashMap::new();
        for (k, v) in [
            ("server_version", SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("in_hot_standby", "off"),
        ] {
            p.insert(k.to_string(), v.to_string());
        }
        let role = self.role_of(meta.get(METADATA_USER));
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        p.insert("is_superuser".into(), on_off(role == Role::Admin));
        p.insert(
            "default_transaction_read_only".into(),
            on_off(role == Role::Reader),
        );
        p.insert(
            "application_name".into(),
            meta.get("application_name").cloned().unwrap_or_default(),
        );
        p.insert(
            "session_authorization".into(),
            meta.get(METADATA_USER).cloned().unwrap_or_default(),
        );
        Some(p)
    }
}

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, key) = self.pids.generate(client);
            client.set_pid_and_secret_key(pid, key.clone());
            let (handle, guard) = self.manager.register(pid, key);
            client
                .session_extensions()
                .insert::<Arc<ConnectionHandle>>(handle);
            client.session_extensions().insert::<ConnectionGuard>(guard);
            finish_authentication(
                client,
                &Parameters {
                    roles: self.roles.clone(),
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// The connection's session, created on first use from the startup parameters.
fn session_of<C: ClientInfo>(
    db: &Database,
    roles: Option<&BTreeMap<String, Role>>,
    client: &C,
) -> Arc<Mutex<Session>> {
    client.session_extensions().get_or_insert_with(|| {
        let meta = client.metadata();
        let user = meta.get(METADATA_USER).map_or("sluice", String::as_str);
        let database = meta.get(METADATA_DATABASE).map_or(user, String::as_str);
        let mut session = db.session_for(user, database);
        session.set_role(role_of(roles, meta.get(METADATA_USER)));
        session.set_backend_pid(client.pid_and_secret_key().0);
        if let Some(app) = meta.get("application_name") {
            let _ = session.set("application_name", app);
        }
        Mutex::new(session)
    })
}

/// A PostgreSQL error response for a Sluice error.
fn error_info(e: &Error) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.to_string())
}

/// As [`error_info`], with the character position of a syntax error in `sql`
/// (1-based, as PostgreSQL reports it) so clients can point at it.
fn error_info_in(e: &Error, sql: &str) -> ErrorInfo {
    let mut info = error_info(e);
    if let Error::Syntax(message) = e {
        info.position = syntax_position(sql, message).map(|p| p.to_string());
    }
    info
}

/// Turns the parser's "Line: L, Column: C" into a character offset into `sql`.
fn syntax_position(sql: &str, message: &str) -> Option<usize> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let before: usize = sql
        .split('\n')
        .take(line.checked_sub(1)?)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column)
}

fn user_error(e: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

impl Backend {
    /// Starts one statement for the connection `who` (its process id and secret
    /// key) on the connection's own thread, through `block_in_place`: the runtime
    /// moves the thread's other work elsewhere, and a short dashboard query does
    /// not pay two thread hand-offs as it did on the blocking pool. A query's
    /// rows are read later, as [`to_response`]'s stream is polled; the
    /// returned [`Statement`] keeps it cancellable until then.
    ///
    /// `text` is the statement as logs and pg_stat_activity show it.
    async fn run(
        &self,
        (who, activity): Caller,
        session: Arc<Mutex<Session>>,
        (stmt, text): (&Statement, String),
        (params, plans): (Vec<Param>, Option<&PlanCache>),
    ) -> Result<(Streamed, Zone, RunningStatement), Error> {
        if DRAINING.load(Ordering::Relaxed) {
            // Shutting down: running statements may finish, new ones do not start.
            return Err(Error::AdminShutdown);
        }
        let db = Arc::clone(&self.db);
        let cancel = Arc::new(AtomicBool::new(false));
        if let Some(a) = &activity {
            a.session.started(text.clone(), Arc::clone(&cancel));
        }
        let watcher = activity
            .as_ref()
            .and_then(|a| a.closer.as_deref())
            .and_then(|c| watch_client(c, Arc::clone(&cancel)));
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(who.clone(), Arc::clone(&cancel));
        let mut running = RunningStatement {
            _entry: RunningEntry {
                running: Arc::clone(&self.running),
                key: who,
            },
            started: std::time::Instant::now(),
            failed: false,
            session: Arc::clone(&session),
            activity: activity.map(|a| Arc::clone(&a.session)),
            watcher,
            statement: text,
            slow_after: self.slow_after,
            admission: super::admission::Admission::new(
                self.db.options().workers.clone(),
                Arc::clone(&cancel),
                session
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .query_options()
                    .timeout,
            ),
        };
        if computes(stmt) {
            if let Err(e) = running.admission.hold().await {
                running.failed(&e);
                return Err(e);
            }
        }
        let result = tokio::task::block_in_place(move || {
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            let engine = db.engine();
            let result = match plans {
                Some(plans) => engine.execute_prepared(stmt, plans, &mut s, &params, cancel),
                None => engine.execute_streaming(stmt, &mut s, &params, cancel),
            };
            result.map(|r| (r, s.query_options().zone))
        });
        match result {
            Ok((r, zone)) => {
                if matches!(r, Streamed::Done(_)) {
                    running.admission.release();
                }
                Ok((r, zone, running))
            }
            Err(e) => {
                running.failed(&e);
                Err(e)
            }
        }
    }

    /// Runs a statement with no parameters and no plan kept for it (a simple
    /// query's statements, the query of a COPY TO) as [`Backend::run`] does.
    async fn run_unprepared(
        &self,
        who: Caller,
        session: Arc<Mutex<Session>>,
        stmt: &Statement,
    ) -> Result<(Streamed, Zone, RunningStatement), Error> {
        self.run(who, session, (stmt, stmt.to_string()), (Vec::new(), None))
            .await
    }
}

/// Whether `stmt` does work worth a slot of the query pool: session and
/// transaction statements do not, and must not wait behind long queries (a
/// `SET statement_timeout` or a `ROLLBACK` queued behind the very query it is
/// meant to bound or end).
fn computes(stmt: &Statement) -> bool {
    !matches!(
        stmt,
        Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
            | Statement::Close { .. }
    )
}

/// A statement from its start until its last row is sent: while it lives, a
/// CancelRequest reaches it; when dropped, its duration is recorded.
struct RunningStatement {
    _entry: RunningEntry,
    started: std::time::Instant,
    failed: bool,
    /// The connection's session: an error met while its rows were sent fails
    /// an open transaction block, as one met before does.
    session: Arc<Mutex<Session>>,
    /// What pg_stat_activity shows of the connection.
    activity: Option<Arc<SessionActivity>>,
    /// Cancels the statement if the client disconnects; stopped with it.
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// The statement's text, for the logs.
    statement: String,
    /// Log the statement if it takes this long (`log_min_duration_statement`).
    slow_after: Option<std::time::Duration>,
    /// Its place in the query pool: a slot while it computes.
    admission: super::admission::Admission,
}

impl RunningStatement {
    /// The statement failed with `e`: logged (a bug's at warn, a user's at
    /// info), and an open transaction block fails when this ends.
    fn failed(&mut self, e: &Error) {
        self.failed = true;
        if e.sqlstate().starts_with("XX") {
            tracing::warn!(sqlstate = e.sqlstate(), error = %e, statement = %self.statement, "statement failed");
        } else {
            tracing::info!(sqlstate = e.sqlstate(), error = %e, statement = %self.statement, "statement failed");
        }
    }
}

impl Drop for RunningStatement {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if self.failed {
            session.fail_transaction();
        }
        if let Some(a) = &self.activity {
            a.finished(
                session.in_transaction(),
                session.idle_in_transaction_timeout(),
            );
        }
        let user = session.user().to_string();
        let pid = session.backend_pid();
        drop(session);
        let elapsed = self.started.elapsed();
        if self.slow_after.is_some_and(|after| elapsed >= after) {
            tracing::warn!(
                duration_ms = elapsed.as_secs_f64() * 1e3,
                pid,
                user,
                statement = %self.statement,
                "slow statement"
            );
        }
        super::metrics::queries()
            .with_label_values(&[if self.failed { "error" } else { "ok" }])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Set when a shutdown begins: statements that start from then on are refused
/// with 57P01 while those already running get the drain to finish.
pub static DRAINING: AtomicBool = AtomicBool::new(false);

/// Who runs a statement: the (process id, secret key) a CancelRequest names,
/// and the connection's activity entry (pg_stat_activity, its socket).
type Caller = ((i32, Vec<u8>), Option<Arc<ActivityEntry>>);

fn caller<C: ClientInfo>(client: &C) -> Caller {
    (
        cancel_key(client),
        client.session_extensions().get::<ActivityEntry>(),
    )
}

/// Watches a running statement's client: if it disconnects, the statement is
/// cancelled at its next check rather than running on for nobody. It peeks at
/// the socket through a second handle (a pipelined next message is left in
/// place), so it never takes bytes from the connection.
fn watch_client(closer: &Closer, cancel: Arc<AtomicBool>) -> Option<tokio::task::JoinHandle<()>> {
    let stream = closer
        .watched
        .get_or_init(|| {
            let raw = closer.raw.as_ref()?.try_clone().ok()?;
            tokio::net::TcpStream::from_std(raw).ok().map(Arc::new)
        })
        .clone()?;
    Some(tokio::spawn(async move {
        let mut byte = [0u8; 1];
        loop {
            // Waits until the socket has a byte to show, or is closed.
            match stream.peek(&mut byte).await {
                Ok(0) => {
                    tracing::info!("client disconnected: cancelling its statement");
                    sluice_query::pool::cancel(&cancel);
                    return;
                }
                // The client sent more (a pipelined message): look again later.
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                Err(_) => return,
            }
        }
    }))
}

/// A connection's entry in the activity registry, kept in its session
/// extensions: unregistered when the connection ends.
struct ActivityEntry {
    session: Arc<SessionActivity>,
    _registered: sluice_query::activity::Registered,
    /// The connection's closer, whose second socket handle lets a running
    /// statement notice its client is gone.
    closer: Option<Arc<Closer>>,
}

/// The (process id, secret key) a CancelRequest for this connection names.
fn cancel_key<C: ClientInfo>(client: &C) -> (i32, Vec<u8>) {
    let (pid, key) = client.pid_and_secret_key();
    (pid, key.to_bytes().to_vec())
}

/// Turns a statement's result into a protocol response. A query's rows are
/// read and encoded a batch at a time as pgwire sends them, so the first rows
/// of a large result leave before the last are read; an error met on the way
/// ends the rows with an ErrorResponse, as PostgreSQL's does.
fn to_response(
    result: Streamed,
    zone: Zone,
    format: &dyn Fn(usize) -> FieldFormat,
    running: RunningStatement,
) -> PgWireResult<Response> {
    let result = match result {
        Streamed::Rows(rows) => {
            let fields = Arc::new(fields(rows.schema(), format));
            let rows = super::admission::PooledRows::new(rows);
            let state = Some((rows, running, Arc::clone(&fields)));
            let data = stream::unfold(state, move |state| async move {
                let (mut rows, mut running, fields) = state?;
                let encoded = match rows.next(&mut running.admission).await? {
                    Ok(batch) => encode_rows(&[batch], &fields, zone),
                    Err(e) => {
                        running.failed(&e);
                        Err(user_error(&e))
                    }
                };
                Some(match encoded {
                    Ok(data) => (data, Some((rows, running, fields))),
                    Err(e) => {
                        running.failed = true;
                        (vec![Err(e)], None)
                    }
                })
            })
            .flat_map(stream::iter);
            return Ok(Response::Query(QueryResponse::new(fields, data)));
        }
        Streamed::Done(result) => result,
    };
    Ok(match result {
        StatementResult::Rows { schema, batches } => {
            let fields = Arc::new(fields(&schema, format));
            let rows = encode_rows(&batches, &fields, zone)?;
            Response::Query(QueryResponse::new(fields, stream::iter(rows)))
        }
        StatementResult::Command { tag } => match tag.as_str() {
            "BEGIN" => Response::TransactionStart(Tag::new("BEGIN")),
            // The block goes on: PostgreSQL's tag, and the block stays open.
            sluice_query::engine::ROLLBACK_TO_SAVEPOINT => {
                Response::Execution(Tag::new("ROLLBACK"))
            }
            "COMMIT" | "ROLLBACK" => Response::TransactionEnd(Tag::new(&tag)),
            t => match t
                .strip_prefix("INSERT 0 ")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) => Response::Execution(Tag::new("INSERT").with_oid(0).with_rows(n)),
                None => Response::Execution(Tag::new(t)),
            },
        },
    })
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match sluice_query::parse_sql(query) {
            Ok(s) => s,
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info_in(&e, query)))]),
        };
        let session = session_of(&self.db, self.roles.as_deref(), client);
        let mut responses = Vec::with_capacity(statements.len());
        // As in PostgreSQL, statements after a failing one in the same message do not run.
        for stmt in statements {
            if matches!(stmt, Statement::Copy { .. }) {
                match self.copy(client, Arc::clone(&session), stmt).await {
                    Ok(r) => responses.push(r),
                    Err(e) => {
                        responses.push(Response::Error(Box::new(error_info(&e))));
                        break;
                    }
                }
                continue;
            }
            match self
                .run_unprepared(caller(client), Arc::clone(&session), &stmt)
                .await
            {
                Ok((result, zone, running)) => {
                    responses.push(to_response(result, zone, &|_| FieldFormat::Text, running)?)
                }
                Err(e) => {
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Parses and describes statements for the extended protocol.
pub struct SluiceQueryParser {
    db: Arc<Database>,
    /// As [`Backend::roles`]: a statement parsed first creates the session.
    roles: Option<Arc<BTreeMap<String, Role>>>,
}

#[async_trait]
impl QueryParser for SluiceQueryParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = sluice_query::parse_sql(sql)
            .map_err(|e| PgWireError::UserError(Box::new(error_info_in(&e, sql))))?;
        if statements.len() > 1 {
            return Err(user_error(&Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            )));
        }
        let Some(stmt) = statements.pop() else {
            return Ok(None);
        };
        let session = session_of(&self.db, self.roles.as_deref(), client);
        let snapshot = session.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let declared: Vec<Option<arrow::datatypes::DataType>> = types
            .iter()
            .map(|t| t.as_ref().and_then(params::declared_type))
            .collect();
        let description =
            describe(self.db.engine(), &stmt, &snapshot, declared).map_err(|e| user_error(&e))?;
        // A declared type is reported back as declared (int2 stays int2 though
        // Sluice computes it as integer); the rest as the statement resolved them.
        let count = types.len().max(description.params.len());
        let params = (0..count)
            .map(|i| match types.get(i) {
                Some(Some(t)) if params::declared_type(t).is_some() => t.clone(),
                _ => description.params.get(i).map_or(Type::TEXT, pg_type),
            })
            .collect();
        Ok(Some(Arc::new(Prepared {
            text: stmt.to_string(),
            stmt,
            params,
            columns: description.columns,
            plans: PlanCache::default(),
        })))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.columns {
            Some(schema) => fields(schema, |i| {
                format.map_or(FieldFormat::Text, |f| f.format_for(i))
            }),
            None => Vec::new(),
        })
    }
}

fn describe(
    engine: &Engine,
    stmt: &Statement,
    session: &Session,
    declared: Vec<Option<arrow::datatypes::DataType>>,
) -> Result<sluice_query::Description, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.describe(stmt, session, declared)
    }))
    .unwrap_or_else(|_| Err(Error::Internal("describing the statement panicked".into())))
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Arc<Prepared>;
    type QueryParser = SluiceQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// Describe of a statement always answers with its parameter types, then
    /// NoData for a statement without rows. (`pgwire` sends an empty
    /// RowDescription for one that has parameters, and pgjdbc then reads an
    /// INSERT's result as an empty row set.)
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type != TARGET_TYPE_BYTE_STATEMENT {
            return self._on_describe(client, message).await;
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let description = match client.portal_store().get_statement(name) {
            Some(Entry::Value(stmt)) => StatementDescription {
                params: stmt.statement.params.clone(),
                fields: self.parser.get_result_schema(&stmt.statement, None)?,
            },
            Some(Entry::Empty) => StatementDescription::no_data(),
            None => return Err(PgWireError::StatementNotFound(name.to_owned())),
        };
        send_describe_response(client, &description).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let session = session_of(&self.db, self.roles.as_deref(), client);
        if matches!(prepared.stmt, Statement::Copy { .. }) {
            return self
                .copy(client, session, prepared.stmt.clone())
                .await
                .map_err(|e| user_error(&e));
        }
        let zone = session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .query_options()
            .zone;
        let params = decode_params(portal, &prepared.params, zone)?;
        let (result, zone, running) = self
            .run(
                caller(client),
                session,
                (&prepared.stmt, prepared.text.clone()),
                (params, Some(&prepared.plans)),
            )
            .await
            .map_err(|e| user_error(&e))?;
        if let Some(described) = &prepared.columns {
            let schema = match &result {
                Streamed::Rows(rows) => Some(Arc::clone(rows.schema())),
                Streamed::Done(StatementResult::Rows { schema, .. }) => Some(Arc::clone(schema)),
                Streamed::Done(StatementResult::Command { .. }) => None,
            };
            if schema.is_some_and(|s| !same_row_type(&s, described)) {
                // The table changed under a prepared statement: its rows no
                // longer match the description the client holds.
                return Err(user_error(&Error::NotSupported(
                    "cached plan must not change result type".into(),
                )));
            }
        }
        let format = &portal.result_column_format;
        to_response(result, zone, &|i| format.format_for(i), running)
    }
}

/// True when two result schemas send the same row type (column count and
/// each column's PostgreSQL type), as a prepared statement's must.
fn same_row_type(a: &arrow::datatypes::Schema, b: &arrow::datatypes::Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| pg_type(x.data_type()) == pg_type(y.data_type()))
}

/// What Describe of a prepared statement answers.
struct StatementDescription {
    params: Vec<Type>,
    fields: Vec<FieldInfo>,
}

impl DescribeResponse for StatementDescription {
    fn parameters(&self) -> Option<&[Type]> {
        Some(&self.params)
    }

    fn fields(&self) -> &[FieldInfo] {
        &self.fields
    }

    fn no_data() -> Self {
        StatementDescription {
            params: Vec::new(),
            fields: Vec::new(),
        }
    }

    fn is_no_data(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Decodes bound parameter values, text or binary, as the types the statement
/// resolved them to (declared by the client, or decided by their context).
fn decode_params(
    portal: &Portal<Arc<Prepared>>,
    types: &[Type],
    zone: Zone,
) -> PgWireResult<Vec<Param>> {
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let ty = types.get(i).unwrap_or(&Type::TEXT);
            let binary = portal.parameter_format.is_binary(i);
            params::decode(i, ty, bytes.as_deref(), binary, zone).map_err(|e| user_error(&e))
        })
        .collect()
}

/// A `COPY ... FROM STDIN` waiting for its data: the rows arrive in CopyData
/// messages and are applied together at CopyDone, all or none.
struct CopyIn {
    table: Arc<sluice_storage::Table>,
    columns: Vec<String>,
    types: Vec<sluice_storage::ColumnType>,
    options: CopyOptions,
    data: Vec<u8>,
    /// Most bytes the COPY may collect: the statement memory bound.
    limit: usize,
    /// Set once the data passed `limit`: the rest is dropped and the COPY
    /// fails at CopyDone (an error mid-copy would leave the client sending).
    overflowed: bool,
}

/// The connection's COPY in progress, if any.
type CopyState = Mutex<Option<CopyIn>>;

fn copy_state<C: ClientInfo>(client: &C) -> Arc<CopyState> {
    client
        .session_extensions()
        .get_or_insert_with(|| Mutex::new(None))
}

impl Backend {
    /// Starts a COPY: `FROM STDIN` answers CopyInResponse and waits for the
    /// data ([`CopyHandler`]); `TO STDOUT` streams the table's or the query's
    /// rows, one CopyData per row. COPY to or from a server file is refused.
    async fn copy<C: ClientInfo>(
        &self,
        client: &C,
        session: Arc<Mutex<Session>>,
        stmt: Statement,
    ) -> Result<Response, Error> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            payload,
        } = &stmt
        else {
            return Err(Error::Internal("a COPY that is not one".into()));
        };
        if DRAINING.load(Ordering::Relaxed) {
            return Err(Error::AdminShutdown);
        }
        {
            let s = session.lock().unwrap_or_else(|p| p.into_inner());
            sluice_query::engine::refuse_in_failed_block(&stmt, &s)?;
            sluice_query::engine::authorize(&stmt, &s)?;
        }
        if is_parquet(options) {
            return self
                .copy_parquet(
                    client,
                    session,
                    (*to, source, target),
                    options,
                    legacy_options,
                )
                .await;
        }
        let options = CopyOptions::from_statement(options, legacy_options)?;
        match (to, target, source) {
            (false, ast::CopyTarget::Stdin, ast::CopySource::Table {
                table_name,
                columns,
            }) => {
                if payload.is_some() {
                    return Err(Error::NotSupported(
                        "COPY data inline in the statement's text: send it as CopyData (psql's \\copy does)".into(),
                    ));
                }
                let name = sluice_query::binder::table_name(table_name)?;
                let table = self
                    .db
                    .engine()
                    .catalog()
                    .table(&name)
                    .map_err(Error::from)?;
                let schema = table.schema();
                let columns: Vec<String> = if columns.is_empty() {
                    schema.columns.iter().map(|c| c.name.clone()).collect()
                } else {
                    columns.iter().map(sluice_query::binder::ident_name).collect()
                };
                let types = columns
                    .iter()
                    .map(|c| {
                        schema
                            .column_index(c)
                            .map(|i| schema.columns[i].ty)
                            .ok_or_else(|| {
                                Error::UndefinedColumn(format!(
                                    "column \"{c}\" of relation \"{name}\" does not exist"
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                let width = columns.len();
                let binary = options.format == CopyFormat::Binary;
                *copy_state(client).lock().unwrap_or_else(|p| p.into_inner()) = Some(CopyIn {
                    table,
                    columns,
                    types,
                    options,
                    data: Vec::new(),
                    limit: self.db.options().memory_limit,
                    overflowed: false,
                });
                let code = i8::from(binary);
                Ok(Response::CopyIn(CopyResponse::new(code, width, stream::empty())))
            }
            (true, ast::CopyTarget::Stdout, source) => {
                let query = match source {
                    ast::CopySource::Query(q) => Statement::Query(q.clone()),
                    ast::CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let list = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns
                                .iter()
                                .map(|c| format!("\"{}\"", c.value.replace('"', "\"\"")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let sql = format!("SELECT {list} FROM {table_name}");
                        sluice_query::parse_sql(&sql)?
                            .pop()
                            .ok_or_else(|| Error::Internal("COPY TO without a query".into()))?
                    }
                };
                let (result, zone, running) = self
                    .run_unprepared(caller(client), session, &query)
                    .await?;
                copy_out(result, zone, options, running)
            }
            _ => Err(Error::NotSupported(
                "COPY to or from a file or program on the server, or COPY FROM a query: use COPY ... FROM STDIN / TO STDOUT (psql's \\copy)".into(),
            )),
        }
    }
}

/// True when a COPY's options ask for FORMAT parquet.
fn is_parquet(options: &[ast::CopyOption]) -> bool {
    options
        .iter()
        .any(|o| matches!(o, ast::CopyOption::Format(f) if f.value.eq_ignore_ascii_case("parquet")))
}

impl Backend {
    /// `COPY t FROM 'file' WITH (FORMAT parquet)` (an import: whole file or
    /// nothing, skipped if imported before) and `COPY (query) TO 'file' WITH
    /// (FORMAT parquet)`, for an admin, inside the server's import_dir or
    /// export_dir. The file work runs on the connection's thread.
    async fn copy_parquet<C: ClientInfo>(
        &self,
        client: &C,
        session: Arc<Mutex<Session>>,
        (to, source, target): (bool, &ast::CopySource, &ast::CopyTarget),
        options: &[ast::CopyOption],
        legacy_options: &[ast::CopyLegacyOption],
    ) -> Result<Response, Error> {
        let ast::CopyTarget::File { filename } = target else {
            return Err(Error::NotSupported(
                "FORMAT parquet other than to or from a file on the server".into(),
            ));
        };
        if options.len() > 1 || !legacy_options.is_empty() {
            return Err(Error::NotSupported(
                "COPY options besides FORMAT with FORMAT parquet".into(),
            ));
        }
        if session.lock().unwrap_or_else(|p| p.into_inner()).role() != Role::Admin {
            return Err(Error::InsufficientPrivilege(
                "COPY to or from a server file is for the admin role".into(),
            ));
        }
        let rows = match (to, source) {
            (
                false,
                ast::CopySource::Table {
                    table_name,
                    columns,
                },
            ) => {
                if !columns.is_empty() {
                    return Err(Error::NotSupported(
                        "a column list with FORMAT parquet: columns match by name".into(),
                    ));
                }
                let path = self.files.import_path(filename)?;
                let name = sluice_query::binder::table_name(table_name)?;
                let table = self
                    .db
                    .engine()
                    .catalog()
                    .table(&name)
                    .map_err(Error::from)?;
                let report = tokio::task::block_in_place(|| {
                    crate::import::import_parquet(&table, &path, &|_| {})
                })?;
                tracing::info!(table = %name, file = %path.display(), rows = report.rows,
                    expired = report.expired, skipped = report.already_imported, "imported");
                report.rows
            }
            (true, source) => {
                let path = self.files.export_path(filename)?;
                let query = match source {
                    ast::CopySource::Query(q) => Statement::Query(q.clone()),
                    ast::CopySource::Table { table_name, .. } => {
                        sluice_query::parse_sql(&format!("SELECT * FROM {table_name}"))?
                            .pop()
                            .ok_or_else(|| Error::Internal("COPY TO without a query".into()))?
                    }
                };
                let (result, _zone, running) =
                    self.run_unprepared(caller(client), session, &query).await?;
                let written = tokio::task::block_in_place(|| match result {
                    Streamed::Rows(rows) => {
                        let schema = Arc::clone(rows.schema());
                        crate::export::write_parquet(rows, &schema, &path)
                    }
                    Streamed::Done(StatementResult::Rows { schema, batches }) => {
                        crate::export::write_parquet(batches.into_iter().map(Ok), &schema, &path)
                    }
                    Streamed::Done(_) => Err(Error::NotSupported(
                        "COPY TO of a statement without rows".into(),
                    )),
                });
                drop(running);
                written?
            }
            (false, _) => {
                return Err(Error::NotSupported("COPY FROM a query".into()));
            }
        };
        Ok(Response::Execution(
            Tag::new("COPY").with_rows(rows as usize),
        ))
    }
}

/// COPY TO STDOUT's response: each row a CopyData line, the header (if asked
/// for) with the first.
fn copy_out(
    result: Streamed,
    zone: Zone,
    options: CopyOptions,
    running: RunningStatement,
) -> Result<Response, Error> {
    let rows = match result {
        Streamed::Rows(rows) => rows,
        Streamed::Done(StatementResult::Rows { schema, batches }) => {
            sluice_query::RowStream::from_batches(schema, batches)
        }
        Streamed::Done(StatementResult::Command { .. }) => {
            return Err(Error::Internal(
                "COPY TO of a statement without rows".into(),
            ))
        }
    };
    let schema = Arc::clone(rows.schema());
    let width = schema.fields().len();
    let binary = options.format == CopyFormat::Binary;
    let mut header: Option<Vec<u8>> = if binary {
        Some(super::copy::BINARY_HEADER.to_vec())
    } else {
        options.header.then(|| {
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            super::copy::header(&names, &options).into_bytes()
        })
    };
    let state = Some((super::admission::PooledRows::new(rows), running));
    let data = stream::unfold(state, move |state| {
        let options = options.clone();
        let first = header.take();
        async move {
            let (mut rows, mut running) = state?;
            let lines = match rows.next(&mut running.admission).await {
                None if first.is_some() => Ok(vec![first.unwrap_or_default()]),
                None => return None,
                Some(Ok(batch)) => copy_lines(&batch, zone, &options, first),
                Some(Err(e)) => Err(e),
            };
            Some(match lines {
                Ok(lines) => (
                    lines
                        .into_iter()
                        .map(|l| Ok(CopyData::new(bytes::Bytes::from(l))))
                        .collect::<Vec<_>>(),
                    Some((rows, running)),
                ),
                Err(e) => {
                    running.failed(&e);
                    (vec![Err(user_error(&e))], None)
                }
            })
        }
    })
    .flat_map(stream::iter);
    // In binary, pgwire appends the trailer.
    Ok(Response::CopyOut(CopyResponse::new(
        i8::from(binary),
        width,
        data,
    )))
}

/// A batch's rows as COPY messages (a line each, or a binary tuple each);
/// `header` goes in front of the first.
fn copy_lines(
    batch: &arrow::array::RecordBatch,
    zone: Zone,
    options: &CopyOptions,
    header: Option<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut lines = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        if options.format == CopyFormat::Binary {
            lines.push(binary_tuple(batch, r)?);
            continue;
        }
        let values = batch
            .columns()
            .iter()
            .map(|c| sluice_query::format::format_value(c.as_ref(), r, zone))
            .collect::<Result<Vec<_>, Error>>()?;
        lines.push(super::copy::format_row(&values, options).into_bytes());
    }
    if let (Some(h), Some(first)) = (header, lines.first_mut()) {
        first.splice(0..0, h);
    }
    Ok(lines)
}

/// Row `r` as a binary COPY tuple: the field count, then each field's length
/// and PostgreSQL binary form (-1 for NULL).
fn binary_tuple(batch: &arrow::array::RecordBatch, r: usize) -> Result<Vec<u8>, Error> {
    let mut out = (batch.num_columns() as i16).to_be_bytes().to_vec();
    for column in batch.columns() {
        if column.is_null(r) {
            out.extend((-1i32).to_be_bytes());
            continue;
        }
        let plain = sluice_query::eval::decode_dictionary(column)?;
        let mut field = bytes::BytesMut::new();
        super::encode::element_binary(plain.as_ref(), r, &pg_type(plain.data_type()), &mut field)
            .map_err(|e| Error::NotSupported(format!("binary COPY of this column: {e}")))?;
        out.extend((field.len() as i32).to_be_bytes());
        out.extend_from_slice(&field);
    }
    Ok(out)
}

/// One binary COPY field, given in the column's PostgreSQL type, as a storage value.
fn binary_value(
    bytes: &[u8],
    ty: sluice_storage::ColumnType,
) -> Result<sluice_storage::Value, String> {
    use arrow::array::AsArray;
    use sluice_storage::Value;
    let arrow = ty.arrow_type();
    let array = params::decode_binary(&pg_type(&arrow), bytes)?;
    Ok(match array.data_type() {
        arrow::datatypes::DataType::Boolean => Value::Bool(array.as_boolean().value(0)),
        arrow::datatypes::DataType::Int32 => Value::Int(i64::from(
            array.as_primitive::<arrow::datatypes::Int32Type>().value(0),
        )),
        arrow::datatypes::DataType::Int64 => {
            Value::Int(array.as_primitive::<arrow::datatypes::Int64Type>().value(0))
        }
        arrow::datatypes::DataType::Float64 => Value::Float(
            array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(0),
        ),
        arrow::datatypes::DataType::Timestamp(..) => Value::Timestamp(
            array
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
        ),
        arrow::datatypes::DataType::Decimal128(_, scale) => Value::Numeric {
            value: array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            scale: *scale,
        },
        arrow::datatypes::DataType::Utf8 => Value::Text(array.as_string::<i32>().value(0).into()),
        other => return Err(format!("binary COPY into a column of type {other}")),
    })
}

/// A binary COPY's rows as storage values, coerced to the columns' types.
fn binary_rows(copy: &CopyIn, name: &str) -> Result<Vec<Vec<sluice_storage::Value>>, Error> {
    let rows = super::copy::parse_binary(&copy.data).map_err(|e| Error::InvalidText {
        message: format!("COPY {name}: {e}"),
        sqlstate: e.sqlstate(),
    })?;
    let width = copy.columns.len();
    rows.into_iter()
        .map(|(row, fields)| {
            if fields.len() != width {
                return Err(Error::InvalidText {
                    message: format!(
                        "row field count is {}, expected {width} (COPY {name}, row {row})",
                        fields.len()
                    ),
                    sqlstate: "22P04",
                });
            }
            fields
                .into_iter()
                .zip(copy.columns.iter().zip(&copy.types))
                .map(|(field, (column, ty))| {
                    let Some(bytes) = field else {
                        return Ok(sluice_storage::Value::Null);
                    };
                    binary_value(&bytes, *ty)
                        .map_err(|e| Error::InvalidText {
                            message: format!(
                                "incorrect binary data format: {e} (COPY {name}, row {row}, column {column})"
                            ),
                            sqlstate: "22P03",
                        })?
                        .coerce_to(*ty, column)
                        .map_err(Error::from)
                })
                .collect()
        })
        .collect()
}

/// Parses a finished COPY's data and appends its rows, all or none; the
/// number of rows. Errors name the line (and column), as PostgreSQL's
/// `COPY t, line 3, column qty` does.
fn finish_copy_in(copy: CopyIn) -> Result<usize, Error> {
    let name = copy.table.name().to_string();
    if copy.overflowed {
        return Err(Error::ResourcesExhausted(format!(
            "COPY {name}: the data passed the statement memory bound of {} bytes; nothing was loaded (split it, or raise statement_memory)",
            copy.limit
        )));
    }
    if copy.options.format == CopyFormat::Binary {
        let values = binary_rows(&copy, &name)?;
        return Ok(copy.table.append_named(&copy.columns, values)?);
    }
    let rows = super::copy::parse(&copy.data, &copy.options).map_err(|e| Error::InvalidText {
        message: format!("COPY {name}: {e}"),
        sqlstate: e.sqlstate(),
    })?;
    let width = copy.columns.len();
    let mut values = Vec::with_capacity(rows.len());
    for (line, fields) in rows {
        if fields.len() != width {
            let what = if fields.len() > width {
                "extra data after last expected column"
            } else {
                "missing data for a column"
            };
            return Err(Error::InvalidText {
                message: format!(
                    "{what}: {} fields where {width} were expected (COPY {name}, line {line})",
                    fields.len()
                ),
                sqlstate: "22P04",
            });
        }
        let row = fields
            .into_iter()
            .zip(copy.columns.iter().zip(&copy.types))
            .map(|(field, (column, ty))| match field {
                None => Ok(sluice_storage::Value::Null),
                Some(text) => sluice_storage::Value::Text(text)
                    .coerce_to(*ty, column)
                    .map_err(|e| {
                        let e = Error::from(e);
                        Error::InvalidText {
                            message: format!("{e} (COPY {name}, line {line}, column {column})"),
                            sqlstate: e.sqlstate(),
                        }
                    }),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        values.push(row);
    }
    Ok(copy.table.append_named(&copy.columns, values)?)
}

#[async_trait]
impl CopyHandler for Backend {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(copy) = copy_state(client)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            if copy.overflowed || copy.data.len() + copy_data.data.len() > copy.limit {
                copy.overflowed = true;
                copy.data = Vec::new();
            } else {
                copy.data.extend_from_slice(&copy_data.data);
            }
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let copy = copy_state(client)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| user_error(&Error::Protocol("CopyDone without a COPY".into())))?;
        let result = tokio::task::block_in_place(|| finish_copy_in(copy));
        {
            let session = session_of(&self.db, self.roles.as_deref(), client);
            let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(_) => s.record_write(),
                Err(_) => s.fail_transaction(),
            }
        }
        let rows = result.map_err(|e| user_error(&e))?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        copy_state(client)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}
