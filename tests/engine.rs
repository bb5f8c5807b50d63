//! The engine's limits and fast paths, through the embedding API.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use sluice::{Database, QueryOptions, Value};

fn orders(rows: usize) -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, item TEXT, status TEXT, amount DOUBLE PRECISION) \
         WITH (time_column = 'ts', retention = 'none')",
    )
    .unwrap();
    let statuses = [
        "NEW",
        "CONFIRMED",
        "IN_KITCHEN",
        "READY_FOR_PICKUP",
        "DELIVERED",
    ];
    let batch: Vec<Vec<Value>> = (0..rows)
        .map(|i| {
            vec![
                Value::Timestamp(1_700_000_000_000_000 + i as i64 * 1_000_000),
                Value::Int((i % 1000) as i64),
                if i % 97 == 0 {
                    Value::Null
                } else {
                    Value::Text(format!("item-{}", i % 200))
                },
                Value::Text(statuses[i % 5].to_string()),
                Value::Float((i % 50) as f64 + 0.5),
            ]
        })
        .collect();
    db.append("orders", batch).unwrap();
    (dir, db)
}

fn one_text(db: &Database, sql: &str) -> String {
    let batches = db.query(sql).unwrap();
    sluice::pretty::format_batches(&batches).unwrap()
}

#[test]
fn a_timeout_or_a_cancel_stops_the_statement_with_57014() {
    let (_dir, mut db) = orders(1000);
    db.set_options(QueryOptions {
        timeout: Some(Duration::ZERO),
        ..QueryOptions::default()
    });
    let err = db.query("SELECT count(*) FROM orders").unwrap_err();
    assert_eq!(err.sqlstate(), "57014");
    assert!(err.to_string().contains("statement timeout"), "{err}");

    db.set_options(QueryOptions::default());
    let cancel = Arc::new(AtomicBool::new(true));
    let err = db
        .execute_cancellable("SELECT item, count(*) FROM orders GROUP BY item", cancel)
        .unwrap_err();
    assert_eq!(err.sqlstate(), "57014");
    assert!(err.to_string().contains("user request"), "{err}");
}

/// A join's table past the memory bound fails with 53200 and the database
/// goes on; small aggregations still fit.
#[test]
fn a_hash_table_past_the_memory_bound_fails_with_53200_and_the_database_goes_on() {
    let (_dir, mut db) = orders(200_000);
    db.set_options(QueryOptions {
        memory_limit: 1 << 20,
        ..QueryOptions::default()
    });
    let err = db
        .query("SELECT a.item FROM orders a JOIN orders b ON a.ts = b.ts")
        .unwrap_err();
    assert_eq!(err.sqlstate(), "53200", "{err}");
    let text = one_text(&db, "SELECT count(DISTINCT status) FROM orders");
    assert!(text.contains('5'), "{text}");
}

/// A GROUP BY whose groups pass the statement's memory bound goes through
/// spill files and answers exactly as it does in memory: over a table scan
/// and over a computed input, with order-sensitive and DISTINCT aggregates,
/// and with -0 and 0 as one key (the spill's hash must group as the hash
/// table does). EXPLAIN ANALYZE says it spilled; the files are gone after.
#[test]
fn a_group_by_past_the_memory_bound_spills_to_disk_and_answers_the_same() {
    let (dir, mut db) = orders(200_000);
    // Each GROUP BY is summed up by an outer query, so that only the groups,
    // not the result, pass the bound: a group lost, split or merged wrongly
    // changes the count or a sum.
    let queries = [
        "SELECT count(*), sum(n), max(n), sum(total), min(first), max(first) FROM \
         (SELECT count(*) AS n, sum(amount) AS total, min(item) AS first FROM orders \
         GROUP BY ts - INTERVAL '1 second' * (restaurant_id % 3)) g",
        "SELECT count(*), sum(length(s)), min(s), max(s) FROM (SELECT string_agg(status, ',') AS s \
         FROM orders WHERE restaurant_id < 900 \
         GROUP BY restaurant_id % 7, ts - INTERVAL '1 second' * (restaurant_id % 3)) g",
        "SELECT count(*), sum(d), sum(round(a * 1000)) FROM (SELECT count(DISTINCT item) AS d, avg(amount) AS a \
         FROM orders GROUP BY ts - INTERVAL '1 second' * (restaurant_id % 3)) g",
        "SELECT count(*), sum(n), min(n), max(n) FROM (SELECT g / 2 AS k, \
         CASE WHEN g % 2 = 0 THEN CAST(0.0 AS DOUBLE PRECISION) \
         ELSE -CAST(0.0 AS DOUBLE PRECISION) END AS z, count(*) AS n \
         FROM generate_series(0, 199999) AS s(g) GROUP BY 1, 2) t",
    ];
    let in_memory: Vec<Vec<String>> = queries.iter().map(|q| lines(&db, q)).collect();
    assert!(
        in_memory[0][0].starts_with("66800|200000|3|"),
        "{in_memory:?}"
    );
    assert_eq!(
        in_memory[3],
        ["100000|200000|2|2"],
        "-0 and 0 make one group"
    );
    // Room for the series' 1.6 MB, not for the groups.
    db.set_options(QueryOptions {
        memory_limit: 2 << 20,
        ..QueryOptions::default()
    });
    for (query, expected) in queries.iter().zip(&in_memory) {
        assert_eq!(&lines(&db, query), expected, "{query}");
        let plan = lines(&db, &format!("EXPLAIN ANALYZE {query}")).join("\n");
        assert!(
            plan.contains("Aggregate spilled to disk"),
            "{query}\n{plan}"
        );
    }
    // So little memory that a file's groups do not fit either: it is split again.
    db.set_options(QueryOptions {
        memory_limit: 64 << 10,
        ..QueryOptions::default()
    });
    assert_eq!(lines(&db, queries[0]), in_memory[0]);
    let plan = lines(&db, &format!("EXPLAIN ANALYZE {}", queries[0])).join("\n");
    assert!(plan.contains("splits deep=2"), "{plan}");
    let spill = dir.path().join("spill");
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill files are unlinked"
    );
}

/// The scan evaluates TEXT predicates and group keys on dictionary entries. The same
/// query with every TEXT column forced through a cast (which the fast path must
/// decode row by row) has to give the same answer.
#[test]
fn dictionary_fast_path_agrees_with_row_by_row_evaluation() {
    let (_dir, db) = orders(150_000); // three blocks
    let pairs = [
        (
            "SELECT item, count(*), sum(amount) FROM orders WHERE status IN ('NEW', 'DELIVERED') GROUP BY item ORDER BY item NULLS FIRST",
            "SELECT item::text || '' AS item, count(*), sum(amount) FROM orders WHERE status::text || '' IN ('NEW', 'DELIVERED') GROUP BY 1 ORDER BY 1 NULLS FIRST",
        ),
        (
            "SELECT count(*) FROM orders WHERE item LIKE 'item-1%' AND status <> 'NEW'",
            "SELECT count(*) FROM orders WHERE item || '' LIKE 'item-1%' AND status || '' <> 'NEW'",
        ),
        (
            "SELECT lower(status), count(DISTINCT item) FROM orders WHERE item IS NULL OR restaurant_id < 10 GROUP BY 1 ORDER BY 1",
            "SELECT lower(status || ''), count(DISTINCT item || '') FROM orders WHERE item || '' IS NULL OR restaurant_id < 10 GROUP BY 1 ORDER BY 1",
        ),
        (
            "SELECT coalesce(item, 'none') AS i, approx_count_distinct(restaurant_id) FROM orders GROUP BY 1 ORDER BY 1 LIMIT 5",
            "SELECT coalesce(item || '', 'none') AS i, approx_count_distinct(restaurant_id) FROM orders GROUP BY 1 ORDER BY 1 LIMIT 5",
        ),
    ];
    for (fast, slow) in pairs {
        let a = one_text(&db, fast);
        let b = one_text(&db, slow);
        // Only the header may differ (names of computed columns).
        let body = |s: &str| s.lines().skip(3).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&a), body(&b), "{fast}");
        assert!(a.lines().count() > 4, "{fast} returned nothing:\n{a}");
    }
}

#[test]
fn approx_count_distinct_is_within_two_percent_at_a_million_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE u (ts TIMESTAMP, id BIGINT) WITH (time_column = 'ts', retention = 'none')",
    )
    .unwrap();
    for chunk in 0..10 {
        let rows = (0..100_000)
            .map(|i| vec![Value::Timestamp(0), Value::Int(chunk * 100_000 + i)])
            .collect();
        db.append("u", rows).unwrap();
    }
    let text = one_text(
        &db,
        "SELECT approx_count_distinct(id), count(DISTINCT id) FROM u",
    );
    let nums: Vec<f64> = text
        .lines()
        .nth(3)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums[1], 1_000_000.0);
    assert!((nums[0] - 1e6).abs() / 1e6 < 0.02, "estimate {}", nums[0]);
}

/// Queries racing seals: every query sees each acknowledged row exactly once.
#[test]
fn queries_racing_seals_see_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(Database::open(dir.path()).unwrap());
    db.execute("CREATE TABLE t (ts TIMESTAMP, id BIGINT, k TEXT) WITH (time_column = 'ts', retention = 'none')")
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sealer = {
        let (db, stop) = (std::sync::Arc::clone(&db), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut seals = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seals += db.seal().unwrap();
            }
            seals
        })
    };
    let mut appended = 0i64;
    let mut last_seen = 0i64;
    for round in 0..60 {
        let rows = (0..50)
            .map(|i| {
                let id = round * 50 + i;
                vec![
                    Value::Timestamp(id),
                    Value::Int(id),
                    Value::Text(format!("k{}", id % 7)),
                ]
            })
            .collect();
        db.append("t", rows).unwrap();
        appended += 50;
        let text = one_text(&db, "SELECT count(*), count(DISTINCT id), sum(id) FROM t");
        let nums: Vec<i64> = text
            .lines()
            .nth(3)
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nums[0], nums[1], "a row counted twice: {text}");
        assert_eq!(nums[0], appended, "rows missing or extra: {text}");
        assert_eq!(nums[2], appended * (appended - 1) / 2);
        assert!(nums[0] >= last_seen);
        last_seen = nums[0];
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seals = sealer.join().unwrap();
    assert!(seals >= 3, "only {seals} seals happened");
    // And after a restart, the same rows.
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    assert!(one_text(&db, "SELECT count(*) FROM t").contains(&appended.to_string()));
}

