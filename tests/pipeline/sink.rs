//! The sink over real protocols: Kafka (librdkafka's mock cluster), S3 (aws-sdk-s3
//! against an S3-protocol server on 127.0.0.1), Parquet read back with the parquet crate.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, TimeZone, Timelike, Utc};
use loader::lake::embedded::{self, EmbeddedS3};
use loader::lake::{AwsOptions, Lake};
use loader::sink::{FaultPoint, SinkConfig, SinkError};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schemas::Exposure;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{self, Kafka, DEADLINE};

const PARTITIONS: i32 = 6;

pub(crate) struct Lakeside {
    pub(crate) kafka: Kafka,
    pub(crate) files_topic: String,
    s3: Option<EmbeddedS3>,
    s3_address: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Lakeside {
    pub(crate) async fn new() -> Lakeside {
        support::init_logging();
        let kafka = Kafka::new(PARTITIONS);
        let files_topic = format!("{}.files", kafka.topic);
        kafka
            .cluster
            .create_topic(&files_topic, 1, 1)
            .expect("files topic");
        let dir = tempfile::tempdir().expect("tempdir");
        let s3 = embedded::serve(dir.path(), "lake", "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("S3 server");
        Lakeside {
            kafka,
            files_topic,
            s3_address: s3.address,
            s3: Some(s3),
            dir,
        }
    }

    pub(crate) fn config(&self, group: &str) -> SinkConfig {
        SinkConfig {
            brokers: self.kafka.brokers(),
            topic: self.kafka.topic.clone(),
            group: group.to_owned(),
            files_topic: self.files_topic.clone(),
            lake: "s3://lake/tenant-a".into(),
            s3_endpoint: Some(format!("http://{}", self.s3_address)),
            s3_region: Some("us-east-1".into()),
            flush_interval: Duration::from_secs(1),
            max_file_rows: 1_000_000,
            max_file_bytes: 64 * 1024 * 1024,
            s3_static_credentials: Some((embedded::ACCESS_KEY.into(), embedded::SECRET_KEY.into())),
            session_timeout: Duration::from_secs(10),
            fault: None,
        }
    }

    pub(crate) async fn lake(&self) -> Lake {
        let config = self.config("reader");
        Lake::open(
            &config.lake,
            &AwsOptions {
                endpoint: config.s3_endpoint,
                region: config.s3_region,
                static_credentials: config.s3_static_credentials,
            },
        )
        .await
        .expect("lake")
    }
}

/// `n` exposures over 9,973 users whose receive times spread evenly over the three
/// hours before the current one.
pub(crate) fn exposures(n: usize, tag: &str) -> Vec<Exposure> {
    let now = Utc::now();
    let this_hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("hour");
    let start = this_hour - chrono::Duration::hours(3);
    (0..n)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds((i as i64) * 3 * 3_600_000 / n as i64);
            let at = Utc
                .timestamp_micros(at.timestamp_micros())
                .single()
                .expect("time");
            let mut attributes = serde_json::Map::new();
            attributes.insert("geo_country_code".into(), "US".into());
            Exposure {
                event_id: uuid::Uuid::now_v7().to_string(),
                ds_user_id: Some(format!("{tag}-user-{}", i % 9973)),
                anonymous_id: None,
                experiment_id: "new_search_ui".into(),
                variation_id: (i % 2).to_string(),
                exposed_at: at,
                received_at: at,
                source: Some("py".into()),
                attributes: Some(attributes),
                extra: None,
            }
        })
        .collect()
}

pub(crate) async fn produce(brokers: &str, topic: &str, events: &[Exposure]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        // librdkafka's mock cluster keeps about 5 MB per partition and drops older
        // segments; compressed batches keep 100k events well inside that.
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    for chunk in events.chunks(10_000) {
        let acks = chunk.iter().map(|e| {
            let value = e.to_json_bytes();
            let key = e.partition_key().to_owned();
            let producer = &producer;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic)
                            .key(&key)
                            .payload(&value)
                            .timestamp(e.received_at.timestamp_millis()),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("produced");
            }
        });
        futures::future::join_all(acks).await;
    }
}

