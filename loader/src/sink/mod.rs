//! The sink stage: the `exposures` topic → hour-partitioned Parquet objects in the lake,
//! exactly once. The topic carries exposures and the rows of the tracking plugin's
//! tables (`feature_usage`, `events`; a tracked row's value starts with `{"$table":`),
//! and each table has its own directory in the lake.
//!
//! **Mechanism.** A consumer group with manual offset commits only. Each assigned
//! partition has at most one open *range* ([`range::OpenRange`]): a contiguous offset
//! range of one hour, with a file (Arrow builders, [`file::OpenFile`]) per table that
//! has rows in it. A record whose hour (of its Kafka timestamp, the receive time)
//! differs from the range's closes it, as do the row, byte and age limits and a graceful
//! shutdown. Every file of a range is named by the range's first offset.
//!
//! **Exactly once, by order of effects.** Closing a range does, strictly in sequence and
//! one range of a partition at a time:
//! 1. upload each of its files under `{table}/…/p{partition}-{first_offset}.parquet`
//!    (retried with backoff until it succeeds: a slow or failing store stalls
//!    consumption, bounding memory, and never drops data), and announce each on
//!    `exposures.files` (acks=all, idempotent);
//! 2. commit `last_offset + 1` for the partition.
//!
//! Hence the committed offset never passes a record that is not in an uploaded object,
//! and it always sits on a range boundary. A crash anywhere before step 2 leaves the
//! committed offset at the range's first offset: the next owner re-reads from there and
//! its first range starts at the same offset, in the same hour (the same record opens
//! it), so each of its files is written under the same key and replaces the earlier
//! object. Whatever rows the earlier objects held are in the replacements or in the
//! ranges after them. One case needs more: the re-read range may end sooner than the
//! crashed one, and hold no rows of a table the crashed one had; that table's earlier
//! file would keep rows the next range files again. So the first range after an
//! assignment looks for an earlier file of each table it lacks and replaces one it
//! finds with an empty file. The lake's union of rows is every record exactly once; at
//! worst an announcement is repeated, which the loader's ledger (key + etag) absorbs.
//!
//! **Rebalance.** A revoked partition's open range is discarded, not flushed: nothing of
//! it was committed, so the new owner re-reads it from the committed offset. A record
//! below the partition's next expected offset is a re-delivery of one already taken and
//! is skipped (discarding the open range instead would lose its earlier rows, since the
//! consumer does not go back to the range's start).
//!
//! Proven by `tests/pipeline/sink.rs`: 100k events over 6 partitions and 3 hours, crash
//! at each effect and restart, a shorter range re-read after a crash, object store outage.

mod close;
mod config;
pub mod file;
mod range;

pub use config::{FaultPoint, FileLimits, SinkConfig, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BUFFERED_BYTES};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Statistics};
use schemas::lake_layout::Hour;
use schemas::tracked::TrackedRow;
use schemas::LakeRow;
use stage::{ClientRole, KafkaSetupError, Shutdown, StageContext};

use crate::lake::{Lake, LakeError};
use crate::metrics as m;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    KafkaSetup(#[from] KafkaSetupError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("cannot encode Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("injected fault at {0:?}")]
    InjectedFault(FaultPoint),
}

/// Consumer callbacks: remembers revoked partitions for the main loop, turns
/// librdkafka's statistics into lag gauges, and answers MSK IAM token requests.
struct SinkContext {
    revoked: Mutex<Vec<i32>>,
    oauth: Option<Arc<stage::kafka::msk_iam::MskIam>>,
}

impl ClientContext for SinkContext {
    stage::answers_msk_iam_token_requests!();

    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for partition in topic.partitions.values() {
                if partition.partition >= 0 && partition.consumer_lag >= 0 {
                    metrics::gauge!(m::SINK_CONSUMER_LAG, "partition" => partition.partition.to_string())
                        .set(partition.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(partitions.elements().iter().map(|p| p.partition()));
            }
        }
    }
}

type SinkConsumer = StreamConsumer<SinkContext>;

