//! The loader's lake: every read of a file record's objects goes through
//! [`LoaderLake::admit`], so a record cannot make the loader read (or, on Redshift, write
//! manifests) outside the lake `--lake` names.

use bytes::Bytes;
use schemas::lake_layout::{DeadLetter, FileRecord};
use schemas::ledger::RejectedRow;

use crate::lake::{Lake, LakeError};

/// The loader's lake: the one `--lake` names. Every read of a file record's objects goes
/// through [`LoaderLake::admit`], so a record cannot make the loader read (or, on Redshift,
/// write manifests) anywhere else.
pub struct LoaderLake {
    lake: Lake,
}

impl LoaderLake {
    pub fn new(lake: Lake) -> LoaderLake {
        LoaderLake { lake }
    }

    /// The object a file record names.
    pub async fn get(&mut self, file: &FileRecord) -> Result<Bytes, LakeError> {
        self.get_key(file, &file.key).await
    }

    /// Whether the object a file record names exists.
    pub async fn exists(&mut self, file: &FileRecord) -> Result<bool, LakeError> {
        self.lake_of(file)?.exists(&file.key).await
    }

    /// Refuses a record that names another lake, bucket or prefix than the loader's.
    pub fn admit(&self, file: &FileRecord) -> Result<(), LakeError> {
        let lake = self.lake.describe();
        let prefix = self.lake.key("");
        let foreign = |what: String| {
            Err(LakeError::Foreign {
                what,
                lake: lake.clone(),
            })
        };
        if file.lake != lake {
            return foreign(format!("lake {}", file.lake));
        }
        if file.bucket != self.lake.bucket() {
            return foreign(format!("bucket {}", file.bucket));
        }
        for key in std::iter::once(&file.key).chain(&file.rejected_key) {
            if !key.starts_with(&prefix) {
                return foreign(format!("object key {key}"));
            }
        }
        Ok(())
    }

    fn lake_of(&self, file: &FileRecord) -> Result<&Lake, LakeError> {
        self.admit(file)?;
        Ok(&self.lake)
    }

    /// Object `key` of the lake `file` is in.
    pub async fn get_key(&mut self, file: &FileRecord, key: &str) -> Result<Bytes, LakeError> {
        self.lake_of(file)?.get(key).await
    }

    /// The dead letters the sink kept beside `file` (records of its offset range that are
    /// not loadable exposures), as rows for `exposures_rejected`.
    pub async fn dead_letters(&mut self, file: &FileRecord) -> Result<Vec<RejectedRow>, LakeError> {
        let Some(key) = &file.rejected_key else {
            return Ok(Vec::new());
        };
        let body = match self.get_key(file, key).await {
            Ok(body) => body,
            Err(LakeError::Missing(key)) => {
                tracing::error!(%key, "the dead letters of a file are gone from the lake; they cannot be recorded");
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        Ok(DeadLetter::lines_of(&body)
            .map(|(line, letter)| match letter {
                Ok(letter) => RejectedRow {
                    event_id: serde_json::from_str::<serde_json::Value>(&letter.payload)
                        .ok()
                        .and_then(|value| value.get("event_id")?.as_str().map(str::to_owned)),
                    object_key: file.key.clone(),
                    kafka_partition: letter.kafka_partition,
                    kafka_offset: letter.kafka_offset,
                    raw_row: letter.payload,
                    reason: letter.reason,
                },
                Err(error) => RejectedRow {
                    event_id: None,
                    object_key: file.key.clone(),
                    kafka_partition: file.partition,
                    kafka_offset: -1,
                    raw_row: String::from_utf8_lossy(line).into_owned(),
                    reason: format!("unreadable dead letter in {key}: {error}"),
                },
            })
            .collect())
    }

    /// Writes `body` at `relative` under the lake's prefix (next to the data of
    /// `file`); returns its URL.
    pub async fn put_beside(
        &mut self,
        file: &FileRecord,
        relative: &str,
        body: Bytes,
    ) -> Result<String, LakeError> {
        let lake = self.lake_of(file)?;
        let key = lake.key(relative);
        lake.put(&key, body).await?;
        Ok(format!("s3://{}/{key}", lake.bucket()))
    }
}
