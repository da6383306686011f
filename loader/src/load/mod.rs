//! The load stage: file records from `exposures.files` → rows in the warehouse, exactly
//! once.
//!
//! **Mechanism.** A consumer group on the files topic with manual commits. Records are
//! gathered into a batch (up to `--batch-files`, or until `--batch-interval` after the
//! first file was written),
//! the batch is loaded in one warehouse transaction, and only after that commits are
//! the files-topic offsets committed.
//!
//! **Exactly once.** The sink may announce an object more than once (a crash between
//! announcing and committing) and this stage may load a batch more than once (a crash
//! between the warehouse commit and the offset commit). Both are harmless: the ledger
//! `exposures_loads` records every (object key, etag) loaded, in the same transaction as
//! its rows, and a file already in it is skipped; and rows are inserted only when their
//! `event_id` is new. Repeat exposures of a user are distinct events with distinct ids
//! and are all kept, as GrowthBook wants one row per view.
//!
//! **Failures.** Rows the warehouse refuses as data go, one by one, to the dead-letter
//! table `exposures_rejected` while the rest of their file loads (PostgreSQL; Redshift
//! still quarantines the file). A file that cannot be read is quarantined whole —
//! ledger status `quarantined` with the reason, a metric, a log line — and the rest of
//! its batch loads; it is never retried. A warehouse or lake outage fails
//! the batch as a whole; it is retried with backoff until it succeeds.
//!
//! Warehouses: Redshift through the Data API ([`redshift`]; poison files are found by
//! splitting the batch) and PostgreSQL ([`postgres`]; per-file savepoints).
//!
//! Proven by `tests/pipeline/load.rs`, against PostgreSQL and against a Data API
//! emulator (`tests/pipeline/harness/redshift_emulator.rs`) driven by the real SDK.

pub mod health;
mod loader_lake;
mod objects;
pub mod postgres;
pub mod redshift;
mod rejected;
pub use rejected::ReloadReport;
mod rows;
mod warehouse;

pub use loader_lake::LoaderLake;
use objects::{check_table, objects_to_make, unknown_table, Unavailable};
pub(crate) use rows::{from_row, Count, FromRow, Row};
pub(crate) use warehouse::Warehouse;
pub use warehouse::{RedshiftArgs, WarehouseArgs};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use schemas::lake_layout::FileRecord;
use stage::{Assignment, Backoff, ClientRole, KafkaArgs, KafkaSetupError, Retry, Shutdown};

use crate::lake::{LakeArgs, LakeError};
use crate::metrics as m;

#[derive(Debug, Clone, Args)]
pub struct LoadConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic the sink announces files on.
    #[arg(long, env = "EXPOSURES_FILES_TOPIC", default_value = stage::topology::FILES_TOPIC)]
    pub files_topic: String,

    /// Consumer group of the loaders.
    #[arg(long, env = "EXPOSURES_LOAD_GROUP", default_value = stage::topology::LOAD_GROUP)]
    pub group: String,

    /// How the loader gets the files topic's partitions: `group` (Kafka consumer group;
    /// for Kafka clusters) or `all` (every partition from the group's committed offsets,
    /// one loader per group; for the embedded broker of `dev-broker`).
    #[arg(long, env = "EXPOSURES_LOAD_ASSIGNMENT", value_enum, default_value_t = Assignment::Group)]
    pub assignment: Assignment,

    #[command(flatten)]
    pub lake: LakeArgs,

    #[command(flatten)]
    pub warehouse: WarehouseArgs,

    #[command(flatten)]
    pub batches: BatchLimits,

    /// Redshift: IAM role ARN that COPY assumes to read the lake; `default` uses the
    /// role set as default on the cluster or namespace.
    #[arg(long, env = "EXPOSURES_IAM_ROLE", default_value = "default")]
    pub iam_role: String,

    /// Redshift: how far apart (in received_at) two copies of an event_id may be and
    /// still be deduplicated. Bounds the scan of `exposures` per batch.
    #[arg(long, env = "EXPOSURES_DEDUP_WINDOW", default_value = "7d", value_parser = humantime::parse_duration)]
    pub dedup_window: Duration,

    #[command(flatten)]
    pub redshift: RedshiftArgs,
}

/// How files are gathered into batches (shared by `load` and `up`).
#[derive(Debug, Clone, Args)]
pub struct BatchLimits {
    /// Most files loaded in one transaction.
    #[arg(long, env = "EXPOSURES_BATCH_FILES", default_value_t = 100)]
    pub batch_files: usize,

