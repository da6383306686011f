//! `exposures reconcile` against a running loader, on PostgreSQL and on Redshift through
//! the Data API emulator: a ledger row deleted and an object written to the lake but
//! never announced are both found, `--repair` announces them again, the loader loads the
//! new rows exactly once and re-records the other without duplicating its rows, and after
//! that reconcile finds nothing and a second repair announces nothing.

use std::collections::HashSet;

use loader::sink::file::ParquetCodec;

use crate::harness::kafka::record_count;
use crate::harness::lake::exposures;
use crate::harness::scenario::{on_both_warehouses, Kind, Scenario};

const ROWS: &str = "SELECT count(*) FROM analytics.exposures";
const LOADED: &str = "SELECT count(*) FROM analytics.exposures_loads WHERE status = 'loaded'";

on_both_warehouses!(deleted_ledger_row_and_unannounced_object =>
    reconcile_finds_a_deleted_ledger_row_and_an_unannounced_object_and_repair_loads_them_once,
    reconcile_on_redshift_finds_and_repairs_the_same);

async fn deleted_ledger_row_and_unannounced_object(kind: Kind) {
    let scenario = Scenario::start(kind).await;
    let side = &scenario.side;
    let reconcile = |repair| {
        let config = scenario.reconcile_config(repair);
        async move { loader::reconcile::run(&config).await }
    };

    // The pipeline: sink 900 events into the lake, load them.
    let events = exposures(900, "reconcile");
    let files = scenario.sink(&events).await.len() as i64;
    assert!(files >= 3, "{files} files");
    let running = scenario.start_loader();
    scenario.wait_count(ROWS, events.len() as i64).await;
    scenario.wait_count(LOADED, files).await;

    // Consistent so far.
    let clean = reconcile(false).await;
    assert_eq!(clean.exit_code(), 0, "{clean}");
    assert_eq!(clean.objects as i64, files, "{clean}");

    // A ledger row deleted (its rows stay in the table) ...
    let client = scenario.client().await;
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
    let placed = scenario
        .write_file(&extra, 1_000_000, ParquetCodec::default())
        .await
        .key;

    // Reconcile lists both, and nothing else.
    let found = reconcile(false).await;
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
    let repaired = reconcile(true).await;
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
    scenario.wait_count(LOADED, files + 1).await;
    scenario
        .wait_count(ROWS, (events.len() + extra.len()) as i64)
        .await;
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
    scenario.assert_exact(&all).await;

    // Consistent again: nothing listed, and a second repair announces nothing.
    let after = reconcile(false).await;
    assert_eq!(after.exit_code(), 0, "{after}");
    assert!(after.not_loaded.is_empty(), "{after}");
    assert!(after.to_string().contains("consistent"), "{after}");
    let again = reconcile(true).await;
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
    let tampered = reconcile(false).await;
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

    running.stop().await;
}
