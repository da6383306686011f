//! `exposures up` (every stage, an embedded broker and an embedded S3 server in one
//! process, on one data directory) and `exposures dev-broker` (the embedded broker alone):
//! their flags, how `up` configures each stage from its own command's defaults, and the
//! lifecycle — settings checked before anything starts, the data directory locked, one
//! stage stopping stops all of them.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;

#[cfg(feature = "embedded-broker")]
use anyhow::Context;

#[cfg(feature = "embedded-broker")]
use crate::{bind, embedded, metrics, panics, shutdown_on_signal};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "EXPOSURES_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for all state: broker storage, spool and the lake.
    #[arg(long, env = "EXPOSURES_DATA_DIR", default_value = "./exposures-data")]
    pub data_dir: PathBuf,

    /// Address of the embedded broker; port 0 picks a free port (printed at start-up).
    #[arg(long, env = "EXPOSURES_BROKER_LISTEN", default_value = "127.0.0.1:0")]
    pub broker_listen: SocketAddr,

    /// Address of the embedded S3-protocol server over DATA_DIR (the lake is its bucket
    /// `lake`, i.e. DATA_DIR/lake); port 0 picks a free port.
    #[arg(long, env = "EXPOSURES_S3_LISTEN", default_value = "127.0.0.1:0")]
    s3_listen: SocketAddr,

    /// Also load the lake into a PostgreSQL database given as --warehouse
    /// postgres://USER:PASSWORD@HOST/DB (tables and views are created in --schema).
    #[command(flatten)]
    pub warehouse: loader::load::WarehouseArgs,

    #[command(flatten)]
    pub http: ingest::HttpConfig,

    #[command(flatten)]
    pub delivery: ingest::DeliveryConfig,

    #[command(flatten)]
    pub files: loader::sink::FileLimits,

    #[command(flatten)]
    pub batches: loader::load::BatchLimits,
}

#[derive(Debug, clap::Args)]
pub struct DevBrokerArgs {
    /// Address the broker listens on (and advertises); port 0 picks a free port.
    #[arg(long, env = "EXPOSURES_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// Directory of the broker's storage.
    #[arg(long, env = "EXPOSURES_DATA_DIR", default_value = "./exposures-data")]
    pub data_dir: PathBuf,

    /// Topics to create at start-up as NAME:PARTITIONS, comma-separated.
    #[arg(
        long,
        env = "EXPOSURES_TOPICS",
        value_delimiter = ',',
        default_value = "exposures:6,exposures.files:1"
    )]
    pub topics: Vec<String>,
}

/// A stage's configuration as clap builds it from `flags`: the same defaults (and
/// `EXPOSURES_*` variables) as the stage's own command, with `up`'s addresses given.
#[cfg(feature = "embedded-broker")]
fn config_from_flags<T: clap::Args + clap::FromArgMatches>(stage: &str, flags: &[String]) -> Result<T> {
    stage::args_from_flags(flags).with_context(|| format!("cannot configure the embedded {stage}"))
}

