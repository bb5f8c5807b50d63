//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: a point query allocates many small
/// arrays on whichever thread runs it, and glibc's per-thread arenas spent a
/// fifth of the server's time in malloc and free under pgbench (and keep
/// freed memory from the operating system longer).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns memory mimalloc holds freed to the operating system, including
/// what the exited threads of a large scan left (see
/// `sluice_query::memory::large_statement_ended`).
fn mimalloc_give_back() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any
    // thread at any time; `force` makes it purge rather than wait.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e` of the v2
/// `mimalloc.h` that libmimalloc-sys builds; the crate names no constant for
/// it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Has mimalloc wait a second, not 10 ms, before it purges freed memory by
/// itself: the server gives memory back once large statements are over
/// (`mimalloc_give_back`), and a large statement that follows another
/// within that time reuses its pages rather than faulting in fresh ones.
fn mimalloc_purge_later() {
    // SAFETY: `mi_option_set` takes no pointers and may be called at any
    // time; a delay is a number of milliseconds.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) }
}
use sluice::{Database, StatementResult};

/// Sluice: a real-time OLAP database. Kafka in, PostgreSQL SQL out, embedded.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log lines as `text` (the default) or `json` (one object per line), on
    /// standard error; `RUST_LOG` picks the level (`warn` unless set).
    #[arg(long, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

