//! The PostgreSQL warehouse: Parquet rows streamed with `COPY … FROM STDIN (FORMAT
//! binary)` into a temporary stage, then inserted into `exposures` with the unique
//! `event_id` index deduplicating, all of a batch in one transaction.
//!
//! Per file, inside the batch transaction and a savepoint:
//! ledger says (key, etag) is loaded → skip; else stage the rows → insert the new ones →
//! ledger row `loaded`.
//!
//! **Row-level quarantine.** When the database refuses the file's rows as data
//! (SQLSTATE classes 22 and 23: a NUL in text, JSON jsonb cannot hold, …), the file is
//! rolled back to its savepoint and loaded again one row at a time, each row in a
//! savepoint of its own: the good rows load, and each refused row goes to
//! `exposures_rejected` with its Kafka position, the row as JSON text and the database's
//! reason. The ledger records `rows_loaded` and `rows_rejected` for the file. Only a
//! file that is not readable Parquet is quarantined whole (`rows_loaded = 0`). Anything
//! else (connection lost, lake unreachable) fails the whole batch, which the caller
//! retries; nothing of it was committed.

use std::pin::pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schemas::ddl::{self, Dialect};
use schemas::lake_layout::FileRecord;
use schemas::ledger::{self, LedgerRow};
use schemas::{ColumnType, TableDef, EXPOSURES, TABLES};
use stage::Retry;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, Transaction};

mod reload;
mod rows;
mod sql;

use rows::{as_params, load_rows_one_by_one, BatchColumns};

use super::{BatchReport, FileOutcome, LoadError};
use crate::lake::LakeError;

/// Rows of `exposures_rejected` written per INSERT statement.
const REJECTED_ROWS_PER_STATEMENT: usize = 500;

pub struct Postgres {
    client: Client,
    schema: String,
    unavailable: super::Unavailable,
}

/// Why one file (or row) could not be loaded.
pub(super) enum FileFailure {
    /// Not readable Parquet: quarantine the file.
    Unreadable(String),
    /// The database refused rows as data: load the file row by row.
    Refused(String),
    /// The database or connection failed: the batch fails (and is retried, unless
    /// [`retry_of`] says the error is permanent).
    Batch(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for FileFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        let data_error = error
            .code()
            .is_some_and(|code| code.code().starts_with("22") || code.code().starts_with("23"));
        if data_error {
            FileFailure::Refused(with_detail(&error))
        } else {
            FileFailure::Batch(error)
        }
    }
}

/// Whether a PostgreSQL error is worth retrying. Permanent: a refused login (SQLSTATE
/// class 28: wrong password, unknown role), a database or schema that does not exist
/// (3D000, 3F000), a missing privilege (42501) — each needs someone to change something.
/// Everything else (no SQLSTATE: the connection failed or closed; 08 connection, 40
/// serialization or deadlock, 53 resources, 57 shutdown) is transient.
pub(crate) fn retry_of(error: &tokio_postgres::Error) -> Retry {
    retry_of_code(error.code())
}

fn retry_of_code(code: Option<&SqlState>) -> Retry {
    match code.map(SqlState::code) {
        Some(code) if code.starts_with("28") || ["3D000", "3F000", "42501"].contains(&code) => {
            Retry::Permanent
        }
        _ => Retry::Transient,
    }
}

