//! Ingest's hot path: one event's JSON text straight to its Kafka value, with the same
//! result as [`Normalizer::normalize`] followed by [`Exposure::to_json_bytes`].
//!
//! Parsing an event into a `serde_json::Value` allocates every key and string, and the
//! record is then serialised again; on the ingest profile that, and the allocator
//! behind it, was most of the CPU beyond HTTP. Here the top-level members borrow from
//! the request body, and `attributes` and the unknown members are kept as the client
//! wrote them when a scan ([`scan_canonical`]) shows that text is already exactly
//! their serialisation and passes the loadable rules.
//!
//! The direct path only ever accepts: any doubt (a wrong type, a limit passed, a
//! duplicate key, an escape serde_json would write differently) sends the event
//! through `normalize`, which decides it and words the error. So the two paths cannot disagree on what is valid
//! or on a single byte of the value; a property test holds them to it.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Number, Value};
use uuid::Uuid;

use super::{capped, check_string, integer_text, parse_timestamp, truncate_to_micros, Normalizer};
use crate::error::FieldError;
use crate::json_scan::{raw_string, scan_canonical, Scan, Text};
use crate::loadable::{self, MAX_JSON_BYTES};
use crate::privacy::{IpRewrite, IP_ATTRIBUTE};
use crate::record::Exposure;
use crate::timestamp::write_timestamp;

/// One exposure ready for Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedExposure {
    pub event_id: String,
    /// The Kafka message key: [`Exposure::partition_key`].
    pub key: String,
    pub received_at: DateTime<Utc>,
    /// The Kafka message value: [`Exposure::to_json_bytes`] of the normalised record.
    pub value: Vec<u8>,
}

impl From<&Exposure> for EncodedExposure {
    fn from(exposure: &Exposure) -> Self {
        EncodedExposure {
            event_id: exposure.event_id.clone(),
            key: exposure.partition_key().to_owned(),
            received_at: exposure.received_at,
            value: exposure.to_json_bytes(),
        }
    }
}

/// Why an event's text does not become an exposure.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Valid JSON that breaks a field rule.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The text does not parse as JSON (the message is serde_json's, positioned within
    /// the event's own text).
    #[error("{0}")]
    Malformed(serde_json::Error),
}

impl Normalizer {
    /// Validates one event's JSON text as received at `received_at` and returns its
    /// Kafka record: the same result as parsing it, [`Normalizer::normalize`] and
    /// [`Exposure::to_json_bytes`], without building the record when it can.
    pub fn encode(&self, event: &str, received_at: DateTime<Utc>) -> Result<EncodedExposure, EncodeError> {
        let received_at = truncate_to_micros(received_at);
        if let Some(encoded) = self.encode_directly(event, received_at) {
            return Ok(encoded);
        }
        let value: Value = serde_json::from_str(event).map_err(EncodeError::Malformed)?;
        Ok(EncodedExposure::from(&self.normalize(value, received_at)?))
    }

