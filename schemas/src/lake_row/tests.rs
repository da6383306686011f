//! The borrowed row must be the row of the parsed record, byte for byte, for every
//! record ingest writes; and it must refuse what the loadable rules refuse, whatever
//! another producer wrote.

use super::*;
use crate::{ErrorCode, Normalizer};
use proptest::prelude::*;
use serde_json::json;

use crate::test_values::json_value;

fn exposure(body: Value) -> Exposure {
    Normalizer::default()
        .normalize(body, Utc::now())
        .expect("a valid exposure")
}

/// The row read from the record's Kafka value equals the row built from the record.
fn assert_same_row(exposure: &Exposure) {
    let value = exposure.to_json_bytes();
    let borrowed = LakeRow::from_kafka_value(&value).expect("loadable");
    assert_eq!(
        borrowed,
        LakeRow::from_exposure(exposure),
        "{}",
        String::from_utf8_lossy(&value)
    );
}

/// A hand-written Kafka value with `attributes` (and `extra`) as given, verbatim.
fn kafka_value(attributes: &str) -> Vec<u8> {
    format!(
        r#"{{"event_id":"e1","ds_user_id":"u","experiment_id":"x","variation_id":"1","exposed_at":"2026-11-25T12:00:00Z","received_at":"2026-11-25T12:00:00Z","attributes":{attributes}}}"#
    )
    .into_bytes()
}