/// A one-restaurant, last-hour query over sealed, time-ordered segments: zone maps
/// skip the segments and blocks outside the hour, the inverted index the blocks
/// without the status, and the answer equals the unpruned one.
#[test]
fn explain_analyze_shows_segments_pruned_and_the_index_used() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        // Full segments, so the background compactor leaves the four alone.
        "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, status TEXT) WITH (time_column = 'ts', retention = 'none', segment_rows = '100000')",
    )
    .unwrap();
    let hour = 3_600_000_000i64;
    for day in 0..4i64 {
        let rows = (0..100_000i64)
            .map(|i| {
                let t = day * 24 * hour + i * (24 * hour / 100_000);
                vec![
                    Value::Timestamp(t),
                    Value::Int(i % 500),
                    Value::Text(if i % 1000 == 0 {
                        "CANCELLED".into()
                    } else {
                        "DELIVERED".into()
                    }),
                ]
            })
            .collect();
        db.append("orders", rows).unwrap();
        db.seal().unwrap();
    }
    // Restaurant 0 has the cancelled orders (every thousandth row).
    let last_hour = "ts >= TIMESTAMP '1970-01-04 23:00:00' AND restaurant_id = 0";
    let plan = one_text(
        &db,
        &format!("EXPLAIN ANALYZE SELECT count(*) FROM orders WHERE {last_hour} AND status = 'CANCELLED'"),
    );
    let scan_line = plan
        .lines()
        .find(|l| l.contains("Scan orders: sealed segments=4"))
        .unwrap_or_else(|| panic!("{plan}"));
    let number = |label: &str| -> usize {
        let rest = &scan_line[scan_line
            .find(label)
            .unwrap_or_else(|| panic!("{label}: {scan_line}"))
            + label.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(number("pruned="), 3, "{scan_line}");
    // Time and rows per operator; the filter runs inside the scan.
    let aggregate = plan
        .lines()
        .find(|l| l.contains("Aggregate:"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(
        aggregate.contains("(time=") && aggregate.contains(" rows=1)"),
        "{plan}"
    );
    assert!(plan.contains("(in the scan above)"), "{plan}");
    let cancelled = cells(
        &db,
        &format!("SELECT count(*) FROM orders WHERE {last_hour} AND status = 'CANCELLED'"),
    );
    assert_eq!(
        number("rows selected=").to_string(),
        cancelled[0][0],
        "{scan_line}"
    );
    assert!(number("rows selected=") > 0, "{scan_line}");
    assert!(number("pruned by zone maps=") >= 6, "{scan_line}");
    // Only the segment the zone maps keep consults its indexes: the text
    // column's, whose rare value has the smaller postings, first, then the
    // integer column's (through its key directory).
    assert_eq!(number("index lookups="), 2, "{scan_line}");
    assert!(
        scan_line.contains("index lookups=2 on status, restaurant_id;"),
        "{scan_line}"
    );
    assert_eq!(number("scanned whole="), 0, "{scan_line}");
    // Same answers with and without pruning (an expression defeats it).
    for filter in [
        last_hour.to_string(),
        format!("{last_hour} AND status = 'CANCELLED'"),
    ] {
        let pruned = one_text(
            &db,
            &format!("SELECT count(*), sum(restaurant_id) FROM orders WHERE {filter}"),
        );
        let unpruned = one_text(
            &db,
            &format!(
                "SELECT count(*), sum(restaurant_id) FROM orders WHERE {} ",
                filter
                    .replace("ts >=", "ts + INTERVAL '0 seconds' >=")
                    .replace("restaurant_id = 7", "restaurant_id + 0 = 7")
            ),
        );
        assert_eq!(pruned.lines().nth(3), unpruned.lines().nth(3), "{filter}");
    }
}

#[test]
fn a_failed_insert_applies_nothing() {
    let (_dir, db) = orders(10);
    let err = db
        .execute(
            "INSERT INTO orders (ts, restaurant_id) VALUES ('2024-01-01', 1), ('2024-01-01', 'x')",
        )
        .unwrap_err();
    assert_eq!(err.sqlstate(), "22P02");
    let err = db
        .append(
            "orders",
            vec![
                vec![
                    Value::Timestamp(0),
                    Value::Int(1),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
                vec![Value::Bool(true)],
            ],
        )
        .unwrap_err();
    assert!(err.to_string().contains("row has 1 values"), "{err}");
    assert!(one_text(&db, "SELECT count(*) FROM orders").contains("10"));
}

/// A damaged sealed segment fails the query that reads it with an error naming the
/// file, is then left out of queries (its rows gone, the rest answered), and
/// `sluice.segments` reports it with the check it failed.
#[test]
fn a_corrupt_segment_is_named_then_quarantined_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rows = |from: i64| -> Vec<Vec<Value>> {
        (from..from + 10_000)
            .map(|i| vec![Value::Timestamp(i * 1_000_000), Value::Int(scatter(i))])
            .collect()
    };
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute("CREATE TABLE events (ts TIMESTAMP, n BIGINT) WITH (time_column = 'ts', retention = 'none')")
            .unwrap();
        for from in [0, 10_000] {
            db.append("events", rows(from)).unwrap();
            db.seal().unwrap();
        }
        db.append("events", rows(20_000)).unwrap();
    }
    // Flip one byte inside the first segment's first block of `n`.
    let table_dir = std::fs::read_dir(dir.path().join("tables"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut segments: Vec<_> = std::fs::read_dir(&table_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sluice"))
        .collect();
    segments.sort();
    let file = &segments[0];
    let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
    let section = sluice_storage::segment::SealedSegment::open(file)
        .unwrap()
        .footer()
        .columns[1]
        .blocks[0]
        .section;
    let mut bytes = std::fs::read(file).unwrap();
    bytes[(section.offset + section.len / 2) as usize] ^= 0xff;
    std::fs::write(file, bytes).unwrap();

    let db = Database::open(dir.path()).unwrap();
    let err = db
        .query("SELECT sum(n) FROM events")
        .unwrap_err()
        .to_string();
    assert!(err.contains(&file_name), "{err}");
    // The damaged segment's 10,000 rows are left out; the rest still answer.
    let sum: i64 = (10_000..30_000).map(scatter).sum();
    assert_eq!(
        cells(&db, "SELECT count(*), sum(n) FROM events"),
        [["20000".to_string(), sum.to_string()]]
    );
    let report = cells(
        &db,
        "SELECT segment_id, state, rows, error IS NOT NULL \
         FROM sluice.segments WHERE table_name = 'events' ORDER BY segment_id",
    );
    let expected: Vec<Vec<String>> = [
        ["0", "corrupt", "10000", "true"],
        ["1", "sealed", "10000", "false"],
        ["2", "mutable", "10000", "false"],
    ]
    .iter()
    .map(|r| r.iter().map(|c| c.to_string()).collect())
    .collect();
    assert_eq!(report, expected);
    let error = cells(
        &db,
        "SELECT error FROM sluice.segments WHERE state = 'corrupt'",
    );
    assert!(error[0][0].contains("checksum"), "{error:?}");
    drop(db);

    // The quarantine is in the manifest: after a restart the segment stays out
    // from the first query on (no query has to fail on it again).
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(
        cells(&db, "SELECT count(*), sum(n) FROM events"),
        [["20000".to_string(), sum.to_string()]]
    );
    assert_eq!(
        cells(
            &db,
            "SELECT count(*) FROM sluice.segments WHERE state = 'corrupt'"
        ),
        [["1".to_string()]]
    );
    drop(db);
    // Salvage moves the file aside and takes it out of the manifest.
    let report = sluice_storage::check::check_data_dir(dir.path(), true).unwrap();
    assert!(!report.has_damage_left(), "{report:?}");
    assert!(table_dir.join("lost+found").join(&file_name).exists());
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(
        cells(
            &db,
            "SELECT count(*) FROM sluice.segments WHERE state = 'corrupt'"
        ),
        [["0".to_string()]]
    );
    assert_eq!(
        cells(&db, "SELECT count(*) FROM events"),
        [["20000".to_string()]]
    );
}

/// Values that jump around, so their blocks pack as values with bytes to damage.
fn scatter(i: i64) -> i64 {
    i * 7919 % 10_007
}

/// A query's rows as display strings.
fn cells(db: &Database, sql: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for batch in db.query(sql).unwrap() {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .unwrap()
            })
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    rows
}

/// `string_agg` without ORDER BY follows scan order (segments in the order they
/// were sealed) even though the scan runs on several workers.
#[test]
fn string_agg_over_many_segments_keeps_scan_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE t (ts TIMESTAMP, name TEXT) WITH (time_column = 'ts', retention = 'none', segment_rows = '1')",
    )
    .unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        db.append(
            "t",
            vec![vec![Value::Timestamp(i as i64), Value::Text(n.clone())]],
        )
        .unwrap();
        db.seal().unwrap();
    }
    for _ in 0..5 {
        assert_eq!(
            cells(&db, "SELECT string_agg(name, ',') FROM t")[0][0],
            names.join(",")
        );
    }
}

/// Ranges, `<>`, `NOT IN` and LIKE prefixes on a TEXT column go through the sorted
/// dictionary and the inverted index: blocks without a selected row are skipped,
/// and the answers equal those of the same filter written so no index applies.
#[test]
fn text_ranges_negations_and_like_prefixes_use_the_inverted_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute("CREATE TABLE t (ts TIMESTAMP, item TEXT, n BIGINT) WITH (time_column = 'ts', retention = 'none')")
        .unwrap();
    // Four 64 Ki-row blocks; the rare items sit in the third block only.
    let rows = (0..4 * 65_536i64)
        .map(|i| {
            let item = match i {
                _ if i % 7 == 0 => None,
                150_000..=150_099 => Some("rare-a".to_string()),
                150_100..=150_149 => Some("rare-b".to_string()),
                _ => Some(format!("common-{}", i % 3)),
            };
            vec![
                Value::Timestamp(i),
                item.map_or(Value::Null, Value::Text),
                Value::Int(i),
            ]
        })
        .collect();
    db.append("t", rows).unwrap();
    db.seal().unwrap();
    for (filter, pruned) in [
        ("item LIKE 'rare%'", 3),
        ("item >= 'r' AND item < 's'", 3),
        ("item = 'rare-b' OR item = 'rare-a'", 3),
        ("item IN ('rare-a', 'missing') AND n % 2 = 0", 3),
        ("NOT (item < 'rare')", 3),
        ("item NOT LIKE 'common%'", 3),
        // The common values are too frequent to be indexed: a condition on one
        // is answered as the complement of the others, which works while those
        // are indexed (the rare ones) and not when they are common too.
        ("item NOT IN ('common-0', 'common-1', 'common-2')", 3),
        (
            "item <> 'common-0' AND item NOT IN ('common-1', 'common-2')",
            0,
        ),
        ("item LIKE 'common-1'", 0),
        ("item LIKE 'rare%' OR n < 10", 0),
    ] {
        let plan = one_text(
            &db,
            &format!("EXPLAIN ANALYZE SELECT count(*) FROM t WHERE {filter}"),
        );
        assert!(
            plan.contains(&format!("pruned by inverted index={pruned}")),
            "{filter}: {plan}"
        );
        let indexed = cells(
            &db,
            &format!("SELECT count(*), sum(n) FROM t WHERE {filter}"),
        );
        let plain = cells(
            &db,
            &format!(
                "SELECT count(*), sum(n) FROM t WHERE {}",
                filter.replace("item", "(item || '')")
            ),
        );
        assert_eq!(indexed, plain, "{filter}");
        assert_ne!(indexed[0][0], "0", "{filter}");
    }
}

