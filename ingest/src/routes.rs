//! Routes, layers and handlers of the HTTP API.
//!
//! A handler reads and validates the whole request first; only a request whose every
//! event is valid reaches [`Delivery::publish`], and the 200 is sent after it returns.
//!
//! Who may send, and how much: write keys (compared in constant time, as SHA-256
//! digests); failed keys limited per client (after [`AUTH_FAILURE_BURST`] failures a
//! client is answered 429 for a while, without its keys being checked); the optional
//! per-client rate limit. The client is the socket peer, or — only when the peer is a
//! `--trusted-proxies` address — the nearest untrusted address of `X-Forwarded-For`;
//! IPv6 clients are keyed by their /64, which one host can rotate within.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use governor::{Quota, RateLimiter};
use schemas::{EncodeError, EncodedExposure, Normalizer};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{ClientLimiter, HttpConfig};
use crate::delivery::{Delivery, DurableIn};
use crate::error::{ApiError, ItemError};
use crate::metrics as m;
use crate::payload::{self, Budget};
use crate::spool::SpoolRecord;

mod admission;
mod track;

use admission::KeyCheck;

/// Wrong write keys a client may present before it is refused for a while.
pub const AUTH_FAILURE_BURST: u32 = 10;
/// Wrong write keys a client may present per minute after its burst.
const AUTH_FAILURES_PER_MINUTE: u32 = 10;

pub struct AppState {
    pub normalizer: Normalizer,
    pub delivery: Arc<Delivery>,
    pub http: HttpConfig,
    pub limiter: Option<ClientLimiter>,
    /// Renders the process's metrics for `GET /metrics` (the binary owns the exporter).
    pub render_metrics: m::RenderMetrics,
    /// Request bytes in flight, shared by every request.
    pub budget: Budget,
    /// SHA-256 of each write key: compared in constant time, whatever the key lengths.
    pub write_key_digests: Vec<[u8; 32]>,
    /// Wrong write keys per client.
    pub auth_failures: ClientLimiter,
    /// Clients refused after too many wrong keys, until when.
    pub auth_blocked: Mutex<HashMap<String, Instant>>,
    /// `exposures_ingest_events_accepted_total` by where the events became durable,
    /// registered once rather than looked up per request.
    accepted_in_kafka: metrics::Counter,
    accepted_in_spool: metrics::Counter,
}

impl AppState {
    pub fn new(
        normalizer: Normalizer,
        delivery: Arc<Delivery>,
        http: HttpConfig,
        render_metrics: m::RenderMetrics,
    ) -> AppState {
        let failures =
            Quota::per_minute(NonZeroU32::new(AUTH_FAILURES_PER_MINUTE).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(AUTH_FAILURE_BURST).unwrap_or(NonZeroU32::MIN));
        AppState {
            normalizer,
            delivery,
            limiter: http.rate_limiter(),
            budget: Budget::new(http.connections.max_inflight_bytes),
            write_key_digests: http
                .write_keys
                .iter()
                .map(|key| Sha256::digest(key.as_bytes()).into())
                .collect(),
            auth_failures: RateLimiter::keyed(failures),
            auth_blocked: Mutex::new(HashMap::new()),
            http,
            render_metrics,
            accepted_in_kafka: metrics::counter!(m::EVENTS_ACCEPTED, "path" => DurableIn::Kafka.as_str()),
            accepted_in_spool: metrics::counter!(m::EVENTS_ACCEPTED, "path" => DurableIn::Spool.as_str()),
        }
    }

    /// Forgets clients idle long enough that they are back to a full allowance, so the
    /// limiters' memory stays bounded by recent clients.
    pub fn forget_idle_clients(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.auth_failures.retain_recent();
        self.auth_failures.shrink_to_fit();
        if let Ok(mut blocked) = self.auth_blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            blocked.shrink_to_fit();
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let cors = cors_layer(&state.http.cors_origins);
    Router::new()
        .route("/exposure", post(post_exposure))
        .route("/v1/exposures", post(post_batch))
        .route("/track", post(track::post_track))
        // The JS plugin appends `/track` to its `ingestorHost` as it is: a host given
        // with a trailing slash posts to `//track`.
        .route("//track", post(track::post_track))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/schema", get(json_schema))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound })
        // One middleware for both jobs: each `from_fn` layer costs a few allocations
        // per request.
        .layer(middleware::from_fn(track_and_drain))
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
        // So browser code on another origin can honour a 429/503's Retry-After.
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(24 * 3600))
}

