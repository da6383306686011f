//! Row-level quarantine (module doc of [`super`]): a file whose rows the database refused
//! as data is loaded again one row at a time, each row bound as typed parameters from
//! its Arrow columns, and each refused row becomes an `exposures_rejected` row.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use schemas::ledger::RejectedRow;
use schemas::{ColumnType, TableDef};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use super::{corrupt, parquet_rows, stage_type, FileFailure};

/// `INSERT INTO {table} … VALUES ($1, …) ON CONFLICT (event_id) DO NOTHING`, typed as
/// [`BatchColumns::row`] binds them.
pub(super) async fn prepare_row_insert(
    client: &Transaction<'_>,
    schema: &str,
    table: &TableDef,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    let types: Vec<Type> = table.columns.iter().map(|c| stage_type(c.kind)).collect();
    client
        .prepare_typed(&super::sql::insert_row(schema, table), &types)
        .await
}

pub(super) fn as_params<'a>(values: &'a [Box<dyn ToSql + Sync + Send + 'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// Inserts the file's rows one at a time, each in a savepoint: returns the rows
/// inserted and the rows the database refused, with its reasons (module doc).
pub(super) async fn load_rows_one_by_one(
    client: &mut Transaction<'_>,
    schema: &str,
    table: &TableDef,
    object_key: &str,
    body: Bytes,
) -> Result<(u64, Vec<RejectedRow>), FileFailure> {
    let insert = prepare_row_insert(client, schema, table).await?;
    let (mut inserted, mut rejected) = (0, Vec::new());
    for batch in parquet_rows(body)? {
        let batch = batch.map_err(corrupt)?;
        let columns = BatchColumns::new(&batch, table)?;
        for row in 0..batch.num_rows() {
            let values = columns.row(row);
            let savepoint = client.savepoint("row").await?;
            match savepoint.execute(&insert, &as_params(&values)).await {
                Ok(count) => {
                    savepoint.commit().await?;
                    inserted += count;
                }
                Err(error) => match FileFailure::from(error) {
                    FileFailure::Refused(reason) => {
                        savepoint.rollback().await?;
                        rejected.push(columns.rejected(row, object_key, reason));
                    }
                    other => return Err(other),
                },
            }
        }
    }
    Ok((inserted, rejected))
}

/// A record batch's columns, typed per its table's.
pub(super) struct BatchColumns<'a> {
    columns: Vec<crate::load::rejected::TypedColumn<'a>>,
}

impl<'a> BatchColumns<'a> {
    pub(super) fn new(batch: &'a RecordBatch, table: &TableDef) -> Result<BatchColumns<'a>, FileFailure> {
        let columns = crate::load::rejected::typed_columns(batch, table).map_err(FileFailure::Unreadable)?;
        Ok(BatchColumns { columns })
    }

    /// Row `row` as refused: its id and Kafka position, and the whole row as JSON text
    /// (JSON columns as the text they hold, so a row that is not valid JSON is kept too).
    fn rejected(&self, row: usize, object_key: &str, reason: String) -> RejectedRow {
        let fields = crate::load::rejected::row_json(&self.columns, row);
        let text = |name: &str| fields.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let number = |name: &str| fields.get(name).and_then(|v| v.as_i64()).unwrap_or(-1);
        RejectedRow {
            event_id: text("event_id"),
            object_key: object_key.to_owned(),
            kafka_partition: i32::try_from(number("kafka_partition")).unwrap_or(-1),
            kafka_offset: number("kafka_offset"),
            raw_row: serde_json::Value::Object(fields.clone()).to_string(),
            reason,
        }
    }

    pub(super) fn row(&self, row: usize) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
        self.columns
            .iter()
            .map(|(_, kind, array)| -> Box<dyn ToSql + Sync + Send + 'a> {
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
