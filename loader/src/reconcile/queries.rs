//! What `reconcile` asks the warehouse, and the typed rows it answers: the ledger by
//! object, the table's rows within each loaded file's offset range, and rows within no
//! file's range — the same SQL on both warehouses but for literals, snapshot-tested in
//! both dialects below. A value that does not parse fails the run; it never counts as 0.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use schemas::ddl::Dialect;
use schemas::lake_layout::FileRange;
use schemas::ledger::literal;

use schemas::TableDef;

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

/// The ledger rows of the objects under `base` (the lake's data directory) in the
/// `dt=` partitions on or after `since`, grouped by object and status.
pub(super) fn ledger_groups(dialect: Dialect, schema: &str, base: &str, since: Option<NaiveDate>) -> String {
    let dt = format!("{base}dt=");
    let mut filter = format!("object_key LIKE {}", literal(dialect, &format!("{dt}%")));
    if let Some(since) = since {
        filter.push_str(&format!(
            " AND SUBSTRING(object_key, {}, 10) >= {}",
            dt.chars().count() + 1,
            literal(dialect, &since.format("%Y-%m-%d").to_string())
        ));
    }
    format!(
        "SELECT object_key, status, COUNT(*), SUM(rows_in_file), SUM(rows_loaded), SUM(rows_rejected) \
         FROM {schema}.exposures_loads WHERE {filter} GROUP BY object_key, status"
    )
}

/// Whether `table` exists in `schema` (a count: 0 or 1).
pub(super) fn table_exists(dialect: Dialect, schema: &str, table: &TableDef) -> String {
    format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
        literal(dialect, schema),
        literal(dialect, table.name)
    )
}

/// Rows of a table within one file's offset range.
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

/// Counts the rows of `table` in each of `ranges` (a literal table of ranges, joined).
pub(super) fn range_counts(schema: &str, table: &TableDef, ranges: &[&FileRange]) -> String {
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
         LEFT JOIN {schema}.{} e ON e.kafka_partition = r.p AND e.kafka_offset BETWEEN r.f AND r.l \
         GROUP BY r.p, r.f",
        ranges.join(" UNION ALL "),
        table.name
    )
}

/// Rows of a table in no file's range, in one partition.
pub(super) struct OrphanCount {
    pub partition: i32,
    pub rows: i64,
    pub min_offset: i64,
    pub max_offset: i64,
}

from_row!(
    "reconcile: rows in no file",
    OrphanCount {
        partition: get,
        rows: get,
        min_offset: get,
        max_offset: get
    }
);

/// Rows of `table` received from `received_from` on (all, if `None`) whose offsets are
/// in none of the `covered` spans (merged, per partition), by partition.
pub(super) fn orphans(
    dialect: Dialect,
    schema: &str,
    table: &TableDef,
    received_from: Option<DateTime<Utc>>,
    covered: &BTreeMap<i32, Vec<(i64, i64)>>,
) -> String {
    let window = match received_from {
        Some(from) => format!("received_at >= {}", crate::quality::timestamp(dialect, from)),
        None => "1 = 1".to_owned(),
    };
    let spans: Vec<String> = covered
        .iter()
        .flat_map(|(partition, spans)| {
            spans.iter().map(move |(first, last)| {
                format!("(kafka_partition = {partition} AND kafka_offset BETWEEN {first} AND {last})")
            })
        })
        .collect();
    let covered = if spans.is_empty() {
        "1 = 0".to_owned()
    } else {
        spans.join(" OR ")
    };
    format!(
        "SELECT kafka_partition, COUNT(*), MIN(kafka_offset), MAX(kafka_offset) FROM {schema}.{} \
         WHERE {window} AND NOT ({covered}) GROUP BY kafka_partition ORDER BY kafka_partition",
        table.name
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn range(partition: i32, first_offset: i64, last_offset: i64) -> FileRange {
        FileRange {
            topic: "exposures".into(),
            partition,
            first_offset,
            last_offset,
            rows: (last_offset - first_offset + 1) as u64,
        }
    }

    #[test]
    fn ledger_groups_snapshot_in_both_dialects() {
        let since = NaiveDate::from_ymd_opt(2026, 11, 28);
        assert_eq!(
            ledger_groups(
                Dialect::Postgres,
                "analytics",
                "o'neil\\lake/exposures/v1/",
                since
            ),
            "SELECT object_key, status, COUNT(*), SUM(rows_in_file), SUM(rows_loaded), SUM(rows_rejected) \
             FROM analytics.exposures_loads WHERE object_key LIKE E'o''neil\\\\lake/exposures/v1/dt=%' \
             AND SUBSTRING(object_key, 29, 10) >= '2026-11-28' GROUP BY object_key, status"
        );
        assert_eq!(
            ledger_groups(Dialect::Redshift, "analytics", "lake/exposures/v1/", None),
            "SELECT object_key, status, COUNT(*), SUM(rows_in_file), SUM(rows_loaded), SUM(rows_rejected) \
             FROM analytics.exposures_loads WHERE object_key LIKE 'lake/exposures/v1/dt=%' \
             GROUP BY object_key, status"
        );
    }

    #[test]
    fn range_counts_snapshot() {
        assert_eq!(
            range_counts("analytics", &schemas::EXPOSURES, &[&range(0, 0, 299), &range(3, 300, 599)]),
            "SELECT r.p, r.f, COUNT(e.kafka_offset) FROM (\
             SELECT CAST(0 AS INTEGER) AS p, CAST(0 AS BIGINT) AS f, CAST(299 AS BIGINT) AS l \
             UNION ALL SELECT 3, 300, 599) r \
             LEFT JOIN analytics.exposures e ON e.kafka_partition = r.p AND e.kafka_offset BETWEEN r.f AND r.l \
             GROUP BY r.p, r.f"
        );
    }

    #[test]
    fn orphans_snapshot_in_both_dialects() {
        let from = Utc.with_ymd_and_hms(2026, 11, 28, 1, 0, 0).single();
        let covered = BTreeMap::from([(0, vec![(0, 14), (100, 100)]), (2, vec![(5, 9)])]);
        assert_eq!(
            orphans(Dialect::Postgres, "analytics", &schemas::EXPOSURES, from, &covered),
            "SELECT kafka_partition, COUNT(*), MIN(kafka_offset), MAX(kafka_offset) FROM analytics.exposures \
             WHERE received_at >= TIMESTAMPTZ '2026-11-28 01:00:00+00' AND NOT (\
             (kafka_partition = 0 AND kafka_offset BETWEEN 0 AND 14) OR \
             (kafka_partition = 0 AND kafka_offset BETWEEN 100 AND 100) OR \
             (kafka_partition = 2 AND kafka_offset BETWEEN 5 AND 9)) \
             GROUP BY kafka_partition ORDER BY kafka_partition"
        );
        assert_eq!(
            orphans(
                Dialect::Redshift,
                "analytics",
                &schemas::tracked::EVENTS,
                from,
                &BTreeMap::new()
            ),
            "SELECT kafka_partition, COUNT(*), MIN(kafka_offset), MAX(kafka_offset) FROM analytics.events \
             WHERE received_at >= TIMESTAMP '2026-11-28 01:00:00' AND NOT (1 = 0) \
             GROUP BY kafka_partition ORDER BY kafka_partition"
        );
    }
}
