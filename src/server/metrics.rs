//! `GET /metrics`: Prometheus text format. Ingestion metrics come from the
//! ingest crate's counters, query metrics from the protocol front end; segment
//! counts and bytes are read from the catalog when scraped.

use std::sync::OnceLock;

use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_gauge_vec, Encoder, GaugeVec,
    HistogramVec, IntGaugeVec, TextEncoder,
};

use crate::Database;

/// Registering constant, valid definitions once cannot fail.
const VALID: &str = "constant metric definitions register once";

/// `sluice_query_seconds{outcome}`: statements run over the protocol, by
/// outcome (`ok`, `error`), with their latency; its `_count` is the query count.
pub fn queries() -> &'static HistogramVec {
    static Q: OnceLock<HistogramVec> = OnceLock::new();
    Q.get_or_init(|| {
        register_histogram_vec!(
            "sluice_query_seconds",
            "Statements run over the PostgreSQL protocol and their latency.",
            &["outcome"],
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                30.0
            ]
        )
        .expect(VALID)
    })
}

/// `sluice_query_queue_wait_seconds`: how long statements waited for a slot
/// of the query pool (zero when one was free).
pub fn queue_wait() -> &'static prometheus::Histogram {
    static Q: OnceLock<prometheus::Histogram> = OnceLock::new();
    Q.get_or_init(|| {
        prometheus::register_histogram!(
            "sluice_query_queue_wait_seconds",
            "Time statements waited for a slot of the query pool.",
            vec![0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0]
        )
        .expect(VALID)
    })
}

/// The query pool's gauges, read from the pool when scraped.
fn pool_gauges() -> &'static IntGaugeVec {
    static G: OnceLock<IntGaugeVec> = OnceLock::new();
    G.get_or_init(|| {
        register_int_gauge_vec!(
            "sluice_query_pool",
            "The query pool: slots, statements running and queued now, scan helpers \
             running now, and since start statements admitted, admitted after a wait, \
             helpers started and helpers refused for want of a free slot.",
            &["what"]
        )
        .expect(VALID)
    })
}

fn render_pool(db: &Database) {
    let Some(pool) = &db.options().workers else {
        return;
    };
    let s = pool.stats();
    let g = pool_gauges();
    for (what, n) in [
        ("slots", s.size as u64),
        ("running", s.running as u64),
        ("queued", s.waiting as u64),
        ("helpers", s.helpers as u64),
        ("admitted_total", s.admitted),
        ("waited_total", s.queued),
        ("helpers_started_total", s.helpers_granted),
        ("helpers_refused_total", s.helpers_refused),
    ] {
        g.with_label_values(&[what]).set(n as i64);
    }
}

struct StorageGauges {
    segments: IntGaugeVec,
    bytes: IntGaugeVec,
    seals: IntGaugeVec,
    seal_seconds: GaugeVec,
    evicted_segments: IntGaugeVec,
    evicted_rows: IntGaugeVec,
    expired_on_arrival: IntGaugeVec,
    upsert_keys: IntGaugeVec,
    upsert_map_bytes: IntGaugeVec,
    upsert_dropped: IntGaugeVec,
}

fn storage_gauges() -> &'static StorageGauges {
    static G: OnceLock<StorageGauges> = OnceLock::new();
    G.get_or_init(|| StorageGauges {
        segments: register_int_gauge_vec!(
            "sluice_segments",
            "Segments per table and state (sealed, corrupt).",
            &["table", "state"]
        )
        .expect(VALID),
        bytes: register_int_gauge_vec!(
            "sluice_segment_bytes",
            "Bytes of sealed segment files on disk per table.",
            &["table"]
        )
        .expect(VALID),
        // Read from the tables when scraped, so gauges that only ever grow.
        seals: register_int_gauge_vec!(
            "sluice_seals_total",
            "Seals committed per table since it was opened.",
            &["table"]
        )
        .expect(VALID),
        seal_seconds: register_gauge_vec!(
            "sluice_seal_seconds_total",
            "Time spent sealing per table since it was opened.",
            &["table"]
        )
        .expect(VALID),
        evicted_segments: register_int_gauge_vec!(
            "sluice_retention_evicted_segments_total",
            "Sealed segments dropped per table because every row was past retention.",
            &["table"]
        )
        .expect(VALID),
        evicted_rows: register_int_gauge_vec!(
            "sluice_retention_evicted_rows_total",
            "Rows in the segments retention dropped, per table.",
            &["table"]
        )
        .expect(VALID),
        expired_on_arrival: register_int_gauge_vec!(
            "sluice_retention_expired_on_arrival_total",
            "Rows not stored because they arrived already past retention, per table.",
            &["table"]
        )
        .expect(VALID),
        upsert_keys: register_int_gauge_vec!(
            "sluice_upsert_keys",
            "Keys in an upsert or dedup table's key map.",
            &["table"]
        )
        .expect(VALID),
        upsert_map_bytes: register_int_gauge_vec!(
            "sluice_upsert_key_map_bytes",
            "Bytes an upsert or dedup table's key map holds.",
            &["table"]
        )
        .expect(VALID),
        upsert_dropped: register_int_gauge_vec!(
            "sluice_upsert_rows_total",
            "Rows of an upsert or dedup table by what the apply step did: out_of_order and duplicate were not stored; two_partitions came from a partition other than their key's earlier row.",
            &["table", "outcome"]
        )
        .expect(VALID),
    })
}

