//! The Redshift warehouse, through the Redshift Data API (`aws-sdk-redshiftdata`): no
//! driver and no network path to the cluster; IAM decides who may load.
//!
//! In parts: [`target`] (which Redshift, from the `redshift://` URL), [`data_api`]
//! (statements, polling, results, failure classification), [`sql`] (the batch's
//! statements and COPY manifest), and here the load policy: skip what the ledger holds,
//! load the rest in one transaction, split a batch refused for its data.
//!
//! **A batch** is one `BatchExecuteStatement`, which Redshift runs as one transaction,
//! polled with `DescribeStatement` (backoff 50 ms → 2 s) until FINISHED, FAILED or
//! ABORTED ([`sql::Batch::statements`]):
//! 1. (before) files whose (key, etag) the ledger holds as loaded are skipped, their
//!    dead letters recorded (idempotent calls), and a COPY manifest naming the others —
//!    with `meta.content_length`, which COPY requires for Parquet — is written to the lake
//!    next to the data (`<prefix>/_manifests/`);
//! 2. `LOCK` on the ledger, so that what follows is decided after every other loader's
//!    commit (the snapshot is taken at the next statement, not at LOCK);
//! 3. a temp stage with the columns of the Parquet files in their order (COPY maps
//!    Parquet columns by position), JSON as text; `COPY … FORMAT AS PARQUET MANIFEST`;
//! 4. the batch's files the ledger does not hold as loaded, decided under the lock;
//! 5. the rows to insert: those of the files of 4, the first of each `event_id`, none
//!    whose `event_id` is already in `exposures` within the dedup window (Redshift has no
//!    unique constraints; the window bounds the scan); insert, JSON through `JSON_PARSE`;
//! 6. ledger rows with rows per file; a SELECT of them (`GetStatementResult`): a file
//!    without one was loaded meanwhile by another loader.
//!
//! **Failures.** The Data API has no savepoints, so a batch the warehouse refuses for
//! its data (COPY rejects a file, JSON does not parse) is split in halves, recursively,
//! until the refused file is alone; it is then loaded row by row (each row checked, the
//! refused ones into `exposures_rejected`), and only a file that cannot be read at all is
//! quarantined, with the statement errors and their `SYS_LOAD_ERROR_DETAIL` rows
//! (`STL_LOAD_ERRORS` does not exist on Serverless). Every other failure (throttling
//! after the SDK's retries, connections, S3 access of the IAM role, a timeout) fails the
//! whole batch, which the caller retries with backoff; nothing of it was committed, or
//! what was is in the ledger and skipped next time.

mod breaker;
mod data_api;
mod objects;
mod reload;
pub mod sql;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use schemas::ddl::Dialect;
use schemas::lake_layout::FileRecord;
use schemas::ledger;
use schemas::{EXPOSURES, TABLES};

use super::rows::{self, from_row};
use super::{BatchReport, FileOutcome, LoadError, LoaderLake};
use crate::aws::AwsOptions;
use crate::metrics as m;
use breaker::Breaker;
use data_api::{DataApi, RunFailure, StatementFailure};
use sql::{load_statements, manifest};
use target::RedshiftTarget;

/// The Data API refuses statements over 100 KB: each dead letter's raw row is cut to this
/// many bytes, so that a few fit one statement.
const MAX_RAW_ROW_BYTES: usize = 16 * 1024;

/// How to reach the Data API besides the target.
#[derive(Debug, Clone)]
pub struct RedshiftOptions {
    pub statement_timeout: Duration,
    /// Endpoint override, credentials.
    pub api: AwsOptions,
}

/// What COPY and the dedup of a load batch need.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// IAM role ARN Redshift assumes to read the lake, or `default` for the role
    /// attached to the cluster or namespace as default.
    pub iam_role: String,
    pub dedup_window: Duration,
}

pub struct Redshift {
    api: DataApi,
    schema: String,
    refusals: std::sync::Mutex<Breaker>,
    unavailable: super::Unavailable,
}

