//! `exposures_rejected.raw_row` as both loaders write it and `reload-rejected` reads it
//! back: a dead letter holds the Kafka record (an exposure as JSON); a row the warehouse
//! refused holds the row as a JSON object, one key per column of its table — text and
//! JSON columns as strings, timestamps as RFC 3339 UTC with microseconds, booleans and
//! integers as themselves, NULL as null.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::{TimeZone, Utc};
use schemas::tracked::{TrackedBatchBuilder, TrackedRow};
use schemas::{ColumnType, Exposure, ExposureBatchBuilder, LakeRow, TableDef, EXPOSURES};
use serde_json::{Map, Value};

/// A record batch's columns in `table`'s order, each with its name and type; `Err` names
/// the column the batch lacks.
pub(crate) fn typed_columns<'a>(
    batch: &'a RecordBatch,
    table: &TableDef,
) -> Result<Vec<TypedColumn<'a>>, String> {
    table
        .columns
        .iter()
        .map(|column| {
            batch
                .column_by_name(column.name)
                .map(|array| (column.name, column.kind, array.as_ref()))
                .ok_or_else(|| format!("column {} is missing", column.name))
        })
        .collect()
}

/// A column of a record batch: its name, type and values.
pub(crate) type TypedColumn<'a> = (&'static str, ColumnType, &'a dyn Array);

/// Row `row` of `columns` (from [`typed_columns`]) as the JSON object `raw_row` holds.
pub(crate) fn row_json(columns: &[TypedColumn<'_>], row: usize) -> Map<String, Value> {
    let mut fields = Map::new();
    for (name, kind, array) in columns {
        let value = if array.is_null(row) {
            Value::Null
        } else {
            match kind {
                ColumnType::Text(_) | ColumnType::Json => array
                    .as_string_opt::<i32>()
                    .map_or(Value::Null, |values| values.value(row).into()),
                ColumnType::Timestamp => array
                    .as_primitive_opt::<TimestampMicrosecondType>()
                    .and_then(|values| Utc.timestamp_micros(values.value(row)).single())
                    .map_or(Value::Null, |at| {
                        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into()
                    }),
                ColumnType::Boolean => array
                    .as_boolean_opt()
                    .map_or(Value::Null, |values| values.value(row).into()),
                ColumnType::Int32 => array
                    .as_primitive_opt::<Int32Type>()
                    .map_or(Value::Null, |values| values.value(row).into()),
                ColumnType::Int64 => array
                    .as_primitive_opt::<Int64Type>()
                    .map_or(Value::Null, |values| values.value(row).into()),
            }
        };
        fields.insert((*name).to_owned(), value);
    }
    fields
}

/// The row a `raw_row` stands for, at the Kafka position the table records, and its
/// table: a dead letter made into its row as the sink would have made it (an exposure,
/// or a row of the tracking plugin's tables, by its `$table`), or a refused row as
/// written, of `file_table` (the table of the file it was refused from).
pub(crate) fn row_of_raw(
    raw: &str,
    partition: i32,
    offset: i64,
    file_table: &'static TableDef,
) -> Result<(&'static TableDef, Map<String, Value>), String> {
    let made = |batch: Result<RecordBatch, arrow_schema::ArrowError>, table: &'static TableDef| {
        let batch = batch.map_err(|error| format!("the record does not make a row: {error}"))?;
        Ok::<_, String>(row_json(&typed_columns(&batch, table)?, 0))
    };
    let (table, mut fields) = if let Some(table) = TrackedRow::table_of_kafka_value(raw.as_bytes()) {
        let row = TrackedRow::from_kafka_value(raw.as_bytes()).map_err(|error| error.to_string())?;
        let mut builder = TrackedBatchBuilder::new(table);
        builder
            .append(&row, partition, offset)
            .map_err(|error| error.to_string())?;
        (table, made(builder.finish(), table)?)
    } else if let Ok(exposure) = serde_json::from_str::<Exposure>(raw) {
        let mut builder = ExposureBatchBuilder::new();
        builder.append(&LakeRow::from_exposure(&exposure), partition, offset);
        (&EXPOSURES, made(builder.finish(), &EXPOSURES)?)
    } else {
        let fields = serde_json::from_str::<Map<String, Value>>(raw)
            .map_err(|error| format!("raw_row is not a JSON object: {error}"))?;
        (file_table, fields)
    };
    fields.insert("kafka_partition".into(), partition.into());
    fields.insert("kafka_offset".into(), offset.into());
    Ok((table, fields))
}

/// The table whose file an `exposures_rejected.object_key` names: the one whose lake
/// directory (`feature_usage/v1/`…) the key holds; `exposures` for any other key (dead
/// letters are kept beside the exposures file of their range).
pub(crate) fn table_of_object_key(key: &str) -> &'static TableDef {
    schemas::TABLES
        .into_iter()
        .find(|table| {
            let dir = schemas::lake_layout::data_dir_of(table);
            key.starts_with(&dir) || key.contains(&format!("/{dir}"))
        })
        .unwrap_or(&EXPOSURES)
}

/// What `exposures reload-rejected` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Rows now in `exposures` (or already there: the event_id was loaded since).
    pub reloaded: u64,
    /// Rows refused again; their reason is updated.
    pub still_refused: u64,
}
