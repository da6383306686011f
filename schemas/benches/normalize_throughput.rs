//! Ingest's per-event CPU path on one core: parse the request body's JSON, validate and
//! normalise it, serialise the Kafka value. Prints figures; asserts nothing (this machine
//! is shared and noisy).
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
    measure.run("parse + normalise + Kafka value (ingest path)", &mut |b| {
        let value: Value = serde_json::from_slice(b).expect("json");
        normalizer
            .normalize(value, now)
            .map_or(0, |e| e.to_json_bytes().len())
    });
}
