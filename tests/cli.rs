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

/// Writes `batch` as a Parquet file at `path`.
fn write_parquet(path: &std::path::Path, batches: &[arrow::record_batch::RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
}

/// The rows `sluice sql` printed, cells trimmed, header first.
fn cells(out: &Output) -> Vec<Vec<String>> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with('│'))
        .map(|l| {
            l.trim_matches('│')
                .split('┆')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// A Parquet file's columns go to the table's by name (any case, any order,
/// extra ones skipped, missing ones NULL), converted as JSON ingestion
/// converts; importing the same file again is skipped; a file with a NULL
/// time or one that is not Parquet is refused whole, naming itself.
#[test]
fn import_maps_parquet_columns_by_name_and_skips_a_file_imported_before() {
    use arrow::array::*;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = sql(
        &data,
        "CREATE TABLE ev (ts TIMESTAMPTZ NOT NULL, n BIGINT, i INTEGER, f DOUBLE PRECISION, \
         t TEXT, b BOOLEAN, amount NUMERIC(10,2), local TIMESTAMP, absent TEXT) \
         WITH (time_column = 'ts', retention = 'none')",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let schema = Arc::new(Schema::new(vec![
        Field::new("T", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
            false,
        ),
        Field::new("N", DataType::Int32, true),
        Field::new("i", DataType::Int64, true),
        Field::new("f", DataType::Float32, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("amount", DataType::Decimal128(12, 3), true),
        Field::new(
            "local",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("extra", DataType::Int64, true),
    ]));
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![Some("héllo"), None])),
            // 2024-05-01 12:00:00 UTC and a second later.
            Arc::new(
                TimestampMillisecondArray::from(vec![1_714_564_800_000, 1_714_564_801_000])
                    .with_timezone("+02:00"),
            ),
            Arc::new(Int32Array::from(vec![Some(-7), None])),
            Arc::new(Int64Array::from(vec![Some(2_000_000_000), Some(3)])),
            Arc::new(Float32Array::from(vec![Some(1.5), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
            Arc::new(
                Decimal128Array::from(vec![Some(12_345), Some(-5)])
                    .with_precision_and_scale(12, 3)
                    .unwrap(),
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_700_000_000_000_000),
                None,
            ])),
            Arc::new(Int64Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    let file = dir.path().join("ev.parquet");
    write_parquet(&file, &[batch]);
    let data_arg = data.to_str().unwrap();
    let import = |f: &std::path::Path| {
        sluice(&[
            "import",
            "--data-dir",
            data_arg,
            "--table",
            "ev",
            f.to_str().unwrap(),
        ])
    };
    let out = import(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("2 rows"), "{}", stdout(&out));
    let out = sql(
        &data,
        "SELECT ts, n, i, f, t, b, amount, local, absent FROM ev ORDER BY ts",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        cells(&out)[1..],
        [
            vec![
                "2024-05-01 12:00:00+00",
                "-7",
                "2000000000",
                "1.5",
                "héllo",
                "t",
                "12.35",
                "2023-11-14 22:13:20",
                ""
            ],
            // NULLs print as nothing.
            vec![
                "2024-05-01 12:00:01+00",
                "",
                "3",
                "",
                "",
                "f",
                "-0.01",
                "",
                ""
            ],
        ]
    );

    // The same file again: found in the manifest, skipped.
    let out = import(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("imported before"), "{}", stdout(&out));
    assert_eq!(cells(&sql(&data, "SELECT count(*) FROM ev"))[1], ["2"]);

    // Not Parquet: refused, naming the file.
    let bogus = dir.path().join("bogus.parquet");
    std::fs::write(&bogus, b"not a parquet file at all").unwrap();
    let out = import(&bogus);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bogus.parquet"), "{}", stderr(&out));

    // A NULL time refuses the whole file.
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        true,
    )]));
    let nulls = arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_714_564_800_000_000),
            None,
        ]))],
    )
    .unwrap();
    let null_time = dir.path().join("null-time.parquet");
    write_parquet(&null_time, &[nulls]);
    let out = import(&null_time);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not-null"), "{}", stderr(&out));
    assert_eq!(cells(&sql(&data, "SELECT count(*) FROM ev"))[1], ["2"]);
}

/// Rows already past the table's retention are counted and left out.
#[test]
fn import_leaves_out_rows_past_retention() {
    use arrow::array::TimestampMicrosecondArray;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = sql(
        &data,
        "CREATE TABLE recent (ts TIMESTAMP NOT NULL) WITH (time_column = 'ts', retention = '30 days')",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let now = chrono::Utc::now().timestamp_micros();
    let day = 86_400_000_000i64;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        false,
    )]));
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![Arc::new(TimestampMicrosecondArray::from(vec![
            now - 400 * day,
            now - 40 * day,
            now - day,
        ]))],
    )
    .unwrap();
    let file = dir.path().join("recent.parquet");
    write_parquet(&file, &[batch]);
    let out = sluice(&[
        "import",
        "--data-dir",
        data.to_str().unwrap(),
        "--table",
        "recent",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 rows in 1 segments, 2 past retention left out"),
        "{}",
        stdout(&out)
    );
    assert_eq!(cells(&sql(&data, "SELECT count(*) FROM recent"))[1], ["1"]);
}

