//! The SQL and the COPY manifest of one Redshift batch (see the module doc of
//! [`super`] for the steps). Shared pieces — the ledger, the JSON cast, literals — come
//! from [`schemas::ledger`], so this file holds only what is Redshift's own.

use std::time::Duration;

use schemas::ddl::{self, Dialect};
use schemas::lake_layout::FileRecord;
use schemas::ledger;
use schemas::{ColumnType, TableDef};

const STAGE: &str = "exposures_stage";
/// The batch's files that the ledger does not hold as loaded, decided under its lock.
const FILES: &str = "exposures_batch_files";
const NEW_ROWS: &str = "exposures_new";
/// The staged rows of a file loaded row by row, each with why it cannot be loaded (NULL
/// if it can).
const CHECKED: &str = "exposures_checked";

/// `text` as a Redshift string literal.
pub(super) fn literal(text: &str) -> String {
    ledger::literal(Dialect::Redshift, text)
}

/// The COPY manifest of `files`. Parquet COPY requires each entry's `content_length`.
pub(super) fn manifest(files: &[&FileRecord]) -> String {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|file| {
            serde_json::json!({
                "url": format!("s3://{}/{}", file.bucket, file.key),
                "mandatory": true,
                "meta": {"content_length": file.size},
            })
        })
        .collect();
    serde_json::json!({ "entries": entries }).to_string()
}

/// The Data API refuses a statement over 100 KB ("The maximum query statement size is
/// 100 KB", <https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html>; the error
/// reads "Cannot process query string larger than 100kB").
pub const MAX_STATEMENT_BYTES: usize = 100 * 1024;

/// What the batch-files statement holds besides its file rows, with room to spare.
const FILES_STATEMENT_OVERHEAD: usize = 4 * 1024;

/// At most this many statements in one `BatchExecuteStatement` ("Sqls … Maximum number
/// of 40 items", BatchExecuteStatement in the Redshift Data API Reference).
pub const MAX_BATCH_STATEMENTS: usize = 40;

/// One file's row in the batch-files statement (`SELECT … AS object_key, …`).
fn file_row(f: &FileRecord) -> String {
    format!(
        "SELECT {} AS object_key, {} AS etag, CAST({} AS BIGINT) AS size_bytes, CAST({} AS BIGINT) AS rows_in_file, \
         {} AS kafka_partition, CAST({} AS BIGINT) AS first_offset, CAST({} AS BIGINT) AS last_offset, \
         CAST({} AS BIGINT) AS rows_rejected",
        literal(&f.key),
        literal(&f.etag),
        f.size,
        f.rows + f.rejected_rows,
        f.partition,
        f.first_offset,
        f.last_offset,
        f.rejected_rows
    )
}

