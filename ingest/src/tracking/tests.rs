use serde_json::{json, Value};

use super::*;

fn judged(event: Value, environment: Option<&str>) -> Result<Tracked, FieldError> {
    judge(&event.to_string(), Origin { environment }).1
}

fn exposure(event: Value) -> Map<String, Value> {
    match judged(event, Some("production")) {
        Ok(Tracked::Exposure(exposure)) => exposure,
        other => panic!("not an exposure: {other:?}"),
    }
}

/// What JS 1.8's plugin sends for an experiment view (`getEventPayload`).
fn js_experiment_viewed() -> Value {
    json!({
        "event_name": "Experiment Viewed",
        "properties_json": {"experimentId": "checkout-button-color", "variationId": "green",
                            "hashAttribute": "user_id", "hashValue": "u-1"},
        "user_id": "u-1", "device_id": "d-1", "page_id": null, "session_id": null,
        "utm_source": "newsletter",
        "sdk_language": "js", "sdk_version": "1.8.0", "url": "https://shop.example/cart",
        "context_json": {"country": "DE", "nested": {"a": [1, 2]}}
    })
}

/// What Python 4.0's plugin sends for an experiment view (`_build_event_payload`).
fn python_experiment_viewed() -> Value {
    json!({
        "event_name": "$$experiment_viewed",
        "properties_json": {"experiment_id": "checkout-button-color", "variation_id": 1,
                            "variation_key": "green", "in_experiment": true, "hash_used": true,
                            "hash_attribute": "user_id", "hash_value": "u-1"},
        "sdk_language": "python", "sdk_version": "4.0.0", "url": "",
        "context_json": {"country": "DE"},
        "user_id": "u-1", "device_id": null, "page_id": null, "session_id": null
    })
}

#[test]
fn a_js_exposure_keeps_the_variation_key_and_every_plugin_field() {
    let exposure = exposure(js_experiment_viewed());
    assert_eq!(
        Value::Object(exposure),
        json!({
            "ds_user_id": "u-1",
            "anonymous_id": "d-1",
            "experiment_id": "checkout-button-color",
            "variation_id": "green",
            "source": "growthbook-js",
            "attributes": {"country": "DE", "nested": {"a": [1, 2]}, "user_id": "u-1",
                           "device_id": "d-1", "utm_source": "newsletter"},
            "environment": "production",
            "event_name": "Experiment Viewed",
            "hash_attribute": "user_id",
            "hash_value": "u-1",
            "sdk_language": "js",
            "sdk_version": "1.8.0",
            "url": "https://shop.example/cart"
        })
    );
}

#[test]
fn a_python_exposure_takes_the_variation_key_never_the_index() {
    let exposure = exposure(python_experiment_viewed());
    assert_eq!(exposure["variation_id"], "green");
    assert_eq!(exposure["variation_index"], 1);
    assert_eq!(exposure["source"], "growthbook-python");
    assert_eq!(exposure["in_experiment"], true);
    assert_eq!(exposure["hash_used"], true);
    assert_eq!(exposure["ds_user_id"], "u-1");
    assert!(!exposure.contains_key("anonymous_id"));

    let mut without_key = python_experiment_viewed();
    without_key["properties_json"]
        .as_object_mut()
        .expect("object")
        .remove("variation_key");
    let error = judged(without_key, None).expect_err("no key");
    assert_eq!(error.code, ErrorCode::MissingField);
    assert_eq!(error.field.as_deref(), Some("properties_json.variation_key"));
}

