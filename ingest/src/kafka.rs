//! Kafka client settings and topic administration.
//!
//! The producer settings are the durability contract of DESIGN.md §3: idempotence on,
//! `acks=all`, and a message timeout equal to the request's delivery deadline, so that
//! librdkafka gives an event up (and we spool it) before the SDK's HTTP timeout.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Properties a user may not override: they are what makes a 200 mean durable.
const PROTECTED: [&str; 4] = [
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "message.timeout.ms",
];

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("--kafka-property {0} cannot be overridden: exposures relies on it for durability")]
    Protected(String),
    #[error("cannot create Kafka client for {brokers}: {source}")]
    Client {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic '{topic}' on {brokers}: {reason}")]
    CreateTopic {
        topic: String,
        brokers: String,
        reason: String,
    },
}

/// The idempotent, acks=all producer used by the API and the spool replayer.
pub fn producer(
    brokers: &str,
    delivery_timeout: Duration,
    extra: &[(String, String)],
) -> Result<FutureProducer, KafkaSetupError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "exposures-ingest")
        // Durability: the leader and all in-sync replicas have the record, written once
        // and in order per partition, even when librdkafka retries.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // librdkafka default 300000: a request would hang that long. Fail over to the spool.
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().max(1).to_string(),
        )
        // librdkafka default 5: small batches under load without delaying single events.
        .set("linger.ms", "5");
    for (key, value) in extra {
        if PROTECTED.contains(&key.as_str()) {
            return Err(KafkaSetupError::Protected(key.clone()));
        }
        config.set(key, value);
    }
    config.create().map_err(|source| KafkaSetupError::Client {
        brokers: brokers.to_owned(),
        source,
    })
}

/// Creates `topic` with `partitions` if it does not exist yet (brokers that do not
/// auto-create topics, like the embedded one, need this).
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|source| KafkaSetupError::Client {
            brokers: brokers.to_owned(),
            source,
        })?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let failure = |reason: String| KafkaSetupError::CreateTopic {
        topic: topic.to_owned(),
        brokers: brokers.to_owned(),
        reason,
    };
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| failure(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failure(code.to_string())),
        }
    }
    Ok(())
}
