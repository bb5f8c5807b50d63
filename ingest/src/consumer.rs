//! One table's Kafka consumer: assigns itself every partition of the topic (no
//! group rebalancing, so Sluice alone decides where each partition resumes),
//! decodes messages into rows and dead letters, and appends them to the
//! partition's consuming segment. Sealing happens elsewhere (the catalog's
//! maintenance thread) and never pauses this loop; only backpressure does.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_storage::{DeadLetter, PartitionStatus, Table, Value};

use crate::config::{OffsetReset, SourceConfig, StartAt};
use crate::decode::JsonDecoder;
use crate::metrics::metrics;

/// How often the topic's partition list is read again, so partitions added
/// later are consumed too.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// The most messages appended in one batch.
const BATCH_MESSAGES: usize = 5_000;
/// The longest a poll waits for the first message of a batch.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// Reads a table's topic into the table until stopped.
pub struct TableConsumer {
    table: Arc<Table>,
    config: SourceConfig,
    decoder: JsonDecoder,
    time_column: usize,
    stop: Arc<AtomicBool>,
}

/// What librdkafka tells us outside of messages: high watermarks from fetch
/// responses (through its statistics) and broker errors.
struct SourceContext {
    topic: String,
    high_watermarks: Mutex<HashMap<i32, i64>>,
    broker_error: Mutex<Option<String>>,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        // `hi_offset` is the high watermark of the partition's last fetch
        // response; ListOffsets(latest) is not used because some Kafka-compatible
        // brokers answer it wrongly.
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut marks = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (partition, p) in &topic.partitions {
            if *partition >= 0 && p.hi_offset >= 0 {
                marks.insert(*partition, p.hi_offset);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        *self.broker_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for SourceContext {}

/// Where a partition stands as this consumer reads it.
struct Partition {
    /// The offset the next message should have; a message beyond it means the
    /// broker no longer had the messages between (retention passed).
    expected: i64,
    newest_event_micros: Option<i64>,
    last_message_micros: Option<i64>,
    state: &'static str,
    last_error: Option<String>,
    paused: bool,
}

impl TableConsumer {
    /// A consumer for `table`'s source; it runs when [`TableConsumer::run`] is
    /// called and returns once `stop` is set.
    pub fn new(table: Arc<Table>, config: SourceConfig, stop: Arc<AtomicBool>) -> Self {
        let decoder = JsonDecoder::new(table.schema(), &config);
        TableConsumer {
            // A source table always has a time column (the schema requires it).
            time_column: table.schema().time_column_index().unwrap_or(usize::MAX),
            table,
            config,
            decoder,
            stop,
        }
    }

    /// Consumes until stopped. A broker that cannot be reached is retried with
    /// growing pauses (logged once per change of state); queries keep answering
    /// from what is stored meanwhile.
    pub fn run(self) {
        let mut backoff = Duration::from_millis(200);
        let mut last_error: Option<String> = None;
        while !self.stopped() {
            match self.session() {
                Ok(()) => return,
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(table = %self.table.name(), error = %e, "Kafka source unavailable; retrying");
                        last_error = Some(e.clone());
                    }
                    self.report_all("retrying", Some(e));
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stopped() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn client(&self) -> Result<BaseConsumer<SourceContext>, String> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.config.brokers)
            .set("group.id", format!("sluice.{}", self.table.name()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            // The broker answers a fetch within 10 ms even with little data
            // (librdkafka's default, 500 ms, put p99 produce-to-visible at 680 ms).
            .set("fetch.wait.max.ms", "10")
            // When the local queue is full librdkafka waits this long before
            // fetching again; its default (1 s) starves a consumer that does
            // real work per message: 193k instead of 459k messages/s here.
            .set("fetch.queue.backoff.ms", "10")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set(
                "auto.offset.reset",
                match self.config.offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                    OffsetReset::Fail => "error",
                },
            );
        for (k, v) in &self.config.client_settings {
            cfg.set(k, v);
        }
        let context = SourceContext {
            topic: self.config.topic.clone(),
            high_watermarks: Mutex::new(HashMap::new()),
            broker_error: Mutex::new(None),
        };
        cfg.create_with_context(context)
            .map_err(|e| format!("cannot create a Kafka consumer: {e}"))
    }

    /// One consumer's life: returns `Ok` when stopped, `Err` when it must be
    /// made again (the broker could not be reached to learn the partitions).
    fn session(&self) -> Result<(), String> {
        let consumer = self.client()?;
        let mut partitions: BTreeMap<i32, Partition> = BTreeMap::new();
        let mut discovered_at: Option<Instant> = None;
        let mut committed_to_group = BTreeMap::new();
        while !self.stopped() {
            if discovered_at.is_none_or(|t| t.elapsed() >= DISCOVERY_INTERVAL) {
                match self.discover(&consumer, &mut partitions) {
                    Ok(()) => discovered_at = Some(Instant::now()),
                    Err(e) if partitions.is_empty() => return Err(e),
                    Err(e) => {
                        tracing::debug!(table = %self.table.name(), error = %e, "partition discovery failed");
                        discovered_at = Some(Instant::now());
                    }
                }
            }
            self.apply_backpressure(&consumer, &mut partitions);
            self.consume_batch(&consumer, &mut partitions);
            self.report(&consumer, &partitions);
            self.commit_to_group(&consumer, &mut committed_to_group);
        }
        Ok(())
    }

    /// Assigns partitions not yet assigned: from where this table is (its
    /// consuming segment, else its manifest), else as `kafka_start` says.
    fn discover(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        partitions: &mut BTreeMap<i32, Partition>,
    ) -> Result<(), String> {
        let metadata = consumer
            .fetch_metadata(Some(&self.config.topic), Duration::from_secs(5))
            .map_err(|e| {
                format!(
                    "cannot read the metadata of topic {}: {e}",
                    self.config.topic
                )
            })?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.config.topic)
            .ok_or_else(|| format!("topic {} not found", self.config.topic))?;
        if let Some(e) = topic.error() {
            return Err(format!("topic {}: {:?}", self.config.topic, e));
        }
        let positions = self.table.consumed_offsets();
        let mut new = TopicPartitionList::new();
        for p in topic.partitions() {
            let id = p.id();
            if partitions.contains_key(&id) {
                continue;
            }
            let (offset, expected) = match positions.get(&id) {
                Some(o) => (Offset::Offset(*o), *o),
                None => match self.config.start {
                    StartAt::Earliest => (Offset::Beginning, -1),
                    StartAt::Latest => (Offset::End, -1),
                },
            };
            new.add_partition_offset(&self.config.topic, id, offset)
                .map_err(|e| e.to_string())?;
            partitions.insert(
                id,
                Partition {
                    expected,
                    newest_event_micros: None,
                    last_message_micros: None,
                    state: "consuming",
                    last_error: None,
                    paused: false,
                },
            );
            tracing::info!(table = %self.table.name(), topic = %self.config.topic, partition = id, ?offset, "consuming partition");
        }
        if new.count() > 0 {
            consumer
                .incremental_assign(&new)
                .map_err(|e| format!("cannot assign partitions: {e}"))?;
        }
        Ok(())
    }

    /// Pauses every partition while the table's unsealed source rows exceed
    /// `max_mutable_bytes`, and resumes them below three quarters of it.
    fn apply_backpressure(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        partitions: &mut BTreeMap<i32, Partition>,
    ) {
        let held = self.table.buffered_source_bytes();
        let limit = self.config.max_mutable_bytes;
        let pause = held > limit;
        let resume = held <= limit / 4 * 3;
        let mut list = TopicPartitionList::new();
        for (id, p) in partitions.iter_mut() {
            if p.state == "failed" {
                continue;
            }
            if (pause && !p.paused) || (resume && p.paused) {
                list.add_partition(&self.config.topic, *id);
                p.paused = pause;
                p.state = if pause { "paused" } else { "consuming" };
            }
        }
        if list.count() == 0 {
            if pause {
                // Sealing is behind: wait for it rather than spin.
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        let result = if pause {
            tracing::info!(table = %self.table.name(), held, limit, "consumption paused until sealing catches up");
            consumer.pause(&list)
        } else {
            tracing::info!(table = %self.table.name(), "consumption resumed");
            consumer.resume(&list)
        };
        if let Err(e) = result {
            tracing::warn!(table = %self.table.name(), error = %e, "could not pause or resume partitions");
        }
    }

    /// Polls up to [`BATCH_MESSAGES`] messages and appends them, per partition.
    fn consume_batch(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        partitions: &mut BTreeMap<i32, Partition>,
    ) {
        let mut batches: BTreeMap<i32, Batch> = BTreeMap::new();
        let mut wait = POLL_WAIT;
        let mut taken = 0;
        // A batch stops at the memory bound too (message bytes standing in for
        // the rows they become), so one batch cannot overshoot it far.
        let mut room = self
            .config
            .max_mutable_bytes
            .saturating_sub(self.table.buffered_source_bytes());
        while taken < BATCH_MESSAGES && room > 0 {
            let Some(polled) = consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match polled {
                Ok(message) => {
                    taken += 1;
                    room = room.saturating_sub(message.payload_len());
                    let batch = batches.entry(message.partition()).or_default();
                    self.take(&message, batch, partitions.get_mut(&message.partition()));
                }
                Err(e) => self.poll_error(e, partitions),
            }
        }
        let name = self.table.name().to_string();
        for (id, batch) in batches {
            let Some(next_offset) = batch.next_offset else {
                continue;
            };
            let label = id.to_string();
            let (rows, dead) = (batch.rows.len(), batch.dead.len());
            match self
                .table
                .append_consumed(id, &batch.rows, batch.dead, next_offset)
            {
                Ok(()) => {
                    let m = metrics();
                    m.rows
                        .with_label_values(&[&name, &label])
                        .inc_by(rows as u64);
                    m.dead_letters
                        .with_label_values(&[&name, &label])
                        .inc_by(dead as u64);
                    m.bytes
                        .with_label_values(&[&name, &label])
                        .inc_by(batch.bytes);
                    let now = chrono::Utc::now().timestamp_millis();
                    let latency = m.produce_to_visible.with_label_values(&[&name]);
                    for produced in batch.produced_millis {
                        latency.observe((now - produced).max(0) as f64 / 1000.0);
                    }
                }
                Err(e) => {
                    // Rows were built to the column types, so this is a bug; the
                    // messages are read again after a restart.
                    tracing::error!(table = %name, partition = id, error = %e, "consumed rows could not be appended");
                }
            }
            if let Some(p) = partitions.get_mut(&id) {
                p.newest_event_micros = p.newest_event_micros.max(batch.newest_event_micros);
            }
        }
    }

    /// Turns one message into a row or a dead letter of `batch`.
    fn take(
        &self,
        message: &BorrowedMessage<'_>,
        batch: &mut Batch,
        partition: Option<&mut Partition>,
    ) {
        let offset = message.offset();
        let payload = message.payload().unwrap_or_default();
        batch.bytes += payload.len() as u64;
        batch.next_offset = Some(offset + 1);
        if let Some(ms) = message.timestamp().to_millis() {
            batch.produced_millis.push(ms);
        }
        if let Some(p) = partition {
            if p.expected >= 0 && offset > p.expected {
                let gap = format!(
                    "offset {} was no longer on the broker: continued at {offset} ({} messages skipped)",
                    p.expected,
                    offset - p.expected
                );
                tracing::warn!(table = %self.table.name(), partition = message.partition(), "{gap}");
                p.last_error = Some(gap);
            }
            p.expected = offset + 1;
            p.last_message_micros = message.timestamp().to_millis().map(|ms| ms * 1000);
        }
        let dead = |why: String| DeadLetter::new(message.partition(), offset, why, payload);
        if message.payload().is_none() {
            batch.dead.push(dead("the message has no value".into()));
            return;
        }
        if payload.len() > self.config.max_message_bytes {
            batch.dead.push(dead(format!(
                "the message of {} bytes is larger than max_message_bytes ({})",
                payload.len(),
                self.config.max_message_bytes
            )));
            return;
        }
        // The decoder's rows hold their columns' types and fill every NOT NULL
        // column, so they go in without another conversion pass.
        match self.decoder.decode(payload) {
            Ok(row) => {
                if let Some(Value::Timestamp(t)) = row.get(self.time_column) {
                    batch.newest_event_micros = batch.newest_event_micros.max(Some(*t));
                }
                batch.rows.push(row);
            }
            Err(why) => batch.dead.push(dead(why)),
        }
    }

    fn poll_error(&self, e: KafkaError, partitions: &mut BTreeMap<i32, Partition>) {
        if let KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) = e {
            // kafka_offset_reset = 'fail': the committed offset is gone.
            for p in partitions.values_mut() {
                if p.state != "failed" {
                    p.state = "failed";
                    p.last_error = Some(format!(
                        "the committed offset is no longer on the broker and kafka_offset_reset is 'fail': {e}"
                    ));
                }
            }
            tracing::error!(table = %self.table.name(), error = %e, "partition stopped: its committed offset is gone");
            return;
        }
        tracing::debug!(table = %self.table.name(), error = %e, "poll error");
        for p in partitions.values_mut() {
            p.last_error = Some(e.to_string());
        }
    }

    /// Publishes each partition's state for `sluice.ingestion` and the metrics.
    fn report(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        partitions: &BTreeMap<i32, Partition>,
    ) {
        let marks = consumer
            .context()
            .high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let positions = self.table.consumed_offsets();
        let name = self.table.name().to_string();
        let now = chrono::Utc::now().timestamp_micros();
        let broker_error = consumer
            .context()
            .broker_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for (id, p) in partitions {
            let label = id.to_string();
            let high = marks.get(id).copied();
            if let (Some(high), Some(position)) = (high, positions.get(id)) {
                metrics()
                    .lag
                    .with_label_values(&[&name, &label])
                    .set((high - position).max(0));
            }
            if let Some(newest) = p.newest_event_micros {
                metrics()
                    .freshness
                    .with_label_values(&[&name, &label])
                    .set((now - newest) as f64 / 1e6);
            }
            self.table.set_source_status(
                *id,
                PartitionStatus {
                    high_watermark: high,
                    last_message_micros: p.last_message_micros,
                    state: p.state.to_string(),
                    last_error: p.last_error.clone().or_else(|| broker_error.clone()),
                },
            );
        }
    }

    fn report_all(&self, state: &str, error: Option<String>) {
        for (id, status) in self.table.source_status() {
            self.table.set_source_status(
                id,
                PartitionStatus {
                    state: state.to_string(),
                    last_error: error.clone(),
                    ..status
                },
            );
        }
    }

    /// Commits the manifest's offsets to consumer group `sluice.<table>` when
    /// they moved, for lag tools; Sluice itself reads only its manifest.
    fn commit_to_group(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        done: &mut BTreeMap<i32, i64>,
    ) {
        let committed = self.table.committed_offsets();
        if committed == *done {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (p, o) in &committed {
            if list
                .add_partition_offset(&self.config.topic, *p, Offset::Offset(*o))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            tracing::debug!(table = %self.table.name(), error = %e, "offset commit to the consumer group failed");
            return;
        }
        *done = committed;
    }
}

/// One partition's share of a poll.
#[derive(Default)]
struct Batch {
    rows: Vec<Vec<Value>>,
    dead: Vec<DeadLetter>,
    next_offset: Option<i64>,
    bytes: u64,
    newest_event_micros: Option<i64>,
    produced_millis: Vec<i64>,
}
