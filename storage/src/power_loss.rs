//! Simulated power loss at every operation of a workload.
//!
//! The workload creates tables, inserts, seals, merges, drops a table, reopens
//! the data directory, and commits source offsets with sealed rows, all on a
//! [`SimulatedDisk`]. It is run once to count its file operations, then once per
//! cut point: the power goes off after that many operations, the disk image is
//! reduced to what a crash may leave (only what was synced, and every subset of
//! the directory changes not yet synced), and the image is opened twice with
//! the real file system. Each time: the store opens, every acknowledged row is
//! there exactly once, a row whose write was cut short is there at most once,
//! nothing else is there, a dropped table stays dropped, a source table holds
//! exactly the rows of the offsets it committed, and an upsert table shows
//! each key once, at its last acknowledged version (or the one being written).

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::table::Table;
use crate::testing::simulated_disk::{SimulatedDisk, Unsynced};
use crate::testing::ts_v_schema;
use crate::types::Value;

/// What the workload was told before the power went off.
#[derive(Default, Debug)]
struct Acknowledged {
    tables: BTreeMap<&'static str, TableFate>,
    /// The source table's committed offset (partition 0): acknowledged, and
    /// the one a seal cut short was committing.
    committed: i64,
    committing: Option<i64>,
    /// The upsert table: whether it was created, each key's last acknowledged
    /// version, and the versions of the write the power cut.
    upserted: Outcome,
    versions: BTreeMap<i64, i64>,
    versions_in_flight: Vec<(i64, i64)>,
}

#[derive(Default, Debug)]
struct TableFate {
    created: Outcome,
    dropped: Outcome,
    rows: Vec<i64>,
    rows_in_flight: Vec<i64>,
}

#[derive(Default, Debug, Clone, Copy, PartialEq)]
enum Outcome {
    #[default]
    NotAsked,
    InFlight,
    Done,
}

fn ask<T>(outcome: &mut Outcome, op: impl FnOnce() -> Result<T>) -> Result<T> {
    *outcome = Outcome::InFlight;
    let value = op()?;
    *outcome = Outcome::Done;
    Ok(value)
}

fn insert(table: &Table, fate: &mut TableFate, values: &[i64]) -> Result<()> {
    fate.rows_in_flight = values.to_vec();
    let rows = values
        .iter()
        .map(|v| vec![Value::Timestamp(v * 1_000_000), Value::Int(*v)])
        .collect();
    table.append(rows)?;
    fate.rows.append(&mut fate.rows_in_flight);
    Ok(())
}

/// Appends `count` rows as read from partition 0 at offsets `from..`, then
/// seals them: the seal commits the rows and the offset together.
fn consume_and_seal(table: &Table, ack: &mut Acknowledged, from: i64, count: i64) -> Result<()> {
    let rows: Vec<Vec<Value>> = (from..from + count)
        .map(|v| vec![Value::Timestamp(v * 1_000_000), Value::Int(v)])
        .collect();
    table.append_consumed(0, &rows, vec![], from + count)?;
    ack.committing = Some(from + count);
    table.seal_now()?;
    ack.committed = from + count;
    ack.committing = None;
    Ok(())
}

fn workload(disk: &SimulatedDisk, dir: &Path, ack: &mut Acknowledged) -> Result<()> {
    let catalog = Catalog::open_with(dir, disk.env())?;
    let mut a = TableFate::default();
    let created = ask(&mut a.created, || {
        catalog.create_table(ts_v_schema("a", &[("segment_rows", "8")]), false)
    });
    ack.tables.insert("a", a);
    created?;
    let table = catalog.table("a")?;
    for i in 0..8 {
        insert(
            &table,
            ack.tables.get_mut("a").expect("a"),
            &[2 * i, 2 * i + 1],
        )?;
        if i % 2 == 1 {
            table.seal_now()?;
        }
        if i % 4 == 3 {
            table.compact_now()?;
        }
    }
    // A table made, written and dropped.
    ack.tables.insert("b", TableFate::default());
    let b = ack.tables.get_mut("b").expect("b");
    ask(&mut b.created, || {
        catalog.create_table(ts_v_schema("b", &[]), false)
    })?;
    insert(&*catalog.table("b")?, b, &[100, 101])?;
    ask(&mut b.dropped, || catalog.drop_table("b", false))?;
    // A source table: rows and offsets commit together at each seal.
    ack.tables.insert("c", TableFate::default());
    let c_fate = ack.tables.get_mut("c").expect("c");
    let source = [("kafka_brokers", "localhost:9092"), ("kafka_topic", "c")];
    ask(&mut c_fate.created, || {
        catalog.create_table(ts_v_schema("c", &source), false)
    })?;
    let c = catalog.table("c")?;
    for batch in 0..3 {
        consume_and_seal(&c, ack, batch * 3, 3)?;
    }
    // An upsert table: each write replaces keys' rows; seals and a merge move
    // the key map and write the superseded rows' files.
    ask(&mut ack.upserted, || {
        catalog.create_table(upsert_schema(), false)
    })?;
    let u = catalog.table("u")?;
    for version in 0..6 {
        upsert(&u, ack, version)?;
        if version % 2 == 1 {
            u.seal_now()?;
        }
        if version == 3 {
            u.compact_now()?;
        }
    }
    // Inserted rows not yet sealed, then a restart: recovery's own file
    // operations are cut too.
    insert(&table, ack.tables.get_mut("a").expect("a"), &[20, 21])?;
    drop((table, c));
    drop(catalog);
    let catalog = Catalog::open_with(dir, disk.env())?;
    let table = catalog.table("a")?;
    for i in 11..14 {
        insert(
            &table,
            ack.tables.get_mut("a").expect("a"),
            &[2 * i, 2 * i + 1],
        )?;
    }
    table.seal_now()?;
    table.compact_now()?;
    insert(&table, ack.tables.get_mut("a").expect("a"), &[40])?;
    let u = catalog.table("u")?;
    upsert(&u, ack, 6)?;
    u.seal_now()?;
    u.compact_now()?;
    Ok(())
}