/// Sum of the group's committed offsets (topics start at offset 0).
fn committed(brokers: &str, topic: &str, group: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions.add_partition(topic, p);
    }
    let Ok(offsets) = consumer.committed_offsets(partitions, Duration::from_secs(5)) else {
        return 0;
    };
    offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

pub(crate) async fn wait_committed(side: &Lakeside, group: &str, expected: i64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (brokers, topic, group_name) = (side.kafka.brokers(), side.kafka.topic.clone(), group.to_owned());
        let done = tokio::task::spawn_blocking(move || committed(&brokers, &topic, &group_name))
            .await
            .expect("committed");
        if done == expected {
            return;
        }
        assert!(done < expected, "committed {done} > {expected}");
        assert!(Instant::now() < deadline, "sink committed {done} of {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
}

pub(crate) struct RunningSink {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), SinkError>>,
}

pub(crate) fn start_sink(config: SinkConfig) -> RunningSink {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(loader::sink::run(config, async move {
        let _ = stopped.await;
    }));
    RunningSink { stop, task }
}

impl RunningSink {
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("sink task").expect("sink result");
    }
}

#[derive(Debug)]
struct Row {
    key: String,
    event_id: String,
    partition: i32,
    offset: i64,
    received_at: DateTime<Utc>,
    /// The other columns a produced event determines, for a row-by-row comparison.
    fields: Vec<Option<String>>,
}

/// Text columns compared row by row against the produced events.
const COMPARED: [&str; 6] = [
    "ds_user_id",
    "experiment_id",
    "variation_id",
    "source",
    "attributes",
    "geo_country_code",
];

fn expected_fields(e: &Exposure) -> Vec<Option<String>> {
    let attributes = e.attributes.as_ref();
    vec![
        e.ds_user_id.clone(),
        Some(e.experiment_id.clone()),
        Some(e.variation_id.clone()),
        e.source.clone(),
        attributes.map(|a| serde_json::to_string(a).expect("json")),
        attributes
            .and_then(|a| a.get("geo_country_code"))
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    ]
}

/// Every row of every object in the lake, checking each object's key and metadata.
async fn read_lake(lake: &Lake) -> Vec<Row> {
    let mut rows = Vec::new();
    let keys = lake.list("tenant-a/exposures/v1/").await.expect("list");
    for key in keys {
        let body = lake.get(&key).await.expect("get");
        let builder = ParquetRecordBatchReaderBuilder::try_new(body).expect("parquet");
        let metadata: HashMap<String, String> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .expect("kv metadata")
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        let first: i64 = metadata["exposures.first_offset"].parse().expect("first");
        let last: i64 = metadata["exposures.last_offset"].parse().expect("last");
        let count: usize = metadata["exposures.rows"].parse().expect("rows");
        let mut file_rows = Vec::new();
        for batch in builder.build().expect("reader") {
            let batch = batch.expect("batch");
            let ids = batch
                .column_by_name("event_id")
                .expect("event_id")
                .as_string::<i32>()
                .clone();
            let partitions = batch
                .column_by_name("kafka_partition")
                .expect("p")
                .as_primitive::<Int32Type>()
                .clone();
            let offsets = batch
                .column_by_name("kafka_offset")
                .expect("o")
                .as_primitive::<Int64Type>()
                .clone();
            let received = batch
                .column_by_name("received_at")
                .expect("received_at")
                .as_primitive::<TimestampMicrosecondType>()
                .clone();
            let compared: Vec<_> = COMPARED
                .iter()
                .map(|name| {
                    batch
                        .column_by_name(name)
                        .expect("column")
                        .as_string::<i32>()
                        .clone()
                })
                .collect();
            for i in 0..batch.num_rows() {
                file_rows.push(Row {
                    fields: compared
                        .iter()
                        .map(|c| (!arrow_array::Array::is_null(c, i)).then(|| c.value(i).to_owned()))
                        .collect(),
                    key: key.clone(),
                    event_id: ids.value(i).to_owned(),
                    partition: partitions.value(i),
                    offset: offsets.value(i),
                    received_at: Utc.timestamp_micros(received.value(i)).single().expect("time"),
                });
            }
        }
        assert_eq!(file_rows.len(), count, "{key}: row count metadata");
        let min = file_rows.iter().map(|r| r.offset).min().expect("rows");
        let max = file_rows.iter().map(|r| r.offset).max().expect("rows");
        assert_eq!((min, max), (first, last), "{key}: offset range metadata");
        assert!(
            key.ends_with(&format!("p{:03}-{first:020}.parquet", file_rows[0].partition)),
            "{key}"
        );
        for row in &file_rows {
            let folder = row.received_at.format("dt=%Y-%m-%d/hour=%H/").to_string();
            assert!(
                key.contains(&folder),
                "{key} holds a row received at {}",
                row.received_at
            );
        }
        rows.extend(file_rows);
    }
    rows
}

