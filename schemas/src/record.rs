//! The normalised exposure record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One experiment exposure after validation: what ingest produces to Kafka (as JSON).
/// The sink reads that JSON straight into a [`LakeRow`](crate::LakeRow) instead, without
/// building this record.
///
/// JSON is the wire encoding on purpose: the record carries two free-form JSON objects
/// (`attributes`, `extra`) that are stored verbatim, so a binary schema would only wrap
/// JSON in JSON; and anyone can read the topic with a stock consumer while debugging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Client-supplied id (UUIDs are canonicalised to lowercase hyphenated form) or a
    /// server-generated UUIDv7. The warehouse deduplicates on it.
    pub event_id: String,
    /// The data-source user id GrowthBook joins on (`user_id` is accepted as an alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    pub experiment_id: String,
    /// Always a string: SDKs send the variation key as a string or an integer.
    pub variation_id: String,
    /// The client's `timestamp` if it lies in the accepted skew window, else `received_at`.
    pub exposed_at: DateTime<Utc>,
    /// When the ingest API received the event (microsecond precision).
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The SDK attributes object, verbatim except for the `forwarded_for` privacy policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    /// Top-level fields this version does not know, kept rather than dropped; also the
    /// client `timestamp` when it was outside the skew window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
}

impl Exposure {
    /// The Kafka message key: the user id, so one user's exposures stay in order on one
    /// partition. Validation guarantees one of the two is present.
    pub fn partition_key(&self) -> &str {
        self.ds_user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .unwrap_or_default()
    }

    /// The record as the Kafka message value.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, timestamps and JSON maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
