//! One partition's open file: Arrow builders collecting a contiguous offset range of one
//! hour, and its encoding to Parquet under a key that depends only on partition and
//! first offset.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use schemas::{ExposureBatchBuilder, LakeRow, LAKE_SCHEMA_VERSION};

/// Rows per Parquet row group. Redshift COPY parallelises by file, so large row groups
/// cost it nothing, while Spectrum/Athena/DuckDB prune by row-group statistics; 128 Ki
/// rows of exposures is roughly 8–16 MiB compressed.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Columns whose values are (nearly) unique per row: dictionary encoding would only
/// grow them. Everything else (experiment, variation, source, country, …) is
/// low-cardinality and dictionary-encoded.
const NO_DICTIONARY: [&str; 4] = ["event_id", "attributes", "extra", "kafka_offset"];

/// Parquet key-value metadata keys describing a file's row range.
pub const META_TOPIC: &str = "exposures.topic";
pub const META_PARTITION: &str = "exposures.partition";
pub const META_FIRST_OFFSET: &str = "exposures.first_offset";
pub const META_LAST_OFFSET: &str = "exposures.last_offset";
pub const META_ROWS: &str = "exposures.rows";
pub const META_SCHEMA_VERSION: &str = "exposures.schema_version";

/// The codec of the Parquet pages (`--compression`).
///
/// Snappy is the default because it is the one codec every reader of the lake documents:
/// Redshift COPY reads Parquet through Spectrum, whose documented codecs are gzip,
/// Snappy and bzip2 (<https://docs.aws.amazon.com/redshift/latest/dg/c-spectrum-data-files.html>),
/// and Athena and DuckDB read Snappy, gzip and zstd. zstd files are about a third
/// smaller; choose it when only Athena/DuckDB/PostgreSQL read the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ParquetCodec {
    #[default]
    Snappy,
    Zstd,
    Gzip,
}

impl ParquetCodec {
    fn compression(self) -> Result<Compression, ParquetError> {
        Ok(match self {
            ParquetCodec::Snappy => Compression::SNAPPY,
            ParquetCodec::Zstd => Compression::ZSTD(ZstdLevel::try_new(3)?),
            ParquetCodec::Gzip => Compression::GZIP(GzipLevel::try_new(6)?),
        })
    }
}

/// The UTC hour a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hour(DateTime<Utc>);

impl Hour {
    pub fn of_millis(timestamp_ms: i64) -> Hour {
        let t = Utc
            .timestamp_millis_opt(timestamp_ms)
            .single()
            .unwrap_or_else(Utc::now);
        Hour(
            t.with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(t),
        )
    }

    /// `YYYY-MM-DDTHH`.
    pub fn label(&self) -> String {
        self.0.format("%Y-%m-%dT%H").to_string()
    }
}

/// The key of a file's dead letters (records of its offset range that are not loadable
/// exposures), relative to the lake prefix: outside `exposures/` so tables over the
/// Parquet files never see them.
pub fn relative_rejected_key(hour: Hour, partition: i32, first_offset: i64) -> String {
    format!(
        "_rejected/{LAKE_SCHEMA_VERSION}/dt={}/hour={}/p{partition:03}-{first_offset:020}.ndjson",
        hour.0.format("%Y-%m-%d"),
        hour.0.format("%H"),
    )
}

/// One dead-lettered record, a line of the NDJSON sidecar.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// The record's value as sent (invalid UTF-8 replaced).
    pub payload: String,
    pub reason: String,
}

/// The object key of a file, relative to the lake prefix (DESIGN.md §4).
pub fn relative_key(hour: Hour, partition: i32, first_offset: i64) -> String {
    format!(
        "exposures/{LAKE_SCHEMA_VERSION}/dt={}/hour={}/p{partition:03}-{first_offset:020}.parquet",
        hour.0.format("%Y-%m-%d"),
        hour.0.format("%H"),
    )
}

pub struct OpenFile {
    pub partition: i32,
    pub hour: Hour,
    pub first_offset: i64,
    pub last_offset: i64,
    pub opened: Instant,
    builder: ExposureBatchBuilder,
    dead_letters: Vec<DeadLetter>,
}