/// `u (ts, k, v)`, a full upsert on `k` whose rows carry `v = k * 1000 +
/// version`, sealed at every 8 rows.
fn upsert_schema() -> crate::schema::TableSchema {
    use crate::schema::ColumnDef;
    use crate::types::ColumnType;
    let col = |name: &str, ty| ColumnDef {
        name: name.into(),
        ty,
        nullable: true,
    };
    crate::schema::TableSchema::new(
        "u",
        vec![
            col("ts", ColumnType::Timestamp),
            col("k", ColumnType::BigInt),
            col("v", ColumnType::BigInt),
        ],
        vec!["k".into()],
        [
            ("time_column", "ts"),
            ("retention", "none"),
            ("upsert", "full"),
            ("segment_rows", "8"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
    .expect("a valid schema")
}

/// Writes version `version` of keys 0, 1 and 2 (key 2 only every other version).
fn upsert(table: &Table, ack: &mut Acknowledged, version: i64) -> Result<()> {
    let keys: Vec<i64> = (0..3).filter(|k| *k < 2 || version % 2 == 0).collect();
    ack.versions_in_flight = keys.iter().map(|k| (*k, version)).collect();
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                Value::Timestamp(version * 10 + k),
                Value::Int(*k),
                Value::Int(k * 1000 + version),
            ]
        })
        .collect();
    table.append(rows)?;
    for (k, v) in std::mem::take(&mut ack.versions_in_flight) {
        ack.versions.insert(k, v);
    }
    Ok(())
}

/// The rows a query would see of columns `columns` (BIGINT): superseded rows
/// left out.
fn visible(table: &Table, columns: &[usize]) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    for segment in table.snapshot().segments {
        let (batches, cleared) = match segment {
            crate::table::SegmentSnapshot::Sealed(s, c) => {
                (s.read_all().expect("a sound segment"), c)
            }
            crate::table::SegmentSnapshot::Memory(b, c, _) => (b, c),
        };
        let mut row = 0u32;
        for batch in batches {
            for i in 0..batch.num_rows() {
                if !cleared.as_ref().is_some_and(|c| c.contains(row + i as u32)) {
                    out.push(
                        columns
                            .iter()
                            .map(|&c| {
                                batch
                                    .column(c)
                                    .as_any()
                                    .downcast_ref::<arrow::array::Int64Array>()
                                    .expect("BIGINT")
                                    .value(i)
                            })
                            .collect(),
                    );
                }
            }
            row += batch.num_rows() as u32;
        }
    }
    out
}

/// The upsert table's check: one row per key, at its last acknowledged
/// version or the version whose write was cut.
fn check_upserts(catalog: &Catalog, ack: &Acknowledged) -> std::result::Result<(), String> {
    let table = match (catalog.table("u").ok(), ack.upserted) {
        (None, Outcome::Done) => return Err("table u was created and is gone".into()),
        (Some(_), Outcome::NotAsked) => return Err("table u is there, never created".into()),
        (None, _) => return Ok(()),
        (Some(t), _) => t,
    };
    let rows = visible(&table, &[1, 2]);
    let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &rows {
        let (k, version) = (r[0], r[1] - r[0] * 1000);
        if seen.insert(k, version).is_some() {
            return Err(format!("key {k} has two visible rows: {rows:?}"));
        }
    }
    for k in 0..3 {
        let acked = ack.versions.get(&k).copied();
        let cut = ack
            .versions_in_flight
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v);
        let got = seen.get(&k).copied();
        let allowed = got == acked || (cut.is_some() && got == cut);
        if !allowed {
            return Err(format!(
                "key {k} is at version {got:?}; acknowledged {acked:?}, cut {cut:?}: {rows:?}"
            ));
        }
    }
    Ok(())
}

