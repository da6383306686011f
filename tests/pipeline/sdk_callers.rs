//! The real callers: GrowthBook's Python SDK running the seed's callback, and GrowthBook's
//! JavaScript SDK in headless Chromium on another origin (CORS preflight included); and
//! GrowthBook's own tracking plugin, unmodified, in Python, in Node and as the script tag
//! in Chromium, posting to `/track` until every table holds what it sent, once.
//!
//! They need Python with `growthbook` + `requests`, Node with `tests/sdk/node_modules`
//! and Chromium (`.ci/run` installs all three). Without them these tests say what to
//! install and pass vacuously — unless `EXPOSURES_REQUIRE_TOOLS=1` (set by CI), which
//! makes a missing dependency a failure.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use tokio::process::Command;

use crate::harness::api::{self, Server};
use crate::harness::available;
use crate::harness::kafka::{read_exactly, Kafka, Record};
use crate::harness::lake::start_sink;
use crate::harness::scenario::{on_both_warehouses, Kind, Scenario};

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

async fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .await
        .is_ok_and(|o| o.status.success())
}

async fn run_script(program: &str, script: &str, url: &str, users: usize) -> Vec<Value> {
    let output = Command::new(program)
        .arg(sdk_dir().join(script))
        .arg(url)
        .arg(users.to_string())
        .current_dir(sdk_dir())
        .output()
        .await
        .expect("run SDK script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {line}: {e}")))
        .collect()
}

/// Every exposure the SDK reported as 200 is in Kafka once, keyed by its user, with the
/// variation the SDK assigned.
async fn assert_results_in_kafka(kafka: &Kafka, results: &[Value], users: usize, source: &str) {
    assert_eq!(results.len(), users, "one exposure per user: {results:?}");
    for result in results {
        assert_eq!(result["status"], 200, "{result}");
    }
    let records = read_exactly(&kafka.brokers(), &kafka.topic, users).await;
    let by_event: HashMap<&str, &Record> = records
        .iter()
        .map(|r| (r.value["event_id"].as_str().expect("id"), r))
        .collect();
    for result in results {
        let record = by_event[result["event_id"].as_str().expect("event_id")];
        assert_eq!(record.key, result["user"].as_str().expect("user"));
        assert_eq!(record.value["experiment_id"], "new_search_ui");
        let variation = match &result["variation"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(record.value["variation_id"], variation);
        assert_eq!(record.value["source"], source);
        assert_eq!(record.value["attributes"]["ds_user_id"], result["user"]);
    }
}

#[tokio::test]
async fn growthbook_python_sdk_with_the_seed_callback() {
    let present = succeeds("python3", &["-c", "import growthbook, requests"]).await;
    if !available(
        "Python GrowthBook SDK",
        present,
        "pip install -r tests/sdk/requirements.txt",
    ) {
        return;
    }
    let kafka = Kafka::new(3);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    let results = run_script(
        "python3",
        "python_sdk.py",
        &format!("{}/exposure", server.url),
        20,
    )
    .await;
    assert_results_in_kafka(&kafka, &results, 20, "search_core_python").await;
    server.stop().await;
}

#[tokio::test]
async fn growthbook_js_sdk_in_chromium_from_another_origin() {
    let node_modules = sdk_dir().join("node_modules/@growthbook/growthbook").is_dir()
        && sdk_dir().join("node_modules/playwright-core").is_dir();
    let chromium = std::path::Path::new("/usr/bin/chromium").exists() || std::env::var("CHROMIUM").is_ok();
    let present = node_modules && chromium && succeeds("node", &["--version"]).await;
    if !available(
        "Node, tests/sdk/node_modules or Chromium",
        present,
        "npm ci --prefix tests/sdk && apt-get install chromium",
    ) {
        return;
    }
    let kafka = Kafka::new(3);
    let server = Server::start(api::config(&kafka.brokers(), &kafka.topic)).await;
    // The page is served from 127.0.0.1 and posts to localhost: another origin.
    let url = format!("{}/exposure", server.url.replace("127.0.0.1", "localhost"));
    let results = run_script("node", "browser_sdk.mjs", &url, 10).await;
    for result in &results {
        assert_eq!(result["ok"], true, "{result}");
    }
    assert_results_in_kafka(&kafka, &results, 10, "nextjs_web").await;
    server.stop().await;
}

/// Runs `script` of `tests/sdk` with `args` and returns the JSON line it printed for each
/// event its SDK was handed.
async fn run_tracking_script(program: &str, script: &str, args: &[&str]) -> Vec<Value> {
    let output = Command::new(program)
        .arg(sdk_dir().join(script))
        .args(args)
        .current_dir(sdk_dir())
        .output()
        .await
        .expect("run SDK script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {line}: {e}")))
        .collect()
}

