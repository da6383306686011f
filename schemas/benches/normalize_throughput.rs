//! Ingest's per-event CPU path on one core: from the request body's JSON to the Kafka
//! value. `Normalizer::encode` (what ingest runs) against the same work done through a
//! parsed `serde_json::Value` (what it ran before), in the same run. Prints figures and
//! the ratio; asserts nothing (this machine is shared and noisy).
//!
//!     cargo bench -p schemas --bench normalize_throughput [-- NAME-SUBSTRING]

mod seed;

use chrono::Utc;
use schemas::Normalizer;
use serde_json::Value;

use seed::{request_bodies, Measure, EVENTS};

fn main() {
    let bodies = request_bodies();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "{EVENTS} events, {:.1} MiB of request JSON ({} B/event)\n",
        bytes as f64 / 1048576.0,
        bytes / EVENTS
    );
    let normalizer = Normalizer::default();
    let now = Utc::now();
    let measure = Measure::new(&bodies);
    measure.run("parse body (serde_json::Value)", &mut |b| {
        serde_json::from_slice::<Value>(b).map_or(0, |_| 1)
    });
    measure.run("parse + normalise", &mut |b| {
        let value: Value = serde_json::from_slice(b).expect("json");
        normalizer.normalize(value, now).map_or(0, |_| 1)
    });
    let through_value = measure.run("parse + normalise + Kafka value (via Value)", &mut |b| {
        let value: Value = serde_json::from_slice(b).expect("json");
        normalizer
            .normalize(value, now)
            .map_or(0, |e| e.to_json_bytes().len())
    });
    let encoded = measure.run("encode: text → Kafka value (ingest path)", &mut |b| {
        let text = std::str::from_utf8(b).expect("utf-8");
        normalizer.encode(text, now).map_or(0, |e| e.value.len())
    });
    let hashed = Normalizer {
        ip_policy: schemas::IpPolicy::Hash,
        ..Normalizer::default()
    };
    measure.run("encode with --ip-policy hash (SHA-256 per event)", &mut |b| {
        let text = std::str::from_utf8(b).expect("utf-8");
        hashed.encode(text, now).map_or(0, |e| e.value.len())
    });
    println!(
        "\nencode / via Value: {:.2}× the events per second",
        encoded / through_value
    );
}
