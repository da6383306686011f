//! The lake's layout: the one definition of where the pipeline's objects live in the lake
//! and what they say about themselves. The sink writes by it, the load stage and
//! `reconcile` read by it, and `ddl --external` points tables at it. Keys are relative to
//! the lake's prefix (`s3://BUCKET/PREFIX` or `file:///DIR`):
//!
//! - **data files**: `exposures/v1/dt=YYYY-MM-DD/hour=HH/pPPP-OOOOOOOOOOOOOOOOOOOO.parquet`
//!   ([`FileKey::data_key`]): Hive-style partitions, so one external table at
//!   [`data_dir`] covers every hour; the name depends only on the Kafka partition and the
//!   first offset, so a sink that rewrites a file after a crash overwrites the same
//!   object. The Parquet key-value metadata holds the file's row range ([`FileRange`]).
//! - **dead letters**: `_rejected/v1/dt=…/hour=…/pPPP-….ndjson` ([`FileKey::dead_letter_key`]),
//!   beside the data and outside `exposures/`, so tables over the data never see them;
//!   one [`DeadLetter`] JSON object per line.
//! - **file records**: what the sink announces on `exposures.files` for every data file
//!   and the load stage consumes ([`FileRecord`]).
//!
//! A key read from a file record is data anyone with produce rights on that topic can
//! write, so every key is checked by [`check_key`] before it is read or written.

use chrono::{DateTime, NaiveDate, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::columns::{TableDef, EXPOSURES, LAKE_SCHEMA_VERSION, TABLES};
use crate::ledger::LedgerRow;

/// The directory of every data file of `exposures`, relative to the lake's prefix:
/// `exposures/v1/`.
pub fn data_dir() -> String {
    data_dir_of(&EXPOSURES)
}

/// The directory of every data file of `table`: `{table}/v1/` (`feature_usage/v1/`…).
pub fn data_dir_of(table: &TableDef) -> String {
    format!("{}/{LAKE_SCHEMA_VERSION}/", table.name)
}

/// The directory of every dead-letter file, relative to the lake's prefix: `_rejected/v1/`.
pub fn dead_letter_dir() -> String {
    format!("_rejected/{LAKE_SCHEMA_VERSION}/")
}

/// The Hive partition directory of one hour: `dt=YYYY-MM-DD/hour=HH/`.
pub fn partition_dir(dt: &str, hour: &str) -> String {
    format!("dt={dt}/hour={hour}/")
}

/// The UTC hour a record belongs to (by its Kafka timestamp, i.e. when ingest received it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hour(DateTime<Utc>);

impl Hour {
    /// The hour holding `timestamp_ms`; a timestamp chrono cannot represent is taken as now.
    pub fn of_millis(timestamp_ms: i64) -> Hour {
        let t = Utc
            .timestamp_millis_opt(timestamp_ms)
            .single()
            .unwrap_or_else(Utc::now);
        Hour::starting(t)
    }

    /// The hour holding `t`.
    pub fn starting(t: DateTime<Utc>) -> Hour {
        Hour(
            t.with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(t),
        )
    }

    /// The hour `hour_of_day` (0–23) of `date`.
    pub fn of_day(date: NaiveDate, hour_of_day: u32) -> Option<Hour> {
        let start = date.and_hms_opt(hour_of_day, 0, 0)?;
        Some(Hour(Utc.from_utc_datetime(&start)))
    }

    /// `YYYY-MM-DDTHH`, the `hour` of a [`FileRecord`].
    pub fn label(&self) -> String {
        self.0.format("%Y-%m-%dT%H").to_string()
    }

    /// The `dt=` partition value, `YYYY-MM-DD`.
    pub fn dt(&self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }

    /// The `hour=` partition value, `HH`.
    pub fn hour_of_day(&self) -> String {
        self.0.format("%H").to_string()
    }

    pub fn date(&self) -> NaiveDate {
        self.0.date_naive()
    }

    /// The first instant after the hour.
    pub fn end(&self) -> DateTime<Utc> {
        self.0 + chrono::Duration::hours(1)
    }
}

/// What names a data file and its dead letters: its table, the hour, the Kafka
/// partition and the first offset of the contiguous offset range the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    pub table: &'static TableDef,
    pub hour: Hour,
    pub partition: i32,
    pub first_offset: i64,
}

