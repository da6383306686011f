//! Run-loop plumbing shared by the sink and the loader: the consumer settings of a
//! stage that commits offsets by hand, a synchronous commit off the async threads, a
//! stop signal that long retries can poll, and retry with backoff.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::watch;

/// Consumer settings for a stage that commits offsets only when its output is durable.
pub fn manual_commit_consumer(brokers: &str, group: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    config
}

/// Commits `offsets` synchronously on a blocking thread.
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

/// A shutdown future turned into a flag (for retry loops) and a channel (for `select!`).
#[derive(Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    changed: watch::Receiver<bool>,
}

impl Stop {
    pub fn on(shutdown: impl Future<Output = ()> + Send + 'static) -> Stop {
        let flag = Arc::new(AtomicBool::new(false));
        let (tx, changed) = watch::channel(false);
        let set = flag.clone();
        tokio::spawn(async move {
            shutdown.await;
            set.store(true, Ordering::SeqCst);
            let _ = tx.send(true);
        });
        Stop { flag, changed }
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown is requested.
    pub async fn wait(&mut self) {
        let _ = self.changed.wait_for(|stop| *stop).await;
    }
}

/// Retries `operation` with exponential backoff (100 ms doubling to 10 s) until it
/// succeeds, or returns `None` once `give_up` says stop. Every failure is logged.
pub async fn with_backoff<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    mut operation: F,
    mut give_up: impl FnMut() -> bool,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match operation().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "{what} failed; retrying");
                if give_up() {
                    return None;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
