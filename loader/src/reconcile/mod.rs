//! `exposures reconcile`: the lake, the ledger and the `exposures` table compared, and
//! `--repair` for what the loader can fix by itself.
//!
//! **What is compared**, for each table (`exposures`, `feature_usage`, `events`) on its
//! own: its lake objects under `{prefix}/{table}/v1/`, in the `dt=` partitions on or
//! after `--since` (default the last 7 days; `--since all` for every one), its ledger
//! rows and its rows:
//!
//! 1. *not loaded*: objects with no ledger row at all (never announced, an announcement
//!    lost, or a ledger row deleted). Objects whose only ledger rows are `quarantined`
//!    are listed apart (informational, as `exposures status` shows them) and retried only
//!    with `--retry-quarantined`.
//! 2. *missing from the lake*: ledger rows whose object is gone.
//! 3. *count mismatches*, for loaded objects: the ledger's `rows_in_file` against the
//!    object's own Parquet metadata (`exposures.rows`, plus the lines of its dead-letter
//!    sidecar), and the rows of `exposures` in the object's offset range
//!    (`kafka_partition`, `kafka_offset` between `exposures.first_offset` and
//!    `exposures.last_offset`) against the ledger: at least `rows_loaded` (what this
//!    object's loads inserted — fewer means rows were deleted) and at most the object's
//!    rows (more cannot come from it). More than `rows_loaded` is consistent: a ledger row
//!    re-recorded after its rows were already in the table says `rows_loaded = 0`, the
//!    rows counting as duplicates (`rows_in_file = rows_loaded + rows_rejected +
//!    duplicates`).
//! 4. *rows in no known file*: rows of `exposures` whose (`kafka_partition`,
//!    `kafka_offset`) falls in no listed object's range, among rows received from an
//!    hour after `--since` on (the hour keeps rows of objects just before the window out).
//!
//! Only footers are read (a ranged GET of the last 64 KiB), and the warehouse answers
//! counts grouped by object, partition or offset range: one query for the ledger, one
//! per 300 objects for the ranges, one for the rows outside every range — the same SQL
//! on PostgreSQL and Redshift.
//!
//! **Repair.** `--repair` announces every object of list 1 on the files topic as the sink
//! would, with a [`FileRecord`] built from the object itself: size and etag from
//! HeadObject, topic, partition, offsets and rows from its Parquet metadata, the hour
//! from its key, and its dead-letter sidecar `_rejected/…ndjson` if there is one. The
//! running loader loads it; its ledger skips an object already loaded and its unique
//! `event_id`s keep rows that are already in the table from being inserted twice.
//!
//! **Racing the pipeline.** An object the sink has written but the loader not yet loaded
//! (announced in the current batch interval) has no ledger row yet: objects modified
//! less than `--grace` (default 10 min) ago are not listed as not loaded, only counted.
//! A repair racing the loader is harmless (a second announcement of a file is skipped by
//! the ledger), so running `--repair` twice in a row may announce twice; once the loader
//! has loaded them, a further run announces nothing.
//!
//! Exit codes, as `exposures status`: 0 consistent; 1 something listed (after
//! `--repair`, anything listed that was not announced); 2 a part could not be read.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use clap::Args;
use parquet::file::metadata::ParquetMetaDataReader;
use schemas::lake_layout::{self, FileKey, FileRange};
use schemas::{TableDef, TABLES};
use stage::KafkaArgs;

use crate::lake::{Lake, LakeArgs, LakeError};
use crate::load::{LoadError, RedshiftArgs, Warehouse, WarehouseArgs};

mod compare;
mod queries;
mod repair;
mod report;

use compare::{LakeObject, Observed};
use repair::{count_dead_letters, repair};
pub use report::{Mismatch, MissingObject, NotLoaded, OrphanRows, Report, Unreadable};

/// Bytes read from the end of an object for its footer (re-read whole if larger).
const FOOTER_GUESS: u64 = 64 * 1024;
/// Offset ranges per counting query (keeps the SQL well under the Data API's limit).
const RANGES_PER_QUERY: usize = 300;
/// How long an announcement may take before it counts as failed.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Without `--lake` or `--warehouse`, they come from a running `up` (`--data-dir`).
#[derive(Debug, Clone, Args)]
#[command(mut_arg("lake", |arg| arg.required(false).default_value("").hide_default_value(true)))]
pub struct ReconcileConfig {
    /// Kafka, for --repair (announcements on the files topic).
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic the sink announces files on (and --repair re-announces on).
    #[arg(long, env = "EXPOSURES_FILES_TOPIC", default_value = stage::topology::FILES_TOPIC)]
    pub files_topic: String,

    #[command(flatten)]
    pub lake: LakeArgs,

    #[command(flatten)]
    pub warehouse: WarehouseArgs,

    #[command(flatten)]
    pub redshift: RedshiftArgs,