impl FileKey {
    /// The data file's key, relative to the lake's prefix.
    pub fn data_key(&self) -> String {
        format!("{}{}.parquet", data_dir_of(self.table), self.name())
    }

    /// The key of the file's dead letters, relative to the lake's prefix.
    pub fn dead_letter_key(&self) -> String {
        format!("{}{}.ndjson", dead_letter_dir(), self.name())
    }

    /// `dt=…/hour=…/pPPP-OFFSET`, shared by the data file and its dead letters.
    fn name(&self) -> String {
        format!(
            "{}p{:03}-{:020}",
            partition_dir(&self.hour.dt(), &self.hour.hour_of_day()),
            self.partition,
            self.first_offset
        )
    }

    /// The file key of a data file's key (relative to the lake's prefix); `None` for any
    /// other object (a temporary upload, a file of another layout, a dead letter).
    pub fn parse_data_key(relative: &str) -> Option<FileKey> {
        let (table, rest) = TABLES
            .into_iter()
            .find_map(|table| Some((table, relative.strip_prefix(&data_dir_of(table))?)))?;
        let mut segments = rest.split('/');
        let date = NaiveDate::parse_from_str(segments.next()?.strip_prefix("dt=")?, "%Y-%m-%d").ok()?;
        let hour_of_day = segments.next()?.strip_prefix("hour=")?;
        let name = segments.next()?.strip_suffix(".parquet")?;
        let (partition, offset) = name.strip_prefix('p')?.split_once('-')?;
        if segments.next().is_some() || hour_of_day.len() != 2 {
            return None;
        }
        let key = FileKey {
            table,
            hour: Hour::of_day(date, hour_of_day.parse().ok()?)?,
            partition: digits(partition)?,
            first_offset: digits(offset)?,
        };
        // Only the canonical spelling: `p3-…` or `hour=7` is some other writer's file.
        (key.data_key() == relative).then_some(key)
    }
}

/// A non-negative decimal number, digits only (no sign: `str::parse` takes `+1`).
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A key that could point outside the lake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object key '{0}' is not a relative path inside the lake")]
pub struct KeyOutsideLake(pub String);

/// A key is relative, without `.`/`..` segments, backslashes or NUL.
pub fn check_key(key: &str) -> Result<(), KeyOutsideLake> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\\')
        || key.contains('\0')
        || key
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        Err(KeyOutsideLake(key.to_owned()))
    } else {
        Ok(())
    }
}

/// The Parquet key-value metadata keys of a data file's row range.
pub mod metadata {
    pub const TOPIC: &str = "exposures.topic";
    pub const PARTITION: &str = "exposures.partition";
    pub const FIRST_OFFSET: &str = "exposures.first_offset";
    pub const LAST_OFFSET: &str = "exposures.last_offset";
    pub const ROWS: &str = "exposures.rows";
    pub const SCHEMA_VERSION: &str = "exposures.schema_version";
}

/// A data file's row range, as its Parquet key-value metadata states it: the file holds
/// the exposures among offsets `first_offset..=last_offset` of `topic`'s `partition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRange {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub rows: u64,
}

/// Why a file's key-value metadata is not a row range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("no {0} in the Parquet metadata")]
    Missing(&'static str),
    #[error("{0} in the Parquet metadata is not a number in range")]
    NotANumber(&'static str),
}

impl FileRange {
    /// What is known when a file is opened (its writer needs it before the first row
    /// group): topic, partition, first offset, layout version.
    pub fn opening_metadata(topic: &str, partition: i32, first_offset: i64) -> Vec<(&'static str, String)> {
        vec![
            (metadata::TOPIC, topic.to_owned()),
            (metadata::PARTITION, partition.to_string()),
            (metadata::FIRST_OFFSET, first_offset.to_string()),
            (metadata::SCHEMA_VERSION, LAKE_SCHEMA_VERSION.to_owned()),
        ]
    }

    /// What is known when a file is closed: its last offset and row count.
    pub fn closing_metadata(last_offset: i64, rows: u64) -> Vec<(&'static str, String)> {
        vec![
            (metadata::LAST_OFFSET, last_offset.to_string()),
            (metadata::ROWS, rows.to_string()),
        ]
    }

    /// Reads the range back from the metadata `value_of` looks up.
    pub fn from_metadata<'a>(value_of: impl Fn(&str) -> Option<&'a str>) -> Result<FileRange, MetadataError> {
        let text = |name: &'static str| value_of(name).ok_or(MetadataError::Missing(name));
        fn number<T: std::str::FromStr>(name: &'static str, text: &str) -> Result<T, MetadataError> {
            text.parse().map_err(|_| MetadataError::NotANumber(name))
        }
        Ok(FileRange {
            topic: text(metadata::TOPIC)?.to_owned(),
            partition: number(metadata::PARTITION, text(metadata::PARTITION)?)?,
            first_offset: number(metadata::FIRST_OFFSET, text(metadata::FIRST_OFFSET)?)?,
            last_offset: number(metadata::LAST_OFFSET, text(metadata::LAST_OFFSET)?)?,
            rows: number(metadata::ROWS, text(metadata::ROWS)?)?,
        })
    }
}

