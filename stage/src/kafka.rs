//! One Kafka client setup for the whole pipeline.
//!
//! Every command that talks to Kafka flattens [`KafkaArgs`] into its flags, and every
//! librdkafka client is configured by [`KafkaArgs::config`]: the role's settings first,
//! then the caller's tuning, then the user's `--kafka-property` values. So what a managed
//! Kafka needs (`security.protocol`, `sasl.*`, `ssl.*`, …) is given once and reaches the
//! producer, the consumers and the admin clients alike.
//!
//! A few settings are what the pipeline's guarantees rest on and are refused when given
//! as properties ([`KafkaSetupError::Protected`]): for producers, idempotence, `acks=all`
//! and the message timeout (a 200 means acknowledged, or spooled before the SDK gives
//! up); for consumers, manual offset commits (offsets move only when output is durable);
//! for every client, the bootstrap servers and group, which have their own flags.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::retry::{kafka_code_retry, kafka_retry, Retry};

/// Kafka connection flags, shared by every command that reaches Kafka.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "EXPOSURES_BROKERS", default_value = "localhost:9092")]
    pub brokers: String,

    /// Extra librdkafka property as KEY=VALUE for every Kafka client of this command
    /// (producers, consumers, admin), e.g. security.protocol=SASL_SSL,
    /// sasl.mechanism=SCRAM-SHA-512, sasl.username=…, sasl.password=…. Repeatable;
    /// `;`-separated in the environment variable, where passwords belong. Settings that
    /// durability and exactly-once rest on cannot be overridden.
    #[arg(
        long = "kafka-property",
        env = "EXPOSURES_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        value_parser = parse_key_value,
        hide_env_values = true
    )]
    pub properties: Vec<(String, String)>,

    /// How the Kafka clients authenticate: `none` (plaintext, or whatever
    /// --kafka-property sets: TLS, SASL/SCRAM), or `msk-iam` (Amazon MSK's IAM access
    /// control: SASL_SSL + OAUTHBEARER with tokens signed by the AWS default credential
    /// chain — task role, instance profile, SSO, environment).
    #[arg(long, env = "EXPOSURES_KAFKA_AUTH", value_enum, default_value_t = KafkaAuth::None)]
    pub kafka_auth: KafkaAuth,

    /// AWS region of the MSK cluster, for --kafka-auth msk-iam (default: the AWS SDK's
    /// region: AWS_REGION, the profile, instance metadata).
    #[arg(long, env = "EXPOSURES_KAFKA_REGION", value_name = "REGION")]
    pub kafka_region: Option<String>,

    /// Properties of this command's consumers only, set by the program rather than a
    /// flag: `exposures up` fits its consumers to the embedded broker with them. Applied
    /// after a stage's own tuning and before `--kafka-property`.
    #[arg(skip)]
    pub consumer_properties: Vec<(String, String)>,
}

/// How Kafka clients authenticate ([`KafkaArgs::kafka_auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaAuth {
    /// Nothing of our own: plaintext, or what --kafka-property sets.
    None,
    /// Amazon MSK IAM: SASL_SSL + OAUTHBEARER, tokens from the AWS credential chain.
    MskIam,
}

/// The context of every client [`KafkaArgs::create`] makes: librdkafka's defaults, and
/// with `--kafka-auth msk-iam` the token refresh. Contexts of their own (ingest's
/// producer, the sink's consumer) carry the same [`KafkaArgs::oauth`] and answer with
/// [`msk_iam::oauth_token`].
pub struct StageContext {
    oauth: Option<Arc<msk_iam::MskIam>>,
}

/// The items of a `ClientContext` impl that answer librdkafka's token requests from the
/// context's `oauth: Option<Arc<MskIam>>` field ([`KafkaArgs::oauth`]), for every context
/// of the pipeline alike.
#[macro_export]
macro_rules! answers_msk_iam_token_requests {
    () => {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn generate_oauth_token(
            &self,
            _oauthbearer_config: Option<&str>,
        ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
            $crate::kafka::msk_iam::oauth_token(&self.oauth)
        }
    };
}

impl rdkafka::ClientContext for StageContext {
    crate::answers_msk_iam_token_requests!();
}

impl ConsumerContext for StageContext {}

