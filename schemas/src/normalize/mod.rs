//! From the JSON an SDK callback sends to an [`Exposure`], per DESIGN.md §3.
//!
//! Rules, in the order they are checked:
//! - the event must be a JSON object;
//! - user: at least one of `ds_user_id`, `anonymous_id`, `user_id`, each a non-empty
//!   string (integers are accepted and stored as strings) of at most 256 bytes; `null` or
//!   `""` count as absent. `user_id` becomes `ds_user_id` when that is absent, otherwise
//!   it is kept in `extra`;
//! - `experiment_id`: non-empty string ≤ 256 bytes; `variation_id`: non-empty string
//!   ≤ 256 bytes or an integer (stored as its decimal string);
//! - `attributes`: optional object, ≤ 32 KiB serialized, nesting depth ≤ 8;
//! - `source`: optional string ≤ 128 bytes;
//! - `timestamp`: optional RFC 3339 string or epoch milliseconds; malformed is an error.
//!   Within [received − 7 days, received + 5 min] it becomes `exposed_at`; outside, the
//!   event is kept with `exposed_at = received_at` and the client value in
//!   `extra.timestamp`, because a skewed device clock must not drop an exposure;
//! - `event_id`: optional UUID (canonicalised) or non-empty string ≤ 128 bytes; a UUIDv7
//!   is generated when absent;
//! - every other top-level field is kept in `extra` (≤ 32 KiB serialized).
//!
//! On top of these, every event must be loadable by every warehouse ([`crate::loadable`]):
//! no NUL character in any string or key (`nul_character`), numbers within a double's
//! range kept digit for digit (`number_out_of_range`), text limits counted in bytes and
//! never above the column's width in [`crate::COLUMNS`], and `attributes` and `extra`
//! each at most 65,535 bytes serialized whatever the configured limit.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::columns::column_max_bytes;
use crate::error::{ErrorCode, FieldError};
use crate::loadable::{self, Root, MAX_JSON_BYTES};
use crate::privacy::IpPolicy;
use crate::record::Exposure;

mod encode;
pub use encode::{EncodeError, EncodedExposure};

/// Size limits of the field rules. Defaults are DESIGN.md §3's. A limit above what the
/// warehouse can store is lowered to it: text limits to their column's byte width in
/// [`crate::COLUMNS`], `attributes` and `extra` to [`MAX_JSON_BYTES`].
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_id_bytes: usize,
    pub max_source_bytes: usize,
    pub max_event_id_bytes: usize,
    pub max_attributes_bytes: usize,
    pub max_attributes_depth: usize,
    pub max_extra_bytes: usize,
    /// How far in the past a client timestamp may lie and still become `exposed_at`.
    pub max_past_skew: Duration,
    /// How far in the future a client timestamp may lie and still become `exposed_at`.
    pub max_future_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_id_bytes: 256,
            max_source_bytes: 128,
            max_event_id_bytes: 128,
            max_attributes_bytes: 32 * 1024,
            max_attributes_depth: 8,
            max_extra_bytes: 32 * 1024,
            max_past_skew: Duration::days(7),
            max_future_skew: Duration::minutes(5),
        }
    }
}

/// Validates and normalises exposures. Cheap to clone; share one per process.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    pub limits: Limits,
    pub ip_policy: IpPolicy,
    /// Salt for [`IpPolicy::Hash`]; a secret, never logged.
    pub ip_hash_salt: String,
}

const USER_FIELDS: [&str; 3] = ["ds_user_id", "anonymous_id", "user_id"];

