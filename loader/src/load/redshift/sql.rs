//! The SQL and the COPY manifest of one Redshift batch (see the module doc of
//! [`super`] for the steps). Shared pieces — the ledger, the JSON cast, literals — come
//! from [`schemas::ledger`], so this file holds only what is Redshift's own.

use std::time::Duration;

use schemas::ddl::{self, Dialect};
use schemas::lake_layout::FileRecord;
use schemas::ledger;
use schemas::{ColumnType, COLUMNS};

const STAGE: &str = "exposures_stage";
/// The batch's files that the ledger does not hold as loaded, decided under its lock.
const FILES: &str = "exposures_batch_files";
const NEW_ROWS: &str = "exposures_new";
/// The staged rows of a file loaded row by row, each with why it cannot be loaded (NULL
/// if it can).
const CHECKED: &str = "exposures_checked";

fn literal(text: &str) -> String {
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
fn within_budget<T>(items: &[T], budget: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
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
            let (first, last) = (&chunk[0], &chunk[chunk.len() - 1]);
            [
                format!(
                    "DELETE FROM {schema}.exposures_rejected WHERE object_key = {} AND kafka_partition = {} \
                     AND kafka_offset BETWEEN {} AND {}",
                    literal(object_key),
                    first.kafka_partition,
                    first.kafka_offset,
                    last.kafka_offset
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
/// ledger rows written, with the newest `exposed_at` inserted.
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
        manifest_url,
        iam_role,
        dedup_window,
        batch_id,
        files,
    }
    .statements(false)
}

/// The statements that load one file Redshift refused, row by row: its rows go into a
/// stage whose text columns are as wide as Redshift allows, each row is checked against
/// what `exposures` takes (NOT NULL, VARCHAR widths in bytes, JSON that `JSON_PARSE`
/// reads), the rows that pass are loaded as [`load_statements`] loads them, and each one
/// that does not goes to `exposures_rejected` with its reason and the row as JSON — the
/// same shape the PostgreSQL loader writes. The ledger's `rows_rejected` counts them with
/// the file's dead letters.
pub fn row_by_row_statements(
    schema: &str,
    manifest_url: &str,
    iam_role: &str,
    dedup_window: Duration,
    batch_id: &str,
    file: &FileRecord,
) -> Vec<String> {
    Batch {
        schema,
        manifest_url,
        iam_role,
        dedup_window,
        batch_id,
        files: &[file],
    }
    .statements(true)
}

/// What one batch transaction loads, and from where.
struct Batch<'a> {
    schema: &'a str,
    manifest_url: &'a str,
    iam_role: &'a str,
    dedup_window: Duration,
    batch_id: &'a str,
    files: &'a [&'a FileRecord],
}

impl Batch<'_> {
    /// The transaction's statements; `checked`: row by row ([`row_by_row_statements`]).
    fn statements(&self, checked: bool) -> Vec<String> {
        let schema = self.schema;
        let column_list = ledger::exposure_column_list();
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
                ddl::wide_stage_table(STAGE)
            } else {
                ddl::stage_table(Dialect::Redshift, STAGE)
            },
            format!(
                "COPY {STAGE} FROM {} IAM_ROLE {role} FORMAT AS PARQUET MANIFEST",
                literal(self.manifest_url)
            ),
        ];
        if checked {
            statements.push(format!(
                "CREATE TEMP TABLE {CHECKED} AS SELECT {column_list}, {} AS refusal FROM {STAGE}",
                refusal()
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
                 LEFT JOIN (SELECT DISTINCT event_id FROM {schema}.exposures WHERE received_at BETWEEN \
                 (SELECT MIN(received_at) FROM {rows}) - INTERVAL '{window} seconds' AND \
                 (SELECT MAX(received_at) FROM {rows}) + INTERVAL '{window} seconds') loaded \
                 ON loaded.event_id = ranked.event_id WHERE ranked.occurrence = 1 AND loaded.event_id IS NULL",
                ranked_columns.join(", ")
            ),
            format!(
                "INSERT INTO {schema}.exposures ({column_list}) SELECT {} FROM {NEW_ROWS}",
                ledger::exposure_insert_values(Dialect::Redshift)
            ),
        ]);
        if checked {
            statements.push(format!(
                "INSERT INTO {schema}.exposures_rejected (event_id, object_key, kafka_partition, kafka_offset, \
                 raw_row, reason, rejected_at) SELECT LEFT(s.event_id, 256), f.object_key, s.kafka_partition, \
                 s.kafka_offset, {}, s.refusal, GETDATE() FROM {CHECKED} s JOIN {FILES} f ON f.kafka_partition = \
                 s.kafka_partition AND s.kafka_offset BETWEEN f.first_offset AND f.last_offset WHERE s.refusal IS NOT NULL",
                row_as_json()
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
                "SELECT object_key, rows_loaded, rows_rejected, (SELECT MAX(exposed_at) FROM {NEW_ROWS}) AS newest_exposed_at \
                 FROM {schema}.exposures_loads WHERE batch_id = {batch} AND status = 'loaded' AND object_key IN ({})",
                keys.join(", ")
            ),
        ]);
        statements
    }
}