// Parsed once at start-up: the size of the largest variant (serve's flags)
// costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the PostgreSQL protocol (psql, BI tools, drivers) and HTTP /health and
    /// /metrics, and ingest every table's Kafka source.
    ///
    /// Defaults: data in ./sluice-data, PostgreSQL protocol on 127.0.0.1:5433, HTTP
    /// on 127.0.0.1:9433. Flags override the config file. Stops cleanly on SIGINT or
    /// SIGTERM.
    Serve {
        /// A TOML file with `data_dir`, `pg_addr` and `http_addr`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The data directory (created if missing).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address for the PostgreSQL protocol.
        #[arg(long)]
        pg_addr: Option<String>,
        /// Address for HTTP (/health, /metrics).
        #[arg(long)]
        http_addr: Option<String>,
        /// Trust every connection with every right even on an address other
        /// machines can reach (without users, only loopback is allowed).
        #[arg(long)]
        insecure_trust: bool,
        /// Refuse connections that do not use TLS.
        #[arg(long)]
        require_tls: bool,
        /// Most connections at once (default 500); one more is refused with 53300.
        #[arg(long)]
        max_connections: Option<usize>,
        /// Statements computing at once (default: one per core); the rest queue.
        #[arg(long)]
        max_running_statements: Option<usize>,
        /// Each session's statement timeout until it sets its own (default 30s; 0: none).
        #[arg(long)]
        statement_timeout: Option<String>,
        /// The longest statement timeout a session may set, 0 included (default: none).
        #[arg(long)]
        max_statement_timeout: Option<String>,
        /// Memory one statement may hold (e.g. 2GB, the default).
        #[arg(long)]
        statement_memory: Option<String>,
        /// Memory all statements together may hold (default: half the machine's).
        #[arg(long)]
        query_memory_pool: Option<String>,
        /// How long SIGTERM lets running statements finish (default 30s).
        #[arg(long)]
        shutdown_timeout: Option<String>,
        /// Log every statement that takes at least this long (e.g. 500ms).
        #[arg(long)]
        log_min_duration_statement: Option<String>,
        /// How long a client may take to authenticate (default 60s).
        #[arg(long)]
        authentication_timeout: Option<String>,
        /// The longest message a client may send (default 64MB); a longer
        /// one ends its connection (08P01).
        #[arg(long)]
        max_message_size: Option<String>,
        /// End a session idle in a transaction block this long (default: never).
        #[arg(long)]
        idle_in_transaction_session_timeout: Option<String>,
        /// The directory an admin's `COPY t FROM 'file' WITH (FORMAT parquet)`
        /// may read (default: none, refused).
        #[arg(long)]
        import_dir: Option<PathBuf>,
        /// The directory an admin's `COPY (query) TO 'file' WITH (FORMAT
        /// parquet)` may write (default: none, refused).
        #[arg(long)]
        export_dir: Option<PathBuf>,
        /// TLS certificate chain (PEM); needs --tls-key.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM); needs --tls-cert.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Memory for decoded blocks, all segments together (e.g. 512MB, 4GB).
        #[arg(long)]
        block_cache: Option<String>,
        /// Run as if the clock were this far ahead (e.g. '181 days'): retention
        /// evicts what it would evict then. For drills and tests.
        #[arg(long)]
        clock_offset: Option<String>,
        /// Serve the restaurant dashboard page at http://HTTP_ADDR/ (it
        /// needs the tables of examples/dashboards/schema.sql).
        #[arg(long)]
        dashboard: bool,
    },
    /// The two dashboards, live, in one command: a Kafka-protocol broker in
    /// process (librdkafka's mock cluster), the restaurant and streaming
    /// tables reading from it (partial upsert, dedup), a day of generated
    /// history and then events at --rate, with the PostgreSQL protocol and
    /// HTTP as `serve` has them and the dashboard page at
    /// http://127.0.0.1:9433/. Data lives in a fresh directory removed at
    /// exit. Ctrl-C stops.
    Demo {
        /// Events per second after the history (half orders, half plays);
        /// 0: the history only.
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
        /// Restaurants (restaurant 1 is the busiest).
        #[arg(long, default_value_t = 1_000)]
        restaurants: u64,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Address for the PostgreSQL protocol.
        #[arg(long, default_value = "127.0.0.1:5433")]
        pg_addr: String,
        /// Address for HTTP (dashboard, /query, /metrics).
        #[arg(long, default_value = "127.0.0.1:9433")]
        http_addr: String,
        /// Keep the data here instead (an empty or new directory; not
        /// removed at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print a user's entry for the config file's `[users]` table: the SCRAM-SHA-256
    /// verifier of a password read from standard input (its first line). The
    /// server keeps only the verifier, never the password.
    Passwd {
        /// The user's name.
        user: String,
        /// `admin` (the default), `writer` or `reader`.
        #[arg(long)]
        role: Option<String>,
    },
    /// Run SQL statements against a data directory and print the results.
    ///
    /// Statements are separated by semicolons. Each query's rows are printed as a
    /// table followed by a row count; other statements print their completion tag.
    /// On an error, the message and its SQLSTATE go to standard error and the exit
    /// status is 1.
    Sql {
        /// The data directory (created if missing).
        #[arg(long, default_value = "./sluice-data")]
        data_dir: PathBuf,
        /// The SQL to run.
        sql: String,
    },
    /// Check a data directory's files (table definitions, manifests, segments,
    /// dead letters, write-ahead files) without opening it for queries; exit
    /// status 1 when damage is left. Stop the server first.
    Check {
        /// The data directory.
        data_dir: PathBuf,
        /// Move each damaged file into its table's lost+found/ and keep every
        /// readable record: damaged segments leave the manifest (their rows are
        /// gone until re-ingested), a damaged write-ahead file is rewritten with
        /// the records that check out.
        #[arg(long)]
        salvage: bool,
    },
    /// Import Parquet files into a table, with a progress bar. Rows go straight
    /// into sealed segments and each file is committed in one step, so an
    /// interrupted import leaves whole files or nothing; a file imported before
    /// (same path, size and footer) is skipped. Rows past the table's retention
    /// are counted and left out. Either stop the server first (the data
    /// directory is locked while it runs), or give --pg to have the running
    /// server import files inside its import_dir.
    Import {
        /// The table to import into (it must exist).
        #[arg(long)]
        table: String,
        /// The data directory.
        #[arg(long, default_value = "./sluice-data")]
        data_dir: PathBuf,
        /// A running server's PostgreSQL address (HOST:PORT): it imports each
        /// file with `COPY ... FROM 'file' WITH (FORMAT parquet)`, as an admin
        /// (user from PGUSER, default sluice; password from PGPASSWORD).
        #[arg(long, conflicts_with = "data_dir")]
        pg: Option<String>,
        /// Parquet files; a `*` or `?` in a file name matches like a shell glob.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Export a table as Parquet, partitioned by day of its time column
    /// (OUT/TABLE/date=YYYY-MM-DD/part-0.parquet), zstd-compressed with
    /// statistics: only valid rows (an upsert table's latest per key), streamed
    /// with bounded memory. Each file appears whole (written beside, then
    /// renamed). Stop the server first (the data directory is locked).
    Export {
        /// The table to export.
        #[arg(long)]
        table: String,
        /// The directory to write under (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The data directory.
        #[arg(long, default_value = "./sluice-data")]
        data_dir: PathBuf,
        /// Only rows at or after this time ('2026-11-01' or '2026-11-01 12:00').
        #[arg(long)]
        since: Option<String>,
        /// Only rows before this time.
        #[arg(long)]
        until: Option<String>,
    },
    /// Generate a dashboard workload: deterministic events (the same --seed
    /// and --now give the same bytes) with realistic skew. `streaming`: the
    /// engagement board's plays (Zipf users and titles, evening peak, 1% sent
    /// twice) as DIR/plays.jsonl for `sluice produce --key-field event_id`, or
    /// DIR/plays.parquet for `sluice import`. `restaurant`: orders (a message
    /// per status change, partial fields, some out of order or twice),
    /// order_items, ratings, restaurants and items as JSON lines, or as
    /// Parquet tables (orders merged as the partial upsert merges them).
    Gen {
        /// The workload.
        workload: Workload,
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// streaming: plays to generate (default 1,000,000; duplicates on top).
        #[arg(long)]
        events: Option<u64>,
        /// restaurant: orders to generate (default 100,000).
        #[arg(long)]
        orders: Option<u64>,
        /// restaurant: restaurants (default 2,000).
        #[arg(long)]
        restaurants: Option<u64>,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The end of the generated day ('2026-11-30 12:00', UTC); default now.
        #[arg(long)]
        now: Option<String>,
        /// json (JSON lines) or parquet.
        #[arg(long, value_enum, default_value_t = GenFormat::Json)]
        format: GenFormat,
    },
    /// Produce JSON lines to a Kafka topic, one message per line, with a
    /// progress bar; returns once every message is delivered.
    Produce {
        /// Kafka bootstrap servers, host:port[,...].
        #[arg(long)]
        brokers: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The JSON-lines file; `-` for standard input.
        #[arg(long)]
        file: PathBuf,
        /// A top-level field whose value becomes each message's key (one key,
        /// one partition: required for upsert tables).
        #[arg(long)]
        key_field: Option<String>,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<u64>,
    },
}

/// The workloads `sluice gen` makes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Workload {
    /// The restaurant partner portal's topics.
    Restaurant,
    /// The streaming product's plays.
    Streaming,
}

