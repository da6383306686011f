//! The SQL the loaders of both warehouses share, per dialect, beside [`crate::ddl`]:
//! the ledger's columns and the statements that read and write it, the JSON cast that
//! turns staged text into SUPER / jsonb, the insert list of `exposures`, and string
//! literals. One place, so PostgreSQL and Redshift cannot drift apart.

use crate::columns::{ColumnType, TableDef, EXPOSURES};
use crate::dialect::Dialect;

/// The ledger `exposures_loads`, in column order, as `(name, type per dialect)`:
/// one row per lake object loaded or quarantined. A file's rows add up:
/// `rows_in_file = rows_loaded + rows_rejected + rows already in the table` (duplicates),
/// and a quarantined file has `rows_loaded = 0`.
pub const LEDGER_COLUMNS: [(&str, LedgerType); 10] = [
    ("object_key", LedgerType::Text),
    ("etag", LedgerType::Text),
    ("size_bytes", LedgerType::Count),
    ("rows_in_file", LedgerType::Count),
    ("rows_loaded", LedgerType::Count),
    ("batch_id", LedgerType::Text),
    ("status", LedgerType::Text),
    ("reason", LedgerType::Reason),
    ("loaded_at", LedgerType::Time),
    // Added after the first release: last, so `ALTER TABLE … ADD COLUMN` reproduces it.
    ("rows_rejected", LedgerType::Count),
];

/// Longest `reason` kept in the ledger, in bytes (Redshift `VARCHAR(1024)` counts bytes;
/// a little room is left below it).
pub const MAX_REASON_BYTES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerType {
    Text,
    Count,
    Reason,
    Time,
}

impl LedgerType {
    pub fn sql(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (LedgerType::Text, Dialect::Redshift) => "VARCHAR(1024) NOT NULL",
            (LedgerType::Text, Dialect::Postgres) => "TEXT NOT NULL",
            (LedgerType::Count, _) => "BIGINT NOT NULL",
            (LedgerType::Reason, Dialect::Redshift) => "VARCHAR(1024)",
            (LedgerType::Reason, Dialect::Postgres) => "TEXT",
            (LedgerType::Time, Dialect::Redshift) => "TIMESTAMP NOT NULL",
            (LedgerType::Time, Dialect::Postgres) => "TIMESTAMPTZ NOT NULL",
        }
    }
}

/// `object_key, etag, …, loaded_at`.
pub fn ledger_column_list() -> String {
    LEDGER_COLUMNS.map(|(name, _)| name).join(", ")
}

/// What the ledger says of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow<'a> {
    pub object_key: &'a str,
    pub etag: &'a str,
    pub size_bytes: u64,
    pub rows_in_file: u64,
    pub rows_loaded: u64,
    /// Rows the warehouse refused, now in `exposures_rejected`.
    pub rows_rejected: u64,
    pub batch_id: &'a str,
    /// `loaded` or `quarantined`.
    pub status: &'a str,
    pub reason: Option<&'a str>,
}

/// The current time in `dialect`.
fn now(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Redshift => "GETDATE()",
        Dialect::Postgres => "now()",
    }
}

/// `INSERT INTO {schema}.exposures_loads (…) VALUES (…)` for one row; the reason is cut
/// to [`MAX_REASON_BYTES`] on a character boundary.
pub fn insert_ledger_row(dialect: Dialect, schema: &str, row: &LedgerRow<'_>) -> String {
    let reason = row.reason.map_or("NULL".to_owned(), |reason| {
        literal(dialect, truncate_utf8(reason, MAX_REASON_BYTES))
    });
    format!(
        "INSERT INTO {schema}.exposures_loads ({}) VALUES ({}, {}, {}, {}, {}, {}, {}, {reason}, {}, {})",
        ledger_column_list(),
        literal(dialect, row.object_key),
        literal(dialect, row.etag),
        row.size_bytes,
        row.rows_in_file,
        row.rows_loaded,
        literal(dialect, row.batch_id),
        literal(dialect, row.status),
        now(dialect),
        row.rows_rejected,
    )
}

