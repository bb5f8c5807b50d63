//! Group keys as fixed-width codes.
//!
//! Every group column becomes one `u64` code per row: the value's bits for
//! fixed-width types, an interned id for text and intervals. A dictionary-encoded
//! column (a block of a segment) is encoded once per dictionary entry and then mapped
//! through the row keys, so grouping by a TEXT column never hashes a string per row.
//! Codes are only meaningful within one [`KeyColumn`]; merging two partial results
//! decodes the other side's keys and encodes them again.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    IntervalMonthDayNanoArray, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, IntervalMonthDayNano,
    IntervalMonthDayNanoType, TimestampMicrosecondType, UInt32Type,
};

use crate::error::{Error, Result};

/// A hasher with fixed seeds: results are the same in every run, which keeps
/// approximate aggregates reproducible.
pub fn fixed_state() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x5151_cafe, 0x0dd5_eed5, 0x1234_5678, 0x9abc_def0)
}

/// Encodes one group column to codes and back.
pub struct KeyColumn {
    data_type: DataType,
    strings: HashMap<Box<str>, u32, ahash::RandomState>,
    string_values: Vec<Box<str>>,
    intervals: HashMap<IntervalMonthDayNano, u32, ahash::RandomState>,
    interval_values: Vec<IntervalMonthDayNano>,
}

impl KeyColumn {
    /// An encoder for a column of (plain) type `data_type`.
    pub fn new(data_type: DataType) -> Self {
        KeyColumn {
            data_type,
            strings: HashMap::with_hasher(fixed_state()),
            string_values: Vec::new(),
            intervals: HashMap::with_hasher(fixed_state()),
            interval_values: Vec::new(),
        }
    }

    /// Bytes held by interned values.
    pub fn size(&self) -> usize {
        self.string_values
            .iter()
            .map(|s| s.len() + 40)
            .sum::<usize>()
            + self.interval_values.len() * 40
    }

    /// Writes one code per row of `array` into `codes`, and `None` for NULL.
    pub fn encode(&mut self, array: &ArrayRef, codes: &mut Vec<Option<u64>>) -> Result<()> {
        codes.clear();
        if let DataType::Dictionary(_, _) = array.data_type() {
            let dict = array.as_dictionary_opt::<UInt32Type>().ok_or_else(|| {
                Error::Internal(format!("unsupported dictionary {}", array.data_type()))
            })?;
            let mut value_codes = Vec::new();
            self.encode(dict.values(), &mut value_codes)?;
            codes.extend(
                dict.keys()
                    .iter()
                    .map(|k| k.and_then(|k| value_codes.get(k as usize).copied().flatten())),
            );
            return Ok(());
        }
        let n = array.len();
        match array.data_type() {
            DataType::Null => codes.extend(std::iter::repeat_n(None, n)),
            DataType::Boolean => codes.extend(array.as_boolean().iter().map(|v| v.map(u64::from))),
            DataType::Int32 => codes.extend(
                array
                    .as_primitive::<Int32Type>()
                    .iter()
                    .map(|v| v.map(|x| x as i64 as u64)),
            ),
            DataType::Int64 => codes.extend(
                array
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|x| x as u64)),
            ),
            DataType::UInt32 => codes.extend(
                array
                    .as_primitive::<arrow::datatypes::UInt32Type>()
                    .iter()
                    .map(|v| v.map(u64::from)),
            ),
            DataType::Date32 => codes.extend(
                array
                    .as_primitive::<Date32Type>()
                    .iter()
                    .map(|v| v.map(|x| x as i64 as u64)),
            ),
            DataType::Timestamp(_, _) => codes.extend(
                array
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .map(|v| v.map(|x| x as u64)),
            ),
            DataType::Float64 => codes.extend(
                array
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.map(canonical_float_bits)),
            ),
            DataType::Utf8 => {
                for v in array.as_string::<i32>().iter() {
                    codes.push(v.map(|s| self.intern_str(s)));
                }
            }
            DataType::Interval(_) => {
                for v in array.as_primitive::<IntervalMonthDayNanoType>().iter() {
                    codes.push(v.map(|iv| self.intern_interval(iv)));
                }
            }
            other => return Err(Error::NotSupported(format!("grouping by type {other}"))),
        }
        Ok(())
    }

    fn intern_str(&mut self, s: &str) -> u64 {
        if let Some(id) = self.strings.get(s) {
            return *id as u64;
        }
        let id = self.string_values.len() as u32;
        self.string_values.push(s.into());
        self.strings.insert(s.into(), id);
        id as u64
    }

    fn intern_interval(&mut self, iv: IntervalMonthDayNano) -> u64 {
        let next = self.interval_values.len() as u32;
        let id = *self.intervals.entry(iv).or_insert(next);
        if id == next {
            self.interval_values.push(iv);
        }
        id as u64
    }

    /// Builds the column of values for `codes` (the inverse of [`KeyColumn::encode`]).
    pub fn decode(&self, codes: &[Option<u64>]) -> Result<ArrayRef> {
        let it = codes.iter();
        Ok(match &self.data_type {
            DataType::Null => arrow::array::new_null_array(&DataType::Null, codes.len()),
            DataType::Boolean => Arc::new(it.map(|c| c.map(|v| v != 0)).collect::<BooleanArray>()),
            DataType::Int32 => Arc::new(
                it.map(|c| c.map(|v| v as i64 as i32))
                    .collect::<Int32Array>(),
            ),
            DataType::Int64 => Arc::new(it.map(|c| c.map(|v| v as i64)).collect::<Int64Array>()),
            DataType::UInt32 => Arc::new(
                it.map(|c| c.map(|v| v as u32))
                    .collect::<arrow::array::UInt32Array>(),
            ),
            DataType::Date32 => Arc::new(
                it.map(|c| c.map(|v| v as i64 as i32))
                    .collect::<Date32Array>(),
            ),
            DataType::Timestamp(_, tz) => Arc::new(
                it.map(|c| c.map(|v| v as i64))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone_opt(tz.clone()),
            ),
            DataType::Float64 => {
                Arc::new(it.map(|c| c.map(f64::from_bits)).collect::<Float64Array>())
            }
            DataType::Utf8 => Arc::new(
                it.map(|c| c.and_then(|v| self.string_values.get(v as usize).map(|s| &**s)))
                    .collect::<StringArray>(),
            ),
            DataType::Interval(_) => Arc::new(
                it.map(|c| c.and_then(|v| self.interval_values.get(v as usize).copied()))
                    .collect::<IntervalMonthDayNanoArray>(),
            ),
            other => return Err(Error::NotSupported(format!("grouping by type {other}"))),
        })
    }
}