    /// Compare the dt= partitions on or after this: a date (2026-11-18), a duration
    /// back from now (7d, 36h), or `all`.
    #[arg(long, default_value = "7d", value_parser = parse_since)]
    pub since: Since,

    /// Objects modified less than this long ago are not listed as not loaded (the
    /// loader may not have had its batch interval yet).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub grace: Duration,

    /// Announce every object not loaded on the files topic, for the running loader.
    #[arg(long)]
    pub repair: bool,

    /// With --repair: also announce objects the loader quarantined (once their cause
    /// is fixed).
    #[arg(long, requires = "repair")]
    pub retry_quarantined: bool,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Data directory of a running `exposures up`: the lake, warehouse and brokers not
    /// given are taken from the endpoints it recorded there.
    #[arg(long, env = "EXPOSURES_DATA_DIR", default_value = "./exposures-data")]
    pub data_dir: std::path::PathBuf,
}

/// Which `dt=` partitions are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    All,
    Date(NaiveDate),
    Ago(Duration),
}

impl Since {
    /// The first date compared, or `None` for all.
    pub fn date(self, now: DateTime<Utc>) -> Option<NaiveDate> {
        match self {
            Since::All => None,
            Since::Date(date) => Some(date),
            Since::Ago(ago) => {
                Some((now - chrono::Duration::from_std(ago).unwrap_or(chrono::Duration::MAX)).date_naive())
            }
        }
    }
}

