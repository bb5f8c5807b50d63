//! Runs the sqllogictest files under `tests/slt/` against Sluice, and, when a
//! PostgreSQL server is given, against PostgreSQL too: every expected result in these
//! files was produced by PostgreSQL 15, and this check keeps it that way.
//!
//! ```text
//! cargo test --test slt                              # Sluice only
//! SLUICE_PG_URL='host=... port=... user=postgres' cargo test --test slt
//!                                                    # Sluice, then PostgreSQL
//! SLUICE_PG_URL=... cargo test --test slt -- --complete [FILTER]
//!                                                    # rewrite expectations from PostgreSQL
//! ```
//!
//! Each file runs five ways: against Sluice through its embedding API (once as is;
//! once sealing every table after each statement so queries read segment files;
//! once with `segment_rows = '2'`, a seal before each INSERT and each multi-row
//! INSERT ... VALUES split so its last row stays unsealed: a table is many small
//! segments plus a mutable one), against
//! `sluice serve` over the PostgreSQL protocol (every query prepared and described
//! first, results decoded by their reported types), and, with `SLUICE_PG_URL`,
//! against PostgreSQL itself.
//!
//! Every column's type is checked: a `query` header has one letter per column for
//! its PostgreSQL type (`I` int4, `G` int8, `N` numeric, `R` float, `T` text, `B`
//! bool, `D` date, `P` timestamp, `Z` timestamptz, `V` interval, `O` oid, `K` int4[],
//! `L` int8[], `S` text[], `A` other arrays, `?` other), written from PostgreSQL by
//! `--complete`, and each engine's result must
//! have exactly those.
//!
//! Values are compared as PostgreSQL's text output, exactly, with two
//! tolerances for what PostgreSQL itself leaves undetermined (see
//! [`value_validator`]): a double may differ in its last digits when the values
//! differ by less than 1e-12 relatively (the order a sum adds in), and a numeric
//! compares by value, so `1.50` matches `1.5` (PostgreSQL keeps a scale per value,
//! Sluice one per column). A double printed differently from PostgreSQL (`1e+20`
//! against `100000000000000000000`) fails. The Sluice-only `WITH (...)` options of
//! CREATE TABLE are removed before a statement is sent to PostgreSQL. Errors are compared by SQLSTATE
//! (`statement error SQLSTATE 42P01`). Each file runs in a fresh data directory (and,
//! on PostgreSQL, a fresh database with the C collation, Sluice's byte order).

use std::path::{Path, PathBuf};

use arrow::datatypes::DataType;
use sluice::{Database, StatementResult};
use sqllogictest::{AsyncDB, DBOutput, Runner};

/// A result column's PostgreSQL type, as one letter of a `query` record's
/// header (`query IGT`). The letters are written from PostgreSQL by
/// `--complete`, and every engine's columns must have the same, so a float8
/// where PostgreSQL says numeric, or an int8 where it says int4, fails.
#[derive(Debug, PartialEq, Eq, Clone)]
enum PgType {
    /// int2, int4: `I`
    Int4,
    /// int8: `G`
    Int8,
    /// float4, float8: `R`
    Float,
    /// numeric: `N`
    Numeric,
    /// text, varchar, char, name: `T`
    Text,
    /// bool: `B`
    Bool,
    /// date: `D`
    Date,
    /// timestamp: `P`
    Timestamp,
    /// timestamptz: `Z`
    TimestampTz,
    /// interval: `V`
    Interval,
    /// oid and the reg* types: `O`
    Oid,
    /// int2[], int4[]: `K`
    Int4Array,
    /// int8[]: `L`
    Int8Array,
    /// text[], varchar[], name[]: `S`
    TextArray,
    /// any other array: `A`
    OtherArray,
    /// anything else (json, bytea): `?`
    Other,
}

