//! One pass over JSON text that serde_json has already validated, to learn whether the
//! text can be kept as it is instead of being parsed into a map and serialised again.
//!
//! Both hot paths use it. The sink ([`crate::LakeRow`]) asks whether a Kafka value's
//! object is loadable and compact ([`scan_object`]); ingest's encoder asks the stricter
//! question of whether a client's JSON is already, byte for byte, what serialising its
//! parsed value would give ([`scan_canonical`]). Whatever the scan cannot vouch for is
//! [`Scan::NeedsParse`]: the caller parses, and the rules of [`crate::loadable`] decide,
//! with their exact error paths.

use std::borrow::Cow;

use serde::Deserialize;

use crate::loadable;

/// How many wanted top-level members a scan reports.
pub(crate) const MAX_WANTED: usize = 8;

/// Nesting beyond this is left to the parse. serde_json's parser refuses more than 128
/// levels for a whole document, of which the scanned value is a part (an event's
/// member, itself maybe in an array): 100 leaves room for the levels around it. The
/// scan's record of which containers are objects (a `u128`) needs it below 128 too.
const MAX_SCANNED_DEPTH: usize = 100;

/// Keys one object may have for the canonical scan to compare them pairwise (looking
/// for duplicates); a larger object is left to the parse, so the work stays linear.
const MAX_COMPARED_KEYS: usize = 64;

/// What one pass over a JSON text found.
#[derive(Debug, PartialEq)]
pub(crate) enum Scan<'a> {
    /// [`scan_object`] only: the value is not an object.
    NotAnObject,
    /// Compact, no `\u0000` escape, every number short and without an exponent (so
    /// within a double's range and spelled as serde_json spells it), no escaped
    /// top-level key: the text is loadable and is its own compact serialisation.
    /// Holds the raw values of the wanted top-level members (the last of duplicates).
    Clean([Option<&'a str>; MAX_WANTED]),
    /// Something the full parse must decide.
    NeedsParse,
}

/// The scan of a Kafka value's object (`attributes`, `extra`): see [`Scan::Clean`].
/// Escapes and duplicate keys pass, since the sink keeps another producer's spelling.
pub(crate) fn scan_object<'a>(text: &'a str, wanted: &[&str]) -> Scan<'a> {
    if !text.starts_with('{') {
        return Scan::NotAnObject;
    }
    scan(text, wanted, None)
}

/// The scan of a client's JSON value (any type): [`Scan::Clean`] only when, besides,
/// every escape is one serde_json writes, no object has a duplicate key, and no more
/// than `max_depth` objects and arrays nest (`{}` is 1) — that is, when the text is
/// exactly the compact serialisation of the value it parses to, and that value passes
/// the loadable rules and the depth limit.
pub(crate) fn scan_canonical<'a>(text: &'a str, wanted: &[&str], max_depth: usize) -> Scan<'a> {
    scan(text, wanted, Some(max_depth))
}

