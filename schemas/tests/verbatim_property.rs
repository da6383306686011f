//! Property: for arbitrary JSON in `attributes` and in an unknown top-level field (kept
//! in `extra`) — strings from every code point class including NUL, U+2028/U+2029,
//! controls and astral characters, written raw or as `\u` escapes; keys with quotes,
//! dots and backslashes; numbers at and beyond 64 bits, beyond a double, long and
//! exponent-written; nesting past the depth limit — normalisation either refuses the
//! event with the field error the loadable rules predict, or yields an `Exposure` whose
//! JSON, through the Kafka value and the lake's Arrow column, has exactly the meaning
//! that was sent: same keys in the same order, same strings, same digits.

use chrono::Utc;
use proptest::prelude::*;
use schemas::{ErrorCode, Exposure, ExposureBatchBuilder, LakeRow, Limits, Normalizer};
use serde_json::Value;

/// A JSON document as the client meant it: the oracle the results are compared with.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    /// The number as written.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Keys are unique (a duplicate key has no single meaning to keep).
    Object(Vec<(String, Json)>),
}

fn clean_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => any::<char>(),
        3 => prop::char::range('\u{1}', '\u{7f}'),
        1 => prop::sample::select(vec!['\u{2028}', '\u{2029}', '\u{feff}', '\u{ffff}', '\u{10ffff}', '😀', '"', '\\', '/', '\u{7f}', '\u{1}', '\u{1f}']),
    ]
    .prop_filter("no NUL", |c| *c != '\0')
}

fn text(max_len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(clean_char(), 0..max_len).prop_map(|chars| chars.into_iter().collect())
}

/// Mostly NUL-free; now and then a NUL somewhere.
fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        200 => text(12),
        1 => (text(6), text(6)).prop_map(|(a, b)| format!("{a}\0{b}")),
        2 => (0usize..40_000).prop_map(|n| "y".repeat(n)),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        50 => "[a-z_]{1,10}",
        30 => prop::collection::vec(prop::sample::select(vec!['.', '"', '\\', '/', ' ', 'a', 'é', '$', '[', ']', '\u{2028}', '\u{1}']), 0..6)
            .prop_map(|chars| chars.into_iter().collect()),
        20 => text(8),
        1 => (text(3), text(3)).prop_map(|(a, b)| format!("{a}\0{b}")),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any::<i64>().prop_map(|v| v.to_string()),
        3 => any::<u64>().prop_map(|v| v.to_string()),
        4 => "-?[1-9][0-9]{18,80}",
        3 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f}")),
        3 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        1 => "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,30})?[eE][+-]?[0-9]{1,3}",
        1 => "-?[1-9]\\.[0-9]{395,405}",
        1 => prop::sample::select(vec!["1e400", "-1e400", "1e-400", "-0", "0e999", "2e-320", "1.7976931348623157e308", "1.7976931348623159e308"])
            .prop_map(str::to_owned),
    ]
}

/// `value` under `levels` single-member objects, to reach and pass the depth limit.
fn nested(levels: usize, value: Json) -> Json {
    (0..levels).fold(value, |inner, level| {
        Json::Object(vec![(format!("l{level}"), inner)])
    })
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        string_value().prop_map(Json::String),
    ];
    leaf.prop_recursive(10, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|members| Json::Object(unique(members))),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Vec<(String, Json)>> {
    let member = prop_oneof![
        8 => json_value(),
        1 => (5usize..10, json_value()).prop_map(|(levels, value)| nested(levels, value)),
    ];
    prop::collection::vec((key(), member), 0..8).prop_map(unique)
}

fn unique(members: Vec<(String, Json)>) -> Vec<(String, Json)> {
    let mut seen = std::collections::HashSet::new();
    members
        .into_iter()
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect()
}

/// The document as request text: strings raw (serde_json's escaping) or with every
/// non-ASCII character as a `\u` escape (surrogate pairs above U+FFFF).
fn render(value: &Json, ascii: bool, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(text) => out.push_str(text),
        Json::String(s) => render_string(s, ascii, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, ascii, out);
            }
            out.push(']');
        }
        Json::Object(members) => render_object(members, ascii, out),
    }
}

fn render_object(members: &[(String, Json)], ascii: bool, out: &mut String) {
    out.push('{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        render_string(key, ascii, out);
        out.push_str(": ");
        render(value, ascii, out);
    }
    out.push('}');
}

