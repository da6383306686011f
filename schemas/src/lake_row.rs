//! A Kafka value read straight into the lake's row, borrowing from the message.
//!
//! The sink reads every record on the topic, so this is its hot path. Building an
//! [`Exposure`](crate::Exposure) would parse `attributes` and `extra` into maps only to
//! serialise them again twice (once to size them, once for the column). Instead the
//! text fields borrow from the message, and each JSON object is checked by one pass
//! over its text ([`scan_object`]): when it is compact JSON with nothing the
//! [`loadable`](crate::loadable) rules must look at closely, the column stores that text
//! as it is, which is byte for byte what serialising the parsed map would give for the
//! records ingest writes. Anything else (whitespace, a `\u0000` escape, a number that
//! needs its range checked, an escaped top-level key) takes the full parse, so the
//! rules and the stored text are exactly those of the map.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::columns::{column_max_bytes, PROMOTED_BOOLEAN_ATTRIBUTE, PROMOTED_TEXT_ATTRIBUTES};
use crate::error::{ErrorCode, FieldError};
use crate::json_scan::{raw_string, scan_object, Scan, Text, MAX_WANTED};
use crate::loadable::{self, Root, MAX_JSON_BYTES};
use crate::timestamp::parse_timestamp;
use crate::Exposure;

/// Top-level attribute keys the row looks up: the promoted text columns, then the
/// promoted boolean.
const PROMOTED: [&str; MAX_WANTED] = [
    PROMOTED_TEXT_ATTRIBUTES[0],
    PROMOTED_TEXT_ATTRIBUTES[1],
    PROMOTED_TEXT_ATTRIBUTES[2],
    PROMOTED_TEXT_ATTRIBUTES[3],
    PROMOTED_TEXT_ATTRIBUTES[4],
    PROMOTED_TEXT_ATTRIBUTES[5],
    PROMOTED_TEXT_ATTRIBUTES[6],
    PROMOTED_BOOLEAN_ATTRIBUTE,
];

/// The byte widths of the promoted text columns, in [`PROMOTED_TEXT_ATTRIBUTES`] order.
const PROMOTED_TEXT_WIDTHS: [usize; 7] = {
    let mut widths = [0; 7];
    let mut index = 0;
    while index < widths.len() {
        widths[index] = column_max_bytes(PROMOTED_TEXT_ATTRIBUTES[index]);
        index += 1;
    }
    widths
};

/// One exposure as the lake stores it: every column but the Kafka position, with the
/// JSON columns as their text and the promoted attributes already cut to their widths.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeRow<'a> {
    pub event_id: Cow<'a, str>,
    pub ds_user_id: Option<Cow<'a, str>>,
    pub anonymous_id: Option<Cow<'a, str>>,
    pub experiment_id: Cow<'a, str>,
    pub variation_id: Cow<'a, str>,
    pub exposed_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub source: Option<Cow<'a, str>>,
    /// Compact JSON text of the attributes object.
    pub attributes: Option<Cow<'a, str>>,
    /// The promoted text attributes, in [`PROMOTED_TEXT_ATTRIBUTES`] order.
    pub promoted_text: [Option<Cow<'a, str>>; 7],
    pub is_kf_verified: Option<bool>,
    /// Compact JSON text of the unknown top-level fields.
    pub extra: Option<Cow<'a, str>>,
}

/// Why a Kafka value does not become a row (the dead letter's reason).
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// The value is not an exposure record at all.
    #[error("not an exposure: {0}")]
    NotAnExposure(String),
    /// An exposure that some warehouse could not store.
    #[error("not loadable: {0} ({code})", code = .0.code)]
    NotLoadable(FieldError),
}

impl From<FieldError> for RowError {
    fn from(error: FieldError) -> Self {
        RowError::NotLoadable(error)
    }
}

/// The Kafka value's shape; the same fields as [`Exposure`], borrowed.
#[derive(Deserialize)]
struct KafkaValue<'a> {
    #[serde(borrow)]
    event_id: Text<'a>,
    #[serde(borrow, default)]
    ds_user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    anonymous_id: Option<Text<'a>>,
    #[serde(borrow)]
    experiment_id: Text<'a>,
    #[serde(borrow)]
    variation_id: Text<'a>,
    #[serde(deserialize_with = "timestamp")]
    exposed_at: DateTime<Utc>,
    #[serde(deserialize_with = "timestamp")]
    received_at: DateTime<Utc>,
    #[serde(borrow, default)]
    source: Option<Text<'a>>,
    #[serde(borrow, default)]
    attributes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    extra: Option<&'a RawValue>,
}

