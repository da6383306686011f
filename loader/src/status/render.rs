//! The report for a human (`Display`) and for scripts (`--json`, the exit code).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{GroupLag, Report};
use crate::quality::{self, ExperimentQuality};

/// How times are shown.
const TIME: &str = "%Y-%m-%d %H:%M:%S UTC";

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
                let newest = freshness("exposed_at", w.newest_exposed_at, "no exposures yet");
                writeln!(
                    f,
                    "warehouse: {} rows in {}.exposures, {newest}",
                    w.rows, self.schema
                )?;
                for t in &w.tracked {
                    match t.rows {
                        Some(rows) => {
                            let newest = freshness("received_at", t.newest_received_at, "none yet");
                            writeln!(f, "  {}.{}: {rows} rows, {newest}", self.schema, t.table)?;
                        }
                        None => writeln!(
                            f,
                            "  {}.{}: not readable (the loader makes it at start; its log says why it could not)",
                            self.schema, t.table
                        )?,
                    }
                }
                for l in &w.ledger {
                    let rejected = if l.rows_rejected > 0 {
                        format!(", {} rows rejected", l.rows_rejected)
                    } else {
                        String::new()
                    };
                    writeln!(
                        f,
                        "  files {}: {} ({} rows{rejected})",
                        l.status, l.files, l.rows_loaded
                    )?;
                }
                if !w.quarantined.is_empty() {
                    writeln!(
                        f,
                        "  quarantined files (never retried automatically; the ledger exposures_loads keeps them):"
                    )?;
                    for q in &w.quarantined {
                        writeln!(
                            f,
                            "    {}  at {}\n      {}",
                            q.object_key,
                            q.at.format(TIME),
                            q.reason.as_deref().unwrap_or_default()
                        )?;
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
                    for r in &w.rejected {
                        writeln!(
                            f,
                            "    event {}  {} @ {}/{}  at {}\n      {}",
                            r.event_id.as_deref().unwrap_or("(none)"),
                            r.object_key.as_deref().unwrap_or_default(),
                            r.kafka_partition,
                            r.kafka_offset,
                            r.at.format(TIME),
                            r.reason.as_deref().unwrap_or_default()
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
                "ledger": w.ledger,
                "quarantined": w.quarantined,
                "rejected_rows": w.rejected_rows,
                "experiments": w.experiments,
                "tracked": w.tracked,
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

/// `newest COLUMN <time> (<age> ago)`, or `none` when the table has no row.
fn freshness(column: &str, newest: Option<DateTime<Utc>>, none: &str) -> String {
    match newest {
        Some(newest) => {
            let age = (Utc::now() - newest).num_seconds().max(0) as u64;
            format!(
                "newest {column} {} ({} ago)",
                newest.format(TIME),
                humantime::format_duration(Duration::from_secs(age))
            )
        }
        None => none.to_owned(),
    }
}
