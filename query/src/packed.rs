//! A comparison of an integer or timestamp column with a constant, evaluated on
//! a sealed block's packed codes (`value = base + code * scale`) instead of its
//! decoded `i64`s. The constant is moved into code space once per block, so the
//! per-row work is one comparison of a one-, two- or four-byte code: a filter
//! like `restaurant_id = 42` over every block reads a quarter of the bytes.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, UInt16Array, UInt32Array,
    UInt8Array,
};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType};
use sluice_storage::segment::BlockCodes;

use crate::error::Result;
use crate::logical::BinaryOp;

/// The rows of the block where `value op constant` holds (NULL where the column
/// is NULL), or `None` for an operator this does not handle.
pub fn compare(block: &BlockCodes, op: BinaryOp, constant: i64) -> Result<Option<BooleanArray>> {
    let codes = &block.codes;
    let max_code: i128 = match codes.data_type() {
        DataType::UInt8 => u8::MAX.into(),
        DataType::UInt16 => u16::MAX.into(),
        DataType::UInt32 => u32::MAX.into(),
        _ => return Ok(None),
    };
    // value op c  <=>  code * scale op (c - base), with scale >= 1.
    let d = i128::from(constant) - i128::from(block.base);
    let scale = i128::from(block.scale.max(1));
    let floor = d.div_euclid(scale);
    let ceil = floor + i128::from(d.rem_euclid(scale) != 0);
    // The codes satisfying the comparison: lo..=hi, or its complement for <>.
    let (lo, hi, negated) = match op {
        BinaryOp::Eq if d.rem_euclid(scale) == 0 => (floor, floor, false),
        BinaryOp::Eq => (1, 0, false),
        BinaryOp::NotEq if d.rem_euclid(scale) == 0 => (floor, floor, true),
        BinaryOp::NotEq => (1, 0, true),
        BinaryOp::Lt => (i128::MIN, ceil - 1, false),
        BinaryOp::LtEq => (i128::MIN, floor, false),
        BinaryOp::Gt => (floor + 1, i128::MAX, false),
        BinaryOp::GtEq => (ceil, i128::MAX, false),
        _ => return Ok(None),
    };
    let (lo, hi) = (lo.max(0), hi.min(max_code));
    let bits = if lo > hi {
        BooleanBuffer::new_unset(codes.len())
    } else if let Some(c) = codes.as_any().downcast_ref::<UInt8Array>() {
        range_mask(c.values(), lo as u8, hi as u8)
    } else if let Some(c) = codes.as_any().downcast_ref::<UInt16Array>() {
        range_mask(c.values(), lo as u16, hi as u16)
    } else if let Some(c) = codes.as_any().downcast_ref::<UInt32Array>() {
        range_mask(c.values(), lo as u32, hi as u32)
    } else {
        return Ok(None);
    };
    let bits = if negated { !&bits } else { bits };
    Ok(Some(BooleanArray::new(bits, codes.nulls().cloned())))
}

