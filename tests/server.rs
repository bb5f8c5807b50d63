//! The PostgreSQL protocol server, end to end: the real `sluice serve` binary on a
//! free port, driven by tokio-postgres (extended protocol, binary results), and
//! fed by a Kafka broker (`kafka`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

#[path = "dashboard/mod.rs"]
mod dashboard;
#[path = "kafka/mod.rs"]
mod kafka;
#[path = "params/matrix.rs"]
mod param_matrix;

/// A running `sluice serve`; killed when dropped.
struct Server {
    child: Child,
    pg_port: u16,
    http_port: u16,
    /// The data directory, when the server owns a fresh one.
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Ends the server process with SIGKILL, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    start_with(&[])
}

fn start_with(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_in(dir.path(), extra);
    server._dir = Some(dir);
    server
}

/// Starts `sluice serve` on the data directory `dir`, which outlives the server.
fn start_in(dir: &std::path::Path, extra: &[&str]) -> Server {
    // Loopback unless `extra` names the address.
    let pg_addr: &[&str] = if extra.contains(&"--pg-addr") {
        &[]
    } else {
        &["--pg-addr", "127.0.0.1:0"]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .args(pg_addr)
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sluice serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "sluice 0.1.0 serving DIR — PostgreSQL on 127.0.0.1:P, HTTP on 127.0.0.1:Q"
    let port_after = |marker: &str| -> u16 {
        let rest = &line[line.find(marker).unwrap_or_else(|| panic!("{line}")) + marker.len()..];
        let addr = rest.split([',', ' ', '\n']).next().unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    };
    Server {
        pg_port: port_after("PostgreSQL on "),
        http_port: port_after("HTTP on "),
        child,
        _dir: None,
    }
}

/// The raw HTTP response to `GET path`.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    body
}

async fn connect(port: u16) -> Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=dashboard dbname=sluice"),
        NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(conn);
    client
}

