//! The loader against a real PostgreSQL, directly and through the Redshift Data API
//! emulator (the real aws-sdk-redshiftdata client, statements run on that PostgreSQL):
//! the pipeline's lake files end up as rows exactly once, through replays, a poison
//! file, throttling, slow statements, an outage and a killed loader.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use loader::sink::file::ParquetCodec;

use crate::harness::lake::exposures;
use crate::harness::scenario::{count, on_both_warehouses, Kind, RunningLoader, Scenario};
use crate::harness::{metric_value, DEADLINE};

const QUARANTINED: &str = "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'quarantined'";
const LOADED_ROWS: &str =
    "SELECT coalesce(sum(rows_loaded), 0)::bigint FROM analytics.exposures_loads WHERE status = 'loaded'";

on_both_warehouses!(replays_and_a_poison_file =>
    postgres_loads_files_once_through_replays_and_quarantines_a_poison_file,
    redshift_loads_files_once_through_replays_throttling_and_slow_statements_and_quarantines_a_poison_file);

/// Files announced twice load once; a corrupt file is quarantined with the reason;
/// on Redshift, through throttling and slow statements too.
async fn replays_and_a_poison_file(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    if let Some(data_api) = &scenario.data_api {
        // Throttled calls are retried by the SDK; slow statements are polled.
        data_api.faults.throttle_next.store(4, Ordering::SeqCst);
        data_api.faults.statement_delay_ms.store(400, Ordering::SeqCst);
    }
    let events = exposures(4_000, "load");
    scenario.produce_raw("one-user", b"not an exposure: {").await;
    let files = scenario.sink_after_foreign_records(&events, 1).await;
    assert!(files.len() > 7, "several batches");

    // The same file announced twice, and a corrupt object announced among good ones.
    scenario.announce(&files[0]).await;
    let lake = scenario.side.lake().await;
    let mut poison = files[1].clone();
    let poison_key = poison["key"]
        .as_str()
        .expect("key")
        .replace(".parquet", "-corrupt.parquet");
    let stored = lake
        .put(
            &poison_key,
            bytes::Bytes::from_static(b"PAR1 this is not parquet PAR1"),
        )
        .await
        .expect("put");
    poison["key"] = poison_key.clone().into();
    poison["etag"] = stored.etag.into();
    poison["size"] = stored.size.into();
    scenario.announce(&poison).await;

    let loader = scenario.start_loader();
    scenario.wait_rows(events.len() as i64).await;
    scenario.wait_count(QUARANTINED, 1).await;
    loader.stop().await;

    // What `exposures status` shows: nothing waiting, every row, the quarantined file.
    let status = loader::status::gather(&scenario.status_config()).await;
    let text = status.to_string();
    assert_eq!(status.sink.as_ref().map(|lag| lag.total()), Ok(0), "{text}");
    assert_eq!(status.load.as_ref().map(|lag| lag.total()), Ok(0), "{text}");
    let summary = status
        .warehouse
        .as_ref()
        .expect("a warehouse was given")
        .as_ref()
        .expect("warehouse status");
    assert_eq!(summary.rows, events.len() as i64, "{text}");
    assert!(summary.newest_exposed_at.is_some(), "{text}");
    assert!(text.contains("files quarantined: 1 (0 rows)"), "{text}");
    assert!(text.contains(&poison_key), "{text}");

    scenario.assert_exact(&events).await;
    let client = scenario.client().await;
    let quarantined = client
        .query_one(
            "SELECT object_key, reason FROM analytics.exposures_loads WHERE status = 'quarantined'",
            &[],
        )
        .await
        .expect("ledger");
    assert_eq!(quarantined.get::<_, String>(0), poison_key);
    let reason: String = quarantined.get(1);
    assert!(reason.contains("Parquet"), "{reason}");
    if let Some(data_api) = &scenario.data_api {
        assert!(
            reason.contains("sys_load_error_detail") && reason.contains(&format!("| s3://lake/{poison_key}")),
            "the reason carries SYS_LOAD_ERROR_DETAIL's row for the file: {reason}"
        );
        assert_eq!(
            data_api.faults.throttled.load(Ordering::SeqCst),
            4,
            "throttling happened"
        );
        assert!(
            data_api.faults.describes.load(Ordering::SeqCst) > 20,
            "slow statements were polled"
        );
        let attributes = count(
            &client,
            "SELECT count(*) FROM analytics.exposures WHERE attributes->>'geo_country_code' = 'US'",
        )
        .await;
        assert_eq!(
            attributes,
            events.len() as i64,
            "attributes are queryable JSON (SUPER)"
        );
    }
    let loaded = count(
        &client,
        "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'loaded'",
    )
    .await;
    assert_eq!(
        loaded,
        files.len() as i64,
        "one ledger row per real file, the replay skipped"
    );
    assert_eq!(count(&client, LOADED_ROWS).await, events.len() as i64);
}