/// An import killed at ten points leaves, each time, whole files or nothing
/// (never part of one), and the run that completes imports each file once.
#[test]
fn an_import_killed_at_any_point_leaves_whole_files_or_nothing() {
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    const ROWS: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = sql(
        &data,
        "CREATE TABLE big (ts TIMESTAMP NOT NULL, v BIGINT) \
         WITH (time_column = 'ts', retention = 'none', segment_rows = 10000)",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, false),
    ]));
    let mut files = Vec::new();
    for f in 0..2i64 {
        let batches: Vec<_> = (0..ROWS / 10_000)
            .map(|chunk| {
                let rows = (chunk * 10_000)..((chunk + 1) * 10_000);
                arrow::record_batch::RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(TimestampMicrosecondArray::from_iter_values(
                            rows.clone().map(|r| 1_714_564_800_000_000 + r * 1_000),
                        )),
                        Arc::new(Int64Array::from_iter_values(rows.map(|r| r + f * ROWS))),
                    ],
                )
                .unwrap()
            })
            .collect();
        let path = dir.path().join(format!("part-{f}.parquet"));
        write_parquet(&path, &batches);
        files.push(path);
    }
    let args = |data: &std::path::Path| -> Vec<String> {
        let mut a = vec![
            "import".to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--table".into(),
            "big".into(),
        ];
        a.extend(files.iter().map(|f| f.display().to_string()));
        a
    };
    let count = || -> i64 {
        let out = sql(&data, "SELECT count(*) FROM big");
        assert!(out.status.success(), "{}", stderr(&out));
        cells(&out)[1][0].parse().unwrap()
    };
    for kill in 0..10u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args(&data))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10 + kill * 25));
        let _ = child.kill();
        let _ = child.wait();
        let n = count();
        assert!(
            [0, ROWS, 2 * ROWS].contains(&n),
            "after kill {kill}: {n} rows"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args(&data))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sql(&data, "SELECT count(*), count(DISTINCT v), sum(v) FROM big");
    let n = 2 * ROWS;
    assert_eq!(
        cells(&out)[1],
        [n.to_string(), n.to_string(), (n * (n - 1) / 2).to_string()]
    );
    // Some kill landed in the middle of a file: its segments written, not
    // committed (the next open moved them aside).
    let aside = std::fs::read_dir(data.join("tables"))
        .unwrap()
        .filter_map(|t| std::fs::read_dir(t.ok()?.path().join("lost+found")).ok())
        .flatten()
        .count();
    assert!(aside > 0, "no kill landed while a file was being written");
}

