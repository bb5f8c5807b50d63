//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::{Database, StatementResult};

/// Sluice: a real-time OLAP database. Kafka in, PostgreSQL SQL out, embedded.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the PostgreSQL protocol (psql, BI tools, drivers) and HTTP /health.
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
        /// Address for HTTP (/health).
        #[arg(long)]
        http_addr: Option<String>,
        /// Require this password (SCRAM-SHA-256) from every client.
        #[arg(long, env = "SLUICE_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// TLS certificate chain (PEM); needs --tls-key.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM); needs --tls-cert.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Memory for decoded blocks, all segments together (e.g. 512MB, 4GB).
        #[arg(long)]
        block_cache: Option<String>,
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Sql { data_dir, sql } => run_sql(&data_dir, &sql),
        Command::Serve {
            config,
            data_dir,
            pg_addr,
            http_addr,
            password,
            tls_cert,
            tls_key,
            block_cache,
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
            if password.is_some() {
                cfg.password = password;
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
    let db = match Database::open(data_dir) {
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

fn report(e: &sluice::Error) -> ExitCode {
    eprintln!("ERROR:  {e}\nSQLSTATE: {}", e.sqlstate());
    ExitCode::FAILURE
}
