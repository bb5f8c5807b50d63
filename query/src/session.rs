//! Per-connection session state: the settings `SET`, `SHOW` and `RESET` work on, and
//! what they change about each statement (time zone, statement timeout).

use sluice_storage::zone::Zone;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use arrow::array::RecordBatch;

use crate::context::QueryOptions;
use crate::error::{Error, Result};

/// The PostgreSQL version Sluice reports, so that drivers enable the features of
/// PostgreSQL 15.
pub const SERVER_VERSION: &str = "15.0";

/// Settings every session starts with, as PostgreSQL names and spells them.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("lc_messages", "C"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    ("lock_timeout", "0"),
    ("max_identifier_length", "63"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("server_version_num", "150000"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "30s"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// Settings that cannot be changed.
const READ_ONLY: &[&str] = &[
    "integer_datetimes",
    "is_superuser",
    "lc_collate",
    "lc_ctype",
    "max_identifier_length",
    "server_encoding",
    "server_version",
    "server_version_num",
];

/// What a session's user may do. PostgreSQL grants privileges per object;
/// Sluice has three roles, set per user in the server's config, ordered by
/// what they allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Queries only (SELECT, SHOW, SET, cursors); its transactions are read-only.
    Reader,
    /// Queries and writes into existing tables (INSERT, COPY FROM); no DDL.
    Writer,
    /// Everything, DDL included.
    Admin,
}

impl Role {
    /// `admin`, `writer` or `reader`, in any case.
    pub fn parse(text: &str) -> Option<Role> {
        match text.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "writer" => Some(Role::Writer),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }

    /// The role's name, as the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

/// A transaction block's table snapshots, by table (shown by their count).
#[derive(Clone, Default)]
struct BlockSnapshots(HashMap<usize, std::sync::Arc<sluice_storage::TableSnapshot>>);

impl std::fmt::Debug for BlockSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} table snapshot(s)", self.0.len())
    }
}

/// PostgreSQL's spellings of a true boolean setting.
fn is_on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "true" | "yes" | "1" | "t"
    )
}

/// One connection's (or one embedding caller's) session.
#[derive(Clone, Debug)]
pub struct Session {
    base: QueryOptions,
    settings: BTreeMap<String, String>,
    role: Role,
    user: String,
    database: String,
    in_transaction: bool,
    /// The block has had an error: only COMMIT or ROLLBACK may follow (25P02).
    transaction_failed: bool,
    /// Writes applied since the block began (each applies when it completes).
    transaction_writes: u64,
    /// The block's savepoints, with the writes made before each.
    savepoints: Vec<(String, u64)>,
    /// The snapshots the block's statements read, by table: every read in a
    /// block sees the same rows (until the block itself writes).
    block_snapshots: BlockSnapshots,
    backend_pid: i32,
    timeout_set: bool,
    cursors: HashMap<String, Cursor>,
    /// Counts changes to what binding reads (settings, role, process id): a
    /// plan bound under another generation is stale.
    generation: u64,
}

/// An open cursor (`DECLARE ... CURSOR FOR`): its rows and how far FETCH has read.
#[derive(Clone, Debug)]
pub struct Cursor {
    /// All of the query's rows.
    pub rows: RecordBatch,
    /// The next row FETCH returns.
    pub position: usize,
    /// WITH HOLD: the cursor outlives the block that declared it, if that
    /// block commits.
    pub hold: bool,
    /// Declared in the open block: a ROLLBACK closes it even WITH HOLD.
    pub declared_in_block: bool,
    /// How many of the block's savepoints stood when it was declared: a
    /// ROLLBACK TO an earlier savepoint closes it.
    pub savepoint_depth: usize,
    /// The rows' share of the server's query memory pool, given back when the
    /// cursor (and every name for it) closes.
    pub memory: Option<std::sync::Arc<crate::memory::PoolReservation>>,
}

impl Session {
    /// A session for `user` on `database` whose statements start from `base` limits.
    pub fn new(base: QueryOptions, user: &str, database: &str) -> Self {
        let mut settings: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(t) = base.timeout {
            settings.insert("statement_timeout".into(), format_duration(t));
        } else {
            settings.insert("statement_timeout".into(), "0".into());
        }
        if let Some(t) = base.idle_in_transaction_timeout {
            settings.insert(
                "idle_in_transaction_session_timeout".into(),
                format_duration(t),
            );
        }
        Session {
            base,
            settings,
            role: Role::Admin,
            user: user.to_string(),
            database: database.to_string(),
            in_transaction: false,
            transaction_failed: false,
            transaction_writes: 0,
            savepoints: Vec::new(),
            block_snapshots: BlockSnapshots::default(),
            backend_pid: 0,
            timeout_set: false,
            cursors: HashMap::new(),
            generation: 0,
        }
    }

