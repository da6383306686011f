//! Shared test harness: real sockets, a real Kafka-protocol broker (librdkafka's mock
//! cluster in-process, or `exposures dev-broker`/`up` as child processes), and waits on
//! conditions with deadlines — never sleeps as synchronisation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// The seed's Python callback body.
pub fn python_body(user: &str) -> Value {
    json!({
        "ds_user_id": user, "experiment_id": "new_search_ui", "variation_id": "1",
        "attributes": {"id": user, "ds_user_id": user, "ds_session_id": "session_abc123",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "geo_country_code": "US", "geo_city": "New York",
            "currency_id": "USD", "locale": "en-US", "utm": {"source": "google", "medium": "cpc"},
            "forwarded_for": "192.168.1.1", "is_kf_verified": true, "platform": "web"},
        "source": "search_core_python"
    })
}

/// The seed's Next.js callback body (numeric variation key, as `result.key` may be).
pub fn nextjs_body(user: &str) -> Value {
    json!({
        "ds_user_id": user, "experiment_id": "checkout_button", "variation_id": 2,
        "attributes": {"id": user, "ds_user_id": user, "ds_session_id": "s-web-1",
            "user_agent": "Mozilla/5.0 (Macintosh)", "geo_country_code": "DE", "geo_city": "Berlin",
            "currency_id": "EUR", "locale": "de-DE", "utm": {"source": "newsletter"},
            "is_kf_verified": false, "platform": "mobile"},
        "source": "nextjs_web"
    })
}

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

/// An in-process ingest server on an ephemeral port.
pub struct Server {
    pub url: String,
    pub spool_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ingest::IngestError>>,
    _dirs: tempfile::TempDir,
}

/// Test configuration: a short delivery deadline so outages are quick to test.
pub fn config(brokers: &str, topic: &str) -> ingest::IngestConfig {
    use clap::Parser;
    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        config: ingest::IngestConfig,
    }
    let mut config = Args::parse_from(["test"]).config;
    config.brokers = brokers.to_owned();
    config.delivery.topic = topic.to_owned();
    config.delivery.delivery_timeout = Duration::from_millis(1500);
    config
}

impl Server {
    pub async fn start(mut config: ingest::IngestConfig) -> Server {
        let dirs = tempfile::tempdir().expect("tempdir");
        let spool_dir = config
            .delivery
            .spool_dir
            .clone()
            .unwrap_or_else(|| dirs.path().join("spool"));
        config.delivery.spool_dir = Some(spool_dir.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(ingest::serve(listener, config, async move {
            let _ = stop.await;
        }));
        Server {
            url: format!("http://{address}"),
            spool_dir,
            shutdown: Some(shutdown),
            task,
            _dirs: dirs,
        }
    }

    /// Graceful shutdown; returns once in-flight requests are answered and the producer
    /// is flushed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task)
            .await
            .expect("server task")
            .expect("server result");
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// POSTs JSON to `path`, returning status and parsed body.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Logs of the code under test, shown for failing tests; filter with RUST_LOG.
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The value of an unlabelled counter or gauge in this process's Prometheus registry.
pub fn metric_value(name: &str) -> f64 {
    let prefix = format!("{name} ");
    ingest::metrics::prometheus()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Returns false (after explaining) when an external tool a test needs is missing,
/// unless `EXPOSURES_REQUIRE_TOOLS=1` (set by CI), which makes it a failure.
pub fn available(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    let required = std::env::var("EXPOSURES_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(!required, "{what} is missing: {install}");
    eprintln!("SKIPPED: {what} is missing. To run this test: {install}");
    false
}
