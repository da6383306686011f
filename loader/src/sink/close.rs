//! Closing a range (module doc of [`super`]): upload and announce each of its files,
//! replace an earlier owner's file of a table it lacks, commit; with the retries that
//! stall rather than drop data, and the injected faults of the crash tests.

use std::time::Instant;

use chrono::Utc;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use schemas::lake_layout::{FileKey, FileRecord};
use stage::Backoff;

use super::{file, range, FaultPoint, Sink, SinkError, ANNOUNCE_TIMEOUT};
use crate::metrics as m;

impl Sink {
    fn fault(&mut self, point: FaultPoint) -> Result<(), SinkError> {
        if self.faults_armed && self.config.fault == Some(point) {
            self.faults_armed = false;
            return Err(SinkError::InjectedFault(point));
        }
        Ok(())
    }

    /// Waits before retrying a failed upload or announcement. `false` when the sink is
    /// shutting down and should leave the file for the next run — except in the final
    /// flush, which retries until it succeeds.
    async fn retry_wait(&self, backoff: &mut Backoff) -> bool {
        if self.final_flush {
            backoff.sleep().await;
            true
        } else {
            backoff.wait(&self.stop).await
        }
    }

    /// Writes `body` at `key`, retrying with backoff; `None` when shutdown ends the
    /// retries first (see [`Sink::retry_wait`]), an error when retrying cannot help (the
    /// store refuses access, the bucket does not exist).
    async fn upload(
        &self,
        key: &str,
        body: bytes::Bytes,
        what: &str,
    ) -> Result<Option<crate::lake::StoredObject>, SinkError> {
        let mut backoff = Backoff::for_outages();
        loop {
            match self.lake.put(key, body.clone()).await {
                Ok(stored) => return Ok(Some(stored)),
                Err(error) if error.retry().is_permanent() => {
                    metrics::counter!(m::SINK_UPLOAD_FAILURES).increment(1);
                    return Err(error.into());
                }
                Err(error) => {
                    metrics::counter!(m::SINK_UPLOAD_FAILURES).increment(1);
                    tracing::warn!(%error, "{what} failed; retrying");
                    if !self.retry_wait(&mut backoff).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Whether an earlier owner left a file at `encoded`'s key: retried like an upload;
    /// `None` when shutdown ends the retries first.
    async fn earlier_file_exists(&self, encoded: &file::EncodedFile) -> Result<Option<bool>, SinkError> {
        let key = self.lake.key(
            &FileKey {
                table: encoded.table,
                hour: encoded.hour,
                partition: encoded.partition,
                first_offset: encoded.first_offset,
            }
            .data_key(),
        );
        let mut backoff = Backoff::for_outages();
        loop {
            match self.lake.exists(&key).await {
                Ok(exists) => return Ok(Some(exists)),
                Err(error) if error.retry().is_permanent() => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(%error, "checking for an earlier file failed; retrying");
                    if !self.retry_wait(&mut backoff).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Upload → announce → commit (module doc), for every file of the partition's range.
    /// Returns early, committing nothing, if shutdown begins while the store or broker is
    /// failing; the partition is then [abandoned](Sink::abandoned).
    pub(super) async fn close(&mut self, partition: i32) -> Result<(), SinkError> {
        let Some(range) = self.files.remove(&partition) else {
            return Ok(());
        };
        let closed = self.close_range(partition, range).await;
        if matches!(closed, Ok(false)) {
            tracing::warn!(partition, "shutting down while the lake or broker fails: the partition's range is left uncommitted for the next owner");
            self.abandoned.insert(partition);
        }
        closed.map(|_| ())
    }

    /// [`Sink::close`]'s work; `false` when shutdown ended the retries first.
    async fn close_range(&mut self, partition: i32, range: range::OpenRange) -> Result<bool, SinkError> {
        self.buffered_bytes = self.buffered_bytes.saturating_sub(range.approx_bytes());
        if range.is_empty() {
            return Ok(true);
        }
        let last_offset = range.last_offset;
        let (encoded, replacements) = tokio::task::spawn_blocking(move || range.encode())
            .await
            .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))??;
        for file in encoded {
            if !self.upload_and_announce(file).await? {
                return Ok(false);
            }
        }
        // The first range after assignment re-reads offsets an earlier owner may have
        // filed without committing. Had this range fewer of them, that owner's file of a
        // table without rows here would keep rows the next range files again: such a
        // file is replaced by an empty one.
        for empty in replacements {
            match self.earlier_file_exists(&empty).await? {
                None => return Ok(false),
                Some(false) => {}
                Some(true) => {
                    tracing::info!(
                        table = empty.table.name,
                        partition,
                        "replacing an earlier owner's file of this range with an empty one"
                    );
                    if !self.upload_and_announce(empty).await? {
                        return Ok(false);
                    }
                }
            }
        }
        self.fault(FaultPoint::AfterAnnounce)?;

        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&self.config.topic, partition, Offset::Offset(last_offset + 1))?;
        let committed = stage::kafka::commit(&self.consumer, offsets).await;
        match committed {
            Ok(()) => {
                metrics::gauge!(m::SINK_COMMITTED_OFFSET, "partition" => partition.to_string())
                    .set((last_offset + 1) as f64);
            }
            // Typically a rebalance took the partition away; its new owner rewrites
            // these same keys, so nothing is lost or doubled.
            Err(error) => tracing::warn!(partition, %error, "offset commit failed"),
        }
        self.fault(FaultPoint::AfterCommit)?;
        Ok(true)
    }

    /// Uploads one file of a range (its dead letters first) and announces it; `false`
    /// when shutdown ends the retries first.
    async fn upload_and_announce(&mut self, encoded: file::EncodedFile) -> Result<bool, SinkError> {
        let file_key = FileKey {
            table: encoded.table,
            hour: encoded.hour,
            partition: encoded.partition,
            first_offset: encoded.first_offset,
        };
        let key = self.lake.key(&file_key.data_key());

        let rejected_key = match &encoded.dead_letters {
            Some(body) => {
                let rejected_key = self.lake.key(&file_key.dead_letter_key());
                if self
                    .upload(&rejected_key, body.clone(), "dead-letter upload")
                    .await?
                    .is_none()
                {
                    return Ok(false);
                }
                Some(rejected_key)
            }
            None => None,
        };
        let started = Instant::now();
        let Some(stored) = self.upload(&key, encoded.bytes.clone(), "upload").await? else {
            return Ok(false);
        };
        metrics::histogram!(m::SINK_UPLOAD_DURATION).record(started.elapsed().as_secs_f64());
        self.fault(FaultPoint::AfterUpload)?;

        let record = FileRecord {
            lake: self.lake.describe(),
            bucket: self.lake.bucket(),
            key: stored.key.clone(),
            size: stored.size,
            etag: stored.etag.clone(),
            rows: encoded.rows,
            topic: self.config.topic.clone(),
            partition: encoded.partition,
            first_offset: encoded.first_offset,
            last_offset: encoded.last_offset,
            hour: encoded.hour.label(),
            written_at: Utc::now(),
            rejected_key,
            rejected_rows: encoded.dead_letter_count,
            table: encoded.table.name.to_owned(),
        };
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        let mut backoff = Backoff::for_outages();
        loop {
            let announcement = FutureRecord::to(&self.config.files_topic)
                .key(&record.key)
                .payload(&payload);
            match self.announcer.send(announcement, ANNOUNCE_TIMEOUT).await {
                Ok(_) => break,
                Err((error, _)) if stage::kafka_retry(&error).is_permanent() => return Err(error.into()),
                Err((error, _)) => {
                    tracing::warn!(%error, "announce failed; retrying");
                    if !self.retry_wait(&mut backoff).await {
                        return Ok(false);
                    }
                }
            }
        }
        metrics::counter!(m::SINK_FILES_WRITTEN).increment(1);
        metrics::counter!(m::SINK_BYTES_WRITTEN).increment(stored.size);
        metrics::counter!(m::SINK_ROWS_WRITTEN).increment(encoded.rows);
        tracing::debug!(key = %stored.key, rows = encoded.rows, bytes = stored.size, "file written");
        Ok(true)
    }
}