impl Normalizer {
    /// Validates one event as received at `received_at` and returns the normalised record.
    pub fn normalize(&self, event: Value, received_at: DateTime<Utc>) -> Result<Exposure, FieldError> {
        let Value::Object(mut fields) = event else {
            return Err(FieldError::without_field(
                ErrorCode::NotAnObject,
                format!("an exposure must be a JSON object, got {}", json_type(&event)),
            ));
        };
        let received_at = truncate_to_micros(received_at);
        let limits = &self.limits;

        let mut ds_user_id = self.user_id_field(&mut fields, "ds_user_id")?;
        let anonymous_id = self.user_id_field(&mut fields, "anonymous_id")?;
        let user_id = self.user_id_field(&mut fields, "user_id")?;
        let mut extra = Map::new();
        match (&ds_user_id, user_id) {
            (None, Some(alias)) => ds_user_id = Some(alias),
            (Some(_), Some(alias)) => {
                extra.insert("user_id".to_owned(), Value::String(alias));
            }
            _ => {}
        }
        if ds_user_id.is_none() && anonymous_id.is_none() {
            return Err(FieldError::new(
                ErrorCode::MissingUserId,
                "ds_user_id",
                format!(
                    "one of {} is required (a non-empty string)",
                    USER_FIELDS.join(", ")
                ),
            ));
        }

        let experiment_id = required_string(
            &mut fields,
            "experiment_id",
            capped(limits.max_id_bytes, "experiment_id"),
            false,
        )?;
        let variation_id = required_string(
            &mut fields,
            "variation_id",
            capped(limits.max_id_bytes, "variation_id"),
            true,
        )?;
        let source = optional_string(&mut fields, "source", capped(limits.max_source_bytes, "source"))?;

        let attributes = match fields.shift_remove("attributes") {
            None | Some(Value::Null) => None,
            Some(Value::Object(mut attributes)) => {
                loadable::check_object(
                    Root::Field("attributes"),
                    &attributes,
                    limits.max_attributes_depth,
                )?;
                self.ip_policy.apply(&mut attributes, &self.ip_hash_salt);
                // Measured after the privacy policy: what is stored must fit.
                check_size(
                    &attributes,
                    "attributes",
                    limits.max_attributes_bytes.min(MAX_JSON_BYTES),
                )?;
                Some(attributes)
            }
            Some(other) => {
                return Err(wrong_type("attributes", "an object", &other));
            }
        };

        let exposed_at = match fields.shift_remove("timestamp") {
            None | Some(Value::Null) => received_at,
            Some(raw) => {
                let client = parse_timestamp(&raw)?;
                let window = (received_at - limits.max_past_skew)..=(received_at + limits.max_future_skew);
                if window.contains(&client) {
                    client
                } else {
                    extra.insert("timestamp".to_owned(), raw);
                    received_at
                }
            }
        };

        let event_id = match fields.shift_remove("event_id") {
            None | Some(Value::Null) => Uuid::now_v7().to_string(),
            Some(Value::String(id)) => match Uuid::try_parse(&id) {
                Ok(uuid) => uuid.hyphenated().to_string(),
                Err(_) => {
                    check_string("event_id", &id, capped(limits.max_event_id_bytes, "event_id"))?;
                    id
                }
            },
            Some(other) => return Err(wrong_type("event_id", "a string (UUID or ≤ 128 bytes)", &other)),
        };

        // Whatever is left is a field this version does not know: keep it.
        extra.extend(fields);
        let extra = if extra.is_empty() {
            None
        } else {
            loadable::check_object(Root::Event, &extra, usize::MAX)?;
            check_size(&extra, "extra", limits.max_extra_bytes.min(MAX_JSON_BYTES))?;
            Some(extra)
        };

        Ok(Exposure {
            event_id,
            ds_user_id,
            anonymous_id,
            experiment_id,
            variation_id,
            exposed_at,
            received_at,
            source,
            attributes,
            extra,
        })
    }

    /// A user id: string or integer; null and "" count as absent.
    fn user_id_field(
        &self,
        fields: &mut Map<String, Value>,
        name: &str,
    ) -> Result<Option<String>, FieldError> {
        // `user_id` is stored as `ds_user_id` (or in `extra`): the narrower column applies.
        let column = if name == "user_id" { "ds_user_id" } else { name };
        match fields.shift_remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                check_string(name, &s, capped(self.limits.max_id_bytes, column))?;
                Ok(Some(s))
            }
            Some(other) => {
                let integer = match &other {
                    Value::Number(n) => integer_text(n),
                    _ => None,
                };
                integer
                    .map(Some)
                    .ok_or_else(|| wrong_type(name, "a string or a 64-bit integer", &other))
            }
        }
    }
}

