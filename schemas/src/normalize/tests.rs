//! Tests of the normaliser: each rule of the field table, and odd-but-legal input.

use super::*;
use serde_json::json;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).single().unwrap()
}

fn seed_python_body() -> Value {
    json!({
        "ds_user_id": "user_12345", "experiment_id": "new_search_ui", "variation_id": "1",
        "attributes": {"id": "user_12345", "ds_user_id": "user_12345", "ds_session_id": "session_abc123",
            "user_agent": "Mozilla/5.0", "geo_country_code": "US", "geo_city": "New York",
            "currency_id": "USD", "locale": "en-US", "utm": {"source": "google", "medium": "cpc"},
            "forwarded_for": "192.168.1.1", "is_kf_verified": true, "platform": "web"},
        "source": "search_core_python"
    })
}

fn reject(body: Value) -> FieldError {
    Normalizer::default().normalize(body, now()).unwrap_err()
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

#[test]
fn seed_body_is_kept_intact() {
    let body = seed_python_body();
    let e = Normalizer::default().normalize(body.clone(), now()).unwrap();
    assert_eq!(e.ds_user_id.as_deref(), Some("user_12345"));
    assert_eq!(e.experiment_id, "new_search_ui");
    assert_eq!(e.variation_id, "1");
    assert_eq!(e.source.as_deref(), Some("search_core_python"));
    assert_eq!(Value::Object(e.attributes.clone().unwrap()), body["attributes"]);
    assert_eq!(e.exposed_at, now());
    assert_eq!(e.received_at, now());
    assert!(e.extra.is_none());
    assert_eq!(Uuid::parse_str(&e.event_id).unwrap().get_version_num(), 7);
    assert_eq!(e.partition_key(), "user_12345");
    // Attribute order survives, so the stored JSON is what the SDK sent.
    let keys: Vec<_> = e.attributes.unwrap().keys().cloned().collect();
    assert_eq!(keys.first().map(String::as_str), Some("id"));
    assert_eq!(keys.last().map(String::as_str), Some("platform"));
}

#[test]
fn integer_variation_becomes_string() {
    let e = Normalizer::default()
        .normalize(with(seed_python_body(), "variation_id", json!(2)), now())
        .unwrap();
    assert_eq!(e.variation_id, "2");
}

#[test]
fn float_or_bool_variation_is_rejected() {
    for bad in [json!(1.5), json!(true), json!({"k": 1})] {
        let err = reject(with(seed_python_body(), "variation_id", bad));
        assert_eq!(err.code, ErrorCode::WrongType);
        assert_eq!(err.field.as_deref(), Some("variation_id"));
    }
}

#[test]
fn user_id_alternatives() {
    let mut body = seed_python_body();
    body.as_object_mut().unwrap().shift_remove("ds_user_id");
    let err = reject(body.clone());
    assert_eq!(err.code, ErrorCode::MissingUserId);

    let e = Normalizer::default()
        .normalize(with(body.clone(), "anonymous_id", json!("anon-1")), now())
        .unwrap();
    assert_eq!(e.ds_user_id, None);
    assert_eq!(e.partition_key(), "anon-1");

    let e = Normalizer::default()
        .normalize(with(body.clone(), "user_id", json!("u-9")), now())
        .unwrap();
    assert_eq!(e.ds_user_id.as_deref(), Some("u-9"));

    let e = Normalizer::default()
        .normalize(with(seed_python_body(), "user_id", json!("other")), now())
        .unwrap();
    assert_eq!(e.ds_user_id.as_deref(), Some("user_12345"));
    assert_eq!(e.extra.unwrap()["user_id"], json!("other"));

    assert_eq!(
        reject(with(body.clone(), "ds_user_id", json!(""))).code,
        ErrorCode::MissingUserId
    );
    assert_eq!(
        reject(with(body, "ds_user_id", json!(["x"]))).code,
        ErrorCode::WrongType
    );
}

#[test]
fn length_limits_are_in_bytes() {
    let ok = "é".repeat(128); // 256 bytes
    assert!(Normalizer::default()
        .normalize(with(seed_python_body(), "experiment_id", json!(ok)), now())
        .is_ok());
    let err = reject(with(seed_python_body(), "experiment_id", json!("é".repeat(129))));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLong, Some("experiment_id"))
    );
    let err = reject(with(seed_python_body(), "source", json!("s".repeat(129))));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLong, Some("source"))
    );
    let err = reject(with(seed_python_body(), "ds_user_id", json!("u".repeat(257))));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLong, Some("ds_user_id"))
    );
}

#[test]
fn missing_and_empty_required_fields() {
    let mut body = seed_python_body();
    body.as_object_mut().unwrap().shift_remove("experiment_id");
    let err = reject(body);
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::MissingField, Some("experiment_id"))
    );
    let err = reject(with(seed_python_body(), "variation_id", json!("")));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::Empty, Some("variation_id"))
    );
    assert_eq!(reject(json!([1, 2])).code, ErrorCode::NotAnObject);
}

