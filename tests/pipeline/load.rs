//! The loader against a real PostgreSQL, directly and through the Redshift Data API
//! emulator (the real aws-sdk-redshiftdata client, statements run on that PostgreSQL):
//! the pipeline's lake files end up as rows exactly once, through replays, a poison
//! file, throttling, slow statements, an outage and a killed loader.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use loader::load::{LoadConfig, RedshiftArgs};
use loader::sink::file::{OpenFile, ParquetCodec};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use schemas::lake_layout::{FileKey, Hour};

use crate::harness::kafka::{read_exactly, record_count};
use crate::harness::lake::{exposures, produce, start_sink, wait_committed, Lakeside};
use crate::harness::postgres::{assert_warehouse_exact, Pg};
use crate::harness::redshift_emulator::DataApi;
use crate::harness::{flags as flags_of, metric_value, DEADLINE};

/// Where a test loads: PostgreSQL, or Redshift (the emulator over PostgreSQL). Either
/// way the rows end up in `pg`, where the test reads them.
struct Warehouse {
    pg: Pg,
    data_api: Option<DataApi>,
}

#[derive(Clone, Copy)]
enum Kind {
    Postgres,
    Redshift,
}

impl Warehouse {
    async fn start(kind: Kind, side: &Lakeside) -> Warehouse {
        let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
        let data_api = match kind {
            Kind::Postgres => None,
            Kind::Redshift => Some(DataApi::start(pg.url(), lake_options(side)).await),
        };
        Warehouse { pg, data_api }
    }
}

fn lake_options(side: &Lakeside) -> loader::lake::AwsOptions {
    side.lake_args().aws_options()
}

/// The `--warehouse` flags of `warehouse`, Redshift's through the emulator.
fn warehouse_flags(warehouse: &Warehouse) -> Vec<String> {
    let mut flags = vec![
        "--schema".to_owned(),
        "analytics".to_owned(),
        "--warehouse".to_owned(),
    ];
    match &warehouse.data_api {
        Some(data_api) => flags.extend([
            data_api.warehouse_url(),
            "--redshift-endpoint".into(),
            data_api.endpoint.clone(),
            "--statement-timeout".into(),
            "60s".into(),
        ]),
        None => flags.push(warehouse.pg.url()),
    }
    flags
}

/// The emulator's credentials, which no flag gives.
fn with_test_credentials(redshift: &mut RedshiftArgs) {
    redshift.redshift_static_credentials = Some(("test".into(), "test".into()));
}

fn load_config(side: &Lakeside, warehouse: &Warehouse, group: &str) -> LoadConfig {
    let mut flags = vec![
        "--brokers".to_owned(),
        side.kafka.brokers(),
        "--files-topic".into(),
        side.files_topic.clone(),
        "--group".into(),
        group.to_owned(),
        "--lake".into(),
        Lakeside::LAKE.into(),
        "--batch-files".into(),
        "7".into(),
        "--batch-interval".into(),
        "300ms".into(),
        "--iam-role".into(),
        "arn:aws:iam::123456789012:role/exposures-copy".into(),
    ];
    flags.extend(warehouse_flags(warehouse));
    let mut config: LoadConfig = flags_of(&flags);
    config.lake = side.lake_args();
    with_test_credentials(&mut config.redshift);
    config
}

/// What `exposures status` is given for this side and warehouse.
fn status_config(side: &Lakeside, warehouse: &Warehouse) -> loader::status::StatusConfig {
    let mut flags = vec![
        "--brokers".to_owned(),
        side.kafka.brokers(),
        "--topic".into(),
        side.kafka.topic.clone(),
        "--sink-group".into(),
        "sink".into(),
        "--files-topic".into(),
        side.files_topic.clone(),
        "--load-group".into(),
        "load".into(),
        "--data-dir".into(),
        "./no-up-here".into(),
    ];
    flags.extend(warehouse_flags(warehouse));
    let mut config: loader::status::StatusConfig = flags_of(&flags);
    with_test_credentials(&mut config.redshift);
    config
}

fn start_loader(
    config: LoadConfig,
) -> (
    stage::Shutdown,
    tokio::task::JoinHandle<Result<(), loader::load::LoadError>>,
) {
    let stop = stage::Shutdown::new();
    let task = tokio::spawn(loader::load::run(config, stop.clone()));
    (stop, task)
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .map(|row| row.get::<_, i64>(0))
        .unwrap_or(-1)
}