/// `canonical_depth` is `Some(max_depth)` for [`scan_canonical`].
fn scan<'a>(text: &'a str, wanted: &[&str], canonical_depth: Option<usize>) -> Scan<'a> {
    let bytes = text.as_bytes();
    let mut found = [None; MAX_WANTED];
    let (mut depth, mut at) = (0usize, 0usize);
    // Bit `d` is set when the container open at depth `d` is an object.
    let mut objects = 0u128;
    // Canonical scan: the keys of the objects now open, with their depth.
    let mut open_keys: Vec<(usize, &str)> = Vec::new();
    // The wanted member whose value is being read, and where that value starts.
    let (mut member, mut value_start) = (None::<usize>, 0usize);
    let mut expect_key = false;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => {
                let start = at + 1;
                let mut end = start;
                let mut escaped = false;
                loop {
                    let Some(found) = bytes
                        .get(end..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    else {
                        return Scan::NeedsParse;
                    };
                    end += found;
                    if bytes[end] == b'"' {
                        break;
                    }
                    let escape = &bytes[end + 1..];
                    if escape.starts_with(b"u0000")
                        || (canonical_depth.is_some() && !is_canonical_escape(escape))
                    {
                        return Scan::NeedsParse;
                    }
                    escaped = true;
                    end += 2;
                }
                if expect_key {
                    let key = &text[start..end];
                    if depth == 1 {
                        if escaped {
                            return Scan::NeedsParse;
                        }
                        member = wanted.iter().position(|name| *name == key);
                    }
                    if canonical_depth.is_some() {
                        let siblings = open_keys.iter().rev().take_while(|(d, _)| *d == depth);
                        let mut compared = 0;
                        for (_, sibling) in siblings {
                            compared += 1;
                            if *sibling == key || compared == MAX_COMPARED_KEYS {
                                return Scan::NeedsParse;
                            }
                        }
                        open_keys.push((depth, key));
                    }
                    expect_key = false;
                }
                at = end + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_SCANNED_DEPTH {
                    // Only another producer's Kafka value can nest this deep (ingest's
                    // parse refuses it): such text is kept as it is, as before.
                    if canonical_depth.is_some() {
                        return Scan::NeedsParse;
                    }
                } else if canonical_depth.is_some_and(|max| depth > max) {
                    return Scan::NeedsParse;
                } else if byte == b'{' {
                    objects |= 1u128 << depth;
                } else {
                    objects &= !(1u128 << depth);
                }
                expect_key = byte == b'{';
                at += 1;
            }
            b'}' | b']' | b',' => {
                if depth == 1 {
                    if let Some(index) = member.take() {
                        found[index] = Some(&text[value_start..at]);
                    }
                }
                if byte == b',' {
                    expect_key = depth <= MAX_SCANNED_DEPTH && objects & (1u128 << depth) != 0;
                } else {
                    while open_keys.last().is_some_and(|(d, _)| *d == depth) {
                        open_keys.pop();
                    }
                    depth -= 1;
                    expect_key = false;
                }
                at += 1;
            }
            b':' => {
                if depth == 1 {
                    value_start = at + 1;
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while bytes
                    .get(at)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E'))
                {
                    at += 1;
                }
                if !loadable::number_plainly_in_range(&text[start..at]) {
                    return Scan::NeedsParse;
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => return Scan::NeedsParse,
            _ => at += 1,
        }
    }
    Scan::Clean(found)
}

/// Whether the escape after a backslash is one serde_json writes: the short forms
/// (`\" \\ \b \f \n \r \t`), or `\u00xx` in lowercase hex for the other control
/// characters. Anything else (`\/`, `\u00e9`, `\u000A`) parses to a character that
/// serialises differently.
fn is_canonical_escape(escape: &[u8]) -> bool {
    let lower_hex = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    match escape {
        [b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't', ..] => true,
        [b'u', b'0', b'0', high @ (b'0' | b'1'), low, ..] => match lower_hex(*low) {
            Some(low) => {
                let code = (high - b'0') * 16 + low;
                !matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)
            }
            None => false,
        },
        _ => false,
    }
}

/// A JSON string (a value, or an object's key) that borrows from the text unless it had
/// escapes. (A bare `Cow<str>` would always copy.)
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// The content of a JSON string literal, borrowed when it has no escapes.
pub(crate) fn raw_string(literal: &str) -> Option<Cow<'_, str>> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(literal).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn canonical(text: &str) -> bool {
        matches!(scan_canonical(text, &[], 8), Scan::Clean(_))
    }

    #[test]
    fn canonical_text_is_what_serde_json_writes() {
        for text in [
            r#"{"a":"\u0001\u001f\"\\\n\t\r\b\f","b":[1,-2.5,{"c":null}],"é😀":"/"}"#,
            r#""plain""#,
            "-0",
            "[]",
            r#"{"a":{"a":1},"b":{"a":2}}"#,
        ] {
            assert!(canonical(text), "{text}");
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&value).unwrap(), text);
        }
    }

    #[test]
    fn anything_serde_json_would_spell_differently_needs_the_parse() {
        for text in [
            r#"{"a":"\/"}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"\u000A"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"o":{"k":1,"k":1}}"#,
            r#"{ "a":1}"#,
            r#"{"a":1e5}"#,
        ] {
            assert_eq!(scan_canonical(text, &[], 8), Scan::NeedsParse, "{text}");
            let value: Value = serde_json::from_str(text).unwrap();
            assert_ne!(serde_json::to_string(&value).unwrap(), text);
        }
        // Strings in arrays are not keys; keys of sibling objects are not duplicates.
        assert!(canonical(r#"[{"a":1},{"a":1},"a","a"]"#));
    }

    #[test]
    fn the_depth_limit_counts_objects_and_arrays() {
        assert!(matches!(scan_canonical(r#"{"a":[{}]}"#, &[], 3), Scan::Clean(_)));
        assert_eq!(scan_canonical(r#"{"a":[{}]}"#, &[], 2), Scan::NeedsParse);
        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        assert_eq!(scan_canonical(&deep, &[], usize::MAX), Scan::NeedsParse);
        assert!(matches!(
            scan_object(&format!("{{\"a\":{deep}}}"), &[]),
            Scan::Clean(_)
        ));
    }

    #[test]
    fn many_keys_are_left_to_the_parse() {
        let members: Vec<String> = (0..MAX_COMPARED_KEYS + 1)
            .map(|i| format!("\"k{i}\":1"))
            .collect();
        let wide = format!("{{{}}}", members.join(","));
        assert_eq!(scan_canonical(&wide, &[], 8), Scan::NeedsParse);
        let members: Vec<String> = (0..MAX_COMPARED_KEYS).map(|i| format!("\"k{i}\":1")).collect();
        assert!(canonical(&format!("{{{}}}", members.join(","))));
    }
}
