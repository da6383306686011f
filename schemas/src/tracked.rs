//! The tables GrowthBook's tracking plugin fills besides `exposures`: `feature_usage`
//! (one row per feature evaluation) and `events` (one row per custom event), the
//! fact-table rows GrowthBook metrics are defined on.
//!
//! They take the exposures' path through the pipeline: the same Kafka topic, sink,
//! ledger and loader, exactly once by the same rules. What differs is the row:
//!
//! - [`TableDef`] lists a table's columns; [`FEATURE_USAGE`] and [`EVENTS`] are the two.
//!   DDL, the Parquet schema and the loaders' SQL are generated from the list, as for
//!   `exposures`.
//! - [`TrackedRow`] is one row, checked against the [`loadable`](crate::loadable) rules
//!   when it is made ([`TrackedRow::from_object`]): ingest makes it from the plugin's
//!   event, and the sink reads it back from Kafka by the same function, so what ingest
//!   answered 200 for is what the sink writes.
//! - On Kafka a row is a JSON object whose first member is `"$table"` (the table's
//!   name) and whose other members are the columns ([`TrackedRow::to_kafka_value`]).
//!   Exposure records never start with it, so the sink tells the three apart by
//!   the first bytes ([`TrackedRow::table_of_kafka_value`]).
//! - [`TrackedBatchBuilder`] collects rows into Arrow columns for the lake.
//!
//! The plugin sends no time and no event id: the receive time is the row's time
//! (`received_at`) and ingest makes a UUIDv7 `event_id`, as `/exposure` does.

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::columns::{Column, ColumnType, TableDef};
use crate::error::{ErrorCode, FieldError};
use crate::lake_row::RowError;
use crate::loadable::{self, Root, MAX_JSON_BYTES};
use crate::timestamp::{parse_timestamp, write_timestamp};

const fn column(name: &'static str, kind: ColumnType, nullable: bool) -> Column {
    Column { name, kind, nullable }
}

const EVENT_ID: Column = column("event_id", ColumnType::Text(128), false);
const RECEIVED_AT: Column = column("received_at", ColumnType::Timestamp, false);
const ENVIRONMENT: Column = column("environment", ColumnType::Text(128), true);
const USER_ID: Column = column("user_id", ColumnType::Text(256), true);
const DEVICE_ID: Column = column("device_id", ColumnType::Text(256), true);
const ATTRIBUTES: Column = column("attributes", ColumnType::Json, true);
const URL: Column = column("url", ColumnType::Text(4096), true);
const SDK_LANGUAGE: Column = column("sdk_language", ColumnType::Text(32), true);
const SDK_VERSION: Column = column("sdk_version", ColumnType::Text(64), true);
const EXTRA: Column = column("extra", ColumnType::Json, true);
const KAFKA_PARTITION: Column = column("kafka_partition", ColumnType::Int32, false);
const KAFKA_OFFSET: Column = column("kafka_offset", ColumnType::Int64, false);

/// `feature_usage`: one row per feature evaluation the plugin reported.
pub const FEATURE_USAGE: TableDef = TableDef {
    name: "feature_usage",
    columns: &[
        EVENT_ID,
        RECEIVED_AT,
        ENVIRONMENT,
        column("feature_key", ColumnType::Text(256), false),
        // The evaluated value as JSON (`true`, `"blue"`, `{"limit": 3}`).
        column("value", ColumnType::Json, true),
        column("source", ColumnType::Text(64), true),
        column("rule_id", ColumnType::Text(256), true),
        column("experiment_id", ColumnType::Text(256), true),
        // The variation's key (JS); Python reports only its index, kept in `extra`.
        column("variation_id", ColumnType::Text(256), true),
        column("in_experiment", ColumnType::Boolean, true),
        USER_ID,
        DEVICE_ID,
        ATTRIBUTES,
        URL,
        SDK_LANGUAGE,
        SDK_VERSION,
        EXTRA,
        KAFKA_PARTITION,
        KAFKA_OFFSET,
    ],
    user_column: "user_id",
    time_column: "received_at",
};

