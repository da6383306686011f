//! The rows of the tracking plugin's own tables: a feature evaluation → its
//! `feature_usage` columns, a custom event → its `events` columns (module doc of
//! [`super`] for the two dialects).

use serde_json::{Map, Value};

use schemas::tracked::{EVENTS, FEATURE_USAGE};
use schemas::{FieldError, TableDef};

use super::{carry, take_string, Common, Origin, Sdk, PROMOTED_FIELDS};

/// The columns every tracked row has from the event itself: the environment, the user
/// and device ids, the url and the SDK; then what is left of `event` goes to `extra`.
fn common_columns(row: &mut Map<String, Value>, event: &mut Map<String, Value>, origin: Origin<'_>) {
    if let Some(environment) = origin.environment {
        row.insert("environment".into(), Value::String(environment.to_owned()));
    }
    for name in ["user_id", "device_id", "url", "sdk_language", "sdk_version"] {
        carry(event, name, row, name);
    }
    // An empty url (Python's server-side default) says nothing.
    if row.get("url").and_then(Value::as_str) == Some("") {
        row.remove("url");
    }
}

/// The columns that describe where an event happened rather than what it is: cut to
/// their column's width, the whole value kept in `extra`, instead of losing the event
/// (the plugin does not retry) to a long URL or campaign name.
const DESCRIPTIVE_COLUMNS: [&str; 9] = [
    "url",
    "page_title",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "sdk_language",
    "sdk_version",
];

/// Whatever no column took, kept in `extra` rather than dropped; and a descriptive
/// column longer than `table` holds, cut to its width with the whole value in `extra`.
fn rest_in_extra(
    row: &mut Map<String, Value>,
    table: &TableDef,
    mut extra: Map<String, Value>,
    event: Map<String, Value>,
    properties: Map<String, Value>,
) {
    for name in DESCRIPTIVE_COLUMNS {
        let width = table.max_bytes(name);
        if let Some(Value::String(text)) = row.get_mut(name) {
            if text.len() > width {
                let whole = std::mem::replace(text, schemas::ledger::truncate_utf8(text, width).to_owned());
                extra.insert(name.to_owned(), Value::String(whole));
            }
        }
    }
    extra.extend(event);
    if !properties.is_empty() {
        extra.insert("properties_json".into(), Value::Object(properties));
    }
    if !extra.is_empty() {
        row.insert("extra".into(), Value::Object(extra));
    }
}

/// A feature evaluation → its `feature_usage` columns.
pub(super) fn feature_usage_row(
    mut event: Map<String, Value>,
    origin: Origin<'_>,
) -> Result<Map<String, Value>, FieldError> {
    let Common {
        mut properties,
        mut context,
        sdk,
    } = Common::take(&mut event)?;
    let mut row = Map::new();
    let mut extra = Map::new();
    event.remove("event_name");
    let (key_field, value_field, rule_field) = match sdk {
        Sdk::Js => ("feature", "value", "ruleId"),
        Sdk::Python => ("feature_key", "feature_value", "rule_id"),
    };
    row.insert(
        "feature_key".into(),
        Value::String(take_string(&mut properties, key_field)?),
    );
    carry(&mut properties, value_field, &mut row, "value");
    carry(&mut properties, "source", &mut row, "source");
    carry(&mut properties, rule_field, &mut row, "rule_id");
    carry(&mut properties, "experiment_id", &mut row, "experiment_id");
    match sdk {
        // JS sends the variation's key, "" when no experiment decided the value.
        Sdk::Js => carry(&mut properties, "variationId", &mut row, "variation_id"),
        // Python sends only its index: kept, but never as the key.
        Sdk::Python => carry(&mut properties, "variation_id", &mut extra, "variation_index"),
    }
    carry(&mut properties, "in_experiment", &mut row, "in_experiment");
    for name in ["rule_id", "variation_id"] {
        if row.get(name).and_then(Value::as_str) == Some("") {
            row.remove(name);
        }
    }
    common_columns(&mut row, &mut event, origin);
    for name in PROMOTED_FIELDS.iter().skip(2) {
        carry(&mut event, name, &mut context, name);
    }
    if !context.is_empty() {
        row.insert("attributes".into(), Value::Object(context));
    }
    rest_in_extra(&mut row, &FEATURE_USAGE, extra, event, properties);
    Ok(row)
}

/// A custom event → its `events` columns.
pub(super) fn custom_event_row(
    mut event: Map<String, Value>,
    origin: Origin<'_>,
) -> Result<Map<String, Value>, FieldError> {
    let Common {
        properties, context, ..
    } = Common::take(&mut event)?;
    let mut row = Map::new();
    carry(&mut event, "event_name", &mut row, "event_name");
    if !properties.is_empty() {
        row.insert("properties".into(), Value::Object(properties));
    }
    common_columns(&mut row, &mut event, origin);
    for name in PROMOTED_FIELDS.iter().skip(2) {
        carry(&mut event, name, &mut row, name);
    }
    if !context.is_empty() {
        row.insert("attributes".into(), Value::Object(context));
    }
    rest_in_extra(&mut row, &EVENTS, Map::new(), event, Map::new());
    Ok(row)
}
