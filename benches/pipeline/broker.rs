//! The embedded broker's CPU per record, measured as issue 14 did: the broker in a process
//! of its own, a client in another (this one) producing N records of the seed's exposure
//! as ingest does (idempotent, acks=all), then reading them all back as the sink does; the
//! broker's CPU (user + system, /proc) is read before and after each phase.
//!
//! In the same run, the same load on librdkafka's mock cluster (memory only: the floor of a
//! Kafka-protocol broker on this machine) and, when `EXPOSURES_BENCH_BASELINE_BIN` names an
//! older `exposures` binary, on that binary's `dev-broker` (before/after a change).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;

use crate::procs::{self, cpu_seconds, free_port, Proc};
use crate::roles;
use crate::Report;

const TOPIC: &str = "bench";
const PARTITIONS: i32 = 6;

/// What one broker cost for the load.
struct Cost {
    records: usize,
    produce_cpu: f64,
    produce_seconds: f64,
    fetch_cpu: f64,
    fetch_seconds: f64,
}

pub fn broker(report: &mut Report) {
    let records: usize = std::env::var("EXPOSURES_BENCH_BROKER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "\n== broker: {records} records of the seed's exposure produced (idempotent, acks=all), then fetched"
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut measured: Vec<(String, Cost)> = Vec::new();

    let ours = Path::new(env!("CARGO_BIN_EXE_exposures"));
    let (proc, brokers) = dev_broker("dev-broker", ours);
    measured.push((
        "exposures dev-broker".into(),
        runtime.block_on(load(proc.pid(), &brokers, records)),
    ));
    drop(proc);

    if let Ok(baseline) = std::env::var("EXPOSURES_BENCH_BASELINE_BIN") {
        let (proc, brokers) = dev_broker("dev-broker-baseline", Path::new(&baseline));
        measured.push((
            format!("dev-broker of {baseline}"),
            runtime.block_on(load(proc.pid(), &brokers, records)),
        ));
    }

    // The mock cluster keeps about 5 MB per partition and drops older segments, so it
    // gets at most 60,000 records (4 MB per partition); the figures are per record.
    let mock_records = records.min(60_000);
    let mock = roles::Broker::start(&[(TOPIC, PARTITIONS)]);
    measured.push((
        "librdkafka mock cluster".into(),
        runtime.block_on(load(mock.pid(), &mock.bootstrap, mock_records)),
    ));

    println!(
        "  {:<44} {:>9} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "broker", "records", "produce µs/r", "fetch µs/r", "total µs/r", "produce r/s", "fetch r/s"
    );
    for (name, cost) in &measured {
        println!(
            "  {name:<44} {:>9} {:>12.1} {:>12.1} {:>12.1} {:>12.0} {:>12.0}",
            cost.records,
            cost.produce_us_per_record(),
            cost.fetch_us_per_record(),
            cost.total_us_per_record(),
            cost.records as f64 / cost.produce_seconds,
            cost.records as f64 / cost.fetch_seconds,
        );
        report.put(
            "broker",
            name,
            json!({
                "records": cost.records,
                "produce_cpu_us_per_record": cost.produce_us_per_record(),
                "fetch_cpu_us_per_record": cost.fetch_us_per_record(),
                "produce_records_per_s": cost.records as f64 / cost.produce_seconds,
                "fetch_records_per_s": cost.records as f64 / cost.fetch_seconds,
            }),
        );
    }
    let ours = measured[0].1.total_us_per_record();
    report.ratio(
        "broker: dev-broker CPU µs per record, produce + fetch",
        ours,
        "≤ 15",
    );
    if let Some((_, mock)) = measured.iter().find(|(name, _)| name.contains("mock")) {
        report.ratio(
            "broker: dev-broker CPU / mock cluster CPU, per record",
            ours / mock.total_us_per_record(),
            "lower is better",
        );
    }
    if let Some((_, baseline)) = measured
        .iter()
        .find(|(name, _)| name.starts_with("dev-broker of"))
    {
        report.ratio(
            "broker: dev-broker CPU / baseline binary's, per record",
            ours / baseline.total_us_per_record(),
            "< 1",
        );
    }
}

impl Cost {
    fn produce_us_per_record(&self) -> f64 {
        self.produce_cpu * 1e6 / self.records as f64
    }

    fn fetch_us_per_record(&self) -> f64 {
        self.fetch_cpu * 1e6 / self.records as f64
    }

    fn total_us_per_record(&self) -> f64 {
        self.produce_us_per_record() + self.fetch_us_per_record()
    }
}

/// `BINARY dev-broker` on a free port with a fresh data directory, ready to serve.
fn dev_broker(name: &str, binary: &Path) -> (Proc, String) {
    let data = procs::out_dir().join(format!("{name}-data"));
    let _ = std::fs::remove_dir_all(&data);
    let brokers = format!("127.0.0.1:{}", free_port());
    let proc = Proc::spawn(
        name,
        Command::new(binary)
            .args([
                "dev-broker",
                "--listen",
                &brokers,
                "--topics",
                &format!("{TOPIC}:{PARTITIONS}"),
            ])
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "warn"),
    );
    procs::wait_until(name, Duration::from_secs(60), || {
        partitions(&brokers) == PARTITIONS
    });
    (proc, brokers)
}

