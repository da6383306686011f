//! A real Kafka-protocol broker in-process (librdkafka's mock cluster), and readers of
//! the records a topic holds.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use super::DEADLINE;

/// An in-memory Kafka cluster speaking the real protocol, with one broker (id 1) and a
/// fresh topic. Not `Send`: keep it on the test's own task.
pub struct Kafka {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub topic: String,
}

impl Kafka {
    pub fn new(partitions: i32) -> Kafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let topic = format!("exposures-{}", uuid::Uuid::new_v4().simple());
        cluster.create_topic(&topic, partitions, 1).expect("create topic");
        Kafka { cluster, topic }
    }

    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn down(&self) {
        self.cluster.broker_down(1).expect("broker down");
    }

    pub fn up(&self) {
        self.cluster.broker_up(1).expect("broker up");
    }
}

/// One record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub timestamp_ms: i64,
    pub value: Value,
}

/// Number of records in the topic (sum of high watermarks; topics start at offset 0).
pub fn record_count(brokers: &str, topic: &str) -> i64 {
    let consumer = consumer(brokers);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return -1;
    };
    let Some(topic_metadata) = metadata.topics().first() else {
        return -1;
    };
    let mut total = 0;
    for partition in topic_metadata.partitions() {
        match consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(5)) {
            Ok((low, high)) => total += high - low,
            Err(_) => return -1,
        }
    }
    total
}

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

/// Waits until the topic holds exactly `expected` records, then reads them all.
/// Fails if it never gets there, or if it holds more.
pub async fn read_exactly(brokers: &str, topic: &str, expected: usize) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_exactly_blocking(&brokers, &topic, expected))
        .await
        .expect("reader")
}

fn read_exactly_blocking(brokers: &str, topic: &str, expected: usize) -> Vec<Record> {
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut count = record_count(brokers, topic);
    while count < expected as i64 {
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} holds {count} records, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(50)); // polling a condition, not synchronising
        count = record_count(brokers, topic);
    }
    assert_eq!(
        count, expected as i64,
        "topic {topic} holds more records than expected"
    );
    let consumer = consumer(brokers);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::with_capacity(expected);
    while records.len() < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {expected} records",
            records.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("consume");
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: String::from_utf8(message.key().unwrap_or_default().to_vec()).expect("utf-8 key"),
            timestamp_ms: message.timestamp().to_millis().unwrap_or(-1),
            value: serde_json::from_slice(message.payload().unwrap_or_default()).expect("JSON value"),
        });
    }
    records
}

/// Groups records by key, each group in partition-offset order.
pub fn by_key(records: &[Record]) -> HashMap<String, Vec<Record>> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut groups: HashMap<String, Vec<Record>> = HashMap::new();
    for record in sorted {
        groups.entry(record.key.clone()).or_default().push(record);
    }
    groups
}
