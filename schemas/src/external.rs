//! The lake as a table: DDL for an external table over the sink's Parquet files, for
//! Amazon Athena and Amazon Redshift Spectrum (`exposures ddl --dialect athena|spectrum`).
//!
//! The lake is Hive-style: `{prefix}/exposures/v1/dt=YYYY-MM-DD/hour=HH/p…-….parquet`
//! ([`crate::lake_layout`]), so one table at `{prefix}/exposures/v1/` with
//! the partition columns `dt` and `hour` reads all of it.
//!
//! - **Columns** are generated from [`crate::arrow_schema`], the schema every Parquet file
//!   is written with: same names, same order (Athena matches Parquet columns by name,
//!   Spectrum can by position, and both then agree), each Arrow type mapped by
//!   [`lake_type`]. The external table cannot drift from the files. Spectrum's `varchar`
//!   needs a length: a text column's byte width from [`crate::COLUMNS`], and
//!   [`JSON_VARCHAR`] for the JSON columns (ingest keeps a JSON document within it).
//! - **Athena** finds partitions by *partition projection* (table properties: `dt` a date
//!   `yyyy-MM-dd` over the last three years, `hour` an integer 00–23): nothing to
//!   register, new hours are readable as soon as the sink writes them.
//! - **Spectrum** does not use projection — Athena's documentation: "Partition
//!   projection is usable only when the table is queried through Athena. If the same
//!   table is read through another service such as Amazon Redshift Spectrum […], the
//!   standard partition metadata is used"
//!   (<https://docs.aws.amazon.com/athena/latest/ug/partition-projection.html>). Each
//!   hour is registered with `ALTER TABLE … ADD IF NOT EXISTS PARTITION`, printed as a
//!   template, or by a Glue crawler.

use std::fmt::{self, Write};
use std::str::FromStr;

use arrow_schema::{DataType, TimeUnit};

use crate::columns::{ColumnType, COLUMNS, LAKE_SCHEMA_VERSION};
use crate::ddl::Dialect;
use crate::lake_layout;

/// The external table's name, in the schema (Glue database) given with `--schema`.
pub const TABLE: &str = "exposures_lake";

/// The schema of the external table when `--schema` is not given: for Athena a Glue
/// database, for Spectrum an external schema (it cannot be a local schema like `public`).
pub const DEFAULT_SCHEMA: &str = "lake";

/// Spectrum type of the JSON columns: the longest `varchar` (ingest keeps a JSON
/// document within 65,535 bytes, `schemas::loadable`).
pub const JSON_VARCHAR: u32 = 65_535;

/// The engine reading the lake in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Athena,
    Spectrum,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Athena => "athena",
            Engine::Spectrum => "spectrum",
        })
    }
}

/// What `exposures ddl --dialect` prints: the warehouse objects, or the lake as an
/// external table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlDialect {
    Warehouse(Dialect),
    Lake(Engine),
}

impl FromStr for DdlDialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "athena" => Ok(DdlDialect::Lake(Engine::Athena)),
            "spectrum" | "redshift-spectrum" => Ok(DdlDialect::Lake(Engine::Spectrum)),
            other => other.parse().map(DdlDialect::Warehouse).map_err(|_| {
                format!("unknown dialect '{other}': expected redshift, postgres, spectrum or athena")
            }),
        }
    }
}

impl fmt::Display for DdlDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DdlDialect::Warehouse(dialect) => dialect.fmt(f),
            DdlDialect::Lake(engine) => engine.fmt(f),
        }
    }
}

/// The lake the sink writes, `s3://BUCKET[/PREFIX]` (its `--lake`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeUrl {
    bucket: String,
    prefix: String,
}

impl LakeUrl {
    /// Parses `s3://BUCKET[/PREFIX]` as the sink does (outer slashes of the prefix
    /// ignored), refusing what cannot be an external table's location or would break
    /// the SQL string it is printed in.
    pub fn parse(url: &str) -> Result<LakeUrl, String> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "--lake '{url}': Athena and Redshift Spectrum read the lake on S3, so it must be \
                 s3://BUCKET[/PREFIX] (the sink's --lake)"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let bucket_ok = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(format!(
                "--lake '{url}': '{bucket}' is not an S3 bucket name (lowercase letters, digits, '.', '-')"
            ));
        }
        if let Some(bad) = prefix
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "'\\${}".contains(*c))
        {
            return Err(format!(
                "--lake '{url}': the prefix holds {bad:?}, which a table location cannot carry"
            ));
        }
        if prefix.contains("//") {
            return Err(format!(
                "--lake '{url}': the prefix has an empty path segment ('//')"
            ));
        }
        Ok(LakeUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The table's `LOCATION`: `s3://BUCKET/PREFIX/exposures/v1/`, the parent of every
    /// `dt=` directory.
    pub fn location(&self) -> String {
        match self.prefix.as_str() {
            "" => format!("s3://{}/{}", self.bucket, lake_layout::data_dir()),
            prefix => format!("s3://{}/{prefix}/{}", self.bucket, lake_layout::data_dir()),
        }
    }

    /// Where the files of one hour are: `LOCATION` + `dt={dt}/hour={hour}/`.
    pub fn partition_location(&self, dt: &str, hour: &str) -> String {
        format!("{}{}", self.location(), lake_layout::partition_dir(dt, hour))
    }
}