#[test]
fn attributes_size_and_depth() {
    let big = json!({"blob": "x".repeat(33 * 1024)});
    let err = reject(with(seed_python_body(), "attributes", big));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLarge, Some("attributes"))
    );

    let mut deep = json!("leaf");
    for _ in 0..8 {
        deep = json!({ "n": deep });
    }
    assert!(Normalizer::default()
        .normalize(with(seed_python_body(), "attributes", deep.clone()), now())
        .is_ok());
    let err = reject(with(seed_python_body(), "attributes", json!({ "n": deep })));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooDeep, Some("attributes"))
    );

    let err = reject(with(seed_python_body(), "attributes", json!("a string")));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::WrongType, Some("attributes"))
    );
}

#[test]
fn timestamp_in_window_becomes_exposed_at() {
    let e = Normalizer::default()
        .normalize(
            with(
                seed_python_body(),
                "timestamp",
                json!("2026-11-25T11:00:00.123456789Z"),
            ),
            now(),
        )
        .unwrap();
    assert_eq!(e.exposed_at.to_rfc3339(), "2026-11-25T11:00:00.123456+00:00");
    let millis = now().timestamp_millis() - 60_000;
    let e = Normalizer::default()
        .normalize(with(seed_python_body(), "timestamp", json!(millis)), now())
        .unwrap();
    assert_eq!(e.exposed_at.timestamp_millis(), millis);
    assert!(e.extra.is_none());
}

#[test]
fn timestamp_outside_window_is_kept_in_extra() {
    for raw in [
        json!("2020-01-01T00:00:00Z"),
        json!(now().timestamp_millis() + 600_000),
    ] {
        let e = Normalizer::default()
            .normalize(with(seed_python_body(), "timestamp", raw.clone()), now())
            .unwrap();
        assert_eq!(e.exposed_at, now());
        assert_eq!(e.extra.unwrap()["timestamp"], raw);
    }
}

#[test]
fn malformed_timestamp_is_rejected() {
    for raw in [json!("yesterday"), json!(true), json!(1e300)] {
        let err = reject(with(seed_python_body(), "timestamp", raw));
        assert_eq!(
            (err.code, err.field.as_deref()),
            (ErrorCode::InvalidTimestamp, Some("timestamp"))
        );
    }
}

#[test]
fn event_id_rules() {
    let e = Normalizer::default()
        .normalize(
            with(
                seed_python_body(),
                "event_id",
                json!("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            ),
            now(),
        )
        .unwrap();
    assert_eq!(e.event_id, "6f9619ff-8b86-d011-b42d-00c04fc964ff");
    let e = Normalizer::default()
        .normalize(with(seed_python_body(), "event_id", json!("client-42")), now())
        .unwrap();
    assert_eq!(e.event_id, "client-42");
    let err = reject(with(seed_python_body(), "event_id", json!("x".repeat(129))));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLong, Some("event_id"))
    );
    let err = reject(with(seed_python_body(), "event_id", json!(42)));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::WrongType, Some("event_id"))
    );
}

#[test]
fn unknown_fields_are_kept_in_extra() {
    let e = Normalizer::default()
        .normalize(
            with(seed_python_body(), "page", json!({"path": "/search"})),
            now(),
        )
        .unwrap();
    assert_eq!(e.extra.unwrap()["page"], json!({"path": "/search"}));
    let err = reject(with(seed_python_body(), "blob", json!("x".repeat(40_000))));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLarge, Some("extra"))
    );
}

#[test]
fn nul_anywhere_is_refused_naming_the_field() {
    let cases = [
        ("ds_user_id", json!("u\u{0}1"), "ds_user_id"),
        ("anonymous_id", json!("\u{0}"), "anonymous_id"),
        ("user_id", json!("a\u{0}"), "user_id"),
        ("experiment_id", json!("exp\u{0}"), "experiment_id"),
        ("variation_id", json!("\u{0}1"), "variation_id"),
        ("source", json!("py\u{0}"), "source"),
        ("event_id", json!("client-\u{0}-42"), "event_id"),
        (
            "attributes",
            json!({"platform": "web\u{0}"}),
            "attributes.platform",
        ),
        (
            "attributes",
            json!({"utm": {"source": ["ok", "\u{0}"]}}),
            "attributes.utm.source[1]",
        ),
        ("attributes", json!({"k\u{0}ey": 1}), "attributes[\"k\\u0000ey\"]"),
        ("page", json!({"path": "/search\u{0}"}), "page.path"),
        ("page\u{0}", json!(1), "[\"page\\u0000\"]"),
    ];
    for (member, value, field) in cases {
        let err = reject(with(seed_python_body(), member, value));
        assert_eq!(
            (err.code, err.field.as_deref()),
            (ErrorCode::NulCharacter, Some(field)),
            "{member}"
        );
        assert_eq!(err.code.as_str(), "nul_character");
    }
    // A client timestamp with a NUL is not a timestamp.
    let err = reject(with(
        seed_python_body(),
        "timestamp",
        json!("2026-11-25T11:00:00Z\u{0}"),
    ));
    assert_eq!(err.code, ErrorCode::InvalidTimestamp);
}

