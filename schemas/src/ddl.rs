//! Warehouse DDL per dialect, generated from [`COLUMNS`](crate::COLUMNS) so the table, the Parquet files
//! and (with the loader) the stage table agree column for column.
//!
//! Objects, all in one schema:
//! - `exposures`: one row per exposure; Redshift `DISTKEY(ds_user_id)` and
//!   `SORTKEY(exposed_at)` so joins with fact tables on the user are co-located and time
//!   ranges are zone-map pruned.
//! - `feature_usage`, `events`: the rows of GrowthBook's tracking plugin besides its
//!   exposures ([`crate::tracked`]), distributed and sorted the same way.
//! - `exposures_loads`: the loader's ledger, one row per lake object.
//! - `exposures_growthbook`: GrowthBook's experiment assignment query, paste-ready:
//!   `user_id, timestamp, experiment_id, variation_id` + dimension columns.
//! - `exposure_events`: exposures shaped like the fact tables (`timestamp, ds_user_id,
//!   ds_session_id, event_type = 'exposure', …`), e.g. as a ratio metric's denominator.

use std::fmt::Write;

use crate::columns::{ColumnType, TableDef, EXPOSURES};
use crate::tracked::TRACKED_TABLES;

pub use crate::dialect::Dialect;

/// Dimension columns the GrowthBook view exposes besides the four it requires.
pub const GROWTHBOOK_DIMENSIONS: [&str; 8] = [
    "source",
    "geo_country_code",
    "geo_city",
    "currency_id",
    "locale",
    "platform",
    "is_kf_verified",
    "ds_session_id",
];

/// The SQL type of a column in `dialect`.
pub fn sql_type(kind: ColumnType, dialect: Dialect) -> String {
    match (kind, dialect) {
        (ColumnType::Text(max), Dialect::Redshift) => format!("VARCHAR({max})"),
        (ColumnType::Text(_), Dialect::Postgres) => "TEXT".into(),
        (ColumnType::Json, Dialect::Redshift) => "SUPER".into(),
        (ColumnType::Json, Dialect::Postgres) => "JSONB".into(),
        (ColumnType::Timestamp, Dialect::Redshift) => "TIMESTAMP".into(),
        (ColumnType::Timestamp, Dialect::Postgres) => "TIMESTAMPTZ".into(),
        (ColumnType::Boolean, _) => "BOOLEAN".into(),
        (ColumnType::Int32, _) => "INTEGER".into(),
        (ColumnType::Int64, _) => "BIGINT".into(),
    }
}

/// `CREATE TABLE IF NOT EXISTS {schema}.exposures (…)`.
pub fn exposures_table(dialect: Dialect, schema: &str) -> String {
    data_table(dialect, schema, &EXPOSURES)
}

/// `CREATE TABLE IF NOT EXISTS {schema}.{table} (…)` for a table the pipeline loads;
/// on Redshift distributed on its user and sorted by its time, so joins with fact tables
/// on the user are co-located and time ranges are zone-map pruned.
pub fn data_table(dialect: Dialect, schema: &str, table: &TableDef) -> String {
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {schema}.{} (\n", table.name);
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!("    {} {}{null}", c.name, sql_type(c.kind, dialect))
        })
        .collect();
    sql.push_str(&columns.join(",\n"));
    match dialect {
        Dialect::Redshift => {
            let _ = write!(
                sql,
                "\n)\nDISTSTYLE KEY\nDISTKEY ({})\nSORTKEY ({});\n",
                table.user_column, table.time_column
            );
        }
        Dialect::Postgres => sql.push_str("\n);\n"),
    }
    sql
}

/// The loader's ledger: one row per lake object loaded (or quarantined); its columns
/// are [`crate::ledger::LEDGER_COLUMNS`].
pub fn loads_table(dialect: Dialect, schema: &str) -> String {
    let columns = crate::ledger::LEDGER_COLUMNS.map(|(name, kind)| (name, kind.sql(dialect)));
    create_table(schema, "exposures_loads", &columns)
}

/// `CREATE TABLE IF NOT EXISTS {schema}.{table} (…)` with `(name, SQL type)` columns.
fn create_table(schema: &str, table: &str, columns: &[(&str, &str)]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|(name, kind)| format!("    {name} {kind}"))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.{table} (\n{}\n);\n",
        columns.join(",\n")
    )
}

/// The dead-letter table of rows the warehouse refused; its columns are
/// [`crate::ledger::REJECTED_COLUMNS`].
pub fn rejected_table(dialect: Dialect, schema: &str) -> String {
    let columns = crate::ledger::REJECTED_COLUMNS.map(|(name, kind)| (name, kind.sql(dialect)));
    create_table(schema, "exposures_rejected", &columns)
}

