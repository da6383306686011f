//! Request bodies: media type, size cap, gzip inflation with a cap on the inflated
//! size, and the JSON shapes of the two endpoints (one object; an array or NDJSON).
//!
//! **Memory is bounded by construction.** A body is read frame by frame and inflated
//! chunk by chunk, each chunk first reserved from the process-wide [`Budget`] of bytes
//! in flight, and parsing reserves its overhead too; when the budget is spent the
//! request is answered 503 with Retry-After instead of growing the process. A batch is
//! parsed by a visitor that stops at the event limit, so `[0,0,0,…]` never becomes
//! millions of values. Inflating and parsing a large body runs on the blocking pool,
//! off the async workers.
//!
//! **A refused body is still read to its end, within bounds** ([`hand_back_unread`],
//! [`discard`]), so that a client that writes its whole body before reading gets the
//! answer rather than a reset.

use std::io::Read;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::Deserialize;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

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

/// Bytes reserved per JSON value (and object key) a body can hold, for parsing it: a
/// `serde_json::Value`, its number or string on the heap (numbers are kept as text,
/// verbatim), its map entry, and the slack of a growing array. `[0,0,0,…]` is ~40 times
/// its text once parsed, so the reservation counts values, not bytes.
const BYTES_PER_VALUE: usize = 96;

/// Gzip is inflated in chunks of this size, each reserved before it is kept.
const INFLATE_CHUNK: usize = 64 * 1024;

/// Bodies at least this large are inflated and parsed on the blocking pool.
pub const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// Most bytes of a refused request's body read and thrown away after the answer. A body
/// declared larger is not read at all: it could not end within the bounds.
pub const DRAIN_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Longest the rest of a refused request's body is read for, however slowly it comes.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The process-wide budget of request bytes in flight (`--max-inflight-bytes`).
#[derive(Debug, Clone)]
pub struct Budget(Arc<Semaphore>);

/// Bytes a request holds from the [`Budget`]; returned when dropped.
#[derive(Debug, Default)]
pub struct Reservation(Option<OwnedSemaphorePermit>);

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Adds `bytes` to `reservation`, or refuses (503) when the budget cannot hold them.
    pub fn reserve(&self, reservation: &mut Reservation, bytes: usize) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        let bytes = u32::try_from(bytes).map_err(|_| ApiError::Overloaded)?;
        let permit = self
            .0
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| ApiError::Overloaded)?;
        match &mut reservation.0 {
            Some(held) => held.merge(permit),
            None => reservation.0 = Some(permit),
        }
        Ok(())
    }
}

/// A request body, decoded, with the budget it holds until dropped.
pub struct ReadBody {
    pub bytes: Bytes,
    _reservation: Reservation,
}

/// Reads the body, refusing unsupported media types and encodings and anything larger
/// than `limit` bytes, before or after gzip inflation; reserves what it keeps. The whole
/// body must arrive within `deadline` (`--body-read-timeout`): a deadline per frame, as
/// tower-http's body timeout has, restarts with every byte a slow client trickles.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    budget: &Budget,
    deadline: std::time::Duration,
) -> Result<ReadBody, ApiError> {
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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit, detail: "" });
    }
    let mut reservation = Reservation::default();
    let mut raw = BytesMut::new();
    let mut body = body;
    let receiving = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(body_error)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if raw.len() + data.len() > limit {
                return Err(ApiError::BodyTooLarge { limit, detail: "" });
            }
            budget.reserve(&mut reservation, data.len())?;
            raw.extend_from_slice(&data);
        }
        Ok(())
    };
    tokio::time::timeout(deadline, receiving)
        .await
        .map_err(|_| ApiError::BodyTimeout)??;
    let raw = raw.freeze();
    if !gzip {
        budget.reserve(&mut reservation, parse_cost(&raw))?;
        return Ok(ReadBody {
            bytes: raw,
            _reservation: reservation,
        });
    }
    // Gzip of JSON inflates several times over: size the work by what it may become.
    let inflated_hint = raw.len().saturating_mul(8).min(limit);
    let budget = budget.clone();
    let inflate = move || {
        let inflated = inflate(&raw, limit, &budget, &mut reservation)?;
        budget.reserve(&mut reservation, parse_cost(&inflated))?;
        Ok(ReadBody {
            bytes: inflated,
            _reservation: reservation,
        })
    };
    off_the_async_workers(inflated_hint, inflate).await
}

