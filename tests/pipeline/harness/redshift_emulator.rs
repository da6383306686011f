//! An emulator of the Redshift Data API's JSON protocol (awsJson 1.1 over HTTP), so the
//! Redshift loader is tested with the real `aws-sdk-redshiftdata` client. Statements run
//! on a real PostgreSQL, asynchronously as in the service (submit → poll → result),
//! each call in its own session and each batch in one transaction.
//!
//! What it translates, because PostgreSQL lacks it: `COPY … FORMAT AS PARQUET MANIFEST`
//! (reads the manifest and the Parquet objects from the test S3 server with aws-sdk-s3,
//! checks `meta.content_length`, maps columns by position and refuses a column-count
//! mismatch and page codecs Spectrum does not document, as Redshift does, and records
//! failures in `sys_load_error_detail`); `SUPER` → jsonb and `JSON_PARSE(x)` →
//! `(x)::jsonb`; `VARCHAR(n)` → text checked in bytes, as Redshift counts them;
//! `DISTSTYLE`/`DISTKEY`/`SORTKEY` dropped; `GETDATE()`; backslash
//! escapes in literals (`standard_conforming_strings` off, as in Redshift).
//!
//! Faults on demand: ThrottlingException answers, slow statements (and it answers
//! FAILED with Redshift-shaped errors when a statement fails).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::SinkExt;
use loader::lake::{AwsOptions, Lake};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use regex::Regex;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

pub const WORKGROUP: &str = "exposures-test";
pub const DATABASE: &str = "dev";

/// Faults the next calls meet, and counts of what was served.
#[derive(Default)]
pub struct Faults {
    /// Answer this many of the next requests with ThrottlingException.
    pub throttle_next: AtomicU32,
    pub throttled: AtomicU32,
    /// Answer every request with AccessDeniedException (an identity without
    /// `redshift-data:*`), as the Data API reference lists it for every operation.
    pub deny_all: std::sync::atomic::AtomicBool,
    /// Every statement takes at least this long.
    pub statement_delay_ms: AtomicU64,
    /// Each statement of a transaction waits this long before it runs, inside the
    /// transaction: concurrent transactions overlap.
    pub in_transaction_delay_ms: AtomicU64,
    pub describes: AtomicU32,
}

pub struct DataApi {
    pub endpoint: String,
    pub faults: Arc<Faults>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for DataApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl DataApi {
    /// Serves the Data API on a free port, over the PostgreSQL at `pg_url`; COPY reads
    /// the lake through `lake`.
    pub async fn start(pg_url: String, lake: AwsOptions) -> DataApi {
        let (client, connection) = tokio_postgres::connect(&pg_url, NoTls).await.expect("PostgreSQL");
        tokio::spawn(connection);
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS public.sys_load_error_detail (query_id BIGINT, file_name TEXT, \
                 column_name TEXT, error_code INTEGER, error_message TEXT, start_time TIMESTAMP DEFAULT now())",
            )
            .await
            .expect("sys_load_error_detail");
        // Redshift's CAN_JSON_PARSE and JSON_SERIALIZE, which PostgreSQL 15 lacks.
        client
            .batch_execute(
                "CREATE OR REPLACE FUNCTION public.emulator_can_json_parse(text) RETURNS boolean \
                 LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM $1::jsonb; RETURN true; \
                 EXCEPTION WHEN others THEN RETURN false; END $$; \
                 CREATE OR REPLACE FUNCTION public.emulator_json_serialize(jsonb) RETURNS text \
                 LANGUAGE sql IMMUTABLE AS $$ SELECT $1::text $$",
            )
            .await
            .expect("Redshift's JSON functions");
        let faults = Arc::new(Faults::default());
        let state = Arc::new(Emulator {
            pg_url,
            lake,
            statements: Mutex::new(HashMap::new()),
            next_query_id: AtomicI64::new(1000),
            faults: faults.clone(),
        });
        // No request size is documented for the Data API beyond its 40 statements of
        // 100 KB each; axum's 2 MB default would refuse what the service may accept.
        let app = axum::Router::new()
            .route("/", axum::routing::post(handle))
            .layer(axum::extract::DefaultBodyLimit::max(8 * 1024 * 1024))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        DataApi {
            endpoint,
            faults,
            server,
        }
    }

