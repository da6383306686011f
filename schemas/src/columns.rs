//! The exposure table's columns: one list from which the Arrow schema of the lake's
//! Parquet files (and, with the loader, the warehouse DDL) is generated, so the two
//! cannot drift apart. Order matters: Redshift's `COPY … FORMAT AS PARQUET` maps
//! columns by position.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Bumped when the column list changes incompatibly; part of every lake object key.
pub const LAKE_SCHEMA_VERSION: &str = "v1";

/// Logical type of a column, mapped to Arrow here and to SQL types by the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text of at most this many bytes (Redshift `VARCHAR(n)`; validation or the
    /// sink keeps values within it, so a `COPY` never fails on length).
    Text(u32),
    /// A JSON document stored as text in Parquet (SUPER / jsonb in the warehouse).
    Json,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    Boolean,
    Int32,
    Int64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
    pub nullable: bool,
}

const fn column(name: &'static str, kind: ColumnType, nullable: bool) -> Column {
    Column { name, kind, nullable }
}

/// Attributes also stored as their own text columns (the seed's production attribute
/// schema), so analysts can filter and group without JSON functions. In column order.
pub const PROMOTED_TEXT_ATTRIBUTES: [&str; 7] = [
    "ds_session_id",
    "geo_country_code",
    "geo_city",
    "currency_id",
    "locale",
    "platform",
    "user_agent",
];

/// The promoted attribute stored as a boolean column.
pub const PROMOTED_BOOLEAN_ATTRIBUTE: &str = "is_kf_verified";

/// The exposure table, in order.
pub const COLUMNS: [Column; 20] = [
    column("event_id", ColumnType::Text(128), false),
    column("ds_user_id", ColumnType::Text(256), true),
    column("anonymous_id", ColumnType::Text(256), true),
    column("experiment_id", ColumnType::Text(256), false),
    column("variation_id", ColumnType::Text(256), false),
    column("exposed_at", ColumnType::Timestamp, false),
    column("received_at", ColumnType::Timestamp, false),
    column("source", ColumnType::Text(128), true),
    column("attributes", ColumnType::Json, true),
    column("ds_session_id", ColumnType::Text(256), true),
    column("geo_country_code", ColumnType::Text(64), true),
    column("geo_city", ColumnType::Text(256), true),
    column("currency_id", ColumnType::Text(64), true),
    column("locale", ColumnType::Text(64), true),
    column("platform", ColumnType::Text(64), true),
    column("is_kf_verified", ColumnType::Boolean, true),
    column("user_agent", ColumnType::Text(1024), true),
    column("extra", ColumnType::Json, true),
    column("kafka_partition", ColumnType::Int32, false),
    column("kafka_offset", ColumnType::Int64, false),
];

/// A warehouse table of the pipeline: its name (also its directory in the lake) and its
/// columns, in order (Redshift's `COPY … FORMAT AS PARQUET` maps columns by position).
///
/// Tables are equal when their names are: a name is a table's identity (its warehouse
/// table, its lake directory), and comparing every column on the sink's per-record path
/// showed in its profile.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// The column the user is joined on (Redshift `DISTKEY`).
    pub user_column: &'static str,
    /// The row's time (Redshift `SORTKEY`, the dedup window).
    pub time_column: &'static str,
}

impl PartialEq for TableDef {
    fn eq(&self, other: &TableDef) -> bool {
        self.name == other.name
    }
}

impl Eq for TableDef {}

impl TableDef {
    /// The Arrow schema of the table's Parquet files.
    pub fn arrow_schema(&self) -> SchemaRef {
        schema_of(self.columns)
    }

    /// The declared byte limit of a text column (`usize::MAX` for other columns).
    pub fn max_bytes(&self, name: &str) -> usize {
        self.columns
            .iter()
            .find(|column| column.name == name)
            .map_or(usize::MAX, |column| match column.kind {
                ColumnType::Text(max) => max as usize,
                _ => usize::MAX,
            })
    }

    /// The columns a row carries: all but the Kafka position, which the sink adds.
    pub(crate) fn row_columns(&self) -> &'static [Column] {
        &self.columns[..self.columns.len() - 2]
    }
}

/// `exposures`, as a [`TableDef`].
pub const EXPOSURES: TableDef = TableDef {
    name: "exposures",
    columns: &COLUMNS,
    user_column: "ds_user_id",
    time_column: "exposed_at",
};

/// Every table the pipeline loads, `exposures` first.
pub const TABLES: [&TableDef; 3] = [
    &EXPOSURES,
    &crate::tracked::FEATURE_USAGE,
    &crate::tracked::EVENTS,
];

/// The Arrow schema of the lake's Parquet files of `exposures`.
pub fn arrow_schema() -> SchemaRef {
    schema_of(&COLUMNS)
}

/// The Arrow schema of Parquet files holding `columns`.
pub(crate) fn schema_of(columns: &[Column]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let data_type = match c.kind {
                ColumnType::Text(_) | ColumnType::Json => DataType::Utf8,
                // UTC wall-clock micros, no zone: Parquet INT64 TIMESTAMP(isAdjustedToUTC=false,
                // MICROS) — what Redshift's TIMESTAMP (without time zone) is; see
                // docs/design.md, "Timestamps in the lake".
                ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
                ColumnType::Boolean => DataType::Boolean,
                ColumnType::Int32 => DataType::Int32,
                ColumnType::Int64 => DataType::Int64,
            };
            Field::new(c.name, data_type, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The declared byte limit of a text column (`usize::MAX` for other columns). A `const
/// fn`, so hot paths look their widths up at compile time.
pub const fn column_max_bytes(name: &str) -> usize {
    let mut index = 0;
    while index < COLUMNS.len() {
        if same_name(COLUMNS[index].name, name) {
            return match COLUMNS[index].kind {
                ColumnType::Text(max) => max as usize,
                _ => usize::MAX,
            };
        }
        index += 1;
    }
    usize::MAX
}

/// `a == b`, usable in a `const fn`.
const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}
