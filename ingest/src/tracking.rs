//! GrowthBook's own tracking plugin as a client: the events its SDKs post to an
//! "ingestor" (`POST /track`), judged one at a time.
//!
//! The plugin ships with JS `@growthbook/growthbook` 1.8 (`growthbookTrackingPlugin`,
//! also the script tag's `data-tracking="growthbook"`) and Python `growthbook` 4.0
//! (`growthbook_tracking_plugin`). Both post `{host}/track?client_key=KEY` with a JSON
//! array of events as `text/plain`, and neither retries: a refused batch is lost, so
//! [`judge`] decides each event on its own. Every event carries `event_name`,
//! `properties_json`, `context_json` (the attributes minus the ones promoted to their
//! own fields), `sdk_language`, `sdk_version`, `url`, `user_id`, `device_id` (the
//! `device_id`, `anonymous_id` or `id` attribute), `page_id`, `session_id`, and
//! optionally `page_title` and `utm_source|medium|campaign|term|content`. No time, no
//! event id. The two SDKs name the same events differently:
//!
//! | | JS 1.8 | Python 4.0 |
//! |---|---|---|
//! | exposure | `Experiment Viewed`: `experimentId`, `variationId` (the variation's **key**), `hashAttribute`, `hashValue` | `$$experiment_viewed`: `experiment_id`, `variation_id` (its **index**), `variation_key`, `in_experiment`, `hash_used`, `hash_attribute`, `hash_value` |
//! | feature | `Feature Evaluated`: `feature`, `source`, `value`, `ruleId`, `variationId` | `$$feature_evaluated`: `feature_key`, `feature_value`, `source`, `rule_id`, `experiment_id`, `variation_id`, `in_experiment` |
//! | custom | any other name (`gb.logEvent`, `window.gbEvents.push`) | any other name (`gb.log_event`) |
//!
//! An exposure becomes the object `POST /exposure` takes ([`exposure_object`]), so it is
//! validated by the same normaliser and lands in the same topic and table: the
//! variation **key** (never Python's index), `ds_user_id` the value GrowthBook hashed
//! when it hashed [`USER_ID_ATTRIBUTE`] (else the `user_id` field), `anonymous_id` the
//! `device_id`, `attributes` the context plus the promoted fields, and every other
//! plugin field kept in `extra`.

use serde_json::{Map, Value};

use schemas::{ErrorCode, FieldError};

/// The attribute this pipeline documents as the user id: when an experiment hashes on
/// it, the hashed value is the exposure's `ds_user_id` (docs/growthbook.md).
pub const USER_ID_ATTRIBUTE: &str = "user_id";

/// The plugin's top-level fields promoted from the SDK's attributes, stored back in an
/// exposure's `attributes` under these names.
const PROMOTED_FIELDS: [&str; 10] = [
    "user_id",
    "device_id",
    "page_id",
    "session_id",
    "page_title",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// The fields every plugin event has besides the promoted ones, kept in an exposure's
/// `extra` (the context and properties are taken apart instead).
const DESCRIPTIVE_FIELDS: [&str; 3] = ["sdk_language", "sdk_version", "url"];

/// What one event of a `/track` batch is.
#[derive(Debug, Clone, PartialEq)]
pub enum Tracked {
    /// An experiment exposure, as the JSON object `POST /exposure` takes.
    Exposure(Map<String, Value>),
    /// A feature evaluation (`Feature Evaluated` / `$$feature_evaluated`): the columns of
    /// its `feature_usage` row but the event id and time.
    FeatureEvaluation(Map<String, Value>),
    /// A custom event (`logEvent` / `log_event`): the columns of its `events` row but the
    /// event id and time.
    Custom(Map<String, Value>),
}

/// What an event claims to be, by its name, whether or not it is kept: the `kind`
/// label of the `/track` metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exposure,
    Feature,
    Custom,
    /// Not an object with an `event_name`.
    Unknown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exposure => "exposure",
            Kind::Feature => "feature",
            Kind::Custom => "custom",
            Kind::Unknown => "unknown",
        }
    }
}

/// Where a batch came from: the environment its `client_key` stands for, if the key is
/// on `--client-keys`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub environment: Option<&'a str>,
}

