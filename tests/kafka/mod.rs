//! Kafka ingestion end to end: the real `sluice serve` binary reading a real
//! Kafka protocol broker. By default the broker is librdkafka's mock cluster,
//! started in this test process (it listens on loopback, so the server process
//! reaches it). With `SLUICE_KAFKA_BROKERS=host:port` the same tests run against
//! that broker instead (`.ci/run` starts tansu for this).

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use tokio_postgres::Client;

use crate::{connect, http_get, start_in, Server};

mod keyed;
mod restaurant;

/// A broker for one test: the mock cluster, or the external one.
struct Broker {
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    bootstrap: String,
}

impl Broker {
    fn new() -> Broker {
        match std::env::var("SLUICE_KAFKA_BROKERS") {
            Ok(bootstrap) => Broker {
                mock: None,
                bootstrap,
            },
            Err(_) => {
                let mock = MockCluster::new(1).expect("mock cluster");
                let bootstrap = mock.bootstrap_servers();
                Broker {
                    mock: Some(mock),
                    bootstrap,
                }
            }
        }
    }

    /// A topic of `partitions` partitions with a name no other test uses.
    async fn topic(&self, prefix: &str, partitions: i32) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}-{}-{nanos}", std::process::id());
        match &self.mock {
            Some(mock) => mock
                .create_topic(&name, partitions, 1)
                .expect("create topic"),
            None => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &self.bootstrap)
                    .create()
                    .expect("admin client");
                let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
                let results = admin
                    .create_topics([&topic], &AdminOptions::new())
                    .await
                    .expect("create topic");
                for r in results {
                    r.expect("topic created");
                }
            }
        }
        name
    }

    fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "2")
            .create()
            .expect("producer")
    }

    /// Sends each payload to its partition and waits until all are delivered.
    fn produce(&self, topic: &str, messages: &[(i32, Option<Vec<u8>>)]) {
        let producer = self.producer();
        for (partition, payload) in messages {
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(topic).partition(*partition);
            if let Some(p) = payload {
                record = record.payload(p);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("delivered");
    }
}

fn event(id: u64, partition: i32) -> (i32, Option<Vec<u8>>) {
    let json = format!(
        r#"{{"id": {id}, "event_time": "2024-05-01T12:{:02}:{:02}Z", "item": "item-{}", "amount": {}.5}}"#,
        (id / 60) % 60,
        id % 60,
        id % 7,
        id % 100
    );
    (partition, Some(json.into_bytes()))
}

async fn create_table(client: &Client, broker: &Broker, topic: &str, extra: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE events (id BIGINT, event_time TIMESTAMP, item TEXT, amount DOUBLE PRECISION) \
             WITH (time_column = 'event_time', retention = 'none', kafka_brokers = '{}', kafka_topic = '{topic}', \
             format = 'json'{extra})",
            broker.bootstrap
        ))
        .await
        .expect("create the Kafka table");
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.map_or(-1, |r| r.get(0))
}

