//! The embedded broker (`exposures dev-broker`, the broker inside `up`) with the patches
//! carried in vendor/tansu-storage and vendor/tansu-broker (their PATCHES.md), each held
//! to what a Kafka client expects, through librdkafka, on a real process:
//!
//! - records come back exactly as produced, in order, with their headers, across many
//!   produce requests (the statement cache rebinds every value) and fetches (records
//!   read in order and counted against the fetch size, headers in one query per fetch),
//!   and a record larger than the consumer's fetch size is served (KIP-74);
//! - an idempotent producer that bumped its epoch while the broker was gone produces
//!   again once it is back (tansu panicked on the unknown epoch and answered nothing);
//! - a consumer-group member killed with SIGKILL is expired and its successor gets
//!   every partition (tansu kept the dead member's assignment);
//! - a panic anywhere in the process ends it, non-zero.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::harness::lake::{committed, exposures as events, produce};
use crate::harness::process::{exposures, free_port, DevBroker, Stage};
use crate::harness::DEADLINE;

/// What one produced record was: its key, value and headers.
type Produced = (String, Vec<u8>, Vec<(String, Vec<u8>)>);

fn idempotent_producer(brokers: &str, message_timeout: Duration) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", (4 * 1024 * 1024).to_string())
        .set("message.timeout.ms", message_timeout.as_millis().to_string())
        .create()
        .expect("producer")
}

/// Sends one record and answers whether the broker acknowledged it.
async fn send(producer: &FutureProducer, topic: &str, partition: i32, record: &Produced) -> bool {
    let (key, value, headers) = record;
    let mut owned = OwnedHeaders::new();
    for (name, header) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(header),
        });
    }
    let message = FutureRecord::to(topic)
        .partition(partition)
        .key(key)
        .payload(value)
        .headers(owned);
    producer.send(message, Duration::from_secs(0)).await.is_ok()
}