    /// The warehouse URL a loader is given for this emulator.
    pub fn warehouse_url(&self) -> String {
        format!("redshift:///{DATABASE}?workgroup={WORKGROUP}&region=us-east-1")
    }
}

struct Emulator {
    pg_url: String,
    lake: AwsOptions,
    statements: Mutex<HashMap<String, Statement>>,
    next_query_id: AtomicI64,
    faults: Arc<Faults>,
}

#[derive(Clone)]
struct Statement {
    batch: bool,
    status: &'static str,
    error: Option<String>,
    subs: Vec<Sub>,
    created: f64,
    updated: f64,
}

#[derive(Clone, Default)]
struct Sub {
    sql: String,
    status: &'static str,
    error: Option<String>,
    query_id: i64,
    result: Option<Vec<(String, Vec<Option<String>>)>>,
}

fn now() -> f64 {
    Utc::now().timestamp_millis() as f64 / 1000.0
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", kind),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        json!({"__type": kind, "message": message}).to_string(),
    )
        .into_response()
}

fn answer(body: Value) -> Response {
    ([("content-type", "application/x-amz-json-1.1")], body.to_string()).into_response()
}

async fn handle(State(emulator): State<Arc<Emulator>>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("RedshiftData."))
        .unwrap_or_default()
        .to_owned();
    let throttle = emulator
        .faults
        .throttle_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if throttle.is_ok() {
        emulator.faults.throttled.fetch_add(1, Ordering::SeqCst);
        return error(StatusCode::BAD_REQUEST, "ThrottlingException", "Rate exceeded");
    }
    if emulator.faults.deny_all.load(Ordering::SeqCst) {
        return error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "You do not have sufficient access to perform this action.",
        );
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "body is not JSON",
        );
    };
    match operation.as_str() {
        "ExecuteStatement" | "BatchExecuteStatement" => submit(emulator, &operation, &input),
        "DescribeStatement" => describe(&emulator, &input),
        "GetStatementResult" => result(&emulator, &input),
        "CancelStatement" => answer(json!({"Status": true})),
        other => error(StatusCode::BAD_REQUEST, "UnknownOperationException", other),
    }
}

fn submit(emulator: Arc<Emulator>, operation: &str, input: &Value) -> Response {
    if input["WorkgroupName"] != WORKGROUP || input["Database"] != DATABASE {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "unknown workgroup or database",
        );
    }
    let batch = operation == "BatchExecuteStatement";
    let sqls: Vec<String> = if batch {
        input["Sqls"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        input["Sql"]
            .as_str()
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default()
    };
    if sqls.is_empty() {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "no SQL");
    }
    // "Sqls … Array Members: Minimum number of 1 item. Maximum number of 40 items."
    // (https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_BatchExecuteStatement.html),
    // answered in the shape of AWS's constraint errors.
    if sqls.len() > 40 {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "1 validation error detected: Value at 'sqls' failed to satisfy constraint: \
             Member must have length less than or equal to 40",
        );
    }
    // "The maximum query statement size is 100 KB"
    // (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html); the service's
    // answer to a longer one, as users report it.
    if sqls.iter().any(|sql| sql.len() > 100 * 1024) {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "Cannot process query string larger than 100kB",
        );
    }
    let id = uuid::Uuid::now_v7().to_string();
    let statement = Statement {
        batch,
        status: "SUBMITTED",
        error: None,
        subs: sqls
            .into_iter()
            .map(|sql| Sub {
                sql,
                status: "SUBMITTED",
                ..Sub::default()
            })
            .collect(),
        created: now(),
        updated: now(),
    };
    emulator
        .statements
        .lock()
        .expect("lock")
        .insert(id.clone(), statement);
    tokio::spawn(execute(emulator, id.clone()));
    answer(json!({"Id": id, "CreatedAt": now(), "Database": DATABASE, "WorkgroupName": WORKGROUP}))
}

