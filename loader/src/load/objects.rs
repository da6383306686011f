//! What the warehouse must hold before a batch loads, as both loaders see it: the objects
//! to make at start-up ([`objects_to_make`]), the check of each table's columns
//! ([`check_table`]), and the tracking plugin's tables this loader cannot load into
//! ([`Unavailable`]), whose files are quarantined while exposures load as before.

use schemas::lake_layout::FileRecord;
use schemas::TableDef;

use super::{rows, LoadError};

/// Refuses a table whose columns (as `found` describes them) are not
/// `expected`: loading into it would fail or put values in the wrong columns.
pub(super) fn require_columns(
    schema: &str,
    table: &TableDef,
    found: Vec<String>,
    expected: Vec<String>,
) -> Result<(), LoadError> {
    if found == expected {
        return Ok(());
    }
    Err(LoadError::SchemaMismatch {
        table: format!("{schema}.{}", table.name),
        found,
        expected,
    })
}

/// Why a file of a table this release does not know is quarantined.
pub(super) fn unknown_table(file: &FileRecord) -> String {
    format!(
        "the file is of table {:?}, which this release of the loader does not know: upgrade \
         the loader, then `exposures reconcile --retry-quarantined --repair` announces it again",
        file.table
    )
}

/// What a warehouse runs at start-up ([`schemas::ddl::plan`]), from the rows of its
/// existing-objects and view-readers queries, in two parts: what exposures need, and the
/// tracking plugin's tables ([`schemas::ddl::is_tracked_object`]), whose failure must not
/// keep exposures from loading. The plan's warnings are logged.
pub(super) fn objects_to_make(
    dialect: schemas::ddl::Dialect,
    schema: &str,
    existing: Vec<Vec<Option<String>>>,
    readers: Vec<Vec<Option<String>>>,
) -> Result<(Vec<String>, TrackedObjects), LoadError> {
    let existing: Vec<schemas::ddl::ExistingObject> = rows::decode(existing)?;
    let readers: Vec<schemas::ddl::ViewReader> = rows::decode(readers)?;
    let (run, warnings) = schemas::ddl::plan_by_object(dialect, schema, &existing, &readers);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let (tracked, core): (Vec<_>, Vec<_>) = run
        .into_iter()
        .partition(|(name, _)| schemas::ddl::is_tracked_object(name));
    // Each of the plugin's tables with its indexes, apart: one that cannot be made must
    // not take the other with it.
    let tracked = schemas::tracked::TRACKED_TABLES
        .into_iter()
        .map(|table| {
            let statements = tracked
                .iter()
                .filter(|(name, _)| name == table.name || name.starts_with(&format!("{}_", table.name)))
                .flat_map(|(_, run)| run.iter().cloned())
                .collect();
            (table, statements)
        })
        .collect();
    Ok((core.into_iter().flat_map(|(_, run)| run).collect(), tracked))
}

/// The statements making each of the tracking plugin's tables (none for a table that is
/// there), from [`objects_to_make`].
pub(super) type TrackedObjects = Vec<(&'static TableDef, Vec<String>)>;

/// Checks `table`'s columns as the warehouse lists them (`found`) against `expected`.
/// `exposures` must match, or the loader cannot start. One of the tracking plugin's tables
/// that does not is marked [`Unavailable`] with why — its making failed (`not_made`), or a
/// table of that name has other columns — and exposures load as before.
pub(super) fn check_table(
    schema: &str,
    table: &'static TableDef,
    found: Vec<String>,
    expected: Vec<String>,
    not_made: &[(&str, String)],
    unavailable: &Unavailable,
) -> Result<(), LoadError> {
    let exists = !found.is_empty();
    let checked = require_columns(schema, table, found, expected);
    if table == &schemas::EXPOSURES {
        return checked;
    }
    let made = not_made
        .iter()
        .find(|(name, _)| *name == table.name)
        .map(|(_, why)| why);
    if let Some(problem) = tracked_table_problem(exists, made, checked) {
        unavailable.set(table, problem);
    }
    Ok(())
}

/// Why the tracking plugin's `table` cannot be loaded, given whether making it failed
/// (`made`) and its columns check (`checked`, from [`require_columns`]); `None` if it can.
fn tracked_table_problem(
    exists: bool,
    made: Option<&String>,
    checked: Result<(), LoadError>,
) -> Option<String> {
    match (checked, made) {
        (Ok(()), _) => None,
        // Not there because it could not be made: say why it could not.
        (Err(_), Some(failure)) if !exists => Some(failure.clone()),
        // There with other columns: a table of the user's own, most likely.
        (Err(mismatch), _) => Some(format!(
            "{mismatch}. A table of that name that is not the plugin's stays as it is: rename \
             it, or load into another --schema"
        )),
    }
}

/// The tracking plugin's tables this loader cannot load into, and why: one that could
/// not be made (no CREATE privilege) or that exists with other columns (a table of the
/// user's own with the same name). Their files are quarantined with the reason, and
/// exposures load as before.
#[derive(Debug, Default)]
pub(crate) struct Unavailable(std::sync::Mutex<Vec<(&'static str, String)>>);

impl Unavailable {
    pub(super) fn set(&self, table: &'static TableDef, reason: String) {
        tracing::error!(
            table = table.name,
            %reason,
            "the tracking plugin's table cannot be loaded; its files are quarantined until it can"
        );
        if let Ok(mut unavailable) = self.0.lock() {
            unavailable.retain(|(name, _)| *name != table.name);
            unavailable.push((table.name, reason));
        }
    }

    /// Why files of `table` cannot load, if they cannot.
    pub(super) fn reason(&self, table: &TableDef) -> Option<String> {
        let unavailable = self.0.lock().ok()?;
        unavailable
            .iter()
            .find(|(name, _)| *name == table.name)
            .map(|(_, reason)| {
                format!(
                    "{reason}; once fixed, `exposures reconcile --repair --retry-quarantined` announces its files again"
                )
            })
    }
}
