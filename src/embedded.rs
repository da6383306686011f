//! The embedded Kafka-protocol broker behind `exposures up` and `exposures dev-broker`:
//! tansu with SQLite storage, so acknowledged records and committed group offsets
//! survive a SIGKILL. Wiring only; the broker is tansu's.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

/// Partitions of the exposures topic `up` creates.
pub const EXPOSURES_PARTITIONS: i32 = 6;
/// The topic the sink announces files on.
pub const FILES_TOPIC: &str = stage::topology::FILES_TOPIC;
/// The embedded S3 server's bucket: the lake is DATA_DIR/lake.
pub const LAKE_BUCKET: &str = "lake";

/// What `up`'s consumers (the sink and the loader) set to suit the embedded broker.
///
/// tansu 0.6 answers a fetch only after sleeping for half the client's
/// `fetch.wait.max.ms` (librdkafka's default: 500 ms), and while fewer than
/// `fetch.min.bytes` have come it reads every record again (the sink asks for 1 MiB).
/// As published, each record read cost the broker a prepared SQL query, ~43 µs of CPU
/// here (1.9 µs with `vendor/tansu-storage`'s patches, but the re-reads and the sleep
/// remain). A short wait and no minimum answer every fetch once: `up`'s p99 at 64
/// connections, in 25 s runs, fell from 77–98 ms to 54–69 ms.
const EMBEDDED_CONSUMER_PROPERTIES: [(&str, &str); 2] =
    [("fetch.wait.max.ms", "100"), ("fetch.min.bytes", "1")];

/// The Kafka flags of `up`'s stages on the embedded broker at `bootstrap_servers`.
pub fn kafka_args(bootstrap_servers: &str) -> stage::KafkaArgs {
    let mut kafka = stage::KafkaArgs::plaintext(bootstrap_servers);
    kafka.consumer_properties = EMBEDDED_CONSUMER_PROPERTIES
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    kafka
}

/// Worker threads of the broker's own runtime.
const BROKER_THREADS: usize = 2;

pub struct EmbeddedBroker {
    /// `host:port` for `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// The broker runs on a runtime of its own: tansu's SQLite calls are synchronous
    /// inside its futures (serving a fetch of 1 MiB holds a thread for tens of
    /// milliseconds), and on the runtime of the other stages they would hold up the
    /// HTTP requests queued behind them.
    runtime: BrokerRuntime,
    task: JoinHandle<()>,
    /// Cancelled when the serving task ends, however it ends.
    stopped: stage::Shutdown,
}

/// The broker's runtime, shut down without waiting when dropped: a runtime dropped the
/// ordinary way from async code (where `up` holds it) panics.
struct BrokerRuntime(Option<tokio::runtime::Runtime>);

impl Drop for BrokerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl EmbeddedBroker {
    /// Completes when the broker stops serving (an error, a panic, or [`Self::stop`]).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.stopped.clone().cancelled_owned()
    }

    /// Stops the broker. Its SQLite storage is durable at every acknowledgement, so
    /// stopping needs no flush.
    pub fn stop(self) {
        self.task.abort();
        drop(self.runtime);
    }
}

/// A data directory entered and held: its absolute path, and the lock that keeps a
/// second `up` or `dev-broker` out of it while this process lives.
pub struct DataDir {
    pub path: PathBuf,
    _lock: stage::DirLock,
}

/// Resolves `data_dir` to an absolute path (creating it), locks it, and makes it the
/// working directory. tansu resolves its `sqlite://` URL against the working directory
/// and offers no absolute form, so this is how the broker's database lands in the data
/// dir. Call before anything else reads a relative path.
///
/// Two processes on one data directory would share the broker's SQLite file, the spool
/// and the lake, and the second would overwrite (and on stop delete) the first's
/// endpoints: the second is refused, saying which process holds it.
pub fn enter_data_dir(data_dir: &Path) -> Result<DataDir> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let absolute = data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve data directory {}", data_dir.display()))?;
    let lock = stage::DirLock::acquire(&absolute, "--data-dir")?;
    std::env::set_current_dir(&absolute)
        .with_context(|| format!("cannot enter data directory {}", absolute.display()))?;
    Ok(DataDir {
        path: absolute,
        _lock: lock,
    })
}

/// Starts the broker on `listen` (port 0 picks a free port) with its storage in
/// `broker/` under the working directory (see [`enter_data_dir`]), and waits until it
/// accepts connections.
pub async fn start(listen: SocketAddr) -> Result<EmbeddedBroker> {
    let address = if listen.port() == 0 {
        // tansu advertises the address it is given, so it needs the real port up front.
        let probe = StdTcpListener::bind(listen).with_context(|| format!("cannot bind {listen}"))?;
        probe.local_addr()?
    } else {
        listen
    };
    std::fs::create_dir_all("broker").context("cannot create the broker's storage directory")?;
    let listener_url = Url::parse(&format!("tcp://{address}"))?;
    let storage_url = Url::parse("sqlite://./broker/exposures.db")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BROKER_THREADS)
        .thread_name("embedded-broker")
        .enable_all()
        .build()
        .context("cannot start the embedded broker's threads")?;
    let handle = runtime.handle().clone();
    let runtime = BrokerRuntime(Some(runtime));
    // Built on the broker's runtime, so its listener belongs to that runtime's reactor.
    let mut broker = handle
        .spawn(async move {
            Broker::<Controller<StorageContainer>, StorageContainer>::builder()
                .node_id(1)
                .cluster_id("exposures-embedded")
                .incarnation_id(uuid::Uuid::now_v7())
                .advertised_listener(listener_url.clone())
                .storage(storage_url)
                .listener(listener_url)
                .silent(true)
                .build()
                .await
                .map_err(|error| format!("{error:?}"))
        })
        .await
        .context("the embedded broker's start-up task failed")?
        .map_err(|error| anyhow::anyhow!("cannot start the embedded broker: {error}"))?;
    let stopped = stage::Shutdown::new();
    let task = handle.spawn({
        // Dropped when the task ends, returning or unwinding (or aborted by `stop`).
        let _stopped_on_drop = stopped.clone().drop_guard();
        async move {
            let _stopped_on_drop = _stopped_on_drop;
            if let Err(error) = broker.serve(tokio::time::Instant::now()).await {
                tracing::error!(?error, "embedded broker stopped");
            }
        }
    });
    {
        let _on_the_broker_runtime = handle.enter();
        crate::panics::inject("broker");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        if task.is_finished() {
            bail!("the embedded broker exited during start-up (is {address} in use?)");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the embedded broker did not accept connections on {address} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(EmbeddedBroker {
        bootstrap_servers: address.to_string(),
        runtime,
        task,
        stopped,
    })
}

/// Creates `topic` unless it exists, retrying (for at most 30 s) while the broker finishes
/// starting; a permanent refusal ends it at once.
pub async fn ensure_topic(kafka: &stage::KafkaArgs, topic: &str, partitions: i32) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut backoff = stage::Backoff::new(Duration::from_millis(200), Duration::from_millis(200));
    loop {
        match kafka
            .ensure_topic(topic, partitions, Duration::from_secs(5))
            .await
        {
            Ok(()) => return Ok(()),
            Err(error) if error.retry().is_permanent() || tokio::time::Instant::now() > deadline => {
                return Err(error.into())
            }
            Err(error) => {
                tracing::debug!(%error, "topic not created yet; retrying");
                backoff.sleep().await;
            }
        }
    }
}
