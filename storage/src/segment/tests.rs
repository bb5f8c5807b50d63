use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::UInt32Type;

use super::format::Stat;
use super::*;
use crate::error::Error;
use crate::fs::RealFs;
use crate::mutable_segment::MutableSegment;
use crate::schema::{ColumnDef, TableSchema};
use crate::types::{ColumnType, Value};

fn schema() -> TableSchema {
    let col = |name: &str, ty| ColumnDef {
        name: name.into(),
        ty,
        nullable: true,
    };
    TableSchema::new(
        "orders",
        vec![
            col("ts", ColumnType::Timestamp),
            col("restaurant_id", ColumnType::BigInt),
            col("qty", ColumnType::Integer),
            col("item", ColumnType::Text),
            col("amount", ColumnType::Double),
            col("paid", ColumnType::Boolean),
            col("placed", ColumnType::TimestampTz),
        ],
        vec![],
        BTreeMap::from([("time_column".to_string(), "ts".to_string())]),
    )
    .unwrap()
}

/// `n` rows through the mutable segment (the path sealing will take).
fn rows(n: usize) -> Vec<RecordBatch> {
    let mut seg = MutableSegment::new(&schema());
    let rows: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            let null = i % 17 == 0;
            vec![
                // Whole milliseconds: the GCD makes these pack small.
                Value::Timestamp(1_700_000_000_000_000 + i as i64 * 1_000),
                if null {
                    Value::Null
                } else {
                    Value::Int((i % 1000) as i64 - 500)
                },
                Value::Int((i % 7) as i64),
                if null {
                    Value::Null
                } else {
                    Value::Text(format!("item-{:03}", i % 200))
                },
                if i % 11 == 0 {
                    Value::Null
                } else {
                    Value::Float(i as f64 * 0.25)
                },
                Value::Bool(i % 3 == 0),
                Value::Timestamp(i as i64),
            ]
        })
        .collect();
    seg.append(&rows).unwrap();
    seg.blocks()
}

fn flatten(arrays: Vec<ArrayRef>) -> ArrayRef {
    let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
    arrow::compute::concat(&refs).unwrap()
}

fn plain(a: &ArrayRef) -> ArrayRef {
    match a.data_type() {
        arrow::datatypes::DataType::Dictionary(_, v) => arrow::compute::cast(a, v).unwrap(),
        _ => Arc::clone(a),
    }
}

#[test]
fn every_type_round_trips_across_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-1.sluice");
    let n = SEALED_BLOCK_ROWS * 2 + 123;
    let input = rows(n);
    let footer = write_segment(&RealFs, &path, &schema(), &input).unwrap();
    assert_eq!(footer.rows, n as u64);
    let seg = SealedSegment::open(&path).unwrap();
    assert_eq!(seg.rows(), n);
    seg.verify().unwrap();
    for c in 0..schema().columns.len() {
        let blocks = seg.footer().columns[c].blocks.len();
        assert_eq!(blocks, 3);
        let got = flatten(
            (0..blocks)
                .map(|b| plain(&seg.read_block(c, b).unwrap()))
                .collect(),
        );
        let want = flatten(input.iter().map(|b| plain(b.column(c))).collect());
        assert_eq!(got.to_data(), want.to_data(), "column {c}");
    }
    // Time range and zone maps.
    assert_eq!(footer.time_min, Some(1_700_000_000_000_000));
    assert_eq!(
        footer.time_max,
        Some(1_700_000_000_000_000 + (n as i64 - 1) * 1_000)
    );
    let rid = &seg.footer().columns[1];
    assert_eq!(rid.min, Some(Stat::Int(-500)));
    assert_eq!(rid.max, Some(Stat::Int(499)));
    let amount = &seg.footer().columns[4];
    assert_eq!(amount.blocks[0].min, Some(Stat::Float(0.25)));
    // The timestamps are evenly spaced: their differences pack in 0 bits.
    let ts = &seg.footer().columns[0].blocks[0];
    assert_eq!((ts.delta_first, ts.width), (Some(1_700_000_000_000_000), 0));
}