/// Integer comparisons with a constant run on sealed blocks' packed codes (both
/// frame-of-reference blocks and delta-packed ones, whose codes are derived):
/// every operator, constants inside, between and outside the values, NULLs.
#[test]
fn integer_comparisons_on_packed_codes_match_the_decoded_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE t (ts TIMESTAMP, random BIGINT, steady BIGINT, small INTEGER) WITH (time_column = 'ts', retention = 'none')",
    )
    .unwrap();
    let mut x = 88172645463325252u64;
    let rows = (0..150_000i64)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vec![
                Value::Timestamp(i * 1000),
                // Random: frame-of-reference packed, with NULLs.
                if i % 11 == 0 {
                    Value::Null
                } else {
                    Value::Int((x % 5000) as i64 * 3 - 700)
                },
                // Steady steps: delta-packed.
                Value::Int(1_000_000 + i * 7),
                Value::Int(i % 200),
            ]
        })
        .collect();
    db.append("t", rows).unwrap();
    db.seal().unwrap();
    for column in ["random", "steady", "small"] {
        for constant in [
            "-701", "-700", "41", "42", "1000007", "1349993", "14300", "99", "0", "9999999",
        ] {
            for op in ["=", "<>", "<", "<=", ">", ">="] {
                let fast = cells(
                    &db,
                    &format!("SELECT count(*), sum(steady) FROM t WHERE {column} {op} {constant}"),
                );
                let slow = cells(
                    &db,
                    &format!(
                        "SELECT count(*), sum(steady) FROM t WHERE {column} + 0 {op} {constant}"
                    ),
                );
                assert_eq!(fast, slow, "{column} {op} {constant}");
            }
        }
    }
    // A constant on the left, and two conditions on codes at once.
    assert_eq!(
        cells(
            &db,
            "SELECT count(*) FROM t WHERE 42 > random AND small >= 100"
        ),
        cells(
            &db,
            "SELECT count(*) FROM t WHERE random + 0 < 42 AND small + 0 >= 100"
        )
    );
}

#[path = "../fuzz/harness.rs"]
mod fuzz_harness;

/// The system allocator, refusing any single allocation over 2 GiB as
/// libFuzzer's malloc limit does: a corpus input that once asked for 17 GB
/// (overcommitted, so never noticed without the limit) aborts this binary
/// again if the check against it is lost.
struct CappedAllocator;

const ALLOCATION_CAP: usize = 2 << 30;

// SAFETY: every call is passed unchanged to `System`, except that an
// allocation over the cap returns null, which callers must already handle
// (the standard library aborts with the size).
unsafe impl std::alloc::GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc`, forwarded.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc_zeroed`, forwarded.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_CAP {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `realloc`, forwarded; `ptr` came
        // from `System` through this allocator.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

/// Every input in the fuzz corpora (`fuzz/corpus/<target>/`, kept by `cargo
/// fuzz` runs and minimised) goes through its target's harness again: a crash
/// once found and fixed stays fixed, on stable and in CI.
#[test]
fn fuzz_corpora_replay_without_panics() {
    type Harness = fn(&[u8]);
    let targets: [(&str, Harness); 4] = [
        ("segment_reader", fuzz_harness::segment_reader),
        ("wal_reader", fuzz_harness::wal_reader),
        ("manifest_reader", fuzz_harness::manifest_reader),
        ("sql_frontend", fuzz_harness::sql_frontend),
    ];
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, run) in targets {
        let dir = corpus.join(target);
        let inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        assert!(!inputs.is_empty(), "the {target} corpus is empty");
        for input in &inputs {
            let data = std::fs::read(input).expect("a corpus file");
            // On a thread with the stack the server gives statements.
            let outcome = std::thread::scope(|s| {
                std::thread::Builder::new()
                    .stack_size(sluice_query::STATEMENT_STACK_BYTES)
                    .spawn_scoped(s, || std::panic::catch_unwind(|| run(&data)))
                    .expect("a replay thread")
                    .join()
                    .expect("the replay thread")
            });
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("{} panicked: {message:?}", input.display());
            }
        }
    }
}

/// The single BIGINT a query returns.
fn one_i64(db: &Database, sql: &str) -> i64 {
    let batches = db.query(sql).unwrap();
    let column = batches[0].column(0);
    column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap_or_else(|| panic!("{sql}: {:?}", column.data_type()))
        .value(0)
}

/// Retention, with the clock moved instead of waiting: rows older than the
/// cutoff are not stored when they arrive, are invisible to queries exactly at
/// the row (a segment straddling the cutoff is filtered, not dropped), and a
/// segment whose newest row is past the cutoff leaves `sluice.segments` and
/// the disk.
#[test]
fn retention_filters_at_the_row_and_evicts_whole_segments() {
    const HOUR: i64 = 3_600_000_000;
    const DAY: i64 = 24 * HOUR;
    let dir = tempfile::tempdir().unwrap();
    let clock = sluice::OffsetClock::new();
    let db = Database::open_with_clock(dir.path(), Arc::clone(&clock) as _).unwrap();
    db.execute("CREATE TABLE ev (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', retention = '180 days', segment_rows = '60')")
        .unwrap();
    let table = db.engine().catalog().table("ev").unwrap();
    let start = sluice::Clock::now_micros(&*clock);
    let rows = |from: i64, n: i64, step: i64| -> Vec<Vec<Value>> {
        (0..n)
            .map(|i| vec![Value::Timestamp(from + i * step), Value::Int(i)])
            .collect()
    };
    // A: 50 rows an hour apart from 100 days ago; B: 50 rows 10 days ago,
    // each sealed into its own segment. C: 30 rows 200 days ago, past
    // retention on arrival. D: 20 rows a day ago, not sealed.
    assert_eq!(
        db.append("ev", rows(start - 100 * DAY, 50, HOUR)).unwrap(),
        50
    );
    table.seal_now().unwrap();
    assert_eq!(db.append("ev", rows(start - 10 * DAY, 50, 1)).unwrap(), 50);
    table.seal_now().unwrap();
    assert_eq!(db.append("ev", rows(start - 200 * DAY, 30, 1)).unwrap(), 0);
    db.execute(
        "INSERT INTO ev VALUES (now() - interval '200 days', 1), (now() - interval '1 day', 2)",
    )
    .unwrap();
    assert_eq!(db.append("ev", rows(start - DAY, 19, 1)).unwrap(), 19);
    assert_eq!(one_i64(&db, "SELECT count(*) FROM ev"), 120);
    assert_eq!(
        one_i64(
            &db,
            "SELECT rows_expired_on_arrival FROM sluice.retention WHERE table_name = 'ev'"
        ),
        31
    );

    // 80 days and 25.5 hours on, the cutoff falls inside A: rows 26..49 of A
    // are within retention, rows 0..25 are not; A stays on disk.
    clock.advance_micros(80 * DAY + 25 * HOUR + HOUR / 2);
    assert_eq!(one_i64(&db, "SELECT count(*) FROM ev"), 24 + 50 + 20);
    assert_eq!(
        one_i64(
            &db,
            "SELECT min(v) FROM ev WHERE v >= 0 AND ts < now() - interval '99 days'"
        ),
        26
    );
    assert_eq!(db.engine().catalog().evict_expired(), 0);
    assert_eq!(
        one_i64(
            &db,
            "SELECT count(*) FROM ev WHERE ts >= now() - interval '180 days'"
        ),
        one_i64(&db, "SELECT count(*) FROM ev"),
        "the cutoff is the statement's now()"
    );

    // 181 days on: everything written so far is past retention, and all of
    // it is sealed (D with this seal). Rows written now are all that is left;
    // the three sealed segments are evicted.
    table.seal_now().unwrap();
    let files_before = std::fs::read_dir(table.dir()).unwrap().count();
    clock.advance_micros(181 * DAY - (80 * DAY + 25 * HOUR + HOUR / 2));
    let now = sluice::Clock::now_micros(&*clock);
    db.append("ev", rows(now - HOUR, 7, 1)).unwrap();
    assert_eq!(one_i64(&db, "SELECT count(*) FROM ev"), 7);
    // The background maintenance may evict first; either way, once each.
    db.engine().catalog().evict_expired();
    assert_eq!(
        one_i64(
            &db,
            "SELECT count(*) FROM sluice.segments WHERE table_name = 'ev' AND state = 'sealed'"
        ),
        0
    );
    assert_eq!(
        std::fs::read_dir(table.dir()).unwrap().count(),
        files_before - 3
    );
    assert_eq!(
        one_i64(&db, "SELECT segments_evicted * 1000 + rows_evicted FROM sluice.retention WHERE table_name = 'ev'"),
        3 * 1000 + 120
    );
    assert_eq!(one_i64(&db, "SELECT count(*) FROM ev"), 7);
    // After a restart, the same.
    drop(table);
    drop(db);
    let db = Database::open_with_clock(dir.path(), Arc::clone(&clock) as _).unwrap();
    assert_eq!(one_i64(&db, "SELECT count(*) FROM ev"), 7);
}