/// `INSERT INTO {schema}.exposures_loads (…) SELECT …` from a query that yields every
/// column but `loaded_at`, in order (Redshift records a whole batch's rows at once).
pub fn insert_ledger_rows_from(dialect: Dialect, schema: &str, select_without_time: &str) -> String {
    let columns: Vec<&str> = LEDGER_COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != "loaded_at")
        .chain(["loaded_at"])
        .collect();
    format!(
        "INSERT INTO {schema}.exposures_loads ({}) SELECT *, {} FROM ({select_without_time}) ledger_rows",
        columns.join(", "),
        now(dialect)
    )
}

/// Brings a ledger created by an earlier release up to [`LEDGER_COLUMNS`], given the
/// columns it has.
pub fn ledger_migrations(schema: &str, existing: &[String]) -> Vec<String> {
    if existing.is_empty() || existing.iter().any(|c| c == "rows_rejected") {
        return Vec::new();
    }
    vec![format!(
        "ALTER TABLE {schema}.exposures_loads ADD COLUMN rows_rejected BIGINT NOT NULL DEFAULT 0"
    )]
}

/// The dead-letter table `exposures_rejected`: rows of lake files the warehouse refused,
/// one per row, with the row as JSON text (NUL and every other character escaped, so
/// the text itself is always storable; a raw NUL in a record that is not even JSON is
/// shown as U+FFFD) and the warehouse's reason.
pub const REJECTED_COLUMNS: [(&str, RejectedType); 7] = [
    ("event_id", RejectedType::Text),
    ("object_key", RejectedType::Text),
    ("kafka_partition", RejectedType::Int),
    ("kafka_offset", RejectedType::Long),
    ("raw_row", RejectedType::Document),
    ("reason", RejectedType::Text),
    ("rejected_at", RejectedType::Time),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectedType {
    Text,
    Int,
    Long,
    Document,
    Time,
}

impl RejectedType {
    pub fn sql(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (RejectedType::Text, Dialect::Redshift) => "VARCHAR(1024)",
            (RejectedType::Text | RejectedType::Document, Dialect::Postgres) => "TEXT",
            (RejectedType::Int, _) => "INTEGER NOT NULL",
            (RejectedType::Long, _) => "BIGINT NOT NULL",
            (RejectedType::Document, Dialect::Redshift) => "VARCHAR(65535)",
            (RejectedType::Time, Dialect::Redshift) => "TIMESTAMP NOT NULL",
            (RejectedType::Time, Dialect::Postgres) => "TIMESTAMPTZ NOT NULL",
        }
    }
}

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub event_id: Option<String>,
    pub object_key: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub raw_row: String,
    pub reason: String,
}

/// `INSERT INTO {schema}.exposures_rejected … VALUES …` for `rows` (at least one).
pub fn insert_rejected_rows(dialect: Dialect, schema: &str, rows: &[RejectedRow]) -> String {
    let columns: Vec<&str> = REJECTED_COLUMNS.iter().map(|(name, _)| *name).collect();
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let event_id = row.event_id.as_deref().map_or("NULL".to_owned(), |id| {
                literal(dialect, truncate_utf8(&storable(id), MAX_REASON_BYTES))
            });
            format!(
                "({event_id}, {}, {}, {}, {}, {}, {})",
                literal(dialect, &storable(&row.object_key)),
                row.kafka_partition,
                row.kafka_offset,
                literal(dialect, truncate_utf8(&storable(&row.raw_row), 65_535)),
                literal(dialect, truncate_utf8(&storable(&row.reason), MAX_REASON_BYTES)),
                now(dialect)
            )
        })
        .collect();
    format!(
        "INSERT INTO {schema}.exposures_rejected ({}) VALUES {}",
        columns.join(", "),
        values.join(", ")
    )
}