/// A slice of a block reads back the rows of the whole block it covers, in
/// every encoding: decoded in place (bit-packed without NULLs), or sliced
/// from the whole block (delta-packed, NULLs, TEXT). Read before any whole
/// block, so that no slice comes from the block cache.
#[test]
fn slices_of_a_block_read_back_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-1.sluice");
    let n = SEALED_BLOCK_ROWS * 2 + 123;
    let input = rows(n);
    write_segment(&RealFs, &path, &schema(), &input).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    for c in 0..schema().columns.len() {
        let want = flatten(input.iter().map(|b| plain(b.column(c))).collect());
        for b in 0..3 {
            let len = seg.footer().columns[c].blocks[b].rows as usize;
            for rows in [0..1, 5..16_389, 16_384..32_768, len / 2..len, len - 7..len] {
                let rows = rows.start.min(len)..rows.end.min(len);
                let got = plain(&seg.read_block_rows(c, b, rows.clone()).unwrap());
                let want = want.slice(b * SEALED_BLOCK_ROWS + rows.start, rows.len());
                assert_eq!(
                    got.to_data(),
                    want.to_data(),
                    "column {c} block {b} rows {rows:?}"
                );
            }
        }
        let past_the_end = seg.read_block_rows(c, 2, 100..200);
        assert!(
            matches!(past_the_end, Err(Error::Corrupt { .. })),
            "column {c}"
        );
    }
}

/// Slowly changing columns pack the differences between neighbours; columns that
/// jump around, or whose differences overflow, pack their values. Either way,
/// NULLs included, they read back intact.
#[test]
fn delta_packing_is_chosen_where_it_is_narrower_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-1.sluice");
    let n = SEALED_BLOCK_ROWS + 10;
    let rows: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            let x = i as i64;
            vec![
                // Event time: about a second apart, with jitter.
                Value::Timestamp(1_700_000_000_000_000 + x * 1_000_003 + x * 7919 % 13),
                if i % 5 == 0 {
                    Value::Null
                } else if i >= SEALED_BLOCK_ROWS {
                    Value::Int(if i % 2 == 0 { i64::MIN } else { i64::MAX })
                } else {
                    Value::Int(x * 2_654_435_761 % 10_000)
                },
                Value::Int(n as i64 - x),
                Value::Null,
                Value::Null,
                Value::Null,
                if i % 3 == 0 {
                    Value::Null
                } else {
                    Value::Timestamp(x * 1_000)
                },
            ]
        })
        .collect();
    let mut mutable = MutableSegment::new(&schema());
    mutable.append(&rows).unwrap();
    let input = mutable.blocks();
    write_segment(&RealFs, &path, &schema(), &input).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    let block = |c: usize, b: usize| seg.footer().columns[c].blocks[b].clone();
    assert!(block(0, 0).delta_first.is_some() && block(0, 0).width <= 4);
    assert_eq!(block(1, 0).delta_first, None, "hashes pack as values");
    assert_eq!(block(1, 1).delta_first, None, "differences overflow");
    assert_eq!(
        (block(2, 0).delta_first.is_some(), block(2, 0).width),
        (true, 0)
    );
    assert!(
        block(6, 0).delta_first.is_some(),
        "NULLs repeat the previous value"
    );
    for c in 0..schema().columns.len() {
        let got = flatten(
            (0..2)
                .map(|b| plain(&seg.read_block(c, b).unwrap()))
                .collect(),
        );
        let want = flatten(input.iter().map(|b| plain(b.column(c))).collect());
        assert_eq!(got.to_data(), want.to_data(), "column {c}");
    }
}

