//! Bit-packing of unsigned integers at a fixed width, little-endian within 64-bit
//! words. Written here rather than taken from a crate because it is the innermost
//! loop of every integer, timestamp and dictionary-id column, and the layout is part
//! of the segment format (see docs/format.md): value `i` occupies bits
//! `[i * width, (i + 1) * width)` of the stream.

/// The number of bits needed to hold `max` (0 for 0).
pub fn width_for(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// Packs `values` (each below `2^width`) into bytes.
pub fn pack(values: &[u64], width: u8) -> Vec<u8> {
    if width == 0 {
        return Vec::new();
    }
    let width = width as usize;
    let total_bits = values.len() * width;
    let mut words = vec![0u64; total_bits.div_ceil(64)];
    for (i, &v) in values.iter().enumerate() {
        let bit = i * width;
        let (w, shift) = (bit / 64, bit % 64);
        words[w] |= v << shift;
        if shift + width > 64 {
            words[w + 1] |= v >> (64 - shift);
        }
    }
    let mut out = Vec::with_capacity(words.len() * 8);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// The number of bytes `pack` produces for `count` values of `width` bits.
pub fn packed_len(count: usize, width: u8) -> usize {
    (count * width as usize).div_ceil(64) * 8
}

/// Unpacks `count` values of `width` bits from `bytes` into `out` (cleared first).
/// Returns false if `bytes` is too short for them.
pub fn unpack(bytes: &[u8], width: u8, count: usize, out: &mut Vec<u64>) -> bool {
    out.clear();
    if width == 0 {
        out.resize(count, 0);
        return true;
    }
    if bytes.len() < packed_len(count, width) {
        return false;
    }
    let width = width as usize;
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let word = |i: usize| -> u64 {
        let b = &bytes[i * 8..i * 8 + 8];
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    };
    out.reserve(count);
    for i in 0..count {
        let bit = i * width;
        let (w, shift) = (bit / 64, bit % 64);
        let mut v = word(w) >> shift;
        if shift + width > 64 {
            v |= word(w + 1) << (64 - shift);
        }
        out.push(v & mask);
    }
    true
}

/// Value `i` of a stream packed at `width` bits, without unpacking the rest;
/// `None` if `bytes` ends before it.
pub fn get(bytes: &[u8], width: u8, i: usize) -> Option<u64> {
    if width == 0 {
        return Some(0);
    }
    let width = width as usize;
    let bit = i.checked_mul(width)?;
    let (w, shift) = (bit / 64, bit % 64);
    let word = |w: usize| -> Option<u64> {
        let b = bytes.get(w * 8..w * 8 + 8)?;
        Some(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    };
    let mut v = word(w)? >> shift;
    if shift + width > 64 {
        v |= word(w + 1)? << (64 - shift);
    }
    Some(if width == 64 {
        v
    } else {
        v & ((1u64 << width) - 1)
    })
}

/// The greatest common divisor of all values (0 if all are 0).
pub fn gcd_of(values: impl Iterator<Item = u64>) -> u64 {
    fn gcd(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    values.fold(0, gcd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_width() {
        for width in 0..=64u8 {
            let max = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width).wrapping_sub(1)
            };
            let values: Vec<u64> = (0..1000u64)
                .map(|i| {
                    if width == 0 {
                        0
                    } else {
                        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & max
                    }
                })
                .collect();
            let packed = pack(&values, width);
            assert_eq!(packed.len(), packed_len(values.len(), width));
            let mut out = Vec::new();
            assert!(unpack(&packed, width, values.len(), &mut out));
            assert_eq!(out, values, "width {width}");
            for (i, v) in values.iter().enumerate() {
                assert_eq!(get(&packed, width, i), Some(*v), "width {width} value {i}");
            }
            if width > 0 {
                assert_eq!(
                    get(&packed, width, packed.len() * 8 / width as usize + 1),
                    None
                );
            }
        }
    }

    #[test]
    fn short_input_is_refused_and_gcd_works() {
        let packed = pack(&[1, 2, 3], 7);
        let mut out = Vec::new();
        assert!(!unpack(&packed[..packed.len() - 1], 7, 3, &mut out));
        assert_eq!(gcd_of([1000u64, 3000, 0, 7000].into_iter()), 1000);
        assert_eq!(width_for(0), 0);
        assert_eq!(width_for(255), 8);
    }
}
