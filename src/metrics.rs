//! The process's Prometheus exporter. The binary owns it: it installs the one recorder
//! every stage's `metrics::counter!`s report to, serves `/metrics` for `sink` and `load`,
//! and hands ingest a render function for its own `/metrics` route.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use stage::Shutdown;
use tokio::net::TcpListener;

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global recorder. Call once, before any stage starts.
///
/// The exporter keeps each histogram sample until a scrape renders it, so a process no
/// one scrapes (no Prometheus yet, a benchmark) would grow by two samples per request
/// for ever; a thread folds them into the buckets every [`UPKEEP_INTERVAL`] instead.
pub fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &stage::LATENCY_BUCKETS)
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the Prometheus metrics recorder")?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })
        .context("cannot start the metrics upkeep thread")?;
    Ok(handle)
}

/// What ingest calls to answer `GET /metrics`.
pub fn renderer(handle: &PrometheusHandle) -> ingest::RenderMetrics {
    let handle = handle.clone();
    Arc::new(move || handle.render())
}

/// What `GET /healthz` answers: `Err(reason)` makes it 503.
pub type Health = fn() -> Result<(), String>;

/// Serves `GET /metrics` and `GET /healthz` (for `sink` and `load`) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    health: Health,
    shutdown: Shutdown,
) -> Result<()> {
    let render = renderer(&handle);
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            axum::routing::get(move || async move {
                match health() {
                    Ok(()) => (axum::http::StatusCode::OK, "ok".to_owned()),
                    Err(reason) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, reason),
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the /metrics server failed")
}
