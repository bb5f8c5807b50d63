//! Live sessions: what `pg_stat_activity` lists and what `pg_cancel_backend`
//! and `pg_terminate_backend` act on. The server registers each connection
//! when its session starts and keeps its state and current statement up to
//! date; the registry is process-wide, as the sessions of one server are.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

/// Ends a session's connection, its client told why with a FATAL error of
/// this SQLSTATE and message.
pub type Terminate = Box<dyn Fn((&'static str, &'static str)) + Send + Sync>;

/// The process's live sessions.
pub fn activity() -> &'static Activity {
    static ACTIVITY: OnceLock<Activity> = OnceLock::new();
    ACTIVITY.get_or_init(Activity::default)
}

/// Sessions by backend process id.
#[derive(Default)]
pub struct Activity {
    sessions: Mutex<BTreeMap<i32, Arc<SessionActivity>>>,
}

/// Who a session is: fixed from its start.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// The backend process id the client was given.
    pub pid: i32,
    /// The connected user.
    pub user: String,
    /// The database name the client asked for.
    pub database: String,
    /// `application_name` at startup.
    pub application_name: String,
    /// The client's address.
    pub client_addr: String,
    /// When the connection started, microseconds since the epoch.
    pub backend_start: i64,
}

/// One session as `pg_stat_activity` shows it, and the means to stop it.
pub struct SessionActivity {
    /// Who it is.
    pub info: SessionInfo,
    now: Mutex<Now>,
    /// Closes the connection (set by the server), telling an idle client why
    /// with a FATAL error of this SQLSTATE and message.
    terminate: Terminate,
}

/// What a session is doing.
#[derive(Clone, Debug, Default)]
struct Now {
    state: &'static str,
    query: String,
    query_start: Option<i64>,
    /// The running statement's cancel flag.
    cancel: Option<Arc<AtomicBool>>,
    /// Idle in a transaction block until then (µs since the epoch): past it
    /// the session is ended (`idle_in_transaction_session_timeout`).
    idle_deadline: Option<i64>,
}

/// One row of `pg_stat_activity`.
#[derive(Clone, Debug)]
pub struct ActivityRow {
    /// Who the session is.
    pub info: SessionInfo,
    /// `active`, `idle` or `idle in transaction`.
    pub state: &'static str,
    /// The current (or last) statement.
    pub query: String,
    /// When it started (µs since the epoch).
    pub query_start: Option<i64>,
}

/// Unregisters a session when its connection ends.
pub struct Registered {
    pid: i32,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut s) = activity().sessions.lock() {
            s.remove(&self.pid);
        }
    }
}

impl SessionActivity {
    /// A session that has not run anything yet; `terminate` closes its
    /// connection.
    pub fn new(
        pid: i32,
        user: &str,
        database: &str,
        application_name: &str,
        client_addr: &str,
        terminate: Terminate,
    ) -> SessionActivity {
        SessionActivity {
            info: SessionInfo {
                pid,
                user: user.to_string(),
                database: database.to_string(),
                application_name: application_name.to_string(),
                client_addr: client_addr.to_string(),
                backend_start: now_micros(),
            },
            now: Mutex::new(Now {
                state: "idle",
                ..Now::default()
            }),
            terminate,
        }
    }

    /// A statement starts: `query` is its text, `cancel` its cancel flag.
    pub fn started(&self, query: String, cancel: Arc<AtomicBool>) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = Now {
            state: "active",
            query,
            query_start: Some(now_micros()),
            cancel: Some(cancel),
            idle_deadline: None,
        };
    }

    /// The statement ended; the session waits, inside a block or not. Inside
    /// one, `idle_timeout` is how long it may wait before it is ended.
    pub fn finished(&self, in_transaction: bool, idle_timeout: Option<std::time::Duration>) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        now.state = if in_transaction {
            "idle in transaction"
        } else {
            "idle"
        };
        now.cancel = None;
        now.idle_deadline = match (in_transaction, idle_timeout) {
            (true, Some(t)) => Some(now_micros() + t.as_micros() as i64),
            _ => None,
        };
    }

    /// Ends the session: stops a running statement and closes the
    /// connection, its client told why (`fatal`).
    fn end(&self, fatal: (&'static str, &'static str)) {
        let now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flag) = &now.cancel {
            crate::pool::cancel(flag);
        }
        drop(now);
        (self.terminate)(fatal);
    }
}

impl Activity {
    /// Registers a session until the returned value is dropped.
    pub fn register(&self, session: SessionActivity) -> (Arc<SessionActivity>, Registered) {
        let pid = session.info.pid;
        let session = Arc::new(session);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pid, Arc::clone(&session));
        (session, Registered { pid })
    }

    /// Every live session, by pid.
    pub fn rows(&self) -> Vec<ActivityRow> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .values()
            .map(|s| {
                let now = s.now.lock().unwrap_or_else(|p| p.into_inner()).clone();
                ActivityRow {
                    info: s.info.clone(),
                    state: now.state,
                    query: now.query,
                    query_start: now.query_start,
                }
            })
            .collect()
    }

    fn find(&self, pid: i32, requester: &str, admin: bool) -> Option<Arc<SessionActivity>> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(&pid)
            .filter(|s| admin || s.info.user == requester)
            .cloned()
    }

    /// `pg_cancel_backend(pid)`: stops the session's running statement (57014).
    /// False when there is no such session the requester may signal (an admin
    /// any, another user only their own).
    pub fn cancel(&self, pid: i32, requester: &str, admin: bool) -> bool {
        let Some(s) = self.find(pid, requester, admin) else {
            return false;
        };
        let now = s.now.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flag) = &now.cancel {
            crate::pool::cancel(flag);
        }
        true
    }

    /// `pg_terminate_backend(pid)`: stops the running statement and closes
    /// the connection. False as for [`Activity::cancel`].
    pub fn terminate(&self, pid: i32, requester: &str, admin: bool) -> bool {
        let Some(s) = self.find(pid, requester, admin) else {
            return false;
        };
        s.end((
            "57P01",
            "terminating connection due to administrator command",
        ));
        true
    }

    /// Ends every session idle in a transaction block past its deadline
    /// (25P03, as PostgreSQL's `idle_in_transaction_session_timeout`); how many.
    pub fn end_idle_in_transaction(&self) -> usize {
        let now = now_micros();
        let expired: Vec<Arc<SessionActivity>> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|s| {
                let n = s.now.lock().unwrap_or_else(|p| p.into_inner());
                n.idle_deadline.is_some_and(|d| d <= now)
            })
            .cloned()
            .collect();
        for s in &expired {
            s.end((
                "25P03",
                "terminating connection due to idle-in-transaction timeout",
            ));
        }
        expired.len()
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
