//! Sink throughput: how many exposures per second one core turns from Kafka values into
//! Parquet, against the baseline of only decoding the values (the least any sink does).
//! Prints figures and ratios; it asserts nothing (this machine is shared and noisy).
//!
//!     cargo bench --bench sink_throughput

use std::time::Instant;

use chrono::Utc;
use loader::sink::file::{Hour, OpenFile, ParquetCodec};
use schemas::{Exposure, ExposureBatchBuilder, Normalizer};
use serde_json::json;

const ROWS: usize = 200_000;
const ROUNDS: usize = 3;

/// Kafka values as ingest produces them, with the seed's attribute set.
fn values() -> Vec<Vec<u8>> {
    let normalizer = Normalizer::default();
    (0..ROWS)
        .map(|i| {
            let user = format!("user_{}", i % 50_000);
            let (country, city, currency) = [("US", "New York", "USD"), ("GB", "London", "GBP"), ("DE", "Berlin", "EUR"), ("FR", "Paris", "EUR")][i % 4];
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

/// Best of `ROUNDS` runs, in rows per second.
fn measure(name: &str, mut work: impl FnMut() -> usize) -> f64 {
    let mut best = f64::MAX;
    let mut output = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        output = work();
        best = best.min(started.elapsed().as_secs_f64());
    }
    let rate = ROWS as f64 / best;
    println!("{name:<44} {rate:>12.0} rows/s   ({best:.3} s, output {output})");
    rate
}

fn main() {
    let values = values();
    let json_bytes: usize = values.iter().map(Vec::len).sum();
    println!(
        "{ROWS} exposures, {:.1} MiB of Kafka values ({} B/row)\n",
        json_bytes as f64 / 1048576.0,
        json_bytes / ROWS
    );

    let decode = || -> Vec<Exposure> {
        values
            .iter()
            .map(|v| serde_json::from_slice(v).expect("exposure"))
            .collect()
    };
    let baseline = measure("baseline: decode Kafka values (serde_json)", || decode().len());
    let arrow = measure("decode + Arrow columns", || {
        let mut builder = ExposureBatchBuilder::new();
        for (offset, exposure) in decode().iter().enumerate() {
            builder.append(exposure, 0, offset as i64);
        }
        builder.finish().expect("batch").num_rows()
    });
    println!();
    let mut buffered = 0;
    for codec in [ParquetCodec::Snappy, ParquetCodec::Zstd, ParquetCodec::Gzip] {
        let mut parquet_size = 0;
        let parquet = measure(&format!("decode + Arrow + Parquet ({codec:?})"), || {
            let mut file = OpenFile::new(0, Hour::of_millis(Utc::now().timestamp_millis()), 0);
            for (offset, exposure) in decode().iter().enumerate() {
                file.append(exposure, offset as i64);
            }
            buffered = file.approx_bytes();
            let encoded = file.encode("exposures", codec).expect("parquet");
            parquet_size = encoded.bytes.len();
            parquet_size
        });
        println!(
            "    {codec:?}: {:.2}x the baseline's time; {:.2} MiB, {:.1} B/row, {:.1}x smaller than the JSON values",
            baseline / parquet,
            parquet_size as f64 / 1048576.0,
            parquet_size as f64 / ROWS as f64,
            json_bytes as f64 / parquet_size as f64,
        );
    }
    println!();
    println!("Arrow columns vs baseline:   {:.2}x the time", baseline / arrow);
    println!(
        "buffered in memory while a file is open ≈ {:.1} MiB",
        buffered as f64 / 1048576.0
    );
}