/// Every row of `exposures_rejected`, oldest first: its place, and `raw_row`, for
/// `reload-rejected`.
pub fn rejected_rows_query(schema: &str) -> String {
    format!(
        "SELECT kafka_partition, kafka_offset, object_key, raw_row FROM {schema}.exposures_rejected \
         ORDER BY rejected_at, kafka_partition, kafka_offset"
    )
}

/// `text` with NUL (which no warehouse text type holds) shown as U+FFFD.
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

/// The (object_key, etag) pairs among `keys` that the ledger holds as loaded.
pub fn already_loaded(dialect: Dialect, schema: &str, keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|key| literal(dialect, key)).collect();
    format!(
        "SELECT object_key, etag FROM {schema}.exposures_loads WHERE status = 'loaded' AND object_key IN ({})",
        keys.join(", ")
    )
}

/// Staged JSON text → the warehouse's JSON type.
pub fn json_cast(dialect: Dialect, expression: &str) -> String {
    match dialect {
        Dialect::Redshift => format!("JSON_PARSE({expression})"),
        Dialect::Postgres => format!("{expression}::jsonb"),
    }
}

/// Every column of `exposures`, comma-separated, in [`COLUMNS`](crate::COLUMNS) order.
pub fn exposure_column_list() -> String {
    column_list(&EXPOSURES)
}