on_both_warehouses!(outage_and_a_killed_loader =>
    postgres_outage_and_a_killed_loader_still_load_exactly_once,
    redshift_outage_and_a_killed_loader_still_load_exactly_once);

/// A loader killed mid-batch, then a warehouse outage: a new loader waits it out and
/// every row lands exactly once.
async fn outage_and_a_killed_loader(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let events = exposures(3_000, "outage");
    scenario.sink(&events).await;

    let loader = scenario.start_loader();
    scenario
        .wait_at_least(
            "SELECT count(*) FROM analytics.exposures_loads",
            1,
            "the loader loaded nothing",
        )
        .await;
    loader.kill().await;

    // The warehouse goes away; a new loader waits for it, then finishes the job.
    scenario.pg.stop_server(); // blocks this test's thread for a moment, which is all it needs
    let failures_before = load_failures();
    let loader = scenario.start_loader();
    let deadline = Instant::now() + DEADLINE;
    while load_failures() <= failures_before {
        assert!(Instant::now() < deadline, "the loader never met the outage");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
    }
    scenario.pg.start_server();
    scenario.wait_rows(events.len() as i64).await;
    loader.stop().await;
    scenario.assert_exact(&events).await;
    assert_eq!(
        scenario.count(LOADED_ROWS).await,
        events.len() as i64,
        "the ledger agrees with the table"
    );
}

on_both_warehouses!(two_loaders_at_once =>
    two_postgres_loaders_at_once_load_every_file_once,
    two_redshift_loaders_at_once_load_every_file_once);

/// Two loaders at once on the same files — a second loader started by mistake, a
/// deploy that starts the new task before the old one stops — each in its own consumer
/// group, so both see every file: each file is loaded once (one `loaded` ledger row),
/// each row once. On Redshift through the emulator's SNAPSHOT-like isolation, where
/// both would commit without the ledger's lock.
async fn two_loaders_at_once(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    if let Some(data_api) = &scenario.data_api {
        // Slow statements keep both loaders' transactions open at once.
        data_api
            .faults
            .in_transaction_delay_ms
            .store(100, Ordering::SeqCst);
    }
    let events = exposures(6_000, "racing");
    let files = scenario.sink(&events).await.len() as i64;
    let (first, second) = (
        RunningLoader::start(scenario.load_config("load-a")),
        RunningLoader::start(scenario.load_config("load-b")),
    );
    scenario.wait_loader_committed("load-a", files).await;
    scenario.wait_loader_committed("load-b", files).await;
    first.stop().await;
    second.stop().await;
    scenario.assert_exact(&events).await;
    let loaded_twice = scenario
        .count(
            "SELECT count(*) FROM (SELECT object_key FROM analytics.exposures_loads \
             WHERE status = 'loaded' GROUP BY object_key HAVING count(*) > 1) twice",
        )
        .await;
    assert_eq!(loaded_twice, 0, "files with two `loaded` ledger rows");
    assert_eq!(
        scenario
            .count("SELECT count(*) FROM analytics.exposures_loads WHERE status = 'loaded'")
            .await,
        files
    );
    assert_eq!(scenario.count(LOADED_ROWS).await, events.len() as i64);
}

/// Megabytes of dead letters beside one file (300 records of 8 KB that are not
/// exposures, as another producer might write them): more than one Data API call holds
/// (40 statements of at most 100 KB), and each is recorded once.
#[tokio::test]
async fn redshift_records_megabytes_of_dead_letters_once() {
    let scenario = Scenario::start(Kind::Redshift).await;
    let mut events = exposures(100, "beside");
    for event in &mut events {
        event.ds_user_id = Some("one-user".into()); // one partition, with the dead letters
    }
    let garbage = format!("not an exposure: {}", "'\\".repeat(4_000));
    scenario
        .produce_raw_repeated("one-user", garbage.as_bytes(), 300)
        .await;
    scenario.sink_after_foreign_records(&events, 300).await;

    let loader = scenario.start_loader();
    scenario.wait_rows(events.len() as i64).await;
    scenario
        .wait_count("SELECT count(*) FROM analytics.exposures_rejected", 300)
        .await;
    loader.stop().await;
    scenario.assert_exact(&events).await;
    assert_eq!(
        scenario
            .count(
                "SELECT count(*) FROM (SELECT kafka_partition, kafka_offset FROM analytics.exposures_rejected \
                 GROUP BY kafka_partition, kafka_offset HAVING count(*) > 1) twice"
            )
            .await,
        0,
        "a dead letter recorded twice"
    );
    assert_eq!(
        scenario
            .count("SELECT COALESCE(SUM(rows_rejected), 0)::bigint FROM analytics.exposures_loads")
            .await,
        300
    );
}