/// The rows of a query as text lines, `|`-separated.
fn one_cell(db: &Database, sql: &str) -> String {
    cells(db, sql).remove(0).remove(0)
}

fn lines(db: &Database, sql: &str) -> Vec<String> {
    let batches = db.query(sql).unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| arrow::util::display::array_value_to_string(c, r).unwrap())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// Upserts through INSERT: full and partial, out of order, deletes, dedup;
/// the same answers with the rows in memory, sealed, and after a restart.
#[test]
fn upserts_keep_one_row_per_key_through_seals_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let setup = "
        CREATE TABLE full_t (ts TIMESTAMP, id BIGINT, status TEXT, PRIMARY KEY (id))
            WITH (time_column = 'ts', retention = 'none', upsert = 'full');
        CREATE TABLE orders (ts TIMESTAMP, id TEXT, status TEXT, confirmed_at TIMESTAMP,
                             ready_at TIMESTAMP, items INTEGER, gone BOOLEAN, PRIMARY KEY (id))
            WITH (time_column = 'ts', retention = 'none', upsert = 'partial',
                  upsert_strategies = 'items = increment', delete_column = 'gone');
        CREATE TABLE plays (ts TIMESTAMP, event_id BIGINT, country TEXT, PRIMARY KEY (event_id))
            WITH (time_column = 'ts', retention = 'none', dedup = true);
        CREATE TABLE ties (ts TIMESTAMP, id BIGINT, status TEXT, PRIMARY KEY (id))
            WITH (time_column = 'ts', retention = 'none', upsert = 'full', sort_key = 'status');";
    let check = |db: &Database, when: &str| {
        assert_eq!(
            lines(db, "SELECT id, status FROM full_t ORDER BY id"),
            ["1|DELIVERED", "2|NEW", "3|READY"],
            "{when}"
        );
        assert_eq!(
            lines(
                db,
                "SELECT id, status, confirmed_at, ready_at, items FROM orders ORDER BY id"
            ),
            [
                "a|READY|2026-01-01T10:01:00|2026-01-01T10:09:00|3",
                "c|NEW|||1",
            ],
            "{when}"
        );
        assert_eq!(
            lines(
                db,
                "SELECT count(*), count(DISTINCT event_id), min(country) FROM plays"
            ),
            ["3|3|DE"],
            "{when}"
        );
        // Equal comparison values: the later row won. Sealing sorts it before
        // the earlier one (by status), so only the persisted superseded rows
        // tell which it was after a restart.
        assert_eq!(lines(db, "SELECT status FROM ties"), ["NEW"], "{when}");
    };
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute(setup).unwrap();
        db.execute(
            "INSERT INTO full_t VALUES ('2026-01-01 10:00', 1, 'NEW'), ('2026-01-01 10:00', 2, 'NEW');
             INSERT INTO full_t VALUES ('2026-01-01 10:05', 1, 'CONFIRMED'), ('2026-01-01 10:01', 3, 'NEW');
             INSERT INTO full_t VALUES ('2026-01-01 10:20', 1, 'DELIVERED'), ('2026-01-01 10:09', 3, 'READY');
             -- late: older than what is stored for key 1, so dropped
             INSERT INTO full_t VALUES ('2026-01-01 10:10', 1, 'PICKED_UP');",
        )
        .unwrap();
        db.execute(
            "INSERT INTO orders VALUES ('2026-01-01 10:00', 'a', 'NEW', NULL, NULL, 1, false);
             INSERT INTO orders VALUES ('2026-01-01 10:01', 'a', 'CONFIRMED', '2026-01-01 10:01', NULL, 1, NULL);
             INSERT INTO orders VALUES ('2026-01-01 10:00', 'b', 'NEW', NULL, NULL, 5, NULL);
             INSERT INTO orders VALUES ('2026-01-01 10:02', 'b', NULL, NULL, NULL, NULL, true);
             -- late for b (deleted at 10:02): stays deleted
             INSERT INTO orders VALUES ('2026-01-01 10:01', 'b', 'CONFIRMED', NULL, NULL, 1, NULL);
             INSERT INTO orders VALUES ('2026-01-01 10:09', 'a', 'READY', NULL, '2026-01-01 10:09', 1, NULL);
             INSERT INTO orders VALUES ('2026-01-01 10:03', 'c', 'NEW', NULL, NULL, 1, NULL);",
        )
        .unwrap();
        db.execute(
            "INSERT INTO ties VALUES ('2026-01-01 10:00', 1, 'READY');
             INSERT INTO ties VALUES ('2026-01-01 10:00', 1, 'NEW');",
        )
        .unwrap();
        db.execute(
            "INSERT INTO plays VALUES ('2026-01-01 10:00', 1, 'DE'), ('2026-01-01 10:00', 2, 'FR');
             INSERT INTO plays VALUES ('2026-01-01 10:05', 1, 'US'), ('2026-01-01 10:06', 3, 'IT');",
        )
        .unwrap();
        check(&db, "in memory");
        for t in ["full_t", "orders", "plays", "ties"] {
            db.engine().catalog().table(t).unwrap().seal_now().unwrap();
        }
        check(&db, "sealed");
        // Rows after the seal supersede sealed rows; a restart replays them
        // from the write-ahead file on top of the sealed state.
        db.execute(
            "INSERT INTO full_t VALUES ('2026-01-01 10:30', 2, 'NEW');
             INSERT INTO orders VALUES ('2026-01-01 10:01', 'c', 'NEW', NULL, NULL, 7, NULL);
             INSERT INTO plays VALUES ('2026-01-01 11:00', 2, 'XX');",
        )
        .unwrap();
        check(&db, "after the seal");
    }
    let db = Database::open(dir.path()).unwrap();
    check(&db, "after a restart");
    for t in ["full_t", "orders", "plays", "ties"] {
        db.engine().catalog().table(t).unwrap().seal_now().unwrap();
    }
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    check(&db, "after a second seal and restart");
    // Merging (here, or by the background maintenance first) leaves the
    // superseded rows out: full_t's two segments held six rows, of which the
    // committed cleared files supersede four (1 NEW, 1 CONFIRMED, 2 NEW, 3 NEW).
    for t in ["full_t", "orders", "plays", "ties"] {
        let table = db.engine().catalog().table(t).unwrap();
        table.compact_now().unwrap();
        assert_eq!(table.manifest().segments.len(), 1, "{t}");
    }
    assert_eq!(db.engine().catalog().table("full_t").unwrap().rows(), 3);
    check(&db, "after merging");
    // A row after the merge supersedes a merged row; then a restart.
    db.execute("INSERT INTO full_t VALUES ('2026-01-01 10:40', 3, 'READY')")
        .unwrap();
    check(&db, "after merging and an update");
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    check(&db, "after merging and a restart");
}

/// Dedup with a window: a key first seen longer than the window before the
/// newest time is forgotten, so its next row is kept; inside the window a
/// repeat is dropped. The same after a seal and a restart.
#[test]
fn dedup_forgets_keys_outside_its_window() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute(
            "CREATE TABLE ev (ts TIMESTAMP, id BIGINT, PRIMARY KEY (id))
                 WITH (time_column = 'ts', retention = 'none', dedup = true, dedup_window = '1 hour');
             INSERT INTO ev VALUES ('2026-01-01 10:00', 1), ('2026-01-01 11:30', 2);
             INSERT INTO ev VALUES ('2026-01-01 11:40', 2), ('2026-01-01 12:00', 3);",
        )
        .unwrap();
        db.engine()
            .catalog()
            .table("ev")
            .unwrap()
            .seal_now()
            .unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    // Newest 12:00: key 1 (10:00) is outside the hour, key 2 (11:30) inside.
    db.execute("INSERT INTO ev VALUES ('2026-01-01 12:01', 1), ('2026-01-01 12:02', 2)")
        .unwrap();
    assert_eq!(
        lines(&db, "SELECT id, count(*) FROM ev GROUP BY id ORDER BY id"),
        ["1|2", "2|1", "3|1"]
    );
}

/// Readers racing writers, seals and merges: every snapshot sees each live
/// key exactly once (`count(*) = count(DISTINCT id)`), every row it sees is a
/// whole version (`a + b = 100`, written together), and the number of keys
/// never goes down.
#[test]
fn concurrent_readers_see_exactly_one_version_of_each_key() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path()).unwrap());
    db.execute(
        "CREATE TABLE kv (ts TIMESTAMP, id BIGINT, a BIGINT, b BIGINT, PRIMARY KEY (id))
             WITH (time_column = 'ts', retention = 'none', upsert = 'full', segment_rows = '100000')",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut version = 0i64;
            while !stop.load(Ordering::Relaxed) {
                version += 1;
                let rows: Vec<Vec<Value>> = (0..50)
                    .map(|i| {
                        let id = (version * 37 + i * 13) % 2000;
                        let a = (version + i) % 100;
                        vec![
                            Value::Timestamp(1_700_000_000_000_000 + version),
                            Value::Int(id),
                            Value::Int(a),
                            Value::Int(100 - a),
                        ]
                    })
                    .collect();
                db.append("kv", rows).unwrap();
            }
            version
        })
    };
    let sealer = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        std::thread::spawn(move || {
            let table = db.engine().catalog().table("kv").unwrap();
            let (mut seals, mut merges) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                if table.seal_now().unwrap().is_some() {
                    seals += 1;
                }
                if seals % 3 == 0 && table.compact_now().unwrap().is_some() {
                    merges += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (seals, merges)
        })
    };
    let mut last_keys = 0;
    let mut checks = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let row = lines(
            &db,
            "SELECT count(*), count(DISTINCT id), coalesce(sum(CASE WHEN a + b <> 100 THEN 1 ELSE 0 END), 0) FROM kv",
        );
        let cells: Vec<i64> = row[0].split('|').map(|c| c.parse().unwrap()).collect();
        assert_eq!(
            cells[0], cells[1],
            "a key seen twice or a row lost: {row:?}"
        );
        assert_eq!(cells[2], 0, "a torn version: {row:?}");
        assert!(
            cells[0] >= last_keys,
            "keys went from {last_keys} to {}",
            cells[0]
        );
        last_keys = cells[0];
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let versions = writer.join().unwrap();
    let (seals, merges) = sealer.join().unwrap();
    // Merges happened (here or in the background maintenance): fewer segments
    // than seals made.
    let segments = db
        .engine()
        .catalog()
        .table("kv")
        .unwrap()
        .manifest()
        .segments
        .len();
    assert!(
        seals >= 5 && segments < seals && versions >= 20 && checks >= 20,
        "{seals} seals, {segments} segments ({merges} merged here), {versions} batches, {checks} checks"
    );
    let end = lines(&db, "SELECT count(*), count(DISTINCT id) FROM kv");
    let cells: Vec<i64> = end[0].split('|').map(|c| c.parse().unwrap()).collect();
    assert!(cells[0] == cells[1] && cells[0] >= last_keys, "{end:?}");
}