/// Float bits with -0.0 folded into 0.0 and every NaN into one, so equal values
/// (as SQL sees them) share a group.
fn canonical_float_bits(f: f64) -> u64 {
    if f == 0.0 {
        0
    } else if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    }
}

/// Maps rows to dense group ids by the codes of their key columns.
pub struct GroupTable {
    columns: Vec<KeyColumn>,
    map: HashMap<Box<[u64]>, u32, ahash::RandomState>,
    keys: Vec<Box<[u64]>>,
    scratch: Vec<Vec<Option<u64>>>,
}

impl GroupTable {
    /// A table for key columns of these types.
    pub fn new(types: &[DataType]) -> Self {
        GroupTable {
            columns: types.iter().cloned().map(KeyColumn::new).collect(),
            map: HashMap::with_hasher(fixed_state()),
            keys: Vec::new(),
            scratch: vec![Vec::new(); types.len()],
        }
    }

    /// Number of groups seen.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no group has been seen.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        let width = (self.columns.len() + 1) * 8;
        self.keys.len() * (2 * width + 48) + self.columns.iter().map(KeyColumn::size).sum::<usize>()
    }

    /// The group id of every row, creating groups as needed.
    pub fn intern(&mut self, keys: &[ArrayRef], rows: usize, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        for ((col, array), codes) in self
            .columns
            .iter_mut()
            .zip(keys)
            .zip(self.scratch.iter_mut())
        {
            col.encode(array, codes)?;
        }
        let width = self.columns.len() + 1;
        let mut key = vec![0u64; width];
        for row in 0..rows {
            // key[0] is the null mask; NULLs group together, as GROUP BY requires.
            let mut nulls = 0u64;
            for (c, codes) in self.scratch.iter().enumerate() {
                match codes[row] {
                    Some(v) => key[c + 1] = v,
                    None => {
                        key[c + 1] = 0;
                        nulls |= 1 << (c % 64);
                    }
                }
            }
            key[0] = nulls;
            let id = match self.map.get(key.as_slice()) {
                Some(id) => *id,
                None => {
                    let id = self.keys.len() as u32;
                    let boxed: Box<[u64]> = key.clone().into_boxed_slice();
                    self.keys.push(boxed.clone());
                    self.map.insert(boxed, id);
                    id
                }
            };
            out.push(id);
        }
        Ok(())
    }

    /// One column per key column with every group's key value, in group-id order.
    pub fn key_arrays(&self) -> Result<Vec<ArrayRef>> {
        self.columns
            .iter()
            .enumerate()
            .map(|(c, col)| {
                let codes: Vec<Option<u64>> = self
                    .keys
                    .iter()
                    .map(|k| {
                        if k[0] & (1 << (c % 64)) != 0 {
                            None
                        } else {
                            Some(k[c + 1])
                        }
                    })
                    .collect();
                col.decode(&codes)
            })
            .collect()
    }
}