/// How long one announcement on the files topic may wait for its acknowledgement.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the sink until `shutdown` is cancelled; then closes (uploads, announces,
/// commits) every open file and returns.
pub async fn run(config: SinkConfig, shutdown: Shutdown) -> Result<(), SinkError> {
    let lake = config.lake.open().await?;
    // Offsets move only when a file is durable (module doc).
    let consumer: Arc<SinkConsumer> = Arc::new(
        config
            .kafka
            .config(
                ClientRole::Consumer {
                    group: &config.group,
                    client_id: "exposures-sink",
                },
                &[
                    ("statistics.interval.ms", "5000".into()),
                    (
                        "session.timeout.ms",
                        config.files.session_timeout.as_millis().to_string(),
                    ),
                    // Files close after seconds, so a fetch may wait for a fuller batch:
                    // fewer, larger fetches for the broker to serve (librdkafka's
                    // default answers every fetch as soon as one byte is there).
                    ("fetch.min.bytes", "1048576".into()),
                ],
            )?
            .create_with_context(SinkContext {
                revoked: Mutex::new(Vec::new()),
                oauth: config.kafka.oauth()?,
            })
            .map_err(|e| config.kafka.client_error(e))?,
    );
    stage::start_consuming(&consumer, &config.topic, config.assignment, &shutdown).await?;
    let announcer: FutureProducer<StageContext> = config.kafka.create(
        ClientRole::Producer {
            client_id: "exposures-sink-announcer",
            message_timeout: ANNOUNCE_TIMEOUT,
        },
        &[],
    )?;
    tracing::info!(lake = %lake.describe(), topic = %config.topic, group = %config.group, "sink started");
    let mut sink = Sink {
        config,
        lake,
        consumer: consumer.clone(),
        announcer,
        files: HashMap::new(),
        buffered_bytes: 0,
        positions: HashMap::new(),
        stop: shutdown.clone(),
        abandoned: HashSet::new(),
        final_flush: false,
        faults_armed: true,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut consumer_errors = stage::RepeatedErrors::default();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => sink.flush_aged().await?,
            message = consumer.recv() => match message {
                Ok(message) => {
                    consumer_errors.clear();
                    let message = message.detach();
                    sink.apply_revocations();
                    sink.on_message(message).await?;
                }
                Err(error) => {
                    if consumer_errors.worth_logging(&error) {
                        tracing::warn!(%error, "Kafka consumer error (repeats are logged once a minute)");
                    }
                }
            },
        }
        sink.apply_revocations();
    }
    sink.final_flush = true; // the final flush retries like any other
    sink.flush_all().await?;
    tracing::info!("sink stopped; open files flushed");
    Ok(())
}

struct Sink {
    config: SinkConfig,
    lake: Lake,
    consumer: Arc<SinkConsumer>,
    announcer: FutureProducer<StageContext>,
    files: HashMap<i32, range::OpenRange>,
    /// What the open files hold together (`approx_bytes`), kept as records are appended
    /// and files closed: summing the files on every record showed in the profile.
    buffered_bytes: usize,
    /// Per partition, the offset after the last record taken; a record below it is a
    /// re-delivery and is skipped. Forgotten on revocation, when the next owner resumes
    /// from the committed offset.
    positions: HashMap<i32, i64>,
    stop: Shutdown,
    /// Partitions whose range was given up, uncommitted, when shutdown came while the
    /// lake or broker failed: nothing more of them is taken or committed in this run, so
    /// the next owner re-reads them from the committed offset.
    abandoned: HashSet<i32>,
    /// Set for the flush at shutdown, which must not give up on the stop signal.
    final_flush: bool,
    faults_armed: bool,
}

impl Sink {
    fn apply_revocations(&mut self) {
        let revoked: Vec<i32> = match self.consumer.context().revoked.lock() {
            Ok(mut revoked) => revoked.drain(..).collect(),
            Err(_) => return,
        };
        for partition in revoked {
            self.positions.remove(&partition);
            if let Some(file) = self.files.remove(&partition) {
                self.buffered_bytes = self.buffered_bytes.saturating_sub(file.approx_bytes());
                tracing::info!(
                    partition,
                    rows = file.rows(),
                    "partition revoked; discarding its open file for the new owner to re-read"
                );
            }
            self.publish_buffer_gauges();
        }
    }

