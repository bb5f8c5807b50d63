//! A merging t-digest for `approx_percentile`: bounded memory per group, accurate
//! at the tails, mergeable across segments and threads.
//!
//! Written here (about a hundred lines) because the aggregation fast path merges
//! partial digests per group and the crates on offer either lack merging of partial
//! states or pull in dependencies larger than the algorithm.

const COMPRESSION: f64 = 100.0;
const BUFFER: usize = 512;

/// One digest: centroids (mean, weight) sorted by mean, plus unmerged points.
#[derive(Clone, Debug, Default)]
pub struct TDigest {
    centroids: Vec<(f64, f64)>,
    buffer: Vec<(f64, f64)>,
    min: f64,
    max: f64,
    count: f64,
}

impl TDigest {
    /// Adds one value.
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        if self.count == 0.0 && self.buffer.is_empty() {
            self.min = x;
            self.max = x;
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.buffer.push((x, 1.0));
        if self.buffer.len() >= BUFFER {
            self.compress();
        }
    }

    /// Adds everything another digest holds.
    pub fn merge(&mut self, other: &TDigest) {
        if other.count == 0.0 && other.buffer.is_empty() {
            return;
        }
        if self.count == 0.0 && self.buffer.is_empty() {
            self.min = other.min;
            self.max = other.max;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.buffer.extend_from_slice(&other.centroids);
        self.buffer.extend_from_slice(&other.buffer);
        self.compress();
    }

    fn compress(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut points = std::mem::take(&mut self.centroids);
        points.append(&mut self.buffer);
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = points.iter().map(|p| p.1).sum();
        let k = |q: f64| COMPRESSION / (2.0 * std::f64::consts::PI) * (2.0 * q - 1.0).asin();
        let mut merged: Vec<(f64, f64)> =
            Vec::with_capacity(points.len().min(2 * COMPRESSION as usize));
        let mut seen = 0.0;
        let mut current = points[0];
        let mut k_lo = k(0.0);
        for &p in &points[1..] {
            let q = (seen + current.1 + p.1) / total;
            if k(q.min(1.0)) - k_lo <= 1.0 {
                let w = current.1 + p.1;
                current.0 += (p.0 - current.0) * p.1 / w;
                current.1 = w;
            } else {
                seen += current.1;
                k_lo = k((seen / total).min(1.0));
                merged.push(current);
                current = p;
            }
        }
        merged.push(current);
        self.centroids = merged;
        self.count = total;
    }

    /// The estimated value at quantile `q` in [0, 1], or `None` if empty.
    pub fn quantile(&mut self, q: f64) -> Option<f64> {
        self.compress();
        let c = &self.centroids;
        if c.is_empty() {
            return None;
        }
        if c.len() == 1 || q <= 0.0 {
            return Some(if q <= 0.0 { self.min } else { c[0].0 });
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let target = q * self.count;
        // Each centroid's mass is centred on its mean; interpolate between centres.
        let mut cum = 0.0;
        for i in 0..c.len() {
            let centre = cum + c[i].1 / 2.0;
            if target < centre {
                if i == 0 {
                    let frac = (target / centre).clamp(0.0, 1.0);
                    return Some(self.min + (c[0].0 - self.min) * frac);
                }
                let prev_centre = cum - c[i - 1].1 / 2.0;
                let frac = (target - prev_centre) / (centre - prev_centre);
                return Some(c[i - 1].0 + (c[i].0 - c[i - 1].0) * frac);
            }
            cum += c[i].1;
        }
        let last = c[c.len() - 1];
        let centre = self.count - last.1 / 2.0;
        let frac = ((target - centre) / (self.count - centre)).clamp(0.0, 1.0);
        Some(last.0 + (self.max - last.0) * frac)
    }

    /// Approximate bytes held.
    pub fn size(&self) -> usize {
        (self.centroids.capacity() + self.buffer.capacity()) * 16 + 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_uniform_stream_are_close() {
        let mut a = TDigest::default();
        let mut b = TDigest::default();
        for i in 0..100_000 {
            let x = ((i * 7919) % 100_000) as f64;
            if i % 3 == 0 {
                a.add(x)
            } else {
                b.add(x)
            }
        }
        a.merge(&b);
        for q in [0.01, 0.5, 0.9, 0.99] {
            let est = a.quantile(q).unwrap();
            assert!((est - q * 100_000.0).abs() < 500.0, "q={q} est={est}");
        }
        assert_eq!(a.quantile(1.0), Some(99_999.0));
    }
}
