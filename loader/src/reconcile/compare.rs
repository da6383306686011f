//! The comparison itself: a pure function from what was read — the lake's objects with
//! their footers, the ledger by object, the table's rows per file range, dead letters —
//! to lists 1 to 3 of the [module doc](super). Reading is `gather`'s job; list 4 (rows in
//! no file) is the warehouse's own answer to the spans [`Observed::covered_spans`] gives.

use std::collections::BTreeMap;

use schemas::lake_layout::{FileKey, FileRange};

use super::queries::LedgerGroup;
use super::report::{Mismatch, MissingObject, NotLoaded, Unreadable};
use crate::lake::ListedObject;

/// A lake object compared.
#[derive(Debug, Clone)]
pub(super) struct LakeObject {
    pub listed: ListedObject,
    pub parts: FileKey,
    /// Its Parquet metadata's row range, or why the footer could not be read.
    pub range: Result<FileRange, String>,
    /// Modified within `--grace`: the loader may not have had its chance yet.
    pub young: bool,
}

/// What the ledger holds of one object, summed by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct LedgerEntry {
    pub loaded: u64,
    pub quarantined: u64,
    pub rows_in_file: i64,
    pub rows_loaded: i64,
    pub rows_rejected: i64,
}

impl LedgerEntry {
    /// Adds one (object, status) group of the ledger.
    pub fn add(&mut self, group: &LedgerGroup) {
        if group.status == "loaded" {
            self.loaded += group.ledger_rows;
            self.rows_in_file += group.rows_in_file;
            self.rows_loaded += group.rows_loaded;
            self.rows_rejected += group.rows_rejected;
        } else {
            self.quarantined += group.ledger_rows;
        }
    }

    fn is_loaded(&self) -> bool {
        self.loaded > 0
    }

    /// The rows the ledger should say are in the file: the file's own and its dead
    /// letters, once per ledger row that loaded it.
    fn expected_rows_in_file(&self, range: &FileRange, dead_letters: u64) -> i64 {
        ((range.rows + dead_letters) * self.loaded) as i64
    }
}

/// Everything read, keyed by object key.
#[derive(Debug, Default)]
pub(super) struct Observed {
    pub objects: BTreeMap<String, LakeObject>,
    pub ledger: BTreeMap<String, LedgerEntry>,
    /// Rows of `exposures` in each loaded object's offset range, by (partition, first
    /// offset).
    pub table_rows: BTreeMap<(i32, i64), i64>,
    /// Lines of the dead-letter file of the objects [`Observed::wanting_dead_letters`]
    /// names (none: 0).
    pub dead_letters: BTreeMap<String, u64>,
}

/// Lists 1 to 3.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub not_loaded: Vec<NotLoaded>,
    pub unreadable: Vec<Unreadable>,
    pub missing_from_lake: Vec<MissingObject>,
    pub mismatches: Vec<Mismatch>,
}

impl Observed {
    /// The loaded objects with a readable range: those whose counts list 3 compares.
    pub fn loaded(&self) -> impl Iterator<Item = (&String, &LakeObject, &LedgerEntry, &FileRange)> {
        self.objects.iter().filter_map(|(key, object)| {
            let entry = self.ledger.get(key).filter(|e| e.is_loaded())?;
            Some((key, object, entry, object.range.as_ref().ok()?))
        })
    }

    /// Loaded objects whose ledger counts other rows than the file holds: only their
    /// dead letters can make up the difference, so only theirs are read.
    pub fn wanting_dead_letters(&self) -> impl Iterator<Item = (&String, &LakeObject)> {
        self.loaded()
            .filter(|(_, _, entry, range)| entry.rows_in_file != entry.expected_rows_in_file(range, 0))
            .map(|(key, object, _, _)| (key, object))
    }

    /// The offset spans of every readable object, merged where they touch, per
    /// partition.
    pub fn covered_spans(&self) -> BTreeMap<i32, Vec<(i64, i64)>> {
        let mut spans: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
        for range in self.objects.values().filter_map(|o| o.range.as_ref().ok()) {
            spans
                .entry(range.partition)
                .or_default()
                .push((range.first_offset, range.last_offset));
        }
        for partition_spans in spans.values_mut() {
            partition_spans.sort_unstable();
            let mut merged: Vec<(i64, i64)> = Vec::with_capacity(partition_spans.len());
            for &(first, last) in partition_spans.iter() {
                match merged.last_mut() {
                    Some(previous) if first <= previous.1.saturating_add(1) => {
                        previous.1 = previous.1.max(last)
                    }
                    _ => merged.push((first, last)),
                }
            }
            *partition_spans = merged;
        }
        spans
    }

