//! The warehouse a loader, `status` and `reconcile` talk to: which one a `--warehouse`
//! URL names ([`WarehouseArgs`], checked before anything starts), and [`Warehouse`], the
//! one dispatch over the PostgreSQL and Redshift backends. Reads go through
//! [`Warehouse::query`], which decodes each row into its query's struct ([`super::rows`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use schemas::lake_layout::FileRecord;

use super::loader_lake::LoaderLake;
use super::rows::{self, FromRow, Row};
use super::{postgres, redshift, BatchReport, FileOutcome, LoadError};
use crate::lake::AwsOptions;

/// Which warehouse and schema: shared by `load`, `status` and `up`.
#[derive(Debug, Clone, Args)]
pub struct WarehouseArgs {
    /// The warehouse. Redshift through the Data API:
    /// redshift://ENDPOINT/DATABASE[?secret_arn=ARN] with ENDPOINT as the console shows it
    /// (or redshift:///DATABASE?workgroup=NAME|cluster=ID&region=R; a provisioned cluster
    /// also needs db_user=NAME or secret_arn=ARN). PostgreSQL:
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE — put a password in the environment
    /// (EXPOSURES_WAREHOUSE), not on the command line.
    #[arg(long, env = "EXPOSURES_WAREHOUSE", hide_env_values = true)]
    pub warehouse: Option<String>,

    /// Warehouse schema of the exposures table, ledger and views (created if missing).
    #[arg(long, env = "EXPOSURES_SCHEMA", default_value = "public")]
    pub schema: String,
}

impl WarehouseArgs {
    /// The warehouse URL, or an error that says how to give one.
    pub fn url(&self) -> Result<&str, LoadError> {
        self.warehouse.as_deref().ok_or(LoadError::NoWarehouse)
    }

    /// Checks the URL's form without connecting, so that a command refuses a typo before
    /// it starts anything: a PostgreSQL URL must parse, a Redshift URL must name its
    /// cluster or workgroup, anything else is refused.
    pub fn check(&self) -> Result<(), LoadError> {
        let url = self.url()?;
        match WarehouseKind::of(url)? {
            WarehouseKind::Postgres => url
                .parse::<tokio_postgres::Config>()
                .map(drop)
                .map_err(LoadError::BadPostgresUrl),
            WarehouseKind::Redshift => redshift::target::RedshiftTarget::parse(url).map(drop),
        }
    }
}

/// Which warehouse a `--warehouse` URL names, by its scheme.
enum WarehouseKind {
    Postgres,
    Redshift,
}

impl WarehouseKind {
    fn of(url: &str) -> Result<WarehouseKind, LoadError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(WarehouseKind::Postgres)
        } else if url.starts_with("redshift://") {
            Ok(WarehouseKind::Redshift)
        } else {
            Err(LoadError::UnsupportedWarehouse(url.to_owned()))
        }
    }
}

/// How the Data API is reached: shared by `load` and `status`.
#[derive(Debug, Clone, Args)]
pub struct RedshiftArgs {
    /// Redshift: a statement running longer is cancelled (and a load batch retried).
    #[arg(long, env = "EXPOSURES_STATEMENT_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub statement_timeout: Duration,

    /// Redshift Data API endpoint override (a VPC endpoint, or a test emulator).
    #[arg(long, env = "EXPOSURES_REDSHIFT_ENDPOINT")]
    pub redshift_endpoint: Option<String>,

    /// Static credentials for the Data API instead of the AWS chain (tests).
    #[arg(skip)]
    pub redshift_static_credentials: Option<(String, String)>,
}

/// `SELECT MAX(exposed_at) AS newest …`: NULL when the table is empty.
struct Newest(Option<DateTime<Utc>>);

impl FromRow for Newest {
    const QUERY: &'static str = "the newest exposed_at";
    const COLUMNS: &'static [&'static str] = &["newest"];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
        Ok(Newest(row.opt("newest")?))
    }
}

/// The warehouse a loader writes to, by URL scheme.
pub(crate) enum Warehouse {
    Postgres(postgres::Postgres),
    Redshift(redshift::Redshift),
}

