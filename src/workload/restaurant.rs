//! The restaurant partner portal's topics: orders as one partial message per
//! status change (lunch and dinner peaks, Zipf restaurants and dishes, some
//! still under way at "now", some out of order or sent twice), their items,
//! ratings, and the restaurants and menus as dimension tables.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{rfc3339, weighted, SplitMix64, Topic, Zipf};

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
    pub orders: Vec<Value>,
    /// The items of each order, when it is placed (append-only).
    pub order_items: Vec<Value>,
    /// Ratings of delivered orders (append-only).
    pub ratings: Vec<Value>,
    /// The restaurants (a dimension table).
    pub restaurants: Vec<Value>,
    /// Each restaurant's menu (a dimension table).
    pub items: Vec<Value>,
}

/// Items on each restaurant's menu.
pub const MENU: u64 = 20;
const CUISINES: [&str; 8] = [
    "pizza", "sushi", "burgers", "thai", "indian", "mexican", "salads", "bakery",
];
const CITIES: [&str; 6] = ["London", "Paris", "Berlin", "Madrid", "Lisbon", "Dublin"];
const DISHES: [&str; 10] = [
    "classic", "spicy", "veggie", "deluxe", "family", "kids", "vegan", "double", "mini", "special",
];
const MINUTE: i64 = 60_000_000;
const DAY: i64 = 1440 * MINUTE;

/// The dimension tables: each restaurant (name, cuisine, city) and its menu
/// of [`MENU`] items (item id `restaurant * 100 + k`, name, price).
pub fn dimensions(restaurants: u64) -> (Vec<Value>, Vec<Value>) {
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for r in 1..=restaurants.max(1) {
        let cuisine = CUISINES[(r % CUISINES.len() as u64) as usize];
        rows.push(json!({
            "restaurant_id": r,
            "name": format!("restaurant-{r}"),
            "cuisine": cuisine,
            "city": CITIES[(r * 7 % CITIES.len() as u64) as usize],
        }));
        for k in 0..MENU {
            items.push(json!({
                "item_id": r * 100 + k,
                "restaurant_id": r,
                "name": item_name(k, cuisine),
                "price": item_price(r, k),
            }));
        }
    }
    (rows, items)
}

/// Makes orders one at a time: the skewed choices shared by the generated
/// day ([`restaurant_topics`]) and the live stream of `sluice demo`.
pub(crate) struct OrderMaker {
    restaurants: Zipf,
    dishes: Zipf,
}

impl OrderMaker {
    pub(crate) fn new(restaurants: u64) -> OrderMaker {
        OrderMaker {
            restaurants: Zipf::new(restaurants.max(1) as usize, 1.0),
            dishes: Zipf::new(MENU as usize, 1.2),
        }
    }

