//! `exposures reload-rejected`: the rows of `exposures_rejected` loaded again once what
//! refused them is fixed — each in a savepoint, at most once (the `event_id` index), and
//! gone from the table when it loads.

use chrono::{DateTime, Utc};
use schemas::ledger;
use schemas::{ColumnType, Exposure, ExposureBatchBuilder, LakeRow, COLUMNS};
use tokio_postgres::types::ToSql;

use super::rows::{as_params, prepare_row_insert, BatchColumns};
use super::{FileFailure, Postgres};
use crate::load::{LoadError, ReloadReport};

impl Postgres {
    /// Tries every row of `exposures_rejected` again, in one transaction: a row that
    /// loads (or whose event_id is already loaded) leaves the table, one refused again
    /// keeps its place with the new reason. Run it after fixing what refused them.
    pub async fn reload_rejected(&mut self) -> Result<ReloadReport, LoadError> {
        let schema = self.schema.clone();
        let mut transaction = self.client.transaction().await.map_err(LoadError::Warehouse)?;
        let rows = transaction
            .query(&super::sql::rejected_rows(&schema), &[])
            .await
            .map_err(LoadError::Warehouse)?;
        let insert = prepare_row_insert(&transaction, &schema)
            .await
            .map_err(LoadError::Warehouse)?;
        let forget = super::sql::forget_rejected(&schema);
        let remember = super::sql::remember_rejected(&schema);
        let mut report = ReloadReport::default();
        for row in rows {
            let (partition, offset, key, raw): (i32, i64, Option<String>, Option<String>) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            // A dead letter holds the Kafka record (an exposure as JSON); a row refused by
            // the database holds the row. Either way the position is the table's.
            let record = raw
                .as_deref()
                .and_then(|raw| serde_json::from_str::<Exposure>(raw).ok());
            let as_batch = record.map(|exposure| {
                let mut builder = ExposureBatchBuilder::new();
                builder.append(&LakeRow::from_exposure(&exposure), partition, offset);
                builder.finish()
            });
            let values = match &as_batch {
                Some(Ok(batch)) => BatchColumns::new(batch)
                    .map(|columns| columns.row(0))
                    .map_err(|_| "the record does not make a row".to_owned()),
                Some(Err(error)) => Err(format!("the record does not make a row: {error}")),
                None => raw
                    .as_deref()
                    .ok_or_else(|| "the row has no raw_row".to_owned())
                    .and_then(|raw| values_from_json(raw, partition, offset)),
            };
            let savepoint = transaction.savepoint("row").await.map_err(LoadError::Warehouse)?;
            let outcome = match &values {
                Ok(values) => savepoint
                    .execute(&insert, &as_params(values))
                    .await
                    .map(|_| ())
                    .map_err(FileFailure::from),
                Err(reason) => Err(FileFailure::Refused(reason.clone())),
            };
            match outcome {
                Ok(()) => {
                    savepoint
                        .execute(&forget, &[&partition, &offset, &key])
                        .await
                        .map_err(LoadError::Warehouse)?;
                    savepoint.commit().await.map_err(LoadError::Warehouse)?;
                    report.reloaded += 1;
                }
                Err(FileFailure::Refused(reason) | FileFailure::Unreadable(reason)) => {
                    savepoint.rollback().await.map_err(LoadError::Warehouse)?;
                    transaction
                        .execute(
                            &remember,
                            &[&partition, &offset, &key, &ledger::storable(&reason)],
                        )
                        .await
                        .map_err(LoadError::Warehouse)?;
                    report.still_refused += 1;
                }
                Err(FileFailure::Batch(error)) => return Err(LoadError::Warehouse(error)),
            }
        }
        transaction.commit().await.map_err(LoadError::Warehouse)?;
        Ok(report)
    }
}

/// A refused row's JSON text (as [`BatchColumns::rejected`] wrote it) → its values, at
/// the Kafka position the table records.
fn values_from_json(
    raw: &str,
    partition: i32,
    offset: i64,
) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, String> {
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(|e| format!("raw_row is not a JSON object: {e}"))?;
    fields.insert("kafka_partition".into(), partition.into());
    fields.insert("kafka_offset".into(), offset.into());
    COLUMNS
        .iter()
        .map(|column| -> Result<Box<dyn ToSql + Sync + Send>, String> {
            let value = fields.get(column.name).unwrap_or(&serde_json::Value::Null);
            let wrong = || format!("raw_row: {} is not a {:?}", column.name, column.kind);
            if value.is_null() {
                return Ok(match column.kind {
                    ColumnType::Text(_) | ColumnType::Json => Box::new(None::<String>),
                    ColumnType::Timestamp => Box::new(None::<DateTime<Utc>>),
                    ColumnType::Boolean => Box::new(None::<bool>),
                    ColumnType::Int32 => Box::new(None::<i32>),
                    ColumnType::Int64 => Box::new(None::<i64>),
                });
            }
            Ok(match column.kind {
                ColumnType::Text(_) | ColumnType::Json => {
                    Box::new(value.as_str().ok_or_else(wrong)?.to_owned())
                }
                ColumnType::Timestamp => Box::new(
                    value
                        .as_str()
                        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                        .map(|at| at.with_timezone(&Utc))
                        .ok_or_else(wrong)?,
                ),
                ColumnType::Boolean => Box::new(value.as_bool().ok_or_else(wrong)?),
                ColumnType::Int32 => Box::new(
                    value
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(wrong)?,
                ),
                ColumnType::Int64 => Box::new(value.as_i64().ok_or_else(wrong)?),
            })
        })
        .collect()
}