/// `all`, `YYYY-MM-DD` or a duration (`7d`).
pub fn parse_since(text: &str) -> Result<Since, String> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(Since::All);
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Since::Date(date));
    }
    humantime::parse_duration(text)
        .map(Since::Ago)
        .map_err(|_| format!("'{text}' is neither `all`, a date YYYY-MM-DD nor a duration like 7d"))
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("lake: {0}")]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Warehouse(#[from] LoadError),
    #[error("object {key}: {why}")]
    Object { key: String, why: String },
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// Reads the footer of object `key`: `Ok(Err(why))` when it is not a readable
/// exposures Parquet file, `Err` when the lake could not be read.
async fn read_range(lake: &Lake, key: &str, size: u64) -> Result<Result<FileRange, String>, LakeError> {
    let mut tail = lake.get_tail(key, size, FOOTER_GUESS).await?;
    let footer = |tail: &[u8]| -> Result<usize, String> {
        let n = tail.len();
        if n < 12 || &tail[n - 4..] != b"PAR1" {
            return Err("not a Parquet file (no PAR1 footer)".into());
        }
        let mut length = [0u8; 4];
        length.copy_from_slice(&tail[n - 8..n - 4]);
        Ok(u32::from_le_bytes(length) as usize)
    };
    let length = match footer(&tail) {
        Ok(length) => length,
        Err(why) => return Ok(Err(why)),
    };
    if length + 8 > tail.len() {
        if (tail.len() as u64) < FOOTER_GUESS {
            return Ok(Err("Parquet footer longer than the object".into()));
        }
        tail = lake.get_tail(key, size, length as u64 + 8).await?;
        if length + 8 > tail.len() {
            return Ok(Err("Parquet footer longer than the object".into()));
        }
    }
    let end = tail.len() - 8;
    let metadata = match ParquetMetaDataReader::decode_metadata(&tail[end - length..end]) {
        Ok(metadata) => metadata,
        Err(error) => return Ok(Err(format!("unreadable Parquet footer: {error}"))),
    };
    let values: BTreeMap<&str, &str> = metadata
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|kv| Some((kv.key.as_str(), kv.value.as_deref()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(FileRange::from_metadata(|name| values.get(name).copied()).map_err(|e| e.to_string()))
}

/// Compares, and with `--repair` announces what was not loaded.
pub async fn run(config: &ReconcileConfig) -> Report {
    let now = Utc::now();
    let since = config.since.date(now);
    let mut report = Report {
        lake: config.lake.url.clone(),
        since,
        ..Report::default()
    };
    if let Err(error) = gather_and_compare(config, now, &mut report).await {
        report.errors.push(error.to_string());
    }
    report
}

async fn gather_and_compare(
    config: &ReconcileConfig,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let lake = config.lake.open().await?;
    let warehouse = Warehouse::connect(&config.warehouse, &config.redshift).await?;
    // Each table is compared with its own files: its lake directory, its rows.
    for table in TABLES {
        let crate::load::Count(exists) = warehouse
            .query_one(&queries::table_exists(
                warehouse.dialect(),
                &config.warehouse.schema,
                table,
            ))
            .await?;
        if exists == 0 && table != &schemas::EXPOSURES {
            // The tracking plugin's table, not made by the loader (yet): nothing of it to
            // compare, unless the lake holds its files.
            let files = lake.list(&lake.key(&lake_layout::data_dir_of(table))).await?;
            if !files.is_empty() {
                report.errors.push(format!(
                    "{}.{} does not exist, and the lake holds {} of its files: the loader could not make it \
                     (its log says why)",
                    config.warehouse.schema,
                    table.name,
                    files.len()
                ));
            }
            continue;
        }
        let observed = gather(config, now, report.since, &lake, &warehouse, table).await?;
        report.objects += observed.objects.len();
        report.in_grace += observed.objects.values().filter(|o| o.young).count();
        report.ledger_rows += observed
            .ledger
            .values()
            .map(|e| (e.loaded + e.quarantined) as usize)
            .sum::<usize>();

        let findings = observed.compare();
        report.not_loaded.extend(findings.not_loaded);
        report.unreadable.extend(findings.unreadable);
        report.missing_from_lake.extend(findings.missing_from_lake);
        report.mismatches.extend(findings.mismatches);

        // 4. Rows in no listed object's range: rows received from an hour after --since on.
        let received_from = report
            .since
            .and_then(|d| d.and_hms_opt(1, 0, 0))
            .map(|from| Utc.from_utc_datetime(&from));
        let orphans = queries::orphans(
            warehouse.dialect(),
            &config.warehouse.schema,
            table,
            received_from,
            &observed.covered_spans(),
        );
        let orphans = warehouse.query::<queries::OrphanCount>(&orphans).await?;
        report
            .rows_in_no_file
            .extend(orphans.into_iter().map(|o| OrphanRows {
                table: table.name,
                partition: o.partition,
                rows: o.rows,
                min_offset: o.min_offset,
                max_offset: o.max_offset,
            }));

        if config.repair {
            report.repaired = true;
            repair(config, &lake, &observed.objects, report).await?;
        }
    }
    Ok(())
}

/// Reads what [`Observed::compare`] compares for `table`: its lake objects in the window
/// and their footers, the ledger of that window by object, the table's rows in each
/// loaded object's range, and the dead letters of the objects whose counts need them.
async fn gather(
    config: &ReconcileConfig,
    now: DateTime<Utc>,
    since: Option<NaiveDate>,
    lake: &Lake,
    warehouse: &Warehouse,
    table: &'static TableDef,
) -> Result<Observed, ReconcileError> {
    let prefix = lake.key("");
    let base = lake.key(&lake_layout::data_dir_of(table));
    let file_key = |key: &str| FileKey::parse_data_key(key.strip_prefix(&prefix)?);
    let in_window = |parts: &FileKey| since.is_none_or(|since| parts.hour.date() >= since);
    let cutoff = now - chrono::Duration::from_std(config.grace).unwrap_or(chrono::Duration::MAX);
    let mut observed = Observed::default();

    for listed in lake.list_objects(&base).await? {
        let Some(parts) = file_key(&listed.key).filter(in_window) else {
            continue; // not a data file of this layout, or before the window
        };
        let young = match listed.last_modified {
            Some(modified) => modified > cutoff,
            None => parts.hour.end() > cutoff,
        };
        let range = read_range(lake, &listed.key, listed.size).await?;
        let object = LakeObject {
            listed,
            parts,
            range,
            young,
        };
        observed.objects.insert(object.listed.key.clone(), object);
    }

    let schema = &config.warehouse.schema;
    let ledger_sql = queries::ledger_groups(warehouse.dialect(), schema, &base, since);
    for group in warehouse.query::<queries::LedgerGroup>(&ledger_sql).await? {
        if file_key(&group.object_key).is_some_and(|parts| in_window(&parts)) {
            observed
                .ledger
                .entry(group.object_key.clone())
                .or_default()
                .add(&group);
        }
    }

    let mut table_rows = BTreeMap::new();
    let loaded: Vec<&FileRange> = observed.loaded().map(|(_, _, _, range)| range).collect();
    for chunk in loaded.chunks(RANGES_PER_QUERY) {
        for count in warehouse
            .query::<queries::RangeCount>(&queries::range_counts(schema, table, chunk))
            .await?
        {
            table_rows.insert((count.partition, count.first_offset), count.rows);
        }
    }
    observed.table_rows = table_rows;

    let mut dead_letters = BTreeMap::new();
    for (key, object) in observed.wanting_dead_letters() {
        let lines = count_dead_letters(lake, &object.parts).await?.unwrap_or(0);
        dead_letters.insert(key.clone(), lines);
    }
    observed.dead_letters = dead_letters;
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_all_a_date_or_a_duration() {
        assert_eq!(parse_since("all"), Ok(Since::All));
        assert_eq!(
            parse_since("2026-11-18"),
            Ok(Since::Date(NaiveDate::from_ymd_opt(2026, 11, 18).expect("date")))
        );
        assert_eq!(parse_since("7d"), Ok(Since::Ago(Duration::from_secs(7 * 86_400))));
        assert!(parse_since("soon").is_err());
    }
}
