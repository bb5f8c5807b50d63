//! SQL arrays as Arrow lists: `ARRAY[...]`, `array_agg`, `regexp_match` and
//! `string_to_array` make `List<T>` values, so a client sees `integer[]` or
//! `text[]` as PostgreSQL reports them; casts move between a list and
//! PostgreSQL's text form (`{1,2}`, `{"a b",NULL}`). Functions that only read an
//! array's elements (`array_length`, `= ANY(...)`, `unnest`) take either form.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field};
use sluice_storage::zone::Zone;

use crate::cast::cast_array;
use crate::error::{Error, Result};

/// The list type whose elements are `element` (nullable, as SQL array
/// elements are).
pub fn list_type(element: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", element.clone(), true)))
}

/// The element type of a list type, `None` for any other type.
pub fn element_type(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(f) => Some(f.data_type()),
        _ => None,
    }
}

/// `ARRAY[a, b, ...]` for each of `rows` rows: the items (already of one
/// type, `element`) side by side. A NULL item is a NULL element; the array
/// itself is never NULL.
pub fn make_array(items: &[ArrayRef], element: &DataType, rows: usize) -> Result<ArrayRef> {
    let width = items.len();
    // Row r's elements are items[0][r], items[1][r], ...: interleave them.
    let mut indices: Vec<(usize, usize)> = Vec::with_capacity(rows * width);
    for r in 0..rows {
        for (k, item) in items.iter().enumerate() {
            // A constant item is one row for every row.
            indices.push((k, if item.len() == 1 { 0 } else { r }));
        }
    }
    let values = if width == 0 {
        arrow::array::new_empty_array(element)
    } else {
        let refs: Vec<&dyn Array> = items.iter().map(|a| a.as_ref()).collect();
        arrow::compute::interleave(&refs, &indices)?
    };
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows));
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", element.clone(), true)),
        offsets,
        values,
        None,
    )?))
}

/// Lists from per-row element texts (`None`: a NULL array), the elements
/// converted to `element` as a cast from text would.
pub fn from_texts(
    rows: Vec<Option<Vec<Option<String>>>>,
    element: &DataType,
    zone: Zone,
) -> Result<ArrayRef> {
    let valid: Vec<bool> = rows.iter().map(Option::is_some).collect();
    let lengths: Vec<usize> = rows
        .iter()
        .map(|r| r.as_ref().map_or(0, Vec::len))
        .collect();
    let texts: StringArray = rows.into_iter().flatten().flatten().collect();
    let values = cast_array(&(Arc::new(texts) as ArrayRef), element, zone)?;
    let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", element.clone(), true)),
        OffsetBuffer::from_lengths(lengths),
        values,
        nulls,
    )?))
}

/// PostgreSQL's array text (`{1,2}`) to a list of `element`, per row: `'{1,2}'::int[]`.
pub fn parse(text: &StringArray, element: &DataType, zone: Zone) -> Result<ArrayRef> {
    let rows = text
        .iter()
        .map(|t| {
            t.map(|t| {
                let t = t.trim();
                if !(t.starts_with('{') && t.ends_with('}')) {
                    return Err(Error::InvalidText {
                        message: format!(
                            "malformed array literal: \"{t}\" (an array starts with {{ and ends with }})"
                        ),
                        sqlstate: "22P02",
                    });
                }
                Ok(crate::binder::parse_array_text(t))
            })
            .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    from_texts(rows, element, zone)
}

/// A list with its elements cast to `element` (`ARRAY[1, 2]::bigint[]`).
pub fn cast_elements(list: &ListArray, element: &DataType, zone: Zone) -> Result<ArrayRef> {
    let values = cast_array(list.values(), element, zone)?;
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", element.clone(), true)),
        list.offsets().clone(),
        values,
        list.nulls().cloned(),
    )?))
}

/// `array[index]`, counting from 1: NULL out of bounds, as in PostgreSQL.
pub fn element_at(arrays: &ArrayRef, index: &ArrayRef, rows: usize) -> Result<ArrayRef> {
    let list = arrays.as_list::<i32>();
    let index = arrow::compute::cast(index, &DataType::Int64)?;
    let index = index.as_primitive::<arrow::datatypes::Int64Type>();
    let at = |a: &dyn Array, r: usize| if a.len() == 1 { 0 } else { r };
    let picks: Vec<Option<u32>> = (0..rows)
        .map(|r| {
            let (lr, ir) = (at(list, r), at(index, r));
            if list.is_null(lr) || index.is_null(ir) {
                return None;
            }
            let i = index.value(ir);
            let len = list.value_length(lr) as i64;
            (1..=len)
                .contains(&i)
                .then(|| list.value_offsets()[lr] as u32 + (i - 1) as u32)
        })
        .collect();
    let picks = arrow::array::UInt32Array::from(picks);
    Ok(arrow::compute::take(list.values().as_ref(), &picks, None)?)
}