fn describe(emulator: &Emulator, input: &Value) -> Response {
    emulator.faults.describes.fetch_add(1, Ordering::SeqCst);
    let id = input["Id"].as_str().unwrap_or_default();
    let Some(statement) = emulator.statements.lock().expect("lock").get(id).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            "no such statement",
        );
    };
    let sub_json = |index: usize, sub: &Sub| {
        json!({
            "Id": format!("{id}:{}", index + 1),
            "Status": sub.status,
            "Error": sub.error,
            "QueryString": sub.sql,
            "RedshiftQueryId": sub.query_id,
            "HasResultSet": sub.result.is_some(),
            "CreatedAt": statement.created,
            "UpdatedAt": statement.updated,
        })
    };
    let mut body = json!({
        "Id": id,
        "Status": statement.status,
        "Error": statement.error,
        "CreatedAt": statement.created,
        "UpdatedAt": statement.updated,
        "Database": DATABASE,
        "WorkgroupName": WORKGROUP,
    });
    if statement.batch {
        body["SubStatements"] = statement
            .subs
            .iter()
            .enumerate()
            .map(|(i, s)| sub_json(i, s))
            .collect();
    } else if let Some(sub) = statement.subs.first() {
        body["RedshiftQueryId"] = sub.query_id.into();
        body["HasResultSet"] = sub.result.is_some().into();
        body["QueryString"] = sub.sql.clone().into();
    }
    answer(body)
}

fn result(emulator: &Emulator, input: &Value) -> Response {
    let id = input["Id"].as_str().unwrap_or_default();
    let (statement_id, index) = match id.rsplit_once(':') {
        Some((statement, n)) => (statement, n.parse::<usize>().unwrap_or(0).saturating_sub(1)),
        None => (id, 0),
    };
    let statements = emulator.statements.lock().expect("lock");
    let Some(result) = statements
        .get(statement_id)
        .and_then(|s| s.subs.get(index))
        .and_then(|sub| sub.result.clone())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            "no result for this id",
        );
    };
    let columns: Vec<Value> = result.iter().map(|(name, _)| json!({"name": name})).collect();
    let rows = result.first().map(|(_, values)| values.len()).unwrap_or(0);
    let records: Vec<Value> = (0..rows)
        .map(|row| {
            result
                .iter()
                .map(|(_, values)| match &values[row] {
                    Some(text) => json!({"stringValue": text}),
                    None => json!({"isNull": true}),
                })
                .collect()
        })
        .collect();
    answer(json!({"Records": records, "ColumnMetadata": columns, "TotalNumRows": rows}))
}

/// Runs a submitted statement to its end state.
async fn execute(emulator: Arc<Emulator>, id: String) {
    let delay = emulator.faults.statement_delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let sqls: Vec<String> = {
        let mut statements = emulator.statements.lock().expect("lock");
        let Some(statement) = statements.get_mut(&id) else {
            return;
        };
        statement.status = "STARTED";
        statement.subs.iter().map(|s| s.sql.clone()).collect()
    };
    let outcome = run_transaction(&emulator, &sqls).await;
    let mut statements = emulator.statements.lock().expect("lock");
    let Some(statement) = statements.get_mut(&id) else {
        return;
    };
    statement.updated = now();
    match outcome {
        Ok(done) => {
            statement.status = "FINISHED";
            for (sub, (query_id, result)) in statement.subs.iter_mut().zip(done) {
                sub.status = "FINISHED";
                sub.query_id = query_id;
                sub.result = result;
            }
        }
        // As DescribeStatement documents a batch
        // (https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_SubStatementData.html):
        // the batch FAILED, its sub-statements FINISHED before the failing one, FAILED at
        // it, ABORTED after it (one transaction: none of them took effect).
        Err(failure) => {
            statement.status = "FAILED";
            statement.error = Some(failure.message.clone());
            for (index, sub) in statement.subs.iter_mut().enumerate() {
                sub.status = match index.cmp(&failure.index) {
                    std::cmp::Ordering::Less => "FINISHED",
                    std::cmp::Ordering::Equal => "FAILED",
                    std::cmp::Ordering::Greater => "ABORTED",
                };
            }
            if let Some(sub) = statement.subs.get_mut(failure.index) {
                sub.error = Some(failure.message);
                sub.query_id = failure.query_id;
            }
        }
    }
}

