//! `sluice demo`: the two dashboards of the design brief, live, in one
//! command. A Kafka-protocol broker runs in process (librdkafka's mock
//! cluster); the restaurant and streaming tables read from it with their
//! upsert and dedup settings; a day of history is produced, then new events
//! at a steady rate with "now" moving in real time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

use crate::workload::{self, LiveOptions, LiveWorkload, Topic};
use crate::Database;

/// The tables' definitions; `sluice demo` points their `kafka_brokers` at
/// its own broker.
pub const SCHEMA: &str = include_str!("../examples/dashboards/schema.sql");

/// How big and how fast the demo is.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Messages per second once the history is produced, all topics
    /// together (half restaurant, half plays); 0 produces the history only.
    pub rate: u64,
    /// Restaurants (Zipf: restaurant 1 is the busiest).
    pub restaurants: u64,
    /// Orders in the day of history.
    pub history_orders: u64,
    /// Plays in the day of history.
    pub history_plays: u64,
    /// The seed.
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            rate: 2_000,
            restaurants: 1_000,
            history_orders: 20_000,
            history_plays: 100_000,
            seed: 1,
        }
    }
}

/// The in-process broker and its topics.
pub struct DemoBroker {
    // Kept alive: the cluster stops when dropped.
    _cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

impl DemoBroker {
    /// Starts the broker with the demo's topics: `orders` and `plays` in four
    /// partitions (keyed by order and by event), the others in two.
    ///
    /// # Errors
    /// librdkafka could not start the cluster or create a topic.
    pub fn start() -> Result<DemoBroker, String> {
        let cluster =
            MockCluster::new(1).map_err(|e| format!("cannot start the demo's broker: {e}"))?;
        for topic in Topic::ALL {
            let partitions = match topic {
                Topic::Orders | Topic::Plays => 4,
                _ => 2,
            };
            cluster
                .create_topic(topic.name(), partitions, 1)
                .map_err(|e| format!("cannot create topic {}: {e}", topic.name()))?;
        }
        let bootstrap = cluster.bootstrap_servers();
        Ok(DemoBroker {
            _cluster: cluster,
            bootstrap,
        })
    }

    /// `host:port` of the broker.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

/// Creates the demo's tables reading from `bootstrap` and loads the
/// dimension tables (restaurants and their menus).
///
/// # Errors
/// A statement's error (the data directory already holds the tables).
pub fn create_tables(db: &Database, bootstrap: &str, restaurants: u64) -> Result<(), String> {
    db.execute(&SCHEMA.replace("localhost:9092", bootstrap))
        .map_err(|e| format!("cannot create the demo's tables: {e}"))?;
    let (rows, items) = workload::restaurant::dimensions(restaurants);
    insert_json(
        db,
        "restaurants",
        &["restaurant_id", "name", "cuisine", "city"],
        &rows,
    )?;
    insert_json(
        db,
        "items",
        &["item_id", "restaurant_id", "name", "price"],
        &items,
    )
}

/// INSERTs `rows` (JSON objects) into `table`, 1,000 a statement.
fn insert_json(
    db: &Database,
    table: &str,
    columns: &[&str],
    rows: &[serde_json::Value],
) -> Result<(), String> {
    for chunk in rows.chunks(1_000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|row| {
                let cells: Vec<String> = columns.iter().map(|c| literal(&row[*c])).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        db.execute(&format!(
            "INSERT INTO {table} ({}) VALUES {}",
            columns.join(", "),
            values.join(", ")
        ))
        .map_err(|e| format!("cannot load {table}: {e}"))?;
    }
    Ok(())
}

/// A JSON scalar as a SQL literal.
fn literal(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    }
}

/// Produces a day of history ending at `start_micros`, then, until `stop`,
/// the live stream at `options.rate` with the real clock (orders under way
/// at the start among it). With a rate of 0, the history only. Runs on the
/// calling thread.
///
/// # Errors
/// The producer cannot be created or the broker refuses messages.
pub fn produce(
    bootstrap: &str,
    options: &DemoOptions,
    start_micros: i64,
    stop: &AtomicBool,
) -> Result<(), String> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| format!("cannot create the demo's producer: {e}"))?;
    let send = |topic: Topic, key: &str, payload: &str| -> Result<(), String> {
        let mut record = BaseRecord::to(topic.name()).key(key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("cannot produce to {}: {e}", topic.name())),
            }
        }
    };
    let plays = workload::streaming_plays(&workload::StreamingOptions {
        events: options.history_plays,
        seed: options.seed,
        now_micros: start_micros,
    });
    for p in &plays {
        send(Topic::Plays, &p.event_id, &p.to_json().to_string())?;
    }
    let mut live = LiveWorkload::new(&LiveOptions {
        seed: options.seed,
        restaurants: options.restaurants,
        events_per_second: options.rate,
        history_orders: options.history_orders,
        first_play: options.history_plays,
        start_micros,
    });
    for m in live.advance(start_micros) {
        send(m.topic, &m.key, &m.payload)?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("the demo's history was not delivered: {e}"))?;
    if options.rate == 0 {
        return Ok(());
    }
    while !stop.load(Ordering::Relaxed) {
        for m in live.advance(chrono::Utc::now().timestamp_micros()) {
            send(m.topic, &m.key, &m.payload)?;
        }
        producer.poll(Duration::from_millis(100));
    }
    let _ = producer.flush(Duration::from_secs(5));
    Ok(())
}

/// The demo's dashboard statements to paste into psql: the restaurant
/// funnel and top items for restaurant 1, and DAU.
pub fn statements_to_try() -> Vec<String> {
    let one_line = |sql: &str| {
        sql.lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
            .replace("$1", "1")
            + ";"
    };
    [
        include_str!("../examples/dashboards/restaurant/funnel.sql"),
        include_str!("../examples/dashboards/restaurant/top_items.sql"),
        include_str!("../examples/dashboards/streaming/dau.sql"),
    ]
    .into_iter()
    .map(one_line)
    .collect()
}