/// An upsert table past retention: the evicted segment's keys leave the key
/// map and its memory is given back; the keys still inside retention stay.
#[test]
fn evicted_rows_take_their_keys_out_of_the_map() {
    const DAY: i64 = 86_400_000_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = sluice::OffsetClock::new();
    let db = Database::open_with_clock(dir.path(), Arc::clone(&clock) as _).unwrap();
    db.execute(
        "CREATE TABLE u (ts TIMESTAMP, id BIGINT, PRIMARY KEY (id))
             WITH (time_column = 'ts', retention = '180 days', upsert = 'full', segment_rows = '300000')",
    )
    .unwrap();
    let table = db.engine().catalog().table("u").unwrap();
    let now = sluice::Clock::now_micros(&*clock);
    let rows = |ts: i64, ids: std::ops::Range<i64>| -> Vec<Vec<Value>> {
        ids.map(|i| vec![Value::Timestamp(ts), Value::Int(i)])
            .collect()
    };
    db.append("u", rows(now - 170 * DAY, 0..200_000)).unwrap();
    table.seal_now().unwrap();
    db.append("u", rows(now - DAY, 200_000..210_000)).unwrap();
    table.seal_now().unwrap();
    let report = |db: &Database| {
        lines(
            db,
            "SELECT keys, key_map_bytes FROM sluice.upserts WHERE table_name = 'u'",
        )[0]
        .split('|')
        .map(|v| v.parse::<i64>().unwrap())
        .collect::<Vec<_>>()
    };
    let before = report(&db);
    assert_eq!(before[0], 210_000);
    clock.advance_micros(20 * DAY);
    // The background maintenance may evict first; either way, once.
    db.engine().catalog().evict_expired();
    assert_eq!(
        lines(
            &db,
            "SELECT segments_evicted FROM sluice.retention WHERE table_name = 'u'"
        ),
        ["1"]
    );
    let after = report(&db);
    assert_eq!(after[0], 10_000, "the evicted keys left the map");
    assert!(
        after[1] * 4 < before[1],
        "memory given back: {before:?} -> {after:?}"
    );
    assert_eq!(
        lines(&db, "SELECT count(*), min(id) FROM u"),
        ["10000|200000"]
    );
    // An old key written again now is new, not an update of a forgotten row.
    db.execute("INSERT INTO u VALUES (now(), 5)").unwrap();
    assert_eq!(lines(&db, "SELECT count(*) FROM u"), ["10001"]);
}

/// A partial upsert whose increment leaves an INTEGER column's range stores
/// the incoming row as it came (and says so in the log), and the table still
/// opens: the write-ahead replay makes the same choice.
#[test]
fn an_increment_past_the_column_range_never_makes_a_table_unopenable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute(
            "CREATE TABLE c (ts TIMESTAMP, id BIGINT, n INTEGER, PRIMARY KEY (id))
                 WITH (time_column = 'ts', retention = 'none', upsert = 'partial', upsert_strategies = 'n = increment');
             INSERT INTO c VALUES ('2026-01-01 10:00', 1, 2147483000);
             INSERT INTO c VALUES ('2026-01-01 10:01', 1, 1000);
             INSERT INTO c VALUES ('2026-01-01 10:02', 1, 5);",
        )
        .unwrap();
        assert_eq!(lines(&db, "SELECT n FROM c"), ["1005"]);
    }
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(lines(&db, "SELECT n FROM c"), ["1005"]);
}

/// A table with retention (every table by default) is read through a filter
/// on its time column; a WHERE on top must still reach the segment scan as
/// one predicate, so zone maps prune as they do without retention.
#[test]
fn where_and_retention_prune_together() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    // Ten-row segments of a table whose segments are ten rows: not small,
    // so the background merge leaves the two apart.
    db.execute(
        "CREATE TABLE t (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', segment_rows = '10')",
    )
    .unwrap();
    let table = db.engine().catalog().table("t").unwrap();
    for range in [0..10i64, 1000..1010] {
        db.execute(&format!(
            "INSERT INTO t SELECT now() - interval '1 hour', v FROM generate_series({}, {}) AS g(v)",
            range.start,
            range.end - 1
        ))
        .unwrap();
        table.seal_now().unwrap();
    }
    let plan = lines(&db, "EXPLAIN ANALYZE SELECT count(*) FROM t WHERE v > 500").join("\n");
    assert!(plan.contains("sealed segments=2 pruned=1"), "{plan}");
    assert_eq!(lines(&db, "SELECT count(*) FROM t WHERE v > 500"), ["10"]);
}

/// The segment scan gets a query's filters and columns whatever shape the SQL
/// has: wrapped as a BI tool's virtual dataset, behind a CTE, joined, or with
/// `now() - interval` for its time range. Each shape prunes the same segments
/// and selects the same rows as the bare query.
#[test]
fn filters_reach_the_scan_through_subqueries_ctes_joins_and_now() {
    let dir = tempfile::tempdir().unwrap();
    let clock = sluice::OffsetClock::new();
    let day = 24 * 3_600_000_000i64;
    // "now" is 1970-01-05 00:00 UTC: the data below is four days up to it.
    let system_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    clock.advance_micros(4 * day - system_now);
    let db = Database::open_with_clock(dir.path(), clock).unwrap();
    db.execute(
        "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, status TEXT, amount DOUBLE PRECISION) WITH (time_column = 'ts', retention = 'none', segment_rows = '100000')",
    )
    .unwrap();
    for d in 0..4i64 {
        let rows = (0..100_000i64)
            .map(|i| {
                vec![
                    Value::Timestamp(d * day + i * (day / 100_000)),
                    Value::Int(i % 500),
                    Value::Text(if i % 3 == 0 { "NEW" } else { "DONE" }.into()),
                    Value::Float(i as f64),
                ]
            })
            .collect();
        db.append("orders", rows).unwrap();
        db.seal().unwrap();
    }
    let bare = "SELECT status, count(*), sum(amount) FROM orders WHERE ts >= TIMESTAMP '1970-01-04 23:00:00' AND restaurant_id = 7 GROUP BY status";
    let shapes = [
        bare.to_string(),
        format!("SELECT * FROM ({bare}) AS virtual_table LIMIT 10000"),
        "SELECT status, count(*), sum(amount) FROM orders WHERE ts > now() - interval '1 hour' AND restaurant_id = 7 GROUP BY status".into(),
        "WITH recent AS (SELECT * FROM orders) SELECT status, count(*), sum(amount) FROM recent WHERE ts >= TIMESTAMP '1970-01-04 23:00:00' AND restaurant_id = 7 GROUP BY status".into(),
        "SELECT o.status, count(*), sum(o.amount) FROM orders o JOIN (VALUES (7)) AS r(id) ON o.restaurant_id = r.id WHERE o.ts >= TIMESTAMP '1970-01-04 23:00:00' AND o.restaurant_id = 7 GROUP BY o.status".into(),
        "SELECT * FROM (SELECT * FROM (SELECT ts, restaurant_id, status, amount FROM orders) AS a) AS b WHERE ts >= TIMESTAMP '1970-01-04 23:00:00' AND restaurant_id = 7 AND status IS NOT NULL LIMIT 100000".into(),
    ];
    let scan_of = |sql: &str| -> (String, String) {
        let plan = lines(&db, &format!("EXPLAIN ANALYZE {sql}"));
        let stats = plan
            .iter()
            .find(|l| l.starts_with("Scan orders:"))
            .unwrap_or_else(|| panic!("{plan:#?}"))
            .clone();
        let node = plan
            .iter()
            .find(|l| l.trim_start().starts_with("Scan: orders"))
            .unwrap_or_else(|| panic!("{plan:#?}"))
            .clone();
        (stats, node)
    };
    let (bare_stats, _) = scan_of(bare);
    assert!(
        bare_stats.contains("sealed segments=4 pruned=3"),
        "{bare_stats}"
    );
    let mut answer = cells(&db, bare);
    answer.sort();
    // The same pruning whatever the shape; the columns read differ (the
    // join reads restaurant_id, which the index answers for the others).
    let pruning = |stats: &str| stats.split("; columns read=").next().unwrap().to_string();
    for sql in &shapes[1..5] {
        let (stats, node) = scan_of(sql);
        assert_eq!(pruning(&stats), pruning(&bare_stats), "{sql}");
        // Only the columns the query uses are read.
        assert!(
            node.contains("columns=[restaurant_id, status, amount]")
                || node.contains("columns=[status, amount]")
                || node.contains("columns=[restaurant_id, status, amount, ts]"),
            "{sql}: {node}"
        );
        let mut got = cells(&db, sql);
        got.sort();
        assert_eq!(got, answer, "{sql}");
    }
    // Rows, not groups: the same rows selected, and a limit on the scan.
    let (stats, node) = scan_of(&shapes[5]);
    assert!(stats.contains("sealed segments=4 pruned=3"), "{stats}");
    assert!(node.contains("limit=100000"), "{node}");
    assert_eq!(
        cells(&db, &shapes[5]).len().to_string(),
        one_cell(&db, "SELECT count(*) FROM orders WHERE ts >= TIMESTAMP '1970-01-04 23:00:00' AND restaurant_id = 7")
    );
    // A subquery that does not read the outer row leaves the outer scan's
    // other columns unread; a correlated one keeps them (it reads the row
    // by position) and both answer as written.
    let uncorrelated = "SELECT count(*) FROM orders WHERE restaurant_id IN (SELECT restaurant_id FROM orders WHERE status = 'NEW' AND restaurant_id < 3)";
    let (_, node) = scan_of(uncorrelated);
    assert!(node.contains("columns=[restaurant_id]"), "{node}");
    let below_three = one_cell(&db, "SELECT count(*) FROM orders WHERE restaurant_id < 3");
    assert_eq!(one_cell(&db, uncorrelated), below_three);
    let correlated = "SELECT count(*) FROM orders o WHERE o.restaurant_id < 3 AND EXISTS (SELECT 1 FROM orders i WHERE i.restaurant_id = o.restaurant_id AND i.status = o.status AND i.status = 'NEW')";
    assert_eq!(
        one_cell(&db, correlated),
        one_cell(
            &db,
            "SELECT count(*) FROM orders WHERE restaurant_id < 3 AND status = 'NEW'"
        )
    );
}

