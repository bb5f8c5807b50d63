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
    for stmt in &statements {
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        match db.engine().execute(stmt, db.options(), cancel) {
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
