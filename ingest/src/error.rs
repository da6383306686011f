//! The API's error type and its mapping to HTTP responses (DESIGN.md §3): bad input is
//! always a 4xx, and only "cannot make it durable right now" is a 5xx (503, retryable).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemas::FieldError;
use serde_json::json;

use crate::delivery::DeliveryError;

/// Seconds a client should wait after a 503.
const RETRY_AFTER_SECONDS: u32 = 5;

/// One invalid item of a batch.
#[derive(Debug, Clone)]
pub struct ItemError {
    pub index: usize,
    pub error: FieldError,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidEvent(FieldError),
    #[error("{} of the batch's events are invalid; nothing was accepted", .0.len())]
    InvalidBatch(Vec<ItemError>),
    #[error("the batch is empty")]
    EmptyBatch,
    #[error("request body exceeds {limit} bytes{detail}")]
    BodyTooLarge { limit: usize, detail: &'static str },
    #[error("the batch has {count} events; at most {limit} are allowed per request")]
    TooManyEvents { count: usize, limit: usize },
    #[error("unsupported Content-Type '{0}': send application/json (or text/plain, application/x-ndjson); with curl add -H 'Content-Type: application/json'")]
    UnsupportedMediaType(String),
    #[error("unsupported Content-Encoding '{0}': send gzip or no encoding")]
    UnsupportedEncoding(String),
    #[error("the gzip body is corrupt: {0}")]
    CorruptGzip(String),
    #[error("missing or unknown write key: send 'Authorization: Bearer KEY' or '?key=KEY'")]
    Unauthorized,
    #[error(
        "client_key is missing or not on this server's allow-list (--client-keys): set the \
         GrowthBook SDK's clientKey to one of the listed keys"
    )]
    ClientKeyRefused,
    #[error(
        "this server requires write keys (--write-keys), which GrowthBook's tracking plugin \
         cannot send: list the SDK client keys in --client-keys to open /track to them"
    )]
    TrackNeedsClientKeys,
    #[error("too many requests from this client; retry after the Retry-After delay")]
    RateLimited,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("no such endpoint: POST /exposure, /v1/exposures or /track; GET /healthz, /readyz or /metrics")]
    NotFound,
    #[error("events cannot be made durable right now: {0}. Retry later.")]
    Unavailable(#[from] DeliveryError),
    #[error("the server is at its limit of request bytes in flight (--max-inflight-bytes); retry after the Retry-After delay")]
    Overloaded,
    #[error("the request body did not arrive within the body-read timeout (--body-read-timeout)")]
    BodyTimeout,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidEvent(_)
            | ApiError::InvalidBatch(_)
            | ApiError::EmptyBatch
            | ApiError::CorruptGzip(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::TrackNeedsClientKeys => StatusCode::UNAUTHORIZED,
            ApiError::ClientKeyRefused => StatusCode::FORBIDDEN,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } | ApiError::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Unavailable(_) | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Stable machine-readable code of the `error.code` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidEvent(e) => e.code.as_str(),
            ApiError::InvalidBatch(_) => "invalid_batch",
            ApiError::EmptyBatch => "empty_batch",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::TooManyEvents { .. } => "too_many_events",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::UnsupportedEncoding(_) => "unsupported_encoding",
            ApiError::CorruptGzip(_) => "corrupt_gzip",
            ApiError::Unauthorized | ApiError::TrackNeedsClientKeys => "unauthorized",
            ApiError::ClientKeyRefused => "client_key_refused",
            ApiError::RateLimited => "rate_limited",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::NotFound => "not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Overloaded => "overloaded",
            ApiError::BodyTimeout => "body_timeout",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let field = match &self {
            ApiError::InvalidEvent(e) => e.field.clone(),
            _ => None,
        };
        let mut body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        if let Some(field) = field {
            body["error"]["field"] = json!(field);
        }
        if let ApiError::InvalidBatch(items) = &self {
            body["error"]["indexes"] = json!(items.iter().map(|item| item.index).collect::<Vec<_>>());
            body["failures"] = items
                .iter()
                .map(|item| {
                    json!({
                        "index": item.index,
                        "code": item.error.code.as_str(),
                        "field": item.error.field,
                        "message": item.error.message,
                    })
                })
                .collect();
        }
        let mut response = (status, Json(body)).into_response();
        let retry_after = match status {
            StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECONDS),
            StatusCode::TOO_MANY_REQUESTS => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
