//! Workload generators for the design brief's dashboards: deterministic
//! events (the same seed and "now" give the same bytes) with the skew real
//! traffic has, as JSON lines for Kafka (`sluice produce`) or as Parquet for
//! `sluice import` and for other engines.
//!
//! Built: the streaming board's `plays` (JSON lines and Parquet) and the
//! restaurant portal's five topics (JSON lines; Parquet not yet).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

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

/// The plays for `options`, in event-time order, duplicates included (each a
/// few minutes after its original).
pub fn streaming_plays(options: &StreamingOptions) -> Vec<Play> {
    let mut rng = SplitMix64(options.seed ^ 0x5eed_5eed_5eed_5eed);
    let users = Zipf::new(USERS, 1.05);
    let content = Zipf::new(CONTENT, 1.1);
    let day = 86_400_000_000i64;
    let start = options.now_micros - day;
    let mut plays = Vec::with_capacity(options.events as usize);
    for n in 0..options.events {
        let event_time = evening_weighted_time(&mut rng, start, day);
        let content_id = content.sample(&mut rng) as i64;
        let event_type = weighted(&mut rng, &EVENTS);
        // exp(N(7.1, 1)): a median of about 20 minutes, a long tail.
        let session = (7.1 + normal(&mut rng)).exp().min(6.0 * 3600.0) as i64;
        plays.push(Play {
            event_id: format!("e{:012}", n),
            user_id: users.sample(&mut rng) as i64,
            event_time,
            country: weighted(&mut rng, &COUNTRIES),
            device_type: weighted(&mut rng, &DEVICES),
            content_id,
            content_category: CATEGORIES[(content_id as usize * 7919) % CATEGORIES.len()],
            event_type,
            session_duration_sec: session.max(1),
            completed: event_type == "complete" || rng.unit() < 0.05,
        });
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
        let line = serde_json::json!({
            "event_id": p.event_id,
            "user_id": p.user_id,
            "event_time": sluice_storage::types::format_timestamp(p.event_time).replace(' ', "T") + "Z",
            "country": p.country,
            "device_type": p.device_type,
            "content_id": p.content_id,
            "content_category": p.content_category,
            "event_type": p.event_type,
            "session_duration_sec": p.session_duration_sec,
            "completed": p.completed,
        });
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
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties))
            .map_err(|e| e.to_string())?;
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

/// SplitMix64: a small, fast generator whose sequence is fixed by its seed,
/// so generated workloads are the same on every machine (hand-written: the
/// `rand` crates change their streams between versions).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u = rng.unit().max(f64::MIN_POSITIVE);
    let v = rng.unit();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A time in the `day` microseconds from `start`, three times as likely at
/// 20:00 UTC as at 08:00 (rejection from a cosine over the time of day).
fn evening_weighted_time(rng: &mut SplitMix64, start: i64, day: i64) -> i64 {
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
fn weighted<T: Copy>(rng: &mut SplitMix64, choices: &[(T, u32)]) -> T {
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
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
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
    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.unit();
        self.cumulative.partition_point(|c| *c < u) + 1
    }
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

/// What `sluice gen restaurant` makes.
#[derive(Clone, Debug)]
pub struct RestaurantOptions {
    /// Orders to generate.
    pub orders: u64,
    /// Restaurants (Zipf: a few take most orders).
    pub restaurants: u64,
    /// The seed.
    pub seed: u64,
    /// The moment the workload ends, microseconds since the epoch (UTC):
    /// orders placed shortly before it are still under way.
    pub now_micros: i64,
}

/// The restaurant partner portal's topics, each as JSON objects in the order
/// they would be produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestaurantTopics {
    /// One message per status change of an order, with only the fields that
    /// change (a partial upsert merges them); some out of order, some twice.
    pub orders: Vec<serde_json::Value>,
    /// The items of each order, when it is placed (append-only).
    pub order_items: Vec<serde_json::Value>,
    /// Ratings of delivered orders (append-only).
    pub ratings: Vec<serde_json::Value>,
    /// The restaurants (a dimension table).
    pub restaurants: Vec<serde_json::Value>,
    /// Each restaurant's menu (a dimension table).
    pub items: Vec<serde_json::Value>,
}

/// Items on each restaurant's menu.
const MENU: u64 = 20;
const CUISINES: [&str; 8] = [
    "pizza", "sushi", "burgers", "thai", "indian", "mexican", "salads", "bakery",
];
const CITIES: [&str; 6] = ["London", "Paris", "Berlin", "Madrid", "Lisbon", "Dublin"];
const DISHES: [&str; 10] = [
    "classic", "spicy", "veggie", "deluxe", "family", "kids", "vegan", "double", "mini", "special",
];

