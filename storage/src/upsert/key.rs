//! Primary keys as 128-bit map keys.
//!
//! A key whose encoding fits in 16 bytes (one BIGINT, a TIMESTAMP, a short
//! TEXT, two INTEGERs) is stored exactly; a wider one is hashed to 128 bits,
//! where a collision among even billions of keys is far less likely than a
//! disk error. Written here rather than taken from a crate because the map's
//! memory per key (the budget is under 48 bytes) rests on this fixed width.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType, UInt32Type};

use crate::types::Value;

/// A primary key, exact or hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub u128);

/// Appends one key value's unambiguous encoding: a tag byte, then the value
/// (text with its length first, so ("ab", "c") and ("a", "bc") differ).
fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Int(i) | Value::Timestamp(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Numeric { value, scale } => {
            out.push(5);
            out.extend_from_slice(&value.to_le_bytes());
            out.push(*scale as u8);
        }
        Value::Text(t) => {
            out.push(4);
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
    }
}

impl KeyHash {
    /// The key of `values` (the key columns' values, in key order).
    pub fn of(values: &[&Value]) -> KeyHash {
        let mut bytes = Vec::with_capacity(24);
        // A single integer key, the common case, is its own 8 bytes.
        if let [Value::Int(i) | Value::Timestamp(i)] = values {
            return KeyHash::of_int(*i);
        }
        for v in values {
            encode(&mut bytes, v);
        }
        KeyHash::from_bytes(&bytes)
    }

    /// The key of a single integer or timestamp key column's value.
    pub fn of_int(i: i64) -> KeyHash {
        KeyHash(u128::from(i as u64))
    }

    /// The keys of every row of the key columns `columns`: one integer column
    /// read straight from its values, anything else row by row.
    pub fn of_rows(columns: &[&ArrayRef]) -> Vec<KeyHash> {
        let rows = columns.first().map_or(0, |c| c.len());
        if let [c] = columns {
            if c.null_count() == 0 {
                match c.data_type() {
                    DataType::Int64 => {
                        return c
                            .as_primitive::<Int64Type>()
                            .values()
                            .iter()
                            .map(|v| KeyHash::of_int(*v))
                            .collect()
                    }
                    DataType::Int32 => {
                        return c
                            .as_primitive::<Int32Type>()
                            .values()
                            .iter()
                            .map(|v| KeyHash::of_int(i64::from(*v)))
                            .collect()
                    }
                    DataType::Timestamp(_, _) => {
                        return c
                            .as_primitive::<TimestampMicrosecondType>()
                            .values()
                            .iter()
                            .map(|v| KeyHash::of_int(*v))
                            .collect()
                    }
                    _ => {}
                }
            }
        }
        (0..rows).map(|r| KeyHash::of_row(columns, r)).collect()
    }

    fn from_bytes(bytes: &[u8]) -> KeyHash {
        if bytes.len() <= 15 {
            // The length in the top byte keeps exact keys of different lengths
            // (and the single-integer keys above, whose top byte is 0) apart.
            let mut b = [0u8; 16];
            b[..bytes.len()].copy_from_slice(bytes);
            b[15] = 0x80 | bytes.len() as u8;
            return KeyHash(u128::from_le_bytes(b));
        }
        KeyHash(hash128(bytes))
    }

    /// The key of row `row` of the key columns `columns` (Arrow arrays of the
    /// table's types; TEXT plain or dictionary-encoded).
    pub fn of_row(columns: &[&ArrayRef], row: usize) -> KeyHash {
        let values: Vec<Value> = columns.iter().map(|c| value_at(c, row)).collect();
        let refs: Vec<&Value> = values.iter().collect();
        KeyHash::of(&refs)
    }
}

/// The value at `row` of an array of one of the table's types.
pub fn value_at(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int32 => Value::Int(i64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Value::Float(
            array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(row),
        ),
        DataType::Timestamp(_, _) => {
            Value::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Utf8 => Value::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::Decimal128(_, scale) => Value::Numeric {
            value: array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(row),
            scale: *scale,
        },
        DataType::Dictionary(_, _) => {
            let dict = array.as_dictionary::<UInt32Type>();
            let key = dict.keys().value(row) as usize;
            Value::Text(dict.values().as_string::<i32>().value(key).to_string())
        }
        _ => Value::Null,
    }
}

/// 128 bits of two independent 64-bit FNV-1a-style passes finished with a
/// strong mixer (SplitMix64's). Not cryptographic; keys are the table's own.
fn hash128(bytes: &[u8]) -> u128 {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4 ^ bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        a = mix(a ^ w);
        b = mix(b.rotate_left(23) ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    (u128::from(mix(a ^ b.rotate_left(17))) << 64) | u128::from(mix(b ^ a))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_exact_when_short_and_distinct_when_hashed() {
        let k = |vs: &[Value]| KeyHash::of(&vs.iter().collect::<Vec<_>>());
        assert_ne!(k(&[Value::Int(1)]), k(&[Value::Int(2)]));
        assert_ne!(
            k(&[Value::Text("ab".into()), Value::Text("c".into())]),
            k(&[Value::Text("a".into()), Value::Text("bc".into())])
        );
        assert_ne!(k(&[Value::Text("".into())]), k(&[Value::Int(0)]));
        // A million long keys, none colliding.
        let mut seen = HashSet::new();
        for i in 0..1_000_000 {
            assert!(seen.insert(k(&[Value::Text(format!("order-0000000000{i}"))])));
        }
    }
}
