//! The ingest stage: an HTTP API (axum) that accepts the exposures GrowthBook SDK
//! callbacks POST, validates them with [`schemas`], and answers 200 only once they are
//! durable — acknowledged by Kafka (`acks=all`, idempotent producer) or, while Kafka
//! cannot acknowledge in time, fsync'd in a local spool that is replayed to Kafka in
//! order.
//!
//! It also takes what GrowthBook's own tracking plugin posts (`POST /track`, [`tracking`]):
//! experiment views, judged and encoded as exposures, and feature evaluations and custom
//! events, as rows of `feature_usage` and `events` (`schemas::tracked`) on the same topic.
//!
//! Data path, top-down: [`routes`] (HTTP) → [`payload`] (bodies, each event kept as
//! its raw JSON text) → `schemas::Normalizer::encode` (validation, straight to the
//! Kafka value) → `delivery` (policy: Kafka or spool) → `acks` (the producer, one wake
//! per publish) / `spool` (mechanism). [`serve`] wires them; the CLI only parses configuration. The Kafka
//! producer is configured by [`stage::KafkaArgs`], like every other client.
//!
//! Public: the configuration, [`serve`], its error, and the metric names ([`metrics`]).

mod acks;
mod config;
mod delivery;
mod error;
pub mod metrics;
mod payload;
mod routes;
mod server;
mod spool;
mod tracking;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::acks::{AckContext, AckProducer};
pub use config::{ClientKey, DeliveryConfig, HttpConfig, IngestConfig};
pub use metrics::RenderMetrics;
pub use routes::Endpoint;
use stage::{ClientRole, Shutdown};
use tokio::net::TcpListener;

/// Where the spool lives when `--spool-dir` is not given.
pub const DEFAULT_SPOOL_DIR: &str = "./exposures-data/spool";

/// How long shutdown waits for Kafka to acknowledge what the producer still holds.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Kafka(#[from] stage::KafkaSetupError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    SpoolInUse(#[from] stage::DirLockError),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` is cancelled, then stops accepting,
/// finishes in-flight requests (each still waits for its events to be durable) and
/// flushes the producer. `render_metrics` answers `GET /metrics`.
pub async fn serve(
    listener: TcpListener,
    config: IngestConfig,
    render_metrics: RenderMetrics,
    shutdown: Shutdown,
) -> Result<(), IngestError> {
    config.http.validate()?;
    let delivery_config = &config.delivery;
    let producer: AckProducer = config
        .kafka
        .config(
            ClientRole::Producer {
                client_id: "exposures-ingest",
                message_timeout: delivery_config.delivery_timeout,
            },
            // Every request waits for its acknowledgements, so a long linger is latency:
            // librdkafka's default 5 ms capped 64 connections near 64 / 5 ms ≈ 12k req/s
            // (`cargo bench --bench pipeline`). 0.1 ms lets the broker thread wake on its
            // own timer and send what came meanwhile, instead of being woken by the
            // request that finds its partition's queue empty: single events at 64
            // connections were faster than at 0 ms in each of 13 interleaved rounds (0.67–0.69
            // against 0.57–0.63 of the no-op ceiling over 5 of them); 0.2 ms was no better
            // (0.58–0.71). README "Results". A user's --kafka-property overrides it.
            &[("linger.ms", "0.1".to_owned())],
        )?
        .create_with_context(AckContext {
            oauth: config.kafka.oauth()?,
        })
        .map_err(|source| config.kafka.client_error(source))?;
    // One ingest per spool, held until this returns: two would write segments over each
    // other's.
    let (spool, _spool_lock) = if delivery_config.no_spool {
        (None, None)
    } else {
        let dir = delivery_config
            .spool_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR));
        std::fs::create_dir_all(&dir).map_err(|source| spool::SpoolError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock = stage::DirLock::acquire(&dir, "--spool-dir")?;
        (
            Some(spool::Spool::open(&dir, delivery_config.spool_max_bytes)?),
            Some(lock),
        )
    };
    if let Some(spool) = &spool {
        if spool.pending_records() > 0 {
            tracing::info!(
                records = spool.pending_records(),
                "spool holds events from an earlier run; replaying them to Kafka"
            );
        }
    }
    // Background work stops after the HTTP server, which still needs it to answer.
    let background_stop = Shutdown::new();
    let delivery = delivery::Delivery::new(
        producer,
        delivery_config.topic.clone(),
        spool,
        background_stop.clone(),
    );
    let background = delivery.start_background();
    let state = Arc::new(routes::AppState::new(
        config.http.normalizer(),
        delivery.clone(),
        config.http.clone(),
        render_metrics,
    ));
    let forget_idle_clients = {
        let state = state.clone();
        let stop = background_stop.clone();
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every_minute.tick() => {}
                    _ = stop.cancelled() => return,
                }
                state.forget_idle_clients();
            }
        })
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        brokers = %config.kafka.brokers,
        topic = %delivery_config.topic,
        spool = ?delivery_config.spool_dir,
        "ingest API ready: POST /exposure, POST /v1/exposures"
    );
    server::serve(
        listener,
        routes::router(state),
        &config.http.connections,
        shutdown,
    )
    .await;
    tracing::info!("HTTP server stopped; flushing Kafka producer");
    background_stop.cancel();
    let _ = forget_idle_clients.await;
    delivery.shutdown(background, SHUTDOWN_FLUSH_TIMEOUT).await;
    Ok(())
}