/// Splits `files` into consecutive groups, one transaction each, whose statements all
/// stay under [`MAX_STATEMENT_BYTES`]. The batch-files statement is the one that grows
/// with the files (a row per file, about 450 bytes plus the key); the result query lists
/// only the keys, so it is always shorter.
pub(super) fn transactions<'a>(files: &'a [&'a FileRecord]) -> Vec<&'a [&'a FileRecord]> {
    within_budget(files, MAX_STATEMENT_BYTES - FILES_STATEMENT_OVERHEAD, |file| {
        file_row(file).len() + " UNION ALL ".len()
    })
}

/// Splits `items` into consecutive groups whose `size`s add up to at most `budget` (an
/// item larger than the budget alone in its group).
pub(super) fn within_budget<T>(items: &[T], budget: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut groups = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (index, item) in items.iter().enumerate() {
        let item_size = size(item);
        if index > start && used + item_size > budget {
            groups.push(&items[start..index]);
            (start, used) = (index, 0);
        }
        used += item_size;
    }
    if start < items.len() {
        groups.push(&items[start..]);
    }
    groups
}

/// The already-loaded queries of `keys`, as many as keep each under the statement limit.
pub(super) fn already_loaded(schema: &str, keys: &[&str]) -> Vec<String> {
    within_budget(keys, MAX_STATEMENT_BYTES - 1024, |key| literal(key).len() + 2)
        .into_iter()
        .map(|chunk| ledger::already_loaded(Dialect::Redshift, schema, chunk))
        .collect()
}

/// The `BatchExecuteStatement` calls that record one file's dead letters `rows` in
/// `exposures_rejected`. Each chunk of rows replaces whatever rows
/// the table holds for its own offsets — a DELETE of its offset range, then its INSERT —
/// so every call is idempotent by itself and a file's dead letters end up there once,
/// however many calls they take, calls retried or loaders racing. Each call takes the
/// table's lock first (two DELETE-then-INSERTs on SNAPSHOT isolation would both insert)
/// and holds at most [`MAX_BATCH_STATEMENTS`] statements, each under the size limit.
pub(super) fn dead_letter_calls(
    schema: &str,
    object_key: &str,
    rows: &mut [ledger::RejectedRow],
) -> Vec<Vec<String>> {
    rows.sort_by_key(|row| (row.kafka_partition, row.kafka_offset));
    let budget = MAX_STATEMENT_BYTES - 1024;
    let statement_size = |row: &ledger::RejectedRow| {
        ledger::insert_rejected_rows(Dialect::Redshift, schema, std::slice::from_ref(row)).len()
    };
    let pairs: Vec<[String; 2]> = rows
        .chunk_by(|a, b| a.kafka_partition == b.kafka_partition)
        .flat_map(|partition| within_budget(partition, budget, statement_size))
        .map(|chunk| {
            // Exactly the chunk's offsets: rows the row-by-row load refused for the same
            // file sit between them and are not this chunk's to replace.
            let offsets: Vec<String> = chunk.iter().map(|row| row.kafka_offset.to_string()).collect();
            [
                format!(
                    "DELETE FROM {schema}.exposures_rejected WHERE object_key = {} AND kafka_partition = {} \
                     AND kafka_offset IN ({})",
                    literal(object_key),
                    chunk[0].kafka_partition,
                    offsets.join(", ")
                ),
                ledger::insert_rejected_rows(Dialect::Redshift, schema, chunk),
            ]
        })
        .collect();
    within_budget(&pairs, MAX_CALL_BYTES, |pair| pair[0].len() + pair[1].len())
        .into_iter()
        .flat_map(|pairs| pairs.chunks((MAX_BATCH_STATEMENTS - 1) / 2))
        .map(|pairs| {
            std::iter::once(format!("LOCK {schema}.exposures_rejected"))
                .chain(pairs.iter().flatten().cloned())
                .collect()
        })
        .collect()
}

/// Bytes of SQL in one call, our own bound: the Data API documents none for a whole
/// request, and 40 statements of 100 KB would make a 4 MB one.
const MAX_CALL_BYTES: usize = 1024 * 1024;

/// The statements of one batch transaction (module doc); the last one's result is the
/// ledger rows written, with the newest row time inserted. The files are of one table.
///
/// The first takes the ledger's lock, and which files to load is decided under it:
/// whatever another loader committed before is seen and skipped, and a loader that comes
/// later waits for this one to commit. Without it two loaders on SNAPSHOT isolation — the
/// default of every Serverless workgroup and of new provisioned clusters ("Isolation
/// levels in Amazon Redshift") — would both load the same files, and both commit.
pub fn load_statements(
    schema: &str,
    manifest_url: &str,
    iam_role: &str,
    dedup_window: Duration,
    batch_id: &str,
    files: &[&FileRecord],
) -> Vec<String> {
    Batch {
        schema,
        table: table_of(files),
        manifest_url,
        iam_role,
        dedup_window,
        batch_id,
        files,
    }
    .statements(false)
}

/// The table of a group of files (the load stage groups them by table); `exposures` for
/// none.
pub(super) fn table_of(files: &[&FileRecord]) -> &'static TableDef {
    files
        .first()
        .and_then(|file| file.table_def())
        .unwrap_or(&schemas::EXPOSURES)
}

/// What one batch transaction loads, and from where: files of one table.
pub struct Batch<'a> {
    pub schema: &'a str,
    pub table: &'static TableDef,
    pub manifest_url: &'a str,
    pub iam_role: &'a str,
    pub dedup_window: Duration,
    pub batch_id: &'a str,
    pub files: &'a [&'a FileRecord],
}

