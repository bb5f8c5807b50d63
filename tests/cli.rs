//! The `sluice` binary, run as a user would: statements across invocations, errors
//! with SQLSTATE and exit status, and the help text.

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

fn sql(dir: &std::path::Path, sql: &str) -> Output {
    sluice(&["sql", "--data-dir", dir.to_str().expect("utf-8 path"), sql])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn rows_survive_across_invocations_and_group_by_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = sql(
        dir.path(),
        "CREATE TABLE t (ts TIMESTAMP, k TEXT, v BIGINT) WITH (time_column='ts', retention='none')",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "CREATE TABLE");
    let out = sql(
        dir.path(),
        "INSERT INTO t VALUES ('2024-01-01 10:00', 'b', 5), ('2024-01-01 11:00', 'a', 1), ('2024-01-01 12:00', 'a', 2)",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "INSERT 0 3");

    // A second process sees the table and its rows.
    let out = sql(
        dir.path(),
        "SELECT k, count(*), sum(v) FROM t GROUP BY k ORDER BY k",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with('│'))
        .map(|l| l.trim_matches('│').split('┆').map(str::trim).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["k", "count", "sum"],
            vec!["a", "2", "3"],
            vec!["b", "1", "5"]
        ]
    );
    assert!(text.contains("(2 rows)"), "{text}");
}

#[test]
fn bad_statements_print_their_sqlstate_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ok = sql(
        dir.path(),
        "CREATE TABLE t (ts TIMESTAMP, v BIGINT) WITH (time_column='ts', retention='none')",
    );
    assert!(ok.status.success());
    for (statement, code) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM missing", "42P01"),
        ("SELECT nope FROM t", "42703"),
        ("INSERT INTO t VALUES ('2024-01-01', 'seven')", "22P02"),
        ("SELECT v + 'x'::text FROM t", "42883"),
    ] {
        let out = sql(dir.path(), statement);
        assert_eq!(out.status.code(), Some(1), "{statement}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("SQLSTATE: {code}")),
            "{statement}: {err}"
        );
        assert!(!err.contains("panicked"), "{statement}: {err}");
    }
}

#[test]
fn help_describes_every_command() {
    let out = sluice(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("sql") && text.contains("Run SQL statements"),
        "{text}"
    );
    let out = sluice(&["sql", "--help"]);
    assert!(stdout(&out).contains("--data-dir"));
}

#[test]
fn serve_rejects_a_block_cache_that_is_not_a_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let out = sluice(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--pg-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--block-cache",
        "lots",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("block_cache") && err.contains("lots"), "{err}");
}

#[test]
fn check_reports_a_damaged_write_ahead_file_and_salvage_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let out = sql(
        dir.path(),
        "CREATE TABLE t (ts TIMESTAMP, v BIGINT) WITH (time_column='ts', retention='none'); \
         INSERT INTO t VALUES ('2026-11-29 10:00', 1); INSERT INTO t VALUES ('2026-11-29 10:01', 2); \
         INSERT INTO t VALUES ('2026-11-29 10:02', 3)",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sluice(&["check", path]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("1 tables") && stdout(&out).contains("0 damaged"),
        "{}",
        stdout(&out)
    );
    // Flip a bit in the first record's length: the records after it are valid.
    let table_dir = std::fs::read_dir(dir.path().join("tables"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let wal = std::fs::read_dir(&table_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[12 + 12] ^= 0x20;
    std::fs::write(&wal, &bytes).unwrap();
    let out = sql(dir.path(), "SELECT count(*) FROM t");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(".log") && stderr(&out).contains("at byte 12"),
        "{}",
        stderr(&out)
    );
    let out = sluice(&["check", path]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("DAMAGED"), "{}", stdout(&out));
    let out = sluice(&["check", "--salvage", path]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = sql(dir.path(), "SELECT count(*), sum(v) FROM t");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("│ 2     ┆ 5   │"), "{}", stdout(&out));
}
