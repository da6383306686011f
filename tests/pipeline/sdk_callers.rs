//! The real callers: GrowthBook's Python SDK running the seed's callback, and GrowthBook's
//! JavaScript SDK in headless Chromium on another origin (CORS preflight included).
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