/// A timestamp field, read the quick way when it is spelled as ingest writes it.
fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let Text(text) = Text::deserialize(deserializer)?;
    parse_timestamp(&text).map_err(D::Error::custom)
}

fn text(value: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    value.map(|Text(text)| text)
}

impl<'a> LakeRow<'a> {
    /// Reads a Kafka value (an exposure as ingest produces it, or as any other producer
    /// wrote it) and checks it against the [`loadable`](crate::loadable) rules.
    pub fn from_kafka_value(value: &'a [u8]) -> Result<LakeRow<'a>, RowError> {
        let value: KafkaValue<'a> =
            serde_json::from_slice(value).map_err(|e| RowError::NotAnExposure(e.to_string()))?;
        let row_texts = RowTexts {
            event_id: value.event_id.0,
            ds_user_id: text(value.ds_user_id),
            anonymous_id: text(value.anonymous_id),
            experiment_id: value.experiment_id.0,
            variation_id: value.variation_id.0,
            source: text(value.source),
        };
        row_texts.check_loadable()?;
        let attributes = value
            .attributes
            .map(|raw| JsonColumn::from_raw("attributes", raw.get(), &PROMOTED))
            .transpose()?;
        let extra = value
            .extra
            .map(|raw| JsonColumn::from_raw("extra", raw.get(), &[]))
            .transpose()?;
        Ok(row_texts.into_row(value.exposed_at, value.received_at, attributes, extra))
    }

    /// The row of a record already in memory. No loadability check: the normaliser made
    /// the record, or the caller checked it.
    pub fn from_exposure(exposure: &Exposure) -> LakeRow<'static> {
        let owned = |text: &Option<String>| text.clone().map(Cow::Owned);
        let row_texts = RowTexts {
            event_id: Cow::Owned(exposure.event_id.clone()),
            ds_user_id: owned(&exposure.ds_user_id),
            anonymous_id: owned(&exposure.anonymous_id),
            experiment_id: Cow::Owned(exposure.experiment_id.clone()),
            variation_id: Cow::Owned(exposure.variation_id.clone()),
            source: owned(&exposure.source),
        };
        let attributes = exposure
            .attributes
            .as_ref()
            .map(|map| JsonColumn::from_map(map, &PROMOTED));
        let extra = exposure.extra.as_ref().map(|map| JsonColumn::from_map(map, &[]));
        row_texts.into_row(exposure.exposed_at, exposure.received_at, attributes, extra)
    }
}

/// The text columns, before the JSON ones are added.
struct RowTexts<'a> {
    event_id: Cow<'a, str>,
    ds_user_id: Option<Cow<'a, str>>,
    anonymous_id: Option<Cow<'a, str>>,
    experiment_id: Cow<'a, str>,
    variation_id: Cow<'a, str>,
    source: Option<Cow<'a, str>>,
}

impl<'a> RowTexts<'a> {
    fn check_loadable(&self) -> Result<(), FieldError> {
        const fn width(name: &'static str) -> (&'static str, usize) {
            (name, column_max_bytes(name))
        }
        const FIELDS: [(&str, usize); 6] = [
            width("event_id"),
            width("ds_user_id"),
            width("anonymous_id"),
            width("experiment_id"),
            width("variation_id"),
            width("source"),
        ];
        let values = [
            Some(&*self.event_id),
            self.ds_user_id.as_deref(),
            self.anonymous_id.as_deref(),
            Some(&*self.experiment_id),
            Some(&*self.variation_id),
            self.source.as_deref(),
        ];
        loadable::check_texts(
            FIELDS
                .into_iter()
                .zip(values)
                .map(|((name, max), value)| (name, value, max)),
        )
    }

    fn into_row(
        self,
        exposed_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
        attributes: Option<JsonColumn<'a>>,
        extra: Option<JsonColumn<'a>>,
    ) -> LakeRow<'a> {
        let (attributes, members) = match attributes {
            Some(column) => (Some(column.text), column.members),
            None => (None, [const { None }; MAX_WANTED]),
        };
        let [m0, m1, m2, m3, m4, m5, m6, verified] = members;
        let promoted_text = [m0, m1, m2, m3, m4, m5, m6];
        let mut widths = PROMOTED_TEXT_WIDTHS.into_iter();
        let promoted_text = promoted_text.map(|member| {
            let max_bytes = widths.next().unwrap_or(usize::MAX);
            member
                .and_then(Member::into_text)
                .map(|value| truncate(value, max_bytes))
        });
        LakeRow {
            event_id: self.event_id,
            ds_user_id: self.ds_user_id,
            anonymous_id: self.anonymous_id,
            experiment_id: self.experiment_id,
            variation_id: self.variation_id,
            exposed_at,
            received_at,
            source: self.source,
            attributes,
            promoted_text,
            is_kf_verified: verified.as_ref().and_then(Member::as_bool),
            extra: extra.map(|column| column.text),
        }
    }
}

