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
        table: "exposures".into(),
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
            let statements = load_statements("analytics", "s3://m", "default", Duration::ZERO, "b", group);
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
         AND kafka_offset IN (7)",
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
    let statements = Batch {
        schema: "analytics",
        table: &schemas::EXPOSURES,
        manifest_url: "s3://m",
        iam_role: "default",
        dedup_window: Duration::ZERO,
        batch_id: "b",
        files: &[&record],
    }
    .statements(true);
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
    assert!(rejected.contains("LEFT(JSON_SERIALIZE(OBJECT('event_id', LEFT(s.event_id, 500), "));
    assert!(rejected.contains("'attributes', LEFT(s.attributes, 3000)"));
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
        table: "exposures".into(),
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
