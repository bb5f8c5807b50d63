//! Workload generators for the design brief's dashboards: deterministic
//! events (the same seed and "now" give the same bytes) with the skew real
//! traffic has, as JSON lines for Kafka (`sluice produce`) or as Parquet for
//! `sluice import` and for other engines.
//!
//! - [`streaming`]: the engagement board's `plays`;
//! - [`restaurant`]: the partner portal's orders (one partial message per
//!   status change), order items, ratings, restaurants and menus;
//! - [`live`]: both, made continuously as a clock moves (`sluice demo`).

pub mod live;
pub mod restaurant;
pub mod streaming;

pub use live::{LiveMessage, LiveOptions, LiveWorkload};
pub use restaurant::{
    merged_orders, restaurant_topics, write_topics_json, write_topics_parquet, RestaurantOptions,
    RestaurantTopics,
};
pub use streaming::{
    streaming_plays, write_plays_json, write_plays_parquet, Play, StreamingOptions,
};

/// The topics the dashboards' events go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// Order status changes (partial upserts keyed by `order_id`).
    Orders,
    /// The items of each order (append-only).
    OrderItems,
    /// Ratings of delivered orders (append-only).
    Ratings,
    /// The streaming board's plays (deduplicated by `event_id`).
    Plays,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 4] = [
        Topic::Orders,
        Topic::OrderItems,
        Topic::Ratings,
        Topic::Plays,
    ];

    /// The topic's (and its table's) name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Orders => "orders",
            Topic::OrderItems => "order_items",
            Topic::Ratings => "ratings",
            Topic::Plays => "plays",
        }
    }

    /// The field whose value keys each message: one order's messages, or
    /// one play's copies, land in one partition, in order.
    pub fn key_field(self) -> &'static str {
        match self {
            Topic::Plays => "event_id",
            _ => "order_id",
        }
    }
}

/// A zstd-compressed Parquet writer of `schema` creating `path`.
fn zstd_parquet_writer(
    path: &std::path::Path,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<parquet::arrow::ArrowWriter<std::fs::File>, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    parquet::arrow::ArrowWriter::try_new(file, std::sync::Arc::clone(schema), Some(properties))
        .map_err(|e| e.to_string())
}

/// A time as the generated JSON carries it: RFC 3339 in UTC.
fn rfc3339(micros: i64) -> String {
    sluice_storage::types::format_timestamp(micros).replace(' ', "T") + "Z"
}

/// SplitMix64: a small, fast generator whose sequence is fixed by its seed,
/// so generated workloads are the same on every machine (hand-written: the
/// `rand` crates change their streams between versions).
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A standard normal draw (Box-Muller).
pub(crate) fn normal(rng: &mut SplitMix64) -> f64 {
    let u = rng.unit().max(f64::MIN_POSITIVE);
    let v = rng.unit();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A time in the `day` microseconds from `start`, three times as likely at
/// 20:00 UTC as at 08:00 (rejection from a cosine over the time of day).
pub(crate) fn evening_weighted_time(rng: &mut SplitMix64, start: i64, day: i64) -> i64 {
    loop {
        let at = start + (rng.unit() * day as f64) as i64;
        let time_of_day = at.rem_euclid(day) as f64 / day as f64;
        let weight = 2.0 + (2.0 * std::f64::consts::PI * (time_of_day - 20.0 / 24.0)).cos();
        if rng.unit() * 3.0 < weight {
            return at;
        }
    }
}

/// One of `choices`, by weight.
pub(crate) fn weighted<T: Copy>(rng: &mut SplitMix64, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    let mut pick = (rng.unit() * f64::from(total)) as u32;
    for (value, w) in choices {
        if pick < *w {
            return *value;
        }
        pick -= w;
    }
    choices[choices.len() - 1].0
}

/// Zipf's law over `1..=n` with exponent `s`, sampled by binary search of its
/// cumulative distribution.
pub(crate) struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect::<Vec<f64>>();
        let cumulative = cumulative.into_iter().map(|c| c / total).collect();
        Zipf { cumulative }
    }

    /// A rank in `1..=n`.
    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.unit();
        self.cumulative.partition_point(|c| *c < u) + 1
    }
}