async fn setup(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE orders (ts TIMESTAMP, placed TIMESTAMPTZ, restaurant_id BIGINT, qty INTEGER, \
             item TEXT, amount DOUBLE PRECISION, paid BOOLEAN) WITH (time_column = 'ts', retention = 'none')",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_every_type_round_trip_in_binary() {
    let server = start();
    let client = connect(server.pg_port).await;
    setup(&client).await;

    let ts = NaiveDate::from_ymd_opt(2024, 5, 1)
        .unwrap()
        .and_hms_micro_opt(12, 30, 15, 250_000)
        .unwrap();
    let placed = Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap();
    let insert = client
        .prepare("INSERT INTO orders VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .await
        .unwrap();
    let types: Vec<_> = insert
        .params()
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "timestamp",
            "timestamptz",
            "int8",
            "int4",
            "text",
            "float8",
            "bool"
        ]
    );
    for (i, item) in ["pizza", "soup", "pizza"].iter().enumerate() {
        let n = client
            .execute(
                &insert,
                &[
                    &ts,
                    &placed,
                    &7i64,
                    &(i as i32 + 1),
                    item,
                    &(10.5 * (i + 1) as f64),
                    &(i % 2 == 0),
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    client
        .execute("INSERT INTO orders (ts, item) VALUES ($1, NULL)", &[&ts])
        .await
        .unwrap();

    let row = client
        .query_one(
            "SELECT ts, placed, restaurant_id, qty, item, amount, paid FROM orders WHERE qty = $1",
            &[&2i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, NaiveDateTime>(0), ts);
    assert_eq!(row.get::<_, chrono::DateTime<Utc>>(1), placed);
    assert_eq!(row.get::<_, i64>(2), 7);
    assert_eq!(row.get::<_, i32>(3), 2);
    assert_eq!(row.get::<_, &str>(4), "soup");
    assert_eq!(row.get::<_, f64>(5), 21.0);
    assert!(!row.get::<_, bool>(6));

    // Parameter types are inferred from their context.
    let stmt = client
        .prepare("SELECT item, count(*) AS n, sum(amount) FROM orders WHERE restaurant_id = $1 AND ts >= $2 GROUP BY item ORDER BY item")
        .await
        .unwrap();
    let names: Vec<_> = stmt.params().iter().map(|t| t.name().to_string()).collect();
    assert_eq!(names, ["int8", "timestamp"]);
    let cols: Vec<_> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().name().to_string()))
        .collect();
    assert_eq!(
        cols,
        [
            ("item".into(), "text".into()),
            ("n".into(), "int8".into()),
            ("sum".into(), "float8".into())
        ]
    );
    let rows = client.query(&stmt, &[&7i64, &ts]).await.unwrap();
    let got: Vec<(String, i64, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("pizza".to_string(), 2, 42.0),
            ("soup".to_string(), 1, 21.0)
        ]
    );

    // NULLs, dates and intervals.
    let row = client
        .query_one(
            "SELECT item IS NULL, amount, ts::date, ts - TIMESTAMP '2024-05-01 00:00' FROM orders WHERE item IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<f64>>(1), None);
    assert_eq!(
        row.get::<_, NaiveDate>(2),
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
    );
    // interval comes back in PostgreSQL's binary layout: micros, days, months.
    let raw: Vec<u8> = client
        .query_one("SELECT INTERVAL '1 day 02:00:00'::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .into_bytes();
    assert_eq!(raw, b"1 day 02:00:00");
    let _ = row;

    // Arrays in binary, typed as PostgreSQL types them.
    let row = client
        .query_one(
            "SELECT ARRAY[1, 2, 3], ARRAY['a b', NULL], ARRAY[1.5::float8], ARRAY[7::bigint], \
             string_to_array('', ','), array_agg(amount ORDER BY amount) FROM orders WHERE amount > 20",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.columns()[0].type_(),
        &tokio_postgres::types::Type::INT4_ARRAY
    );
    assert_eq!(row.get::<_, Vec<i32>>(0), [1, 2, 3]);
    assert_eq!(
        row.get::<_, Vec<Option<String>>>(1),
        [Some("a b".to_string()), None]
    );
    assert_eq!(row.get::<_, Vec<f64>>(2), [1.5]);
    assert_eq!(row.get::<_, Vec<i64>>(3), [7]);
    assert_eq!(row.get::<_, Vec<String>>(4), Vec::<String>::new());
    assert_eq!(
        row.columns()[5].type_(),
        &tokio_postgres::types::Type::FLOAT8_ARRAY
    );
    assert!(!row.get::<_, Vec<f64>>(5).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_errors_and_session_statements() {
    let server = start();
    let client = connect(server.pg_port).await;
    setup(&client).await;

    let msgs = client
        .simple_query("SELECT 1 AS one; SELECT 'x' AS two")
        .await
        .unwrap();
    let values: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["1", "x"]);

    for (sql, code) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM missing", "42P01"),
        ("SELECT nope FROM orders", "42703"),
        ("SELECT 1 / 0", "22012"),
        ("SET nonsense = 1", "42704"),
    ] {
        let err = client.query(sql, &[]).await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some(code), "{sql}: {err}");
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some(code), "{sql}: {err}");
    }
    // After errors the connection still works.
    assert_eq!(
        client
            .query_one("SELECT 41 + 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );

    // Session settings apply to this connection only.
    client
        .batch_execute("SET TimeZone = 'Europe/Berlin'")
        .await
        .unwrap();
    let shown: String = client.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_eq!(shown, "Europe/Berlin");
    let text = client
        .simple_query("SELECT TIMESTAMPTZ '2024-01-01 10:00:00Z'")
        .await
        .unwrap();
    let SimpleQueryMessage::Row(r) = &text[1] else {
        panic!("{text:?}")
    };
    assert_eq!(r.get(0), Some("2024-01-01 11:00:00+01"));
    let other = connect(server.pg_port).await;
    let shown: String = other.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_eq!(shown, "UTC");

    let user: String = client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "dashboard");
    client
        .batch_execute("BEGIN; SELECT 1; COMMIT; START TRANSACTION; ROLLBACK; DISCARD ALL")
        .await
        .unwrap();
    let shown: String = client.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_eq!(shown, "UTC", "DISCARD ALL resets settings");

    // statement_timeout is applied.
    load_rows(&client, 3000).await;
    client
        .batch_execute("SET statement_timeout = '1ms'")
        .await
        .unwrap();
    let err = client
        .query(
            "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");

    let health = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).map(|mut s| {
        use std::io::{Read, Write};
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    });
    assert!(health.unwrap().starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_set_config_unnest_and_error_positions() {
    let server = start();
    let client = connect(server.pg_port).await;
    setup(&client).await;
    load_rows(&client, 10).await;
    let rows = |msgs: Vec<SimpleQueryMessage>| -> Vec<String> {
        msgs.into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            })
            .collect()
    };
    client
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT qty FROM orders ORDER BY qty")
        .await
        .unwrap();
    assert_eq!(
        rows(client.simple_query("FETCH 3 FROM c").await.unwrap()),
        ["0", "1", "2"]
    );
    assert_eq!(
        rows(client.simple_query("FETCH NEXT FROM c").await.unwrap()),
        ["3"]
    );
    assert_eq!(
        rows(client.simple_query("FETCH ALL FROM c").await.unwrap()).len(),
        6
    );
    assert!(rows(client.simple_query("FETCH 5 FROM c").await.unwrap()).is_empty());
    client.batch_execute("CLOSE c; COMMIT").await.unwrap();
    let err = client.simple_query("FETCH 1 FROM c").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("34000"));

    let v: String = client
        .query_one("SELECT set_config('application_name', 'board', false)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "board");
    let shown: String = client
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "board");

    assert_eq!(
        rows(
            client
                .simple_query("SELECT x FROM unnest(string_to_array('a,b', ',')) AS x")
                .await
                .unwrap()
        ),
        ["a", "b"]
    );

    let err = client
        .simple_query("SELECT 1 FROM orders WHER x")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42601");
    assert_eq!(
        db.position(),
        Some(&tokio_postgres::error::ErrorPosition::Original(27))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_oids_have_the_oid_type() {
    let server = start();
    let client = connect(server.pg_port).await;
    setup(&client).await;
    let row = client
        .query_one(
            "SELECT c.oid, 'orders'::regclass, a.atttypid, format_type(a.atttypid, a.atttypmod) \
             FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE c.relname = 'orders' AND a.attname = 'qty'",
            &[],
        )
        .await
        .unwrap();
    let oid: u32 = row.get(0);
    assert_eq!(row.get::<_, u32>(1), oid);
    assert_eq!(row.get::<_, u32>(2), 23);
    assert_eq!(row.get::<_, &str>(3), "integer");
    let stmt = client
        .prepare("SELECT relname FROM pg_class WHERE oid = $1")
        .await
        .unwrap();
    assert_eq!(stmt.params()[0].name(), "oid");
    let name: String = client.query_one(&stmt, &[&oid]).await.unwrap().get(0);
    assert_eq!(name, "orders");
}

async fn try_connect(
    port: u16,
    user: &str,
    password: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = format!("host=127.0.0.1 port={port} user={user} dbname=sluice");
    if let Some(p) = password {
        config.push_str(&format!(" password={p}"));
    }
    let (client, conn) = tokio_postgres::connect(&config, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A user's `[users.NAME]` entry, as `sluice passwd` prints it for `password`.
fn passwd(user: &str, password: &str, role: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["passwd", user, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sluice passwd");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `sluice serve` with `extra` that must refuse to start: its error output.
fn refused_start(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "sluice serve {extra:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The SCRAM server-first message (`r=...,s=SALT,i=N`) the server sends `user`,
/// spoken over a raw socket; `Err` with the message type when it sends
/// something else instead (an error).
fn scram_server_first(port: u16, user: &str) -> Result<String, char> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for part in ["user", user, "database", "sluice"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend(body);
    s.write_all(&msg).unwrap();
    let read_message = |s: &mut std::net::TcpStream| -> (char, Vec<u8>) {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = vec![0u8; len - 4];
        s.read_exact(&mut data).unwrap();
        (head[0] as char, data)
    };
    let (kind, data) = read_message(&mut s);
    assert_eq!(
        (kind, &data[..4]),
        ('R', &10i32.to_be_bytes()[..]),
        "AuthenticationSASL"
    );
    let first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend((first.len() as i32).to_be_bytes());
    body.extend(first);
    let mut msg = vec![b'p'];
    msg.extend(((body.len() + 4) as i32).to_be_bytes());
    msg.extend(body);
    s.write_all(&msg).unwrap();
    match read_message(&mut s) {
        ('R', data) if data[..4] == 11i32.to_be_bytes() => {
            Ok(String::from_utf8_lossy(&data[4..]).into_owned())
        }
        (kind, _) => Err(kind),
    }
}

/// The salt (`s=`) of a SCRAM server-first message.
fn salt_of(server_first: &str) -> String {
    server_first
        .split(',')
        .find_map(|p| p.strip_prefix("s="))
        .unwrap_or_default()
        .to_string()
}

async fn sqlstate(client: &Client, sql: &str) -> Option<String> {
    client
        .batch_execute(sql)
        .await
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_authenticate_with_verifiers_and_roles_limit_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    // carol's verifier is PostgreSQL 15's own for "s3cret" (pg_authid).
    let users = format!(
        "{}{}[users]\ncarol = \"SCRAM-SHA-256$4096:CiLKggUUt4E/dqoEfaQkxQ==$CPjsz09DtjxuF7vkcpFmde2r0oOPXipkNRY9lkrCvuM=:c4qSNTNtFT/jhda2ckverW5z/WVx3f3X+g+o1Mt/skU=\"\n",
        passwd("alice", "r3ad", "reader"),
        passwd("bob", "wr1te", "writer"),
    );
    std::fs::write(&config, users).unwrap();
    let server = start_with(&["--config", config.to_str().unwrap()]);
    let port = server.pg_port;

    let carol = try_connect(port, "carol", Some("s3cret")).await.unwrap();
    carol
        .batch_execute("CREATE TABLE t (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', retention = 'none'); INSERT INTO t VALUES ('2024-01-01', 1)")
        .await
        .unwrap();

    // A reader reads, and nothing else.
    let alice = try_connect(port, "alice", Some("r3ad")).await.unwrap();
    let n: i64 = alice
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    for sql in [
        "INSERT INTO t VALUES ('2024-01-02', 2)",
        "COPY t FROM STDIN",
        "DROP TABLE t",
        "CREATE TABLE u (ts TIMESTAMP) WITH (time_column = 'ts')",
    ] {
        assert_eq!(
            sqlstate(&alice, sql).await.as_deref(),
            Some("42501"),
            "{sql}"
        );
    }
    let ro: String = alice
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ro, "on");

    // A writer inserts, but no DDL; a read-only transaction refuses its writes.
    let bob = try_connect(port, "bob", Some("wr1te")).await.unwrap();
    bob.batch_execute("INSERT INTO t VALUES ('2024-01-02', 2)")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(&bob, "DROP TABLE t").await.as_deref(),
        Some("42501")
    );
    bob.batch_execute("BEGIN READ ONLY").await.unwrap();
    assert_eq!(
        sqlstate(&bob, "INSERT INTO t VALUES ('2024-01-03', 3)")
            .await
            .as_deref(),
        Some("25006")
    );
    bob.batch_execute("ROLLBACK; BEGIN; SET TRANSACTION READ ONLY")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(&bob, "INSERT INTO t VALUES ('2024-01-03', 3)")
            .await
            .as_deref(),
        Some("25006")
    );
    bob.batch_execute("COMMIT; SET default_transaction_read_only = on")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(&bob, "INSERT INTO t VALUES ('2024-01-03', 3)")
            .await
            .as_deref(),
        Some("25006")
    );
    let n: i64 = carol
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "only bob's first insert landed");

    // A wrong password and an unknown user fail alike: names cannot be probed.
    let wrong = try_connect(port, "alice", Some("nope"))
        .await
        .err()
        .unwrap();
    let unknown = try_connect(port, "mallory", Some("nope"))
        .await
        .err()
        .unwrap();
    assert_eq!(wrong.code().map(|c| c.code()), Some("28P01"), "{wrong}");
    assert_eq!(unknown.code().map(|c| c.code()), Some("28P01"), "{unknown}");
    assert_eq!(
        wrong.to_string().replace("alice", "NAME"),
        unknown.to_string().replace("mallory", "NAME")
    );
    assert!(try_connect(port, "alice", None).await.is_err());
    // The exchange itself is the same: an unknown name gets a salt too, the
    // same one each time, as a real user's is.
    let known = scram_server_first(port, "carol").unwrap();
    assert_eq!(salt_of(&known), "CiLKggUUt4E/dqoEfaQkxQ==", "{known}");
    let decoy = scram_server_first(port, "mallory").expect("a salt for an unknown user");
    assert!(decoy.contains(",i=4096"), "{decoy}");
    assert_eq!(
        salt_of(&decoy),
        salt_of(&scram_server_first(port, "mallory").unwrap())
    );
    assert_ne!(
        salt_of(&decoy),
        salt_of(&scram_server_first(port, "eve").unwrap())
    );

    // Plain passwords in the config, and trust on an exposed address, are refused.
    std::fs::write(&config, "[users]\nbob = \"b0b\"\n").unwrap();
    let err = refused_start(&[
        "--pg-addr",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        err.contains("users.bob") && err.contains("sluice passwd"),
        "{err}"
    );
    let err = refused_start(&["--pg-addr", "0.0.0.0:0"]);
    assert!(err.contains("--insecure-trust"), "{err}");
    let exposed = start_with(&["--pg-addr", "0.0.0.0:0", "--insecure-trust"]);
    assert!(try_connect(exposed.pg_port, "anyone", None).await.is_ok());
}

async fn load_rows(client: &Client, n: usize) {
    let values: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "('2024-01-01 00:00:00', NULL, {}, {}, 'item-{}', 1.0, true)",
                i % 100,
                i,
                i % 7
            )
        })
        .collect();
    client
        .batch_execute(&format!("INSERT INTO orders VALUES {}", values.join(", ")))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_the_running_query() {
    let server = start();
    let client = connect(server.pg_port).await;
    setup(&client).await;
    load_rows(&client, 20_000).await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    // 400 million candidate pairs: minutes of work unless cancelled.
    let err = client
        .query(
            "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
            &[],
        )
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20_000);
}

/// `sluice_memory_given_back_total` in `/metrics`.
fn times_given_back(http_port: u16) -> i64 {
    counter(http_port, "sluice_memory_given_back_total")
}

