//! The Redshift warehouse, through the Redshift Data API (`aws-sdk-redshiftdata`): no
//! driver and no network path to the cluster; IAM decides who may load.
//!
//! **A batch** is one `BatchExecuteStatement`, which Redshift runs as one transaction,
//! polled with `DescribeStatement` (backoff 50 ms → 2 s) until FINISHED, FAILED or
//! ABORTED:
//! 1. (before) files whose (key, etag) the ledger holds as loaded are skipped, and a COPY
//!    manifest naming the others — with `meta.content_length`, which COPY requires for
//!    Parquet — is written to the lake next to the data (`<prefix>/_manifests/`);
//! 2. a temp stage with the columns of the Parquet files in their order (COPY maps
//!    Parquet columns by position), JSON as text;
//! 3. `COPY … FORMAT AS PARQUET MANIFEST` with the IAM role;
//! 4. the rows to insert: the first of each `event_id` in the stage, and none whose
//!    `event_id` is already in `exposures` with a `received_at` within the dedup window of
//!    the stage's (Redshift has no unique constraints; the window bounds the scan);
//! 5. insert, JSON through `JSON_PARSE` into SUPER; 6. ledger rows with rows per file;
//! 7. a SELECT of those ledger rows, read with `GetStatementResult`.
//!
//! **Failures.** The Data API has no savepoints, so a batch the warehouse refuses for
//! its data (COPY rejects a file, JSON does not parse) is split in halves, recursively,
//! until the poison file is alone; it is quarantined with the reason — the statement
//! error and its `SYS_LOAD_ERROR_DETAIL` rows (`STL_LOAD_ERRORS` does not exist on
//! Serverless) — and the others load. Every other failure (throttling after the SDK's
//! retries, connections, S3 access of the IAM role, a timeout) fails the whole batch,
//! which the caller retries with backoff; nothing of it was committed, or what was is in
//! the ledger and skipped next time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_redshiftdata::error::DisplayErrorContext;
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::types::{Field, StatementStatusString, StatusString};
use chrono::{DateTime, NaiveDateTime, Utc};
use schemas::ddl::{self, Dialect};
use schemas::{ColumnType, COLUMNS};

use super::{BatchReport, FileOutcome, Lakes, LoadError};
use crate::aws::{self, AwsOptions};
use crate::files::FileRecord;
use crate::metrics as m;

const STAGE: &str = "exposures_stage";
const NEW_ROWS: &str = "exposures_new";
/// The ledger's `reason` is VARCHAR(1024); leave room for multi-byte characters.
const MAX_REASON_BYTES: usize = 1000;

/// Which Redshift to load, from a `redshift://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedshiftTarget {
    pub compute: Compute,
    pub database: String,
    pub secret_arn: Option<String>,
    pub db_user: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compute {
    /// Redshift Serverless.
    Workgroup(String),
    /// A provisioned cluster.
    Cluster(String),
}

pub const URL_HELP: &str =
    "redshift://ENDPOINT/DATABASE[?secret_arn=ARN] where ENDPOINT is what the console \
     shows (WORKGROUP.ACCOUNT.REGION.redshift-serverless.amazonaws.com or \
     CLUSTER.ID.REGION.redshift.amazonaws.com, port optional), or redshift:///DATABASE?workgroup=NAME \
     (or cluster=ID)&region=REGION; a provisioned cluster also needs db_user=NAME or secret_arn=ARN";