fn refusal(value: &[u8]) -> FieldError {
    match LakeRow::from_kafka_value(value) {
        Err(RowError::NotLoadable(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_seed_record_is_read_without_a_parse_and_borrows_its_text() {
    let seed = exposure(json!({
        "ds_user_id": "user_12345", "experiment_id": "new_search_ui", "variation_id": 1,
        "attributes": {"id": "user_12345", "ds_session_id": "session_abc123",
            "user_agent": "Mozilla/5.0", "geo_country_code": "US", "geo_city": "New York",
            "currency_id": "USD", "locale": "en-US", "utm": {"source": "google", "medium": "cpc"},
            "is_kf_verified": true, "platform": "web"},
        "source": "search_core_python", "page": "/search"
    }));
    assert_same_row(&seed);
    let value = seed.to_json_bytes();
    let row = LakeRow::from_kafka_value(&value).unwrap();
    assert!(matches!(row.attributes, Some(Cow::Borrowed(_))));
    assert!(matches!(row.event_id, Cow::Borrowed(_)));
    assert!(matches!(
        row.promoted_text[0],
        Some(Cow::Borrowed("session_abc123"))
    ));
    assert_eq!(row.is_kf_verified, Some(true));
    assert_eq!(row.extra.as_deref(), Some(r#"{"page":"/search"}"#));
}

#[test]
fn odd_but_legal_records_give_the_same_row_both_ways() {
    for attributes in [
        json!({}),
        json!({"platform": {"nested": {"platform": "no"}}, "locale": ["en", {"a": 1}], "geo_city": null}),
        json!({"platform": 7.50, "locale": -0, "currency_id": true, "geo_city": false, "is_kf_verified": 1}),
        json!({"is_kf_verified": "TRUE", "user_agent": "quote \" backslash \\ slash / tab \t"}),
        json!({"is_kf_verified": "no", "ds_session_id": "\u{1}\u{1f}\u{7f}\u{2028}\u{feff}😀é"}),
        json!({"is_kf_verified": 0, "k\"ey": {"a\\b": "\u{0001}"}, "": ""}),
        json!({"big": 123456789012345678901234567890u128, "exp": 1.5e300, "tiny": 2e-5}),
        json!({"platform": "x".repeat(100), "geo_country_code": "é".repeat(40)}),
        json!({"a": [[[[[[1]]]]]], "b": {"c": {"d": {"e": {}}}}}),
    ] {
        assert_same_row(&exposure(json!({
            "anonymous_id": "anon \u{2028}", "experiment_id": "exp", "variation_id": "v",
            "attributes": attributes, "odd key \u{1}": [1, "two"]
        })));
    }
    let exponents = r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{"platform":1E2,"locale":1e-7}}"#;
    let body: Value = serde_json::from_str(exponents).unwrap();
    assert_same_row(&exposure(body));
}

#[test]
fn the_scan_takes_the_fast_path_only_for_what_it_can_vouch_for() {
    let clean = |text| matches!(scan_object(text, &PROMOTED), Scan::Clean(_));
    assert!(clean(
        r#"{"platform":"web","utm":{"platform":"x"},"n":[1,-2.5,{"k":"\\u0000"}]}"#
    ));
    assert!(clean(r#"{"s":"\u0001\"\\"}"#));
    for needs_parse in [
        r#"{ "platform":"web"}"#,
        r#"{"a":{"b":"x\u0000"}}"#,
        r#"{"a\u0000":1}"#,
        r#"{"a":1e5}"#,
        r#"{"a":1234567890123456}"#,
        r#"{"platfor\u006d":"web"}"#,
    ] {
        assert_eq!(
            scan_object(needs_parse, &PROMOTED),
            Scan::NeedsParse,
            "{needs_parse}"
        );
    }
    assert_eq!(scan_object("[1]", &PROMOTED), Scan::NotAnObject);
    let Scan::Clean(members) = scan_object(
        r#"{"platform":{"a":{"b":1}},"locale":"x","locale":"y","geo_city":[1,2]}"#,
        &PROMOTED,
    ) else {
        panic!("clean");
    };
    assert_eq!(members[5], Some(r#"{"a":{"b":1}}"#));
    assert_eq!(
        members[4],
        Some(r#""y""#),
        "the last of duplicate keys, as the parsed map keeps"
    );
    assert_eq!(members[2], Some("[1,2]"));
}

#[test]
fn other_producers_records_are_checked_and_stored_compact() {
    // Pretty-printed and with an escaped promoted key: parsed, stored compact, promoted.
    let value = kafka_value("{ \"platfor\\u006d\" : \"web\",\n \"n\": 1 }");
    let row = LakeRow::from_kafka_value(&value).unwrap();
    assert_eq!(row.attributes.as_deref(), Some(r#"{"platform":"web","n":1}"#));
    assert_eq!(row.promoted_text[5].as_deref(), Some("web"));
    // An escaped backslash before `u0000` is not a NUL.
    let value = kafka_value(r#"{"a":"\\u0000"}"#);
    let row = LakeRow::from_kafka_value(&value).unwrap();
    assert_eq!(row.attributes.as_deref(), Some(r#"{"a":"\\u0000"}"#));
    assert!(matches!(row.attributes, Some(Cow::Borrowed(_))));

    let error = refusal(&kafka_value(r#"{"utm":{"source":"a\u0000b"}}"#));
    assert_eq!(
        (error.code, error.field.as_deref()),
        (ErrorCode::NulCharacter, Some("attributes.utm.source"))
    );
    let error = refusal(&kafka_value(r#"{"deep":[{"n":1e400}]}"#));
    assert_eq!(
        (error.code, error.field.as_deref()),
        (ErrorCode::NumberOutOfRange, Some("attributes.deep[0].n"))
    );
    let huge = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_JSON_BYTES));
    let error = refusal(&kafka_value(&huge));
    assert_eq!(
        (error.code, error.field.as_deref()),
        (ErrorCode::TooLarge, Some("attributes"))
    );
    let fits = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_JSON_BYTES - 8));
    assert!(LakeRow::from_kafka_value(&kafka_value(&fits)).is_ok());

    assert!(matches!(
        LakeRow::from_kafka_value(&kafka_value("[1]")),
        Err(RowError::NotAnExposure(_))
    ));
    assert!(matches!(
        LakeRow::from_kafka_value(b"not an exposure: {"),
        Err(RowError::NotAnExposure(_))
    ));
    let value = kafka_value("null");
    let row = LakeRow::from_kafka_value(&value).unwrap();
    assert_eq!((row.attributes, row.promoted_text[0].clone()), (None, None));
}

#[test]
fn text_fields_from_other_producers_are_checked_by_the_same_rules() {
    let value = |field: &str, text: &str| {
        let mut record: Value = serde_json::from_slice(&kafka_value("{}")).unwrap();
        record[field] = json!(text);
        serde_json::to_vec(&record).unwrap()
    };
    let error = refusal(&value("experiment_id", "a\u{0}b"));
    assert_eq!(
        (error.code, error.field.as_deref()),
        (ErrorCode::NulCharacter, Some("experiment_id"))
    );
    let error = refusal(&value("variation_id", &"é".repeat(200))); // 400 bytes, 200 characters
    assert_eq!(error.code, ErrorCode::TooLong);
    assert!(LakeRow::from_kafka_value(&value("variation_id", &"é".repeat(128))).is_ok());
    let message = RowError::NotLoadable(error).to_string();
    assert!(
        message.starts_with("not loadable: ") && message.ends_with("(too_long)"),
        "{message}"
    );
}

proptest! {
    #[test]
    fn any_attributes_ingest_writes_give_the_row_of_the_parsed_record(
        members in prop::collection::vec(
            (prop_oneof![Just("platform".to_owned()), Just("ds_session_id".to_owned()),
                         Just("is_kf_verified".to_owned()), "[a-z\u{1}\"]{0,4}"], json_value()),
            0..8,
        )
    ) {
        let attributes: Map<String, Value> = members.into_iter().collect();
        let record = Exposure {
            event_id: "e1".into(),
            ds_user_id: Some("u".into()),
            anonymous_id: None,
            experiment_id: "x".into(),
            variation_id: "1".into(),
            exposed_at: Utc::now(),
            received_at: Utc::now(),
            source: None,
            attributes: Some(attributes.clone()),
            extra: Some(attributes),
        };
        let value = record.to_json_bytes();
        match LakeRow::from_kafka_value(&value) {
            Ok(row) => prop_assert_eq!(row, LakeRow::from_exposure(&record)),
            // A number beyond a double's range: refused, as the normaliser would have.
            Err(RowError::NotLoadable(error)) => prop_assert_eq!(error.code, ErrorCode::NumberOutOfRange),
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}
