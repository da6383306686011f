//! The warehouse section: rows and freshness of `exposures`, the ledger by status,
//! quarantined files, rejected rows and the experiments' data-quality checks. Every
//! figure is decoded by type; a value that does not parse makes the section unknown
//! (exit code 2) instead of showing 0.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StatusConfig;
use crate::load::{Count, FromRow, LoadError, Row, Warehouse};
use crate::quality::{self, ExperimentQuality};

/// Quarantined files and rejected rows listed, newest first.
const LISTED: usize = 20;

#[derive(Debug, Default)]
pub struct WarehouseStatus {
    pub rows: i64,
    pub newest_exposed_at: Option<DateTime<Utc>>,
    pub ledger: Vec<LedgerByStatus>,
    /// Newest first; a file loaded since (re-announced by `reconcile
    /// --retry-quarantined`, say) is not listed.
    pub quarantined: Vec<QuarantinedFile>,
    /// Rows in `exposures_rejected`.
    pub rejected_rows: i64,
    /// The newest of them.
    pub rejected: Vec<RecentRejection>,
    /// The data-quality checks of every experiment seen in the window.
    pub experiments: Vec<ExperimentQuality>,
}

struct Totals {
    rows: i64,
    newest_exposed_at: Option<DateTime<Utc>>,
}

impl FromRow for Totals {
    const QUERY: &'static str = "status: rows and freshness";
    const COLUMNS: &'static [&'static str] = &["rows", "newest_exposed_at"];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
        Ok(Totals {
            rows: row.get("rows")?,
            newest_exposed_at: row.opt("newest_exposed_at")?,
        })
    }
}

/// Ledger files, rows loaded and rows rejected, of one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerByStatus {
    pub status: String,
    pub files: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
}

impl FromRow for LedgerByStatus {
    const QUERY: &'static str = "status: ledger by status";
    const COLUMNS: &'static [&'static str] = &["status", "files", "rows_loaded", "rows_rejected"];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
        Ok(LedgerByStatus {
            status: row.get("status")?,
            files: row.get("files")?,
            rows_loaded: row.get("rows_loaded")?,
            rows_rejected: row.get("rows_rejected")?,
        })
    }
}

/// A file the loader quarantined, with when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedFile {
    pub object_key: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

impl FromRow for QuarantinedFile {
    const QUERY: &'static str = "status: quarantined files";
    const COLUMNS: &'static [&'static str] = &["object_key", "loaded_at", "reason"];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
        Ok(QuarantinedFile {
            object_key: row.get("object_key")?,
            at: row.get("loaded_at")?,
            reason: row.opt("reason")?,
        })
    }
}

/// A row of `exposures_rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentRejection {
    pub event_id: Option<String>,
    pub object_key: Option<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

impl FromRow for RecentRejection {
    const QUERY: &'static str = "status: rejected rows";
    const COLUMNS: &'static [&'static str] = &[
        "event_id",
        "object_key",
        "kafka_partition",
        "kafka_offset",
        "rejected_at",
        "reason",
    ];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
        Ok(RecentRejection {
            event_id: row.opt("event_id")?,
            object_key: row.opt("object_key")?,
            kafka_partition: row.get("kafka_partition")?,
            kafka_offset: row.get("kafka_offset")?,
            at: row.get("rejected_at")?,
            reason: row.opt("reason")?,
        })
    }
}

pub(super) async fn warehouse_status(status_config: &StatusConfig) -> Result<WarehouseStatus, LoadError> {
    let config = &status_config.warehouse;
    let warehouse = Warehouse::connect(config, &status_config.redshift).await?;
    let schema = &config.schema;
    let totals: Totals = warehouse
        .query_one(&format!(
            "SELECT COUNT(*), MAX(exposed_at) FROM {schema}.exposures"
        ))
        .await?;
    let ledger = warehouse
        .query(&format!(
            "SELECT status, COUNT(*), COALESCE(SUM(rows_loaded), 0), COALESCE(SUM(rows_rejected), 0) \
             FROM {schema}.exposures_loads \
             GROUP BY status ORDER BY status"
        ))
        .await?;
    let Count(rejected_rows) = warehouse
        .query_one(&format!("SELECT COUNT(*) FROM {schema}.exposures_rejected"))
        .await?;
    let rejected = warehouse
        .query(&format!(
            "SELECT event_id, object_key, kafka_partition, kafka_offset, rejected_at, reason \
             FROM {schema}.exposures_rejected ORDER BY rejected_at DESC LIMIT {LISTED}"
        ))
        .await?;
    let quarantined = warehouse
        .query(&format!(
            "SELECT object_key, loaded_at, reason FROM {schema}.exposures_loads WHERE status = 'quarantined' \
             AND object_key NOT IN (SELECT object_key FROM {schema}.exposures_loads WHERE status = 'loaded') \
             ORDER BY loaded_at DESC LIMIT {LISTED}"
        ))
        .await?;
    let since = Utc::now()
        - chrono::Duration::from_std(status_config.window).unwrap_or_else(|_| chrono::Duration::days(7));
    let dialect = warehouse.dialect();
    let per_variation: Vec<quality::UsersPerVariation> = warehouse
        .query(&quality::users_per_variation_sql(dialect, schema, since))
        .await?;
    let multiple: Vec<quality::MultipleExposures> = warehouse
        .query(&quality::multiple_exposures_sql(dialect, schema, since))
        .await?;
    let weights: BTreeMap<String, Vec<f64>> = status_config.weights.iter().cloned().collect();
    Ok(WarehouseStatus {
        rows: totals.rows,
        newest_exposed_at: totals.newest_exposed_at,
        ledger,
        quarantined,
        rejected_rows,
        rejected,
        experiments: quality::evaluate(&per_variation, &multiple, &weights),
    })
}
