//! The shared test harness, by concern; test modules import their fixtures only from
//! here. Real sockets and real protocols throughout, and waits on conditions with
//! deadlines — never sleeps as synchronisation.
//!
//! - `api`: the ingest API in-process on an ephemeral port, an HTTP client, and the
//!   seed's SDK-shaped callback bodies.
//! - `kafka`: a real Kafka-protocol broker (librdkafka's mock cluster, in-process) and
//!   readers of the records a topic holds.
//! - `lake`: the sink's surroundings (the mock cluster with a files topic, an S3-protocol
//!   server on 127.0.0.1), events to produce, the sink as a task, and readers of the
//!   Parquet files in the lake.
//! - `process`: the `exposures` binary as a child process (`up`, `dev-broker`, `sink`),
//!   and free ports to give it.
//! - `postgres`: a throwaway PostgreSQL cluster per test.
//! - `disk`: a small tmpfs that really fills up (ENOSPC).
//! - `redshift_emulator`: the Redshift Data API over that PostgreSQL, for the real SDK.
//! - `scenario`: a lake side and a warehouse (PostgreSQL or Redshift) with the loader,
//!   `status` and `reconcile` configured for them; one scenario run on both warehouses.
//!
//! Here, shared by all of them: the deadline every wait uses, test logging, reading this
//! process's metrics, skipping tests whose external tools are missing, and [`flags`]: a
//! stage's configuration parsed from its command-line flags, as a user gives it, so a
//! new flag with a default costs the tests nothing.

pub mod api;
pub mod disk;
pub mod kafka;
pub mod lake;
pub mod postgres;
pub mod process;
pub mod redshift_emulator;
pub mod scenario;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const DEADLINE: Duration = Duration::from_secs(60);

/// A stage's configuration from `flags` (without the command name); every flag not
/// given takes the command's default.
pub fn flags<T: clap::Args + clap::FromArgMatches>(flags: &[impl AsRef<str>]) -> T {
    stage::args_from_flags(flags).unwrap_or_else(|error| {
        let flags: Vec<&str> = flags.iter().map(AsRef::as_ref).collect();
        panic!("{flags:?}: {error}")
    })
}

/// Logs of the code under test, shown for failing tests (filter with RUST_LOG), and the
/// metrics recorder, so in-process stages report from their first event.
pub fn init_logging() {
    prometheus();
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// This test process's Prometheus recorder (the binary installs its own; in-process
/// stages report here), installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &stage::LATENCY_BUCKETS)
            .expect("buckets")
            .install_recorder()
            .expect("the test binary installs the only metrics recorder")
    })
}

/// What the in-process ingest API renders for `GET /metrics`.
pub fn render_metrics() -> ingest::RenderMetrics {
    let handle = prometheus();
    Arc::new(|| handle.render())
}

/// The value of an unlabelled counter or gauge in this process's Prometheus registry.
pub fn metric_value(name: &str) -> f64 {
    let prefix = format!("{name} ");
    prometheus()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Returns false (after explaining) when an external tool a test needs is missing,
/// unless `EXPOSURES_REQUIRE_TOOLS=1` (set by CI), which makes it a failure.
pub fn available(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    let required = std::env::var("EXPOSURES_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(!required, "{what} is missing: {install}");
    eprintln!("SKIPPED: {what} is missing. To run this test: {install}");
    false
}