/// The restaurant workload for `options`: orders over the day before `now`
/// with lunch and dinner peaks, each order's status changes up to `now`
/// (NEW, CONFIRMED, IN_KITCHEN, READY, PICKED_UP, DELIVERED; 5% CANCELLED),
/// its items, and ratings of a third of the delivered ones.
pub fn restaurant_topics(options: &RestaurantOptions) -> RestaurantTopics {
    use serde_json::json;
    let mut rng = SplitMix64(options.seed ^ 0x0dde_c0de_0dde_c0de);
    let restaurants = options.restaurants.max(1);
    let popularity = Zipf::new(restaurants as usize, 1.0);
    let dish = Zipf::new(MENU as usize, 1.2);
    let minute = 60_000_000i64;
    let day = 1440 * minute;
    let time = |t: i64| sluice_storage::types::format_timestamp(t).replace(' ', "T") + "Z";
    let mut topics = RestaurantTopics::default();
    for r in 1..=restaurants {
        topics.restaurants.push(json!({
            "restaurant_id": r,
            "name": format!("restaurant-{r}"),
            "cuisine": CUISINES[(r % CUISINES.len() as u64) as usize],
            "city": CITIES[(r * 7 % CITIES.len() as u64) as usize],
        }));
        for k in 0..MENU {
            topics.items.push(json!({
                "item_id": r * 100 + k,
                "restaurant_id": r,
                "name": format!("{} {}", DISHES[(k % 10) as usize], CUISINES[(r % CUISINES.len() as u64) as usize]),
                "price": item_price(r, k),
            }));
        }
    }
    // (event time, message) pairs, sorted by time before shuffling a few.
    let mut events: Vec<(i64, serde_json::Value)> = Vec::new();
    for n in 0..options.orders {
        let order_id = format!("o{n:010}");
        let restaurant = popularity.sample(&mut rng) as u64;
        let created = meal_weighted_time(&mut rng, options.now_micros - day, day);
        let mut subtotal_cents = 0i64;
        for _ in 0..(1 + rng.next() % 4) {
            let k = dish.sample(&mut rng) as u64 - 1;
            let quantity = 1 + (rng.next() % 3) as i64;
            let price = item_price(restaurant, k);
            subtotal_cents += quantity * (price * 100.0).round() as i64;
            topics.order_items.push(json!({
                "order_id": order_id, "restaurant_id": restaurant, "item_id": restaurant * 100 + k,
                "quantity": quantity, "price": price, "event_time": time(created),
            }));
        }
        let cancelled = rng.unit() < 0.05;
        let confirmed = created + minute + (rng.unit() * 2.0 * minute as f64) as i64;
        let kitchen = confirmed + minute;
        let ready = kitchen + 8 * minute + (rng.unit() * 17.0 * minute as f64) as i64;
        let picked = ready + 2 * minute + (rng.unit() * 8.0 * minute as f64) as i64;
        let delivered = picked + 10 * minute + (rng.unit() * 20.0 * minute as f64) as i64;
        let courier = 1 + rng.next() % 5_000;
        let mut steps = vec![
            (
                created,
                json!({"status": "NEW", "customer_id": 1 + rng.next() % 1_000_000,
                "subtotal": subtotal_cents as f64 / 100.0, "created_at": time(created)}),
            ),
            (
                confirmed,
                json!({"status": "CONFIRMED", "confirmed_at": time(confirmed)}),
            ),
        ];
        if cancelled {
            steps.push((confirmed + minute, json!({"status": "CANCELLED"})));
        } else {
            steps.extend([
                (kitchen, json!({"status": "IN_KITCHEN"})),
                (ready, json!({"status": "READY", "ready_at": time(ready)})),
                (picked, json!({"status": "PICKED_UP", "picked_up_at": time(picked), "courier_id": courier})),
                (delivered, json!({"status": "DELIVERED", "delivered_at": time(delivered)})),
            ]);
            let rated = delivered + 5 * minute + (rng.unit() * 55.0 * minute as f64) as i64;
            if rng.unit() < 1.0 / 3.0 && rated < options.now_micros {
                let stars = weighted(&mut rng, &[(5, 50), (4, 30), (3, 10), (2, 5), (1, 5)]);
                topics.ratings.push(json!({
                    "order_id": order_id, "restaurant_id": restaurant,
                    "stars": stars, "event_time": time(rated),
                }));
            }
        }
        for (at, mut fields) in steps {
            if at >= options.now_micros {
                break;
            }
            if let Some(map) = fields.as_object_mut() {
                map.insert("order_id".into(), json!(order_id));
                map.insert("restaurant_id".into(), json!(restaurant));
                map.insert("event_time".into(), json!(time(at)));
            }
            events.push((at, fields));
        }
    }
    events.sort_by_key(|e| e.0);
    // 2% of messages swap with the next one (out of order), 1% go twice.
    for i in 0..events.len().saturating_sub(1) {
        if rng.unit() < 0.02 {
            events.swap(i, i + 1);
        }
    }
    for (_, message) in events {
        if rng.unit() < 0.01 {
            topics.orders.push(message.clone());
        }
        topics.orders.push(message);
    }
    topics
        .ratings
        .sort_by(|a, b| a["event_time"].as_str().cmp(&b["event_time"].as_str()));
    topics
        .order_items
        .sort_by(|a, b| a["event_time"].as_str().cmp(&b["event_time"].as_str()));
    topics
}

