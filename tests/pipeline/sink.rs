//! The sink over real protocols: Kafka (librdkafka's mock cluster), S3 (aws-sdk-s3
//! against an S3-protocol server on 127.0.0.1), Parquet read back with the parquet crate.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use loader::lake::embedded::{self, EmbeddedS3};
use loader::sink::{FaultPoint, SinkError};

use crate::harness::api::http;
use crate::harness::kafka::{read_exactly, record_count};
use crate::harness::lake::{
    assert_exact, committed, exposures, produce, read_lake, start_sink, wait_committed, Lakeside, PARTITIONS,
};
use crate::harness::process::{self, free_port};
use crate::harness::{metric_value, DEADLINE};

#[tokio::test]
async fn sink_writes_100k_events_over_6_partitions_and_3_hours_exactly_once() {
    let side = Lakeside::new().await;
    let events = exposures(100_000, "bulk");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    assert_eq!(
        record_count(&side.kafka.brokers(), &side.kafka.topic),
        events.len() as i64,
        "the broker kept every record (low watermarks at 0)"
    );
    let sink = start_sink(side.config("sink-bulk"));
    wait_committed(&side, "sink-bulk", events.len() as i64).await;
    sink.stop().await;

    let rows = read_lake(&side.lake().await).await;
    assert_exact(&rows, &events);
    let files: HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let hours: HashSet<String> = rows
        .iter()
        .map(|r| r.received_at.format("%d%H").to_string())
        .collect();
    assert_eq!(hours.len(), 3, "three hours of data");
    assert!(
        files.len() >= (PARTITIONS * 3) as usize,
        "a file per partition and hour at least"
    );
    // Each file was announced on the files topic.
    let announced = read_exactly(&side.kafka.brokers(), &side.files_topic, files.len()).await;
    let announced_keys: HashSet<String> = announced
        .iter()
        .map(|r| r.value["key"].as_str().expect("key").to_owned())
        .collect();
    assert_eq!(announced_keys, files.iter().map(|k| k.to_string()).collect());
    let announced_rows: u64 = announced
        .iter()
        .map(|r| r.value["rows"].as_u64().expect("rows"))
        .sum();
    assert_eq!(announced_rows, events.len() as u64);
    assert!(
        side.dir.path().join("lake/tenant-a/exposures/v1").is_dir(),
        "objects are plain files"
    );
}

async fn crash_then_restart(point: FaultPoint) {
    let side = Lakeside::new().await;
    let group = format!("sink-fault-{point:?}");
    let events = exposures(6_000, "fault");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    let mut config = side.config(&group);
    config.files.max_file_rows = 400;
    config.fault = Some(point);
    let crashed = loader::sink::run(config.clone(), stage::Shutdown::new()).await;
    assert!(
        matches!(crashed, Err(SinkError::InjectedFault(p)) if p == point),
        "{crashed:?}"
    );
    config.fault = None;
    let sink = start_sink(config);
    wait_committed(&side, &group, events.len() as i64).await;
    sink.stop().await;
    assert_exact(&read_lake(&side.lake().await).await, &events);
}

#[tokio::test]
async fn crash_after_upload_then_restart_is_exact() {
    crash_then_restart(FaultPoint::AfterUpload).await;
}

#[tokio::test]
async fn crash_after_announce_before_commit_then_restart_is_exact() {
    crash_then_restart(FaultPoint::AfterAnnounce).await;
}

#[tokio::test]
async fn crash_after_commit_then_restart_is_exact() {
    crash_then_restart(FaultPoint::AfterCommit).await;
}

fn upload_failures() -> f64 {
    metric_value("exposures_sink_upload_failures_total")
}

