//! The encoder must give what the normaliser gives, byte for byte and error for error,
//! whatever the client sent; and it must give it without the map for what SDKs send.

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::{json, Map};

use super::*;
use crate::test_values::json_value;
use crate::IpPolicy;

fn received_at() -> DateTime<Utc> {
    Utc.timestamp_micros(1_795_608_000_123_456)
        .single()
        .expect("a time")
}

/// What the encoder gives, errors as comparable text.
fn encoded(normalizer: &Normalizer, text: &str) -> Result<EncodedExposure, String> {
    normalizer
        .encode(text, received_at())
        .map_err(|error| match error {
            EncodeError::Invalid(error) => format!("{error:?}"),
            EncodeError::Malformed(_) => "malformed".to_owned(),
        })
}

/// What parsing the text into a map and normalising it gives.
fn normalised(normalizer: &Normalizer, text: &str) -> Result<EncodedExposure, String> {
    let value: Value = serde_json::from_str(text).map_err(|_| "malformed".to_owned())?;
    normalizer
        .normalize(value, received_at())
        .map(|exposure| EncodedExposure::from(&exposure))
        .map_err(|error| format!("{error:?}"))
}

/// Both paths agree on `text`. Server-generated event ids differ by nature: when the
/// text's `event_id` is absent or null, the reference's id is replaced by the encoder's
/// before comparing.
fn assert_agree(normalizer: &Normalizer, text: &str) {
    let ours = encoded(normalizer, text);
    let mut reference = normalised(normalizer, text);
    let server_generated = serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|event| event.get("event_id").is_none_or(Value::is_null));
    if let (Ok(ours), Ok(reference), true) = (&ours, &mut reference, server_generated) {
        let theirs = format!("\"{}\"", reference.event_id);
        let value =
            String::from_utf8_lossy(&reference.value).replace(&theirs, &format!("\"{}\"", ours.event_id));
        reference.value = value.into_bytes();
        reference.event_id.clone_from(&ours.event_id);
    }
    let show = |result: &Result<EncodedExposure, String>| match result {
        Ok(encoded) => String::from_utf8_lossy(&encoded.value).into_owned(),
        Err(error) => error.clone(),
    };
    assert_eq!(
        ours,
        reference,
        "\n  text: {text}\n  ours: {}\ntheirs: {}",
        show(&ours),
        show(&reference)
    );
}

const SEED: &str = r#"{"ds_user_id":"user_12345","experiment_id":"new_search_ui","variation_id":1,"attributes":{"id":"user_12345","ds_session_id":"session_abc123","user_agent":"Mozilla/5.0","geo_country_code":"US","geo_city":"New York","currency_id":"USD","locale":"en-US","utm":{"source":"google","medium":"cpc"},"forwarded_for":"203.0.113.7","is_kf_verified":true,"platform":"web"},"source":"search_core_python"}"#;

#[test]
fn what_sdks_send_is_encoded_without_the_map() {
    let normalizer = Normalizer::default();
    let next_js = r#"{"anonymous_id":"anon-7","experiment_id":"checkout","variation_id":"treatment","attributes":{"id":"anon-7","deviceId":"d1","url":"https://shop.example/cart?a=1&b=2","browser":"chrome"},"source":"nextjs","timestamp":"2026-11-25T11:59:58.250Z"}"#;
    let with_extras = r#"{"user_id":"u1","ds_user_id":"u2","experiment_id":"e","variation_id":-0,"page":"/search","hash_attribute":"id","in_experiment":true,"value":[1,2.5,null],"timestamp":1700000000000,"event_id":"0C9A5E2C-3B1D-4F7E-9A43-2D6B8E1F0A77"}"#;
    for text in [SEED, next_js, with_extras] {
        assert!(
            normalizer.encode_directly(text, received_at()).is_some(),
            "the direct path takes {text}"
        );
        assert_agree(&normalizer, text);
    }
    let ours = normalizer.encode(with_extras, received_at()).unwrap();
    assert_eq!(ours.event_id, "0c9a5e2c-3b1d-4f7e-9a43-2d6b8e1f0a77");
    assert_eq!(ours.key, "u2");
    let value: Value = serde_json::from_slice(&ours.value).unwrap();
    assert_eq!(value["extra"]["user_id"], "u1");
    assert_eq!(
        value["extra"]["timestamp"],
        json!(1_700_000_000_000u64),
        "outside the window: kept"
    );
    assert_eq!(value["variation_id"], "0");
}