fn partitions(brokers: &str) -> i32 {
    let consumer: BaseConsumer = match ClientConfig::new().set("bootstrap.servers", brokers).create() {
        Ok(consumer) => consumer,
        Err(_) => return 0,
    };
    consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(2))
        .ok()
        .and_then(|metadata| metadata.topics().first().map(|t| t.partitions().len() as i32))
        .unwrap_or(0)
}

/// Produces `records`, then fetches them all, reading the broker's CPU around each phase.
async fn load(broker_pid: u32, brokers: &str, records: usize) -> Cost {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let value = |i: usize| {
        json!({
            "event_id": uuid::Uuid::now_v7().to_string(),
            "ds_user_id": format!("user_{i}"),
            "experiment_id": "new_search_ui",
            "variation_id": (i % 2).to_string(),
            "exposed_at": "2026-12-04T10:00:00.000000Z",
            "received_at": "2026-12-04T10:00:00.000000Z",
            "attributes": {"ds_session_id": format!("session_{i}"), "geo_country_code": "US", "platform": "web"},
            "source": "search_core_python",
        })
        .to_string()
    };
    let cpu_before = cpu_seconds(broker_pid);
    let started = Instant::now();
    for chunk_start in (0..records).step_by(10_000) {
        let chunk_end = (chunk_start + 10_000).min(records);
        let sends = (chunk_start..chunk_end).map(|i| {
            let (key, payload) = (format!("user_{i}"), value(i));
            let producer = &producer;
            async move {
                producer
                    .send(
                        FutureRecord::to(TOPIC).key(&key).payload(&payload),
                        Duration::from_secs(60),
                    )
                    .await
                    .is_ok()
            }
        });
        let acked = futures::future::join_all(sends).await;
        assert!(acked.iter().all(|ok| *ok), "a record was not acknowledged");
    }
    let produce_seconds = started.elapsed().as_secs_f64();
    let produce_cpu = cpu_seconds(broker_pid) - cpu_before;
    println!("  produced {records} in {produce_seconds:.1} s ({produce_cpu:.1} broker CPU s); fetching…");

    let cpu_before = cpu_seconds(broker_pid);
    let started = Instant::now();
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "bench-fetch")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(TOPIC, partition, Offset::Beginning)
                .expect("assign");
        }
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut read = 0;
        while read < records {
            assert!(Instant::now() < deadline, "fetched {read} of {records}");
            if let Some(message) = consumer.poll(Duration::from_millis(500)) {
                message.expect("fetch");
                read += 1;
            }
        }
    })
    .await
    .expect("fetch");
    let fetch_seconds = started.elapsed().as_secs_f64();
    let fetch_cpu = cpu_seconds(broker_pid) - cpu_before;
    Cost {
        records,
        produce_cpu,
        produce_seconds,
        fetch_cpu,
        fetch_seconds,
    }
}