/// LIMIT without ORDER BY stops the scan: blocks after the ones that gave
/// enough rows are never read.
#[test]
fn limit_stops_the_scan() {
    let (_dir, db) = orders(400_000);
    db.seal().unwrap();
    let selected = |sql: &str| -> usize {
        let plan = lines(&db, &format!("EXPLAIN ANALYZE {sql}"));
        let line = plan
            .iter()
            .find(|l| l.starts_with("Scan orders:"))
            .unwrap_or_else(|| panic!("{plan:#?}"));
        line.rsplit("rows selected=")
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let all = selected("SELECT * FROM orders");
    assert_eq!(all, 400_000);
    let limited = selected("SELECT * FROM (SELECT item FROM orders) AS v LIMIT 10");
    // A block per scan worker at most, of the table's seven.
    assert!(limited < all / 2, "{limited} rows read for LIMIT 10");
    assert_eq!(
        cells(&db, "SELECT item FROM orders LIMIT 10 OFFSET 5"),
        cells(&db, "SELECT item FROM orders")
            .into_iter()
            .skip(5)
            .take(10)
            .collect::<Vec<_>>()
    );
}

/// Every scan and subquery of one statement reads the same snapshot of a
/// table: while rows arrive, a share of the total is exactly 100% and a table
/// joined with itself matches every row.
#[test]
fn one_statement_reads_one_snapshot_of_each_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path()).unwrap());
    db.execute(
        "CREATE TABLE t (ts TIMESTAMP, k BIGINT) WITH (time_column = 'ts', retention = 'none')",
    )
    .unwrap();
    db.append("t", vec![vec![Value::Timestamp(0), Value::Int(0)]])
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut k = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && k < 50_000 {
                std::thread::sleep(Duration::from_micros(100));
                let rows = (0..50)
                    .map(|_| {
                        k += 1;
                        vec![Value::Timestamp(k), Value::Int(k)]
                    })
                    .collect();
                db.append("t", rows).unwrap();
            }
        })
    };
    for _ in 0..30 {
        let share = one_cell(
            &db,
            "SELECT count(*) * 100 / (SELECT count(*) FROM t) FROM t",
        );
        assert_eq!(share, "100");
        let unmatched = one_cell(
            &db,
            "SELECT (SELECT count(*) FROM t) - count(*) FROM t a JOIN t b ON a.k = b.k",
        );
        assert_eq!(unmatched, "0");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

/// A table without a time column keeps its rows through seals, merges and a
/// restart, in arrival order, and never evicts them.
#[test]
fn a_dimension_table_without_a_time_column_survives_seals_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute("CREATE TABLE restaurants (id BIGINT PRIMARY KEY, name TEXT)")
        .unwrap();
    for batch in 0..3i64 {
        db.execute(&format!(
            "INSERT INTO restaurants SELECT g, 'r' || g FROM generate_series({}, {}) AS s(g)",
            batch * 100,
            batch * 100 + 99
        ))
        .unwrap();
        db.seal().unwrap();
    }
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(one_cell(&db, "SELECT count(*) FROM restaurants"), "300");
    assert_eq!(
        one_cell(&db, "SELECT name FROM restaurants WHERE id = 250"),
        "r250"
    );
    assert_eq!(
        one_cell(
            &db,
            "SELECT retention FROM sluice.retention WHERE table_name = 'restaurants'"
        ),
        "none"
    );
}

/// A NUMERIC(p, s) column's zone maps hold its scaled integers: a comparison
/// with a constant of any scale prunes where the conversion is exact, and the
/// answer is the exact one either way.
#[test]
fn numeric_columns_prune_by_zone_maps_at_their_scale() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE prices (ts TIMESTAMP, p NUMERIC(10,2)) WITH (time_column = 'ts', retention = 'none', segment_rows = '1000')",
    )
    .unwrap();
    // Four segments: prices 0.00..9.99, 10.00..19.99, and so on; each is
    // `segment_rows` long, so the background merge of small ones leaves
    // them apart.
    for segment in 0..4i128 {
        let rows = (0..1000i128)
            .map(|i| {
                vec![
                    Value::Timestamp(0),
                    Value::Numeric {
                        value: segment * 1000 + i,
                        scale: 2,
                    },
                ]
            })
            .collect();
        db.append("prices", rows).unwrap();
        db.seal().unwrap();
    }
    let pruned = |filter: &str| -> (String, String) {
        let plan = one_text(
            &db,
            &format!("EXPLAIN ANALYZE SELECT count(*) FROM prices WHERE {filter}"),
        );
        let line = plan
            .lines()
            .find(|l| l.contains("Scan prices: sealed segments=4"))
            .unwrap_or_else(|| panic!("{plan}"))
            .to_string();
        let count = one_text(&db, &format!("SELECT count(*) FROM prices WHERE {filter}"));
        (line, count)
    };
    let (line, count) = pruned("p >= 30.5");
    assert!(line.contains("pruned=3 "), "{line}");
    assert!(count.contains("950"), "{count}");
    let (line, count) = pruned("p = 12.34");
    assert!(line.contains("pruned=3 "), "{line}");
    assert!(count.contains('1'), "{count}");
    // 9.995 is not a value of scale 2: no pruning, and still the exact answer.
    let (line, count) = pruned("p > 9.995");
    assert!(line.contains("pruned=0 scanned whole=4;"), "{line}");
    assert!(count.contains("3000"), "{count}");
}

/// A query over a table scan streams: rows are read as the stream is pulled,
/// so a cancel after the first batch stops it before the later segments are
/// read (a result computed in full up front would hand out every row).
#[test]
fn a_streamed_scan_reads_blocks_as_they_are_pulled() {
    use sluice::Streamed;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE t (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', retention = 'none', segment_rows = '100000')",
    )
    .unwrap();
    // 64 sealed segments of 100 rows: 64 morsels, more than one pull reads.
    for s in 0..64i64 {
        let rows = (0..100)
            .map(|i| vec![Value::Timestamp(0), Value::Int(s * 100 + i)])
            .collect();
        db.append("t", rows).unwrap();
        db.seal().unwrap();
    }
    let stmt = sluice::parse_sql("SELECT v FROM t WHERE v >= 0")
        .unwrap()
        .remove(0);
    let mut session = db.session();
    let cancel = Arc::new(AtomicBool::new(false));
    let Streamed::Rows(mut rows) = db
        .engine()
        .execute_streaming(&stmt, &mut session, &[], Arc::clone(&cancel))
        .unwrap()
    else {
        panic!("a query streams its rows");
    };
    let first = rows.next().unwrap().unwrap();
    assert!(first.num_rows() > 0);
    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = first.num_rows();
    let mut error = None;
    for batch in rows.by_ref() {
        match batch {
            Ok(b) => seen += b.num_rows(),
            Err(e) => error = Some(e),
        }
    }
    let error = error.expect("the cancel stops the stream");
    assert_eq!(error.sqlstate(), "57014", "{error}");
    assert!(seen < 6400, "{seen} rows were handed out after the cancel");
    assert!(rows.next().is_none(), "nothing after an error");

    // Uncancelled, the stream hands out every row, in segment order.
    let mut rows = match db
        .engine()
        .execute_streaming(&stmt, &mut session, &[], Arc::new(AtomicBool::new(false)))
        .unwrap()
    {
        Streamed::Rows(rows) => rows,
        Streamed::Done(_) => panic!("a query streams its rows"),
    };
    let mut values = Vec::new();
    for batch in rows.by_ref() {
        let b = batch.unwrap();
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .clone();
        values.extend(col.values().iter().copied());
    }
    assert_eq!(values, (0..6400).collect::<Vec<i64>>());
}

/// Reads in a transaction block see one snapshot: rows appended by another
/// writer meanwhile appear only after the block; the block's own writes are
/// seen by its later reads.
#[test]
fn reads_in_a_transaction_block_share_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE t (ts TIMESTAMP, v BIGINT) WITH (time_column = 'ts', retention = 'none')",
    )
    .unwrap();
    let row = |v: i64| vec![Value::Timestamp(0), Value::Int(v)];
    db.append("t", vec![row(1), row(2)]).unwrap();
    let mut s = db.session();
    let count = |db: &Database, s: &mut sluice::Session| -> String {
        let results = db.execute_in(s, "SELECT count(*) FROM t").unwrap();
        match results.into_iter().next() {
            Some(sluice::StatementResult::Rows { batches, .. }) => {
                sluice::pretty::format_batches(&batches).unwrap()
            }
            _ => panic!("a count"),
        }
    };
    db.execute_in(&mut s, "BEGIN").unwrap();
    assert!(count(&db, &mut s).contains(" 2 "));
    db.append("t", vec![row(3)]).unwrap();
    assert!(count(&db, &mut s).contains(" 2 "), "the block's snapshot");
    db.execute_in(&mut s, "INSERT INTO t VALUES ('2024-01-01', 4)")
        .unwrap();
    assert!(
        count(&db, &mut s).contains(" 4 "),
        "its own write, and what came before it"
    );
    db.execute_in(&mut s, "COMMIT").unwrap();
    db.append("t", vec![row(5)]).unwrap();
    assert!(
        count(&db, &mut s).contains(" 5 "),
        "outside a block, each statement's own"
    );
}

