//! Whether an error is worth retrying. Every error a retry loop sees says so in its type
//! (`fn retry(&self) -> Retry`), and every loop acts on it the same way: a transient
//! error (an outage, throttling, a timeout) is retried with [`crate::Backoff`]; a
//! permanent one (bad configuration, missing permissions, a broken invariant) ends the
//! stage with a non-zero exit at once, because waiting cannot fix it and a process that
//! retries it forever looks alive while it does nothing.
//!
//! Only what is known to be permanent is classified so; anything unrecognised is
//! transient, as every loop treated every error before.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying (after a delay) may succeed.
    Transient,
    /// Retrying cannot succeed until someone changes something.
    Permanent,
}

impl Retry {
    pub fn is_permanent(self) -> bool {
        self == Retry::Permanent
    }
}

/// Kafka errors that a retry cannot fix: authorisation and authentication refused, a
/// record the broker will never take, a topic name it refuses. An unknown topic stays
/// transient (`up` and `dev-broker` create topics while the stages start).
pub fn kafka_retry(error: &KafkaError) -> Retry {
    error
        .rdkafka_error_code()
        .map_or(Retry::Transient, kafka_code_retry)
}

/// [`kafka_retry`] of an error code (an admin operation's per-topic result).
pub fn kafka_code_retry(code: RDKafkaErrorCode) -> Retry {
    match code {
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::GroupAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::InvalidMessageSize
        | RDKafkaErrorCode::InvalidRecord
        | RDKafkaErrorCode::InvalidTopic => Retry::Permanent,
        _ => Retry::Transient,
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;

    use super::*;

    #[test]
    fn refusals_are_permanent_and_outages_transient() {
        for permanent in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::MessageSizeTooLarge,
        ] {
            assert_eq!(
                kafka_retry(&KafkaError::MessageProduction(permanent)),
                Retry::Permanent
            );
        }
        for transient in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert_eq!(
                kafka_retry(&KafkaError::MessageProduction(transient)),
                Retry::Transient
            );
        }
        assert_eq!(kafka_retry(&KafkaError::Canceled), Retry::Transient);
    }
}
