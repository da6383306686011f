//! `exposures status`: where the pipeline stands, for a human — events waiting for the
//! sink (consumer lag on the exposures topic), files waiting for the loader (lag on the
//! files topic), and the warehouse (rows, freshness, ledger, quarantined files with
//! their reasons). Each section is gathered on its own, so one unreachable part does
//! not hide the others, and each needs only its own flags: `--brokers` (and
//! `--kafka-property`) for the lag sections, `--warehouse` for the rest.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use stage::{ClientRole, KafkaArgs};

use crate::load::{LoadError, RedshiftArgs, Warehouse, WarehouseArgs};
use crate::quality::{self, ExperimentQuality};

/// Quarantined files listed, newest first.
const QUARANTINE_LISTED: usize = 20;

/// What `exposures status` needs: Kafka for the lag sections; the warehouse, when
/// given, for the rest.
#[derive(Debug, Clone, Args)]
pub struct StatusConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic of exposures, consumed by the sink.
    #[arg(long, env = "EXPOSURES_TOPIC", default_value = "exposures")]
    pub topic: String,

    /// Consumer group of the sinks.
    #[arg(long, env = "EXPOSURES_SINK_GROUP", default_value = "exposures-sink")]
    pub sink_group: String,

    /// Topic the sink announces files on, consumed by the loader.
    #[arg(long, env = "EXPOSURES_FILES_TOPIC", default_value = "exposures.files")]
    pub files_topic: String,

    /// Consumer group of the loaders.
    #[arg(
        long = "load-group",
        alias = "group",
        env = "EXPOSURES_LOAD_GROUP",
        default_value = "exposures-load"
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

/// Where a running `exposures up` can be reached, written to
/// `DATA_DIR/`[`UpEndpoints::FILE`] when it starts and removed when it stops.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpEndpoints {
    /// `http://ADDRESS` of the HTTP API.
    pub api: String,
    pub brokers: String,
    pub topic: String,
    pub files_topic: String,
    pub sink_group: String,
    pub load_group: String,
    pub s3_endpoint: String,
    /// The warehouse URL without its password (see [`UpEndpoints::without_password`]).
    pub warehouse: Option<String>,
    pub schema: String,
}

impl UpEndpoints {
    pub const FILE: &'static str = "endpoints.json";

