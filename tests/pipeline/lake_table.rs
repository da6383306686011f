//! The lake as a table: the external tables `exposures ddl --dialect athena|spectrum`
//! prints read the files the sink writes. The printed DDL is parsed (a small parser,
//! below) and compared with the Parquet schema of a file made by the sink's encoder —
//! not with `schemas::COLUMNS`, from which the DDL is generated — name for name, in file
//! order, type for type through the mapping of Parquet types each engine documents. The
//! table's location and partition templates are checked against the file's object key.
//! Needs no broker: the file is encoded in memory and the binary only prints.

use arrow_schema::{DataType, TimeUnit};
use loader::sink::file::{OpenFile, ParquetCodec};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use schemas::lake_layout::{FileKey, Hour};

use crate::harness::lake::exposures;
use crate::harness::process::exposures as exposures_command;

const LAKE: &str = "s3://lake-bucket/some/prefix";

/// `(name, Arrow type)` of every column of a file the sink's encoder wrote, as read back
/// from its Parquet schema, and the file's key relative to the lake.
fn sink_file() -> (Vec<(String, DataType)>, String) {
    let events = exposures(10, "lake-table");
    let hour = Hour::of_millis(events[0].received_at.timestamp_millis());
    let mut file = OpenFile::new(
        &schemas::EXPOSURES,
        3,
        hour,
        42,
        "exposures",
        ParquetCodec::default(),
    );
    for (offset, event) in (42..).zip(&events) {
        file.append(&schemas::LakeRow::from_exposure(event), offset)
            .expect("encoded");
    }
    let encoded = file.encode().expect("parquet");
    let read = |skip_arrow_metadata: bool| -> Vec<(String, DataType)> {
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(skip_arrow_metadata);
        ParquetRecordBatchReaderBuilder::try_new_with_options(encoded.bytes.clone(), options)
            .expect("a Parquet file")
            .schema()
            .fields()
            .iter()
            .map(|field| (field.name().clone(), field.data_type().clone()))
            .collect()
    };
    let schema = read(false);
    // Athena and Spectrum see the Parquet types, not the Arrow schema embedded beside
    // them: both views must agree.
    assert_eq!(
        schema,
        read(true),
        "the Parquet types say what the Arrow schema says"
    );
    assert!(!schema.is_empty());
    (
        schema,
        FileKey {
            table: &schemas::EXPOSURES,
            hour,
            partition: 3,
            first_offset: 42,
        }
        .data_key(),
    )
}

/// Whether `engine` reads a Parquet column of Arrow type `arrow` as the DDL type `ddl`
/// (Athena: Hive types; Spectrum: Redshift types, `varchar` with a length).
fn reads_as(engine: &str, arrow: &DataType, ddl: &str) -> bool {
    match (arrow, engine) {
        (DataType::Utf8, "athena") => ddl == "string",
        (DataType::Utf8, "spectrum") => ddl
            .strip_prefix("varchar(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=65_535).contains(&n)),
        (DataType::Boolean, _) => ddl == "boolean",
        (DataType::Int32, _) => ddl == "int",
        (DataType::Int64, _) => ddl == "bigint",
        (DataType::Timestamp(TimeUnit::Microsecond, None), _) => ddl == "timestamp",
        _ => false,
    }
}

/// Splits `text` at the commas outside parentheses and `'…'` strings.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut depth, mut quoted) = (0, false);
    for c in text.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("a part").push(c);
    }
    parts.into_iter().map(|p| p.trim().to_owned()).collect()
}