/// One batch of 2,000 files (`--batch-files 2000`) with long keys: the ledger check, the
/// batch's statements and its calls all stay within the Data API's limits (100 KB a
/// statement, 40 statements a call), which the emulator enforces; every file loads once.
#[tokio::test]
async fn redshift_loads_a_batch_of_two_thousand_files() {
    let scenario = Scenario::start(Kind::Redshift).await;
    let events = exposures(2_000, "two-thousand-files");
    let mut records = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let record = scenario
            .write_file(
                std::slice::from_ref(event),
                index as i64 * 10,
                ParquetCodec::default(),
            )
            .await;
        records.push(record);
    }
    scenario.announce_all(&records).await;
    let mut config = scenario.load_config("load");
    config.batches.batch_files = 2_000;
    config.batches.batch_interval = Some(Duration::from_secs(5));
    let loader = RunningLoader::start(config);
    scenario.wait_rows(events.len() as i64).await;
    scenario
        .wait_count(
            "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'loaded'",
            records.len() as i64,
        )
        .await;
    loader.stop().await;
    scenario.assert_exact(&events).await;
}

/// A file whose `kafka_offset` column another writer stored as strings: Redshift reads
/// Parquet by position and type and does not convert ("incompatible Parquet schema"),
/// which the emulator now refuses as documented; row by row cannot read it either, so it
/// is quarantined with that reason, and the good file beside it loads.
#[tokio::test]
async fn redshift_refuses_a_parquet_column_of_another_type() {
    use std::sync::Arc;

    let scenario = Scenario::start(Kind::Redshift).await;
    let good = exposures(10, "typed");
    scenario.place_file(&good, 0, ParquetCodec::default()).await;

    let odd = exposures(10, "offset-as-text");
    let mut record = scenario.write_file(&odd, 1_000, ParquetCodec::default()).await;
    let mut builder = schemas::ExposureBatchBuilder::new();
    for (offset, event) in (1_000..).zip(&odd) {
        builder.append(&schemas::LakeRow::from_exposure(event), 0, offset);
    }
    let batch = builder.finish().expect("batch");
    let index = batch.schema().index_of("kafka_offset").expect("kafka_offset");
    let mut fields: Vec<arrow_schema::Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[index] = arrow_schema::Field::new("kafka_offset", arrow_schema::DataType::Utf8, false);
    let mut columns = batch.columns().to_vec();
    let offsets: Vec<String> = (1_000..1_010).map(|offset: i64| offset.to_string()).collect();
    columns[index] = Arc::new(arrow_array::StringArray::from(offsets));
    let odd_batch = arrow_array::RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
        .expect("batch with text offsets");
    let mut body = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut body, odd_batch.schema(), None).expect("writer");
    writer.write(&odd_batch).expect("written");
    writer.close().expect("closed");
    let lake = scenario.side.lake().await;
    let stored = lake.put(&record.key, body.into()).await.expect("put");
    (record.size, record.etag) = (stored.size, stored.etag);
    scenario
        .announce(&serde_json::to_value(&record).expect("json"))
        .await;

    let loader = scenario.start_loader();
    scenario.wait_rows(good.len() as i64).await;
    scenario.wait_count(QUARANTINED, 1).await;
    loader.stop().await;
    scenario.assert_exact(&good).await;
    let reason: String = scenario
        .client()
        .await
        .query_one(
            "SELECT reason FROM analytics.exposures_loads WHERE status = 'quarantined'",
            &[],
        )
        .await
        .expect("one quarantined file")
        .get(0);
    assert!(
        reason.contains("incompatible Parquet schema for column 'kafka_offset'"),
        "{reason}"
    );
}

/// (status, rows_in_file, rows_loaded, rows_rejected) of the ledger's only row.
async fn only_ledger_row(client: &tokio_postgres::Client) -> (String, i64, i64, i64) {
    let ledger = client
        .query_one(
            "SELECT status, rows_in_file, rows_loaded, rows_rejected FROM analytics.exposures_loads",
            &[],
        )
        .await
        .expect("one ledger row");
    (ledger.get(0), ledger.get(1), ledger.get(2), ledger.get(3))
}

fn load_failures() -> f64 {
    metric_value("exposures_load_failures_total")
}

on_both_warehouses!(poison_rows =>
    a_poison_row_is_dead_lettered_alone_and_reloads_once_fixed,
    redshift_dead_letters_poison_rows_alone);