/// Reads partition `partition` of `topic` from the beginning until `count` records came,
/// with `max.partition.fetch.bytes` at librdkafka's default (1 MiB).
fn read_partition(brokers: &str, topic: &str, partition: i32, count: usize) -> Vec<Produced> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("read-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", (1024 * 1024).to_string())
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + DEADLINE;
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records",
            records.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("consume");
        assert_eq!(
            message.offset(),
            records.len() as i64,
            "offsets are dense, from 0"
        );
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push((
            String::from_utf8(message.key().unwrap_or_default().to_vec()).expect("utf-8 key"),
            message.payload().unwrap_or_default().to_vec(),
            headers,
        ));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_come_back_as_produced_in_order_with_their_headers() {
    let broker = DevBroker::start("roundtrip:2").await;
    let producer = idempotent_producer(&broker.brokers, Duration::from_secs(30));
    // Distinct keys and values of varied sizes, some with headers (two with one name), and
    // one record of 1.5 MiB: larger than the consumer's fetch size.
    let mut produced: HashMap<i32, Vec<Produced>> = HashMap::new();
    for i in 0..2_000_usize {
        let partition = (i % 2) as i32;
        let value = if i == 1_001 {
            vec![b'x'; 1_536 * 1024]
        } else {
            format!("value-{i}-{}", "é".repeat(i % 97)).into_bytes()
        };
        let headers = match i % 7 {
            0 => vec![("trace".to_owned(), format!("t{i}").into_bytes())],
            3 => vec![
                ("a".to_owned(), b"1".to_vec()),
                ("a".to_owned(), format!("{i}").into_bytes()),
            ],
            _ => vec![],
        };
        produced
            .entry(partition)
            .or_default()
            .push((format!("key-{i}"), value, headers));
    }
    // Sent a few hundred at a time, so that they travel in many produce requests.
    for partition in [0, 1] {
        for chunk in produced[&partition].chunks(250) {
            let acks = chunk
                .iter()
                .map(|record| send(&producer, "roundtrip", partition, record));
            let acked = futures::future::join_all(acks).await;
            assert!(acked.iter().all(|ok| *ok), "every record acknowledged");
        }
    }
    for partition in [0, 1] {
        let (brokers, expected) = (broker.brokers.clone(), produced[&partition].clone());
        let read = tokio::task::spawn_blocking(move || {
            read_partition(&brokers, "roundtrip", partition, expected.len())
        })
        .await
        .expect("reader");
        for (offset, (got, want)) in read.iter().zip(&produced[&partition]).enumerate() {
            assert_eq!(got, want, "partition {partition} offset {offset}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_produces_again_after_the_broker_restarts() {
    let mut broker = DevBroker::start("restart:1").await;
    let producer = idempotent_producer(&broker.brokers, Duration::from_secs(2));
    let record = |i: usize| (format!("k{i}"), format!("v{i}").into_bytes(), vec![]);
    assert!(
        send(&producer, "restart", 0, &record(0)).await,
        "first record acknowledged"
    );

    // The broker goes away; a record times out, so librdkafka bumps the producer's epoch
    // on its own and will start the next one at sequence 0 of the new epoch.
    broker.stage.kill().await;
    assert!(
        !send(&producer, "restart", 0, &record(1)).await,
        "a record sent while the broker is down times out"
    );
    broker.stage.start();
    broker.wait_serving("restart").await;

    let deadline = Instant::now() + DEADLINE;
    let mut next = 2;
    loop {
        if send(&producer, "restart", 0, &record(next)).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the producer never produced again after the restart"
        );
        next += 1;
    }
    // And the broker still serves everything else: a new record, read back after the first.
    assert!(send(&producer, "restart", 0, &record(next + 1)).await);
    let brokers = broker.brokers.clone();
    let read = tokio::task::spawn_blocking(move || read_partition(&brokers, "restart", 0, 3))
        .await
        .expect("reader");
    assert_eq!(read[0].0, "k0");
    assert_eq!(read[1].0, format!("k{next}"));
    assert_eq!(read[2].0, format!("k{}", next + 1));
}

/// A sink process on the default `--assignment group`, with its metrics on `metrics_port`.
fn group_sink(brokers: &str, s3_address: std::net::SocketAddr, metrics_port: u16) -> Stage {
    let args: Vec<OsString> = [
        "sink",
        "--brokers",
        brokers,
        "--group",
        "sink",
        "--lake",
        "s3://lake/group",
        "--s3-endpoint",
        &format!("http://{s3_address}"),
        "--flush-interval",
        "1s",
        "--session-timeout",
        "6s",
        "--metrics-listen",
        &format!("127.0.0.1:{metrics_port}"),
    ]
    .iter()
    .map(OsString::from)
    .collect();
    Stage::new("sink", args)
}

/// Waits until the sink group has committed `expected` records in all.
async fn wait_committed(brokers: &str, expected: i64) {
    let deadline = Instant::now() + DEADLINE + DEADLINE;
    loop {
        let brokers = brokers.to_owned();
        let done = tokio::task::spawn_blocking(move || committed(&brokers, "exposures", "sink"))
            .await
            .expect("committed");
        if done == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sink group committed {done} of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // polling a condition
    }
}

/// Whether the sink serving metrics on `port` has committed offsets of any partition:
/// it is a member that holds partitions.
async fn holds_partitions(port: u16) -> bool {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return false;
    };
    response.text().await.is_ok_and(|text| {
        text.lines()
            .any(|line| line.starts_with("exposures_sink_committed_offset{"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_group_member_is_replaced_on_the_dev_broker() {
    // Two sinks on the default `--assignment group` share the partitions; the group's
    // leader is killed with SIGKILL. The survivor must be given the dead member's
    // partitions once its session has expired, and the dead one, started again, must get
    // partitions back.
    // Six partitions, as harness::lake::committed counts.
    let mut broker = DevBroker::start("exposures:6,exposures.files:1").await;
    let lake_dir = tempfile::tempdir().expect("tempdir");
    let s3 = loader::lake::embedded::serve(lake_dir.path(), "lake", "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("S3 server");
    let (first_port, second_port) = (free_port(), free_port());
    let mut first = group_sink(&broker.brokers, s3.address, first_port);
    let mut second = group_sink(&broker.brokers, s3.address, second_port);
    let mut total = 0;
    let mut round = 0;
    let mut produce_round = |brokers: String| {
        round += 1;
        total += 300;
        let (expected, tag) = (total, format!("group-{round}"));
        async move {
            produce(&brokers, "exposures", &events(300, &tag)).await;
            expected
        }
    };

    first.start();
    wait_committed(&broker.brokers, produce_round(broker.brokers.clone()).await).await;
    second.start();
    // Until the second member holds partitions (the group has rebalanced to two).
    let deadline = Instant::now() + DEADLINE + DEADLINE;
    while !holds_partitions(second_port).await {
        assert!(Instant::now() < deadline, "the second sink never got partitions");
        wait_committed(&broker.brokers, produce_round(broker.brokers.clone()).await).await;
    }

    // The first member is the group's leader: the harder case.
    first.kill().await;
    wait_committed(&broker.brokers, produce_round(broker.brokers.clone()).await).await;

    first.start();
    let deadline = Instant::now() + DEADLINE + DEADLINE;
    while !holds_partitions(first_port).await {
        assert!(
            Instant::now() < deadline,
            "the restarted sink never got partitions back"
        );
        wait_committed(&broker.brokers, produce_round(broker.brokers.clone()).await).await;
    }
    // The broker and both members killed together (a host restart), then the broker and
    // one member started again: the group's persisted state still lists both dead
    // members, and the new one must be given every partition.
    broker_kill_and_restart_with_members(&mut broker, &mut first, &mut second).await;
    wait_committed(&broker.brokers, produce_round(broker.brokers.clone()).await).await;
    first.kill().await;
}

async fn broker_kill_and_restart_with_members(broker: &mut DevBroker, first: &mut Stage, second: &mut Stage) {
    broker.stage.kill().await;
    first.kill().await;
    second.kill().await;
    broker.stage.start();
    broker.wait_serving("exposures").await;
    first.start();
}

/// Starts `exposures ARGS` with a panic injected at `place` and waits for its exit code.
async fn exit_code_with_a_panic_at(place: &str, args: &[&str]) -> Option<i32> {
    let mut child = exposures()
        .args(args)
        .env("EXPOSURES_INJECT_PANIC", place)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn exposures");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("exposures {} lived on after a panic at {place}", args[0]))
        .expect("wait");
    status.code()
}

#[tokio::test]
async fn a_panic_anywhere_ends_the_process_non_zero() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_str().expect("utf-8 path");
    let listen = format!("127.0.0.1:{}", free_port());
    let broker_listen = format!("127.0.0.1:{}", free_port());
    let s3_listen = format!("127.0.0.1:{}", free_port());
    let up = [
        "up",
        "--listen",
        &listen,
        "--broker-listen",
        &broker_listen,
        "--s3-listen",
        &s3_listen,
        "--data-dir",
        data_dir,
    ];
    // On the embedded broker's own runtime, and on the stages' runtime.
    assert_eq!(exit_code_with_a_panic_at("broker", &up).await, Some(101));
    assert_eq!(exit_code_with_a_panic_at("stage", &up).await, Some(101));
    let spool = data.path().join("spool");
    let ingest = [
        "ingest",
        "--listen",
        &listen,
        "--brokers",
        &broker_listen,
        "--spool-dir",
        spool.to_str().expect("utf-8 path"),
    ];
    assert_eq!(exit_code_with_a_panic_at("stage", &ingest).await, Some(101));
}

#[test]
fn each_patches_md_ends_with_the_diff_we_carry() {
    // What we offer upstream must be what we build: vendor/diff-upstream.sh prints the
    // diff of each vendored crate against its published version.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["tansu-storage", "tansu-broker"] {
        let output = std::process::Command::new(root.join("vendor/diff-upstream.sh"))
            .arg(krate)
            .output()
            .expect("run vendor/diff-upstream.sh");
        assert!(
            output.status.success(),
            "vendor/diff-upstream.sh {krate}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let diff = String::from_utf8(output.stdout).expect("utf-8 diff");
        assert!(
            diff.contains("exposures patch"),
            "{krate}: the diff holds no marked patch"
        );
        let patches =
            std::fs::read_to_string(root.join("vendor").join(krate).join("PATCHES.md")).expect("PATCHES.md");
        assert!(
            patches.ends_with(&format!("```diff\n{diff}```\n")),
            "vendor/{krate}/PATCHES.md does not end with the current diff: refresh it with \
             vendor/diff-upstream.sh {krate}"
        );
    }
}