    /// The direct path; `None` hands the event to `normalize`.
    fn encode_directly(&self, event: &str, received_at: DateTime<Utc>) -> Option<EncodedExposure> {
        let limits = &self.limits;
        let Members(members) = serde_json::from_str(event).ok()?;
        let mut known = KnownFields::default();
        let mut unknown = Vec::new();
        for (index, (Text(name), raw)) in members.iter().enumerate() {
            if members[..index].iter().any(|(Text(other), _)| other == name) {
                return None; // the parsed map keeps the last; leave that to it
            }
            if !known.take(name, raw) {
                unknown.push((name.as_ref(), raw.get()));
            }
        }

        let mut ds_user_id = self.direct_user_id(known.ds_user_id, "ds_user_id")?;
        let anonymous_id = self.direct_user_id(known.anonymous_id, "anonymous_id")?;
        let user_id = self.direct_user_id(known.user_id, "user_id")?;
        let mut extra = ExtraMembers::default();
        match (&ds_user_id, user_id) {
            (None, Some(alias)) => ds_user_id = Some(alias),
            (Some(_), Some(alias)) => extra.push_string("user_id", &alias)?,
            _ => {}
        }
        if ds_user_id.is_none() && anonymous_id.is_none() {
            return None;
        }
        let experiment_id = direct_string(known.experiment_id?.get(), "experiment_id", limits.max_id_bytes)?;
        let variation_id = match known.variation_id?.get() {
            text if text.starts_with('"') => direct_string(text, "variation_id", limits.max_id_bytes)?,
            text => Cow::Owned(direct_integer(text)?),
        };
        let source = match present(known.source) {
            None => None,
            Some(text) => {
                let source = raw_string(text)?;
                loadable::check_text("source", &source).ok()?;
                if source.len() > capped(limits.max_source_bytes, "source") {
                    return None;
                }
                Some(source)
            }
        };
        let attributes = match present(known.attributes) {
            None => None,
            Some(text) => {
                let Scan::Clean([address, ..]) =
                    scan_canonical(text, &[IP_ATTRIBUTE], limits.max_attributes_depth)
                else {
                    return None;
                };
                if !text.starts_with('{') {
                    return None;
                }
                let attributes = match address {
                    Some(address) => self.apply_ip_policy(text, address)?,
                    None => Cow::Borrowed(text),
                };
                // Measured after the privacy policy: what is stored must fit.
                if attributes.len() > limits.max_attributes_bytes.min(MAX_JSON_BYTES) {
                    return None;
                }
                Some(attributes)
            }
        };
        let exposed_at = match present(known.timestamp) {
            None => received_at,
            Some(text) => {
                let client = parse_timestamp(&serde_json::from_str(text).ok()?).ok()?;
                let window = (received_at - limits.max_past_skew)..=(received_at + limits.max_future_skew);
                if window.contains(&client) {
                    client
                } else {
                    extra.push_verbatim("timestamp", text)?;
                    received_at
                }
            }
        };
        let event_id = match present(known.event_id) {
            None => Uuid::now_v7().to_string(),
            Some(text) => {
                let id = raw_string(text)?;
                match Uuid::try_parse(&id) {
                    Ok(uuid) => uuid.hyphenated().to_string(),
                    Err(_) => {
                        check_string("event_id", &id, capped(limits.max_event_id_bytes, "event_id")).ok()?;
                        id.into_owned()
                    }
                }
            }
        };
        for (name, text) in unknown {
            extra.push_verbatim(name, text)?;
        }
        let extra = extra.into_text(limits.max_extra_bytes.min(MAX_JSON_BYTES))?;

        let key = ds_user_id
            .as_deref()
            .or(anonymous_id.as_deref())
            .unwrap_or_default();
        let mut value = Vec::with_capacity(event.len() + 160);
        value.extend_from_slice(b"{\"event_id\":");
        serde_json::to_writer(&mut value, &event_id).ok()?;
        for (name, text) in [("ds_user_id", &ds_user_id), ("anonymous_id", &anonymous_id)] {
            if let Some(text) = text {
                write_member_name(&mut value, name);
                serde_json::to_writer(&mut value, text).ok()?;
            }
        }
        write_member_name(&mut value, "experiment_id");
        serde_json::to_writer(&mut value, &experiment_id).ok()?;
        write_member_name(&mut value, "variation_id");
        serde_json::to_writer(&mut value, &variation_id).ok()?;
        write_member_name(&mut value, "exposed_at");
        write_timestamp(&mut value, &exposed_at);
        write_member_name(&mut value, "received_at");
        write_timestamp(&mut value, &received_at);
        if let Some(source) = &source {
            write_member_name(&mut value, "source");
            serde_json::to_writer(&mut value, source).ok()?;
        }
        for (name, text) in [("attributes", attributes.as_deref()), ("extra", extra.as_deref())] {
            if let Some(text) = text {
                write_member_name(&mut value, name);
                value.extend_from_slice(text.as_bytes());
            }
        }
        value.push(b'}');
        Some(EncodedExposure {
            event_id,
            key: key.to_owned(),
            received_at,
            value,
        })
    }

    /// The attributes' text after the privacy policy, `address` being the raw value of
    /// their `forwarded_for` member (a slice of `text`, which the scan found compact and
    /// canonical). The member is rewritten or removed in place, where the map would have
    /// it, so the text stays the map's serialisation.
    fn apply_ip_policy<'a>(&self, text: &'a str, address: &str) -> Option<Cow<'a, str>> {
        let value: Value = serde_json::from_str(address).ok()?;
        let value_start = (address.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let value_end = value_start + address.len();
        // The key is unescaped and directly before its value: `"forwarded_for":`.
        let member_start = value_start.checked_sub(IP_ATTRIBUTE.len() + 3)?;
        match self.ip_policy.rewrite(&value, &self.ip_hash_salt) {
            IpRewrite::Keep => Some(Cow::Borrowed(text)),
            IpRewrite::Replace(replacement) => {
                let replacement = serde_json::to_string(&replacement).ok()?;
                Some(Cow::Owned(
                    [&text[..value_start], &replacement, &text[value_end..]].concat(),
                ))
            }
            // With the comma before it, or after it when it is the first member.
            IpRewrite::Remove if text[..member_start].ends_with(',') => Some(Cow::Owned(
                [&text[..member_start - 1], &text[value_end..]].concat(),
            )),
            IpRewrite::Remove => {
                let rest = &text[value_end..];
                Some(Cow::Owned(
                    [&text[..member_start], rest.strip_prefix(',').unwrap_or(rest)].concat(),
                ))
            }
        }
    }

    /// A user id member: `Some(None)` when absent, `null` or `""`; `None` to leave it to
    /// `normalize`.
    fn direct_user_id<'a>(&self, raw: Option<&'a RawValue>, name: &str) -> Option<Option<Cow<'a, str>>> {
        let Some(text) = present(raw) else {
            return Some(None);
        };
        if !text.starts_with('"') {
            return direct_integer(text).map(|id| Some(Cow::Owned(id)));
        }
        let id = raw_string(text)?;
        if id.is_empty() {
            return Some(None);
        }
        // `user_id` is stored as `ds_user_id` (or in `extra`): the narrower column applies.
        let column = if name == "user_id" { "ds_user_id" } else { name };
        check_string(name, &id, capped(self.limits.max_id_bytes, column)).ok()?;
        Some(Some(id))
    }
}

