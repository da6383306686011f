//! The Redshift Data API as the loader uses it: submit one statement or a batch (which
//! Redshift runs as one transaction), poll `DescribeStatement` until it ends — backoff
//! 50 ms → 2 s, cancelled with `CancelStatement` past `--statement-timeout` — and read
//! results as text. [`StatementFailure::is_about_data`] tells a refusal of the data
//! (a file is to blame) from failures that retrying fixes.

use std::time::{Duration, Instant};

use aws_sdk_redshiftdata::error::DisplayErrorContext;
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::types::{Field, StatementStatusString, StatusString};
use stage::{Backoff, Retry};

use super::target::{Compute, RedshiftTarget};
use crate::aws::{self, AwsFailure, AwsOptions};
use crate::load::LoadError;

/// A Data API client aimed at one database.
pub(super) struct DataApi {
    client: aws_sdk_redshiftdata::Client,
    target: RedshiftTarget,
    statement_timeout: Duration,
}

/// Why a statement did not finish.
#[derive(Debug)]
pub(super) enum RunFailure {
    /// The warehouse ran it and it failed or was aborted.
    Failed(StatementFailure),
    /// The Data API could not be asked, or the statement ran past the timeout.
    Api { message: String, retry: Retry },
}

#[derive(Debug)]
pub(super) struct StatementFailure {
    pub(super) message: String,
    /// 0-based index of the failing statement of a batch, and its Redshift query id.
    pub(super) failed_statement: Option<usize>,
    pub(super) query_id: Option<i64>,
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
    /// `reading_files`: the indexes of the batch's statements that read the files' rows.
    pub(super) fn is_about_data(&self, reading_files: &[usize]) -> bool {
        // Transient Spectrum/S3/KMS conditions come wrapped in "Spectrum Scan Error" like
        // bad files do, so they are named here and win: a throttled COPY must be retried,
        // not split down to single files that are then quarantined for good.
        // (Redshift docs: "Troubleshoot queries in Amazon Redshift Spectrum" lists
        // "Retries exceeded", "Access throttled" from S3 or KMS, and resource limits.)
        const NOT_DATA: [&str; 25] = [
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
            "retries exceeded",
            "throttl",
            "slow down",
            "slowdown",
            "reduce your request rate",
            "request rate",
            "resource limit",
            "service unavailable",
            "internal server error",
            "internal error",
            "kms",
            "disk full",
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
        // What the documentation names as a file's own fault wins over the transient words
        // around it: the knowledge-center article "How do I resolve data incompatibility
        // errors in Redshift Spectrum?" shows "S3 Query Exception (Fetch). Task failed due
        // to an internal error. File '…' has an incompatible Parquet schema for column …".
        const THE_FILE: [&str; 2] = ["incompatible parquet schema", "invalid version number"];
        let in_data_statement = self
            .failed_statement
            .is_none_or(|index| reading_files.contains(&index));
        let message = self.message.to_ascii_lowercase();
        in_data_statement
            && (THE_FILE.iter().any(|pattern| message.contains(pattern))
                || (!NOT_DATA.iter().any(|pattern| message.contains(pattern))
                    && DATA.iter().any(|pattern| message.contains(pattern))))
    }

    /// A failure that is not about the data: permanent when Redshift refused the
    /// loader's user a privilege (`permission denied for relation …`, `… for schema …`),
    /// which a GRANT fixes and waiting does not; transient otherwise (the Data API gives
    /// no SQLSTATE, so the message is all there is).
    pub(super) fn retry(&self) -> Retry {
        if self.message.to_ascii_lowercase().contains("permission denied") {
            Retry::Permanent
        } else {
            Retry::Transient
        }
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

fn api_error<E: AwsFailure>(operation: &str, error: E) -> RunFailure {
    RunFailure::Api {
        retry: error.retry(),
        message: format!("{operation}: {}", DisplayErrorContext(error)),
    }
}

impl DataApi {
    /// A client for `target`; the region falls back to the endpoint's.
    pub(super) async fn connect(
        target: RedshiftTarget,
        mut api: AwsOptions,
        statement_timeout: Duration,
    ) -> DataApi {
        if api.region.is_none() {
            api.region = target.region.clone();
        }
        let shared = aws::sdk_config(&api).await;
        // Throttling and 5xx answers are retried by the SDK (standard mode) before the
        // batch as a whole is.
        let config = aws_sdk_redshiftdata::config::Builder::from(&shared)
            .retry_config(aws_sdk_redshiftdata::config::retry::RetryConfig::standard().with_max_attempts(6))
            .build();
        DataApi {
            client: aws_sdk_redshiftdata::Client::from_conf(config),
            target,
            statement_timeout,
        }
    }

    /// Runs a read-only query; every field as text.
    pub(super) async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        let (id, _) = self
            .run_one(sql)
            .await
            .map_err(|failure| failure.into_error("query"))?;
        self.rows(&id).await
    }

    pub(super) async fn run_batch(
        &self,
        statements: Vec<String>,
    ) -> Result<(String, DescribeStatementOutput), RunFailure> {
        let request = aimed_at!(self.client.batch_execute_statement(), &self.target)
            .set_sqls(Some(statements))
            .statement_name("exposures-load");
        let output = request
            .send()
            .await
            .map_err(|e| api_error("BatchExecuteStatement", e))?;
        self.run_to_end(output.id()).await
    }

    pub(super) async fn run_one(&self, sql: &str) -> Result<(String, DescribeStatementOutput), RunFailure> {
        let request = aimed_at!(self.client.execute_statement(), &self.target)
            .sql(sql)
            .statement_name("exposures-load");
        let output = request
            .send()
            .await
            .map_err(|e| api_error("ExecuteStatement", e))?;
        self.run_to_end(output.id()).await
    }

    /// Waits for the statement the Data API accepted as `id` to end.
    async fn run_to_end(&self, id: Option<&str>) -> Result<(String, DescribeStatementOutput), RunFailure> {
        let id = id.unwrap_or_default().to_owned();
        self.wait(&id).await.map(|description| (id, description))
    }

    /// Polls `DescribeStatement` until the statement ends; cancels it at the timeout.
    async fn wait(&self, id: &str) -> Result<DescribeStatementOutput, RunFailure> {
        let deadline = Instant::now() + self.statement_timeout;
        let mut polling = Backoff::new(Duration::from_millis(50), Duration::from_secs(2)).with_factor(1.5);
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
                // The statement runs on regardless: keep asking until the deadline, unless
                // asking itself is refused.
                Err(error) => match api_error("DescribeStatement", error) {
                    RunFailure::Api {
                        message,
                        retry: Retry::Transient,
                    } => tracing::warn!(error = %message, "polling on"),
                    refused => return Err(refused),
                },
            }
            if Instant::now() >= deadline {
                if let Err(error) = self.client.cancel_statement().id(id).send().await {
                    tracing::warn!(error = %DisplayErrorContext(error), statement = id, "CancelStatement failed");
                }
                return Err(RunFailure::Api {
                    message: format!(
                        "statement {id} still running after {:?} (--statement-timeout); cancelled",
                        self.statement_timeout
                    ),
                    retry: Retry::Transient,
                });
            }
            polling.sleep().await;
        }
    }

