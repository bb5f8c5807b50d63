//! Equality indexes over the finished blocks of a mutable segment, so that
//! `restaurant_id = 42` on rows not yet sealed reads the rows of 42 and not
//! every row of the column: a live table's newest rows are the ones every
//! dashboard asks about.
//!
//! Built lazily, one column at a time, by the first query that filters on the
//! column (appends never pay for an index nobody reads), and shared by every
//! later snapshot of the block, which never changes once finished. A column
//! whose values are mostly distinct in the block gets no index, as at seal:
//! one lookup would save little and the postings would outweigh the column.
//!
//! Postings are row numbers within the block, `u16` because a block holds at
//! most [`crate::BLOCK_ROWS`] (65,536) rows.

use std::sync::OnceLock;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, UInt32Type};

/// A column's index is skipped when its block holds more distinct values than
/// this share of its rows (`rows / 8`), as sealed segments' are.
const MOST_DISTINCT_PER_ROWS: usize = 8;

/// The lazily built equality indexes of one finished block.
#[derive(Debug, Default)]
pub struct BlockIndex {
    columns: Vec<OnceLock<Option<Postings>>>,
}

/// One column's postings: for each distinct value, in order, the block's rows
/// that hold it.
#[derive(Debug)]
struct Postings {
    keys: Keys,
    /// `rows[starts[i]..starts[i + 1]]` hold key `i`.
    starts: Vec<u32>,
    rows: Vec<u16>,
}

#[derive(Debug)]
enum Keys {
    /// Integer values, ascending.
    Int(Vec<i64>),
    /// A TEXT column's dictionary ids, ordered by their strings (key `i` of
    /// the postings is id `ids[i]`).
    Text(Vec<u32>),
}