/// Waits until `sluice_memory_given_back_total` reaches `times`; fails if it
/// has not within three seconds (mimalloc's own purge of freed memory waits
/// ten: this is the server giving it back).
async fn await_given_back(http_port: u16, times: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while times_given_back(http_port) < times {
        assert!(
            std::time::Instant::now() < deadline,
            "memory not given back {times} time(s) within three seconds"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The value of `sluice_query_pool{what}` in `/metrics`.
fn pool_gauge(http_port: u16, what: &str) -> i64 {
    let metrics = http_get(http_port, "/metrics");
    let line = format!("sluice_query_pool{{what=\"{what}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .unwrap_or_else(|| panic!("no {line} in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (up to a minute) until `sluice_query_pool{what}` reads `want`.
async fn await_pool_gauge(http_port: u16, what: &str, want: i64) {
    for _ in 0..600 {
        if pool_gauge(http_port, what) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sluice_query_pool{{what={what}}} never reached {want}");
}

/// With one slot, a second statement waits while a long one computes: the
/// queue shows in `/metrics`, a queued statement can be cancelled or time out
/// without a slot, session statements do not queue, and the queued one runs
/// once the slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_query_pool_queues_statements_until_a_slot_is_free() {
    // POST /query waits under the server's statement timeout: 2 s.
    let server = start_with(&["--max-running-statements", "1", "--statement-timeout", "2s"]);
    let port = server.pg_port;
    let http = server.http_port;
    let client = connect(port).await;
    setup(&client).await;
    load_rows(&client, 20_000).await;
    assert_eq!(pool_gauge(http, "slots"), 1);
    let waited_before = pool_gauge(http, "waited_total");

    // 400 million candidate pairs: minutes of work unless cancelled.
    let long = connect(port).await;
    long.batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let long_cancel = long.cancel_token();
    let long_query = tokio::spawn(async move {
        long.query(
            "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
            &[],
        )
        .await
    });
    await_pool_gauge(http, "running", 1).await;

    // Queued behind it, then cancelled while still waiting.
    let queued = connect(port).await;
    let queued_cancel = queued.cancel_token();
    let waiting = tokio::spawn(async move {
        queued
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    await_pool_gauge(http, "queued", 1).await;
    assert!(!waiting.is_finished(), "ran without a slot");
    queued_cancel.cancel_query(NoTls).await.unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    await_pool_gauge(http, "queued", 0).await;

    // A session statement does not queue; its timeout then bounds the wait.
    let timed = connect(port).await;
    timed
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let err = timed
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(!long_query.is_finished(), "the long query ended early");
    assert_eq!(pool_gauge(http, "running"), 1);

    // POST /query queues too, and gives up at the statement timeout.
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        dashboard::http_post(
            http,
            "/query",
            r#"{"sql": "SELECT count(*) FROM orders"}"#,
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("57014"), "{body}");
    assert!(!long_query.is_finished(), "the long query ended early");

    // Queued again; freeing the slot lets it run.
    let after = connect(port).await;
    after
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        after
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    await_pool_gauge(http, "queued", 1).await;
    long_cancel.cancel_query(NoTls).await.unwrap();
    let err = long_query.await.unwrap().unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert_eq!(waiting.await.unwrap().unwrap(), 20_000);
    assert_eq!(pool_gauge(http, "waited_total") - waited_before, 1);
    await_pool_gauge(http, "running", 0).await;
    let metrics = http_get(http, "/metrics");
    assert!(
        metrics.contains("sluice_query_queue_wait_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_connections_query_at_once_and_the_501st_is_refused() {
    let server = start();
    let admin = connect(server.pg_port).await;
    setup(&admin).await;
    load_rows(&admin, 1000).await;
    let mut tasks = Vec::new();
    // With the admin's, 500 connections: the default max_connections.
    for i in 0..499i64 {
        let port = server.pg_port;
        tasks.push(tokio::spawn(async move {
            let c = connect(port).await;
            let r = c
                .query_one(
                    "SELECT count(*) FROM orders WHERE restaurant_id = $1",
                    &[&(i % 100)],
                )
                .await
                .unwrap();
            (r.get::<_, i64>(0), c)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        let (n, c) = t.await.unwrap();
        assert_eq!(n, 10);
        clients.push(c);
    }
    // All 500 stay open and usable.
    let last = clients.last().unwrap();
    assert_eq!(
        last.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    // The 501st is refused, and a cancel request still gets through.
    let err = try_connect(server.pg_port, "late", None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    last.cancel_token().cancel_query(NoTls).await.unwrap();
    // Once one closes, a new connection is admitted.
    drop(clients.pop());
    let mut admitted = false;
    for _ in 0..100 {
        if try_connect(server.pg_port, "late", None).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed slot admits a new connection");
}

/// Twenty sorts of a table larger than the server's query memory pool, at
/// once: each gives all its rows or 53200 (here, with no room for even one,
/// 53200), the server stays up, and once they end the pool is whole again: a
/// sort of part of the table, which fits, runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sorts_past_the_query_memory_pool_fail_with_53200_not_the_server() {
    // 130,000 rows: two full in-memory blocks of 65,536 rows and a part, each
    // full block's columns about 3 MB, so one fits in the pool and two do not.
    let server = start_with(&["--query-memory-pool", "5MB"]);
    let admin = connect(server.pg_port).await;
    setup(&admin).await;
    for _ in 0..13 {
        load_rows(&admin, 10_000).await;
    }
    let sql = "SELECT * FROM orders ORDER BY amount, restaurant_id";
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let port = server.pg_port;
        tasks.push(tokio::spawn(async move {
            let c = connect(port).await;
            match c.query(sql, &[]).await {
                Ok(rows) => Ok(rows.len()),
                Err(e) => Err(e.code().map(|c| c.code().to_string())),
            }
        }));
    }
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(rows) => assert_eq!(rows, 130_000),
            Err(code) => {
                assert_eq!(code.as_deref(), Some("53200"));
                refused += 1;
            }
        }
    }
    assert_eq!(
        refused, 20,
        "a sort of a table larger than the pool fits in it"
    );
    let alone = connect(server.pg_port).await;
    // 30% of the table fits only if the failed sorts gave back what they held.
    let part = "SELECT * FROM orders WHERE restaurant_id < 30 ORDER BY amount";
    assert_eq!(alone.query(part, &[]).await.unwrap().len(), 39_000);
}

/// A message longer than `max_message_size` ends its connection with 08P01,
/// told before its body is read; one just within the bound runs, and other
/// sessions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_max_message_size_ends_its_connection_with_08p01() {
    let server = start_with(&["--max-message-size", "1MB"]);
    let neighbour = connect(server.pg_port).await;
    let client = connect(server.pg_port).await;
    let query = |n: usize| format!("SELECT length('{}')", "x".repeat(n));

    let fits = client.query_one(&query(1_000_000), &[]).await.unwrap();
    assert_eq!(fits.get::<_, i32>(0), 1_000_000);

    // Ten megabytes: refused from the header, and the client is told why.
    let err = client.simple_query(&query(10_000_000)).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("08P01"), "{err}");
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .unwrap_or("")
            .contains("max_message_size"),
        "{message:?}"
    );
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "the connection is closed"
    );

    let row = neighbour.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    let fresh = connect(server.pg_port).await;
    assert_eq!(
        fresh
            .query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

/// An open cursor's rows are held from the query memory pool until it
/// closes, by CLOSE or by the end of the block that declared it: while one
/// session holds most of the pool in a cursor, another's cursor of the same
/// rows is refused (53200); once it closes, the same DECLARE fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_cursors_hold_query_memory_until_they_close() {
    // 60,000 rows: about 2.8 MB of columns, more than half a 5 MB pool.
    let server = start_with(&["--query-memory-pool", "5MB"]);
    let a = connect(server.pg_port).await;
    let b = connect(server.pg_port).await;
    setup(&a).await;
    for _ in 0..6 {
        load_rows(&a, 10_000).await;
    }
    let declare = "DECLARE c CURSOR FOR SELECT * FROM orders";
    let code = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_string());

    a.batch_execute("BEGIN").await.unwrap();
    a.batch_execute(declare).await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let err = b.batch_execute(declare).await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("53200"));
    b.batch_execute("ROLLBACK").await.unwrap();

    a.batch_execute("CLOSE c").await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    b.batch_execute(declare).await.unwrap();
    let fetched = b.simple_query("FETCH 5 FROM c").await.unwrap();
    assert_eq!(
        fetched
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
            .count(),
        5
    );
    // COMMIT closes a cursor declared without HOLD, and gives its memory back.
    b.batch_execute("COMMIT").await.unwrap();
    let err = b.simple_query("FETCH 1 FROM c").await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("34000"));
    a.batch_execute(declare).await.unwrap();
    a.batch_execute("COMMIT").await.unwrap();
}

/// Cursors follow PostgreSQL's rules for their lifetime: without HOLD only in
/// a block (25P01), WITH HOLD past COMMIT but not past the ROLLBACK of the
/// block that declared them; options that would change FETCH's answers and are
/// not built are refused (0A000), not ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_live_as_long_as_postgresql_keeps_them() {
    let server = start();
    let client = connect(server.pg_port).await;
    setup(&client).await;
    load_rows(&client, 10).await;
    let code = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_string());
    let err = client
        .batch_execute("DECLARE c CURSOR FOR SELECT qty FROM orders")
        .await
        .unwrap_err();
    assert_eq!(code(err).as_deref(), Some("25P01"));

    client
        .batch_execute("DECLARE h CURSOR WITH HOLD FOR SELECT qty FROM orders ORDER BY qty")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; DECLARE kept CURSOR WITH HOLD FOR SELECT 1; COMMIT")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; DECLARE undone CURSOR WITH HOLD FOR SELECT 1; ROLLBACK")
        .await
        .unwrap();
    let first = |msgs: Vec<SimpleQueryMessage>| -> Vec<String> {
        msgs.into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        first(client.simple_query("FETCH 2 FROM h").await.unwrap()),
        ["0", "1"]
    );
    assert_eq!(
        first(client.simple_query("FETCH 1 FROM kept").await.unwrap()),
        ["1"]
    );
    let err = client
        .simple_query("FETCH 1 FROM undone")
        .await
        .unwrap_err();
    assert_eq!(code(err).as_deref(), Some("34000"));

    // ROLLBACK TO a savepoint closes the cursors declared after it, also
    // after a RELEASE made an earlier one's cursors its parent's.
    client
        .batch_execute(
            "BEGIN; SAVEPOINT a; SAVEPOINT b; DECLARE before CURSOR FOR SELECT 1; \
             RELEASE SAVEPOINT b; SAVEPOINT c; DECLARE after CURSOR FOR SELECT 2; \
             ROLLBACK TO SAVEPOINT c",
        )
        .await
        .unwrap();
    assert_eq!(
        first(client.simple_query("FETCH 1 FROM before").await.unwrap()),
        ["1"]
    );
    let err = client.simple_query("FETCH 1 FROM after").await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("34000"));
    client.batch_execute("ROLLBACK").await.unwrap();

    for refused in [
        "BEGIN; DECLARE b BINARY CURSOR FOR SELECT 1",
        "BEGIN; DECLARE s SCROLL CURSOR FOR SELECT 1",
    ] {
        let err = client.batch_execute(refused).await.unwrap_err();
        assert_eq!(code(err).as_deref(), Some("0A000"), "{refused}");
        client.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// The server's maximum statement timeout bounds every statement, even one
/// whose session set no timeout at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cannot_lift_the_servers_maximum_statement_timeout() {
    let server = start_with(&["--max-statement-timeout", "1s"]);
    let client = connect(server.pg_port).await;
    setup(&client).await;
    load_rows(&client, 20_000).await;
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    // 400 million candidate pairs: minutes of work without a bound.
    let err = client
        .query(
            "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("timeout"), "{message}");
    // A shorter one of its own still applies.
    client
        .batch_execute("SET statement_timeout = 1")
        .await
        .unwrap();
    let err = client
        .query(
            "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
}

/// `kill -9` in the middle of a stream of INSERTs and background seals, 20 times
/// over the same data directory: after each restart every acknowledged row is
/// there exactly once, and a statement cut off by the kill is all there or absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_inserts_survive_kill_9_during_inserts_and_seals() {
    use std::sync::{Arc, Mutex};

    const BATCH: i64 = 20;
    let dir = tempfile::tempdir().unwrap();
    // Batches (first id) acknowledged, and the one in flight when the server died.
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut uncertain: Vec<i64> = Vec::new();
    let mut next = 0i64;
    for round in 0..=20u64 {
        let mut server = start_in(dir.path(), &[]);
        let client = connect(server.pg_port).await;
        if round == 0 {
            client
                .batch_execute(
                    "CREATE TABLE k (ts TIMESTAMP, id BIGINT) \
                     WITH (time_column = 'ts', retention = 'none', segment_rows = '1000')",
                )
                .await
                .unwrap();
        }
        let ids: Vec<i64> = client
            .query("SELECT id FROM k ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        check_batches(&ids, &acked.lock().unwrap(), &uncertain, BATCH, round);
        if round == 20 {
            let sealed: i64 = client
                .query_one(
                    "SELECT count(*) FROM sluice.segments WHERE table_name = 'k' AND state = 'sealed'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(sealed >= 3, "only {sealed} seals happened");
            break;
        }
        // Insert until the server dies; the kill lands at a different moment each
        // round, before, during or after a background seal.
        let writer = {
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                loop {
                    let values: Vec<String> = (next..next + BATCH)
                        .map(|i| format!("(TIMESTAMP '2024-01-01' + INTERVAL '{i} seconds', {i})"))
                        .collect();
                    let sql = format!("INSERT INTO k VALUES {}", values.join(", "));
                    if client.batch_execute(&sql).await.is_err() {
                        return next;
                    }
                    acked.lock().unwrap().push(next);
                    next += BATCH;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(150 + round * 37 % 250)).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let in_flight = writer.await.unwrap();
        uncertain.push(in_flight);
        next = in_flight + BATCH;
    }
}

/// Checks that `ids` (sorted) holds every acknowledged batch exactly once, each
/// uncertain batch whole or not at all, and nothing else.
fn check_batches(ids: &[i64], acked: &[i64], uncertain: &[i64], batch: i64, round: u64) {
    let mut expected: Vec<i64> = Vec::new();
    let mut rest = ids;
    let starts = {
        let mut all: Vec<(i64, bool)> = acked.iter().map(|&a| (a, true)).collect();
        all.extend(uncertain.iter().map(|&u| (u, false)));
        all.sort_unstable();
        all
    };
    for (start, must) in starts {
        let whole: Vec<i64> = (start..start + batch).collect();
        if rest.starts_with(&whole) {
            rest = &rest[whole.len()..];
            expected.extend(&whole);
        } else {
            assert!(
                !must && rest.first().is_none_or(|&f| f >= start + batch),
                "round {round}: acknowledged batch {start} missing or partial; next ids {:?}",
                &rest[..rest.len().min(5)]
            );
        }
    }
    assert!(
        rest.is_empty(),
        "round {round}: unexpected ids {:?}",
        &rest[..rest.len().min(5)]
    );
}

/// Every cell of the parameter matrix (tests/params/matrix.json) answers as
/// PostgreSQL 15 answers, through tokio-postgres: parameter types described with
/// none declared, and values sent in binary both in the described and in the
/// declared types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_typed_as_postgres_types_them() {
    let Ok(url) = std::env::var("SLUICE_PG_URL") else {
        println!("parameter matrix skipped: set SLUICE_PG_URL (.ci/run does)");
        return;
    };
    let (postgres, conn) = tokio_postgres::connect(&url, NoTls)
        .await
        .expect("PostgreSQL oracle");
    tokio::spawn(conn);
    let server = start();
    let sluice = connect(server.pg_port).await;
    let (cells, differences) = param_matrix::run(&sluice, &postgres).await;
    assert!(
        differences.is_empty(),
        "{} of {cells} cells differ from PostgreSQL:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert!(cells >= 200, "only {cells} cells ran");
}

/// `sluice_prepared_executions_total{plan}` from `/metrics`: (reused, planned).
fn plan_reuse_counts(http_port: u16) -> (i64, i64) {
    let metrics = http_get(http_port, "/metrics");
    let count = |plan: &str| {
        let key = format!("sluice_prepared_executions_total{{plan=\"{plan}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    (count("reused"), count("planned"))
}

/// A prepared query is bound once and its plan reused: every execution of
/// the one-restaurant query answers as the same SQL with the value written
/// in, from the generic plan; `= ANY($1)` is bound afresh each time. The
/// reused plan still follows what changes: `now()` and the retention cutoff
/// move with the clock, `SET TimeZone` re-plans a constant read in the old
/// zone, and a table dropped and created again is the new one that is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_queries_reuse_their_plan_and_follow_time_zone_and_tables() {
    let server = start();
    let client = connect(server.pg_port).await;
    client
        .batch_execute(
            "CREATE TABLE o (ts TIMESTAMP, placed TIMESTAMPTZ, r BIGINT, item TEXT, amount DOUBLE PRECISION) \
                 WITH (time_column = 'ts', retention = '1 hour');
             INSERT INTO o SELECT now() - interval '30 minutes', '2024-05-01 11:00+00', v % 7, 'item' || (v % 5), v
                 FROM generate_series(1, 200) AS g(v);
             INSERT INTO o VALUES (now() - interval '1 hour' + interval '5 seconds', '2024-05-01 13:00+00', 100, 'edge', 1.0),
                                  (now() - interval '5 seconds', '2024-05-01 13:00+00', 101, 'recent', 2.0)",
        )
        .await
        .unwrap();
    let top = "SELECT item, count(*), sum(amount) FROM o WHERE r = $1 GROUP BY item ORDER BY 2 DESC, 1 LIMIT 5";
    let prepared = client.prepare(top).await.unwrap();
    let before = plan_reuse_counts(server.http_port);
    for r in 0..7i64 {
        let reused = client.query(&prepared, &[&r]).await.unwrap();
        let fresh = client
            .simple_query(&top.replace("$1", &r.to_string()))
            .await
            .unwrap();
        let fresh: Vec<(String, i64, f64)> = fresh
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get(0).unwrap().to_string(),
                    row.get(1).unwrap().parse().unwrap(),
                    row.get(2).unwrap().parse().unwrap(),
                )),
                _ => None,
            })
            .collect();
        let reused: Vec<(String, i64, f64)> = reused
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        assert_eq!(reused, fresh, "restaurant {r}");
        assert!(!reused.is_empty());
    }
    let after = plan_reuse_counts(server.http_port);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (6, 1),
        "planned once, then reused six times"
    );

    let any = client
        .prepare("SELECT count(*) FROM o WHERE r = ANY($1)")
        .await
        .unwrap();
    for (list, want) in [(vec![1i64, 2], 58i64), (vec![3], 29)] {
        let got: i64 = client.query_one(&any, &[&list]).await.unwrap().get(0);
        assert_eq!(got, want, "{list:?}");
    }
    let later = plan_reuse_counts(server.http_port);
    assert_eq!(
        (later.0 - after.0, later.1 - after.1),
        (0, 2),
        "= ANY($1) is bound afresh"
    );

    // Time: both rows are inside now, and leave through the same plans once
    // the clock has passed them (five seconds; polled, at most twenty).
    let edge = client
        .prepare("SELECT count(*) FROM o WHERE r = $1")
        .await
        .unwrap();
    let recent = client
        .prepare("SELECT count(*) FROM o WHERE ts > now() - interval '10 seconds' AND r = $1")
        .await
        .unwrap();
    let count = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, i64>(0);
    assert_eq!(count(client.query(&edge, &[&100i64]).await.unwrap()), 1);
    assert_eq!(count(client.query(&recent, &[&101i64]).await.unwrap()), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let past_cutoff = count(client.query(&edge, &[&100i64]).await.unwrap());
        let past_now = count(client.query(&recent, &[&101i64]).await.unwrap());
        if (past_cutoff, past_now) == (0, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 20 s: the row past the retention cutoff counted {past_cutoff}, \
             the row past now() - 10 s counted {past_now} (a plan kept the time it was made)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // A constant read in the session's zone: 12:00 in New York is 16:00 UTC.
    let noon = client
        .prepare(
            "SELECT count(*) FROM o WHERE placed >= '2024-05-01 12:00'::timestamptz AND r >= $1",
        )
        .await
        .unwrap();
    assert_eq!(count(client.query(&noon, &[&100i64]).await.unwrap()), 1);
    assert_eq!(count(client.query(&noon, &[&100i64]).await.unwrap()), 1);
    client
        .batch_execute("SET TimeZone = 'America/New_York'")
        .await
        .unwrap();
    let before = plan_reuse_counts(server.http_port);
    assert_eq!(
        count(client.query(&noon, &[&100i64]).await.unwrap()),
        0,
        "re-planned in the new zone"
    );
    let after = plan_reuse_counts(server.http_port);
    assert_eq!((after.0 - before.0, after.1 - before.1), (0, 1));

    // The same table again, with other rows (the plan made in this zone
    // first, so only the table has changed).
    assert_eq!(client.query(&prepared, &[&3i64]).await.unwrap().len(), 5);
    client
        .batch_execute(
            "DROP TABLE o;
             CREATE TABLE o (ts TIMESTAMP, placed TIMESTAMPTZ, r BIGINT, item TEXT, amount DOUBLE PRECISION) \
                 WITH (time_column = 'ts', retention = 'none');
             INSERT INTO o VALUES ('2024-05-01 10:00', NULL, 3, 'new', 9.0)",
        )
        .await
        .unwrap();
    let rows = client.query(&prepared, &[&3i64]).await.unwrap();
    assert_eq!(rows.len(), 1, "the new table's rows");
    assert_eq!(rows[0].get::<_, String>(0), "new");
}

/// Doubles written (NaN, infinities, random bit patterns) come back bit for bit
/// after kill -9 and a restart: the write-ahead file keeps each one's bits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_double_survives_kill_9_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut doubles = vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 5e-324];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    while doubles.len() < 300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        doubles.push(f64::from_bits(seed));
    }
    {
        let mut server = start_in(dir.path(), &[]);
        let client = connect(server.pg_port).await;
        client
            .batch_execute(
                "CREATE TABLE m (ts TIMESTAMP, i BIGINT, v DOUBLE PRECISION) WITH (time_column = 'ts', retention = 'none');
                 INSERT INTO m VALUES ('2026-11-29 10:00', -1, 'NaN'), ('2026-11-29 10:01', -2, 'Infinity')",
            )
            .await
            .unwrap();
        let insert = client
            .prepare("INSERT INTO m VALUES ('2026-11-29 10:02', $1, $2)")
            .await
            .unwrap();
        for (i, d) in doubles.iter().enumerate() {
            client.execute(&insert, &[&(i as i64), d]).await.unwrap();
        }
        server.kill();
    }
    let server = start_in(dir.path(), &[]);
    let client = connect(server.pg_port).await;
    let text = client
        .simple_query("SELECT v FROM m WHERE i < 0 ORDER BY i DESC")
        .await
        .unwrap();
    let words: Vec<String> = text
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(words, ["NaN", "Infinity"]);
    let rows = client
        .query("SELECT i, v FROM m WHERE i >= 0 ORDER BY i", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), doubles.len());
    for (row, d) in rows.iter().zip(&doubles) {
        let v: f64 = row.get(1);
        assert_eq!(v.to_bits(), d.to_bits(), "row {}", row.get::<_, i64>(0));
    }
}

/// The single BIGINT a query returns.
async fn one_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls `sql` until it returns `want` (the maintenance thread acts every
/// 200 ms); the last value otherwise.
async fn eventually_i64(client: &Client, sql: &str, want: i64) -> i64 {
    let mut got = one_i64(client, sql).await;
    for _ in 0..100 {
        if got == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        got = one_i64(client, sql).await;
    }
    got
}

/// Retention over the protocol, with `sluice serve --clock-offset` moving the
/// clock half a year on: the sealed segment of old rows leaves
/// `sluice.segments`, `count(*)` is exactly the rows still inside retention,
/// and `sluice.retention` and `/metrics` count the eviction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_clock_181_days_evicts_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut server = start_in(dir.path(), &[]);
        let client = connect(server.pg_port).await;
        client
            .batch_execute(
                "CREATE TABLE ev (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', segment_rows = '10');
                 INSERT INTO ev SELECT now() - interval '10 days' + v * interval '1 minute', v
                     FROM generate_series(1, 10) AS g(v);",
            )
            .await
            .unwrap();
        let sealed =
            "SELECT count(*) FROM sluice.segments WHERE table_name = 'ev' AND state = 'sealed'";
        assert_eq!(eventually_i64(&client, sealed, 1).await, 1);
        // Three rows dated after the move: inside retention then too.
        client
            .batch_execute("INSERT INTO ev VALUES (now() + interval '100 days', 11), (now() + interval '150 days', 12), (now() + interval '170 days', 13)")
            .await
            .unwrap();
        assert_eq!(one_i64(&client, "SELECT count(*) FROM ev").await, 13);
        server.kill();
    }
    let server = start_in(dir.path(), &["--clock-offset", "181 days"]);
    let client = connect(server.pg_port).await;
    let sealed =
        "SELECT count(*) FROM sluice.segments WHERE table_name = 'ev' AND state = 'sealed'";
    assert_eq!(
        eventually_i64(&client, sealed, 0).await,
        0,
        "the old segment is evicted"
    );
    assert_eq!(one_i64(&client, "SELECT count(*) FROM ev").await, 3);
    assert_eq!(one_i64(&client, "SELECT min(v) FROM ev").await, 11);
    let evicted = client
        .query_one(
            "SELECT segments_evicted, rows_evicted FROM sluice.retention WHERE table_name = 'ev'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (evicted.get::<_, i64>(0), evicted.get::<_, i64>(1)),
        (1, 10)
    );
    let metrics = http_get(server.http_port, "/metrics");
    assert!(
        metrics.contains("sluice_retention_evicted_segments_total{table=\"ev\"} 1"),
        "{metrics}"
    );
}