/// One event of a `/track` body → what it claims to be, and what it is or why it
/// cannot be kept.
pub fn judge(event: &str, origin: Origin<'_>) -> (Kind, Result<Tracked, FieldError>) {
    let event = match serde_json::from_str::<Value>(event) {
        Ok(Value::Object(event)) => event,
        Ok(_) => {
            let error = FieldError::without_field(
                ErrorCode::NotAnObject,
                "each event of a /track body must be a JSON object",
            );
            return (Kind::Unknown, Err(error));
        }
        Err(error) => {
            // serde_json's only limit on valid JSON is its nesting depth (128 levels).
            let code = if error.to_string().starts_with("recursion limit exceeded") {
                ErrorCode::TooDeep
            } else {
                ErrorCode::NotAnObject
            };
            let error =
                FieldError::without_field(code, format!("the event is not JSON this API reads: {error}"));
            return (Kind::Unknown, Err(error));
        }
    };
    let event_name = match required_string(&event, "event_name") {
        Ok(name) => name,
        Err(error) => return (Kind::Unknown, Err(error)),
    };
    match event_name {
        "Experiment Viewed" | "$$experiment_viewed" => (
            Kind::Exposure,
            exposure_object(event, origin).map(Tracked::Exposure),
        ),
        "Feature Evaluated" | "$$feature_evaluated" => (
            Kind::Feature,
            feature_usage_row(event, origin).map(Tracked::FeatureEvaluation),
        ),
        _ => (Kind::Custom, custom_event_row(event, origin).map(Tracked::Custom)),
    }
}

/// The parts every plugin event has, taken apart.
struct Common {
    properties: Map<String, Value>,
    context: Map<String, Value>,
    sdk: Sdk,
}

impl Common {
    /// Takes `properties_json` and `context_json` out of `event`.
    fn take(event: &mut Map<String, Value>) -> Result<Common, FieldError> {
        let properties = take_object(event, "properties_json")?;
        let context = take_object(event, "context_json")?;
        let sdk = Sdk::of(event);
        Ok(Common {
            properties,
            context,
            sdk,
        })
    }
}

fn take_object(event: &mut Map<String, Value>, field: &str) -> Result<Map<String, Value>, FieldError> {
    match event.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(wrong_type(field, "an object")),
    }
}

/// Moves `from[name]` to `to[as_name]` when it is there and not null.
fn carry(from: &mut Map<String, Value>, name: &str, to: &mut Map<String, Value>, as_name: &str) {
    if let Some(value) = from.remove(name).filter(|value| !value.is_null()) {
        to.insert(as_name.to_owned(), value);
    }
}

/// The exposure the plugin reported, as the object `POST /exposure` takes.
pub fn exposure_object(
    mut event: Map<String, Value>,
    origin: Origin<'_>,
) -> Result<Map<String, Value>, FieldError> {
    let Common {
        mut properties,
        context,
        sdk,
    } = Common::take(&mut event)?;
    // JS names the fields in camelCase and sends the variation's key; Python in
    // snake_case, with `variation_id` the index and `variation_key` the key.
    let (experiment_field, variation_field, attribute_field, value_field) = match sdk {
        Sdk::Js => ("experimentId", "variationId", "hashAttribute", "hashValue"),
        Sdk::Python => ("experiment_id", "variation_key", "hash_attribute", "hash_value"),
    };
    let experiment_id = take_string(&mut properties, experiment_field)?;
    let variation_key = match properties.remove(variation_field) {
        Some(Value::String(key)) => key,
        Some(Value::Number(key)) => key.to_string(),
        None | Some(Value::Null) if sdk == Sdk::Python => {
            return Err(FieldError::new(
                ErrorCode::MissingField,
                "properties_json.variation_key",
                "variation_key is missing: Python's variation_id is the variation's index, not \
                 its key, so it cannot stand in for it",
            ))
        }
        None | Some(Value::Null) => return Err(missing(&format!("properties_json.{variation_field}"))),
        Some(_) => {
            return Err(wrong_type(
                &format!("properties_json.{variation_field}"),
                "a string",
            ))
        }
    };
    let hash_attribute = optional_text(&mut properties, attribute_field);
    let hash_value = optional_text(&mut properties, value_field);

    let user_id = optional_text(&mut event, "user_id");
    let device_id = optional_text(&mut event, "device_id");
    let hashed_user = hash_attribute
        .as_deref()
        .filter(|attribute| *attribute == USER_ID_ATTRIBUTE)
        .and(hash_value.clone())
        .filter(|value| !value.is_empty());
    let ds_user_id = hashed_user.or_else(|| user_id.clone().filter(|id| !id.is_empty()));
    let anonymous_id = device_id.clone().filter(|id| !id.is_empty());
    if ds_user_id.is_none() && anonymous_id.is_none() {
        return Err(FieldError::new(
            ErrorCode::MissingUserId,
            "user_id",
            "the exposure has no user: give the SDK a `user_id` attribute (or `device_id`, \
             `anonymous_id` or `id`), as GrowthBook's identifier types expect",
        ));
    }

    let mut attributes = context;
    for (name, value) in [("user_id", &user_id), ("device_id", &device_id)] {
        if let Some(value) = value {
            attributes.insert(name.to_owned(), Value::String(value.clone()));
        }
    }
    for name in PROMOTED_FIELDS.iter().skip(2) {
        if let Some(value) = event.remove(*name).filter(|value| !value.is_null()) {
            attributes.insert((*name).to_owned(), value);
        }
    }

    let mut exposure = Map::new();
    if let Some(id) = ds_user_id {
        exposure.insert("ds_user_id".into(), Value::String(id));
    }
    if let Some(id) = anonymous_id {
        exposure.insert("anonymous_id".into(), Value::String(id));
    }
    exposure.insert("experiment_id".into(), Value::String(experiment_id));
    exposure.insert("variation_id".into(), Value::String(variation_key));
    exposure.insert("source".into(), Value::String(sdk.source().to_owned()));
    exposure.insert("attributes".into(), Value::Object(attributes));
    // Everything else is kept in `extra` (the normaliser puts unknown top-level fields
    // there): who hashed what, the SDK, the page, and the client key's environment.
    if let Some(environment) = origin.environment {
        exposure.insert("environment".into(), Value::String(environment.to_owned()));
    }
    if let Some(name) = event.remove("event_name") {
        exposure.insert("event_name".into(), name);
    }
    for (name, value) in [("hash_attribute", hash_attribute), ("hash_value", hash_value)] {
        if let Some(value) = value {
            exposure.insert(name.into(), Value::String(value));
        }
    }
    if sdk == Sdk::Python {
        if let Some(index) = properties.remove("variation_id") {
            exposure.insert("variation_index".into(), index);
        }
    }
    for name in ["in_experiment", "hash_used"] {
        if let Some(value) = properties.remove(name) {
            exposure.insert(name.into(), value);
        }
    }
    for name in DESCRIPTIVE_FIELDS {
        if let Some(value) = event.remove(name).filter(|value| !value.is_null()) {
            exposure.insert(name.into(), value);
        }
    }
    // Fields a later plugin adds, in the event or its properties: kept under one name,
    // so none can be mistaken for one of `/exposure`'s own (`event_id`, `timestamp`…).
    let mut unmapped = event;
    if !properties.is_empty() {
        unmapped.insert("properties_json".into(), Value::Object(properties));
    }
    if !unmapped.is_empty() {
        exposure.insert("plugin_fields".into(), Value::Object(unmapped));
    }
    Ok(exposure)
}