/// `events`: one row per custom event (`logEvent` / `log_event`, `window.gbEvents`).
pub const EVENTS: TableDef = TableDef {
    name: "events",
    columns: &[
        EVENT_ID,
        RECEIVED_AT,
        ENVIRONMENT,
        column("event_name", ColumnType::Text(256), false),
        column("properties", ColumnType::Json, true),
        USER_ID,
        DEVICE_ID,
        column("session_id", ColumnType::Text(256), true),
        column("page_id", ColumnType::Text(256), true),
        ATTRIBUTES,
        URL,
        column("page_title", ColumnType::Text(1024), true),
        column("utm_source", ColumnType::Text(256), true),
        column("utm_medium", ColumnType::Text(256), true),
        column("utm_campaign", ColumnType::Text(256), true),
        column("utm_term", ColumnType::Text(256), true),
        column("utm_content", ColumnType::Text(256), true),
        SDK_LANGUAGE,
        SDK_VERSION,
        EXTRA,
        KAFKA_PARTITION,
        KAFKA_OFFSET,
    ],
    user_column: "user_id",
    time_column: "received_at",
};

/// The tables a tracked row can belong to.
pub const TRACKED_TABLES: [&TableDef; 2] = [&FEATURE_USAGE, &EVENTS];

/// The first member of a tracked row's Kafka value.
pub const TABLE_FIELD: &str = "$table";

/// Deepest nesting of a JSON column of a tracked row (`{}` is 1): far below SUPER's
/// 1,000 levels, far above what event properties need.
pub const MAX_JSON_DEPTH: usize = 32;

/// One value of a tracked row, typed by its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(Option<String>),
    /// Compact JSON text.
    Json(Option<String>),
    Timestamp(DateTime<Utc>),
    Boolean(Option<bool>),
}

/// One row of a tracked table: a [`Cell`] per column but the Kafka position.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedRow {
    pub table: &'static TableDef,
    cells: Vec<Cell>,
}

impl TrackedRow {
    /// The row whose columns are `object`'s members (absent or `null`: SQL NULL), checked
    /// against the loadable rules. Members that are not columns are refused: they
    /// belong in `extra`.
    pub fn from_object(
        table: &'static TableDef,
        mut object: Map<String, Value>,
    ) -> Result<TrackedRow, FieldError> {
        let mut cells = Vec::with_capacity(table.columns.len());
        for column in table.row_columns() {
            let value = object.remove(column.name).filter(|value| !value.is_null());
            let cell = cell(column, value)?;
            let is_null = matches!(cell, Cell::Text(None) | Cell::Json(None) | Cell::Boolean(None));
            if is_null && !column.nullable {
                return Err(FieldError::new(
                    ErrorCode::MissingField,
                    column.name,
                    format!("{} is missing", column.name),
                ));
            }
            cells.push(cell);
        }
        if let Some(name) = object.keys().next() {
            return Err(FieldError::new(
                ErrorCode::WrongType,
                name.clone(),
                format!("{name} is not a column of {}", table.name),
            ));
        }
        Ok(TrackedRow { table, cells })
    }

    /// The value of column `name`.
    pub fn cell(&self, name: &str) -> Option<&Cell> {
        let index = self.table.columns.iter().position(|column| column.name == name)?;
        self.cells.get(index)
    }