impl BlockIndex {
    /// Room for the indexes of a block of `columns` columns; none built yet.
    pub fn new(columns: usize) -> BlockIndex {
        BlockIndex {
            columns: (0..columns).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The rows of `block` (the block this index belongs to) whose `column`
    /// equals `value`, ascending; `None` when the column has no index (not an
    /// integer or TEXT column, or mostly distinct values).
    pub fn rows_equal_to_int(
        &self,
        block: &RecordBatch,
        column: usize,
        value: i64,
    ) -> Option<&[u16]> {
        let postings = self.postings(block, column)?;
        let Keys::Int(keys) = &postings.keys else {
            return None;
        };
        Some(match keys.binary_search(&value) {
            Ok(i) => postings.of(i),
            Err(_) => &[],
        })
    }

    /// As [`BlockIndex::rows_equal_to_int`], for a TEXT column and a string.
    pub fn rows_equal_to_text(
        &self,
        block: &RecordBatch,
        column: usize,
        value: &str,
    ) -> Option<&[u16]> {
        let postings = self.postings(block, column)?;
        let Keys::Text(ids) = &postings.keys else {
            return None;
        };
        let dictionary = block.column(column).as_dictionary_opt::<UInt32Type>()?;
        let strings = dictionary.values().as_string_opt::<i32>()?;
        let found = ids.binary_search_by(|id| strings.value(*id as usize).cmp(value));
        Some(match found {
            Ok(i) => postings.of(i),
            Err(_) => &[],
        })
    }

    fn postings(&self, block: &RecordBatch, column: usize) -> Option<&Postings> {
        let slot = self.columns.get(column)?;
        slot.get_or_init(|| build(block.columns().get(column)?.as_ref()))
            .as_ref()
    }
}

impl Postings {
    fn of(&self, key: usize) -> &[u16] {
        let start = self.starts[key] as usize;
        let end = self.starts[key + 1] as usize;
        &self.rows[start..end]
    }
}

/// A column's postings, or `None` where an index does not pay.
fn build(column: &dyn Array) -> Option<Postings> {
    let most = (column.len() / MOST_DISTINCT_PER_ROWS).max(1);
    match column.data_type() {
        DataType::Int64 => integer_postings(column.as_primitive::<Int64Type>().iter(), most),
        DataType::Int32 => integer_postings(
            column
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(i64::from)),
            most,
        ),
        DataType::Dictionary(key, value)
            if **key == DataType::UInt32 && **value == DataType::Utf8 =>
        {
            text_postings(column.as_dictionary::<UInt32Type>(), most)
        }
        _ => None,
    }
}

fn integer_postings(values: impl Iterator<Item = Option<i64>>, most: usize) -> Option<Postings> {
    // Row numbers fit in u16: a block never holds more than BLOCK_ROWS rows.
    let mut pairs: Vec<(i64, u16)> = values
        .enumerate()
        .filter_map(|(row, v)| Some((v?, u16::try_from(row).ok()?)))
        .collect();
    pairs.sort_unstable();
    let mut keys = Vec::new();
    let mut starts = Vec::new();
    for (i, (value, _)) in pairs.iter().enumerate() {
        if keys.last() != Some(value) {
            if keys.len() == most {
                return None;
            }
            keys.push(*value);
            starts.push(i as u32);
        }
    }
    starts.push(pairs.len() as u32);
    Some(Postings {
        keys: Keys::Int(keys),
        starts,
        rows: pairs.into_iter().map(|(_, row)| row).collect(),
    })
}

fn text_postings(
    column: &arrow::array::DictionaryArray<UInt32Type>,
    most: usize,
) -> Option<Postings> {
    let strings = column.values().as_string_opt::<i32>()?;
    if strings.len() > most {
        return None;
    }
    // A counting sort of the rows by dictionary id, then the ids put in the
    // order of their strings so a lookup can binary-search the dictionary.
    let mut counts = vec![0u32; strings.len() + 1];
    let keys = column.keys();
    for key in keys.iter().flatten() {
        counts[key as usize + 1] += 1;
    }
    let mut ids: Vec<u32> = (0..strings.len() as u32).collect();
    ids.sort_unstable_by(|a, b| strings.value(*a as usize).cmp(strings.value(*b as usize)));
    let mut by_id_start = vec![0u32; strings.len()];
    let mut starts = Vec::with_capacity(ids.len() + 1);
    let mut next = 0u32;
    for id in &ids {
        starts.push(next);
        by_id_start[*id as usize] = next;
        next += counts[*id as usize + 1];
    }
    starts.push(next);
    let mut rows = vec![0u16; next as usize];
    for (row, key) in keys.iter().enumerate() {
        let (Some(key), Ok(row)) = (key, u16::try_from(row)) else {
            continue;
        };
        let at = &mut by_id_start[key as usize];
        rows[*at as usize] = row;
        *at += 1;
    }
    Some(Postings {
        keys: Keys::Text(ids),
        starts,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringDictionaryBuilder};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn block() -> RecordBatch {
        let ids: Int64Array = (0..1000)
            .map(|i| if i % 97 == 0 { None } else { Some(i % 10) })
            .collect();
        let unique: Int64Array = (0..1000).map(Some).collect();
        let mut status = StringDictionaryBuilder::<UInt32Type>::new();
        for i in 0..1000 {
            match i % 3 {
                0 => status.append_value("NEW"),
                1 => status.append_value("DELIVERED"),
                _ => status.append_null(),
            }
        }
        let columns: Vec<ArrayRef> =
            vec![Arc::new(ids), Arc::new(unique), Arc::new(status.finish())];
        let schema = Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[test]
    fn lookups_give_exactly_the_rows_holding_the_value() {
        let block = block();
        let index = BlockIndex::new(3);
        let want: Vec<u16> = (0..1000u16)
            .filter(|i| i % 97 != 0 && i % 10 == 3)
            .collect();
        assert_eq!(index.rows_equal_to_int(&block, 0, 3), Some(want.as_slice()));
        assert_eq!(index.rows_equal_to_int(&block, 0, 11), Some(&[][..]));
        let new: Vec<u16> = (0..1000u16).filter(|i| i % 3 == 0).collect();
        assert_eq!(
            index.rows_equal_to_text(&block, 2, "NEW"),
            Some(new.as_slice())
        );
        assert_eq!(
            index.rows_equal_to_text(&block, 2, "CONFIRMED"),
            Some(&[][..])
        );
        // Mostly distinct values get no index; nor does a column asked as the wrong type.
        assert_eq!(index.rows_equal_to_int(&block, 1, 5), None);
        assert_eq!(index.rows_equal_to_text(&block, 0, "3"), None);
    }
}