/// A record no warehouse can store (NUL in text) and one that is not an exposure at all,
/// produced straight to the topic as another producer might, among 10,000 good rows of
/// one partition: the good rows all load, the two alone are dead-lettered with their
/// reasons, `status` lists them, the ledger's counts add up, and once fixed the poison
/// row reloads exactly once.
async fn poison_rows(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let mut events = exposures(10_000, "poison");
    for event in &mut events {
        event.ds_user_id = Some("one-user".into()); // one partition
    }
    let mut poison = events[5_000].clone();
    poison.event_id = uuid::Uuid::now_v7().to_string();
    poison.experiment_id = "checkout\u{0}button".into();
    events.insert(5_000, poison.clone());
    scenario.produce_raw("one-user", b"not an exposure: {").await;
    let files = scenario.sink_after_foreign_records(&events, 1).await;
    assert!(files.len() > 1, "{} files", files.len());
    let good: Vec<schemas::Exposure> = events
        .iter()
        .filter(|e| e.event_id != poison.event_id)
        .cloned()
        .collect();

    let rejected_rows = "SELECT count(*) FROM analytics.exposures_rejected";
    let loader = scenario.start_loader();
    scenario.wait_rows(good.len() as i64).await;
    scenario.wait_count(rejected_rows, 2).await;
    loader.stop().await;
    scenario.assert_exact(&good).await;

    let client = scenario.client().await;

    let garbage = client
        .query_one(
            "SELECT raw_row, reason FROM analytics.exposures_rejected WHERE event_id IS NULL",
            &[],
        )
        .await
        .expect("the record that is not an exposure");
    assert_eq!(garbage.get::<_, String>(0), "not an exposure: {");
    assert!(garbage.get::<_, String>(1).contains("not an exposure"));
    let rejected = client
        .query_one(
            "SELECT event_id, kafka_partition, kafka_offset, raw_row, reason, object_key \
             FROM analytics.exposures_rejected WHERE event_id IS NOT NULL",
            &[],
        )
        .await
        .expect("the rejected row");
    let (event_id, raw_row, reason, object_key): (String, String, String, String) =
        (rejected.get(0), rejected.get(3), rejected.get(4), rejected.get(5));
    assert_eq!(event_id, poison.event_id);
    assert!(rejected.get::<_, i64>(2) >= 0);
    assert!(raw_row.contains(r"checkout\u0000button"), "{raw_row}");
    assert!(reason.contains("nul_character"), "{reason}");
    let ledger = client
        .query_one(
            "SELECT rows_in_file, rows_loaded, rows_rejected, status FROM analytics.exposures_loads WHERE object_key = $1",
            &[&object_key],
        )
        .await
        .expect("the poison file's ledger row");
    let (in_file, loaded, refused, status): (i64, i64, i64, String) =
        (ledger.get(0), ledger.get(1), ledger.get(2), ledger.get(3));
    assert_eq!(status.as_str(), "loaded");
    assert!(refused >= 1, "{refused}");
    assert_eq!(in_file, loaded + refused, "the file's rows add up");
    assert_eq!(
        count(
            &client,
            "SELECT COALESCE(SUM(rows_loaded), 0)::bigint FROM analytics.exposures_loads"
        )
        .await,
        good.len() as i64
    );

    let status_config = scenario.status_config();
    let status = loader::status::gather(&status_config).await.to_string();
    assert!(status.contains("rejected rows: 2"), "{status}");
    assert!(status.contains(&poison.event_id), "{status}");

    // Reloading before a fix changes nothing; after one, the row loads once.
    let again = loader::load::reload_rejected(&status_config.warehouse, &status_config.redshift)
        .await
        .expect("reload");
    assert_eq!((again.reloaded, again.still_refused), (0, 2));
    client
        .execute(
            r"UPDATE analytics.exposures_rejected SET raw_row = replace(raw_row, '\u0000', '-')",
            &[],
        )
        .await
        .expect("fix");
    let fixed = loader::load::reload_rejected(&status_config.warehouse, &status_config.redshift)
        .await
        .expect("reload");
    assert_eq!((fixed.reloaded, fixed.still_refused), (1, 1));
    let after = loader::load::reload_rejected(&status_config.warehouse, &status_config.redshift)
        .await
        .expect("reload");
    assert_eq!((after.reloaded, after.still_refused), (0, 1));
    assert_eq!(
        count(&client, rejected_rows).await,
        1,
        "only the record that is not an exposure is left"
    );
    let reloaded: String = client
        .query_one(
            "SELECT experiment_id FROM analytics.exposures WHERE event_id = $1",
            &[&poison.event_id],
        )
        .await
        .expect("the reloaded row, once")
        .get(0);
    assert_eq!(reloaded, "checkout-button");
    assert_eq!(
        count(&client, "SELECT count(*) FROM analytics.exposures").await,
        good.len() as i64 + 1
    );
}