    async fn on_message(&mut self, message: OwnedMessage) -> Result<(), SinkError> {
        let partition = message.partition();
        let offset = message.offset();
        let timestamp_ms = message
            .timestamp()
            .to_millis()
            .unwrap_or_else(|| Utc::now().timestamp_millis());
        let hour = Hour::of_millis(timestamp_ms);
        if self.positions.get(&partition).is_some_and(|next| offset < *next) {
            // Delivered again (librdkafka re-fetches after some errors): the record is
            // already in the open file or in a committed one.
            metrics::counter!(m::SINK_REDELIVERED_RECORDS).increment(1);
            return Ok(());
        }
        // The first record since the partition was assigned starts at the committed offset.
        let first_since_assignment = self.positions.insert(partition, offset + 1).is_none();
        if self.files.get(&partition).is_some_and(|open| open.hour != hour) {
            self.close(partition).await?;
        }
        if self.abandoned.contains(&partition) {
            // Its range was given up at shutdown, uncommitted: a later range committed
            // in this run would carry the commit past records that are in no file.
            return Ok(());
        }
        let open = self.files.entry(partition).or_insert_with(|| {
            range::OpenRange::new(
                partition,
                hour,
                offset,
                &self.config.topic,
                self.config.files.compression,
                first_since_assignment,
            )
        });
        let payload = message.payload().unwrap_or_default();
        let held_before = open.approx_bytes();
        // A tracked row says so in its first bytes; anything else is read as an exposure.
        let row = match TrackedRow::table_of_kafka_value(payload) {
            Some(_) => TrackedRow::from_kafka_value(payload).map(|row| open.append_tracked(&row, offset)),
            None => LakeRow::from_kafka_value(payload).map(|row| open.append(&row, offset)),
        };
        match row {
            Ok(appended) => appended?,
            Err(reason) => {
                let reason = reason.to_string();
                tracing::error!(partition, offset, %reason, "record dead-lettered: the loader puts it in exposures_rejected");
                metrics::counter!(m::SINK_INVALID_RECORDS).increment(1);
                open.reject(offset, payload, reason);
            }
        }
        // Encoding a chunk can shrink the file, so this is not simply an increase.
        self.buffered_bytes = self.buffered_bytes - held_before + open.approx_bytes();
        let limits = &self.config.files;
        if open.rows() >= limits.max_file_rows || open.approx_bytes() >= limits.max_file_bytes {
            self.close(partition).await?;
        }
        let budget = self
            .config
            .files
            .max_buffered_bytes
            .unwrap_or(DEFAULT_MAX_BUFFERED_BYTES);
        debug_assert_eq!(
            self.buffered_bytes,
            self.files
                .values()
                .map(range::OpenRange::approx_bytes)
                .sum::<usize>()
        );
        if self.buffered_bytes >= budget {
            let largest = self
                .files
                .values()
                .max_by_key(|f| f.approx_bytes())
                .map(|f| f.partition);
            if let Some(largest) = largest {
                self.close(largest).await?;
            }
        }
        // The buffer gauges are published by the once-a-second tick (`flush_aged`) and
        // on close, not per record.
        Ok(())
    }

    async fn flush_aged(&mut self) -> Result<(), SinkError> {
        let aged: Vec<i32> = self
            .files
            .values()
            .filter(|f| {
                f.opened.elapsed() >= self.config.files.flush_interval()
                    || self
                        .config
                        .files
                        .flush_when_idle
                        .is_some_and(|idle| f.last_record.elapsed() >= idle)
            })
            .map(|f| f.partition)
            .collect();
        for partition in aged {
            self.close(partition).await?;
        }
        self.publish_buffer_gauges();
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<(), SinkError> {
        let partitions: Vec<i32> = self.files.keys().copied().collect();
        for partition in partitions {
            self.close(partition).await?;
        }
        self.publish_buffer_gauges();
        Ok(())
    }

    fn publish_buffer_gauges(&self) {
        let rows: usize = self.files.values().map(|f| f.rows()).sum();
        let oldest = self
            .files
            .values()
            .map(|f| f.opened.elapsed())
            .max()
            .unwrap_or_default();
        metrics::gauge!(m::SINK_BUFFERED_ROWS).set(rows as f64);
        metrics::gauge!(m::SINK_OLDEST_BUFFERED_AGE).set(oldest.as_secs_f64());
    }
}