/// The text inside the parentheses that open at the start of `text` (after spaces),
/// and what follows the closing one; parentheses in `'…'` strings do not count.
fn parenthesised(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    assert!(text.starts_with('('), "expected '(' at: {text:.40}");
    let (mut depth, mut quoted) = (0, false);
    for (at, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return (&text[1..at], &text[at + 1..]);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses: {text:.80}")
}

/// `name type` pairs of a column list.
fn column_list(text: &str) -> Vec<(String, String)> {
    split_top_level(text)
        .into_iter()
        .map(|column| {
            let (name, kind) = column
                .split_once(char::is_whitespace)
                .unwrap_or_else(|| panic!("'{column}' is not 'name type'"));
            (name.to_owned(), kind.trim().to_lowercase())
        })
        .collect()
}

/// The first `'…'` string after `keyword` in `text`.
fn quoted_after<'a>(text: &'a str, keyword: &str) -> &'a str {
    let at = text
        .find(keyword)
        .unwrap_or_else(|| panic!("no {keyword} in {text}"));
    let rest = &text[at + keyword.len()..];
    let rest = &rest[rest.find('\'').expect("a string") + 1..];
    &rest[..rest.find('\'').expect("a closed string")]
}

/// What the test reads from a `CREATE EXTERNAL TABLE`.
struct ExternalTable {
    name: String,
    columns: Vec<(String, String)>,
    partitions: Vec<(String, String)>,
    location: String,
    properties: Vec<(String, String)>,
}

