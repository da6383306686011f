//! Validation errors that name the offending field.

use std::fmt;

/// Machine-readable reason an exposure was rejected; also the `reason` label of the
/// `exposures_ingest_events_rejected_total` metric, so keep the set small and stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The event is not a JSON object.
    NotAnObject,
    /// None of `ds_user_id`, `anonymous_id`, `user_id` is present and non-empty.
    MissingUserId,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A required string is empty.
    Empty,
    /// A string is longer than its limit (in bytes).
    TooLong,
    /// A serialized object (attributes, unknown fields) exceeds its size limit.
    TooLarge,
    /// `attributes` nests deeper than allowed.
    TooDeep,
    /// `timestamp` is neither RFC 3339 nor epoch milliseconds.
    InvalidTimestamp,
    /// A string or an object key contains U+0000, which PostgreSQL's text and jsonb
    /// cannot store.
    NulCharacter,
    /// A JSON number no warehouse can hold as sent: beyond the range of a double, too
    /// close to zero for one, or written with too many characters.
    NumberOutOfRange,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::MissingUserId => "missing_user_id",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::WrongType => "wrong_type",
            ErrorCode::Empty => "empty",
            ErrorCode::TooLong => "too_long",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::InvalidTimestamp => "invalid_timestamp",
            ErrorCode::NulCharacter => "nul_character",
            ErrorCode::NumberOutOfRange => "number_out_of_range",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one exposure was rejected: a code, the field it concerns (if any) and a message
/// written for the developer who wired the SDK callback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    pub code: ErrorCode,
    pub field: Option<String>,
    pub message: String,
}

impl FieldError {
    pub fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            code,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn without_field(code: ErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            code,
            field: None,
            message: message.into(),
        }
    }
}