/// An upsert table's import applies the key map in time order: each key
/// keeps its latest row by time, whatever the file's order; a dedup table
/// keeps the first, and importing a file of the same rows again (a rewritten
/// file, so not skipped) changes nothing.
#[test]
fn import_into_upsert_and_dedup_tables_keeps_their_semantics() {
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for ddl in [
        "CREATE TABLE u (ts TIMESTAMP NOT NULL, k BIGINT, v TEXT, PRIMARY KEY (k)) \
         WITH (time_column = 'ts', retention = 'none', upsert = 'full')",
        "CREATE TABLE d (ts TIMESTAMP NOT NULL, k BIGINT, v TEXT, PRIMARY KEY (k)) \
         WITH (time_column = 'ts', retention = 'none', dedup = 'true')",
    ] {
        let out = sql(&data, ddl);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Utf8, false),
    ]));
    let hour = 3_600_000_000i64;
    let base = 1_714_564_800_000_000i64;
    let rows = |extra: &str| {
        arrow::record_batch::RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![
                    base + 3 * hour,
                    base + hour,
                    base + 2 * hour,
                    base + 2 * hour,
                ])),
                Arc::new(Int64Array::from(vec![1, 1, 2, 1])),
                Arc::new(StringArray::from(vec![
                    format!("third{extra}"),
                    format!("first{extra}"),
                    format!("two{extra}"),
                    format!("second{extra}"),
                ])),
            ],
        )
        .unwrap()
    };
    let file = dir.path().join("keys.parquet");
    write_parquet(&file, &[rows("")]);
    let import = |table: &str, f: &std::path::Path| {
        let out = sluice(&[
            "import",
            "--data-dir",
            data.to_str().unwrap(),
            "--table",
            table,
            f.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    import("u", &file);
    import("d", &file);
    let answer = |table: &str| {
        cells(&sql(&data, &format!("SELECT k, v FROM {table} ORDER BY k")))[1..].to_vec()
    };
    assert_eq!(answer("u"), [["1", "third"], ["2", "two"]]);
    assert_eq!(answer("d"), [["1", "first"], ["2", "two"]]);
    assert!(import("u", &file).contains("imported before"));

    // The same keys and times again, another file: dedup keeps what it had.
    let again = dir.path().join("keys-again.parquet");
    write_parquet(&again, &[rows(" again")]);
    import("d", &again);
    assert_eq!(answer("d"), [["1", "first"], ["2", "two"]]);
}

/// `sluice gen streaming` writes the same bytes for the same seed and now,
/// the same plays as JSON lines and as Parquet, and its duplicates are what
/// a dedup table drops on import: one row per play.
#[test]
fn generated_plays_are_deterministic_and_dedup_leaves_one_row_per_play() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |out: &std::path::Path, format: &str| {
        let o = sluice(&[
            "gen",
            "streaming",
            "--out",
            out.to_str().unwrap(),
            "--events",
            "20000",
            "--seed",
            "5",
            "--now",
            "2026-11-30 12:00",
            "--format",
            format,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let said = gen(&a, "json");
    gen(&b, "json");
    let first = std::fs::read(a.join("plays.jsonl")).unwrap();
    assert_eq!(first, std::fs::read(b.join("plays.jsonl")).unwrap());
    let lines = first.iter().filter(|c| **c == b'\n').count();
    assert!(lines > 20_000, "{lines} lines: no duplicates");
    assert!(said.contains(&format!("{lines} plays")), "{said}");
    assert!(gen(&a, "parquet").contains(&format!("{lines} plays")));

    let data = dir.path().join("data");
    let out = sql(
        &data,
        "CREATE TABLE plays (event_id TEXT, user_id BIGINT, event_time TIMESTAMPTZ NOT NULL, \
         country TEXT, device_type TEXT, content_id BIGINT, content_category TEXT, \
         event_type TEXT, session_duration_sec BIGINT, completed BOOLEAN, PRIMARY KEY (event_id)) \
         WITH (time_column = 'event_time', retention = 'none', dedup = 'true')",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sluice(&[
        "import",
        "--data-dir",
        data.to_str().unwrap(),
        "--table",
        "plays",
        a.join("plays.parquet").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sql(
        &data,
        "SELECT count(*), count(DISTINCT event_id) FROM plays",
    );
    assert_eq!(cells(&out)[1], ["20000", "20000"]);
}

/// `sluice gen restaurant` writes its five topics as JSON lines, the same
/// for the same seed and now, or as Parquet tables (orders merged, one row
/// each) that `sluice import` loads into the dashboards' schema, and refuses
/// what is another workload's (--events) instead of ignoring it.
#[test]
fn generated_restaurant_topics_are_written_and_wrong_options_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "gen",
            "restaurant",
            "--out",
            out.to_str().unwrap(),
            "--orders",
            "2000",
            "--restaurants",
            "40",
            "--now",
            "2026-11-30 20:00",
        ];
        args.extend_from_slice(extra);
        sluice(&args)
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let out = gen(&a, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(gen(&b, &[]).status.success());
    for topic in ["orders", "order_items", "ratings", "restaurants", "items"] {
        let file = format!("{topic}.jsonl");
        let text = std::fs::read_to_string(a.join(&file)).unwrap();
        assert_eq!(
            text,
            std::fs::read_to_string(b.join(&file)).unwrap(),
            "{topic}"
        );
        let lines = text.lines().count();
        assert!(lines > 0, "{topic} is empty");
        assert!(
            stdout(&out).contains(&format!("{file}: {lines} messages")),
            "{}",
            stdout(&out)
        );
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("one JSON object a line");
        }
    }
    let out = gen(&dir.path().join("c"), &["--events", "5"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--events is for the streaming workload"),
        "{}",
        stderr(&out)
    );

    // Parquet: the tables of examples/dashboards/schema.sql, without Kafka.
    let parquet = dir.path().join("p");
    let out = gen(&parquet, &["--format", "parquet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let schema = include_str!("../examples/dashboards/schema.sql")
        .lines()
        .map(|l| match l.starts_with(") WITH (kafka_brokers") {
            true => ") WITH (",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let data = dir.path().join("db");
    let data_dir = data.to_str().unwrap();
    let out = sluice(&["sql", "--data-dir", data_dir, "--", &schema]);
    assert!(out.status.success(), "{}", stderr(&out));
    for table in ["orders", "order_items", "ratings", "restaurants", "items"] {
        let file = parquet.join(format!("{table}.parquet"));
        let out = sluice(&[
            "import",
            "--table",
            table,
            "--data-dir",
            data_dir,
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{table}: {}", stderr(&out));
    }
    let out = sluice(&[
        "sql",
        "--data-dir",
        data_dir,
        "SELECT count(*), count(DISTINCT order_id), count(*) FILTER (WHERE status = 'DELIVERED' \
         AND ready_at > confirmed_at AND delivered_at > ready_at) > 1000 FROM orders",
    ]);
    assert_eq!(cells(&out)[1], ["2000", "2000", "t"], "{}", stdout(&out));
    let out = sluice(&[
        "sql",
        "--data-dir",
        data_dir,
        "SELECT count(*), count(DISTINCT i.item_id) FROM order_items oi JOIN items i USING (item_id)",
    ]);
    let joined = &cells(&out)[1];
    assert!(joined[0].parse::<u64>().unwrap() >= 2000, "{joined:?}");
}
