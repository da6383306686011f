//! What `reconcile` asks the warehouse, and the typed rows it answers: the ledger by
//! object, the table's rows within each loaded file's offset range, and rows within no
//! file's range. A value that does not parse fails the run; it never counts as 0.

use schemas::lake_layout::FileRange;

use super::report::OrphanRows;
use crate::load::from_row;

/// The ledger of one object, for one status.
pub(super) struct LedgerGroup {
    pub object_key: String,
    pub status: String,
    pub ledger_rows: u64,
    pub rows_in_file: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
}

from_row!(
    "reconcile: ledger by object",
    LedgerGroup {
        object_key: get,
        status: get,
        ledger_rows: get,
        rows_in_file: get,
        rows_loaded: get,
        rows_rejected: get
    }
);

/// The ledger rows whose object key matches `filter`, grouped by object and status.
pub(super) fn ledger_groups(schema: &str, filter: &str) -> String {
    format!(
        "SELECT object_key, status, COUNT(*), SUM(rows_in_file), SUM(rows_loaded), SUM(rows_rejected) \
         FROM {schema}.exposures_loads WHERE {filter} GROUP BY object_key, status"
    )
}

/// Rows of `exposures` within one file's offset range.
pub(super) struct RangeCount {
    pub partition: i32,
    pub first_offset: i64,
    pub rows: i64,
}

from_row!(
    "reconcile: rows per file range",
    RangeCount {
        partition: get,
        first_offset: get,
        rows: get
    }
);

/// Counts the rows of `exposures` in each of `ranges` (a literal table of ranges, joined).
pub(super) fn range_counts(schema: &str, ranges: &[&FileRange]) -> String {
    let ranges: Vec<String> = ranges
        .iter()
        .enumerate()
        .map(|(i, range)| {
            if i == 0 {
                format!(
                    "SELECT CAST({} AS INTEGER) AS p, CAST({} AS BIGINT) AS f, CAST({} AS BIGINT) AS l",
                    range.partition, range.first_offset, range.last_offset
                )
            } else {
                format!(
                    "SELECT {}, {}, {}",
                    range.partition, range.first_offset, range.last_offset
                )
            }
        })
        .collect();
    format!(
        "SELECT r.p, r.f, COUNT(e.kafka_offset) FROM ({}) r \
         LEFT JOIN {schema}.exposures e ON e.kafka_partition = r.p AND e.kafka_offset BETWEEN r.f AND r.l \
         GROUP BY r.p, r.f",
        ranges.join(" UNION ALL ")
    )
}

from_row!(
    "reconcile: rows in no file",
    OrphanRows {
        partition: get,
        rows: get,
        min_offset: get,
        max_offset: get
    }
);

/// Rows received in `window` whose offsets are not `covered` by any file, by partition.
pub(super) fn orphans(schema: &str, window: &str, covered: &str) -> String {
    format!(
        "SELECT kafka_partition, COUNT(*), MIN(kafka_offset), MAX(kafka_offset) FROM {schema}.exposures \
         WHERE {window} AND NOT ({covered}) GROUP BY kafka_partition ORDER BY kafka_partition"
    )
}