/// Parses the one `CREATE EXTERNAL TABLE` statement of `script` (comments dropped).
fn external_table(script: &str) -> ExternalTable {
    let sql: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let statements: Vec<&str> = sql
        .split(';')
        .map(str::trim)
        .filter(|s| s.starts_with("CREATE EXTERNAL TABLE"))
        .collect();
    assert_eq!(statements.len(), 1, "one CREATE EXTERNAL TABLE in:\n{script}");
    let statement = statements[0]
        .strip_prefix("CREATE EXTERNAL TABLE")
        .expect("prefix")
        .trim_start();
    let statement = statement
        .strip_prefix("IF NOT EXISTS")
        .unwrap_or(statement)
        .trim_start();
    let (name, rest) = statement.split_once(char::is_whitespace).expect("a table name");
    let (columns, rest) = parenthesised(rest);
    let rest = rest
        .trim_start()
        .strip_prefix("PARTITIONED BY")
        .expect("PARTITIONED BY");
    let (partitions, rest) = parenthesised(rest);
    assert!(rest.trim_start().starts_with("STORED AS PARQUET"), "{rest}");
    let properties = match rest.find("TBLPROPERTIES") {
        Some(at) => split_top_level(parenthesised(&rest[at + "TBLPROPERTIES".len()..]).0)
            .into_iter()
            .map(|property| {
                let (key, value) = property.split_once('=').expect("'key'='value'");
                (
                    key.trim().trim_matches('\'').to_owned(),
                    value.trim().trim_matches('\'').to_owned(),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    ExternalTable {
        name: name.to_owned(),
        columns: column_list(columns),
        partitions: column_list(partitions),
        location: quoted_after(rest, "LOCATION").to_owned(),
        properties,
    }
}

async fn ddl(args: &[&str]) -> std::process::Output {
    let mut command = exposures_command();
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("EXPOSURES_")) {
        command.env_remove(key);
    }
    tokio::time::timeout(crate::harness::DEADLINE, command.arg("ddl").args(args).output())
        .await
        .expect("ddl ends before the deadline")
        .expect("ddl runs")
}

async fn printed(dialect: &str) -> String {
    let output = ddl(&["--dialect", dialect, "--lake", LAKE, "--schema", "lake"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn external_tables_read_the_columns_and_layout_of_the_sinks_files() {
    let (file_columns, key) = sink_file();
    let object = format!("{LAKE}/{key}");
    let directory = &object[..=object.rfind('/').expect("a directory")];
    // The partition values of the file, from its key: …/dt=YYYY-MM-DD/hour=HH/p….parquet.
    let value = |name: &str| {
        let at = key.find(&format!("/{name}=")).expect(name) + name.len() + 2;
        key[at..].split('/').next().expect("value").to_owned()
    };
    let (dt, hour) = (value("dt"), value("hour"));
    assert_eq!((dt.len(), hour.len()), (10, 2), "{key}");

    for engine in ["athena", "spectrum"] {
        let script = printed(engine).await;
        let table = external_table(&script);
        assert_eq!(table.name, "lake.exposures_lake", "{engine}");

        let names = |columns: &[(String, String)]| -> Vec<String> {
            columns.iter().map(|(name, _)| name.clone()).collect()
        };
        let file_names: Vec<String> = file_columns.iter().map(|(name, _)| name.clone()).collect();
        assert_eq!(
            names(&table.columns),
            file_names,
            "{engine}: the table's columns are the file's, in file order"
        );
        for ((name, ddl_type), (_, arrow)) in table.columns.iter().zip(&file_columns) {
            assert!(
                reads_as(engine, arrow, ddl_type),
                "{engine}: column {name} is {ddl_type} in the DDL but {arrow} in the file"
            );
        }

        let partition_names = names(&table.partitions);
        assert_eq!(partition_names, ["dt", "hour"], "{engine}");
        for name in &partition_names {
            assert!(
                !file_columns.iter().any(|(column, _)| column == name),
                "{engine}: partition column {name} is also a file column"
            );
        }
        assert!(
            object.starts_with(&table.location) && table.location.ends_with('/'),
            "{engine}: {object} is under LOCATION {}",
            table.location
        );
        assert_eq!(
            format!("{}dt={dt}/hour={hour}/", table.location),
            directory,
            "{engine}: Hive-style partitions under LOCATION"
        );

        match engine {
            "athena" => {
                let property = |key: &str| -> &str {
                    table
                        .properties
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or_else(|| panic!("no {key} in {:?}", table.properties))
                };
                assert_eq!(property("projection.enabled"), "true");
                assert_eq!(property("projection.dt.type"), "date");
                assert_eq!(property("projection.dt.format"), "yyyy-MM-dd");
                assert_eq!(property("projection.hour.type"), "integer");
                assert_eq!(property("projection.hour.range"), "0,23");
                assert_eq!(property("projection.hour.digits"), "2");
                assert_eq!(
                    property("storage.location.template")
                        .replace("${dt}", &dt)
                        .replace("${hour}", &hour),
                    directory,
                    "the projected location of the file's hour is its directory"
                );
            }
            _ => {
                let add = script
                    .lines()
                    .skip_while(|line| !line.contains("ADD IF NOT EXISTS PARTITION"))
                    .take(2)
                    .map(|line| line.trim_start_matches('-').trim())
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("YYYY-MM-DD", &dt)
                    .replace("HH", &hour);
                assert!(
                    add.starts_with(&format!(
                        "ALTER TABLE lake.exposures_lake ADD IF NOT EXISTS PARTITION (dt='{dt}', hour='{hour}')"
                    )),
                    "{add}"
                );
                assert_eq!(
                    quoted_after(&add, "LOCATION"),
                    directory,
                    "the partition template registers the file's directory"
                );
                assert!(
                    script.contains("CREATE EXTERNAL SCHEMA IF NOT EXISTS lake\n"),
                    "{script}"
                );
            }
        }
    }
}

#[tokio::test]
async fn lake_dialects_refuse_a_missing_or_unusable_lake_and_warehouse_ddl_is_unchanged() {
    for engine in ["athena", "spectrum"] {
        let output = ddl(&["--dialect", engine]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{engine} without --lake");
        assert!(output.stdout.is_empty());
        assert!(stderr.contains("--lake s3://BUCKET[/PREFIX]"), "{stderr}");
    }
    let output = ddl(&["--dialect", "athena", "--lake", "file:///tmp/lake"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("on S3"));

    let output = ddl(&["--dialect", "postgres", "--schema", "analytics", "--lake", LAKE]).await;
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        schemas::ddl::script(schemas::ddl::Dialect::Postgres, "analytics")
    );
}