#[test]
fn text_is_a_sorted_dictionary_with_an_inverted_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.sluice");
    let input = rows(5000);
    write_segment(&RealFs, &path, &schema(), &input).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    let dict = seg.dictionary(3).unwrap();
    assert_eq!(dict.len(), 200);
    let values: Vec<&str> = dict.iter().flatten().collect();
    let mut sorted = values.clone();
    sorted.sort_unstable();
    assert_eq!(values, sorted);
    let id = values.binary_search(&"item-042").unwrap() as u32;
    let by_index: Vec<u32> = seg.rows_with(3, id).unwrap().unwrap().iter().collect();
    let block = seg.read_block(3, 0).unwrap();
    let keys = block.as_dictionary::<UInt32Type>().keys().clone();
    let by_scan: Vec<u32> = (0..keys.len())
        .filter(|i| keys.is_valid(*i) && keys.value(*i) == id)
        .map(|i| i as u32)
        .collect();
    assert_eq!(by_index, by_scan);
    assert!(!by_index.is_empty());
    assert_eq!(
        seg.nulls(3).unwrap().len(),
        (0..5000).filter(|i| i % 17 == 0).count() as u64
    );
}

fn flip(path: &std::path::Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_names_the_file_and_section_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-7.sluice");
    let input = rows(3000);
    write_segment(&RealFs, &path, &schema(), &input).unwrap();
    let footer = SealedSegment::open(&path).unwrap().footer().clone();
    let mut targets = Vec::new();
    for c in &footer.columns {
        for (kind, s) in [
            ("block 0", Some(c.blocks[0].section)),
            ("dictionary", c.dictionary),
            ("index", c.index),
            ("keys", c.keys),
            ("nulls", c.nulls),
        ] {
            // An empty section (a block of evenly spaced values) has no byte to flip.
            if let Some(s) = s.filter(|s| s.len > 0) {
                targets.push((format!("column {} {kind}", c.name), s));
            }
        }
    }
    assert!(targets.len() >= 10, "{targets:?}");
    let pristine = std::fs::read(&path).unwrap();
    for (name, section) in targets {
        std::fs::write(&path, &pristine).unwrap();
        flip(&path, section.offset + section.len / 2);
        let seg = SealedSegment::open(&path).unwrap();
        let err = seg.verify().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{text}");
        assert!(text.contains("seg-7.sluice"), "{text}");
        assert!(text.contains(&name), "wanted {name}: {text}");
    }
    // Damage in the footer or tail is found at open.
    let len = pristine.len() as u64;
    for at in [len - 20, len - 3, 2] {
        std::fs::write(&path, &pristine).unwrap();
        flip(&path, at);
        let err = SealedSegment::open(&path).unwrap_err().to_string();
        assert!(err.contains("seg-7.sluice"), "{err}");
    }
    // Truncation anywhere is an error, not a panic.
    for keep in [0, 5, 100, pristine.len() / 2, pristine.len() - 1] {
        std::fs::write(&path, &pristine[..keep]).unwrap();
        assert!(SealedSegment::open(&path).is_err(), "kept {keep}");
    }
}

#[test]
fn a_block_of_only_true_keeps_its_values() {
    // base = 1 and every delta 0: decoding must add the base back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bools.sluice");
    let mut seg = MutableSegment::new(&schema());
    seg.append(&[vec![
        Value::Timestamp(5),
        Value::Int(7),
        Value::Int(7),
        Value::Text("x".into()),
        Value::Float(1.0),
        Value::Bool(true),
        Value::Timestamp(5),
    ]])
    .unwrap();
    write_segment(&RealFs, &path, &schema(), &seg.blocks()).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    assert!(seg.read_block(5, 0).unwrap().as_boolean().value(0));
    assert_eq!(
        seg.read_block(2, 0)
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(0),
        7
    );
}

#[test]
fn an_empty_segment_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.sluice");
    write_segment(&RealFs, &path, &schema(), &[]).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    assert_eq!(seg.rows(), 0);
    assert_eq!(seg.footer().time_min, None);
    seg.verify().unwrap();
}

