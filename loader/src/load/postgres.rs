//! The PostgreSQL warehouse: Parquet rows streamed with `COPY … FROM STDIN (FORMAT
//! binary)` into a temporary stage, then inserted into `exposures` with the unique
//! `event_id` index deduplicating, all of a batch in one transaction.
//!
//! Per file, inside the batch transaction and a savepoint:
//! ledger says (key, etag) is loaded → skip; else stage the rows → insert the new ones →
//! ledger row `loaded`. A file that is not readable Parquet, or whose rows the database
//! rejects as data (SQLSTATE classes 22 and 23), is rolled back to its savepoint and
//! recorded as `quarantined` with the reason: the rest of the batch still loads, and the
//! poison file is never retried. Anything else (connection lost, lake unreachable) fails
//! the whole batch, which the caller retries; nothing of it was committed.

use std::pin::pin;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schemas::ddl::{self, Dialect};
use schemas::ledger::{self, LedgerRow};
use schemas::{ColumnType, COLUMNS};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, Transaction};

use super::{BatchReport, FileOutcome, LoadError};
use crate::files::FileRecord;

pub struct Postgres {
    client: Client,
    schema: String,
}

/// Why one file could not be loaded.
enum FileFailure {
    /// The file is bad (unreadable Parquet, rows the database rejects): quarantine it.
    Poison(String),
    /// The database or connection failed: retry the batch.
    Transient(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for FileFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        let data_error = error
            .code()
            .is_some_and(|code| code.code().starts_with("22") || code.code().starts_with("23"));
        if data_error {
            FileFailure::Poison(error.to_string())
        } else {
            FileFailure::Transient(error)
        }
    }
}