async fn wait_rows(pg: &Pg, expected: i64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let rows = match tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                count(&client, "SELECT count(*) FROM analytics.exposures").await
            }
            Err(_) => -1,
        };
        if rows == expected {
            return;
        }
        assert!(rows <= expected, "{rows} rows loaded, expected {expected}");
        assert!(Instant::now() < deadline, "{rows} of {expected} rows loaded");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
}

/// Waits until `sql` (a count) reaches `at_least`; `what` says what did not happen.
async fn wait_count(client: &tokio_postgres::Client, sql: &str, at_least: i64, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while count(client, sql).await < at_least {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
}

/// Produces `payload` with `key` straight to the exposures topic, as a foreign producer.
async fn produce_raw(side: &Lakeside, key: &str, payload: &[u8]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", side.kafka.brokers())
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&side.kafka.topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

/// Sinks `events` into the lake and returns the file records announced for them.
async fn sink_into_lake(side: &Lakeside, events: &[schemas::Exposure]) -> Vec<serde_json::Value> {
    sink_with_foreign_records(side, events, 0).await
}

/// Sinks `events`, and `foreign` records already produced, into the lake.
async fn sink_with_foreign_records(
    side: &Lakeside,
    events: &[schemas::Exposure],
    foreign: i64,
) -> Vec<serde_json::Value> {
    produce(&side.kafka.brokers(), &side.kafka.topic, events).await;
    let mut config = side.config("sink");
    config.files.max_file_rows = 300;
    let sink = start_sink(config);
    wait_committed(side, "sink", events.len() as i64 + foreign).await;
    sink.stop().await;
    let files = record_count(&side.kafka.brokers(), &side.files_topic);
    read_exactly(&side.kafka.brokers(), &side.files_topic, files as usize)
        .await
        .into_iter()
        .map(|r| r.value)
        .collect()
}

/// Writes `events` as one Parquet file of partition 0 starting at `first_offset`,
/// compressed with `codec`, and announces it as the sink would.
async fn place_file(side: &Lakeside, events: &[schemas::Exposure], first_offset: i64, codec: ParquetCodec) {
    let hour = Hour::of_millis(events[0].received_at.timestamp_millis());
    let mut file = OpenFile::new(0, hour, first_offset, &side.kafka.topic, codec);
    for (offset, event) in (first_offset..).zip(events) {
        file.append(&schemas::LakeRow::from_exposure(event), offset)
            .expect("encoded");
    }
    let encoded = file.encode().expect("parquet");
    let lake = side.lake().await;
    let key = lake.key(
        &FileKey {
            hour,
            partition: 0,
            first_offset,
        }
        .data_key(),
    );
    let stored = lake.put(&key, encoded.bytes).await.expect("put");
    let record = schemas::lake_layout::FileRecord {
        lake: lake.describe(),
        bucket: lake.bucket(),
        key,
        size: stored.size,
        etag: stored.etag,
        rows: events.len() as u64,
        topic: side.kafka.topic.clone(),
        partition: 0,
        first_offset,
        last_offset: first_offset + events.len() as i64 - 1,
        hour: hour.label(),
        written_at: chrono::Utc::now(),
        rejected_key: None,
        rejected_rows: 0,
    };
    announce(side, &serde_json::to_value(&record).expect("json")).await;
}

async fn announce(side: &Lakeside, record: &serde_json::Value) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", side.kafka.brokers())
        .create()
        .expect("producer");
    let payload = record.to_string();
    let key = record["key"].as_str().expect("key").to_owned();
    producer
        .send(
            FutureRecord::to(&side.files_topic).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .expect("announced");
}

#[tokio::test]
async fn postgres_loads_files_once_through_replays_and_quarantines_a_poison_file() {
    replays_and_a_poison_file(Kind::Postgres).await;
}

#[tokio::test]
async fn redshift_loads_files_once_through_replays_throttling_and_slow_statements_and_quarantines_a_poison_file(
) {
    replays_and_a_poison_file(Kind::Redshift).await;
}

async fn replays_and_a_poison_file(kind: Kind) {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(kind, &side).await;
    let pg = &warehouse.pg;
    if let Some(data_api) = &warehouse.data_api {
        // Throttled calls are retried by the SDK; slow statements are polled.
        data_api.faults.throttle_next.store(4, Ordering::SeqCst);
        data_api.faults.statement_delay_ms.store(400, Ordering::SeqCst);
    }
    let events = exposures(4_000, "load");
    produce_raw(&side, "one-user", b"not an exposure: {").await;
    let files = sink_with_foreign_records(&side, &events, 1).await;
    assert!(files.len() > 7, "several batches");

    // The same file announced twice, and a corrupt object announced among good ones.
    announce(&side, &files[0]).await;
    let lake = side.lake().await;
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
    announce(&side, &poison).await;

    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_rows(pg, events.len() as i64).await;
    let client = pg.client().await;
    wait_count(
        &client,
        "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'quarantined'",
        1,
        "the corrupt file was not quarantined",
    )
    .await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");

    // What `exposures status` shows: nothing waiting, every row, the quarantined file.
    let status = loader::status::gather(&status_config(&side, &warehouse)).await;
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

    assert_warehouse_exact(pg, &events).await;
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
    if let Some(data_api) = &warehouse.data_api {
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
    let ledger_rows = count(
        &client,
        "SELECT coalesce(sum(rows_loaded), 0)::bigint FROM analytics.exposures_loads WHERE status = 'loaded'",
    )
    .await;
    assert_eq!(ledger_rows, events.len() as i64);
}

#[tokio::test]
async fn postgres_outage_and_a_killed_loader_still_load_exactly_once() {
    outage_and_a_killed_loader(Kind::Postgres).await;
}

#[tokio::test]
async fn redshift_outage_and_a_killed_loader_still_load_exactly_once() {
    outage_and_a_killed_loader(Kind::Redshift).await;
}

async fn outage_and_a_killed_loader(kind: Kind) {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(kind, &side).await;
    let pg = &warehouse.pg;
    let events = exposures(3_000, "outage");
    sink_into_lake(&side, &events).await;

    // Killed mid-way: the task is dropped while it works; whatever transaction it had
    // open is rolled back with its connection.
    let (_stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    let client = pg.client().await;
    let deadline = Instant::now() + DEADLINE;
    while count(&client, "SELECT count(*) FROM analytics.exposures_loads").await < 1 {
        assert!(Instant::now() < deadline, "the loader loaded nothing");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling a condition
    }
    task.abort();
    let _ = task.await;

    // The warehouse goes away; a new loader waits for it, then finishes the job.
    drop(client);
    pg.stop_server(); // blocks this test's thread for a moment, which is all it needs
    let failures_before = load_failures();
    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    let deadline = Instant::now() + DEADLINE;
    while load_failures() <= failures_before {
        assert!(Instant::now() < deadline, "the loader never met the outage");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
    }
    pg.start_server();
    wait_rows(pg, events.len() as i64).await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(pg, &events).await;
    let client = pg.client().await;
    let ledger_rows = count(
        &client,
        "SELECT coalesce(sum(rows_loaded), 0)::bigint FROM analytics.exposures_loads WHERE status = 'loaded'",
    )
    .await;
    assert_eq!(
        ledger_rows,
        events.len() as i64,
        "the ledger agrees with the table"
    );
}

fn load_failures() -> f64 {
    metric_value("exposures_load_failures_total")
}

/// A record no warehouse can store (NUL in text) and one that is not an exposure at all,
/// produced straight to the topic as another producer might, among 10,000 good rows of
/// one partition: the good rows all load, the two alone are dead-lettered with their
/// reasons, `status` lists them, the ledger's counts add up, and once fixed the poison
/// row reloads exactly once.
#[tokio::test]
async fn a_poison_row_is_dead_lettered_alone_and_reloads_once_fixed() {
    poison_rows(Kind::Postgres).await;
}

#[tokio::test]
async fn redshift_dead_letters_poison_rows_alone() {
    poison_rows(Kind::Redshift).await;
}

async fn poison_rows(kind: Kind) {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(kind, &side).await;
    let mut events = exposures(10_000, "poison");
    for event in &mut events {
        event.ds_user_id = Some("one-user".into()); // one partition
    }
    let mut poison = events[5_000].clone();
    poison.event_id = uuid::Uuid::now_v7().to_string();
    poison.experiment_id = "checkout\u{0}button".into();
    events.insert(5_000, poison.clone());
    produce_raw(&side, "one-user", b"not an exposure: {").await;
    let files = sink_with_foreign_records(&side, &events, 1).await;
    assert!(files.len() > 1, "{} files", files.len());
    let good: Vec<schemas::Exposure> = events
        .iter()
        .filter(|e| e.event_id != poison.event_id)
        .cloned()
        .collect();

    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_rows(&warehouse.pg, good.len() as i64).await;
    let client = warehouse.pg.client().await;
    let rejected_count =
        || async { count(&client, "SELECT count(*) FROM analytics.exposures_rejected").await };
    let deadline = Instant::now() + DEADLINE;
    while rejected_count().await < 2 {
        assert!(Instant::now() < deadline, "the poison row was not dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(&warehouse.pg, &good).await;

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

    let status_config = status_config(&side, &warehouse);
    let status = loader::status::gather(&status_config).await.to_string();
    assert!(status.contains("rejected rows: 2"), "{status}");
    assert!(status.contains(&poison.event_id), "{status}");

    if matches!(kind, Kind::Redshift) {
        return; // reload-rejected runs on PostgreSQL
    }
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
        rejected_count().await,
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
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Postgres, &side).await;
    let mut events = exposures(50, "row-by-row");
    events[25].experiment_id = "null\u{0}byte".into();
    place_file(&side, &events, 1_000, ParquetCodec::default()).await;

    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_rows(&warehouse.pg, 49).await;
    let client = warehouse.pg.client().await;
    wait_count(
        &client,
        "SELECT count(*) FROM analytics.exposures_loads",
        1,
        "the file was not recorded in the ledger",
    )
    .await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
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
    let ledger = client
        .query_one(
            "SELECT status, rows_in_file, rows_loaded, rows_rejected FROM analytics.exposures_loads",
            &[],
        )
        .await
        .expect("ledger");
    assert_eq!(
        (
            ledger.get::<_, String>(0),
            ledger.get::<_, i64>(1),
            ledger.get::<_, i64>(2),
            ledger.get::<_, i64>(3)
        ),
        ("loaded".to_owned(), 50, 49, 1)
    );
}

/// A file record is data from a topic anyone with produce rights can write: one naming a
/// key outside the lake is skipped and counted; one naming another bucket or prefix is
/// quarantined with the reason, unread; the real files still load.
#[tokio::test]
async fn postgres_refuses_file_records_outside_its_lake() {
    file_records_outside_the_lake(Kind::Postgres).await;
}

#[tokio::test]
async fn redshift_refuses_file_records_outside_its_lake() {
    file_records_outside_the_lake(Kind::Redshift).await;
}

async fn file_records_outside_the_lake(kind: Kind) {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(kind, &side).await;
    let events = exposures(200, "trust");
    let files = sink_into_lake(&side, &events).await;
    let before = metric_value("exposures_load_invalid_records_total");
    let mut traversal = files[0].clone();
    traversal["key"] = "exposures/../../../../../../etc/passwd".into();
    announce(&side, &traversal).await;
    let mut other_bucket = files[0].clone();
    other_bucket["lake"] = "s3://someone-elses-bucket/tenant-a".into();
    other_bucket["bucket"] = "someone-elses-bucket".into();
    announce(&side, &other_bucket).await;
    let mut other_prefix = files[0].clone();
    other_prefix["key"] = other_prefix["key"]
        .as_str()
        .expect("key")
        .replace("tenant-a/", "tenant-b/")
        .into();
    announce(&side, &other_prefix).await;

    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_rows(&warehouse.pg, events.len() as i64).await;
    let client = warehouse.pg.client().await;
    let refused = "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'quarantined' \
                   AND reason LIKE '%not in this loader''s lake%'";
    let deadline = Instant::now() + DEADLINE;
    while metric_value("exposures_load_invalid_records_total") < before + 1.0
        || count(&client, refused).await < 2
    {
        assert!(Instant::now() < deadline, "the forged records were not refused");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM analytics.exposures_loads WHERE object_key LIKE '%passwd%'"
        )
        .await,
        0
    );
    assert_warehouse_exact(&warehouse.pg, &events).await;
}

/// Makes the warehouse's objects as an administrator would (`exposures ddl`), then runs
/// `roles` (the loader's role and its grants); returns the administrator's client.
async fn made_by_an_administrator(warehouse: &Warehouse, roles: &str) -> tokio_postgres::Client {
    let admin = warehouse.pg.client().await;
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
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Postgres, &side).await;
    made_by_an_administrator(
        &warehouse,
        "CREATE ROLE exposures_loader LOGIN; \
         GRANT USAGE, CREATE ON SCHEMA analytics TO exposures_loader; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA analytics TO exposures_loader;",
    )
    .await;
    let events = exposures(300, "grants");
    sink_into_lake(&side, &events).await;
    let mut config = load_config(&side, &warehouse, "load");
    config.warehouse.warehouse = Some(warehouse.pg.url_as("exposures_loader"));
    let (stop, task) = start_loader(config);
    wait_rows(&warehouse.pg, events.len() as i64).await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(&warehouse.pg, &events).await;
}

/// A refused login or privilege is not an outage: the loader ends with the reason at
/// once instead of retrying (and looking alive) forever. A role that does not exist
/// (SQLSTATE 28000), and one that may read the tables but not write them (42501).
#[tokio::test]
async fn a_loader_refused_a_login_or_privilege_ends_instead_of_retrying() {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Postgres, &side).await;
    let admin = made_by_an_administrator(
        &warehouse,
        "CREATE ROLE read_only LOGIN; \
         GRANT USAGE ON SCHEMA analytics TO read_only; \
         GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO read_only;",
    )
    .await;
    sink_into_lake(&side, &exposures(20, "refused")).await;
    for (role, sqlstate) in [("nobody", "28000"), ("read_only", "42501")] {
        let mut config = load_config(&side, &warehouse, &format!("load-{role}"));
        config.warehouse.warehouse = Some(warehouse.pg.url_as(role));
        let (_stop, task) = start_loader(config);
        let ended = tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the loader ended instead of retrying")
            .expect("loader task");
        let error = ended.expect_err("a refusal, not a clean stop");
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
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Redshift, &side).await;
    let data_api = warehouse.data_api.as_ref().expect("the Data API emulator");
    data_api.faults.deny_all.store(true, Ordering::SeqCst);
    let (_stop, task) = start_loader(load_config(&side, &warehouse, "load-denied"));
    let ended = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the loader ended instead of retrying")
        .expect("loader task");
    let error = ended.expect_err("a refusal, not a clean stop");
    assert!(error.retry().is_permanent(), "{error}");
    assert!(error.to_string().contains("AccessDeniedException"), "{error}");
}

/// An announced object that is gone from the lake (deleted by a lifecycle rule, say)
/// would fail its batch on every retry: it is quarantined with a clear reason instead,
/// and the files beside it load.
#[tokio::test]
async fn postgres_quarantines_a_missing_object_and_loads_the_rest() {
    missing_object(Kind::Postgres).await;
}

#[tokio::test]
async fn redshift_quarantines_a_missing_object_and_loads_the_rest() {
    missing_object(Kind::Redshift).await;
}

async fn missing_object(kind: Kind) {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(kind, &side).await;
    let events = exposures(200, "missing");
    let files = sink_into_lake(&side, &events).await;
    let mut gone = files[0].clone();
    let gone_key = gone["key"]
        .as_str()
        .expect("key")
        .replace(".parquet", "-deleted.parquet");
    gone["key"] = gone_key.clone().into();
    announce(&side, &gone).await;

    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_rows(&warehouse.pg, events.len() as i64).await;
    let client = warehouse.pg.client().await;
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
    let status = loader::status::gather(&status_config(&side, &warehouse)).await;
    let listed = |status: &loader::status::Report| match &status.warehouse {
        Some(Ok(w)) => w.quarantined.iter().any(|file| file.object_key == gone_key),
        other => panic!("warehouse section: {other:?}"),
    };
    assert!(listed(&status), "status lists the quarantined file");

    // The object comes back and is announced again: it loads (its rows are already
    // there), and `status` no longer lists it as quarantined.
    let lake = side.lake().await;
    let original = files[0]["key"].as_str().expect("key");
    let body = lake.get(original).await.expect("original object");
    lake.put(&gone_key, body).await.expect("restored");
    announce(&side, &gone).await;
    wait_count(
        &client,
        &format!("SELECT count(*) FROM analytics.exposures_loads WHERE object_key = '{gone_key}' AND status = 'loaded'"),
        1,
        "the restored object was not loaded",
    )
    .await;
    let status = loader::status::gather(&status_config(&side, &warehouse)).await;
    assert!(
        !listed(&status),
        "a file loaded since is not listed as quarantined"
    );
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(&warehouse.pg, &events).await;
}

/// Every `--compression` the sink offers loads into PostgreSQL.
#[tokio::test]
async fn every_parquet_codec_loads_into_postgres() {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Postgres, &side).await;
    let events = exposures(90, "codecs");
    for (index, (codec, part)) in [ParquetCodec::Snappy, ParquetCodec::Zstd, ParquetCodec::Gzip]
        .into_iter()
        .zip(events.chunks(30))
        .enumerate()
    {
        place_file(&side, part, 1_000 * index as i64, codec).await;
    }
    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_rows(&warehouse.pg, events.len() as i64).await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(&warehouse.pg, &events).await;
}

/// Redshift (through the emulator, which refuses what Spectrum does not document) loads
/// Snappy and gzip files. zstd files are refused one by one: after three refused with the
/// same error the loader stops quarantining and fails loudly (counted failures) instead
/// of quarantining the rest.
#[tokio::test]
async fn redshift_loads_snappy_and_gzip_and_a_codec_it_cannot_read_trips_the_breaker() {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Redshift, &side).await;
    let readable = exposures(60, "readable");
    place_file(&side, &readable[..30], 0, ParquetCodec::Snappy).await;
    place_file(&side, &readable[30..], 1_000, ParquetCodec::Gzip).await;
    let mut config = load_config(&side, &warehouse, "load");
    let (stop, task) = start_loader(config.clone());
    wait_rows(&warehouse.pg, readable.len() as i64).await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(&warehouse.pg, &readable).await;

    let unreadable = exposures(60, "zstd");
    for (index, part) in unreadable.chunks(10).enumerate() {
        place_file(&side, part, 10_000 + 1_000 * index as i64, ParquetCodec::Zstd).await;
    }
    config.batches.batch_files = 6;
    let failures = load_failures();
    let (stop, task) = start_loader(config);
    let client = warehouse.pg.client().await;
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
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    let quarantined = count(
        &client,
        "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'quarantined'",
    )
    .await;
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
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Postgres, &side).await;
    let admin = warehouse.pg.client().await;
    admin
        .batch_execute(&schemas::ddl::script(
            schemas::ddl::Dialect::Postgres,
            "analytics",
        ))
        .await
        .expect("objects");
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
    sink_into_lake(&side, &events).await;
    let growthbook_rows = "SELECT count(*) FROM analytics.exposures_growthbook";

    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_rows(&warehouse.pg, events.len() as i64).await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
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
    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    wait_count(
        &admin,
        growthbook_rows,
        events.len() as i64,
        "the stale view was not replaced",
    )
    .await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
}