/// `exposures_growthbook`: GrowthBook's experiment assignment query, paste-ready.
pub fn growthbook_view(schema: &str) -> String {
    let dimensions = GROWTHBOOK_DIMENSIONS.join(",\n    ");
    format!(
        "CREATE OR REPLACE VIEW {schema}.exposures_growthbook AS\nSELECT\n    \
         ds_user_id AS user_id,\n    \
         exposed_at AS \"timestamp\",\n    \
         experiment_id,\n    \
         variation_id,\n    \
         {dimensions}\n\
         FROM {schema}.exposures\n\
         WHERE ds_user_id IS NOT NULL;\n"
    )
}

/// `exposure_events`: exposures shaped like the fact tables.
pub fn events_view(schema: &str) -> String {
    format!(
        "CREATE OR REPLACE VIEW {schema}.exposure_events AS\nSELECT\n    \
         exposed_at AS \"timestamp\",\n    \
         ds_user_id,\n    \
         ds_session_id,\n    \
         'exposure' AS event_type,\n    \
         experiment_id,\n    \
         variation_id,\n    \
         source,\n    \
         geo_country_code,\n    \
         geo_city,\n    \
         locale,\n    \
         platform\n\
         FROM {schema}.exposures;\n"
    )
}

/// What kind of warehouse object a DDL statement creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Schema,
    Table,
    Index,
    View,
}

/// One object of the warehouse, and the statement that creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlObject {
    pub kind: ObjectKind,
    pub name: String,
    /// Without the trailing `;`.
    pub sql: String,
}

impl DdlObject {
    /// The comment a view carries once made from this definition: `exposures ddl` and a
    /// digest of its statement. The loader compares it with the view's comment to replace
    /// a view only when its definition changed (reading a view's SQL back from the catalog
    /// gives the server's rewrite, which differs from ours on both warehouses).
    pub fn marker(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.sql.as_bytes());
        let hex: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
        format!("exposures ddl {hex}")
    }

    /// The statements that replace this view when its definition changed: DROP, then
    /// create and mark it, then give `readers` back their SELECT. Redshift replaces a view
    /// in place only with "the identical set of columns, using the same column names and
    /// data types" (CREATE VIEW, Database Developer Guide), so the first release that adds
    /// a column could not start; dropping it loses its grants, hence the GRANT. Run them
    /// in one transaction: readers never see the view missing.
    pub fn replacement(&self, schema: &str, readers: &[&str]) -> Vec<String> {
        let mut statements = vec![format!("DROP VIEW {schema}.{}", self.name)];
        statements.extend(self.statements(schema));
        if !readers.is_empty() {
            let readers: Vec<String> = readers.iter().map(|reader| quote_identifier(reader)).collect();
            statements.push(format!(
                "GRANT SELECT ON {schema}.{} TO {}",
                self.name,
                readers.join(", ")
            ));
        }
        statements
    }

    /// The statements that make this object: for a view, its statement and the comment
    /// that marks its definition.
    pub fn statements(&self, schema: &str) -> Vec<String> {
        match self.kind {
            ObjectKind::View => vec![
                self.sql.clone(),
                format!("COMMENT ON VIEW {schema}.{} IS '{}'", self.name, self.marker()),
            ],
            _ => vec![self.sql.clone()],
        }
    }
}

/// Every object, in creation order.
pub fn objects(dialect: Dialect, schema: &str) -> Vec<DdlObject> {
    let object = |kind, name: &str, sql: String| DdlObject {
        kind,
        name: name.to_owned(),
        sql: sql.trim().trim_end_matches(';').to_owned(),
    };
    let mut objects = vec![
        object(
            ObjectKind::Schema,
            schema,
            format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
        ),
        object(ObjectKind::Table, "exposures", exposures_table(dialect, schema)),
    ];
    if dialect == Dialect::Postgres {
        objects.push(object(
            ObjectKind::Index,
            "exposures_event_id",
            format!("CREATE UNIQUE INDEX IF NOT EXISTS exposures_event_id ON {schema}.exposures (event_id)"),
        ));
        objects.push(object(
            ObjectKind::Index,
            "exposures_user_time",
            format!("CREATE INDEX IF NOT EXISTS exposures_user_time ON {schema}.exposures (ds_user_id, exposed_at)"),
        ));
    }
    // The tables of GrowthBook's tracking plugin (`crate::tracked`).
    for table in TRACKED_TABLES {
        objects.push(object(
            ObjectKind::Table,
            table.name,
            data_table(dialect, schema, table),
        ));
        if dialect == Dialect::Postgres {
            let (name, user, time) = (table.name, table.user_column, table.time_column);
            objects.push(object(
                ObjectKind::Index,
                &format!("{name}_event_id"),
                format!("CREATE UNIQUE INDEX IF NOT EXISTS {name}_event_id ON {schema}.{name} (event_id)"),
            ));
            objects.push(object(
                ObjectKind::Index,
                &format!("{name}_user_time"),
                format!("CREATE INDEX IF NOT EXISTS {name}_user_time ON {schema}.{name} ({user}, {time})"),
            ));
        }
    }
    objects.push(object(
        ObjectKind::Table,
        "exposures_loads",
        loads_table(dialect, schema),
    ));
    objects.push(object(
        ObjectKind::Table,
        "exposures_rejected",
        rejected_table(dialect, schema),
    ));
    objects.push(object(
        ObjectKind::View,
        "exposures_growthbook",
        growthbook_view(schema),
    ));
    objects.push(object(ObjectKind::View, "exposure_events", events_view(schema)));
    objects
}

