//! What every warehouse target can store: the one definition of *loadable*.
//!
//! The promise is that every event ingest answers `200` becomes a warehouse row, in
//! PostgreSQL and in Redshift alike, so ingest accepts only what both can hold. The
//! rules, each with the limit that makes it necessary:
//!
//! - **No U+0000 anywhere**: not in an id, `source`, an attribute value or key at any
//!   depth, nor in an unknown field kept in `extra`. PostgreSQL's `text` and `jsonb`
//!   cannot store NUL, and one such row would fail the COPY of its whole file.
//!   → [`ErrorCode::NulCharacter`], naming the field (e.g. `attributes.utm["a.b"]`).
//! - **Text columns hold bytes, not characters**: Redshift's `VARCHAR(n)` counts UTF-8
//!   bytes. Required and user-sent text columns longer than their [`COLUMNS`] width are
//!   refused (`too_long`, checked by the normaliser against
//!   [`column_max_bytes`](crate::columns::column_max_bytes)); promoted attributes are cut
//!   to their width on a character boundary by the sink.
//! - **JSON columns fit a `VARCHAR(65535)`**: the Redshift load stages `attributes` and
//!   `extra` as `VARCHAR(65535)` (bytes) before `JSON_PARSE` turns them into `SUPER`, so
//!   the serialized JSON of each is at most [`MAX_JSON_BYTES`], whatever
//!   `--max-attributes-bytes` says (`too_large`). That also keeps every string inside
//!   within SUPER's 65,535-byte scalar limit, and the nesting (attributes ≤ 8, anything
//!   ≤ the JSON parser's 128) within SUPER's 1,000 levels.
//! - **Numbers a double can hold, verbatim**: a JSON number is kept exactly as written
//!   (integers of any length, `1.50`, `1E+2`; serde_json's `arbitrary_precision`), so the
//!   lake and PostgreSQL's `jsonb` (an arbitrary-precision `numeric`) see the client's
//!   digits. It is refused ([`ErrorCode::NumberOutOfRange`]) when its magnitude is beyond
//!   a double's (≈ 1.8e308: SUPER's numeric scalars are Redshift's integers, DECIMAL of at
//!   most 38 digits and DOUBLE PRECISION, and `1e400` fits none of them), non-zero but
//!   below a double's smallest normal value (≈ 2.2e-308, which would silently become 0),
//!   or longer than [`MAX_NUMBER_BYTES`] characters (PostgreSQL's `numeric` caps
//!   fractional digits at 16,383). Caveat, not verified against a live cluster: Redshift
//!   presumably keeps a number of more than 38 significant digits as a double; the lake
//!   and PostgreSQL keep every digit.
//!
//! [`COLUMNS`]: crate::COLUMNS

use std::fmt::Write as _;
use std::io;

use serde_json::{Map, Number, Value};

use crate::error::{ErrorCode, FieldError};

/// Largest serialized `attributes` or `extra` object, in bytes: Redshift's widest
/// `VARCHAR`, the load stage's column type for JSON.
pub const MAX_JSON_BYTES: usize = 65_535;

/// Longest JSON number, in characters. Every integer a double can reach (309 digits)
/// fits, with room for a sign, a fraction and an exponent.
pub const MAX_NUMBER_BYTES: usize = 400;