/// Redshift's VARCHAR width counts bytes: a file holding a 200-character experiment_id of
/// two-byte characters (400 bytes in a VARCHAR(256)), written past ingest's checks, is
/// refused by COPY as Redshift words it, and quarantined alone.
#[tokio::test]
async fn redshift_counts_varchar_widths_in_bytes() {
    let side = Lakeside::new().await;
    let warehouse = Warehouse::start(Kind::Redshift, &side).await;
    let good = exposures(10, "bytes-good");
    let mut wide = exposures(1, "bytes-wide");
    wide[0].experiment_id = "é".repeat(200);
    place_file(&side, &good, 0, ParquetCodec::default()).await;
    place_file(&side, &wide, 1_000, ParquetCodec::default()).await;
    let (stop, task) = start_loader(load_config(&side, &warehouse, "load"));
    let client = warehouse.pg.client().await;
    wait_count(
        &client,
        "SELECT count(*) FROM analytics.exposures_loads",
        2,
        "the files were not both recorded",
    )
    .await;
    stop.cancel();
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(&warehouse.pg, &good).await;
    let reason: String = client
        .query_one(
            "SELECT reason FROM analytics.exposures_loads WHERE status = 'quarantined'",
            &[],
        )
        .await
        .expect("one quarantined file")
        .get(0);
    assert!(reason.contains("String length exceeds DDL length"), "{reason}");
}