#[test]
fn odd_but_legal_events_agree_byte_for_byte() {
    let normalizer = Normalizer::default();
    for text in [
        // Whitespace, escapes serde_json writes otherwise, duplicate keys: the map's work.
        "{ \"ds_user_id\" : \"u\", \"experiment_id\":\"e\",\n\"variation_id\":\"1\",\"attributes\":{ \"a\" : 1 }}",
        r#"{"ds_user_id":"u\u00e9\/","experiment_id":"e","variation_id":"1","attributes":{"k":"\u00e9\/"}}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{"a":1,"a":2}}"#,
        r#"{"ds_user_id":"u","ds_user_id":"v","experiment_id":"e","variation_id":"1"}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","\u0070age":"/x","page":"/y"}"#,
        // Control characters, unicode, numbers at the edges of a double.
        r#"{"ds_user_id":"😀\u0001\n","experiment_id":"e\"\\","variation_id":18446744073709551615,"attributes":{"n":[1.7976931348623157e308,-0.0,1e-400],"s":"\u001f\u007f\u2028"}}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","big":123456789012345678901234567890,"exp":1E+2}"#,
        // user id forms: integers, empty, null, alias.
        r#"{"ds_user_id":"","anonymous_id":null,"user_id":42,"experiment_id":"e","variation_id":"1"}"#,
        r#"{"ds_user_id":-9223372036854775808,"experiment_id":"e","variation_id":1.0}"#,
        // timestamps inside and outside the window, and not timestamps at all.
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","timestamp":"2026-11-25T13:00:00+01:00"}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","timestamp":"1999-01-01T00:00:00Z"}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","timestamp":"yesterday"}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","timestamp":true}"#,
        // Everything the rules refuse, so the errors are compared too.
        r#"[]"#,
        r#""an event""#,
        r#"{"experiment_id":"e","variation_id":"1"}"#,
        r#"{"ds_user_id":"u","experiment_id":5,"variation_id":"1"}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":null}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":[]}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{"a":"\u0000"}}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{"a":1e400}}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","event_id":""}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","event_id":7}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","source":""}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","n\u0000":1}"#,
        r#"{"ds_user_id":"u\ud800","experiment_id":"e","variation_id":"1"}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1"} x"#,
    ] {
        assert_agree(&normalizer, text);
    }
}

#[test]
fn limits_agree_at_their_edges() {
    let mut normalizer = Normalizer::default();
    normalizer.limits.max_attributes_bytes = 20;
    normalizer.limits.max_extra_bytes = 12;
    normalizer.limits.max_id_bytes = 4;
    normalizer.limits.max_attributes_depth = 2;
    for text in [
        r#"{"ds_user_id":"abcd","experiment_id":"e","variation_id":"1","attributes":{"a":"0123456789ab"}}"#,
        r#"{"ds_user_id":"abcd","experiment_id":"e","variation_id":"1","attributes":{"a":"0123456789abc"}}"#,
        r#"{"ds_user_id":"abcde","experiment_id":"e","variation_id":"1"}"#,
        r#"{"ds_user_id":"u","experiment_id":"éé","variation_id":"é"}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","abcdefg":1}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","abcdefg":12}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{"a":[1]}}"#,
        r#"{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{"a":[[1]]}}"#,
    ] {
        assert_agree(&normalizer, text);
    }
}

