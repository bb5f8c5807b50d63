//! Ingestion metrics, registered in `prometheus`'s default registry so that
//! `GET /metrics` gathers them with the rest.

use std::sync::OnceLock;

use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec,
};

/// Every ingestion metric, labelled by table (and partition where it varies by one).
pub struct IngestMetrics {
    /// `sluice_ingest_rows_total{table,partition}`: rows appended.
    pub rows: IntCounterVec,
    /// `sluice_ingest_bytes_total{table,partition}`: message bytes read.
    pub bytes: IntCounterVec,
    /// `sluice_dead_letters_total{table,partition}`: messages that became dead letters.
    pub dead_letters: IntCounterVec,
    /// `sluice_consumer_lag_messages{table,partition}`: high watermark (from the
    /// last fetch response) minus the position read.
    pub lag: IntGaugeVec,
    /// `sluice_freshness_seconds{table,partition}`: now minus the newest event
    /// time read, updated on every batch.
    pub freshness: GaugeVec,
    /// `sluice_produce_to_visible_seconds{table}`: from a message's Kafka
    /// timestamp to its row being visible to queries.
    pub produce_to_visible: HistogramVec,
}

/// The process's ingestion metrics.
pub fn metrics() -> &'static IngestMetrics {
    static METRICS: OnceLock<IngestMetrics> = OnceLock::new();
    // Registering constant, valid definitions once (the OnceLock) cannot fail:
    // the `expect`s state an invariant, not input handling.
    const VALID: &str = "constant metric definitions register once";
    METRICS.get_or_init(|| {
        let labels = &["table", "partition"];
        IngestMetrics {
            rows: register_int_counter_vec!(
                "sluice_ingest_rows_total",
                "Rows ingested from Kafka.",
                labels
            )
            .expect(VALID),
            bytes: register_int_counter_vec!(
                "sluice_ingest_bytes_total",
                "Message bytes read from Kafka.",
                labels
            )
            .expect(VALID),
            dead_letters: register_int_counter_vec!(
                "sluice_dead_letters_total",
                "Messages that could not be ingested (see sluice.dead_letters).",
                labels
            )
            .expect(VALID),
            lag: register_int_gauge_vec!(
                "sluice_consumer_lag_messages",
                "High watermark of the last fetch response minus the position read.",
                labels
            )
            .expect(VALID),
            freshness: register_gauge_vec!(
                "sluice_freshness_seconds",
                "Now minus the newest event time read.",
                labels
            )
            .expect(VALID),
            produce_to_visible: register_histogram_vec!(
                "sluice_produce_to_visible_seconds",
                "From a message's Kafka timestamp to its row being queryable.",
                &["table"],
                vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
            )
            .expect(VALID),
        }
    })
}
