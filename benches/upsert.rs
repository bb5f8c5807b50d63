//! Upserts, measured: the key map's memory per key, upsert ingest throughput
//! next to append-only throughput on the same rows, and the time to reopen a
//! table of many keys (the map rebuilt from sealed segments).
//!
//! ```sh
//! cargo bench --bench upsert -- --keys 10000000 --rows 2000000
//! ```
//!
//! Memory is read from the process's resident set (`/proc/self/statm`) around
//! building the map alone, and from the map's own count of its allocations.

use std::time::Instant;

use sluice::{Database, Value};
use sluice_storage::upsert::{KeyEntry, KeyHash, Location, PrimaryKeyMap};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident bytes of this process.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A 16-character order id, like the dashboards' (hashed to 128 bits).
fn order_key(i: usize) -> KeyHash {
    KeyHash::of(&[&Value::Text(format!("order-{i:010}"))])
}

fn map_memory(keys: usize) {
    let before = resident_bytes();
    let mut map = PrimaryKeyMap::default();
    for i in 0..keys {
        map.insert(
            order_key(i),
            KeyEntry {
                location: Location {
                    segment: (i / 1_000_000) as u32,
                    row: (i % 1_000_000) as u32,
                },
                comparison: i as i64,
                deleted: false,
            },
        );
    }
    let after = resident_bytes();
    println!(
        "key map, {keys} keys: {:.1} bytes/key resident, {:.1} bytes/key by its own count ({} MB)",
        (after - before) as f64 / keys as f64,
        map.heap_bytes() as f64 / keys as f64,
        map.heap_bytes() >> 20
    );
    drop(map);
}

fn rows(from: usize, n: usize, key_space: usize) -> Vec<Vec<Value>> {
    (from..from + n)
        .map(|i| {
            let id = (i.wrapping_mul(2_654_435_761)) % key_space;
            vec![
                Value::Timestamp(1_764_400_000_000_000 + i as i64),
                Value::Int(id as i64),
                Value::Text(["NEW", "CONFIRMED", "READY", "DELIVERED"][i % 4].into()),
                Value::Float((i % 5000) as f64 / 100.0),
            ]
        })
        .collect()
}

fn throughput(total: usize) {
    const BATCH: usize = 10_000;
    let dir = tempfile::tempdir().expect("a directory");
    let db = Database::open(dir.path()).expect("a database");
    db.execute(
        "CREATE TABLE plain (ts TIMESTAMP, id BIGINT, status TEXT, amount DOUBLE PRECISION)
             WITH (time_column = 'ts', retention = 'none');
         CREATE TABLE upserted (ts TIMESTAMP, id BIGINT, status TEXT, amount DOUBLE PRECISION, PRIMARY KEY (id))
             WITH (time_column = 'ts', retention = 'none', upsert = 'full');
         CREATE TABLE merged (ts TIMESTAMP, id BIGINT, status TEXT, amount DOUBLE PRECISION, PRIMARY KEY (id))
             WITH (time_column = 'ts', retention = 'none', upsert = 'partial')",
    )
    .expect("tables");
    let key_space = total / 4;
    for table in ["plain", "upserted", "merged"] {
        let started = Instant::now();
        for from in (0..total).step_by(BATCH) {
            db.append(table, rows(from, BATCH.min(total - from), key_space))
                .expect("append");
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{table}: {total} rows over {key_space} keys in {secs:.2} s = {:.0} rows/s",
            total as f64 / secs
        );
    }
}

fn restart(keys: usize) {
    const BATCH: usize = 50_000;
    let dir = tempfile::tempdir().expect("a directory");
    {
        let db = Database::open(dir.path()).expect("a database");
        db.execute(
            "CREATE TABLE t (ts TIMESTAMP, id BIGINT, status TEXT, amount DOUBLE PRECISION, PRIMARY KEY (id))
                 WITH (time_column = 'ts', retention = 'none', upsert = 'full')",
        )
        .expect("table");
        for from in (0..keys).step_by(BATCH) {
            db.append("t", rows(from, BATCH.min(keys - from), usize::MAX))
                .expect("append");
        }
        db.engine()
            .catalog()
            .table("t")
            .and_then(|t| t.seal_now())
            .expect("seal");
    }
    let before = resident_bytes();
    let started = Instant::now();
    let db = Database::open(dir.path()).expect("reopen");
    let secs = started.elapsed().as_secs_f64();
    let report = db
        .engine()
        .catalog()
        .table("t")
        .ok()
        .and_then(|t| t.upsert_report())
        .expect("an upsert table");
    println!(
        "restart, {keys} keys in sealed segments: open took {secs:.2} s; {} keys, map {} MB, resident +{} MB",
        report.keys,
        report.map_bytes >> 20,
        (resident_bytes() - before) >> 20
    );
}

fn main() {
    let keys = arg("--keys", 10_000_000);
    let rows = arg("--rows", 2_000_000);
    map_memory(keys);
    throughput(rows);
    restart(keys);
}
