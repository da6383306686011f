//! One table's file of a partition's open range ([`super::range::OpenRange`]): its rows
//! encoded to Parquet as they come, under a key that depends only on its table, the
//! partition and the range's first offset.
//!
//! Rows are collected in Arrow builders and handed to the Parquet writer every
//! [`ENCODE_CHUNK_ROWS`], so an open file holds its rows as compressed Parquet (about a
//! tenth of their size as Arrow columns) plus one chunk of builders, and each chunk is
//! encoded while it is still in the CPU's cache.

use std::sync::{Arc, Mutex};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use schemas::lake_layout::{DeadLetter, FileRange, Hour};
use schemas::tracked::{TrackedBatchBuilder, TrackedRow};
use schemas::{ColumnType, ExposureBatchBuilder, LakeRow, TableDef, EXPOSURES};

/// Rows per Parquet row group. Redshift COPY parallelises by file, so large row groups
/// cost it nothing, while Spectrum/Athena/DuckDB prune by row-group statistics; 128 Ki
/// rows of exposures is roughly 8–16 MiB compressed.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows collected in Arrow builders before they are encoded into the open Parquet file.
pub const ENCODE_CHUNK_ROWS: usize = 2048;

/// Columns whose values are (nearly) unique per row, besides the JSON ones: dictionary
/// encoding would only grow them. Everything else (experiment, variation, source,
/// country, …) is low-cardinality and dictionary-encoded.
const NO_DICTIONARY: [&str; 2] = ["event_id", "kafka_offset"];

/// The JSON columns of `table`: no dictionary (nearly unique per row) and no min/max
/// statistics (no reader prunes on the minimum and maximum of JSON text, and comparing
/// every long value for them cost the sink ~3% of its time).
fn json_columns(table: &TableDef) -> impl Iterator<Item = &'static str> {
    table
        .columns
        .iter()
        .filter(|column| column.kind == ColumnType::Json)
        .map(|column| column.name)
}

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

/// The Arrow builders of one table's rows. One per open file, a few alive at once: the
/// size difference of the variants costs nothing worth a box on the hot path.
#[allow(clippy::large_enum_variant)]
enum Rows {
    Exposures(ExposureBatchBuilder),
    Tracked(TrackedBatchBuilder),
}

impl Rows {
    fn of(table: &'static TableDef) -> Rows {
        if table == &EXPOSURES {
            Rows::Exposures(ExposureBatchBuilder::new())
        } else {
            Rows::Tracked(TrackedBatchBuilder::new(table))
        }
    }

    fn rows(&self) -> usize {
        match self {
            Rows::Exposures(builder) => builder.rows(),
            Rows::Tracked(builder) => builder.rows(),
        }
    }

    fn approx_bytes(&self) -> usize {
        match self {
            Rows::Exposures(builder) => builder.approx_bytes(),
            Rows::Tracked(builder) => builder.approx_bytes(),
        }
    }

    fn finish(&mut self) -> Result<arrow_array::RecordBatch, arrow_schema::ArrowError> {
        match self {
            Rows::Exposures(builder) => builder.finish(),
            Rows::Tracked(builder) => builder.finish(),
        }
    }
}

/// One table's file of an open range.
pub struct OpenFile {
    pub table: &'static TableDef,
    pub partition: i32,
    pub hour: Hour,
    pub first_offset: i64,
    pub last_offset: i64,
    codec: ParquetCodec,
    topic: String,
    /// Rows appended, encoded or not.
    rows: usize,
    /// The rows not yet encoded.
    builder: Rows,
    /// The Parquet file so far; created with the first chunk. The `Mutex` is never
    /// locked (the writer is reached through `&mut self` and `Mutex::get_mut`): it only
    /// makes the file `Sync`, which the sink's futures need and the writer is not.
    writer: Option<Mutex<ArrowWriter<Vec<u8>>>>,
    /// The writer's bytes in memory after the last chunk (written and in its open row
    /// group), kept so that sizing the file, on every record, needs no writer.
    encoded_bytes: usize,
    dead_letters: Vec<DeadLetter>,
}

impl OpenFile {
    /// A file of `table`'s rows from `topic`'s `partition` starting at `first_offset`,
    /// its pages compressed with `codec`.
    pub fn new(
        table: &'static TableDef,
        partition: i32,
        hour: Hour,
        first_offset: i64,
        topic: &str,
        codec: ParquetCodec,
    ) -> OpenFile {
        OpenFile {
            table,
            partition,
            hour,
            first_offset,
            last_offset: first_offset - 1,
            codec,
            topic: topic.to_owned(),
            rows: 0,
            builder: Rows::of(table),
            writer: None,
            encoded_bytes: 0,
            dead_letters: Vec::new(),
        }
    }

