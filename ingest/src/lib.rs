//! The ingest stage: an HTTP API (axum) that accepts the exposures GrowthBook SDK
//! callbacks POST, validates them with [`schemas`], and answers 200 only once they are
//! durable — acknowledged by Kafka (`acks=all`, idempotent producer) or, while Kafka
//! cannot acknowledge in time, fsync'd in a local spool that is replayed to Kafka in
//! order.
//!
//! Data path, top-down: [`routes`] (HTTP) → [`payload`] (bodies) → `schemas::Normalizer`
//! (validation) → [`delivery`] (policy: Kafka or spool) → [`kafka`] / [`spool`]
//! (mechanism). [`serve`] wires them; the CLI only parses configuration.

pub mod config;
pub mod delivery;
pub mod error;
pub mod kafka;
pub mod metrics;
pub mod payload;
pub mod routes;
pub mod spool;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use config::{DeliveryConfig, HttpConfig, IngestConfig};
use tokio::net::TcpListener;

/// Where the spool lives when `--spool-dir` is not given.
pub const DEFAULT_SPOOL_DIR: &str = "./exposures-data/spool";

/// How long shutdown waits for Kafka to acknowledge what the producer still holds.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaSetupError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] spool::SpoolError),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting,
/// finishes in-flight requests (each still waits for its events to be durable) and
/// flushes the producer.
pub async fn serve(
    listener: TcpListener,
    config: IngestConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError> {
    metrics::prometheus();
    let delivery_config = &config.delivery;
    let producer = kafka::producer(
        &config.brokers,
        delivery_config.delivery_timeout,
        &delivery_config.kafka_properties,
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
    let delivery = delivery::Delivery::new(producer, delivery_config.topic.clone(), spool);
    let background = delivery.start_background();
    let state = Arc::new(routes::AppState {
        normalizer: config.http.normalizer(),
        delivery: delivery.clone(),
        http: config.http.clone(),
        limiter: config.http.rate_limiter(),
    });
    let forget_idle_clients = state.limiter.is_some().then(|| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                if let Some(limiter) = &state.limiter {
                    limiter.retain_recent();
                }
            }
        })
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        brokers = %config.brokers,
        topic = %delivery_config.topic,
        spool = ?delivery_config.spool_dir,
        "ingest API ready: POST /exposure, POST /v1/exposures"
    );
    let app = routes::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    if let Some(task) = forget_idle_clients {
        task.abort();
    }
    tracing::info!("HTTP server stopped; flushing Kafka producer");
    delivery.shutdown(background, SHUTDOWN_FLUSH_TIMEOUT).await;
    served.map_err(IngestError::Http)
}