impl RedshiftTarget {
    pub fn parse(raw: &str) -> Result<RedshiftTarget, LoadError> {
        let bad = |why: &str| LoadError::BadWarehouseUrl {
            why: why.to_owned(),
            help: URL_HELP,
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&format!("not a URL ({e})")))?;
        if url.scheme() != "redshift" {
            return Err(bad("the scheme is not redshift://"));
        }
        if url.password().is_some() {
            return Err(bad(
                "the Data API takes no password: keep it in Secrets Manager and pass secret_arn=, \
                 or use an IAM db_user=",
            ));
        }
        let mut query: HashMap<String, String> = HashMap::new();
        for (key, value) in url.query_pairs() {
            if !["workgroup", "cluster", "secret_arn", "db_user", "region"].contains(&key.as_ref()) {
                return Err(bad(&format!("unknown parameter '{key}'")));
            }
            query.insert(key.into_owned(), value.into_owned());
        }
        let database = url.path().trim_matches('/').to_owned();
        if database.is_empty() || database.contains('/') {
            return Err(bad("name the database as the path: redshift://…/DATABASE"));
        }
        let (endpoint_compute, endpoint_region) = parse_endpoint(url.host_str().unwrap_or_default());
        let compute = match (query.remove("workgroup"), query.remove("cluster")) {
            (Some(workgroup), None) => Compute::Workgroup(workgroup),
            (None, Some(cluster)) => Compute::Cluster(cluster),
            (Some(_), Some(_)) => return Err(bad("give workgroup= or cluster=, not both")),
            (None, None) => endpoint_compute.ok_or_else(|| {
                bad("no workgroup or cluster: the host is not a Redshift endpoint and neither workgroup= nor cluster= is given")
            })?,
        };
        let url_user = (!url.username().is_empty()).then(|| url.username().to_owned());
        let db_user = query.remove("db_user").or(url_user);
        let secret_arn = query.remove("secret_arn");
        match &compute {
            Compute::Cluster(_) if db_user.is_none() && secret_arn.is_none() => {
                return Err(bad(
                    "a provisioned cluster needs credentials: db_user=NAME (temporary IAM credentials) or secret_arn=ARN",
                ))
            }
            Compute::Workgroup(_) if db_user.is_some() => {
                return Err(bad(
                    "Redshift Serverless takes no db_user: your IAM identity is the database user, or pass secret_arn=",
                ))
            }
            _ => {}
        }
        Ok(RedshiftTarget {
            compute,
            database,
            secret_arn,
            db_user,
            region: query.remove("region").or(endpoint_region),
        })
    }
}

/// Workgroup or cluster, and region, from an endpoint host name as the console shows it.
fn parse_endpoint(host: &str) -> (Option<Compute>, Option<String>) {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [workgroup, _account, region, "redshift-serverless", "amazonaws", "com"] => (
            Some(Compute::Workgroup((*workgroup).to_owned())),
            Some((*region).to_owned()),
        ),
        [cluster, _id, region, "redshift", "amazonaws", "com"] => (
            Some(Compute::Cluster((*cluster).to_owned())),
            Some((*region).to_owned()),
        ),
        _ => (None, None),
    }
}

/// What a load needs besides the target.
#[derive(Debug, Clone)]
pub struct RedshiftOptions {
    /// IAM role ARN Redshift assumes to read the lake, or `default` for the role
    /// attached to the cluster or namespace as default.
    pub iam_role: String,
    pub dedup_window: Duration,
    pub statement_timeout: Duration,
    /// How to reach the Data API (endpoint override, credentials).
    pub api: AwsOptions,
}

pub struct Redshift {
    client: aws_sdk_redshiftdata::Client,
    target: RedshiftTarget,
    schema: String,
    options: RedshiftOptions,
}

/// Why a statement did not finish.
#[derive(Debug)]
enum RunFailure {
    /// The warehouse ran it and it failed or was aborted.
    Failed(StatementFailure),
    /// The Data API could not be asked, or the statement ran past the timeout.
    Api(String),
}

#[derive(Debug)]
struct StatementFailure {
    message: String,
    /// 0-based index of the failing statement of a batch, and its Redshift query id.
    failed_statement: Option<usize>,
    query_id: Option<i64>,
}

