//! `exposures`: the command-line entry point. Parses configuration (flags, each also an
//! `EXPOSURES_*` environment variable) and calls into the stage crates; no pipeline
//! logic lives here.

#[cfg(feature = "embedded-broker")]
mod embedded;
mod metrics;
mod panics;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use metrics_exporter_prometheus::PrometheusHandle;
use stage::Shutdown;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "exposures",
    version,
    about = "Exposure-event pipeline for GrowthBook A/B tests: HTTP → Kafka → Parquet → warehouse",
    long_about = "Exposure-event pipeline for GrowthBook A/B tests.\n\n\
        GrowthBook SDK callbacks POST one JSON object per exposure; exposures answers 200 only \
        once the event is durable in Kafka (or its local spool while Kafka is unreachable).\n\n\
        Start here: `exposures up` runs the pipeline on this machine with no other services.\n\
        Every flag can also be set as an EXPOSURES_* environment variable (shown in each --help)."
)]
struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "EXPOSURES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline in one process on embedded defaults: the HTTP API on
    /// 127.0.0.1:8080 and a durable embedded Kafka-protocol broker, all state under
    /// --data-dir. Needs no external services.
    Up(UpArgs),
    /// Run the HTTP API: validate exposures and make them durable in Kafka.
    Ingest(ingest::IngestConfig),
    /// Consume exposures from Kafka and write hour-partitioned Parquet to the lake
    /// (s3://… or file:///…), exactly once, announcing each file on exposures.files.
    Sink(SinkArgs),
    /// Load the files the sink announces into the warehouse (Redshift through the Data
    /// API, or PostgreSQL), exactly once, with a ledger and quarantine for poison files.
    Load(LoadArgs),
    /// Print the warehouse DDL (tables, loader ledger, GrowthBook views) for a dialect,
    /// or with --dialect athena|spectrum the lake as an external table.
    Ddl(DdlArgs),
    /// Load the rows of exposures_rejected again, once what refused them is fixed: rows
    /// that load leave the table (each event at most once), the rest keep a fresh reason.
    ReloadRejected(ReloadArgs),
    /// Show where the pipeline stands: events waiting for the sink, files waiting for
    /// the loader, warehouse rows and freshness, and quarantined files with reasons.
    Status(loader::status::StatusConfig),
    /// Compare the lake's objects, the loader's ledger and the table's row counts; with
    /// --repair, announce the objects never loaded again for the running loader.
    Reconcile(loader::reconcile::ReconcileConfig),
    /// Run the embedded Kafka-protocol broker alone (durable SQLite storage), for local
    /// development and multi-process tests. Prints its bootstrap servers.
    DevBroker(DevBrokerArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "EXPOSURES_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Directory for all state: broker storage, spool and the lake.
    #[arg(long, env = "EXPOSURES_DATA_DIR", default_value = "./exposures-data")]
    data_dir: PathBuf,

    /// Address of the embedded broker; port 0 picks a free port (printed at start-up).
    #[arg(long, env = "EXPOSURES_BROKER_LISTEN", default_value = "127.0.0.1:0")]
    broker_listen: SocketAddr,

    /// Address of the embedded S3-protocol server over DATA_DIR (the lake is its bucket
    /// `lake`, i.e. DATA_DIR/lake); port 0 picks a free port.
    #[arg(long, env = "EXPOSURES_S3_LISTEN", default_value = "127.0.0.1:0")]
    s3_listen: SocketAddr,

    /// Also load the lake into a PostgreSQL database given as --warehouse
    /// postgres://USER:PASSWORD@HOST/DB (tables and views are created in --schema).
    #[command(flatten)]
    warehouse: loader::load::WarehouseArgs,

    #[command(flatten)]
    http: ingest::HttpConfig,

    #[command(flatten)]
    delivery: ingest::DeliveryConfig,

    #[command(flatten)]
    files: loader::sink::FileLimits,

    #[command(flatten)]
    batches: loader::load::BatchLimits,
}

#[derive(Debug, clap::Args)]
struct SinkArgs {
    #[command(flatten)]
    sink: loader::sink::SinkConfig,

    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "EXPOSURES_METRICS_LISTEN", default_value = "0.0.0.0:9464")]
    metrics_listen: SocketAddr,
}

#[derive(Debug, clap::Args)]
#[command(mut_arg("warehouse", |arg| arg.required(true)))]
struct LoadArgs {
    #[command(flatten)]
    load: loader::load::LoadConfig,

    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "EXPOSURES_METRICS_LISTEN", default_value = "0.0.0.0:9465")]
    metrics_listen: SocketAddr,
}

