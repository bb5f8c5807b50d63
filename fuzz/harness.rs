//! What each fuzz target does with one input. Shared by the targets in
//! `fuzz/fuzz_targets/` (cargo fuzz, nightly) and by the test that replays the
//! corpora in `fuzz/corpus/` on stable (`tests/engine.rs`). Errors are the
//! expected outcome for most inputs; a panic, a hang or an allocation the input
//! size does not justify is the bug being looked for.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sluice_query::{parse_sql, Engine, QueryOptions, Session};
use sluice_storage::fs::RealFs;
use sluice_storage::manifest::{Manifest, MANIFEST_FILE};
use sluice_storage::segment::SealedSegment;
use sluice_storage::wal::{self, WriteAheadLog};
use sluice_storage::Catalog;

/// A scratch directory for this thread's inputs.
fn scratch() -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("a scratch directory");
    }
    DIR.with(|d| d.path().to_path_buf())
}

/// The input as a segment file: opened, checked and read in every way queries
/// read it. Most random bytes fail the checksums, so the input is also tried
/// with its footer and section checksums made right, to reach the decoders.
pub fn segment_reader(data: &[u8]) {
    let path = scratch().join("seg-000001.sluice");
    read_segment(&path, data);
    if let Some(fixed) = with_checksums_fixed(data) {
        read_segment(&path, &fixed);
    }
}

fn read_segment(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("writing the input");
    let Ok(segment) = SealedSegment::open(path) else {
        return;
    };
    let _ = segment.verify();
    let _ = segment.read_all();
    let columns = segment.footer().columns.len();
    let blocks = segment
        .footer()
        .columns
        .first()
        .map_or(0, |c| c.blocks.len());
    for c in 0..columns {
        let _ = segment.dictionary(c);
        let _ = segment.nulls(c);
        for id in 0..3 {
            let _ = segment.rows_with(c, id);
        }
        for b in 0..blocks {
            let _ = segment.read_block(c, b);
            let _ = segment.read_block_codes(c, b);
            let _ = segment.block_is_sorted(c, b);
        }
    }
}

/// The input with every `{"offset", "len", "crc"}` section's CRC set to the
/// CRC of the bytes it names, and the footer's own CRC in the tail recomputed.
fn with_checksums_fixed(data: &[u8]) -> Option<Vec<u8>> {
    const TAIL: usize = 16;
    let tail = data.get(data.len().checked_sub(TAIL)?..)?;
    let footer_len = u32::from_le_bytes(tail[0..4].try_into().ok()?) as usize;
    let footer_start = (data.len() - TAIL).checked_sub(footer_len)?;
    let mut footer: serde_json::Value =
        serde_json::from_slice(&data[footer_start..data.len() - TAIL]).ok()?;
    fix_sections(&mut footer, &data[..footer_start]);
    let encoded = serde_json::to_vec(&footer).ok()?;
    let mut out = data[..footer_start].to_vec();
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&u32::try_from(encoded.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&encoded).to_le_bytes());
    out.extend_from_slice(&tail[8..16]);
    Some(out)
}

fn fix_sections(value: &mut serde_json::Value, body: &[u8]) {
    match value {
        serde_json::Value::Object(map) => {
            let range = (map.get("offset"), map.get("len"), map.get("crc"));
            if let (Some(offset), Some(len), Some(_)) = range {
                let (offset, len) = (offset.as_u64(), len.as_u64());
                let bytes = offset.zip(len).and_then(|(o, l)| {
                    let start = usize::try_from(o).ok()?;
                    body.get(start..start.checked_add(usize::try_from(l).ok()?)?)
                });
                if let Some(bytes) = bytes {
                    map.insert("crc".into(), crc32fast::hash(bytes).into());
                }
            }
            for v in map.values_mut() {
                fix_sections(v, body);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                fix_sections(v, body);
            }
        }
        _ => {}
    }
}

/// The input as a write-ahead file: checked as `sluice check` reads it, then
/// opened as a table's recovery opens it.
pub fn wal_reader(data: &[u8]) {
    let path = scratch().join("wal-000000.log");
    std::fs::write(&path, data).expect("writing the input");
    let _ = wal::check_file(&path);
    let _ = WriteAheadLog::open(&RealFs, &path);
}

/// The input as a manifest, as it is and with a valid checksum trailer.
pub fn manifest_reader(data: &[u8]) {
    let dir = scratch();
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, data).expect("writing the input");
    let _ = Manifest::load(&dir);
    if let Ok(body) = std::str::from_utf8(data) {
        let sealed = format!(
            "{body}\n#crc32={:08x} version=3\n",
            crc32fast::hash(body.as_bytes())
        );
        std::fs::write(&path, sealed).expect("writing the input");
        let _ = Manifest::load(&dir);
    }
}

/// The input as SQL: parsed, then each statement bound and planned (described,
/// and for a query explained) against tables like the dashboards'. Nothing is
/// executed, so no input can run for long.
pub fn sql_frontend(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(statements) = parse_sql(sql) else {
        return;
    };
    let engine = engine();
    let mut session = Session::new(QueryOptions::default(), "fuzz", "sluice");
    for stmt in &statements {
        let _ = engine.describe(stmt, &session, Vec::new());
        if matches!(stmt, sqlparser::ast::Statement::Query(_)) {
            let _ = engine.execute_sql(&format!("EXPLAIN {stmt}"), &mut session);
        }
    }
}

/// An engine over `orders`, `restaurants` and `plays`, with rows both sealed
/// and in memory.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<(tempfile::TempDir, Engine)> = OnceLock::new();
    let (_, engine) = ENGINE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a data directory");
        let catalog = Arc::new(Catalog::open(dir.path()).expect("a catalog"));
        let engine = Engine::new(Arc::clone(&catalog));
        let mut session = Session::new(QueryOptions::default(), "fuzz", "sluice");
        for sql in [
            "CREATE TABLE orders (ts TIMESTAMP, restaurant_id BIGINT, item TEXT, status TEXT, \
             amount DOUBLE PRECISION, qty INTEGER, rated BOOLEAN) WITH (time_column = 'ts')",
            "CREATE TABLE restaurants (created TIMESTAMP, id BIGINT, name TEXT, city TEXT) \
             WITH (time_column = 'created')",
            "CREATE TABLE plays (ts TIMESTAMP, user_id BIGINT, country TEXT, device TEXT, \
             content TEXT, seconds INTEGER, completed BOOLEAN) WITH (time_column = 'ts')",
            "INSERT INTO orders VALUES ('2026-11-29 10:00', 1, 'pizza', 'placed', 12.5, 2, true), \
             ('2026-11-29 10:05', 2, 'salad', 'ready', 'NaN', 1, NULL)",
            "INSERT INTO restaurants VALUES ('2026-01-01', 1, 'Roma', 'Berlin')",
            "INSERT INTO plays VALUES ('2026-11-29 09:00', 7, 'DE', 'tv', 'show', 1200, false)",
        ] {
            engine
                .execute_sql(sql, &mut session)
                .expect("setting up the fuzz tables");
        }
        catalog.table("orders").and_then(|t| t.seal_now()).expect("a seal");
        engine
            .execute_sql(
                "INSERT INTO orders VALUES ('2026-11-29 11:00', 3, NULL, 'placed', -1e300, 0, false)",
                &mut session,
            )
            .expect("an unsealed row");
        (dir, engine)
    });
    engine
}