    /// How long after its first file was written a batch waits for more files. A loader
    /// catching up (its files written longer ago than this) loads what has arrived at once.
    /// Default: 10 s for `load`; 2 s under `up`, where rows should show soon.
    #[arg(long, env = "EXPOSURES_BATCH_INTERVAL", value_parser = humantime::parse_duration)]
    pub batch_interval: Option<Duration>,
}

impl BatchLimits {
    /// `load`'s default `--batch-interval`: batches of many files, fewer transactions.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

    /// The batch interval given, or the default.
    pub fn interval(&self) -> Duration {
        self.batch_interval.unwrap_or(Self::DEFAULT_INTERVAL)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("warehouse: {}", with_cause(.0))]
    Warehouse(#[source] tokio_postgres::Error),
    #[error("bad PostgreSQL warehouse URL: {0}.\n  Use postgres://USER:PASSWORD@HOST:PORT/DATABASE")]
    BadPostgresUrl(#[source] tokio_postgres::Error),
    #[error("Redshift Data API, {doing}: {message}")]
    DataApi {
        doing: String,
        message: String,
        retry: Retry,
    },
    /// The circuit breaker over single-file refusals tripped (see `redshift`).
    #[error("{0}")]
    CircuitOpen(String),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("bad Redshift warehouse URL: {why}.\n  Use {help}")]
    BadWarehouseUrl { why: String, help: &'static str },
    #[error(
        "table {table} exists with other columns than exposures writes.\n  found:    {found:?}\n  expected: {expected:?}\n\
         Migrate it (see `exposures ddl`) or load into another schema with --schema."
    )]
    SchemaMismatch {
        table: String,
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error(
        "unsupported warehouse URL '{0}': use redshift://… or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    UnsupportedWarehouse(String),
    #[error(
        "no warehouse given: pass --warehouse (or EXPOSURES_WAREHOUSE) as redshift://… or \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    NoWarehouse,
    #[error(transparent)]
    KafkaSetup(#[from] KafkaSetupError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("unexpected warehouse answer to {query}: row {row}, column {column}: {why}")]
    Decode {
        query: &'static str,
        row: usize,
        column: &'static str,
        why: String,
    },
}

impl LoadError {
    /// Whether the batch (or the connection) is worth trying again: an outage is; bad
    /// configuration, a refused privilege, a table of the wrong shape or an answer that
    /// cannot be read are not, and end the loader with a non-zero exit.
    pub fn retry(&self) -> Retry {
        match self {
            LoadError::Warehouse(error) => postgres::retry_of(error),
            LoadError::DataApi { retry, .. } => *retry,
            // Failing loudly (the alert, /readyz) until someone fixes the cause; a
            // restart would only quarantine more files.
            LoadError::CircuitOpen(_) => Retry::Transient,
            LoadError::Lake(error) => error.retry(),
            LoadError::Kafka(error) => stage::kafka_retry(error),
            LoadError::BadPostgresUrl(_)
            | LoadError::BadWarehouseUrl { .. }
            | LoadError::SchemaMismatch { .. }
            | LoadError::UnsupportedWarehouse(_)
            | LoadError::NoWarehouse
            | LoadError::Unsupported(_)
            | LoadError::Decode { .. }
            | LoadError::KafkaSetup(_) => Retry::Permanent,
        }
    }
}

/// tokio-postgres says "error connecting to server" and keeps the why in its source.
fn with_cause(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// What happened to one file of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// `rows` inserted; `rejected` refused by the warehouse, now in `exposures_rejected`.
    Loaded {
        rows: u64,
        rejected: u64,
    },
    AlreadyLoaded,
    Quarantined {
        reason: String,
    },
}

#[derive(Debug, Default)]
pub struct BatchReport {
    pub outcomes: Vec<(String, FileOutcome)>,
    pub newest_exposed_at: Option<DateTime<Utc>>,
}

/// Runs the loader until `shutdown` is cancelled (after the batch in progress).
pub async fn run(config: LoadConfig, shutdown: Shutdown) -> Result<(), LoadError> {
    config.warehouse.url()?;
    // Created first, so a wrong Kafka setting fails at once rather than after the
    // warehouse is up; it joins the group only once the warehouse is ready.
    let consumer: Arc<StreamConsumer<stage::StageContext>> = Arc::new(config.kafka.create(
        ClientRole::Consumer {
            group: &config.group,
            client_id: "exposures-load",
        },
        &[],
    )?);
    let Some(mut warehouse) = connect_when_available(&config, &shutdown).await? else {
        return Ok(());
    };
    stage::start_consuming(&consumer, &config.files_topic, config.assignment, &shutdown).await?;
    let mut lakes = LoaderLake::new(config.lake.open().await?);
    let copy = redshift::CopyOptions {
        iam_role: config.iam_role.clone(),
        dedup_window: config.dedup_window,
    };
    tracing::info!(files_topic = %config.files_topic, schema = %config.warehouse.schema, "loader started");
    // The newest exposed_at loaded so far: freshness keeps growing while nothing loads
    // (nothing arrives, or every batch fails), so ExposuresWarehouseStale can fire.
    // Seeded once from the table (each batch then reports only what it inserted).
    let mut newest_loaded: Option<DateTime<Utc>> = match warehouse
        .newest_exposed_at(&config.warehouse.schema)
        .await
    {
        Ok(newest) => newest,
        Err(error) => {
            tracing::warn!(%error, "newest exposed_at not read; the freshness gauge starts with the first load");
            None
        }
    };
    let mut freshness_tick = tokio::time::interval(FRESHNESS_INTERVAL);
    let mut consumer_errors = stage::RepeatedErrors::default();
    loop {
        // Gather a batch: the first record waits indefinitely, the rest until the batch
        // interval after the first file was written (see `batch_deadline`).
        let mut files: Vec<FileRecord> = Vec::new();
        let mut offsets: HashMap<i32, i64> = HashMap::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        while files.len() < config.batches.batch_files {
            let wait_until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                // A record already received is taken before the deadline is looked at, so a
                // batch past its deadline still takes every file that has arrived.
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                message = consumer.recv() => match message {
                    Ok(message) => {
                        consumer_errors.clear();
                        offsets.insert(message.partition(), message.offset() + 1);
                        let file = message
                            .payload()
                            .ok_or_else(|| "empty record".to_owned())
                            .and_then(|payload| {
                                serde_json::from_slice::<FileRecord>(payload).map_err(|e| e.to_string())
                            })
                            .and_then(|file| file.check().map(|()| file).map_err(|e| e.to_string()));
                        match file {
                            Ok(file) => {
                                deadline.get_or_insert_with(|| {
                                    batch_deadline(file.written_at, config.batches.interval())
                                });
                                files.push(file)
                            }
                            Err(reason) => {
                                tracing::error!(partition = message.partition(), offset = message.offset(), %reason, "not a valid file record; skipping it");
                                metrics::counter!(m::LOAD_INVALID_RECORDS).increment(1);
                            }
                        }
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + config.batches.interval());
                    }
                    Err(error) => {
                        if consumer_errors.worth_logging(&error) {
                            tracing::warn!(%error, "Kafka consumer error (repeats are logged once a minute)");
                        }
                    }
                },
                _ = tokio::time::sleep_until(wait_until) => break,
                _ = freshness_tick.tick() => publish_freshness(newest_loaded),
            }
        }
        metrics::gauge!(m::LOAD_PENDING_FILES).set(files.len() as f64);
        if !files.is_empty() {
            let batch_id = uuid::Uuid::now_v7().to_string();
            let started = Instant::now();
            let mut backoff = Backoff::for_outages();
            let report = loop {
                let attempt = async {
                    if warehouse.is_closed() {
                        warehouse = Warehouse::connect(&config.warehouse, &config.redshift).await?;
                    }
                    warehouse.load_batch(&files, &mut lakes, &batch_id, &copy).await
                };
                match attempt.await {
                    Ok(report) => break report,
                    // Offsets stay uncommitted: the next run loads the batch again.
                    Err(error) if error.retry().is_permanent() => return Err(error),
                    Err(error) => {
                        tracing::warn!(%error, "batch not loaded; retrying");
                        metrics::counter!(m::LOAD_FAILURES).increment(1);
                        publish_freshness(newest_loaded);
                        if !backoff.wait(&shutdown).await {
                            return Ok(()); // shutting down; the batch is re-read next time
                        }
                    }
                }
            };
            record(&report, started.elapsed());
            newest_loaded = newest_loaded.max(report.newest_exposed_at);
            publish_freshness(newest_loaded);
        }
        let mut commit = TopicPartitionList::new();
        for (partition, next) in &offsets {
            commit.add_partition_offset(&config.files_topic, *partition, Offset::Offset(*next))?;
        }
        if commit.count() > 0 {
            if let Err(error) = stage::kafka::commit(&consumer, commit).await {
                // The ledger makes the re-delivery that follows harmless.
                tracing::warn!(%error, "files-topic offset commit failed");
            }
        }
        metrics::gauge!(m::LOAD_PENDING_FILES).set(0.0);
    }
}

/// When a batch whose first file was written at `written_at` stops waiting for more: the
/// batch interval after that file was written. A loader that is keeping up waits about
/// the interval, gathering files; one that is catching up (its files were written long
/// ago, e.g. while it loaded the previous batch) loads what has arrived at once instead of
/// waiting an interval per batch: that wait was 10 of the 40 s that 1,000,000 events took
/// to become queryable through `up`. Never later than the interval from now, whatever the
/// sink's clock says.
fn batch_deadline(written_at: DateTime<Utc>, interval: Duration) -> tokio::time::Instant {
    let age = (Utc::now() - written_at).to_std().unwrap_or_default();
    tokio::time::Instant::now() + interval.saturating_sub(age)
}

/// `exposures reload-rejected`: tries the rows of `exposures_rejected` again (see
/// [`postgres::Postgres::reload_rejected`]).
pub async fn reload_rejected(
    warehouse: &WarehouseArgs,
    redshift: &RedshiftArgs,
) -> Result<ReloadReport, LoadError> {
    match Warehouse::connect(warehouse, redshift).await? {
        Warehouse::Postgres(mut postgres) => {
            postgres.ensure_objects().await?;
            postgres.reload_rejected().await
        }
        Warehouse::Redshift(redshift) => {
            redshift.ensure_objects().await?;
            redshift.reload_rejected().await
        }
    }
}

/// Connects and prepares the warehouse, waiting (with backoff) while it is unreachable;
/// `None` if shutdown comes first. A permanent error (a table with the wrong columns, a
/// refused login or privilege) is returned at once: waiting will not fix it.
async fn connect_when_available(
    config: &LoadConfig,
    shutdown: &Shutdown,
) -> Result<Option<Warehouse>, LoadError> {
    let mut backoff = Backoff::for_outages();
    loop {
        let attempt = async {
            let warehouse = Warehouse::connect(&config.warehouse, &config.redshift).await?;
            warehouse.ensure_objects().await?;
            Ok::<_, LoadError>(warehouse)
        };
        match attempt.await {
            Ok(warehouse) => return Ok(Some(warehouse)),
            Err(error) if error.retry().is_permanent() => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "warehouse unavailable; retrying");
                metrics::counter!(m::LOAD_FAILURES).increment(1);
                if !backoff.wait(shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

fn record(report: &BatchReport, took: Duration) {
    metrics::histogram!(m::LOAD_BATCH_DURATION).record(took.as_secs_f64());
    for (key, outcome) in &report.outcomes {
        match outcome {
            FileOutcome::Loaded { rows, rejected } => {
                metrics::counter!(m::LOAD_ROWS_LOADED).increment(*rows);
                metrics::counter!(m::LOAD_FILES, "outcome" => "loaded").increment(1);
                if *rejected > 0 {
                    tracing::error!(%key, rejected, "rows refused by the warehouse; see exposures_rejected");
                    metrics::counter!(m::LOAD_ROWS_REJECTED).increment(*rejected);
                }
            }
            FileOutcome::AlreadyLoaded => {
                metrics::counter!(m::LOAD_FILES, "outcome" => "already_loaded").increment(1);
            }
            FileOutcome::Quarantined { reason } => {
                tracing::error!(%key, %reason, "file quarantined: it will not be retried; see exposures_loads");
                metrics::counter!(m::LOAD_FILES, "outcome" => "quarantined").increment(1);
            }
        }
    }
    tracing::info!(files = report.outcomes.len(), took = ?took, "batch loaded");
}

/// How often the freshness gauge is brought up to date between batches.
const FRESHNESS_INTERVAL: Duration = Duration::from_secs(15);

/// Sets `exposures_load_freshness_seconds` to the age of the newest exposure loaded.
fn publish_freshness(newest_loaded: Option<DateTime<Utc>>) {
    if let Some(newest) = newest_loaded {
        let freshness = (Utc::now() - newest).num_milliseconds() as f64 / 1000.0;
        metrics::gauge!(m::LOAD_FRESHNESS).set(freshness);
    }
}

#[cfg(test)]
mod tests;