#[derive(Debug, clap::Args)]
#[command(mut_arg("warehouse", |arg| arg.required(true)))]
struct ReloadArgs {
    #[command(flatten)]
    warehouse: loader::load::WarehouseArgs,

    #[command(flatten)]
    redshift: loader::load::RedshiftArgs,
}

#[derive(Debug, clap::Args)]
struct DdlArgs {
    /// SQL dialect: redshift or postgres (the warehouse objects), or athena or spectrum
    /// (the lake as an external table over the sink's Parquet files; needs --lake).
    #[arg(long, env = "EXPOSURES_DIALECT", default_value = "redshift")]
    dialect: schemas::external::DdlDialect,

    /// Schema the objects are created in: the warehouse schema (default public); for
    /// athena the Glue database, for spectrum the external schema over the Glue database
    /// of that name, which cannot be a local schema (default lake).
    #[arg(long, env = "EXPOSURES_SCHEMA")]
    schema: Option<String>,

    /// athena and spectrum: the lake the sink writes (its --lake), s3://BUCKET[/PREFIX].
    /// The table's LOCATION is s3://BUCKET/PREFIX/exposures/v1/.
    #[arg(long, env = "EXPOSURES_LAKE")]
    lake: Option<String>,

    /// spectrum: IAM role of the external schema (reads the Glue Data Catalog and the
    /// lake): a role ARN, or `default` for the role set as default on the cluster or
    /// namespace.
    #[arg(long, env = "EXPOSURES_IAM_ROLE", default_value = "default")]
    iam_role: String,
}

/// What `exposures ddl` prints: the warehouse objects, or the lake as an external table.
fn ddl_script(args: &DdlArgs) -> Result<String> {
    use schemas::external::{DdlDialect, LakeTable, DEFAULT_SCHEMA};
    match args.dialect {
        DdlDialect::Warehouse(dialect) => Ok(schemas::ddl::script(
            dialect,
            args.schema.as_deref().unwrap_or("public"),
        )),
        DdlDialect::Lake(engine) => {
            let Some(lake) = args.lake.as_deref() else {
                anyhow::bail!(
                    "--dialect {engine} prints a table over the lake's Parquet files and needs their \
                     location: add --lake s3://BUCKET[/PREFIX], the sink's --lake"
                );
            };
            let schema = args.schema.as_deref().unwrap_or(DEFAULT_SCHEMA);
            let table = LakeTable::new(engine, schema, lake, &args.iam_role).map_err(anyhow::Error::msg)?;
            Ok(schemas::external::script(&table))
        }
    }
}

#[derive(Debug, clap::Args)]
struct DevBrokerArgs {
    /// Address the broker listens on (and advertises); port 0 picks a free port.
    #[arg(long, env = "EXPOSURES_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    listen: SocketAddr,

    /// Directory of the broker's storage.
    #[arg(long, env = "EXPOSURES_DATA_DIR", default_value = "./exposures-data")]
    data_dir: PathBuf,

    /// Topics to create at start-up as NAME:PARTITIONS, comma-separated.
    #[arg(
        long,
        env = "EXPOSURES_TOPICS",
        value_delimiter = ',',
        default_value = "exposures:6,exposures.files:1"
    )]
    topics: Vec<String>,
}

fn main() -> Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    return_large_buffers_to_the_system();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let status_given = matches.subcommand_matches("status").cloned();
    if matches!(cli.command, Command::Up(_)) {
        fewer_malloc_arenas();
    }
    // A command that prints an answer reports what it could not reach in that answer;
    // librdkafka's own connection errors would only bury it.
    let answers = matches!(
        cli.command,
        Command::Status(_) | Command::Reconcile(_) | Command::Ddl(_) | Command::ReloadRejected(_)
    );
    init_logging(cli.log_format, answers);
    panics::exit_on_panic();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Ingest(config) => run_ingest(config).await,
            Command::Sink(args) => run_sink(args).await,
            Command::Load(args) => run_load(args).await,
            Command::Ddl(args) => {
                print!("{}", ddl_script(&args)?);
                Ok(())
            }
            Command::ReloadRejected(args) => {
                let report = loader::load::reload_rejected(&args.warehouse, &args.redshift).await?;
                println!(
                    "reloaded {} rows from {}.exposures_rejected; {} refused again (their reasons are updated)",
                    report.reloaded, args.warehouse.schema, report.still_refused
                );
                Ok(())
            }
            Command::Status(mut config) => {
                if let Some(given) = &status_given {
                    fill_in_from_up(&mut config, given);
                }
                let report = loader::status::gather(&config).await;
                let text = if config.json { format!("{}\n", report.to_json()) } else { report.to_string() };
                // 2: a section could not be read; 1: an experiment needs attention.
                print_and_exit(&text, report.exit_code())
            }
            Command::Reconcile(config) => {
                let report = loader::reconcile::run(&config).await;
                let text = if config.json { format!("{}\n", report.to_json()) } else { report.to_string() };
                // 2: a part could not be read; 1: something is listed (and not repaired).
                print_and_exit(&text, report.exit_code())
            }
            Command::Up(args) => run_up(args).await,
            Command::DevBroker(args) => run_dev_broker(args).await,
        }
    })
}