/// COPY over the extended protocol (tokio-postgres): text in through the
/// normal write path (an upsert table keeps the latest row per key), a bad
/// line refuses the whole COPY naming the line, and CSV goes out with a header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_over_the_extended_protocol() {
    use futures::{SinkExt, StreamExt};
    let server = start();
    let client = connect(server.pg_port).await;
    client
        .batch_execute(
            "CREATE TABLE kv (ts TIMESTAMP, k BIGINT NOT NULL, v TEXT, PRIMARY KEY (k)) WITH (time_column = 'ts', retention = 'none', upsert = 'full')",
        )
        .await
        .unwrap();
    let copy_in = |data: &'static str| {
        let client = &client;
        async move {
            let sink = client.copy_in("COPY kv (ts, k, v) FROM STDIN").await?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from_static(data.as_bytes()))
                .await?;
            sink.finish().await
        }
    };
    let n = copy_in("2024-01-01 00:00:00\t1\ta\\tb\n2024-01-01 00:00:01\t2\t\\N\n2024-01-01 00:00:02\t1\tnewer\n")
        .await
        .unwrap();
    assert_eq!(n, 3);
    let err = copy_in("2024-01-01 00:00:03\t3\tx\n2024-01-01\tnot a key\ty\n")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "22P02", "{db:?}");
    assert!(
        db.message().contains("line 2, column k"),
        "{}",
        db.message()
    );
    let rows = client
        .query("SELECT k, v FROM kv ORDER BY k", &[])
        .await
        .unwrap();
    let got: Vec<(i64, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(1, Some("newer".to_string())), (2, None)]);

    let out = client
        .copy_out("COPY (SELECT k, v FROM kv ORDER BY k) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .unwrap();
    futures::pin_mut!(out);
    let mut text = Vec::new();
    while let Some(chunk) = out.next().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(text).unwrap(), "k,v\n1,newer\n2,\n");
}