/// An upper bound on the memory parsing `json` takes beyond its text: every value and
/// key is delimited by a comma, a colon or an opening bracket outside strings (or is the
/// one top-level value), so counting those bounds how many there are.
fn parse_cost(json: &[u8]) -> usize {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b':' | b'[' | b'{' | b'\n' => values += 1,
                _ => {}
            }
        }
    }
    values.saturating_mul(BYTES_PER_VALUE)
}

/// Runs `work` on the blocking pool when `size` makes it long, else here.
pub async fn off_the_async_workers<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if size < BLOCKING_THRESHOLD {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::Overloaded)?
}

fn inflate(
    raw: &[u8],
    limit: usize,
    budget: &Budget,
    reservation: &mut Reservation,
) -> Result<Bytes, ApiError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let mut inflated = Vec::new();
    let mut chunk = vec![0u8; INFLATE_CHUNK];
    loop {
        let read = decoder
            .read(&mut chunk)
            .map_err(|e| ApiError::CorruptGzip(e.to_string()))?;
        if read == 0 {
            return Ok(Bytes::from(inflated));
        }
        if inflated.len() + read > limit {
            return Err(ApiError::BodyTooLarge {
                limit,
                detail: " after gzip inflation",
            });
        }
        budget.reserve(reservation, read)?;
        inflated.extend_from_slice(&chunk[..read]);
    }
}

/// Wraps a request's body so that, dropped unread by a handler that refused the
/// request, its rest comes back through the returned channel instead of being left on
/// the wire — where hyper would close the connection on it, and the kernel answer the
/// client's next bytes with a reset. `None` (and `body` as it was) when there is nothing
/// worth reading: no body, one declared larger than [`DRAIN_MAX_BYTES`], or one the
/// client only sends after `100 Continue` (hyper sends that on the first read, so an
/// unread body was never sent).
pub fn hand_back_unread(headers: &HeaderMap, body: Body) -> (Body, Option<oneshot::Receiver<Body>>) {
    if body.is_end_stream() || body.size_hint().lower() > DRAIN_MAX_BYTES {
        return (body, None);
    }
    let waits_for_continue = headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (back, rest) = oneshot::channel();
    let wrapped = HandsBack {
        body: Some(body),
        ended: false,
        unsent: waits_for_continue,
        back: Some(back),
    };
    (Body::new(wrapped), Some(rest))
}

/// Reads and throws away what is left of a refused request's body — at most
/// [`DRAIN_MAX_BYTES`], for at most [`DRAIN_TIMEOUT`] — then drops it, which lets hyper
/// close the connection. Nothing is kept: only hyper's bounded read buffer holds bytes.
pub async fn discard(mut body: Body) {
    let reading = async move {
        let mut left = DRAIN_MAX_BYTES;
        // The end, or an error (the client went away): either way nothing is left to read.
        while let Some(Ok(frame)) = body.frame().await {
            let read = frame.data_ref().map_or(0, |data| data.len() as u64);
            left = match left.checked_sub(read) {
                Some(left) => left,
                None => return false,
            };
        }
        true
    };
    if !tokio::time::timeout(DRAIN_TIMEOUT, reading)
        .await
        .unwrap_or(false)
    {
        tracing::debug!("closing on a refused body that did not end within the drain bounds");
    }
}

