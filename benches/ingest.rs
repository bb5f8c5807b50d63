//! Kafka ingestion, measured: throughput next to a bare rdkafka consumer on the
//! same broker in the same run, produce-to-visible latency at a fixed rate, and
//! memory held per million buffered rows.
//!
//! ```sh
//! cargo bench --bench ingest -- --brokers 127.0.0.1:19092 --messages 1000000
//! ```
//!
//! Without `--brokers` it uses librdkafka's mock cluster in this process (fine
//! for a smoke run, not for figures). Sluice runs embedded here (the
//! `Database` API), so no query round trip is measured.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A ~200-byte order event, its fields varied so nothing compresses to nothing.
fn event(i: u64) -> String {
    format!(
        r#"{{"order_id":"o-{i:09}","restaurant_id":{},"status":"{}","item":"item-{}","amount":{}.{:02},"courier_id":"c-{}","event_time":"2026-11-29T{:02}:{:02}:{:02}.{:03}Z"}}"#,
        (i * 7919) % 100_000,
        ["NEW", "CONFIRMED", "IN_KITCHEN", "READY_FOR_PICKUP"][(i % 4) as usize],
        (i * 31) % 500,
        (i * 13) % 90,
        i % 100,
        (i * 17) % 20_000,
        (i / 3_600_000) % 24,
        (i / 60_000) % 60,
        (i / 1000) % 60,
        i % 1000
    )
}

fn create_topic(brokers: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for r in runtime
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create topic")
    {
        r.expect("topic created");
    }
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, topic: &str, partition: i32, payload: &str) {
    let mut record: BaseRecord<'_, str, str> =
        BaseRecord::to(topic).partition(partition).payload(payload);
    while let Err((_, r)) = p.send(record) {
        record = r;
        p.poll(Duration::from_millis(1));
    }
}

fn produce_all(brokers: &str, topic: &str, n: u64) -> u64 {
    let p = producer(brokers);
    let mut bytes = 0;
    for i in 0..n {
        let e = event(i);
        bytes += e.len() as u64;
        send(&p, topic, (i % PARTITIONS as u64) as i32, &e);
    }
    p.flush(Duration::from_secs(120)).expect("delivered");
    bytes
}

/// Messages/s of a bare consumer reading the whole topic (poll only).
fn raw_rate(brokers: &str, topic: &str, n: u64) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false")
        // The same fetch wait as Sluice's consumer, so both fetch alike.
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&list).expect("assign");
    let start = Instant::now();
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < n {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen += 1;
            bytes += m.payload_len();
        }
    }
    std::hint::black_box(bytes);
    n as f64 / start.elapsed().as_secs_f64()
}

/// CPU seconds used so far by this process's threads whose name starts with
/// `prefix` (from /proc, in clock ticks of 1/100 s).
fn thread_cpu_seconds(prefix: &str) -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let rest = stat.rsplit(')').next().unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / 100.0
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn create_table(db: &sluice::Database, name: &str, brokers: &str, topic: &str) {
    db.execute(&format!(
        "CREATE TABLE {name} (order_id TEXT, restaurant_id BIGINT, status TEXT, item TEXT, \
         amount DOUBLE PRECISION, courier_id TEXT, event_time TIMESTAMP) \
         WITH (time_column = 'event_time', retention = 'none', kafka_brokers = '{brokers}', kafka_topic = '{topic}', \
         format = 'json', flush_interval = '1 hour', segment_rows = 100000000, \
         segment_bytes = '16GB', max_mutable_bytes = '8GB')"
    ))
    .expect("create table");
}

