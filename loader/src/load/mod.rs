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
pub mod postgres;
pub mod redshift;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Args;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use schemas::lake_layout::{DeadLetter, FileRecord};
use schemas::ledger::RejectedRow;
use stage::{Assignment, Backoff, ClientRole, KafkaArgs, KafkaSetupError, Shutdown};

use crate::lake::{AwsOptions, Lake, LakeArgs, LakeError};
use crate::metrics as m;

#[derive(Debug, Clone, Args)]
pub struct LoadConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic the sink announces files on.
    #[arg(long, env = "EXPOSURES_FILES_TOPIC", default_value = "exposures.files")]
    pub files_topic: String,

    /// Consumer group of the loaders.
    #[arg(long, env = "EXPOSURES_LOAD_GROUP", default_value = "exposures-load")]
    pub group: String,

    /// How the loader gets the files topic's partitions: `group` (Kafka consumer group;
    /// for Kafka clusters) or `all` (every partition from the group's committed offsets,
    /// one loader per group; for the embedded broker of `dev-broker`).
    #[arg(long, env = "EXPOSURES_LOAD_ASSIGNMENT", value_enum, default_value_t = Assignment::Group)]
    pub assignment: Assignment,

    /// The lake the sink writes (its `--lake`): s3://BUCKET[/PREFIX] or file:///DIR. Only
    /// files announced in it are read; a record naming another bucket or prefix is
    /// quarantined in the ledger with the reason (the files topic is data, not orders).
    #[arg(long, env = "EXPOSURES_LAKE")]
    pub lake: String,

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

    #[command(flatten)]
    pub s3: LakeArgs,
}

/// Which warehouse and schema: shared by `load`, `status` and `up`.
#[derive(Debug, Clone, Args)]
pub struct WarehouseArgs {
    /// The warehouse. Redshift through the Data API:
    /// redshift://ENDPOINT/DATABASE[?secret_arn=ARN] with ENDPOINT as the console shows it
    /// (or redshift:///DATABASE?workgroup=NAME|cluster=ID&region=R; a provisioned cluster
    /// also needs db_user=NAME or secret_arn=ARN). PostgreSQL:
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE — put a password in the environment
    /// (EXPOSURES_WAREHOUSE), not on the command line.
    #[arg(long, env = "EXPOSURES_WAREHOUSE", hide_env_values = true)]
    pub warehouse: Option<String>,

    /// Warehouse schema of the exposures table, ledger and views (created if missing).
    #[arg(long, env = "EXPOSURES_SCHEMA", default_value = "public")]
    pub schema: String,
}

impl WarehouseArgs {
    /// The warehouse URL, or an error that says how to give one.
    pub fn url(&self) -> Result<&str, LoadError> {
        self.warehouse.as_deref().ok_or(LoadError::NoWarehouse)
    }

    /// Checks the URL's form without connecting, so that a command refuses a typo before
    /// it starts anything: a PostgreSQL URL must parse, a Redshift URL must name its
    /// cluster or workgroup, anything else is refused.
    pub fn check(&self) -> Result<(), LoadError> {
        let url = self.url()?;
        match WarehouseKind::of(url)? {
            WarehouseKind::Postgres => url
                .parse::<tokio_postgres::Config>()
                .map(drop)
                .map_err(LoadError::Warehouse),
            WarehouseKind::Redshift => redshift::target::RedshiftTarget::parse(url).map(drop),
        }
    }
}

/// Which warehouse a `--warehouse` URL names, by its scheme.
enum WarehouseKind {
    Postgres,
    Redshift,
}

impl WarehouseKind {
    fn of(url: &str) -> Result<WarehouseKind, LoadError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(WarehouseKind::Postgres)
        } else if url.starts_with("redshift://") {
            Ok(WarehouseKind::Redshift)
        } else {
            Err(LoadError::UnsupportedWarehouse(url.to_owned()))
        }
    }
}