/// A JSON object column: its stored text and the wanted top-level members' values.
struct JsonColumn<'a> {
    text: Cow<'a, str>,
    members: [Option<Member<'a>>; MAX_WANTED],
}

/// A top-level member's value, as text still to read or already parsed.
enum Member<'a> {
    /// Its JSON text, from a compact object that passed the scan.
    Raw(&'a str),
    /// From a parsed object (the slow path, or a record already in memory).
    Parsed(Value),
}

impl<'a> JsonColumn<'a> {
    /// `field`'s object as it came in the Kafka value: checked, and its text kept when
    /// the scan allows, else parsed and serialised.
    fn from_raw(field: &str, raw: &'a str, wanted: &[&str]) -> Result<JsonColumn<'a>, RowError> {
        let column = match scan_object(raw, wanted) {
            Scan::NotAnObject => {
                return Err(RowError::NotAnExposure(format!("{field} is not a JSON object")))
            }
            Scan::Clean(members) => JsonColumn {
                text: Cow::Borrowed(raw),
                members: members.map(|m| m.map(Member::Raw)),
            },
            Scan::NeedsParse => {
                let map: Map<String, Value> = serde_json::from_str(raw)
                    .map_err(|e| RowError::NotAnExposure(format!("{field}: {e}")))?;
                loadable::check_object(Root::Field(field), &map, usize::MAX)?;
                JsonColumn::from_map(&map, wanted)
            }
        };
        if column.text.len() > MAX_JSON_BYTES {
            let size = column.text.len();
            return Err(FieldError::new(
                ErrorCode::TooLarge,
                field,
                format!("{field} is {size} bytes of JSON; at most {MAX_JSON_BYTES} load"),
            )
            .into());
        }
        Ok(column)
    }

    /// A parsed object's column: its compact serialisation, and copies of the wanted
    /// members (a few short values), so the column outlives the map.
    fn from_map(map: &Map<String, Value>, wanted: &[&str]) -> JsonColumn<'static> {
        let mut members = [const { None }; MAX_WANTED];
        for (slot, name) in members.iter_mut().zip(wanted) {
            *slot = map.get(*name).cloned().map(Member::Parsed);
        }
        JsonColumn {
            // Serialising a map of JSON values cannot fail.
            text: Cow::Owned(serde_json::to_string(map).unwrap_or_default()),
            members,
        }
    }
}

impl<'a> Member<'a> {
    /// A promoted text attribute: strings as sent, numbers and booleans as their JSON
    /// text, anything else (objects, arrays, null) absent.
    fn into_text(self) -> Option<Cow<'a, str>> {
        let scalar_text = |value: &Value| match value {
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match self {
            Member::Raw(raw) => match raw.as_bytes().first()? {
                b'"' => raw_string(raw),
                // The scan passed only plain numbers (no exponent), already verbatim.
                b'-' | b'0'..=b'9' | b't' | b'f' => Some(Cow::Borrowed(raw)),
                _ => None,
            },
            Member::Parsed(Value::String(s)) => Some(Cow::Owned(s)),
            Member::Parsed(value) => scalar_text(&value).map(Cow::Owned),
        }
    }

    /// The promoted boolean: a JSON boolean, the strings `true`/`false` in any case, or
    /// an integer (non-zero is true).
    fn as_bool(&self) -> Option<bool> {
        let from_string = |s: &str| {
            if s.eq_ignore_ascii_case("true") {
                Some(true)
            } else if s.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        };
        let from_number = |n: &Number| n.as_i64().map(|v| v != 0);
        match self {
            Member::Raw(raw) => match raw.as_bytes().first()? {
                b't' => Some(true),
                b'f' => Some(false),
                b'"' => from_string(&raw_string(raw)?),
                b'-' | b'0'..=b'9' => from_number(&serde_json::from_str(raw).ok()?),
                _ => None,
            },
            Member::Parsed(value) => match value {
                Value::Bool(b) => Some(*b),
                Value::String(s) => from_string(s),
                Value::Number(n) => from_number(n),
                _ => None,
            },
        }
    }
}

/// Cuts `value` to at most `max_bytes` bytes (Redshift's `VARCHAR(n)` counts bytes), on
/// a character boundary, so the result is valid UTF-8 and never over the width.
fn truncate(value: Cow<'_, str>, max_bytes: usize) -> Cow<'_, str> {
    if value.len() <= max_bytes {
        return value;
    }
    let mut end = max_bytes;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(value[..end].to_owned())
}

#[cfg(test)]
mod tests;