/// Counts and times every request, and lets the client of a refused one read the answer
/// ([`drain_refused_body`]).
async fn track_and_drain(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = route_label(matched.as_ref().map(MatchedPath::as_str));
    let started = Instant::now();
    let response = drain_refused_body(request, next).await;
    let status = status_label(response.status());
    metrics::counter!(m::REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(m::REQUEST_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// Lets the client of a refused request read the answer rather than a reset.
///
/// A handler that refuses a request (401, 413, 415, 429, 503…) drops its body unread.
/// hyper then reads only what is already buffered, writes the answer and closes the
/// socket while the client is still sending; the kernel answers with a reset when it
/// closes a socket with unread data, and when more data arrives after. The reset breaks
/// the client's write (EPIPE/ECONNRESET) — a client that sends its whole body before
/// reading never sees the answer — and may discard the answer from its receive buffer
/// (RFC 9112 §9.6).
///
/// So the body's rest comes back here when the handler drops it; the answer goes out at
/// once, with `Connection: close`, while a task reads and discards the rest
/// ([`payload::discard`]: at most [`payload::DRAIN_MAX_BYTES`], for at most
/// [`payload::DRAIN_TIMEOUT`]). hyper keeps the connection open until the body ends or
/// is dropped, then closes it with nothing unread. A body that timed out (408) is not
/// drained.
async fn drain_refused_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let (body, unread) = payload::hand_back_unread(&parts.headers, body);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let rest = unread.and_then(|mut unread| unread.try_recv().ok());
    if let Some(rest) = rest {
        if response.status() != StatusCode::REQUEST_TIMEOUT {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            tokio::spawn(payload::discard(rest));
        }
    }
    response
}

/// The route label, borrowed from a 'static string for the router's paths, so the usual
/// request allocates no label (measured on the ingest profile).
fn route_label(matched: Option<&str>) -> metrics::SharedString {
    const ROUTES: [&str; 7] = [
        "/exposure",
        "/v1/exposures",
        "/track",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/schema",
    ];
    match matched {
        None => "unmatched".into(),
        Some(path) => ROUTES
            .iter()
            .find(|route| **route == path)
            .map_or_else(|| path.to_owned().into(), |route| (*route).into()),
    }
}

/// The status label: the code's digits, from a 'static table for the codes the API uses.
fn status_label(status: StatusCode) -> metrics::SharedString {
    let code: &'static str = match status.as_u16() {
        200 => "200",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        other => return other.to_string().into(),
    };
    code.into()
}

impl AppState {
    /// One event's text → its Kafka record, counting a rejection by its reason.
    fn encode(&self, event: &str, received_at: DateTime<Utc>) -> Result<EncodedExposure, EncodeError> {
        self.normalizer.encode(event, received_at).inspect_err(|error| {
            if let EncodeError::Invalid(error) = error {
                metrics::counter!(m::EVENTS_REJECTED, "reason" => error.code.as_str()).increment(1);
            }
        })
    }

    async fn publish(&self, records: Vec<SpoolRecord>) -> Result<(), ApiError> {
        let events = records.len();
        match self.delivery.publish(records).await {
            Ok(path) => {
                let accepted = match path {
                    DurableIn::Kafka => &self.accepted_in_kafka,
                    DurableIn::Spool => &self.accepted_in_spool,
                };
                accepted.increment(events as u64);
                Ok(())
            }
            Err(error) => {
                metrics::counter!(m::EVENTS_REJECTED, "reason" => "unavailable").increment(events as u64);
                tracing::error!(%error, events, "refused events: cannot make them durable");
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
) -> Result<Json<Accepted>, ApiError> {
    let event_ids = accept(state, peer, request, Endpoint::Single).await?;
    Ok(Json(Accepted {
        status: "ok",
        event_id: event_ids.into_iter().next().unwrap_or_default(),
    }))
}

/// The answer to `POST /exposure`: serialised straight from a struct, not built as a
/// JSON map per request.
#[derive(serde::Serialize)]
struct Accepted {
    status: &'static str,
    event_id: String,
}

/// `POST /v1/exposures`: a JSON array or NDJSON; all or nothing.
async fn post_batch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let event_ids = accept(state, peer, request, Endpoint::Batch).await?;
    Ok(Json(json!({"accepted": event_ids.len(), "event_ids": event_ids})))
}

/// Admits, reads, decodes and validates a request, then makes its events durable:
/// returns their event ids once they are.
async fn accept(
    state: Arc<AppState>,
    peer: SocketAddr,
    request: Request,
    endpoint: Endpoint,
) -> Result<Vec<String>, ApiError> {
    state.admit(&request, peer, KeyCheck::WriteKey)?;
    let limit = match endpoint {
        Endpoint::Single => state.http.max_event_bytes,
        Endpoint::Batch => state.http.max_batch_bytes,
    };
    let (parts, body) = request.into_parts();
    let deadline = state.http.connections.body_read_timeout;
    let body = payload::read_body(&parts.headers, body, limit, &state.budget, deadline).await?;
    let parsing = state.clone();
    let bytes = body.bytes.clone();
    let received_at = Utc::now();
    let encoded = payload::off_the_async_workers(bytes.len(), move || {
        decode_events(endpoint, &bytes, &parsing.http, &|event| {
            parsing.encode(event, received_at)
        })
    })
    .await?;
    let (event_ids, records) = encoded.into_iter().map(into_spool_record).unzip();
    state.publish(records).await?;
    drop(body); // the budget is held until the events are durable
    Ok(event_ids)
}

/// An encoded event → its id (for the answer) and its Kafka record.
fn into_spool_record(event: EncodedExposure) -> (String, SpoolRecord) {
    let record = SpoolRecord {
        key: event.key.into_bytes(),
        timestamp_ms: event.received_at.timestamp_millis(),
        value: event.value,
    };
    (event.event_id, record)
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

/// `GET /v1/schema`: the JSON Schema of one exposure under this process's limits. Public
/// like `/healthz`: no write key, and CORS as on every route.
async fn json_schema(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, schemas::json_schema::MEDIA_TYPE)],
        schemas::json_schema::exposure_schema_text(&state.normalizer.limits),
    )
        .into_response()
}

/// Which endpoint a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /exposure`: one object.
    Single,
    /// `POST /v1/exposures`: an array or NDJSON, all or nothing.
    Batch,
}

