//! The sink's per-record CPU path on one core: a Kafka value (as ingest writes it) read
//! into the lake's row, then appended to the Arrow builders; against the floor of
//! merely validating the JSON, and against parsing the record into maps (how the sink
//! read it before `LakeRow`). Prints figures and ratios; asserts nothing.
//!
//!     cargo bench -p schemas --bench lake_row_throughput [-- NAME-SUBSTRING]
//!
//! With a name, only the matching measurements run (for `perf stat` on one of them).

mod seed;

use chrono::Utc;
use schemas::{Exposure, ExposureBatchBuilder, LakeRow, Normalizer};
use serde::de::IgnoredAny;
use serde_json::Value;

use seed::{request_bodies, Measure, EVENTS};

fn main() {
    // Kafka values as ingest produces them from the seed's request bodies.
    let normalizer = Normalizer::default();
    let values: Vec<Vec<u8>> = request_bodies()
        .iter()
        .map(|body| {
            let body: Value = serde_json::from_slice(body).expect("json");
            normalizer
                .normalize(body, Utc::now())
                .expect("a valid exposure")
                .to_json_bytes()
        })
        .collect();
    let bytes: usize = values.iter().map(Vec::len).sum();
    println!(
        "{EVENTS} Kafka values, {:.1} MiB ({} B/record)\n",
        bytes as f64 / 1048576.0,
        bytes / EVENTS
    );
    let measure = Measure::new(&values);
    let floor = measure.run("validate the JSON only (serde IgnoredAny)", &mut |v| {
        serde_json::from_slice::<IgnoredAny>(v).map_or(0, |_| 1)
    });
    let parsed = measure.run("parse into Exposure (maps), then its row (before)", &mut |v| {
        let record: Exposure = serde_json::from_slice(v).expect("exposure");
        LakeRow::from_exposure(&record).event_id.len()
    });
    let row = measure.run("LakeRow::from_kafka_value", &mut |v| {
        LakeRow::from_kafka_value(v).map_or(0, |row| row.event_id.len())
    });
    let mut builder = ExposureBatchBuilder::new();
    let appended = measure.run("LakeRow::from_kafka_value + Arrow append", &mut |v| {
        let row = LakeRow::from_kafka_value(v).expect("row");
        builder.append(&row, 0, 0);
        if builder.rows() >= EVENTS {
            let _ = builder.finish();
        }
        1
    });
    println!("\nLakeRow / parsed record:             {:.2}×", row / parsed);
    println!("LakeRow / validating the JSON alone: {:.2}×", row / floor);
    println!(
        "append's share of row + append:      {:.0}%",
        100.0 * (1.0 - appended / row)
    );
}
