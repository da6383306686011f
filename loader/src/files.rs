//! The file record: what the sink announces on the `exposures.files` topic for every
//! object it wrote, and what the load stage consumes. Keyed by object key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// The hour (of Kafka record timestamps, i.e. receive time) the file belongs to,
    /// `YYYY-MM-DDTHH`.
    pub hour: String,
    pub written_at: DateTime<Utc>,
    /// Full key of the NDJSON object holding the records of this offset range that are
    /// not loadable exposures (`sink::file::DeadLetter` per line), if there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_key: Option<String>,
    /// How many records that object holds.
    #[serde(default)]
    pub rejected_rows: u64,
}

impl FileRecord {
    /// The ledger row of this file quarantined for `reason` in batch `batch_id`: none of
    /// its rows loaded; its dead letters, if any, recorded.
    pub fn quarantined<'a>(&'a self, batch_id: &'a str, reason: &'a str) -> schemas::ledger::LedgerRow<'a> {
        schemas::ledger::LedgerRow {
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
    pub fn check(&self) -> Result<(), String> {
        std::iter::once(self.key.as_str())
            .chain(self.rejected_key.as_deref())
            .try_for_each(check_key)
    }
}

/// A key is relative, without `.`/`..` segments, backslashes or NUL.
pub fn check_key(key: &str) -> Result<(), String> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\\')
        || key.contains('\0')
        || key
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        Err(format!(
            "object key '{key}' is not a relative path inside the lake"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_outside_the_lake_are_refused() {
        assert!(check_key("exposures/v1/dt=2026-11-25/hour=10/p000-00000000000000000000.parquet").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../../etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "a\0b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
