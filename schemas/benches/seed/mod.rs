//! What the schemas benches share: the seed's exposures as request bodies, and a
//! measurement loop (best of five rounds, one core) that prints rate and time per item.

use std::time::Instant;

use serde_json::json;

pub const EVENTS: usize = 100_000;
const ROUNDS: usize = 5;

/// Request bodies shaped like the seed's Python callback, with a few numeric attributes.
pub fn request_bodies() -> Vec<Vec<u8>> {
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

/// Runs measurements over `inputs`; with a name on the command line
/// (`cargo bench … -- NAME-SUBSTRING`), only the matching ones, for `perf` on one of them.
pub struct Measure<'a> {
    inputs: &'a [Vec<u8>],
    only: Option<String>,
}

impl<'a> Measure<'a> {
    pub fn new(inputs: &'a [Vec<u8>]) -> Measure<'a> {
        let only = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
        Measure { inputs, only }
    }

    /// `work` over every input, best of five rounds; prints and returns the rate per
    /// second (NaN when filtered out). `work`'s sum is printed so it is not optimised away.
    pub fn run(&self, name: &str, work: &mut dyn FnMut(&[u8]) -> usize) -> f64 {
        if self.only.as_deref().is_some_and(|only| !name.contains(only)) {
            return f64::NAN;
        }
        let mut best = f64::MAX;
        let mut output = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            output = self.inputs.iter().map(|input| work(input)).sum::<usize>();
            best = best.min(started.elapsed().as_secs_f64());
        }
        let rate = self.inputs.len() as f64 / best;
        println!(
            "{name:<52} {rate:>10.0} /s  {:>6.2} µs  (output {output})",
            1e6 / rate
        );
        rate
    }
}
