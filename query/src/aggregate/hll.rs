//! HyperLogLog for `approx_count_distinct`.
//!
//! Written here rather than taken from a crate because partial sketches are merged
//! across segments and threads inside the aggregation fast path, and small groups
//! (most groups in a dashboard's GROUP BY) stay exact: a sketch keeps the exact set of
//! hashes until it passes [`SPARSE_LIMIT`], then switches to 2^14 registers
//! (standard error about 0.8%).

use std::collections::HashSet;

const P: u32 = 14;
const M: usize = 1 << P;
/// Distinct hashes kept exactly before switching to registers.
pub const SPARSE_LIMIT: usize = 2048;

/// One HyperLogLog sketch.
#[derive(Clone, Debug)]
pub enum HyperLogLog {
    /// Exact set of hashes, for small cardinalities.
    Sparse(HashSet<u64, ahash::RandomState>),
    /// 2^14 registers of leading-zero counts.
    Dense(Box<[u8]>),
}

impl Default for HyperLogLog {
    fn default() -> Self {
        HyperLogLog::Sparse(HashSet::with_hasher(ahash::RandomState::new()))
    }
}

impl HyperLogLog {
    /// Adds a value by its 64-bit hash.
    pub fn add(&mut self, hash: u64) {
        match self {
            HyperLogLog::Sparse(set) => {
                set.insert(hash);
                if set.len() > SPARSE_LIMIT {
                    self.densify();
                }
            }
            HyperLogLog::Dense(regs) => add_dense(regs, hash),
        }
    }

    fn densify(&mut self) {
        if let HyperLogLog::Sparse(set) = self {
            let mut regs = vec![0u8; M].into_boxed_slice();
            for h in set.iter() {
                add_dense(&mut regs, *h);
            }
            *self = HyperLogLog::Dense(regs);
        }
    }

    /// Adds every value another sketch has seen.
    pub fn merge(&mut self, other: &HyperLogLog) {
        match other {
            HyperLogLog::Sparse(set) => set.iter().for_each(|h| self.add(*h)),
            HyperLogLog::Dense(theirs) => {
                self.densify();
                if let HyperLogLog::Dense(mine) = self {
                    for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// The estimated number of distinct values (exact while sparse).
    pub fn estimate(&self) -> u64 {
        match self {
            HyperLogLog::Sparse(set) => set.len() as u64,
            HyperLogLog::Dense(regs) => {
                let m = M as f64;
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let mut sum = 0.0;
                let mut zeros = 0usize;
                for r in regs.iter() {
                    sum += 2f64.powi(-(*r as i32));
                    zeros += usize::from(*r == 0);
                }
                let raw = alpha * m * m / sum;
                if raw <= 2.5 * m && zeros > 0 {
                    // Linear counting is more accurate for small ranges.
                    (m * (m / zeros as f64).ln()).round() as u64
                } else {
                    raw.round() as u64
                }
            }
        }
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        match self {
            HyperLogLog::Sparse(set) => set.capacity() * 9 + 48,
            HyperLogLog::Dense(_) => M + 16,
        }
    }
}

fn add_dense(regs: &mut [u8], hash: u64) {
    let index = (hash >> (64 - P)) as usize;
    let rest = hash << P;
    let rank = (rest.leading_zeros().min(64 - P) + 1) as u8;
    if regs[index] < rank {
        regs[index] = rank;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_is_within_two_percent_at_a_million() {
        let state = crate::aggregate::keys::fixed_state();
        let mut a = HyperLogLog::default();
        let mut b = HyperLogLog::default();
        for i in 0..1_000_000u64 {
            let h = state.hash_one(i);
            if i % 2 == 0 {
                a.add(h)
            } else {
                b.add(h)
            }
        }
        a.merge(&b);
        let est = a.estimate() as f64;
        let err = (est - 1e6).abs() / 1e6;
        assert!(err < 0.02, "estimate {est}, error {err}");
    }

    #[test]
    fn small_sets_are_exact() {
        let mut h = HyperLogLog::default();
        for i in 0..100u64 {
            h.add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            h.add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        assert_eq!(h.estimate(), 100);
    }
}