/// A decoded body → the events it carries, validated and encoded; all or nothing.
///
/// Each event is encoded from its raw text. JSON errors are answered as the whole
/// body's parse into values words them, which is what the API answered before events
/// were encoded from their text: a raw parse accepts lone surrogate escapes and any
/// nesting, and stops at other points. Only bodies that may be refused pay that second
/// parse.
pub fn decode_events(
    endpoint: Endpoint,
    body: &[u8],
    http: &HttpConfig,
    encode: &dyn Fn(&str) -> Result<EncodedExposure, EncodeError>,
) -> Result<Vec<EncodedExposure>, ApiError> {
    let whole_body = || match endpoint {
        Endpoint::Single => payload::parse_single::<Value>(body).map(|_| ()),
        Endpoint::Batch => payload::parse_batch::<Value>(body, http.max_batch_events).map(|_| ()),
    };
    let malformed = |raw_error: ApiError| whole_body().err().unwrap_or(raw_error);
    let json_error = |error: ApiError| match error {
        ApiError::MalformedJson(_) => malformed(error),
        other => other,
    };
    let encode_error = |error: serde_json::Error| malformed(ApiError::MalformedJson(error.to_string()));
    if endpoint == Endpoint::Single {
        // The encoder parses the event itself, and refuses trailing text as a parse of the
        // whole body does: no parse of the body before it (a tenth of a single event's
        // CPU). Text that is not UTF-8 is answered as the whole body's parse words it.
        let event =
            std::str::from_utf8(body).map_err(|_| malformed(ApiError::MalformedJson(String::new())))?;
        return match encode(event) {
            Ok(encoded) => Ok(vec![encoded]),
            Err(EncodeError::Invalid(error)) => Err(ApiError::InvalidEvent(error)),
            Err(EncodeError::Malformed(error)) => Err(encode_error(error)),
        };
    }
    let events: Vec<&RawValue> = payload::parse_batch(body, http.max_batch_events).map_err(json_error)?;
    // In an array, the array's own level counts toward serde_json's limit of 128 levels,
    // which parsing one event alone does not see: an event that might reach it is
    // decided by the whole body.
    if body.trim_ascii_start().starts_with(b"[")
        && events.iter().any(|event| might_nest_past_the_limit(event.get()))
    {
        whole_body()?;
    }
    let mut encoded = Vec::with_capacity(events.len());
    let mut failures = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        match encode(event.get()) {
            Ok(event) => encoded.push(event),
            Err(EncodeError::Invalid(error)) => failures.push(ItemError { index, error }),
            Err(EncodeError::Malformed(error)) => return Err(encode_error(error)),
        }
    }
    if failures.is_empty() {
        Ok(encoded)
    } else {
        Err(ApiError::InvalidBatch(failures))
    }
}

/// Whether `event` has enough opening brackets to nest 127 levels (counted loosely:
/// brackets inside strings count too, which only costs a second parse).
fn might_nest_past_the_limit(event: &str) -> bool {
    event.bytes().filter(|byte| matches!(byte, b'[' | b'{')).count() >= 127
}
