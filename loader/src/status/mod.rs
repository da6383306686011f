//! `exposures status`: where the pipeline stands, for a human — events waiting for the
//! sink (consumer lag on the exposures topic), files waiting for the loader (lag on the
//! files topic), and the warehouse (rows, freshness, ledger, quarantined files with
//! their reasons). Each section is gathered on its own, so one unreachable part does
//! not hide the others, and each needs only its own flags: `--brokers` (and
//! `--kafka-property`) for the lag sections, `--warehouse` for the rest.

mod endpoints;
mod ingest;
mod lag;
mod render;
mod warehouse;

use std::time::Duration;

use clap::Args;
use stage::KafkaArgs;

use crate::load::{RedshiftArgs, WarehouseArgs};
use ingest::ingest_traffic;
use lag::group_lag;
use warehouse::warehouse_status;

pub use endpoints::UpEndpoints;
pub use ingest::{IngestTraffic, INGEST_EVENTS_ACCEPTED, INGEST_EVENTS_REJECTED};
pub use lag::{GroupLag, PartitionLag};
pub use warehouse::{LedgerByStatus, QuarantinedFile, RecentRejection, WarehouseStatus};

/// What `exposures status` needs: Kafka for the lag sections; the warehouse, when
/// given, for the rest.
#[derive(Debug, Clone, Args)]
pub struct StatusConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic of exposures, consumed by the sink.
    #[arg(long, env = "EXPOSURES_TOPIC", default_value = stage::topology::EXPOSURES_TOPIC)]
    pub topic: String,

    /// Consumer group of the sinks.
    #[arg(long, env = "EXPOSURES_SINK_GROUP", default_value = stage::topology::SINK_GROUP)]
    pub sink_group: String,

    /// Topic the sink announces files on, consumed by the loader.
    #[arg(long, env = "EXPOSURES_FILES_TOPIC", default_value = stage::topology::FILES_TOPIC)]
    pub files_topic: String,

    /// Consumer group of the loaders.
    #[arg(
        long = "load-group",
        alias = "group",
        env = "EXPOSURES_LOAD_GROUP",
        default_value = stage::topology::LOAD_GROUP
    )]
    pub load_group: String,

    /// Also show the warehouse (rows, freshness, ledger, quarantined files) when
    /// --warehouse is given.
    #[command(flatten)]
    pub warehouse: WarehouseArgs,

    #[command(flatten)]
    pub redshift: RedshiftArgs,

    /// How long to wait for the broker's answers.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Data quality (with --warehouse): look at exposures of the last WINDOW.
    #[arg(long, env = "EXPOSURES_STATUS_WINDOW", default_value = "7d", value_parser = humantime::parse_duration)]
    pub window: Duration,

    /// Data quality: an experiment's variation weights, in variation order, as
    /// EXPERIMENT=W1,W2,… (repeatable); experiments not named are expected equal.
    #[arg(long = "weights", value_name = "EXPERIMENT=W1,W2,…", value_parser = crate::quality::parse_weights)]
    pub weights: Vec<(String, Vec<f64>)>,

    /// Also show the ingest's traffic (events/s, 4xx and 503 shares) from its /metrics,
    /// e.g. http://ingest-1:8080 (plain HTTP), sampled over a few seconds.
    #[arg(long, env = "EXPOSURES_INGEST_URL")]
    pub ingest_url: Option<String>,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// The data directory of a running `exposures up`: the addresses it recorded there
    /// (UpEndpoints) are used for every one not given as a flag, so `exposures status`
    /// needs none next to `up`.
    #[arg(long, env = "EXPOSURES_DATA_DIR", default_value = "./exposures-data")]
    pub data_dir: std::path::PathBuf,
}

#[derive(Debug)]
pub struct Report {
    /// `None` when no `--ingest-url` was given.
    pub ingest: Option<Result<IngestTraffic, String>>,
    pub sink: Result<GroupLag, String>,
    pub load: Result<GroupLag, String>,
    /// `None` when no warehouse was given.
    pub warehouse: Option<Result<WarehouseStatus, String>>,
    pub schema: String,
}

/// Gathers the report.
pub async fn gather(config: &StatusConfig) -> Report {
    let lag = |topic: String, group: String| {
        let kafka = config.kafka.clone();
        let timeout = config.timeout;
        async move {
            tokio::task::spawn_blocking(move || group_lag(&kafka, &topic, &group, timeout))
                .await
                .map_err(|e| e.to_string())?
        }
    };
    // Every section at once: a part that does not answer costs one `--timeout` in all,
    // not one per section.
    let warehouse = async {
        match config.warehouse.warehouse {
            Some(_) => Some(warehouse_status(config).await.map_err(|e| e.to_string())),
            None => None,
        }
    };
    let ingest = async {
        match &config.ingest_url {
            Some(url) => Some(ingest_traffic(url).await),
            None => None,
        }
    };
    let (sink, load, warehouse, ingest) = tokio::join!(
        lag(config.topic.clone(), config.sink_group.clone()),
        lag(config.files_topic.clone(), config.load_group.clone()),
        warehouse,
        ingest
    );
    Report {
        ingest,
        sink,
        load,
        warehouse,
        schema: config.warehouse.schema.clone(),
    }
}