    /// Every message order number `n`, placed at `created`, will cause over
    /// its life, each with the time it happens: its items when placed, one
    /// partial message per status change (NEW, CONFIRMED, IN_KITCHEN,
    /// READY_FOR_PICKUP, PICKED_UP, DELIVERED; 5% CANCELLED after
    /// confirmation), the courier's arrival (a message without a status:
    /// arriving before the food is ready, the courier waits), and a rating
    /// for a third of the delivered ones.
    pub(crate) fn order(
        &self,
        rng: &mut SplitMix64,
        n: u64,
        created: i64,
    ) -> Vec<(i64, Topic, Value)> {
        let order_id = format!("o{n:010}");
        let restaurant = self.restaurants.sample(rng) as u64;
        let mut messages = Vec::new();
        let mut subtotal_cents = 0i64;
        for _ in 0..(1 + rng.next() % 4) {
            let k = self.dishes.sample(rng) as u64 - 1;
            let quantity = 1 + (rng.next() % 3) as i64;
            let price = item_price(restaurant, k);
            subtotal_cents += quantity * (price * 100.0).round() as i64;
            messages.push((
                created,
                Topic::OrderItems,
                json!({
                    "order_id": order_id, "restaurant_id": restaurant,
                    "item_id": restaurant * 100 + k, "quantity": quantity, "price": price,
                    "event_time": rfc3339(created),
                }),
            ));
        }
        let at = |rng: &mut SplitMix64, from: i64, low: i64, spread: i64| {
            from + low * MINUTE + (rng.unit() * (spread * MINUTE) as f64) as i64
        };
        let confirmed = at(rng, created, 1, 2);
        let mut steps = vec![
            (
                created,
                json!({"status": "NEW", "customer_id": 1 + rng.next() % 1_000_000,
                       "subtotal": subtotal_cents as f64 / 100.0, "created_at": rfc3339(created)}),
            ),
            (
                confirmed,
                json!({"status": "CONFIRMED", "confirmed_at": rfc3339(confirmed)}),
            ),
        ];
        if rng.unit() < 0.05 {
            steps.push((confirmed + MINUTE, json!({"status": "CANCELLED"})));
        } else {
            let kitchen = confirmed + MINUTE;
            let ready = at(rng, kitchen, 8, 17);
            // Couriers come from four minutes before the food is ready to
            // six after; one who comes early waits at the restaurant.
            let arrived = at(rng, ready, -4, 10).max(kitchen + MINUTE);
            let picked = at(rng, ready.max(arrived), 1, 3);
            let delivered = at(rng, picked, 10, 20);
            let courier = 1 + rng.next() % 5_000;
            steps.extend([
                (kitchen, json!({"status": "IN_KITCHEN"})),
                (
                    ready,
                    json!({"status": "READY_FOR_PICKUP", "ready_at": rfc3339(ready)}),
                ),
                (
                    arrived,
                    json!({"courier_id": courier, "courier_arrived_at": rfc3339(arrived)}),
                ),
                (
                    picked,
                    json!({"status": "PICKED_UP", "picked_up_at": rfc3339(picked)}),
                ),
                (
                    delivered,
                    json!({"status": "DELIVERED", "delivered_at": rfc3339(delivered)}),
                ),
            ]);
            let rated = at(rng, delivered, 5, 55);
            if rng.unit() < 1.0 / 3.0 {
                let stars = weighted(rng, &[(5, 50), (4, 30), (3, 10), (2, 5), (1, 5)]);
                messages.push((
                    rated,
                    Topic::Ratings,
                    json!({"order_id": order_id, "restaurant_id": restaurant,
                           "stars": stars, "event_time": rfc3339(rated)}),
                ));
            }
        }
        for (time, mut fields) in steps {
            if let Some(map) = fields.as_object_mut() {
                map.insert("order_id".into(), json!(order_id));
                map.insert("restaurant_id".into(), json!(restaurant));
                map.insert("event_time".into(), json!(rfc3339(time)));
            }
            messages.push((time, Topic::Orders, fields));
        }
        messages
    }
}

/// The restaurant workload for `options`: orders over the day before `now`
/// with lunch and dinner peaks, every message each causes up to `now`
/// ([`OrderMaker::order`]), and the dimension tables.
pub fn restaurant_topics(options: &RestaurantOptions) -> RestaurantTopics {
    let mut rng = SplitMix64(options.seed ^ 0x0dde_c0de_0dde_c0de);
    let maker = OrderMaker::new(options.restaurants);
    let (restaurants, items) = dimensions(options.restaurants);
    let mut topics = RestaurantTopics {
        restaurants,
        items,
        ..RestaurantTopics::default()
    };
    // Order messages as (event time, message), sorted by time before a few
    // are shuffled.
    let mut orders: Vec<(i64, Value)> = Vec::new();
    let mut items_at = Vec::new();
    let mut ratings_at = Vec::new();
    for n in 0..options.orders {
        let created = meal_weighted_time(&mut rng, options.now_micros - DAY, DAY);
        for (time, topic, message) in maker.order(&mut rng, n, created) {
            if time >= options.now_micros {
                continue;
            }
            match topic {
                Topic::Orders => orders.push((time, message)),
                Topic::OrderItems => items_at.push((time, message)),
                Topic::Ratings => ratings_at.push((time, message)),
                Topic::Plays => {}
            }
        }
    }
    orders.sort_by_key(|e| e.0);
    // 2% of messages swap with the next one (out of order), 1% go twice.
    for i in 0..orders.len().saturating_sub(1) {
        if rng.unit() < 0.02 {
            orders.swap(i, i + 1);
        }
    }
    for (_, message) in orders {
        if rng.unit() < 0.01 {
            topics.orders.push(message.clone());
        }
        topics.orders.push(message);
    }
    items_at.sort_by_key(|e| e.0);
    ratings_at.sort_by_key(|e| e.0);
    topics.order_items = items_at.into_iter().map(|e| e.1).collect();
    topics.ratings = ratings_at.into_iter().map(|e| e.1).collect();
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
            // to_writer, not Display: formatting through fmt is several times slower.
            serde_json::to_writer(&mut out, row)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        written.push((path, rows.len()));
    }
    Ok(written)
}