    /// Every row of a statement's result, fields as text.
    pub(super) async fn rows(&self, id: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
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
                .map_err(|e| api_error("GetStatementResult", e).into_error("reading a result"))?;
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
    pub(super) fn into_error(self, doing: &str) -> LoadError {
        let (message, retry) = match self {
            RunFailure::Failed(failure) => {
                let retry = failure.retry();
                (failure.message, retry)
            }
            RunFailure::Api { message, retry } => (message, retry),
        };
        LoadError::DataApi {
            doing: doing.to_owned(),
            message,
            retry,
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

#[cfg(test)]
mod tests {
    use super::*;

    const READS: [usize; 3] = crate::load::redshift::sql::READ_THE_FILES;

    /// The texts AWS documents, each as the Data API would carry it. Unknown texts are
    /// never data: they are retried (loudly: failures counted, the alert), not quarantined.
    #[test]
    fn documented_texts_are_classified_as_their_pages_say() {
        let failure = |message: &str| StatementFailure {
            message: message.into(),
            failed_statement: Some(2),
            query_id: None,
        };
        // "How do I resolve data incompatibility errors in Redshift Spectrum?" (AWS
        // knowledge center): a file's schema, even wrapped in "internal error".
        for data in [
            "Spectrum Scan Error: File 'https://s3bucket/location/file has an incompatible Parquet schema for column \
             's3://s3bucket/location.col1'. Column type: VARCHAR, Parquet schema:",
            "S3 Query Exception (Fetch). Task failed due to an internal error. File 'https://s3.amazonaws.com/b/f.parquet' \
             has an incompatible Parquet schema for column 'c' column 'c' has an invalid type length",
        ] {
            assert!(failure(data).is_about_data(&READS), "{data}");
        }
        // "Query troubleshooting in Amazon Redshift Spectrum": retried, never poison.
        for transient in [
            "error:  Spectrum Scan Error: Retries exceeded",
            "error:  Spectrum Scan Error: Access throttled",
        ] {
            assert!(!failure(transient).is_about_data(&READS), "{transient}");
            assert_eq!(failure(transient).retry(), Retry::Transient, "{transient}");
        }
        // Nothing we know: retried.
        let unknown = failure("ERROR: something new went wrong on node 3");
        assert!(!unknown.is_about_data(&READS));
        assert_eq!(unknown.retry(), Retry::Transient);
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
            Some(2)
        )
        .is_about_data(&READS));
        assert!(failure("JSON parsing error", Some(4)).is_about_data(&READS));
        assert!(
            !failure("Spectrum Scan Error: S3ServiceException: Access Denied", Some(2)).is_about_data(&READS)
        );
        assert!(
            !failure("Load into table failed", Some(1)).is_about_data(&READS),
            "the stage DDL reads no file"
        );
        assert!(!failure("connection to the cluster lost", Some(2)).is_about_data(&READS));
        assert!(!failure("ERROR: 1023 Serializable isolation violation", Some(4)).is_about_data(&READS));
        for transient in [
            "Spectrum Scan Error: S3 Query Exception (Fetch). Task failed due to an internal error. Retries exceeded",
            "Spectrum Scan Error: Access throttled: S3 SlowDown: Please reduce your request rate",
            "Spectrum Scan Error: Error communicating with KMS: ThrottlingException",
            "Spectrum Scan Error: Resource limit exceeded for the query",
        ] {
            assert!(!failure(transient, Some(2)).is_about_data(&READS), "{transient}");
            assert_eq!(failure(transient, Some(2)).retry(), Retry::Transient, "{transient}");
        }
        let refused = failure("ERROR: permission denied for relation exposures", Some(4));
        assert!(!refused.is_about_data(&READS));
        assert_eq!(refused.retry(), Retry::Permanent);
    }
}