struct Failure {
    index: usize,
    query_id: i64,
    message: String,
}

type SubResult = (i64, Option<Vec<(String, Vec<Option<String>>)>>);

/// One session, one transaction (ExecuteStatement autocommits its one statement), at
/// REPEATABLE READ: PostgreSQL's nearest to Redshift's SNAPSHOT isolation, "the default
/// isolation level when creating provisioned clusters and serverless workgroups"
/// ("Isolation levels in Amazon Redshift",
/// https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html): two
/// transactions that each read, then insert, both commit. The same page: the snapshot
/// "is created within a transaction on the first occurrence of most SELECT statements,
/// DML commands … and [CREATE/ALTER/DROP/TRUNCATE TABLE]" — not at LOCK, so a LOCK
/// first makes the transaction see what the lock's holder committed. PostgreSQL takes
/// its snapshot the same way.
async fn run_transaction(emulator: &Emulator, sqls: &[String]) -> Result<Vec<SubResult>, Failure> {
    let fail = |index, query_id, message: String| Failure {
        index,
        query_id,
        message,
    };
    let (client, connection) = tokio_postgres::connect(&emulator.pg_url, NoTls)
        .await
        .map_err(|e| fail(0, 0, format!("could not open a connection to the database: {e}")))?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "SET standard_conforming_strings = off; SET escape_string_warning = off; \
             SET TimeZone = 'UTC'; BEGIN ISOLATION LEVEL REPEATABLE READ",
        )
        .await
        .map_err(|e| fail(0, 0, pg_message(&e)))?;
    let mut done = Vec::new();
    let pause = Duration::from_millis(emulator.faults.in_transaction_delay_ms.load(Ordering::SeqCst));
    for (index, sql) in sqls.iter().enumerate() {
        tokio::time::sleep(pause).await;
        let query_id = emulator.next_query_id.fetch_add(1, Ordering::SeqCst);
        let outcome = match parse_copy(sql) {
            Some((table, manifest)) => copy_parquet(emulator, &client, &table, &manifest, query_id)
                .await
                .map(|()| None),
            None => {
                let sql = translate(sql);
                match refuse_changed_view_columns(&client, &sql).await {
                    Ok(()) => run_sql(&client, &sql).await,
                    Err(refusal) => Err(refusal),
                }
            }
        };
        match outcome {
            Ok(result) => done.push((query_id, result)),
            Err(message) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(fail(index, query_id, message));
            }
        }
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| fail(sqls.len() - 1, 0, pg_message(&e)))?;
    Ok(done)
}

/// Redshift replaces a view only with "a new query that generates the identical set of
/// columns, using the same column names and data types" (CREATE VIEW,
/// https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_VIEW.html); PostgreSQL also
/// lets a replacement add columns at the end. The page gives no error text: these are
/// PostgreSQL 8's, which Redshift descends from (a guess).
async fn refuse_changed_view_columns(client: &Client, sql: &str) -> Result<(), String> {
    let replace_view =
        Regex::new(r"(?is)^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+([\w.]+)\s+AS\s+(.*)$").expect("pattern");
    let Some(parts) = replace_view.captures(sql) else {
        return Ok(());
    };
    let (view, query) = (&parts[1], &parts[2]);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&view])
        .await
        .map_err(|e| pg_message(&e))?
        .get(0);
    if !exists {
        return Ok(());
    }
    let columns = |statement: &tokio_postgres::Statement| -> Vec<(String, tokio_postgres::types::Type)> {
        statement
            .columns()
            .iter()
            .map(|column| (column.name().to_owned(), column.type_().clone()))
            .collect()
    };
    let before = columns(
        &client
            .prepare(&format!("SELECT * FROM {view}"))
            .await
            .map_err(|e| pg_message(&e))?,
    );
    let after = columns(
        &client
            .prepare(query.trim_end_matches(';'))
            .await
            .map_err(|e| pg_message(&e))?,
    );
    if before.len() != after.len() {
        return Err("ERROR: cannot change number of columns in view".into());
    }
    match before.iter().zip(&after).find(|(old, new)| old != new) {
        Some(((old_name, _), (new_name, _))) if old_name != new_name => Err(format!(
            "ERROR: cannot change name of view column \"{old_name}\" to \"{new_name}\""
        )),
        Some(((name, _), _)) => Err(format!(
            "ERROR: cannot change data type of view column \"{name}\""
        )),
        None => Ok(()),
    }
}