/// Prints a `status` or `reconcile` report and exits with its code (0 fine, 1 needs
/// attention, 2 something could not be read), which scripts and CI act on.
fn print_and_exit(text: &str, code: i32) -> Result<()> {
    print!("{text}");
    std::io::Write::flush(&mut std::io::stdout())?;
    std::process::exit(code);
}

/// glibc raises its mmap threshold after each large free, so later large buffers (request
/// bodies, Parquet files) come from the heap and stay resident after a burst; measured
/// under the gzip-bomb attack of tests/pipeline/hostile.rs: +77 MiB resident without
/// this, +37 MiB with it. A fixed 128 KiB threshold gives every large buffer back on free.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// `up` runs every stage, its broker and their threads in one process, where glibc's
/// default of up to 8 malloc arenas per core fragments memory: 1M events through `up`
/// peaked at 248–254 MiB resident with the default, 208 MiB with 4 arenas and 188 MiB
/// with 2 (which cost 17% more CPU; 4 cost none measurable). An explicit
/// `MALLOC_ARENA_MAX` in the environment wins.
fn fewer_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; called before any other thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 4);
        }
    }
}

/// Logs to stderr: `RUST_LOG` if set; otherwise info, with the libraries (librdkafka,
/// tansu) at warn, or silent for a command that prints an answer (`quiet_libraries`).
fn init_logging(format: LogFormat, quiet_libraries: bool) {
    let default = if quiet_libraries {
        "warn,librdkafka=off,rdkafka=off,tansu=off,tansu_broker=off,tansu_storage=off,libsql=off,aws_config=off,aws_smithy_runtime=off"
    } else {
        // librdkafka and tansu are chatty at info; their warnings still show.
        "info,tansu=warn,tansu_broker=warn,tansu_storage=warn,libsql=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only for a person at a terminal, never in files or pipes.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn bind(address: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address}: is another process using it? Pick another with {flag}")
    })
}

/// The token every stage stops on, cancelled on SIGINT (Ctrl-C) or SIGTERM.
fn shutdown_on_signal() -> Shutdown {
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
        tracing::info!("shutdown requested: finishing in-flight work");
        trigger.cancel();
    });
    shutdown
}

async fn run_ingest(config: ingest::IngestConfig) -> Result<()> {
    let metrics = metrics::install()?;
    let listener = bind(config.listen, "--listen").await?;
    panics::inject("stage");
    ingest::serve(
        listener,
        config,
        metrics::renderer(&metrics),
        shutdown_on_signal(),
    )
    .await?;
    Ok(())
}

/// Takes every address `status` was not given from the endpoints a running `up` recorded
/// in `--data-dir`, if there are any.
fn fill_in_from_up(config: &mut loader::status::StatusConfig, given: &clap::ArgMatches) {
    use clap::parser::ValueSource;
    let defaulted = |id: &str| {
        !matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let Some(up) = loader::status::UpEndpoints::read(&config.data_dir) else {
        if defaulted("brokers") {
            eprintln!(
                "note: no running `exposures up` recorded in {}; asking the brokers at {} (give --brokers, \
                 or --data-dir of the up to look at)",
                config.data_dir.display(),
                config.kafka.brokers
            );
        }
        return;
    };
    if defaulted("brokers") {
        config.kafka = stage::KafkaArgs::plaintext(up.brokers);
        if defaulted("topic") {
            config.topic = up.topic;
        }
        if defaulted("files_topic") {
            config.files_topic = up.files_topic;
        }
        if defaulted("sink_group") {
            config.sink_group = up.sink_group;
        }
        if defaulted("load_group") {
            config.load_group = up.load_group;
        }
    }
    if defaulted("ingest_url") && config.ingest_url.is_none() {
        config.ingest_url = Some(up.api);
    }
    if defaulted("warehouse") && config.warehouse.warehouse.is_none() {
        config.warehouse.warehouse = up.warehouse;
        if defaulted("schema") {
            config.warehouse.schema = up.schema;
        }
    }
}

/// Serves `/metrics` and `/healthz` on `address` in the background until `shutdown`.
async fn serve_metrics(
    address: SocketAddr,
    handle: PrometheusHandle,
    health: metrics::Health,
    shutdown: &Shutdown,
) -> Result<()> {
    let listener = bind(address, "--metrics-listen").await?;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Err(error) = metrics::serve(listener, handle, health, shutdown).await {
            tracing::error!(%error, "metrics endpoint stopped");
        }
    });
    Ok(())
}