/// What a client is for; decides its fixed settings.
#[derive(Debug, Clone, Copy)]
pub enum ClientRole<'a> {
    /// An idempotent, `acks=all` producer whose sends fail after `message_timeout`.
    Producer {
        client_id: &'a str,
        message_timeout: Duration,
    },
    /// A group member that commits offsets only by hand, once its output is durable.
    Consumer { group: &'a str, client_id: &'a str },
    /// Metadata, watermarks, committed offsets of `group`, topic creation; never joins
    /// the group.
    Admin { group: &'a str, client_id: &'a str },
}

impl ClientRole<'_> {
    /// Properties this role sets that a user may not override, besides
    /// [`ALWAYS_PROTECTED`].
    fn protected(&self) -> &'static [&'static str] {
        match self {
            ClientRole::Producer { .. } => &[
                "acks",
                "request.required.acks",
                "enable.idempotence",
                "message.timeout.ms",
                "delivery.timeout.ms",
            ],
            ClientRole::Consumer { .. } => &[
                "enable.auto.commit",
                "enable.auto.offset.store",
                "auto.offset.reset",
            ],
            ClientRole::Admin { .. } => &[],
        }
    }
}

/// Properties no client lets a user override: they have their own flags.
const ALWAYS_PROTECTED: [&str; 3] = ["bootstrap.servers", "metadata.broker.list", "group.id"];

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error(
        "--kafka-property {key} cannot be set: exposures relies on its own value ({why}); \
         remove it from --kafka-property / EXPOSURES_KAFKA_PROPERTIES"
    )]
    Protected { key: String, why: &'static str },
    #[error(
        "--kafka-property {key}={value} contradicts --kafka-auth msk-iam, which sets {key}={wanted}; \
         remove it"
    )]
    ContradictsAuth {
        key: String,
        value: String,
        wanted: &'static str,
    },
    /// Said in full here, not as a source: the message already names the cause.
    #[error("--kafka-auth msk-iam: {0}")]
    MskIam(msk_iam::MskIamError),
    #[error("cannot create a Kafka client for {brokers}: {source}")]
    Client { brokers: String, source: KafkaError },
    #[error("cannot create topic '{topic}' on {brokers}: {reason}")]
    CreateTopic {
        topic: String,
        brokers: String,
        reason: String,
        retry: Retry,
    },
}

impl KafkaSetupError {
    /// A refused property or client configuration is permanent; creating a topic may
    /// fail for a broker that is still starting.
    pub fn retry(&self) -> Retry {
        match self {
            KafkaSetupError::Protected { .. }
            | KafkaSetupError::ContradictsAuth { .. }
            | KafkaSetupError::MskIam(_)
            | KafkaSetupError::Client { .. } => Retry::Permanent,
            KafkaSetupError::CreateTopic { retry, .. } => *retry,
        }
    }
}

impl KafkaArgs {
    /// Connection flags for `brokers` with no extra properties.
    pub fn plaintext(brokers: impl Into<String>) -> KafkaArgs {
        KafkaArgs {
            brokers: brokers.into(),
            properties: Vec::new(),
            kafka_auth: KafkaAuth::None,
            kafka_region: None,
            consumer_properties: Vec::new(),
        }
    }

    /// The MSK IAM signer of this process for `--kafka-auth msk-iam` (one per region,
    /// started on first use), or `None`.
    pub fn oauth(&self) -> Result<Option<Arc<msk_iam::MskIam>>, KafkaSetupError> {
        match self.kafka_auth {
            KafkaAuth::None => Ok(None),
            KafkaAuth::MskIam => msk_iam::MskIam::of_region(self.kafka_region.as_deref())
                .map(Some)
                .map_err(KafkaSetupError::MskIam),
        }
    }

    /// The context [`KafkaArgs::create`] gives its clients.
    pub fn context(&self) -> Result<StageContext, KafkaSetupError> {
        Ok(StageContext { oauth: self.oauth()? })
    }

