//! `exposures`: the command-line entry point. Parses configuration (flags, each also an
//! `EXPOSURES_*` environment variable) and calls into the stage crates; no pipeline
//! logic lives here.

mod allocator;
#[cfg(feature = "embedded-broker")]
mod embedded;
mod from_up;
mod logging;
mod metrics;
mod panics;
mod up;

use std::net::SocketAddr;

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
    Up(up::UpArgs),
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
    DevBroker(up::DevBrokerArgs),
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

fn main() -> Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let given = |command: &str| matches.subcommand_matches(command).cloned();
    let (status_given, reconcile_given) = (given("status"), given("reconcile"));
    // A command that prints an answer reports what it could not reach in that answer;
    // librdkafka's own connection errors would only bury it.
    let answers = matches!(
        cli.command,
        Command::Status(_) | Command::Reconcile(_) | Command::Ddl(_) | Command::ReloadRejected(_)
    );
    logging::init(cli.log_format, answers);
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
                    from_up::fill_in_status(&mut config, given);
                }
                let report = loader::status::gather(&config).await;
                let text = if config.json { format!("{}\n", report.to_json()) } else { report.to_string() };
                // 2: a section could not be read; 1: an experiment needs attention.
                print_and_exit(&text, report.exit_code())
            }
            Command::Reconcile(mut config) => {
                if let Some(given) = &reconcile_given {
                    from_up::fill_in_reconcile(&mut config, given)?;
                }
                let report = loader::reconcile::run(&config).await;
                let text = if config.json { format!("{}\n", report.to_json()) } else { report.to_string() };
                // 2: a part could not be read; 1: something is listed (and not repaired).
                print_and_exit(&text, report.exit_code())
            }
            Command::Up(args) => up::run_up(args).await,
            Command::DevBroker(args) => up::run_dev_broker(args).await,
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