/// Rows are ordered inside a segment by the time column, or by `sort_key` when
/// the table has one; ties keep their arrival order.
#[test]
fn rows_are_sorted_by_the_sort_key_with_ties_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = schema();
    let by_restaurant = TableSchema::new(
        "orders",
        base.columns.clone(),
        vec![],
        BTreeMap::from([
            ("time_column".to_string(), "ts".to_string()),
            ("sort_key".to_string(), "restaurant_id, qty".to_string()),
        ]),
    )
    .unwrap();
    let rows: Vec<Vec<Value>> = (0..1000i64)
        .map(|i| {
            vec![
                Value::Timestamp(1_000_000 - i), // arrives newest first
                if i % 10 == 0 {
                    Value::Null
                } else {
                    Value::Int(i % 7)
                },
                Value::Int(i % 2),
                Value::Text(format!("arrival-{i:04}")),
                Value::Null,
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    let mut mutable = MutableSegment::new(&base);
    mutable.append(&rows).unwrap();
    let read = |table: &TableSchema, name: &str| -> Vec<Vec<String>> {
        let path = dir.path().join(name);
        write_segment(&RealFs, &path, table, &mutable.blocks()).unwrap();
        let seg = SealedSegment::open(&path).unwrap();
        let cols: Vec<ArrayRef> = [0, 1, 2, 3]
            .iter()
            .map(|&c| plain(&seg.read_block(c, 0).unwrap()))
            .collect();
        (0..seg.rows())
            .map(|r| {
                cols.iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, r).unwrap())
                    .collect()
            })
            .collect()
    };
    // Default: by time, ascending.
    let by_time = read(&base, "seg-1.sluice");
    assert_eq!(by_time[0][3], "arrival-0999");
    assert_eq!(by_time[999][3], "arrival-0000");
    // sort_key: restaurant_id then qty, NULLs last, ties in arrival order.
    let sorted = read(&by_restaurant, "seg-2.sluice");
    let key = |r: &Vec<String>| {
        (
            r[1].parse::<i64>().unwrap_or(i64::MAX),
            r[2].parse::<i64>().unwrap(),
            r[3].clone(),
        )
    };
    assert!(
        sorted.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
        "{sorted:?}"
    );
    assert_eq!(sorted[0][1..], ["0", "0", "arrival-0014"]);
    assert_eq!(sorted[999][1], "");
}

/// Doubles that are short decimals are stored as packed integers; a block with
/// any value that is not (0.1 + 0.2, -0.0, NaN, infinities, huge values) stays
/// raw. Both read back bit for bit.
#[test]
fn short_decimal_doubles_pack_as_integers_and_others_stay_raw() {
    let dir = tempfile::tempdir().unwrap();
    let n = SEALED_BLOCK_ROWS + 5;
    let odd = [0.1 + 0.2, -0.0, f64::NAN, f64::INFINITY, 1e300, 123.456_789];
    for (case, oddity) in [None, Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("seg-{case}.sluice"));
        let mut seg = MutableSegment::new(&schema());
        let rows: Vec<Vec<Value>> = (0..n)
            .map(|i| {
                let amount = match (i, oddity) {
                    (7, Some(o)) => Value::Float(odd[o]),
                    _ if i % 13 == 0 => Value::Null,
                    _ => Value::Float(((i % 10_000) as f64 - 2_000.0) / 100.0),
                };
                vec![
                    Value::Timestamp(i as i64),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    amount,
                    Value::Null,
                    Value::Null,
                ]
            })
            .collect();
        seg.append(&rows).unwrap();
        let input = seg.blocks();
        write_segment(&RealFs, &path, &schema(), &input).unwrap();
        let seg = SealedSegment::open(&path).unwrap();
        let first = &seg.footer().columns[4].blocks[0];
        let expect = if oddity.is_none() { Some(2) } else { None };
        assert_eq!(first.decimals, expect, "case {case}");
        assert_eq!(seg.footer().columns[4].blocks[1].decimals, Some(2));
        let got = flatten((0..2).map(|b| seg.read_block(4, b).unwrap()).collect());
        let want = flatten(input.iter().map(|b| Arc::clone(b.column(4))).collect());
        let (got, want) = (
            got.as_primitive::<arrow::datatypes::Float64Type>(),
            want.as_primitive::<arrow::datatypes::Float64Type>(),
        );
        assert_eq!(got.nulls(), want.nulls(), "case {case}");
        for i in 0..n {
            if want.is_valid(i) {
                assert_eq!(
                    got.value(i).to_bits(),
                    want.value(i).to_bits(),
                    "case {case} row {i}"
                );
            }
        }
    }
}

