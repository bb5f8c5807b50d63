//! The streaming board's `plays`: Zipf users and titles, an evening peak,
//! log-normal sessions, 1% sent twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::{evening_weighted_time, normal, rfc3339, weighted, SplitMix64, Zipf};

/// Users the plays come from (Zipf: a few watch a lot).
pub const USERS: usize = 200_000;
/// Titles in the catalogue (Zipf: a few are most of the plays).
pub const CONTENT: usize = 50_000;
/// Share of plays sent twice (the same `event_id`): what dedup must drop.
pub const DUPLICATE_SHARE: f64 = 0.01;

const COUNTRIES: [(&str, u32); 12] = [
    ("US", 30),
    ("IN", 14),
    ("BR", 9),
    ("GB", 7),
    ("DE", 6),
    ("FR", 6),
    ("MX", 5),
    ("JP", 5),
    ("CA", 4),
    ("ES", 4),
    ("NL", 3),
    ("AU", 3),
];
const DEVICES: [(&str, u32); 4] = [("mobile", 55), ("tv", 20), ("web", 20), ("tablet", 5)];
const EVENTS: [(&str, u32); 4] = [("play", 70), ("pause", 15), ("complete", 10), ("seek", 5)];
const CATEGORIES: [&str; 8] = [
    "drama",
    "comedy",
    "documentary",
    "kids",
    "action",
    "sports",
    "music",
    "news",
];

/// What `sluice gen streaming` makes.
#[derive(Clone, Debug)]
pub struct StreamingOptions {
    /// Plays to generate (duplicates come on top).
    pub events: u64,
    /// The seed: the same seed and `now` give the same rows.
    pub seed: u64,
    /// The end of the generated day, microseconds since the epoch (UTC).
    pub now_micros: i64,
}

/// One play event of the streaming board.
#[derive(Clone, Debug, PartialEq)]
pub struct Play {
    /// Unique per play; a duplicate repeats it.
    pub event_id: String,
    /// Zipf over [`USERS`].
    pub user_id: i64,
    /// Within the 24 hours before `now`, more in the evening (UTC).
    pub event_time: i64,
    /// ISO country code, weighted.
    pub country: &'static str,
    /// mobile, tv, web or tablet.
    pub device_type: &'static str,
    /// Zipf over [`CONTENT`].
    pub content_id: i64,
    /// The title's category (fixed per title).
    pub content_category: &'static str,
    /// play, pause, complete or seek.
    pub event_type: &'static str,
    /// Seconds watched in the session (log-normal, median about 20 minutes).
    pub session_duration_sec: i64,
    /// Watched to the end.
    pub completed: bool,
}

/// Makes plays one at a time: the skewed choices shared by the generated
/// day ([`streaming_plays`]) and the live stream of `sluice demo`.
pub(crate) struct PlayMaker {
    users: Zipf,
    content: Zipf,
}

impl PlayMaker {
    pub(crate) fn new() -> PlayMaker {
        PlayMaker {
            users: Zipf::new(USERS, 1.05),
            content: Zipf::new(CONTENT, 1.1),
        }
    }

    /// Play number `n` (its `event_id`), happening at `event_time`.
    pub(crate) fn play(&self, rng: &mut SplitMix64, n: u64, event_time: i64) -> Play {
        let content_id = self.content.sample(rng) as i64;
        let event_type = weighted(rng, &EVENTS);
        // exp(N(7.1, 1)): a median of about 20 minutes, a long tail.
        let session = (7.1 + normal(rng)).exp().min(6.0 * 3600.0) as i64;
        Play {
            event_id: format!("e{:012}", n),
            user_id: self.users.sample(rng) as i64,
            event_time,
            country: weighted(rng, &COUNTRIES),
            device_type: weighted(rng, &DEVICES),
            content_id,
            content_category: CATEGORIES[(content_id as usize * 7919) % CATEGORIES.len()],
            event_type,
            session_duration_sec: session.max(1),
            completed: event_type == "complete" || rng.unit() < 0.05,
        }
    }
}

impl Play {
    /// The play as one JSON object, as it goes to Kafka.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event_id": self.event_id,
            "user_id": self.user_id,
            "event_time": rfc3339(self.event_time),
            "country": self.country,
            "device_type": self.device_type,
            "content_id": self.content_id,
            "content_category": self.content_category,
            "event_type": self.event_type,
            "session_duration_sec": self.session_duration_sec,
            "completed": self.completed,
        })
    }
}