/// Waits until `sql` (a count) answers `want`; returns the last answer.
async fn wait_for_count(port: u16, sql: &str, want: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    let mut last = -1;
    while Instant::now() < deadline {
        if let Ok((client, conn)) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=t dbname=sluice"),
            tokio_postgres::NoTls,
        )
        .await
        {
            tokio::spawn(conn);
            last = count(&client, sql).await;
            if last == want {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_rows_are_queryable_at_once_with_status_and_metrics() {
    let broker = Broker::new();
    let topic = broker.topic("ingest", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &[]);
    let client = connect(server.pg_port).await;
    create_table(&client, &broker, &topic, ", flush_interval = '1 second'").await;
    let messages: Vec<_> = (0..2000).map(|i| event(i, (i % 4) as i32)).collect();
    broker.produce(&topic, &messages);
    let n = wait_for_count(
        server.pg_port,
        "SELECT count(*) FROM events",
        2000,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(n, 2000);
    let sum: f64 = client
        .query_one("SELECT sum(amount) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    let want: f64 = (0..2000u64).map(|i| (i % 100) as f64 + 0.5).sum();
    assert_eq!(sum, want);

    // One status row per partition, each read to its end and, after a seal,
    // committed there.
    let committed = wait_for_count(
        server.pg_port,
        "SELECT count(*) FROM sluice.ingestion WHERE table_name = 'events' AND committed_offset = 500 \
         AND consumed_offset = 500",
        4,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(committed, 4);
    let lagging = wait_for_count(
        server.pg_port,
        "SELECT count(*) FROM sluice.ingestion WHERE high_watermark = 500 AND lag = 0 AND state = 'consuming'",
        4,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(lagging, 4);

    let metrics = http_get(server.http_port, "/metrics");
    for p in 0..4 {
        for name in [
            "sluice_consumer_lag_messages",
            "sluice_freshness_seconds",
            "sluice_ingest_rows_total",
        ] {
            let needle = format!("{name}{{partition=\"{p}\",table=\"events\"}}");
            assert!(
                metrics.contains(&needle),
                "no {needle} in /metrics:\n{metrics}"
            );
        }
    }
    assert!(
        metrics.contains("sluice_ingest_rows_total{partition=\"0\",table=\"events\"} 500"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_produce_to_visible_seconds_count{table=\"events\"} 2000"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_query_seconds_count"), "{metrics}");

    // DROP stops the consumer: what is produced afterwards goes nowhere, and a
    // new table of the same name starts from the beginning.
    client.batch_execute("DROP TABLE events").await.unwrap();
    create_table(&client, &broker, &topic, "").await;
    let n = wait_for_count(
        server.pg_port,
        "SELECT count(*) FROM events",
        2000,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(n, 2000);
}

/// Every kind of bad message lands in `sluice.dead_letters` with its partition,
/// offset, error and payload, the good ones around it are ingested, and after a
/// restart both are still there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_become_dead_letters_exactly_once() {
    let broker = Broker::new();
    let topic = broker.topic("dead", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let bad: Vec<(&str, Option<Vec<u8>>)> = vec![
        (
            "not valid JSON",
            Some(br#"{"id": 1, "event_time": "#.to_vec()),
        ),
        (
            "not valid UTF-8",
            Some(b"{\"id\": 2, \"item\": \"\xff\", \"event_time\": 1}".to_vec()),
        ),
        (
            "not valid JSON",
            Some(br#"{"id": 3, "item": "\ud800", "event_time": 1}"#.to_vec()),
        ),
        (
            "column \"id\"",
            Some(br#"{"id": "three", "event_time": 1}"#.to_vec()),
        ),
        (
            "no value for the time column",
            Some(br#"{"id": 5}"#.to_vec()),
        ),
        (
            "larger than max_message_bytes",
            Some(
                format!(
                    r#"{{"id": 6, "event_time": 1, "item": "{}"}}"#,
                    "x".repeat(300)
                )
                .into_bytes(),
            ),
        ),
        ("has no value", None),
    ];
    // Partition 0: good, bad, good, bad, ... ; partition 1: good ones only.
    let mut messages = Vec::new();
    let mut expected = Vec::new();
    let mut good = 0;
    for (i, (why, payload)) in bad.iter().enumerate() {
        messages.push(event(100 + i as u64, 0));
        good += 1;
        expected.push((why.to_string(), messages.len() as i64, payload.clone()));
        messages.push((0, payload.clone()));
    }
    messages.push(event(999, 0));
    good += 1;
    for i in 0..10 {
        messages.push(event(1000 + i, 1));
        good += 1;
    }
    broker.produce(&topic, &messages);

    for round in 0..2 {
        let server: Server = start_in(dir.path(), &[]);
        let client = connect(server.pg_port).await;
        if round == 0 {
            create_table(
                &client,
                &broker,
                &topic,
                ", max_message_bytes = '200', flush_interval = '200 milliseconds'",
            )
            .await;
        }
        let n = wait_for_count(
            server.pg_port,
            "SELECT count(*) FROM events",
            good,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(n, good, "round {round}");
        let dead = wait_for_count(
            server.pg_port,
            "SELECT count(*) FROM sluice.dead_letters",
            bad.len() as i64,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(dead, bad.len() as i64, "round {round}");
        let rows = client
            .query(
                "SELECT table_name, topic, partition, \"offset\", error, payload FROM sluice.dead_letters ORDER BY \"offset\"",
                &[],
            )
            .await
            .unwrap();
        for (row, (why, offset, payload)) in rows.iter().zip(&expected) {
            assert_eq!(row.get::<_, String>(0), "events");
            assert_eq!(row.get::<_, String>(1), topic);
            assert_eq!(row.get::<_, i32>(2), 0);
            assert_eq!(row.get::<_, i64>(3), *offset);
            let error: String = row.get(4);
            assert!(
                error.contains(why),
                "offset {offset}: wanted {why:?}, got {error:?}"
            );
            let stored: Vec<u8> = row.get(5);
            assert_eq!(
                stored,
                payload.clone().unwrap_or_default(),
                "offset {offset}"
            );
        }
        // Wait for the commit before the restart, so round 1 reads nothing again.
        let committed = wait_for_count(
            server.pg_port,
            &format!("SELECT count(*) FROM sluice.ingestion WHERE committed_offset = consumed_offset AND partition = 0 AND committed_offset = {}", messages.iter().filter(|m| m.0 == 0).count()),
            1,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(committed, 1, "round {round}");
        drop(server);
    }
}

/// SIGKILLs the server at random moments while it ingests and seals, at least
/// 20 times; afterwards every message produced is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_lose_nothing_and_count_nothing_twice() {
    let broker = Broker::new();
    let topic = broker.topic("crash", 4).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let server = start_in(dir.path(), &[]);
        let client = connect(server.pg_port).await;
        create_table(
            &client,
            &broker,
            &topic,
            ", segment_rows = 700, flush_interval = '100 milliseconds'",
        )
        .await;
    }
    const TOTAL: u64 = 24_000;
    let producing = {
        let bootstrap = broker.bootstrap.clone();
        let topic = topic.clone();
        std::thread::spawn(move || {
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "2")
                .create()
                .expect("producer");
            for chunk in 0..48 {
                for i in chunk * 500..(chunk + 1) * 500 {
                    let (p, payload) = event(i, (i % 4) as i32);
                    let payload = payload.unwrap_or_default();
                    let mut record: BaseRecord<'_, [u8], [u8]> =
                        BaseRecord::to(&topic).partition(p).payload(&payload);
                    while let Err((_, r)) = producer.send(record) {
                        record = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
                producer.flush(Duration::from_secs(30)).expect("delivered");
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    for _ in 0..22 {
        let mut server = start_in(dir.path(), &[]);
        std::thread::sleep(Duration::from_millis(100 + random(500)));
        server.kill();
    }
    producing.join().expect("producer");
    let server = start_in(dir.path(), &[]);
    let n = wait_for_count(
        server.pg_port,
        "SELECT count(*) FROM events",
        TOTAL as i64,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(n, TOTAL as i64, "rows after 22 SIGKILLs");
    let client = connect(server.pg_port).await;
    let distinct = count(&client, "SELECT count(DISTINCT id) FROM events").await;
    assert_eq!(distinct, TOTAL as i64, "distinct ids");
    let segments = count(
        &client,
        "SELECT count(*) FROM sluice.segments WHERE state = 'sealed'",
    )
    .await;
    assert!(segments > 0, "nothing was ever sealed");
    // Every file the crashes left checks out: manifests, segments (every section),
    // dead letters and write-ahead files.
    drop(client);
    let mut server = server;
    server.kill();
    assert_data_dir_checks_out(dir.path());
}

/// `sluice check` finds nothing damaged in `dir`.
fn assert_data_dir_checks_out(dir: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(dir)
        .output()
        .expect("run sluice check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" 0 damaged"),
        "{text}"
    );
}

/// With the broker down, queries keep answering from what is stored and the
/// partition reports it; when it is back, ingestion resumes with nothing lost or
/// duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_pauses_ingestion_and_loses_nothing() {
    let broker = Broker::new();
    let Some(mock) = &broker.mock else {
        println!("broker outage test needs the mock cluster; skipped for SLUICE_KAFKA_BROKERS");
        return;
    };
    let topic = broker.topic("outage", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &[]);
    let client = connect(server.pg_port).await;
    create_table(
        &client,
        &broker,
        &topic,
        ", flush_interval = '200 milliseconds'",
    )
    .await;
    broker.produce(
        &topic,
        &(0..200)
            .map(|i| event(i, (i % 2) as i32))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        wait_for_count(
            server.pg_port,
            "SELECT count(*) FROM events",
            200,
            Duration::from_secs(30)
        )
        .await,
        200
    );

    mock.broker_down(1).expect("broker down");
    let retrying = wait_for_count(
        server.pg_port,
        "SELECT count(*) FROM sluice.ingestion WHERE last_error IS NOT NULL",
        2,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(retrying, 2, "the outage shows in sluice.ingestion");
    assert_eq!(
        count(&client, "SELECT count(*) FROM events").await,
        200,
        "queries answer meanwhile"
    );
    mock.broker_up(1).expect("broker up");
    broker.produce(
        &topic,
        &(200..400)
            .map(|i| event(i, (i % 2) as i32))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        wait_for_count(
            server.pg_port,
            "SELECT count(*) FROM events",
            400,
            Duration::from_secs(60)
        )
        .await,
        400
    );
    assert_eq!(
        count(&client, "SELECT count(DISTINCT id) FROM events").await,
        400
    );
}

/// Consuming pauses while unsealed rows exceed `max_mutable_bytes` (here no
/// seal is due for an hour, so it stays paused) instead of growing without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_pauses_while_unsealed_rows_exceed_max_mutable_bytes() {
    let broker = Broker::new();
    let topic = broker.topic("pressure", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), &[]);
    let client = connect(server.pg_port).await;
    create_table(
        &client,
        &broker,
        &topic,
        ", max_mutable_bytes = '2kB', flush_interval = '1 hour'",
    )
    .await;
    broker.produce(&topic, &(0..5000).map(|i| event(i, 0)).collect::<Vec<_>>());
    let paused = wait_for_count(
        server.pg_port,
        "SELECT count(*) FROM sluice.ingestion WHERE state = 'paused'",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(paused, 1, "the partition pauses");
    let held = count(&client, "SELECT count(*) FROM events").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM events").await,
        held,
        "nothing more is read while paused"
    );
    assert!(held > 0 && held < 5000, "{held} rows held");
}