    /// Lists 1 to 3: objects not loaded (and unreadable ones), ledger rows whose
    /// object is gone, and loaded objects whose counts disagree.
    pub fn compare(&self) -> Findings {
        let mut findings = Findings::default();
        for (key, object) in &self.objects {
            let entry = self.ledger.get(key);
            let loaded = entry.is_some_and(LedgerEntry::is_loaded);
            let quarantined = entry.is_some_and(|e| e.quarantined > 0);
            if let Err(why) = &object.range {
                if !quarantined && !object.young {
                    findings.unreadable.push(Unreadable {
                        key: key.clone(),
                        why: why.clone(),
                    });
                }
            }
            if !loaded && !object.young {
                findings.not_loaded.push(NotLoaded {
                    key: key.clone(),
                    quarantined,
                    announced: None,
                });
            }
        }
        for (key, entry) in &self.ledger {
            if !self.objects.contains_key(key) {
                let status = if entry.is_loaded() {
                    "loaded"
                } else {
                    "quarantined"
                };
                findings.missing_from_lake.push(MissingObject {
                    key: key.clone(),
                    status: status.into(),
                    rows_loaded: entry.rows_loaded,
                });
            }
        }
        for (key, _, entry, range) in self.loaded() {
            if let Some(mismatch) = self.mismatch(key, entry, range) {
                findings.mismatches.push(mismatch);
            }
        }
        findings
    }

