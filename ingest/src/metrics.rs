//! Prometheus metrics of the ingest stage. Names follow
//! `exposures_<subsystem>_<thing>_<unit>`; outcomes are labels. `infra/` dashboards and
//! alert rules may use only the names declared here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter; labels `route`, `status`.
pub const REQUESTS: &str = "exposures_ingest_requests_total";
/// Histogram of request handling time; label `route`.
pub const REQUEST_DURATION: &str = "exposures_ingest_request_duration_seconds";
/// Counter of events answered 200; label `path` = `kafka` | `spool`.
pub const EVENTS_ACCEPTED: &str = "exposures_ingest_events_accepted_total";
/// Counter of events refused; label `reason` (validation code, or `unavailable`).
pub const EVENTS_REJECTED: &str = "exposures_ingest_events_rejected_total";
/// Histogram of produce-to-acknowledgement time, failures included so the tail is honest;
/// label `outcome` = `acked` | `failed`.
pub const KAFKA_ACK_DURATION: &str = "exposures_ingest_kafka_ack_duration_seconds";
/// Gauge: messages in the producer's queue not yet acknowledged.
pub const PRODUCER_QUEUE: &str = "exposures_ingest_producer_queue_messages";
/// Gauge: 1 when the last metadata probe reached the broker.
pub const BROKER_UP: &str = "exposures_ingest_broker_up";
/// Gauge: records in the spool not yet in Kafka.
pub const SPOOL_RECORDS: &str = "exposures_ingest_spool_records";
/// Gauge: bytes of spool segment files on disk.
pub const SPOOL_BYTES: &str = "exposures_ingest_spool_bytes";
/// Counter: spooled records delivered to Kafka by the replayer.
pub const SPOOL_REPLAYED: &str = "exposures_ingest_spool_replayed_total";

/// Every metric this crate exports (checked against `infra/` by the tests).
pub const ALL: [&str; 10] = [
    REQUESTS,
    REQUEST_DURATION,
    EVENTS_ACCEPTED,
    EVENTS_REJECTED,
    KAFKA_ACK_DURATION,
    PRODUCER_QUEUE,
    BROKER_UP,
    SPOOL_RECORDS,
    SPOOL_BYTES,
    SPOOL_REPLAYED,
];

const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder, installed on first use. One per process:
/// several servers in one process (tests, `exposures up`) share it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global (an embedding application installed
            // one): render ours anyway so /metrics answers, if empty.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Serves `GET /metrics` alone, for stages without an HTTP API of their own (the sink).
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    prometheus();
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { render() }));
    axum::serve(listener, app).await
}

/// The Prometheus text exposition of every metric in this process.
pub fn render() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
}