/// Checks the record's text fields, `(name, value, column width)`: no NUL character,
/// and no more bytes than the column holds.
pub(crate) fn check_texts<'a>(
    texts: impl IntoIterator<Item = (&'static str, Option<&'a str>, usize)>,
) -> Result<(), FieldError> {
    for (field, text, max) in texts {
        let Some(text) = text else { continue };
        check_text(field, text)?;
        if text.len() > max {
            return Err(FieldError::new(
                ErrorCode::TooLong,
                field,
                format!(
                    "{field} is {} bytes; the warehouse column holds {max}",
                    text.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that `text`, the value of `field`, has no NUL character.
pub(crate) fn check_text(field: &str, text: &str) -> Result<(), FieldError> {
    if has_nul(text) {
        return Err(nul_error(field, "contains"));
    }
    Ok(())
}

/// Where a JSON document sits in the event, for naming what is wrong inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Root<'a> {
    /// A field whose value is the document (`attributes`): paths start with its name.
    Field(&'a str),
    /// The top level of the event itself (the members kept in `extra`): paths start
    /// with the member's name as the client sent it.
    Event,
}

/// Checks a JSON object for NUL characters (values and keys, at any depth), numbers no
/// warehouse can hold, and nesting deeper than `max_depth` (`{}` is 1). A too-deep
/// document is named by its root field alone, the others by their full path.
pub(crate) fn check_object(
    root: Root<'_>,
    object: &Map<String, Value>,
    max_depth: usize,
) -> Result<(), FieldError> {
    match walk_object(object, max_depth) {
        Ok(()) => Ok(()),
        Err(fault) => Err(fault.into_error(root, max_depth)),
    }
}

/// The size of `object` serialized as compact JSON (what Kafka, the lake and the
/// warehouse stage hold), counted without building the text.
pub(crate) fn serialized_len(object: &Map<String, Value>) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, object) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn has_nul(text: &str) -> bool {
    text.as_bytes().contains(&0)
}

fn nul_error(field: &str, what: &str) -> FieldError {
    FieldError::new(
        ErrorCode::NulCharacter,
        field,
        format!("{field} {what} the NUL character (\\u0000), which PostgreSQL cannot store; remove it"),
    )
}

/// A problem found inside a document, with the path to it (leaf first, built while the
/// walk unwinds, so the common valid case allocates nothing).
struct Fault {
    kind: FaultKind,
    path: Vec<Step>,
}

enum FaultKind {
    NulInValue,
    NulInKey,
    Number { text: String, why: &'static str },
    TooDeep,
}

enum Step {
    Key(String),
    Index(usize),
}

impl Fault {
    fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            path: Vec::new(),
        }
    }

    fn within(mut self, step: Step) -> Fault {
        self.path.push(step);
        self
    }

    fn into_error(self, root: Root<'_>, max_depth: usize) -> FieldError {
        let field = render_path(root, &self.path);
        match self.kind {
            FaultKind::NulInValue => nul_error(&field, "contains"),
            FaultKind::NulInKey => nul_error(&field, "is a key that contains"),
            FaultKind::Number { text, why } => {
                let shown: String = text.chars().take(40).collect();
                let ellipsis = if shown.len() < text.len() { "…" } else { "" };
                FieldError::new(
                    ErrorCode::NumberOutOfRange,
                    field.clone(),
                    format!("{field} is the number {shown}{ellipsis}, which {why}; send it as a string to keep it"),
                )
            }
            FaultKind::TooDeep => {
                let name = match root {
                    Root::Field(name) => name.to_owned(),
                    Root::Event => field,
                };
                FieldError::new(
                    ErrorCode::TooDeep,
                    name.clone(),
                    format!(
                        "{name} nests more than {max_depth} levels deep; at most {max_depth} are allowed"
                    ),
                )
            }
        }
    }
}

/// `attributes.utm.source`, `attributes.items[2]`, `attributes["a.b"]`; at the event's
/// top level the first key stands alone (`page.path`).
fn render_path(root: Root<'_>, leaf_first: &[Step]) -> String {
    let mut out = match root {
        Root::Field(name) => name.to_owned(),
        Root::Event => String::new(),
    };
    for step in leaf_first.iter().rev() {
        match step {
            Step::Key(key) if is_plain(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Key(key) => {
                out.push('[');
                // A key is a string, which always serializes.
                out.push_str(&serde_json::to_string(key).unwrap_or_default());
                out.push(']');
            }
            Step::Index(index) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
    out
}

fn is_plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `remaining` is how many more levels of objects/arrays may open here.
fn walk_object(object: &Map<String, Value>, remaining: usize) -> Result<(), Fault> {
    if remaining == 0 {
        return Err(Fault::new(FaultKind::TooDeep));
    }
    for (key, value) in object {
        if has_nul(key) {
            return Err(Fault::new(FaultKind::NulInKey).within(Step::Key(key.clone())));
        }
        walk_value(value, remaining - 1).map_err(|fault| fault.within(Step::Key(key.clone())))?;
    }
    Ok(())
}

fn walk_value(value: &Value, remaining: usize) -> Result<(), Fault> {
    match value {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::String(text) if has_nul(text) => Err(Fault::new(FaultKind::NulInValue)),
        Value::String(_) => Ok(()),
        Value::Number(number) => check_number(number),
        Value::Object(object) => walk_object(object, remaining),
        Value::Array(items) => {
            if remaining == 0 {
                return Err(Fault::new(FaultKind::TooDeep));
            }
            for (index, item) in items.iter().enumerate() {
                walk_value(item, remaining - 1).map_err(|fault| fault.within(Step::Index(index)))?;
            }
            Ok(())
        }
    }
}

/// Short decimals without an exponent are always within a double's range.
const ALWAYS_IN_RANGE_BYTES: usize = 15;

/// Whether the JSON number `text` is within range without looking closer: a short
/// decimal without an exponent (which serde_json also serialises as it is written).
pub(crate) fn number_plainly_in_range(text: &str) -> bool {
    text.len() <= ALWAYS_IN_RANGE_BYTES && !text.contains(['e', 'E'])
}

fn check_number(number: &Number) -> Result<(), Fault> {
    let text = number.as_str();
    if number_plainly_in_range(text) {
        return Ok(());
    }
    let refuse = |why| {
        Err(Fault::new(FaultKind::Number {
            text: text.to_owned(),
            why,
        }))
    };
    if text.len() > MAX_NUMBER_BYTES {
        return refuse("has more than 400 characters");
    }
    let Ok(value) = text.parse::<f64>() else {
        return refuse("does not parse as a number");
    };
    if !value.is_finite() {
        return refuse("is beyond the range of a double (±1.8e308) that Redshift can hold");
    }
    let written_as_zero = text
        .split(['e', 'E'])
        .next()
        .unwrap_or_default()
        .bytes()
        .all(|b| matches!(b, b'0' | b'.' | b'-' | b'+'));
    if !written_as_zero && value.abs() < f64::MIN_POSITIVE {
        return refuse("is closer to zero than a double can hold (2.2e-308) and would become 0");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn parse(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).expect("valid JSON")
    }

    fn fault(text: &str) -> FieldError {
        check_object(Root::Field("attributes"), &parse(text), 8).expect_err(text)
    }

    #[test]
    fn nul_in_values_and_keys_is_named_by_its_path() {
        for (text, field) in [
            (r#"{"a": "x\u0000y"}"#, "attributes.a"),
            (r#"{"utm": {"source": "\u0000"}}"#, "attributes.utm.source"),
            (r#"{"items": [1, "ok", ["\u0000"]]}"#, "attributes.items[2][0]"),
            (r#"{"a\u0000b": 1}"#, r#"attributes["a\u0000b"]"#),
            (
                r#"{"a.b": {"c\"d": {"e\\f": "\u0000"}}}"#,
                r#"attributes["a.b"]["c\"d"]["e\\f"]"#,
            ),
        ] {
            let error = fault(text);
            assert_eq!(
                (error.code, error.field.as_deref()),
                (ErrorCode::NulCharacter, Some(field)),
                "{text}"
            );
            assert!(error.message.contains("NUL"), "{}", error.message);
        }
    }

    #[test]
    fn event_level_paths_start_with_the_member() {
        let error = check_object(
            Root::Event,
            &parse(r#"{"page": {"path": "/\u0000"}}"#),
            usize::MAX,
        )
        .expect_err("nul");
        assert_eq!(error.field.as_deref(), Some("page.path"));
        let error = check_object(Root::Event, &parse(r#"{"we\u0000ird": 1}"#), usize::MAX).expect_err("nul");
        assert_eq!(error.field.as_deref(), Some(r#"["we\u0000ird"]"#));
    }

    #[test]
    fn other_characters_are_fine() {
        let ok = parse(
            r#"{"sep": "\u2028\u2029", "ctl": "\u0001\u001f\u007f", "astral": "\ud83d\ude00", "bom": "\ufeff",
                "": "empty key", "a.b": "dotted", "q\"uote": "\\"}"#,
        );
        assert!(check_object(Root::Field("attributes"), &ok, 8).is_ok());
        assert!(check_text("experiment_id", "é\u{2028}😀").is_ok());
        let error = check_text("experiment_id", "a\0").expect_err("nul");
        assert_eq!(
            (error.code, error.field.as_deref()),
            (ErrorCode::NulCharacter, Some("experiment_id"))
        );
    }

    #[test]
    fn numbers_a_double_can_hold_are_accepted_verbatim() {
        for number in [
            "0",
            "-0",
            "0.0",
            "0e10",
            "123456789012345678901234567890",
            "-98765432109876543210987654321098765432109876543210",
            "18446744073709551616",
            "1.7976931348623157e308",
            "-2.2250738585072014e-308",
            "1E+2",
            "1E2",
            "2e-5",
            "1.50",
            "3.141592653589793238462643383279502884197",
            &"9".repeat(308),
        ] {
            let text = format!(r#"{{"n": {number}}}"#);
            let map = parse(&text);
            assert!(
                check_object(Root::Field("attributes"), &map, 8).is_ok(),
                "{number}"
            );
            // Verbatim: the digits serialize exactly as they were written; only the
            // exponent's spelling is normalised (`E2` → `e+2`), which keeps the value.
            let exponent = number.replace('E', "e");
            let exponent = match exponent.split_once('e') {
                Some((mantissa, power)) if !power.starts_with(['+', '-']) => format!("{mantissa}e+{power}"),
                _ => exponent,
            };
            assert_eq!(
                serde_json::to_string(&map).expect("json"),
                format!(r#"{{"n":{exponent}}}"#)
            );
        }
    }

    #[test]
    fn numbers_no_warehouse_can_hold_are_refused() {
        for number in [
            "1e400".to_owned(),
            "-1e400".to_owned(),
            "1e-400".to_owned(),
            "2e-320".to_owned(),
            "9".repeat(310),
            format!("1.{}", "0".repeat(400)),
        ] {
            let error = fault(&format!(r#"{{"deep": [{{"n": {number}}}]}}"#));
            assert_eq!(
                (error.code, error.field.as_deref()),
                (ErrorCode::NumberOutOfRange, Some("attributes.deep[0].n")),
                "{number}"
            );
            assert!(
                error.message.len() < 300,
                "the message quotes a prefix: {}",
                error.message
            );
        }
    }

    #[test]
    fn depth_is_counted_like_the_field_rule() {
        let mut deep = json!("leaf");
        for _ in 0..8 {
            deep = json!({ "n": deep });
        }
        assert!(check_object(Root::Field("attributes"), &object(deep.clone()), 8).is_ok());
        let error =
            check_object(Root::Field("attributes"), &object(json!({ "n": deep })), 8).expect_err("deep");
        assert_eq!(
            (error.code, error.field.as_deref()),
            (ErrorCode::TooDeep, Some("attributes"))
        );
        let arrays = object(json!({"a": [[[[[[[1]]]]]]]}));
        assert!(check_object(Root::Field("attributes"), &arrays, 8).is_ok());
        let arrays = object(json!({"a": [[[[[[[[1]]]]]]]]}));
        assert!(check_object(Root::Field("attributes"), &arrays, 8).is_err());
    }

    #[test]
    fn serialized_len_is_the_compact_json_length() {
        for text in [
            r#"{}"#,
            r#"{"a": 1, "b": [true, null, 1.5e3], "c": {"d": "é\n\"\\\u0001\u2028😀"}}"#,
            r#"{"big": 123456789012345678901234567890}"#,
        ] {
            let map = parse(text);
            assert_eq!(
                serialized_len(&map),
                serde_json::to_vec(&map).expect("json").len(),
                "{text}"
            );
        }
    }
}
