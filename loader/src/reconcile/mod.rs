//! `exposures reconcile`: the lake, the ledger and the `exposures` table compared, and
//! `--repair` for what the loader can fix by itself.
//!
//! **What is compared** (lake objects under `{prefix}/exposures/v1/`, in the `dt=`
//! partitions on or after `--since`, default the last 7 days; `--since all` for every
//! one):
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
use stage::KafkaArgs;

use crate::lake::{Lake, LakeArgs, LakeError, ListedObject};
use crate::load::{LoadError, RedshiftArgs, Warehouse, WarehouseArgs};

mod queries;
mod repair;
mod report;

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

/// A lake object compared.
#[derive(Debug, Clone)]
struct LakeObject {
    listed: ListedObject,
    parts: FileKey,
    range: Result<FileRange, String>,
    young: bool,
}

/// What the ledger holds of one object, by status.
#[derive(Debug, Clone, Default)]
struct LedgerEntry {
    loaded: u64,
    quarantined: u64,
    rows_in_file: i64,
    rows_loaded: i64,
    rows_rejected: i64,
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
    if let Err(error) = compare(config, now, &mut report).await {
        report.errors.push(error.to_string());
    }
    report
}

async fn compare(
    config: &ReconcileConfig,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let lake = config.lake.open().await?;
    let prefix = lake.key("");
    let base = lake.key(&lake_layout::data_dir());
    let file_key = |key: &str| FileKey::parse_data_key(key.strip_prefix(&prefix)?);
    let since = report.since;
    let cutoff = now - chrono::Duration::from_std(config.grace).unwrap_or(chrono::Duration::MAX);

    // The lake: keys, then each object's footer.
    let mut objects: BTreeMap<String, LakeObject> = BTreeMap::new();
    for listed in lake.list_objects(&base).await? {
        let Some(parts) = file_key(&listed.key) else {
            continue; // not a data file of this layout
        };
        if since.is_some_and(|since| parts.hour.date() < since) {
            continue;
        }
        let young = match listed.last_modified {
            Some(modified) => modified > cutoff,
            None => parts.hour.end() > cutoff,
        };
        let range = read_range(&lake, &listed.key, listed.size).await?;
        objects.insert(
            listed.key.clone(),
            LakeObject {
                listed,
                parts,
                range,
                young,
            },
        );
    }
    report.objects = objects.len();
    report.in_grace = objects.values().filter(|o| o.young).count();

    // The ledger, one row per (object, status).
    let warehouse = Warehouse::connect(&config.warehouse, &config.redshift).await?;
    let dialect = warehouse.dialect();
    let schema = &config.warehouse.schema;
    let literal = |text: &str| schemas::ledger::literal(dialect, text);
    let dt = format!("{base}dt=");
    let mut filter = format!("object_key LIKE {}", literal(&format!("{dt}%")));
    if let Some(since) = since {
        filter.push_str(&format!(
            " AND SUBSTRING(object_key, {}, 10) >= {}",
            dt.chars().count() + 1,
            literal(&since.format("%Y-%m-%d").to_string())
        ));
    }
    let mut ledger: BTreeMap<String, LedgerEntry> = BTreeMap::new();
    for group in warehouse
        .query::<queries::LedgerGroup>(&queries::ledger_groups(schema, &filter))
        .await?
    {
        match file_key(&group.object_key) {
            Some(parts) if since.is_none_or(|since| parts.hour.date() >= since) => {}
            _ => continue,
        }
        report.ledger_rows += group.ledger_rows as usize;
        let entry = ledger.entry(group.object_key).or_default();
        match group.status.as_str() {
            "loaded" => {
                entry.loaded += group.ledger_rows;
                entry.rows_in_file += group.rows_in_file;
                entry.rows_loaded += group.rows_loaded;
                entry.rows_rejected += group.rows_rejected;
            }
            _ => entry.quarantined += group.ledger_rows,
        }
    }

    // 1. Not loaded; unreadable objects.
    for (key, object) in &objects {
        let entry = ledger.get(key);
        let loaded = entry.is_some_and(|e| e.loaded > 0);
        let quarantined = entry.is_some_and(|e| e.quarantined > 0);
        if let Err(why) = &object.range {
            if !quarantined && !object.young {
                report.unreadable.push(Unreadable {
                    key: key.clone(),
                    why: why.clone(),
                });
            }
        }
        if !loaded && !object.young {
            report.not_loaded.push(NotLoaded {
                key: key.clone(),
                quarantined,
                announced: None,
            });
        }
    }

    // 2. Ledger rows whose object is gone.
    for (key, entry) in &ledger {
        if !objects.contains_key(key) {
            let status = if entry.loaded > 0 { "loaded" } else { "quarantined" };
            report.missing_from_lake.push(MissingObject {
                key: key.clone(),
                status: status.into(),
                rows_loaded: entry.rows_loaded,
            });
        }
    }

    // 3. Counts of loaded objects: ledger against the file, table against the ledger.
    let loaded: Vec<(&String, &LakeObject, &LedgerEntry, &FileRange)> = objects
        .iter()
        .filter_map(|(key, object)| {
            let entry = ledger.get(key).filter(|e| e.loaded > 0)?;
            Some((key, object, entry, object.range.as_ref().ok()?))
        })
        .collect();
    let mut table_rows: BTreeMap<(i32, i64), i64> = BTreeMap::new();
    for chunk in loaded.chunks(RANGES_PER_QUERY) {
        let ranges: Vec<&FileRange> = chunk.iter().map(|(_, _, _, range)| *range).collect();
        for count in warehouse
            .query::<queries::RangeCount>(&queries::range_counts(schema, &ranges))
            .await?
        {
            table_rows.insert((count.partition, count.first_offset), count.rows);
        }
    }
    for (key, object, entry, range) in loaded {
        let mut dead_letters = 0;
        let mut problems = Vec::new();
        if entry.rows_in_file != (range.rows * entry.loaded) as i64 {
            dead_letters = count_dead_letters(&lake, &object.parts).await?.unwrap_or(0);
            let expected = ((range.rows + dead_letters) * entry.loaded) as i64;
            if entry.rows_in_file != expected {
                problems.push(format!(
                    "the ledger says {} rows in the file, the file holds {} (+{} dead letters)",
                    entry.rows_in_file, range.rows, dead_letters
                ));
            }
        }
        let in_table = table_rows.get(&(range.partition, range.first_offset)).copied();
        match in_table {
            Some(rows) if rows < entry.rows_loaded => problems.push(format!(
                "{rows} rows of its offset range are in exposures, the ledger says {} were loaded (rows deleted?)",
                entry.rows_loaded
            )),
            Some(rows) if rows > range.rows as i64 => problems.push(format!(
                "{rows} rows of its offset range are in exposures, more than the {} the file holds",
                range.rows
            )),
            Some(_) => {}
            None => problems.push("its offset range was not counted".into()),
        }
        if !problems.is_empty() {
            report.mismatches.push(Mismatch {
                key: key.clone(),
                partition: range.partition,
                first_offset: range.first_offset,
                last_offset: range.last_offset,
                file_rows: range.rows,
                dead_letters,
                ledger_rows_in_file: entry.rows_in_file,
                ledger_rows_loaded: entry.rows_loaded,
                table_rows: in_table,
                problem: problems.join("; "),
            });
        }
    }

    // 4. Rows in no listed object's range.
    let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for range in objects.values().filter_map(|o| o.range.as_ref().ok()) {
        ranges
            .entry(range.partition)
            .or_default()
            .push((range.first_offset, range.last_offset));
    }
    let mut covered = Vec::new();
    for (partition, mut spans) in ranges {
        spans.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (first, last) in spans {
            match merged.last_mut() {
                Some(previous) if first <= previous.1.saturating_add(1) => previous.1 = previous.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        covered.extend(merged.into_iter().map(|(first, last)| {
            format!("(kafka_partition = {partition} AND kafka_offset BETWEEN {first} AND {last})")
        }));
    }
    let covered = if covered.is_empty() {
        "1 = 0".to_owned()
    } else {
        covered.join(" OR ")
    };
    let window = match since.and_then(|d| d.and_hms_opt(1, 0, 0)) {
        Some(from) => format!(
            "received_at >= {}",
            crate::quality::timestamp(dialect, Utc.from_utc_datetime(&from))
        ),
        None => "1 = 1".to_owned(),
    };
    report.rows_in_no_file = warehouse
        .query::<OrphanRows>(&queries::orphans(schema, &window, &covered))
        .await?;

    if config.repair {
        report.repaired = true;
        repair(config, &lake, &objects, report).await?;
    }
    Ok(())
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
