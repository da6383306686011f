//! Prometheus metrics of the ingest stage. Names follow
//! `exposures_<subsystem>_<thing>_<unit>`; outcomes are labels. `infra/` dashboards and
//! alert rules may use only the names declared here.

/// Counter; labels `route`, `status`.
pub const REQUESTS: &str = "exposures_ingest_requests_total";
/// Histogram of request handling time; label `route`.
pub const REQUEST_DURATION: &str = "exposures_ingest_request_duration_seconds";
/// Counter of events answered 200; label `path` = `kafka` | `spool`.
pub const EVENTS_ACCEPTED: &str = "exposures_ingest_events_accepted_total";
/// Counter of events refused; label `reason` (validation code, or `unavailable`).
pub const EVENTS_REJECTED: &str = "exposures_ingest_events_rejected_total";
/// Counter of the events `POST /track` judged (GrowthBook's tracking plugin); labels
/// `kind` = `exposure` | `feature` | `custom` | `unknown` (not even an object with a name),
/// `outcome` = `accepted` | `rejected`.
pub const TRACK_EVENTS: &str = "exposures_ingest_track_events_total";
/// Histogram of produce-to-acknowledgement time, failures included so the tail is honest;
/// label `outcome` = `acked` | `failed`.
pub const KAFKA_ACK_DURATION: &str = "exposures_ingest_kafka_ack_duration_seconds";
/// Gauge: messages in the producer's queue not yet acknowledged (sampled every 2 s).
pub const PRODUCER_QUEUE: &str = "exposures_ingest_producer_queue_messages";
/// Gauge: 1 when the last metadata probe reached the broker.
pub const BROKER_UP: &str = "exposures_ingest_broker_up";
/// Gauge: records in the spool not yet in Kafka.
pub const SPOOL_RECORDS: &str = "exposures_ingest_spool_records";
/// Gauge: bytes of spool segment files on disk.
pub const SPOOL_BYTES: &str = "exposures_ingest_spool_bytes";
/// Counter: bytes of spool segments that did not decode, set aside in `spool/corrupt/`.
pub const SPOOL_CORRUPT_BYTES: &str = "exposures_ingest_spool_corrupt_bytes_total";
/// Counter: spooled records Kafka refuses for good, set aside in `spool/dead-letters/`.
pub const SPOOL_DEAD_LETTERED: &str = "exposures_ingest_spool_dead_lettered_total";
/// Counter: spooled records delivered to Kafka by the replayer.
pub const SPOOL_REPLAYED: &str = "exposures_ingest_spool_replayed_total";

/// Every metric this crate exports (checked against `infra/` by the tests).
pub const ALL: [&str; 13] = [
    TRACK_EVENTS,
    SPOOL_CORRUPT_BYTES,
    SPOOL_DEAD_LETTERED,
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

/// Renders the Prometheus text exposition of every metric in the process. The binary
/// installs the exporter (one per process) and hands ingest this for `GET /metrics`.
pub type RenderMetrics = std::sync::Arc<dyn Fn() -> String + Send + Sync>;
