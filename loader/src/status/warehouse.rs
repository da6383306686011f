//! The warehouse section: rows and freshness of `exposures` (and of the tracking
//! plugin's `feature_usage` and `events`), the ledger by status,
//! quarantined files, rejected rows and the experiments' data-quality checks. Every
//! figure is decoded by type; a value that does not parse makes the section unknown
//! (exit code 2) instead of showing 0.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StatusConfig;
use crate::load::{from_row, Count, LoadError, Warehouse};
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
    /// Rows and the newest `received_at` of the tracking plugin's tables.
    pub tracked: Vec<TrackedTotals>,
}

/// Rows and freshness of one table of the tracking plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackedTotals {
    pub table: &'static str,
    /// `None`: the table could not be read (not made: see the loader's log).
    pub rows: Option<i64>,
    pub newest_received_at: Option<DateTime<Utc>>,
}

/// A table's rows and its newest row time.
struct Totals {
    rows: i64,
    newest: Option<DateTime<Utc>>,
}

from_row!(
    "status: rows and freshness",
    Totals {
        rows: get,
        newest: opt
    }
);

/// Ledger files, rows loaded and rows rejected, of one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerByStatus {
    pub status: String,
    pub files: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
}

from_row!(
    "status: ledger by status",
    LedgerByStatus {
        status: get,
        files: get,
        rows_loaded: get,
        rows_rejected: get
    }
);

/// A file the loader quarantined, with when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedFile {
    pub object_key: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

from_row!(
    "status: quarantined files",
    QuarantinedFile {
        object_key: get,
        at: get,
        reason: opt
    }
);

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

from_row!(
    "status: rejected rows",
    RecentRejection {
        event_id: opt,
        object_key: opt,
        kafka_partition: get,
        kafka_offset: get,
        at: get,
        reason: opt
    }
);

pub(super) async fn warehouse_status(status_config: &StatusConfig) -> Result<WarehouseStatus, LoadError> {
    let config = &status_config.warehouse;
    let warehouse = Warehouse::connect(config, &status_config.redshift).await?;
    let schema = &config.schema;
    let totals: Totals = warehouse.query_one(&sql::totals(schema)).await?;
    let ledger = warehouse.query(&sql::ledger_by_status(schema)).await?;
    let Count(rejected_rows) = warehouse.query_one(&sql::rejected_count(schema)).await?;
    let rejected = warehouse.query(&sql::recent_rejections(schema)).await?;
    let quarantined = warehouse.query(&sql::quarantined_files(schema)).await?;
    let since = Utc::now()
        - chrono::Duration::from_std(status_config.window).unwrap_or_else(|_| chrono::Duration::days(7));
    let dialect = warehouse.dialect();
    let per_variation: Vec<quality::UsersPerVariation> = warehouse
        .query(&quality::users_per_variation_sql(dialect, schema, since))
        .await?;
    let multiple: Vec<quality::MultipleExposures> = warehouse
        .query(&quality::multiple_exposures_sql(dialect, schema, since))
        .await?;
    let mut tracked = Vec::new();
    for table in schemas::tracked::TRACKED_TABLES {
        // A table the loader could not make (yet) is shown as missing, not as an error of
        // the whole section: exposures are what most warehouses load.
        let totals = warehouse
            .query_one::<Totals>(&sql::tracked_totals(schema, table))
            .await
            .ok();
        tracked.push(TrackedTotals {
            table: table.name,
            rows: totals.as_ref().map(|totals| totals.rows),
            newest_received_at: totals.and_then(|totals| totals.newest),
        });
    }
    let weights: BTreeMap<String, Vec<f64>> = status_config.weights.iter().cloned().collect();
    Ok(WarehouseStatus {
        rows: totals.rows,
        newest_exposed_at: totals.newest,
        ledger,
        quarantined,
        rejected_rows,
        rejected,
        experiments: quality::evaluate(&per_variation, &multiple, &weights),
        tracked,
    })
}

/// The section's SQL, the same on both warehouses (the quality checks' is in
/// [`crate::quality`]).
mod sql {
    use super::LISTED;

    pub fn totals(schema: &str) -> String {
        format!("SELECT COUNT(*), MAX(exposed_at) FROM {schema}.exposures")
    }

    pub fn tracked_totals(schema: &str, table: &schemas::TableDef) -> String {
        format!(
            "SELECT COUNT(*), MAX({}) FROM {schema}.{}",
            table.time_column, table.name
        )
    }

    pub fn ledger_by_status(schema: &str) -> String {
        format!(
            "SELECT status, COUNT(*), COALESCE(SUM(rows_loaded), 0), COALESCE(SUM(rows_rejected), 0) \
             FROM {schema}.exposures_loads GROUP BY status ORDER BY status"
        )
    }

    pub fn rejected_count(schema: &str) -> String {
        format!("SELECT COUNT(*) FROM {schema}.exposures_rejected")
    }

    pub fn recent_rejections(schema: &str) -> String {
        format!(
            "SELECT event_id, object_key, kafka_partition, kafka_offset, rejected_at, reason \
             FROM {schema}.exposures_rejected ORDER BY rejected_at DESC LIMIT {LISTED}"
        )
    }

    /// Quarantined files not loaded since, newest first.
    pub fn quarantined_files(schema: &str) -> String {
        format!(
            "SELECT object_key, loaded_at, reason FROM {schema}.exposures_loads WHERE status = 'quarantined' \
             AND object_key NOT IN (SELECT object_key FROM {schema}.exposures_loads WHERE status = 'loaded') \
             ORDER BY loaded_at DESC LIMIT {LISTED}"
        )
    }

    #[cfg(test)]
    #[test]
    fn status_sql_snapshot() {
        let statements = [
            totals("s"),
            ledger_by_status("s"),
            rejected_count("s"),
            recent_rejections("s"),
            quarantined_files("s"),
            tracked_totals("s", &schemas::tracked::EVENTS),
        ];
        assert_eq!(
            statements,
            [
                "SELECT COUNT(*), MAX(exposed_at) FROM s.exposures",
                "SELECT status, COUNT(*), COALESCE(SUM(rows_loaded), 0), COALESCE(SUM(rows_rejected), 0) \
                 FROM s.exposures_loads GROUP BY status ORDER BY status",
                "SELECT COUNT(*) FROM s.exposures_rejected",
                "SELECT event_id, object_key, kafka_partition, kafka_offset, rejected_at, reason \
                 FROM s.exposures_rejected ORDER BY rejected_at DESC LIMIT 20",
                "SELECT object_key, loaded_at, reason FROM s.exposures_loads WHERE status = 'quarantined' \
                 AND object_key NOT IN (SELECT object_key FROM s.exposures_loads WHERE status = 'loaded') \
                 ORDER BY loaded_at DESC LIMIT 20",
                "SELECT COUNT(*), MAX(received_at) FROM s.events",
            ]
        );
    }
}