#[test]
fn byte_limits_count_multi_byte_characters() {
    // 4-byte characters: 32 fill event_id's 128 bytes exactly, 33 do not fit.
    let e = Normalizer::default()
        .normalize(
            with(seed_python_body(), "event_id", json!("😀".repeat(32))),
            now(),
        )
        .unwrap();
    assert_eq!(e.event_id.len(), 128);
    let err = reject(with(seed_python_body(), "event_id", json!("😀".repeat(33))));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLong, Some("event_id"))
    );
    // 3-byte characters: 85 are 255 bytes, 86 are 258.
    for field in ["ds_user_id", "anonymous_id", "user_id", "variation_id"] {
        assert!(Normalizer::default()
            .normalize(with(seed_python_body(), field, json!("€".repeat(85))), now())
            .is_ok());
        let err = reject(with(seed_python_body(), field, json!("€".repeat(86))));
        assert_eq!(
            (err.code, err.field.as_deref()),
            (ErrorCode::TooLong, Some(field))
        );
        assert!(err.message.contains("258 bytes"), "{}", err.message);
    }
    let err = reject(with(seed_python_body(), "source", json!("ß".repeat(65))));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLong, Some("source"))
    );
}

#[test]
fn the_default_limits_are_the_column_widths() {
    let limits = Limits::default();
    for column in ["ds_user_id", "anonymous_id", "experiment_id", "variation_id"] {
        assert_eq!(limits.max_id_bytes, column_max_bytes(column), "{column}");
    }
    assert_eq!(limits.max_source_bytes, column_max_bytes("source"));
    assert_eq!(limits.max_event_id_bytes, column_max_bytes("event_id"));
    assert!(limits.max_attributes_bytes <= MAX_JSON_BYTES);
    assert!(limits.max_extra_bytes <= MAX_JSON_BYTES);
}

#[test]
fn generous_limits_never_exceed_what_the_warehouse_holds() {
    let generous = Normalizer {
        limits: Limits {
            max_id_bytes: 10_000,
            max_source_bytes: 10_000,
            max_event_id_bytes: 10_000,
            max_attributes_bytes: 10 * 1024 * 1024,
            max_extra_bytes: 10 * 1024 * 1024,
            ..Limits::default()
        },
        ..Normalizer::default()
    };
    let refuse = |body: Value| generous.normalize(body, now()).unwrap_err();
    for (field, max) in [
        ("experiment_id", 256),
        ("source", 128),
        ("event_id", 128),
        ("ds_user_id", 256),
    ] {
        let err = refuse(with(seed_python_body(), field, json!("x".repeat(max + 1))));
        assert_eq!(
            (err.code, err.field.as_deref()),
            (ErrorCode::TooLong, Some(field))
        );
    }
    // {"b":"…"} is 8 bytes of JSON around the string.
    let fits = json!({"b": "x".repeat(MAX_JSON_BYTES - 8)});
    let e = generous
        .normalize(with(seed_python_body(), "attributes", fits), now())
        .unwrap();
    assert_eq!(serde_json::to_vec(&e.attributes).unwrap().len(), MAX_JSON_BYTES);
    let err = refuse(with(
        seed_python_body(),
        "attributes",
        json!({"b": "x".repeat(MAX_JSON_BYTES - 7)}),
    ));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLarge, Some("attributes"))
    );
    assert!(err.message.contains("65536 bytes"), "{}", err.message);
    // Multi-byte characters count as their bytes: 21,846 × 3 bytes + 8 > 65,535.
    let err = refuse(with(
        seed_python_body(),
        "attributes",
        json!({"b": "€".repeat(21_846)}),
    ));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLarge, Some("attributes"))
    );
    let err = refuse(with(
        seed_python_body(),
        "page",
        json!("x".repeat(MAX_JSON_BYTES)),
    ));
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLarge, Some("extra"))
    );
}