    /// Appends the exposure read at `offset`, encoding the collected chunk when it is full.
    pub fn append(&mut self, row: &LakeRow<'_>, offset: i64) -> Result<(), ParquetError> {
        let Rows::Exposures(builder) = &mut self.builder else {
            return Err(ParquetError::General(format!(
                "an exposure appended to a file of {}",
                self.table.name
            )));
        };
        builder.append(row, self.partition, offset);
        self.appended(offset)
    }

    /// Appends the tracked row read at `offset`, encoding the collected chunk when it is
    /// full.
    pub fn append_tracked(&mut self, row: &TrackedRow, offset: i64) -> Result<(), ParquetError> {
        let Rows::Tracked(builder) = &mut self.builder else {
            return Err(ParquetError::General(format!(
                "a {} row appended to a file of exposures",
                row.table.name
            )));
        };
        builder.append(row, self.partition, offset)?;
        self.appended(offset)
    }

    fn appended(&mut self, offset: i64) -> Result<(), ParquetError> {
        self.rows += 1;
        self.last_offset = offset;
        if self.builder.rows() >= ENCODE_CHUNK_ROWS {
            self.encode_chunk()?;
        }
        Ok(())
    }

    /// Hands the collected rows to the Parquet writer (creating it the first time).
    fn encode_chunk(&mut self) -> Result<(), ParquetError> {
        let batch = self.builder.finish()?;
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(Mutex::new(self.create_writer(&batch)?)),
        };
        let writer = writer.get_mut().map_err(|_| poisoned())?;
        writer.write(&batch)?;
        self.encoded_bytes = writer.bytes_written() + writer.memory_size();
        Ok(())
    }

    /// The writer: `codec` pages, dictionaries for low-cardinality columns, page
    /// statistics, and the row range known so far in the key-value metadata (the last
    /// offset and row count are added at the end). Timestamps are INT64 microseconds of
    /// UTC annotated `TIMESTAMP(isAdjustedToUTC=false, MICROS)` ([`schemas::arrow_schema`]).
    fn create_writer(&self, batch: &arrow_array::RecordBatch) -> Result<ArrowWriter<Vec<u8>>, ParquetError> {
        let metadata = FileRange::opening_metadata(&self.topic, self.partition, self.first_offset)
            .into_iter()
            .map(|(key, value)| KeyValue::new(key.to_owned(), value))
            .collect();
        let mut properties = WriterProperties::builder()
            .set_compression(self.codec.compression()?)
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("exposures {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(metadata));
        for column in NO_DICTIONARY.into_iter().chain(json_columns(self.table)) {
            properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        for column in json_columns(self.table) {
            properties =
                properties.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
        }
        ArrowWriter::try_new(Vec::new(), Arc::clone(&batch.schema()), Some(properties.build()))
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
        self.rows
    }

    /// What the file holds in memory: the Parquet written so far, the writer's open
    /// row group, and the rows not yet encoded.
    pub fn approx_bytes(&self) -> usize {
        self.encoded_bytes + self.builder.approx_bytes()
    }

    /// Encodes the rest of the rows and finishes the Parquet file, its row range (last
    /// offset, rows) added to the key-value metadata.
    pub fn encode(mut self) -> Result<EncodedFile, ParquetError> {
        let rows = self.rows;
        if self.writer.is_none() || self.builder.rows() > 0 {
            self.encode_chunk()?;
        }
        let Some(writer) = self.writer.take() else {
            return Err(ParquetError::General("the Parquet writer was not created".into()));
        };
        let mut writer = writer.into_inner().map_err(|_| poisoned())?;
        for (key, value) in FileRange::closing_metadata(self.last_offset, rows as u64) {
            writer.append_key_value_metadata(KeyValue::new(key.to_owned(), value));
        }
        let bytes = writer.into_inner()?;
        let dead_letters = (!self.dead_letters.is_empty())
            .then(|| bytes::Bytes::from(DeadLetter::file_of(&self.dead_letters)));
        Ok(EncodedFile {
            table: self.table,
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

/// A writer's `Mutex` is never locked, so it cannot be poisoned; but if it were, the
/// file's rows are not trusted.
fn poisoned() -> ParquetError {
    ParquetError::General("the open file's Parquet writer is poisoned".into())
}

pub struct EncodedFile {
    pub table: &'static TableDef,
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
    use schemas::lake_layout::metadata;
    use schemas::LAKE_SCHEMA_VERSION;

    use super::*;

    /// A record as ingest writes it, for the `index`th user.
    fn kafka_value(index: usize) -> Vec<u8> {
        format!(
            r#"{{"event_id":"e{index}","ds_user_id":"user_{index}","experiment_id":"x","variation_id":"1","exposed_at":"2026-11-25T12:00:00Z","received_at":"2026-11-25T12:00:00.123456Z","attributes":{{"platform":"web","n":{index}}}}}"#
        )
        .into_bytes()
    }

    /// Rows, offsets and the file's metadata of encoded Parquet bytes.
    fn read_back(encoded: &EncodedFile) -> (Vec<i64>, Vec<String>, Vec<(String, String)>) {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let reader = ParquetRecordBatchReaderBuilder::try_new(encoded.bytes.clone()).expect("parquet");
        let metadata = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let (mut offsets, mut event_ids) = (Vec::new(), Vec::new());
        for batch in reader.build().expect("reader") {
            let batch = batch.expect("batch");
            let column = |name: &str| batch.column_by_name(name).expect("column").clone();
            offsets.extend(
                column("kafka_offset")
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            event_ids.extend(
                column("event_id")
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap_or_default().to_owned()),
            );
        }
        (offsets, event_ids, metadata)
    }

    #[test]
    fn a_file_encoded_in_chunks_holds_every_row_in_order_and_its_range() {
        let rows = ENCODE_CHUNK_ROWS * 2 + 1; // two full chunks and one row left over
        let hour = Hour::of_millis(1_764_072_000_000);
        let mut file = OpenFile::new(&EXPOSURES, 5, hour, 1000, "exposures", ParquetCodec::Snappy);
        for index in 0..rows {
            let value = kafka_value(index);
            let row = LakeRow::from_kafka_value(&value).expect("row");
            file.append(&row, 1000 + index as i64).expect("appended");
        }
        file.reject(
            1000 + rows as i64,
            b"not an exposure",
            "not an exposure: test".into(),
        );
        assert_eq!(file.rows(), rows);
        // What the open file holds counts its encoded chunks, not only the one row left
        // in the builders: at least the bytes of the file they become.
        let held = file.approx_bytes();
        let encoded = file.encode().expect("encoded");
        assert!(
            held >= encoded.bytes.len(),
            "{held} bytes held for a file of {} bytes",
            encoded.bytes.len()
        );
        assert_eq!((encoded.rows, encoded.dead_letter_count), (rows as u64, 1));
        let (offsets, event_ids, metadata) = read_back(&encoded);
        assert_eq!(offsets, (1000..1000 + rows as i64).collect::<Vec<_>>());
        assert_eq!(
            event_ids.last().map(String::as_str),
            Some(format!("e{}", rows - 1).as_str())
        );
        let meta = |key: &str| metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(
            FileRange::from_metadata(meta),
            Ok(FileRange {
                topic: "exposures".into(),
                partition: 5,
                first_offset: 1000,
                last_offset: 1000 + rows as i64, // the dead letter ends the range
                rows: rows as u64,
            })
        );
        assert_eq!(meta(metadata::SCHEMA_VERSION), Some(LAKE_SCHEMA_VERSION));
    }

    #[test]
    fn json_columns_carry_no_statistics_and_the_columns_readers_prune_on_do() {
        let mut file = OpenFile::new(&EXPOSURES, 0, Hour::of_millis(0), 0, "t", ParquetCodec::Snappy);
        for index in 0..3 {
            let value = kafka_value(index);
            file.append(&LakeRow::from_kafka_value(&value).expect("row"), index as i64)
                .expect("appended");
        }
        let encoded = file.encode().expect("encoded");
        let reader =
            parquet::file::serialized_reader::SerializedFileReader::new(encoded.bytes).expect("parquet");
        let row_group = parquet::file::reader::FileReader::metadata(&reader).row_group(0);
        let has_statistics = |name: &str| {
            row_group
                .columns()
                .iter()
                .find(|column| column.column_path().string() == name)
                .map(|column| column.statistics().is_some())
        };
        for name in json_columns(&EXPOSURES) {
            assert_eq!(has_statistics(name), Some(false), "{name}");
        }
        for name in ["event_id", "experiment_id", "exposed_at", "kafka_offset"] {
            assert_eq!(has_statistics(name), Some(true), "{name}");
        }
    }

    #[test]
    fn a_file_of_dead_letters_only_is_an_empty_parquet_file() {
        let mut file = OpenFile::new(&EXPOSURES, 0, Hour::of_millis(0), 7, "t", ParquetCodec::Zstd);
        file.reject(7, b"{", "not an exposure: eof".into());
        let encoded = file.encode().expect("encoded");
        let (offsets, _, metadata) = read_back(&encoded);
        assert!(offsets.is_empty());
        assert!(metadata.contains(&(metadata::ROWS.to_owned(), "0".to_owned())));
        assert!(metadata.contains(&(metadata::LAST_OFFSET.to_owned(), "7".to_owned())));
    }
}
