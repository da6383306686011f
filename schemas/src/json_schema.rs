//! The JSON Schema (draft 2020-12) of one exposure as the ingest API accepts it.
//!
//! [`exposure_schema`] builds it from the same [`Limits`] the [`Normalizer`] enforces,
//! each text limit lowered to its column's width in [`crate::COLUMNS`] as the normaliser
//! does, and from the [`crate::loadable`] limits, so it cannot drift from the rules:
//! `GET /v1/schema` serves the running process's (its `--max-attributes-bytes`
//! included), and `docs/exposure.schema.json` is the default limits', checked in. A test
//! fails when that file is out of date; regenerate it with [`BLESS_COMMAND`].
//!
//! The schema never refuses an event the API accepts; where JSON Schema cannot say a
//! rule exactly, it is looser and the rule is stated in the field's `description`:
//!
//! - lengths are UTF-8 bytes (Redshift's `VARCHAR(n)`), but `maxLength` counts
//!   characters, so `maxLength` is the byte limit, a bound that multi-byte text can pass
//!   while being too long;
//! - JSON Schema's `integer` includes `1.0` and `1e2`, which the API refuses as ids: an
//!   integer id must be written with digits only;
//! - `attributes` (serialized size, depth) and the unknown fields kept in `extra`
//!   (serialized size), and inside them NUL characters and numbers beyond a double's
//!   range, are described, not checked;
//! - `timestamp` text is `"format": "date-time"`, which validators check only when
//!   asked to assert formats.
//!
//! [`Normalizer`]: crate::Normalizer

use serde_json::{json, Map, Value};

use crate::columns::{column_max_bytes, PROMOTED_BOOLEAN_ATTRIBUTE, PROMOTED_TEXT_ATTRIBUTES};
use crate::loadable::{MAX_JSON_BYTES, MAX_NUMBER_BYTES};
use crate::normalize::Limits;
use crate::privacy::IpPolicy;

/// The JSON Schema dialect of the schema.
pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The media type `GET /v1/schema` answers with.
pub const MEDIA_TYPE: &str = "application/schema+json";

/// The checked-in schema of the default limits, relative to the workspace root.
pub const CHECKED_IN_PATH: &str = "docs/exposure.schema.json";

/// Rewrites [`CHECKED_IN_PATH`] from the code (run from the workspace root).
pub const BLESS_COMMAND: &str = "EXPOSURES_BLESS=1 cargo test -p schemas json_schema";

/// The user id fields, any one of which (non-empty) identifies the user.
pub const USER_ID_FIELDS: [&str; 3] = ["ds_user_id", "anonymous_id", "user_id"];

/// A string without U+0000 (PostgreSQL's text and jsonb cannot store NUL).
const NO_NUL: &str = r"^[^\u0000]*$";