/// The external table to print: engine, schema (Glue database / external schema), lake,
/// and for Spectrum the IAM role of the external schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeTable {
    pub engine: Engine,
    pub schema: String,
    pub lake: LakeUrl,
    /// `default` (the role set as default on the cluster or namespace) or a role ARN.
    pub iam_role: String,
}

impl LakeTable {
    /// Checks the names that go into the DDL.
    pub fn new(engine: Engine, schema: &str, lake: &str, iam_role: &str) -> Result<LakeTable, String> {
        let identifier = !schema.is_empty()
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !identifier {
            return Err(format!(
                "--schema '{schema}': a Glue database name is lowercase letters, digits and '_'"
            ));
        }
        if engine == Engine::Spectrum && schema == "public" {
            return Err(
                "--dialect spectrum needs --schema naming an external schema, not the local \
                 schema public: e.g. --schema lake"
                    .to_owned(),
            );
        }
        let role_ok = engine == Engine::Athena
            || iam_role == "default"
            || (iam_role.starts_with("arn:")
                && !iam_role.contains(|c: char| c == '\'' || c == '\\' || c.is_whitespace()));
        if !role_ok {
            return Err(format!(
                "--iam-role '{iam_role}': expected default or an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            ));
        }
        Ok(LakeTable {
            engine,
            schema: schema.to_owned(),
            lake: LakeUrl::parse(lake)?,
            iam_role: iam_role.to_owned(),
        })
    }
}

/// The type `engine` reads a Parquet column of Arrow type `data_type` as, or `None` if
/// the lake writes no such type. `varchar_bytes` is the `varchar` length Spectrum needs
/// for a string column.
pub fn lake_type(engine: Engine, data_type: &DataType, varchar_bytes: u32) -> Option<String> {
    Some(match (data_type, engine) {
        (DataType::Utf8, Engine::Athena) => "string".to_owned(),
        (DataType::Utf8, Engine::Spectrum) => format!("varchar({varchar_bytes})"),
        (DataType::Boolean, _) => "boolean".to_owned(),
        (DataType::Int32, _) => "int".to_owned(),
        (DataType::Int64, _) => "bigint".to_owned(),
        // INT64 TIMESTAMP(isAdjustedToUTC=false, MICROS), UTC wall-clock values: a
        // `timestamp` to both engines, no zone applied.
        (DataType::Timestamp(TimeUnit::Microsecond, None), _) => "timestamp".to_owned(),
        _ => return None,
    })
}

/// The `varchar` length of a lake column for Spectrum: a text column's byte width, the
/// longest `varchar` for JSON.
fn varchar_bytes(name: &str) -> u32 {
    match COLUMNS.iter().find(|c| c.name == name).map(|c| c.kind) {
        Some(ColumnType::Text(max)) => max,
        _ => JSON_VARCHAR,
    }
}

/// `(name, type)` of every column of the lake's Parquet files, in file order.
pub fn columns(engine: Engine) -> Vec<(String, String)> {
    crate::arrow_schema()
        .fields()
        .iter()
        .map(|field| {
            let kind = lake_type(engine, field.data_type(), varchar_bytes(field.name()));
            // arrow_schema() holds only the types of ColumnType, each mapped above
            // (every_lake_column_has_a_type_in_each_engine).
            let kind = kind.unwrap_or_else(|| {
                panic!(
                    "lake column {} has no {engine} type for {}",
                    field.name(),
                    field.data_type()
                )
            });
            (field.name().clone(), kind)
        })
        .collect()
}

/// The column list of a `CREATE EXTERNAL TABLE`, one per line.
fn column_list(engine: Engine) -> String {
    let columns: Vec<String> = columns(engine)
        .into_iter()
        .map(|(name, kind)| format!("    {name} {kind}"))
        .collect();
    columns.join(",\n")
}

/// Athena: the Glue database and the table with partition projection.
pub fn athena_statements(table: &LakeTable) -> Vec<String> {
    let schema = &table.schema;
    let location = table.lake.location();
    let template = table.lake.partition_location("${dt}", "${hour}");
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {schema}"),
        format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {schema}.{TABLE} (\n{}\n)\n\
             PARTITIONED BY (dt string, hour string)\n\
             STORED AS PARQUET\n\
             LOCATION '{location}'\n\
             TBLPROPERTIES (\n    \
             'projection.enabled'='true',\n    \
             'projection.dt.type'='date',\n    \
             'projection.dt.format'='yyyy-MM-dd',\n    \
             'projection.dt.range'='NOW-3YEARS,NOW',\n    \
             'projection.dt.interval'='1',\n    \
             'projection.dt.interval.unit'='DAYS',\n    \
             'projection.hour.type'='integer',\n    \
             'projection.hour.range'='0,23',\n    \
             'projection.hour.digits'='2',\n    \
             'storage.location.template'='{template}'\n)",
            column_list(Engine::Athena)
        ),
    ]
}