/// How the Data API is reached: shared by `load` and `status`.
#[derive(Debug, Clone, Args)]
pub struct RedshiftArgs {
    /// Redshift: a statement running longer is cancelled (and a load batch retried).
    #[arg(long, env = "EXPOSURES_STATEMENT_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub statement_timeout: Duration,

    /// Redshift Data API endpoint override (a VPC endpoint, or a test emulator).
    #[arg(long, env = "EXPOSURES_REDSHIFT_ENDPOINT")]
    pub redshift_endpoint: Option<String>,

    /// Static credentials for the Data API instead of the AWS chain (tests).
    #[arg(skip)]
    pub redshift_static_credentials: Option<(String, String)>,
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
    #[error("Redshift Data API: {0}")]
    DataApi(String),
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
}

/// tokio-postgres says "error connecting to server" and keeps the why in its source.
fn with_cause(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Refuses an `exposures` table whose columns (as `found` describes them) are not
/// `expected`: loading into it would fail or put values in the wrong columns.
fn require_columns(schema: &str, found: Vec<String>, expected: Vec<String>) -> Result<(), LoadError> {
    if found == expected {
        return Ok(());
    }
    Err(LoadError::SchemaMismatch {
        table: format!("{schema}.exposures"),
        found,
        expected,
    })
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

/// The loader's lake: the one `--lake` names. Every read of a file record's objects goes
/// through [`Lakes::admit`], so a record cannot make the loader read (or, on Redshift,
/// write manifests) anywhere else.
pub struct Lakes {
    lake: Lake,
}

impl Lakes {
    pub fn new(lake: Lake) -> Lakes {
        Lakes { lake }
    }

    /// The object a file record names.
    pub async fn get(&mut self, file: &FileRecord) -> Result<Bytes, LakeError> {
        self.get_key(file, &file.key).await
    }

    /// Whether the object a file record names exists.
    pub async fn exists(&mut self, file: &FileRecord) -> Result<bool, LakeError> {
        self.lake_of(file)?.exists(&file.key).await
    }

    /// Refuses a record that names another lake, bucket or prefix than the loader's.
    pub fn admit(&self, file: &FileRecord) -> Result<(), LakeError> {
        let lake = self.lake.describe();
        let prefix = self.lake.key("");
        let foreign = |what: String| {
            Err(LakeError::Foreign {
                what,
                lake: lake.clone(),
            })
        };
        if file.lake != lake {
            return foreign(format!("lake {}", file.lake));
        }
        if file.bucket != self.lake.bucket() {
            return foreign(format!("bucket {}", file.bucket));
        }
        for key in std::iter::once(&file.key).chain(&file.rejected_key) {
            if !key.starts_with(&prefix) {
                return foreign(format!("object key {key}"));
            }
        }
        Ok(())
    }

    fn lake_of(&self, file: &FileRecord) -> Result<&Lake, LakeError> {
        self.admit(file)?;
        Ok(&self.lake)
    }

    /// Object `key` of the lake `file` is in.
    pub async fn get_key(&mut self, file: &FileRecord, key: &str) -> Result<Bytes, LakeError> {
        self.lake_of(file)?.get(key).await
    }

    /// The dead letters the sink kept beside `file` (records of its offset range that are
    /// not loadable exposures), as rows for `exposures_rejected`.
    pub async fn dead_letters(&mut self, file: &FileRecord) -> Result<Vec<RejectedRow>, LakeError> {
        let Some(key) = &file.rejected_key else {
            return Ok(Vec::new());
        };
        let body = match self.get_key(file, key).await {
            Ok(body) => body,
            Err(LakeError::Missing(key)) => {
                tracing::error!(%key, "the dead letters of a file are gone from the lake; they cannot be recorded");
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        Ok(DeadLetter::lines_of(&body)
            .map(|(line, letter)| match letter {
                Ok(letter) => RejectedRow {
                    event_id: serde_json::from_str::<serde_json::Value>(&letter.payload)
                        .ok()
                        .and_then(|value| value.get("event_id")?.as_str().map(str::to_owned)),
                    object_key: file.key.clone(),
                    kafka_partition: letter.kafka_partition,
                    kafka_offset: letter.kafka_offset,
                    raw_row: letter.payload,
                    reason: letter.reason,
                },
                Err(error) => RejectedRow {
                    event_id: None,
                    object_key: file.key.clone(),
                    kafka_partition: file.partition,
                    kafka_offset: -1,
                    raw_row: String::from_utf8_lossy(line).into_owned(),
                    reason: format!("unreadable dead letter in {key}: {error}"),
                },
            })
            .collect())
    }

    /// Writes `body` at `relative` under the lake's prefix (next to the data of
    /// `file`); returns its URL.
    pub async fn put_beside(
        &mut self,
        file: &FileRecord,
        relative: &str,
        body: Bytes,
    ) -> Result<String, LakeError> {
        let lake = self.lake_of(file)?;
        let key = lake.key(relative);
        lake.put(&key, body).await?;
        Ok(format!("s3://{}/{key}", lake.bucket()))
    }
}

/// The warehouse a loader writes to, by URL scheme.
pub(crate) enum Warehouse {
    Postgres(postgres::Postgres),
    Redshift(redshift::Redshift),
}

impl Warehouse {
    /// Connects (PostgreSQL) or sets up the client (Redshift); does not create objects.
    pub(crate) async fn connect(
        warehouse: &WarehouseArgs,
        redshift: &RedshiftArgs,
    ) -> Result<Warehouse, LoadError> {
        let url = warehouse.url()?;
        match WarehouseKind::of(url)? {
            WarehouseKind::Postgres => Ok(Warehouse::Postgres(
                postgres::Postgres::connect(url, &warehouse.schema).await?,
            )),
            WarehouseKind::Redshift => {
                let options = redshift::RedshiftOptions {
                    statement_timeout: redshift.statement_timeout,
                    api: AwsOptions {
                        endpoint: redshift.redshift_endpoint.clone(),
                        region: None,
                        static_credentials: redshift.redshift_static_credentials.clone(),
                    },
                };
                Ok(Warehouse::Redshift(
                    redshift::Redshift::connect(url, &warehouse.schema, options).await?,
                ))
            }
        }
    }

    async fn ensure_objects(&self) -> Result<(), LoadError> {
        match self {
            Warehouse::Postgres(warehouse) => warehouse.ensure_objects().await,
            Warehouse::Redshift(warehouse) => warehouse.ensure_objects().await,
        }
    }

    /// The SQL dialect this warehouse speaks.
    pub(crate) fn dialect(&self) -> schemas::ddl::Dialect {
        match self {
            Warehouse::Postgres(_) => schemas::ddl::Dialect::Postgres,
            Warehouse::Redshift(_) => schemas::ddl::Dialect::Redshift,
        }
    }

    /// Runs a read-only query; every field as text.
    pub(crate) async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        match self {
            Warehouse::Postgres(warehouse) => warehouse.query_text(sql).await,
            Warehouse::Redshift(warehouse) => warehouse.query_text(sql).await,
        }
    }

    /// Whether the connection is gone and must be made again before the next batch.
    fn is_closed(&self) -> bool {
        match self {
            Warehouse::Postgres(warehouse) => warehouse.is_closed(),
            Warehouse::Redshift(_) => false, // stateless HTTP calls
        }
    }

    async fn load_batch(
        &mut self,
        files: &[FileRecord],
        lakes: &mut Lakes,
        batch_id: &str,
        copy: &redshift::CopyOptions,
    ) -> Result<BatchReport, LoadError> {
        // Records naming another lake are set aside before anything else looks at the
        // batch: one reusing a real file's key must not make the real file look seen.
        let mut admitted = Vec::new();
        let mut foreign = Vec::new();
        for file in files {
            match lakes.admit(file) {
                Ok(()) => admitted.push(file.clone()),
                Err(refusal) => foreign.push((file, refusal.to_string())),
            }
        }
        let mut report = match self {
            Warehouse::Postgres(warehouse) => warehouse.load_batch(&admitted, lakes, batch_id).await?,
            Warehouse::Redshift(warehouse) => warehouse.load_batch(&admitted, lakes, batch_id, copy).await?,
        };
        for (file, reason) in foreign {
            tracing::error!(key = %file.key, lake = %file.lake, %reason, "a file record names another lake; quarantined unread");
            match self {
                Warehouse::Postgres(warehouse) => warehouse.quarantine(file, batch_id, &reason).await?,
                Warehouse::Redshift(warehouse) => warehouse.quarantine(file, batch_id, &reason).await?,
            }
            report
                .outcomes
                .push((file.key.clone(), FileOutcome::Quarantined { reason }));
        }
        Ok(report)
    }
}

/// Runs the loader until `shutdown` is cancelled (after the batch in progress).
pub async fn run(config: LoadConfig, shutdown: Shutdown) -> Result<(), LoadError> {
    config.warehouse.url()?;
    // Created first, so a wrong Kafka setting fails at once rather than after the
    // warehouse is up; it joins the group only once the warehouse is ready.
    let consumer: Arc<StreamConsumer> = Arc::new(config.kafka.create(
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
    let mut lakes = Lakes::new(Lake::open(&config.lake, &config.s3.aws_options()).await?);
    let copy = redshift::CopyOptions {
        iam_role: config.iam_role.clone(),
        dedup_window: config.dedup_window,
    };
    tracing::info!(files_topic = %config.files_topic, schema = %config.warehouse.schema, "loader started");
    // The newest exposed_at loaded so far: freshness keeps growing while nothing loads
    // (nothing arrives, or every batch fails), so ExposuresWarehouseStale can fire.
    let mut newest_loaded: Option<DateTime<Utc>> = None;
    let mut freshness_tick = tokio::time::interval(FRESHNESS_INTERVAL);
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
                    Err(error) => tracing::warn!(%error, "Kafka consumer error"),
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
) -> Result<postgres::ReloadReport, LoadError> {
    match Warehouse::connect(warehouse, redshift).await? {
        Warehouse::Postgres(mut postgres) => {
            postgres.ensure_objects().await?;
            postgres.reload_rejected().await
        }
        Warehouse::Redshift(_) => Err(LoadError::DataApi(
            "reload-rejected is built for PostgreSQL only so far: on Redshift, `exposures status` \
             lists the rows of exposures_rejected; reload a fixed row with INSERT … SELECT yourself"
                .into(),
        )),
    }
}

/// Connects and prepares the warehouse, waiting (with backoff) while it is unreachable;
/// `None` if shutdown comes first. A table with the wrong columns is an error at once:
/// waiting will not fix it.
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
            Err(
                error @ (LoadError::SchemaMismatch { .. }
                | LoadError::BadWarehouseUrl { .. }
                | LoadError::UnsupportedWarehouse(_)
                | LoadError::NoWarehouse),
            ) => return Err(error),
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
mod tests {
    use super::*;

    #[test]
    fn a_batch_waits_the_interval_from_when_its_first_file_was_written() {
        let interval = Duration::from_secs(10);
        let now = tokio::time::Instant::now();
        // Just written: about the whole interval.
        let fresh = batch_deadline(Utc::now(), interval);
        assert!(fresh >= now + Duration::from_secs(9) && fresh <= now + interval + Duration::from_secs(1));
        // Written 4 s ago: about 6 s left.
        let older = batch_deadline(Utc::now() - chrono::Duration::seconds(4), interval);
        assert!(older >= now + Duration::from_secs(5) && older <= now + Duration::from_secs(7));
        // Written long ago (the loader is behind): no wait.
        let behind = batch_deadline(Utc::now() - chrono::Duration::minutes(5), interval);
        assert!(behind <= tokio::time::Instant::now());
        // Dated in the future by a skewed clock: never more than the interval.
        let skewed = batch_deadline(Utc::now() + chrono::Duration::minutes(5), interval);
        assert!(skewed <= tokio::time::Instant::now() + interval);
    }
}
