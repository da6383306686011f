//! `exposures reconcile` against a running loader on PostgreSQL: a ledger row deleted
//! and an object written to the lake but never announced are both found, `--repair`
//! announces them again, the loader loads the new rows exactly once and re-records the
//! other without duplicating its rows, and after that reconcile finds nothing and a
//! second repair announces nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use loader::load::LoadConfig;
use loader::reconcile::ReconcileConfig;
use loader::sink::file::{OpenFile, ParquetCodec};
use schemas::lake_layout::{FileKey, Hour};

use crate::harness::kafka::record_count;
use crate::harness::lake::{exposures, produce, start_sink, wait_committed, Lakeside};
use crate::harness::postgres::{assert_warehouse_exact, Pg};
use crate::harness::{flags, DEADLINE};

fn load_config(side: &Lakeside, pg: &Pg) -> LoadConfig {
    let mut config: LoadConfig = flags(&[
        "--brokers",
        &side.kafka.brokers(),
        "--files-topic",
        &side.files_topic,
        "--group",
        "load",
        "--lake",
        Lakeside::LAKE,
        "--warehouse",
        &pg.url(),
        "--schema",
        "analytics",
        "--batch-files",
        "7",
        "--batch-interval",
        "300ms",
    ]);
    config.lake = side.lake_args();
    config
}

fn reconcile_config(side: &Lakeside, pg: &Pg, repair: bool) -> ReconcileConfig {
    let mut config: ReconcileConfig = flags(&[
        "--brokers",
        &side.kafka.brokers(),
        "--files-topic",
        &side.files_topic,
        "--lake",
        Lakeside::LAKE,
        "--warehouse",
        &pg.url(),
        "--schema",
        "analytics",
        "--since",
        "7d",
        // The test's objects were all just written.
        "--grace",
        "0s",
    ]);
    config.lake = side.lake_args();
    config.repair = repair;
    config
}

async fn count(pg: &Pg, sql: &str) -> i64 {
    match tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
                .query_one(sql, &[])
                .await
                .map(|row| row.get::<_, i64>(0))
                .unwrap_or(-1)
        }
        Err(_) => -1,
    }
}