const PG_TYPE_LETTERS: [(char, PgType); 16] = [
    ('I', PgType::Int4),
    ('G', PgType::Int8),
    ('R', PgType::Float),
    ('N', PgType::Numeric),
    ('T', PgType::Text),
    ('B', PgType::Bool),
    ('D', PgType::Date),
    ('P', PgType::Timestamp),
    ('Z', PgType::TimestampTz),
    ('V', PgType::Interval),
    ('O', PgType::Oid),
    ('K', PgType::Int4Array),
    ('L', PgType::Int8Array),
    ('S', PgType::TextArray),
    ('A', PgType::OtherArray),
    ('?', PgType::Other),
];

impl sqllogictest::ColumnType for PgType {
    fn from_char(value: char) -> Option<Self> {
        PG_TYPE_LETTERS
            .iter()
            .find(|(c, _)| *c == value)
            .map(|(_, t)| t.clone())
    }

    fn to_char(&self) -> char {
        PG_TYPE_LETTERS
            .iter()
            .find(|(_, t)| t == self)
            .map_or('?', |(c, _)| *c)
    }
}

impl PgType {
    /// The type PostgreSQL's protocol reported.
    fn of_wire(t: &tokio_postgres::types::Type) -> PgType {
        use tokio_postgres::types::Type;
        match *t {
            Type::INT2 | Type::INT4 => PgType::Int4,
            Type::INT8 => PgType::Int8,
            Type::FLOAT4 | Type::FLOAT8 => PgType::Float,
            Type::NUMERIC => PgType::Numeric,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR => PgType::Text,
            Type::BOOL => PgType::Bool,
            Type::DATE => PgType::Date,
            Type::TIMESTAMP => PgType::Timestamp,
            Type::TIMESTAMPTZ => PgType::TimestampTz,
            Type::INTERVAL => PgType::Interval,
            Type::OID | Type::REGCLASS | Type::REGTYPE | Type::REGPROC => PgType::Oid,
            Type::INT2_ARRAY | Type::INT4_ARRAY => PgType::Int4Array,
            Type::INT8_ARRAY => PgType::Int8Array,
            Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::NAME_ARRAY => PgType::TextArray,
            _ if matches!(t.kind(), tokio_postgres::types::Kind::Array(_)) => PgType::OtherArray,
            _ => PgType::Other,
        }
    }

    /// The type Sluice's engine gives a column of `data_type`.
    fn of_arrow(data_type: &DataType) -> PgType {
        match data_type {
            DataType::Int16 | DataType::Int32 => PgType::Int4,
            DataType::Int64 => PgType::Int8,
            DataType::Float32 | DataType::Float64 => PgType::Float,
            DataType::Decimal128(..) | DataType::Decimal256(..) => PgType::Numeric,
            // PostgreSQL reports an untyped NULL as text.
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Null => PgType::Text,
            DataType::Dictionary(_, v) => PgType::of_arrow(v),
            DataType::Boolean => PgType::Bool,
            DataType::Date32 => PgType::Date,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgType::TimestampTz,
            DataType::Interval(_) => PgType::Interval,
            DataType::UInt32 => PgType::Oid,
            DataType::List(f) => match PgType::of_arrow(f.data_type()) {
                PgType::Int4 => PgType::Int4Array,
                PgType::Int8 => PgType::Int8Array,
                PgType::Text => PgType::TextArray,
                _ => PgType::OtherArray,
            },
            _ => PgType::Other,
        }
    }
}

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

thread_local! {
    /// The column types of the last result an engine returned: the runner
    /// validates a result on the thread that ran it, right after, and
    /// [`value_validator`] compares doubles and numerics by their type.
    static RESULT_TYPES: std::cell::RefCell<Vec<PgType>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a result's column types for [`value_validator`].
fn result_types(types: &[PgType]) {
    RESULT_TYPES.with(|t| *t.borrow_mut() = types.to_vec());
}

/// Compares a result with its expectation line by line and column by column
/// (a line's tokens are assigned to columns by the actual cells' token counts).
/// Values must be equal as text, with two tolerances for what PostgreSQL leaves
/// undetermined: two doubles that are not the same double may differ by 1e-12
/// relatively (the order a sum adds in), and numerics compare by value
/// ([`same_numeric`]). The same double printed two ways is a failure: the text
/// form is what is checked.
fn value_validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let types = RESULT_TYPES.with(|t| t.borrow().clone());
    actual.len() == expected.len()
        && actual.iter().zip(expected).all(|(row, line)| {
            let line = normalizer(line);
            let mut tokens = line.split(' ');
            row.iter().enumerate().all(|(i, cell)| {
                let cell = normalizer(cell);
                let want: Vec<&str> = tokens.by_ref().take(cell.split(' ').count()).collect();
                let want = want.join(" ");
                match types.get(i) {
                    _ if cell == want => true,
                    Some(PgType::Float) => same_double(&cell, &want),
                    Some(PgType::Numeric) => same_numeric(&cell, &want),
                    _ => false,
                }
            }) && tokens.next().is_none()
        })
}

