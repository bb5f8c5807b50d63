//! The dashboards end to end: `POST /query` against the real server with the
//! same users as the PostgreSQL side, and `sluice demo` serving live data
//! from its in-process broker to a real PostgreSQL client.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::{passwd, start_with, try_connect};

/// `POST path` with `body` (and HTTP Basic `auth`): the status code, the
/// headers and the body.
pub(crate) fn http_post(
    port: u16,
    path: &str,
    body: &str,
    auth: Option<(&str, &str)>,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http");
    let authorization = auth
        .map(|(u, p)| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("authorization: Basic {token}\r\n")
        })
        .unwrap_or_default();
    // A refused body may be cut short by the server's answer: read it anyway.
    let _ = write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{authorization}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_query_answers_json_as_the_same_users_and_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let users = format!(
        "{}{}",
        passwd("ana", "adm1n", "admin"),
        passwd("rita", "r3ad", "reader")
    );
    std::fs::write(&config, users).unwrap();
    let server = start_with(&["--config", config.to_str().unwrap()]);
    let admin = try_connect(server.pg_port, "ana", Some("adm1n"))
        .await
        .unwrap();
    admin
        .batch_execute(
            "CREATE TABLE sales (ts TIMESTAMP, shop BIGINT, item TEXT, amount NUMERIC(10, 2), paid BOOLEAN) \
             WITH (time_column = 'ts', retention = 'none'); \
             INSERT INTO sales VALUES ('2024-05-01 12:00', 1, 'tea', 3.50, true), \
             ('2024-05-01 12:05', 1, 'cake', 4.10, false), ('2024-05-01 12:10', 2, 'tea', 3.50, true)",
        )
        .await
        .unwrap();
    let port = server.http_port;
    let select = json!({
        "sql": "SELECT item, count(*) AS n, sum(amount) AS total, bool_and(paid) AS paid, min(ts) AS first \
                FROM sales WHERE shop = $1 AND item LIKE $2 GROUP BY item ORDER BY item",
        "params": [1, "%"],
    })
    .to_string();

    // No credentials, or the wrong password: 401 with a Basic challenge.
    let (status, head, body) = http_post(port, "/query", &select, None);
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{head}"
    );
    let (status, _, body) = http_post(port, "/query", &select, Some(("rita", "wrong")));
    assert_eq!(status, 401);
    assert_eq!(json_body(&body)["sqlstate"], "28P01");
    let (status, _, _) = http_post(port, "/query", &select, Some(("nobody", "r3ad")));
    assert_eq!(status, 401);

    // The reader's rows: typed JSON, NUMERIC exact as text, parameters bound.
    let (status, _, body) = http_post(port, "/query", &select, Some(("rita", "r3ad")));
    assert_eq!(status, 200, "{body}");
    let answer = json_body(&body);
    assert_eq!(
        answer["columns"],
        json!([
            {"name": "item", "type": "text"}, {"name": "n", "type": "int8"},
            {"name": "total", "type": "numeric"}, {"name": "paid", "type": "bool"},
            {"name": "first", "type": "timestamp"}
        ])
    );
    assert_eq!(
        answer["rows"],
        json!([
            ["cake", 1, "4.10", false, "2024-05-01 12:05:00"],
            ["tea", 1, "3.50", true, "2024-05-01 12:00:00"]
        ])
    );
    assert_eq!(answer["row_count"], 2);

    // Read-only whatever the role: an admin's DELETE is refused, nothing lost.
    for sql in [
        "DELETE FROM sales",
        "INSERT INTO sales VALUES ('2024-05-01 13:00', 3, 'x', 1, true)",
        "DROP TABLE sales",
        "EXPLAIN ANALYZE DELETE FROM sales",
    ] {
        let (status, _, body) = http_post(
            port,
            "/query",
            &json!({ "sql": sql }).to_string(),
            Some(("ana", "adm1n")),
        );
        assert_eq!(status, 403, "{sql}: {body}");
        assert_eq!(json_body(&body)["sqlstate"], "42501", "{sql}");
    }
    let n: i64 = admin
        .query_one("SELECT count(*) FROM sales", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // Errors carry the SQLSTATE PostgreSQL would send.
    let reader = Some(("rita", "r3ad"));
    for (request, sqlstate) in [
        (json!({"sql": "SELECT * FROM nope"}), "42P01"),
        (json!({"sql": "SELECT 1; SELECT 2"}), "42601"),
        (json!({"sql": "SELECT $1::int"}), "08P01"),
        (json!({"sql": "SELECT $1::int", "params": ["x"]}), "22P02"),
        (json!({"sql": "SELECT $1::int", "params": [[1]]}), "22P02"),
        (json!({"params": []}), "22023"),
    ] {
        let (status, _, body) = http_post(port, "/query", &request.to_string(), reader);
        assert_eq!(status, 400, "{request}: {body}");
        assert_eq!(json_body(&body)["sqlstate"], sqlstate, "{request}: {body}");
    }
    let (status, _, _) = http_post(port, "/query", "{not json", reader);
    assert_eq!(status, 400);
    let (status, _, _) = http_post(port, "/query", &"x".repeat(2 << 20), reader);
    assert_eq!(status, 413);
    // Without --dashboard there is no page.
    assert!(crate::http_get(port, "/").starts_with("HTTP/1.1 404"));
}

