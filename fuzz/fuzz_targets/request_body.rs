//! Any bytes as a request body of either endpoint: the decoder and validator accept
//! them or refuse them with a 4xx — never a panic, never a 5xx, never unbounded work.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run request_body` (see README, "Fuzzing").

#![no_main]

use std::sync::OnceLock;

use clap::Parser;
use ingest::{check_body, Endpoint, HttpConfig};
use libfuzzer_sys::fuzz_target;

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    http: HttpConfig,
}

fn http() -> &'static HttpConfig {
    static HTTP: OnceLock<HttpConfig> = OnceLock::new();
    HTTP.get_or_init(|| Defaults::parse_from(["fuzz", "--max-batch-events", "100"]).http)
}

fuzz_target!(|body: &[u8]| {
    for endpoint in [Endpoint::Single, Endpoint::Batch] {
        if let Err((status, code)) = check_body(endpoint, body, http()) {
            assert!((400..500).contains(&status), "{status} {code}");
        }
    }
});
