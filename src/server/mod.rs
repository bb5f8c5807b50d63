//! `sluice serve`: the PostgreSQL protocol server and the HTTP endpoint over one
//! embedded database, with settings from flags and an optional TOML file.

pub mod admission;
pub mod auth;
pub mod connection;
pub mod copy;
pub mod dashboard;
pub mod encode;
pub mod files;
pub mod http;
pub mod http_query;
pub mod metrics;
pub mod params;
pub mod pg;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use tokio::net::TcpListener;

use crate::Database;

/// [`ServerConfig::max_connections`] unless set: PostgreSQL's default is 100;
/// dashboard backends hold hundreds.
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;

/// Where the server keeps its data and listens. Every field has a default.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// PostgreSQL protocol address.
    pub pg_addr: String,
    /// HTTP address (`/health`).
    pub http_addr: String,
    /// Users, each with a SCRAM-SHA-256 verifier (`sluice passwd` prints one)
    /// and a role: `name = "SCRAM-SHA-256$..."` (an admin) or
    /// `[users.name]` with `password` and `role` (`admin`, `writer`, `reader`).
    pub users: BTreeMap<String, auth::UserEntry>,
    /// Refuse connections that do not use TLS (needs `tls_cert` and `tls_key`).
    pub require_tls: bool,
    /// Allow trust (no users) on an address other machines can reach.
    pub insecure_trust: bool,
    /// Most connections at once; one more is refused with 53300.
    pub max_connections: usize,
    /// Statements computing at once (the query pool's slots); the others
    /// wait their turn. Default: one per core.
    pub max_running_statements: Option<usize>,
    /// Each session's statement timeout until it sets its own (`'30s'`,
    /// `'0'` for none).
    pub statement_timeout: String,
    /// The longest statement timeout a session may set (`SET
    /// statement_timeout = 0` included); none by default.
    pub max_statement_timeout: Option<String>,
    /// Memory one statement may hold (`'2GB'`): hash tables, sorts, joins,
    /// windows, materialised scan output; 53200 past it.
    pub statement_memory: Option<String>,
    /// Memory all statements together may hold (`'8GB'`); default half of
    /// the machine's; 53200 for the statement that would pass it.
    pub query_memory_pool: Option<String>,
    /// How long SIGTERM lets running statements finish before cancelling
    /// them (`'30s'`).
    pub shutdown_timeout: String,
    /// Log every statement that takes at least this long (`'500ms'`); none
    /// by default.
    pub log_min_duration_statement: Option<String>,
    /// How long a client may take to authenticate (`'60s'`).
    pub authentication_timeout: String,
    /// The longest message a client may send (`'64MB'`, the default): a
    /// longer one ends its connection (08P01) before it is read.
    pub max_message_size: String,
    /// Each session's `idle_in_transaction_session_timeout` until it sets its
    /// own: a session idle inside a transaction block longer is ended (25P03).
    pub idle_in_transaction_session_timeout: Option<String>,
    /// The directory `COPY t FROM 'file' WITH (FORMAT parquet)` may read
    /// (an admin's); none by default: refused.
    pub import_dir: Option<PathBuf>,
    /// The directory `COPY (query) TO 'file' WITH (FORMAT parquet)` may write
    /// (an admin's); none by default: refused.
    pub export_dir: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key`, enables TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Bytes of decoded blocks kept for all segments together (`4GB`, `512MB`);
    /// default [`sluice_storage::segment::cache::DEFAULT_BLOCK_CACHE_BYTES`].
    pub block_cache: Option<String>,
    /// Run as if the clock were this interval ahead (`'181 days'`), so
    /// retention acts as it would then. For drills and tests.
    pub clock_offset: Option<String>,
    /// Serve the restaurant dashboard page at `http://<http_addr>/`.
    pub dashboard: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./sluice-data"),
            pg_addr: "127.0.0.1:5433".into(),
            http_addr: "127.0.0.1:9433".into(),
            users: BTreeMap::new(),
            require_tls: false,
            insecure_trust: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_running_statements: None,
            statement_timeout: "30s".into(),
            max_statement_timeout: None,
            statement_memory: None,
            query_memory_pool: None,
            shutdown_timeout: "30s".into(),
            log_min_duration_statement: None,
            authentication_timeout: "60s".into(),
            max_message_size: "64MB".into(),
            idle_in_transaction_session_timeout: None,
            import_dir: None,
            export_dir: None,
            tls_cert: None,
            tls_key: None,
            block_cache: None,
            clock_offset: None,
            dashboard: false,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML config file (keys: `data_dir`, `pg_addr`, `http_addr`,
    /// `tls_cert`, `tls_key`, `require_tls`, `insecure_trust`, and a `[users]`
    /// table of name = verifier or name = { password, role }).
    ///
    /// # Errors
    /// The file cannot be read, or it is not valid TOML for these keys.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Runs the server until SIGINT or SIGTERM. Prints the addresses it listens on.
///
/// # Errors
/// The database cannot be opened or an address cannot be bound.
pub fn run(config: ServerConfig) -> Result<(), String> {
    run_with(config, None)
}

/// Work to do on the opened database before clients are let in (`sluice
/// demo` creates its tables), given the PostgreSQL and HTTP addresses
/// bound: its error stops the server.
pub type Setup = Box<dyn FnOnce(&Database, SocketAddr, SocketAddr) -> Result<(), String> + Send>;

/// [`run`], with `setup` run once the database is open and the addresses
/// are bound, before the first connection is accepted.
///
/// # Errors
/// As [`run`], or `setup`'s error.
pub fn run_with(config: ServerConfig, setup: Option<Setup>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Statements run on these threads (`block_in_place`): deep ones need
        // the room the binder's depth limit is sized for.
        .thread_stack_size(sluice_query::STATEMENT_STACK_BYTES)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(serve(config, setup));
    // Connections were closed by the shutdown; a Kafka client or a straggling
    // thread must not hold the exit beyond shutdown_timeout.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    // Close the database here, its Kafka consumers stopped, before
    // returning: nothing may read from a broker the caller stops next
    // (`sluice demo`). A task still finishing on a blocking thread may hold
    // it a little longer.
    let mut db = result?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(db) {
            Ok(owned) => {
                drop(owned);
                break;
            }
            Err(shared) if std::time::Instant::now() < deadline => {
                db = shared;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(_) => break,
        }
    }
    Ok(())
}

/// Serves until a shutdown signal; returns the database, which other tasks
/// may still hold while the runtime stops.
async fn serve(config: ServerConfig, setup: Option<Setup>) -> Result<Arc<Database>, String> {
    if let Some(size) = &config.block_cache {
        let bytes = sluice_storage::parse_size_bytes(size)
            .ok_or_else(|| format!("block_cache: \"{size}\" is not a size such as 512MB or 4GB"))?;
        sluice_storage::segment::cache::set_block_cache_bytes(bytes);
    }
    let clock = sluice_storage::clock::OffsetClock::new();
    if let Some(offset) = &config.clock_offset {
        let micros = sluice_storage::types::parse_duration_micros(offset).map_err(|_| {
            format!("clock_offset: \"{offset}\" is not an interval such as '181 days'")
        })?;
        clock.advance_micros(micros);
        tracing::warn!(offset, "running with the clock moved ahead");
    }
    let credentials = auth::Credentials::new(&config.users)?;
    let options = statement_limits(&config)?;
    let log_min_duration_statement = match &config.log_min_duration_statement {
        Some(t) => sluice_query::session::parse_timeout(t).map_err(|_| {
            format!("log_min_duration_statement: \"{t}\" is not a duration such as 500ms")
        })?,
        None => None,
    };
    let authentication_timeout =
        sluice_query::session::parse_timeout(&config.authentication_timeout)
            .map_err(|_| {
                format!(
                    "authentication_timeout: \"{}\" is not a duration such as 60s",
                    config.authentication_timeout
                )
            })?
            .unwrap_or(std::time::Duration::from_secs(3600));
    let max_message_size = sluice_storage::parse_size_bytes(&config.max_message_size)
        .filter(|n| *n >= MIN_MAX_MESSAGE_SIZE)
        .ok_or_else(|| {
            format!(
                "max_message_size: \"{}\" is not a size of at least 16kB, such as 64MB",
                config.max_message_size
            )
        })?;
    let shutdown_timeout = sluice_query::session::parse_timeout(&config.shutdown_timeout)
        .map_err(|_| {
            format!(
                "shutdown_timeout: \"{}\" is not a duration such as 30s",
                config.shutdown_timeout
            )
        })?
        .unwrap_or_default();
    let mut db = Database::open_with_clock(&config.data_dir, clock)
        .map_err(|e| format!("cannot open {}: {e}", config.data_dir.display()))?;
    db.set_options(options);
    let db = Arc::new(db);
    let pg = TcpListener::bind(&config.pg_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.pg_addr))?;
    let http = TcpListener::bind(&config.http_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.http_addr))?;
    let pg_addr = pg.local_addr().map_err(|e| e.to_string())?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    if credentials.is_none() {
        refuse_exposed_trust(pg_addr, config.insecure_trust)?;
    }
    // /query authenticates as PostgreSQL does, and trusts where it would.
    let access = match auth::Credentials::new(&config.users)? {
        Some(users) => http_query::QueryAccess::Users(users),
        None if http_addr.ip().is_loopback() || config.insecure_trust => {
            http_query::QueryAccess::Trust
        }
        None => http_query::QueryAccess::Refused,
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err("TLS needs both tls_cert and tls_key".into()),
    };
    if config.require_tls && tls.is_none() {
        return Err("require_tls needs tls_cert and tls_key".into());
    }

    if let Some(setup) = setup {
        let db = Arc::clone(&db);
        tokio::task::spawn_blocking(move || setup(&db, pg_addr, http_addr))
            .await
            .map_err(|e| format!("set-up failed: {e}"))??;
    }
    say(&format!(
        "sluice {} serving {} — PostgreSQL on {pg_addr}, HTTP on {http_addr}",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.display()
    ));

    // Sessions idle in a transaction block past their timeout are ended.
    tokio::spawn(async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let ended = sluice_query::activity::activity().end_idle_in_transaction();
            if ended > 0 {
                tracing::info!(
                    ended,
                    "sessions ended: idle in a transaction block too long"
                );
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let http_state = Arc::new(http::HttpState {
        db: Arc::clone(&db),
        stopping: Arc::clone(&stop),
        access,
        dashboard: config.dashboard,
    });
    tokio::spawn(http::serve(http, http_state));
    let handlers = Arc::new(pg::Handlers::new(
        Arc::clone(&db),
        credentials,
        pg::Limits {
            require_tls: config.require_tls,
            max_connections: config.max_connections,
            log_min_duration_statement,
        },
        files::FileAccess {
            import_dir: config.import_dir.clone(),
            export_dir: config.export_dir.clone(),
        },
    ));
    let accept = async {
        loop {
            match pg.accept().await {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let h = Arc::clone(&handlers);
                    let tls = tls.clone();
                    let (socket, raw) = with_second_handle(socket);
                    let Some(socket) = socket else { continue };
                    let open = handlers.connection_opened(peer, raw);
                    tokio::spawn(async move {
                        let closer = Arc::clone(&open.closer);
                        let ending = closer.ending();
                        tokio::select! {
                            result = connection::serve_connection(socket, tls, h, max_message_size, ending) => {
                                if let Err(e) = result {
                                    tracing::debug!(error = %e, "connection ended with an error");
                                }
                            }
                            // Asked to end (pg_terminate_backend, shutdown) but
                            // not reaching a message boundary: dropping the
                            // connection's future closes its socket.
                            _ = closer.ended_past(CLOSE_GRACE) => {
                                tracing::info!(%peer, "connection closed without a last word");
                            }
                            _ = closer.authentication_deadline(authentication_timeout) => {}
                        }
                        tracing::info!(%peer, "connection closed");
                        drop(open);
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = shutdown_signal() => {}
    }
    // No new connections from here on; /ready says so.
    drop(pg);
    stop.store(true, Ordering::Relaxed);
    shut_down(&handlers, shutdown_timeout).await;
    Ok(db)
}

/// How long a connection asked to end may take to tell its client so before
/// its socket is closed regardless.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The smallest `max_message_size`: room for any startup, authentication or
/// ordinary query message.
const MIN_MAX_MESSAGE_SIZE: usize = 16 << 10;

/// SIGTERM's drain: running statements may finish for `timeout`; then what
/// still runs is cancelled (57P01), every client is told the server is going
/// away and its connection closed. The store needs nothing more: every
/// acknowledged write is in its write-ahead file or a sealed segment.
async fn shut_down(handlers: &pg::Handlers, timeout: std::time::Duration) {
    pg::DRAINING.store(true, Ordering::Relaxed);
    let running = handlers.running_statements();
    say(&format!(
        "shutting down: {running} statement(s) running, {} connection(s) open; waiting up to {:?}",
        handlers.open_connections(),
        timeout
    ));
    // The drain, then the closing, both within `timeout`: the last quarter
    // (at most a second) is kept for closing the connections.
    let start = tokio::time::Instant::now();
    let deadline = start + timeout;
    let closing = deadline - (timeout / 4).min(std::time::Duration::from_secs(1));
    while handlers.running_statements() > 0 && tokio::time::Instant::now() < closing {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    handlers.close_all();
    // Let the connections' tasks see the close and send their last error.
    while handlers.open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    say("shut down");
}

/// Prints a line on standard output, ignoring a closed pipe: `sluice serve |
/// head -1` must not make the server panic when it later has more to say.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The accepted socket and a second handle on it (to tell the client about a
/// shutdown from outside the connection's own task); the socket is `None` if
/// it could not be taken back by the runtime.
fn with_second_handle(
    socket: tokio::net::TcpStream,
) -> (Option<tokio::net::TcpStream>, Option<std::net::TcpStream>) {
    let Ok(std_socket) = socket.into_std() else {
        return (None, None);
    };
    let raw = std_socket.try_clone().ok();
    (tokio::net::TcpStream::from_std(std_socket).ok(), raw)
}

/// Each statement's limits from the config: the default statement timeout and
/// the maximum no session can lift.
fn statement_limits(config: &ServerConfig) -> Result<sluice_query::QueryOptions, String> {
    let duration = |key: &str, text: &str| -> Result<Option<std::time::Duration>, String> {
        sluice_query::session::parse_timeout(text).map_err(|_| {
            format!("{key}: \"{text}\" is not a duration such as 30s, 500ms, 5min or 0")
        })
    };
    let mut options = sluice_query::QueryOptions {
        timeout: duration("statement_timeout", &config.statement_timeout)?,
        ..sluice_query::QueryOptions::default()
    };
    if let Some(max) = &config.max_statement_timeout {
        options.max_timeout = duration("max_statement_timeout", max)?;
    }
    let size = |key: &str, text: &str| -> Result<usize, String> {
        sluice_storage::parse_size_bytes(text)
            .ok_or_else(|| format!("{key}: \"{text}\" is not a size such as 512MB or 4GB"))
    };
    if let Some(t) = &config.idle_in_transaction_session_timeout {
        options.idle_in_transaction_timeout = duration("idle_in_transaction_session_timeout", t)?;
    }
    if let Some(s) = &config.statement_memory {
        options.memory_limit = size("statement_memory", s)?;
    }
    let pool = match &config.query_memory_pool {
        Some(s) => size("query_memory_pool", s)?,
        None => default_query_memory_pool(),
    };
    options.pool = Some(Arc::new(sluice_query::memory::MemoryPool::new(pool)));
    options.workers = Some(match config.max_running_statements {
        Some(0) => return Err("max_running_statements: must be at least 1".into()),
        Some(n) => sluice_query::pool::QueryPool::new(n),
        None => sluice_query::pool::QueryPool::per_core(),
    });
    Ok(options)
}

/// Half of the machine's memory (`/proc/meminfo`), or 4 GB where it cannot be read.
fn default_query_memory_pool() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024 / 2)
        })
        .unwrap_or(4 << 30)
}

/// A TLS acceptor from PEM files (certificate chain and PKCS#8/RSA/EC key).
fn tls_acceptor(cert: &Path, key: &Path) -> Result<pgwire::tokio::TlsAcceptor, String> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// Without users every connection is trusted with every right: allowed on a
/// loopback address, elsewhere only when asked for by name.
fn refuse_exposed_trust(addr: SocketAddr, insecure_trust: bool) -> Result<(), String> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if insecure_trust {
        eprintln!(
            "WARNING: listening on {addr}, which other machines can reach, and trusting \
             every connection with every right (--insecure-trust)."
        );
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {addr}, which other machines can reach, without users: \
         anyone could connect with every right. List users with SCRAM verifiers in the \
         config (`sluice passwd` makes one), or pass --insecure-trust."
    ))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
