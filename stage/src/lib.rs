//! What every stage of the exposures pipeline (ingest, sink, load, status) runs on, so
//! that each stage connects, retries and stops the same way:
//!
//! - [`kafka`]: the `--brokers` / `--kafka-property` argument group and the one function
//!   that turns it into a librdkafka configuration for every client the pipeline makes
//!   (the ingest producer, the sink's consumer and file announcer, the loader's consumer,
//!   `status`, topic administration). Security settings (SASL, TLS) given once reach all
//!   of them; the settings that durability and exactly-once rest on cannot be overridden.
//! - [`backoff`]: the one retry delay policy (exponential, capped, cancellable), and
//!   [`retry`]: whether an error is worth retrying at all ([`Retry`]).
//! - [`dir_lock`]: one process per spool or data directory.
//! - [`topology`]: the topic and group names the stages agree on.
//! - [`Shutdown`]: a cancellation token, created by the binary on SIGINT/SIGTERM and
//!   handed down to every stage and background task.
//! - [`LATENCY_BUCKETS`]: the histogram buckets of every `_seconds` metric, for whoever
//!   installs the metrics exporter (the binary; the tests).

pub mod backoff;
pub mod dir_lock;
pub mod kafka;
pub mod retry;
pub mod topology;

pub use backoff::Backoff;
pub use dir_lock::{DirLock, DirLockError};
pub use kafka::{
    start_consuming, Assignment, ClientRole, KafkaArgs, KafkaAuth, KafkaSetupError, RepeatedErrors,
    StageContext,
};
pub use retry::{kafka_code_retry, kafka_retry, Retry};

/// A stage's configuration from command-line `flags` (without the command name), as clap
/// builds it for the stage's own command: every flag not given takes that command's
/// default (or its `EXPOSURES_*` variable). `exposures up` configures its stages this
/// way, and so do the tests.
pub fn args_from_flags<T: clap::Args + clap::FromArgMatches>(
    flags: &[impl AsRef<str>],
) -> Result<T, clap::Error> {
    let command = T::augment_args(clap::Command::new("exposures").no_binary_name(true));
    let matches = command.try_get_matches_from(flags.iter().map(AsRef::as_ref))?;
    T::from_arg_matches(&matches)
}

/// Shutdown: cancelled once, observed everywhere (clones and child tokens share it).
pub type Shutdown = tokio_util::sync::CancellationToken;

/// Histogram buckets of every `*_seconds` metric of the pipeline: 1 ms to 30 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