/// Two doubles' text forms: different doubles within 1e-12 of each other.
fn same_double(a: &str, e: &str) -> bool {
    match (a.parse::<f64>(), e.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() && x != y => {
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        _ => false,
    }
}

/// Two numerics' text forms: equal values (`1.50` is `1.5`: PostgreSQL keeps a
/// scale per value, Sluice one per column), or, for quotients, where PostgreSQL
/// picks each value's scale from its digits (16 significant or more), the longer
/// rounded to the shorter when both carry 16 decimals or more.
fn same_numeric(a: &str, e: &str) -> bool {
    let trim = |t: &str| -> String {
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t.to_string()
        }
    };
    if trim(a) == trim(e) {
        return true;
    }
    let decimals = |t: &str| t.split_once('.').map_or(0, |(_, f)| f.len());
    let (short, long) = if decimals(a) <= decimals(e) {
        (a, e)
    } else {
        (e, a)
    };
    decimals(short) >= 16 && round_decimal(long, decimals(short)) == short
}

/// A decimal string rounded half away from zero to `scale` fraction digits.
fn round_decimal(t: &str, scale: usize) -> String {
    let (negative, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() <= scale {
        return t.to_string();
    }
    let mut kept: Vec<u8> = format!("{int}{}", &frac[..scale]).into_bytes();
    if frac.as_bytes()[scale] >= b'5' {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, b'1');
                break;
            }
            i -= 1;
            if kept[i] == b'9' {
                kept[i] = b'0';
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let kept = String::from_utf8(kept).unwrap_or_default();
    let (i, f) = kept.split_at(kept.len() - scale);
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{i}")
    } else {
        format!("{sign}{i}.{f}")
    }
}

fn cell(text: Option<String>) -> String {
    match text {
        None => "NULL".into(),
        Some(s) if s.is_empty() => "(empty)".into(),
        Some(s) => s,
    }
}

/// Sluice through its embedding API.
struct Sluice {
    db: Database,
    /// One session for the file, as one connection: `SET` carries over.
    session: sluice::Session,
    /// For [`Mode::TinySegments`]: a second database that runs every statement
    /// except queries first, so an INSERT that would fail is never split.
    probe: Option<Database>,
    _dir: tempfile::TempDir,
    /// Where the rows are when queries run.
    mode: Mode,
    /// `segment_rows` for [`Mode::TinySegments`].
    tiny_rows: usize,
}

/// How the embedded runs lay out a table's rows.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// All in the mutable segment.
    Mutable,
    /// Sealed after each statement: queries read segment files only.
    SealedEachStatement,
    /// Two-row segments, sealed before each INSERT, and each multi-row
    /// `INSERT ... VALUES` run as all rows but the last (then sealed) and the last:
    /// queries see many small segment files plus a mutable segment.
    TinySegments,
}

impl Mode {
    fn describe(self) -> &'static str {
        match self {
            Mode::Mutable => "sluice",
            Mode::SealedEachStatement => "sluice, sealed after each statement",
            Mode::TinySegments => "sluice, two-row segments plus a mutable one",
        }
    }
}