/// A table created with no options indexes its integer columns: a query for
/// one restaurant looks it up in every segment's key directory and reads only
/// its rows, with the same answers as a filter the index cannot take; a
/// column named by `no_index` is scanned and EXPLAIN ANALYZE says so.
#[test]
fn integer_columns_are_indexed_by_default_and_explain_says_when_not() {
    for options in ["", ", no_index = 'restaurant_id'"] {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        db.execute(&format!(
            "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, qty INTEGER, amount DOUBLE PRECISION) \
             WITH (time_column = 'ts', retention = 'none'{options})"
        ))
        .unwrap();
        for segment in 0..4i64 {
            let rows = (0..50_000i64)
                .map(|i| {
                    let n = segment * 50_000 + i;
                    vec![
                        Value::Timestamp(n * 1_000_000),
                        if n % 97 == 0 {
                            Value::Null
                        } else {
                            Value::Int((n * 7919) % 2_000)
                        },
                        Value::Int(n % 13),
                        Value::Float((n % 100) as f64),
                    ]
                })
                .collect();
            db.append("orders", rows).unwrap();
            db.seal().unwrap();
        }
        let indexed = options.is_empty();
        let plan = lines(
            &db,
            "EXPLAIN ANALYZE SELECT count(*), sum(amount) FROM orders WHERE restaurant_id = 42",
        );
        let scan = plan
            .iter()
            .find(|l| l.starts_with("Scan orders:"))
            .unwrap_or_else(|| panic!("{plan:#?}"));
        // (Small segments may have been merged: count what is there.)
        let segments: usize = scan["Scan orders: sealed segments=".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(segments >= 2, "{scan}");
        if indexed {
            assert!(scan.contains("pruned=0 scanned whole=0;"), "{scan}");
            let lookups = format!("index lookups={segments} on restaurant_id;");
            assert!(scan.contains(&lookups), "{scan}");
            assert!(!scan.contains("no index"), "{scan}");
            // qty's postings hold a thirteenth of the rows, far more than the
            // restaurant's: left to the filter, not read.
            let plan = lines(
                &db,
                "EXPLAIN ANALYZE SELECT count(*) FROM orders WHERE restaurant_id = 42 AND qty = 3",
            );
            let scan = plan.iter().find(|l| l.starts_with("Scan orders:")).unwrap();
            assert!(scan.contains(&lookups), "{scan}");
        } else {
            assert!(
                scan.contains(&format!("scanned whole={segments};")),
                "{scan}"
            );
            assert!(scan.contains("no index on restaurant_id;"), "{scan}");
        }
        // Every form the index answers, against the same filter hidden from it.
        for filter in [
            "restaurant_id = 42",
            "restaurant_id IN (1, 42, 1999, 5000)",
            "restaurant_id <> 42",
            "restaurant_id NOT IN (1, 42)",
            "restaurant_id BETWEEN 40 AND 90",
            "restaurant_id < 30",
            "restaurant_id >= 1980",
            "restaurant_id > 100",
            "restaurant_id > 1990",
            "restaurant_id <= 20",
            "restaurant_id = 42 OR qty = 3",
            "restaurant_id = 42 AND qty = 3",
            "restaurant_id IN (42, 43) AND qty IN (3, 4)",
            "NOT (restaurant_id = 42) AND qty = 3",
            "restaurant_id = 4242",
            "restaurant_id IS NULL",
        ] {
            let hidden = filter.replace("restaurant_id", "(restaurant_id + 0)");
            let sql = |f: &str| {
                format!("SELECT count(*), sum(amount), min(ts), max(ts) FROM orders WHERE {f}")
            };
            assert_eq!(
                cells(&db, &sql(filter)),
                cells(&db, &sql(&hidden)),
                "{filter} ({options})"
            );
        }
    }
}

/// Rows not yet sealed answer equality filters from their blocks' own
/// indexes: EXPLAIN ANALYZE shows a lookup per finished block and condition,
/// a block without the value is skipped, and every form gives the answers of
/// the same filter hidden from the index.
#[test]
fn mutable_blocks_answer_equality_from_their_own_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, qty INTEGER, status TEXT, \
         amount DOUBLE PRECISION, paid BOOLEAN, tip NUMERIC(8, 2), ratio DOUBLE PRECISION) \
         WITH (time_column = 'ts', retention = 'none')",
    )
    .unwrap();
    let statuses = ["NEW", "CONFIRMED", "DELIVERED"];
    // Three finished blocks of 65,536 rows and part of a fourth; restaurant
    // 9999 only in the second block.
    let rows: Vec<Vec<Value>> = (0..200_000i64)
        .map(|n| {
            let restaurant = match n {
                _ if n % 89 == 0 => Value::Null,
                70_000 | 70_001 => Value::Int(9_999),
                // Most of the last block, too few for the segment's index to
                // leave out as dense: a selection of over half a block.
                198_000.. => Value::Int(77_777),
                _ => Value::Int((n * 7919) % 500),
            };
            vec![
                Value::Timestamp(n * 1_000_000),
                restaurant,
                Value::Int(n % 13),
                if n % 101 == 0 {
                    Value::Null
                } else {
                    Value::Text(statuses[(n % 3) as usize].into())
                },
                Value::Float((n % 100) as f64),
                if n % 7 == 0 {
                    Value::Null
                } else {
                    Value::Bool(n % 3 == 0)
                },
                Value::Numeric {
                    value: i128::from(n % 977),
                    scale: 2,
                },
                // No decimal form: stored as raw doubles.
                Value::Float(n as f64 / 7.0),
            ]
        })
        .collect();
    db.append("orders", rows).unwrap();
    let plan = lines(
        &db,
        "EXPLAIN ANALYZE SELECT count(*) FROM orders WHERE restaurant_id = 42 AND status = 'NEW'",
    );
    let scan = plan
        .iter()
        .find(|l| l.starts_with("Scan orders:"))
        .unwrap_or_else(|| panic!("{plan:#?}"));
    assert!(scan.contains("sealed segments=0 "), "{scan}");
    assert!(
        scan.contains("index lookups=6 on restaurant_id, status;"),
        "{scan}"
    );
    let plan = lines(
        &db,
        "EXPLAIN ANALYZE SELECT count(*) FROM orders WHERE restaurant_id = 9999",
    );
    let scan = plan.iter().find(|l| l.starts_with("Scan orders:")).unwrap();
    assert!(scan.contains("pruned by inverted index=2;"), "{scan}");
    same_answers_as_without_indexes(&db);
    // Sealed, the same rows are one segment of four blocks, a restaurant's
    // few rows in each: read together (gathered) rather than block by block.
    db.seal().unwrap();
    let plan = lines(
        &db,
        "EXPLAIN ANALYZE SELECT count(*) FROM orders WHERE restaurant_id = 42",
    );
    let scan = plan.iter().find(|l| l.starts_with("Scan orders:")).unwrap();
    assert!(scan.contains("sealed segments=1 "), "{scan}");
    // The index's rows are exactly the restaurant's: the condition is not
    // evaluated again, nor its column read. (In memory the block being
    // filled has no index, so there the condition still runs.)
    assert!(scan.contains("conditions answered by index=1;"), "{scan}");
    let plan = lines(
        &db,
        "EXPLAIN ANALYZE SELECT sum(amount) FROM orders WHERE restaurant_id = 42 AND qty > 6",
    );
    let scan = plan.iter().find(|l| l.starts_with("Scan orders:")).unwrap();
    assert!(scan.contains("columns read=[qty, amount];"), "{scan}");
    same_answers_as_without_indexes(&db);
}

/// Every equality form an index answers gives the answers of the same filter
/// written so that no index can take it.
fn same_answers_as_without_indexes(db: &Database) {
    for filter in [
        "restaurant_id = 42",
        "restaurant_id = 9999",
        "restaurant_id = 123456",
        "restaurant_id IN (1, 42, 9999)",
        "restaurant_id = 42 AND status = 'NEW'",
        "status = 'DELIVERED' AND qty = 3",
        "status IN ('NEW', 'NONE') AND restaurant_id = 7",
        "status = 'NONE'",
        "qty = 12 OR restaurant_id = 42",
        "restaurant_id = 42 AND qty > 6",
        // Most of a block selected: the selection still applies when the
        // scan leaves out the condition it answers.
        "restaurant_id = 77777",
        "restaurant_id IN (42, 77777) AND qty < 9",
    ] {
        let hidden = filter
            .replace("restaurant_id", "(restaurant_id + 0)")
            .replace("status", "(status || '')")
            .replace("qty", "(qty + 0)");
        for query in [
            "SELECT count(*), sum(amount), min(ts), max(ts) FROM orders WHERE {f}",
            "SELECT status, count(*), sum(amount) FROM orders WHERE {f} GROUP BY status ORDER BY 1",
            // Rows themselves, every column type, NULLs included.
            "SELECT ts, restaurant_id, qty, status, amount, paid, tip, ratio FROM orders \
             WHERE {f} ORDER BY ts DESC LIMIT 40",
            "SELECT count(paid), count(*) FILTER (WHERE paid), sum(tip), round(sum(ratio)), \
             count(restaurant_id), count(status) FROM orders WHERE {f}",
        ] {
            assert_eq!(
                cells(db, &query.replace("{f}", filter)),
                cells(db, &query.replace("{f}", &hidden)),
                "{filter}: {query}"
            );
        }
    }
}