#[test]
fn a_privacy_policy_that_rewrites_the_address_agrees() {
    for policy in [IpPolicy::Keep, IpPolicy::Truncate, IpPolicy::Hash, IpPolicy::Drop] {
        let normalizer = Normalizer {
            ip_policy: policy,
            ip_hash_salt: "pepper".into(),
            ..Normalizer::default()
        };
        assert!(normalizer.encode_directly(SEED, received_at()).is_some());
        assert_agree(&normalizer, SEED);
        for attributes in [
            r#"{"forwarded_for":"10.1.2.3, 2001:db8::1"}"#,
            r#"{"forwarded_for":"10.1.2.3","a":1}"#,
            r#"{"a":1,"forwarded_for":"not an address"}"#,
            r#"{"a":{"forwarded_for":"10.1.2.3"},"forwarded_for":[1,{"b":"\n"}],"c":2}"#,
            r#"{"forwarded_for":null}"#,
        ] {
            let text = SEED.replace(r#"{"id":"user_12345""#, &format!("{attributes},\"x\":{{\"id\":1"));
            assert_agree(
                &normalizer,
                &format!(
                    r#"{{"ds_user_id":"u","experiment_id":"e","variation_id":"1","attributes":{attributes}}}"#
                ),
            );
            assert_agree(&normalizer, &text);
        }
        let without = SEED.replace(r#""forwarded_for":"203.0.113.7","#, "");
        assert!(normalizer.encode_directly(&without, received_at()).is_some());
        assert_agree(&normalizer, &without);
    }
}

#[test]
fn a_missing_event_id_becomes_a_uuid_v7() {
    let ours = Normalizer::default().encode(SEED, received_at()).unwrap();
    let id = Uuid::try_parse(&ours.event_id).expect("a UUID");
    assert_eq!(id.get_version_num(), 7);
}

/// An event's members: mostly what the rules ask for, then anything, in any order.
fn event_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let name = prop_oneof![
        Just("ds_user_id"),
        Just("anonymous_id"),
        Just("user_id"),
        Just("experiment_id"),
        Just("variation_id"),
        Just("source"),
        Just("attributes"),
        Just("timestamp"),
        Just("event_id"),
    ]
    .prop_map(str::to_owned);
    let name = prop_oneof![3 => name, 1 => "[a-z_\u{1}\"é]{0,8}"];
    let text = "[a-zA-Z0-9 _\"\\\\/\u{1}\u{7f}é😀-]{0,10}";
    let value = prop_oneof![
        text.prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!("2026-11-25T11:00:00.5Z")),
        Just(json!("0c9a5e2c-3b1d-4f7e-9a43-2d6b8e1f0a77")),
        prop::collection::vec(
            (
                prop_oneof![Just("forwarded_for".to_owned()), "[a-z]{1,3}"],
                json_value()
            ),
            0..5
        )
        .prop_map(|members| Value::Object(members.into_iter().collect())),
        json_value(),
    ];
    prop::collection::vec((name, value), 0..5)
}

/// How the event's text is written: compact, pretty, or with one member repeated.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Compact,
    Pretty,
    Repeated,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn any_event_encodes_as_the_normaliser_would(
        members in event_members(),
        spelling in prop_oneof![Just(Spelling::Compact), Just(Spelling::Pretty), Just(Spelling::Repeated)],
        policy in prop_oneof![Just(IpPolicy::Keep), Just(IpPolicy::Truncate), Just(IpPolicy::Hash), Just(IpPolicy::Drop)],
    ) {
        let mut event: Map<String, Value> = serde_json::from_value(json!({
            "ds_user_id": "u", "experiment_id": "e", "variation_id": "v",
        })).expect("an object");
        for (name, value) in &members {
            event.insert(name.clone(), value.clone());
        }
        let mut text = match spelling {
            Spelling::Pretty => serde_json::to_string_pretty(&event),
            _ => serde_json::to_string(&event),
        }.expect("serialisable");
        if let (Spelling::Repeated, Some((name, value))) = (spelling, members.first()) {
            text.pop();
            text.push_str(&format!(",{}:{}}}", json!(name), value));
        }
        let normalizer = Normalizer { ip_policy: policy, ip_hash_salt: "salt".into(), ..Normalizer::default() };
        assert_agree(&normalizer, &text);
    }
}