impl StatementFailure {
    fn from_description(description: &DescribeStatementOutput) -> StatementFailure {
        let failed = description
            .sub_statements()
            .iter()
            .enumerate()
            .find(|(_, sub)| matches!(sub.status(), Some(StatementStatusString::Failed)));
        let message = failed
            .and_then(|(_, sub)| sub.error())
            .or(description.error())
            .unwrap_or("the statement was aborted")
            .to_owned();
        StatementFailure {
            message,
            failed_statement: failed.map(|(index, _)| index),
            query_id: failed
                .map(|(_, sub)| sub.redshift_query_id())
                .or(Some(description.redshift_query_id()))
                .filter(|id| *id > 0),
        }
    }

    /// Whether the warehouse refused the batch's data (then a file is to blame), rather
    /// than failing for reasons that retrying fixes. Access and connection problems are
    /// never data: quarantining files for a missing IAM permission would lose them.
    fn is_about_data(&self) -> bool {
        const NOT_DATA: [&str; 13] = [
            "s3serviceexception",
            "access denied",
            "accessdenied",
            "not authorized",
            "unauthorized",
            "assumerole",
            "assume role",
            "credentials",
            "connection",
            "timed out",
            "serializable isolation",
            "cancel",
            "out of memory",
        ];
        const DATA: [&str; 12] = [
            "spectrum scan error",
            "load into table",
            "sys_load_error_detail",
            "stl_load_errors",
            "json parsing",
            "invalid input syntax",
            "value too long",
            "invalid digit",
            "overflow",
            "parquet",
            "manifest",
            "content_length",
        ];
        // Statements 1..=4 read the files: COPY, the dedup, the insert (JSON_PARSE).
        let in_data_statement = self.failed_statement.is_none_or(|index| (1..=4).contains(&index));
        let message = self.message.to_ascii_lowercase();
        in_data_statement
            && !NOT_DATA.iter().any(|pattern| message.contains(pattern))
            && DATA.iter().any(|pattern| message.contains(pattern))
    }
}

/// Sets the target (compute, database, credentials) on a Data API request builder.
macro_rules! aimed_at {
    ($builder:expr, $target:expr) => {{
        let target: &RedshiftTarget = $target;
        let builder = $builder.database(&target.database);
        let builder = match &target.compute {
            Compute::Workgroup(name) => builder.workgroup_name(name),
            Compute::Cluster(id) => builder.cluster_identifier(id),
        };
        builder
            .set_secret_arn(target.secret_arn.clone())
            .set_db_user(target.db_user.clone())
    }};
}

fn api_error<E: std::error::Error + 'static>(operation: &str, error: E) -> String {
    format!("{operation}: {}", DisplayErrorContext(error))
}

impl Redshift {
    pub async fn connect(
        url: &str,
        schema: &str,
        mut options: RedshiftOptions,
    ) -> Result<Redshift, LoadError> {
        let target = RedshiftTarget::parse(url)?;
        if options.api.region.is_none() {
            options.api.region = target.region.clone();
        }
        let shared = aws::sdk_config(&options.api).await;
        // Throttling and 5xx answers are retried by the SDK (standard mode) before the
        // batch as a whole is.
        let config = aws_sdk_redshiftdata::config::Builder::from(&shared)
            .retry_config(aws_sdk_redshiftdata::config::retry::RetryConfig::standard().with_max_attempts(6))
            .build();
        Ok(Redshift {
            client: aws_sdk_redshiftdata::Client::from_conf(config),
            target,
            schema: schema.to_owned(),
            options,
        })
    }

    /// Creates missing objects, then refuses an `exposures` table whose columns differ.
    pub async fn ensure_objects(&self) -> Result<(), LoadError> {
        self.run_batch(ddl::statements(Dialect::Redshift, &self.schema))
            .await
            .map_err(|failure| failure.into_error("creating the warehouse objects"))?;
        let found: Vec<String> = self
            .query_text(&format!(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = {} \
                 AND table_name = 'exposures' ORDER BY ordinal_position",
                literal(&self.schema)
            ))
            .await?
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        let expected: Vec<String> = COLUMNS.iter().map(|c| c.name.to_owned()).collect();
        super::require_columns(&self.schema, found, expected)
    }