/// PostgreSQL's error as Redshift words it. A byte-length check (see [`translate`]) is
/// Redshift's `value too long for type character varying(n)`.
fn pg_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.constraint().and_then(|name| name.split_once(VARCHAR_BYTES)) {
            Some((_, width)) => format!("ERROR: value too long for type character varying({width})"),
            None => format!("ERROR: {}", db.message()),
        },
        None => format!("ERROR: {error}"),
    }
}

/// The same error met while COPY wrote a row: a too-long string is the load error
/// Redshift records as "String length exceeds DDL length" (STL_LOAD_ERRORS code 1204).
fn copy_message(error: &tokio_postgres::Error) -> String {
    let message = pg_message(error);
    if message.contains("value too long for type character varying") {
        "String length exceeds DDL length".to_owned()
    } else {
        message
    }
}

/// Names the CHECK constraint that stands for a `VARCHAR(n)` width: `{column}{VARCHAR_BYTES}{n}`.
const VARCHAR_BYTES: &str = "__varchar_bytes_";

/// `name VARCHAR(n)` in a CREATE TABLE → `name TEXT` with a CHECK on its UTF-8 byte
/// length: Redshift's VARCHAR counts bytes ("VARCHAR strings are measured in bytes, not
/// characters", https://docs.aws.amazon.com/redshift/latest/dg/t_preparing-input-data.html),
/// PostgreSQL's counts characters.
fn byte_length_varchar(sql: &str) -> String {
    let is_create_table = Regex::new(r"(?is)^\s*CREATE\s+(TEMP\s+|TEMPORARY\s+)?TABLE\b").expect("pattern");
    let is_create_table_as =
        Regex::new(r"(?is)^\s*CREATE\s+(TEMP\s+|TEMPORARY\s+)?TABLE\s+[\w.]+\s+AS\b").expect("pattern");
    if !is_create_table.is_match(sql) || is_create_table_as.is_match(sql) {
        return sql.to_owned(); // CREATE TABLE … AS: columns come from the query
    }
    Regex::new(r"(?i)\b(\w+)\s+VARCHAR\s*\((\d+)\)")
        .expect("pattern")
        .replace_all(sql, |captures: &regex::Captures| {
            let (column, width) = (&captures[1], &captures[2]);
            if column.eq_ignore_ascii_case("AS") {
                return captures[0].to_owned();
            }
            format!("{column} TEXT CONSTRAINT {column}{VARCHAR_BYTES}{width} CHECK (octet_length({column}) <= {width})")
        })
        .into_owned()
}

async fn run_sql(client: &Client, sql: &str) -> Result<Option<Vec<(String, Vec<Option<String>>)>>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| pg_message(&e))?;
    if !sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
        return Ok(None);
    }
    let mut columns: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for message in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            if columns.is_empty() {
                columns = row
                    .columns()
                    .iter()
                    .map(|c| (c.name().to_owned(), Vec::new()))
                    .collect();
            }
            for (index, column) in columns.iter_mut().enumerate() {
                column.1.push(row.get(index).map(str::to_owned));
            }
        }
    }
    Ok(Some(columns))
}