/// Waits until `sql` counts `expected` (never more).
async fn wait_count(pg: &Pg, sql: &str, expected: i64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let n = count(pg, sql).await;
        if n == expected {
            return;
        }
        assert!(n <= expected, "{sql}: {n}, expected {expected}");
        assert!(Instant::now() < deadline, "{sql}: {n}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
}

const ROWS: &str = "SELECT count(*) FROM analytics.exposures";
const LOADED: &str = "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'loaded'";

#[tokio::test]
async fn reconcile_finds_a_deleted_ledger_row_and_an_unannounced_object_and_repair_loads_them_once() {
    let side = Lakeside::new().await;
    let pg = tokio::task::spawn_blocking(Pg::start).await.expect("postgres");

    // The pipeline: sink 900 events into the lake, load them.
    let events = exposures(900, "reconcile");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    let mut sink_config = side.config("sink");
    sink_config.files.max_file_rows = 300;
    let sink = start_sink(sink_config);
    wait_committed(&side, "sink", events.len() as i64).await;
    sink.stop().await;
    let files = record_count(&side.kafka.brokers(), &side.files_topic);
    assert!(files >= 3, "{files} files");

    let stop = stage::Shutdown::new();
    let loader = tokio::spawn(loader::load::run(load_config(&side, &pg), stop.clone()));
    wait_count(&pg, ROWS, events.len() as i64).await;
    wait_count(&pg, LOADED, files).await;

    // Consistent so far.
    let clean = loader::reconcile::run(&reconcile_config(&side, &pg, false)).await;
    assert_eq!(clean.exit_code(), 0, "{clean}");
    assert_eq!(clean.objects as i64, files, "{clean}");

    // A ledger row deleted (its rows stay in the table) ...
    let client = pg.client().await;
    let deleted: String = client
        .query_one(
            "DELETE FROM analytics.exposures_loads WHERE object_key = \
             (SELECT min(object_key) FROM analytics.exposures_loads) RETURNING object_key",
            &[],
        )
        .await
        .expect("delete a ledger row")
        .get(0);
    // ... and an object the sink never announced (offsets beyond the topic's).
    let extra = exposures(40, "unannounced");
    let hour = Hour::of_millis(extra[0].received_at.timestamp_millis());
    let first_offset = 1_000_000;
    let mut file = OpenFile::new(0, hour, first_offset, &side.kafka.topic, ParquetCodec::default());
    for (offset, event) in (first_offset..).zip(&extra) {
        file.append(&schemas::LakeRow::from_exposure(event), offset)
            .expect("encoded");
    }
    let encoded = file.encode().expect("parquet");
    let lake = side.lake().await;
    let placed = lake.key(
        &FileKey {
            hour,
            partition: 0,
            first_offset,
        }
        .data_key(),
    );
    lake.put(&placed, encoded.bytes).await.expect("put");

    // Reconcile lists both, and nothing else.
    let found = loader::reconcile::run(&reconcile_config(&side, &pg, false)).await;
    let text = found.to_string();
    let not_loaded: HashSet<&str> = found.not_loaded.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(
        not_loaded,
        HashSet::from([deleted.as_str(), placed.as_str()]),
        "{text}"
    );
    assert!(found.missing_from_lake.is_empty(), "{text}");
    assert!(found.mismatches.is_empty(), "{text}");
    assert!(found.rows_in_no_file.is_empty(), "{text}");
    assert!(found.errors.is_empty(), "{text}");
    assert_eq!(found.exit_code(), 1, "{text}");
    assert_eq!(found.to_json()["exit_code"], 1);
    assert!(text.contains("not loaded (no ledger row): 2"), "{text}");

    // Repair announces both; the loader loads the new rows once, re-records the other.
    let repaired = loader::reconcile::run(&reconcile_config(&side, &pg, true)).await;
    let text = repaired.to_string();
    assert!(
        repaired
            .not_loaded
            .iter()
            .all(|n| matches!(n.announced, Some(Ok(())))),
        "{text}"
    );
    assert_eq!(repaired.exit_code(), 0, "{text}");
    assert_eq!(record_count(&side.kafka.brokers(), &side.files_topic), files + 2);
    wait_count(&pg, LOADED, files + 1).await;
    wait_count(&pg, ROWS, (events.len() + extra.len()) as i64).await;
    let ledger = client
        .query_one(
            "SELECT rows_in_file, rows_loaded FROM analytics.exposures_loads WHERE object_key = $1",
            &[&deleted],
        )
        .await
        .expect("the deleted ledger row is recorded again");
    assert_eq!(ledger.get::<_, i64>(1), 0, "its rows were already in the table");
    let ledger = client
        .query_one(
            "SELECT rows_in_file, rows_loaded FROM analytics.exposures_loads WHERE object_key = $1",
            &[&placed],
        )
        .await
        .expect("the unannounced object is loaded");
    assert_eq!(
        (ledger.get::<_, i64>(0), ledger.get::<_, i64>(1)),
        (extra.len() as i64, extra.len() as i64)
    );
    // Exactly the events, each once.
    let all: Vec<schemas::Exposure> = events.iter().chain(&extra).cloned().collect();
    assert_warehouse_exact(&pg, &all).await;

    // Consistent again: nothing listed, and a second repair announces nothing.
    let after = loader::reconcile::run(&reconcile_config(&side, &pg, false)).await;
    assert_eq!(after.exit_code(), 0, "{after}");
    assert!(after.not_loaded.is_empty(), "{after}");
    assert!(after.to_string().contains("consistent"), "{after}");
    let again = loader::reconcile::run(&reconcile_config(&side, &pg, true)).await;
    assert_eq!(again.exit_code(), 0, "{again}");
    assert_eq!(
        record_count(&side.kafka.brokers(), &side.files_topic),
        files + 2,
        "nothing announced"
    );

    // A row deleted from the table and rows of no file show as mismatches.
    client
        .batch_execute(
            "DELETE FROM analytics.exposures WHERE kafka_partition = 0 AND kafka_offset = 1000000;\
             UPDATE analytics.exposures SET kafka_offset = kafka_offset + 5000000 \
             WHERE kafka_partition = 0 AND kafka_offset = 1000001",
        )
        .await
        .expect("tamper");
    let tampered = loader::reconcile::run(&reconcile_config(&side, &pg, false)).await;
    let text = tampered.to_string();
    assert_eq!(tampered.exit_code(), 1, "{text}");
    assert_eq!(tampered.mismatches.len(), 1, "{text}");
    assert_eq!(tampered.mismatches[0].key, placed, "{text}");
    assert_eq!(
        tampered.mismatches[0].table_rows,
        Some(extra.len() as i64 - 2),
        "{text}"
    );
    assert_eq!(tampered.rows_in_no_file.len(), 1, "{text}");
    assert_eq!(tampered.rows_in_no_file[0].rows, 1, "{text}");
    assert_eq!(tampered.rows_in_no_file[0].min_offset, 6_000_001, "{text}");

    stop.cancel();
    loader.await.expect("loader task").expect("loader");
}