/// Everything, in creation order: what `exposures ddl` prints.
pub fn script(dialect: Dialect, schema: &str) -> String {
    let mut script = format!("-- exposures warehouse objects ({dialect}), generated by `exposures ddl`.\n");
    for object in objects(dialect, schema) {
        for statement in object.statements(schema) {
            let _ = write!(script, "{statement};\n\n");
        }
    }
    script
}

/// Each statement of [`script`], without comments or the trailing `;`.
pub fn statements(dialect: Dialect, schema: &str) -> Vec<String> {
    objects(dialect, schema)
        .into_iter()
        .flat_map(|object| object.statements(schema))
        .collect()
}

/// The objects of `schema` that exist, for [`plan`]: rows of (kind, name, owned by the
/// current user, comment), on PostgreSQL and Redshift alike.
pub fn existing_objects_query(dialect: Dialect, schema: &str) -> String {
    let schema = crate::ledger::literal(dialect, schema);
    let indexes = match dialect {
        Dialect::Postgres => {
            format!(
                " UNION ALL SELECT 'index', indexname, 't', NULL FROM pg_indexes WHERE schemaname = {schema}"
            )
        }
        Dialect::Redshift => String::new(),
    };
    format!(
        "SELECT 'schema', nspname, 't', NULL FROM pg_namespace WHERE nspname = {schema} \
         UNION ALL SELECT 'table', tablename, 't', NULL FROM pg_tables WHERE schemaname = {schema} \
         UNION ALL SELECT 'view', v.viewname, CASE WHEN v.viewowner = current_user THEN 't' ELSE 'f' END, \
         d.description FROM pg_views v \
         JOIN pg_namespace n ON n.nspname = v.schemaname \
         JOIN pg_class c ON c.relname = v.viewname AND c.relnamespace = n.oid \
         LEFT JOIN pg_description d ON d.objoid = c.oid AND d.objsubid = 0 \
         WHERE v.schemaname = {schema}{indexes}"
    )
}

/// The database users other than the current one (and superusers) who may read each
/// view of `schema`: rows of (view_name, reader). `HAS_TABLE_PRIVILEGE` (documented on
/// both warehouses) counts grants to the user, their groups and PUBLIC alike, so a view
/// replaced by [`DdlObject::replacement`] is granted to each of them by name — the way
/// dbt-redshift reads grants.
pub fn view_readers_query(dialect: Dialect, schema: &str) -> String {
    let schema = crate::ledger::literal(dialect, schema);
    format!(
        "SELECT v.viewname AS view_name, u.usename AS reader FROM pg_views v CROSS JOIN pg_user u \
         WHERE v.schemaname = {schema} AND u.usename <> current_user AND NOT u.usesuper \
         AND has_table_privilege(u.usename, quote_ident(v.schemaname) || '.' || quote_ident(v.viewname), 'select')"
    )
}

/// A row of [`view_readers_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewReader {
    pub view_name: String,
    pub reader: String,
}

/// `name` as a double-quoted SQL identifier (Redshift's IAM users are `IAMR:role`).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A row of [`existing_objects_query`]: an object of the schema, whether the current
/// database user owns it, and its comment (a view's [`DdlObject::marker`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingObject {
    /// `schema`, `table`, `index` or `view`.
    pub kind: String,
    pub name: String,
    pub owned: bool,
    pub comment: Option<String>,
}