    /// The librdkafka configuration of a client in `role`: the role's settings, then
    /// `tuning` (defaults the user may override), then `--kafka-property`.
    pub fn config(
        &self,
        role: ClientRole<'_>,
        tuning: &[(&str, String)],
    ) -> Result<ClientConfig, KafkaSetupError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        match role {
            ClientRole::Producer {
                client_id,
                message_timeout,
            } => {
                config
                    .set("client.id", client_id)
                    // The leader and all in-sync replicas have the record, written once
                    // and in order per partition, even when librdkafka retries.
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    // librdkafka's default is 300 s: give up (and spool) sooner.
                    .set(
                        "message.timeout.ms",
                        message_timeout.as_millis().max(1).to_string(),
                    );
            }
            ClientRole::Consumer { group, client_id } | ClientRole::Admin { group, client_id } => {
                config
                    .set("group.id", group)
                    .set("client.id", client_id)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest");
            }
        }
        if self.kafka_auth == KafkaAuth::MskIam {
            for (key, value) in msk_iam::SETTINGS {
                config.set(key, value);
            }
        }
        for (key, value) in tuning {
            config.set(*key, value);
        }
        if matches!(role, ClientRole::Consumer { .. }) {
            for (key, value) in &self.consumer_properties {
                config.set(key, value);
            }
        }
        let protected = role.protected();
        for (key, value) in &self.properties {
            if ALWAYS_PROTECTED.contains(&key.as_str()) || protected.contains(&key.as_str()) {
                let why = match key.as_str() {
                    "bootstrap.servers" | "metadata.broker.list" => "use --brokers",
                    "group.id" => "use the command's --…-group flag",
                    "enable.auto.commit" | "enable.auto.offset.store" => {
                        "offsets are committed only once output is durable"
                    }
                    "auto.offset.reset" => {
                        "a new group must start from the earliest record, or it skips records"
                    }
                    "message.timeout.ms" | "delivery.timeout.ms" => "use --delivery-timeout",
                    _ => "a 200 means every in-sync replica has the event",
                };
                return Err(KafkaSetupError::Protected {
                    key: key.clone(),
                    why,
                });
            }
            if self.kafka_auth == KafkaAuth::MskIam {
                if let Some(wanted) = msk_iam::contradicted(key, value) {
                    return Err(KafkaSetupError::ContradictsAuth {
                        key: key.clone(),
                        value: value.clone(),
                        wanted,
                    });
                }
            }
            config.set(key, value);
        }
        Ok(config)
    }

    /// Creates a client of type `T` in `role` (see [`KafkaArgs::config`]), with a
    /// [`StageContext`].
    pub fn create<T: FromClientConfigAndContext<StageContext>>(
        &self,
        role: ClientRole<'_>,
        tuning: &[(&str, String)],
    ) -> Result<T, KafkaSetupError> {
        self.config(role, tuning)?
            .create_with_context(self.context()?)
            .map_err(|source| self.client_error(source))
    }

    /// Wraps a librdkafka error from creating a client of these brokers.
    pub fn client_error(&self, source: KafkaError) -> KafkaSetupError {
        KafkaSetupError::Client {
            brokers: self.brokers.clone(),
            source,
        }
    }

    /// Creates `topic` with `partitions` unless it exists (brokers that do not
    /// auto-create topics, like the embedded one, need this).
    pub async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        timeout: Duration,
    ) -> Result<(), KafkaSetupError> {
        let admin: AdminClient<StageContext> = self.create(
            ClientRole::Admin {
                group: "exposures-admin",
                client_id: "exposures-admin",
            },
            &[],
        )?;
        // Look before creating: brokers log the refusal of a topic that exists, the
        // embedded one as an ERROR at every restart of `up`.
        let name = topic.to_owned();
        let (admin, exists) = tokio::task::spawn_blocking(move || {
            let exists = admin
                .inner()
                .fetch_metadata(Some(&name), timeout)
                .is_ok_and(|metadata| {
                    metadata.topics().iter().any(|found| {
                        found.name() == name && found.error().is_none() && !found.partitions().is_empty()
                    })
                });
            (admin, exists)
        })
        .await
        .map_err(|error| KafkaSetupError::CreateTopic {
            topic: topic.to_owned(),
            brokers: self.brokers.clone(),
            reason: error.to_string(),
            retry: Retry::Transient,
        })?;
        if exists {
            return Ok(());
        }
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let failure = |reason: String, retry: Retry| KafkaSetupError::CreateTopic {
            topic: topic.to_owned(),
            brokers: self.brokers.clone(),
            reason,
            retry,
        };
        let results = admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| failure(e.to_string(), kafka_retry(&e)))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(failure(code.to_string(), kafka_code_retry(code))),
            }
        }
        Ok(())
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

mod consuming;
pub mod msk_iam;

pub use consuming::{commit, start_consuming, Assignment, RepeatedErrors};

#[cfg(test)]
mod tests;