fn stage_type(kind: ColumnType) -> Type {
    match kind {
        // JSON travels as text and is cast on insert, as Redshift's JSON_PARSE does.
        ColumnType::Text(_) | ColumnType::Json => Type::TEXT,
        ColumnType::Timestamp => Type::TIMESTAMPTZ,
        ColumnType::Boolean => Type::BOOL,
        ColumnType::Int32 => Type::INT4,
        ColumnType::Int64 => Type::INT8,
    }
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/database`).
    pub async fn connect(url: &str, schema: &str) -> Result<Postgres, LoadError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(LoadError::Warehouse)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL connection closed");
            }
        });
        Ok(Postgres {
            client,
            schema: schema.to_owned(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Creates missing objects, then refuses an `exposures` table whose columns differ.
    pub async fn ensure_objects(&self) -> Result<(), LoadError> {
        self.client
            .batch_execute(&ddl::script(Dialect::Postgres, &self.schema))
            .await
            .map_err(LoadError::Warehouse)?;
        let rows = self
            .client
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = 'exposures' ORDER BY ordinal_position",
                &[&self.schema],
            )
            .await
            .map_err(LoadError::Warehouse)?;
        let found: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        let expected: Vec<String> = COLUMNS
            .iter()
            .map(|c| {
                let data_type = match c.kind {
                    ColumnType::Text(_) => "text",
                    ColumnType::Json => "jsonb",
                    ColumnType::Timestamp => "timestamp with time zone",
                    ColumnType::Boolean => "boolean",
                    ColumnType::Int32 => "integer",
                    ColumnType::Int64 => "bigint",
                };
                format!("{} {data_type}", c.name)
            })
            .collect();
        super::require_columns(&self.schema, found, expected)
    }

    /// Runs a read-only query; every field as text.
    pub async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(LoadError::Warehouse)?;
        Ok(messages
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    }

    /// Loads `files` in one transaction (module doc).
    pub async fn load_batch(
        &mut self,
        files: &[FileRecord],
        lakes: &mut super::Lakes,
        batch_id: &str,
    ) -> Result<BatchReport, LoadError> {
        let schema = self.schema.clone();
        let mut transaction = self.client.transaction().await.map_err(LoadError::Warehouse)?;
        transaction
            .batch_execute(&ddl::stage_table(Dialect::Postgres, "exposures_stage"))
            .await
            .map_err(LoadError::Warehouse)?;
        let mut report = BatchReport::default();
        for file in files {
            let already = transaction
                .simple_query(&ledger::already_loaded(Dialect::Postgres, &schema, &[&file.key]))
                .await
                .map_err(LoadError::Warehouse)?
                .iter()
                .any(|message| match message {
                    SimpleQueryMessage::Row(row) => row.get(1) == Some(file.etag.as_str()),
                    _ => false,
                });
            if already {
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::AlreadyLoaded));
                continue;
            }
            let body = lakes.get(file).await?;
            let savepoint = transaction
                .savepoint("file")
                .await
                .map_err(LoadError::Warehouse)?;
            let outcome = match load_file(&savepoint, &schema, body).await {
                Ok(rows) => {
                    savepoint.commit().await.map_err(LoadError::Warehouse)?;
                    FileOutcome::Loaded { rows }
                }
                Err(FileFailure::Poison(reason)) => {
                    savepoint.rollback().await.map_err(LoadError::Warehouse)?;
                    FileOutcome::Quarantined { reason }
                }
                Err(FileFailure::Transient(error)) => return Err(LoadError::Warehouse(error)),
            };
            let (status, rows_loaded, reason) = match &outcome {
                FileOutcome::Loaded { rows } => ("loaded", *rows, None),
                FileOutcome::Quarantined { reason } => ("quarantined", 0, Some(reason.as_str())),
                FileOutcome::AlreadyLoaded => continue,
            };
            let row = LedgerRow {
                object_key: &file.key,
                etag: &file.etag,
                size_bytes: file.size,
                rows_in_file: file.rows,
                rows_loaded,
                batch_id,
                status,
                reason,
            };
            transaction
                .batch_execute(&ledger::insert_ledger_row(Dialect::Postgres, &schema, &row))
                .await
                .map_err(LoadError::Warehouse)?;
            report.outcomes.push((file.key.clone(), outcome));
        }
        report.newest_exposed_at = transaction
            .query_one(&format!("SELECT max(exposed_at) FROM {schema}.exposures"), &[])
            .await
            .map_err(LoadError::Warehouse)?
            .get::<_, Option<DateTime<Utc>>>(0);
        transaction.commit().await.map_err(LoadError::Warehouse)?;
        Ok(report)
    }
}

/// Stages one file's rows and inserts those whose `event_id` is new. Returns rows inserted.
async fn load_file(client: &Transaction<'_>, schema: &str, body: Bytes) -> Result<u64, FileFailure> {
    client.batch_execute("TRUNCATE exposures_stage").await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(body)
        .and_then(|builder| builder.build())
        .map_err(|e| FileFailure::Poison(format!("not readable Parquet: {e}")))?;
    let types: Vec<Type> = COLUMNS.iter().map(|c| stage_type(c.kind)).collect();
    let sink = client
        .copy_in(&format!(
            "COPY exposures_stage ({}) FROM STDIN (FORMAT binary)",
            ledger::exposure_column_list()
        ))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for batch in reader {
        let batch = batch.map_err(|e| FileFailure::Poison(format!("corrupt Parquet data: {e}")))?;
        let columns = BatchColumns::new(&batch)?;
        for row in 0..batch.num_rows() {
            let values = columns.row(row);
            let refs: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&refs).await?;
        }
    }
    writer.as_mut().finish().await?;
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO {schema}.exposures ({}) SELECT {} FROM exposures_stage ON CONFLICT (event_id) DO NOTHING",
                ledger::exposure_column_list(),
                ledger::exposure_insert_values(Dialect::Postgres)
            ),
            &[],
        )
        .await?;
    Ok(inserted)
}

/// A record batch's columns, typed per [`COLUMNS`].
struct BatchColumns<'a> {
    columns: Vec<(ColumnType, &'a dyn Array)>,
}

impl<'a> BatchColumns<'a> {
    fn new(batch: &'a RecordBatch) -> Result<BatchColumns<'a>, FileFailure> {
        let columns = COLUMNS
            .iter()
            .map(|c| {
                batch
                    .column_by_name(c.name)
                    .map(|array| (c.kind, array.as_ref()))
                    .ok_or_else(|| FileFailure::Poison(format!("column {} is missing", c.name)))
            })
            .collect::<Result<_, _>>()?;
        Ok(BatchColumns { columns })
    }

    fn row(&self, row: usize) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
        self.columns
            .iter()
            .map(|(kind, array)| -> Box<dyn ToSql + Sync + Send + 'a> {
                let null = array.is_null(row);
                match kind {
                    ColumnType::Text(_) | ColumnType::Json => match array.as_string_opt::<i32>() {
                        Some(values) if !null => Box::new(Some(values.value(row))),
                        _ => Box::new(None::<&str>),
                    },
                    ColumnType::Timestamp => match array.as_primitive_opt::<TimestampMicrosecondType>() {
                        Some(values) if !null => Box::new(Utc.timestamp_micros(values.value(row)).single()),
                        _ => Box::new(None::<DateTime<Utc>>),
                    },
                    ColumnType::Boolean => match array.as_boolean_opt() {
                        Some(values) if !null => Box::new(Some(values.value(row))),
                        _ => Box::new(None::<bool>),
                    },
                    ColumnType::Int32 => match array.as_primitive_opt::<Int32Type>() {
                        Some(values) if !null => Box::new(Some(values.value(row))),
                        _ => Box::new(None::<i32>),
                    },
                    ColumnType::Int64 => match array.as_primitive_opt::<Int64Type>() {
                        Some(values) if !null => Box::new(Some(values.value(row))),
                        _ => Box::new(None::<i64>),
                    },
                }
            })
            .collect()
    }
}
