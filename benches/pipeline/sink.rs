//! The sink section: Kafka values → Arrow → Parquet bytes on one core, from memory and
//! from a pre-filled topic, against the pyarrow peer on the same values.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use loader::sink::file::{OpenFile, ParquetCodec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemas::lake_layout::Hour;
use schemas::Normalizer;
use serde_json::{json, Value};

use crate::procs;
use crate::roles::Broker;
use crate::Report;

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
                OpenFile::new(&schemas::EXPOSURES, partition, hour, offset, "bench", self.1)
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