#[tokio::test]
async fn object_store_outage_stalls_the_sink_then_it_catches_up() {
    let mut side = Lakeside::new().await;
    if let Some(s3) = side.s3.take() {
        s3.stop();
    }
    let failures_before = upload_failures();
    let events = exposures(3_000, "outage");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    let sink = start_sink(side.config("sink-outage"));
    let deadline = Instant::now() + DEADLINE;
    while upload_failures() <= failures_before {
        assert!(Instant::now() < deadline, "the sink never tried to upload");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
    }
    let (brokers, topic) = (side.kafka.brokers(), side.kafka.topic.clone());
    let during = tokio::task::spawn_blocking(move || committed(&brokers, &topic, "sink-outage"))
        .await
        .expect("committed");
    assert_eq!(during, 0, "nothing is committed while the store is down");

    side.s3 = Some(
        embedded::serve(side.dir.path(), "lake", side.s3_address)
            .await
            .expect("S3 back on the same address"),
    );
    wait_committed(&side, "sink-outage", events.len() as i64).await;
    sink.stop().await;
    assert_exact(&read_lake(&side.lake().await).await, &events);
}

/// Shutdown while the store is down gives up the range being closed, uncommitted; the
/// range after it (opened by a record of the next hour) must then not be filed and
/// committed by the final flush, which would carry the commit past records in no file.
/// Whatever the sink committed is in the lake, row for row.
#[tokio::test]
async fn a_range_given_up_at_shutdown_is_never_committed_past() {
    let mut side = Lakeside::new().await;
    if let Some(s3) = side.s3.take() {
        s3.stop();
    }
    let failures_before = upload_failures();
    // Three hours of receive times: every partition's first range closes at an hour change.
    let events = exposures(3_000, "abandon");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    let sink = start_sink(side.config("sink-abandon"));
    let deadline = Instant::now() + DEADLINE;
    while upload_failures() <= failures_before {
        assert!(Instant::now() < deadline, "the sink never tried to upload");
        tokio::time::sleep(Duration::from_millis(50)).await; // polling a condition
    }
    sink.begin_stop();
    // The final flush of the other ranges needs the store back.
    side.s3 = Some(
        embedded::serve(side.dir.path(), "lake", side.s3_address)
            .await
            .expect("S3 back on the same address"),
    );
    sink.finished().await;
    let (brokers, topic) = (side.kafka.brokers(), side.kafka.topic.clone());
    let committed = tokio::task::spawn_blocking(move || committed(&brokers, &topic, "sink-abandon"))
        .await
        .expect("committed");
    let rows = read_lake(&side.lake().await).await;
    let distinct: HashSet<(i32, i64)> = rows.iter().map(|row| row.position()).collect();
    assert_eq!(distinct.len(), rows.len(), "no record twice");
    assert_eq!(
        rows.len() as i64,
        committed,
        "every committed record is in the lake (the partitions start at offset 0)"
    );
}

