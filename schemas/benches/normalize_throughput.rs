//! Ingest's per-event CPU path on one core: parse the request body's JSON, validate and
//! normalise it, serialise the Kafka value. Prints figures; asserts nothing (this machine
//! is shared and noisy).
//!
//!     cargo bench -p schemas --bench normalize_throughput

use std::time::Instant;

use chrono::Utc;
use schemas::Normalizer;
use serde_json::{json, Value};

const EVENTS: usize = 100_000;
const ROUNDS: usize = 5;

/// Request bodies shaped like the seed's Python callback, with a few numeric attributes.
fn bodies() -> Vec<Vec<u8>> {
    (0..EVENTS)
        .map(|i| {
            let user = format!("user_{}", i % 50_000);
            let (country, city, currency) = [
                ("US", "New York", "USD"),
                ("GB", "London", "GBP"),
                ("DE", "Berlin", "EUR"),
                ("FR", "Paris", "EUR"),
            ][i % 4];
            let platform = ["web", "mobile"][i % 2];
            let body = json!({
                "ds_user_id": user, "experiment_id": format!("exp_{}", i % 12), "variation_id": (i % 3),
                "attributes": {"id": user, "ds_user_id": user, "ds_session_id": format!("session_{}", i % 90_000),
                    "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
                    "geo_country_code": country, "geo_city": city, "currency_id": currency, "locale": "en-US",
                    "utm": {"source": "google", "medium": "cpc"}, "forwarded_for": "192.168.1.1",
                    "is_kf_verified": i % 5 == 0, "platform": platform,
                    "screen_width": 1440, "cart_value": 73.25, "visits": i},
                "source": "search_core_python"
            });
            serde_json::to_vec(&body).expect("serialisable")
        })
        .collect()
}

fn main() {
    let bodies = bodies();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "{EVENTS} events, {:.1} MiB of request JSON ({} B/event)\n",
        bytes as f64 / 1048576.0,
        bytes / EVENTS
    );
    let normalizer = Normalizer::default();
    let now = Utc::now();
    let measure = |name: &str, work: &dyn Fn(&[u8]) -> usize| {
        let mut best = f64::MAX;
        let mut output = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            output = bodies.iter().map(|b| work(b)).sum::<usize>();
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{name:<48} {:>10.0} events/s   ({best:.3} s per {EVENTS}, output {output})",
            EVENTS as f64 / best
        );
    };
    measure("parse body (serde_json::Value)", &|b| {
        serde_json::from_slice::<Value>(b).map_or(0, |_| 1)
    });
    measure("parse + normalise", &|b| {
        let value: Value = serde_json::from_slice(b).expect("json");
        normalizer.normalize(value, now).map_or(0, |_| 1)
    });
    measure("parse + normalise + Kafka value (ingest path)", &|b| {
        let value: Value = serde_json::from_slice(b).expect("json");
        normalizer
            .normalize(value, now)
            .map_or(0, |e| e.to_json_bytes().len())
    });
}
