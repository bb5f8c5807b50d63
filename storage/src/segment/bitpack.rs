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
    unpack_with(bytes, width, 0..count, out, |code| code)
}

/// Unpacks values `rows` (positions in the stream) of `width` bits from
/// `bytes`, each passed through `map` on its way into `out` (cleared first),
/// so that a block, or a slice of one, decodes to its final values
/// (`base + code * scale`, or narrow codes) in one pass. Returns false if
/// `bytes` is too short for them.
///
/// Every sealed integer block a query reads comes through here: written by
/// hand because the layout is the segment format's, and because it is the
/// innermost loop of every scan of a sealed integer column.
pub fn unpack_with<T>(
    bytes: &[u8],
    width: u8,
    rows: std::ops::Range<usize>,
    out: &mut Vec<T>,
    map: impl Fn(u64) -> T,
) -> bool {
    out.clear();
    if rows.start > rows.end || bytes.len() < packed_len(rows.end, width) {
        return false;
    }
    out.reserve(rows.len());
    if width == 0 {
        out.extend(rows.map(|_| map(0)));
        return true;
    }
    let w = width as usize;
    // Whole runs of 64 values (each exactly `width` words) go through a
    // kernel compiled for their width; the values before the first run and
    // after the last one are read one at a time.
    let first_run = rows.start.div_ceil(64);
    let runs = (rows.end / 64).saturating_sub(first_run);
    let head_end = if runs > 0 { first_run * 64 } else { rows.end };
    out.extend((rows.start..head_end).map(|i| map(value_at(bytes, w, i))));
    if runs > 0 {
        let run_bytes = w * 8;
        let mut codes = [0u64; 64];
        let from = bytes.get(first_run * run_bytes..).unwrap_or_default();
        for run in from.chunks_exact(run_bytes).take(runs) {
            unpack_run(run, width, &mut codes);
            out.extend(codes.iter().map(|&c| map(c)));
        }
        let tail = (first_run + runs) * 64;
        out.extend((tail..rows.end).map(|i| map(value_at(bytes, w, i))));
    }
    true
}

/// Value `i` of a stream of `w`-bit values that holds it (the caller checked
/// the length).
#[inline]
fn value_at(bytes: &[u8], w: usize, i: usize) -> u64 {
    let bit = i * w;
    let at = bit / 8;
    match bytes.get(at..at + 8) {
        // The whole value lies in these eight bytes for widths up to 57.
        Some(b) if w <= 57 => {
            let window = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            (window >> (bit % 8)) & ((1u64 << w) - 1)
        }
        _ => get(bytes, w as u8, i).unwrap_or(0),
    }
}

/// 64 values of `width` bits from `run` (`width` words) into `out`, by a
/// kernel compiled for that width: every shift and word index is a
/// constant, so a value is a shift, an OR and a mask of words already in
/// registers (about four times the speed of reading each value's bytes).
fn unpack_run(run: &[u8], width: u8, out: &mut [u64; 64]) {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match width {
                $($w => unpack_run_of::<$w>(run, out),)*
                _ => {
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = get(run, width, i).unwrap_or(0);
                    }
                }
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28
        29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56
        57 58 59 60 61 62 63 64);
}

#[inline(always)]
fn unpack_run_of<const W: usize>(run: &[u8], out: &mut [u64; 64]) {
    let Some(run) = run.get(..W * 8) else {
        return;
    };
    let word = |j: usize| -> u64 {
        let b = &run[j * 8..j * 8 + 8];
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    };
    let mask = if W == 64 { u64::MAX } else { (1u64 << W) - 1 };
    macro_rules! values {
        ($($i:literal)*) => {$({
            let bit = $i * W;
            let (j, shift) = (bit / 64, bit % 64);
            let low = word(j) >> shift;
            out[$i] = if shift + W > 64 {
                (low | word(j + 1) << (64 - shift)) & mask
            } else {
                low & mask
            };
        })*};
    }
    values!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
        31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
        60 61 62 63);
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
            for rows in [0..0, 0..1, 3..70, 500..1000, 999..1000] {
                assert!(unpack_with(&packed, width, rows.clone(), &mut out, |c| c));
                assert_eq!(out, values[rows.clone()], "width {width} rows {rows:?}");
            }
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
