//! `exposures reload-rejected`: the rows of `exposures_rejected` loaded again once what
//! refused them is fixed — each in a savepoint, at most once (the `event_id` index), and
//! gone from the table when it loads.

use chrono::{DateTime, Utc};
use schemas::ledger;
use schemas::{ColumnType, TableDef, TABLES};
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

use super::rows::{as_params, prepare_row_insert};
use super::{FileFailure, Postgres};
use crate::load::rejected::{row_of_raw, table_of_object_key};
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
        let mut inserts = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let insert = prepare_row_insert(&transaction, &schema, table)
                .await
                .map_err(LoadError::Warehouse)?;
            inserts.push(insert);
        }
        let forget = super::sql::forget_rejected(&schema);
        let remember = super::sql::remember_rejected(&schema);
        let mut report = ReloadReport::default();
        for row in rows {
            let (partition, offset, key, raw): (i32, i64, Option<String>, Option<String>) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            // A dead letter holds the Kafka record, a row refused by the database the row
            // (`row_of_raw` makes either into the row); the position is the table's, and
            // the row's table the one its file was of.
            let file_table = table_of_object_key(key.as_deref().unwrap_or_default());
            let values = raw
                .as_deref()
                .ok_or_else(|| "the row has no raw_row".to_owned())
                .and_then(|raw| row_of_raw(raw, partition, offset, file_table))
                .and_then(|(table, fields)| Ok((table, values_of(&fields, table)?)));
            let savepoint = transaction.savepoint("row").await.map_err(LoadError::Warehouse)?;
            let outcome = match &values {
                Ok((table, values)) => savepoint
                    .execute(
                        &inserts[TABLES.iter().position(|known| known == table).unwrap_or(0)],
                        &as_params(values),
                    )
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

/// A row of `table` (as [`row_of_raw`] makes it) → its values, typed as the insert binds
/// them.
fn values_of(
    fields: &Map<String, Value>,
    table: &TableDef,
) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, String> {
    table
        .columns
        .iter()
        .map(|column| -> Result<Box<dyn ToSql + Sync + Send>, String> {
            let value = fields.get(column.name).unwrap_or(&Value::Null);
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
