//! Consuming: how a consumer stage gets its partitions ([`Assignment`],
//! [`start_consuming`]), commits its offsets ([`commit`]), and logs the errors a down
//! broker repeats ([`RepeatedErrors`]).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::retry::kafka_retry;

/// A consumer reports the same error every few tens of milliseconds for as long as a
/// broker is down (`AllBrokersDown`: ~20 lines a second). This says which reports are
/// worth a log line: one that differs from the last, or the same once a minute.
#[derive(Debug, Default)]
pub struct RepeatedErrors {
    last: Option<(String, std::time::Instant)>,
}

impl RepeatedErrors {
    /// How often the same error is logged again.
    pub const AGAIN_AFTER: Duration = Duration::from_secs(60);

    /// Whether `error` should be logged now.
    pub fn worth_logging(&mut self, error: &impl std::fmt::Display) -> bool {
        let text = error.to_string();
        let now = std::time::Instant::now();
        let repeat = matches!(&self.last, Some((last, at)) if *last == text && now.duration_since(*at) < Self::AGAIN_AFTER);
        if !repeat {
            self.last = Some((text, now));
        }
        !repeat
    }

    /// After a message arrived: the next error is news again.
    pub fn clear(&mut self) {
        self.last = None;
    }
}

/// How a consumer stage (sink, loader) gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Assignment {
    /// Join the Kafka consumer group: members share the partitions, and a dead member's
    /// partitions move to the others after its session timeout. For Kafka clusters.
    #[default]
    Group,
    /// Read every partition of the topic, from the offsets committed under the group id,
    /// without group membership: a restarted process resumes at once, with no dead
    /// member's session to wait out. Run exactly one process per group. `exposures up`
    /// uses this for its one sink and one loader.
    All,
}

/// Starts `consumer` on `topic` as `assignment` says: subscribes (group), or assigns
/// every partition the broker reports, each from its committed offset (all). In `All`
/// mode an unreachable broker is waited for, with backoff, until `shutdown`.
pub async fn start_consuming<C, X>(
    consumer: &Arc<C>,
    topic: &str,
    assignment: Assignment,
    shutdown: &crate::Shutdown,
) -> Result<(), KafkaError>
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    if assignment == Assignment::Group {
        return consumer.subscribe(&[topic]);
    }
    let mut backoff = crate::Backoff::for_outages();
    loop {
        let (reader, name) = (consumer.clone(), topic.to_owned());
        let partitions = tokio::task::spawn_blocking(move || every_partition(reader.as_ref(), &name))
            .await
            .unwrap_or(Err(KafkaError::Canceled));
        match partitions {
            Ok(partitions) => return consumer.assign(&partitions),
            Err(error) if kafka_retry(&error).is_permanent() => return Err(error),
            Err(error) => {
                tracing::warn!(%topic, %error, "cannot list the topic's partitions; retrying");
                if !backoff.wait(shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Every partition of `topic`, each at `Offset::Stored`: the offset committed under the
/// consumer's group id (OffsetFetch needs no membership); none yet → `auto.offset.reset`.
fn every_partition<C, X>(consumer: &C, topic: &str) -> Result<TopicPartitionList, KafkaError>
where
    C: Consumer<X>,
    X: ConsumerContext + 'static,
{
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut partitions = TopicPartitionList::new();
    for found in metadata.topics().iter().filter(|t| t.name() == topic) {
        if let Some(error) = found.error() {
            return Err(KafkaError::MetadataFetch(error.into()));
        }
        for partition in found.partitions() {
            partitions.add_partition_offset(topic, partition.id(), Offset::Stored)?;
        }
    }
    if partitions.count() == 0 {
        return Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok(partitions)
}

/// Commits `offsets` synchronously, on a blocking thread.
pub async fn commit<C, X>(consumer: &Arc<C>, offsets: TopicPartitionList) -> Result<(), KafkaError>
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    let consumer = consumer.clone();
    match tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync)).await {
        Ok(result) => result,
        Err(join) => {
            tracing::warn!(%join, "offset commit task failed");
            Err(KafkaError::Canceled)
        }
    }
}
