//! The lag sections: how far a consumer group's committed offsets are behind the end of
//! its topic, partition by partition.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use stage::{ClientRole, KafkaArgs};

#[derive(Debug)]
pub struct PartitionLag {
    pub partition: i32,
    pub low: i64,
    pub end: i64,
    pub committed: Option<i64>,
}

impl PartitionLag {
    /// Records not yet committed by the group (all retained ones if it never committed).
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

#[derive(Debug)]
pub struct GroupLag {
    pub topic: String,
    pub group: String,
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }
}

pub(super) fn group_lag(
    kafka: &KafkaArgs,
    topic: &str,
    group: &str,
    timeout: Duration,
) -> Result<GroupLag, String> {
    let brokers = &kafka.brokers;
    let consumer: BaseConsumer<stage::StageContext> = kafka
        .create(
            ClientRole::Admin {
                group,
                client_id: "exposures-status",
            },
            &[],
        )
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("brokers {brokers} did not answer: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} does not exist on {brokers}"));
    }
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .map_err(|e| format!("committed offsets of group {group}: {e}"))?;
    let mut lags = Vec::new();
    for partition in partitions {
        let (low, end) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| format!("offsets of {topic}/{partition}: {e}"))?;
        let committed = committed
            .find_partition(topic, partition)
            .and_then(|entry| match entry.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
        lags.push(PartitionLag {
            partition,
            low,
            end,
            committed,
        });
    }
    Ok(GroupLag {
        topic: topic.to_owned(),
        group: group.to_owned(),
        partitions: lags,
    })
}