/// A lake file whose rows PostgreSQL refuses, written by another tool (so the sink's
/// checks never saw it): the file loads row by row, its good rows land, the refused row
/// is dead-lettered with PostgreSQL's reason.
#[tokio::test]
async fn a_file_postgres_refuses_loads_row_by_row() {
    let scenario = Scenario::start(Kind::Postgres).await;
    let mut events = exposures(50, "row-by-row");
    events[25].experiment_id = "null\u{0}byte".into();
    scenario.place_file(&events, 1_000, ParquetCodec::default()).await;

    let loader = scenario.start_loader();
    scenario.wait_rows(49).await;
    scenario
        .wait_count("SELECT count(*) FROM analytics.exposures_loads", 1)
        .await;
    loader.stop().await;
    let client = scenario.client().await;
    let rejected = client
        .query_one(
            "SELECT event_id, kafka_offset, reason FROM analytics.exposures_rejected",
            &[],
        )
        .await
        .expect("one rejected row");
    assert_eq!(rejected.get::<_, String>(0), events[25].event_id);
    assert_eq!(rejected.get::<_, i64>(1), 1_025);
    assert!(
        rejected.get::<_, String>(2).contains("0x00"),
        "{}",
        rejected.get::<_, String>(2)
    );
    assert_eq!(only_ledger_row(&client).await, ("loaded".to_owned(), 50, 49, 1));
}

on_both_warehouses!(file_records_outside_the_lake =>
    postgres_refuses_file_records_outside_its_lake,
    redshift_refuses_file_records_outside_its_lake);