impl OpenFile {
    pub fn new(partition: i32, hour: Hour, first_offset: i64) -> OpenFile {
        OpenFile {
            partition,
            hour,
            first_offset,
            last_offset: first_offset - 1,
            opened: Instant::now(),
            builder: ExposureBatchBuilder::new(),
            dead_letters: Vec::new(),
        }
    }

    pub fn append(&mut self, row: &LakeRow<'_>, offset: i64) {
        self.builder.append(row, self.partition, offset);
        self.last_offset = offset;
    }

    /// Keeps a record that is not a loadable exposure as a dead letter of this file, so
    /// the file's range (and the offset committed after it) covers it and the loader
    /// puts it in `exposures_rejected`.
    pub fn reject(&mut self, offset: i64, payload: &[u8], reason: String) {
        self.dead_letters.push(DeadLetter {
            kafka_partition: self.partition,
            kafka_offset: offset,
            payload: String::from_utf8_lossy(payload).into_owned(),
            reason,
        });
        self.last_offset = offset;
    }

    pub fn has_dead_letters(&self) -> bool {
        !self.dead_letters.is_empty()
    }

    pub fn rows(&self) -> usize {
        self.builder.rows()
    }

    pub fn approx_bytes(&self) -> usize {
        self.builder.approx_bytes()
    }

    /// Encodes the rows as a Parquet file (pages compressed with `codec`, dictionaries
    /// for low-cardinality columns, page statistics, row range in the key-value
    /// metadata). Timestamps are INT64 microseconds annotated
    /// `TIMESTAMP(isAdjustedToUTC=true, MICROS)`, which Redshift COPY loads into
    /// `TIMESTAMP` columns as UTC.
    pub fn encode(mut self, topic: &str, codec: ParquetCodec) -> Result<EncodedFile, ParquetError> {
        let rows = self.builder.rows();
        let batch = self.builder.finish()?;
        let metadata = vec![
            KeyValue::new(META_TOPIC.to_owned(), topic.to_owned()),
            KeyValue::new(META_PARTITION.to_owned(), self.partition.to_string()),
            KeyValue::new(META_FIRST_OFFSET.to_owned(), self.first_offset.to_string()),
            KeyValue::new(META_LAST_OFFSET.to_owned(), self.last_offset.to_string()),
            KeyValue::new(META_ROWS.to_owned(), rows.to_string()),
            KeyValue::new(META_SCHEMA_VERSION.to_owned(), LAKE_SCHEMA_VERSION.to_owned()),
        ];
        let mut properties = WriterProperties::builder()
            .set_compression(codec.compression()?)
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("exposures {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(metadata));
        for column in NO_DICTIONARY {
            properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        let mut writer =
            ArrowWriter::try_new(Vec::new(), Arc::clone(&batch.schema()), Some(properties.build()))?;
        writer.write(&batch)?;
        let bytes = writer.into_inner()?;
        let dead_letters = (!self.dead_letters.is_empty()).then(|| {
            let mut ndjson = Vec::new();
            for letter in &self.dead_letters {
                if serde_json::to_writer(&mut ndjson, letter).is_ok() {
                    ndjson.push(b'\n');
                }
            }
            bytes::Bytes::from(ndjson)
        });
        Ok(EncodedFile {
            partition: self.partition,
            hour: self.hour,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            rows: rows as u64,
            bytes: bytes.into(),
            dead_letters,
            dead_letter_count: self.dead_letters.len() as u64,
        })
    }
}

pub struct EncodedFile {
    pub partition: i32,
    pub hour: Hour,
    pub first_offset: i64,
    pub last_offset: i64,
    pub rows: u64,
    pub bytes: bytes::Bytes,
    /// The NDJSON of the file's dead letters, if it has any.
    pub dead_letters: Option<bytes::Bytes>,
    pub dead_letter_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_hour_partition_and_first_offset_only() {
        let hour = Hour::of_millis(1_764_072_000_000 + 59 * 60_000 + 59_999); // 2025-11-25T12:59:59.999Z
        assert_eq!(hour.label(), "2025-11-25T12");
        assert_eq!(
            relative_key(hour, 7, 42),
            "exposures/v1/dt=2025-11-25/hour=12/p007-00000000000000000042.parquet"
        );
        assert_eq!(
            Hour::of_millis(1_764_072_000_000 + 3_600_000).label(),
            "2025-11-25T13"
        );
    }
}
