//! Test strategies shared by the property tests of the normaliser, its encoder and the
//! sink's row.

use proptest::prelude::*;
use serde_json::{Number, Value};

/// JSON values as SDKs send them: odd strings and keys (quotes, backslashes, control
/// characters, promoted names at any depth) and numbers in many spellings.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("platform".to_owned()),
        Just("locale".to_owned()),
        Just("is_kf_verified".to_owned()),
        "[a-z\"\\\\\u{1}\u{2028}é😀]{0,6}",
    ];
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "-?[0-9]{1,30}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,2})?",
    ]
    .prop_filter_map("a JSON number", |text| serde_json::from_str::<Number>(&text).ok());
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number.prop_map(Value::Number),
        "[a-zA-Z \"\\\\/\u{1}\u{1f}\u{7f}\u{2028}é😀]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}
