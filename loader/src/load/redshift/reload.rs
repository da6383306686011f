//! `exposures reload-rejected` on Redshift: every row of `exposures_rejected` is made
//! into its row again ([`row_of_raw`]) and checked here against what `exposures` takes —
//! the checks the row-by-row load makes in SQL. The rows that pass are inserted (unless
//! their `event_id` is already loaded) and leave the table, in calls that each take its
//! lock and are idempotent by themselves; each row that does not keeps its place with the
//! new reason. A call Redshift refuses for its data is tried again one row at a time.

use chrono::{DateTime, Utc};
use schemas::ddl::Dialect;
use schemas::ledger;
use schemas::{ColumnType, TableDef, TABLES};
use serde_json::{Map, Value};

use super::data_api::RunFailure;
use super::sql::{literal, within_budget, MAX_BATCH_STATEMENTS, MAX_STATEMENT_BYTES};
use super::Redshift;
use crate::load::rejected::{row_of_raw, table_of_object_key};
use crate::load::rows::{self, from_row};
use crate::load::{LoadError, ReloadReport};

/// A row of `exposures_rejected`, where it is and what it holds.
struct RejectedRecord {
    kafka_partition: i32,
    kafka_offset: i64,
    object_key: Option<String>,
    raw_row: Option<String>,
}

from_row!(
    "Redshift: rows of exposures_rejected",
    RejectedRecord {
        kafka_partition: get,
        kafka_offset: get,
        object_key: opt,
        raw_row: opt
    }
);

/// A rejected row that passes every check: where it is, and its values as a `SELECT`
/// of literals named by column.
struct Loadable {
    /// The table of the file the row was refused from.
    table: &'static TableDef,
    place: String,
    event_id: String,
    values: String,
}

/// The row's key in `exposures_rejected`, as a condition.
fn place_of(record: &RejectedRecord) -> String {
    let key = match &record.object_key {
        Some(key) => format!("object_key = {}", literal(key)),
        None => "object_key IS NULL".to_owned(),
    };
    format!(
        "(kafka_partition = {} AND kafka_offset = {} AND {key})",
        record.kafka_partition, record.kafka_offset
    )
}

/// `fields` as a `SELECT` list of literals in `table`'s column order, or why the table
/// would refuse it: a required value missing, a value of the wrong type, text longer in
/// bytes than its `VARCHAR(n)` or holding NUL, JSON that does not parse.
fn values_of(fields: &Map<String, Value>, table: &TableDef) -> Result<String, String> {
    let mut values = Vec::with_capacity(table.columns.len());
    for column in table.columns {
        let name = column.name;
        let value = fields.get(name).unwrap_or(&Value::Null);
        if value.is_null() {
            if !column.nullable {
                return Err(format!("{name} is missing"));
            }
            // Typed: a bare NULL in a SELECT of literals has no type to insert as.
            let kind = match column.kind {
                ColumnType::Json => "VARCHAR(65535)".to_owned(),
                kind => schemas::ddl::sql_type(kind, Dialect::Redshift),
            };
            values.push(format!("CAST(NULL AS {kind}) AS {name}"));
            continue;
        }
        let wrong = || format!("{name} is not a {:?}", column.kind);
        let sql = match column.kind {
            ColumnType::Text(_) | ColumnType::Json => {
                let text = value.as_str().ok_or_else(wrong)?;
                if text.contains('\0') {
                    return Err(format!(
                        "{name} holds a NUL character, which Redshift cannot store"
                    ));
                }
                if let ColumnType::Text(width) = column.kind {
                    if text.len() > width as usize {
                        return Err(format!(
                            "{name} is {} bytes, more than the column's VARCHAR({width})",
                            text.len()
                        ));
                    }
                } else if serde_json::from_str::<Value>(text).is_err() {
                    return Err(format!("{name} is not JSON Redshift can parse"));
                }
                literal(text)
            }
            ColumnType::Timestamp => {
                let at = value
                    .as_str()
                    .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                    .ok_or_else(wrong)?
                    .with_timezone(&Utc);
                format!("CAST('{}' AS TIMESTAMP)", at.format("%Y-%m-%d %H:%M:%S%.6f"))
            }
            ColumnType::Boolean => value.as_bool().ok_or_else(wrong)?.to_string().to_uppercase(),
            ColumnType::Int32 => value
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(wrong)?
                .to_string(),
            ColumnType::Int64 => value.as_i64().ok_or_else(wrong)?.to_string(),
        };
        values.push(format!("{sql} AS {name}"));
    }
    Ok(values.join(", "))
}

