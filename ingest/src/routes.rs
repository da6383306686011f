//! Routes, layers and handlers of the HTTP API (DESIGN.md §3).
//!
//! A handler reads and validates the whole request first; only a request whose every
//! event is valid reaches [`Delivery::publish`], and the 200 is sent after it returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use schemas::{Exposure, Normalizer};
use serde_json::{json, Value};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{ClientLimiter, HttpConfig};
use crate::delivery::Delivery;
use crate::error::{ApiError, ItemError};
use crate::metrics as m;
use crate::payload;

pub struct AppState {
    pub normalizer: Normalizer,
    pub delivery: Arc<Delivery>,
    pub http: HttpConfig,
    pub limiter: Option<ClientLimiter>,
    /// Renders the process's metrics for `GET /metrics` (the binary owns the exporter).
    pub render_metrics: m::RenderMetrics,
}

pub fn router(state: Arc<AppState>) -> Router {
    let cors = cors_layer(&state.http.cors_origins);
    Router::new()
        .route("/exposure", post(post_exposure))
        .route("/v1/exposures", post(post_batch))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(track_requests))
        .layer(cors)
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o.trim() == "*") || origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::AUTHORIZATION,
            HeaderName::from_static("x-requested-with"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}

async fn track_requests(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(m::REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(m::REQUEST_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

impl AppState {
    /// Checks the write key (when keys are configured) and the client's rate limit.
    fn admit(&self, request: &Request, peer: SocketAddr) -> Result<(), ApiError> {
        let key = self.authorize(request)?;
        if let Some(limiter) = &self.limiter {
            let client = key.unwrap_or_else(|| peer.ip().to_string());
            if limiter.check_key(&client).is_err() {
                metrics::counter!(m::EVENTS_REJECTED, "reason" => "rate_limited").increment(1);
                return Err(ApiError::RateLimited);
            }
        }
        Ok(())
    }

    /// The write key the request presented, if keys are configured and it is known.
    fn authorize(&self, request: &Request) -> Result<Option<String>, ApiError> {
        if self.http.write_keys.is_empty() {
            return Ok(None);
        }
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| k.trim().to_owned());
        let query = request.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes()).find_map(|(k, v)| (k == "key").then(|| v.into_owned()))
        });
        [bearer, query]
            .into_iter()
            .flatten()
            .find(|key| self.http.write_keys.contains(key))
            .map(Some)
            .ok_or(ApiError::Unauthorized)
    }

    fn normalize(&self, event: Value) -> Result<Exposure, schemas::FieldError> {
        self.normalizer.normalize(event, Utc::now()).inspect_err(|error| {
            metrics::counter!(m::EVENTS_REJECTED, "reason" => error.code.as_str()).increment(1);
        })
    }

    async fn publish(&self, events: &[Exposure]) -> Result<(), ApiError> {
        match self.delivery.publish(events).await {
            Ok(path) => {
                metrics::counter!(m::EVENTS_ACCEPTED, "path" => path.as_str()).increment(events.len() as u64);
                Ok(())
            }
            Err(error) => {
                metrics::counter!(m::EVENTS_REJECTED, "reason" => "unavailable")
                    .increment(events.len() as u64);
                tracing::error!(%error, events = events.len(), "refused events: cannot make them durable");
                Err(error.into())
            }
        }
    }
}

/// `POST /exposure`: one object, exactly as the SDK callbacks send it.
async fn post_exposure(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    state.admit(&request, peer)?;
    let (parts, body) = request.into_parts();
    let body = payload::read_body(&parts.headers, body, state.http.max_event_bytes).await?;
    let event = payload::parse_single(&body)?;
    let exposure = state.normalize(event).map_err(ApiError::InvalidEvent)?;
    state.publish(std::slice::from_ref(&exposure)).await?;
    Ok(Json(json!({"status": "ok", "event_id": exposure.event_id})))
}

/// `POST /v1/exposures`: a JSON array or NDJSON; all or nothing.
async fn post_batch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    state.admit(&request, peer)?;
    let (parts, body) = request.into_parts();
    let body = payload::read_body(&parts.headers, body, state.http.max_batch_bytes).await?;
    let events = payload::parse_batch(&body, state.http.max_batch_events)?;
    let mut exposures = Vec::with_capacity(events.len());
    let mut failures = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        match state.normalize(event) {
            Ok(exposure) => exposures.push(exposure),
            Err(error) => failures.push(ItemError { index, error }),
        }
    }
    if !failures.is_empty() {
        return Err(ApiError::InvalidBatch(failures));
    }
    state.publish(&exposures).await?;
    let event_ids: Vec<&str> = exposures.iter().map(|e| e.event_id.as_str()).collect();
    Ok(Json(json!({"accepted": exposures.len(), "event_ids": event_ids})))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.delivery.is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": "Kafka is unreachable and the spool is disabled or full"})),
        )
            .into_response()
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        (state.render_metrics)(),
    )
        .into_response()
}