fn render_string(s: &str, ascii: bool, out: &mut String) {
    if !ascii {
        out.push_str(&serde_json::to_string(s).expect("a string serializes"));
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// What the loadable rules say about a document: the problems it has.
#[derive(Debug, Default)]
struct Verdict {
    nul: bool,
    bad_number: bool,
    depth: usize,
}

fn judge(value: &Json, verdict: &mut Verdict) -> usize {
    match value {
        Json::Null | Json::Bool(_) => 0,
        Json::Number(text) => {
            verdict.bad_number |= !number_fits(text);
            0
        }
        Json::String(s) => {
            verdict.nul |= s.contains('\0');
            0
        }
        Json::Array(items) => 1 + items.iter().map(|item| judge(item, verdict)).max().unwrap_or(0),
        Json::Object(members) => judge_object(members, verdict),
    }
}

fn judge_object(members: &[(String, Json)], verdict: &mut Verdict) -> usize {
    let mut deepest = 0;
    for (key, value) in members {
        verdict.nul |= key.contains('\0');
        deepest = deepest.max(judge(value, verdict));
    }
    1 + deepest
}

/// Written in at most 400 characters, and zero or a normal double in magnitude.
fn number_fits(text: &str) -> bool {
    let Ok(value) = text.parse::<f64>() else {
        return false;
    };
    let mantissa_is_zero = text
        .split(['e', 'E'])
        .next()
        .unwrap_or_default()
        .chars()
        .all(|c| matches!(c, '0' | '.' | '-'));
    text.len() <= 400 && value.is_finite() && (mantissa_is_zero || value.abs() >= f64::MIN_POSITIVE)
}

/// The number as serde_json keeps it: the same digits, the exponent spelled `e±`.
fn kept_spelling(text: &str) -> String {
    let lowered = text.replace('E', "e");
    match lowered.split_once('e') {
        Some((mantissa, power)) if !power.starts_with(['+', '-']) => format!("{mantissa}e+{power}"),
        _ => lowered,
    }
}

/// Whether `stored` has exactly the meaning of `sent`: key order, strings and digits.
fn same_meaning(sent: &Json, stored: &Value) -> Result<(), String> {
    match (sent, stored) {
        (Json::Null, Value::Null) => Ok(()),
        (Json::Bool(a), Value::Bool(b)) if a == b => Ok(()),
        (Json::Number(text), Value::Number(n)) if kept_spelling(text) == n.as_str() => Ok(()),
        (Json::String(a), Value::String(b)) if a == b => Ok(()),
        (Json::Array(items), Value::Array(stored)) if items.len() == stored.len() => {
            items.iter().zip(stored).try_for_each(|(a, b)| same_meaning(a, b))
        }
        (Json::Object(members), Value::Object(stored)) if members.len() == stored.len() => members
            .iter()
            .zip(stored)
            .try_for_each(|((key, a), (stored_key, b))| {
                if key == stored_key {
                    same_meaning(a, b)
                } else {
                    Err(format!("key {key:?} became {stored_key:?}"))
                }
            }),
        _ => Err(format!("{sent:?} became {stored}")),
    }
}

fn serialized_len(members: &[(String, Json)]) -> usize {
    let mut text = String::new();
    render_object(members, false, &mut text);
    let value: Value = serde_json::from_str(&text).expect("renders valid JSON");
    serde_json::to_vec(&value).expect("serializes").len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn attributes_and_extra_are_refused_as_predicted_or_kept_verbatim(
        attributes in json_object(),
        custom in json_value(),
        ascii in any::<bool>(),
    ) {
        let mut body = String::from(r#"{"ds_user_id": "u", "experiment_id": "e", "variation_id": "1", "attributes": "#);
        render_object(&attributes, ascii, &mut body);
        body.push_str(r#", "custom": "#);
        render(&custom, ascii, &mut body);
        body.push('}');

        let event: Value = serde_json::from_str(&body).expect("the request is valid JSON");
        let limits = Limits::default();
        let outcome = Normalizer::default().normalize(event, Utc::now());

        let mut in_attributes = Verdict::default();
        in_attributes.depth = judge_object(&attributes, &mut in_attributes);
        let mut in_extra = Verdict::default();
        judge(&custom, &mut in_extra);
        let extra = vec![("custom".to_owned(), custom.clone())];
        let mut expected = Vec::new();
        if in_attributes.nul || in_extra.nul {
            expected.push(ErrorCode::NulCharacter);
        }
        if in_attributes.bad_number || in_extra.bad_number {
            expected.push(ErrorCode::NumberOutOfRange);
        }
        if in_attributes.depth > limits.max_attributes_depth {
            expected.push(ErrorCode::TooDeep);
        }
        // Several faults at once: whichever the normaliser meets first is reported
        // (attributes are checked whole before the unknown fields), so any of them is right.
        if serialized_len(&attributes) > limits.max_attributes_bytes
            || serialized_len(&extra) > limits.max_extra_bytes
        {
            expected.push(ErrorCode::TooLarge);
        }

        match outcome {
            Err(error) => {
                prop_assert!(
                    expected.contains(&error.code),
                    "refused with {:?} ({}), expected one of {:?}", error.code, error.message, expected
                );
                let field = error.field.unwrap_or_default();
                prop_assert!(
                    field.starts_with("attributes") || field.starts_with("custom") || field == "extra",
                    "the error names where the problem is: {}", field
                );
            }
            Ok(exposure) => {
                prop_assert!(expected.is_empty(), "accepted although {:?}", expected);
                // Kafka: the value decodes to the same record, and the sink reads it into
                // the row of that record.
                let value = exposure.to_json_bytes();
                let decoded: Exposure = serde_json::from_slice(&value).expect("decodes");
                prop_assert_eq!(&decoded, &exposure);
                let row = LakeRow::from_kafka_value(&value).expect("the sink takes it");
                prop_assert_eq!(&row, &LakeRow::from_exposure(&exposure));
                // The lake: the JSON text columns of the Parquet row.
                let mut builder = ExposureBatchBuilder::new();
                builder.append(&row, 0, 0);
                let batch = builder.finish().expect("batch");
                let column = |name: &str| -> Value {
                    let text = batch
                        .column_by_name(name)
                        .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
                        .map(|c| c.value(0).to_owned())
                        .unwrap_or_default();
                    serde_json::from_str(&text).expect("the lake holds JSON")
                };
                if let Err(difference) = same_meaning(&Json::Object(attributes.clone()), &column("attributes")) {
                    prop_assert!(false, "attributes changed meaning: {}", difference);
                }
                if let Err(difference) = same_meaning(&Json::Object(extra), &column("extra")) {
                    prop_assert!(false, "extra changed meaning: {}", difference);
                }
            }
        }
    }
}
