//! The SQL and the COPY manifest of one Redshift batch (see the module doc of
//! [`super`] for the steps). Shared pieces — the ledger, the JSON cast, literals — come
//! from [`schemas::ledger`], so this file holds only what is Redshift's own.

use std::time::Duration;

use schemas::ddl::{self, Dialect};
use schemas::lake_layout::FileRecord;
use schemas::ledger;

const STAGE: &str = "exposures_stage";
const NEW_ROWS: &str = "exposures_new";

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

/// What the ledger statement holds besides its file rows, with room to spare.
const LEDGER_STATEMENT_OVERHEAD: usize = 4 * 1024;

/// One file's row in the ledger statement (`SELECT … AS object_key, …`).
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
/// stay under [`MAX_STATEMENT_BYTES`]. The ledger statement is the one that grows with
/// the files (a row per file, about 450 bytes plus the key); the result query lists only
/// the keys, so it is always shorter.
pub(super) fn transactions<'a>(files: &'a [&'a FileRecord]) -> Vec<&'a [&'a FileRecord]> {
    let budget = MAX_STATEMENT_BYTES - LEDGER_STATEMENT_OVERHEAD;
    let mut groups = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (index, file) in files.iter().enumerate() {
        let size = file_row(file).len() + " UNION ALL ".len();
        if index > start && used + size > budget {
            groups.push(&files[start..index]);
            (start, used) = (index, 0);
        }
        used += size;
    }
    if start < files.len() {
        groups.push(&files[start..]);
    }
    groups
}

/// The statements of one batch transaction (module doc); the last one's result is the
/// ledger rows written, with the newest `exposed_at` inserted.
pub fn load_statements(
    schema: &str,
    manifest_url: &str,
    iam_role: &str,
    dedup_window: Duration,
    batch_id: &str,
    files: &[&FileRecord],
) -> Vec<String> {
    let column_list = ledger::exposure_column_list();
    let ranked_columns: Vec<String> = column_list.split(", ").map(|c| format!("ranked.{c}")).collect();
    let role = if iam_role == "default" {
        "default".to_owned()
    } else {
        literal(iam_role)
    };
    let window = dedup_window.as_secs();
    let file_rows: Vec<String> = files.iter().map(|f| file_row(f)).collect();
    let keys: Vec<String> = files.iter().map(|f| literal(&f.key)).collect();
    let batch = literal(batch_id);
    vec![
        ddl::stage_table(Dialect::Redshift, STAGE),
        format!(
            "COPY {STAGE} FROM {} IAM_ROLE {role} FORMAT AS PARQUET MANIFEST",
            literal(manifest_url)
        ),
        format!(
            "CREATE TEMP TABLE {NEW_ROWS} AS SELECT {} FROM (SELECT {column_list}, ROW_NUMBER() OVER \
             (PARTITION BY event_id ORDER BY received_at, kafka_partition, kafka_offset) AS occurrence FROM {STAGE}) ranked \
             LEFT JOIN (SELECT DISTINCT event_id FROM {schema}.exposures WHERE received_at BETWEEN \
             (SELECT MIN(received_at) FROM {STAGE}) - INTERVAL '{window} seconds' AND \
             (SELECT MAX(received_at) FROM {STAGE}) + INTERVAL '{window} seconds') loaded \
             ON loaded.event_id = ranked.event_id WHERE ranked.occurrence = 1 AND loaded.event_id IS NULL",
            ranked_columns.join(", ")
        ),
        format!(
            "INSERT INTO {schema}.exposures ({column_list}) SELECT {} FROM {NEW_ROWS}",
            ledger::exposure_insert_values(Dialect::Redshift)
        ),
        ledger::insert_ledger_rows_from(
            Dialect::Redshift,
            schema,
            &format!(
                "SELECT f.object_key, f.etag, f.size_bytes, f.rows_in_file, COUNT(n.event_id) AS rows_loaded, \
                 {batch} AS batch_id, 'loaded' AS status, CAST(NULL AS VARCHAR(1024)) AS reason, f.rows_rejected \
                 FROM ({}) f LEFT JOIN {NEW_ROWS} n ON n.kafka_partition = f.kafka_partition \
                 AND n.kafka_offset BETWEEN f.first_offset AND f.last_offset \
                 GROUP BY f.object_key, f.etag, f.size_bytes, f.rows_in_file, f.rows_rejected",
                file_rows.join(" UNION ALL ")
            ),
        ),
        format!(
            "SELECT object_key, rows_loaded, (SELECT MAX(exposed_at) FROM {NEW_ROWS}) AS newest_exposed_at \
             FROM {schema}.exposures_loads WHERE batch_id = {batch} AND status = 'loaded' AND object_key IN ({})",
            keys.join(", ")
        ),
    ]
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
        assert_eq!(statements.len(), 6);
        assert!(statements[0].starts_with("CREATE TEMP TABLE exposures_stage (event_id VARCHAR(128), "));
        assert_eq!(
            statements[1],
            "COPY exposures_stage FROM 's3://lake/exposures/_manifests/b1-1.manifest' \
             IAM_ROLE 'arn:aws:iam::123456789012:role/exposures-copy' FORMAT AS PARQUET MANIFEST"
        );
        assert!(statements[2].contains(&format!(
            "FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY event_id "
        )));
        assert!(statements[2].contains(
            "LEFT JOIN (SELECT DISTINCT event_id FROM analytics.exposures WHERE received_at BETWEEN \
             (SELECT MIN(received_at) FROM exposures_stage) - INTERVAL '604800 seconds' AND \
             (SELECT MAX(received_at) FROM exposures_stage) + INTERVAL '604800 seconds') loaded"
        ));
        assert_eq!(
            statements[3],
            format!(
                "INSERT INTO analytics.exposures ({cols}) SELECT {} FROM exposures_new",
                cols.replace("attributes,", "JSON_PARSE(attributes),")
                    .replace("extra,", "JSON_PARSE(extra),")
            )
        );
        assert!(statements[4].contains(
            "FROM (SELECT 'exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet' AS object_key, '\"abc\"' AS etag, \
             CAST(4096 AS BIGINT) AS size_bytes, CAST(50 AS BIGINT) AS rows_in_file, 3 AS kafka_partition, \
             CAST(100 AS BIGINT) AS first_offset, CAST(149 AS BIGINT) AS last_offset, CAST(0 AS BIGINT) AS rows_rejected) f"
        ));
        assert!(statements[5].ends_with(
            "WHERE batch_id = 'b1' AND status = 'loaded' AND object_key IN ('exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet')"
        ));
        let default_role = load_statements("a", "s3://m", "default", Duration::ZERO, "b", &[&file]);
        assert!(default_role[1].contains("IAM_ROLE default FORMAT"));
        assert_eq!(
            manifest(&[&file]),
            r#"{"entries":[{"url":"s3://lake/exposures/v1/dt=2026-11-25/hour=10/p3-o100.parquet","mandatory":true,"meta":{"content_length":4096}}]}"#
        );
    }
}