/// What the API answers a decoded request body, without sending anything: the number of
/// events it would accept, or the 4xx status and error code it would refuse them with.
/// For fuzzing and property tests of the decoder and validator.
pub fn check_body(endpoint: Endpoint, body: &[u8], http: &HttpConfig) -> Result<usize, (u16, &'static str)> {
    let normalizer = http.normalizer();
    routes::decode_events(endpoint, body, http, &|event| {
        normalizer.encode(event, chrono::Utc::now())
    })
    .map(|events| events.len())
    .map_err(|error| (error.status().as_u16(), error.code()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use proptest::prelude::*;

    use super::*;
    use crate::error::ApiError;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        http: HttpConfig,
    }

    fn http() -> HttpConfig {
        Cli::parse_from(["test", "--max-batch-events", "20"]).http
    }

    /// JSON-ish bytes: fragments of events mixed with arbitrary bytes, so the generator
    /// reaches the validator as well as the parser.
    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            Just(br#"{"ds_user_id":"u","experiment_id":"e","variation_id":1}"#.to_vec()),
            Just(br#"{"attributes":{"forwarded_for":[1,{}]},"user_id":7}"#.to_vec()),
            Just(b"[".to_vec()),
            Just(b"]".to_vec()),
            Just(b",".to_vec()),
            Just(b"\n".to_vec()),
            Just(br#""\u0000""#.to_vec()),
            Just(b"123456789012345678901234567890".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..16),
        ];
        proptest::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_body_is_accepted_or_refused_with_a_4xx_never_a_panic(body in bodies()) {
            let http = http();
            for endpoint in [Endpoint::Single, Endpoint::Batch] {
                match check_body(endpoint, &body, &http) {
                    Ok(events) => prop_assert!(events >= 1),
                    Err((status, code)) => {
                        prop_assert!((400..500).contains(&status), "{status} {code}");
                        prop_assert!(!code.is_empty());
                    }
                }
            }
        }
    }

    /// serde_json takes a lone surrogate escape or nesting past 128 levels as raw text,
    /// but not as a value, and its raw parse reports invalid UTF-8 elsewhere: the client
    /// gets the error of parsing the whole body into values, as before events were
    /// encoded from their raw text. In an array the array's level counts too.
    #[test]
    fn json_errors_are_the_whole_body_parse_errors() {
        let http = http();
        let normalizer = http.normalizer();
        let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let event = r#"{"ds_user_id":"u","experiment_id":"e","variation_id":1}"#;
        let deep_event = |levels: usize| {
            format!(
                r#"{{"ds_user_id":"u","experiment_id":"e","variation_id":1,"x":{}}}"#,
                nested(levels)
            )
        };
        let cases: Vec<(Endpoint, Vec<u8>)> = vec![
            (
                Endpoint::Single,
                br#"{"ds_user_id":"u\ud800","experiment_id":"e","variation_id":1}"#.to_vec(),
            ),
            (
                Endpoint::Batch,
                format!(r#"[{event},{{"ds_user_id":"\ud800x"}}]"#).into_bytes(),
            ),
            (
                Endpoint::Batch,
                format!("{event}\n{{\"attributes\":{{\"a\":{}}}}}\n", nested(200)).into_bytes(),
            ),
            (Endpoint::Single, deep_event(200).into_bytes()),
            (Endpoint::Single, deep_event(127).into_bytes()),
            (
                Endpoint::Batch,
                format!("[{event},{}]", deep_event(126)).into_bytes(),
            ),
            (Endpoint::Batch, format!("[{}]", deep_event(125)).into_bytes()),
            (Endpoint::Batch, b"[{\"ds_user_id\":\"\xff\"},7]".to_vec()),
            (Endpoint::Single, b"{\"ds_user_id\":\"u\xc3\"}".to_vec()),
        ];
        for (endpoint, body) in cases {
            let ours = routes::decode_events(endpoint, &body, &http, &|event| {
                normalizer.encode(event, chrono::Utc::now())
            })
            .map(|events| events.len());
            let whole = match endpoint {
                Endpoint::Single => payload::parse_single::<serde_json::Value>(&body).map(|_| ()),
                Endpoint::Batch => payload::parse_batch::<serde_json::Value>(&body, 20).map(|_| ()),
            };
            let shown = String::from_utf8_lossy(&body);
            match (ours, whole) {
                (Err(ApiError::MalformedJson(ours)), Err(ApiError::MalformedJson(theirs))) => {
                    assert_eq!(ours, theirs, "{shown}")
                }
                (Ok(events), Ok(())) => assert!(events >= 1, "{shown}"),
                (ours, theirs) => panic!("{shown}: {ours:?} vs {theirs:?}"),
            }
        }
    }

    #[test]
    fn empty_write_keys_and_weak_salts_are_refused_at_start() {
        let keys = Cli::parse_from(["test", "--write-keys", "k1,"]).http;
        assert!(keys
            .validate()
            .expect_err("empty key")
            .to_string()
            .contains("empty key"));
        let hash = Cli::parse_from(["test", "--forwarded-for", "hash", "--ip-hash-salt", "short"]).http;
        assert!(hash
            .validate()
            .expect_err("weak salt")
            .to_string()
            .contains("at least 16 bytes"));
        let good = Cli::parse_from([
            "test",
            "--write-keys",
            "k1,k2",
            "--forwarded-for",
            "hash",
            "--ip-hash-salt",
            "0123456789abcdef",
        ])
        .http;
        assert!(good.validate().is_ok());
    }
}