/// `up`'s default for `--max-buffered-bytes`: 1,000,000 events through `up` peaked at
/// 281 MiB resident with 64 MiB, 248–255 MiB with this (`cargo bench --bench pipeline --
/// e2e`); files of ~40,000 rows are no burden for the PostgreSQL loader behind it.
#[cfg(feature = "embedded-broker")]
const UP_MAX_BUFFERED_BYTES: usize = 32 * 1024 * 1024;
/// `up`'s default for `--batch-interval`: with 10 s, 1,000,000 events through `up` were
/// all queryable after 35.6 s, of which ~16 s was the loader waiting for more files.
#[cfg(feature = "embedded-broker")]
const UP_BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// `up`'s default for `--flush-when-idle`: the end of a burst is in the lake 2 s later,
/// not up to `--flush-interval` later.
#[cfg(feature = "embedded-broker")]
const UP_FLUSH_WHEN_IDLE: std::time::Duration = std::time::Duration::from_secs(2);
/// `up`'s default for `--flush-interval`.
#[cfg(feature = "embedded-broker")]
const UP_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(feature = "embedded-broker")]
pub async fn run_up(args: UpArgs) -> Result<()> {
    if args
        .warehouse
        .warehouse
        .as_deref()
        .is_some_and(|url| url.starts_with("redshift://"))
    {
        anyhow::bail!(
            "up keeps its lake on this machine, where Redshift's COPY cannot read it. Load Redshift with \
             `exposures sink --lake s3://BUCKET/PREFIX` and `exposures load --warehouse redshift://…`."
        );
    }
    // Every setting is checked before anything starts or prints: a typo exits at once,
    // non-zero, instead of leaving a process up with a stage missing.
    args.http
        .validate()
        .context("cannot start up: bad ingest setting")?;
    if args.warehouse.warehouse.is_some() {
        args.warehouse
            .check()
            .context("cannot start up: bad --warehouse")?;
    }
    let metrics = metrics::install()?;
    let held_data_dir = embedded::enter_data_dir(&args.data_dir)?;
    let data_dir = held_data_dir.path.clone();
    let broker = embedded::start(args.broker_listen).await?;
    let kafka = embedded::kafka_args(&broker.bootstrap_servers);
    embedded::ensure_topic(&kafka, &args.delivery.topic, embedded::EXPOSURES_PARTITIONS).await?;
    embedded::ensure_topic(&kafka, embedded::FILES_TOPIC, 1).await?;
    let lake_server = loader::lake::embedded::serve(&data_dir, embedded::LAKE_BUCKET, args.s3_listen)
        .await
        .with_context(|| format!("cannot start the embedded S3 server on {}", args.s3_listen))?;
    let lake_url = format!("s3://{}", embedded::LAKE_BUCKET);
    let embedded_lake = lake_server.lake_args(&lake_url);

    // Every stage starts from its own command's defaults; up sets only where things are.
    // The Kafka flags are replaced whole below: the embedded broker takes no
    // EXPOSURES_KAFKA_PROPERTIES meant for a production cluster.
    let addresses = |more: &[&str]| -> Vec<String> {
        let mut flags = vec!["--files-topic".to_owned(), embedded::FILES_TOPIC.to_owned()];
        flags.extend(more.iter().map(|flag| (*flag).to_owned()));
        flags
    };
    let mut sink_config: loader::sink::SinkConfig = config_from_flags(
        "sink",
        &addresses(&["--lake", &lake_url, "--topic", &args.delivery.topic]),
    )?;
    sink_config.kafka = kafka.clone();
    sink_config.lake = embedded_lake.clone();
    // One sink and one loader, on the embedded broker: no group membership to recover.
    sink_config.assignment = stage::Assignment::All;
    sink_config.files = args.files.clone();
    // One process for every stage: the open files get a smaller share of its memory.
    sink_config.files.max_buffered_bytes =
        Some(args.files.max_buffered_bytes.unwrap_or(UP_MAX_BUFFERED_BYTES));
    // Someone trying the pipeline wants to see rows in seconds, not a minute.
    sink_config.files.flush_interval = Some(args.files.flush_interval.unwrap_or(UP_FLUSH_INTERVAL));
    sink_config.files.flush_when_idle = Some(args.files.flush_when_idle.unwrap_or(UP_FLUSH_WHEN_IDLE));
    let load_config = match &args.warehouse.warehouse {
        Some(url) => {
            let mut config: loader::load::LoadConfig = config_from_flags(
                "loader",
                &addresses(&[
                    "--lake",
                    &lake_url,
                    "--warehouse",
                    url,
                    "--schema",
                    &args.warehouse.schema,
                ]),
            )?;
            config.kafka = kafka.clone();
            config.lake = embedded_lake.clone();
            config.assignment = stage::Assignment::All;
            config.batches = args.batches.clone();
            // Rows should show soon, and PostgreSQL next to up takes small batches cheaply.
            config.batches.batch_interval = Some(args.batches.batch_interval.unwrap_or(UP_BATCH_INTERVAL));
            Some(config)
        }
        None => None,
    };
    let mut delivery = args.delivery;
    if delivery.spool_dir.is_none() {
        delivery.spool_dir = Some(data_dir.join("spool"));
    }
    let config = ingest::IngestConfig {
        listen: args.listen,
        kafka: kafka.clone(),
        http: args.http,
        delivery,
    };
    let listener = bind(config.listen, "--listen").await?;
    // So that `exposures status` next to this `up` needs no addresses.
    let endpoints = loader::status::UpEndpoints {
        api: format!("http://{}", listener.local_addr()?),
        brokers: broker.bootstrap_servers.clone(),
        topic: config.delivery.topic.clone(),
        files_topic: embedded::FILES_TOPIC.to_owned(),
        sink_group: sink_config.group.clone(),
        load_group: load_config
            .as_ref()
            .map_or_else(|| stage::topology::LOAD_GROUP.to_owned(), |c| c.group.clone()),
        s3_endpoint: lake_server.endpoint(),
        lake: lake_url.clone(),
        warehouse: args
            .warehouse
            .warehouse
            .as_deref()
            .map(loader::status::UpEndpoints::without_password),
        schema: args.warehouse.schema.clone(),
    };
    endpoints
        .write(&data_dir)
        .with_context(|| format!("cannot record the endpoints in {}", data_dir.display()))?;
    println!(
        "exposures up: POST http://{}/exposure · broker {} · lake {} (S3 API at {}) · data {}",
        listener.local_addr()?,
        broker.bootstrap_servers,
        data_dir.join(embedded::LAKE_BUCKET).display(),
        lake_server.endpoint(),
        data_dir.display()
    );
    let shutdown = shutdown_on_signal();
    panics::inject("stage");
    // up is one service: when a stage or the broker stops before it is asked to, the
    // others stop too and up exits non-zero, so a supervisor sees it (and restarts it)
    // instead of a process that answers 200 while nothing behind it moves.
    let (ended, mut ended_early) = tokio::sync::mpsc::unbounded_channel();
    let sink = tokio::spawn(report_end(
        "the sink",
        ended.clone(),
        loader::sink::run(sink_config, shutdown.clone()),
    ));
    let load = load_config.map(|config| {
        tokio::spawn(report_end(
            "the loader",
            ended.clone(),
            loader::load::run(config, shutdown.clone()),
        ))
    });
    tokio::spawn(report_end("the embedded broker", ended, broker.stopped()));
    let stopped_early = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                // A stage that ends after up was asked to stop ended as it should.
                biased;
                _ = shutdown.cancelled() => None,
                Some(stage) = ended_early.recv() => {
                    tracing::error!("{stage} stopped; stopping up");
                    shutdown.cancel();
                    Some(stage)
                }
            }
        })
    };
    let served = ingest::serve(listener, config, metrics::renderer(&metrics), shutdown.clone()).await;
    shutdown.cancel();
    tracing::info!("waiting for the sink to close its open files and the loader to finish its batch");
    // Ingest has flushed its producer; the sink closes its open files on the same signal.
    let sunk = sink.await.context("sink task failed")?;
    let loaded = match load {
        Some(load) => load.await.context("loader task failed")?,
        None => Ok(()),
    };
    let _ = std::fs::remove_file(data_dir.join(loader::status::UpEndpoints::FILE));
    lake_server.stop();
    broker.stop();
    served?;
    sunk.context("the sink failed")?;
    loaded.context("the loader failed")?;
    if let Ok(Some(stage)) = stopped_early.await {
        anyhow::bail!("{stage} stopped before up was asked to stop");
    }
    Ok(())
}