/// A connection speaking the simple query protocol by hand, to see what
/// drivers hide: each statement's command tag, error SQLSTATE and the
/// transaction status ReadyForQuery reports (`I`, `T` or `E`).
struct RawConnection(std::net::TcpStream);

impl RawConnection {
    fn open(port: u16) -> RawConnection {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for part in ["user", "raw", "database", "sluice", ""] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend(body);
        s.write_all(&msg).unwrap();
        let mut c = RawConnection(s);
        c.until_ready();
        c
    }

    fn message(&mut self) -> (u8, Vec<u8>) {
        use std::io::Read;
        let mut head = [0u8; 5];
        self.0.read_exact(&mut head).unwrap();
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = vec![0u8; len - 4];
        self.0.read_exact(&mut data).unwrap();
        (head[0], data)
    }

    /// Tags (or `error CODE`) up to ReadyForQuery, and its status.
    fn until_ready(&mut self) -> (Vec<String>, char) {
        let mut out = Vec::new();
        loop {
            match self.message() {
                (b'C', data) => out.push(String::from_utf8_lossy(&data[..data.len() - 1]).into()),
                (b'E', data) => {
                    let code = data
                        .split(|b| *b == 0)
                        .find_map(|f| f.strip_prefix(b"C"))
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .unwrap_or_default();
                    out.push(format!("error {code}"));
                }
                (b'Z', data) => return (out, data[0] as char),
                _ => {}
            }
        }
    }