fn main() {
    let n: u64 = arg("--messages")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mock;
    let brokers = match arg("--brokers") {
        Some(b) => b,
        None => {
            mock = MockCluster::new(1).expect("mock cluster");
            eprintln!("no --brokers: using librdkafka's mock cluster (smoke run only)");
            mock.bootstrap_servers()
        }
    };
    let tag = std::process::id();
    let topic = format!("bench-{tag}");
    create_topic(&brokers, &topic);
    let started = Instant::now();
    let bytes = produce_all(&brokers, &topic, n);
    println!(
        "produced {n} messages ({:.0} bytes each) in {:.1} s",
        bytes as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );

    let raw = raw_rate(&brokers, &topic, n);
    println!(
        "bare rdkafka consumer: {raw:.0} messages/s ({:.1} MB/s)",
        raw * bytes as f64 / n as f64 / 1e6
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let db = sluice::Database::open(dir.path()).expect("open");
    let rss_before = resident_bytes();
    let start = Instant::now();
    create_table(&db, "orders", &brokers, &topic);
    let table = db.engine().catalog().table("orders").expect("table");
    while (table.rows() as u64) < n {
        std::thread::sleep(Duration::from_millis(2));
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "  consumer thread CPU: {:.2} s ({:.2} us per message), librdkafka threads {:.2} s, wall {:.2} s",
        thread_cpu_seconds("sluice-ingest"),
        thread_cpu_seconds("sluice-ingest") * 1e6 / n as f64,
        thread_cpu_seconds("rdk:"),
        start.elapsed().as_secs_f64()
    );
    println!(
        "sluice ingest: {rate:.0} messages/s ({:.1} MB/s), {:.0}% of the bare consumer",
        rate * bytes as f64 / n as f64 / 1e6,
        100.0 * rate / raw
    );
    let rss_after = resident_bytes();
    println!(
        "memory: {:.0} MB resident per million buffered rows ({} MB over {n} rows; storage's own estimate {:.0} MB per million)",
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
        (rss_after.saturating_sub(rss_before)) >> 20,
        table.buffered_source_bytes() as f64 / n as f64
    );
    drop(table);
    db.execute("DROP TABLE orders").expect("drop");

    latency(&db, &brokers, tag);
}

/// Produce-to-visible latency at 50,000 events/s for 10 s: each message's send
/// time against the moment its partition's read position passed it.
fn latency(db: &sluice::Database, brokers: &str, tag: u32) {
    const RATE: u64 = 50_000;
    const SECONDS: u64 = 10;
    let topic = format!("latency-{tag}");
    create_topic(brokers, &topic);
    create_table(db, "live", brokers, &topic);
    let table = db.engine().catalog().table("live").expect("table");
    // Let the consumer assign itself the partitions before timing starts.
    std::thread::sleep(Duration::from_secs(2));
    let sent: Arc<Mutex<BTreeMap<i32, Vec<Instant>>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let producing = {
        let (sent, done, brokers, topic) = (
            Arc::clone(&sent),
            Arc::clone(&done),
            brokers.to_string(),
            topic.clone(),
        );
        std::thread::spawn(move || {
            let p = producer(&brokers);
            let start = Instant::now();
            for i in 0..RATE * SECONDS {
                let due = start + Duration::from_secs_f64(i as f64 / RATE as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let partition = (i % PARTITIONS as u64) as i32;
                let e = event(i);
                sent.lock()
                    .unwrap()
                    .entry(partition)
                    .or_default()
                    .push(Instant::now());
                send(&p, &topic, partition, &e);
                p.poll(Duration::ZERO);
            }
            p.flush(Duration::from_secs(30)).expect("delivered");
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut seen: BTreeMap<i32, i64> = BTreeMap::new();
    let mut latencies = Vec::with_capacity((RATE * SECONDS) as usize);
    while latencies.len() < (RATE * SECONDS) as usize {
        let positions = table.consumed_offsets();
        let now = Instant::now();
        {
            let sent = sent.lock().unwrap();
            for (p, position) in positions {
                let from = seen.entry(p).or_insert(0);
                if let Some(times) = sent.get(&p) {
                    for o in *from..position.min(times.len() as i64) {
                        latencies.push(now.duration_since(times[o as usize]));
                    }
                    *from = (*from).max(position.min(times.len() as i64));
                }
            }
        }
        if done.load(Ordering::Relaxed) && latencies.len() >= (RATE * SECONDS) as usize {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    producing.join().expect("producer");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "produce-to-visible at {RATE} events/s for {SECONDS} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} messages)",
        at(0.5),
        at(0.99),
        at(1.0),
        latencies.len()
    );
}
