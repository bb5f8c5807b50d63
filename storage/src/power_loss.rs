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
//! nothing else is there, a dropped table stays dropped, and a source table
//! holds exactly the rows of the offsets it committed.

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
    Ok(())
}

fn values(table: &Table) -> Vec<i64> {
    let mut out = Vec::new();
    for segment in table.snapshot().segments {
        let batches = match segment {
            crate::table::SegmentSnapshot::Sealed(s, _) => s.read_all().expect("a sound segment"),
            crate::table::SegmentSnapshot::Memory(b, _) => b,
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