    fn query(&mut self, sql: &str) -> (Vec<String>, char) {
        use std::io::Write;
        let mut msg = vec![b'Q'];
        msg.extend(((sql.len() + 5) as i32).to_be_bytes());
        msg.extend(sql.as_bytes());
        msg.push(0);
        self.0.write_all(&msg).unwrap();
        self.until_ready()
    }
}

/// Transaction blocks told truthfully: an error fails the block (25P02 until
/// it ends, and COMMIT then rolls back), savepoints are tagged and leave the
/// block open, and a ROLLBACK that cannot undo a write says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_blocks_report_failure_savepoints_and_what_rollback_cannot_undo() {
    let server = start();
    let mut c = RawConnection::open(server.pg_port);
    let q = |c: &mut RawConnection, sql: &str| {
        let (tags, status) = c.query(sql);
        (tags.join("; "), status)
    };
    q(
        &mut c,
        "CREATE TABLE t (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', retention = 'none')",
    );
    assert_eq!(q(&mut c, "BEGIN"), ("BEGIN".into(), 'T'));
    assert_eq!(q(&mut c, "SELECT 1 / 0"), ("error 22012".into(), 'E'));
    assert_eq!(q(&mut c, "SELECT 1"), ("error 25P02".into(), 'E'));
    assert_eq!(q(&mut c, "COMMIT"), ("ROLLBACK".into(), 'I'));

    assert_eq!(
        q(&mut c, "BEGIN; SAVEPOINT a"),
        ("BEGIN; SAVEPOINT".into(), 'T')
    );
    assert_eq!(q(&mut c, "SELECT 1"), ("SELECT 1".into(), 'T'));
    assert_eq!(
        q(&mut c, "ROLLBACK TO SAVEPOINT a"),
        ("ROLLBACK".into(), 'T')
    );
    assert_eq!(q(&mut c, "RELEASE SAVEPOINT a"), ("RELEASE".into(), 'T'));
    assert_eq!(q(&mut c, "SAVEPOINT c"), ("SAVEPOINT".into(), 'T'));
    assert_eq!(
        q(&mut c, "RELEASE SAVEPOINT b"),
        ("error 3B001".into(), 'E')
    );
    // A savepoint set before the failure makes the block healthy again; an
    // unknown one leaves it failed.
    assert_eq!(
        q(&mut c, "ROLLBACK TO SAVEPOINT c"),
        ("ROLLBACK".into(), 'T')
    );
    assert_eq!(q(&mut c, "SELECT 1"), ("SELECT 1".into(), 'T'));
    assert_eq!(q(&mut c, "SELECT 1 / 0"), ("error 22012".into(), 'E'));
    assert_eq!(
        q(&mut c, "ROLLBACK TO SAVEPOINT nope"),
        ("error 3B001".into(), 'E')
    );
    assert_eq!(q(&mut c, ""), (String::new(), 'E'));
    assert_eq!(q(&mut c, "SELECT 1"), ("error 25P02".into(), 'E'));
    assert_eq!(
        q(&mut c, "ROLLBACK TO SAVEPOINT c; SELECT 2"),
        ("ROLLBACK; SELECT 1".into(), 'T')
    );
    assert_eq!(q(&mut c, "ROLLBACK"), ("ROLLBACK".into(), 'I'));
    assert_eq!(q(&mut c, "SAVEPOINT a"), ("error 25P01".into(), 'I'));

    // Writes apply when they complete: a ROLLBACK over one is an error that
    // says so and ends the block, and the row is there.
    assert_eq!(
        q(&mut c, "BEGIN; INSERT INTO t VALUES ('2024-01-01', 1)"),
        ("BEGIN; INSERT 0 1".into(), 'T')
    );
    assert_eq!(q(&mut c, "ROLLBACK").0, "error 0A000");
    assert_eq!(q(&mut c, "ROLLBACK"), ("ROLLBACK".into(), 'I'));
    assert_eq!(
        q(&mut c, "SELECT count(*) FROM t"),
        ("SELECT 1".into(), 'I')
    );
    assert_eq!(
        q(
            &mut c,
            "BEGIN; SAVEPOINT s; INSERT INTO t VALUES ('2024-01-01', 2)"
        )
        .1,
        'T'
    );
    assert_eq!(q(&mut c, "ROLLBACK TO SAVEPOINT s").0, "error 0A000");
    assert_eq!(q(&mut c, "ROLLBACK"), ("ROLLBACK".into(), 'I'));
}

/// Through the extended protocol too: an error pgwire meets before a
/// statement runs (Parse) fails the block, every later statement gets 25P02,
/// and ROLLBACK TO SAVEPOINT makes the block healthy again, as PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_block_recovers_at_a_savepoint_through_the_extended_protocol() {
    let server = start();
    let client = connect(server.pg_port).await;
    let code = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_string());
    client.batch_execute("BEGIN; SAVEPOINT a").await.unwrap();
    let err = client.prepare("SELEC 1").await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("42601"));
    let err = client.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("25P02"));
    client
        .batch_execute("ROLLBACK TO SAVEPOINT a")
        .await
        .unwrap();
    let row = client.query_one("SELECT 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    client.batch_execute("COMMIT").await.unwrap();
}

/// pg_stat_activity lists the live sessions with what they run, and
/// pg_terminate_backend ends a running one: its statement stops and its
/// connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_terminate_backend_ends_a_running_session() {
    let server = start();
    let (victim, victim_conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=dashboard dbname=sluice",
            server.pg_port
        ),
        NoTls,
    )
    .await
    .unwrap();
    let victim_conn = tokio::spawn(victim_conn);
    setup(&victim).await;
    load_rows(&victim, 20_000).await;
    let admin = connect(server.pg_port).await;
    let victim_pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let running = tokio::spawn(async move {
        // 400 million candidate pairs: minutes of work unless stopped.
        let r = victim
            .query(
                "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
                &[],
            )
            .await;
        (r.map(|rows| rows.len()), victim)
    });
    let sql = "SELECT pid, state, usename FROM pg_stat_activity WHERE query LIKE '%a.qty < b.qty%' AND pid <> pg_backend_pid()";
    let mut seen = None;
    for _ in 0..100 {
        if let Some(row) = admin.query(sql, &[]).await.unwrap().first() {
            seen = Some((row.get::<_, i32>(0), row.get::<_, String>(1)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some((victim_pid, "active".to_string())));
    let stopped: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&victim_pid])
        .await
        .unwrap()
        .get(0);
    assert!(stopped);
    let (result, victim) = running.await.unwrap();
    // The statement stops, and its client is told why, FATAL, as PostgreSQL
    // tells it; then the connection ends.
    let err = result.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57P01"), "{err}");
    assert_eq!(
        err.as_db_error().map(|e| e.severity()),
        Some("FATAL"),
        "{err}"
    );
    assert!(victim_conn.await.is_ok(), "the connection task ended");
    assert!(
        victim.query_one("SELECT 1", &[]).await.is_err(),
        "the connection is closed"
    );
    let mut gone = false;
    for _ in 0..100 {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&victim_pid],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "a closed session leaves pg_stat_activity");
    let unknown: bool = admin
        .query_one("SELECT pg_cancel_backend(-1)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!unknown);
}

/// SIGTERM: /ready turns 503, a running statement gets `shutdown_timeout` to
/// finish and is then stopped with 57P01, an idle client is told 57P01 too,
/// and the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_tells_clients_57p01_and_exits() {
    let mut server = start_with(&["--shutdown-timeout", "1s"]);
    let port = server.pg_port;
    let admin = connect(port).await;
    setup(&admin).await;
    load_rows(&admin, 20_000).await;
    let (idle, idle_conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=sluice dbname=sluice"),
        NoTls,
    )
    .await
    .unwrap();
    let idle_conn = tokio::spawn(idle_conn);
    idle.query_one("SELECT 1", &[]).await.unwrap();
    let busy = connect(port).await;
    let running = tokio::spawn(async move {
        busy.query(
            "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
            &[],
        )
        .await
        .map(|_| ())
    });
    let active = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%a.qty < b.qty%'";
    for _ in 0..100 {
        let n: i64 = admin.query_one(active, &[]).await.unwrap().get(0);
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = http_get(server.http_port, "/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("\"ready\":true"), "{ready}");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let draining = http_get(server.http_port, "/ready");
    assert!(draining.starts_with("HTTP/1.1 503"), "{draining}");
    assert!(draining.contains("\"shutting_down\":true"), "{draining}");

    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57P01"), "{err}");
    let idle_end = idle_conn.await.unwrap().unwrap_err();
    assert_eq!(
        idle_end.code().map(|c| c.code()),
        Some("57P01"),
        "{idle_end}"
    );
    let mut exited = None;
    for _ in 0..300 {
        if let Some(status) = server.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        exited.is_some_and(|s| s.success()),
        "sluice serve exits after SIGTERM: {exited:?}"
    );
}