fn required_string(
    fields: &mut Map<String, Value>,
    name: &str,
    max_bytes: usize,
    integer_allowed: bool,
) -> Result<String, FieldError> {
    match fields.shift_remove(name) {
        None | Some(Value::Null) => Err(FieldError::new(
            ErrorCode::MissingField,
            name,
            format!("{name} is required"),
        )),
        Some(Value::String(s)) => {
            check_string(name, &s, max_bytes)?;
            Ok(s)
        }
        Some(other) => {
            let integer = match &other {
                Value::Number(n) if integer_allowed => integer_text(n),
                _ => None,
            };
            integer.ok_or_else(|| {
                let expected = if integer_allowed {
                    "a string or a 64-bit integer"
                } else {
                    "a string"
                };
                wrong_type(name, expected, &other)
            })
        }
    }
}

fn optional_string(
    fields: &mut Map<String, Value>,
    name: &str,
    max_bytes: usize,
) -> Result<Option<String>, FieldError> {
    match fields.shift_remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            loadable::check_text(name, &s)?;
            if s.len() > max_bytes {
                return Err(too_long(name, s.len(), max_bytes));
            }
            Ok(Some(s))
        }
        Some(other) => Err(wrong_type(name, "a string", &other)),
    }
}

fn check_string(name: &str, value: &str, max_bytes: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(
            ErrorCode::Empty,
            name,
            format!("{name} must not be empty"),
        ));
    }
    loadable::check_text(name, value)?;
    if value.len() > max_bytes {
        return Err(too_long(name, value.len(), max_bytes));
    }
    Ok(())
}

/// A configured byte limit, never above the width of the column the field is stored in.
fn capped(limit: usize, column: &str) -> usize {
    limit.min(column_max_bytes(column))
}

/// An integer id (a user id, `variation_id`) as its canonical decimal text: `-0` is `0`.
/// `None` for fractions, exponents and integers beyond 64 bits.
fn integer_text(n: &serde_json::Number) -> Option<String> {
    n.as_i64()
        .map(|v| v.to_string())
        .or_else(|| n.as_u64().map(|v| v.to_string()))
}

fn too_long(name: &str, len: usize, max_bytes: usize) -> FieldError {
    FieldError::new(
        ErrorCode::TooLong,
        name,
        format!("{name} is {len} bytes long; at most {max_bytes} are allowed"),
    )
}

fn check_size(object: &Map<String, Value>, name: &str, max_bytes: usize) -> Result<(), FieldError> {
    let size = loadable::serialized_len(object);
    if size > max_bytes {
        return Err(FieldError::new(
            ErrorCode::TooLarge,
            name,
            format!("{name} is {size} bytes serialized; at most {max_bytes} are allowed"),
        ));
    }
    Ok(())
}

fn wrong_type(name: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(
        ErrorCode::WrongType,
        name,
        format!("{name} must be {expected}, got {}", json_type(got)),
    )
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 3339 text, or epoch milliseconds as a JSON number.
fn parse_timestamp(raw: &Value) -> Result<DateTime<Utc>, FieldError> {
    let invalid = |detail: &str| {
        FieldError::new(
            ErrorCode::InvalidTimestamp,
            "timestamp",
            format!("timestamp must be RFC 3339 text (2024-05-01T12:00:00Z) or epoch milliseconds: {detail}"),
        )
    };
    let parsed = match raw {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| invalid(&format!("'{text}' does not parse ({e})")))?,
        Value::Number(n) => {
            let millis = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| invalid("the number is out of range"))?;
            Utc.timestamp_millis_opt(millis)
                .single()
                .ok_or_else(|| invalid("the number is out of range"))?
        }
        other => return Err(invalid(&format!("got {}", json_type(other)))),
    };
    Ok(truncate_to_micros(parsed))
}

pub(crate) fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_micros(t.timestamp_micros()).single().unwrap_or(t)
}

#[cfg(test)]
mod tests;