/// `sluice_prepared_executions_total{plan}`: executions of prepared queries
/// since start, from a generic plan kept from an earlier execution
/// (`reused`) or bound and optimized for this one (`planned`); read from the
/// engine's counters when scraped.
fn render_plan_reuse() {
    static G: OnceLock<IntGaugeVec> = OnceLock::new();
    let g = G.get_or_init(|| {
        register_int_gauge_vec!(
            "sluice_prepared_executions_total",
            "Executions of prepared queries: from a plan kept from an earlier execution, or planned for this one.",
            &["plan"]
        )
        .expect(VALID)
    });
    let (reused, planned) = sluice_query::reuse::execution_counts();
    g.with_label_values(&["reused"]).set(reused as i64);
    g.with_label_values(&["planned"]).set(planned as i64);
}

/// `sluice_memory_given_back_total`: times freed memory went back to the
/// operating system after large statements (see
/// `sluice_query::memory::large_statement_ended`).
fn render_given_back() {
    static G: OnceLock<prometheus::IntGauge> = OnceLock::new();
    let g = G.get_or_init(|| {
        prometheus::register_int_gauge!(
            "sluice_memory_given_back_total",
            "Times freed memory was given back to the operating system after large statements."
        )
        .expect(VALID)
    });
    g.set(sluice_query::memory::times_given_back() as i64);
}

/// `sluice_aggregate_spills_total` and `sluice_aggregate_spilled_bytes_total`:
/// GROUP BYs answered through disk past the memory bound, and what they wrote.
fn render_spills() {
    static G: OnceLock<(prometheus::IntGauge, prometheus::IntGauge)> = OnceLock::new();
    let (spills, bytes) = G.get_or_init(|| {
        (
            prometheus::register_int_gauge!(
                "sluice_aggregate_spills_total",
                "GROUP BYs whose groups passed the memory bound and were aggregated through spill files."
            )
            .expect(VALID),
            prometheus::register_int_gauge!(
                "sluice_aggregate_spilled_bytes_total",
                "Bytes those GROUP BYs wrote to spill files."
            )
            .expect(VALID),
        )
    });
    let (count, written) = sluice_query::aggregate::spill::spill_totals();
    spills.set(count as i64);
    bytes.set(written as i64);
}

/// Every metric as Prometheus text.
pub fn render(db: &Database) -> String {
    queries();
    queue_wait();
    render_pool(db);
    render_plan_reuse();
    render_given_back();
    render_spills();
    let _ = sluice_ingest::metrics::metrics();
    let g = storage_gauges();
    g.segments.reset();
    g.bytes.reset();
    for t in db.engine().catalog().tables() {
        let mut bytes = 0u64;
        for s in t.segment_states() {
            if s.state != "mutable" {
                g.segments.with_label_values(&[t.name(), s.state]).inc();
            }
            bytes += s.bytes.unwrap_or(0);
        }
        g.bytes.with_label_values(&[t.name()]).set(bytes as i64);
        let (count, micros) = t.seal_stats();
        g.seals.with_label_values(&[t.name()]).set(count as i64);
        g.seal_seconds
            .with_label_values(&[t.name()])
            .set(micros as f64 / 1e6);
        let retention = t.retention_stats();
        g.evicted_segments
            .with_label_values(&[t.name()])
            .set(retention.segments_evicted as i64);
        g.evicted_rows
            .with_label_values(&[t.name()])
            .set(retention.rows_evicted as i64);
        g.expired_on_arrival
            .with_label_values(&[t.name()])
            .set(retention.rows_expired_on_arrival as i64);
        if let Some(u) = t.upsert_report() {
            g.upsert_keys
                .with_label_values(&[t.name()])
                .set(u.keys as i64);
            g.upsert_map_bytes
                .with_label_values(&[t.name()])
                .set(u.map_bytes as i64);
            for (reason, n) in [
                ("out_of_order", u.stats.out_of_order),
                ("duplicate", u.stats.duplicates),
                ("two_partitions", u.stats.keys_in_two_partitions),
            ] {
                g.upsert_dropped
                    .with_label_values(&[t.name(), reason])
                    .set(n as i64);
            }
        }
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut out) {
        return format!("# error encoding metrics: {e}\n");
    }
    String::from_utf8_lossy(&out).into_owned()
}