impl Warehouse {
    /// Connects (PostgreSQL) or sets up the client (Redshift); does not create objects.
    pub(crate) async fn connect(
        warehouse: &WarehouseArgs,
        redshift: &RedshiftArgs,
    ) -> Result<Warehouse, LoadError> {
        let url = warehouse.url()?;
        match WarehouseKind::of(url)? {
            WarehouseKind::Postgres => Ok(Warehouse::Postgres(
                postgres::Postgres::connect(url, &warehouse.schema).await?,
            )),
            WarehouseKind::Redshift => {
                let options = redshift::RedshiftOptions {
                    statement_timeout: redshift.statement_timeout,
                    api: AwsOptions {
                        endpoint: redshift.redshift_endpoint.clone(),
                        region: None,
                        static_credentials: redshift.redshift_static_credentials.clone(),
                    },
                };
                Ok(Warehouse::Redshift(
                    redshift::Redshift::connect(url, &warehouse.schema, options).await?,
                ))
            }
        }
    }

    pub(super) async fn ensure_objects(&self) -> Result<(), LoadError> {
        match self {
            Warehouse::Postgres(warehouse) => warehouse.ensure_objects().await,
            Warehouse::Redshift(warehouse) => warehouse.ensure_objects().await,
        }
    }

    /// The SQL dialect this warehouse speaks.
    pub(crate) fn dialect(&self) -> schemas::ddl::Dialect {
        match self {
            Warehouse::Postgres(_) => schemas::ddl::Dialect::Postgres,
            Warehouse::Redshift(_) => schemas::ddl::Dialect::Redshift,
        }
    }

    /// Runs a read-only query, each row decoded as `T` (a value that does not parse is an
    /// error, never a default).
    pub(crate) async fn query<T: FromRow>(&self, sql: &str) -> Result<Vec<T>, LoadError> {
        rows::decode(self.query_text(sql).await?)
    }

    /// Runs a read-only query that answers exactly one row (an aggregate).
    pub(crate) async fn query_one<T: FromRow>(&self, sql: &str) -> Result<T, LoadError> {
        rows::decode_one(self.query_text(sql).await?)
    }

    /// Runs a read-only query; every field as text.
    async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        match self {
            Warehouse::Postgres(warehouse) => warehouse.query_text(sql).await,
            Warehouse::Redshift(warehouse) => warehouse.query_text(sql).await,
        }
    }

    /// The newest `exposed_at` in `exposures` (one read at start, for the freshness
    /// gauge).
    pub(super) async fn newest_exposed_at(&self, schema: &str) -> Result<Option<DateTime<Utc>>, LoadError> {
        let Newest(newest) = self
            .query_one(&format!(
                "SELECT MAX(exposed_at) AS newest FROM {schema}.exposures"
            ))
            .await?;
        Ok(newest)
    }

    /// Whether the connection is gone and must be made again before the next batch.
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Warehouse::Postgres(warehouse) => warehouse.is_closed(),
            Warehouse::Redshift(_) => false, // stateless HTTP calls
        }
    }

    pub(super) async fn load_batch(
        &mut self,
        files: &[FileRecord],
        lakes: &mut LoaderLake,
        batch_id: &str,
        copy: &redshift::CopyOptions,
    ) -> Result<BatchReport, LoadError> {
        // Records naming another lake are set aside before anything else looks at the
        // batch: one reusing a real file's key must not make the real file look seen.
        let mut admitted = Vec::new();
        let mut foreign = Vec::new();
        for file in files {
            match lakes.admit(file) {
                Ok(()) => admitted.push(file.clone()),
                Err(refusal) => foreign.push((file, refusal.to_string())),
            }
        }
        let mut report = match self {
            Warehouse::Postgres(warehouse) => warehouse.load_batch(&admitted, lakes, batch_id).await?,
            Warehouse::Redshift(warehouse) => warehouse.load_batch(&admitted, lakes, batch_id, copy).await?,
        };
        for (file, reason) in foreign {
            tracing::error!(key = %file.key, lake = %file.lake, %reason, "a file record names another lake; quarantined unread");
            match self {
                Warehouse::Postgres(warehouse) => warehouse.quarantine(file, batch_id, &reason).await?,
                Warehouse::Redshift(warehouse) => warehouse.quarantine(file, batch_id, &reason).await?,
            }
            report
                .outcomes
                .push((file.key.clone(), FileOutcome::Quarantined { reason }));
        }
        Ok(report)
    }
}