    /// Changes whenever a setting, the role or the process id changes: a
    /// prepared statement's plan bound under another generation may read
    /// stale values ([`crate::reuse`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The connected user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// What the user may do ([`Role::Admin`] unless set).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Sets the user's role: `is_superuser` follows it, and a reader's
    /// transactions are read-only by default, as PostgreSQL's
    /// `default_transaction_read_only` makes them.
    pub fn set_role(&mut self, role: Role) {
        self.generation += 1;
        self.role = role;
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        self.settings
            .insert("is_superuser".into(), on_off(role == Role::Admin));
        for key in ["default_transaction_read_only", "transaction_read_only"] {
            self.settings
                .insert(key.into(), on_off(role == Role::Reader));
        }
    }

    /// True when the current statement's transaction may not write: inside a
    /// block, `transaction_read_only` (SET TRANSACTION READ ONLY, BEGIN READ
    /// ONLY); outside, `default_transaction_read_only`.
    pub fn read_only(&self) -> bool {
        let key = if self.in_transaction {
            "transaction_read_only"
        } else {
            "default_transaction_read_only"
        };
        self.settings.get(key).is_some_and(|v| is_on(v))
    }

    /// How long the session may sit idle inside a transaction block before
    /// the server ends it (`idle_in_transaction_session_timeout`; none at 0).
    pub fn idle_in_transaction_timeout(&self) -> Option<Duration> {
        self.get("idle_in_transaction_session_timeout")
            .and_then(|v| parse_timeout(v).ok())
            .flatten()
    }

    /// The connected database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The connection's process id as the protocol reported it (`pg_backend_pid()`).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Records the connection's process id.
    pub fn set_backend_pid(&mut self, pid: i32) {
        self.generation += 1;
        self.backend_pid = pid;
    }

    /// The columns of open cursor `name`.
    pub fn cursor_schema(&self, name: &str) -> Option<arrow::datatypes::SchemaRef> {
        self.cursors.get(name).map(|c| c.rows.schema())
    }

    /// The session's open cursors, by name.
    pub fn cursors(&mut self) -> &mut HashMap<String, Cursor> {
        &mut self.cursors
    }

    /// True between BEGIN and COMMIT/ROLLBACK (statements still apply at once).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// True when a statement of the open block failed: until COMMIT or
    /// ROLLBACK every other statement is refused with 25P02.
    pub fn transaction_failed(&self) -> bool {
        self.in_transaction && self.transaction_failed
    }

    /// Marks the open block failed (a statement in it had an error); nothing
    /// outside a block.
    pub fn fail_transaction(&mut self) {
        if self.in_transaction {
            self.transaction_failed = true;
        }
    }

    /// Back to the block's savepoint at `at` (kept): the block is healthy again
    /// and the cursors declared since are closed.
    pub(crate) fn rollback_to_savepoint(&mut self, at: usize) {
        self.savepoints.truncate(at + 1);
        self.cursors
            .retain(|_, c| !c.declared_in_block || c.savepoint_depth <= at);
        self.transaction_failed = false;
    }

    /// Releases the block's savepoint at `at` and those after it: what was
    /// declared inside them belongs to the savepoint before.
    pub(crate) fn release_savepoint(&mut self, at: usize) {
        self.savepoints.truncate(at);
        for cursor in self.cursors.values_mut() {
            cursor.savepoint_depth = cursor.savepoint_depth.min(at);
        }
    }

    /// Counts a write that has been applied inside the open block, which a
    /// ROLLBACK then cannot undo. The block's later reads see it: they take
    /// new snapshots.
    pub fn record_write(&mut self) {
        if self.in_transaction {
            self.transaction_writes += 1;
            self.block_snapshots.0.clear();
        }
    }

    /// The snapshots the open block has read (empty outside a block).
    pub fn block_snapshots(
        &self,
    ) -> &HashMap<usize, std::sync::Arc<sluice_storage::TableSnapshot>> {
        &self.block_snapshots.0
    }

    /// Keeps the snapshots a statement of the open block read, for the next.
    pub fn keep_block_snapshots(
        &mut self,
        taken: HashMap<usize, std::sync::Arc<sluice_storage::TableSnapshot>>,
    ) {
        if self.in_transaction {
            self.block_snapshots.0.extend(taken);
        }
    }

    /// Writes applied since the block began.
    pub fn transaction_writes(&self) -> u64 {
        self.transaction_writes
    }

    /// The open block's savepoints, with the writes made before each.
    pub(crate) fn savepoints(&mut self) -> &mut Vec<(String, u64)> {
        &mut self.savepoints
    }

    /// Ends the open block, closing its cursors as PostgreSQL does: all but
    /// WITH HOLD ones at COMMIT, and those the block declared at ROLLBACK.
    pub(crate) fn end_block(&mut self, committed: bool) {
        self.cursors
            .retain(|_, c| c.hold && (committed || !c.declared_in_block));
        for cursor in self.cursors.values_mut() {
            cursor.declared_in_block = false;
        }
        self.set_in_transaction(false);
    }

    /// Starts or ends a transaction block; a new block's access mode is the
    /// session's default (`default_transaction_read_only`).
    pub(crate) fn set_in_transaction(&mut self, on: bool) {
        self.in_transaction = on;
        self.transaction_failed = false;
        self.transaction_writes = 0;
        self.savepoints.clear();
        self.block_snapshots.0.clear();
        let default = self
            .settings
            .get("default_transaction_read_only")
            .cloned()
            .unwrap_or_else(|| "off".into());
        self.settings
            .insert("transaction_read_only".into(), default);
    }