/// Describe agrees with Execute: SHOW ALL's three columns, FETCH's cursor
/// columns; and a prepared statement whose table changed shape fails with
/// 0A000 (cached plan must not change result type), as in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_agrees_with_execute_and_a_changed_table_fails_the_cached_plan() {
    let server = start();
    let client = connect(server.pg_port).await;
    let show = client.prepare("SHOW ALL").await.unwrap();
    assert_eq!(show.columns().len(), 3);
    let rows = client.query(&show, &[]).await.unwrap();
    assert!(rows.iter().any(|r| r.get::<_, String>(0) == "timezone"));
    assert_eq!(rows[0].len(), 3);

    client
        .batch_execute(
            "CREATE TABLE c (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', retention = 'none'); \
             INSERT INTO c VALUES ('2024-01-01', 1), ('2024-01-02', 2); \
             BEGIN; DECLARE cur CURSOR FOR SELECT v, ts FROM c ORDER BY v",
        )
        .await
        .unwrap();
    let fetch = client.prepare("FETCH 1 FROM cur").await.unwrap();
    let names: Vec<&str> = fetch.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["v", "ts"]);
    let row = client.query_one(&fetch, &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    client.batch_execute("COMMIT").await.unwrap();

    let select = client.prepare("SELECT * FROM c").await.unwrap();
    assert_eq!(client.query(&select, &[]).await.unwrap().len(), 2);
    client
        .batch_execute(
            "DROP TABLE c; CREATE TABLE c (ts TIMESTAMP, v TEXT, w TEXT) WITH (time_column = 'ts', retention = 'none')",
        )
        .await
        .unwrap();
    let err = client.query(&select, &[]).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert!(db
        .message()
        .contains("cached plan must not change result type"));
}

/// Logs, as JSON lines: a connection authorized, a failed authentication, a
/// statement that failed and one slower than log_min_duration_statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_connections_auth_failures_errors_and_slow_statements_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, passwd("ana", "s3cret", "admin")).unwrap();
    let log = dir.path().join("log.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log-format", "json", "serve", "--pg-addr", "127.0.0.1:0"])
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--log-min-duration-statement",
            "1ms",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .split("PostgreSQL on ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let server = Server {
        child,
        pg_port: port,
        http_port: 0,
        _dir: None,
    };
    assert!(try_connect(port, "ana", Some("wrong")).await.is_err());
    let ana = try_connect(port, "ana", Some("s3cret")).await.unwrap();
    setup(&ana).await;
    load_rows(&ana, 5000).await;
    let _ = ana.query("SELECT 1 / 0", &[]).await.unwrap_err();
    ana.query(
        "SELECT count(*) FROM orders a JOIN orders b ON a.qty = b.qty",
        &[],
    )
    .await
    .unwrap();
    drop(server);
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |message: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in {events:#?}"))
            .clone()
    };
    assert_eq!(find("authentication failed")["fields"]["user"], "ana");
    assert_eq!(find("connection authorized")["fields"]["user"], "ana");
    let failed = find("statement failed");
    assert_eq!(failed["fields"]["sqlstate"], "22012");
    assert!(failed["fields"]["statement"]
        .as_str()
        .unwrap()
        .contains("1 / 0"));
    let slow = events
        .iter()
        .find(|e| {
            e["fields"]["message"] == "slow statement"
                && e["fields"]["statement"]
                    .as_str()
                    .is_some_and(|s| s.contains("JOIN"))
        })
        .unwrap_or_else(|| panic!("no slow JOIN in {events:#?}"));
    assert!(slow["fields"]["duration_ms"].as_f64().unwrap() >= 1.0);
}

