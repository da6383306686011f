//! A partition's open range: a contiguous offset range of one hour, filed as one
//! [`OpenFile`] per table that has rows in it, all closed together (module doc of
//! [`super`]).

use std::time::Instant;

use parquet::errors::ParquetError;
use schemas::lake_layout::Hour;
use schemas::tracked::TrackedRow;
use schemas::{LakeRow, TableDef, EXPOSURES, TABLES};

use super::file::{EncodedFile, OpenFile, ParquetCodec};

/// A partition's open range: the contiguous offsets `first_offset..=last_offset` of one
/// hour, with a file per table that has rows in it (dead letters go with the exposures
/// file). The files close together and each is named by the range's first offset, so a
/// sink that re-reads the range after a crash writes the same keys again (module doc of
/// [`super`]).
pub struct OpenRange {
    pub partition: i32,
    pub hour: Hour,
    pub first_offset: i64,
    pub last_offset: i64,
    pub opened: Instant,
    /// When a record (row or dead letter) last came.
    pub last_record: Instant,
    /// The first range since the partition was assigned: it starts at the committed
    /// offset, where an earlier owner may have written files of this range that it never
    /// committed; a table without rows here must then replace its earlier file, not leave
    /// it (see `Sink::close`).
    pub replaces_earlier: bool,
    topic: String,
    codec: ParquetCodec,
    /// In [`TABLES`] order, made with the table's first row.
    files: [Option<OpenFile>; TABLES.len()],
}

impl OpenRange {
    pub fn new(
        partition: i32,
        hour: Hour,
        first_offset: i64,
        topic: &str,
        codec: ParquetCodec,
        replaces_earlier: bool,
    ) -> OpenRange {
        OpenRange {
            partition,
            hour,
            first_offset,
            last_offset: first_offset - 1,
            opened: Instant::now(),
            last_record: Instant::now(),
            replaces_earlier,
            topic: topic.to_owned(),
            codec,
            files: [const { None }; TABLES.len()],
        }
    }

    /// The file of `table`, made if this is its first row.
    fn file(&mut self, table: &'static TableDef) -> &mut OpenFile {
        let index = TABLES.iter().position(|known| *known == table).unwrap_or(0);
        let (partition, hour, first_offset, codec) =
            (self.partition, self.hour, self.first_offset, self.codec);
        let topic = &self.topic;
        self.files[index]
            .get_or_insert_with(|| OpenFile::new(table, partition, hour, first_offset, topic, codec))
    }

    fn took(&mut self, offset: i64) {
        self.last_offset = offset;
        self.last_record = Instant::now();
    }

    /// Appends the exposure read at `offset`.
    pub fn append(&mut self, row: &LakeRow<'_>, offset: i64) -> Result<(), ParquetError> {
        self.file(&EXPOSURES).append(row, offset)?;
        self.took(offset);
        Ok(())
    }

    /// Appends the tracked row read at `offset` to its table's file.
    pub fn append_tracked(&mut self, row: &TrackedRow, offset: i64) -> Result<(), ParquetError> {
        self.file(row.table).append_tracked(row, offset)?;
        self.took(offset);
        Ok(())
    }

    /// Keeps a record that is no loadable row as a dead letter of the range (in the
    /// exposures file's sidecar), so the range covers it and the loader puts it in
    /// `exposures_rejected`.
    pub fn reject(&mut self, offset: i64, payload: &[u8], reason: String) {
        self.file(&EXPOSURES).reject(offset, payload, reason);
        self.took(offset);
    }

    fn open_files(&self) -> impl Iterator<Item = &OpenFile> {
        self.files.iter().flatten()
    }

    /// Rows of every table.
    pub fn rows(&self) -> usize {
        self.open_files().map(OpenFile::rows).sum()
    }

    /// What the range's files hold in memory.
    pub fn approx_bytes(&self) -> usize {
        self.open_files().map(OpenFile::approx_bytes).sum()
    }

    /// No record was taken into it.
    pub fn is_empty(&self) -> bool {
        self.last_offset < self.first_offset
    }

    /// The tables with no row (and, for exposures, no dead letter) in the range.
    pub fn tables_without_file(&self) -> Vec<&'static TableDef> {
        TABLES
            .into_iter()
            .zip(&self.files)
            .filter(|(_, file)| file.is_none())
            .map(|(table, _)| table)
            .collect()
    }

    /// Encodes every file of the range, each holding the whole range's offsets in its
    /// metadata; and, for a range that [replaces earlier files](OpenRange::replaces_earlier),
    /// an empty file of each table without rows here, to be written only where an
    /// earlier file is found.
    pub fn encode(mut self) -> Result<(Vec<EncodedFile>, Vec<EncodedFile>), ParquetError> {
        let absent = self.tables_without_file();
        let last_offset = self.last_offset;
        let finish = |mut file: OpenFile| {
            file.last_offset = last_offset;
            file.encode()
        };
        let files = std::mem::take(&mut self.files)
            .into_iter()
            .flatten()
            .map(finish)
            .collect::<Result<Vec<_>, _>>()?;
        let mut replacements = Vec::new();
        if self.replaces_earlier {
            for table in absent {
                let empty = OpenFile::new(
                    table,
                    self.partition,
                    self.hour,
                    self.first_offset,
                    &self.topic,
                    self.codec,
                );
                replacements.push(finish(empty)?);
            }
        }
        Ok((files, replacements))
    }
}