/// Writes each topic as `dir/<topic>.jsonl`; returns the files and their lines.
///
/// # Errors
/// I/O errors on the files.
pub fn write_topics_json(
    topics: &RestaurantTopics,
    dir: &Path,
) -> std::io::Result<Vec<(PathBuf, usize)>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, rows) in [
        ("orders", &topics.orders),
        ("order_items", &topics.order_items),
        ("ratings", &topics.ratings),
        ("restaurants", &topics.restaurants),
        ("items", &topics.items),
    ] {
        let path = dir.join(format!("{name}.jsonl"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for row in rows {
            writeln!(out, "{row}")?;
        }
        out.flush()?;
        written.push((path, rows.len()));
    }
    Ok(written)
}

/// A menu item's price, fixed by restaurant and item: 4.50 to 24.50.
fn item_price(restaurant: u64, item: u64) -> f64 {
    let cents = 450 + (restaurant * 7_919 + item * 104_729) % 2_001;
    cents as f64 / 100.0
}

/// A time in the `day` microseconds from `start` with lunch (12:30 UTC) and
/// dinner (19:30 UTC) peaks over a low base.
fn meal_weighted_time(rng: &mut SplitMix64, start: i64, day: i64) -> i64 {
    let peak = |hours: f64, at: f64| (-((at - hours / 24.0) * 24.0).powi(2) / 2.0).exp();
    loop {
        let at = start + (rng.unit() * day as f64) as i64;
        let t = at.rem_euclid(day) as f64 / day as f64;
        let weight = 0.1 + peak(12.5, t) + 1.3 * peak(19.5, t);
        if rng.unit() * 1.5 < weight {
            return at;
        }
    }
}

#[cfg(test)]
mod restaurant_tests {
    use super::*;

    #[test]
    fn orders_move_through_their_statuses_up_to_now() {
        let options = RestaurantOptions {
            orders: 3000,
            restaurants: 50,
            seed: 2,
            now_micros: 1_780_000_000_000_000,
        };
        let topics = restaurant_topics(&options);
        assert_eq!(topics, restaurant_topics(&options), "deterministic");
        assert_eq!(topics.restaurants.len(), 50);
        assert_eq!(topics.items.len(), 50 * MENU as usize);
        let status = |m: &serde_json::Value| m["status"].as_str().unwrap_or("").to_string();
        let mut last: std::collections::HashMap<String, String> = Default::default();
        let mut by_time = topics.orders.clone();
        by_time.sort_by(|a, b| a["event_time"].as_str().cmp(&b["event_time"].as_str()));
        for m in &by_time {
            last.insert(m["order_id"].as_str().unwrap_or("").into(), status(m));
        }
        assert_eq!(last.len(), 3000, "every order has its NEW event");
        let count = |s: &str| last.values().filter(|v| v.as_str() == s).count();
        assert!(count("DELIVERED") > 2000, "{}", count("DELIVERED"));
        assert!(count("CANCELLED") > 50);
        // Some are under way at "now": couriers waiting, food in the kitchen.
        assert!(count("READY") + count("IN_KITCHEN") + count("PICKED_UP") > 0);
        // Partial events: READY carries ready_at but no subtotal.
        let ready = topics.orders.iter().find(|m| status(m) == "READY").unwrap();
        assert!(ready.get("ready_at").is_some() && ready.get("subtotal").is_none());
        // Out of order and duplicated messages.
        let times: Vec<&str> = topics
            .orders
            .iter()
            .filter_map(|m| m["event_time"].as_str())
            .collect();
        assert!(times.windows(2).any(|w| w[0] > w[1]), "none out of order");
        let distinct: std::collections::HashSet<String> =
            topics.orders.iter().map(|m| m.to_string()).collect();
        assert!(distinct.len() < topics.orders.len(), "none sent twice");
        assert!(!topics.ratings.is_empty() && topics.order_items.len() >= 3000);
    }
}