#[test]
fn ds_user_id_is_the_hashed_value_only_when_the_user_id_attribute_was_hashed() {
    let mut event = js_experiment_viewed();
    event["properties_json"]["hashValue"] = json!("hashed-user");
    assert_eq!(exposure(event.clone())["ds_user_id"], "hashed-user");

    // Hashed on another attribute: the user is the `user_id` field, and the hash is kept.
    event["properties_json"]["hashAttribute"] = json!("id");
    let exposure_on_id = exposure(event.clone());
    assert_eq!(exposure_on_id["ds_user_id"], "u-1");
    assert_eq!(exposure_on_id["hash_attribute"], "id");
    assert_eq!(exposure_on_id["hash_value"], "hashed-user");

    // No user id at all: the device id alone still identifies the exposure.
    event["user_id"] = Value::Null;
    let anonymous = exposure(event.clone());
    assert!(!anonymous.contains_key("ds_user_id"));
    assert_eq!(anonymous["anonymous_id"], "d-1");

    event["device_id"] = Value::Null;
    let error = judged(event, None).expect_err("nobody");
    assert_eq!(error.code, ErrorCode::MissingUserId);
}

#[test]
fn a_numeric_hash_value_is_kept_as_its_text() {
    let mut event = js_experiment_viewed();
    event["properties_json"]["hashValue"] = json!(12345678901234567890u64);
    assert_eq!(exposure(event)["ds_user_id"], "12345678901234567890");
}

#[test]
fn fields_a_later_plugin_adds_are_kept_apart_from_the_exposure_fields() {
    let mut event = js_experiment_viewed();
    event["event_id"] = json!("not-an-exposure-id");
    event["timestamp"] = json!("2020-01-01T00:00:00Z");
    event["properties_json"]["bucket"] = json!(0.25);
    let exposure = exposure(event);
    assert!(!exposure.contains_key("event_id"));
    assert!(!exposure.contains_key("timestamp"));
    assert_eq!(
        exposure["plugin_fields"],
        json!({"event_id": "not-an-exposure-id", "timestamp": "2020-01-01T00:00:00Z",
               "properties_json": {"bucket": 0.25}})
    );
}

fn columns(event: Value) -> Value {
    match judged(event, Some("staging")) {
        Ok(Tracked::FeatureEvaluation(row) | Tracked::Custom(row)) => Value::Object(row),
        other => panic!("not a tracked row: {other:?}"),
    }
}

#[test]
fn a_js_feature_evaluation_becomes_its_feature_usage_columns() {
    let row = columns(json!({
        "event_name": "Feature Evaluated",
        "properties_json": {"feature": "checkout_button", "source": "experiment",
                            "value": {"color": "green"}, "ruleId": "fr_1", "variationId": "green"},
        "user_id": "u-1", "device_id": "d-1", "page_id": "p-1", "session_id": null,
        "sdk_language": "js", "sdk_version": "1.8.0", "url": "https://shop.example/",
        "context_json": {"country": "DE"}
    }));
    assert_eq!(
        row,
        json!({
            "feature_key": "checkout_button", "value": {"color": "green"}, "source": "experiment",
            "rule_id": "fr_1", "variation_id": "green", "environment": "staging",
            "user_id": "u-1", "device_id": "d-1", "url": "https://shop.example/",
            "sdk_language": "js", "sdk_version": "1.8.0",
            "attributes": {"country": "DE", "page_id": "p-1"}
        })
    );
    // The default value: no rule, no variation (JS sends "" for both).
    let default = columns(json!({
        "event_name": "Feature Evaluated",
        "properties_json": {"feature": "f", "source": "defaultValue", "value": false,
                            "ruleId": "", "variationId": ""},
        "sdk_language": "js"
    }));
    assert_eq!(
        default,
        json!({"feature_key": "f", "value": false, "source": "defaultValue",
               "environment": "staging", "sdk_language": "js"})
    );
}

#[test]
fn a_python_feature_evaluation_keeps_the_variation_index_apart_from_the_key() {
    let row = columns(json!({
        "event_name": "$$feature_evaluated",
        "properties_json": {"feature_key": "checkout_button", "feature_value": "green",
                            "source": "experiment", "rule_id": "fr_1",
                            "experiment_id": "checkout-button-color", "variation_id": 1,
                            "in_experiment": true},
        "sdk_language": "python", "sdk_version": "4.0.0", "url": "",
        "context_json": {}, "user_id": "u-1", "device_id": null, "page_id": null, "session_id": null
    }));
    assert_eq!(
        row,
        json!({
            "feature_key": "checkout_button", "value": "green", "source": "experiment",
            "rule_id": "fr_1", "experiment_id": "checkout-button-color", "in_experiment": true,
            "environment": "staging", "user_id": "u-1",
            "sdk_language": "python", "sdk_version": "4.0.0",
            "extra": {"variation_index": 1}
        })
    );
}