    /// Runs a read-only query; every field as text.
    pub async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        let (id, _) = self
            .run_one(sql)
            .await
            .map_err(|failure| failure.into_error("query"))?;
        self.rows(&id).await
    }

    /// Loads `files` (module doc).
    pub async fn load_batch(
        &mut self,
        files: &[FileRecord],
        lakes: &mut Lakes,
        batch_id: &str,
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
            } else if !file.lake.starts_with("s3://") {
                let reason = format!("Redshift COPY reads only from S3; this file is in {}", file.lake);
                self.quarantine(file, batch_id, &reason).await?;
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::Quarantined { reason }));
            } else {
                pending.push(file);
            }
        }
        let mut part = 0;
        self.load_group(&pending, lakes, batch_id, &mut part, &mut report)
            .await?;
        Ok(report)
    }

    /// Loads `files` in one transaction, or splits them when one of them is poison.
    async fn load_group(
        &self,
        files: &[&FileRecord],
        lakes: &mut Lakes,
        batch_id: &str,
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
            &self.options.iam_role,
            self.options.dedup_window,
            batch_id,
            files,
        );
        let result_statement = statements.len();
        match self.run_batch(statements).await {
            Ok((id, _)) => {
                let rows = self.rows(&format!("{id}:{result_statement}")).await?;
                let mut loaded: HashMap<String, u64> = HashMap::new();
                for row in rows {
                    let mut fields = row.into_iter();
                    let (key, count, newest) = (fields.next(), fields.next(), fields.next());
                    if let (Some(Some(key)), Some(Some(count))) = (key, count) {
                        loaded.insert(key, count.parse().unwrap_or(0));
                    }
                    if let Some(newest) = newest.flatten().as_deref().and_then(parse_timestamp) {
                        report.newest_exposed_at = report.newest_exposed_at.max(Some(newest));
                    }
                }
                for file in files {
                    let rows = loaded.get(&file.key).copied().ok_or_else(|| {
                        LoadError::DataApi(format!("the ledger has no row for {} after its batch", file.key))
                    })?;
                    report
                        .outcomes
                        .push((file.key.clone(), FileOutcome::Loaded { rows }));
                }
                Ok(())
            }
            Err(RunFailure::Failed(failure)) if failure.is_about_data() => {
                metrics::counter!(m::LOAD_DATA_ERRORS).increment(1);
                if let [file] = files {
                    let reason = self.explain(&failure).await;
                    self.quarantine(file, batch_id, &reason).await?;
                    report
                        .outcomes
                        .push((file.key.clone(), FileOutcome::Quarantined { reason }));
                    return Ok(());
                }
                tracing::warn!(files = files.len(), error = %failure.message, "batch refused for its data; splitting it to find the file");
                let (left, right) = files.split_at(files.len() / 2);
                Box::pin(self.load_group(left, lakes, batch_id, part, report)).await?;
                Box::pin(self.load_group(right, lakes, batch_id, part, report)).await
            }
            Err(failure) => Err(failure.into_error("loading a batch")),
        }
    }

    /// (key, etag) of the files the ledger holds as loaded.
    async fn already_loaded(&self, files: &[FileRecord]) -> Result<HashSet<(String, String)>, LoadError> {
        if files.is_empty() {
            return Ok(HashSet::new());
        }
        let keys: Vec<String> = files.iter().map(|f| literal(&f.key)).collect();
        let (id, _) = self
            .run_one(&format!(
                "SELECT object_key, etag FROM {}.exposures_loads WHERE status = 'loaded' AND object_key IN ({})",
                self.schema,
                keys.join(", ")
            ))
            .await
            .map_err(|failure| failure.into_error("reading the ledger"))?;
        Ok(self
            .rows(&id)
            .await?
            .into_iter()
            .filter_map(|row| match row.as_slice() {
                [Some(key), Some(etag)] => Some((key.clone(), etag.clone())),
                _ => None,
            })
            .collect())
    }

    async fn quarantine(&self, file: &FileRecord, batch_id: &str, reason: &str) -> Result<(), LoadError> {
        let sql = format!(
            "INSERT INTO {}.exposures_loads \
             (object_key, etag, size_bytes, rows_in_file, rows_loaded, batch_id, status, reason, loaded_at) \
             VALUES ({}, {}, {}, {}, 0, {}, 'quarantined', {}, GETDATE())",
            self.schema,
            literal(&file.key),
            literal(&file.etag),
            file.size,
            file.rows,
            literal(batch_id),
            literal(truncate(reason, MAX_REASON_BYTES)),
        );
        self.run_one(&sql)
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
        let details = match self.run_one(&sql).await {
            Ok((id, _)) => self.rows(&id).await.unwrap_or_default(),
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

    async fn run_batch(
        &self,
        statements: Vec<String>,
    ) -> Result<(String, DescribeStatementOutput), RunFailure> {
        let request = aimed_at!(self.client.batch_execute_statement(), &self.target)
            .set_sqls(Some(statements))
            .statement_name("exposures-load");
        let output = request
            .send()
            .await
            .map_err(|e| RunFailure::Api(api_error("BatchExecuteStatement", e)))?;
        let id = output.id().unwrap_or_default().to_owned();
        self.wait(&id).await.map(|description| (id, description))
    }

    async fn run_one(&self, sql: &str) -> Result<(String, DescribeStatementOutput), RunFailure> {
        let request = aimed_at!(self.client.execute_statement(), &self.target)
            .sql(sql)
            .statement_name("exposures-load");
        let output = request
            .send()
            .await
            .map_err(|e| RunFailure::Api(api_error("ExecuteStatement", e)))?;
        let id = output.id().unwrap_or_default().to_owned();
        self.wait(&id).await.map(|description| (id, description))
    }

    /// Polls `DescribeStatement` until the statement ends; cancels it at the timeout.
    async fn wait(&self, id: &str) -> Result<DescribeStatementOutput, RunFailure> {
        let deadline = Instant::now() + self.options.statement_timeout;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.client.describe_statement().id(id).send().await {
                Ok(description) => match description.status() {
                    Some(StatusString::Finished) => return Ok(description),
                    Some(StatusString::Failed | StatusString::Aborted) => {
                        return Err(RunFailure::Failed(StatementFailure::from_description(
                            &description,
                        )))
                    }
                    _ => {}
                },
                // The statement runs on regardless; keep asking until the deadline.
                Err(error) => tracing::warn!(error = %api_error("DescribeStatement", error), "polling on"),
            }
            if Instant::now() >= deadline {
                if let Err(error) = self.client.cancel_statement().id(id).send().await {
                    tracing::warn!(error = %api_error("CancelStatement", error), statement = id, "cancel failed");
                }
                return Err(RunFailure::Api(format!(
                    "statement {id} still running after {:?} (--statement-timeout); cancelled",
                    self.options.statement_timeout
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(2));
        }
    }

    /// Every row of a statement's result, fields as text.
    async fn rows(&self, id: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        let mut rows = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_statement_result()
                .id(id)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| LoadError::DataApi(api_error("GetStatementResult", e)))?;
            for record in page.records() {
                rows.push(record.iter().map(field_text).collect());
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(rows),
            }
        }
    }
}

impl RunFailure {
    fn into_error(self, doing: &str) -> LoadError {
        match self {
            RunFailure::Failed(failure) => LoadError::DataApi(format!("{doing}: {}", failure.message)),
            RunFailure::Api(message) => LoadError::DataApi(format!("{doing}: {message}")),
        }
    }
}

fn field_text(field: &Field) -> Option<String> {
    match field {
        Field::StringValue(text) => Some(text.clone()),
        Field::LongValue(value) => Some(value.to_string()),
        Field::DoubleValue(value) => Some(value.to_string()),
        Field::BooleanValue(value) => Some(value.to_string()),
        _ => None,
    }
}

/// Redshift prints timestamps as `2026-11-25 10:00:00[.ffffff]`, in UTC here.
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim_end_matches("+00");
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// A SQL string literal. Redshift treats backslash as an escape inside literals, so it
/// is doubled along with the quote.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The COPY manifest of `files`. Parquet COPY requires each entry's `content_length`.
fn manifest(files: &[&FileRecord]) -> String {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|file| {
            serde_json::json!({
                "url": format!("s3://{}/{}", file.bucket, file.key),
                "mandatory": true,
                "meta": {"content_length": file.size},
            })
        })
        .collect();
    serde_json::json!({ "entries": entries }).to_string()
}

