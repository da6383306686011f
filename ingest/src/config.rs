//! Configuration of the ingest stage: one typed struct, every field a flag and an
//! `EXPOSURES_*` environment variable (clap), documented where it is declared.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use schemas::{IpPolicy, Limits, Normalizer};

/// Rate limiter keyed by client (write key, or IP address with IPv6 cut to its /64).
pub type ClientLimiter = DefaultKeyedRateLimiter<String>;

/// Shortest salt `--forwarded-for hash` accepts: below it, the 2^32 IPv4 addresses can
/// be hashed with every short salt and the hashes reversed.
pub const MIN_IP_HASH_SALT_BYTES: usize = 16;

/// A configuration that must not start, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--write-keys (EXPOSURES_WRITE_KEYS) contains an empty key, which would let anyone in: \
         remove the stray comma or blank entry"
    )]
    EmptyWriteKey,
    #[error(
        "--max-attributes-bytes {0} is above 65535, the most a warehouse JSON column loads: \
         lower it"
    )]
    AttributesTooLarge(usize),
    #[error(
        "--forwarded-for hash needs a secret salt of at least {MIN_IP_HASH_SALT_BYTES} bytes in \
         EXPOSURES_IP_HASH_SALT (e.g. `openssl rand -hex 16`); without one, IPv4 hashes are \
         trivially reversed"
    )]
    WeakIpHashSalt,
}

/// HTTP API and validation options (shared by `exposures ingest` and `exposures up`).
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Comma-separated origins allowed to POST from a browser (CORS), or `*` for any.
    #[arg(
        long,
        env = "EXPOSURES_CORS_ORIGINS",
        default_value = "*",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Largest request body accepted on `POST /exposure`, in bytes.
    #[arg(long, env = "EXPOSURES_MAX_EVENT_BYTES", default_value_t = 1024 * 1024)]
    pub max_event_bytes: usize,

    /// Largest request body on `POST /v1/exposures`, in bytes, before and after gzip inflation.
    #[arg(long, env = "EXPOSURES_MAX_BATCH_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_batch_bytes: usize,

    /// Most events accepted in one `POST /v1/exposures`.
    #[arg(long, env = "EXPOSURES_MAX_BATCH_EVENTS", default_value_t = 10_000)]
    pub max_batch_events: usize,

    /// Largest serialized `attributes` object, in bytes.
    #[arg(long, env = "EXPOSURES_MAX_ATTRIBUTES_BYTES", default_value_t = 32 * 1024)]
    pub max_attributes_bytes: usize,

    /// What to do with the `forwarded_for` (IP address) attribute: keep, truncate
    /// (IPv4 /24, IPv6 /48), hash (salted SHA-256) or drop.
    #[arg(long, env = "EXPOSURES_FORWARDED_FOR", default_value = "keep")]
    pub forwarded_for: IpPolicy,

    /// Salt for `--forwarded-for hash`. A secret: set it in the environment, not on the
    /// command line.
    #[arg(
        long,
        env = "EXPOSURES_IP_HASH_SALT",
        default_value = "",
        hide_env_values = true
    )]
    pub ip_hash_salt: String,

    /// Comma-separated write keys. When set, requests must send one as
    /// `Authorization: Bearer KEY` or `?key=KEY`. Off by default: the GrowthBook SDK
    /// callbacks in the field send none.
    #[arg(
        long,
        env = "EXPOSURES_WRITE_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub write_keys: Vec<String>,

    /// Comma-separated `CLIENT_KEY=ENVIRONMENT` pairs: the GrowthBook SDK client keys
    /// `POST /track` accepts, and the environment stored with each one's events. Without
    /// it, `/track` takes any client key (and stores no environment). A client key ships
    /// to every browser, so this is an allow-list against stray traffic, not
    /// authentication. When --write-keys is set, `/track` (whose plugin cannot send a
    /// write key) is open only to the keys listed here.
    #[arg(
        long,
        env = "EXPOSURES_CLIENT_KEYS",
        value_delimiter = ',',
        value_parser = parse_client_key
    )]
    pub client_keys: Vec<ClientKey>,

    /// Requests per second allowed per client (its write key, else its IP address);
    /// beyond it: 429 with Retry-After. 0 turns the limit off (the default).
    #[arg(long, env = "EXPOSURES_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,

    /// Requests a client may send at once before --rate-limit applies [default: the rate].
    #[arg(long, env = "EXPOSURES_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,

    /// Test hook: a client regains one request per this period instead of `--rate-limit`
    /// per second, so tests do not depend on how fast the machine is.
    #[arg(skip)]
    pub rate_limit_replenish: Option<Duration>,

    /// Comma-separated addresses or CIDR ranges of reverse proxies / load balancers whose
    /// X-Forwarded-For header names the client (for rate limits). Off by default: the
    /// socket peer is the client.
    #[arg(long, env = "EXPOSURES_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,

    #[command(flatten)]
    pub connections: ConnectionLimits,
}