/// An `INSERT ... VALUES` of two or more rows as two statements: all rows but the
/// last, and the last; `None` for any other statement.
fn split_insert(sql: &str) -> Option<(String, String)> {
    use sqlparser::ast::{SetExpr, Statement};
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let mut statements = sqlparser::parser::Parser::parse_sql(&dialect, sql).ok()?;
    let Some(Statement::Insert(insert)) = statements.pop() else {
        return None;
    };
    let SetExpr::Values(values) = insert.source.as_ref()?.body.as_ref() else {
        return None;
    };
    if values.rows.len() < 2 {
        return None;
    }
    let part = |rows: &[_]| {
        let mut one = insert.clone();
        if let Some(source) = one.source.as_mut() {
            let mut v = values.clone();
            v.rows = rows.to_vec();
            *source.body = SetExpr::Values(v);
        }
        Statement::Insert(one).to_string()
    };
    let (head, last) = values.rows.split_at(values.rows.len() - 1);
    Some((part(head), part(last)))
}

/// `sql` with `segment_rows = 'rows'` added to a CREATE TABLE's options.
fn with_tiny_segments(sql: &str, rows: usize) -> String {
    let lower = sql.to_ascii_lowercase();
    if !lower.trim_start().starts_with("create table") {
        return sql.to_string();
    }
    match lower.rfind("with (") {
        Some(at) => format!(
            "{}segment_rows = '{rows}', {}",
            &sql[..at + "with (".len()],
            &sql[at + "with (".len()..]
        ),
        None => sql.to_string(),
    }
}

impl sqllogictest::DB for Sluice {
    type Error = SltError;
    type ColumnType = PgType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<PgType>, SltError> {
        let sql = match self.mode {
            Mode::TinySegments => {
                let sql = with_tiny_segments(sql, self.tiny_rows);
                let is_query = sql.trim_start().to_ascii_lowercase().starts_with("select");
                if let (Some(probe), false) = (&self.probe, is_query) {
                    probe
                        .execute(&sql)
                        .map_err(|e| SltError(format!("SQLSTATE {}: {e}", e.sqlstate())))?;
                }
                // The statement is known to succeed: seal what came before, then
                // insert all rows but the last, seal them into two-row segments,
                // and leave the last row in the mutable segment.
                let seal = |db: &Database| {
                    db.seal()
                        .map(|_| ())
                        .map_err(|e| SltError(format!("sealing: {e}")))
                };
                if sql.trim_start().to_ascii_lowercase().starts_with("insert") {
                    seal(&self.db)?;
                }
                match split_insert(&sql) {
                    Some((head, last)) => {
                        self.db
                            .execute_in(&mut self.session, &head)
                            .map_err(|e| SltError(format!("SQLSTATE {}: {e}", e.sqlstate())))?;
                        seal(&self.db)?;
                        last
                    }
                    None => sql,
                }
            }
            _ => sql.to_string(),
        };
        let mut results = self
            .db
            .execute_in(&mut self.session, &sql)
            .map_err(|e| SltError(format!("SQLSTATE {}: {e}", e.sqlstate())))?;
        if matches!(self.mode, Mode::SealedEachStatement) {
            self.db
                .seal()
                .map_err(|e| SltError(format!("sealing: {e}")))?;
        }
        match results.pop() {
            Some(StatementResult::Rows { schema, batches }) => {
                let types: Vec<PgType> = schema
                    .fields()
                    .iter()
                    .map(|f| PgType::of_arrow(f.data_type()))
                    .collect();
                let mut rows = Vec::new();
                for b in &batches {
                    for r in 0..b.num_rows() {
                        let row = b
                            .columns()
                            .iter()
                            .map(|c| {
                                sluice_query::format::format_value(
                                    c.as_ref(),
                                    r,
                                    self.session.query_options().zone,
                                )
                                .map(cell)
                                .map_err(|e| SltError(e.to_string()))
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        rows.push(row);
                    }
                }
                result_types(&types);
                Ok(DBOutput::Rows { types, rows })
            }
            Some(StatementResult::Command { tag }) => Ok(DBOutput::StatementComplete(
                tag.rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            )),
            None => Ok(DBOutput::StatementComplete(0)),
        }
    }

    fn engine_name(&self) -> &str {
        "sluice"
    }
}

/// PostgreSQL through tokio-postgres: the oracle.
struct Postgres {
    client: tokio_postgres::Client,
    /// True for a real PostgreSQL, which does not know Sluice's table options.
    strip_options: bool,
}

/// Removes the Sluice-only `WITH (...)` clause from a CREATE TABLE.
fn strip_table_options(sql: &str) -> String {
    let trimmed = sql.trim_start();
    if !trimmed.to_ascii_lowercase().starts_with("create table") {
        return sql.to_string();
    }
    let lower = sql.to_ascii_lowercase();
    match lower.rfind(") with (").or_else(|| lower.rfind(")with (")) {
        Some(i) => sql[..=i].to_string(),
        None => sql.to_string(),
    }
}

fn pg_error(e: tokio_postgres::Error) -> SltError {
    match e.as_db_error() {
        Some(db) => SltError(format!("SQLSTATE {}: {}", db.code().code(), db.message())),
        None => SltError(e.to_string()),
    }
}

#[async_trait::async_trait]
impl AsyncDB for Postgres {
    type Error = SltError;
    type ColumnType = PgType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<PgType>, SltError> {
        use tokio_postgres::types::Type;
        let sql = if self.strip_options {
            strip_table_options(sql)
        } else {
            sql.to_string()
        };
        let is_query = {
            let l = sql.trim_start().to_ascii_lowercase();
            l.starts_with("select")
                || l.starts_with("with")
                || l.starts_with("values")
                || l.starts_with('(')
        };
        if !is_query {
            let msgs = self.client.simple_query(&sql).await.map_err(pg_error)?;
            let n = msgs
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                })
                .last()
                .unwrap_or(0);
            return Ok(DBOutput::StatementComplete(n));
        }
        let stmt = self.client.prepare(&sql).await.map_err(pg_error)?;
        let col_types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        let msgs = self.client.simple_query(&sql).await.map_err(pg_error)?;
        let mut rows = Vec::new();
        for m in msgs {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
                let mut out = Vec::new();
                for i in 0..col_types.len() {
                    let v = row.get(i).map(str::to_string);
                    out.push(cell(v));
                }
                rows.push(out);
            }
        }
        let types: Vec<PgType> = col_types.iter().map(PgType::of_wire).collect();
        result_types(&types);
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "postgres"
    }
}