/// The statements of one batch transaction (module doc); the last one's result is the
/// ledger rows written, with the newest `exposed_at` inserted.
pub fn load_statements(
    schema: &str,
    manifest_url: &str,
    iam_role: &str,
    dedup_window: Duration,
    batch_id: &str,
    files: &[&FileRecord],
) -> Vec<String> {
    let columns: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let column_list = columns.join(", ");
    let ranked_columns: Vec<String> = columns.iter().map(|c| format!("ranked.{c}")).collect();
    let insert_values: Vec<String> = COLUMNS
        .iter()
        .map(|c| match c.kind {
            ColumnType::Json => format!("JSON_PARSE({})", c.name),
            _ => c.name.to_owned(),
        })
        .collect();
    let role = if iam_role == "default" {
        "default".to_owned()
    } else {
        literal(iam_role)
    };
    let window = dedup_window.as_secs();
    let file_rows: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                "SELECT {} AS object_key, {} AS etag, CAST({} AS BIGINT) AS size_bytes, CAST({} AS BIGINT) AS rows_in_file, \
                 {} AS kafka_partition, CAST({} AS BIGINT) AS first_offset, CAST({} AS BIGINT) AS last_offset",
                literal(&f.key),
                literal(&f.etag),
                f.size,
                f.rows,
                f.partition,
                f.first_offset,
                f.last_offset
            )
        })
        .collect();
    let keys: Vec<String> = files.iter().map(|f| literal(&f.key)).collect();
    let batch = literal(batch_id);
    vec![
        ddl::stage_table(Dialect::Redshift, STAGE),
        format!(
            "COPY {STAGE} FROM {} IAM_ROLE {role} FORMAT AS PARQUET MANIFEST",
            literal(manifest_url)
        ),
        format!(
            "CREATE TEMP TABLE {NEW_ROWS} AS SELECT {} FROM (SELECT {column_list}, ROW_NUMBER() OVER \
             (PARTITION BY event_id ORDER BY received_at, kafka_partition, kafka_offset) AS occurrence FROM {STAGE}) ranked \
             LEFT JOIN (SELECT DISTINCT event_id FROM {schema}.exposures WHERE received_at BETWEEN \
             (SELECT MIN(received_at) FROM {STAGE}) - INTERVAL '{window} seconds' AND \
             (SELECT MAX(received_at) FROM {STAGE}) + INTERVAL '{window} seconds') loaded \
             ON loaded.event_id = ranked.event_id WHERE ranked.occurrence = 1 AND loaded.event_id IS NULL",
            ranked_columns.join(", ")
        ),
        format!(
            "INSERT INTO {schema}.exposures ({column_list}) SELECT {} FROM {NEW_ROWS}",
            insert_values.join(", ")
        ),
        format!(
            "INSERT INTO {schema}.exposures_loads \
             (object_key, etag, size_bytes, rows_in_file, rows_loaded, batch_id, status, reason, loaded_at) \
             SELECT f.object_key, f.etag, f.size_bytes, f.rows_in_file, COUNT(n.event_id), {batch}, 'loaded', NULL, GETDATE() \
             FROM ({}) f LEFT JOIN {NEW_ROWS} n ON n.kafka_partition = f.kafka_partition \
             AND n.kafka_offset BETWEEN f.first_offset AND f.last_offset \
             GROUP BY f.object_key, f.etag, f.size_bytes, f.rows_in_file",
            file_rows.join(" UNION ALL ")
        ),
        format!(
            "SELECT object_key, rows_loaded, (SELECT MAX(exposed_at) FROM {NEW_ROWS}) AS newest_exposed_at \
             FROM {schema}.exposures_loads WHERE batch_id = {batch} AND status = 'loaded' AND object_key IN ({})",
            keys.join(", ")
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<RedshiftTarget, String> {
        RedshiftTarget::parse(url).map_err(|e| e.to_string())
    }

    #[test]
    fn console_endpoints_name_the_compute_and_region() {
        assert_eq!(
            target("redshift://analytics.123456789012.eu-west-1.redshift-serverless.amazonaws.com:5439/dev"),
            Ok(RedshiftTarget {
                compute: Compute::Workgroup("analytics".into()),
                database: "dev".into(),
                secret_arn: None,
                db_user: None,
                region: Some("eu-west-1".into()),
            })
        );
        assert_eq!(
            target("redshift://loader@prod.c0abc.us-east-1.redshift.amazonaws.com/warehouse"),
            Ok(RedshiftTarget {
                compute: Compute::Cluster("prod".into()),
                database: "warehouse".into(),
                secret_arn: None,
                db_user: Some("loader".into()),
                region: Some("us-east-1".into()),
            })
        );
    }

    #[test]
    fn query_parameters_name_the_compute_and_credentials() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:redshift-AbC";
        let parsed = target(&format!(
            "redshift:///dev?cluster=prod&secret_arn={arn}&region=ap-south-1"
        ))
        .expect("valid");
        assert_eq!(parsed.compute, Compute::Cluster("prod".into()));
        assert_eq!(parsed.secret_arn.as_deref(), Some(arn));
        assert_eq!(parsed.region.as_deref(), Some("ap-south-1"));
        let parsed = target("redshift://localhost:9999/dev?workgroup=wg").expect("valid");
        assert_eq!(parsed.compute, Compute::Workgroup("wg".into()));
        assert_eq!(parsed.region, None);
    }

    #[test]
    fn bad_urls_say_what_to_do() {
        for (url, says) in [
            (
                "redshift://u:pw@prod.c0abc.us-east-1.redshift.amazonaws.com/dev",
                "no password",
            ),
            (
                "redshift://prod.c0abc.us-east-1.redshift.amazonaws.com/dev",
                "db_user=NAME",
            ),
            (
                "redshift://analytics.1.eu-west-1.redshift-serverless.amazonaws.com/",
                "name the database",
            ),
            ("redshift://example.com/dev", "no workgroup or cluster"),
            ("redshift:///dev?workgroup=a&cluster=b", "not both"),
            (
                "redshift:///dev?workgroup=a&password=x",
                "unknown parameter 'password'",
            ),
            ("redshift:///dev?workgroup=a&db_user=x", "takes no db_user"),
        ] {
            let error = target(url).expect_err(url);
            assert!(error.contains(says), "{url}: {error}");
            assert!(error.contains("redshift://ENDPOINT/DATABASE"), "{error}");
        }
    }

    #[test]
    fn data_failures_are_told_from_transient_ones() {
        let failure = |message: &str, index| StatementFailure {
            message: message.into(),
            failed_statement: index,
            query_id: None,
        };
        assert!(failure(
            "Spectrum Scan Error: File 's3://l/x.parquet' has an invalid version number",
            Some(1)
        )
        .is_about_data());
        assert!(failure("JSON parsing error", Some(3)).is_about_data());
        assert!(!failure("Spectrum Scan Error: S3ServiceException: Access Denied", Some(1)).is_about_data());
        assert!(
            !failure("Load into table failed", Some(0)).is_about_data(),
            "the stage DDL reads no file"
        );
        assert!(!failure("connection to the cluster lost", Some(1)).is_about_data());
        assert!(!failure("ERROR: 1023 Serializable isolation violation", Some(3)).is_about_data());
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(r"it's a \path"), r"'it''s a \\path'");
        assert_eq!(truncate("héllo", 2), "h");
    }

    #[test]
    fn redshift_load_sql_snapshot() {
        let file = FileRecord {
            lake: "s3://lake/exposures".into(),
            bucket: "lake".into(),
            key: "exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet".into(),
            size: 4096,
            etag: "\"abc\"".into(),
            rows: 50,
            topic: "exposures".into(),
            partition: 3,
            first_offset: 100,
            last_offset: 149,
            hour: "2026-11-25T10".into(),
            written_at: DateTime::<Utc>::MIN_UTC,
        };
        let statements = load_statements(
            "analytics",
            "s3://lake/exposures/_manifests/b1-1.manifest",
            "arn:aws:iam::123456789012:role/exposures-copy",
            Duration::from_secs(604_800),
            "b1",
            &[&file],
        );
        let cols = "event_id, ds_user_id, anonymous_id, experiment_id, variation_id, exposed_at, received_at, source, \
                    attributes, ds_session_id, geo_country_code, geo_city, currency_id, locale, platform, is_kf_verified, \
                    user_agent, extra, kafka_partition, kafka_offset";
        assert_eq!(statements.len(), 6);
        assert!(statements[0].starts_with("CREATE TEMP TABLE exposures_stage (event_id VARCHAR(128), "));
        assert_eq!(
            statements[1],
            "COPY exposures_stage FROM 's3://lake/exposures/_manifests/b1-1.manifest' \
             IAM_ROLE 'arn:aws:iam::123456789012:role/exposures-copy' FORMAT AS PARQUET MANIFEST"
        );
        assert!(statements[2].contains(&format!(
            "FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY event_id "
        )));
        assert!(statements[2].contains(
            "LEFT JOIN (SELECT DISTINCT event_id FROM analytics.exposures WHERE received_at BETWEEN \
             (SELECT MIN(received_at) FROM exposures_stage) - INTERVAL '604800 seconds' AND \
             (SELECT MAX(received_at) FROM exposures_stage) + INTERVAL '604800 seconds') loaded"
        ));
        assert_eq!(
            statements[3],
            format!(
                "INSERT INTO analytics.exposures ({cols}) SELECT {} FROM exposures_new",
                cols.replace("attributes,", "JSON_PARSE(attributes),")
                    .replace("extra,", "JSON_PARSE(extra),")
            )
        );
        assert!(statements[4].contains(
            "FROM (SELECT 'exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet' AS object_key, '\"abc\"' AS etag, \
             CAST(4096 AS BIGINT) AS size_bytes, CAST(50 AS BIGINT) AS rows_in_file, 3 AS kafka_partition, \
             CAST(100 AS BIGINT) AS first_offset, CAST(149 AS BIGINT) AS last_offset) f"
        ));
        assert!(statements[5].ends_with(
            "WHERE batch_id = 'b1' AND status = 'loaded' AND object_key IN ('exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet')"
        ));
        let default_role = load_statements("a", "s3://m", "default", Duration::ZERO, "b", &[&file]);
        assert!(default_role[1].contains("IAM_ROLE default FORMAT"));
        assert_eq!(
            manifest(&[&file]),
            r#"{"entries":[{"url":"s3://lake/exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet","mandatory":true,"meta":{"content_length":4096}}]}"#
        );
    }
}