/// A request body that, dropped before its end, hands its rest back (see
/// [`hand_back_unread`]).
struct HandsBack {
    body: Option<Body>,
    /// Its end, or an error, was read: nothing is left on the wire.
    ended: bool,
    /// The client waits for `100 Continue`, not sent until the body is first read.
    unsent: bool,
    back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for HandsBack {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        this.unsent = false;
        let frame = ready!(Pin::new(body).poll_frame(cx));
        this.ended |= !matches!(frame, Some(Ok(_)));
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map(HttpBody::size_hint).unwrap_or_default()
    }
}

impl Drop for HandsBack {
    fn drop(&mut self) {
        if let (Some(body), Some(back)) = (self.body.take(), self.back.take()) {
            if !self.ended && !self.unsent && !body.is_end_stream() {
                let _ = back.send(body);
            }
        }
    }
}

/// A body that failed to arrive: too slow (408), or broken off.
fn body_error(error: axum::Error) -> ApiError {
    ApiError::MalformedJson(format!("could not read the body: {error}"))
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

/// `POST /exposure`: exactly one JSON value (its raw text, or parsed).
pub fn parse_single<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// `POST /v1/exposures`: a JSON array, or NDJSON (one value per line; blank lines are
/// skipped). A single object is a batch of one. Counting happens while parsing: the
/// value after the `max_events`-th is never built. Each event is `T`: its raw text (what
/// ingest encodes from), or a parsed value.
pub fn parse_batch<'a, T: Deserialize<'a>>(body: &'a [u8], max_events: usize) -> Result<Vec<T>, ApiError> {
    let text = body.trim_ascii_start();
    let events: Vec<T> = if text.starts_with(b"[") {
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let events = BoundedEvents {
            max: max_events,
            event: PhantomData,
        }
        .deserialize(&mut deserializer)
        .and_then(|events| deserializer.end().map(|()| events))
        .map_err(|e| match e.to_string() {
            message if message.starts_with(TOO_MANY_EVENTS) => ApiError::TooManyEvents {
                count: max_events + 1,
                limit: max_events,
            },
            message => ApiError::MalformedJson(message),
        })?;
        events
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
    Ok(events)
}

/// The elements of a JSON array, as their texts, found by bracket and string structure
/// alone: for a body the full parse refused, so that the events in it can still be judged
/// one by one (`/track`: one event that is not JSON, like Python's `NaN`,
/// costs only itself). `None` when the text is not an array of that shape at all —
/// unbalanced, unterminated, an empty element — which is the body's fault, not an event's.
pub fn split_array(body: &[u8]) -> Option<Vec<&str>> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let text = std::str::from_utf8(body).ok()?.trim_matches(is_space);
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let mut elements = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0usize, false, false, 0);
    for (at, byte) in inner.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => {
                elements.push(inner[start..at].trim_matches(is_space));
                start = at + 1;
            }
            _ => {}
        }
    }
    if in_string || depth != 0 {
        return None;
    }
    let last = inner[start..].trim_matches(is_space);
    if !last.is_empty() || !elements.is_empty() {
        elements.push(last);
    }
    (!elements.iter().any(|element| element.is_empty())).then_some(elements)
}

/// The marker of the visitor's "too many events" error.
const TOO_MANY_EVENTS: &str = "too many events";

/// A JSON array of at most `max` values, refused as soon as one more begins.
struct BoundedEvents<T> {
    max: usize,
    event: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for BoundedEvents<T> {
    type Value = Vec<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedEvents<T> {
    type Value = Vec<T>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "an array of at most {} events", self.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        loop {
            if events.len() == self.max {
                // One more element (of any kind) is too many; do not build it.
                return match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => Err(A::Error::custom(TOO_MANY_EVENTS)),
                    None => Ok(events),
                };
            }
            match seq.next_element::<T>()? {
                Some(event) => events.push(event),
                None => return Ok(events),
            }
        }
    }
}

#[cfg(test)]
mod tests;