#[test]
fn a_custom_event_keeps_its_properties_and_page_fields() {
    let row = columns(json!({
        "event_name": "Purchase",
        "properties_json": {"amount": 12.5, "items": [{"sku": "ü-1"}]},
        "user_id": "u-1", "device_id": "d-1", "page_id": "p-1", "session_id": "s-1",
        "page_title": "Cart", "utm_source": "newsletter", "utm_term": "boots",
        "sdk_language": "js", "sdk_version": "1.8.0", "url": "https://shop.example/cart",
        "context_json": {"country": "DE"}, "from_a_later_plugin": 1
    }));
    assert_eq!(
        row,
        json!({
            "event_name": "Purchase", "properties": {"amount": 12.5, "items": [{"sku": "ü-1"}]},
            "environment": "staging", "user_id": "u-1", "device_id": "d-1",
            "url": "https://shop.example/cart", "sdk_language": "js", "sdk_version": "1.8.0",
            "page_id": "p-1", "session_id": "s-1", "page_title": "Cart",
            "utm_source": "newsletter", "utm_term": "boots",
            "attributes": {"country": "DE"}, "extra": {"from_a_later_plugin": 1}
        })
    );
    assert_eq!(
        judged(json!({"event_name": "$$feature_evaluated"}), None)
            .map(|_| ())
            .unwrap_err()
            .field
            .as_deref(),
        Some("properties_json.feature_key")
    );
}

#[test]
fn a_malformed_event_names_what_to_fix() {
    let cases = [
        (json!([1]), ErrorCode::NotAnObject, None),
        (
            json!({"properties_json": {}}),
            ErrorCode::MissingField,
            Some("event_name"),
        ),
        (json!({"event_name": ""}), ErrorCode::Empty, Some("event_name")),
        (json!({"event_name": 7}), ErrorCode::WrongType, Some("event_name")),
        (
            json!({"event_name": "Experiment Viewed", "properties_json": []}),
            ErrorCode::WrongType,
            Some("properties_json"),
        ),
        (
            json!({"event_name": "Experiment Viewed", "properties_json": {"variationId": "a"}, "user_id": "u"}),
            ErrorCode::MissingField,
            Some("properties_json.experimentId"),
        ),
        (
            json!({"event_name": "Experiment Viewed", "properties_json": {"experimentId": "e"}, "user_id": "u"}),
            ErrorCode::MissingField,
            Some("properties_json.variationId"),
        ),
        (
            json!({"event_name": "Experiment Viewed", "context_json": "x",
                   "properties_json": {"experimentId": "e", "variationId": "a"}, "user_id": "u"}),
            ErrorCode::WrongType,
            Some("context_json"),
        ),
    ];
    for (event, code, field) in cases {
        let error = judged(event.clone(), None).expect_err(&event.to_string());
        assert_eq!((error.code, error.field.as_deref()), (code, field), "{event}");
    }
}

#[test]
fn a_long_url_or_campaign_is_cut_to_its_column_and_kept_whole_in_extra() {
    let url = format!("https://shop.example/{}", "é".repeat(3000));
    let row = columns(json!({
        "event_name": "Purchase", "url": url, "utm_campaign": "c".repeat(300),
        "sdk_language": "js", "user_id": "u"
    }));
    let cut = row["url"].as_str().expect("url");
    assert!(cut.len() <= 4096 && url.starts_with(cut), "{}", cut.len());
    assert_eq!(row["utm_campaign"], "c".repeat(256));
    assert_eq!(row["extra"]["url"], url);
    assert_eq!(row["extra"]["utm_campaign"], "c".repeat(300));
}