    /// The value of a setting, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings.get(&normalize(name)).map(String::as_str)
    }

    /// Every setting, by name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Changes a setting. `TimeZone` must name a zone PostgreSQL would accept; `statement_timeout`
    /// a duration (`'5s'`, `'250ms'`, `'0'` for none, a bare number is milliseconds).
    /// Custom settings (`prefix.name`) are accepted as PostgreSQL accepts them.
    ///
    /// # Errors
    /// 42704 for an unknown name, 55P02 for a read-only one, 22023 for a bad value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let key = normalize(name);
        if READ_ONLY.contains(&key.as_str()) {
            return Err(Error::InvalidParameter(format!(
                "parameter \"{key}\" cannot be changed"
            )));
        }
        if !self.settings.contains_key(&key) && !key.contains('.') {
            return Err(Error::UnknownSetting(key));
        }
        let value = match key.as_str() {
            "timezone" => {
                parse_zone(value)?;
                value.to_string()
            }
            "statement_timeout" | "idle_in_transaction_session_timeout" => {
                parse_timeout(value)?;
                value.to_string()
            }
            "search_path" => value.to_string(),
            _ => value.to_string(),
        };
        if key == "statement_timeout" {
            self.timeout_set = true;
        }
        self.generation += 1;
        self.settings.insert(key, value);
        Ok(())
    }

    /// Restores a setting (`RESET x`) or all of them (`RESET ALL`, `DISCARD ALL`).
    pub fn reset(&mut self, name: Option<&str>) {
        self.generation += 1;
        let mut fresh = Session::new(self.base.clone(), &self.user, &self.database);
        fresh.backend_pid = self.backend_pid;
        fresh.set_role(self.role);
        if name.is_none_or(|n| normalize(n) == "statement_timeout") {
            self.timeout_set = false;
        }
        match name {
            None => self.settings = fresh.settings,
            Some(n) => {
                let key = normalize(n);
                match fresh.settings.get(&key) {
                    Some(v) => {
                        self.settings.insert(key, v.clone());
                    }
                    None => {
                        self.settings.remove(&key);
                    }
                }
            }
        }
    }

    /// The limits for the next statement: the base limits with this session's time
    /// zone and statement timeout applied.
    pub fn query_options(&self) -> QueryOptions {
        let mut o = self.base.clone();
        if let Some(tz) = self.get("timezone") {
            o.zone = parse_zone(tz).unwrap_or(Zone::UTC);
        }
        // The base timeout applies until the session sets its own: its text form
        // (whole milliseconds) cannot carry every base value.
        if self.timeout_set {
            if let Some(Ok(t)) = self.get("statement_timeout").map(parse_timeout) {
                o.timeout = t;
            }
        }
        if let Some(max) = o.max_timeout {
            o.timeout = Some(o.timeout.map_or(max, |t| t.min(max)));
        }
        o
    }
}

fn normalize(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    match n.as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        _ => n,
    }
}

/// The zone a TimeZone value names (see [`Zone::parse`]).
fn parse_zone(v: &str) -> Result<Zone> {
    Zone::parse(v).ok_or_else(|| {
        Error::InvalidParameter(format!(
            "invalid value for parameter \"TimeZone\": \"{}\"",
            v.trim().trim_matches('\'')
        ))
    })
}

/// A statement_timeout value; `None` means no timeout.
/// A `statement_timeout` value as PostgreSQL writes it (`30s`, `500ms`, `5min`,
/// `1h`, a bare number of milliseconds); 0 is no timeout.
///
/// # Errors
/// 22023 for anything else.
pub fn parse_timeout(v: &str) -> Result<Option<Duration>> {
    let t = v.trim().trim_matches('\'').to_ascii_lowercase();
    let bad = || {
        Error::InvalidParameter(format!(
            "invalid value for parameter \"statement_timeout\": \"{v}\""
        ))
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(bad()),
    };
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_apply_to_statement_options() {
        let mut s = Session::new(QueryOptions::default(), "u", "d");
        assert_eq!(s.get("TimeZone"), Some("UTC"));
        s.set("TimeZone", "+02").unwrap();
        s.set("statement_timeout", "250ms").unwrap();
        let o = s.query_options();
        assert_eq!(o.zone, Zone::Fixed(7200));
        assert_eq!(o.timeout, Some(Duration::from_millis(250)));
        s.set("statement_timeout", "0").unwrap();
        assert_eq!(s.query_options().timeout, None);
        assert!(matches!(
            s.set("nonsense", "1"),
            Err(Error::UnknownSetting(_))
        ));
        assert!(s.set("TimeZone", "Mars/Olympus").is_err());
        assert!(s.set("server_version", "16").is_err());
        s.set("myapp.tenant", "7").unwrap();
        s.reset(None);
        assert_eq!(s.get("timezone"), Some("UTC"));
        assert_eq!(s.get("myapp.tenant"), None);
    }
}