/// One dead-lettered record: a line of a dead-letter file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// The record's value as sent (invalid UTF-8 replaced).
    pub payload: String,
    pub reason: String,
}

impl DeadLetter {
    /// The dead-letter file of `letters`: one JSON object per line (JSON escapes every
    /// line break inside a string, so a payload never splits a line).
    pub fn file_of(letters: &[DeadLetter]) -> Vec<u8> {
        let mut ndjson = Vec::new();
        for letter in letters {
            // A struct of strings and integers always serialises.
            if serde_json::to_writer(&mut ndjson, letter).is_ok() {
                ndjson.push(b'\n');
            }
        }
        ndjson
    }

    /// The lines of a dead-letter file, each with its parse: a line that is not a dead
    /// letter (an edited or truncated file) is returned with its error, not skipped.
    pub fn lines_of(file: &[u8]) -> impl Iterator<Item = (&[u8], Result<DeadLetter, serde_json::Error>)> {
        file.split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| (line, serde_json::from_slice(line)))
    }
}

/// The file record: what the sink announces on the `exposures.files` topic for every data
/// file it wrote, keyed by object key, and what the load stage consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// `s3://bucket[/prefix]` or `file:///dir` of the lake.
    pub lake: String,
    pub bucket: String,
    /// Full object key.
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub rows: u64,
    /// Source topic and partition; the object holds offsets `first_offset..=last_offset`
    /// of it (those that were exposures).
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The hour the file belongs to, [`Hour::label`].
    pub hour: String,
    pub written_at: DateTime<Utc>,
    /// Full key of the dead-letter file of this offset range (records that are not
    /// loadable exposures, a [`DeadLetter`] per line), if there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_key: Option<String>,
    /// How many records that object holds.
    #[serde(default)]
    pub rejected_rows: u64,
    /// The table the object's rows belong to (`exposures` in records of earlier
    /// releases, which had no other).
    #[serde(default = "exposures_table_name")]
    pub table: String,
}

fn exposures_table_name() -> String {
    EXPOSURES.name.to_owned()
}

impl FileRecord {
    /// The table the file's rows go to; `None` for a table this release does not know.
    pub fn table_def(&self) -> Option<&'static TableDef> {
        TABLES.into_iter().find(|table| table.name == self.table)
    }

    /// The ledger row of this file quarantined for `reason` in batch `batch_id`: none of
    /// its rows loaded; its dead letters, if any, recorded.
    pub fn quarantined<'a>(&'a self, batch_id: &'a str, reason: &'a str) -> LedgerRow<'a> {
        LedgerRow {
            object_key: &self.key,
            etag: &self.etag,
            size_bytes: self.size,
            rows_in_file: self.rows + self.rejected_rows,
            rows_loaded: 0,
            rows_rejected: self.rejected_rows,
            batch_id,
            status: "quarantined",
            reason: Some(reason),
        }
    }

    /// Refuses a record whose keys could point outside the lake: a file record is data
    /// from a topic anyone with produce rights can write, and the loader reads (and, for
    /// Redshift, writes manifests) where it says.
    pub fn check(&self) -> Result<(), KeyOutsideLake> {
        std::iter::once(self.key.as_str())
            .chain(self.rejected_key.as_deref())
            .try_for_each(check_key)
    }
}

#[cfg(test)]
mod tests;