async fn run_sink(args: SinkArgs) -> Result<()> {
    let shutdown = shutdown_on_signal();
    serve_metrics(args.metrics_listen, metrics::install()?, || Ok(()), &shutdown).await?;
    panics::inject("stage");
    loader::sink::run(args.sink, shutdown).await?;
    Ok(())
}

async fn run_load(args: LoadArgs) -> Result<()> {
    let shutdown = shutdown_on_signal();
    serve_metrics(
        args.metrics_listen,
        metrics::install()?,
        loader::load::health::check,
        &shutdown,
    )
    .await?;
    panics::inject("stage");
    loader::load::run(args.load, shutdown).await?;
    Ok(())
}

/// A stage's configuration as clap builds it from `flags`: the same defaults (and
/// `EXPOSURES_*` variables) as the stage's own command, with `up`'s addresses given.
#[cfg(feature = "embedded-broker")]
fn config_from_flags<T: clap::Args + clap::FromArgMatches>(stage: &str, flags: &[String]) -> Result<T> {
    let command = T::augment_args(clap::Command::new("exposures up").no_binary_name(true));
    let matches = command
        .try_get_matches_from(flags)
        .with_context(|| format!("cannot configure the embedded {stage}"))?;
    T::from_arg_matches(&matches).with_context(|| format!("cannot configure the embedded {stage}"))
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
/// `up`'s default for `--flush-interval`.
#[cfg(feature = "embedded-broker")]
const UP_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(feature = "embedded-broker")]
async fn run_up(args: UpArgs) -> Result<()> {
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
    let embedded_s3 = loader::lake::LakeArgs {
        s3_endpoint: Some(lake_server.endpoint()),
        s3_region: Some("us-east-1".into()),
        s3_static_credentials: Some((
            loader::lake::embedded::ACCESS_KEY.into(),
            loader::lake::embedded::SECRET_KEY.into(),
        )),
    };

    // Every stage starts from its own command's defaults; up sets only where things are.
    // The Kafka flags are replaced whole below: the embedded broker takes no
    // EXPOSURES_KAFKA_PROPERTIES meant for a production cluster.
    let addresses = |more: &[&str]| -> Vec<String> {
        let mut flags = vec!["--files-topic".to_owned(), embedded::FILES_TOPIC.to_owned()];
        flags.extend(more.iter().map(|flag| (*flag).to_owned()));
        flags
    };
    let lake_url = format!("s3://{}", embedded::LAKE_BUCKET);
    let mut sink_config: loader::sink::SinkConfig = config_from_flags(
        "sink",
        &addresses(&["--lake", &lake_url, "--topic", &args.delivery.topic]),
    )?;
    sink_config.kafka = kafka.clone();
    sink_config.s3 = embedded_s3.clone();
    // One sink and one loader, on the embedded broker: no group membership to recover.
    sink_config.assignment = stage::Assignment::All;
    sink_config.files = args.files.clone();
    // One process for every stage: the open files get a smaller share of its memory.
    sink_config.files.max_buffered_bytes =
        Some(args.files.max_buffered_bytes.unwrap_or(UP_MAX_BUFFERED_BYTES));
    // Someone trying the pipeline wants to see rows in seconds, not a minute.
    sink_config.files.flush_interval = Some(args.files.flush_interval.unwrap_or(UP_FLUSH_INTERVAL));
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
            config.s3 = embedded_s3.clone();
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
            .map_or_else(|| "exposures-load".to_owned(), |c| c.group.clone()),
        s3_endpoint: lake_server.endpoint(),
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
async fn run_dev_broker(args: DevBrokerArgs) -> Result<()> {
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
async fn run_up(_: UpArgs) -> Result<()> {
    anyhow::bail!("this build has no embedded broker: rebuild with the default `embedded-broker` feature")
}

#[cfg(not(feature = "embedded-broker"))]
async fn run_dev_broker(_: DevBrokerArgs) -> Result<()> {
    anyhow::bail!("this build has no embedded broker: rebuild with the default `embedded-broker` feature")
}