/// Spectrum: the external schema (over a Glue database of the same name) and the table.
pub fn spectrum_statements(table: &LakeTable) -> Vec<String> {
    let schema = &table.schema;
    let role = match table.iam_role.as_str() {
        "default" => "default".to_owned(),
        arn => format!("'{arn}'"),
    };
    vec![
        format!(
            "CREATE EXTERNAL SCHEMA IF NOT EXISTS {schema}\n\
             FROM DATA CATALOG\n\
             DATABASE '{schema}'\n\
             IAM_ROLE {role}\n\
             CREATE EXTERNAL DATABASE IF NOT EXISTS"
        ),
        format!(
            "CREATE EXTERNAL TABLE {schema}.{TABLE} (\n{}\n)\n\
             PARTITIONED BY (dt varchar(10), hour varchar(2))\n\
             STORED AS PARQUET\n\
             LOCATION '{}'",
            column_list(Engine::Spectrum),
            table.lake.location()
        ),
    ]
}

/// Spectrum: the statement that registers the files of one hour (`dt` = `YYYY-MM-DD`,
/// `hour` = `HH`, UTC).
pub fn spectrum_add_partition(table: &LakeTable, dt: &str, hour: &str) -> String {
    format!(
        "ALTER TABLE {}.{TABLE} ADD IF NOT EXISTS PARTITION (dt='{dt}', hour='{hour}')\n\
         LOCATION '{}'",
        table.schema,
        table.lake.partition_location(dt, hour)
    )
}

/// The statements of [`script`], without comments or the trailing `;`.
pub fn statements(table: &LakeTable) -> Vec<String> {
    match table.engine {
        Engine::Athena => athena_statements(table),
        Engine::Spectrum => spectrum_statements(table),
    }
}

/// What `exposures ddl --dialect athena|spectrum --lake …` prints.
pub fn script(table: &LakeTable) -> String {
    let mut script = format!(
        "-- The exposures lake as an external table ({}), generated by `exposures ddl`.\n\
         -- Columns: those of the lake's Parquet files (lake schema {LAKE_SCHEMA_VERSION}), in file order.\n\
         -- Partitions: dt (YYYY-MM-DD) and hour (HH), the UTC hour the events were received.\n",
        table.engine
    );
    if table.engine == Engine::Spectrum {
        script
            .push_str("-- Run each statement on its own: Redshift runs external DDL outside transactions.\n");
    }
    script.push('\n');
    for statement in statements(table) {
        let _ = write!(script, "{statement};\n\n");
    }
    match table.engine {
        Engine::Athena => script.push_str(
            "-- Partition projection: Athena derives each hour's location from the table\n\
             -- properties, so there is nothing to register. Filter on dt (and hour) to read\n\
             -- only those hours.\n",
        ),
        Engine::Spectrum => {
            let add = spectrum_add_partition(table, "YYYY-MM-DD", "HH").replace('\n', "\n--     ");
            let _ = write!(
                script,
                "-- Spectrum reads only registered partitions (it does not use Athena's partition\n\
                 -- projection). Register each hour once the sink has written it, e.g. hourly:\n\
                 -- {add};\n\
                 -- or have a Glue crawler, scheduled over {},\n\
                 -- add them to the Glue database '{}'.\n",
                table.lake.location(),
                table.schema
            );
        }
    }
    script
}

#[cfg(test)]
mod tests;