/// A file record is data from a topic anyone with produce rights can write: one naming
/// a key outside the lake is skipped and counted; one naming another bucket or prefix
/// is quarantined with the reason, unread; the real files still load.
async fn file_records_outside_the_lake(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let events = exposures(200, "trust");
    let files = scenario.sink(&events).await;
    let before = metric_value("exposures_load_invalid_records_total");
    let mut traversal = files[0].clone();
    traversal["key"] = "exposures/../../../../../../etc/passwd".into();
    scenario.announce(&traversal).await;
    let mut other_bucket = files[0].clone();
    other_bucket["lake"] = "s3://someone-elses-bucket/tenant-a".into();
    other_bucket["bucket"] = "someone-elses-bucket".into();
    scenario.announce(&other_bucket).await;
    let mut other_prefix = files[0].clone();
    other_prefix["key"] = other_prefix["key"]
        .as_str()
        .expect("key")
        .replace("tenant-a/", "tenant-b/")
        .into();
    scenario.announce(&other_prefix).await;

    let loader = scenario.start_loader();
    scenario.wait_rows(events.len() as i64).await;
    let refused = "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'quarantined' \
                   AND reason LIKE '%not in this loader''s lake%'";
    scenario.wait_count(refused, 2).await;
    let deadline = Instant::now() + DEADLINE;
    while metric_value("exposures_load_invalid_records_total") < before + 1.0 {
        assert!(
            Instant::now() < deadline,
            "the record outside the lake was not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    loader.stop().await;
    assert_eq!(
        scenario
            .count("SELECT count(*) FROM analytics.exposures_loads WHERE object_key LIKE '%passwd%'")
            .await,
        0
    );
    scenario.assert_exact(&events).await;
}

/// Makes the warehouse's objects as an administrator would (`exposures ddl`), then runs
/// `roles` (the loader's role and its grants); returns the administrator's client.
async fn made_by_an_administrator(scenario: &Scenario, roles: &str) -> tokio_postgres::Client {
    let admin = scenario.client().await;
    admin
        .batch_execute(&schemas::ddl::script(
            schemas::ddl::Dialect::Postgres,
            "analytics",
        ))
        .await
        .expect("objects made by the administrator");
    admin.batch_execute(roles).await.expect("roles and grants");
    admin
}

/// The warehouse's objects were made by an administrator, and the loader runs as a user
/// with only the grants the README lists (USAGE and CREATE on the schema, DML on its
/// tables, TEMP): it starts, leaves the views it does not own alone, and loads.
#[tokio::test]
async fn a_loader_that_owns_nothing_starts_and_loads() {
    let scenario = Scenario::start(Kind::Postgres).await;
    made_by_an_administrator(
        &scenario,
        "CREATE ROLE exposures_loader LOGIN; \
         GRANT USAGE, CREATE ON SCHEMA analytics TO exposures_loader; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA analytics TO exposures_loader;",
    )
    .await;
    let events = exposures(300, "grants");
    scenario.sink(&events).await;
    let mut config = scenario.load_config("load");
    config.warehouse.warehouse = Some(scenario.pg.url_as("exposures_loader"));
    let loader = RunningLoader::start(config);
    scenario.wait_rows(events.len() as i64).await;
    loader.stop().await;
    scenario.assert_exact(&events).await;
}

/// A refused login or privilege is not an outage: the loader ends with the reason at
/// once instead of retrying (and looking alive) forever. A role that does not exist
/// (SQLSTATE 28000), and one that may read the tables but not write them (42501).
#[tokio::test]
async fn a_loader_refused_a_login_or_privilege_ends_instead_of_retrying() {
    let scenario = Scenario::start(Kind::Postgres).await;
    let admin = made_by_an_administrator(
        &scenario,
        "CREATE ROLE read_only LOGIN; \
         GRANT USAGE ON SCHEMA analytics TO read_only; \
         GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO read_only;",
    )
    .await;
    scenario.sink(&exposures(20, "refused")).await;
    for (role, sqlstate) in [("nobody", "28000"), ("read_only", "42501")] {
        let mut config = scenario.load_config(&format!("load-{role}"));
        config.warehouse.warehouse = Some(scenario.pg.url_as(role));
        let error = RunningLoader::start(config).failure().await;
        let code = match &error {
            loader::load::LoadError::Warehouse(cause) => cause.code().map(|code| code.code().to_owned()),
            _ => None,
        };
        assert_eq!(code.as_deref(), Some(sqlstate), "{role}: {error}");
        assert!(error.retry().is_permanent(), "{error}");
    }
    assert_eq!(
        count(&admin, "SELECT count(*) FROM analytics.exposures").await,
        0,
        "nothing loaded"
    );
}

/// A Data API that refuses the loader's identity (AccessDeniedException) is not an
/// outage either: the loader ends with the reason instead of retrying forever.
#[tokio::test]
async fn a_redshift_loader_denied_access_ends_instead_of_retrying() {
    let scenario = Scenario::start(Kind::Redshift).await;
    scenario.data_api().faults.deny_all.store(true, Ordering::SeqCst);
    let error = scenario.start_loader().failure().await;
    assert!(error.retry().is_permanent(), "{error}");
    assert!(error.to_string().contains("AccessDeniedException"), "{error}");
}

on_both_warehouses!(missing_object =>
    postgres_quarantines_a_missing_object_and_loads_the_rest,
    redshift_quarantines_a_missing_object_and_loads_the_rest);

/// An announced object that is gone from the lake (deleted by a lifecycle rule, say)
/// would fail its batch on every retry: it is quarantined with a clear reason instead,
/// and the files beside it load.
async fn missing_object(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let events = exposures(200, "missing");
    let files = scenario.sink(&events).await;
    let mut gone = files[0].clone();
    let gone_key = gone["key"]
        .as_str()
        .expect("key")
        .replace(".parquet", "-deleted.parquet");
    gone["key"] = gone_key.clone().into();
    scenario.announce(&gone).await;

    let loader = scenario.start_loader();
    scenario.wait_rows(events.len() as i64).await;
    let client = scenario.client().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reason = client
            .query_opt(
                "SELECT reason FROM analytics.exposures_loads WHERE object_key = $1 AND status = 'quarantined'",
                &[&gone_key],
            )
            .await
            .expect("ledger");
        if let Some(row) = reason {
            let reason: String = row.get(0);
            assert!(reason.contains("is not in the lake"), "{reason}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the missing object was not quarantined"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    let status = loader::status::gather(&scenario.status_config()).await;
    let listed = |status: &loader::status::Report| match &status.warehouse {
        Some(Ok(w)) => w.quarantined.iter().any(|file| file.object_key == gone_key),
        other => panic!("warehouse section: {other:?}"),
    };
    assert!(listed(&status), "status lists the quarantined file");

    // The object comes back and is announced again: it loads (its rows are already
    // there), and `status` no longer lists it as quarantined.
    let lake = scenario.side.lake().await;
    let original = files[0]["key"].as_str().expect("key");
    let body = lake.get(original).await.expect("original object");
    lake.put(&gone_key, body).await.expect("restored");
    scenario.announce(&gone).await;
    scenario
        .wait_count(
            &format!(
                "SELECT count(*) FROM analytics.exposures_loads WHERE object_key = '{gone_key}' AND status = 'loaded'"
            ),
            1,
        )
        .await;
    let status = loader::status::gather(&scenario.status_config()).await;
    assert!(
        !listed(&status),
        "a file loaded since is not listed as quarantined"
    );
    loader.stop().await;
    scenario.assert_exact(&events).await;
}

/// Every `--compression` the sink offers loads into PostgreSQL.
#[tokio::test]
async fn every_parquet_codec_loads_into_postgres() {
    let scenario = Scenario::start(Kind::Postgres).await;
    let events = exposures(90, "codecs");
    for (index, (codec, part)) in [ParquetCodec::Snappy, ParquetCodec::Zstd, ParquetCodec::Gzip]
        .into_iter()
        .zip(events.chunks(30))
        .enumerate()
    {
        scenario.place_file(part, 1_000 * index as i64, codec).await;
    }
    let loader = scenario.start_loader();
    scenario.wait_rows(events.len() as i64).await;
    loader.stop().await;
    scenario.assert_exact(&events).await;
}

/// Redshift (through the emulator, which refuses what Spectrum does not document) loads
/// Snappy and gzip files. zstd files are refused one by one: after three refused with the
/// same error the loader stops quarantining and fails loudly (counted failures) instead
/// of quarantining the rest.
#[tokio::test]
async fn redshift_loads_snappy_and_gzip_and_a_codec_it_cannot_read_trips_the_breaker() {
    let scenario = Scenario::start(Kind::Redshift).await;
    let readable = exposures(60, "readable");
    scenario
        .place_file(&readable[..30], 0, ParquetCodec::Snappy)
        .await;
    scenario
        .place_file(&readable[30..], 1_000, ParquetCodec::Gzip)
        .await;
    let loader = scenario.start_loader();
    scenario.wait_rows(readable.len() as i64).await;
    loader.stop().await;
    scenario.assert_exact(&readable).await;

    let unreadable = exposures(60, "zstd");
    for (index, part) in unreadable.chunks(10).enumerate() {
        scenario
            .place_file(part, 10_000 + 1_000 * index as i64, ParquetCodec::Zstd)
            .await;
    }
    let mut config = scenario.load_config("load");
    config.batches.batch_files = 6;
    let failures = load_failures();
    let loader = RunningLoader::start(config);
    let deadline = Instant::now() + DEADLINE;
    while load_failures() < failures + 2.0 || loader::load::health::check().is_ok() {
        assert!(Instant::now() < deadline, "the loader did not fail loudly");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    // What `GET /healthz` of `exposures load` answers (503 with this), and the gauge
    // behind the ExposuresLoadCircuitOpen alert.
    let unhealthy = loader::load::health::check().expect_err("unhealthy");
    assert!(
        unhealthy.contains("circuit breaker open") && unhealthy.contains("ZSTD"),
        "{unhealthy}"
    );
    loader.stop().await;
    let client = scenario.client().await;
    let quarantined = count(&client, QUARANTINED).await;
    assert!(
        quarantined <= 3,
        "{quarantined} of 6 files quarantined: the breaker did not stop it"
    );
    let reason: String = client
        .query_one(
            "SELECT coalesce(max(reason), '') FROM analytics.exposures_loads WHERE status = 'quarantined'",
            &[],
        )
        .await
        .expect("reason")
        .get(0);
    assert!(reason.contains("ZSTD"), "{reason}");
    assert_eq!(
        count(&client, "SELECT count(*) FROM analytics.exposures").await,
        readable.len() as i64,
        "no row of an unreadable file is loaded"
    );
}

/// The loader replaces a view it owns only when the view's comment says it was made from
/// an older definition: a current view (here narrowed by hand by its owner) is left as it
/// is, a stale one is replaced.
#[tokio::test]
async fn a_view_is_replaced_only_when_its_definition_is_stale() {
    let scenario = Scenario::start(Kind::Postgres).await;
    let admin = made_by_an_administrator(&scenario, "").await;
    let definition: String = admin
        .query_one(
            "SELECT pg_get_viewdef('analytics.exposures_growthbook'::regclass)",
            &[],
        )
        .await
        .expect("view definition")
        .get(0);
    admin
        .batch_execute(&format!(
            "CREATE OR REPLACE VIEW analytics.exposures_growthbook AS {} LIMIT 0",
            definition.trim().trim_end_matches(';')
        ))
        .await
        .expect("narrowed by hand");
    let events = exposures(100, "views");
    scenario.sink(&events).await;
    let growthbook_rows = "SELECT count(*) FROM analytics.exposures_growthbook";

    let loader = scenario.start_loader();
    scenario.wait_rows(events.len() as i64).await;
    loader.stop().await;
    assert_eq!(
        count(&admin, growthbook_rows).await,
        0,
        "a current view was replaced"
    );

    admin
        .batch_execute(
            "COMMENT ON VIEW analytics.exposures_growthbook IS 'exposures ddl from an older release'",
        )
        .await
        .expect("comment");
    let loader = scenario.start_loader();
    scenario.wait_count(growthbook_rows, events.len() as i64).await;
    loader.stop().await;
}

on_both_warehouses!(view_gaining_columns =>
    postgres_replaces_a_view_that_gains_columns_and_keeps_its_readers,
    redshift_replaces_a_view_that_gains_columns_and_keeps_its_readers);

/// An upgrade whose view has more columns than the one in the warehouse (made by an
/// older release, read by GrowthBook's database user): Redshift cannot replace a view in
/// place with other columns, so the loader drops and makes it again in one transaction,
/// and the reader keeps its SELECT.
async fn view_gaining_columns(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let view_columns = "SELECT count(*) FROM information_schema.columns \
                        WHERE table_schema = 'analytics' AND table_name = 'exposures_growthbook'";
    // A loader of this release makes the objects.
    let loader = scenario.start_loader();
    scenario
        .wait_at_least(view_columns, 5, "the loader made no view")
        .await;
    loader.stop().await;
    let current_columns = scenario.count(view_columns).await;

    // The view as an older release made it, with fewer columns, and a reader's grant.
    let admin = scenario.client().await;
    admin
        .batch_execute(
            "CREATE ROLE growthbook_reader LOGIN; \
             GRANT USAGE ON SCHEMA analytics TO growthbook_reader; \
             DROP VIEW analytics.exposures_growthbook; \
             CREATE VIEW analytics.exposures_growthbook AS SELECT ds_user_id AS user_id, \
             exposed_at AS \"timestamp\", experiment_id, variation_id FROM analytics.exposures \
             WHERE ds_user_id IS NOT NULL; \
             COMMENT ON VIEW analytics.exposures_growthbook IS 'exposures ddl from an older release'; \
             GRANT SELECT ON analytics.exposures_growthbook TO growthbook_reader",
        )
        .await
        .expect("the older release's view");
    assert_eq!(scenario.count(view_columns).await, 4);

    let events = exposures(50, "after-upgrade");
    scenario.sink(&events).await;
    let loader = scenario.start_loader();
    scenario.wait_rows(events.len() as i64).await;
    loader.stop().await;
    scenario.assert_exact(&events).await;
    assert_eq!(scenario.count(view_columns).await, current_columns);
    assert_eq!(
        scenario
            .count(
                "SELECT count(*) FROM pg_user WHERE usename = 'growthbook_reader' \
                 AND has_table_privilege(usename, 'analytics.exposures_growthbook', 'select')"
            )
            .await,
        1,
        "the reader lost its grant"
    );
    let marker = schemas::ddl::objects(schemas::ddl::Dialect::Postgres, "analytics")
        .into_iter()
        .find(|object| object.name == "exposures_growthbook")
        .map(|object| object.marker())
        .expect("the view's definition");
    let comment: String = admin
        .query_one(
            "SELECT obj_description('analytics.exposures_growthbook'::regclass)",
            &[],
        )
        .await
        .expect("comment")
        .get(0);
    assert_eq!(comment, marker);
}

/// Redshift's VARCHAR width counts bytes, and Redshift refuses a whole file for one row:
/// a file of 999 good rows and one whose 200-character experiment_id of two-byte
/// characters (400 bytes in a VARCHAR(256)) was written past ingest's checks is refused
/// by COPY as Redshift words it, then loaded row by row: the 999 rows load, the one goes
/// to `exposures_rejected` with its reason and the row as JSON, and nothing is
/// quarantined.
#[tokio::test]
async fn redshift_loads_a_refused_file_row_by_row() {
    let scenario = Scenario::start(Kind::Redshift).await;
    let mut events = exposures(1_000, "bytes");
    events[500].experiment_id = "é".repeat(200);
    scenario.place_file(&events, 1_000, ParquetCodec::default()).await;
    let loader = scenario.start_loader();
    scenario
        .wait_count("SELECT count(*) FROM analytics.exposures_loads", 1)
        .await;
    loader.stop().await;
    let wide = events.remove(500);
    scenario.assert_exact(&events).await;
    let client = scenario.client().await;
    assert_eq!(
        only_ledger_row(&client).await,
        ("loaded".to_owned(), 1_000, 999, 1)
    );
    let rejected = client
        .query_one(
            "SELECT event_id, kafka_offset, reason, raw_row FROM analytics.exposures_rejected",
            &[],
        )
        .await
        .expect("one rejected row");
    let (event_id, offset, reason, raw_row): (String, i64, String, String) =
        (rejected.get(0), rejected.get(1), rejected.get(2), rejected.get(3));
    assert_eq!(event_id, wide.event_id);
    assert_eq!(offset, 1_500);
    assert!(
        reason.contains("experiment_id is 400 bytes, more than the column's VARCHAR(256)"),
        "{reason}"
    );
    let row: serde_json::Value = serde_json::from_str(&raw_row).expect("the row as JSON");
    assert_eq!(row["experiment_id"], wide.experiment_id.as_str());
    assert_eq!(row["kafka_offset"], 1_500);
    assert_eq!(scenario.count(QUARANTINED).await, 0, "nothing quarantined");

    // `reload-rejected` on Redshift: refused again until the row is fixed, then loaded
    // once.
    let status_config = scenario.status_config();
    let reload = || loader::load::reload_rejected(&status_config.warehouse, &status_config.redshift);
    let before_fix = reload().await.expect("reload");
    assert_eq!((before_fix.reloaded, before_fix.still_refused), (0, 1));
    client
        .execute(
            "UPDATE analytics.exposures_rejected SET raw_row = replace(raw_row, 'é', 'e')",
            &[],
        )
        .await
        .expect("fix");
    let fixed = reload().await.expect("reload");
    assert_eq!((fixed.reloaded, fixed.still_refused), (1, 0));
    let again = reload().await.expect("reload");
    assert_eq!((again.reloaded, again.still_refused), (0, 0));
    let reloaded: String = client
        .query_one(
            "SELECT experiment_id FROM analytics.exposures WHERE event_id = $1",
            &[&wide.event_id],
        )
        .await
        .expect("the reloaded row, once")
        .get(0);
    assert_eq!(reloaded, "e".repeat(200));
    assert_eq!(
        scenario.count("SELECT count(*) FROM analytics.exposures").await,
        1_000
    );
}