/// Item `k`'s name on a `cuisine` menu: the first ten dishes, then their
/// large versions.
fn item_name(k: u64, cuisine: &str) -> String {
    let dish = DISHES[(k % 10) as usize];
    if k < 10 {
        format!("{dish} {cuisine}")
    } else {
        format!("{dish} {cuisine} (large)")
    }
}

/// Each order's row as a partial upsert on `order_id` compared by
/// `event_time` makes it from `messages` in the order they are produced: a
/// message older than the row's newest is dropped whole; otherwise its
/// fields overwrite (the JSON carries no nulls). What the `orders` table
/// holds once every message is read, for engines without upserts.
pub fn merged_orders(messages: &[Value]) -> Vec<Value> {
    let mut rows: std::collections::HashMap<&str, serde_json::Map<String, Value>> =
        std::collections::HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for m in messages {
        let (Some(id), Some(fields)) = (m["order_id"].as_str(), m.as_object()) else {
            continue;
        };
        let time = m["event_time"].as_str().unwrap_or_default();
        match rows.get_mut(id) {
            // RFC 3339 in UTC with fixed-width fractions compares as text.
            Some(row) if time < row["event_time"].as_str().unwrap_or_default() => {}
            Some(row) => {
                for (k, v) in fields {
                    row.insert(k.clone(), v.clone());
                }
            }
            None => {
                order.push(id);
                rows.insert(id, fields.clone());
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| rows.remove(id).map(Value::Object))
        .collect()
}

/// How a generated JSON field becomes a Parquet column.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    /// NUMERIC(12, 2).
    Money,
    /// TIMESTAMP (microseconds, no zone) from RFC 3339 text.
    Time,
}

/// The columns of each topic's table, in `examples/dashboards/schema.sql`'s order.
const TABLES: [(&str, &[(&str, Kind)]); 5] = [
    (
        "orders",
        &[
            ("order_id", Kind::Text),
            ("restaurant_id", Kind::Int),
            ("customer_id", Kind::Int),
            ("status", Kind::Text),
            ("subtotal", Kind::Money),
            ("courier_id", Kind::Int),
            ("created_at", Kind::Time),
            ("confirmed_at", Kind::Time),
            ("ready_at", Kind::Time),
            ("courier_arrived_at", Kind::Time),
            ("picked_up_at", Kind::Time),
            ("delivered_at", Kind::Time),
            ("event_time", Kind::Time),
        ],
    ),
    (
        "order_items",
        &[
            ("order_id", Kind::Text),
            ("restaurant_id", Kind::Int),
            ("item_id", Kind::Int),
            ("quantity", Kind::Int),
            ("price", Kind::Money),
            ("event_time", Kind::Time),
        ],
    ),
    (
        "ratings",
        &[
            ("order_id", Kind::Text),
            ("restaurant_id", Kind::Int),
            ("stars", Kind::Int),
            ("event_time", Kind::Time),
        ],
    ),
    (
        "restaurants",
        &[
            ("restaurant_id", Kind::Int),
            ("name", Kind::Text),
            ("cuisine", Kind::Text),
            ("city", Kind::Text),
        ],
    ),
    (
        "items",
        &[
            ("item_id", Kind::Int),
            ("restaurant_id", Kind::Int),
            ("name", Kind::Text),
            ("price", Kind::Money),
        ],
    ),
];

/// Writes each table as `dir/<table>.parquet` (zstd): `orders` as the
/// merged rows ([`merged_orders`]), the others as they are. The same rows a
/// Sluice table holds after reading the JSON lines, for `sluice import` and
/// for engines without upserts. Returns the files and their rows.
///
/// # Errors
/// I/O and encoding errors, as text.
pub fn write_topics_parquet(
    topics: &RestaurantTopics,
    dir: &Path,
) -> Result<Vec<(PathBuf, usize)>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let orders = merged_orders(&topics.orders);
    let mut written = Vec::new();
    for (name, columns) in TABLES {
        let rows: &[Value] = match name {
            "orders" => &orders,
            "order_items" => &topics.order_items,
            "ratings" => &topics.ratings,
            "restaurants" => &topics.restaurants,
            _ => &topics.items,
        };
        let path = dir.join(format!("{name}.parquet"));
        write_parquet(&path, columns, rows)?;
        written.push((path, rows.len()));
    }
    Ok(written)
}

