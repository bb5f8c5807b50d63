//! The HTTP endpoint: `GET /health` and `GET /metrics` (Prometheus text). Two
//! fixed routes do not justify an HTTP framework's dependency tree, so requests
//! are read and answered by hand here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Database;

/// Serves health checks and metrics of `db` until `stop` is set.
pub async fn serve(listener: TcpListener, db: Arc<Database>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(socket, Arc::clone(&db)));
    }
}

/// `ok`, or `degraded` with every quarantined segment (its rows are missing
/// from answers until it is restored or salvaged).
fn health(db: &Database) -> String {
    let mut lines = Vec::new();
    for t in db.engine().catalog().tables() {
        for (file, error) in t.quarantined() {
            lines.push(format!("quarantined {}/{file}: {error}", t.name()));
        }
    }
    if lines.is_empty() {
        "ok\n".into()
    } else {
        format!("degraded\n{}\n", lines.join("\n"))
    }
}

async fn answer(mut socket: TcpStream, db: Arc<Database>) {
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
        ("GET", "/health") => ("200 OK", health(&db), "text/plain"),
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