impl Batch<'_> {
    /// The transaction's statements ([`load_statements`]).
    ///
    /// `checked`: the files (one, refused as a whole) are loaded row by row instead: its
    /// rows go into a stage whose text columns are as wide as Redshift allows, each row
    /// is checked against what `exposures` takes (NOT NULL, VARCHAR widths in bytes, JSON
    /// that `JSON_PARSE` reads), the rows that pass are loaded as usual, and each one that
    /// does not goes to `exposures_rejected` with its reason and the row as JSON — the
    /// same shape the PostgreSQL loader writes. The ledger's `rows_rejected` counts them
    /// with the file's dead letters.
    pub fn statements(&self, checked: bool) -> Vec<String> {
        let (schema, table) = (self.schema, self.table);
        let (name, time) = (table.name, table.time_column);
        let column_list = ledger::column_list(table);
        let ranked_columns: Vec<String> = column_list.split(", ").map(|c| format!("ranked.{c}")).collect();
        let role = if self.iam_role == "default" {
            "default".to_owned()
        } else {
            literal(self.iam_role)
        };
        let window = self.dedup_window.as_secs();
        let file_rows: Vec<String> = self.files.iter().map(|f| file_row(f)).collect();
        let keys: Vec<String> = self.files.iter().map(|f| literal(&f.key)).collect();
        let batch = literal(self.batch_id);
        let in_batch_files = format!(
            "EXISTS (SELECT 1 FROM {FILES} f WHERE f.kafka_partition = s.kafka_partition \
             AND s.kafka_offset BETWEEN f.first_offset AND f.last_offset)"
        );
        let (rows, loadable, refused) = if checked {
            (
                CHECKED,
                "s.refusal IS NULL AND ",
                format!("(SELECT COUNT(*) FROM {CHECKED} WHERE refusal IS NOT NULL)"),
            )
        } else {
            (STAGE, "", "0".to_owned())
        };
        let mut statements = vec![
            lock_ledger(schema),
            if checked {
                ddl::wide_stage_table_for(STAGE, table)
            } else {
                ddl::stage_table_for(Dialect::Redshift, STAGE, table)
            },
            format!(
                "COPY {STAGE} FROM {} IAM_ROLE {role} FORMAT AS PARQUET MANIFEST",
                literal(self.manifest_url)
            ),
        ];
        if checked {
            statements.push(format!(
                "CREATE TEMP TABLE {CHECKED} AS SELECT {column_list}, {} AS refusal FROM {STAGE}",
                refusal(table)
            ));
        }
        statements.extend([
            format!(
                "CREATE TEMP TABLE {FILES} AS SELECT f.* FROM ({}) f WHERE NOT EXISTS (SELECT 1 FROM \
                 {schema}.exposures_loads l WHERE l.object_key = f.object_key AND l.etag = f.etag AND l.status = 'loaded')",
                file_rows.join(" UNION ALL ")
            ),
            format!(
                "CREATE TEMP TABLE {NEW_ROWS} AS SELECT {} FROM (SELECT {column_list}, ROW_NUMBER() OVER \
                 (PARTITION BY event_id ORDER BY received_at, kafka_partition, kafka_offset) AS occurrence FROM {rows} s \
                 WHERE {loadable}{in_batch_files}) ranked \
                 LEFT JOIN (SELECT DISTINCT event_id FROM {schema}.{name} WHERE received_at BETWEEN \
                 (SELECT MIN(received_at) FROM {rows}) - INTERVAL '{window} seconds' AND \
                 (SELECT MAX(received_at) FROM {rows}) + INTERVAL '{window} seconds') loaded \
                 ON loaded.event_id = ranked.event_id WHERE ranked.occurrence = 1 AND loaded.event_id IS NULL",
                ranked_columns.join(", ")
            ),
            format!(
                "INSERT INTO {schema}.{name} ({column_list}) SELECT {} FROM {NEW_ROWS}",
                ledger::insert_values(table, Dialect::Redshift)
            ),
        ]);
        if checked {
            statements.push(format!(
                "INSERT INTO {schema}.exposures_rejected (event_id, object_key, kafka_partition, kafka_offset, \
                 raw_row, reason, rejected_at) SELECT LEFT(s.event_id, 256), f.object_key, s.kafka_partition, \
                 s.kafka_offset, {}, s.refusal, GETDATE() FROM {CHECKED} s JOIN {FILES} f ON f.kafka_partition = \
                 s.kafka_partition AND s.kafka_offset BETWEEN f.first_offset AND f.last_offset WHERE s.refusal IS NOT NULL",
                row_as_json(table)
            ));
        }
        statements.extend([
            ledger::insert_ledger_rows_from(
                Dialect::Redshift,
                schema,
                &format!(
                    "SELECT f.object_key, f.etag, f.size_bytes, f.rows_in_file, COUNT(n.event_id) AS rows_loaded, \
                     {batch} AS batch_id, 'loaded' AS status, CAST(NULL AS VARCHAR(1024)) AS reason, \
                     f.rows_rejected + {refused} AS rows_rejected \
                     FROM {FILES} f LEFT JOIN {NEW_ROWS} n ON n.kafka_partition = f.kafka_partition \
                     AND n.kafka_offset BETWEEN f.first_offset AND f.last_offset \
                     GROUP BY f.object_key, f.etag, f.size_bytes, f.rows_in_file, f.rows_rejected"
                ),
            ),
            format!(
                "SELECT object_key, rows_loaded, rows_rejected, (SELECT MAX({time}) FROM {NEW_ROWS}) AS newest \
                 FROM {schema}.exposures_loads WHERE batch_id = {batch} AND status = 'loaded' AND object_key IN ({})",
                keys.join(", ")
            ),
        ]);
        statements
    }
}