#[test]
fn attributes_are_measured_as_stored_after_the_privacy_policy() {
    // Hashing turns "1.1.1.1" (7 bytes) into "sha256:…" (71 bytes).
    let hashing = Normalizer {
        ip_policy: IpPolicy::Hash,
        ..Normalizer::default()
    };
    let limit = Limits::default().max_attributes_bytes;
    let pad = limit - r#"{"forwarded_for":"1.1.1.1","pad":""}"#.len();
    let attributes = json!({"forwarded_for": "1.1.1.1", "pad": "x".repeat(pad)});
    assert!(Normalizer::default()
        .normalize(with(seed_python_body(), "attributes", attributes.clone()), now())
        .is_ok());
    let err = hashing
        .normalize(with(seed_python_body(), "attributes", attributes), now())
        .unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::TooLarge, Some("attributes"))
    );
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

#[test]
fn numbers_are_kept_digit_for_digit() {
    let body = parse(
        r#"{"ds_user_id": "u", "experiment_id": "e", "variation_id": "1",
            "attributes": {"big": 123456789012345678901234567890, "neg": -98765432109876543210,
                "u64max": 18446744073709551615, "pi": 3.14159265358979323846264338327950288,
                "cents": 1.50, "sci": 6.02e23, "zero": -0, "nested": [{"n": 1e-300}]},
            "order_total": 99999999999999999999.99}"#,
    );
    let e = Normalizer::default().normalize(body, now()).unwrap();
    let kafka_value = String::from_utf8(e.to_json_bytes()).unwrap();
    for digits in [
        r#""big":123456789012345678901234567890"#,
        r#""neg":-98765432109876543210"#,
        r#""u64max":18446744073709551615"#,
        r#""pi":3.14159265358979323846264338327950288"#,
        r#""cents":1.50"#,
        r#""sci":6.02e+23"#,
        r#""zero":-0"#,
        r#"{"n":1e-300}"#,
        r#""order_total":99999999999999999999.99"#,
    ] {
        assert!(kafka_value.contains(digits), "{digits} not in {kafka_value}");
    }
    // What the sink decodes is the same record.
    let back: Exposure = serde_json::from_slice(kafka_value.as_bytes()).unwrap();
    assert_eq!(back, e);
    assert_eq!(String::from_utf8(back.to_json_bytes()).unwrap(), kafka_value);
}

#[test]
fn numbers_beyond_a_double_are_refused_naming_the_field() {
    for (member, text, field) in [
        ("attributes", r#"{"n": 1e400}"#, "attributes.n"),
        ("attributes", r#"{"a": [0, -1E+309]}"#, "attributes.a[1]"),
        ("attributes", r#"{"tiny": 1e-400}"#, "attributes.tiny"),
        ("page", r#"{"score": 1e999}"#, "page.score"),
        ("weight", r#"1e400"#, "weight"),
    ] {
        let err = reject(with(seed_python_body(), member, parse(text)));
        assert_eq!(
            (err.code, err.field.as_deref()),
            (ErrorCode::NumberOutOfRange, Some(field)),
            "{text}"
        );
        assert_eq!(err.code.as_str(), "number_out_of_range");
    }
}

#[test]
fn integer_ids_are_canonical_and_64_bit() {
    let e = Normalizer::default()
        .normalize(with(seed_python_body(), "variation_id", parse("-0")), now())
        .unwrap();
    assert_eq!(e.variation_id, "0");
    let e = Normalizer::default()
        .normalize(
            with(seed_python_body(), "ds_user_id", parse("18446744073709551615")),
            now(),
        )
        .unwrap();
    assert_eq!(e.ds_user_id.as_deref(), Some("18446744073709551615"));
    for (field, text) in [
        ("variation_id", "123456789012345678901234567890"),
        ("variation_id", "1e2"),
        ("ds_user_id", "18446744073709551616"),
        ("anonymous_id", "1.0"),
    ] {
        let err = reject(with(seed_python_body(), field, parse(text)));
        assert_eq!(
            (err.code, err.field.as_deref()),
            (ErrorCode::WrongType, Some(field)),
            "{text}"
        );
    }
}

#[test]
fn odd_keys_and_unicode_keep_their_order_and_text() {
    let attributes = parse(
        r#"{"z": 1, "a.b": "dot", "q\"uote": "\u2028\u2029", "back\\slash": "😀", "": "", "é": {"y": 2, "x": 1}}"#,
    );
    let e = Normalizer::default()
        .normalize(with(seed_python_body(), "attributes", attributes.clone()), now())
        .unwrap();
    let stored = Value::Object(e.attributes.clone().unwrap());
    assert_eq!(stored, attributes);
    let keys: Vec<&str> = e
        .attributes
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["z", "a.b", "q\"uote", "back\\slash", "", "é"]);
    let text = serde_json::to_string(&stored).unwrap();
    assert!(text.ends_with(r#""é":{"y":2,"x":1}}"#), "{text}");
}

#[test]
fn json_round_trip() {
    let e = Normalizer::default()
        .normalize(seed_python_body(), now())
        .unwrap();
    let back: Exposure = serde_json::from_slice(&e.to_json_bytes()).unwrap();
    assert_eq!(back, e);
}
