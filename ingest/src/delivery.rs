//! Making accepted events durable: Kafka first, the local spool when Kafka cannot
//! acknowledge within the delivery deadline.
//!
//! This module is the policy; [`crate::spool`] and the producer (configured by
//! `stage::KafkaArgs`) are mechanism.
//!
//! - [`Delivery::publish`] returns only when every event is acknowledged by Kafka
//!   (`acks=all`, idempotent producer) or fsync'd in the spool. That is what the 200
//!   of the HTTP API promises.
//! - While the spool holds a backlog, new events are appended behind it instead of
//!   going to Kafka directly, so per-user order (the Kafka key is the user id) is the
//!   order in which the API answered 200.
//! - A background replayer sends the backlog to Kafka in order and deletes what was
//!   acknowledged; when it is empty, direct delivery resumes. A record Kafka refuses for
//!   good (too large for the broker, invalid) is written to `SPOOL_DIR/dead-letters/`
//!   with the reason, logged and counted, and the records behind it go on.
//! - Spool disabled, full or failing: the events are refused ([`DeliveryError`]) and
//!   the API answers 503 with Retry-After. Events of a batch that Kafka did
//!   acknowledge stay there; a client retry may duplicate them, which the warehouse's
//!   `event_id` dedup absorbs when the client sends event ids.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::Producer;
use stage::{Backoff, Shutdown};
use tokio::task::JoinHandle;

use crate::acks::{self, AckProducer, DeliveryReports, Sent};
use crate::metrics as m;
use crate::spool::{Spool, SpoolError, SpoolRecord};

/// Records sent per replay round; the position is persisted after each.
const REPLAY_CHUNK: usize = 1000;
const BROKER_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Where an accepted batch became durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableIn {
    Kafka,
    Spool,
}

impl DurableIn {
    pub fn as_str(self) -> &'static str {
        match self {
            DurableIn::Kafka => "kafka",
            DurableIn::Spool => "spool",
        }
    }
}

/// The events could not be made durable; nothing about them was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("Kafka did not acknowledge within the delivery deadline and the spool is disabled")]
    KafkaUnavailable,
    #[error("Kafka did not acknowledge within the delivery deadline and the spool refused the events: {0}")]
    SpoolRefused(#[from] SpoolError),
}

/// The tasks [`Delivery::start_background`] starts, for [`Delivery::shutdown`] to stop:
/// the delivery reports' task apart, since it stops last.
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
    reports: JoinHandle<()>,
}

pub struct Delivery {
    /// Declared before `producer`, so dropped before it: it holds a reference to the
    /// producer's queue.
    reports: DeliveryReports,
    producer: AckProducer,
    topic: String,
    spool: Option<Spool>,
    broker_up: AtomicBool,
    /// Stops the background tasks (replay, broker probe).
    stop: Shutdown,
    /// Stops serving delivery reports: only after the background tasks have ended and
    /// the producer is flushed, since the replayer waits for reports until it ends.
    reports_stop: Shutdown,
    ack_durations: acks::AckDurations,
}

impl Delivery {
    pub fn new(producer: AckProducer, topic: String, spool: Option<Spool>, stop: Shutdown) -> Arc<Delivery> {
        Arc::new(Delivery {
            reports: DeliveryReports::watch(&producer),
            producer,
            topic,
            spool,
            broker_up: AtomicBool::new(false),
            stop,
            reports_stop: Shutdown::new(),
            ack_durations: acks::AckDurations::register(),
        })
    }

    /// Makes `records` durable or refuses them all.
    pub async fn publish(&self, records: Vec<SpoolRecord>) -> Result<DurableIn, DeliveryError> {
        if let Some(spool) = self.spool.as_ref().filter(|s| s.has_backlog()) {
            spool.append(records).await?;
            return Ok(DurableIn::Spool);
        }
        // Whatever Kafka did not take is spooled, refused records too: the replayer sets
        // those aside as dead letters rather than blocking the queue behind them.
        let sent = self.produce_all(records.iter()).await;
        let failed: Vec<SpoolRecord> = records
            .into_iter()
            .zip(sent)
            .filter_map(|(record, sent)| (sent != Sent::Acked).then_some(record))
            .collect();
        if failed.is_empty() {
            return Ok(DurableIn::Kafka);
        }
        tracing::warn!(events = failed.len(), topic = %self.topic, "Kafka did not acknowledge in time");
        match &self.spool {
            Some(spool) => {
                spool.append(failed).await?;
                Ok(DurableIn::Spool)
            }
            None => Err(DeliveryError::KafkaUnavailable),
        }
    }