/// Redshift-only SQL → PostgreSQL.
fn translate(sql: &str) -> String {
    let rules = [
        (r"(?i)\s*DISTSTYLE\s+\w+", ""),
        (r"(?i)\s*DISTKEY\s*\([^)]*\)", ""),
        (r"(?i)\s*SORTKEY\s*\([^)]*\)", ""),
        (r"(?i)\bSUPER\b", "JSONB"),
        (r"(?i)\bJSON_PARSE\(([^()]*)\)", "($1)::jsonb"),
        (r"(?i)GETDATE\(\)", "(now() AT TIME ZONE 'UTC')"),
        (r"(?i)\bCAN_JSON_PARSE\(", "public.emulator_can_json_parse("),
        (r"(?i)\bJSON_SERIALIZE\(", "public.emulator_json_serialize("),
        (r"(?i)\bOBJECT\(", "jsonb_build_object("),
    ];
    let mut sql = byte_length_varchar(sql);
    for (pattern, replacement) in rules {
        sql = Regex::new(pattern)
            .expect("pattern")
            .replace_all(&sql, replacement)
            .into_owned();
    }
    sql
}

/// `COPY table FROM 'manifest' IAM_ROLE … FORMAT AS PARQUET MANIFEST` → (table, manifest).
fn parse_copy(sql: &str) -> Option<(String, String)> {
    let pattern = Regex::new(
        r"(?is)^\s*COPY\s+(\w+)\s+FROM\s+'([^']*)'\s+IAM_ROLE\s+(?:default|'arn:aws:iam::[^']+')\s+FORMAT\s+AS\s+PARQUET\s+MANIFEST\s*$",
    )
    .expect("pattern");
    let captures = pattern.captures(sql)?;
    Some((captures[1].to_owned(), captures[2].to_owned()))
}

/// Splits `s3://bucket/key`.
fn s3_location(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("s3://")?.split_once('/')
}

async fn copy_parquet(
    emulator: &Emulator,
    client: &Client,
    table: &str,
    manifest_url: &str,
    query_id: i64,
) -> Result<(), String> {
    let read = |url: String| async move {
        let (bucket, key) = s3_location(&url).ok_or(format!("not an S3 URL: {url}"))?;
        let lake = Lake::open(&format!("s3://{bucket}"), &emulator.lake)
            .await
            .map_err(|e| e.to_string())?;
        lake.get(key)
            .await
            .map_err(|e| format!("S3ServiceException: {e}"))
    };
    let manifest = read(manifest_url.to_owned())
        .await
        .map_err(|e| format!("Problem reading manifest file - {e}"))?;
    let manifest: Value =
        serde_json::from_slice(&manifest).map_err(|e| format!("Manifest is not JSON: {e}"))?;
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = $1 \
             ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(|e| pg_message(&e))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for entry in manifest["entries"].as_array().cloned().unwrap_or_default() {
        let url = entry["url"].as_str().unwrap_or_default().to_owned();
        let Some(declared) = entry["meta"]["content_length"].as_u64() else {
            return Err(format!(
                "Manifest entry for {url} has no meta.content_length, which COPY from Parquet requires"
            ));
        };
        let body = read(url.clone()).await?;
        let loaded = async {
            if body.len() as u64 != declared {
                return Err(format!(
                    "File size {} does not match the manifest's content_length {declared}",
                    body.len()
                ));
            }
            let rows = parquet_rows(body, &columns)?;
            let sink = client
                .copy_in(&format!("COPY {table} FROM STDIN"))
                .await
                .map_err(|e| copy_message(&e))?;
            let mut sink = std::pin::pin!(sink);
            sink.send(Bytes::from(rows)).await.map_err(|e| copy_message(&e))?;
            sink.as_mut().finish().await.map_err(|e| copy_message(&e))?;
            Ok::<(), String>(())
        };
        if let Err(message) = loaded.await {
            // COPY from Parquet runs on Redshift Spectrum, whose failures read "Spectrum
            // Scan Error" with the file and point at the load error table
            // (https://docs.aws.amazon.com/redshift/latest/dg/c-spectrum-troubleshooting.html,
            // https://docs.aws.amazon.com/redshift/latest/dg/SYS_LOAD_ERROR_DETAIL.html).
            record_load_error(emulator, query_id, &url, &message).await;
            return Err(format!(
                "Spectrum Scan Error: File '{url}': {message}. Check 'sys_load_error_detail' system table for details."
            ));
        }
    }
    Ok(())
}