/// Why a staged row cannot go into `exposures`, or NULL: the first of a missing required
/// value, text longer in bytes than its `VARCHAR(n)` (Redshift measures bytes), JSON that
/// `JSON_PARSE` cannot read.
fn refusal() -> String {
    let checks: Vec<String> = COLUMNS
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
fn row_as_json() -> String {
    let pairs: Vec<String> = COLUMNS
        .iter()
        .map(|column| {
            let value = match column.kind {
                ColumnType::Timestamp => {
                    format!("TO_CHAR(s.{}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')", column.name)
                }
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

/// The same for [`row_by_row_statements`]: COPY, the checks, the dedup, the insert and
/// the rejected rows (which carry the row as JSON).
pub const ROW_BY_ROW_READ_THE_FILES: [usize; 5] = [2, 3, 5, 6, 7];

/// `LOCK` on the ledger: the first statement of every transaction that decides from the
/// ledger what to write. Redshift's LOCK takes ACCESS EXCLUSIVE until the transaction
/// ends (the LOCK page of the Database Developer Guide).
pub(super) fn lock_ledger(schema: &str) -> String {
    format!("LOCK {schema}.exposures_loads")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: String, offset: i64) -> FileRecord {
        FileRecord {
            lake: "s3://lake/exposures".into(),
            bucket: "lake".into(),
            key,
            size: 4096,
            etag: "\"0123456789abcdef0123456789abcdef\"".into(),
            rows: 50,
            topic: "exposures".into(),
            partition: 3,
            first_offset: offset,
            last_offset: offset + 49,
            hour: "2026-11-25T10".into(),
            written_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            rejected_key: None,
            rejected_rows: 0,
        }
    }

    /// However many files a batch has and however long the lake prefix, every statement
    /// sent stays under the Data API's limit, and no file is left out or repeated.
    #[test]
    fn transactions_keep_every_statement_under_the_data_api_limit() {
        for (count, prefix_len) in [(1, 10), (200, 10), (1_000, 10), (1_000, 900)] {
            let prefix = "p".repeat(prefix_len);
            let files: Vec<FileRecord> = (0..count)
                .map(|i| {
                    file(
                        format!("{prefix}/exposures/v1/dt=2026-11-25/hour=10/p003-{i:020}.parquet"),
                        i * 50,
                    )
                })
                .collect();
            let refs: Vec<&FileRecord> = files.iter().collect();
            let groups = transactions(&refs);
            assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), count as usize);
            for group in &groups {
                let statements =
                    load_statements("analytics", "s3://m", "default", Duration::ZERO, "b", group);
                let longest = statements.iter().map(String::len).max().unwrap_or(0);
                assert!(
                    longest <= MAX_STATEMENT_BYTES,
                    "{count} files, prefix {prefix_len}: {longest} bytes"
                );
            }
            if count == 1_000 {
                assert!(groups.len() > 1, "1,000 files cannot fit one statement");
            }
        }
    }

    fn dead_letter(partition: i32, offset: i64, raw_bytes: usize) -> ledger::RejectedRow {
        ledger::RejectedRow {
            event_id: None,
            object_key: "k".into(),
            kafka_partition: partition,
            kafka_offset: offset,
            raw_row: "'".repeat(raw_bytes), // doubled by quoting: the worst case
            reason: "not an exposure".into(),
        }
    }

    /// 3 MB of dead letters (as many as 40 statements of 48 KB would not hold): every call
    /// within the Data API's limits, each starting with the lock, each chunk's DELETE
    /// naming exactly its own offsets, every row written once.
    #[test]
    fn dead_letters_of_any_size_make_calls_within_the_data_api_limits() {
        let mut rows: Vec<ledger::RejectedRow> = (0..400)
            .rev()
            .map(|offset| dead_letter(3, offset, 8_000))
            .collect();
        rows.push(dead_letter(4, 7, 10));
        let calls = dead_letter_calls("analytics", "k", &mut rows);
        assert!(calls.len() > 1, "{} calls", calls.len());
        let mut inserted = 0;
        for call in &calls {
            assert!(call.len() <= MAX_BATCH_STATEMENTS, "{} statements", call.len());
            assert!(call.iter().map(String::len).sum::<usize>() <= MAX_CALL_BYTES + MAX_STATEMENT_BYTES);
            assert_eq!(call[0], "LOCK analytics.exposures_rejected");
            assert!(call.iter().all(|sql| sql.len() <= MAX_STATEMENT_BYTES));
            for pair in call[1..].chunks(2) {
                let [delete, insert] = pair else {
                    panic!("a DELETE without its INSERT: {pair:?}")
                };
                assert!(delete.starts_with("DELETE FROM analytics.exposures_rejected WHERE object_key = 'k'"));
                let values = insert.matches("'not an exposure'").count();
                inserted += values;
                assert!(values > 0);
            }
        }
        assert_eq!(inserted, 401);
        let last_call = calls.last().expect("calls");
        assert_eq!(
            last_call[last_call.len() - 2],
            "DELETE FROM analytics.exposures_rejected WHERE object_key = 'k' AND kafka_partition = 4 \
             AND kafka_offset BETWEEN 7 AND 7",
            "a chunk never spans partitions"
        );
    }

    /// The already-loaded check of 2,000 files with long keys takes several queries,
    /// each under the limit, naming every key once.
    #[test]
    fn the_already_loaded_check_of_any_batch_stays_under_the_statement_limit() {
        let keys: Vec<String> = (0..2_000)
            .map(|i| {
                format!(
                    "{}/exposures/v1/dt=2026-11-25/hour=10/p3-o{i:020}.parquet",
                    "p".repeat(200)
                )
            })
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let queries = already_loaded("analytics", &refs);
        assert!(queries.len() > 1);
        assert!(queries.iter().all(|sql| sql.len() <= MAX_STATEMENT_BYTES));
        let named: usize = queries.iter().map(|sql| sql.matches(".parquet'").count()).sum();
        assert_eq!(named, keys.len());
    }

    /// The row-by-row transaction: a wide stage, every row checked against what
    /// `exposures` takes, the rows that pass loaded, the others rejected with the row as
    /// JSON, counted in the ledger.
    #[test]
    fn row_by_row_sql_checks_every_rule_of_the_table() {
        let record = file(
            "exposures/v1/dt=2026-11-25/hour=10/p003-00000000000000000100.parquet".into(),
            100,
        );
        let statements =
            row_by_row_statements("analytics", "s3://m", "default", Duration::ZERO, "b", &record);
        assert_eq!(statements.len(), 10);
        assert_eq!(statements[0], "LOCK analytics.exposures_loads");
        assert!(
            statements[1].contains("experiment_id VARCHAR(65535)"),
            "{}",
            statements[1]
        );
        let checked = &statements[3];
        assert!(checked.starts_with("CREATE TEMP TABLE exposures_checked AS SELECT event_id, "));
        for rule in [
            "WHEN event_id IS NULL THEN 'event_id is missing'",
            "WHEN OCTET_LENGTH(event_id) > 128 THEN 'event_id is ' || CAST(OCTET_LENGTH(event_id) AS VARCHAR(12))",
            "WHEN OCTET_LENGTH(user_agent) > 1024",
            "WHEN attributes IS NOT NULL AND NOT CAN_JSON_PARSE(attributes)",
            "WHEN kafka_offset IS NULL THEN 'kafka_offset is missing'",
        ] {
            assert!(checked.contains(rule), "{rule}: {checked}");
        }
        assert!(
            !checked.contains("WHEN ds_user_id IS NULL"),
            "ds_user_id may be NULL"
        );
        assert!(statements[5].contains("FROM exposures_checked s WHERE s.refusal IS NULL AND EXISTS"));
        let rejected = &statements[7];
        assert!(rejected.starts_with("INSERT INTO analytics.exposures_rejected"));
        assert!(rejected.contains("LEFT(JSON_SERIALIZE(OBJECT('event_id', s.event_id, "));
        assert!(rejected.contains("'exposed_at', TO_CHAR(s.exposed_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"));
        assert!(rejected.ends_with("WHERE s.refusal IS NOT NULL"));
        assert!(statements[8].contains(
            "f.rows_rejected + (SELECT COUNT(*) FROM exposures_checked WHERE refusal IS NOT NULL) AS rows_rejected"
        ));
        for index in ROW_BY_ROW_READ_THE_FILES {
            let statement = &statements[index];
            assert!(
                statement.starts_with("COPY ")
                    || statement.contains("exposures_stage")
                    || statement.contains("exposures_checked")
                    || statement.contains("FROM exposures_new"),
                "statement {index} does not read the files: {statement}"
            );
        }
    }

    #[test]
    fn redshift_load_sql_snapshot() {
        let file = FileRecord {
            lake: "s3://lake/exposures".into(),
            bucket: "lake".into(),
            key: "exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet".into(),
            size: 4096,
            etag: "\"abc\"".into(),
            rows: 50,
            topic: "exposures".into(),
            partition: 3,
            first_offset: 100,
            last_offset: 149,
            hour: "2026-11-25T10".into(),
            written_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            rejected_key: None,
            rejected_rows: 0,
        };
        let statements = load_statements(
            "analytics",
            "s3://lake/exposures/_manifests/b1-1.manifest",
            "arn:aws:iam::123456789012:role/exposures-copy",
            Duration::from_secs(604_800),
            "b1",
            &[&file],
        );
        let cols = "event_id, ds_user_id, anonymous_id, experiment_id, variation_id, exposed_at, received_at, source, \
                    attributes, ds_session_id, geo_country_code, geo_city, currency_id, locale, platform, is_kf_verified, \
                    user_agent, extra, kafka_partition, kafka_offset";
        assert_eq!(statements.len(), 8);
        assert_eq!(statements[0], "LOCK analytics.exposures_loads");
        assert!(statements[1].starts_with("CREATE TEMP TABLE exposures_stage (event_id VARCHAR(128), "));
        assert_eq!(
            statements[2],
            "COPY exposures_stage FROM 's3://lake/exposures/_manifests/b1-1.manifest' \
             IAM_ROLE 'arn:aws:iam::123456789012:role/exposures-copy' FORMAT AS PARQUET MANIFEST"
        );
        assert_eq!(
            statements[3],
            "CREATE TEMP TABLE exposures_batch_files AS SELECT f.* FROM (SELECT \
             'exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet' AS object_key, '\"abc\"' AS etag, \
             CAST(4096 AS BIGINT) AS size_bytes, CAST(50 AS BIGINT) AS rows_in_file, 3 AS kafka_partition, \
             CAST(100 AS BIGINT) AS first_offset, CAST(149 AS BIGINT) AS last_offset, CAST(0 AS BIGINT) AS rows_rejected) f \
             WHERE NOT EXISTS (SELECT 1 FROM analytics.exposures_loads l WHERE l.object_key = f.object_key \
             AND l.etag = f.etag AND l.status = 'loaded')"
        );
        assert!(statements[4].contains(&format!(
            "FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY event_id "
        )));
        assert!(statements[4].contains(
            "FROM exposures_stage s WHERE EXISTS (SELECT 1 FROM exposures_batch_files f WHERE \
             f.kafka_partition = s.kafka_partition AND s.kafka_offset BETWEEN f.first_offset AND f.last_offset)) ranked"
        ));
        assert!(statements[4].contains(
            "LEFT JOIN (SELECT DISTINCT event_id FROM analytics.exposures WHERE received_at BETWEEN \
             (SELECT MIN(received_at) FROM exposures_stage) - INTERVAL '604800 seconds' AND \
             (SELECT MAX(received_at) FROM exposures_stage) + INTERVAL '604800 seconds') loaded"
        ));
        assert_eq!(
            statements[5],
            format!(
                "INSERT INTO analytics.exposures ({cols}) SELECT {} FROM exposures_new",
                cols.replace("attributes,", "JSON_PARSE(attributes),")
                    .replace("extra,", "JSON_PARSE(extra),")
            )
        );
        assert!(statements[6].contains(
            "FROM exposures_batch_files f LEFT JOIN exposures_new n ON n.kafka_partition = f.kafka_partition"
        ));
        assert!(statements[7].ends_with(
            "WHERE batch_id = 'b1' AND status = 'loaded' AND object_key IN ('exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet')"
        ));
        for index in READ_THE_FILES {
            let statement = &statements[index];
            assert!(
                statement.starts_with("COPY ")
                    || statement.contains(" FROM exposures_stage")
                    || statement.contains("FROM exposures_new"),
                "statement {index} does not read the files: {statement}"
            );
        }
        let default_role = load_statements("a", "s3://m", "default", Duration::ZERO, "b", &[&file]);
        assert!(default_role[2].contains("IAM_ROLE default FORMAT"));
        assert_eq!(
            manifest(&[&file]),
            r#"{"entries":[{"url":"s3://lake/exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet","mandatory":true,"meta":{"content_length":4096}}]}"#
        );
    }
}
