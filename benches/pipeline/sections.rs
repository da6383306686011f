//! The four sections of the suite. Each starts what it measures, prints a table and
//! puts its figures in the report.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use loader::sink::file::{Hour, OpenFile, ParquetCodec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemas::Normalizer;
use serde_json::{json, Value};

use crate::load::{self, Latencies};
use crate::procs::{self, Proc};
use crate::roles::{self, Broker};
use crate::Report;

const CONNECTIONS: u32 = 64;
const PARTITIONS: i32 = 6;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn exposures() -> Command {
    Command::new(env!("CARGO_BIN_EXE_exposures"))
}

fn print_header() {
    println!(
        "  {:<46} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7}",
        "peer", "req/s", "events/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
}

fn print_row(name: &str, run: &Latencies, events_per_request: u32) {
    println!(
        "  {:<46} {:>10.0} {:>12.0} {:>8.2} {:>8.2} {:>8.1} {:>7}",
        name,
        run.per_second,
        run.per_second * f64::from(events_per_request),
        run.p50_ms,
        run.p99_ms,
        run.max_ms,
        run.errors
    );
    if run.errors > 0 {
        println!(
            "    ^ {} answers were not 200: this row is not a valid result",
            run.errors
        );
    }
}

/// A 2 s warm-up (connections, JIT-less caches, the broker's first batches), then the
/// measured wrk run.
fn wrk_peer(report: &mut Report, key: &str, name: &str, port: u16, path: &str, events: u32) -> Latencies {
    let seconds = env_u64("EXPOSURES_BENCH_SECONDS", 10);
    load::wrk(port, path, CONNECTIONS, 2, events);
    let run = load::wrk(port, path, CONNECTIONS, seconds, events);
    print_row(name, &run, events);
    report.put("ingest", key, json!(run));
    run
}

/// `exposures ingest` on a free port with its own spool; ready once /readyz says so.
fn start_ingest(brokers: &str, topic: &str, extra: &[&str]) -> (Proc, u16, tempfile::TempDir) {
    let port = procs::free_port();
    let spool = tempfile::tempdir().expect("spool dir");
    let proc = Proc::spawn(
        &format!("ingest-{topic}"),
        exposures()
            .args(["ingest", "--brokers", brokers, "--topic", topic])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--spool-dir")
            .arg(spool.path())
            .args(extra),
    );
    procs::wait_http_ok("exposures ingest", port, "/readyz");
    (proc, port, spool)
}

/// `exposures up` on free ports over a fresh data dir, optionally loading `warehouse`.
fn start_up(name: &str, warehouse: Option<&str>) -> (Proc, u16, tempfile::TempDir) {
    let port = procs::free_port();
    let data = tempfile::tempdir().expect("data dir");
    let mut command = exposures();
    command
        .args(["up", "--data-dir"])
        .arg(data.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    if let Some(url) = warehouse {
        command.args(["--warehouse", url]);
    }
    let proc = Proc::spawn(name, &mut command);
    procs::wait_http_ok("exposures up", port, "/readyz");
    (proc, port, data)
}

pub fn ingest(report: &mut Report, venv: &Path) {
    let seconds = env_u64("EXPOSURES_BENCH_SECONDS", 10);
    let broker = Broker::start(&[
        ("bench-python", PARTITIONS),
        ("bench-ingest", PARTITIONS),
        ("bench-ingest-linger5", PARTITIONS),
        ("bench-ingest-batch", PARTITIONS),
    ]);
    println!(
        "\n== ingest: wrk -t1 -c{CONNECTIONS} -d{seconds}s, one seed exposure per request, one user each"
    );
    println!(
        "   broker: librdkafka mock cluster (own process) at {}",
        broker.bootstrap
    );
    print_header();

    let (noop, port) = roles::rust_peer("__noop");
    let ceiling = wrk_peer(
        report,
        "noop_axum",
        "no-op axum handler (HTTP ceiling)",
        port,
        "/exposure",
        1,
    );
    let noop_batch = wrk_peer(
        report,
        "noop_axum_batch100",
        "  batches of 100",
        port,
        "/v1/exposures",
        100,
    );
    drop(noop);

    let (serde, port) = roles::rust_peer("__serde");
    wrk_peer(
        report,
        "axum_serde_json",
        "axum + serde_json parse",
        port,
        "/exposure",
        1,
    );
    wrk_peer(
        report,
        "axum_serde_json_batch100",
        "  batches of 100",
        port,
        "/v1/exposures",
        100,
    );
    drop(serde);

    let (python, port) = roles::python_peer(venv, &broker.bootstrap, "bench-python", 0);
    let python_run = wrk_peer(
        report,
        "fastapi_confluent_kafka",
        "FastAPI + confluent-kafka (uvicorn, 2 workers)",
        port,
        "/exposure",
        1,
    );
    drop(python);

    let (mut ingest, port, _spool) = start_ingest(&broker.bootstrap, "bench-ingest", &[]);
    let ours = wrk_peer(
        report,
        "exposures_ingest",
        "exposures ingest",
        port,
        "/exposure",
        1,
    );
    ingest.assert_running();
    // Open loop at half the peak: the latency a sized deployment sees.
    let half = ours.per_second / 2.0;
    let bodies = Arc::new((0..4096).map(load::event).collect::<Vec<_>>());
    let at_half = load::fixed_rate(
        port,
        "/exposure",
        CONNECTIONS as usize,
        half,
        Duration::from_secs(seconds),
        bodies.clone(),
        |_| {},
    );
    print_row(
        &format!("  open loop at half its peak ({half:.0}/s)"),
        &at_half,
        1,
    );
    report.put("ingest", "exposures_ingest_half_peak", json!(at_half));
    drop(ingest);

    let (ingest, port, _spool) = start_ingest(&broker.bootstrap, "bench-ingest-batch", &[]);
    let batches = wrk_peer(
        report,
        "exposures_ingest_batch100",
        "exposures ingest, batches of 100",
        port,
        "/v1/exposures",
        100,
    );
    drop(ingest);

    // librdkafka's default linger (5 ms) for comparison: the setting's effect in this run.
    let (ingest, port, _spool) = start_ingest(
        &broker.bootstrap,
        "bench-ingest-linger5",
        &["--kafka-property", "linger.ms=5"],
    );
    wrk_peer(
        report,
        "exposures_ingest_linger5",
        "exposures ingest, linger.ms=5",
        port,
        "/exposure",
        1,
    );
    drop(ingest);

    let (mut up, port, _data) = start_up("up-ingest", None);
    let up_run = wrk_peer(
        report,
        "exposures_up",
        "exposures up (embedded broker)",
        port,
        "/exposure",
        1,
    );
    up.assert_running();
    drop(up);

    println!();
    report.ratio(
        "ingest / no-op ceiling (single events)",
        ours.per_second / ceiling.per_second,
        "≥ 0.6",
    );
    report.ratio(
        "ingest / FastAPI + confluent-kafka",
        ours.per_second / python_run.per_second,
        "≥ 10",
    );
    report.ratio("ingest p99 ms at half peak (open loop)", at_half.p99_ms, "< 5");
    report.ratio(
        "ingest batches of 100: thousand events/s",
        batches.per_second * 100.0 / 1e3,
        "≥ 200",
    );
    report.ratio(
        "ingest batches / no-op ceiling batches",
        batches.per_second / noop_batch.per_second,
        "—",
    );
    report.ratio("up p99 ms at 64 connections", up_run.p99_ms, "< 50");
}

/// Kafka values as ingest produces them: the seed's attributes over 50,000 users.
fn sink_values(rows: usize) -> Vec<Vec<u8>> {
    let normalizer = Normalizer::default();
    (0..rows)
        .map(|i| {
            let user = format!("user_{}", i % 50_000);
            let (country, city, currency) =
                [("US", "New York", "USD"), ("GB", "London", "GBP"), ("DE", "Berlin", "EUR"), ("FR", "Paris", "EUR")][i % 4];
            let platform = ["web", "mobile"][i % 2];
            let body = json!({
                "ds_user_id": user, "experiment_id": format!("exp_{}", i % 12), "variation_id": (i % 3).to_string(),
                "attributes": {"id": user, "ds_user_id": user, "ds_session_id": format!("session_{}", i % 90_000),
                    "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
                    "geo_country_code": country, "geo_city": city, "currency_id": currency, "locale": "en-US",
                    "utm": {"source": "google", "medium": "cpc"}, "forwarded_for": "192.168.1.1",
                    "is_kf_verified": i % 5 == 0, "platform": platform},
                "source": "search_core_python"
            });
            normalizer.normalize(body, Utc::now()).expect("valid").to_json_bytes()
        })
        .collect()
}

/// What the sink does with records, without the upload: decode, one open file per
/// partition encoding as it grows, then Parquet bytes.
struct OpenFiles(std::collections::BTreeMap<i32, OpenFile>, ParquetCodec);

impl OpenFiles {
    fn new(codec: ParquetCodec) -> OpenFiles {
        OpenFiles(std::collections::BTreeMap::new(), codec)
    }

    fn append(&mut self, partition: i32, offset: i64, value: &[u8]) {
        let row = schemas::LakeRow::from_kafka_value(value).expect("a valid exposure");
        self.0
            .entry(partition)
            .or_insert_with(|| {
                let hour = Hour::of_millis(Utc::now().timestamp_millis());
                OpenFile::new(partition, hour, offset, "bench", self.1)
            })
            .append(&row, offset)
            .expect("encoded");
    }

    /// What the open files hold: Parquet so far and the rows not yet encoded.
    fn buffered_bytes(&self) -> usize {
        self.0.values().map(OpenFile::approx_bytes).sum()
    }

    /// Parquet bytes of every file.
    fn encode(self) -> usize {
        self.0
            .into_values()
            .map(|file| file.encode().expect("parquet").bytes.len())
            .sum()
    }
}

/// (Parquet bytes, bytes held while open) of `records` in `codec`.
fn to_parquet<'a>(
    records: impl Iterator<Item = (i32, i64, &'a [u8])>,
    codec: ParquetCodec,
) -> (usize, usize) {
    let mut files = OpenFiles::new(codec);
    for (partition, offset, value) in records {
        files.append(partition, offset, value);
    }
    let buffered = files.buffered_bytes();
    (files.encode(), buffered)
}

/// The pyarrow peer on the values file with `codec`: (its best of three in seconds,
/// Parquet bytes).
fn pyarrow_peer(venv: &Path, values_file: &Path, codec: &str) -> (f64, usize) {
    let output = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/pyarrow_sink.py"))
        .arg(values_file)
        .arg(codec)
        .output()
        .expect("python pyarrow peer");
    let result: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("pyarrow peer: {}", String::from_utf8_lossy(&output.stderr)));
    (
        result["seconds"].as_f64().unwrap_or(f64::NAN),
        result["bytes"].as_u64().unwrap_or(0) as usize,
    )
}

/// Best of three, in seconds.
fn best_of_three(mut work: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

pub fn sink(report: &mut Report, venv: &Path) {
    const ROWS: usize = 200_000;
    const TOPIC_PARTITIONS: i32 = 16;
    println!("\n== sink: {ROWS} exposures, Kafka values → Arrow → Parquet bytes (one core)");
    let values = sink_values(ROWS);
    let json_bytes: usize = values.iter().map(Vec::len).sum();
    println!(
        "   {:.1} MiB of Kafka values, {} B/row",
        json_bytes as f64 / 1048576.0,
        json_bytes / ROWS
    );
    let values_file = procs::out_dir().join("sink-values.jsonl");
    std::fs::write(&values_file, values.join(&b'\n')).expect("values file");

    // From a pre-filled topic: fetch (lz4 batches, as a production topic would hold),
    // decode, columns, Parquet. The mock cluster keeps ~5 MB per partition: compressed,
    // 16 partitions hold the run.
    let broker = Broker::start(&[("bench-sink", TOPIC_PARTITIONS)]);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "50")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for (i, value) in values.iter().enumerate() {
        let partition = (i % TOPIC_PARTITIONS as usize) as i32;
        let mut record = BaseRecord::<(), [u8]>::to("bench-sink")
            .payload(&value[..])
            .partition(partition);
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(120)).expect("topic filled");
    let from_topic = || -> (usize, f64) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("group.id", "bench-sink")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..TOPIC_PARTITIONS {
            assignment
                .add_partition_offset("bench-sink", partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let started = Instant::now();
        let mut files = OpenFiles::new(ParquetCodec::Snappy);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = 0;
        while seen < ROWS {
            assert!(
                Instant::now() < deadline,
                "the topic gave {seen} of {ROWS} records"
            );
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                files.append(
                    message.partition(),
                    message.offset(),
                    message.payload().unwrap_or_default(),
                );
                seen += 1;
            }
        }
        let bytes = files.encode();
        (bytes, started.elapsed().as_secs_f64())
    };
    let (topic_bytes, topic_seconds) = from_topic();
    drop(broker);

    let records: Vec<(i32, i64, &[u8])> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                (i % TOPIC_PARTITIONS as usize) as i32,
                (i / TOPIC_PARTITIONS as usize) as i64,
                &v[..],
            )
        })
        .collect();
    let decode_only = best_of_three(|| {
        for (_, _, value) in &records {
            std::hint::black_box(schemas::LakeRow::from_kafka_value(value).expect("exposure"));
        }
    });
    println!(
        "  {:<52} {:>10} {:>9} {:>12}",
        "path", "rows/s", "B/row", "held B/row"
    );
    let row = |name: &str, seconds: f64, bytes: Option<usize>, buffered: Option<usize>| {
        let per_row =
            |b: Option<usize>| b.map_or("—".to_owned(), |b| format!("{:.1}", b as f64 / ROWS as f64));
        println!(
            "  {:<52} {:>10.0} {:>9} {:>12}",
            name,
            ROWS as f64 / seconds,
            per_row(bytes),
            per_row(buffered)
        );
    };
    // The same rows the way the sink read them before: the record parsed into
    // `serde_json::Value` maps, then serialised again for the columns. (It skips the
    // loadability walk the old path also did, so the ratio understates the gain.)
    let parsed_decode = best_of_three(|| {
        for (_, _, value) in &records {
            let record: schemas::Exposure = serde_json::from_slice(value).expect("exposure");
            std::hint::black_box(schemas::LakeRow::from_exposure(&record));
        }
    });
    row("decode only (the least any sink does)", decode_only, None, None);
    row("decode via the parsed record (before)", parsed_decode, None, None);
    report.put("sink", "decode_only_rows_per_s", json!(ROWS as f64 / decode_only));
    report.put(
        "sink",
        "decode_parsed_record_rows_per_s",
        json!(ROWS as f64 / parsed_decode),
    );
    report.ratio(
        "sink decode: borrowed row / parsed record",
        parsed_decode / decode_only,
        "> 1",
    );
    row(
        "from the topic: fetch + decode + Arrow + Parquet (snappy)",
        topic_seconds,
        Some(topic_bytes),
        None,
    );
    report.put(
        "sink",
        "from_topic_snappy",
        json!({"rows_per_s": ROWS as f64 / topic_seconds, "bytes_per_row": topic_bytes as f64 / ROWS as f64}),
    );

    // Ours and pyarrow alternate, three rounds per codec, each the best of three, and
    // the ratio is the median round's: this machine's speed drifts by a third over
    // minutes, which one measurement after the other would read as a ratio.
    for codec in [ParquetCodec::Snappy, ParquetCodec::Zstd, ParquetCodec::Gzip] {
        let name = format!("{codec:?}").to_lowercase();
        let with_peer = codec != ParquetCodec::Gzip;
        let (mut bytes, mut buffered, mut peer_bytes) = (0, 0, 0);
        let mut rounds = Vec::new(); // (our seconds, pyarrow's seconds)
        for _ in 0..if with_peer { 3 } else { 1 } {
            let seconds = best_of_three(|| (bytes, buffered) = to_parquet(records.iter().copied(), codec));
            let peer_seconds = if with_peer {
                let (peer, size) = pyarrow_peer(venv, &values_file, &name);
                peer_bytes = size;
                peer
            } else {
                f64::NAN
            };
            rounds.push((seconds, peer_seconds));
        }
        let fastest = |pick: fn(&(f64, f64)) -> f64| rounds.iter().map(pick).fold(f64::MAX, f64::min);
        let seconds = fastest(|round| round.0);
        row(
            &format!("in memory: decode + Arrow + Parquet ({name})"),
            seconds,
            Some(bytes),
            Some(buffered),
        );
        report.put(
            "sink",
            &format!("in_memory_{name}"),
            json!({"rows_per_s": ROWS as f64 / seconds, "bytes_per_row": bytes as f64 / ROWS as f64, "held_bytes_per_row": buffered as f64 / ROWS as f64}),
        );
        if !with_peer {
            continue;
        }
        let peer_seconds = fastest(|round| round.1);
        row(
            &format!("pyarrow peer: json.loads + Arrow + Parquet ({name})"),
            peer_seconds,
            Some(peer_bytes),
            None,
        );
        report.put(
            "sink",
            &format!("pyarrow_{name}"),
            json!({"rows_per_s": ROWS as f64 / peer_seconds, "bytes_per_row": peer_bytes as f64 / ROWS as f64}),
        );
        let mut ratios: Vec<f64> = rounds.iter().map(|(ours, peer)| peer / ours).collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "  rounds, sink / pyarrow rows/s ({name}): {}",
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        report.ratio(
            &format!("sink / pyarrow rows/s ({name}), median of 3 rounds"),
            ratios[ratios.len() / 2],
            "≥ 8",
        );
        report.ratio(
            &format!("sink / pyarrow bytes per row ({name})"),
            bytes as f64 / peer_bytes as f64,
            "≤ 1",
        );
    }
}