/// The lake holds exactly the produced events: none missing, none twice.
fn assert_exact(rows: &[Row], produced: &[Exposure]) {
    let ids: HashSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "an event is in the lake twice");
    let expected: HashSet<&str> = produced.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), expected.len(), "lake rows vs produced");
    assert!(ids == expected, "lake rows differ from produced events");
    let positions: HashSet<(i32, i64)> = rows.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(positions.len(), rows.len(), "a Kafka record is in the lake twice");
    let by_id: HashMap<&str, &Exposure> = produced.iter().map(|e| (e.event_id.as_str(), e)).collect();
    for row in rows {
        let event = by_id[row.event_id.as_str()];
        assert_eq!(row.received_at, event.received_at, "{}", row.event_id);
        assert_eq!(row.fields, expected_fields(event), "{}", row.event_id);
    }
}

#[tokio::test]
async fn sink_writes_100k_events_over_6_partitions_and_3_hours_exactly_once() {
    let side = Lakeside::new().await;
    let events = exposures(100_000, "bulk");
    produce(&side.kafka.brokers(), &side.kafka.topic, &events).await;
    assert_eq!(
        support::record_count(&side.kafka.brokers(), &side.kafka.topic),
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
    let announced = support::read_exactly(&side.kafka.brokers(), &side.files_topic, files.len()).await;
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
    config.max_file_rows = 400;
    config.fault = Some(point);
    let crashed = loader::sink::run(config.clone(), std::future::pending()).await;
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
    support::metric_value("exposures_sink_upload_failures_total")
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

fn sink_process(side: &Lakeside, s3: &EmbeddedS3, metrics_port: u16) -> tokio::process::Child {
    crate::up_process::exposures()
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
/// processes: tansu 0.6 (`exposures dev-broker`) does not expire a dead member's
/// session, so its group never hands the partitions over (seen here: the survivor kept
/// only its own three partitions for minutes).
#[tokio::test]
async fn two_sink_processes_one_killed_under_load_the_other_takes_over_exactly() {
    let side = Lakeside::new().await;
    let s3 = side.s3.as_ref().expect("S3");
    let brokers = side.kafka.brokers();
    let mut first = sink_process(&side, s3, crate::up_process::free_port());
    let second_metrics = crate::up_process::free_port();
    let _second = sink_process(&side, s3, second_metrics);

    let events = exposures(20_000, "killed");
    let (head, tail) = events.split_at(8_000);
    produce(&brokers, &side.kafka.topic, head).await;
    let lake = side.lake().await;
    // Kill the first sink only once the group is settled with both members working: the
    // second has committed a file. (Killed in the middle of a rebalance, a member holds
    // the group until the rebalance timeout, which is a different test.)
    let client = support::http();
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