/// A value on more than a sixteenth of the rows (and over 4,096 of them) gets no
/// bitmap: it would prune nothing and cost a bit per row. The others do.
#[test]
fn values_on_most_rows_are_left_out_of_the_inverted_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-1.sluice");
    let n = 100_000;
    let mut seg = MutableSegment::new(&schema());
    let rows: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            let item = if i % 2 == 0 {
                "common"
            } else if i % 1000 == 1 {
                "rare"
            } else {
                "middle"
            };
            let mut row = vec![Value::Null; 7];
            row[0] = Value::Timestamp(i as i64);
            row[3] = Value::Text(item.into());
            row
        })
        .collect();
    seg.append(&rows).unwrap();
    write_segment(&RealFs, &path, &schema(), &seg.blocks()).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    seg.verify().unwrap();
    let dict = seg.dictionary(3).unwrap();
    let id = |v: &str| (0..dict.len()).find(|&i| dict.value(i) == v).unwrap() as u32;
    assert_eq!(seg.rows_with(3, id("common")).unwrap(), None);
    assert_eq!(seg.rows_with(3, id("middle")).unwrap(), None);
    let rare = seg.rows_with(3, id("rare")).unwrap().unwrap();
    assert_eq!(rare.len(), 100);
    assert!(rare.iter().all(|r| r % 1000 == 1));
}

/// A segment file written by the writer of each format version, from
/// `rows(5000)`: version 1 by commit f087683 (the last version 1 writer, with
/// `delta_first`), version 2 by the commit before 6c5a85b, version 3 by this
/// one. Each must keep reading back the same rows; a format change that breaks
/// an old file fails here, and one made without a new version number breaks
/// the version 3 file.
#[test]
fn every_format_version_reads_back_its_rows() {
    let expected = rows(5000);
    for version in 1..=super::format::FORMAT_VERSION {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("src/segment/fixtures/v{version}.sluice"));
        let seg = SealedSegment::open(&path).unwrap();
        assert_eq!(seg.footer().version, version);
        seg.verify().unwrap();
        assert_eq!(seg.rows(), 5000);
        for c in 0..schema().columns.len() {
            let want = plain(&flatten(
                expected.iter().map(|b| Arc::clone(b.column(c))).collect(),
            ));
            let got = plain(&seg.read_block(c, 0).unwrap());
            assert_eq!(
                got.to_data(),
                want.to_data(),
                "version {version} column {c}"
            );
        }
        // The inverted index: "item-007" is on rows i % 200 == 7 (none NULL).
        let dict = seg.dictionary(3).unwrap();
        let id = (0..dict.len())
            .find(|&i| dict.value(i) == "item-007")
            .unwrap();
        let rows = seg.rows_with(3, id as u32).unwrap().unwrap();
        let want: Vec<u32> = (0..5000u32)
            .filter(|i| i % 200 == 7 && i % 17 != 0)
            .collect();
        assert_eq!(rows.iter().collect::<Vec<_>>(), want, "version {version}");
        // Version 4 indexes integer columns: restaurant_id = -493 is on rows
        // i % 1000 == 7 (NULL where i % 17 == 0).
        let keys = seg.keys(1).unwrap();
        assert_eq!(keys.is_some(), version >= 4, "version {version}");
        if let Some(keys) = keys {
            assert_eq!(keys.len(), 1000);
            let at = keys.partition(|v| v < -493);
            assert_eq!(keys.get(at), -493);
            let rows = seg.rows_with(1, at as u32).unwrap().unwrap();
            let want: Vec<u32> = (0..5000u32)
                .filter(|i| i % 1000 == 7 && i % 17 != 0)
                .collect();
            assert_eq!(rows.iter().collect::<Vec<_>>(), want);
        }
    }
}