/// The JSON Schema of one exposure under `limits`, as `POST /exposure` accepts it (and
/// each element of a `POST /v1/exposures` batch).
pub fn exposure_schema(limits: &Limits) -> Value {
    let id_bytes = |column: &str| capped(limits.max_id_bytes, column);
    let attributes_bytes = limits.max_attributes_bytes.min(MAX_JSON_BYTES);
    let extra_bytes = limits.max_extra_bytes.min(MAX_JSON_BYTES);
    let (min_millis, max_millis) = epoch_millis_range();
    let user_ids = USER_ID_FIELDS.join(", ");

    let mut properties = Map::new();
    for name in USER_ID_FIELDS {
        // `user_id` is stored as `ds_user_id` (or in `extra`): the narrower column applies.
        let column = if name == "user_id" { "ds_user_id" } else { name };
        let role = match name {
            "ds_user_id" => "The data-source user id GrowthBook joins on; the Kafka key.",
            "anonymous_id" => "The anonymous (logged-out) id; the Kafka key when ds_user_id is absent.",
            _ => "Alias of ds_user_id: stored as ds_user_id when that is absent, else kept in extra.",
        };
        let max = id_bytes(column);
        properties.insert(
            name.to_owned(),
            json!({
                "description": format!(
                    "{role} A string of at most {max} UTF-8 bytes, or a 64-bit integer written \
                     with digits only (stored as its decimal text); null and \"\" count as absent. \
                     At least one of {user_ids} is required."
                ),
                "type": ["string", "integer", "null"],
                "maxLength": max,
                "pattern": NO_NUL,
                "minimum": i64::MIN,
                "maximum": u64::MAX,
            }),
        );
    }
    let experiment_max = id_bytes("experiment_id");
    properties.insert(
        "experiment_id".to_owned(),
        json!({
            "description": format!(
                "The GrowthBook experiment key: a non-empty string of at most {experiment_max} UTF-8 bytes."
            ),
            "type": "string",
            "minLength": 1,
            "maxLength": experiment_max,
            "pattern": NO_NUL,
        }),
    );
    let variation_max = id_bytes("variation_id");
    properties.insert(
        "variation_id".to_owned(),
        json!({
            "description": format!(
                "The variation key: a non-empty string of at most {variation_max} UTF-8 bytes, \
                 or a 64-bit integer written with digits only; always stored as a string."
            ),
            "type": ["string", "integer"],
            "minLength": 1,
            "maxLength": variation_max,
            "pattern": NO_NUL,
            "minimum": i64::MIN,
            "maximum": u64::MAX,
        }),
    );
    let promoted: Vec<String> = PROMOTED_TEXT_ATTRIBUTES
        .iter()
        .map(|name| format!("{name} ({} B)", column_max_bytes(name)))
        .collect();
    properties.insert(
        "attributes".to_owned(),
        json!({
            "description": format!(
                "The SDK attributes, stored verbatim (key order, unicode and every digit of \
                 every number kept): at most {attributes_bytes} bytes serialized as compact \
                 JSON, nesting depth at most {depth} ({{}} is 1). {anywhere} Promoted to their \
                 own columns and cut there to their width in bytes: {promoted}; \
                 {PROMOTED_BOOLEAN_ATTRIBUTE} as a boolean. forwarded_for is stored as \
                 --forwarded-for says ({policies}).",
                depth = limits.max_attributes_depth,
                anywhere = anywhere_rules(),
                promoted = promoted.join(", "),
                policies = IpPolicy::NAMES.join(", "),
            ),
            "type": ["object", "null"],
        }),
    );
    let source_max = capped(limits.max_source_bytes, "source");
    properties.insert(
        "source".to_owned(),
        json!({
            "description": format!(
                "Which caller sent the event (e.g. search_core_python): at most {source_max} UTF-8 bytes."
            ),
            "type": ["string", "null"],
            "maxLength": source_max,
            "pattern": NO_NUL,
        }),
    );
    properties.insert(
        "timestamp".to_owned(),
        json!({
            "description": format!(
                "When the user was exposed: RFC 3339 text (2024-05-01T12:00:00Z) or epoch \
                 milliseconds. Within [received - {past}, received + {future}] it is exposed_at; \
                 outside, the event is still accepted, with exposed_at the receive time and \
                 this value kept in extra.timestamp. Null or absent: the receive time.",
                past = human(limits.max_past_skew),
                future = human(limits.max_future_skew),
            ),
            "type": ["string", "number", "null"],
            "format": "date-time",
            "minimum": min_millis,
            "maximum": max_millis,
        }),
    );
    let event_id_max = capped(limits.max_event_id_bytes, "event_id");
    properties.insert(
        "event_id".to_owned(),
        json!({
            "description": format!(
                "The id the warehouse deduplicates on: a UUID (stored lowercase hyphenated) or \
                 any non-empty string of at most {event_id_max} UTF-8 bytes. Null or absent: \
                 the server generates a UUIDv7."
            ),
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": event_id_max,
            "pattern": NO_NUL,
        }),
    );

    let any_user_id: Vec<Value> = USER_ID_FIELDS
        .iter()
        .map(|name| {
            let mut present = Map::new();
            present.insert(
                (*name).to_owned(),
                json!({"type": ["string", "integer"], "minLength": 1}),
            );
            json!({"required": [name], "properties": present})
        })
        .collect();

    json!({
        "$schema": DRAFT,
        "$comment": format!(
            "Generated by schemas::json_schema from the normaliser's limits and the column \
             widths; do not edit. Regenerate: {BLESS_COMMAND}"
        ),
        "title": "Exposure",
        "description": format!(
            "One GrowthBook experiment exposure as POST /exposure accepts it; POST /v1/exposures \
             takes a JSON array or NDJSON of them. Any other top-level field is kept verbatim in \
             extra, never dropped: all of them together at most {extra_bytes} bytes serialized as \
             compact JSON. Lengths are UTF-8 bytes; maxLength (characters) is a bound that \
             multi-byte text can pass while being too long. {anywhere}",
            anywhere = anywhere_rules(),
        ),
        "type": "object",
        "properties": properties,
        "required": ["experiment_id", "variation_id"],
        "anyOf": any_user_id,
        "propertyNames": {"pattern": NO_NUL},
        // Unknown fields are kept in `extra` (the description says so). `true`, not an
        // annotation-only schema: jsonschema-rs 0.41 then ignores a two-item `required`
        // (fixed upstream in Stranger6667/jsonschema#1116).
        "additionalProperties": true,
    })
}