/// Connection limits and timeouts, with defaults a reverse proxy would use.
#[derive(Debug, Clone, Args)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's headers, and how long an idle
    /// keep-alive connection waits for its next request; then the connection is closed.
    #[arg(long, env = "EXPOSURES_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Longest a request's body may take to arrive; beyond it: 408.
    #[arg(long, env = "EXPOSURES_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// Most connections open at once; more wait in the kernel's accept queue.
    #[arg(long, env = "EXPOSURES_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Bytes all requests in flight may hold (bodies as received, after gzip inflation,
    /// and while parsed); beyond it requests are answered 503 with Retry-After.
    #[arg(long, env = "EXPOSURES_MAX_INFLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_inflight_bytes: usize,

    /// How long shutdown waits for in-flight requests before closing their connections.
    #[arg(long, env = "EXPOSURES_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl HttpConfig {
    /// Refuses settings that would open a hole: an empty write key, a weak hash salt.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.write_keys.iter().any(|key| key.trim().is_empty()) {
            return Err(ConfigError::EmptyWriteKey);
        }
        if self.max_attributes_bytes > schemas::loadable::MAX_JSON_BYTES {
            return Err(ConfigError::AttributesTooLarge(self.max_attributes_bytes));
        }
        if self.forwarded_for == IpPolicy::Hash && self.ip_hash_salt.len() < MIN_IP_HASH_SALT_BYTES {
            return Err(ConfigError::WeakIpHashSalt);
        }
        Ok(())
    }

    /// The per-client limiter, or `None` when `--rate-limit` is 0.
    pub fn rate_limiter(&self) -> Option<ClientLimiter> {
        let rate = NonZeroU32::new(self.rate_limit)?;
        let burst = self.rate_limit_burst.and_then(NonZeroU32::new).unwrap_or(rate);
        let quota = self
            .rate_limit_replenish
            .and_then(Quota::with_period)
            .unwrap_or_else(|| Quota::per_second(rate));
        Some(RateLimiter::keyed(quota.allow_burst(burst)))
    }

    pub fn normalizer(&self) -> Normalizer {
        Normalizer {
            limits: Limits {
                max_attributes_bytes: self.max_attributes_bytes,
                ..Limits::default()
            },
            ip_policy: self.forwarded_for,
            ip_hash_salt: self.ip_hash_salt.clone(),
        }
    }
}

/// Kafka producer and spool options.
#[derive(Debug, Clone, Args)]
pub struct DeliveryConfig {
    /// Topic exposures are produced to.
    #[arg(long, env = "EXPOSURES_TOPIC", default_value = stage::topology::EXPOSURES_TOPIC)]
    pub topic: String,

    /// How long a request waits for the broker's acknowledgement before the event goes
    /// to the local spool instead (librdkafka `message.timeout.ms`). Keep it below your
    /// SDK's HTTP timeout: the seed's Python callback gives up after 5 s.
    #[arg(long, env = "EXPOSURES_DELIVERY_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// Directory of the local spool that keeps events durable while Kafka is unreachable
    /// [default: ./exposures-data/spool, or DATA_DIR/spool under `exposures up`].
    #[arg(long, env = "EXPOSURES_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Bytes the spool may hold; beyond it requests are answered 503 with Retry-After.
    #[arg(long, env = "EXPOSURES_SPOOL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub spool_max_bytes: u64,

    /// Disable the spool: when Kafka cannot acknowledge in time, answer 503 with Retry-After.
    #[arg(long, env = "EXPOSURES_NO_SPOOL")]
    pub no_spool: bool,
}

/// Everything `ingest::serve` needs.
#[derive(Debug, Clone, Args)]
pub struct IngestConfig {
    /// Address the HTTP API listens on.
    #[arg(long, env = "EXPOSURES_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub kafka: stage::KafkaArgs,

    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub delivery: DeliveryConfig,
}

/// One `--client-keys` entry: a GrowthBook SDK client key and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub key: String,
    pub environment: String,
}

fn parse_client_key(text: &str) -> Result<ClientKey, String> {
    let usage = "expected CLIENT_KEY=ENVIRONMENT, e.g. sdk-abc123=production";
    let (key, environment) = text
        .trim()
        .split_once('=')
        .ok_or_else(|| format!("'{text}': {usage}"))?;
    let (key, environment) = (key.trim(), environment.trim());
    if key.is_empty() || environment.is_empty() {
        return Err(format!("'{text}': {usage}"));
    }
    if environment.len() > 128 || environment.contains('\0') {
        return Err(format!(
            "'{text}': the environment must be at most 128 bytes, without NUL"
        ));
    }
    Ok(ClientKey {
        key: key.to_owned(),
        environment: environment.to_owned(),
    })
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is neither an IP address nor a CIDR range like 10.0.0.0/8"))
}
