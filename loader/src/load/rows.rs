//! Typed rows: what a warehouse answers to a read, decoded into a struct per query.
//!
//! Both warehouses answer reads as text (PostgreSQL's simple-query protocol; the Data
//! API's fields, turned to text by `DataApi::rows`). A struct implementing [`FromRow`]
//! names its columns in `SELECT` order and reads each by name and type; a value that is
//! missing or does not parse is [`LoadError::Decode`], naming the query, row and column —
//! never a default. `status` and `reconcile` report what the warehouse holds, so a
//! misread count must fail loudly rather than print 0.

use chrono::{DateTime, NaiveDateTime, Utc};
use schemas::ddl::{ExistingObject, ViewReader};

use super::LoadError;

/// One query's row type.
pub(crate) trait FromRow: Sized {
    /// What the query asks, for errors: "status: ledger by status".
    const QUERY: &'static str;
    /// The columns of its `SELECT`, in order.
    const COLUMNS: &'static [&'static str];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError>;
}

/// A value read from a column's text.
pub(crate) trait FromField: Sized {
    fn from_field(text: &str) -> Result<Self, String>;
}

impl FromField for String {
    fn from_field(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

macro_rules! integer_fields {
    ($($integer:ty),*) => {$(
        impl FromField for $integer {
            fn from_field(text: &str) -> Result<Self, String> {
                text.parse()
                    .map_err(|_| format!("{text:?} is not an integer in {}'s range", stringify!($integer)))
            }
        }
    )*};
}
integer_fields!(i32, i64, u64);

impl FromField for bool {
    /// PostgreSQL's text form is `t`/`f`; the Data API's `booleanValue`, as text, `true`/`false`.
    fn from_field(text: &str) -> Result<Self, String> {
        match text {
            "t" | "true" => Ok(true),
            "f" | "false" => Ok(false),
            _ => Err(format!("{text:?} is not a boolean")),
        }
    }
}

impl FromField for DateTime<Utc> {
    /// PostgreSQL `TIMESTAMPTZ` text carries the session's offset (`+00`, `+01`,
    /// `+05:30`); Redshift `TIMESTAMP` has none and is UTC by the loader's contract.
    fn from_field(text: &str) -> Result<Self, String> {
        DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc()))
            .map_err(|_| format!("{text:?} is not a timestamp"))
    }
}

/// One row of a query's answer, read by column name.
pub(crate) struct Row<'a> {
    query: &'static str,
    columns: &'static [&'static str],
    index: usize,
    fields: &'a [Option<String>],
}

impl Row<'_> {
    /// Column `name`, which must not be NULL.
    pub(crate) fn get<T: FromField>(&self, name: &'static str) -> Result<T, LoadError> {
        self.opt(name)?
            .ok_or_else(|| self.error(name, "NULL where a value is required".into()))
    }

    /// Column `name`, `None` when NULL.
    pub(crate) fn opt<T: FromField>(&self, name: &'static str) -> Result<Option<T>, LoadError> {
        let Some(position) = self.columns.iter().position(|column| *column == name) else {
            return Err(self.error(name, "not a column of this query".into()));
        };
        match self.fields.get(position).and_then(Option::as_deref) {
            None => Ok(None),
            Some(text) => T::from_field(text).map(Some).map_err(|why| self.error(name, why)),
        }
    }

    fn error(&self, column: &'static str, why: String) -> LoadError {
        LoadError::Decode {
            query: self.query,
            row: self.index,
            column,
            why,
        }
    }
}

/// Decodes every row of an answer as `T`; a row of another width is an error.
pub(crate) fn decode<T: FromRow>(rows: Vec<Vec<Option<String>>>) -> Result<Vec<T>, LoadError> {
    rows.iter()
        .enumerate()
        .map(|(index, fields)| {
            let row = Row {
                query: T::QUERY,
                columns: T::COLUMNS,
                index,
                fields,
            };
            if fields.len() != T::COLUMNS.len() {
                return Err(row.error(
                    T::COLUMNS.first().copied().unwrap_or_default(),
                    format!(
                        "{} columns where {} were asked for",
                        fields.len(),
                        T::COLUMNS.len()
                    ),
                ));
            }
            T::from_row(&row)
        })
        .collect()
}

/// Decodes an answer that must be exactly one row (an aggregate without `GROUP BY`).
pub(crate) fn decode_one<T: FromRow>(rows: Vec<Vec<Option<String>>>) -> Result<T, LoadError> {
    let count = rows.len();
    let mut decoded = decode::<T>(rows)?;
    match decoded.pop() {
        Some(row) if count == 1 => Ok(row),
        _ => Err(LoadError::Decode {
            query: T::QUERY,
            row: 0,
            column: T::COLUMNS.first().copied().unwrap_or_default(),
            why: format!("{count} rows where one was expected"),
        }),
    }
}

