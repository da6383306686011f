//! The reconcile report: what was found, its exit code, and its text and JSON forms.

use std::fmt;

use chrono::NaiveDate;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NotLoaded {
    pub key: String,
    /// Whether the ledger holds it as quarantined (only retried with --retry-quarantined).
    pub quarantined: bool,
    /// After --repair: `Ok` announced, `Err` why not; `None` when not attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced: Option<Result<(), String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingObject {
    pub key: String,
    pub status: String,
    pub rows_loaded: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub key: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// Rows the object holds (Parquet metadata `exposures.rows`) and dead letters beside it.
    pub file_rows: u64,
    pub dead_letters: u64,
    pub ledger_rows_in_file: i64,
    pub ledger_rows_loaded: i64,
    /// Rows of `exposures` in the object's offset range.
    pub table_rows: Option<i64>,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanRows {
    /// The table the rows are in.
    pub table: &'static str,
    pub partition: i32,
    pub rows: i64,
    pub min_offset: i64,
    pub max_offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub key: String,
    pub why: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub lake: String,
    /// First `dt=` date compared; `None`: all.
    pub since: Option<NaiveDate>,
    /// Objects compared, and how many of them are younger than the grace period.
    pub objects: usize,
    pub in_grace: usize,
    pub ledger_rows: usize,
    pub not_loaded: Vec<NotLoaded>,
    pub missing_from_lake: Vec<MissingObject>,
    pub mismatches: Vec<Mismatch>,
    pub rows_in_no_file: Vec<OrphanRows>,
    /// Objects whose Parquet footer cannot be read and that the ledger has not quarantined.
    pub unreadable: Vec<Unreadable>,
    /// Parts that could not be read (exit code 2).
    pub errors: Vec<String>,
    pub repaired: bool,
}

impl Report {
    /// 2 when a part could not be read, 1 when something is listed (after --repair:
    /// something listed was not announced), 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        let outstanding = self.not_loaded.iter().any(|n| match &n.announced {
            Some(Ok(())) => false,
            Some(Err(_)) => true,
            // Quarantined objects are listed for information (as `exposures status` does).
            None => !n.quarantined,
        });
        if !self.errors.is_empty() {
            2
        } else if outstanding
            || !self.missing_from_lake.is_empty()
            || !self.mismatches.is_empty()
            || !self.rows_in_no_file.is_empty()
            || !self.unreadable.is_empty()
        {
            1
        } else {
            0
        }
    }

    /// The report as one JSON object (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("exit_code".into(), self.exit_code().into());
        }
        value
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self
            .since
            .map_or("all dates".to_owned(), |d| format!("dt >= {d}"));
        writeln!(
            f,
            "lake {} ({since}): {} objects ({} within the grace period, not judged); ledger: {} rows",
            self.lake, self.objects, self.in_grace, self.ledger_rows
        )?;
        for error in &self.errors {
            writeln!(f, "could not read: {error}")?;
        }
        let (quarantined, never): (Vec<&NotLoaded>, Vec<&NotLoaded>) =
            self.not_loaded.iter().partition(|n| n.quarantined);
        let announced = |n: &NotLoaded| match &n.announced {
            None => String::new(),
            Some(Ok(())) => "  → re-announced".to_owned(),
            Some(Err(why)) => format!("  → NOT re-announced: {why}"),
        };
        writeln!(f, "not loaded (no ledger row): {}", never.len())?;
        for n in &never {
            writeln!(f, "  {}{}", n.key, announced(n))?;
        }
        if !quarantined.is_empty() {
            writeln!(
                f,
                "quarantined only (see `exposures status`; retried with --repair --retry-quarantined): {}",
                quarantined.len()
            )?;
            for n in &quarantined {
                writeln!(f, "  {}{}", n.key, announced(n))?;
            }
        }
        writeln!(
            f,
            "in the ledger, missing from the lake: {}",
            self.missing_from_lake.len()
        )?;
        for m in &self.missing_from_lake {
            writeln!(f, "  {}  ({}, {} rows loaded)", m.key, m.status, m.rows_loaded)?;
        }
        writeln!(f, "count mismatches: {}", self.mismatches.len())?;
        for m in &self.mismatches {
            writeln!(
                f,
                "  {}  (partition {}, offsets {}..={})\n    {}",
                m.key, m.partition, m.first_offset, m.last_offset, m.problem
            )?;
        }
        let orphans: i64 = self.rows_in_no_file.iter().map(|o| o.rows).sum();
        writeln!(f, "rows in no known file: {orphans}")?;
        for o in &self.rows_in_no_file {
            writeln!(
                f,
                "  {} partition {}: {} rows, offsets {}..={}",
                o.table, o.partition, o.rows, o.min_offset, o.max_offset
            )?;
        }
        if !self.unreadable.is_empty() {
            writeln!(f, "unreadable objects: {}", self.unreadable.len())?;
            for u in &self.unreadable {
                writeln!(f, "  {}: {}", u.key, u.why)?;
            }
        }
        let verdict = match self.exit_code() {
            0 if self.nothing_judged() => {
                "consistent, but nothing was compared: no lake object older than --grace and no \
                 ledger row in this window; if the pipeline has run, check --lake (the sink's \
                 --lake, prefix included) and --since"
            }
            0 => "consistent",
            1 => "needs attention",
            _ => "incomplete: a part could not be read",
        };
        writeln!(f, "{verdict}")
    }
}

impl Report {
    /// No object was old enough to judge and the ledger had nothing in the window: a
    /// "consistent" that says nothing, most often a --lake that is not the sink's.
    fn nothing_judged(&self) -> bool {
        self.objects == self.in_grace && self.ledger_rows == 0
    }
}

#[cfg(test)]
mod verdict_tests {
    use super::Report;

    #[test]
    fn a_report_that_judged_nothing_says_so() {
        let empty = Report {
            lake: "s3://lake/wrong-prefix".into(),
            ..Report::default()
        };
        assert_eq!(empty.exit_code(), 0);
        assert!(empty.to_string().contains("nothing was compared"), "{empty}");
        let judged = Report {
            objects: 3,
            ledger_rows: 3,
            ..empty
        };
        assert!(judged.to_string().ends_with("consistent\n"), "{judged}");
    }
}