/// [`exposure_schema`] as the text of the checked-in file and of `GET /v1/schema`:
/// pretty-printed, with a final newline.
pub fn exposure_schema_text(limits: &Limits) -> String {
    let mut text = serde_json::to_string_pretty(&exposure_schema(limits)).unwrap_or_default();
    text.push('\n');
    text
}

/// The rules that hold at any depth, which the schema states but does not check.
fn anywhere_rules() -> String {
    format!(
        "No string or key anywhere may contain NUL (U+0000); every number must be within a \
         double's range (magnitude at most {max:e}, none non-zero below {min:e}) and at most \
         {MAX_NUMBER_BYTES} characters long.",
        max = f64::MAX,
        min = f64::MIN_POSITIVE,
    )
}

/// A configured byte limit, never above the width of the column the field is stored in
/// (as the normaliser lowers it).
fn capped(limit: usize, column: &str) -> usize {
    limit.min(column_max_bytes(column))
}

/// The epoch milliseconds a timestamp may be: the range of chrono's `DateTime<Utc>`.
fn epoch_millis_range() -> (i64, i64) {
    use chrono::{DateTime, Utc};
    (
        DateTime::<Utc>::MIN_UTC.timestamp_millis(),
        DateTime::<Utc>::MAX_UTC.timestamp_millis(),
    )
}