/// The member's text, unless it is absent or `null`.
fn present(raw: Option<&RawValue>) -> Option<&str> {
    raw.map(RawValue::get).filter(|text| *text != "null")
}

/// A required string member (`text` its JSON) within its limit.
fn direct_string<'a>(text: &'a str, name: &str, max_bytes: usize) -> Option<Cow<'a, str>> {
    let value = raw_string(text)?;
    check_string(name, &value, capped(max_bytes, name)).ok()?;
    Some(value)
}

/// A JSON integer id as its canonical decimal text (see `integer_text`).
fn direct_integer(text: &str) -> Option<String> {
    integer_text(&serde_json::from_str::<Number>(text).ok()?)
}

fn write_member_name(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// The top-level members the rules name, as raw JSON.
#[derive(Default)]
struct KnownFields<'a> {
    ds_user_id: Option<&'a RawValue>,
    anonymous_id: Option<&'a RawValue>,
    user_id: Option<&'a RawValue>,
    experiment_id: Option<&'a RawValue>,
    variation_id: Option<&'a RawValue>,
    source: Option<&'a RawValue>,
    attributes: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    event_id: Option<&'a RawValue>,
}

impl<'a> KnownFields<'a> {
    /// Keeps `raw` when `name` is a known field; false for an unknown one.
    fn take(&mut self, name: &str, raw: &'a RawValue) -> bool {
        let slot = match name {
            "ds_user_id" => &mut self.ds_user_id,
            "anonymous_id" => &mut self.anonymous_id,
            "user_id" => &mut self.user_id,
            "experiment_id" => &mut self.experiment_id,
            "variation_id" => &mut self.variation_id,
            "source" => &mut self.source,
            "attributes" => &mut self.attributes,
            "timestamp" => &mut self.timestamp,
            "event_id" => &mut self.event_id,
            _ => return false,
        };
        *slot = Some(raw);
        true
    }
}

/// The members of `extra`, as compact JSON text being written.
#[derive(Default)]
struct ExtraMembers {
    text: Vec<u8>,
}

impl ExtraMembers {
    fn push_name(&mut self, name: &str) -> Option<()> {
        loadable::check_text(name, name).ok()?;
        self.text.push(if self.text.is_empty() { b'{' } else { b',' });
        serde_json::to_writer(&mut self.text, name).ok()?;
        self.text.push(b':');
        Some(())
    }

    fn push_string(&mut self, name: &str, value: &str) -> Option<()> {
        self.push_name(name)?;
        serde_json::to_writer(&mut self.text, value).ok()
    }

    /// A member whose value is kept as the client wrote it, if that is canonical.
    fn push_verbatim(&mut self, name: &str, value: &str) -> Option<()> {
        if !matches!(scan_canonical(value, &[], usize::MAX), Scan::Clean(_)) {
            return None;
        }
        self.push_name(name)?;
        self.text.extend_from_slice(value.as_bytes());
        Some(())
    }

    /// The object's text; `Some(None)` when empty, `None` when over `max_bytes`.
    fn into_text(mut self, max_bytes: usize) -> Option<Option<String>> {
        if self.text.is_empty() {
            return Some(None);
        }
        self.text.push(b'}');
        if self.text.len() > max_bytes {
            return None;
        }
        String::from_utf8(self.text).ok().map(Some)
    }
}

/// An object's members in order, keys decoded (borrowed unless escaped), values raw.
struct Members<'a>(Vec<(Text<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut members = Vec::with_capacity(8);
        while let Some(member) = map.next_entry::<Text<'de>, &'de RawValue>()? {
            members.push(member);
        }
        Ok(Members(members))
    }
}

#[cfg(test)]
mod tests;