/// Why a staged row cannot go into `table`, or NULL: the first of a missing required
/// value, text longer in bytes than its `VARCHAR(n)` (Redshift measures bytes), JSON that
/// `JSON_PARSE` cannot read.
fn refusal(table: &TableDef) -> String {
    let checks: Vec<String> = table
        .columns
        .iter()
        .flat_map(|column| {
            let name = column.name;
            let mut checks = Vec::new();
            if !column.nullable {
                checks.push(format!("WHEN {name} IS NULL THEN '{name} is missing'"));
            }
            match column.kind {
                ColumnType::Text(width) => checks.push(format!(
                    "WHEN OCTET_LENGTH({name}) > {width} THEN '{name} is ' || CAST(OCTET_LENGTH({name}) AS VARCHAR(12)) \
                     || ' bytes, more than the column''s VARCHAR({width})'"
                )),
                ColumnType::Json => checks.push(format!(
                    "WHEN {name} IS NOT NULL AND NOT CAN_JSON_PARSE({name}) THEN '{name} is not JSON Redshift can parse'"
                )),
                _ => {}
            }
            checks
        })
        .collect();
    format!("CASE {} END", checks.join(" "))
}

/// A staged row as a JSON object, one key per column: text and JSON text as strings,
/// timestamps as RFC 3339 UTC with microseconds — what `reload-rejected` reads back.
fn row_as_json(table: &TableDef) -> String {
    let pairs: Vec<String> = table
        .columns
        .iter()
        .map(|column| {
            // Each value cut (in characters, up to 4 bytes each) so the whole object stays
            // under the 64 KB JSON_SERIALIZE can return: the refused value itself may be
            // 65,535 bytes in the wide stage.
            let value = match column.kind {
                ColumnType::Timestamp => {
                    format!("TO_CHAR(s.{}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')", column.name)
                }
                ColumnType::Text(_) => format!("LEFT(s.{}, 500)", column.name),
                ColumnType::Json => format!("LEFT(s.{}, 3000)", column.name),
                _ => format!("s.{}", column.name),
            };
            format!("'{}', {value}", column.name)
        })
        .collect();
    // Cut as the dead letters are (16 KiB), within `raw_row`'s VARCHAR(65535) bytes.
    format!("LEFT(JSON_SERIALIZE(OBJECT({})), 16000)", pairs.join(", "))
}

/// The statements of [`load_statements`] that read the files' rows — COPY, the dedup and
/// the insert (`JSON_PARSE`) — so that only their failures can be the data's fault.
pub const READ_THE_FILES: [usize; 3] = [2, 4, 5];

/// The same for [`Batch::statements`] row by row: COPY, the checks, the dedup, the insert and
/// the rejected rows (which carry the row as JSON).
pub const ROW_BY_ROW_READ_THE_FILES: [usize; 5] = [2, 3, 5, 6, 7];

/// `LOCK` on the ledger: the first statement of every transaction that decides from the
/// ledger what to write. Redshift's LOCK takes ACCESS EXCLUSIVE until the transaction
/// ends (the LOCK page of the Database Developer Guide).
pub(super) fn lock_ledger(schema: &str) -> String {
    format!("LOCK {schema}.exposures_loads")
}

#[cfg(test)]
mod tests;