    /// The Kafka message key: the user, else the device, else the event, so one user's
    /// rows stay in order on one partition.
    pub fn partition_key(&self) -> &str {
        ["user_id", "device_id", "event_id"]
            .into_iter()
            .find_map(|name| match self.cell(name) {
                Some(Cell::Text(Some(text))) => Some(text.as_str()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The row as its Kafka value: `{"$table": NAME, column: value, …}`, JSON columns as
    /// JSON, timestamps as ingest writes them.
    pub fn to_kafka_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(TABLE_FIELD.as_bytes());
        out.extend_from_slice(b"\":");
        push_json_string(&mut out, self.table.name);
        for (column, cell) in self.table.row_columns().iter().zip(&self.cells) {
            let start = out.len();
            out.push(b',');
            push_json_string(&mut out, column.name);
            out.push(b':');
            match cell {
                Cell::Text(Some(text)) => push_json_string(&mut out, text),
                Cell::Json(Some(json)) => out.extend_from_slice(json.as_bytes()),
                Cell::Timestamp(time) => write_timestamp(&mut out, time),
                Cell::Boolean(Some(flag)) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
                Cell::Text(None) | Cell::Json(None) | Cell::Boolean(None) => out.truncate(start),
            }
        }
        out.push(b'}');
        out
    }

    /// The table a Kafka value is a row of, from its first bytes; `None` for anything
    /// that does not start like [`TrackedRow::to_kafka_value`] writes (an exposure).
    pub fn table_of_kafka_value(value: &[u8]) -> Option<&'static TableDef> {
        let rest = value.strip_prefix(b"{\"$table\":\"")?;
        TRACKED_TABLES.into_iter().find(|table| {
            rest.strip_prefix(table.name.as_bytes())
                .is_some_and(|after| after.starts_with(b"\""))
        })
    }

    /// Reads a Kafka value back into its row, by the same checks that made it.
    pub fn from_kafka_value(value: &[u8]) -> Result<TrackedRow, RowError> {
        let not_a_row = |why: String| RowError::NotAnExposure(format!("not a tracked row: {why}"));
        let mut object: Map<String, Value> =
            serde_json::from_slice(value).map_err(|e| not_a_row(e.to_string()))?;
        let name = match object.remove(TABLE_FIELD) {
            Some(Value::String(name)) => name,
            _ => return Err(not_a_row(format!("no {TABLE_FIELD} member"))),
        };
        let table = TRACKED_TABLES
            .into_iter()
            .find(|table| table.name == name)
            .ok_or_else(|| not_a_row(format!("unknown table {name:?}")))?;
        Ok(TrackedRow::from_object(table, object)?)
    }
}

impl crate::Normalizer {
    /// A row of `table` received at `received_at` from the columns in `object`: with a
    /// server `event_id` (UUIDv7) and the receive time (to the microsecond), the
    /// `forwarded_for` policy applied to `attributes`, and every loadable rule checked.
    pub fn tracked_row(
        &self,
        table: &'static TableDef,
        mut object: Map<String, Value>,
        received_at: DateTime<Utc>,
    ) -> Result<TrackedRow, FieldError> {
        let received_at = crate::normalize::truncate_to_micros(received_at);
        object.insert("event_id".into(), Value::String(uuid::Uuid::now_v7().to_string()));
        let mut time = Vec::with_capacity(32);
        write_timestamp(&mut time, &received_at);
        let time: Value = serde_json::from_slice(&time).unwrap_or_default();
        object.insert("received_at".into(), time);
        if let Some(Value::Object(attributes)) = object.get_mut("attributes") {
            self.ip_policy.apply(attributes, &self.ip_hash_salt);
        }
        TrackedRow::from_object(table, object)
    }
}

/// `value` as the cell of `column`, checked: no NUL, text within its width, JSON that
/// every warehouse stores.
fn cell(column: &Column, value: Option<Value>) -> Result<Cell, FieldError> {
    let name = column.name;
    let wrong_type =
        |expected: &str| FieldError::new(ErrorCode::WrongType, name, format!("{name} must be {expected}"));
    Ok(match (column.kind, value) {
        (ColumnType::Text(_), None) => Cell::Text(None),
        (ColumnType::Text(max), Some(Value::String(text))) => {
            loadable::check_texts([(name, Some(text.as_str()), max as usize)])?;
            Cell::Text(Some(text))
        }
        (ColumnType::Text(_), Some(_)) => return Err(wrong_type("a string")),
        (ColumnType::Json, None) => Cell::Json(None),
        (ColumnType::Json, Some(value)) => Cell::Json(Some(json_text(name, value)?)),
        (ColumnType::Boolean, None) => Cell::Boolean(None),
        (ColumnType::Boolean, Some(Value::Bool(flag))) => Cell::Boolean(Some(flag)),
        (ColumnType::Boolean, Some(_)) => return Err(wrong_type("true or false")),
        (ColumnType::Timestamp, Some(Value::String(text))) => {
            Cell::Timestamp(parse_timestamp(&text).map_err(|_| wrong_type("an RFC 3339 time"))?)
        }
        (ColumnType::Timestamp, _) => return Err(wrong_type("an RFC 3339 time")),
        (ColumnType::Int32 | ColumnType::Int64, _) => return Err(wrong_type("set by the sink, not sent")),
    })
}

/// A JSON column's compact text, checked: no NUL in keys or strings, numbers a double
/// holds, at most [`MAX_JSON_DEPTH`] levels and [`MAX_JSON_BYTES`] bytes.
fn json_text(name: &'static str, value: Value) -> Result<String, FieldError> {
    // The checks walk objects; wrapped under its own name, a scalar or array is walked
    // too and named `name` (or `name.path`) in an error.
    let mut wrapper = Map::new();
    wrapper.insert(name.to_owned(), value);
    loadable::check_object(Root::Event, &wrapper, MAX_JSON_DEPTH + 1)?;
    let value = wrapper.remove(name).unwrap_or_default();
    let text = value.to_string();
    if text.len() > MAX_JSON_BYTES {
        return Err(FieldError::new(
            ErrorCode::TooLarge,
            name,
            format!(
                "{name} is {} bytes of JSON; a warehouse JSON column holds {MAX_JSON_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(text)
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Collects tracked rows of one table into Arrow columns; [`TrackedBatchBuilder::finish`]
/// yields a `RecordBatch` of the table's [`TableDef::arrow_schema`].
pub struct TrackedBatchBuilder {
    table: &'static TableDef,
    builders: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
    approx_bytes: usize,
}

impl TrackedBatchBuilder {
    pub fn new(table: &'static TableDef) -> TrackedBatchBuilder {
        let builders = table
            .columns
            .iter()
            .map(|column| -> Box<dyn ArrayBuilder> {
                match column.kind {
                    ColumnType::Text(_) | ColumnType::Json => Box::new(StringBuilder::new()),
                    ColumnType::Timestamp => Box::new(TimestampMicrosecondBuilder::new()),
                    ColumnType::Boolean => Box::new(BooleanBuilder::new()),
                    ColumnType::Int32 => Box::new(Int32Builder::new()),
                    ColumnType::Int64 => Box::new(Int64Builder::new()),
                }
            })
            .collect();
        TrackedBatchBuilder {
            table,
            builders,
            rows: 0,
            approx_bytes: 0,
        }
    }

    /// Appends `row`, read from Kafka `partition` at `offset`. A row of another table is
    /// a caller's bug: it is refused rather than written into the wrong columns.
    pub fn append(&mut self, row: &TrackedRow, partition: i32, offset: i64) -> Result<(), ArrowError> {
        if row.table != self.table {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a row of {} appended to a batch of {}",
                row.table.name, self.table.name
            )));
        }
        let (cell_builders, position) = self.builders.split_at_mut(row.cells.len());
        for (builder, cell) in cell_builders.iter_mut().zip(&row.cells) {
            let builder = builder.as_any_mut();
            match cell {
                Cell::Text(text) | Cell::Json(text) => {
                    self.approx_bytes += text.as_deref().map_or(0, str::len);
                    if let Some(builder) = builder.downcast_mut::<StringBuilder>() {
                        builder.append_option(text.as_deref());
                    }
                }
                Cell::Timestamp(time) => {
                    if let Some(builder) = builder.downcast_mut::<TimestampMicrosecondBuilder>() {
                        builder.append_value(time.timestamp_micros());
                    }
                }
                Cell::Boolean(flag) => {
                    if let Some(builder) = builder.downcast_mut::<BooleanBuilder>() {
                        builder.append_option(*flag);
                    }
                }
            }
        }
        // The Kafka position: the table's last two columns.
        if let [partition_builder, offset_builder] = position {
            if let Some(builder) = partition_builder.as_any_mut().downcast_mut::<Int32Builder>() {
                builder.append_value(partition);
            }
            if let Some(builder) = offset_builder.as_any_mut().downcast_mut::<Int64Builder>() {
                builder.append_value(offset);
            }
        }
        self.rows += 1;
        self.approx_bytes += 64;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rough in-memory size of what was appended, for flush-by-size decisions.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }

    /// The rows appended so far as one batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|builder| builder.finish()).collect();
        self.rows = 0;
        self.approx_bytes = 0;
        RecordBatch::try_new(self.table.arrow_schema(), columns)
    }
}

#[cfg(test)]
mod tests;