/// `values op constant` over a block whose values are in ascending order (NULL
/// slots holding the value before them): two binary searches give the range of
/// matching rows, so a time filter on a segment sorted by time costs nothing per
/// row. `None` for a type or operator this does not handle.
pub fn compare_sorted(values: &ArrayRef, op: BinaryOp, constant: i64) -> Option<BooleanArray> {
    let n = values.len();
    let at: Box<dyn Fn(usize) -> i64 + '_> = match values.data_type() {
        DataType::Int64 => {
            let v = values.as_primitive::<Int64Type>();
            Box::new(move |i| v.value(i))
        }
        DataType::Int32 => {
            let v = values.as_primitive::<Int32Type>();
            Box::new(move |i| i64::from(v.value(i)))
        }
        DataType::Timestamp(_, _) => {
            let v = values.as_primitive::<TimestampMicrosecondType>();
            Box::new(move |i| v.value(i))
        }
        _ => return None,
    };
    let first_not = |pred: &dyn Fn(i64) -> bool| {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if pred(at(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    };
    let lower = first_not(&|v| v < constant);
    let upper = first_not(&|v| v <= constant);
    // (rows before, rows matching, rows after) when the match is one range; <>
    // matches the two ends instead.
    let (start, end, negated) = match op {
        BinaryOp::Eq => (lower, upper, false),
        BinaryOp::NotEq => (lower, upper, true),
        BinaryOp::Lt => (0, lower, false),
        BinaryOp::LtEq => (0, upper, false),
        BinaryOp::Gt => (upper, n, false),
        BinaryOp::GtEq => (lower, n, false),
        _ => return None,
    };
    let mut bits = BooleanBufferBuilder::new(n);
    bits.append_n(start, negated);
    bits.append_n(end - start, !negated);
    bits.append_n(n - end, negated);
    Some(BooleanArray::new(bits.finish(), values.nulls().cloned()))
}

/// An unsigned code type: a range test is one wrapping subtraction and one
/// comparison, `c - lo <= hi - lo`, which vectorises better than two compares.
trait Code: Copy {
    fn in_span(self, lo: Self, span: Self) -> bool;
    fn minus(self, other: Self) -> Self;
}

macro_rules! code {
    ($t:ty) => {
        impl Code for $t {
            #[inline(always)]
            fn in_span(self, lo: Self, span: Self) -> bool {
                self.wrapping_sub(lo) <= span
            }
            #[inline(always)]
            fn minus(self, other: Self) -> Self {
                self.wrapping_sub(other)
            }
        }
    };
}
code!(u8);
code!(u16);
code!(u32);

/// Bit `i` set where `lo <= codes[i] <= hi` (`lo <= hi`).
///
/// Written by hand rather than with Arrow's comparison kernels: those build the
/// bitmap one element at a time, which made this filter slower on two-byte codes
/// than on decoded `i64`s. Here each run of 64 codes is first tested with a
/// branch-free fold the compiler turns into SIMD compares; only runs holding a
/// match (few, for a one-restaurant filter) are walked to set their bits.
fn range_mask<T: Code>(codes: &[T], lo: T, hi: T) -> BooleanBuffer {
    let span = hi.minus(lo);
    let mut words = vec![0u64; codes.len().div_ceil(64)];
    for (word, chunk) in words.iter_mut().zip(codes.chunks(64)) {
        let any = chunk
            .iter()
            .fold(false, |any, &c| any | c.in_span(lo, span));
        if any {
            *word = chunk.iter().enumerate().fold(0u64, |bits, (i, &c)| {
                bits | (u64::from(c.in_span(lo, span)) << i)
            });
        }
    }
    BooleanBuffer::new(Buffer::from_vec(words), 0, codes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPS: [BinaryOp; 6] = [
        BinaryOp::Eq,
        BinaryOp::NotEq,
        BinaryOp::Lt,
        BinaryOp::LtEq,
        BinaryOp::Gt,
        BinaryOp::GtEq,
    ];

    /// The reference: `v op constant` value by value, NULL for NULL.
    fn compare_each(values: &[Option<i64>], op: BinaryOp, constant: i64) -> BooleanArray {
        values
            .iter()
            .map(|v| {
                v.map(|v| match op {
                    BinaryOp::Eq => v == constant,
                    BinaryOp::NotEq => v != constant,
                    BinaryOp::Lt => v < constant,
                    BinaryOp::LtEq => v <= constant,
                    BinaryOp::Gt => v > constant,
                    _ => v >= constant,
                })
            })
            .collect()
    }

    /// Every operator against every constant around the block's values, with and
    /// without a scale, agrees with comparing the decoded values.
    #[test]
    fn agrees_with_comparing_decoded_values() {
        for (base, scale) in [(-5i64, 1u64), (100, 7), (0, 1)] {
            let codes: Vec<Option<u16>> =
                vec![Some(0), Some(3), None, Some(9), Some(3), Some(65535)];
            let block = BlockCodes {
                base,
                scale,
                codes: std::sync::Arc::new(UInt16Array::from(codes.clone())),
            };
            let values: Vec<Option<i64>> = codes
                .iter()
                .map(|c| c.map(|c| base + i64::from(c) * scale as i64))
                .collect();
            for op in OPS {
                for constant in (base - 20)..(base + 120) {
                    let got = compare(&block, op, constant).unwrap().unwrap();
                    let expected = compare_each(&values, op, constant);
                    assert_eq!(
                        got, expected,
                        "base {base} scale {scale}: v {op:?} {constant}"
                    );
                }
            }
        }
    }

    #[test]
    fn sorted_blocks_agree_with_comparing_every_value() {
        // Ascending with repeats; the NULL slot holds the value before it.
        let values: Vec<Option<i64>> = vec![
            Some(-3),
            Some(-3),
            Some(0),
            None,
            Some(0),
            Some(5),
            Some(5),
            Some(9),
        ];
        let filled = [-3i64, -3, 0, 0, 0, 5, 5, 9];
        let validity: Vec<bool> = values.iter().map(Option::is_some).collect();
        let array: ArrayRef = std::sync::Arc::new(arrow::array::Int64Array::new(
            filled.to_vec().into(),
            Some(validity.into()),
        ));
        for op in OPS {
            for constant in -5..12 {
                let got = compare_sorted(&array, op, constant).unwrap();
                let expected = compare_each(&values, op, constant);
                assert_eq!(got, expected, "v {op:?} {constant}");
            }
        }
    }
}