/// The plays for `options`, in event-time order, duplicates included (each a
/// few minutes after its original).
pub fn streaming_plays(options: &StreamingOptions) -> Vec<Play> {
    let mut rng = SplitMix64(options.seed ^ 0x5eed_5eed_5eed_5eed);
    let maker = PlayMaker::new();
    let day = 86_400_000_000i64;
    let start = options.now_micros - day;
    let mut plays = Vec::with_capacity(options.events as usize);
    for n in 0..options.events {
        let event_time = evening_weighted_time(&mut rng, start, day);
        plays.push(maker.play(&mut rng, n, event_time));
    }
    let duplicates: Vec<Play> = plays
        .iter()
        .filter(|_| rng.unit() < DUPLICATE_SHARE)
        .cloned()
        .collect();
    plays.extend(duplicates);
    plays.sort_by(|a, b| (a.event_time, &a.event_id).cmp(&(b.event_time, &b.event_id)));
    plays
}

/// Writes `plays` as `dir/plays.jsonl` (one JSON object a line); returns the path.
///
/// # Errors
/// I/O errors on the file.
pub fn write_plays_json(plays: &[Play], dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("plays.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for p in plays {
        let line = p.to_json();
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(path)
}

/// Writes `plays` as `dir/plays.parquet` (zstd); returns the path.
///
/// # Errors
/// I/O and encoding errors, as text.
pub fn write_plays_parquet(plays: &[Play], dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("plays.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("country", DataType::Utf8, false),
        Field::new("device_type", DataType::Utf8, false),
        Field::new("content_id", DataType::Int64, false),
        Field::new("content_category", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("session_duration_sec", DataType::Int64, false),
        Field::new("completed", DataType::Boolean, false),
    ]));
    let mut writer = super::zstd_parquet_writer(&path, &schema)?;
    for chunk in plays.chunks(1 << 20) {
        let text = |f: fn(&Play) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(chunk.iter().map(f)))
        };
        let int = |f: fn(&Play) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(chunk.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            text(|p| &p.event_id),
            int(|p| p.user_id),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(chunk.iter().map(|p| p.event_time))
                    .with_timezone("+00:00"),
            ),
            text(|p| p.country),
            text(|p| p.device_type),
            int(|p| p.content_id),
            text(|p| p.content_category),
            text(|p| p.event_type),
            int(|p| p.session_duration_sec),
            Arc::new(BooleanArray::from_iter(
                chunk.iter().map(|p| Some(p.completed)),
            )),
        ];
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| e.to_string())?;
        writer.write(&batch).map_err(|e| e.to_string())?;
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(events: u64, seed: u64) -> StreamingOptions {
        StreamingOptions {
            events,
            seed,
            now_micros: 1_780_000_000_000_000,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plays_and_another_does_not() {
        assert_eq!(
            streaming_plays(&options(2000, 7)),
            streaming_plays(&options(2000, 7))
        );
        assert_ne!(
            streaming_plays(&options(2000, 7)),
            streaming_plays(&options(2000, 8))
        );
    }

    #[test]
    fn plays_are_skewed_duplicated_and_within_the_day() {
        let o = options(50_000, 1);
        let plays = streaming_plays(&o);
        let distinct: std::collections::HashSet<&str> =
            plays.iter().map(|p| p.event_id.as_str()).collect();
        assert_eq!(distinct.len(), 50_000);
        let duplicates = plays.len() - distinct.len();
        assert!((300..=700).contains(&duplicates), "{duplicates} duplicates");
        assert!(plays
            .iter()
            .all(|p| p.event_time >= o.now_micros - 86_400_000_000 && p.event_time < o.now_micros));
        // Zipf: the most active user has far more than a uniform share (0.25 plays).
        let mut per_user = std::collections::HashMap::new();
        for p in &plays {
            *per_user.entry(p.user_id).or_insert(0) += 1;
        }
        assert!(per_user.values().max().copied().unwrap_or(0) > 100);
        // More plays in the evening hour than in the morning one.
        let hour = |h: i64| {
            plays
                .iter()
                .filter(|p| (p.event_time / 3_600_000_000).rem_euclid(24) == h)
                .count()
        };
        assert!(hour(20) > hour(8) * 2, "{} vs {}", hour(20), hour(8));
    }
}