/// Integer columns get a key directory and an index unless `no_index` names
/// them or their values are mostly distinct; `no_index` takes a TEXT
/// column's index away too (its dictionary stays).
#[test]
fn integer_columns_are_indexed_unless_opted_out_or_mostly_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let base = schema();
    let write = |options: &[(&str, &str)], n: usize| {
        let mut raw = BTreeMap::from([("time_column".to_string(), "ts".to_string())]);
        for (k, v) in options {
            raw.insert(k.to_string(), v.to_string());
        }
        let schema = TableSchema::new("orders", base.columns.clone(), vec![], raw).unwrap();
        let path = dir
            .path()
            .join(format!("seg-{}.sluice", options.len() * 1_000_000 + n));
        write_segment(&RealFs, &path, &schema, &rows(n)).unwrap();
        SealedSegment::open(&path).unwrap()
    };
    // qty: 7 values, restaurant_id: 1,000 (of 5,000 rows), both indexed.
    let seg = write(&[], 5000);
    assert!(seg.keys(1).unwrap().is_some() && seg.keys(2).unwrap().is_some());
    assert!(seg.has_index(3));
    // Timestamps, doubles and booleans are never indexed.
    for c in [0, 4, 5, 6] {
        assert!(
            !seg.has_index(c) && seg.keys(c).unwrap().is_none(),
            "column {c}"
        );
    }
    let seg = write(&[("no_index", "restaurant_id, ITEM")], 5000);
    assert!(seg.keys(1).unwrap().is_none() && !seg.has_index(1));
    assert!(!seg.has_index(3) && seg.dictionary(3).unwrap().len() == 200);
    assert!(seg.keys(2).unwrap().is_some());
    // 40,000 rows: restaurant_id still has 1,000 values, indexed.
    let seg = write(&[], 40_000);
    assert_eq!(seg.keys(1).unwrap().map(|k| k.len()), Some(1000));
    // A column of mostly distinct integers (an id) is left out.
    let ids = TableSchema::new(
        "ids",
        vec![
            ColumnDef {
                name: "ts".into(),
                ty: ColumnType::Timestamp,
                nullable: false,
            },
            ColumnDef {
                name: "id".into(),
                ty: ColumnType::BigInt,
                nullable: true,
            },
        ],
        vec![],
        BTreeMap::from([("time_column".to_string(), "ts".to_string())]),
    )
    .unwrap();
    let batch = RecordBatch::try_new(
        ids.arrow_schema(),
        vec![
            Arc::new(arrow::array::TimestampMicrosecondArray::from_iter_values(
                0..20_000i64,
            )) as ArrayRef,
            Arc::new(arrow::array::Int64Array::from_iter_values(0..20_000i64)),
        ],
    )
    .unwrap();
    let path = dir.path().join("ids.sluice");
    write_segment(&RealFs, &path, &ids, &[batch]).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    assert!(seg.keys(1).unwrap().is_none() && !seg.has_index(1));
}

/// The footer of a segment file image, as JSON.
fn footer_json(image: &[u8]) -> serde_json::Value {
    let tail = image.len() - super::format::TAIL_LEN;
    let len = u32::from_le_bytes(image[tail..tail + 4].try_into().unwrap()) as usize;
    serde_json::from_slice(&image[tail - len..tail]).unwrap()
}

/// The image with its footer replaced by `footer`, length and checksum made
/// right, the tail's version kept.
fn with_footer(image: &[u8], footer: &serde_json::Value) -> Vec<u8> {
    let tail = image.len() - super::format::TAIL_LEN;
    let len = u32::from_le_bytes(image[tail..tail + 4].try_into().unwrap()) as usize;
    let encoded = serde_json::to_vec(footer).unwrap();
    let mut out = image[..tail - len].to_vec();
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&encoded).to_le_bytes());
    out.extend_from_slice(&image[tail + 8..]);
    out
}

