//! The restaurant dashboard from Kafka, checked against answers this test
//! works out itself from the event list.
//!
//! Orders walk NEW, CONFIRMED, IN_KITCHEN, READY_FOR_PICKUP, PICKED_UP,
//! DELIVERED (some stop on the way, some are CANCELLED); `confirmed_at` is only
//! on the CONFIRMED event, `ready_at` only on READY_FOR_PICKUP, `subtotal` only
//! on NEW. The topic is partitioned by order id; within a partition some
//! events arrive after a later event of their order, and some twice. The
//! table is a partial upsert on `order_id` compared by `event_time`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::{wait_for_count, Broker};
use crate::{connect, start_in};

const DAY: i64 = 86_400_000_000;
const SECOND: i64 = 1_000_000;

/// One status change of one order.
#[derive(Clone, Debug)]
struct Event {
    order: usize,
    restaurant: i64,
    status: &'static str,
    time: i64,
    subtotal: Option<f64>,
    confirmed_at: Option<i64>,
    ready_at: Option<i64>,
}

impl Event {
    fn json(&self) -> String {
        let ts = |micros: i64| {
            chrono::DateTime::from_timestamp_micros(micros)
                .expect("a valid time")
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string()
        };
        let mut fields = vec![
            format!(r#""order_id": "o-{}""#, self.order),
            format!(r#""restaurant_id": {}"#, self.restaurant),
            format!(r#""status": "{}""#, self.status),
            format!(r#""event_time": "{}""#, ts(self.time)),
        ];
        if let Some(s) = self.subtotal {
            fields.push(format!(r#""subtotal": {s}"#));
        }
        if let Some(t) = self.confirmed_at {
            fields.push(format!(r#""confirmed_at": "{}""#, ts(t)));
        }
        if let Some(t) = self.ready_at {
            fields.push(format!(r#""ready_at": "{}""#, ts(t)));
        }
        format!("{{{}}}", fields.join(", "))
    }
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every order's events, in event-time order, and the order they are
/// delivered in per partition (some swapped, some twice).
fn workload(now: i64, orders: usize) -> (Vec<Event>, BTreeMap<i32, Vec<Event>>) {
    const WALK: [&str; 6] = [
        "NEW",
        "CONFIRMED",
        "IN_KITCHEN",
        "READY_FOR_PICKUP",
        "PICKED_UP",
        "DELIVERED",
    ];
    let mut rng = Random(0x5eed_1234_abcd_9876);
    let mut all = Vec::new();
    let mut deliveries: BTreeMap<i32, Vec<(i64, Event)>> = BTreeMap::new();
    for order in 0..orders {
        // Most orders in the last 50 minutes, a quarter about three hours ago.
        let start = if order % 4 == 0 {
            now - 3 * 3600 * SECOND - rng.below(600) as i64 * SECOND
        } else {
            now - 50 * 60 * SECOND + rng.below(1200) as i64 * SECOND
        };
        let steps = 1 + rng.below(6) as usize;
        let cancelled = rng.below(10) == 0 && steps <= 2;
        let mut time = start;
        let mut events = Vec::new();
        for (i, status) in WALK.iter().take(steps).enumerate() {
            time += match i {
                0 => 0,
                3 => (300 + rng.below(600)) as i64 * SECOND,
                _ => (20 + rng.below(120)) as i64 * SECOND,
            };
            events.push(Event {
                order,
                restaurant: 1 + (order % 5) as i64,
                status,
                time,
                subtotal: (i == 0).then(|| 5.0 + rng.below(4000) as f64 / 100.0),
                confirmed_at: (*status == "CONFIRMED").then_some(time),
                ready_at: (*status == "READY_FOR_PICKUP").then_some(time),
            });
        }
        if cancelled {
            time += 30 * SECOND;
            events.push(Event {
                order,
                restaurant: 1 + (order % 5) as i64,
                status: "CANCELLED",
                time,
                subtotal: None,
                confirmed_at: None,
                ready_at: None,
            });
        }
        all.extend(events.iter().cloned());
        // Delivery: by event time, except a swapped neighbour pair for one
        // order in five, and a repeat for one event in ten.
        let mut when: Vec<i64> = events.iter().map(|e| e.time).collect();
        if events.len() >= 2 && rng.below(5) == 0 {
            let i = rng.below(events.len() as u64 - 1) as usize;
            when.swap(i, i + 1);
        }
        let partition = (order % 4) as i32;
        for (e, at) in events.into_iter().zip(when) {
            if rng.below(10) == 0 {
                deliveries
                    .entry(partition)
                    .or_default()
                    .push((at + 5 * SECOND, e.clone()));
            }
            deliveries.entry(partition).or_default().push((at, e));
        }
    }
    let delivered = deliveries
        .into_iter()
        .map(|(p, mut list)| {
            list.sort_by_key(|(at, _)| *at);
            (p, list.into_iter().map(|(_, e)| e).collect())
        })
        .collect();
    (all, delivered)
}

/// Each order's row as the upsert rules make it, worked out from the
/// delivered events alone: an event older than the order's newest applied
/// one is dropped; otherwise its non-null fields overwrite.
#[derive(Clone, Debug, Default)]
struct OrderRow {
    status: &'static str,
    time: i64,
    subtotal: Option<f64>,
    confirmed_at: Option<i64>,
    ready_at: Option<i64>,
}

/// Each order's row, and how many events were dropped as late.
fn expected_rows(delivered: &BTreeMap<i32, Vec<Event>>) -> (HashMap<usize, OrderRow>, i64) {
    let mut rows: HashMap<usize, OrderRow> = HashMap::new();
    let mut late = 0;
    for events in delivered.values() {
        for e in events {
            match rows.get_mut(&e.order) {
                Some(row) if e.time < row.time => late += 1,
                Some(row) => {
                    row.status = e.status;
                    row.time = e.time;
                    row.subtotal = e.subtotal.or(row.subtotal);
                    row.confirmed_at = e.confirmed_at.or(row.confirmed_at);
                    row.ready_at = e.ready_at.or(row.ready_at);
                }
                None => {
                    rows.insert(
                        e.order,
                        OrderRow {
                            status: e.status,
                            time: e.time,
                            subtotal: e.subtotal,
                            confirmed_at: e.confirmed_at,
                            ready_at: e.ready_at,
                        },
                    );
                }
            }
        }
    }
    (rows, late)
}

/// The dashboard's four answers, as text.
#[derive(Debug, PartialEq)]
struct Dashboard {
    funnel: Vec<(String, i64)>,
    couriers_waiting: i64,
    avg_prep_seconds: String,
    sales_today: String,
}

fn expected_dashboard(rows: &HashMap<usize, OrderRow>, now: i64) -> Dashboard {
    let mut funnel: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows.values() {
        *funnel.entry(r.status.to_string()).or_default() += 1;
    }
    let preps: Vec<f64> = rows
        .values()
        .filter_map(|r| match (r.confirmed_at, r.ready_at) {
            (Some(c), Some(ready)) if ready >= now - 3600 * SECOND => {
                Some((ready - c) as f64 / SECOND as f64)
            }
            _ => None,
        })
        .collect();
    let today = now - now.rem_euclid(DAY);
    // sum() over no rows is NULL: just after midnight nothing is delivered yet today.
    let delivered: Vec<f64> = rows
        .values()
        .filter(|r| r.status == "DELIVERED" && r.time >= today)
        .filter_map(|r| r.subtotal)
        .collect();
    let sales = (!delivered.is_empty()).then(|| delivered.iter().sum::<f64>());
    Dashboard {
        funnel: funnel.into_iter().collect(),
        couriers_waiting: rows
            .values()
            .filter(|r| r.status == "READY_FOR_PICKUP")
            .count() as i64,
        avg_prep_seconds: format!("{:.3}", preps.iter().sum::<f64>() / preps.len() as f64),
        sales_today: sales.map_or("NULL".into(), |s| format!("{s:.2}")),
    }
}

async fn dashboard(client: &tokio_postgres::Client) -> Dashboard {
    let funnel = client
        .query(
            "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    let one = |sql: &'static str| async move {
        let v: Option<f64> = client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0);
        v.unwrap_or(f64::NAN)
    };
    Dashboard {
        funnel,
        couriers_waiting: client
            .query_one(
                "SELECT count(*) FROM orders WHERE status = 'READY_FOR_PICKUP'",
                &[],
            )
            .await
            .unwrap()
            .get(0),
        avg_prep_seconds: format!(
            "{:.3}",
            one("SELECT avg(extract(epoch FROM ready_at) - extract(epoch FROM confirmed_at))::float8 \
                 FROM orders WHERE ready_at >= now() - interval '1 hour' AND confirmed_at IS NOT NULL")
            .await
        ),
        sales_today: client
            .query_one(
                "SELECT sum(subtotal)::float8 FROM orders \
                 WHERE status = 'DELIVERED' AND event_time >= date_trunc('day', now())",
                &[],
            )
            .await
            .unwrap()
            .get::<_, Option<f64>>(0)
            .map_or("NULL".into(), |s| format!("{s:.2}")),
    }
}

/// Over the protocol, a partial-upsert table fed from Kafka with late and
/// repeated events answers the funnel, couriers waiting, average prep time
/// and sales today as the event list says; after a kill -9 and a restart,
/// the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_funnel_from_kafka_matches_the_event_list() {
    let now = chrono::Utc::now().timestamp_micros();
    let (all, delivered) = workload(now, 400);
    let (rows, late) = expected_rows(&delivered);
    let want = expected_dashboard(&rows, now);
    assert!(
        all.len() > 1000 && want.funnel.len() >= 6 && want.couriers_waiting > 0,
        "a workload worth checking: {want:?}"
    );
    let broker = Broker::new();
    let topic = broker.topic("orders", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_in(dir.path(), &[]);
    let client = connect(server.pg_port).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE orders (order_id TEXT, restaurant_id BIGINT, status TEXT,
                 subtotal DOUBLE PRECISION, confirmed_at TIMESTAMP, ready_at TIMESTAMP,
                 event_time TIMESTAMP, PRIMARY KEY (order_id))
             WITH (time_column = 'event_time', upsert = 'partial', comparison_column = 'event_time',
                   kafka_brokers = '{}', kafka_topic = '{topic}', format = 'json',
                   flush_interval = '200 milliseconds', segment_rows = 300)",
            broker.bootstrap
        ))
        .await
        .unwrap();
    let messages: Vec<(i32, Option<Vec<u8>>)> = delivered
        .iter()
        .flat_map(|(p, events)| events.iter().map(|e| (*p, Some(e.json().into_bytes()))))
        .collect();
    broker.produce(&topic, &messages);
    let keys = rows.len() as i64;
    let consumed = "SELECT count(*) FROM sluice.ingestion WHERE table_name = 'orders' AND lag = 0 \
         AND consumed_offset = high_watermark";
    assert_eq!(
        wait_for_count(server.pg_port, consumed, 4, Duration::from_secs(60)).await,
        4,
        "every partition read to its end"
    );
    assert_eq!(
        wait_for_count(
            server.pg_port,
            "SELECT count(*) FROM orders",
            keys,
            Duration::from_secs(10)
        )
        .await,
        keys
    );
    assert_eq!(dashboard(&client).await, want, "while consuming");
    let report = client
        .query_one(
            "SELECT keys, out_of_order, keys_in_two_partitions FROM sluice.upserts WHERE table_name = 'orders'",
            &[],
        )
        .await
        .unwrap();
    let report: (i64, i64, i64) = (report.get(0), report.get(1), report.get(2));
    assert_eq!(
        report,
        (keys, late, 0),
        "keys, late events dropped, keys in two partitions"
    );
    assert!(late > 0, "the workload has late events");
    let metrics = crate::http_get(server.http_port, "/metrics");
    let line =
        format!(r#"sluice_upsert_rows_total{{outcome="out_of_order",table="orders"}} {late}"#);
    assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    // Some of it sealed (and its superseded rows committed), some not: a kill
    // -9 loses the unsealed rows, which are read again from the topic.
    drop(client);
    server.kill();
    let server = start_in(dir.path(), &[]);
    assert_eq!(
        wait_for_count(server.pg_port, consumed, 4, Duration::from_secs(60)).await,
        4
    );
    let client = connect(server.pg_port).await;
    assert_eq!(
        dashboard(&client).await,
        want,
        "after kill -9 and a restart"
    );
    let sealed: i64 = client
        .query_one(
            "SELECT count(*) FROM sluice.segments WHERE table_name = 'orders' AND state = 'sealed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sealed > 0, "nothing was sealed");
}