/// A GROUP BY of a few hundred thousand groups over the whole table:
/// the first slice's rows are nearly all new groups, so the table takes
/// packed keys as group ids right after it (the slice's ids moving with
/// them), and the workers' partials merge by id. Every group's count and
/// sum are those worked out here, none is missing and none is extra.
#[test]
fn many_groups_whose_ids_become_their_keys_keep_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute("CREATE TABLE t (ts TIMESTAMP, k BIGINT, v BIGINT) WITH (time_column = 'ts', retention = 'none')")
        .unwrap();
    // 400,000 keys: 19 bits, more than a slice's rows can fill, so the
    // first slice goes through the hash map.
    let n = 600_000i64;
    let row = |i: i64| ((i * 7_919 + 13) % 400_009 - 100, i % 1_000 - 300);
    let batch: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            let (k, v) = row(i);
            vec![Value::Timestamp(i * 1000), Value::Int(k), Value::Int(v)]
        })
        .collect();
    db.append("t", batch).unwrap();
    db.seal().unwrap();
    let mut want = std::collections::BTreeMap::<i64, (i64, i64)>::new();
    for i in 0..n {
        let (k, v) = row(i);
        let g = want.entry(k).or_default();
        *g = (g.0 + 1, g.1 + v);
    }
    let want: Vec<Vec<String>> = want
        .into_iter()
        .map(|(k, (c, v))| vec![k.to_string(), c.to_string(), v.to_string()])
        .collect();
    let got = cells(
        &db,
        "SELECT k, count(*), sum(v) FROM t GROUP BY k ORDER BY k",
    );
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

/// A sealed block is aggregated in slices (decoded in place, past the block
/// cache) unless it reads TEXT: every slice's rows counted once, with a
/// filter on packed codes (a mask cut per slice) and one evaluated per slice,
/// over bit-packed columns with and without a common divisor, an INTEGER and
/// a decimal-packed double. The sums are worked out here, row by row.
#[test]
fn aggregates_over_sliced_blocks_count_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE t (ts TIMESTAMP, k BIGINT, v BIGINT, s INTEGER, d DOUBLE PRECISION) \
         WITH (time_column = 'ts', retention = 'none')",
    )
    .unwrap();
    let n = 150_000i64;
    let row = |i: i64| {
        let k = scatter(i) * 1_000_003 % 9_999_991;
        (
            k,
            500 + (i * 37 % 2_000) * 5,
            (i % 300) as i32 - 100,
            (i % 400) as f64 * 0.25,
        )
    };
    let batch: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            let (k, v, s, d) = row(i);
            vec![
                Value::Timestamp(i * 1000),
                Value::Int(k),
                Value::Int(v),
                Value::Int(s.into()),
                Value::Float(d),
            ]
        })
        .collect();
    db.append("t", batch).unwrap();
    db.seal().unwrap();
    let mut want = std::collections::BTreeMap::<i64, (i64, i64, i64, f64)>::new();
    for i in 0..n {
        let (k, v, s, d) = row(i);
        if v > 3_000 && k % 3 != 0 {
            let g = want.entry(k % 7).or_default();
            *g = (g.0 + 1, g.1 + v, g.2 + i64::from(s), g.3 + d);
        }
    }
    let want: Vec<Vec<String>> = want
        .into_iter()
        .map(|(g, (c, v, s, d))| {
            vec![
                g.to_string(),
                c.to_string(),
                v.to_string(),
                s.to_string(),
                format!("{d:?}"),
            ]
        })
        .collect();
    let got = cells(
        &db,
        "SELECT k % 7 AS g, count(*), sum(v), sum(s), sum(d) FROM t \
         WHERE v > 3000 AND k % 3 <> 0 GROUP BY k % 7 ORDER BY g",
    );
    assert_eq!(got, want);
    let plan = lines(
        &db,
        "EXPLAIN ANALYZE SELECT k % 7, sum(v) FROM t GROUP BY 1",
    );
    assert!(
        plan.iter().any(|l| l.contains("sealed segments=1")),
        "{plan:?}"
    );
}

/// An INSERT ... SELECT of more rows than go through the write-ahead file
/// writes sealed segments as it reads its source (`segment_rows` each), and
/// is still one statement: a row failing part-way, after segments were
/// written, leaves the table and its directory as they were. A table
/// inserting into itself reads only the rows it had.
#[test]
fn a_large_insert_select_writes_sealed_segments_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE big (ts TIMESTAMP, k BIGINT NOT NULL, label TEXT, amount NUMERIC(12, 2)) \
         WITH (time_column = 'ts', retention = 'none', segment_rows = '50000')",
    )
    .unwrap();
    let n = 200_000i64;
    let source_with = |value: &str, amount: &str| {
        format!(
            "INSERT INTO big SELECT TIMESTAMP '2024-01-01' + g * INTERVAL '1 second', {value}, \
             'l' || (g % 7), {amount} FROM generate_series(1, {n}) AS s(g)"
        )
    };
    let source = |value: &str| source_with(value, "g * 0.25");
    let segment_files = || {
        let table_dir = db
            .engine()
            .catalog()
            .table("big")
            .unwrap()
            .dir()
            .to_path_buf();
        let mut names: Vec<String> = std::fs::read_dir(table_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("seg-"))
            .collect();
        names.sort();
        names
    };
    let tag = db.execute(&source("g % 1000")).unwrap();
    assert!(
        format!("{tag:?}").contains(&format!("INSERT 0 {n}")),
        "{tag:?}"
    );
    let expected_k: i64 = (1..=n).map(|g| g % 1000).sum();
    let expected_amount: f64 = (1..=n).map(|g| g as f64 * 0.25).sum();
    assert_eq!(
        lines(
            &db,
            "SELECT count(*), sum(k), sum(amount), count(DISTINCT label) FROM big"
        ),
        [format!("{n}|{expected_k}|{expected_amount:.2}|7")]
    );
    assert_eq!(
        lines(
            &db,
            "SELECT count(*), sum(rows) FROM sluice.segments WHERE table_name = 'big' AND state = 'sealed'"
        ),
        [format!("4|{n}")],
        "the rows went straight into sealed segments of segment_rows each"
    );
    let files = segment_files();
    assert_eq!(files.len(), 4, "{files:?}");

    // Row 150,000 divides by zero: two segments were written before it.
    let err = db.execute(&source("1 / (g - 150000)")).unwrap_err();
    assert_eq!(err.sqlstate(), "22012", "{err}");
    assert_eq!(lines(&db, "SELECT count(*) FROM big"), [n.to_string()]);
    assert_eq!(
        segment_files(),
        files,
        "the failed statement's files are removed"
    );
    // The checks of a value's column hold past the write-ahead path too: a
    // NULL in a NOT NULL column, a numeric past its precision, both at row
    // 150,000.
    let err = db
        .execute(&source("CASE WHEN g = 150000 THEN NULL ELSE g END"))
        .unwrap_err();
    assert_eq!(err.sqlstate(), "23502", "{err}");
    let err = db
        .execute(&source_with(
            "g",
            "CASE WHEN g = 150000 THEN 1e10 ELSE g * 0.25 END",
        ))
        .unwrap_err();
    assert_eq!(err.sqlstate(), "22003", "{err}");
    assert_eq!(lines(&db, "SELECT count(*) FROM big"), [n.to_string()]);
    assert_eq!(segment_files(), files);

    db.execute("INSERT INTO big SELECT * FROM big").unwrap();
    assert_eq!(
        lines(&db, "SELECT count(*), sum(k) FROM big"),
        [format!("{}|{}", 2 * n, 2 * expected_k)]
    );
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(
        lines(&db, "SELECT count(*), sum(k) FROM big"),
        [format!("{}|{}", 2 * n, 2 * expected_k)],
        "committed in the manifest, so a reopen keeps every row"
    );
}

/// An upsert table's INSERT ... SELECT gathers its rows for the key map in
/// one record: they count against the statement's memory bound, so past it
/// the statement fails with 53200 and stores nothing.
#[test]
fn an_upsert_tables_insert_select_is_bounded_by_the_statement_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Database::open(dir.path()).unwrap();
    db.execute(
        "CREATE TABLE kv (ts TIMESTAMP, id BIGINT, v BIGINT, PRIMARY KEY (id)) \
         WITH (time_column = 'ts', retention = 'none', upsert = 'full')",
    )
    .unwrap();
    let insert =
        "INSERT INTO kv SELECT TIMESTAMP '2024-01-01' + g * INTERVAL '1 second', g % 50000, g \
                  FROM generate_series(1, 100000) AS s(g)";
    db.set_options(QueryOptions {
        memory_limit: 2 << 20,
        ..QueryOptions::default()
    });
    let err = db.execute(insert).unwrap_err();
    assert_eq!(err.sqlstate(), "53200", "{err}");
    assert_eq!(lines(&db, "SELECT count(*) FROM kv"), ["0"]);
    db.set_options(QueryOptions::default());
    db.execute(insert).unwrap();
    assert_eq!(
        lines(&db, "SELECT count(*), min(v), max(v) FROM kv"),
        ["50000|50001|100000"]
    );
}

/// `ORDER BY ... LIMIT k` over many batches (a scan's blocks, a spilled
/// GROUP BY's partitions) keeps a running top k: it must give the first k
/// rows of the full order, whichever batch they come from.
#[test]
fn order_by_limit_over_many_batches_gives_the_first_rows_of_the_full_order() {
    let (_dir, mut db) = orders(200_000);
    let cases = [
        ("SELECT ts, amount FROM orders ORDER BY amount DESC, ts", 7),
        (
            "SELECT ts, amount FROM orders ORDER BY amount, ts DESC",
            60_000,
        ),
        (
            "SELECT restaurant_id, min(ts) AS first, count(*) AS n FROM orders \
             GROUP BY restaurant_id, ts - INTERVAL '1 second' * (restaurant_id % 3) \
             ORDER BY n DESC, first",
            5,
        ),
    ];
    let full: Vec<Vec<String>> = cases.iter().map(|(q, _)| lines(&db, q)).collect();
    for (i, ((query, k), all)) in cases.iter().zip(&full).enumerate() {
        if i == 2 {
            // The GROUP BY spills under 1 MB: its partitions are the batches.
            db.set_options(QueryOptions {
                memory_limit: 1 << 20,
                ..QueryOptions::default()
            });
        }
        let top = lines(&db, &format!("{query} LIMIT {k}"));
        assert_eq!(top, all[..*k], "{query} LIMIT {k}");
    }
}
