//! The HTTP endpoint: `GET /health` (liveness), `GET /ready` (readiness), both
//! JSON, `GET /metrics` (Prometheus text), `POST /query` (one read-only
//! statement as JSON, [`super::http_query`]) and, when enabled, the
//! restaurant dashboard page at `GET /` ([`super::dashboard`]). A handful of
//! fixed routes, one request per connection, do not justify an HTTP
//! framework's dependency tree, so requests are read and answered by hand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http_query::{QueryAccess, MAX_BODY_BYTES};
use crate::Database;

/// What the HTTP endpoint serves.
pub struct HttpState {
    /// The database.
    pub db: Arc<Database>,
    /// Set once a shutdown has begun: `/ready` answers 503.
    pub stopping: Arc<AtomicBool>,
    /// Who may use `/query`.
    pub access: QueryAccess,
    /// Serve the dashboard page at `/`.
    pub dashboard: bool,
}

/// Serves `state` on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(socket, Arc::clone(&state)));
    }
}

/// Longest request line and headers.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// A request's method, path (without its query string), `Authorization`
/// header and body.
struct Request {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// Why a request could not be read: the status to answer with, if any.
enum Unreadable {
    /// The client went away or was too slow: nothing to answer.
    Gone,
    /// Answer with this status and message.
    Answer(&'static str, &'static str),
}

/// Reads one request: the head within 5 seconds, the body (at most
/// [`MAX_BODY_BYTES`], by `Content-Length`) within 10 more.
async fn read_request(socket: &mut TcpStream) -> Result<Request, Unreadable> {
    let mut buf = Vec::with_capacity(2048);
    let head_end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(end + 4);
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(Unreadable::Answer(
                    "431 Request Header Fields Too Large",
                    "request head too large\n",
                ));
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(Unreadable::Gone),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .map_err(|_| Unreadable::Gone)??;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut length = 0usize;
    let mut authorization = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| Unreadable::Answer("400 Bad Request", "bad Content-Length\n"))?
            }
            "authorization" => authorization = Some(value.trim().to_string()),
            "transfer-encoding" => {
                return Err(Unreadable::Answer(
                    "411 Length Required",
                    "send the body with Content-Length\n",
                ))
            }
            _ => {}
        }
    }
    if length > MAX_BODY_BYTES {
        return Err(Unreadable::Answer(
            "413 Content Too Large",
            "the body is larger than 1MB\n",
        ));
    }
    let mut body = buf[head_end..].to_vec();
    tokio::time::timeout(Duration::from_secs(10), async {
        while body.len() < length {
            let mut chunk = vec![0u8; (length - body.len()).min(64 << 10)];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(Unreadable::Gone),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| Unreadable::Gone)??;
    body.truncate(length);
    Ok(Request {
        method,
        path,
        authorization,
        body,
    })
}

/// Liveness: the process answers. `status` is `ok`, or `degraded` with every
/// quarantined segment (its rows are missing from answers until it is
/// restored or salvaged).
fn health(db: &Database) -> String {
    let quarantined: Vec<serde_json::Value> = db
        .engine()
        .catalog()
        .tables()
        .iter()
        .flat_map(|t| {
            t.quarantined()
                .into_iter()
                .map(|(file, error)| {
                    serde_json::json!({"table": t.name(), "file": file, "error": error})
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let status = if quarantined.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    serde_json::json!({"status": status, "quarantined": quarantined}).to_string() + "\n"
}

/// Readiness, and whether it holds: not shutting down, the data directory
/// writable, no Kafka partition failed. Lists each source partition's state.
fn ready(db: &Database, stopping: bool) -> (bool, String) {
    let probe = db.engine().catalog().dir().join(".ready-probe");
    let writable = std::fs::write(&probe, b"ok").is_ok() && std::fs::remove_file(&probe).is_ok();
    let mut partitions = Vec::new();
    let mut failed = false;
    for t in db.engine().catalog().tables() {
        for (partition, status) in t.source_status() {
            failed |= status.state == "failed";
            partitions.push(serde_json::json!({
                "table": t.name(),
                "partition": partition,
                "state": status.state,
            }));
        }
    }
    let ready = !stopping && writable && !failed;
    let body = serde_json::json!({
        "ready": ready,
        "shutting_down": stopping,
        "storage_writable": writable,
        "ingestion": partitions,
    });
    (ready, body.to_string() + "\n")
}

async fn answer(mut socket: TcpStream, state: Arc<HttpState>) {
    let request = match read_request(&mut socket).await {
        Ok(r) => r,
        Err(Unreadable::Gone) => return,
        Err(Unreadable::Answer(status, body)) => {
            respond(&mut socket, status, "text/plain", body.as_bytes(), &[]).await;
            drain(&mut socket).await;
            return;
        }
    };
    let db = Arc::clone(&state.db);
    let (status, body, content_type) = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/health") => ("200 OK", health(&db), "application/json"),
        ("GET", "/ready") => {
            let stopping = state.stopping.load(Ordering::Relaxed);
            let (ok, body) = tokio::task::spawn_blocking(move || ready(&db, stopping))
                .await
                .unwrap_or_else(|e| (false, format!("{{\"ready\": false, \"error\": \"{e}\"}}\n")));
            let status = if ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, body, "application/json")
        }
        ("GET", "/metrics") => {
            let body = tokio::task::spawn_blocking(move || super::metrics::render(&db))
                .await
                .unwrap_or_else(|e| format!("# metrics failed: {e}\n"));
            ("200 OK", body, "text/plain; version=0.0.4")
        }
        ("POST", "/query") => {
            let state = Arc::clone(&state);
            // Waits its turn in the query pool as a protocol statement does.
            let slot = match &db.options().workers {
                Some(pool) => {
                    let never = std::sync::atomic::AtomicBool::new(false);
                    super::admission::admit(pool, &never, db.options().timeout)
                        .await
                        .map(Some)
                }
                None => Ok(None),
            };
            let slot = match slot {
                Ok(slot) => slot,
                Err(e) => {
                    let body =
                        serde_json::json!({"error": e.to_string(), "sqlstate": e.sqlstate()});
                    respond(
                        &mut socket,
                        "503 Service Unavailable",
                        "application/json",
                        format!("{body}\n").as_bytes(),
                        &[],
                    )
                    .await;
                    return;
                }
            };
            let answer = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                super::http_query::answer(
                    &state.db,
                    &state.access,
                    request.authorization.as_deref(),
                    &request.body,
                )
            })
            .await;
            let (status, body, challenge) = match answer {
                Ok(a) => (a.status, a.body.to_string() + "\n", a.challenge),
                Err(e) => (
                    "500 Internal Server Error",
                    serde_json::json!({"error": e.to_string(), "sqlstate": "XX000"}).to_string(),
                    false,
                ),
            };
            let headers: &[(&str, &str)] = if challenge {
                &[(
                    "www-authenticate",
                    "Basic realm=\"sluice\", charset=\"UTF-8\"",
                )]
            } else {
                &[]
            };
            respond(
                &mut socket,
                status,
                "application/json",
                body.as_bytes(),
                headers,
            )
            .await;
            return;
        }
        ("GET", "/" | "/index.html") if state.dashboard => (
            "200 OK",
            super::dashboard::page(),
            "text/html; charset=utf-8",
        ),
        ("GET", _) => ("404 Not Found", "not found\n".to_string(), "text/plain"),
        _ => (
            "405 Method Not Allowed",
            "method not allowed\n".to_string(),
            "text/plain",
        ),
    };
    respond(&mut socket, status, content_type, body.as_bytes(), &[]).await;
}

/// Reads and drops what the client still sends (the rest of a refused
/// body), for at most 2 seconds and 8MB: closing with unread bytes would
/// reset the connection and lose the answer before the client reads it.
async fn drain(socket: &mut TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut chunk = [0u8; 16 << 10];
        let mut left = 8usize << 20;
        while left > 0 {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Writes a whole response and closes.
async fn respond(
    socket: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body).await;
    let _ = socket.shutdown().await;
}