/// Footer fields the reader relies on are checked, each error naming the
/// section: a bit width above 64, a block longer than the footer's block size,
/// blocks that disagree between columns, a time column past the last.
#[test]
fn footer_fields_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-1.sluice");
    write_segment(&RealFs, &path, &schema(), &rows(1000)).unwrap();
    let pristine = std::fs::read(&path).unwrap();
    type Damage = fn(&mut serde_json::Value);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "width",
            |f| f["columns"][1]["blocks"][0]["width"] = 65.into(),
            "column restaurant_id block 0",
        ),
        (
            "rows",
            |f| f["columns"][2]["blocks"][0]["rows"] = 70000.into(),
            "column qty block 0",
        ),
        (
            "block_rows",
            |f| f["block_rows"] = 10.into(),
            "column ts block 0",
        ),
        (
            "time column",
            |f| f["time_column"] = 9.into(),
            "section footer",
        ),
        (
            "scale",
            |f| f["columns"][0]["blocks"][0]["scale"] = 0.into(),
            "column ts block 0",
        ),
    ];
    for (what, damage, section) in cases {
        let mut footer = footer_json(&pristine);
        damage(&mut footer);
        std::fs::write(&path, with_footer(&pristine, &footer)).unwrap();
        let err = SealedSegment::open(&path).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains(section) && e.contains("seg-1.sluice")),
            "{what}: {err:?}"
        );
    }
    // The columns are checked against the table's.
    std::fs::write(&path, &pristine).unwrap();
    let seg = SealedSegment::open(&path).unwrap();
    let mut other = schema();
    other.columns[2].ty = ColumnType::BigInt;
    let err = seg.check_schema(&other).unwrap_err().to_string();
    assert!(err.contains("column qty"), "{err}");
    seg.check_schema(&schema()).unwrap();
}

/// A version from the future is refused with its number, and so is a footer
/// whose version disagrees with the tail's, or that has a field this build
/// does not know (it would be misread, not read).
#[test]
fn newer_or_inconsistent_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-1.sluice");
    write_segment(&RealFs, &path, &schema(), &rows(1000)).unwrap();
    let pristine = std::fs::read(&path).unwrap();
    let set_tail_version = |v: u32| {
        let mut bytes = pristine.clone();
        let at = bytes.len() - super::format::TAIL_LEN + 8;
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
    };
    let open_err = || SealedSegment::open(&path).err().unwrap().to_string();
    set_tail_version(super::format::FORMAT_VERSION + 1);
    let err = open_err();
    let newer = format!("format version {}", super::format::FORMAT_VERSION + 1);
    assert!(
        err.contains(&newer) && err.contains("seg-1.sluice"),
        "{err}"
    );
    set_tail_version(2);
    let mismatch = format!(
        "version {} but the tail says 2",
        super::format::FORMAT_VERSION
    );
    assert!(open_err().contains(&mismatch), "{}", open_err());
    // A footer with an unknown field, its checksum made right.
    let mut footer = footer_json(&pristine);
    footer["columns"][0]["blocks"][0]["run_length"] = serde_json::json!(true);
    std::fs::write(&path, with_footer(&pristine, &footer)).unwrap();
    assert!(
        open_err().contains("unknown field `run_length`"),
        "{}",
        open_err()
    );
}

/// A double block holding NaN keeps it in its zone map as the greatest value, so
/// `v > x` never prunes it; a block of NaN alone has NaN for both ends.
#[test]
fn nan_is_the_greatest_value_in_zone_maps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-1.sluice");
    let mut seg = MutableSegment::new(&schema());
    let row = |v: f64| {
        let mut r: Vec<Value> = schema().columns.iter().map(|_| Value::Null).collect();
        r[0] = Value::Timestamp(1);
        r[4] = Value::Float(v);
        r
    };
    seg.append(&[row(f64::NAN), row(3.0), row(f64::NAN)])
        .unwrap();
    write_segment(&RealFs, &path, &schema(), &seg.blocks()).unwrap();
    let amount = &SealedSegment::open(&path).unwrap().footer().columns[4].clone();
    assert_eq!(amount.min, Some(Stat::Float(3.0)));
    assert!(matches!(amount.max, Some(Stat::Float(f)) if f.is_nan()));
}