/// SYS_LOAD_ERROR_DETAIL outlives the failed transaction: written on its own session.
async fn record_load_error(emulator: &Emulator, query_id: i64, file: &str, message: &str) {
    if let Ok((client, connection)) = tokio_postgres::connect(&emulator.pg_url, NoTls).await {
        tokio::spawn(connection);
        let _ = client
            .execute(
                "INSERT INTO public.sys_load_error_detail (query_id, file_name, column_name, error_code, error_message) \
                 VALUES ($1, $2, '', 15007, $3)",
                &[&query_id, &file, &message],
            )
            .await;
    }
}

/// A Parquet object as PostgreSQL COPY text, columns by position.
/// Whether a Parquet column of Arrow type `file` may fill a table column of PostgreSQL
/// `data_type` (the emulator's translation of the Redshift type): as Spectrum reads them,
/// strings into VARCHAR, INT32 into INTEGER, INT64 into BIGINT, BOOLEAN, INT64
/// timestamps into TIMESTAMP — nothing converted ("the column type is embedded with the
/// data … must match": Troubleshooting queries in Amazon Redshift Spectrum).
fn fills(file: &DataType, data_type: &str) -> bool {
    match file {
        DataType::Utf8 => data_type == "text",
        DataType::Int32 => data_type == "integer",
        DataType::Int64 => data_type == "bigint",
        DataType::Boolean => data_type == "boolean",
        DataType::Timestamp(_, _) => data_type.starts_with("timestamp"),
        _ => false,
    }
}

fn parquet_rows(body: Bytes, table_columns: &[(String, String)]) -> Result<String, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(body)
        .map_err(|e| format!("not a valid Parquet file ({e})"))?;
    // COPY reads Parquet through Spectrum, whose documented codecs are gzip, Snappy and
    // bzip2 (https://docs.aws.amazon.com/redshift/latest/dg/c-spectrum-data-files.html);
    // a page compressed otherwise is refused. The page gives no error text: this one is ours.
    for row_group in reader.metadata().row_groups() {
        for column in row_group.columns() {
            let codec = column.compression();
            if !matches!(
                codec,
                Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::GZIP(_)
            ) {
                return Err(format!(
                    "column {} uses compression {codec:?}, which Redshift Spectrum does not support",
                    column.column_path()
                ));
            }
        }
    }
    let file_columns = reader.schema().fields().len();
    if file_columns != table_columns.len() {
        return Err(format!(
            "incompatible Parquet schema: {file_columns} columns in the file, {} in the table",
            table_columns.len()
        ));
    }
    // Columns map by position; the types must match, in the documented error's words
    // ("… has an incompatible Parquet schema for column …").
    for (field, (name, data_type)) in reader.schema().fields().iter().zip(table_columns) {
        if !fills(field.data_type(), data_type) {
            return Err(format!(
                "has an incompatible Parquet schema for column '{name}'. Column type: {data_type}, Parquet schema: {}",
                field.data_type()
            ));
        }
    }
    let mut text = String::new();
    for batch in reader
        .build()
        .map_err(|e| format!("not a valid Parquet file ({e})"))?
    {
        let batch: RecordBatch = batch.map_err(|e| format!("corrupt Parquet data ({e})"))?;
        for row in 0..batch.num_rows() {
            let fields: Vec<String> = batch
                .columns()
                .iter()
                .map(|column| cell(column.as_ref(), row))
                .collect::<Result<_, _>>()?;
            text.push_str(&fields.join("\t"));
            text.push('\n');
        }
    }
    Ok(text)
}

fn cell(array: &dyn Array, row: usize) -> Result<String, String> {
    if array.is_null(row) {
        return Ok("\\N".into());
    }
    let text = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            Utc.timestamp_micros(micros)
                .single()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                .ok_or("timestamp out of range")?
        }
        other => return Err(format!("unsupported Parquet type {other}")),
    };
    Ok(text
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r"))
}
