//! The HTTP endpoint: `GET /health` (liveness), `GET /ready` (readiness), both
//! JSON, and `GET /metrics` (Prometheus text). Three fixed routes do not
//! justify an HTTP framework's dependency tree, so requests are read and
//! answered by hand here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Database;

/// Serves health checks and metrics of `db`; once `stopping` is set (a
/// shutdown has begun) `/ready` answers 503.
pub async fn serve(listener: TcpListener, db: Arc<Database>, stopping: Arc<AtomicBool>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(socket, Arc::clone(&db), Arc::clone(&stopping)));
    }
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

async fn answer(mut socket: TcpStream, db: Arc<Database>, stopping: Arc<AtomicBool>) {
    let mut buf = [0u8; 2048];
    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf))
        .await
    {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buf[..n]);
    let line = request.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, body, content_type) = match (method, path) {
        ("GET", "/health") => ("200 OK", health(&db), "application/json"),
        ("GET", "/ready") => {
            let stopping = stopping.load(Ordering::Relaxed);
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
        ("GET", _) => ("404 Not Found", "not found\n".to_string(), "text/plain"),
        _ => (
            "405 Method Not Allowed",
            "method not allowed\n".to_string(),
            "text/plain",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}