fn write_parquet(path: &Path, columns: &[(&str, Kind)], rows: &[Value]) -> Result<(), String> {
    use arrow::array::{
        ArrayRef, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, kind)| {
                let ty = match kind {
                    Kind::Text => DataType::Utf8,
                    Kind::Int => DataType::Int64,
                    Kind::Money => DataType::Decimal128(12, 2),
                    Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, None),
                };
                Field::new(*name, ty, true)
            })
            .collect::<Vec<_>>(),
    ));
    let mut writer = super::zstd_parquet_writer(path, &schema)?;
    for chunk in rows.chunks(1 << 20) {
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|(name, kind)| -> ArrayRef {
                let values = chunk.iter().map(|r| &r[*name]);
                match kind {
                    Kind::Text => Arc::new(values.map(Value::as_str).collect::<StringArray>()),
                    Kind::Int => Arc::new(values.map(Value::as_i64).collect::<Int64Array>()),
                    Kind::Money => Arc::new(
                        values
                            .map(|v| v.as_f64().map(|x| (x * 100.0).round() as i128))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(12, 2)
                            .unwrap_or_else(|_| Decimal128Array::from(vec![None; chunk.len()])),
                    ),
                    Kind::Time => Arc::new(
                        values
                            .map(|v| {
                                v.as_str()
                                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                    .map(|t| t.timestamp_micros())
                            })
                            .collect::<TimestampMicrosecondArray>(),
                    ),
                }
            })
            .collect();
        let batch = arrow::record_batch::RecordBatch::try_new(Arc::clone(&schema), arrays)
            .map_err(|e| e.to_string())?;
        writer.write(&batch).map_err(|e| e.to_string())?;
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}

/// A menu item's price, fixed by restaurant and item: 4.50 to 24.50.
fn item_price(restaurant: u64, item: u64) -> f64 {
    let cents = 450 + (restaurant * 7_919 + item * 104_729) % 2_001;
    cents as f64 / 100.0
}

/// A time in the `day` microseconds from `start` with lunch (12:30 UTC) and
/// dinner (19:30 UTC) peaks over a low base.
pub(crate) fn meal_weighted_time(rng: &mut SplitMix64, start: i64, day: i64) -> i64 {
    loop {
        let at = start + (rng.unit() * day as f64) as i64;
        if rng.unit() * 1.5 < meal_weight(at) {
            return at;
        }
    }
}

/// How busy restaurants are at `at` (UTC), 0.1 at night to about 1.4 at
/// dinner: the shape of [`meal_weighted_time`].
pub(crate) fn meal_weight(at: i64) -> f64 {
    let t = at.rem_euclid(DAY) as f64 / DAY as f64;
    let peak = |hours: f64| (-((t - hours / 24.0) * 24.0).powi(2) / 2.0).exp();
    0.1 + peak(12.5) + 1.3 * peak(19.5)
}

#[cfg(test)]
mod tests {
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
        for m in by_time.iter().filter(|m| m.get("status").is_some()) {
            last.insert(m["order_id"].as_str().unwrap_or("").into(), status(m));
        }
        assert_eq!(last.len(), 3000, "every order has its NEW event");
        let count = |s: &str| last.values().filter(|v| v.as_str() == s).count();
        assert!(count("DELIVERED") > 2000, "{}", count("DELIVERED"));
        assert!(count("CANCELLED") > 50);
        // Some are under way at "now": couriers waiting, food in the kitchen.
        assert!(count("READY_FOR_PICKUP") + count("IN_KITCHEN") + count("PICKED_UP") > 0);
        // Partial events: READY_FOR_PICKUP carries ready_at but no subtotal.
        let ready = topics
            .orders
            .iter()
            .find(|m| status(m) == "READY_FOR_PICKUP")
            .unwrap();
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
        // Merged as the partial upsert merges: one row per order, its newest
        // status, fields from every message that was not late.
        let merged = merged_orders(&topics.orders);
        assert_eq!(merged.len(), 3000);
        let delivered = merged.iter().find(|r| r["status"] == "DELIVERED").unwrap();
        for field in [
            "created_at",
            "confirmed_at",
            "ready_at",
            "delivered_at",
            "courier_id",
        ] {
            assert!(delivered.get(field).is_some(), "{field}: {delivered}");
        }
        let statuses: std::collections::HashMap<String, String> = merged
            .iter()
            .map(|r| (r["order_id"].as_str().unwrap().to_string(), status(r)))
            .collect();
        let agree = last.iter().filter(|(id, s)| statuses[*id] == **s).count();
        // Only a late last message can leave an order a step behind.
        assert!(
            agree > 2900,
            "{agree} of 3000 agree with the newest message"
        );
    }
}
