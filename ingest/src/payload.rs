//! Request bodies: media type, size cap, gzip inflation with a cap on the inflated
//! size, and the JSON shapes of the two endpoints (one object; an array or NDJSON).

use std::io::Read;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use crate::error::ApiError;

/// Media types accepted as JSON. `text/plain` is what `navigator.sendBeacon` sends for a
/// string body; a missing Content-Type is read as JSON too.
const JSON_MEDIA_TYPES: [&str; 5] = [
    "application/json",
    "text/plain",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
];

/// Reads the body, refusing unsupported media types and encodings and anything larger
/// than `limit` bytes, before or after gzip inflation.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    check_content_type(headers)?;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(encoding) if encoding.is_empty() || encoding == "identity" => false,
        Some(encoding) if encoding == "gzip" || encoding == "x-gzip" => true,
        Some(other) => return Err(ApiError::UnsupportedEncoding(other)),
    };
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(ApiError::BodyTooLarge { limit, detail: "" });
        }
        Err(error) => {
            return Err(ApiError::MalformedJson(format!(
                "could not read the body: {error}"
            )))
        }
    };
    if !gzip {
        return Ok(raw);
    }
    let mut inflated = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| ApiError::CorruptGzip(e.to_string()))?;
    if inflated.len() > limit {
        return Err(ApiError::BodyTooLarge {
            limit,
            detail: " after gzip inflation",
        });
    }
    Ok(Bytes::from(inflated))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("?");
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = JSON_MEDIA_TYPES.contains(&essence.as_str())
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.to_owned()))
    }
}

/// `POST /exposure`: exactly one JSON value.
pub fn parse_single(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// `POST /v1/exposures`: a JSON array, or NDJSON (one value per line; blank lines are
/// skipped). A single object is a batch of one.
pub fn parse_batch(body: &[u8], max_events: usize) -> Result<Vec<Value>, ApiError> {
    let text = body.trim_ascii_start();
    let events: Vec<Value> = if text.starts_with(b"[") {
        serde_json::from_slice(text).map_err(|e| ApiError::MalformedJson(e.to_string()))?
    } else {
        let mut events = Vec::new();
        for (line_number, line) in text.split(|b| *b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            if events.len() == max_events {
                return Err(ApiError::TooManyEvents {
                    count: events.len() + 1,
                    limit: max_events,
                });
            }
            let event = serde_json::from_slice(line).map_err(|e| {
                ApiError::MalformedJson(format!(
                    "NDJSON line {} (event index {}): {e}",
                    line_number + 1,
                    events.len()
                ))
            })?;
            events.push(event);
        }
        events
    };
    if events.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    if events.len() > max_events {
        return Err(ApiError::TooManyEvents {
            count: events.len(),
            limit: max_events,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ndjson_and_single_object_batches() {
        assert_eq!(parse_batch(b" [{\"a\":1},{\"a\":2}]", 10).unwrap().len(), 2);
        assert_eq!(parse_batch(b"{\"a\":1}\n\n{\"a\":2}\r\n", 10).unwrap().len(), 2);
        assert_eq!(parse_batch(b"{\"a\":1}", 10).unwrap().len(), 1);
    }

    #[test]
    fn batch_errors() {
        assert!(matches!(parse_batch(b"[]", 10), Err(ApiError::EmptyBatch)));
        assert!(matches!(parse_batch(b"  \n", 10), Err(ApiError::EmptyBatch)));
        assert!(matches!(
            parse_batch(b"[1,2,3]", 2),
            Err(ApiError::TooManyEvents { count: 3, limit: 2 })
        ));
        assert!(matches!(
            parse_batch(b"{}\n{}\n{}", 2),
            Err(ApiError::TooManyEvents { .. })
        ));
        match parse_batch(b"{}\n{oops}\n", 10) {
            Err(ApiError::MalformedJson(message)) => {
                assert!(message.contains("line 2 (event index 1)"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_ok());
        for ok in [
            "application/json",
            "text/plain;charset=UTF-8",
            "application/x-ndjson",
            "application/vnd.api+json",
        ] {
            headers.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(check_content_type(&headers).is_ok(), "{ok}");
        }
        for bad in [
            "application/xml",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
        ] {
            headers.insert(header::CONTENT_TYPE, bad.parse().unwrap());
            assert!(
                matches!(
                    check_content_type(&headers),
                    Err(ApiError::UnsupportedMediaType(_))
                ),
                "{bad}"
            );
        }
    }
}