/// What to run at start-up, in one transaction, given the rows of
/// [`existing_objects_query`] and [`view_readers_query`]: every missing object is
/// created; a view whose comment is not the current definition's [`DdlObject::marker`] is
/// replaced ([`DdlObject::replacement`]) if the loader owns it, and otherwise left as it
/// is with a warning (replacing it needs its owner, and failing there would keep the
/// loader from starting at all). A current view is not touched.
pub fn plan(
    dialect: Dialect,
    schema: &str,
    existing: &[ExistingObject],
    readers: &[ViewReader],
) -> (Vec<String>, Vec<String>) {
    let (by_object, warnings) = plan_by_object(dialect, schema, existing, readers);
    (by_object.into_iter().flat_map(|(_, run)| run).collect(), warnings)
}

/// Whether `name` is one of the tracking plugin's tables or their indexes: objects a
/// loader makes when it can, but whose absence does not keep it from loading exposures.
pub fn is_tracked_object(name: &str) -> bool {
    TRACKED_TABLES.iter().any(|table| {
        name == table.name
            || name
                .strip_prefix(table.name)
                .is_some_and(|rest| rest.starts_with('_'))
    })
}

/// [`plan`], each object's statements apart, with the object's name.
pub fn plan_by_object(
    dialect: Dialect,
    schema: &str,
    existing: &[ExistingObject],
    readers: &[ViewReader],
) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let found = |kind: &str, name: &str| -> Option<&ExistingObject> {
        existing
            .iter()
            .find(|object| object.kind == kind && object.name == name)
    };
    let mut run: Vec<(String, Vec<String>)> = Vec::new();
    let mut warnings = Vec::new();
    for object in objects(dialect, schema) {
        let kind = match object.kind {
            ObjectKind::Schema => "schema",
            ObjectKind::Table => "table",
            ObjectKind::Index => "index",
            ObjectKind::View => "view",
        };
        match (object.kind, found(kind, &object.name)) {
            (_, None) => run.push((object.name.clone(), object.statements(schema))),
            (ObjectKind::View, Some(view)) if view.comment.as_deref() != Some(object.marker().as_str()) => {
                if view.owned {
                    let readers: Vec<&str> = readers
                        .iter()
                        .filter(|reader| reader.view_name == object.name)
                        .map(|reader| reader.reader.as_str())
                        .collect();
                    run.push((object.name.clone(), object.replacement(schema, &readers)));
                } else {
                    warnings.push(format!(
                        "view {schema}.{} is not the current definition and belongs to another \
                         database user: left as it is; have its owner run `exposures ddl`",
                        object.name
                    ));
                }
            }
            _ => {}
        }
    }
    (run, warnings)
}

/// Type of JSON columns in a Redshift stage table: COPY cannot write SUPER from a Parquet
/// string, so JSON lands as text and `JSON_PARSE` turns it into SUPER on insert.
const REDSHIFT_STAGE_JSON: &str = "VARCHAR(65535)";

/// The session-scoped table a load stages one batch in: every column of [`COLUMNS`](crate::COLUMNS) in
/// Parquet order (Redshift's Parquet COPY maps columns by position and needs the same
/// count), JSON as text.
pub fn stage_table(dialect: Dialect, name: &str) -> String {
    stage_table_of(dialect, name, &EXPOSURES, false)
}

/// [`stage_table`] for any table the pipeline loads.
pub fn stage_table_for(dialect: Dialect, name: &str, table: &TableDef) -> String {
    stage_table_of(dialect, name, table, false)
}

/// A Redshift stage that holds every row COPY can read, its text columns as wide as
/// Redshift allows (`VARCHAR(65535)`): a value too long for its column in `exposures` is
/// then checked row by row instead of refusing the whole file.
pub fn wide_stage_table(name: &str) -> String {
    stage_table_of(Dialect::Redshift, name, &EXPOSURES, true)
}

/// [`wide_stage_table`] for any table the pipeline loads.
pub fn wide_stage_table_for(name: &str, table: &TableDef) -> String {
    stage_table_of(Dialect::Redshift, name, table, true)
}

fn stage_table_of(dialect: Dialect, name: &str, table: &TableDef, wide: bool) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let kind = match (c.kind, dialect) {
                (ColumnType::Json, Dialect::Redshift) => REDSHIFT_STAGE_JSON.to_owned(),
                (ColumnType::Text(_), Dialect::Redshift) if wide => REDSHIFT_STAGE_JSON.to_owned(),
                (ColumnType::Json, Dialect::Postgres) => "TEXT".to_owned(),
                (kind, dialect) => sql_type(kind, dialect),
            };
            format!("{} {kind}", c.name)
        })
        .collect();
    let lifetime = match dialect {
        Dialect::Redshift => "",
        Dialect::Postgres => " ON COMMIT DROP",
    };
    format!("CREATE TEMP TABLE {name} ({}){lifetime}", columns.join(", "))
}

#[cfg(test)]
mod tests;
