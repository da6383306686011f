//! `POST /track?client_key=KEY`: GrowthBook's tracking plugin as a client
//! ([`crate::tracking`] has the wire contract).
//!
//! The plugin never retries, so the batch is not all or nothing: each event is judged on
//! its own, the good ones are made durable (200 only once they are, as on every route)
//! and the bad ones are counted and named in the answer. A body that is not a JSON array
//! (or NDJSON) of events is still refused whole, with a 4xx, like `/v1/exposures`.
//! Limits, budgets and timeouts are those of `/v1/exposures`; write keys are not asked
//! for (the plugin cannot send one) and `--client-keys` decides instead.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::Json;
use chrono::{DateTime, Utc};
use schemas::tracked::{EVENTS, FEATURE_USAGE};
use schemas::{EncodedExposure, FieldError};
use serde_json::value::RawValue;

use super::admission::KeyCheck;
use super::{into_spool_record, AppState};
use crate::error::ApiError;
use crate::metrics as m;
use crate::payload;
use crate::spool::SpoolRecord;
use crate::tracking::{self, Origin, Tracked};

/// The answer to a `/track` batch: how many events were kept, and why the others were not.
#[derive(Debug, serde::Serialize)]
pub(super) struct TrackAnswer {
    accepted: usize,
    rejected: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<TrackFailure>,
}

#[derive(Debug, serde::Serialize)]
struct TrackFailure {
    index: usize,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    message: String,
}

impl From<FieldError> for TrackFailure {
    fn from(error: FieldError) -> TrackFailure {
        TrackFailure {
            index: 0,
            code: error.code.as_str(),
            field: error.field,
            message: error.message,
        }
    }
}

pub(super) async fn post_track(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Json<TrackAnswer>, ApiError> {
    state.admit(&request, peer, KeyCheck::ClientKey)?;
    let environment = state.client_environment(&request)?;
    let (parts, body) = request.into_parts();
    let deadline = state.http.connections.body_read_timeout;
    let limit = state.http.max_batch_bytes;
    let body = payload::read_body(&parts.headers, body, limit, &state.budget, deadline).await?;
    let judging = state.clone();
    let bytes = body.bytes.clone();
    let received_at = Utc::now();
    let (records, failures) = payload::off_the_async_workers(bytes.len(), move || {
        let max_events = judging.http.max_batch_events;
        let events: Vec<&str> = match payload::parse_batch::<&RawValue>(&bytes, max_events) {
            Ok(events) => events.iter().map(|event| event.get()).collect(),
            // An event that is not JSON (Python's json.dumps writes `NaN` for a float
            // nan) is judged alone when the array around it is whole.
            Err(ApiError::MalformedJson(message)) => {
                let events = payload::split_array(&bytes).ok_or(ApiError::MalformedJson(message))?;
                if events.len() > max_events {
                    return Err(ApiError::TooManyEvents {
                        count: events.len(),
                        limit: max_events,
                    });
                }
                events
            }
            Err(error) => return Err(error),
        };
        if events.is_empty() {
            return Err(ApiError::EmptyBatch);
        }
        let origin = Origin {
            environment: environment.as_deref(),
        };
        let mut records = Vec::with_capacity(events.len());
        let mut failures = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let (kind, judged) = tracking::judge(event, origin);
            let kind = kind.as_str();
            match judged
                .map_err(TrackFailure::from)
                .and_then(|tracked| judging.keep(tracked, received_at))
            {
                Ok(record) => {
                    metrics::counter!(m::TRACK_EVENTS, "kind" => kind, "outcome" => "accepted").increment(1);
                    records.push(record);
                }
                Err(failure) => {
                    metrics::counter!(m::TRACK_EVENTS, "kind" => kind, "outcome" => "rejected").increment(1);
                    metrics::counter!(m::EVENTS_REJECTED, "reason" => failure.code).increment(1);
                    failures.push(TrackFailure { index, ..failure });
                }
            }
        }
        Ok((records, failures))
    })
    .await?;
    let accepted = records.len();
    if accepted > 0 {
        state.publish(records).await?;
    }
    drop(body); // the budget is held until the events are durable
    Ok(Json(TrackAnswer {
        accepted,
        rejected: failures.len(),
        failures,
    }))
}

impl AppState {
    /// The environment of the request's `client_key`, checked against `--client-keys`;
    /// `None` when there is no allow-list.
    fn client_environment(&self, request: &Request) -> Result<Option<String>, ApiError> {
        let keys = &self.http.client_keys;
        if keys.is_empty() {
            if !self.write_key_digests.is_empty() {
                return Err(ApiError::TrackNeedsClientKeys);
            }
            return Ok(None);
        }
        // The plugins put the key in the URL as it is, without percent-encoding it.
        let client_key = request.uri().query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find_map(|(name, value)| (name == "client_key").then(|| value.into_owned()))
        });
        let environment = client_key
            .and_then(|client_key| keys.iter().find(|entry| entry.key == client_key))
            .map(|entry| entry.environment.clone());
        match environment {
            Some(environment) => Ok(Some(environment)),
            None => {
                metrics::counter!(m::EVENTS_REJECTED, "reason" => "client_key_refused").increment(1);
                Err(ApiError::ClientKeyRefused)
            }
        }
    }

    /// A judged event → its Kafka record, or why it is not kept.
    fn keep(&self, tracked: Tracked, received_at: DateTime<Utc>) -> Result<SpoolRecord, TrackFailure> {
        let row = match tracked {
            // The exposure is a map already: normalised as it is, not written out as text
            // for the encoder to parse back (its output is byte for byte the same).
            Tracked::Exposure(exposure) => {
                let exposure = self
                    .normalizer
                    .normalize(serde_json::Value::Object(exposure), received_at)?;
                return Ok(into_spool_record(EncodedExposure::from(&exposure)).1);
            }
            Tracked::FeatureEvaluation(columns) => {
                self.normalizer
                    .tracked_row(&FEATURE_USAGE, columns, received_at)?
            }
            Tracked::Custom(columns) => self.normalizer.tracked_row(&EVENTS, columns, received_at)?,
        };
        Ok(SpoolRecord {
            key: row.partition_key().as_bytes().to_vec(),
            timestamp_ms: received_at.timestamp_millis(),
            value: row.to_kafka_value(),
        })
    }
}