/// Runs `work`, then says on `ended` that `stage` has ended (whatever its outcome).
#[cfg(feature = "embedded-broker")]
async fn report_end<T>(
    stage: &'static str,
    ended: tokio::sync::mpsc::UnboundedSender<&'static str>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let outcome = work.await;
    let _ = ended.send(stage);
    outcome
}

#[cfg(feature = "embedded-broker")]
pub async fn run_dev_broker(args: DevBrokerArgs) -> Result<()> {
    let topics = args
        .topics
        .iter()
        .map(|spec| parse_topic_spec(spec))
        .collect::<Result<Vec<_>>>()?;
    let data_dir = embedded::enter_data_dir(&args.data_dir)?;
    let broker = embedded::start(args.listen).await?;
    let kafka = stage::KafkaArgs::plaintext(broker.bootstrap_servers.clone());
    for (topic, partitions) in &topics {
        embedded::ensure_topic(&kafka, topic, *partitions).await?;
    }
    // One line on stdout that scripts and tests can read.
    println!("bootstrap.servers={}", broker.bootstrap_servers);
    tracing::info!(data = %data_dir.path.display(), "dev broker ready; Ctrl-C to stop");
    panics::inject("stage");
    shutdown_on_signal().cancelled().await;
    broker.stop();
    Ok(())
}

#[cfg(feature = "embedded-broker")]
fn parse_topic_spec(spec: &str) -> Result<(String, i32)> {
    let (name, partitions) = spec.trim().split_once(':').unwrap_or((spec.trim(), "1"));
    let partitions = partitions
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("--topics '{spec}': expected NAME:PARTITIONS with PARTITIONS > 0"))?;
    Ok((name.to_owned(), partitions))
}

#[cfg(not(feature = "embedded-broker"))]
pub async fn run_up(_: UpArgs) -> Result<()> {
    anyhow::bail!("this build has no embedded broker: rebuild with the default `embedded-broker` feature")
}

#[cfg(not(feature = "embedded-broker"))]
pub async fn run_dev_broker(_: DevBrokerArgs) -> Result<()> {
    anyhow::bail!("this build has no embedded broker: rebuild with the default `embedded-broker` feature")
}