fn values(table: &Table) -> Vec<i64> {
    let mut out = Vec::new();
    for segment in table.snapshot().segments {
        let batches = match segment {
            crate::table::SegmentSnapshot::Sealed(s, _) => s.read_all().expect("a sound segment"),
            crate::table::SegmentSnapshot::Memory(b, _, _) => b,
        };
        for batch in batches {
            let column = batch
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("v is BIGINT");
            out.extend(column.iter().flatten());
        }
    }
    out.sort_unstable();
    out
}

/// Checks a reopened image against what was acknowledged; the error says what
/// is wrong.
fn check_image(dir: &Path, ack: &Acknowledged) -> std::result::Result<(), String> {
    let catalog = Catalog::open(dir).map_err(|e| format!("the store does not open: {e}"))?;
    check_upserts(&catalog, ack)?;
    for (name, fate) in &ack.tables {
        let table = catalog.table(name).ok();
        let must_exist = fate.created == Outcome::Done && fate.dropped == Outcome::NotAsked;
        let must_not_exist = fate.created == Outcome::NotAsked || fate.dropped == Outcome::Done;
        match &table {
            None if must_exist => return Err(format!("table {name} was created and is gone")),
            Some(_) if must_not_exist => {
                return Err(format!(
                    "table {name} is there, though never created or dropped"
                ))
            }
            _ => {}
        }
        let Some(table) = table else { continue };
        let mut found = values(&table);
        if *name == "c" {
            let committed = table.committed_offsets().get(&0).copied().unwrap_or(0);
            let newest = ack.committing.unwrap_or(ack.committed);
            if committed < ack.committed || committed > newest {
                return Err(format!(
                    "source offset {committed} committed; acknowledged {}, in flight {:?}",
                    ack.committed, ack.committing
                ));
            }
            let expected: Vec<i64> = (0..committed).collect();
            if found != expected {
                return Err(format!(
                    "source table holds {found:?} for committed offset {committed}"
                ));
            }
            continue;
        }
        for v in &fate.rows {
            match found.iter().position(|f| f == v) {
                Some(at) => {
                    found.remove(at);
                }
                None => return Err(format!("acknowledged row v={v} of {name} is lost")),
            }
        }
        // Left: rows of the write the power cut, each at most once.
        let mut once = found.clone();
        once.dedup();
        if once.len() != found.len() || found.iter().any(|v| !fate.rows_in_flight.contains(v)) {
            return Err(format!(
                "{name} holds rows never acknowledged, or twice: {found:?}"
            ));
        }
    }
    Ok(())
}

/// The images a crash may leave: only what was synced, everything written,
/// and each subset of the unsynced directory changes (each one alone and all
/// but each one, if there are too many for every subset).
fn crash_images(unsynced: usize) -> Vec<Unsynced> {
    let mut images = vec![Unsynced::Nothing, Unsynced::Everything];
    if unsynced <= 4 {
        images.extend((1..(1u64 << unsynced)).map(Unsynced::Entries));
    } else {
        let all = (1u64 << unsynced.min(63)) - 1;
        for i in 0..unsynced.min(63) {
            images.push(Unsynced::Entries(1 << i));
            images.push(Unsynced::Entries(all & !(1 << i)));
        }
    }
    images
}

#[test]
fn every_acknowledged_row_survives_a_power_cut_at_every_operation() {
    let base = tempfile::tempdir().expect("a temporary directory");
    let total = {
        let root = base.path().join("uncut");
        std::fs::create_dir(&root).expect("a directory");
        let disk = SimulatedDisk::new(&root, None);
        let mut ack = Acknowledged::default();
        workload(&disk, &root, &mut ack).expect("the workload runs without a power cut");
        check_image(&root, &ack).expect("the uncut workload checks out");
        disk.ops()
    };
    assert!(
        total > 200,
        "a workload of a few hundred operations, not {total}"
    );
    let mut images = 0;
    for cut in 0..=total {
        let root = base.path().join(format!("cut-{cut}"));
        std::fs::create_dir(&root).expect("a directory");
        let disk = SimulatedDisk::new(&root, Some(cut));
        let mut ack = Acknowledged::default();
        let finished = workload(&disk, &root, &mut ack).is_ok();
        assert_eq!(
            finished,
            cut == total,
            "the power went off after {cut} operations"
        );
        for keep in crash_images(disk.unsynced_changes()) {
            let image = base.path().join(format!("image-{images}"));
            disk.crash_image(&image, keep).expect("an image");
            for attempt in ["first", "second"] {
                if let Err(e) = check_image(&image, &ack) {
                    panic!(
                        "power cut after operation {cut} of {total}, image keeping {keep:?}, \
                         {attempt} open: {e}\nacknowledged: {ack:?}"
                    );
                }
            }
            std::fs::remove_dir_all(&image).expect("removing an image");
            images += 1;
        }
        std::fs::remove_dir_all(&root).expect("removing a run");
    }
    eprintln!("{total} operations, {images} crash images checked");
    assert!(images > total as usize, "{images} images checked");
}