    /// Ledger against the file, table against the ledger, for one loaded object.
    fn mismatch(&self, key: &str, entry: &LedgerEntry, range: &FileRange) -> Option<Mismatch> {
        let dead_letters = self.dead_letters.get(key).copied().unwrap_or(0);
        let mut problems = Vec::new();
        if entry.rows_in_file != entry.expected_rows_in_file(range, dead_letters) {
            problems.push(format!(
                "the ledger says {} rows in the file, the file holds {} (+{} dead letters)",
                entry.rows_in_file, range.rows, dead_letters
            ));
        }
        let in_table = self
            .table_rows
            .get(&(range.partition, range.first_offset))
            .copied();
        // The table the object's key names (its directory), for the message.
        let table = self
            .objects
            .get(key)
            .map_or("exposures", |object| object.parts.table.name);
        match in_table {
            Some(rows) if rows < entry.rows_loaded => problems.push(format!(
                "{rows} rows of its offset range are in {table}, the ledger says {} were loaded (rows deleted?)",
                entry.rows_loaded
            )),
            Some(rows) if rows > range.rows as i64 => problems.push(format!(
                "{rows} rows of its offset range are in {table}, more than the {} the file holds",
                range.rows
            )),
            Some(_) => {}
            None => problems.push("its offset range was not counted".into()),
        }
        if problems.is_empty() {
            return None;
        }
        Some(Mismatch {
            key: key.to_owned(),
            partition: range.partition,
            first_offset: range.first_offset,
            last_offset: range.last_offset,
            file_rows: range.rows,
            dead_letters,
            ledger_rows_in_file: entry.rows_in_file,
            ledger_rows_loaded: entry.rows_loaded,
            table_rows: in_table,
            problem: problems.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use schemas::lake_layout::Hour;

    use super::*;

    const HOUR_MS: i64 = 1_764_000_000_000;

    fn object(first_offset: i64, rows: u64, young: bool) -> (String, LakeObject) {
        let parts = FileKey {
            table: &schemas::EXPOSURES,
            hour: Hour::of_millis(HOUR_MS),
            partition: 0,
            first_offset,
        };
        let key = format!("lake/{}", parts.data_key());
        let listed = ListedObject {
            key: key.clone(),
            size: 1_000,
            last_modified: None,
        };
        let range = FileRange {
            topic: "exposures".into(),
            partition: 0,
            first_offset,
            last_offset: first_offset + rows as i64 - 1,
            rows,
        };
        let object = LakeObject {
            listed,
            parts,
            range: Ok(range),
            young,
        };
        (key, object)
    }

    fn loaded(rows: i64, rejected: i64) -> LedgerEntry {
        LedgerEntry {
            loaded: 1,
            quarantined: 0,
            rows_in_file: rows + rejected,
            rows_loaded: rows,
            rows_rejected: rejected,
        }
    }

    #[test]
    fn an_object_loaded_once_with_its_rows_in_the_table_is_consistent() {
        let (key, file) = object(0, 100, false);
        let observed = Observed {
            objects: BTreeMap::from([(key.clone(), file)]),
            ledger: BTreeMap::from([(key, loaded(100, 0))]),
            table_rows: BTreeMap::from([((0, 0), 100)]),
            dead_letters: BTreeMap::new(),
        };
        let findings = observed.compare();
        assert!(findings.not_loaded.is_empty(), "{findings:?}");
        assert!(findings.mismatches.is_empty(), "{findings:?}");
        assert_eq!(observed.wanting_dead_letters().count(), 0);
    }

    #[test]
    fn dead_letters_make_up_the_ledger_count_and_are_read_only_when_needed() {
        let (key, file) = object(0, 98, false);
        let mut observed = Observed {
            objects: BTreeMap::from([(key.clone(), file)]),
            ledger: BTreeMap::from([(key.clone(), loaded(98, 2))]),
            table_rows: BTreeMap::from([((0, 0), 98)]),
            dead_letters: BTreeMap::new(),
        };
        let wanting: Vec<&String> = observed.wanting_dead_letters().map(|(key, _)| key).collect();
        assert_eq!(wanting, [&key]);
        assert_eq!(observed.compare().mismatches.len(), 1, "without its dead letters");
        observed.dead_letters.insert(key, 2);
        assert!(observed.compare().mismatches.is_empty());
    }

    #[test]
    fn young_objects_are_not_listed_and_gone_objects_are() {
        let (young_key, young) = object(0, 10, true);
        let (old_key, old) = object(10, 10, false);
        let observed = Observed {
            objects: BTreeMap::from([(young_key, young), (old_key.clone(), old)]),
            ledger: BTreeMap::from([("lake/gone.parquet".to_owned(), loaded(5, 0))]),
            ..Observed::default()
        };
        let findings = observed.compare();
        let not_loaded: Vec<&str> = findings.not_loaded.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(not_loaded, [old_key.as_str()]);
        assert_eq!(findings.missing_from_lake.len(), 1);
        assert_eq!(findings.missing_from_lake[0].status, "loaded");
    }

    #[test]
    fn table_rows_fewer_than_loaded_or_more_than_the_file_are_mismatches() {
        for (in_table, problem) in [
            (Some(90), "rows deleted?"),
            (Some(101), "more than the 100"),
            (None, "not counted"),
        ] {
            let (key, file) = object(0, 100, false);
            let observed = Observed {
                objects: BTreeMap::from([(key.clone(), file)]),
                ledger: BTreeMap::from([(key, loaded(100, 0))]),
                table_rows: in_table.map(|rows| ((0, 0), rows)).into_iter().collect(),
                dead_letters: BTreeMap::new(),
            };
            let findings = observed.compare();
            assert_eq!(findings.mismatches.len(), 1, "{in_table:?}");
            assert!(findings.mismatches[0].problem.contains(problem), "{findings:?}");
        }
    }

    #[test]
    fn an_unreadable_object_is_listed_unless_quarantined() {
        let (key, mut file) = object(0, 10, false);
        file.range = Err("not a Parquet file".into());
        let mut observed = Observed {
            objects: BTreeMap::from([(key.clone(), file)]),
            ..Observed::default()
        };
        assert_eq!(observed.compare().unreadable.len(), 1);
        let quarantined = LedgerEntry {
            quarantined: 1,
            ..LedgerEntry::default()
        };
        observed.ledger.insert(key, quarantined);
        let findings = observed.compare();
        assert!(findings.unreadable.is_empty());
        assert!(findings.not_loaded[0].quarantined);
    }

    #[test]
    fn covered_spans_merge_touching_and_overlapping_ranges_per_partition() {
        let objects = [object(0, 10, false), object(10, 5, false), object(100, 1, false)];
        let observed = Observed {
            objects: objects.into_iter().collect(),
            ..Observed::default()
        };
        assert_eq!(
            observed.covered_spans(),
            BTreeMap::from([(0, vec![(0, 14), (100, 100)])])
        );
    }
}