/// The server's message (tokio-postgres's `Display` says only "db error").
fn with_detail(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => error.to_string(),
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
        let config: tokio_postgres::Config = url.parse().map_err(LoadError::BadPostgresUrl)?;
        let (client, connection) = config.connect(NoTls).await.map_err(LoadError::Warehouse)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL connection closed");
            }
        });
        Ok(Postgres {
            client,
            schema: schema.to_owned(),
            unavailable: super::Unavailable::default(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Creates missing objects, then refuses an `exposures` table whose columns differ.
    pub async fn ensure_objects(&self) -> Result<(), LoadError> {
        let existing = self
            .query_text(&ddl::existing_objects_query(Dialect::Postgres, &self.schema))
            .await?;
        let readers = self
            .query_text(&ddl::view_readers_query(Dialect::Postgres, &self.schema))
            .await?;
        let (run, tracked) = super::objects_to_make(Dialect::Postgres, &self.schema, existing, readers)?;
        if !run.is_empty() {
            // One simple query of several statements runs as one transaction: a view
            // replaced (dropped, made again, granted) is never seen missing.
            self.client
                .batch_execute(&run.join(";\n"))
                .await
                .map_err(LoadError::Warehouse)?;
        }
        let mut not_made = Vec::new();
        for (table, statements) in tracked.iter().filter(|(_, statements)| !statements.is_empty()) {
            if let Err(error) = self.client.batch_execute(&statements.join(";\n")).await {
                not_made.push((
                    table.name,
                    format!(
                        "cannot create {}.{}: {}",
                        self.schema,
                        table.name,
                        with_detail(&error)
                    ),
                ));
            }
        }
        let ledger_columns: Vec<String> = self
            .client
            .query(sql::LEDGER_COLUMNS, &[&self.schema])
            .await
            .map_err(LoadError::Warehouse)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for migration in ledger::ledger_migrations(&self.schema, &ledger_columns) {
            self.client
                .batch_execute(&migration)
                .await
                .map_err(LoadError::Warehouse)?;
        }
        for table in TABLES {
            let rows = self
                .client
                .query(sql::TABLE_COLUMNS, &[&self.schema, &table.name])
                .await
                .map_err(LoadError::Warehouse)?;
            let found: Vec<String> = rows
                .iter()
                .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect();
            super::check_table(
                &self.schema,
                table,
                found,
                sql::expected_columns(table),
                &not_made,
                &self.unavailable,
            )?;
        }
        Ok(())
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

    /// Records `file` as quarantined for `reason` without reading anything of it.
    pub(super) async fn quarantine(
        &self,
        file: &FileRecord,
        batch_id: &str,
        reason: &str,
    ) -> Result<(), LoadError> {
        let row = file.quarantined(batch_id, reason);
        self.client
            .batch_execute(&ledger::insert_ledger_row(Dialect::Postgres, &self.schema, &row))
            .await
            .map_err(LoadError::Warehouse)
    }

    /// Loads `files` in one transaction (module doc).
    pub async fn load_batch(
        &mut self,
        files: &[FileRecord],
        lakes: &mut super::LoaderLake,
        batch_id: &str,
    ) -> Result<BatchReport, LoadError> {
        let schema = self.schema.clone();
        let mut transaction = self.client.transaction().await.map_err(LoadError::Warehouse)?;
        transaction
            .batch_execute(&sql::lock_ledger(&schema))
            .await
            .map_err(LoadError::Warehouse)?;
        let mut staged: Vec<&TableDef> = Vec::new();
        let mut report = BatchReport::default();
        for file in files {
            let table = file.table_def();
            let unloadable = match table {
                None => Some(super::unknown_table(file)),
                Some(table) => self.unavailable.reason(table),
            };
            let (Some(table), None) = (table, unloadable.as_ref()) else {
                let reason = unloadable.unwrap_or_default();
                write_ledger_row(&transaction, &schema, &file.quarantined(batch_id, &reason)).await?;
                report
                    .outcomes
                    .push((file.key.clone(), FileOutcome::Quarantined { reason }));
                continue;
            };
            if !staged.contains(&table) {
                transaction
                    .batch_execute(&sql::create_stage(table))
                    .await
                    .map_err(LoadError::Warehouse)?;
                staged.push(table);
            }
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
            let body = match lakes.get(file).await {
                Ok(body) => Some(body),
                // Waiting will not bring it back: quarantine it, say why, load the rest.
                Err(error @ LakeError::Missing(_)) => {
                    let reason = error.to_string();
                    let recorded = record_dead_letters(&transaction, lakes, file, &schema).await?;
                    let mut row = file.quarantined(batch_id, &reason);
                    row.rows_rejected = recorded;
                    write_ledger_row(&transaction, &schema, &row).await?;
                    report
                        .outcomes
                        .push((file.key.clone(), FileOutcome::Quarantined { reason }));
                    None
                }
                Err(error) => return Err(error.into()),
            };
            let Some(body) = body else { continue };
            let savepoint = transaction
                .savepoint("file")
                .await
                .map_err(LoadError::Warehouse)?;
            let outcome = match load_file(&savepoint, &schema, table, body.clone()).await {
                Ok((rows, newest)) => {
                    savepoint.commit().await.map_err(LoadError::Warehouse)?;
                    if table == &EXPOSURES {
                        report.newest_exposed_at = report.newest_exposed_at.max(newest);
                    }
                    FileOutcome::Loaded { rows, rejected: 0 }
                }
                Err(FileFailure::Unreadable(reason)) => {
                    savepoint.rollback().await.map_err(LoadError::Warehouse)?;
                    FileOutcome::Quarantined { reason }
                }
                Err(FileFailure::Refused(reason)) => {
                    savepoint.rollback().await.map_err(LoadError::Warehouse)?;
                    tracing::warn!(key = %file.key, %reason, "file refused; loading it row by row");
                    let mut savepoint = transaction
                        .savepoint("file_rows")
                        .await
                        .map_err(LoadError::Warehouse)?;
                    match load_rows_one_by_one(&mut savepoint, &schema, table, &file.key, body).await {
                        Ok((rows, rejected)) => {
                            if !rejected.is_empty() {
                                savepoint
                                    .batch_execute(&ledger::insert_rejected_rows(
                                        Dialect::Postgres,
                                        &schema,
                                        &rejected,
                                    ))
                                    .await
                                    .map_err(LoadError::Warehouse)?;
                            }
                            savepoint.commit().await.map_err(LoadError::Warehouse)?;
                            FileOutcome::Loaded {
                                rows,
                                rejected: rejected.len() as u64,
                            }
                        }
                        Err(FileFailure::Unreadable(reason) | FileFailure::Refused(reason)) => {
                            savepoint.rollback().await.map_err(LoadError::Warehouse)?;
                            FileOutcome::Quarantined { reason }
                        }
                        Err(FileFailure::Batch(error)) => return Err(LoadError::Warehouse(error)),
                    }
                }
                Err(FileFailure::Batch(error)) => return Err(LoadError::Warehouse(error)),
            };
            // Records the sink could not make rows of: dead letters, beside the file.
            let dead_letters = record_dead_letters(&transaction, lakes, file, &schema).await?;
            let outcome = match outcome {
                FileOutcome::Loaded { rows, rejected } => FileOutcome::Loaded {
                    rows,
                    rejected: rejected + dead_letters,
                },
                other => other,
            };
            let (status, rows_loaded, rows_rejected, reason) = match &outcome {
                FileOutcome::Loaded { rows, rejected } => ("loaded", *rows, *rejected, None),
                FileOutcome::Quarantined { reason } => {
                    ("quarantined", 0, dead_letters, Some(reason.as_str()))
                }
                FileOutcome::AlreadyLoaded => continue,
            };
            let row = LedgerRow {
                object_key: &file.key,
                etag: &file.etag,
                size_bytes: file.size,
                rows_in_file: file.rows + file.rejected_rows,
                rows_loaded,
                rows_rejected,
                batch_id,
                status,
                reason,
            };
            write_ledger_row(&transaction, &schema, &row).await?;
            report.outcomes.push((file.key.clone(), outcome));
        }
        transaction.commit().await.map_err(LoadError::Warehouse)?;
        Ok(report)
    }
}

/// Records one file's ledger row, in the batch's transaction.
async fn write_ledger_row(
    transaction: &Transaction<'_>,
    schema: &str,
    row: &LedgerRow<'_>,
) -> Result<(), LoadError> {
    transaction
        .batch_execute(&ledger::insert_ledger_row(Dialect::Postgres, schema, row))
        .await
        .map_err(LoadError::Warehouse)
}

/// Puts the dead letters the sink kept beside `file` into `exposures_rejected`; returns
/// how many.
async fn record_dead_letters(
    transaction: &Transaction<'_>,
    lakes: &mut super::LoaderLake,
    file: &FileRecord,
    schema: &str,
) -> Result<u64, LoadError> {
    let dead_letters = lakes.dead_letters(file).await?;
    for chunk in dead_letters.chunks(REJECTED_ROWS_PER_STATEMENT) {
        transaction
            .batch_execute(&ledger::insert_rejected_rows(Dialect::Postgres, schema, chunk))
            .await
            .map_err(LoadError::Warehouse)?;
    }
    Ok(dead_letters.len() as u64)
}

/// Stages one file's rows and inserts those whose `event_id` is new into `table`.
/// Returns rows inserted and the newest row time among them.
async fn load_file(
    client: &Transaction<'_>,
    schema: &str,
    table: &TableDef,
    body: Bytes,
) -> Result<(u64, Option<DateTime<Utc>>), FileFailure> {
    client.batch_execute(&sql::truncate_stage(table)).await?;
    let reader = parquet_rows(body)?;
    let types: Vec<Type> = table.columns.iter().map(|c| stage_type(c.kind)).collect();
    let sink = client.copy_in(&sql::copy_into_stage(table)).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for batch in reader {
        let batch = batch.map_err(corrupt)?;
        let columns = BatchColumns::new(&batch, table)?;
        for row in 0..batch.num_rows() {
            let values = columns.row(row);
            writer.as_mut().write(&as_params(&values)).await?;
        }
    }
    writer.as_mut().finish().await?;
    let inserted = client
        .query_one(&sql::insert_from_stage(schema, table), &[])
        .await?;
    Ok((inserted.get::<_, i64>(0) as u64, inserted.get(1)))
}

fn parquet_rows(body: Bytes) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, FileFailure> {
    ParquetRecordBatchReaderBuilder::try_new(body)
        .and_then(|builder| builder.build())
        .map_err(|e| FileFailure::Unreadable(format!("not readable Parquet: {e}")))
}

fn corrupt(error: arrow_schema::ArrowError) -> FileFailure {
    FileFailure::Unreadable(format!("corrupt Parquet data: {error}"))
}

#[cfg(test)]
mod tests;