impl Redshift {
    /// Tries every row of `exposures_rejected` again (module doc). Run it after fixing
    /// what refused them.
    pub async fn reload_rejected(&self) -> Result<ReloadReport, LoadError> {
        let records: Vec<RejectedRecord> = rows::decode(
            self.query_text(&ledger::rejected_rows_query(&self.schema))
                .await?,
        )?;
        let mut loadable = Vec::new();
        let mut refused = Vec::new();
        for record in &records {
            let file_table = table_of_object_key(record.object_key.as_deref().unwrap_or_default());
            let row = record
                .raw_row
                .as_deref()
                .ok_or_else(|| "the row has no raw_row".to_owned())
                .and_then(|raw| row_of_raw(raw, record.kafka_partition, record.kafka_offset, file_table))
                .and_then(|(table, fields)| {
                    let event_id = fields
                        .get("event_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    values_of(&fields, table).map(|values| (table, event_id, values))
                });
            match row {
                Ok((table, event_id, values)) => loadable.push(Loadable {
                    table,
                    place: place_of(record),
                    event_id,
                    values,
                }),
                Err(reason) => refused.push((place_of(record), reason)),
            }
        }
        let mut report = ReloadReport::default();
        // Each call inserts into one table.
        loadable.sort_by_key(|row| TABLES.iter().position(|table| *table == row.table));
        let chunks = loadable.chunk_by(|a, b| a.table == b.table).flat_map(|of_table| {
            within_budget(of_table, MAX_STATEMENT_BYTES - 4 * 1024, |row| {
                row.values.len() + row.place.len() + 32
            })
        });
        for chunk in chunks {
            match self.api.run_batch(self.reload_statements(chunk)).await {
                Ok(_) => report.reloaded += chunk.len() as u64,
                Err(RunFailure::Failed(_)) if chunk.len() > 1 => {
                    // One row of the chunk is refused: each on its own.
                    for row in chunk {
                        match self
                            .api
                            .run_batch(self.reload_statements(std::slice::from_ref(row)))
                            .await
                        {
                            Ok(_) => report.reloaded += 1,
                            Err(RunFailure::Failed(failure)) => {
                                refused.push((row.place.clone(), failure.message))
                            }
                            Err(failure) => return Err(failure.into_error("reloading a rejected row")),
                        }
                    }
                }
                Err(RunFailure::Failed(failure)) => {
                    refused.push((chunk[0].place.clone(), failure.message));
                }
                Err(failure) => return Err(failure.into_error("reloading rejected rows")),
            }
        }
        report.still_refused = refused.len() as u64;
        let updates: Vec<String> = refused
            .iter()
            .map(|(place, reason)| {
                format!(
                    "UPDATE {}.exposures_rejected SET reason = {}, rejected_at = GETDATE() WHERE {place}",
                    self.schema,
                    literal(ledger::truncate_utf8(
                        &ledger::storable(reason),
                        ledger::MAX_REASON_BYTES
                    ))
                )
            })
            .collect();
        for calls in updates.chunks(MAX_BATCH_STATEMENTS - 1) {
            let statements = std::iter::once(format!("LOCK {}.exposures_rejected", self.schema))
                .chain(calls.iter().cloned())
                .collect();
            self.api
                .run_batch(statements)
                .await
                .map_err(|failure| failure.into_error("recording why rows are still refused"))?;
        }
        Ok(report)
    }

    /// One call: the lock, the rows (all of one table) inserted unless their `event_id`
    /// is loaded, and the rows gone from `exposures_rejected` — idempotent by itself.
    fn reload_statements(&self, rows: &[Loadable]) -> Vec<String> {
        let schema = &self.schema;
        let table = rows.first().map_or(&schemas::EXPOSURES, |row| row.table);
        let name = table.name;
        // One row per event_id: Redshift has no unique index to keep a second copy out
        // (the NOT EXISTS below sees only what earlier calls committed); every copy
        // leaves exposures_rejected.
        let mut seen = std::collections::HashSet::new();
        let selects: Vec<String> = rows
            .iter()
            .filter(|row| seen.insert(row.event_id.as_str()))
            .map(|row| format!("SELECT {}", row.values))
            .collect();
        let places: Vec<&str> = rows.iter().map(|row| row.place.as_str()).collect();
        vec![
            format!("LOCK {schema}.exposures_rejected"),
            format!(
                "INSERT INTO {schema}.{name} ({}) SELECT {} FROM ({}) v WHERE NOT EXISTS \
                 (SELECT 1 FROM {schema}.{name} e WHERE e.event_id = v.event_id)",
                ledger::column_list(table),
                ledger::insert_values(table, Dialect::Redshift),
                selects.join(" UNION ALL ")
            ),
            format!(
                "DELETE FROM {schema}.exposures_rejected WHERE {}",
                places.join(" OR ")
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_passes_or_says_why_not() {
        let mut fields: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "event_id": "e1",
            "experiment_id": "checkout-button",
            "variation_id": "1",
            "exposed_at": "2026-12-05T03:00:00.123456Z",
            "received_at": "2026-12-05T03:00:01Z",
            "attributes": "{\"country\":\"de\"}",
            "is_kf_verified": true,
            "kafka_partition": 3,
            "kafka_offset": 1500,
        }))
        .expect("fields");
        let values = values_of(&fields, &schemas::EXPOSURES).expect("a loadable row");
        assert!(
            values.starts_with("'e1' AS event_id, CAST(NULL AS VARCHAR(256)) AS ds_user_id, "),
            "{values}"
        );
        assert!(values.contains("CAST('2026-12-05 03:00:00.123456' AS TIMESTAMP) AS exposed_at"));
        assert!(values.contains("'{\"country\":\"de\"}' AS attributes"));
        assert!(values.contains("TRUE AS is_kf_verified"));
        assert!(values.ends_with("3 AS kafka_partition, 1500 AS kafka_offset"));

        fields.insert("experiment_id".into(), "é".repeat(200).into());
        assert_eq!(
            values_of(&fields, &schemas::EXPOSURES).expect_err("too wide"),
            "experiment_id is 400 bytes, more than the column's VARCHAR(256)"
        );
        fields.insert("experiment_id".into(), "a\u{0}b".into());
        assert!(values_of(&fields, &schemas::EXPOSURES)
            .expect_err("NUL")
            .contains("NUL"));
        fields.insert("experiment_id".into(), Value::Null);
        assert_eq!(
            values_of(&fields, &schemas::EXPOSURES).expect_err("missing"),
            "experiment_id is missing"
        );
        fields.insert("experiment_id".into(), "x".into());
        fields.insert("attributes".into(), "{not json".into());
        assert_eq!(
            values_of(&fields, &schemas::EXPOSURES).expect_err("bad JSON"),
            "attributes is not JSON Redshift can parse"
        );
    }
}