/// A session idle inside a transaction block past
/// idle_in_transaction_session_timeout is ended with 25P03 (an idle one
/// outside a block is not); a connection that does not authenticate within
/// authentication_timeout is told 08P01 and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_and_authentication_timeouts_end_connections() {
    use std::io::Read;
    let server = start_with(&[
        "--idle-in-transaction-session-timeout",
        "300ms",
        "--authentication-timeout",
        "300ms",
    ]);
    let port = server.pg_port;
    let open = |port: u16| async move {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=sluice dbname=sluice"),
            NoTls,
        )
        .await
        .unwrap();
        (client, tokio::spawn(conn))
    };
    let (in_block, in_block_conn) = open(port).await;
    let (idle, _idle_conn) = open(port).await;
    in_block.batch_execute("BEGIN").await.unwrap();
    idle.query_one("SELECT 1", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let end = in_block_conn.await.unwrap().unwrap_err();
    assert_eq!(end.code().map(|c| c.code()), Some("25P03"), "{end}");
    assert!(in_block.query_one("SELECT 1", &[]).await.is_err());
    idle.query_one("SELECT 1", &[]).await.unwrap();

    // A client that connects and never authenticates.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    assert_eq!(got.first(), Some(&b'E'), "{got:?}");
    assert!(
        String::from_utf8_lossy(&got).contains("08P01"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// Binary COPY through tokio-postgres's binary copy writer and reader: every
/// column type round-trips, NULLs included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_round_trips_every_column_type() {
    use futures::{pin_mut, StreamExt};
    use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
    use tokio_postgres::types::Type;
    let server = start();
    let client = connect(server.pg_port).await;
    client
        .batch_execute(
            "CREATE TABLE bc (ts TIMESTAMP, n BIGINT, i INTEGER, f DOUBLE PRECISION, t TEXT, b BOOLEAN) WITH (time_column = 'ts', retention = 'none')",
        )
        .await
        .unwrap();
    let types = [
        Type::TIMESTAMP,
        Type::INT8,
        Type::INT4,
        Type::FLOAT8,
        Type::TEXT,
        Type::BOOL,
    ];
    let t0 = NaiveDate::from_ymd_opt(2024, 5, 1)
        .unwrap()
        .and_hms_micro_opt(12, 0, 0, 250)
        .unwrap();
    let sink = client
        .copy_in("COPY bc FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for k in 0..3i64 {
        let t = if k == 1 {
            None
        } else {
            Some(format!("row {k}\t\"x\""))
        };
        writer
            .as_mut()
            .write(&[
                &(t0 + chrono::Duration::seconds(k)),
                &k,
                &(k as i32 * 10),
                &(k as f64 / 3.0),
                &t,
                &(k % 2 == 0),
            ])
            .await
            .unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 3);
    let stream = client
        .copy_out("COPY (SELECT ts, n, i, f, t, b FROM bc ORDER BY n) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    let rows = BinaryCopyOutStream::new(stream, &types);
    pin_mut!(rows);
    let mut k = 0i64;
    while let Some(row) = rows.next().await {
        let row = row.unwrap();
        assert_eq!(
            row.get::<NaiveDateTime>(0),
            t0 + chrono::Duration::seconds(k)
        );
        assert_eq!(row.get::<i64>(1), k);
        assert_eq!(row.get::<i32>(2), k as i32 * 10);
        assert_eq!(row.get::<f64>(3).to_bits(), (k as f64 / 3.0).to_bits());
        let want = if k == 1 {
            None
        } else {
            Some(format!("row {k}\t\"x\""))
        };
        assert_eq!(row.get::<Option<String>>(4), want);
        assert_eq!(row.get::<bool>(5), k % 2 == 0);
        k += 1;
    }
    assert_eq!(k, 3);
}

/// A statement whose client disconnects stops (it would run for minutes,
/// with no timeout), and its session leaves pg_stat_activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stops_when_its_client_disconnects() {
    let server = start();
    let admin = connect(server.pg_port).await;
    setup(&admin).await;
    load_rows(&admin, 20_000).await;
    let (gone, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=sluice dbname=sluice",
            server.pg_port
        ),
        NoTls,
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    gone.batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let running = tokio::spawn(async move {
        let _ = gone
            .query(
                "SELECT count(*) FROM orders a JOIN orders b ON a.qty < b.qty",
                &[],
            )
            .await;
    });
    let active = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%a.qty < b.qty%' AND pid <> pg_backend_pid()";
    let mut started = false;
    for _ in 0..100 {
        let n: i64 = admin.query_one(active, &[]).await.unwrap().get(0);
        if n == 1 {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started);
    // The client goes away mid-statement: its connection's socket closes.
    conn.abort();
    running.abort();
    let mut stopped = false;
    for _ in 0..250 {
        let n: i64 = admin.query_one(active, &[]).await.unwrap().get(0);
        if n == 0 {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "the statement of a disconnected client stops");
}

/// The extended protocol's row limit: a portal executed 2 rows at a time is
/// suspended (PortalSuspended) and resumed until its rows run out; and an
/// interval and a NULL come back in binary and compare equal to what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_suspend_at_a_row_limit_and_binary_values_round_trip() {
    let server = start();
    let mut client = connect(server.pg_port).await;
    setup(&client).await;
    load_rows(&client, 5).await;
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT restaurant_id FROM orders ORDER BY restaurant_id")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 2).await.unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 2);
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    tx.commit().await.unwrap();

    let row = client
        .query_one(
            "SELECT INTERVAL '1 month 2 days 03:04:05.678', NULL::interval, NULL::bigint",
            &[],
        )
        .await
        .unwrap();
    // An interval in PostgreSQL's binary layout: microseconds, days, months.
    let raw: Option<IntervalBytes> = row.get(0);
    assert_eq!(
        raw.map(|b| b.0),
        Some((3 * 3_600_000_000 + 4 * 60_000_000 + 5_678_000, 2, 1))
    );
    assert!(row.get::<_, Option<IntervalBytes>>(1).is_none());
    assert_eq!(row.get::<_, Option<i64>>(2), None);
}

/// An interval read in its binary form: (microseconds, days, months).
struct IntervalBytes((i64, i32, i32));

impl<'a> tokio_postgres::types::FromSql<'a> for IntervalBytes {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(IntervalBytes((micros, days, months)))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::INTERVAL
    }
}

/// COPY data past the statement memory bound is refused whole (53200) rather
/// than collected without limit, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_past_the_statement_memory_bound_fails_whole() {
    use futures::SinkExt;
    let server = start_with(&["--statement-memory", "1MB"]);
    let client = connect(server.pg_port).await;
    client
        .batch_execute(
            "CREATE TABLE big (ts TIMESTAMP, v TEXT) WITH (time_column = 'ts', retention = 'none')",
        )
        .await
        .unwrap();
    let line = format!("2024-01-01\t{}\n", "x".repeat(1000));
    let sink = client.copy_in("COPY big FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    for _ in 0..2000 {
        sink.send(bytes::Bytes::from(line.clone())).await.unwrap();
    }
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("53200"), "{err}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

/// The value of a counter in `/metrics`.
fn counter(http_port: u16, name: &str) -> i64 {
    let metrics = http_get(http_port, "/metrics");
    let prefix = format!("{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// A GROUP BY past the server's statement memory bound answers through
/// spill files, and `/metrics` counts the spill and its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_by_past_the_statement_memory_spills_and_metrics_count_it() {
    let server = start_with(&["--statement-memory", "1MB"]);
    let client = connect(server.pg_port).await;
    client
        .batch_execute(
            "CREATE TABLE e (ts TIMESTAMP, user_id BIGINT) WITH (time_column = 'ts', retention = 'none');
             INSERT INTO e SELECT TIMESTAMP '2024-01-01' + g * INTERVAL '1 second', g % 60000
             FROM generate_series(1, 90000) AS s(g)",
        )
        .await
        .unwrap();
    let (spills, bytes) = (
        counter(server.http_port, "sluice_aggregate_spills_total"),
        counter(server.http_port, "sluice_aggregate_spilled_bytes_total"),
    );
    let row = client
        .query_one(
            "SELECT count(*), CAST(sum(n) AS BIGINT), max(n) FROM \
             (SELECT user_id, count(*) AS n FROM e GROUP BY user_id) g",
            &[],
        )
        .await
        .unwrap();
    let (groups, rows, most): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((groups, rows, most), (60_000, 90_000, 2));
    assert_eq!(
        counter(server.http_port, "sluice_aggregate_spills_total"),
        spills + 1
    );
    assert!(counter(server.http_port, "sluice_aggregate_spilled_bytes_total") > bytes);
}

/// COPY of Parquet files on the server, for an admin: FROM a file inside
/// import_dir (whole or nothing, skipped when imported before), TO a file
/// inside export_dir; a path outside either, or through a link out of it, is
/// refused with 42501, and a writer may not use them at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_parquet_files_stay_inside_import_and_export_dirs() {
    use arrow::array::{AsArray, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (import_dir, export_dir) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(&import_dir).unwrap();
    std::fs::create_dir_all(&export_dir).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, false),
    ]));
    let batch = arrow::record_batch::RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..1000).map(|i| 1_714_564_800_000_000 + i * 60_000_000),
            )),
            Arc::new(Int64Array::from_iter_values(0..1000)),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(import_dir.join("rows.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    std::fs::write(dir.path().join("secret.parquet"), b"not yours").unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("secret.parquet"),
        import_dir.join("link.parquet"),
    )
    .unwrap();

    let config = dir.path().join("sluice.toml");
    let users = format!(
        "{}{}",
        passwd("admin", "adm1n", "admin"),
        passwd("bob", "wr1te", "writer")
    );
    std::fs::write(&config, users).unwrap();
    let server = start_with(&[
        "--config",
        config.to_str().unwrap(),
        "--import-dir",
        import_dir.to_str().unwrap(),
        "--export-dir",
        export_dir.to_str().unwrap(),
    ]);
    let admin = try_connect(server.pg_port, "admin", Some("adm1n"))
        .await
        .unwrap();
    let code = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_string());
    admin
        .batch_execute("CREATE TABLE t (ts TIMESTAMP NOT NULL, v BIGINT) WITH (time_column = 'ts', retention = 'none')")
        .await
        .unwrap();
    let copied = admin
        .execute("COPY t FROM 'rows.parquet' WITH (FORMAT parquet)", &[])
        .await
        .unwrap();
    assert_eq!(copied, 1000);
    // Imported before: skipped, nothing added.
    let again = admin
        .execute("COPY t FROM 'rows.parquet' WITH (FORMAT parquet)", &[])
        .await
        .unwrap();
    assert_eq!(again, 0);
    let (n, sum): (i64, i64) = {
        let row = admin
            .query_one("SELECT count(*), sum(v)::bigint FROM t", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((n, sum), (1000, 499_500));

    let written = admin
        .execute(
            "COPY (SELECT ts, v * 2 AS doubled FROM t WHERE v < 10 ORDER BY v) TO 'ten.parquet' WITH (FORMAT parquet)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(written, 10);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(export_dir.join("ten.parquet")).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let doubled: Vec<i64> = reader
        .flat_map(|b| {
            let b = b.unwrap();
            let c = b
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            (0..c.len()).map(move |i| c.value(i)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(doubled, (0..10).map(|v| v * 2).collect::<Vec<i64>>());

    for outside in [
        "COPY t FROM '../secret.parquet' WITH (FORMAT parquet)",
        "COPY t FROM 'link.parquet' WITH (FORMAT parquet)",
        "COPY t FROM '/etc/passwd' WITH (FORMAT parquet)",
        "COPY t TO '../escaped.parquet' WITH (FORMAT parquet)",
    ] {
        let err = admin.batch_execute(outside).await.unwrap_err();
        assert_eq!(code(err).as_deref(), Some("42501"), "{outside}");
    }
    assert!(!dir.path().join("escaped.parquet").exists());
    let bob = try_connect(server.pg_port, "bob", Some("wr1te"))
        .await
        .unwrap();
    let err = bob
        .batch_execute("COPY t FROM 'rows.parquet' WITH (FORMAT parquet)")
        .await
        .unwrap_err();
    assert_eq!(code(err).as_deref(), Some("42501"));

    // `sluice import --pg` has the running server do the same.
    admin
        .batch_execute("CREATE TABLE t2 (ts TIMESTAMP NOT NULL, v BIGINT) WITH (time_column = 'ts', retention = 'none')")
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["import", "--table", "t2", "--pg"])
        .arg(format!("127.0.0.1:{}", server.pg_port))
        .arg(import_dir.join("rows.*"))
        .env("PGUSER", "admin")
        .env("PGPASSWORD", "adm1n")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
}

/// A field of the server process's `/proc/PID/status` in bytes (Linux).
fn process_memory(server: &Server, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("the server's /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a size in kB");
    kb * 1024
}

/// A GROUP BY over two million groups holds a few hundred megabytes while it
/// runs; when it ends the server gives them back, so its resident memory is
/// again near what it was before the query (mimalloc alone kept them: the
/// scan's helper threads end with their heaps unpurged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_by_gives_its_memory_back_when_it_ends() {
    let server = start();
    let client = connect(server.pg_port).await;
    client
        .batch_execute(
            "CREATE TABLE wide (ts TIMESTAMP, k BIGINT, v BIGINT) \
             WITH (time_column = 'ts', retention = 'none');
             INSERT INTO wide SELECT TIMESTAMP '2024-01-01' + i * INTERVAL '1 second', \
             (i::bigint * 7919) % 2000000, i FROM generate_series(1, 2000000) AS s(i);",
        )
        .await
        .expect("load");
    let large = "SELECT k, count(*) AS c, sum(v) AS s FROM wide GROUP BY k ORDER BY s DESC LIMIT 1";
    // Once to leave what the load freed behind it (and, given back, nothing
    // of its own), then measured from there, the peak counted afresh.
    let given_back = times_given_back(server.http_port);
    client
        .query(large, &[])
        .await
        .expect("first large GROUP BY");
    // Its memory is given back half a second after it ends (`GIVE_BACK_IDLE`).
    await_given_back(server.http_port, given_back + 1).await;
    std::fs::write(format!("/proc/{}/clear_refs", server.child.id()), "5")
        .expect("reset the peak resident size");
    let before = process_memory(&server, "VmRSS");
    let top = client.query(large, &[]).await.expect("large GROUP BY");
    assert_eq!(top.len(), 1);
    let peak = process_memory(&server, "VmHWM");
    let held = peak.saturating_sub(before);
    assert!(
        held > 100 << 20,
        "the query should have held memory (unless the run before it kept \
         what it freed): before {before}, peak {peak}"
    );
    // Given back once the server has had no large statement for a moment
    // (`GIVE_BACK_IDLE`, half a second).
    await_given_back(server.http_port, given_back + 2).await;
    let after = process_memory(&server, "VmRSS");
    assert!(
        after.saturating_sub(before) < held / 4,
        "memory not given back: before {before}, peak {peak}, after {after}"
    );
}