fn human(duration: chrono::Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let seconds = duration.num_seconds();
    if seconds % 86_400 == 0 {
        plural(seconds / 86_400, "day")
    } else if seconds % 3_600 == 0 {
        plural(seconds / 3_600, "hour")
    } else if seconds % 60 == 0 {
        plural(seconds / 60, "minute")
    } else {
        plural(seconds, "second")
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::error::ErrorCode;
    use crate::normalize::Normalizer;

    fn checked_in_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CHECKED_IN_PATH)
    }

    #[test]
    fn the_checked_in_schema_is_the_generated_one() {
        let generated = exposure_schema_text(&Limits::default());
        let path = checked_in_path();
        if std::env::var("EXPOSURES_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &generated).expect("write the checked-in schema");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{CHECKED_IN_PATH} differs from the schema the code generates; \
             regenerate it with: {BLESS_COMMAND}"
        );
    }

    fn now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).single().unwrap()
    }

    fn body() -> Value {
        json!({"ds_user_id": "u", "experiment_id": "e", "variation_id": "v"})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = body();
        body[field] = value;
        body
    }

    fn verdict(normalizer: &Normalizer, body: Value) -> Result<(), ErrorCode> {
        normalizer.normalize(body, now()).map(|_| ()).map_err(|e| e.code)
    }

    /// Every `maxLength` is the normaliser's byte limit: that many ASCII bytes pass, one
    /// more is `too_long`; every `minLength: 1` field refuses "" (as `empty`).
    fn assert_lengths_agree(limits: &Limits) {
        let schema = exposure_schema(limits);
        let normalizer = Normalizer {
            limits: limits.clone(),
            ..Normalizer::default()
        };
        let properties = schema["properties"].as_object().expect("properties");
        let mut checked = 0;
        for (name, property) in properties {
            let Some(max) = property["maxLength"].as_u64() else {
                continue;
            };
            let max = max as usize;
            // event_id: a non-UUID text (a UUID is accepted whatever the limit).
            let at_limit = "x".repeat(max);
            assert_eq!(
                verdict(&normalizer, with(name, json!(at_limit))),
                Ok(()),
                "{name}"
            );
            let over = "x".repeat(max + 1);
            assert_eq!(
                verdict(&normalizer, with(name, json!(over))),
                Err(ErrorCode::TooLong),
                "{name}"
            );
            if property["minLength"] == 1 {
                assert_eq!(
                    verdict(&normalizer, with(name, json!(""))),
                    Err(ErrorCode::Empty),
                    "{name}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 7, "every text field has a maxLength");
    }

    #[test]
    fn max_lengths_are_the_normaliser_limits() {
        assert_lengths_agree(&Limits::default());
        assert_lengths_agree(&Limits {
            max_id_bytes: 10,
            max_source_bytes: 5,
            max_event_id_bytes: 7,
            ..Limits::default()
        });
        // Above a column's width, the column's width is the limit.
        assert_lengths_agree(&Limits {
            max_id_bytes: 100_000,
            max_source_bytes: 100_000,
            max_event_id_bytes: 100_000,
            ..Limits::default()
        });
    }

    #[test]
    fn required_fields_and_user_ids_are_the_normalisers() {
        let schema = exposure_schema(&Limits::default());
        let normalizer = Normalizer::default();
        for name in schema["required"].as_array().expect("required") {
            let name = name.as_str().expect("name");
            let mut missing = body();
            missing.as_object_mut().expect("object").remove(name);
            assert_eq!(
                verdict(&normalizer, missing),
                Err(ErrorCode::MissingField),
                "{name}"
            );
        }
        let branches = schema["anyOf"].as_array().expect("anyOf");
        assert_eq!(branches.len(), USER_ID_FIELDS.len());
        for name in USER_ID_FIELDS {
            let alone = json!({name: "someone", "experiment_id": "e", "variation_id": 1});
            assert_eq!(verdict(&normalizer, alone), Ok(()), "{name}");
            let empty = json!({name: "", "experiment_id": "e", "variation_id": 1});
            assert_eq!(
                verdict(&normalizer, empty),
                Err(ErrorCode::MissingUserId),
                "{name}"
            );
        }
        let none = json!({"experiment_id": "e", "variation_id": 1});
        assert_eq!(verdict(&normalizer, none), Err(ErrorCode::MissingUserId));
    }

    #[test]
    fn integer_and_timestamp_bounds_are_the_normalisers() {
        let schema = exposure_schema(&Limits::default());
        let normalizer = Normalizer::default();
        let number = |text: &str| -> Value { serde_json::from_str(text).expect("number") };
        let variation = &schema["properties"]["variation_id"];
        assert_eq!(variation["minimum"], json!(i64::MIN));
        assert_eq!(variation["maximum"], json!(u64::MAX));
        for id in ["variation_id", "ds_user_id"] {
            for ok in [i64::MIN.to_string(), u64::MAX.to_string()] {
                assert_eq!(verdict(&normalizer, with(id, number(&ok))), Ok(()), "{id} {ok}");
            }
            for refused in ["-9223372036854775809", "18446744073709551616", "1.5"] {
                assert_eq!(
                    verdict(&normalizer, with(id, number(refused))),
                    Err(ErrorCode::WrongType),
                    "{id} {refused}"
                );
            }
        }
        let timestamp = &schema["properties"]["timestamp"];
        for bound in ["minimum", "maximum"] {
            let millis = timestamp[bound].as_i64().expect(bound);
            assert_eq!(
                verdict(&normalizer, with("timestamp", json!(millis))),
                Ok(()),
                "{bound}"
            );
            let beyond = if bound == "minimum" {
                millis - 1
            } else {
                millis + 1
            };
            assert_eq!(
                verdict(&normalizer, with("timestamp", json!(beyond))),
                Err(ErrorCode::InvalidTimestamp),
                "{bound}"
            );
        }
    }

    #[test]
    fn described_limits_follow_the_configuration() {
        let limits = Limits {
            max_attributes_bytes: 1000,
            max_attributes_depth: 3,
            max_extra_bytes: 2000,
            ..Limits::default()
        };
        let schema = exposure_schema(&limits);
        let attributes = schema["properties"]["attributes"]["description"]
            .as_str()
            .expect("description");
        assert!(attributes.contains("at most 1000 bytes"), "{attributes}");
        assert!(attributes.contains("depth at most 3"), "{attributes}");
        assert!(attributes.contains("geo_country_code (64 B)"), "{attributes}");
        let event = schema["description"].as_str().expect("description");
        assert!(event.contains("at most 2000 bytes"), "{event}");
        let timestamp = schema["properties"]["timestamp"]["description"]
            .as_str()
            .expect("description");
        assert!(
            timestamp.contains("received - 7 days, received + 5 minutes"),
            "{timestamp}"
        );
        // Above what a warehouse JSON column loads, the warehouse's limit is described.
        let generous = exposure_schema(&Limits {
            max_attributes_bytes: 1 << 20,
            ..Limits::default()
        });
        let described = generous["properties"]["attributes"]["description"]
            .as_str()
            .expect("description");
        assert!(
            described.contains(&format!("at most {MAX_JSON_BYTES} bytes")),
            "{described}"
        );
    }
}
