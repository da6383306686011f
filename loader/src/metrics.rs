//! Prometheus metric names of the loader stages (`exposures_<stage>_<thing>_<unit>`).

/// Gauge per `partition`: messages behind the partition's high watermark.
pub const SINK_CONSUMER_LAG: &str = "exposures_sink_consumer_lag_messages";
/// Gauge: rows held in open files.
pub const SINK_BUFFERED_ROWS: &str = "exposures_sink_buffered_rows";
/// Gauge: age of the oldest open file.
pub const SINK_OLDEST_BUFFERED_AGE: &str = "exposures_sink_oldest_buffered_age_seconds";
/// Counters: files, bytes and rows written to the lake.
pub const SINK_FILES_WRITTEN: &str = "exposures_sink_files_written_total";
pub const SINK_BYTES_WRITTEN: &str = "exposures_sink_bytes_written_total";
pub const SINK_ROWS_WRITTEN: &str = "exposures_sink_rows_written_total";
/// Histogram: time to upload one object, retries included.
pub const SINK_UPLOAD_DURATION: &str = "exposures_sink_upload_duration_seconds";
/// Counter: failed upload attempts (each retried).
pub const SINK_UPLOAD_FAILURES: &str = "exposures_sink_upload_failures_total";
/// Gauge per `partition`: the last committed offset.
pub const SINK_COMMITTED_OFFSET: &str = "exposures_sink_committed_offset";
/// Counter: records on the topic that are not loadable exposures (dead-lettered next to
/// their file, then loaded into `exposures_rejected`).
pub const SINK_INVALID_RECORDS: &str = "exposures_sink_invalid_records_total";

/// Counter: records delivered again by the consumer and skipped (already taken).
pub const SINK_REDELIVERED_RECORDS: &str = "exposures_sink_redelivered_records_total";

/// Gauge: files in the batch being loaded.
pub const LOAD_PENDING_FILES: &str = "exposures_load_pending_files";
/// Histogram: time to load one batch, retries included.
pub const LOAD_BATCH_DURATION: &str = "exposures_load_batch_duration_seconds";
/// Counter: rows inserted into the warehouse.
pub const LOAD_ROWS_LOADED: &str = "exposures_load_rows_loaded_total";
/// Counter: rows the warehouse refused, moved to `exposures_rejected`.
pub const LOAD_ROWS_REJECTED: &str = "exposures_load_rows_rejected_total";
/// Counter of files by `outcome` = `loaded` | `already_loaded` | `quarantined`.
pub const LOAD_FILES: &str = "exposures_load_files_total";
/// Counter: failed batch attempts (each retried).
pub const LOAD_FAILURES: &str = "exposures_load_failures_total";
/// Counter: batches the warehouse refused for their data (each is split, or its one
/// file quarantined).
pub const LOAD_DATA_ERRORS: &str = "exposures_load_data_errors_total";
/// Counter: records on the files topic that are not file records (skipped, logged).
pub const LOAD_INVALID_RECORDS: &str = "exposures_load_invalid_records_total";
/// Gauge: 1 while the Redshift loader's circuit breaker is open (files in a row refused
/// with the same error: the loader stopped quarantining and fails its batches).
pub const LOAD_CIRCUIT_OPEN: &str = "exposures_load_circuit_open";
/// Gauge: seconds between now and the newest `exposed_at` this loader has loaded,
/// refreshed every 15 s, so it keeps growing while nothing loads (end-to-end freshness).
pub const LOAD_FRESHNESS: &str = "exposures_load_freshness_seconds";

/// Every metric this crate exports (checked against `infra/` by the tests).
pub const ALL: [&str; 21] = [
    LOAD_CIRCUIT_OPEN,
    LOAD_ROWS_REJECTED,
    LOAD_DATA_ERRORS,
    LOAD_PENDING_FILES,
    LOAD_BATCH_DURATION,
    LOAD_ROWS_LOADED,
    LOAD_FILES,
    LOAD_FAILURES,
    LOAD_INVALID_RECORDS,
    LOAD_FRESHNESS,
    SINK_REDELIVERED_RECORDS,
    SINK_CONSUMER_LAG,
    SINK_BUFFERED_ROWS,
    SINK_OLDEST_BUFFERED_AGE,
    SINK_FILES_WRITTEN,
    SINK_BYTES_WRITTEN,
    SINK_ROWS_WRITTEN,
    SINK_UPLOAD_DURATION,
    SINK_UPLOAD_FAILURES,
    SINK_COMMITTED_OFFSET,
    SINK_INVALID_RECORDS,
];
