//! The producer behind [`crate::delivery`]: it sends a publish's records and wakes the
//! publishing task once, when librdkafka has reported on every one of them.
//!
//! rdkafka's `FutureProducer` gives each record a future of its own: a channel per
//! record, and the waiting task woken once per acknowledgement. On the ingest profile,
//! for batches of 100 that was the futex traffic between librdkafka's polling thread
//! and the tokio workers. Here every record of a publish shares one [`Acks`]: the
//! delivery report writes the record's outcome in its slot, and the last one wakes the
//! task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

use crate::metrics as m;
use crate::spool::SpoolRecord;

mod reports;

pub use reports::DeliveryReports;

/// The producer ingest sends with; its delivery reports are served by
/// [`DeliveryReports::serve`].
pub type AckProducer = BaseProducer<AckContext>;

/// What became of one record sent to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Acked,
    /// Not acknowledged in time, broker unreachable, queue full: try again later.
    Unacknowledged,
    /// Kafka (or librdkafka) will never take this record as it is; why.
    Refused(String),
}

impl Sent {
    fn from_error(error: &KafkaError) -> Sent {
        match error.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord),
            ) => Sent::Refused(format!("{error} ({code:?})")),
            _ => Sent::Unacknowledged,
        }
    }
}

/// Routes each delivery report to the publish its record belongs to; answers
/// librdkafka's MSK IAM token requests (`--kafka-auth msk-iam`).
pub struct AckContext {
    pub oauth: Option<Arc<stage::kafka::msk_iam::MskIam>>,
}

impl ClientContext for AckContext {
    stage::answers_msk_iam_token_requests!();
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<PendingAck>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut pending: Box<PendingAck>) {
        let sent = match result {
            Ok(_) => Sent::Acked,
            Err((error, _)) => Sent::from_error(error),
        };
        pending.report(sent);
    }
}

/// The outcomes of one publish's records, in order.
struct Acks {
    outcomes: Mutex<Vec<Sent>>,
    /// Records not yet reported on.
    remaining: AtomicUsize,
    /// Woken when `remaining` reaches zero.
    all_reported: Notify,
    started: Instant,
    acked: metrics::Histogram,
    failed: metrics::Histogram,
}

/// One record's place in its publish. Reported on by the delivery report, or, if
/// librdkafka drops it unreported (the producer going away), as unacknowledged.
pub struct PendingAck {
    acks: Arc<Acks>,
    index: usize,
    reported: bool,
}

impl PendingAck {
    /// Writes the outcome (once; later reports are ignored) and wakes the publish when
    /// this was the last record it waited for.
    fn report(&mut self, sent: Sent) {
        if self.reported {
            return;
        }
        self.reported = true;
        let acks = &self.acks;
        let histogram = if sent == Sent::Acked {
            &acks.acked
        } else {
            &acks.failed
        };
        histogram.record(acks.started.elapsed().as_secs_f64());
        if let Ok(mut outcomes) = acks.outcomes.lock() {
            if let Some(slot) = outcomes.get_mut(self.index) {
                *slot = sent;
            }
        }
        if acks.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            acks.all_reported.notify_one();
        }
    }
}

impl Drop for PendingAck {
    fn drop(&mut self) {
        self.report(Sent::Unacknowledged);
    }
}

/// The two series of `exposures_ingest_kafka_ack_duration_seconds`, registered once:
/// looking them up took the registry's lock and a label vector per request.
#[derive(Clone)]
pub struct AckDurations {
    acked: metrics::Histogram,
    failed: metrics::Histogram,
}

impl AckDurations {
    pub fn register() -> AckDurations {
        AckDurations {
            acked: metrics::histogram!(m::KAFKA_ACK_DURATION, "outcome" => "acked"),
            failed: metrics::histogram!(m::KAFKA_ACK_DURATION, "outcome" => "failed"),
        }
    }
}

/// Sends `records` to `topic` and returns, in order, what became of each once
/// librdkafka has reported on all of them (within its `message.timeout.ms`).
pub async fn produce_all<'a>(
    producer: &AckProducer,
    topic: &str,
    durations: &AckDurations,
    records: impl ExactSizeIterator<Item = &'a SpoolRecord>,
) -> Vec<Sent> {
    let count = records.len();
    if count == 0 {
        return Vec::new();
    }
    let acks = Arc::new(Acks {
        outcomes: Mutex::new(vec![Sent::Unacknowledged; count]),
        remaining: AtomicUsize::new(count),
        all_reported: Notify::new(),
        started: Instant::now(),
        acked: durations.acked.clone(),
        failed: durations.failed.clone(),
    });
    for (index, record) in records.enumerate() {
        let pending = Box::new(PendingAck {
            acks: acks.clone(),
            index,
            reported: false,
        });
        let message = BaseRecord::with_opaque_to(topic, pending)
            .key(&record.key[..])
            .payload(&record.value[..])
            .timestamp(record.timestamp_ms);
        // A full queue is as good as unacknowledged; a record librdkafka refuses
        // outright (too large) will never be taken.
        if let Err((error, mut refused)) = producer.send(message) {
            refused.delivery_opaque.report(Sent::from_error(&error));
        }
    }
    // `notify_one` keeps its permit when the last report comes before this wait.
    if acks.remaining.load(Ordering::Acquire) > 0 {
        acks.all_reported.notified().await;
    }
    // Bound to a local so the lock's guard is dropped before `acks` is.
    let outcomes = match acks.outcomes.lock() {
        Ok(mut outcomes) => std::mem::take(&mut *outcomes),
        Err(_) => vec![Sent::Unacknowledged; count],
    };
    outcomes
}
