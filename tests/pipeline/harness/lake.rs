//! The sink's surroundings over real protocols: librdkafka's mock cluster with an events
//! topic and a files topic, an S3-protocol server on 127.0.0.1 (`Lakeside`); events to
//! produce and the sink as a task; and readers of the Parquet files that land in the lake,
//! through S3 or on disk.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, TimeZone, Timelike, Utc};
use loader::lake::embedded::{self, EmbeddedS3};
use loader::lake::{Lake, LakeArgs};
use loader::sink::{SinkConfig, SinkError};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schemas::Exposure;
use tokio::task::JoinHandle;

use super::kafka::Kafka;
use super::{init_logging, DEADLINE};

pub(crate) const PARTITIONS: i32 = 6;

pub(crate) struct Lakeside {
    pub(crate) kafka: Kafka,
    pub(crate) files_topic: String,
    pub(crate) s3: Option<EmbeddedS3>,
    pub(crate) s3_address: std::net::SocketAddr,
    pub(crate) dir: tempfile::TempDir,
}

impl Lakeside {
    /// The lake URL the sink writes and the loader reads.
    pub(crate) const LAKE: &'static str = "s3://lake/tenant-a";

    pub(crate) async fn new() -> Lakeside {
        init_logging();
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

    /// The sink's configuration for this side, in consumer group `group`: `exposures
    /// sink`'s defaults but a flush interval of 1 s, a 64 MiB file limit and a 10 s
    /// session (a killed member's partitions move sooner).
    pub(crate) fn config(&self, group: &str) -> SinkConfig {
        let mut config: SinkConfig = super::flags(&[
            "--brokers",
            &self.kafka.brokers(),
            "--topic",
            &self.kafka.topic,
            "--files-topic",
            &self.files_topic,
            "--group",
            group,
            "--flush-interval",
            "1s",
            "--max-file-bytes",
            "67108864",
            "--session-timeout",
            "10s",
            "--lake",
            Self::LAKE,
        ]);
        config.lake = self.lake_args();
        config
    }

    fn s3_endpoint(&self) -> String {
        format!("http://{}", self.s3_address)
    }

    /// This side's lake and how to reach its S3 server.
    pub(crate) fn lake_args(&self) -> LakeArgs {
        embedded::lake_args(Self::LAKE, &self.s3_endpoint())
    }

    pub(crate) async fn lake(&self) -> Lake {
        self.lake_args().open().await.expect("lake")
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
pub(crate) fn committed(brokers: &str, topic: &str, group: &str) -> i64 {
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

/// Waits until `group` has committed `expected` records of the exposures topic.
pub(crate) async fn wait_committed(side: &Lakeside, group: &str, expected: i64) {
    wait_committed_on(&side.kafka.brokers(), &side.kafka.topic, group, expected).await;
}

/// Waits until `group` has committed `expected` records of `topic` (which starts at
/// offset 0); committing more fails at once.
pub(crate) async fn wait_committed_on(brokers: &str, topic: &str, group: &str, expected: i64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (brokers, topic_name, group_name) = (brokers.to_owned(), topic.to_owned(), group.to_owned());
        let done = tokio::task::spawn_blocking(move || committed(&brokers, &topic_name, &group_name))
            .await
            .expect("committed");
        if done == expected {
            return;
        }
        assert!(
            done < expected,
            "{group} committed {done} > {expected} of {topic}"
        );
        assert!(
            Instant::now() < deadline,
            "{group} committed {done} of {expected} of {topic}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polling a condition
    }
}

pub(crate) struct RunningSink {
    stop: stage::Shutdown,
    task: JoinHandle<Result<(), SinkError>>,
}

pub(crate) fn start_sink(config: SinkConfig) -> RunningSink {
    let stop = stage::Shutdown::new();
    let task = tokio::spawn(loader::sink::run(config, stop.clone()));
    RunningSink { stop, task }
}

impl RunningSink {
    pub(crate) async fn stop(self) {
        self.begin_stop();
        self.finished().await;
    }

    /// Asks the sink to stop, without waiting for it.
    pub(crate) fn begin_stop(&self) {
        self.stop.cancel();
    }

    /// Waits until the sink has stopped, successfully.
    pub(crate) async fn finished(self) {
        self.task.await.expect("sink task").expect("sink result");
    }
}

#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) key: String,
    event_id: String,
    partition: i32,
    offset: i64,
    pub(crate) received_at: DateTime<Utc>,
    /// The other columns a produced event determines, for a row-by-row comparison.
    fields: Vec<Option<String>>,
}

impl Row {
    /// The Kafka partition and offset the row was read from.
    pub(crate) fn position(&self) -> (i32, i64) {
        (self.partition, self.offset)
    }
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
pub(crate) async fn read_lake(lake: &Lake) -> Vec<Row> {
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
pub(crate) fn assert_exact(rows: &[Row], produced: &[Exposure]) {
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

/// The JSON text columns of every row in the lake, by event id: `(attributes, extra)`
/// exactly as the Parquet files hold them.
pub(crate) async fn lake_json_columns(lake: &Lake) -> HashMap<String, (Option<String>, Option<String>)> {
    let mut rows = HashMap::new();
    for key in lake.list("tenant-a/exposures/v1/").await.expect("list") {
        let body = lake.get(&key).await.expect("get");
        let reader = ParquetRecordBatchReaderBuilder::try_new(body)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let text = |name: &str| {
                batch
                    .column_by_name(name)
                    .expect("column")
                    .as_string::<i32>()
                    .clone()
            };
            let (ids, attributes, extra) = (text("event_id"), text("attributes"), text("extra"));
            for i in 0..batch.num_rows() {
                let value = |column: &arrow_array::StringArray| {
                    (!arrow_array::Array::is_null(column, i)).then(|| column.value(i).to_owned())
                };
                rows.insert(ids.value(i).to_owned(), (value(&attributes), value(&extra)));
            }
        }
    }
    rows
}

/// Event ids in every Parquet file under `dir`.
pub(crate) fn lake_event_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let bytes = bytes::Bytes::from(std::fs::read(&path).expect("read parquet"));
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .expect("parquet")
                    .build()
                    .expect("reader");
                for batch in reader {
                    let batch = batch.expect("batch");
                    let column = batch
                        .column_by_name("event_id")
                        .expect("event_id")
                        .as_string::<i32>()
                        .clone();
                    ids.extend(column.iter().flatten().map(str::to_owned));
                }
            }
        }
    }
    ids
}