impl Redshift {
    pub async fn connect(url: &str, schema: &str, options: RedshiftOptions) -> Result<Redshift, LoadError> {
        let target = RedshiftTarget::parse(url)?;
        Ok(Redshift {
            api: DataApi::connect(target, options.api.clone(), options.statement_timeout).await,
            schema: schema.to_owned(),
            refusals: std::sync::Mutex::new(Breaker::default()),
            unavailable: super::Unavailable::default(),
        })
    }

    /// Runs a read-only query; every field as text.
    pub async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        self.api.query_text(sql).await
    }

    /// Loads `files` (module doc).
    pub async fn load_batch(
        &mut self,
        files: &[FileRecord],
        lakes: &mut LoaderLake,
        batch_id: &str,
        copy: &CopyOptions,
    ) -> Result<BatchReport, LoadError> {
        let mut report = BatchReport::default();
        let loaded = self.already_loaded(files).await?;
        // A key announced twice in one batch (a rewrite): the newest announcement wins.
        let mut newest: HashMap<&str, &FileRecord> = HashMap::new();
        for file in files {
            newest.insert(&file.key, file);
        }
        let mut pending: Vec<&FileRecord> = Vec::new();
        for file in files {
            let seen = !std::ptr::eq(newest[file.key.as_str()], file);
            if seen || loaded.contains(&(file.key.clone(), file.etag.clone())) {
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::AlreadyLoaded));
            } else if let Some(reason) = match file.table_def() {
                None => Some(super::unknown_table(file)),
                Some(table) => self.unavailable.reason(table),
            } {
                self.quarantine(file, batch_id, &reason).await?;
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::Quarantined { reason }));
            } else if !file.lake.starts_with("s3://") {
                let reason = format!("Redshift COPY reads only from S3; this file is in {}", file.lake);
                self.quarantine(file, batch_id, &reason).await?;
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::Quarantined { reason }));
            } else if !lakes.exists(file).await? {
                // COPY's manifest entries are mandatory: a missing object would fail its
                // batch on every retry. Waiting will not bring it back.
                let reason = format!(
                    "object {} is not in the lake (deleted, or never written)",
                    file.key
                );
                self.quarantine(file, batch_id, &reason).await?;
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::Quarantined { reason }));
            } else {
                pending.push(file);
            }
        }
        self.record_dead_letters(&pending, lakes).await?;
        let mut part = 0;
        // A transaction loads one table's files; and the Data API refuses statements over
        // 100 KB: each table's files are loaded in as many transactions as keep the ledger
        // statement under it.
        for table in TABLES {
            let of_table: Vec<&FileRecord> = pending
                .iter()
                .copied()
                .filter(|file| file.table_def() == Some(table))
                .collect();
            for group in sql::transactions(&of_table) {
                self.load_group(group, lakes, batch_id, copy, &mut part, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }

    /// Loads `files` in one transaction, or splits them when one of them is poison.
    async fn load_group(
        &self,
        files: &[&FileRecord],
        lakes: &mut LoaderLake,
        batch_id: &str,
        copy: &CopyOptions,
        part: &mut u32,
        report: &mut BatchReport,
    ) -> Result<(), LoadError> {
        let Some(first) = files.first() else {
            return Ok(());
        };
        *part += 1;
        let manifest = manifest(files);
        let manifest_url = lakes
            .put_beside(
                first,
                &format!("_manifests/{batch_id}-{part}.manifest"),
                manifest.into(),
            )
            .await?;
        let statements = load_statements(
            &self.schema,
            &manifest_url,
            &copy.iam_role,
            copy.dedup_window,
            batch_id,
            files,
        );
        let result_statement = statements.len();
        match self.api.run_batch(statements).await {
            Ok((id, _)) => self.record_loaded(&id, result_statement, files, report).await,
            Err(RunFailure::Failed(failure)) if failure.is_about_data(&sql::READ_THE_FILES) => {
                metrics::counter!(m::LOAD_DATA_ERRORS).increment(1);
                if let [file] = files {
                    return self
                        .load_row_by_row(file, &manifest_url, batch_id, copy, &failure, report)
                        .await;
                }
                tracing::warn!(files = files.len(), error = %failure.message, "batch refused for its data; splitting it to find the file");
                let (left, right) = files.split_at(files.len() / 2);
                Box::pin(self.load_group(left, lakes, batch_id, copy, part, report)).await?;
                Box::pin(self.load_group(right, lakes, batch_id, copy, part, report)).await
            }
            Err(failure) => Err(failure.into_error("loading a batch")),
        }
    }

    /// After a batch committed: the ledger rows it wrote, read back by its last statement
    /// (`result_statement`, 1-based), make the files' outcomes; the breaker closes.
    async fn record_loaded(
        &self,
        id: &str,
        result_statement: usize,
        files: &[&FileRecord],
        report: &mut BatchReport,
    ) -> Result<(), LoadError> {
        if let Ok(mut breaker) = self.refusals.lock() {
            *breaker = Breaker::default();
        }
        super::health::circuit_closed();
        let results: Vec<LoadedFile> =
            rows::decode(self.api.rows(&format!("{id}:{result_statement}")).await?)?;
        let mut loaded: HashMap<String, (u64, u64)> = HashMap::new();
        let of_exposures = sql::table_of(files) == &EXPOSURES;
        for result in results {
            loaded.insert(result.object_key, (result.rows_loaded, result.rows_rejected));
            if of_exposures {
                report.newest_exposed_at = report.newest_exposed_at.max(result.newest);
            }
        }
        for file in files {
            // No ledger row of this batch: under the ledger's lock the file was found
            // loaded by another loader, which committed first.
            let outcome = match loaded.get(&file.key) {
                Some(&(rows, rejected)) => FileOutcome::Loaded { rows, rejected },
                None => {
                    tracing::info!(key = %file.key, "loaded meanwhile by another loader; skipped");
                    FileOutcome::AlreadyLoaded
                }
            };
            report.outcomes.push((file.key.clone(), outcome));
        }
        Ok(())
    }

    /// A file Redshift refused (`refused`) is loaded row by row
    /// ([`sql::Batch::statements`], checked): the rows Redshift takes go in, the others to
    /// `exposures_rejected`. Only when even that is refused (the file cannot be read at
    /// all: a codec, a broken file) is it quarantined whole, with both reasons.
    async fn load_row_by_row(
        &self,
        file: &FileRecord,
        manifest_url: &str,
        batch_id: &str,
        copy: &CopyOptions,
        refused: &StatementFailure,
        report: &mut BatchReport,
    ) -> Result<(), LoadError> {
        tracing::warn!(key = %file.key, error = %refused.message, "file refused; loading it row by row");
        let statements = sql::Batch {
            schema: &self.schema,
            table: sql::table_of(&[file]),
            manifest_url,
            iam_role: &copy.iam_role,
            dedup_window: copy.dedup_window,
            batch_id,
            files: &[file],
        }
        .statements(true);
        let result_statement = statements.len();
        match self.api.run_batch(statements).await {
            Ok((id, _)) => self.record_loaded(&id, result_statement, &[file], report).await,
            Err(RunFailure::Failed(failure)) if failure.is_about_data(&sql::ROW_BY_ROW_READ_THE_FILES) => {
                let reason = format!(
                    "{} | row by row: {}",
                    self.explain(refused).await,
                    failure.message
                );
                self.trip_if_systematic(&refused.message)?;
                self.quarantine(file, batch_id, &reason).await?;
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::Quarantined { reason }));
                Ok(())
            }
            Err(failure) => Err(failure.into_error("loading a file row by row")),
        }
    }

    /// Counts single-file refusals with the same error; at three in a
    /// row it refuses to quarantine another, so the batch fails (and is retried, loudly:
    /// `exposures_load_failures_total`, the ExposuresLoadFailing alert) until someone
    /// fixes the cause. A load that succeeds resets it.
    fn trip_if_systematic(&self, message: &str) -> Result<(), LoadError> {
        let tripped = match self.refusals.lock() {
            Ok(mut breaker) => breaker.observe(message),
            Err(_) => Ok(()),
        };
        tripped.map_err(|reason| {
            super::health::circuit_open(&reason);
            LoadError::CircuitOpen(reason)
        })
    }

    /// Puts the dead letters the sink kept beside `files` into `exposures_rejected`, in
    /// calls each idempotent by itself ([`sql::dead_letter_calls`]), so a retried batch
    /// or a second loader records them once.
    async fn record_dead_letters(
        &self,
        files: &[&FileRecord],
        lakes: &mut LoaderLake,
    ) -> Result<(), LoadError> {
        for file in files.iter().filter(|file| file.rejected_key.is_some()) {
            let mut rows = lakes.dead_letters(file).await?;
            for row in &mut rows {
                row.raw_row = ledger::truncate_utf8(&row.raw_row, MAX_RAW_ROW_BYTES).to_owned();
            }
            for statements in sql::dead_letter_calls(&self.schema, &file.key, &mut rows) {
                self.api
                    .run_batch(statements)
                    .await
                    .map_err(|failure| failure.into_error("recording dead letters"))?;
            }
        }
        Ok(())
    }

    /// (key, etag) of the files the ledger holds as loaded.
    async fn already_loaded(&self, files: &[FileRecord]) -> Result<HashSet<(String, String)>, LoadError> {
        if files.is_empty() {
            return Ok(HashSet::new());
        }
        let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
        let mut loaded = HashSet::new();
        for query in sql::already_loaded(&self.schema, &keys) {
            let (id, _) = self
                .api
                .run_one(&query)
                .await
                .map_err(|failure| failure.into_error("reading the ledger"))?;
            let rows: Vec<LoadedKey> = rows::decode(self.api.rows(&id).await?)?;
            loaded.extend(rows.into_iter().map(|file| (file.object_key, file.etag)));
        }
        Ok(loaded)
    }

    pub(super) async fn quarantine(
        &self,
        file: &FileRecord,
        batch_id: &str,
        reason: &str,
    ) -> Result<(), LoadError> {
        let row = file.quarantined(batch_id, reason);
        self.api
            .run_one(&ledger::insert_ledger_row(Dialect::Redshift, &self.schema, &row))
            .await
            .map_err(|failure| failure.into_error("recording a quarantined file"))?;
        Ok(())
    }

    /// The failure's message with the `SYS_LOAD_ERROR_DETAIL` rows of its query.
    async fn explain(&self, failure: &StatementFailure) -> String {
        let Some(query_id) = failure.query_id else {
            return failure.message.clone();
        };
        let sql = format!(
            "SELECT TRIM(file_name), TRIM(column_name), error_code, TRIM(error_message) \
             FROM sys_load_error_detail WHERE query_id = {query_id} ORDER BY start_time LIMIT 3"
        );
        let details = match self.api.run_one(&sql).await {
            Ok((id, _)) => self.api.rows(&id).await.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(?error, "SYS_LOAD_ERROR_DETAIL not readable");
                Vec::new()
            }
        };
        let mut reason = failure.message.clone();
        for row in details {
            let fields: Vec<String> = row.into_iter().map(Option::unwrap_or_default).collect();
            if let [file, column, code, message] = fields.as_slice() {
                let column = if column.is_empty() {
                    String::new()
                } else {
                    format!(" column {column}")
                };
                reason.push_str(&format!(" | {file}{column}: {message} (code {code})"));
            }
        }
        reason
    }
}

/// A file a load batch loaded, as its last statement reads back the ledger.
struct LoadedFile {
    object_key: String,
    rows_loaded: u64,
    rows_rejected: u64,
    /// The newest row time the batch inserted.
    newest: Option<chrono::DateTime<chrono::Utc>>,
}

from_row!(
    "Redshift: files loaded by the batch",
    LoadedFile {
        object_key: get,
        rows_loaded: get,
        rows_rejected: get,
        newest: opt
    }
);

/// A (key, etag) the ledger holds as loaded.
struct LoadedKey {
    object_key: String,
    etag: String,
}

from_row!(
    "Redshift: files already loaded",
    LoadedKey {
        object_key: get,
        etag: get
    }
);
