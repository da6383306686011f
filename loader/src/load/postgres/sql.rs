//! The SQL of PostgreSQL loading that is PostgreSQL's own, snapshot-tested below: the
//! checks at start-up, how a file is staged and inserted (whole, or row by row), and what
//! `reload-rejected` reads and writes. What both warehouses share — the ledger, the DDL,
//! the JSON cast — comes from [`schemas::ledger`] and [`schemas::ddl`]; Redshift's own
//! SQL is in `redshift/sql/`.

use schemas::ddl::{self, Dialect};
use schemas::ledger;
use schemas::{ColumnType, TableDef};

/// The batch transaction's temporary stage of `table`'s rows, one file at a time.
fn stage(table: &TableDef) -> String {
    format!("{}_stage", table.name)
}

/// The ledger's columns (`$1`: the schema), for [`ledger::ledger_migrations`].
pub(super) const LEDGER_COLUMNS: &str = "SELECT column_name::text FROM information_schema.columns \
     WHERE table_schema = $1 AND table_name = 'exposures_loads'";

/// A table's columns and types in order (`$1`: the schema, `$2`: the table), checked
/// against [`expected_columns`].
pub(super) const TABLE_COLUMNS: &str =
    "SELECT column_name::text, data_type::text FROM information_schema.columns \
     WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position";

/// `name data_type` of each column of `table`, as `information_schema` words them.
pub(super) fn expected_columns(table: &TableDef) -> Vec<String> {
    table
        .columns
        .iter()
        .map(|column| {
            let data_type = match column.kind {
                ColumnType::Text(_) => "text",
                ColumnType::Json => "jsonb",
                ColumnType::Timestamp => "timestamp with time zone",
                ColumnType::Boolean => "boolean",
                ColumnType::Int32 => "integer",
                ColumnType::Int64 => "bigint",
            };
            format!("{} {data_type}", column.name)
        })
        .collect()
}

/// The first statement of a batch transaction: the ledger's lock, held to the commit,
/// so that each file's "already loaded?" is answered after every other loader's commit
/// (READ COMMITTED reads the latest committed rows) and a second loader waits for this
/// one. SHARE ROW EXCLUSIVE conflicts with itself and with writes, not with reads:
/// `status` and `reconcile` go on reading.
pub(super) fn lock_ledger(schema: &str) -> String {
    format!("LOCK TABLE {schema}.exposures_loads IN SHARE ROW EXCLUSIVE MODE")
}

/// Creates the stage of `table` for this transaction.
pub(super) fn create_stage(table: &TableDef) -> String {
    ddl::stage_table_for(Dialect::Postgres, &stage(table), table)
}

/// Empties the stage before the next file.
pub(super) fn truncate_stage(table: &TableDef) -> String {
    format!("TRUNCATE {}", stage(table))
}

/// Streams a file's rows into the stage (binary COPY, typed as the stage's columns).
pub(super) fn copy_into_stage(table: &TableDef) -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        stage(table),
        ledger::column_list(table)
    )
}

/// Inserts the staged rows whose `event_id` is new; answers how many, and the newest
/// row time among them (the freshness gauge's, without reading the whole table).
pub(super) fn insert_from_stage(schema: &str, table: &TableDef) -> String {
    let (name, time) = (table.name, table.time_column);
    format!(
        "WITH inserted AS (INSERT INTO {schema}.{name} ({}) SELECT {} FROM {} \
         ON CONFLICT (event_id) DO NOTHING RETURNING {time}) SELECT COUNT(*), MAX({time}) FROM inserted",
        ledger::column_list(table),
        ledger::insert_values(table, Dialect::Postgres),
        stage(table)
    )
}

/// Inserts one row bound as parameters `$1…` in column order, unless its `event_id` is
/// already loaded.
pub(super) fn insert_row(schema: &str, table: &TableDef) -> String {
    let placeholders: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| match column.kind {
            ColumnType::Json => ledger::json_cast(Dialect::Postgres, &format!("${}", index + 1)),
            _ => format!("${}", index + 1),
        })
        .collect();
    format!(
        "INSERT INTO {schema}.{} ({}) VALUES ({}) ON CONFLICT (event_id) DO NOTHING",
        table.name,
        ledger::column_list(table),
        placeholders.join(", ")
    )
}

/// Every rejected row, oldest first, for `reload-rejected`.
pub(super) fn rejected_rows(schema: &str) -> String {
    schemas::ledger::rejected_rows_query(schema)
}

/// Removes a rejected row that loaded (`$1` partition, `$2` offset, `$3` object key).
pub(super) fn forget_rejected(schema: &str) -> String {
    format!(
        "DELETE FROM {schema}.exposures_rejected WHERE kafka_partition = $1 AND kafka_offset = $2 AND object_key = $3"
    )
}

/// Records the new reason of a row refused again (`$4`).
pub(super) fn remember_rejected(schema: &str) -> String {
    format!(
        "UPDATE {schema}.exposures_rejected SET reason = $4, rejected_at = now() \
         WHERE kafka_partition = $1 AND kafka_offset = $2 AND object_key = $3"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_load_sql_snapshot() {
        let mut statements = vec![
            LEDGER_COLUMNS.to_owned(),
            TABLE_COLUMNS.to_owned(),
            lock_ledger("analytics"),
            rejected_rows("analytics"),
            forget_rejected("analytics"),
            remember_rejected("analytics"),
        ];
        for table in schemas::TABLES {
            statements.extend([
                expected_columns(table).join(", "),
                create_stage(table),
                truncate_stage(table),
                copy_into_stage(table),
                insert_from_stage("analytics", table),
                insert_row("analytics", table),
            ]);
        }
        let snapshot = statements.join("\n") + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/load/postgres/sql_snapshot.sql"),
                &snapshot,
            )
            .expect("snapshot written");
        }
        // A change here is a change of what the loader sends PostgreSQL: review the diff of
        // sql_snapshot.sql, then rewrite it with UPDATE_SNAPSHOTS=1.
        assert_eq!(snapshot, include_str!("sql_snapshot.sql"));
    }
}