/// How many of each thing `sluice gen` makes.
struct GenSizes {
    events: Option<u64>,
    orders: Option<u64>,
    restaurants: Option<u64>,
}

/// What `sluice gen` writes.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum GenFormat {
    /// JSON lines, one event a line.
    Json,
    /// One Parquet file per topic.
    Parquet,
}

/// `sluice gen`.
fn generate(
    workload: Workload,
    out: &std::path::Path,
    sizes: GenSizes,
    seed: u64,
    now: Option<&str>,
    format: GenFormat,
) -> ExitCode {
    let now_micros = match now.map(sluice_storage::types::parse_timestamp) {
        None => chrono::Utc::now().timestamp_micros(),
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            eprintln!("ERROR:  --now: not a time such as 2026-11-30 12:00");
            return ExitCode::FAILURE;
        }
    };
    let refuse = |message: &str| {
        eprintln!("ERROR:  {message}");
        ExitCode::FAILURE
    };
    if let Workload::Restaurant = workload {
        if sizes.events.is_some() {
            return refuse("--events is for the streaming workload; restaurant takes --orders");
        }
        let topics = sluice::workload::restaurant_topics(&sluice::workload::RestaurantOptions {
            orders: sizes.orders.unwrap_or(100_000),
            restaurants: sizes.restaurants.unwrap_or(2_000),
            seed,
            now_micros,
        });
        let written = match format {
            GenFormat::Json => {
                sluice::workload::write_topics_json(&topics, out).map_err(|e| e.to_string())
            }
            GenFormat::Parquet => sluice::workload::write_topics_parquet(&topics, out),
        };
        return match written {
            Ok(files) => {
                for (path, lines) in files {
                    let what = match format {
                        GenFormat::Json => "messages",
                        GenFormat::Parquet => "rows",
                    };
                    println!("{}: {lines} {what}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => refuse(&e),
        };
    }
    if sizes.orders.is_some() || sizes.restaurants.is_some() {
        return refuse(
            "--orders and --restaurants are for the restaurant workload; streaming takes --events",
        );
    }
    let plays = sluice::workload::streaming_plays(&sluice::workload::StreamingOptions {
        events: sizes.events.unwrap_or(1_000_000),
        seed,
        now_micros,
    });
    let written = match format {
        GenFormat::Json => {
            sluice::workload::write_plays_json(&plays, out).map_err(|e| e.to_string())
        }
        GenFormat::Parquet => sluice::workload::write_plays_parquet(&plays, out),
    };
    match written {
        Ok(path) => {
            println!("{}: {} plays", path.display(), plays.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR:  {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sluice demo`.
fn demo(
    options: sluice::demo::DemoOptions,
    pg_addr: String,
    http_addr: String,
    data_dir: Option<PathBuf>,
) -> ExitCode {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let fail = |message: String| {
        eprintln!("ERROR:  {message}");
        ExitCode::FAILURE
    };
    let (dir, temporary) = match data_dir {
        Some(dir) => {
            let used = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
            if used {
                return fail(format!(
                    "{}: the demo needs an empty or new data directory",
                    dir.display()
                ));
            }
            (dir, false)
        }
        None => (
            std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id())),
            true,
        ),
    };
    let broker = match sluice::demo::DemoBroker::start() {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let stop = Arc::new(AtomicBool::new(false));
    // The producer thread, started by the set-up once the tables exist.
    type ProducerThread = std::thread::JoinHandle<Result<(), String>>;
    let producer: Arc<std::sync::Mutex<Option<ProducerThread>>> = Arc::default();
    let setup: sluice::server::Setup = {
        let bootstrap = broker.bootstrap().to_string();
        let (stop, producer, options) = (Arc::clone(&stop), Arc::clone(&producer), options.clone());
        Box::new(move |db: &sluice::Database, pg_addr, http_addr| {
            sluice::demo::create_tables(db, &bootstrap, options.restaurants)?;
            let start = chrono::Utc::now().timestamp_micros();
            print_demo_help(&options, pg_addr, http_addr);
            let thread = std::thread::Builder::new()
                .name("demo-producer".into())
                .spawn(move || sluice::demo::produce(&bootstrap, &options, start, &stop))
                .map_err(|e| format!("cannot start the demo's producer: {e}"))?;
            *producer.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
            Ok(())
        })
    };
    let config = sluice::server::ServerConfig {
        data_dir: dir.clone(),
        pg_addr,
        http_addr,
        dashboard: true,
        ..sluice::server::ServerConfig::default()
    };
    let served = sluice::server::run_with(config, Some(setup));
    stop.store(true, Ordering::Relaxed);
    let thread = producer.lock().unwrap_or_else(|p| p.into_inner()).take();
    let produced = thread.map(|t| {
        t.join()
            .unwrap_or_else(|_| Err("the producer panicked".into()))
    });
    drop(broker);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match (served, produced) {
        (Err(e), _) | (Ok(()), Some(Err(e))) => fail(e),
        _ => ExitCode::SUCCESS,
    }
}

/// What `sluice demo` prints once its tables exist.
fn print_demo_help(
    options: &sluice::demo::DemoOptions,
    pg_addr: std::net::SocketAddr,
    http_addr: std::net::SocketAddr,
) {
    let (host, port) = (pg_addr.ip(), pg_addr.port());
    println!(
        "Sluice demo: a day of history ({} orders, {} plays), then {} events/s \
         to Kafka topics orders, order_items, ratings and plays.\n\n\
         Connect:    psql -h {host} -p {port}\n\
         Dashboard:  http://{http_addr}/\n\
         Tables:     orders (partial upsert), order_items, ratings, restaurants, items, plays (dedup)\n\
         Queries:    examples/dashboards/ and docs/dashboards.md; three to paste:\n",
        options.history_orders, options.history_plays, options.rate
    );
    for sql in sluice::demo::statements_to_try() {
        println!("  {sql}\n");
    }
    println!("Ctrl-C stops the demo (its data directory is removed).");
}

/// `sluice passwd`: reads a password and prints the user's config entry.
fn passwd(user: &str, role: Option<&str>) -> ExitCode {
    if let Some(r) = role {
        if sluice_query::session::Role::parse(r).is_none() {
            eprintln!("ERROR:  role \"{r}\" is not admin, writer or reader");
            return ExitCode::FAILURE;
        }
    }
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err()
        || line.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("ERROR:  no password on standard input");
        return ExitCode::FAILURE;
    }
    let verifier = sluice::server::auth::Verifier::new(line.trim_end_matches(['\r', '\n']));
    let name = if user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        user.to_string()
    } else {
        format!("\"{}\"", user.replace('\\', "\\\\").replace('"', "\\\""))
    };
    println!("[users.{name}]");
    println!("password = \"{verifier}\"");
    println!(
        "role = \"{}\"",
        role.unwrap_or("admin").to_ascii_lowercase()
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    mimalloc_purge_later();
    sluice_query::memory::set_give_back(mimalloc_give_back);
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    match cli.command {
        Command::Sql { data_dir, sql } => run_sql(&data_dir, &sql),
        Command::Passwd { user, role } => passwd(&user, role.as_deref()),
        Command::Check { data_dir, salvage } => check(&data_dir, salvage),
        Command::Demo {
            rate,
            restaurants,
            seed,
            pg_addr,
            http_addr,
            data_dir,
        } => demo(
            sluice::demo::DemoOptions {
                rate,
                restaurants,
                seed,
                ..sluice::demo::DemoOptions::default()
            },
            pg_addr,
            http_addr,
            data_dir,
        ),
        Command::Gen {
            workload,
            out,
            events,
            orders,
            restaurants,
            seed,
            now,
            format,
        } => generate(
            workload,
            &out,
            GenSizes {
                events,
                orders,
                restaurants,
            },
            seed,
            now.as_deref(),
            format,
        ),
        Command::Export {
            table,
            out,
            data_dir,
            since,
            until,
        } => export(&data_dir, &table, &out, since.as_deref(), until.as_deref()),
        Command::Import {
            table,
            data_dir,
            pg,
            files,
        } => match pg {
            Some(address) => import_remote(&address, &table, &files),
            None => import(&data_dir, &table, &files),
        },
        Command::Produce {
            brokers,
            topic,
            file,
            key_field,
            rate,
        } => produce(&brokers, &topic, &file, key_field.as_deref(), rate),
        Command::Serve {
            config,
            data_dir,
            pg_addr,
            http_addr,
            insecure_trust,
            require_tls,
            max_connections,
            max_running_statements,
            statement_timeout,
            max_statement_timeout,
            statement_memory,
            query_memory_pool,
            shutdown_timeout,
            log_min_duration_statement,
            authentication_timeout,
            max_message_size,
            idle_in_transaction_session_timeout,
            import_dir,
            export_dir,
            tls_cert,
            tls_key,
            block_cache,
            clock_offset,
            dashboard,
        } => {
            let mut cfg = match config {
                Some(path) => match sluice::server::ServerConfig::from_file(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("ERROR:  {e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => sluice::server::ServerConfig::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(a) = pg_addr {
                cfg.pg_addr = a;
            }
            if let Some(a) = http_addr {
                cfg.http_addr = a;
            }
            cfg.insecure_trust |= insecure_trust;
            cfg.require_tls |= require_tls;
            if let Some(n) = max_connections {
                cfg.max_connections = n;
            }
            if max_running_statements.is_some() {
                cfg.max_running_statements = max_running_statements;
            }
            if let Some(t) = statement_timeout {
                cfg.statement_timeout = t;
            }
            if max_statement_timeout.is_some() {
                cfg.max_statement_timeout = max_statement_timeout;
            }
            if statement_memory.is_some() {
                cfg.statement_memory = statement_memory;
            }
            if query_memory_pool.is_some() {
                cfg.query_memory_pool = query_memory_pool;
            }
            if let Some(t) = shutdown_timeout {
                cfg.shutdown_timeout = t;
            }
            if log_min_duration_statement.is_some() {
                cfg.log_min_duration_statement = log_min_duration_statement;
            }
            if let Some(t) = authentication_timeout {
                cfg.authentication_timeout = t;
            }
            if let Some(size) = max_message_size {
                cfg.max_message_size = size;
            }
            if idle_in_transaction_session_timeout.is_some() {
                cfg.idle_in_transaction_session_timeout = idle_in_transaction_session_timeout;
            }
            if import_dir.is_some() {
                cfg.import_dir = import_dir;
            }
            if export_dir.is_some() {
                cfg.export_dir = export_dir;
            }
            if tls_cert.is_some() {
                cfg.tls_cert = tls_cert;
            }
            if tls_key.is_some() {
                cfg.tls_key = tls_key;
            }
            if block_cache.is_some() {
                cfg.block_cache = block_cache;
            }
            if clock_offset.is_some() {
                cfg.clock_offset = clock_offset;
            }
            cfg.dashboard |= dashboard;
            match sluice::server::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ERROR:  {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_sql(data_dir: &std::path::Path, sql: &str) -> ExitCode {
    let db = match Database::open_for_statements(data_dir) {
        Ok(db) => db,
        Err(e) => return report(&e),
    };
    let statements = match sluice_query::parse_sql(sql) {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    let mut session = db.session();
    for stmt in &statements {
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        match db.engine().execute(stmt, &mut session, &[], cancel) {
            Ok(StatementResult::Rows { schema, batches }) => {
                let batches = if batches.is_empty() {
                    vec![sluice::RecordBatch::new_empty(schema)]
                } else {
                    batches
                };
                match sluice::pretty::format_batches(&batches) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return report(&e),
                }
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                println!("({rows} row{})", if rows == 1 { "" } else { "s" });
            }
            Ok(StatementResult::Command { tag }) => println!("{tag}"),
            Err(e) => return report(&e),
        }
    }
    ExitCode::SUCCESS
}

fn check(data_dir: &std::path::Path, salvage: bool) -> ExitCode {
    let report = match sluice_storage::check::check_data_dir(data_dir, salvage) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    for f in &report.findings {
        println!("DAMAGED {}: {}", f.path.display(), f.problem);
        if let Some(action) = &f.action {
            println!("  salvaged: {action}");
        }
    }
    println!(
        "{} tables, {} files sound, {} damaged{}",
        report.tables,
        report.sound_files,
        report.findings.len(),
        if report.has_damage_left() && !salvage {
            " (sluice check --salvage moves them aside and keeps what is readable)"
        } else {
            ""
        }
    );
    if report.has_damage_left() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `sluice export`, with a progress bar of rows written.
fn export(
    data_dir: &std::path::Path,
    table: &str,
    out: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
) -> ExitCode {
    let time = |text: Option<&str>| -> Result<Option<i64>, String> {
        text.map(|t| {
            sluice_storage::types::parse_timestamp(t).map_err(|_| {
                format!("\"{t}\" is not a time such as 2026-11-01 or 2026-11-01 12:00")
            })
        })
        .transpose()
    };
    let (since, until) = match (time(since), time(until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut db = match sluice::Database::open_for_statements(data_dir) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    // A whole table may take longer than a statement's usual timeout.
    let mut options = db.options().clone();
    options.timeout = None;
    db.set_options(options);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {human_pos} rows written ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let started = std::time::Instant::now();
    match sluice::export::export_table(&db, table, out, since, until, &|n| bar.set_position(n)) {
        Ok(r) => {
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{table}: {} rows in {} files, {} bytes, {:.2} s ({:.0} rows/s)",
                r.rows,
                r.files.len(),
                r.bytes,
                secs,
                r.rows as f64 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("ERROR:  {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sluice import --pg`: a running server imports each file (which must lie
/// inside its import_dir) through `COPY ... FROM 'file' WITH (FORMAT parquet)`.
fn import_remote(address: &str, table: &str, patterns: &[String]) -> ExitCode {
    let files = match sluice::import::expand_paths(patterns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((host, Ok(port))) = address
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()))
    else {
        eprintln!("ERROR:  --pg takes HOST:PORT, not \"{address}\"");
        return ExitCode::FAILURE;
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host(host.trim_start_matches('[').trim_end_matches(']'))
        .port(port)
        .user(std::env::var("PGUSER").as_deref().unwrap_or("sluice"))
        .dbname("sluice")
        .application_name("sluice import");
    if let Ok(password) = std::env::var("PGPASSWORD") {
        config.password(password);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match config.connect(tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(e) => {
                eprintln!("ERROR:  {address}: {e}");
                return ExitCode::FAILURE;
            }
        };
        for file in &files {
            let path = match std::fs::canonicalize(file) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("ERROR:  {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            let sql = format!(
                "COPY \"{}\" FROM '{}' WITH (FORMAT parquet)",
                table.replace('"', "\"\""),
                path.display().to_string().replace('\'', "''")
            );
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(format!("{} (the server imports it)", path.display()));
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            let started = std::time::Instant::now();
            match client.execute(&sql, &[]).await {
                Ok(rows) => {
                    bar.finish_and_clear();
                    let secs = started.elapsed().as_secs_f64();
                    println!(
                        "{}: {rows} rows in {secs:.2} s ({:.0} rows/s; 0 rows: imported before, or past retention)",
                        path.display(),
                        rows as f64 / secs.max(1e-9)
                    );
                }
                Err(e) => {
                    bar.abandon();
                    let message = e.as_db_error().map_or(e.to_string(), |d| d.message().to_string());
                    eprintln!("ERROR:  {}: {message}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        ExitCode::SUCCESS
    })
}

/// `sluice import`: each file in turn, each with its own progress bar.
fn import(data_dir: &std::path::Path, table: &str, patterns: &[String]) -> ExitCode {
    let files = match sluice::import::expand_paths(patterns) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = match sluice::Database::open_for_statements(data_dir) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    let table = match db.engine().catalog().table(table) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            return ExitCode::FAILURE;
        }
    };
    for file in &files {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} rows ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(file.display().to_string());
        let started = std::time::Instant::now();
        let progress = |p: sluice::import::ImportProgress| match p {
            sluice::import::ImportProgress::Total(n) => bar.set_length(n),
            sluice::import::ImportProgress::Read(n) => bar.set_position(n),
        };
        match sluice::import::import_parquet(&table, file, &progress) {
            Ok(r) if r.already_imported => {
                bar.finish_and_clear();
                println!("{}: imported before, skipped", file.display());
            }
            Ok(r) => {
                bar.finish_and_clear();
                let secs = started.elapsed().as_secs_f64();
                let placed = if r.through_key_map {
                    "applied through the key map".to_string()
                } else {
                    format!("in {} segments", r.segments)
                };
                println!(
                    "{}: {} rows {placed}, {} past retention left out, {:.2} s ({:.0} rows/s)",
                    file.display(),
                    r.rows,
                    r.expired,
                    secs,
                    (r.rows + r.expired) as f64 / secs.max(1e-9)
                );
            }
            Err(e) => {
                bar.abandon();
                eprintln!("ERROR:  {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn produce(
    brokers: &str,
    topic: &str,
    file: &std::path::Path,
    key_field: Option<&str>,
    rate: Option<u64>,
) -> ExitCode {
    use std::io::BufRead;
    let (input, total): (Box<dyn BufRead>, Option<u64>) = if file.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let lines = match std::fs::File::open(file) {
            Ok(f) => std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .count() as u64,
            Err(e) => {
                eprintln!("ERROR:  cannot open {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        };
        match std::fs::File::open(file) {
            Ok(f) => (Box::new(std::io::BufReader::new(f)), Some(lines)),
            Err(e) => {
                eprintln!("ERROR:  cannot open {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} messages ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let options = sluice_ingest::produce::ProduceOptions {
        brokers,
        topic,
        key_field,
        rate,
    };
    match sluice_ingest::produce::produce_lines(&options, input, |n| bar.set_position(n)) {
        Ok(n) => {
            bar.finish_and_clear();
            println!("produced {n} messages to {topic}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("ERROR:  {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(e: &sluice::Error) -> ExitCode {
    eprintln!("ERROR:  {e}\nSQLSTATE: {}", e.sqlstate());
    ExitCode::FAILURE
}