/// Which SDK's plugin sent an event, by its `sdk_language` (or, without one, by the
/// event's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    Js,
    Python,
}

impl Sdk {
    fn of(event: &Map<String, Value>) -> Sdk {
        match event.get("sdk_language").and_then(Value::as_str) {
            Some("python") => Sdk::Python,
            Some("js") => Sdk::Js,
            // Python's plugin names its own events `$$…`.
            _ => match event.get("event_name").and_then(Value::as_str) {
                Some(name) if name.starts_with("$$") => Sdk::Python,
                _ => Sdk::Js,
            },
        }
    }

    /// The exposure's `source`.
    fn source(self) -> &'static str {
        match self {
            Sdk::Js => "growthbook-js",
            Sdk::Python => "growthbook-python",
        }
    }
}

fn required_string<'a>(event: &'a Map<String, Value>, field: &str) -> Result<&'a str, FieldError> {
    match event.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(FieldError::new(
            ErrorCode::Empty,
            field,
            format!("{field} is empty"),
        )),
        None | Some(Value::Null) => Err(missing(field)),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

/// A required string property, taken out of `properties`.
fn take_string(properties: &mut Map<String, Value>, field: &str) -> Result<String, FieldError> {
    let path = format!("properties_json.{field}");
    match properties.remove(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(FieldError::new(
            ErrorCode::Empty,
            &path,
            format!("{path} is empty"),
        )),
        None | Some(Value::Null) => Err(missing(&path)),
        Some(_) => Err(wrong_type(&path, "a string")),
    }
}

/// An optional text field, taken out of `map`: a string as is, a number or boolean as
/// its JSON text (GrowthBook hashes any attribute value as text); anything else stays.
fn optional_text(map: &mut Map<String, Value>, field: &str) -> Option<String> {
    match map.get(field)? {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {}
        _ => return None,
    }
    match map.remove(field)? {
        Value::String(text) => Some(text),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn missing(field: &str) -> FieldError {
    FieldError::new(ErrorCode::MissingField, field, format!("{field} is missing"))
}

fn wrong_type(field: &str, expected: &str) -> FieldError {
    FieldError::new(ErrorCode::WrongType, field, format!("{field} must be {expected}"))
}

mod rows;

use rows::{custom_event_row, feature_usage_row};

#[cfg(test)]
mod tests;