/// GrowthBook's own tracking plugin, unmodified, driving a running pipeline: `script`
/// evaluates real feature definitions for `users` users and logs a custom event each;
/// every exposure, feature evaluation and custom event its SDK sent is then a row of its
/// table exactly once — the exposure with the variation key and the hashed user id.
async fn tracking_plugin_fills_every_table_once(
    kind: Kind,
    program: &str,
    script: &str,
    users: usize,
    sdk: &str,
) {
    let scenario = Scenario::start(kind).await;
    let side = &scenario.side;
    let mut config = api::config(&side.kafka.brokers(), &side.kafka.topic);
    config.http.client_keys =
        crate::harness::flags::<ingest::HttpConfig>(&["--client-keys", "sdk-plugin=production"]).client_keys;
    let server = Server::start(config).await;
    let sink = start_sink(side.config("sink"));
    let loader = scenario.start_loader();
    let expected =
        run_tracking_script(program, script, &[&server.url, "sdk-plugin", &users.to_string()]).await;

    let of_table = |table: &str| expected.iter().filter(|line| line["table"] == table).count() as i64;
    assert_eq!(
        of_table("exposures"),
        users as i64,
        "one exposure per user: {expected:?}"
    );
    assert!(of_table("feature_usage") >= users as i64, "{expected:?}");
    assert_eq!(of_table("events"), users as i64, "{expected:?}");
    for table in ["exposures", "feature_usage", "events"] {
        scenario
            .wait_count(
                &format!("SELECT count(*) FROM analytics.{table}"),
                of_table(table),
            )
            .await;
    }
    let pg = scenario.client().await;
    for line in &expected {
        let user = line["user"].as_str().expect("user");
        match line["table"].as_str() {
            Some("exposures") => {
                let rows = pg
                    .query(
                        "SELECT variation_id, source, extra->>'environment', extra->>'hash_value' \
                         FROM analytics.exposures WHERE ds_user_id = $1 AND experiment_id = $2",
                        &[&user, &line["experiment_id"].as_str().expect("experiment")],
                    )
                    .await
                    .expect("exposures");
                assert_eq!(rows.len(), 1, "{line}");
                assert_eq!(
                    rows[0].get::<_, String>(0),
                    line["variation_key"].as_str().expect("key"),
                    "{line}"
                );
                assert_eq!(rows[0].get::<_, String>(1), sdk, "{line}");
                assert_eq!(rows[0].get::<_, Option<String>>(2).as_deref(), Some("production"));
                assert_eq!(
                    rows[0].get::<_, Option<String>>(3).as_deref(),
                    line["hash_value"].as_str()
                );
            }
            Some("feature_usage") => {
                let rows = pg
                    .query(
                        "SELECT value::text FROM analytics.feature_usage WHERE user_id = $1 AND feature_key = $2",
                        &[&user, &line["feature_key"].as_str().expect("feature")],
                    )
                    .await
                    .expect("feature_usage");
                assert_eq!(rows.len(), 1, "{line}");
                let value: Value = serde_json::from_str(&rows[0].get::<_, String>(0)).expect("json");
                assert_eq!(value, line["value"], "{line}");
            }
            Some("events") => {
                let rows = pg
                    .query(
                        "SELECT properties::text FROM analytics.events WHERE user_id = $1 AND event_name = $2",
                        &[&user, &line["event_name"].as_str().expect("name")],
                    )
                    .await
                    .expect("events");
                assert_eq!(rows.len(), 1, "{line}");
                let properties: Value = serde_json::from_str(&rows[0].get::<_, String>(0)).expect("json");
                assert_eq!(properties, line["properties"], "{line}");
            }
            other => panic!("unknown table {other:?}: {line}"),
        }
    }
    loader.stop().await;
    sink.stop().await;
    server.stop().await;
}

fn python_present() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import growthbook, requests"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn node_present(with_chromium: bool) -> bool {
    let modules = sdk_dir().join("node_modules/@growthbook/growthbook").is_dir()
        && (!with_chromium || sdk_dir().join("node_modules/playwright-core").is_dir());
    let chromium = !with_chromium
        || std::path::Path::new("/usr/bin/chromium").exists()
        || std::env::var("CHROMIUM").is_ok();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    modules && chromium && node
}

async fn python_tracking_plugin(kind: Kind) {
    if available(
        "Python GrowthBook SDK",
        python_present(),
        "pip install -r tests/sdk/requirements.txt",
    ) {
        tracking_plugin_fills_every_table_once(
            kind,
            "python3",
            "python_tracking.py",
            20,
            "growthbook-python",
        )
        .await;
    }
}

async fn node_tracking_plugin(kind: Kind) {
    if available(
        "Node and tests/sdk/node_modules",
        node_present(false),
        "npm ci --prefix tests/sdk",
    ) {
        tracking_plugin_fills_every_table_once(kind, "node", "node_tracking.mjs", 20, "growthbook-js").await;
    }
}

async fn script_tag_tracking_plugin(kind: Kind) {
    let present = node_present(true);
    if available(
        "Node, tests/sdk/node_modules or Chromium",
        present,
        "npm ci --prefix tests/sdk && apt-get install chromium",
    ) {
        tracking_plugin_fills_every_table_once(kind, "node", "browser_tracking.mjs", 12, "growthbook-js")
            .await;
    }
}

on_both_warehouses!(python_tracking_plugin =>
    growthbook_python_tracking_plugin_fills_postgres_exactly_once,
    growthbook_python_tracking_plugin_fills_redshift_exactly_once);

on_both_warehouses!(node_tracking_plugin =>
    growthbook_js_tracking_plugin_in_node_fills_postgres_exactly_once,
    growthbook_js_tracking_plugin_in_node_fills_redshift_exactly_once);

on_both_warehouses!(script_tag_tracking_plugin =>
    growthbook_script_tag_in_chromium_fills_postgres_exactly_once,
    growthbook_script_tag_in_chromium_fills_redshift_exactly_once);