    /// `url` without its password: no secret is written to disk. `status` then connects
    /// as the same user with the password from `--warehouse`/`EXPOSURES_WAREHOUSE` if
    /// given, or with none (trust or peer authentication next to `up`).
    pub fn without_password(url: &str) -> String {
        match url::Url::parse(url) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(None);
                parsed.to_string()
            }
            _ => url.to_owned(),
        }
    }

    /// Writes the file atomically (temporary file, then rename), readable by its owner
    /// only: it says where the broker and the warehouse are.
    pub fn write(&self, data_dir: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let path = data_dir.join(Self::FILE);
        let temporary = data_dir.join(format!("{}.tmp", Self::FILE));
        // A leftover temporary file keeps its mode when reopened: start afresh.
        let _ = std::fs::remove_file(&temporary);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    }

    /// The endpoints recorded in `data_dir`, if an `up` recorded any.
    pub fn read(data_dir: &std::path::Path) -> Option<UpEndpoints> {
        let text = std::fs::read(data_dir.join(Self::FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[derive(Debug)]
pub struct PartitionLag {
    pub partition: i32,
    pub low: i64,
    pub end: i64,
    pub committed: Option<i64>,
}

impl PartitionLag {
    /// Records not yet committed by the group (all retained ones if it never committed).
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

#[derive(Debug)]
pub struct GroupLag {
    pub topic: String,
    pub group: String,
    pub partitions: Vec<PartitionLag>,
}

impl GroupLag {
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }
}

#[derive(Debug, Default)]
pub struct WarehouseStatus {
    pub rows: i64,
    pub newest_exposed_at: Option<DateTime<Utc>>,
    /// Ledger: files, rows loaded and rows rejected, by status.
    pub ledger: Vec<(String, i64, i64, i64)>,
    /// (object key, when, reason), newest first; a file loaded since (re-announced by
    /// `reconcile --retry-quarantined`, say) is not listed.
    pub quarantined: Vec<(String, String, String)>,
    /// Rows in `exposures_rejected`.
    pub rejected_rows: i64,
    /// (event id, object key, Kafka partition/offset, when, reason), newest first.
    pub rejected: Vec<[String; 5]>,
    /// The data-quality checks of every experiment seen in the window.
    pub experiments: Vec<ExperimentQuality>,
}

/// An ingest's traffic between two reads of its counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IngestTraffic {
    pub url: String,
    pub sample_seconds: f64,
    /// Events answered 200 per second over the sample.
    pub accepted_per_second: f64,
    /// Of the events in the sample: refused as invalid (4xx), refused because they could
    /// not be made durable (503).
    pub invalid_share: f64,
    pub unavailable_share: f64,
    /// Since the process started.
    pub accepted_total: f64,
    pub invalid_total: f64,
    pub unavailable_total: f64,
}

impl IngestTraffic {
    /// Events are being lost at the SDKs (503).
    pub fn needs_attention(&self) -> bool {
        self.unavailable_share > 0.0
    }
}

/// How long `--ingest-url` is sampled.
const INGEST_SAMPLE: Duration = Duration::from_secs(2);

/// The ingest's event counters (`ingest::metrics`; the tests hold the two equal).
pub const INGEST_EVENTS_ACCEPTED: &str = "exposures_ingest_events_accepted_total";
pub const INGEST_EVENTS_REJECTED: &str = "exposures_ingest_events_rejected_total";

/// (accepted, invalid, unavailable) events so far, from a Prometheus text exposition.
fn ingest_counters(text: &str) -> (f64, f64, f64) {
    let (mut accepted, mut invalid, mut unavailable) = (0.0, 0.0, 0.0);
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or_default();
        if name == INGEST_EVENTS_ACCEPTED {
            accepted += value;
        } else if name == INGEST_EVENTS_REJECTED {
            if series.contains("reason=\"unavailable\"") {
                unavailable += value;
            } else {
                invalid += value;
            }
        }
    }
    (accepted, invalid, unavailable)
}

#[cfg(test)]
mod tests {
    use super::UpEndpoints;

    #[test]
    fn endpoints_keep_the_warehouse_url_without_its_password() {
        assert_eq!(
            UpEndpoints::without_password(
                "postgres://loader:s3cr%40t@db.internal:5432/analytics?sslmode=require"
            ),
            "postgres://loader@db.internal:5432/analytics?sslmode=require"
        );
        let plain = "postgres://postgres@127.0.0.1:5432/postgres";
        assert_eq!(UpEndpoints::without_password(plain), plain);
    }

    #[cfg(unix)]
    #[test]
    fn the_endpoints_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoints = UpEndpoints {
            api: "http://127.0.0.1:8080".into(),
            brokers: "127.0.0.1:9092".into(),
            topic: "exposures".into(),
            files_topic: "exposures.files".into(),
            sink_group: "exposures-sink".into(),
            load_group: "exposures-load".into(),
            s3_endpoint: "http://127.0.0.1:9000".into(),
            warehouse: None,
            schema: "public".into(),
        };
        // Twice: the second write replaces the first, mode included.
        endpoints.write(dir.path()).expect("write");
        endpoints.write(dir.path()).expect("write again");
        let mode = std::fs::metadata(dir.path().join(UpEndpoints::FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(UpEndpoints::read(dir.path()), Some(endpoints));
    }

    #[test]
    fn ingest_counters_add_up_series_and_tell_503_from_4xx() {
        let text = "# TYPE exposures_ingest_events_accepted_total counter\n\
            exposures_ingest_events_accepted_total{path=\"kafka\"} 90\n\
            exposures_ingest_events_accepted_total{path=\"spool\"} 10\n\
            exposures_ingest_events_rejected_total{reason=\"unavailable\"} 3\n\
            exposures_ingest_events_rejected_total{reason=\"missing_field\"} 2\n\
            exposures_ingest_events_rejected_total{reason=\"nul_character\"} 1\n\
            exposures_ingest_requests_total{route=\"/exposure\",status=\"200\"} 100\n";
        assert_eq!(super::ingest_counters(text), (100.0, 3.0, 3.0));
    }
}

async fn ingest_traffic(url: &str) -> Result<IngestTraffic, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let metrics_url = format!("{}/metrics", url.trim_end_matches('/'));
    let read = || async {
        let response = client
            .get(&metrics_url)
            .send()
            .await
            .map_err(|e| format!("{metrics_url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{metrics_url} answered {}", response.status()));
        }
        let text = response.text().await.map_err(|e| format!("{metrics_url}: {e}"))?;
        Ok::<_, String>(ingest_counters(&text))
    };
    let started = std::time::Instant::now();
    let before = read().await?;
    tokio::time::sleep(INGEST_SAMPLE).await; // the sampling interval of a rate
    let after = read().await?;
    let seconds = started.elapsed().as_secs_f64();
    let delta = |a: f64, b: f64| (b - a).max(0.0);
    let (accepted, invalid, unavailable) = (
        delta(before.0, after.0),
        delta(before.1, after.1),
        delta(before.2, after.2),
    );
    let events = (accepted + invalid + unavailable).max(1.0);
    Ok(IngestTraffic {
        url: url.to_owned(),
        sample_seconds: seconds,
        accepted_per_second: accepted / seconds,
        invalid_share: invalid / events,
        unavailable_share: unavailable / events,
        accepted_total: after.0,
        invalid_total: after.1,
        unavailable_total: after.2,
    })
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

fn group_lag(kafka: &KafkaArgs, topic: &str, group: &str, timeout: Duration) -> Result<GroupLag, String> {
    let brokers = &kafka.brokers;
    let consumer: BaseConsumer = kafka
        .create(
            ClientRole::Admin {
                group,
                client_id: "exposures-status",
            },
            &[],
        )
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("brokers {brokers} did not answer: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("topic {topic} does not exist on {brokers}"));
    }
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .map_err(|e| format!("committed offsets of group {group}: {e}"))?;
    let mut lags = Vec::new();
    for partition in partitions {
        let (low, end) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| format!("offsets of {topic}/{partition}: {e}"))?;
        let committed = committed
            .find_partition(topic, partition)
            .and_then(|entry| match entry.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
        lags.push(PartitionLag {
            partition,
            low,
            end,
            committed,
        });
    }
    Ok(GroupLag {
        topic: topic.to_owned(),
        group: group.to_owned(),
        partitions: lags,
    })
}

async fn warehouse_status(status_config: &StatusConfig) -> Result<WarehouseStatus, LoadError> {
    let config = &status_config.warehouse;
    let warehouse = Warehouse::connect(config, &status_config.redshift).await?;
    let schema = &config.schema;
    let number = |field: Option<&Option<String>>| -> i64 {
        field
            .and_then(|f| f.as_deref())
            .and_then(|f| f.parse().ok())
            .unwrap_or(0)
    };
    let mut status = WarehouseStatus::default();
    let totals = warehouse
        .query_text(&format!(
            "SELECT COUNT(*), MAX(exposed_at) FROM {schema}.exposures"
        ))
        .await?;
    if let Some(row) = totals.first() {
        status.rows = number(row.first());
        status.newest_exposed_at = row
            .get(1)
            .and_then(|f| f.as_deref())
            .and_then(crate::load::redshift::sql::parse_timestamp);
    }
    for row in warehouse
        .query_text(&format!(
            "SELECT status, COUNT(*), COALESCE(SUM(rows_loaded), 0), COALESCE(SUM(rows_rejected), 0) \
             FROM {schema}.exposures_loads \
             GROUP BY status ORDER BY status"
        ))
        .await?
    {
        let name = row.first().cloned().flatten().unwrap_or_default();
        status
            .ledger
            .push((name, number(row.get(1)), number(row.get(2)), number(row.get(3))));
    }
    if let Some(row) = warehouse
        .query_text(&format!("SELECT COUNT(*) FROM {schema}.exposures_rejected"))
        .await?
        .first()
    {
        status.rejected_rows = number(row.first());
    }
    for row in warehouse
        .query_text(&format!(
            "SELECT event_id, object_key, kafka_partition || '/' || kafka_offset, rejected_at, reason \
             FROM {schema}.exposures_rejected ORDER BY rejected_at DESC LIMIT {QUARANTINE_LISTED}"
        ))
        .await?
    {
        let mut fields = row.into_iter().map(Option::unwrap_or_default);
        status
            .rejected
            .push(std::array::from_fn(|_| fields.next().unwrap_or_default()));
    }
    for row in warehouse
        .query_text(&format!(
            "SELECT object_key, loaded_at, reason FROM {schema}.exposures_loads WHERE status = 'quarantined' \
             AND object_key NOT IN (SELECT object_key FROM {schema}.exposures_loads WHERE status = 'loaded') \
             ORDER BY loaded_at DESC LIMIT {QUARANTINE_LISTED}"
        ))
        .await?
    {
        let mut fields = row.into_iter().map(Option::unwrap_or_default);
        let (key, when, reason) = (fields.next(), fields.next(), fields.next());
        status.quarantined.push((
            key.unwrap_or_default(),
            when.unwrap_or_default(),
            reason.unwrap_or_default(),
        ));
    }
    let since = Utc::now()
        - chrono::Duration::from_std(status_config.window).unwrap_or_else(|_| chrono::Duration::days(7));
    let dialect = warehouse.dialect();
    let per_variation: Vec<(String, String, i64)> = warehouse
        .query_text(&quality::users_per_variation_sql(dialect, schema, since))
        .await?
        .into_iter()
        .map(|row| {
            let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            (text(0), text(1), number(row.get(2)))
        })
        .collect();
    let multiple: Vec<(String, i64, i64)> = warehouse
        .query_text(&quality::multiple_exposures_sql(dialect, schema, since))
        .await?
        .into_iter()
        .map(|row| {
            let experiment = row.first().cloned().flatten().unwrap_or_default();
            (experiment, number(row.get(1)), number(row.get(2)))
        })
        .collect();
    let weights: BTreeMap<String, Vec<f64>> = status_config.weights.iter().cloned().collect();
    status.experiments = quality::evaluate(&per_variation, &multiple, &weights);
    Ok(status)
}

fn write_lag(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    unit: &str,
    lag: &Result<GroupLag, String>,
) -> fmt::Result {
    match lag {
        Ok(lag) => {
            writeln!(
                f,
                "{title}: {} {unit} waiting (topic {}, group {})",
                lag.total(),
                lag.topic,
                lag.group
            )?;
            for p in &lag.partitions {
                let committed = p.committed.map_or("none".to_owned(), |c| c.to_string());
                writeln!(
                    f,
                    "  partition {:>3}  end {:>12}  committed {:>12}  lag {:>10}",
                    p.partition,
                    p.end,
                    committed,
                    p.lag()
                )?;
            }
            Ok(())
        }
        Err(error) => writeln!(f, "{title}: unknown — {error}"),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ingest {
            None => {}
            Some(Err(error)) => writeln!(f, "ingest: unknown — {error}")?,
            Some(Ok(t)) => writeln!(
                f,
                "ingest {}: {:.1} events/s accepted over {:.0} s; {:.2} % invalid (4xx), {:.2} % refused as unavailable (503){}; \
                 since start {:.0} accepted, {:.0} invalid, {:.0} unavailable",
                t.url,
                t.accepted_per_second,
                t.sample_seconds,
                t.invalid_share * 100.0,
                t.unavailable_share * 100.0,
                if t.needs_attention() { " — EVENTS LOST AT THE SDKS" } else { "" },
                t.accepted_total,
                t.invalid_total,
                t.unavailable_total
            )?,
        }
        write_lag(f, "sink", "events", &self.sink)?;
        write_lag(f, "load", "files", &self.load)?;
        match &self.warehouse {
            None => writeln!(
                f,
                "warehouse: not shown (add --warehouse to see rows, freshness and quarantined files)"
            ),
            Some(Err(error)) => writeln!(f, "warehouse: unknown — {error}"),
            Some(Ok(w)) => {
                let freshness = match w.newest_exposed_at {
                    Some(newest) => {
                        let age = (Utc::now() - newest).num_seconds().max(0) as u64;
                        format!(
                            "newest exposed_at {} ({} ago)",
                            newest.format("%Y-%m-%d %H:%M:%S UTC"),
                            humantime::format_duration(Duration::from_secs(age))
                        )
                    }
                    None => "no exposures yet".to_owned(),
                };
                writeln!(
                    f,
                    "warehouse: {} rows in {}.exposures, {freshness}",
                    w.rows, self.schema
                )?;
                for (status, files, rows, rejected) in &w.ledger {
                    let rejected = if *rejected > 0 {
                        format!(", {rejected} rows rejected")
                    } else {
                        String::new()
                    };
                    writeln!(f, "  files {status}: {files} ({rows} rows{rejected})")?;
                }
                if !w.quarantined.is_empty() {
                    writeln!(
                        f,
                        "  quarantined files (never retried automatically; the ledger exposures_loads keeps them):"
                    )?;
                    for (key, when, reason) in &w.quarantined {
                        writeln!(f, "    {key}  at {when}\n      {reason}")?;
                    }
                }
                if w.experiments.is_empty() {
                    writeln!(f, "  experiments: none exposed in the window")?;
                }
                for e in &w.experiments {
                    let flags: Vec<&str> = [
                        (e.srm, "SAMPLE RATIO MISMATCH"),
                        (e.multiple_exposures, "MULTIPLE EXPOSURES"),
                    ]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, flag)| *flag)
                    .collect();
                    let verdict = if flags.is_empty() {
                        "ok".to_owned()
                    } else {
                        flags.join(", ")
                    };
                    writeln!(f, "  experiment {}: {verdict}", e.experiment_id)?;
                    let users: Vec<String> = e
                        .variations
                        .iter()
                        .map(|v| {
                            format!(
                                "{}: {} ({:.1} % expected)",
                                v.variation_id,
                                v.users,
                                v.expected_share * 100.0
                            )
                        })
                        .collect();
                    writeln!(
                        f,
                        "    users per variation {}; SRM p = {:.3e} (flag below {}); in several variations: {} of {} ({:.2} %, flag above {} %)",
                        users.join(", "),
                        e.p_value,
                        quality::SRM_P_VALUE,
                        e.users_in_several_variations,
                        e.users,
                        e.multiple_exposure_share * 100.0,
                        quality::MULTIPLE_EXPOSURE_SHARE * 100.0
                    )?;
                }
                if w.rejected_rows > 0 {
                    writeln!(
                        f,
                        "  rejected rows: {} (in exposures_rejected; fix the cause, then `exposures reload-rejected`):",
                        w.rejected_rows
                    )?;
                    for [event_id, key, position, when, reason] in &w.rejected {
                        writeln!(
                            f,
                            "    event {event_id}  {key} @ {position}  at {when}\n      {reason}"
                        )?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl Report {
    /// What scripts act on: 2 when a section could not be read, 1 when something needs
    /// attention (an experiment's sample-ratio mismatch or multiple exposures, an ingest
    /// answering 503), 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        let unknown = self.sink.is_err()
            || self.load.is_err()
            || matches!(self.warehouse, Some(Err(_)))
            || matches!(self.ingest, Some(Err(_)));
        let attention = matches!(&self.warehouse, Some(Ok(w)) if w.experiments.iter().any(ExperimentQuality::needs_attention))
            || matches!(&self.ingest, Some(Ok(traffic)) if traffic.needs_attention());
        if unknown {
            2
        } else if attention {
            1
        } else {
            0
        }
    }

    /// The report as one JSON object (`--json`): each section is either its figures or
    /// `{"error": "…"}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let lag = |lag: &Result<GroupLag, String>| match lag {
            Ok(lag) => json!({
                "topic": lag.topic,
                "group": lag.group,
                "waiting": lag.total(),
                "partitions": lag.partitions.iter().map(|p| json!({
                    "partition": p.partition, "end": p.end, "committed": p.committed, "lag": p.lag(),
                })).collect::<Vec<_>>(),
            }),
            Err(error) => json!({ "error": error }),
        };
        let warehouse = match &self.warehouse {
            None => serde_json::Value::Null,
            Some(Err(error)) => json!({ "error": error }),
            Some(Ok(w)) => json!({
                "schema": self.schema,
                "rows": w.rows,
                "newest_exposed_at": w.newest_exposed_at,
                "ledger": w.ledger.iter().map(|(status, files, rows, rejected)| json!({
                    "status": status, "files": files, "rows_loaded": rows, "rows_rejected": rejected,
                })).collect::<Vec<_>>(),
                "quarantined": w.quarantined.iter().map(|(key, when, reason)| json!({
                    "object_key": key, "at": when, "reason": reason,
                })).collect::<Vec<_>>(),
                "rejected_rows": w.rejected_rows,
                "experiments": w.experiments,
            }),
        };
        let ingest = match &self.ingest {
            None => serde_json::Value::Null,
            Some(Err(error)) => json!({ "error": error }),
            Some(Ok(traffic)) => json!(traffic),
        };
        json!({
            "ingest": ingest,
            "sink": lag(&self.sink),
            "load": lag(&self.load),
            "warehouse": warehouse,
            "exit_code": self.exit_code(),
        })
    }
}