/// Every column of `table`, comma-separated, in order.
pub fn column_list(table: &TableDef) -> String {
    table
        .columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The select list that inserts staged rows into `exposures`: every column of
/// [`COLUMNS`](crate::COLUMNS) in order, JSON columns cast with [`json_cast`].
pub fn exposure_insert_values(dialect: Dialect) -> String {
    insert_values(&EXPOSURES, dialect)
}

/// The select list that inserts staged rows into `table`: every column in order, JSON
/// columns cast with [`json_cast`].
pub fn insert_values(table: &TableDef, dialect: Dialect) -> String {
    table
        .columns
        .iter()
        .map(|c| match c.kind {
            ColumnType::Json => json_cast(dialect, c.name),
            _ => c.name.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A SQL string literal. Redshift treats backslash as an escape inside literals, so it is
/// doubled with the quote; PostgreSQL gets an `E'…'` literal, which means the same
/// whatever `standard_conforming_strings` says.
pub fn literal(dialect: Dialect, text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\'', "''");
    match dialect {
        Dialect::Redshift => format!("'{escaped}'"),
        Dialect::Postgres if text.contains('\\') => format!("E'{escaped}'"),
        Dialect::Postgres => format!("'{escaped}'"),
    }
}

/// The longest prefix of `text` of at most `max_bytes` that ends on a character boundary.
pub fn truncate_utf8(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarantined() -> LedgerRow<'static> {
        LedgerRow {
            object_key: "exposures/v1/dt=2026-11-25/hour=10/p003-00000000000000000100.parquet",
            etag: "\"abc\"",
            size_bytes: 4096,
            rows_in_file: 50,
            rows_loaded: 0,
            rows_rejected: 0,
            batch_id: "b1",
            status: "quarantined",
            reason: Some(r"it's not Parquet: C:\x"),
        }
    }

    #[test]
    fn ledger_insert_snapshot_in_both_dialects() {
        assert_eq!(
            insert_ledger_row(Dialect::Redshift, "analytics", &quarantined()),
            "INSERT INTO analytics.exposures_loads (object_key, etag, size_bytes, rows_in_file, rows_loaded, \
             batch_id, status, reason, loaded_at, rows_rejected) VALUES ('exposures/v1/dt=2026-11-25/hour=10/p003-00000000000000000100.parquet', \
             '\"abc\"', 4096, 50, 0, 'b1', 'quarantined', 'it''s not Parquet: C:\\\\x', GETDATE(), 0)"
        );
        assert_eq!(
            insert_ledger_row(Dialect::Postgres, "public", &quarantined()),
            "INSERT INTO public.exposures_loads (object_key, etag, size_bytes, rows_in_file, rows_loaded, \
             batch_id, status, reason, loaded_at, rows_rejected) VALUES ('exposures/v1/dt=2026-11-25/hour=10/p003-00000000000000000100.parquet', \
             '\"abc\"', 4096, 50, 0, 'b1', 'quarantined', E'it''s not Parquet: C:\\\\x', now(), 0)"
        );
    }

    #[test]
    fn ledger_reads_and_batch_inserts_snapshot() {
        assert_eq!(
            already_loaded(Dialect::Postgres, "public", &["a'b", "c"]),
            "SELECT object_key, etag FROM public.exposures_loads WHERE status = 'loaded' AND object_key IN ('a''b', 'c')"
        );
        assert_eq!(
            insert_ledger_rows_from(Dialect::Redshift, "analytics", "SELECT 1"),
            "INSERT INTO analytics.exposures_loads (object_key, etag, size_bytes, rows_in_file, rows_loaded, \
             batch_id, status, reason, rows_rejected, loaded_at) SELECT *, GETDATE() FROM (SELECT 1) ledger_rows"
        );
    }

    #[test]
    fn json_cast_and_insert_list_snapshot() {
        let redshift = exposure_insert_values(Dialect::Redshift);
        let postgres = exposure_insert_values(Dialect::Postgres);
        assert!(
            redshift.contains("source, JSON_PARSE(attributes), ds_session_id"),
            "{redshift}"
        );
        assert!(
            redshift.contains("user_agent, JSON_PARSE(extra), kafka_partition"),
            "{redshift}"
        );
        assert!(
            postgres.contains("source, attributes::jsonb, ds_session_id"),
            "{postgres}"
        );
        assert!(
            postgres.contains("user_agent, extra::jsonb, kafka_partition"),
            "{postgres}"
        );
        assert_eq!(
            exposure_column_list().split(", ").count(),
            postgres.split(", ").count()
        );
    }

    #[test]
    fn rejected_rows_snapshot_and_nul_is_never_written() {
        let row = RejectedRow {
            event_id: Some("ev\u{0}1".into()),
            object_key: "k".into(),
            kafka_partition: 2,
            kafka_offset: 77,
            raw_row: r#"{"experiment_id":"a\u0000b"}"#.into(),
            reason: "invalid byte sequence for encoding \"UTF8\": 0x00".into(),
        };
        assert_eq!(
            insert_rejected_rows(Dialect::Postgres, "public", &[row]),
            "INSERT INTO public.exposures_rejected (event_id, object_key, kafka_partition, kafka_offset, raw_row, \
             reason, rejected_at) VALUES ('ev\u{fffd}1', 'k', 2, 77, E'{\"experiment_id\":\"a\\\\u0000b\"}', \
             'invalid byte sequence for encoding \"UTF8\": 0x00', now())"
        );
        assert_eq!(
            ledger_migrations("s", &["object_key".into(), "loaded_at".into()]),
            ["ALTER TABLE s.exposures_loads ADD COLUMN rows_rejected BIGINT NOT NULL DEFAULT 0"]
        );
        assert!(ledger_migrations("s", &["rows_rejected".into()]).is_empty());
        assert!(
            ledger_migrations("s", &[]).is_empty(),
            "a new table is created whole"
        );
    }

    #[test]
    fn literals_escape_per_dialect_and_truncation_keeps_characters_whole() {
        assert_eq!(literal(Dialect::Redshift, r"it's a \path"), r"'it''s a \\path'");
        assert_eq!(literal(Dialect::Postgres, r"it's a \path"), r"E'it''s a \\path'");
        assert_eq!(literal(Dialect::Postgres, "plain"), "'plain'");
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("hi", 10), "hi");
    }
}
