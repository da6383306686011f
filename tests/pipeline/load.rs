//! The loader against a real PostgreSQL: the pipeline's lake files end up as rows
//! exactly once, through replays, a poison file, an outage and a killed loader.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use loader::load::LoadConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::sync::oneshot;

use crate::postgres::Pg;
use crate::sink::{exposures, produce, start_sink, wait_committed, Lakeside};
use crate::support::{self, DEADLINE};

fn load_config(side: &Lakeside, pg: &Pg, group: &str) -> LoadConfig {
    let sink = side.config("unused");
    LoadConfig {
        brokers: side.kafka.brokers(),
        files_topic: side.files_topic.clone(),
        group: group.to_owned(),
        warehouse: pg.url(),
        schema: "analytics".into(),
        batch_files: 7,
        batch_interval: Duration::from_millis(300),
        s3_endpoint: sink.s3_endpoint,
        s3_region: sink.s3_region,
        s3_static_credentials: sink.s3_static_credentials,
    }
}

fn start_loader(
    config: LoadConfig,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), loader::load::LoadError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(loader::load::run(config, async move {
        let _ = stopped.await;
    }));
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

/// Sinks `events` into the lake and returns the file records announced for them.
async fn sink_into_lake(side: &Lakeside, events: &[schemas::Exposure]) -> Vec<serde_json::Value> {
    produce(&side.kafka.brokers(), &side.kafka.topic, events).await;
    let mut config = side.config("sink");
    config.max_file_rows = 300;
    let sink = start_sink(config);
    wait_committed(side, "sink", events.len() as i64).await;
    sink.stop().await;
    let files = support::record_count(&side.kafka.brokers(), &side.files_topic);
    support::read_exactly(&side.kafka.brokers(), &side.files_topic, files as usize)
        .await
        .into_iter()
        .map(|r| r.value)
        .collect()
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

async fn assert_warehouse_exact(pg: &Pg, events: &[schemas::Exposure]) {
    let client = pg.client().await;
    let ids: HashSet<String> = client
        .query("SELECT event_id FROM analytics.exposures", &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), expected.len());
    assert!(ids == expected, "warehouse rows differ from the events");
    assert_eq!(
        count(&client, "SELECT count(*) FROM analytics.exposures_growthbook").await,
        events.len() as i64,
        "every exposure (all have a ds_user_id) is in GrowthBook's view"
    );
}

#[tokio::test]
async fn files_load_once_through_replays_and_a_poison_file_is_quarantined() {
    let side = Lakeside::new().await;
    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let events = exposures(4_000, "load");
    let files = sink_into_lake(&side, &events).await;
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
    announce(&side, &poison).await;

    let (stop, task) = start_loader(load_config(&side, &pg, "load"));
    wait_rows(&pg, events.len() as i64).await;
    let client = pg.client().await;
    let deadline = Instant::now() + DEADLINE;
    while count(
        &client,
        "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'quarantined'",
    )
    .await
        < 1
    {
        assert!(Instant::now() < deadline, "the corrupt file was not quarantined");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    let _ = stop.send(());
    task.await.expect("loader task").expect("loader");

    assert_warehouse_exact(&pg, &events).await;
    let quarantined = client
        .query_one(
            "SELECT object_key, reason FROM analytics.exposures_loads WHERE status = 'quarantined'",
            &[],
        )
        .await
        .expect("ledger");
    assert_eq!(quarantined.get::<_, String>(0), poison_key);
    assert!(quarantined.get::<_, String>(1).contains("Parquet"));
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
async fn warehouse_outage_and_a_killed_loader_still_load_exactly_once() {
    let side = Lakeside::new().await;
    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");
    let events = exposures(3_000, "outage");
    sink_into_lake(&side, &events).await;

    // Killed mid-way: the task is dropped while it works; whatever transaction it had
    // open is rolled back with its connection.
    let (_stop, task) = start_loader(load_config(&side, &pg, "load"));
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
    let (stop, task) = start_loader(load_config(&side, &pg, "load"));
    let deadline = Instant::now() + DEADLINE;
    while load_failures() <= failures_before {
        assert!(Instant::now() < deadline, "the loader never met the outage");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
    }
    pg.start_server();
    wait_rows(&pg, events.len() as i64).await;
    let _ = stop.send(());
    task.await.expect("loader task").expect("loader");
    assert_warehouse_exact(&pg, &events).await;
}

fn load_failures() -> f64 {
    support::metric_value("exposures_load_failures_total")
}