/// A lake that refuses the sink's credentials is not an outage: retrying cannot fix it,
/// so the sink ends with the S3 answer (a supervisor shows the crash loop and its
/// reason) instead of retrying forever while it looks alive. Nothing is committed.
#[tokio::test]
async fn a_lake_that_refuses_the_credentials_ends_the_sink() {
    let side = Lakeside::new().await;
    let events = exposures(50, "refused");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    for (access_key, secret_key) in [("nobody", embedded::SECRET_KEY), (embedded::ACCESS_KEY, "wrong")] {
        let group = format!("sink-refused-{access_key}");
        let mut config = side.config(&group);
        config.files.flush_when_idle = Some(Duration::from_millis(200));
        config.lake.s3_static_credentials = Some((access_key.into(), secret_key.into()));
        let ended = tokio::time::timeout(DEADLINE, loader::sink::run(config, stage::Shutdown::new()))
            .await
            .expect("the sink ended instead of retrying");
        match ended {
            Err(SinkError::Lake(error)) => {
                assert!(error.retry().is_permanent(), "{error}");
                assert!(error.to_string().contains("PutObject"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        let (brokers, topic) = (side.kafka.brokers(), side.kafka.topic.clone());
        let committed = tokio::task::spawn_blocking(move || committed(&brokers, &topic, &group))
            .await
            .expect("committed");
        assert_eq!(committed, 0, "nothing is committed");
    }
}

fn sink_process(side: &Lakeside, s3: &EmbeddedS3, metrics_port: u16) -> tokio::process::Child {
    process::exposures()
        .args([
            "sink",
            "--brokers",
            &side.kafka.brokers(),
            "--lake",
            "s3://lake/tenant-a",
        ])
        .args(["--topic", &side.kafka.topic, "--files-topic", &side.files_topic])
        .args(["--s3-endpoint", &s3.endpoint(), "--s3-region", "us-east-1"])
        .args([
            "--flush-interval",
            "1s",
            "--max-file-rows",
            "500",
            "--session-timeout",
            "6s",
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .env("AWS_ACCESS_KEY_ID", embedded::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", embedded::SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .spawn()
        .expect("spawn sink")
}

/// Two `exposures sink` processes share the group; one is killed with SIGKILL while
/// both work. The broker is librdkafka's mock cluster, reached over TCP by the child
/// processes (the same on `exposures dev-broker`: tests/pipeline/embedded_broker.rs).
#[tokio::test]
async fn two_sink_processes_one_killed_under_load_the_other_takes_over_exactly() {
    let side = Lakeside::new().await;
    let s3 = side.s3.as_ref().expect("S3");
    let brokers = side.kafka.brokers();
    let mut first = sink_process(&side, s3, free_port());
    let second_metrics = free_port();
    let _second = sink_process(&side, s3, second_metrics);

    let events = exposures(20_000, "killed");
    let (head, tail) = events.split_at(8_000);
    produce(&brokers, &side.kafka.topic, head).await;
    let lake = side.lake().await;
    // Kill the first sink only once the group is settled with both members working: the
    // second has committed a file. (Killed in the middle of a rebalance, a member holds
    // the group until the rebalance timeout, which is a different test.)
    let client = http();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let metrics = match client
            .get(format!("http://127.0.0.1:{second_metrics}/metrics"))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if metrics.contains("exposures_sink_committed_offset{") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second sink never committed a file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");
    produce(&brokers, &side.kafka.topic, tail).await;

    let deadline = Instant::now() + DEADLINE * 3;
    loop {
        let (b, group) = (brokers.clone(), "exposures-sink");
        let topic = side.kafka.topic.clone();
        let done = tokio::task::spawn_blocking(move || committed(&b, &topic, group))
            .await
            .expect("committed");
        if done == events.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "surviving sink committed {done} of {}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // polling a condition
    }
    assert_exact(&read_lake(&lake).await, &events);
}

/// `--max-buffered-bytes` bounds the open files of all partitions together: with the
/// flush interval at an hour and no per-file limit in reach, only the budget can close
/// the current hour's files early. Without it the last hour's third of the events would
/// stay buffered (and uncommitted) until shutdown.
#[tokio::test]
async fn open_files_together_stay_within_max_buffered_bytes() {
    let side = Lakeside::new().await;
    let group = "sink-budget";
    let events = exposures(12_000, "budget");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    let mut config = side.config(group);
    config.files.flush_interval = Some(Duration::from_secs(3600));
    // A row of these events takes a few hundred bytes in the builders: the budget holds
    // at most a few hundred rows, far less than an hour's 4,000.
    config.files.max_buffered_bytes = Some(64 * 1024);
    let sink = start_sink(config);
    let wanted = events.len() as i64 - 1_000;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (brokers, topic) = (side.kafka.brokers(), side.kafka.topic.clone());
        let done = tokio::task::spawn_blocking(move || committed(&brokers, &topic, group))
            .await
            .expect("committed");
        if done >= wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {} committed while the flush interval is an hour: the buffer budget closed too little",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
    sink.stop().await;
    assert_exact(&read_lake(&side.lake().await).await, &events);
}

#[tokio::test]
async fn a_partition_that_goes_quiet_is_flushed_after_flush_when_idle() {
    // --flush-interval an hour away: only the idle rule can close the files.
    let side = Lakeside::new().await;
    let mut config = side.config("sink-idle");
    config.files.flush_interval = Some(Duration::from_secs(3600));
    config.files.flush_when_idle = Some(Duration::from_secs(1));
    let sink = start_sink(config);
    let events = exposures(600, "idle");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    wait_committed(&side, "sink-idle", events.len() as i64).await;
    sink.stop().await;
    assert_exact(&read_lake(&side.lake().await).await, &events);
}

/// The rows of each object of `table` in the lake, by key: (first offset, rows).
async fn table_files(side: &Lakeside, table: &str) -> Vec<(String, usize)> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let lake = side.lake().await;
    let mut files = Vec::new();
    for key in lake.list(&format!("tenant-a/{table}/v1/")).await.expect("list") {
        let body = lake.get(&key).await.expect("get");
        let reader = ParquetRecordBatchReaderBuilder::try_new(body)
            .expect("parquet")
            .build()
            .expect("reader");
        let rows = reader.map(|batch| batch.expect("batch").num_rows()).sum();
        files.push((key, rows));
    }
    files.sort();
    files
}

/// A range re-read after a crash may end sooner than the one the crashed sink filed;
/// the earlier owner's file of a table that has no rows in the shorter range would then
/// keep rows the next range files again. The re-read range replaces it with an empty
/// file, so the lake holds every record once.
#[tokio::test]
async fn a_shorter_range_after_a_crash_replaces_the_earlier_file_of_a_table_it_lacks() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let side = Lakeside::new().await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", side.kafka.brokers())
        .create()
        .expect("producer");
    // Partition 0: ten exposures, then ten feature evaluations.
    let tracked = |i: usize| {
        let columns =
            serde_json::json!({"feature_key": "free_shipping", "value": true, "user_id": format!("u-{i}")});
        let serde_json::Value::Object(columns) = columns else {
            unreachable!()
        };
        schemas::Normalizer::default()
            .tracked_row(&schemas::tracked::FEATURE_USAGE, columns, chrono::Utc::now())
            .expect("row")
            .to_kafka_value()
    };
    let values: Vec<Vec<u8>> = exposures(10, "range")
        .iter()
        .map(schemas::Exposure::to_json_bytes)
        .chain((0..10).map(tracked))
        .collect();
    for value in &values {
        producer
            .send(
                FutureRecord::to(&side.kafka.topic)
                    .partition(0)
                    .key("k")
                    .payload(value),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }

    // The first owner files all twenty in one range, announces, and crashes before its commit.
    let group = "sink-shorter-range";
    let mut config = side.config(group);
    config.files.flush_when_idle = Some(Duration::from_millis(300));
    config.fault = Some(FaultPoint::AfterAnnounce);
    let crashed = loader::sink::run(config.clone(), stage::Shutdown::new()).await;
    assert!(matches!(crashed, Err(SinkError::InjectedFault(_))), "{crashed:?}");
    let before = table_files(&side, "feature_usage").await;
    assert_eq!(
        before.iter().map(|(_, rows)| rows).sum::<usize>(),
        10,
        "{before:?}"
    );

    // The next owner re-reads from offset 0 in ranges of ten: the first has no feature rows.
    config.fault = None;
    config.files.max_file_rows = 10;
    let sink = start_sink(config);
    wait_committed(&side, group, values.len() as i64).await;
    sink.stop().await;
    let after = table_files(&side, "feature_usage").await;
    assert_eq!(
        after.iter().map(|(_, rows)| rows).sum::<usize>(),
        10,
        "every feature evaluation once: {after:?}"
    );
    assert_eq!(
        after.len(),
        2,
        "the earlier file, emptied, and the new one: {after:?}"
    );
    assert_eq!(after[0].0, before[0].0, "the earlier file's key");
    assert_eq!(after[0].1, 0);
    let exposure_rows: usize = table_files(&side, "exposures")
        .await
        .iter()
        .map(|(_, rows)| rows)
        .sum();
    assert_eq!(exposure_rows, 10);
}
