//! The Redshift warehouse's objects at start-up: made where missing, each table's
//! columns checked ([`crate::load::objects`] has the rules both warehouses share).

use schemas::ddl::{self, Dialect};
use schemas::ledger;
use schemas::TABLES;

use super::{sql, Redshift};
use crate::load::rows::{self, FromRow, Row};
use crate::load::LoadError;

impl Redshift {
    /// The columns of `table` in the schema, in order.
    async fn column_names(&self, table: &str) -> Result<Vec<String>, LoadError> {
        let columns: Vec<ColumnName> = rows::decode(
            self.api
                .query_text(&format!(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = {} \
                     AND table_name = {} ORDER BY ordinal_position",
                    sql::literal(&self.schema),
                    sql::literal(table)
                ))
                .await?,
        )?;
        Ok(columns.into_iter().map(|column| column.0).collect())
    }

    /// Creates missing objects, then refuses an `exposures` table whose columns differ.
    pub async fn ensure_objects(&self) -> Result<(), LoadError> {
        let existing = self
            .api
            .query_text(&ddl::existing_objects_query(Dialect::Redshift, &self.schema))
            .await?;
        let readers = self
            .api
            .query_text(&ddl::view_readers_query(Dialect::Redshift, &self.schema))
            .await?;
        let (run, tracked) =
            crate::load::objects_to_make(Dialect::Redshift, &self.schema, existing, readers)?;
        if !run.is_empty() {
            self.api
                .run_batch(run)
                .await
                .map_err(|failure| failure.into_error("creating the warehouse objects"))?;
        }
        let mut not_made = Vec::new();
        for (table, statements) in tracked
            .into_iter()
            .filter(|(_, statements)| !statements.is_empty())
        {
            if let Err(failure) = self.api.run_batch(statements).await {
                let doing = format!("creating {}.{}", self.schema, table.name);
                not_made.push((table.name, failure.into_error(&doing).to_string()));
            }
        }
        for table in TABLES {
            let found = self.column_names(table.name).await?;
            let expected: Vec<String> = table.columns.iter().map(|c| c.name.to_owned()).collect();
            crate::load::check_table(&self.schema, table, found, expected, &not_made, &self.unavailable)?;
        }
        let ledger_columns = self.column_names("exposures_loads").await?;
        for migration in ledger::ledger_migrations(&self.schema, &ledger_columns) {
            self.api
                .run_one(&migration)
                .await
                .map_err(|failure| failure.into_error("adding rows_rejected to the ledger"))?;
        }
        Ok(())
    }
}

/// A column's name (`information_schema.columns`).
struct ColumnName(String);

impl FromRow for ColumnName {
    const QUERY: &'static str = "Redshift: column names";
    const COLUMNS: &'static [&'static str] = &["column_name"];
    fn from_row(row: &Row<'_>) -> Result<Self, LoadError> {
        Ok(ColumnName(row.get("column_name")?))
    }
}
