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