    /// Sends records and waits for librdkafka's report on each.
    async fn produce_all<'a>(&self, records: impl ExactSizeIterator<Item = &'a SpoolRecord>) -> Vec<Sent> {
        // The queue-length gauge is sampled by the broker probe: reading it here cost a
        // lock in librdkafka per request.
        acks::produce_all(&self.producer, &self.topic, &self.ack_durations, records).await
    }

    /// True when events can be made durable now: the broker answered the last probe,
    /// or the spool has room.
    pub fn is_ready(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed) || self.spool.as_ref().is_some_and(Spool::has_room)
    }

    /// Starts the delivery reports' task, the spool replayer and the broker probe.
    pub fn start_background(self: &Arc<Self>) -> Background {
        let this = self.clone();
        let reports =
            tokio::spawn(async move { this.reports.serve(&this.producer, &this.reports_stop).await });
        let mut tasks = vec![tokio::spawn(self.clone().probe_broker())];
        if let Some(spool) = self.spool.clone() {
            tasks.push(tokio::spawn(self.clone().replay(spool)));
        }
        Background { tasks, reports }
    }

    /// Stops background work and waits for the producer to deliver what it holds.
    pub async fn shutdown(self: &Arc<Self>, background: Background, flush_timeout: Duration) {
        self.stop.cancel();
        for task in background.tasks {
            let _ = task.await;
        }
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.producer.flush(flush_timeout)).await;
        self.reports_stop.cancel();
        let _ = background.reports.await;
        if let Some(spool) = &self.spool {
            spool.clone().close();
        }
    }

    async fn probe_broker(self: Arc<Self>) {
        loop {
            let this = self.clone();
            let reachable = tokio::task::spawn_blocking(move || {
                this.producer
                    .client()
                    .fetch_metadata(Some(&this.topic), BROKER_PROBE_INTERVAL)
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            self.broker_up.store(reachable, Ordering::Relaxed);
            metrics::gauge!(m::BROKER_UP).set(if reachable { 1.0 } else { 0.0 });
            metrics::gauge!(m::PRODUCER_QUEUE).set(f64::from(self.producer.in_flight_count()));
            tokio::select! {
                _ = tokio::time::sleep(BROKER_PROBE_INTERVAL) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    async fn replay(self: Arc<Self>, spool: Spool) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = spool.wait_for_backlog() => {}
                _ = self.stop.cancelled() => return,
            }
            match self.replay_backlog(&spool).await {
                Ok(true) => {
                    tracing::info!("spool drained; delivering to Kafka directly again");
                    backoff.reset();
                    continue;
                }
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "spool replay failed"),
            }
            if !backoff.wait(&self.stop).await {
                return;
            }
        }
    }

    /// Replays sealed segments in order. `Ok(true)` when the backlog is gone,
    /// `Ok(false)` when Kafka refused something (retry later) or shutdown began.
    async fn replay_backlog(&self, spool: &Spool) -> Result<bool, SpoolError> {
        'replay: loop {
            let mut segments = spool.sealed_segments()?;
            if segments.is_empty() {
                match spool.seal_or_clear().await? {
                    Some(id) => segments.push(id),
                    None => return Ok(true),
                }
            }
            for id in segments {
                let pending = spool.unreplayed(id)?;
                for chunk in pending.chunks(REPLAY_CHUNK) {
                    if self.stop.is_cancelled() {
                        return Ok(false);
                    }
                    let sent = self.produce_all(chunk.iter().map(|(record, _)| record)).await;
                    let delivered = sent.iter().take_while(|sent| **sent == Sent::Acked).count();
                    if delivered > 0 {
                        spool.mark_replayed(id, chunk[delivered - 1].1, delivered as u64);
                        metrics::counter!(m::SPOOL_REPLAYED).increment(delivered as u64);
                    }
                    match sent.get(delivered) {
                        None => {}
                        // Kafka will never take this record: keep it beside the spool with
                        // the reason, and go on with the records behind it.
                        Some(Sent::Refused(reason)) => {
                            let (record, end) = &chunk[delivered];
                            let kept = spool.dead_letter(id, *end, record, reason)?;
                            spool.mark_replayed(id, *end, 1);
                            metrics::counter!(m::SPOOL_DEAD_LETTERED).increment(1);
                            tracing::error!(%reason, kept = %kept.display(), "Kafka refuses a spooled record for good; set aside as a dead letter");
                            continue 'replay;
                        }
                        Some(_) => return Ok(false),
                    }
                }
                spool.remove_segment(id)?;
            }
        }
    }
}
