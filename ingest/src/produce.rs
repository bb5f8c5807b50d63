//! `sluice produce`: JSON lines to a Kafka topic, for demos and tests (Debian's
//! kcat is built on a librdkafka too old for newer brokers).

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;
use sonic_rs::JsonValueTrait;

/// What to produce and how fast.
pub struct ProduceOptions<'a> {
    /// `host:port[,...]`.
    pub brokers: &'a str,
    /// The topic.
    pub topic: &'a str,
    /// A top-level field whose value keys each message (so that one key always
    /// lands in one partition); no key otherwise.
    pub key_field: Option<&'a str>,
    /// Messages per second at most; as fast as the broker takes them otherwise.
    pub rate: Option<u64>,
}

/// Counts deliveries and remembers the first failure.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Produces each non-empty line of `lines` as one message and waits until all
/// are delivered. `progress` is called with the count delivered so far.
/// Returns the number delivered.
///
/// # Errors
/// A line that cannot be read, a producer that cannot be created, or any
/// message the broker did not take (with the first reason).
pub fn produce_lines(
    options: &ProduceOptions<'_>,
    lines: impl BufRead,
    mut progress: impl FnMut(u64),
) -> Result<u64, String> {
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", options.brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("cannot create a Kafka producer: {e}"))?;
    let started = Instant::now();
    let mut sent: u64 = 0;
    for line in lines.lines() {
        let line = line.map_err(|e| format!("cannot read the input: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let key = options.key_field.and_then(|f| key_of(&line, f));
        if let Some(rate) = options.rate.filter(|r| *r > 0) {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(options.topic).payload(&line);
        if let Some(k) = &key {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("cannot produce: {e}")),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
        progress(producer.context().delivered.load(Ordering::Relaxed));
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("messages not delivered within 60 s: {e}"))?;
    let context = producer.context();
    progress(context.delivered.load(Ordering::Relaxed));
    if context.failed.load(Ordering::Relaxed) > 0 {
        let first = context
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        return Err(format!(
            "{} of {sent} messages were not delivered: {first}",
            context.failed.load(Ordering::Relaxed)
        ));
    }
    Ok(context.delivered.load(Ordering::Relaxed))
}

/// The text of top-level field `field` of a JSON line, if it has one.
fn key_of(line: &str, field: &str) -> Option<String> {
    let doc: sonic_rs::Value = sonic_rs::from_str(line).ok()?;
    let value = doc.get(field)?;
    Some(match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    })
}
