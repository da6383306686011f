use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::Array;
use serde_json::json;

use super::*;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn feature_row() -> Map<String, Value> {
    object(json!({
        "event_id": "0190b6a4-0000-7000-8000-000000000001",
        "received_at": "2026-12-05T08:00:00.123456Z",
        "environment": "production",
        "feature_key": "free_shipping",
        "value": {"limit": 3, "tiers": [1.5, 12345678901234567890u64]},
        "source": "force",
        "in_experiment": false,
        "user_id": "ü-🚀",
        "attributes": {"country": "US"},
        "sdk_language": "js"
    }))
}

#[test]
fn a_row_goes_to_kafka_and_back_unchanged() {
    let row = TrackedRow::from_object(&FEATURE_USAGE, feature_row()).expect("row");
    let value = row.to_kafka_value();
    assert!(
        value.starts_with(b"{\"$table\":\"feature_usage\","),
        "{}",
        String::from_utf8_lossy(&value)
    );
    assert_eq!(TrackedRow::table_of_kafka_value(&value), Some(&FEATURE_USAGE));
    assert_eq!(TrackedRow::from_kafka_value(&value).expect("read back"), row);
    assert_eq!(row.partition_key(), "ü-🚀");
    // Numbers keep the digits that were sent.
    assert_eq!(
        row.cell("value"),
        Some(&Cell::Json(Some(
            r#"{"limit":3,"tiers":[1.5,12345678901234567890]}"#.into()
        )))
    );
    // An exposure record is not taken for a tracked row.
    assert_eq!(TrackedRow::table_of_kafka_value(br#"{"event_id":"x"}"#), None);
    assert_eq!(TrackedRow::table_of_kafka_value(br#"{"$table":"featur"}"#), None);
}

#[test]
fn what_a_warehouse_cannot_store_is_refused_and_named() {
    let cases = [
        (
            "feature_key",
            json!("a\u{0}b"),
            ErrorCode::NulCharacter,
            "feature_key",
        ),
        (
            "feature_key",
            json!("k".repeat(257)),
            ErrorCode::TooLong,
            "feature_key",
        ),
        ("feature_key", Value::Null, ErrorCode::MissingField, "feature_key"),
        ("feature_key", json!(7), ErrorCode::WrongType, "feature_key"),
        ("value", json!({"a": "\u{0}"}), ErrorCode::NulCharacter, "value.a"),
        (
            "value",
            json!({"\u{0}": 1}),
            ErrorCode::NulCharacter,
            "value[\"\\u0000\"]",
        ),
        ("value", json!("x".repeat(70_000)), ErrorCode::TooLarge, "value"),
        (
            "in_experiment",
            json!("yes"),
            ErrorCode::WrongType,
            "in_experiment",
        ),
        (
            "received_at",
            json!("yesterday"),
            ErrorCode::WrongType,
            "received_at",
        ),
        ("not_a_column", json!(1), ErrorCode::WrongType, "not_a_column"),
    ];
    for (field, value, code, named) in cases {
        let mut row = feature_row();
        row.insert(field.to_owned(), value);
        let error = TrackedRow::from_object(&FEATURE_USAGE, row).expect_err(field);
        assert_eq!(
            (error.code, error.field.as_deref()),
            (code, Some(named)),
            "{field}"
        );
    }
    let mut deep = json!(1);
    for _ in 0..MAX_JSON_DEPTH + 1 {
        deep = json!([deep]);
    }
    let mut row = feature_row();
    row.insert("value".into(), deep);
    let error = TrackedRow::from_object(&FEATURE_USAGE, row).expect_err("deep");
    assert_eq!(error.code, ErrorCode::TooDeep);
}

#[test]
fn a_batch_has_the_tables_schema_with_the_kafka_position_last() {
    let row = TrackedRow::from_object(&FEATURE_USAGE, feature_row()).expect("row");
    let mut builder = TrackedBatchBuilder::new(&FEATURE_USAGE);
    builder.append(&row, 3, 42).expect("append");
    builder.append(&row, 3, 43).expect("append");
    let batch = builder.finish().expect("batch");
    assert_eq!(batch.schema(), FEATURE_USAGE.arrow_schema());
    assert_eq!(batch.num_rows(), 2);
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .expect(name)
            .as_string::<i32>()
            .value(0)
            .to_owned()
    };
    assert_eq!(text("feature_key"), "free_shipping");
    assert_eq!(text("user_id"), "ü-🚀");
    assert!(batch.column_by_name("rule_id").expect("rule_id").is_null(0));
    let time = batch
        .column_by_name("received_at")
        .expect("time")
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    assert_eq!(time % 1_000_000, 123_456);
    let offsets = batch
        .column_by_name("kafka_offset")
        .expect("offset")
        .as_primitive::<Int64Type>();
    assert_eq!((offsets.value(0), offsets.value(1)), (42, 43));
    assert_eq!(builder.rows(), 0, "finish empties the builder");

    let event = TrackedRow::from_object(
        &EVENTS,
        object(json!({"event_id": "e", "received_at": "2026-12-05T08:00:00Z", "event_name": "Purchase"})),
    )
    .expect("event");
    assert!(builder.append(&event, 0, 0).is_err(), "another table's row");
}

#[test]
fn both_tables_end_with_the_kafka_position_and_name_their_user_and_time() {
    for table in TRACKED_TABLES {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        assert_eq!(
            names[names.len() - 2..],
            ["kafka_partition", "kafka_offset"],
            "{}",
            table.name
        );
        assert_eq!(names[..2], ["event_id", "received_at"], "{}", table.name);
        assert!(names.contains(&table.user_column) && names.contains(&table.time_column));
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{}", table.name);
    }
}
