//! The sink's per-record CPU path on one core: a Kafka value (as ingest writes it) read
//! into the lake's row, then appended to the Arrow builders; against the floor of
//! merely validating the JSON, and against parsing the record into maps (how the sink
//! read it before `LakeRow`). Prints figures and ratios; asserts nothing.
//!
//!     cargo bench -p schemas --bench lake_row_throughput [-- NAME-SUBSTRING]
//!
//! With a name, only the matching measurements run (for `perf stat` on one of them).

use std::time::Instant;

use chrono::Utc;
use schemas::{Exposure, ExposureBatchBuilder, LakeRow, Normalizer};
use serde::de::IgnoredAny;
use serde_json::json;

const RECORDS: usize = 100_000;
const ROUNDS: usize = 5;

/// Kafka values as ingest produces them from the seed's Python callback.
fn kafka_values() -> Vec<Vec<u8>> {
    let normalizer = Normalizer::default();
    (0..RECORDS)
        .map(|i| {
            let user = format!("user_{}", i % 50_000);
            let (country, city, currency) =
                [("US", "New York", "USD"), ("GB", "London", "GBP"), ("DE", "Berlin", "EUR")][i % 3];
            let platform = ["web", "mobile"][i % 2];
            let body = json!({
                "ds_user_id": user, "experiment_id": format!("exp_{}", i % 12), "variation_id": (i % 3),
                "attributes": {"id": user, "ds_user_id": user, "ds_session_id": format!("session_{}", i % 90_000),
                    "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
                    "geo_country_code": country, "geo_city": city, "currency_id": currency, "locale": "en-US",
                    "utm": {"source": "google", "medium": "cpc"}, "forwarded_for": "192.168.1.1",
                    "is_kf_verified": i % 5 == 0, "platform": platform},
                "source": "search_core_python"
            });
            normalizer
                .normalize(body, Utc::now())
                .expect("a valid exposure")
                .to_json_bytes()
        })
        .collect()
}

fn main() {
    let values = kafka_values();
    let bytes: usize = values.iter().map(Vec::len).sum();
    println!(
        "{RECORDS} Kafka values, {:.1} MiB ({} B/record)\n",
        bytes as f64 / 1048576.0,
        bytes / RECORDS
    );
    let only: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let measure = |name: &str, work: &mut dyn FnMut(&[u8]) -> usize| -> f64 {
        if only.as_deref().is_some_and(|only| !name.contains(only)) {
            return f64::NAN;
        }
        let mut best = f64::MAX;
        let mut output = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            output = values.iter().map(|v| work(v)).sum::<usize>();
            best = best.min(started.elapsed().as_secs_f64());
        }
        let rate = RECORDS as f64 / best;
        println!(
            "{name:<52} {rate:>10.0} records/s  {:>6.2} µs  (output {output})",
            1e6 / rate
        );
        rate
    };
    let floor = measure("validate the JSON only (serde IgnoredAny)", &mut |v| {
        serde_json::from_slice::<IgnoredAny>(v).map_or(0, |_| 1)
    });
    let parsed = measure("parse into Exposure (maps), then its row (before)", &mut |v| {
        let record: Exposure = serde_json::from_slice(v).expect("exposure");
        LakeRow::from_exposure(&record).event_id.len()
    });
    let row = measure("LakeRow::from_kafka_value", &mut |v| {
        LakeRow::from_kafka_value(v).map_or(0, |row| row.event_id.len())
    });
    let mut builder = ExposureBatchBuilder::new();
    let appended = measure("LakeRow::from_kafka_value + Arrow append", &mut |v| {
        let row = LakeRow::from_kafka_value(v).expect("row");
        builder.append(&row, 0, 0);
        if builder.rows() >= RECORDS {
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
