//! The ingest stage: an HTTP API (axum) that accepts the exposures GrowthBook SDK
//! callbacks POST, validates them with [`schemas`], and answers 200 only once they are
//! durable — acknowledged by Kafka (`acks=all`, idempotent producer) or, while Kafka
//! cannot acknowledge in time, fsync'd in a local spool that is replayed to Kafka in
//! order.
//!
//! Data path, top-down: [`routes`] (HTTP) → [`payload`] (bodies) → `schemas::Normalizer`
//! (validation) → `delivery` (policy: Kafka or spool) → the producer / `spool`
//! (mechanism). [`serve`] wires them; the CLI only parses configuration. The Kafka
//! producer is configured by [`stage::KafkaArgs`], like every other client.
//!
//! Public: the configuration, [`serve`], its error, and the metric names ([`metrics`]).

mod config;
mod delivery;
mod error;
pub mod metrics;
mod payload;
mod routes;
mod spool;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use config::{DeliveryConfig, HttpConfig, IngestConfig};
pub use metrics::RenderMetrics;
use rdkafka::producer::FutureProducer;
use stage::{ClientRole, Shutdown};
use tokio::net::TcpListener;

/// Where the spool lives when `--spool-dir` is not given.
pub const DEFAULT_SPOOL_DIR: &str = "./exposures-data/spool";

/// How long shutdown waits for Kafka to acknowledge what the producer still holds.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Kafka(#[from] stage::KafkaSetupError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] spool::SpoolError),
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
    let delivery_config = &config.delivery;
    let producer: FutureProducer = config.kafka.create(
        ClientRole::Producer {
            client_id: "exposures-ingest",
            message_timeout: delivery_config.delivery_timeout,
        },
        &[],
    )?;
    let spool = if delivery_config.no_spool {
        None
    } else {
        let dir = delivery_config
            .spool_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR));
        Some(spool::Spool::open(&dir, delivery_config.spool_max_bytes)?)
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
    let state = Arc::new(routes::AppState {
        normalizer: config.http.normalizer(),
        delivery: delivery.clone(),
        http: config.http.clone(),
        limiter: config.http.rate_limiter(),
        render_metrics,
    });
    let forget_idle_clients = state.limiter.is_some().then(|| {
        let state = state.clone();
        let stop = background_stop.clone();
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every_minute.tick() => {}
                    _ = stop.cancelled() => return,
                }
                if let Some(limiter) = &state.limiter {
                    limiter.retain_recent();
                }
            }
        })
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        brokers = %config.kafka.brokers,
        topic = %delivery_config.topic,
        spool = ?delivery_config.spool_dir,
        "ingest API ready: POST /exposure, POST /v1/exposures"
    );
    let app = routes::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    tracing::info!("HTTP server stopped; flushing Kafka producer");
    background_stop.cancel();
    if let Some(task) = forget_idle_clients {
        let _ = task.await;
    }
    delivery.shutdown(background, SHUTDOWN_FLUSH_TIMEOUT).await;
    served.map_err(IngestError::Http)
}