/// Resident memory of `pid` once a second, as (second, bytes).
type Samples = Arc<Mutex<Vec<(u64, u64)>>>;

pub fn end_to_end(report: &mut Report) {
    let total = env_u64("EXPOSURES_BENCH_EVENTS", 1_000_000);
    println!(
        "\n== end to end: {total} exposures in batches of 1,000 (8 connections) → exposures up → PostgreSQL"
    );
    let pg = procs::Postgres::start();
    let (mut up, port, _data) = start_up("up-e2e", Some(&pg.url()));
    let pid = up.pid();
    let started = Instant::now();
    let (posting, retried) = load::post_all(port, "/v1/exposures", 8, total, 1000);
    let accepted = started.elapsed().as_secs_f64();
    up.assert_running();
    println!(
        "  accepted in {accepted:.1} s ({:.0} events/s; batch p50 {:.1} ms, p99 {:.1} ms; {retried} retried after 503)",
        total as f64 / accepted,
        posting.p50_ms,
        posting.p99_ms
    );
    let runtime = load::one_thread_runtime();
    let loaded = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(connection);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let count: i64 = client
                .query_one("SELECT count(*) FROM public.exposures", &[])
                .await
                .map(|row| row.get(0))
                .unwrap_or(0);
            if count as u64 >= total {
                return Some(started.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let (rss, peak) = procs::memory(pid);
    let cpu = procs::cpu_seconds(pid);
    let loaded = loaded.expect("every event queryable within 10 minutes");
    println!(
        "  all {total} queryable after {loaded:.1} s; up's peak resident memory {:.0} MiB (now {:.0} MiB), {cpu:.1} CPU s",
        peak as f64 / 1048576.0,
        rss as f64 / 1048576.0
    );
    report.put(
        "e2e",
        "up_postgres",
        json!({"events": total, "accepted_s": accepted, "queryable_s": loaded, "peak_rss_mib": peak as f64 / 1048576.0,
               "cpu_s": cpu, "retried_batches": retried, "batch_latency": posting}),
    );
    report.ratio(
        &format!("e2e seconds until all {total} queryable"),
        loaded,
        "< 30 (1M)",
    );
    report.ratio("e2e peak RSS MiB", peak as f64 / 1048576.0, "< 256");
}

pub fn soak(report: &mut Report) {
    let seconds = env_u64("EXPOSURES_BENCH_SOAK_SECONDS", 60);
    let rate = env_u64("EXPOSURES_BENCH_SOAK_RATE", 2000) as f64;
    println!("\n== soak: exposures up → PostgreSQL at {rate:.0} events/s (16 connections, single events) for {seconds} s");
    let pg = procs::Postgres::start();
    let (mut up, port, _data) = start_up("up-soak", Some(&pg.url()));
    let pid = up.pid();
    let samples: Samples = Arc::default();
    let sampled = samples.clone();
    let bodies = Arc::new((0..100_000).map(load::event).collect::<Vec<_>>());
    let run = load::fixed_rate(
        port,
        "/exposure",
        16,
        rate,
        Duration::from_secs(seconds),
        bodies,
        move |second| {
            let (rss, _) = procs::memory(pid);
            if let Ok(mut samples) = sampled.lock() {
                samples.push((second, rss));
            }
        },
    );
    up.assert_running();
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let at = |second: u64| {
        samples
            .iter()
            .find(|(s, _)| *s >= second)
            .map_or(0, |(_, rss)| *rss)
    };
    let max = samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
    let settled = seconds / 3;
    let (first, last) = (at(settled), samples.last().map_or(0, |(_, rss)| *rss));
    println!(
        "  resident MiB: at {settled} s {:.0}, at the end {:.0}, max {:.0}; p50 {:.1} ms, p99 {:.1} ms, {} errors",
        mib(first),
        mib(last),
        mib(max),
        run.p50_ms,
        run.p99_ms,
        run.errors
    );
    let series: Vec<f64> = samples
        .iter()
        .map(|(_, rss)| (mib(*rss) * 10.0).round() / 10.0)
        .collect();
    println!("  every second: {series:?}");
    report.put(
        "soak",
        "up_postgres",
        json!({"rate": rate, "seconds": seconds, "rss_mib_per_second": series, "latency": run}),
    );
    report.ratio(
        &format!("soak RSS growth MiB from {settled} s to the end"),
        mib(last) - mib(first),
        "≈ 0 (flat)",
    );
}