/// A running `sluice demo`; interrupted (as Ctrl-C) when dropped.
struct Demo {
    child: std::process::Child,
    pg_port: u16,
    http_port: u16,
    data_dir: String,
}

impl Demo {
    fn start(rate: u64) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "demo",
                "--pg-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .args(["--rate", &rate.to_string(), "--restaurants", "200"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sluice demo");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // The help comes first, then "sluice 0.1.0 serving DIR — PostgreSQL on ...".
        while !line.contains("PostgreSQL on") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the demo ended");
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let port_after = |marker: &str| -> u16 {
            let rest = &line[line.find(marker).unwrap() + marker.len()..];
            let addr = rest.split([',', ' ', '\n']).next().unwrap();
            addr.rsplit(':').next().unwrap().parse().unwrap()
        };
        let data_dir = line
            .split(" serving ")
            .nth(1)
            .and_then(|r| r.split(" — ").next())
            .unwrap()
            .to_string();
        Demo {
            pg_port: port_after("PostgreSQL on "),
            http_port: port_after("HTTP on "),
            data_dir,
            child,
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits: whether it exited with success.
    fn interrupt(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_live_dashboards_and_stops_cleanly() {
    let mut demo = Demo::start(600);
    let client = try_connect(demo.pg_port, "sluice", None).await.unwrap();
    let funnel = client
        .prepare(include_str!(
            "../../examples/dashboards/restaurant/funnel.sql"
        ))
        .await
        .unwrap();
    let snapshot = || async {
        let rows = client.query(&funnel, &[&1i64]).await.unwrap();
        rows.iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect::<Vec<_>>()
    };
    // Live orders (placed in the last seconds, after the day of history)
    // are queryable within the minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fresh: i64 = client
            .query_one(
                "SELECT count(*) FROM orders WHERE created_at >= now() - interval '3 seconds'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if fresh > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no live orders after a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The busiest restaurant's funnel moves within seconds.
    let first = snapshot().await;
    let mut moved = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if snapshot().await != first {
            moved = true;
            break;
        }
    }
    assert!(moved, "the funnel stayed at {first:?} for 10 s");

    // Every dashboard statement runs, over the protocol and over /query.
    for sql in [
        include_str!("../../examples/dashboards/restaurant/couriers_waiting.sql"),
        include_str!("../../examples/dashboards/restaurant/latest_ratings.sql"),
        include_str!("../../examples/dashboards/restaurant/top_items.sql"),
        include_str!("../../examples/dashboards/restaurant/prep_time.sql"),
        include_str!("../../examples/dashboards/restaurant/sales_today.sql"),
        include_str!("../../examples/dashboards/restaurant/daily_sales.sql"),
    ] {
        client.query(sql, &[&1i64]).await.unwrap();
        let (status, _, body) = http_post(
            demo.http_port,
            "/query",
            &json!({"sql": sql, "params": [1]}).to_string(),
            None,
        );
        assert_eq!(status, 200, "{sql}: {body}");
    }
    for sql in [
        include_str!("../../examples/dashboards/streaming/dau.sql"),
        include_str!("../../examples/dashboards/streaming/views_per_minute.sql"),
        include_str!("../../examples/dashboards/streaming/top_content.sql"),
        include_str!("../../examples/dashboards/streaming/session_duration.sql"),
    ] {
        assert!(!client.query(sql, &[]).await.unwrap().is_empty(), "{sql}");
    }
    // Sent twice is counted once: one row per order and per play.
    for (table, key) in [("orders", "order_id"), ("plays", "event_id")] {
        let row = client
            .query_one(
                &format!("SELECT count(*), count(DISTINCT {key}) FROM {table}"),
                &[],
            )
            .await
            .unwrap();
        let (rows, keys): (i64, i64) = (row.get(0), row.get(1));
        assert!(
            rows > 0 && rows == keys,
            "{table}: {rows} rows, {keys} keys"
        );
    }
    assert!(crate::http_get(demo.http_port, "/").contains("restaurant partner portal"));

    drop(client);
    assert!(demo.interrupt(), "the demo did not exit cleanly on SIGINT");
    assert!(
        !std::path::Path::new(&demo.data_dir).exists(),
        "{} left behind",
        demo.data_dir
    );
}