async fn connect_postgres(url: &str, file: &Path) -> Result<Postgres, SltError> {
    let db = format!(
        "slt_{}",
        file.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("x")
            .replace('-', "_")
    );
    let (admin, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(pg_error)?;
    tokio::spawn(conn);
    admin
        .simple_query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .map_err(pg_error)?;
    admin
        .simple_query(&format!(
            "CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await
        .map_err(pg_error)?;
    let (client, conn) =
        tokio_postgres::connect(&format!("{url} dbname={db}"), tokio_postgres::NoTls)
            .await
            .map_err(pg_error)?;
    tokio::spawn(conn);
    client
        .simple_query(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'",
        )
        .await
        .map_err(pg_error)?;
    Ok(Postgres {
        client,
        strip_options: true,
    })
}

/// A `sluice serve` on a fresh data directory, for one file; killed when dropped.
struct WireServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for WireServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> WireServer {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--pg-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start sluice serve");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let port = line
        .split("PostgreSQL on ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    WireServer {
        child,
        port,
        _dir: dir,
    }
}

/// Sluice over the PostgreSQL protocol, through the same adapter as the oracle:
/// every query is prepared (Describe) and its text results decoded by type.
async fn connect_sluice_wire(port: u16) -> Result<Postgres, SltError> {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=slt dbname=sluice"),
        tokio_postgres::NoTls,
    )
    .await
    .map_err(pg_error)?;
    tokio::spawn(conn);
    Ok(Postgres {
        client,
        strip_options: false,
    })
}

fn slt_files(filter: Option<&str>) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| filter.is_none_or(|f| p.to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

fn count_records(file: &Path) -> usize {
    sqllogictest::parse_file::<PgType>(file)
        .map(|records| {
            records
                .iter()
                .filter(|r| {
                    matches!(
                        r,
                        sqllogictest::Record::Statement { .. } | sqllogictest::Record::Query { .. }
                    )
                })
                .count()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let complete = args.iter().any(|a| a == "--complete");
    let filter = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str);
    let pg_url = std::env::var("SLUICE_PG_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let files = slt_files(filter);

    if complete {
        let url =
            pg_url.expect("--complete needs SLUICE_PG_URL: expectations come from PostgreSQL");
        for f in &files {
            rt.block_on(async {
                let u = url.clone();
                let path = f.clone();
                let mut runner = Runner::new(move || {
                    let (u, p) = (u.clone(), path.clone());
                    async move { connect_postgres(&u, &p).await }
                });
                runner.add_label("postgres");
                runner
                    .update_test_file(
                        f,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::strict_column_validator,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("completing {}: {e}", f.display()));
            });
            println!("completed {} from PostgreSQL", f.display());
        }
        return;
    }

    let (mut passed, mut failed) = (0usize, 0usize);
    for f in &files {
        let records = count_records(f);
        // Two-row segments, except where a file bulk-loads with INSERT ... SELECT:
        // 72,000 rows would make 36,000 files, each a memory map, past the
        // kernel's default limit of 65,530 maps (compaction is not built yet).
        let bulk = std::fs::read_to_string(f)
            .map(|text| {
                text.lines()
                    .any(|l| l.starts_with("INSERT") && l.contains(" SELECT "))
            })
            .unwrap_or(false);
        let tiny_rows = if bulk { 2_000 } else { 2 };
        for mode in [Mode::Mutable, Mode::SealedEachStatement, Mode::TinySegments] {
            let mut runner = Runner::new(move || async move {
                let dir = tempfile::tempdir().map_err(|e| SltError(e.to_string()))?;
                let db = Database::open(dir.path()).map_err(|e| SltError(e.to_string()))?;
                let probe = match mode {
                    Mode::TinySegments => Some(
                        Database::open(dir.path().join("probe"))
                            .map_err(|e| SltError(e.to_string()))?,
                    ),
                    _ => None,
                };
                Ok(Sluice {
                    session: db.session(),
                    db,
                    probe,
                    _dir: dir,
                    mode,
                    tiny_rows,
                })
            });
            runner.add_label("sluice");
            runner.with_column_validator(sqllogictest::strict_column_validator);
            runner.with_validator(value_validator);
            match runner.run_file(f) {
                Ok(()) => passed += records,
                Err(e) => {
                    failed += records;
                    eprintln!("FAILED ({}) {}:\n{e}\n", mode.describe(), f.display());
                }
            }
        }
        let server = start_server();
        let port = server.port;
        let wire = rt.block_on(async {
            let mut runner = Runner::new(move || connect_sluice_wire(port));
            runner.add_label("sluice");
            runner.with_column_validator(sqllogictest::strict_column_validator);
            runner.with_validator(value_validator);
            runner.run_file_async(f).await
        });
        drop(server);
        match wire {
            Ok(()) => passed += records,
            Err(e) => {
                failed += records;
                eprintln!(
                    "FAILED (sluice over the PostgreSQL protocol) {}:\n{e}\n",
                    f.display()
                );
            }
        }
        if let Some(url) = &pg_url {
            let result = rt.block_on(async {
                let u = url.clone();
                let path = f.clone();
                let mut runner = Runner::new(move || {
                    let (u, p) = (u.clone(), path.clone());
                    async move { connect_postgres(&u, &p).await }
                });
                runner.add_label("postgres");
                runner.with_column_validator(sqllogictest::strict_column_validator);
                runner.with_validator(value_validator);
                runner.run_file_async(f).await
            });
            if let Err(e) = result {
                failed += 1;
                eprintln!("FAILED (postgres oracle) {}:\n{e}\n", f.display());
            }
        }
    }
    if pg_url.is_none() {
        println!("slt: PostgreSQL oracle check skipped (set SLUICE_PG_URL; .ci/run does)");
    } else {
        println!("slt: every file also checked against PostgreSQL");
    }
    println!("slt: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        std::process::exit(1);
    }
}
