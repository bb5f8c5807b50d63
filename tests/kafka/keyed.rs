//! Full-upsert (with deletes) and dedup tables fed from Kafka: late and
//! repeated messages, a delete, a key brought back, across a restart.

use std::time::Duration;

use super::{wait_for_count, Broker};
use crate::{connect, start_in};

fn message(
    partition: i32,
    id: i64,
    minute: u32,
    status: &str,
    gone: bool,
) -> (i32, Option<Vec<u8>>) {
    let json = format!(
        r#"{{"id": {id}, "ts": "2026-01-01T10:{minute:02}:00Z", "status": "{status}", "gone": {gone}}}"#
    );
    (partition, Some(json.into_bytes()))
}

async fn rows(port: u16, sql: &str) -> Vec<String> {
    let client = connect(port).await;
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{}|{}", r.get::<_, i64>(0), r.get::<_, String>(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_upsert_deletes_and_dedup_from_kafka() {
    let broker = Broker::new();
    let upserts = broker.topic("upserts", 2).await;
    let events = broker.topic("dedup", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_in(dir.path(), &[]);
    let client = connect(server.pg_port).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE latest (ts TIMESTAMP, id BIGINT, status TEXT, gone BOOLEAN, PRIMARY KEY (id))
                 WITH (time_column = 'ts', retention = 'none', upsert = 'full', delete_column = 'gone',
                       kafka_brokers = '{b}', kafka_topic = '{upserts}', flush_interval = '100 milliseconds');
             CREATE TABLE firsts (ts TIMESTAMP, id BIGINT, status TEXT, gone BOOLEAN, PRIMARY KEY (id))
                 WITH (time_column = 'ts', retention = 'none', dedup = true,
                       kafka_brokers = '{b}', kafka_topic = '{events}', flush_interval = '100 milliseconds');",
            b = broker.bootstrap
        ))
        .await
        .unwrap();
    // Keys 1 and 3 on partition 1, 2 on partition 0.
    broker.produce(
        &upserts,
        &[
            message(1, 1, 0, "NEW", false),
            message(0, 2, 0, "NEW", false),
            message(1, 1, 5, "CONFIRMED", false),
            message(1, 1, 3, "LATE", false), // older than CONFIRMED: dropped
            message(0, 2, 4, "", true),      // deletes 2
            message(0, 2, 2, "LATE", false), // older than the delete: stays deleted
            message(1, 3, 1, "NEW", false),
            message(1, 3, 1, "NEW", false),   // repeated
            message(1, 3, 9, "", true),       // deletes 3 ...
            message(1, 3, 12, "BACK", false), // ... which comes back, newer
        ],
    );
    broker.produce(
        &events,
        &[
            message(0, 7, 0, "FIRST", false),
            message(1, 8, 1, "FIRST", false),
            message(0, 7, 5, "AGAIN", false),
            message(1, 8, 0, "EARLIER", false),
            message(0, 9, 2, "FIRST", false),
        ],
    );
    let want_latest = ["1|CONFIRMED", "3|BACK"];
    let want_firsts = ["7|FIRST", "8|FIRST", "9|FIRST"];
    let consumed =
        "SELECT count(*) FROM sluice.ingestion WHERE lag = 0 AND consumed_offset = high_watermark";
    assert_eq!(
        wait_for_count(server.pg_port, consumed, 4, Duration::from_secs(60)).await,
        4
    );
    let latest = "SELECT id, status FROM latest ORDER BY id";
    let firsts = "SELECT id, status FROM firsts ORDER BY id";
    assert_eq!(rows(server.pg_port, latest).await, want_latest);
    assert_eq!(rows(server.pg_port, firsts).await, want_firsts);
    // Wait for the seal that commits it all, then a crash and a restart.
    let committed = "SELECT count(*) FROM sluice.ingestion WHERE committed_offset = high_watermark";
    assert_eq!(
        wait_for_count(server.pg_port, committed, 4, Duration::from_secs(30)).await,
        4
    );
    drop(client);
    server.kill();
    let server = start_in(dir.path(), &[]);
    assert_eq!(
        rows(server.pg_port, latest).await,
        want_latest,
        "after a restart"
    );
    assert_eq!(
        rows(server.pg_port, firsts).await,
        want_firsts,
        "after a restart"
    );
}