/// Implements [`FromRow`] for a struct whose fields are its query's columns, in `SELECT`
/// order: `field: get` for a column that must not be NULL, `field: opt` for one that may
/// be (an `Option` field). Errors name the column by its field.
macro_rules! from_row {
    ($query:literal, $type:ident { $($field:ident: $read:ident),+ $(,)? }) => {
        impl $crate::load::FromRow for $type {
            const QUERY: &'static str = $query;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];
            fn from_row(row: &$crate::load::Row<'_>) -> Result<Self, $crate::load::LoadError> {
                Ok($type {
                    $($field: row.$read(stringify!($field))?),+
                })
            }
        }
    };
}
pub(crate) use from_row;

from_row!(
    "the warehouse's objects",
    ExistingObject {
        kind: get,
        name: get,
        owned: get,
        comment: opt
    }
);

from_row!(
    "who reads the warehouse's views",
    ViewReader {
        view_name: get,
        reader: get
    }
);

/// `SELECT COUNT(*) …`.
pub(crate) struct Count(pub i64);

impl FromRow for Count {
    const QUERY: &'static str = "a count";
    const COLUMNS: &'static [&'static str] = &["count"];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
        Ok(Count(row.get("count")?))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    struct Ledger {
        status: String,
        files: i64,
        newest: Option<DateTime<Utc>>,
    }

    impl FromRow for Ledger {
        const QUERY: &'static str = "test: ledger";
        const COLUMNS: &'static [&'static str] = &["status", "files", "newest"];
        fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
            Ok(Ledger {
                status: row.get("status")?,
                files: row.get("files")?,
                newest: row.opt("newest")?,
            })
        }
    }

    fn text(fields: &[Option<&str>]) -> Vec<Option<String>> {
        fields.iter().map(|f| f.map(str::to_owned)).collect()
    }

    #[test]
    fn rows_are_read_by_name_and_type() {
        let rows = decode::<Ledger>(vec![
            text(&[Some("loaded"), Some("12"), Some("2026-11-25 10:00:00.5")]),
            text(&[Some("quarantined"), Some("0"), None]),
        ])
        .expect("decoded");
        assert_eq!((rows[0].status.as_str(), rows[0].files), ("loaded", 12));
        assert_eq!(
            rows[0].newest,
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + chrono::Duration::milliseconds(500))
        );
        assert_eq!(rows[1].newest, None);
    }

    #[test]
    fn a_value_that_does_not_parse_is_an_error_naming_query_row_and_column() {
        for (fields, column) in [
            (text(&[Some("loaded"), Some("12.0"), None]), "files"),
            (text(&[Some("loaded"), Some("x"), None]), "files"),
            (text(&[Some("loaded"), None, None]), "files"),
            (text(&[Some("loaded"), Some("1"), Some("yesterday")]), "newest"),
            (text(&[Some("loaded"), Some("1")]), "status"),
        ] {
            let error = decode::<Ledger>(vec![text(&[Some("ok"), Some("1"), None]), fields])
                .err()
                .expect("an error, not a default");
            match &error {
                LoadError::Decode {
                    query,
                    row,
                    column: c,
                    ..
                } => assert_eq!((*query, *row, *c), ("test: ledger", 1, column), "{error}"),
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn timestamps_of_both_warehouses_parse_to_utc() {
        let ten = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        for (written, expected) in [
            ("2026-11-25 10:00:00", ten),
            ("2026-11-25 10:00:00+00", ten),
            ("2026-11-25 11:00:00+01", ten),
            ("2026-11-25 15:30:00+05:30", ten),
            (
                "2026-11-25 10:00:00.000001",
                ten + chrono::Duration::microseconds(1),
            ),
        ] {
            assert_eq!(DateTime::<Utc>::from_field(written), Ok(expected), "{written}");
        }
    }

    #[test]
    fn integers_keep_their_range_and_booleans_both_spellings() {
        assert_eq!(i64::from_field("9223372036854775807"), Ok(i64::MAX));
        assert!(i32::from_field("2147483648").is_err());
        assert!(u64::from_field("-1").is_err());
        assert_eq!(bool::from_field("t"), Ok(true));
        assert_eq!(bool::from_field("false"), Ok(false));
        assert!(bool::from_field("yes").is_err());
    }

    #[test]
    fn one_row_means_exactly_one() {
        assert_eq!(
            decode_one::<Count>(vec![text(&[Some("3")])]).map(|c| c.0).ok(),
            Some(3)
        );
        assert!(decode_one::<Count>(vec![]).is_err());
        assert!(decode_one::<Count>(vec![text(&[Some("3")]), text(&[Some("4")])]).is_err());
    }
}
